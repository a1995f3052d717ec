"""The daemon across its own processes and ends: a hard kill, a --once after a restart, what the source
warns about, the watchdog's floor, a long source outage in the logs, and an uninstall run twice."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.daemon.cli import (
    ONCE_BUSY_EXIT,
    an_earlier_process_end,
    daemon_group,
    earlier_end_moved_aside,
    ended_unannounced,
    mark_stopped,
    once_exit_code,
)
from agent.daemon.install import manifest_lists
from agent.daemon.lastgood import LastGood
from agent.daemon.logs import iso
from agent.daemon.loop import Daemon, serve
from agent.daemon.report import carry_over, metrics_marked_down
from agent.daemon.status import DaemonStatus, SourceStatus, a_process_error
from agent.daemon.timing import longest_cycle_seconds, watchdog_seconds
from agent.daemon.unit import UnitOptions, render_unit
from agent.engine.options import RunOptions
from agent.errors import UsageError
from agent.trust import TrustPolicy
from tests.unit.test_daemon_loop import Host, source_text


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def records(host: Host) -> list[dict[str, Any]]:
    return [json.loads(line) for line in host.logs.getvalue().splitlines()]


def run_once(daemon: Daemon) -> DaemonStatus:
    events = [threading.Event() for _ in range(3)]
    return serve(daemon, stop=events[0], reread=events[1], wake=events[2], once=True)


def hold_host_lock(host: Host) -> Any:
    """The engine's host lock, as a rollout holds it while it works on the host."""
    lock_dir = host.root / "var/lib/trust-agent"
    lock_dir.mkdir(parents=True, exist_ok=True)
    held = open(lock_dir / "lock", "a")  # noqa: SIM115 - closed by the caller
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return held


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


# --- a daemon killed without a word (ExecStopPost= --mark-stopped) -----------------------------------


def test_the_unit_marks_a_killed_daemon_stopped_on_every_exit() -> None:
    unit = render_unit()
    assert (
        "ExecStopPost=-/opt/trust-agent/venv/bin/trust-agent daemon run "
        "--config /etc/trust-agent/daemon.yml --mark-stopped\n"
    ) in unit
    odd = render_unit(UnitOptions(prefix="/opt/ta%n$HOME", config="/etc/t a/d.yml"))
    assert "ExecStopPost=-'/opt/ta%%n$$HOME/bin/trust-agent' daemon run --config '/etc/t a/d.yml' " in odd


def test_the_stop_hook_is_hidden_from_help() -> None:
    shown = CliRunner().invoke(daemon_group, ["run", "--help"])
    assert shown.exit_code == 0 and "--once" in shown.output and "--mark-stopped" not in shown.output


def test_a_killed_daemons_status_and_metrics_say_stopped(host: Host) -> None:
    """After a SIGKILL status.json said "ok", healthy, and trust_agent_up 1, for ever."""
    daemon = host.daemon()
    daemon.cycle()
    doc = host.status()
    doc["pid"] = dead_pid()  # the daemon that wrote it is gone
    host.status_file.write_text(json.dumps(doc))
    metrics_before = host.metrics()
    systemd = {"SERVICE_RESULT": "signal", "EXIT_CODE": "killed", "EXIT_STATUS": "KILL"}

    assert mark_stopped(host.config(), systemd, clock=lambda: host.clock.now + 5)
    after = host.status()
    assert after["state"] == "stopped" and after["healthy"] is False
    assert after["last_cycle_state"] == "ok" and after["converged"] is True  # how it ended stays
    assert after["last_error"] == (
        "the daemon ended without writing its status (systemd: result signal, killed KILL)"
    )
    assert after["last_error_at"] == iso(host.clock.now + 5)
    metrics = host.metrics()
    assert metrics["trust_agent_up"] == "0"
    assert {k: v for k, v in metrics.items() if k != "trust_agent_up"} == {
        k: v for k, v in metrics_before.items() if k != "trust_agent_up"
    }
    # A status that says stopped is left as it is where the process that ended wrote its own end.
    assert not mark_stopped(host.config(), {"SERVICE_RESULT": "exit-code", "EXIT_CODE": "exited"})


def test_a_live_daemons_files_are_never_marked_stopped(host: Host) -> None:
    daemon = host.daemon()
    daemon.cycle()
    written = host.status_file.read_bytes(), host.metrics_file.read_bytes()
    # Its PID still runs (this test's process stands in for it)...
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        doc = host.status()
        doc["pid"] = sleeper.pid
        host.status_file.write_text(json.dumps(doc))
        written = host.status_file.read_bytes(), host.metrics_file.read_bytes()
        assert not mark_stopped(host.config(), {})
        assert (host.status_file.read_bytes(), host.metrics_file.read_bytes()) == written
    finally:
        sleeper.kill()
        sleeper.wait(timeout=30)
    # ...or a daemon holds the state directory, whatever PID the file names.
    doc["pid"] = dead_pid()
    host.status_file.write_text(json.dumps(doc))
    with open(host.state_dir / "daemon.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert not mark_stopped(host.config(), {})
    assert host.status()["state"] == "ok"
    assert mark_stopped(host.config(), {})  # the lock is free and the PID gone: it is dead
    assert host.status()["last_error"] == "the daemon ended without writing its status"


@pytest.mark.parametrize(
    "earlier",
    [
        "the daemon cannot start: --root /nonexistent: not a directory",
        "the daemon ended without writing its status (systemd: result signal, killed KILL)",
        "crashed: OSError (see the journal)",
    ],
)
def test_a_stop_before_the_first_cycle_does_not_report_how_the_process_before_ended(
    host: Host, earlier: str
) -> None:
    """A start that failed (recorded by the stop hook), then a good start stopped before its first
    cycle: status.json said this process "cannot start" too, carried over from the one before."""
    run_once(host.daemon())
    assert host.status()["last_cycle_state"] == "ok"
    doc = host.status()
    host.status_file.write_text(
        json.dumps({**doc, "last_error": earlier, "last_error_at": iso(host.clock.now)})
    )

    stop = threading.Event()
    stop.set()  # SIGTERM while the process was still starting
    serve(host.daemon(), stop=stop, reread=threading.Event(), wake=threading.Event())
    said = host.status()
    assert (said["state"], said["cycles"]) == ("stopped", 0)
    assert said["last_error"] is None, said
    assert said["previous_error"] == earlier  # kept, as what the daemon recovered from
    assert said["last_cycle_state"] == "ok"  # the host's last known state stays


SIGTERM_AS_ASKED = {"SERVICE_RESULT": "success", "EXIT_CODE": "killed", "EXIT_STATUS": "TERM"}
SIGKILL = {"SERVICE_RESULT": "signal", "EXIT_CODE": "killed", "EXIT_STATUS": "KILL"}
EARLIER_ENDS = [
    "the daemon cannot start: --root /nonexistent: not a directory",
    "the daemon ended without writing its status (systemd: result signal, killed KILL)",
    "crashed: OSError (see the journal)",
]


def an_earlier_process_stopped_with(host: Host, error: str | None) -> dict[str, object]:
    """status.json as an earlier process's end left it: stopped, ``error``, its PID gone."""
    run_once(host.daemon())
    doc = {
        **host.status(),
        "state": "stopped",
        "healthy": False,
        "pid": dead_pid(),
        "last_error": error,
        "last_error_at": iso(host.clock.now - 60),
    }
    host.status_file.write_text(json.dumps(doc))
    return doc


@pytest.mark.parametrize("earlier", EARLIER_ENDS)
def test_a_daemon_stopped_before_its_signal_handlers_does_not_keep_how_the_process_before_ended(
    host: Host, earlier: str
) -> None:
    """A SIGTERM before the handlers were installed killed the process before it wrote a status: the
    stop hook left "stopped" with the earlier process's "cannot start" as the error in force."""
    before = an_earlier_process_stopped_with(host, earlier)
    assert mark_stopped(host.config(), SIGTERM_AS_ASKED, clock=lambda: host.clock.now + 5)
    said = host.status()
    assert (said["state"], said["healthy"]) == ("stopped", False)
    assert (said["last_error"], said["last_error_at"]) == (None, None)  # stopped as asked: no error
    assert (said["previous_error"], said["previous_error_at"]) == (earlier, before["last_error_at"])
    assert said["last_cycle_state"] == "ok"  # the host's last known state stays
    assert host.metrics()["trust_agent_up"] == "0"


@pytest.mark.parametrize("earlier", EARLIER_ENDS)
def test_a_daemon_killed_before_it_wrote_a_status_says_how_it_ended_not_how_the_one_before_did(
    host: Host, earlier: str
) -> None:
    an_earlier_process_stopped_with(host, earlier)
    assert mark_stopped(host.config(), SIGKILL, clock=lambda: host.clock.now + 5)
    said = host.status()
    assert said["state"] == "stopped" and said["previous_error"] == earlier
    assert said["last_error"] == (
        "the daemon ended without writing its status (systemd: result signal, killed KILL)"
    )
    assert said["last_error_at"] == iso(host.clock.now + 5)


@pytest.mark.parametrize(
    ("error", "systemd"),
    [
        # The process that ended wrote this end itself (a crash, a start refused), then exited.
        ("crashed: OSError (see the journal)", {"SERVICE_RESULT": "exit-code", "EXIT_CODE": "exited"}),
        ("the daemon cannot start: bad", {"SERVICE_RESULT": "exit-code", "EXIT_CODE": "exited"}),
        # Not how a process ended: the error of the host, which a new process goes on reporting.
        ("host: dockerd refused the reload", SIGTERM_AS_ASKED),
        (None, SIGKILL),
    ],
)
def test_a_stopped_status_that_is_the_ended_processes_or_the_hosts_is_left_as_it_is(
    host: Host, error: str | None, systemd: dict[str, str]
) -> None:
    an_earlier_process_stopped_with(host, error)
    written = host.status_file.read_bytes()
    assert not mark_stopped(host.config(), systemd)
    assert host.status_file.read_bytes() == written


@settings(max_examples=60, deadline=None)
@given(
    error=st.one_of(st.none(), st.sampled_from(EARLIER_ENDS), st.text(max_size=40)),
    exit_code=st.sampled_from(["exited", "killed", "dumped", ""]),
    result=st.sampled_from(["success", "signal", "exit-code", "watchdog", ""]),
)
def test_the_stop_hook_moves_only_an_earlier_processes_end_aside_and_keeps_it(
    error: str | None, exit_code: str, result: str
) -> None:
    previous = {"state": "stopped", "last_error": error, "last_error_at": "2026-01-01T00:00:00.000000Z"}
    systemd = {"SERVICE_RESULT": result, "EXIT_CODE": exit_code}
    earlier = an_earlier_process_end(previous, systemd)
    assert earlier is (exit_code in ("killed", "dumped") and a_process_error(error))
    if earlier:
        moved = earlier_end_moved_aside(previous, systemd, at=0.0)
        assert moved["state"] == "stopped" and moved["previous_error"] == error
        assert moved["previous_error_at"] == previous["last_error_at"]
        assert (moved["last_error"] is None) is (result == "success")


def test_a_cycles_error_carried_over_stays_the_error_in_force(host: Host) -> None:
    run_once(host.daemon())
    doc = host.status()
    failing = "host: dockerd refused the reload"
    host.status_file.write_text(
        json.dumps({**doc, "last_error": failing, "last_error_at": iso(host.clock.now)})
    )
    assert host.daemon().status.last_error == failing


def test_a_metrics_file_that_is_not_the_daemons_is_left_alone(host: Host) -> None:
    daemon = host.daemon()
    daemon.cycle()
    doc = host.status()
    doc["pid"] = dead_pid()
    host.status_file.write_text(json.dumps(doc))
    host.metrics_file.write_text("a person's notes\ntrust_agent_up 1\n")
    assert mark_stopped(host.config(), {})
    assert host.metrics_file.read_text() == "a person's notes\ntrust_agent_up 1\n"


def test_only_the_up_gauge_goes_down() -> None:
    text = "# HELP trust_agent_up x\ntrust_agent_up 1\ntrust_agent_up_not 1\ntrust_agent_cycles_total 4\n"
    assert metrics_marked_down(text) == text.replace("trust_agent_up 1\n", "trust_agent_up 0\n")


def test_what_systemd_says_is_kept_in_the_reason() -> None:
    watchdog = {"SERVICE_RESULT": "watchdog", "EXIT_CODE": "dumped", "EXIT_STATUS": "ABRT"}
    assert ended_unannounced(watchdog).endswith("(systemd: result watchdog, dumped ABRT)")


# --- a new process of the same daemon (--once on a busy host) ----------------------------------------


def test_a_once_on_a_busy_host_keeps_how_the_last_reconciled_cycle_ended(host: Host) -> None:
    """Each --once is a new process: a busy one said converged false, last_success null, and the
    metrics trust_agent_host_converged 0 for a converged host, whenever a rollout ran."""
    assert run_once(host.daemon()).state == "ok"
    first = host.status()
    host.ca_file.unlink()  # drift: this cycle must apply, and finds the lock held
    held = hold_host_lock(host)
    try:
        busy = run_once(host.daemon())
    finally:
        held.close()
    assert busy.host_busy and once_exit_code(busy) == ONCE_BUSY_EXIT
    doc = host.status()
    assert doc["state"] == "stopped" and doc["host_busy"] is True
    # Not looked at (the CA file is gone meanwhile): converged unknown, beside what the last look found.
    assert doc["last_cycle_state"] == "ok" and doc["converged"] is None
    assert doc["last_success"] == first["last_success"] and doc["outcome"] == first["outcome"]
    assert doc["cycles"] == 1 and doc["pid"] == first["pid"]  # its own, counted since it started
    assert host.metrics()["trust_agent_host_converged"] == "1"
    assert host.metrics()["trust_agent_host_busy"] == "1"
    assert host.metrics()["trust_agent_last_success_timestamp_seconds"] == str(int(host.clock.now))


@pytest.mark.parametrize(
    "change",
    [
        {"host": "another-host"},
        {"state_dir": "/elsewhere"},
        {"policy": {"fingerprint": "0123456789ab"}},
        {"last_cycle_state": "starting"},
        {"last_cycle_state": "pending"},
        {"last_success": "yesterday"},
        {"outcome": {"status": 1}},
    ],
)
def test_only_the_daemons_own_status_file_is_carried_over(host: Host, change: dict[str, object]) -> None:
    daemon = host.daemon()
    daemon.cycle()
    previous = {**host.status(), **change}
    fresh = host.daemon().status
    assert carry_over(fresh, previous) == fresh


def test_the_previous_processes_facts_are_carried_over_not_its_own(host: Host) -> None:
    daemon = host.daemon()
    daemon.cycle()
    fresh = host.daemon().status
    carried = carry_over(fresh, host.status())
    assert carried.last_cycle_state == "ok" and carried.outcome == daemon.status.outcome
    assert carried.last_success == daemon.status.last_success == host.clock.now
    assert (carried.state, carried.cycles, carried.pid, carried.started_at) == (
        "starting",
        0,
        fresh.pid,
        fresh.started_at,
    )


POLICY = LastGood(TrustPolicy(("r.example",), None, None), "/src.yml", "distribution", 0.0)
FRESH = DaemonStatus(
    source=SourceStatus(spec="/src.yml"), host="h", pid=1, started_at=0.0, state_dir="/s", policy=POLICY
)
OWN = {
    "version": 1,
    "host": "h",
    "state_dir": "/s",
    "policy": {"fingerprint": POLICY.policy.fingerprint()},
    "last_cycle_state": "ok",
    "outcome": {"status": "unchanged", "engine_action": "none"},
    "last_success": "2026-01-01T00:00:00.000Z",
}
SCALARS: st.SearchStrategy[Any] = st.none() | st.integers() | st.text(max_size=5)
JUNK: st.SearchStrategy[Any] = SCALARS | st.lists(SCALARS, max_size=2)
JUNK |= st.dictionaries(st.sampled_from(["fingerprint", "status", "engine_action", "files"]), JUNK)


@settings(deadline=None)  # a shared machine: the first examples may be slow
@given(st.dictionaries(st.sampled_from([*sorted(OWN), "last_run", "last_error"]), JUNK))
def test_any_document_carries_over_or_leaves_the_status_and_never_raises(junk: dict[str, Any]) -> None:
    carried = carry_over(FRESH, {**OWN, **junk})
    assert carried == FRESH or (carried.last_cycle_state == "ok" and carried.state == "starting")
    assert carry_over(FRESH, OWN).last_success == 1_767_225_600.0


def test_a_once_whose_source_fails_on_a_busy_host_exits_1(host: Host) -> None:
    assert run_once(host.daemon()).state == "ok"
    host.source.write_text("version: [\n")
    host.ca_file.unlink()
    held = hold_host_lock(host)
    try:
        status = run_once(host.daemon())
    finally:
        held.close()
    assert status.host_busy and status.source.state == "error"
    assert once_exit_code(status) == 1  # the source's error: trying again later does not mend it
    assert once_exit_code(None) == 1


# --- what the source warns about -----------------------------------------------------------------


def test_the_policys_warnings_reach_status_metrics_and_the_log_once(host: Host) -> None:
    """The source's warnings were only inside the info-level "policy" event."""
    host.source.write_text(host.source.read_text().replace("skipverify: false", "skipverify: true"))
    daemon = host.daemon()
    daemon.cycle()
    host.next_cycle(daemon)
    warnings: list[str] = host.status()["warnings"]  # type: ignore[assignment]
    assert "storage CA given but skip-TLS is set: insecure-registries is used instead" in warnings
    assert host.metrics()["trust_agent_warnings"] == str(len(warnings))
    warned = [r for r in records(host) if r["event"] == "policy_warnings"]
    assert [r["level"] for r in warned] == ["warning"] and warned[0]["warnings"] == warnings

    host.source.write_text(host.source.read_text().replace("skipverify: true", "skipverify: false"))
    host.clock.now += 60
    host.monotonic.now += 60
    daemon.cycle()
    now_warned: list[str] = host.status()["warnings"]  # type: ignore[assignment]
    assert "storage CA given but skip-TLS is set: insecure-registries is used instead" not in now_warned
    warned = [r for r in records(host) if r["event"] == "policy_warnings"]
    assert len(warned) == 2 and warned[1]["warnings"] == now_warned


def test_install_says_the_policys_warnings_once(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\nhttp: {host: 'https://registry.example.internal'}\nstorage:\n  s3:\n"
        "    bucket: b\n    region: us-east-1\n    regionendpoint: https://minio.example.internal:9000\n"
        "    skipverify: true\n"
    )
    ca = tmp_path / "ca.pem"
    from tests.pki import make_ca

    ca.write_bytes(make_ca("Storage CA")[0])
    # 127.0.0.1 port 9: refused at once; the warnings come before any host is tried.
    argv = ["install", "-i", "127.0.0.1:9,", "--source", str(config), "--storage-ca", str(ca)]
    for fmt in ("text", "json"):
        result = CliRunner().invoke(daemon_group, [*argv, "--format", fmt, "--connect-timeout", "5"])
        assert result.exit_code == 1, result.output
        said = "warning: storage CA given but skip-TLS is set: insecure-registries is used instead"
        assert result.stderr.count(said) == 1
        if fmt == "json":
            document = json.loads(result.stdout)
            assert said.removeprefix("warning: ") in document["warnings"]


# --- the watchdog ----------------------------------------------------------------------------------


def test_a_watchdog_shorter_than_a_cycle_may_take_is_refused() -> None:
    options = RunOptions()
    floor = longest_cycle_seconds(options)
    assert floor == 3 * 120 + 90 + 2 * 20
    with pytest.raises(UsageError) as refused:
        watchdog_seconds("4s", options)
    message = str(refused.value)
    assert "--watchdog" in message and "4s is shorter than one cycle may take: up to 490s" in message
    assert "give at least 490s" in message
    assert watchdog_seconds("10m", options) == 600 and watchdog_seconds("490s", options) == 490
    source = str(Path(__file__).parent.parent / "fixtures/sources/registry-minio.yml")
    for command in (["unit"], ["install", "-i", "127.0.0.1:9,", "--source", source]):
        result = CliRunner().invoke(daemon_group, [*command, "--watchdog", "4s"])
        assert result.exit_code == 2 and "give at least 490s" in result.output, result.output


# --- a long source outage in the logs -------------------------------------------------------------


def test_an_outage_that_goes_on_is_logged_once_at_info(host: Host) -> None:
    """Every cycle of an outage was logged at info: its error defeated the quiet-cycle test."""
    daemon = host.daemon()
    daemon.cycle()
    host.source.unlink()
    for _ in range(5):
        host.next_cycle(daemon)
    cycles = [r for r in records(host) if r["event"] == "cycle"]
    assert [r["state"] for r in cycles] == ["ok"] + ["degraded"] * 5
    assert [r["level"] for r in cycles] == ["info", "info", "debug", "debug", "debug", "debug"]


# --- uninstall without a manifest -------------------------------------------------------------------


def test_with_no_manifest_no_file_under_etc_trust_agent_is_known_to_be_ours() -> None:
    listed = {"version": 1, "state_files": ["/var/lib/m.prom"], "config_files": ["/etc/trust-agent/d.yml"]}
    assert manifest_lists(json.dumps(listed)) == (["/var/lib/m.prom"], ["/etc/trust-agent/d.yml"])
    assert manifest_lists("") == ([], [])  # an uninstall ran before: nothing is known
    assert manifest_lists("{not json") == ([], [])
    assert manifest_lists("[1]") == ([], [])
    older = {"version": 1, "state_files": ["/var/lib/m.prom"]}
    assert manifest_lists(json.dumps(older)) == (["/var/lib/m.prom"], None)  # the older layout


# --- an outcome belongs to the policy it was reached under ---------------------------------------


def test_a_restart_onto_a_new_policy_on_a_busy_host_is_pending_not_the_old_outcome(host: Host) -> None:
    """A re-install that restarts the service with a new source: the new process carried over the old
    policy's outcome and, finding the lock held, said ok and converged on the new policy."""
    assert run_once(host.daemon()).state == "ok"
    old = host.status()["policy"]["fingerprint"]  # type: ignore[index]
    host.source.write_text(source_text(skipverify=True))
    restarted = host.daemon()
    assert restarted.status.last_cycle_state == "ok"  # carried over, on the policy it restored
    held = hold_host_lock(host)
    try:
        status = restarted.cycle()
    finally:
        held.close()
    assert status.policy is not None and status.policy.policy.fingerprint() != old
    assert status.host_busy and not status.healthy and not status.converged
    assert status.outcome is None and status.last_cycle_state is None
    doc = host.status()
    assert doc["state"] == "pending" and doc["outcome"] is None and doc["last_cycle_state"] is None
    assert host.metrics()["trust_agent_up"] == "0" and host.metrics()["trust_agent_host_converged"] == "0"
    assert host.ca_file.exists()  # the old policy's: nothing was applied

    # Its status file, now on the new policy, carries nothing of the old one into the next process.
    assert host.daemon().status.last_cycle_state is None


def test_the_last_change_a_restart_carries_over_is_what_its_metric_says(host: Host) -> None:
    """The metric's help said "0: not since start" while a restart carried the time of the last change
    over: the help now says what the value is."""
    assert run_once(host.daemon()).state == "ok"  # changes the host's files
    changed_at = host.clock.now
    host.clock.now += 3600
    assert run_once(host.daemon()).state == "ok"  # a new process: nothing to change
    assert host.metrics()["trust_agent_last_change_timestamp_seconds"] == str(int(changed_at))
    help_line = next(
        line
        for line in host.metrics_file.read_text().splitlines()
        if line.startswith("# HELP trust_agent_last_change_timestamp_seconds ")
    )
    assert "not since start" not in help_line and "kept across its restarts" in help_line
