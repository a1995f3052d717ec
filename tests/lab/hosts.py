"""Engine hosts: systemd-nspawn containers booting systemd, sshd and dockerd on an overlay of the rootfs."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.lab import cgroups, network, ssh
from tests.lab.layout import REGISTRY_ADDRESS, REGISTRY_NAME, RUNNABLE_IMAGE, Layout
from tests.lab.procs import Proc, clean_env, run, spawn
from tests.lab.rootfs import DEPLOY_UID, DEPLOY_USER, LAB_SHARE

KEY_TYPES = ("ed25519", "ecdsa", "rsa")


@dataclass
class HostRecord:
    name: str
    address: str
    flavour: str
    namespace: str
    proc: Proc | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "address": self.address,
            "flavour": self.flavour,
            "namespace": self.namespace,
            "proc": self.proc.to_json() if self.proc else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> HostRecord:
        proc = data.get("proc")
        return cls(
            name=str(data["name"]),
            address=str(data["address"]),
            flavour=str(data["flavour"]),
            namespace=str(data["namespace"]),
            proc=Proc.from_json(proc) if isinstance(proc, dict) else None,
        )


def root_of(layout: Layout, name: str) -> Path:
    return layout.hosts_dir / name / "root"


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def start(layout: Layout, host: HostRecord, rootfs: Path, authorized_key: str) -> None:
    """Mount the host's overlay, give it its identity, plug it in, and boot it (does not wait)."""
    base = layout.hosts_dir / host.name
    for sub in ("upper", "work", "root"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    root = base / "root"
    run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={rootfs},upperdir={base / 'upper'},workdir={base / 'work'}",
            str(root),
        ]
    )
    _write(root / "etc/hostname", f"{host.name}\n")
    _write(
        root / "etc/hosts",
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        f"{host.address}\t{host.name}\n{REGISTRY_ADDRESS}\t{REGISTRY_NAME}\n",
    )
    _write(root / "root/.ssh/authorized_keys", authorized_key + "\n", 0o600)
    deploy_keys = root / "home" / DEPLOY_USER / ".ssh/authorized_keys"
    _write(deploy_keys, authorized_key + "\n", 0o600)
    os.chown(deploy_keys, DEPLOY_UID, DEPLOY_UID)
    network.attach(layout.lab_ns, host.namespace, f"v{host.name}", host.address)
    # nspawn leaves /proc/sys read-only in a namespace it did not create; dockerd would fail writing
    # ip_forward, and skips the write when it is already on.
    run([*network.nsenter(host.namespace), "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])
    dirs = cgroups.create(f"{layout.cgroup_rel}/{host.name}")
    nspawn = [
        "systemd-nspawn",
        "-b",
        "-D",
        str(root),
        "-M",
        host.name,
        "--register=no",
        "--keep-unit",
        f"--network-namespace-path={network.ns_path(host.namespace)}",
        "--console=passive",
        "--capability=all",
        "--system-call-filter=@keyring",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
    ]
    # The shell moves itself into the host's own cgroups, then becomes nspawn (same PID).
    script = f"{cgroups.enter_command(dirs)}; exec {shlex.join(nspawn)}"
    host.proc = spawn(["sh", "-c", script], layout.log_dir / f"{host.name}.log", env=clean_env())


def host_keys(layout: Layout, host: HostRecord, timeout: float) -> list[str]:
    """The host's own public keys, read from its disk once its sshd generated them at boot."""
    ssh_dir = root_of(layout, host.name) / "etc/ssh"
    deadline = time.monotonic() + timeout
    while True:
        pubs = [ssh_dir / f"ssh_host_{t}_key.pub" for t in KEY_TYPES]
        texts = [p.read_text().strip() if p.exists() else "" for p in pubs]
        if all(texts):
            return [" ".join(t.split()[:2]) for t in texts]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{host.name}: no ssh host keys after {timeout:.0f}s; see {layout.log_dir}")
        time.sleep(0.1)


_READY = f"""
i=0
until systemctl is-active -q ssh docker && docker info >/dev/null 2>&1; do
    i=$((i+1))
    if [ $i -gt 300 ] || systemctl is-failed -q docker; then
        systemctl --no-pager status docker; journalctl --no-pager -u docker | tail -5; exit 1
    fi
    sleep 0.2
done
docker image inspect {RUNNABLE_IMAGE} >/dev/null 2>&1 ||
    docker import -c 'ENV PATH=/bin' /{LAB_SHARE}/busybox.tar {RUNNABLE_IMAGE} >/dev/null
"""


def wait_ready(layout: Layout, host: HostRecord, timeout: float) -> None:
    """Wait until sshd answers with the recorded key and dockerd runs; then load the runnable image."""
    deadline = time.monotonic() + timeout
    while True:
        proc = ssh.run(
            layout.lab_ns,
            layout.key,
            layout.known_hosts,
            host.address,
            _READY,
            check=False,
            timeout=max(5.0, deadline - time.monotonic()),
        )
        if proc.returncode == 0:
            return
        # 255 is ssh's own failure (sshd not listening yet); anything else came from the host.
        if proc.returncode != 255 or time.monotonic() > deadline:
            raise RuntimeError(
                f"{host.name} not ready (exit {proc.returncode}): {proc.stderr.strip()}"
                f"\n{proc.stdout.strip()}"
            )
        time.sleep(0.2)


def write_known_hosts(layout: Layout, keys: dict[str, list[str]]) -> None:
    lines = [f"{address} {key}" for address, ks in keys.items() for key in ks]
    tmp = layout.known_hosts.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(layout.known_hosts)


def boot_all(layout: Layout, records: list[HostRecord], timeout: float) -> None:
    """Collect every host's real keys into known_hosts, then wait for all of them in parallel."""
    keys = {h.address: host_keys(layout, h, timeout) for h in records}
    firsts = [ks[0] for ks in keys.values()]
    if len(set(firsts)) != len(firsts):
        raise RuntimeError("two lab hosts share a host key: the rootfs must not hold ssh host keys")
    write_known_hosts(layout, keys)
    with ThreadPoolExecutor(max_workers=min(32, max(1, len(records)))) as pool:
        for fut in [pool.submit(wait_ready, layout, h, timeout) for h in records]:
            fut.result()


def unmount(layout: Layout, name: str) -> None:
    root = root_of(layout, name)
    for _ in range(50):
        if not _is_mount(root):
            return
        proc = run(["umount", str(root)], check=False, timeout=30)
        if proc.returncode != 0:
            time.sleep(0.1)
    with contextlib.suppress(subprocess.SubprocessError):
        run(["umount", "-l", str(root)], check=False, timeout=30)


def _is_mount(path: Path) -> bool:
    target = str(path.resolve()) if path.exists() else str(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def lab_mounts(layout: Layout) -> list[str]:
    prefix = str(layout.hosts_dir.resolve()) + "/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]
