"""The agent's own record on a Docker host: what it added, so that it removes only that.

Stored as JSON at ``DockerFacts.state_path``::

    {"version": 1, "insecure_registries": ["reg.example.com"], "cert_dirs": ["/etc/docker/certs.d/reg.example.com"]}

with ``"empty_insecure_list": true`` added where daemon.json's ``"insecure-registries": []`` is the
agent's own writing (its entries removed, the key kept, fact 11): the agent may then take the key out
again where a dockerd flag comes to give that directive (fact 13). A person's ``[]`` has no such note.

An unreadable record is treated as empty (with a warning): the agent then removes nothing it cannot
prove it added, which is the safe side of "own only what it wrote".
"""

from __future__ import annotations

import json
from dataclasses import dataclass

STATE_VERSION = 1
# The record's note that daemon.json's empty insecure-registries list is the agent's.
_EMPTY_LIST_NOTE = "empty_insecure_list"


@dataclass(frozen=True)
class DockerState:
    """Entries the agent added: ``insecure-registries`` entries and certs.d directories (absolute)."""

    insecure_registries: tuple[str, ...] = ()
    cert_dirs: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.insecure_registries or self.cert_dirs)


@dataclass(frozen=True)
class LoadedState:
    state: DockerState
    valid: bool  # False: the file exists but could not be read as a version-1 record
    warnings: tuple[str, ...] = ()
    empty_list_mine: bool = False  # daemon.json's "insecure-registries": [] is the agent's (a valid record)


def parse_state(raw: bytes | None, path: str) -> LoadedState:
    """Read the record tolerantly; never raises.

    >>> parse_state(b'{"version": 1, "insecure_registries": ["r"], "cert_dirs": []}', "s").state
    DockerState(insecure_registries=('r',), cert_dirs=())
    >>> parse_state(b'garbage', "s").state, parse_state(b'garbage', "s").valid
    (DockerState(insecure_registries=(), cert_dirs=()), False)
    >>> parse_state(b'{"version": 1, "empty_insecure_list": true}', "s").empty_list_mine
    True
    """
    if raw is None:
        return LoadedState(DockerState(), valid=True)

    def broken(why: str) -> LoadedState:
        return LoadedState(
            DockerState(),
            valid=False,
            warnings=(
                f"{path}: unreadable trust-agent state ({why}); treated as empty: "
                "nothing it added before will be removed",
            ),
        )

    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return broken("not valid JSON")
    if not isinstance(doc, dict):
        return broken("not a JSON object")
    if doc.get("version") != STATE_VERSION:
        return broken(f"unknown version {doc.get('version')!r}")
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("insecure_registries", "cert_dirs"):
        value = doc.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return broken(f"{key} is not a list of strings")
        lists[key] = tuple(dict.fromkeys(value))
    state = DockerState(lists["insecure_registries"], lists["cert_dirs"])
    return LoadedState(state, valid=True, empty_list_mine=doc.get(_EMPTY_LIST_NOTE) is True)


def render_state(state: DockerState, *, empty_list_mine: bool = False) -> bytes:
    """The record as bytes, stable for equal states (so a converged host writes nothing), with the
    note that daemon.json's empty list is the agent's where ``empty_list_mine``.

    >>> render_state(DockerState(), empty_list_mine=True).decode().split()[-3:]
    ['"empty_insecure_list":', 'true', '}']
    """
    doc: dict[str, object] = {
        "version": STATE_VERSION,
        "insecure_registries": list(state.insecure_registries),
        "cert_dirs": list(state.cert_dirs),
    }
    if empty_list_mine:
        doc[_EMPTY_LIST_NOTE] = True
    return (json.dumps(doc, indent=2) + "\n").encode()
