"""A systemd unit's environment and how it expands ExecStart (pure functions, no I/O).

systemd.exec(5): ``Environment=`` assignments, then ``EnvironmentFile=`` files in order (later ones
win); an empty assignment of either resets what came before. systemd.service(5), "Command lines":
``$NAME`` as a word of its own becomes the variable's value split at whitespace (no word at all when
it is unset or empty); ``${NAME}``, also inside a word, becomes the exact value, one word. Debian's
docker.io unit runs ``dockerd -H fd:// $DOCKER_OPTS`` with ``EnvironmentFile=-/etc/default/docker``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_BRACED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Setting:
    """A variable's value and the file that set it."""

    value: str
    origin: str


@dataclass(frozen=True)
class UnitEnvironment:
    """What the unit's lines say about its environment, in order: its own assignments (with the file
    each is in) and the environment files it names (a leading ``-``: the file may be missing)."""

    assignments: tuple[tuple[str, str, str], ...] = ()  # (name, value, origin)
    files: tuple[str, ...] = ()


def unit_environment(unit_lines: Iterable[tuple[str | None, str]]) -> UnitEnvironment:
    """``Environment=`` and ``EnvironmentFile=`` of a unit, given its ``(file, line)`` pairs."""
    assignments: list[tuple[str, str, str]] = []
    files: list[str] = []
    for origin, line in unit_lines:
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()  # systemd strips both: "EnvironmentFile = /x" names /x
        if key == "Environment":
            if not value:
                assignments = []
                continue
            try:
                words = shlex.split(value)
            except ValueError:
                continue  # systemd ignores an assignment it cannot parse
            for word in words:
                name, sep, setting = word.partition("=")
                if sep and _NAME.fullmatch(name):
                    assignments.append((name, setting, origin or "the unit"))
        elif key == "EnvironmentFile":
            if not value:
                files = []
            else:
                files.append(value.removeprefix("-"))
    return UnitEnvironment(tuple(assignments), tuple(files))


def parse_environment_file(text: str) -> dict[str, str]:
    """``NAME=value`` lines as systemd reads them: blank lines and ``#``/``;`` comments skipped, a line
    ending in a backslash continued, an ``export`` prefix allowed, values unquoted (single quotes kept
    literally, double quotes with backslash escapes) and otherwise stripped of surrounding blanks."""
    settings: dict[str, str] = {}
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending += line[:-1]
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    for line in logical:
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("export ") or stripped.startswith("export\t"):
            stripped = stripped[len("export") :].lstrip()
        name, sep, value = stripped.partition("=")
        name = name.strip()
        if sep and _NAME.fullmatch(name):
            settings[name] = _unquote(value.strip())
    return settings


def _unquote(value: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(value):
        char = value[index]
        if char == "'":
            end = value.find("'", index + 1)
            end = len(value) if end < 0 else end
            out.append(value[index + 1 : end])
            index = end + 1
        elif char == '"':
            index += 1
            while index < len(value) and value[index] != '"':
                if value[index] == "\\" and index + 1 < len(value):
                    index += 1
                out.append(value[index])
                index += 1
            index += 1
        elif char == "\\" and index + 1 < len(value):
            out.append(value[index + 1])
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)


def environment(unit: UnitEnvironment, file_texts: Mapping[str, str]) -> dict[str, Setting]:
    """The variables ExecStart sees: the unit's assignments, then each environment file's (read from
    ``file_texts``; one not there is skipped, as a missing ``-`` file is)."""
    settings = {name: Setting(value, origin) for name, value, origin in unit.assignments}
    for path in unit.files:
        text = file_texts.get(path)
        if text is not None:
            settings.update({n: Setting(v, path) for n, v in parse_environment_file(text).items()})
    return settings


def expand_command(argv: Sequence[str], settings: Mapping[str, Setting]) -> tuple[list[str], list[str]]:
    """``argv`` (ExecStart's words) as systemd runs it; and, for the report, each variable used that
    is set, as ``$NAME from FILE``."""
    used: dict[str, str] = {}

    def value(name: str) -> str:
        setting = settings.get(name)
        if setting is None:
            return ""
        used[name] = setting.origin
        return setting.value

    expanded: list[str] = []
    for word in argv:
        whole = _WORD_VARIABLE.fullmatch(word)
        if whole:
            expanded.extend(value(whole.group(1)).split())
        else:
            expanded.append(_BRACED.sub(lambda m: value(m.group(1)), word))
    return expanded, [f"${name} from {origin}" for name, origin in used.items()]
