"""The canary pull on real engines: its registry credentials read once from this machine's Docker
config, before any host is touched; and a pull dockerd makes without verifying TLS claims no proof.

A ``credsStore`` helper that is not installed (``{"credsStore": "desktop"}`` under sudo or CI) made
every host's canary fail "Credentials store error" after the change: every host rolled back, its canary
image gone. A person's ``insecure-registries`` entry for the registry let a wrong storage CA pass as
``verified: canary pull``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.probes import LAB_DAEMON_JSON, by_host, ca_args, docker_tree
from tests.e2e.test_ansible_lab import recap, run_playbook
from tests.lab import Host, Lab
from tests.pki import make_ca

pytestmark = pytest.mark.lab


def docker_config(tmp_path: Path, doc: dict[str, Any]) -> Path:
    """A Docker client config directory holding ``doc`` as its config.json."""
    directory = tmp_path / "docker-config"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(doc))
    return directory


def rollout(lab: Lab, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    """``trust-agent rollout`` on the whole fleet (the lab's CA source unless ``args`` give one), with
    ``env`` added to this process's environment: (exit code, outcomes by host, stderr)."""
    source = () if "--source" in args else tuple(ca_args(lab))
    proc = lab.run_agent(
        "rollout", "-i", str(lab.inventory_yml), *source, *args, "--format", "json",
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert proc.stdout.strip().startswith("{"), f"no report (exit {proc.returncode}): {proc.stderr}"
    return proc.returncode, by_host(json.loads(proc.stdout)), proc.stderr


def test_a_credential_helper_that_is_not_installed_refuses_the_run_and_touches_no_host(
    lab: Lab, tmp_path: Path
) -> None:
    """The tester's repro: every host was changed, its canary pull failed, and it was rolled back. The
    credentials are read before any host: the run is refused, as bad input is."""
    config = docker_config(tmp_path, {"credsStore": "ta-missing-helper"})
    before = {host.name: docker_tree(lab, host) for host in lab.hosts}

    proc = lab.run_agent(
        "rollout", "-i", str(lab.inventory_yml), *ca_args(lab), "--canary-image", lab.image,
        "--format", "json", env={**os.environ, "DOCKER_CONFIG": str(config)},
    )  # fmt: skip

    assert proc.returncode == 2, proc.stderr
    said = (
        f"the canary pull's credentials for {lab.registry} could not be read: {config}/config.json names "
        'the credential helper docker-credential-ta-missing-helper ("credsStore"), which failed: '
        "docker-credential-ta-missing-helper not installed or not available in PATH; install the helper, "
        f"or log in with `docker login {lab.registry}` under a DOCKER_CONFIG= directory whose config.json "
        "names no helper (an empty directory: anonymous pulls)"
    )
    assert said in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    assert report["hosts"] == [] and report["stopped"].startswith("bad input, nothing was changed"), report
    for host in lab.hosts:
        assert docker_tree(lab, host) == before[host.name], "nothing written on the host"


HELPER = """#!/bin/sh
# A credential helper that logs each call and knows one login.
echo "$1 $(cat)" >> {log}
echo '{{"ServerURL": "{registry}", "Username": "ci", "Secret": "s3cret"}}'
"""


def counting_helper(lab: Lab, tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The environment of a run whose Docker config names a helper that logs each call (``HELPER``),
    on PATH; and its log."""
    helpers = tmp_path / "bin"
    helpers.mkdir()
    log = tmp_path / "helper.log"
    helper = helpers / "docker-credential-ta-count"
    helper.write_text(HELPER.format(log=shlex.quote(str(log)), registry=lab.registry))
    helper.chmod(0o755)
    config = docker_config(tmp_path, {"credsStore": "ta-count"})
    return {"DOCKER_CONFIG": str(config), "PATH": f"{helpers}:{os.environ['PATH']}"}, log


def test_a_helpers_credentials_are_read_once_for_the_fleet_and_every_canary_pulls(
    lab: Lab, tmp_path: Path
) -> None:
    """docker-py ran the helper once per host, in every host's thread."""
    env, log = counting_helper(lab, tmp_path)

    code, outcomes, err = rollout(lab, "--canary-image", lab.image, env=env)

    assert code == 0, (err, outcomes)
    for host in lab.hosts:
        outcome = outcomes[host.name]
        assert outcome["status"] == "changed" and f"canary pull {lab.image}" in outcome["verified"], outcome
    assert log.read_text().splitlines() == [f"get {lab.registry}"], "the helper ran once, for the fleet"


def test_a_serial_rollout_reads_the_helpers_credentials_again_for_each_batch_and_every_canary_pulls(
    lab: Lab, tmp_path: Path
) -> None:
    """The credentials were read once for the run: a helper's short-lived token (ECR's 12 h, gcloud's
    hour) expired over a long ``--serial`` rollout, and every later batch's canary failed and rolled
    back a correct change. One read per batch, none per host beyond it."""
    env, log = counting_helper(lab, tmp_path)

    code, outcomes, err = rollout(lab, "--serial", "1", "--canary-image", lab.image, env=env)

    assert code == 0, (err, outcomes)
    for host in lab.hosts:
        outcome = outcomes[host.name]
        assert outcome["status"] == "changed" and f"canary pull {lab.image}" in outcome["verified"], outcome
    assert len(lab.hosts) == 3
    assert log.read_text().splitlines() == [f"get {lab.registry}"] * 3, "the helper ran once per batch"


@contextmanager
def insecure_entry(lab: Lab, host: Host, entry: str) -> Iterator[None]:
    """``host``'s daemon.json lists ``entry`` (a registry or a range) in insecure-registries, a
    person's, reloaded; after, the base file back and dockerd restarted (a reload keeps a list whose
    key went, fact 11), its start limit cleared first."""
    doc = {**json.loads(lab.ssh(host, f"cat {LAB_DAEMON_JSON}").stdout), "insecure-registries": [entry]}
    lab.ssh(host, "cat > /etc/docker/daemon.json && systemctl reload docker", input=json.dumps(doc))
    deadline = time.monotonic() + 10
    while f'"{entry}"' not in lab.ssh(host, "docker info --format '{{json .RegistryConfig}}'").stdout:
        assert time.monotonic() < deadline, "dockerd did not load the entry"
        time.sleep(0.2)
    try:
        yield
    finally:
        lab.ssh(
            host,
            f"cp {LAB_DAEMON_JSON} /etc/docker/daemon.json && systemctl reset-failed docker.service; "
            "systemctl restart docker",
        )


@pytest.mark.parametrize("insecure", ["name", "range"])
def test_a_canary_pull_dockerd_makes_without_verifying_tls_does_not_pass_a_wrong_storage_ca(
    lab: Lab, tmp_path: Path, insecure: str
) -> None:
    """The tester's repro: the registry insecure in the live config (a person's entry naming it, or a
    range covering its address), a wrong storage CA, no TLS check from here: exit 0, "verified: ...,
    canary pull", and the wrong CA installed without a word."""
    host = lab.hosts[0]
    wrong = tmp_path / "old-storage-ca.pem"
    wrong.write_bytes(make_ca("old")[0])
    args = [
        "--source",
        str(lab.registry_yml),
        "--storage-ca",
        str(wrong),
        "--registry-ca",
        str(lab.registry_ca),
    ]
    entry = lab.registry if insecure == "name" else "198.51.100.0/24"  # the lab's registry and storage
    with insecure_entry(lab, host, entry):
        proc = lab.run_agent(
            "rollout", "-i", str(lab.inventory_yml), *args, "--no-tls-check", "--limit", host.name,
            "--canary-image", lab.image, "--format", "json",
        )  # fmt: skip
        outcome = by_host(json.loads(proc.stdout))[host.name]

        assert outcome["status"] == "changed", (proc.stderr, outcome)
        assert f"canary pull {lab.image}" not in outcome["verified"], "no proof claimed"
        assert f"canary pull {lab.image} (TLS not verified: the CA files unproved)" in outcome["verified"]
        (unproved,) = [w for w in outcome["warnings"] if w.startswith("the CA files are unproved")]
        assert unproved.startswith(
            f"the CA files are unproved: the canary pull of {lab.image} went through without TLS verification ("
        ), unproved
        assert "so a wrong storage CA would pass it too" in unproved


@pytest.fixture
def ansible_home() -> Iterator[Path]:
    """The controller's HOME and ansible.cfg, as tests/e2e/test_ansible_lab.py makes them: short, since
    ssh's ControlPath socket lives under it."""
    home = Path(tempfile.mkdtemp(prefix="ta-ans-"))
    (home / "ansible.cfg").write_text(f"[defaults]\n\n[ssh_connection]\ncontrol_path_dir = {home}/cp\n")
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("entry", ["198.51.100.0/24", "registry.test"], ids=["range", "name"])
def test_the_ansible_roles_canary_through_an_insecure_entry_does_not_pass_a_wrong_storage_ca(
    lab: Lab, ansible_bin: Path, ansible_home: Path, tmp_path: Path, entry: str
) -> None:
    """The role's canary said ``verified: live config, canary pull`` on an engine that verified no TLS
    for the registry, a wrong storage CA in place."""
    host = lab.hosts[1]
    wrong = tmp_path / "old-storage-ca.pem"
    wrong.write_bytes(make_ca("old")[0])
    variables = json.dumps({"trustagent_canary_image": lab.image, "trustagent_storage_ca": [str(wrong)]})
    why = (
        f"insecure-registries range 198.51.100.0/24 covers {lab.registry}'s address"
        if entry.endswith("/24")
        else f"the running dockerd has {lab.registry} in insecure-registries: it does not verify its TLS"
    )
    assert entry.endswith("/24") or entry == lab.registry
    with insecure_entry(lab, host, entry):
        run = run_playbook(
            lab,
            [str(ansible_bin / "ansible-playbook")],
            ansible_home,
            lab.registry_yml,
            "--limit",
            host.name,
            "-e",
            variables,
        )
    said = run.stdout + run.stderr
    assert run.returncode == 0 and recap(run)[host.name]["failed"] == 0, said
    assert (
        f"[WARNING]: the CA files are unproved: the canary pull of {lab.image} went through without TLS "
        f"verification ({why}"
    ) in said, said
