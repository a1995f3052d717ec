"""The fleet result for a person at a terminal: per host a header, the diffs, then why.

``color=False`` gives plain text without escape codes (logs, pipes, CI); ``color=True`` colours the
status and the diff lines for a terminal. Content is never read as rich markup, so a diff line such
as ``[red]`` prints as written.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from rich.console import Console
from rich.text import Text

from agent.outcome import FleetResult, HostOutcome
from agent.reports import view

_STATUS_STYLE: dict[str, str] = {
    "changed": "bold green",
    "pending": "bold yellow",
    "unchanged": "dim",
    "rolled_back": "bold magenta",
    "failed": "bold red",
    "unreachable": "bold red",
    "skipped": "dim",
}


_DIFF_STYLE = {"file": "bold", "hunk": "cyan", "add": "green", "del": "red", "note": "dim", "ctx": ""}


def _header(outcome: HostOutcome, names: list[str] | None = None) -> Text:
    text = Text()
    shown = names or [outcome.host]
    label = ", ".join(shown) if len(shown) <= 8 else f"{', '.join(shown[:8])} and {len(shown) - 8} more"
    text.append(label if len(shown) == 1 else f"{label} ({len(shown)} hosts)", style="bold")
    text.append("  ")
    text.append(outcome.status, style=_STATUS_STYLE.get(outcome.status, ""))
    if (action := view.engine_action(outcome)) is not None:
        text.append(f"  {action}")
    if outcome.engine_version:
        text.append(f"  docker {outcome.engine_version}")
    return text


def _labelled(label: str, value: str, style: str, indent: str = "  ") -> Text:
    text = Text(indent)
    text.append(f"{label}: ", style=style)
    text.append(value)
    return text


def _same_story(outcome: HostOutcome) -> tuple[object, ...]:
    """Everything the text report says about a host, but its name and timings: hosts that share it
    are shown once (a fleet of identical hosts would otherwise repeat every diff per host)."""
    return (
        outcome.status,
        outcome.engine_action,
        outcome.engine_version,
        tuple((c.path, c.action, c.diff()) for c in view.visible_changes(outcome)),
        view.reasons(outcome),
        view.blockers(outcome),
        view.warnings(outcome),
        outcome.checks,
        outcome.verified,
        outcome.error,
    )


def _groups(outcomes: tuple[HostOutcome, ...]) -> list[list[HostOutcome]]:
    groups: dict[tuple[object, ...], list[HostOutcome]] = {}
    for outcome in outcomes:
        groups.setdefault(_same_story(outcome), []).append(outcome)
    return list(groups.values())


def _host_lines(outcome: HostOutcome, names: list[str] | None = None) -> list[Text]:
    lines = [_header(outcome, names)]
    for change in view.visible_changes(outcome):
        lines.extend(
            Text(line, style=_DIFF_STYLE[view.diff_line_kind(line)]) for line in change.diff().splitlines()
        )
    lines.extend(_labelled("why", r, "cyan") for r in view.reasons(outcome))
    lines.extend(_labelled("blocked", b, "bold red") for b in view.blockers(outcome))
    lines.extend(_labelled("warning", w, "yellow") for w in view.warnings(outcome))
    if outcome.checks:
        lines.append(_labelled("checked", ", ".join(outcome.checks), "cyan"))
    if outcome.verified:
        lines.append(_labelled("verified", ", ".join(outcome.verified), "green"))
    error = view.error_beyond_blockers(outcome)
    if error:
        lines.append(_labelled("error", error, "bold red"))
    return lines


def _policy_lines(result: FleetResult) -> list[Text]:
    policy = result.policy
    head = Text("policy", style="bold")
    if not view.policy_read(result):  # its warning says why
        head.append("  not read")
        return [head, *(_labelled("warning", w, "yellow") for w in policy.warnings)]
    head.append(f"  {', '.join(policy.registries)}  storage {policy.storage_summary()}")
    if policy.insecure:
        head.append("  insecure-registries", style="yellow")
    lines = [head]
    lines.extend(
        _labelled("ca", f"{c.name} ({c.role}, from {c.bundle.origin})", "cyan") for c in policy.ca_files
    )
    lines.extend(_labelled("why", r, "cyan") for r in policy.reasons)
    lines.extend(_labelled("warning", w, "yellow") for w in policy.warnings)
    return lines


def _footer_lines(result: FleetResult, said: Sequence[str]) -> list[Text]:
    lines = [_labelled("checked from here", c, "cyan", indent="") for c in _checks_not_said(result, said)]
    lines += [
        _labelled("warning", w, "yellow", indent="") for w in view.fleet_warnings(result) if w not in said
    ]
    if result.stopped:
        lines.append(_labelled("stopped", result.stopped, "bold red", indent=""))
    if hint := view.pending_hint(result):
        lines.append(Text(hint, style="yellow"))
    style = "bold red" if result.failed else "bold"
    lines.append(Text(f"{view.summary_line(result)}  ({result.mode}, {result.seconds:.1f}s)", style=style))
    return lines


def _checks_not_said(result: FleetResult, said: Sequence[str]) -> list[str]:
    """The TLS checks from here as listed, but those said already, as made or marked failed."""
    return [
        shown
        for made, shown in zip(result.tls_checks, view.tls_checks(result), strict=True)
        if made not in said and shown not in said
    ]


def render(result: FleetResult, *, color: bool = False, said: Sequence[str] = ()) -> str:
    """The report; ``said``: TLS checks and warnings said on stderr already, which it leaves out (on a
    terminal, where stdout and stderr interleave, each would be read twice)."""
    out = io.StringIO()
    console = Console(
        file=out,
        force_terminal=color,
        color_system="standard" if color else None,
        no_color=not color,
        highlight=False,
        emoji=False,
        markup=False,
        soft_wrap=True,  # diffs must keep their lines; the terminal wraps if it must
        legacy_windows=False,
    )
    for group in _groups(result.outcomes):
        for line in _host_lines(group[0], [o.host for o in group]):
            console.print(line)
        console.print()
    for line in [*_policy_lines(result), Text(), *_footer_lines(result, said)]:
        console.print(line)
    return out.getvalue()
