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


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Iterator[LineDict]:
    data = LineDict()
    yield data  # yielded first so recursive structures resolve, as PyYAML's own constructors do
    data.update(loader.construct_mapping(node))
    for key_node, _ in node.value:
        # construct_mapping has refused unhashable keys already; constructed keys are cached.
        data.lines[loader.construct_object(key_node)] = key_node.start_mark.line + 1


class VaultText(str):
    """An ``!vault`` value: ansible-vault ciphertext, kept as written (never decrypted here)."""


class UnsafeText(str):
    """An ``!unsafe`` value: text Ansible never templates."""


_JSON_KEYS = {VaultText: "__ansible_vault", UnsafeText: "__ansible_unsafe"}

# What ansible-vault output starts with (Ansible's ``is_encrypted``), a whole file or one value.
VAULT_HEADER = "$ANSIBLE_VAULT"


def is_vault_ciphertext(text: str) -> bool:
    return text.startswith(VAULT_HEADER)


def refuse_vault_file(text: str, what: str, path: str) -> None:
    """Refuse ``path`` where it is encrypted whole with ansible-vault: read as text, its ciphertext
    would be taken for host names or variables. Ansible too refuses it without a vault password."""
    if is_vault_ciphertext(text):
        raise InventoryError(
            f"this {what} is encrypted with ansible-vault, which trust-agent does not decrypt: encrypt "
            "only the secret values in it (`ansible-vault encrypt_string`), or give an executable "
            "inventory script that runs `ansible-inventory --vault-password-file FILE --list`",
            where=path,
        )


def tags_to_json(value: Any, *, unsafe_marked: bool = True) -> Any:
    """``!vault`` and ``!unsafe`` values (also inside lists and mappings) as ansible-inventory's JSON
    writes them: ``{"__ansible_vault": …}``; ``{"__ansible_unsafe": …}`` where ``unsafe_marked`` (its
    ``--list``), plain text otherwise (its ``--host``)."""
    if isinstance(value, VaultText) or (unsafe_marked and isinstance(value, UnsafeText)):
        return {_JSON_KEYS[type(value)]: str(value)}
    if isinstance(value, dict):
        return {k: tags_to_json(v, unsafe_marked=unsafe_marked) for k, v in value.items()}
    if isinstance(value, list):
        return [tags_to_json(v, unsafe_marked=unsafe_marked) for v in value]
    return str(value) if isinstance(value, UnsafeText) else value


def tags_from_json(value: Any) -> Any:
    """The values :func:`tags_to_json` wrote (an inventory script's output, say) as tagged values again."""
    if isinstance(value, dict):
        if len(value) == 1:
            (key, text), *_ = value.items()
            for kind, json_key in _JSON_KEYS.items():
                if key == json_key:
                    return kind(text)
        return {k: tags_from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [tags_from_json(v) for v in value]
    return value


def _construct_vault(loader: yaml.SafeLoader, node: yaml.Node) -> VaultText:
    return VaultText(loader.construct_scalar(node))  # type: ignore[arg-type]


def _construct_unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    """``!unsafe`` text; on a list or mapping, every string in it, as Ansible marks them."""
    if isinstance(node, yaml.ScalarNode):
        return UnsafeText(loader.construct_scalar(node))
    return _unsafe_strings(loader.construct_object(_untagged(node), deep=True))


def _untagged(node: yaml.Node) -> yaml.Node:
    """``node`` under its plain sequence or mapping tag (the constructor for ``!unsafe`` is this one)."""
    if isinstance(node, yaml.MappingNode):
        return yaml.MappingNode(
            yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, node.value, node.start_mark, node.end_mark
        )
    return yaml.SequenceNode(
        yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, node.value, node.start_mark, node.end_mark
    )


def _unsafe_strings(value: Any) -> Any:
    if isinstance(value, str):
        return UnsafeText(value)
    if isinstance(value, dict):
        return {k: _unsafe_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unsafe_strings(v) for v in value]
    return value


def line_loader(base: type[Any]) -> Any:
    """A safe loader on ``base`` (PyYAML's parser or libyaml's) whose mappings are :class:`LineDict`,
    and which reads Ansible's ``!vault`` and ``!unsafe`` tags (group_vars hold secrets that way)."""
    loader: Any = type("LineLoader", (base,), {})
    loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
    loader.add_constructor("!vault", _construct_vault)
    loader.add_constructor("!unsafe", _construct_unsafe)
    return loader


# libyaml's parser where PyYAML was built with it: the same nodes and marks, about 7x faster on a
# fleet-sized inventory (read before any host is contacted, so its time is the run's).
_Loader = line_loader(yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader)


def parse_yaml(text: str, source: str, loader: type[Any] | None = None) -> Any:
    """Parse ``text`` (with ``loader``, a :func:`line_loader`, or the fastest one here); a syntax error
    becomes an :class:`InventoryError` naming ``source:line``."""
    try:
        return yaml.load(text, Loader=loader or _Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InventoryError(f"invalid YAML: {problem}", where=where) from None


def where(source: str, mapping: Any, key: Any) -> str:
    """``file:line`` of ``key`` in ``mapping`` when known, else the file."""
    line = mapping.line_of(key) if isinstance(mapping, LineDict) else 0
    return f"{source}:{line}" if line else source
