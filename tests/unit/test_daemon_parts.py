"""The daemon's small parts: durations and back-off, sd_notify, metrics, the kept policy, config, unit."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.certs import parse_bundle
from agent.cli import cli
from agent.daemon import cli as daemon_cli
from agent.daemon.config import load_config
from agent.daemon.lastgood import LastGood, LastGoodStore, StateError, policy_from_json, policy_to_json
from agent.daemon.lock import DaemonLockError, hold_daemon_lock
from agent.daemon.logs import EventLog, iso, with_priority, writes_to_journal
from agent.daemon.loop import serve
from agent.daemon.notify import Notifier
from agent.daemon.report import metrics_text, status_document, write_metrics
from agent.daemon.status import DaemonStatus, SourceStatus
from agent.daemon.timing import backoff_delay, jittered, parse_duration, parse_interval
from agent.daemon.unit import UnitOptions, render_unit
from agent.daemon.watch import display_source
from agent.errors import InputError, UsageError
from agent.trust import CA_FILE_NAMES, CAFile, TrustPolicy
from tests.pki import make_ca


def policy() -> TrustPolicy:
    bundle = parse_bundle(make_ca("Storage CA")[0], "ca.pem")
    return TrustPolicy(
        registries=("reg.example", "reg.example:443"),
        storage_endpoint="s3.example:9000",
        storage_scheme="https",
        ca_files=(CAFile("storage", CA_FILE_NAMES["storage"], bundle),),
        reasons=("because",),
    )


# --- timing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("60s", 60), ("5m", 300), ("1h", 3600), ("250ms", 0.25), ("7", 7)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "-1s", "5 minutes", "1d"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text, "--interval")


def test_an_interval_under_a_second_is_refused_on_the_command_line_and_in_the_file(tmp_path: Path) -> None:
    """``--interval 1ms`` was taken: a cycle (the source read, the host gathered) every millisecond."""
    with pytest.raises(UsageError, match="at least 1s"):
        parse_interval("1ms")
    assert parse_interval("1s") == 1.0
    config = tmp_path / "daemon.yml"
    config.write_text("source: /etc/trust-agent/source/registry.yml\ninterval: 250ms\n")
    config.chmod(0o600)
    with pytest.raises(UsageError, match="at least 1s"):
        load_config(str(config))
    result = CliRunner().invoke(cli, ["daemon", "run", "--source", "x.yml", "--interval", "10ms", "--once"])
    assert result.exit_code == 2 and "at least 1s" in result.output


def test_backoff_doubles_from_one_interval_and_caps() -> None:
    assert [backoff_delay(n, 60, 600) for n in range(1, 8)] == [60, 120, 240, 480, 600, 600, 600]
    assert backoff_delay(10_000, 60, 600) == 600  # no overflow after a long outage
    assert backoff_delay(3, 60, 10) == 60  # a cap below the interval never polls faster than normal


def test_jitter_only_shortens() -> None:
    assert jittered(100, 0.1, 0.0) == 100
    assert jittered(100, 0.1, 0.999) == pytest.approx(90.01)
    assert jittered(100, 5.0, 0.999) >= 10  # a silly jitter still leaves a delay


# --- sd_notify ---------------------------------------------------------------------------------------


def receive_all(sock: socket.socket) -> list[str]:
    messages = []
    sock.settimeout(0.2)
    for _ in range(20):
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return messages


def test_notify_messages_arrive_on_the_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
        assert notifier.watchdog_seconds == 2.0
        assert notifier.ready("ok: policy abc")
        assert notifier.watchdog()
        assert notifier.stopping()
        assert receive_all(sock) == [
            "READY=1\nSTATUS=ok: policy abc",
            "WATCHDOG=1",
            "STOPPING=1\nSTATUS=stopping",
        ]


def test_notify_abstract_socket_and_no_socket() -> None:
    name = f"trust-agent-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert Notifier.from_environ({"NOTIFY_SOCKET": "@" + name}).status("hello")
        assert receive_all(sock) == ["STATUS=hello"]
    silent = Notifier.from_environ({})
    assert not silent.ready("x") and not silent.watchdog()


def test_watchdog_is_only_for_the_process_systemd_named() -> None:
    env = {"NOTIFY_SOCKET": "/nowhere", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    assert Notifier.from_environ(env, pid=2).watchdog_seconds is None
    assert Notifier.from_environ(env, pid=1).watchdog_seconds == 1.0
    assert not Notifier.from_environ({"NOTIFY_SOCKET": "/nowhere/x.sock"}).ready("x")  # never raises


# --- status and metrics --------------------------------------------------------------------------


def test_metrics_are_valid_text_format_with_escaped_labels() -> None:
    kept = LastGood(policy(), "/etc/reg.yml", 'odd"kind\\', 1_700_000_000.5)
    status = DaemonStatus(
        source=SourceStatus(spec="/etc/reg.yml"), host="h", pid=1, started_at=0.0, policy=kept
    )
    text = metrics_text(status)
    assert text.endswith("\n")
    assert (
        f'trust_agent_policy_info{{fingerprint="{kept.policy.fingerprint()}",source_kind="odd\\"kind\\\\"}} 1'
        in text
    )
    assert "trust_agent_policy_saved_timestamp_seconds 1700000000.5" in text
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(names) == len(set(names))
    for line in text.splitlines():
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])
    assert status_document(status)["policy"]["ca_files"] == [CA_FILE_NAMES["storage"]]


def test_metrics_are_never_written_over_a_file_that_is_not_the_daemons(tmp_path: Path) -> None:
    status = DaemonStatus(source=SourceStatus(spec="/etc/reg.yml"), host="h", pid=1, started_at=0.0)
    path = tmp_path / "trust_agent.prom"
    write_metrics(path, status)  # none there yet
    write_metrics(path, status)  # its own
    assert path.read_text() == metrics_text(status)
    persons = tmp_path / "daemon.json"
    persons.write_text('{"debug": true}\n')
    with pytest.raises(OSError, match="holds something other than trust-agent's metrics: left alone"):
        write_metrics(persons, status)
    assert persons.read_text() == '{"debug": true}\n'


# --- the kept policy -------------------------------------------------------------------------------


def test_policy_round_trip_keeps_the_fingerprint(tmp_path: Path) -> None:
    original = policy()
    store = LastGoodStore(tmp_path / "state")
    store.save(LastGood(original, "src", "distribution", 12.0))
    loaded = store.load()
    assert loaded is not None
    assert loaded.policy.fingerprint() == original.fingerprint()
    assert loaded.policy.ca_files[0].bundle.pem == original.ca_files[0].bundle.pem
    assert loaded.policy.registries == original.registries and loaded.saved_at == 12.0


def test_the_kept_policy_keeps_the_other_stores_engines_may_be_sent_to(tmp_path: Path) -> None:
    """S3 itself, for engines in AWS's ranges behind a cloudfront ipfilteredby: a restart during a
    source outage must not forget it (storage_summary, the TLS checks)."""
    original = replace(policy(), storage_alternatives=(("https", "s3.eu-west-1.amazonaws.com"),))
    store = LastGoodStore(tmp_path / "state")
    store.save(LastGood(original, "src", "distribution", 12.0))
    loaded = store.load()
    assert loaded is not None
    assert loaded.policy.storage_alternatives == (("https", "s3.eu-west-1.amazonaws.com"),)
    assert loaded.policy.storage_summary() == original.storage_summary()


@pytest.mark.parametrize("missing", ["storage_ca_missing", "registry_ca_missing"])
def test_the_kept_policy_keeps_a_ca_no_input_gave_on_hosts_that_hold_one(
    tmp_path: Path, missing: str
) -> None:
    """Without the flag, a restart during a source outage planned the host's CA file away as no longer
    asked for, where the policy it kept had blocked the host for it."""
    original = replace(policy(), **{missing: True})
    store = LastGoodStore(tmp_path / "state")
    store.save(LastGood(original, "src", "distribution", 12.0))
    loaded = store.load()
    assert loaded is not None
    assert (loaded.policy.storage_ca_missing, loaded.policy.registry_ca_missing) == (
        original.storage_ca_missing,
        original.registry_ca_missing,
    )


def test_a_kept_policy_saved_without_alternatives_is_still_read(tmp_path: Path) -> None:
    saved = policy()
    store = LastGoodStore(tmp_path)
    store.save(LastGood(saved, "src", None, 1.0))
    document = json.loads(store.path.read_text())
    del document["policy"]["storage_alternatives"]
    store.path.write_text(json.dumps(document))
    loaded = store.load()
    assert loaded is not None and loaded.policy.storage_alternatives == ()
    assert loaded.policy.fingerprint() == saved.fingerprint()


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d["policy"].update(registries=["../../etc"]),
        lambda d: d["policy"].update(storage_alternatives="https://s3.example:9000"),
        lambda d: d["policy"].update(storage_alternatives=[["https"]]),
        lambda d: d["policy"]["ca_files"][0].update(name="../evil.crt"),
        lambda d: d["policy"]["ca_files"][0].update(pem="garbage"),
        lambda d: d.update(version=99),
        lambda d: d.update(fingerprint="0" * 16),
    ],
)
def test_a_damaged_kept_policy_is_refused(tmp_path: Path, damage: object) -> None:
    store = LastGoodStore(tmp_path)
    store.save(LastGood(policy(), "src", None, 1.0))
    document = json.loads(store.path.read_text())
    damage(document)  # type: ignore[operator]
    store.path.write_text(json.dumps(document))
    with pytest.raises(StateError):
        store.load()


def test_an_expired_kept_ca_is_still_kept() -> None:
    from datetime import UTC, datetime, timedelta

    old = make_ca("Old CA", not_before=datetime.now(UTC) - timedelta(days=30), days=1)[0]
    bundle = parse_bundle(old, "old.pem", allow_expired=True)
    kept = replace(policy(), ca_files=(CAFile("storage", CA_FILE_NAMES["storage"], bundle),))
    assert policy_from_json(policy_to_json(kept)).fingerprint() == kept.fingerprint()


def test_one_daemon_lock_per_state_dir_names_its_holder(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with hold_daemon_lock(state) as path:
        assert path == state / "daemon.lock" and path.stat().st_mode & 0o777 == 0o600
        # flock conflicts between two opens even in one process: the second daemon's view.
        with pytest.raises(DaemonLockError) as refused, hold_daemon_lock(state):
            pass
        assert str(refused.value) == (
            f"{path}: held by another trust-agent daemon (pid {os.getpid()}): one daemon per state directory"
        )
        assert refused.value.exit_code == 2
    with hold_daemon_lock(state):  # released with the first
        pass


def test_log_lines_carry_their_journal_priority_only_where_stdout_is_the_journal(tmp_path: Path) -> None:
    """journald filed every line at info: `journalctl -p warning` never showed the daemon's errors."""
    with open(tmp_path / "journal", "w+") as stream:
        info = os.fstat(stream.fileno())
        assert writes_to_journal(stream, {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"})
        assert not writes_to_journal(stream, {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino + 1}"})
        assert not writes_to_journal(stream, {})
        log = EventLog(stream, level="debug", journal=True)
        for level in ("error", "warning", "info", "debug"):
            log.event(level, "e")
        stream.seek(0)
        assert [line[:3] for line in stream.read().splitlines()] == ["<3>", "<4>", "<6>", "<7>"]
    plain = io.StringIO()
    assert not writes_to_journal(plain, {"JOURNAL_STREAM": "1:2"})
    EventLog(plain).event("error", "e")
    assert plain.getvalue().startswith("{")


def test_each_line_is_prefixed_once_however_the_writes_cut_it(tmp_path: Path) -> None:
    with open(tmp_path / "journal", "w+b") as target:
        stream = with_priority(io.TextIOWrapper(target, write_through=True), "error")
        for piece in (
            "trust-agent: er",
            "ror: bad\nTrace",
            "back (most recent call last):\n",
            "\n",
            "  x\r y\n",
        ):
            stream.write(piece)
        stream.flush()
        target.seek(0)
        assert target.read().decode() == (
            "<3>trust-agent: error: bad\n<3>Traceback (most recent call last):\n<3>\n<3>  x\r y\n"
        )


def _run_daemon(args: list[str], stderr: Path, journal: bool) -> int:
    """``trust-agent ARGS`` as systemd starts it: stderr the journal's stream (``$JOURNAL_STREAM``)."""
    with open(stderr, "w") as stream:
        info = os.fstat(stream.fileno())
        environ = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
        if journal:
            environ["JOURNAL_STREAM"] = f"{info.st_dev}:{info.st_ino}"
        command = [sys.executable, "-c", "from agent.entry import main; main()", *args]
        return subprocess.run(
            command, stdout=subprocess.DEVNULL, stderr=stream, env=environ, timeout=60
        ).returncode


def test_a_daemon_that_cannot_start_says_why_at_error_priority_in_the_journal(tmp_path: Path) -> None:
    """A broken daemon.yml's "trust-agent: error: ..." was filed at info: `journalctl -p warning`
    showed only systemd's "Failed to start"."""
    config = tmp_path / "daemon.yml"
    config.write_text("source: /etc/docker/registry/config.yml\ninterval: [\n")
    stderr = tmp_path / "stderr"
    assert _run_daemon(["daemon", "run", "--config", str(config)], stderr, journal=True) == 2
    (line,) = stderr.read_text().splitlines()
    assert line.startswith(f"<3>trust-agent: error: Invalid value for '--config': {config}:"), line
    assert _run_daemon(["daemon", "run", "--config", str(config)], stderr, journal=False) == 2
    assert stderr.read_text().startswith("trust-agent: error: Invalid value for '--config'")  # a terminal's


def test_the_stop_hook_records_why_a_daemon_with_a_broken_config_never_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--mark-stopped failed on the same config: status.json went on saying "stopped", last_error null,
    as the last clean stop left it."""
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setattr(daemon_cli, "DEFAULT_STATE_DIR", str(state))  # the unit's, on a host
    earlier = {"version": 1, "state": "stopped", "healthy": False, "pid": 0, "last_error": None, "cycles": 4}
    (state / "status.json").write_text(json.dumps(earlier))
    config = tmp_path / "daemon.yml"
    config.write_text("source: /etc/docker/registry/config.yml\ninterval: [\n")
    result = CliRunner().invoke(cli, ["daemon", "run", "--config", str(config), "--mark-stopped"])
    assert result.exit_code == 2, result.output
    said = json.loads((state / "status.json").read_text())
    assert said["state"] == "stopped" and said["healthy"] is False and said["cycles"] == 4
    assert said["last_error"].startswith(
        f"the daemon cannot start: Invalid value for '--config': {config}:3: not valid YAML"
    ), said
    assert said["last_error_at"]
    # A daemon that holds the state directory keeps its status its own.
    (state / "status.json").write_text(json.dumps(earlier))
    with hold_daemon_lock(state):
        assert (
            CliRunner().invoke(cli, ["daemon", "run", "--config", str(config), "--mark-stopped"]).exit_code
            == 2
        )
    assert json.loads((state / "status.json").read_text())["last_error"] is None


PLAIN_STOP = {"SERVICE_RESULT": "success", "EXIT_CODE": "exited", "EXIT_STATUS": "0"}
FAILED_START = {"SERVICE_RESULT": "exit-code", "EXIT_CODE": "exited", "EXIT_STATUS": "2"}


def stopped_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A daemon that ran a cycle and stopped as asked, in the unit's state directory: its config file
    and its status file."""
    from tests.unit.test_daemon_loop import Host, StopWhenReady

    host = Host(tmp_path)
    monkeypatch.setattr(daemon_cli, "DEFAULT_STATE_DIR", str(host.state_dir))
    status_file = host.state_dir / "status.json"
    stop = threading.Event()
    daemon = host.daemon(status_file=status_file)
    serve(daemon, stop=stop, reread=threading.Event(), wake=threading.Event(), notifier=StopWhenReady(stop))
    config = tmp_path / "daemon.yml"
    config.write_text(
        f"source: {host.source}\nstorage_ca: {host.ca}\nroot: {host.root}\nstate_dir: {host.state_dir}\n"
    )
    return config, status_file


def test_the_stop_hook_after_a_plain_stop_leaves_the_daemons_own_stopped_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, status_file = stopped_daemon(tmp_path, monkeypatch)
    said = status_file.read_bytes()
    assert json.loads(said)["state"] == "stopped" and json.loads(said)["last_error"] is None
    hook = ["daemon", "run", "--config", str(config), "--mark-stopped"]
    assert CliRunner().invoke(cli, hook, env=PLAIN_STOP).exit_code == 0
    assert status_file.read_bytes() == said

    # A configuration broken while the daemon ran: the daemon started, and stopped as asked.
    config.write_text(config.read_text() + "interval: [\n")
    assert CliRunner().invoke(cli, hook, env=PLAIN_STOP).exit_code == 2
    assert status_file.read_bytes() == said, "a plain stop said the daemon cannot start"

    # The next start fails on it: its hook says why.
    assert CliRunner().invoke(cli, hook, env=FAILED_START).exit_code == 2
    failed = json.loads(status_file.read_text())
    assert failed["state"] == "stopped" and failed["last_error"].startswith(
        f"the daemon cannot start: Invalid value for '--config': {config}:"
    )


def test_the_stop_hook_records_a_configuration_that_does_not_hold_together_as_a_start_up_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--root that is not a directory: the daemon exited 2 and status.json said nothing of it."""
    config, status_file = stopped_daemon(tmp_path, monkeypatch)
    missing = tmp_path / "gone"
    config.write_text(config.read_text().replace(f"root: {tmp_path / 'root'}", f"root: {missing}"))
    hook = ["daemon", "run", "--config", str(config), "--mark-stopped"]
    refused = CliRunner().invoke(cli, hook, env=FAILED_START)
    assert refused.exit_code == 2 and f"--root {missing}: not a directory" in refused.output
    said = json.loads(status_file.read_text())
    assert said["state"] == "stopped" and said["healthy"] is False and said["last_cycle_state"] == "ok"
    assert said["last_error"] == f"the daemon cannot start: --root {missing}: not a directory"
    assert said["last_error_at"]

    # A status file the configuration names elsewhere is the one said in.
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({**said, "last_error": None}))
    config.write_text(config.read_text() + f"status_file: {elsewhere}\n")
    assert CliRunner().invoke(cli, hook, env=FAILED_START).exit_code == 2
    assert json.loads(elsewhere.read_text())["last_error"].startswith("the daemon cannot start: --root ")


def test_the_stop_hook_records_a_root_that_is_not_a_directory_where_the_daemon_kept_its_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``root:`` with no ``state_dir``: the hook looked for the status file under the root, where none
    can be, recorded nothing and said only what the daemon had said."""
    config, status_file = stopped_daemon(tmp_path, monkeypatch)  # the unit's state directory
    missing = tmp_path / "gone"
    text = config.read_text().replace(f"root: {tmp_path / 'root'}", f"root: {missing}")
    config.write_text("".join(line for line in text.splitlines(True) if not line.startswith("state_dir:")))
    assert "state_dir" not in config.read_text() and f"root: {missing}" in config.read_text()
    hook = ["daemon", "run", "--config", str(config), "--mark-stopped"]
    refused = CliRunner().invoke(cli, hook, env=FAILED_START)
    assert refused.exit_code == 2 and f"--root {missing}: not a directory" in refused.output
    said = json.loads(status_file.read_text())
    assert said["state"] == "stopped" and said["last_cycle_state"] == "ok"
    assert said["last_error"] == f"the daemon cannot start: --root {missing}: not a directory"

    # No status file anywhere: the hook says it could not record it, and why.
    status_file.unlink()
    refused = CliRunner().invoke(cli, hook, env=FAILED_START)
    assert refused.exit_code == 2 and not status_file.exists()
    assert (
        f"trust-agent: {status_file} does not say the daemon cannot start: there is no status file there "
        "(no daemon has written one)"
    ) in refused.output


def test_a_state_directory_that_cannot_be_made_is_recorded_as_a_start_up_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon exited 2 ("cannot make the state directory private") and status.json went on saying
    how the daemon before had stopped: its stop hook cannot tell that from a plain stop."""
    config, status_file = stopped_daemon(tmp_path, monkeypatch)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    kept = [line for line in config.read_text().splitlines(True) if not line.startswith("state_dir:")]
    config.write_text("".join(kept) + f"state_dir: {blocker / 'state'}\nstatus_file: {status_file}\n")
    refused = CliRunner().invoke(cli, ["daemon", "run", "--config", str(config)])
    assert refused.exit_code == 2 and "cannot make the state directory private" in refused.output
    said = json.loads(status_file.read_text())
    assert said["state"] == "stopped" and said["healthy"] is False
    assert said["last_error"].startswith("the daemon cannot start: ") and said["last_error"].endswith(
        refused.output.strip().removeprefix("trust-agent: error: ")
    ), said
    hook = ["daemon", "run", "--config", str(config), "--mark-stopped"]
    assert CliRunner().invoke(cli, hook, env=FAILED_START).exit_code == 0
    assert json.loads(status_file.read_text()) == said  # the hook leaves the daemon's own words


# --- config file ---------------------------------------------------------------------------------


def test_config_file_maps_options_and_resolves_relative_paths(tmp_path: Path) -> None:
    path = tmp_path / "daemon.yml"
    path.write_text(
        "source: config.yml\nregistry: reg.example\nstorage-ca: [ca.pem]\ninterval: 30s\nverify: false\n"
        "dtr_user: bot\nmetrics_file: /var/lib/m.prom\n"
    )
    loaded = load_config(str(path))
    assert loaded.defaults == {
        "source": str(tmp_path / "config.yml"),
        "registries": ["reg.example"],
        "storage_ca": [str(tmp_path / "ca.pem")],
        "interval": "30s",
        "no_verify": True,
        "metrics_file": "/var/lib/m.prom",
    }
    assert loaded.credentials == {"TRUST_AGENT_DTR_USER": "bot"}
    url = tmp_path / "url.yml"
    url.write_text("source: https://dtr.example.com\n")
    assert load_config(str(url)).defaults["source"] == "https://dtr.example.com"


def test_config_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "daemon.yml"
    path.write_text("source: a.yml\nintervall: 30s\n")
    with pytest.raises(UsageError, match=r"daemon.yml:2: intervall: unknown option"):
        load_config(str(path))
    path.write_text("source: a.yml\nallow_restart: maybe\n")
    with pytest.raises(UsageError, match="must be true or false"):
        load_config(str(path))
    path.write_text("source: a.yml\n\ninterval: banana\n")
    with pytest.raises(UsageError, match=r"daemon.yml:3: interval: 'banana' is not a duration"):
        load_config(str(path))


def test_a_token_in_a_readable_config_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "daemon.yml"
    path.write_text("source: https://dtr.example.com\ndtr_token: tok-DISTINCTIVE\n")
    path.chmod(0o644)
    with pytest.raises(UsageError, match="chmod 600") as caught:
        load_config(str(path))
    assert "tok-DISTINCTIVE" not in str(caught.value)
    path.chmod(0o600)
    assert load_config(str(path)).credentials == {"TRUST_AGENT_DTR_TOKEN": "tok-DISTINCTIVE"}


# --- unit and display --------------------------------------------------------------------------


def test_unit_file() -> None:
    unit = render_unit(UnitOptions(prefix="/opt/ta venv", watchdog_seconds=300))
    lines = unit.splitlines()
    assert "Type=notify" in lines and "WatchdogSec=300s" in lines and "Restart=on-failure" in lines
    assert "KillMode=mixed" in lines and "ExecReload=/bin/kill -HUP $MAINPID" in lines
    assert "ExecStart='/opt/ta venv/bin/trust-agent' daemon run --config /etc/trust-agent/daemon.yml" in lines
    assert "EnvironmentFile=-/etc/trust-agent/daemon.env" in lines
    assert "EnvironmentFile" not in render_unit(UnitOptions(env_file=None))
    assert "SyslogLevelPrefix=yes" in lines  # the logs' <N> prefixes set the journal's priority
    assert "StateDirectory=trust-agent" in lines and "StateDirectoryMode=0711" in lines  # not 0755


def test_unit_file_escapes_systemd_specifiers_in_paths() -> None:
    # systemd would read "%h" as the home directory and "%n" as the unit's name: "%%" is a literal "%".
    unit = render_unit(
        UnitOptions(prefix="/opt/ta%h venv", config="/etc/ta/100%n.yml", env_file="/etc/ta/daemon%i.env")
    )
    lines = unit.splitlines()
    assert "ExecStart='/opt/ta%%h venv/bin/trust-agent' daemon run --config /etc/ta/100%%n.yml" in lines
    assert "EnvironmentFile=-/etc/ta/daemon%%i.env" in lines
    # ExecStart= expands $VAR: "$$" is a literal "$".
    unit = render_unit(UnitOptions(config="/etc/ta/$HOME.yml"))
    assert "ExecStart=/opt/trust-agent/venv/bin/trust-agent daemon run --config '/etc/ta/$$HOME.yml'" in (
        unit.splitlines()
    )


@pytest.mark.parametrize("path", ["/etc/ta/x.yml\nExecStartPre=/bin/sh -c id", "/etc/ta\\x.yml"])
def test_a_unit_path_holding_a_newline_or_backslash_is_refused(path: str) -> None:
    """A newline in --config wrote a line of its own into the unit (an ExecStartPre= of anyone's)."""
    result = CliRunner().invoke(cli, ["daemon", "unit", "--config", path])
    assert result.exit_code == 2
    assert "a control character or backslash has no place in it" in result.output


def test_sources_are_shown_without_credentials() -> None:
    assert (
        display_source("https://admin:tok@dtr.example.com:8443/x?token=y#z")
        == "https://dtr.example.com:8443/x"
    )
    assert display_source("/etc/docker/registry/config.yml") == "/etc/docker/registry/config.yml"


# --- a registry name the command line refuses -----------------------------------------------------

BAD_REGISTRY = "https://registry.example/v2/"
CLI_SAYS = (
    f"registry '{BAD_REGISTRY}': the scheme https:// and a path are no part of a registry name: "
    "give registry.example"
)


def test_a_registry_the_cli_refuses_is_refused_in_the_daemons_config_file_with_its_line(
    tmp_path: Path,
) -> None:
    """daemon.yml's registry was taken as it was: every poll then failed on it, and the daemon retried
    it for ever as if the source were down."""
    path = tmp_path / "daemon.yml"
    path.write_text(f"source: config.yml\nregistry:\n  - registry.example\n  - {BAD_REGISTRY}\n")
    with pytest.raises(InputError) as caught:
        load_config(str(path))
    assert str(caught.value).startswith(f"{path}:2: registry: {CLI_SAYS}")


def test_a_registry_the_cli_refuses_stops_the_daemon_at_start_as_a_configuration_error(
    tmp_path: Path,
) -> None:
    source = tmp_path / "config.yml"
    source.write_text("version: 0.1\nstorage:\n  filesystem: {}\n")
    state = tmp_path / "state"
    argv = ["daemon", "run", "--once", "--source", str(source), "--state-dir", str(state)]
    result = CliRunner().invoke(cli, [*argv, "--registry", BAD_REGISTRY])
    assert result.exit_code == 2, result.output
    assert f"--registry: {CLI_SAYS}" in result.output
    assert not state.exists(), "refused before the daemon started"
    config = tmp_path / "daemon.yml"
    config.write_text(f"source: {source}\nregistry: {BAD_REGISTRY}\nstate_dir: {state}\n")
    result = CliRunner().invoke(cli, ["daemon", "run", "--once", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert CLI_SAYS in result.output and not state.exists()
    # daemon install refuses it too, with the same words, before any host is contacted.
    result = CliRunner().invoke(
        cli, ["daemon", "install", "-i", "127.0.0.1,", "--source", str(source), "--registry", BAD_REGISTRY]
    )
    assert result.exit_code == 2 and f"--registry: {CLI_SAYS}" in result.output


# --- the error in force ------------------------------------------------------------------------------


def test_a_cycle_that_ends_ok_moves_the_error_it_recovered_from_to_previous_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a recovery, status.json kept the failed policy's last_error beside "state": "ok"."""
    import agent.daemon.loop as loop
    from agent.outcome import HostOutcome
    from tests.unit.test_daemon_loop import Host

    host = Host(tmp_path)
    daemon = host.daemon()
    real_reconcile = loop.reconcile
    refused = HostOutcome("h", "rolled_back", error="dockerd refused the reload: bad value")
    monkeypatch.setattr(loop, "reconcile", lambda *_a, **_k: refused)
    daemon.cycle()
    failed_at = host.clock.now
    failing = host.status()
    assert failing["state"] == "failing"
    assert failing["last_error"] == "host: dockerd refused the reload: bad value"

    monkeypatch.setattr(loop, "reconcile", real_reconcile)
    host.clock.now += 5
    daemon.cycle(force_poll=True)  # SIGHUP: the person says the host is fixed
    recovered = host.status()
    assert recovered["state"] == "ok" and recovered["healthy"] is True
    assert recovered["last_error"] is None and recovered["last_error_at"] is None
    assert recovered["previous_error"] == "host: dockerd refused the reload: bad value"
    assert recovered["previous_error_at"] == iso(failed_at)

    # A new failure is the error in force again; the one before it stays the previous one.
    monkeypatch.setattr(loop, "reconcile", lambda *_a, **_k: refused)
    daemon.cycle(force_poll=True)
    again = host.status()
    assert (
        again["state"] == "failing" and again["last_error"] == "host: dockerd refused the reload: bad value"
    )
    assert again["previous_error"] == "host: dockerd refused the reload: bad value"


def test_a_canary_image_outside_the_policys_registries_is_refused_by_install_before_any_host(
    tmp_path: Path,
) -> None:
    """A rollout refused it; daemon install took it, and every host's daemon would remove that image
    and pull it from elsewhere each cycle, proving nothing about the policy."""
    source = tmp_path / "config.yml"
    source.write_text("version: 0.1\nstorage:\n  filesystem: {}\n")
    argv = ["daemon", "install", "-i", "127.0.0.1,", "--source", str(source), "--registry", "registry.test"]
    result = CliRunner().invoke(cli, [*argv, "--canary-image", "lab/busybox:1"])
    assert result.exit_code == 2, result.output
    assert "--canary-image lab/busybox:1: " in result.output and "(registry.test)" in result.output
