"""Connections opened while the run still gets ready.

Before its first host, a run spends ~0.1 s on one core: the rest of its imports, the source and the
CA files, the progress display. A host's SSH handshake needs none of that, only the inventory, and on
a link with latency it is several round trips of waiting. So the first hosts start connecting as soon
as the inventory is read, each in a thread of its own, and the fleet takes the connections over
(:meth:`EarlyConnections.take`). Nothing runs on a host before its connection is taken: a connection
is the key exchange and the login, no command. Where the inputs turn out bad, the connections are
closed unused (:meth:`EarlyConnections.close`) and the run exits with nothing done on any host.

Only a few hosts connect early: the controller's share of each handshake needs the interpreter, which
the start-up is using, so a large fleet would only slow its own start-up down; its later hosts are
not waiting on the first ones anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType

from agent.hosts.base import Connecting, Transport

AT_MOST = 8  # hosts connecting early


@dataclass
class _Early:
    transport: Transport
    connect: Callable[[], None]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    abandoned: bool = False  # closed unused: the thread closes the connection it opened


class EarlyConnections:
    """Hosts connecting now; :meth:`take` hands one to the fleet with its connect step (which waits for
    the handshake and raises what it raised)."""

    def __init__(self) -> None:
        self._early: dict[str, _Early] = {}
        self._lock = threading.Lock()

    @classmethod
    def start(
        cls, names: Iterable[str], open_transport: Callable[[str], Transport], at_most: int = AT_MOST
    ) -> EarlyConnections:
        """Open a transport for each of the first ``at_most`` names and start connecting it. Transports
        with nothing to connect (local ones), and any that cannot even be made, are left to the fleet,
        which reports such a host as it would have."""
        early = cls()
        for name in list(names)[:at_most]:
            try:
                transport = open_transport(name)
            except Exception:
                continue
            if not isinstance(transport, Connecting):
                continue
            entry = _Early(transport, transport.connect)
            early._early[name] = entry
            threading.Thread(
                target=early._connect, args=(entry,), name=f"connect-{name}", daemon=True
            ).start()
        return early

    def _connect(self, entry: _Early) -> None:
        try:
            entry.connect()
        except BaseException as exc:  # kept for the host's own connect step
            entry.error = exc
        finally:
            with self._lock:
                entry.done.set()
                abandoned = entry.abandoned
            if abandoned:
                entry.transport.close()

    def take(self, name: str) -> tuple[Transport, Callable[[], None]] | None:
        """The transport started for ``name`` and its connect step; None where none was started."""
        with self._lock:
            entry = self._early.pop(name, None)
        if entry is None:
            return None

        def connected() -> None:
            entry.done.wait()
            if entry.error is not None:
                raise entry.error
            entry.connect()  # nothing to do on a live connection; opens it again if it dropped meanwhile

        return entry.transport, connected

    def close(self) -> None:
        """Close every connection not taken; one still opening is closed by its thread when it is."""
        with self._lock:
            left, self._early = list(self._early.values()), {}
            for entry in left:
                entry.abandoned = True
            finished = [entry for entry in left if entry.done.is_set()]
        for entry in finished:
            entry.transport.close()

    def __enter__(self) -> EarlyConnections:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
