"""The status file (JSON) and Prometheus textfile metrics, both rendered from one ``DaemonStatus``.

Both are written atomically, so node_exporter's textfile collector and monitoring scripts never read
half a file. Neither holds anything from the source document beyond the derived policy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.daemon.files import write_atomic
from agent.daemon.logs import iso
from agent.daemon.status import DaemonStatus, OutcomeSummary

STATUS_VERSION = 1


def status_document(status: DaemonStatus) -> dict[str, Any]:
    policy = status.policy
    source = status.source
    outcome = status.outcome
    return {
        "version": STATUS_VERSION,
        "state": status.state,
        "healthy": status.healthy,
        "last_cycle_state": status.last_cycle_state,
        "host_busy": status.host_busy,
        # Unknown while another run holds the host's lock: this cycle did not look. ``outcome`` is the
        # last one reached on the policy in force (none on a policy not reconciled yet).
        "converged": None if status.host_busy else status.converged,
        "host": status.host,
        "pid": status.pid,
        "state_dir": status.state_dir,
        "started_at": _iso(status.started_at),
        "cycles": status.cycles,
        "last_run": _iso(status.last_run),
        "last_success": _iso(status.last_success),
        "last_change": _iso(status.last_change),
        "last_error": status.last_error,
        "last_error_at": _iso(status.last_error_at),
        "previous_error": status.previous_error,
        "previous_error_at": _iso(status.previous_error_at),
        "consecutive_failures": status.consecutive_failures,
        "changes_total": status.changes_total,
        "policy_changes_total": status.policy_changes_total,
        "apply_errors_total": status.apply_errors_total,
        "policy": None
        if policy is None
        else {
            "fingerprint": policy.policy.fingerprint(),
            "source": policy.source,
            "source_kind": policy.source_kind,
            "saved_at": _iso(policy.saved_at),
            "registries": list(policy.policy.registries),
            "insecure": policy.policy.insecure,
            "ca_files": [c.name for c in policy.policy.ca_files],
        },
        "outcome": None
        if outcome is None
        else {
            "status": outcome.status,
            "engine_action": outcome.engine_action,
            "error": outcome.error,
            "files": list(outcome.files),
            "verified": list(outcome.verified),
            "warnings": list(outcome.warnings),
        },
        "source": {
            "spec": source.spec,
            "state": source.state,
            "last_poll": _iso(source.last_poll),
            "last_ok": _iso(source.last_ok),
            "last_error": source.last_error,
            "consecutive_failures": source.consecutive_failures,
            "errors_total": source.errors_total,
            "next_poll": _iso(source.next_poll),
            "retry_in_seconds": source.retry_in,
        },
        "warnings": list(status.all_warnings),
    }


def write_status(path: Path, status: DaemonStatus) -> None:
    write_atomic(path, json.dumps(status_document(status), indent=2).encode() + b"\n", mode=0o644)


def metrics_text(status: DaemonStatus) -> str:
    """Prometheus text exposition format, for node_exporter's textfile collector."""
    source = status.source
    out: list[str] = []

    def metric(name: str, kind: str, help_text: str, value: float, labels: str = "") -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        out.append(f"{name}{labels} {_number(value)}")

    metric(
        "trust_agent_up",
        "gauge",
        "1 while the daemon runs and its last cycle read the source and left the host converged.",
        1 if status.healthy else 0,
    )
    metric(
        "trust_agent_source_up",
        "gauge",
        "1 when the last poll of the source succeeded.",
        1 if source.state in ("read", "unchanged") and source.consecutive_failures == 0 else 0,
    )
    metric(
        "trust_agent_host_converged",
        "gauge",
        "1 when the host holds the policy in force.",
        1 if status.converged else 0,
    )
    metric(
        "trust_agent_host_busy",
        "gauge",
        "1 when the last cycle found another trust-agent run holding the host's lock: it did not look at "
        "the host, and trust_agent_host_converged is what the last look found.",
        1 if status.host_busy else 0,
    )
    metric(
        "trust_agent_policy_pending",
        "gauge",
        "1 while the policy in force is not applied to the host yet (another trust-agent run held the "
        "host's lock, say): status.json says pending, and trust_agent_up is 0 for no fault.",
        1 if status.state == "pending" else 0,
    )
    metric(
        "trust_agent_last_run_timestamp_seconds", "gauge", "When the last cycle ran.", status.last_run or 0
    )
    metric(
        "trust_agent_last_success_timestamp_seconds",
        "gauge",
        "When a cycle last read the source and left the host converged (0: never).",
        status.last_success or 0,
    )
    metric(
        "trust_agent_last_change_timestamp_seconds",
        "gauge",
        "When the daemon last changed the host's files, kept across its restarts on the same policy "
        "(0: no change recorded).",
        status.last_change or 0,
    )
    metric(
        "trust_agent_warnings",
        "gauge",
        "Warnings in force: the last reconcile's and the daemon's own (status.json lists them).",
        len(status.all_warnings),
    )
    metric("trust_agent_cycles_total", "counter", "Cycles run since start.", status.cycles)
    metric(
        "trust_agent_changes_total", "counter", "Cycles that changed the host's files.", status.changes_total
    )
    metric(
        "trust_agent_policy_changes_total",
        "counter",
        "New policies adopted from the source.",
        status.policy_changes_total,
    )
    metric(
        "trust_agent_source_errors_total", "counter", "Polls of the source that failed.", source.errors_total
    )
    metric(
        "trust_agent_apply_errors_total",
        "counter",
        "Cycles whose reconcile failed.",
        status.apply_errors_total,
    )
    metric(
        "trust_agent_consecutive_failures",
        "gauge",
        "Cycles in a row that were not ok.",
        status.consecutive_failures,
    )
    metric(
        "trust_agent_source_retry_seconds",
        "gauge",
        "The back-off before the next poll of a failing source (0: polling normally).",
        source.retry_in or 0,
    )
    if status.policy is not None:
        labels = _labels(
            fingerprint=status.policy.policy.fingerprint(), source_kind=status.policy.source_kind or ""
        )
        metric("trust_agent_policy_info", "gauge", "The policy in force (last good).", 1, labels)
        metric(
            "trust_agent_policy_saved_timestamp_seconds",
            "gauge",
            "When the policy in force was adopted.",
            status.policy.saved_at,
        )
    return "\n".join(out) + "\n"


METRICS_FIRST_LINE = b"# HELP trust_agent_"  # every metrics file the daemon writes starts so


def write_metrics(path: Path, status: DaemonStatus) -> None:
    """Write the metrics file, never over a file that holds something else (a mistyped path must not
    cost a person their file): that is an ``OSError`` the loop logs.

    An empty file is not the daemon's either: it never leaves its own empty (a temporary file, synced,
    is renamed into place: a crash leaves the old file or the new one), and an empty file can still
    be another program's (pam_env reads /etc/environment, empty on Debian)."""
    refusal = metrics_refusal(path, _metrics_head(path))
    if refusal is not None:
        raise OSError(refusal)
    write_atomic(path, metrics_text(status).encode(), mode=0o644)


def metrics_refusal(path: Path, head: bytes | None) -> str | None:
    """Why the metrics file at ``path`` may not be written, whose first bytes are ``head`` (None: no
    file there); None where it may."""
    if head is None or head == METRICS_FIRST_LINE:
        return None
    if not head:
        return (
            f"{path} is an empty file trust-agent did not write (its metrics file is never empty): left "
            "alone; remove it if no other program needs it, or choose another metrics file"
        )
    return f"{path} holds something other than trust-agent's metrics: left alone"


def _metrics_head(path: Path) -> bytes | None:
    """The first bytes of the file at ``path``, as many as the daemon's first line; None: no file."""
    try:
        with open(path, "rb") as existing:
            return existing.read(len(METRICS_FIRST_LINE))
    except FileNotFoundError:
        return None


def _labels(**labels: str) -> str:
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else iso(seconds)


# --- what a previous process of the daemon left ------------------------------------------------------

_CYCLE_ENDS = ("ok", "degraded", "failing")  # the states a reconciled cycle can end in


def read_status_file(path: Path) -> dict[str, Any] | None:
    """The status document at ``path``; None where it is missing, unreadable or not one."""
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) and document.get("version") == STATUS_VERSION else None


def carry_over(status: DaemonStatus, previous: Mapping[str, Any]) -> DaemonStatus:
    """``status`` (a daemon process that has not run a cycle yet) with what the last reconciled cycle of
    the process before it left: how it ended, its outcome, when it last succeeded.

    Only from a document of the same daemon (its state directory, its host) on the policy now in force:
    a ``--once`` that finds the host busy would otherwise say "never converged" for a converged host.
    The process's own facts (PID, start, state, counters since start) stay its own. A document that does
    not hold together leaves ``status`` as it is."""
    policy = previous.get("policy")
    if (
        status.policy is None
        or status.state_dir is None
        or previous.get("state_dir") != status.state_dir
        or previous.get("host") != status.host
        or not isinstance(policy, dict)
        or policy.get("fingerprint") != status.policy.policy.fingerprint()
        or previous.get("last_cycle_state") not in _CYCLE_ENDS
    ):
        return status
    try:
        return replace(
            status,
            last_cycle_state=previous["last_cycle_state"],
            outcome=_outcome(previous.get("outcome")),
            last_run=_seconds(previous.get("last_run")),
            last_success=_seconds(previous.get("last_success")),
            last_change=_seconds(previous.get("last_change")),
            last_error=_text(previous.get("last_error")),
            last_error_at=_seconds(previous.get("last_error_at")),
            previous_error=_text(previous.get("previous_error")),
            previous_error_at=_seconds(previous.get("previous_error_at")),
        )
    except (TypeError, ValueError, KeyError, AttributeError):
        return status


def _outcome(value: object) -> OutcomeSummary | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError("outcome: not a mapping")
    return OutcomeSummary(
        status=_required_text(value["status"]),
        engine_action=_required_text(value["engine_action"]),
        error=_text(value.get("error")),
        files=_texts(value.get("files", [])),
        verified=_texts(value.get("verified", [])),
        warnings=_texts(value.get("warnings", [])),
    )


def _seconds(value: object) -> float | None:
    """An ISO time as ``_iso`` writes it, back to epoch seconds."""
    if value is None:
        return None
    parsed = datetime.strptime(_required_text(value), "%Y-%m-%dT%H:%M:%S.%fZ")
    return parsed.replace(tzinfo=UTC).timestamp()


def _text(value: object) -> str | None:
    return None if value is None else _required_text(value)


def _required_text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r}: not a string")
    return value


def _texts(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise TypeError(f"{value!r}: not a list")
    return tuple(_required_text(item) for item in value)


# --- a daemon that ended without saying so ---------------------------------------------------------


def stopped_document(previous: Mapping[str, Any], *, error: str, at: float) -> dict[str, Any]:
    """The status document of a daemon that ended without writing it (SIGKILL, the OOM killer, the
    watchdog's SIGABRT): stopped, not healthy, why; how its last cycle ended stays."""
    return {
        **previous,
        "state": "stopped",
        "healthy": False,
        "last_error": error,
        "last_error_at": iso(at),
    }


def metrics_marked_down(text: str) -> str:
    """The daemon's metrics with ``trust_agent_up`` at 0; everything else as the daemon left it."""
    return "".join(
        "trust_agent_up 0\n" if line.startswith("trust_agent_up ") else line
        for line in text.splitlines(keepends=True)
    )
