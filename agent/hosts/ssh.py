"""The SSH transport: one paramiko connection per host, reused for every command and the engine API.

ssh_config is read as ssh reads it: ``~/.ssh/config`` then ``/etc/ssh/ssh_config`` (or the one file
``--ssh-config`` names), or, for a host whose inventory ssh args give ``-F FILE``, that file alone
(taken as written: ssh does not expand ``~`` there). Host keys are checked strictly against known_hosts
(the host's file, the options' file, the ssh config's ``UserKnownHostsFile``, else
``~/.ssh/known_hosts`` and ``~/.ssh/known_hosts2``); ``~`` is the passwd entry's home, as ssh's, not
``$HOME``. paramiko and socket exceptions are mapped to the :class:`~agent.errors.HostError` family
here, so callers never see them.

A ProxyJump hop is reached as ssh(1) reaches it, by an ssh of its own (``ssh -l USER -p PORT [-J
EARLIER] -W [%h]:%p HOP``, passed only ``-F`` and ``-v``): with the hop's own ssh_config ``User``,
``IdentityFile``, ``IdentityAgent`` (else ``$SSH_AUTH_SOCK``), ``ConnectTimeout``, ``HashKnownHosts``
and known_hosts files (else ssh's defaults), none of the target's or the inventory's; the first hop's
own ProxyJump or ProxyCommand leads to it (later hops are given ``-J``, which overrides theirs). The run's
``--known-hosts`` ("for every host") and ``--connect-timeout`` apply to hops too; without the latter,
a hop waits no longer than the target's ConnectTimeout, as ssh waits that long for the target's banner
through the hop.

>>> with SSHTransport(Host("h1", "198.51.100.21", user="root"), SSHOptions()) as t:  # doctest: +SKIP
...     t.connect()
...     t.run("uname -r").stdout
b'6.1.0-18-amd64\\n'
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import secrets
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from typing import Any

from agent.errors import (
    AuthenticationError,
    CommandError,
    CommandTimeout,
    HostError,
    HostKeyError,
    InputError,
    UnreachableError,
)
from agent.hosts import (
    host_certs,
    identities,
    pipelined_login,
    proxy_command,
    script_session,
    ssh_config_text,
)
from agent.hosts.base import CommandResult, Transport
from agent.hosts.engine_http import ENGINE_SOCKET, EngineReply, PendingReply, read_reply, request_bytes
from agent.hosts.engine_wake import HELLO
from agent.hosts.pending_channel import ChannelUnavailable, PendingChannel
from agent.hosts.prompt_ack import acknowledge_global_requests
from agent.hosts.sshlib import NoValidConnectionsError, enable_match_exec, paramiko
from agent.hosts.streamlocal import StreamLocalUnavailable, request_streamlocal
from agent.inventory import fields, ssh_args
from agent.inventory.model import Host

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"  # where accepted keys go where nothing names a file
# ssh(1)'s UserKnownHostsFile where none is set (`ssh -G` shows both): each read, the first written.
DEFAULT_USER_KNOWN_HOSTS = (DEFAULT_KNOWN_HOSTS, "~/.ssh/known_hosts2")
SYSTEM_SSH_CONFIG = "/etc/ssh/ssh_config"  # read after the user's, unless another file was named (ssh -F)
SYSTEM_SSH_DIR = "/etc/ssh"  # where the system-wide file's relative Include paths are
# Where a site's config management puts host keys and CA lines for every user, as ssh(1) reads them.
GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
DOCKER_API_VERSION = "1.41"  # accepted by Docker 20.10 through 26+; fixed to skip a version round trip
MAX_JUMPS = 8
DEFAULT_CONNECT_TIMEOUT = 10.0
_CHUNK = 65536
# What a login shell may print before a stream command takes over (a banner-like .bashrc): read past,
# but not without end.
_PREAMBLE_LIMIT = 1 << 20
_POLL = 0.05  # stderr does not wake select(); this bounds how stale it can get
_OUTBOX_POLL = 0.002  # how late a request waiting for the engine channel may go out once it opens
_MARKER_SPAN = 64  # longer than the loop's end marker, so one split across two reads is still found
# Where the connection goes while a command runs, what it did on the host is not known.
_LOST = "connection lost while the command ran (the host may have been changed part way)"


@dataclass(frozen=True)
class SSHOptions:
    """How to reach hosts. ``become_password`` is never shown in ``repr``."""

    connect_timeout: float | None = None  # None: ssh_config's ConnectTimeout, else DEFAULT_CONNECT_TIMEOUT
    command_timeout: float = 120.0
    keepalive: int = 15
    known_hosts: str | None = None
    accept_new_host_keys: bool = False
    ssh_config: str | None = "~/.ssh/config"
    system_ssh_config: str | None = None  # the system-wide file, read after ssh_config (SYSTEM_SSH_CONFIG)
    use_agent: bool = True
    look_for_keys: bool = True
    become_password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class _Target:
    """Where one hop actually goes, after ``~/.ssh/config`` is applied."""

    label: str
    hostname: str
    port: int
    user: str
    key_files: tuple[str, ...]
    known_hosts: str  # the user's file: read first, and where accepted keys are added
    other_known_hosts: tuple[str, ...]  # read after it: UserKnownHostsFile's others, then the global ones
    host_key_alias: str | None  # the name known_hosts and certificates know the host by, where not its own
    proxy_jump: str | None
    proxy_command: str | None = None  # where no ProxyJump is given: the host through this command
    certificate_files: tuple[
        str, ...
    ] = ()  # ssh_config's CertificateFile: offered with the key each certifies
    identities_only: bool = False  # ssh_config's IdentitiesOnly: none of the agent's other keys
    agent: str | None = None  # the agent's socket (IdentityAgent, else $SSH_AUTH_SOCK); None: none
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    hash_known_hosts: bool = False  # ssh_config's HashKnownHosts: names written to known_hosts hashed


def _handshake_ran_out(transport: paramiko.Transport) -> bool:
    """Whether paramiko gave up on the key exchange for its handshake_timeout: its packetizer then ends
    the read with an EOFError, as if the host had closed the connection, and start_client raises that
    whenever it sees the failure before its own timeout does."""
    return transport.packetizer.handshake_timed_out()


def _handshake_timed_out(target: _Target, timeout: float) -> UnreachableError:
    return UnreachableError(f"{target.label}: SSH handshake timed out after {timeout:g}s")


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:…`` fingerprint."""
    return host_certs.fingerprint(key.asbytes())


def known_hosts_name(hostname: str, port: int) -> str:
    return hostname if port == 22 else f"[{hostname}]:{port}"


def _base_key_type(key_type: str) -> str:
    # rsa-sha2-* are signature algorithms over an ssh-rsa key.
    return "ssh-rsa" if key_type.startswith("rsa-sha2-") else key_type


def _offer_host_key_types(
    transport: paramiko.Transport, known_types: set[str], *, certificates: bool
) -> None:
    """Offer first the host-key types known_hosts holds, so a host that also has an RSA key is not
    reported unknown when its ed25519 key is the one on file; where known_hosts trusts a CA for the host,
    certificates before all (paramiko offers them last, and a host would then show its plain key)."""
    opts = transport.get_security_options()
    plain = [k for k in opts.key_types if not k.endswith(host_certs.CERT_SUFFIX)]
    ordered = [k for k in plain if _base_key_type(k) in known_types]
    ordered += [k for k in plain if _base_key_type(k) not in known_types]
    if certificates:
        # The certificate types paramiko can read (it offers them again after the plain ones: harmless).
        readable = getattr(paramiko.Transport, "_key_info", {})
        ordered = [
            k + host_certs.CERT_SUFFIX for k in ordered if k + host_certs.CERT_SUFFIX in readable
        ] + ordered
    opts.key_types = ordered


# Expanded once the host's name, port and user are final (_key_paths), with every token ssh takes there.
_EXPANDED_LATER = frozenset({"identityfile", "certificatefile"})


class _PasswdHomeConfig(paramiko.SSHConfig):
    """paramiko's parser, with the local user the passwd entry's, as ssh's (paramiko's own reads
    ``$USER``/``$LOGNAME``) for ``%u``, for ``%r`` where no ``User`` is set, and for ``Match user`` and
    ``Match localuser``; ``IdentityFile`` and ``CertificateFile`` are left as written (_key_paths)."""

    def _tokenize(self, config: Any, target_hostname: str, key: str, value: str) -> str:
        if key in _EXPANDED_LATER:
            return value
        local = ssh_config_text.local_user()
        if "%u" in self._allowed_tokens(key):  # type: ignore[attr-defined]
            value = value.replace("%u", local)
        with_user = {**config, "user": config.get("user") or local}  # %r and %C where no User is set
        tokenized: str = super()._tokenize(with_user, target_hostname, key, value)  # type: ignore[misc]
        return tokenized

    def _does_match(
        self,
        match_list: list[dict[str, Any]],
        target_hostname: str,
        canonical: bool,
        final: bool,
        options: Any,
    ) -> Any:
        """paramiko's test of a ``Match`` line, criterion by criterion in order (an ``exec`` after a
        criterion that failed is not run, as in ssh), with ``user`` and ``localuser`` judged here."""
        matched: list[dict[str, Any]] = []
        for criterion in match_list:
            if criterion["type"] not in ("user", "localuser"):
                one = super()._does_match(  # type: ignore[misc]
                    [criterion], target_hostname, canonical, final, options
                )
                if one is True or not one:  # `all` holds for any host; a criterion failed
                    return one
                matched += one
                continue
            local = ssh_config_text.local_user()
            user = local if criterion["type"] == "localuser" else options.get("user") or local
            if self._should_fail(self._pattern_matches(criterion["param"], user), criterion):  # type: ignore[attr-defined]
                return False
            matched.append(criterion)
        return matched


# paramiko keeps the first value of every option but IdentityFile; ssh takes every CertificateFile line,
# in order. Each is given a key of its own before parsing, and listed again after the lookup.
_CERTIFICATE_FILE_LINE = re.compile(r"^([ \t]*)CertificateFile(?=[ \t=])", re.I | re.M)
_NUMBERED_CERTIFICATE_FILE = "tacertificatefile"


def _numbered_certificate_files(text: str) -> str:
    numbers = itertools.count()
    return _CERTIFICATE_FILE_LINE.sub(
        lambda m: f"{m.group(1)}{_NUMBERED_CERTIFICATE_FILE}{next(numbers):06d}", text
    )


def _certificate_files_listed(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with the numbered CertificateFile keys gathered into one ``certificatefile`` list, in
    the config's order, each path once (as ssh registers them)."""
    numbered = sorted(key for key in options if key.startswith(_NUMBERED_CERTIFICATE_FILE))
    files = [str(options.pop(key)) for key in numbered]
    if files:
        options["certificatefile"] = list(dict.fromkeys(files))
    return options


class _SSHConfig:
    """ssh_config lookups: the user's file, then the system-wide one (where given), as ssh(1) reads them
    (the first value found wins); a missing file is an empty config."""

    def __init__(self, path: str | None, system: str | None = None) -> None:
        self.path = ssh_config_text.expand_home(path) if path else None
        self._where = self.path or system
        self._text: str | None = None
        self._config: paramiko.SSHConfig | None = None
        self._with_given: dict[tuple[tuple[str, str], ...], paramiko.SSHConfig] = {}
        parts = []
        user_dir = ssh_config_text.expand_home("~/.ssh")
        for config, includes in ((self.path, user_dir), (system, SYSTEM_SSH_DIR)):
            if config and os.path.isfile(config):
                # "Host *" first: a file's lines before its first Host apply to every host.
                parts.append("Host *\n" + ssh_config_text.expanded(config, includes))
        if parts:
            self._text = ssh_config_text.with_proxy_order("".join(parts))
            self._config = self._parse(self._text)

    def _parse(self, text: str) -> paramiko.SSHConfig:
        try:
            return _PasswdHomeConfig.from_text(_numbered_certificate_files(text))
        except (paramiko.SSHException, ValueError) as exc:
            raise InputError(f"cannot read ssh config: {exc}", where=self._where) from None

    def lookup(self, name: str, given: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
        """ssh_config's options for ``name``. ``given`` are options set on the command line (``User``
        and ``Port``, as ``-l``/``-p``/``-o``): ssh sets them before it reads the files, so they win
        and ``Match user``, ``%r`` and ``%p`` see them."""
        config = self._config_given(given)
        if config is None:
            return dict(given)
        try:
            try:
                return _certificate_files_listed(dict(config.lookup(name)))
            except ImportError:  # a `Match exec` line: paramiko needs invoke after all
                enable_match_exec()
                return _certificate_files_listed(dict(config.lookup(name)))
        except (paramiko.SSHException, ValueError) as exc:
            raise InputError(f"ssh config for {name!r}: {exc}", where=self.path) from None

    def _config_given(self, given: tuple[tuple[str, str], ...]) -> paramiko.SSHConfig | None:
        """The config with ``given`` read first, as a block for every host (the first value wins)."""
        if self._text is None or not given:
            return self._config
        if given not in self._with_given:
            lines = "".join(f'{name} "{_config_value(name, value)}"\n' for name, value in given)
            self._with_given[given] = self._parse(f"Host *\n{lines}{self._text}")
        return self._with_given[given]


def _config_value(name: str, value: str) -> str:
    """``value`` as one ssh_config value; one that could not be one is refused."""
    if not value or any(c in value for c in '"\\') or not value.isprintable():
        raise InputError(f"ssh {name} {value!r} is not a value ssh takes")
    return value


def _not_a_config_file(given: str, path: str) -> str:
    """Why ``-F given`` (opened as ``path``) cannot be read, with the fix where ``~`` was meant as home."""
    reason = "not a file" if os.path.exists(path) else "no such file"
    if given.startswith("~"):
        reason += f" ({path}: ssh does not expand ~ in -F; give the full path)"
    return reason


def _given_on_command_line(host: Host) -> tuple[tuple[str, str], ...]:
    """The user and port the inventory gives ``host`` on ssh's command line: its ``user``/``port`` (for an
    Ansible inventory, already the first of ``ansible_ssh_args``' ``-l``/``-p``, ``ansible_user``/
    ``ansible_port`` and the common and extra args', as Ansible orders them), then ``-l``/``-p`` of its
    ssh options; ssh keeps the first of each."""
    given: dict[str, str] = {}
    if host.user:
        given["user"] = host.user
    if host.given_port is not None:
        given["port"] = str(host.given_port)
    for name, value in host.ssh_options:
        if name in ("user", "port"):
            given.setdefault(name, value)
    return tuple(given.items())


def _config_connect_timeout(cfg: dict[str, Any], label: str) -> float | None:
    """ssh_config's ``ConnectTimeout`` in seconds; None where not set."""
    if "connecttimeout" not in cfg:
        return None
    try:
        seconds = float(cfg["connecttimeout"])
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise InputError(f"{label}: ssh config ConnectTimeout {cfg['connecttimeout']!r} is not seconds")
    return seconds


def _hash_known_hosts(cfg: dict[str, Any]) -> bool:
    """ssh_config's ``HashKnownHosts``: whether a name recorded in known_hosts is written hashed."""
    return str(cfg.get("hashknownhosts", "no")).lower() == "yes"


def _global_known_hosts(cfg: dict[str, Any]) -> tuple[str, ...]:
    """ssh_config's ``GlobalKnownHostsFile`` (``none``: no file), else ssh(1)'s own default files."""
    if "globalknownhostsfile" not in cfg:
        return GLOBAL_KNOWN_HOSTS
    return tuple(_paths(cfg["globalknownhostsfile"]))


# Taken from the inventory's ssh options otherwise than one value over ssh_config's.
_NOT_OVER_CONFIG = frozenset({"identityfile", "proxycommand", "proxyjump", ssh_args.CONFIG_FILE})


def _take_inventory_options(cfg: dict[str, Any], host: Host) -> None:
    """The inventory's ssh options over ssh_config's ``cfg``, as ssh takes its command line's ``-o``
    over its config: its identity files first, in order; of ProxyCommand and ProxyJump, the one it
    gives first, and neither of ssh_config's (ssh uses the first of the two it meets)."""
    given = [value for name, value in host.ssh_options if name == "identityfile"]
    if given:
        cfg["identityfile"] = [*given, *_as_list(cfg.get("identityfile"))]
    proxy = next(((n, v) for n, v in host.ssh_options if n in ("proxycommand", "proxyjump")), None)
    if proxy is not None:
        cfg.pop("proxycommand", None)
        cfg.pop("proxyjump", None)
        cfg[ssh_config_text.PROXY_ORDER] = proxy[0][len("proxy") :]
    taken: set[str] = set()
    for name, value in host.ssh_options:
        # ssh keeps an option's first value: common args before extra args, as Ansible passes them.
        if name not in _NOT_OVER_CONFIG and name not in taken:
            cfg[name] = value
            taken.add(name)
    if proxy is not None:  # after HostName and the rest, which its %h %p %r name
        name, value = proxy
        cfg[name] = proxy_command.expand(value, *_endpoint(cfg, host)) if name == "proxycommand" else value


# ssh(1)'s checks on a host and a user given on its command line (OpenSSH 9.6, CVE-2023-51385): both
# reach a ProxyCommand's shell through %h, %n and %r, so a name from a dynamic inventory (a cloud tag
# anyone may set) could run commands here.
_NOT_IN_HOST_NAMES = frozenset("'`\"$\\;&<>|(){}")
_NOT_IN_USER_NAMES = frozenset("'`\";&<>|(){}")


def _refuse_unsafe_names(host: Host, label: str) -> None:
    """Refuse, as ssh(1) does, an address with shell metacharacters, and a user the inventory gives
    with them (ssh_config's own values are the config writer's, as in ssh(1))."""
    address = host.address
    if address.startswith("-") or any(_unsafe_in_host(c) for c in address):
        raise UnreachableError(f"{label}: hostname contains invalid characters (ssh(1) refuses it too)")
    users = [host.user or "", *(value for name, value in host.ssh_options if name == "user")]
    for user in users:
        if user.startswith("-") or any(c in _NOT_IN_USER_NAMES or not c.isprintable() for c in user):
            raise UnreachableError(
                f"{label}: remote user name contains invalid characters (ssh(1) refuses it too)"
            )


def _unsafe_in_host(char: str) -> bool:
    return char in _NOT_IN_HOST_NAMES or char.isspace() or not char.isprintable()


def _password_var(host: Host) -> str | None:
    """The SSH password variable an Ansible inventory sets for ``host``, if any."""
    return fields.chosen(host.vars, fields.SSH_PASSWORD_VARS)


def _proxy_jump(cfg: dict[str, Any]) -> str | None:
    """ssh_config's ProxyJump, unless ``none`` or a ProxyCommand came first (ssh uses the first)."""
    if cfg.get(ssh_config_text.PROXY_ORDER) == "command":
        return None
    jump = cfg.get("proxyjump")
    return None if jump is None or str(jump).lower() == "none" else str(jump)


def _proxy_command(cfg: dict[str, Any]) -> str | None:
    """ssh_config's ProxyCommand, unless a ProxyJump came first."""
    return None if cfg.get(ssh_config_text.PROXY_ORDER) == "jump" else cfg.get("proxycommand")


def _endpoint(cfg: dict[str, Any], host: Host) -> tuple[str, int, str]:
    """Where ``host`` goes once ssh_config's ``cfg`` applies: its name (``HostName``), port and user. The
    inventory's port and user win (22 too, where it gives it: Ansible passes ``-o Port=22``), then
    ssh_config's (or the inventory's ``-p``/``-l``, which ``cfg`` holds over them)."""
    try:
        given = host.given_port
        port = given if given is not None else int(cfg["port"]) if "port" in cfg else host.port
    except ValueError:
        raise InputError(f"{host}: ssh config Port {cfg['port']!r} is not a number") from None
    return (
        str(cfg.get("hostname") or host.address),
        port,
        host.user or str(cfg.get("user") or ssh_config_text.local_user()),
    )


def _jump_specs(proxy_jump: str | None) -> list[str]:
    """ProxyJump's hosts, the first reached first."""
    return [s.strip() for s in (proxy_jump or "").split(",") if s.strip()]


def _same_login(a: _Target, b: _Target) -> bool:
    """The same host, port and user: ssh's test for a jump host that is its own jump host."""
    return (a.hostname, a.port, a.user) == (b.hostname, b.port, b.user)


def _no_answer_through_proxy(target: _Target) -> str:
    """Why a host behind a ProxyCommand was not reached: nothing answered in time (as for a direct
    connection that times out, the host may be down or its network may drop the packets)."""
    return (
        f"{target.label}: could not connect: no SSH answer through the ProxyCommand within "
        f"{target.connect_timeout:g}s (the host may be down, or the network drops its packets)"
    )


def _files(target: _Target) -> str:
    """The known_hosts files read for ``target`` that exist (the user's always), for an error."""
    return " or ".join([target.known_hosts, *(p for p in target.other_known_hosts if os.path.exists(p))])


def _if_reinstalled(target: _Target, name: str) -> str:
    """What to do where the host was reinstalled: remove every line of its (one per key type, so one
    removed would leave the next type's mismatch for the next run) from each file that holds them (a
    second UserKnownHostsFile, the global one), as ssh(1) names the offending file."""
    files = [target.known_hosts, *target.other_known_hosts]
    holding = [path for path in files if _read_known_hosts(path, target.label)[0].lookup(name) is not None]
    remove = "; ".join(
        f"ssh-keygen -R {shlex.quote(name)} -f {shlex.quote(path)}" for path in holding or files[:1]
    )
    return f"if the host was reinstalled, remove its lines ({remove}) and retry"


def _paths(value: Any) -> list[str]:
    """An ssh_config file list (``UserKnownHostsFile``, ``GlobalKnownHostsFile``): space-separated in one
    value, ``none`` for none."""
    return [p for v in _as_list(value) for p in v.split() if p.lower() != "none"]


def inventory_known_hosts(host: Host) -> str | None:
    """The known_hosts file the inventory gives ``host``, where accepted keys go and which is read
    first: its own ``known_hosts``, else the first ``UserKnownHostsFile`` of its ssh options (ssh keeps
    an option's first value); ``None`` where the inventory names none (ssh_config's or the default
    then). Expanded as the connection expands it; ``%`` tokens stay as written (they take ssh_config's
    HostName and User)."""
    if host.known_hosts:
        return _expand(host.known_hosts)
    given = next((value for name, value in host.ssh_options if name == "userknownhostsfile"), None)
    files = _paths(given)
    return _expand(files[0]) if files else None


def _read_known_hosts(path: str, label: str) -> tuple[paramiko.HostKeys, host_certs.Markers]:
    """One known_hosts file (empty where there is none), parsed once per process while it stays the
    same (read-only use): parsing is per key line, so one parse per host would make a fleet run
    quadratic in its size."""
    with _cache_lock:
        stamp = identities.file_stamp(path)
        cached = _known_hosts_cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1], cached[2]
        keys, markers = paramiko.HostKeys(), host_certs.Markers()
        if stamp is not None:
            try:
                with open(path, encoding="utf-8", errors="replace") as text:
                    keys, markers = host_certs.read_known_hosts(text.read())
            except OSError as exc:
                raise HostKeyError(f"{label}: cannot read {path}: {exc}") from None
        _known_hosts_cache[path] = (stamp, keys, markers)
        return keys, markers


def _path_tokens(original: str, hostname: str, port: int, user: str, alias: str | None) -> dict[str, str]:
    """ssh(1)'s tokens for the files it reads for a host: IdentityFile, CertificateFile,
    UserKnownHostsFile and GlobalKnownHostsFile (ssh_config(5), TOKENS; OpenSSH 9.2's set)."""
    local_host = socket.gethostname()  # %l as gethostname(2) gives it, domain and all; %L without
    return {
        "%": "%",
        "C": hashlib.sha1(f"{local_host}{hostname}{port}{user}".encode()).hexdigest(),  # of %l%h%p%r
        "d": ssh_config_text.home(),
        "u": ssh_config_text.local_user(),
        "i": str(os.getuid()),
        "l": local_host,
        "L": local_host.split(".")[0],
        "h": hostname,
        "n": original,
        "p": str(port),
        "r": user,
        "k": alias or original,
    }


def _key_paths(option: str, paths: list[str], tokens: Mapping[str, str]) -> tuple[str, ...]:
    """``IdentityFile`` or ``CertificateFile`` ``paths`` as ssh opens them: ``~`` first, then its tokens
    and ``${VARIABLE}``s, once each (what they bring in is taken as it is)."""
    return tuple(
        os.path.abspath(
            ssh_config_text.expand_tokens(
                ssh_config_text.expand_home(path), tokens, what=f"ssh config {option} {path!r}"
            )
        )
        for path in paths
    )


def _known_hosts_files(
    user_files: list[str], cfg: dict[str, Any], tokens: Mapping[str, str]
) -> tuple[str, tuple[str, ...]]:
    """The known_hosts file accepted keys go to (the first user file) and the others read after it (the
    rest, then the global ones), each with ssh's tokens expanded once (~/.ssh/known_hosts.d/%k, say)."""
    files = [_expand(_with_tokens(p, tokens)) for p in (*user_files, *_global_known_hosts(cfg))]
    return files[0], tuple(files[1:])


def _with_tokens(path: str, tokens: Mapping[str, str]) -> str:
    """``path`` with its ``%x`` tokens replaced (an unknown one stays as written, as ssh refuses it)."""
    return re.sub(r"%(.)", lambda m: tokens.get(m.group(1), m.group(0)), path)


def _expand(path: str) -> str:
    return os.path.abspath(ssh_config_text.expand_home(path))


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


class SSHTransport(Transport):
    """One host over one SSH connection (optionally through ``ProxyJump`` hosts)."""

    engine_socket = ENGINE_SOCKET  # the engine's API socket on the host
    engine_hello = HELLO  # the script session's greeting: may the engine's socket be reached?

    # One lock for the process: every transport may append to the same known_hosts file.
    _known_hosts_lock = threading.Lock()

    def __init__(self, host: Host, options: SSHOptions | None = None) -> None:
        self.host = host
        self.name = host.name
        self.options = options or SSHOptions()
        self._label = str(host)
        self._transport: paramiko.Transport | None = None
        self._hops: list[paramiko.Transport] = []
        # The first session channel, asked for with the login (agent.hosts.pipelined_login).
        self._first_session: PendingChannel | None = None
        self._first_session_lock = threading.Lock()
        self._connect_lock = threading.Lock()
        self._login_user = host.user
        self._timeout = self.options.connect_timeout or DEFAULT_CONNECT_TIMEOUT  # the target's, once known
        # The inventory's for this host wins, as Ansible's ansible_become_password wins over -K.
        self._become_password = host.become_password or self.options.become_password
        # Random per connection so no command output can imitate them.
        token = secrets.token_hex(8)
        self._sudo_prompt = f"[trust-agent-sudo-{token}]"
        self._sudo_marker = f"[trust-agent-started-{token}]"
        self._session: paramiko.Channel | None = None
        self._session_token = ""
        self._session_lock = threading.Lock()
        self._no_session = False
        self._session_proven = False  # a script has run to its end in the current session
        self._session_refused: AuthenticationError | None = None  # sudo refused while warming it
        self._engine_chan: paramiko.Channel | None = None
        self._engine_outbox: _ChannelReply | None = None  # a request waiting for its channel to open
        self._engine_refused = False  # the host (or this paramiko) did not open the engine's socket
        # From the script session's greeting: True where dockerd is stopped and reaching its socket
        # would start it (agent.hosts.engine_wake); None until a session has opened.
        self._engine_asleep: bool | None = None

    # --- connection ------------------------------------------------------------------------------

    def connect(self) -> None:
        """Open and authenticate the connection (idempotent). Raises the HostError family."""
        if self.host.refused:
            raise UnreachableError(f"{self._label}: {self.host.refused}")
        with self._connect_lock:
            if self._transport is not None and self._transport.is_active():
                return
            self._close_all()
            config = self._ssh_config()
            target = self._resolve(config)
            hops: list[paramiko.Transport] = []
            try:
                sock = self._jump_sock(target, config, hops)
                transport, first_session = self._handshake(target, sock, first_session=True)
            except BaseException:
                for hop in reversed(hops):
                    hop.close()
                raise
            transport.set_keepalive(self.options.keepalive)
            self._transport, self._hops = transport, hops
            self._first_session = first_session
            self._login_user = target.user
            self._timeout = target.connect_timeout

    def _ssh_config(self) -> _SSHConfig:
        """ssh_config as ssh reads it for this host: where the inventory's ssh args give ``-F FILE`` (the
        last one, as ssh), that file alone (``none``: no file), relative Includes under ``~/.ssh``; else
        the run's files."""
        given = [value for name, value in self.host.ssh_options if name == ssh_args.CONFIG_FILE]
        if not given:
            return _SSHConfig(self.options.ssh_config, self.options.system_ssh_config)
        if given[-1].lower() == "none":
            return _SSHConfig(None)
        # Taken as written, as ssh opens it: no shell comes between Ansible's ssh args and ssh, and
        # ssh does not expand ~ in -F (`ssh -F '~/x'` reads ./~/x), so ~ is a directory name there.
        path = os.path.abspath(given[-1])
        if not os.path.isfile(path):
            # ssh stops there too ("Can't open user config file"), rather than read another config.
            raise UnreachableError(
                f"{self._label}: cannot read the ssh config file the inventory's ssh args name with "
                f"-F {given[-1]}: {_not_a_config_file(given[-1], path)}"
            )
        return _SSHConfig(path)

    def _resolve(self, config: _SSHConfig) -> _Target:
        host = self.host
        _refuse_unsafe_names(host, self._label)
        cfg = config.lookup(host.address, _given_on_command_line(host))
        _take_inventory_options(cfg, host)
        hostname, port, user = _endpoint(cfg, host)
        keys = _as_list(cfg.get("identityfile"))
        if host.identity_file and host.identity_file not in keys:
            # First, unless the ssh args placed it (ansible_ssh_args' -i come before it).
            keys.insert(0, host.identity_file)
        # The user's files: the command line's (for every host), else the inventory's, else ssh_config's
        # (which may list several, each read); the first is where accepted keys go.
        if self.options.known_hosts or host.known_hosts:
            user_files = [self.options.known_hosts or host.known_hosts or ""]
        else:
            user_files = _paths(cfg.get("userknownhostsfile")) or list(DEFAULT_USER_KNOWN_HOSTS)
        tokens = _path_tokens(host.address, hostname, port, user, cfg.get("hostkeyalias"))
        known, others = _known_hosts_files(user_files, cfg, tokens)
        return _Target(
            label=self._label,
            hostname=hostname,
            port=port,
            user=user,
            key_files=_key_paths("IdentityFile", keys, tokens),
            known_hosts=known,
            other_known_hosts=others,
            host_key_alias=cfg.get("hostkeyalias"),
            proxy_jump=_proxy_jump(cfg),
            proxy_command=proxy_command.command_for(_proxy_command(cfg), host.address),
            certificate_files=_key_paths("CertificateFile", _as_list(cfg.get("certificatefile")), tokens),
            identities_only=identities.identities_only(cfg.get("identitiesonly")),
            agent=self._agent(cfg, hostname, user),
            connect_timeout=self._connect_timeout(cfg),
            hash_known_hosts=_hash_known_hosts(cfg),
        )

    def _agent(self, cfg: dict[str, Any], hostname: str, user: str) -> str | None:
        if not self.options.use_agent:
            return None
        return identities.agent_socket(
            cfg.get("identityagent"),
            home=ssh_config_text.home(),
            user=ssh_config_text.local_user(),
            hostname=hostname,
            remote_user=user,
        )

    def _connect_timeout(self, cfg: dict[str, Any]) -> float:
        """The command line's, else ssh_config's ``ConnectTimeout``, else the default."""
        if self.options.connect_timeout is not None:
            return self.options.connect_timeout
        seconds = _config_connect_timeout(cfg, self._label)
        return DEFAULT_CONNECT_TIMEOUT if seconds is None else seconds

    def _hop_connect_timeout(self, cfg: dict[str, Any], label: str, final: _Target) -> float:
        """A jump host's time to connect: the command line's (the run's, for every connection), else
        its own ssh_config ``ConnectTimeout`` but no longer than the target's (ssh's ssh for the jump
        reads its own; the target's ssh waits for the target's banner through it no longer than the
        target's), else the target's."""
        own = _config_connect_timeout(cfg, label)
        if self.options.connect_timeout is not None or own is None:
            return final.connect_timeout
        return min(own, final.connect_timeout)

    def _jump_target(self, spec: str, config: _SSHConfig, final: _Target) -> _Target:
        try:
            return self._parse_jump(spec, config, final)
        except ValueError:
            raise InputError(f"{self._label}: ProxyJump {spec!r} is not [user@]host[:port]") from None

    def _parse_jump(self, spec: str, config: _SSHConfig, final: _Target) -> _Target:
        user: str | None = None
        spec = spec.removeprefix("ssh://").rstrip("/")  # ssh also takes ssh://[user@]host[:port]
        if "@" in spec:
            user, spec = spec.rsplit("@", 1)
        port: int | None = None
        if spec.startswith("["):  # [2001:db8::1]:2222
            addr, _, rest = spec[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else None
        elif spec.count(":") == 1:
            addr, _, p = spec.partition(":")
            port = int(p)
        else:
            addr = spec
        # ssh runs a jump as an ssh of its own (`ssh -l USER -p PORT -W [%h]:%p JUMP`, with -F and -v
        # alone passed on): it reads the jump's ssh_config, and none of the target's command line or
        # Host block (its user, -i, IdentitiesOnly, IdentityAgent, ConnectTimeout, known_hosts).
        cfg = config.lookup(addr, tuple((n, str(v)) for n, v in (("user", user), ("port", port)) if v))
        keys = _as_list(cfg.get("identityfile"))  # none: the agent's keys and the default files
        hostname = str(cfg.get("hostname") or addr)
        user = str(cfg.get("user") or ssh_config_text.local_user())  # the spec's, the jump's User, or ours
        port = port or int(cfg.get("port", 22))
        tokens = _path_tokens(addr, hostname, port, user, cfg.get("hostkeyalias"))
        known, others = _known_hosts_files(self._hop_user_known_hosts(cfg), cfg, tokens)
        label = f"{self._label} via {spec}"
        return _Target(
            label=label,
            hostname=hostname,
            port=port,
            user=user,
            key_files=tuple(dict.fromkeys(_key_paths("IdentityFile", keys, tokens))),
            known_hosts=known,
            other_known_hosts=others,
            host_key_alias=cfg.get("hostkeyalias"),
            proxy_jump=_proxy_jump(cfg),  # followed where this hop is the first (_route)
            proxy_command=proxy_command.command_for(_proxy_command(cfg), addr),
            certificate_files=_key_paths("CertificateFile", _as_list(cfg.get("certificatefile")), tokens),
            identities_only=identities.identities_only(cfg.get("identitiesonly")),
            agent=self._agent(cfg, hostname, user),
            connect_timeout=self._hop_connect_timeout(cfg, label, final),
            hash_known_hosts=_hash_known_hosts(cfg),
        )

    def _hop_user_known_hosts(self, cfg: dict[str, Any]) -> list[str]:
        """A jump host's user known_hosts files: --known-hosts (the run's, for every host), else its own
        ssh_config's ``UserKnownHostsFile``, else the default; never the target's, as ssh's ssh for the
        jump is given none of the target's options."""
        if self.options.known_hosts:
            return [self.options.known_hosts]
        return _paths(cfg.get("userknownhostsfile")) or list(DEFAULT_USER_KNOWN_HOSTS)

    def _jump_sock(self, target: _Target, config: _SSHConfig, hops: list[paramiko.Transport]) -> Any:
        """A socket to ``target``: direct TCP, or a ``direct-tcpip`` channel through each jump host."""
        route = self._route(target, config)
        sock: Any = self._proxied(route[0]) if route[0].proxy_command else self._tcp(route[0])
        for hop, nxt in itertools.pairwise(route):
            transport, _ = self._handshake(hop, sock, first_session=False)
            hops.append(transport)
            with self._boundary(
                hop.label, f"connect to {nxt.hostname} port {nxt.port} through the jump host"
            ):
                sock = transport.open_channel(
                    "direct-tcpip",
                    (nxt.hostname, nxt.port),
                    ("127.0.0.1", 0),
                    timeout=hop.connect_timeout,
                )
        return sock

    def _route(self, target: _Target, config: _SSHConfig) -> list[_Target]:
        """Every host on the way to ``target``, the first reached first. ssh reaches its first jump host
        as ``ssh -W … FIRST`` with FIRST's own ssh_config, so FIRST's own ProxyJump (or ProxyCommand)
        applies to it, outward in turn; each later hop is given ``-J`` instead, which overrides its own."""
        hops = [self._jump_target(s, config, target) for s in _jump_specs(target.proxy_jump)]
        while hops and hops[0].proxy_jump and len(hops) <= MAX_JUMPS:
            first = hops[0]
            outer = [self._jump_target(s, config, target) for s in _jump_specs(first.proxy_jump)]
            if any(_same_login(hop, first) for hop in outer):
                raise InputError(
                    f"{first.label}: jump host loop: its own ssh_config ProxyJump {first.proxy_jump!r} "
                    "leads back to it (ssh refuses it too); give it `ProxyJump none` in its Host block"
                )
            hops = [*outer, replace(first, proxy_jump=None), *hops[1:]]
        if len(hops) > MAX_JUMPS:
            raise InputError(
                f"{self._label}: more than {MAX_JUMPS} jump hosts on the way (ProxyJump, with each first "
                "jump host's own ProxyJump)"
            )
        return [*hops, target]

    def _proxied(self, target: _Target) -> Any:
        """The first hop through its ProxyCommand (where ProxyJump is given too, ProxyJump wins: the first
        hop is then the jump host, with its own ProxyCommand, if any)."""
        assert target.proxy_command is not None
        with self._boundary(target.label, "ProxyCommand"):
            # As ssh(1) runs it: `exec` makes the command the shell's own process, so closing the
            # connection ends it, not a shell that would leave it running (ssh -W still waiting on a
            # host that does not answer) and holding its stderr open.
            return proxy_command.start(f"exec {target.proxy_command}")

    def _tcp(self, target: _Target) -> socket.socket:
        # The port in the message, as ssh's "connect to host H port P": a refusal names where it was.
        with self._boundary(target.label, f"connect to port {target.port}"):
            sock = socket.create_connection((target.hostname, target.port), timeout=target.connect_timeout)
            # Requests and answers are small and often back to back (a channel closed, the next opened):
            # without this, Nagle's algorithm holds the second until the first is acknowledged (~40 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock

    def _handshake(
        self, target: _Target, sock: Any, *, first_session: bool
    ) -> tuple[paramiko.Transport, PendingChannel | None]:
        """The authenticated transport, and (with ``first_session``, where the login allowed) a session
        channel asked for with the login."""
        known = self._load_known_hosts(target)
        name = target.host_key_alias or known_hosts_name(target.hostname, target.port)
        known_types = known.key_types(name)
        transport: paramiko.Transport | None = None
        started = time.monotonic()
        try:
            with self._boundary(target.label, "SSH handshake"):
                transport = paramiko.Transport(sock)
                acknowledge_global_requests(transport)  # the first channel opens ~40 ms sooner
                timeout = target.connect_timeout
                transport.banner_timeout = timeout
                transport.auth_timeout = timeout
                transport.handshake_timeout = timeout
                _offer_host_key_types(
                    transport, known_types, certificates=bool(known.markers.authorities_for(name))
                )
                try:
                    transport.start_client(timeout=timeout)
                except EOFError:
                    if _handshake_ran_out(transport):
                        raise _handshake_timed_out(target, timeout) from None
                    raise  # the host closed the connection
                if not transport.is_active() or not transport.initial_kex_done:
                    # start_client returns quietly when its timeout passes mid-negotiation.
                    raise _handshake_timed_out(target, timeout)
            key = transport.get_remote_server_key()
            self._check_host_key(target, name, key, known, known_types)
            return transport, self._authenticate(transport, target, first_session)
        except BaseException as exc:
            unreachable = isinstance(exc, UnreachableError)
            timed_out = unreachable and time.monotonic() - started >= target.connect_timeout
            # Before closing, which ends a proxy command: how it ended by itself, where it did (one
            # that timed out was ended by paramiko giving up on it: its status says nothing).
            ended = proxy_command.ended(sock) if unreachable and not timed_out else None
            if transport is not None:
                transport.close()
            else:
                sock.close()
            if ended:
                raise UnreachableError(f"{target.label}: {ended}") from None
            if timed_out and isinstance(sock, paramiko.ProxyCommand):
                raise UnreachableError(_no_answer_through_proxy(target)) from None
            raise

    def _load_known_hosts(self, target: _Target) -> host_certs.KnownHosts:
        """The user's known_hosts, then the global ones, as ssh(1) reads them."""
        paths = (target.known_hosts, *target.other_known_hosts)
        return host_certs.KnownHosts.of(tuple(_read_known_hosts(path, target.label) for path in paths))

    def _check_host_key(
        self,
        target: _Target,
        name: str,
        key: paramiko.PKey,
        known: host_certs.KnownHosts,
        known_types: set[str],
    ) -> None:
        kind = key.get_name()
        shown = f"{kind} {fingerprint(key)}"
        if key.asbytes() in known.markers.revoked_for(name):
            raise HostKeyError(f"{target.label}: host key {shown} is @revoked in {_files(target)}")
        refused: host_certs.CertificateError | None = None
        if host_certs.is_certificate(key):
            try:
                host_certs.check(
                    key, name, target.host_key_alias or target.hostname, known.markers, time.time()
                )
                return
            except host_certs.CertificateError as exc:
                refused = exc  # as ssh(1): the key itself may still be in known_hosts
        if kind in known_types:
            if not known.holds(name, key):
                raise HostKeyError(
                    f"{target.label}: host key CHANGED: {shown} is not the {kind} key in "
                    f"{_files(target)}; {_if_reinstalled(target, name)}"
                )
            return
        if refused is not None:
            # Not taken on first use either: a host meant to prove itself by its CA did not.
            raise HostKeyError(f"{target.label}: host certificate refused: {refused}")
        if known_types:
            # Known by a key of another type, which it no longer shows: not a new host but a changed
            # one, as ssh(1) says ("REMOTE HOST IDENTIFICATION HAS CHANGED"), with or without
            # --accept-new-host-keys.
            raise HostKeyError(
                f"{target.label}: host key CHANGED: it shows {shown}, and {_files(target)} has only "
                f"{', '.join(sorted(known_types))} for it; {_if_reinstalled(target, name)}"
            )
        if not self.options.accept_new_host_keys:
            raise HostKeyError(
                f"{target.label}: host key not in {_files(target)} ({shown}); add it or pass --accept-new-host-keys"
            )
        self._append_known_host(target.known_hosts, name, key, hashed=target.hash_known_hosts)

    def _append_known_host(self, path: str, name: str, key: paramiko.PKey, *, hashed: bool) -> None:
        written = paramiko.HostKeys.hash_host(name) if hashed else name
        line = f"{written} {key.get_name()} {key.get_base64()}\n"
        with self._known_hosts_lock:
            current, _ = _read_known_hosts(path, name)
            entry = current.lookup(name)
            if entry is not None and entry.get(key.get_name()) == key:
                return  # another transport to the same host got here first
            directory = os.path.dirname(path)
            if directory == _expand(os.path.dirname(DEFAULT_KNOWN_HOSTS)):
                os.makedirs(directory, mode=0o700, exist_ok=True)  # ~/.ssh, as ssh makes it; no other
            elif not os.path.isdir(directory):
                raise HostKeyError(
                    f"cannot record the host key in {path}: {directory} is not a directory (ssh makes only "
                    "~/.ssh); create it, or name a known_hosts file in one that is there"
                )
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="ascii") as f:
                f.write(line)

    def _authenticate(
        self, transport: paramiko.Transport, target: _Target, first_session: bool
    ) -> PendingChannel | None:
        tried: list[str] = []  # the keys refused, and why a named file gave none

        def closed_after(offered: int) -> AuthenticationError:
            # sshd ends the connection once MaxAuthTries keys (6 by default) were refused.
            return AuthenticationError(
                f"{target.label}: authentication as {target.user} failed: the host closed the "
                f"connection after {offered} keys ({'; '.join(tried)}); sshd takes MaxAuthTries keys "
                "(6 by default): name the key (IdentityFile) and set IdentitiesOnly yes"
            )

        offered = 0
        for key, what in self._keys(target, tried):
            if offered and not transport.is_active():
                raise closed_after(offered)
            offered += 1
            try:
                with self._boundary(target.label, "authentication"):
                    session = pipelined_login.login(transport, target.user, key, with_session=first_session)
            except AuthenticationError:
                tried.append(what)
                continue
            except UnreachableError:
                # The host's close can overtake the next key on its way (EOFError): the same end.
                if offered > 1 and not transport.is_active():
                    tried.append(what)
                    raise closed_after(offered) from None
                raise
            if transport.is_authenticated():
                return session
        detail = "; ".join(tried) if tried else "no keys to offer"
        if target.label == self._label and (name := _password_var(self.host)):
            detail += f"; the inventory's {name} is not used: trust-agent logs in with keys only"
        raise AuthenticationError(f"{target.label}: authentication as {target.user} failed ({detail})")

    def _keys(self, target: _Target, notes: list[str]) -> Iterator[tuple[paramiko.PKey, str]]:
        """The keys to offer, in order (``agent.hosts.identities``)."""
        wanted = identities.Identities(
            files=target.key_files,
            certificate_files=target.certificate_files,
            identities_only=target.identities_only,
            agent=target.agent,
        )
        return identities.offered(wanted, notes, look_for_keys=self.options.look_for_keys)

    @contextmanager
    def _boundary(self, label: str, phase: str) -> Iterator[None]:
        """Map paramiko/socket exceptions raised during ``phase`` to the HostError family."""
        try:
            yield
        except HostError:
            raise
        except paramiko.AuthenticationException as exc:
            raise AuthenticationError(f"{label}: {phase} refused: {exc}") from None
        except TimeoutError:
            raise UnreachableError(f"{label}: {phase} timed out") from None
        except NoValidConnectionsError as exc:
            raise UnreachableError(f"{label}: {phase} failed: {exc}") from None
        except paramiko.ChannelException as exc:
            raise UnreachableError(f"{label}: {phase} failed: {exc.text}") from None
        except paramiko.SSHException as exc:
            raise UnreachableError(f"{label}: {phase} failed: {exc or type(exc).__name__}") from None
        except socket.gaierror as exc:
            raise UnreachableError(f"{label}: cannot resolve address: {exc.strerror}") from None
        except (OSError, EOFError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise UnreachableError(f"{label}: {phase} failed: {reason}") from None

    def _require(self) -> paramiko.Transport:
        if self._transport is None or not self._transport.is_active():
            self.connect()
        assert self._transport is not None
        return self._transport

    # --- commands --------------------------------------------------------------------------------

    def _via_sudo(self) -> bool:
        """Whether commands start through sudo (becoming another user than the login's root)."""
        host = self.host
        return host.become and not (self._login_user == "root" and (host.become_user or "root") == "root")

    def _wrap(self, command: str) -> tuple[str, bool]:
        """The command as sent, and whether it waits for the sudo handshake."""
        target = self.host.become_user or "root"
        if not self._via_sudo():
            return command, False
        if self._become_password is None:
            return f"sudo -n -u {shlex.quote(target)} -- sh -c {shlex.quote(command)}", False
        # The marker proves sudo is done with stdin before any of the caller's stdin is sent, so
        # the password never reaches the command, even when sudo did not ask for it.
        script = f"printf '%s' {shlex.quote(self._sudo_marker)} >&2\n{command}"
        return (
            f"sudo -S -p {shlex.quote(self._sudo_prompt)} -u {shlex.quote(target)} "
            f"-- sh -c {shlex.quote(script)}",
            True,
        )

    def _start(self, command: str, deadline: float) -> tuple[paramiko.Channel, bytes]:
        """Exec ``command`` (through sudo when becoming) on a new channel; returns it and early stderr."""
        transport = self._require()
        wrapped, handshake = self._wrap(command)
        with self._boundary(self._label, "opening a channel"):
            wait = max(0.1, min(self._timeout, _left(deadline)))
            chan = self._take_first_session(wait) or transport.open_session(timeout=wait)
            chan.exec_command(wrapped)
        if not handshake:
            return chan, b""
        try:
            return chan, self._sudo_handshake(chan, deadline)
        except BaseException:
            chan.close()
            raise

    def _take_first_session(self, timeout: float) -> paramiko.Channel | None:
        """The session channel asked for with the login, once (None where there is none, or the host
        did not open it: the caller asks for one itself)."""
        pending = self._pop_first_session()
        if pending is None:
            return None
        try:
            return pending.result(timeout)
        except ChannelUnavailable:
            return None

    def _pop_first_session(self) -> PendingChannel | None:
        with self._first_session_lock:
            pending, self._first_session = self._first_session, None
        return pending

    def _sudo_handshake(self, chan: paramiko.Channel, deadline: float) -> bytes:
        prompt, marker = self._sudo_prompt.encode(), self._sudo_marker.encode()
        password = (self._become_password or "").encode() + b"\n"
        buf = b""
        answered = False
        while True:
            if _left(deadline) <= 0:
                raise CommandTimeout(f"{self._label}: sudo did not answer in time")
            chan.settimeout(_left(deadline))
            try:
                data = chan.recv_stderr(_CHUNK)
            except TimeoutError:
                raise CommandTimeout(f"{self._label}: sudo did not answer in time") from None
            buf += data
            if marker in buf:
                return buf.split(marker, 1)[1]
            if buf.count(prompt) > 1:
                raise AuthenticationError(f"{self._label}: sudo refused the become password")
            if prompt in buf and not answered:
                answered = True
                with suppress(OSError):  # sudo ended as it asked: what it said is read below
                    chan.sendall(password)
            if not data:  # sudo exited without running the command
                if answered:
                    raise self._sudo_refused(buf.replace(prompt, b""))
                return buf.replace(prompt, b"")
            if len(buf) > _CHUNK:  # marker is never this far in
                return buf

    def _sudo_refused(self, said: bytes) -> AuthenticationError:
        """sudo was given the become password and ran nothing: a wrong password, once sudo's
        ``passwd_tries`` are used up (1 where a site sets it so, against lockouts), or a sudoers that
        lets the login run nothing as the target. Asking again would only cost another attempt."""
        lines = said.decode("utf-8", "replace").strip().splitlines()
        words = lines[-1] if lines else "no message"
        if "incorrect password" in words:
            return AuthenticationError(f"{self._label}: sudo refused the become password ({words})")
        return AuthenticationError(f"{self._label}: sudo ran nothing after the become password: {words}")

    def _sudo_needs_password(self) -> AuthenticationError:
        """``sudo -n`` refused for want of a password: the ways out, for a platform engineer."""
        how = "give it with --become-password-env VAR or --ask-become-pass"
        if self.host.become_password_note:
            how = f"{self.host.become_password_note}; pass it with --become-password-env or --ask-become-pass"
        return AuthenticationError(
            f"{self._label}: sudo needs a password ({how}); or let {self._login_user} use sudo without one "
            "(NOPASSWD in sudoers), or log in as root"
        )

    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        limit = self.options.command_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        chan, early_err = self._start(command, deadline)
        try:
            out, err = self._exchange(chan, stdin, deadline, limit)
            if not chan.status_event.wait(_left(deadline)):
                raise CommandTimeout(f"{self._label}: command timed out after {limit:g}s")
            # The EOF came, then the connection went (a command killed by a signal has no status either).
            if chan.exit_status == -1 and not chan.get_transport().is_active():
                raise UnreachableError(f"{self._label}: {_LOST}")
            status = chan.exit_status
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise UnreachableError(f"{self._label}: {_LOST}: {exc}") from None
        finally:
            chan.close()
        err = early_err + err
        if self.host.become and status == 1 and _sudo_wants_password(err):
            raise self._sudo_needs_password()
        return CommandResult(status, out, err)

    def _exchange(
        self, chan: paramiko.Channel, stdin: bytes, deadline: float, limit: float
    ) -> tuple[bytes, bytes]:
        """Send stdin and read stdout/stderr together, so neither side can block the other."""
        pump = _Pump(chan, stdin, end_stdin=True, label=self._label)
        while True:
            if _left(deadline) <= 0:
                raise CommandTimeout(f"{self._label}: command timed out after {limit:g}s")
            busy = pump.step()
            if pump.drained():
                return bytes(pump.out), bytes(pump.err)
            if not busy:
                pump.idle(deadline)

    def run_script(self, script: str, *args: str, timeout: float | None = None) -> CommandResult:
        """Run ``script`` in this host's one script session (see ``agent.hosts.script_session``)."""
        if self._no_session:
            return super().run_script(script, *args, timeout=timeout)
        limit = self.options.command_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        with self._session_lock:
            if self._session_refused is not None:
                raise self._session_refused
            try:
                if not _alive(self._session):
                    self._open_session(deadline)
                assert self._session is not None
                result = self._session_exchange(
                    self._session, script_session.request(script, args), deadline, limit
                )
                self._session_proven = True
                return result
            except _SessionEnded as ended:
                self._drop_session()
                if self._session_proven:
                    raise UnreachableError(f"{self._label}: the script session ended: {ended}") from None
                # The loop could not start here, or its first script not (no head?): one exec per
                # script instead.
                self._no_session = True
            except (CommandTimeout, UnreachableError):
                self._drop_session()  # its state is unknown after a timeout or a lost connection
                raise
            except (OSError, EOFError, paramiko.SSHException) as exc:
                self._drop_session()
                raise UnreachableError(f"{self._label}: {_LOST}: {exc}") from None
        return super().run_script(script, *args, timeout=timeout)

    def _warm_session(self, timeout: float, probe: str | None = None) -> bool:
        """Open the script session now if it is not (errors are left to the first script to meet; a
        refused sudo password is kept for it, as sudo must be given a wrong password once only).
        Whether its greeting said the file ``probe`` exists (False where no session opened here)."""
        if self._no_session or self._session_refused or not self._session_lock.acquire(blocking=False):
            return False
        try:
            if not _alive(self._session):
                return self._open_session(time.monotonic() + timeout, probe)
        except AuthenticationError as refused:
            self._drop_session()
            self._session_refused = refused
        except (HostError, _SessionEnded):
            self._drop_session()  # the first script meets it again, and falls back as it must
        finally:
            self._session_lock.release()
        return False

    def _open_session(self, deadline: float, probe: str | None = None) -> bool:
        """Start the script loop and read its greeting, which says whether the engine may be reached;
        returns whether it said the file ``probe`` exists."""
        self._drop_session()
        self._session_proven = False
        self._session_token = token = script_session.new_token()
        hello_text = self.engine_hello + (script_session.file_probe(probe) if probe else "")
        self._session, _ = self._start(script_session.loop_command(token, hello_text), deadline)
        hello = script_session.hello_pattern(token)
        pump = _Pump(self._session, b"", end_stdin=False, label=self._label)
        while True:
            if _left(deadline) <= 0:
                self._drop_session()
                raise CommandTimeout(f"{self._label}: the script session did not start in time")
            busy = pump.step()
            match = hello.search(pump.out)
            if match:
                self._engine_asleep = match.group(1) != b"awake"
                return probe is not None and match.group(2) is not None
            if pump.drained():
                self._drop_session()
                raise _SessionEnded.of(pump)
            if not busy:
                pump.idle(deadline)

    def _drop_session(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _session_exchange(
        self, chan: paramiko.Channel, payload: bytes, deadline: float, limit: float
    ) -> CommandResult:
        """Send one script and read its output up to the loop's end markers on stdout and stderr."""
        done = script_session.done_pattern(self._session_token)
        err_done = script_session.stderr_done(self._session_token)
        # The loop reads the next script from the same stdin: it stays open.
        pump = _Pump(chan, payload, end_stdin=False, label=self._label)
        status: int | None = None
        scanned = 0  # stdout before this offset holds no end marker: only new bytes are searched
        while True:
            if _left(deadline) <= 0:
                raise CommandTimeout(f"{self._label}: command timed out after {limit:g}s")
            busy = pump.step()
            outbox = self._engine_outbox
            if outbox is not None and outbox.send_when_open():
                busy = True  # the engine's request is out while the script runs
            if status is None and len(pump.out) > scanned:
                match = done.search(pump.out, max(0, scanned - _MARKER_SPAN))
                scanned = len(pump.out)
                if match:
                    status = int(match.group(1))
                    del pump.out[match.start() :]
            if status is not None and pump.err.endswith(err_done):
                return CommandResult(status, bytes(pump.out), bytes(pump.err[: -len(err_done)]))
            if pump.drained():
                raise _SessionEnded.of(pump)
            if not busy:
                # The engine channel's opening does not wake select(): look again soon while it is due.
                pump.idle(deadline, _OUTBOX_POLL if self._engine_outbox is not None else _POLL)

    # --- the engine's API socket, over this connection ----------------------------------------------

    def engine_request(
        self, path: str, timeout: float, *, where_file: tuple[str, str] | None = None
    ) -> PendingReply | None:
        """Send ``GET path`` to the host's engine socket through a streamlocal channel kept open for
        this connection (sshd connects to the socket: no process starts on the host).

        Where the channel is not open yet, it is asked for and the request goes out the moment it opens
        (the script session's pump sends it while a script runs, or :meth:`_ChannelReply.wait`), so the
        answer costs no round trip of its own. None where the host refused the channel, or where dockerd
        is stopped and connecting would start it (``agent.hosts.engine_wake``).

        ``where_file`` is known only where this request opens the script session: its greeting says
        whether the file exists (a shell test in the same round trip). Otherwise ``path`` is sent."""
        request_bytes(path)  # a bad path fails here, whichever goes out
        if self._engine_outbox is not None:  # one request at a time: the one before goes out first
            self._engine_outbox.open()
        chan = self._engine_chan
        if chan is not None and _alive(chan):
            reply = _ChannelReply(self, path, timeout)
            return reply if reply.send(chan) else None
        self._drop_engine_channel()
        found = False
        if where_file is not None and self._engine_asleep is None:
            found = self._warm_session(timeout, where_file[0])  # the greeting also answers this
        pending = self._request_engine_socket(timeout)
        if pending is None:
            return None
        if where_file is not None and found:
            path = where_file[1]
        reply = _ChannelReply(self, path, timeout, pending)
        self._engine_outbox = reply
        return reply

    def _request_engine_socket(self, timeout: float) -> PendingChannel | None:
        """Ask for a channel to the engine's socket without waiting for the answer; None where the host
        refused one on this connection, or where dockerd is stopped behind its socket (or that is not
        known: no script session here), as connecting would start it."""
        if self._engine_refused:
            return None
        if self._engine_asleep is None:
            self._warm_session(timeout)  # its greeting says whether the engine may be reached
        if self._engine_asleep is not False:
            return None
        try:
            return request_streamlocal(self._require(), self.engine_socket)
        except StreamLocalUnavailable:
            self._engine_refused = True
            return None

    def _open_engine_socket(
        self, timeout: float, pending: PendingChannel | None = None
    ) -> paramiko.Channel | None:
        """A new channel to the engine's socket (``pending``'s, where one was asked for); None as for
        :meth:`_request_engine_socket`, or where the host refused it."""
        if pending is None:
            pending = self._request_engine_socket(timeout)
        if pending is None:
            return None
        try:
            return pending.result(min(timeout, self._timeout))
        except StreamLocalUnavailable:
            # Not asked again on this connection: the scripts read the API on the host instead (an
            # engine that was down at the time is found there as well).
            self._engine_refused = True
            return None

    def _engine_unanswered(self) -> None:
        """No answer in time, or a broken one: the rest of this connection asks on the host, where
        curl's own time limit and the classic fallbacks apply (a hung engine is not waited on twice)."""
        self._drop_engine_channel()
        self._engine_refused = True

    def _drop_engine_channel(self) -> None:
        self._engine_outbox = None
        if self._engine_chan is not None:
            self._engine_chan.close()
            self._engine_chan = None

    def docker_api(self, timeout: float = 30.0) -> Any:
        """A ``docker.APIClient`` over this connection: each of its connections a channel to the engine's
        socket, or, where the host refuses those, ``docker system dial-stdio`` run on the host."""
        import docker

        self._require()

        def open_stream() -> paramiko.Channel:
            chan = self._open_engine_socket(timeout)
            if chan is None and self._engine_asleep:
                raise UnreachableError(
                    f"{self._label}: dockerd is stopped and its socket would start it: not reached"
                )
            if chan is None:
                chan = self._dial_stdio(time.monotonic() + timeout)
            chan.settimeout(timeout)
            return chan

        # A TCP URL makes no connection by itself (the version is fixed); the adapter replaces it.
        client = docker.APIClient(
            base_url="tcp://127.0.0.1:2375", version=DOCKER_API_VERSION, timeout=int(timeout)
        )
        adapter = _channel_adapter(open_stream, timeout)
        client.mount("http+docker://ssh", adapter)
        client._custom_adapter = adapter
        # The SDK reads attach/stream sockets from ``.channel`` when the URL says ssh.
        client.base_url = "http+docker://ssh"
        return client

    def _dial_stdio(self, deadline: float) -> paramiko.Channel:
        """A channel running ``docker system dial-stdio``, past whatever the login shell printed first
        (a .bashrc's echo came before the engine's HTTP reply, and the canary read it as one): the
        shell prints a line of its own just before the command takes the stream over."""
        marker = f"@@ta-stream-{secrets.token_hex(8)}".encode()
        chan, _ = self._start(f"printf '%s\\n' {marker.decode()}; exec docker system dial-stdio", deadline)
        seen = b""
        while marker + b"\n" not in seen:
            if _left(deadline) <= 0 or len(seen) > _PREAMBLE_LIMIT:
                chan.close()
                raise CommandTimeout(f"{self._label}: docker system dial-stdio did not start in time")
            chan.settimeout(_left(deadline))
            try:
                data = chan.recv(_CHUNK)
            except TimeoutError:
                data = b""
            if not data and (chan.exit_status_ready() or chan.eof_received):
                chan.close()
                raise CommandError(f"{self._label}: docker system dial-stdio did not start")
            seen += data
        if seen.split(marker + b"\n", 1)[1]:
            chan.close()  # nothing comes before a request: bytes here are not the engine's
            raise CommandError(f"{self._label}: docker system dial-stdio printed before any request")
        return chan

    def close(self) -> None:
        with self._connect_lock:
            self._close_all()

    def _close_all(self) -> None:
        self._drop_session()
        unused = self._pop_first_session()
        if unused is not None:
            unused.discard()  # closed with the transport below, if the host opened it
        self._drop_engine_channel()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for hop in reversed(self._hops):
            hop.close()
        self._hops = []


class _ChannelReply:
    """The answer to a GET on the transport's engine channel, read when asked for. Made while the
    channel is still opening, it holds the request until the channel is there."""

    def __init__(
        self, owner: SSHTransport, path: str, timeout: float, pending: PendingChannel | None = None
    ) -> None:
        self.owner = owner
        self.path = path
        self.request = request_bytes(path)
        self.timeout = timeout
        self.pending = pending
        self.chan: paramiko.Channel | None = None
        self.timed_out = False

    def send_when_open(self) -> bool:
        """Send the request if its channel has opened (never waits); whether it is settled."""
        if self.pending is None or not self.pending.answered():
            return False
        self.open()
        return True

    def open(self) -> None:
        """Wait for the channel, keep it for the connection, send the request on it."""
        pending, self.pending = self.pending, None
        owner = self.owner
        if owner._engine_outbox is self:
            owner._engine_outbox = None
        if pending is None:
            return
        chan = owner._open_engine_socket(self.timeout, pending)
        if chan is not None:
            owner._engine_chan = chan
            self.send(chan)

    def send(self, chan: paramiko.Channel) -> bool:
        try:
            chan.settimeout(self.timeout)
            chan.sendall(self.request)
        except (OSError, EOFError, paramiko.SSHException):
            self.owner._drop_engine_channel()
            return False
        self.chan = chan
        return True

    def wait(self) -> EngineReply | None:
        if self.pending is not None:
            self.open()
        if self.chan is None:
            return None
        try:
            reply, closing = read_reply(self.chan)
        except (OSError, EOFError, paramiko.SSHException) as exc:  # BrokenReply is an OSError
            self.timed_out = isinstance(exc, TimeoutError)
            self.owner._engine_unanswered()
            return None
        if closing:
            self.owner._drop_engine_channel()
        return reply


class _SessionEnded(Exception):
    """The script session's shell exited before a script finished."""

    @classmethod
    def of(cls, pump: _Pump) -> _SessionEnded:
        """The shell's last words (its stderr's tail) as the reason."""
        return cls(bytes(pump.err).decode("utf-8", "replace").strip()[-300:] or "no output")


class _Pump:
    """Moves bytes both ways on one channel without blocking: stdin out, stdout and stderr in."""

    def __init__(self, chan: paramiko.Channel, stdin: bytes, *, end_stdin: bool, label: str) -> None:
        self.chan = chan
        self.label = label  # the host, as a lost connection's error names it
        self.pending = memoryview(stdin)
        self.end_stdin = end_stdin  # send EOF once stdin is out (a command), or keep it open (the loop)
        self.out = bytearray()
        self.err = bytearray()
        if end_stdin and not self.pending:
            chan.shutdown_write()

    def step(self) -> bool:
        """One non-blocking pass; whether anything moved."""
        chan, busy = self.chan, False
        if self.pending and chan.send_ready() and not chan.eof_received:
            sent = chan.send(bytes(self.pending[:_CHUNK]))
            self.pending = self.pending[sent:]
            if self.end_stdin and not self.pending:
                chan.shutdown_write()
            busy = True
        if chan.recv_ready():
            self.out += chan.recv(_CHUNK)
            busy = True
        if chan.recv_stderr_ready():
            self.err += chan.recv_stderr(_CHUNK)
            busy = True
        return busy

    def drained(self) -> bool:
        """The host closed its side and everything it sent has been read. Raises
        :class:`UnreachableError` where the connection went instead: paramiko then closes the channel
        without the host's EOF, which would otherwise be waited for until the command's time is up."""
        chan = self.chan
        if chan.recv_ready() or chan.recv_stderr_ready():
            return False
        if chan.eof_received:
            return True
        # Closed with no exit status (-1): by the connection going, or by a host that would not say how
        # the command ended; either way what it did is not known.
        if not chan.get_transport().is_active() or (chan.closed and chan.exit_status == -1):
            raise UnreachableError(f"{self.label}: {_LOST}")
        return chan.closed  # the host closed it after its exit status, without an EOF

    def idle(self, deadline: float, poll: float = _POLL) -> None:
        select.select([self.chan], [], [], min(poll, max(0.0, _left(deadline))))


def _sudo_wants_password(err: bytes) -> bool:
    """Whether ``err`` ends as ``sudo -n`` refusing ("sudo: a password is required", or "sudo: a terminal
    is required …"): its last line, after whatever the login's shell startup files wrote."""
    lines = err.strip().splitlines()
    return bool(lines) and lines[-1].startswith(b"sudo: a ")


def _alive(chan: paramiko.Channel | None) -> bool:
    """A channel open in both directions as far as the host has said."""
    return chan is not None and not chan.closed and not chan.eof_received


def _left(deadline: float) -> float:
    return deadline - time.monotonic()


# Parsed known_hosts files, shared by every transport of the process and keyed by
# the file's identity, so a changed file is read again.
_cache_lock = threading.Lock()
_known_hosts_cache: dict[str, tuple[tuple[int, int, int] | None, paramiko.HostKeys, host_certs.Markers]] = {}


# --- docker SDK over channels ----------------------------------------------------------------------


def _channel_adapter(opener: Callable[[], paramiko.Channel], timeout: float, max_pool_size: int = 4) -> Any:
    """A requests adapter whose HTTP connections are SSH channels (to the engine's socket, or running
    ``docker system dial-stdio``)."""
    import urllib3.connection
    from docker.transport.basehttpadapter import BaseHTTPAdapter
    from docker.transport.sshconn import SSHConnectionPool

    class Connection(urllib3.connection.HTTPConnection):
        def connect(self) -> None:
            self.sock = opener()  # type: ignore[assignment]

    class Pool(SSHConnectionPool):  # type: ignore[misc]
        # The SDK's SSH pool: it avoids fileno() churn when connections are reused.
        def _new_conn(self) -> Connection:
            return Connection("localhost", timeout=timeout)

    class Adapter(BaseHTTPAdapter):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.pool = Pool(ssh_client=None, timeout=timeout, maxsize=max_pool_size, host="localhost")

        def get_connection(self, url: str, proxies: Any = None) -> Any:
            return self.pool

        def close(self) -> None:
            super().close()
            self.pool.close()

    return Adapter()
