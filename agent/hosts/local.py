"""The local transport: this machine, as root, for ``--local`` and the per-host daemon."""

from __future__ import annotations

import subprocess
from typing import Any

from agent.errors import CommandTimeout
from agent.hosts.base import CommandResult, Transport


class LocalTransport(Transport):
    def __init__(self, name: str = "localhost") -> None:
        self.name = name

    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        try:
            proc = subprocess.run(
                ["sh", "-c", command], input=stdin, capture_output=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeout(f"command timed out after {timeout}s on {self.name}") from exc
        return CommandResult(proc.returncode, proc.stdout, proc.stderr)

    def docker_api(self, timeout: float = 30.0) -> Any:
        import docker

        return docker.APIClient(base_url="unix:///var/run/docker.sock", timeout=int(timeout))
