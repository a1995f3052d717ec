"""An SSH channel asked for without waiting for the answer, so the wait can overlap other round trips.

paramiko's ``Transport.open_channel`` sends the request and blocks until the host answers.
:func:`request_channel` does what it does up to the send (the same bookkeeping in paramiko's channel
tables) and returns a :class:`PendingChannel` to wait on later. It serves channel types paramiko has no
call for (``agent.hosts.streamlocal``) and the first session channel, asked for with the login
(``agent.hosts.pipelined_login``). Where this paramiko's internals differ it raises
:class:`ChannelUnavailable`, and callers take paramiko's own way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from agent.hosts.sshlib import paramiko


class ChannelUnavailable(Exception):
    """The host refused the channel, did not answer, or this paramiko cannot ask for one this way."""


class PendingChannel:
    """A channel request sent and not yet answered."""

    def __init__(
        self,
        transport: Any,
        chan: paramiko.Channel,
        event: threading.Event,
        unavailable: type[ChannelUnavailable] = ChannelUnavailable,
    ) -> None:
        self._transport = transport
        self._chan = chan  # paramiko keeps channels by weak reference: this one lives until answered
        self._chanid = chan.get_id()
        self._event = event
        self._unavailable = unavailable

    def answered(self) -> bool:
        """The host has answered (or the connection is gone): :meth:`result` will not wait."""
        return self._event.is_set() or not self._transport.is_active()

    def result(self, timeout: float) -> paramiko.Channel:
        """The open channel; raises ``unavailable`` (a :class:`ChannelUnavailable`) when refused or
        unanswered."""
        transport = self._transport
        deadline = time.monotonic() + timeout
        while not self._event.wait(0.1):
            if not transport.is_active() or time.monotonic() >= deadline:
                self.discard()
                raise self._unavailable("no answer to the channel request")
        opened: paramiko.Channel | None = transport._channels.get(self._chanid)
        if opened is None:
            # Refused: for a socket, sshd forbids it (AllowStreamLocalForwarding, DisableForwarding:
            # "administratively prohibited") or could not connect to it (no engine, or no access for
            # the login user).
            raise self._unavailable(str(transport.get_exception() or "the host refused the channel"))
        return opened

    def discard(self) -> None:
        """Forget the request: an answer that still comes finds no channel and is ignored (paramiko
        logs it as for a dead channel)."""
        self._transport._channels.delete(self._chanid)
        self._transport.channel_events.pop(self._chanid, None)


def request_channel(
    client: paramiko.Transport,
    kind: str,
    add_fields: Callable[[Any], None] = lambda message: None,
    unavailable: type[ChannelUnavailable] = ChannelUnavailable,
) -> PendingChannel:
    """Ask for a channel of ``kind`` (``add_fields`` appends the type's own fields to the request)
    without waiting for the answer."""
    from paramiko.common import cMSG_CHANNEL_OPEN
    from paramiko.message import Message

    transport: Any = client  # its private parts, as open_channel uses them
    if not transport.is_active():
        raise unavailable("SSH session not active")
    try:
        with transport.lock:
            window = transport._sanitize_window_size(None)
            packet = transport._sanitize_packet_size(None)
            chanid = transport._next_channel()
            message = Message()
            message.add_byte(cMSG_CHANNEL_OPEN)
            message.add_string(kind)
            message.add_int(chanid)
            message.add_int(window)
            message.add_int(packet)
            add_fields(message)
            chan: Any = paramiko.Channel(chanid)
            transport._channels.put(chanid, chan)
            transport.channel_events[chanid] = event = threading.Event()
            transport.channels_seen[chanid] = True
            chan._set_transport(transport)
            chan._set_window(window, packet)
    except AttributeError as exc:  # a paramiko whose internals moved
        raise unavailable(f"paramiko cannot ask for {kind} channels this way: {exc}") from None
    transport._send_user_message(message)
    return PendingChannel(transport, chan, event, unavailable)


__all__ = ["ChannelUnavailable", "PendingChannel", "request_channel"]
