"""The Docker planner: a trust policy plus one host's facts → the files to change and dockerd's action.

Pure: no I/O. The rules, with the facts they rest on (``shared/design/trust-facts.md``):

- Each CA bundle goes into ``certs.d/<registry>/`` for every spelling of the registry (facts 4, 5), as
  a ``trust-agent-*.crt`` file: ``.crt`` files are CA roots; ``.cert``/``.key`` are never written (fact 6).
  Only files with the names the agent gives its CAs (``CA_FILE_NAMES``) are ever deleted: another
  ``trust-agent-*.crt`` is a person's (a copy kept for a mirror), and pulls through it depend on it.
- certs.d is read on every pull and push: those changes need no reload (fact 7).
- Skip-TLS storage: the registry goes into daemon.json ``insecure-registries`` (fact 9), which is
  reloadable (fact 10); entries the agent added and no longer needs are removed, leaving ``[]`` rather
  than no key (fact 11). Entries a person wrote are never touched, and are read as dockerd reads them
  (``http://reg`` is ``reg``); a registry a ``--insecure-registry`` flag names is insecure already and
  is not written. The agent's own ``[]`` goes where a flag comes to give that directive (fact 13).
- daemon.json is checked before it is written (fact 12) and refused if one of its keys is also a
  dockerd flag (fact 13).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from cryptography import x509
from cryptography.x509.oid import NameOID

from agent.certs import certificate_info
from agent.errors import InvalidNameError
from agent.names import validate_registry
from agent.runtimes.daemon_json import (
    INSECURE_KEY,
    DaemonJsonError,
    InsecureMerge,
    detect_indent,
    index_name,
    invalid_utf8_at,
    merge_insecure,
    parse_daemon_json,
    repeated_keys,
    serialise,
    trailing_data,
)
from agent.runtimes.daemon_json_checks import (
    DOCKER_20_10_KEYS,
    api_hosts,
    check_daemon_json,
    config_file_flag,
    conflicting_flags,
    flag_values,
)
from agent.runtimes.daemon_json_text import splice_insecure
from agent.runtimes.docker_facts import DAEMON_JSON, DockerFacts
from agent.runtimes.docker_state import DockerState, parse_state, render_state
from agent.runtimes.live_registry import insecure_in_force, mismatches
from agent.runtimes.plan import EngineAction, FileChange, HostPlan, stronger
from agent.trust import CA_FILE_NAMES, OWNED_PREFIX, CAFile, CARole, TrustPolicy

RestartPolicy = Literal["auto", "reload", "restart", "never"]

_OWNED_FILE = re.compile(rf"^{re.escape(OWNED_PREFIX)}[A-Za-z0-9._-]*\.crt$")
# The names the agent writes its CA files under: the only files in certs.d it ever deletes.
_DELETABLE_NAMES = frozenset(CA_FILE_NAMES.values())


def plan_docker(
    policy: TrustPolicy,
    facts: DockerFacts,
    *,
    restart_policy: RestartPolicy = "auto",
    allow_restart: bool = False,
    live_restore: bool | None = None,
    live_insecure: Mapping[str, bool] | None = None,
) -> HostPlan:
    """What must change on one Docker host so that it holds ``policy``, and what dockerd must do.

    ``restart_policy``: ``auto`` picks the least disruptive action (none for certs.d, reload for
    ``insecure-registries``, restart only where a reload is not safe, and then only with
    ``allow_restart`` or live-restore); ``reload``/``restart`` force that action whenever daemon.json
    changes; ``never`` leaves dockerd alone. ``live_restore``, when given, is what the running daemon
    has (``docker info``) and wins over daemon.json: live-restore protects containers only if the
    daemon being stopped has it on.

    A plan with ``blockers`` must not be applied at all; its changes are still listed for the report.
    """
    loaded = parse_state(facts.state, facts.state_path)
    empty_list_recorded = loaded.empty_list_mine
    registries, blockers = _valid_registries(policy.registries)
    ca_files, ca_blockers = _valid_ca_files(policy.ca_files)
    blockers += ca_blockers

    certs = _plan_certs(policy, facts, registries, ca_files, loaded.state)
    blockers += _cas_kept(policy, certs)
    daemon = _plan_daemon_json(policy, facts, registries, loaded.state, live_insecure, empty_list_recorded)
    blockers += daemon.blockers

    changes = [*certs.changes]
    # certs.d itself is in the plan where it is missing, so undoing the plan removes it again.
    mkdirs = [facts.certs_dir.rstrip("/")] if certs.mkdirs and not facts.certs_dir_present else []
    mkdirs += certs.mkdirs
    if daemon.change is not None:
        changes.append(daemon.change)
        if daemon.change.action == "create" and not facts.certs_dir_present:
            # No daemon.json and no certs.d: /etc/docker itself may be missing (a fresh rootfs, an
            # engine that never made it); made where it is, and removed again by an undo if left empty.
            mkdirs.insert(0, posixpath.dirname(daemon.change.path))

    new_state = _record_after(loaded.state, DockerState(daemon.owned, certs.state_dirs))
    if not loaded.valid or new_state != loaded.state or daemon.empty_list_mine != empty_list_recorded:
        changes = _with_record(changes, facts, loaded.state, new_state, daemon.empty_list_mine)
        if facts.state is None:
            # The facts do not say whether the directory exists; the applier creates it with parents.
            mkdirs.append(posixpath.dirname(facts.state_path))

    behind = _engine_behind(facts, daemon, live_insecure) if daemon.change is None else ()
    action = _engine_action(
        facts,
        daemon,
        behind=behind,
        certs_changed=bool(certs.changes or certs.mkdirs or certs.rmdirs),
        restart_policy=restart_policy,
        allow_restart=allow_restart,
        live_restore=live_restore,
    )
    blockers += action.blockers
    blockers += _loads_a_persons_entry(policy, facts, daemon, action.action, live_insecure)
    unsafe_dirs, dir_warnings = _unsafe_directory_blockers(facts, registries, certs)
    blockers += unsafe_dirs
    certs_dir_blocker, certs_dir_warning = _certs_dir_blocker(facts, certs, insecure=policy.insecure)
    blockers += certs_dir_blocker
    blockers += _not_directories(facts, registries if ca_files else ())
    warnings = (
        *loaded.warnings,
        *daemon.warnings,
        *action.warnings,
        *_half_client_pairs(facts, registries, insecure=policy.insecure),
        *_broken_entries(facts, registries, insecure=policy.insecure),
        *dir_warnings,
        *certs_dir_warning,
        *_repeated_merged_keys(facts),
    )
    elsewhere = api_elsewhere(facts, daemon.doc)
    blockers += [elsewhere] if elsewhere else []
    kept = _daemon_keeps_another(policy, facts)
    warnings += (kept,) if kept else ()
    warnings += (_ENGINE_SILENT,) if facts.engine_silent else ()
    if facts.snap_docker and facts.engine_running:
        warnings += (_SNAP_BESIDE,)
    elif facts.snap_docker:
        blockers.append(_SNAP_ONLY)

    return HostPlan(
        changes=tuple(changes),
        mkdirs=tuple(dict.fromkeys(mkdirs)),
        rmdirs=certs.rmdirs,
        engine_action=action.action,
        # A daemon.json link to nothing: no file says what dockerd runs, so its live config proves nothing.
        live_pending=action.live_pending or bool(facts.daemon_json_link and facts.daemon_json is None),
        reasons=(*certs.reasons, *daemon.reasons, *action.reasons),
        warnings=tuple(dict.fromkeys(warnings)),
        blockers=tuple(dict.fromkeys(blockers)),
    )


def _record_after(old: DockerState, new: DockerState) -> DockerState:
    """The record to keep: ``old`` where ``new`` claims the same entries and directories in another
    order (a person reordered daemon.json's list): order means nothing to dockerd, so it is no change."""
    same = set(new.insecure_registries) == set(old.insecure_registries) and set(new.cert_dirs) == set(
        old.cert_dirs
    )
    return old if same else new


def _daemon_keeps_another(policy: TrustPolicy, facts: DockerFacts) -> str | None:
    """Where trust-agent's daemon runs on the host keeping another policy: it puts that one back within
    an interval, so a change made now would not last (the daemon's own runs keep its policy: silent)."""
    try:
        status = json.loads(facts.daemon_status or b"")
        kept = status["policy"]["fingerprint"] if isinstance(status, dict) and status.get("policy") else None
        state = status.get("state") if isinstance(status, dict) else None
    except (ValueError, TypeError, KeyError):
        return None  # no status the daemon wrote: nothing to say
    if not isinstance(kept, str) or state == "stopped" or kept == policy.fingerprint():
        return None
    return (
        f"trust-agent's daemon runs on this host and keeps another policy ({kept}): it puts that one back "
        "within one interval; change the policy with `trust-agent daemon install`, or uninstall the daemon"
    )


def _half_client_pairs(
    facts: DockerFacts, registries: Sequence[str], *, insecure: bool = False
) -> tuple[str, ...]:
    """A ``.cert`` without its ``.key`` (or the reverse) in a registry's certs.d directory: dockerd then
    fails every pull from that registry (fact 6), whatever CA is installed. Not the agent's to fix.
    ``insecure``: the policy skips TLS verification, and dockerd reads no certs.d directory for an
    insecure registry (moby registry newTLSConfig): harmless until its TLS is verified again."""
    found = []
    for registry in registries:
        names = {path.split("/", 1)[1] for path in facts.certs if path.startswith(registry + "/")}
        for name in sorted(names):
            base, dot, suffix = name.rpartition(".")
            other = {"cert": "key", "key": "cert"}.get(suffix) if dot else None
            if other is not None and f"{base}.{other}" not in names:
                found.append(
                    f"certs.d/{registry}/{name} has no {base}.{other} beside it: "
                    f"{_half_pair_effect(registry, insecure)} (fact 6); add the other half or remove it"
                )
    return tuple(found)


# What a certs.d entry dockerd cannot read is (DockerFacts.cert_entries_broken), as a report says it.
_BROKEN_ENTRY = {
    "directory": "a directory",
    "dangling": "a symbolic link to nothing",
    "special": "not a regular file",
}


def _broken_entries(
    facts: DockerFacts, registries: Sequence[str], *, insecure: bool = False
) -> tuple[str, ...]:
    """An entry named ``*.crt``, ``*.cert`` or ``*.key`` in a registry's certs.d directory that is no file
    dockerd can read: it reads each such entry on every pull from that registry and fails on this one
    (``read ...: is a directory``, ``open ...: no such file or directory``), as it does on half a client
    pair. Not the agent's to remove. ``insecure``: as for :func:`_half_client_pairs`."""
    found = []
    for rel, what in sorted(facts.cert_entries_broken.items()):
        registry = rel.partition("/")[0]
        if registry in registries:
            found.append(
                f"certs.d/{rel} is {_BROKEN_ENTRY.get(what, 'not a regular file')}, which dockerd cannot "
                f"read: {_half_pair_effect(registry, insecure)}; remove it or put the file there"
            )
    return tuple(found)


def _not_directories(facts: DockerFacts, wanted: Sequence[str]) -> list[str]:
    """Blockers for the registries the plan puts CA files for whose certs.d path holds something other
    than a directory: no directory can be made there, and every apply would fail on it."""
    kinds = {"file": "a file", "link": "a symbolic link to a file"}
    return [
        f"{facts.certs_dir.rstrip('/')}/{registry} is {kinds.get(what, 'not a regular file')}, not a "
        f"directory: dockerd reads {registry}'s CA files from a directory of that name, and trust-agent "
        "cannot create it; move it away, then run again (nothing written)"
        for registry, what in sorted(facts.cert_dir_not_dirs.items())
        if registry in wanted
    ]


# docker.service runs, yet dockerd never answered (DockerFacts.engine_silent).
_ENGINE_SILENT = (
    "dockerd did not answer on /var/run/docker.sock (docker.service is active): it may be hung or "
    "stopped (SIGSTOP); its live config was not read, so what it runs now is not judged here; check "
    "`systemctl status docker` and run again once it answers"
)


def _half_pair_effect(registry: str, insecure: bool) -> str:
    """What half a client pair in ``registry``'s certs.d directory does to dockerd's pulls."""
    if insecure:
        return (
            f"dockerd ignores certs.d/{registry}/ while {registry} is insecure, so pulls work now, but "
            f"once its TLS is verified again dockerd fails every pull from {registry}"
        )
    return f"dockerd fails every pull from {registry}"


def api_elsewhere(facts: DockerFacts, doc: dict[str, Any]) -> str | None:
    """A blocker where dockerd serves its API only somewhere the agent does not read it (``-H
    unix:///run/other.sock``, tcp only): the live config could not be verified, and a change that took
    would be rolled back."""
    if facts.init is None:
        return None
    hosts = api_hosts(facts.dockerd_flags, doc)
    if not hosts or any(_default_socket(h) for h in hosts):
        return None
    return (
        f"dockerd serves its API at {', '.join(hosts)}, not at /var/run/docker.sock: trust-agent reads and "
        "verifies the engine only there; add -H fd:// (docker.socket) or unix:///var/run/docker.sock"
    )


def _default_socket(host: str) -> bool:
    """Whether ``host`` (a ``-H`` value) is the socket the agent reads: dockerd's default, or
    docker.socket's (``fd://``), which listens there (Debian: /run/docker.sock; /var/run links to /run)."""
    if host.startswith("fd://"):
        return True
    path = host.removeprefix("unix://")
    if path == host:
        return False
    return not path or posixpath.normpath(path) in ("/var/run/docker.sock", "/run/docker.sock")


# Docker from the snap store: its dockerd reads its own daemon.json and certs.d, which trust-agent does
# not manage. Where docker.service runs, the change is for its dockerd (a warning); else nothing is
# written (a blocker).
_SNAP_READS = "daemon.json and certs.d under /var/snap/docker/current/, not /etc/docker"
_SNAP_BESIDE = f"Docker from the snap is installed too: its dockerd reads {_SNAP_READS}, left alone here"
_SNAP_ONLY = (
    "Docker from the snap is installed and docker.service is not running: the snap's dockerd "
    f"(snap.docker.dockerd) reads {_SNAP_READS}, which trust-agent does not manage; nothing is written"
)


# --- validation: names become paths only after this --------------------------------------------------


def _valid_registries(names: Sequence[str]) -> tuple[tuple[str, ...], list[str]]:
    # The policy may come from a library user, not the CLI: a name must not escape certs.d.
    valid: list[str] = []
    blockers: list[str] = []
    for name in dict.fromkeys(names):
        try:
            valid.append(validate_registry(name, "policy"))
        except InvalidNameError as exc:
            blockers.append(str(exc))
    return tuple(valid), blockers


def _valid_ca_files(ca_files: Sequence[CAFile]) -> tuple[tuple[CAFile, ...], list[str]]:
    # Only trust-agent-*.crt: a CA root the agent owns; never a .cert/.key half (fact 6).
    valid: list[CAFile] = []
    blockers: list[str] = []
    for ca in ca_files:
        if _OWNED_FILE.match(ca.name) and ".." not in ca.name:
            valid.append(ca)
        else:
            blockers.append(
                f"policy: CA file name {ca.name!r}: must be a plain {OWNED_PREFIX}*.crt file name "
                "(the agent writes only CA roots it owns)"
            )
    return tuple({ca.name: ca for ca in valid}.values()), blockers


# --- certs.d ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CertsPlan:
    changes: tuple[FileChange, ...]
    mkdirs: tuple[str, ...]
    rmdirs: tuple[str, ...]
    state_dirs: tuple[str, ...]  # certs.d directories the agent created, after this plan
    reasons: tuple[str, ...]
    # The agent's CA files of a role no CA was given for (nor its --no-...-ca): kept, not deleted.
    held: tuple[str, ...] = ()


def _plan_certs(
    policy: TrustPolicy,
    facts: DockerFacts,
    registries: tuple[str, ...],
    ca_files: tuple[CAFile, ...],
    state: DockerState,
) -> _CertsPlan:
    root = facts.certs_dir.rstrip("/")
    wanted_dirs = registries if ca_files else ()
    existing_dirs = set(facts.cert_dirs) | {rel.partition("/")[0] for rel in facts.certs}
    aliases = _aliased_dirs(facts, existing_dirs)
    # A file wanted through a link is wanted in the directory it leads to, where it is written once.
    desired = {f"{aliases.get(r, r)}/{ca.name}": ca for r in wanted_dirs for ca in ca_files}

    changes: list[FileChange] = []
    reasons: list[str] = []
    for rel, ca in desired.items():
        before = facts.certs.get(rel)
        unsafe = unsafe_owner(facts.cert_owners.get(rel)) if before is not None else None
        same = before is not None and same_certificates(before, ca.bundle.pem)
        if same and unsafe is None:
            continue
        why = _ca_purpose(ca, policy)
        changes.append(
            FileChange(
                path=f"{root}/{rel}",
                action="create" if before is None else "update",
                before=before,
                after=ca.bundle.pem,
                mode=0o644,
            )
        )
        if before is None:
            reasons.append(f"certs.d/{rel}: {why}")
        elif not same:
            reasons.append(f"certs.d/{rel}: {why} (bundle changed: {bundle_change(before, ca.bundle.pem)})")
        if unsafe is not None:
            reasons.append(
                f"certs.d/{rel}: {unsafe}: another local user could replace this CA, which dockerd "
                f"trusts for {rel.partition('/')[0]}; rewritten root:root 0644"
            )

    deleted: set[str] = set()
    held: list[str] = []
    unasked = _unasked_ca_names(policy)
    for rel in sorted(facts.certs):
        directory, _, name = rel.partition("/")
        if directory in aliases:
            continue  # the same file as in the directory the link leads to, judged there
        if not directory or "/" in name or rel in desired or name not in _DELETABLE_NAMES:
            continue  # not a name the agent writes, or still wanted
        if name in unasked:
            held.append(f"{root}/{rel}")  # a forgotten --storage-ca/--registry-ca: see _cas_kept
            continue
        deleted.add(rel)
        changes.append(FileChange(path=f"{root}/{rel}", action="delete", before=facts.certs[rel], after=None))
        reasons.append(f"certs.d/{rel}: remove ({_no_longer_asked(directory, registries)})")

    created = [f"{root}/{r}" for r in wanted_dirs if r not in existing_dirs]

    rmdirs: list[str] = []
    kept: list[str] = []
    for path in state.cert_dirs:
        child = _child_of(root, path)
        if child is None:
            kept.append(path)  # recorded under another certs.d: not this plan's to judge
            continue
        if child not in existing_dirs:
            continue  # gone already; if wanted again it is in `created`
        remaining = [rel for rel in facts.certs if rel.partition("/")[0] == child and rel not in deleted]
        if child in wanted_dirs:
            kept.append(path)
        elif child in facts.cert_dir_links:
            # A person put a link where the agent's directory was: theirs now, and the record forgets it.
            reasons.append(_persons_link_left(child, facts.cert_dir_links[child], aliases))
        elif remaining:
            kept.append(path)
        elif links := sorted(name for name, target in aliases.items() if target == child):
            # Removed, it would leave the person's link leading to nothing (blocked by the next plan).
            reasons.append(_kept_for_links(child, links))
        else:
            rmdirs.append(path)
            reasons.append(f"certs.d/{child}/: remove the directory trust-agent created, now empty")

    return _CertsPlan(
        changes=tuple(changes),
        mkdirs=tuple(created),
        rmdirs=tuple(rmdirs),
        state_dirs=tuple(dict.fromkeys([*kept, *created])),
        reasons=tuple(reasons),
        held=tuple(held),
    )


def _aliased_dirs(facts: DockerFacts, existing_dirs: set[str]) -> dict[str, str]:
    """The certs.d directories that are links to another certs.d directory the plan reads (two spellings
    of one registry, ``registry.test:443 -> registry.test``), each with the name of the one it leads to.
    Their files are that directory's, listed under both names: planned once, under the target's."""
    root = facts.certs_dir.rstrip("/")
    aliases = {}
    for name, target in facts.cert_dir_links.items():
        other = _child_of(root, target)
        if other is not None and other != name and other in existing_dirs:
            aliases[name] = other
    return aliases


def _kept_for_links(name: str, links: Sequence[str]) -> str:
    """What the plan says of an emptied directory the agent made that a person's links lead to: it stays,
    and the record no longer claims it."""
    named = ", ".join(f"certs.d/{link}" for link in links)
    return (
        f"certs.d/{name}/: kept, though empty: removing it would leave {named} "
        f"({'links' if len(links) > 1 else 'a link'} to it) leading to nothing; it is yours now "
        "(trust-agent no longer counts it as its own)"
    )


def _persons_link_left(name: str, target: str, aliases: Mapping[str, str]) -> str:
    """What the plan says of a certs.d directory the agent made that is now a person's link."""
    return f"certs.d/{name} (a link to {aliases.get(name, target)}) is left: it is yours"


# A PEM certificate block, found one by one: a hand-edited file may hold text or a bad block between them.
_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.DOTALL)


def bundle_change(before: bytes, after: bytes) -> str:
    """The certificates a CA file gains and loses, each as its subject's CN and a short SHA-256
    fingerprint: a planned rotation and a file a person overwrote read differently.

    >>> bundle_change(b"no PEM here", b"")
    'no certificate added or removed (only the text around them differs)'
    """
    old, new = _certificates(before), _certificates(after)
    said = [
        f"{verb} {', '.join(names[fp] for fp in names if fp not in other)}"
        for verb, names, other in (("adds", new, old), ("removes", old, new))
        if set(names) - set(other)
    ]
    return "; ".join(said) or "no certificate added or removed (only the text around them differs)"


def same_certificates(before: bytes, after: bytes) -> bool:
    """Whether a CA file holding ``before`` already is ``after``: the same certificate blocks, each once,
    in any order, with nothing but whitespace around or inside them. dockerd adds every certificate of
    a ``.crt`` to one pool, so their order means nothing to it; rewriting a file only to reorder it would
    make two runs given the same CAs in another order rewrite it back and forth. Any other text (a
    comment, a repeated block, a bad block) is still rewritten: it is not what the agent writes.

    >>> a, b = (b"-----BEGIN CERTIFICATE-----  " + c + b"  -----END CERTIFICATE-----  " for c in (b"QQ", b"Qg"))
    >>> same_certificates(b + a, a + b), same_certificates(a + a, a), same_certificates(b"# mine " + a, a)
    (True, False, False)
    """
    if before == after:
        return True
    old, new = _certificate_blocks(before), _certificate_blocks(after)
    return old is not None and new is not None and len(set(old)) == len(old) and sorted(old) == sorted(new)


def _certificate_blocks(pem: bytes) -> list[bytes] | None:
    """``pem``'s certificate blocks with their whitespace taken out; None where anything but whitespace
    lies between them."""
    blocks = list(_PEM_CERTIFICATE.finditer(pem))
    between = _PEM_CERTIFICATE.sub(b"", pem)
    if between.strip():
        return None
    return [b"".join(block.group(0).split()) for block in blocks]


def _certificates(pem: bytes) -> dict[str, str]:
    """The certificates that parse in ``pem``, by SHA-256 fingerprint, each named for a report."""
    found: dict[str, str] = {}
    for block in _PEM_CERTIFICATE.finditer(pem):
        try:
            cert = x509.load_pem_x509_certificate(block.group(0))
        except ValueError:
            digest = hashlib.sha256(block.group(0)).hexdigest()
            found[digest] = "a PEM block that is not a valid certificate"
            continue
        info = certificate_info(cert)
        found[info.sha256] = f"{_common_name(cert) or info.subject} (sha256 {info.sha256[:23]})"
    return found


def _common_name(cert: x509.Certificate) -> str | None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else None
    return f"CN={value!s}" if value else None


def _unasked_ca_names(policy: TrustPolicy) -> frozenset[str]:
    """The names of the agent's CA files of a role the policy neither gives a CA for nor says has
    none (``--no-storage-ca``, ``--no-registry-ca``): never deleted, as their CA may still be needed."""
    missing: dict[CARole, bool] = {
        "storage": policy.storage_ca_missing,
        "registry": policy.registry_ca_missing,
    }
    return frozenset(CA_FILE_NAMES[role] for role, unasked in missing.items() if unasked)


def _no_longer_asked(registry: str, registries: Sequence[str]) -> str:
    """Why the agent's file or entry for ``registry`` goes: another registry taking over (a run for
    another --registry or source: a typo looks the same, so the plan says which), or none asked.

    >>> _no_longer_asked("registry.test", ["registry.tset"])
    'this run is for registry.tset, not registry.test'
    >>> _no_longer_asked("registry.test", ["registry.test"])
    "trust-agent's, no longer asked for"
    """
    if not registries or registry in registries:
        return "trust-agent's, no longer asked for"
    return f"this run is for {', '.join(registries)}, not {registry}"


def unsafe_owner(owner: tuple[int, int] | None) -> str | None:
    """What makes a file or directory of the agent's writable by a user other than root (``owner``:
    its uid and permission bits), as a report says it; None where only root can write it, or unknown.

    >>> unsafe_owner((65534, 0o666))
    'owned by uid 65534, not root, and mode 0666 (group- and other-writable)'
    >>> unsafe_owner((0, 0o644)) is None
    True
    """
    if owner is None:
        return None
    uid, mode = owner
    found = [f"owned by uid {uid}, not root"] if uid != 0 else []
    writable = [who for who, bit in (("group", 0o020), ("other", 0o002)) if mode & bit]
    if writable:
        found.append(f"mode {mode & 0o7777:04o} ({'- and '.join(writable)}-writable)")
    return ", and ".join(found) or None


def _unsafe_directories(facts: DockerFacts, registries: Sequence[str]) -> dict[str, str]:
    """The policy's certs.d directories holding the agent's CA files that a user other than root can
    write in (they could replace those CAs), by registry, with what makes them so."""
    found = {}
    for registry in registries:
        unsafe = unsafe_owner(facts.cert_owners.get(registry))
        if unsafe is not None:
            found[registry] = (
                f"certs.d/{registry}/ is {unsafe}: another local user could replace the CA files dockerd "
                f"trusts for {registry}; make it root's alone (chown root:root, chmod 0755)"
            )
    return found


def _unsafe_directory_blockers(
    facts: DockerFacts, registries: Sequence[str], certs: _CertsPlan
) -> tuple[list[str], tuple[str, ...]]:
    """Blockers for the unsafe directories (:func:`_unsafe_directories`) the plan writes in (the apply
    would refuse them), and warnings for the others: their mode is a person's to change."""
    root = facts.certs_dir.rstrip("/")
    written = {_child_of(root, posixpath.dirname(c.path)) for c in certs.changes}
    blockers, warnings = [], []
    for registry, note in _unsafe_directories(facts, registries).items():
        if registry in written:
            blockers.append(f"{note}, then run again (nothing written)")
        else:
            warnings.append(note)
    return blockers, tuple(warnings)


def _certs_dir_blocker(
    facts: DockerFacts, certs: _CertsPlan, *, insecure: bool
) -> tuple[list[str], list[str]]:
    """certs.d itself as the apply would refuse it (``facts.certs_dir_problem``): a blocker where the
    plan writes or makes anything there, else a warning where the policy's CA files are read from it
    (an insecure registry's are not: dockerd reads no certs.d for it)."""
    problem = facts.certs_dir_problem
    if problem is None:
        return [], []
    if certs.changes or certs.mkdirs or certs.rmdirs:
        return [f"{problem}, then run again (nothing written)"], []
    return [], [] if insecure else [problem]


def _insecure_listed(doc: Mapping[str, Any]) -> set[str]:
    """daemon.json's ``insecure-registries`` entries, named as dockerd names them."""
    entries = doc.get(INSECURE_KEY)
    return {index_name(e) for e in entries if isinstance(e, str)} if isinstance(entries, list) else set()


def does_not_comply(
    policy: TrustPolicy, facts: DockerFacts, live: Mapping[str, bool] | None = None
) -> tuple[str, ...]:
    """Why the host does not hold the policy where no change of the agent's would fix it (a person's to
    fix): where the policy verifies TLS, one of its registries insecure in daemon.json, on dockerd's
    command line or in the running dockerd (``live``), or half a client pair in its certs.d directory
    (every pull fails, fact 6); a certs.d directory holding its CA files that another user can write
    in. ``verify`` fails such a host; a rollout warns of it."""
    registries, _ = _valid_registries(policy.registries)
    found = list(_unsafe_directories(facts, registries).values())
    if facts.certs_dir_problem is not None and not policy.insecure:
        found.append(facts.certs_dir_problem)
    if policy.insecure:
        # dockerd reads no certs.d directory for an insecure registry (moby registry newTLSConfig).
        return tuple(found)
    found += _half_client_pairs(facts, registries)
    found += _broken_entries(facts, registries)
    keep = reads_invalid_utf8(facts)
    try:
        doc = (
            parse_daemon_json(
                facts.daemon_json, facts.daemon_json_path, keep_invalid_utf8=keep, ignore_trailing=keep
            )
            if facts.daemon_json
            else {}
        )
    except DaemonJsonError:
        doc = {}  # said elsewhere: the live config is the one that counts then
    listed = _insecure_listed(doc)
    flagged = {index_name(f) for f in flag_values(facts.dockerd_flags, "insecure-registry")}
    running = _live_that_counts(facts, live) or {}
    for registry in registries:
        if registry in listed:
            where = "daemon.json lists it in insecure-registries"
        elif registry in flagged:
            where = f"dockerd's command line has --insecure-registry {registry}"
        elif running.get(registry):
            where = "the running dockerd has it insecure"
        else:
            continue
        loaded = running.get(registry) is not False  # unknown: said as what the files make it
        effect = (
            "dockerd does not verify it"
            if loaded
            else "dockerd stops verifying it at its next reload or restart"
        )
        found.append(f"{registry}: {where}, though the policy verifies its TLS: {effect}")
    return tuple(found)


def _loads_a_persons_entry(
    policy: TrustPolicy,
    facts: DockerFacts,
    daemon: _DaemonPlan,
    action: EngineAction,
    live: Mapping[str, bool] | None,
) -> list[str]:
    """Where the policy verifies TLS, a reload or restart must not load an insecure-registries entry a
    person wrote for one of its registries and dockerd does not run yet: it would turn that registry's
    TLS verification off, in the agent's name."""
    running = _live_that_counts(facts, live)
    if policy.insecure or action == "none" or running is None or daemon.unreadable:
        return []
    listed = _insecure_listed(daemon.doc) - {index_name(e) for e in daemon.owned}
    return [
        f"daemon.json lists {registry} in insecure-registries (not trust-agent's entry) though the policy "
        "verifies its TLS: remove it by hand, then run again (a reload would load it and stop dockerd "
        "verifying that registry; nothing written)"
        for registry in policy.registries
        if registry in listed and not running.get(registry, False)
    ]


def _bom_problem(raw: bytes | None, facts: DockerFacts) -> tuple[str, ...]:
    """A UTF-8 byte order mark at daemon.json's start: Docker 20.10 cannot read the file (dockerd
    26 can, and an engine with --validate checks it before a write), so say so where it matters."""
    if raw is None or not raw.startswith(b"\xef\xbb\xbf") or facts.has_validate:
        return ()
    engine = f"dockerd {facts.engine_version}" if facts.engine_version else "an older dockerd (before 23.0)"
    return (
        f"{facts.daemon_json_path} starts with a UTF-8 byte order mark, which {engine} cannot read "
        "(it would not start or reload): remove those three bytes",
    )


def _cas_kept(policy: TrustPolicy, certs: _CertsPlan) -> list[str]:
    """A host's CA files are removed only on purpose: where no CA of that role was given (nor its
    --no-...-ca), a forgotten --storage-ca or --registry-ca must not break every pull. Such files are
    kept (not in the plan's changes), and the host is blocked until the CA or its --no-...-ca is given."""

    def losing(role: CARole) -> str | None:
        name = "/" + CA_FILE_NAMES[role]
        return next((path for path in certs.held if path.endswith(name)), None)

    blockers = []
    storage = losing("storage") if policy.storage_ca_missing else None
    if storage is not None:
        blockers.append(
            f"this host holds trust-agent's storage CA ({storage}) for the redirect to "
            f"{policy.storage_endpoint or policy.storage_summary()}, and no storage CA is given: it is kept, "
            "as removing it would fail every pull if that certificate is from a private CA. Give the CA with "
            "--storage-ca FILE, or --no-storage-ca if the storage's certificate is publicly trusted now"
        )
    registry = losing("registry") if policy.registry_ca_missing else None
    if registry is not None:
        blockers.append(
            f"this host holds trust-agent's registry CA ({registry}), and no registry CA is given: it is "
            "kept, as removing it would fail every pull if the registry's certificate is from a private CA. Give "
            "the CA with --registry-ca FILE, or --no-registry-ca if the registry's certificate is "
            "publicly trusted now"
        )
    return blockers


def _ca_purpose(ca: CAFile, policy: TrustPolicy) -> str:
    if ca.role == "storage":
        return (
            f"storage CA for the redirect to {policy.storage_endpoint or policy.storage_summary()} (fact 4)"
        )
    return "the registry's own CA (fact 4)"


def _child_of(root: str, path: str) -> str | None:
    parent, name = posixpath.split(path.rstrip("/"))
    return name if parent == root and name else None


# --- daemon.json --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DaemonPlan:
    change: FileChange | None
    doc: dict[str, Any]  # daemon.json after the plan (as it is, when unchanged or unreadable)
    owned: tuple[str, ...]  # insecure-registries entries the agent owns after the plan
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    blockers: tuple[str, ...] = ()
    unreadable: bool = False  # the file could not be read: ``doc`` does not say what it holds
    empty_list_mine: bool = False  # after the plan, the file's "insecure-registries": [] is the agent's


def _plan_daemon_json(
    policy: TrustPolicy,
    facts: DockerFacts,
    registries: tuple[str, ...],
    state: DockerState,
    live: Mapping[str, bool] | None,
    empty_list_recorded: bool = False,
) -> _DaemonPlan:
    path = facts.daemon_json_path
    raw = facts.daemon_json
    label = _daemon_json_label(facts)
    # A registry a --insecure-registry flag names is insecure already: held, like a person's entry.
    flagged = {index_name(f) for f in flag_values(facts.dockerd_flags, "insecure-registry")}
    want = tuple(r for r in registries if r not in flagged) if policy.insecure else ()
    not_utf8 = invalid_utf8_at(raw) if raw is not None else None
    keep_bytes = not_utf8 is not None and reads_invalid_utf8(facts)
    first_only = reads_invalid_utf8(facts)  # 20.10's decoder reads the first value alone
    try:
        doc = (
            parse_daemon_json(raw, path, keep_invalid_utf8=keep_bytes, ignore_trailing=first_only)
            if raw is not None
            else {}
        )
    except DaemonJsonError as exc:
        refused = not_utf8 is not None and not keep_bytes
        problem = _invalid_utf8_refused(path, not_utf8 or 0, facts) if refused else str(exc)
        return _unreadable_daemon_json(problem, want, state, empty_list_recorded)

    bom = _bom_problem(raw, facts)
    read_anyway: tuple[str, ...] = (_invalid_utf8_read(path, not_utf8 or 0, facts),) if keep_bytes else ()
    read_anyway += _trailing_data_ignored(path, raw, facts) if first_only else ()
    if facts.daemon_json_link and raw is None:
        # A link to nothing: dockerd reads no file there, and replacing the link would undo what made it.
        note = f"{path} is a symlink to {facts.daemon_json_link}, which is not a file: left alone"
        blocked, warned = ((note,), ()) if want else ((), (note,))
        return _DaemonPlan(
            None,
            doc,
            state.insecure_registries,
            warnings=warned,
            blockers=blocked,
            empty_list_mine=empty_list_recorded,
        )
    merge = _clear_stale_list(merge_insecure(doc, want, state.insecure_registries), facts, live)
    merge = _drop_own_empty_list(merge, facts, empty_list_recorded)
    merge, released, kept_empty = _purge_own_empty_list(merge, policy, facts, empty_list_recorded)
    mine = _empty_list_mine(merge, empty_list_recorded)
    entries = merge.doc.get(INSECURE_KEY)
    listed = {index_name(e) for e in entries} if isinstance(entries, list) else set()
    warnings = (
        read_anyway
        + tuple(f"{label}: {kept}" for kept in kept_empty)
        + tuple(
            f"{label}: {r} stays in insecure-registries (not added by trust-agent): "
            "its TLS certificates are not verified"
            for r in registries
            if not policy.insecure and r in listed
        )
    )
    if not merge.changed:
        # Nothing to write, but a flag set since dockerd started (or an emptied list of the agent's
        # left as []) would keep dockerd from starting again: say so on every run, not only a change.
        conflicts = tuple(f"{label} as it is: {c}" for c in _conflicts_as_it_is(merge.doc, facts, label))
        return _DaemonPlan(
            None,
            merge.doc,
            merge.owned,
            reasons=_own_empty_list_gone(label, recorded=empty_list_recorded, mine=mine),
            warnings=warnings + conflicts + bom,
            empty_list_mine=mine,
        )

    reasons = [f"{label}: add {r} to insecure-registries (skip-TLS, fact 9)" for r in merge.added]
    reasons += [
        f"{label}: remove {r} from insecure-registries (added by trust-agent; "
        f"{_no_longer_asked(r, registries)})"
        for r in merge.removed
    ]
    if merge.cleared:
        stale = ", ".join(r for r, insecure in (live or {}).items() if insecure)
        reasons.append(
            f"{label}: insecure-registries written as [] (dockerd still lists {stale} as insecure, "
            "and a reload keeps the list where the key is missing, fact 11)"
        )
    if merge.emptied:
        reasons.append(
            f"{label}: insecure-registries kept as [] (removing the key would not clear the list "
            "on reload, fact 11)"
        )
    if released:
        reasons.append(
            f"{label}: remove the empty insecure-registries trust-agent wrote (purge): dockerd lists nothing "
            "as insecure, and keeps that list where the key is missing (fact 11)"
        )
    elif merge.dropped:
        where = facts.flags_source or "dockerd's command line"
        reasons.append(
            f"{label}: remove the empty insecure-registries trust-agent wrote (fact 11): {where} sets "
            "--insecure-registry now, and dockerd refuses the directive in both places (fact 13); "
            "the flags give the list"
        )

    link = _link_plan(facts)
    if link.blocker:
        return _DaemonPlan(None, doc, state.insecure_registries, blockers=(link.blocker,))
    reasons += link.reasons
    path = facts.daemon_json_file
    blockers = [f"{path}: {problem}" for problem in _daemon_json_problems(merge.doc, facts)]
    blockers += _flag_blockers(merge.doc, facts)
    if facts.has_validate is False:
        blockers += bom  # an engine that cannot read it: writing would leave dockerd one start from failing
    else:
        warnings += bom
    change = FileChange(
        path=path,
        action="create" if raw is None else "update",
        before=raw,
        after=(raw is not None and splice_insecure(raw, merge.doc))
        or serialise(merge.doc, detect_indent(raw)),
        mode=0o644,
    )
    return _DaemonPlan(
        change, merge.doc, merge.owned, tuple(reasons), warnings, tuple(blockers), empty_list_mine=mine
    )


def _daemon_json_label(facts: DockerFacts) -> str:
    """How the reasons name the file dockerd reads its options from: ``daemon.json`` where it is
    dockerd's default, else its path (``--config-file``)."""
    default = posixpath.normpath(facts.daemon_json_path) == DAEMON_JSON
    return "daemon.json" if default else facts.daemon_json_path


def _empty_list_mine(merge: InsecureMerge, recorded: bool) -> bool:
    """Whether daemon.json's insecure-registries, after ``merge``, is an empty list the agent wrote:
    written now (its own entries removed, the key kept as ``[]``), or recorded and still ``[]``."""
    if merge.doc.get(INSECURE_KEY) != []:
        return False
    return merge.emptied or recorded


def _own_empty_list_gone(label: str, *, recorded: bool, mine: bool) -> tuple[str, ...]:
    """Why the record drops its note where the ``[]`` it claims was removed or filled by hand: a note
    kept would make the agent take a person's later ``[]`` for its own, and remove it (fact 13)."""
    if not recorded or mine:
        return ()
    return (
        f"{label}: the empty insecure-registries trust-agent wrote is gone (changed by hand): its record "
        "forgets it, so an empty list written there later is taken as a person's",
    )


def _drop_own_empty_list(merge: InsecureMerge, facts: DockerFacts, recorded: bool) -> InsecureMerge:
    """``merge`` without the key where the ``[]`` there is the agent's (``recorded``) and a
    ``--insecure-registry`` flag now gives the directive: dockerd would refuse both at its next start
    or reload (fact 13), and with the flag the list is the flags' anyway."""
    if not recorded or merge.doc.get(INSECURE_KEY) != [] or merge.changed:
        return merge
    if not flag_values(facts.dockerd_flags, "insecure-registry"):
        return merge
    doc = {key: value for key, value in merge.doc.items() if key != INSECURE_KEY}
    return replace(merge, doc=doc, dropped=True)


# How a purge says it leaves the agent's own "insecure-registries": [] in daemon.json.
OWN_EMPTY_LIST_KEPT = "the empty insecure-registries trust-agent wrote is kept"
# The entries dockerd lists as insecure with an empty list: loopback, always (fact 14).
_LOOPBACK_CIDRS = frozenset({"127.0.0.0/8", "::1/128"})


def _purge_own_empty_list(
    merge: InsecureMerge, policy: TrustPolicy, facts: DockerFacts, recorded: bool
) -> tuple[InsecureMerge, bool, tuple[str, ...]]:
    """For a purge (``policy.purge``): ``merge`` without the agent's own ``[]`` (``recorded``), so the
    file is as the person had it, with whether it went and, where it stays, why. A reload keeps dockerd's
    live list where the key is missing (fact 11): the ``[]`` goes only where that list is empty already
    (reproduced on 20.10: ``[]`` loaded, key removed, reloaded: nothing insecure), or where no dockerd
    runs (its next start reads no list). Kept, it is a person's from now on: the purge drops the record."""
    if policy.purge and merge.emptied:
        why = "the reload this purge does needs it to clear the entries it removes (fact 11)"
        return merge, False, (_own_empty_list_kept(why),)
    if not policy.purge or not recorded or merge.doc.get(INSECURE_KEY) != [] or merge.changed:
        return merge, False, ()
    live = policy.purge_live_insecure
    running = facts.init is not None and facts.engine_running
    if facts.engine_elsewhere or (running and live is None):
        why = "dockerd's live insecure list was not read, and removing the key would keep whatever it holds"
    elif running and live:
        why = (
            f"dockerd still lists {', '.join(live)} as insecure, and a reload keeps that list where the key "
            "is missing (fact 11)"
        )
    else:
        doc = {key: value for key, value in merge.doc.items() if key != INSECURE_KEY}
        return replace(merge, doc=doc, dropped=True), True, ()
    return merge, False, (_own_empty_list_kept(why),)


def _own_empty_list_kept(why: str) -> str:
    return (
        f'{OWN_EMPTY_LIST_KEPT} ({why}); it is yours from now on: remove "{INSECURE_KEY}": [] once '
        "`systemctl reload docker` has loaded it"
    )


def insecure_entries_live(info: Mapping[str, Any]) -> tuple[str, ...]:
    """What the engine whose ``/info`` is ``info`` lists as insecure beyond loopback: registries
    (``IndexConfigs[r].Secure`` false) and address ranges (``InsecureRegistryCIDRs``).

    >>> insecure_entries_live({"RegistryConfig": {"InsecureRegistryCIDRs": ["127.0.0.0/8", "10.0.0.0/8"],
    ...     "IndexConfigs": {"docker.io": {"Secure": True}, "r.test": {"Secure": False}}}})
    ('r.test', '10.0.0.0/8')
    """
    config = info.get("RegistryConfig")
    config = config if isinstance(config, Mapping) else {}
    index = config.get("IndexConfigs")
    cidrs = config.get("InsecureRegistryCIDRs")
    names = [
        str(name)
        for name, entry in (index.items() if isinstance(index, Mapping) else ())
        if isinstance(entry, Mapping) and entry.get("Secure") is False
    ]
    ranges = [str(c) for c in (cidrs if isinstance(cidrs, list) else ()) if c not in _LOOPBACK_CIDRS]
    return (*sorted(names), *ranges)


# Docker 23.0 refuses a daemon.json that is not UTF-8 ("failed to decode configuration JSON ...:
# encoding: invalid UTF-8"; moby#44790, in 23.0 by #44832); before, Go's encoding/json read each such
# byte inside a string as U+FFFD.
_REFUSES_INVALID_UTF8 = (23, 0, 0)


def reads_invalid_utf8(facts: DockerFacts) -> bool:
    """Whether the host's dockerd reads a daemon.json holding bytes that are not UTF-8 (before 23.0);
    an engine of unknown version is taken as one that refuses it."""
    version = parse_engine_version(facts.engine_version)
    if version is not None:
        return version < _REFUSES_INVALID_UTF8
    return facts.has_validate is False  # no `dockerd --validate`: older than 23.0 (fact 12)


def _engine_named(facts: DockerFacts) -> str:
    return f"dockerd {facts.engine_version}" if facts.engine_version else "a dockerd of unknown version"


def _invalid_utf8_refused(path: str, at: int, facts: DockerFacts) -> str:
    return (
        f'{path}: not UTF-8 (byte {at}), which {_engine_named(facts)} refuses ("invalid UTF-8": Docker '
        "23.0 and later do; 20.10 reads it): save it as UTF-8"
    )


def _invalid_utf8_read(path: str, at: int, facts: DockerFacts) -> str:
    return (
        f"{path} is not UTF-8 (byte {at}): {_engine_named(facts)} reads it (each such byte as U+FFFD), but "
        'Docker 23.0 and later refuse it ("invalid UTF-8") and would not start: save it as UTF-8 before '
        "an upgrade; trust-agent keeps those bytes as they are"
    )


def _trailing_data_ignored(path: str, raw: bytes | None, facts: DockerFacts) -> tuple[str, ...]:
    """Data after daemon.json's JSON document, for a host whose dockerd reads the file anyway (before
    23.0, Go's json.Decoder reads the first value and stops): kept as it is, and said on every run."""
    trailing = trailing_data(raw) if raw is not None else None
    if trailing is None:
        return ()
    return (
        f"{path} has {trailing.excerpt()} after the end of its JSON document (line {trailing.line}, "
        f"column {trailing.column}): {_engine_named(facts)} ignores it and reads the document alone, but "
        f'Docker 23.0 and later refuse the file ("{trailing.dockerd_says()}") and would not start: '
        "remove it before an upgrade; trust-agent leaves it as it is",
    )


# The keys the planner merges into: one given twice is read as dockerd reads it, and said.
_MERGED_KEYS = (INSECURE_KEY,)


def _repeated_merged_keys(facts: DockerFacts) -> tuple[str, ...]:
    """A warning for each key the planner merges that daemon.json gives more than once: dockerd reads
    the last value alone (Go's encoding/json keeps a repeated key's last value, moby's
    getConflictFreeConfiguration), and so do the merge and the rewrite; the others only mislead."""
    if facts.daemon_json is None:
        return ()
    return tuple(
        f"{facts.daemon_json_file} gives {key} {len(values)} times: dockerd reads only the last "
        f"({json.dumps(values[-1])}) and ignores the others ({', '.join(json.dumps(v) for v in values[:-1])}); "
        "trust-agent reads and changes that last one too, and leaves the others as they are: remove them"
        for key, values in repeated_keys(facts.daemon_json).items()
        if key in _MERGED_KEYS
    )


def _unreadable_daemon_json(
    problem: str, want: tuple[str, ...], state: DockerState, empty_list_recorded: bool = False
) -> _DaemonPlan:
    """A daemon.json the agent cannot read is never written. It blocks the host only where the file
    must change: the policy adds insecure registries, or the agent's own entries are recorded there.
    Elsewhere certs.d is installed (read on every pull, no reload, fact 7) and the file reported."""
    if want or state.insecure_registries:
        return _DaemonPlan(
            None,
            {},
            state.insecure_registries,
            blockers=(problem,),
            unreadable=True,
            empty_list_mine=empty_list_recorded,
        )
    warning = (
        f"{problem}: dockerd will not start or reload with it as it is; trust-agent needs no change "
        "there and leaves it alone: fix it before dockerd's next restart"
    )
    return _DaemonPlan(
        None, {}, (), warnings=(warning,), unreadable=True, empty_list_mine=empty_list_recorded
    )


def _clear_stale_list(
    merge: InsecureMerge, facts: DockerFacts, live: Mapping[str, bool] | None
) -> InsecureMerge:
    """``merge`` with ``"insecure-registries": []`` written where daemon.json has no such key but the
    running dockerd still lists one of the policy's registries as insecure (the key removed by hand or
    by another tool, then reloaded): a reload keeps the live list where the key is missing, so without
    ``[]`` no reload ever clears it (fact 11). Not where a ``--insecure-registry`` flag sets the list:
    the key beside it would keep dockerd from starting (fact 13)."""
    live = _live_that_counts(facts, live)
    if INSECURE_KEY in merge.doc or not live or flag_values(facts.dockerd_flags, "insecure-registry"):
        return merge
    wanted = insecure_in_force(merge.doc, facts.dockerd_flags)
    if not any(insecure and r not in wanted for r, insecure in live.items()):
        return merge
    return replace(merge, doc={**merge.doc, INSECURE_KEY: []}, cleared=True)


def daemon_json_after(plan: HostPlan, facts: DockerFacts) -> bytes | None:
    """daemon.json as the host holds it once ``plan`` is applied (its target, where it is a symlink)."""
    for change in reversed(plan.changes):
        if change.path == facts.daemon_json_file:
            return change.after
    return facts.daemon_json


def facts_after(plan: HostPlan, facts: DockerFacts) -> DockerFacts:
    """``facts`` as the host holds them once ``plan`` is applied: its files written or deleted, its
    certs.d directories made or removed; the engine's facts as they were."""
    root = facts.certs_dir.rstrip("/")
    certs = dict(facts.certs)
    owners = dict(facts.cert_owners)
    files = {facts.daemon_json_file: facts.daemon_json, facts.state_path: facts.state}
    aliases = _aliased_dirs(facts, set(facts.cert_dirs) | {rel.partition("/")[0] for rel in facts.certs})
    for change in plan.changes:
        if change.path in files:
            files[change.path] = change.after
        elif change.path.startswith(root + "/"):
            for rel in _spellings(change.path[len(root) + 1 :], aliases):
                owners.pop(rel, None)  # the apply writes a new file: root's, with the change's mode
                if change.after is None:
                    certs.pop(rel, None)
                else:
                    certs[rel] = change.after
    made = {child for child in (_child_of(root, d) for d in plan.mkdirs) if child}
    removed = {child for child in (_child_of(root, d) for d in plan.rmdirs) if child}
    # A link to a directory removed leads to nothing: the gather lists it no more.
    removed |= {name for name, target in aliases.items() if target in removed}
    return replace(
        facts,
        certs=certs,
        cert_owners=owners,
        cert_dirs=frozenset((facts.cert_dirs | made) - removed),
        certs_dir_present=root not in plan.rmdirs
        and (facts.certs_dir_present or root in plan.mkdirs or bool(made)),
        daemon_json=files[facts.daemon_json_file],
        state=files[facts.state_path],
    )


def _spellings(rel: str, aliases: Mapping[str, str]) -> list[str]:
    """``rel`` (``"<registry>/<file>"``) and the same file as listed through each link to its directory."""
    directory, _, name = rel.partition("/")
    return [rel, *(f"{alias}/{name}" for alias, target in aliases.items() if target == directory)]


def followed_by(first: HostPlan, then: HostPlan) -> HostPlan:
    """One plan for ``first`` applied, then ``then`` (planned on :func:`facts_after` ``first``): what a
    report shows, and what a roll-back undoes (its changes in order, so undoing puts the host back as
    it was before ``first``). A directory one of them makes and the other removes is in neither."""
    made = (*_besides(first.mkdirs, then.rmdirs), *_besides(then.mkdirs, first.rmdirs))
    removed = (*_besides(first.rmdirs, then.mkdirs), *_besides(then.rmdirs, first.mkdirs))
    return HostPlan(
        changes=(*first.changes, *then.changes),
        mkdirs=tuple(dict.fromkeys(made)),
        rmdirs=tuple(dict.fromkeys(removed)),
        engine_action=stronger(first.engine_action, then.engine_action),
        live_pending=then.live_pending,
        reasons=tuple(dict.fromkeys((*first.reasons, *then.reasons))),
        warnings=tuple(dict.fromkeys((*first.warnings, *then.warnings))),
        blockers=tuple(dict.fromkeys((*first.blockers, *then.blockers))),
    )


def _besides(directories: tuple[str, ...], undone: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(d for d in directories if d not in undone)


def _with_record(
    changes: list[FileChange],
    facts: DockerFacts,
    old: DockerState,
    new: DockerState,
    empty_list_mine: bool = False,
) -> list[FileChange]:
    """``changes`` with the agent's record written where a host stopped part way (a failed rename, a
    crash) never holds an insecure-registries entry of the agent's that the record does not claim: such
    an entry would skip TLS checks for good, as no later run would remove it. Files are renamed in the
    plan's order: a record that only adds claims goes first, one that only drops claims last, and one
    that does both is written twice, first claiming both sets, last as it ends. A claim on an entry not
    (yet, or any more) there is harmless: the next run settles it. Certs.d directories the record claims
    do not decide the order: one left unclaimed is an empty directory (the agent's files in it are known
    by their names). The note that daemon.json's empty list is the agent's goes with the last record."""

    def record(before: bytes | None, state: DockerState, last: bool = True) -> FileChange:
        return FileChange(
            facts.state_path,
            "create" if before is None else "update",
            before,
            render_state(state, empty_list_mine=empty_list_mine and last),
            mode=0o644,
            internal=True,
        )

    old_claims, new_claims = set(old.insecure_registries), set(new.insecure_registries)
    if new_claims >= old_claims:
        return [record(facts.state, new), *changes]
    if new_claims <= old_claims:
        return [*changes, record(facts.state, new)]
    both = DockerState(
        insecure_registries=tuple(dict.fromkeys((*old.insecure_registries, *new.insecure_registries))),
        cert_dirs=tuple(dict.fromkeys((*old.cert_dirs, *new.cert_dirs))),
    )
    first = record(facts.state, both, last=False)
    return [first, *changes, record(first.after, new)]


@dataclass(frozen=True)
class _LinkPlan:
    reasons: tuple[str, ...] = ()
    blocker: str | None = None


def _link_plan(facts: DockerFacts) -> _LinkPlan:
    """A symlinked daemon.json is written at its target, the link kept; where the target is unknown or
    missing, nothing is written (replacing the link would undo what made it)."""
    path, target = facts.daemon_json_path, facts.daemon_json_link
    if target is None:
        return _LinkPlan()
    if not target:
        return _LinkPlan(
            blocker=f"{path} is a symlink, not followed in a directory tree (--root): write its target"
        )
    # A link to nothing never gets here: _plan_daemon_json leaves it alone first.
    return _LinkPlan(reasons=(f"{path} is a symlink to {target}: the target is written, the link kept",))


def _daemon_json_problems(doc: dict[str, Any], facts: DockerFacts) -> list[str]:
    # Where `dockerd --validate` exists it knows its own (newer) keys; elsewhere use 20.10's (fact 12).
    known = None if facts.has_validate else DOCKER_20_10_KEYS
    return check_daemon_json(doc, known_keys=known)


def _flag_blockers(doc: dict[str, Any], facts: DockerFacts) -> list[str]:
    where = facts.flags_source or "dockerd's command line"
    blockers = [
        f"{where} sets {flag.partition('=')[0]}; the same directive ({key}) in daemon.json would stop "
        "dockerd (fact 13)"
        for key, flag in conflicting_flags(doc, facts.dockerd_flags)
    ]
    return blockers + _config_file_elsewhere(facts)


def _conflicts_as_it_is(doc: dict[str, Any], facts: DockerFacts, label: str) -> list[str]:
    """For a daemon.json left as it is, a key in it that a dockerd flag sets too (the key or the flag
    added since dockerd started): what dockerd does at its next reload and restart, and how to fix it.
    The key is a person's, not trust-agent's to remove. An empty list counts: dockerd 20.10 and 26.1
    both refuse "insecure-registries: (from flag: [10.9.9.9], from file: [])" (fact 13)."""
    where = facts.flags_source or "dockerd's command line"
    at_start = {key for key, _ in conflicting_flags(doc, facts.next_start_flags)}
    at_reload = {key for key, _ in conflicting_flags(doc, facts.running_flags or facts.dockerd_flags)}
    said = []
    for key, flag in conflicting_flags(doc, facts.dockerd_flags):
        name = flag.partition("=")[0]
        effect = _conflict_effect(key in at_start, key in at_reload)
        if key == INSECURE_KEY and doc[key] == []:
            what = f'{label} holds "{key}": [] that trust-agent has no record of writing (empty, but a directive)'
            fix = f'remove "{key}": [] from {facts.daemon_json_file} (the flags give the list)'
        else:
            what = f"{label} sets {key}"
            fix = f"remove {key} from {facts.daemon_json_file}, or {name} from {where}"
        said.append(
            f'{where} sets {name}, and {what}: {effect} ("the following directives are specified both as '
            f'a flag and in the configuration file", fact 13); {fix}'
        )
    return said + _config_file_elsewhere(facts)


def _conflict_effect(at_start: bool, at_reload: bool) -> str:
    """What dockerd does with a directive both in daemon.json and among its flags: those of its next
    start (``at_start``), or those of the dockerd that runs (``at_reload``)."""
    if at_start and at_reload:
        return "dockerd refuses a reload with it now, and will not start at its next restart"
    if at_start:
        return "dockerd will not start at its next restart"
    return "dockerd refuses a reload (keeping its old config) until it restarts without that flag"


def _config_file_elsewhere(facts: DockerFacts) -> list[str]:
    """Where dockerd's next start is given another ``--config-file``: the file the agent reads is not
    dockerd's. One that only the running dockerd has (its unit no longer gives it) is not said here:
    the next start reads the agent's file, and ``host_plan.unit_blockers`` refuses the host until a
    restart makes both read one file."""
    config_file = config_file_flag(facts.next_start_flags)
    if config_file is None or posixpath.normpath(config_file) == posixpath.normpath(facts.daemon_json_path):
        return []
    return [
        f"{_next_start_source(facts)} sets --config-file={config_file}: dockerd does not read "
        f"{facts.daemon_json_path}"
    ]


# What the gather adds to ``flags_source`` where the running dockerd has flags its unit no longer gives.
_RUNNING_FLAGS_SOURCE = re.compile(r" and /proc/\d+/cmdline$")


def _next_start_source(facts: DockerFacts) -> str:
    """Where the flags of dockerd's next start were read: the unit's file (with the variables that gave
    them), not the running dockerd's command line read beside it."""
    if facts.flags_source is None:
        return "dockerd's command line"
    return _RUNNING_FLAGS_SOURCE.sub("", facts.flags_source)


# --- dockerd action -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Action:
    action: EngineAction
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    blockers: tuple[str, ...] = ()
    live_pending: bool = False  # dockerd left running registry settings other than daemon.json's


def _live_that_counts(facts: DockerFacts, live: Mapping[str, bool] | None) -> Mapping[str, bool] | None:
    """dockerd's live registry state where it is weighed: known, and of a docker.service that runs."""
    if live is None or facts.init is None or not facts.engine_running or facts.engine_elsewhere:
        return None
    return live


def _engine_behind(
    facts: DockerFacts, daemon: _DaemonPlan, live: Mapping[str, bool] | None
) -> tuple[str, ...]:
    """Where daemon.json stays as it is: the policy's registries whose live insecure/secure state is not
    what the file (with dockerd's flags) asks for, as :func:`mismatches` words them; empty where dockerd's
    live config is not known."""
    live = _live_that_counts(facts, live)
    if live is None:
        return ()
    if facts.daemon_json_link and facts.daemon_json is None:
        return ()  # a link to nothing: no file says what dockerd should run (see _plan_daemon_json)
    if daemon.unreadable:
        return ()  # what the file asks for is unknown, and dockerd would refuse to reload it anyway
    # The running dockerd's flags: a reload keeps them, so a flag only the unit's next start gives
    # is no reason to reload (it would be waited for in vain).
    return tuple(mismatches(live, insecure_in_force(daemon.doc, facts.running_dockerd_flags)))


def _engine_action(
    facts: DockerFacts,
    daemon: _DaemonPlan,
    *,
    behind: tuple[str, ...] = (),
    certs_changed: bool,
    restart_policy: RestartPolicy,
    allow_restart: bool,
    live_restore: bool | None,
) -> _Action:
    if daemon.change is None and not behind:
        if certs_changed:
            return _Action(
                "none", ("none: certs.d is read on every pull and push, no reload needed (fact 7)",)
            )
        return _Action("none")
    if facts.init is None:
        return _Action("none", ("no running engine (directory tree): takes effect when dockerd starts",))
    if facts.engine_elsewhere:
        return _Action(
            "none",
            blockers=(
                "dockerd runs, but not as docker.service (started by hand or by another unit): "
                "trust-agent cannot reload it; run it as docker.service, or change this host yourself",
            ),
        )
    if not facts.engine_running:
        return _Action("none", ("dockerd is not running: the change takes effect when it starts",))

    needed, why = required_action(facts.engine_version, daemon.doc)
    # Where daemon.json stays as it is, the action is for the file dockerd has not loaded yet.
    stale = () if daemon.change is not None else (f"dockerd runs an older daemon.json: {'; '.join(behind)}",)
    if restart_policy == "never":
        what = "the daemon.json change takes effect" if not stale else f"{stale[0]}; the file is loaded"
        when = "its next reload or restart" if needed == "reload" else "its next restart"
        return _Action("none", warnings=(f"restart policy 'never': {what} at {when}",), live_pending=True)
    if restart_policy == "reload":
        warnings = (f"forced reload, but {why}",) if needed == "restart" else ()
        return _Action("reload", (*stale, "reload: forced by restart policy 'reload'"), warnings)
    if restart_policy == "restart":
        return _Action("restart", (*stale, "restart: forced by restart policy 'restart'"))
    if needed == "reload":
        return _Action("reload", (*stale, f"reload: {why}"))

    # The running daemon's, never daemon.json's: a value written but not loaded protects nothing.
    live = live_restore is True
    if allow_restart:
        return _Action("restart", (*stale, f"restart: {why}; allowed by --allow-restart"))
    if live:
        return _Action(
            "restart", (*stale, f"restart: {why}; live-restore keeps containers running (fact 17)")
        )
    return _Action(
        "restart",
        stale,
        blockers=(f"needs a dockerd restart ({why}); pass --allow-restart or enable live-restore",),
    )


_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")


def parse_engine_version(version: str | None) -> tuple[int, int, int] | None:
    """``"20.10.24+dfsg1"`` → ``(20, 10, 24)``; ``None`` when absent or unreadable."""
    match = _VERSION.match(version or "")
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def required_action(version: str | None, doc: dict[str, Any]) -> tuple[EngineAction, str]:
    """The least action that applies an ``insecure-registries`` change on this engine, and why (fact 10).

    The one known exception: 23.0.0 to 23.0.6 and 24.0.0 lose ``insecure-registries`` on a reload where
    ``registry-mirrors`` is set too (moby#45552: the registry rewrite of 23.0 rebuilt the index map when
    loading mirrors, after the insecure list had been loaded into it). Earlier engines only update the
    Docker Hub entry of that map: 20.10.24 with both keys reloads the list (reproduced on the lab).

    >>> required_action("24.0.1", {"registry-mirrors": ["https://m.example.com"]})
    ('reload', 'insecure-registries is reloadable (fact 10)')
    >>> required_action("20.10.24", {"registry-mirrors": []})[0]
    'reload'
    >>> required_action("23.0.6", {"registry-mirrors": []})[0]
    'restart'
    """
    parsed = parse_engine_version(version)
    label = f"Docker {version}" if version else "an engine of unknown version"
    if parsed is not None and parsed < (1, 13, 0):
        return "restart", f"{label} cannot reload insecure-registries (reloadable since 1.13)"
    if "registry-mirrors" in doc and (parsed is None or _reload_drops_insecure(parsed)):
        return "restart", (
            f"{label} with registry-mirrors set: a reload could drop the insecure list "
            "(23.0.0 to 23.0.6 and 24.0.0 do, fact 10)"
        )
    return "reload", "insecure-registries is reloadable (fact 10)"


def _reload_drops_insecure(version: tuple[int, int, int]) -> bool:
    """Where a reload with ``registry-mirrors`` set loses the insecure list (moby#45552)."""
    return (23, 0, 0) <= version < (23, 0, 7) or (24, 0, 0) <= version < (24, 0, 1)
