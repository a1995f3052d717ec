"""The closing table's errors: a row per host on one line, its error column the error's start, and every
host's whole error said once under the table on a line of its own, at a terminal of 80 or 200 columns
and in a log (no terminal), to be read, copied and grepped as it was said."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.outcome import FleetResult, HostOutcome, Phase
from agent.reports import summary
from agent.reports.summary import ERROR_KEPT, error_gist, render
from agent.trust import TrustPolicy

POLICY = TrustPolicy(registries=("registry.test",), storage_endpoint=None, storage_scheme=None)
PHASES = (Phase("connect", 0.0, 0.4), Phase("verify", 0.4, 1.25))
REFUSED = (
    "dockerd refused daemon.json: unable to configure the Docker daemon with file /etc/docker/daemon.json: "
    "the following directives are specified both as a flag and in the configuration file: "
    "insecure-registries: (from flag: [registry.old], from file: [registry.test]); rolled back (files "
    "restored, dockerd reloaded on them)"
)
LONG_NAME = "engine-host-0042.eu-west-1.compute.internal"
SSH = (
    f"{LONG_NAME} (10.1.2.3): ssh: connect to host 10.1.2.3 port 22: Connection timed out after 10s "
    "(ProxyJump bastion.corp.example:2222)"
)


def _fleet() -> FleetResult:
    return FleetResult(
        mode="rollout",
        policy=POLICY,
        outcomes=(
            HostOutcome(
                "engine-01", "changed", None, "reload", "26.1.5", verified=("live config",), phases=PHASES
            ),
            HostOutcome("engine-02", "rolled_back", None, "reload", "20.10.24", error=REFUSED, phases=PHASES),
            HostOutcome(LONG_NAME, "unreachable", error=SSH),
        ),
        started_at="2026-01-01T00:00:00+00:00",
        seconds=3.2,
    )


@pytest.fixture(params=["terminal-80", "terminal-200", "log"])
def width(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The table rendered for a terminal of 80 or 200 columns, or for a log (stdout not a terminal)."""
    if request.param == "log":
        monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
        return summary.LOG_WIDTH
    columns = int(request.param.removeprefix("terminal-"))
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback: os.terminal_size((columns, 40)))
    return columns


def test_every_hosts_whole_error_is_said_once_on_a_line_of_its_own(width: int) -> None:
    """A daemon.json refusal was folded over dozens of lines inside the error cell: copied, it came
    with the table's padding; grepped, it matched a piece of it."""
    lines = render(_fleet()).splitlines()
    for host, error in (("engine-02", REFUSED), (LONG_NAME, SSH)):
        assert lines.count(f"error ({host}): {error}") == 1, lines
        assert sum(error in line for line in lines) == 1, lines
        # Nothing of it is said elsewhere but its start in the table.
        assert " ".join(lines).count(error.split("; ")[-1]) == 1, lines


def test_a_row_with_an_error_takes_one_line_and_cuts_it_short_in_the_error_column() -> None:
    lines = render(_fleet()).splitlines()
    rows = lines[1:4]
    assert [row.split()[0] for row in rows] == ["engine-01", "engine-02", LONG_NAME]
    assert rows[1].split()[:4] == ["engine-02", "rolled_back", "reload", "20.10.24"]
    assert rows[1].rstrip().endswith("dockerd refused daemon.json: unable to confi ..."), rows[1]
    # The row's host is not said again in its cell: the cell starts where the error says what happened.
    assert rows[2].rstrip().endswith("ssh: connect to host 10.1.2.3 port 22: Conne ..."), rows[2]
    assert lines[4].startswith("error (engine-02): ")
    assert all(len(row.rstrip()) <= summary.LOG_WIDTH for row in rows)


def _table_lines(result: FleetResult) -> list[str]:
    return [line for line in render(result).splitlines() if not line.startswith(("error (", "3 hosts"))]


def test_an_error_adds_no_line_to_the_table_at_any_width(width: int) -> None:
    """At 80 columns the refusal took a hundred lines of four letters each in its cell."""
    fleet = _fleet()
    without_errors = dataclasses.replace(
        fleet, outcomes=tuple(dataclasses.replace(o, error=None) for o in fleet.outcomes)
    )
    rows = _table_lines(fleet)
    assert len(rows) == len(_table_lines(without_errors)), rows
    if width >= summary.LOG_WIDTH:
        assert len(rows) == 4 and all(len(row) <= width for row in rows), rows  # one line a host
    assert "rolled back" not in " ".join(rows), rows  # the cell says the error's start alone


def test_a_short_error_with_no_more_to_it_is_shown_whole_in_its_cell() -> None:
    result = FleetResult(
        mode="rollout",
        policy=POLICY,
        outcomes=(HostOutcome("h2", "unreachable", error="h2 (198.51.100.22): connection refused"),),
        started_at="2026-01-01T00:00:00+00:00",
        seconds=1.0,
    )
    lines = render(result).splitlines()
    assert lines[1].split()[-2:] == ["connection", "refused"]
    assert "error (h2): h2 (198.51.100.22): connection refused" in lines


@pytest.mark.parametrize(
    ("error", "host", "gist"),
    [
        ("h2 (198.51.100.22): connection refused", "h2", "connection refused"),
        ("h2: command timed out after 120s", "h2", "command timed out after 120s"),
        ("no match; rolled back", "h1", "no match; ..."),
        ("first line\nsecond line", "h1", "first line ..."),
        ("h1x: not this host's prefix", "h1", "h1x: not this host's prefix"),
        ("the error names h1: later", "h1", "the error names h1: later"),
        ("", "h1", ""),
        (None, "h1", ""),
    ],
)
def test_the_error_column_shows_the_first_clause_without_the_rows_host(
    error: str | None, host: str, gist: str
) -> None:
    assert error_gist(error, host) == gist


@given(
    host=st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True),
    error=st.text(max_size=300),
)
def test_the_gist_is_one_short_line_the_errors_own_start(host: str, error: str) -> None:
    whole = f"{host}: {error}"
    gist = error_gist(whole, host)
    assert len(gist.splitlines()) == 1 and len(gist) <= ERROR_KEPT + len("; ...")
    start = gist.removesuffix(" ...").removesuffix("; ...")
    assert error.startswith(start) if error.strip() else whole.startswith(start), (whole, gist)
    assert gist in (whole, error) or gist.endswith(" ..."), (whole, gist)  # cut: it says so
