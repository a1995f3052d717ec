"""The lab's keys: a registry CA, a separate storage CA, their server certificates, and SSH keys."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tests.pki import Issued, key_pem, make_ca, make_leaf


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def ensure_ca(cert: Path, key: Path, cn: str) -> Issued:
    """Reuse an existing CA so hosts that were given it keep trusting the lab across `up`."""
    if cert.exists() and key.exists():
        loaded = serialization.load_pem_private_key(key.read_bytes(), None)
        if isinstance(loaded, ec.EllipticCurvePrivateKey):
            return cert.read_bytes(), loaded
    ca = make_ca(cn, days=3650)
    _write(key, key_pem(ca[1]), 0o600)
    _write(cert, ca[0])
    return ca


def issue_server(ca: Issued, cert: Path, key: Path, dns: list[str], ips: list[str]) -> None:
    """A server certificate for DNS names and IP addresses, signed by CA (always fresh: it is cheap)."""
    leaf = make_leaf(ca, dns[0] if dns else ips[0], [*dns, *ips], days=825)
    _write(key, key_pem(leaf[1]), 0o600)
    _write(cert, leaf[0])


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
