"""The running dockerd's registry config against what its files ask for. Pure: no I/O.

dockerd reads daemon.json only when it starts or reloads. A host can hold the right file while the
engine still runs an older one: a run stopped between its rename and its reload, a rollout with restart
policy ``never``, a hand edit not yet reloaded. certs.d is read on every pull (fact 7); only
``insecure-registries`` can lag like this, and ``/info`` shows it (``IndexConfigs[r].Secure``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from agent.runtimes.daemon_json import index_name
from agent.runtimes.daemon_json_checks import flag_values


def insecure_in_force(doc: Mapping[str, object], flags: Sequence[str]) -> frozenset[str]:
    """The entries dockerd lists as insecure once it runs daemon.json ``doc`` with command line
    ``flags``: the file's ``insecure-registries`` and every ``--insecure-registry`` flag, named as
    dockerd names them (``http://a`` is ``a``).

    >>> sorted(insecure_in_force({"insecure-registries": ["http://a:5000", 7]}, ("--insecure-registry=b",)))
    ['a:5000', 'b']
    """
    entries = doc.get("insecure-registries")
    listed = [e for e in entries if isinstance(e, str)] if isinstance(entries, list) else []
    return frozenset(index_name(e) for e in [*listed, *flag_values(flags, "insecure-registry")])


def live_insecure(info: Mapping[str, object], registries: Iterable[str]) -> dict[str, bool]:
    """Whether the engine whose ``/info`` is ``info`` treats each registry as insecure
    (``RegistryConfig.IndexConfigs[r].Secure`` false; a registry it does not list is secure).

    >>> live_insecure({"RegistryConfig": {"IndexConfigs": {"r": {"Secure": False}}}}, ["r", "s"])
    {'r': True, 's': False}
    >>> live_insecure({"RegistryConfig": None}, ["r"])
    {'r': False}
    """
    config = info.get("RegistryConfig")
    index = (config.get("IndexConfigs") if isinstance(config, Mapping) else None) or {}
    found: dict[str, bool] = {}
    for registry in registries:
        entry = index.get(registry) if isinstance(index, Mapping) else None
        found[registry] = isinstance(entry, Mapping) and entry.get("Secure") is False
    return found


def mismatches(live: Mapping[str, bool], wanted: frozenset[str]) -> list[str]:
    """One line per registry whose live insecure/secure state differs from ``wanted`` (what the files
    ask for).

    >>> mismatches({"r": False, "s": True}, frozenset({"r", "s"}))
    ['r: dockerd has it secure, daemon.json says insecure']
    """
    return [
        f"{r}: dockerd has it {'insecure' if is_insecure else 'secure'}, daemon.json says "
        f"{'insecure' if r in wanted else 'secure'}"
        for r, is_insecure in live.items()
        if is_insecure != (r in wanted)
    ]
