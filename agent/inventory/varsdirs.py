"""``group_vars/`` and ``host_vars/`` beside an inventory file, found the way Ansible finds them.

For a name ``NAME`` only the first of ``NAME``, ``NAME.yml``, ``NAME.yaml``, ``NAME.json`` that exists
is read (Ansible's ``find_vars_files``): a file, or, where it is a directory, every such file under it
(sorted, recursively, hidden files and ``~`` backups skipped), later files overriding earlier ones.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from agent.errors import InventoryError
from agent.inventory.yamlfile import parse_yaml, refuse_vault_file

EXTENSIONS = ("", ".yml", ".yaml", ".json")
_MAX_DEPTH = 16


def vars_files(directory: str, name: str) -> list[str]:
    """The files ``name``'s variables come from: those of the first candidate that exists only."""
    base = os.path.join(directory, name)
    for ext in EXTENSIONS:
        path = base + ext
        if os.path.isdir(path):
            return _dir_files(path, 0)
        if os.path.exists(path):
            return [path]
    return []


def _dir_files(path: str, depth: int) -> list[str]:
    if depth > _MAX_DEPTH:
        return []
    out: list[str] = []
    for entry in sorted(os.listdir(path)):
        if entry.startswith(".") or entry.endswith("~"):
            continue
        full = os.path.join(path, entry)
        ext = os.path.splitext(entry)[1]
        if os.path.isdir(full) and not ext:
            out.extend(_dir_files(full, depth + 1))
        elif os.path.isfile(full) and (not ext or ext in EXTENSIONS):
            out.append(full)
    return out


def load_vars(directory: str, name: str) -> dict[str, Any]:
    """The merged variables for ``name`` from ``directory`` (``{}`` when there is none)."""
    merged: dict[str, Any] = {}
    for path in vars_files(directory, name):
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise InventoryError(f"cannot read: {exc.strerror}", where=path) from None
        refuse_vault_file(text, "variables file", path)
        doc = parse_yaml(text, path)
        if doc is None:
            continue
        if not isinstance(doc, Mapping):
            raise InventoryError(f"variables file must hold a mapping, got {type(doc).__name__}", where=path)
        merged.update({str(k): v for k, v in doc.items()})
    return merged


class VarsDirs:
    """The ``group_files``/``host_files`` lookups :meth:`InventoryData.build` takes."""

    def __init__(self, inventory_dir: str) -> None:
        self.group_dir = os.path.join(inventory_dir, "group_vars")
        self.host_dir = os.path.join(inventory_dir, "host_vars")

    def group(self, name: str) -> Mapping[str, Any]:
        return load_vars(self.group_dir, name) if os.path.isdir(self.group_dir) else {}

    def host(self, name: str) -> Mapping[str, Any]:
        return load_vars(self.host_dir, name) if os.path.isdir(self.host_dir) else {}
