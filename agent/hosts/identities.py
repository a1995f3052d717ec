"""The keys a login offers, and in which order: identity files and the agent, as ssh(1) picks them.

- **Identity files**: the inventory's, then ssh_config's ``IdentityFile`` (and ``-i``); where none is
  given, ssh's default files. A file whose private key cannot be read here (encrypted, or only its
  public half on disk, as for keys kept in an agent or a hardware token) is used through the agent's
  copy of the same key, found by its public half: ``FILE.pub``, the file itself where it is a public
  key, or the unencrypted header of an OpenSSH private key. A private key file of the user's own that
  its group or others may access is not read, as ssh ignores it ("UNPROTECTED PRIVATE KEY FILE").
- **The agent's other keys** follow, unless ``IdentitiesOnly yes``. sshd counts every key offered
  against its ``MaxAuthTries`` (6 by default) and drops the connection after it, so an agent holding
  many keys can lock a host out before the key that works is reached: ``IdentitiesOnly`` is how sites
  stop that, and a key offered twice (from its file and from the agent) is offered once.
- **Certificates**: ``KEY-cert.pub`` beside a key is offered with it; every ssh_config
  ``CertificateFile`` that certifies a key is offered with that key, one attempt each, in order, as
  ssh offers each certificate given as an identity of its own.
- **The agent** is ssh_config's ``IdentityAgent`` (``none``, a socket path, ``SSH_AUTH_SOCK`` or
  ``$VARIABLE``), else ``$SSH_AUTH_SOCK``.

One difference from ssh, on purpose: a named identity file not in the agent is offered before the
agent's other keys (ssh offers it after them), as it is the key the inventory or config chose.
Where no file is named, the agent's keys come first and the default files after, as in ssh.
"""

from __future__ import annotations

import base64
import binascii
import copy
import os
import re
import socket
import stat
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from agent.errors import InputError
from agent.hosts import host_certs, ssh_config_text
from agent.hosts.sshlib import paramiko  # first: it keeps paramiko from importing invoke

PublicBlob = paramiko.pkey.PublicBlob  # what a key presents as its certificate

DEFAULT_KEYS = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")
_AGENT_TIMEOUT = 10.0  # an agent that stops answering (a locked token) fails the login, not the run
_OPENSSH_PRIVATE = "-----BEGIN OPENSSH PRIVATE KEY-----"
_OPENSSH_MAGIC = b"openssh-key-v1\x00"
BAD_PERMISSIONS = "bad permissions"  # ssh's own word for a key file others can read ("Load key ...")

Stamp = tuple[int, int, int] | None


@dataclass(frozen=True)
class Identities:
    """What one hop's login may offer: from ssh_config, the inventory and the command line."""

    files: tuple[str, ...]  # named identity files, expanded, in order; () for ssh's defaults
    certificate_files: tuple[str, ...] = ()  # ssh_config's CertificateFile: each with the key it certifies
    identities_only: bool = False
    agent: str | None = None  # the agent's socket; None: no agent


def identities_only(value: object) -> bool:
    """ssh_config's ``IdentitiesOnly`` (yes/no; ``true``/``false`` as paramiko may hand them)."""
    return str(value).strip().lower() in ("yes", "true")


def agent_socket(
    value: object,
    *,
    home: str,
    user: str,
    hostname: str,
    remote_user: str,
    environ: Mapping[str, str] = os.environ,
) -> str | None:
    """The agent's socket for ssh_config's ``IdentityAgent`` ``value`` (None where not set):
    ``none``, ``SSH_AUTH_SOCK``, ``$VARIABLE`` or a path (``~``, ``%d %u %h %r %%``, ``${VARIABLE}``).

    >>> kw = dict(home="/home/ops", user="ops", hostname="h1", remote_user="root")
    >>> kw["environ"] = {"SSH_AUTH_SOCK": "/run/a.sock", "OP": "/op.sock"}
    >>> [agent_socket(v, **kw) for v in (None, "none", "SSH_AUTH_SOCK", "$OP", "~/.1p/agent.sock")]
    ['/run/a.sock', None, '/run/a.sock', '/op.sock', '/home/ops/.1p/agent.sock']
    >>> agent_socket("%d/agents/%r@%h-${OP}", **kw)
    '/home/ops/agents/root@h1-/op.sock'
    """
    if value is None or str(value) == "SSH_AUTH_SOCK":
        return environ.get("SSH_AUTH_SOCK") or None
    text = str(value).strip()
    if text.lower() == "none":
        return None
    if text.startswith("$") and not text.startswith("${"):
        return environ.get(text[1:]) or None
    tokens = {"d": home, "u": user, "h": hostname, "r": remote_user, "%": "%"}

    def token(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in tokens:
            raise InputError(f"ssh config IdentityAgent {text!r}: %{name} is not known here")
        return tokens[name]

    def variable(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise InputError(f"ssh config IdentityAgent {text!r}: ${{{name}}} is not set")
        return environ[name]

    path = re.sub(r"%(.)", token, text)
    path = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", variable, path)
    if path.startswith("~"):
        path = home + path[1:]
    return path


def offered(
    wanted: Identities, notes: list[str], *, look_for_keys: bool
) -> Iterator[tuple[paramiko.PKey, str]]:
    """The keys to offer in order, each named for an error message (``notes`` collects why a file gave
    none). The agent is asked only once a key of its own is needed, and stays open until the caller
    stops iterating."""
    agent = _Agent(wanted.agent, notes)
    try:
        for key, what in _plain(wanted, agent.keys, notes, look_for_keys=look_for_keys):
            yield from with_certificates(key, what, wanted.certificate_files, notes)
    finally:
        agent.close()


class _Agent:
    """The agent's connection, opened on first use (a named key read from its file never needs it)."""

    def __init__(self, path: str | None, notes: list[str]) -> None:
        self.path, self.notes = path, notes
        self._agent: paramiko.Agent | None = None
        self._keys: list[paramiko.AgentKey] | None = None

    def keys(self) -> list[paramiko.AgentKey]:
        if self._keys is None:
            self._agent, self._keys = _open_agent(self.path, self.notes)
        return self._keys

    def close(self) -> None:
        if self._agent is not None:
            self._agent.close()


def _plain(
    wanted: Identities,
    agent_keys: Callable[[], list[paramiko.AgentKey]],
    notes: list[str],
    *,
    look_for_keys: bool,
) -> Iterator[tuple[paramiko.PKey, str]]:
    offered_blobs: set[bytes] = set()
    named = bool(wanted.files)
    files = wanted.files or (tuple(_expand(p) for p in DEFAULT_KEYS) if look_for_keys else ())
    if not named:
        # ssh's order where nothing is named: the agent first (only the default files' keys, under
        # IdentitiesOnly), then the default files not in it.
        defaults = {blob for path in files if (blob := public_blob(path)) is not None}
        for agent_key in agent_keys():
            if not wanted.identities_only or agent_key.asbytes() in defaults:
                offered_blobs.add(agent_key.asbytes())
                yield agent_key, _agent_label(agent_key)
    for path in files:
        key, why = read_private_key(path)
        if key is not None:
            if key.asbytes() not in offered_blobs:
                offered_blobs.add(key.asbytes())
                yield key, path
            continue
        blob = public_blob(path)
        in_agent = next((k for k in agent_keys() if k.asbytes() == blob), None) if blob is not None else None
        if in_agent is not None:
            if blob not in offered_blobs:
                offered_blobs.add(in_agent.asbytes())
                yield _with_own_certificate(in_agent, path), f"{path} (agent)"
        elif why == "not found":
            if named:
                notes.append(f"{path} not found" + ("; its .pub's key is not in the agent" if blob else ""))
        elif why == "encrypted":
            notes.append(f"{path} is encrypted and not in the agent (ssh-add it)")
        elif why == "public":
            notes.append(f"{path} is a public key not in the agent")
        elif why.startswith(BAD_PERMISSIONS):
            notes.append(f"{path}: {why}")
        else:
            notes.append(f"{path} unreadable: {why}")
    if named and not wanted.identities_only:
        for agent_key in agent_keys():
            if agent_key.asbytes() not in offered_blobs:
                offered_blobs.add(agent_key.asbytes())
                yield agent_key, _agent_label(agent_key)


def _agent_label(key: paramiko.AgentKey) -> str:
    """An agent key as ``ssh-add -l`` shows it: its fingerprint, and its comment where it has one."""
    comment = f" ({key.comment})" if getattr(key, "comment", "") else ""
    return f"agent key {host_certs.fingerprint(key.asbytes())}{comment}"


def _open_agent(path: str | None, notes: list[str]) -> tuple[paramiko.Agent | None, list[paramiko.AgentKey]]:
    """The agent at ``path`` and its keys; none where it cannot be reached (noted, as ssh warns)."""
    if path is None:
        return None, []
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(_AGENT_TIMEOUT)
    try:
        sock.connect(path)
        agent = _SocketAgent(sock)
    except (OSError, paramiko.SSHException) as exc:
        sock.close()
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        notes.append(f"agent {path}: {reason}")
        return None, []
    return agent, list(agent.get_keys())


class _SocketAgent(paramiko.Agent):
    """paramiko's agent client on a socket given here (paramiko's own reads only ``$SSH_AUTH_SOCK``)."""

    def __init__(self, sock: socket.socket) -> None:
        paramiko.agent.AgentSSH.__init__(self)
        connect: Any = self._connect  # type: ignore[attr-defined]  # AgentSSH's, not in the stubs
        connect(sock)


def read_private_key(path: str) -> tuple[paramiko.PKey | None, str]:
    """The private key at ``path`` (with its ``-cert.pub``, as ssh loads it), else None and why:
    ``not found``, ``encrypted``, ``public`` (a public key file), ``bad permissions ...`` (a file ssh
    ignores) or the parser's reason. Cached while the file and its certificate stay the same: a site's
    CA may renew the certificate every few hours."""
    stamp = (file_stamp(path), file_stamp(f"{path}-cert.pub"))
    if stamp[0] is None:
        return None, "not found"
    too_open = _too_open(path)
    # Checked before the cache, as a chmod leaves the stamp as it was; a public key file may be 0644.
    if too_open is not None and _public_key_line(path) is None:
        return None, too_open
    with _cache_lock:
        cached = _key_cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1], ""
    key: paramiko.PKey | None
    try:
        key = paramiko.PKey.from_path(path)
    except FileNotFoundError:
        return None, "not found"
    except paramiko.PasswordRequiredException:
        return None, "encrypted"
    except TypeError as exc:  # cryptography's word for an encrypted OpenSSH key read without a passphrase
        return None, "encrypted" if "password" in str(exc).lower() else str(exc)
    except (OSError, paramiko.SSHException, ValueError) as exc:
        key = _ecdsa_by_cryptography(path)
        if key is None:
            return None, "public" if _public_key_line(path) is not None else str(exc) or type(exc).__name__
    except Exception as exc:  # paramiko's UnknownKeyType, cryptography's UnsupportedAlgorithm
        # A key type paramiko has no class for (DSA, FIDO keys): one line in the error, as for others.
        kind = getattr(exc, "key_type", None)
        return (
            None,
            f"a key type trust-agent cannot use ({getattr(kind, '__name__', kind) or type(exc).__name__})",
        )
    with _cache_lock:
        _key_cache[path] = (stamp, key)
    return key, ""


def _too_open(path: str) -> str | None:
    """Why ssh would refuse the private key at ``path`` for its mode (see :func:`refused_mode`)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return refused_mode(path, st.st_mode, owner=st.st_uid, uid=os.getuid())


def refused_mode(path: str, mode: int, *, owner: int, uid: int) -> str | None:
    """Why ssh ignores private key file ``path`` of ``mode``, owned by ``owner``, for user ``uid``; None
    where it reads it. As OpenSSH's ``sshkey_perm_ok``: a file of the user's own that its group or
    others may access in any way is ignored ("UNPROTECTED PRIVATE KEY FILE"); another user's file
    (root's, for a user who is not root) is not judged.

    >>> refused_mode("/k", 0o100644, owner=1000, uid=1000)
    'bad permissions 0644: ssh ignores a private key its group or others can access (chmod 600 /k)'
    >>> [refused_mode("/k", m, owner=o, uid=1000) for m, o in ((0o100600, 1000), (0o100644, 0))]
    [None, None]
    """
    if owner != uid or not mode & 0o077:
        return None
    return (
        f"{BAD_PERMISSIONS} 0{stat.S_IMODE(mode) & 0o777:03o}: ssh ignores a private key its group or "
        f"others can access (chmod 600 {path})"
    )


def _ecdsa_by_cryptography(path: str) -> paramiko.PKey | None:
    """An OpenSSH ECDSA key paramiko's own parser refuses ("Invalid key curve identifier", paramiko
    #2445: it takes a final comment byte of 0 for padding, so about half the keys made with an empty
    comment fail), read by cryptography as ssh reads it; None for any other failure."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key

    try:
        with open(path, "rb") as f:
            loaded = load_ssh_private_key(f.read(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            return None
        key = paramiko.ECDSAKey(vals=(loaded, loaded.public_key()))
        if file_stamp(f"{path}-cert.pub") is not None:
            key.load_certificate(f"{path}-cert.pub")
    except (OSError, ValueError, TypeError, paramiko.SSHException):
        return None
    return key


def public_blob(path: str) -> bytes | None:
    """The public half of identity file ``path`` without its passphrase, as ssh finds it: the file
    itself where it is a public key, the header of an OpenSSH private key, else ``path.pub``."""
    for candidate in (_public_key_line(path), _openssh_public(path), _public_key_line(f"{path}.pub")):
        if candidate is not None:
            return candidate
    return None


def _public_key_line(path: str) -> bytes | None:
    """The key of a one-line ``TYPE BASE64 [comment]`` file."""
    try:
        with open(path, "rb") as f:
            head = f.read(16384)
    except OSError:
        return None
    fields = head.split()
    if len(fields) < 2 or not fields[0].startswith((b"ssh-", b"ecdsa-", b"sk-")):
        return None
    try:
        return base64.b64decode(fields[1], validate=True)
    except (binascii.Error, ValueError):
        return None


def _openssh_public(path: str) -> bytes | None:
    """The first public key in an ``openssh-key-v1`` private key file, which is never encrypted."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read(65536)
    except OSError:
        return None
    if _OPENSSH_PRIVATE not in text:
        return None
    body = text.split(_OPENSSH_PRIVATE, 1)[1].split("-----END", 1)[0]
    try:
        data = base64.b64decode("".join(body.split()), validate=True)
        if not data.startswith(_OPENSSH_MAGIC):
            return None
        message = paramiko.Message(data[len(_OPENSSH_MAGIC) :])
        message.get_string(), message.get_string(), message.get_string()  # cipher, kdf, kdf options
        if message.get_int() < 1:
            return None
        blob = message.get_binary()
    except (binascii.Error, ValueError, IndexError, paramiko.SSHException):
        return None
    return blob or None


def with_certificates(
    key: paramiko.PKey, what: str, files: tuple[str, ...], notes: list[str]
) -> Iterator[tuple[paramiko.PKey, str]]:
    """``key`` once with each of ``files`` (ssh_config's CertificateFile) that certifies it, in order, each
    named for an error: ssh offers every certificate given as an identity of its own (one may have
    expired, or name other principals). Copies, as keys are shared between connections; ``key``
    itself where none certifies it."""
    certified_any = False
    for path in files:
        try:
            certified = _certified_key(path)
        except (OSError, IndexError, ValueError, paramiko.SSHException) as exc:
            notes.append(f"CertificateFile {path} unreadable: {exc}")
            continue
        if certified.asbytes() == key.asbytes():  # the certificate's key is this one
            certified_any = True
            yield _carrying(key, certified.public_blob), f"{what} with certificate {path}"
    if not certified_any:
        yield key, what


def _with_own_certificate(key: paramiko.AgentKey, path: str) -> paramiko.PKey:
    """An agent key used for identity file ``path`` carries ``path-cert.pub`` where that certifies it
    (ssh loads it with the file; paramiko does so only for keys it reads from the file)."""
    certificate = f"{path}-cert.pub"
    if file_stamp(certificate) is None:
        return key
    try:
        certified = _certified_key(certificate)
    except (OSError, IndexError, ValueError, paramiko.SSHException):
        return key
    return _carrying(key, certified.public_blob) if certified.asbytes() == key.asbytes() else key


def _certified_key(path: str) -> paramiko.PKey:
    """The key an OpenSSH certificate file (``TYPE-cert-v01@openssh.com BASE64``) certifies, carrying it."""
    with open(path, encoding="ascii") as text:
        fields = text.read().split()
    return host_certs.certified_key(fields[0], base64.b64decode(fields[1]))


def _carrying(key: paramiko.PKey, certificate: PublicBlob | None) -> paramiko.PKey:
    """A copy of ``key`` presenting ``certificate``. An agent key is made anew: it forwards unknown
    attributes to its inner key, and ``copy.copy`` recurses through that without end."""
    if isinstance(key, paramiko.AgentKey):
        fresh = paramiko.AgentKey(key.agent, key.blob, key.comment)
        fresh.public_blob = certificate  # type: ignore[assignment]  # typed None in the stubs
        return fresh
    with_cert = copy.copy(key)
    with_cert.public_blob = certificate
    return with_cert


def file_stamp(path: str) -> Stamp:
    """A regular file's identity and version (None where it is not one): what the caches key on."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not os.path.isfile(path):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _expand(path: str) -> str:
    return os.path.abspath(ssh_config_text.expand_home(path))


_cache_lock = threading.Lock()
_key_cache: dict[str, tuple[tuple[Stamp, Stamp], paramiko.PKey]] = {}  # the key's and its certificate's
