"""Engine decisions on real hosts: a person's daemon.json and certs.d read as dockerd reads them, and
what is the agent's to delete."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.probes import (
    LAB_DAEMON_JSON,
    by_host,
    ca_args,
    engine_state,
    pull,
    runs_secure_for_the_registry,
    skip_args,
)
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab

VERIFY_WAIT = 20  # seconds the verify waits for a live config that does not match (--verify-timeout)
CERTS_D = "/etc/docker/certs.d"


def agent(lab: Lab, command: str, *args: str) -> tuple[int, dict[str, dict[str, Any]], str]:
    """Run ``trust-agent COMMAND`` on the lab's inventory; (exit code, outcome by host, stderr)."""
    proc = lab.run_agent(command, "-i", str(lab.inventory_yml), *args, "--format", "json")
    assert proc.stdout.strip().startswith("{"), (
        f"{command}: no report (exit {proc.returncode}): {proc.stderr}"
    )
    return proc.returncode, by_host(json.loads(proc.stdout)), proc.stderr


def persons_daemon_json(lab: Lab, host: Host, insecure: list[str]) -> str:
    """The lab's base daemon.json with a person's ``insecure-registries``, loaded by a dockerd restart
    (the lab's reset restarts it again into the base file). Returns the file's text."""
    doc = {**json.loads(lab.ssh(host, f"cat {LAB_DAEMON_JSON}").stdout), "insecure-registries": insecure}
    text = json.dumps(doc, indent=2) + "\n"
    lab.ssh(host, "cat > /etc/docker/daemon.json && systemctl restart docker", input=text)
    return text


def file_on(lab: Lab, host: Host, path: str) -> str:
    return lab.ssh(host, f"cat {shlex.quote(path)}").stdout


def test_insecure_entries_with_a_scheme_are_loaded_as_dockerd_loads_them(lab: Lab, tmp_path: Path) -> None:
    """dockerd strips http:// and https:// with a warning and runs; trust-agent blocked the host in skip
    mode ("'http://other.example:5000' is not a host[:port] or a CIDR") and it never converged."""
    host = lab.hosts[0]
    persons_daemon_json(lab, host, ["http://other.example:5000", "https://third.example"])
    info = lab.ssh(host, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout
    assert {"other.example:5000", "third.example"} <= set(json.loads(info)), info  # dockerd's own reading

    code, outcomes, err = agent(lab, "rollout", *skip_args(lab, tmp_path), "--limit", host.name)
    outcome = outcomes[host.name]
    assert (code, outcome["status"], outcome["engine_action"]) == (0, "changed", "reload"), (err, outcome)
    entries = json.loads(file_on(lab, host, "/etc/docker/daemon.json"))["insecure-registries"]
    assert entries[:2] == ["http://other.example:5000", "https://third.example"]  # kept as written
    assert lab.registry in entries[2:]
    assert not runs_secure_for_the_registry(lab, host)
    pull(lab, host)
    code, outcomes, err = agent(lab, "rollout", *skip_args(lab, tmp_path), "--limit", host.name)
    assert (code, outcomes[host.name]["status"]) == (0, "unchanged"), (err, outcomes[host.name])


def test_a_persons_http_entry_for_the_registry_is_no_older_daemon_json_to_reload(lab: Lab) -> None:
    """dockerd runs ``http://registry.test`` as registry.test, insecure; trust-agent compared the text,
    said "dockerd runs an older daemon.json", reloaded, waited 20 s and failed the host on every run."""
    host = lab.hosts[1]
    written = persons_daemon_json(lab, host, [f"http://{lab.registry}"])
    assert not runs_secure_for_the_registry(lab, host)
    stays = f"daemon.json: {lab.registry} stays in insecure-registries (not added by trust-agent)"

    code, outcomes, err = agent(lab, "plan", *ca_args(lab), "--limit", host.name)
    outcome = outcomes[host.name]
    assert (outcome["status"], outcome["engine_action"], outcome["blockers"]) == ("pending", "none", [])
    assert not any("older daemon.json" in r for r in outcome["reasons"]), outcome["reasons"]
    assert any(w.startswith(stays) for w in outcome["warnings"]), outcome["warnings"]

    before = engine_state(lab, host)
    started = time.monotonic()
    code, outcomes, err = agent(lab, "rollout", *ca_args(lab), "--limit", host.name)
    took = time.monotonic() - started
    outcome = outcomes[host.name]
    assert (code, outcome["status"], outcome["engine_action"]) == (0, "changed", "none"), (err, outcome)
    assert took < VERIFY_WAIT, f"the rollout took {took:.1f}s: it waited on the live config"
    assert any(w.startswith(stays) for w in outcome["warnings"]), outcome["warnings"]
    assert engine_state(lab, host) == before  # neither reloaded nor restarted
    assert file_on(lab, host, "/etc/docker/daemon.json") == written

    resolve = ["--resolve", f"{lab.registry}:{lab.state['registry']['address']}"]
    code, outcomes, err = agent(lab, "verify", *ca_args(lab), *resolve, "--limit", host.name)
    # Left alone, but the host does not comply: the policy's registry is not verified there.
    assert (code, outcomes[host.name]["status"]) == (1, "failed"), (err, outcomes[host.name])
    assert outcomes[host.name]["error"].startswith(
        "does not comply with the policy: registry.test: daemon.json lists it in insecure-registries"
    ), outcomes[host.name]


def test_a_persons_trust_agent_named_ca_for_another_registry_survives(lab: Lab) -> None:
    """Any ``trust-agent-*.crt`` under certs.d was deleted with no backup: a person's CA for their
    mirror went, and pulls through it broke. The agent's own file from an older run (no record on the
    host) still goes."""
    host = lab.hosts[2]
    persons = f"{CERTS_D}/mirror.corp:5000/trust-agent-corp-root.crt"
    leftover = f"{CERTS_D}/old.test/trust-agent-storage-ca.crt"
    corp_root = lab.registry_ca.read_text()
    lab.ssh(
        host,
        f"mkdir -p {CERTS_D}/mirror.corp:5000 {CERTS_D}/old.test && cat > {shlex.quote(persons)} && "
        f"cp {shlex.quote(persons)} {leftover} && rm -rf /var/lib/trust-agent",
        input=corp_root,
    )

    code, outcomes, err = agent(lab, "rollout", *ca_args(lab), "--limit", host.name)
    outcome = outcomes[host.name]
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    deleted = {c["path"] for c in outcome["changes"] if c["action"] == "delete"}
    assert deleted == {leftover}, outcome["changes"]
    assert file_on(lab, host, persons) == corp_root
    assert lab.ssh(host, f"test -e {leftover}", check=False).returncode == 1
    pull(lab, host)
    code, outcomes, err = agent(lab, "rollout", *ca_args(lab), "--limit", host.name)
    assert (code, outcomes[host.name]["status"]) == (0, "unchanged"), (err, outcomes[host.name])
    assert file_on(lab, host, persons) == corp_root


def test_an_unreadable_daemon_json_does_not_keep_the_ca_files_from_a_host(lab: Lab, tmp_path: Path) -> None:
    """A daemon.json with a comment and a trailing comma (left unloaded: dockerd runs its last good
    file) failed the host in CA mode too, so its CA files were never installed. It is reported, left
    alone, and no reload is tried; where daemon.json must change (skip mode) the host is still refused."""
    host = lab.hosts[0]
    broken = '{\n  // the site\'s settings\n  "iptables": false,\n  "bridge": "none",\n  "storage-driver": "vfs",\n}\n'
    lab.ssh(host, "cat > /etc/docker/daemon.json", input=broken)
    before = engine_state(lab, host)

    code, outcomes, err = agent(lab, "rollout", *skip_args(lab, tmp_path), "--limit", host.name)
    outcome = outcomes[host.name]
    assert code != 0 and outcome["status"] == "failed", (err, outcome)
    assert "/etc/docker/daemon.json: not valid JSON (line 2, column 3)" in outcome["error"], outcome

    code, outcomes, err = agent(lab, "rollout", *ca_args(lab), "--limit", host.name)
    outcome = outcomes[host.name]
    assert (code, outcome["status"], outcome["engine_action"]) == (0, "changed", "none"), (err, outcome)
    assert any(
        w.startswith("/etc/docker/daemon.json: not valid JSON") and "leaves it alone" in w
        for w in outcome["warnings"]
    ), outcome["warnings"]
    assert file_on(lab, host, "/etc/docker/daemon.json") == broken
    assert engine_state(lab, host) == before  # neither reloaded nor restarted
    assert runs_secure_for_the_registry(lab, host)
    pull(lab, host)  # through the registry and its storage, with the CAs just written
    code, outcomes, err = agent(lab, "rollout", *ca_args(lab), "--limit", host.name)
    assert (code, outcomes[host.name]["status"]) == (0, "unchanged"), (err, outcomes[host.name])
