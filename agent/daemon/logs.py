"""JSON-lines logs on stdout, one event a line, for journald and log shippers.

Callers pass only values derived from the policy and outcomes; nothing from the source document
itself reaches a log line, so secrets in it cannot either.

Where stdout is the journal, each line starts with sd-daemon's ``<N>`` priority prefix (3 error,
4 warning, 6 info, 7 debug): journald strips it (``SyslogLevelPrefix=yes``, its default) and files the
line at that priority, so ``journalctl -p warning`` shows the daemon's errors and warnings. On a
terminal or a pipe the lines stay plain JSON.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import TextIO

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
# syslog priorities, as sd-daemon(3) prefixes them.
PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "error": 3}


class EventLog:
    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        level: str = "info",
        clock: Callable[[], float] = time.time,
        journal: bool = False,
    ) -> None:
        """``journal``: prefix each line with its priority (see :func:`writes_to_journal`)."""
        self._stream = stream if stream is not None else sys.stdout
        self._threshold = LEVELS[level]
        self._clock = clock
        self._journal = journal
        self._lock = threading.Lock()  # the loop and the signal-handling thread both log

    def event(self, level: str, event: str, **fields: object) -> None:
        if LEVELS[level] < self._threshold:
            return
        record = {"ts": iso(self._clock()), "level": level, "event": event, **fields}
        line = json.dumps(record, default=str, sort_keys=False)
        if self._journal:
            line = f"<{PRIORITIES[level]}>{line}"
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (OSError, ValueError):
                pass  # a closed stdout must not stop the agent from keeping the host converged


def writes_to_journal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether ``stream`` is systemd's journal stream: ``$JOURNAL_STREAM`` holds its ``device:inode``.

    The variable alone is not enough: a child of a service inherits it with stdout sent elsewhere (a
    person's terminal under ``systemd-run --pty``, a pipe), where a ``<6>`` would only be noise.
    """
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        info = os.fstat(stream.fileno())
        return (info.st_dev, info.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, AttributeError):  # no variable, no file descriptor (a StringIO)
        return False


def iso(seconds: float) -> str:
    """Epoch seconds → ``2024-05-01T12:00:00.123Z`` (UTC)."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{whole}.{int((seconds % 1) * 1000):03d}Z"
