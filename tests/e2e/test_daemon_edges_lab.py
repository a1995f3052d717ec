"""The per-host daemon's edges on real hosts: who may read its state, and paths the service's sandbox
hides (ProtectHome=yes, PrivateTmp=yes in trust-agent.service)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from agent.daemon.host_scripts import probe_script
from agent.daemon.wheelhouse import parse_probe, prepare
from tests.e2e.probes import by_host, ca_args
from tests.e2e.test_daemon_lab import agent_pid, dlab, install, metrics, status, wait_for, wheels  # noqa: F401 - fixtures
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab

STATE_DIR = "/var/lib/trust-agent"


def test_the_state_directory_is_roots_to_list_and_the_status_readable_by_name(dlab: Lab) -> None:  # noqa: F811
    """systemd's StateDirectory= made it 0755: anyone could list the kept policy, locks and backups."""
    host = dlab.host("h1")
    dlab.ssh(host, f"mkdir -p {STATE_DIR} && chmod 0755 {STATE_DIR}")  # as a rollout leaves it
    report = install(dlab, limit="h1")
    assert report["h1"]["status"] == "installed", report
    assert dlab.ssh(host, f"stat -c %a {STATE_DIR}").stdout.strip() == "711"
    assert status(dlab, host)["healthy"]
    # Monitoring that does not run as root reads status.json by its name, and nothing else there.
    seen = dlab.ssh(host, f"runuser -u nobody -- cat {STATE_DIR}/status.json", check=False)
    assert seen.returncode == 0 and '"healthy": true' in seen.stdout
    listed = dlab.ssh(host, f"runuser -u nobody -- ls {STATE_DIR}", check=False)
    assert listed.returncode != 0 and "Permission denied" in listed.stderr
    kept = dlab.ssh(host, f"runuser -u nobody -- cat {STATE_DIR}/daemon-last-good.json", check=False)
    assert kept.returncode != 0
    # The service reads only what install copied under /etc/trust-agent: no path of the controller's
    # (a link into its /root or /home included) reaches the host's daemon.yml.
    options = yaml.safe_load(dlab.ssh(host, "cat /etc/trust-agent/daemon.yml").stdout)
    for key in ("source", "storage_ca", "registry_ca"):
        for path in options.get(key) if isinstance(options.get(key), list) else [options.get(key)]:
            assert path is None or path.startswith("/etc/trust-agent/source/"), (key, path)


def test_a_metrics_file_behind_a_link_into_root_is_refused_before_anything_is_installed(dlab: Lab) -> None:  # noqa: F811
    """ProtectHome=yes hid it from the service: the daemon reported healthy and no metric ever came."""
    host = dlab.host("h1")
    collector = "/var/lib/node_exporter/textfile_collector"
    dlab.ssh(host, f"mkdir -p /root/prom /var/lib/node_exporter && ln -sfn /root/prom {collector}")
    try:
        proc = dlab.run_agent(
            "daemon", "install", "-i", str(dlab.inventory_yml), "--limit", "h1",
            "--source", str(dlab.registry_yml), "--storage-ca", str(dlab.storage_ca),
            "--metrics-file", f"{collector}/trust_agent.prom",
        )  # fmt: skip
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert (
            f"h1: failed: --metrics-file {collector}/trust_agent.prom resolves to /root/prom/trust_agent.prom "
            "on this host: the service cannot write home directories (ProtectHome=yes); choose a path "
            "outside /root, /home, /run/user and /tmp"
        ) in proc.stdout
        assert dlab.ssh(host, "test -e /etc/trust-agent || echo absent").stdout.strip() == "absent"
    finally:
        dlab.ssh(host, f"rm -rf {collector} /var/lib/node_exporter /root/prom", check=False)


def uninstall_h1(lab: Lab) -> str:
    proc = lab.run_agent(
        "daemon", "uninstall", "-i", str(lab.inventory_yml), "--limit", "h1", "--format", "json"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(json.loads(proc.stdout)["hosts"][0]["status"])


def test_a_second_uninstall_keeps_what_the_first_one_kept_and_finds_nothing_installed(dlab: Lab) -> None:  # noqa: F811
    """With no manifest left, the second uninstall fell back to `rm -rf /etc/trust-agent` and said
    "uninstalled" because the directory the first one kept was there."""
    host = dlab.host("h1")
    assert install(dlab, limit="h1")["h1"]["status"] == "installed"
    dlab.ssh(host, "echo x > /etc/trust-agent/site-notes.txt; echo x > /etc/trust-agent/source/cm-ca.pem")
    kept = [
        "/etc/trust-agent",
        "/etc/trust-agent/site-notes.txt",
        "/etc/trust-agent/source",
        "/etc/trust-agent/source/cm-ca.pem",
    ]
    assert uninstall_h1(dlab) == "uninstalled"
    assert dlab.ssh(host, "find /etc/trust-agent | sort").stdout.split() == kept
    assert uninstall_h1(dlab) == "absent"
    assert dlab.ssh(host, "find /etc/trust-agent | sort").stdout.split() == kept
    assert dlab.ssh(host, "cat /etc/trust-agent/source/cm-ca.pem").stdout == "x\n"


def test_a_daemon_killed_without_a_word_is_marked_stopped_until_systemd_restarts_it(dlab: Lab) -> None:  # noqa: F811
    """After SIGKILL (the OOM killer, say) status.json said "ok", healthy, and trust_agent_up 1."""
    host = dlab.host("h1")
    install(dlab, limit="h1")
    before = status(dlab, host)
    assert before["healthy"] and before["state"] == "ok"
    killed = agent_pid(dlab, host)
    dlab.ssh(host, f"kill -KILL {killed}")
    # The unit's ExecStopPost= runs at once; systemd restarts the daemon 10s (RestartSec=) later.
    wait_for("status says stopped", lambda: status(dlab, host)["state"] == "stopped", timeout=8, every=0.2)
    after = status(dlab, host)
    assert after["healthy"] is False and after["pid"] == int(killed)
    assert after["last_cycle_state"] == "ok" and after["converged"] is True
    assert after["last_error"] == (
        "the daemon ended without writing its status (systemd: result signal, killed KILL)"
    )
    assert metrics(dlab, host)["trust_agent_up"] == 0
    assert metrics(dlab, host)["trust_agent_host_converged"] == 1
    # The restarted daemon's own files are its own again: healthy, on a new PID.
    wait_for(
        "the restarted daemon is healthy",
        lambda: status(dlab, host)["healthy"] and str(status(dlab, host)["pid"]) != killed,
        timeout=40,
    )
    assert str(status(dlab, host)["pid"]) == agent_pid(dlab, host)
    assert metrics(dlab, host)["trust_agent_up"] == 1


NODE_EXPORTER = "/var/lib/node_exporter"


def test_uninstall_removes_the_directories_install_made_for_the_metrics_file_and_only_those(
    dlab: Lab,  # noqa: F811
) -> None:
    """/var/lib/node_exporter/textfile_collector, made at install for --metrics-file, stayed after
    uninstall. A directory that was there before install, or that holds something else now, stays."""
    host = dlab.host("h1")
    collector = f"{NODE_EXPORTER}/textfile_collector"
    dlab.ssh(host, f"rm -rf {NODE_EXPORTER} && mkdir {NODE_EXPORTER}")  # there before install: stays
    try:
        install(dlab, "--metrics-file", f"{collector}/trust/trust_agent.prom", limit="h1")
        assert dlab.ssh(host, f"stat -c %a {collector} {collector}/trust").stdout.split() == ["755", "755"]
        assert uninstall_h1(dlab) == "uninstalled"
        assert dlab.ssh(host, f"find {NODE_EXPORTER}").stdout.split() == [NODE_EXPORTER]

        # Made by install, then given a file of someone else's: it stays, with the file.
        install(dlab, "--metrics-file", f"{collector}/trust/trust_agent.prom", limit="h1")
        dlab.ssh(host, f"echo 'node_notes 1' > {collector}/notes.prom")
        assert uninstall_h1(dlab) == "uninstalled"
        assert sorted(dlab.ssh(host, f"find {NODE_EXPORTER}").stdout.split()) == [
            NODE_EXPORTER,
            collector,
            f"{collector}/notes.prom",
        ]
    finally:
        dlab.ssh(host, f"rm -rf {NODE_EXPORTER}", check=False)


def test_purge_leaves_nothing_of_trust_agents_but_daemon_json_backups_a_person_may_need(
    dlab: Lab,  # noqa: F811
) -> None:
    """After `uninstall --purge`, /var/lib/trust-agent kept its lock, its record of what it owned, and
    every daemon.json backup. A backup the current daemon.json makes redundant goes; one that holds an
    earlier daemon.json of a person's stays, and the report says where."""
    h1, h2 = dlab.host("h1"), dlab.host("h2")
    install(dlab)
    backups = f"{STATE_DIR}/backup"
    redundant = f"{backups}/daemon.json.20240101T000000Z-aaaaaaaa"
    persons = f"{backups}/daemon.json.20240102T000000Z-bbbbbbbb"
    dlab.ssh(
        h1,
        f"mkdir -p -m 0700 {backups} && cp -p /etc/docker/daemon.json {redundant} && "
        f'echo \'{{"debug": true, "log-level": "warn"}}\' > {persons}',
    )
    proc = dlab.run_agent(
        "daemon",
        "uninstall",
        "-i",
        str(dlab.inventory_yml),
        "--limit",
        "h1:h2",
        "--purge",
        "--format",
        "json",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reports = {h["host"]: h for h in json.loads(proc.stdout)["hosts"]}
    assert {r["status"] for r in reports.values()} == {"uninstalled"}, reports
    assert dlab.ssh(h2, f"test -e {STATE_DIR} || echo gone").stdout.strip() == "gone"
    assert f"1 earlier daemon.json backup kept in {backups}" in reports["h1"]["detail"]
    assert dlab.ssh(h1, f"find {STATE_DIR} | sort").stdout.split() == [STATE_DIR, backups, persons]
    dlab.ssh(h1, f"rm -rf {STATE_DIR}")


def test_a_failed_install_leaves_nothing_half_built(dlab: Lab, tmp_path: Path) -> None:  # noqa: F811
    """pip failing on a damaged wheel left /opt/trust-agent with a half-made virtualenv and the
    unpacked wheelhouse: the next uninstall reported "uninstalled" for a host that never had the daemon."""
    host = dlab.host("h1")
    dlab.ssh(host, "rm -rf /opt/trust-agent")
    target, _ = parse_probe(dlab.ssh(host, probe_script("python3")).stdout)
    damaged = tmp_path / "wheelhouse"
    shutil.copytree(prepare(target).directory, damaged)
    (click_wheel,) = damaged.glob("click-*.whl")
    click_wheel.write_bytes(b"not a wheel\n")
    proc = dlab.run_agent(
        "daemon", "install", "-i", str(dlab.inventory_yml), "--limit", "h1", *ca_args(dlab),
        "--wheelhouse", str(damaged), "--format", "json",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (report,) = json.loads(proc.stdout)["hosts"]
    assert (
        report["status"] == "failed"
        and "installing trust-agent into /opt/trust-agent/venv-" in report["error"]
    )
    left = "ls -d /opt/trust-agent /etc/trust-agent /etc/systemd/system/trust-agent.service 2>/dev/null"
    assert dlab.ssh(host, left, check=False).stdout.strip() == ""
    assert uninstall_h1(dlab) == "absent"


@pytest.fixture
def sudo_wants_a_password(dlab: Lab) -> Iterator[Host]:  # noqa: F811
    """On h1, the deploy user's sudo asks for a password."""
    host = dlab.host("h1")
    dlab.ssh(host, "echo 'deploy ALL=(ALL) ALL' > /etc/sudoers.d/deploy")
    try:
        yield host
    finally:
        dlab.ssh(host, "echo 'deploy ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/deploy")


def test_install_on_a_host_whose_sudo_wants_a_password_says_so_not_unreachable(
    dlab: Lab,  # noqa: F811
    tmp_path: Path,
    sudo_wants_a_password: Host,
) -> None:
    host = sudo_wants_a_password
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        f"{host.name} ansible_host={host.address} ansible_user=deploy ansible_become=yes "
        f"ansible_ssh_private_key_file={dlab.key}\n\n[all:vars]\n"
        f"ansible_ssh_common_args='-o UserKnownHostsFile={dlab.known_hosts}'\n"
    )
    for command in (["install", *ca_args(dlab)], ["uninstall"]):
        proc = dlab.run_agent("daemon", *command, "-i", str(inventory), "--format", "json")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        (report,) = json.loads(proc.stdout)["hosts"]
        assert report["status"] == "failed", report
        assert report["error"].startswith(f"{host.name} ({host.address}): sudo needs a password ("), report
        assert "--become-password-env" in report["error"] and "NOPASSWD" in report["error"]
    assert dlab.ssh(host, "test -e /etc/trust-agent || echo absent").stdout.strip() == "absent"


REGISTRY_CA_FILE = "/etc/docker/certs.d/registry.test/trust-agent-registry-ca.crt"


def test_install_refuses_a_host_its_daemon_would_fail_on_and_installs_the_others(dlab: Lab) -> None:  # noqa: F811
    """README's daemon example left out the rollout's --registry-ca: on hosts holding trust-agent's
    registry CA, install waited out --wait and left a failing trust-agent.service on every host."""
    h1, h2 = dlab.host("h1"), dlab.host("h2")
    rolled = dlab.run_agent("rollout", "-i", str(dlab.inventory_yml), "--limit", "h1", *ca_args(dlab))
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    proc = dlab.run_agent(
        "daemon", "install", "-i", str(dlab.inventory_yml), "--limit", "h1:h2",
        "--source", str(dlab.registry_yml), "--storage-ca", str(dlab.storage_ca),
        "--interval", "2s", "--wait", "30s", "--format", "json",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    reports = by_host(json.loads(proc.stdout))
    refused = reports["h1"]
    assert refused["status"] == "failed", refused
    assert refused["error"].startswith(
        "not installed: the daemon would fail on this host: this host holds trust-agent's registry CA "
        f"({REGISTRY_CA_FILE}), and no registry CA is given"
    ), refused
    assert "--registry-ca FILE" in refused["error"] and refused["seconds"] < 30
    # Nothing put on the refused host, and its trust as the rollout left it.
    assert (
        dlab.ssh(h1, "ls -d /etc/trust-agent /etc/systemd/system/trust-agent.service", check=False).stdout
        == ""
    )
    assert dlab.ssh(h1, "systemctl is-active trust-agent", check=False).stdout.strip() != "active"
    assert dlab.ssh(h1, f"test -f {REGISTRY_CA_FILE} && echo kept").stdout.strip() == "kept"
    # The host the policy does not block is installed all the same.
    assert reports["h2"]["status"] == "installed", reports["h2"]
    assert status(dlab, h2)["healthy"] is True


def test_a_daemon_that_fails_its_first_cycle_says_why_in_its_own_words_and_is_stopped(dlab: Lab) -> None:  # noqa: F811
    """The install waited out --wait, its error was the journal's raw JSON records, and the failing
    service was left running, retrying (and rolling back) for ever."""
    host = dlab.host("h1")
    absent = "registry.test/test/absent:1"
    args = [
        "daemon",
        "install",
        "-i",
        str(dlab.inventory_yml),
        "--limit",
        "h1",
        *ca_args(dlab),
        "--interval",
        "2s",
    ]
    proc = dlab.run_agent(*args, "--canary-image", absent, "--wait", "40s", "--format", "json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (report,) = json.loads(proc.stdout)["hosts"]
    error = report["error"]
    assert report["status"] == "failed" and error.startswith("the daemon failed its cycle: host: "), report
    assert absent in error and '"event"' not in error and "{" not in error, error
    assert error.endswith(
        "trust-agent.service is stopped and disabled: fix the cause, then run daemon install again"
    ), error
    assert report["seconds"] < 40, report  # not the whole --wait
    assert dlab.ssh(host, "systemctl is-active trust-agent", check=False).stdout.strip() == "inactive"
    assert dlab.ssh(host, "systemctl is-enabled trust-agent", check=False).stdout.strip() == "disabled"
    stopped = status(dlab, host)
    assert stopped["state"] == "stopped" and stopped["last_cycle_state"] == "failing", stopped
    # The cause fixed (no canary that cannot be pulled), the next install starts the service again.
    again = dlab.run_agent(*args, "--format", "json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["hosts"][0]["status"] == "installed"
    assert dlab.ssh(host, "systemctl is-enabled trust-agent").stdout.strip() == "enabled"
    assert status(dlab, host)["healthy"] is True


LAST_GOOD = f"{STATE_DIR}/daemon-last-good.json"


def cloudfront_filtering_aws(lab: Lab, tmp_path: Path) -> Path:
    """The lab's config behind a cloudfront middleware that sends clients in AWS's ranges to S3 itself."""
    doc = yaml.safe_load(lab.registry_yml.read_text())
    options = {"baseurl": "https://s3.test:9000", "ipfilteredby": "aws"}
    doc["middleware"] = {"storage": [{"name": "cloudfront", "options": options}]}
    path = tmp_path / "registry-cloudfront.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def harbor_not_path_style(lab: Lab, tmp_path: Path) -> Path:
    """A harbor.yml for the lab's registry and storage, by the storage's name, forcepathstyle false:
    Harbor's registry (distribution 2.x) reads no forcepathstyle and sends engines to s3.test."""
    s3 = yaml.safe_load(lab.registry_yml.read_text())["storage"]["s3"]
    harbor = {
        "hostname": "registry.test",
        "https": {
            "port": 443,
            "certificate": "/data/cert/registry.crt",
            "private_key": "/data/cert/registry.key",
        },
        "harbor_admin_password": "Harbor12345-do-not-leak",
        "storage_service": {
            "s3": {**s3, "regionendpoint": "https://s3.test:9000", "forcepathstyle": False},
        },
    }
    path = tmp_path / "harbor.yml"
    path.write_text(yaml.safe_dump(harbor))
    return path


@pytest.mark.parametrize("source", [cloudfront_filtering_aws, harbor_not_path_style])
def test_each_hosts_daemon_sends_engines_where_the_controller_says(
    dlab: Lab,  # noqa: F811
    tmp_path: Path,
    source: Callable[[Lab, Path], Path],
) -> None:
    """The host's copy of the source lost cloudfront's ipfilteredby (the S3 store engines in AWS's
    ranges are sent to), and a harbor.yml's forcepathstyle: false was read there the 3.x way
    (registry.s3.test, a name the storage's certificate does not cover)."""
    host = dlab.host("h1")
    given = ["--source", str(source(dlab, tmp_path)), "--storage-ca", str(dlab.storage_ca),
             "--registry-ca", str(dlab.registry_ca)]  # fmt: skip
    derived = dlab.run_agent("policy", *given)
    assert derived.returncode == 0, derived.stdout + derived.stderr
    wanted = json.loads(derived.stdout)
    proc = dlab.run_agent(
        "daemon", "install", "-i", str(dlab.inventory_yml), "--limit", "h1", *given,
        "--interval", "2s", "--wait", "60s", "--format", "json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["hosts"][0]["status"] == "installed", proc.stdout
    kept = json.loads(dlab.ssh(host, f"cat {LAST_GOOD}").stdout)["policy"]
    assert kept["storage_endpoint"] == wanted["storage_endpoint"] == "s3.test:9000", kept
    assert kept["storage_scheme"] == wanted["storage_scheme"] == "https"
    alternatives = [f"{scheme}://{host}" for scheme, host in kept.get("storage_alternatives", [])]
    assert alternatives == wanted["storage_alternatives"], kept
    if source is cloudfront_filtering_aws:
        assert wanted["storage_alternatives"] == ["https://198.51.100.11:9000"], wanted


HOST_LOCK = f"{STATE_DIR}/lock"
STORAGE_CA = "/etc/docker/certs.d/registry.test/trust-agent-storage-ca.crt"


def succeeds(lab: Lab, host: Host, command: str) -> bool:
    return lab.ssh(host, command, check=False).returncode == 0


def test_an_install_kept_out_by_another_runs_lock_says_so_and_the_daemon_converges_after(dlab: Lab) -> None:  # noqa: F811
    """The report said "not healthy ... journal: Stopped trust-agent.service ..." while status.json said
    host_busy: the daemon logs another run's lock at info, which the journal's excerpt leaves out."""
    host = dlab.host("h1")
    dlab.ssh(host, f"rm -f {STORAGE_CA}")  # a change to make: the daemon's cycle needs the host's lock
    # One process holds the lock (as a rollout's apply does) until it is killed below, by its PID.
    holder = dlab.ssh(
        host,
        f"mkdir -p {STATE_DIR}; nohup sh -c 'exec 9>>{HOST_LOCK} && flock -n 9 && exec sleep 120' "
        "</dev/null >/dev/null 2>&1 & echo $!",
    ).stdout.strip()
    try:
        wait_for(
            "the lock is held", lambda: not succeeds(dlab, host, f"flock -n {HOST_LOCK} true"), timeout=10
        )
        proc = dlab.run_agent(
            "daemon", "install", "-i", str(dlab.inventory_yml), "--limit", "h1", *ca_args(dlab),
            "--interval", "2s", "--wait", "8s", "--format", "json",
        )  # fmt: skip
        assert proc.returncode == 1, proc.stdout + proc.stderr
        (report,) = json.loads(proc.stdout)["hosts"]
        assert report["error"] == (
            "not healthy after 8s (service active, daemon pending); another trust-agent run holds "
            f"{HOST_LOCK} (a rollout or an apply reaching this host, say): the daemon leaves the host to it; "
            "left running: it converges the host once that run ends"
        ), report
        assert status(dlab, host)["host_busy"] is True
    finally:
        dlab.ssh(host, f"kill {holder}", check=False)
    # As the report says: once the lock is free, the daemon left running converges the host.
    wait_for("the daemon restores the CA", lambda: succeeds(dlab, host, f"test -f {STORAGE_CA}"), timeout=20)
    wait_for("the daemon says healthy", lambda: status(dlab, host)["healthy"] is True, timeout=10)


def test_a_daemon_whose_config_does_not_load_says_why_at_error_priority_and_in_its_status(dlab: Lab) -> None:  # noqa: F811
    """Its "trust-agent: error: ..." was filed at info (`journalctl -p warning` showed only systemd's
    "Failed to start"), and ExecStopPost's --mark-stopped failed on the same config: status.json
    went on saying "stopped" with last_error null."""
    host = dlab.host("h1")
    assert install(dlab, limit="h1")["h1"]["status"] == "installed"
    since = dlab.ssh(host, "date +%s").stdout.strip()
    dlab.ssh(
        host, 'echo "interval: [" >> /etc/trust-agent/daemon.yml; systemctl restart trust-agent', check=False
    )
    refused = "Invalid value for '--config': /etc/trust-agent/daemon.yml:"

    def says_why() -> bool:
        said = status(dlab, host)
        return said["state"] == "stopped" and str(said["last_error"]).startswith(
            f"the daemon cannot start: {refused}"
        )

    wait_for("status.json says why the daemon cannot start", says_why, timeout=15)
    assert status(dlab, host)["healthy"] is False
    journal = f"journalctl -u trust-agent -p err --since @{since} -o cat --no-pager"
    errors = dlab.ssh(host, journal).stdout.splitlines()
    assert any(line.startswith(f"trust-agent: error: {refused}") for line in errors), errors
    assert not any(line.startswith("<") for line in errors), errors  # journald took the prefix off


def test_a_start_that_fails_on_its_root_or_its_state_directory_is_recorded_where_the_status_is(
    dlab: Lab,  # noqa: F811
) -> None:
    """``root:`` with no ``state_dir``: the stop hook looked for status.json under a root that is not a
    directory, and recorded nothing. A state directory that cannot be made: the daemon exited 2, and
    status.json went on saying the daemon had stopped as asked."""
    host = dlab.host("h1")
    assert install(dlab, limit="h1")["h1"]["status"] == "installed"
    config = "/etc/trust-agent/daemon.yml"
    dlab.ssh(host, f"cp {config} /etc/trust-agent/daemon.yml.good")  # the fixture's uninstall removes it
    restart = "systemctl reset-failed trust-agent; systemctl restart trust-agent"

    def says(error: str) -> Callable[[], bool]:
        def check() -> bool:
            said = status(dlab, host)
            return said["state"] == "stopped" and said["last_error"] == error

        return check

    # A hand-written file: root, and neither state_dir nor status_file.
    dlab.ssh(host, f"grep -v '^state_dir:\\|^status_file:' /etc/trust-agent/daemon.yml.good > {config}")
    dlab.ssh(host, f"echo 'root: /nonexistent' >> {config}")
    assert dlab.ssh(host, restart, check=False).returncode != 0
    bad_root = "the daemon cannot start: --root /nonexistent: not a directory"
    wait_for("status.json says the start failed on root", says(bad_root), timeout=15)

    dlab.ssh(host, f"grep -v '^state_dir:' /etc/trust-agent/daemon.yml.good > {config}")
    dlab.ssh(host, f"echo 'state_dir: {config}/state' >> {config}")  # under a file: never a directory
    assert dlab.ssh(host, restart, check=False).returncode != 0
    journal = dlab.ssh(host, "journalctl -u trust-agent -o cat --no-pager | grep 'state directory' | tail -1")
    refused = journal.stdout.strip().removeprefix("trust-agent: error: ")
    assert refused == f"{config}/state: cannot make the state directory private: Not a directory", (
        journal.stdout
    )
    wait_for(
        "status.json says the start failed on the state directory",
        says(f"the daemon cannot start: {refused}"),
        timeout=15,
    )

    dlab.ssh(host, f"cp /etc/trust-agent/daemon.yml.good {config}; {restart}")
    mended = status(dlab, host)
    assert mended["healthy"] is True and mended["last_error"] is None, mended


SLOW_START = "/run/trust-agent-slow-start"
SLOW_START_DROP_IN = "/etc/systemd/system/trust-agent.service.d/slow-start.conf"
# Holds the daemon in Python's start-up, before trust-agent's code installs any signal handler: a
# SIGTERM there kills it, as one sent between fork and the handlers does. The stop hook is not held.
SLOW_SITECUSTOMIZE = f"""\
import time
if b"--mark-stopped" not in open("/proc/self/cmdline", "rb").read():
    open("{SLOW_START}/held", "w").close()
    time.sleep(30)
"""


def test_a_daemon_stopped_before_its_signal_handlers_does_not_keep_the_error_of_the_start_before(
    dlab: Lab,  # noqa: F811
) -> None:
    """A start that failed ("cannot start"), then a good one stopped before its signal handlers were in
    place: SIGTERM killed it unwritten, and the stop hook left "cannot start" as the error in force."""
    host = dlab.host("h1")
    assert install(dlab, limit="h1")["h1"]["status"] == "installed"
    config = "/etc/trust-agent/daemon.yml"
    dlab.ssh(host, f"cp {config} /etc/trust-agent/daemon.yml.good")
    dlab.ssh(host, f"echo 'root: /nonexistent' >> {config}")
    assert dlab.ssh(host, "systemctl restart trust-agent", check=False).returncode != 0
    bad_root = "the daemon cannot start: --root /nonexistent: not a directory"
    wait_for("status.json says the start failed", lambda: status(dlab, host)["last_error"] == bad_root, 15)
    dlab.ssh(host, "systemctl stop trust-agent")  # no restart (RestartSec=) on the broken config
    failed_at = status(dlab, host)["last_error_at"]

    dlab.ssh(host, f"cp /etc/trust-agent/daemon.yml.good {config}")
    held = f"{SLOW_START}/held"
    slow = f"""mkdir -p {SLOW_START} {SLOW_START_DROP_IN.rsplit("/", 1)[0]}
cat > {SLOW_START}/sitecustomize.py <<'PY'
{SLOW_SITECUSTOMIZE}PY
printf '[Service]\\nEnvironment=PYTHONPATH={SLOW_START}\\n' > {SLOW_START_DROP_IN}
systemctl daemon-reload && systemctl reset-failed trust-agent && systemctl start --no-block trust-agent"""
    try:
        dlab.ssh(host, slow)
        wait_for(
            "the new process is held in its start-up", lambda: succeeds(dlab, host, f"test -e {held}"), 20
        )
        assert status(dlab, host)["last_error"] == bad_root  # nothing written yet by the new process
        dlab.ssh(host, "systemctl stop trust-agent")
        ended = dlab.ssh(host, "systemctl show -p Result -p ExecMainCode -p ExecMainStatus trust-agent")
        # systemd: killed by SIGTERM (code 2, CLD_KILLED; status 15), which it takes as a clean stop.
        assert ended.stdout.split() == ["Result=success", "ExecMainCode=2", "ExecMainStatus=15"], ended.stdout
        said = status(dlab, host)
        assert (said["state"], said["healthy"]) == ("stopped", False)
        assert said["last_error"] is None, said  # stopped as asked: nothing wrong with this process
        assert (said["previous_error"], said["previous_error_at"]) == (bad_root, failed_at)
        assert metrics(dlab, host)["trust_agent_up"] == 0
    finally:
        dlab.ssh(host, f"rm -rf {SLOW_START} {SLOW_START_DROP_IN}; systemctl daemon-reload", check=False)
