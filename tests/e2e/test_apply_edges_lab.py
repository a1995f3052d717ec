"""The apply's edges on real hosts: a batch that cannot finish, a backup on a full disk, and a
docker.service that is not what its unit says (masked, its socket gone, started with another
--config-file), on a mixed fleet (h1: Docker 20.10, h2: 26.1)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.probes import by_host, ca_args, daemon_json, docker_tree, engine_state, skip_args
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab

VERIFY_WAIT = 20  # seconds a rollout waits on a live config that never comes (--verify-timeout)
STATE_DIR = "/var/lib/trust-agent"
BACKUP_DIR = f"{STATE_DIR}/backup"
CERTS = "/etc/docker/certs.d"
DROP_INS = "/etc/systemd/system/docker.service.d"


@pytest.fixture
def lab(mixed_lab: Lab) -> Lab:
    """The mixed fleet (h1: Docker 20.10, h2: 26.1, and two more), every host's trust state reset."""
    return mixed_lab


def agent(lab: Lab, command: str, *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    """Run ``trust-agent COMMAND`` on the lab's inventory; (exit code, outcome by host)."""
    proc = lab.run_agent(command, "-i", str(lab.inventory_yml), *args, "--format", "json")
    assert proc.stdout.strip().startswith("{"), (
        f"{command}: no report (exit {proc.returncode}): {proc.stderr}"
    )
    return proc.returncode, by_host(json.loads(proc.stdout))


def rolled_out_with_cas(lab: Lab, host: Host) -> None:
    code, outcomes = agent(lab, "rollout", *ca_args(lab), "--limit", host.name)
    assert (code, outcomes[host.name]["status"]) == (0, "changed"), outcomes


def backups(lab: Lab, host: Host) -> list[str]:
    return lab.ssh(host, f"ls -A {BACKUP_DIR} 2>/dev/null || true").stdout.split()


@pytest.mark.parametrize("name", ["h1", "h2"])
def test_a_read_only_certs_d_refuses_the_whole_batch_and_changes_nothing(
    lab: Lab, tmp_path: Path, name: str
) -> None:
    """From a CA to skip-TLS with certs.d read-only: daemon.json was renamed (the insecure entry in it,
    not loaded), then the delete failed, nothing was rolled back, and every later run did the same."""
    host = lab.host(name)
    rolled_out_with_cas(lab, host)
    tree, engine, kept = docker_tree(lab, host), engine_state(lab, host), backups(lab, host)
    lab.ssh(host, f"mount --bind {CERTS} {CERTS} && mount -o remount,ro,bind {CERTS}")
    try:
        for _ in range(2):  # the second run finds the host as the first left it
            code, outcomes = agent(lab, "rollout", *skip_args(lab, tmp_path), "--limit", name)
            outcome = outcomes[name]
            assert (code, outcome["status"]) == (1, "failed"), outcome
            assert docker_tree(lab, host) == tree
            assert engine_state(lab, host) == engine
            assert backups(lab, host) == kept  # the backup taken for the batch went with it
            assert outcome["error"].startswith(f"apply failed: cannot delete {CERTS}/{lab.registry}"), outcome
            assert outcome["error"].endswith(".crt (Read-only file system): nothing was changed"), outcome
    finally:
        lab.ssh(host, f"umount {CERTS}")
    code, outcomes = agent(lab, "rollout", *skip_args(lab, tmp_path), "--limit", name)
    assert (code, outcomes[name]["status"]) == (0, "changed"), outcomes
    assert lab.registry in daemon_json(lab, host)["insecure-registries"]


def test_a_backup_on_a_full_disk_leaves_no_file_named_like_a_backup(lab: Lab, tmp_path: Path) -> None:
    """The failed copy left a 0-byte daemon.json.<stamp>, counted among the 50 kept: restoring the
    newest backup emptied daemon.json."""
    host = lab.hosts[1]
    rolled_out_with_cas(lab, host)
    before = lab.ssh(host, "cat /etc/docker/daemon.json").stdout
    lab.ssh(
        host,
        f"mkdir -p {BACKUP_DIR} && mount -t tmpfs -o size=8k,mode=700 tmpfs {BACKUP_DIR} && "
        f"(dd if=/dev/zero of={BACKUP_DIR}/filler bs=1k count=64 2>/dev/null || true)",
    )
    try:
        code, outcomes = agent(lab, "rollout", *skip_args(lab, tmp_path), "--limit", host.name)
        outcome = outcomes[host.name]
        assert (code, outcome["status"]) == (1, "failed"), outcome
        assert backups(lab, host) == ["filler"]
        assert lab.ssh(host, "cat /etc/docker/daemon.json").stdout == before
        assert outcome["error"].startswith(
            f"apply failed: cannot back up /etc/docker/daemon.json to {BACKUP_DIR}/daemon.json."
        ), outcome
        assert outcome["error"].endswith("(No space left on device): nothing was changed"), outcome
    finally:
        lab.ssh(host, f"umount {BACKUP_DIR}")


def test_the_state_directory_a_rollout_makes_is_0711_and_still_read_by_name(lab: Lab) -> None:
    """Made 0755, anyone could list the backups' names and the locks; the per-host daemon keeps it 0711."""
    host = lab.hosts[0]
    lab.ssh(host, f"rm -rf {STATE_DIR}")
    rolled_out_with_cas(lab, host)
    assert lab.ssh(host, f"stat -c %a {STATE_DIR}").stdout.strip() == "711"
    listed = lab.ssh(host, f"runuser -u nobody -- ls {STATE_DIR}", check=False)
    assert listed.returncode != 0 and "Permission denied" in listed.stderr
    # A login that is not root still reads the agent's record by its name (the gather's `[ -f ]` and
    # base64 of it): a plan through such a login sees what the agent added.
    read = lab.ssh(
        host,
        f"runuser -u nobody -- sh -c 'test -f {STATE_DIR}/docker-state.json && cat {STATE_DIR}/docker-state.json'",
    )
    assert json.loads(read.stdout)["version"] == 1
    # An existing directory keeps its mode.
    lab.ssh(host, f"chmod 0750 {STATE_DIR} && rm -rf {CERTS}/*")
    rolled_out_with_cas(lab, host)
    assert lab.ssh(host, f"stat -c %a {STATE_DIR}").stdout.strip() == "750"


@pytest.fixture
def masked(lab: Lab) -> Iterator[Host]:
    host = lab.hosts[0]
    lab.ssh(host, "systemctl mask docker.service")
    yield host
    lab.ssh(host, "systemctl unmask docker.service")


def test_a_masked_unit_is_named_before_anything_is_written(lab: Lab, tmp_path: Path, masked: Host) -> None:
    host = masked
    tree = docker_tree(lab, host)
    said = "docker.service is masked: systemctl cannot reload or restart it (the plan needs a reload)"
    for command in ("plan", "rollout"):
        code, outcomes = agent(lab, command, *skip_args(lab, tmp_path), "--limit", host.name)
        assert (code, outcomes[host.name]["status"]) == (1, "failed"), outcomes
        assert outcomes[host.name]["error"].startswith(said), outcomes
        # Refused, so no change of its plan is shown as one to happen (the table said "files 2").
        assert outcomes[host.name]["changes"] == [], outcomes[host.name]["changes"]
        assert outcomes[host.name]["blockers"][0].startswith(said), outcomes
    assert docker_tree(lab, host) == tree
    # CA files alone need no job of systemd's: written; the running dockerd reads them at once, so the
    # mask changes nothing and is not said.
    code, outcomes = agent(lab, "rollout", *ca_args(lab), "--limit", host.name)
    assert (code, outcomes[host.name]["status"], outcomes[host.name]["engine_action"]) == (
        0,
        "changed",
        "none",
    )
    assert not any(w.startswith("docker.service is masked") for w in outcomes[host.name]["warnings"]), (
        outcomes
    )


REFUSE_STOP = f"{DROP_INS}/refuse-manual-stop.conf"


@pytest.fixture
def refuses_restarts(lab: Lab) -> Iterator[Host]:
    """docker.service refuses a restart job (RefuseManualStop=yes): systemd stops nothing."""
    host = lab.hosts[1]
    lab.ssh(
        host,
        f"mkdir -p {DROP_INS} && printf '[Unit]\\nRefuseManualStop=yes\\n' > {REFUSE_STOP} && systemctl daemon-reload",
    )
    yield host
    lab.ssh(host, f"rm -f {REFUSE_STOP} && systemctl daemon-reload")


def test_a_refused_restart_is_rolled_back_and_not_called_down(
    lab: Lab, tmp_path: Path, refuses_restarts: Host
) -> None:
    """The report said "dockerd is down" while dockerd still ran: a failed restart was taken for a
    stopped engine."""
    host = refuses_restarts
    tree, engine = docker_tree(lab, host), engine_state(lab, host)
    code, outcomes = agent(
        lab, "rollout", *skip_args(lab, tmp_path), "--limit", host.name, "--restart-policy", "restart"
    )
    outcome = outcomes[host.name]
    assert (code, outcome["status"]) == (1, "rolled_back"), outcome
    assert "dockerd is down" not in outcome["error"]
    assert outcome["error"].endswith(
        "rolled back (files restored; the restart was refused again; dockerd kept running, on the "
        "configuration it had before)"
    ), outcome
    assert lab.ssh(host, "systemctl is-active docker").stdout.strip() == "active"
    assert engine_state(lab, host)[0] == engine[0]  # never restarted
    after = docker_tree(lab, host)
    assert {p: d for p, d in after.items() if "/backup/" not in p} == tree


@pytest.fixture
def socket_gone(lab: Lab) -> Iterator[Host]:
    host = lab.hosts[0]
    lab.ssh(host, "rm /run/docker.sock")
    yield host
    lab.ssh(host, "systemctl stop docker.service docker.socket; systemctl start docker.socket docker.service")


def test_an_engine_whose_socket_is_gone_is_named_before_anything_is_written(
    lab: Lab, tmp_path: Path, socket_gone: Host
) -> None:
    """The plan said "pending reload" with no engine version; the rollout reloaded, waited 20 s on
    /info and rolled back, even a certs.d-only install, at every run."""
    host = socket_gone
    tree = docker_tree(lab, host)
    said = "docker.service is active but /var/run/docker.sock does not answer (the socket file is gone)"
    for command, args in (
        ("plan", ca_args(lab)),
        ("rollout", ca_args(lab)),
        ("rollout", skip_args(lab, tmp_path)),
    ):
        started = time.monotonic()
        code, outcomes = agent(lab, command, *args, "--limit", host.name)
        assert time.monotonic() - started < VERIFY_WAIT
        assert (code, outcomes[host.name]["status"]) == (1, "failed"), outcomes
        assert outcomes[host.name]["error"].startswith(said), outcomes
    assert docker_tree(lab, host) == tree


OTHER_CONFIG = "/etc/docker/other.json"
CONFIG_FILE_DROP_IN = f"{DROP_INS}/config-file.conf"


@pytest.fixture
def started_with_another_config_file(lab: Lab) -> Iterator[Host]:
    """dockerd started with --config-file other.json by a drop-in, then the drop-in removed and systemd
    reloaded, dockerd not restarted: the unit no longer says what dockerd runs with."""
    host = lab.hosts[1]
    exec_start = lab.ssh(host, "systemctl show -p ExecStart --value docker").stdout
    argv = exec_start.split("argv[]=", 1)[1].split(" ;", 1)[0].strip()
    drop_in = f"[Service]\\nExecStart=\\nExecStart={argv} --config-file {OTHER_CONFIG}\\n"
    lab.ssh(
        host,
        f"cp /etc/docker/daemon.json {OTHER_CONFIG} && mkdir -p {DROP_INS} && printf '{drop_in}' > {CONFIG_FILE_DROP_IN} "
        f"&& systemctl daemon-reload && systemctl restart docker && rm {CONFIG_FILE_DROP_IN} && systemctl daemon-reload",
    )
    assert OTHER_CONFIG in lab.ssh(host, "tr '\\0' ' ' < /proc/$(cat /var/run/docker.pid)/cmdline").stdout
    yield host
    lab.ssh(
        host,
        f"rm -f {CONFIG_FILE_DROP_IN} {OTHER_CONFIG} && systemctl daemon-reload && systemctl restart docker",
    )


def test_a_config_file_only_the_running_dockerd_has_is_named_before_anything_is_written(
    lab: Lab, tmp_path: Path, started_with_another_config_file: Host
) -> None:
    """Planned from the unit alone: "reload: dockerd runs an older daemon.json", a reload of a dockerd
    reading other.json, 20 s of waiting and a roll-back whose error never named --config-file."""
    host = started_with_another_config_file
    tree = docker_tree(lab, host)
    said = (
        f"the running dockerd was started with --config-file={OTHER_CONFIG}, but docker.service now starts "
        "it with /etc/docker/daemon.json"
    )
    for command in ("plan", "rollout"):
        started = time.monotonic()
        code, outcomes = agent(lab, command, *skip_args(lab, tmp_path), "--limit", host.name)
        assert time.monotonic() - started < VERIFY_WAIT
        assert (code, outcomes[host.name]["status"]) == (1, "failed"), outcomes
        assert outcomes[host.name]["error"].startswith(said), outcomes
    assert docker_tree(lab, host) == tree


def test_a_daemon_json_that_cannot_be_replaced_puts_back_the_files_renamed_before_it(
    lab_session: Lab, tmp_path: Path
) -> None:
    """From skip-TLS to a CA with daemon.json bind-mounted read-only: the CA files were renamed into
    certs.d, then daemon.json's rename failed and the host was left half changed (exit 1, "failed (and
    was rolled back)" by the help). On the session's fleet: one host of any version shows it."""
    lab = lab_session
    lab.reset()
    host = lab.hosts[0]
    code, outcomes = agent(lab, "rollout", *skip_args(lab, tmp_path), "--limit", host.name)
    assert (code, outcomes[host.name]["status"]) == (0, "changed"), outcomes
    record = f"sha256sum {STATE_DIR}/docker-state.json"
    tree, engine, kept = docker_tree(lab, host), engine_state(lab, host), backups(lab, host)
    claims = lab.ssh(host, record).stdout
    daemon = "/etc/docker/daemon.json"
    lab.ssh(host, f"mount --bind {daemon} {daemon} && mount -o remount,ro,bind {daemon}")
    try:
        code, outcomes = agent(lab, "rollout", *ca_args(lab), "--limit", host.name)
    finally:
        lab.ssh(host, f"umount {daemon}")
    outcome = outcomes[host.name]
    assert (code, outcome["status"]) == (1, "failed"), outcome
    assert outcome["error"] == (
        f"apply failed: cannot rename into {daemon} (Device or resource busy): nothing was changed "
        "(the files renamed before it were put back)"
    ), outcome
    assert docker_tree(lab, host) == tree
    assert lab.ssh(host, record).stdout == claims
    assert engine_state(lab, host) == engine
    assert backups(lab, host) == kept  # the backup taken for the batch went with it
    assert lab.ssh(host, f"find /etc/docker {STATE_DIR} -name '.trust-agent.*'").stdout == ""
    code, outcomes = agent(lab, "rollout", *ca_args(lab), "--limit", host.name)
    assert (code, outcomes[host.name]["status"]) == (0, "changed"), outcomes
