"""A report file whose suffix names no format (``-o old.yaml``, written with --format): a later run that
stops before its own report must not leave the earlier one there for CI to read as its own. The format
comes from --format alone, so where that run cannot take it, the earlier report's own format is used."""

from __future__ import annotations

import html
import json
import os
import subprocess
from pathlib import Path

import pytest

from agent.outcome import FleetResult, HostOutcome
from agent.reports import FORMATS, render
from agent.run_report import format_held
from agent.trust import TrustPolicy
from tests.unit.held_source import TRUST_AGENT, WAIT

POLICY = TrustPolicy(registries=("registry.test",), storage_endpoint="s3.test:9000", storage_scheme="https")
MISSING = "missing.yml"


def _earlier_run(mode: str = "rollout") -> FleetResult:
    """A run that converged every host: what a stale report would tell CI."""
    return FleetResult(
        mode=mode,  # type: ignore[arg-type]
        policy=POLICY,
        outcomes=(
            HostOutcome("engine-1", "changed", engine_version="26.1.5"),
            HostOutcome("engine-2", "unchanged"),
        ),
        started_at="2026-01-01T00:00:00+00:00",
        seconds=12.5,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc/docker").mkdir(parents=True)
    return root


def _stopped_run(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """rollout on ``tree``, stopped before any host by ``args`` (its source cannot be read)."""
    argv = [TRUST_AGENT, "rollout", "--local", "--root", str(tree), "--registry", "r.test"]
    argv += ["--source", str(tree.parent / MISSING), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=WAIT, check=False)


# Each way a run with -o old.yaml stops before its hosts: click refuses the command line, the -o and
# --format given cannot be taken, or the source cannot be read.
STOPS = {
    "no-format": ([], "no report format is written as .yaml"),
    "format-unknown": (["--format", "yaml"], "Invalid value for '--format': 'yaml'"),
    "bad-option": (["--forks", "0"], "Invalid value for '--forks'"),
    "format-with-two-files": (["--format", "json", "-o", "{dir}/other.json"], "--format json with 2"),
    "unreadable-source": (["--format", "{fmt}"], f"{MISSING}: cannot read"),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("stop", list(STOPS))
def test_a_run_stopped_before_its_hosts_replaces_an_earlier_report_of_any_suffix(
    tree: Path, fmt: str, stop: str
) -> None:
    """The earlier run's report stayed in old.yaml wherever the stopped run could not settle its format."""
    old = tree.parent / "old.yaml"
    old.write_text(render(_earlier_run(), fmt), encoding="utf-8")  # type: ignore[arg-type]
    extra, refusal = STOPS[stop]
    args = [a.format(dir=tree.parent, fmt=fmt) for a in extra]
    run = _stopped_run(tree, "-o", str(old), *args)
    assert run.returncode == 2, run.stderr
    assert refusal in run.stderr, run.stderr
    written = html.unescape(old.read_text(encoding="utf-8"))  # HTML and JUnit escape the quotes
    assert "bad input, nothing was changed on any host" in written, written
    assert refusal in written and "engine-1" not in written, written
    assert format_held(str(old)) == fmt  # read by CI as it read the earlier one
    assert f"report: {old} ({fmt})" in run.stderr.splitlines()
    if fmt == "json":
        doc = json.loads(written)
        assert doc["hosts"] == [] and doc["stopped"].startswith("bad input")


def test_a_file_that_holds_no_report_is_left_as_it_is(tree: Path) -> None:
    """-o names a file of the user's by a slip (its values file): it is no earlier report, and stays."""
    values = tree.parent / "values.yaml"
    values.write_text("registry:\n  host: registry.test\n")
    run = _stopped_run(tree, "-o", str(values))
    assert run.returncode == 2 and "no report format is written as .yaml" in run.stderr, run.stderr
    assert values.read_text() == "registry:\n  host: registry.test\n"
    assert "report:" not in run.stderr


@pytest.mark.parametrize("mode", ["plan", "apply", "rollout", "verify"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_each_formats_report_is_known_as_one(tmp_path: Path, mode: str, fmt: str) -> None:
    report = tmp_path / "report.yaml"
    report.write_text(render(_earlier_run(mode), fmt), encoding="utf-8")  # type: ignore[arg-type]
    assert format_held(str(report)) == fmt


@pytest.mark.parametrize(
    "content",
    [
        "",
        "registry:\n  host: registry.test\n",
        '{"registry": "registry.test"}\n',
        '<?xml version=\'1.0\'?>\n<testsuite name="pytest" tests="1"/>\n',
        "# trust-agent notes\n\n3 hosts: 3 changed\n",
    ],
    ids=["empty", "yaml", "json", "other-junit", "markdown-notes"],
)
def test_a_file_of_another_tool_is_not_taken_for_a_report(tmp_path: Path, content: str) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(content)
    assert format_held(str(other)) is None
    assert format_held(str(tmp_path / "absent.yaml")) is None


def test_a_fifo_is_not_read_for_a_report(tmp_path: Path) -> None:
    """``-o /dev/stdout`` or a pipe: reading it back to look for a report would wait for ever."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert format_held(str(fifo)) is None  # returns at once: no writer will ever come
