"""python -m tests.bench: bring up the lab fleet, run every tool cold and no-op, check, report.

Environment: BENCH_HOSTS (50), BENCH_RUNS (3), BENCH_TOOLS (comma list; default every tool and floor),
BENCH_LAB_DIR (/tmp/ta-bench), BENCH_KEEP_LAB=1 to leave the lab up afterwards, BENCH_ONE_HOST=0 to
leave out the one-host runs (``tests/bench/one_host.py``).
Writes .bench/results.json and prints a table of medians and ratios.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tests.bench import envs, one_host, report, tools
from tests.bench.job import BASE_DAEMON_JSON, job_for
from tests.bench.reset import reset, settle
from tests.bench.runner import cold_then_noop, record, said, timed
from tests.lab import Lab, down, up

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / ".bench"
ALL = ("floor-paramiko", "floor-openssh", "floor-job", "trust-agent", "ansible", "pyinfra")


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def build_tools(lab: Lab, job: Any, chosen: list[str], route: tools.Route | None = None) -> list[tools.Tool]:
    """The chosen tools on the whole lab; with ``route``, the tools (not the floors) on that one host."""
    work = OUT / "work"
    work.mkdir(parents=True, exist_ok=True)
    found: list[tools.Tool] = []
    for name in chosen:
        if route is not None and name not in ("trust-agent", "ansible", "pyinfra"):
            continue
        if name == "floor-paramiko":
            found.append(tools.floor_paramiko(lab))
        elif name == "floor-openssh":
            found.append(tools.floor_openssh(lab))
        elif name == "floor-job":
            found.append(tools.floor_job(lab, job, work))
        elif name == "trust-agent":
            if route is None:
                log("trust-agent: this tree, pip-installed in .bench/venvs/trust-agent")
            bin_dir = envs.ensure_trust_agent(OUT, REPO, OUT / "trust-agent-install.log")
            found.append(tools.trust_agent(lab, job, work, bin_dir, route))
        elif name in ("ansible", "pyinfra"):
            if route is None:
                log(f"{name}: its own venv under .bench/venvs/")
            bin_dir = envs.ensure(OUT, name, OUT / f"{name}-install.log")
            make = tools.ansible if name == "ansible" else tools.pyinfra
            found.append(make(lab, job, work, bin_dir, route))
        else:
            raise SystemExit(f"bench: unknown tool {name!r} (known: {', '.join(ALL)})")
    return found


def main() -> int:
    hosts = _int_env("BENCH_HOSTS", 50)
    runs = _int_env("BENCH_RUNS", 3)
    lab_dir = os.environ.get("BENCH_LAB_DIR") or "/tmp/ta-bench"
    chosen = [t.strip() for t in (os.environ.get("BENCH_TOOLS") or ",".join(ALL)).split(",") if t.strip()]
    keep = os.environ.get("BENCH_KEEP_LAB", "") not in ("", "0")
    OUT.mkdir(exist_ok=True)
    log(f"{hosts} hosts, {runs} run(s), tools: {', '.join(chosen)}; lab in {lab_dir}")
    lab = up(lab_dir, hosts, "skipverify", log=lambda m: log(f"lab: {m}"))
    try:
        base = lab.ssh(lab.hosts[0], f"cat {BASE_DAEMON_JSON}").stdout.encode()
        job = job_for(lab, base)
        chosen_tools = build_tools(lab, job, chosen)
        results: dict[str, Any] = {"hosts": len(lab.hosts), "runs": runs, "tools": {}}
        for tool in chosen_tools:
            entry: dict[str, Any] = {"cold_s": []}
            if tool.kind in ("tool", "job-floor"):
                entry.update({"correct": True, "byte_exact": True, "problems": []})
            if tool.kind == "tool":
                entry["noop_s"] = []
            entry.update({"peak_rss_mb": 0.0, "max_process_rss_mb": 0.0})
            results["tools"][tool.name] = entry
        for name in ("ansible", "pyinfra"):
            if name in results["tools"]:
                results["tools"][name]["version"] = envs.version(OUT / "venvs" / name / "bin", name)
        started = time.monotonic()
        for run in range(1, runs + 1):
            for tool in chosen_tools:
                entry = results["tools"][tool.name]
                if tool.kind == "floor":
                    settle()
                    m = timed(tool, "cold", OUT / "logs" / f"run{run}-{tool.name}-cold.log")
                    entry["cold_s"].append(m.seconds)
                    _memory(entry, m)
                    _cpu(entry, "cold", m)
                    if tool.name == "floor-paramiko":
                        _inprocess(entry, OUT / "logs" / f"run{run}-{tool.name}-cold.log")
                    log(f"run {run} {tool.name}: {m.seconds:.2f}s (exit {m.exit_status})")
                    continue
                for checked in cold_then_noop(lab, job, tool, OUT / "logs" / f"run{run}-{tool.name}"):
                    mode, m = checked.mode, checked.measured
                    record(entry, checked, f"run {run}")
                    _memory(entry, m)
                    _cpu(entry, mode, m)
                    if tool.kind == "job-floor":
                        _inprocess(entry, OUT / "logs" / f"run{run}-{tool.name}-cold.log")
                    log(f"run {run} {tool.name} {mode}: {said(checked)}")
        if os.environ.get("BENCH_ONE_HOST", "1") != "0":
            results["one_host"] = one_host.run(
                lab, job, lambda route: build_tools(lab, job, chosen, route), runs, OUT / "logs", log
            )
        reset(lab, job.registry)
        results["seconds"] = round(time.monotonic() - started, 1)
        report.write(results, OUT / "results.json")
        print(report.table(results))
        if "one_host" in results:
            print(report.one_host_table(results["one_host"]))
        log(f"results: {OUT / 'results.json'}; logs: {OUT / 'logs'}")
        bad = [n for n, d in results["tools"].items() if d.get("correct") is False]
        bad += [
            f"{route}/{n}"
            for route, by_tool in results.get("one_host", {}).get("routes", {}).items()
            for n, d in by_tool.items()
            if d.get("correct") is False
        ]
        return 1 if bad else 0
    finally:
        if not keep:
            log("taking the lab down")
            down(lab_dir, log=lambda m: log(f"lab: {m}"))


def _memory(entry: dict[str, Any], m: Any) -> None:
    entry["peak_rss_mb"] = max(entry["peak_rss_mb"], m.peak_rss_mb)
    entry["max_process_rss_mb"] = max(entry["max_process_rss_mb"], m.max_process_mb)


def _cpu(entry: dict[str, Any], mode: str, m: Any) -> None:
    """CPU-seconds of the run: the tool's own, and the whole machine's (tool + hosts + the rest)."""
    entry.setdefault(f"{mode}_tool_cpu_s", []).append(m.tool_cpu_s)
    entry.setdefault(f"{mode}_machine_cpu_s", []).append(m.machine_cpu_s)


def _inprocess(entry: dict[str, Any], path: Path) -> None:
    try:
        line = path.read_text().strip().splitlines()[-1]
        entry.setdefault("inprocess_s", []).append(round(float(json.loads(line)["seconds"]), 3))
    except (OSError, IndexError, ValueError, KeyError):
        pass


if __name__ == "__main__":
    sys.exit(main())
