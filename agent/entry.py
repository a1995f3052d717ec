"""The ``trust-agent`` command's entry point: an interrupt while the CLI is still being imported ends
the process as an interrupted run does (Ctrl-C: exit 130; SIGTERM, a CI job's cancel: as SIGTERM ends
it, saying so), not with a traceback from the middle of an import nor without a word."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from types import FrameType
from typing import NoReturn

_STARTING = b"trust-agent: interrupted (SIGTERM) while starting: nothing was changed on any host\n"
_NO_REPORT = b"trust-agent: interrupted (SIGINT) while starting: nothing was changed on any host; no report was written\n"
_AGAIN = b"trust-agent: interrupted again while starting: nothing was changed on any host\n"


def main() -> NoReturn:
    handles_sigterm = signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # else someone else's: kept
    if handles_sigterm:
        signal.signal(signal.SIGTERM, _terminated_while_starting)
    try:
        from agent.cli import main as cli_main
    except KeyboardInterrupt:
        _interrupted_while_starting()
    if handles_sigterm:  # the CLI's own handlers take over from its default (agent.host_pool)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    cli_main()


def _interrupted_while_starting() -> NoReturn:
    """A Ctrl-C inside the CLI's import: the report asked for (-o) says the run was interrupted, as one
    that comes a moment later would, where the CLI can still be imported; else a line says that no
    report was written, and nothing is."""
    # A second Ctrl-C meanwhile ends it at once (a report being written is finished first).
    signal.signal(signal.SIGINT, _interrupted_again)
    try:
        from agent.cli import report_interrupted_start

        report_interrupted_start(sys.argv[1:], signal.SIGINT)
    except BaseException:  # the import itself broken by the interrupt: nothing more can be said
        os.write(2, _NO_REPORT)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(130)


def _interrupted_again(signum: int, frame: FrameType | None) -> None:
    os.write(2, _AGAIN)
    os._exit(130)


def _terminated_while_starting(signum: int, frame: FrameType | None) -> None:
    # Nothing is open yet and no host was reached: say so, and end as SIGTERM ends a process.
    os.write(2, _STARTING)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
    os._exit(128 + signal.SIGTERM)
