"""``trust-agent daemon run`` as a real process: signals, sd_notify, the config file, exit codes.

Each test runs the CLI on a directory tree (``--root``), so no engine is involved; every wait is
bounded.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pki import make_ca
from tests.unit.test_daemon_loop import REGISTRY, source_text

REPO = Path(__file__).resolve().parents[2]
RUNNER = "from agent.cli import cli\ncli.main(prog_name='trust-agent')\n"
WAIT = 30.0


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.root = tmp_path / "root"
        (self.root / "etc/docker").mkdir(parents=True)
        self.source = tmp_path / "config.yml"
        self.source.write_text(source_text())
        self.ca = tmp_path / "ca.pem"
        self.ca.write_bytes(make_ca("Storage CA")[0])
        self.status_file = tmp_path / "status.json"
        self.notify_path = str(tmp_path / "notify.sock")

    def args(self, *extra: str) -> list[str]:
        return [
            sys.executable, "-c", RUNNER, "daemon", "run",
            "--source", str(self.source), "--storage-ca", str(self.ca), "--root", str(self.root),
            "--status-file", str(self.status_file), *extra,
        ]  # fmt: skip

    def start(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.args(*extra),
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def status(self) -> dict[str, object]:
        return json.loads(self.status_file.read_text())  # type: ignore[no-any-return]


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


@pytest.fixture
def notify_socket(setup: Setup) -> Iterator[socket.socket]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(setup.notify_path)
        sock.settimeout(WAIT)
        yield sock


def wait_for(sock: socket.socket, field: str) -> list[str]:
    """Messages received up to and including the first one holding ``field``."""
    seen: list[str] = []
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        message = sock.recv(4096).decode()
        seen.append(message)
        if field in message.splitlines():
            return seen
    raise AssertionError(f"no {field} within {WAIT}s: {seen}")


def finish(proc: subprocess.Popen[bytes]) -> tuple[int, list[dict[str, object]]]:
    try:
        out, err = proc.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    lines = out.decode().splitlines()
    assert err == b"", err.decode()
    return proc.returncode, [json.loads(line) for line in lines]


def test_ready_after_the_first_cycle_and_sigterm_exits_cleanly(
    setup: Setup, notify_socket: socket.socket
) -> None:
    proc = setup.start("--interval", "1h", env={"NOTIFY_SOCKET": setup.notify_path})
    try:
        ready = wait_for(notify_socket, "READY=1")
        # READY comes after the first cycle: the tree is converged by then.
        assert (setup.root / "etc/docker/certs.d" / REGISTRY / "trust-agent-storage-ca.crt").exists()
        assert any(line.startswith("STATUS=ok: policy ") for line in ready[-1].splitlines())
        proc.send_signal(signal.SIGTERM)
        stopping = wait_for(notify_socket, "STOPPING=1")
    finally:
        code, records = finish(proc)
    assert code == 0
    assert stopping
    events = [r["event"] for r in records]
    assert events[0] == "start" and events[-1] == "stop" and "signal" in events
    assert setup.status()["cycles"] == 1 and setup.status()["state"] == "stopped"


def test_sighup_rereads_the_source_at_once(setup: Setup) -> None:
    proc = setup.start("--interval", "1h")
    try:
        deadline = time.monotonic() + WAIT
        while not setup.status_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        first = setup.status()["policy"]["fingerprint"]  # type: ignore[index]
        setup.source.write_text(source_text(skipverify=True))
        proc.send_signal(signal.SIGHUP)
        # The new policy is named as soon as it is adopted; the cycle that applies it ends later.
        while setup.status()["cycles"] == 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        status = setup.status()
        assert status["policy"]["fingerprint"] != first  # type: ignore[index]
        assert status["policy"]["insecure"] is True  # type: ignore[index]
        assert status["cycles"] == 2  # the one-hour interval did not pass: the signal did it
        proc.send_signal(signal.SIGTERM)
    finally:
        code, _ = finish(proc)
    assert code == 0


def test_a_second_daemon_on_the_same_state_dir_is_refused(setup: Setup) -> None:
    """A daemon run by hand beside the service wrote its own policy as the service's last good one."""
    proc = setup.start("--interval", "1h")
    try:
        deadline = time.monotonic() + WAIT
        while not setup.status_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        kept = setup.root / "var/lib/trust-agent/daemon-last-good.json"
        before = kept.read_bytes()
        setup.source.write_text(source_text(skipverify=True))
        second = subprocess.run(
            setup.args("--once"), cwd=REPO, capture_output=True, timeout=WAIT, check=False
        )
        assert second.returncode == 2
        assert second.stderr.decode().splitlines() == [
            f"trust-agent: error: {setup.root}/var/lib/trust-agent/daemon.lock: held by another "
            f"trust-agent daemon (pid {proc.pid}): one daemon per state directory"
        ]
        assert kept.read_bytes() == before
        proc.send_signal(signal.SIGTERM)
    finally:
        code, _ = finish(proc)
    assert code == 0


def test_the_state_directory_is_not_listable_by_others_but_the_status_stays_readable(setup: Setup) -> None:
    """systemd's StateDirectory= and a rollout's apply made /var/lib/trust-agent 0755."""
    state = setup.root / "var/lib/trust-agent"
    state.mkdir(parents=True)
    state.chmod(0o755)
    status = state / "status.json"
    ran = subprocess.run(
        setup.args("--once", "--status-file", str(status)),
        cwd=REPO,
        capture_output=True,
        timeout=WAIT,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr.decode()
    assert state.stat().st_mode & 0o777 == 0o711
    assert status.stat().st_mode & 0o777 == 0o644  # monitoring that is not root opens it by name
    assert (state / "daemon-last-good.json").stat().st_mode & 0o777 == 0o600
    assert "state_dir_mode" in ran.stdout.decode()


def test_a_state_directory_named_elsewhere_is_made_private_but_an_existing_one_left_alone(
    setup: Setup,
) -> None:
    fresh, shared = setup.tmp / "fresh" / "state", setup.tmp / "shared"
    shared.mkdir()
    shared.chmod(0o755)  # someone's: it may hold others' files
    for state_dir in (fresh, shared):
        ran = subprocess.run(
            setup.args("--once", "--state-dir", str(state_dir)),
            cwd=REPO,
            capture_output=True,
            timeout=WAIT,
            check=False,
        )
        assert ran.returncode == 0, ran.stderr.decode()
    assert fresh.stat().st_mode & 0o777 == 0o711
    assert shared.stat().st_mode & 0o777 == 0o755


def test_watchdog_pings_while_idle(setup: Setup, notify_socket: socket.socket) -> None:
    env = {"NOTIFY_SOCKET": setup.notify_path, "WATCHDOG_USEC": "300000"}
    proc = setup.start("--interval", "1h", env=env)
    try:
        wait_for(notify_socket, "READY=1")
        started = time.monotonic()
        pings = 0
        while pings < 3:
            wait_for(notify_socket, "WATCHDOG=1")
            pings += 1
        assert time.monotonic() - started < 5  # every ~0.15s, not every interval
        proc.send_signal(signal.SIGTERM)
    finally:
        finish(proc)


def test_once_exit_codes_and_the_config_file(setup: Setup) -> None:
    config = setup.tmp / "daemon.yml"
    config.write_text(
        f"source: {setup.source.name}\nstorage_ca: {setup.ca.name}\nroot: {setup.root}\n"
        f"status_file: {setup.status_file}\nmetrics_file: metrics.prom\n"
    )
    base = [sys.executable, "-c", RUNNER, "daemon", "run", "--config", str(config), "--once"]
    ok = subprocess.run(base, cwd=REPO, capture_output=True, timeout=WAIT, check=False)
    assert ok.returncode == 0, ok.stderr.decode()
    # How the run ended, without claiming that anything still keeps the host converged.
    assert setup.status()["state"] == "stopped" and setup.status()["last_cycle_state"] == "ok"
    metrics = (setup.tmp / "metrics.prom").read_text()
    assert "trust_agent_up 0" in metrics and "trust_agent_host_converged 1" in metrics

    setup.source.write_text("version: [\n")  # a fault: keeps the trust, but the cycle is not ok
    degraded = subprocess.run(base, cwd=REPO, capture_output=True, timeout=WAIT, check=False)
    assert degraded.returncode == 1 and setup.status()["state"] == "stopped"
    assert setup.status()["last_cycle_state"] == "degraded"

    bad = subprocess.run(
        [*base, "--root", str(setup.tmp / "nope")], cwd=REPO, capture_output=True, timeout=WAIT, check=False
    )
    assert bad.returncode == 2 and b"not a directory" in bad.stderr


def test_once_on_a_host_another_run_holds_exits_75_and_claims_no_cycle(setup: Setup) -> None:
    lock_dir = setup.root / "var/lib/trust-agent"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a rollout at work on the host
        busy = subprocess.run(setup.args("--once"), cwd=REPO, capture_output=True, timeout=WAIT, check=False)
    assert busy.returncode == 75, busy.stderr.decode()
    status = setup.status()
    assert status["state"] == "stopped" and status["host_busy"] is True
    assert status["last_cycle_state"] is None and status["last_error"] is None
    done = subprocess.run(setup.args("--once"), cwd=REPO, capture_output=True, timeout=WAIT, check=False)
    assert done.returncode == 0 and setup.status()["host_busy"] is False
    assert setup.status()["last_cycle_state"] == "ok"


def test_under_systemd_each_log_line_carries_its_priority(setup: Setup) -> None:
    setup.source.write_text("version: [\n")  # an error, logged at "error"
    with open(setup.tmp / "journal", "w+b") as journal:
        info = os.fstat(journal.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        subprocess.run(setup.args("--once"), cwd=REPO, env=env, stdout=journal, timeout=WAIT, check=False)
        journal.seek(0)
        lines = journal.read().decode().splitlines()
    levels = {json.loads(line[3:])["level"]: line[:3] for line in lines}
    assert levels["error"] == "<3>" and levels["info"] == "<6>"
    # Elsewhere (a terminal, a pipe) plain JSON lines, whatever the environment says.
    piped = subprocess.run(
        setup.args("--once"), cwd=REPO, env=env, capture_output=True, timeout=WAIT, check=False
    )
    assert all(line.startswith("{") for line in piped.stdout.decode().splitlines())


def test_unit_command_prints_the_unit() -> None:
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, "daemon", "unit", "--prefix", "/opt/ta", "--watchdog", "9m"],
        cwd=REPO, capture_output=True, timeout=WAIT, check=False,
    )  # fmt: skip
    assert result.returncode == 0
    assert (
        "ExecStart=/opt/ta/bin/trust-agent daemon run --config /etc/trust-agent/daemon.yml"
        in result.stdout.decode()
    )
    assert "WatchdogSec=540s" in result.stdout.decode()
