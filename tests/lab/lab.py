"""The `Lab` handle: what tests and tools use to reach a running lab, read from DIR/lab.json."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.lab import network, procs, ssh
from tests.lab.layout import S3_ADDRESS, S3_PORT, Layout
from tests.lab.procs import Proc

# The CLI as installed in the project venv; the module form works from a bare checkout too.
_AGENT_SCRIPT = Path(sys.executable).with_name("trust-agent")
AGENT_ARGV = [str(_AGENT_SCRIPT)] if _AGENT_SCRIPT.exists() else [sys.executable, "-m", "agent.cli"]


class LabError(RuntimeError):
    pass


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    flavour: str


def layout_of(dir: str | Path) -> Layout:
    return Layout(Path(dir).resolve())


def save_state(layout: Layout, state: dict[str, Any]) -> None:
    tmp = layout.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(layout.state_file)


def load_state(layout: Layout) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(layout.state_file.read_text())
    except (OSError, ValueError):
        return None
    return data


class Lab:
    """A running lab, read from DIR/lab.json."""

    def __init__(self, dir: str | Path) -> None:
        self.layout = layout_of(dir)
        state = load_state(self.layout)
        if state is None:
            raise LabError(
                f"no lab in {self.layout.dir} (run: python -m tests.lab up --dir {self.layout.dir})"
            )
        self.state = state
        self.hosts = [Host(h["name"], h["address"], h["flavour"]) for h in state["hosts"]]

    @property
    def dir(self) -> Path:
        """The lab's directory."""
        return self.layout.dir

    @property
    def namespace(self) -> str:
        """The lab network namespace (under /run/netns)."""
        return self.layout.lab_ns

    @property
    def key(self) -> Path:
        """The lab's SSH private key (ssh/id_ed25519)."""
        return self.layout.key

    @property
    def known_hosts(self) -> Path:
        """The hosts' real keys, by address."""
        return self.layout.known_hosts

    @property
    def inventory_yml(self) -> Path:
        return self.layout.dir / "inventory.yml"

    @property
    def inventory_ini(self) -> Path:
        return self.layout.dir / "inventory.ini"

    @property
    def registry_yml(self) -> Path:
        return self.layout.dir / "registry.yml"

    @property
    def dtr_settings(self) -> Path:
        return self.layout.dir / "dtr-settings.json"

    @property
    def registry_ca(self) -> Path:
        return self.layout.dir / "registry-ca.pem"

    @property
    def storage_ca(self) -> Path:
        return self.layout.dir / "storage-ca.pem"

    @property
    def s3_log(self) -> Path:
        """The S3 server's access log: which address read which blob."""
        return self.layout.log_dir / "s3.log"

    @property
    def image(self) -> str:
        """The image in the registry, e.g. registry.test/test/busybox:1."""
        return str(self.state["images"]["registry"])

    @property
    def runnable_image(self) -> str:
        """An image present on every host, for a long-running container (`sleep`)."""
        return str(self.state["images"]["runnable"])

    @property
    def registry(self) -> str:
        """The registry as image references and certs.d name it: registry.test[:port]."""
        return str(self.state["registry"]["authority"])

    @property
    def storage_mode(self) -> str:
        return str(self.state["params"]["storage"])

    @property
    def s3_authority(self) -> str:
        return f"{S3_ADDRESS}:{S3_PORT}"

    @property
    def timings(self) -> dict[str, float]:
        return dict(self.state.get("timings", {}))

    @property
    def flavours(self) -> list[str]:
        """The hosts' flavours (Debian releases), each once, in host order."""
        return list(dict.fromkeys(h.flavour for h in self.hosts))

    def hosts_of(self, flavour: str) -> list[Host]:
        return [h for h in self.hosts if h.flavour == flavour]

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name or h.address == name:
                return h
        raise KeyError(name)

    def ssh(
        self, host: Host | str, cmd: str, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run shell text CMD on HOST as root over real SSH (strict host-key checking)."""
        h = host if isinstance(host, Host) else self.host(host)
        return ssh.run(self.namespace, self.key, self.known_hosts, h.address, cmd, check, timeout, input)

    def ssh_all(
        self, cmd: str, check: bool = True, timeout: float = 120
    ) -> dict[str, subprocess.CompletedProcess[str]]:
        with ThreadPoolExecutor(max_workers=min(32, len(self.hosts))) as pool:
            futs = {h.name: pool.submit(self.ssh, h, cmd, check, timeout) for h in self.hosts}
            return {name: f.result() for name, f in futs.items()}

    def run_in_ns(
        self, argv: Sequence[str], check: bool = False, timeout: float = 300, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run ARGV inside the lab's network namespace (where the agent and probes reach the hosts)."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(
            [*network.nsenter(self.namespace), *argv], check=check, timeout=timeout, **kwargs
        )

    def run_agent(
        self, *args: str, check: bool = False, timeout: float = 300, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run the trust-agent CLI with ARGS inside the lab namespace."""
        return self.run_in_ns([*AGENT_ARGV, *args], check=check, timeout=timeout, **kwargs)

    def popen_agent(self, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        """Start the trust-agent CLI with ARGS inside the lab namespace, not waiting for it: its stdout
        and stderr are pipes of text."""
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen([*network.nsenter(self.namespace), *AGENT_ARGV, *args], text=True, **kwargs)

    def reset(self) -> None:
        """Return every host's trust state to the base image's (see tests/lab/reset.sh)."""
        script = (Path(__file__).with_name("reset.sh")).read_text()
        self.ssh_all(script, check=True, timeout=120)

    def status(self) -> dict[str, Any]:
        alive = {
            "registry": procs.alive(Proc.from_json(self.state["registry"]["proc"])),
            "s3": procs.alive(Proc.from_json(self.state["s3"]["proc"])),
        }
        host_status = {}
        for h in self.state["hosts"]:
            host_status[h["name"]] = procs.alive(Proc.from_json(h["proc"]))
        return {
            "dir": str(self.dir),
            "status": self.state["status"],
            "processes": alive,
            "hosts": host_status,
        }
