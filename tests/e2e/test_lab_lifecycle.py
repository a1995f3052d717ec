"""The lab's own contract: `up` is quick and complete, idempotent, and `down` leaves nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.lab import Lab, rootfs
from tests.lab.lifecycle import leftovers
from tests.lab.procs import Proc, alive

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.lab", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_up_down_lifecycle(tmp_path: Path, lab_prerequisites: None) -> None:
    rootfs.ensure("bookworm")  # the timing below is for a machine whose cache exists
    lab_dir = tmp_path / "lab"
    try:
        started = time.monotonic()
        proc = cli("up", "--dir", str(lab_dir), "--hosts", "3")
        elapsed = time.monotonic() - started
        print(f"\nup --hosts 3 with a cached rootfs: {elapsed:.1f}s ({proc.stdout.strip()})")
        assert proc.returncode == 0, proc.stderr
        assert elapsed < 60

        lab = Lab(lab_dir)
        check_outputs(lab)
        check_hosts(lab)
        check_isolation(lab)
        check_cli(lab_dir)

        # Same request, healthy lab: nothing restarts.
        pids = lab.state
        again = cli("up", "--dir", str(lab_dir), "--hosts", "3")
        assert again.returncode == 0, again.stderr
        assert Lab(lab_dir).state["hosts"] == pids["hosts"]

        # A running container gives the hosts' engines cgroups that `down` must remove as well.
        cid = lab.ssh("h2", f"docker run -d --init {lab.runnable_image} sleep 3600").stdout.strip()
        procs = [Proc.from_json(h["proc"]) for h in lab.state["hosts"]]
        procs += [Proc.from_json(lab.state[k]["proc"]) for k in ("registry", "s3")]
    finally:
        down_proc = cli("down", "--dir", str(lab_dir))
    assert down_proc.returncode == 0, down_proc.stderr
    assert leftovers(lab_dir, [cid]) == []
    assert not any(alive(p) for p in procs)
    assert not (lab_dir / "hosts").exists()

    twice = cli("down", "--dir", str(lab_dir))
    assert twice.returncode == 0, twice.stderr
    assert leftovers(lab_dir, [cid]) == []


def check_outputs(lab: Lab) -> None:
    state = json.loads((lab.dir / "lab.json").read_text())
    assert [h["address"] for h in state["hosts"]] == ["198.51.100.21", "198.51.100.22", "198.51.100.23"]
    inventory = yaml.safe_load(lab.inventory_yml.read_text())
    assert inventory["defaults"]["identity_file"] == str(lab.key)
    assert inventory["hosts"]["h1"] == {"address": "198.51.100.21", "vars": {"flavour": "bookworm"}}
    assert inventory["groups"] == {"bookworm": ["h1", "h2", "h3"]}
    ini = lab.inventory_ini.read_text()
    assert "h3 ansible_host=198.51.100.23 ansible_user=root" in ini
    registry_yml = yaml.safe_load(lab.registry_yml.read_text())
    assert registry_yml["http"]["host"] == "https://registry.test"
    assert registry_yml["storage"]["s3"]["regionendpoint"] == "https://198.51.100.11:9000"
    dtr = json.loads(lab.dtr_settings.read_text())
    assert yaml.safe_load(dtr["config"]) == registry_yml and dtr["storage"] == registry_yml["storage"]
    assert lab.registry_ca.read_text() != lab.storage_ca.read_text()


def check_hosts(lab: Lab) -> None:
    out = lab.ssh_all("hostname; systemctl is-active ssh docker; ps -p 1 -o comm=")
    for name, proc in out.items():
        assert proc.stdout.split() == [name, "active", "active", "systemd"]
    # Each host made its own host keys, and known_hosts holds exactly those.
    ed25519 = [line.split()[2] for line in lab.known_hosts.read_text().splitlines() if "ssh-ed25519" in line]
    assert len(set(ed25519)) == 3
    for host, key in zip(lab.hosts, ed25519, strict=True):
        served = lab.ssh(host, "cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub").stdout.strip()
        assert served == key
    assert lab.ssh("h3", "getent hosts registry.test").stdout.split()[0] == "198.51.100.10"
    images = lab.ssh("h3", "docker images --format '{{.Repository}}:{{.Tag}}'").stdout.split()
    assert images == [lab.runnable_image]


def check_isolation(lab: Lab) -> None:
    routes = lab.run_in_ns(["ip", "-4", "route"], check=True).stdout.strip().splitlines()
    assert routes == ["198.51.100.0/24 dev br0 proto kernel scope link src 198.51.100.1"]
    host_routes = lab.ssh("h1", "ip -4 route").stdout.strip().splitlines()
    assert all("default" not in r for r in host_routes)


def check_cli(lab_dir: Path) -> None:
    status = cli("status", "--dir", str(lab_dir))
    assert status.returncode == 0
    assert json.loads(status.stdout)["hosts"] == {"h1": True, "h2": True, "h3": True}
    ssh = cli("ssh", "--dir", str(lab_dir), "h2", "--", "cat", "/etc/hostname")
    assert (ssh.returncode, ssh.stdout) == (0, "h2\n")
    run = cli("run", "--dir", str(lab_dir), "--", "ip", "-br", "-4", "addr", "show", "br0")
    assert "198.51.100.1/24" in run.stdout
