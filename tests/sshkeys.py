"""OpenSSH keys and certificates for the tests, made by ssh-keygen as a site makes them.

ca, key = keygen(tmp / "ca"), keygen(tmp / "host")
cert = certify(ca, key, "-h", "-n", "web1.lab")   # key-cert.pub, a host certificate
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.ci import missing_prerequisite


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


def encrypted_copy(key: Path, path: Path) -> Path:
    """``key`` under a passphrase at ``path`` (the form most engineers keep keys in), no ``.pub`` beside."""
    shutil.copyfile(key, path)
    path.chmod(0o600)
    subprocess.run(
        ["ssh-keygen", "-q", "-p", "-P", "", "-N", "s3cret", "-f", str(path)], check=True, timeout=30
    )
    Path(f"{path}.pub").unlink(missing_ok=True)
    return path


@contextmanager
def ssh_agent(sock: Path, *keys: Path) -> Iterator[Path]:
    """A real ssh-agent on ``sock`` holding ``keys`` (offered in this order); stopped after."""
    if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
        missing_prerequisite("openssh-client's ssh-agent / ssh-add not installed (.ci/system-deps.sh)")
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert agent.poll() is None and time.monotonic() < deadline, "ssh-agent did not start"
            time.sleep(0.02)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        for key in keys:
            subprocess.run(["ssh-add", "-q", str(key)], env=env, check=True, timeout=30)
        yield sock
    finally:
        agent.terminate()
        agent.wait(timeout=10)
