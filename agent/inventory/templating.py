"""Jinja2 in an Ansible inventory's connection variables, evaluated as Ansible does before it connects.

Inventories often build a host's address or login from other variables
(``ansible_host: "{{ inventory_hostname }}.corp.example"``, ``ansible_user: "{{ admin_user }}"`` in
group_vars). Ansible templates its connection variables with the host's variables at run time; taken
as written, such a value would be a host name of its own. Only the variables trust-agent connects with
are evaluated (the inventory listing shows them as written, as ``ansible-inventory`` does):

- names are the host's variables (themselves evaluated where they are templates, in any order, a loop
  being an error), ``inventory_hostname``, ``inventory_hostname_short``, ``group_names`` (``ungrouped``
  included, ``all`` not), and, where the inventory gives them (:class:`ScopedVariables`),
  ``inventory_file``, ``inventory_dir``, ``groups`` and ``hostvars`` (another host's variables,
  evaluated in that host's own terms);
- Jinja2's filters and tests, and Ansible's ``bool``, ``ternary``, ``split``, ``regex_search``,
  ``regex_replace``, ``quote``, ``b64decode``, ``b64encode``, ``basename``, ``dirname`` and
  ``mandatory``; ``omit``: a connection variable that evaluates to it is as if unset (``None`` here);
- ``lookup('env', NAME)`` (``default=`` too); any other lookup is an error naming it, as are undefined
  names, filters and tests, and ``!vault`` values (not decrypted here): one line with the host, the
  variable and the file;
- ``!unsafe`` text is taken as written, as Ansible takes it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
import posixpath
import re
import shlex
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from agent.inventory.yamlfile import UnsafeText, VaultText

if TYPE_CHECKING:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

_MARKS = ("{{", "{%")
# Ansible's stand-in for "leave this variable unset" (its ``omit``); no inventory value looks like it.
OMIT = "__omit_place_holder__5f0b2c8e6d0a4d6b9c7e3f1a2b4c6d8e0f1a3b5c"


class TemplateProblem(Exception):
    """A value that cannot be evaluated here; the message says why."""


class ScopedVariables(dict[str, Any]):
    """A host's variables (the dict itself), with the names Ansible derives from the whole inventory
    (``inventory_file``, ``inventory_dir``, ``groups``, ``hostvars``) in ``scope``: templates read them,
    but they are not the host's variables, so a copy of the dict (its listing) leaves them out."""

    def __init__(self, variables: Mapping[str, Any], scope: Mapping[str, Any]) -> None:
        super().__init__(variables)
        self.scope = scope


class HostVars(Mapping[str, Any]):
    """Ansible's ``hostvars``: every host's variables by name, each read as that host evaluates it.

    ``contexts`` maps a host name to its :func:`host_variables`; it may be filled after this is made
    (each host's context holds this very mapping).
    """

    def __init__(self, contexts: Mapping[str, Mapping[str, Any]]) -> None:
        self.contexts = contexts
        # (host, variable) being evaluated now: one reached again is a loop between hosts.
        self.active: list[tuple[str, str]] = []

    def __getitem__(self, host: str) -> Mapping[str, Any]:
        return _OtherHost(host, self.contexts[host], self)

    def __iter__(self) -> Iterator[str]:
        return iter(self.contexts)

    def __len__(self) -> int:
        return len(self.contexts)


class _OtherHost(Mapping[str, Any]):
    """``hostvars[NAME]``: that host's variables, templates evaluated with its own variables."""

    def __init__(self, name: str, context: Mapping[str, Any], hostvars: HostVars) -> None:
        self.name, self.context, self.hostvars = name, context, hostvars

    def __getitem__(self, var: str) -> Any:
        raw = self.context[var]
        if not is_template(raw) and not isinstance(raw, VaultText):
            return raw
        key = (self.name, var)
        if key in self.hostvars.active:
            chain = [*self.hostvars.active[self.hostvars.active.index(key) :], key]
            raise TemplateProblem(
                "the hosts' variables refer to each other: "
                + " -> ".join(f"hostvars[{h!r}][{v!r}]" for h, v in chain)
            )
        self.hostvars.active.append(key)
        try:
            return evaluate(raw, self.context)
        finally:
            self.hostvars.active.pop()

    def __iter__(self) -> Iterator[str]:
        return iter(self.context)

    def __len__(self) -> int:
        return len(self.context)


def is_template(value: object) -> bool:
    """Text with Jinja2 in it, which Ansible would evaluate (never ``!unsafe`` text)."""
    return isinstance(value, str) and not isinstance(value, UnsafeText) and any(m in value for m in _MARKS)


def evaluate(value: Any, variables: Mapping[str, Any]) -> Any:
    """``value`` with its templates evaluated against ``variables`` (as text, which the connection
    fields parse); anything else as it is. A value that is Ansible's ``omit`` is ``None``: unset.

    >>> evaluate("{{ inventory_hostname }}.{{ domain }}", {"inventory_hostname": "web1", "domain": "{{ zone }}.example", "zone": "eu"})
    'web1.eu.example'
    >>> evaluate("{{ base_port + 1 }}", {"base_port": 2200}), evaluate(22, {})
    ('2201', 22)
    >>> evaluate("{{ user | default('ops') | upper }}", {}), evaluate("{{ user | default(omit) }}", {})
    ('OPS', None)
    """
    result = _Resolver(variables).value(value, ())
    return None if result == OMIT else result


def host_variables(name: str, variables: Mapping[str, Any], groups: tuple[str, ...]) -> dict[str, Any]:
    """A host's variables with the names Ansible adds for it (``variables`` may carry the inventory's
    own, see :class:`ScopedVariables`; the host's variables may override ``inventory_file`` and
    ``inventory_dir``, as in Ansible, but not the others)."""
    scope = variables.scope if isinstance(variables, ScopedVariables) else {}
    files = {k: scope[k] for k in ("inventory_file", "inventory_dir") if k in scope}
    inventory = {k: scope[k] for k in ("groups", "hostvars") if k in scope}
    return {
        **files,
        **variables,
        **inventory,
        "inventory_hostname": name,
        "inventory_hostname_short": name.split(".", 1)[0],
        # Ansible's Host.get_magic_vars: every group but ``all``, so ``ungrouped`` too.
        "group_names": sorted(g for g in groups if g != "all"),
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


def _regex_flags(ignorecase: bool, multiline: bool) -> int:
    return (re.IGNORECASE if ignorecase else 0) | (re.MULTILINE if multiline else 0)


def _regex_replace(
    value: Any,
    pattern: str = "",
    replacement: str = "",
    ignorecase: bool = False,
    multiline: bool = False,
    count: int = 0,
) -> str:
    return re.sub(pattern, replacement, str(value), count=count, flags=_regex_flags(ignorecase, multiline))


def _regex_search(
    value: Any, regex: str, *backrefs: str, ignorecase: bool = False, multiline: bool = False
) -> Any:
    """Ansible's ``regex_search``: the match (``None`` without one), or the groups ``'\\1'`` and
    ``'\\g<name>'`` name, as a list."""
    groups = [_group_reference(ref) for ref in backrefs]
    match = re.search(regex, str(value), _regex_flags(ignorecase, multiline))
    if match is None:
        return None
    return [match.group(g) for g in groups] if groups else match.group()


def _group_reference(ref: str) -> int | str:
    named = re.fullmatch(r"\\g<(\S+)>", ref)
    if named:
        return named.group(1)
    numbered = re.fullmatch(r"\\(\d+)", ref)
    if numbered:
        return int(numbered.group(1))
    raise TemplateProblem(f"regex_search: unknown argument {ref!r} (a group is '\\1' or '\\g<name>')")


def _ternary(value: Any, true_val: Any, false_val: Any, none_val: Any = None) -> Any:
    if value is None and none_val is not None:
        return none_val
    return true_val if value else false_val


def _split(value: Any, sep: str | None = None, maxsplit: int = -1) -> list[str]:
    return str(value).split(sep, maxsplit)


def _quote(value: Any) -> str:
    """Ansible's ``quote``: the value as one shell word."""
    return shlex.quote("" if value is None else str(value))


def _b64decode(value: Any, encoding: str = "utf-8", urlsafe: bool = False) -> str:
    decode = base64.urlsafe_b64decode if urlsafe else base64.b64decode
    try:
        return decode(str(value).encode()).decode(encoding)
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise TemplateProblem(f"b64decode: {value!r} is not base64 text: {exc}") from None


def _b64encode(value: Any, encoding: str = "utf-8", urlsafe: bool = False) -> str:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return encode(str(value).encode(encoding)).decode()


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
    env.filters.update(
        bool=_bool,
        ternary=_ternary,
        split=_split,
        regex_search=_regex_search,
        regex_replace=_regex_replace,
        quote=_quote,
        b64decode=_b64decode,
        b64encode=_b64encode,
        basename=posixpath.basename,
        dirname=posixpath.dirname,
        mandatory=_mandatory,
    )
    env.globals.update(lookup=_lookup, query=_lookup, q=_lookup, omit=OMIT)
    return env
