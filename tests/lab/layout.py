"""Names and addresses of one lab, derived from its directory so several labs can coexist."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

NETWORK = ipaddress.IPv4Network("198.51.100.0/24")
BRIDGE_ADDRESS = "198.51.100.1"
REGISTRY_ADDRESS = "198.51.100.10"
S3_ADDRESS = "198.51.100.11"
S3_PORT = 9000
FIRST_HOST = 21
MAX_HOSTS = 254 - FIRST_HOST + 1
REGISTRY_NAME = "registry.test"
BUCKET = "registry"
FLAVOUR = "bookworm"
STORAGE_MODES = ("ca", "skipverify", "plain", "noredirect")
RUNNABLE_IMAGE = "lab/busybox:1"


@dataclass(frozen=True)
class Layout:
    dir: Path

    @property
    def id(self) -> str:
        return hashlib.sha1(str(self.dir).encode()).hexdigest()[:6]

    @property
    def lab_ns(self) -> str:
        return f"talab-{self.id}"

    def ns(self, part: str) -> str:
        return f"talab-{self.id}-{part}"

    @property
    def cgroup_rel(self) -> str:
        return f"trust-agent-lab/{self.id}"

    @property
    def ssh_dir(self) -> Path:
        return self.dir / "ssh"

    @property
    def key(self) -> Path:
        return self.ssh_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.ssh_dir / "known_hosts"

    @property
    def state_file(self) -> Path:
        return self.dir / "lab.json"

    @property
    def hosts_dir(self) -> Path:
        return self.dir / "hosts"

    @property
    def run_dir(self) -> Path:
        return self.dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.dir / "logs"


def host_name(index: int) -> str:
    return f"h{index + 1}"


def host_address(index: int) -> str:
    if not 0 <= index < MAX_HOSTS:
        raise ValueError(f"the lab holds at most {MAX_HOSTS} hosts")
    return str(NETWORK.network_address + FIRST_HOST + index)


def registry_authority(port: int) -> str:
    """The registry part of image references: docker names it without :443."""
    return REGISTRY_NAME if port == 443 else f"{REGISTRY_NAME}:{port}"
