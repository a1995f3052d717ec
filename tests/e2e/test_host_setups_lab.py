"""Hosts set up in ways a fleet really has: a canary image that cannot come back, a login that is not
root, certs.d reached through a link, a registry made insecure by a flag or by an address range, and a
docker.service that cannot reload. Each host is put back as it was."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.e2e.probes import (
    DROP_INS,
    by_host,
    ca_args,
    converged,
    docker_tree,
    insecure_range,
    outcome_of,
    pull,
    runs_secure_for_the_registry,
    skip_args,
    unit_drop_in,
)
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab


def image_there(lab: Lab, host: Host, image: str) -> bool:
    return lab.ssh(host, f"docker image inspect {shlex.quote(image)}", check=False).returncode == 0


# --- 1. the canary image ------------------------------------------------------------------------------


def test_a_canary_of_another_registry_is_left_on_the_host(lab: Lab) -> None:
    """``--canary-image lab/busybox:1`` (docker.io's, which the lab cannot reach) was removed for the
    pull, the pull failed, and the image stayed gone. Its pull proves nothing of the policy: it is
    neither removed nor pulled (whether the command line refuses it first or not)."""
    host = lab.hosts[0]
    assert image_there(lab, host, lab.runnable_image)
    proc = lab.run_agent(
        "rollout", "-i", str(lab.inventory_yml), *ca_args(lab), "--limit", host.name,
        "--canary-image", lab.runnable_image, "--format", "json",
    )  # fmt: skip
    assert image_there(lab, host, lab.runnable_image), (proc.returncode, proc.stdout, proc.stderr)
    report = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    outcome = by_host(report).get(host.name) if report.get("hosts") else None
    assert outcome is None or "removed" not in (outcome["error"] or ""), outcome


def test_a_canary_removed_for_a_pull_that_fails_is_said_to_be_gone(lab: Lab) -> None:
    """A converged host holding an image of the registry that the registry does not have: the image is
    removed so that the pull fetches its blobs, the pull fails, and the error says the image is gone."""
    host = lab.hosts[0]
    converged(lab, host)
    gone = f"{lab.registry}/test/gone-{host.name}:1"
    lab.ssh(host, f"tar cf - --files-from /dev/null | docker import - {gone} >/dev/null")
    assert image_there(lab, host, gone)

    code, outcome, err = outcome_of(lab, "rollout", host, "--canary-image", gone)
    assert (code, outcome["status"]) == (1, "failed"), (err, outcome)
    assert f"{gone} was removed before the pull" in outcome["error"], outcome["error"]
    assert "is no longer on this host" in outcome["error"]
    assert not image_there(lab, host, gone)  # as the error says


# --- 2. a login that is not root -----------------------------------------------------------------------


@contextmanager
def deploy_login(lab: Lab, host: Host, tmp_path: Path) -> Iterator[Path]:
    """An inventory logging in to ``host`` as the lab's ``deploy`` user (no --become), daemon.json
    root's 0600 there; 0644 again after."""
    lab.ssh(host, "chmod 600 /etc/docker/daemon.json")
    inventory = yaml.safe_load(lab.inventory_yml.read_text())
    inventory["hosts"][host.name]["user"] = "deploy"
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    try:
        yield path
    finally:
        lab.ssh(host, "chmod 644 /etc/docker/daemon.json")


def test_a_daemon_json_the_login_cannot_read_is_said_so_and_not_shown_as_a_new_file(
    lab: Lab, tmp_path: Path
) -> None:
    """``plan`` showed daemon.json as a new file holding insecure-registries alone (``@@ -0,0 +1,6 @@``):
    the read refused was taken for an empty file."""
    host = lab.hosts[1]
    with deploy_login(lab, host, tmp_path) as inventory:
        code, outcome, err = outcome_of(lab, "plan", host, *skip_args(lab, tmp_path), inventory=inventory)
    assert code == 1, (err, outcome)
    changed = [change["path"] for change in outcome["changes"]]
    assert "/etc/docker/daemon.json" not in changed, outcome
    assert "/etc/docker/daemon.json cannot be read (permission denied)" in outcome["error"], outcome


# --- 3. certs.d/<registry> a link ----------------------------------------------------------------------


@contextmanager
def linked_certs_dir(lab: Lab, host: Host) -> Iterator[str]:
    """certs.d/<registry> on ``host`` a link to /srv/regdir, root's 0755; removed after."""
    link = f"/etc/docker/certs.d/{lab.registry}"
    lab.ssh(
        host, f"mkdir -p /etc/docker/certs.d && install -d -m 755 /srv/regdir && ln -sfn /srv/regdir {link}"
    )
    try:
        yield link
    finally:
        lab.ssh(host, f"chmod 755 /srv; rm -f {link}; rm -rf /srv/regdir")


def test_a_certs_d_directory_linked_to_a_root_owned_one_is_written_through_and_verified(lab: Lab) -> None:
    """Every run after the first was refused: "certs.d/registry.test/ is mode 0777", the link's own."""
    host = lab.hosts[2]
    with linked_certs_dir(lab, host) as link:
        converged(lab, host)
        listed = lab.ssh(host, "ls /srv/regdir").stdout.split()
        assert listed == ["trust-agent-registry-ca.crt", "trust-agent-storage-ca.crt"]
        assert lab.ssh(host, f"test -L {link} && echo link").stdout.strip() == "link"
        code, outcome, err = outcome_of(lab, "rollout", host)
        assert (code, outcome["status"]) == (0, "unchanged"), (err, outcome)
        code, outcome, err = outcome_of(lab, "verify", host)
        assert (code, outcome["status"]) == (0, "unchanged"), (err, outcome)
        pull(lab, host)  # dockerd reads the storage CA through the link


def test_a_certs_d_link_through_a_directory_others_can_write_is_refused_naming_the_link(lab: Lab) -> None:
    host = lab.hosts[2]
    with linked_certs_dir(lab, host) as link:
        lab.ssh(host, "chmod 777 /srv")
        before = docker_tree(lab, host)
        code, outcome, err = outcome_of(lab, "rollout", host)
        assert (code, outcome["status"]) == (1, "failed"), (err, outcome)
        assert outcome["error"].startswith(
            f"/srv is writable by a user other than root, and {link} is reached through it "
            f"(the link {link} -> /srv/regdir)"
        ), outcome["error"]
        assert docker_tree(lab, host) == before
        assert lab.ssh(host, "ls -A /srv/regdir").stdout == ""


# --- 4. and 5. a registry insecure by a flag, or by an address range -------------------------------------


def test_a_registry_made_insecure_by_a_flag_is_warned_of_by_a_rollout(lab: Lab) -> None:
    host = lab.hosts[0]
    flag = (
        "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd -H fd:// "
        f"--containerd=/run/containerd/containerd.sock --insecure-registry {lab.registry}\n"
    )
    with unit_drop_in(lab, host, "insecure-flag.conf", flag):
        code, outcome, err = outcome_of(lab, "rollout", host)
        assert code == 0, (err, outcome)
        said = [w for w in outcome["warnings"] if "--insecure-registry" in w]
        assert said == [
            f"{lab.registry}: dockerd's command line has --insecure-registry {lab.registry} "
            f"({DROP_INS}/insecure-flag.conf), though the policy verifies its TLS: dockerd does not verify "
            f"{lab.registry}; remove the flag there"
        ], outcome["warnings"]
        assert outcome_of(lab, "verify", host)[0] == 1


def test_an_insecure_range_covering_the_registrys_address_fails_verify_and_warns_a_rollout(lab: Lab) -> None:
    """dockerd skips TLS checks for the registry (pulls work with certs.d removed), yet verify said
    "verified: live config", exit 0."""
    host = lab.hosts[1]
    address = lab.state["registry"]["address"]
    with insecure_range(lab, host, "198.51.100.0/24"):
        assert runs_secure_for_the_registry(lab, host)  # IndexConfigs does not show it
        code, outcome, err = outcome_of(lab, "rollout", host)
        assert code == 0, (err, outcome)
        covered = (
            f"insecure-registries range 198.51.100.0/24 covers {lab.registry}'s address {address} as the "
            f"host resolves it: dockerd does not verify {lab.registry}'s TLS"
        )
        assert covered in outcome["warnings"], outcome["warnings"]
        code, outcome, err = outcome_of(lab, "verify", host)
        assert (code, outcome["status"]) == (1, "failed"), (err, outcome)
        assert outcome["error"].startswith(f"does not comply with the policy: {covered}"), outcome["error"]
    # Without the range, the same host verifies.
    code, outcome, err = outcome_of(lab, "verify", host)
    assert (code, outcome["status"]) == (0, "unchanged"), (err, outcome)


# --- 6. docker.service without ExecReload ----------------------------------------------------------------


def test_a_unit_without_exec_reload_refuses_a_reload_before_anything_is_written(
    lab: Lab, tmp_path: Path
) -> None:
    """The rollout wrote, `systemctl reload` failed ("Job type reload is not applicable"), and the host
    was rolled back "(files restored; dockerd did not take the restore either)", on every run."""
    host = lab.hosts[2]
    with unit_drop_in(lab, host, "no-reload.conf", "[Service]\nExecReload=\n"):
        before = docker_tree(lab, host)
        code, outcome, err = outcome_of(lab, "rollout", host, *skip_args(lab, tmp_path))
        assert (code, outcome["status"]) == (1, "failed"), (err, outcome)
        assert outcome["error"].startswith(
            f"docker.service has no ExecReload ({DROP_INS}/no-reload.conf clears it): a reload is not possible"
        ), outcome["error"]
        assert docker_tree(lab, host) == before
        # A restart needs no ExecReload: the same host converges that way.
        code, outcome, err = outcome_of(
            lab, "rollout", host, *skip_args(lab, tmp_path), "--restart-policy", "restart"
        )
        assert (code, outcome["status"]) == (0, "changed"), (err, outcome)


# --- 7. a registry name the host resolves to loopback ------------------------------------------------------


@contextmanager
def registry_name_on_loopback(lab: Lab, host: Host) -> Iterator[None]:
    """``host``'s /etc/hosts pointing the registry's name at 127.0.0.1 (a node-local registry); put back after."""
    lab.ssh(
        host,
        f"cp -p /etc/hosts /etc/hosts.lab && sed -i 's/^.*[[:space:]]{lab.registry}$/127.0.0.1 {lab.registry}/' /etc/hosts",
    )
    try:
        yield
    finally:
        lab.ssh(host, "mv /etc/hosts.lab /etc/hosts")


def test_verify_fails_a_host_that_resolves_the_registry_name_to_loopback(lab: Lab) -> None:
    """dockerd treats 127.0.0.0/8 as insecure, so it does not verify a registry whose name the host
    resolves there (a pull without any CA works); verify, looking names up only where the engine had a
    range beyond its defaults, said unchanged, exit 0."""
    host = lab.hosts[2]
    converged(lab, host)
    with registry_name_on_loopback(lab, host):
        assert lab.ssh(host, f"getent ahosts {lab.registry}").stdout.startswith("127.0.0.1 ")
        code, outcome, err = outcome_of(lab, "verify", host)
        assert (code, outcome["status"]) == (1, "failed"), (err, outcome)
        assert outcome["error"].startswith(
            f"does not comply with the policy: {lab.registry} resolves to 127.0.0.1 on this host, which dockerd "
            "always treats as insecure (127.0.0.0/8): TLS is not verified"
        ), outcome["error"]
    code, outcome, err = outcome_of(lab, "verify", host)
    assert (code, outcome["status"]) == (0, "unchanged"), (err, outcome)


# --- 8. a login that is not root: the agent's record and CA files it cannot read --------------------------


def test_a_plan_as_a_login_that_cannot_read_the_record_or_ca_files_says_so(lab: Lab, tmp_path: Path) -> None:
    """The record and the CA file, root's 0600, read as empty: ``plan`` showed the record rewritten (its
    own warning: "not valid JSON") and the CA file rewritten from nothing."""
    host = lab.hosts[0]
    converged(lab, host)
    record = "/var/lib/trust-agent/docker-state.json"
    ca_file = f"/etc/docker/certs.d/{lab.registry}/trust-agent-storage-ca.crt"
    lab.ssh(host, f"chmod 600 {record} {ca_file}")
    try:
        with deploy_login(lab, host, tmp_path) as inventory:
            code, outcome, err = outcome_of(lab, "plan", host, inventory=inventory)
    finally:
        lab.ssh(host, f"chmod 644 {record} {ca_file}")
    assert code == 1, (err, outcome)
    assert [change["path"] for change in outcome["changes"]] == [], outcome
    said = " ".join([outcome["error"], *outcome["warnings"]])
    assert f"{ca_file} cannot be read (permission denied)" in said, outcome
    assert f"trust-agent's record {record} cannot be read (permission denied)" in said, outcome
    assert "not valid JSON" not in said, outcome
