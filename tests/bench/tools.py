"""The tools under test and the floors: each one a command line, run as a whole process in the lab netns."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import string
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.bench.job import Job
from tests.lab import Lab, network
from tests.lab import ssh as lab_ssh

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FORKS = 50


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str]
    cwd: str | None = None
    cleanup: Callable[[], None] | None = None


@dataclass(frozen=True)
class Route:
    """One host as the tools reach it (the one-host runs): straight, or through a slow link."""

    name: str  # "direct" | "link"
    host: str  # the lab host's name
    address: str
    port: int
    known_hosts: Path


@dataclass(frozen=True)
class Tool:
    name: str
    # "tool" (cold + no-op, checked), "floor" (one timing per run) or "job-floor" (cold only, checked)
    kind: str
    command: Callable[[str], Command]  # mode "cold" | "noop" -> how to run it


def _ns(lab: Lab, argv: Sequence[str]) -> list[str]:
    return [*network.nsenter(lab.namespace), *argv]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def trust_agent(lab: Lab, job: Job, work: Path, bin_dir: Path, route: Route | None = None) -> Tool:
    exe = str(bin_dir / "trust-agent")
    inventory = lab.inventory_yml
    if route is not None:
        inventory = work / f"trust-agent-{route.name}.yml"
        inventory.write_text(
            f"defaults: {{user: root, identity_file: {lab.key}, known_hosts: {route.known_hosts}}}\n"
            f"hosts:\n  {route.host}: {{address: {route.address}, port: {route.port}}}\n"
        )

    def command(mode: str) -> Command:
        argv = [
            exe,
            "rollout",
            "--source",
            str(lab.registry_yml),
            "--registry",
            job.registry,
            "--registry-ca",
            str(job.ca_file),
            "-i",
            str(inventory),
            "--forks",
            str(FORKS),
        ]
        return Command(_ns(lab, argv), _env())

    return Tool("trust-agent", "tool", command)


def _ansible_inventory(lab: Lab, path: Path, route: Route | None = None) -> None:
    template = string.Template((HERE / "ansible" / "inventory.ini.tmpl").read_text())
    if route is None:
        lines = "\n".join(f"{h.name} ansible_host={h.address}" for h in lab.hosts)
        known_hosts = lab.known_hosts
    else:
        lines = f"{route.host} ansible_host={route.address} ansible_port={route.port}"
        known_hosts = route.known_hosts
    path.write_text(template.substitute(hosts=lines, key=lab.key, known_hosts=known_hosts))


def _stop_control_masters(control_dir: str) -> None:
    """End the ssh ControlPersist masters this run left (found by their socket directory; by pid)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmd.startswith(b"ssh\0") and control_dir.encode() in cmd:
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), 15)
    shutil.rmtree(control_dir, ignore_errors=True)


def ansible(lab: Lab, job: Job, work: Path, bin_dir: Path, route: Route | None = None) -> Tool:
    inventory = work / (f"ansible-{route.name}.ini" if route else "ansible-inventory.ini")
    _ansible_inventory(lab, inventory, route)

    def command(mode: str) -> Command:
        # A fresh control path per run: no run reuses another's SSH connections.
        control = tempfile.mkdtemp(prefix="cp-", dir="/tmp")
        argv = [
            str(bin_dir / "ansible-playbook"),
            "-i",
            str(inventory),
            str(HERE / "ansible" / "playbook.yml"),
            "-e",
            f"registry={job.registry}",
            "-e",
            f"ca_file={job.ca_file}",
        ]
        env = _env(
            ANSIBLE_CONFIG=str(HERE / "ansible" / "ansible.cfg"),
            ANSIBLE_SSH_CONTROL_PATH_DIR=control,
            ANSIBLE_LOCAL_TEMP=str(work / "ansible-tmp"),
            ANSIBLE_HOME=str(work / "ansible-home"),
            ANSIBLE_FORKS=str(FORKS),
        )
        return Command(_ns(lab, argv), env, cleanup=lambda: _stop_control_masters(control))

    return Tool("ansible", "tool", command)


def pyinfra(lab: Lab, job: Job, work: Path, bin_dir: Path, route: Route | None = None) -> Tool:
    def command(mode: str) -> Command:
        argv = [
            str(bin_dir / "pyinfra"),
            "-y",
            "--parallel",
            str(FORKS),
            str(HERE / "pyinfra" / "inventory.py"),
            str(HERE / "pyinfra" / "deploy.py"),
        ]
        env = _env(BENCH_LAB_DIR=str(lab.dir), BENCH_CA_FILE=str(job.ca_file), BENCH_REGISTRY=job.registry)
        if route is not None:  # inventory.py: this one host, as the route reaches it
            env.update(BENCH_TARGET=f"{route.address}:{route.port}", BENCH_KNOWN_HOSTS=str(route.known_hosts))
        return Command(_ns(lab, argv), env, cwd=str(work))

    return Tool("pyinfra", "tool", command)


def floor_paramiko(lab: Lab) -> Tool:
    def command(mode: str) -> Command:
        argv = [sys.executable, str(HERE / "floor_paramiko.py"), str(lab.dir), str(FORKS)]
        return Command(_ns(lab, argv), _env())

    return Tool("floor-paramiko", "floor", command)


def floor_job(lab: Lab, job: Job, work: Path) -> Tool:
    expected = work / "floor-job-daemon.json"
    expected.write_bytes(job.expected_daemon_json)

    def command(mode: str) -> Command:
        argv = [sys.executable, str(HERE / "floor_job.py"), str(lab.dir), str(FORKS)]
        argv += [str(job.ca_file), str(expected), job.registry]
        return Command(_ns(lab, argv), _env())

    return Tool("floor-job", "job-floor", command)


def floor_openssh(lab: Lab) -> Tool:
    options = " ".join(shlex.quote(o) for o in lab_ssh.options(lab.key, lab.known_hosts))
    addresses = " ".join(h.address for h in lab.hosts)
    # At most FORKS at once, like the others; xargs exits non-zero when any ssh failed.
    script = f"printf '%s\\n' {addresses} | xargs -P {FORKS} -I{{}} ssh {options} root@{{}} true"

    def command(mode: str) -> Command:
        return Command(_ns(lab, ["sh", "-c", script]), _env())

    return Tool("floor-openssh", "floor", command)
