"""Reaching hosts at the edges, on real hosts: ssh_config's ``Match user`` for the inventory's user, sudo
that asks for a password, hosts whose network drops every packet, and jump hosts reached as ssh's own ssh
for them reaches them.

ssh takes ``~`` from the passwd entry, not ``$HOME``: a test that gives the agent a home of its own runs
it where a directory of the test's is mounted over that home (a mount namespace of its own), so this
machine's real ``~/.ssh`` neither takes part nor changes."""

from __future__ import annotations

import getpass
import json
import os
import pwd
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from tests.e2e.probes import by_host, ca_args
from tests.lab import Host, Lab
from tests.lab.lab import AGENT_ARGV
from tests.sshkeys import keygen

pytestmark = pytest.mark.lab

BLACK_HOLE = "198.51.100.249"  # a lab address no one holds: its packets go to a MAC no one has
NOWHERE_MAC = "02:00:00:00:00:f9"
WRONG_PASSWORD = "not the password"


def _ini(lab: Lab, path: Path, *lines: str) -> Path:
    """An Ansible INI inventory: ``lines``, with the lab's known_hosts for every host."""
    common = f"-o UserKnownHostsFile={lab.known_hosts}"
    path.write_text("\n".join(lines) + f"\n\n[all:vars]\nansible_ssh_common_args='{common}'\n")
    return path


def _rollout(
    lab: Lab, inventory: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], float]:
    """``trust-agent rollout`` in the lab namespace: exit code, JSON report, and how long it took."""
    started = time.monotonic()
    proc = lab.run_agent("rollout", "-i", str(inventory), *ca_args(lab), *args, "--format", "json", env=env)
    took = time.monotonic() - started
    report = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    assert report, proc.stderr
    return proc.returncode, report, took


def _rollout_at_home(
    lab: Lab, inventory: Path, home: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """``trust-agent rollout`` as ``_rollout`` runs it, with ``home`` mounted over the passwd entry's home
    (where ssh, and the agent, find ``~/.ssh``) for this run alone, and no agent socket. The directory
    of the home that holds the agent's Python (a pyenv's) stays reachable through ``home``."""
    passwd_home = pwd.getpwuid(os.getuid()).pw_dir
    python = Path(os.path.realpath(sys.executable))
    kept = python.relative_to(passwd_home).parts[0] if python.is_relative_to(passwd_home) else ""
    script = 'mount --rbind "$1" "$2" && shift 2 && exec "$@"'
    if kept:
        script = f'mkdir -p "$1/{kept}" && mount --bind "$2/{kept}" "$1/{kept}" && {script}'
    argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"]
    agent = [*AGENT_ARGV, "rollout", "-i", str(inventory), *ca_args(lab), *args, "--format", "json"]
    base = {k: v for k, v in (env or os.environ).items() if k != "SSH_AUTH_SOCK"}
    proc = lab.run_in_ns([*argv, str(home), passwd_home, *agent], env=base)
    report = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    assert report, proc.stderr
    return proc.returncode, report


def _fingerprint(key: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-lf", f"{key}.pub"], capture_output=True, text=True, check=True, timeout=30
    )
    return out.stdout.split()[1]


@pytest.fixture
def deploy_only_key(lab: Lab, tmp_path: Path) -> Iterator[Path]:
    """A key the first host takes for its deploy user alone (root's authorized_keys do not list it)."""
    key = keygen(tmp_path / "deploy_key")
    host = lab.hosts[0]
    keys = "/home/deploy/.ssh/authorized_keys"
    lab.ssh(host, f"cp -p {keys} {keys}.orig && cat >> {keys}", input=Path(f"{key}.pub").read_text())
    try:
        yield key
    finally:
        lab.ssh(host, f"mv {keys}.orig {keys}")


def test_a_match_user_block_applies_to_the_user_the_inventory_logs_in_as(
    lab: Lab, tmp_path: Path, deploy_only_key: Path
) -> None:
    """ssh -l deploy (Ansible's -o User=deploy) reads `Match user deploy` as true: its IdentityFile is the
    key that logs in. Evaluated against the local user (root) instead, the block was skipped and no
    key the host takes was offered."""
    host = lab.hosts[0]
    config = tmp_path / "ssh_config"
    config.write_text(f"Match user deploy\n    IdentityFile {deploy_only_key}\n    IdentitiesOnly yes\n")
    inventory = _ini(
        lab,
        tmp_path / "hosts.ini",
        f"{host.name} ansible_host={host.address} ansible_user=deploy ansible_become=yes",
    )
    # Nothing of this machine's own keys or agent takes part.
    since = lab.ssh(host, "date +%s").stdout.strip()
    code, report = _rollout_at_home(lab, inventory, tmp_path, "--ssh-config", str(config))
    outcome = by_host(report)[host.name]
    assert code == 0 and outcome["status"] == "changed", outcome
    accepted = lab.ssh(
        host, f"journalctl --since @{since} -o cat --no-pager | grep 'Accepted publickey for deploy' || true"
    ).stdout
    assert _fingerprint(deploy_only_key) in accepted, accepted


@pytest.fixture
def root_only_key(lab: Lab, tmp_path: Path) -> Iterator[Path]:
    """A key the first host takes for root alone, kept as the default identity file of a home of its own
    (~/.ssh/id_ed25519): what ssh's own ssh for a jump host offers where nothing names a key for it."""
    (tmp_path / ".ssh").mkdir(mode=0o700)
    key = keygen(tmp_path / ".ssh" / "id_ed25519")
    host = lab.hosts[0]
    keys = "/root/.ssh/authorized_keys"
    lab.ssh(host, f"cp -p {keys} {keys}.orig && cat >> {keys}", input=Path(f"{key}.pub").read_text())
    try:
        yield key
    finally:
        lab.ssh(host, f"mv {keys}.orig {keys}")


def test_a_jump_host_logs_in_as_the_local_user_with_its_own_keys_not_the_targets(
    lab: Lab, tmp_path: Path, root_only_key: Path
) -> None:
    """`-J gw` (no user, no ssh_config block for gw): ssh runs the jump as `ssh -W %h:%p gw`, logging in
    as the local user (root here) with the agent's keys and the default files; the target's user and
    key stay the target's. The jump logged in as the target's user (deploy), with the target's key."""
    jump, target = lab.hosts[0], lab.hosts[1]
    assert getpass.getuser() == "root", "the lab runs as root"
    inventory = _ini(
        lab,
        tmp_path / "hosts.ini",
        f"{target.name} ansible_host={target.address} ansible_user=deploy ansible_become=yes "
        f"ansible_ssh_private_key_file={lab.key} ansible_ssh_extra_args='-J {jump.address}'",
    )
    # Where ssh's ssh for the jump looks for its key (the inventory's UserKnownHostsFile is the target's).
    (tmp_path / ".ssh" / "known_hosts").write_text(_known_hosts_lines(lab, jump))
    since = lab.ssh(jump, "date +%s").stdout.strip()
    code, report = _rollout_at_home(lab, inventory, tmp_path)
    outcome = by_host(report)[target.name]
    assert code == 0 and outcome["status"] == "changed", outcome
    accepted = lab.ssh(
        jump, f"journalctl --since @{since} -o cat --no-pager | grep 'Accepted publickey for' || true"
    ).stdout
    assert "Accepted publickey for deploy" not in accepted, accepted
    assert "Accepted publickey for root from" in accepted and _fingerprint(root_only_key) in accepted, (
        accepted
    )


def _refused_sudo_passwords(lab: Lab, host: Host) -> int:
    """How many wrong passwords the host's sudo has logged (it logs each attempt it refused)."""
    out = lab.ssh(
        host, "journalctl _COMM=sudo -o cat --no-pager | grep -c 'incorrect password attempt' || true"
    )
    return int(out.stdout.strip() or 0)


@pytest.fixture
def sudo_allows_one_try(lab: Lab) -> Iterator[Host]:
    """On the first host, deploy's sudo asks for a password and takes one try only (`passwd_tries=1`, as
    sites set it where pam_faillock locks an account after a few failures)."""
    host = lab.hosts[0]
    rules = "deploy ALL=(ALL) ALL\nDefaults:deploy passwd_tries=1\n"
    lab.ssh(
        host,
        f"printf %s {shlex.quote(rules)} > /etc/sudoers.d/deploy && chpasswd",
        input="deploy:the password\n",
    )
    try:
        yield host
    finally:
        lab.ssh(host, "usermod -p '*' deploy && echo 'deploy ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/deploy")


def test_a_wrong_become_password_is_tried_once_where_sudo_takes_one_try(
    lab: Lab, tmp_path: Path, sudo_allows_one_try: Host
) -> None:
    """sudo gives up after the one try without asking again: that was read as the command failing, and
    the script session, its fallback and the next step each tried the wrong password once more."""
    host = sudo_allows_one_try
    line = (
        f"{host.name} ansible_host={host.address} ansible_user=deploy ansible_become=yes "
        f"ansible_ssh_private_key_file={lab.key}"
    )
    inventory = _ini(lab, tmp_path / "hosts.ini", line)
    before = _refused_sudo_passwords(lab, host)
    env = {**os.environ, "TA_LAB_SUDO": WRONG_PASSWORD}
    code, report, _ = _rollout(lab, inventory, "--become-password-env", "TA_LAB_SUDO", env=env)
    outcome = by_host(report)[host.name]
    assert code == 1 and outcome["status"] == "failed", outcome
    assert outcome["error"] == (
        f"{host.name} ({host.address}): sudo refused the become password (sudo: 1 incorrect password attempt)"
    )
    assert _refused_sudo_passwords(lab, host) - before == 1, "a wrong password is tried once"
    assert not lab.ssh(host, "ls /etc/docker/certs.d", check=False).stdout.strip()


@pytest.fixture
def sudo_asks_behind_a_talking_shell(lab: Lab) -> Iterator[Host]:
    """On the first host, deploy's sudo asks for a password, and deploy's login shell writes a line on
    stderr before any command (a site's .bashrc)."""
    host = lab.hosts[0]
    lab.ssh(
        host,
        "echo 'deploy ALL=(ALL) ALL' > /etc/sudoers.d/deploy && chsh -s /bin/bash deploy && "
        "echo 'echo \"welcome to the fleet\" >&2' > /home/deploy/.bashrc",
    )
    try:
        yield host
    finally:
        lab.ssh(
            host,
            "rm -f /home/deploy/.bashrc && chsh -s /bin/sh deploy && "
            "echo 'deploy ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/deploy",
        )


def test_sudo_that_needs_a_password_says_so_whatever_the_login_shell_wrote_first(
    lab: Lab, tmp_path: Path, sudo_asks_behind_a_talking_shell: Host
) -> None:
    host = sudo_asks_behind_a_talking_shell
    line = (
        f"{host.name} ansible_host={host.address} ansible_user=deploy ansible_become=yes "
        f"ansible_ssh_private_key_file={lab.key}"
    )
    code, report, _ = _rollout(lab, _ini(lab, tmp_path / "hosts.ini", line))
    outcome = by_host(report)[host.name]
    assert code == 1 and outcome["status"] == "failed", outcome
    assert outcome["error"].startswith(f"{host.name} ({host.address}): sudo needs a password ("), outcome
    assert "--become-password-env" in outcome["error"] and "NOPASSWD" in outcome["error"]


@pytest.fixture
def black_hole(lab: Lab) -> Iterator[str]:
    """BLACK_HOLE drops every packet, seen from this machine and from the first host: its address
    resolves to a MAC no one has, so a connection gets no answer at all (not even a refusal)."""
    host = lab.hosts[0]
    neighbour = f"ip neigh replace {BLACK_HOLE} lladdr {NOWHERE_MAC} nud permanent dev"
    lab.run_in_ns([*shlex.split(neighbour), lab.state["bridge"]["name"]], check=True)
    lab.ssh(host, f"{neighbour} eth0")
    try:
        yield BLACK_HOLE
    finally:
        lab.run_in_ns(["ip", "neigh", "del", BLACK_HOLE, "dev", lab.state["bridge"]["name"]])
        lab.ssh(host, f"ip neigh del {BLACK_HOLE} dev eth0", check=False)


def test_a_host_that_drops_every_packet_fails_within_the_connect_timeout_saying_so(
    lab: Lab, tmp_path: Path, black_hole: str
) -> None:
    """Reached directly, and through a bastion's `ssh -W` (which waits minutes on its own TCP connect):
    both fail after --connect-timeout, not --command-timeout nor the bastion's wait, and say that no
    connection was made; no proxy command is left running."""
    jump = lab.hosts[0]
    login = f"ansible_host={black_hole} ansible_user=root ansible_ssh_private_key_file={lab.key}"
    bastion = f"ssh -i {lab.key} -o UserKnownHostsFile={lab.known_hosts} -o BatchMode=yes -W %h:%p root@{jump.address}"
    inventory = _ini(
        lab,
        tmp_path / "hosts.ini",
        f"direct {login}",
        f"proxied {login} ansible_ssh_extra_args='-o ProxyCommand=\"{bastion}\"'",
    )
    code, report, took = _rollout(lab, inventory, "--connect-timeout", "2", "--command-timeout", "60")
    outcomes = by_host(report)
    assert code == 1 and {o["status"] for o in outcomes.values()} == {"unreachable"}, outcomes
    assert outcomes["direct"]["error"] == f"direct ({black_hole}): connect to port 22 timed out"
    assert outcomes["proxied"]["error"] == (
        f"proxied ({black_hole}): could not connect: no SSH answer through the ProxyCommand within 2s "
        "(the host may be down, or the network drops its packets)"
    )
    assert took < 20, f"{took:.0f}s"
    left = lab.run_in_ns(["pgrep", "-f", f"-W {black_hole}:22"]).stdout
    assert not left.strip(), f"ProxyCommand left running: {left}"


def _known_hosts_lines(lab: Lab, host: Host) -> str:
    """The lab's known_hosts lines for ``host`` alone."""
    lines = lab.known_hosts.read_text().splitlines()
    return "".join(f"{line}\n" for line in lines if line.split(" ", 1)[0] == host.address)


@pytest.fixture
def home_with_the_lab_key(lab: Lab, tmp_path: Path) -> Path:
    """A home whose default identity file is the lab's key (the jump host's login), with no known_hosts."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    key = home / ".ssh" / "id_ed25519"
    key.write_bytes(lab.key.read_bytes())
    key.chmod(0o600)
    return home


def test_a_jump_host_is_checked_against_its_own_known_hosts_not_the_targets(
    lab: Lab, tmp_path: Path, home_with_the_lab_key: Path
) -> None:
    """`-J gw`: ssh's ssh for the jump reads ~/.ssh/known_hosts, as the inventory's `-o
    UserKnownHostsFile` is on the target's command line alone, and records a new key there, hashed where
    the jump's own ssh_config says HashKnownHosts. The jump host was checked against the target's file
    (which held its key), and --accept-new-host-keys added the jump host's key to it; then the jump's
    name was recorded in clear whatever its HashKnownHosts said."""
    jump, target = lab.hosts[0], lab.hosts[1]
    home = home_with_the_lab_key
    targets_file = tmp_path / "target_known_hosts"
    line = (
        f"{target.name} ansible_host={target.address} ansible_user=root "
        f"ansible_ssh_private_key_file={lab.key} ansible_ssh_extra_args='-J {jump.address}' "
        f"ansible_ssh_common_args='-o UserKnownHostsFile={targets_file}'"
    )
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(line + "\n")
    own_file = home / ".ssh" / "known_hosts"
    as_the_agent_names_it = os.path.join(pwd.getpwuid(os.getuid()).pw_dir, ".ssh", "known_hosts")

    targets_file.write_text(_known_hosts_lines(lab, target) + _known_hosts_lines(lab, jump))
    code, report = _rollout_at_home(lab, inventory, home)
    outcome = by_host(report)[target.name]
    assert code == 1 and outcome["status"] == "unreachable", outcome
    assert outcome["error"].startswith(
        f"{target.name} ({target.address}) via {jump.address}: host key not in {as_the_agent_names_it} ("
    ), outcome

    targets_file.write_text(_known_hosts_lines(lab, target))
    config = tmp_path / "ssh_config"
    config.write_text(f"Host {jump.address}\n    HashKnownHosts yes\n")
    code, report = _rollout_at_home(
        lab, inventory, home, "--accept-new-host-keys", "--ssh-config", str(config)
    )
    outcome = by_host(report)[target.name]
    assert code == 0 and outcome["status"] == "changed", outcome
    assert targets_file.read_text() == _known_hosts_lines(lab, target)
    recorded = own_file.read_text().split()
    assert (
        recorded[0].startswith("|1|")
        and paramiko.HostKeys.hash_host(jump.address, recorded[0]) == (recorded[0])
    ), recorded
    assert recorded[2] in lab.known_hosts.read_text(), recorded


def test_a_jump_host_known_in_known_hosts2_of_the_passwd_entrys_home_is_reached(
    lab: Lab, tmp_path: Path, home_with_the_lab_key: Path
) -> None:
    """`-J gw` with gw's key in ~/.ssh/known_hosts2, where ~ is the passwd entry's home (ssh's default
    UserKnownHostsFile is `~/.ssh/known_hosts ~/.ssh/known_hosts2`, and ssh takes ~ from the passwd
    entry, not $HOME). The file was not read ("host key not in ~/.ssh/known_hosts"), and ~ was $HOME,
    where neither the key nor the file is."""
    jump, target = lab.hosts[0], lab.hosts[1]
    home = home_with_the_lab_key
    (home / ".ssh" / "known_hosts2").write_text(_known_hosts_lines(lab, jump))
    elsewhere = tmp_path / "not-the-home"  # $HOME, which ssh does not read
    elsewhere.mkdir()
    inventory = _ini(
        lab,
        tmp_path / "hosts.ini",
        f"{target.name} ansible_host={target.address} ansible_user=root "
        f"ansible_ssh_private_key_file={lab.key} ansible_ssh_extra_args='-J {jump.address}'",
    )
    code, report = _rollout_at_home(lab, inventory, home, env={**os.environ, "HOME": str(elsewhere)})
    outcome = by_host(report)[target.name]
    assert code == 0 and outcome["status"] == "changed", outcome
    assert not (home / ".ssh" / "known_hosts").exists() and not list(elsewhere.iterdir())


def test_the_first_jump_hosts_own_proxy_jump_is_taken_as_ssh_takes_it(lab: Lab, tmp_path: Path) -> None:
    """`-J inner`, where inner's own Host block says `ProxyJump outer`: ssh reaches inner as `ssh -W …
    inner`, which goes through outer first, so inner sees the login come from outer. inner was reached
    straight from here, its own ProxyJump dropped."""
    inner, target, outer = lab.hosts[0], lab.hosts[1], lab.hosts[2]
    login = f"    User root\n    IdentityFile {lab.key}\n    UserKnownHostsFile {lab.known_hosts}\n"
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host inner\n    HostName {inner.address}\n    ProxyJump outer\n{login}"
        f"Host outer\n    HostName {outer.address}\n{login}"
    )
    inventory = _ini(
        lab,
        tmp_path / "hosts.ini",
        f"{target.name} ansible_host={target.address} ansible_user=root "
        f"ansible_ssh_private_key_file={lab.key} ansible_ssh_extra_args='-J inner'",
    )
    since = lab.ssh(inner, "date +%s").stdout.strip()
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    code, report, _ = _rollout(lab, inventory, "--ssh-config", str(config), env=env)
    outcome = by_host(report)[target.name]
    assert code == 0 and outcome["status"] == "changed", outcome
    accepted = lab.ssh(
        inner, f"journalctl --since @{since} -o cat --no-pager | grep 'Accepted publickey for' || true"
    ).stdout
    assert f"Accepted publickey for root from {outer.address} " in accepted, accepted
