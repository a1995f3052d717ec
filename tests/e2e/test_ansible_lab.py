"""The Ansible collection on the lab: real ansible-core runs the example playbook over real SSH.

ansible-playbook runs inside the lab's network namespace with the lab's ``inventory.ini`` (host-key
checking on, against the lab's known_hosts). The files the playbook leaves are compared, byte for
byte, with what ``trust-agent rollout`` leaves for the same source on another host.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.probes import (
    SITE_CHECK_SAYS,
    a_restart_dockerd_will_not_survive,
    ca_args,
    engine_state,
    insecure_range,
    runs_secure_for_the_registry,
    skip_source,
)
from tests.lab import Host, Lab
from tests.pki import make_ca

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
COMPAT = ROOT / "ansible-compat"
PLAYBOOK = COMPAT / "playbooks" / "trust.yml"
CONTROLLER_ENV = COMPAT / "scripts" / "controller-env.sh"
ANSIBLE_VENV = Path(os.environ.get("TRUST_AGENT_ANSIBLE_VENV", "/var/cache/trust-agent-test/ansible-venv"))
RESET = ROOT / "tests" / "lab" / "reset.sh"
RECAP = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)",
    re.M,
)
# Everything trust-agent may write on a host. Not content: the host lock, and dockerd's own identity
# (key.json, different on every host).
FILES = (
    "find /etc/docker /var/lib/trust-agent -type f ! -name lock ! -path /etc/docker/key.json 2>/dev/null"
    " | sort"
)


@pytest.fixture(scope="session")
def ansible_playbook(ansible_bin: Path) -> list[str]:
    return [str(ansible_bin / "ansible-playbook")]


@pytest.fixture
def ansible_home() -> Iterator[Path]:
    """The controller's HOME and config; short, since ssh's ControlPath socket lives under it."""
    home = Path(tempfile.mkdtemp(prefix="ta-ans-"))
    (home / "ansible.cfg").write_text(f"[defaults]\n\n[ssh_connection]\ncontrol_path_dir = {home}/cp\n")
    yield home
    shutil.rmtree(home, ignore_errors=True)


def run_playbook(
    lab: Lab, argv: list[str], home: Path, source: Path, *extra: str, inventory: Path | None = None
) -> subprocess.CompletedProcess[str]:
    variables = {
        "trustagent_source": str(source),
        "trustagent_storage_ca": [str(lab.storage_ca)],
        "trustagent_registry_ca": [str(lab.registry_ca)],
    }
    return run_play(lab, argv, home, PLAYBOOK, "-e", json.dumps(variables), *extra, inventory=inventory)


def run_play(
    lab: Lab,
    argv: list[str],
    home: Path,
    playbook: Path,
    *extra: str,
    inventory: Path | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook PLAYBOOK on the lab's inventory (or ``inventory``), from inside the lab's
    namespace, run in ``cwd`` (default: ``home``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        HOME=str(home),
        ANSIBLE_CONFIG=str(home / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(COMPAT / "collections"),
        ANSIBLE_HOST_KEY_CHECKING="True",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
    )
    return lab.run_in_ns(
        [*argv, "-i", str(inventory or lab.inventory_ini), str(playbook), *extra],
        env=env,
        cwd=str(cwd or home),
        timeout=600,
    )


def recap(proc: subprocess.CompletedProcess[str]) -> dict[str, dict[str, int]]:
    return {
        m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
        for m in RECAP.finditer(proc.stdout)
    }


def host_files(lab: Lab, host: Host) -> dict[str, tuple[str, str]]:
    """Path → (sha256, mode owner group) of every file under /etc/docker and /var/lib/trust-agent."""
    out = lab.ssh(
        host,
        f"{FILES} | while read -r f; do printf '%s %s\\n' \"$(stat -c '%a %U %G' \"$f\")\" "
        '"$(sha256sum "$f")"; done',
    ).stdout
    files: dict[str, tuple[str, str]] = {}
    for line in out.splitlines():
        mode, user, group, digest, path = line.split(maxsplit=4)
        files[path.strip()] = (digest, f"{mode} {user} {group}")
    return files


def etc_docker(lab: Lab, host: Host) -> tuple[dict[str, tuple[str, str]], str]:
    """Every file under /etc/docker (content, mode, owner) and every name (``ls -R``): a roll-back
    must leave both as they were."""
    files = {p: v for p, v in host_files(lab, host).items() if p.startswith("/etc/docker/")}
    return files, lab.ssh(host, "ls -R /etc/docker").stdout


def has_state(lab: Lab, host: Host) -> bool:
    return "/var/lib/trust-agent/docker-state.json" in host_files(lab, host)


def reset(lab: Lab, host: Host) -> None:
    lab.ssh(host, RESET.read_text(), timeout=120)


def test_playbook_converges_the_fleet_quietly_and_leaves_the_rollouts_files(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path
) -> None:
    names = [h.name for h in lab.hosts]
    assert len(names) == 3
    fresh = lab.hosts[0]
    before = host_files(lab, fresh)

    # --check --diff on a fresh host: trust-agent plan's diffs, and nothing changes.
    check = run_playbook(
        lab, ansible_playbook, ansible_home, lab.registry_yml, "--check", "--diff", "--limit", fresh.name
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert recap(check)[fresh.name]["changed"] == 1
    plan = lab.run_agent(
        "plan",
        "-i",
        str(lab.inventory_yml),
        "--limit",
        fresh.name,
        *ca_args(lab),
        "--format",
        "json",
    )
    assert plan.returncode == 0, plan.stderr
    diffs = [c["diff"] for c in json.loads(plan.stdout)["hosts"][0]["changes"]]
    assert len(diffs) == 4  # two CAs, for registry.test and registry.test:443
    for diff in diffs:
        assert diff in check.stdout
    assert host_files(lab, fresh) == before

    # First run: every host changes; certs.d needs no reload, so neither handler runs.
    engines = {h.name: engine_state(lab, h) for h in lab.hosts}
    first = run_playbook(lab, ansible_playbook, ansible_home, lab.registry_yml)
    assert first.returncode == 0, first.stdout + first.stderr
    assert {h: r["changed"] for h, r in recap(first).items()} == dict.fromkeys(names, 1)
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap(first).values())
    assert {h.name: engine_state(lab, h) for h in lab.hosts} == engines

    # A real pull works on every host (blobs through the redirect to S3, with its private CA).
    for host in lab.hosts:
        lab.ssh(host, f"docker pull {lab.image}", timeout=180)

    # Second run: nothing to do.
    second = run_playbook(lab, ansible_playbook, ansible_home, lab.registry_yml)
    assert second.returncode == 0, second.stdout + second.stderr
    assert {h: r["changed"] for h, r in recap(second).items()} == dict.fromkeys(names, 0)

    # The same source through `trust-agent rollout` on a reset host leaves the very same files.
    other = lab.hosts[2]
    reset(lab, other)
    assert host_files(lab, other) != host_files(lab, lab.hosts[1])
    rollout = lab.run_agent(
        "rollout",
        "-i",
        str(lab.inventory_yml),
        "--limit",
        other.name,
        *ca_args(lab),
    )
    assert rollout.returncode == 0, rollout.stdout + rollout.stderr
    by_playbook = host_files(lab, lab.hosts[1])
    assert any(path.startswith("/etc/docker/certs.d/") for path in by_playbook)
    assert "/var/lib/trust-agent/docker-state.json" in by_playbook
    assert host_files(lab, other) == by_playbook
    # …and the playbook agrees that host is converged.
    again = run_playbook(lab, ansible_playbook, ansible_home, lab.registry_yml, "--limit", other.name)
    assert recap(again)[other.name]["changed"] == 0, again.stdout


def test_skip_tls_storage_reloads_docker_once_through_the_handler(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path, tmp_path: Path
) -> None:
    source = skip_source(lab, tmp_path)
    host = lab.hosts[0]
    started, reloaded = engine_state(lab, host)

    first = run_playbook(lab, ansible_playbook, ansible_home, source, "--limit", host.name)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "RUNNING HANDLER [trustagent.docker.registry_trust : Reload docker]" in first.stdout
    # task + reload handler changed; the restart handler was skipped.
    assert recap(first)[host.name]["changed"] == 2, first.stdout
    assert engine_state(lab, host) == (started, reloaded + 1)  # reloaded, not restarted
    # The role read dockerd's live config back after the handler and found the registry insecure.
    verify = re.search(
        r"TASK \[trustagent\.docker\.registry_trust : Check dockerd's live registry config\] \*+\n(\w+):",
        first.stdout,
    )
    assert verify is not None and verify.group(1) == "ok", first.stdout
    daemon = json.loads(lab.ssh(host, "cat /etc/docker/daemon.json").stdout)
    assert lab.registry in daemon["insecure-registries"]
    info = lab.ssh(host, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout
    assert json.loads(info)[lab.registry]["Secure"] is False
    lab.ssh(host, f"docker pull {lab.image}", timeout=180)

    second = run_playbook(lab, ansible_playbook, ansible_home, source, "--limit", host.name)
    assert recap(second)[host.name]["changed"] == 0, second.stdout
    assert engine_state(lab, host) == (started, reloaded + 1)


VERIFY_TASK = re.compile(
    r"TASK \[trustagent\.docker\.registry_trust : Check dockerd's live registry config\] \*+\n(\w+):"
)


def test_restart_policy_never_is_left_unchecked_and_the_next_run_reloads_what_dockerd_missed(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path, tmp_path: Path
) -> None:
    source = skip_source(lab, tmp_path)
    host = lab.hosts[0]
    engine = engine_state(lab, host)

    # 'never': the files are written, dockerd is left alone, and its live config is not checked (nor the
    # change rolled back for not being live).
    never = run_playbook(
        lab,
        ansible_playbook,
        ansible_home,
        source,
        "--limit",
        host.name,
        "-e",
        "trustagent_restart_policy=never",
    )
    assert never.returncode == 0, never.stdout + never.stderr
    assert recap(never)[host.name]["changed"] == 1, never.stdout  # the task; no handler ran
    assert "restart policy 'never'" in never.stdout + never.stderr
    check = VERIFY_TASK.search(never.stdout)
    assert check is not None and check.group(1) == "skipping", never.stdout
    assert (
        lab.registry in json.loads(lab.ssh(host, "cat /etc/docker/daemon.json").stdout)["insecure-registries"]
    )
    assert engine_state(lab, host) == engine
    files = etc_docker(lab, host)

    # The next run finds a daemon.json dockerd has not loaded: no file to change, the handler reloads it,
    # and the check finds it live.
    auto = run_playbook(lab, ansible_playbook, ansible_home, source, "--limit", host.name)
    assert auto.returncode == 0, auto.stdout + auto.stderr
    assert "RUNNING HANDLER [trustagent.docker.registry_trust : Reload docker]" in auto.stdout
    assert recap(auto)[host.name]["changed"] == 2, auto.stdout
    check = VERIFY_TASK.search(auto.stdout)
    assert check is not None and check.group(1) == "ok", auto.stdout
    assert etc_docker(lab, host) == files
    assert engine_state(lab, host) == (engine[0], engine[1] + 1)
    info = lab.ssh(host, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout
    assert json.loads(info)[lab.registry]["Secure"] is False

    again = run_playbook(lab, ansible_playbook, ansible_home, source, "--limit", host.name)
    assert recap(again)[host.name]["changed"] == 0, again.stdout
    assert engine_state(lab, host) == (engine[0], engine[1] + 1)


def test_a_change_dockerd_does_not_take_is_rolled_back_by_the_role(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path, tmp_path: Path
) -> None:
    source = skip_source(lab, tmp_path)
    host = lab.hosts[0]
    # daemon.json edited by hand after dockerd started, with a value dockerd cannot decode (log-opts is a
    # map) and trust-agent's own checks do not cover: no reload can apply it (Docker 20.10 has no
    # --validate to catch it first), so the change is written but never taken.
    base = json.loads(lab.ssh(host, "cat /etc/docker/daemon.json").stdout)
    edited = json.dumps({**base, "log-opts": "max-size=10m"}, indent=2) + "\n"
    lab.ssh(host, "cat > /etc/docker/daemon.json", input=edited)
    try:
        before = etc_docker(lab, host)
        started, reloaded = engine_state(lab, host)

        started_at = time.monotonic()
        run = run_playbook(lab, ansible_playbook, ansible_home, source, "--limit", host.name)
        took = time.monotonic() - started_at
        assert run.returncode != 0 and recap(run)[host.name]["failed"] == 1, run.stdout
        # dockerd's own reason, read from its journal: no wait for a live config that would never come.
        assert (
            "dockerd did not take the change: dockerd refused the reload: unable to configure the Docker "
            "daemon with file /etc/docker/daemon.json: json: cannot unmarshal string" in run.stdout
        ), run.stdout
        assert "rolled back: the previous files are in place; dockerd reloaded" in run.stdout, run.stdout
        assert took < 20, f"took {took:.1f}s"
        # Every file under /etc/docker as it was, no directory left behind, no state recorded.
        assert etc_docker(lab, host) == before
        assert lab.ssh(host, "cat /etc/docker/daemon.json").stdout == edited
        assert not has_state(lab, host)
        # dockerd was reloaded twice (the change, then the files put back) and never restarted.
        assert engine_state(lab, host) == (started, reloaded + 2)
    finally:
        reset(lab, host)


def test_a_restart_dockerd_does_not_survive_is_rolled_back_by_the_role(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path, tmp_path: Path
) -> None:
    source = skip_source(lab, tmp_path)
    host = lab.hosts[0]
    with a_restart_dockerd_will_not_survive(lab, host):
        before = etc_docker(lab, host)
        started, _ = engine_state(lab, host)

        forced = json.dumps({"trustagent_restart_policy": "restart"})
        run = run_playbook(lab, ansible_playbook, ansible_home, source, "--limit", host.name, "-e", forced)
        assert run.returncode != 0 and recap(run)[host.name]["failed"] == 1, run.stdout
        # The handler's restart fails; the check, not the handler, fails the host, after the roll-back.
        assert "RUNNING HANDLER [trustagent.docker.registry_trust : Restart docker]" in run.stdout
        assert "...ignoring" in run.stdout, run.stdout
        assert "dockerd did not take the change: Unable to restart service docker" in run.stdout, run.stdout
        # Why, as docker.service logged it (systemctl's message only points at the journal), without -v.
        said = f"; docker.service said: {SITE_CHECK_SAYS}; rolled back: the previous files are in place"
        assert said + "; dockerd restarted" in run.stdout, run.stdout
        assert etc_docker(lab, host) == before and not has_state(lab, host)
        # dockerd runs again, restarted on the previous files.
        assert lab.ssh(host, "systemctl is-active docker", check=False).stdout.strip() == "active"
        assert engine_state(lab, host)[0] != started
        assert runs_secure_for_the_registry(lab, host)

        # Without the check (and so the roll-back), the failed restart fails the host with the same reason.
        unchecked = json.dumps({"trustagent_restart_policy": "restart", "trustagent_verify": False})
        run = run_playbook(lab, ansible_playbook, ansible_home, source, "--limit", host.name, "-e", unchecked)
        assert run.returncode != 0 and recap(run)[host.name]["failed"] == 1, run.stdout
        assert f"; docker.service said: {SITE_CHECK_SAYS}" in run.stdout, run.stdout
        assert "rolled back" not in run.stdout, run.stdout
        assert lab.ssh(host, "systemctl is-active docker", check=False).stdout.strip() != "active"


@pytest.mark.parametrize(
    "stop",
    # The second leaves docker.socket listening: reading the engine on the host would start dockerd.
    ["systemctl stop docker.socket docker.service", "systemctl stop docker"],
    ids=["socket-stopped", "socket-listening"],
)
def test_a_stopped_engine_gets_its_files_and_nothing_to_check(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path, tmp_path: Path, stop: str
) -> None:
    """The check was skipped without a word, where `trust-agent rollout` warns of the stopped dockerd."""
    source = skip_source(lab, tmp_path)
    host = lab.hosts[1]
    lab.ssh(host, stop)
    try:
        run = run_playbook(lab, ansible_playbook, ansible_home, source, "--limit", host.name)
        assert run.returncode == 0 and recap(run)[host.name]["changed"] == 1, run.stdout
        check = VERIFY_TASK.search(run.stdout)
        assert check is not None and check.group(1) == "ok", run.stdout
        assert (
            "[WARNING]: dockerd is not running (docker.service inactive): its live config was not read; "
            "the files take effect when it starts" in run.stdout + run.stderr
        ), run.stdout + run.stderr
        assert "insecure-registries" in lab.ssh(host, "cat /etc/docker/daemon.json").stdout
        assert lab.ssh(host, "systemctl is-active docker", check=False).stdout.strip() == "inactive"
    finally:
        lab.ssh(host, "systemctl reset-failed docker.service; systemctl start docker.socket docker.service")
        reset(lab, host)


def test_a_canary_pull_proves_a_host_and_a_failing_one_rolls_it_back(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path, tmp_path: Path
) -> None:
    host = lab.hosts[1]
    reset(lab, host)
    lab.ssh(host, f"docker rmi -f {lab.image} >/dev/null 2>&1 || true")
    before = etc_docker(lab, host)

    def play(image: str) -> subprocess.CompletedProcess[str]:
        canary = json.dumps({"trustagent_canary_image": image})
        return run_playbook(
            lab, ansible_playbook, ansible_home, lab.registry_yml, "--limit", host.name, "-e", canary
        )

    # An image the registry does not hold: the pull fails, so the host is rolled back and fails.
    missing = f"{lab.registry}/test/absent:1"
    failed = play(missing)
    assert failed.returncode != 0 and recap(failed)[host.name]["failed"] == 1, failed.stdout
    # Docker's own reason, not the ssh session's "Shared connection to … closed.".
    reason = re.search(rf"canary pull of {re.escape(missing)} failed: ([^;]*);", failed.stdout)
    assert reason is not None, failed.stdout
    assert "manifest unknown" in reason.group(1) or "not found" in reason.group(1), reason.group(1)
    assert "Shared connection" not in failed.stdout, failed.stdout
    assert "rolled back: the previous files are in place" in failed.stdout, failed.stdout
    assert etc_docker(lab, host) == before and not has_state(lab, host)

    # The real image: the pull through the registry and its S3 storage, with their private CAs, proves it.
    proved = play(lab.image)
    assert proved.returncode == 0 and recap(proved)[host.name]["failed"] == 0, proved.stdout
    assert lab.ssh(host, f"docker image inspect {lab.image} >/dev/null 2>&1", check=False).returncode == 0
    assert any(p.startswith("/etc/docker/certs.d/") for p in host_files(lab, host))

    # The canary is on the host now, which a pull alone would take for proof of any storage CA: it is
    # fetched again, so a wrong one fails and is rolled back.
    converged = etc_docker(lab, host)
    refused = canary_with_a_wrong_storage_ca(lab, ansible_playbook, ansible_home, tmp_path, host)
    assert "rolled back: the previous files are in place" in refused.stdout, refused.stdout
    assert etc_docker(lab, host) == converged


def canary_with_a_wrong_storage_ca(
    lab: Lab, argv: list[str], home: Path, tmp_path: Path, host: Host
) -> subprocess.CompletedProcess[str]:
    """The playbook with the lab's image as canary and a storage CA that is not the storage's: the
    pull fails with x509 and fails the host."""
    wrong = tmp_path / "wrong-storage-ca.pem"
    wrong.write_bytes(make_ca("Not the storage CA")[0])
    wrong_ca = json.dumps({"trustagent_canary_image": lab.image, "trustagent_storage_ca": [str(wrong)]})
    refused = run_playbook(lab, argv, home, lab.registry_yml, "--limit", host.name, "-e", wrong_ca)
    assert refused.returncode != 0 and recap(refused)[host.name]["failed"] == 1, refused.stdout
    assert "x509" in refused.stdout, refused.stdout
    return refused


def converged_holding_the_image(lab: Lab, argv: list[str], home: Path, host: Host) -> None:
    """``host`` converged by the playbook, then holding the lab's image under its own tag alone (pulled
    through the registry and its storage)."""
    converged = run_playbook(lab, argv, home, lab.registry_yml, "--limit", host.name)
    assert converged.returncode == 0, converged.stdout
    lab.ssh(
        host, f"docker rmi -f {lab.image} >/dev/null 2>&1; docker pull {lab.image} >/dev/null", timeout=180
    )


def test_a_canary_held_under_another_name_is_said_unproved_not_taken_for_proof(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path, tmp_path: Path
) -> None:
    """The pull of an image the host holds under another name fetches no blob, so it passed with a wrong
    storage CA and was reported as proof; it is said unproved, and warned of."""
    host = lab.hosts[1]
    reset(lab, host)
    converged_holding_the_image(lab, ansible_playbook, ansible_home, host)  # the canary's is another name
    other_name = lab.image.replace(lab.registry, f"{lab.registry}:443", 1)
    wrong = tmp_path / "wrong-storage-ca.pem"
    wrong.write_bytes(make_ca("Not the storage CA")[0])
    variables = json.dumps({"trustagent_canary_image": other_name, "trustagent_storage_ca": [str(wrong)]})
    try:
        played = run_playbook(
            lab, ansible_playbook, ansible_home, lab.registry_yml, "--limit", host.name, "-e", variables
        )
        assert played.returncode == 0 and recap(played)[host.name]["failed"] == 0, played.stdout
        said = " ".join((played.stdout + played.stderr).split())
        assert f"the storage redirect is unproved: the canary pull of {other_name} fetched no blob" in said, (
            said
        )
        # What the canary could not show: the host's own pull fails with the wrong CA.
        pulled = lab.ssh(
            host, f"docker rmi -f {other_name} {lab.image} >/dev/null; docker pull {lab.image}", check=False
        )
        assert pulled.returncode != 0 and "x509" in pulled.stdout + pulled.stderr, pulled
    finally:
        reset(lab, host)


def test_a_canary_a_container_uses_is_said_not_removable_as_the_cli_says_it(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path
) -> None:
    """The removal refused (a container uses the image) was said "held by an image built on it"."""
    host = lab.hosts[1]
    reset(lab, host)
    converged_holding_the_image(lab, ansible_playbook, ansible_home, host)
    container = lab.ssh(host, f"docker create {lab.image} true").stdout.strip()
    try:
        canary = json.dumps({"trustagent_canary_image": lab.image})
        played = run_playbook(
            lab, ansible_playbook, ansible_home, lab.registry_yml, "--limit", host.name, "-e", canary
        )
        assert played.returncode == 0 and recap(played)[host.name]["failed"] == 0, played.stdout
        said = " ".join((played.stdout + played.stderr).split())
        assert "the image is on the host already, not removable: " in said, said
        assert "held by an image built on it" not in said, said
    finally:
        lab.ssh(host, f"docker rm {container}")
        reset(lab, host)


def test_the_role_passes_the_sources_warnings_on_and_names_its_own_variables(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path
) -> None:
    host = lab.hosts[0]
    before = host_files(lab, host)

    # No storage CA for a storage on https: the CLI's warning, as Ansible's, naming the role variable.
    no_ca = json.dumps({"trustagent_storage_ca": []})
    check = run_playbook(
        lab, ansible_playbook, ansible_home, lab.registry_yml, "--check", "--limit", host.name, "-e", no_ca
    )
    assert check.returncode == 0, check.stdout + check.stderr
    said = check.stdout + check.stderr
    assert (
        f"[WARNING]: engines are redirected to https://{lab.s3_authority}; if its certificate is from a "
        "private CA, give it with trustagent_storage_ca (or in the source)" in said
    ), said
    assert "--storage-ca" not in said, said

    # Bad input fails the host in the same terms, and touches nothing.
    bad = json.dumps({"trustagent_registries": ["../../etc"]})
    refused = run_playbook(
        lab, ansible_playbook, ansible_home, lab.registry_yml, "--limit", host.name, "-e", bad
    )
    assert refused.returncode != 0 and recap(refused)[host.name]["failed"] == 1, refused.stdout
    assert "bad input, nothing touched: trustagent_registries: registry '../../etc': not a host[:port]" in (
        refused.stdout
    ), refused.stdout
    assert host_files(lab, host) == before


def readme_play() -> str:
    """The README's "module alone, in your own play" example, as printed."""
    readme = (COMPAT / "README.md").read_text()
    found = re.search(r"The module alone, in your own play.*?```yaml\n(.*?)\n *```", readme, re.S)
    assert found is not None, "the README lost its module-alone example"
    return textwrap.dedent(found.group(1)) + "\n"


def test_the_readmes_module_alone_play_works_as_written(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path, tmp_path: Path
) -> None:
    host = lab.hosts[2]
    # Its files, where the play says (relative to it): a storage that skips TLS, so dockerd must reload.
    project = tmp_path / "project"
    (project / "files" / "registry").mkdir(parents=True)
    shutil.copy(skip_source(lab, tmp_path), project / "files" / "registry" / "config.yml")
    shutil.copy(lab.storage_ca, project / "files" / "s3-ca.pem")
    play = project / "play.yml"
    play.write_text(readme_play())
    started, reloaded = engine_state(lab, host)
    try:
        first = run_play(lab, ansible_playbook, ansible_home, play, "--limit", host.name)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "RUNNING HANDLER [Reload docker]" in first.stdout, first.stdout
        assert recap(first)[host.name]["changed"] == 2, first.stdout  # the module and the reload
        checked = re.search(r"TASK \[Check dockerd's live registry config[^\]]*\] \*+\n(\w+):", first.stdout)
        assert checked is not None and checked.group(1) == "ok", first.stdout
        # The storage CA it gives is not needed where TLS is skipped: said, as the CLI says it.
        assert "[WARNING]: storage CA given but skip-TLS is set" in first.stdout + first.stderr
        assert engine_state(lab, host) == (started, reloaded + 1)
        info = lab.ssh(host, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout
        assert json.loads(info)[lab.registry]["Secure"] is False

        again = run_play(lab, ansible_playbook, ansible_home, play, "--limit", host.name)
        assert again.returncode == 0 and recap(again)[host.name]["changed"] == 0, again.stdout
        assert engine_state(lab, host) == (started, reloaded + 1)
    finally:
        reset(lab, host)


def test_a_failed_canary_pull_gets_the_image_it_removed_pulled_back_after_the_roll_back(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path, tmp_path: Path
) -> None:
    host = lab.hosts[1]
    reset(lab, host)
    try:
        # The host holds the canary under its own tag alone: the check removes it for its pull.
        converged_holding_the_image(lab, ansible_playbook, ansible_home, host)
        image_id = lab.ssh(host, f"docker image inspect --format '{{{{.Id}}}}' {lab.image}").stdout.strip()
        files = etc_docker(lab, host)

        refused = canary_with_a_wrong_storage_ca(lab, ansible_playbook, ansible_home, tmp_path, host)
        assert (
            "rolled back: the previous files are in place; the canary image pulled back" in refused.stdout
        ), refused.stdout
        assert etc_docker(lab, host) == files
        # The host holds the image it held before, fetched again through the previous (working) trust.
        again = lab.ssh(host, f"docker image inspect --format '{{{{.Id}}}}' {lab.image}", check=False)
        assert again.returncode == 0 and again.stdout.strip() == image_id, again.stdout + again.stderr
    finally:
        reset(lab, host)


def _login_as_deploy(lab: Lab, host: Host, path: Path) -> Path:
    """An inventory that logs in to ``host`` as the lab's ``deploy`` user (sudo without a password)."""
    path.write_text(
        f"{host.name} ansible_host={host.address} ansible_user=deploy ansible_ssh_private_key_file={lab.key}\n"
        f"\n[all:vars]\nansible_ssh_common_args='-o UserKnownHostsFile={lab.known_hosts}'\n"
    )
    return path


def test_a_login_that_is_not_root_is_refused_before_anything_is_written(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path, tmp_path: Path
) -> None:
    host = lab.hosts[0]
    reset(lab, host)
    inventory = _login_as_deploy(lab, host, tmp_path / "deploy.ini")
    uid = lab.ssh(host, "id -u deploy").stdout.strip()
    not_root = (
        f"runs as uid {uid}, not root: /etc/docker and the engine's socket are root's "
        "(log in as root, or set become: true for sudo)"
    )
    no_become = ("-e", json.dumps({"ansible_become": False}))
    before = host_files(lab, host)
    try:
        # --check: the plan, said to be partial (deploy cannot read dockerd's socket).
        check = run_playbook(
            lab, ansible_playbook, ansible_home, lab.registry_yml, "--check", *no_become, inventory=inventory
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert (
            f"[WARNING]: this host {not_root}: what it showed may be partial" in check.stdout + check.stderr
        )

        # A real run: refused before any write, and not reported as a change.
        run = run_playbook(
            lab, ansible_playbook, ansible_home, lab.registry_yml, *no_become, inventory=inventory
        )
        assert run.returncode != 0, run.stdout
        assert recap(run)[host.name] | {"ok": 0} == {"ok": 0, "changed": 0, "unreachable": 0, "failed": 1}, (
            run.stdout
        )
        assert f"{not_root}; nothing touched" in run.stdout, run.stdout
        assert "Permission denied" not in run.stdout, run.stdout
        assert host_files(lab, host) == before

        # The same login with become (the example playbook's own choice for a non-root user) works.
        become = run_playbook(lab, ansible_playbook, ansible_home, lab.registry_yml, inventory=inventory)
        assert become.returncode == 0 and recap(become)[host.name]["changed"] == 1, become.stdout
    finally:
        reset(lab, host)


def test_null_for_an_optional_string_variable_means_not_given(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path
) -> None:
    host = lab.hosts[2]
    reset(lab, host)
    try:
        nulls = json.dumps({"trustagent_canary_image": None, "trustagent_source_ca": None})
        run = run_playbook(
            lab, ansible_playbook, ansible_home, lab.registry_yml, "--limit", host.name, "-e", nulls
        )
        assert run.returncode == 0 and recap(run)[host.name]["changed"] == 1, run.stdout + run.stderr
        # The check ran (no canary: none was given).
        check = VERIFY_TASK.search(run.stdout)
        assert check is not None and check.group(1) == "ok", run.stdout
        assert "canary" not in run.stdout, run.stdout

        # A required one given as null is the role's own refusal, not a template error.
        missing = run_playbook(
            lab, ansible_playbook, ansible_home, lab.registry_yml, "--limit", host.name,
            "-e", json.dumps({"trustagent_source": None}),
        )  # fmt: skip
        assert missing.returncode != 0, missing.stdout
        assert "trustagent_source is required" in missing.stdout, missing.stdout
    finally:
        reset(lab, host)


def test_an_empty_or_missing_ca_path_is_refused_in_the_playbooks_terms(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path, tmp_path: Path
) -> None:
    host = lab.hosts[2]
    before = host_files(lab, host)

    # `-e trustagent_storage_ca=` is the list [''], which named the playbook's directory.
    empty = run_playbook(
        lab,
        ansible_playbook,
        ansible_home,
        lab.registry_yml,
        "--limit",
        host.name,
        "-e",
        "trustagent_storage_ca=",
    )
    assert empty.returncode != 0 and recap(empty)[host.name]["failed"] == 1, empty.stdout
    assert (
        "bad input, nothing touched: trustagent_storage_ca: an empty path names no file (to give none, leave it "
        "out)" in empty.stdout
    ), empty.stdout
    assert "Is a directory" not in empty.stdout, empty.stdout

    # A relative path is looked for where ansible-playbook runs, then beside the play: the error says where.
    relative = json.dumps({"trustagent_registry_ca": ["files/registry-ca.pem"]})
    missing = run_playbook(
        lab, ansible_playbook, ansible_home, lab.registry_yml, "--limit", host.name, "-e", relative
    )
    assert missing.returncode != 0 and recap(missing)[host.name]["failed"] == 1, missing.stdout
    said = re.search(
        r"bad input, nothing touched: trustagent_registry_ca files/registry-ca\.pem: no such file: looked for "
        r"(\S+) \(where ansible-playbook runs\), then as Ansible looks for a play's files: ([^\"\n]+)",
        missing.stdout,
    )
    assert said is not None, missing.stdout
    assert said.group(1) == f"{ansible_home}/files/registry-ca.pem"
    assert f"{PLAYBOOK.parent}/files/registry-ca.pem" in said.group(2).split(", "), said.group(2)
    assert host_files(lab, host) == before


def test_relative_paths_given_with_e_are_read_where_ansible_playbook_runs(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path, tmp_path: Path
) -> None:
    """The README's "Run it": the shipped playbook from the directory that holds the files, their paths
    relative; a name that is also a different file beside the play is refused, not guessed."""
    host = lab.hosts[2]
    reset(lab, host)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(lab.registry_yml, work / "config.yml")
    shutil.copy(lab.storage_ca, work / "s3-ca.pem")
    shutil.copy(lab.registry_ca, work / "registry-ca.pem")
    cas = {"trustagent_storage_ca": ["s3-ca.pem"], "trustagent_registry_ca": ["registry-ca.pem"]}
    relative = ("-e", "trustagent_source=config.yml", "-e", json.dumps(cas))
    try:
        run = run_play(
            lab, ansible_playbook, ansible_home, PLAYBOOK, *relative, "--limit", host.name, cwd=work
        )
        assert run.returncode == 0 and recap(run)[host.name]["changed"] == 1, run.stdout + run.stderr
        installed = {
            path: lab.ssh(host, f"cat {path}").stdout
            for path in host_files(lab, host)
            if path.startswith(f"/etc/docker/certs.d/{lab.registry}/")
        }
        assert sorted(installed.values()) == sorted([lab.registry_ca.read_text(), lab.storage_ca.read_text()])

        # The same name beside a play, and another file: which one was meant is not guessed.
        play = tmp_path / "play" / "trust.yml"
        play.parent.mkdir()
        shutil.copy(PLAYBOOK, play)
        (play.parent / "s3-ca.pem").write_bytes(make_ca("Another CA")[0])
        before = host_files(lab, host)
        both = run_play(lab, ansible_playbook, ansible_home, play, *relative, "--limit", host.name, cwd=work)
        assert both.returncode != 0 and recap(both)[host.name]["failed"] == 1, both.stdout
        assert (
            f"bad input, nothing touched: trustagent_storage_ca s3-ca.pem names two files, {work}/s3-ca.pem "
            f"(where ansible-playbook runs) and {play.parent}/s3-ca.pem (beside the play): give an absolute path"
            in both.stdout
        ), both.stdout
        assert host_files(lab, host) == before
    finally:
        reset(lab, host)


def test_a_misspelt_role_variable_fails_the_host_naming_the_closest_one(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path
) -> None:
    host = lab.hosts[0]
    before = host_files(lab, host)
    # Ignored by Ansible, it would leave the registries to the source's http.host.
    typo = json.dumps({"trustagent_registy": [lab.registry], "trustagent_no_such_thing": True})
    run = run_playbook(
        lab, ansible_playbook, ansible_home, lab.registry_yml, "--limit", host.name, "-e", typo
    )
    assert run.returncode != 0, run.stdout
    assert recap(run)[host.name] == {"ok": 1, "changed": 0, "unreachable": 0, "failed": 1}, run.stdout
    assert "TASK [trustagent.docker.registry_trust : Check the role's variable names]" in run.stdout
    assert (
        "not variables of the role trustagent.docker.registry_trust, which would ignore them (a misspelt one "
        "leaves the default it meant to change): trustagent_no_such_thing, trustagent_registy (did you mean "
        "trustagent_registries?); correct or remove them" in run.stdout
    ), run.stdout
    assert "Bring Docker's registry trust to the policy" not in run.stdout, run.stdout
    assert host_files(lab, host) == before


def test_a_masked_docker_service_refuses_a_change_that_needs_a_reload_before_anything_is_written(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path, tmp_path: Path
) -> None:
    source = skip_source(lab, tmp_path)  # the registry goes into insecure-registries: a reload is needed
    host = lab.hosts[0]
    reset(lab, host)
    masked = (
        "docker.service is masked: systemctl cannot reload or restart it (the plan needs a reload): "
        "systemctl unmask docker.service, then run again (nothing written)"
    )
    lab.ssh(host, "systemctl mask docker.service")
    try:
        before = host_files(lab, host)
        engine = engine_state(lab, host)

        # --check shows the refusal, as `trust-agent plan` does.
        check = run_playbook(
            lab, ansible_playbook, ansible_home, source, "--check", "--diff", "--limit", host.name
        )
        assert check.returncode != 0 and recap(check)[host.name]["failed"] == 1, check.stdout
        assert masked in check.stdout, check.stdout
        # Refused: no diff of a change that will not happen (it showed daemon.json's).
        assert "@@ " not in check.stdout and '"files": [' not in check.stdout.replace('"files": []', ""), (
            check.stdout
        )

        # A real run: refused before any write (no write, no roll-back of one), dockerd untouched.
        run = run_playbook(lab, ansible_playbook, ansible_home, source, "--limit", host.name)
        assert run.returncode != 0, run.stdout
        assert recap(run)[host.name] | {"ok": 0} == {"ok": 0, "changed": 0, "unreachable": 0, "failed": 1}, (
            run.stdout
        )
        assert masked in run.stdout, run.stdout
        assert "rolled back" not in run.stdout and "RUNNING HANDLER" not in run.stdout, run.stdout
        assert host_files(lab, host) == before
        assert engine_state(lab, host) == engine
    finally:
        lab.ssh(host, "systemctl unmask docker.service")
        reset(lab, host)


# The registry made insecure by daemon.json, dockerd started on it, then the key removed by hand and
# dockerd reloaded: it keeps the list (fact 11), and the host has no agent record.
KEPT_INSECURE_LIST = """
rm -rf /etc/docker/certs.d/* /var/lib/trust-agent
printf '{\\n "iptables": false,\\n "bridge": "none",\\n "storage-driver": "vfs",\\n "insecure-registries": ["%s"]\\n}\\n' \
    > /etc/docker/daemon.json
systemctl restart docker; sleep 1
cp /usr/local/share/trust-agent-lab/daemon.json /etc/docker/daemon.json; systemctl reload docker; sleep 2
"""


def test_a_list_dockerd_kept_after_its_key_went_is_cleared_in_one_run(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path
) -> None:
    host = lab.hosts[1]
    reset(lab, host)
    lab.ssh(host, KEPT_INSECURE_LIST % lab.registry, timeout=120)
    try:
        assert not runs_secure_for_the_registry(lab, host)
        assert not has_state(lab, host)
        started, reloaded = engine_state(lab, host)

        began = time.monotonic()
        first = run_playbook(lab, ansible_playbook, ansible_home, lab.registry_yml, "--limit", host.name)
        took = time.monotonic() - began
        assert first.returncode == 0 and recap(first)[host.name]["failed"] == 0, first.stdout + first.stderr
        # The CA files and "insecure-registries": [] in one task, the reload, and a check that found it
        # live at once (not a 20 s wait and a roll-back).
        assert "RUNNING HANDLER [trustagent.docker.registry_trust : Reload docker]" in first.stdout
        assert recap(first)[host.name]["changed"] == 2, first.stdout
        check = VERIFY_TASK.search(first.stdout)
        assert check is not None and check.group(1) == "ok", first.stdout
        assert "rolled back" not in first.stdout, first.stdout
        assert took < 60, f"took {took:.1f}s"
        daemon = json.loads(lab.ssh(host, "cat /etc/docker/daemon.json").stdout)
        assert daemon["insecure-registries"] == []
        assert any(path.startswith("/etc/docker/certs.d/") for path in host_files(lab, host))
        assert runs_secure_for_the_registry(lab, host)
        assert engine_state(lab, host) == (started, reloaded + 1)

        again = run_playbook(lab, ansible_playbook, ansible_home, lab.registry_yml, "--limit", host.name)
        assert again.returncode == 0 and recap(again)[host.name]["changed"] == 0, again.stdout
        assert engine_state(lab, host) == (started, reloaded + 1)
    finally:
        lab.ssh(host, "systemctl restart docker", timeout=120)
        reset(lab, host)


def test_what_a_killed_run_left_is_named_and_removed_by_the_role(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path
) -> None:
    """Files a run stopped part way left (a staged daemon.json, a set-aside CA file) lay there unnamed
    under the role, which the CLI's rollout names and removes."""
    host = lab.hosts[2]
    reset(lab, host)
    left = ["/etc/docker/.trust-agent.4243.t1", f"/etc/docker/certs.d/{lab.registry}/.trust-agent.4242.a0"]
    find = "find /etc/docker /var/lib/trust-agent -name '.trust-agent.[0-9]*' 2>/dev/null | sort"
    try:
        first = run_playbook(lab, ansible_playbook, ansible_home, lab.registry_yml, "--limit", host.name)
        assert first.returncode == 0, first.stdout + first.stderr
        lab.ssh(
            host,
            f"mkdir -p /etc/docker/certs.d/{lab.registry} && head -c 7 /etc/docker/daemon.json > {left[0]} "
            f"&& echo old > {left[1]}",
        )
        check = run_playbook(
            lab, ansible_playbook, ansible_home, lab.registry_yml, "--check", "--limit", host.name
        )
        assert f"{left[0]}, {left[1]}; the next apply removes them" in check.stderr, check.stdout
        assert lab.ssh(host, find).stdout.split() == left

        run = run_playbook(lab, ansible_playbook, ansible_home, lab.registry_yml, "--limit", host.name)
        assert run.returncode == 0 and recap(run)[host.name]["changed"] == 0, run.stdout
        assert "this apply removed them under the host's lock" in run.stderr, run.stdout
        assert lab.ssh(host, find).stdout.split() == []
    finally:
        reset(lab, host)


def test_an_insecure_range_covering_the_registrys_address_is_warned_of_and_fails_a_strict_check(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path, tmp_path: Path
) -> None:
    """dockerd skips TLS for the registry (a user's range in daemon.json covers its address): the
    role said "verified: live config" with no warning, where `trust-agent rollout` warns and
    `trust-agent verify` fails the host."""
    host = lab.hosts[1]
    address = lab.state["registry"]["address"]
    covered = (
        f"insecure-registries range 198.51.100.0/24 covers {lab.registry}'s address {address} as the "
        f"host resolves it: dockerd does not verify {lab.registry}'s TLS"
    )
    strict = tmp_path / "strict.yml"
    strict.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Check as trust-agent verify does\n"
        "      trustagent.docker.registry_trust_verify:\n"
        f"        registries: [{lab.registry}]\n"
        "        fail_unverified_tls: true\n"
    )
    with insecure_range(lab, host, "198.51.100.0/24"):
        run = run_playbook(lab, ansible_playbook, ansible_home, lab.registry_yml, "--limit", host.name)
        assert run.returncode == 0 and recap(run)[host.name]["changed"] == 1, run.stdout + run.stderr
        check = VERIFY_TASK.search(run.stdout)
        assert check is not None and check.group(1) == "ok", run.stdout
        assert f"[WARNING]: {covered}" in run.stdout + run.stderr, run.stdout + run.stderr
        assert "rolled back" not in run.stdout, run.stdout

        before = host_files(lab, host)
        failed = run_play(lab, ansible_playbook, ansible_home, strict, "--limit", host.name)
        assert failed.returncode != 0 and recap(failed)[host.name]["failed"] == 1, failed.stdout
        assert f"does not comply with the policy: {covered}" in failed.stdout, failed.stdout
        assert host_files(lab, host) == before
    # Without the range, the strict check passes.
    passed = run_play(lab, ansible_playbook, ansible_home, strict, "--limit", host.name)
    assert passed.returncode == 0 and recap(passed)[host.name]["failed"] == 0, passed.stdout


def test_a_failed_write_gives_the_hosts_own_reason_and_no_file_as_changed(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path
) -> None:
    """The module kept only the apply script's last line ("cannot create …", not the OS's "Read-only
    file system" the CLI gives) and returned the four planned creates as the files changed."""
    host = lab.hosts[1]
    lab.ssh(host, "mount -o bind,ro /etc/docker /etc/docker")
    try:
        before = host_files(lab, host)
        run = run_playbook(lab, ansible_playbook, ansible_home, lab.registry_yml, "--limit", host.name)
        assert run.returncode != 0 and recap(run)[host.name]["failed"] == 1, run.stdout
        assert "apply failed (nothing was written): mkdir: cannot create directory" in run.stdout, run.stdout
        assert "Read-only file system; cannot create /etc/docker/certs.d" in run.stdout, run.stdout
        assert '"files": []' in run.stdout and '"create"' not in run.stdout, run.stdout
        assert host_files(lab, host) == before
    finally:
        lab.ssh(host, "umount /etc/docker")


def test_become_to_a_user_that_is_not_root_is_refused_naming_become_user(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path
) -> None:
    """become: true was already set: the advice to set it named the wrong setting."""
    host = lab.hosts[0]
    uid = lab.ssh(host, "id -u deploy").stdout.strip()
    before = host_files(lab, host)
    as_deploy = json.dumps({"ansible_become": True, "ansible_become_user": "deploy"})
    run = run_playbook(
        lab, ansible_playbook, ansible_home, lab.registry_yml, "--limit", host.name, "-e", as_deploy
    )
    assert run.returncode != 0 and recap(run)[host.name]["failed"] == 1, run.stdout
    assert (
        f"runs as uid {uid}, not root: /etc/docker and the engine's socket are root's (become: true runs "
        "the task as become_user deploy: set become_user: root, or leave it unset); nothing touched"
    ) in run.stdout, run.stdout
    assert "set become: true for sudo" not in run.stdout, run.stdout
    assert host_files(lab, host) == before


def test_a_private_key_in_a_ca_file_is_replaced_and_never_shown(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path
) -> None:
    """The plan shows the file with its key withheld; the apply compared the host's file with that and
    failed every run ("changed since facts were gathered")."""
    host = lab.hosts[1]
    reset(lab, host)
    try:
        first = run_playbook(lab, ansible_playbook, ansible_home, lab.registry_yml, "--limit", host.name)
        assert first.returncode == 0, first.stdout
        ca_file = f"/etc/docker/certs.d/{lab.registry}/trust-agent-registry-ca.crt"
        key = (lab.dir / "pki/storage-ca.key").read_text()
        lab.ssh(host, f"cat >> {ca_file}", input=key)
        run = run_playbook(
            lab, ansible_playbook, ansible_home, lab.registry_yml, "--limit", host.name, "--diff", "-v"
        )
        assert run.returncode == 0 and recap(run)[host.name]["changed"] >= 1, run.stdout
        said = run.stdout + run.stderr
        assert "PRIVATE KEY" not in said and key.splitlines()[1] not in said, said
        assert f"[WARNING]: {ca_file} holds a private key: it is replaced by this run" in said, said
        assert lab.ssh(host, f"cat {ca_file}").stdout == lab.registry_ca.read_text()
    finally:
        reset(lab, host)


PUPPET_TRAILER = "\n# managed by puppet\n"


def test_a_skip_tls_change_dockerd_20_10_took_is_kept_with_text_after_daemon_jsons_document(
    lab: Lab, ansible_playbook: list[str], ansible_home: Path, tmp_path: Path
) -> None:
    """Docker 20.10 reads daemon.json's first JSON document and ignores what follows it. The check read
    the file strictly, waited 20 s for no insecure registry and rolled back the change dockerd took."""
    host = lab.hosts[1]
    ca = run_playbook(lab, ansible_playbook, ansible_home, lab.registry_yml, "--limit", host.name)
    assert ca.returncode == 0, ca.stdout + ca.stderr
    lab.ssh(host, f"printf {shlex.quote(PUPPET_TRAILER)} >> /etc/docker/daemon.json")
    started, reloaded = engine_state(lab, host)
    source = skip_source(lab, tmp_path)

    began = time.monotonic()
    skip = run_playbook(lab, ansible_playbook, ansible_home, source, "--limit", host.name)
    took = time.monotonic() - began
    assert skip.returncode == 0 and recap(skip)[host.name]["failed"] == 0, skip.stdout + skip.stderr
    check = VERIFY_TASK.search(skip.stdout)
    assert check is not None and check.group(1) == "ok", skip.stdout
    assert "rolled back" not in skip.stdout, skip.stdout
    assert took < 60, f"took {took:.1f}s"
    assert engine_state(lab, host) == (started, reloaded + 1)
    daemon = lab.ssh(host, "cat /etc/docker/daemon.json").stdout
    assert daemon.endswith(PUPPET_TRAILER), daemon
    listed = json.JSONDecoder().raw_decode(daemon)[0]["insecure-registries"]
    assert lab.registry in listed
    assert not runs_secure_for_the_registry(lab, host)

    # `trust-agent plan` with the role's inputs finds the host converged, and so does the role.
    plan = lab.run_agent(
        "plan",
        "-i",
        str(lab.inventory_yml),
        "--limit",
        host.name,
        "--source",
        str(source),
        "--storage-ca",
        str(lab.storage_ca),
        "--registry-ca",
        str(lab.registry_ca),
        "--format",
        "json",
    )
    assert json.loads(plan.stdout)["hosts"][0]["status"] == "unchanged", plan.stdout + plan.stderr
    again = run_playbook(lab, ansible_playbook, ansible_home, source, "--limit", host.name)
    assert again.returncode == 0 and recap(again)[host.name]["changed"] == 0, again.stdout
