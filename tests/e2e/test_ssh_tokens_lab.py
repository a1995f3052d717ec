"""The local user and ssh_config's tokens as ssh(1) reads them, on real hosts: the user a host without
one is logged into whatever ``$USER`` says, and ``CertificateFile`` named with tokens or given twice."""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.probes import by_host, ca_args, change_sshd
from tests.lab import Host, Lab
from tests.sshkeys import certify, keygen

pytestmark = pytest.mark.lab

USER_CA_CONF = "/etc/ssh/sshd_config.d/user-ca.conf"
USER_CA_KEY = "/etc/ssh/trusted_user_ca.pub"


def _ini(lab: Lab, path: Path, line: str) -> Path:
    """An Ansible INI inventory of one host ``line``, with the lab's known_hosts."""
    common = f"-o UserKnownHostsFile={lab.known_hosts}"
    path.write_text(f"{line}\n\n[all:vars]\nansible_ssh_common_args='{common}'\n")
    return path


def _rollout(lab: Lab, inventory: Path, *args: str, env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """``trust-agent rollout`` in the lab namespace, with ``env`` and no agent socket: exit code and
    JSON report."""
    proc = lab.run_agent("rollout", "-i", str(inventory), *ca_args(lab), *args, "--format", "json", env=env)
    report = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    assert report, proc.stderr
    return proc.returncode, report


def _environment(**names: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    return {**base, **names}


def _accepted_since(lab: Lab, host: Host, since: str) -> str:
    return lab.ssh(
        host, f"journalctl --since @{since} -o cat --no-pager | grep 'Accepted publickey for' || true"
    ).stdout


def test_a_host_without_a_user_is_logged_into_as_the_passwd_user_whatever_user_says(
    lab: Lab, tmp_path: Path
) -> None:
    """ssh logs in as the passwd entry's user (root here) where nothing names one, though $USER and
    $LOGNAME name another: they were taken, and the login went to a user the host does not have."""
    host = lab.hosts[0]
    local = pwd.getpwuid(os.getuid()).pw_name
    inventory = _ini(
        lab,
        tmp_path / "hosts.ini",
        f"{host.name} ansible_host={host.address} ansible_ssh_private_key_file={lab.key}",
    )
    since = lab.ssh(host, "date +%s").stdout.strip()
    env = _environment(USER="someone-else", LOGNAME="someone-else")
    code, report = _rollout(lab, inventory, env=env)
    outcome = by_host(report)[host.name]
    assert code == 0 and outcome["status"] == "changed", outcome.get("error", outcome)
    accepted = _accepted_since(lab, host, since)
    assert f"Accepted publickey for {local} from" in accepted, accepted
    assert "someone-else" not in accepted


@pytest.fixture
def user_ca(lab: Lab, tmp_path: Path) -> Iterator[Path]:
    """The first host's sshd takes user certificates signed by a fresh CA; yields the CA's key."""
    host = lab.hosts[0]
    ca = keygen(tmp_path / "user_ca")
    install = f"cat > {USER_CA_KEY} && echo 'TrustedUserCAKeys {USER_CA_KEY}' > {USER_CA_CONF}"
    change_sshd(lab, host, install, input=Path(f"{ca}.pub").read_text())
    try:
        yield ca
    finally:
        change_sshd(lab, host, f"rm -f {USER_CA_CONF} {USER_CA_KEY}")


def test_a_certificate_file_named_with_tokens_logs_in_with_its_certificate(
    lab: Lab, tmp_path: Path, user_ca: Path
) -> None:
    """``CertificateFile ~/certs/%r@%h-%p-cert.pub`` (a site's CA client writes one per host): the key
    alone is in no authorized_keys, so the login holds only with the certificate. The path was opened
    as written, and the host refused the key."""
    host = lab.hosts[0]
    key = keygen(tmp_path / "id_ops")
    certify(user_ca, key, "-n", "root", "-V", "-5m:+1h", key_id="ops")
    (tmp_path / "certs").mkdir()
    Path(f"{key}-cert.pub").rename(tmp_path / "certs" / f"root@{host.address}-22-cert.pub")
    accepted = _login_as_root_with(lab, host, tmp_path, key, f"{tmp_path}/certs/%r@%h-%p-cert.pub")
    assert "ED25519-CERT" in accepted, accepted


def _login_as_root_with(lab: Lab, host: Host, tmp_path: Path, key: Path, *certificate_files: str) -> str:
    """A rollout to ``host`` as root with ``key`` alone (IdentitiesOnly) and ssh_config's
    ``certificate_files``: the host's sshd log line that accepted the login."""
    config = tmp_path / "ssh_config"
    lines = "".join(f"    CertificateFile {path}\n" for path in certificate_files)
    config.write_text(f"Host *\n    IdentityFile {key}\n    IdentitiesOnly yes\n{lines}")
    inventory = _ini(
        lab, tmp_path / "hosts.ini", f"{host.name} ansible_host={host.address} ansible_user=root"
    )
    since = lab.ssh(host, "date +%s").stdout.strip()
    code, report = _rollout(lab, inventory, "--ssh-config", str(config), env=_environment())
    outcome = by_host(report)[host.name]
    assert code == 0 and outcome["status"] == "changed", outcome.get("error", outcome)
    accepted = _accepted_since(lab, host, since)
    assert "Accepted publickey for root from" in accepted, accepted
    return accepted


def test_a_second_certificate_file_is_offered_where_the_first_is_refused(
    lab: Lab, tmp_path: Path, user_ca: Path
) -> None:
    """Two ``CertificateFile`` lines, the first's certificate expired (the day a site's CA client has
    written the new one beside it): ssh offers each in turn and logs in with the second. Only the first
    was read, and the host refused the login."""
    host = lab.hosts[0]
    key = keygen(tmp_path / "id_ops")
    certs = tmp_path / "certs"
    certs.mkdir()
    certify(user_ca, key, "-n", "root", "-V", "20200101:20200102", key_id="ops-expired")
    Path(f"{key}-cert.pub").rename(certs / "expired-cert.pub")
    certify(user_ca, key, "-n", "root", "-V", "-5m:+1h", key_id="ops-current")
    Path(f"{key}-cert.pub").rename(certs / "current-cert.pub")
    accepted = _login_as_root_with(
        lab, host, tmp_path, key, f"{certs}/expired-cert.pub", f"{certs}/current-cert.pub"
    )
    assert "ID ops-current" in accepted, accepted
