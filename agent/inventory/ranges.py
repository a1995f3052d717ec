"""Host ranges (``web[01:20]``, ``db-[a:f]``, ``n[1:10:2]``) and ``host:port`` patterns, as Ansible reads them."""

from __future__ import annotations

import string

from agent.errors import InventoryError
from agent.inventory.addresses import parse_address

# Far beyond any real fleet; stops a typo like [1:99999999] from eating memory.
MAX_RANGE_HOSTS = 100_000


def has_range(pattern: str) -> bool:
    return "[" in pattern


def expand_hostname_range(pattern: str) -> list[str]:
    """Expand the first ``[begin:end(:step)]`` of ``pattern``, then recurse into the rest.

    Zero-padded numbers keep their width; single letters count through ``a-zA-Z``.

    >>> expand_hostname_range("web[08:10]")
    ['web08', 'web09', 'web10']
    >>> expand_hostname_range("db-[a:c]")
    ['db-a', 'db-b', 'db-c']
    """
    out: list[str] = []
    _expand(pattern, out)
    return out


def _expand(pattern: str, out: list[str]) -> None:
    start = pattern.find("[")
    stop = pattern.find("]", start)
    if start < 0 or stop < 0:
        raise InventoryError(f"host range {pattern!r} has no closing ']'")
    head, body, tail = pattern[:start], pattern[start + 1 : stop], pattern[stop + 1 :]
    bounds = body.split(":")
    if len(bounds) not in (2, 3):
        raise InventoryError(f"host range {pattern!r} must be [begin:end] or [begin:end:step]")
    beg, end = bounds[0] or "0", bounds[1]
    if not end:
        raise InventoryError(f"host range {pattern!r} has no end value")
    try:
        step = int(bounds[2]) if len(bounds) == 3 else 1
    except ValueError:
        raise InventoryError(f"host range {pattern!r} has a step that is not a number") from None
    if step < 1:
        raise InventoryError(f"host range {pattern!r} must have a step of at least 1")
    for item in _sequence(pattern, beg, end, step):
        name = f"{head}{item}{tail}"
        if has_range(name):
            _expand(name, out)
        else:
            out.append(name)
        if len(out) > MAX_RANGE_HOSTS:
            raise InventoryError(f"host range {pattern!r} expands to more than {MAX_RANGE_HOSTS} hosts")


def _sequence(pattern: str, beg: str, end: str, step: int) -> list[str]:
    letters = string.ascii_letters
    if len(beg) == 1 and len(end) == 1 and beg in letters and end in letters:
        i, j = letters.index(beg), letters.index(end)
        if i > j:
            raise InventoryError(f"host range {pattern!r} must have begin <= end")
        return list(letters[i : j + 1 : step])
    if not (beg.isdigit() and end.isdigit()):
        raise InventoryError(f"host range {pattern!r} must be numbers or single letters")
    width = len(beg) if beg.startswith("0") and len(beg) > 1 else 0
    if width and len(end) != width:
        raise InventoryError(f"host range {pattern!r} must have begin and end of equal width")
    lo, hi = int(beg), int(end)
    if lo > hi:  # Ansible silently yields no hosts here; an empty range is always a typo
        raise InventoryError(f"host range {pattern!r} must have begin <= end")
    if (hi - lo) // step + 1 > MAX_RANGE_HOSTS:
        raise InventoryError(f"host range {pattern!r} expands to more than {MAX_RANGE_HOSTS} hosts")
    return [str(n).zfill(width) for n in range(lo, hi + 1, step)]


def expand_host_pattern(pattern: str) -> tuple[list[str], int | None]:
    """A host entry from an inventory: the host names it stands for, and the port it names if any.

    As Ansible's ``_expand_hostpattern``, a ``:port`` counts only where the rest is an address
    (``web[1:3]:2222``, ``[2001:db8::1]:2222``); an entry that is not one is a name, colon and all
    (``deploy@web1:2222`` is the host ``deploy@web1:2222``, on ssh's default port).
    """
    entry = pattern.strip()
    parsed = parse_address(entry)
    host, port = parsed if parsed is not None else (entry, None)
    if not host:
        raise InventoryError(f"empty host name in {pattern!r}")
    return (expand_hostname_range(host) if has_range(host) else [host]), port
