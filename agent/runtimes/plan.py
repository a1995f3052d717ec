"""The plan for one host: file changes and the engine action. Runtime-agnostic, pure data."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from agent.names import without_userinfo

ChangeAction = Literal["create", "update", "delete"]
EngineAction = Literal["none", "reload", "restart"]

_ACTION_RANK: dict[EngineAction, int] = {"none": 0, "reload": 1, "restart": 2}


def stronger(a: EngineAction, b: EngineAction) -> EngineAction:
    """The action that covers both: restart > reload > none."""
    return a if _ACTION_RANK[a] >= _ACTION_RANK[b] else b


@dataclass(frozen=True)
class FileChange:
    """One file to create, rewrite or delete, by absolute path on the host (before any --root)."""

    path: str
    action: ChangeAction
    before: bytes | None
    after: bytes | None
    mode: int = 0o644
    internal: bool = False  # the agent's own bookkeeping (state file): applied, not shown as a diff

    def diff(self) -> str:
        """A unified diff, as ``diff -u`` would print it (``/dev/null`` for create/delete), secrets hidden."""
        before = (self.before or b"").decode("utf-8", "replace")
        after = (self.after or b"").decode("utf-8", "replace")
        lines = _unified_diff(
            (before.splitlines(keepends=True), redacted_lines(before)),
            (after.splitlines(keepends=True), redacted_lines(after)),
            fromfile="/dev/null" if self.action == "create" else self.path,
            tofile="/dev/null" if self.action == "delete" else self.path,
        )
        return "".join(
            line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
        )


def _unified_diff(
    before: tuple[list[str], list[str]], after: tuple[list[str], list[str]], *, fromfile: str, tofile: str
) -> Iterator[str]:
    """difflib.unified_diff's lines: hunks found by comparing the files as they are (a changed secret
    is still a change), each line printed as shown (its secrets hidden). Each side is (lines, shown)."""
    (raw_a, shown_a), (raw_b, shown_b) = before, after
    groups = list(difflib.SequenceMatcher(None, raw_a, raw_b).get_grouped_opcodes(3))
    if groups:
        yield f"--- {fromfile}\n"
        yield f"+++ {tofile}\n"
    for group in groups:
        first, last = group[0], group[-1]
        yield f"@@ -{_hunk_range(first[1], last[2])} +{_hunk_range(first[3], last[4])} @@\n"
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                yield from (" " + line for line in shown_a[i1:i2])
                continue
            yield from ("-" + line for line in shown_a[i1:i2])
            yield from ("+" + line for line in shown_b[j1:j2])


def _hunk_range(start: int, stop: int) -> str:
    # As difflib writes it: "N" for one line, "N,LEN" otherwise, an empty range at the line before.
    length = stop - start
    if length == 1:
        return f"{start + 1}"
    return f"{start + 1 if length else start},{length}"


# daemon.json holds other tools' settings, some of them secrets (a log driver's token, a proxy's
# password): a diff shows only that a value is there. Keys named like a secret, their value on the
# key's line or a later one, and user:pass@ in URLs. A value cut short by the file's end is hidden too.
_SECRET_NAME = "(?:token|pass|secret|private|credential|auth|key)"
_SECRET_VALUE = re.compile(
    rf'("[^"\n]*{_SECRET_NAME}[^"\n]*"\s*:\s*)'
    r'(?:"(?P<value>(?:[^"\\\n]|\\.)*)(?P<end>"?)|(?P<other>-?\d[\d.eE+-]*)|(?P<list>\[))',
    re.IGNORECASE,
)
# Text after daemon.json's JSON document (Docker 20.10 ignores it) need not be JSON: a secret-named
# word there, quoted either way or bare, before ':' or '=' (`'token': 'x'`, `password=x`).
# A match starts only where a word does: a long word is not searched again from each of its letters.
_WORD_CHAR = r"""[^\s'"=:{}\[\],]"""
_LOOSE_SECRET = re.compile(
    rf"""(?<!{_WORD_CHAR})['"]?{_WORD_CHAR}*{_SECRET_NAME}{_WORD_CHAR}*['"]?\s*[:=]\s*""", re.IGNORECASE
)
# A URL's text after its scheme, to the end of the JSON string (or word) that holds it; the slashes
# may be JSON-escaped ("http:\/\/...", as PHP's json_encode writes them).
_URL_CREDENTIALS = re.compile(r'(?P<sep>://|:\\/\\/)(?P<rest>(?:[^\s"\\]|\\.)*)')
_ESCAPED_SEP = ":\\/\\/"


def _url_without_credentials(match: re.Match[str]) -> str:
    """``://user:pass@host`` → ``://***@host``, written with escaped slashes where the URL was."""
    sep, rest = match.group("sep"), match.group("rest")
    escaped = sep == _ESCAPED_SEP
    shown = _plain_url_without_credentials("://" + (rest.replace("\\/", "/") if escaped else rest))
    return (sep + shown.removeprefix("://").replace("/", "\\/")) if escaped else shown


def _plain_url_without_credentials(url: str) -> str:
    """``://user:pass@host`` → ``://***@host``. The userinfo runs to the *last* '@' of the authority, as
    Go splits it, and a password with '/' in it is found as names.without_userinfo finds it. A diff is
    only shown: all of a ``user:password`` shape before the last '@' is hidden, wherever a '/', '?' or
    '#' in the password ended the URL's authority (``user:12/34@proxy``)."""
    before, at, after = url.rpartition("@")
    if at and ":" in before.removeprefix("://"):
        return f"://***@{after}"
    shown = without_userinfo(url)
    if shown == url:  # no userinfo
        return url
    return "://***@" + shown.removeprefix("://").removeprefix("...@")


def _redacted(line: str) -> str:
    """One line of a JSON document with its secrets hidden."""
    return "".join(_shown_lines(line, _json_secret_spans(line)))


def redacted_lines(text: str) -> list[str]:
    """``text``'s lines, as ``str.splitlines(keepends=True)`` cuts them, each with its secrets hidden; a
    secret-named key's value is hidden wherever it starts, on the key's line or a later one, and a list
    whole, over as many lines as it takes. Text after the JSON document is hidden as
    :func:`redacted_trailing` hides it.

    >>> redacted_lines('{"splunk-token":\\n  "T0K"}\\n')
    ['{"splunk-token":\\n', '  "***"}\\n']
    >>> redacted_lines('{"auth-tokens": [\\n  "T0K"\\n]}\\n{"debug": true} token: T0K\\n')
    ['{"auth-tokens": ***\\n', '***\\n', '***}\\n', '{"debug": true} token: ***\\n']
    """
    end = _document_end(text)
    trailing = [] if end is None else _loose_secret_spans(text, end)
    return _shown_lines(text, _json_secret_spans(text) + trailing)


def redacted_text(text: str) -> str:
    """``text`` (a daemon.json, or part of one) with every secret hidden, as a diff shows it.

    >>> redacted_text('{"api_token": "T0K", "proxy": "http://u:PW@proxy"}')
    '{"api_token": "***", "proxy": "http://***@proxy"}'
    """
    return "".join(redacted_lines(text))


def redacted_trailing(text: str) -> str:
    """What follows daemon.json's JSON document, which Docker 20.10 ignores, with every secret hidden.
    It need not be JSON: after a secret-named word and ':' or '=', all that follows is hidden to the
    line's end, on to where a quote or bracket opened there closes (the text's end where none does),
    and over the lines after it indented deeper than the word's (a YAML block).

    >>> redacted_trailing("'token': ['T0K',\\n 'T1K'], 'debug': true\\npassword=PW\\n  more\\nx: 1")
    "'token': ***\\n***\\npassword=***\\n***\\nx: 1"
    """
    return "".join(_shown_lines(text, _json_secret_spans(text) + _loose_secret_spans(text, 0)))


def _shown_lines(text: str, spans: list[tuple[int, int]]) -> list[str]:
    """``text``'s lines with each part of ``spans`` shown as ``***`` and URLs' credentials hidden."""
    hidden = _merged(spans)
    shown: list[str] = []
    start = 0
    for line in text.splitlines(keepends=True):
        shown.append(_URL_CREDENTIALS.sub(_url_without_credentials, _masked(line, start, hidden)))
        start += len(line)
    return shown


def _json_secret_spans(text: str) -> list[tuple[int, int]]:
    """Where the value of each secret-named key of a JSON text is: a string's inside, a number, a list
    from its '[' to its ']'."""
    spans: list[tuple[int, int]] = []
    for match in _SECRET_VALUE.finditer(text):
        if match.group("list") is not None:
            spans.append((match.start("list"), _closing_end(text, match.start("list"))))
        else:
            spans.append(match.span("value" if match.group("other") is None else "other"))
    return spans


def _loose_secret_spans(text: str, start: int) -> list[tuple[int, int]]:
    """Where the value of each secret-named word from ``start`` on is, read as text that need not be
    JSON; a JSON member is left to :func:`_json_secret_spans`."""
    spans: list[tuple[int, int]] = []
    for match in _LOOSE_SECRET.finditer(text, start):
        if _SECRET_VALUE.match(text, match.start()) is None:
            spans.append((match.end(), _loose_value_end(text, match)))
    return spans


def _loose_value_end(text: str, match: re.Match[str]) -> int:
    """Where a value that need not be JSON ends: where it cannot be told, later rather than sooner."""
    at = match.end()
    closed = _closing_end(text, at) if text[at : at + 1] in ("[", "{", "'", '"') else at
    name_indent = _indent(text, text.rfind("\n", 0, match.start()) + 1)
    end = _line_end(text, closed)
    while end < len(text):  # each turn moves on by one line
        next_end = _line_end(text, end + 1)
        if text[end + 1 : next_end].strip() and _indent(text, end + 1) <= name_indent:
            break
        end = next_end
    return end


_LEADING_BLANKS = re.compile(r"[ \t]*")


def _indent(text: str, line_start: int) -> int:
    match = _LEADING_BLANKS.match(text, line_start)
    return match.end() - line_start if match else 0


def _line_end(text: str, at: int) -> int:
    end = text.find("\n", at)
    return len(text) if end < 0 else end


def _closing_end(text: str, start: int) -> int:
    """Just past the bracket or quote that closes the one at ``start``, strings in either quote (with
    their backslash escapes) skipped; the text's end where nothing closes it."""
    depth, quote, escaped = 0, "", False
    for at in range(start, len(text)):
        char = text[at]
        if escaped or (quote and char == "\\"):
            escaped = not escaped
        elif quote:
            quote = "" if char == quote else quote
            if not quote and depth == 0:
                return at + 1
        elif char in "\"'":
            quote = char
        elif char in "[{]}":
            depth += 1 if char in "[{" else -1
            if depth == 0:
                return at + 1
    return len(text)


_JSON_DECODER = json.JSONDecoder()


def _document_end(text: str) -> int | None:
    """Where the JSON value ``text`` starts with ends; None where it starts with none (a PEM file)."""
    start = len(text) - len(text.lstrip("\ufeff \t\n\r"))
    try:
        return _JSON_DECODER.raw_decode(text, start)[1]
    except (ValueError, RecursionError):
        return None


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``spans`` in order, those that overlap joined: each hidden part is shown as one ``***``."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _masked(line: str, start: int, spans: list[tuple[int, int]]) -> str:
    """``line`` (at offset ``start`` of its text) with each part of ``spans`` in it shown as ``***``;
    its line end is kept, even where a value runs on past it (a JSON string may hold U+2028)."""
    body = len(line.splitlines()[0]) if line else 0
    for span_start, span_end in reversed(spans):  # from the right: earlier offsets stay valid
        cut_start, cut_end = max(span_start - start, 0), min(span_end - start, body)
        if cut_start < cut_end:
            line = line[:cut_start] + "***" + line[cut_end:]
    return line


@dataclass(frozen=True)
class HostPlan:
    """What must change on one host, and what dockerd must do to pick it up.

    ``blockers`` are reasons the plan must not be applied at all (flag conflicts, an unreadable
    daemon.json); a host with blockers is reported failed and left untouched.
    """

    changes: tuple[FileChange, ...] = ()
    mkdirs: tuple[str, ...] = ()  # directories to create first (mode 0755), parents before children
    rmdirs: tuple[str, ...] = ()  # directories the agent created and now leaves empty, after deletes
    engine_action: EngineAction = "none"
    # dockerd is left running registry settings other than daemon.json's (restart policy 'never'):
    # its live config is not checked against the file
    live_pending: bool = False
    reasons: tuple[str, ...] = ()  # why each change / the action
    warnings: tuple[str, ...] = ()
    blockers: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes or self.mkdirs or self.rmdirs)

    @property
    def visible_changes(self) -> tuple[FileChange, ...]:
        return tuple(c for c in self.changes if not c.internal)
