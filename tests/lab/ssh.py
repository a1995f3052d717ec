"""How the lab reaches its hosts: OpenSSH from inside the lab namespace, with strict host-key checking."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.lab import network


def options(key: Path, known_hosts: Path) -> list[str]:
    return [
        "-F",
        "/dev/null",
        "-i",
        str(key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "LogLevel=ERROR",
    ]


def argv(lab_ns: str, key: Path, known_hosts: Path, address: str, command: str) -> list[str]:
    return [*network.nsenter(lab_ns), "ssh", *options(key, known_hosts), f"root@{address}", command]


def run(
    lab_ns: str,
    key: Path,
    known_hosts: Path,
    address: str,
    command: str,
    check: bool = True,
    timeout: float = 120,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv(lab_ns, key, known_hosts, address, command),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return proc
