"""A failed start's reason, and a refused reload's, from the unit's journal lines the apply script sends: only what docker.service's
own processes logged after systemd's "Starting ..." (the stop before it and systemd's own lines left out)."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.engine.unit_log import START_JOB_BEGUN, reload_refusal, start_failure_lines
from agent.engine.verify import wait_for_live_config
from agent.errors import VerifyError


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


def test_a_newer_attempt_that_has_said_nothing_yet_leaves_the_reason_to_the_one_before() -> None:
    # Restart=always: systemd started the unit again before the journal was read.
    why = {"MESSAGE": "site check: insecure registries are not allowed here", "_PID": "901"}
    assert start_failure_lines(journal(STARTING, why, EXITED, STARTING)) == [why["MESSAGE"]]
    assert start_failure_lines(journal(STARTING, why, EXITED, STARTING, EXITED)) == [why["MESSAGE"]]
    newer = {"MESSAGE": "site check: still not allowed", "_PID": "990"}
    assert start_failure_lines(journal(STARTING, why, EXITED, STARTING, newer)) == [newer["MESSAGE"]]


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


# --- a refused reload ---------------------------------------------------------------------------

SIGNAL = (
    'time="t" level=info msg="Got signal to reload configuration, reloading from: /etc/docker/daemon.json"'
)
REFUSED = (
    'time="t" level=error msg="unable to configure the Docker daemon with file /etc/docker/daemon.json: '
    'json: cannot unmarshal string into Go struct field Config.log-opts of type map[string]string"'
)


def unit_journal(*entries: tuple[float, str, str]) -> str:
    """Journal lines as journalctl -o json prints them: (seconds of uptime, pid, message)."""
    return "\n".join(
        json.dumps({"__MONOTONIC_TIMESTAMP": str(int(t * 1_000_000)), "_PID": pid, "MESSAGE": m})
        for t, pid, m in entries
    )


def test_a_reload_refused_after_the_apply_gives_dockerds_reason() -> None:
    text = unit_journal(
        (99.0, "1", "Reloading docker.service..."),
        (100.2, "1", "Reloading docker.service..."),
        (100.21, "817", SIGNAL),
        (100.22, "817", REFUSED),
        (100.23, "1", "Reloaded docker.service."),
    )
    assert reload_refusal(text, since=100.1) == (
        "unable to configure the Docker daemon with file /etc/docker/daemon.json: json: cannot unmarshal "
        "string into Go struct field Config.log-opts of type map[string]string"
    )


def test_an_earlier_refusal_a_taken_reload_or_one_not_yet_got_says_nothing() -> None:
    earlier = unit_journal((50.0, "817", SIGNAL), (50.01, "817", REFUSED))
    assert reload_refusal(earlier, since=100.0) is None  # before this apply: not this reload's
    taken = unit_journal((100.2, "817", SIGNAL), (100.3, "817", 'time="t" level=info msg="Reloaded"'))
    assert reload_refusal(taken, since=100.0) is None
    # Taken, then some error of something else: not the reload's.
    later = unit_journal(
        (100.2, "817", SIGNAL),
        (100.3, "817", 'time="t" level=info msg="Reloaded configuration: {}"'),
        (100.4, "817", 'time="t" level=error msg="a plugin went away"'),
    )
    assert reload_refusal(later, since=100.0) is None
    assert reload_refusal(unit_journal((100.2, "1", "Reloading docker.service...")), since=100.0) is None
    # An error before the signal belongs to something else.
    assert reload_refusal(unit_journal((100.1, "817", REFUSED), (100.2, "817", SIGNAL)), since=100.0) is None
    assert reload_refusal("not json\n{}\n[1]", since=0.0) is None


def test_the_wait_for_the_live_config_ends_at_a_refusal_and_asks_the_journal_sparingly() -> None:
    infos: Iterator[dict[str, Any]] = iter([{"RegistryConfig": {}}] * 1000)
    asked: list[float] = []

    def refused() -> str | None:
        asked.append(time.monotonic())
        return "bad config" if len(asked) >= 3 else None

    started = time.monotonic()
    with pytest.raises(VerifyError, match="dockerd refused the reload: bad config"):
        wait_for_live_config(
            lambda: next(infos), ("r.test",), frozenset({"r.test"}), timeout=10, interval=0.01,
            refused=refused, refused_every=0.05,
        )  # fmt: skip
    assert len(asked) == 3 and time.monotonic() - started < 2
    assert all(b - a >= 0.05 for a, b in itertools.pairwise(asked))
    # Where the engine takes the change, the journal is never read.
    live = {"RegistryConfig": {"IndexConfigs": {"r.test": {"Secure": False}}}}
    never: list[int] = []

    def counted() -> str | None:
        never.append(1)
        return None

    assert wait_for_live_config(lambda: live, ("r.test",), frozenset({"r.test"}), refused=counted) == live
    assert never == []


def test_an_engine_that_does_not_answer_for_a_while_is_still_waited_for() -> None:
    answers: list[dict[str, Any] | None] = [
        None,
        None,
        {"RegistryConfig": {"IndexConfigs": {"r.test": {"Secure": False}}}},
    ]

    def read() -> dict[str, Any]:
        info = answers.pop(0)
        if info is None:
            raise VerifyError("the engine did not answer /info")  # as read_live_info says it
        return info

    live = wait_for_live_config(read, ("r.test",), frozenset({"r.test"}), interval=0.01, refused=lambda: None)
    assert live["RegistryConfig"]["IndexConfigs"]["r.test"]["Secure"] is False
