"""known_hosts as ssh(1) reads it, host certificates included.

A fleet whose hosts present certificates signed by a host CA lists the CA once in known_hosts
(``@cert-authority *.example.com ssh-ed25519 AAAA...``) instead of every host's key. paramiko reads a
host's certificate but checks nothing of it, and skips marker lines; this module reads the markers and
checks a certificate as OpenSSH's client does (sshconnect.c ``check_host_cert``): a host certificate
(not a user's), signed by a CA whose line matches the host, with a signature algorithm OpenSSH takes
(not SHA-1 RSA), valid now, naming the host among its principals (or naming none), with no critical
options. ``@revoked`` lines that match the host revoke keys, a CA's included. Key revocation lists
(``RevokedHostKeys``) are not read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.hosts.sshlib import paramiko

CERT_SUFFIX = "-cert-v01@openssh.com"
HOST_CERT = 2  # PROTOCOL.certkeys: SSH_CERT_TYPE_HOST
FOREVER = 2**64 - 1


@dataclass(frozen=True)
class MarkedKey:
    """One ``@cert-authority`` or ``@revoked`` line of known_hosts."""

    patterns: str  # the host patterns, comma-separated, as the line has them
    key_type: str
    key_blob: bytes


@dataclass(frozen=True)
class Markers:
    """known_hosts' marker lines, which paramiko's ``HostKeys`` skips."""

    authorities: tuple[MarkedKey, ...] = ()
    revoked: tuple[MarkedKey, ...] = ()

    def authorities_for(self, name: str) -> tuple[MarkedKey, ...]:
        return tuple(m for m in self.authorities if host_matches(m.patterns, name))

    def revoked_for(self, name: str) -> frozenset[bytes]:
        return frozenset(m.key_blob for m in self.revoked if host_matches(m.patterns, name))


def read_known_hosts(text: str) -> tuple[paramiko.HostKeys, Markers]:
    r"""known_hosts ``text``: its host keys, and its marker lines. paramiko's own ``HostKeys.load`` stops at
    the first ``@cert-authority`` line (it raises on it), so the lines are read here; a line that does
    not parse is skipped, as ssh(1) skips it.

    >>> keys, m = read_known_hosts("@cert-authority *.lab,!bad.lab ssh-ed25519 AAAA\nh ssh-ed25519 AAAA\n")
    >>> [(a.patterns, a.key_type, a.key_blob) for a in m.authorities], m.revoked, keys.lookup("h")
    ([('*.lab,!bad.lab', 'ssh-ed25519', b'\x00\x00\x00')], (), None)
    """
    keys = paramiko.HostKeys()
    authorities: list[MarkedKey] = []
    revoked: list[MarkedKey] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("@"):
            try:
                entry = paramiko.hostkeys.HostKeyEntry.from_line(line, number)
            except Exception:  # any line paramiko cannot read (a bad key, an unknown type): skipped
                continue
            if entry is not None:
                keys._entries.append(entry)  # type: ignore[attr-defined]  # as HostKeys.load does
            continue
        fields = line.split()
        if len(fields) < 4 or fields[0] not in ("@cert-authority", "@revoked"):
            continue
        try:
            blob = base64.b64decode(fields[3], validate=True)
        except (binascii.Error, ValueError):
            continue
        marked = MarkedKey(fields[1], fields[2], blob)
        (authorities if fields[0] == "@cert-authority" else revoked).append(marked)
    return keys, Markers(tuple(authorities), tuple(revoked))


@dataclass(frozen=True)
class KnownHosts:
    """The known_hosts files ssh(1) would read for a host (the user's, then the global ones), together."""

    files: tuple[paramiko.HostKeys, ...] = ()
    markers: Markers = Markers()

    @classmethod
    def of(cls, parts: tuple[tuple[paramiko.HostKeys, Markers], ...]) -> KnownHosts:
        return cls(
            tuple(keys for keys, _ in parts),
            Markers(
                tuple(a for _, m in parts for a in m.authorities),
                tuple(r for _, m in parts for r in m.revoked),
            ),
        )

    def key_types(self, name: str) -> set[str]:
        """The key types some file lists for ``name``."""
        return {kind for keys in self.files for kind in (keys.lookup(name) or {})}

    def holds(self, name: str, key: paramiko.PKey) -> bool:
        """Whether some file lists ``key`` for ``name``."""
        for keys in self.files:
            entry = keys.lookup(name)
            if entry is not None and entry.get(key.get_name()) == key:
                return True
        return False


def host_matches(patterns: str, name: str) -> bool:
    """Whether ``name`` (``host``, or ``[host]:port`` off port 22) matches a known_hosts pattern list as
    OpenSSH's ``match_hostname``: comma-separated, ``*`` and ``?`` wildcards, case-insensitive, hashed
    names (``|1|salt|hash``), and ``!`` negation, which wins over any other match.

    >>> host_matches("*.lab,!db?.lab", "web1.LAB"), host_matches("*.lab,!db?.lab", "db1.lab")
    (True, False)
    >>> host_matches("[h1]:2222", "[h1]:2222"), host_matches("h1", "[h1]:2222")
    (True, False)
    """
    name = name.lower()
    found = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        if pattern.startswith("|1|"):
            matched = _hashed_matches(pattern, name)
        else:
            matched = wildcard_matches(pattern.lower(), name)
        if matched and negated:
            return False
        found = found or matched
    return found


def wildcard_matches(pattern: str, text: str) -> bool:
    """OpenSSH's ``match_pattern``: ``*`` any run, ``?`` one character, everything else literal."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, re.DOTALL) is not None


def _hashed_matches(pattern: str, name: str) -> bool:
    parts = pattern.split("|")  # ['', '1', salt, hash]
    if len(parts) != 4:
        return False
    try:
        salt, digest = base64.b64decode(parts[2]), base64.b64decode(parts[3])
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest)


@dataclass(frozen=True)
class Certificate:
    """The fields of an OpenSSH certificate (PROTOCOL.certkeys) that a host's check reads."""

    kind: int  # 1 user, 2 host
    key_id: str
    principals: tuple[str, ...]
    valid_after: int
    valid_before: int
    critical_options: bytes
    signature_key: bytes
    signature: bytes
    signed: bytes  # everything the CA signed: the blob up to the signature


# The public key's own fields, between the nonce and the serial, by certificate type.
_KEY_FIELDS = {
    "ssh-ed25519-cert-v01@openssh.com": ("string",),
    "ecdsa-sha2-nistp256-cert-v01@openssh.com": ("string", "string"),
    "ecdsa-sha2-nistp384-cert-v01@openssh.com": ("string", "string"),
    "ecdsa-sha2-nistp521-cert-v01@openssh.com": ("string", "string"),
    "ssh-rsa-cert-v01@openssh.com": ("mpint", "mpint"),
}


class CertificateError(ValueError):
    """A certificate that does not parse, or one the host may not be trusted by; the message says why."""


def parse_certificate(blob: bytes) -> Certificate:
    message = paramiko.Message(blob)
    try:
        cert_type = message.get_text()
        fields = _KEY_FIELDS.get(cert_type)
        if fields is None:
            raise CertificateError(f"{cert_type} certificates are not supported")
        message.get_string()  # nonce
        for field in fields:
            if field == "mpint":
                message.get_mpint()
            else:
                message.get_string()
        message.get_int64()  # serial
        kind = message.get_int()
        key_id = message.get_text()
        principals = _strings(message.get_string())
        valid_after, valid_before = message.get_int64(), message.get_int64()
        critical_options = message.get_string()
        message.get_string()  # extensions
        message.get_string()  # reserved
        signature_key = message.get_string()
        signed = message.get_so_far()
        signature = message.get_string()
    except (UnicodeDecodeError, IndexError, ValueError, TypeError) as exc:
        raise CertificateError(f"the certificate does not parse: {exc}") from None
    return Certificate(
        kind,
        key_id,
        principals,
        valid_after,
        valid_before,
        critical_options,
        signature_key,
        signature,
        signed,
    )


def _strings(packed: bytes) -> tuple[str, ...]:
    message, found = paramiko.Message(packed), []
    while message.get_so_far() != packed:
        found.append(message.get_text())
    return tuple(found)


_CERTIFIED_CLASSES = (("ssh-ed25519", "Ed25519Key"), ("ecdsa-sha2-", "ECDSAKey"), ("ssh-rsa", "RSAKey"))


def certified_key(cert_type: str, blob: bytes) -> paramiko.PKey:
    """The public key an OpenSSH certificate (``KEY-cert.pub``'s type and blob) certifies, the certificate
    kept beside it as paramiko keeps it; ValueError for a type paramiko has no key class for."""
    for prefix, name in _CERTIFIED_CLASSES:
        if cert_type.startswith(prefix) and cert_type.endswith(CERT_SUFFIX):
            key: paramiko.PKey = getattr(paramiko, name)(msg=paramiko.Message(blob))
            return key
    raise ValueError(f"{cert_type} certificates are not supported")


def is_certificate(key: paramiko.PKey) -> bool:
    """Whether the host presented ``key`` as a certificate (paramiko keeps the certificate beside it)."""
    blob = key.public_blob
    return blob is not None and blob.key_type.endswith(CERT_SUFFIX)


def check(key: paramiko.PKey, name: str, principal: str, markers: Markers, now: float) -> None:
    """Accept the certificate the host presented with ``key`` for known_hosts name ``name`` (``host`` or
    ``[host]:port``) and host name ``principal``, or raise :class:`CertificateError` saying why not."""
    assert key.public_blob is not None
    cert = parse_certificate(key.public_blob.key_blob)
    if cert.kind != HOST_CERT:
        raise CertificateError(f"certificate {cert.key_id!r} is not a host certificate")
    if now < cert.valid_after:
        raise CertificateError(f"certificate {cert.key_id!r} is not valid before {_when(cert.valid_after)}")
    if now >= cert.valid_before:
        raise CertificateError(f"certificate {cert.key_id!r} expired at {_when(cert.valid_before)}")
    if cert.principals and not any(wildcard_matches(p.lower(), principal.lower()) for p in cert.principals):
        raise CertificateError(
            f"certificate {cert.key_id!r} is for {', '.join(cert.principals)}, not {principal}"
        )
    if cert.critical_options:
        raise CertificateError(f"certificate {cert.key_id!r} has critical options, which no host may use")
    trusted = {m.key_blob: m for m in markers.authorities_for(name)}
    authority = trusted.get(cert.signature_key)
    if authority is None:
        raise CertificateError(
            f"certificate {cert.key_id!r} is signed by {fingerprint(cert.signature_key)}, not by a CA "
            f"known_hosts trusts for {name}"
        )
    algorithm = paramiko.Message(cert.signature).get_text()
    if algorithm == "ssh-rsa":
        raise CertificateError(f"certificate {cert.key_id!r} is signed with SHA-1 RSA, which OpenSSH refuses")
    try:
        ca = paramiko.PKey.from_type_string(authority.key_type, authority.key_blob)
        signed_by_ca = ca.verify_ssh_sig(cert.signed, paramiko.Message(cert.signature))
    except Exception as exc:  # a CA key of a type paramiko cannot use, a signature that does not parse
        raise CertificateError(
            f"certificate {cert.key_id!r}: its CA's signature cannot be checked: {exc}"
        ) from None
    if not signed_by_ca:
        raise CertificateError(f"certificate {cert.key_id!r} does not carry its CA's signature")
    if cert.signature_key in markers.revoked_for(name):
        raise CertificateError(f"the CA {fingerprint(cert.signature_key)} is @revoked in known_hosts")


def _when(stamp: int) -> str:
    return (
        "forever" if stamp >= FOREVER else datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M UTC")
    )


def fingerprint(blob: bytes) -> str:
    """OpenSSH's ``SHA256:…`` fingerprint of a public key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
