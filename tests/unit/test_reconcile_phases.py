"""A host's phases when its apply ends in an exception: the apply is on its timeline up to the failure."""

from __future__ import annotations

import pytest

from agent.engine.gather import GATHER_SCRIPT
from agent.engine.options import RunOptions
from agent.engine.reconcile import reconcile
from agent.errors import CommandTimeout, HostError, UnreachableError
from agent.hosts.base import CommandResult
from tests.unit.test_docker_plan import ca_policy
from tests.unit.test_host_plan_reads import GatheredHost, never_written_to

APPLY_SECONDS = 3.0


class LostInItsApply(GatheredHost):
    """A host answering the gather at once; its apply takes ``APPLY_SECONDS`` of ``now`` and then raises
    ``error`` (the connection lost, the command timed out)."""

    def __init__(self, error: HostError) -> None:
        super().__init__(never_written_to())
        self.error = error
        self.now = 10.0

    def clock(self) -> float:
        return self.now

    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        if stdin.decode() == GATHER_SCRIPT:
            self.now += 0.1
            return super().run(command, stdin=stdin, timeout=timeout)
        self.scripts.append(stdin.decode())
        self.now += APPLY_SECONDS
        raise self.error


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (UnreachableError("h1: connection lost: Socket is closed"), "unreachable"),
        (CommandTimeout("h1: command timed out after 3s"), "failed"),
    ],
)
def test_an_apply_cut_off_by_an_exception_keeps_its_apply_phase_up_to_the_failure(
    error: HostError, status: str
) -> None:
    """The phases ended at the plan, and the host's time showed 0.1 s for its 3 s apply."""
    host = LostInItsApply(error)
    outcome = reconcile(host, ca_policy("registry.test"), RunOptions(verify=False), clock=host.clock)
    assert outcome.status == status, outcome
    assert len(host.scripts) == 1, "the apply ran once and nothing after it"
    last = outcome.phases[-1]
    assert (last.name, last.end) == ("apply", host.now)
    assert last.seconds == pytest.approx(APPLY_SECONDS)
    assert [p.name for p in outcome.phases].count("apply") == 1
