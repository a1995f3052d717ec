"""Run the engine over many hosts: parallel within a batch, batches in order, a failure budget.

Memory grows with ``forks`` (two threads and one connection per host in flight), not with fleet size.
The engine (~40 ms of imports) is imported when a fleet runs: the command line reads its options from
here before it starts connecting (``agent.early_connect``).
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from agent.errors import TrustAgentError, UnreachableError, UsageError
from agent.host_pool import NOT_STARTED, HostPool
from agent.hosts.base import CommandResult, Connecting, Transport
from agent.hosts.engine_http import EngineReply, PendingReply

if TYPE_CHECKING:
    from agent.early_connect import EarlyConnections
    from agent.engine.options import RunOptions
    from agent.outcome import FleetResult, HostOutcome
    from agent.trust import TrustPolicy

T = TypeVar("T")

INTERRUPTED = "interrupted: the hosts in flight finished, no other host was started"
# A host an interrupt left before it changed anything (``leave_of`` in agent.host_pool.HostPool.map).
LEFT = (
    "not started: the run was interrupted while this host was still connecting or reading its facts; "
    "nothing was changed on it"
)


def interrupted_early(signum: int) -> str:
    """Why a run stopped whose interrupt came before any host (inside an import, where it could only be
    noted): as it was said then, on stderr."""
    return f"interrupted ({signal.Signals(signum).name}) before any host was started: nothing was changed on any host"


@dataclass(frozen=True)
class FleetOptions:
    forks: int = 50
    serial: str | None = None  # "N" hosts or "P%" of the fleet per batch; None: one batch
    max_fail_percentage: float | None = None  # stop starting batches once a batch exceeds it


def batches(names: Sequence[str], serial: str | None) -> list[list[str]]:
    """Split hosts into batches like Ansible's ``serial`` (``"2"``, ``"30%"``; at least one host each).

    >>> batches(["a", "b", "c", "d", "e"], "40%")
    [['a', 'b'], ['c', 'd'], ['e']]
    """
    if not names:
        return []
    if serial is None or serial == "":
        return [list(names)]
    text = serial.strip()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if not 0 < percent <= 100:
                raise ValueError
            size = max(1, math.floor(len(names) * percent / 100))
        else:
            size = int(text)
            if size < 1:
                raise ValueError
    except ValueError:
        raise UsageError(
            f"--serial {serial!r}: expected a whole number of hosts (1 or more) or a percentage from 1% "
            "to 100%, like 25%"
        ) from None
    return [list(names[i : i + size]) for i in range(0, len(names), size)]


def batch_stop(
    number: int, total: int, failed: int, size: int, fleet: FleetOptions
) -> tuple[str, str] | None:
    """Whether batch ``number`` of ``total``, ``failed`` of its ``size`` hosts failed (unreachable and
    rolled back included), stops the run: ``(why the run stopped, why a later host was not started)``,
    or None to start the next batch.

    Beyond the budget it stops; and like Ansible's ``serial``, which ends the play once every host of a
    batch has failed, it stops then whatever the budget (even 100%): the next batch would likely fail
    the same way.
    """
    limit = fleet.max_fail_percentage
    percent = failed * 100 / size
    if limit is not None and percent > limit:
        return (
            f"batch {number} of {total}: {failed} of {size} hosts failed "
            f"({percent:.0f}% > --max-fail-percentage {limit:g}); no further batches started",
            "not started: the failure budget was exceeded",
        )
    if failed == size:
        return (
            f"batch {number} of {total}: every host failed ({failed} of {size}); no further batches started",
            f"not started: every host of batch {number} failed",
        )
    return None


def run_fleet(
    names: Sequence[str],
    open_transport: Callable[[str], Transport],
    policy: TrustPolicy,
    options: RunOptions,
    fleet: FleetOptions,
    *,
    mode: Literal["plan", "apply", "rollout", "verify"] = "rollout",
    on_start: Callable[[str], None] | None = None,
    on_done: Callable[[HostOutcome], None] | None = None,
    on_interrupt: Callable[[int], None] | None = None,
    on_interrupt_left: Callable[[int, int], None] | None = None,
    early: EarlyConnections | None = None,
) -> FleetResult:
    """Reconcile every host; returns one :class:`FleetResult`, whatever happened on each host.

    ``early`` holds connections already opening for some hosts (``agent.early_connect``): those hosts
    take theirs instead of opening one.

    An interrupt (SIGINT, or SIGTERM as a CI job's cancel sends) starts no further host and lets the hosts
    in flight finish their apply, verify or roll-back, so none is left part way; a host still connecting
    or reading its facts is left at once (:data:`LEFT`), and its thread runs nothing more on it.
    ``on_interrupt`` hears how many are in flight, to be finished (``on_interrupt_left``, where given, is
    told instead that and how many were left), and the result says the run was interrupted. A second
    interrupt is not caught: it ends the run at once."""
    from agent.engine.canary_auth import expire_canary_credentials
    from agent.engine.gather import GATHER_SCRIPT, INFO_COMMAND_TAIL, INFO_FUNCTION
    from agent.engine.reconcile import reconcile
    from agent.outcome import FleetResult, HostOutcome

    if fleet.forks < 1:
        raise UsageError("--forks must be at least 1")
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    origin = time.monotonic()

    def clock() -> float:
        return time.monotonic() - origin

    lock = threading.Lock()
    outcomes: dict[str, HostOutcome] = {}
    readinesses = Readinesses()
    stopped: str | None = None
    not_started = ""  # why the hosts of the batches a stop left were not started

    # What a host's facts and the engine's live config are read with: all a host runs before its apply.
    reads = frozenset({GATHER_SCRIPT, INFO_FUNCTION + INFO_COMMAND_TAIL})

    def reconciled(name: str, readiness: Readiness) -> HostOutcome:
        taken = early.take(name) if early is not None else None
        try:
            transport = taken[0] if taken is not None else open_transport(name)
        except TrustAgentError as exc:
            return HostOutcome(name, "unreachable", error=str(exc))
        except Exception as exc:  # a bug must cost one host, not the fleet
            return HostOutcome(name, "failed", error=f"internal error: {type(exc).__name__}: {exc}")
        try:
            if taken is not None:
                connect: Callable[[], None] | None = taken[1]
            else:
                connect = transport.connect if isinstance(transport, Connecting) else None
            if connect is None:
                readiness.changes()  # a local host: nothing to wait on before its apply
                return reconcile(transport, policy, options, clock=clock)
            gated = Gated(transport, readiness, connect, reads)
            return reconcile(gated, policy, options, clock=clock, connect=gated.connect)
        except Exception as exc:  # a bug must cost one host, not the fleet
            return HostOutcome(name, "failed", error=f"internal error: {type(exc).__name__}: {exc}")
        finally:
            transport.close()

    def one(name: str) -> HostOutcome:
        readiness = readinesses.take(name)
        if on_start is not None:
            on_start(name)
        outcome = unless_left(
            readiness,
            lambda: reconciled(name, readiness),
            lambda: HostOutcome(name, "skipped", error=LEFT),
        )
        with lock:
            outcomes[name] = outcome
        if on_done is not None:
            on_done(outcome)
        return outcome

    plan = batches(names, fleet.serial)
    with HostPool(min(fleet.forks, len(names)), on_interrupt, on_interrupt_left=on_interrupt_left) as pool:
        for number, batch in enumerate(plan, start=1):
            if number > 1:  # the first batch's were read before any host; a helper's token may expire
                expire_canary_credentials(options)
            results = pool.map(one, batch, leave_of=readinesses.leave_of)
            if results is None:
                stopped = INTERRUPTED if pool.early_signal is None else interrupted_early(pool.early_signal)
                break
            if number < len(plan):
                stop = batch_stop(number, len(plan), sum(1 for r in results if r.failed), len(batch), fleet)
                if stop is not None:
                    stopped, not_started = stop
                    break
    ordered = []
    for name in names:
        if name in outcomes:
            ordered.append(outcomes[name])
        else:
            ordered.append(
                HostOutcome(name, "skipped", error=NOT_STARTED if pool.interrupted else not_started)
            )
    return FleetResult(
        mode=mode,
        policy=policy,
        outcomes=tuple(ordered),
        started_at=started_at,
        seconds=round(clock(), 3),
        stopped=stopped,
        interrupted=pool.interrupted,
    )


class _Left(UnreachableError):
    """Refuses a step on a host an interrupt left."""


class Readinesses:
    """Each host's :class:`Readiness`, made as the pool starts it (``HostPool.map``'s ``leave_of``: the
    interrupt may leave it from then on) and taken by the host's own run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_host: dict[str, Readiness] = {}

    def leave_of(self, name: str) -> Callable[[], bool]:
        readiness = Readiness(name)
        with self._lock:
            self._by_host[name] = readiness
        return readiness.leave

    def take(self, name: str) -> Readiness:
        with self._lock:
            return self._by_host.pop(name)


class Readiness:
    """Whether an interrupt may leave a host: while it only connects and reads (its facts, the engine's
    live config), never once a step that may change it has begun. Each step asks here first, under the
    lock :meth:`leave` takes, so a host left is refused every step that follows, and a host in its apply
    is never left."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._state: Literal["reading", "changing", "ended", "left"] = "reading"
        self.settled = threading.Event()  # ended, or left: its pool thread stops waiting for it

    @property
    def left(self) -> bool:
        with self._lock:
            return self._state == "left"

    def reads(self) -> None:
        """Before a step that only reads the host."""
        with self._lock:
            self._refuse_if_left()

    def changes(self) -> None:
        """Before a step that may change the host: from here on an interrupt waits for the host."""
        with self._lock:
            self._refuse_if_left()
            if self._state == "reading":
                self._state = "changing"

    def leave(self) -> bool:
        """The interrupt's question (``leave_of`` in agent.host_pool.HostPool.map): left, where nothing
        was changed."""
        with self._lock:
            if self._state != "reading":
                return False
            self._state = "left"
        self.settled.set()
        return True

    def end(self) -> None:
        with self._lock:
            if self._state != "left":
                self._state = "ended"
        self.settled.set()

    def connecting(self, connect: Callable[[], None]) -> Callable[[], None]:
        """``connect``, refused for a host already left, and failing for one left while it connected."""

        def connected() -> None:
            self.reads()
            connect()
            self.reads()

        return connected

    def _refuse_if_left(self) -> None:
        if self._state == "left":
            raise _Left(f"{self.name}: left by the interrupt before anything was changed on it")


def unless_left(readiness: Readiness, run: Callable[[], T], left: Callable[[], T]) -> T:
    """``run()``, or ``left()`` as soon as an interrupt leaves the host. ``run`` goes in a daemon thread
    of its own: one still connecting (for up to its connect timeout) or reading must hold neither the
    run nor the process's exit, and :class:`Readiness` refuses it any further step. An exception
    ``run`` raises is raised here, in the caller's thread, as the pool's would be."""
    if readiness.left:  # left as it started: not even a connection is opened
        return left()
    ended: list[T] = []
    raised: list[BaseException] = []

    def host() -> None:
        try:
            ended.append(run())
        except BaseException as exc:  # handed to the caller's thread below
            raised.append(exc)
        finally:
            readiness.end()

    threading.Thread(target=host, name=f"host-{readiness.name}", daemon=True).start()
    readiness.settled.wait()  # as long as the host's own steps take: each has its timeout
    if readiness.left:
        return left()
    if raised:
        raise raised[0]
    return ended[0]


class Gated(Transport):
    """A host's transport that asks its :class:`Readiness` before each step. Only the scripts in
    ``reads`` and the engine's API (GET requests) read the host; any other command, and the docker
    client (a canary pull), may change it. Its :meth:`connect` logs in through ``connect``, refused for a
    host already left (``daemon install`` connects through it; a rollout hands it to ``reconcile``)."""

    def __init__(
        self,
        inner: Transport,
        readiness: Readiness,
        connect: Callable[[], None],
        reads: frozenset[str] = frozenset(),
    ) -> None:
        self.name = inner.name
        self._inner = inner
        self._readiness = readiness
        self._reads = reads
        self.connect = readiness.connecting(connect)

    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        self._readiness.changes()
        return self._inner.run(command, stdin=stdin, timeout=timeout)

    def run_script(self, script: str, *args: str, timeout: float | None = None) -> CommandResult:
        if script in self._reads:
            self._readiness.reads()
        else:
            self._readiness.changes()
        return self._inner.run_script(script, *args, timeout=timeout)

    def engine_request(
        self, path: str, timeout: float, *, where_file: tuple[str, str] | None = None
    ) -> PendingReply | None:
        self._readiness.reads()
        return self._inner.engine_request(path, timeout, where_file=where_file)

    def engine_get(self, path: str, timeout: float) -> EngineReply | None:
        self._readiness.reads()
        return self._inner.engine_get(path, timeout)

    def docker_api(self, timeout: float = 30.0) -> Any:
        self._readiness.changes()
        return self._inner.docker_api(timeout)

    def close(self) -> None:
        self._inner.close()
