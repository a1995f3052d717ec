"""Sources of a registry's storage settings: distribution config.yml, DTR/MSR API or JSON, harbor.yml.

``load_source(spec, env=None)`` auto-detects the kind from content (or a URL) and returns
:class:`RegistrySettings`. Every problem with the input is a one-line ``SourceError`` (exit code 2).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace

from agent.errors import SourceError
from agent.inputfile import read_bounded
from agent.sources.distribution import parse_distribution
from agent.sources.document import load_yaml
from agent.sources.dtr import dtr_base_url, fetch_dtr, parse_dtr_json
from agent.sources.harbor import parse_harbor
from agent.sources.model import RegistrySettings, S3Storage, SourceKind

__all__ = [
    "RegistrySettings",
    "S3Storage",
    "SourceKind",
    "detect_kind",
    "fetch_dtr",
    "load_source",
    "parse_distribution",
    "parse_dtr_json",
    "parse_harbor",
    "unused_inputs",
]

MAX_SOURCE_BYTES = 4 * 1024 * 1024
_EXPECTED = (
    "expected a distribution config.yml (version + storage), a harbor.yml (hostname/storage_service), "
    'or DTR settings JSON (an object with a "config" string)'
)


def load_source(
    spec: str,
    *,
    env: Mapping[str, str] | None = None,
    dtr_user: str | None = None,
    dtr_token: str | None = None,
    ca_file: str | None = None,
) -> RegistrySettings:
    """Read settings from an ``https://`` DTR address or a file of any supported kind.

    ``env`` (``REGISTRY_*`` overrides) applies to a distribution config.yml only: DTR and Harbor run
    their registry with their own environment. ``ca_file`` verifies a live DTR. Either given where it
    does not apply is said in the settings' ``warnings``, not dropped in silence.
    """
    live = "://" in spec
    settings = _read_settings(spec, env, dtr_user, dtr_token, ca_file)
    unused = unused_inputs(settings.kind, live=live, env_given=env is not None, ca_file=ca_file)
    return replace(settings, warnings=(*settings.warnings, *unused)) if unused else settings


def _read_settings(
    spec: str,
    env: Mapping[str, str] | None,
    dtr_user: str | None,
    dtr_token: str | None,
    ca_file: str | None,
) -> RegistrySettings:
    if "://" in spec:
        base = dtr_base_url(spec)
        if not dtr_user or not dtr_token:
            raise SourceError(
                "reading a DTR needs an admin user and token (TRUST_AGENT_DTR_USER, TRUST_AGENT_DTR_TOKEN)",
                base,
            )
        return fetch_dtr(base, dtr_user, dtr_token, ca_file=ca_file)
    text = _read_text(spec)
    kind = detect_kind(text, origin=spec)
    if kind == "dtr":
        return parse_dtr_json(text, spec)
    if kind == "harbor":
        return parse_harbor(text, spec)
    return parse_distribution(text, spec, env)


# Who runs the registry of a source that is no distribution config.yml, with an environment of its own.
_RUNS_ITS_REGISTRY = {"harbor": "a harbor.yml: Harbor", "dtr": "DTR's settings: DTR"}


def unused_inputs(kind: SourceKind, *, live: bool, env_given: bool, ca_file: str | None) -> tuple[str, ...]:
    """What the user asked for that a source of ``kind`` leaves undone, each as a warning: ``REGISTRY_*``
    overrides (``env_given``) for a harbor.yml or DTR's settings, a ``ca_file`` for a source that is
    no live DTR."""
    unused = []
    if env_given and kind != "distribution":
        unused.append(
            "--env-overrides is ignored: REGISTRY_* variables apply over a distribution config.yml, and "
            f"the source is {_RUNS_ITS_REGISTRY[kind]} runs its registry with an environment of its own"
        )
    if ca_file is not None and not live:
        unused.append(
            f"--source-ca {ca_file} is ignored: it verifies a live DTR (--source https://...), and the "
            "source is a file"
        )
    return tuple(unused)


# The first line that says something, an INI section header: "[all]", "[web:vars]".
_INI_SECTION = re.compile(r"^(?:\s*(?:[#;].*)?\n)*\s*\[[^\]\n]+\]\s*$", re.M)


def detect_kind(text: str, *, origin: str = "<source>") -> SourceKind:
    """Tell a DTR settings JSON, a harbor.yml and a distribution config.yml apart by their keys.

    >>> detect_kind('{"config": "version: 0.1", "storage": {}}')
    'dtr'
    >>> detect_kind("hostname: reg.example.com\\nstorage_service: {}")
    'harbor'
    """
    if not text.strip():
        raise SourceError(f"empty: {_EXPECTED}", origin)
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            data = None  # may still be YAML flow style; the YAML reader below says what is wrong
        if isinstance(data, dict) and isinstance(data.get("config"), str):
            return "dtr"
    if _INI_SECTION.match(text):
        # An INI file (an Ansible inventory, most likely) is no YAML: saying so beats a parser's error.
        raise SourceError(f"an INI file (an inventory? that is -i's): {_EXPECTED}", origin)
    data = load_yaml(text, origin).data
    if isinstance(data, dict):
        if "storage_service" in data or "hostname" in data:
            return "harbor"
        if "storage" in data and "version" in data:
            return "distribution"
    raise SourceError(f"cannot tell what kind of document this is: {_EXPECTED}", origin)


def _read_text(path: str) -> str:
    data = read_bounded(
        path, MAX_SOURCE_BYTES, "a registry configuration", lambda message: SourceError(message, path)
    )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"not UTF-8 text (byte {exc.start})", path) from None
