"""A failed rollout's roll-back on a host another run changed between its apply and its roll-back: the
host's lock lasts one script, so the other run can write in between, and its change must stand."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.probes import by_host, ca_args, docker_tree, skip_args
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab

STATE = "/var/lib/trust-agent/docker-state.json"


@contextmanager
def registry_hung(lab: Lab) -> Iterator[None]:
    """The registry's process stopped (SIGSTOP): a pull through it hangs until dockerd gives up on the
    TLS handshake. Always continued again."""
    pid = int(lab.state["registry"]["proc"]["pid"])
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def storage_ca_written(lab: Lab, host: Host) -> bool:
    found = lab.ssh(host, f"ls /etc/docker/certs.d/{lab.registry}/ 2>/dev/null || true").stdout
    return "storage" in found


def trust_state(lab: Lab, host: Host) -> tuple[dict[str, str], str]:
    """Every file under /etc/docker (sha256) and the agent's record of the entries it added."""
    return docker_tree(lab, host), lab.ssh(host, f"cat {STATE} 2>/dev/null || echo absent").stdout


def test_a_roll_back_leaves_the_change_another_run_made_since_the_apply(lab: Lab, tmp_path: Path) -> None:
    """Run A applies the CA files, then its canary pull hangs and fails; meanwhile run B switches the
    host to skip-TLS. A's roll-back used to delete B's CA files and B's record of the insecure-registries
    entries it added (leaving them in daemon.json unowned, never removed): now it leaves the host as B
    left it, and says so."""
    host = lab.hosts[0]
    inventory = ["-i", str(lab.inventory_yml), "--limit", host.name]
    with registry_hung(lab):
        run_a = lab.popen_agent(
            "rollout", *ca_args(lab), *inventory, "--canary-image", lab.image, "--format", "json"
        )
        try:
            deadline = time.monotonic() + 60
            while not storage_ca_written(lab, host):
                assert run_a.poll() is None and time.monotonic() < deadline, "run A never wrote its CA files"
                time.sleep(0.2)
            run_b = lab.run_agent("rollout", *skip_args(lab, tmp_path), *inventory, "--format", "json")
            assert run_a.poll() is None, "run A ended before run B changed the host: no race to test"
            assert run_b.returncode == 0, run_b.stderr
            assert by_host(json.loads(run_b.stdout))[host.name]["status"] == "changed"
            after_b = trust_state(lab, host)
            stdout, stderr = run_a.communicate(timeout=120)
        finally:
            if run_a.poll() is None:
                run_a.kill()
                run_a.communicate()
    outcome: dict[str, Any] = by_host(json.loads(stdout))[host.name]
    assert outcome["status"] == "failed", (outcome, stderr)
    assert outcome["error"].startswith(f"canary pull of {lab.image} failed"), outcome
    assert outcome["error"].endswith(
        "no longer holds what this run's apply wrote: another run (or a person) changed the host since; "
        "not rolled back: the host is left as it is"
    ), outcome
    assert trust_state(lab, host) == after_b  # B's files, B's record
    assert json.loads(after_b[1])["insecure_registries"]  # B's record claims the entries it added
    assert (
        lab.registry in json.loads(lab.ssh(host, "cat /etc/docker/daemon.json").stdout)["insecure-registries"]
    )
