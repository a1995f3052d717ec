"""A daemon.json reached through a chain of symbolic links, on real hosts: every hop is root's, or
nothing is read or written through it."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.engine.apply_script import EXIT_CHANGED, build_apply_script
from agent.runtimes.plan import FileChange, HostPlan
from tests.e2e.probes import by_host, engine_state, skip_args
from tests.e2e.test_rollout_lab import refused, rollout
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab

DAEMON = "/etc/docker/daemon.json"
EVES = "/home/eve/docker"
SECRET = "/root/secret-daemon.json"
SECRET_TEXT = (
    '{"iptables": false, "bridge": "none", "storage-driver": "vfs", "labels": ["ROOT-ONLY-SECRET=hunter2"]}\n'
)


def fingerprint(lab: Lab, host: Host, path: str) -> str:
    """The file's content digest, owner, mode and modification time: a write as root changes one."""
    return lab.ssh(host, f"sha256sum {path} && stat -c '%U %a %Y.%y' {path}").stdout


@pytest.fixture
def through_eves_directory(lab: Lab) -> Iterator[Host]:
    """On the first host, daemon.json is a link to a file in a directory the user eve owns."""
    host = lab.hosts[0]
    lab.ssh(
        host,
        f"useradd -m eve && mkdir -p {EVES} && mv {DAEMON} {EVES}/daemon.json && chown -R eve:eve {EVES} && "
        f"ln -s {EVES}/daemon.json {DAEMON}",
    )
    yield host
    lab.ssh(
        host,
        f"rm -f {DAEMON} {SECRET}; cp -P {EVES}/daemon.json.orig {DAEMON} 2>/dev/null || "
        f"mv {EVES}/daemon.json {DAEMON}; userdel -r eve",
    )


def test_a_user_who_owns_a_hop_cannot_have_root_show_or_write_a_root_only_file(
    lab: Lab, tmp_path: Path, through_eves_directory: Host
) -> None:
    """eve turns her file into a link to a root-only file: the gather checked only the chain's end, so
    plan printed that file's content and rollout merged into it as root and reloaded dockerd."""
    host = through_eves_directory
    args = [*skip_args(lab, tmp_path), "--limit", host.name]
    unsafe = f"{EVES} is writable by a user other than root, and {DAEMON} is reached through it"
    hop = f"(the link {DAEMON} -> {EVES}/daemon.json)"
    refused(lab, host, args, "is writable by a user other than root")

    lab.ssh(
        host,
        f"cp {EVES}/daemon.json {EVES}/daemon.json.orig && printf %s {shlex.quote(SECRET_TEXT)} > {SECRET} && "
        f"chmod 600 {SECRET} && su eve -c 'ln -sfn {SECRET} {EVES}/daemon.json'",
    )
    secret = fingerprint(lab, host, SECRET)
    engine = engine_state(lab, host)
    proc = lab.run_agent("plan", "-i", str(lab.inventory_yml), *args, "--format", "json")
    assert "hunter2" not in proc.stdout + proc.stderr
    assert proc.returncode == 1, proc.stderr
    error = by_host(json.loads(proc.stdout))[host.name]["error"]
    assert unsafe in error and hop in error, error
    proc = lab.run_agent("plan", "-i", str(lab.inventory_yml), *args)
    assert "hunter2" not in proc.stdout + proc.stderr and unsafe in proc.stdout + proc.stderr

    refused(lab, host, args, hop)
    assert fingerprint(lab, host, SECRET) == secret
    assert engine_state(lab, host) == engine
    assert lab.ssh(host, f"readlink {DAEMON}").stdout.strip() == f"{EVES}/daemon.json"


HOP_DIR = "/etc/docker-hop"
CONF_DIR = "/etc/docker-conf"
TARGET = f"{CONF_DIR}/real/daemon.json"


@pytest.fixture
def chain_of_root_links(lab: Lab) -> Iterator[Host]:
    """On the last host, daemon.json reaches its file through two root-owned links, one relative, as a
    config tool lays them out: /etc/docker/daemon.json -> /etc/docker-hop/daemon.json ->
    ../docker-conf/real/daemon.json."""
    host = lab.hosts[-1]
    lab.ssh(
        host,
        f"useradd -m eve && mkdir -p {HOP_DIR} {CONF_DIR}/real && mv {DAEMON} {TARGET} && "
        f"ln -s ../docker-conf/real/daemon.json {HOP_DIR}/daemon.json && ln -s {HOP_DIR}/daemon.json {DAEMON}",
    )
    yield host
    lab.ssh(host, f"rm -f {DAEMON} && mv {TARGET} {DAEMON} && rm -rf {HOP_DIR} {CONF_DIR}; userdel -r eve")


def apply_to_target(lab: Lab, host: Host, content: str, stamp: str) -> tuple[int, str]:
    """Run an apply script that writes ``content`` at the chain's end, as a rollout does, given the link
    dockerd reads daemon.json through; its exit status and stderr."""
    before = lab.ssh(host, f"cat {TARGET}").stdout.encode()
    plan = HostPlan(changes=(FileChange(TARGET, "update", before, content.encode()),))
    script = build_apply_script(
        plan,
        engine_action="none",
        init="systemd",
        daemon_json_path=TARGET,
        daemon_json_link=DAEMON,
        backup_stamp=stamp,
    )
    result = lab.ssh(host, "sh -s -- ''", check=False, input=script)
    return result.returncode, result.stderr


def test_a_chain_of_root_owned_links_is_written_at_its_end_and_checked_again_when_applied(
    lab: Lab, tmp_path: Path, chain_of_root_links: Host
) -> None:
    host = chain_of_root_links
    args = [*skip_args(lab, tmp_path), "--limit", host.name]
    code, report, err = rollout(lab, *args)
    outcome = by_host(report)[host.name]
    assert code == 0 and outcome["status"] == "changed", (outcome, err)
    assert f"{DAEMON} is a symlink to {TARGET}" in " ".join(outcome["reasons"]), outcome
    assert lab.ssh(host, f"readlink {DAEMON} {HOP_DIR}/daemon.json").stdout.split() == [
        f"{HOP_DIR}/daemon.json",
        "../docker-conf/real/daemon.json",
    ]
    assert "registry.test" in json.loads(lab.ssh(host, f"cat {TARGET}").stdout)["insecure-registries"]

    # Between the gather and the apply, a hop's directory becomes another user's: the directory the
    # apply writes in is still root's, so only the chain's own check stops it.
    written = fingerprint(lab, host, TARGET)
    lab.ssh(host, f"chown eve {HOP_DIR}")
    status, err = apply_to_target(lab, host, '{"debug": true}\n', "hop")
    assert status == EXIT_CHANGED, err
    assert f"{HOP_DIR} is writable by a user other than root, and {DAEMON} is reached through it" in err
    assert f"(the link {DAEMON} -> {HOP_DIR}/daemon.json)" in err
    lab.ssh(host, f"chown root {HOP_DIR} && chmod 777 {HOP_DIR}")
    status, err = apply_to_target(lab, host, '{"debug": true}\n', "mode")
    assert status == EXIT_CHANGED and f"{HOP_DIR} is writable by a user other than root" in err, err
    lab.ssh(host, f"chmod 755 {HOP_DIR}")

    # The chain was pointed elsewhere since: what would be written is no longer what dockerd reads.
    lab.ssh(host, f"cp {TARGET} {CONF_DIR}/other.json && ln -sfn {CONF_DIR}/other.json {DAEMON}")
    status, err = apply_to_target(lab, host, '{"debug": true}\n', "moved")
    assert status == EXIT_CHANGED and f"{DAEMON} no longer leads to {TARGET}: changed since" in err, err
    assert fingerprint(lab, host, TARGET) == written
    backups = lab.ssh(host, "ls /var/lib/trust-agent/backup").stdout.split()
    assert not {"daemon.json.hop", "daemon.json.mode", "daemon.json.moved"} & set(backups), backups

    # Put back as it was, the same script writes.
    lab.ssh(host, f"ln -sfn {HOP_DIR}/daemon.json {DAEMON} && rm {CONF_DIR}/other.json")
    before = lab.ssh(host, f"cat {TARGET}").stdout
    status, err = apply_to_target(lab, host, before + " \n", "safe")
    assert status == 0, err
    assert lab.ssh(host, f"cat {TARGET}").stdout == before + " \n"
