"""The gather on real engine hosts where a unit's or daemon.json's text is unusual, and a frozen engine:
what the agent reads must be what systemd and dockerd read, and a silent engine costs one wait."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.probes import (
    LAB_DAEMON_JSON,
    converged,
    outcome_of,
    skip_args,
    unit_drop_in,
)
from tests.lab import Host, Lab

EXTRA_ENV = "/etc/default/docker-extra"
OTHER_ENV = "/etc/default/docker-other"


@contextmanager
def env_files_with_an_insecure_flag(lab: Lab, host: Host) -> Iterator[None]:
    """Two environment files, each giving $DOCKER_OPTS an ``--insecure-registry`` flag; removed after."""
    lab.ssh(
        host,
        f"echo 'DOCKER_OPTS=\"--insecure-registry=10.7.7.7\"' > {EXTRA_ENV} && "
        f"echo 'DOCKER_OPTS=\"--insecure-registry=10.8.8.8\"' > {OTHER_ENV}",
    )
    try:
        yield
    finally:
        lab.ssh(host, f"rm -f {EXTRA_ENV} {OTHER_ENV}")


def env_files_systemd_reads(lab: Lab, host: Host) -> str:
    return lab.ssh(host, "systemctl show docker -p EnvironmentFiles --value").stdout


@pytest.mark.parametrize(
    "setting",
    [
        f"EnvironmentFile=\\\n  -{EXTRA_ENV}\n",
        f"EnvironmentFile=-{EXTRA_ENV}\\\n\n",
        f"  EnvironmentFile = -{EXTRA_ENV}  \n",
    ],
    ids=["value-on-the-next-line", "continued-onto-an-empty-line", "blanks-around-the-equals-sign"],
)
def test_an_environment_file_systemd_reads_is_read_by_the_gather(
    lab: Lab, tmp_path: Path, setting: str
) -> None:
    """An ``EnvironmentFile=`` that systemd reads but the gather's line search missed: the flag in it
    (dockerd's next start) went unseen, and a plan to list the registry as insecure went ahead."""
    host = lab.hosts[0]
    drop_in = f"[Service]\n{setting}"
    with (
        env_files_with_an_insecure_flag(lab, host),
        unit_drop_in(lab, host, "env.conf", drop_in, restart=False),
    ):
        assert env_files_systemd_reads(lab, host).splitlines()[-1] == f"{EXTRA_ENV} (ignore_errors=yes)"
        code, outcome, err = outcome_of(lab, "plan", host, *skip_args(lab, tmp_path))
    said = f"$DOCKER_OPTS from {EXTRA_ENV}) sets --insecure-registry"
    assert code == 1 and any(said in b for b in outcome["blockers"]), (code, outcome, err)


def test_several_files_on_one_environment_file_line_are_one_path_as_systemd_reads_them(
    lab: Lab, tmp_path: Path
) -> None:
    """systemd takes the whole value as one path (here a file that does not exist, ``-``: ignored), so
    neither file's flag reaches dockerd, and none holds the plan up."""
    host = lab.hosts[0]
    setting = f"EnvironmentFile=-{EXTRA_ENV} -{OTHER_ENV}\n"
    with (
        env_files_with_an_insecure_flag(lab, host),
        unit_drop_in(lab, host, "env.conf", f"[Service]\n{setting}"),
    ):
        systemd_reads = env_files_systemd_reads(lab, host).splitlines()[-1]
        runs = lab.ssh(host, "tr '\\0' ' ' < /proc/$(pidof dockerd)/cmdline").stdout
        code, outcome, err = outcome_of(lab, "plan", host, *skip_args(lab, tmp_path))
    assert systemd_reads == f"{EXTRA_ENV} -{OTHER_ENV} (ignore_errors=yes)"
    assert "--insecure-registry" not in runs
    assert code == 0 and not any("--insecure-registry" in b for b in outcome["blockers"]), (
        code,
        outcome,
        err,
    )


# systemd reads "\r\n" as a line's end in unit files and environment files alike (seen on the lab's
# systemd 252: EnvironmentFiles= and dockerd's flags came without the "\r").
CRLF_DROP_IN = f"[Service]\r\nEnvironmentFile=-{EXTRA_ENV}\r\n"
# A glob: every file it matches, read in sorted order (systemd.exec(5)), so docker-other's flag wins.
GLOB_DROP_IN = "[Service]\nEnvironmentFile=-/etc/default/docker-*\n"


@pytest.mark.parametrize(
    ("drop_in", "read_last"),
    [(CRLF_DROP_IN, EXTRA_ENV), (GLOB_DROP_IN, OTHER_ENV)],
    ids=["crlf-unit-file", "glob"],
)
def test_an_environment_file_named_by_a_crlf_line_or_a_glob_is_read_as_systemd_reads_it(
    lab: Lab, tmp_path: Path, drop_in: str, read_last: str
) -> None:
    """The gather's scan of the unit took the "\\r" for part of the path, and a glob for a file name:
    no file was read, so the flag dockerd runs with went unseen and the plan went ahead."""
    host = lab.hosts[0]
    with (
        env_files_with_an_insecure_flag(lab, host),
        unit_drop_in(lab, host, "env.conf", drop_in),
    ):
        runs = lab.ssh(host, "tr '\\0' ' ' < /proc/$(pidof dockerd)/cmdline").stdout
        code, outcome, err = outcome_of(lab, "plan", host, *skip_args(lab, tmp_path))
    flag = {EXTRA_ENV: "--insecure-registry=10.7.7.7", OTHER_ENV: "--insecure-registry=10.8.8.8"}
    assert runs.split().count(flag[read_last]) == 1 and runs.count("--insecure-registry") == 1, runs
    said = f"$DOCKER_OPTS from {read_last}) sets --insecure-registry"
    assert code == 1 and any(said in b for b in outcome["blockers"]), (code, outcome, err)


def test_an_environment_files_crlf_lines_give_values_without_the_carriage_return(lab: Lab) -> None:
    """systemd ends the line at the "\\r": dockerd runs with --insecure-registry=<registry>, which the
    plan must see as naming the registry the policy verifies."""
    host = lab.hosts[0]
    text = f'DOCKER_OPTS="--insecure-registry={lab.registry}"\r\n'
    lab.ssh(host, f"cat > {EXTRA_ENV}", input=text)
    try:
        with unit_drop_in(lab, host, "env.conf", f"[Service]\nEnvironmentFile={EXTRA_ENV}\n"):
            runs = lab.ssh(host, "tr '\\0' '\\n' < /proc/$(pidof dockerd)/cmdline").stdout
            code, outcome, err = outcome_of(lab, "plan", host)
    finally:
        lab.ssh(host, f"rm -f {EXTRA_ENV}")
    assert f"--insecure-registry={lab.registry}" in runs.splitlines(), runs
    said = f"{lab.registry}: dockerd's command line has --insecure-registry {lab.registry} ("
    assert any(w.startswith(said) for w in outcome["warnings"]), (code, outcome, err)


def test_a_frozen_engine_costs_the_plan_one_wait_not_two(lab: Lab) -> None:
    """dockerd stopped with SIGSTOP on a converged host: the controller's request timed out, then the
    script's curl waited as long again on the same socket, then the docker CLI."""
    host = lab.hosts[0]
    converged(lab, host)
    lab.ssh(host, "kill -STOP $(pidof dockerd)")
    try:
        started = time.monotonic()
        code, outcome, err = outcome_of(lab, "plan", host)
        took = time.monotonic() - started
    finally:
        lab.ssh(host, "kill -CONT $(pidof dockerd)")
    assert any(w.startswith("dockerd did not answer on /var/run/docker.sock") for w in outcome["warnings"]), (
        code,
        outcome,
        err,
    )
    # The controller's own request alone: 10 s; the script's curl made it 20, the CLI's 30.
    assert took < 16, f"took {took:.1f}s"


ALT_SOCKET = "unix:///run/docker-alt.sock"
# Debian's ExecStart without -H fd://: daemon.json's "hosts" says where dockerd serves.
NO_H_FLAG = (
    "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd --containerd=/run/containerd/containerd.sock\n"
)


@pytest.fixture(params=["docker-socket-listening", "socket-file-gone"])
def api_elsewhere_in_daemon_json_with_trailing_data(
    lab: Lab, request: pytest.FixtureRequest
) -> Iterator[Host]:
    """A 20.10 engine serving its API only at another socket, as daemon.json's first document says; a
    stray ``}`` follows the document (20.10 reads the first value and runs). docker.socket still listens
    on the default socket, serving no one; or that socket's file is gone."""
    host = lab.hosts[1]
    assert lab.ssh(host, "dockerd --version").stdout.startswith("Docker version 20.10")
    doc = {**json.loads(lab.ssh(host, f"cat {LAB_DAEMON_JSON}").stdout), "hosts": [ALT_SOCKET]}
    restart = "systemctl reset-failed docker.service docker.socket; systemctl restart docker.socket docker"
    try:
        with unit_drop_in(lab, host, "no-h.conf", NO_H_FLAG, restart=False):
            lab.ssh(
                host, f"cat > /etc/docker/daemon.json && {restart}", input=json.dumps(doc, indent=2) + "\n}\n"
            )
            assert lab.ssh(
                host, f"docker -H {ALT_SOCKET} info --format '{{{{.ServerVersion}}}}'"
            ).stdout.strip()
            if request.param == "socket-file-gone":
                lab.ssh(host, "rm /run/docker.sock")
            yield host
    finally:
        lab.ssh(host, f"cp {LAB_DAEMON_JSON} /etc/docker/daemon.json && {restart}")


def test_an_engine_serving_elsewhere_by_a_daemon_json_with_trailing_data_is_refused_at_once(
    lab: Lab, tmp_path: Path, api_elsewhere_in_daemon_json_with_trailing_data: Host
) -> None:
    """daemon.json was read with a strict JSON parser: its "hosts" went unseen, and the gather waited on
    docker.socket's default socket, which no dockerd serves."""
    host = api_elsewhere_in_daemon_json_with_trailing_data
    started = time.monotonic()
    code, outcome, err = outcome_of(lab, "plan", host, *skip_args(lab, tmp_path))
    took = time.monotonic() - started
    why = f"dockerd serves its API at {ALT_SOCKET}, not at /var/run/docker.sock"
    assert code == 1 and any(why in b for b in outcome["blockers"]), (
        code,
        outcome.get("error"),
        outcome["blockers"],
        outcome["warnings"],
        err,
    )
    assert took < 8, f"took {took:.1f}s: no wait on the socket no one serves"


# A network option only Docker 23.0 and later know, and a byte order mark only 26.1 reads past.
MTU_OPTS = {"bridge": {"com.docker.network.driver.mtu": "1400"}}
BOM = b"\xef\xbb\xbf"
STOP_ENGINE = "systemctl stop docker.service docker.socket"
START_ENGINE = (
    "systemctl reset-failed docker.service docker.socket; systemctl start docker.socket docker.service"
)


@contextmanager
def stopped_with_daemon_json(
    lab: Lab, host: Host, text: bytes, *, load_first: bool = False
) -> Iterator[None]:
    """``host``'s dockerd and docker.socket stopped, daemon.json holding ``text`` (``load_first``: dockerd
    restarted on it before the stop); after, the base daemon.json back and both started again."""
    then = "systemctl restart docker && " if load_first else ""
    lab.ssh(host, f"cat > /etc/docker/daemon.json && {then}{STOP_ENGINE}", input=text.decode("utf-8"))
    try:
        yield
    finally:
        lab.ssh(host, f"cp {LAB_DAEMON_JSON} /etc/docker/daemon.json && {START_ENGINE}")


def flavoured(lab: Lab, version: str) -> Host:
    """The first host whose dockerd is ``version`` (a prefix: "20.10", "26.")."""
    for host in lab.hosts:
        if lab.ssh(host, "dockerd --version").stdout.startswith(f"Docker version {version}"):
            return host
    raise AssertionError(f"no host of this lab runs dockerd {version}")


def test_a_26_engine_stopped_with_its_socket_is_judged_by_its_own_keys(
    mixed_lab: Lab, tmp_path: Path
) -> None:
    """docker.service and docker.socket stopped: the docker CLI exits 0 with a document of its own
    ("ServerErrors"), taken for the engine's answer, so its version went unasked and a key 26.1 knows
    was refused by 20.10's list."""
    lab = mixed_lab
    host = flavoured(lab, "26.")
    doc = {**json.loads(lab.ssh(host, f"cat {LAB_DAEMON_JSON}").stdout), "default-network-opts": MTU_OPTS}
    with stopped_with_daemon_json(lab, host, json.dumps(doc).encode() + b"\n", load_first=True):
        lab.ssh(host, "dockerd --validate --config-file /etc/docker/daemon.json")  # fails if 26.1 refuses it
        code, outcome, err = outcome_of(lab, "plan", host, *skip_args(lab, tmp_path))
    assert not any("unknown key" in b for b in outcome["blockers"]), (code, outcome, err)
    assert code == 0 and outcome["status"] == "pending", (code, outcome, err)
    assert (outcome["engine_version"] or "").startswith("26."), outcome


def test_a_20_10_engine_stopped_with_its_socket_is_not_written_a_daemon_json_it_cannot_read(
    mixed_lab: Lab, tmp_path: Path
) -> None:
    """A daemon.json starting with a byte order mark, which 20.10 cannot read: with the engine's version
    unknown (the CLI's own document taken for an answer) it was a warning, and the rollout wrote into it."""
    lab = mixed_lab
    host = flavoured(lab, "20.10")
    text = BOM + lab.ssh(host, f"cat {LAB_DAEMON_JSON}").stdout.encode()
    with stopped_with_daemon_json(lab, host, text):
        code, outcome, err = outcome_of(lab, "rollout", host, *skip_args(lab, tmp_path))
        after = lab.ssh(host, "base64 -w0 /etc/docker/daemon.json").stdout
    said = "starts with a UTF-8 byte order mark, which dockerd 20.10"
    assert code == 1 and any(said in b for b in outcome["blockers"]), (code, outcome, err)
    assert base64.b64decode(after) == text, "daemon.json was written"


ALT_DAEMON_JSON = "/etc/docker-alt/daemon.json"
# A drop-in starting dockerd with a --config-file relative to its working directory (/ by default).
RELATIVE_CONFIG_FILE = (
    "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd -H fd:// "
    "--containerd=/run/containerd/containerd.sock --config-file etc/docker-alt/daemon.json\n"
)


def test_a_relative_config_file_is_written_where_dockerd_reads_it(mixed_lab: Lab, tmp_path: Path) -> None:
    """The gather read etc/docker-alt/daemon.json from the SSH login's home: the plan showed a new file
    holding only insecure-registries, and the rollout failed to create it there."""
    lab = mixed_lab
    host = lab.hosts[0]
    lab.ssh(host, f"mkdir -p /etc/docker-alt && cp {LAB_DAEMON_JSON} {ALT_DAEMON_JSON}")
    try:
        with unit_drop_in(lab, host, "x-rel.conf", RELATIVE_CONFIG_FILE):
            assert lab.ssh(host, "readlink /proc/$(pidof dockerd)/cwd").stdout.strip() == "/"
            code, outcome, err = outcome_of(lab, "rollout", host, *skip_args(lab, tmp_path))
            written = json.loads(lab.ssh(host, f"cat {ALT_DAEMON_JSON}").stdout)
            loaded = lab.ssh(host, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout
    finally:
        lab.ssh(host, "rm -rf /etc/docker-alt")
    assert (code, outcome["status"]) == (0, "changed"), (code, outcome, err)
    assert [c["path"] for c in outcome["changes"] if "daemon.json" in c["path"]] == [ALT_DAEMON_JSON]
    base = json.loads(lab.ssh(host, f"cat {LAB_DAEMON_JSON}").stdout)
    listed = written.pop("insecure-registries")
    assert written == base and lab.registry in listed, (written, listed)
    assert json.loads(loaded)[lab.registry]["Secure"] is False


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (
            "chmod 1777 /etc/docker/certs.d",
            "/etc/docker/certs.d is writable by a user other than root: trust-agent does not write there",
        ),
        (
            "rm -rf /etc/docker/certs.d && ln -s /srv/gone /etc/docker/certs.d",
            "/etc/docker/certs.d is a link to /srv/gone, which does not exist: create the target directory "
            "or remove the link",
        ),
    ],
    ids=["world-writable", "link-to-nothing"],
)
@pytest.mark.parametrize("command", ["plan", "verify"])
def test_a_certs_d_the_apply_refuses_is_refused_by_plan_and_verify(
    mixed_lab: Lab, command: str, make: str, said: str
) -> None:
    """plan and verify said "pending" for a host whose certs.d the rollout then refused to write in."""
    lab = mixed_lab
    host = lab.hosts[0]
    lab.ssh(host, f"mkdir -p /etc/docker/certs.d && {make}")
    try:
        code, outcome, err = outcome_of(lab, command, host)
        rolled_code, rolled, rolled_err = outcome_of(lab, "rollout", host)
    finally:
        lab.ssh(
            host, "rm -f /etc/docker/certs.d; mkdir -p /etc/docker/certs.d; chmod 0755 /etc/docker/certs.d"
        )
    assert code == 1 and outcome["status"] == "failed" and said in (outcome["error"] or ""), (
        code,
        outcome,
        err,
    )
    assert rolled_code == 1 and said in (rolled["error"] or ""), (rolled_code, rolled, rolled_err)
