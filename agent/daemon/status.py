"""What the daemon knows about itself, as frozen values replaced once per cycle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from agent.daemon.lastgood import LastGood

# starting: no cycle has run yet. ok: source read, host converged. degraded: source at fault, host
# converged on the last good policy. failing: the host is not converged (apply failed) or there is no
# policy to converge on yet. pending: the policy in force is not applied to the host yet (its reconcile
# runs, or another run held the host's lock): nothing is known to be wrong, and nothing is converged.
# stopped: the daemon exited (or crashed): nothing keeps the host converged until it runs again.
State = Literal["starting", "ok", "degraded", "failing", "pending", "stopped"]
SourceState = Literal["not-polled", "read", "unchanged", "error"]

# How ``last_error`` begins where it says how a daemon process ended, not how the host is: written on
# the way out (a crash), or by the unit's stop hook (a start that failed, an end the daemon did not
# announce). Such an error is the process's, not one the next process may go on reporting.
CANNOT_START = "the daemon cannot start"
ENDED_UNANNOUNCED = "the daemon ended without writing its status"
CRASHED = "crashed"
PROCESS_ERRORS = (CANNOT_START, ENDED_UNANNOUNCED, CRASHED)


def a_process_error(error: str | None) -> bool:
    """Whether ``error`` says how an earlier daemon process ended (:data:`PROCESS_ERRORS`)."""
    return error is not None and error.startswith(PROCESS_ERRORS)


@dataclass(frozen=True)
class SourceStatus:
    spec: str  # as shown to people: no credentials
    state: SourceState = "not-polled"
    last_poll: float | None = None
    last_ok: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    errors_total: int = 0
    next_poll: float | None = None
    retry_in: float | None = None  # the back-off in force, in seconds; None when polling normally


@dataclass(frozen=True)
class OutcomeSummary:
    """The last reconcile, reduced to what an operator reads."""

    status: str
    engine_action: str
    error: str | None = None
    files: tuple[str, ...] = ()  # paths changed (or that would change) on the host
    verified: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # the engine's: a change not loaded yet, an entry left alone


@dataclass(frozen=True)
class DaemonStatus:
    source: SourceStatus
    host: str
    pid: int
    started_at: float
    state: State = "starting"
    # What the last cycle left (ok, degraded, failing): still known once ``state`` says stopped, so a
    # --once run (or a daemon that stopped) tells how it ended without claiming to run.
    last_cycle_state: State | None = None
    # The last cycle found another trust-agent run holding the host's lock, and left the host to it.
    host_busy: bool = False
    cycles: int = 0
    last_run: float | None = None
    last_success: float | None = None
    last_change: float | None = None  # the host's files last changed
    # The error in force: a cycle that ends ok, or a new policy not applied yet, moves it to previous_error.
    last_error: str | None = None
    last_error_at: float | None = None
    # The error the last ok cycle cleared (what the host recovered from), or the one a new policy left
    # behind (it said nothing of that policy), and when it was last seen.
    previous_error: str | None = None
    previous_error_at: float | None = None
    consecutive_failures: int = 0
    changes_total: int = 0
    policy_changes_total: int = 0
    apply_errors_total: int = 0
    policy: LastGood | None = None
    outcome: OutcomeSummary | None = None
    warnings: tuple[str, ...] = field(default=())  # the daemon's own (its state could not be kept)
    # Where its last good policy and locks are: a status file names it, so that the next process of the
    # same daemon knows the file for its own (``agent.daemon.report.carry_over``).
    state_dir: str | None = None

    @property
    def healthy(self) -> bool:
        return self.state == "ok"

    @property
    def converged(self) -> bool:
        return self.outcome is not None and self.outcome.status in ("unchanged", "changed")

    @property
    def policy_warnings(self) -> tuple[str, ...]:
        """What the source's settings warn about (a storage CA that skip-TLS makes unused, say)."""
        return self.policy.policy.warnings if self.policy is not None else ()

    @property
    def all_warnings(self) -> tuple[str, ...]:
        """The daemon's own warnings, the policy's and the last reconcile's, each once."""
        engine = self.outcome.warnings if self.outcome is not None else ()
        return tuple(dict.fromkeys((*self.warnings, *self.policy_warnings, *engine)))
