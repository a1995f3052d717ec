"""systemd's sd_notify protocol: a datagram of ``KEY=value`` lines to ``$NOTIFY_SOCKET``.

A few lines instead of a dependency. Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op.
``WATCHDOG_USEC`` (with ``WATCHDOG_PID`` naming this process, when set) asks for ``WATCHDOG=1`` at
least that often; the loop pings at half of it.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Notifier:
    address: str | None = None  # a path, or "\0name" for an abstract socket
    watchdog_seconds: float | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], pid: int | None = None) -> Notifier:
        raw = environ.get("NOTIFY_SOCKET") or None
        address = "\0" + raw[1:] if raw and raw.startswith("@") else raw
        return cls(address, _watchdog(environ, os.getpid() if pid is None else pid))

    def send(self, *fields: str) -> bool:
        """Send one message; ``False`` when there is nowhere to send it or it could not be sent."""
        if not self.address:
            return False
        message = "\n".join(f.replace("\n", " ") for f in fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self.address)
        except OSError:
            return False  # systemd gone or socket full: a notification is never worth failing for
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.watchdog_seconds is not None and self.send("WATCHDOG=1")

    def stopping(self, status: str = "stopping") -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")


def _watchdog(environ: Mapping[str, str], pid: int) -> float | None:
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    owner = environ.get("WATCHDOG_PID")
    # The variable is inherited by children; only the process systemd meant may ping.
    if owner and owner.strip() != str(pid):
        return None
    with contextlib.suppress(ValueError):
        seconds = int(usec) / 1_000_000
        return seconds if seconds > 0 else None
    return None
