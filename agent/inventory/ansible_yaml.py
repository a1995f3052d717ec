"""Ansible YAML inventories (``all: {hosts:, children:, vars:}``), read like Ansible's ``yaml`` plugin."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.errors import InventoryError
from agent.inventory.builder import InventoryData
from agent.inventory.ranges import expand_host_pattern
from agent.inventory.yamlfile import where

_SECTIONS = ("vars", "children", "hosts")


def parse_ansible_yaml(doc: Mapping[str, Any], data: InventoryData) -> None:
    """Feed ``data`` from a parsed YAML inventory: every top-level key is a group."""
    for name, body in doc.items():
        _group(_name(name, "group", data.source, doc), body, data, where(data.source, doc, name))


def _name(key: Any, what: str, source: str, mapping: Any) -> str:
    """A group or host key, which Ansible takes as text only: ``1:`` or ``2024-01-01:`` must be quoted."""
    if not isinstance(key, str):
        raise InventoryError(
            f"{what} name {key!r} is a {type(key).__name__}, not text: quote it ({str(key)!r}), as Ansible "
            "requires",
            where=where(source, mapping, key),
        )
    return key


def _group(name: str, body: Any, data: InventoryData, at: str) -> str:
    if body is not None and not isinstance(body, Mapping):
        raise InventoryError(
            f"group {name!r} must be a mapping of hosts/children/vars, got {type(body).__name__}", where=at
        )
    data.add_group(name, at)
    if not body:
        return name
    for key, value in body.items():
        key_at = where(data.source, body, key)
        if key not in _SECTIONS:
            raise InventoryError(
                f"group {name!r} has unexpected key {key!r}; only hosts, children and vars are valid",
                where=key_at,
            )
        if isinstance(value, str):
            value = {value: None}  # Ansible accepts a lone name for a one-entry section
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise InventoryError(
                f"group {name!r}: {key} must be a mapping, got {type(value).__name__}", where=key_at
            )
        if key == "vars":
            for var, val in value.items():
                data.set_group_var(name, str(var), val)
        elif key == "children":
            for child, child_body in value.items():
                child_at = where(data.source, value, child)
                child_name = _name(child, "group", data.source, value)
                data.add_child(name, _group(child_name, child_body, data, child_at), child_at)
        else:
            for pattern, host_vars in value.items():
                host = _name(pattern, "host", data.source, value)
                _hosts(host, host_vars, name, data, where(data.source, value, pattern))
    return name


def _hosts(pattern: str, host_vars: Any, group: str, data: InventoryData, at: str) -> None:
    if host_vars is not None and not isinstance(host_vars, Mapping):
        raise InventoryError(
            f"host {pattern!r} in group {group!r}: variables must be a mapping, got "
            f"{type(host_vars).__name__}",
            where=at,
        )
    try:
        names, port = expand_host_pattern(pattern)
    except InventoryError as exc:
        raise InventoryError(exc.message, where=at) from None
    for host in names:
        data.add_host(host, group, port)
        for key, value in (host_vars or {}).items():
            data.set_host_var(host, str(key), value)
