"""Ansible's inventory data model while a file is read, and the variable precedence that resolves it.

Parsers call ``add_group``/``add_host``/``add_child``/``set_*_var`` in file order, as Ansible's
``InventoryData`` is fed; :meth:`InventoryData.build` then reconciles (``all``, ``ungrouped``) and
merges variables the way ``ansible-inventory --list`` shows them:

all (inventory) < other groups (inventory) < group_vars/all < group_vars/<group> < host (inventory)
< host_vars/<host> (Ansible's default ``VARIABLE_PRECEDENCE``: every group's inventory variables come
before any ``group_vars`` file); groups ordered by depth, then ``ansible_group_priority``, then name.
``ansible_group_priority`` itself is the group's sort key, not a variable: Ansible does not show it
in hostvars.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from agent.errors import InventoryError
from agent.inventory.fields import host_from_ansible_vars
from agent.inventory.model import Group, Inventory
from agent.inventory.patterns import group_order
from agent.inventory.templating import HostVars, ScopedVariables, host_variables

VarsLookup = Callable[[str], Mapping[str, Any]]

# Set in an inventory file, Ansible takes it as the group's sort key and not as a variable.
GROUP_PRIORITY = "ansible_group_priority"


def _inventory_group_vars(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k != GROUP_PRIORITY}


def _no_vars(_: str) -> Mapping[str, Any]:
    return {}


@dataclass
class _Group:
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)


class InventoryData:
    """Mutable while one file is parsed; :meth:`build` returns the frozen :class:`Inventory`."""

    def __init__(self, source: str) -> None:
        self.source = source
        # What Ansible's inventory_file names for the hosts read now where it is not ``source`` (a comma
        # host list: the list itself).
        self.inventory_file: str | None = None
        self.groups: dict[str, _Group] = {}
        self.hosts: dict[str, dict[str, Any]] = {}
        # host → the inventory_file it was first read from, as Ansible records it
        self.host_files: dict[str, str | None] = {}
        self.add_group("all")
        self.add_group("ungrouped")
        self.add_child("all", "ungrouped")

    def add_group(self, name: str, where: str | None = None) -> str:
        if not name or any(c.isspace() for c in name):
            raise InventoryError(f"invalid group name {name!r}", where=where or self.source)
        self.groups.setdefault(name, _Group())
        return name

    def add_host(self, name: str, group: str | None = None, port: int | None = None) -> None:
        """Add ``name`` (to ``group``). Like Ansible's, a ``host:port`` port counts only where the host is
        first seen (``h1:2201`` then ``h1:2202``: 2201); ``ansible_port=`` set later still wins."""
        new = name not in self.hosts
        self.hosts.setdefault(name, {})
        self.host_files.setdefault(name, self.inventory_file or self.source)
        # Hosts listed directly under ``all`` are reconciled into ``ungrouped``, like Ansible does.
        if group and group != "all":
            members = self.groups[group].hosts
            if name not in members:
                members.append(name)
        if new and port is not None:
            self.hosts[name]["ansible_port"] = port

    def add_child(self, parent: str, child: str, where: str | None = None) -> None:
        if child == "all":
            raise InventoryError(f"group 'all' cannot be a child of {parent!r}", where=where or self.source)
        if parent == child or parent in self._descendants(child):
            raise InventoryError(
                f"adding group {child!r} to {parent!r} creates a loop", where=where or self.source
            )
        if child not in self.groups[parent].children:
            self.groups[parent].children.append(child)
            self.groups[child].parents.append(parent)

    def set_group_var(self, group: str, key: str, value: Any) -> None:
        self.groups[group].vars[key] = value

    def set_host_var(self, host: str, key: str, value: Any) -> None:
        """Set a host's variable; where a group already has the host's name, the group's, as Ansible's
        ``InventoryData.set_variable`` looks a name up among groups first (it warns "Found both group
        and host with same name")."""
        if host in self.groups:
            self.set_group_var(host, key, value)
        else:
            self.hosts[host][key] = value

    def _descendants(self, group: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.groups[group].children)
        while stack:
            g = stack.pop()
            if g not in seen:
                seen.add(g)
                stack.extend(self.groups[g].children)
        return seen

    def _reconcile(self) -> None:
        for name, g in self.groups.items():
            if name != "all" and not g.parents:
                self.add_child("all", name)
        grouped = {h for name, g in self.groups.items() if name != "ungrouped" for h in g.hosts}
        ungrouped = self.groups["ungrouped"]
        ungrouped.hosts = [h for h in ungrouped.hosts if h not in grouped]
        ungrouped.hosts += [h for h in self.hosts if h not in grouped and h not in ungrouped.hosts]

    def _depths(self) -> dict[str, int]:
        depth: dict[str, int] = {"all": 0}
        frontier = ["all"]
        # Longest path from ``all``; the graph has no loops (add_child refuses them).
        for _ in range(len(self.groups) + 1):
            nxt: list[str] = []
            for g in frontier:
                for c in self.groups[g].children:
                    if depth.get(c, -1) < depth[g] + 1:
                        depth[c] = depth[g] + 1
                        nxt.append(c)
            if not nxt:
                break
            frontier = nxt
        return depth

    def _priority(self, group: str) -> int:
        value = self.groups[group].vars.get(GROUP_PRIORITY, 1)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise InventoryError(
                f"group {group!r}: ansible_group_priority must be a number, got {value!r}", where=self.source
            ) from None

    def build(self, group_files: VarsLookup = _no_vars, host_files: VarsLookup = _no_vars) -> Inventory:
        """Reconcile and resolve every host's variables; ``*_files`` return group_vars/host_vars content."""
        self._reconcile()
        depth = self._depths()
        host_groups: dict[str, set[str]] = {h: set() for h in self.hosts}
        for name, g in self.groups.items():
            for h in g.hosts:
                host_groups[h].add(name)
        parents = {name: g.parents for name, g in self.groups.items()}

        def ancestors(direct: set[str]) -> set[str]:
            out: set[str] = set()
            stack = list(direct)
            while stack:
                g = stack.pop()
                if g not in out:
                    out.add(g)
                    stack.extend(parents[g])
            out.discard("all")
            return out

        all_file = group_files("all")
        file_vars = {name: group_files(name) for name in self.groups if name != "all"}
        host_groups_sorted: dict[str, tuple[str, ...]] = {}
        merged_vars: dict[str, dict[str, Any]] = {}
        for name, inv_vars in self.hosts.items():
            groups = sorted(
                ancestors(host_groups[name]), key=lambda g: (depth.get(g, 1), self._priority(g), g)
            )
            merged: dict[str, Any] = {}
            for gname in ("all", *groups):
                merged.update(_inventory_group_vars(self.groups[gname].vars))
            merged.update(all_file)
            for gname in groups:
                merged.update(file_vars[gname])
            merged.update(inv_vars)
            merged.update(host_files(name))
            merged_vars[name] = merged
            host_groups_sorted[name] = tuple(sorted(groups))

        out_groups = {
            name: Group(
                name,
                tuple(g.hosts),
                tuple(g.children),
                MappingProxyType({**g.vars, **(all_file if name == "all" else file_vars[name])}),
            )
            for name, g in self.groups.items()
        }
        scoped = self._scoped(merged_vars, host_groups_sorted, out_groups)
        hosts = [
            host_from_ansible_vars(name, scoped[name], host_groups_sorted[name], self.source)
            for name in self.hosts
        ]
        return Inventory(tuple(hosts), MappingProxyType(out_groups), self.source)

    def _scoped(
        self,
        merged: Mapping[str, dict[str, Any]],
        host_groups: Mapping[str, tuple[str, ...]],
        groups: Mapping[str, Group],
    ) -> dict[str, ScopedVariables]:
        """Every host's variables with what templates may also read of the inventory (Ansible's
        ``inventory_file``, ``inventory_dir``, ``groups``, ``hostvars``)."""
        contexts: dict[str, Mapping[str, Any]] = {}
        shared = {"groups": {g: group_order(groups, g) for g in groups}, "hostvars": HostVars(contexts)}
        scoped: dict[str, ScopedVariables] = {}
        for name, values in merged.items():
            source = self.host_files.get(name)
            scope = {
                **shared,
                "inventory_file": _inventory_file(source),
                "inventory_dir": _inventory_dir(source),
            }
            scoped[name] = ScopedVariables(values, scope)
            contexts[name] = host_variables(name, scoped[name], host_groups[name])
        return scoped


def _inventory_file(source: str | None) -> str | None:
    """Ansible's ``inventory_file``: the source as an absolute path (a comma host list as written)."""
    if source is None or ("," in source and not os.path.exists(source)):
        return source
    return os.path.normpath(os.path.abspath(os.path.expanduser(source)))


def _inventory_dir(source: str | None) -> str | None:
    """Ansible's ``inventory_dir``: the source's directory (a directory source: itself); ``None`` for a
    host list."""
    path = _inventory_file(source)
    if path is None or not os.path.exists(path):
        return None
    return path if os.path.isdir(path) else os.path.dirname(path)
