"""The fleet result as JSON: stable keys in a fixed order, for scripts and dashboards."""

from __future__ import annotations

import json

from agent.outcome import FleetResult, HostOutcome
from agent.reports import view


def host_dict(outcome: HostOutcome) -> dict[str, object]:
    return {
        "host": outcome.host,
        "status": outcome.status,
        "changed": view.changed(outcome),
        "changes": [
            {"path": c.path, "action": c.action, "diff": c.diff()} for c in view.visible_changes(outcome)
        ],
        # What the run changed (0 where it failed or was rolled back); null where it is not known.
        "files_changed": view.files_changed(outcome),
        "engine_action": view.engine_action(outcome),  # null where not known, as engine_version
        "engine_version": outcome.engine_version,
        "checks": list(outcome.checks),
        "verified": list(outcome.verified),
        "error": outcome.error,
        "warnings": list(view.warnings(outcome)),
        "reasons": list(view.reasons(outcome)),
        "blockers": list(view.blockers(outcome)),
        "phases": [{"name": p.name, "start": p.start, "end": p.end} for p in outcome.phases],
    }


def to_dict(result: FleetResult) -> dict[str, object]:
    """The whole report as plain data (the JSON document before encoding)."""
    return {
        "mode": result.mode,
        "started_at": result.started_at,
        "seconds": result.seconds,
        "stopped": result.stopped,
        "policy": result.policy.as_dict(),
        "summary": view.summary(result),
        "hosts": [host_dict(o) for o in result.outcomes],
        "warnings": list(result.warnings),
        "tls_checks": list(view.tls_checks(result)),
        # False for a run stopped before its source was read: ``policy`` then describes nothing read.
        "policy_read": view.policy_read(result),
    }


def render(result: FleetResult) -> str:
    return json.dumps(to_dict(result), indent=2, ensure_ascii=False) + "\n"
