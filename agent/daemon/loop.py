"""The daemon's cycle and its schedule.

One cycle: poll the source if it is due (or a re-read was asked for), adopt a valid new policy and
keep it on disk, then reconcile the host against the policy in force, exactly as a rollout would.
The host is reconciled every interval even when the source did not change, which is what repairs
drift (a deleted CA file, an edited entry). A source fault never removes trust: the policy in force
stays the last good one, and the source is retried with exponential back-off.

``Daemon.cycle`` takes no decisions about time beyond reading its clocks (the monotonic one for the
schedule, the wall clock for timestamps), so tests drive it with fake clocks; ``serve`` adds the
sleeping, signals and systemd notifications.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from agent.daemon.lastgood import LastGood, LastGoodStore, StateError
from agent.daemon.logs import EventLog
from agent.daemon.notify import Notifier
from agent.daemon.report import carry_over, read_status_file, write_metrics, write_status
from agent.daemon.status import DaemonStatus, OutcomeSummary, SourceStatus, State, a_process_error
from agent.daemon.timing import backoff_delay, jittered
from agent.daemon.watch import Poll, SourceWatcher, display_source, internal_error
from agent.engine.apply_script import BUSY_SAYS
from agent.engine.options import RunOptions, new_backup_stamp
from agent.engine.reconcile import reconcile
from agent.hosts.base import Transport
from agent.hosts.local import LocalTransport
from agent.inputs import PolicyInputs
from agent.outcome import HostOutcome
from agent.trust import TrustPolicy


@dataclass(frozen=True)
class DaemonConfig:
    inputs: PolicyInputs
    state_dir: Path
    options: RunOptions = field(default_factory=RunOptions)
    status_file: Path | None = None
    metrics_file: Path | None = None
    interval: float = 60.0
    max_backoff: float = 600.0
    jitter: float = 0.1


class Daemon:
    """Keeps one host converged. Not thread-safe: one loop drives it."""

    def __init__(
        self,
        config: DaemonConfig,
        *,
        transport: Transport | None = None,
        environ: Mapping[str, str] | None = None,
        log: EventLog | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = random.random,
    ) -> None:
        """``clock`` (the wall clock) dates what people read: status, logs, backups. ``monotonic``
        schedules: a wall clock stepped back an hour must not stop polling for an hour."""
        self.config = config
        self._transport = transport or LocalTransport(config.options.root or "localhost")
        self._watcher = SourceWatcher(config.inputs, os.environ if environ is None else environ)
        self._store = LastGoodStore(config.state_dir)
        self._log = log or EventLog()
        self._clock = clock
        self._monotonic = monotonic
        self._draw = draw
        now = clock()
        self._next_poll = self._next_reconcile = monotonic()  # both on the monotonic clock
        # A host that failed on a policy is retried at the backoff's pace, not every interval: a reload
        # dockerd refuses would otherwise be tried (and rolled back, with a new backup) every cycle.
        self._host_failures = 0
        self._failed_fingerprint: str | None = None
        # Failed polls the source's back-off counts: as consecutive failures, but started over by SIGHUP.
        self._source_retries = 0
        # The policy's warnings as last logged: logged again only when they change.
        self._logged_policy_warnings: tuple[str, ...] = ()
        # The fingerprint the last outcome was reached under: an outcome says nothing of another policy.
        self._outcome_fingerprint: str | None = None
        # Why a report file (status, metrics) could not be written, as last logged: logged once per fault.
        self._report_faults: dict[Path, str] = {}
        self.status = DaemonStatus(
            source=SourceStatus(spec=display_source(config.inputs.source)),
            host=self._transport.name,
            pid=os.getpid(),
            started_at=now,
            state_dir=str(config.state_dir),
        )
        self._load_last_good(now)
        self._carry_over_last_cycle()

    # --- schedule -------------------------------------------------------------------------------

    def due_in(self) -> float:
        """Seconds until the next cycle is due (0 when it is due now)."""
        return max(0.0, min(self._next_poll, self._next_reconcile) - self._monotonic())

    # --- one cycle ------------------------------------------------------------------------------

    def cycle(self, *, force_poll: bool = False) -> DaemonStatus:
        now, tick = self._clock(), self._monotonic()
        status = self.status
        source_error: str | None = None
        if force_poll or tick >= self._next_poll:
            status, source_error = self._poll(status, now, tick, forced=force_poll)
        elif status.source.state == "error":
            source_error = status.source.last_error  # still at fault: backing off

        outcome: HostOutcome | None = None
        fingerprint, before = _fingerprint(status), _fingerprint(self.status)
        if before is not None and fingerprint != before:
            # Said before the reconcile, which reads the status file: a plan of this very policy must not
            # warn that the daemon keeps another one.
            self._publish(_pending(status))
        waiting = not force_poll and fingerprint == self._failed_fingerprint and tick < self._next_reconcile
        if status.policy is not None and not waiting:
            options = replace(self.config.options, backup_stamp=new_backup_stamp(now))
            try:
                outcome = reconcile(self._transport, status.policy.policy, options)
            except Exception as exc:  # reconcile maps host faults itself; this is a bug, kept to one cycle
                outcome = HostOutcome(self._transport.name, "failed", error=internal_error(exc))
        busy = False
        if outcome is not None and host_busy(outcome):
            # Another run (a rollout, say) holds the host's lock: nothing is wrong with the host, and it
            # is tried again at the normal pace; the last outcome stands meanwhile.
            self._log.event(
                "info",
                "host_busy",
                message="another trust-agent run holds the lock: the host is left to it this cycle",
                detail=outcome.error,
                retry_in_seconds=self.config.interval,
            )
            outcome, busy = None, True
            delay = self.config.interval
        elif outcome is not None and outcome.status not in ("unchanged", "changed"):
            # As for the source: a SIGHUP's retry that fails starts the host's back-off over.
            self._host_failures = 1 if force_poll else self._host_failures + 1
            self._failed_fingerprint = fingerprint
            delay = backoff_delay(self._host_failures, self.config.interval, self.config.max_backoff)
        elif not waiting:
            self._host_failures, self._failed_fingerprint = 0, None
            delay = self.config.interval
        else:
            delay = self._next_reconcile - tick  # still waiting: the time set at the last failure stands
        self._next_reconcile = tick + delay
        status = self._settle(status, outcome, source_error, now, tick, waited=waiting or busy, busy=busy)
        self.status = status
        self._publish(status)
        return status

    def _poll(
        self, status: DaemonStatus, now: float, tick: float, *, forced: bool = False
    ) -> tuple[DaemonStatus, str | None]:
        poll = self._watcher.poll()
        source = status.source
        if poll.state == "error" or poll.policy is None:
            failures = source.consecutive_failures + 1
            # A re-read asked for (SIGHUP) starts the back-off over: the person wants a prompt retry,
            # not the next, longer, wait.
            self._source_retries = 1 if forced else self._source_retries + 1
            delay = backoff_delay(self._source_retries, self.config.interval, self.config.max_backoff)
            wait = jittered(delay, self.config.jitter, self._draw())
            self._next_poll = tick + wait
            # An outage is news when it begins (or its error changes), not at every retry.
            goes_on = source.consecutive_failures > 0 and poll.error == source.last_error
            source = replace(
                source,
                state="error",
                last_poll=now,
                last_error=poll.error,
                consecutive_failures=failures,
                errors_total=source.errors_total + 1,
                next_poll=now + wait,
                retry_in=delay,
            )
            self._log.event(
                "debug" if goes_on else "info" if status.policy is not None else "error",
                "source_error",
                source=source.spec,
                error=poll.error,
                consecutive_failures=failures,
                retry_in_seconds=round(delay, 3),
                keeping=status.policy.policy.fingerprint() if status.policy else None,
            )
            return replace(status, source=source), poll.error
        wait = jittered(self.config.interval, self.config.jitter, self._draw())
        self._next_poll = tick + wait
        self._source_retries = 0
        if source.consecutive_failures:
            self._log.event(
                "info", "source_recovered", source=source.spec, after_failures=source.consecutive_failures
            )
        source = replace(
            source,
            state=poll.state,
            last_poll=now,
            last_ok=now,
            last_error=None,
            consecutive_failures=0,
            next_poll=now + wait,
            retry_in=None,
        )
        return self._adopt(replace(status, source=source), poll, now), None

    def _adopt(self, status: DaemonStatus, poll: Poll, now: float) -> DaemonStatus:
        """Make a valid policy the one in force, if it differs from the last good one."""
        assert poll.policy is not None
        previous = status.policy
        if previous is not None and previous.policy.fingerprint() == poll.policy.fingerprint():
            return self._refresh_explanation(status, previous, poll, now)
        last = LastGood(poll.policy, status.source.spec, poll.source_kind, now)
        warnings: tuple[str, ...] = ()
        try:
            self._store.save(last)
        except OSError as exc:
            # The policy still applies; only a restart during an outage would lose it.
            warnings = (f"cannot keep the last good policy in {self._store.path}: {exc.strerror or exc}",)
            self._log.event(
                "error", "state_write_failed", path=str(self._store.path), error=str(exc.strerror or exc)
            )
        self._log.event(
            "info",
            "policy",
            fingerprint=poll.policy.fingerprint(),
            previous=previous.policy.fingerprint() if previous else None,
            source=status.source.spec,
            source_kind=poll.source_kind,
            registries=list(poll.policy.registries),
            storage=poll.policy.storage_summary(),  # every store engines may be sent to
            insecure=poll.policy.insecure,
            ca_files=[c.name for c in poll.policy.ca_files],
            warnings=list(poll.policy.warnings),
        )
        return replace(
            status,
            policy=last,
            policy_changes_total=status.policy_changes_total + (previous is not None),
            warnings=warnings,
        )

    def _refresh_explanation(
        self, status: DaemonStatus, previous: LastGood, poll: Poll, now: float
    ) -> DaemonStatus:
        """The same policy, perhaps explained otherwise: a source change can alter the warnings (a new
        storage endpoint that still needs a CA) without altering what is trusted. The policy in force
        takes the new explanation, so status, metrics and the journal never show a source's old one."""
        assert poll.policy is not None
        if _explanation(previous.policy) == _explanation(poll.policy):
            return status
        refreshed = replace(previous, policy=poll.policy, source_kind=poll.source_kind, saved_at=now)
        # The "policy" event logged at adoption names the old stores and reasons: say the new ones.
        self._log.event(
            "info",
            "policy_explanation",
            fingerprint=poll.policy.fingerprint(),
            storage=poll.policy.storage_summary(),
            reasons=list(poll.policy.reasons),
        )
        try:
            self._store.save(refreshed)
        except OSError as exc:  # the trust is the same: only the kept explanation is stale
            self._log.event(
                "error", "state_write_failed", path=str(self._store.path), error=str(exc.strerror or exc)
            )
        return replace(status, policy=refreshed)

    def _settle(
        self,
        status: DaemonStatus,
        outcome: HostOutcome | None,
        source_error: str | None,
        now: float,
        tick: float,
        *,
        waited: bool = False,
        busy: bool = False,
    ) -> DaemonStatus:
        # ``waited``: the host was not reconciled (backing off after a failure, or another run held its
        # lock): its last outcome stands, but only for the policy it was reached under.
        same_policy = self._outcome_fingerprint == _fingerprint(status)
        known = waited and same_policy
        summary = status.outcome if known else None
        if outcome is not None:
            self._outcome_fingerprint = _fingerprint(status)
            summary = _open_questions_kept(_summary(outcome), status.outcome if same_policy else None)
        converged = summary is not None and summary.status in ("unchanged", "changed")
        apply_error = summary.error if summary is not None and not converged else None
        state: State
        if status.policy is not None and summary is None:
            # Never reconciled on this policy (its lock was held): pending, nothing known to be wrong.
            state = "pending"
        elif status.policy is None or not converged:
            state = "failing"
        elif source_error is not None:
            state = "degraded"
        else:
            state = "ok"
        parts = [f"source: {source_error}"] if source_error else []
        parts += [f"host: {apply_error}"] if apply_error else []
        error = "; ".join(parts) or ("no policy yet" if status.policy is None else None)
        # "pending" is no way for a cycle to end: the host was never reconciled (its lock was held). How
        # the last cycle on another policy ended says nothing of this one.
        last_cycle_state = status.last_cycle_state if known else None
        if state != "pending":
            last_cycle_state = state
        changed = not waited and summary is not None and summary.status == "changed"
        settled = replace(
            status,
            state=state,
            last_cycle_state=last_cycle_state,
            host_busy=busy,
            cycles=status.cycles + 1,
            last_run=now,
            last_success=now if state == "ok" and not waited else status.last_success,
            last_change=now if changed else status.last_change,
            consecutive_failures=0 if state in ("ok", "pending") else status.consecutive_failures + 1,
            changes_total=status.changes_total + changed,
            apply_errors_total=status.apply_errors_total
            + (not waited and summary is not None and not converged),
            outcome=summary,
        )
        settled = _with_error(settled, error, now)
        # An outage that goes on (the same error, the same state) was logged when it began: at debug
        # after that, as a host waiting out its back-off is.
        same_error = error is None or (apply_error is None and error == status.last_error)
        quiet = waited or (state == status.state and not changed and same_error)
        level = "debug" if quiet else "info" if state != "failing" else "error"
        self._log.event(
            level,
            "cycle",
            state=state,
            fingerprint=settled.policy.policy.fingerprint() if settled.policy else None,
            source_state=settled.source.state,
            host_status=summary.status if summary else None,
            engine_action=summary.engine_action if summary else None,
            files=list(summary.files) if summary else [],
            error=error,
            consecutive_failures=settled.consecutive_failures,
            host_retry_in=round(self._next_reconcile - tick, 3) if self._failed_fingerprint else None,
        )
        self._log_warnings(status.outcome, settled.outcome)
        self._log_policy_warnings(settled.policy_warnings)
        return settled

    def _log_warnings(self, before: OutcomeSummary | None, after: OutcomeSummary | None) -> None:
        # Once when they change, not every cycle: the same warning every interval would drown the journal.
        old = before.warnings if before is not None else ()
        new = after.warnings if after is not None else ()
        if new == old:
            return
        if new:
            self._log.event("warning", "host_warnings", warnings=list(new), count=len(new))
        else:
            self._log.event("info", "host_warnings_cleared", previous=list(old))

    def _log_policy_warnings(self, warnings: tuple[str, ...]) -> None:
        # What the source's settings warn about reaches `journalctl -p warning`, once per change.
        previous, self._logged_policy_warnings = self._logged_policy_warnings, warnings
        if warnings == previous:
            return
        if warnings:
            self._log.event("warning", "policy_warnings", warnings=list(warnings), count=len(warnings))
        else:
            self._log.event("info", "policy_warnings_cleared", previous=list(previous))

    def stopped(self, error: str | None = None) -> DaemonStatus:
        """Publish, on the way out, that nothing keeps the host converged any more: the status file and
        the metrics must not go on saying ok/up after the daemon is gone. ``error``: why it crashed."""
        status = replace(self.status, state="stopped")
        if error is not None:
            status = replace(status, last_error=error, last_error_at=self._clock())
        self.status = status
        self._publish(status)
        return status

    def _publish(self, status: DaemonStatus) -> None:
        # The metrics first: the status file then lists why they could not be written.
        metrics_fault = self._write_report(self.config.metrics_file, write_metrics, status)
        if metrics_fault is not None:
            warning = f"metrics not written: {metrics_fault}"
            status = replace(status, warnings=tuple(dict.fromkeys((*status.warnings, warning))))
        self._write_report(self.config.status_file, write_status, status)

    def _write_report(
        self, path: Path | None, write: Callable[[Path, DaemonStatus], None], status: DaemonStatus
    ) -> str | None:
        """Write one report file; why it could not be, if so. A fault is logged when it begins (or
        changes) and when it ends, not at every interval."""
        if path is None:
            return None
        try:
            write(path, status)
        except OSError as exc:
            error = str(exc.strerror or exc)
            error = error if str(path) in error else f"{path}: {error}"
            if self._report_faults.get(path) != error:
                self._log.event("error", "report_write_failed", path=str(path), error=error)
            self._report_faults[path] = error
            return error
        if self._report_faults.pop(path, None) is not None:
            self._log.event("info", "report_write_recovered", path=str(path))
        return None

    def _carry_over_last_cycle(self) -> None:
        """Start from what this daemon's previous process left in its status file (how its last
        reconciled cycle ended), so that a first cycle that finds the host busy does not say the host
        never converged."""
        if self.config.status_file is None:
            return
        previous = read_status_file(self.config.status_file)
        if previous is not None:
            self.status = carry_over(self.status, previous)
        if a_process_error(self.status.last_error):
            # How the process before ended ("cannot start", say) is not this one's error: a stop before
            # its first cycle would otherwise report it as this process's.
            self.status = _error_cleared(self.status)
        if self.status.last_cycle_state is not None:  # carried over: reached under the policy in force
            self._outcome_fingerprint = _fingerprint(self.status)

    def _load_last_good(self, now: float) -> None:
        try:
            last = self._store.load()
        except StateError as exc:
            self._log.event("error", "state_unusable", path=str(self._store.path), error=str(exc))
            self.status = replace(self.status, last_error=str(exc), last_error_at=now)
            return
        if last is None:
            return
        if last.source != self.status.source.spec:
            # Kept by a daemon on another source (one run by hand, say): that policy was never this
            # source's, and restoring it could bring back trust (a skip-TLS entry) no one asked for.
            self._log.event(
                "warning",
                "policy_not_restored",
                reason="kept for another source",
                kept_source=last.source,
                source=self.status.source.spec,
                fingerprint=last.policy.fingerprint(),
                path=str(self._store.path),
            )
            return
        self.status = replace(self.status, policy=last)
        self._log.event(
            "info",
            "policy_restored",
            fingerprint=last.policy.fingerprint(),
            source=last.source,
            saved_at=last.saved_at,
            path=str(self._store.path),
        )


def _fingerprint(status: DaemonStatus) -> str | None:
    return status.policy.policy.fingerprint() if status.policy is not None else None


def _pending(status: DaemonStatus) -> DaemonStatus:
    """``status`` on a policy the host has not been reconciled on yet: not ok, not converged, and no
    error of the policy before it in force."""
    pending = replace(status, state="pending", last_cycle_state=None, outcome=None, host_busy=False)
    return _error_cleared(pending)


def _explanation(policy: TrustPolicy) -> tuple[object, ...]:
    """What a policy says beside what it trusts (its fingerprint): why, every store engines may be sent
    to, and warnings."""
    return (
        policy.warnings,
        policy.reasons,
        policy.storage_endpoint,
        policy.storage_scheme,
        policy.storage_alternatives,
    )


def _with_error(status: DaemonStatus, error: str | None, now: float) -> DaemonStatus:
    """``status`` with the error its cycle ended on. ``last_error`` is the error in force: a cycle that
    ends ok moves it to ``previous_error`` (with when it was last seen), so that no status says "ok"
    beside a failure the host has recovered from; so does a cycle that leaves a new policy pending (the
    host's lock held), since the error was another policy's. Other cycles without an error leave it as
    it was."""
    if error is not None:
        return replace(status, last_error=error, last_error_at=now)
    if status.state in ("ok", "pending"):
        return _error_cleared(status)
    return status


def _error_cleared(status: DaemonStatus) -> DaemonStatus:
    """``status`` with its error in force, if any, moved to ``previous_error``."""
    if status.last_error is None:
        return status
    return replace(
        status,
        last_error=None,
        last_error_at=None,
        previous_error=status.last_error,
        previous_error_at=status.last_error_at,
    )


def host_busy(outcome: HostOutcome) -> bool:
    """Whether the host was not reconciled because another run held its lock (the apply script's exit
    75, a "failed" outcome saying BUSY_SAYS): no fault of the host."""
    return outcome.status == "failed" and outcome.error is not None and outcome.error.startswith(BUSY_SAYS)


# How an engine warning begins where a canary pull proved nothing of the policy's trust (agent/engine/
# verify.py: unproved_pull, tls_unchecked_pull, and a canary of another registry). The question stays
# open until a canary pull answers it: the daemon pulls one only where it changes the host, so the next
# cycle, which changes nothing, has not proved what the last one could not.
_PROOF_QUESTIONS = ("the storage redirect is unproved: ", "the CA files are unproved: ")
_CANARY_NOT_PULLED = re.compile(r"canary \S+ not pulled: ")
_CANARY_PULLED = "canary pull "


def _a_proof_question(warning: str) -> bool:
    return warning.startswith(_PROOF_QUESTIONS) or _CANARY_NOT_PULLED.match(warning) is not None


def _open_questions_kept(summary: OutcomeSummary, before: OutcomeSummary | None) -> OutcomeSummary:
    """``summary`` with the proof questions ``before`` (the last outcome on the same policy) left open,
    where this cycle pulled no canary to answer them: a canary pull answers them afresh, and a new
    policy (``before`` None) asks its own."""
    if before is None or any(said.startswith(_CANARY_PULLED) for said in summary.verified):
        return summary
    still_open = tuple(w for w in before.warnings if _a_proof_question(w) and w not in summary.warnings)
    return replace(summary, warnings=(*summary.warnings, *still_open)) if still_open else summary


def _summary(outcome: HostOutcome) -> OutcomeSummary:
    # Only where the files changed (or would): a failed or rolled back cycle leaves them as they were.
    changed = outcome.plan is not None and outcome.status in ("changed", "pending")
    files = tuple(c.path for c in outcome.plan.changes if not c.internal) if changed and outcome.plan else ()
    return OutcomeSummary(
        status=outcome.status,
        engine_action=outcome.engine_action,
        error=outcome.error,
        files=files,
        verified=outcome.verified,
        warnings=outcome.warnings,
    )


def status_line(status: DaemonStatus) -> str:
    """One line for systemd's STATUS= (shown by ``systemctl status``)."""
    policy = status.policy.policy.fingerprint() if status.policy else "none"
    host = status.outcome.status if status.outcome else "not reconciled"
    text = f"{status.state}: policy {policy}, host {host}, source {status.source.state}"
    if status.all_warnings:
        count = len(status.all_warnings)
        text += f", {count} warning{'s' if count > 1 else ''} (see status.json)"
    if status.state != "ok" and status.last_error:
        text += f" ({status.last_error})"
    return text[:400]


def serve(
    daemon: Daemon,
    *,
    stop: threading.Event,
    reread: threading.Event,
    wake: threading.Event,
    notifier: Notifier | None = None,
    once: bool = False,
    monotonic: Callable[[], float] = time.monotonic,
) -> DaemonStatus:
    """Run cycles until ``stop`` is set (or once). Returns the last cycle's status (the exit code's);
    the status file and metrics then say ``stopped``.

    ``stop`` and ``reread`` are set by signal handlers (SIGTERM, SIGHUP), each followed by ``wake``,
    which cuts the sleep short; a cycle in progress always finishes first.
    """
    notify = notifier or Notifier()
    first = True
    status = daemon.status
    while not stop.is_set():
        force = reread.is_set()
        reread.clear()
        status = daemon.cycle(force_poll=force)
        if first:
            notify.ready(status_line(status))
            first = False
        else:
            notify.status(status_line(status))
        notify.watchdog()
        if once:
            break
        _sleep(daemon.due_in(), stop=stop, reread=reread, wake=wake, notifier=notify, monotonic=monotonic)
    notify.stopping(f"stopping: {status_line(status)}")
    # --once too: its cycle's outcome stays (last_cycle_state, outcome, last_success) for a timer or a
    # script to read, but nothing keeps the host converged once it has exited.
    daemon.stopped()
    return status


def _sleep(
    seconds: float,
    *,
    stop: threading.Event,
    reread: threading.Event,
    wake: threading.Event,
    notifier: Notifier,
    monotonic: Callable[[], float],
) -> None:
    deadline = monotonic() + seconds
    # Ping the watchdog at half its period while idle, as systemd recommends.
    slice_ = notifier.watchdog_seconds / 2 if notifier.watchdog_seconds else None
    while True:
        remaining = deadline - monotonic()
        if stop.is_set() or reread.is_set() or remaining <= 0:
            return
        wake.wait(remaining if slice_ is None else min(remaining, slice_))
        wake.clear()  # after the wait, before the checks: a signal in between is still seen
        notifier.watchdog()
