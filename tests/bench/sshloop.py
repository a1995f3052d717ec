"""A plain parallel OpenSSH loop over the lab's hosts (reset and checks; never a tool under test)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from tests.lab import Lab
from tests.lab import ssh as lab_ssh
from tests.lab.lab import Host

PARALLEL = 50


def run_all(
    lab: Lab, script: str, hosts: Sequence[Host] | None = None, timeout: float = 180
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run shell text SCRIPT on every host (at most PARALLEL at once); never raises for a host."""
    chosen = list(hosts if hosts is not None else lab.hosts)

    def one(host: Host) -> subprocess.CompletedProcess[str]:
        argv = lab_ssh.argv(lab.namespace, lab.key, lab.known_hosts, host.address, "sh -s")
        try:
            return subprocess.run(
                argv, input=script, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(argv, 124, "", f"timed out after {timeout:g}s")

    with ThreadPoolExecutor(max_workers=min(PARALLEL, max(1, len(chosen)))) as pool:
        return dict(zip((h.name for h in chosen), pool.map(one, chosen), strict=True))
