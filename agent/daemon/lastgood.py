"""The last good policy, kept on disk so that a restart during a source outage revokes nothing.

What is stored is the *derived* policy (registries, the insecure flag, CA PEMs, reasons), never the
source document: access and secret keys, tokens and passwords live only in the source. On load the
CA bundles are parsed again and the stored fingerprint must match, so a damaged file is refused
rather than half-applied.

File: ``<state-dir>/daemon-last-good.json`` (mode 0600)::

    {"version": 1, "saved_at": 1714550000.0, "source": "/etc/docker/registry/config.yml",
     "source_kind": "distribution", "fingerprint": "3f9c…",
     "policy": {"registries": [...], "storage_endpoint": "...", "storage_scheme": "https",
                "storage_alternatives": [["https", "s3.eu-west-1.amazonaws.com"]], "insecure": false,
                "storage_ca_missing": false, "registry_ca_missing": false, "reasons": [...], "warnings": [...],
                "ca_files": [{"role": "storage", "name": "trust-agent-storage-ca.crt",
                              "origin": "...", "pem": "-----BEGIN CERTIFICATE-----…"}]}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from agent.certs import parse_bundle
from agent.daemon.files import STATE_DIR_MODE, write_atomic
from agent.errors import InputError, TrustAgentError
from agent.names import validate_registry
from agent.trust import CA_FILE_NAMES, CAFile, CARole, TrustPolicy

FILE_NAME = "daemon-last-good.json"
VERSION = 1


class StateError(TrustAgentError):
    """The stored last good policy cannot be used (unreadable, damaged, from another version)."""


@dataclass(frozen=True)
class LastGood:
    policy: TrustPolicy
    source: str  # where it came from, as shown to people (no credentials)
    source_kind: str | None
    saved_at: float


class LastGoodStore:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME

    def save(self, last: LastGood) -> None:
        document = {
            "version": VERSION,
            "saved_at": last.saved_at,
            "source": last.source,
            "source_kind": last.source_kind,
            "fingerprint": last.policy.fingerprint(),
            "policy": policy_to_json(last.policy),
        }
        data = json.dumps(document, indent=2).encode() + b"\n"
        # Not listable by others: the engine's own state lives beside it (files.STATE_DIR_MODE).
        self.path.parent.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
        write_atomic(self.path, data, mode=0o600)

    def load(self) -> LastGood | None:
        """The stored policy, ``None`` when there is none; ``StateError`` when it cannot be trusted."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        try:
            document = json.loads(raw)
            if not isinstance(document, dict) or document.get("version") != VERSION:
                raise StateError(f"{self.path}: not a version {VERSION} last-good file")
            policy = policy_from_json(document["policy"])
            if policy.fingerprint() != document["fingerprint"]:
                raise StateError(f"{self.path}: fingerprint does not match the stored policy")
            return LastGood(
                policy=policy,
                source=str(document.get("source", "")),
                source_kind=document.get("source_kind"),
                saved_at=float(document["saved_at"]),
            )
        except StateError:
            raise
        except (ValueError, KeyError, TypeError, InputError) as exc:
            raise StateError(f"{self.path}: damaged ({type(exc).__name__}: {exc})") from None


def policy_to_json(policy: TrustPolicy) -> dict[str, Any]:
    return {
        "registries": list(policy.registries),
        "storage_endpoint": policy.storage_endpoint,
        "storage_scheme": policy.storage_scheme,
        "storage_alternatives": [[scheme, host] for scheme, host in policy.storage_alternatives],
        "insecure": policy.insecure,
        # Kept, or a restart during an outage would remove a CA file the host holds and no input gave.
        "storage_ca_missing": policy.storage_ca_missing,
        "registry_ca_missing": policy.registry_ca_missing,
        "reasons": list(policy.reasons),
        "warnings": list(policy.warnings),
        "ca_files": [
            {"role": c.role, "name": c.name, "origin": c.bundle.origin, "pem": c.bundle.pem.decode("ascii")}
            for c in policy.ca_files
        ],
    }


def policy_from_json(data: Any) -> TrustPolicy:
    """Rebuild a policy, checking what becomes a path on the host as carefully as fresh input."""
    if not isinstance(data, dict):
        raise TypeError("policy must be an object")
    registries = tuple(validate_registry(str(r), "last good policy") for r in data["registries"])
    ca_files = []
    for item in data["ca_files"]:
        role = cast(CARole, item["role"])
        if CA_FILE_NAMES.get(role) != item["name"]:
            raise ValueError(f"unexpected CA file {item['name']!r} for role {role!r}")
        # Expired since it was saved is no reason to revoke trust: allow_expired on reload.
        bundle = parse_bundle(item["pem"].encode("ascii"), str(item["origin"]), allow_expired=True)
        ca_files.append(CAFile(role, item["name"], bundle))
    return TrustPolicy(
        registries=registries,
        storage_endpoint=_optional_str(data.get("storage_endpoint")),
        storage_scheme=_optional_str(data.get("storage_scheme")),
        storage_alternatives=_alternatives(data.get("storage_alternatives", [])),
        ca_files=tuple(ca_files),
        insecure=bool(data["insecure"]),
        storage_ca_missing=data.get("storage_ca_missing") is True,
        registry_ca_missing=data.get("registry_ca_missing") is True,
        reasons=tuple(str(r) for r in data.get("reasons", ())),
        warnings=tuple(str(w) for w in data.get("warnings", ())),
    )


def _alternatives(value: object) -> tuple[tuple[str, str], ...]:
    """``[[scheme, host], ...]``; a file saved before alternatives were kept has none (``[]``)."""
    if not isinstance(value, list):
        raise TypeError("storage_alternatives must be a list of [scheme, host]")
    pairs = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(part, str) for part in item)):
            raise TypeError(f"storage_alternatives: {item!r} is not [scheme, host]")
        pairs.append((item[0], item[1]))
    return tuple(pairs)


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)
