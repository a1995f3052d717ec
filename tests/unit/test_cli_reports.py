"""What the reports say where a run stops short or leaves work to do: an interrupt before any host,
hosts a dry run found would change, hosts nothing is known of, and verify's TLS checks from here."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from agent.outcome import FleetResult, HostOutcome, Phase
from agent.reports import FORMATS, render
from agent.reports.summary import render as render_table
from agent.runtimes.plan import FileChange, HostPlan
from agent.trust import TrustPolicy
from tests.unit.held_source import TRUST_AGENT, WAIT, held_tree, start_held

POLICY = TrustPolicy(registries=("registry.test",), storage_endpoint="s3.test:9000", storage_scheme="https")
CA_PATH = "/etc/docker/certs.d/registry.test/trust-agent-storage-ca.crt"
FAILED = " (a failed check from this machine: exit 1)"  # how verify marks a check it failed on
HINT = "trust-agent rollout with the same arguments applies it"


# --- an interrupt before any host ------------------------------------------------------------------


@pytest.fixture
def held_at_the_source(tmp_path: Path) -> tuple[Path, Path]:
    return held_tree(tmp_path)


def _interrupted_rollout(root: Path, fifo: Path, signum: int, *args: str) -> subprocess.CompletedProcess[str]:
    """``trust-agent rollout ARGS`` on a tree, sent ``signum`` once it is blocked reading the source."""
    argv = [TRUST_AGENT, "rollout", "--local", "--root", str(root), "--source", str(fifo), *args]
    proc, writer = start_held(argv, fifo, text=True)
    try:
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        os.close(writer)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


_STALE = {
    "json": '{"mode": "rollout", "summary": {"changed": 0, "failed": 0}, "hosts": []}\n',
    "junit": '<?xml version="1.0"?>\n<testsuite name="trust-agent rollout" tests="0" failures="0"/>\n',
    "markdown": "# trust-agent rollout\n\n0 hosts\n",
    "html": "<!DOCTYPE html><title>trust-agent rollout: all converged</title>\n",
}


@pytest.mark.parametrize(
    ("signum", "returncode", "name", "fmt"),
    [
        (signal.SIGINT, 130, "report.json", "json"),
        (signal.SIGTERM, -signal.SIGTERM, "report.xml", "junit"),
        (signal.SIGTERM, -signal.SIGTERM, "report.md", "markdown"),
        (signal.SIGINT, 130, "report.html", "html"),
    ],
    ids=["SIGINT-json", "SIGTERM-junit", "SIGTERM-markdown", "SIGINT-html"],
)
def test_an_interrupt_before_any_host_replaces_an_earlier_runs_report_with_its_own(
    held_at_the_source: tuple[Path, Path], tmp_path: Path, signum: int, returncode: int, name: str, fmt: str
) -> None:
    """The report file of an earlier (successful) run stayed as it was: CI read it as this run's."""
    root, fifo = held_at_the_source
    report = tmp_path / name
    report.write_text(_STALE[fmt])
    run = _interrupted_rollout(root, fifo, signum, "--registry", "r.test", "-o", str(report))
    signame = signal.Signals(signum).name
    assert run.returncode == returncode, run.stderr
    assert run.stderr.splitlines()[0] == (
        f"trust-agent rollout: interrupted ({signame}) before any host was started: nothing was changed "
        "on any host"
    )
    assert run.stdout == ""
    written = report.read_text(encoding="utf-8")
    assert written != _STALE[fmt]
    said = f"interrupted ({signame}) before any host was started: nothing was changed on any host"
    if fmt == "json":
        doc = json.loads(written)
        assert doc["stopped"] == said
        assert [(h["host"], h["status"]) for h in doc["hosts"]] == [(str(root.resolve()), "skipped")]
        assert doc["summary"]["skipped"] == 1 and doc["policy"]["registries"] == []
    elif fmt == "junit":
        suite = ET.fromstring(written)
        assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("1", "0", "1")
        stopped = {p.get("name"): p.get("value") for p in suite.iter("property")}["stopped"]
        assert stopped == said
    else:
        assert said in written and "1 host: 1 skipped" in written
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == ["etc", "etc/docker"]


def test_an_interrupt_before_any_host_prints_the_format_asked_for_on_stdout(
    held_at_the_source: tuple[Path, Path],
) -> None:
    root, fifo = held_at_the_source
    run = _interrupted_rollout(root, fifo, signal.SIGINT, "--registry", "r.test", "--format", "json")
    assert run.returncode == 130, run.stderr
    doc = json.loads(run.stdout)
    assert doc["stopped"].startswith("interrupted (SIGINT) before any host was started")
    assert [h["status"] for h in doc["hosts"]] == ["skipped"]


# --- pending hosts: what to run ----------------------------------------------------------------------


def _result(mode: str, *outcomes: HostOutcome, **fields: object) -> FleetResult:
    return FleetResult(
        mode=mode,  # type: ignore[arg-type]
        policy=POLICY,
        outcomes=outcomes,
        started_at="2026-01-01T00:00:00+00:00",
        seconds=1.0,
        **fields,  # type: ignore[arg-type]
    )


def _pending(host: str = "h1") -> HostOutcome:
    change = FileChange(CA_PATH, "create", None, b"-----BEGIN CERTIFICATE-----\n")
    plan = HostPlan(changes=(change,), reasons=("install the storage CA",))
    return HostOutcome(host, "pending", plan, engine_version="26.1.5", phases=(Phase("connect", 0.0, 0.5),))


def _unchanged(host: str = "h2") -> HostOutcome:
    return HostOutcome(host, "unchanged", HostPlan(), engine_version="20.10.24")


@pytest.mark.parametrize("mode", ["plan", "verify"])
def test_the_human_formats_say_that_rollout_applies_what_is_pending(mode: str) -> None:
    """Drift was called pending, and no format said what applies it."""
    result = _result(mode, _pending(), _unchanged())
    table = [line for line in render_table(result).splitlines() if HINT in line]
    text = [line for line in render(result, "text").splitlines() if HINT in line]
    markdown = [line for line in render(result, "markdown").splitlines() if HINT in line]
    assert len(table) == 1 and table[0].startswith("pending: nothing was applied")
    assert text == table
    assert markdown == [f"> {table[0]}"]
    assert table[0] in render(result, "html")


def test_no_hint_where_nothing_is_pending_and_json_keeps_its_fields() -> None:
    quiet = _result("plan", _unchanged())
    for fmt in FORMATS:
        assert HINT not in render(quiet, fmt)
    assert HINT not in render_table(quiet)
    doc = json.loads(render(_result("plan", _pending()), "json"))
    assert "trust-agent rollout" not in json.dumps(doc)
    assert doc["hosts"][0]["status"] == "pending"


# --- the engine action: one word for one fact -------------------------------------------------------


def _action_cells(result: FleetResult) -> dict[str, dict[str, str | None]]:
    """Each format's engine action per host; None where the format leaves it out."""
    table = {line.split()[0]: line.split()[2] for line in render_table(result).splitlines()[1:3]}
    text = {
        line.split()[0]: (line.split()[2] if len(line.split()) > 2 and line.split()[2] != "docker" else None)
        for line in render(result, "text").splitlines()
        if line.split()[:1] in (["h1"], ["h2"])
    }
    markdown = {
        cells[0]: cells[2] or None
        for line in render(result, "markdown").splitlines()
        if line.startswith(("| h1 ", "| h2 "))
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    json_doc = {h["host"]: h["engine_action"] for h in json.loads(render(result, "json"))["hosts"]}
    junit = {
        case.get("name", ""): next(
            (
                line.removeprefix("engine action: ")
                for element in case
                for line in (element.text or "").splitlines()
                if line.startswith("engine action: ")
            ),
            None,
        )
        for case in ET.fromstring(render(result, "junit")).iter("testcase")
    }
    return {"table": table, "text": text, "markdown": markdown, "json": json_doc, "junit": junit}


def test_an_unchanged_host_shows_the_same_engine_action_in_the_table_as_elsewhere() -> None:
    """The table said '-' where every other format said 'none'."""
    result = _result("rollout", _unchanged("h1"), HostOutcome("h2", "changed", HostPlan(), "reload"))
    cells = _action_cells(result)
    assert cells["table"] == {"h1": "none", "h2": "reload"}
    assert cells["text"] == {"h1": "none", "h2": "reload"}
    assert cells["markdown"] == {"h1": "none", "h2": "reload"}
    assert cells["json"] == {"h1": "none", "h2": "reload"}


def test_an_unreachable_host_has_no_engine_action_in_any_format() -> None:
    """An unreachable host was said to need 'none': nothing is known of it."""
    unreachable = HostOutcome("h1", "unreachable", error="h1 (198.51.100.21): connection refused")
    lost = HostOutcome("h2", "unreachable", _pending().plan, error="lost during apply: connection reset")
    result = _result("rollout", unreachable, lost)
    cells = _action_cells(result)
    assert cells["table"] == {"h1": "-", "h2": "-"}  # the table's mark of what is not known
    assert cells["text"] == {"h1": None, "h2": None}
    assert cells["markdown"] == {"h1": None, "h2": None}
    assert cells["json"] == {"h1": None, "h2": None}
    assert cells["junit"] == {"h1": None, "h2": None}
    markdown = render(result, "markdown")
    assert "engine action" not in markdown.split("## Hosts")[1]
    html = render(result, "html")
    assert "<td>none</td>" not in html and "<td>—</td>" in html


# --- verify's TLS checks from here ------------------------------------------------------------------


def _verified(*checks: str) -> FleetResult:
    failed = tuple(c + FAILED for c in checks if not c.endswith(": ok") and not c.startswith("tls: skipped"))
    return _result("verify", _unchanged("h1"), warnings=failed, tls_checks=checks)


def test_a_passing_tls_check_is_a_passing_junit_case_and_a_failing_one_fails() -> None:
    """JUnit held TLS cases only where one failed: a passing check was in no report."""
    result = _verified("tls registry.test: ok", "tls s3.test:9000: certificate not trusted: self signed")
    suite = ET.fromstring(render(result, "junit"))
    tls = {c.get("name"): c for c in suite.iter("testcase") if c.get("classname") == "trust-agent.verify.tls"}
    assert list(tls) == ["registry.test", "s3.test:9000"]
    assert list(tls["registry.test"]) == []  # passed: no failure, no skip
    failure = tls["s3.test:9000"].find("failure")
    assert failure is not None and failure.get("message") == "certificate not trusted: self signed"
    assert (suite.get("tests"), suite.get("failures")) == ("3", "1")
    out = suite.find("system-out")
    assert out is None or "certificate not trusted" not in (out.text or "")


def test_a_skip_tls_policys_check_is_a_skipped_junit_case() -> None:
    result = _verified("tls: skipped: the policy lists the registry as insecure (skip-TLS)")
    suite = ET.fromstring(render(result, "junit"))
    (case,) = [c for c in suite.iter("testcase") if c.get("classname") == "trust-agent.verify.tls"]
    skipped = case.find("skipped")
    assert skipped is not None and "insecure" in (skipped.get("message") or "")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("2", "0", "1")


def test_every_format_lists_the_tls_checks_passed_or_not_each_once() -> None:
    failing = "tls s3.test:9000: certificate not trusted: self signed"
    result = _verified("tls registry.test: ok", failing)
    for fmt in ("text", "markdown", "html"):
        out = render(result, fmt)  # type: ignore[arg-type]
        assert "checked from here" in out and "tls registry.test: ok" in out, fmt
        assert out.count("certificate not trusted: self signed") == 1, fmt
    doc = json.loads(render(result, "json"))
    assert doc["tls_checks"] == ["tls registry.test: ok", failing + FAILED]
    assert doc["warnings"] == [failing + FAILED]  # as before: scripts reading warnings see it there


def test_the_html_page_lists_checks_apart_from_the_warnings_and_marks_the_failed_one() -> None:
    """A passing check stood in a yellow warning box, as the failed one did."""
    failing = "tls s3.test:9000: certificate not trusted: self signed"
    page = render(_verified("tls registry.test: ok", failing), "html")
    assert '<li class="check-ok">checked from here: tls registry.test: ok</li>' in page
    assert f'<li class="check-failed">checked from here: {failing}{FAILED}</li>' in page
    assert '<div class="warn">' not in page


@pytest.mark.parametrize("name", ["report.xml", "report.json"])
def test_bad_input_replaces_an_earlier_runs_report_with_one_that_says_so(tmp_path: Path, name: str) -> None:
    """A run ended by bad input (exit 2) left an earlier run's report in place, for CI to read as its own."""
    root = tmp_path / "root"
    (root / "etc/docker").mkdir(parents=True)
    report = tmp_path / name
    report.write_text(_STALE["junit" if name.endswith(".xml") else "json"])
    argv = [TRUST_AGENT, "rollout", "--local", "--root", str(root), "--registry", "r.test"]
    run = subprocess.run(
        [*argv, "--source", str(tmp_path / "missing.yml"), "-o", str(report)],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert run.returncode == 2, run.stderr
    said = report.read_text()
    assert "missing.yml" in said and "cannot read" in said, said
    if name.endswith(".xml"):
        suite = ET.fromstring(said)
        assert (suite.get("errors"), suite.get("failures"), suite.get("tests")) == ("1", "0", "1")
        error = suite.find("testcase/error")
        assert error is not None and error.get("type") == "input"
    else:
        doc = json.loads(said)
        assert doc["hosts"] == [] and doc["stopped"].startswith(
            "bad input, nothing was changed on any host: "
        )
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == ["etc", "etc/docker"]


# --- rollout's TLS checks from here ---------------------------------------------------------------------

UNTRUSTED = "tls s3.test:9000: certificate not trusted: unable to get local issuer certificate"
UNREACHED = "tls registry.test: cannot connect: [Errno 111] Connection refused"


def _rolled_out() -> FleetResult:
    """A rollout whose storage check failed on trust and whose registry check could not connect, as
    the rollout command carries them."""
    notes = (
        UNTRUSTED + FAILED,
        "the hosts' pulls will fail: ...",
        UNREACHED + ": not checked from this machine",
    )
    checks = ("tls registry.test:443: ok", UNREACHED, UNTRUSTED)
    return _result("rollout", _unchanged("h1"), warnings=notes, tls_checks=checks)


def test_a_rollouts_untrusted_certificate_fails_its_junit_case_and_an_unreached_check_is_skipped() -> None:
    """rollout proved nothing of a certs.d change: JUnit had no TLS case to fail."""
    suite = ET.fromstring(render(_rolled_out(), "junit"))
    tls = {
        c.get("name"): c for c in suite.iter("testcase") if c.get("classname") == "trust-agent.rollout.tls"
    }
    assert list(tls) == ["registry.test:443", "registry.test", "s3.test:9000"]
    assert list(tls["registry.test:443"]) == []
    skipped = tls["registry.test"].find("skipped")
    assert skipped is not None and skipped.get("message") == (
        "not checked from this machine: cannot connect: [Errno 111] Connection refused"
    )
    failure = tls["s3.test:9000"].find("failure")
    assert (
        failure is not None
        and failure.get("message") == "certificate not trusted: unable to get local issuer certificate"
    )
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "1")
    out = suite.find("system-out")
    assert out is not None and "the hosts' pulls will fail" in (out.text or "")
    assert UNTRUSTED + FAILED not in (out.text or ""), "the failed check is its case, not a note"


def test_every_format_lists_a_rollouts_checks_and_marks_only_the_untrusted_one_failed() -> None:
    result = _rolled_out()
    doc = json.loads(render(result, "json"))
    assert doc["tls_checks"] == ["tls registry.test:443: ok", UNREACHED, UNTRUSTED + FAILED]
    for fmt in ("text", "markdown"):
        out = render(result, fmt)
        assert f"checked from here: {UNTRUSTED}{FAILED}" in out, fmt
        assert "the hosts' pulls will fail" in out, fmt
    page = render(result, "html")
    assert f'<li class="check-failed">checked from here: {UNTRUSTED}{FAILED}</li>' in page
    assert f'<li class="check-ok">checked from here: {UNREACHED}</li>' not in page  # not reached: not passed
    assert '<li class="check-ok">checked from here: tls registry.test:443: ok</li>' in page


def test_the_pending_hint_does_not_tell_to_drop_resolve_which_rollout_takes() -> None:
    text = render(_result("plan", _pending()), "text")
    assert "(less --dry-run or --detailed-exitcode)" in text
    assert "--resolve" not in text


def _html_checks(page: str) -> dict[str, str]:
    """The page's TLS checks: each line as listed → its class."""
    return {
        text: cls
        for cls, text in re.findall(
            r'<li class="(check-[a-z]+)">checked from here: ([^<]*?)(?: <span|</li>)', page
        )
    }


def test_html_shows_a_rollout_check_not_reached_from_here_as_not_verified_not_failed() -> None:
    """The page showed a check the controller could not make in the failed style, while the exit code,
    the text reports and JUnit (a skipped case) all said it failed nothing."""
    page = render(_rolled_out(), "html")
    checks = _html_checks(page)
    assert checks == {
        "tls registry.test:443: ok": "check-ok",
        UNREACHED: "check-unverified",
        UNTRUSTED + FAILED: "check-failed",
    }
    assert f"checked from here: {UNREACHED} <span" in page and "not verified from here" in page
    assert "li.check-unverified {" in page  # styled apart from the failed check
    suite = ET.fromstring(render(_rolled_out(), "junit"))
    junit = {
        c.get("name"): [child.tag for child in c]
        for c in suite.iter("testcase")
        if c.get("classname") == "trust-agent.rollout.tls"
    }
    # One verdict per check in both reports: passed, skipped (not verified from here), failed.
    as_junit = {"check-ok": [], "check-unverified": ["skipped"], "check-failed": ["failure"]}
    assert [as_junit[cls] for cls in checks.values()] == list(junit.values())


def test_html_still_fails_a_check_verify_could_not_make() -> None:
    """verify exits 1 on a check it could not make from here: there it is failed."""
    page = render(_verified("tls registry.test: ok", UNREACHED), "html")
    assert _html_checks(page) == {"tls registry.test: ok": "check-ok", UNREACHED + FAILED: "check-failed"}


# --- a policy never read -------------------------------------------------------------------------------


def _never_read() -> dict[str, FleetResult]:
    """The results of runs that stopped before their source was read, as the CLI makes them."""
    from agent.errors import UsageError
    from agent.run_report import Known

    known = Known(names=("h1",))
    return {
        "refused": known.refused("rollout", UsageError("--serial 'x': expected N or P%")),
        "interrupted": known.interrupted("rollout", signal.SIGINT),
    }


@pytest.mark.parametrize("stop", ["refused", "interrupted"])
@pytest.mark.parametrize("fmt", ["text", "markdown", "html", "junit"])
def test_a_report_of_a_policy_never_read_describes_no_storage_policy(stop: str, fmt: str) -> None:
    """A --serial refused before the source was read gave a report saying "storage no redirect",
    "insecure-registries: no" and a fingerprint, for a policy nobody had read."""
    out = render(_never_read()[stop], fmt)  # type: ignore[arg-type]
    assert "no redirect" not in out
    assert "fingerprint" not in out and "insecure-registries" not in out
    assert "the policy was not read: " in out


def test_the_table_and_the_text_report_say_the_policy_was_not_read() -> None:
    result = _never_read()["refused"]
    text = render(result, "text").splitlines()
    assert "policy  not read" in text
    assert "## Policy\n\nNot read.\n" in render(result, "markdown")
    assert '<p class="none">Not read.</p>' in render(result, "html")
    assert "no redirect" not in render_table(result)


def test_a_policy_read_is_still_described_in_full() -> None:
    result = _result("rollout", _unchanged("h1"))
    assert "storage https://s3.test:9000" in render(result, "text")
    assert "- storage: https://s3.test:9000" in render(result, "markdown")
    properties = {p.get("name") for p in ET.fromstring(render(result, "junit")).iter("property")}
    assert {"policy.fingerprint", "policy.registries"} <= properties
    assert json.loads(render(result, "json"))["policy_read"] is True


@pytest.mark.parametrize("stop", ["refused", "interrupted"])
def test_a_json_report_says_whether_its_policy_was_read(stop: str) -> None:
    """JSON kept the policy's keys (scripts read them), with a fingerprint of a policy nobody had read:
    ``policy_read`` says which it is."""
    doc = json.loads(render(_never_read()[stop], "json"))
    assert doc["policy_read"] is False and doc["policy"]["registries"] == []
