"""Hand edits that verify must judge as dockerd does: the agent's insecure-registries entries reordered
(no drift), the agent's own empty list removed (a record change said with its reason), and a certs.d
directory that is a link to nothing (the host blocked in plan, verify and rollout, naming the link)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.probes import daemon_json, docker_tree, outcome_of, skip_args
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab

STATE = "/var/lib/trust-agent/docker-state.json"
LINK = "/etc/docker/certs.d/registry.test:443"
MISSING = "/srv/certs/registry.test"


def skip_policy(lab: Lab, tmp_path: Path) -> list[str]:
    return [*skip_args(lab, tmp_path), "--no-storage-ca"]


def write_daemon_json(lab: Lab, host: Host, doc: dict[str, Any]) -> None:
    lab.ssh(host, "cat > /etc/docker/daemon.json", input=json.dumps(doc, indent=2) + "\n")


def record(lab: Lab, host: Host) -> str:
    return lab.ssh(host, f"cat {STATE}").stdout


def test_reordered_agent_entries_in_daemon_json_are_no_drift(lab: Lab, tmp_path: Path) -> None:
    """verify said "pending" with no diff and no reason, and the next rollout rewrote only the
    agent's record, in the new order."""
    host = lab.hosts[0]
    args = skip_policy(lab, tmp_path)
    code, outcome, err = outcome_of(lab, "rollout", host, *args)
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    doc = daemon_json(lab, host)
    assert doc["insecure-registries"] == ["registry.test", "registry.test:443"]
    before = record(lab, host)
    doc["insecure-registries"].reverse()
    write_daemon_json(lab, host, doc)

    code, outcome, err = outcome_of(lab, "verify", host, *args)
    assert code == 0, (err, outcome)
    assert (outcome["changed"], outcome["changes"], outcome["reasons"]) == (False, [], []), outcome
    code, outcome, err = outcome_of(lab, "plan", host, *args, "--detailed-exitcode")
    assert code == 0, (err, outcome)
    code, outcome, err = outcome_of(lab, "rollout", host, *args)
    assert (code, outcome["status"]) == (0, "unchanged"), (err, outcome)
    assert record(lab, host) == before


def test_the_agents_empty_list_removed_by_hand_is_a_record_change_with_its_reason(
    lab: Lab, tmp_path: Path
) -> None:
    """Back on the CA policy daemon.json keeps the agent's "insecure-registries": [] (fact 11); a person
    deleting it made verify say "pending" with no reason at all."""
    host = lab.hosts[0]
    code, outcome, err = outcome_of(lab, "rollout", host, *skip_policy(lab, tmp_path))
    assert code == 0, (err, outcome)
    code, outcome, err = outcome_of(lab, "rollout", host)
    assert code == 0, (err, outcome)
    doc = daemon_json(lab, host)
    assert doc["insecure-registries"] == []
    assert json.loads(record(lab, host)).get("empty_insecure_list") is True
    del doc["insecure-registries"]
    write_daemon_json(lab, host, doc)

    code, outcome, err = outcome_of(lab, "verify", host)
    # Only the agent's record follows the hand edit: the host's trust is as the policy wants.
    assert (code, outcome["status"]) == (0, "unchanged"), (err, outcome)
    assert outcome["reasons"] == [
        "daemon.json: the empty insecure-registries trust-agent wrote is gone (changed by hand): its record "
        "forgets it, so an empty list written there later is taken as a person's"
    ], outcome
    code, outcome, err = outcome_of(lab, "rollout", host)
    assert code == 0, (err, outcome)
    assert "empty_insecure_list" not in json.loads(record(lab, host))
    assert "insecure-registries" not in daemon_json(lab, host)
    code, outcome, err = outcome_of(lab, "verify", host)
    assert (code, outcome["changed"], outcome["reasons"]) == (0, False, []), (err, outcome)


def test_a_certs_d_link_to_nothing_blocks_plan_verify_and_rollout_naming_it(lab: Lab) -> None:
    """plan and verify said "pending" with no blocker; the rollout failed "writable by a user other than
    root ... chmod go-w", from the link's own mode 0777."""
    host = lab.hosts[2]
    code, outcome, err = outcome_of(lab, "rollout", host)
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    lab.ssh(host, f"rm -r {LINK} && ln -s {MISSING} {LINK}")
    tree = docker_tree(lab, host)
    said = (
        f"{LINK} is a link to {MISSING}, which does not exist: create the target directory or remove "
        "the link, then run again (nothing written)"
    )
    for command in ("plan", "verify"):
        code, outcome, err = outcome_of(lab, command, host)
        assert code == 1 and said in outcome["blockers"], (command, err, outcome)
    code, outcome, err = outcome_of(lab, "rollout", host)
    assert (code, outcome["status"], outcome["error"]) == (1, "failed", said), (err, outcome)
    assert docker_tree(lab, host) == tree
    assert lab.ssh(host, f"readlink {LINK}").stdout.strip() == MISSING


CERTS_D = "/etc/docker/certs.d"
CA_NAMES = ("trust-agent-registry-ca.crt", "trust-agent-storage-ca.crt")


def test_a_takeover_past_a_link_between_two_spellings_removes_each_ca_file_once_and_keeps_the_link(
    lab: Lab,
) -> None:
    """With certs.d/registry.test:443 a person's link to registry.test, a run for registry.test:5000
    listed every CA file for deletion twice, once under each name, and said it removed "the directory
    trust-agent created" of the link."""
    host = lab.hosts[1]
    code, outcome, err = outcome_of(lab, "rollout", host)
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    lab.ssh(host, f"rm -r {LINK} && ln -s registry.test {LINK}")
    takeover = ("--registry", "registry.test:5000")
    code, outcome, err = outcome_of(lab, "plan", host, *takeover)
    assert code == 0, (err, outcome)
    deleted = sorted(c["path"] for c in outcome["changes"] if c["action"] == "delete")
    assert deleted == [f"{CERTS_D}/registry.test/{name}" for name in CA_NAMES], outcome["changes"]
    assert "certs.d/registry.test:443 (a link to registry.test) is left: it is yours" in outcome["reasons"]
    assert not [r for r in outcome["reasons"] if r.startswith("certs.d/registry.test:443/")], outcome

    code, outcome, err = outcome_of(lab, "rollout", host, *takeover)
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    assert lab.ssh(host, f"readlink {LINK}").stdout.strip() == "registry.test"
    assert lab.ssh(host, f"ls {CERTS_D}/registry.test:5000").stdout.split() == list(CA_NAMES)
    assert json.loads(record(lab, host))["cert_dirs"] == [f"{CERTS_D}/registry.test:5000"]
    code, outcome, err = outcome_of(lab, "rollout", host, *takeover)
    assert (code, outcome["status"]) == (0, "unchanged"), (err, outcome)
