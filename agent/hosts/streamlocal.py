"""An SSH channel to a Unix socket on the host (OpenSSH's ``direct-streamlocal@openssh.com``, as in
``ssh -L local:/var/run/docker.sock``): sshd connects to the socket itself, so reading the engine's API
starts no process on the host.

paramiko has no call for this channel type (paramiko issue #544): :func:`request_streamlocal` asks for
it as ``Transport.open_channel`` asks for the others, with the type's own fields (socket path, two
reserved fields; OpenSSH's PROTOCOL, section 2.4). Where this paramiko's internals differ, it raises
:class:`StreamLocalUnavailable` and the caller reads the API on the host as before.
"""

from __future__ import annotations

from typing import Any

from agent.hosts.pending_channel import ChannelUnavailable, PendingChannel, request_channel
from agent.hosts.sshlib import paramiko

KIND = "direct-streamlocal@openssh.com"


class StreamLocalUnavailable(ChannelUnavailable):
    """The host refused the channel, did not answer, or this paramiko cannot open one."""


def request_streamlocal(client: paramiko.Transport, path: str) -> PendingChannel:
    """Ask for a channel to the host's Unix socket ``path`` without waiting for the answer."""

    def add_fields(message: Any) -> None:
        message.add_string(path)
        message.add_string("")  # reserved
        message.add_int(0)  # reserved

    return request_channel(client, KIND, add_fields, StreamLocalUnavailable)


__all__ = ["KIND", "StreamLocalUnavailable", "request_streamlocal"]
