"""Engine edge cases on real hosts: what dockerd runs is not what its files say, and paths the agent
writes that hold a directory."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.probes import (
    LAB_DAEMON_JSON,
    by_host,
    ca_args,
    daemon_json,
    docker_tree,
    pull,
    runs_secure_for_the_registry,
    skip_args,
)
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab

VERIFY_WAIT = 20  # seconds the verify waits for a live config that does not match (--verify-timeout)


def agent(lab: Lab, command: str, *args: str) -> tuple[int, dict[str, dict[str, Any]], str]:
    """Run ``trust-agent COMMAND`` on the lab's inventory; (exit code, outcome by host, stderr)."""
    proc = lab.run_agent(command, "-i", str(lab.inventory_yml), *args, "--format", "json")
    assert proc.stdout.strip().startswith("{"), (
        f"{command}: no report (exit {proc.returncode}): {proc.stderr}"
    )
    return proc.returncode, by_host(json.loads(proc.stdout)), proc.stderr


def insecure_list_kept_after_its_key_went(lab: Lab, host: Host) -> None:
    """``host`` as a person leaves it: the registry listed as insecure, reloaded, the key removed from
    daemon.json, reloaded again; dockerd keeps the list (fact 11). No record of the agent's there."""
    listed = {**json.loads(lab.ssh(host, f"cat {LAB_DAEMON_JSON}").stdout)}
    listed["insecure-registries"] = ["old.test", lab.registry]
    lab.ssh(host, "cat > /etc/docker/daemon.json && systemctl reload docker", input=json.dumps(listed))
    deadline = time.monotonic() + 10
    while runs_secure_for_the_registry(lab, host) and time.monotonic() < deadline:
        time.sleep(0.2)  # the reload applies asynchronously
    lab.ssh(host, f"cp {LAB_DAEMON_JSON} /etc/docker/daemon.json && systemctl reload docker")
    time.sleep(1)  # a reload that cleared the list would have done so by now
    lab.ssh(host, "rm -rf /var/lib/trust-agent")


def test_a_list_dockerd_kept_on_a_host_without_the_agents_record_is_cleared_in_one_rollout(lab: Lab) -> None:
    """Planned without dockerd's live config (the host has no state file, so only its version is
    asked), the rollout wrote the CA files, found the registry still insecure, waited 20 s and rolled
    the host back. Now the live config read for the verify shows the kept list, and ``[]`` is written."""
    host = lab.hosts[2]
    insecure_list_kept_after_its_key_went(lab, host)
    try:
        assert not runs_secure_for_the_registry(lab, host)
        started = time.monotonic()
        code, outcomes, err = agent(lab, "rollout", *ca_args(lab), "--limit", host.name)
        took = time.monotonic() - started
        outcome = outcomes[host.name]
        assert code == 0, (err, outcome)
        assert (outcome["status"], outcome["engine_action"]) == ("changed", "reload"), outcome
        assert took < VERIFY_WAIT, f"the rollout took {took:.1f}s: it waited on the live config"
        assert any("insecure-registries written as []" in r for r in outcome["reasons"]), outcome
        assert daemon_json(lab, host)["insecure-registries"] == []
        assert runs_secure_for_the_registry(lab, host)
        pull(lab, host)  # through the registry and its storage, with the CAs just written
        code, outcomes, err = agent(lab, "rollout", *ca_args(lab), "--limit", host.name)
        assert (code, outcomes[host.name]["status"]) == (0, "unchanged"), err
    finally:
        # The lab's reset restarts dockerd only where daemon.json differs from its base.
        lab.ssh(host, "systemctl restart docker")


@pytest.fixture
def directories_in_the_way(lab: Lab) -> Iterator[tuple[Host, Host]]:
    """h1 holds a directory where the agent writes the storage CA; h2 one where daemon.json is."""
    ca_dir, config_dir = lab.hosts[0], lab.hosts[1]
    lab.ssh(ca_dir, f"mkdir -p /etc/docker/certs.d/{lab.registry}/trust-agent-storage-ca.crt")
    lab.ssh(config_dir, "mv /etc/docker/daemon.json /root/daemon.json && mkdir /etc/docker/daemon.json")
    yield ca_dir, config_dir
    lab.ssh(ca_dir, "rm -rf /etc/docker/certs.d/*")
    lab.ssh(config_dir, "rmdir /etc/docker/daemon.json && mv /root/daemon.json /etc/docker/daemon.json")


def test_a_directory_where_the_agent_writes_a_file_fails_that_host_alone_and_says_so(
    lab: Lab, tmp_path: Path, directories_in_the_way: tuple[Host, Host]
) -> None:
    """Before, each rollout failed such a host with "changed since facts were gathered; run again" (or
    wrote the rest and reported nothing of it), and plan and verify said "pending"."""
    ca_dir, config_dir = directories_in_the_way
    healthy = lab.hosts[2]
    says = {
        ca_dir.name: f"/etc/docker/certs.d/{lab.registry}/trust-agent-storage-ca.crt is a directory, not a file",
        config_dir.name: "/etc/docker/daemon.json is a directory, not a file",
    }
    trees = {host.name: docker_tree(lab, host) for host in (ca_dir, config_dir)}

    def only_healthy_proceeds(command: str, args: list[str], status: str) -> None:
        _, outcomes, err = agent(lab, command, *args)
        assert outcomes[healthy.name]["status"] == status, (command, outcomes[healthy.name], err)
        for name, why in says.items():
            assert outcomes[name]["status"] == "failed", (command, outcomes[name])
            assert outcomes[name]["error"].startswith(why), (command, outcomes[name]["error"])
            assert outcomes[name]["error"].endswith("then run again (nothing written)")
        assert {name: docker_tree(lab, lab.host(name)) for name in trees} == trees, command

    only_healthy_proceeds("plan", ca_args(lab), "pending")
    only_healthy_proceeds("rollout", ca_args(lab), "changed")
    only_healthy_proceeds("verify", ca_args(lab), "unchanged")
    only_healthy_proceeds("rollout", skip_args(lab, tmp_path), "changed")
    assert not lab.ssh(ca_dir, "ls /var/lib/trust-agent", check=False).stdout.strip()
