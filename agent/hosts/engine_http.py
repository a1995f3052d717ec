"""One HTTP GET to the engine's API socket, over any stream the transport gives (an SSH channel to the
host's socket, or the socket itself): how the controller reads ``/_ping`` and ``/info`` without starting
curl on the host.

One request at a time on a connection (HTTP/1.1 keep-alive): each answer is read to its end before the
next request is sent, so no answer can be taken for another. Answers are parsed by ``http.client``,
imported by :func:`load_parser` (~17 ms, with the email parser it uses): not before a host is contacted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

ENGINE_SOCKET = "/var/run/docker.sock"
# How long an answer may take, as the scripts' ``curl --max-time 10``: an engine that hangs is then
# asked the classic way (the dockerd binary) instead of holding the host's run.
ANSWER_TIMEOUT = 10.0
_SERVER_VERSION = re.compile(r"^Docker/([0-9][0-9A-Za-z.+~-]*)")


@dataclass(frozen=True)
class EngineReply:
    """The engine's answer to one GET."""

    status: int
    server: str
    body: bytes

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def version(self) -> str | None:
        """The engine's version from the ``Server: Docker/<version> (<os>)`` header (every endpoint sends it)."""
        match = _SERVER_VERSION.match(self.server)
        return match.group(1) if match else None


class PendingReply(Protocol):
    """A GET already sent (to ``path``); :meth:`wait` reads its answer (None when the route failed
    meanwhile)."""

    @property
    def path(self) -> str: ...

    def wait(self) -> EngineReply | None: ...

    @property
    def timed_out(self) -> bool:
        """After :meth:`wait` gave None: the engine took the request and never answered in time (a
        frozen or hung dockerd), not a route that failed."""
        ...


def request_bytes(path: str) -> bytes:
    """``GET path`` as sent: HTTP/1.1, kept alive, no body. ``path`` is one of the agent's own constants."""
    if not path.startswith("/") or any(c in path for c in " \r\n"):
        raise ValueError(f"not an API path: {path!r}")
    return f"GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: trust-agent\r\n\r\n".encode("ascii")


class BrokenReply(OSError):
    """An answer that is not HTTP: cut short, or something else speaking on the socket."""


def load_parser() -> None:
    """Import the answers' parser now: a run calls this while its first connections open."""
    import http.client  # noqa: F401 - imported for its import time


def read_reply(stream: Any) -> tuple[EngineReply, bool]:
    """Read one answer from ``stream`` (anything with ``makefile("rb")``); returns it and whether the
    engine will close the connection after it. Raises ``OSError`` (:class:`BrokenReply` for an answer
    that is not HTTP)."""
    import http.client

    response = http.client.HTTPResponse(stream)
    try:
        response.begin()
        body = response.read()
    except http.client.HTTPException as exc:
        raise BrokenReply(f"not an HTTP answer: {exc!r}") from exc
    finally:
        response.close()
    return EngineReply(response.status, response.getheader("Server") or "", body), bool(response.will_close)
