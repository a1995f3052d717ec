"""A rollout on a host where trust-agent's daemon keeps a policy: the daemon puts its own back within an
interval, so a rollout of another policy says so instead of reporting a change that will not last."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.probes import ca_args, skip_args
from tests.e2e.test_daemon_lab import dlab, install, status, wheels  # noqa: F401 - fixtures
from tests.lab import Lab

pytestmark = pytest.mark.lab

KEEPS = "trust-agent's daemon runs on this host and keeps another policy"


def test_a_rollout_of_another_policy_on_a_daemon_host_says_the_daemon_will_put_its_own_back(
    dlab: Lab,  # noqa: F811
    tmp_path: Path,
) -> None:
    host = dlab.host("h1")
    report = install(dlab, limit="h1")
    assert report["h1"]["status"] == "installed", report
    kept = status(dlab, host)["policy"]["fingerprint"]

    other = dlab.run_agent(
        "plan", "-i", str(dlab.inventory_yml), "--limit", "h1", *skip_args(dlab, tmp_path), "--format", "json"
    )
    warnings = json.loads(other.stdout)["hosts"][0]["warnings"]
    assert [w for w in warnings if w.startswith(KEEPS) and f"({kept})" in w], warnings

    same = dlab.run_agent(
        "plan", "-i", str(dlab.inventory_yml), "--limit", "h1", *ca_args(dlab), "--format", "json"
    )
    assert not [w for w in json.loads(same.stdout)["hosts"][0]["warnings"] if w.startswith(KEEPS)]
