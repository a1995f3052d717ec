"""Reports: one fleet result rendered as JSON, text, Markdown, HTML and JUnit."""

from __future__ import annotations

import dataclasses
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.certs import CABundle, CertificateInfo
from agent.outcome import FleetResult, HostOutcome, Phase, printable
from agent.reports import FORMATS, render, to_dict
from agent.reports.summary import render as render_table
from agent.reports.view import summary_line
from agent.run_report import Report
from agent.runtimes.plan import FileChange, HostPlan
from agent.trust import CAFile, TrustPolicy

CA_PATH = "/etc/docker/certs.d/reg.example.com/trust-agent-storage-ca.crt"
OLD_CA_PATH = "/etc/docker/certs.d/old.example.com/trust-agent-storage-ca.crt"
DAEMON_JSON = "/etc/docker/daemon.json"
STATE_PATH = "/var/lib/trust-agent/state.json"
CANARY = "s3cr3t-canary-value"  # only in an internal change: no report may show it
SCRIPT = '"comment": "<script>alert(1)</script>"'


def _policy() -> TrustPolicy:
    cert = CertificateInfo(
        subject="CN=Storage Root CA",
        issuer="CN=Storage Root CA",
        sha256="AB:CD:EF",
        not_before=datetime(2024, 1, 1, tzinfo=UTC),
        not_after=datetime(2034, 1, 1, tzinfo=UTC),
        is_ca=True,
        self_signed=True,
    )
    bundle = CABundle(origin="ca/storage.pem", pem=b"-----BEGIN CERTIFICATE-----\n", certificates=(cert,))
    return TrustPolicy(
        registries=("reg.example.com", "reg.example.com:443"),
        storage_endpoint="minio.internal:9000",
        storage_scheme="https",
        ca_files=(CAFile("storage", "trust-agent-storage-ca.crt", bundle),),
        reasons=("storage.s3.regionendpoint sends clients to minio.internal:9000",),
        warnings=("policy warning",),
    )


def _changes() -> tuple[FileChange, ...]:
    return (
        FileChange(
            CA_PATH, "create", None, b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        ),
        FileChange(
            DAEMON_JSON,
            "update",
            b'{\n  "debug": true\n}\n',
            f'{{\n  "debug": true,\n  {SCRIPT},\n  "insecure-registries": ["reg.example.com"]\n}}\n'.encode(),
        ),
        FileChange(OLD_CA_PATH, "delete", b"old ca\n", None),
        FileChange(STATE_PATH, "create", None, f'{{"token": "{CANARY}"}}\n'.encode(), internal=True),
    )


def _phases(*spec: tuple[str, float, float]) -> tuple[Phase, ...]:
    return tuple(Phase(name, start, end) for name, start, end in spec)  # type: ignore[arg-type]


def fleet() -> FleetResult:
    changes = _changes()
    return FleetResult(
        mode="rollout",
        policy=_policy(),
        started_at="2024-05-01T12:00:00+00:00",
        seconds=10.0,
        stopped="failure budget exceeded: 3 of 7 hosts failed",
        warnings=("fleet warning",),
        outcomes=(
            HostOutcome(
                host="h1",
                status="changed",
                plan=HostPlan(
                    changes=changes,
                    engine_action="reload",
                    reasons=("install the storage CA", "list reg.example.com as insecure"),
                    warnings=("plan warning",),
                ),
                engine_action="reload",
                engine_version="20.10.24",
                checks=("dockerd --validate",),
                verified=("live config",),
                warnings=("host warning",),
                phases=_phases(
                    ("connect", 0.0, 0.5),
                    ("gather", 0.5, 1.0),
                    ("plan", 1.0, 1.25),
                    ("apply", 1.25, 2.0),
                    ("reload", 2.0, 3.0),
                    ("verify", 3.0, 4.0),
                ),
            ),
            HostOutcome(
                host="h2",
                status="unchanged",
                plan=HostPlan(),
                engine_version="24.0.7",
                phases=_phases(("connect", 0.0, 0.25), ("gather", 0.25, 0.5), ("plan", 0.5, 0.75)),
            ),
            HostOutcome(
                host="h3",
                status="failed",
                plan=HostPlan(blockers=("daemon.json line 3: not valid JSON",)),
                error="refused: daemon.json is not valid JSON",
                engine_version="23.0.1",
                phases=_phases(("connect", 0.0, 1.0), ("gather", 1.0, 2.0), ("plan", 2.0, 2.5)),
            ),
            HostOutcome(
                host="h4",
                status="rolled_back",
                plan=HostPlan(changes=changes[1:2], engine_action="reload"),
                engine_action="reload",
                error="dockerd did not come back after reload",
                phases=_phases(
                    ("connect", 0.0, 0.5),
                    ("apply", 0.5, 1.0),
                    ("reload", 1.0, 6.0),
                    ("rollback", 6.0, 8.0),
                ),
            ),
            HostOutcome(
                host="h5",
                status="unreachable",
                error="connection refused",
                phases=_phases(("connect", 0.0, 10.0)),
            ),
            HostOutcome(host="h6", status="skipped"),
            HostOutcome(
                host="h7",
                status="pending",
                plan=HostPlan(changes=changes[:1], reasons=("install the storage CA",)),
                engine_version="20.10.24",
                phases=_phases(("connect", 0.0, 0.5), ("gather", 0.5, 1.0), ("plan", 1.0, 1.5)),
            ),
        ),
    )


def _host(result: FleetResult, name: str) -> HostOutcome:
    return next(o for o in result.outcomes if o.host == name)


def _one_host(host: str, diff_text: str, error: str) -> FleetResult:
    change = FileChange(
        "/etc/docker/daemon.json", "update", b"{}\n", diff_text.encode("utf-8", "surrogatepass")
    )
    return FleetResult(
        mode="plan",
        policy=_policy(),
        started_at="2024-05-01T12:00:00+00:00",
        seconds=1.0,
        outcomes=(
            HostOutcome(
                host=host,
                status="pending",
                plan=HostPlan(changes=(change,)),
                error=error or None,
                phases=_phases(("connect", 0.0, 0.5)),
            ),
            HostOutcome(host=host + "-failed", status="failed", error=error or "x"),
        ),
    )


# --- every format ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_format_shows_internal_changes(fmt: str) -> None:
    out = render(fleet(), fmt)  # type: ignore[arg-type]
    assert CANARY not in out
    assert STATE_PATH not in out


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown report format 'yaml'"):
        render(fleet(), "yaml")  # type: ignore[arg-type]


def test_summary_line() -> None:
    result = fleet()
    three = FleetResult(
        mode="apply",
        policy=result.policy,
        started_at=result.started_at,
        seconds=1.0,
        outcomes=(
            HostOutcome("a", "changed"),
            HostOutcome("b", "unchanged"),
            HostOutcome("c", "changed"),
        ),
    )
    assert summary_line(three) == "3 hosts: 2 changed, 1 unchanged"
    assert summary_line(result) == (
        "7 hosts: 1 changed, 1 pending, 1 unchanged, 1 rolled_back, 1 failed, 1 unreachable, 1 skipped"
    )


# --- JSON --------------------------------------------------------------------------------------


def test_json_top_level() -> None:
    result = fleet()
    doc = json.loads(render(result, "json"))
    assert list(doc) == [
        "mode",
        "started_at",
        "seconds",
        "stopped",
        "policy",
        "summary",
        "hosts",
        "warnings",
        "tls_checks",
        "policy_read",
    ]
    assert doc["mode"] == "rollout"
    assert doc["seconds"] == 10.0
    assert doc["stopped"] == "failure budget exceeded: 3 of 7 hosts failed"
    assert doc["policy"] == json.loads(json.dumps(result.policy.as_dict()))
    assert doc["summary"] == {
        "changed": 1,
        "pending": 1,
        "unchanged": 1,
        "rolled_back": 1,
        "failed": 1,
        "unreachable": 1,
        "skipped": 1,
    }
    assert [h["host"] for h in doc["hosts"]] == ["h1", "h2", "h3", "h4", "h5", "h6", "h7"]
    assert doc["warnings"] == ["fleet warning"]


def test_json_changed_host() -> None:
    result = fleet()
    h1 = json.loads(render(result, "json"))["hosts"][0]
    assert list(h1) == [
        "host",
        "status",
        "changed",
        "changes",
        "files_changed",
        "engine_action",
        "engine_version",
        "checks",
        "verified",
        "error",
        "warnings",
        "reasons",
        "blockers",
        "phases",
    ]
    assert h1["status"] == "changed"
    assert h1["changed"] is True
    expected = _changes()[:3]
    assert [(c["path"], c["action"]) for c in h1["changes"]] == [
        (CA_PATH, "create"),
        (DAEMON_JSON, "update"),
        (OLD_CA_PATH, "delete"),
    ]
    assert [c["diff"] for c in h1["changes"]] == [c.diff() for c in expected]
    assert h1["changes"][0]["diff"].startswith("--- /dev/null\n+++ " + CA_PATH)
    assert h1["engine_action"] == "reload"
    assert h1["engine_version"] == "20.10.24"
    assert h1["checks"] == ["dockerd --validate"]
    assert h1["verified"] == ["live config"]
    assert h1["error"] is None
    assert h1["warnings"] == ["host warning", "plan warning"]
    assert h1["reasons"] == ["install the storage CA", "list reg.example.com as insecure"]
    assert h1["blockers"] == []
    assert h1["phases"][0] == {"name": "connect", "start": 0.0, "end": 0.5}
    assert [p["name"] for p in h1["phases"]] == ["connect", "gather", "plan", "apply", "reload", "verify"]


def test_json_other_hosts() -> None:
    hosts = {h["host"]: h for h in json.loads(render(fleet(), "json"))["hosts"]}
    assert hosts["h2"]["changed"] is False
    assert hosts["h2"]["changes"] == []
    assert hosts["h2"]["engine_action"] == "none"
    assert hosts["h3"]["error"] == "refused: daemon.json is not valid JSON"
    assert hosts["h3"]["blockers"] == ["daemon.json line 3: not valid JSON"]
    assert hosts["h3"]["changed"] is False
    assert hosts["h4"]["changed"] is False  # restored: the host is as it was
    assert [c["action"] for c in hosts["h4"]["changes"]] == ["update"]
    assert hosts["h5"]["status"] == "unreachable"
    assert hosts["h5"]["engine_version"] is None
    assert hosts["h6"]["phases"] == []
    assert hosts["h7"]["changed"] is True
    assert hosts["h7"]["status"] == "pending"


def test_to_dict_is_what_json_encodes() -> None:
    result = fleet()
    assert json.loads(render(result, "json")) == to_dict(result)


# --- text --------------------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_text_plain() -> None:
    out = render(fleet(), "text")
    lines = out.splitlines()
    assert "\x1b" not in out
    assert "h1  changed  reload  docker 20.10.24" in lines
    assert "h2  unchanged  none  docker 24.0.7" in lines
    assert "h6  skipped" in lines  # never started: what dockerd would need is not known
    assert "h5  unreachable" in lines
    assert f"+++ {CA_PATH}" in lines
    assert f"+  {SCRIPT}," in lines
    assert f"--- {OLD_CA_PATH}" in lines
    assert "-old ca" in lines
    assert "  why: install the storage CA" in lines
    assert "  warning: plan warning" in lines
    assert "  error: connection refused" in lines
    assert "  blocked: daemon.json line 3: not valid JSON" in lines
    assert "  why: storage.s3.regionendpoint sends clients to minio.internal:9000" in lines
    assert "stopped: failure budget exceeded: 3 of 7 hosts failed" in lines
    assert "warning: fleet warning" in lines
    assert lines[-1].startswith("7 hosts: 1 changed, 1 pending, 1 unchanged,")
    # Host blocks come first, each ends with a blank line; the policy follows.
    assert lines.index("h2  unchanged  none  docker 24.0.7") < lines.index(
        "  ca: trust-agent-storage-ca.crt (storage, from ca/storage.pem)"
    )


def test_text_color_is_the_plain_text_coloured() -> None:
    result = fleet()
    coloured = render(result, "text", color=True)
    assert "\x1b[" in coloured
    assert _ANSI.sub("", coloured) == render(result, "text")
    added = next(line for line in coloured.splitlines() if SCRIPT in line)
    assert added.startswith("\x1b[32m")  # green


def test_text_does_not_read_markup_in_content() -> None:
    out = render(_one_host("[red]h[/red]", "[bold]x[/bold]\n", "[link=x]e"), "text", color=True)
    plain = _ANSI.sub("", out)
    assert "[red]h[/red]  pending" in plain
    assert "+[bold]x[/bold]" in plain
    assert "error: [link=x]e" in plain


# --- Markdown ----------------------------------------------------------------------------------


def _md_rows(out: str) -> list[list[str]]:
    rows = []
    for line in out.splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            cells = re.split(r"(?<!\\)\|", line)[1:-1]
            rows.append([c.strip() for c in cells])
    return rows


def test_markdown_table() -> None:
    rows = _md_rows(render(fleet(), "markdown"))
    assert rows[0] == ["host", "status", "engine action", "engine version", "changes", "error"]
    assert rows[1:] == [
        ["h1", "changed", "reload", "20.10.24", "3", ""],
        ["h2", "unchanged", "none", "24.0.7", "0", ""],
        ["h3", "failed", "none", "23.0.1", "0", "refused: daemon.json is not valid JSON"],
        ["h4", "rolled_back", "reload", "", "0", "dockerd did not come back after reload"],
        ["h5", "unreachable", "", "", "", "connection refused"],
        ["h6", "skipped", "", "", "", ""],
        ["h7", "pending", "none", "20.10.24", "1", ""],
    ]


def test_markdown_hosts_diffs_and_policy() -> None:
    out = render(fleet(), "markdown")
    assert "### h1 — changed" in out
    assert "```diff\n" + _changes()[1].diff().rstrip("\n") + "\n```" in out
    assert "`delete` " + OLD_CA_PATH.replace("_", r"\_") in out
    assert "## Policy" in out
    assert "1. storage.s3.regionendpoint sends clients to minio.internal:9000" in out
    assert "> **stopped**: failure budget exceeded: 3 of 7 hosts failed" in out


def test_markdown_escapes_cells_and_fences() -> None:
    out = render(_one_host("a|b", "```\nx\n", "line one\nline | two"), "markdown")
    rows = _md_rows(out)
    assert rows[1][0] == r"a\|b"
    assert rows[1][5] == r"line one line \| two"
    assert "````diff\n" in out  # longer than the backticks inside the diff


# --- HTML --------------------------------------------------------------------------------------

_VOID = {"meta", "br", "hr", "img", "input", "link", "source", "wbr", "col", "area", "base"}


@dataclass
class _Page(HTMLParser):
    """Walks the page: checks tags balance, keeps elements with their attributes and text."""

    elements: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    stack: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(convert_charrefs=True)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.texts.append(data)

    def by_class(self, cls: str) -> list[dict[str, str]]:
        return [a for _, a in self.elements if cls in a.get("class", "").split()]


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    return parser


def _percent(style: str, prop: str) -> float:
    match = re.search(rf"(?:^|;){prop}:([0-9.]+)%", style)
    assert match, style
    return float(match.group(1))


def test_html_escapes_diffs_and_is_self_contained() -> None:
    out = render(fleet(), "html")
    page = _parse(out)
    tags = {tag for tag, _ in page.elements}
    assert "script" not in tags
    assert "link" not in tags and "img" not in tags
    assert "+  " + SCRIPT + "," in page.texts  # one diff line, shown as written
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert not re.search(r"(src|href)=\"(https?:)?//", out)


def test_html_status_table_and_counts() -> None:
    page = _parse(render(fleet(), "html"))
    rows = [a["class"] for t, a in page.elements if t == "tr" and a.get("class", "").startswith("row-")]
    assert rows == [f"row-{o.status}" for o in fleet().outcomes]
    chips = [a["class"] for a in page.by_class("chip")]
    assert chips == [
        f"chip s-{s}"
        for s in ("changed", "pending", "unchanged", "rolled_back", "failed", "unreachable", "skipped")
    ]
    assert "refused: daemon.json is not valid JSON" in page.texts
    assert "Stopped early:" in page.texts
    # h5 and h6: no engine action nor file count known; h6 never started: no time, no bar.
    assert [t for t in page.texts if t == "—"] == ["—", "—", "—", "—", "—", "—"]
    assert "storage.s3.regionendpoint sends clients to minio.internal:9000" in page.texts


def test_html_diff_lines_are_classed() -> None:
    page = _parse(render(fleet(), "html"))
    kinds = [a["class"] for t, a in page.elements if t == "span" and a.get("class", "").startswith("d-")]
    assert {"d-file", "d-hunk", "d-add", "d-del", "d-ctx"} <= set(kinds)


def test_html_timeline_bars_are_proportional() -> None:
    result = fleet()
    page = _parse(render(result, "html"))
    bars = page.by_class("bar")
    phases = [p for o in result.outcomes for p in o.phases]
    assert [b["data-phase"] for b in bars] == [p.name for p in phases]
    for bar, phase in zip(bars, phases, strict=True):
        # The run lasted 10 s: one second is 10 % of the axis.
        assert _percent(bar["style"], "width") == pytest.approx(phase.seconds * 10, abs=1e-3)
        assert _percent(bar["style"], "left") == pytest.approx(phase.start * 10, abs=1e-3)
        assert f"{phase.seconds:.2f} s" in bar["title"]
    tracks = page.by_class("track")
    assert [t["data-host"] for t in tracks] == [f"host-{i}" for i in range(1, 8)]
    # The slow reload on h4 is five times as wide as h1's.
    reloads = [_percent(b["style"], "width") for b in bars if b["data-phase"] == "reload"]
    assert reloads[1] == pytest.approx(5 * reloads[0])


def test_html_axis_covers_phases_past_the_run_time() -> None:
    result = _one_host("h", "x\n", "")
    late = FleetResult(
        mode="plan",
        policy=result.policy,
        started_at=result.started_at,
        seconds=1.0,
        outcomes=(HostOutcome("h", "unchanged", phases=_phases(("connect", 0.0, 4.0))),),
    )
    bar = _parse(render(late, "html")).by_class("bar")[0]
    assert _percent(bar["style"], "width") == pytest.approx(100.0)


# --- JUnit -------------------------------------------------------------------------------------


def test_junit_counts_and_cases() -> None:
    suite = ET.fromstring(render(fleet(), "junit"))
    assert suite.tag == "testsuite"
    assert suite.get("name") == "trust-agent rollout"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("7", "3", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases) == ["h1", "h2", "h3", "h4", "h5", "h6", "h7"]
    assert {c.get("classname") for c in cases.values()} == {"trust-agent.rollout"}
    assert cases["h1"].get("time") == "4.000"
    assert cases["h6"].get("time") == "0.000"
    failures = {name: c.find("failure") for name, c in cases.items()}
    assert {n for n, f in failures.items() if f is not None} == {"h3", "h4", "h5"}
    h3 = failures["h3"]
    assert h3 is not None
    assert h3.get("message") == "refused: daemon.json is not valid JSON"
    assert h3.get("type") == "failed"
    assert "blocked: daemon.json line 3: not valid JSON" in (h3.text or "")
    h4 = failures["h4"]
    assert h4 is not None
    assert h4.get("message") == "dockerd did not come back after reload"
    assert SCRIPT in (h4.text or "")  # the change that was rolled back
    h5 = failures["h5"]
    assert h5 is not None
    assert h5.get("message") == "connection refused"
    assert cases["h6"].find("skipped") is not None


def test_junit_pending_host_passes_with_its_diff() -> None:
    suite = ET.fromstring(render(fleet(), "junit"))
    h7 = next(c for c in suite.iter("testcase") if c.get("name") == "h7")
    assert h7.find("failure") is None and h7.find("skipped") is None
    out = h7.find("system-out")
    assert out is not None
    assert _changes()[0].diff() in (out.text or "")
    h2 = next(c for c in suite.iter("testcase") if c.get("name") == "h2")
    assert list(h2) == []


_TLS_FAILED = " (a failed check from this machine: exit 1)"  # how verify adds a failed check


def _verify_fleet(*warnings: str) -> FleetResult:
    return FleetResult(
        mode="verify",
        policy=_policy(),
        started_at="2024-05-01T12:00:00+00:00",
        seconds=1.0,
        warnings=warnings,
        outcomes=(HostOutcome("h1", "unchanged", plan=HostPlan()), _host(fleet(), "h7")),
    )


def test_junit_verify_fails_a_pending_host_as_drift() -> None:
    suite = ET.fromstring(render(_verify_fleet(), "junit"))
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases["h1"]) == []
    failure = cases["h7"].find("failure")
    assert failure is not None
    assert failure.get("message") == "pending: install the storage CA"
    assert failure.get("type") == "pending"
    assert _changes()[0].diff() in (failure.text or "")


def test_junit_verify_makes_each_failed_tls_check_a_failing_case() -> None:
    untrusted = "tls minio.internal:9000: certificate not trusted: unable to get local issuer certificate"
    timeout = "tls [2001:db8::1]:5000: cannot connect: timed out"
    result = _verify_fleet(untrusted + _TLS_FAILED, "fleet warning", timeout + _TLS_FAILED)
    suite = ET.fromstring(render(result, "junit"))
    assert (suite.get("tests"), suite.get("failures")) == ("4", "3")
    tls = [c for c in suite.iter("testcase") if c.get("classname") == "trust-agent.verify.tls"]
    assert [c.get("name") for c in tls] == ["minio.internal:9000", "[2001:db8::1]:5000"]
    messages = [f.get("message") for c in tls for f in c.iter("failure")]
    assert messages == [
        "certificate not trusted: unable to get local issuer certificate",
        "cannot connect: timed out",
    ]
    notes = suite.find("system-out")
    assert notes is not None and "fleet warning" in (notes.text or "")
    assert "not trusted" not in (notes.text or "")  # shown once: as its test case


def test_junit_fails_no_pending_host_outside_verify() -> None:
    suite = ET.fromstring(render(dataclasses.replace(_verify_fleet(), mode="plan"), "junit"))
    assert suite.get("failures") == "0"


def test_what_a_host_said_reaches_no_terminal_as_an_escape_sequence() -> None:
    """A start-up check's journal line quoted in the error: it set the window title, cleared the screen
    and swallowed the closing summary into an unterminated OSC sequence."""
    said = "docker.service said: \x1b[2J\x1b]0;PWNED\x07\x1b[31mRED\u202e"
    result = _one_host("h1", "+x\n", said)
    outputs = [render(result, fmt) for fmt in FORMATS]
    outputs.append(render_table(result))
    for output in outputs:
        assert not any(c in output for c in "\x1b\x07\u202e"), output
    assert result.outcomes[1].error == "docker.service said: \\x1b[2J\\x1b]0;PWNED\\x07\\x1b[31mRED\\u202e"
    warned = HostOutcome(host="h", status="changed", warnings=("line\none\x9b",))
    assert warned.warnings == ("line one\\x9b",)


def test_rollout_diff_with_a_report_file_prints_the_diffs_and_writes_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``rollout --diff -o FILE`` printed the closing table alone: the diffs asked for were nowhere."""
    out = tmp_path / "run.json"
    result = _one_host("h1", "+the added line\n", "")
    Report.of(None, str(out), diff=True).emit(result)
    assert "+the added line" in capsys.readouterr().out
    assert json.loads(out.read_text(encoding="utf-8"))["hosts"][0]["host"] == "h1"
    Report.of(None, str(out), diff=False).emit(result)
    assert "+the added line" not in capsys.readouterr().out  # the table alone


def test_a_text_report_on_stdout_leaves_out_the_checks_stderr_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """verify said each TLS check on stderr, then its text report on stdout listed each again (a failed
    one twice over: as a check and as the warning that fails the run). A file has no stderr: it keeps them."""
    passed = "tls reg.example.com: ok"
    failed = "tls minio.internal:9000: certificate not trusted: unable to get local issuer certificate"
    result = dataclasses.replace(
        _verify_fleet(failed + _TLS_FAILED, "fleet warning"), tls_checks=(passed, failed)
    )
    out = tmp_path / "verify.txt"
    Report.of(None, str(out), diff=True).emit(result, said=(failed + _TLS_FAILED,))
    shown = capsys.readouterr().out
    assert "tls " not in shown and "checked from here" not in shown, shown
    assert "warning: fleet warning" in shown and "1 pending" in shown, shown  # the rest as it was
    for written in (out.read_text(encoding="utf-8"), render(result, "text")):
        assert f"checked from here: {passed}\n" in written, written
        assert f"checked from here: {failed}{_TLS_FAILED}\n" in written, written
        assert written.count("certificate not trusted") == 1, written


# --- properties --------------------------------------------------------------------------------

_SPECIAL = st.sampled_from([*"<>&\"'\n\r\t", "]]>", "<script>", "&amp;", "é", "名", "🐳", "\u2028"])


def _texts(chars: st.SearchStrategy[str], min_size: int = 0) -> st.SearchStrategy[str]:
    return st.lists(st.one_of(_SPECIAL, chars), min_size=min_size, max_size=20).map("".join)


_ANY_TEXT = _texts(st.characters())
# What survives every format unchanged: no control or format characters (XML cannot carry the first,
# outcomes escape both), one line.
_PRINTABLE = _texts(st.characters(blacklist_categories=("Cc", "Cs", "Cf", "Zl", "Zp")), min_size=1).filter(
    lambda s: s.strip() == s and s and not any(c in s for c in "\n\r\u2028")
)


@settings(max_examples=60, deadline=None)
@given(host=_ANY_TEXT, diff_text=_ANY_TEXT, error=_ANY_TEXT)
def test_json_round_trips_exactly(host: str, diff_text: str, error: str) -> None:
    result = _one_host(host, diff_text, error)
    doc = json.loads(render(result, "json"))
    assert doc == to_dict(result)
    assert doc["hosts"][0]["host"] == host
    assert doc["hosts"][1]["error"] == printable(error or "x")
    assert doc["hosts"][0]["changes"][0]["diff"] == result.outcomes[0].plan.changes[0].diff()  # type: ignore[union-attr]


@settings(max_examples=60, deadline=None)
@given(host=_ANY_TEXT, diff_text=_ANY_TEXT, error=_ANY_TEXT)
def test_junit_and_html_stay_well_formed(host: str, diff_text: str, error: str) -> None:
    result = _one_host(host, diff_text, error)
    suite = ET.fromstring(render(result, "junit"))
    assert len(list(suite.iter("testcase"))) == 2
    page = _parse(render(result, "html"))
    assert "script" not in {tag for tag, _ in page.elements}
    assert len(page.by_class("bar")) == 1


@settings(max_examples=60, deadline=None)
@given(host=_PRINTABLE, line=_PRINTABLE, error=_PRINTABLE)
def test_text_from_hosts_comes_back_as_written(host: str, line: str, error: str) -> None:
    result = _one_host(host, line + "\n", error)
    suite = ET.fromstring(render(result, "junit"))
    cases = list(suite.iter("testcase"))
    assert cases[0].get("name") == host
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("message") == error
    page = _parse(render(result, "html"))
    assert host in page.texts
    assert error in page.texts
    if not line.startswith(("++", "--")):  # otherwise it reads as a file header; still shown
        assert "+" + line in page.texts


def test_a_blocked_host_shows_why_once_and_no_diff_of_changes_that_will_not_happen() -> None:
    blocker = "daemon.json is not valid JSON (line 2, column 3): fix it first"
    plan = HostPlan(changes=_changes(), engine_action="reload", blockers=(blocker,))
    blocked = HostOutcome("h1", "failed", plan, "none", error=blocker)
    result = FleetResult(
        mode="plan",
        policy=_policy(),
        outcomes=(blocked,),
        started_at="2026-01-01T00:00:00+00:00",
        seconds=1.0,
    )
    for fmt in ("text", "markdown"):
        out = render(result, fmt)
        section = out.split("## Hosts")[-1]  # Markdown's table has the error in a cell of its own
        assert section.count(blocker) == 1, (fmt, out)
        assert "MIIB" not in out and CA_PATH not in out, fmt
    assert json.loads(render(result, "json"))["hosts"][0]["changes"] == []
    # An error that says more than the blockers is still shown.
    other = dataclasses.replace(blocked, error=f"{blocker}; and something else")
    shown = render(dataclasses.replace(result, outcomes=(other,)), "text")
    assert "error: " in shown and "and something else" in shown


def test_junit_shows_a_passing_hosts_warnings_as_the_text_report_does() -> None:
    warning = "daemon.json is not valid JSON: dockerd will not start or reload with it as it is"
    quiet = HostOutcome("h1", "unchanged", HostPlan(engine_action="none"), "none", warnings=(warning,))
    result = FleetResult(
        mode="verify",
        policy=_policy(),
        outcomes=(quiet,),
        started_at="2026-01-01T00:00:00+00:00",
        seconds=1.0,
    )
    assert warning in render(result, "text")
    case = ET.fromstring(render(result, "junit")).find("testcase")
    assert case is not None and case.find("failure") is None
    out = case.find("system-out")
    assert out is not None and f"warning: {warning}" in (out.text or "")


@pytest.mark.parametrize(
    "said",
    [
        "canary pull of registry.test/test/nope:1 failed: 404 Client Error for "
        "http+docker://localhost/v1.41/images/create?tag=1&fromImage=registry.test%2Ftest%2Fnope: Not Found "
        '("manifest for registry.test/test/nope:1 not found: manifest unknown")',
        "canary pull of registry.test:5000/x:1 failed: 500 Server Error for "
        "http+docker://ssh/v1.41/images/registry.test:5000/x:1/json: Internal Server Error "
        '("manifest for registry.test/test/nope:1 not found: manifest unknown")',
    ],
)
def test_an_engine_api_error_names_no_internal_sdk_url(said: str) -> None:
    """The docker SDK's http+docker:// URL is no address anyone can use; the engine's own words stay."""
    outcome = HostOutcome("h1", "rolled_back", engine_action="none", error=said, warnings=(said,))
    result = dataclasses.replace(fleet(), outcomes=(outcome,))
    for fmt in FORMATS:
        out = render(result, fmt)
        assert "http+docker" not in out, fmt
    assert outcome.error is not None and "http+docker" not in outcome.error
    assert outcome.error.startswith(said.partition(" for ")[0] + ": ")
    assert outcome.error.endswith('("manifest for registry.test/test/nope:1 not found: manifest unknown")')
