"""``daemon run --config FILE``: the same options as the command line, from a YAML file.

The file is where source credentials belong on a host (a 0600 file, never the command line, which
every local user can read in ``/proc``). Keys are the long option names, with ``-`` or ``_``::

    source: https://dtr.example.com
    registry: [dtr.example.com, dtr.example.com:443]
    storage_ca: /etc/trust-agent/storage-ca.pem
    registry_ca: /etc/trust-agent/registry-ca.pem   # as the rollout gave it
    interval: 60s
    metrics_file: /var/lib/node_exporter/textfile_collector/trust_agent.prom
    dtr_user: trust-agent          # or TRUST_AGENT_DTR_USER / _TOKEN in the unit's EnvironmentFile
    dtr_token: …

Options given on the command line win over the file. Relative paths are relative to the file.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.daemon.timing import parse_duration, parse_interval
from agent.errors import UsageError
from agent.names import registry_from_option
from agent.sources.document import load_yaml

# YAML key → (click parameter name, kind)
_KEYS: dict[str, tuple[str, str]] = {
    "source": ("source", "source"),
    "registry": ("registries", "registries"),
    "registries": ("registries", "registries"),
    "storage_ca": ("storage_ca", "paths"),
    "registry_ca": ("registry_ca", "paths"),
    "allow_expired": ("allow_expired", "bool"),
    "no_storage_ca": ("no_storage_ca", "bool"),
    "no_registry_ca": ("no_registry_ca", "bool"),
    "env_overrides": ("env_overrides", "bool"),
    "source_ca": ("source_ca", "path"),
    "interval": ("interval", "interval"),
    "max_backoff": ("max_backoff", "duration"),
    "jitter": ("jitter", "number"),
    "state_dir": ("state_dir", "path"),
    "status_file": ("status_file", "path"),
    "metrics_file": ("metrics_file", "path"),
    "root": ("root", "path"),
    "restart_policy": ("restart_policy", "text"),
    "allow_restart": ("allow_restart", "bool"),
    "canary_image": ("canary_image", "text"),
    "verify": ("no_verify", "negated"),
    "log_level": ("log_level", "text"),
}
CREDENTIAL_KEYS = {"dtr_user": "TRUST_AGENT_DTR_USER", "dtr_token": "TRUST_AGENT_DTR_TOKEN"}


@dataclass(frozen=True)
class FileConfig:
    defaults: dict[str, Any]  # click parameter name → value
    credentials: dict[str, str]  # environment variable name → value (kept in memory only)


def load_config(path: str) -> FileConfig:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(1024 * 1024)
            mode = os.fstat(handle.fileno()).st_mode
    except OSError as exc:
        raise UsageError(f"cannot read: {exc.strerror or exc}", path) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError("not UTF-8 text", path) from None
    document = load_yaml(text, path)
    data = document.data if document.data is not None else {}
    if not isinstance(data, dict):
        raise UsageError("expected a mapping of option names to values", path)
    base = Path(path).resolve().parent
    defaults: dict[str, Any] = {}
    credentials: dict[str, str] = {}
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_")
        where = document.where((str(raw_key),))
        if key in CREDENTIAL_KEYS:
            if not isinstance(value, str) or not value:
                raise UsageError(f"{raw_key}: must be a non-empty string", where)
            credentials[CREDENTIAL_KEYS[key]] = value
            continue
        if key not in _KEYS:
            known = ", ".join(sorted({*_KEYS, *CREDENTIAL_KEYS}))
            raise UsageError(f"{raw_key}: unknown option (known: {known})", where)
        name, kind = _KEYS[key]
        defaults[name] = _value(value, kind, base, f"{where}: {raw_key}")
    if "TRUST_AGENT_DTR_TOKEN" in credentials and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError("holds dtr_token but others can read it: chmod 600 the file", path)
    return FileConfig(defaults, credentials)


def _value(value: object, kind: str, base: Path, where: str) -> Any:
    if kind in ("bool", "negated"):
        if not isinstance(value, bool):
            raise UsageError("must be true or false", where)
        return not value if kind == "negated" else value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UsageError("must be a number", where)
        return float(value)
    if kind in ("list", "paths", "registries"):
        items = value if isinstance(value, list) else [value]
        texts = [i for i in items if isinstance(i, str) and i]
        if len(texts) != len(items):
            raise UsageError("must be a string or a list of strings", where)
        if kind == "registries":
            # Refused here, as the command line refuses it: left to the daemon's polls, a bad name
            # looked like a source outage, retried for ever.
            return [registry_from_option(i, where) for i in texts]
        return [_path(i, base) for i in texts] if kind == "paths" else texts
    if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
        raise UsageError("must be a non-empty string", where)
    text = str(value)
    if kind == "duration":  # checked here, where the file and line are known
        parse_duration(text, where)
    if kind == "interval":
        parse_interval(text, where)
    if kind == "path" or (kind == "source" and "://" not in text):
        return _path(text, base)
    return text


def _path(value: str, base: Path) -> str:
    expanded = os.path.expanduser(value)
    return expanded if os.path.isabs(expanded) else str(base / expanded)
