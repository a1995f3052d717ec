"""A failed start's reason, from the unit's journal lines the apply script sends: only what docker.service's
own processes logged after systemd's "Starting ..." (the stop before it and systemd's own lines left out)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agent.engine.unit_log import START_JOB_BEGUN, start_failure_lines


def journal(*entries: dict[str, Any], framed: bool = True) -> bytes:
    lines = [json.dumps(e) for e in entries]
    body = ["@@ta unit-log", *lines, "@@ta unit-log-end"] if framed else lines
    return ("@@ta t start 1.0\n" + "\n".join(body) + "\n").encode()


STOPPING = {"MESSAGE": 'time="x" level=info msg="Daemon shutdown complete"', "_PID": "812"}
STOPPED = {"MESSAGE": "Stopped docker.service - Docker Application Container Engine.", "_PID": "1"}
STARTING = {"MESSAGE": "Starting docker.service...", "MESSAGE_ID": START_JOB_BEGUN, "_PID": "1"}
EXITED = {"MESSAGE": "docker.service: Control process exited, code=exited, status=1/FAILURE", "_PID": "1"}


def test_the_start_s_own_lines_are_kept_and_dockerds_logfmt_reduced_to_its_message() -> None:
    out = journal(
        STOPPING,
        STOPPED,
        STARTING,
        {"MESSAGE": "site check: insecure registries are not allowed here", "_PID": "901"},
        {"MESSAGE": 'time="t" level=error msg="failed to start daemon: \\"x\\" is bad"', "_PID": "902"},
        EXITED,
    )
    assert start_failure_lines(out) == [
        "site check: insecure registries are not allowed here",
        'failed to start daemon: "x" is bad',
    ]


def test_only_the_last_start_counts_and_at_most_three_lines() -> None:
    first = {"MESSAGE": "from an earlier start", "_PID": "700"}
    lines = [{"MESSAGE": f"line {n}", "_PID": "950"} for n in range(5)]
    assert start_failure_lines(journal(STARTING, first, EXITED, STARTING, *lines)) == [
        "line 2",
        "line 3",
        "line 4",
    ]


def test_bytes_that_are_not_utf8_arrive_as_a_list_and_are_read_with_replacement() -> None:
    out = journal(STARTING, {"MESSAGE": [98, 97, 100, 255, 33], "_PID": "5"})
    assert start_failure_lines(out) == ["bad\ufffd!"]


def test_nothing_is_said_without_the_start_or_the_frame_or_with_a_silent_start() -> None:
    assert start_failure_lines(journal(STOPPING, STOPPED)) == []  # no "Starting" line: no start seen
    assert start_failure_lines(journal(STARTING, {"MESSAGE": "x", "_PID": "5"}, framed=False)) == []
    assert start_failure_lines(journal(STOPPING, STARTING, EXITED)) == []  # the stop's lines never count
    assert start_failure_lines(b"") == []


@given(st.lists(st.text(max_size=40), max_size=8))
def test_any_output_gives_a_list_of_short_single_lines(lines: list[str]) -> None:
    out = ("@@ta unit-log\n" + "\n".join(lines) + "\n@@ta unit-log-end\n").encode()
    said = start_failure_lines(out)
    assert len(said) <= 3 and all("\n" not in s and len(s) <= 300 for s in said)
