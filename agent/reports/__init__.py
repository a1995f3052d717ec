"""One fleet result, rendered many ways: text, JSON, Markdown, HTML and JUnit.

>>> print(render(result, "text"))          # doctest: +SKIP
h1  changed  reload  docker 20.10.24
...
3 hosts: 2 changed, 1 unchanged  (apply, 4.2s)

Every format reads the same fields (``agent.reports.view`` and ``TrustPolicy.as_dict()``), so no
report can show something another does not, and none shows a secret: the models hold none.
"""

from __future__ import annotations

from typing import Literal, get_args

from agent.outcome import FleetResult
from agent.reports import html, json_report, junit, markdown, text
from agent.reports.json_report import to_dict

Format = Literal["text", "json", "markdown", "html", "junit"]
FORMATS: tuple[Format, ...] = get_args(Format)

__all__ = ["FORMATS", "Format", "render", "to_dict"]


def render(result: FleetResult, fmt: Format, *, color: bool = False) -> str:
    """The report in ``fmt``; ``color`` only affects ``text`` (ANSI colours for a terminal)."""
    if fmt == "text":
        return text.render(result, color=color)
    if fmt == "json":
        return json_report.render(result)
    if fmt == "markdown":
        return markdown.render(result)
    if fmt == "html":
        return html.render(result)
    if fmt == "junit":
        return junit.render(result)
    raise ValueError(f"unknown report format {fmt!r}; expected one of {', '.join(FORMATS)}")
