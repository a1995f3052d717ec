"""How one host is planned and what refuses it, before anything is written: shared by the reconcile
(``rollout``, ``apply``, the daemon) and the Ansible collection's ``registry_trust`` module, so both
plan, refuse and word a host alike.

Pure: the one read of the engine's ``/info`` a plan may need is the caller's ``read_info``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import replace
from typing import Any, NamedTuple

from agent.engine.gather import REDACTED_KEY
from agent.runtimes.daemon_json import index_name
from agent.runtimes.daemon_json_checks import config_file_flag, flag_values
from agent.runtimes.docker import RestartPolicy, plan_docker
from agent.runtimes.docker_facts import DAEMON_JSON, DockerFacts
from agent.runtimes.live_registry import live_insecure
from agent.runtimes.plan import HostPlan
from agent.trust import TrustPolicy

MASKED = "docker.service is masked: systemctl cannot reload or restart it"


class PlannedHost(NamedTuple):
    """A host's plan, and the engine's ``/info`` it was made with (None: made without one)."""

    plan: HostPlan
    info: dict[str, Any] | None


def live_restore(info: dict[str, Any] | None) -> bool | None:
    """Whether the running dockerd has live-restore, as its ``/info`` says (None: not known).

    daemon.json may hold a value dockerd has not loaded: only the live one says whether a restart
    keeps the containers running."""
    value = info.get("LiveRestoreEnabled") if info is not None else None
    return value if isinstance(value, bool) else None


def plan_for_host(
    policy: TrustPolicy,
    facts: DockerFacts,
    info: dict[str, Any] | None,
    *,
    restart_policy: RestartPolicy,
    allow_restart: bool,
    read_info: Callable[[], dict[str, Any] | None],
    live_config_where_untouched: bool = False,
) -> PlannedHost:
    """``plan_docker`` with the live-restore and insecure registries of dockerd's ``/info``.

    A host gathered without ``/info`` (the gather asks a host without the agent's state file only its
    version) gets ``read_info()`` read and is planned again where only the live config could change
    the plan: a restart refused for want of ``allow_restart``, which live-restore may allow; and, with
    ``live_config_where_untouched``, a plan that leaves dockerd alone, while dockerd may still run an
    insecure list its daemon.json no longer gives (fact 11). ``read_info`` returns None where dockerd
    does not answer (not asked where it did not answer the gather): the first plan stands."""
    plan = _planned(policy, facts, info, restart_policy, allow_restart)
    # An engine that did not answer the gather would not answer now either: no second wait for it.
    if (
        info is None
        and not facts.engine_silent
        and (
            restart_waits_on_live_restore(plan, facts, restart_policy, allow_restart)
            or (live_config_where_untouched and leaves_a_running_engine_alone(plan, facts))
        )
    ):
        live = read_info()
        if live is not None:
            return PlannedHost(_planned(policy, facts, live, restart_policy, allow_restart), live)
    return PlannedHost(plan, info)


def _planned(
    policy: TrustPolicy,
    facts: DockerFacts,
    info: dict[str, Any] | None,
    restart_policy: RestartPolicy,
    allow_restart: bool,
) -> HostPlan:
    plan = plan_docker(
        policy,
        facts,
        restart_policy=restart_policy,
        allow_restart=allow_restart,
        # Whether the running dockerd has live-restore is /info's to say: daemon.json may hold a
        # value it has not loaded, and a restart it does not protect stops every container.
        live_restore=live_restore(info),
        live_insecure=live_insecure(info, policy.registries) if info is not None else None,
    )
    plan = _without_unreadable_daemon_json(_refusing_unsafe_links(plan, policy, facts), facts)
    return _warning_of_private_keys(_without_unreadable_files(plan, facts), facts)


def _warning_of_private_keys(plan: HostPlan, facts: DockerFacts) -> HostPlan:
    """``plan`` with a warning for each of the agent's CA files that holds a private key (the gather
    redacts it): whoever could read the file had the key."""
    notes = []
    for name, content in sorted(facts.certs.items()):
        if REDACTED_KEY.search(content):
            path = f"{facts.certs_dir.rstrip('/')}/{name}"
            if any(change.path == path for change in plan.changes):
                notes.append(
                    f"{path} holds a private key: it is replaced by this run; consider the key exposed"
                )
            else:
                notes.append(
                    f"{path} holds a private key: remove it from there, and consider the key exposed"
                )
    return replace(plan, warnings=(*plan.warnings, *notes)) if notes else plan


def _without_unreadable_daemon_json(plan: HostPlan, facts: DockerFacts) -> HostPlan:
    """``plan`` where daemon.json exists but could not be read (a login that is not root, a file only
    root may read): the planner saw no file there, so any change it planned to it would replace what it
    holds. That change is dropped, and the host refused where the policy needs it; elsewhere said."""
    why = facts.daemon_json_unreadable
    if why is None:
        return plan
    path = facts.daemon_json_file
    said = f"{path} cannot be read ({why}): trust-agent neither shows nor writes a daemon.json it cannot read"
    kept = tuple(change for change in plan.changes if change.path != path)
    if len(kept) == len(plan.changes):
        note = f"{said}; whether it lists the policy's registries as insecure is not known"
        return replace(plan, warnings=(*plan.warnings, note))
    refused = f"{said}, and the policy needs it changed: run as root, then run again (nothing written)"
    return replace(plan, changes=kept, blockers=(*plan.blockers, refused))


def _without_unreadable_files(plan: HostPlan, facts: DockerFacts) -> HostPlan:
    """``plan`` where the agent's record, one of its CA files or dockerd's command line exists but could
    not be read, or certs.d or one of its directories not be listed (a login that is not root): the
    planner saw them empty, so no change is shown or made to them or under them, and each is said. A
    change the plan would make there refuses the host; so does an unknown record beside other changes,
    which may then not be those a run as root makes."""
    if not facts.unreadable_files:
        return plan
    warnings, blockers = list(plan.warnings), list(plan.blockers)
    changes, mkdirs = plan.changes, plan.mkdirs
    for path, why in sorted(facts.unreadable_files.items()):
        said = _unreadable_says(path, why, facts)
        kept = tuple(change for change in changes if not _covers(path, change.path))
        # A directory that cannot be listed is there: nothing to make in its place, nor under it.
        mkdirs = tuple(d for d in mkdirs if not _covers(path, d))
        if path == facts.state_path:
            # The record's directory is there, as the record is: nothing to make.
            mkdirs = tuple(d for d in mkdirs if d != posixpath.dirname(path))
            refused = bool(kept) or bool(mkdirs)  # the rest was planned without the record
            why_refused = "so the changes shown may not be those a run as root makes"
        elif _is_certs_directory(path, facts):
            refused = len(kept) < len(changes)
            why_refused = "and the plan writes in it"
        else:
            refused = len(kept) < len(changes)
            why_refused = "and the plan changes it"
        changes = kept
        if refused:
            blockers.append(f"{said}, {why_refused}: run as root, then run again (nothing written)")
        else:
            warnings.append(said)
    return replace(plan, changes=changes, mkdirs=mkdirs, warnings=tuple(warnings), blockers=tuple(blockers))


def _covers(unreadable: str, path: str) -> bool:
    """Whether ``path`` is the path that could not be read, or lies under it (a directory not listed)."""
    return path == unreadable or path.startswith(unreadable.rstrip("/") + "/")


def _is_certs_directory(path: str, facts: DockerFacts) -> bool:
    """certs.d itself or one of its ``<registry>`` directories (a CA file lies one level below)."""
    certs_dir = facts.certs_dir.rstrip("/")
    return path == certs_dir or posixpath.dirname(path) == certs_dir


def _unreadable_says(path: str, why: str, facts: DockerFacts) -> str:
    """What a file the login could not read, or a directory it could not list, leaves unknown."""
    if _is_certs_directory(path, facts):
        return (
            f"{path} cannot be listed ({why}): which of trust-agent's CA files it holds, and what they say, "
            "is not known"
        )
    if path == facts.state_path:
        return (
            f"trust-agent's record {path} cannot be read ({why}): what trust-agent added before is not known"
        )
    if path.startswith("/proc/"):
        return (
            f"the running dockerd's command line ({path}) cannot be read ({why}): flags it was started "
            "with that its unit no longer gives are not known"
        )
    return f"{path} cannot be read ({why}): trust-agent neither shows nor writes a file it cannot read"


def _refusing_unsafe_links(plan: HostPlan, policy: TrustPolicy, facts: DockerFacts) -> HostPlan:
    """``plan`` refused where one of the policy's certs.d directories is a symbolic link that cannot be
    trusted: dockerd reads the CA files through it, so whoever can redirect it chooses the CAs."""
    refused = [
        f"{facts.cert_dir_link_problems[registry]}, then run again (nothing written)"
        for registry in policy.registries
        if registry in facts.cert_dir_link_problems
    ]
    return replace(plan, blockers=(*plan.blockers, *refused)) if refused else plan


def insecure_flag_warnings(policy: TrustPolicy, facts: DockerFacts) -> tuple[str, ...]:
    """Where the policy verifies TLS, each of its registries dockerd's command line makes insecure
    (``--insecure-registry``, in a drop-in or ``$DOCKER_OPTS``): a person's to remove, as trust-agent
    never changes dockerd's command line."""
    if policy.insecure:
        return ()
    flagged = {index_name(value): value for value in flag_values(facts.dockerd_flags, "insecure-registry")}
    where = f" ({facts.flags_source})" if facts.flags_source else ""
    return tuple(
        f"{registry}: dockerd's command line has --insecure-registry {flagged[registry]}{where}, though "
        f"the policy verifies its TLS: dockerd does not verify {registry}; remove the flag there"
        for registry in policy.registries
        if registry in flagged
    )


def restart_waits_on_live_restore(
    plan: HostPlan, facts: DockerFacts, restart_policy: RestartPolicy, allow_restart: bool
) -> bool:
    """A restart refused for want of ``allow_restart``, which only the running dockerd's live-restore
    could allow."""
    return (
        plan.engine_action == "restart"
        and bool(plan.blockers)
        and restart_policy == "auto"
        and not allow_restart
        and facts.engine_running
        and facts.init is not None
    )


def leaves_a_running_engine_alone(plan: HostPlan, facts: DockerFacts) -> bool:
    """Whether ``plan`` asks nothing of a running dockerd whose live config is meant to be daemon.json's
    (not blocked, not left behind on purpose by restart policy 'never')."""
    return (
        plan.engine_action == "none"
        and not plan.blockers
        and not plan.live_pending
        and facts.engine_running
        and facts.init is not None
    )


def only_the_record(plan: HostPlan) -> bool:
    """Whether ``plan`` writes trust-agent's own record and nothing else (the record's directory aside):
    every file dockerd reads holds the policy already, so the host's trust stays as it is and dockerd
    needs no reload. A hand edit the record follows is such a plan: the agent's empty
    ``insecure-registries`` removed once dockerd had loaded it. A reload keeps the live list where the
    key is missing (fact 11), and that list is the empty one; where dockerd's live config still lists a
    registry, the planner writes ``[]`` again, a change dockerd reads, and the plan is no longer this."""
    record_dirs = {posixpath.dirname(change.path) for change in plan.changes if change.internal}
    return (
        bool(plan.changes)
        and all(change.internal for change in plan.changes)
        and set(plan.mkdirs) <= record_dirs
        and not plan.rmdirs
        and plan.engine_action == "none"
    )


def record_only_note(record: str, *, applied: bool) -> str:
    """What a run says of a host where :func:`only_the_record` holds: not a change of its trust."""
    if applied:
        return (
            f"only trust-agent's record {record} was updated: the files dockerd reads already held the "
            "policy, so this host's trust is as it was and dockerd was not reloaded"
        )
    return (
        f"only trust-agent's record {record} would be updated: the files dockerd reads already hold the "
        "policy, so this host's trust stays as it is and dockerd needs no reload"
    )


def not_root_error(login_uid: int | None, how: str) -> str | None:
    """Why the host's login cannot make the change, ending with ``how`` to become root (None: it can,
    or its uid is unknown)."""
    if login_uid in (None, 0):
        return None
    return f"runs as uid {login_uid}, not root: /etc/docker and the engine's socket are root's ({how})"


def unit_blockers(facts: DockerFacts, plan: HostPlan) -> list[str]:
    """Why docker.service, as it is, keeps ``plan`` from taking effect: found before anything is written."""
    if facts.init != "systemd":
        return []
    blockers = []
    if facts.unit_masked and plan.engine_action != "none":
        blockers.append(
            f"{MASKED} (the plan needs a {plan.engine_action}): systemctl unmask docker.service, "
            "then run again (nothing written)"
        )
    if facts.unit_reload_missing is not None and plan.engine_action == "reload":
        blockers.append(
            f"docker.service has no ExecReload ({facts.unit_reload_missing}): a reload is not possible "
            "(systemctl reload refuses it); give the unit its ExecReload back (then systemctl daemon-reload), "
            "or let trust-agent restart dockerd instead (--restart-policy restart), "
            "then run again (nothing written)"
        )
    moved = _config_file_moved(facts)
    if moved is not None:
        blockers.append(moved)
    return blockers


def masked_note(facts: DockerFacts, plan: HostPlan) -> str | None:
    """The warning for a masked docker.service where ``plan`` needs no reload or restart, yet something
    waits on dockerd: it is stopped, or restart policy 'never' left its live config behind. A running
    dockerd reads CA files at once (fact 7): where nothing waits, the mask changes nothing."""
    if not facts.unit_masked or facts.init != "systemd":
        return None
    if facts.engine_running and not plan.live_pending:
        return None
    return f"{MASKED}; the files take effect when dockerd starts"


def _config_file_moved(facts: DockerFacts) -> str | None:
    """Where the running dockerd reads another daemon.json than its unit's next start would (a
    --config-file drop-in removed, daemon-reload, no restart): a reload and a restart would load
    different files, and the live config checked after a reload is not the written file's."""
    if facts.unit_flags is None or not facts.running_flags:
        return None
    running = config_file_flag(facts.running_flags) or DAEMON_JSON
    unit = config_file_flag(facts.unit_flags) or DAEMON_JSON
    if posixpath.normpath(running) == posixpath.normpath(unit):
        return None
    return (
        f"the running dockerd was started with --config-file={running}, but docker.service now starts it "
        f"with {unit}: a reload would load {running}, its next start {unit}; restart dockerd "
        "(systemctl restart docker.service) so that both read one file, then run again (nothing written)"
    )
