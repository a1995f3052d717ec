"""The report a command line asks for (-o) where the run never gets to write its own: a command line
click refuses, a repeated -o, and an interrupt while the CLI is still being imported (a second
interrupt during a rollout: tests/e2e/test_report_counts_lab.py). An earlier run's report must never
stay behind for CI to read as this run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from agent.cli import _report_named
from tests.unit.held_source import TRUST_AGENT, WAIT, signals_as_a_shell_gives_them

STALE_JSON = '{"mode": "rollout", "summary": {"changed": 3, "failed": 0}, "hosts": []}\n'
STALE_JUNIT = '<?xml version="1.0"?>\n<testsuite name="trust-agent rollout" tests="3" failures="0"/>\n'
SOURCE = """version: 0.1
storage:
  s3:
    region: us-east-1
    regionendpoint: http://minio.lan:9000
    bucket: registry
    secure: false
http:
  host: https://registry.test
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A --root tree; the source beside it."""
    root = tmp_path / "root"
    (root / "etc/docker").mkdir(parents=True)
    (tmp_path / "config.yml").write_text(SOURCE)
    return root


def _stale(tmp_path: Path) -> tuple[Path, Path]:
    """An earlier run's JSON and JUnit reports, as CI would find them."""
    json_report, junit_report = tmp_path / "report.json", tmp_path / "report.xml"
    json_report.write_text(STALE_JSON)
    junit_report.write_text(STALE_JUNIT)
    return json_report, junit_report


def _trust_agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TRUST_AGENT, *args], capture_output=True, text=True, timeout=WAIT, check=False)


def _refused_with(json_report: Path, junit_report: Path, message: str) -> None:
    """Both reports say that input was refused, with ``message``, and that no host was touched."""
    doc = json.loads(json_report.read_text(encoding="utf-8"))
    assert doc["stopped"] == f"bad input, nothing was changed on any host: {message}"
    assert doc["hosts"] == []
    suite = ET.fromstring(junit_report.read_text(encoding="utf-8"))
    assert (suite.get("tests"), suite.get("errors"), suite.get("failures")) == ("1", "1", "0")
    error = suite.find("testcase[@name='input']/error")
    assert error is not None and (error.get("type"), error.get("message")) == ("input", message)


# --- a command line click refuses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--forks", "0"], "Invalid value for '--forks': 0 is not in the range 1<=x<=2000."),
        (
            ["--max-fail-percentage", "101"],
            "Invalid value for '--max-fail-percentage': 101.0 is not in the range 0<=x<=100.",
        ),
        (["--no-such-option"], "No such option '--no-such-option'."),
        (["--serial"], "Option '--serial' requires an argument."),
        (
            ["--resolve", "bad"],
            "Invalid value for '--resolve': 'bad': expected HOST:ADDR, ADDR an IPv4 or IPv6 address, no port "
            "(each check uses its own)",
        ),
    ],
    ids=["forks-0", "max-fail-101", "unknown-option", "missing-value", "bad-resolve"],
)
def test_a_command_line_click_refuses_replaces_each_earlier_report_with_one_saying_so(
    tree: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    """click's own refusals exited 2 and left an earlier run's report in place: CI read a stale
    success."""
    json_report, junit_report = _stale(tmp_path)
    run = _trust_agent(
        "rollout", "--local", "--root", str(tree), "--source", str(tmp_path / "config.yml"),
        "-o", str(json_report), "-o", str(junit_report), *extra,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert f"trust-agent: error: {message}" in run.stderr
    _refused_with(json_report, junit_report, message)
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*")) == ["etc", "etc/docker"]


def test_a_missing_required_option_is_refused_in_the_report_of_plan_too(tmp_path: Path) -> None:
    json_report, junit_report = _stale(tmp_path)
    run = _trust_agent("plan", "-i", "h1,", "--report", str(junit_report), f"--report={json_report}")
    assert run.returncode == 2, run.stderr
    _refused_with(json_report, junit_report, "Missing option '--source'.")
    assert json.loads(json_report.read_text())["mode"] == "plan"


def test_plan_detailed_exitcode_still_exits_1_and_writes_the_refusal(tmp_path: Path) -> None:
    json_report, junit_report = _stale(tmp_path)
    run = _trust_agent(
        "plan", "--detailed-exitcode", "--source", "x", "-i", "h1,", "--forks", "0",
        "-o", str(json_report), "-o", str(junit_report),
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    _refused_with(json_report, junit_report, "Invalid value for '--forks': 0 is not in the range 1<=x<=2000.")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["-i", "h1,"],
            "apply acts on this machine (--local [--root DIR]); for an inventory's hosts use rollout",
        ),
        ([], "apply acts on this machine: give --local [--root DIR] (for remote hosts use rollout)"),
    ],
    ids=["inventory", "no-local"],
)
def test_apply_refusing_its_target_says_so_in_each_report(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    """An earlier run's report stayed where apply was given an inventory, or no --local."""
    json_report, junit_report = _stale(tmp_path)
    run = _trust_agent(
        "apply",
        "--source",
        str(tmp_path / "config.yml"),
        *extra,
        "-o",
        str(json_report),
        "-o",
        str(junit_report),
    )
    assert run.returncode == 2, run.stderr
    _refused_with(json_report, junit_report, message)


@pytest.mark.parametrize(
    "argv",
    [
        ["rollout", "--forks", "0", "-o"],  # -o's value missing: no report can be read
        ["rollout", "--source", "-o", "--forks", "0"],  # "-o" here is --source's value
        ["rollout", "--forks", "0", "--", "-o"],
        ["--no-such-option", "rollout"],
        ["rollout", "--forks", "0", "--report"],
    ],
    ids=["o-without-value", "o-as-a-value", "after-double-dash", "group-option", "report-without-value"],
)
def test_a_command_line_that_names_no_report_writes_none(tmp_path: Path, argv: list[str]) -> None:
    json_report, _ = _stale(tmp_path)
    run = subprocess.run(
        [TRUST_AGENT, *argv], capture_output=True, text=True, timeout=WAIT, check=False, cwd=tmp_path
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("trust-agent: error: ") and "Traceback" not in run.stderr
    assert json_report.read_text() == STALE_JSON
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.xml"]


_WORDS = st.sampled_from(
    ["rollout", "plan", "verify", "apply", "daemon", "-o", "--report", "--report=", "--format", "json",
     "--format=html", "r.json", "r.xml", "r.yaml", "--", "-", "--dry-run", "--forks", "-oa.md", "-l", "="]
)  # fmt: skip


@example(["rollout", "-o", "-o"])  # click takes the second as the first's value: no file "-o" is made
@given(st.lists(st.one_of(_WORDS, st.text(max_size=8)), max_size=8))
def test_no_command_line_makes_reading_its_reports_fail(argv: list[str]) -> None:
    named = _report_named(argv)
    if named is not None:
        mode, report = named
        assert mode in ("plan", "rollout", "verify", "apply")
        paths = {path for path, _ in report.files}
        assert paths <= {word.removeprefix("--report=").removeprefix("-o") for word in argv}
        assert not any(path.startswith("-") for path in paths)


# --- -o given more than once ---------------------------------------------------------------------------


def test_a_repeated_report_option_writes_every_file_in_its_own_format(tree: Path, tmp_path: Path) -> None:
    """-o a.json -o b.xml wrote b.xml alone: a.json kept an earlier run's report."""
    json_report, junit_report = _stale(tmp_path)
    html = tmp_path / "report.html"
    run = _trust_agent(
        "plan", "--local", "--root", str(tree), "--source", str(tmp_path / "config.yml"),
        "-o", str(json_report), "-o", str(junit_report), "-o", str(html), "-o", str(json_report),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(json_report.read_text())["hosts"][0]["status"] == "unchanged"
    assert ET.fromstring(junit_report.read_text()).get("tests") == "1"
    assert html.read_text().startswith("<!DOCTYPE html>")
    written = [line for line in run.stderr.splitlines() if line.startswith("report: ")]
    assert written == [
        f"report: {json_report} (json)",
        f"report: {junit_report} (junit)",
        f"report: {html} (html)",
    ]


def test_format_with_several_report_files_is_refused_in_each_file(tree: Path, tmp_path: Path) -> None:
    json_report, junit_report = _stale(tmp_path)
    run = _trust_agent(
        "rollout", "--local", "--root", str(tree), "--source", str(tmp_path / "config.yml"),
        "--format", "json", "-o", str(json_report), "-o", str(junit_report),
    )  # fmt: skip
    message = (
        "--format json with 2 report files: a repeated -o takes each file's format from its suffix "
        "(.json, .md, .html, .xml, .txt); drop --format"
    )
    assert run.returncode == 2, run.stderr
    assert f"trust-agent: error: {message}" in run.stderr
    _refused_with(json_report, junit_report, message)
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*")) == ["etc", "etc/docker"]


# --- an interrupt while the CLI is still being imported ------------------------------------------------

# Runs trust-agent's entry point with agent.cli's import held (its first lookup sleeps) until the
# interrupt; where argv[1] is "broken", agent.cli cannot be imported again afterwards.
_HELD_IMPORT = """
import os, sys, time
BROKEN = sys.argv.pop(1) == "broken"
class Hold:
    looked = 0
    def find_spec(self, name, path=None, target=None):
        if name != "agent.cli":
            return None
        Hold.looked += 1
        if Hold.looked == 1:
            os.write(2, b"holding the import\\n")
            time.sleep(30)
        if BROKEN:
            raise ImportError("agent.cli cannot be imported")
        return None
sys.meta_path.insert(0, Hold())
from agent.entry import main
main()
"""


def _interrupted_while_importing(how: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", _HELD_IMPORT, how, *args]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=signals_as_a_shell_gives_them,
    )
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline() == "holding the import\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def test_an_interrupt_while_the_cli_is_imported_writes_the_report_asked_for(tmp_path: Path) -> None:
    """A Ctrl-C in the first moments ended with a bare newline and left an earlier run's report."""
    json_report, junit_report = _stale(tmp_path)
    run = _interrupted_while_importing(
        "held", "rollout", "-i", "h1,", "--source", "x", "-o", str(json_report), "-o", str(junit_report)
    )
    said = "interrupted (SIGINT) before any host was started: nothing was changed on any host"
    assert run.returncode == 130, run.stderr
    assert run.stderr.splitlines()[0] == f"trust-agent rollout: {said}"
    doc = json.loads(json_report.read_text(encoding="utf-8"))
    assert doc["stopped"] == f"{said}; the inventory was not read yet"
    assert doc["hosts"] == []
    suite = ET.fromstring(junit_report.read_text(encoding="utf-8"))
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["stopped"] == doc["stopped"]


def test_where_the_cli_cannot_be_imported_after_the_interrupt_nothing_is_written_and_that_is_said(
    tmp_path: Path,
) -> None:
    json_report, _ = _stale(tmp_path)
    run = _interrupted_while_importing(
        "broken", "rollout", "-i", "h1,", "--source", "x", "-o", str(json_report)
    )
    assert run.returncode == 130, run.stderr
    assert run.stderr.splitlines() == [
        "trust-agent: interrupted (SIGINT) while starting: nothing was changed on any host; no report was "
        "written"
    ]
    assert json_report.read_text() == STALE_JSON
    assert sorted(os.listdir(tmp_path)) == ["report.json", "report.xml"]  # nothing made beside them
