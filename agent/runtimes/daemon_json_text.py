"""daemon.json edited as text: only ``insecure-registries`` changes, every other byte stays.

A person's daemon.json has their layout (tabs, inline lists, aligned values, a trailing space): a
change of one list must not show as a rewrite of the whole file, in the diff or on the host. The top
level object is scanned for its members' positions (the values themselves are read by Python's own
JSON decoder), and the one value is replaced, or the key added after the last member in the file's
own style; where the merged document has no such key, its member is taken out. Where the key is
given more than once, the last is the one replaced: dockerd reads only that one (the others stay as
they were, the planner warns about them). Bytes that are not UTF-8 (Docker 20.10 reads such a file)
stay byte for byte, and so does whatever follows the object (20.10 reads the first JSON value alone):
those bytes are a person's to judge, and the planner warns that Docker 23.0 refuses them. Where the
text cannot be spliced (an empty object), or the result would not parse back to the merged document,
the caller serialises the document instead; where data follows the object, the object is written
out here and the data kept after it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agent.runtimes.daemon_json import INSECURE_KEY, Indent, detect_indent, encode_keeping_bytes

_WHITESPACE = " \t\n\r"  # JSON's, exactly
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class _Member:
    key: str
    key_start: int  # the opening quote of the key
    key_end: int  # just after the key's closing quote
    value_start: int
    value_end: int


def splice_insecure(raw: bytes, doc: dict[str, Any]) -> bytes | None:
    """``raw`` with its ``insecure-registries`` made ``doc``'s, or ``None`` where only a rewrite can.

    >>> splice_insecure(b'{\\n\\t"debug":  true, "insecure-registries": ["a"]\\n}\\n',
    ...                 {"debug": True, "insecure-registries": ["a", "b"]})
    b'{\\n\\t"debug":  true, "insecure-registries": ["a", "b"]\\n}\\n'
    """
    # Bytes that are not UTF-8 become lone surrogates, and are written back as they were.
    text = raw.decode("utf-8", "surrogateescape")
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    body = text[len(bom) :]
    scanned = _top_level(body)
    if scanned is None:
        return None
    members, end = scanned
    if body[end:].strip(_WHITESPACE):
        return _spliced_keeping_trailing(raw, bom, body[:end], body[end:], doc)
    mine = [m for m in members if m.key == INSECURE_KEY]
    if INSECURE_KEY not in doc:
        spliced = _without_member(body, members, mine)
        return None if spliced is None else _checked(bom, spliced, doc)
    entries = doc[INSECURE_KEY]
    indent = detect_indent(raw)
    newline = "\r\n" if "\r\n" in body else "\n"  # the file's own line ending, CRLF included
    comma, colon = _separators(body, members)
    if mine:
        member = mine[-1]  # given more than once: dockerd reads the last
        old_value = body[member.value_start : member.value_end]
        multiline = "\n" in old_value or (old_value.strip() == "[]" and _pretty(body))
        key_indent = _line_indent(body, member.key_start)
        value = _list(
            entries, multiline, key_indent, indent, old_value, newline, _list_comma(old_value, comma)
        )
        spliced = body[: member.value_start] + value + body[member.value_end :]
    else:
        if not members:
            return None
        last = members[-1]
        key_indent = _line_indent(body, last.key_start)
        own_line = body.rfind("\n", 0, last.key_start) > body.rfind("{", 0, last.key_start)
        value = _list(entries, own_line, key_indent, indent, "", newline, comma)
        name = json.dumps(INSECURE_KEY)
        joint = f",{newline}{key_indent}" if own_line else comma
        spliced = body[: last.value_end] + f"{joint}{name}{colon}{value}" + body[last.value_end :]
    return _checked(bom, spliced, doc)


def _spliced_keeping_trailing(
    raw: bytes, bom: str, head: str, tail: str, doc: dict[str, Any]
) -> bytes | None:
    """The object ``head`` made ``doc`` (spliced, else written out in the file's indent), followed by
    ``tail`` byte for byte: Docker 20.10 reads the first value alone and ignores what follows it."""
    spliced = splice_insecure(encode_keeping_bytes(head), doc)
    if spliced is None:
        written = json.dumps(doc, indent=detect_indent(raw), ensure_ascii=False)
        spliced = _checked("", written, doc)
    if spliced is None:
        return None
    return encode_keeping_bytes(bom) + spliced + encode_keeping_bytes(tail)


def _checked(bom: str, spliced: str, doc: dict[str, Any]) -> bytes | None:
    """The spliced text as bytes, where it parses back to ``doc`` (its keys in order); else None."""
    try:
        parsed = json.loads(spliced)
    except ValueError:
        return None
    if parsed != doc or list(parsed) != list(doc):
        return None
    return encode_keeping_bytes(bom + spliced)


def _without_member(body: str, members: list[_Member], mine: list[_Member]) -> str | None:
    """``body`` with its one ``insecure-registries`` member taken out, with the comma that joined it
    to its neighbour; None where the key is not there, or given more than once (taking out only the
    last would let dockerd read an earlier one)."""
    if len(mine) != 1:
        return None
    member = mine[0]
    at = members.index(member)
    if len(members) == 1:
        closing = _skip(body, member.value_end)
        return body[: body.index("{") + 1] + body[closing:]
    if at > 0:
        return body[: members[at - 1].value_end] + body[member.value_end :]
    return body[: member.key_start] + body[members[1].key_start :]


def _top_level(text: str) -> tuple[list[_Member], int] | None:
    """The members of the top-level object, in file order, and the offset just after its closing
    brace; ``None`` if the text does not start with an object (the caller has parsed it already, so
    this is a safety net)."""
    members: list[_Member] = []
    at = _skip(text, 0)
    if text[at : at + 1] != "{":
        return None
    at = _skip(text, at + 1)
    if text[at : at + 1] == "}":
        return members, at + 1
    try:
        while True:
            if text[at : at + 1] != '"':
                return None
            key, after_key = json.decoder.scanstring(text, at + 1)  # type: ignore[attr-defined]
            colon = _skip(text, after_key)
            if text[colon : colon + 1] != ":":
                return None
            value_start = _skip(text, colon + 1)
            _, value_end = _DECODER.raw_decode(text, value_start)
            members.append(_Member(key, at, after_key, value_start, value_end))
            at = _skip(text, value_end)
            if text[at : at + 1] == "}":
                return members, at + 1
            if text[at : at + 1] != ",":
                return None
            at = _skip(text, at + 1)
    except ValueError:
        return None


def _separators(body: str, members: list[_Member]) -> tuple[str, str]:
    """How the file joins members on one line and a key to its value: ``", "`` and ``": "`` as JSON
    tools write them, else as the file's last members show (``{"a":1,"b":2}``: ``","`` and ``":"``); a
    file of one member joins as it writes its colon (``{"a":1}``: compact)."""
    comma, colon = ", ", ": "
    if members:
        last = members[-1]
        colon = body[last.key_end : last.value_start]
        comma = "," if colon == ":" else comma
    if len(members) >= 2:
        between = body[members[-2].value_end : members[-1].key_start]
        if "\n" not in between:
            comma = between
    return comma, colon


def _list_comma(old_value: str, comma: str) -> str:
    """How an inline list joins its entries: as its old value did where that had two (``["a","b"]``),
    else as the file joins its members (``comma``)."""
    try:
        entries = json.loads(old_value)
    except ValueError:
        return comma
    if not isinstance(entries, list) or len(entries) < 2 or "\n" in old_value:
        return comma
    first_end = _DECODER.raw_decode(old_value, _skip(old_value, 1))[1]
    joint = old_value[first_end : _skip(old_value, old_value.index(",", first_end) + 1)]
    return joint if joint.strip() == "," else comma


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in _WHITESPACE:
        at += 1
    return at


def _line_indent(text: str, at: int) -> str:
    """The whitespace that starts the line ``at`` is on, up to the first other character."""
    start = text.rfind("\n", 0, at) + 1
    end = start
    while end < at and text[end] in " \t":
        end += 1
    return text[start:end]


def _pretty(text: str) -> bool:
    """The object is laid out one member per line (its first member starts a line of its own)."""
    opening = text.find("{")
    return "\n" in text[opening : _skip(text, opening + 1)]


def _list(
    entries: list[str],
    multiline: bool,
    key_indent: str,
    indent: Indent,
    old_value: str,
    newline: str = "\n",
    comma: str = ", ",
) -> str:
    """The list as this file writes lists: inline ``["a", "b"]`` (its entries joined by the file's own
    ``comma``), or one entry a line, indented as the old value's first entry was, else one level deeper
    than its key."""
    items = [json.dumps(entry, ensure_ascii=False) for entry in entries]
    if not items:
        return "[]"
    if not multiline:
        return "[" + comma.join(items) + "]"
    item_indent = _first_item_indent(old_value) or key_indent + (
        indent if isinstance(indent, str) else " " * indent
    )
    closing = _closing_indent(old_value, key_indent)
    return (
        "[" + newline + ("," + newline).join(item_indent + item for item in items) + newline + closing + "]"
    )


def _first_item_indent(old_value: str) -> str | None:
    lines = old_value.split("\n")
    if len(lines) < 3 or not lines[1].strip():
        return None
    stripped = lines[1].lstrip(" \t")
    return lines[1][: len(lines[1]) - len(stripped)]


def _closing_indent(old_value: str, key_indent: str) -> str:
    last = old_value.rsplit("\n", 1)
    if len(last) == 2 and last[1].strip() == "]":
        return last[1][: len(last[1]) - 1]
    return key_indent
