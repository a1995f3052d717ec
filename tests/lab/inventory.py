"""The fleet as its users' tools see it: trust-agent's inventory.yml and an Ansible INI inventory."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import yaml

from tests.lab.hosts import HostRecord


def trust_agent(records: list[HostRecord], key: Path, known_hosts: Path) -> str:
    groups: dict[str, list[str]] = defaultdict(list)
    for h in records:
        groups[h.flavour].append(h.name)
    doc = {
        "defaults": {"user": "root", "port": 22, "identity_file": str(key), "known_hosts": str(known_hosts)},
        "hosts": {h.name: {"address": h.address, "vars": {"flavour": h.flavour}} for h in records},
        "groups": dict(groups),
    }
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)


def ansible_ini(records: list[HostRecord], key: Path, known_hosts: Path) -> str:
    lines = ["[all]"]
    lines += [
        f"{h.name} ansible_host={h.address} ansible_user=root ansible_ssh_private_key_file={key} flavour={h.flavour}"
        for h in records
    ]
    groups: dict[str, list[str]] = defaultdict(list)
    for h in records:
        groups[h.flavour].append(h.name)
    for group, names in groups.items():
        lines += ["", f"[{group}]", *names]
    lines += [
        "",
        "[all:vars]",
        f"ansible_ssh_common_args='-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes'",
    ]
    return "\n".join(lines) + "\n"


def write(dir: Path, records: list[HostRecord], key: Path, known_hosts: Path) -> None:
    (dir / "inventory.yml").write_text(trust_agent(records, key, known_hosts))
    (dir / "inventory.ini").write_text(ansible_ini(records, key, known_hosts))
