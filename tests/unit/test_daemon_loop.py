"""The daemon's cycle on directory trees (``--root``), with a fake clock: no engine, no sleeping."""

from __future__ import annotations

import fcntl
import io
import itertools
import json
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from agent.daemon.lastgood import FILE_NAME, LastGoodStore
from agent.daemon.logs import EventLog, iso
from agent.daemon.loop import Daemon, DaemonConfig, _explanation, _summary, serve, status_line
from agent.daemon.notify import Notifier
from agent.engine.options import RunOptions
from agent.engine.verify import CanaryPull, tls_unchecked_pull, unproved_pull
from agent.inputs import PolicyInputs
from agent.outcome import HostOutcome
from agent.runtimes.plan import FileChange, HostPlan
from agent.trust import TrustPolicy
from tests.pki import make_ca

REGISTRY = "registry.example.internal:5000"
SOURCE = """\
version: 0.1
storage:
  s3:
    accesskey: {access}
    secretkey: {secret}
    region: us-east-1
    regionendpoint: https://minio.storage.example.internal:9000
    bucket: registry
    secure: true
    skipverify: {skipverify}
http:
  addr: :5000
  host: https://registry.example.internal:5000
  secret: {http_secret}
"""
ACCESS = "AKIADISTINCTIVEACCESS7Q"
SECRET = "s3cr3t-Distinctive-Value-9f8e7d6c5b4a"
HTTP_SECRET = "http-secret-Distinctive-0b1c2d"


def source_text(*, skipverify: bool = False) -> str:
    return SOURCE.format(
        access=ACCESS, secret=SECRET, http_secret=HTTP_SECRET, skipverify=str(skipverify).lower()
    )


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Host:
    """A tree standing in for a host, its source and CA files, and a daemon over it."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "root"
        (self.root / "etc/docker").mkdir(parents=True)
        (self.root / "etc/docker/daemon.json").write_text('{"debug": true}\n')
        self.source = tmp_path / "config.yml"
        self.source.write_text(source_text())
        self.ca = tmp_path / "storage-ca.pem"
        self.ca.write_bytes(make_ca("Storage CA")[0])
        self.state_dir = tmp_path / "state"
        self.status_file = tmp_path / "status.json"
        self.metrics_file = tmp_path / "metrics.prom"
        self.logs = io.StringIO()
        self.clock = Clock()  # the wall clock: timestamps
        self.monotonic = Clock(5_000.0)  # the schedule's clock: seconds since boot, say

    @property
    def ca_file(self) -> Path:
        return self.root / "etc/docker/certs.d" / REGISTRY / "trust-agent-storage-ca.crt"

    def config(self, **changes: object) -> DaemonConfig:
        config = DaemonConfig(
            inputs=PolicyInputs(source=str(self.source), storage_ca=(str(self.ca),)),
            state_dir=self.state_dir,
            options=RunOptions(root=str(self.root)),
            status_file=self.status_file,
            metrics_file=self.metrics_file,
            interval=10.0,
            max_backoff=40.0,
            jitter=0.0,
        )
        return replace(config, **changes)  # type: ignore[arg-type]

    def daemon(self, **changes: object) -> Daemon:
        return Daemon(
            self.config(**changes),
            environ={},
            log=EventLog(self.logs, level="debug", clock=self.clock),
            clock=self.clock,
            monotonic=self.monotonic,
            draw=lambda: 0.5,
        )

    def status(self) -> dict[str, object]:
        return json.loads(self.status_file.read_text())  # type: ignore[no-any-return]

    def metrics(self) -> dict[str, str]:
        lines = [line for line in self.metrics_file.read_text().splitlines() if not line.startswith("#")]
        return dict(line.rsplit(" ", 1) for line in lines)

    def next_cycle(self, daemon: Daemon) -> None:
        wait = daemon.due_in()
        self.clock.now += wait
        self.monotonic.now += wait
        daemon.cycle()


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def test_first_cycle_converges_the_tree_and_keeps_the_policy(host: Host) -> None:
    daemon = host.daemon()
    status = daemon.cycle()
    assert status.state == "ok" and status.healthy and status.converged
    assert host.ca_file.read_bytes() == host.ca.read_bytes()  # the bundle, re-encoded: same PEM
    stored = LastGoodStore(host.state_dir).load()
    assert stored is not None and stored.policy.fingerprint() == status.policy.policy.fingerprint()  # type: ignore[union-attr]
    doc = host.status()
    assert doc["state"] == "ok" and doc["outcome"]["status"] == "changed"  # type: ignore[index]
    assert doc["policy"]["registries"] == [REGISTRY]  # type: ignore[index]
    metrics = host.metrics()
    assert metrics["trust_agent_up"] == "1" and metrics["trust_agent_changes_total"] == "1"
    fingerprint = status.policy.policy.fingerprint()  # type: ignore[union-attr]
    assert (
        metrics[f'trust_agent_policy_info{{fingerprint="{fingerprint}",source_kind="distribution"}}'] == "1"
    )

    # A converged host: the next cycle changes nothing and the document is not parsed again.
    host.next_cycle(daemon)
    assert daemon.status.outcome is not None and daemon.status.outcome.status == "unchanged"
    assert daemon.status.source.state == "unchanged"
    assert daemon.status.changes_total == 1 and daemon.status.cycles == 2


@pytest.mark.parametrize("fault", ["unparseable", "missing", "bad CA"])
def test_a_source_fault_keeps_the_trust_and_the_last_good_policy(host: Host, fault: str) -> None:
    daemon = host.daemon()
    daemon.cycle()
    installed = host.ca_file.read_bytes()
    saved = (host.state_dir / FILE_NAME).read_bytes()
    if fault == "unparseable":
        host.source.write_text("storage: [\n")
    elif fault == "missing":
        host.source.unlink()
    else:
        host.ca.write_text("not a certificate\n")

    cycles = 0
    while daemon.status.source.consecutive_failures < 3 and cycles < 10:
        host.next_cycle(daemon)
        cycles += 1
        assert host.ca_file.read_bytes() == installed
    assert (host.state_dir / FILE_NAME).read_bytes() == saved
    doc = host.status()
    assert doc["state"] == "degraded" and doc["converged"] is True
    assert doc["consecutive_failures"] == cycles > 3  # back-off: some cycles only reconcile
    assert doc["source"]["state"] == "error" and doc["source"]["consecutive_failures"] == 3  # type: ignore[index]
    assert str(doc["last_error"]).startswith("source: ")
    metrics = host.metrics()
    assert metrics["trust_agent_up"] == "0" and metrics["trust_agent_source_up"] == "0"
    assert metrics["trust_agent_host_converged"] == "1"
    assert metrics["trust_agent_source_errors_total"] == "3"
    assert metrics["trust_agent_consecutive_failures"] == str(cycles)


def test_backoff_grows_and_caps_while_the_host_is_still_reconciled_every_interval(host: Host) -> None:
    daemon = host.daemon()
    daemon.cycle()
    host.source.unlink()
    retries = []
    polls_before = daemon.status.source.errors_total
    for _ in range(12):
        before = daemon.status.source.errors_total
        host.next_cycle(daemon)
        # Whatever the back-off, a cycle is never more than one interval away.
        assert daemon.due_in() <= host.config().interval
        if daemon.status.source.errors_total > before:
            retries.append(daemon.status.source.retry_in)
    assert retries[:5] == [10.0, 20.0, 40.0, 40.0, 40.0]
    assert daemon.status.source.errors_total - polls_before == len(retries) < 12
    assert daemon.status.cycles == 13
    assert host.metrics()["trust_agent_source_retry_seconds"] == "40"


def test_a_valid_source_again_recovers_and_a_new_document_changes_the_trust(host: Host) -> None:
    daemon = host.daemon()
    daemon.cycle()
    first = daemon.status.policy.policy.fingerprint()  # type: ignore[union-attr]
    host.source.write_text("{{{ not yaml")
    host.next_cycle(daemon)
    assert daemon.status.state == "degraded"

    # The registry now skips TLS verification of its storage: the CA goes, insecure-registries comes.
    host.source.write_text(source_text(skipverify=True))
    host.next_cycle(daemon)
    status = daemon.status
    assert status.state == "ok" and status.consecutive_failures == 0
    assert status.source.consecutive_failures == 0 and status.source.retry_in is None
    assert status.policy is not None and status.policy.policy.fingerprint() != first
    assert status.policy_changes_total == 1
    assert not host.ca_file.exists()
    daemon_json = json.loads((host.root / "etc/docker/daemon.json").read_text())
    assert daemon_json == {"debug": True, "insecure-registries": [REGISTRY]}
    assert LastGoodStore(host.state_dir).load().policy.insecure  # type: ignore[union-attr]
    # The error recovered from stays visible, with its time, apart from the state it no longer explains.
    assert host.status()["previous_error"] is not None and host.status()["last_error"] is None
    assert host.status()["state"] == "ok"


def test_drift_is_repaired_on_the_next_cycle_and_other_files_are_left_alone(host: Host) -> None:
    daemon = host.daemon()
    daemon.cycle()
    installed = host.ca_file.read_bytes()
    theirs = host.ca_file.parent / "ca.crt"
    theirs.write_text("someone else's file\n")

    host.ca_file.unlink()
    host.next_cycle(daemon)
    assert host.ca_file.read_bytes() == installed
    assert daemon.status.outcome is not None and daemon.status.outcome.status == "changed"

    host.ca_file.write_bytes(installed.replace(b"BEGIN", b"BEGUN"))
    host.source.unlink()  # drift is repaired from the last good policy even during an outage
    host.next_cycle(daemon)
    assert host.ca_file.read_bytes() == installed
    assert daemon.status.state == "degraded" and daemon.status.changes_total == 3
    assert theirs.read_text() == "someone else's file\n"


def test_a_restarted_daemon_uses_the_persisted_policy_while_the_source_is_missing(host: Host) -> None:
    host.daemon().cycle()
    installed = host.ca_file.read_bytes()
    host.source.unlink()
    host.ca_file.unlink()  # and the host drifted while the daemon was down

    restarted = host.daemon()
    assert restarted.status.policy is not None
    status = restarted.cycle()
    assert host.ca_file.read_bytes() == installed
    assert status.state == "degraded" and status.converged
    assert "policy_restored" in host.logs.getvalue()


def test_a_policy_kept_for_another_source_is_not_restored(host: Host) -> None:
    """A daemon run by hand on another (skip-TLS) source left its policy in the service's state dir."""
    other = host.source.with_name("other.yml")
    other.write_text(source_text(skipverify=True))
    host.daemon(inputs=PolicyInputs(source=str(other))).cycle()
    assert LastGoodStore(host.state_dir).load().policy.insecure  # type: ignore[union-attr]
    host.source.unlink()  # the service's own source is down: only a kept policy could apply

    daemon = host.daemon()
    assert daemon.status.policy is None
    records = [json.loads(line) for line in host.logs.getvalue().splitlines()]
    refused = [r for r in records if r["event"] == "policy_not_restored"]
    assert refused and refused[0]["level"] == "warning" and refused[0]["kept_source"] == str(other)
    status = daemon.cycle()
    assert status.state == "failing" and status.outcome is None


def test_the_engines_warnings_reach_status_metrics_and_the_log_once(host: Host) -> None:
    """The daemon said ok, healthy, "warnings": [] while the host kept a skip-TLS entry of a person's."""
    daemon_json = host.root / "etc/docker/daemon.json"
    daemon_json.write_text(json.dumps({"insecure-registries": [REGISTRY]}) + "\n")
    daemon = host.daemon()
    daemon.cycle()
    host.next_cycle(daemon)
    doc = host.status()
    policy_warnings = list(daemon.status.policy_warnings)  # the source's own, listed with them
    engine = [w for w in doc["warnings"] if w not in policy_warnings]  # type: ignore[attr-defined]
    assert len(engine) == 1 and "stays in insecure-registries" in engine[0]
    assert doc["outcome"]["warnings"] == engine  # type: ignore[index]
    assert host.metrics()["trust_agent_warnings"] == str(len(policy_warnings) + 1)
    records = [json.loads(line) for line in host.logs.getvalue().splitlines()]
    warned = [r for r in records if r["event"] == "host_warnings"]
    assert [r["level"] for r in warned] == ["warning"]  # once, not every cycle
    assert warned[0]["warnings"] == engine

    daemon_json.write_text('{"debug": true}\n')  # the person takes it out
    host.next_cycle(daemon)
    assert host.status()["warnings"] == policy_warnings
    assert host.metrics()["trust_agent_warnings"] == str(len(policy_warnings))
    assert '"event": "host_warnings_cleared"' in host.logs.getvalue()


def test_without_any_good_policy_nothing_on_the_host_is_touched(host: Host) -> None:
    host.source.write_text("not: [valid\n")
    ca_dir = host.root / "etc/docker/certs.d" / REGISTRY
    ca_dir.mkdir(parents=True)
    (ca_dir / "trust-agent-storage-ca.crt").write_text("left by an earlier run\n")
    status = host.daemon().cycle()
    assert status.state == "failing" and status.outcome is None
    assert (ca_dir / "trust-agent-storage-ca.crt").read_text() == "left by an earlier run\n"
    assert host.metrics()["trust_agent_up"] == "0"
    assert "trust_agent_policy_info" not in host.metrics_file.read_text()


def test_a_damaged_last_good_file_is_refused_and_revokes_nothing(host: Host) -> None:
    host.daemon().cycle()
    path = host.state_dir / FILE_NAME
    document = json.loads(path.read_text())
    document["policy"]["registries"] = ["other.example:5000"]  # fingerprint no longer matches
    path.write_text(json.dumps(document))
    host.source.unlink()
    installed = host.ca_file.read_bytes()

    daemon = host.daemon()
    assert daemon.status.policy is None
    status = daemon.cycle()
    assert status.state == "failing" and host.ca_file.read_bytes() == installed
    assert "state_unusable" in host.logs.getvalue()


def test_secrets_from_the_source_are_never_written_or_logged(host: Host) -> None:
    daemon = host.daemon()
    daemon.cycle()
    # A broken document whose bad line holds a secret; then the source disappears.
    host.source.write_text(source_text().replace(f"secretkey: {SECRET}", f"secretkey: [{SECRET}"))
    host.next_cycle(daemon)
    host.source.unlink()
    host.next_cycle(daemon)
    host.daemon().cycle()  # a restart reads the state back
    assert daemon.status.source.errors_total == 2

    written = [host.status_file, host.metrics_file, *host.state_dir.rglob("*"), *host.root.rglob("*")]
    blobs = [p.read_bytes() for p in written if p.is_file()] + [host.logs.getvalue().encode()]
    for secret in (ACCESS, SECRET, HTTP_SECRET):
        assert all(secret.encode() not in blob for blob in blobs), secret
    assert (host.state_dir / FILE_NAME).stat().st_mode & 0o777 == 0o600


def test_logs_are_json_lines_and_quiet_cycles_are_debug(host: Host) -> None:
    daemon = host.daemon()
    daemon.cycle()
    host.next_cycle(daemon)
    records = [json.loads(line) for line in host.logs.getvalue().splitlines()]
    records = [r for r in records if r["event"] != "policy_warnings"]  # the source's, logged once
    assert [r["event"] for r in records] == ["policy", "cycle", "cycle"]
    assert [r["level"] for r in records[1:]] == ["info", "debug"]
    assert all(r["ts"].endswith("Z") for r in records)


def test_an_unexpected_error_in_reconcile_costs_one_cycle_not_the_daemon(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent.daemon.loop as loop

    daemon = host.daemon()
    daemon.cycle()

    def broken(*_args: object, **_kwargs: object) -> None:
        raise KeyError(SECRET)  # whatever the message, it is not repeated

    monkeypatch.setattr(loop, "reconcile", broken)
    host.next_cycle(daemon)
    assert daemon.status.state == "failing" and daemon.status.apply_errors_total == 1
    assert daemon.status.last_error is not None and "internal error: KeyError at" in daemon.status.last_error
    assert SECRET not in host.status_file.read_text() + host.logs.getvalue()

    monkeypatch.undo()
    host.next_cycle(daemon)
    assert daemon.status.state == "ok"


@pytest.mark.parametrize(("status", "listed"), [("changed", True), ("failed", False), ("rolled_back", False)])
def test_a_cycle_lists_the_files_it_changed_and_none_where_it_changed_nothing(
    status: str, listed: bool
) -> None:
    path = "/etc/docker/daemon.json"
    plan = HostPlan(changes=(FileChange(path, "update", b"{}", b'{"debug": true}'),))
    summary = _summary(HostOutcome("h", status, plan=plan))  # type: ignore[arg-type]
    assert summary.files == ((path,) if listed else ())


def test_a_host_that_keeps_failing_is_retried_at_the_backoffs_pace_and_at_once_on_sighup(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload dockerd refuses was tried (written, refused, rolled back, a new backup kept) every
    interval, for ever: now 1, 2, 4... intervals apart, while the source is still read every interval."""
    import agent.daemon.loop as loop

    daemon = host.daemon()
    tried: list[float] = []

    def refused(*_args: object, **_kwargs: object) -> HostOutcome:
        tried.append(host.clock.now)
        return HostOutcome("h", "rolled_back", error="dockerd refused the reload: bad value")

    monkeypatch.setattr(loop, "reconcile", refused)
    start = host.clock.now
    cycles = 0
    interval = daemon.config.interval
    while host.clock.now - start < 15 * interval:  # bounded: every cycle moves the clock on
        host.next_cycle(daemon)
        cycles += 1
    gaps = [round((b - a) / interval) for a, b in itertools.pairwise(tried)]
    assert gaps[:3] == [1, 2, 4], gaps
    assert cycles > len(tried)  # polls went on between the tries
    assert daemon.status.state == "failing" and daemon.status.outcome is not None
    assert daemon.status.outcome.status == "rolled_back"
    assert daemon.status.apply_errors_total == len(tried)

    before = len(tried)
    daemon.cycle(force_poll=True)  # SIGHUP: the person says the host is fixed
    assert len(tried) == before + 1


def test_a_wall_clock_stepped_back_does_not_stop_the_schedule(host: Host) -> None:
    """Scheduled on the wall clock, a step back of an hour (NTP, a person) meant no poll for an hour."""
    daemon = host.daemon()
    daemon.cycle()
    host.clock.now -= 3600
    assert daemon.due_in() == host.config().interval
    host.source.write_text(source_text(skipverify=True))
    host.next_cycle(daemon)
    assert daemon.status.cycles == 2 and daemon.status.policy is not None
    assert daemon.status.policy.policy.insecure  # the source was read one interval on
    # What people read stays on the wall clock.
    assert host.status()["source"]["next_poll"] == iso(host.clock.now + host.config().interval)  # type: ignore[index]
    assert host.status()["last_run"] == iso(host.clock.now)


def test_a_host_lock_held_by_another_run_is_retried_every_interval_and_is_no_failure(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The apply script's exit 75 (another run holds the host's lock) made the daemon "failing" and
    back off 1, 2, 4... intervals, as if the host were broken."""
    import agent.daemon.loop as loop

    tried: list[float] = []

    def counted(*args: object, **kwargs: object) -> HostOutcome:
        tried.append(host.monotonic.now)
        return reconcile(*args, **kwargs)  # type: ignore[arg-type]

    reconcile = loop.reconcile
    monkeypatch.setattr(loop, "reconcile", counted)
    daemon = host.daemon()
    daemon.cycle()
    assert daemon.status.state == "ok"
    installed = host.ca_file.read_bytes()
    host.ca_file.unlink()  # drift, to be repaired while a rollout holds the lock

    lock_file = host.root / "var/lib/trust-agent/lock"
    with open(lock_file, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for _ in range(4):
            host.next_cycle(daemon)
            assert daemon.status.state == "ok" and daemon.status.consecutive_failures == 0
        assert not host.ca_file.exists()
    interval = host.config().interval
    assert [b - a for a, b in itertools.pairwise(tried)] == [interval] * 4  # no back-off
    assert daemon.status.apply_errors_total == 0
    records = [json.loads(line) for line in host.logs.getvalue().splitlines()]
    busy = [r for r in records if r["event"] == "host_busy"]
    assert len(busy) == 4 and {r["level"] for r in busy} == {"info"}
    assert busy[0]["message"] == "another trust-agent run holds the lock: the host is left to it this cycle"
    assert daemon.status.host_busy and daemon.status.last_cycle_state == "ok"  # the last reconciled cycle's
    assert not [r for r in records if r["level"] == "error"]

    host.next_cycle(daemon)  # the other run is done
    assert host.ca_file.read_bytes() == installed and daemon.status.changes_total == 2
    assert not daemon.status.host_busy


def test_a_first_cycle_on_a_locked_host_is_not_failing(host: Host) -> None:
    (host.root / "var/lib/trust-agent").mkdir(parents=True)
    with open(host.root / "var/lib/trust-agent/lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        daemon = host.daemon()
        status = daemon.cycle()
    assert status.state == "pending" and status.outcome is None and status.last_error is None
    assert status.last_cycle_state is None and status.host_busy
    assert daemon.due_in() == host.config().interval
    host.next_cycle(daemon)
    assert daemon.status.state == "ok" and host.ca_file.exists()


class StopWhenReady(Notifier):
    """Stands in for SIGTERM right after the first cycle."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        object.__setattr__(self, "stop_event", stop)

    def ready(self, status: str) -> bool:
        self.stop_event.set()  # type: ignore[attr-defined]
        return False


def test_a_stopped_daemon_no_longer_reports_up(host: Host) -> None:
    """After SIGTERM the status file said "ok" and the metrics "trust_agent_up 1" for ever."""
    stop = threading.Event()
    daemon = host.daemon()
    last = serve(
        daemon, stop=stop, reread=threading.Event(), wake=threading.Event(), notifier=StopWhenReady(stop)
    )
    assert last.state == "ok"  # the last cycle's, for the exit code
    assert host.status()["state"] == "stopped" and host.status()["healthy"] is False
    assert host.metrics()["trust_agent_up"] == "0"
    assert host.status()["cycles"] == 1


def test_a_once_run_leaves_its_outcome_without_claiming_to_run(host: Host) -> None:
    """--once left "state": "ok" and "trust_agent_up 1" behind, as if a daemon still kept the host."""
    events = [threading.Event() for _ in range(3)]
    last = serve(host.daemon(), stop=events[0], reread=events[1], wake=events[2], once=True)
    assert last.state == "ok"  # the cycle's, for the exit code
    doc = host.status()
    assert doc["state"] == "stopped" and doc["healthy"] is False
    assert doc["last_cycle_state"] == "ok" and doc["converged"] is True
    assert doc["outcome"]["status"] == "changed" and doc["last_success"] == iso(host.clock.now)  # type: ignore[index]
    metrics = host.metrics()
    assert metrics["trust_agent_up"] == "0" and metrics["trust_agent_host_converged"] == "1"
    assert metrics["trust_agent_last_success_timestamp_seconds"] == str(int(host.clock.now))


def test_a_failing_once_run_says_how_it_ended(host: Host) -> None:
    host.source.write_text("version: [\n")  # no policy could be read: nothing to converge on
    events = [threading.Event() for _ in range(3)]
    last = serve(host.daemon(), stop=events[0], reread=events[1], wake=events[2], once=True)
    assert last.state == "failing"
    doc = host.status()
    assert doc["state"] == "stopped" and doc["last_cycle_state"] == "failing"
    assert doc["converged"] is False and doc["last_error"]


def test_a_crashed_daemon_no_longer_reports_up(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.daemon.cli import run_daemon

    real = Daemon.cycle

    def crashes_the_second_time(self: Daemon, **kwargs: bool) -> object:
        if self.status.cycles:
            raise RuntimeError(SECRET)
        return real(self, **kwargs)

    monkeypatch.setattr(Daemon, "cycle", crashes_the_second_time)
    config = host.config(interval=0.01)
    log = EventLog(host.logs)
    assert run_daemon(config, environ={}, notifier=Notifier(), log=log, once=False) is None
    doc = host.status()
    assert doc["state"] == "stopped" and doc["cycles"] == 1
    assert str(doc["last_error"]).startswith("crashed: internal error: RuntimeError at ")
    assert SECRET not in host.status_file.read_text()
    assert host.metrics()["trust_agent_up"] == "0"


def test_a_source_change_that_alters_only_the_warnings_refreshes_them_at_once(host: Host) -> None:
    """The same trust (fingerprint) with other warnings: status, metrics and the journal kept the old
    source's warnings until the fingerprint changed."""
    daemon = host.daemon(inputs=PolicyInputs(source=str(host.source)))  # no storage CA: a warning names
    daemon.cycle()  # the storage endpoint
    fingerprint = daemon.status.policy.policy.fingerprint()  # type: ignore[union-attr]
    assert any("minio.storage.example.internal:9000" in w for w in host.status()["warnings"])  # type: ignore[attr-defined]

    host.source.write_text(
        source_text().replace("minio.storage.example.internal", "rgw.storage.example.internal")
    )
    host.next_cycle(daemon)
    assert daemon.status.policy is not None and daemon.status.policy.policy.fingerprint() == fingerprint
    warnings = host.status()["warnings"]
    assert any("rgw.storage.example.internal:9000" in w for w in warnings)  # type: ignore[attr-defined]
    assert not any("minio.storage" in w for w in warnings)  # type: ignore[attr-defined]
    assert host.metrics()["trust_agent_warnings"] == str(len(warnings))  # type: ignore[arg-type]
    assert host.status()["policy_changes_total"] == 0, "the same trust: no policy change"
    records = [json.loads(line) for line in host.logs.getvalue().splitlines()]
    logged = [r["warnings"] for r in records if r["event"] == "policy_warnings"]
    assert len(logged) == 2 and any("rgw.storage" in w for w in logged[-1])
    kept = LastGoodStore(host.state_dir).load()
    assert kept is not None and any("rgw.storage" in w for w in kept.policy.warnings)


def test_a_sighup_during_a_source_outage_starts_the_backoff_over(host: Host) -> None:
    """Each SIGHUP counted as one more failed poll: the person asking for a prompt retry got a longer
    wait instead."""
    daemon = host.daemon()
    daemon.cycle()
    host.source.unlink()
    for _ in range(4):  # bounded: retries 10, 20 (and the cycles between them only reconcile)
        host.next_cycle(daemon)
        if daemon.status.source.retry_in == 20.0:
            break
    assert daemon.status.source.retry_in == 20.0
    failures = daemon.status.source.consecutive_failures

    daemon.cycle(force_poll=True)  # SIGHUP
    assert daemon.status.source.retry_in == 10.0, "the back-off starts over"
    assert daemon.status.source.consecutive_failures == failures + 1, "every failed poll is still counted"
    retries = []
    for _ in range(8):  # bounded: the retries after the SIGHUP grow again from one interval
        before = daemon.status.source.errors_total
        host.next_cycle(daemon)
        if daemon.status.source.errors_total > before:
            retries.append(daemon.status.source.retry_in)
    assert retries[:2] == [20.0, 40.0]


def test_a_sighup_retry_of_a_failing_host_starts_its_backoff_over(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent.daemon.loop as loop

    daemon = host.daemon()
    tried: list[float] = []

    def refused(*_args: object, **_kwargs: object) -> HostOutcome:
        tried.append(host.monotonic.now)
        return HostOutcome("h", "rolled_back", error="dockerd refused the reload: bad value")

    monkeypatch.setattr(loop, "reconcile", refused)
    for _ in range(4):  # tries 1 and 2 intervals apart, then a wait of 4
        host.next_cycle(daemon)
    daemon.cycle(force_poll=True)  # SIGHUP: tried at once
    after_sighup = len(tried)
    while len(tried) == after_sighup and host.monotonic.now - tried[-1] < 20 * daemon.config.interval:
        host.next_cycle(daemon)
    assert tried[after_sighup] - tried[after_sighup - 1] == daemon.config.interval


def hold_the_host_lock(host: Host) -> io.TextIOWrapper:
    """The engine's host lock, as a rollout holds it while it works on the host."""
    lock_dir = host.root / "var/lib/trust-agent"
    lock_dir.mkdir(parents=True, exist_ok=True)
    held = open(lock_dir / "lock", "a")  # noqa: SIM115 - closed by the caller
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return held


def test_a_busy_first_cycle_on_a_new_policy_is_pending_not_converged_on_the_old_one(host: Host) -> None:
    """Status said ok, healthy and converged on the new policy while the host held the old one's files:
    the outcome reached on the old policy stood for the new one."""
    daemon = host.daemon()
    daemon.cycle()
    old = daemon.status.policy.policy.fingerprint()  # type: ignore[union-attr]
    host.source.write_text(source_text(skipverify=True))  # a new policy: the CA goes, skip-TLS comes
    held = hold_the_host_lock(host)
    try:
        host.next_cycle(daemon)
    finally:
        held.close()
    status = daemon.status
    assert status.policy is not None and status.policy.policy.fingerprint() != old
    assert status.host_busy and not status.healthy and not status.converged
    assert status.state == "pending" and status.outcome is None and status.last_cycle_state is None
    assert host.ca_file.exists(), "the old policy's file: the host was not touched"
    doc = host.status()
    assert (doc["state"], doc["healthy"], doc["converged"], doc["outcome"]) == ("pending", False, None, None)
    metrics = host.metrics()
    assert metrics["trust_agent_up"] == "0" and metrics["trust_agent_host_converged"] == "0"
    assert metrics["trust_agent_host_busy"] == "1"

    host.next_cycle(daemon)  # the other run is done
    assert daemon.status.state == "ok" and daemon.status.converged and not host.ca_file.exists()


def test_a_busy_cycle_does_not_claim_the_convergence_it_did_not_look_at(host: Host) -> None:
    daemon = host.daemon()
    daemon.cycle()
    host.ca_file.unlink()  # drift no one looked at while the lock is held
    held = hold_the_host_lock(host)
    try:
        host.next_cycle(daemon)
    finally:
        held.close()
    doc = host.status()
    assert doc["host_busy"] is True and doc["converged"] is None  # unknown: not looked at
    assert doc["outcome"]["status"] == "changed"  # type: ignore[index]  # the last look's, on this policy
    assert doc["last_success"] == iso(host.clock.now - host.config().interval)  # when it was looked at
    metrics = host.metrics()
    assert metrics["trust_agent_host_busy"] == "1" and metrics["trust_agent_host_converged"] == "1"

    host.next_cycle(daemon)
    assert host.status()["converged"] is True and host.metrics()["trust_agent_host_busy"] == "0"


KEEPS = "trust-agent's daemon runs on this host and keeps another policy"


def test_the_daemons_own_cycle_on_a_new_policy_does_not_warn_about_itself(host: Host) -> None:
    """The first cycle on a new policy read the status file still naming the old one, and warned that
    "trust-agent's daemon ... keeps another policy" about the daemon itself."""
    installed = host.root / "etc/trust-agent/install.json"
    installed.parent.mkdir(parents=True)
    installed.write_text("{}\n")  # a host the daemon was installed on: its status file is read
    status_file = host.root / "var/lib/trust-agent/status.json"
    daemon = host.daemon(status_file=status_file)
    daemon.cycle()
    host.source.write_text(source_text(skipverify=True))
    host.next_cycle(daemon)
    assert daemon.status.state == "ok" and daemon.status.policy_changes_total == 1
    assert daemon.status.outcome is not None
    assert not [w for w in daemon.status.outcome.warnings if w.startswith(KEEPS)]
    assert KEEPS not in host.logs.getvalue()


def events(host: Host, name: str) -> list[dict[str, object]]:
    records = [json.loads(line) for line in host.logs.getvalue().splitlines()]
    return [r for r in records if r["event"] == name]


def test_a_source_outage_is_logged_at_info_when_it_begins_and_at_debug_while_it_goes_on(
    host: Host,
) -> None:
    daemon = host.daemon()
    daemon.cycle()
    host.source.unlink()
    for _ in range(8):  # bounded: enough cycles for three failed polls at the back-off's pace
        host.next_cycle(daemon)
    failed = events(host, "source_error")
    assert len(failed) >= 3
    assert [r["level"] for r in failed] == ["info"] + ["debug"] * (len(failed) - 1)

    host.source.write_text("storage: [\n")  # another fault: news again
    daemon.cycle(force_poll=True)
    assert events(host, "source_error")[-1]["level"] == "info"


def test_a_recovered_source_no_longer_shows_its_last_error(host: Host) -> None:
    daemon = host.daemon()
    daemon.cycle()
    host.source.unlink()
    host.next_cycle(daemon)
    assert host.status()["source"]["last_error"]  # type: ignore[index]
    host.source.write_text(source_text())
    daemon.cycle(force_poll=True)
    source = host.status()["source"]
    assert source["state"] == "unchanged" and source["last_error"] is None  # type: ignore[index]


def test_a_metrics_file_that_is_not_the_daemons_is_said_once_and_shown_in_the_warnings(
    host: Host,
) -> None:
    """A person's file at the metrics path: an error every interval for ever, with "warnings": []."""
    host.metrics_file.write_text("a person's notes\n")
    daemon = host.daemon()
    for _ in range(3):
        host.next_cycle(daemon)
    assert host.metrics_file.read_text() == "a person's notes\n"
    failed = events(host, "report_write_failed")
    assert [r["level"] for r in failed] == ["error"]  # once, not every interval
    warnings = host.status()["warnings"]
    said = [w for w in warnings if w.startswith("metrics not written: ")]  # type: ignore[attr-defined]
    assert len(said) == 1 and "holds something other than trust-agent's metrics" in said[0]
    assert str(host.metrics_file) in said[0]

    host.metrics_file.unlink()  # the person moves their file away
    host.next_cycle(daemon)
    assert host.metrics()["trust_agent_up"] == "1"
    assert not [w for w in host.status()["warnings"] if w.startswith("metrics not written")]  # type: ignore[attr-defined]
    assert [r["level"] for r in events(host, "report_write_recovered")] == ["info"]


# --- a new policy the host does not hold yet -------------------------------------------------------


def test_a_new_policy_kept_from_the_host_says_pending_in_status_metrics_and_systemd(host: Host) -> None:
    """It said "starting", which reads as a daemon just started, not as a policy waiting to be applied."""
    daemon = host.daemon()
    daemon.cycle()
    assert host.metrics()["trust_agent_policy_pending"] == "0"
    host.source.write_text(source_text(skipverify=True))
    held = hold_the_host_lock(host)
    try:
        host.next_cycle(daemon)
    finally:
        held.close()
    assert daemon.status.state == "pending" and not daemon.status.healthy
    assert host.status()["state"] == "pending" and host.status()["last_cycle_state"] is None
    metrics = host.metrics()
    assert metrics["trust_agent_policy_pending"] == "1" and metrics["trust_agent_up"] == "0"
    assert status_line(daemon.status).startswith("pending: policy ")
    assert events(host, "cycle")[-1]["state"] == "pending"
    assert daemon.status.consecutive_failures == 0  # nothing is wrong with the host

    host.next_cycle(daemon)  # the other run is done: the policy is applied
    assert host.status()["state"] == "ok" and host.metrics()["trust_agent_policy_pending"] == "0"


def test_the_status_says_pending_while_a_new_policy_is_being_applied(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """During the reconcile of a new policy the status file said "starting"."""
    import agent.daemon.loop as loop

    daemon = host.daemon()
    daemon.cycle()
    host.source.write_text(source_text(skipverify=True))
    seen: list[tuple[object, object]] = []
    real_reconcile = loop.reconcile

    def looking(*args: object, **kwargs: object) -> HostOutcome:
        seen.append((host.status()["state"], host.metrics()["trust_agent_policy_pending"]))
        return real_reconcile(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "reconcile", looking)
    host.next_cycle(daemon)
    assert seen == [("pending", "1")]
    assert host.status()["state"] == "ok"


def test_a_busy_cycle_on_a_new_policy_does_not_keep_the_old_policys_error(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """last_error went on naming the failure of the policy before, which no longer applies."""
    import agent.daemon.loop as loop

    real_reconcile = loop.reconcile
    refused = HostOutcome("h", "rolled_back", error="dockerd refused the reload: bad value")
    monkeypatch.setattr(loop, "reconcile", lambda *_a, **_k: refused)
    daemon = host.daemon()
    daemon.cycle()
    failed_at = host.clock.now
    assert host.status()["last_error"] == "host: dockerd refused the reload: bad value"

    monkeypatch.setattr(loop, "reconcile", real_reconcile)
    host.source.write_text(source_text(skipverify=True))  # a new policy, which finds the lock held
    held = hold_the_host_lock(host)
    try:
        host.next_cycle(daemon)
    finally:
        held.close()
    doc = host.status()
    assert doc["state"] == "pending" and doc["host_busy"] is True
    assert doc["last_error"] is None and doc["last_error_at"] is None
    # What the policy before ended on stays readable, as what is no longer in force.
    assert doc["previous_error"] == "host: dockerd refused the reload: bad value"
    assert doc["previous_error_at"] == iso(failed_at)
    assert "dockerd refused" not in status_line(daemon.status)

    # On the same policy a busy cycle still says the error in force: it is this policy's.
    monkeypatch.setattr(loop, "reconcile", lambda *_a, **_k: refused)
    daemon.cycle(force_poll=True)
    monkeypatch.setattr(loop, "reconcile", real_reconcile)
    held = hold_the_host_lock(host)
    try:
        host.next_cycle(daemon)
    finally:
        held.close()
    assert host.status()["host_busy"] is True
    assert host.status()["last_error"] == "host: dockerd refused the reload: bad value"


# --- every store engines may be sent to ------------------------------------------------------------

CLOUDFRONT = (
    "middleware:\n  storage:\n    - name: cloudfront\n      options:\n"
    "        baseurl: https://d111.cloudfront.net/\n        ipfilteredby: aws\n"
)
BOTH_STORES = "https://d111.cloudfront.net or https://minio.storage.example.internal:9000"


def test_the_policy_logged_names_every_store_engines_may_be_sent_to(host: Host) -> None:
    """The "policy" event named neither the store nor the other ones (S3 itself, for engines in AWS's
    ranges behind a cloudfront ipfilteredby)."""
    host.source.write_text(source_text() + CLOUDFRONT)
    host.daemon().cycle()
    (logged,) = events(host, "policy")
    assert logged["storage"] == BOTH_STORES


def test_the_explanation_of_a_policy_includes_its_other_stores() -> None:
    one = TrustPolicy(("r.example",), "d111.cloudfront.net", "https")
    both = replace(one, storage_alternatives=(("https", "s3.internal:9000"),))
    assert one.fingerprint() == both.fingerprint()
    assert _explanation(one) != _explanation(both)


def test_a_kept_policy_without_the_other_stores_takes_them_from_the_source(host: Host) -> None:
    """A policy kept without its other stores (by an earlier release) stayed so while the source gave
    them: same fingerprint, same reasons, so the daemon took it for explained already."""
    host.source.write_text(source_text() + CLOUDFRONT)
    host.daemon().cycle()
    kept = LastGoodStore(host.state_dir)
    document = json.loads(kept.path.read_text())
    document["policy"]["storage_alternatives"] = []
    kept.path.write_text(json.dumps(document))

    restarted = host.daemon()
    assert restarted.status.policy is not None and restarted.status.policy.policy.storage_alternatives == ()
    restarted.cycle()
    assert restarted.status.policy is not None
    assert restarted.status.policy.policy.storage_summary() == BOTH_STORES
    loaded = kept.load()
    assert loaded is not None and loaded.policy.storage_alternatives == (
        ("https", "minio.storage.example.internal:9000"),
    )
    (said,) = events(host, "policy_explanation")
    assert said["storage"] == BOTH_STORES


# --- a proof the last change could not make stays asked for ------------------------------------------------

CANARY = f"{REGISTRY}/test/canary:1"
UNPROVED = unproved_pull(CANARY, "also tagged old/canary:1")
UNCHECKED = tls_unchecked_pull(CANARY, "the running dockerd has it in insecure-registries")
PROVED = f"canary pull {CANARY}"


def cycles_reconciling(monkeypatch: pytest.MonkeyPatch, *outcomes: HostOutcome) -> list[str]:
    """Each cycle's reconcile answers the next of ``outcomes``; returns the policies' fingerprints."""
    import agent.daemon.loop as loop

    answers = iter(outcomes)
    asked: list[str] = []

    def reconcile(_transport: object, policy: TrustPolicy, _options: object) -> HostOutcome:
        asked.append(policy.fingerprint())
        return next(answers)

    monkeypatch.setattr(loop, "reconcile", reconcile)
    return asked


def changed(*verified: str, warnings: tuple[str, ...] = ()) -> HostOutcome:
    return HostOutcome("h", "changed", verified=("live config", *verified), warnings=warnings)


UNCHANGED = HostOutcome("h", "unchanged", verified=("live config",))


def outcome_warnings(daemon: Daemon) -> tuple[str, ...]:
    """The engine's warnings of the daemon's last outcome."""
    assert daemon.status.outcome is not None
    return daemon.status.outcome.warnings


@pytest.mark.parametrize("unproved", [UNPROVED, UNCHECKED], ids=["no blob fetched", "tls not verified"])
def test_an_unproved_canary_stays_a_warning_until_a_canary_pull_proves_it(
    host: Host, monkeypatch: pytest.MonkeyPatch, unproved: CanaryPull
) -> None:
    """The next cycle changed nothing and pulled no canary, yet logged host_warnings_cleared and status.json
    said "warnings": []: monitoring lost that the redirect was never proved."""
    assert unproved.unproved is not None
    cycles_reconciling(
        monkeypatch,
        changed(unproved.said, warnings=(unproved.unproved,)),
        UNCHANGED,
        UNCHANGED,
        changed(PROVED),
    )
    daemon = host.daemon()
    daemon.cycle()
    policy_warnings = list(daemon.status.policy_warnings)
    for _ in range(2):  # cycles that pull no canary prove nothing
        host.next_cycle(daemon)
        assert host.status()["warnings"] == [*policy_warnings, unproved.unproved]
        assert host.status()["outcome"]["verified"] == ["live config"]  # type: ignore[index]
        assert host.metrics()["trust_agent_warnings"] == str(len(policy_warnings) + 1)
    assert [e["warnings"] for e in events(host, "host_warnings")] == [[unproved.unproved]]  # said once
    assert events(host, "host_warnings_cleared") == []

    host.next_cycle(daemon)  # a change whose canary pull fetched a blob: proved
    assert host.status()["warnings"] == policy_warnings
    assert [e["previous"] for e in events(host, "host_warnings_cleared")] == [[unproved.unproved]]


def test_a_restarted_daemon_still_asks_for_the_proof(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    assert UNPROVED.unproved is not None
    cycles_reconciling(monkeypatch, changed(UNPROVED.said, warnings=(UNPROVED.unproved,)), UNCHANGED)
    host.daemon().cycle()
    restarted = host.daemon()  # the same status file: the last outcome is carried over
    host.next_cycle(restarted)
    assert outcome_warnings(restarted) == (UNPROVED.unproved,)


def test_a_new_policy_drops_the_old_ones_proof_question_and_other_warnings_go_as_before(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert UNPROVED.unproved is not None
    not_loaded = "dockerd is not running: the files take effect when it starts"  # no proof question
    fingerprints = cycles_reconciling(
        monkeypatch,
        changed(UNPROVED.said, warnings=(UNPROVED.unproved, not_loaded)),
        UNCHANGED,
        changed(),  # the new policy: no canary named, nothing asked of it
    )
    daemon = host.daemon()
    daemon.cycle()
    host.next_cycle(daemon)
    assert outcome_warnings(daemon) == (UNPROVED.unproved,)
    host.source.write_text(source_text(skipverify=True))
    host.next_cycle(daemon)
    assert fingerprints[1] != fingerprints[2]
    assert outcome_warnings(daemon) == ()
    assert [e["previous"] for e in events(host, "host_warnings_cleared")] == [[UNPROVED.unproved]]
