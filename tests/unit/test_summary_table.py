"""The rollout's closing table: one row per host with what was done and proved."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.outcome import FleetResult, HostOutcome, Phase
from agent.reports.summary import render
from agent.runtimes.plan import FileChange, HostPlan
from agent.trust import TrustPolicy

POLICY = TrustPolicy(registries=("registry.test",), storage_endpoint=None, storage_scheme=None)


def test_rows_carry_status_action_version_files_and_errors_without_colour_codes() -> None:
    plan = HostPlan(
        changes=(
            FileChange("/etc/docker/daemon.json", "update", b"{}", b"{}\n"),
            FileChange("/var/lib/trust-agent/docker-state.json", "create", None, b"{}", internal=True),
        ),
        engine_action="reload",
    )
    result = FleetResult(
        mode="rollout",
        policy=POLICY,
        outcomes=(
            HostOutcome(
                "h1",
                "changed",
                plan,
                "reload",
                "20.10.24",
                verified=("live config",),
                phases=(Phase("connect", 0.0, 0.4), Phase("verify", 0.4, 1.25)),
            ),
            HostOutcome("h2", "unreachable", error="h2 (198.51.100.22): connection refused"),
            HostOutcome("h3", "skipped"),
        ),
        started_at="2026-01-01T00:00:00+00:00",
        seconds=1.5,
        stopped="batch 1 of 2: budget exceeded",
    )
    out = render(result)
    lines = out.splitlines()
    assert lines[0].split() == ["host", "status", "action", "engine", "files", "verified", "time", "error"]
    assert lines[1].split()[:7] == ["h1", "changed", "reload", "20.10.24", "1", "live", "config"]
    assert "1.2s" in lines[1] or "1.3s" in lines[1]
    assert "connection refused" in lines[2] and "unreachable" in lines[2]
    assert lines[3].split()[:2] == ["h3", "skipped"]
    assert "stopped: batch 1 of 2" in out
    assert "\x1b[" not in out
    assert "\x1b[" in render(result, color=True)


def test_the_policys_warnings_and_each_hosts_own_are_shown_after_the_table() -> None:
    policy = TrustPolicy(
        registries=("registry.test",),
        storage_endpoint="s3.test:9000",
        storage_scheme="https",
        warnings=("engines are redirected to https://s3.test:9000; give it with --storage-ca FILE",),
    )
    down = "dockerd is not running (docker.service inactive): its live config was not read"
    outcomes = tuple(
        HostOutcome(f"h{n}", "unchanged", warnings=(down,) if n != 2 else ()) for n in range(1, 7)
    )
    result = FleetResult(
        mode="rollout", policy=policy, outcomes=outcomes, started_at="2026-01-01T00:00:00+00:00", seconds=1.0
    )
    lines = render(result).splitlines()
    assert "warning: engines are redirected to https://s3.test:9000; give it with --storage-ca FILE" in lines
    assert f"warning (h1, h3, h4 and 2 more): {down}" in lines
    assert lines[-1].startswith("6 hosts: 6 unchanged")


def _result_of(*outcomes: HostOutcome) -> FleetResult:
    return FleetResult(
        mode="rollout", policy=POLICY, outcomes=outcomes, started_at="2026-01-01T00:00:00+00:00", seconds=1.0
    )


def test_a_long_host_name_is_shown_whole_and_the_error_said_whole_under_the_table() -> None:
    name = "engine-host-0042.eu-west-1.compute.internal.example.corp"
    error = (
        "live config does not match after 20s: registry.test missing from insecure-registries; restored "
        "the files and reloaded dockerd again, which took them"
    )
    out = render(
        _result_of(
            HostOutcome(name, "rolled_back", None, "reload", "26.1.5", error=error),
            HostOutcome("h2", "unreachable", error="h2 (198.51.100.22): connection refused"),
        )
    )
    assert out.splitlines()[1].startswith(name + " ")
    assert " ".join(out.split()).count("which took them") == 1  # said whole, once
    assert f"error ({name}): {error}" in out.splitlines()  # on one line, unwrapped: copied as said
    assert all(len(line) <= 160 for line in out.splitlines() if not line.startswith("error ("))


def test_a_name_past_the_kept_length_is_folded_onto_the_next_line_not_cut() -> None:
    name = "h" * 100
    out = render(_result_of(HostOutcome(name, "failed", error="an error that needs room " * 4)))
    assert "".join(line.split()[0] for line in out.splitlines()[1:3] if line.startswith("h")) == name
    assert "…" not in out


def test_a_rolled_back_host_shows_the_action_that_was_taken_and_undone() -> None:
    out = render(_result_of(HostOutcome("h1", "rolled_back", engine_action="reload", error="no match")))
    assert out.splitlines()[1].split()[:3] == ["h1", "rolled_back", "reload"]
    out = render(_result_of(HostOutcome("h1", "failed", engine_action="reload", error="refused")))
    assert out.splitlines()[1].split()[:3] == ["h1", "failed", "-"]


def test_at_a_terminal_the_table_takes_the_terminals_width(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from agent.reports import summary

    monkeypatch.setattr(summary.sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(summary.shutil, "get_terminal_size", lambda fallback: os.terminal_size((100, 40)))
    warning = " ".join(f"word{i}" for i in range(40))  # folded to the table's width under it
    result = dataclasses.replace(
        _result_of(HostOutcome("h1", "failed", error="refused")), warnings=(warning,)
    )
    assert 90 < max(len(line) for line in render(result).splitlines()) <= 100
    monkeypatch.setattr(summary.sys.stdout, "isatty", lambda: False)
    assert max(len(line) for line in render(result).splitlines()) > 100


# --- the files column: what the run changed ----------------------------------------------------------

_CA = "/etc/docker/certs.d/registry.test/trust-agent-storage-ca.crt"
_TWO_FILES = HostPlan(
    changes=(
        FileChange(_CA, "create", None, b"-----BEGIN CERTIFICATE-----\n"),
        FileChange("/etc/docker/daemon.json", "update", b"{}", b'{"insecure-registries": []}\n'),
    ),
    engine_action="reload",
)


def _files_in_every_format(result: FleetResult) -> dict[str, dict[str, str]]:
    """Each format's file count per host: the table's column, Markdown's and HTML's, and JSON's."""
    import json
    import re

    from agent.reports import render as render_format

    table = {line.split()[0]: line.split()[4] for line in render(result).splitlines()[1:] if line[:1] == "h"}
    markdown = {
        cells[0]: cells[4]
        for line in render_format(result, "markdown").splitlines()
        if re.match(r"\| h\d ", line)
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    html_rows = re.findall(
        r'<a href="#host-\d+">(h\d)</a></td>(?:\s*<td>.*?</td>){3}\s*<td class="num">([^<]*)</td>',
        render_format(result, "html"),
        flags=re.S,
    )
    json_doc = {
        h["host"]: "-" if h["files_changed"] is None else str(h["files_changed"])
        for h in json.loads(render_format(result, "json"))["hosts"]
    }
    return {"table": table, "markdown": markdown, "html": dict(html_rows), "json": json_doc}


def test_a_host_whose_apply_failed_or_was_blocked_counts_no_file_changed_in_any_format() -> None:
    """The table showed the plan's 2 files for a host whose apply failed (a read-only /etc/docker):
    nothing was changed there."""
    result = _result_of(
        HostOutcome("h1", "changed", _TWO_FILES, "reload"),
        HostOutcome("h2", "failed", _TWO_FILES, "none", error="cannot write /etc/docker: read-only"),
        HostOutcome("h3", "rolled_back", _TWO_FILES, "reload", error="dockerd refused the reload"),
        HostOutcome("h4", "failed", dataclasses.replace(_TWO_FILES, blockers=("refused",)), error="refused"),
        HostOutcome("h5", "unreachable", _TWO_FILES, error="lost during apply: connection reset"),
        HostOutcome("h6", "skipped"),
    )
    cells = _files_in_every_format(result)
    expected = {"h1": "2", "h2": "0", "h3": "0", "h4": "0", "h5": "-", "h6": "-"}
    assert cells["table"] == expected
    assert cells["json"] == expected
    assert cells["markdown"] == {**expected, "h5": "", "h6": ""}  # Markdown leaves what is not known blank
    assert cells["html"] == {**expected, "h5": "—", "h6": "—"}


def test_a_dry_run_counts_the_files_it_would_change() -> None:
    result = dataclasses.replace(_result_of(HostOutcome("h1", "pending", _TWO_FILES, "reload")), mode="plan")
    assert {fmt: cells["h1"] for fmt, cells in _files_in_every_format(result).items()} == dict.fromkeys(
        ("table", "markdown", "html", "json"), "2"
    )


def test_a_host_whose_apply_timed_out_counts_its_files_as_not_known_in_every_format() -> None:
    """A timed-out apply may have written some of its files, or all: every format said 0 for it."""
    timed_out = "h1: command timed out after 120s during the apply: the host may have been changed part way"
    result = _result_of(
        HostOutcome("h1", "failed", _TWO_FILES, "none", error=timed_out, changes_unknown=True),
        HostOutcome("h2", "failed", _TWO_FILES, "none", error="cannot write /etc/docker: read-only"),
    )
    cells = _files_in_every_format(result)
    assert cells["table"] == cells["json"] == {"h1": "-", "h2": "0"}
    assert cells["markdown"] == {"h1": "", "h2": "0"}
    assert cells["html"] == {"h1": "—", "h2": "0"}


# --- option hints under the table ------------------------------------------------------------------------

_UNRESOLVED = (
    "tls registry.test: cannot connect: [Errno -2] Name or service not known: this machine cannot resolve "
    "registry.test; give its address with --resolve registry.test:ADDR: not checked from this machine (a "
    "note, not a failure: the hosts may reach it where this machine cannot)"
)


@pytest.mark.parametrize("width", [60, 80, 147, 160])
def test_an_option_hint_under_the_table_stays_on_one_line_to_be_copied(
    monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    """A CI log of 160 columns showed "--resolve" at the end of one line and "registry.test:ADDR" at the
    start of the next: copied, the hint gave --resolve no value."""
    from agent.reports import summary

    monkeypatch.setattr(summary, "_width", lambda: width)
    result = dataclasses.replace(_result_of(HostOutcome("h1", "unchanged")), warnings=(_UNRESOLVED,))
    lines = render(result).splitlines()
    assert sum("--resolve registry.test:ADDR" in line for line in lines) == 1, lines
    assert not [line for line in lines if line.rstrip().endswith("--resolve")], lines
    said = lines[lines.index(next(line for line in lines if line.startswith("warning: "))) :][:-1]
    # Folded between words: nothing lost or added.
    assert " ".join(line.rstrip() for line in said) == f"warning: {_UNRESOLVED}"
    assert all(len(line) <= width for line in said), said


_OPTIONS = ("--resolve", "(--limit")


@given(
    words=st.lists(st.sampled_from(["a", "word", "longer-word", "x.test:ADDR", *_OPTIONS]), max_size=30),
    width=st.integers(min_value=10, max_value=80),
)
def test_notes_fold_between_words_and_never_part_an_option_from_its_value(
    words: list[str], width: int
) -> None:
    from agent.reports.summary import _folded

    text = " ".join(words)
    lines = _folded(text, width)
    assert " ".join(lines) == text
    for at, line in enumerate(lines):
        said = line.split(" ")
        # Past the width only where one word, or one option with its value, is longer than a line.
        assert len(line) <= width or len(said) == 1 or (len(said) == 2 and said[0] in _OPTIONS), line
        if said[-1] in _OPTIONS and at + 1 < len(lines):  # its value is never on the next line
            assert lines[at + 1].split(" ")[0] in _OPTIONS, lines
