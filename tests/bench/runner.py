"""One tool's timed runs with their checks: the cold run from a reset and the no-op after it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench import checks
from tests.bench.job import Job
from tests.bench.measure import Measured, run_timed
from tests.bench.reset import reset, settle
from tests.bench.tools import Tool
from tests.lab import Lab
from tests.lab.lab import Host


def timed(tool: Tool, mode: str, log: Path) -> Measured:
    command = tool.command(mode)
    try:
        return run_timed(command.argv, env=command.env, cwd=command.cwd, log=log)
    finally:
        if command.cleanup is not None:
            command.cleanup()


@dataclass(frozen=True)
class Checked:
    mode: str  # "cold" | "noop"
    measured: Measured
    verdict: checks.Verdict


def record(entry: dict[str, Any], checked: Checked, label: str) -> None:
    """A checked run's time and verdict into a tool's results entry (``<mode>_s``, ``correct``,
    ``problems``, ``byte_exact``)."""
    entry[f"{checked.mode}_s"].append(checked.measured.seconds)
    verdict = checked.verdict
    if not verdict.ok:
        entry["correct"] = False
        entry["problems"] += [f"{label} {checked.mode}: {p}" for p in verdict.problems[:20]]
    entry["byte_exact"] = entry["byte_exact"] and verdict.byte_exact


def said(checked: Checked) -> str:
    """A checked run in a few words, for the bench's log."""
    verdict, m = checked.verdict, checked.measured
    return (
        f"{m.seconds:.2f}s, peak {m.peak_rss_mb:.0f} MB, "
        f"{'ok' if verdict.ok else 'WRONG: ' + '; '.join(verdict.problems[:3])}"
    )


def cold_then_noop(
    lab: Lab,
    job: Job,
    tool: Tool,
    log_stem: Path,
    hosts: Sequence[Host] | None = None,
) -> list[Checked]:
    """Reset the hosts (every lab host, or ``hosts``), then time the tool cold and (for a tool, not the
    job floor) no-op, each checked on those hosts against the state before it; the tool's output goes
    to ``<log_stem>-<mode>.log``."""
    before = reset(lab, job.registry, hosts)
    settle()
    modes = (("cold", True), ("noop", False)) if tool.kind == "tool" else (("cold", True),)
    done: list[Checked] = []
    for mode, expect_reload in modes:
        if mode == "noop":
            settle()
        measured = timed(tool, mode, log_stem.with_name(f"{log_stem.name}-{mode}.log"))
        after = checks.read_states(lab, job.registry, hosts)
        verdict = checks.check(job, before, after, expect_reload=expect_reload)
        if measured.exit_status != 0:
            verdict.problems.insert(0, f"exit status {measured.exit_status}")
        done.append(Checked(mode, measured, verdict))
        before = after
    return done
