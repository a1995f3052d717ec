"""``load_inventory``: read an inventory file in any supported format (auto-detected)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from agent.errors import InventoryError
from agent.inventory.ansible_ini import parse_ini
from agent.inventory.ansible_yaml import parse_ansible_yaml
from agent.inventory.builder import InventoryData
from agent.inventory.model import Inventory
from agent.inventory.native import looks_native, parse_native
from agent.inventory.ranges import expand_host_pattern
from agent.inventory.varsdirs import VarsDirs
from agent.inventory.yamlfile import parse_yaml

YAML_EXTENSIONS = (".yml", ".yaml", ".json")


def load_inventory(path: str) -> Inventory:
    """Read ``path``: trust-agent YAML, Ansible YAML, or Ansible INI, with ``group_vars``/``host_vars``.

    Like ``ansible -i 'h1,h2,'``, a string with a comma that is not an existing file is a host list.
    Every problem is an :class:`InventoryError` naming the file and, where known, the line.
    """
    if "," in path and not os.path.exists(path):
        return host_list(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InventoryError(f"cannot read inventory: {reason}", where=path) from None

    is_yaml_file = path.lower().endswith(YAML_EXTENSIONS)
    doc: object = None
    if is_yaml_file:
        doc = parse_yaml(text, path)
    else:
        try:
            doc = parse_yaml(text, path)
        except InventoryError:
            doc = None  # not YAML: INI (the common case for a file named "hosts")
    if isinstance(doc, Mapping) and doc and looks_native(doc):
        return parse_native(doc, path)
    data = InventoryData(path)
    if isinstance(doc, Mapping) and doc:
        parse_ansible_yaml(doc, data)
    elif is_yaml_file:
        raise InventoryError("YAML inventory must be a mapping of groups", where=path)
    else:
        parse_ini(text, data)
    dirs = VarsDirs(os.path.dirname(os.path.abspath(path)))
    inv = data.build(dirs.group, dirs.host)
    if not inv.hosts:
        raise InventoryError("inventory holds no hosts", where=path)
    return inv


def host_list(spec: str) -> Inventory:
    """``h1,h2:2222,`` → an inventory of ungrouped hosts."""
    data = InventoryData("<host list>")
    for item in spec.split(","):
        if item.strip():
            names, port = expand_host_pattern(item)
            for name in names:
                data.add_host(name, None, port)
    if not data.hosts:
        raise InventoryError(f"host list {spec!r} names no hosts")
    return data.build()
