"""A rollout on a host where trust-agent's daemon keeps a policy: the daemon puts its own back within an
interval, so a rollout of another policy says so instead of reporting a change that will not last."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.e2e.probes import ca_args, daemon_json, skip_args
from tests.e2e.test_daemon_lab import (  # noqa: F401 - fixtures
    INTERVAL,
    METRICS,
    STORAGE_CA,
    dlab,
    install,
    metrics,
    status,
    wait_for,
    wheels,
)
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


HOST_LOCK = "/var/lib/trust-agent/lock"


def storage_source(lab: Lab, tmp_path: Path, *, skipverify: bool) -> Path:
    """The lab's registry config with TLS verification of its storage skipped or not."""
    doc = yaml.safe_load(lab.registry_yml.read_text())
    doc["storage"]["s3"]["skipverify"] = skipverify
    path = tmp_path / f"registry-skipverify-{str(skipverify).lower()}.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def install_h1(lab: Lab, source: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return lab.run_agent(
        "daemon",
        "install",
        "-i",
        str(lab.inventory_yml),
        "--limit",
        "h1",
        "--source",
        str(source),
        "--storage-ca",
        str(lab.storage_ca),
        "--registry-ca",
        str(lab.registry_ca),
        "--interval",
        f"{INTERVAL:g}s",
        "--metrics-file",
        METRICS,
        "--format",
        "json",
        *extra,
    )


def test_a_new_policy_that_finds_the_host_locked_is_pending_until_it_is_applied(
    dlab: Lab,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The daemon said ok, healthy and converged on a new policy while a rollout held the host's lock
    and the host still held the old policy's files (applied only once the lock was freed)."""
    host = dlab.host("h1")
    first = install_h1(dlab, storage_source(dlab, tmp_path, skipverify=False))
    assert first.returncode == 0, first.stdout + first.stderr
    old = status(dlab, host)["policy"]["fingerprint"]
    assert dlab.ssh(host, f"test -f {STORAGE_CA}", check=False).returncode == 0

    # A rollout at work on the host, until this test lets go (-o: only flock itself holds the lock).
    holder = dlab.ssh(host, f"flock -o {HOST_LOCK} sleep 300 </dev/null >/dev/null 2>&1 & echo $!")
    pid = holder.stdout.strip()
    second = install_h1(dlab, storage_source(dlab, tmp_path, skipverify=True), "--wait", "8s")
    doc, gauges = status(dlab, host), metrics(dlab, host)
    # The host as the lock kept it: read before letting go (the daemon applies within an interval after).
    kept_ca = dlab.ssh(host, f"test -f {STORAGE_CA}", check=False).returncode == 0
    listed = daemon_json(dlab, host).get("insecure-registries", [])
    dlab.ssh(host, f"kill $(pgrep -P {pid}) {pid}")  # fails the test if the lock was let go before
    reported = {h["host"]: h for h in json.loads(second.stdout)["hosts"]}["h1"]
    assert second.returncode != 0 and "not healthy" in reported["error"], reported
    assert doc["policy"]["fingerprint"] != old and doc["host_busy"] is True
    assert (doc["state"], doc["healthy"], doc["converged"], doc["outcome"]) == ("pending", False, None, None)
    assert gauges["trust_agent_up"] == 0 and gauges["trust_agent_host_converged"] == 0
    assert gauges["trust_agent_policy_pending"] == 1
    assert gauges["trust_agent_host_busy"] == 1
    assert kept_ca and "registry.test" not in listed  # the old policy's files

    def applied() -> bool:
        now = status(dlab, host)
        return bool(now["healthy"]) and now["converged"] is True

    wait_for("the new policy applied once the lock is freed", applied, timeout=4 * INTERVAL + 20)
    assert "registry.test" in daemon_json(dlab, host).get("insecure-registries", [])
