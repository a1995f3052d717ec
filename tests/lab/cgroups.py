"""Per-host cgroup directories: without them every host's systemd lands in the same cgroup."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def hierarchies() -> list[Path]:
    """The hierarchies nspawn puts its payload in: name=systemd and unified on v1, the root on v2."""
    if (ROOT / "cgroup.controllers").exists():
        return [ROOT]
    found = [ROOT / h for h in ("systemd", "unified") if (ROOT / h / "cgroup.procs").exists()]
    if not found:
        raise RuntimeError("no name=systemd or cgroup2 hierarchy under /sys/fs/cgroup")
    return found


def create(rel: str) -> list[Path]:
    dirs = [h / rel for h in hierarchies()]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def enter_command(dirs: list[Path]) -> str:
    """Shell text that moves the shell itself into DIRS before it execs the payload."""
    return "; ".join(f"echo $$ > {d}/cgroup.procs" for d in dirs)


def remove(rel: str, timeout: float = 5.0) -> None:
    """Remove REL and everything under it in every hierarchy, deepest first (cgroups only rmdir)."""
    deadline = time.monotonic() + timeout
    for h in hierarchies():
        top = h / rel
        while top.exists():
            for dirpath, _dirs, _files in os.walk(top, topdown=False):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)
            if not top.exists() or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    # Drop now-empty parents the lab made (trust-agent-lab/<id>), never the hierarchy roots.
    for h in hierarchies():
        parent = (h / rel).parent
        while parent != h and parent.is_relative_to(h / "trust-agent-lab"):
            with contextlib.suppress(OSError):
                parent.rmdir()
            parent = parent.parent


def leftovers(rel: str) -> list[Path]:
    with contextlib.suppress(RuntimeError):
        return [h / rel for h in hierarchies() if (h / rel).exists()]
    return []


def all_hierarchies() -> list[Path]:
    """Every mounted hierarchy, controllers included: dockerd inside a host creates its cgroups there."""
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split() for line in f]
    return [Path(m[4]) for m in mounts if " - cgroup" in " ".join(m) and m[4].startswith(str(ROOT) + "/")]


def engine_cgroups(container_ids: list[str]) -> list[Path]:
    """Cgroups that the hosts' dockerd made for CONTAINER_IDS (`/docker/<id>` in each hierarchy)."""
    return [d for h in all_hierarchies() for cid in container_ids if (d := h / "docker" / cid).exists()]


def remove_engine_cgroups(container_ids: list[str]) -> None:
    for d in engine_cgroups(container_ids):
        for dirpath, _dirs, _files in os.walk(d, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
    # The shared `docker` parents go only once no host of any lab uses them.
    for h in all_hierarchies():
        with contextlib.suppress(OSError):
            (h / "docker").rmdir()
