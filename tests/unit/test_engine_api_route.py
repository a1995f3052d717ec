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
from hypothesis import given
from hypothesis import strategies as st

from agent.engine import reconcile, verify
from agent.engine.gather import gather_live
from agent.engine.options import RunOptions
from agent.engine.reconcile import restore_not_taken
from agent.engine.verify import read_live_info
from agent.errors import ReloadError, VerifyError
from agent.hosts.base import CommandResult, Transport
from agent.hosts.engine_http import EngineReply, read_reply, request_bytes
from agent.hosts.local import LocalTransport
from agent.runtimes.docker_facts import STATE_FILE
from agent.trust import TrustPolicy

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
    timed_out: bool = False

    def wait(self) -> EngineReply | None:
        return self.reply


@dataclass
class ScriptedHost(Transport):
    """The gather script's output as a host would print it; the API's answers per path (None: no route).
    ``knows_files`` is what the transport can tell of the host's files without a round trip."""

    records: list[str]
    api: dict[str, EngineReply | None] | None = None
    knows_files: frozenset[str] = frozenset()
    times_out: bool = False  # a request with no reply (None) timed out: the engine took it, never answered
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
        reply = self.api.get(path)
        return Pending(reply, path, timed_out=reply is None and self.times_out)

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


def test_an_engine_that_let_the_controllers_request_time_out_is_not_asked_again_by_the_script() -> None:
    """A frozen dockerd: the controller waited out its /_ping; the script's curl waited as long again."""
    frozen = ScriptedHost(records=STATE, api={"/_ping": None}, times_out=True)
    gather_live(frozen)
    assert frozen.scripts[-1] == ("", "/etc/docker/daemon.json", "silent")
    refused = ScriptedHost(records=STATE, api={"/_ping": None})  # a route that failed: asked on the host
    gather_live(refused)
    assert refused.scripts[-1] == ("", "/etc/docker/daemon.json", "")


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


# --- the canary image ---------------------------------------------------------------------------------


class CanaryEngine:
    """An engine API holding ``held`` (reference → image ID) whose pulls fail with ``refusal``.

    A pull of a reference the registry holds as ``pulled`` (its image ID) says what dockerd 20.10 and
    26.1 said in the lab: nothing of blobs where the engine holds that image under any name (it reads
    the manifest alone), "Already exists" of each layer it holds (``layers_held``) while it fetches the
    config, which it never shows, and the download of each layer it does not hold."""

    def __init__(
        self,
        held: dict[str, str],
        refusal: str | None = None,
        *,
        pulled: str = "sha256:new",
        layers_held: bool = False,
        ids_readable: bool = True,
        digests: tuple[str, ...] = (),
    ) -> None:
        self.held = dict(held)
        self.digests = list(digests)  # RepoDigests of every image held (repo@sha256:...)
        self.refusal = refusal
        self.pulled = pulled
        self.layers_held = layers_held
        self.ids_readable = ids_readable
        self.calls: list[str] = []

    def inspect_image(self, reference: str) -> dict[str, Any]:
        self.calls.append(f"inspect {reference}")
        if reference not in self.held:
            raise docker.errors.ImageNotFound("no such image")
        image_id = self.held[reference]
        tags = [ref for ref, i in self.held.items() if i == image_id]
        return {"Id": image_id, "RepoTags": tags, "RepoDigests": self.digests}

    def images(self, all: bool = False, quiet: bool = False) -> list[str]:
        if not self.ids_readable:
            raise docker.errors.APIError("500 Server Error")
        return sorted(set(self.held.values()))

    def remove_image(self, reference: str, noprune: bool = False) -> list[dict[str, str]]:
        self.calls.append(f"remove {reference}")
        return [{"Untagged": reference}, {"Deleted": self.held.pop(reference)}]

    def pull(self, image: str, **_: object) -> Iterator[dict[str, str]]:
        self.calls.append(f"pull {image}")
        if self.refusal is not None:
            yield {"error": self.refusal}
            return
        yield {"status": "Pulling from test/busybox", "id": "1"}
        if self.pulled not in self.held.values():
            yield from self._layers()
        self.held[image] = self.pulled
        yield {"status": "Digest: sha256:50c7"}
        yield {"status": f"Status: Downloaded newer image for {image}"}

    def _layers(self) -> Iterator[dict[str, str]]:
        if self.layers_held:
            yield {"status": "Already exists", "id": "813cd19f4319"}
            return
        for status in ("Pulling fs layer", "Downloading", "Download complete", "Pull complete"):
            yield {"status": status, "id": "813cd19f4319"}


def test_a_canary_of_no_registry_of_the_policy_is_neither_removed_nor_pulled() -> None:
    """lab/busybox:1 (docker.io's, unreachable) was removed, its pull failed, and it stayed gone."""
    engine = CanaryEngine({"lab/busybox:1": "sha256:b"}, refusal="dial tcp: lookup registry-1.docker.io")
    pulled = verify.canary_pull(engine, "lab/busybox:1", ["registry.test"])
    assert engine.held == {"lab/busybox:1": "sha256:b"} and engine.calls == []
    assert (
        pulled.said
        == pulled.unproved
        == (
            "canary lab/busybox:1 not pulled: it is from docker.io, not one of the policy's registries, so "
            "its pull would prove nothing of this policy"
        )
    )


def test_a_canary_removed_for_a_pull_that_fails_is_said_to_be_gone_from_the_host() -> None:
    image = "registry.test/test/gone:1"
    engine = CanaryEngine({image: "sha256:g"}, refusal="manifest unknown")
    with pytest.raises(verify.CanaryError) as failed:
        verify.canary_pull(engine, image, ["registry.test"])
    assert engine.calls == [f"inspect {image}", f"remove {image}", f"pull {image}"]
    assert (
        failed.value.removed and failed.value.pull_error == f"canary pull of {image} failed: manifest unknown"
    )
    assert str(failed.value) == (
        f"canary pull of {image} failed: manifest unknown; {image} was removed before the pull (so that its "
        f"blobs come through the storage) and is no longer on this host: docker pull {image} once the pull works"
    )


OTHER_NAME = "registry.test/test/busybox:1"
CANARY = "registry.test:443/test/busybox:1"
POLICY_REGISTRIES = ["registry.test", "registry.test:443"]


def test_a_canary_held_under_another_name_fetches_no_blob_and_is_said_unproved() -> None:
    """The host held registry.test/test/busybox:1; the canary registry.test:443/test/busybox:1 is the
    same image: dockerd read the manifest alone, fetched nothing, and a wrong storage CA passed as
    ``verified: canary pull``, with no warning."""
    engine = CanaryEngine({OTHER_NAME: "sha256:b"}, pulled="sha256:b")
    pulled = verify.canary_pull(engine, CANARY, POLICY_REGISTRIES)
    assert engine.held == {OTHER_NAME: "sha256:b", CANARY: "sha256:b"}, "both names kept"
    assert pulled.said == (
        f"canary pull {CANARY} (on the host already, also tagged {OTHER_NAME}: no blob fetched, the storage "
        "redirect unproved)"
    )
    assert pulled.unproved == (
        f"the storage redirect is unproved: the canary pull of {CANARY} fetched no blob (the image is on the "
        f"host already, also tagged {OTHER_NAME}), so a wrong storage CA would pass it too; give a canary "
        "image the host does not hold to prove it"
    )


def test_a_canary_also_tagged_otherwise_is_left_tagged_and_its_unproved_pull_is_a_warning() -> None:
    engine = CanaryEngine({CANARY: "sha256:b", OTHER_NAME: "sha256:b"}, pulled="sha256:b")
    pulled = verify.canary_pull(engine, CANARY, POLICY_REGISTRIES)
    assert "remove" not in " ".join(engine.calls)
    assert pulled.unproved is not None and f"also tagged {OTHER_NAME}" in pulled.unproved


@pytest.mark.parametrize("layers_held", [False, True], ids=["layers fetched", "config alone fetched"])
def test_a_canary_the_host_did_not_hold_proves_the_redirect(layers_held: bool) -> None:
    """Its only tag removed, the image is gone; the pull fetches its layers, or, where another image
    holds them ("Already exists"), its config, of which the stream says nothing: either came through
    the redirect (a wrong storage CA failed the config's fetch: x509 in the lab)."""
    engine = CanaryEngine({CANARY: "sha256:b"}, pulled="sha256:b", layers_held=layers_held)
    pulled = verify.canary_pull(engine, CANARY, POLICY_REGISTRIES)
    assert engine.calls[:3] == [f"inspect {CANARY}", f"remove {CANARY}", f"pull {CANARY}"]
    assert pulled == verify.CanaryPull(f"canary pull {CANARY}", unproved=None)


def test_a_pull_showing_no_layer_is_unproved_where_the_engine_does_not_list_its_images() -> None:
    """Without the image IDs from before the pull nothing shows the config was fetched: no proof."""
    engine = CanaryEngine({}, layers_held=True, ids_readable=False)
    assert verify.canary_pull(engine, CANARY, POLICY_REGISTRIES).unproved is not None
    fetched = CanaryEngine({}, ids_readable=False)
    assert verify.canary_pull(fetched, CANARY, POLICY_REGISTRIES).unproved is None


# dockerd's statuses, as seen in the lab's pulls (20.10 and 26.1).
LAYER_FETCHED = ["Pulling fs layer", "Waiting", "Downloading", "Verifying Checksum", "Download complete"]
NOTHING_FETCHED = [
    "Pulling from test/busybox",
    "Already exists",
    "Digest: sha256:50c7",
    "Status: Image is up to date for registry.test/test/busybox:1",
    "Status: Downloaded newer image for registry.test:443/test/busybox:1",
    "Extracting",
]


@given(
    quiet=st.lists(st.sampled_from(NOTHING_FETCHED), max_size=8),
    fetched=st.sampled_from([*LAYER_FETCHED, "Pull complete"]),
    where=st.integers(min_value=0, max_value=8),
)
def test_only_a_layer_download_or_a_new_image_counts_as_a_blob_fetched(
    quiet: list[str], fetched: str, where: int
) -> None:
    assert not verify.fetched_a_blob(quiet, new_image=False)
    assert verify.fetched_a_blob(quiet, new_image=True)
    assert verify.fetched_a_blob([*quiet[:where], fetched, *quiet[where:]], new_image=False)


@dataclass
class CanaryHost(ScriptedHost):
    """A host whose engine API is ``engine``."""

    engine: CanaryEngine | None = None

    def docker_api(self, timeout: float = 30.0) -> Any:
        return self.engine


def test_an_unproved_canary_is_a_note_of_the_verify_beside_what_it_proved() -> None:
    """The host's ``warnings`` were empty and the exit 0: CI reading them saw a proven host."""
    host = CanaryHost(records=[], engine=CanaryEngine({OTHER_NAME: "sha256:b"}, pulled="sha256:b"))
    secure = {"RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"]}}
    policy = TrustPolicy(registries=tuple(POLICY_REGISTRIES), storage_endpoint=None, storage_scheme=None)
    checked = reconcile._verify(
        host,
        policy,
        None,
        (),
        RunOptions(canary_image=CANARY),
        secure,
        daemon_json_path="/etc/docker/daemon.json",
        addresses={},
    )
    assert checked.proved[0] == "live config" and "unproved" in checked.proved[1]
    assert checked.notes == (verify.canary_pull(host.engine, CANARY, POLICY_REGISTRIES).unproved,)
    assert host.scripts == [], "the live config was read from the apply's /info: no round trip"


@pytest.mark.parametrize(
    ("reference", "registry"),
    [
        ("registry.test/test/img:1", "registry.test"),
        ("registry.test:443/test/img@sha256:" + "0" * 64, "registry.test:443"),
        ("localhost/img", "localhost"),
        ("Upper/img", "Upper"),
        ("lab/busybox:1", "docker.io"),
        ("busybox", "docker.io"),
    ],
)
def test_an_images_registry_is_read_as_docker_reads_it(reference: str, registry: str) -> None:
    assert verify.image_registry(reference) == registry


# --- insecure ranges ------------------------------------------------------------------------------------


def registry_config(cidrs: list[str], listed: dict[str, Any] | None = None) -> dict[str, Any]:
    index = {"docker.io": {"Secure": True}, **(listed or {})}
    return {"RegistryConfig": {"IndexConfigs": index, "InsecureRegistryCIDRs": cidrs}}


def test_an_insecure_range_covering_the_registrys_address_is_a_breach() -> None:
    """ "insecure-registries": ["198.51.100.0/24"]: pulls worked with certs.d removed, verify said verified."""
    info = registry_config(["127.0.0.0/8", "198.51.100.0/24"])
    assert verify.names_to_resolve(info, ["registry.test", "registry.test:443"]) == ["registry.test"]
    addresses = verify.resolved_addresses(
        "@@ta host registry.test\n198.51.100.10   STREAM registry.test\n198.51.100.10   DGRAM  \n"
    )
    assert addresses == {"registry.test": ["198.51.100.10"]}
    assert list(verify.covered_registries(info, ["registry.test"], addresses).values()) == [
        "insecure-registries range 198.51.100.0/24 covers registry.test's address 198.51.100.10 as the host "
        "resolves it: dockerd does not verify registry.test's TLS"
    ]
    assert (
        list(verify.covered_registries(info, ["registry.test"], {"registry.test": ["203.0.113.5"]}).values())
        == []
    )


def test_only_a_range_beyond_the_defaults_asks_for_a_lookup_and_a_listed_name_decides_alone() -> None:
    assert verify.names_to_resolve(registry_config(["127.0.0.0/8", "::1/128"]), ["registry.test"]) == []
    listed = registry_config(["198.51.100.0/24"], {"registry.test": {"Secure": True}})
    assert verify.names_to_resolve(listed, ["registry.test"]) == []
    assert (
        list(
            verify.covered_registries(
                listed, ["registry.test"], {"registry.test": ["198.51.100.10"]}
            ).values()
        )
        == []
    )


def test_an_ip_literal_registry_is_judged_with_no_lookup_against_every_range() -> None:
    info = registry_config(["127.0.0.0/8"])
    assert verify.names_to_resolve(info, ["127.0.0.1:5000"]) == []
    assert list(verify.covered_registries(info, ["127.0.0.1:5000", "198.51.100.10:443"], {}).values()) == [
        "insecure-registries range 127.0.0.0/8 covers 127.0.0.1:5000's address 127.0.0.1: dockerd does not "
        "verify 127.0.0.1:5000's TLS"
    ]


def test_the_lookup_is_one_command_for_every_name() -> None:
    # Each name once, quoted, through the bounded lookup the command defines first.
    assert verify.resolve_command(["registry.test", "it's"]) == (
        f"{verify.AHOSTS_FUNCTION}\n"
        "echo '@@ta host registry.test'; ta_ahosts registry.test\n"
        "echo '@@ta host it'\"'\"'s'; ta_ahosts 'it'\"'\"'s'"
    )


# --- a roll-back whose reload systemd refuses ------------------------------------------------------------


def test_a_roll_back_whose_reload_failed_as_the_applys_did_does_not_say_dockerd_refused_the_restore() -> None:
    refused = "reload of dockerd failed: Job type reload is not applicable for unit docker.service."
    note = restore_not_taken("reload", ReloadError(refused), refused, "")
    assert note == (
        " (files restored; the reload failed again: dockerd was never reloaded, and runs the configuration "
        "it had before)"
    )
    assert "did not take the restore" in restore_not_taken("reload", VerifyError("live config"), refused, "")


def test_verify_looks_up_names_where_the_engine_has_only_its_defaults_and_words_loopback() -> None:
    """A name the host's /etc/hosts points at 127.0.0.1 falls in dockerd's default insecure range: the
    verify command looks it up (``loopback_too``); a rollout only where a range beyond the defaults is."""
    info = registry_config(["127.0.0.0/8", "::1/128"])
    registries = ["registry.test", "registry.test:443", "198.51.100.10:443"]
    assert verify.names_to_resolve(info, registries) == []
    assert verify.names_to_resolve(info, registries, loopback_too=True) == ["registry.test"]
    assert list(
        verify.covered_registries(info, ["registry.test"], {"registry.test": ["127.0.0.1"]}).values()
    ) == [
        "registry.test resolves to 127.0.0.1 on this host, which dockerd always treats as insecure "
        "(127.0.0.0/8): TLS is not verified"
    ]
    assert (
        list(
            verify.covered_registries(info, ["registry.test"], {"registry.test": ["198.51.100.10"]}).values()
        )
        == []
    )


def test_a_canary_also_held_by_digest_in_another_repository_is_not_removed_and_says_what_holds_it() -> None:
    """The image pulled by digest as registry.test/test/other@sha256:... was said "held by an image built
    on it": the removal only untagged the canary, and no image is built on it."""
    other = "registry.test/test/other@sha256:50c7"
    engine = CanaryEngine(
        {OTHER_NAME: "sha256:b"}, pulled="sha256:b", digests=("registry.test/test/busybox@sha256:50c7", other)
    )
    pulled = verify.canary_pull(engine, OTHER_NAME, POLICY_REGISTRIES)
    assert f"remove {OTHER_NAME}" not in engine.calls, engine.calls
    assert pulled.said == (
        f"canary pull {OTHER_NAME} (on the host already, also held as {other}: no blob fetched, the storage "
        "redirect unproved)"
    )
    assert pulled.unproved is not None and f"also held as {other}" in pulled.unproved
