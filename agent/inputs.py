"""From command-line inputs to settings and a policy: the one place that reads source and CA files.

The readers (sources, certificates: ~40 ms of imports) are imported when first used: the command line
imports this module for its options, and starts connecting before it reads the policy
(``agent.early_connect``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.sources.model import RegistrySettings
    from agent.trust import TrustPolicy

DTR_USER_ENV = "TRUST_AGENT_DTR_USER"
DTR_TOKEN_ENV = "TRUST_AGENT_DTR_TOKEN"


@dataclass(frozen=True)
class PolicyInputs:
    source: str
    registries: tuple[str, ...] = ()
    storage_ca: tuple[str, ...] = ()
    registry_ca: tuple[str, ...] = ()
    allow_expired: bool = False
    env_overrides: bool = False
    source_ca: str | None = None  # CA to verify a live DTR API with
    no_storage_ca: bool = False  # the storage's certificate is publicly trusted: no storage CA
    no_registry_ca: bool = False  # the registry's certificate is publicly trusted: no registry CA


def read_settings(inputs: PolicyInputs, environ: Mapping[str, str] | None = None) -> RegistrySettings:
    from agent.sources import load_source

    env = os.environ if environ is None else environ
    return load_source(
        inputs.source,
        env=dict(env) if inputs.env_overrides else None,
        dtr_user=env.get(DTR_USER_ENV),
        dtr_token=env.get(DTR_TOKEN_ENV),
        ca_file=inputs.source_ca,
    )


def resolve_policy(
    inputs: PolicyInputs, environ: Mapping[str, str] | None = None
) -> tuple[RegistrySettings, TrustPolicy]:
    """Read the source and every CA, and derive the policy. Raises an ``InputError`` on bad input."""
    settings = read_settings(inputs, environ)
    return settings, policy_for(settings, inputs)


def policy_for(settings: RegistrySettings, inputs: PolicyInputs) -> TrustPolicy:
    """The policy from settings already read, plus the CA files and addresses given in ``inputs``."""
    from agent.certs import CABundle, load_bundle, parse_bundle
    from agent.trust import build_policy

    settings = _storage_ca_given_for_unread(settings, inputs)
    storage: list[CABundle] = []
    registry: list[CABundle] = []
    if settings.storage_ca_pem:
        origin = settings.storage_ca_origin or f"{settings.origin}: storage CA"
        storage.append(parse_bundle(settings.storage_ca_pem, origin, allow_expired=inputs.allow_expired))
    storage.extend(load_bundle(p, allow_expired=inputs.allow_expired) for p in inputs.storage_ca)
    if settings.registry_ca_pem:
        origin = settings.registry_ca_origin or f"{settings.origin}: registry CA"
        registry.append(parse_bundle(settings.registry_ca_pem, origin, allow_expired=inputs.allow_expired))
    registry.extend(load_bundle(p, allow_expired=inputs.allow_expired) for p in inputs.registry_ca)
    return build_policy(
        settings,
        inputs.registries,
        tuple(storage),
        tuple(registry),
        no_storage_ca=inputs.no_storage_ca,
        no_registry_ca=inputs.no_registry_ca,
    )


def _storage_ca_given_for_unread(settings: RegistrySettings, inputs: PolicyInputs) -> RegistrySettings:
    """A CA the source names but that cannot be read here (Harbor's ca_bundle is a path on the Harbor
    host): ``--storage-ca`` stands in for it, with a warning; without one, it is an error."""
    from agent.errors import SourceError

    unread = settings.storage_ca_unread
    if unread is None:
        return settings
    if not inputs.storage_ca:
        instead = (
            " (not --no-storage-ca: the source gives the storage a CA of its own)"
            if inputs.no_storage_ca
            else ""
        )
        raise SourceError(
            f"{unread}; it names a file on the Harbor host: copy that file to this machine and give it "
            f"with --storage-ca FILE{instead}"
        )
    given = ", ".join(inputs.storage_ca)
    note = f"{unread}; --storage-ca {given} stands in for it"
    return replace(settings, warnings=(*settings.warnings, note))
