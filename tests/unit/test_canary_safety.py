"""The canary pull's safety: its credentials read once, before any host, from this machine's Docker
config and given to every pull; a pull dockerd made without verifying TLS claims no proof; a connection
lost during the pull said in words."""

from __future__ import annotations

import base64
import http.client
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import urllib3
from hypothesis import given
from hypothesis import strategies as st

from agent.engine import canary_auth, reconcile, verify
from agent.engine.options import RunOptions
from agent.errors import VerifyError
from agent.hosts.base import CommandResult, Transport
from agent.trust import TrustPolicy
from tests.unit.test_engine_api_route import CanaryEngine, CanaryHost

CANARY = "registry.test/test/busybox:1"
CONFIG = "/home/ci/.docker/config.json"


# --- the credentials, read from the config ---------------------------------------------------------


def test_a_credential_helper_that_is_not_installed_is_refused_with_the_file_the_helper_and_the_fix() -> None:
    """{"credsStore": "desktop"} under sudo or CI: every host's canary failed "Credentials store error"
    and every host was rolled back from a correct change."""
    with pytest.raises(canary_auth.CanaryCredentialsError) as refused:
        canary_auth.credentials_in({"credsStore": "ta-missing-helper"}, CONFIG, "registry.test")
    assert str(refused.value) == (
        f"the canary pull's credentials for registry.test could not be read: {CONFIG} names the credential "
        'helper docker-credential-ta-missing-helper ("credsStore"), which failed: '
        "docker-credential-ta-missing-helper not installed or not available in PATH; install the helper, "
        "or log in with `docker login registry.test` under a DOCKER_CONFIG= directory whose config.json "
        "names no helper (an empty directory: anonymous pulls)"
    )
    assert refused.value.exit_code == 2, "refused as an input: nothing touched"


def test_a_helper_named_for_the_registry_alone_is_said_as_a_cred_helper() -> None:
    with pytest.raises(canary_auth.CanaryCredentialsError, match=r'ta-gone \("credHelpers"\)'):
        canary_auth.credentials_in({"credHelpers": {"registry.test": "ta-gone"}}, CONFIG, "registry.test")


def test_a_store_shared_with_another_registrys_cred_helper_is_said_as_the_store() -> None:
    """The helper is the canary registry's by credsStore; another registry's credHelpers entry naming
    the same program sent the person to the wrong key."""
    doc = {"credsStore": "ta-gone", "credHelpers": {"other.test": "ta-gone"}}
    with pytest.raises(canary_auth.CanaryCredentialsError, match=r'ta-gone \("credsStore"\)'):
        canary_auth.credentials_in(doc, CONFIG, "registry.test")


@pytest.mark.parametrize(
    "doc",
    [
        {"auths": "x"},
        {"auths": ["x"]},
        {"credHelpers": ["x"]},
        {"credsStore": 5},
        {"auths": {"registry.test": {"auth": "!!!"}}},
        {"auths": {"registry.test": "x"}},
    ],
    ids=["auths-text", "auths-list", "helpers-list", "store-number", "auth-not-base64", "entry-text"],
)
def test_a_config_the_sdk_cannot_use_is_refused_in_words_not_a_traceback(doc: dict[str, Any]) -> None:
    """The SDK raised AttributeError, TypeError or ValueError: a traceback, exit 1, no report."""
    with pytest.raises(canary_auth.CanaryCredentialsError) as refused:
        canary_auth.credentials_in(doc, CONFIG, "registry.test")
    assert "could not be read" in str(refused.value) and CONFIG in str(refused.value)


@pytest.mark.parametrize(
    ("answer", "says"), [("notjson", "Expecting value"), ('{"Secret": "s"}', "KeyError: 'Username'")]
)
def test_a_helper_whose_answer_is_no_credential_is_refused_naming_it(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, answer: str, says: str
) -> None:
    helper = tmp_path / "docker-credential-ta-odd"
    helper.write_text(f"#!/bin/sh\ncat >/dev/null\necho '{answer}'\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with pytest.raises(canary_auth.CanaryCredentialsError) as refused:
        canary_auth.credentials_in({"credsStore": "ta-odd"}, CONFIG, "registry.test")
    assert 'docker-credential-ta-odd ("credsStore"), which failed: ' + says in str(refused.value)


def test_a_config_that_is_not_json_is_refused_with_its_path(tmp_path: Any) -> None:
    broken = tmp_path / "config.json"
    broken.write_text('{"auths": {')
    with pytest.raises(canary_auth.CanaryCredentialsError) as refused:
        canary_auth.read_docker_config(str(broken))
    assert str(refused.value).startswith(
        f"the canary pull's registry credentials could not be read: {broken}: "
    )
    assert "DOCKER_CONFIG=" in str(refused.value)


@given(
    user=st.text(st.characters(codec="ascii", exclude_characters=":"), min_size=1, max_size=12),
    password=st.text(st.characters(codec="ascii"), max_size=12),
)
def test_credentials_the_config_holds_are_given_as_the_sdk_found_them(user: str, password: str) -> None:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    doc = {"auths": {"registry.test": {"auth": token}}, "credsStore": ""}
    found = canary_auth.credentials_in(doc, CONFIG, "registry.test")
    assert (found["username"], found["password"]) == (user, password)
    assert doc["auths"] == {"registry.test": {"auth": token}}, "the document read is left as it was"


def test_a_registry_the_config_holds_nothing_for_is_pulled_anonymously() -> None:
    assert canary_auth.credentials_in({"auths": {"other.test": {}}}, CONFIG, "registry.test") == {}
    assert canary_auth.credentials_in({}, CONFIG, "registry.test") == {}


def test_docker_config_points_at_its_own_directory_only(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the docker CLI reads it: a DOCKER_CONFIG without config.json means none, not ~/.docker's."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert canary_auth.docker_config_file() is None
    (tmp_path / "config.json").write_text("{}")
    assert canary_auth.docker_config_file() == str(tmp_path / "config.json")


# --- given to every pull ------------------------------------------------------------------------------


class RecordingEngine(CanaryEngine):
    """A canary engine that keeps the keyword arguments of each pull."""

    def __init__(self) -> None:
        super().__init__({})
        self.pull_kwargs: list[dict[str, object]] = []

    def pull(self, image: str, **kwargs: object) -> Iterator[dict[str, str]]:
        self.pull_kwargs.append(kwargs)
        return super().pull(image, **kwargs)


@pytest.mark.parametrize(
    "auth", [{}, {"username": "ci", "password": "s3cret", "serveraddress": "registry.test"}]
)
def test_every_pull_is_given_the_credentials_so_the_sdk_looks_nothing_up(auth: dict[str, str]) -> None:
    """Without auth_config the SDK read the controller's config and ran its helper for every host."""
    engine = RecordingEngine()
    verify.canary_pull(engine, CANARY, ["registry.test"], auth)
    assert [k.get("auth_config") for k in engine.pull_kwargs] == [auth]


def test_the_credentials_are_read_once_for_a_run_however_many_hosts_ask_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[str] = []

    def read(image: str) -> dict[str, Any]:
        reads.append(image)
        return {"username": "ci", "password": "p"}

    monkeypatch.setattr(canary_auth, "canary_credentials", read)
    run, next_run = RunOptions(canary_image=CANARY), RunOptions(canary_image=CANARY)
    got: list[dict[str, Any]] = []
    hosts = [
        threading.Thread(target=lambda: got.append(canary_auth.RUN_CREDENTIALS.of(run.backup_stamp, CANARY)))
        for _ in range(8)
    ]
    for host in hosts:
        host.start()
    for host in hosts:
        host.join(timeout=10)
    assert reads == [CANARY] and got == [{"username": "ci", "password": "p"}] * 8
    canary_auth.RUN_CREDENTIALS.of(next_run.backup_stamp, CANARY)
    assert reads == [CANARY, CANARY], "a new run (a daemon's next cycle) reads them again"


class Untouchable(Transport):
    """A host nothing may be asked of."""

    name = "h1"

    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        raise AssertionError("the host was asked to run a command")

    def run_script(self, script: str, *args: str, timeout: float | None = None) -> CommandResult:
        raise AssertionError("the host was asked to run a script")

    def docker_api(self, timeout: float = 30.0) -> Any:
        raise AssertionError("the host's engine was asked")


def test_a_run_whose_credentials_cannot_be_read_leaves_every_host_untouched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    def refuse(image: str) -> dict[str, Any]:
        calls.append(image)
        raise canary_auth.CanaryCredentialsError(
            "the canary pull's credentials for registry.test could not be read"
        )

    def connect() -> None:
        raise AssertionError("the host was connected to")

    monkeypatch.setattr(canary_auth, "canary_credentials", refuse)
    options = RunOptions(canary_image=CANARY)
    policy = TrustPolicy(registries=("registry.test",), storage_endpoint=None, storage_scheme=None)
    outcomes = [reconcile.reconcile(Untouchable(), policy, options, connect=connect) for _ in range(3)]
    assert calls == [CANARY], "read once, not once per host"
    assert {(o.status, o.error) for o in outcomes} == {
        (
            "failed",
            "the canary pull's credentials for registry.test could not be read; nothing was changed on this host",
        )
    }
    assert all(o.phases == () for o in outcomes)


# --- a pull dockerd made without verifying TLS -----------------------------------------------------------


INSECURE_BY_NAME = {"RegistryConfig": {"IndexConfigs": {"registry.test": {"Secure": False}}}}
SECURE = {
    "RegistryConfig": {"IndexConfigs": {"registry.test": {"Secure": True}}, "InsecureRegistryCIDRs": []}
}


def test_a_registry_the_live_config_lists_insecure_or_a_range_covers_makes_the_canary_prove_nothing() -> None:
    assert verify.tls_unchecked(CANARY, SECURE, {}) is None
    assert verify.tls_unchecked(CANARY, INSECURE_BY_NAME, {}) == (
        "the running dockerd has registry.test in insecure-registries: it does not verify its TLS"
    )
    covered = {"registry.test": "insecure-registries range 198.51.100.0/24 covers registry.test's address"}
    assert verify.tls_unchecked(CANARY, SECURE, covered) == covered["registry.test"]
    assert verify.tls_unchecked(CANARY, None, {}) is None


def verified_with(
    info: dict[str, Any], daemon_json: bytes, *, insecure_policy: bool = False
) -> reconcile._Verified:
    """The verify after a change, the canary fetching blobs, on an engine running ``info``."""
    host = CanaryHost(records=[], engine=CanaryEngine({}))
    policy = TrustPolicy(
        registries=("registry.test",), storage_endpoint=None, storage_scheme=None, insecure=insecure_policy
    )
    return reconcile._verify(
        host,
        policy,
        daemon_json,
        (),
        RunOptions(canary_image=CANARY),
        info,
        daemon_json_path="/etc/docker/daemon.json",
        addresses={},
    )


def test_a_canary_pull_through_a_persons_insecure_entry_is_unproved_where_the_policy_verifies_tls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The tester's repro: daemon.json lists registry.test as insecure, a wrong storage CA, and the
    rollout said ``verified: ..., canary pull`` with exit 0."""
    monkeypatch.setattr(canary_auth, "canary_credentials", lambda image: {})
    checked = verified_with(INSECURE_BY_NAME, b'{"insecure-registries": ["registry.test"]}')
    assert checked.proved == (
        "live config",
        f"canary pull {CANARY} (TLS not verified: the CA files unproved)",
    )
    assert checked.notes == (
        f"the CA files are unproved: the canary pull of {CANARY} went through without TLS verification (the "
        "running dockerd has registry.test in insecure-registries: it does not verify its TLS), so a wrong "
        "storage CA would pass it too; remove that insecure-registries entry to have dockerd verify, and "
        "prove, them",
    )
    # A policy that skips TLS checks itself proves no CA either way: its canary is said as before.
    skip = verified_with(
        INSECURE_BY_NAME, b'{"insecure-registries": ["registry.test"]}', insecure_policy=True
    )
    assert skip.proved == ("live config", f"canary pull {CANARY}") and skip.notes == ()


def test_a_canary_pull_through_an_insecure_range_covering_the_registry_is_unproved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(canary_auth, "canary_credentials", lambda image: {})
    info = {"RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["198.51.100.0/24"]}}
    host = CanaryHost(records=[], engine=CanaryEngine({}))
    policy = TrustPolicy(registries=("registry.test",), storage_endpoint=None, storage_scheme=None)
    checked = reconcile._verify(
        host,
        policy,
        b'{"insecure-registries": ["198.51.100.0/24"]}',
        (),
        RunOptions(canary_image=CANARY),
        info,
        daemon_json_path="/etc/docker/daemon.json",
        addresses={"registry.test": ["198.51.100.10"]},
    )
    assert checked.proved[1] == f"canary pull {CANARY} (TLS not verified: the CA files unproved)"
    assert "insecure-registries range 198.51.100.0/24 covers registry.test's address" in checked.notes[0]
    assert checked.breaches and checked.breaches[0] in checked.notes[0]


# --- a connection lost during the pull ---------------------------------------------------------------------

LOST = "the connection to the engine was lost during the canary pull"


def aborted() -> Exception:
    cause = http.client.RemoteDisconnected("Remote end closed connection without response")
    return requests.exceptions.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.", cause))


def broken_stream() -> Exception:
    return requests.exceptions.ChunkedEncodingError(
        urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead(0 bytes read)")
    )


@pytest.mark.parametrize("error", [aborted, broken_stream], ids=["before the reply", "during the stream"])
def test_a_connection_lost_during_the_pull_is_said_in_words(error: Any) -> None:
    class Dropping:
        def pull(self, image: str, **_: object) -> Iterator[dict[str, str]]:
            yield {"status": "Pulling from test/busybox"}
            raise error()

    with pytest.raises(VerifyError) as failed:
        verify._pull(Dropping(), CANARY)
    assert str(failed.value) == (
        f"canary pull of {CANARY} failed: {LOST} (the SSH session or dockerd closed it before the pull ended)"
    )


def test_a_slow_engine_is_not_said_to_have_dropped_the_connection() -> None:
    assert not verify.connection_lost(requests.exceptions.ReadTimeout("read timed out"))
    assert not verify.connection_lost(requests.exceptions.ConnectTimeout("connect timed out"))
    assert verify.connection_lost(aborted())
