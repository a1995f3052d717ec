"""Processes the lab starts: spawned detached, remembered by PID and start time, ended by PID only."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# Inherited CA settings change how Go and Python clients verify TLS; the lab's servers must not
# depend on the environment they were started from (the registry panics on AWS_CA_BUNDLE).
CA_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "AWS_CA_BUNDLE")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CA_ENV}
    env.update(extra)
    return env


@dataclass(frozen=True)
class Proc:
    pid: int
    start: int

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "start": self.start}

    @classmethod
    def from_json(cls, data: dict[str, int]) -> Proc:
        return cls(pid=int(data["pid"]), start=int(data["start"]))


def start_time(pid: int) -> int | None:
    """The kernel's start time of PID (clock ticks since boot), None when gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(proc: Proc) -> bool:
    _reap(proc.pid)
    return start_time(proc.pid) == proc.start


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env if env is not None else clean_env(),
            start_new_session=True,
        )
    # Popen would warn when collected while the child still runs; the lab reaps by PID instead.
    child.returncode = 0
    started = start_time(child.pid)
    if started is None:
        raise RuntimeError(f"{argv[0]} exited at once; see {log}")
    return Proc(child.pid, started)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def signal_proc(proc: Proc, sig: int) -> None:
    if alive(proc):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)


def stop_all(procs: list[Proc], timeout: float = 15.0) -> None:
    """TERM each process, wait for all (bounded), KILL the ones still there."""
    for proc in procs:
        signal_proc(proc, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in procs):
        time.sleep(0.1)
    for proc in procs:
        signal_proc(proc, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in procs):
        time.sleep(0.05)


def pids_in_netns(ns_paths: list[Path]) -> list[int]:
    """PIDs whose network namespace is one of NS_PATHS: what a lab left running, found without a record."""
    inodes = set()
    for path in ns_paths:
        with contextlib.suppress(OSError):
            inodes.add(path.stat().st_ino)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "ns/net").stat().st_ino in inodes:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def run(argv: list[str], timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check)
