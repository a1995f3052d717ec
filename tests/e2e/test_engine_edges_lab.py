"""Engine edge cases on real hosts: what dockerd runs is not what its files say, paths the agent
writes that hold a directory, an apply killed while it backs daemon.json up, a login that is not root
kept from dockerd's command line or the agent's directories, and a registry name one of whose
addresses is loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.probes import (
    LAB_DAEMON_JSON,
    by_host,
    ca_args,
    converged,
    daemon_json,
    docker_tree,
    outcome_of,
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


# --- an apply killed while it backs daemon.json up --------------------------------------------------------

BACKUP_DIR = "/var/lib/trust-agent/backup"

# cp as an apply killed during the backup's copy leaves it: the first bytes of daemon.json there, then the
# script's shell killed (SIGKILL, as a controller killed or its connection dropped leaves it).
CP_KILLED_ON_BACKUP = f"""#!/bin/sh
for a; do src=${{last:-}}; last=$a; done
case "$last" in {BACKUP_DIR}/*) head -c 4 "$src" > "$last"; kill -9 "$PPID"; exit 1 ;; esac
exec /bin/cp "$@"
"""


@contextmanager
def cp_killed_on_backup(lab: Lab, host: Host) -> Iterator[None]:
    """``host``'s cp (/usr/local/bin comes first in root's PATH) killing the apply as it backs up."""
    lab.ssh(host, "cat > /usr/local/bin/cp && chmod 755 /usr/local/bin/cp", input=CP_KILLED_ON_BACKUP)
    try:
        yield
    finally:
        lab.ssh(host, "rm -f /usr/local/bin/cp")


def backup_dir_listing(lab: Lab, host: Host) -> list[str]:
    return lab.ssh(host, f"ls -A {BACKUP_DIR} 2>/dev/null || true").stdout.split()


def test_an_apply_killed_during_the_backup_leaves_no_cut_short_backup_and_the_next_one_is_whole(
    lab: Lab, tmp_path: Path
) -> None:
    """Killed during the backup's cp, the apply left daemon.json.<stamp> holding daemon.json's first
    bytes, among the backups a roll-back or a person restores from."""
    host = lab.hosts[0]
    before = lab.ssh(host, "cat /etc/docker/daemon.json; stat -c %a /etc/docker/daemon.json").stdout
    with cp_killed_on_backup(lab, host):
        code, outcomes, err = agent(lab, "rollout", *skip_args(lab, tmp_path), "--limit", host.name)
    assert code == 1 and outcomes[host.name]["status"] != "changed", (err, outcomes[host.name])
    left = backup_dir_listing(lab, host)
    assert not [name for name in left if name.startswith("daemon.json.")], left
    assert len(left) == 1 and left[0].startswith(".trust-agent.") and left[0].endswith(".b0"), left
    copy = f"{BACKUP_DIR}/{left[0]}"

    _, outcomes, err = agent(lab, "plan", *skip_args(lab, tmp_path), "--limit", host.name)
    said = " ".join(outcomes[host.name]["warnings"])
    assert "files left by a trust-agent run stopped part way" in said and copy in said, (err, said)

    code, outcomes, err = agent(lab, "rollout", *skip_args(lab, tmp_path), "--limit", host.name)
    assert (code, outcomes[host.name]["status"]) == (0, "changed"), (err, outcomes[host.name])
    kept = backup_dir_listing(lab, host)
    assert len(kept) == 1 and kept[0].startswith("daemon.json."), kept
    backup = f"{BACKUP_DIR}/{kept[0]}"
    assert lab.ssh(host, f"cat {backup}; stat -c %a {backup}").stdout == before  # whole, its mode kept
    found = lab.ssh(host, "find /etc/docker /var/lib/trust-agent -name '.trust-agent.[0-9]*'").stdout
    assert found == ""


# --- a login that is not root, kept from dockerd's command line ---------------------------------------------


@contextmanager
def proc_hidden_from_others(lab: Lab, host: Host) -> Iterator[int]:
    """``host``'s /proc mounted hidepid=invisible (a hardened host: a user sees only their own processes);
    yields dockerd's PID. Mounted as before after."""
    lab.ssh(host, "mount -o remount,hidepid=invisible /proc")
    try:
        yield int(lab.ssh(host, "cat /var/run/docker.pid").stdout)
    finally:
        lab.ssh(host, "mount -o remount,hidepid=off /proc")


def deploy_inventory(lab: Lab, host: Host, tmp_path: Path) -> Path:
    """The lab's inventory with ``host`` reached as the lab's ``deploy`` user (no --become)."""
    inventory = yaml.safe_load(lab.inventory_yml.read_text())
    inventory["hosts"][host.name]["user"] = "deploy"
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def test_a_plan_as_a_login_kept_from_dockerds_command_line_says_its_flags_are_not_known(
    lab: Lab, tmp_path: Path
) -> None:
    """With /proc hidepid, a login that is not root cannot read /proc/<pid>/cmdline: taken for a dockerd
    started with no flags, the plan said nothing of flags the running dockerd may have that its unit no
    longer gives (fact 13: such a flag beside the same key in daemon.json stops dockerd on a reload)."""
    host = lab.hosts[1]
    converged(lab, host)
    inventory = deploy_inventory(lab, host, tmp_path)
    with proc_hidden_from_others(lab, host) as pid:
        code, outcome, err = outcome_of(lab, "plan", host, inventory=inventory)
    assert code == 0 and outcome["changes"] == [], (err, outcome)
    said = (
        f"the running dockerd's command line (/proc/{pid}/cmdline) cannot be read (permission denied): "
        "flags it was started with that its unit no longer gives are not known"
    )
    assert said in outcome["warnings"], outcome["warnings"]
    # Where it can read it, nothing is said.
    code, outcome, err = outcome_of(lab, "plan", host, inventory=inventory)
    assert code == 0 and not [w for w in outcome["warnings"] if "command line" in w], (err, outcome)


def test_a_plan_as_a_login_that_cannot_list_the_agents_directories_says_so(lab: Lab, tmp_path: Path) -> None:
    """The record's directory and certs.d/<registry> kept 0750 (an apply keeps an existing directory's
    mode): to a login that is not root the record and the CA files seemed absent, and ``plan`` showed
    both CA files as new, exit 0."""
    host = lab.hosts[2]
    converged(lab, host)
    registry_dir = f"/etc/docker/certs.d/{lab.registry}"
    lab.ssh(host, f"chmod 750 /var/lib/trust-agent {registry_dir}")
    try:
        code, outcome, err = outcome_of(lab, "plan", host, inventory=deploy_inventory(lab, host, tmp_path))
    finally:
        lab.ssh(host, f"chmod 711 /var/lib/trust-agent && chmod 755 {registry_dir}")
    assert code == 1 and outcome["changes"] == [], (err, outcome)
    said = " ".join([outcome["error"], *outcome["warnings"]])
    record = "/var/lib/trust-agent/docker-state.json"
    assert f"trust-agent's record {record} cannot be read (permission denied)" in said, outcome
    assert f"{registry_dir} cannot be listed (permission denied)" in said, outcome


# --- a registry name that resolves to loopback among its addresses ----------------------------------------


@contextmanager
def registry_name_also_on_loopback(lab: Lab, host: Host) -> Iterator[None]:
    """``host``'s /etc/hosts giving the registry's name a second address, 127.0.0.1, below its real one
    (a node-local mirror's line); put back after."""
    lab.ssh(host, f"cp -p /etc/hosts /etc/hosts.lab && echo '127.0.0.1 {lab.registry}' >> /etc/hosts")
    try:
        yield
    finally:
        lab.ssh(host, "mv /etc/hosts.lab /etc/hosts")


def test_verify_fails_a_host_where_one_of_the_registry_names_addresses_is_loopback(lab: Lab) -> None:
    """dockerd looks the name up and skips TLS checks where any of its addresses lies in an insecure
    range, 127.0.0.0/8 always: a pull works with no CA file at all. verify, looking names up only where
    the engine had a range beyond its defaults, said unchanged, exit 0."""
    host = lab.hosts[0]
    converged(lab, host)
    certs = f"/etc/docker/certs.d/{lab.registry}"
    with registry_name_also_on_loopback(lab, host):
        addresses = lab.ssh(host, f"getent ahosts {lab.registry}").stdout
        assert "127.0.0.1" in addresses and lab.state["registry"]["address"] in addresses
        lab.ssh(host, f"mv {certs} /root/certs-kept")
        try:
            pull(lab, host)  # dockerd does not verify the registry: no CA needed
        finally:
            lab.ssh(host, f"mv /root/certs-kept {certs}")
        code, outcome, err = outcome_of(lab, "verify", host)
        assert (code, outcome["status"]) == (1, "failed"), (err, outcome)
        assert outcome["error"].startswith(
            f"does not comply with the policy: {lab.registry} resolves to 127.0.0.1 on this host, which "
            "dockerd always treats as insecure (127.0.0.0/8): TLS is not verified"
        ), outcome["error"]
    code, outcome, err = outcome_of(lab, "verify", host)
    assert (code, outcome["status"]) == (0, "unchanged"), (err, outcome)


# --- a directory of certs.d a login cannot list, beside a record it can read --------------------------------


def test_a_plan_as_a_login_that_cannot_list_a_registrys_directory_shows_no_ca_file_there_as_new(
    lab: Lab, tmp_path: Path
) -> None:
    """certs.d/<registry> alone kept 0750, the record readable: to a login that is not root the CA files
    there seemed absent, and ``plan`` showed both as files to create beside a warning that the directory
    could not be read."""
    host = lab.hosts[1]
    converged(lab, host)
    registry_dir = f"/etc/docker/certs.d/{lab.registry}"
    lab.ssh(host, f"chmod 750 {registry_dir}")
    try:
        code, outcome, err = outcome_of(lab, "plan", host, inventory=deploy_inventory(lab, host, tmp_path))
    finally:
        lab.ssh(host, f"chmod 755 {registry_dir}")
    assert (code, outcome["status"], outcome["changes"]) == (1, "failed", []), (err, outcome)
    assert outcome["error"].startswith(
        f"{registry_dir} cannot be listed (permission denied): which of trust-agent's CA files it holds, "
        "and what they say, is not known, and the plan writes in it: run as root"
    ), outcome["error"]
    assert "trust-agent's record" not in outcome["error"], outcome["error"]
    code, outcome, err = outcome_of(lab, "plan", host, inventory=deploy_inventory(lab, host, tmp_path))
    assert (code, outcome["status"], outcome["changes"]) == (0, "unchanged", []), (err, outcome)


# --- plan and rollout agree on a list dockerd kept after its key went ---------------------------------------


def insecure_list_left_running(lab: Lab, host: Host) -> None:
    """``host`` as a person leaves it: the registry listed as insecure in daemon.json and reloaded, then
    daemon.json put back without a reload; dockerd still runs the list. No record of the agent's there."""
    listed = {**json.loads(lab.ssh(host, f"cat {LAB_DAEMON_JSON}").stdout)}
    listed["insecure-registries"] = [lab.registry]
    lab.ssh(host, "cat > /etc/docker/daemon.json && systemctl reload docker", input=json.dumps(listed))
    deadline = time.monotonic() + 10
    while runs_secure_for_the_registry(lab, host) and time.monotonic() < deadline:
        time.sleep(0.2)  # the reload applies asynchronously
    lab.ssh(host, f"cp {LAB_DAEMON_JSON} /etc/docker/daemon.json && rm -rf /var/lib/trust-agent")


def test_plan_shows_what_the_rollout_does_on_a_host_whose_dockerd_runs_a_list_daemon_json_no_longer_gives(
    lab: Lab,
) -> None:
    """``plan`` showed the four CA files and no reload; the rollout, reading dockerd's live config after
    its first apply, also wrote ``"insecure-registries": []`` and reloaded."""
    host = lab.hosts[0]
    insecure_list_left_running(lab, host)
    try:
        assert not runs_secure_for_the_registry(lab, host)
        code, planned, err = outcome_of(lab, "plan", host)
        assert (code, planned["status"], planned["engine_action"]) == (0, "pending", "reload"), (err, planned)
        paths = sorted(change["path"] for change in planned["changes"])
        assert "/etc/docker/daemon.json" in paths and len(paths) == 5, planned
        code, rolled, err = outcome_of(lab, "rollout", host)
        assert (code, rolled["status"], rolled["engine_action"]) == (0, "changed", "reload"), (err, rolled)
        assert sorted(change["path"] for change in rolled["changes"]) == paths, (planned, rolled)
        assert daemon_json(lab, host)["insecure-registries"] == []
        assert runs_secure_for_the_registry(lab, host)
    finally:
        lab.ssh(host, "systemctl restart docker")


# --- a private key in one of the agent's CA files ----------------------------------------------------------


def reported(lab: Lab, command: str, host: Host, report: Path) -> dict[str, Any]:
    """Run ``trust-agent COMMAND`` on ``host`` alone with the lab's CA source and ``-o report``; its
    outcome as the report says it."""
    args = ["--resolve", f"{lab.registry}:{lab.state['registry']['address']}"] if command == "verify" else []
    lab.run_agent(
        command, "-i", str(lab.inventory_yml), *ca_args(lab), "--limit", host.name, *args, "-o", str(report)
    )
    return by_host(json.loads(report.read_text()))[host.name]


def test_a_private_key_in_a_ca_file_on_a_host_never_reaches_a_plan_or_a_report(
    lab: Lab, tmp_path: Path
) -> None:
    """A CA file someone concatenated with its key: the plan's diff printed the key in full, and every
    -o report (plan, rollout, verify) held it."""
    host = lab.hosts[1]
    converged(lab, host)
    ca_file = f"/etc/docker/certs.d/{lab.registry}/trust-agent-registry-ca.crt"
    key = (lab.dir / "pki/storage-ca.key").read_text()
    lab.ssh(host, f"cat >> {ca_file}", input=key)
    warning = f"{ca_file} holds a private key: it is replaced by this run; consider the key exposed"
    for command, status in (("plan", "pending"), ("verify", "pending"), ("rollout", "changed")):
        report = tmp_path / f"{command}.json"
        outcome = reported(lab, command, host, report)
        said = report.read_text()
        assert "PRIVATE KEY" not in said and key.splitlines()[1] not in said, command
        assert "[private key redacted: " in said, command
        assert (outcome["status"], warning in outcome["warnings"]) == (status, True), (command, outcome)
    assert "PRIVATE KEY" not in lab.ssh(host, f"cat {ca_file}").stdout
    code, outcome, err = outcome_of(lab, "rollout", host)
    assert (code, outcome["status"]) == (0, "unchanged"), (err, outcome)


# --- a rollout learns in its apply's round trip that the registry's name is also on loopback ---------------

GETENT_LOG = "/run/trust-agent-test-getent.log"


@contextmanager
def getent_watched(lab: Lab, host: Host) -> Iterator[None]:
    """Every getent started on ``host`` is logged (a wrapper first in PATH), until the block ends."""
    wrapper = f'#!/bin/sh\necho "$*" >> {GETENT_LOG}\nexec /usr/bin/getent "$@"\n'
    lab.ssh(
        host,
        f"rm -f {GETENT_LOG}; cat > /usr/local/bin/getent && chmod 755 /usr/local/bin/getent",
        input=wrapper,
    )
    try:
        yield
    finally:
        lab.ssh(host, f"rm -f /usr/local/bin/getent {GETENT_LOG}", check=False)


def getent_calls(lab: Lab, host: Host) -> list[str]:
    return lab.ssh(host, f"cat {GETENT_LOG} 2>/dev/null; rm -f {GETENT_LOG}").stdout.splitlines()


def test_a_rollout_that_changes_a_host_whose_registry_name_is_also_on_loopback_warns_of_it(lab: Lab) -> None:
    """verify failed such a host, yet the rollout that changed it said nothing: it looked the name up
    only where the engine had an insecure range beyond its defaults. The apply's own round trip now
    resolves it; a converged host's rollout still asks nothing more."""
    host = lab.hosts[1]
    says = (
        f"{lab.registry} resolves to 127.0.0.1 on this host, which dockerd always treats as insecure "
        "(127.0.0.0/8): TLS is not verified"
    )
    lab.ssh(host, f"rm -rf /etc/docker/certs.d/{lab.registry}")  # something for the rollout to write
    with registry_name_also_on_loopback(lab, host), getent_watched(lab, host):
        code, outcome, err = outcome_of(lab, "rollout", host)
        assert outcome["status"] == "changed" and "live config" in outcome["verified"], (code, err, outcome)
        assert says in outcome["warnings"], outcome["warnings"]
        assert getent_calls(lab, host) == [f"ahosts {lab.registry}"]  # in the apply's script, once
        code, outcome, err = outcome_of(lab, "rollout", host)
        assert (code, outcome["status"]) == (0, "unchanged"), (err, outcome)
        assert getent_calls(lab, host) == []
    code, outcome, err = outcome_of(lab, "rollout", host)
    assert (code, outcome["status"]) == (0, "unchanged") and says not in outcome["warnings"], (err, outcome)
