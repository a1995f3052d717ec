"""The ``trust-agent`` command's entry point: an interrupt while the CLI is still being imported ends
the process as an interrupted run does (Ctrl-C: exit 130; SIGTERM, a CI job's cancel: as SIGTERM ends
it, saying so), not with a traceback from the middle of an import nor without a word."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import NoReturn

_STARTING = b"trust-agent: interrupted (SIGTERM) while starting: nothing was changed on any host\n"


def main() -> NoReturn:
    handles_sigterm = signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # else someone else's: kept
    if handles_sigterm:
        signal.signal(signal.SIGTERM, _terminated_while_starting)
    try:
        from agent.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        os._exit(130)
    if handles_sigterm:  # the CLI's own handlers take over from its default (agent.host_pool)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    cli_main()


def _terminated_while_starting(signum: int, frame: FrameType | None) -> None:
    # Nothing is open yet and no host was reached: say so, and end as SIGTERM ends a process.
    os.write(2, _STARTING)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
    os._exit(128 + signal.SIGTERM)
