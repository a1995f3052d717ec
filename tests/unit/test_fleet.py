"""The fleet runner: batches, the failure budget, and one host's failure never stopping the others."""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.engine.gather import GATHER_SCRIPT
from agent.engine.options import RunOptions
from agent.errors import CommandTimeout, UnreachableError, UsageError
from agent.fleet import (
    INTERRUPTED,
    LEFT,
    FleetOptions,
    Readiness,
    batch_stop,
    batches,
    interrupted_early,
    run_fleet,
    unless_left,
)
from agent.host_pool import EarlyInterrupts
from agent.hosts.base import CommandResult, Transport
from agent.hosts.local import LocalTransport
from agent.trust import TrustPolicy
from tests.unit.held_source import WAIT

POLICY = TrustPolicy(registries=("registry.test",), storage_endpoint=None, storage_scheme=None, insecure=True)


@given(st.lists(st.text(min_size=1, max_size=3), unique=True, max_size=30), st.integers(1, 40))
def test_batches_cover_every_host_once_in_order(names: list[str], size: int) -> None:
    split = batches(names, str(size))
    assert [n for batch in split for n in batch] == names
    assert all(0 < len(b) <= size for b in split)


def test_percentages_round_down_but_never_to_zero() -> None:
    assert [len(b) for b in batches(list("abcde"), "40%")] == [2, 2, 1]
    assert [len(b) for b in batches(list("abc"), "10%")] == [1, 1, 1]
    assert batches(list("abc"), None) == [list("abc")]


@pytest.mark.parametrize("serial", ["0", "-1", "0%", "150%", "x", "1.5"])
def test_bad_serial_is_a_usage_error(serial: str) -> None:
    with pytest.raises(UsageError):
        batches(["a"], serial)


class Unreachable(LocalTransport):
    def connect(self) -> None:
        raise UnreachableError(f"{self.name}: connection refused")


def trees(tmp_path: Path, names: list[str]) -> dict[str, Path]:
    roots = {}
    for name in names:
        root = tmp_path / name
        (root / "etc/docker").mkdir(parents=True)
        (root / "etc/docker/daemon.json").write_text('{"debug": true}\n')
        roots[name] = root
    return roots


def test_failure_budget_stops_further_batches_and_says_so(tmp_path: Path) -> None:
    names = ["bad1", "bad2", "ok1", "ok2", "ok3", "ok4"]
    roots = trees(tmp_path, names)

    def opener(name: str) -> Transport:
        return Unreachable(name) if name.startswith("bad") else LocalTransport(name)

    # Each host has its own tree: run them through --root by giving each its own options is not possible
    # in one run, so the healthy hosts share one root; the lock serialises them safely.
    options = RunOptions(root=str(roots["ok1"]))
    result = run_fleet(
        names, opener, POLICY, options, FleetOptions(forks=2, serial="2", max_fail_percentage=40)
    )
    statuses = [o.status for o in result.outcomes]
    assert statuses == ["unreachable", "unreachable", "skipped", "skipped", "skipped", "skipped"]
    assert result.stopped is not None and "max-fail-percentage 40" in result.stopped
    assert len(result.failed) == 2 and result.succeeded == ()


def test_without_a_budget_every_batch_runs_while_some_host_of_each_succeeds(tmp_path: Path) -> None:
    names = ["bad1", "ok1", "ok2"]
    roots = trees(tmp_path, names)

    def opener(name: str) -> Transport:
        return Unreachable(name) if name.startswith("bad") else LocalTransport(name)

    result = run_fleet(
        names, opener, POLICY, RunOptions(root=str(roots["ok1"])), FleetOptions(forks=1, serial="2")
    )
    assert result.outcomes[0].status == "unreachable"
    assert all(o.status in ("changed", "unchanged") for o in result.outcomes[1:])
    assert result.stopped is None


@pytest.mark.parametrize("limit", [None, 100.0])
def test_a_batch_whose_every_host_failed_starts_no_further_batch_whatever_the_budget(
    tmp_path: Path, limit: float | None
) -> None:
    """Ansible's ``serial`` ends the play once every host of a batch failed; the rollout went on and
    changed the later batches' hosts."""
    names = ["bad1", "ok1", "ok2"]
    roots = trees(tmp_path, names)
    opened: list[str] = []

    def opener(name: str) -> Transport:
        opened.append(name)
        return Unreachable(name) if name.startswith("bad") else LocalTransport(name)

    result = run_fleet(
        names,
        opener,
        POLICY,
        RunOptions(root=str(roots["ok1"])),
        FleetOptions(forks=1, serial="1", max_fail_percentage=limit),
    )
    assert [(o.status, o.error) for o in result.outcomes] == [
        ("unreachable", "bad1: connection refused"),
        ("skipped", "not started: every host of batch 1 failed"),
        ("skipped", "not started: every host of batch 1 failed"),
    ]
    assert result.stopped == "batch 1 of 3: every host failed (1 of 1); no further batches started"
    assert opened == ["bad1"]
    assert (roots["ok1"] / "etc/docker/daemon.json").read_text() == '{"debug": true}\n'


def test_a_last_batch_whose_every_host_failed_stops_nothing(tmp_path: Path) -> None:
    names = ["ok1", "bad1"]
    roots = trees(tmp_path, names)

    def opener(name: str) -> Transport:
        return Unreachable(name) if name.startswith("bad") else LocalTransport(name)

    result = run_fleet(
        names, opener, POLICY, RunOptions(root=str(roots["ok1"])), FleetOptions(forks=1, serial="1")
    )
    assert [o.status for o in result.outcomes] == ["changed", "unreachable"]
    assert result.stopped is None


@given(
    st.integers(1, 50).flatmap(lambda size: st.tuples(st.just(size), st.integers(0, size))),
    st.none() | st.floats(0, 100),
)
def test_a_batch_stops_the_run_exactly_when_it_exceeds_the_budget_or_every_host_failed(
    sized: tuple[int, int], limit: float | None
) -> None:
    size, failed = sized
    stop = batch_stop(2, 5, failed, size, FleetOptions(max_fail_percentage=limit))
    over_budget = limit is not None and failed * 100 / size > limit
    assert (stop is not None) == (over_budget or failed == size)
    if stop is not None:
        stopped, not_started = stop
        assert stopped.startswith("batch 2 of 5: ") and stopped.endswith("; no further batches started")
        assert not_started.startswith("not started: ")
        assert ("--max-fail-percentage" in stopped) == over_budget


class TimesOutApplying(LocalTransport):
    """The apply script runs (and writes), then the command times out before it ends."""

    def run_script(self, script: str, *args: str, timeout: float | None = None) -> CommandResult:
        result = super().run_script(script, *args, timeout=timeout)
        if "stamp written" in script:  # the apply script, not the gather
            raise CommandTimeout(f"{self.name}: command timed out after 5s", stdout=b"")
        return result


def test_a_timeout_during_the_apply_does_not_say_the_host_is_untouched(tmp_path: Path) -> None:
    """It reported "failed" with the timeout alone, which reads as nothing changed; the script had
    written daemon.json and reloaded."""
    root = trees(tmp_path, ["h1"])["h1"]
    result = run_fleet(["h1"], TimesOutApplying, POLICY, RunOptions(root=str(root)), FleetOptions(forks=1))
    (outcome,) = result.outcomes
    assert outcome.status == "failed"
    assert outcome.error == (
        "h1: command timed out after 5s during the apply: the host may have been changed part way; "
        "see trust-agent verify"
    )
    assert "registry.test" in (root / "etc/docker/daemon.json").read_text()  # it was


@dataclass
class Hold:
    """Where a host's run sends the interrupt and is then held until ``release``: at its "connect", its
    "gather" or its "apply". Records each step the host reached, and its connection's close."""

    at: str
    signum: int = signal.SIGINT
    release: threading.Event = field(default_factory=threading.Event)
    reached: list[str] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)

    def step(self, name: str) -> None:
        self.reached.append(name)
        if name == self.at:
            os.kill(os.getpid(), self.signum)  # as a terminal or a CI runner sends it
            self.release.wait(WAIT)


class HeldHost(LocalTransport):
    """A host with a connection to set up, as over SSH, held by its :class:`Hold`."""

    def __init__(self, name: str, hold: Hold) -> None:
        super().__init__(name)
        self.hold = hold

    def connect(self) -> None:
        self.hold.step("connect")

    def run_script(self, script: str, *args: str, timeout: float | None = None) -> CommandResult:
        self.hold.step(
            "gather" if script == GATHER_SCRIPT else "apply" if "stamp written" in script else script
        )
        return super().run_script(script, *args, timeout=timeout)

    def close(self) -> None:
        self.hold.closed.set()


@pytest.fixture
def sigint_as_a_shell_gives_it() -> Iterator[None]:
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # not ignored, as in a job
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_lets_the_host_in_its_apply_finish_and_starts_no_other(
    signum: int, tmp_path: Path, sigint_as_a_shell_gives_it: None
) -> None:
    root = trees(tmp_path, ["b"])["b"]
    hold = Hold("apply", signum)  # "b" is in its apply when the interrupt comes, and goes on once heard
    heard: list[int] = []

    def interrupted(in_flight: int) -> None:
        heard.append(in_flight)
        hold.release.set()

    def opener(name: str) -> Transport:
        return HeldHost(name, hold) if name == "b" else Unreachable(name)

    result = run_fleet(
        ["a", "b", "c", "d"],
        opener,
        POLICY,
        RunOptions(root=str(root)),
        FleetOptions(forks=1),
        on_interrupt=interrupted,
    )
    assert [(o.host, o.status) for o in result.outcomes] == [
        ("a", "unreachable"),
        ("b", "changed"),  # finished after the interrupt
        ("c", "skipped"),
        ("d", "skipped"),
    ]
    assert {o.error for o in result.outcomes[2:]} == {"not started: the run was interrupted"}
    assert result.interrupted and result.stopped == INTERRUPTED
    assert heard == [1]
    assert "registry.test" in (root / "etc/docker/daemon.json").read_text()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # put back after the run


@pytest.mark.parametrize("at", ["connect", "gather"])
def test_an_interrupt_leaves_a_host_still_connecting_or_reading_at_once_and_it_changes_nothing(
    at: str, tmp_path: Path, sigint_as_a_shell_gives_it: None
) -> None:
    """Ctrl-C waited out the connect timeout of a host that had not even logged in, and a host left
    that way would have gone on to its apply once connected."""
    root = trees(tmp_path, ["h1"])["h1"]
    before = (root / "etc/docker/daemon.json").read_text()
    hold = Hold(at)
    heard: list[int] = []
    started = time.monotonic()
    try:
        result = run_fleet(
            ["h1", "h2"],
            lambda name: HeldHost(name, hold),
            POLICY,
            RunOptions(root=str(root)),
            FleetOptions(forks=1),
            on_interrupt=heard.append,
        )
        took = time.monotonic() - started
        assert not hold.release.is_set()
    finally:
        hold.release.set()  # the host's connect (or gather) ends now, after the run
    assert took < WAIT / 2, f"the run waited {took:.1f}s for a host that had changed nothing"
    assert [(o.host, o.status, o.error) for o in result.outcomes] == [
        ("h1", "skipped", LEFT),
        ("h2", "skipped", "not started: the run was interrupted"),
    ]
    assert result.interrupted and heard == [0]
    assert hold.closed.wait(WAIT), "the left host's connection was never closed"
    assert hold.reached == ["connect", "gather"][: ["connect", "gather"].index(at) + 1]
    assert (root / "etc/docker/daemon.json").read_text() == before


STEPS = st.lists(st.sampled_from(["reads", "changes", "leave", "end"]), max_size=8)


@given(STEPS)
def test_a_host_is_left_only_before_its_first_change_and_is_then_refused_every_step(steps: list[str]) -> None:
    readiness = Readiness("h1")
    changed = ended = left = False
    for step in steps:
        if step == "leave":
            gave_up = readiness.leave()
            assert gave_up == (not changed and not ended and not left)
            left = left or gave_up
        elif step == "end":
            readiness.end()
            ended = True
        elif left:
            with pytest.raises(UnreachableError, match="left by the interrupt before anything was changed"):
                getattr(readiness, step)()
        else:
            getattr(readiness, step)()
            changed = changed or step == "changes"
        assert readiness.left == left
        assert readiness.settled.is_set() == (left or ended)


def test_an_interrupt_noted_inside_an_import_stops_the_fleet_saying_no_host_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report said "the hosts in flight finished" of a run no host of which had started, where the
    interrupt came during start-up imports (noted there, acted on by the host pool)."""
    (tmp_path / "interrupted_while_imported_too.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGINT)\nfor _ in range(1000):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    before_term = signal.getsignal(signal.SIGTERM)
    early = EarlyInterrupts("rollout").install()
    try:
        importlib.import_module("interrupted_while_imported_too")
        assert early.signum == signal.SIGINT
        result = run_fleet(["a", "b"], Unreachable, POLICY, RunOptions(), FleetOptions(forks=2))
    finally:
        signal.signal(signal.SIGINT, before)
        signal.signal(signal.SIGTERM, before_term)
        sys.modules.pop("interrupted_while_imported_too", None)
    assert [(o.host, o.status) for o in result.outcomes] == [("a", "skipped"), ("b", "skipped")]
    assert result.interrupted and result.stopped == interrupted_early(signal.SIGINT)
    assert result.stopped.startswith("interrupted (SIGINT) before any host was started: nothing was changed")


def test_a_host_that_starts_as_the_interrupt_is_acted_on_is_left_and_not_counted_in_flight(
    sigint_as_a_shell_gives_it: None,
) -> None:
    """Such a host was left, but the interrupt's line counted it among the hosts in flight to finish."""
    acted_on = threading.Event()
    heard: list[int] = []
    opened: list[str] = []

    def interrupted(in_flight: int) -> None:
        heard.append(in_flight)
        acted_on.set()

    def as_it_starts(name: str) -> None:  # in the host's thread: the interrupt is acted on meanwhile
        os.kill(os.getpid(), signal.SIGINT)
        acted_on.wait(WAIT)

    def opener(name: str) -> Transport:
        opened.append(name)
        return Unreachable(name)

    result = run_fleet(
        ["late"],
        opener,
        POLICY,
        RunOptions(),
        FleetOptions(forks=1),
        on_start=as_it_starts,
        on_interrupt=interrupted,
    )
    assert heard == [0]
    assert [(o.host, o.status, o.error) for o in result.outcomes] == [("late", "skipped", LEFT)]
    assert opened == []  # left before its connection was even opened
    assert result.interrupted and result.stopped == INTERRUPTED


def test_on_interrupt_left_hears_the_hosts_to_finish_and_those_left_instead_of_on_interrupt(
    tmp_path: Path, sigint_as_a_shell_gives_it: None
) -> None:
    """The line said "finishing the N hosts in flight" alone: the hosts left at once went unsaid."""
    root = trees(tmp_path, ["h1"])["h1"]
    hold = Hold("connect")
    heard: list[int] = []
    heard_left: list[tuple[int, int]] = []
    try:
        result = run_fleet(
            ["h1", "h2"],
            lambda name: HeldHost(name, hold),
            POLICY,
            RunOptions(root=str(root)),
            FleetOptions(forks=1),
            on_interrupt=heard.append,
            on_interrupt_left=lambda in_flight, left: heard_left.append((in_flight, left)),
        )
    finally:
        hold.release.set()
    assert heard_left == [(0, 1)] and heard == []
    assert [(o.host, o.status) for o in result.outcomes] == [("h1", "skipped"), ("h2", "skipped")]


def test_unless_left_gives_what_the_run_gives_and_raises_what_it_raises_in_the_callers_thread() -> None:
    """The gate serves install's host reports as well as the fleet's outcomes: a generic result, and
    a run's error is the caller's to handle, not lost in the host's own thread."""
    assert unless_left(Readiness("h1"), lambda: 7, lambda: -1) == 7

    def broken() -> int:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        unless_left(Readiness("h1"), broken, lambda: -1)


def test_unless_left_gives_left_at_once_while_the_run_still_waits_and_the_run_is_then_refused() -> None:
    readiness = Readiness("h1")
    waiting, release = threading.Event(), threading.Event()
    refused: list[str] = []

    def run() -> str:
        readiness.reads()
        waiting.set()
        release.wait(WAIT)  # as a connect waits for its timeout
        try:
            readiness.changes()
        except UnreachableError as exc:
            refused.append(str(exc))
        return "ran"

    def leave_once_waiting() -> None:
        waiting.wait(WAIT)
        readiness.leave()

    threading.Thread(target=leave_once_waiting, daemon=True).start()
    try:
        assert unless_left(readiness, run, lambda: "left") == "left"
        assert not release.is_set()  # not waited for
    finally:
        release.set()
    deadline = time.monotonic() + WAIT
    while not refused and time.monotonic() < deadline:
        time.sleep(0.01)
    assert refused == ["h1: left by the interrupt before anything was changed on it"]
    assert unless_left(readiness, lambda: "ran", lambda: "left") == "left"  # left before: never run


def test_a_transport_that_cannot_be_opened_for_a_bug_fails_that_host_alone_and_says_why() -> None:
    """The host was said to have ended "with no outcome", nothing of the error it met."""

    def opener(name: str) -> Transport:
        if name == "bad":
            raise OSError("too many open files")
        return Unreachable(name)

    result = run_fleet(["bad", "other"], opener, POLICY, RunOptions(), FleetOptions(forks=1))
    assert [(o.host, o.status, o.error) for o in result.outcomes] == [
        ("bad", "failed", "internal error: OSError: too many open files"),
        ("other", "unreachable", "other: connection refused"),
    ]
