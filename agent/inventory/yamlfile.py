"""YAML reading that remembers the line of every mapping key, so errors can say where."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from agent.errors import InventoryError


class LineDict(dict[Any, Any]):
    """A mapping from a YAML file; ``line_of(key)`` is the 1-based line the key is on (0 if unknown)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lines: dict[Any, int] = {}

    def line_of(self, key: Any) -> int:
        return self.lines.get(key, 0)


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Iterator[LineDict]:
    data = LineDict()
    yield data  # yielded first so recursive structures resolve, as PyYAML's own constructors do
    data.update(loader.construct_mapping(node))
    for key_node, _ in node.value:
        # construct_mapping has refused unhashable keys already; constructed keys are cached.
        data.lines[loader.construct_object(key_node)] = key_node.start_mark.line + 1


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, source: str) -> Any:
    """Parse ``text``; a syntax error becomes an :class:`InventoryError` naming ``source:line``."""
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InventoryError(f"invalid YAML: {problem}", where=where) from None


def where(source: str, mapping: Any, key: Any) -> str:
    """``file:line`` of ``key`` in ``mapping`` when known, else the file."""
    line = mapping.line_of(key) if isinstance(mapping, LineDict) else 0
    return f"{source}:{line}" if line else source
