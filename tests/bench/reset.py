"""Put every host back to the lab's base state between cold runs (a plain parallel SSH loop).

A reload does not clear ``insecure-registries`` in dockerd, so a host whose daemon.json changed gets a
restart (after ``reset-failed``: docker.service allows only three starts a minute).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from tests.bench.checks import HostState, parse_state, state_probe
from tests.bench.job import BASE_DAEMON_JSON, DAEMON_JSON
from tests.bench.sshloop import run_all
from tests.lab import Lab
from tests.lab.lab import Host

RESET_SCRIPT = f"""
set -eu
rm -rf /etc/docker/certs.d/* /var/lib/trust-agent
if ! cmp -s {BASE_DAEMON_JSON} {DAEMON_JSON}; then
    cp {BASE_DAEMON_JSON} {DAEMON_JSON}
    systemctl reset-failed docker.service docker.socket 2>/dev/null || true
    systemctl restart docker
fi
systemctl is-active -q docker
"""


class ResetError(RuntimeError):
    pass


def reset(lab: Lab, registry: str, hosts: Sequence[Host] | None = None) -> dict[str, HostState]:
    """Reset every host (or ``hosts``); returns each one's state afterwards (reload count, dockerd PID)."""
    results = run_all(lab, RESET_SCRIPT + state_probe(registry), hosts)
    failed = {n: r.stderr.strip()[-300:] for n, r in results.items() if r.returncode != 0}
    if failed:
        raise ResetError(f"reset failed on {len(failed)} host(s): {failed}")
    return {name: parse_state(r.stdout) for name, r in results.items()}


def _busy() -> tuple[int, int]:
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields), idle


def settle(idle_share: float = 0.85, window: float = 1.0, limit: float = 60.0) -> float:
    """Wait until the machine is mostly idle again (restarted engines settle), at most LIMIT seconds.

    Every tool starts from the same quiet fleet; returns the seconds waited.
    """
    start = time.monotonic()
    while time.monotonic() - start < limit:
        total0, idle0 = _busy()
        time.sleep(window)
        total1, idle1 = _busy()
        if total1 > total0 and (idle1 - idle0) / (total1 - total0) >= idle_share:
            break
    return time.monotonic() - start
