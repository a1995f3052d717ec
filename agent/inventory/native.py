"""trust-agent's own inventory format.

.. code-block:: yaml

    defaults: {user: root, port: 22, identity_file: ssh/id_ed25519, known_hosts: ssh/known_hosts}
    hosts:
      h1: {address: 198.51.100.21, vars: {flavour: bookworm}}
      h2: {address: 198.51.100.22, port: 2222, user: admin, become: true}
    groups:
      bookworm: [h1, h2]              # or {hosts: [h1], children: [other]}

Relative ``identity_file``/``known_hosts`` paths are resolved against the inventory file's directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from agent.errors import InventoryError
from agent.inventory.fields import parse_bool, parse_port
from agent.inventory.model import Group, Host, Inventory
from agent.inventory.yamlfile import where

HOST_KEYS = frozenset(
    {"address", "port", "user", "identity_file", "become", "become_user", "known_hosts", "vars"}
)
TOP_KEYS = frozenset({"defaults", "hosts", "groups"})


def looks_native(doc: Mapping[str, Any]) -> bool:
    """A top-level ``defaults`` key, or ``hosts`` entries with an ``address``."""
    if "defaults" in doc:
        return True
    hosts = doc.get("hosts")
    if not isinstance(hosts, Mapping) or "hosts" in hosts or "children" in hosts:
        return False
    return any(isinstance(v, Mapping) and "address" in v for v in hosts.values())


def _mapping(value: Any, what: str, at: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InventoryError(f"{what} must be a mapping, got {type(value).__name__}", where=at)
    return value


def _names(value: Any, what: str, at: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InventoryError(f"{what} must be a list of names", where=at)
    return list(value)


def parse_native(doc: Mapping[str, Any], source: str) -> Inventory:
    base = os.path.dirname(os.path.abspath(source))
    for key in doc:
        if key not in TOP_KEYS:
            raise InventoryError(
                f"unknown key {key!r}; expected defaults, hosts, groups", where=where(source, doc, key)
            )
    defaults = _mapping(doc.get("defaults"), "defaults", where(source, doc, "defaults"))
    raw_hosts = _mapping(doc.get("hosts"), "hosts", where(source, doc, "hosts"))
    if not raw_hosts:
        raise InventoryError("no hosts", where=source)
    _check_keys(defaults, "defaults", source)
    raw_groups = _mapping(doc.get("groups"), "groups", where(source, doc, "groups"))

    groups: dict[str, Group] = {}
    for name, body in raw_groups.items():
        at = where(source, raw_groups, name)
        if isinstance(body, Mapping):
            members = _names(body.get("hosts"), f"group {name!r} hosts", at)
            children = _names(body.get("children"), f"group {name!r} children", at)
        else:
            members, children = _names(body, f"group {name!r}", at), []
        for h in members:
            if h not in raw_hosts:
                raise InventoryError(f"group {name!r} names unknown host {h!r}", where=at)
        for c in children:
            if c not in raw_groups:
                raise InventoryError(f"group {name!r} names unknown child group {c!r}", where=at)
        groups[str(name)] = Group(str(name), tuple(dict.fromkeys(members)), tuple(children))

    membership = _membership(groups)
    hosts = tuple(
        _host(str(name), body, defaults, membership.get(str(name), ()), base, source, raw_hosts)
        for name, body in raw_hosts.items()
    )
    grouped = {h for g in groups.values() for h in g.hosts}
    ungrouped = tuple(h.name for h in hosts if h.name not in grouped)
    children_of_all = ("ungrouped", *[n for n in groups if not any(n in g.children for g in groups.values())])
    groups = {
        "all": Group("all", (), tuple(children_of_all)),
        "ungrouped": Group("ungrouped", ungrouped),
        **groups,
    }
    return Inventory(hosts, MappingProxyType(groups), source, "trust-agent")


def _membership(groups: Mapping[str, Group]) -> dict[str, tuple[str, ...]]:
    """host → every group holding it directly or through a child group."""
    out: dict[str, set[str]] = {}
    for name in groups:
        stack, seen = [name], set()
        while stack:
            g = stack.pop()
            if g in seen:
                continue
            seen.add(g)
            for h in groups[g].hosts:
                out.setdefault(h, set()).add(name)
            stack.extend(groups[g].children)
    return {h: tuple(sorted(gs)) for h, gs in out.items()}


def _check_keys(body: Mapping[str, Any], what: str, source: str) -> None:
    for key in body:
        if key not in HOST_KEYS:
            raise InventoryError(
                f"{what}: unknown key {key!r}; expected one of {', '.join(sorted(HOST_KEYS))}",
                where=where(source, body, key),
            )


def _path(value: Any, base: str) -> str | None:
    if value is None:
        return None
    path = os.path.expanduser(str(value))
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def _host(
    name: str,
    body: Any,
    defaults: Mapping[str, Any],
    groups: tuple[str, ...],
    base: str,
    source: str,
    raw_hosts: Mapping[str, Any],
) -> Host:
    at = where(source, raw_hosts, name)
    body = _mapping(body, f"host {name!r}", at)
    _check_keys(body, f"host {name!r}", source)
    merged = {**defaults, **body}
    address = merged.get("address")
    if not address:
        raise InventoryError(f"host {name!r} has no address", where=at)
    become_user = merged.get("become_user")
    user = merged.get("user")
    values = {**_mapping(defaults.get("vars"), "defaults.vars", at), **_mapping(body.get("vars"), "vars", at)}
    return Host(
        name=name,
        address=str(address),
        port=parse_port(merged.get("port", 22), f"host {name!r}: port", at),
        port_given="port" in merged,
        user=None if user is None else str(user),
        identity_file=_path(merged.get("identity_file"), base),
        become=parse_bool(merged.get("become", False), f"host {name!r}: become", at),
        become_user=None if become_user is None else str(become_user),
        known_hosts=_path(merged.get("known_hosts"), base),
        vars=MappingProxyType(values),
        groups=groups or ("ungrouped",),
    )
