"""The reports of runs on real hosts: the file counts say what the run changed, not what its plan
held; a second interrupt still leaves the report asked for."""

from __future__ import annotations

import json
import queue
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.host_pool import CUT_OFF
from agent.run_report import STOPPED_AT_ONCE
from tests.e2e.probes import by_host, ca_args, docker_tree, skip_args
from tests.lab import Host, Lab


def test_a_host_whose_etc_docker_is_read_only_counts_no_file_changed_in_the_table_and_reports(
    lab: Lab, tmp_path: Path
) -> None:
    """The closing table showed the plan's files for a host whose apply failed: nothing changed there."""
    host = lab.hosts[0]
    json_report, markdown_report = tmp_path / "report.json", tmp_path / "report.md"
    tree = docker_tree(lab, host)
    lab.ssh(host, "mount -o bind,ro /etc/docker /etc/docker")
    try:
        proc = lab.run_agent(
            "rollout", "-i", str(lab.inventory_yml), *ca_args(lab), "--limit", host.name,
            "-o", str(json_report), "-o", str(markdown_report),
        )  # fmt: skip
    finally:
        lab.ssh(host, "umount /etc/docker")
    assert proc.returncode == 1, proc.stderr
    outcome = by_host(json.loads(json_report.read_text()))[host.name]
    assert outcome["status"] == "failed" and "Read-only file system" in outcome["error"], outcome
    assert outcome["changes"], "the plan held files to write"
    row = next(line.split() for line in proc.stdout.splitlines() if line.startswith(host.name + " "))
    assert row[:2] == [host.name, "failed"] and row[4] == "0", proc.stdout  # host status action engine files
    cells = next(
        [c.strip() for c in line.strip("|").split("|")]
        for line in markdown_report.read_text().splitlines()
        if re.match(rf"\| {re.escape(host.name)} ", line)
    )
    assert cells[4] == "0", cells
    assert outcome["files_changed"] == 0
    assert docker_tree(lab, host) == tree


DROP_IN = "/etc/systemd/system/docker.service.d/slow-reload.conf"


@pytest.fixture
def slow_reload(lab: Lab) -> Iterator[Host]:
    """lab.hosts[0]'s docker.service takes 20 s to reload: a host certainly in flight for that long."""
    host = lab.hosts[0]
    lab.ssh(
        host,
        f"mkdir -p {Path(DROP_IN).parent} && printf '%s\\n' '[Service]' 'ExecReload=' "
        f"'ExecReload=/bin/sh -c \"sleep 20; kill -s HUP $MAINPID\"' > {DROP_IN} && systemctl daemon-reload",
    )
    yield host
    lab.ssh(host, f"rm -f {DROP_IN} && systemctl daemon-reload")


def _next_line(lines: queue.Queue[str], seen: list[str]) -> str:
    try:
        line = lines.get(timeout=60)
    except queue.Empty:
        pytest.fail(f"nothing more said after {seen}")
    seen.append(line)
    return line


def test_a_second_interrupt_leaves_the_report_with_each_host_as_it_stood(
    lab: Lab, tmp_path: Path, slow_reload: Host
) -> None:
    """A second Ctrl-C stopped the rollout at once and left an earlier run's report in place."""
    host = slow_reload
    report = tmp_path / "report.json"
    report.write_text('{"mode": "rollout", "summary": {"changed": 1, "failed": 0}, "hosts": []}\n')
    proc = lab.popen_agent(
        "rollout", "-i", str(lab.inventory_yml), *skip_args(lab, tmp_path), "--limit", host.name,
        "-o", str(report),
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr or ()], daemon=True).start()
    try:
        for _ in range(100):  # until the reload runs on the host: in flight there (bounded: 20 s)
            # Anchored on the reload's own command line (/bin/sh -c sleep 20; kill -s HUP $MAINPID): the
            # remote shell running pgrep (bash -c pgrep ... || true) holds the pattern too.
            if lab.ssh(host, "pgrep -f '^/bin/sh -c sleep 20; kill' || true").stdout.strip():
                break
            time.sleep(0.2)
        else:
            pytest.fail("the reload never started")
        proc.send_signal(signal.SIGINT)
        seen: list[str] = []
        while not _next_line(lines, seen).startswith("interrupted: finishing the 1 host in flight"):
            assert len(seen) < 20, seen
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130, seen
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    doc = json.loads(report.read_text(encoding="utf-8"))
    assert doc["stopped"] == STOPPED_AT_ONCE
    assert [(h["host"], h["status"], h["error"]) for h in doc["hosts"]] == [(host.name, "failed", CUT_OFF)]
    # Its file was renamed into place before the cut: not 0, as though its files were as they were.
    assert doc["hosts"][0]["files_changed"] is None
