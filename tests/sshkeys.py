"""OpenSSH keys and certificates for the tests, made by ssh-keygen as a site makes them.

ca, key = keygen(tmp / "ca"), keygen(tmp / "host")
cert = certify(ca, key, "-h", "-n", "web1.lab")   # key-cert.pub, a host certificate
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def keygen(path: Path, kind: str = "ed25519") -> Path:
    """A new key pair without a passphrase at ``path`` (and ``path.pub``)."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "", "-f", str(path)], check=True, timeout=30
    )
    return path


def public(path: Path) -> str:
    """``path.pub`` as a known_hosts or authorized_keys key: ``TYPE BASE64``."""
    return " ".join(Path(f"{path}.pub").read_text().split()[:2])


def certify(ca: Path, key: Path, *options: str, key_id: str = "lab") -> Path:
    """``ssh-keygen -s CA -I KEY_ID OPTIONS KEY.pub``: the certificate ``KEY-cert.pub``."""
    subprocess.run(
        ["ssh-keygen", "-q", "-s", str(ca), "-I", key_id, *options, f"{key}.pub"],
        check=True,
        timeout=30,
        capture_output=True,
    )
    return Path(f"{key}-cert.pub")
