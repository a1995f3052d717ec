"""The rollout on real hosts: real sshd, systemd and dockerd, a registry on S3 with private CAs."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml

from agent.engine.gather import GATHER_SCRIPT
from tests.e2e.probes import (
    LAB_DAEMON_JSON,
    SITE_CHECK_SAYS,
    a_restart_dockerd_will_not_survive,
    an_insecure_registry_flag_in_etc_default_docker,
    by_host,
    ca_args,
    change_sshd,
    curl_calls,
    curl_watched,
    daemon_json,
    docker_tree,
    engine_state,
    forbid_streamlocal_on,
    pull,
    pull_and_push,
    runs_secure_for_the_registry,
    skip_args,
)
from tests.lab import Host, Lab
from tests.pki import make_ca
from tests.sshkeys import certify, encrypted_copy, keygen, public, ssh_agent

pytestmark = pytest.mark.lab

DROP_IN_DIR = "/etc/systemd/system/docker.service.d"


def rollout(lab: Lab, *args: str, inventory: Path | None = None) -> tuple[int, dict[str, Any], str]:
    """Run ``trust-agent rollout`` in the lab namespace; returns (exit code, JSON report, stderr)."""
    proc = lab.run_agent("rollout", "-i", str(inventory or lab.inventory_yml), *args, "--format", "json")
    report = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    return proc.returncode, report, proc.stderr


def refused(lab: Lab, host: Host, args: list[str], why: str, status: str = "failed") -> float:
    """A rollout fails ``host`` (``status``: refused before writing, or rolled back) with ``why`` in its
    error, and nothing under /etc/docker changes; returns how long the rollout took."""
    tree = docker_tree(lab, host)
    started = time.monotonic()
    code, report, _ = rollout(lab, *args)
    took = time.monotonic() - started
    outcome = by_host(report)[host.name]
    assert code == 1 and outcome["status"] == status, outcome
    assert why in outcome["error"], outcome["error"]
    assert docker_tree(lab, host) == tree
    return took


def test_plan_then_rollout_converges_every_host_and_a_second_run_is_quiet(lab: Lab) -> None:
    proc = lab.run_agent(
        "plan", "-i", str(lab.inventory_yml), *ca_args(lab), "--format", "json", "--detailed-exitcode"
    )
    assert proc.returncode == 2, proc.stderr
    planned = by_host(json.loads(proc.stdout))
    for host in lab.hosts:
        paths = {c["path"] for c in planned[host.name]["changes"]}
        assert "/etc/docker/certs.d/registry.test/trust-agent-storage-ca.crt" in paths
        assert planned[host.name]["engine_action"] == "none"
        assert not lab.ssh(host, "ls /etc/docker/certs.d", check=False).stdout.strip(), "plan must not write"

    code, report, err = rollout(lab, *ca_args(lab), "--canary-image", lab.image)
    assert code == 0, err
    for host in lab.hosts:
        outcome = by_host(report)[host.name]
        assert outcome["status"] == "changed"
        assert outcome["engine_action"] == "none"
        assert "canary pull " + lab.image in outcome["verified"]
        pull_and_push(lab, host)

    before = {h.name: engine_state(lab, h) for h in lab.hosts}
    code, report, err = rollout(lab, *ca_args(lab))
    assert code == 0, err
    assert {h["status"] for h in report["hosts"]} == {"unchanged"}
    assert {h.name: engine_state(lab, h) for h in lab.hosts} == before


def test_a_canary_the_host_holds_already_is_fetched_again_so_a_wrong_storage_ca_fails(
    lab: Lab, tmp_path: Path
) -> None:
    """A pull of an image the engine holds reads the manifest from the registry and fetches no blob:
    it passed with a wrong storage CA. The canary is removed first (only its own tag holds it), so
    its blobs come through the storage redirect; where a container holds it, the pull says so."""
    host = lab.hosts[0]
    code, report, err = rollout(lab, *ca_args(lab), "--limit", host.name, "--canary-image", lab.image)
    assert code == 0, err
    assert f"canary pull {lab.image}" in by_host(report)[host.name]["verified"]
    assert lab.ssh(host, f"docker image inspect {lab.image}", check=False).returncode == 0, "the canary stays"
    wrong = tmp_path / "wrong-storage-ca.pem"
    wrong.write_bytes(make_ca("Not the storage CA")[0])
    wrong_args = [
        "--source", str(lab.registry_yml), "--storage-ca", str(wrong), "--registry-ca", str(lab.registry_ca),
        "--limit", host.name, "--canary-image", lab.image,
    ]  # fmt: skip

    code, report, _ = rollout(lab, *wrong_args)
    outcome = by_host(report)[host.name]
    assert code == 1 and outcome["status"] == "rolled_back", outcome
    assert f"canary pull of {lab.image} failed" in outcome["error"] and "x509" in outcome["error"]
    # The roll-back restored the right CA, and the canary the run removed is pulled back with it.
    assert outcome["error"].endswith(f"rolled back; {lab.image}, removed for the canary pull, pulled back"), (
        outcome["error"]
    )
    assert "no longer on this host" not in outcome["error"], outcome["error"]
    assert lab.ssh(host, f"docker image inspect {lab.image}", check=False).returncode == 0

    def unproved_with(held_by: str) -> None:
        code, report, err = rollout(lab, *wrong_args)
        outcome = by_host(report)[host.name]
        # The host holds the files asked for; the TLS check from here fails the run on the storage's
        # certificate, which the canary could not prove.
        assert code == 1 and outcome["status"] == "changed", err
        assert "warning: the hosts' pulls will fail: " in err, err
        (proof,) = [v for v in outcome["verified"] if v.startswith("canary pull")]
        assert held_by in proof and proof.endswith("no blob fetched, the storage redirect unproved)"), proof
        rollout(lab, *ca_args(lab), "--limit", host.name)

    container = lab.ssh(host, f"docker create {lab.image} true").stdout.strip()
    try:
        unproved_with("not removable")
    finally:
        lab.ssh(host, f"docker rm {container}")
    # An image built on the canary: removing the canary's tag only untags it (no blob would be fetched).
    build = f"mkdir -p /tmp/child && printf 'FROM {lab.image}\\nLABEL x=y\\n' > /tmp/child/Dockerfile"
    lab.ssh(host, f"{build} && DOCKER_BUILDKIT=0 docker build -q -t child:1 /tmp/child")
    try:
        unproved_with("held by an image built on it")
        assert lab.ssh(host, f"docker image inspect {lab.image}", check=False).returncode == 0
    finally:
        lab.ssh(host, "docker rmi child:1; rm -rf /tmp/child")

    # By digest: pulled by digest (not as a tag named after it), and there again afterwards.
    digest = lab.ssh(
        host, f"docker image inspect --format '{{{{index .RepoDigests 0}}}}' {lab.image}"
    ).stdout.strip()
    lab.ssh(host, f"docker rmi {lab.image} && docker pull -q {digest}")  # held by its digest alone
    code, report, err = rollout(lab, *ca_args(lab), "--limit", host.name, "--canary-image", digest)
    assert code == 0 and f"canary pull {digest}" in by_host(report)[host.name]["verified"], err
    assert lab.ssh(host, f"docker image inspect {digest}", check=False).returncode == 0


def test_a_forgotten_storage_ca_leaves_the_hosts_as_they_are_and_says_so(lab: Lab) -> None:
    """The second run without --storage-ca removed the storage CA from every host and exited 0: every
    pull then failed. Now each host fails, untouched; --no-storage-ca removes it on purpose."""
    host = lab.hosts[0]
    code, _, err = rollout(lab, *ca_args(lab), "--limit", host.name)
    assert code == 0, err
    tree = docker_tree(lab, host)
    forgot = ["--source", str(lab.registry_yml), "--registry-ca", str(lab.registry_ca), "--limit", host.name]
    proc = lab.run_agent("rollout", "-i", str(lab.inventory_yml), *forgot)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "this host holds trust-agent's storage CA" in proc.stdout, proc.stdout
    assert f"warning: engines are redirected to https://{lab.s3_authority}" in proc.stdout  # the table's
    assert docker_tree(lab, host) == tree
    pull(lab, host)  # still pulls
    code, report, err = rollout(lab, *forgot, "--no-storage-ca")
    assert by_host(report)[host.name]["status"] == "changed", err
    assert "trust-agent-storage-ca.crt" not in lab.ssh(host, "ls -R /etc/docker/certs.d").stdout
    # Removed on purpose, but the storage's certificate is from the private CA: the rollout's own TLS
    # check from here says what the next pull will meet.
    assert code == 1 and "warning: the hosts' pulls will fail" in err, err


def test_a_forgotten_registry_ca_leaves_the_hosts_as_they_are_and_says_so(lab: Lab) -> None:
    """The second run without --registry-ca removed the registry's CA and exited 0: every pull then
    failed with x509. Now the host fails, untouched; --no-registry-ca removes it on purpose."""
    host = lab.hosts[0]
    assert rollout(lab, *ca_args(lab), "--limit", host.name)[0] == 0
    tree = docker_tree(lab, host)
    forgot = ["--source", str(lab.registry_yml), "--storage-ca", str(lab.storage_ca), "--limit", host.name]
    code, report, _ = rollout(lab, *forgot)
    outcome = by_host(report)[host.name]
    assert code == 1 and outcome["status"] == "failed", outcome
    assert "this host holds trust-agent's registry CA" in outcome["error"], outcome["error"]
    assert docker_tree(lab, host) == tree
    pull(lab, host)  # still pulls
    code, report, err = rollout(lab, *forgot, "--no-registry-ca")
    assert code == 0 and by_host(report)[host.name]["status"] == "changed", err
    assert "trust-agent-registry-ca.crt" not in lab.ssh(host, "ls -R /etc/docker/certs.d").stdout


def test_skip_tls_merges_reloads_and_keeps_containers_running(lab: Lab, tmp_path: Path) -> None:
    host = lab.hosts[0]
    lab.ssh(
        host,
        "cat > /etc/docker/daemon.json",
        input='{\n  "iptables": false,\n  "bridge": "none",\n'
        '  "storage-driver": "vfs",\n  "log-level": "info"\n}\n',
    )
    lab.ssh(host, "systemctl restart docker")
    container = lab.ssh(host, f"docker run -d --network none {lab.runnable_image} sleep 600").stdout.strip()
    started = lab.ssh(host, f"docker inspect -f '{{{{.State.StartedAt}}}}' {container}").stdout.strip()
    start_stamp, reloads = engine_state(lab, host)

    code, report, err = rollout(lab, *skip_args(lab, tmp_path))
    assert code == 0, err
    outcome = by_host(report)[host.name]
    assert outcome["status"] == "changed" and outcome["engine_action"] == "reload"
    daemon = json.loads(lab.ssh(host, "cat /etc/docker/daemon.json").stdout)
    assert list(daemon) == ["iptables", "bridge", "storage-driver", "log-level", "insecure-registries"]
    assert daemon["insecure-registries"] == ["registry.test", "registry.test:443"]
    assert daemon["log-level"] == "info"
    new_stamp, new_reloads = engine_state(lab, host)
    assert new_stamp == start_stamp, "a reload, not a restart"
    assert new_reloads == reloads + 1
    assert lab.ssh(
        host, f"docker inspect -f '{{{{.State.Running}}}} {{{{.State.StartedAt}}}}' {container}"
    ).stdout.split() == [
        "true",
        started,
    ]
    lab.ssh(host, f"docker rmi -f {lab.image} >/dev/null 2>&1; docker pull {lab.image}")
    lab.ssh(host, f"docker rm -f {container}")

    # Back to the CA source: the agent's insecure entries go (as [] — fact 11), the CA comes in.
    code, report, err = rollout(lab, *ca_args(lab))
    assert code == 0, err
    daemon = json.loads(lab.ssh(host, "cat /etc/docker/daemon.json").stdout)
    assert daemon["insecure-registries"] == []
    assert daemon["log-level"] == "info"
    assert by_host(report)[host.name]["engine_action"] == "reload"
    info = json.loads(lab.ssh(host, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout)
    assert "registry.test" not in info
    assert "trust-agent-storage-ca.crt" in lab.ssh(host, "ls /etc/docker/certs.d/registry.test").stdout
    pull_and_push(lab, host)


def live_insecure_registries(lab: Lab, host: Host) -> list[str]:
    """The registries the host's running dockerd treats as insecure."""
    out = lab.ssh(host, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout
    return sorted(name for name, entry in json.loads(out).items() if entry["Secure"] is False)


def test_a_daemon_json_dockerd_has_not_loaded_is_left_so_under_never_and_reloaded_by_the_next_run(
    lab: Lab, tmp_path: Path
) -> None:
    host = lab.hosts[0]
    args = [*skip_args(lab, tmp_path), "--limit", host.name]
    engine = engine_state(lab, host)

    # Restart policy 'never': the files are written and dockerd is left alone; its live config is not
    # waited for, nor the change rolled back for not being live.
    started = time.monotonic()
    code, report, err = rollout(lab, *args, "--restart-policy", "never")
    took = time.monotonic() - started
    outcome = by_host(report)[host.name]
    assert code == 0, err
    assert (outcome["status"], outcome["engine_action"], outcome["verified"]) == ("changed", "none", [])
    assert any("restart policy 'never'" in w for w in outcome["warnings"]), outcome["warnings"]
    assert took < 10, f"took {took:.1f}s: a wait for a live config that was not to come"
    daemon = json.loads(lab.ssh(host, "cat /etc/docker/daemon.json").stdout)
    assert daemon["insecure-registries"] == ["registry.test", "registry.test:443"]
    assert engine_state(lab, host) == engine
    assert live_insecure_registries(lab, host) == []

    # The host now holds a file its dockerd has not loaded (as after a run stopped between its rename
    # and its reload). Under 'never' a run says so and changes nothing.
    code, report, err = rollout(lab, *args, "--restart-policy", "never")
    outcome = by_host(report)[host.name]
    assert (code, outcome["status"], outcome["engine_action"]) == (0, "unchanged", "none"), err
    assert any("dockerd runs an older daemon.json" in w for w in outcome["warnings"]), outcome["warnings"]
    # The plan and the drift check name the reload it needs, and why, at once.
    for command, exit_code in (("plan", 0), ("verify", 1)):
        started = time.monotonic()
        proc = lab.run_agent(command, "-i", str(lab.inventory_yml), *args, "--format", "json")
        assert proc.returncode == exit_code, proc.stderr
        assert time.monotonic() - started < 10
        outcome = by_host(json.loads(proc.stdout))[host.name]
        assert (outcome["status"], outcome["engine_action"], outcome["changes"]) == ("pending", "reload", [])
        assert (
            "dockerd runs an older daemon.json: registry.test: dockerd has it secure, daemon.json says insecure"
            in outcome["reasons"][0]
        ), outcome["reasons"]

    # The default policy reloads it: no file written, the live config proven.
    tree = docker_tree(lab, host)
    code, report, err = rollout(lab, *args)
    outcome = by_host(report)[host.name]
    assert (code, outcome["status"], outcome["engine_action"]) == (0, "changed", "reload"), err
    assert (outcome["changes"], outcome["verified"]) == ([], ["live config"])
    assert docker_tree(lab, host) == tree
    assert engine_state(lab, host) == (engine[0], engine[1] + 1), "one reload, no restart"
    assert live_insecure_registries(lab, host) == ["registry.test", "registry.test:443"]

    code, report, err = rollout(lab, *args)
    assert (code, by_host(report)[host.name]["status"]) == (0, "unchanged"), err
    assert engine_state(lab, host) == (engine[0], engine[1] + 1)


@pytest.fixture
def slow_reload(lab: Lab) -> Iterator[Host]:
    """lab.hosts[1]'s docker.service takes 3 s to reload: a host certainly in flight for that long."""
    host = lab.hosts[1]
    drop_in = f"{DROP_IN_DIR}/slow-reload.conf"
    lab.ssh(
        host,
        f"mkdir -p {DROP_IN_DIR} && printf '%s\\n' '[Service]' 'ExecReload=' "
        f"'ExecReload=/bin/sh -c \"sleep 3; kill -s HUP $MAINPID\"' > {drop_in} && systemctl daemon-reload",
    )
    yield host
    lab.ssh(host, f"rm -f {drop_in} && systemctl daemon-reload")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_rollout_finishes_the_host_in_flight_starts_no_other_and_reports(
    lab: Lab, tmp_path: Path, slow_reload: Host, signum: int
) -> None:
    first, in_flight, last = lab.hosts
    untouched = docker_tree(lab, last)
    args = [
        "rollout",
        "-i",
        str(lab.inventory_yml),
        *skip_args(lab, tmp_path),
        "--forks",
        "1",
        "--format",
        "json",
    ]
    # Ctrl-C's default action, as a terminal gives it (a shell's background job would ignore SIGINT).
    agent = lab.popen_agent(*args, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert agent.stderr is not None
        lines = []
        for line in agent.stderr:  # a line per host as it finishes: h1 first (--forks 1, in order)
            lines.append(line)
            if line.startswith(f"{first.name}: "):
                break
        # The interrupt comes while the second host is in its slow reload: in flight for certain.
        deadline = time.monotonic() + 30
        while lab.ssh(in_flight, "pgrep -f '^/bin/sh -c sleep 3; kill'", check=False).returncode != 0:
            assert time.monotonic() < deadline, "the second host's reload never started"
            time.sleep(0.05)
        sent = time.monotonic()
        agent.send_signal(signum)
        out, err = agent.communicate(timeout=60)
    finally:
        if agent.poll() is None:
            agent.kill()
    took = time.monotonic() - sent
    assert agent.returncode == 130, "".join(lines) + err
    assert "interrupted: finishing the 1 host in flight" in err, err
    report = json.loads(out)
    assert report["stopped"] == "interrupted: the hosts in flight finished, no other host was started"
    outcomes = by_host(report)
    # The host in flight finished its reload and was verified; the last one was never started.
    assert outcomes[first.name]["status"] == "changed"
    assert (outcomes[in_flight.name]["status"], outcomes[in_flight.name]["verified"]) == (
        "changed",
        ["live config"],
    )
    assert outcomes[last.name] == {
        **outcomes[last.name],
        "status": "skipped",
        "error": "not started: the run was interrupted",
    }
    assert docker_tree(lab, last) == untouched
    assert live_insecure_registries(lab, in_flight) == ["registry.test", "registry.test:443"]
    assert took < 30, f"took {took:.1f}s"


HOST_CERT_CONF = "/etc/ssh/sshd_config.d/host-certificate.conf"


@pytest.fixture
def host_ca(lab: Lab, tmp_path: Path) -> Iterator[tuple[Host, str]]:
    """lab.hosts[0]'s sshd presents its ed25519 key certified by a fresh host CA, for its address, valid
    for an hour; yields the host and the CA's public key line."""
    host = lab.hosts[0]
    ca = keygen(tmp_path / "host_ca")
    (tmp_path / "host.pub").write_text(lab.ssh(host, "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout)
    certify(ca, tmp_path / "host", "-h", "-n", host.address, "-V", "-5m:+1h", key_id=host.name)
    install = (
        "cat > /etc/ssh/ssh_host_ed25519_key-cert.pub && "
        f"echo 'HostCertificate /etc/ssh/ssh_host_ed25519_key-cert.pub' > {HOST_CERT_CONF}"
    )
    change_sshd(lab, host, install, input=(tmp_path / "host-cert.pub").read_text())
    try:
        yield host, public(ca)
    finally:
        change_sshd(lab, host, f"rm -f {HOST_CERT_CONF} /etc/ssh/ssh_host_ed25519_key-cert.pub")


def test_a_host_vouched_for_by_a_host_ca_converges_with_only_the_ca_in_known_hosts(
    lab: Lab, tmp_path: Path, host_ca: tuple[Host, str]
) -> None:
    certified, ca = host_ca
    plain = lab.hosts[1]
    known = tmp_path / "known_hosts"
    known.write_text(f"@cert-authority 198.51.100.* {ca}\n")
    # --known-hosts, for every host: over the one the lab's inventory names.
    limit = ["--limit", f"{certified.name}:{plain.name}", "--known-hosts", str(known)]
    code, report, err = rollout(lab, *ca_args(lab), *limit)
    outcomes = by_host(report)
    assert code == 1, err
    # The certified host proves itself by its CA: converged.
    assert outcomes[certified.name]["status"] == "changed", outcomes[certified.name]
    assert "trust-agent-storage-ca.crt" in lab.ssh(certified, "ls /etc/docker/certs.d/registry.test").stdout
    # The other host's key is not certified: the CA's line does not make it known.
    assert outcomes[plain.name]["status"] == "unreachable", outcomes[plain.name]["error"]
    assert "host key not in" in outcomes[plain.name]["error"]
    assert known.read_text() == f"@cert-authority 198.51.100.* {ca}\n"

    # Taken on first use where asked, beside the CA's line; the certified host needs no line of its own.
    code, report, err = rollout(lab, *ca_args(lab), *limit, "--accept-new-host-keys")
    assert code == 0, err
    added = tmp_path / "added"
    added.write_text("\n".join(known.read_text().splitlines()[1:]) + "\n")
    recorded = paramiko.HostKeys(str(added))  # the name hashed or not, as the machine's ssh_config says
    assert len(recorded) == 1 and recorded.lookup(plain.address) is not None, added.read_text()


def test_a_host_behind_a_proxy_command_converges_through_it(lab: Lab, tmp_path: Path) -> None:
    host = lab.hosts[0]
    relay = Path(__file__).parents[1] / "fixtures" / "tcp_relay.py"
    config = tmp_path / "ssh_config"
    # As a bastion's `ssh -W %h:%p` or AWS SSM's session would carry it: here a relay that logs its use.
    config.write_text(
        f"Host {host.address}\n    ProxyCommand {sys.executable} {relay} %h %p {tmp_path}/relayed\n"
    )
    code, report, err = rollout(lab, *ca_args(lab), "--limit", host.name, "--ssh-config", str(config))
    assert code == 0, err
    assert by_host(report)[host.name]["status"] == "changed"
    assert (tmp_path / "relayed").read_text() == f"{host.address}:22\n"
    assert "trust-agent-storage-ca.crt" in lab.ssh(host, "ls /etc/docker/certs.d/registry.test").stdout


def test_a_passphrase_protected_key_in_a_crowded_agent_converges_the_fleet(lab: Lab, tmp_path: Path) -> None:
    """An engineer's usual set-up: the inventory names a passphrase-protected key, loaded in an agent
    that holds a key per customer before it. The file alone cannot be read; offered in the agent's
    order, the others would use up sshd's MaxAuthTries (6) first."""
    key = encrypted_copy(lab.key, tmp_path / "id_fleet")
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(lab.inventory_yml.read_text().replace(str(lab.key), str(key)))
    assert str(key) in inventory.read_text()
    customers = [keygen(tmp_path / f"customer{n}") for n in range(7)]
    hosts = lab.hosts[:2]
    limit = ["--limit", ":".join(h.name for h in hosts)]

    def run(sock: Path) -> tuple[int, dict[str, Any], str]:
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        proc = lab.run_agent(
            "rollout", "-i", str(inventory), *ca_args(lab), *limit, "--format", "json", env=env
        )
        return proc.returncode, json.loads(proc.stdout) if proc.stdout.startswith("{") else {}, proc.stderr

    with ssh_agent(tmp_path / "customers.sock", *customers) as sock:
        code, report, err = run(sock)  # the key is not in this agent: each host says why
    assert code == 1, err
    for host in hosts:
        outcome = by_host(report)[host.name]
        assert outcome["status"] == "unreachable", outcome
        assert "id_fleet is encrypted and not in the agent (ssh-add it)" in outcome["error"], outcome["error"]
    with ssh_agent(tmp_path / "agent.sock", *customers, lab.key) as sock:
        code, report, err = run(sock)
    assert code == 0, err
    for host in hosts:
        assert by_host(report)[host.name]["status"] in ("changed", "unchanged")
        assert "trust-agent-storage-ca.crt" in lab.ssh(host, "ls /etc/docker/certs.d/registry.test").stdout


def test_an_ansible_inventorys_ssh_args_carry_the_connection_through_its_proxy_command(
    lab: Lab, tmp_path: Path
) -> None:
    host = lab.hosts[0]
    relay = Path(__file__).parents[1] / "fixtures" / "tcp_relay.py"
    # As Ansible's documentation has it for a bastion; the StrictHostKeyChecking there is not taken.
    args = f'-o ProxyCommand="{sys.executable} {relay} %h %p {tmp_path}/relayed" -o StrictHostKeyChecking=no'
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"{lab.inventory_ini.read_text()}\n[all:vars]\nansible_ssh_common_args='{args}'\n")
    code, report, err = rollout(
        lab, *ca_args(lab), "--limit", host.name, "--known-hosts", str(lab.known_hosts), inventory=inventory
    )
    assert code == 0, err
    assert by_host(report)[host.name]["status"] == "changed"
    assert (tmp_path / "relayed").read_text() == f"{host.address}:22\n"


def test_a_host_ansible_reaches_otherwise_fails_alone_saying_why_and_the_rest_converge(
    lab: Lab, tmp_path: Path
) -> None:
    local, su, plain = lab.hosts[:3]
    inventory = tmp_path / "hosts.ini"
    text = lab.inventory_ini.read_text()
    text = text.replace(
        f"{local.name} ansible_host=", f"{local.name} ansible_connection=local ansible_host=", 1
    )
    text = text.replace(
        f"{su.name} ansible_host=", f"{su.name} ansible_become=yes ansible_become_method=su ansible_host=", 1
    )
    inventory.write_text(text)
    before = {h.name: docker_tree(lab, h) for h in (local, su)}
    code, report, err = rollout(
        lab, *ca_args(lab), "--known-hosts", str(lab.known_hosts), inventory=inventory
    )
    outcomes = by_host(report)
    assert code == 1, err
    assert outcomes[local.name]["status"] == "unreachable"
    assert "ansible_connection=local is not SSH" in outcomes[local.name]["error"]
    assert outcomes[su.name]["status"] == "unreachable"
    assert "ansible_become_method=su: trust-agent becomes root with sudo only" in outcomes[su.name]["error"]
    assert outcomes[plain.name]["status"] in ("changed", "unchanged"), outcomes[plain.name]
    assert {h.name: docker_tree(lab, h) for h in (local, su)} == before


def test_an_inventory_directory_with_a_script_and_templated_group_vars_converges_its_hosts(
    lab: Lab, tmp_path: Path
) -> None:
    """Ansible's inventories/<env>/ layout: an INI file, an executable inventory script beside it (as a
    cloud fleet's), and group_vars building the address from the host's name."""
    first, second = lab.hosts[:2]
    directory = tmp_path / "inventories" / "lab"
    (directory / "group_vars").mkdir(parents=True)
    (directory / "01-static").write_text(f"[static]\n{first.name} lab_ip={first.address}\n")
    listing = {
        "cloud": {"hosts": [second.name]},
        "_meta": {"hostvars": {second.name: {"lab_ip": second.address}}},
    }
    script = directory / "02-cloud.sh"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(listing)}\nEOF\n")
    script.chmod(0o755)
    (directory / "group_vars" / "all.yml").write_text(
        yaml.safe_dump(
            {
                "ansible_host": "{{ lab_ip }}",
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(lab.key),
            }
        )
    )
    code, report, err = rollout(
        lab, *ca_args(lab), "--known-hosts", str(lab.known_hosts), inventory=directory
    )
    assert code == 0, err
    assert sorted(by_host(report)) == sorted([first.name, second.name])
    for host in (first, second):
        assert "trust-agent-storage-ca.crt" in lab.ssh(host, "ls /etc/docker/certs.d/registry.test").stdout


def test_a_renamed_registry_moves_the_agents_insecure_entries_and_its_record_follows(
    lab: Lab, tmp_path: Path
) -> None:
    """The record both adds and drops claims: written twice in the one apply (both sets, then the new)."""
    host = lab.hosts[2]
    args = [*skip_args(lab, tmp_path), "--limit", host.name]
    assert rollout(lab, *args)[0] == 0
    _, reloads = engine_state(lab, host)
    code, report, err = rollout(lab, *args, "--registry", "other.test")
    assert code == 0, err
    outcome = by_host(report)[host.name]
    assert outcome["status"] == "changed" and "live config" in outcome["verified"], outcome
    assert daemon_json(lab, host)["insecure-registries"] == ["other.test"]
    record = json.loads(lab.ssh(host, "cat /var/lib/trust-agent/docker-state.json").stdout)
    assert record["insecure_registries"] == ["other.test"]
    assert engine_state(lab, host)[1] == reloads + 1
    info = json.loads(lab.ssh(host, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout)
    assert info["other.test"]["Secure"] is False and "registry.test" not in info
    assert not lab.ssh(host, "find /etc/docker /var/lib/trust-agent -name '.trust-agent.*'").stdout
    assert rollout(lab, *args, "--registry", "other.test")[1]["hosts"][0]["status"] == "unchanged"


def test_an_insecure_list_dockerd_kept_after_its_key_went_is_cleared_on_the_way_back_to_a_ca(
    lab: Lab, tmp_path: Path
) -> None:
    """The key removed from daemon.json by hand and dockerd reloaded: dockerd keeps the list (fact 11).
    Back to a CA, ``[]`` is written so the reload clears it (before, every run reloaded, found the
    registry still insecure after 20 s and rolled back, the storage CA with it)."""
    host = lab.hosts[2]
    limit = ("--limit", host.name)
    assert rollout(lab, *skip_args(lab, tmp_path), *limit)[0] == 0
    lab.ssh(host, f"cp {LAB_DAEMON_JSON} /etc/docker/daemon.json && systemctl reload docker")
    try:
        assert not runs_secure_for_the_registry(lab, host)
        code, report, err = rollout(lab, *ca_args(lab), *limit)
        assert code == 0, err
        outcome = by_host(report)[host.name]
        assert (outcome["status"], outcome["engine_action"]) == ("changed", "reload"), outcome
        assert daemon_json(lab, host)["insecure-registries"] == []
        assert runs_secure_for_the_registry(lab, host)
        assert rollout(lab, *ca_args(lab), *limit)[1]["hosts"][0]["status"] == "unchanged"
    finally:
        # The lab's reset restarts dockerd only where daemon.json differs from its base: failing before
        # the write, this test would leave the next ones a dockerd with the list it kept.
        lab.ssh(host, "systemctl restart docker")


@pytest.fixture
def troubled(lab: Lab) -> Iterator[tuple[Host, Host]]:
    """h2 gets --insecure-registry as a dockerd flag in a drop-in; h3's reload always fails."""
    flagged, failing = lab.hosts[1], lab.hosts[2]
    lab.ssh(
        flagged,
        f"mkdir -p {DROP_IN_DIR} && cat > {DROP_IN_DIR}/flags.conf",
        input=(
            "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock "
            "--insecure-registry=legacy.internal:5000\n"
        ),
    )
    lab.ssh(
        failing,
        f"mkdir -p {DROP_IN_DIR} && cat > {DROP_IN_DIR}/reload.conf",
        input="[Service]\nExecReload=\nExecReload=/bin/false\n",
    )
    for host in (flagged, failing):
        lab.ssh(host, "systemctl daemon-reload && systemctl restart docker")
    yield flagged, failing
    for host in (flagged, failing):
        lab.ssh(host, f"rm -rf {DROP_IN_DIR} && systemctl daemon-reload && systemctl restart docker")


def test_unreachable_conflicting_and_failing_hosts_are_reported_and_the_rest_converge(
    lab: Lab, tmp_path: Path, troubled: tuple[Host, Host]
) -> None:
    flagged, failing = troubled
    healthy = lab.hosts[0]
    inventory = yaml.safe_load(lab.inventory_yml.read_text())
    inventory["hosts"]["ghost"] = {"address": "198.51.100.250"}  # nothing answers there
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump(inventory))
    before_flagged, before_failing = docker_tree(lab, flagged), docker_tree(lab, failing)

    code, report, err = rollout(lab, *skip_args(lab, tmp_path), "--connect-timeout", "3", inventory=inv)
    assert code == 1, err
    outcomes = by_host(report)
    assert outcomes[healthy.name]["status"] == "changed"
    assert outcomes["ghost"]["status"] == "unreachable"
    assert outcomes[flagged.name]["status"] == "failed"
    assert "--insecure-registry" in outcomes[flagged.name]["error"]
    assert f"{DROP_IN_DIR}/flags.conf" in outcomes[flagged.name]["error"]
    assert docker_tree(lab, flagged) == before_flagged, "the bad-flag host must be untouched"
    assert outcomes[failing.name]["status"] == "rolled_back"
    assert "reload" in outcomes[failing.name]["error"]
    assert docker_tree(lab, failing) == before_failing, "the failing host must be back to its exact files"
    assert "rollback" in [p["name"] for p in outcomes[failing.name]["phases"]]
    lab.ssh(healthy, f"docker rmi -f {lab.image} >/dev/null 2>&1; docker pull {lab.image}")


def test_serial_batches_and_the_failure_budget(lab: Lab, tmp_path: Path) -> None:
    inventory = yaml.safe_load(lab.inventory_yml.read_text())
    hosts = {"ghost1": {"address": "198.51.100.251"}, "ghost2": {"address": "198.51.100.252"}}
    hosts.update(inventory["hosts"])
    inventory["hosts"] = hosts
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump(inventory, sort_keys=False))

    args = [*ca_args(lab), "--connect-timeout", "2", "--serial", "2"]
    code, report, _ = rollout(lab, *args, "--max-fail-percentage", "40", inventory=inv)
    assert code == 1
    assert [h["status"] for h in report["hosts"]] == [
        "unreachable",
        "unreachable",
        "skipped",
        "skipped",
        "skipped",
    ]
    assert "max-fail-percentage" in (report["stopped"] or "")
    for host in lab.hosts:
        assert not lab.ssh(host, "ls /etc/docker/certs.d", check=False).stdout.strip()

    # Without a budget, a batch whose every host failed still ends the run, as it ends Ansible's play.
    code, report, _ = rollout(lab, *args, inventory=inv)
    assert code == 1
    assert [h["status"] for h in report["hosts"]] == ["unreachable"] * 2 + ["skipped"] * 3
    assert report["stopped"] == "batch 1 of 3: every host failed (2 of 2); no further batches started"
    for host in lab.hosts:
        assert not lab.ssh(host, "ls /etc/docker/certs.d", check=False).stdout.strip()

    # A batch with a host that did not fail is no reason to stop.
    hosts = {
        "ghost1": hosts["ghost1"],
        "h1": hosts["h1"],
        "ghost2": hosts["ghost2"],
        "h2": hosts["h2"],
        "h3": hosts["h3"],
    }
    inventory["hosts"] = hosts
    inv.write_text(yaml.safe_dump(inventory, sort_keys=False))
    code, report, _ = rollout(lab, *args, inventory=inv)
    assert code == 1 and report["stopped"] is None
    statuses = {h["host"]: h["status"] for h in report["hosts"]}
    assert [statuses[h.name] for h in lab.hosts] == ["changed"] * len(lab.hosts)
    # Batches run in order: the third batch starts only after the second has finished.
    phases = {h["host"]: h["phases"] for h in report["hosts"]}
    second_end = max(p["end"] for name in ("ghost2", "h2") for p in phases[name])
    assert min(p["start"] for p in phases["h3"]) >= second_end


def test_a_serial_rollout_stops_after_a_batch_whose_every_host_failed_and_leaves_the_rest_untouched(
    lab: Lab, tmp_path: Path
) -> None:
    """h1 refused its login (a wrong key), alone in the first batch: h2 and h3 were changed all the same."""
    inventory = yaml.safe_load(lab.inventory_yml.read_text())
    inventory["hosts"]["h1"]["identity_file"] = str(keygen(tmp_path / "wrongkey"))
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump(inventory, sort_keys=False))
    trees = {h.name: docker_tree(lab, h) for h in lab.hosts[1:]}
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}

    proc = lab.run_agent(
        "rollout", "-i", str(inv), *ca_args(lab), "--serial", "1", "--format", "json", env=env
    )
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    outcomes = by_host(report)
    assert outcomes["h1"]["status"] == "unreachable", outcomes["h1"]
    assert "authentication as root failed" in outcomes["h1"]["error"]
    assert report["stopped"] == "batch 1 of 3: every host failed (1 of 1); no further batches started"
    for host in lab.hosts[1:]:
        assert (outcomes[host.name]["status"], outcomes[host.name]["error"]) == (
            "skipped",
            "not started: every host of batch 1 failed",
        )
        assert docker_tree(lab, host) == trees[host.name], f"{host.name} must be untouched"


def test_an_ansible_ini_inventory_works_unchanged(lab: Lab) -> None:
    code, report, err = rollout(
        lab,
        *ca_args(lab),
        "--known-hosts",
        str(lab.known_hosts),
        "--limit",
        "bookworm:!h3",
        inventory=lab.inventory_ini,
    )
    assert code == 0, err
    assert sorted(h["host"] for h in report["hosts"]) == ["h1", "h2"]
    assert all(h["status"] == "changed" for h in report["hosts"])
    assert not lab.ssh(lab.hosts[2], "ls /etc/docker/certs.d", check=False).stdout.strip()


# An address in the lab's network where nothing answers: a live DTR source there fails after a few
# seconds (no route), long after the first hosts' early connections have logged in.
SILENT_DTR = "https://198.51.100.250"
TRUST_STATE = "find /etc/docker /var/lib/trust-agent -printf '%p %s %T@\\n' 2>/dev/null | sort"


def test_a_bad_source_found_while_the_first_hosts_connect_touches_no_host(lab: Lab) -> None:
    """The first hosts connect while the source is read (``agent.early_connect``): the source fails,
    the run exits 2 with one line, and the hosts it logged in to are left as they were, logged out."""
    before = {h.name: lab.ssh(h, TRUST_STATE).stdout for h in lab.hosts}
    cursors = {
        h.name: lab.ssh(h, "journalctl -u ssh.service -n 0 --show-cursor -o cat")
        .stdout.split("cursor: ")[-1]
        .strip()
        for h in lab.hosts
    }
    env = {**os.environ, "TRUST_AGENT_DTR_USER": "admin", "TRUST_AGENT_DTR_TOKEN": "token"}
    proc = lab.run_agent(
        "rollout", "-i", str(lab.inventory_yml), "--source", SILENT_DTR, *ca_args(lab)[2:], env=env
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and SILENT_DTR in proc.stderr, proc.stderr
    for host in lab.hosts:
        log = lab.ssh(host, f"journalctl -u ssh.service --after-cursor={cursors[host.name]!r} -o cat").stdout
        # Logins since the cursor: the agent's, opened and closed, and this probe's own, still open (the
        # cursor's probe only closed after it).
        assert log.count("Accepted publickey") == 2, f"{host.name}: no early login: {log}"
        assert log.count("session closed for user root") == 2, f"{host.name}: a login left open: {log}"
        assert lab.ssh(host, TRUST_STATE).stdout == before[host.name], host.name


def test_strict_host_key_checking_refuses_an_unknown_host(lab: Lab, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    code, report, _ = rollout(lab, *ca_args(lab), "--known-hosts", str(empty), inventory=lab.inventory_ini)
    assert code == 1
    for outcome in report["hosts"]:
        assert outcome["status"] == "unreachable"
        assert "host key" in outcome["error"] and "--accept-new-host-keys" in outcome["error"]


def test_verify_reports_drift_and_tls_handshakes(lab: Lab) -> None:
    assert rollout(lab, *ca_args(lab))[0] == 0
    resolve = ["--resolve", f"{lab.registry}:{lab.state['registry']['address']}"]
    proc = lab.run_agent("verify", "-i", str(lab.inventory_yml), *ca_args(lab), *resolve)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "tls registry.test (also registry.test:443): ok" in proc.stderr
    assert "tls 198.51.100.11:9000: ok" in proc.stderr
    lab.ssh(lab.hosts[1], "rm /etc/docker/certs.d/registry.test/trust-agent-storage-ca.crt")
    proc = lab.run_agent("verify", "-i", str(lab.inventory_yml), *ca_args(lab), *resolve, "--format", "json")
    assert proc.returncode == 1
    drift = by_host(json.loads(proc.stdout))
    assert drift[lab.hosts[1].name]["status"] == "pending"
    assert drift[lab.hosts[0].name]["status"] == "unchanged"


def test_verify_warns_of_half_a_client_pair_that_breaks_every_pull(lab: Lab) -> None:
    host = lab.hosts[0]
    assert rollout(lab, *ca_args(lab), "--limit", host.name)[0] == 0
    lab.ssh(host, "touch /etc/docker/certs.d/registry.test/client.cert")
    try:
        broken = lab.ssh(host, f"docker pull {lab.image}", check=False)
        assert broken.returncode != 0 and "client.key" in broken.stderr  # fact 6, as dockerd says it
        proc = lab.run_agent("verify", "-i", str(lab.inventory_yml), *ca_args(lab), "--limit", host.name)
        assert "certs.d/registry.test/client.cert has no client.key beside it" in proc.stdout, proc.stdout
    finally:
        lab.ssh(host, "rm -f /etc/docker/certs.d/registry.test/client.cert")


def test_docker_20_10_with_registry_mirrors_takes_the_insecure_list_by_a_reload(
    lab: Lab, tmp_path: Path
) -> None:
    """Only 23.0.0-23.0.6 and 24.0.0 lose insecure-registries on a reload where registry-mirrors is set
    (moby#45552, fact 10). Docker 20.10 keeps both: a reload, no restart (before, a restart was asked
    for and refused without --allow-restart)."""
    host = lab.hosts[0]
    lab.ssh(
        host,
        "cat > /etc/docker/daemon.json && systemctl restart docker",
        input='{"iptables": false, "bridge": "none", "storage-driver": "vfs",'
        ' "registry-mirrors": ["https://mirror.test"]}\n',
    )
    assert lab.ssh(host, "docker version -f '{{.Server.Version}}'").stdout.startswith("20.10.")
    started, reloads = engine_state(lab, host)
    code, report, err = rollout(lab, *skip_args(lab, tmp_path), "--limit", host.name)
    assert code == 0, err
    assert by_host(report)[host.name]["engine_action"] == "reload"
    assert engine_state(lab, host) == (started, reloads + 1)
    config = json.loads(lab.ssh(host, "docker info --format '{{json .RegistryConfig}}'").stdout)
    assert config["IndexConfigs"]["registry.test"]["Secure"] is False
    assert config["Mirrors"] == ["https://mirror.test/"]


def test_a_restart_onto_a_file_dockerd_never_loaded_that_fails_is_reported_down_not_rolled_back(
    lab: Lab, tmp_path: Path
) -> None:
    """A person's change to daemon.json that dockerd never loaded (it would refuse it): the restart
    fails, the previous files come back, and dockerd fails on them too. The host is down: it is
    reported failed, saying so (it was reported rolled_back)."""
    host = lab.hosts[0]
    edit = (
        "import json; p='/etc/docker/daemon.json'; d=json.load(open(p)); "
        "d['allow-nondistributable-artifacts']=['http://x']; json.dump(d, open(p, 'w'))"
    )
    lab.ssh(host, f'python3 -c "{edit}"')
    try:
        code, report, _ = rollout(
            lab, *skip_args(lab, tmp_path), "--limit", host.name, "--restart-policy", "restart"
        )
        outcome = by_host(report)[host.name]
        assert code == 1 and outcome["status"] == "failed", outcome
        assert outcome["error"].endswith("dockerd is down (see systemctl status docker)"), outcome["error"]
        assert lab.ssh(host, "systemctl is-active docker", check=False).stdout.strip() != "active"
    finally:
        lab.ssh(
            host,
            f"cp {LAB_DAEMON_JSON} /etc/docker/daemon.json && "
            "systemctl reset-failed docker.service; systemctl restart docker",
        )


def test_the_rollouts_restart_is_not_stopped_by_systemds_start_limit_a_person_used_up(
    lab: Lab, tmp_path: Path
) -> None:
    """Debian's docker.service allows 3 starts a minute. After a person's three restarts, the rollout's
    own restart must still happen (before, systemd refused it: dockerd stopped, the host rolled back)."""
    host = lab.hosts[0]
    assert lab.ssh(host, "systemctl show docker -p StartLimitBurst --value").stdout.strip() == "3"
    lab.ssh(host, "systemctl reset-failed docker; for i in 1 2 3; do systemctl restart docker; done")
    forced = ("--restart-policy", "restart")
    code, report, err = rollout(lab, *skip_args(lab, tmp_path), *forced, "--limit", host.name)
    assert code == 0, err
    outcome = by_host(report)[host.name]
    assert (outcome["status"], outcome["engine_action"]) == ("changed", "restart"), outcome
    assert lab.ssh(host, "systemctl is-active docker", check=False).stdout.strip() == "active"
    info = json.loads(lab.ssh(host, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout)
    assert info["registry.test"]["Secure"] is False


def test_a_restart_dockerd_does_not_survive_is_rolled_back_and_dockerd_runs_again(
    lab: Lab, tmp_path: Path
) -> None:
    host = lab.hosts[0]
    with a_restart_dockerd_will_not_survive(lab, host):
        tree = docker_tree(lab, host)
        started, _ = engine_state(lab, host)
        forced = ("--restart-policy", "restart")
        code, report, err = rollout(lab, *skip_args(lab, tmp_path), *forced, "--limit", host.name)
        assert code == 1, err
        outcome = by_host(report)[host.name]
        assert outcome["status"] == "rolled_back", outcome
        assert outcome["error"].startswith("restart of dockerd failed: "), outcome["error"]
        # systemctl names no reason; the start's own journal lines do.
        assert f"; docker.service said: {SITE_CHECK_SAYS}; rolled back" in outcome["error"], outcome["error"]
        assert outcome["error"].endswith("; rolled back"), outcome["error"]  # dockerd took the restore
        # Every file and directory under /etc/docker as before, and dockerd running again: restarted on
        # the previous files, although the failed start used up systemd's start limit.
        assert docker_tree(lab, host) == tree
        assert lab.ssh(host, "systemctl is-active docker", check=False).stdout.strip() == "active"
        assert engine_state(lab, host)[0] != started
        assert runs_secure_for_the_registry(lab, host)


def test_a_reload_dockerd_refuses_is_rolled_back_at_once_with_dockerds_reason(
    lab: Lab, tmp_path: Path
) -> None:
    host = lab.hosts[0]
    # daemon.json edited by hand after dockerd started, with a value dockerd cannot decode (log-opts is a
    # map) and no check of the agent's covers (Docker 20.10 has no --validate): the reload is refused.
    saved = lab.ssh(host, "cat /etc/docker/daemon.json").stdout
    edited = json.dumps({**json.loads(saved), "log-opts": "max-size=10m"}, indent=2) + "\n"
    lab.ssh(host, "cat > /etc/docker/daemon.json", input=edited)
    try:
        took = refused(
            lab,
            host,
            [*skip_args(lab, tmp_path), "--limit", host.name],
            "dockerd refused the reload: unable to configure the Docker daemon with file /etc/docker/daemon.json: "
            "json: cannot unmarshal string",
            status="rolled_back",
        )
        assert took < 10, f"took {took:.1f}s: not the 20 s wait for a live config that would never come"
    finally:
        lab.ssh(host, "cat > /etc/docker/daemon.json && systemctl reload docker", input=saved)


@pytest.mark.parametrize("restarted", [True, False], ids=["dockerd-runs-with-it", "set-since-it-started"])
def test_a_flag_in_etc_default_docker_blocks_the_change_before_anything_is_written(
    lab: Lab, tmp_path: Path, restarted: bool
) -> None:
    """Debian's unit runs dockerd with $DOCKER_OPTS from /etc/default/docker: a flag there is a flag."""
    host = lab.hosts[1]
    with an_insecure_registry_flag_in_etc_default_docker(lab, host):
        if restarted:
            lab.ssh(host, "systemctl reset-failed docker.service && systemctl restart docker")
        engine = engine_state(lab, host)
        refused(
            lab,
            host,
            [*skip_args(lab, tmp_path), "--limit", host.name],
            "docker.service ($DOCKER_OPTS from /etc/default/docker) sets --insecure-registry; the same "
            "directive (insecure-registries) in daemon.json would stop dockerd (fact 13)",
        )
        # Found before writing: nothing changed, dockerd neither reloaded nor restarted.
        assert engine_state(lab, host) == engine
        # The CA files need no daemon.json: the flag does not hold them up.
        code, report, err = rollout(lab, *ca_args(lab), "--limit", host.name)
        assert code == 0 and by_host(report)[host.name]["status"] == "changed", err


def test_verify_fails_a_host_whose_dockerd_is_down_and_says_why_it_will_not_start(
    lab: Lab, tmp_path: Path
) -> None:
    """The agent's emptied list ([]) and a flag a person added later: dockerd refuses to start. Before,
    plan, rollout and verify all said "unchanged" and exited 0."""
    host = lab.hosts[1]
    for args in (skip_args(lab, tmp_path), ca_args(lab)):  # leaves "insecure-registries": []
        code, _, err = rollout(lab, *args, "--limit", host.name)
        assert code == 0, err
    assert daemon_json(lab, host)["insecure-registries"] == []
    with an_insecure_registry_flag_in_etc_default_docker(lab, host):
        lab.ssh(host, "systemctl reset-failed docker.service; systemctl restart docker", check=False)
        assert lab.ssh(host, "systemctl is-active docker", check=False).stdout.strip() != "active"
        proc = lab.run_agent(
            "verify", "-i", str(lab.inventory_yml), *ca_args(lab), "--limit", host.name, "--format", "json",
            "--resolve", f"{lab.registry}:{lab.state['registry']['address']}",
        )  # fmt: skip
        assert proc.returncode == 1, proc.stdout + proc.stderr
        outcome = by_host(json.loads(proc.stdout))[host.name]
        assert outcome["status"] == "failed"
        assert outcome["error"].startswith("dockerd is not running (docker.service "), outcome["error"]
        # The [] is the agent's own: the plan takes it out (a rollout would, and dockerd then starts).
        assert any(
            r.startswith("daemon.json: remove the empty insecure-registries trust-agent wrote")
            for r in outcome["reasons"]
        ), outcome["reasons"]


def test_a_daemon_json_with_a_byte_order_mark_is_named_before_docker_20_10_chokes_on_it(
    lab: Lab, tmp_path: Path
) -> None:
    """dockerd 20.10 cannot read a daemon.json that starts with a UTF-8 BOM (its reload is refused,
    its start fails): a change is refused before anything is written, saying so."""
    host = lab.hosts[1]
    saved = lab.ssh(host, "cat /etc/docker/daemon.json").stdout
    lab.ssh(host, "{ printf '\\357\\273\\277'; cat; } > /etc/docker/daemon.json", input=saved)
    try:
        refused(
            lab,
            host,
            [*skip_args(lab, tmp_path), "--limit", host.name],
            "/etc/docker/daemon.json starts with a UTF-8 byte order mark, which dockerd 20.10.24 cannot read",
        )
        # And it is true: dockerd 20.10 refuses to reload it.
        lab.ssh(host, "systemctl reload docker")
        journal = "journalctl -u docker -o cat --no-pager -n 20"
        deadline = time.monotonic() + 10
        while "invalid character" not in lab.ssh(host, journal).stdout:
            assert time.monotonic() < deadline, lab.ssh(host, journal).stdout
            time.sleep(0.2)
    finally:
        lab.ssh(host, "cat > /etc/docker/daemon.json && systemctl reload docker", input=saved)


def test_a_flag_only_the_running_dockerd_has_is_refused_before_anything_is_written(
    lab: Lab, tmp_path: Path
) -> None:
    """The flag was removed from /etc/default/docker but dockerd not restarted: the unit no longer has
    it, the running daemon does, and its next reload would refuse the merged daemon.json (fact 13)."""
    host = lab.hosts[1]
    with an_insecure_registry_flag_in_etc_default_docker(lab, host):
        lab.ssh(host, "systemctl reset-failed docker.service; systemctl restart docker")
        lab.ssh(host, "cp -p /etc/default/docker.lab /etc/default/docker")  # fixed in the file only
        engine = engine_state(lab, host)
        refused(
            lab,
            host,
            [*skip_args(lab, tmp_path), "--limit", host.name],
            "/cmdline sets --insecure-registry; the same directive (insecure-registries) in daemon.json "
            "would stop dockerd",
        )
        assert engine_state(lab, host) == engine, "no reload"


def test_a_read_only_etc_docker_fails_in_one_readable_line(lab: Lab, tmp_path: Path) -> None:
    host = lab.hosts[1]
    lab.ssh(host, "mount -o bind,ro /etc/docker /etc/docker")
    try:
        code, report, _ = rollout(lab, *skip_args(lab, tmp_path), "--limit", host.name)
        error = by_host(report)[host.name]["error"]
        assert code == 1 and "Read-only file system; cannot create /etc/docker/certs.d" in error, error
        assert "loop: " not in error
    finally:
        lab.ssh(host, "umount /etc/docker")


def test_a_directory_another_user_can_write_in_or_a_planted_link_is_never_written_through(
    lab: Lab,
) -> None:
    """A user who owns certs.d/<registry>/ could plant a link at a temp file's predictable name and
    have root write (and chown) any file; a trust-agent-*.crt linked to /etc/shadow was read into the
    plan's diff. Both hosts fail untouched, saying why; the secret is never shown."""
    host = lab.hosts[2]
    registry_dir = "/etc/docker/certs.d/registry.test"
    lab.ssh(host, f"mkdir -p {registry_dir} && chown deploy {registry_dir}")
    try:
        refused(
            lab,
            host,
            [*ca_args(lab), "--limit", host.name],
            f"{registry_dir} is writable by a user other than root",
        )
        lab.ssh(
            host, f"chown root {registry_dir} && ln -s /etc/shadow {registry_dir}/trust-agent-storage-ca.crt"
        )
        proc = lab.run_agent("plan", "-i", str(lab.inventory_yml), *ca_args(lab), "--limit", host.name)
        # The plan fails the host as the rollout does, reading nothing through the link.
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert (
            "trust-agent-storage-ca.crt is a symbolic link, which trust-agent does not follow" in proc.stdout
        )
        assert "root:" not in proc.stdout, proc.stdout
        refused(
            lab, host, [*ca_args(lab), "--limit", host.name], "trust-agent-storage-ca.crt is a symbolic link"
        )
        assert (
            lab.ssh(host, f"readlink {registry_dir}/trust-agent-storage-ca.crt").stdout.strip()
            == "/etc/shadow"
        )
        assert lab.ssh(host, "stat -c '%U %a' /var/lib/trust-agent/lock").stdout.split() == ["root", "600"]
    finally:
        lab.ssh(host, f"rm -rf {registry_dir}")


def test_the_gather_asks_systemd_nothing_more_where_docker_service_runs(lab: Lab) -> None:
    """A running docker.service is known by systemd's invocation link (a shell test): no systemctl
    show, no pgrep; its dockerd's command line (which may hold flags the unit no longer gives) is found
    by the pidfile dockerd writes; stopped, systemctl says so."""
    host = lab.hosts[1]

    def records() -> list[str]:
        out = lab.ssh(host, "sh -s -- '' /etc/docker/daemon.json api n0nce", input=GATHER_SCRIPT).stdout
        return [line for line in out.splitlines() if line.startswith("@@ta ")]

    running = records()
    pidfile = lab.ssh(host, "cat /var/run/docker.pid").stdout.strip()
    assert "@@ta active active" in running and f"@@ta pid {pidfile}" in running, running
    lab.ssh(host, "systemctl stop docker.socket docker.service")
    try:
        assert "@@ta active inactive" in records()
    finally:
        lab.ssh(host, "systemctl reset-failed docker.service; systemctl start docker.socket docker.service")


@pytest.mark.parametrize(
    ("stop", "forbid_streamlocal"),
    [
        ("systemctl stop docker.socket docker.service", False),
        # What operators type: docker.socket keeps listening, and the first connection to it would
        # start dockerd again. Nothing may connect: not the controller over the connection, not curl or
        # the docker CLI on the host (where sshd forbids the connection's route).
        ("systemctl stop docker", False),
        ("systemctl stop docker", True),
    ],
    ids=["socket-stopped", "socket-listening", "socket-listening-no-route"],
)
def test_a_stopped_engine_gets_its_files_and_takes_them_when_it_starts(
    lab: Lab, tmp_path: Path, stop: str, forbid_streamlocal: bool
) -> None:
    host = lab.hosts[1]
    args = [*skip_args(lab, tmp_path), "--limit", host.name]
    if forbid_streamlocal:
        forbid_streamlocal_on(lab, host)
    lab.ssh(host, stop)
    try:
        with curl_watched(lab, [host]):
            plan = lab.run_agent("plan", "-i", str(lab.inventory_yml), *args, "--format", "json")
            assert plan.returncode == 0, plan.stderr
            assert by_host(json.loads(plan.stdout))[host.name]["status"] == "pending"
            assert lab.ssh(host, "systemctl is-active docker", check=False).stdout.strip() == "inactive"
            code, report, err = rollout(lab, *args)
            assert code == 0, err
            outcome = by_host(report)[host.name]
            assert (outcome["status"], outcome["engine_action"], outcome["verified"]) == (
                "changed",
                "none",
                [],
            )
            assert "dockerd is not running: the change takes effect when it starts" in outcome["reasons"]
            assert daemon_json(lab, host)["insecure-registries"] == ["registry.test", "registry.test:443"]
            assert lab.ssh(host, "systemctl is-active docker", check=False).stdout.strip() == "inactive"
            if "docker.socket" not in stop:  # (with the socket stopped too, asking is harmless)
                assert "unix-socket" not in curl_calls(lab, host)
    finally:
        if forbid_streamlocal:
            forbid_streamlocal_on(lab, host, False)
        lab.ssh(host, "systemctl reset-failed docker.service; systemctl start docker.socket docker.service")
    # Started, dockerd runs the files: the next run proves it and changes nothing.
    code, report, err = rollout(lab, *args)
    outcome = by_host(report)[host.name]
    assert code == 0 and outcome["status"] == "unchanged" and outcome["verified"] == ["live config"], err


def test_a_canary_through_dial_stdio_reads_past_what_the_login_shell_prints(lab: Lab) -> None:
    """Where sshd forbids channels to the engine's socket, the canary runs `docker system dial-stdio`
    through the login shell: a .bashrc's echo came first, was read as the engine's HTTP reply, and a
    correct change was rolled back."""
    host = lab.hosts[1]
    forbid_streamlocal_on(lab, host)
    lab.ssh(host, "cp /root/.bashrc /root/.bashrc.lab && sed -i '1i echo Welcome to this host' /root/.bashrc")
    try:
        args = [*ca_args(lab), "--limit", host.name, "--canary-image", lab.image]
        code, report, err = rollout(lab, *args)
        assert code == 0, err
        outcome = by_host(report)[host.name]
        assert outcome["status"] == "changed" and f"canary pull {lab.image}" in outcome["verified"], outcome
    finally:
        lab.ssh(host, "mv /root/.bashrc.lab /root/.bashrc")
        forbid_streamlocal_on(lab, host, False)


def test_a_dockerd_stopped_between_the_gather_and_its_reload_keeps_the_files_and_stays_stopped(
    lab: Lab, tmp_path: Path
) -> None:
    """A person stopped docker.service while the run wrote: the refused reload rolled the host back,
    saying dockerd "did not take the restore either". A stopped engine gets the files, as at the start."""
    host = lab.hosts[1]
    args = [*skip_args(lab, tmp_path), "--limit", host.name]
    # The moment, made certain: systemctl stops docker.service itself just before the run's reload.
    wrapper = (
        '#!/bin/sh\ncase "$*" in *reload*docker.service*) /bin/systemctl stop docker.socket '
        'docker.service;; esac\nexec /bin/systemctl "$@"\n'
    )
    lab.ssh(host, "cat > /usr/local/sbin/systemctl && chmod 755 /usr/local/sbin/systemctl", input=wrapper)
    try:
        code, report, err = rollout(lab, *args)
        assert code == 0, err
        outcome = by_host(report)[host.name]
        assert (outcome["status"], outcome["engine_action"]) == ("changed", "none"), outcome
        stopped = "docker.service was stopped during the run: the files take effect when dockerd starts"
        assert stopped in outcome["warnings"], outcome
        assert daemon_json(lab, host)["insecure-registries"] == ["registry.test", "registry.test:443"]
        assert lab.ssh(host, "systemctl is-active docker", check=False).stdout.strip() == "inactive"
    finally:
        lab.ssh(host, "rm -f /usr/local/sbin/systemctl; systemctl start docker.socket docker.service")
    code, report, err = rollout(lab, *args)
    outcome = by_host(report)[host.name]
    assert code == 0 and outcome["status"] == "unchanged" and outcome["verified"] == ["live config"], err


def test_a_dockerd_run_outside_docker_service_is_refused_a_change_it_would_need_reloading(
    lab: Lab, tmp_path: Path
) -> None:
    host = lab.hosts[1]
    lab.ssh(
        host,
        "systemctl stop docker.socket docker.service && systemd-run --unit=lab-other-dockerd "
        "/usr/sbin/dockerd -H unix:///var/run/docker.sock --containerd=/run/containerd/containerd.sock && "
        "for i in $(seq 50); do docker info >/dev/null 2>&1 && break; sleep 0.2; done",
    )
    try:
        refused(
            lab,
            host,
            [*skip_args(lab, tmp_path), "--limit", host.name],
            "dockerd runs, but not as docker.service",
        )
        # CA files need no reload: those it gets, and a pull through them works.
        code, report, err = rollout(lab, *ca_args(lab), "--limit", host.name, "--canary-image", lab.image)
        outcome = by_host(report)[host.name]
        assert code == 0 and outcome["status"] == "changed" and outcome["engine_action"] == "none", err
    finally:
        lab.ssh(
            host,
            "systemctl stop lab-other-dockerd; systemctl reset-failed lab-other-dockerd docker.service 2>/dev/null; "
            "systemctl start docker.socket docker.service",
        )


def test_docker_from_the_snap_is_left_alone_unless_docker_service_runs(lab: Lab, tmp_path: Path) -> None:
    """Docker from the snap store reads its own daemon.json and certs.d (under /var/snap/docker/current/):
    files in /etc/docker would do nothing there. The snap's presence is its directory under /snap."""
    host = lab.hosts[2]
    args = [*skip_args(lab, tmp_path), "--limit", host.name]
    lab.ssh(host, "mkdir -p /snap/docker/current && systemctl stop docker.socket docker.service")
    try:
        refused(lab, host, args, "Docker from the snap is installed and docker.service is not running")
        lab.ssh(host, "systemctl start docker.socket docker.service")
        # docker.service runs: the change is its dockerd's, and the snap is named.
        code, report, err = rollout(lab, *args)
        outcome = by_host(report)[host.name]
        assert code == 0 and outcome["status"] in ("changed", "unchanged"), err
        assert "live config" in outcome["verified"], outcome
        assert any(w.startswith("Docker from the snap is installed too") for w in outcome["warnings"])
    finally:
        lab.ssh(
            host,
            "rm -rf /snap; systemctl reset-failed docker.service; systemctl start docker.socket docker.service",
        )


def test_an_engine_serving_its_api_elsewhere_is_refused_at_once(lab: Lab, tmp_path: Path) -> None:
    """dockerd on a socket of its own while docker.socket still listens on the default one, serving no
    one: a client there (curl, the docker CLI, the controller) would wait for ever."""
    host = lab.hosts[1]
    drop_in = f"{DROP_IN_DIR}/api-elsewhere.conf"
    unit = (
        "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd -H unix:///run/docker-alt.sock "
        "--containerd=/run/containerd/containerd.sock\n"
    )
    lab.ssh(
        host,
        f"mkdir -p {DROP_IN_DIR} && cat > {drop_in} && systemctl daemon-reload && systemctl restart docker",
        input=unit,
    )
    try:
        why = "dockerd serves its API at unix:///run/docker-alt.sock, not at /var/run/docker.sock"
        took = refused(lab, host, [*skip_args(lab, tmp_path), "--limit", host.name], why)
        assert took < 10, f"took {took:.1f}s: no wait on the socket no one serves"
    finally:
        lab.ssh(
            host,
            f"rm -f {drop_in} && systemctl daemon-reload && systemctl restart docker.socket docker.service",
        )


@pytest.fixture
def symlinked_daemon_json(lab: Lab) -> Iterator[Host]:
    """On the last host, daemon.json is a symlink to a file kept elsewhere (as config tools do)."""
    host = lab.hosts[-1]
    lab.ssh(
        host,
        "mkdir -p /srv/docker && mv /etc/docker/daemon.json /srv/docker/daemon.json && "
        "ln -s /srv/docker/daemon.json /etc/docker/daemon.json",
    )
    yield host
    lab.ssh(
        host, "rm -f /etc/docker/daemon.json && mv /srv/docker/daemon.json /etc/docker/ && rm -rf /srv/docker"
    )


def test_a_symlinked_daemon_json_is_merged_at_its_target_and_the_link_kept(
    lab: Lab, tmp_path: Path, symlinked_daemon_json: Host
) -> None:
    host = symlinked_daemon_json
    before = lab.ssh(host, "cat /srv/docker/daemon.json").stdout
    args = [*skip_args(lab, tmp_path), "--limit", host.name]
    code, report, err = rollout(lab, *args)
    assert code == 0, err
    outcome = by_host(report)[host.name]
    assert outcome["status"] == "changed" and "live config" in outcome["verified"], outcome
    assert lab.ssh(host, "readlink /etc/docker/daemon.json").stdout.strip() == "/srv/docker/daemon.json"
    merged = json.loads(lab.ssh(host, "cat /srv/docker/daemon.json").stdout)
    assert merged == {**json.loads(before), "insecure-registries": ["registry.test", "registry.test:443"]}
    backups = lab.ssh(host, "cat /var/lib/trust-agent/backup/daemon.json.*").stdout
    assert backups == before
    index = json.loads(lab.ssh(host, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout)
    assert index["registry.test"]["Secure"] is False
    code, report, err = rollout(lab, *args)
    assert code == 0 and by_host(report)[host.name]["status"] == "unchanged", err

    # A link to nothing is left as it is: the host fails, and nothing on it changes.
    lab.ssh(host, "mv /srv/docker/daemon.json /srv/docker/daemon.json.kept")
    refused(lab, host, args, "is a symlink to /srv/docker/daemon.json, which is not a file")
    assert lab.ssh(host, "readlink /etc/docker/daemon.json").stdout.strip() == "/srv/docker/daemon.json"
    lab.ssh(host, "mv /srv/docker/daemon.json.kept /srv/docker/daemon.json")

    # A link into a directory that does not exist (readlink -f names nothing there), and a source that
    # needs no daemon.json change while dockerd still runs the skip-TLS list: no reload (which would
    # read no file at all), no 20 s wait for a live config that would never come.
    lab.ssh(host, "ln -sfn /etc/nowhere/daemon.json /etc/docker/daemon.json")
    try:
        engine = engine_state(lab, host)
        started = time.monotonic()
        code, report, err = rollout(lab, *ca_args(lab), "--limit", host.name)
        outcome = by_host(report)[host.name]
        assert code == 0 and outcome["engine_action"] == "none", err
        assert (
            "/etc/docker/daemon.json is a symlink to /etc/nowhere/daemon.json, which is not a file: left alone"
            in outcome["warnings"]
        )
        assert time.monotonic() - started < 10 and engine_state(lab, host) == engine
        refused(lab, host, args, "is a symlink to /etc/nowhere/daemon.json, which is not a file: left alone")
    finally:
        lab.ssh(host, "ln -sfn /srv/docker/daemon.json /etc/docker/daemon.json")


@pytest.fixture
def config_file_given_twice(lab: Lab) -> Iterator[Host]:
    """dockerd on the second host started with ``--config-file`` twice: it reads the last one only."""
    host = lab.hosts[1]
    drop_in = f"{DROP_IN_DIR}/config-file.conf"
    unit = (
        "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd -H fd:// "
        "--containerd=/run/containerd/containerd.sock "
        "--config-file /srv/docker/decoy.json --config-file=/srv/docker/daemon.json\n"
    )
    lab.ssh(
        host,
        "mkdir -p /srv/docker && cp /etc/docker/daemon.json /srv/docker/daemon.json && "
        "echo '{\"debug\": true}' > /srv/docker/decoy.json && "
        f"mkdir -p {DROP_IN_DIR} && cat > {drop_in} && systemctl daemon-reload && systemctl restart docker",
        input=unit,
    )
    yield host
    lab.ssh(host, f"rm -rf {drop_in} /srv/docker && systemctl daemon-reload && systemctl restart docker")


def test_the_last_config_file_given_to_dockerd_is_the_one_merged(
    lab: Lab, tmp_path: Path, config_file_given_twice: Host
) -> None:
    host = config_file_given_twice
    before = {
        path: lab.ssh(host, f"cat {path}").stdout
        for path in ("/etc/docker/daemon.json", "/srv/docker/decoy.json")
    }
    args = [*skip_args(lab, tmp_path), "--limit", host.name]
    code, report, err = rollout(lab, *args)
    assert code == 0, err
    outcome = by_host(report)[host.name]
    assert outcome["status"] == "changed" and outcome["engine_action"] == "reload", outcome
    assert "live config" in outcome["verified"], outcome
    merged = json.loads(lab.ssh(host, "cat /srv/docker/daemon.json").stdout)
    assert merged == {
        **json.loads(before["/etc/docker/daemon.json"]),
        "insecure-registries": ["registry.test", "registry.test:443"],
    }
    # What dockerd does not read is left alone: the first --config-file, and the default path.
    assert {path: lab.ssh(host, f"cat {path}").stdout for path in before} == before
    index = json.loads(lab.ssh(host, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout)
    assert index["registry.test"]["Secure"] is False
    code, report, err = rollout(lab, *args)
    assert code == 0 and by_host(report)[host.name]["status"] == "unchanged", err


def test_a_non_root_login_converges_through_sudo_and_fails_cleanly_without_it(
    lab: Lab, tmp_path: Path
) -> None:
    inventory = yaml.safe_load(lab.inventory_yml.read_text())
    inventory["defaults"]["user"] = "deploy"
    plain = tmp_path / "deploy.yml"
    plain.write_text(yaml.safe_dump(inventory))
    host = lab.hosts[0]

    code, report, _ = rollout(lab, *ca_args(lab), "--limit", host.name, inventory=plain)
    assert code == 1
    outcome = by_host(report)[host.name]
    uid = lab.ssh(host, "id -u deploy").stdout.strip()
    not_root = f"runs as uid {uid}, not root: /etc/docker and the engine's socket are root's"
    assert outcome["status"] == "failed" and outcome["error"].startswith(not_root), outcome["error"]
    assert "--become" in outcome["error"]
    assert not lab.ssh(host, "ls /etc/docker/certs.d", check=False).stdout.strip()
    proc = lab.run_agent("plan", "-i", str(plain), *ca_args(lab), "--limit", host.name, "--format", "json")
    planned = by_host(json.loads(proc.stdout))[host.name]
    assert planned["status"] == "pending" and any(not_root in w for w in planned["warnings"]), planned

    code, report, err = rollout(
        lab, *ca_args(lab), "--limit", host.name, "--become", "--canary-image", lab.image, inventory=plain
    )
    assert code == 0, err
    outcome = by_host(report)[host.name]
    assert outcome["status"] == "changed"
    assert "canary pull " + lab.image in outcome["verified"]
    owners = lab.ssh(
        host, "stat -c '%U %a' /etc/docker/certs.d/registry.test/trust-agent-storage-ca.crt"
    ).stdout
    assert owners.split() == ["root", "644"]
    code, report, err = rollout(lab, *ca_args(lab), "--limit", host.name, "--become", inventory=plain)
    assert code == 0 and by_host(report)[host.name]["status"] == "unchanged", err
    # Converged: without --become it said so only after 20 s, as an engine that did not answer.
    started = time.monotonic()
    code, report, _ = rollout(lab, *ca_args(lab), "--limit", host.name, inventory=plain)
    assert code == 1 and by_host(report)[host.name]["error"].startswith(not_root)
    assert time.monotonic() - started < 10


BECOME_PASSWORD = "lab-sudo-pass 1"


@pytest.fixture
def sudo_asks_a_password(lab: Lab) -> Iterator[Host]:
    """On the first host, the deploy user's sudo asks for its password (the lab's default: NOPASSWD)."""
    host = lab.hosts[0]
    lab.ssh(
        host,
        "chpasswd && echo 'deploy ALL=(ALL) ALL' > /etc/sudoers.d/deploy",
        input=f"deploy:{BECOME_PASSWORD}\n",
    )
    try:
        yield host
    finally:
        lab.ssh(host, "usermod -p '*' deploy && echo 'deploy ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/deploy")


def refused_sudo_passwords(lab: Lab, host: Host) -> int:
    """How many wrong passwords the host's sudo has logged (it logs each attempt it refused)."""
    out = lab.ssh(
        host, "journalctl _COMM=sudo -o cat --no-pager | grep -c 'incorrect password attempt' || true"
    )
    return int(out.stdout.strip() or 0)


def test_real_sudo_with_a_password_converges_and_a_wrong_one_is_tried_once_and_touches_nothing(
    lab: Lab, tmp_path: Path, sudo_asks_a_password: Host
) -> None:
    host = sudo_asks_a_password
    inventory = yaml.safe_load(lab.inventory_yml.read_text())
    inventory["defaults"]["user"] = "deploy"
    plain = tmp_path / "deploy.yml"
    plain.write_text(yaml.safe_dump(inventory))
    become = ("--limit", host.name, "--become", "--become-password-env", "TA_LAB_SUDO")

    def run(password: str | None) -> tuple[int, dict[str, Any], str]:
        args = become if password is not None else become[:3]
        env = {**os.environ, "TA_LAB_SUDO": password or ""}
        proc = lab.run_agent("rollout", "-i", str(plain), *ca_args(lab), *args, "--format", "json", env=env)
        report = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
        return proc.returncode, report, proc.stderr

    code, report, err = run(None)  # sudo -n: refused without asking
    assert code == 1, err
    assert "sudo needs a password" in by_host(report)[host.name]["error"]

    refused_before = refused_sudo_passwords(lab, host)
    code, report, err = run("not the password")
    assert code == 1, err
    assert "sudo refused the become password" in by_host(report)[host.name]["error"]
    assert refused_sudo_passwords(lab, host) - refused_before == 1, "a wrong password is tried once"
    assert not lab.ssh(host, "ls /etc/docker/certs.d", check=False).stdout.strip()

    code, report, err = run(BECOME_PASSWORD)
    assert code == 0, err
    outcome = by_host(report)[host.name]
    assert outcome["status"] == "changed" and "live config" in outcome["verified"], outcome
    owners = lab.ssh(host, "stat -c '%U %a' /etc/docker/certs.d/registry.test/trust-agent-storage-ca.crt")
    assert owners.stdout.split() == ["root", "644"]
    code, report, err = run(BECOME_PASSWORD)
    assert code == 0 and by_host(report)[host.name]["status"] == "unchanged", err
    assert refused_sudo_passwords(lab, host) - refused_before == 1


@pytest.fixture
def streamlocal_forbidden(lab: Lab) -> Iterator[tuple[Host, Host]]:
    """Every host's curl calls logged; on the second host sshd forbids channels to Unix sockets."""
    allowed, forbidden = lab.hosts[0], lab.hosts[1]
    with curl_watched(lab, lab.hosts):
        forbid_streamlocal_on(lab, forbidden)
        try:
            yield allowed, forbidden
        finally:
            forbid_streamlocal_on(lab, forbidden, False)


def test_the_engine_api_is_read_over_the_connection_and_on_the_host_where_sshd_forbids_that(
    lab: Lab, tmp_path: Path, streamlocal_forbidden: tuple[Host, Host]
) -> None:
    allowed, forbidden = streamlocal_forbidden
    for run, action in (("cold", "reload"), ("no-op", "none")):
        code, report, err = rollout(lab, *skip_args(lab, tmp_path))
        assert code == 0, err
        assert "Secsh channel" not in err, err  # the refused channel is handled, not paramiko's log line
        for host in lab.hosts:
            outcome = by_host(report)[host.name]
            assert outcome["engine_action"] == action, (run, outcome)
            assert outcome["engine_version"], (run, outcome)
            assert "live config" in outcome["verified"], (run, outcome)
        # Where sshd allows it, the controller reads /_ping and /info through the connection itself.
        assert curl_calls(lab, allowed) == "", run
        calls = curl_calls(lab, forbidden)
        assert "--unix-socket /var/run/docker.sock" in calls, run
    info = json.loads(
        lab.ssh(forbidden, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout
    )
    assert info["registry.test"]["Secure"] is False


def test_verify_reports_each_passing_tls_check_as_a_passing_junit_case(lab: Lab, tmp_path: Path) -> None:
    """JUnit had TLS cases only where a check failed: a passing check was in no report."""
    import xml.etree.ElementTree as ET

    host = lab.hosts[0]
    assert rollout(lab, *ca_args(lab), "--limit", host.name)[0] == 0
    resolve = ["--resolve", f"{lab.registry}:{lab.state['registry']['address']}"]
    junit, markdown = tmp_path / "verify.xml", tmp_path / "verify.md"
    said: list[str] = []
    for report in (junit, markdown):
        args = [*ca_args(lab), *resolve, "--limit", host.name, "-o", str(report)]
        proc = lab.run_agent("verify", "-i", str(lab.inventory_yml), *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        said = [line for line in proc.stderr.splitlines() if line.startswith("tls ")]
    passed = [line.removeprefix("tls ").removesuffix(": ok") for line in said if line.endswith(": ok")]
    assert len(passed) >= 2 and len(passed) == len(said), said  # the registry's names and the storage
    suite = ET.fromstring(junit.read_text())
    tls = {
        c.get("name"): list(c)
        for c in suite.iter("testcase")
        if c.get("classname") == "trust-agent.verify.tls"
    }
    assert list(tls) == passed, tls
    assert all(children == [] for children in tls.values()), tls  # passed: no failure, no skip
    assert (suite.get("tests"), suite.get("failures")) == (str(1 + len(passed)), "0")
    listed = markdown.read_text().splitlines()
    assert all(f"- checked from here: {line}" in listed for line in said), listed


def test_a_canary_the_registry_lacks_fails_in_the_engines_words_not_the_sdks_url(lab: Lab) -> None:
    """The canary's error showed the docker SDK's own http+docker:// URL of the engine's API."""
    host = lab.hosts[0]
    missing = f"{lab.registry}/test/no-such-image:1"
    code, report, err = rollout(lab, *ca_args(lab), "--limit", host.name, "--canary-image", missing)
    outcome = by_host(report)[host.name]
    assert code == 1 and outcome["status"] in ("failed", "rolled_back"), outcome
    assert f"canary pull of {missing} failed: " in outcome["error"], outcome["error"]
    assert "not found" in outcome["error"], outcome["error"]  # dockerd's own words stay
    assert "http+docker" not in outcome["error"] and "http+docker" not in err, outcome["error"]
