"""What an inventory holds once read: hosts with their connection settings, and the groups they form."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from agent.errors import InventoryError


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Host:
    """One engine host and how to reach it.

    ``vars`` are the host's effective variables (group and host variables merged, as Ansible sees
    them); ``groups`` are every group the host belongs to, directly or through children, minus ``all``.
    """

    name: str
    address: str
    port: int = 22
    # Whether the inventory gives the port (ansible_port, `host:port`, trust-agent's `port`): Ansible then
    # passes `-o Port=` ahead of ssh_config, so even 22 wins over a config's Port.
    port_given: bool = False
    user: str | None = None
    identity_file: str | None = None
    become: bool = False
    become_user: str | None = None
    known_hosts: str | None = None
    # ssh_config options the inventory sets on ssh's command line (Ansible's ansible_ssh_common_args):
    # lower-case names, in order, over ssh_config's (agent.inventory.ssh_args)
    ssh_options: tuple[tuple[str, str], ...] = ()
    # Why this host cannot be acted on over SSH as the inventory asks (Ansible's ansible_connection=local,
    # a become method other than sudo); None where it can. The host then fails alone, saying so.
    refused: str | None = None
    # The inventory's sudo password (Ansible's ansible_become_password), where it gives one in clear;
    # where it gives one that cannot be used here (vault-encrypted), why.
    become_password: str | None = field(default=None, repr=False, compare=False)
    become_password_note: str | None = None
    vars: Mapping[str, Any] = field(default_factory=_empty, compare=False, repr=False)  # may hold secrets
    groups: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.name if self.name == self.address else f"{self.name} ({self.address})"

    @property
    def given_port(self) -> int | None:
        """The port the inventory gives, where it gives one (any port but ssh's default is given)."""
        return self.port if self.port_given or self.port != 22 else None


@dataclass(frozen=True)
class Group:
    """A group as written: its direct members, its child groups, and its own variables."""

    name: str
    hosts: tuple[str, ...] = ()
    children: tuple[str, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=_empty, compare=False)


@dataclass(frozen=True)
class Inventory:
    """Hosts in a stable order (first appearance in the file) and the groups that name them.

    ``groups`` always holds ``all`` and ``ungrouped``, like Ansible.

    >>> inv = Inventory((Host("h1", "198.51.100.21"),), {"all": Group("all", children=("ungrouped",)),
    ...                  "ungrouped": Group("ungrouped", hosts=("h1",))})
    >>> inv.group_hosts("all")
    ('h1',)
    """

    hosts: tuple[Host, ...]
    groups: Mapping[str, Group]
    source: str = ""
    # "ansible": Host.vars hold the ansible_* connection variables; "trust-agent": Host fields do.
    format: Literal["ansible", "trust-agent"] = "ansible"

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hosts)

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise InventoryError(f"no host named {name!r}", where=self.source or None)

    def group_hosts(self, group: str) -> tuple[str, ...]:
        """Every host in ``group`` or its descendants, in inventory order."""
        if group == "all":
            return self.names
        if group not in self.groups:
            raise InventoryError(f"no group named {group!r}", where=self.source or None)
        members: set[str] = set()
        seen: set[str] = set()
        stack = [group]
        while stack:  # bounded: each group is visited once
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            g = self.groups[name]
            members.update(g.hosts)
            stack.extend(c for c in g.children if c in self.groups)
        return tuple(n for n in self.names if n in members)

    def limit(self, pattern: str) -> Inventory:
        """The same inventory reduced to the hosts an Ansible-style ``--limit`` pattern selects."""
        from agent.inventory.patterns import select

        keep = set(select(self, pattern))
        groups = {
            name: Group(g.name, tuple(h for h in g.hosts if h in keep), g.children, g.vars)
            for name, g in self.groups.items()
        }
        return Inventory(tuple(h for h in self.hosts if h.name in keep), groups, self.source, self.format)
