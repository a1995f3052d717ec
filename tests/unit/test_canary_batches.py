"""The canary's credentials over a ``--serial`` rollout: read once for each batch, not once for the run
(a helper's short-lived token, ECR's 12 h or gcloud's hour, expired over a long rollout and failed every
later batch's canary pull, rolling back a correct change), and not once per host."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.engine import canary_auth, reconcile
from agent.engine.options import RunOptions
from agent.fleet import FleetOptions, batches, run_fleet
from agent.hosts.base import CommandResult, Transport
from agent.outcome import HostOutcome
from agent.trust import TrustPolicy
from tests.unit.test_canary_safety import CANARY, RecordingEngine

POLICY = TrustPolicy(registries=("registry.test",), storage_endpoint=None, storage_scheme=None)
HOSTS = ["h1", "h2", "h3"]


class EngineHost(Transport):
    """A host whose engine records each canary pull; it runs nothing else."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.engine = RecordingEngine()

    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        raise AssertionError("the host was asked to run a command")

    def run_script(self, script: str, *args: str, timeout: float | None = None) -> CommandResult:
        raise AssertionError("the host was asked to run a script")

    def docker_api(self, timeout: float = 30.0) -> Any:
        return self.engine


def canary_only(transport: Transport, policy: TrustPolicy, options: RunOptions, **_: object) -> HostOutcome:
    """A host's reconcile reduced to its credential steps: refused where they cannot be read, then its
    canary pulled with them, as after an apply."""
    refused = reconcile._credentials_refused(options)
    if refused is not None:
        return HostOutcome(transport.name, "failed", error=refused)
    assert options.canary_image is not None
    reconcile._canary(transport, options, options.canary_image, policy.registries)
    return HostOutcome(transport.name, "changed")


class TokenSource:
    """A credential helper whose token changes at every read."""

    def __init__(self) -> None:
        self.reads = 0

    def __call__(self, image: str) -> dict[str, Any]:
        self.reads += 1
        return {"username": "AWS", "password": f"token-{self.reads}", "serveraddress": "registry.test"}


def rollout(
    monkeypatch: pytest.MonkeyPatch, names: list[str], serial: str | None
) -> tuple[TokenSource, dict[str, EngineHost]]:
    """A rollout of ``names`` as the command line runs it (credentials read before any host), each
    host's pulls recorded: the token source and the hosts."""
    source = TokenSource()
    monkeypatch.setattr(canary_auth, "canary_credentials", source)
    monkeypatch.setattr(reconcile, "reconcile", canary_only)
    hosts = {name: EngineHost(name) for name in names}
    options = RunOptions(canary_image=CANARY)
    canary_auth.read_canary_credentials(options)
    result = run_fleet(names, hosts.__getitem__, POLICY, options, FleetOptions(forks=3, serial=serial))
    assert [o.status for o in result.outcomes] == ["changed"] * len(names), result.outcomes
    return source, hosts


def tokens_pulled_with(host: EngineHost) -> list[object]:
    return [kwargs["auth_config"]["password"] for kwargs in host.engine.pull_kwargs]  # type: ignore[index]


def test_one_batch_reads_the_credentials_once_for_all_its_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    source, hosts = rollout(monkeypatch, HOSTS, None)
    assert source.reads == 1, "the helper ran once, not once per host"
    assert {name: tokens_pulled_with(host) for name, host in hosts.items()} == {
        name: ["token-1"] for name in HOSTS
    }


def test_each_batch_reads_the_credentials_again_and_its_pulls_carry_the_new_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--serial 1 over three hosts: the token read for the first batch had expired by the third."""
    source, hosts = rollout(monkeypatch, HOSTS, "1")
    assert source.reads == 3
    assert {name: tokens_pulled_with(host) for name, host in hosts.items()} == {
        "h1": ["token-1"],
        "h2": ["token-2"],
        "h3": ["token-3"],
    }


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(count=st.integers(1, 6), size=st.integers(1, 6))
def test_the_credentials_are_read_once_per_batch_whatever_the_batch_size(
    monkeypatch: pytest.MonkeyPatch, count: int, size: int
) -> None:
    names = [f"h{n}" for n in range(1, count + 1)]
    source, hosts = rollout(monkeypatch, names, str(size))
    split = batches(names, str(size))
    assert source.reads == len(split)
    for number, batch in enumerate(split, start=1):
        assert all(tokens_pulled_with(hosts[name]) == [f"token-{number}"] for name in batch)


def test_a_later_batch_whose_credentials_cannot_be_read_is_refused_and_its_hosts_pull_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The helper gone by the second batch: its host is failed, untouched, with the helper's error."""
    reads: list[str] = []

    def gone_after_the_first(image: str) -> dict[str, Any]:
        reads.append(image)
        if len(reads) > 1:
            raise canary_auth.CanaryCredentialsError("docker-credential-ecr-login failed")
        return {"username": "AWS", "password": "token-1"}

    monkeypatch.setattr(canary_auth, "canary_credentials", gone_after_the_first)
    monkeypatch.setattr(reconcile, "reconcile", canary_only)
    hosts = {name: EngineHost(name) for name in HOSTS[:2]}
    result = run_fleet(
        HOSTS[:2],
        hosts.__getitem__,
        POLICY,
        RunOptions(canary_image=CANARY),
        FleetOptions(forks=2, serial="1"),
    )
    assert [(o.status, o.error) for o in result.outcomes] == [
        ("changed", None),
        ("failed", "docker-credential-ecr-login failed; nothing was changed on this host"),
    ]
    assert hosts["h2"].engine.pull_kwargs == []
