"""A hand edit that only trust-agent's record has to follow: the agent's own ``"insecure-registries": []``
removed from daemon.json once dockerd had loaded it. dockerd keeps its live list, empty, where the key is
missing (fact 11), so the host trusts what the policy wants: verify passes it, and rollout updates the
record saying so, with no reload. Removed before dockerd loaded it, the list dockerd runs is stale and
the host needs ``[]`` back and a reload."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.probes import daemon_json, engine_state, outcome_of, pull, skip_args
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab

RECORD = "/var/lib/trust-agent/docker-state.json"
NOTE = "empty_insecure_list"
GONE = (
    "daemon.json: the empty insecure-registries trust-agent wrote is gone (changed by hand): its record "
    "forgets it, so an empty list written there later is taken as a person's"
)
WOULD_UPDATE = f"only trust-agent's record {RECORD} would be updated"
UPDATED = f"only trust-agent's record {RECORD} was updated"


def record(lab: Lab, host: Host) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(lab.ssh(host, f"cat {RECORD}").stdout)
    return doc


def index_configs(lab: Lab, host: Host) -> dict[str, Any]:
    """dockerd's live registry settings (``docker info``): a registry it does not verify is listed there
    with ``Secure: false``."""
    out = lab.ssh(host, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout
    configs: dict[str, Any] = json.loads(out)
    return configs


def remove_insecure_key(lab: Lab, host: Host) -> None:
    """A person deleting ``insecure-registries`` from daemon.json, and nothing else."""
    doc = daemon_json(lab, host)
    del doc["insecure-registries"]
    lab.ssh(host, "cat > /etc/docker/daemon.json", input=json.dumps(doc, indent=2) + "\n")


def skip_then_ca(lab: Lab, host: Host, tmp_path: Path, *ca_extra: str) -> None:
    """``host`` taken to skip-TLS, then back to the lab's CA policy: daemon.json keeps the agent's []."""
    code, outcome, err = outcome_of(lab, "rollout", host, *skip_args(lab, tmp_path), "--no-storage-ca")
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    code, outcome, err = outcome_of(lab, "rollout", host, *ca_extra)
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    assert daemon_json(lab, host)["insecure-registries"] == []
    assert record(lab, host).get(NOTE) is True


def test_the_agents_loaded_empty_list_removed_by_hand_is_verified_and_only_recorded(
    lab: Lab, tmp_path: Path
) -> None:
    """verify failed the host (exit 1, "pending"), and rollout said "changed" with 0 files, though
    dockerd ran the policy's trust and no file it reads was written."""
    host = lab.hosts[0]
    skip_then_ca(lab, host, tmp_path)
    remove_insecure_key(lab, host)
    engine = engine_state(lab, host)
    assert lab.registry not in index_configs(lab, host)  # dockerd verifies the registry's TLS

    code, outcome, err = outcome_of(lab, "verify", host)
    assert (code, outcome["status"], outcome["changed"]) == (0, "unchanged", False), (err, outcome)
    assert (outcome["changes"], outcome["files_changed"], outcome["reasons"]) == ([], 0, [GONE]), outcome
    assert "live config" in outcome["verified"], outcome
    assert any(w.startswith(WOULD_UPDATE) for w in outcome["warnings"]), outcome
    code, outcome, err = outcome_of(lab, "plan", host, "--detailed-exitcode")
    assert (code, outcome["status"]) == (0, "unchanged"), (err, outcome)

    code, outcome, err = outcome_of(lab, "rollout", host)
    assert (code, outcome["status"], outcome["engine_action"]) == (0, "unchanged", "none"), (err, outcome)
    assert (outcome["files_changed"], outcome["reasons"]) == (0, [GONE]), outcome
    assert any(w.startswith(UPDATED) for w in outcome["warnings"]), outcome
    assert NOTE not in record(lab, host)
    assert "insecure-registries" not in daemon_json(lab, host)
    assert engine_state(lab, host) == engine  # neither reloaded nor restarted
    pull(lab, host)  # through the storage's redirect, with the CA files alone

    # A reload now keeps dockerd's live list, which is empty (fact 11): the registry stays verified.
    lab.ssh(host, "systemctl reload docker")
    assert lab.registry not in index_configs(lab, host)
    code, outcome, err = outcome_of(lab, "rollout", host)
    assert (code, outcome["status"], outcome["warnings"]) == (0, "unchanged", []), (err, outcome)


def test_the_agents_empty_list_removed_before_dockerd_loaded_it_is_put_back_and_reloaded(
    lab: Lab, tmp_path: Path
) -> None:
    """With dockerd never reloaded after the [] was written (restart policy never), it still skips TLS
    for the registry, and a reload without the key would keep that: more than the record's business."""
    host = lab.hosts[0]
    skip_then_ca(lab, host, tmp_path, "--restart-policy", "never")
    remove_insecure_key(lab, host)
    assert index_configs(lab, host)[lab.registry]["Secure"] is False

    code, outcome, err = outcome_of(lab, "verify", host)
    assert (code, outcome["status"], outcome["engine_action"]) == (1, "pending", "reload"), (err, outcome)
    assert not any(w.startswith(WOULD_UPDATE) for w in outcome["warnings"]), outcome
    code, outcome, err = outcome_of(lab, "rollout", host)
    assert (code, outcome["status"], outcome["engine_action"]) == (0, "changed", "reload"), (err, outcome)
    assert outcome["files_changed"] == 1, outcome
    assert daemon_json(lab, host)["insecure-registries"] == []
    assert lab.registry not in index_configs(lab, host)
    pull(lab, host)
