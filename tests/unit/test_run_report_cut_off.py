"""A host a second interrupt cut off in flight: what its apply had done is not known, and the reports
say so (no count of files, not 0 as for a host whose files are as they were)."""

from __future__ import annotations

import json

from agent.host_pool import CUT_OFF, NOT_STARTED
from agent.outcome import FleetResult
from agent.reports import render
from agent.reports.view import files_changed
from agent.run_report import as_it_stood, unread_policy


def test_a_host_cut_off_in_flight_has_no_count_of_files() -> None:
    cut = as_it_stood("h1", CUT_OFF)
    assert (cut.status, cut.error, files_changed(cut)) == ("failed", CUT_OFF, None)
    assert as_it_stood("h2", NOT_STARTED).status == "skipped"
    assert files_changed(as_it_stood("h3", "changed")) is not None


def test_the_json_report_says_the_count_is_not_known() -> None:
    result = FleetResult(
        mode="rollout",
        policy=unread_policy("stopped"),
        outcomes=(as_it_stood("h1", CUT_OFF), as_it_stood("h2", "unchanged")),
        started_at="2026-11-28T18:00:00+00:00",
        seconds=1.0,
    )
    hosts = {h["host"]: h for h in json.loads(render(result, "json"))["hosts"]}
    assert hosts["h1"]["files_changed"] is None and "canary image removed" in hosts["h1"]["error"]
    assert hosts["h2"]["files_changed"] == 0
