"""A daemon.json with data after its JSON object, as each engine reads it. Docker 20.10 decodes the file
with Go's json.Decoder, which reads the first value and stops: it starts and reloads, and loads what
the object says. Docker 26.1 (json.Unmarshal) refuses the file at start and on reload ("invalid
character '}' after top-level value"). trust-agent treated it as unreadable on both: on 20.10 it said
dockerd would not start, that dockerd ran an earlier file, and refused a skip-TLS rollout.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.probes import LAB_DAEMON_JSON, outcome_of, skip_args
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab

FLAVOURS = ("bookworm", "trixie")
DAEMON_JSON = "/etc/docker/daemon.json"
HAND = "hand.example"  # a person's insecure registry, in the object dockerd reads
STRAY = b"\n}\n"  # the stray brace after the object
DOCKERD_SAYS = "invalid character '}' after top-level value"


@pytest.fixture
def fleet(mixed_lab: Lab) -> Lab:
    """The mixed fleet (h1, h3: Docker 20.10; h2, h4: 26.1), storage with its own CA, reset."""
    return mixed_lab


def with_stray_brace(lab: Lab, host: Host) -> bytes:
    """The host's base daemon.json, its keys kept, with the person's entry and a stray brace after it."""
    base = json.loads(lab.ssh(host, f"cat {LAB_DAEMON_JSON}").stdout)
    return json.dumps({**base, "insecure-registries": [HAND]}).encode() + STRAY


@pytest.fixture
def stray_brace(fleet: Lab) -> Iterator[None]:
    """Each test writes the file on its host; after it, every host gets its base file back and dockerd
    restarted (a reload keeps an insecure list whose key went, fact 11)."""
    fleet.reset()
    yield
    for host in fleet.hosts:
        fleet.ssh(
            host,
            f"cp --remove-destination {LAB_DAEMON_JSON} {DAEMON_JSON} && "
            "systemctl reset-failed docker.service docker.socket 2>/dev/null; systemctl restart docker",
        )
    fleet.reset()


def write_and(lab: Lab, host: Host, raw: bytes, then: str) -> None:
    """``raw`` as the host's daemon.json, then the shell text ``then`` (a restart or a reload)."""
    lab.ssh(host, f"printf %s {shlex.quote(raw.decode())} > {DAEMON_JSON} && {then}")


def insecure_loaded(lab: Lab, host: Host) -> set[str]:
    out = lab.ssh(host, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout
    return {name for name, index in json.loads(out).items() if index["Secure"] is False}


def test_docker_20_10_runs_the_object_and_a_rollout_merges_into_it_keeping_what_follows(
    fleet: Lab, stray_brace: None, tmp_path: Path
) -> None:
    host = fleet.hosts_of("bookworm")[0]
    raw = with_stray_brace(fleet, host)
    write_and(fleet, host, raw, "systemctl restart docker")
    # What dockerd 20.10 does with it: it starts, and loads the object's list.
    assert fleet.ssh(host, "systemctl is-active docker").stdout.strip() == "active"
    assert insecure_loaded(fleet, host) == {HAND}

    code, outcome, err = outcome_of(fleet, "rollout", host)
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    said = " | ".join(outcome["warnings"])
    assert "will not start" not in said and "earlier file" not in said, said
    (trailing,) = [w for w in outcome["warnings"] if "after the end of its JSON document" in w]
    assert '"}"' in trailing and "(line 2, column 1)" in trailing, trailing
    assert f'Docker 23.0 and later refuse the file ("{DOCKERD_SAYS}")' in trailing, trailing
    assert "live config" in outcome["verified"], outcome

    code, outcome, err = outcome_of(fleet, "rollout", host, *skip_args(fleet, tmp_path))
    assert (code, outcome["status"], outcome["engine_action"]) == (0, "changed", "reload"), (err, outcome)
    assert "live config" in outcome["verified"], outcome
    # The object's list spliced in place, the person's entry first; the stray brace kept after it.
    written = fleet.ssh(host, f"cat {DAEMON_JSON}").stdout.encode()
    head, tail = written[: -len(STRAY)], written[-len(STRAY) :]
    assert tail == STRAY and head.startswith(raw[: raw.index(f'["{HAND}"'.encode())]), written
    entries = json.loads(head)["insecure-registries"]
    assert entries[0] == HAND and fleet.registry in entries, entries
    assert json.loads(head) == {**json.loads(raw[: -len(STRAY)]), "insecure-registries": entries}
    assert insecure_loaded(fleet, host) == set(entries)

    # As the engine reads it after a restart too.
    fleet.ssh(host, "systemctl restart docker")
    assert insecure_loaded(fleet, host) == set(entries)


def test_docker_26_refuses_the_file_and_so_does_a_rollout_saying_why(
    fleet: Lab, stray_brace: None, tmp_path: Path
) -> None:
    host = fleet.hosts_of("trixie")[0]
    raw = with_stray_brace(fleet, host)
    write_and(fleet, host, raw, "systemctl reload docker")
    # What dockerd 26.1 does with it: a refused reload (it runs on with its base config) and a refused
    # validation, in the words the rollout quotes.
    assert insecure_loaded(fleet, host) == set()
    validated = fleet.ssh(host, "dockerd --validate 2>&1", check=False)
    assert validated.returncode != 0 and DOCKERD_SAYS in validated.stdout, validated.stdout

    code, outcome, err = outcome_of(fleet, "rollout", host, *skip_args(fleet, tmp_path))
    assert code != 0 and outcome["status"] == "failed", (err, outcome)
    error = outcome["error"]
    assert f"{DAEMON_JSON}: not valid JSON (line 2, column 1)" in error, error
    assert f'Docker 23.0 and later refuse ("{DOCKERD_SAYS}"' in error, error
    assert fleet.ssh(host, f"cat {DAEMON_JSON}").stdout.encode() == raw  # left as it was

    # dockerd runs its earlier config, and a restart fails, as the CA-policy rollout's warnings say.
    code, outcome, err = outcome_of(fleet, "rollout", host)
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    (unreadable,) = [w for w in outcome["warnings"] if "dockerd will not start or reload" in w]
    assert DOCKERD_SAYS in unreadable, unreadable
    (earlier,) = [w for w in outcome["warnings"] if w.startswith("live config not compared")]
    assert "dockerd runs what it loaded from an earlier file" in earlier, earlier
    assert HAND not in insecure_loaded(fleet, host)
    restarted = fleet.ssh(host, "systemctl restart docker", check=False)
    assert restarted.returncode != 0
    journal = fleet.ssh(host, "journalctl -u docker -o cat --no-pager -n 30").stdout
    assert DOCKERD_SAYS in journal, journal
