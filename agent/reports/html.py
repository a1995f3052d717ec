"""The fleet result as one self-contained HTML page: status table, timeline, diffs, policy.

The page needs nothing else (inline CSS, no scripts, no external assets), so it can be attached to a
CI run or mailed. Every value goes through Jinja's autoescaping; the timeline bars are positioned in
percent of the run's duration, so a slow host stands out at a glance.
"""

from __future__ import annotations

from dataclasses import dataclass

import jinja2

from agent.outcome import FleetResult, HostOutcome
from agent.reports import view

PHASE_ORDER = ("connect", "gather", "plan", "apply", "reload", "verify", "rollback")
UNKNOWN = "—"  # the page's mark for what is not known, as for the time of a host never started


@dataclass(frozen=True)
class DiffLine:
    kind: str  # CSS class: file, hunk, add, del, note, ctx
    text: str


@dataclass(frozen=True)
class ChangeView:
    path: str
    action: str
    lines: tuple[DiffLine, ...]


@dataclass(frozen=True)
class Bar:
    name: str
    left: str  # percent of the run, formatted for CSS
    width: str
    tooltip: str


@dataclass(frozen=True)
class HostView:
    anchor: str
    host: str
    status: str
    changed: bool
    engine_action: str
    engine_version: str | None
    seconds: str  # "" when the host never started
    files: str  # files changed (a dry run: would change), UNKNOWN where not known
    error: str | None
    changes: tuple[ChangeView, ...]
    reasons: tuple[str, ...]
    blockers: tuple[str, ...]
    warnings: tuple[str, ...]
    checks: tuple[str, ...]
    verified: tuple[str, ...]
    bars: tuple[Bar, ...]


def _diff_lines(diff: str) -> tuple[DiffLine, ...]:
    # Split on "\n" only: a diff line may itself hold other line-break characters.
    return tuple(DiffLine(view.diff_line_kind(line), view.xml_safe(line)) for line in diff.split("\n")[:-1])


def _percent(value: float) -> str:
    return f"{value:.4f}%"


def _bars(outcome: HostOutcome, total: float) -> tuple[Bar, ...]:
    return tuple(
        Bar(
            name=p.name,
            left=_percent(100 * p.start / total),
            width=_percent(100 * p.seconds / total),
            tooltip=f"{p.name}: {p.seconds:.2f} s ({p.start:.2f} s → {p.end:.2f} s)",
        )
        for p in outcome.phases
    )


def _host_view(index: int, o: HostOutcome, total: float) -> HostView:
    safe = view.xml_safe
    return HostView(
        anchor=f"host-{index}",
        host=safe(o.host),
        status=o.status,
        changed=view.changed(o),
        engine_action=view.engine_action(o) or UNKNOWN,
        engine_version=safe(o.engine_version) if o.engine_version else None,
        seconds=f"{view.host_seconds(o):.2f} s" if o.phases else "",
        files=UNKNOWN if (files := view.files_changed(o)) is None else str(files),
        error=safe(o.error) if o.error else None,
        changes=tuple(
            ChangeView(path=safe(c.path), action=c.action, lines=_diff_lines(c.diff()))
            for c in view.visible_changes(o)
        ),
        reasons=tuple(map(safe, view.reasons(o))),
        blockers=tuple(map(safe, view.blockers(o))),
        warnings=tuple(map(safe, view.warnings(o))),
        checks=tuple(map(safe, o.checks)),
        verified=tuple(map(safe, o.verified)),
        bars=_bars(o, total),
    )


# Each verdict's class on the page: rollout's check that could not connect from here neither passed
# nor failed (the text reports note it, JUnit skips it), so it is not shown as failed.
_CHECK_CLASS: dict[view.CheckVerdict, str] = {
    "passed": "check-ok",
    "failed": "check-failed",
    "unverified": "check-unverified",
}


def _checks(result: FleetResult) -> list[tuple[str, str]]:
    """The TLS checks made from this machine, each with its class on the page."""
    return [
        (view.xml_safe(check), _CHECK_CLASS[verdict]) for check, verdict in view.judged_tls_checks(result)
    ]


def _ticks(total: float) -> list[tuple[str, str]]:
    """Axis labels at 0, 25, 50, 75 and 100 % of the run."""
    return [(_percent(q * 25), f"{total * q / 4:.1f} s") for q in range(5)]


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("agent", "reports/templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(result: FleetResult) -> str:
    total = view.run_seconds(result) or 1.0  # an empty or instant run still needs an axis
    hosts = [_host_view(i, o, total) for i, o in enumerate(result.outcomes, start=1)]
    used_phases = {p.name for o in result.outcomes for p in o.phases}
    template = _environment().get_template("report.html.j2")
    return template.render(
        mode=result.mode,
        started_at=view.xml_safe(result.started_at),
        seconds=f"{result.seconds:.2f}",
        stopped=view.xml_safe(result.stopped) if result.stopped else None,
        warnings=[view.xml_safe(note) for note in view.fleet_warnings(result)],
        checks=_checks(result),
        hint=view.xml_safe(hint) if (hint := view.pending_hint(result)) else None,
        summary_line=view.summary_line(result),
        counts=[(s, n) for s, n in view.summary(result).items() if n],
        failed=bool(result.failed),
        hosts=hosts,
        ticks=_ticks(total),
        legend=[p for p in PHASE_ORDER if p in used_phases],
        policy=result.policy.as_dict(),
        policy_read=view.policy_read(result),
        storage=view.xml_safe(result.policy.storage_summary()),
    )
