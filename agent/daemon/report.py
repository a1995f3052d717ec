"""The status file (JSON) and Prometheus textfile metrics, both rendered from one ``DaemonStatus``.

Both are written atomically, so node_exporter's textfile collector and monitoring scripts never read
half a file. Neither holds anything from the source document beyond the derived policy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.daemon.files import write_atomic
from agent.daemon.logs import iso
from agent.daemon.status import DaemonStatus

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
        "converged": status.converged,
        "host": status.host,
        "pid": status.pid,
        "started_at": _iso(status.started_at),
        "cycles": status.cycles,
        "last_run": _iso(status.last_run),
        "last_success": _iso(status.last_success),
        "last_change": _iso(status.last_change),
        "last_error": status.last_error,
        "last_error_at": _iso(status.last_error_at),
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
        "When the agent last changed the host's files (0: not since start).",
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
    cost a person their file): that is an ``OSError`` the loop logs."""
    try:
        with open(path, "rb") as existing:
            head = existing.read(len(METRICS_FIRST_LINE))
    except FileNotFoundError:
        head = METRICS_FIRST_LINE
    if head and head != METRICS_FIRST_LINE:
        raise OSError(f"{path} holds something other than trust-agent's metrics: left alone")
    write_atomic(path, metrics_text(status).encode(), mode=0o644)


def _labels(**labels: str) -> str:
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else iso(seconds)
