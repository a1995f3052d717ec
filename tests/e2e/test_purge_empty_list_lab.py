"""``daemon uninstall --purge`` and the empty insecure-registries list trust-agent wrote, on real hosts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.probes import ca_args, outcome_of, skip_args
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab

# A person's daemon.json, as `printf` wrote it: one line, no newline at its end.
PERSONS_FILE = '{"storage-driver":"vfs","iptables":false,"bridge":"none","debug":false}'


def switched_from_skip_tls_to_a_ca(lab: Lab, host: Host, tmp_path: Path, *ca_options: str) -> None:
    """``host`` with the person's daemon.json, rolled out skip-TLS, then with the lab's CAs."""
    lab.ssh(host, f"printf '%s' '{PERSONS_FILE}' > /etc/docker/daemon.json && systemctl reload docker")
    code, outcome, err = outcome_of(lab, "rollout", host, *skip_args(lab, tmp_path))
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    code, outcome, err = outcome_of(lab, "rollout", host, *ca_args(lab), *ca_options)
    assert outcome["status"] == "changed", (code, err, outcome)
    assert (
        lab.ssh(host, "cat /etc/docker/daemon.json").stdout
        == PERSONS_FILE[:-1] + ',"insecure-registries":[]}'
    )


def purge(lab: Lab, host: Host) -> str:
    proc = lab.run_agent("daemon", "uninstall", "--purge", "-i", str(lab.inventory_yml), "--limit", host.name)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return proc.stdout


def insecure_live(lab: Lab, host: Host) -> dict[str, bool]:
    out = lab.ssh(host, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout
    return {name: not entry["Secure"] for name, entry in json.loads(out).items()}


def test_a_purge_gives_back_the_persons_daemon_json_byte_for_byte(lab: Lab, tmp_path: Path) -> None:
    """Before, the agent's [] stayed after the purge, and with the record gone it counted as a person's."""
    host = lab.hosts[1]
    switched_from_skip_tls_to_a_ca(lab, host, tmp_path)
    assert not any(insecure_live(lab, host).values())
    said = purge(lab, host)
    assert "trust removed" in said, said
    assert lab.ssh(host, "cat /etc/docker/daemon.json").stdout == PERSONS_FILE
    # The key gone and dockerd reloaded: its live list stays empty (it replaces it only where the key is).
    assert not any(insecure_live(lab, host).values())
    assert lab.ssh(host, "test -e /var/lib/trust-agent/docker-state.json", check=False).returncode == 1


def test_a_purge_keeps_the_empty_list_dockerd_has_not_loaded_and_says_why(lab: Lab, tmp_path: Path) -> None:
    """A CA rollout with restart policy never leaves registry.test insecure in the running dockerd:
    without the key, a reload would keep it so; with [] the next reload clears it."""
    host = lab.hosts[1]
    switched_from_skip_tls_to_a_ca(lab, host, tmp_path, "--restart-policy", "never")
    assert insecure_live(lab, host)[lab.registry]
    said = purge(lab, host)
    assert f"dockerd still lists {lab.registry}" in said and "the empty insecure-registries" in said, said
    assert lab.ssh(host, "cat /etc/docker/daemon.json").stdout.endswith(',"insecure-registries":[]}')
    lab.ssh(host, "systemctl reload docker")
    assert not any(insecure_live(lab, host).values())
