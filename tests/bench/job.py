"""The one job every tool does, and what each host must look like afterwards.

On every host: the registry's CA as ``/etc/docker/certs.d/<registry>/trust-agent-registry-ca.crt``,
``<registry>`` merged into ``insecure-registries`` in the existing ``daemon.json`` (other keys kept, in
order), and ``systemctl reload docker`` only where daemon.json changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.lab import Lab

REGISTRY = "registry.test"
CA_NAME = "trust-agent-registry-ca.crt"
DAEMON_JSON = "/etc/docker/daemon.json"
# The lab's base image keeps the pristine daemon.json here (tests/lab/rootfs.py).
BASE_DAEMON_JSON = "/usr/local/share/trust-agent-lab/daemon.json"


def ca_path(registry: str = REGISTRY) -> str:
    return f"/etc/docker/certs.d/{registry}/{CA_NAME}"


def serialise(doc: dict[str, Any], indent: int | str = 2) -> bytes:
    """daemon.json as trust-agent writes it (the anchors copy this exactly)."""
    return (json.dumps(doc, indent=indent, ensure_ascii=False) + "\n").encode()


def merged(doc: dict[str, Any], registry: str = REGISTRY) -> dict[str, Any]:
    """``doc`` with ``registry`` in ``insecure-registries`` (appended; other keys untouched, in order)."""
    out = dict(doc)
    entries = list(out.get("insecure-registries") or [])
    if registry not in entries:
        entries.append(registry)
    out["insecure-registries"] = entries
    return out


@dataclass(frozen=True)
class Job:
    """The job's inputs on one lab, and the expected end state of every host."""

    lab_dir: Path
    registry: str
    ca_file: Path  # the registry's own CA, as given to every tool
    ca_bytes: bytes
    base_doc: dict[str, Any]

    @property
    def expected_doc(self) -> dict[str, Any]:
        return merged(self.base_doc, self.registry)

    @property
    def expected_daemon_json(self) -> bytes:
        return serialise(self.expected_doc)


def job_for(lab: Lab, base_daemon_json: bytes) -> Job:
    return Job(
        lab_dir=Path(lab.dir),
        registry=REGISTRY,
        ca_file=Path(lab.registry_ca),
        ca_bytes=Path(lab.registry_ca).read_bytes(),
        base_doc=json.loads(base_daemon_json),
    )
