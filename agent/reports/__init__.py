"""One fleet result, rendered many ways: text, JSON, Markdown, HTML and JUnit.

>>> print(render(result, "text"))          # doctest: +SKIP
h1  changed  reload  docker 20.10.24
...
3 hosts: 2 changed, 1 unchanged  (apply, 4.2s)

Every format reads the same fields (``agent.reports.view`` and ``TrustPolicy.as_dict()``), so no
report can show something another does not, and none shows a secret: the models hold none.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, Literal, get_args

from agent.outcome import FleetResult

Format = Literal["text", "json", "markdown", "html", "junit"]
FORMATS: tuple[Format, ...] = get_args(Format)

# Each format is imported when first asked for: a rollout that writes JSON never loads jinja2.
_MODULES: dict[str, str] = {
    "text": "agent.reports.text",
    "json": "agent.reports.json_report",
    "markdown": "agent.reports.markdown",
    "html": "agent.reports.html",
    "junit": "agent.reports.junit",
}

__all__ = ["FORMATS", "Format", "preload", "render", "to_dict"]


def preload(fmt: str) -> None:
    """Import the renderer of ``fmt`` now (rich for text, jinja2 for HTML: tens of milliseconds): run in
    a thread while the hosts run, the report does not wait on its imports at the end."""
    if fmt in _MODULES:
        importlib.import_module(_MODULES[fmt])


def render(result: FleetResult, fmt: Format, *, color: bool = False, said: Sequence[str] = ()) -> str:
    """The report in ``fmt``; ``color`` and ``said`` only affect ``text``: ANSI colours for a terminal,
    and the TLS checks and warnings said on stderr already, left out of a text report shown beside it."""
    if fmt not in _MODULES:
        raise ValueError(f"unknown report format {fmt!r}; expected one of {', '.join(FORMATS)}")
    module = importlib.import_module(_MODULES[fmt])
    rendered: str = module.render(result, color=color, said=said) if fmt == "text" else module.render(result)
    return rendered


def to_dict(result: FleetResult) -> dict[str, Any]:
    """The JSON report as plain data."""
    from agent.reports.json_report import to_dict as json_dict

    return dict(json_dict(result))
