"""A mixed fleet, as users run one: Debian 12's docker.io 20.10 beside Debian 13's 26.1.

The engines differ exactly where the agent acts: 26.1 has ``dockerd --validate``, 20.10 answers
``unknown flag: --validate`` (trust fact 12), so the agent must find out which engine each host runs,
in its one gathering round trip, and check a new daemon.json with whatever that engine offers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.probes import by_host, ca_args, docker_tree, engine_state, pull_and_push, skip_args
from tests.lab import Lab

pytestmark = pytest.mark.lab

# What each flavour brings (Debian's packages): systemd, and the engine's version prefix.
SYSTEMD = {"bookworm": "252", "trixie": "257"}
ENGINE = {"bookworm": "20.10.", "trixie": "26.1."}
HAS_VALIDATE = {"bookworm": False, "trixie": True}
AGENT_CHECKS = "agent checks"
DOCKERD_VALIDATE = "dockerd --validate"
# A key dockerd refuses (the JSON parser does not): the file parses, the daemon will not take it.
BAD_KEY = "no-such-option"


def rollout(lab: Lab, tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    """``trust-agent rollout`` with a JSON report file; returns (exit code, report, stdout summary)."""
    report = tmp_path / "rollout.json"
    report.unlink(missing_ok=True)
    proc = lab.run_agent("rollout", "-i", str(lab.inventory_yml), *args, "-o", str(report))
    assert report.exists(), proc.stdout + proc.stderr
    return proc.returncode, json.loads(report.read_text()), proc.stdout + proc.stderr


def assert_engine_versions(lab: Lab, report: dict[str, Any]) -> None:
    for host in lab.hosts:
        assert by_host(report)[host.name]["engine_version"].startswith(ENGINE[host.flavour]), host


def test_the_lab_spreads_hosts_over_both_flavours_and_each_runs_its_own_engine(mixed_lab: Lab) -> None:
    lab = mixed_lab
    assert [h.flavour for h in lab.hosts] == ["bookworm", "trixie", "bookworm", "trixie"]
    state = json.loads((lab.dir / "lab.json").read_text())
    assert set(state["rootfs_by_flavour"]) == {"bookworm", "trixie"}
    assert all((Path(p) / ".complete").exists() for p in state["rootfs_by_flavour"].values())
    inventory = yaml.safe_load(lab.inventory_yml.read_text())
    assert inventory["groups"] == {"bookworm": ["h1", "h3"], "trixie": ["h2", "h4"]}
    assert inventory["hosts"]["h2"]["vars"] == {"flavour": "trixie"}
    assert "[trixie]\nh2\nh4\n" in lab.inventory_ini.read_text()

    probe = (
        "systemctl --version | head -n1; systemctl is-system-running; "
        "docker version --format '{{.Server.Version}}'; "
        'dockerd --validate --config-file /etc/docker/daemon.json 2>&1; echo "exit $?"'
    )
    for host, proc in lab.ssh_all(probe).items():
        flavour = lab.host(host).flavour
        lines = proc.stdout.splitlines()
        assert lines[0].startswith(f"systemd {SYSTEMD[flavour]} "), lines
        assert lines[1] == "running", lines
        assert lines[2].startswith(ENGINE[flavour]), lines
        if HAS_VALIDATE[flavour]:
            assert lines[-2:] == ["configuration OK", "exit 0"], lines
        else:
            # docker.io 20.10 prints "Status: unknown flag: --validate ..., Code: 125" and exits 1.
            assert "unknown flag: --validate" in proc.stdout and lines[-1] != "exit 0", lines


def test_a_ca_rollout_converges_both_engines_and_pull_and_push_work_everywhere(
    mixed_lab: Lab, tmp_path: Path
) -> None:
    lab = mixed_lab
    html = tmp_path / "rollout.html"
    proc = lab.run_agent(
        "rollout", "-i", str(lab.inventory_yml), *ca_args(lab), "--canary-image", lab.image, "-o", str(html)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    page = html.read_text()
    for host in lab.hosts:
        # The status table's row for the host names its engine's version.
        row = re.search(rf'<a href="#host-\d+">{host.name}</a>.*?</tr>', page, re.S)
        assert row and re.search(rf"<td>{re.escape(ENGINE[host.flavour])}\d+</td>", row.group(0)), host
        pull_and_push(lab, host, "mixed")

    # Converged: a second run changes nothing, says so per host, and shows each engine's version.
    code, report, _ = rollout(lab, tmp_path, *ca_args(lab))
    assert code == 0
    assert {h["status"] for h in report["hosts"]} == {"unchanged"}
    assert_engine_versions(lab, report)
    text = lab.run_agent("plan", "-i", str(lab.inventory_yml), *ca_args(lab), "--format", "text")
    assert text.returncode == 0, text.stderr
    # Hosts with the same story share one header: "h1, h3 (2 hosts)  unchanged  none  docker 20.10.24".
    headers = [line for line in text.stdout.splitlines() if line.startswith("h")]
    for host in lab.hosts:
        header = next(h for h in headers if host.name in re.split(r", | \(", h.split("  ")[0]))
        assert f"docker {ENGINE[host.flavour]}" in header, header


def test_a_skip_tls_rollout_reloads_every_engine_validating_with_what_each_has(
    mixed_lab: Lab, tmp_path: Path
) -> None:
    lab = mixed_lab
    before = {h.name: engine_state(lab, h) for h in lab.hosts}
    code, report, out = rollout(lab, tmp_path, *skip_args(lab, tmp_path))
    assert code == 0, out
    assert_engine_versions(lab, report)
    for host in lab.hosts:
        outcome = by_host(report)[host.name]
        assert outcome["status"] == "changed" and outcome["engine_action"] == "reload", outcome
        # 26.1 checked the staged file with `dockerd --validate` (and the unit's flags); 20.10 cannot.
        expected = [AGENT_CHECKS, DOCKERD_VALIDATE] if HAS_VALIDATE[host.flavour] else [AGENT_CHECKS]
        assert outcome["checks"] == expected, outcome
        assert "live config" in outcome["verified"]
        start, reloads = engine_state(lab, host)
        assert (start, reloads) == (before[host.name][0], before[host.name][1] + 1), "one reload, no restart"
        info = json.loads(
            lab.ssh(host, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout
        )
        assert info[lab.registry]["Secure"] is False
        pull_and_push(lab, host, "mixed")


def test_a_daemon_json_dockerd_refuses_is_caught_before_reload_on_both_engines(
    mixed_lab: Lab, tmp_path: Path
) -> None:
    lab = mixed_lab
    # Someone left a key dockerd does not know in daemon.json and did not reload: dockerd still runs
    # its old config. The skip-TLS change must go into that file, and then dockerd would refuse it.
    seeded = json.dumps(
        {"iptables": False, "bridge": "none", "storage-driver": "vfs", BAD_KEY: True}, indent=2
    )
    for host in lab.hosts:
        lab.ssh(host, "cat > /etc/docker/daemon.json", input=seeded + "\n")
    before = {h.name: (docker_tree(lab, h), engine_state(lab, h)) for h in lab.hosts}

    code, report, out = rollout(lab, tmp_path, *skip_args(lab, tmp_path))
    assert code == 1, out
    assert_engine_versions(lab, report)
    for host in lab.hosts:
        outcome = by_host(report)[host.name]
        assert outcome["status"] == "failed" and outcome["engine_action"] == "none", outcome
        if HAS_VALIDATE[host.flavour]:
            # Refused on the host by dockerd itself, on the staged file, before anything was renamed.
            assert outcome["checks"] == [AGENT_CHECKS, DOCKERD_VALIDATE], outcome
            assert outcome["error"].startswith("dockerd --validate refused the new daemon.json"), outcome
            # It quotes the file it stands for, not the staged copy it read.
            assert ".trust-agent." not in outcome["error"] and "/etc/docker/daemon.json" in outcome["error"]
            assert (
                f"the following directives don't match any configuration option: {BAD_KEY}"
                in outcome["error"]
            )
            assert "dockerd refuses directives it does not know" not in outcome["error"]
            assert outcome["blockers"] == []
        else:
            # 20.10 has no --validate: the agent's own checks refused the plan; nothing was sent.
            assert outcome["checks"] == [AGENT_CHECKS], outcome
            assert outcome["blockers"] == [
                f"/etc/docker/daemon.json: unknown key '{BAD_KEY}': dockerd refuses directives it does not know"
            ]
            assert outcome["error"] == outcome["blockers"][0]
            assert "apply" not in [p["name"] for p in outcome["phases"]]
        # Nothing written, no directory made, no reload: dockerd still runs its old config.
        assert (docker_tree(lab, host), engine_state(lab, host)) == before[host.name], host
        assert lab.ssh(host, "systemctl is-active docker").stdout.strip() == "active"
        assert json.loads(lab.ssh(host, "cat /etc/docker/daemon.json").stdout) == json.loads(seeded)

    # Once the key is gone the same rollout goes through everywhere.
    for host in lab.hosts:
        lab.ssh(host, f'sed -i \'/{BAD_KEY}/d; s/"vfs",/"vfs"/\' /etc/docker/daemon.json')
    code, report, out = rollout(lab, tmp_path, *skip_args(lab, tmp_path))
    assert code == 0, out
    assert {h["status"] for h in report["hosts"]} == {"changed"}
