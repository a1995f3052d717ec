"""The host pool's interrupts: the first is a flag the pool acts on, never an exception raised wherever
the main thread is (inside importlib, that left the import lock held and the run hung for ever); the
second stops at once, saying what is known. Before the pool, an interrupt says no host was touched."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.host_pool import (
    CUT_OFF,
    KICK,
    NOT_STARTED,
    EarlyInterrupt,
    EarlyInterrupts,
    HostPool,
    StoppedAtOnce,
)
from tests.unit.held_source import TRUST_AGENT, WAIT, held_tree, signals_as_a_shell_gives_them, start_held


@pytest.fixture
def sigint_as_a_shell_gives_it() -> Iterator[None]:
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_first_interrupt_raises_nothing_and_the_second_ends_it_at_once(
    signum: int, sigint_as_a_shell_gives_it: None
) -> None:
    heard: list[int] = []
    with HostPool(2, on_interrupt=heard.append) as pool:
        assert pool.map(str.upper, ["a", "b"]) == ["A", "B"]
        os.kill(os.getpid(), signum)
        for _ in range(1000):  # the main thread busy elsewhere: the handler runs here, and raises nothing
            time.sleep(0.001)
        assert pool.map(str.upper, ["c"]) is None  # no further host starts
        assert pool.interrupted and heard == [0]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signum)
            for _ in range(1000):
                time.sleep(0.001)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_sigint_stays_ignored() -> None:
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a job started without job control
    try:
        with HostPool(1) as pool:
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            assert pool.map(str.upper, ["a"]) == ["A"] and not pool.interrupted
    finally:
        signal.signal(signal.SIGINT, before)


@dataclass(frozen=True)
class Done:
    host: str
    status: str


def test_a_second_interrupt_stops_at_once_and_says_what_is_known_of_each_host(
    sigint_as_a_shell_gives_it: None,
) -> None:
    """The second interrupt ended the run with "Aborted!" alone: which host had finished, which was cut
    off part way and which never started went unsaid."""
    in_flight, release = threading.Event(), threading.Event()

    def work(name: str) -> Done:
        if name == "b":
            in_flight.set()
            release.wait(WAIT)  # held in flight until the test lets go
        return Done(name, "changed" if name == "a" else "unchanged")

    def interrupt_twice(pool: HostPool) -> None:
        assert in_flight.wait(WAIT)
        os.kill(os.getpid(), signal.SIGTERM)  # the first: "b" is to finish, "c" never starts
        deadline = time.monotonic() + WAIT
        while not pool.interrupted and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)  # the second: at once, "b" still in flight

    try:
        with pytest.raises(StoppedAtOnce) as stopped, HostPool(1) as pool:
            threading.Thread(target=interrupt_twice, args=(pool,), daemon=True).start()
            assert pool.map(work, ["a", "b", "c"]) is None
        assert stopped.value.hosts == (("a", "changed"), ("b", CUT_OFF), ("c", NOT_STARTED))
        assert stopped.value.lines() == [
            "stopped at once by a second interrupt; what is known of each host:",
            "  a: changed",
            f"  b: {CUT_OFF}",
            "  c: not started: the run was interrupted",
        ]
        assert not release.is_set(), "stopped without waiting for the host in flight"
    finally:
        release.set()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_the_pool_takes_over_from_the_early_handlers_and_leaves_the_originals(
    sigint_as_a_shell_gives_it: None,
) -> None:
    before = signal.getsignal(signal.SIGTERM)
    early = EarlyInterrupts("rollout").install()
    try:
        assert signal.getsignal(signal.SIGTERM) is early and signal.getsignal(signal.SIGINT) is early
        with pytest.raises(EarlyInterrupt) as caught:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                time.sleep(0.001)
        assert caught.value.signum == signal.SIGTERM
        with HostPool(1) as pool:
            assert signal.getsignal(signal.SIGTERM) is not early  # the pool's: the first only a flag
            assert signal.getsignal(signal.SIGINT) is not early
            # The run was said to be over: even where the exception was swallowed, no host starts.
            assert pool.map(str.upper, ["a"]) is None and pool.interrupted
        # After the hosts ran, an interrupt must not say it came before them.
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        # The kicks ended with the early handlers: no thread, wakeup fd or kick handler left behind.
        assert "interrupt-kicks" not in [thread.name for thread in threading.enumerate()]
        assert signal.set_wakeup_fd(-1) == -1
        assert signal.getsignal(KICK) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_second_early_interrupt_ends_the_run_without_saying_the_first_again(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Two Ctrl-Cs before any host: "interrupted before any host was started" was said twice."""
    ended: list[int] = []

    def end(signum: int) -> None:
        ended.append(signum)
        raise SystemExit(130)

    monkeypatch.setattr("agent.host_pool.end_as_interrupted", end)
    early = EarlyInterrupts("rollout")  # not installed: its handler called as the signal would call it
    with pytest.raises(EarlyInterrupt):
        early(signal.SIGINT, None)
    with pytest.raises(SystemExit):
        early(signal.SIGINT, None)
    assert ended == [signal.SIGINT]
    assert capfd.readouterr().err.count("before any host was started") == 1


def test_an_early_interrupt_inside_an_import_is_not_raised_there_and_no_host_starts(
    sigint_as_a_shell_gives_it: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Raised inside importlib, the exception could leave a module lock held and the hosts' threads
    # waiting on it for ever; it is a flag there, which the pool obeys.
    (tmp_path / "interrupted_while_imported.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGINT)\nfor _ in range(1000):\n"
        "    pass\nLOADED = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    before = signal.getsignal(signal.SIGTERM)
    early = EarlyInterrupts("rollout").install()
    try:
        module = importlib.import_module("interrupted_while_imported")
        assert module.LOADED and early.signum == signal.SIGINT
        started: list[str] = []
        with HostPool(2) as pool:
            assert pool.map(started.append, ["h1", "h2"]) is None
        assert pool.interrupted and started == []
    finally:
        signal.signal(signal.SIGTERM, before)
        sys.modules.pop("interrupted_while_imported", None)


# --- the command: an interrupt before any host -------------------------------------------------------


@pytest.fixture
def held_at_the_source(tmp_path: Path) -> tuple[Path, Path]:
    return held_tree(tmp_path)


def _how_it_waits(pid: int) -> str:
    """Where a process that did not end waits, and its signal masks: what a hung run needs explained."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        wchan = Path(f"/proc/{pid}/wchan").read_text()
    except OSError as exc:
        return str(exc)
    masks = [
        line for line in status.splitlines() if line.startswith(("SigBlk", "SigIgn", "SigCgt", "Threads"))
    ]
    return f"wchan {wchan}; " + "; ".join(masks)


def start_rollout(root: Path, fifo: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``trust-agent rollout`` on a tree, held reading the source; and the FIFO's writer end."""
    argv = [
        TRUST_AGENT,
        "rollout",
        "--local",
        "--root",
        str(root),
        "--source",
        str(fifo),
        "--registry",
        "r.test",
    ]
    return start_held(argv, fifo)


@pytest.mark.parametrize(
    ("signum", "returncode"),
    [(signal.SIGINT, 130), (signal.SIGTERM, -signal.SIGTERM)],  # a shell reports both as 128 + signal
    ids=["SIGINT", "SIGTERM"],
)
def test_an_interrupt_before_any_host_says_nothing_was_changed(
    held_at_the_source: tuple[Path, Path], signum: int, returncode: int
) -> None:
    """An early SIGTERM ended the rollout with 143 and not a word; an early Ctrl-C with "Aborted!"."""
    root, fifo = held_at_the_source
    proc, writer = start_rollout(root, fifo)
    try:
        proc.send_signal(signum)
        try:
            out, err = proc.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"the rollout did not end on {signal.Signals(signum).name}: {_how_it_waits(proc.pid)}"
            )
    finally:
        os.close(writer)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    name = signal.Signals(signum).name
    assert proc.returncode == returncode
    assert err.decode().strip().splitlines() == [
        f"trust-agent rollout: interrupted ({name}) before any host was started: nothing was changed on any host"
    ]
    assert out == b""
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == ["etc", "etc/docker"]


# --- an interrupt whose handler the main thread would not run ---------------------------------------

# A command's start, then a read of a pipe no one writes, as of a FIFO source: the run must end on the
# interrupt, saying so, and not wait in the read for ever.
_READ_AFTER = """
import os, sys, threading, time
from agent.host_pool import EarlyInterrupt, EarlyInterrupts
EarlyInterrupts("rollout").install()
{before_the_read}
read_end, write_end = os.pipe()
try:
    os.read(read_end, 1)
except EarlyInterrupt as interrupt:
    print("raised", interrupt.signum, flush=True)
    sys.exit(3)
"""


def _run_until_read(before_the_read: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = _READ_AFTER.format(before_the_read=before_the_read)
    try:
        return subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=WAIT,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{Path(__file__).parents[2]}"},
            preexec_fn=signals_as_a_shell_gives_them,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the interrupt did not end the read: its handler never ran")


def test_an_interrupt_the_kernel_gives_another_thread_still_ends_a_read_in_the_main_thread(
    tmp_path: Path,
) -> None:
    """The kernel gives a process's signal to any of its threads (paramiko's, a connection being set
    up); the main thread, waiting in a read, then never ran the handler. The same happens to a signal
    that comes just before the read begins (about 1 run in 60 of a FIFO source), deterministic here."""
    done = _run_until_read(
        "def elsewhere():\n"
        "    time.sleep(0.3)\n"
        "    import signal\n"
        "    signal.pthread_kill(threading.get_ident(), signal.SIGINT)\n"
        "threading.Thread(target=elsewhere).start()",
        tmp_path,
    )
    assert (done.returncode, done.stdout) == (3, f"raised {int(signal.SIGINT)}\n")
    assert done.stderr.splitlines() == [
        "trust-agent rollout: interrupted (SIGINT) before any host was started: nothing was changed on any host"
    ]


def test_an_interrupt_deferred_by_an_import_ends_a_read_that_follows_it(tmp_path: Path) -> None:
    """Inside an import the interrupt is only noted (raising there can leave a module lock held); a read
    after the import then waited for ever, the interrupt said but never acted on."""
    (tmp_path / "interrupted_while_imported.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\nfor _ in range(1000):\n    pass\n"
    )
    done = _run_until_read("import interrupted_while_imported", tmp_path)
    assert (done.returncode, done.stdout) == (3, f"raised {int(signal.SIGTERM)}\n")
    assert done.stderr.splitlines() == [
        "trust-agent rollout: interrupted (SIGTERM) before any host was started: nothing was changed on any host"
    ]


# --- an interrupt as the hosts are handed out --------------------------------------------------------


def _interrupted(signum: int = signal.SIGINT) -> None:
    """Sends ``signum`` to this process and gives the main thread the moments its handler needs."""
    os.kill(os.getpid(), signum)
    for _ in range(100):
        time.sleep(0.001)


def _submits_then_waits_for_the_start(
    pool: HostPool, started: threading.Event, monkeypatch: pytest.MonkeyPatch, *, interrupt_first: bool
) -> None:
    """The pool's threads take each host as soon as it is submitted, the main thread waiting meanwhile:
    how a busy machine schedules them, made certain. With ``interrupt_first``, the interrupt comes just
    before the first host is handed to a thread."""
    submit = pool._executor.submit
    first = [interrupt_first]

    def submitted(fn: Any, /, *args: Any) -> Any:
        if first.pop() if first else False:
            _interrupted()
        future = submit(fn, *args)
        started.wait(0.5)  # bounded: a host that is not to start never sets it
        return future

    monkeypatch.setattr(pool._executor, "submit", submitted)


def test_an_interrupt_between_two_batches_starts_no_host_of_the_next(
    sigint_as_a_shell_gives_it: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next batch's hosts were handed to the threads before the pool looked at the interrupt: one
    could start after it, against "no further host starts"."""
    started, ran = threading.Event(), []

    def work(name: str) -> str:
        ran.append(name)
        started.set()
        return name

    heard: list[int] = []
    with HostPool(2, on_interrupt=heard.append) as pool:
        assert pool.map(str.upper, ["a", "b"]) == ["A", "B"]
        _interrupted()  # the first batch is over, the second not begun
        _submits_then_waits_for_the_start(pool, started, monkeypatch, interrupt_first=False)
        assert pool.map(work, ["c", "d"]) is None
    assert ran == []
    assert pool.interrupted and heard == [0]


def test_an_interrupt_as_a_batch_is_handed_out_starts_none_of_its_hosts(
    sigint_as_a_shell_gives_it: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, ran = threading.Event(), []

    def work(name: str) -> str:
        ran.append(name)
        started.set()
        return name

    with HostPool(2) as pool:
        _submits_then_waits_for_the_start(pool, started, monkeypatch, interrupt_first=True)
        assert pool.map(work, ["a", "b"]) is None
    assert ran == [] and pool.interrupted


# --- hosts that have changed nothing yet are left ----------------------------------------------------


@pytest.mark.parametrize(
    ("told_the_left", "said"),
    [(False, [1]), (True, [(1, 1)])],
    ids=["in-flight", "in-flight-and-left"],
)
def test_the_first_interrupt_leaves_the_hosts_that_changed_nothing_and_waits_for_the_others(
    told_the_left: bool, said: list[Any], sigint_as_a_shell_gives_it: None
) -> None:
    """A host still connecting held the run for its whole connect timeout after Ctrl-C; once it was
    left, the interrupt's line still said only how many hosts were being finished."""
    both_in_flight = threading.Barrier(3, timeout=WAIT)
    left, asked, applied = threading.Event(), threading.Event(), threading.Event()

    def leave_connecting() -> bool:
        left.set()
        return True

    def leave_applying() -> bool:
        asked.set()
        return False  # in its apply: not to be left

    def leave_of(name: str) -> Callable[[], bool]:
        return leave_connecting if name == "connecting" else leave_applying

    def work(name: str) -> Done:
        both_in_flight.wait()
        if name == "connecting":
            left.wait(WAIT)  # until the interrupt leaves it
            return Done(name, "skipped")
        asked.wait(WAIT)
        time.sleep(0.2)  # the apply goes on after the interrupt
        applied.set()
        return Done(name, "changed")

    def interrupt() -> None:
        both_in_flight.wait()
        os.kill(os.getpid(), signal.SIGINT)

    heard: list[Any] = []
    if told_the_left:
        pool = HostPool(2, on_interrupt_left=lambda in_flight, left: heard.append((in_flight, left)))
    else:
        pool = HostPool(2, on_interrupt=heard.append)  # as the daemon's install gives it
    with pool:
        threading.Thread(target=interrupt, daemon=True).start()
        assert pool.map(work, ["connecting", "applying"], leave_of=leave_of) is None
        assert left.is_set() and asked.is_set()
        assert heard == said  # the host in its apply alone is finished; the one connecting was left
        assert not applied.is_set()
    assert applied.is_set(), "the pool's exit must wait for the host in its apply"


def test_a_host_that_starts_as_the_interrupt_is_acted_on_is_left_at_once_and_not_counted_in_flight(
    sigint_as_a_shell_gives_it: None,
) -> None:
    """Handed to its thread just before the interrupt, the host said it may be left only after the pool
    had asked the others and counted it among the hosts to finish: it was left, but the line said the
    run was finishing it."""
    acted_on, left = threading.Event(), threading.Event()

    def leave() -> bool:
        left.set()
        return True

    def work(name: str) -> str:
        os.kill(os.getpid(), signal.SIGINT)  # as the host starts
        acted_on.wait(WAIT)
        return name

    heard: list[tuple[int, int]] = []

    def interrupted(in_flight: int, left_at_once: int) -> None:
        heard.append((in_flight, left_at_once))
        acted_on.set()

    with HostPool(1, on_interrupt_left=interrupted) as pool:
        assert pool.map(work, ["late"], leave_of=lambda name: leave) is None
    assert left.is_set()
    assert heard == [(0, 1)]
