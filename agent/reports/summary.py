"""The rollout's closing table at a terminal: one row per host, no diffs (``--diff`` or a report has them)."""

from __future__ import annotations

import io
import re
import shutil
import sys
from collections.abc import Sequence

from rich.cells import cell_len
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


# Without a terminal (logs, CI) the table is this wide.
LOG_WIDTH = 160
# A host's name is what a person acts on: never cut, folded only past this many characters.
_HOST_NAME_KEPT = 64
# The error column is a pointer to the host's full error under the table: its first clause, cut here.
ERROR_KEPT = 48


def render(result: FleetResult, *, color: bool = False, said: Sequence[str] = ()) -> str:
    """The table, then what is said under it; ``said``: warnings already said on stderr, left out."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=_width(), force_terminal=color, no_color=not color, highlight=False)
    console.print(_table(result, color=color))
    # Each whole, on one line (a terminal wraps it as it shows it): copied or grepped as it was said.
    for text, style in _errors(result):
        console.print(Text(text, style=style if color else ""), soft_wrap=True)
    for text, style in _notes(result, said):
        for line in _folded(text, console.width):  # folded here: rich would cut an option from its value
            console.print(Text(line, style=style if color else ""), soft_wrap=True)
    console.print(Text(f"{view.summary_line(result)}  ({result.mode}, {result.seconds:.1f}s)"))
    return buffer.getvalue()


def _table(result: FleetResult, *, color: bool) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold" if color else "")
    longest = max((len(o.host) for o in result.outcomes), default=4)
    for column in ("host", "status", "action", "engine", "files", "verified", "time", "error"):
        if column == "host":
            table.add_column(column, no_wrap=longest <= _HOST_NAME_KEPT, overflow="fold")
        else:
            table.add_column(
                column, justify="right" if column in ("files", "time") else "left", overflow="fold"
            )
    for o in result.outcomes:
        table.add_row(
            Text(o.host),
            Text(o.status, style=_STYLE.get(o.status, "") if color else ""),
            view.engine_action(o) or "-",  # as every other cell says what is not known
            o.engine_version or "-",
            _or_dash(view.files_changed(o)),
            Text(", ".join(o.verified) or "-"),
            f"{view.host_seconds(o):.1f}s" if o.phases else "-",
            # One line, cut where the table has less room: the column gives way before the others.
            Text(
                error_gist(o.error, o.host), style="red" if color else "", no_wrap=True, overflow="ellipsis"
            ),
        )
    return table


# How an error names the host it is of, which its row already names: "h2: …", "h2 (10.0.0.2): …".
_HOST_PREFIX = r"^{host}(?: \([^)]*\))?: "


def error_gist(error: str | None, host: str = "") -> str:
    """What the error column shows of ``error``: its first clause (up to the first ``;`` or line end),
    less the host's name it may start with, marked ``...`` where more follows under the table.

    >>> error_gist("h2 (10.0.0.2): dockerd refused the reload; rolled back (files restored)", "h2")
    'dockerd refused the reload; ...'
    """
    if not error:
        return ""
    error = _without_host(error, host)
    first = error.splitlines()[0].split("; ")[0]
    if len(first) > ERROR_KEPT:
        return first[: ERROR_KEPT - 4] + " ..."
    if first == error:
        return error
    return f"{first}; ..." if error.startswith(f"{first}; ") else f"{first} ..."


def _without_host(error: str, host: str) -> str:
    """``error`` less the ``host`` it starts by naming, where more than a blank follows."""
    rest = re.sub(_HOST_PREFIX.format(host=re.escape(host)), "", error, count=1) if host else error
    return rest if rest.strip() else error


def _errors(result: FleetResult) -> list[tuple[str, str]]:
    """Each host's error, whole, once: the error column shows only its start."""
    return [(f"error ({o.host}): {o.error}", "red") for o in result.outcomes if o.error]


def _notes(result: FleetResult, said: Sequence[str] = ()) -> list[tuple[str, str]]:
    """What is said under the table, each with its colour: why the run stopped, the warnings (but those
    in ``said``), the hint."""
    notes = [(f"stopped: {result.stopped}", "bold red")] if result.stopped else []
    warnings = (*result.policy.warnings, *(w for w in result.warnings if w not in said))
    notes += [(f"warning: {warning}", "yellow") for warning in warnings]
    # The hosts' own warnings (dockerd not running, a flag that would stop it...), each once with its hosts.
    by_warning: dict[str, list[str]] = {}
    for o in result.outcomes:
        for warning in view.warnings(o):
            by_warning.setdefault(warning, []).append(o.host)
    for warning, hosts in by_warning.items():
        shown = ", ".join(hosts[:3]) + (f" and {len(hosts) - 3} more" if len(hosts) > 3 else "")
        notes.append((f"warning ({shown}): {warning}", "yellow"))
    if hint := view.pending_hint(result):
        notes.append((hint, "yellow"))
    return notes


# An option a note tells to give, as its value follows it (--resolve registry.test:ADDR).
_OPTION = re.compile(r"\(?--[A-Za-z][\w-]*")


def _units(text: str) -> list[str]:
    """The words of ``text``, an option and its value one unit: a hint to copy is never cut in two."""
    units: list[str] = []
    for word in text.split():
        if units and _OPTION.fullmatch(units[-1]) and not word.startswith(("-", "(-")):
            units[-1] += f" {word}"
        else:
            units.append(word)
    return units


def _folded(text: str, width: int) -> list[str]:
    """``text`` in lines of ``width`` cells, broken only between units; a unit longer than a line has
    one of its own, whole (a terminal folds it; a log keeps it on one line)."""
    lines: list[str] = []
    for unit in _units(text):
        if lines and cell_len(lines[-1]) + 1 + cell_len(unit) <= width:
            lines[-1] += f" {unit}"
        else:
            lines.append(unit)
    return lines


def _or_dash(count: int | None) -> str:
    return "-" if count is None else str(count)  # as every other cell says what is not known


def _width() -> int:
    """The terminal's width where stdout is one (the table then fits the screen), else LOG_WIDTH."""
    if not sys.stdout.isatty():
        return LOG_WIDTH
    return max(shutil.get_terminal_size((LOG_WIDTH, 24)).columns, 80)
