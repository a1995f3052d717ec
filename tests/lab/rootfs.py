"""The engine hosts' root filesystem: debootstrapped once, prepared, cached, shared read-only.

Hosts boot from an overlay of it, so everything here is common to all hosts and nothing per host
(no host keys, no hostname, no machine-id, no lab key) may be baked in.
A completed tree is never modified or deleted: running hosts use it as their overlay's lower layer,
and removing it breaks them (files they had not opened yet vanish).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

CACHE = Path(os.environ.get("TRUST_AGENT_LAB_CACHE", "/var/cache/trust-agent-lab"))
MIRROR = "http://deb.debian.org/debian"
PACKAGES = {
    "bookworm": [
        "systemd",
        "systemd-sysv",
        "dbus",
        "openssh-server",
        "docker.io",
        "iproute2",
        "ca-certificates",
        "procps",
        "python3",
        "python3-venv",
        "curl",
        "sudo",
    ],
    # Debian 13: systemd 257 and docker.io 26.1 (with `dockerd --validate`); the CLI is its own package.
    "trixie": [
        "systemd",
        "systemd-sysv",
        "dbus",
        "openssh-server",
        "docker.io",
        "docker-cli",
        "iproute2",
        "ca-certificates",
        "procps",
        "python3",
        "python3-venv",
        "curl",
        "sudo",
    ],
}
FLAVOURS = tuple(PACKAGES)
# Bump when _prepare changes so a stale cache is never used.
PREPARE_VERSION = "2"
DEPLOY_USER = "deploy"
DEPLOY_UID = 1000
BASE_DAEMON_JSON = {"iptables": False, "bridge": "none", "storage-driver": "vfs"}
LAB_SHARE = "usr/local/share/trust-agent-lab"
BUSYBOX = Path("/bin/busybox")
BUSYBOX_APPLETS = ("sh", "sleep", "cat", "echo", "true", "ls")


def cache_key(flavour: str) -> str:
    text = json.dumps([flavour, PACKAGES[flavour], MIRROR])
    return f"{flavour}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def debootstrap_dir(flavour: str) -> Path:
    return CACHE / f"debootstrap-{cache_key(flavour)}"


def rootfs_dir(flavour: str) -> Path:
    return CACHE / f"rootfs-{cache_key(flavour)}-p{PREPARE_VERSION}"


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure(flavour: str = "bookworm", log: Path | None = None) -> Path:
    """The prepared rootfs for FLAVOUR, built on first use; a partial build is never visible."""
    final = rootfs_dir(flavour)
    if (final / ".complete").exists():
        return final
    with _locked():
        if (final / ".complete").exists():
            return final
        raw = _ensure_debootstrap(flavour, log)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=CACHE))
        try:
            # A copy keeps the raw debootstrap for the next preparation version.
            subprocess.run(["cp", "-a", "--reflink=auto", f"{raw}/.", str(tmp)], check=True, timeout=600)
            _prepare(tmp)
            (tmp / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
            if final.exists():
                # Incomplete, so no host ever booted from it (hosts only use completed trees).
                shutil.rmtree(final)
            tmp.rename(final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final


def _ensure_debootstrap(flavour: str, log: Path | None) -> Path:
    raw = debootstrap_dir(flavour)
    if raw.exists():
        return raw
    tmp = Path(tempfile.mkdtemp(prefix=f".{raw.name}.", dir=CACHE))
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    try:
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES[flavour])}",
                flavour,
                str(tmp),
                MIRROR,
            ],
            check=True,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1800,
        )
        tmp.rename(raw)
    finally:
        if log and not isinstance(out, int):
            out.close()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return raw


def _write(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _enable(root: Path, unit: str, target: str = "multi-user.target") -> None:
    wants = root / "etc/systemd/system" / f"{target}.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / unit
    if not link.is_symlink():
        link.symlink_to(f"/etc/systemd/system/{unit}")


def _mask(root: Path, unit: str) -> None:
    link = root / "etc/systemd/system" / unit
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to("/dev/null")


def _prepare(root: Path) -> None:
    # Temporary directories start 0700; a root filesystem must be traversable by its services.
    root.chmod(0o755)
    (root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
    daemon_json = json.dumps(BASE_DAEMON_JSON, indent=2) + "\n"
    _write(root, "etc/docker/daemon.json", daemon_json)
    # The pristine copy the per-test reset restores.
    _write(root, f"{LAB_SHARE}/daemon.json", daemon_json)
    (root / "etc/hostname").unlink(missing_ok=True)
    (root / "etc/machine-id").write_text("")
    # debootstrap's dbus left a fixed id that every host would share; follow systemd's per-boot one.
    dbus_id = root / "var/lib/dbus/machine-id"
    dbus_id.unlink(missing_ok=True)
    dbus_id.symlink_to("/etc/machine-id")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    # Every host makes its own host keys at first boot, so host-key checking means something.
    _write(
        root,
        "etc/systemd/system/ssh.service.d/lab-hostkeys.conf",
        "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n",
    )
    _write(root, "etc/ssh/sshd_config.d/lab.conf", "PasswordAuthentication no\nUseDNS no\nMaxStartups 200\n")
    # nspawn mounts the cgroup hierarchies read-only; dockerd and containerd must create cgroups.
    _write(
        root,
        "etc/systemd/system/lab-cgroup-rw.service",
        "[Unit]\nDescription=Make cgroup hierarchies writable for dockerd\nDefaultDependencies=no\n"
        "Before=containerd.service docker.service\n\n"
        "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
        "ExecStart=/bin/sh -c 'for d in /sys/fs/cgroup/*/; do mount -o remount,bind,rw \"$d\" || true; done'\n\n"
        "[Install]\nWantedBy=multi-user.target\n",
    )
    _enable(root, "lab-cgroup-rw.service")
    for unit in ("docker", "containerd"):
        _write(
            root,
            f"etc/systemd/system/{unit}.service.d/lab-cgroup.conf",
            "[Unit]\nWants=lab-cgroup-rw.service\nAfter=lab-cgroup-rw.service\n",
        )
    _add_deploy_user(root)
    for unit in (
        "systemd-modules-load.service",
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "e2scrub_all.timer",
        "fstrim.timer",
        "console-getty.service",
    ):
        _mask(root, unit)
    share = root / LAB_SHARE
    (share / "busybox.tar").write_bytes(busybox_tar())
    (share / "pushed.tar").write_bytes(busybox_tar(marker="pushed to the lab registry\n"))


def _add_deploy_user(root: Path) -> None:
    """A non-root login with passwordless sudo, as fleets that forbid root SSH have (``--become``)."""
    uid = DEPLOY_UID
    with (root / "etc/passwd").open("a") as f:
        f.write(f"{DEPLOY_USER}:x:{uid}:{uid}:lab deploy user:/home/{DEPLOY_USER}:/bin/sh\n")
    with (root / "etc/shadow").open("a") as f:
        f.write(f"{DEPLOY_USER}:*:19000:0:99999:7:::\n")
    with (root / "etc/group").open("a") as f:
        f.write(f"{DEPLOY_USER}:x:{uid}:\n")
    ssh_dir = root / "home" / DEPLOY_USER / ".ssh"
    ssh_dir.mkdir(parents=True, mode=0o700)
    for path in (ssh_dir.parent, ssh_dir):
        os.chown(path, uid, uid)
    _write(root, f"etc/sudoers.d/{DEPLOY_USER}", f"{DEPLOY_USER} ALL=(ALL) NOPASSWD:ALL\n", 0o440)


def busybox_tar(marker: str | None = None) -> bytes:
    """A tiny image filesystem: static busybox and a few applet links (MARKER makes a distinct layer)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "etc", "tmp"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755 if d != "tmp" else 0o1777
            tar.addfile(info)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in BUSYBOX_APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        if marker is not None:
            data = marker.encode()
            info = tarfile.TarInfo("etc/lab-image")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
