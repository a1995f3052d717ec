"""What the end-to-end tests ask of lab hosts and of the agent: one copy, shared by every e2e file."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.lab import Host, Lab


def ca_args(lab: Lab) -> list[str]:
    """The lab's real registry config, with both of its private CAs."""
    return [
        "--source",
        str(lab.registry_yml),
        "--storage-ca",
        str(lab.storage_ca),
        "--registry-ca",
        str(lab.registry_ca),
    ]


def skip_source(lab: Lab, tmp_path: Path) -> Path:
    """The lab's registry config switched to skip TLS verification of its storage."""
    doc = yaml.safe_load(lab.registry_yml.read_text())
    doc["storage"]["s3"]["skipverify"] = True
    path = tmp_path / "registry-skipverify.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def skip_args(lab: Lab, tmp_path: Path) -> list[str]:
    return ["--source", str(skip_source(lab, tmp_path)), "--registry-ca", str(lab.registry_ca)]


def by_host(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h["host"]: h for h in report["hosts"]}


NO_STREAMLOCAL = "/etc/ssh/sshd_config.d/no-streamlocal.conf"


def outcome_of(
    lab: Lab, command: str, host: Host, *args: str, inventory: Path | None = None
) -> tuple[int, dict[str, Any], str]:
    """Run ``trust-agent COMMAND`` on ``host`` alone (the lab's CA source unless ``args`` give one);
    (exit code, its outcome, stderr). verify's TLS handshakes from here reach the registry at its lab
    address."""
    source = () if "--source" in args else tuple(ca_args(lab))
    if command == "verify":
        args = ("--resolve", f"{lab.registry}:{lab.state['registry']['address']}", *args)
    proc = lab.run_agent(
        command,
        "-i",
        str(inventory or lab.inventory_yml),
        *source,
        "--limit",
        host.name,
        *args,
        "--format",
        "json",
    )
    assert proc.stdout.strip().startswith("{"), (
        f"{command}: no report (exit {proc.returncode}): {proc.stderr}"
    )
    return proc.returncode, by_host(json.loads(proc.stdout))[host.name], proc.stderr


def converged(lab: Lab, host: Host) -> None:
    """``host`` given the lab's CA policy by a rollout that changes it."""
    code, outcome, err = outcome_of(lab, "rollout", host)
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)


def engine_state(lab: Lab, host: Host) -> tuple[str, int]:
    """(dockerd's start time, reloads it logged): they change only on a restart or a reload. The start
    time is systemd's monotonic one in microseconds: a restart within the same second changes it."""
    out = lab.ssh(
        host,
        "systemctl show docker -p ExecMainStartTimestampMonotonic --value; "
        "journalctl -u docker -o cat --no-pager | grep -c 'Got signal to reload configuration' || true",
    ).stdout.splitlines()
    return out[0], int(out[1])


# sshd re-executes itself on SIGHUP (`systemctl reload ssh`), and for a moment no one listens on port 22:
# the command gives it time to start over, then waits (bounded) until a connection is accepted again, so
# the next login does not fail.
RELOAD_SSHD = (
    "systemctl reload ssh && sleep 0.2 && for i in $(seq 100); do "
    "(exec 3<>/dev/tcp/127.0.0.1/22) 2>/dev/null && break; sleep 0.05; done"
)


def change_sshd(lab: Lab, host: Host, change: str, input: str | None = None) -> None:
    """Run shell text ``change`` on ``host`` (``input`` on its stdin), then reload sshd and wait until it
    accepts connections again."""
    lab.ssh(host, f"bash -c {shlex.quote(change + ' && ' + RELOAD_SSHD)}", input=input)


def forbid_streamlocal_on(lab: Lab, host: Host, forbid: bool = True) -> None:
    """sshd on ``host`` refuses (or, with ``forbid=False``, allows again) channels to Unix sockets."""
    change = (
        f"echo 'AllowStreamLocalForwarding no' > {NO_STREAMLOCAL}" if forbid else f"rm -f {NO_STREAMLOCAL}"
    )
    change_sshd(lab, host, change)


def docker_tree(lab: Lab, host: Host) -> dict[str, str]:
    """Every file (with its sha256) and directory under /etc/docker: a refused apply must change none."""
    out = lab.ssh(
        host,
        "find /etc/docker -type d -printf 'dir %p\\n'; "
        "find /etc/docker -type f -print0 | sort -z | xargs -0 -r sha256sum",
    ).stdout
    tree = {}
    for line in out.splitlines():
        if line.startswith("dir "):
            tree[line[4:]] = "dir"
        else:
            digest, _, path = line.partition("  ")
            tree[path] = digest
    return tree


def daemon_json(lab: Lab, host: Host) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(lab.ssh(host, "cat /etc/docker/daemon.json").stdout)
    return data


def pull(lab: Lab, host: Host) -> None:
    """A real pull that fetches every blob again (the image is removed first)."""
    lab.ssh(host, f"docker rmi -f {lab.image} >/dev/null 2>&1; docker pull {lab.image}")


def pull_and_push(lab: Lab, host: Host, tag: str = "pushed") -> None:
    pull(lab, host)
    ref = f"{lab.registry}/test/{tag}-{host.name}:1"
    lab.ssh(host, f"docker tag {lab.runnable_image} {ref} && docker push {ref} && docker rmi {ref}")


CURL_LOG = "/run/trust-agent-test-curl.log"


@contextmanager
def curl_watched(lab: Lab, hosts: Sequence[Host]) -> Iterator[None]:
    """Every curl started on ``hosts`` is logged (a wrapper first in PATH), until the block ends."""
    wrapper = f'#!/bin/sh\necho "$*" >> {CURL_LOG}\nexec /usr/bin/curl "$@"\n'
    try:
        for host in hosts:
            lab.ssh(
                host,
                f"rm -f {CURL_LOG}; cat > /usr/local/bin/curl && chmod 755 /usr/local/bin/curl",
                input=wrapper,
            )
        yield
    finally:
        for host in hosts:
            lab.ssh(host, f"rm -f /usr/local/bin/curl {CURL_LOG}", check=False)


def curl_calls(lab: Lab, host: Host) -> str:
    """The arguments of every curl ``host`` started while watched, one line each."""
    return lab.ssh(host, f"cat {CURL_LOG} 2>/dev/null || true").stdout


LAB_DAEMON_JSON = "/usr/local/share/trust-agent-lab/daemon.json"  # every lab host's base daemon.json
SITE_CHECK = "/etc/systemd/system/docker.service.d/site-check.conf"
SITE_CHECK_SAYS = "site check: insecure registries are not allowed here"


@contextmanager
def a_restart_dockerd_will_not_survive(lab: Lab, host: Host) -> Iterator[None]:
    """``host`` as a restart finds it: dockerd will not start once daemon.json lists insecure registries.

    A site's start-up check (an ``ExecStartPre=`` drop-in) refuses daemon.json files that list insecure
    registries: a reason for a failed start that no check of the agent's can see. Without the key,
    dockerd starts. (The lab's engines reload the list; the restart is forced by restart policy.)
    """
    check = (
        "[Service]\nExecStartPre=/bin/sh -c 'if grep -q insecure-registries /etc/docker/daemon.json; "
        f'then echo "{SITE_CHECK_SAYS}" >&2; exit 1; fi\'\n'
    )
    lab.ssh(
        host,
        f"mkdir -p {SITE_CHECK.rsplit('/', 1)[0]} && printf %s {shlex.quote(check)} > {SITE_CHECK} && "
        "systemctl daemon-reload && systemctl restart docker",
    )
    try:
        yield
    finally:
        lab.ssh(
            host,
            f"rm -f {SITE_CHECK} && systemctl daemon-reload && "
            "systemctl reset-failed docker.service && systemctl restart docker",
        )


def runs_secure_for_the_registry(lab: Lab, host: Host) -> bool:
    """Whether dockerd runs and verifies the registry's TLS (it lists no insecure registry of the lab's)."""
    out = lab.ssh(host, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'", check=False).stdout
    return out.strip().startswith("{") and json.loads(out).get(lab.registry, {}).get("Secure", True) is True


@contextmanager
def an_insecure_registry_flag_in_etc_default_docker(lab: Lab, host: Host) -> Iterator[None]:
    """``--insecure-registry`` added to Debian's $DOCKER_OPTS, dockerd not restarted; afterwards the file
    is put back and dockerd restarted without it."""
    flag = "echo 'DOCKER_OPTS=\"--insecure-registry=10.9.9.9\"' >> /etc/default/docker"
    lab.ssh(host, f"cp -p /etc/default/docker /etc/default/docker.lab && {flag}")
    try:
        yield
    finally:
        lab.ssh(
            host,
            "mv /etc/default/docker.lab /etc/default/docker && "
            "systemctl reset-failed docker.service; systemctl restart docker",
        )


DROP_INS = "/etc/systemd/system/docker.service.d"


@contextmanager
def unit_drop_in(lab: Lab, host: Host, name: str, text: str, *, restart: bool = True) -> Iterator[None]:
    """docker.service on ``host`` with the drop-in ``name`` holding ``text``, restarted; removed after
    (systemd's start limit cleared first: a test may have restarted dockerd often). ``restart`` False:
    only ``systemctl daemon-reload``, before and after (the running dockerd keeps its flags)."""
    path = f"{DROP_INS}/{name}"
    then = " && systemctl restart docker" if restart else ""
    lab.ssh(host, f"mkdir -p {DROP_INS} && cat > {path} && systemctl daemon-reload{then}", input=text)
    try:
        yield
    finally:
        after = " && systemctl reset-failed docker.service; systemctl restart docker" if restart else ""
        lab.ssh(host, f"rm -f {path} && systemctl daemon-reload{after}")


@contextmanager
def insecure_range(lab: Lab, host: Host, cidr: str) -> Iterator[None]:
    """``host``'s daemon.json lists the range ``cidr`` as insecure, reloaded; after, the base file back
    and dockerd restarted (a reload keeps a list whose key went, fact 11)."""
    doc = {**json.loads(lab.ssh(host, f"cat {LAB_DAEMON_JSON}").stdout), "insecure-registries": [cidr]}
    lab.ssh(host, "cat > /etc/docker/daemon.json && systemctl reload docker", input=json.dumps(doc))
    deadline = time.monotonic() + 10
    while cidr not in lab.ssh(host, "docker info --format '{{json .RegistryConfig}}'").stdout:
        assert time.monotonic() < deadline, "dockerd did not load the range"
        time.sleep(0.2)
    try:
        yield
    finally:
        lab.ssh(host, f"cp {LAB_DAEMON_JSON} /etc/docker/daemon.json && systemctl restart docker")
