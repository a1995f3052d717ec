"""The fleet result as Markdown (GitHub-flavoured): a table at a glance, then each host's diffs.

Made for pull-request comments and CI job summaries. Text from hosts is escaped so a host name or an
error cannot break the table or open a link; diffs go in fences longer than any backtick run they hold.
"""

from __future__ import annotations

import re

from agent.outcome import FleetResult, HostOutcome
from agent.reports import view

# Only what can act mid-line (emphasis, code, links, HTML, entities, cells); nothing here starts a line.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~])")


def _esc(text: str) -> str:
    """Inline text: Markdown punctuation escaped, newlines folded (table cells are one line)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.splitlines()))


def _fence(body: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    return "`" * max(3, longest + 1)


def _table(result: FleetResult) -> list[str]:
    lines = [
        "| host | status | engine action | engine version | changes | error |",
        "| --- | --- | --- | --- | ---: | --- |",
    ]
    for o in result.outcomes:
        cells = [
            _esc(o.host),
            o.status,
            view.engine_action(o) or "",
            _esc(o.engine_version or ""),
            "" if (files := view.files_changed(o)) is None else str(files),  # blank: not known
            _esc(o.error or ""),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _bullets(label: str, items: tuple[str, ...]) -> list[str]:
    return [f"- {label}: {_esc(item)}" for item in items]


def _host(o: HostOutcome) -> list[str]:
    lines = [f"### {_esc(o.host)} — {o.status}", ""]
    action = view.engine_action(o)
    facts = [f"engine action: **{action}**"] if action is not None else []
    if o.engine_version:
        facts.append(f"docker {_esc(o.engine_version)}")
    if o.phases:
        facts.append(f"{view.host_seconds(o):.2f}s")
    if facts:
        lines += [" · ".join(facts), ""]
    notes = [
        *([f"- **error**: {_esc(error)}"] if (error := view.error_beyond_blockers(o)) else []),
        *_bullets("blocked", view.blockers(o)),
        *_bullets("why", view.reasons(o)),
        *_bullets("warning", view.warnings(o)),
        *_bullets("checked", o.checks),
        *_bullets("verified", o.verified),
    ]
    if notes:
        lines += [*notes, ""]
    for change in view.visible_changes(o):
        diff = change.diff()
        fence = _fence(diff)
        lines += [f"`{change.action}` {_esc(change.path)}", "", f"{fence}diff", diff.rstrip("\n"), fence, ""]
    return lines


def _policy(result: FleetResult) -> list[str]:
    policy = result.policy
    if not view.policy_read(result):  # its warning says why
        return ["## Policy", "", "Not read.", "", *_bullets("warning", policy.warnings), ""]
    lines = [
        "## Policy",
        "",
        f"- registries: {', '.join(_esc(r) for r in policy.registries)}",
        f"- storage: {_esc(policy.storage_summary())}",
        f"- insecure-registries: {'yes' if policy.insecure else 'no'}",
        f"- fingerprint: `{policy.fingerprint()}`",
    ]
    for ca in policy.ca_files:
        subjects = "; ".join(_esc(c.subject) for c in ca.bundle.certificates)
        lines.append(f"- CA {_esc(ca.name)} ({ca.role}, from {_esc(ca.bundle.origin)}): {subjects}")
    lines += ["", "Why:", ""] + [f"1. {_esc(r)}" for r in policy.reasons]
    if policy.warnings:
        lines += ["", *_bullets("warning", policy.warnings)]
    return [*lines, ""]


def render(result: FleetResult) -> str:
    lines = [
        f"# trust-agent {result.mode}",
        "",
        f"{view.summary_line(result)} — started {_esc(result.started_at)}, {result.seconds:.1f}s",
        "",
    ]
    if result.stopped:
        lines += [f"> **stopped**: {_esc(result.stopped)}", ""]
    notes = [
        *_bullets("checked from here", view.tls_checks(result)),
        *_bullets("warning", view.fleet_warnings(result)),
    ]
    lines += [*notes, ""] if notes else []
    lines += _table(result)
    if hint := view.pending_hint(result):
        lines += ["", f"> {_esc(hint)}"]
    lines += ["", "## Hosts", ""]
    for o in result.outcomes:
        lines += _host(o)
    lines += _policy(result)
    return "\n".join(lines)
