"""JSON-lines logs on stdout, one event a line, for journald and log shippers.

Callers pass only values derived from the policy and outcomes; nothing from the source document
itself reaches a log line, so secrets in it cannot either.

Where stdout is the journal, each line starts with sd-daemon's ``<N>`` priority prefix (3 error,
4 warning, 6 info, 7 debug): journald strips it (``SyslogLevelPrefix=yes``, its default) and files the
line at that priority, so ``journalctl -p warning`` shows the daemon's errors and warnings. On a
terminal or a pipe the lines stay plain JSON. What ``daemon run`` says on stderr there (why it cannot
start, a traceback) is filed at error priority the same way (:func:`stderr_at_error_priority`).
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

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


def stderr_at_error_priority(environ: Mapping[str, str]) -> bool:
    """Where stderr is the journal, file every line written to it from now on at error priority: what
    the daemon says there is why it cannot go on (a refused --config, a bad option, a traceback), which
    journald would otherwise file at info, unseen by ``journalctl -p warning``. Whether it did."""
    if isinstance(getattr(sys.stderr, "buffer", None), _LinePrefixer):
        return True  # already
    if not writes_to_journal(sys.stderr, environ):
        return False
    sys.stderr.flush()
    sys.stderr = with_priority(sys.stderr, "error")
    return True


def with_priority(stream: TextIO, level: str) -> TextIO:
    """``stream`` with each line it is given starting with ``level``'s sd-daemon prefix."""
    prefixer = _LinePrefixer(stream, f"<{PRIORITIES[level]}>".encode())
    return io.TextIOWrapper(prefixer, encoding=stream.encoding, errors=stream.errors, write_through=True)


class _LinePrefixer(io.BufferedIOBase):
    """Bytes on to ``stream``'s own buffer with ``prefix`` at the start of every line, however the
    writes cut them."""

    def __init__(self, stream: TextIO, prefix: bytes) -> None:
        super().__init__()
        self._stream = stream  # kept: once collected, it would close the file under ``_target``
        self._target = stream.buffer
        self._prefix = prefix
        self._at_line_start = True

    @property
    def name(self) -> object:
        return getattr(self._target, "name", None)

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._target.fileno()

    def write(self, data: ReadableBuffer, /) -> int:
        chunk = bytes(data)
        pieces = chunk.split(b"\n")  # journald ends a line at \n alone
        out = bytearray()
        for number, piece in enumerate(pieces):
            last = number == len(pieces) - 1
            if last and not piece:
                break  # the write ended its line: the next one has not begun
            if self._at_line_start:
                out += self._prefix
            out += piece if last else piece + b"\n"
            self._at_line_start = not last
        self._target.write(bytes(out))
        self._target.flush()
        return len(chunk)


def iso(seconds: float) -> str:
    """Epoch seconds → ``2024-05-01T12:00:00.123Z`` (UTC)."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{whole}.{int((seconds % 1) * 1000):03d}Z"
