"""results.json and the table of medians and ratios (trust-agent ÷ each other tool)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

OURS = "trust-agent"


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def write(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def _fmt(value: float | None, unit: str = "s") -> str:
    return "-" if value is None else f"{value:.2f}{unit}" if unit == "s" else f"{value:.0f}{unit}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs <= 0:
        return "-"
    return f"{ours / theirs:.3f}"


def per_run_ratios(ours: list[float], theirs: list[float]) -> list[float]:
    """trust-agent ÷ tool for each run where both have a figure (run i against run i)."""
    return [round(a / b, 3) for a, b in zip(ours, theirs, strict=False) if b > 0]


def _per_run(name: str, ours: dict[str, Any], data: dict[str, Any]) -> list[str]:
    cells = []
    for mode in ("cold", "noop"):
        ratios = per_run_ratios(ours.get(f"{mode}_s", []), data.get(f"{mode}_s", []))
        if ratios:
            label = "no-op" if mode == "noop" else mode
            cells.append(f"{label} " + " ".join(f"{r:.3f}" if r < 0.1 else f"{r:.2f}" for r in ratios))
    return [f"  {name:<16}" + "; ".join(cells)] if cells else []


def _against(name: str, data: dict[str, Any], ours: dict[str, Any]) -> str:
    """A row's closing cells: trust-agent ÷ the tool, cold and no-op (medians), and whether it was right."""
    cells = ""
    for mode in ("cold", "noop"):
        theirs, mine = median(data.get(f"{mode}_s", [])), median(ours.get(f"{mode}_s", []))
        cells += f"{_ratio(mine, theirs) if name != OURS else '':>{14 if mode == 'cold' else 15}}"
    correct = data.get("correct")
    return cells + f"  {'-' if correct is None else 'yes' if correct else 'NO'}"


def table(results: dict[str, Any]) -> str:
    tools = results["tools"]
    ours = tools.get(OURS, {})
    header = (
        f"{'tool':<16}{'cold (median)':>14}{'no-op (median)':>16}{'peak RSS':>10}"
        f"{'ta÷tool cold':>14}{'ta÷tool no-op':>15}  correct"
    )
    lines = [f"{results['hosts']} hosts, {results['runs']} run(s), every tool timed exec to exit", header]
    for name, data in tools.items():
        cold, noop = median(data.get("cold_s", [])), median(data.get("noop_s", []))
        lines.append(
            f"{name:<16}{_fmt(cold):>14}{_fmt(noop):>16}{_fmt(data.get('peak_rss_mb'), ' MB'):>10}"
            + _against(name, data, ours)
        )
    lines.append("CPU-seconds, medians (the tool's own / the whole machine's, lab hosts included):")
    for name, data in tools.items():
        cells = []
        for mode in ("cold", "noop"):
            own, whole = (
                median(data.get(f"{mode}_tool_cpu_s", [])),
                median(data.get(f"{mode}_machine_cpu_s", [])),
            )
            if own is not None and whole is not None:
                cells.append(f"{'no-op' if mode == 'noop' else mode} {own:.2f} / {whole:.2f}")
        if cells:
            lines.append(f"  {name:<16}" + "; ".join(cells))
    spreads = [line for name, data in tools.items() if name != OURS for line in _per_run(name, ours, data)]
    if spreads:
        lines.append(
            "trust-agent ÷ tool, run by run (the machine's speed drifts; runs compare within a run):"
        )
        lines += spreads
    job_floor, pyinfra = (
        median(tools.get("floor-job", {}).get("cold_s", [])),
        median(tools.get("pyinfra", {}).get("cold_s", [])),
    )
    if job_floor and pyinfra:
        lines.append(
            f"the job floor (the job's writes and reload alone: no facts, checks or verification) takes "
            f"{job_floor / pyinfra:.3f} of pyinfra's cold run"
        )
    floor = tools.get("floor-paramiko", {})
    if floor.get("inprocess_s"):
        lines.append(f"(floor-paramiko in-process: median {median(floor['inprocess_s']):.2f}s)")
    return "\n".join(lines)


def one_host_table(one_host: dict[str, Any]) -> str:
    """The one-host runs: medians per route and tool, and trust-agent ÷ each other tool."""
    lines = [
        f"one host ({one_host['host']}; the other hosts idle), {one_host['runs']} run(s): straight, and "
        f"through a link adding {one_host['link_rtt_ms']} ms of round-trip time",
        f"{'route':<8}{'tool':<14}{'cold':>8}{'no-op':>8}{'ta÷tool cold':>14}{'ta÷tool no-op':>15}  correct",
    ]
    for route, by_tool in one_host["routes"].items():
        ours = by_tool.get(OURS, {})
        for name, data in by_tool.items():
            cold, noop = median(data.get("cold_s", [])), median(data.get("noop_s", []))
            lines.append(f"{route:<8}{name:<14}{_fmt(cold):>8}{_fmt(noop):>8}" + _against(name, data, ours))
    return "\n".join(lines)
