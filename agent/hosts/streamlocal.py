"""An SSH channel to a Unix socket on the host (OpenSSH's ``direct-streamlocal@openssh.com``, as in
``ssh -L local:/var/run/docker.sock``): sshd connects to the socket itself, so reading the engine's API
starts no process on the host.

paramiko has no call for this channel type (paramiko issue #544): :func:`request_streamlocal` is
``Transport.open_channel`` with the type's own fields (socket path, two reserved fields; OpenSSH's
PROTOCOL, section 2.4). Where this paramiko's internals differ, it raises :class:`StreamLocalUnavailable`
and the caller reads the API on the host as before.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from agent.hosts.sshlib import paramiko

KIND = "direct-streamlocal@openssh.com"


class StreamLocalUnavailable(Exception):
    """The host refused the channel, did not answer, or this paramiko cannot open one."""


class PendingChannel:
    """A channel request sent and not yet answered: the wait can overlap other round trips."""

    def __init__(self, transport: Any, chan: paramiko.Channel, event: threading.Event) -> None:
        self._transport = transport
        self._chan = chan  # paramiko keeps channels by weak reference: this one lives until answered
        self._chanid = chan.get_id()
        self._event = event

    def answered(self) -> bool:
        """The host has answered (or the connection is gone): :meth:`result` will not wait."""
        return self._event.is_set() or not self._transport.is_active()

    def result(self, timeout: float) -> paramiko.Channel:
        """The open channel; raises :class:`StreamLocalUnavailable` when refused or unanswered."""
        transport, chanid = self._transport, self._chanid
        deadline = time.monotonic() + timeout
        while not self._event.wait(0.1):
            if not transport.is_active() or time.monotonic() >= deadline:
                transport._channels.delete(chanid)
                raise StreamLocalUnavailable("no answer to the channel request")
        opened: paramiko.Channel | None = transport._channels.get(chanid)
        if opened is None:
            # sshd forbids it (AllowStreamLocalForwarding, DisableForwarding: "administratively
            # prohibited") or could not connect to the socket (no engine, or no access for the login user).
            raise StreamLocalUnavailable(str(transport.get_exception() or "the host refused the channel"))
        return opened


def request_streamlocal(client: paramiko.Transport, path: str) -> PendingChannel:
    """Ask for a channel to the host's Unix socket ``path`` without waiting for the answer."""
    from paramiko.common import cMSG_CHANNEL_OPEN
    from paramiko.message import Message

    transport: Any = client  # its private parts, as open_channel uses them
    if not transport.is_active():
        raise StreamLocalUnavailable("SSH session not active")
    try:
        with transport.lock:
            window = transport._sanitize_window_size(None)
            packet = transport._sanitize_packet_size(None)
            chanid = transport._next_channel()
            message = Message()
            message.add_byte(cMSG_CHANNEL_OPEN)
            message.add_string(KIND)
            message.add_int(chanid)
            message.add_int(window)
            message.add_int(packet)
            message.add_string(path)
            message.add_string("")  # reserved
            message.add_int(0)  # reserved
            chan: Any = paramiko.Channel(chanid)
            transport._channels.put(chanid, chan)
            transport.channel_events[chanid] = event = threading.Event()
            transport.channels_seen[chanid] = True
            chan._set_transport(transport)
            chan._set_window(window, packet)
    except AttributeError as exc:  # a paramiko whose internals moved: no direct route
        raise StreamLocalUnavailable(f"paramiko cannot open {KIND} channels: {exc}") from None
    transport._send_user_message(message)
    return PendingChannel(transport, chan, event)
