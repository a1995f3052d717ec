"""Progress lines: plain on a pipe (rich not even imported), a rich bar on a terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent("""\
    import sys
    from agent.outcome import HostOutcome
    from agent.progress import Progress
    progress = Progress(3)
    progress.done(HostOutcome("h1", "unchanged"))
    progress.interrupted(1)
    progress.done(HostOutcome("h2", "failed", error="no route"))
    progress.close()
    print("rich" in sys.modules)
    """)
INTERRUPTED = (
    "interrupted: finishing the 1 host in flight, starting no other; "
    "interrupt again to stop at once (hosts then left part way)"
)


def test_without_a_terminal_progress_is_plain_lines_and_rich_is_not_imported() -> None:
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "False\n"
    assert run.stderr.splitlines() == ["h1: unchanged  0.0s", INTERRUPTED, "h2: failed - no route  0.0s"]


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
    assert INTERRUPTED in " ".join(text.split())  # rich may wrap it to the terminal's width
