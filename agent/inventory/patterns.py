"""Ansible-style ``--limit`` patterns.

``web`` (group or host), ``web*`` (fnmatch), ``~web\\d+`` (regex, matched from the start), ``a:b`` or
``a,b`` (union), ``a:&b`` (intersection), ``a:!b`` (exclusion), ``all`` / ``*``, and subscripts
``web[0]``, ``web[-1]``, ``web[0:2]`` (inclusive), ``web[2:]`` that pick from a term's hosts by position,
and ``@FILE`` (a file of host names or patterns, one a line: Ansible's retry files).
Like Ansible, unions are applied first, then intersections, then exclusions; with only ``&``/``!``
terms the base is ``all``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping

from agent.errors import InventoryError
from agent.inputfile import read_bounded
from agent.inventory.addresses import is_host_address
from agent.inventory.model import Group, Host, Inventory

_TERMS = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")


def split_pattern(pattern: str) -> list[str]:
    """``a:&b:!c`` → ``['a', '&b', '!c']``; commas split first, and keep colons inside terms; a pattern
    that is one address (``2001:db8::2``) is one term, as in Ansible's ``split_host_pattern``."""
    if "," in pattern:
        parts = pattern.split(",")
    elif is_host_address(pattern):
        parts = [pattern]
    else:
        parts = _TERMS.findall(pattern)
    return [p.strip() for p in parts if p.strip()]


# Ansible's PATTERN_WITH_SUBSCRIPT: a term ending in [n] or [x:y] / [x:] (never a regex term).
_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)[:-]([0-9]*))\]$")

Subscript = tuple[int, int | None]


def split_subscript(term: str) -> tuple[str, Subscript | None]:
    """``web[0:2]`` → (``web``, (0, 2)); ``web[-1]`` → (``web``, (-1, None)); ``web[1:]`` → (``web``, (1, -1))."""
    m = None if term.startswith("~") else _SUBSCRIPT.match(term)
    if m is None:
        return term, None
    expr, index, start, end = m.groups()
    if index is not None:
        return expr, (int(index), None)
    return expr, (int(start), int(end) if end else -1)


def _apply_subscript(term: str, hosts: list[str], subscript: Subscript | None) -> list[str]:
    if subscript is None:
        return hosts
    start, end = subscript
    # As Ansible: an end of 0 counts as "no end", so [x:0] picks the single host x.
    if end:
        return hosts[start : (len(hosts) - 1 if end == -1 else end) + 1]
    if not -len(hosts) <= start < len(hosts):
        raise InventoryError(f"no host matches the subscripted pattern {term!r}")
    return [hosts[start]]


def group_order(groups: Mapping[str, Group], group: str) -> list[str]:
    """A group's hosts in Ansible's order: its own, then its children's, level by level (for ``all``:
    ``ungrouped`` and the other top-level groups, then their children: not the file's order).

    Below its children, Ansible takes each level's groups in the order of a Python set (by hash, so it
    varies from one ansible run to the next); here they stay in the order they are written.
    """
    order: list[str] = []
    seen: set[str] = set()
    level = [group]
    visited: set[str] = set()
    while level:  # bounded: each group is visited once
        nxt: list[str] = []
        for name in level:
            if name in visited or name not in groups:
                continue
            visited.add(name)
            for h in groups[name].hosts:
                if h not in seen:
                    seen.add(h)
                    order.append(h)
            nxt.extend(groups[name].children)
        level = nxt
    return order


def _group_order(inv: Inventory, group: str) -> list[str]:
    known = set(inv.names)
    return [h for h in group_order(inv.groups, group) if h in known]


def _match_term(inv: Inventory, term: str, *, plain: bool = False) -> set[str]:
    """The hosts ``term`` (without its ``&``/``!``) selects. As Ansible's ``_evaluate_patterns``, a
    ``plain`` term (neither ``&`` nor ``!``) that is a host's name is that host alone; otherwise a
    group of that name wins over a host of that name (``all:!web``: the group ``web``'s hosts)."""
    if plain and term in inv.names:
        return {term}
    expr, subscript = split_subscript(term)
    if subscript is None and expr in ("all", "*"):
        return set(inv.names)  # every host, whatever the order: no need to enumerate each group
    return set(_apply_subscript(term, _enumerate(inv, expr), subscript))


def _enumerate(inv: Inventory, term: str) -> list[str]:
    """The hosts ``term`` names, in the order Ansible's subscripts count them: each matching group's
    hosts (``*`` matches every group, ``all`` first), then, for a glob or regex, matching host names
    (also for a plain name when no group matched)."""
    try:
        regex = re.compile(term[1:]) if term.startswith("~") else re.compile(fnmatch.translate(term))
    except re.error as exc:
        raise InventoryError(f"invalid host pattern {term!r}: {exc}") from None
    out: list[str] = []
    groups = [g for g in inv.groups if regex.match(g)]
    for g in groups:
        out.extend(_group_order(inv, g))
    # Hosts are also tried when no group matched, or when the term is a glob or regex.
    if not groups or term.startswith("~") or any(c in term for c in ".?*["):
        out.extend(h for h in inv.names if regex.match(h))
    return out  # duplicates kept, as Ansible does before a subscript picks by position


MAX_LIMIT_FILE_BYTES = 4 * 1024 * 1024


def _with_files(terms: list[str]) -> list[str]:
    """Each ``@FILE`` term replaced by the file's lines (blank ones skipped), as Ansible reads them."""
    out: list[str] = []
    for term in terms:
        out.extend(_limit_file(term[1:]) if term.startswith("@") else [term])
    return out


def _limit_file(path: str) -> list[str]:
    def refused(message: str) -> InventoryError:
        return InventoryError(f"limit file {path}: {message}")

    data = read_bounded(path, MAX_LIMIT_FILE_BYTES, "a limit file", refused)
    return [line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip()]


def evaluate(inv: Inventory, pattern: str) -> frozenset[str]:
    """The host names ``pattern`` selects. A term naming no group and no host is an error (but one
    naming Ansible's implicit localhost)."""
    terms = _with_files(split_pattern(pattern))
    if not terms:
        raise InventoryError(f"empty host pattern {pattern!r}")
    plain = [t for t in terms if t[0] not in "&!"]
    inter = [t[1:] for t in terms if t[0] == "&"]
    exclude = [t[1:] for t in terms if t[0] == "!"]
    for term in (*plain, *inter, *exclude):
        if not term:
            raise InventoryError(f"empty term in host pattern {pattern!r}")
    result = set(inv.names) if not plain else set().union(*(_matched(inv, t, plain=True) for t in plain))
    for t in inter:
        result &= _matched(inv, t)
    for t in exclude:
        result -= _matched(inv, t)
    return frozenset(result)


# Ansible's C.LOCALHOST: names its implicit ``localhost`` answers to when the inventory lacks them.
IMPLICIT_LOCALHOST = frozenset({"localhost", "127.0.0.1", "::1"})


def _matched(inv: Inventory, term: str, *, plain: bool = False) -> set[str]:
    """The hosts ``term`` selects; a term naming no host or group is an error, except a name of
    Ansible's implicit localhost (``all:!localhost``), which is never one of the inventory's hosts."""
    hosts = _match_term(inv, term, plain=plain)
    if not hosts and split_subscript(term)[0] not in inv.groups and term not in IMPLICIT_LOCALHOST:
        raise InventoryError(f"host pattern {term!r} matches no host or group")
    return hosts


def select(inv: Inventory, pattern: str) -> tuple[str, ...]:
    """Names selected by ``pattern``, in inventory order; selecting nothing is an error."""
    chosen = evaluate(inv, pattern)
    if not chosen:
        raise InventoryError(f"host pattern {pattern!r} matches no hosts")
    return tuple(n for n in inv.names if n in chosen)


def select_hosts(inv: Inventory, pattern: str) -> tuple[Host, ...]:
    names = set(select(inv, pattern))
    return tuple(h for h in inv.hosts if h.name in names)
