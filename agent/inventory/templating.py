"""Jinja2 in an Ansible inventory's connection variables, evaluated as Ansible does before it connects.

Inventories often build a host's address or login from other variables
(``ansible_host: "{{ inventory_hostname }}.corp.example"``, ``ansible_user: "{{ admin_user }}"`` in
group_vars). Ansible templates its connection variables with the host's variables at run time; taken
as written, such a value would be a host name of its own. Only the variables trust-agent connects with
are evaluated (the inventory listing shows them as written, as ``ansible-inventory`` does):

- names are the host's variables (themselves evaluated where they are templates, in any order, a loop
  being an error), ``inventory_hostname``, ``inventory_hostname_short`` and ``group_names``;
- Jinja2's filters and tests, and Ansible's ``bool``, ``regex_replace`` and ``mandatory``;
- ``lookup('env', NAME)`` (``default=`` too); any other lookup is an error naming it, as are undefined
  names and ``!vault`` values (not decrypted here): one line with the host, the variable and the file;
- ``!unsafe`` text is taken as written, as Ansible takes it.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agent.inventory.yamlfile import UnsafeText, VaultText

if TYPE_CHECKING:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

_MARKS = ("{{", "{%")


class TemplateProblem(Exception):
    """A value that cannot be evaluated here; the message says why."""


def is_template(value: object) -> bool:
    """Text with Jinja2 in it, which Ansible would evaluate (never ``!unsafe`` text)."""
    return isinstance(value, str) and not isinstance(value, UnsafeText) and any(m in value for m in _MARKS)


def evaluate(value: Any, variables: Mapping[str, Any]) -> Any:
    """``value`` with its templates evaluated against ``variables`` (as text, which the connection
    fields parse); anything else as it is.

    >>> evaluate("{{ inventory_hostname }}.{{ domain }}", {"inventory_hostname": "web1", "domain": "{{ zone }}.example", "zone": "eu"})
    'web1.eu.example'
    >>> evaluate("{{ base_port + 1 }}", {"base_port": 2200}), evaluate(22, {})
    ('2201', 22)
    >>> evaluate("{{ user | default('ops') | upper }}", {})
    'OPS'
    """
    return _Resolver(variables).value(value, ())


def host_variables(name: str, variables: Mapping[str, Any], groups: tuple[str, ...]) -> dict[str, Any]:
    """A host's variables with the names Ansible adds for it."""
    return {
        **variables,
        "inventory_hostname": name,
        "inventory_hostname_short": name.split(".", 1)[0],
        "group_names": sorted(g for g in groups if g not in ("all", "ungrouped")),
    }


class _Resolver:
    """Evaluates templates, and the variables they name, each once."""

    def __init__(self, variables: Mapping[str, Any]) -> None:
        self.variables = variables
        self.done: dict[str, Any] = {}

    def value(self, raw: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(raw, VaultText):
            where = f" ({' -> '.join(stack)})" if stack else ""
            raise TemplateProblem(f"encrypted with ansible-vault{where}, which trust-agent does not decrypt")
        if is_template(raw):
            return self.text(raw, stack)
        if isinstance(raw, list):
            return [self.value(item, stack) for item in raw]
        if isinstance(raw, dict):
            return {key: self.value(item, stack) for key, item in raw.items()}
        return raw

    def variable(self, name: str, stack: tuple[str, ...]) -> Any:
        if name in self.done:
            return self.done[name]
        if name in stack:
            raise TemplateProblem(f"the variables refer to each other: {' -> '.join([*stack, name])}")
        self.done[name] = self.value(self.variables[name], (*stack, name))
        return self.done[name]

    def text(self, raw: str, stack: tuple[str, ...]) -> str:
        from jinja2 import TemplateError, meta

        env = _environment()
        try:
            names = meta.find_undeclared_variables(env.parse(raw))
            context = {n: self.variable(n, stack) for n in sorted(names) if n in self.variables}
            return env.from_string(raw).render(context)
        except TemplateError as exc:
            raise TemplateProblem(exc.message or type(exc).__name__) from None


def _lookup(plugin: str, *terms: str, default: Any = None, **_: Any) -> Any:
    if plugin != "env":
        raise TemplateProblem(f"lookup({plugin!r}) is not run here: only lookup('env', NAME) is")
    values = [os.environ.get(term, default if default is not None else "") for term in terms]
    return ",".join(str(v) for v in values)


def _bool(value: Any) -> bool:
    """Ansible's ``bool`` filter."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("yes", "on", "1", "true", "y", "t")


def _regex_replace(value: Any, pattern: str = "", replacement: str = "", ignorecase: bool = False) -> str:
    flags = re.IGNORECASE if ignorecase else 0
    return re.sub(pattern, replacement, str(value), flags=flags)


def _mandatory(value: Any, msg: str | None = None) -> Any:
    from jinja2 import Undefined

    if isinstance(value, Undefined):
        raise TemplateProblem(msg or "a mandatory variable is not defined")
    return value


@functools.cache
def _environment() -> ImmutableSandboxedEnvironment:
    """Jinja2, loaded only for an inventory that has templates (it costs every run ~20 ms of start-up)."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
    env.filters.update(bool=_bool, regex_replace=_regex_replace, mandatory=_mandatory)
    env.globals.update(lookup=_lookup, query=_lookup, q=_lookup)
    return env
