"""Whether text is one host address, as Ansible's ``parse_address(…, allow_ranges=True)`` decides.

A ``--limit`` pattern without commas that is one address (``2001:db8::2``, ``web[1:3]``, ``host:2222``)
is one term: Ansible splits on colons only where it is not.
"""

from __future__ import annotations

import re

_NUMERIC_RANGE = r"\[(?:[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_HEX_RANGE = r"\[(?:[0-9a-f]+:[0-9a-f]+)(?::[0-9]+)?\]"
_ALNUM_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_V6 = rf"(?:[0-9a-f]{{1,4}}|{_HEX_RANGE})"
_V4 = rf"(?:[01]?[0-9]{{1,2}}|2[0-4][0-9]|25[0-5]|{_NUMERIC_RANGE})"
_LABEL = rf"(?:[\w]|{_ALNUM_RANGE})(?:[\w_-]|{_ALNUM_RANGE})*(?<![_-])"

_BRACKETED_HOSTPORT = re.compile(r"^\[(.+)\]:([0-9]+)$")
_HOSTPORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")
_HOSTS = (
    re.compile(rf"^(?:{_V4}\.){{3}}{_V4}$", re.I),
    re.compile(
        rf"^((?:{_V6}:){{7}}{_V6}|(?:{_V6}:){{1,6}}:|(?:{_V6}:)(?::{_V6}){{1,6}}|"
        rf"(?:{_V6}:){{2}}(?::{_V6}){{1,5}}|(?:{_V6}:){{3}}(?::{_V6}){{1,4}}|"
        rf"(?:{_V6}:){{4}}(?::{_V6}){{1,3}}|(?:{_V6}:){{5}}(?::{_V6}){{1,2}}|"
        rf"(?:{_V6}:){{6}}(?::{_V6})|:(?::{_V6}){{1,6}}|{_V6}?::|"
        rf"(?:0:){{6}}(?:{_V6}\.){{3}}{_V6}|::(?:ffff:)?(?:{_V6}\.){{3}}{_V6}|"
        rf"(?:0:){{5}}ffff:(?:{_V6}\.){{3}}{_V6})$",
        re.I,
    ),
    re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$", re.I),
)


def is_host_address(text: str) -> bool:
    """An IPv4 or IPv6 address or a host name, ranges allowed, with or without a port.

    >>> is_host_address("2001:db8::2"), is_host_address("[2001:db8::2]:22"), is_host_address("web[1:3]")
    (True, True, True)
    >>> is_host_address("web:&db"), is_host_address("web:db"), is_host_address("2001:db8::*")
    (False, False, False)
    """
    return parse_address(text) is not None


def parse_address(text: str) -> tuple[str, int | None] | None:
    """Ansible's ``parse_address(text, allow_ranges=True)``: the host and its port, or ``None`` where
    ``text`` is not an address.

    >>> parse_address("[2001:db8::2]:2222"), parse_address("web[1:3]:22"), parse_address("ops@h1:22")
    (('2001:db8::2', 2222), ('web[1:3]', 22), None)
    """
    address, port = text, None
    # Both port forms are tried in turn, as Ansible does: `[h]:1` then `h:2` on what is left.
    for port_form in (_BRACKETED_HOSTPORT, _HOSTPORT):
        m = port_form.match(address)
        if m:
            address, port = m.group(1), int(m.group(2))
    return (address, port) if any(form.match(address) for form in _HOSTS) else None
