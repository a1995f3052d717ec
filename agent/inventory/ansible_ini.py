"""Ansible INI inventories, read the way Ansible's ``ini`` plugin reads them.

Values are Python-literal-evaluated like Ansible does (``2222`` → int, ``True`` → bool, ``"a b"`` → str)
in host lines and in ``[group:vars]`` sections alike; anything else stays a string. Literals a variable
cannot hold become what Ansible makes of them: tuples and sets lists, bytes ``!unsafe`` text, complex
numbers and ``...`` their text.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from dataclasses import dataclass, field
from typing import Any

from agent.errors import InventoryError
from agent.inventory.builder import InventoryData
from agent.inventory.ranges import expand_host_pattern
from agent.inventory.yamlfile import UnsafeText

# As Ansible's ini plugin: after a section header or a child group name only a ``#`` comment may
# follow (``;`` comments only whole lines).
_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
_COMMENTS = ("#", ";")


def parse_value(text: str) -> Any:
    """Ansible's INI value rule: a Python literal when it is one, else the text itself."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _variable_value(value)


def _variable_value(value: Any) -> Any:
    """A literal as Ansible's ini plugin keeps it (its ``_parse_recursive_coerce_types_and_tag``)."""
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_variable_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _variable_value(v) for k, v in value.items()}
    if value is Ellipsis:
        return "..."
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, bytes):
        # Ansible marks text from a bytes literal unsafe: it is never templated.
        return UnsafeText(value.decode("utf-8", errors="surrogateescape"))
    return value


@dataclass
class _Pending:
    line: int
    state: str
    parents: list[str] = field(default_factory=list)


def parse_ini(text: str, data: InventoryData) -> None:
    """Feed ``data`` with the groups, hosts and variables of INI ``text``; errors name ``file:line``."""
    group, state = "ungrouped", "hosts"
    pending: dict[str, _Pending] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        where = f"{data.source}:{lineno}"
        line = raw.strip()
        if not line or line.startswith(_COMMENTS):
            continue
        m = _SECTION.match(line)
        if m:
            group, state = m.group(1), m.group(2) or "hosts"
            if state not in ("hosts", "children", "vars"):
                raise InventoryError(f"section [{group}:{state}] has unknown type {state!r}", where=where)
            if group not in data.groups:
                # [g:vars] alone does not declare g; it must be declared somewhere in the file.
                if state == "vars" and group not in pending:
                    pending[group] = _Pending(lineno, state)
                data.add_group(group, where)
            if group in pending and state != "vars":
                _resolve(group, pending, data, where)
            continue
        if line.startswith("[") and line.endswith("]"):
            raise InventoryError(
                f"invalid section {line!r} (no spaces allowed in section names)", where=where
            )
        if state == "hosts":
            _host_line(line, group, data, where)
        elif state == "vars":
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise InventoryError(f"expected key=value in [{group}:vars], got {line!r}", where=where)
            data.set_group_var(group, key.strip(), parse_value(value.strip()))
        else:
            cm = _GROUP_NAME.match(line)
            if not cm:
                raise InventoryError(
                    f"expected a group name in [{group}:children], got {line!r}", where=where
                )
            child = cm.group(1)
            if child in data.groups:
                data.add_child(group, child, where)
            else:
                pending.setdefault(child, _Pending(lineno, "children")).parents.append(group)
    for name, p in pending.items():
        where = f"{data.source}:{p.line}"
        if p.state == "vars":
            raise InventoryError(f"section [{name}:vars] is for a group that is never declared", where=where)
        raise InventoryError(
            f"section [{p.parents[-1]}:children] names undefined group {name!r}", where=where
        )


def _resolve(group: str, pending: dict[str, _Pending], data: InventoryData, where: str) -> None:
    p = pending.pop(group)
    for parent in p.parents:
        data.add_child(parent, group, where)


def _host_line(line: str, group: str, data: InventoryData, where: str) -> None:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise InventoryError(f"cannot parse host line {line!r}: {exc}", where=where) from None
    if not tokens:
        return
    try:
        names, port = expand_host_pattern(_at(tokens[0], where))
    except InventoryError as exc:
        raise InventoryError(exc.message, where=where) from None
    _refuse_what_ansible_refuses(tokens[0], names, port, where)
    values: dict[str, Any] = {}
    for token in tokens[1:]:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise InventoryError(f"expected key=value after host {tokens[0]!r}, got {token!r}", where=where)
        values[key] = parse_value(value)
    for name in names:
        data.add_host(name, group, port)
        for key, value in values.items():
            data.set_host_var(name, key, value)


def _refuse_what_ansible_refuses(entry: str, names: list[str], port: int | None, where: str) -> None:
    """Host entries Ansible's ini plugin refuses rather than take as a host name."""
    if entry.endswith(":") and port is None:
        raise InventoryError(
            f"host {entry!r} ends in ':', which is reserved for a port (host:2222): remove the colon "
            "or give the port",
            where=where,
        )
    if "---" in names:
        raise InventoryError(
            "host '---' is a YAML document marker: is this file meant to be YAML?", where=where
        )


def _at(pattern: str, where: str) -> str:
    if not pattern or pattern.startswith("="):
        raise InventoryError(f"expected a host name, got {pattern!r}", where=where)
    return pattern
