"""Log in and ask for the first session channel in one flight: 3 round trips fewer per connection.

paramiko logs in one step at a time: it asks for the ``ssh-userauth`` service and waits for the accept,
sends the user-auth request and waits for the answer, then asks for a session channel and waits again.
OpenSSH's sshd enables its user-auth handler as it accepts the service, handles packets in order, and
keeps what it has not read yet when the login is done (the post-login process takes over the
connection's buffers), so all three requests can go at once. sshd answers each without waiting on the
client.

One more wait is in sshd itself: before the login it leaves Nagle's algorithm on, so each small answer
after the first waits until the one before it is acknowledged, and the client's kernel, with nothing to
send, delays that (Linux: 40 ms). The accept is acknowledged at once with an ``SSH_MSG_IGNORE``
(as ``agent.hosts.prompt_ack`` does for the request that follows the login); the login's answer, the
host-keys notice and the channel's confirmation then leave sshd together. Measured through a link with
25 ms of round-trip time (lab host, OpenSSH 9.2): login, first channel and its first command 156 ms
step by step, 87 ms this way.

Used only where it is known to hold: a server whose banner names OpenSSH (not its Windows port), and a
key whose signature algorithm does not depend on the server's ``server-sig-algs`` (RSA's does, and that
extension may still be in flight). Where the key is refused, sshd drops the channel request it met before any login (it
answers "unimplemented", which is taken quietly), and the session channel is asked for again after the
login, as paramiko would. Like the other modules here, this leans on paramiko's ``AuthHandler``
internals; where they differ, paramiko's own way runs.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from agent.hosts.pending_channel import ChannelUnavailable, PendingChannel, request_channel
from agent.hosts.prompt_ack import acknowledge_now
from agent.hosts.sshlib import paramiko


def pipelines(remote_version: str, key_type: str) -> bool:
    """Whether the user-auth request may follow the service request unanswered.

    >>> pipelines("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3", "ssh-ed25519")
    True
    >>> pipelines("SSH-2.0-OpenSSH_9.2p1", "rsa-sha2-512"), pipelines("SSH-2.0-dropbear_2022.83", "ssh-ed25519")
    (False, False)
    """
    # Windows' port of OpenSSH hands the connection over after the login its own way: not assumed.
    openssh = remote_version.startswith("SSH-2.0-OpenSSH_") and "for_Windows" not in remote_version
    return openssh and "rsa" not in key_type


def login(
    transport: paramiko.Transport, username: str, key: paramiko.PKey, *, with_session: bool
) -> PendingChannel | None:
    """Authenticate ``username`` with ``key`` as ``transport.auth_publickey`` does (same exceptions);
    with ``with_session``, where the login goes in one flight, the first session channel is asked for
    in it: returned pending once the login has succeeded (None otherwise, or where it was not asked)."""
    handler_class = _handler_class()
    if handler_class is None or not pipelines(transport.remote_version, key.get_name()):
        transport.auth_publickey(username, key)
        return None
    if not transport.is_active() or not transport.initial_kex_done:
        raise paramiko.SSHException("No existing session")
    event = threading.Event()
    handler = handler_class(transport)
    transport.auth_handler = handler
    handler.auth_publickey(username, key, event)
    session: PendingChannel | None = None
    if with_session and _take_unimplemented_quietly(transport):
        try:
            session = request_channel(transport, "session")
        except ChannelUnavailable:
            session = None
    try:
        handler.wait_for_response(event)
    except BaseException:
        if session is not None:
            session.discard()  # sshd dropped it: it came before any login
        raise
    if session is not None and not transport.is_authenticated():
        session.discard()  # a partial login (another method still wanted): dropped as well
        session = None
    return session


@functools.cache
def _handler_class() -> Any:
    """paramiko's AuthHandler sending the user-auth request at once; None where its internals differ."""
    from paramiko.auth_handler import AuthHandler
    from paramiko.message import Message

    base: Any = AuthHandler  # its private methods are not in the type stubs
    needed = ("_request_auth", "_parse_service_accept", "auth_publickey", "wait_for_response")
    if not all(callable(getattr(base, name, None)) for name in needed):
        return None

    class PipelinedAuthHandler(base):  # type: ignore[misc]
        """Sends the service request and the user-auth request together."""

        def _request_auth(self) -> None:
            super()._request_auth()
            # paramiko's own code builds the request (and signs it) as it would on the accept.
            accepted = Message()
            accepted.add_string("ssh-userauth")
            accepted.rewind()
            super()._parse_service_accept(accepted)

        def _parse_service_accept(self, m: Any) -> None:
            """The request went with the service request; the accept is acknowledged at once, so
            sshd's next answers need not wait for it (Nagle's algorithm, above)."""
            acknowledge_now(self.transport)

    return PipelinedAuthHandler


def _take_unimplemented_quietly(transport: paramiko.Transport) -> bool:
    """Let sshd's "unimplemented" answer to a dropped channel request pass without paramiko's warning
    ("Oops, unhandled type 3"); whether it could be arranged (else no channel is asked for early)."""
    from paramiko.common import DEBUG, MSG_UNIMPLEMENTED

    inner: Any = transport
    table = getattr(inner, "_handler_table", None)
    if not isinstance(table, dict):
        return False
    table.setdefault(
        MSG_UNIMPLEMENTED, lambda m: inner._log(DEBUG, "the host did not take a request before the login")
    )
    return True


__all__ = ["login", "pipelines"]
