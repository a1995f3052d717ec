"""daemon.json as text: parse it keeping key order, merge ``insecure-registries``, write it back.

The agent owns only the entries it added (recorded in its state file); every other key, value and
entry stays where the person put it. The merge works on the parsed document, so the file is
rewritten only when the document itself must change.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.runtimes.plan import redacted_trailing

INSECURE_KEY = "insecure-registries"

# dockerd strips these from an insecure-registries entry, with a warning, and loads the rest (moby
# registry loadInsecureRegistries, 20.10 and 26.1 alike); the scheme is matched in any case.
_STRIPPED_SCHEMES = ("http://", "https://")

Indent = int | str


class DaemonJsonError(ValueError):
    """daemon.json cannot be understood; ``str()`` is one line naming the file and where."""


@dataclass(frozen=True)
class InsecureMerge:
    """The result of merging the wanted insecure registries into a document.

    ``owned`` is what the agent may remove later: entries it added now or earlier and that stay.
    """

    doc: dict[str, Any]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    owned: tuple[str, ...]
    emptied: bool  # the agent's removals left the list empty: it is kept as [] (fact 11)
    cleared: bool = False  # [] written where the key was missing, for dockerd to drop a stale list
    dropped: bool = False  # the agent's own [] removed: a flag gives the directive now (fact 13)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.cleared or self.dropped)


def _reject_constant(name: str) -> Any:
    # Go's encoding/json refuses NaN and Infinity; so must we, or we would write them back.
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def invalid_utf8_at(raw: bytes) -> int | None:
    """The offset of the first byte of ``raw`` that is not UTF-8, or None where it all is.

    >>> invalid_utf8_at(b'{"labels": ["caf\\xe9"]}'), invalid_utf8_at(b'{}')
    (16, None)
    """
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start
    return None


def decode_keeping_bytes(raw: bytes) -> str:
    """``raw`` as text, a leading BOM dropped, each byte that is not UTF-8 kept as a lone surrogate
    (``surrogateescape``): :func:`encode_keeping_bytes` gives those bytes back unchanged."""
    return raw.decode("utf-8", "surrogateescape").removeprefix("\ufeff")


def encode_keeping_bytes(text: str) -> bytes:
    """The inverse of :func:`decode_keeping_bytes` (a BOM aside): kept bytes are written as they were."""
    return text.encode("utf-8", "surrogateescape")


def parse_daemon_json(
    raw: bytes, path: str, *, keep_invalid_utf8: bool = False, ignore_trailing: bool = False
) -> dict[str, Any]:
    """Parse daemon.json into a dict in file order; raise ``DaemonJsonError`` with one line if it is bad.

    ``keep_invalid_utf8``: read bytes that are not UTF-8 inside strings as Docker 20.10 does (Go's
    encoding/json takes them, where Docker 23.0 and later refuse the file), each kept as a lone
    surrogate so that a rewrite gives the same bytes back.

    ``ignore_trailing``: read the first JSON value and ignore whatever follows it, as Docker 20.10 does
    (it decodes the file with Go's ``json.Decoder.Decode``, which stops after one value; Docker 23.0
    and later use ``json.Unmarshal``, which refuses the file). See :func:`trailing_data`.

    >>> parse_daemon_json(b'{"debug": true, "insecure-registries": ["a"]}', "/etc/docker/daemon.json")
    {'debug': True, 'insecure-registries': ['a']}
    >>> parse_daemon_json(b'{"debug": tru}', "/etc/docker/daemon.json")
    Traceback (most recent call last):
    ...
    agent.runtimes.daemon_json.DaemonJsonError: /etc/docker/daemon.json: not valid JSON (line 1, column 11): Expecting value
    >>> parse_daemon_json(b'{"debug": true}\\n}\\n', "/etc/docker/daemon.json", ignore_trailing=True)
    {'debug': True}
    """
    try:
        text = decode_keeping_bytes(raw) if keep_invalid_utf8 else raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # The offset in the file, a BOM counted: where an editor's "go to byte" finds it.
        raise DaemonJsonError(f"{path}: not UTF-8 (byte {invalid_utf8_at(raw)})") from None
    if not text.strip():
        # dockerd treats an empty file as "no options"; so do we.
        return {}
    try:
        doc, end = _first_value(text)
    except json.JSONDecodeError as exc:
        raise DaemonJsonError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
        ) from None
    except ValueError as exc:
        raise DaemonJsonError(f"{path}: not valid JSON: {exc}") from None
    trailing = _trailing_at(text, end)
    if trailing is not None and not ignore_trailing:
        raise DaemonJsonError(f"{path}: {trailing_data_refused(trailing)}")
    if not isinstance(doc, dict):
        raise DaemonJsonError(f"{path}: not a JSON object (found {json_kind(doc)})")
    entries = doc.get(INSECURE_KEY)
    if entries is not None and not (isinstance(entries, list) and all(isinstance(e, str) for e in entries)):
        raise DaemonJsonError(f"{path}: {INSECURE_KEY} must be a list of strings")
    return doc


@dataclass(frozen=True)
class TrailingData:
    """What follows daemon.json's first JSON value: where it starts (1-based, as editors count) and
    its text, surrounding whitespace stripped."""

    line: int
    column: int
    text: str

    def excerpt(self, limit: int = 24) -> str:
        """The text as a JSON string, cut after ``limit`` characters: one line, whatever it holds. Its
        secrets are hidden first, read as text that need not be JSON: it is said in reports, the
        daemon's status and the journal, which others read while daemon.json may be 0600.

        >>> print(TrailingData(2, 1, "'token': 'T0K'").excerpt())
        "'token': ***"
        """
        text = redacted_trailing(self.text)
        cut = text if len(text) <= limit else text[:limit] + "..."
        return json.dumps(cut.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))

    def dockerd_says(self) -> str:
        """Docker 23.0 and later's error for the file: Go's json.Unmarshal names the first character."""
        first = self.text[0]
        shown = f"'{first}'" if first.isascii() and first.isprintable() else "..."
        return f"invalid character {shown} after top-level value"


def trailing_data(raw: bytes) -> TrailingData | None:
    """What follows daemon.json's first JSON value, other than whitespace; None where nothing does, or
    where that first value cannot be read (:func:`parse_daemon_json` says what is wrong).

    >>> trailing_data(b'{"debug": true}\\n}\\n')
    TrailingData(line=2, column=1, text='}')
    >>> trailing_data(b'{"debug": true}\\n') is None
    True
    """
    text = decode_keeping_bytes(raw)
    if not text.strip():
        return None
    try:
        _, end = _first_value(text)
    except ValueError:
        return None
    return _trailing_at(text, end)


def trailing_data_refused(trailing: TrailingData) -> str:
    """Why Docker 23.0 and later refuse a daemon.json with ``trailing`` data (20.10 ignores it).

    >>> print(trailing_data_refused(TrailingData(2, 1, "}")).partition("which ")[2])
    Docker 23.0 and later refuse ("invalid character '}' after top-level value"; 20.10 ignores it): remove it
    """
    return (
        f"not valid JSON (line {trailing.line}, column {trailing.column}): {trailing.excerpt()} after the "
        f'end of the JSON document, which Docker 23.0 and later refuse ("{trailing.dockerd_says()}"; '
        "20.10 ignores it): remove it"
    )


_JSON_WHITESPACE = " \t\n\r"  # JSON's, exactly: Go's decoder skips these and nothing else


def _first_value(text: str) -> tuple[Any, int]:
    """The first JSON value in ``text`` and the offset just after it, as Go's json.Decoder reads it."""
    start = len(text) - len(text.lstrip(_JSON_WHITESPACE))
    return _DECODER.raw_decode(text, start)


def _trailing_at(text: str, end: int) -> TrailingData | None:
    rest = text[end:].lstrip(_JSON_WHITESPACE)
    if not rest:
        return None
    at = len(text) - len(rest)
    line = text.count("\n", 0, at) + 1
    column = at - (text.rfind("\n", 0, at) + 1) + 1
    return TrailingData(line, column, rest.rstrip(_JSON_WHITESPACE))


def json_kind(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words (a daemon.json holding ``null`` "found null").

    >>> [json_kind(v) for v in (None, [], "x", 1, 1.5, True, False, {})]
    ['null', 'an array', 'a string', 'a number', 'a number', 'true', 'false', 'an object']
    """
    if value is None:
        return "null"
    if isinstance(value, bool):  # before numbers: a bool is an int in Python
        return "true" if value else "false"
    kinds = ((dict, "an object"), (list, "an array"), (str, "a string"), ((int, float), "a number"))
    return next(kind for types, kind in kinds if isinstance(value, types))


def repeated_keys(raw: bytes) -> dict[str, list[Any]]:
    """The top-level keys ``raw`` gives more than once, each with its values in file order; nothing
    where it is not a JSON object. dockerd reads only the last value of each: it decodes daemon.json
    with Go's encoding/json, into a map and then into its config struct, and both keep a repeated
    key's last value without a word (moby daemon/config getConflictFreeConfiguration). So does
    :func:`parse_daemon_json`.

    >>> repeated_keys(b'{"insecure-registries": ["a"], "debug": true, "insecure-registries": ["b"]}')
    {'insecure-registries': [['a'], ['b']]}
    """
    objects: list[list[tuple[str, Any]]] = []

    def keep(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        objects.append(pairs)
        return dict(pairs)

    # The first value only: dockerd 20.10 ignores what follows it, and 23.0 refuses the file.
    decoder = json.JSONDecoder(object_pairs_hook=keep, parse_constant=_reject_constant)
    text = decode_keeping_bytes(raw)
    try:
        decoder.raw_decode(text, len(text) - len(text.lstrip(_JSON_WHITESPACE)))
    except ValueError:  # parse_daemon_json says what is wrong
        return {}
    if not objects:
        return {}
    # Inner objects end first: the top-level one is decoded last.
    values: dict[str, list[Any]] = {}
    for key, value in objects[-1]:
        values.setdefault(key, []).append(value)
    return {key: found for key, found in values.items() if len(found) > 1}


_INDENTED = re.compile(r"^([ \t]+)\S", re.MULTILINE)


def detect_indent(raw: bytes | None) -> Indent:
    """The indent unit of an existing file: a tab, or the first indentation's width; default 2.

    >>> detect_indent(b'{\\n    "debug": true\\n}\\n')
    4
    >>> detect_indent(b'{"debug": true}')
    2
    """
    if not raw:
        return 2
    match = _INDENTED.search(raw.decode("utf-8", "replace"))
    if match is None:
        return 2
    lead = match.group(1)
    if lead.startswith("\t"):
        return "\t"
    return len(lead)


def serialise(doc: dict[str, Any], indent: Indent = 2) -> bytes:
    """The document as daemon.json text: key order kept, non-ASCII kept readable, newline-terminated;
    bytes that were not UTF-8 (read with ``keep_invalid_utf8``) written back as they were."""
    return encode_keeping_bytes(json.dumps(doc, indent=indent, ensure_ascii=False) + "\n")


def index_name(entry: str) -> str:
    """The registry (or CIDR) an ``insecure-registries`` entry names, as dockerd reads it: a leading
    ``http://`` or ``https://`` stripped, the rest as written.

    >>> index_name("HTTP://registry.test:5000"), index_name("10.0.0.0/8"), index_name("ftp://r")
    ('registry.test:5000', '10.0.0.0/8', 'ftp://r')
    """
    for scheme in _STRIPPED_SCHEMES:
        if entry[: len(scheme)].lower() == scheme:
            return entry[len(scheme) :]
    return entry


def merge_insecure(doc: dict[str, Any], want: Sequence[str], owned: Sequence[str]) -> InsecureMerge:
    """Bring ``insecure-registries`` to hold ``want``, removing only entries the agent ``owned``.

    Existing entries keep their order; new ones are appended. An entry the agent did not add is never
    removed. If the agent's removals empty the list, ``[]`` stays (fact 11: a missing key does not
    clear the list on reload). A registry already listed by a person is not claimed, nor added again
    where the person wrote it with a scheme (``http://reg``): dockerd reads that entry as ``reg``.

    >>> m = merge_insecure({"debug": True, "insecure-registries": ["mine", "old"]}, ["new"], ["old"])
    >>> m.doc, m.added, m.removed, m.owned
    ({'debug': True, 'insecure-registries': ['mine', 'new']}, ('new',), ('old',), ('new',))
    """
    present = doc.get(INSECURE_KEY)
    existing: list[str] = list(present) if isinstance(present, list) else []
    wanted = list(dict.fromkeys(want))
    owned_set = set(owned)
    wanted_set = set(wanted)

    removed = tuple(dict.fromkeys(e for e in existing if e in owned_set and e not in wanted_set))
    kept = [e for e in existing if e not in removed]
    listed = {index_name(e) for e in kept}
    added = tuple(w for w in wanted if w not in listed)
    entries = kept + list(added)

    new_owned = tuple(dict.fromkeys(e for e in entries if e in wanted_set and (e in owned_set or e in added)))
    if not (added or removed):
        return InsecureMerge(dict(doc), (), (), new_owned, emptied=False)

    new_doc = dict(doc)  # a copy: replacing a value keeps the key where it was
    new_doc[INSECURE_KEY] = entries
    return InsecureMerge(new_doc, added, removed, new_owned, emptied=not entries)
