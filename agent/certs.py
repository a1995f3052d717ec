"""CA bundles: parse PEM, refuse what must never be installed, describe what will be.

A bundle is refused (``CertificateError``, one line naming its origin) when it is empty, holds no
certificate, holds a PEM block that does not parse, holds a private key of any kind, or holds an
expired certificate (unless expired ones are explicitly allowed). Everything else that deserves a
second look (not a CA, a self-signed leaf, not yet valid, expiring soon) becomes a warning.

dockerd adds every ``*.crt`` in certs.d as a root; a bad block is skipped silently by the classic image
store but is an error on the containerd store (trust-facts 6), so the bundle written is re-encoded
from the parsed certificates, never copied byte for byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization

from agent.errors import CertificateError
from agent.inputfile import read_bounded

EXPIRY_WARNING = timedelta(days=30)
MAX_BUNDLE_BYTES = 1024 * 1024  # far above any real CA bundle; stops a wrong path like /dev/zero

# A PEM block: the label must match on both lines. Bytes, so that undecodable input still parses.
_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


@dataclass(frozen=True)
class CertificateInfo:
    subject: str
    issuer: str
    sha256: str  # colon-separated upper-case hex, as openssl prints it
    not_before: datetime
    not_after: datetime
    is_ca: bool
    self_signed: bool

    def days_left(self, now: datetime) -> int:
        return (self.not_after - now).days


@dataclass(frozen=True)
class CABundle:
    """A validated PEM bundle: ``pem`` is normalised (each certificate re-encoded, newline-terminated)."""

    origin: str  # file path or "dtr:/ca" etc., for messages
    pem: bytes
    certificates: tuple[CertificateInfo, ...]
    warnings: tuple[str, ...] = ()


def parse_bundle(
    data: bytes, origin: str, *, allow_expired: bool = False, now: datetime | None = None
) -> CABundle:
    """Parse and check a PEM bundle; duplicates (same SHA-256) are dropped, order is kept.

    >>> parse_bundle(b"", "ca.crt")
    Traceback (most recent call last):
    ...
    agent.errors.CertificateError: ca.crt: empty: expected one or more PEM certificates
    """
    now = _aware(now or datetime.now(UTC))
    if not data.strip():
        raise CertificateError("empty: expected one or more PEM certificates", origin)
    _refuse_private_keys(data, origin)

    blocks = list(_BLOCK.finditer(data))
    if len(_BEGIN.findall(data)) != len(blocks):
        raise CertificateError("malformed PEM: a BEGIN line has no matching END line", origin)
    warnings: list[str] = []
    certs: list[x509.Certificate] = []
    for position, block in enumerate(blocks, start=1):
        label = block.group(1).decode()
        if label != "CERTIFICATE":
            # Not dangerous, but not a root either: the normalised bundle leaves it out.
            warnings.append(f"PEM block {position} is {label!r}, not a CERTIFICATE: left out")
            continue
        try:
            certs.append(x509.load_pem_x509_certificate(block.group(0)))
        except ValueError:
            raise CertificateError(f"PEM block {position} is not a valid X.509 certificate", origin) from None
    if not certs:
        raise CertificateError(f"no PEM certificate found{_der_hint(data)}", origin)

    infos: list[CertificateInfo] = []
    pem = b""
    seen: set[str] = set()
    for number, cert in enumerate(certs, start=1):
        info = certificate_info(cert)
        if info.sha256 in seen:
            continue
        seen.add(info.sha256)
        warnings.extend(_check(info, number, now, allow_expired, origin))
        infos.append(info)
        pem += cert.public_bytes(serialization.Encoding.PEM)
    return CABundle(origin=origin, pem=pem, certificates=tuple(infos), warnings=tuple(warnings))


def load_bundle(path: str, *, allow_expired: bool = False, now: datetime | None = None) -> CABundle:
    """Read ``path`` and :func:`parse_bundle` it; an unreadable file is a ``CertificateError``."""
    data = read_bounded(
        path, MAX_BUNDLE_BYTES, "a CA bundle", lambda message: CertificateError(message, path)
    )
    return parse_bundle(data, path, allow_expired=allow_expired, now=now)


def describe(info: CertificateInfo, now: datetime) -> str:
    """One line: subject, fingerprint, days to expiry."""
    now = _aware(now)
    days = info.days_left(now)
    when = f"expires in {days} days" if days >= 0 else f"expired {(now - info.not_after).days} days ago"
    return f"{info.subject} (sha256 {info.sha256}, {when}, {info.not_after:%Y-%m-%d})"


def certificate_info(cert: x509.Certificate) -> CertificateInfo:
    """The facts about one certificate that the agent reports and checks."""
    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        sha256=":".join(digest[i : i + 2] for i in range(0, len(digest), 2)),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        is_ca=_is_ca(cert),
        self_signed=_self_signed(cert),
    )


def _refuse_private_keys(data: bytes, origin: str) -> None:
    # Checked before anything else is parsed, and the message names only the block's label.
    for label in _BEGIN.findall(data):
        if b"PRIVATE KEY" in label:  # PKCS#8, RSA, EC, OPENSSH, ENCRYPTED, PGP ... BLOCK
            raise CertificateError(
                f"holds a private key ({label.decode()} block): a CA bundle must hold certificates only; "
                "remove the key (and consider it exposed)",
                origin,
            )


def _check(info: CertificateInfo, number: int, now: datetime, allow_expired: bool, origin: str) -> list[str]:
    label = f"certificate {number} ({info.subject})"
    warnings: list[str] = []
    if info.not_after < now:
        if not allow_expired:
            raise CertificateError(
                f"{label} expired on {info.not_after:%Y-%m-%d}: it can anchor no chain any more; remove "
                "it from the bundle (or pass --allow-expired to install it anyway)",
                origin,
            )
        warnings.append(f"{label} expired on {info.not_after:%Y-%m-%d}")
    elif info.not_after - now < EXPIRY_WARNING:
        warnings.append(f"{label} expires in {info.days_left(now)} days ({info.not_after:%Y-%m-%d})")
    if info.not_before > now:
        warnings.append(f"{label} is not valid before {info.not_before:%Y-%m-%d %H:%M} UTC")
    if info.self_signed and not info.is_ca:
        warnings.append(
            f"{label} is a self-signed leaf, not a CA: it only works while the server presents exactly it"
        )
    elif not info.is_ca:
        warnings.append(f"{label} is not a CA certificate (basicConstraints CA missing or false)")
    return warnings


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _der_hint(data: bytes) -> str:
    # A DER certificate starts with an ASN.1 SEQUENCE; say so rather than "no certificate".
    if data[:1] != b"\x30" or b"-----" in data:
        return ""
    try:
        x509.load_der_x509_certificate(data)
    except ValueError:
        # ASN.1 but no certificate: most often PKCS#12 (.p12/.pfx), which holds a private key too.
        return (
            " (binary ASN.1, not a DER certificate: a .p12/.pfx file? export the CA certificate alone as PEM)"
        )
    return " (this looks like DER: convert it with `openssl x509 -inform der -in FILE`)"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
