"""Ansible-style ``--limit`` patterns.

``web`` (group or host), ``web*`` (fnmatch), ``~web\\d+`` (regex, matched from the start), ``a:b`` or
``a,b`` (union), ``a:&b`` (intersection), ``a:!b`` (exclusion), ``all`` / ``*``. Like Ansible, unions are
applied first, then intersections, then exclusions; with only ``&``/``!`` terms the base is ``all``.
"""

from __future__ import annotations

import fnmatch
import re

from agent.errors import InventoryError
from agent.inventory.model import Host, Inventory

_TERMS = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")


def split_pattern(pattern: str) -> list[str]:
    """``a:&b:!c`` → ``['a', '&b', '!c']``; commas split first, and keep colons inside terms."""
    parts = pattern.split(",") if "," in pattern else _TERMS.findall(pattern)
    return [p.strip() for p in parts if p.strip()]


def _match_term(inv: Inventory, term: str) -> set[str]:
    if term in ("all", "*"):
        return set(inv.names)
    if term in inv.names:
        return {term}
    try:
        regex = re.compile(term[1:]) if term.startswith("~") else re.compile(fnmatch.translate(term))
    except re.error as exc:
        raise InventoryError(f"invalid host pattern {term!r}: {exc}") from None
    out: set[str] = set()
    groups = [g for g in inv.groups if regex.match(g)]
    for g in groups:
        out.update(inv.group_hosts(g))
    # Hosts are also tried when no group matched, or when the term is a glob or regex.
    if not groups or term.startswith("~") or any(c in term for c in ".?*["):
        out.update(h for h in inv.names if regex.match(h))
    return out


def evaluate(inv: Inventory, pattern: str) -> frozenset[str]:
    """The host names ``pattern`` selects. A term naming no group and no host is an error."""
    terms = split_pattern(pattern)
    if not terms:
        raise InventoryError(f"empty host pattern {pattern!r}")
    plain = [t for t in terms if t[0] not in "&!"]
    inter = [t[1:] for t in terms if t[0] == "&"]
    exclude = [t[1:] for t in terms if t[0] == "!"]
    matched: dict[str, set[str]] = {}
    for term in (*plain, *inter, *exclude):
        if not term:
            raise InventoryError(f"empty term in host pattern {pattern!r}")
        hosts = _match_term(inv, term)
        if not hosts and term not in inv.groups:
            raise InventoryError(f"host pattern {term!r} matches no host or group")
        matched[term] = hosts
    result = set(inv.names) if not plain else set().union(*(matched[t] for t in plain))
    for t in inter:
        result &= matched[t]
    for t in exclude:
        result -= matched[t]
    return frozenset(result)


def select(inv: Inventory, pattern: str) -> tuple[str, ...]:
    """Names selected by ``pattern``, in inventory order; selecting nothing is an error."""
    chosen = evaluate(inv, pattern)
    if not chosen:
        raise InventoryError(f"host pattern {pattern!r} matches no hosts")
    return tuple(n for n in inv.names if n in chosen)


def select_hosts(inv: Inventory, pattern: str) -> tuple[Host, ...]:
    names = set(select(inv, pattern))
    return tuple(h for h in inv.hosts if h.name in names)
