"""The local transport: this machine, as root, for ``--local`` and the per-host daemon."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from typing import Any

from agent.errors import CommandTimeout
from agent.hosts.base import CommandResult, Transport
from agent.hosts.engine_http import ENGINE_SOCKET, EngineReply, PendingReply, read_reply, request_bytes
from agent.hosts.engine_wake import engine_asleep_here


class LocalTransport(Transport):
    def __init__(self, name: str = "localhost") -> None:
        self.name = name

    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        try:
            # A session of its own: a terminal's Ctrl-C goes to the whole foreground group, and the
            # first one must let the host in flight finish its script (the CLI stops between hosts).
            proc = subprocess.run(
                ["sh", "-c", command],
                input=stdin,
                capture_output=True,
                timeout=timeout,
                check=False,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeout(f"command timed out after {timeout}s on {self.name}") from exc
        return CommandResult(proc.returncode, proc.stdout, proc.stderr)

    def engine_request(
        self, path: str, timeout: float, *, where_file: tuple[str, str] | None = None
    ) -> PendingReply | None:
        """Send ``GET path`` on the engine's socket itself (one connection per request); None where
        dockerd is stopped and the connection would start it."""
        if where_file is not None and os.path.exists(where_file[0]):
            path = where_file[1]
        request = request_bytes(path)
        if engine_asleep_here():
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(ENGINE_SOCKET)
            sock.sendall(request)
        except OSError:
            sock.close()
            return None
        return _SocketReply(sock, path)

    def docker_api(self, timeout: float = 30.0) -> Any:
        import docker

        return docker.APIClient(base_url=f"unix://{ENGINE_SOCKET}", timeout=int(timeout))


class _SocketReply:
    def __init__(self, sock: socket.socket, path: str) -> None:
        self.sock = sock
        self.path = path
        self.timed_out = False

    def wait(self) -> EngineReply | None:
        try:
            return read_reply(self.sock)[0]
        except OSError as exc:  # BrokenReply included
            self.timed_out = isinstance(exc, TimeoutError)
            return None
        finally:
            with contextlib.suppress(OSError):
                self.sock.close()
