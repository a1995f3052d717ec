"""The rollout's closing table at a terminal: one row per host, no diffs (``--diff`` or a report has them)."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table
from rich.text import Text

from agent.outcome import FleetResult
from agent.reports import view

_STYLE = {
    "changed": "green",
    "pending": "yellow",
    "unchanged": "dim",
    "rolled_back": "red",
    "failed": "bold red",
    "unreachable": "red",
    "skipped": "dim",
}


def render(result: FleetResult, *, color: bool = False) -> str:
    table = Table(box=None, pad_edge=False, header_style="bold" if color else "")
    for column in ("host", "status", "action", "engine", "files", "verified", "time", "error"):
        table.add_column(column, justify="right" if column in ("files", "time") else "left")
    for o in result.outcomes:
        table.add_row(
            Text(o.host),
            Text(o.status, style=_STYLE.get(o.status, "") if color else ""),
            o.engine_action if view.changed(o) else "-",
            o.engine_version or "-",
            str(len(view.visible_changes(o))),
            Text(", ".join(o.verified) or "-"),
            f"{view.host_seconds(o):.1f}s" if o.phases else "-",
            Text(o.error or "", style="red" if color else ""),
        )
    buffer = io.StringIO()
    console = Console(file=buffer, width=160, force_terminal=color, no_color=not color, highlight=False)
    console.print(table)
    if result.stopped:
        console.print(Text(f"stopped: {result.stopped}", style="bold red" if color else ""))
    for warning in (*result.policy.warnings, *result.warnings):
        console.print(Text(f"warning: {warning}", style="yellow" if color else ""))
    # The hosts' own warnings (dockerd not running, a flag that would stop it...), each once with its hosts.
    by_warning: dict[str, list[str]] = {}
    for o in result.outcomes:
        for warning in view.warnings(o):
            by_warning.setdefault(warning, []).append(o.host)
    for warning, hosts in by_warning.items():
        shown = ", ".join(hosts[:3]) + (f" and {len(hosts) - 3} more" if len(hosts) > 3 else "")
        console.print(Text(f"warning ({shown}): {warning}", style="yellow" if color else ""))
    console.print(Text(f"{view.summary_line(result)}  ({result.mode}, {result.seconds:.1f}s)"))
    return buffer.getvalue()
