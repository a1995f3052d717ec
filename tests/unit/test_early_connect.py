"""Connections opened while the run gets ready: handed over once, errors kept, unused ones closed."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent.early_connect import EarlyConnections
from agent.engine.options import RunOptions
from agent.errors import UnreachableError
from agent.fleet import FleetOptions, run_fleet
from agent.hosts.base import Transport
from agent.hosts.local import LocalTransport
from agent.trust import TrustPolicy

POLICY = TrustPolicy(registries=("registry.test",), storage_endpoint=None, storage_scheme=None, insecure=True)


class Remote(LocalTransport):
    """A local tree behind a connect step that can be held, fail, and counts what it is asked."""

    def __init__(self, name: str, gate: threading.Event | None = None, fails: bool = False) -> None:
        super().__init__(name)
        self.gate, self.fails = gate, fails
        self.connects = 0
        self.closed = 0

    def connect(self) -> None:
        self.connects += 1
        if self.gate is not None:
            assert self.gate.wait(5)
        if self.fails:
            raise UnreachableError(f"{self.name}: connection refused")

    def close(self) -> None:
        self.closed += 1


def test_a_taken_connection_is_the_one_started_and_its_step_waits_for_the_handshake() -> None:
    gate = threading.Event()
    made: dict[str, Remote] = {}

    def opener(name: str) -> Transport:
        made[name] = Remote(name, gate)
        return made[name]

    early = EarlyConnections.start(["h1"], opener)
    taken = early.take("h1")
    assert taken is not None and taken[0] is made["h1"]
    waited = threading.Thread(target=taken[1])
    waited.start()
    waited.join(0.2)
    assert waited.is_alive(), "the step waits while the handshake runs"
    gate.set()
    waited.join(5)
    assert not waited.is_alive()
    assert early.take("h1") is None, "handed over once"


def test_a_failed_handshake_is_raised_by_the_hosts_step_and_not_tried_again() -> None:
    made: dict[str, Remote] = {}

    def opener(name: str) -> Transport:
        made[name] = Remote(name, fails=True)
        return made[name]

    early = EarlyConnections.start(["h1"], opener)
    taken = early.take("h1")
    assert taken is not None
    with pytest.raises(UnreachableError, match="h1: connection refused"):
        taken[1]()
    assert made["h1"].connects == 1


def test_unused_connections_are_closed_even_those_still_opening() -> None:
    gate = threading.Event()
    made: dict[str, Remote] = {}

    def opener(name: str) -> Transport:
        made[name] = Remote(name, gate if name == "slow" else None)
        return made[name]

    early = EarlyConnections.start(["quick", "slow"], opener)
    while made["quick"].connects == 0:  # started; its thread finishes at once
        threading.Event().wait(0.01)
    early.close()
    gate.set()
    for _ in range(500):
        if made["quick"].closed and made["slow"].closed:
            break
        threading.Event().wait(0.01)
    assert made["quick"].closed == 1 and made["slow"].closed == 1


def test_only_the_first_hosts_start_and_local_or_unmakeable_ones_are_left_to_the_fleet() -> None:
    asked: list[str] = []

    def opener(name: str) -> Transport:
        asked.append(name)
        if name == "broken":
            raise UnreachableError("broken: no such host")
        return LocalTransport(name) if name == "local" else Remote(name)

    early = EarlyConnections.start(["a", "local", "broken", "b", "c"], opener, at_most=4)
    assert asked == ["a", "local", "broken", "b"]
    assert early.take("a") is not None and early.take("b") is not None
    assert early.take("local") is None and early.take("broken") is None and early.take("c") is None


def test_the_fleet_takes_early_connections_and_opens_the_rest_itself(tmp_path: Path) -> None:
    opened: list[str] = []
    root = tmp_path / "tree"  # every host acts on this one tree, never on this machine
    (root / "etc/docker").mkdir(parents=True)

    def opener(name: str) -> Transport:
        opened.append(name)
        return Remote(name, fails=name == "down")

    early = EarlyConnections.start(["up", "down"], opener)
    assert opened == ["up", "down"]
    result = run_fleet(
        ["up", "down", "late"], opener, POLICY, RunOptions(root=str(root)), FleetOptions(forks=1), early=early
    )
    assert opened == ["up", "down", "late"], "only the host that was not started early is opened"
    assert {o.host: o.status for o in result.outcomes} == {
        "up": "changed",
        "down": "unreachable",
        "late": "unchanged",  # the tree "up" converged
    }
