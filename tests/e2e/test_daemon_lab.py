"""The per-host daemon on real hosts: installed over SSH, kept converged by systemd, through outages.

Two of the lab's hosts get the daemon (``--limit h1:h2``) with a 2 s interval. The source the daemon
watches is the secret-free copy ``daemon install`` writes on each host; writing or removing that file
over SSH is how these tests change the source or take it away.

Hosts cannot reach a package index, and neither can the agent inside the lab namespace: the wheels
are fetched once from here (outside it) into the controller's cache, where ``daemon install`` finds
them. The virtualenv stays on the hosts between tests of this module (a re-install finds it and skips
it) and goes at the end; the service, its configuration and its state go after every test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from agent.daemon.host_scripts import probe_script
from agent.daemon.wheelhouse import parse_probe, prepare
from tests.e2e.probes import ca_args, curl_calls, curl_watched, daemon_json, engine_state, pull
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab

INTERVAL = 2.0
LIMIT = "h1:h2"
SOURCE = "/etc/trust-agent/source/registry.yml"
STATUS = "/var/lib/trust-agent/status.json"
METRICS = "/var/lib/trust-agent/metrics.prom"
STORAGE_CA = "/etc/docker/certs.d/registry.test/trust-agent-storage-ca.crt"
REMOVE_SERVICE = (
    "systemctl disable --now trust-agent >/dev/null 2>&1; "
    "rm -rf /etc/trust-agent /etc/systemd/system/trust-agent.service "
    "/var/lib/trust-agent/daemon-last-good.json /var/lib/trust-agent/status.json "
    "/var/lib/trust-agent/metrics.prom; "
    "systemctl daemon-reload; systemctl reset-failed trust-agent >/dev/null 2>&1; true"
)


def remove_daemon(lab: Lab, *, venv: bool) -> None:
    command = REMOVE_SERVICE + ("; rm -rf /opt/trust-agent" if venv else "")
    for host in lab.hosts:
        lab.ssh(host, command, check=False, timeout=120)


@pytest.fixture(scope="module")
def wheels(lab_session: Lab) -> Iterator[None]:
    """The hosts' wheelhouse in the controller's cache; the hosts' virtualenvs removed at the end."""
    target, has_venv = parse_probe(lab_session.ssh(lab_session.hosts[0], probe_script("python3")).stdout)
    assert has_venv, "the lab rootfs has python3-venv"
    prepare(target)
    yield
    remove_daemon(lab_session, venv=True)


@pytest.fixture
def dlab(lab: Lab, wheels: None) -> Iterator[Lab]:
    """The lab with no daemon on any host before and after the test, whatever the test did."""
    remove_daemon(lab, venv=False)
    yield lab
    remove_daemon(lab, venv=False)


@pytest.fixture
def hosts(dlab: Lab) -> list[Host]:
    return [dlab.host("h1"), dlab.host("h2")]


def install(lab: Lab, *extra: str, limit: str = LIMIT) -> dict[str, dict[str, Any]]:
    proc = lab.run_agent(
        "daemon",
        "install",
        "-i",
        str(lab.inventory_yml),
        "--limit",
        limit,
        *ca_args(lab),
        "--interval",
        f"{INTERVAL:g}s",
        "--metrics-file",
        METRICS,
        "--format",
        "json",
        *extra,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {h["host"]: h for h in json.loads(proc.stdout)["hosts"]}


def status(lab: Lab, host: Host) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(lab.ssh(host, f"cat {STATUS}").stdout)
    return data


def metrics(lab: Lab, host: Host) -> dict[str, float]:
    out = lab.ssh(host, f"cat {METRICS}").stdout
    return {
        line.split()[0]: float(line.split()[1])
        for line in out.splitlines()
        if line and not line.startswith("#") and "{" not in line
    }


def wait_for(what: str, check: Callable[[], bool], timeout: float, every: float = 0.25) -> float:
    """Seconds until ``check()`` holds; fails after ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what}: not within {timeout:g}s")
        time.sleep(every)
    return time.monotonic() - start


def agent_pid(lab: Lab, host: Host) -> str:
    return lab.ssh(host, "systemctl show -p MainPID --value trust-agent").stdout.strip()


def test_install_converges_hosts_without_a_rollout_and_pulls_work(dlab: Lab, hosts: list[Host]) -> None:
    started = time.monotonic()
    report = install(dlab)
    took = time.monotonic() - started
    for host in hosts:
        assert report[host.name]["status"] == "installed", report
        state = status(dlab, host)
        assert state["healthy"] and state["state"] == "ok"
        assert state["policy"]["source"] == SOURCE
        assert "trust-agent-storage-ca.crt" in dlab.ssh(host, "ls /etc/docker/certs.d/registry.test").stdout
        assert metrics(dlab, host)["trust_agent_up"] == 1
        pull(dlab, host)
        # What the host keeps: no secret of the registry's config, and nothing readable by others.
        copied = dlab.ssh(host, f"cat {SOURCE}").stdout
        assert "secretkey" not in copied and "accesskey" not in copied
        modes = dlab.ssh(host, f"stat -c '%a %n' /etc/trust-agent/daemon.yml {SOURCE}").stdout.split()
        assert modes[0] == "600" and modes[2] == "600"
        assert dlab.ssh(host, "systemctl is-enabled trust-agent").stdout.strip() == "enabled"
        venvs = dlab.ssh(host, "ls /opt/trust-agent").stdout.split()
        assert len(venvs) == 2 and venvs[0] == "venv" and venvs[1].startswith("venv-"), venvs
    assert dlab.ssh("h3", "ls /opt/trust-agent /etc/trust-agent 2>/dev/null | wc -l").stdout.strip() == "0"
    assert not dlab.ssh("h3", "ls /etc/docker/certs.d 2>/dev/null", check=False).stdout.strip(), (
        "not in --limit"
    )

    pids = {h.name: agent_pid(dlab, h) for h in hosts}
    again = install(dlab)
    assert {r["status"] for r in again.values()} == {"unchanged"}
    assert {h.name: agent_pid(dlab, h) for h in hosts} == pids, "nothing changed: no restart"
    print(f"\ninstall on 2 hosts: {took:.1f}s; re-install: unchanged")


def test_missing_venv_is_reported_and_nothing_is_installed(dlab: Lab) -> None:
    host = dlab.host("h1")
    # A python3 whose ensurepip is missing, as on a Debian host without python3-venv.
    dlab.ssh(
        host,
        "mkdir -p /tmp/no-venv/ensurepip && echo 'raise ImportError(\"stripped\")' "
        "> /tmp/no-venv/ensurepip/__init__.py && printf '#!/bin/sh\\nPYTHONPATH=/tmp/no-venv "
        'exec /usr/bin/python3 "$@"\\n\' > /tmp/no-venv/python3 && chmod +x /tmp/no-venv/python3',
    )
    try:
        proc = dlab.run_agent(
            "daemon",
            "install",
            "-i",
            str(dlab.inventory_yml),
            "--limit",
            "h1",
            "--source",
            str(dlab.registry_yml),
            "--storage-ca",
            str(dlab.storage_ca),
            "--python",
            "/tmp/no-venv/python3",
        )
    finally:
        dlab.ssh(host, "rm -rf /tmp/no-venv", check=False)
    assert proc.returncode == 1
    assert "h1: failed: /tmp/no-venv/python3 -m venv is not available (install python3-venv)" in proc.stdout
    assert dlab.ssh(host, "test -e /etc/trust-agent || echo absent").stdout.strip() == "absent"


def test_source_change_to_skip_tls_is_picked_up_with_a_reload_within_two_intervals(
    dlab: Lab, hosts: list[Host]
) -> None:
    install(dlab)
    before = {h.name: engine_state(dlab, h) for h in hosts}
    pids = {h.name: agent_pid(dlab, h) for h in hosts}
    doc = yaml.safe_load(dlab.ssh(hosts[0], f"cat {SOURCE}").stdout)
    doc["storage"]["s3"]["skipverify"] = True
    changed = yaml.safe_dump(doc)

    def insecure_everywhere() -> bool:
        return all(
            "registry.test" in daemon_json(dlab, h).get("insecure-registries", [])
            and status(dlab, h)["healthy"]
            for h in hosts
        )

    with curl_watched(dlab, hosts):
        for host in hosts:  # the source changed: a new file, renamed into place as a tool would
            dlab.ssh(
                host,
                f"cat > {SOURCE}.new && chmod 600 {SOURCE}.new && mv {SOURCE}.new {SOURCE}",
                input=changed,
            )
        changed_at = time.monotonic()
        wait_for("insecure-registries on both hosts", insecure_everywhere, timeout=2 * INTERVAL + 10)
        took = time.monotonic() - changed_at
        # The daemon read the engine's /info (the reload verified) on the socket itself: no curl.
        assert all("live config" in status(dlab, h)["outcome"]["verified"] for h in hosts)
        assert [curl_calls(dlab, h) for h in hosts] == ["", ""]
    # Two intervals, plus the cycle itself (write, reload, read the live config back) and the polling.
    assert took <= 2 * INTERVAL + 3, f"took {took:.1f}s"
    for host in hosts:
        state = status(dlab, host)
        assert state["policy"]["insecure"] is True
        assert state["policy_changes_total"] == 1
        start_stamp, reloads = engine_state(dlab, host)
        assert start_stamp == before[host.name][0], "dockerd reloaded, not restarted"
        assert reloads == before[host.name][1] + 1
        assert agent_pid(dlab, host) == pids[host.name], "the daemon itself was not restarted"
        info = json.loads(
            dlab.ssh(host, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout
        )
        assert info["registry.test"]["Secure"] is False
        pull(dlab, host)
    print(f"\nskip-TLS picked up by both hosts in {took:.1f}s (interval {INTERVAL:g}s)")


def test_a_restart_of_the_daemon_while_it_reloads_dockerd_neither_hangs_nor_loses_the_change(
    dlab: Lab,
) -> None:
    """The unit is After=docker.service: a stop of the daemon orders docker's jobs behind it, so a
    reload the daemon was waiting for would wait for the daemon's own exit (both hung until
    TimeoutStopSec, 600 s). The daemon is told to re-read a changed source (SIGHUP: a cycle that
    reloads dockerd) and restarted at once."""
    host = dlab.host("h1")
    install(dlab, limit="h1")
    before = engine_state(dlab, host)
    doc = yaml.safe_load(dlab.ssh(host, f"cat {SOURCE}").stdout)
    doc["storage"]["s3"]["skipverify"] = True
    dlab.ssh(host, f"cat > {SOURCE}", input=yaml.safe_dump(doc))
    started = time.monotonic()
    dlab.ssh(host, "systemctl reload trust-agent && systemctl restart --no-block trust-agent")

    def settled() -> bool:
        jobs = dlab.ssh(host, "systemctl list-jobs --no-legend --no-pager").stdout
        active = dlab.ssh(host, "systemctl is-active trust-agent", check=False).stdout.strip()
        return not jobs.strip() and active == "active"

    took = wait_for("the daemon back and no job waiting", settled, timeout=60)
    assert took < 30, f"took {took:.0f}s"
    wait_for("the registry insecure", lambda: insecure_live(dlab, host), timeout=2 * INTERVAL + 10)
    assert "registry.test" in daemon_json(dlab, host)["insecure-registries"]
    assert engine_state(dlab, host)[1] > before[1], "dockerd was reloaded"
    assert time.monotonic() - started < 60


def insecure_live(lab: Lab, host: Host) -> bool:
    info = json.loads(lab.ssh(host, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout)
    return "registry.test" in info and info["registry.test"]["Secure"] is False


def test_source_outage_keeps_trust_reports_the_error_and_recovers(dlab: Lab, hosts: list[Host]) -> None:
    install(dlab, "--max-backoff", "3s")
    saved = {h.name: dlab.ssh(h, f"cat {SOURCE}").stdout for h in hosts}
    certs = {
        h.name: dlab.ssh(h, "find /etc/docker/certs.d -type f | sort | xargs sha256sum").stdout for h in hosts
    }
    for host in hosts:
        dlab.ssh(host, f"rm {SOURCE}")
    gone_at = time.monotonic()

    def failing_for_a_while() -> bool:
        return all(status(dlab, h)["source"]["consecutive_failures"] >= 3 for h in hosts)

    wait_for("three failed polls on both hosts", failing_for_a_while, timeout=30)
    for host in hosts:
        state = status(dlab, host)
        assert state["state"] == "degraded" and not state["healthy"]
        assert state["converged"], "the host is still held on the last good policy"
        assert state["source"]["state"] == "error"
        assert SOURCE in state["source"]["last_error"]
        assert "cannot read" in state["last_error"]
        found = metrics(dlab, host)
        assert found["trust_agent_up"] == 0
        assert found["trust_agent_source_up"] == 0
        assert found["trust_agent_host_converged"] == 1
        assert found["trust_agent_source_errors_total"] >= 3
        assert (
            dlab.ssh(host, "find /etc/docker/certs.d -type f | sort | xargs sha256sum").stdout
            == certs[host.name]
        )
        pull(dlab, host)  # trust stays while the source is gone
    outage = time.monotonic() - gone_at

    for host in hosts:
        dlab.ssh(host, f"cat > {SOURCE}", input=saved[host.name])
    back_at = time.monotonic()
    # The next poll is at most --max-backoff away.
    wait_for(
        "healthy again", lambda: all(status(dlab, h)["healthy"] for h in hosts), timeout=4 + INTERVAL + 5
    )
    for host in hosts:
        state = status(dlab, host)
        assert state["source"]["consecutive_failures"] == 0 and state["source"]["state"] in (
            "read",
            "unchanged",
        )
        assert metrics(dlab, host)["trust_agent_source_up"] == 1
        assert state["policy_changes_total"] == 0, "the same policy: nothing to change"
    print(
        f"\noutage {outage:.1f}s kept trust; recovered {time.monotonic() - back_at:.1f}s after the source returned"
    )


def test_a_ca_file_deleted_by_hand_is_restored_within_one_interval(dlab: Lab, hosts: list[Host]) -> None:
    install(dlab)
    host = hosts[0]
    expected = dlab.ssh(host, f"sha256sum < {STORAGE_CA}").stdout
    changes = status(dlab, host)["changes_total"]
    dlab.ssh(host, f"rm {STORAGE_CA}")
    took = wait_for(
        "the CA file back",
        lambda: dlab.ssh(host, f"sha256sum < {STORAGE_CA} 2>/dev/null", check=False).stdout == expected,
        timeout=INTERVAL + 10,
    )
    # One interval, plus the cycle's own time and the polling here.
    assert took <= INTERVAL + 2, f"took {took:.1f}s"
    wait_for("the repair counted", lambda: status(dlab, host)["changes_total"] == changes + 1, timeout=5)
    pull(dlab, host)
    print(f"\ndeleted CA restored in {took:.1f}s (interval {INTERVAL:g}s)")


def test_a_docker_stopped_by_hand_stays_stopped_though_its_socket_listens(
    dlab: Lab, hosts: list[Host]
) -> None:
    """`systemctl stop docker` leaves docker.socket listening: any connection to the engine's socket
    would start dockerd again. The daemon, reconciling every interval, must not be that connection."""
    install(dlab)
    host = hosts[0]
    dlab.ssh(host, "systemctl stop docker")
    try:
        with curl_watched(dlab, [host]):
            cycles = status(dlab, host)["cycles"]
            dlab.ssh(host, f"rm {STORAGE_CA}")  # the host's files are still kept
            wait_for(
                "three more cycles", lambda: status(dlab, host)["cycles"] >= cycles + 3, INTERVAL * 3 + 10
            )
            assert dlab.ssh(host, "systemctl is-active docker", check=False).stdout.strip() == "inactive"
            assert dlab.ssh(host, "systemctl is-active docker.socket", check=False).stdout.strip() == "active"
            assert dlab.ssh(host, f"test -f {STORAGE_CA}", check=False).returncode == 0
            state = status(dlab, host)
            assert state["healthy"] and state["outcome"]["engine_action"] == "none", state
            assert "unix-socket" not in curl_calls(dlab, host)
    finally:
        dlab.ssh(host, "systemctl reset-failed docker.service; systemctl start docker.socket docker.service")
    cycles = status(dlab, host)["cycles"]
    wait_for(
        "a cycle with dockerd back", lambda: status(dlab, host)["cycles"] >= cycles + 2, INTERVAL * 2 + 10
    )
    state = status(dlab, host)
    assert state["healthy"] and state["outcome"]["status"] == "unchanged", state
    pull(dlab, host)


def test_restart_with_the_source_down_keeps_the_last_good_policy(dlab: Lab, hosts: list[Host]) -> None:
    report = install(dlab)
    host = hosts[0]
    fingerprint = report[host.name]["daemon"]["policy"]["fingerprint"]
    certs = dlab.ssh(host, "find /etc/docker/certs.d -type f | sort | xargs sha256sum").stdout
    old_pid = agent_pid(dlab, host)
    dlab.ssh(host, f"rm {SOURCE}")
    dlab.ssh(host, "systemctl restart trust-agent", timeout=60)  # Type=notify: returns after cycle one
    new_pid = agent_pid(dlab, host)
    assert new_pid != old_pid

    def new_process_reported() -> bool:
        return str(status(dlab, host)["pid"]) == new_pid

    wait_for("the new process's status", new_process_reported, timeout=10)
    state = status(dlab, host)
    assert state["policy"]["fingerprint"] == fingerprint
    assert state["state"] == "degraded" and state["converged"]
    assert state["source"]["state"] == "error"
    assert dlab.ssh(host, "systemctl is-active trust-agent").stdout.strip() == "active"
    assert (
        "policy_restored"
        in dlab.ssh(host, f"journalctl -u trust-agent _PID={new_pid} -o cat --no-pager").stdout
    )
    # Some cycles later, still the same files.
    wait_for("two more cycles", lambda: status(dlab, host)["cycles"] >= 3, timeout=3 * INTERVAL + 5)
    assert dlab.ssh(host, "find /etc/docker/certs.d -type f | sort | xargs sha256sum").stdout == certs
    pull(dlab, host)


def test_uninstall_leaves_trust_unless_purge(dlab: Lab, hosts: list[Host]) -> None:
    install(dlab)
    h1, h2 = hosts
    certs = dlab.ssh(h1, "find /etc/docker/certs.d -type f | sort").stdout
    # A file someone else keeps beside the daemon's: uninstall removes only what install wrote.
    dlab.ssh(h1, "mkdir -p /etc/trust-agent/extra && echo mine > /etc/trust-agent/extra/person.txt")

    proc = dlab.run_agent(
        "daemon", "uninstall", "-i", str(dlab.inventory_yml), "--limit", "h1", "--format", "json"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["hosts"][0]["status"] == "uninstalled"
    assert dlab.ssh(h1, "find /etc/trust-agent | sort").stdout.split() == [
        "/etc/trust-agent",
        "/etc/trust-agent/extra",
        "/etc/trust-agent/extra/person.txt",
    ]
    assert dlab.ssh(h1, "cat /etc/trust-agent/extra/person.txt").stdout == "mine\n"
    dlab.ssh(h1, "rm -r /etc/trust-agent")
    gone = "test -e /opt/trust-agent || test -e /etc/trust-agent || test -e /etc/systemd/system/trust-agent.service"
    assert dlab.ssh(h1, gone, check=False).returncode == 1
    assert dlab.ssh(h1, "systemctl is-active trust-agent", check=False).stdout.strip() == "inactive"
    assert dlab.ssh(h1, "find /etc/docker/certs.d -type f | sort").stdout == certs, "trust kept"
    assert dlab.ssh(h1, "ls /var/lib/trust-agent").stdout.split() == ["docker-state.json", "lock"]
    pull(dlab, h1)

    proc = dlab.run_agent(
        "daemon", "uninstall", "-i", str(dlab.inventory_yml), "--limit", "h2", "--purge", "--format", "json"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["hosts"][0]["status"] == "uninstalled"
    assert dlab.ssh(h2, gone, check=False).returncode == 1
    assert not dlab.ssh(h2, "ls /etc/docker/certs.d").stdout.strip(), "purge removes the agent's files"
    assert daemon_json(dlab, h2).get("insecure-registries", []) == []

    proc = dlab.run_agent(
        "daemon", "uninstall", "-i", str(dlab.inventory_yml), "--limit", "h1", "--format", "json"
    )
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["hosts"][0]["status"] == "absent"


def test_a_metrics_file_that_is_a_persons_is_never_written_over_nor_removed(dlab: Lab) -> None:
    """--metrics-file naming a file of someone else's (a slip of the hand: /etc/docker/daemon.json) is
    refused at install; a metrics file a person has since put their own content in outlives uninstall."""
    host = dlab.host("h1")
    persons = dlab.ssh(host, "cat /etc/docker/daemon.json").stdout
    proc = dlab.run_agent(
        "daemon", "install", "-i", str(dlab.inventory_yml), "--limit", "h1", *ca_args(dlab),
        "--interval", f"{INTERVAL:g}s", "--metrics-file", "/etc/docker/daemon.json", "--format", "json",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (report,) = json.loads(proc.stdout)["hosts"]
    assert report["status"] == "failed"
    assert (
        "--metrics-file /etc/docker/daemon.json: the file exists and is not trust-agent's metrics"
        in (report["error"])
    )
    assert dlab.ssh(host, "cat /etc/docker/daemon.json").stdout == persons
    assert dlab.ssh(host, "test -e /etc/trust-agent/daemon.yml", check=False).returncode == 1

    # A re-install naming another metrics file removes the one it no longer writes (else it would
    # report "up" for ever).
    other = "/var/lib/node_exporter/trust_agent.prom"
    install(dlab, "--metrics-file", other, limit="h1")
    wait_for("metrics written", lambda: "trust_agent_up 1" in dlab.ssh(host, f"cat {other}").stdout, 10)
    install(dlab, limit="h1")
    wait_for("metrics written", lambda: "trust_agent_up 1" in dlab.ssh(host, f"cat {METRICS}").stdout, 10)
    assert dlab.ssh(host, f"test -e {other}", check=False).returncode == 1, "the old metrics file is gone"
    dlab.ssh(host, "rm -rf /var/lib/node_exporter")
    dlab.ssh(host, "systemctl stop trust-agent")
    dlab.ssh(host, f"echo 'a person keeps notes here now' > {METRICS}")
    proc = dlab.run_agent(
        "daemon", "uninstall", "-i", str(dlab.inventory_yml), "--limit", "h1", "--format", "json"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert dlab.ssh(host, f"cat {METRICS}").stdout == "a person keeps notes here now\n"
    dlab.ssh(host, f"rm -f {METRICS}")


def test_the_canary_is_pulled_after_a_repair_and_left_alone_on_a_converged_host(
    dlab: Lab, hosts: list[Host]
) -> None:
    """The daemon removed and pulled its canary every interval, nothing changed: the engine churned, and
    a registry outage at that moment left the host without the image."""
    host = hosts[0]
    install(dlab, "--canary-image", dlab.image, limit=host.name)
    assert dlab.ssh(host, f"docker image inspect {dlab.image}", check=False).returncode == 0
    # From the next whole second: the install's own cycle pulled the canary, its events dated up to now.
    since = int(dlab.ssh(host, "date +%s").stdout) + 1
    time.sleep(1.2)
    cycles = status(dlab, host)["cycles"]
    wait_for("three more cycles", lambda: status(dlab, host)["cycles"] >= cycles + 3, timeout=30)
    events = (
        f"docker events --since {since} --until $(date +%s) --filter type=image --format '{{{{.Action}}}}'"
    )
    assert dlab.ssh(host, events).stdout.split() == [], "the converged host's canary was left alone"
    # A repair is a change: its canary pull proves it.
    dlab.ssh(host, f"rm {STORAGE_CA}")
    wait_for("the repair", lambda: dlab.ssh(host, f"test -f {STORAGE_CA}", check=False).returncode == 0, 15)
    wait_for("its canary pull", lambda: "pull" in dlab.ssh(host, events).stdout.split(), timeout=15)
    assert dlab.ssh(host, f"docker image inspect {dlab.image}", check=False).returncode == 0
