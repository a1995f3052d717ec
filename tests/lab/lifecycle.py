"""Bring a lab up (idempotently) and down (completely), and list what a lab left behind."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.lab import (
    cgroups,
    hosts,
    images,
    inventory,
    network,
    pki,
    prereqs,
    procs,
    registry,
    rootfs,
    storage,
)
from tests.lab.hosts import HostRecord
from tests.lab.lab import Lab, LabError, layout_of, load_state, save_state
from tests.lab.layout import (
    BRIDGE_ADDRESS,
    FLAVOUR,
    MAX_HOSTS,
    REGISTRY_ADDRESS,
    REGISTRY_NAME,
    RUNNABLE_IMAGE,
    S3_ADDRESS,
    S3_PORT,
    STORAGE_MODES,
    Layout,
    host_address,
    host_name,
    registry_authority,
)
from tests.lab.procs import Proc

STATE_VERSION = 1
BOOT_TIMEOUT = 120.0
Log = Callable[[str], None]


def _procs(state: dict[str, Any]) -> list[Proc]:
    found = [Proc.from_json(h["proc"]) for h in state.get("hosts", []) if h.get("proc")]
    found += [Proc.from_json(state[k]["proc"]) for k in ("registry", "s3") if state.get(k, {}).get("proc")]
    return found


def _rootfs_paths(state: dict[str, Any]) -> list[str]:
    """Every rootfs the lab's hosts boot from (labs from before flavours recorded only `rootfs`)."""
    by_flavour = state.get("rootfs_by_flavour") or {}
    return [state.get("rootfs", "/nonexistent"), *by_flavour.values()]


def _healthy(layout: Layout, state: dict[str, Any]) -> bool:
    names = [layout.lab_ns, *(h["namespace"] for h in state.get("hosts", []))]
    return (
        state.get("status") == "up"
        # Hosts whose shared lower layer went away fail in odd ways: rebuild rather than reuse.
        and all((Path(p) / ".complete").exists() for p in _rootfs_paths(state))
        and all(network.exists(n) for n in names)
        and all(procs.alive(p) for p in _procs(state))
    )


def _raise_limits(n_hosts: int) -> None:
    """Each host's systemd holds inotify instances; the defaults stop near 16 hosts."""
    wanted = {
        "fs/inotify/max_user_instances": 8192,
        "fs/inotify/max_user_watches": 1048576,
        "kernel/pid_max": 4194304 if n_hosts > 50 else 0,
    }
    for key, value in wanted.items():
        path = Path("/proc/sys") / key
        with contextlib.suppress(OSError, ValueError):
            if int(path.read_text()) < value:
                path.write_text(str(value))


def up(
    dir: str | Path,
    n_hosts: int = 3,
    storage_mode: str = "ca",
    registry_port: int = 443,
    log: Log = lambda _msg: None,
    flavours: Sequence[str] = (FLAVOUR,),
) -> Lab:
    """Bring the lab in DIR up as asked; an identical healthy lab is left as it is.

    FLAVOURS: the hosts' Debian releases, given to hosts in turn (h1 the first, h2 the second, ...).
    """
    if storage_mode not in STORAGE_MODES:
        raise LabError(f"storage must be one of {', '.join(STORAGE_MODES)}")
    if not 1 <= n_hosts <= MAX_HOSTS:
        raise LabError(f"hosts must be between 1 and {MAX_HOSTS}")
    flavours = tuple(flavours)
    unknown = [f for f in flavours if f not in rootfs.FLAVOURS]
    if not flavours or unknown:
        raise LabError(f"flavours must be some of {', '.join(rootfs.FLAVOURS)} (got {', '.join(flavours)})")
    layout = layout_of(dir)
    wanted: dict[str, object] = {"hosts": n_hosts, "storage": storage_mode, "registry_port": registry_port}
    if flavours != (FLAVOUR,):
        # Recorded only when not the default, so labs made before flavours existed still match.
        wanted["flavours"] = list(flavours)
    state = load_state(layout)
    if state and state.get("params") == wanted and _healthy(layout, state):
        log(f"lab in {layout.dir} is already up")
        return Lab(layout.dir)
    if state or any(network.exists(n) for n in _lab_namespaces(layout)):
        log("tearing down the previous lab in this directory")
        down(layout.dir)
    missing = prereqs.missing(flavours)
    if missing:
        raise LabError("lab prerequisites missing: " + "; ".join(missing))

    t0 = time.monotonic()
    timings: dict[str, float] = {}
    for d in (layout.dir, layout.log_dir, layout.hosts_dir, layout.ssh_dir):
        d.mkdir(parents=True, exist_ok=True)
    log("rootfs: checking the cache (first build takes about a minute per flavour)")
    bases = {f: rootfs.ensure(f, log=layout.log_dir / f"rootfs-{f}.log") for f in dict.fromkeys(flavours)}
    timings["rootfs"] = time.monotonic() - t0
    _raise_limits(n_hosts)

    pubkey = pki.ensure_ssh_key(layout.key)
    pkid = layout.dir / "pki"
    reg_ca = pki.ensure_ca(layout.dir / "registry-ca.pem", pkid / "registry-ca.key", "lab registry CA")
    sto_ca = pki.ensure_ca(layout.dir / "storage-ca.pem", pkid / "storage-ca.key", "lab storage CA")
    pki.issue_server(
        reg_ca, pkid / "registry.crt", pkid / "registry.key", [REGISTRY_NAME], [REGISTRY_ADDRESS]
    )
    pki.issue_server(sto_ca, pkid / "s3.crt", pkid / "s3.key", ["s3.test"], [S3_ADDRESS])
    secure = storage_mode != "plain"

    records = [
        HostRecord(host_name(i), host_address(i), flavours[i % len(flavours)], layout.ns(host_name(i)))
        for i in range(n_hosts)
    ]
    state = {
        "version": STATE_VERSION,
        "status": "starting",
        "params": wanted,
        "id": layout.id,
        "dir": str(layout.dir),
        "namespace": layout.lab_ns,
        "bridge": {"name": network.BRIDGE, "address": BRIDGE_ADDRESS},
        "rootfs": str(bases[flavours[0]]),
        "rootfs_by_flavour": {f: str(b) for f, b in bases.items()},
        "registry": {
            "name": REGISTRY_NAME,
            "authority": registry_authority(registry_port),
            "address": REGISTRY_ADDRESS,
            "port": registry_port,
            "namespace": layout.ns("reg"),
        },
        "s3": {
            "address": S3_ADDRESS,
            "port": S3_PORT,
            "endpoint": storage.endpoint(secure),
            "namespace": layout.ns("s3"),
        },
        "images": {"registry": images.reference(registry_port), "runnable": RUNNABLE_IMAGE},
        "hosts": [],
        "cgroup": layout.cgroup_rel,
    }

    def save() -> None:
        state["hosts"] = [h.to_json() for h in records if h.proc is not None]
        save_state(layout, state)

    save()
    network.create_bridge_ns(layout.lab_ns, BRIDGE_ADDRESS)
    network.attach(layout.lab_ns, layout.ns("s3"), "vs3", S3_ADDRESS)
    network.attach(layout.lab_ns, layout.ns("reg"), "vreg", REGISTRY_ADDRESS)
    s3 = storage.start(
        layout, layout.ns("s3"), pkid / "s3.crt" if secure else None, pkid / "s3.key" if secure else None
    )
    state["s3"]["proc"] = s3.to_json()
    save()
    log(f"booting {n_hosts} host(s)")
    t_boot = time.monotonic()
    for h in records:
        hosts.start(layout, h, bases[h.flavour], pubkey)
        save()

    access = ("LABACCESSKEY" + layout.id.upper(), pki_secret(layout))
    cfg = registry.config(storage_mode, registry_port, pkid / "registry.crt", pkid / "registry.key", access)
    storage.create_bucket(layout, layout.dir / "storage-ca.pem" if secure else None, timeout=60)
    registry.write(layout, cfg)
    trust = layout.dir / "storage-ca.pem" if storage_mode in ("ca", "noredirect") else None
    reg = registry.start(layout, layout.ns("reg"), trust)
    state["registry"]["proc"] = reg.to_json()
    save()
    network.wait_tcp(layout.lab_ns, REGISTRY_ADDRESS, registry_port, timeout=30)

    hosts.boot_all(layout, records, BOOT_TIMEOUT)
    timings["boot"] = time.monotonic() - t_boot
    log(f"hosts ready in {timings['boot']:.1f}s; pushing {state['images']['registry']}")
    t_push = time.monotonic()
    images.push(
        layout,
        records[0].address,
        registry_port,
        (layout.dir / "registry-ca.pem").read_text(),
        (layout.dir / "storage-ca.pem").read_text(),
    )
    timings["push"] = time.monotonic() - t_push
    inventory.write(layout.dir, records, layout.key, layout.known_hosts)
    timings["total"] = time.monotonic() - t0
    state["timings"] = {k: round(v, 2) for k, v in timings.items()}
    state["status"] = "up"
    save()
    log(f"lab up in {timings['total']:.1f}s: {layout.dir}")
    return Lab(layout.dir)


def pki_secret(layout: Layout) -> str:
    """The S3 secret key: stable per lab so a re-up keeps the same registry.yml semantics."""
    path = layout.dir / "pki" / "s3-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(30))
        path.chmod(0o600)
    return path.read_text().strip()


def _lab_namespaces(layout: Layout) -> list[str]:
    """Every namespace of this lab, recorded or not (prefix match on the lab's id)."""
    if not network.NETNS_DIR.is_dir():
        return []
    names = [p.name for p in network.NETNS_DIR.iterdir()]
    return [n for n in names if n == layout.lab_ns or n.startswith(layout.lab_ns + "-")]


def down(dir: str | Path, log: Log = lambda _msg: None) -> None:
    """Remove every process, mount, cgroup, veth and namespace of the lab in DIR. Safe to repeat."""
    layout = layout_of(dir)
    state = load_state(layout) or {}
    host_procs = [Proc.from_json(h["proc"]) for h in state.get("hosts", []) if h.get("proc")]
    # Powering the hosts off first lets their dockerd and systemd stop cleanly (about a second).
    procs.stop_all(host_procs, timeout=20)
    procs.stop_all([p for p in _procs(state) if p not in host_procs], timeout=10)
    container_ids = _container_ids(layout)
    namespaces = _lab_namespaces(layout)
    # Anything still in the lab's namespaces (a host whose nspawn was killed) is the lab's own.
    strays = procs.pids_in_netns([network.ns_path(n) for n in namespaces])
    procs.stop_all([Proc(p, s) for p in strays if (s := procs.start_time(p)) is not None], timeout=5)
    for mount in reversed(hosts.lab_mounts(layout)):
        subprocess.run(["umount", mount], capture_output=True, timeout=30, check=False)
    for h in state.get("hosts", []):
        hosts.unmount(layout, h["name"])
    with contextlib.suppress(RuntimeError):
        cgroups.remove(layout.cgroup_rel)
    cgroups.remove_engine_cgroups(container_ids)
    for name in sorted(namespaces, key=lambda n: n == layout.lab_ns):
        network.delete(name)
    if layout.hosts_dir.exists() and not hosts.lab_mounts(layout):
        shutil.rmtree(layout.hosts_dir, ignore_errors=True)
    for f in ("lab.json", "inventory.yml", "inventory.ini"):
        (layout.dir / f).unlink(missing_ok=True)
    log(f"lab in {layout.dir} is down")


def leftovers(dir: str | Path, container_ids: Sequence[str] = ()) -> list[str]:
    """What of the lab in DIR still exists on the machine (empty after a clean `down`).

    CONTAINER_IDS: containers known to have run on its hosts, whose engine cgroups must be gone too.
    """
    layout = layout_of(dir)
    found = [f"netns {n}" for n in _lab_namespaces(layout)]
    found += [f"mount {m}" for m in hosts.lab_mounts(layout)]
    found += [f"cgroup {c}" for c in cgroups.leftovers(layout.cgroup_rel)]
    found += [f"cgroup {c}" for c in cgroups.engine_cgroups([*container_ids, *_container_ids(layout)])]
    found += [f"process {p}" for p in _lab_processes(layout)]
    return found


def _container_ids(layout: Layout) -> list[str]:
    """Containers the hosts' engines ever created, from their disks (kept until `down` ends)."""
    if not layout.hosts_dir.is_dir():
        return []
    return [p.name for p in layout.hosts_dir.glob("*/upper/var/lib/docker/containers/*")]


def _lab_processes(layout: Layout) -> list[int]:
    """Processes whose command line names this lab's directory or namespaces."""
    marks = (
        str(layout.hosts_dir) + "/",
        layout.lab_ns,
        str(layout.dir / "registry.yml"),
        str(layout.dir / "pki") + "/",
    )
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(m in cmd for m in marks):
            found.append(int(entry.name))
    return found
