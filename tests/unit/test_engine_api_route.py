"""The engine's API read by the controller itself (no curl on the host): the HTTP exchange, and how the
gather and the verify use it and fall back to reading the API on the host."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import requests

from agent.engine import verify
from agent.engine.gather import gather_live
from agent.engine.verify import read_live_info
from agent.errors import VerifyError
from agent.hosts.base import CommandResult, Transport
from agent.hosts.engine_http import EngineReply, read_reply, request_bytes
from agent.hosts.local import LocalTransport
from agent.runtimes.docker_facts import STATE_FILE

SERVER = "Docker/26.1.5 (linux)"
INFO = {"ServerVersion": "26.1.5", "RegistryConfig": {"IndexConfigs": {"r.test": {"Secure": False}}}}


# --- the HTTP exchange ---------------------------------------------------------------------------


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, engine = socket.socketpair()
    ours.settimeout(5)
    yield ours, engine
    ours.close()
    engine.close()


def answer(engine: socket.socket, *responses: bytes) -> threading.Thread:
    """The engine's side: read one request per response, then send that response."""

    def serve() -> None:
        for response in responses:
            got = b""
            while b"\r\n\r\n" not in got:
                got += engine.recv(4096)
            engine.sendall(response)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_a_request_is_one_get_kept_alive_and_odd_paths_are_refused() -> None:
    assert request_bytes("/_ping").startswith(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n")
    assert request_bytes("/info").endswith(b"\r\n\r\n")
    for bad in ("info", "/a b", "/x\r\nHost: evil"):
        with pytest.raises(ValueError):
            request_bytes(bad)


def test_answers_with_a_length_and_chunked_are_read_in_turn_on_one_connection(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, engine = pair
    body = json.dumps(INFO).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    answer(
        engine,
        b"HTTP/1.1 200 OK\r\nServer: Docker/20.10.24+dfsg1 (linux)\r\nContent-Length: 2\r\n\r\nOK",
        b"HTTP/1.1 200 OK\r\nServer: "
        + SERVER.encode()
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked,
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops",
    )
    ours.sendall(request_bytes("/_ping"))
    ping, closing = read_reply(ours)
    assert (ping.status, ping.body, ping.version, closing) == (200, b"OK", "20.10.24+dfsg1", False)
    ours.sendall(request_bytes("/info"))
    info, closing = read_reply(ours)
    assert json.loads(info.body) == INFO and info.version == "26.1.5" and not closing
    ours.sendall(request_bytes("/info"))
    failed, closing = read_reply(ours)
    assert (failed.ok, failed.body, closing) == (False, b"oops", True)


@pytest.mark.parametrize(
    ("server", "version"),
    [
        ("Docker/26.1.5 (linux)", "26.1.5"),
        ("Docker/20.10.24+dfsg1 (linux)", "20.10.24+dfsg1"),
        ("Podman/4.3", None),
        ("", None),
    ],
)
def test_the_version_comes_from_the_server_header(server: str, version: str | None) -> None:
    assert EngineReply(200, server, b"OK").version == version


# --- the gather and the verify on a scripted host -------------------------------------------------


@dataclass
class Pending:
    reply: EngineReply | None
    path: str

    def wait(self) -> EngineReply | None:
        return self.reply


@dataclass
class ScriptedHost(Transport):
    """The gather script's output as a host would print it; the API's answers per path (None: no route).
    ``knows_files`` is what the transport can tell of the host's files without a round trip."""

    records: list[str]
    api: dict[str, EngineReply | None] | None = None
    knows_files: frozenset[str] = frozenset()
    name: str = "h1"
    scripts: list[tuple[str, ...]] = field(default_factory=list)
    nonces: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        raise AssertionError("every step here is a script")

    def run_script(self, script: str, *args: str, timeout: float | None = None) -> CommandResult:
        self.scripts.append(args[:3])
        nonce = args[3] if len(args) > 3 else ""  # the gather's; verify's poll has none
        self.nonces.extend([nonce] if nonce else [])
        unit = [
            f"@@ta unit-text {nonce}",
            "# /lib/systemd/system/docker.service",
            "ExecStart=/usr/bin/dockerd",
        ]
        unit.append(f"@@ta unit-end {nonce}")
        if "api" in args:
            lines = [
                "@@ta begin 1",
                *self.records,
                "@@ta api",
                "@@ta init systemd",
                *unit,
                "@@ta active active",
            ]
        else:  # the classic gather: the host reads the API with curl
            lines = [
                "@@ta begin 1",
                *self.records,
                "@@ta engine-version 20.10.24",
                "@@ta init systemd",
                *unit,
            ]
            lines.append("@@ta active active")
        return CommandResult(0, ("\n".join([*lines, "@@ta end"]) + "\n").encode(), b"")

    def engine_request(
        self, path: str, timeout: float, *, where_file: tuple[str, str] | None = None
    ) -> Pending | None:
        if self.api is None:
            return None
        if where_file is not None and where_file[0] in self.knows_files:
            path = where_file[1]
        self.requests.append(path)
        return Pending(self.api.get(path), path)

    def docker_api(self, timeout: float = 30.0) -> Any:
        raise AssertionError("no SDK here")


PING = EngineReply(200, SERVER, b"OK")
INFO_REPLY = EngineReply(200, SERVER, json.dumps(INFO).encode())
STATE = ["@@ta state", "e30="]  # base64 of "{}"


def test_a_host_without_state_gets_its_version_from_ping_alone() -> None:
    host = ScriptedHost(records=[], api={"/_ping": PING})
    facts, info = gather_live(host)
    assert host.requests == ["/_ping"] and host.scripts == [("", "/etc/docker/daemon.json", "api")]
    assert facts.engine_version == "26.1.5" and facts.has_validate is True and facts.engine_api
    assert info is None


def test_a_host_with_state_is_asked_for_info_which_gives_version_and_live_config() -> None:
    host = ScriptedHost(records=STATE, api={"/_ping": PING, "/info": INFO_REPLY})
    facts, info = gather_live(host)
    assert host.requests == ["/_ping", "/info"]
    assert info == INFO and facts.engine_version == "26.1.5" and facts.engine_api


def test_a_host_known_to_have_state_is_asked_for_info_first_and_alone() -> None:
    host = ScriptedHost(records=STATE, api={"/info": INFO_REPLY}, knows_files=frozenset({STATE_FILE}))
    facts, info = gather_live(host)
    assert host.requests == ["/info"], "no /_ping, no second round trip"
    assert info == INFO and facts.engine_version == "26.1.5" and facts.engine_api


def test_info_asked_first_where_the_state_file_went_since_still_gives_the_version() -> None:
    host = ScriptedHost(records=[], api={"/info": INFO_REPLY}, knows_files=frozenset({STATE_FILE}))
    facts, info = gather_live(host)
    assert host.requests == ["/info"] and info is None  # a host to be written to: the apply reads it anew
    assert facts.engine_version == "26.1.5" and facts.engine_api


@pytest.mark.parametrize(
    "api",
    [
        {"/_ping": None},  # the route failed after the request went out
        {"/_ping": EngineReply(500, SERVER, b"")},
        {"/_ping": EngineReply(200, "Podman/4.3", b"OK")},  # no version to be had this way
        {"/_ping": PING, "/info": None},
        {"/_ping": PING, "/info": EngineReply(200, SERVER, b"{not json")},
    ],
)
def test_an_engine_that_does_not_answer_over_the_route_is_gathered_the_classic_way(
    api: dict[str, EngineReply | None],
) -> None:
    host = ScriptedHost(records=STATE, api=api)
    facts, _ = gather_live(host)
    assert host.scripts[-1] == ("", "/etc/docker/daemon.json", "")  # again, without "api"
    assert facts.engine_version == "20.10.24" and not facts.engine_api
    assert facts.flags_source == "/lib/systemd/system/docker.service"  # the unit's text, framed by the nonce
    assert all(len(n) == 16 and int(n, 16) >= 0 for n in host.nonces) and len(set(host.nonces)) == len(
        host.nonces
    )


@pytest.mark.parametrize(
    "reply", [None, EngineReply(500, SERVER, b""), EngineReply(200, SERVER, b"{not json")]
)
def test_info_asked_first_and_not_answered_is_gathered_the_classic_way(reply: EngineReply | None) -> None:
    host = ScriptedHost(records=STATE, api={"/info": reply}, knows_files=frozenset({STATE_FILE}))
    facts, _ = gather_live(host)
    assert host.requests == ["/info"] and host.scripts[-1] == ("", "/etc/docker/daemon.json", "")
    assert facts.engine_version == "20.10.24" and not facts.engine_api


def test_without_a_route_the_classic_gather_runs_once() -> None:
    host = ScriptedHost(records=STATE, api=None)
    facts, _ = gather_live(host)
    assert host.scripts == [("", "/etc/docker/daemon.json", "")] and not facts.engine_api


def test_a_tree_is_never_asked_for_an_engine() -> None:
    host = ScriptedHost(records=[], api={"/_ping": PING})
    gather_live(host, root="/srv/image")
    assert host.requests == []


def test_verify_reads_info_over_the_route_and_on_the_host_when_it_fails() -> None:
    host = ScriptedHost(records=[], api={"/info": INFO_REPLY})
    assert read_live_info(host) == INFO and host.scripts == []
    failing = ScriptedHost(records=[], api={"/info": EngineReply(502, SERVER, b"")})
    with pytest.raises(VerifyError):  # the host's own answer has no info-json record either
        read_live_info(failing)
    assert len(failing.scripts) == 1


def test_the_local_transport_asks_the_other_path_where_the_file_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[bytes] = []
    monkeypatch.setattr("agent.hosts.local.engine_asleep_here", lambda: False)
    monkeypatch.setattr("socket.socket.connect", lambda self, address: None)
    monkeypatch.setattr("socket.socket.sendall", lambda self, data: sent.append(data))
    present = tmp_path / "docker-state.json"
    present.write_text("{}")
    local = LocalTransport()
    there = local.engine_request("/_ping", 1, where_file=(str(present), "/info"))
    missing = local.engine_request("/_ping", 1, where_file=(str(tmp_path / "absent.json"), "/info"))
    assert there is not None and there.path == "/info"
    assert missing is not None and missing.path == "/_ping"
    assert [request.split(b" ")[1] for request in sent] == [b"/info", b"/_ping"]


def test_a_failed_canary_pull_is_told_in_the_engines_words_without_the_sdks_url() -> None:
    """The SDK's text named its own http+docker:// URL, which no one can use."""
    response = requests.Response()
    response.status_code = 404
    response.url = "http+docker://localhost/v1.41/images/create?tag=1&fromImage=registry.test%2Fnope"
    error = docker.errors.APIError(
        "404 Client Error", response, explanation="manifest for registry.test/nope:1 not found"
    )

    class Refusing:
        def pull(self, image: str, **_: object) -> None:
            raise error

    with pytest.raises(VerifyError) as failed:
        verify._pull(Refusing(), "registry.test/nope:1")
    assert str(failed.value) == (
        "canary pull of registry.test/nope:1 failed: 404: manifest for registry.test/nope:1 not found"
    )
