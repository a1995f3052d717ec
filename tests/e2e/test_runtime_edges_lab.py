"""What dockerd does with what the plan leaves as it is, on Docker 20.10 and 26.1 alike: a person's
empty ``"insecure-registries": []`` beside an ``--insecure-registry`` flag stops dockerd, and the plan
says so before it happens; half a client pair in certs.d fails no pull while the registry is insecure,
and the plan says that too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.probes import LAB_DAEMON_JSON, daemon_json, outcome_of, pull, skip_args, unit_drop_in
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab

DAEMON_JSON = "/etc/docker/daemon.json"
FLAVOURS = ("bookworm", "trixie")  # Docker 20.10 and 26.1 (tests/conftest.py's mixed fleet)
EXEC_START = "/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock"
FLAG_DROP_IN = f"[Service]\nExecStart=\nExecStart={EXEC_START} --insecure-registry 10.9.9.9\n"
REFUSAL = (
    "the following directives are specified both as a flag and in the configuration file: "
    "insecure-registries: (from flag: [10.9.9.9], from file: [])"
)


@pytest.fixture
def lab(mixed_lab: Lab) -> Lab:
    """The shared mixed fleet: Docker 20.10 and 26.1 hosts, reset for each test."""
    return mixed_lab


def journal_since(lab: Lab, host: Host, cursor: str) -> str:
    return lab.ssh(host, f"journalctl -u docker -o cat --no-pager --after-cursor='{cursor}'").stdout


def journal_cursor(lab: Lab, host: Host) -> str:
    out = lab.ssh(host, "journalctl -u docker -n 1 --show-cursor --no-pager -o cat").stdout
    return out.rsplit("-- cursor: ", 1)[1].strip()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_persons_empty_list_beside_a_flag_is_said_to_stop_dockerd_and_it_does(
    lab: Lab, flavour: str
) -> None:
    """The plan said only that the directive "would stop dockerd", not that an empty list counts, nor
    what to remove; trust-agent leaves the person's key, and dockerd refuses it as it said."""
    host = lab.hosts_of(flavour)[0]
    with unit_drop_in(lab, host, "x4.conf", FLAG_DROP_IN):
        doc = daemon_json(lab, host)
        written = json.dumps({**doc, "insecure-registries": []}, indent=2) + "\n"
        lab.ssh(host, f"cat > {DAEMON_JSON}", input=written)  # by hand, after dockerd started
        try:
            code, outcome, err = outcome_of(lab, "rollout", host)
            assert (code, outcome["status"], outcome["engine_action"]) == (0, "changed", "none"), (
                err,
                outcome,
            )
            (said,) = [w for w in outcome["warnings"] if w.startswith("daemon.json as it is: ")]
            assert (
                'and daemon.json holds "insecure-registries": [] that trust-agent has no record of writing '
                "(empty, but a directive): dockerd refuses a reload with it now, and will not start at its "
                "next restart"
            ) in said, said
            assert said.endswith(
                '; remove "insecure-registries": [] from /etc/docker/daemon.json (the flags give the list)'
            ), said
            assert lab.ssh(host, f"cat {DAEMON_JSON}").stdout == written  # the person's key stays

            cursor = journal_cursor(lab, host)
            lab.ssh(host, "systemctl reload docker")
            assert lab.ssh(host, "systemctl is-active docker").stdout.strip() == "active"
            restart = lab.ssh(host, "systemctl reset-failed docker; systemctl restart docker", check=False)
            assert restart.returncode != 0, restart
            journal = journal_since(lab, host, cursor)
            assert "Got signal to reload configuration" in journal, journal
            assert journal.count(REFUSAL) >= 2, journal  # the reload refused, then the start
        finally:
            lab.ssh(host, f"cp {LAB_DAEMON_JSON} {DAEMON_JSON}")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_half_a_client_pair_fails_no_pull_from_an_insecure_registry_and_the_plan_says_so(
    lab: Lab, tmp_path: Path, flavour: str
) -> None:
    """On a skip-TLS host the warning said "dockerd fails every pull": dockerd reads no certs.d
    directory for an insecure registry (moby registry newTLSConfig), and pulls work."""
    host = lab.hosts_of(flavour)[0]
    code, outcome, err = outcome_of(lab, "rollout", host, *skip_args(lab, tmp_path))
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    lab.ssh(host, f"touch /etc/docker/certs.d/{lab.registry}/client.cert")
    pull(lab, host)  # raises where the pull fails
    code, outcome, err = outcome_of(lab, "plan", host, *skip_args(lab, tmp_path))
    assert code == 0, (err, outcome)
    assert (
        f"certs.d/{lab.registry}/client.cert has no client.key beside it: dockerd ignores "
        f"certs.d/{lab.registry}/ while {lab.registry} is insecure, so pulls work now, but once its TLS is "
        f"verified again dockerd fails every pull from {lab.registry} (fact 6); add the other half or remove it"
    ) in outcome["warnings"], outcome["warnings"]
