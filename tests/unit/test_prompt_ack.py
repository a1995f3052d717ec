"""The server's global requests that want no reply are answered with an IGNORE at once (its TCP segment
carries the acknowledgement sshd's next packet waits for); those that want one get only their reply."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from paramiko.common import MSG_GLOBAL_REQUEST, MSG_IGNORE, MSG_REQUEST_FAILURE, cMSG_GLOBAL_REQUEST
from paramiko.message import Message

from agent.hosts.prompt_ack import acknowledge_global_requests
from agent.hosts.sshlib import paramiko


@pytest.fixture
def transport() -> Iterator[paramiko.Transport]:
    ours, theirs = socket.socketpair()
    t = paramiko.Transport(ours)  # never started: only its handler table is used
    yield t
    ours.close()
    theirs.close()


def global_request(kind: str, want_reply: bool) -> Message:
    m = Message()
    m.add_byte(cMSG_GLOBAL_REQUEST)
    m.add_string(kind)
    m.add_boolean(want_reply)
    m.add_string(b"host key blob")
    return Message(m.asbytes()[1:])  # as the packetizer hands it over: the type byte read


@pytest.mark.parametrize(
    ("want_reply", "sent"),
    [(False, [MSG_IGNORE]), (True, [MSG_REQUEST_FAILURE])],
    ids=["hostkeys-00, no reply wanted", "keepalive, reply wanted"],
)
def test_a_global_request_is_answered_at_once(
    transport: paramiko.Transport, monkeypatch: pytest.MonkeyPatch, want_reply: bool, sent: list[int]
) -> None:
    out: list[int] = []
    monkeypatch.setattr(transport, "_send_message", lambda m: out.append(m.asbytes()[0]))
    assert acknowledge_global_requests(transport)
    handlers = transport._handler_table  # type: ignore[attr-defined]
    handlers[MSG_GLOBAL_REQUEST](global_request("hostkeys-00@openssh.com", want_reply))
    assert out == sent


def test_a_paramiko_without_the_handler_table_is_left_alone(transport: paramiko.Transport) -> None:
    del transport._handler_table  # type: ignore[attr-defined]
    assert not acknowledge_global_requests(transport)
