"""ssh_config's ``ProxyCommand``: a host reached through a command's stdin and stdout (a bastion's
``ssh -W %h:%p``, AWS SSM's ``aws ssm start-session``), run by the shell as ssh(1) runs it.

paramiko expands ``%h``, ``%p`` and ``%r`` in the config; ``%n`` (the host as the inventory names it)
is expanded here. A command that ends before the SSH handshake (a bastion refusing, a tool missing) is
reported with its exit status and the last line it wrote on stderr, not as an unreadable banner.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import subprocess
import time
from typing import Any

from agent.hosts.sshlib import paramiko


def command_for(value: Any, original_host: str) -> str | None:
    """The command of a looked-up ``proxycommand`` value; None for none (absent, or ``none``).

    >>> command_for("ssh -W %h:%p bastion # %n", "web1"), command_for(None, "web1"), command_for("none", "w")
    ('ssh -W %h:%p bastion # web1', None, None)
    """
    if value is None or str(value).strip().lower() in ("", "none"):
        return None
    return str(value).replace("%n", original_host)


class _Proxy(paramiko.ProxyCommand):  # type: ignore[misc]
    """paramiko's, but the end of the command's output ends the connection: paramiko's own ``recv``
    keeps reading an ended command's empty output until its timeout (10 s, all of it CPU)."""

    def recv(self, size: int) -> bytes:
        output = self.process.stdout
        assert output is not None  # a pipe: paramiko starts the command with stdout=PIPE
        started = time.monotonic()
        while True:
            left = None if self.timeout is None else self.timeout - (time.monotonic() - started)
            if left is not None and left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([output], [], [], left)
            if ready:
                return os.read(output.fileno(), size)  # b"" at the end: EOF to paramiko


def expand(command: str, hostname: str, port: int, user: str) -> str:
    """``%h %p %r %%`` in a ProxyCommand given outside ssh_config (paramiko expands its own): the host's
    name, port and user where the connection goes; ``%n`` is left to :func:`command_for`.

    >>> expand("ssh -W %h:%p %r@gw # 100%%", "10.0.0.5", 2222, "ops")
    'ssh -W 10.0.0.5:2222 ops@gw # 100%'
    """
    tokens = {"h": hostname, "p": str(port), "r": user, "%": "%"}
    return re.sub(r"%([hpr%])", lambda m: tokens[m.group(1)], command)


def start(command: str) -> paramiko.ProxyCommand:
    """The command running, its stdin and stdout the connection (``sh -c``, as ssh(1) runs it)."""
    return _Proxy(f"/bin/sh -c {shlex.quote(command)}")


def ended(sock: Any, wait: float = 0.5) -> str | None:
    """Where ``sock`` is a proxy command that has ended (or ends within ``wait`` seconds): how, in one
    line; else None."""
    if not isinstance(sock, paramiko.ProxyCommand):
        return None
    process: subprocess.Popen[bytes] = sock.process
    try:
        status = process.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        return None
    said = _stderr_so_far(process, wait).decode("utf-8", "replace").strip().splitlines()
    tail = f": {said[-1]}" if said else ""
    return f"ProxyCommand exited with status {status}{tail}"


def _stderr_so_far(process: subprocess.Popen[bytes], wait: float) -> bytes:
    """What the ended command wrote on stderr, read for at most ``wait`` seconds: a child it left running
    in the background (``ssh -f``, ``cmd &``) keeps the pipe open, and a read to its end would wait for
    that child."""
    if process.stderr is None:
        return b""
    fd, deadline = process.stderr.fileno(), time.monotonic() + wait
    chunks: list[bytes] = []
    while sum(len(chunk) for chunk in chunks) < _STDERR_KEPT:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


_STDERR_KEPT = 1 << 20  # the last line is what is said: a command that writes more is cut here
