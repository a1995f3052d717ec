"""What a first day on real hosts meets: a private key file others can read, and a daemon install
from a login that is not root."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.probes import ca_args
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab


def _ini(lab: Lab, path: Path, host: Host, variables: str) -> Path:
    """An Ansible INI inventory of ``host`` with ``variables``, and the lab's known_hosts."""
    path.write_text(
        f"{host.name} ansible_host={host.address} {variables}\n\n[all:vars]\n"
        f"ansible_ssh_common_args='-o UserKnownHostsFile={lab.known_hosts}'\n"
    )
    return path


def _without_agent() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}


def test_a_private_key_file_others_can_read_is_refused_as_ssh_refuses_it(lab: Lab, tmp_path: Path) -> None:
    """ssh -i KEY (and so Ansible) ignores a key of 0644 ("UNPROTECTED PRIVATE KEY FILE!"); trust-agent
    logged in with it all the same."""
    host = lab.hosts[0]
    key = tmp_path / "fleet_key"
    shutil.copyfile(lab.key, key)
    key.chmod(0o644)
    ssh = lab.run_in_ns(
        ["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={lab.known_hosts}", f"root@{host.address}", "true"],
        env=_without_agent(), timeout=60,
    )  # fmt: skip
    assert ssh.returncode == 255 and f'Load key "{key}": bad permissions' in ssh.stderr, ssh.stderr
    inventory = _ini(
        lab, tmp_path / "hosts.ini", host, f"ansible_user=root ansible_ssh_private_key_file={key}"
    )
    plan = ["plan", "-i", str(inventory), *ca_args(lab), "--format", "json"]
    proc = lab.run_agent(*plan, env=_without_agent())
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (outcome,) = json.loads(proc.stdout)["hosts"]
    assert outcome["status"] == "unreachable", outcome
    assert (
        f"authentication as root failed ({key}: bad permissions 0644: ssh ignores a private key its group "
        f"or others can access (chmod 600 {key}))"
    ) in outcome["error"], outcome
    key.chmod(0o600)  # the fix the error names
    proc = lab.run_agent(*plan, env=_without_agent())
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_daemon_install_from_a_login_that_is_not_root_is_refused_before_anything_is_written(
    lab: Lab, tmp_path: Path
) -> None:
    """Without --become, install failed at its first write with mkdir's bare "cannot create directory
    '/opt/trust-agent': Permission denied"; it now says what a rollout says."""
    host = lab.hosts[0]
    inventory = _ini(
        lab, tmp_path / "hosts.ini", host, f"ansible_user=deploy ansible_ssh_private_key_file={lab.key}"
    )
    assert lab.ssh(host, "id -u deploy").stdout.strip() != "0"
    refused = "not root: /etc/docker and the engine's socket are root's (log in as root, or pass --become for sudo); "
    for command, untouched in (
        (["install", *ca_args(lab), "--wait", "5s"], "nothing was put on the host"),
        (["uninstall"], "nothing was removed from the host"),
    ):
        proc = lab.run_agent("daemon", *command, "-i", str(inventory), "--format", "json")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        (report,) = json.loads(proc.stdout)["hosts"]
        assert report["status"] == "failed", report
        assert report["error"].startswith("runs as uid ") and report["error"].endswith(refused + untouched), (
            report
        )
    left = "ls -d /opt/trust-agent /etc/trust-agent /etc/systemd/system/trust-agent.service 2>/dev/null"
    assert lab.ssh(host, left, check=False).stdout.strip() == ""
    # With --become the same login is root through sudo, and is let through.
    _ini(
        lab, inventory, host, f"ansible_user=deploy ansible_become=yes ansible_ssh_private_key_file={lab.key}"
    )
    proc = lab.run_agent("daemon", "uninstall", "-i", str(inventory), "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [r["status"] for r in json.loads(proc.stdout)["hosts"]] == ["absent"], proc.stdout
