"""The daemon's metrics file: written only where nothing is, or where its own metrics are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.daemon.report import METRICS_FIRST_LINE, metrics_refusal, metrics_text, write_metrics
from agent.daemon.status import DaemonStatus, SourceStatus


def _status() -> DaemonStatus:
    return DaemonStatus(source=SourceStatus(spec="/etc/reg.yml"), host="h", pid=1, started_at=0.0)


def test_an_empty_file_of_another_programs_is_not_written_over(tmp_path: Path) -> None:
    """/etc/environment, empty on Debian and read by pam_env, was replaced by the daemon's metrics."""
    environment = tmp_path / "environment"
    environment.write_bytes(b"")
    environment.chmod(0o600)
    with pytest.raises(OSError) as refused:
        write_metrics(environment, _status())
    assert str(refused.value) == (
        f"{environment} is an empty file trust-agent did not write (its metrics file is never empty): left "
        "alone; remove it if no other program needs it, or choose another metrics file"
    )
    assert environment.read_bytes() == b""
    assert os.stat(environment).st_mode & 0o777 == 0o600


def test_the_daemon_writes_a_missing_metrics_file_and_then_over_its_own(tmp_path: Path) -> None:
    path = tmp_path / "trust_agent.prom"
    write_metrics(path, _status())
    first_inode = path.stat().st_ino
    write_metrics(path, _status())
    assert path.read_text() == metrics_text(_status())
    assert path.stat().st_ino != first_inode  # renamed into place: never truncated, so never empty


@given(head=st.none() | st.binary(max_size=len(METRICS_FIRST_LINE)))
def test_only_a_missing_file_or_the_daemons_own_may_be_written(head: bytes | None) -> None:
    refused = metrics_refusal(Path("/var/lib/m.prom"), head)
    assert (refused is None) is (head is None or head == METRICS_FIRST_LINE)
    if refused is not None:
        assert refused.startswith("/var/lib/m.prom ") and "left alone" in refused
