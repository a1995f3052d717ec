"""CA bundles: parse PEM, refuse what must never be installed, describe what will be (issue: foundation 4)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


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
