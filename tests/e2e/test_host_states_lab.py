"""Host states the gather must see as dockerd sees them, on Docker 20.10 and 26.1: an ExecStart continued
with backslashes, certs.d entries dockerd cannot read, a file where a registry's directory goes, and an
engine that takes connections but never answers."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.probes import DROP_INS, converged, outcome_of, skip_args, unit_drop_in
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab

FLAVOURS = ("bookworm", "trixie")  # Docker 20.10 and 26.1
CONTINUED = "zz-cont.conf"
# The flags on the continuation lines, as a person wraps a long ExecStart.
CONTINUED_EXEC_START = (
    "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd -H fd:// \\\n"
    "    --containerd=/run/containerd/containerd.sock \\\n"
    "    --insecure-registry=mirror.corp.example\n"
)


@pytest.fixture
def lab(mixed_lab: Lab) -> Lab:
    """The mixed fleet (h1, h3: Docker 20.10; h2, h4: 26.1), reset."""
    return mixed_lab


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_flag_on_a_continuation_line_of_exec_start_blocks_the_skip_tls_plan(
    lab: Lab, tmp_path: Path, flavour: str
) -> None:
    """The unit was read line by line: the flag on the continuation line was lost (no blocker; the next
    start refuses daemon.json's list beside it) and the backslash became an argument of dockerd."""
    host = lab.hosts_of(flavour)[0]
    with unit_drop_in(lab, host, CONTINUED, CONTINUED_EXEC_START, restart=False):
        code, outcome, err = outcome_of(lab, "plan", host, *skip_args(lab, tmp_path))
        assert outcome["status"] == "failed", (code, outcome, err)
        assert any(
            f"{DROP_INS}/{CONTINUED} sets --insecure-registry" in blocker for blocker in outcome["blockers"]
        ), outcome
        assert lab.ssh(host, "cat /etc/docker/daemon.json").stdout.count("insecure-registries") == 0


def test_ca_entries_dockerd_cannot_read_fail_pulls_and_verify(lab: Lab) -> None:
    """A directory named like a CA file and a link to nothing: every pull fails, yet verify said
    "unchanged" and exited 0."""
    host = lab.hosts_of("bookworm")[0]
    converged(lab, host)
    certs = f"/etc/docker/certs.d/{lab.registry}"
    lab.ssh(host, f"mkdir {certs}/extra.crt && ln -s /nonexistent/corp.crt {certs}/corp.crt")
    pulled = lab.ssh(host, f"docker rmi -f {lab.image} >/dev/null 2>&1; docker pull {lab.image}", check=False)
    assert pulled.returncode != 0 and f"{certs}/corp.crt" in pulled.stderr, pulled
    code, outcome, err = outcome_of(lab, "verify", host)
    assert code != 0 and outcome["status"] == "failed", (code, outcome, err)
    said = outcome["error"]
    assert f"certs.d/{lab.registry}/extra.crt is a directory, which dockerd cannot read" in said, said
    assert f"certs.d/{lab.registry}/corp.crt is a symbolic link to nothing" in said, said
    code, outcome, err = outcome_of(lab, "rollout", host)
    assert any("extra.crt is a directory" in w for w in outcome["warnings"]), (code, outcome, err)


def test_a_file_where_a_registrys_directory_goes_blocks_the_plan_naming_it(lab: Lab) -> None:
    """Plan and verify listed the CA files as pending with no blocker, and every rollout failed on
    ``mkdir: ... File exists``."""
    host = lab.hosts_of("trixie")[0]
    path = f"/etc/docker/certs.d/{lab.registry}"
    lab.ssh(host, f"mkdir -p /etc/docker/certs.d && echo notes > {shlex.quote(path)}")
    blocker = (
        f"{path} is a file, not a directory: dockerd reads {lab.registry}'s CA files from a directory of "
        "that name, and trust-agent cannot create it; move it away, then run again (nothing written)"
    )
    for command in ("plan", "rollout"):
        code, outcome, err = outcome_of(lab, command, host)
        assert (code, outcome["status"]) == (1, "failed"), (command, outcome, err)
        assert blocker in outcome["blockers"], (command, outcome)
    assert lab.ssh(host, f"cat {path}").stdout == "notes\n"  # nothing written


def test_an_engine_that_never_answers_is_said_in_the_plan(lab: Lab) -> None:
    """dockerd stopped with SIGSTOP: the socket takes connections, nothing answers; the plan waited and
    said "unchanged" with no word of it."""
    host = lab.hosts_of("trixie")[0]
    converged(lab, host)
    lab.ssh(host, "kill -STOP $(pidof dockerd)")
    try:
        code, outcome, err = outcome_of(lab, "plan", host)
    finally:
        lab.ssh(host, "kill -CONT $(pidof dockerd)")
    assert any(w.startswith("dockerd did not answer on /var/run/docker.sock") for w in outcome["warnings"]), (
        code,
        outcome,
        err,
    )


@pytest.fixture
def ca_lab(lab_session: Lab) -> Lab:
    """The session's fleet (Docker 20.10, storage with its own CA), reset."""
    lab_session.reset()
    return lab_session


@pytest.fixture
def masked_host(ca_lab: Lab) -> Iterator[Host]:
    """h2 with docker.service masked (its dockerd still running); unmasked and running again after."""
    host = ca_lab.hosts[1]
    ca_lab.ssh(host, "systemctl mask docker.service")
    try:
        yield host
    finally:
        ca_lab.ssh(host, "systemctl unmask docker.service && systemctl start docker")


MASKED_NOTE = "docker.service is masked: systemctl cannot reload or restart it; the files take effect when dockerd starts"


def test_a_masked_unit_is_warned_of_only_where_its_dockerd_has_yet_to_read_the_files(
    ca_lab: Lab, masked_host: Host
) -> None:
    """A running dockerd reads new CA files at once: a rollout pulled through them, yet it and verify
    said they waited for dockerd's start."""
    lab, host = ca_lab, masked_host
    resolve = ("--resolve", f"{lab.registry}:{lab.state['registry']['address']}")
    code, outcome, err = outcome_of(lab, "rollout", host, *resolve, "--canary-image", lab.image)
    assert (code, outcome["status"], outcome["engine_action"]) == (0, "changed", "none"), (err, outcome)
    assert f"canary pull {lab.image}" in outcome["verified"], outcome
    assert MASKED_NOTE not in outcome["warnings"], outcome
    code, outcome, err = outcome_of(lab, "verify", host)
    assert (code, outcome["status"]) == (0, "unchanged"), (err, outcome)
    assert MASKED_NOTE not in outcome["warnings"], outcome
    # Stopped, dockerd reads the files only when it starts, which the mask forbids: said.
    lab.ssh(host, f"rm -rf /etc/docker/certs.d/{lab.registry} && systemctl stop docker.socket docker.service")
    code, outcome, err = outcome_of(lab, "rollout", host)
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    assert MASKED_NOTE in outcome["warnings"], outcome


ALT_DAEMON_JSON = "/etc/docker-alt/daemon.json"


@pytest.fixture
def config_file_removed_unrestarted(ca_lab: Lab) -> Iterator[Host]:
    """h1's dockerd started with --config-file=/etc/docker-alt/daemon.json from $DOCKER_OPTS, given the
    skip-TLS policy there, then the flag removed with no restart; its base config and dockerd back after."""
    lab, host = ca_lab, ca_lab.hosts[0]
    opts = f'DOCKER_OPTS="--config-file={ALT_DAEMON_JSON}"'
    lab.ssh(
        host,
        f"cp -p /etc/default/docker /etc/default/docker.lab && mkdir -p /etc/docker-alt && "
        f"cp /etc/docker/daemon.json {ALT_DAEMON_JSON} && echo '{opts}' >> /etc/default/docker && "
        "systemctl restart docker",
    )
    try:
        yield host
    finally:
        lab.ssh(
            host,
            "mv /etc/default/docker.lab /etc/default/docker && rm -rf /etc/docker-alt && "
            "systemctl reset-failed docker.service; systemctl restart docker",
        )


def test_a_config_file_only_the_running_dockerd_has_is_refused_once_as_the_running_ones(
    ca_lab: Lab, config_file_removed_unrestarted: Host, tmp_path: Path
) -> None:
    """The plan gave a second blocker saying the unit "and /proc/N/cmdline sets" the flag the unit no
    longer gives, against the first (the running dockerd was started with it)."""
    lab, host = ca_lab, config_file_removed_unrestarted
    code, outcome, err = outcome_of(lab, "rollout", host, *skip_args(lab, tmp_path))
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    assert lab.registry in lab.ssh(host, f"cat {ALT_DAEMON_JSON}").stdout
    lab.ssh(host, "cp /etc/default/docker.lab /etc/default/docker")
    code, outcome, err = outcome_of(lab, "plan", host)
    assert (code, outcome["status"]) == (1, "failed"), (err, outcome)
    said = [b for b in outcome["blockers"] if "--config-file" in b]
    assert len(said) == 1, said
    assert said[0].startswith(
        f"the running dockerd was started with --config-file={ALT_DAEMON_JSON}, but docker.service now "
        "starts it with /etc/docker/daemon.json"
    ), said


NEXT_START_FLAG = "zz-next-start.conf"
NEXT_START_ENV = "/etc/docker/next-start.env"


def test_a_flag_only_the_units_next_start_gives_does_not_roll_back_a_ca_rollout(ca_lab: Lab) -> None:
    """An --insecure-registry in an EnvironmentFile docker.service reads, the unit reloaded but dockerd
    not restarted: the plan said "dockerd runs an older daemon.json" and reloaded, and the rollout waited
    20 s for a list no reload gives, then rolled the CA files back ("daemon.json says insecure")."""
    lab = ca_lab
    host = lab.hosts[2]
    lab.ssh(host, f"echo DOCKER_OPTS=--insecure-registry={lab.registry} > {NEXT_START_ENV}")
    try:
        with unit_drop_in(
            lab, host, NEXT_START_FLAG, f"[Service]\nEnvironmentFile=-{NEXT_START_ENV}\n", restart=False
        ):
            code, outcome, err = outcome_of(lab, "rollout", host)
            files = lab.ssh(host, f"ls /etc/docker/certs.d/{lab.registry}").stdout.split()
            code_v, verified, err_v = outcome_of(lab, "verify", host)
    finally:
        lab.ssh(host, f"rm -f {NEXT_START_ENV}")
    assert (code, outcome["status"], outcome["engine_action"]) == (0, "changed", "none"), (err, outcome)
    assert "trust-agent-storage-ca.crt" in files, files
    assert not any("daemon.json says insecure" in r for r in outcome["reasons"]), outcome
    # The flag is the person's to remove: said, and verify fails the host for it (its next start
    # would not verify the registry's TLS), with no change of the agent's pending.
    assert any(f"--insecure-registry {lab.registry}" in w for w in outcome["warnings"]), outcome
    assert (code_v, verified["status"], verified["changes"]) == (1, "failed", []), (err_v, verified)
