"""What the plan decides, against what dockerd really does: flags that already hold the skip-TLS
policy, a daemon.json that is not UTF-8 (Docker 20.10 reads it, 26.1 refuses it), half a client pair
that fails every pull, and the agent's own empty list beside a flag added later."""

from __future__ import annotations

import base64
import json
import shlex
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.probes import (
    LAB_DAEMON_JSON,
    an_insecure_registry_flag_in_etc_default_docker,
    by_host,
    ca_args,
    docker_tree,
    engine_state,
    pull,
    runs_secure_for_the_registry,
    skip_args,
    unit_drop_in,
)
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab

# h1 and h3 run Debian 12's docker.io 20.10, h2 and h4 Debian 13's 26.1 (tests/conftest.py's mixed fleet).
DAEMON_JSON = "/etc/docker/daemon.json"
DROP_IN_NAME = "x2.conf"
EXEC_START = "/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock"


@pytest.fixture
def lab(mixed_lab: Lab) -> Lab:
    """The shared mixed fleet (20.10 and 26.1 in turn), every host's trust state reset."""
    return mixed_lab


def agent(lab: Lab, command: str, *args: str) -> tuple[int, dict[str, dict[str, Any]], str]:
    """Run ``trust-agent COMMAND`` on the lab's inventory; (exit code, outcome by host, stderr)."""
    proc = lab.run_agent(command, "-i", str(lab.inventory_yml), *args, "--format", "json")
    assert proc.stdout.strip().startswith("{"), (
        f"{command}: no report (exit {proc.returncode}): {proc.stderr}"
    )
    return proc.returncode, by_host(json.loads(proc.stdout)), proc.stderr


def resolve(lab: Lab) -> list[str]:
    return ["--resolve", f"{lab.registry}:{lab.state['registry']['address']}"]


def file_bytes(lab: Lab, host: Host, path: str = DAEMON_JSON) -> bytes:
    return base64.b64decode(lab.ssh(host, f"base64 -w0 {shlex.quote(path)}").stdout)


def write_bytes(lab: Lab, host: Host, data: bytes, path: str = DAEMON_JSON) -> None:
    encoded = base64.b64encode(data).decode()
    lab.ssh(host, f"echo {encoded} | base64 -d > {shlex.quote(path)}")


def dockerd_active(lab: Lab, host: Host) -> bool:
    return lab.ssh(host, "systemctl is-active docker", check=False).stdout.strip() == "active"


def insecure_flags_in_a_drop_in(lab: Lab, host: Host, *names: str) -> AbstractContextManager[None]:
    """dockerd restarted with ``--insecure-registry NAME`` for each name, from a drop-in's ExecStart."""
    flags = "".join(f" --insecure-registry {name}" for name in names)
    return unit_drop_in(lab, host, DROP_IN_NAME, f"[Service]\nExecStart=\nExecStart={EXEC_START}{flags}\n")


def test_registries_the_flags_make_insecure_hold_the_skip_policy(lab: Lab, tmp_path: Path) -> None:
    """Both names insecure by a drop-in's flags: dockerd pulls; plan, rollout and verify failed the
    host on every run ("x2.conf sets --insecure-registry; ... would stop dockerd")."""
    host = lab.hosts[0]
    skip = [*skip_args(lab, tmp_path), "--limit", host.name]
    with insecure_flags_in_a_drop_in(lab, host, lab.registry, f"{lab.registry}:443"):
        assert not runs_secure_for_the_registry(lab, host)
        pull(lab, host)  # the host holds the policy already
        before, engine = file_bytes(lab, host), engine_state(lab, host)
        code, outcomes, err = agent(lab, "plan", *skip)
        assert (code, outcomes[host.name]["blockers"]) == (0, []), (err, outcomes[host.name])
        assert not [c for c in outcomes[host.name]["changes"] if c["path"] == DAEMON_JSON]
        code, outcomes, err = agent(lab, "rollout", *skip)
        outcome = outcomes[host.name]
        assert (code, outcome["engine_action"]) == (0, "none"), (err, outcome)
        assert (file_bytes(lab, host), engine_state(lab, host)) == (
            before,
            engine,
        )  # not written, not reloaded
        code, outcomes, err = agent(lab, "rollout", *skip)
        assert (code, outcomes[host.name]["status"]) == (0, "unchanged"), (err, outcomes[host.name])
        code, outcomes, err = agent(lab, "verify", *skip, *resolve(lab))
        assert (code, outcomes[host.name]["status"]) == (0, "unchanged"), (err, outcomes[host.name])

    # One spelling left out of the flags: adding it to daemon.json beside them would stop dockerd.
    with insecure_flags_in_a_drop_in(lab, host, lab.registry):
        tree = docker_tree(lab, host)
        code, outcomes, err = agent(lab, "rollout", *skip)
        outcome = outcomes[host.name]
        assert (code, outcome["status"]) == (1, "failed"), (err, outcome)
        assert (
            "x2.conf sets --insecure-registry; the same directive (insecure-registries) in daemon.json "
            in (outcome["error"])
        )
        assert docker_tree(lab, host) == tree


LATIN1_LABEL = b"owner=Jos\xe9 Mu\xf1oz"


def latin1_daemon_json(lab: Lab, host: Host) -> bytes:
    """The lab's base daemon.json with a label in Latin-1 bytes (not UTF-8), written to the host."""
    base = lab.ssh(host, f"cat {LAB_DAEMON_JSON}").stdout.encode()
    assert base.rstrip().endswith(b"}")
    data = base.rstrip()[:-1].rstrip() + b',\n  "labels": ["' + LATIN1_LABEL + b'"]\n}\n'
    write_bytes(lab, host, data)
    return data


def test_a_daemon_json_that_is_not_utf8_is_changed_on_20_10_and_refused_on_26_1(
    lab: Lab, tmp_path: Path
) -> None:
    """trust-agent said on every engine that dockerd would not start with it; Docker 20.10 runs it.
    26.1 refuses it ("invalid UTF-8"), as the plan says."""
    old, new = lab.hosts_of("bookworm")[0], lab.hosts_of("trixie")[0]
    written = latin1_daemon_json(lab, old)
    lab.ssh(old, "systemctl restart docker")
    assert dockerd_active(lab, old)  # 20.10 starts with it
    code, outcomes, err = agent(lab, "rollout", *skip_args(lab, tmp_path), "--limit", old.name)
    outcome = outcomes[old.name]
    assert (code, outcome["status"], outcome["engine_action"]) == (0, "changed", "reload"), (err, outcome)
    assert any("is not UTF-8 (byte" in w and "reads it" in w for w in outcome["warnings"]), outcome[
        "warnings"
    ]
    after = file_bytes(lab, old)
    assert LATIN1_LABEL in after  # every other byte as it was
    assert after.replace(
        b',\n  "insecure-registries": [\n    "registry.test",\n    "registry.test:443"\n  ]', b""
    ) == (written)
    assert not runs_secure_for_the_registry(lab, old)  # reloaded: dockerd took the file
    pull(lab, old)
    lab.ssh(old, "systemctl restart docker")
    assert dockerd_active(lab, old)

    latin1_daemon_json(lab, new)
    refusal = lab.ssh(new, f"dockerd --validate --config-file {DAEMON_JSON}", check=False)
    assert refusal.returncode != 0 and "invalid UTF-8" in refusal.stdout + refusal.stderr, refusal
    tree = docker_tree(lab, new)
    code, outcomes, err = agent(lab, "rollout", *skip_args(lab, tmp_path), "--limit", new.name)
    outcome = outcomes[new.name]
    assert (code, outcome["status"]) == (1, "failed"), (err, outcome)
    assert "not UTF-8 (byte" in outcome["error"] and "which dockerd 26.1" in outcome["error"], outcome[
        "error"
    ]
    assert docker_tree(lab, new) == tree


def test_verify_fails_a_host_whose_half_client_pair_fails_every_pull(lab: Lab) -> None:
    """client.cert without client.key: every pull fails, yet verify said unchanged and exited 0."""
    host = lab.hosts[2]
    code, _, err = agent(lab, "rollout", *ca_args(lab), "--limit", host.name)
    assert code == 0, err
    pull(lab, host)
    lab.ssh(host, f"touch /etc/docker/certs.d/{lab.registry}/client.cert")
    assert lab.ssh(host, f"docker pull {lab.image}", check=False).returncode != 0  # dockerd: every pull fails
    code, outcomes, err = agent(lab, "verify", *ca_args(lab), *resolve(lab), "--limit", host.name)
    outcome = outcomes[host.name]
    assert (code, outcome["status"]) == (1, "failed"), (err, outcome)
    assert outcome["error"].startswith(
        f"does not comply with the policy: certs.d/{lab.registry}/client.cert has no client.key beside it: "
        f"dockerd fails every pull from {lab.registry} (fact 6)"
    ), outcome["error"]


def test_the_agents_empty_list_goes_once_a_flag_gives_the_directive_and_dockerd_starts(
    lab: Lab, tmp_path: Path
) -> None:
    """skip → CA leaves trust-agent's "insecure-registries": []; with --insecure-registry added to
    DOCKER_OPTS dockerd would not start ("specified both as a flag and in the configuration file"),
    and the rollout said unchanged. It takes the key out and reloads; dockerd then starts."""
    host = lab.hosts[0]
    for args in (skip_args(lab, tmp_path), ca_args(lab)):
        code, _, err = agent(lab, "rollout", *args, "--limit", host.name)
        assert code == 0, err
    assert json.loads(file_bytes(lab, host))["insecure-registries"] == []
    with an_insecure_registry_flag_in_etc_default_docker(lab, host):
        code, outcomes, err = agent(lab, "rollout", *ca_args(lab), "--limit", host.name)
        outcome = outcomes[host.name]
        assert (code, outcome["status"], outcome["engine_action"]) == (0, "changed", "reload"), (err, outcome)
        assert any(
            r.startswith("daemon.json: remove the empty insecure-registries") for r in outcome["reasons"]
        )
        assert "insecure-registries" not in json.loads(file_bytes(lab, host))
        assert dockerd_active(lab, host)  # the reload took
        lab.ssh(host, "systemctl restart docker")
        assert dockerd_active(lab, host)
        indexes = lab.ssh(host, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout
        assert json.loads(indexes)["10.9.9.9"]["Secure"] is False  # the list is the flag's
        assert runs_secure_for_the_registry(lab, host)
        pull(lab, host)
        code, outcomes, err = agent(lab, "rollout", *ca_args(lab), "--limit", host.name)
        assert (code, outcomes[host.name]["status"]) == (0, "unchanged"), (err, outcomes[host.name])


def test_a_rollout_on_20_10_verifies_the_live_config_of_a_daemon_json_that_is_not_utf8(
    lab_session: Lab, tmp_path: Path
) -> None:
    """Docker 20.10 runs the Latin-1 daemon.json, and the plan changed it; the verify read it strictly,
    warned "live config not compared" and left the reload unproved."""
    lab_session.reset()
    host = lab_session.hosts_of("bookworm")[0]
    latin1_daemon_json(lab_session, host)
    # docker.service allows 3 starts a minute: the reset before this test may have used one.
    lab_session.ssh(host, "systemctl reset-failed docker.service; systemctl restart docker")
    try:
        code, outcomes, err = agent(
            lab_session, "rollout", *skip_args(lab_session, tmp_path), "--limit", host.name
        )
        outcome = outcomes[host.name]
        assert (code, outcome["status"], outcome["engine_action"]) == (0, "changed", "reload"), (err, outcome)
        assert "live config" in outcome["verified"], outcome
        assert not [w for w in outcome["warnings"] if "not compared" in w], outcome["warnings"]
        assert LATIN1_LABEL in file_bytes(lab_session, host)
        code, outcomes, err = agent(
            lab_session,
            "verify",
            *skip_args(lab_session, tmp_path),
            *resolve(lab_session),
            "--limit",
            host.name,
        )
        outcome = outcomes[host.name]
        assert (code, outcome["status"]) == (0, "unchanged"), (err, outcome)
        assert "live config" in outcome["verified"], outcome
    finally:
        lab_session.ssh(
            host,
            f"cp {LAB_DAEMON_JSON} {DAEMON_JSON} && systemctl reset-failed docker.service; systemctl restart docker",
        )
