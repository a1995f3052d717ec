"""What the lab needs from the machine, so a missing piece is named instead of failing obscurely."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from tests.lab import rootfs, storage

COMMANDS = {
    "systemd-nspawn": "systemd-container",
    "docker-registry": "docker-registry",
    "ssh": "openssh-client",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "mount": "mount",
}


def missing(flavours: Sequence[str] = ("bookworm",)) -> list[str]:
    """What the machine lacks for a lab whose hosts are FLAVOURS (empty: it can run one)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not root")
    for cmd, package in COMMANDS.items():
        if shutil.which(cmd) is None:
            problems.append(f"{cmd} (Debian package {package})")
    built = all((rootfs.rootfs_dir(f) / ".complete").exists() for f in flavours)
    if not built and shutil.which("debootstrap") is None:
        problems.append("debootstrap (Debian package debootstrap), to build the hosts' rootfs")
    if not rootfs.BUSYBOX.exists():
        problems.append(f"{rootfs.BUSYBOX} (Debian package busybox-static)")
    if not storage.MOTO.exists():
        problems.append(f"{storage.MOTO} (PyPI moto[server] in the project venv)")
    if not Path("/sys/fs/cgroup").is_dir():
        problems.append("/sys/fs/cgroup")
    return problems
