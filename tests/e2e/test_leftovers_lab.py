"""Runs that meet on one host, and what a run stopped part way leaves there: a roll-back that finds
another run's apply holding the host's lock waits for it, and files a killed run left beside daemon.json,
in certs.d and beside the agent's record are named by plan and verify and settled by the next apply."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.e2e.probes import by_host, ca_args, docker_tree, pull
from tests.e2e.test_rollback_race_lab import registry_hung, storage_ca_written, trust_state
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab

STATE_DIR = "/var/lib/trust-agent"
STATE = f"{STATE_DIR}/docker-state.json"
LOCK = f"{STATE_DIR}/lock"
HELD = "/run/trust-agent-test-lock-held"
RELEASE = "/run/trust-agent-test-lock-release"


def agent(lab: Lab, command: str, host: Host, *args: str) -> tuple[int, dict[str, Any]]:
    """Run ``trust-agent COMMAND`` for ``host`` alone; (exit code, its outcome)."""
    proc = lab.run_agent(
        command, "-i", str(lab.inventory_yml), "--limit", host.name, *args, "--format", "json"
    )
    assert proc.stdout.strip().startswith("{"), (
        f"{command}: no report (exit {proc.returncode}): {proc.stderr}"
    )
    return proc.returncode, by_host(json.loads(proc.stdout))[host.name]


def wait_until(what: str, done: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"{what}: not within {seconds:.0f}s"
        time.sleep(0.2)


@contextmanager
def lock_held_on(lab: Lab, host: Host) -> Iterator[Callable[[], None]]:
    """The host's lock held from a shell, as another run's apply holds it, until the function yielded is
    called (or the block ends; the holder gives up by itself after 120 s)."""
    hold = f"i=0; touch {HELD}; while [ ! -e {RELEASE} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done"
    lab.ssh(host, f"rm -f {HELD} {RELEASE}; nohup flock {LOCK} sh -c '{hold}' >/dev/null 2>&1 &")

    def release() -> None:
        lab.ssh(host, f"touch {RELEASE}")

    try:
        wait_until(
            "the shell never got the lock",
            lambda: lab.ssh(host, f"test -e {HELD}", check=False).returncode == 0,
            60,
        )
        yield release
    finally:
        release()
        lab.ssh(host, f"flock -w 30 {LOCK} rm -f {HELD} {RELEASE}")


def rollback_waiting(lab: Lab, host: Host) -> bool:
    """A roll-back's script waits for the host's lock (``flock -w``; the ssh command line itself starts
    with its shell, so the anchored pattern does not find it)."""
    return lab.ssh(host, "pgrep -f '^flock -w'", check=False).returncode == 0


def test_a_roll_back_waits_for_the_lock_another_run_holds_then_rolls_the_host_back(lab: Lab) -> None:
    """Run A writes its CA files and its canary pull fails; meanwhile another run holds the host's lock
    (an apply at work). A's roll-back used to find the lock held and leave the host as A's failed apply
    left it; now it waits, and once the lock is free the host is as it was before A."""
    host = lab.hosts[0]
    before = trust_state(lab, host)
    with registry_hung(lab):
        run_a = lab.popen_agent(
            "rollout",
            *ca_args(lab),
            "-i",
            str(lab.inventory_yml),
            "--limit",
            host.name,
            "--canary-image",
            lab.image,
            "--format",
            "json",
        )
        try:
            wait_until("run A never wrote its CA files", lambda: storage_ca_written(lab, host), 60)
            with lock_held_on(lab, host) as release:
                deadline = time.monotonic() + 120
                while run_a.poll() is None and not rollback_waiting(lab, host):
                    assert time.monotonic() < deadline, "run A's roll-back never came"
                    time.sleep(0.2)
                waited = run_a.poll() is None
                release()
            stdout, stderr = run_a.communicate(timeout=120)
        finally:
            if run_a.poll() is None:
                run_a.kill()
                run_a.communicate()
    outcome: dict[str, Any] = by_host(json.loads(stdout))[host.name]
    assert (waited, outcome["status"]) == (True, "rolled_back"), (outcome, stderr)
    assert outcome["error"].startswith(f"canary pull of {lab.image} failed"), outcome
    assert outcome["error"].endswith("; rolled back"), outcome
    assert trust_state(lab, host) == before


def leftovers(lab: Lab, host: Host) -> list[str]:
    return lab.ssh(
        host, f"find /etc/docker {STATE_DIR} -name '.trust-agent.[0-9]*' | sort", check=False
    ).stdout.split()


def test_what_a_killed_run_left_is_named_by_plan_and_verify_and_settled_by_the_next_rollout(
    lab: Lab,
) -> None:
    """A CA rollout, then its roll-back killed once it had set aside what the apply created (the CA file
    and the agent's record), and an earlier run killed while staging daemon.json: the files lay there
    for good, unnamed, and the record with them. Plan and verify name them; the rollout removes them,
    puts the record back, and the host pulls."""
    host = lab.hosts[1]
    code, outcome = agent(lab, "rollout", host, *ca_args(lab))
    assert (code, outcome["status"]) == (0, "changed"), outcome
    record = lab.ssh(host, f"cat {STATE}").stdout
    ca = f"/etc/docker/certs.d/{lab.registry}/trust-agent-storage-ca.crt"
    left = [
        "/etc/docker/.trust-agent.4243.t1",
        f"/etc/docker/certs.d/{lab.registry}/.trust-agent.4242.a0",
        f"{STATE_DIR}/.trust-agent.4242.a1",
    ]
    lab.ssh(
        host,
        f"head -c 7 /etc/docker/daemon.json > {left[0]} && mv {ca} {left[1]} && mv {STATE} {left[2]}",
    )
    assert leftovers(lab, host) == sorted(left)
    tree = docker_tree(lab, host)

    for command in ("plan", "verify"):
        _, outcome = agent(lab, command, host, *ca_args(lab))
        said = " ".join(outcome["warnings"])
        assert (
            f"stopped part way (killed, or its connection dropped): {left[0]}, {left[1]}; the next apply"
            in said
        ), outcome
        assert f"{left[2]} is trust-agent's record {STATE}" in said, outcome
        assert docker_tree(lab, host) == tree and leftovers(lab, host) == sorted(left)

    code, outcome = agent(lab, "rollout", host, *ca_args(lab))
    assert (code, outcome["status"]) == (0, "changed"), outcome
    assert any("this apply removed them under the host's lock" in w for w in outcome["warnings"]), outcome
    assert leftovers(lab, host) == []
    assert lab.ssh(host, f"cat {STATE}").stdout == record
    pull(lab, host)

    # On a host with nothing else to change, the rollout removes them all the same.
    lab.ssh(host, f"head -c 7 /etc/docker/daemon.json > {left[0]}")
    code, outcome = agent(lab, "rollout", host, *ca_args(lab))
    assert (code, outcome["status"]) == (0, "unchanged"), outcome
    assert any("this apply removed them" in w for w in outcome["warnings"]), outcome
    assert leftovers(lab, host) == []
    code, outcome = agent(lab, "plan", host, *ca_args(lab))
    assert not [w for w in outcome["warnings"] if "stopped part way" in w], outcome


def test_a_killed_runs_file_beside_a_linked_daemon_jsons_target_is_named_and_removed(lab: Lab) -> None:
    """daemon.json a link to /srv/docker/daemon.json: the apply stages beside the target, so a killed
    run's file lies there, away from /etc/docker."""
    host = lab.hosts[2]
    left = "/srv/docker/.trust-agent.77.t0"
    lab.ssh(
        host,
        "mkdir -p /srv/docker && mv /etc/docker/daemon.json /srv/docker/daemon.json && "
        f"ln -s /srv/docker/daemon.json /etc/docker/daemon.json && head -c 7 /srv/docker/daemon.json > {left}",
    )
    try:
        _, outcome = agent(lab, "plan", host, *ca_args(lab))
        assert any(f"dropped): {left}; the next apply removes them" in w for w in outcome["warnings"]), (
            outcome
        )
        code, outcome = agent(lab, "rollout", host, *ca_args(lab))
        assert (code, outcome["status"]) == (0, "changed"), outcome
        assert lab.ssh(host, "ls -A /srv/docker").stdout.split() == ["daemon.json"]
    finally:
        lab.ssh(
            host,
            "rm -f /etc/docker/daemon.json && mv /srv/docker/daemon.json /etc/docker/daemon.json && "
            "rm -rf /srv/docker",
        )
