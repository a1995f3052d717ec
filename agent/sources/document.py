"""A parsed YAML document that remembers the line of every key, for one-line errors.

``load_yaml`` parses once (compose, then construct from the same node tree) so that errors about a
value can name its key path *and* its line: ``config.yml:12: storage.s3.secure: must be true or
false``. Syntax errors use PyYAML's ``problem_mark`` the same way. Messages never quote the offending
source line, because that line might hold a secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import yaml

from agent.errors import SourceError

Path = tuple[str, ...]

# Key names whose values are secrets in the documents read here (accesskey, secretkey, password, ...).
_SECRET_KEY = re.compile(r"(?i)secret|pass|token|key|credential|auth")

_BOOL_TAG = "tag:yaml.org,2002:bool"


class GoYamlV2Loader(yaml.SafeLoader):
    """PyYAML read as Go's yaml.v2 reads, for the booleans: distribution parses config.yml and every
    ``REGISTRY_*`` value with yaml.v2, whose plain booleans (resolve.go) are PyYAML's (YAML 1.1:
    yes/no, true/false, on/off, each in three casings) plus ``y``, ``Y``, ``n`` and ``N``.
    Quoted, all of them stay strings, as in yaml.v2."""

    bool_values: ClassVar[dict[str, bool]] = {**yaml.SafeLoader.bool_values, "y": True, "n": False}


GoYamlV2Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
GoYamlV2Loader.add_implicit_resolver(
    _BOOL_TAG,
    re.compile(r"^(?:[yYnN]|yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$"),
    list("yYnNtTfFoO"),
)


@dataclass(frozen=True)
class Document:
    """Data of a YAML (or JSON) document, plus the 1-based line of each key path."""

    origin: str
    data: object
    lines: Mapping[Path, int] = field(default_factory=dict)

    def where(self, path: Path) -> str:
        """``origin:line`` for the deepest part of ``path`` whose line is known, else ``origin``."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return f"{self.origin}:{line}"
        return self.origin

    def error(self, path: Path, message: str) -> SourceError:
        """A ``SourceError`` for the key at ``path``: ``origin:line: a.b.c: message``."""
        key = ".".join(path)
        return SourceError(f"{key}: {message}" if key else message, self.where(path))


def load_yaml(text: str, origin: str, *, loader_class: type[yaml.SafeLoader] = yaml.SafeLoader) -> Document:
    """Parse ``text`` (one YAML document) into a :class:`Document`; any YAML error is a ``SourceError``.

    ``loader_class`` is :class:`GoYamlV2Loader` for what Go programs read (distribution's config.yml).
    """
    try:
        loader = loader_class(text)  # checks for unprintable characters already
        try:
            node = loader.get_single_node()
            try:
                data = loader.construct_document(node) if node is not None else None
            except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
                # PyYAML's constructors for !!int, !!float, !!timestamp... raise these, quoting the value.
                raise _tag_error(node, origin) from None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, origin, text) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise SourceError(
            f"not valid YAML: character #x{exc.character:04x} is not allowed", f"{origin}:{line}"
        ) from None
    except yaml.YAMLError as exc:
        raise SourceError(f"not valid YAML: {_one_line(str(exc))}", origin) from None
    except RecursionError:
        raise SourceError("not valid YAML: nested too deeply", origin) from None
    lines: dict[Path, int] = {}
    if node is not None:
        _index(node, (), lines, set())
    return Document(origin=origin, data=data, lines=lines)


def _syntax_error(exc: yaml.MarkedYAMLError, origin: str, text: str) -> SourceError:
    mark = exc.problem_mark or exc.context_mark
    where = f"{origin}:{mark.line + 1}" if mark is not None else origin
    message = _one_line(", ".join(p for p in (exc.context, exc.problem) if p)) or "syntax error"
    # PyYAML quotes the token it tripped on ("undefined alias 'x'"): on a secret's line (a password
    # starting with '*' or '!') that token is the secret.
    lines = text.splitlines()
    if mark is not None and mark.line < len(lines) and _SECRET_KEY.search(lines[mark.line].partition(":")[0]):
        message = re.sub(r"'[^']*'", "'...'", message)
    return SourceError(f"not valid YAML: {message}", where)


def _tag_error(node: yaml.Node | None, origin: str) -> SourceError:
    """The first scalar whose explicit tag its text does not fit (``!!int SECRET``), by line and tag,
    never by value: the value may be a secret."""
    for scalar in _scalars(node, set()):
        try:
            yaml.SafeLoader("").construct_object(scalar, deep=True)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            tag = scalar.tag.replace("tag:yaml.org,2002:", "!!")
            return SourceError(
                f"not valid YAML: the value here is tagged {tag} but is not one",
                f"{origin}:{scalar.start_mark.line + 1}",
            )
    return SourceError("not valid YAML: a tagged value does not fit its tag", origin)


def _scalars(node: yaml.Node | None, seen: set[int]) -> Iterator[yaml.ScalarNode]:
    if node is None or id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        yield node
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from _scalars(key, seen)
            yield from _scalars(value, seen)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _scalars(item, seen)


def _index(node: yaml.Node, path: Path, lines: dict[Path, int], seen: set[int]) -> None:
    # An alias shares its anchor's node: index each node once, so that recursive or exponential
    # alias structures cost no more than the text itself.
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            child = (*path, str(key_node.value))
            # The last one wins, as in the parsed data: a key given twice (distribution takes the last
            # too) and a key set over a merged (<<) mapping's, which PyYAML lists before it.
            lines[child] = key_node.start_mark.line + 1
            _index(value_node, child, lines, seen)
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            child = (*path, str(position))
            lines.setdefault(child, item.start_mark.line + 1)
            _index(item, child, lines, seen)


def _one_line(text: str) -> str:
    return " ".join(text.split())
