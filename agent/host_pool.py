"""A thread pool for hosts that an interrupt stops cleanly.

On an interrupt (Ctrl-C's SIGINT, or the SIGTERM a CI job's cancel sends) no further host starts, and
the hosts in flight finish what they are doing (an apply, its verify or roll-back; an install), so
none is left part way; the caller then reports every host, those not started included. A second
interrupt is not caught: it ends the process at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

NOT_STARTED = "not started: the run was interrupted"


class HostPool:
    """``with HostPool(forks) as pool: pool.map(fn, names)``; ``pool.interrupted`` says whether an
    interrupt stopped it. ``on_interrupt`` hears how many hosts are in flight when one comes."""

    def __init__(self, forks: int, on_interrupt: Callable[[int], None] | None = None) -> None:
        self.interrupted = False
        self._executor = ThreadPoolExecutor(max_workers=max(1, forks), thread_name_prefix="host")
        self._on_interrupt = on_interrupt
        self._lock = threading.Lock()
        self._running = 0
        self._sigterm_before: Any = None
        self._handles_sigterm = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> HostPool:
        if self._handles_sigterm:  # signal handlers are set, and run, in the main thread only
            self._sigterm_before = signal.signal(signal.SIGTERM, _as_interrupt)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            self._executor.shutdown(wait=True)  # the hosts in flight finish; a second interrupt ends it
        finally:
            if self._handles_sigterm:
                signal.signal(signal.SIGTERM, self._sigterm_before)

    def map(self, fn: Callable[[str], T], names: Sequence[str]) -> list[T] | None:
        """``fn`` over ``names``, in order; None where an interrupt came (the hosts not started then never
        start: map's iterator cancels them as the interrupt leaves it)."""
        if self.interrupted:
            return None

        def counted(name: str) -> T:
            with self._lock:
                self._running += 1
            try:
                return fn(name)
            finally:
                with self._lock:
                    self._running -= 1

        try:
            return list(self._executor.map(counted, names))
        except KeyboardInterrupt:
            self.interrupted = True
            if self._on_interrupt is not None:
                with self._lock:
                    in_flight = self._running
                self._on_interrupt(in_flight)
            return None


def _as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
