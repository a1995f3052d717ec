"""Render an inventory in the JSON shape of ``ansible-inventory --list``."""

from __future__ import annotations

import datetime
from typing import Any

from agent.inventory.model import Host, Inventory
from agent.inventory.yamlfile import tags_to_json

# Host fields as Ansible variables, for inventories that hold them as fields (trust-agent's format).
_FIELD_VARS = (
    ("address", "ansible_host"),
    ("port", "ansible_port"),
    ("user", "ansible_user"),
    ("identity_file", "ansible_ssh_private_key_file"),
    ("become", "ansible_become"),
    ("become_user", "ansible_become_user"),
)


def hostvars(host: Host, from_ansible: bool, *, unsafe_marked: bool = True) -> dict[str, Any]:
    """``host``'s variables as ansible-inventory prints them (``--list``, or ``--host`` without
    ``unsafe_marked``)."""
    if from_ansible:
        return _as_json(tags_to_json(dict(host.vars), unsafe_marked=unsafe_marked))  # type: ignore[no-any-return]
    out: dict[str, Any] = {}
    # A port the inventory gives is printed even where it is 22, as Ansible prints ansible_port: 22.
    defaults: dict[str, Any] = {"address": host.name, "become": False}
    if not host.port_given:
        defaults["port"] = 22
    for attr, var in _FIELD_VARS:
        value = getattr(host, attr)
        if value is not None and defaults.get(attr) != value:
            out[var] = value
    out.update(host.vars)
    return _as_json(out)  # type: ignore[no-any-return]


def _as_json(value: Any) -> Any:
    """Values as Ansible's JSON encoder writes them: YAML dates and timestamps in ISO 8601
    (``2024-01-02T10:11:12``), sets as lists."""
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return [_as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    return value


def to_ansible_list(inv: Inventory) -> dict[str, Any]:
    """``{"_meta": {"hostvars": …}, "all": {"children": […]}, "<group>": {"hosts": […], "children": […]}}``.

    Empty keys and empty groups are left out, as ansible-inventory does; ``all`` lists no hosts.
    A trust-agent inventory's host fields are rendered as the ``ansible_*`` variables they stand for.
    """
    from_ansible = inv.format == "ansible"
    known = set(inv.names)
    out: dict[str, Any] = {}
    seen: set[str] = set()

    def visit(name: str) -> None:
        group = inv.groups[name]
        body: dict[str, Any] = {}
        if name != "all":
            body["hosts"] = [h for h in group.hosts if h in known]
        body["children"] = list(group.children)
        out[name] = {k: v for k, v in body.items() if v}
        for child in group.children:
            if child not in seen and child in inv.groups:
                seen.add(child)
                visit(child)
        if not out[name]:
            del out[name]

    visit("all")
    listed = {h.name: v for h in inv.hosts if (v := hostvars(h, from_ansible))}
    return {"_meta": {"hostvars": listed}, **out}
