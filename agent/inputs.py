"""From command-line inputs to settings and a policy: the one place that reads source and CA files.

The readers (sources, certificates: ~40 ms of imports) are imported when first used: the command line
imports this module for its options, and starts connecting before it reads the policy
(``agent.early_connect``).
"""

from __future__ import annotations

import os
import re
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
    from agent.errors import SourceError
    from agent.sources import load_source

    env = os.environ if environ is None else environ
    try:
        return load_source(
            inputs.source,
            env=dict(env) if inputs.env_overrides else None,
            dtr_user=env.get(DTR_USER_ENV),
            dtr_token=env.get(DTR_TOKEN_ENV),
            ca_file=inputs.source_ca,
        )
    except SourceError as exc:
        other = _other_input(inputs.source) if exc.message.startswith(_UNKNOWN_DOCUMENT) else None
        if other is None:
            raise
        expected = exc.message.partition(": ")[2]
        raise SourceError(f"{other}, not the registry's settings; {expected}", exc.where) from None


_UNKNOWN_DOCUMENT = "cannot tell what kind of document"
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")
_SNIFFED_BYTES = 1 << 20  # a source is a few kilobytes: no more is read to say what a file is


def _other_input(path: str) -> str | None:
    """What a file given as ``--source`` that is no registry settings looks like, where it looks like
    another of trust-agent's inputs: a PEM file (``--storage-ca``/``--registry-ca``) or an inventory
    (``-i``). Read, never run (an inventory script is not executed to tell)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            text = file.read(_SNIFFED_BYTES)
    except OSError:
        return None
    pem = _PEM_BLOCK.search(text)
    if pem is not None:
        kind = "a certificate" if pem.group(1) == "CERTIFICATE" else f"a {pem.group(1).lower()}"
        return f"{kind} (PEM; CA files go with --storage-ca/--registry-ca)"
    if _looks_like_inventory(text):
        return "an inventory (the hosts to act on go with -i)"
    return None


def _looks_like_inventory(text: str) -> bool:
    """A YAML mapping shaped as trust-agent's inventory (``hosts:`` of hosts) or Ansible's (groups, ``all``
    among them, each holding ``hosts``, ``children`` or ``vars``)."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    if not isinstance(data, dict) or not data:
        return False
    if isinstance(data.get("hosts"), dict) and set(data) <= {"defaults", "hosts", "groups"}:
        return True
    return all(
        isinstance(group, dict) and bool(set(group) & {"hosts", "children", "vars"})
        for group in data.values()
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
    same = _one_file_for_both_cas(inputs)
    if same:
        settings = replace(settings, warnings=(*settings.warnings, *same))
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


def _one_file_for_both_cas(inputs: PolicyInputs) -> tuple[str, ...]:
    """A warning for each file given as both --storage-ca and --registry-ca: right where one private CA
    signed both certificates, but more often one of the two files is the wrong one, and engines would
    then fail every pull with x509 errors for the CA that is missing."""
    return tuple(
        f"{storage} is given as both --storage-ca and --registry-ca: right only where one CA signed both "
        "the storage's and the registry's certificates; if not, one of the two is the wrong file and "
        "pulls will fail with x509 errors"
        for storage in dict.fromkeys(inputs.storage_ca)
        if any(_same_file(storage, registry) for registry in inputs.registry_ca)
    )


def _same_file(first: str, second: str) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:  # one is missing: reading it says so
        return False


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
