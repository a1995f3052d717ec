"""Results you can hold: one outcome per host, one fleet result that reports and exit codes read.

Like Fabric's ``GroupResult``: ``FleetResult.failed`` and ``.succeeded`` split the hosts, and every
report format renders the same object.

>>> result.failed            # doctest: +SKIP
(HostOutcome(host='h2', status='unreachable', ...),)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from agent.runtimes.plan import EngineAction, HostPlan
from agent.trust import TrustPolicy

# unchanged: converged, nothing done. pending: a dry run found changes. changed: converged by this run.
# failed: refused or failed with nothing changed (or restored). rolled_back: changed, failed, restored.
# unreachable: could not connect. skipped: not started (failure budget exceeded).
Status = Literal["unchanged", "pending", "changed", "failed", "rolled_back", "unreachable", "skipped"]
FAILED_STATUSES: frozenset[str] = frozenset({"failed", "rolled_back", "unreachable"})

PhaseName = Literal["connect", "gather", "plan", "apply", "reload", "verify", "rollback"]


@dataclass(frozen=True)
class Phase:
    """One step of one host's run, in seconds since the fleet run started."""

    name: PhaseName
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class HostOutcome:
    host: str
    status: Status
    plan: HostPlan | None = None
    engine_action: EngineAction = "none"  # taken, or (dry run) that would be taken
    engine_version: str | None = None
    checks: tuple[str, ...] = ()  # validations that ran, e.g. "dockerd --validate", "agent checks"
    verified: tuple[str, ...] = ()  # what verification proved, e.g. "live config", "canary pull"
    error: str | None = None
    warnings: tuple[str, ...] = ()
    phases: tuple[Phase, ...] = ()

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES


@dataclass(frozen=True)
class FleetResult:
    mode: Literal["plan", "apply", "rollout", "verify"]
    policy: TrustPolicy
    outcomes: tuple[HostOutcome, ...]
    started_at: str  # ISO 8601, UTC
    seconds: float
    stopped: str | None = None  # why the run stopped early (failure budget, an interrupt), if it did
    warnings: tuple[str, ...] = field(default=())
    interrupted: bool = False  # by SIGINT or SIGTERM: the hosts in flight finished, no other started

    @property
    def failed(self) -> tuple[HostOutcome, ...]:
        return tuple(o for o in self.outcomes if o.failed)

    @property
    def succeeded(self) -> tuple[HostOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.failed and o.status != "skipped")

    @property
    def pending(self) -> bool:
        """Some host has changes a dry run would make."""
        return any(o.status == "pending" for o in self.outcomes)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return counts
