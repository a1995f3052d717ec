"""The lab's keys: a registry CA, a separate storage CA, their server certificates, and SSH keys."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAY = dt.timedelta(days=1)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trust-agent lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load(cert: Path, key: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    if not (cert.exists() and key.exists()):
        return None
    loaded = serialization.load_pem_private_key(key.read_bytes(), None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        return None
    return x509.load_pem_x509_certificate(cert.read_bytes()), loaded


def ensure_ca(cert: Path, key: Path, cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Reuse an existing CA so hosts that were given it keep trusting the lab across `up`."""
    existing = _load(cert, key)
    if existing:
        return existing
    priv = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(priv.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + 3650 * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(priv.public_key()), critical=False)
        .sign(priv, hashes.SHA256())
    )
    _write(key, _key_pem(priv), 0o600)
    _write(cert, ca.public_bytes(serialization.Encoding.PEM))
    return ca, priv


def issue_server(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    cert: Path,
    key: Path,
    dns: list[str],
    ips: list[str],
) -> None:
    """A server certificate for DNS names and IP addresses, signed by CA (always fresh: it is cheap)."""
    ca_cert, ca_key = ca
    priv = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(dns[0] if dns else ips[0]))
        .issuer_name(ca_cert.subject)
        .public_key(priv.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + 825 * _DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(key, _key_pem(priv), 0o600)
    _write(cert, leaf.public_bytes(serialization.Encoding.PEM))


def ensure_ssh_key(path: Path) -> str:
    """The lab's client key (OpenSSH format, usable by ssh, paramiko and ansible); returns the public line."""
    pub_path = path.with_name(path.name + ".pub")
    if path.exists() and pub_path.exists():
        return pub_path.read_text().strip()
    priv = ed25519.Ed25519PrivateKey.generate()
    _write(
        path,
        priv.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ),
        0o600,
    )
    pub = priv.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = pub.decode() + " trust-agent-lab"
    _write(pub_path, (line + "\n").encode())
    return line
