"""One host on its own: trust-agent, Ansible and pyinfra on one lab host while the others idle,
straight and through a slow link (25 ms of round-trip time).

The fleet runs share the machine's two cores between the controller and 50 hosts, so they measure CPU
above all. On a real fleet every host has its own CPU, and the network between controller and hosts
has latency: here the host's work is not queued behind 49 others', and the link shows what each tool's
round trips cost. The link is ``delay_link.py`` in the lab's namespace (127.0.0.1:LINK_PORT to the
host's port 22), started for these runs and stopped after them by its PID (it also ends by itself).
Every run is reset and checked as the fleet runs are, on that one host.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.bench.job import Job
from tests.bench.runner import cold_then_noop, record, said
from tests.bench.tools import HERE, Route, Tool
from tests.lab import Lab, network

LINK_RTT_MS = 25
LINK_PORT = 2222
LINK_LIFETIME_S = 3600.0  # the longest the link lives, should the bench itself be stopped


def link_known_hosts(lab: Lab, address: str, path: Path) -> Path:
    """The lab's known_hosts lines of ADDRESS, as the link reaches it (``[127.0.0.1]:LINK_PORT``)."""
    lines = []
    for line in Path(lab.known_hosts).read_text().splitlines():
        name, _, rest = line.partition(" ")
        if address in name.split(","):
            lines.append(f"[127.0.0.1]:{LINK_PORT} {rest}")
    path.write_text("\n".join(lines) + "\n")
    return path


def start_link(lab: Lab, address: str) -> subprocess.Popen[str]:
    argv = [sys.executable, str(HERE / "delay_link.py"), str(LINK_PORT), address]
    argv += [f"{LINK_RTT_MS / 2000:g}", f"{LINK_LIFETIME_S:g}"]
    link = subprocess.Popen([*network.nsenter(lab.namespace), *argv], stdout=subprocess.PIPE, text=True)
    assert link.stdout is not None
    if link.stdout.readline().strip() != "ready":
        link.kill()
        link.wait()
        raise RuntimeError("the delay link did not start")
    return link


def run(
    lab: Lab,
    job: Job,
    tools_for: Callable[[Route], list[Tool]],
    runs: int,
    logs: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """RUNS rounds of every tool on the lab's first host, straight and through the link."""
    host = lab.hosts[0]
    known = link_known_hosts(lab, host.address, logs.parent / "work" / "link-known_hosts")
    routes = [
        Route("direct", host.name, host.address, 22, Path(lab.known_hosts)),
        Route("link", host.name, "127.0.0.1", LINK_PORT, known),
    ]
    by_route = {route.name: tools_for(route) for route in routes}
    results: dict[str, Any] = {"host": host.name, "link_rtt_ms": LINK_RTT_MS, "runs": runs, "routes": {}}
    for route in routes:
        results["routes"][route.name] = {
            tool.name: {"cold_s": [], "noop_s": [], "correct": True, "byte_exact": True, "problems": []}
            for tool in by_route[route.name]
        }
    link = start_link(lab, host.address)
    try:
        for number in range(1, runs + 1):
            for route in routes:
                for tool in by_route[route.name]:
                    entry = results["routes"][route.name][tool.name]
                    stem = logs / f"one-host-{route.name}-run{number}-{tool.name}"
                    for checked in cold_then_noop(lab, job, tool, stem, [host]):
                        record(entry, checked, f"run {number}")
                        log(
                            f"one host, {route.name}, run {number}, {tool.name} {checked.mode}: {said(checked)}"
                        )
    finally:
        link.terminate()
        try:
            link.wait(timeout=10)
        except subprocess.TimeoutExpired:
            link.kill()
            link.wait()
    return results
