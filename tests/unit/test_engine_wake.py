"""Whether reaching the engine's socket would start a stopped dockerd: the shell test the scripts and the
SSH session's greeting run, and the local transport's, against a systemctl double on PATH."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agent.hosts import engine_wake
from agent.hosts.local import LocalTransport

# systemctl double: `show -p TriggeredBy docker.service` prints $TRIGGERED_BY; `is-active --quiet UNIT...`
# is true when any UNIT is listed in $ACTIVE; every call is logged beside it.
FAKE_SYSTEMCTL = r"""#!/bin/sh
echo "$*" >> "${0%/*}/systemctl.log"
case "$1" in
  show) echo "TriggeredBy=$TRIGGERED_BY" ;;
  is-active)
    shift; [ "$1" = --quiet ] && shift
    for u in "$@"; do case " $ACTIVE " in *" $u "*) exit 0 ;; esac; done
    exit 3 ;;
esac
"""


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for /run/systemd (a directory, an invocation link path) and systemctl on PATH."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "systemctl"
    fake.write_text(FAKE_SYSTEMCTL)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    (tmp_path / "systemd").mkdir()
    (tmp_path / "units").mkdir()
    return tmp_path


def asleep(machine: Path, *, systemd: bool, link: bool, triggered_by: str, active: str) -> bool:
    systemd_dir = machine / ("systemd" if systemd else "no-systemd")
    invocation = machine / "units" / "invocation:docker.service"
    if link:
        invocation.symlink_to("0123abcd")  # an ID, not a file: -e would not hold
    script = engine_wake.asleep_function(str(systemd_dir), str(invocation))
    env = {**os.environ, "TRIGGERED_BY": triggered_by, "ACTIVE": active}
    done = subprocess.run(["sh", "-c", script + "ta_engine_asleep"], env=env, check=False)
    return done.returncode == 0


@pytest.mark.parametrize(
    ("systemd", "link", "triggered_by", "active", "expected"),
    [
        # `systemctl stop docker`: the service stopped, its socket still listening.
        (True, False, "docker.socket", "docker.socket", True),
        # Either socket of several listening.
        (True, False, "docker.socket other.socket", "other.socket", True),
        # Both stopped: nothing would start dockerd (connecting simply fails).
        (True, False, "docker.socket", "", False),
        # No socket unit triggers docker.service.
        (True, False, "", "", False),
        # docker.service runs (its invocation link is there).
        (True, True, "docker.socket", "docker.socket docker.service", False),
        # A systemd without invocation links, docker.service running: systemctl says so.
        (True, False, "docker.socket", "docker.socket docker.service", False),
        # No systemd at all.
        (False, False, "docker.socket", "docker.socket", False),
    ],
)
def test_the_engine_sleeps_only_where_docker_service_is_stopped_behind_a_listening_socket(
    machine: Path, systemd: bool, link: bool, triggered_by: str, active: str, expected: bool
) -> None:
    assert asleep(machine, systemd=systemd, link=link, triggered_by=triggered_by, active=active) is expected


def test_where_docker_service_runs_systemctl_is_not_asked(machine: Path) -> None:
    assert not asleep(machine, systemd=True, link=True, triggered_by="docker.socket", active="docker.socket")
    assert not (machine / "bin" / "systemctl.log").exists()
    assert not asleep(
        machine, systemd=False, link=False, triggered_by="docker.socket", active="docker.socket"
    )
    assert not (machine / "bin" / "systemctl.log").exists()


def test_the_answer_is_kept_for_the_rest_of_a_script(machine: Path) -> None:
    script = engine_wake.asleep_function(str(machine / "systemd"), str(machine / "units" / "none"))
    env = {**os.environ, "TRIGGERED_BY": "docker.socket", "ACTIVE": "docker.socket"}
    done = subprocess.run(
        ["sh", "-c", script + "ta_engine_asleep && ta_engine_asleep && echo asleep"],
        env=env,
        capture_output=True,
        check=False,
    )
    assert done.stdout == b"asleep\n"
    assert len((machine / "bin" / "systemctl.log").read_text().splitlines()) == 3  # show + 2 is-active


def test_the_session_greeting_says_asleep_or_awake_and_keeps_nothing_for_the_scripts(
    machine: Path,
) -> None:
    hello = engine_wake.HELLO.replace(engine_wake.SYSTEMD_DIR, str(machine / "systemd")).replace(
        engine_wake.INVOCATION_LINK, str(machine / "units" / "invocation:docker.service")
    )
    for active, word in (("docker.socket", "asleep"), ("", "awake")):
        env = {**os.environ, "TRIGGERED_BY": "docker.socket", "ACTIVE": active}
        done = subprocess.run(
            ["sh", "-c", hello + 'echo "$ta_hello ${ta_asleep:-unset}"'],
            env=env,
            capture_output=True,
            check=False,
        )
        assert done.stdout.decode() == f"{word} unset\n"


def test_the_local_transport_does_not_connect_to_a_sleeping_engine(
    machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_wake, "SYSTEMD_DIR", str(machine / "systemd"))
    monkeypatch.setattr(engine_wake, "INVOCATION_LINK", str(machine / "units" / "invocation:docker.service"))
    monkeypatch.setattr(engine_wake, "ASLEEP_FUNCTION", engine_wake.asleep_function(str(machine / "systemd")))
    monkeypatch.setenv("TRIGGERED_BY", "docker.socket")
    connects: list[object] = []
    monkeypatch.setattr("socket.socket.connect", lambda self, address: connects.append(address))
    local = LocalTransport()
    monkeypatch.setenv("ACTIVE", "docker.socket")
    assert local.engine_request("/_ping", 1) is None
    assert connects == []
    monkeypatch.setenv("ACTIVE", "docker.socket docker.service")
    local.engine_request("/_ping", 1)  # connects (the double connects nowhere, so no answer)
    assert connects == ["/var/run/docker.sock"]
