"""A ``trust-agent`` command held before its first host: its source a FIFO that no one writes, so that
reading it blocks, as a slow source or SSH set-up would. Started as a shell starts a command in the
foreground, whatever signal state the test process was left with."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

TRUST_AGENT = str(Path(sys.executable).with_name("trust-agent"))
WAIT = 30.0


def signals_as_a_shell_gives_them() -> None:
    """SIGINT and SIGTERM at their defaults and not blocked (a job without job control ignores SIGINT)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def held_tree(tmp_path: Path) -> tuple[Path, Path]:
    """A tree for ``--local --root`` and the FIFO to give as ``--source``."""
    root = tmp_path / "root"
    (root / "etc/docker").mkdir(parents=True)
    fifo = tmp_path / "config.yml"
    os.mkfifo(fifo)
    return root, fifo


def start_held(argv: list[str], fifo: Path, **popen: Any) -> tuple[subprocess.Popen[Any], int]:
    """``argv`` started, once it is blocked reading ``fifo``; and the FIFO's writer end, kept open
    (without writing) so that the read goes on waiting. The caller closes it."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=signals_as_a_shell_gives_them,
        **popen,
    )
    deadline = time.monotonic() + WAIT
    while True:
        try:  # succeeds only once the command has the FIFO open for reading
            return proc, os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"the command never read the source: {proc.communicate()}")
            time.sleep(0.02)
