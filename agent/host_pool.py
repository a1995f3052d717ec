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
from concurrent.futures import ThreadPoolExecutor, wait
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
        self._signalled = False
        self._handlers_before: dict[int, Any] = {}
        self._handles_signals = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> HostPool:
        if self._handles_signals:  # signal handlers are set, and run, in the main thread only
            # The first interrupt only sets a flag, which map() polls: an exception raised wherever the
            # main thread happens to be could leave it inside importlib holding the import lock (a
            # module lock's clean-up), and the report's imports would then wait for ever.
            for signum in (signal.SIGINT, signal.SIGTERM):
                before = signal.getsignal(signum)
                if signum == signal.SIGINT and before is not signal.default_int_handler:
                    continue  # ignored (a job started without job control) or someone else's: kept
                self._handlers_before[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            self._executor.shutdown(wait=True)  # the hosts in flight finish; a second interrupt ends it
        finally:
            for signum, before in self._handlers_before.items():
                signal.signal(signum, before)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self._signalled:
            raise KeyboardInterrupt  # the second: at once
        self._signalled = True

    def map(self, fn: Callable[[str], T], names: Sequence[str]) -> list[T] | None:
        """``fn`` over ``names``, in order; None where an interrupt came (the hosts not started then never
        start)."""
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

        futures = [self._executor.submit(counted, name) for name in names]
        try:
            while not self._signalled:
                _, pending = wait(futures, timeout=_POLL_SECONDS)
                if not pending:
                    return [future.result() for future in futures]
        except KeyboardInterrupt:  # not through this pool's handler (a caller's own, or none set)
            self._signalled = True
        for future in futures:
            future.cancel()  # those not started; the hosts in flight finish
        self.interrupted = True
        if self._on_interrupt is not None:
            with self._lock:
                in_flight = self._running
            self._on_interrupt(in_flight)
        return None


# How soon the first interrupt is acted on: the main thread only waits for the hosts meanwhile.
_POLL_SECONDS = 0.1
