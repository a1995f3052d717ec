"""Reconcile one host: connect → gather → plan → apply (+ reload) → verify → roll back on failure.

The planner is pure (``agent.runtimes.docker``); this module is the only place that sequences I/O
for one host, so the rollout, ``apply --local`` and the per-host daemon behave the same.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from agent.engine.apply_script import (
    EXIT_ACTION,
    EXIT_BUSY,
    EXIT_CHANGED,
    EXIT_INVALID,
    ROLLBACK_LOCK_WAIT,
    STOPPED_MARK,
    active_after_failed_restart,
    build_apply_script,
    inverse,
    reload_stamp,
    script_stamps,
)
from agent.engine.canary_auth import RUN_CREDENTIALS, CanaryCredentialsError, read_canary_credentials
from agent.engine.gather import NO_LEFTOVERS, Gathered, Leftovers, gather_host, live_info
from agent.engine.host_plan import (
    PlannedHost,
    insecure_flag_warnings,
    masked_note,
    not_root_error,
    only_the_record,
    plan_for_host,
    record_only_note,
    unit_blockers,
)
from agent.engine.options import RunOptions
from agent.engine.unit_log import start_failure_note
from agent.engine.verify import (
    CanaryError,
    CanaryPull,
    canary_pull,
    covered_registries,
    expected_insecure,
    image_registry,
    live_config_unjudged,
    mismatches,
    names_to_resolve,
    ranges_covering,
    read_live_info,
    refusal_since,
    resolve_command,
    resolved_addresses,
    tls_unchecked,
    tls_unchecked_pull,
    unresolved_notes,
    wait_for_live_config,
)
from agent.errors import (
    ApplyError,
    CommandError,
    CommandTimeout,
    HostBusyError,
    HostError,
    ReloadError,
    TrustAgentError,
    UnreachableError,
    ValidationError,
)
from agent.hosts.base import CommandResult, Transport
from agent.hosts.local import LocalTransport
from agent.outcome import HostOutcome, Phase, PhaseName, Status
from agent.runtimes.docker import (
    daemon_json_after,
    does_not_comply,
    facts_after,
    followed_by,
    reads_invalid_utf8,
)
from agent.runtimes.docker_facts import DockerFacts
from agent.runtimes.live_registry import live_insecure
from agent.runtimes.plan import HostPlan
from agent.trust import TrustPolicy

# The names ``HostOutcome.checks`` gives the validations of a new daemon.json.
AGENT_CHECKS = "agent checks"
DOCKERD_VALIDATE = "dockerd --validate"


class _Timeline:
    """Phase timings relative to the run's start (``clock`` is shared by every host of a run)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.phases: list[Phase] = []

    def run(self, name: PhaseName, step: Callable[[], Any]) -> Any:
        start = self.clock()
        try:
            return step()
        finally:
            self.phases.append(Phase(name, start, self.clock()))

    def add(self, name: PhaseName, start: float, end: float) -> None:
        self.phases.append(Phase(name, start, end))


def reconcile(
    transport: Transport,
    policy: TrustPolicy,
    options: RunOptions,
    *,
    clock: Callable[[], float] = time.monotonic,
    connect: Callable[[], None] | None = None,
) -> HostOutcome:
    """Bring one host to ``policy`` (or, with ``dry_run``, say what would change). Never raises for host
    problems: every failure becomes the outcome's status and error."""
    timeline = _Timeline(clock)
    host = transport.name
    # Every host of a one-shot run pulls the canary: a run that cannot read its credentials stops here,
    # before it connects, rather than change each host and roll it back.
    no_credentials = _credentials_refused(options) if options.canary_unchanged else None
    if no_credentials is not None:
        return HostOutcome(host, "failed", error=no_credentials)
    if connect is not None:
        try:
            timeline.run("connect", connect)
        except HostError as exc:
            return HostOutcome(host, "unreachable", error=str(exc), phases=tuple(timeline.phases))
    try:
        gathered: Gathered = timeline.run(
            "gather", lambda: gather_host(transport, root=options.root, timeout=options.command_timeout)
        )
    except UnreachableError as exc:
        return HostOutcome(host, "unreachable", error=str(exc), phases=tuple(timeline.phases))
    except TrustAgentError as exc:
        return HostOutcome(host, "failed", error=str(exc), phases=tuple(timeline.phases))
    facts, info, leftovers = gathered.facts, gathered.info, gathered.leftovers
    # apply --local has no --become: there, the way is sudo itself.
    how = (
        "run it as root: sudo trust-agent ..."
        if _is_local(transport)
        else "log in as root, or pass --become for sudo"
    )
    not_root = not_root_error(facts.login_uid, how)
    if not_root is not None:
        if not options.dry_run or options.verify:
            return HostOutcome(host, "failed", error=not_root, phases=tuple(timeline.phases))
        notes: tuple[str, ...] = (f"this host {not_root}: what it showed may be partial",)
    else:
        notes = ()

    planned: PlannedHost = timeline.run(
        "plan",
        lambda: plan_for_host(
            policy,
            facts,
            info,
            restart_policy=options.restart_policy,
            allow_restart=options.allow_restart,
            read_info=lambda: _live_info_or_none(transport, options),
            # plan and verify say what a rollout would do: a rollout learns dockerd's live config after
            # its first apply (_second_plan); a dry run reads it now, at the cost of one round trip.
            live_config_where_untouched=options.dry_run,
        ),
    )
    plan, info = planned
    base = HostOutcome(
        host,
        "unchanged",
        plan=plan,
        engine_action=plan.engine_action,
        engine_version=facts.engine_version,
        checks=_checks(plan, facts),
        warnings=(*notes, *plan.warnings),
    )
    refused = unit_blockers(facts, plan)
    if plan.blockers or refused:
        # The unit's refusals are the plan's blockers too: the host is left untouched, so no report
        # shows its plan's changes as if they were to happen.
        blocked = replace(plan, blockers=(*refused, *plan.blockers))
        error = "; ".join(blocked.blockers)
        return _done(replace(base, plan=blocked), timeline, "failed", error=error, engine_action="none")
    base = _warned(base, masked_note(facts, plan))
    # The daemon pulls only where it changes the host's trust: read where it will, before it does.
    record_only = only_the_record(plan)
    acts = (plan.changed or plan.engine_action != "none") and not record_only
    no_credentials = _credentials_refused(options) if acts else None
    if no_credentials is not None:
        return _done(base, timeline, "failed", error=no_credentials, engine_action="none")
    if not (options.dry_run and options.verify):  # `verify` fails the host for it (_breaches)
        base = replace(base, warnings=(*base.warnings, *insecure_flag_warnings(policy, facts)))
    # Said by plan and verify; a rollout's apply removes them (below, or with the plan's changes).
    if options.dry_run:
        base = _warned(base, leftovers.said(removed=False))
    down = engine_down(facts) if options.verify else None
    if down is not None:
        if options.dry_run:  # `verify`: a live config that cannot be read is not verified
            return _done(base, timeline, "failed", error=down, engine_action="none")
        canary = f"; no canary pull of {options.canary_image}" if options.canary_image else ""
        base = replace(
            base, warnings=(*base.warnings, f"{down}; the files take effect when it starts{canary}")
        )
    if record_only and options.dry_run:  # bookkeeping: plan and verify judge the host as it is
        base = _warned(base, record_only_note(facts.state_path, applied=False))
    if (not plan.changed and plan.engine_action == "none") or (record_only and options.dry_run):
        if leftovers.files and not options.dry_run:
            try:
                timeline.run("apply", lambda: _clean_leftovers(transport, facts, options, leftovers))
            except TrustAgentError as exc:
                return _done(base, timeline, "failed", error=str(exc), engine_action="none")
            base = _warned(base, leftovers.said(removed=True))
        breaches = _breaches(policy, facts, info) if options.dry_run and options.verify else ()
        if breaches:  # `verify`: nothing for the agent to change, yet the host does not comply
            error = "does not comply with the policy: " + "; ".join(breaches)
            return _done(base, timeline, "failed", error=error, engine_action="none")
        if not options.verify or facts.init is None or not facts.engine_running or plan.live_pending:
            return _done(base, timeline, "unchanged", engine_action="none")
        checks = options if options.canary_unchanged else replace(options, canary_image=None)
        keep = reads_invalid_utf8(facts)
        base = _warned(
            base, live_config_unjudged(facts.daemon_json, facts.daemon_json_file, keep_invalid_utf8=keep)
        )
        try:
            checked: _Verified = timeline.run(
                "verify",
                lambda: _verify(
                    transport,
                    policy,
                    facts.daemon_json,
                    facts.running_dockerd_flags,
                    checks,
                    info,
                    daemon_json_path=facts.daemon_json_file,
                    keep_invalid_utf8=keep,
                ),
            )
        except TrustAgentError as exc:
            return _done(base, timeline, "failed", error=f"converged on disk but {exc}", engine_action="none")
        base = replace(base, warnings=(*base.warnings, *checked.notes))
        if checked.breaches and options.dry_run:  # `verify`: the engine skips TLS checks the policy wants
            error = "does not comply with the policy: " + "; ".join(checked.breaches)
            return _done(base, timeline, "failed", error=error, engine_action="none")
        base = replace(base, warnings=(*base.warnings, *checked.breaches))
        return _done(base, timeline, "unchanged", engine_action="none", verified=checked.proved)
    if options.dry_run:
        return _done(base, timeline, "pending")

    # base shows the plan as made from the redacted facts; the apply checks, and a roll-back puts back,
    # each file as the host holds it.
    shown, plan = plan, gathered.as_on_host(plan)
    action = plan.engine_action if facts.init is not None else "none"
    resolve = _names_to_resolve(policy) if _verifies(options, facts, plan) else []
    try:
        result = _apply(transport, plan, facts, options, action, timeline, leftovers, resolve=resolve)
    except (HostBusyError, ValidationError) as exc:
        if isinstance(exc, ValidationError) and exc.by_engine:
            base = replace(base, checks=(*base.checks, DOCKERD_VALIDATE))
        return _done(base, timeline, "failed", error=str(exc), engine_action="none")
    except UnreachableError as exc:
        return _done(base, timeline, "unreachable", error=f"lost during apply: {exc}", engine_action="none")
    except ApplyError as exc:
        return _roll_back(transport, plan, facts, options, base, timeline, exc)
    except HostError as exc:
        if isinstance(exc, CommandTimeout):
            # The script may have written, or still be writing and reloading: nothing here says it did not.
            error = f"{exc} during the apply: the host may have been changed part way; see trust-agent verify"
            return _done(base, timeline, "failed", error=error, engine_action="none", changes_unknown=True)
        if not isinstance(exc, CommandError) or b"@@ta t written" not in exc.stdout:
            return _done(base, timeline, "failed", error=str(exc), engine_action="none")
        return _roll_back(transport, plan, facts, options, base, timeline, exc)
    info_after = _info_read(result, options, facts, action)
    if info is None and action == "none" and _verifies(options, facts, plan):
        # Planned without the engine's live config: a host without the agent's state file is asked only
        # its version (one /_ping keeps the cold rollout cheap). The verify's first read of /info, done
        # here, shows whether dockerd runs something else (a list it kept after its key went from
        # daemon.json, fact 11): then only that host is planned again with it, and applied once more.
        if info_after is None:
            info_after = timeline.run("verify", lambda: _live_info_or_none(transport, options))
        again = _second_plan(policy, plan, facts, options, info_after)
        if again is not None:
            written, plan, action = facts_after(plan, facts), followed_by(plan, again), again.engine_action
            base = replace(
                base,
                plan=followed_by(shown, again),
                engine_action=action,
                checks=_checks(plan, facts),
                warnings=(*notes, *plan.warnings),
            )
            applied = _apply_again(transport, again, written, plan, facts, options, base, timeline, resolve)
            if isinstance(applied, HostOutcome):
                return applied
            result = applied
            info_after = _info_read(result, options, facts, action)
    if b"@@ta validated" in result.stdout:
        base = replace(base, checks=(*base.checks, DOCKERD_VALIDATE))
    base = _warned(base, leftovers.said(removed=True))
    if f"@@ta {STOPPED_MARK}".encode() in result.stdout:
        stopped = "docker.service was stopped during the run: the files take effect when dockerd starts"
        base, status = _as_applied(replace(base, warnings=(*base.warnings, stopped)), plan, facts)
        return _done(base, timeline, status, engine_action="none")
    verified = _Verified()
    if _verifies(options, facts, plan):
        after = daemon_json_after(plan, facts)
        keep = reads_invalid_utf8(facts)
        base = _warned(base, live_config_unjudged(after, facts.daemon_json_file, keep_invalid_utf8=keep))
        # A reload dockerd refuses shows only in its journal: read from the apply's own timestamp on.
        reloaded_at = reload_stamp(result.stdout, action, facts.init)
        try:
            verified = timeline.run(
                "verify",
                lambda: _verify(
                    transport,
                    policy,
                    after,
                    facts.flags_after(action),
                    _verify_options(options, plan),
                    info_after,
                    reloaded_at,
                    daemon_json_path=facts.daemon_json_file,
                    keep_invalid_utf8=keep,
                    addresses=_resolved_by_apply(result, resolve),
                ),
            )
        except TrustAgentError as exc:
            return _roll_back(transport, plan, facts, options, base, timeline, exc)
        if resolve:  # a name the host cannot resolve: dockerd cannot reach that registry there
            base = replace(
                base, warnings=(*base.warnings, *unresolved_notes(result.stdout.decode("utf-8", "replace")))
            )
    base = replace(base, warnings=(*base.warnings, *verified.notes, *verified.breaches))
    base, status = _as_applied(base, plan, facts)
    return _done(base, timeline, status, engine_action=action, verified=verified.proved)


def _as_applied(base: HostOutcome, plan: HostPlan, facts: DockerFacts) -> tuple[HostOutcome, Status]:
    """The outcome of an apply that worked, and its status: ``changed``, or ``unchanged`` with a note
    where it wrote only trust-agent's record (the host's trust is as it was)."""
    if not only_the_record(plan):
        return base, "changed"
    return _warned(base, record_only_note(facts.state_path, applied=True)), "unchanged"


def _verify_options(options: RunOptions, plan: HostPlan) -> RunOptions:
    """``options`` for the verify after an apply: one that wrote only trust-agent's record proves the
    host as an unchanged host is proved (the daemon pulls no canary there)."""
    if options.canary_unchanged or not only_the_record(plan):
        return options
    return replace(options, canary_image=None)


def _breaches(policy: TrustPolicy, facts: DockerFacts, info: dict[str, Any] | None) -> tuple[str, ...]:
    """What keeps a host the agent would leave as it is from holding ``policy`` (a person's to fix)."""
    return does_not_comply(policy, facts, live_insecure(info, policy.registries) if info else None)


def _plan(
    policy: TrustPolicy, facts: DockerFacts, options: RunOptions, info: dict[str, Any] | None
) -> HostPlan:
    """The plan for ``facts`` with the live config ``info`` as it is: nothing more is read."""
    return plan_for_host(
        policy,
        facts,
        info,
        restart_policy=options.restart_policy,
        allow_restart=options.allow_restart,
        read_info=lambda: None,
    ).plan


def _verifies(options: RunOptions, facts: DockerFacts, plan: HostPlan) -> bool:
    """Whether the engine's live config is checked after the apply: there is one to read, and it is
    meant to be daemon.json's."""
    return options.verify and facts.init is not None and facts.engine_running and not plan.live_pending


def _second_plan(
    policy: TrustPolicy,
    plan: HostPlan,
    facts: DockerFacts,
    options: RunOptions,
    info: dict[str, Any] | None,
) -> HostPlan | None:
    """Where ``plan`` was made without the engine's live config and left dockerd alone, but the live
    config ``info`` read after it is not what the files ask for: the plan for the host as ``plan``
    left it, now with that live config (a list dockerd kept after its key went from daemon.json is
    cleared by writing ``[]``, fact 11). None where there is nothing such a plan could do."""
    after = daemon_json_after(plan, facts)
    keep = reads_invalid_utf8(facts)
    if info is None or live_config_unjudged(after, facts.daemon_json_file, keep_invalid_utf8=keep):
        return None
    wanted = expected_insecure(after, facts.running_dockerd_flags, keep_invalid_utf8=keep)
    if not mismatches(info, policy.registries, wanted):
        return None
    again = _plan(policy, facts_after(plan, facts), options, info)
    if again.blockers or (not again.changed and again.engine_action == "none"):
        return None  # the verify says what does not match
    return again


def _apply_again(
    transport: Transport,
    again: HostPlan,
    written: DockerFacts,
    both: HostPlan,
    facts: DockerFacts,
    options: RunOptions,
    base: HostOutcome,
    timeline: _Timeline,
    resolve: Sequence[str] = (),
) -> CommandResult | HostOutcome:
    """Apply ``again`` (planned on ``written``, the host as the first apply left it); where it fails,
    roll ``both`` back, so the host is as it was before either."""
    try:
        return _apply(transport, again, written, options, again.engine_action, timeline, resolve=resolve)
    except UnreachableError as exc:
        return _done(base, timeline, "unreachable", error=f"lost during apply: {exc}", engine_action="none")
    except TrustAgentError as exc:
        return _roll_back(transport, both, facts, options, base, timeline, exc)


def _info_read(
    result: CommandResult, options: RunOptions, facts: DockerFacts, action: str
) -> dict[str, Any] | None:
    """The engine's /info the apply script read after its action, where it did; else None, and the
    verify reads it (over the transport's route to the engine)."""
    return (
        live_info(result.stdout.decode("utf-8", "replace")) if _reads_info(options, facts, action) else None
    )


def _live_info_or_none(transport: Transport, options: RunOptions) -> dict[str, Any] | None:
    try:
        return read_live_info(transport, options.verify_timeout)
    except TrustAgentError:
        return None  # the verify reads it again, and says what it finds


def _link_of(facts: DockerFacts) -> str | None:
    """daemon.json's path where it is a link: the apply walks the chain again before writing its end."""
    return facts.daemon_json_path if facts.daemon_json_link else None


def _directory_links_of(facts: DockerFacts) -> tuple[str, ...]:
    """The certs.d directories that are links: the apply walks their chains again before writing there."""
    return tuple(f"{facts.certs_dir.rstrip('/')}/{registry}" for registry in sorted(facts.cert_dir_links))


def _names_to_resolve(policy: TrustPolicy) -> list[str]:
    """The registries' host names whose addresses the verify judges after an apply (an insecure range,
    127.0.0.0/8 among dockerd's defaults, covering one means dockerd skips its TLS checks): every name,
    as the apply may change which ones the engine lists itself; none for a policy that wants them
    insecure."""
    return [] if policy.insecure else names_to_resolve({}, policy.registries, loopback_too=True)


def _resolved_by_apply(result: CommandResult, names: Sequence[str]) -> dict[str, list[str]] | None:
    """The addresses of ``names`` as the apply script printed them, or None where it did not print
    every one (the verify then asks the host, where its insecure ranges call for it)."""
    if not names:
        return None
    addresses = resolved_addresses(result.stdout.decode("utf-8", "replace"))
    return addresses if set(names) <= addresses.keys() else None


def _reads_info(options: RunOptions, facts: DockerFacts, action: str) -> bool:
    """Whether the apply script ends by reading the engine's /info (saves verify a round trip); not where
    the controller reads the API itself, which costs the host no curl."""
    return (
        options.verify
        and facts.init is not None
        and facts.engine_running
        and action != "restart"
        and not facts.engine_api
    )


def _checks(plan: HostPlan, facts: DockerFacts) -> tuple[str, ...]:
    """The checks a new daemon.json went through while planning: the agent's own (always; the key
    list only where the engine has no ``--validate``). ``dockerd --validate`` is added once the apply
    script has run it on the host."""
    if not any(c.path == facts.daemon_json_file for c in plan.changes):
        return ()
    return (AGENT_CHECKS,)


def _is_local(transport: Transport) -> bool:
    """This machine (``--local``, the per-host daemon): a busy lock's wording names who else runs here."""
    return isinstance(transport, LocalTransport)


def _clean_leftovers(
    transport: Transport, facts: DockerFacts, options: RunOptions, leftovers: Leftovers
) -> None:
    """On a host with nothing else to change: remove what a run stopped part way left there (and put
    the agent's record back), under the host's lock, as an apply with no file to write does."""
    script = build_apply_script(
        HostPlan(),
        engine_action="none",
        init=facts.init,
        daemon_json_path=facts.daemon_json_file,
        backup_stamp=options.backup_stamp,
        leftover_dirs=leftovers.directories,
        local=_is_local(transport),
    )
    result = transport.run_script(script, options.root, timeout=options.command_timeout)
    if result.exit_status == EXIT_BUSY:
        raise HostBusyError(script_error(result.stderr))
    if not result.ok:
        raise CommandError(
            f"removing what a stopped run left: {script_error(result.stderr) or f'exit {result.exit_status}'}",
            result.exit_status,
            result.stderr.decode("utf-8", "replace"),
        )


def _apply(
    transport: Transport,
    plan: HostPlan,
    facts: DockerFacts,
    options: RunOptions,
    action: str,
    timeline: _Timeline,
    leftovers: Leftovers = NO_LEFTOVERS,
    *,
    resolve: Sequence[str] = (),
) -> CommandResult:
    """Run the apply script for ``plan``; at its end it also prints how the host resolves the names
    ``resolve`` (:func:`_resolved_by_apply`)."""
    validate_with = (
        ("dockerd", *facts.dockerd_flags) if facts.has_validate and facts.init is not None else None
    )
    script = build_apply_script(
        plan,
        engine_action=action,  # type: ignore[arg-type]
        init=facts.init,
        validate_with=validate_with,
        daemon_json_path=facts.daemon_json_file,
        daemon_json_link=_link_of(facts),
        backup_stamp=options.backup_stamp,
        read_info=_reads_info(options, facts, action),
        leftover_dirs=leftovers.directories,
        directory_links=_directory_links_of(facts),
        local=_is_local(transport),
        # How the host resolves the registries' names, for the verify (a name on loopback): no round trip more.
        last=resolve_command(resolve) if resolve else None,
    )
    result = _timed_apply(
        timeline,
        lambda: transport.run_script(script, options.root, timeout=options.command_timeout),
        acted=action != "none",
    )
    detail = script_error(result.stderr) or f"exit {result.exit_status}"
    if result.exit_status == 0:
        if action == "restart":
            timeline.run("reload", lambda: _wait_engine(transport, options.restart_timeout))
        return result
    if result.exit_status == EXIT_BUSY:
        raise HostBusyError(detail)
    if result.exit_status == EXIT_INVALID:
        # dockerd --validate read the staged copy: name the file it stands for.
        raise ValidationError(_TEMP_FILE.sub(facts.daemon_json_file, detail), by_engine=True)
    if result.exit_status == EXIT_CHANGED:
        raise ValidationError(detail)
    if result.exit_status == EXIT_ACTION:
        raise ReloadError(detail + _said(result))
    error = CommandError(
        f"apply failed: {detail}", result.exit_status, result.stderr.decode("utf-8", "replace")
    )
    error.stdout = result.stdout  # type: ignore[attr-defined]
    raise error


# A staged file's name (apply_script.stage): what dockerd --validate quotes.
_TEMP_FILE = re.compile(r"/[^\s:]*/\.trust-agent\.\d+\.t\d+")

# What sh puts before its own messages ("loop: 45: printf: "): the script's name and line, not news.
_SHELL_PREFIX = re.compile(r"^[\w.-]+: \d+: (?:[\w.-]+: )*")


def script_error(stderr: bytes) -> str:
    """The apply script's stderr as one line: each message once, without the shell's own prefixes,
    separated (``mkdir: …: Read-only file system; cannot create …``)."""
    lines = [_SHELL_PREFIX.sub("", line.strip()) for line in stderr.decode("utf-8", "replace").splitlines()]
    return "; ".join(dict.fromkeys(line for line in lines if line))[:500]


def _timed_apply(timeline: _Timeline, run: Callable[[], CommandResult], *, acted: bool) -> CommandResult:
    """``run()`` the apply script, its time on the timeline: apply and reload as its stamps split them;
    where it raised (the connection lost, a timeout), apply up to then, as the host spent it there."""
    start = timeline.clock()
    try:
        result = run()
    except BaseException:
        timeline.add("apply", start, timeline.clock())
        raise
    _split_apply_phases(timeline, result.stdout, start, timeline.clock(), acted)
    return result


def _split_apply_phases(timeline: _Timeline, stdout: bytes, start: float, end: float, acted: bool) -> None:
    """Split the one round trip into apply and reload phases using the script's own timestamps."""
    stamps = script_stamps(stdout)
    if acted and {b"start", b"written", b"done"} <= stamps.keys():
        total = max(stamps[b"done"] - stamps[b"start"], 1e-9)
        share = (stamps[b"written"] - stamps[b"start"]) / total
        middle = start + (end - start) * min(max(share, 0.0), 1.0)
        timeline.add("apply", start, middle)
        timeline.add("reload", middle, end)
    else:
        timeline.add("apply", start, end)


def _said(result: CommandResult) -> str:
    """``; docker.service said: ...`` from a failed restart's journal lines, or nothing."""
    note = start_failure_note(result.stdout)
    return f"; {note}" if note else ""


def _wait_engine(transport: Transport, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if transport.run_script("docker info --format '{{.ID}}' >/dev/null 2>&1", timeout=30).ok:
            return
        if time.monotonic() >= deadline:
            raise ReloadError(f"dockerd did not come back within {timeout:.0f}s of the restart")
        time.sleep(0.5)


class _Verified(NamedTuple):
    """What a verify proved; where the engine skips TLS checks the policy wants (an insecure range that
    covers a registry's address), ``breaches``; ``notes``, what it could not check (a canary pull that
    fetched no blob among them)."""

    proved: tuple[str, ...] = ()
    breaches: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def _verify(
    transport: Transport,
    policy: TrustPolicy,
    daemon_json: bytes | None,
    flags: Sequence[str],
    options: RunOptions,
    info: dict[str, Any] | None = None,
    reloaded_at: float | None = None,
    *,
    daemon_json_path: str,
    keep_invalid_utf8: bool = False,
    addresses: Mapping[str, Sequence[str]] | None = None,
) -> _Verified:
    """Prove the engine runs the registry config of ``daemon_json`` and its command line ``flags``: from
    ``info`` (the engine's live /info, read on the host in the gather or apply round trip) when it
    already matches, else by polling /info until it does (a SIGHUP applies asynchronously), or until
    dockerd's journal says it refused the reload done after ``reloaded_at`` (the host's uptime); then
    the canary pull, where asked. A ``daemon_json`` that cannot be parsed says nothing of what dockerd
    runs: no live comparison then (the caller warns, :func:`live_config_unjudged`); one holding bytes
    that are not UTF-8 is read as the host's dockerd reads it (``keep_invalid_utf8``). ``addresses``:
    the registries' names as the host resolved them in the apply's round trip, where it did."""
    proved: list[str] = []
    covered: dict[str, str] = {}
    notes: tuple[str, ...] = ()
    live: dict[str, Any] | None = None
    if live_config_unjudged(daemon_json, daemon_json_path, keep_invalid_utf8=keep_invalid_utf8) is None:
        wanted = expected_insecure(daemon_json, flags, keep_invalid_utf8=keep_invalid_utf8)
        live = _wait_for_files_config(transport, policy, wanted, options, info, reloaded_at)
        proved.append("live config")
        if not policy.insecure:
            covered, notes = _covered_by_cidrs(transport, policy, live, options, addresses)
    if options.canary_image:
        canary = _canary(transport, options, options.canary_image, policy.registries)
        if not policy.insecure:  # a pull dockerd made without verifying TLS proves no CA file
            seen = live if live is not None else _live_info_or_none(transport, options)
            why = tls_unchecked(options.canary_image, seen, covered)
            canary = canary if why is None else tls_unchecked_pull(options.canary_image, why)
        proved.append(canary.said)
        # A pull that fetched no blob proves nothing of the storage CA: said where CI reads warnings.
        notes = notes if canary.unproved is None else (*notes, canary.unproved)
    return _Verified(tuple(proved), tuple(covered.values()), notes)


def _covered_by_cidrs(
    transport: Transport,
    policy: TrustPolicy,
    info: dict[str, Any],
    options: RunOptions,
    addresses: Mapping[str, Sequence[str]] | None = None,
) -> tuple[dict[str, str], tuple[str, ...]]:
    """The policy's registries the engine does not verify because one of its insecure ranges covers
    their address (:func:`ranges_covering`); in the ``verify`` command, a name resolving to loopback
    fails the host too. With ``addresses`` (the apply printed them), judged from those, loopback
    included, with no round trip more. Each covered registry → why."""
    if addresses is not None:
        return covered_registries(info, policy.registries, addresses), ()
    return ranges_covering(
        transport,
        info,
        policy.registries,
        loopback_too=options.dry_run and options.verify,
        timeout=options.verify_timeout,
    )


def _wait_for_files_config(
    transport: Transport,
    policy: TrustPolicy,
    wanted: frozenset[str],
    options: RunOptions,
    info: dict[str, Any] | None,
    reloaded_at: float | None,
) -> dict[str, Any]:
    """Return the engine's /info once its live registry config lists as insecure just ``wanted`` (what
    daemon.json and dockerd's flags ask for)."""
    if info is None or mismatches(info, policy.registries, wanted):
        return wait_for_live_config(
            lambda: read_live_info(transport, options.verify_timeout),
            policy.registries,
            wanted,
            timeout=options.verify_timeout,
            refused=None if reloaded_at is None else refusal_since(transport, reloaded_at),
        )
    return info


def _warned(base: HostOutcome, warning: str | None) -> HostOutcome:
    return base if warning is None else replace(base, warnings=(*base.warnings, warning))


def _canary(transport: Transport, options: RunOptions, image: str, registries: Sequence[str]) -> CanaryPull:
    """The canary pull through the engine's API, with the run's credentials, its client closed after."""
    auth = RUN_CREDENTIALS.of(options.backup_stamp, image)
    api = transport.docker_api(timeout=options.verify_timeout)
    try:
        return canary_pull(api, image, registries, auth)
    finally:
        close = getattr(api, "close", None)
        if close is not None:
            close()


def _credentials_refused(options: RunOptions) -> str | None:
    """Why this host is left untouched where its canary pull could not be made: the canary registry's
    credentials cannot be read on this machine; None where they can, or there is no canary."""
    try:
        read_canary_credentials(options)
    except CanaryCredentialsError as exc:
        return f"{exc}; nothing was changed on this host"
    return None


def _roll_back(
    transport: Transport,
    plan: HostPlan,
    facts: DockerFacts,
    options: RunOptions,
    base: HostOutcome,
    timeline: _Timeline,
    cause: BaseException,
) -> HostOutcome:
    if not plan.changed:  # dockerd was only asked to load the file it has: no file to put back
        return _done(base, timeline, "failed", error=str(cause))
    undo = inverse(plan)
    action = plan.engine_action if facts.init is not None and facts.engine_running else "none"
    # The host's lock lasted the apply's script alone: the roll-back's, under the lock again (waited
    # for, where another run holds it), puts back only files that still hold what this run wrote, or
    # nothing (another run's change stands).
    script = build_apply_script(
        undo,
        engine_action=action,
        init=facts.init,
        daemon_json_path=facts.daemon_json_file,
        daemon_json_link=_link_of(facts),
        rolling_back=True,
        backup_stamp=options.backup_stamp + "-rollback",
        lock_wait=rollback_lock_wait(options.command_timeout),
        local=_is_local(transport),
    )

    def run_undo() -> CommandResult:
        return transport.run_script(script, options.root, timeout=options.command_timeout)

    try:
        result: CommandResult = timeline.run("rollback", run_undo)
    except TrustAgentError as exc:
        # The roll-back's script did not say how it ended: the apply's files may stand, all or in part.
        error = f"{cause}; roll-back failed too: {exc}"
        return _done(base, timeline, "failed", error=error, changes_unknown=True)
    if result.exit_status in (EXIT_BUSY, EXIT_CHANGED):
        left = f"{script_error(result.stderr)}; not rolled back: the host is left as it is"
        return _done(base, timeline, "failed", error=f"{cause}; {left}")
    if not result.ok and result.exit_status != EXIT_ACTION:
        stderr = result.stderr.decode("utf-8", "replace").strip()
        return _done(base, timeline, "failed", error=f"{cause}; roll-back failed too: {stderr}")
    if not result.ok and action == "restart" and active_after_failed_restart(result.stdout):
        # systemd refused the restart job (a masked unit, RefuseManualStop=): nothing was stopped, and
        # dockerd runs what it ran before the apply.
        refused = script_error(result.stderr)
        said = "" if refused.removesuffix(".") in str(cause) else f": {refused}"
        return _done(
            base,
            timeline,
            "rolled_back",
            error=f"{cause}; rolled back (files restored; the restart was refused again{said}; "
            "dockerd kept running, on the configuration it had before)",
        )
    if not result.ok and action == "restart":
        # The previous files are back, but dockerd did not start on them either: the host is down, not
        # rolled back (a daemon.json someone changed since dockerd last started, never loaded before).
        return _done(
            base,
            timeline,
            "failed",
            error=f"{cause}; files restored, but dockerd did not start on them either{_said(result)}: "
            "dockerd is down (see systemctl status docker)",
        )
    note = "" if result.ok else restore_not_taken(action, cause, script_error(result.stderr), _said(result))
    if result.ok and isinstance(cause, CanaryError) and cause.removed and options.canary_image:
        # The canary is pulled back with the previous trust: the error says where it ends up.
        back = _canary_back(transport, options, options.canary_image)
        return _done(base, timeline, "rolled_back", error=f"{cause.pull_error}; rolled back{back}")
    return _done(base, timeline, "rolled_back", error=f"{cause}; rolled back{note}")


def restore_not_taken(action: str, cause: BaseException, refused: str, said: str) -> str:
    """The roll-back's note where its files went back but its reload or restart failed (``refused``:
    its script's error; ``said``: the unit's journal). A reload that failed in the apply too was never
    done (systemd refused the job): dockerd runs what it ran before, and took no restore to refuse.

    >>> restore_not_taken("reload", ReloadError("reload of dockerd failed: Job type reload is not applicable"),
    ...                   "reload of dockerd failed: Job type reload is not applicable", "")
    ' (files restored; the reload failed again: dockerd was never reloaded, and runs the configuration it had before)'
    """
    if action == "reload" and isinstance(cause, ReloadError):
        again = "" if refused.removesuffix(".") in str(cause) else f" ({refused})"
        return (
            f" (files restored; the reload failed again{again}: dockerd was never reloaded, and runs "
            "the configuration it had before)"
        )
    return f" (files restored; dockerd did not take the restore either{said})"


def rollback_lock_wait(command_timeout: float) -> int:
    """Seconds a roll-back waits for the host's lock: :data:`ROLLBACK_LOCK_WAIT`, or a quarter of
    ``command_timeout`` where that is shorter, so the roll-back's own reload or restart still fits in
    the time its script is given (at least 1 s)."""
    return max(1, int(min(ROLLBACK_LOCK_WAIT, command_timeout / 4)))


def _canary_back(transport: Transport, options: RunOptions, image: str) -> str:
    """The canary was removed for a pull that failed: with the previous trust back, pull it again, so
    the host holds what it held (the pull that now works also says the previous trust still does)."""
    try:
        _canary(transport, options, image, (image_registry(image),))
    except CanaryError as exc:
        return (
            f"; {image}, removed for the canary pull, could not be pulled back ({exc.pull_error}): "
            f"it is no longer on this host"
        )
    except TrustAgentError as exc:
        return f"; {image}, removed for the canary pull, could not be pulled back ({exc})"
    return f"; {image}, removed for the canary pull, pulled back"


def engine_down(facts: DockerFacts) -> str | None:
    """Why the engine's live config cannot be read, where dockerd is not running on an init host."""
    if facts.init is None or facts.engine_running or facts.engine_elsewhere:
        return None
    state = f"docker.service {facts.engine_unit_state}" if facts.engine_unit_state else "no dockerd found"
    return f"dockerd is not running ({state}): its live config was not read"


def _done(
    base: HostOutcome,
    timeline: _Timeline,
    status: Status,
    *,
    error: str | None = None,
    engine_action: Any = None,
    verified: tuple[str, ...] = (),
    changes_unknown: bool = False,
) -> HostOutcome:
    return HostOutcome(
        host=base.host,
        status=status,
        plan=base.plan,
        engine_action=base.engine_action if engine_action is None else engine_action,
        engine_version=base.engine_version,
        checks=base.checks,
        verified=verified,
        error=error,
        warnings=base.warnings,
        phases=tuple(timeline.phases),
        changes_unknown=changes_unknown,
    )
