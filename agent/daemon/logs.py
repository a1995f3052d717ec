"""JSON-lines logs on stdout, one event a line, for journald and log shippers.

Callers pass only values derived from the policy and outcomes; nothing from the source document
itself reaches a log line, so secrets in it cannot either.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class EventLog:
    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        level: str = "info",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._threshold = LEVELS[level]
        self._clock = clock
        self._lock = threading.Lock()  # the loop and the signal-handling thread both log

    def event(self, level: str, event: str, **fields: object) -> None:
        if LEVELS[level] < self._threshold:
            return
        record = {"ts": iso(self._clock()), "level": level, "event": event, **fields}
        line = json.dumps(record, default=str, sort_keys=False)
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (OSError, ValueError):
                pass  # a closed stdout must not stop the agent from keeping the host converged


def iso(seconds: float) -> str:
    """Epoch seconds → ``2024-05-01T12:00:00.123Z`` (UTC)."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{whole}.{int((seconds % 1) * 1000):03d}Z"
