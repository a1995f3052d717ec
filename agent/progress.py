"""Progress while hosts run: a rich bar on a terminal, plain lines otherwise (CI logs, pipes).

rich (~25 ms of imports) is imported only for the bar: without a terminal, the run does not wait for it.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress

    from agent.outcome import HostOutcome


class Progress:
    """Reports hosts as they start and finish; writes to stderr so stdout stays the report."""

    def __init__(self, total: int, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.lock = threading.Lock()
        self.bar: RichProgress | None = None
        self.task: Any = None
        if enabled and sys.stderr.isatty() and total > 1:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(
                TextColumn("[bold]hosts"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=Console(stderr=True),
                transient=True,
            )
            self.task = self.bar.add_task("", total=total)
            self.bar.start()

    def start(self, name: str) -> None:
        del name

    def done(self, outcome: HostOutcome) -> None:
        if not self.enabled:
            return
        seconds = max((p.end for p in outcome.phases), default=0.0)
        line = f"{outcome.host}: {outcome.status}"
        if outcome.engine_action != "none" and outcome.status in ("changed", "pending"):
            line += f" ({outcome.engine_action})"
        if outcome.error:
            line += f" - {outcome.error}"
        with self.lock:
            if self.bar is not None and self.task is not None:
                from rich.text import Text

                self.bar.console.print(Text(f"{line}  {seconds:.1f}s"), highlight=False)
                self.bar.advance(self.task)
            else:
                print(f"{line}  {seconds:.1f}s", file=sys.stderr, flush=True)

    def interrupted(self, in_flight: int, left: int = 0) -> None:
        """Say what an interrupt does now (always: a person waiting needs to know why nothing ends):
        ``in_flight`` hosts to finish, ``left`` hosts left at once (agent.host_pool.HostPool)."""
        line = interrupted_line(in_flight, left)
        with self.lock:
            if self.bar is not None:  # above the bar, which goes on counting the hosts that finish
                from rich.text import Text

                self.bar.console.print(Text(line), highlight=False)
            else:
                print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def interrupted_line(in_flight: int, left: int = 0) -> str:
    """What an interrupt does, said while the hosts in flight finish (``agent.host_pool``); ``left`` hosts,
    still connecting or reading their facts, were left at once instead, and are said so: a person
    counting the hosts to wait for must not wait for them."""
    if in_flight == 0 and left:
        return (
            f"interrupted: no host in flight to finish{_leaving(left)}, starting no other; "
            "interrupt again to stop at once"
        )
    return (
        f"interrupted: finishing the {_hosts(in_flight)} in flight{_leaving(left)}, starting no other; "
        "interrupt again to stop at once (hosts then left part way)"
    )


def _leaving(left: int) -> str:
    if left == 0:
        return ""
    its, it = ("its", "it") if left == 1 else ("their", "them")
    return (
        f" (leaving at once the {_hosts(left)} still connecting or reading {its} facts: nothing was "
        f"changed on {it})"
    )


def _hosts(count: int) -> str:
    return f"{count} host" if count == 1 else f"{count} hosts"
