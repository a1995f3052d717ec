"""The host pool's interrupts: the first is a flag the pool acts on, never an exception raised wherever
the main thread is (inside importlib, that left the import lock held and the run hung for ever)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from agent.host_pool import HostPool


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
