"""A thread pool for hosts that an interrupt stops cleanly, and what an interrupt does before it runs.

On an interrupt (Ctrl-C's SIGINT, or the SIGTERM a CI job's cancel sends) no further host starts, and
the hosts in flight finish what they are doing (an apply, its verify or roll-back; an install), so
none is left part way; the caller then reports every host, those not started included. A host that
has changed nothing yet, and says so (``leave_of`` in :meth:`HostPool.map`), is left at once instead:
one still connecting would otherwise hold the run for its whole connect timeout. A second interrupt
stops at once, with what is known of each host (:class:`StoppedAtOnce`).

Before the pool runs (the source being read, SSH connections being set up) no host has been touched:
an interrupt then says so and ends the run (:class:`EarlyInterrupts`).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from types import FrameType, TracebackType
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")

NOT_STARTED = "not started: the run was interrupted"
CUT_OFF = (
    "cut off in flight: it may be left part way (files written, dockerd reloaded, a canary image removed); "
    "run the same command again to finish it"
)


class EarlyInterrupt(KeyboardInterrupt):
    """An interrupt before any host was started: nothing was changed on any host (already said)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class StoppedAtOnce(KeyboardInterrupt):
    """A second interrupt while hosts were in flight; ``hosts`` holds what is known of each host the
    pool was given, in order: its status, :data:`CUT_OFF` or :data:`NOT_STARTED`."""

    def __init__(self, hosts: tuple[tuple[str, str], ...]) -> None:
        super().__init__()
        self.hosts = hosts

    def lines(self) -> list[str]:
        return [
            "stopped at once by a second interrupt; what is known of each host:",
            *(f"  {name}: {known}" for name, known in self.hosts),
        ]


def end_as_interrupted(signum: int) -> NoReturn:
    """End the process as an interrupt ends it: exit 130 for SIGINT, as shells report Ctrl-C; killed by
    SIGTERM itself, which a shell reports as 143 and systemd as a clean stop."""
    if signum == signal.SIGTERM:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
    os._exit(128 + signum)


class EarlyInterrupts:
    """Handles SIGINT and SIGTERM from the start of a command until a :class:`HostPool` takes over.

    The first says at once, on stderr, that the run was interrupted before any host was started, then
    raises :class:`EarlyInterrupt` so that what is open (connections, an inventory script) is closed on
    the way out; a second ends the process at once. Signals ignored or handled by someone else are left
    alone. The pool gives the handlers it replaces back as they were before these, so an interrupt
    after the hosts ran is not said to have come before them.
    """

    def __init__(self, command: str) -> None:
        self.command = command
        self.replaced: dict[int, Any] = {}
        self.signum: int | None = None
        self._signalled = False
        self._deferred = False  # came inside an import: raised once the main thread is out of it
        self._kicks: _Kicks | None = None

    def install(self) -> EarlyInterrupts:
        if threading.current_thread() is not threading.main_thread():
            return self  # signal handlers are set, and run, in the main thread only
        for signum, default in (
            (signal.SIGINT, signal.default_int_handler),
            (signal.SIGTERM, signal.SIG_DFL),
        ):
            before = signal.getsignal(signum)
            if before is default:
                self.replaced[signum] = signal.signal(signum, self)
        if self.replaced:
            self._kicks = _Kicks.start(self)
        return self

    def stop_watching(self) -> None:
        """Stop the kicks (:class:`_Kicks`): the host pool handles the signals from here on."""
        if self._kicks is not None:
            self._kicks.stop()
            self._kicks = None

    def wants_kicks(self) -> bool:
        """Whether an interrupt is still to be acted on here: none heard yet, or one deferred by an
        import; and these handlers still the ones in place (a command may have set its own)."""
        handling = any(signal.getsignal(signum) is self for signum in self.replaced)
        return handling and (not self._signalled or self._deferred)

    def kicked(self, frame: FrameType | None) -> None:
        """The kick's handler: a deferred interrupt is raised here once the main thread is out of the
        import it came in; otherwise it only woke the main thread, whose pending handlers then ran."""
        if self._deferred and self.signum is not None and not _inside_import(frame):
            self._deferred = False
            raise EarlyInterrupt(self.signum)

    def message(self, signum: int) -> str:
        return (
            f"trust-agent {self.command}: interrupted ({signal.Signals(signum).name}) before any host was "
            "started: nothing was changed on any host\n"
        )

    @property
    def signalled(self) -> bool:
        return self._signalled

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self._signalled:  # the second: said already, ended at once
            end_as_interrupted(signum)
        # os.write: the main thread may be inside a write to sys.stderr, which a second writer would break.
        os.write(2, self.message(signum).encode())
        self._signalled = True
        self.signum = signum
        if _inside_import(frame):
            # Raised inside importlib, the exception can leave a module lock held (or be dropped, in a
            # lock's clean-up callback): the hosts' threads would then wait for that module for ever.
            # It is raised by a kick once the import is done; the host pool starts no host meanwhile.
            self._deferred = True
            return
        raise EarlyInterrupt(signum)


class _Kicks:
    """Wakes the main thread after an interrupt, so that its handler runs.

    CPython runs a Python signal handler in the main thread, between bytecodes. A signal that comes just
    before a blocking system call (the read of a FIFO or ``<(...)`` source), or that the kernel gives to
    another thread, leaves the handler pending while the main thread waits in that call, for ever where
    no one writes. A thread woken by the signal's wakeup byte sends the main thread :data:`KICK`, whose
    handler does nothing itself: the call fails with EINTR and the pending handlers run. Kicks are
    harmless where nothing was pending. They go on, bounded, while an interrupt deferred by an import
    waits to be raised (:meth:`EarlyInterrupts.kicked`).
    """

    def __init__(self, early: EarlyInterrupts, read_end: int, write_end: int) -> None:
        self._early = early
        self._read_end, self._write_end = read_end, write_end
        self._main = threading.main_thread().ident or 0
        self._stopping = threading.Event()
        self._kick_before = signal.signal(KICK, self._on_kick)
        self._thread = threading.Thread(target=self._watch, name="interrupt-kicks", daemon=True)

    @classmethod
    def start(cls, early: EarlyInterrupts) -> _Kicks | None:
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(write_end, False)  # as set_wakeup_fd wants
        if signal.set_wakeup_fd(write_end, warn_on_full_buffer=False) != -1:
            # Someone else's (an event loop's) wakeup fd: theirs stays, and no kicks.
            signal.set_wakeup_fd(-1)
            os.close(read_end)
            os.close(write_end)
            return None
        kicks = cls(early, read_end, write_end)
        kicks._thread.start()
        return kicks

    def stop(self) -> None:
        signal.set_wakeup_fd(-1)
        signal.signal(KICK, self._kick_before)
        self._stopping.set()
        os.write(self._write_end, b"\0")  # wakes the thread's read; it then sees the stop and ends
        self._thread.join(timeout=1.0)
        os.close(self._write_end)
        if not self._thread.is_alive():
            os.close(self._read_end)

    def _on_kick(self, signum: int, frame: FrameType | None) -> None:
        self._early.kicked(frame)

    def _watch(self) -> None:
        while not self._stopping.is_set():
            try:
                heard = os.read(self._read_end, 64)
            except OSError:
                return
            if self._stopping.is_set() or not heard:
                return
            if signal.SIGINT in heard or signal.SIGTERM in heard:
                self._kick_for_a_while()

    def _kick_for_a_while(self) -> None:
        # Twice whatever happened (the handler may be pending behind a call just entered), then only
        # while an interrupt waits to be acted on; bounded, as every loop here.
        for number, delay in enumerate(_KICK_DELAYS):
            if self._stopping.wait(delay):
                return
            if number >= 2 and not self._early.wants_kicks():
                return
            signal.pthread_kill(self._main, KICK)


# The kick: a signal nothing else here uses, ignored by default (a kick after the handler is given
# back does nothing).
KICK = signal.SIGURG
# After an interrupt, when the main thread is kicked: soon, then less often, for about a minute.
_KICK_DELAYS = (0.05, 0.2, 0.25, 0.5, 1.0, *([2.0] * 29))


def _inside_import(frame: FrameType | None) -> bool:
    """Whether the main thread is inside importlib where a signal came. Its own frames only: another
    thread importing at that moment (the import lock held) must not keep a blocked read from ending."""
    depth = 0
    while frame is not None and depth < 200:  # bounded: a stack is finite, but never walk it all
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame, depth = frame.f_back, depth + 1
    return False


class HostPool:
    """``with HostPool(forks) as pool: pool.map(fn, names)``; ``pool.interrupted`` says whether an
    interrupt stopped it. ``on_interrupt`` hears how many hosts are in flight when one comes, to be
    finished; ``on_interrupt_left``, where given, is told instead both that and how many hosts the
    interrupt left at once."""

    def __init__(
        self,
        forks: int,
        on_interrupt: Callable[[int], None] | None = None,
        *,
        on_interrupt_left: Callable[[int, int], None] | None = None,
    ) -> None:
        self.interrupted = False
        self._executor = ThreadPoolExecutor(max_workers=max(1, forks), thread_name_prefix="host")
        self._on_interrupt = on_interrupt
        self._on_interrupt_left = on_interrupt_left
        # Reentrant: the second interrupt's handler reads the hosts' state in the main thread, which may
        # hold the lock at that moment.
        self._lock = threading.RLock()
        self._given: dict[str, None] = {}  # every name given to map, in order
        self._in_flight: set[str] = set()
        self._known: dict[str, str] = {}  # finished hosts: their status
        self._leaves: dict[str, Callable[[], bool]] = {}  # hosts in flight that may be left (leave_of)
        self._left: set[str] = set()
        self._signalled = False
        self._early = False  # an early interrupt came (agent.host_pool.EarlyInterrupts)
        self.early_signal: int | None = None  # its signal: the run stopped before any host started
        self._handlers_before: dict[int, Any] = {}
        self._handles_signals = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> HostPool:
        if self._handles_signals:  # signal handlers are set, and run, in the main thread only
            # The first interrupt only sets a flag, which map() polls: an exception raised wherever the
            # main thread happens to be could leave it inside importlib holding the import lock (a
            # module lock's clean-up), and the report's imports would then wait for ever.
            for signum in (signal.SIGINT, signal.SIGTERM):
                before = signal.getsignal(signum)
                if isinstance(before, EarlyInterrupts):
                    before.stop_watching()
                    # An early interrupt that could not stop the run where it came (inside an import)
                    # stops it here: no host starts.
                    self._early = self._early or before.signalled
                    if before.signalled and self.early_signal is None:
                        self.early_signal = before.signum
                    # Hosts run from now on: what comes after them must not say it came before them.
                    before = before.replaced[signum]
                elif signum == signal.SIGINT and before is not signal.default_int_handler:
                    continue  # ignored (a job started without job control) or someone else's: kept
                signal.signal(signum, self._on_signal)
                self._handlers_before[signum] = before
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            # The hosts in flight finish, unless a second interrupt stopped the run at once.
            at_once = isinstance(error, StoppedAtOnce)
            self._executor.shutdown(wait=not at_once, cancel_futures=at_once)
        finally:
            for signum, before in self._handlers_before.items():
                signal.signal(signum, before)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self._signalled or self._early:
            raise StoppedAtOnce(self._what_is_known())  # the second: at once
        self._signalled = True

    def _what_is_known(self) -> tuple[tuple[str, str], ...]:
        with self._lock:
            return tuple((name, self._known_of(name)) for name in self._given)

    def _known_of(self, name: str) -> str:
        if name in self._known:
            return self._known[name]
        return CUT_OFF if name in self._in_flight - self._left else NOT_STARTED

    def map(
        self,
        fn: Callable[[str], T],
        names: Sequence[str],
        *,
        leave_of: Callable[[str], Callable[[], bool]] | None = None,
    ) -> list[T] | None:
        """``fn`` over ``names``, in order; None where an interrupt came (the hosts not started then never
        start).

        ``leave_of(name)`` gives a host's ``leave``, taken as the host starts, before ``fn`` does anything
        on it: on the first interrupt ``leave`` is called and says whether the host was left, having
        changed nothing and now never to (still connecting, or reading its facts); ``fn`` is then to
        return at once. A host whose ``leave`` says no (it is in its apply), or without one, is waited
        for, as every host in flight."""
        if self.interrupted:
            return None
        if self._early:  # said when it came, before any host: none starts
            self.interrupted = True
            return None
        with self._lock:
            self._given.update(dict.fromkeys(names))
        if self._signalled:  # came after the previous batch ended: this one does not start
            self._stop([])
            return None

        def counted(name: str) -> T | _NotStarted:
            with self._lock:
                # An interrupt that came after the host was handed to a thread: it does not start.
                if self._signalled:
                    return _NOT_STARTED
                self._in_flight.add(name)
                # In the same step: a host in flight always has its leave, so an interrupt acted on as
                # it starts leaves it, and never counts it among the hosts to finish.
                if leave_of is not None:
                    self._leaves[name] = leave_of(name)
            try:
                result = fn(name)
                with self._lock:
                    self._known[name] = _status_of(result)
                return result
            finally:
                with self._lock:
                    self._in_flight.discard(name)
                    self._leaves.pop(name, None)

        futures = [self._executor.submit(counted, name) for name in names]
        try:
            while not self._signalled:
                _, pending = wait(futures, timeout=_POLL_SECONDS)
                if not pending:
                    results = [future.result() for future in futures]
                    ran = [result for result in results if not isinstance(result, _NotStarted)]
                    if len(ran) == len(results):
                        return ran
        except StoppedAtOnce:
            raise
        except KeyboardInterrupt:  # not through this pool's handler (a caller's own, or none set)
            self._signalled = True
        self._stop(futures)
        return None

    def _stop(self, futures: Sequence[Future[Any]]) -> None:
        """The first interrupt: no further host starts, the hosts that may be left are, and the others in
        flight finish (this pool's exit waits for them)."""
        for future in futures:
            future.cancel()  # those not started
        self.interrupted = True
        left = self._leave_those_unchanged()
        with self._lock:
            in_flight = len(self._in_flight - left)
        if self._on_interrupt_left is not None:
            self._on_interrupt_left(in_flight, len(left))
        elif self._on_interrupt is not None:
            self._on_interrupt(in_flight)

    def _leave_those_unchanged(self) -> set[str]:
        """Asks each host in flight that may be left to leave; the names of those that did."""
        with self._lock:
            leaves = list(self._leaves.items())
        left = {name for name, leave in leaves if leave()}
        with self._lock:
            self._left |= left
        return left


class _NotStarted:
    """What a host's thread returns for a host an interrupt came before."""


_NOT_STARTED = _NotStarted()


def _status_of(result: object) -> str:
    # A fleet's HostOutcome and an install's HostReport both say how a host ended in ``status``.
    status = getattr(result, "status", None)
    return status if isinstance(status, str) else "finished"


# How soon the first interrupt is acted on: the main thread only waits for the hosts meanwhile.
_POLL_SECONDS = 0.1
