"""Progress lines: plain on a pipe (rich not even imported), a rich bar on a terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.progress import interrupted_line

PROBE = textwrap.dedent("""\
    import sys
    from agent.outcome import HostOutcome
    from agent.progress import Progress
    progress = Progress(3)
    progress.done(HostOutcome("h1", "unchanged"))
    progress.interrupted(1)
    progress.interrupted(2, 1)
    progress.done(HostOutcome("h2", "failed", error="no route"))
    progress.close()
    print("rich" in sys.modules)
    """)
INTERRUPTED = (
    "interrupted: finishing the 1 host in flight, starting no other; "
    "interrupt again to stop at once (hosts then left part way)"
)
INTERRUPTED_LEAVING = (
    "interrupted: finishing the 2 hosts in flight (leaving at once the 1 host still connecting or reading "
    "its facts: nothing was changed on it), starting no other; interrupt again to stop at once (hosts then "
    "left part way)"
)


def test_without_a_terminal_progress_is_plain_lines_and_rich_is_not_imported() -> None:
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "False\n"
    assert run.stderr.splitlines() == [
        "h1: unchanged  0.0s",
        INTERRUPTED,
        INTERRUPTED_LEAVING,
        "h2: failed - no route  0.0s",
    ]


def test_on_a_terminal_progress_is_a_rich_bar() -> None:
    leader, follower = pty.openpty()
    try:
        run = subprocess.run(
            [sys.executable, "-c", PROBE], stdout=subprocess.PIPE, stderr=follower, text=True, check=False
        )
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
    assert run.returncode == 0
    assert run.stdout == "True\n"
    text = seen.decode("utf-8", "replace")
    assert "h1: unchanged  0.0s" in text and "h2: failed - no route  0.0s" in text
    said = " ".join(text.split())  # rich may wrap the lines to the terminal's width
    assert INTERRUPTED in said and INTERRUPTED_LEAVING in said


@pytest.mark.parametrize(
    ("in_flight", "left", "line"),
    [
        (1, 0, INTERRUPTED),
        (2, 1, INTERRUPTED_LEAVING),
        (
            0,
            3,
            "interrupted: no host in flight to finish (leaving at once the 3 hosts still connecting or "
            "reading their facts: nothing was changed on them), starting no other; interrupt again to stop "
            "at once",
        ),
    ],
)
def test_the_interrupt_line_says_the_hosts_to_finish_and_those_left_at_once(
    in_flight: int, left: int, line: str
) -> None:
    """It said only "finishing the N hosts in flight": hosts still connecting, left at once, went
    unsaid, and a person could not tell what the run still waited for."""
    assert interrupted_line(in_flight, left) == line


@given(st.integers(0, 10_000), st.integers(0, 10_000))
def test_the_interrupt_line_counts_both_and_names_the_left_only_where_there_are_any(
    in_flight: int, left: int
) -> None:
    line = interrupted_line(in_flight, left)
    if in_flight or not left:
        assert line.startswith(f"interrupted: finishing the {in_flight} host")
    else:  # never "the 0 hosts"
        assert line.startswith("interrupted: no host in flight to finish (")
    assert ("leaving at once" in line) == (left > 0)
    if left:
        assert f"leaving at once the {left} {'host' if left == 1 else 'hosts'} still connecting" in line
    else:  # as before, and as the daemon's install says it (one number)
        assert line == interrupted_line(in_flight)
