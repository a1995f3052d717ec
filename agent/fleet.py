"""Run the engine over many hosts: parallel within a batch, batches in order, a failure budget.

Memory grows with ``forks`` (one thread and one connection per host in flight), not with fleet size.
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
from typing import TYPE_CHECKING, Literal

from agent.errors import TrustAgentError, UsageError
from agent.host_pool import NOT_STARTED, HostPool
from agent.hosts.base import Connecting, Transport

if TYPE_CHECKING:
    from agent.early_connect import EarlyConnections
    from agent.engine.options import RunOptions
    from agent.outcome import FleetResult, HostOutcome
    from agent.trust import TrustPolicy


INTERRUPTED = "interrupted: the hosts in flight finished, no other host was started"


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
    early: EarlyConnections | None = None,
) -> FleetResult:
    """Reconcile every host; returns one :class:`FleetResult`, whatever happened on each host.

    ``early`` holds connections already opening for some hosts (``agent.early_connect``): those hosts
    take theirs instead of opening one.

    An interrupt (SIGINT, or SIGTERM as a CI job's cancel sends) starts no further host and lets the hosts
    in flight finish their apply, verify or roll-back, so none is left part way; ``on_interrupt`` hears
    how many are in flight, and the result says the run was interrupted. A second interrupt is not
    caught: it ends the run at once."""
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
    stopped: str | None = None

    def one(name: str) -> HostOutcome:
        if on_start is not None:
            on_start(name)
        taken = early.take(name) if early is not None else None
        try:
            transport = taken[0] if taken is not None else open_transport(name)
        except TrustAgentError as exc:
            outcome = HostOutcome(name, "unreachable", error=str(exc))
        else:
            try:
                if taken is not None:
                    connect: Callable[[], None] | None = taken[1]
                else:
                    connect = transport.connect if isinstance(transport, Connecting) else None
                outcome = reconcile(transport, policy, options, clock=clock, connect=connect)
            except Exception as exc:  # a bug must cost one host, not the fleet
                outcome = HostOutcome(name, "failed", error=f"internal error: {type(exc).__name__}: {exc}")
            finally:
                transport.close()
        with lock:
            outcomes[name] = outcome
        if on_done is not None:
            on_done(outcome)
        return outcome

    plan = batches(names, fleet.serial)
    with HostPool(min(fleet.forks, len(names)), on_interrupt) as pool:
        for number, batch in enumerate(plan, start=1):
            results = pool.map(one, batch)
            if results is None:
                stopped = INTERRUPTED if pool.early_signal is None else interrupted_early(pool.early_signal)
                break
            failed = sum(1 for r in results if r.failed)
            limit = fleet.max_fail_percentage
            if limit is not None and number < len(plan) and failed * 100 / len(batch) > limit:
                stopped = (
                    f"batch {number} of {len(plan)}: {failed} of {len(batch)} hosts failed "
                    f"({failed * 100 / len(batch):.0f}% > --max-fail-percentage {limit:g}); "
                    "no further batches started"
                )
                break
    ordered = []
    for name in names:
        if name in outcomes:
            ordered.append(outcomes[name])
        else:
            why = NOT_STARTED if pool.interrupted else "not started: the failure budget was exceeded"
            ordered.append(HostOutcome(name, "skipped", error=why))
    return FleetResult(
        mode=mode,
        policy=policy,
        outcomes=tuple(ordered),
        started_at=started_at,
        seconds=round(clock(), 3),
        stopped=stopped,
        interrupted=pool.interrupted,
    )
