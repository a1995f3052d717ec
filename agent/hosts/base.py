"""A transport runs shell commands on one host. Everything else (facts, writes, reloads) is built on it.

Like pyinfra's connectors, a transport has very few verbs, so the engine is the same over SSH and
locally (``--local``, ``--root DIR`` for image baking, and the per-host daemon).
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from agent.errors import CommandError
from agent.hosts.engine_http import ANSWER_TIMEOUT, EngineReply, PendingReply


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def check(self, what: str) -> CommandResult:
        """Raise :class:`CommandError` naming ``what`` when the command failed; return self otherwise."""
        if not self.ok:
            tail = self.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
            raise CommandError(
                f"{what} failed (exit {self.exit_status}): {' | '.join(tail) or 'no output'}",
                exit_status=self.exit_status,
                stderr=self.stderr.decode("utf-8", "replace"),
            )
        return self


@runtime_checkable
class Connecting(Protocol):
    """A transport that opens its connection when asked (SSH): callers time that step on its own and
    report a host they cannot reach before any command. Local transports have nothing to open."""

    def connect(self) -> None: ...


class Transport(ABC):
    """One host. Commands run as root (through sudo when the transport was set up to become)."""

    name: str

    @abstractmethod
    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        """Run ``command`` with ``sh -c`` on the host, feeding ``stdin``; never raises on a non-zero exit."""

    def run_script(self, script: str, *args: str, timeout: float | None = None) -> CommandResult:
        """Run a POSIX sh program with positional ``args`` (as ``sh -s -- ARGS``, script on stdin).

        Transports that can keep one shell open per host (SSH) override this to run every script of
        a host in the same session, sparing the host a new login session for each step.
        """
        quoted = " ".join(shlex.quote(a) for a in args)
        return self.run(f"sh -s -- {quoted}", stdin=script.encode(), timeout=timeout)

    def engine_request(
        self, path: str, timeout: float, *, where_file: tuple[str, str] | None = None
    ) -> PendingReply | None:
        """Send ``GET path`` to the engine's API socket over the transport's own route, without starting
        a process on the host; the answer is read later, so a script can run meanwhile. None where the
        transport has no such route (or the host refused it): the caller reads the API on the host.

        ``where_file`` is ``(file, other_path)``: ``other_path`` is asked instead where the host has
        ``file``, as far as the transport can tell without a round trip of its own (the reply's ``path``
        says which went out)."""
        return None

    def engine_get(self, path: str, timeout: float) -> EngineReply | None:
        """:meth:`engine_request` and its answer, when the engine gave one with status 200; else None."""
        pending = self.engine_request(path, min(timeout, ANSWER_TIMEOUT))
        reply = pending.wait() if pending is not None else None
        return reply if reply is not None and reply.ok else None

    @abstractmethod
    def docker_api(self, timeout: float = 30.0) -> Any:
        """A ``docker.APIClient`` talking to this host's engine (over the same connection where remote)."""

    def close(self) -> None:  # noqa: B027 - optional for transports that hold nothing
        """Release the connection."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
