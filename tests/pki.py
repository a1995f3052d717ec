"""A small test PKI: CAs, leaves, self-signed leaves, expired certificates, and private key PEMs.

EC P-256 keys by default (fast to generate); RSA where a test needs an ``RSA PRIVATE KEY`` block.
Certificates carry the extensions strict verifiers expect (basicConstraints, keyUsage, SKI/AKI, SANs)
so that they also work for real TLS servers in tests.

    ca = make_ca("Test Storage CA")
    leaf_pem, leaf_key = make_leaf(ca, "s3.example.internal", ["s3.example.internal", "127.0.0.1"])
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
Issued = tuple[bytes, PrivateKey]  # (certificate PEM, its private key)
KeyFormat = Literal["pkcs8", "traditional", "encrypted"]


def new_key(kind: Literal["ec", "rsa"] = "ec") -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def make_ca(
    cn: str,
    *,
    days: int = 365,
    not_before: datetime | None = None,
    issuer: Issued | None = None,
    key: PrivateKey | None = None,
) -> Issued:
    """A CA certificate: self-signed root, or an intermediate when ``issuer`` is given."""
    key = key or new_key()
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    builder = _builder(cn, key, days, not_before, issuer).add_extension(
        x509.BasicConstraints(ca=True, path_length=None), critical=True
    )
    return _sign(builder.add_extension(usage, critical=True), key, issuer)


def make_leaf(
    ca: Issued,
    cn: str,
    sans: Iterable[str] = (),
    *,
    days: int = 365,
    not_before: datetime | None = None,
    basic_constraints: bool = True,
) -> Issued:
    """A server certificate issued by ``ca``; names that parse as IP addresses become IP SANs."""
    key = new_key()
    builder = _builder(cn, key, days, not_before, ca)
    return _sign(_leaf_extensions(builder, sans or [cn], basic_constraints), key, ca)


def make_self_signed_leaf(
    cn: str, sans: Iterable[str] = (), *, days: int = 365, basic_constraints: bool = True
) -> Issued:
    """A server certificate that signs itself but is not a CA (what `openssl req -x509` often makes)."""
    key = new_key()
    builder = _builder(cn, key, days, None, None)
    return _sign(_leaf_extensions(builder, sans or [cn], basic_constraints), key, None)


def make_expired_ca(cn: str, *, days_ago: int = 10) -> Issued:
    """A CA whose validity ended ``days_ago`` days ago."""
    end = datetime.now(UTC) - timedelta(days=days_ago)
    return make_ca(cn, not_before=end - timedelta(days=365), days=365)


def key_pem(key: PrivateKey, fmt: KeyFormat = "pkcs8") -> bytes:
    """``PRIVATE KEY`` (pkcs8), ``RSA/EC PRIVATE KEY`` (traditional) or ``ENCRYPTED PRIVATE KEY``."""
    if fmt == "encrypted":
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"test-passphrase"),
        )
    private_format = (
        serialization.PrivateFormat.PKCS8
        if fmt == "pkcs8"
        else serialization.PrivateFormat.TraditionalOpenSSL
    )
    return key.private_bytes(serialization.Encoding.PEM, private_format, serialization.NoEncryption())


def write_pair(directory: Path, name: str, issued: Issued) -> tuple[Path, Path]:
    """Write ``name.crt`` and ``name.key`` (for TLS servers in tests); returns both paths."""
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(issued[0])
    key_path.write_bytes(key_pem(issued[1], "traditional"))
    return cert_path, key_path


def sha256_of(pem: bytes) -> str:
    """The colon-separated upper-case SHA-256 fingerprint, as openssl prints it."""
    digest = x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256()).hex().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _builder(
    cn: str, key: PrivateKey, days: int, not_before: datetime | None, issuer: Issued | None
) -> x509.CertificateBuilder:
    start = not_before or datetime.now(UTC) - timedelta(minutes=5)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_name = x509.load_pem_x509_certificate(issuer[0]).subject if issuer else subject
    issuer_key = issuer[1] if issuer else key
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )


def _leaf_extensions(
    builder: x509.CertificateBuilder, sans: Iterable[str], basic_constraints: bool
) -> x509.CertificateBuilder:
    names: list[x509.GeneralName] = []
    for name in sans:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False).add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
    )
    if basic_constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    return builder


def _sign(builder: x509.CertificateBuilder, key: PrivateKey, issuer: Issued | None) -> Issued:
    signer = issuer[1] if issuer else key
    cert = builder.sign(signer, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), key
