"""What every report shows of a host: one place, so no format renders more than the others.

Reports read only the fields chosen here (plus ``TrustPolicy.as_dict()``); anything else a model
may grow later stays out of every report until it is added on purpose.
"""

from __future__ import annotations

import re
from typing import Literal

from agent.handshake import FAILED_CHECK_SUFFIX
from agent.outcome import FleetResult, HostOutcome
from agent.runtimes.plan import FileChange

# Display order: what needs attention or was done first, quiet hosts last.
STATUS_ORDER: tuple[str, ...] = (
    "changed",
    "pending",
    "unchanged",
    "rolled_back",
    "failed",
    "unreachable",
    "skipped",
)

# A host "changed" (Ansible's sense): it was changed, or a dry run would change it.
_CHANGED_STATUSES = frozenset({"changed", "pending"})

# Characters XML 1.0 forbids even when escaped (C0 controls but tab/LF/CR, surrogates, U+FFFE/F).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def changed(outcome: HostOutcome) -> bool:
    return outcome.status in _CHANGED_STATUSES


def engine_action(outcome: HostOutcome) -> str | None:
    """The dockerd action taken (or, in a dry run, needed): ``none`` for a host that needed none; ``None``
    where nothing is known of it: a host not reached, not started, or failed before it was planned."""
    if outcome.status in ("unreachable", "skipped") or (outcome.status == "failed" and outcome.plan is None):
        return None
    return outcome.engine_action


def visible_changes(outcome: HostOutcome) -> tuple[FileChange, ...]:
    """File changes a person should see; the agent's own state file is bookkeeping, not news. None for a
    blocked host: it is left untouched, so its plan's diffs are changes that will not happen."""
    if outcome.plan is None or outcome.plan.blockers:
        return ()
    return outcome.plan.visible_changes


# Left as they were: refused, blocked, failed with nothing written, or restored by a roll-back.
_LEFT_AS_THEY_WERE = frozenset({"failed", "rolled_back"})
# Nothing is known of their files: never reached, lost part way, or never started.
_FILES_UNKNOWN = frozenset({"unreachable", "skipped"})


def files_changed(outcome: HostOutcome) -> int | None:
    """How many files the run changed on the host (a dry run: would change); None where that is not
    known (the host was not reached, or its apply timed out part way). A failed or rolled-back host
    counts 0 whatever its plan held: its files are as they were."""
    if outcome.status in _FILES_UNKNOWN or outcome.changes_unknown:
        return None
    if outcome.status in _LEFT_AS_THEY_WERE:
        return 0
    return len(visible_changes(outcome))


def error_beyond_blockers(outcome: HostOutcome) -> str | None:
    """The host's error, unless it only repeats its plan's blockers (shown on their own lines)."""
    if outcome.error and outcome.error == "; ".join(blockers(outcome)):
        return None
    return outcome.error


def reasons(outcome: HostOutcome) -> tuple[str, ...]:
    return outcome.plan.reasons if outcome.plan else ()


def blockers(outcome: HostOutcome) -> tuple[str, ...]:
    return outcome.plan.blockers if outcome.plan else ()


def warnings(outcome: HostOutcome) -> tuple[str, ...]:
    """The host's warnings and its plan's, once each, in order."""
    plan_warnings = outcome.plan.warnings if outcome.plan else ()
    return tuple(dict.fromkeys((*outcome.warnings, *plan_warnings)))


def diff_line_kind(line: str) -> str:
    """What a unified-diff line is: ``file``, ``hunk``, ``add``, ``del``, ``note`` or ``ctx``."""
    if line.startswith(("+++", "---")):
        return "file"
    if line.startswith("@@"):
        return "hunk"
    if line.startswith("+"):
        return "add"
    if line.startswith("-"):
        return "del"
    if line.startswith("\\"):
        return "note"
    return "ctx"


def host_seconds(outcome: HostOutcome) -> float:
    """Wall time of the host's run: first phase start to last phase end (0 without phases)."""
    if not outcome.phases:
        return 0.0
    return max(p.end for p in outcome.phases) - min(p.start for p in outcome.phases)


def run_seconds(result: FleetResult) -> float:
    """Length of the shared time axis: the run, or the last phase end if a clock disagreed."""
    ends = [p.end for o in result.outcomes for p in o.phases]
    return max([result.seconds, *ends])


def summary(result: FleetResult) -> dict[str, int]:
    """Every status with its count, in display order (zeros kept, so the keys never move)."""
    counts = result.counts()
    return {status: counts.get(status, 0) for status in STATUS_ORDER}


def summary_line(result: FleetResult) -> str:
    """``3 hosts: 2 changed, 1 unchanged``."""
    total = len(result.outcomes)
    parts = [f"{n} {status}" for status, n in summary(result).items() if n]
    noun = "host" if total == 1 else "hosts"
    return f"{total} {noun}: {', '.join(parts)}" if parts else f"{total} {noun}"


# Said under plan's and verify's hosts that would change: neither command applies anything.
PENDING_HINT = (
    "pending: nothing was applied; trust-agent rollout with the same arguments applies it "
    "(less --dry-run or --detailed-exitcode)"
)


def pending_hint(result: FleetResult) -> str | None:
    """What to run for the hosts a dry run found would change, where there are any."""
    return PENDING_HINT if result.pending else None


def tls_checks(result: FleetResult) -> tuple[str, ...]:
    """The TLS checks verify or rollout made from this machine, each as printed (``tls
    reg.example.com: ok``), a failed one marked as the exit code counts it."""
    failed = set(result.warnings)
    return tuple(
        check + FAILED_CHECK_SUFFIX if check + FAILED_CHECK_SUFFIX in failed else check
        for check in result.tls_checks
    )


# What a TLS check from this machine came to: it passed (a skip-TLS policy's line too: there was no
# handshake to make), it failed (the exit code counts it), or rollout could not make it from here (a
# note: the controller may sit outside the hosts' network; JUnit skips it).
CheckVerdict = Literal["passed", "failed", "unverified"]


def check_verdict(mode: str, line: str, *, marked_failed: bool) -> CheckVerdict:
    """The verdict on the check ``line`` (``tls <target>: <said>``), ``marked_failed`` where the run
    carries it among its warnings as failed. verify fails every check not passed; rollout only those
    it marked (a certificate the hosts do not trust)."""
    if marked_failed:
        return "failed"
    if line.endswith(": ok") or line.startswith("tls: "):
        return "passed"
    return "unverified" if mode == "rollout" else "failed"


def judged_tls_checks(result: FleetResult) -> tuple[tuple[str, CheckVerdict], ...]:
    """Each of :func:`tls_checks` with its verdict (a check shown other than made is one marked failed)."""
    return tuple(
        (check, check_verdict(result.mode, line, marked_failed=check != line))
        for line, check in zip(result.tls_checks, tls_checks(result), strict=True)
    )


def fleet_warnings(result: FleetResult) -> tuple[str, ...]:
    """The run's warnings but the failed TLS checks a report lists with the other checks."""
    listed = set(tls_checks(result))
    return tuple(w for w in result.warnings if w not in listed)


def policy_read(result: FleetResult) -> bool:
    """Whether the run read its policy: every policy read names a registry (a source without one, and
    no --registry, is refused), so one naming none is the stand-in of a run stopped before its source
    was read, whose storage, CAs and fingerprint no report may describe."""
    return bool(result.policy.registries)


def xml_safe(text: str) -> str:
    """Replace what XML 1.0 cannot carry at all, so a stray control byte never breaks the document."""
    return _NOT_XML.sub("\ufffd", text)
