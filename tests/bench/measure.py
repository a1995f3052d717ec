"""Time one tool as a whole process, from exec to exit, and its memory.

- ``seconds``: wall time from just before ``fork/exec`` to the moment ``wait4`` returns.
- ``tree_peak_mb``: the peak of the summed RSS of the process and all its descendants, polled every
  ``POLL`` seconds from /proc (shared pages count once per process, so for forking tools like Ansible
  it is an upper bound).
- ``max_process_mb``: ``ru_maxrss`` from ``wait4``: the largest single process of the tree (exact).
- ``tool_cpu_s``: user + system CPU of the process and the children it waited for (``wait4``).
- ``machine_cpu_s``: CPU the whole machine spent while it ran (``/proc/stat``, every core): the tool,
  the lab hosts' sshd, shells, systemd and dockerd, and anything else running at the time.
For a single-process tool (trust-agent, the paramiko floor) both are that process's peak RSS.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

POLL = 0.05
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Measured:
    seconds: float
    exit_status: int
    tree_peak_mb: float
    max_process_mb: float
    tool_cpu_s: float = 0.0
    machine_cpu_s: float = 0.0

    @property
    def peak_rss_mb(self) -> float:
        return max(self.tree_peak_mb, self.max_process_mb)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
        except OSError:
            continue
        found += [int(c) for c in text.split()]
    return found


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def machine_busy() -> float:
    """CPU-seconds the machine has spent busy since boot, summed over every core (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


def tree_rss(root: int) -> int:
    """Summed RSS of ROOT and its descendants, in bytes (bounded walk)."""
    total, todo = 0, [root]
    seen: set[int] = set()
    while todo and len(seen) < 10000:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _rss(pid)
        todo += _children(pid)
    return total


def run_timed(
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 900,
) -> Measured:
    """Run ARGV with stdout+stderr to LOG; never raises for a non-zero exit."""
    peak = 0
    done = threading.Event()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        busy_before = machine_busy()
        start = time.monotonic()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )

        def poll() -> None:
            nonlocal peak
            while not done.wait(POLL):
                peak = max(peak, tree_rss(proc.pid))

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        deadline = start + timeout
        status = None
        usage = None
        while status is None:
            pid, raw, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                status = os.waitstatus_to_exitcode(raw)
                break
            if time.monotonic() > deadline:
                proc.kill()
                _, raw, usage = os.wait4(proc.pid, 0)
                status = 124
                break
            time.sleep(0.002)
        seconds = time.monotonic() - start
        busy = machine_busy() - busy_before
        proc.returncode = status  # already reaped
        done.set()
        poller.join()
    max_process = (usage.ru_maxrss * 1024) if usage is not None else 0
    return Measured(
        seconds=round(seconds, 3),
        exit_status=status,
        tree_peak_mb=round(peak / 2**20, 1),
        max_process_mb=round(max_process / 2**20, 1),
        tool_cpu_s=round(usage.ru_utime + usage.ru_stime, 2) if usage is not None else 0.0,
        machine_cpu_s=round(busy, 2),
    )
