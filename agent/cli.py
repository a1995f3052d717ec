"""The ``trust-agent`` command line: a thin layer over the library.

Exit codes, in one place: 0 success (every host converged / nothing to change), 1 some host failed
or was unreachable, 2 bad input (nothing touched anywhere). ``plan --detailed-exitcode``: 0 nothing to
change, 2 changes pending, 1 error.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from agent import __version__
from agent.cli_options import (
    engine_options,
    exit_codes,
    handle_errors,
    inventory_options,
    policy_inputs,
    policy_options,
    resolve_option,
    ssh_options,
    stack,
)
from agent.early_connect import EarlyConnections
from agent.engine.options import RunOptions
from agent.errors import InputError, UsageError
from agent.fleet import FleetOptions, batches, run_fleet
from agent.host_pool import (
    EarlyInterrupt,
    EarlyInterrupts,
    StoppedAtOnce,
    end_as_interrupted,
)
from agent.hosts.engine_http import load_parser
from agent.hosts.local import LocalTransport
from agent.inputs import PolicyInputs, read_settings, resolve_policy
from agent.run_report import FORMATS, Known, Mode, Report, Targets

if TYPE_CHECKING:
    from agent.handshake import BackgroundHandshakes, RolloutChecks
    from agent.outcome import FleetResult, HostOutcome
    from agent.trust import TrustPolicy

F = TypeVar("F", bound=Callable[..., Any])


def _target_options(func: F) -> F:
    """Where to act: this machine (or a tree), or the hosts of an inventory."""
    return stack([*_local_options(), inventory_options()])(func)


def _local_target_options(func: F) -> F:
    """Where ``apply`` acts: this machine or a tree. -i/-l are taken (unlisted) only to say: use rollout."""
    return stack([*_local_options(), inventory_options(hidden=True)])(func)


def _local_options() -> list[Callable[[F], F]]:
    return [
        click.option("--local", is_flag=True, help="Act on this machine (as root)."),
        click.option(
            "--root",
            type=click.Path(file_okay=False),
            metavar="DIR",
            help="With --local: act on a directory tree instead of / (image baking, tests). No engine "
            "is touched; changes take effect when dockerd starts.",
        ),
    ]


def _report_options(func: F) -> F:
    options = [
        click.option(
            "--format",
            "fmt",
            type=click.Choice(FORMATS),
            help="Report format (default: from the -o/--report suffix, else text).",
        ),
        click.option(
            "-o",
            "--report",
            "report",
            multiple=True,
            type=click.Path(dir_okay=False, writable=True),
            callback=_writable_reports,
            metavar="FILE",
            help="Write the report to FILE (.json, .md, .html, .xml → that format; .txt, .log or no "
            "suffix → text; any other suffix needs --format). Repeat it to write several formats of "
            "the one run (-o report.xml -o report.html), each named by its suffix.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _writable_reports(ctx: click.Context, param: click.Parameter, value: Sequence[str]) -> tuple[str, ...]:
    """Refuse a report file that cannot be written before any host is touched, not after the run."""
    for path in value:
        _writable_report(ctx, param, path)
    return tuple(value)


def _writable_report(ctx: click.Context, param: click.Parameter, value: str) -> None:
    parent = Path(os.path.realpath(value)).parent  # a link's target's directory is where it is written
    if parent.exists() and not parent.is_dir():
        raise click.BadParameter(f"{value}: {parent} is not a directory", ctx, param)
    if not parent.is_dir():
        raise click.BadParameter(f"{value}: the directory {parent} does not exist", ctx, param)
    if not os.path.exists(value) and not os.access(parent, os.W_OK | os.X_OK):
        raise click.BadParameter(f"{value}: the directory {parent} is not writable", ctx, param)


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _LAZY_COMMANDS:
            module, attribute = _LAZY_COMMANDS[cmd_name]
            command: click.Command = getattr(importlib.import_module(module), attribute)
            return command
        return super().get_command(ctx, cmd_name)


_BAD_INPUT = "2    bad input (source, CA file, inventory or option): nothing was touched on any host"
# Before any host started, a SIGTERM ends the process as SIGTERM does (host_pool.end_as_interrupted).
_INTERRUPTED = "130  interrupted (Ctrl-C; a SIGTERM before any host started ends it as SIGTERM: 143)"
_INTERRUPTED_HOSTLESS = "130  interrupted by Ctrl-C (a SIGTERM ends it as SIGTERM: 143)"


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
    epilog=exit_codes(
        "0    success: every host converged, or there was nothing to change",
        "1    some host failed or was unreachable (verify: also drift, or a TLS check from here that "
        "failed or could not connect; rollout: a TLS check from here found a certificate the hosts do "
        "not trust)",
        _BAD_INPUT,
        _INTERRUPTED,
        "Each command's --help says what its own codes mean (plan --detailed-exitcode differs).",
    ),
)
@click.version_option(__version__, prog_name="trust-agent")
def cli() -> None:
    """Make Docker engines trust a private registry whose blobs live on S3-compatible storage.

    A registry with S3 storage redirects every pull and push to the storage host. dockerd follows that
    redirect with the registry's TLS settings, so the storage CA must be installed in the *registry's*
    certs.d directory (or the registry listed in insecure-registries when storage skips TLS checks).

    \b
    Typical use:
      trust-agent show-source config.yml
      trust-agent plan    --source config.yml --storage-ca s3-ca.pem --registry-ca reg-ca.pem -i hosts.ini
      trust-agent rollout --source config.yml --storage-ca s3-ca.pem --registry-ca reg-ca.pem -i hosts.ini \\
                          --report out.html
      trust-agent verify  --source config.yml --storage-ca s3-ca.pem --registry-ca reg-ca.pem -i hosts.ini
    """


@cli.command(
    "show-source",
    epilog=exit_codes(
        "0    the settings were printed",
        "2    no source, or one that could not be read or understood",
        _INTERRUPTED_HOSTLESS,
    ),
)
@click.argument("source", required=False)
@click.option(
    "--source",
    "source_option",
    metavar="SOURCE",
    help="The same as the SOURCE argument, as every other command takes it.",
)
@click.option("--env-overrides", is_flag=True, help="Apply REGISTRY_* environment variables.")
@click.option("--source-ca", type=click.Path(dir_okay=False), help="CA bundle for a live DTR API.")
@handle_errors
def show_source(
    source: str | None, source_option: str | None, env_overrides: bool, source_ca: str | None
) -> None:
    """Print the storage settings as understood from SOURCE (secrets redacted), as JSON."""
    if source is None and source_option is None:
        raise UsageError("give a source: trust-agent show-source SOURCE (or --source SOURCE)")
    if source is not None and source_option is not None:
        raise UsageError("give the source once: trust-agent show-source SOURCE (or --source SOURCE)")
    chosen = source or source_option
    assert chosen is not None
    settings = read_settings(PolicyInputs(source=chosen, env_overrides=env_overrides, source_ca=source_ca))
    click.echo(json.dumps(settings.redacted(), indent=2))


@cli.command(
    "policy",
    epilog=exit_codes(
        "0    the policy was printed",
        "2    bad input (source, CA file, --registry, or an option policy does not take)",
        _INTERRUPTED_HOSTLESS,
    ),
)
@policy_options()
@inventory_options(hidden=True)
@handle_errors
def policy_command(**kwargs: Any) -> None:
    """Print what every engine must trust, and why, as JSON (no host is contacted)."""
    inventory, limit = kwargs.pop("inventory"), kwargs.pop("limit")
    if inventory or limit:
        raise UsageError(
            "policy contacts no host, so it takes no -i/--limit: it prints what every engine must trust; "
            "plan -i INV shows what would change on each host"
        )
    _, policy = resolve_policy(policy_inputs(kwargs))
    click.echo(json.dumps(policy.as_dict(), indent=2))


@cli.command(
    epilog=exit_codes(
        "0    every host was planned (changes pending or not)",
        "1    some host failed or was unreachable",
        _BAD_INPUT,
        _INTERRUPTED,
        "With --detailed-exitcode: 0 nothing would change, 2 changes are pending, 1 any error "
        "(bad input included).",
    )
)
@policy_options()
@_target_options
@ssh_options()
@_report_options
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when nothing would change, 2 when changes are pending, 1 on any error (bad input "
    "included, which otherwise exits 2).",
)
@handle_errors
def plan(detailed_exitcode: bool, **kwargs: Any) -> None:
    """Show what would change on each host: unified diffs, the dockerd action, and why. Changes nothing."""
    try:
        result = _run("plan", kwargs, RunOptions(dry_run=True, verify=False))
    except InputError as exc:
        if detailed_exitcode:
            exc.exit_code = 1  # 2 means "changes pending" here: bad input exits 1, as any error does
        raise
    if detailed_exitcode:
        _exit(result, 1 if result.failed else 2 if result.pending else 0)
    _exit(result, 1 if result.failed else 0)


@cli.command(
    epilog=exit_codes(
        "0    this machine (or tree) holds the trust asked for: changed, or nothing to change",
        "1    the change failed (and was undone, or the error names what was left changed) or could not "
        "be verified",
        "2    bad input (source, CA file or option): nothing was touched",
        _INTERRUPTED,
    )
)
@policy_options()
@_local_target_options
@_report_options
@handle_errors
def apply(**kwargs: Any) -> None:
    """Apply the plan on this machine (--local) or a directory tree (--local --root DIR). Idempotent.

    Files are written atomically (temp file in the same directory, fsync, rename), daemon.json is backed
    up first, and a second run reports no change. For remote hosts use ``rollout``.
    """
    refusal = None
    if kwargs.get("inventory"):
        refusal = "apply acts on this machine (--local [--root DIR]); for an inventory's hosts use rollout"
    elif not kwargs.get("local"):
        refusal = "apply acts on this machine: give --local [--root DIR] (for remote hosts use rollout)"
    if refusal is not None:  # said in the report asked for too, not an earlier run's left in its place
        _report_for("apply", kwargs).stopped_short(Known().refused("apply", UsageError(refusal)))
        raise UsageError(refusal)
    result = _run("apply", kwargs, RunOptions())
    _exit(result, 1 if result.failed else 0)


def _rollout_options(func: F) -> F:
    return stack(
        [
            engine_options,
            click.option(
                "--dry-run", is_flag=True, help="Plan every host and change nothing (same as plan)."
            ),
            click.option(
                "--diff", is_flag=True, help="Print every host's diffs, not just the closing table."
            ),
            click.option(
                "--serial",
                metavar="N|P%",
                help="Batch size: hosts or a percentage per batch. As with Ansible's serial, a batch whose "
                "every host failed (unreachable included) starts no further batch.",
            ),
            click.option(
                "--max-fail-percentage",
                type=click.FloatRange(0, 100),
                help="Start no further batch once more than this percentage of a batch failed (a batch "
                "that failed entirely stops the run whatever this is).",
            ),
            click.option(
                "--no-tls-check",
                is_flag=True,
                help="Make no TLS handshake from this machine. For a controller that reaches the "
                "registry or storage by another route than the engines do (another DNS view, another "
                "certificate): its checks would judge the wrong endpoint (verify makes them unless given it too).",
            ),
        ]
    )(func)


@cli.command(
    epilog=exit_codes(
        "0    every host converged (or had nothing to change)",
        "1    some host failed, was unreachable, or was rolled back; or a TLS check from here found a "
        "certificate the hosts do not trust (their pulls will fail)",
        _BAD_INPUT,
        _INTERRUPTED + "; hosts not started yet are skipped",
    )
)
@policy_options()
@_target_options
@ssh_options()
@_rollout_options
@_report_options
@resolve_option
@handle_errors
def rollout(resolve: tuple[str, ...], **kwargs: Any) -> None:
    """Bring every host of an inventory to the trust the registry needs, in parallel, and prove it.

    Per host: one SSH connection; facts in one round trip; the plan; an atomic write under a host lock;
    the least dockerd action (nothing for certs.d, reload for insecure-registries); the live config read
    back through the docker API; and a roll-back to the exact previous files if anything fails.

    While the hosts work, this machine makes the TLS handshakes verify makes, with the CAs the hosts
    get: a certificate they do not trust exits 1 (certs.d files do not show in the live config); a
    check that cannot connect from here is only a warning (use --resolve where the names are unknown,
    --no-tls-check where this machine reaches them by another route than the engines).
    """
    from agent.handshake import parse_resolve

    dry_run = kwargs.pop("dry_run")
    tls_check = not kwargs.pop("no_tls_check")
    addresses = parse_resolve(resolve)  # refused before anything is read or touched
    options = RunOptions(
        dry_run=dry_run,
        restart_policy=kwargs.pop("restart_policy"),
        allow_restart=kwargs.pop("allow_restart"),
        canary_image=kwargs.pop("canary_image"),
        verify=not kwargs.pop("no_verify"),
        command_timeout=kwargs["command_timeout"],
    )
    fleet = FleetOptions(
        forks=kwargs["forks"],
        serial=kwargs.pop("serial"),
        max_fail_percentage=kwargs.pop("max_fail_percentage"),
    )
    # A dry run changes nothing, so it has no change to prove.
    checks = (
        None
        if dry_run or not tls_check
        else _TlsChecks(addresses, min(options.command_timeout, _TLS_TIMEOUT))
    )
    result = _run("plan" if dry_run else "rollout", kwargs, options, fleet, checks)
    _exit(result, 1 if result.failed or (checks is not None and not checks.ok) else 0)


# The longest a TLS check from here may take to connect, and that a rollout waits for the checks
# after its hosts are done: the controller may not reach the registry at all.
_TLS_TIMEOUT = 5.0


@dataclasses.dataclass
class _TlsChecks:
    """rollout's TLS checks from this machine: started with the fleet, judged once it is done."""

    resolve: dict[str, str]
    timeout: float
    judged: RolloutChecks | None = None
    running: BackgroundHandshakes | None = None
    interrupted: bool = False  # by Ctrl-C while the run waited for them, every host done

    def start(self, policy: TrustPolicy) -> None:
        from agent.handshake import BackgroundHandshakes

        self.running = BackgroundHandshakes(policy, self.timeout, self.resolve)

    def finish(self, *, wait: bool = True) -> RolloutChecks:
        """The checks judged, each said once on stderr as verify says them, just before the closing table
        (which leaves them out): a check a note is about is said in its note alone. The notes are the
        run's warnings too, in every report. An interrupted run (``wait`` False) waits for none."""
        from agent.handshake import FAILED_CHECK_SUFFIX, judged_for_rollout

        assert self.running is not None, "finish() before start()"
        try:
            report = self.running.report(wait=wait)
        except KeyboardInterrupt:  # Ctrl-C while waiting for them: the run's report is still written
            self.interrupted = True
            report = self.running.report(wait=False)
        self.judged = judged_for_rollout(report)
        for line in self.judged.lines:
            if line in self.judged.failed:  # as verify says it, and as the reports hold it
                click.echo(line + FAILED_CHECK_SUFFIX, err=True)
            elif not _said_in_a_note(line, self.judged.notes):
                click.echo(line, err=True)
        for note in self.judged.notes:
            click.echo(f"warning: {note}", err=True)
        return self.judged

    @property
    def ok(self) -> bool:
        return self.judged is None or self.judged.ok


def _said_in_a_note(line: str, notes: Sequence[str]) -> bool:
    """Whether a note begins with the check ``line`` whole (``tls x: cannot connect: …: not checked from
    this machine``), and so says it."""
    return any(note.startswith(f"{line}: ") for note in notes)


@cli.command(
    epilog=exit_codes(
        "0    every host holds the policy, and every TLS check from here passed (or --no-tls-check)",
        "1    drift on some host, a host failed or was unreachable, or a TLS check from here failed or "
        "could not connect (give --resolve, or --no-tls-check where this machine cannot reach them)",
        _BAD_INPUT,
        _INTERRUPTED,
    )
)
@policy_options()
@_target_options
@ssh_options()
@_report_options
@resolve_option
@click.option(
    "--no-tls-check",
    is_flag=True,
    help="Make no TLS handshake from this machine: judge the hosts alone. For a machine that cannot "
    "reach the registry or storage, or reaches them by another route than the engines.",
)
@handle_errors
def verify(resolve: tuple[str, ...], no_tls_check: bool, **kwargs: Any) -> None:
    """Read-only drift check of every host against the policy, plus TLS handshakes from here to the
    registry and the storage endpoint with the CA bundle the hosts get. Exit 1 on any drift, and on a
    handshake that fails from here (use --resolve where this machine does not know the names).

    Per host: the files the policy asks for (a host that would change is drift, shown as pending), and
    the engine's live registry config read through the docker API.
    """
    from agent.handshake import FAILED_CHECK_SUFFIX, HandshakeReport, handshake_report, parse_resolve

    addresses = parse_resolve(resolve)
    options = RunOptions(dry_run=True, verify=True, command_timeout=kwargs["command_timeout"])
    fleet = FleetOptions(forks=kwargs["forks"])
    report = _report_for("verify", kwargs)
    known = Known()
    with report.on_early_stop("verify", known):
        targets = known.hosts(_targets(kwargs))
        with _connect_early(targets, fleet) as early:
            _, known.policy = resolve_policy(policy_inputs(kwargs))
            checks = (
                HandshakeReport(True, (), ())
                if no_tls_check
                else handshake_report(known.policy, resolve=addresses)
            )
            # A failed check is said with why it fails the run (a check from here is not drift); the
            # closing table leaves out what was said here.
            said = [line if _check_passed(line) else line + FAILED_CHECK_SUFFIX for line in checks.lines]
            for line in said:
                click.echo(line, err=True)
            failed_checks = tuple(line for line in said if line.endswith(FAILED_CHECK_SUFFIX))
            for warning in checks.warnings:
                click.echo(f"warning: {warning}", err=True)
            notes = (*failed_checks, *checks.warnings)  # an unused --resolve entry is reported, not failed
            result = _run_with_policy(
                "verify", kwargs, options, fleet, known.policy, targets, early, report, notes, checks.lines
            )
    drift = [o for o in result.outcomes if o.status not in ("unchanged",)]
    _exit(result, 1 if drift or not checks.ok else 0)


def _check_passed(line: str) -> bool:
    """Whether a TLS check line from here says it passed (or was skipped as asked)."""
    return line.endswith(": ok") or line.startswith("tls: skipped")


def _exit(result: FleetResult, code: int) -> NoReturn:
    """Exit with ``code``; 130, as shells report Ctrl-C, where the run was interrupted."""
    sys.exit(130 if result.interrupted else code)


def _run(
    mode: Mode,
    kwargs: dict[str, Any],
    options: RunOptions,
    fleet: FleetOptions | None = None,
    checks: _TlsChecks | None = None,
) -> FleetResult:
    fleet = fleet or FleetOptions(forks=kwargs.get("forks", 50))
    report = _report_for(mode, kwargs)
    known = Known()
    with report.on_early_stop(mode, known):
        targets = known.hosts(_targets(kwargs))
        with _connect_early(targets, fleet) as early:
            _, known.policy = resolve_policy(policy_inputs(kwargs))
            if options.canary_image:
                from agent.trust import canary_under_policy

                canary_under_policy(options.canary_image, known.policy.registries)
                from agent.engine.canary_auth import read_canary_credentials

                # Read before any host is touched (the first batch's; a later batch reads them again):
                # a credential helper that is not there refuses the run, where every host would be
                # changed and rolled back.
                read_canary_credentials(options)
            return _run_with_policy(
                mode, kwargs, options, fleet, known.policy, targets, early, report, checks=checks
            )


def _report_for(mode: Mode, kwargs: dict[str, Any]) -> Report:
    """The report asked for, settled before anything is read: a bad -o name is refused first, and an
    interrupt that comes before the hosts still has a report to write."""
    diff = mode in ("plan", "verify") or kwargs.get("diff", True)
    try:
        return Report.of(kwargs.get("fmt"), kwargs.get("report"), diff=diff)
    except UsageError as error:
        Report.by_suffix(kwargs.get("report")).stopped_short(Known().refused(mode, error))
        raise


def _connect_early(targets: Targets, fleet: FleetOptions) -> EarlyConnections:
    """Start connecting the first hosts while the policy is read (``agent.early_connect``): the inventory
    is read and good by now; a bad source or CA file closes the connections unused."""
    names, opener = targets
    early = EarlyConnections.start(batches(names, fleet.serial)[0][: fleet.forks], opener)
    load_parser()  # the engine's answers' parser, while those connections open
    return early


def _run_with_policy(
    mode: Mode,
    kwargs: dict[str, Any],
    options: RunOptions,
    fleet: FleetOptions,
    policy: Any,
    targets: Targets,
    early: EarlyConnections,
    report: Report,
    notes: tuple[str, ...] = (),
    tls_checks: tuple[str, ...] = (),
    checks: _TlsChecks | None = None,
) -> FleetResult:
    names, opener = targets
    root = kwargs.get("root")
    if root:
        options = RunOptions(**{**options.__dict__, "root": str(Path(root).resolve())})
    from agent.progress import Progress

    threading.Thread(target=report.load, name="report-imports", daemon=True).start()
    progress = Progress(len(names), enabled=mode != "plan" or len(names) > 1)
    finished: dict[str, HostOutcome] = {}  # for the report of a run a second interrupt stops at once

    def done(outcome: HostOutcome) -> None:
        finished[outcome.host] = outcome
        progress.done(outcome)  # type: ignore[arg-type]

    started = Known()
    if checks is not None:
        checks.start(policy)
    try:
        result = run_fleet(
            names,
            opener,
            policy,
            options,
            fleet,
            mode=mode,
            on_start=progress.start,
            on_done=done,
            on_interrupt_left=progress.interrupted,
            early=early,
        )
    except StoppedAtOnce as stop:
        report.stopped_short(started.stopped_at_once(mode, policy, names, stop, dict(finished)))
        raise
    progress.close()
    if checks is not None:
        notes, tls_checks = _with_rollout_checks(checks.finish(wait=not result.interrupted), notes)
        if checks.interrupted:
            result = dataclasses.replace(result, interrupted=True, stopped=CHECKS_INTERRUPTED)
    if notes or tls_checks:
        result = dataclasses.replace(result, warnings=result.warnings + notes, tls_checks=tls_checks)
    report.emit(result, said=notes)  # each said on stderr already: the closing table leaves them out
    return result


CHECKS_INTERRUPTED = "interrupted while waiting for the TLS checks from this machine: every host had finished"


def _with_rollout_checks(
    judged: RolloutChecks, notes: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The run's notes and TLS checks with rollout's: each failed check marked as verify marks it, so
    every report lists it failed (JUnit: a failing case)."""
    from agent.handshake import FAILED_CHECK_SUFFIX

    failed = tuple(line + FAILED_CHECK_SUFFIX for line in judged.failed)
    return (*notes, *failed, *judged.notes), judged.lines


def _refuse_control_characters(root: str) -> None:
    """A --root path (as given, or where its links lead) with a newline or another control character is
    refused: the apply script checks files by ``sha256sum -c``, which escapes such names, and would
    fail every run with "changed since facts were gathered"."""
    for path in dict.fromkeys((root, str(Path(root).resolve()))):
        bad = next((c for c in path if ord(c) < 0x20 or ord(c) == 0x7F), None)
        if bad is not None:
            leads = "" if path == root else f" (it leads to {path!r})"
            raise UsageError(
                f"--root {root!r}{leads}: a path with a control character ({bad!r}) is not taken; "
                "rename the directory"
            )


def _targets(kwargs: dict[str, Any]) -> Targets:
    local, root, inventory = kwargs.get("local"), kwargs.get("root"), kwargs.get("inventory")
    if root and not local:
        raise UsageError("--root goes with --local")
    if local and inventory:
        raise UsageError("give either --local or --inventory, not both")
    if local and kwargs.get("limit"):
        raise UsageError("--limit picks an inventory's hosts: it has nothing to pick with --local")
    if local:
        if root:
            _refuse_control_characters(root)
        if root and not Path(root).is_dir():
            raise UsageError(f"--root {root}: not a directory")
        if root and Path(root).resolve() == Path("/"):
            # As a tree, the live system would get its files with dockerd left unreloaded.
            raise UsageError("--root /: that is this machine itself: use --local alone (it reloads dockerd)")
        name = str(Path(root).resolve()) if root else "localhost"
        return [name], lambda n: LocalTransport(n)
    if not inventory:
        raise UsageError("say where to act: --inventory INV (over SSH) or --local [--root DIR]")
    from agent.ssh_targets import open_ssh_targets

    return open_ssh_targets(kwargs)


# Commands defined elsewhere, imported only when used (the daemon's modules cost start-up time).
_LAZY_COMMANDS = {
    "daemon": ("agent.daemon.cli", "daemon_group"),
    "inventory": ("agent.inventory_cli", "inventory_command"),
}


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = list(argv) if argv is not None else sys.argv[1:]
    # Until the host pool takes over, an interrupt says that no host was touched (not a silent 143).
    early = EarlyInterrupts(_command_of(args)).install()
    try:
        code = cli.main(args=args, prog_name="trust-agent", standalone_mode=False)
    except SystemExit as exc:
        code = exc.code
    except click.ClickException as exc:
        code = _usage_error(exc, args)
        if code:
            _report_refused(exc, args)
        _exit_now(code)
    except (click.Abort, KeyboardInterrupt) as exc:
        interrupt = exc if isinstance(exc, KeyboardInterrupt) else exc.__context__
        if isinstance(interrupt, EarlyInterrupt):  # said when it came
            _flush()
            end_as_interrupted(interrupt.signum)
        if isinstance(interrupt, StoppedAtOnce):
            click.echo("\n".join(interrupt.lines()), err=True)
            _exit_now(130)
        # Ctrl-C exits as shells report it.
        click.echo("Aborted!", err=True)
        _exit_now(130 if isinstance(interrupt, KeyboardInterrupt) else 1)
    except InputError as exc:  # pragma: no cover - commands map their own errors
        click.echo(f"trust-agent: error: {exc}", err=True)
        _exit_now(2)
    if early.signum is not None:  # one that came inside an import, where it was not raised: the run
        _flush()  # stopped before any host started, and ends as the interrupt ends it
        end_as_interrupted(early.signum)
    _exit_now(code if isinstance(code, int) else 0)


def _command_of(args: Sequence[str]) -> str:
    """The command's words as typed (``rollout``, ``daemon install``), for messages."""
    words = [a for a in args if not a.startswith("-")][:2]
    return " ".join(words if words[:1] == ["daemon"] else words[:1]) or "(no command)"


def _usage_error(exc: click.ClickException, args: list[str]) -> int:
    """A command-line mistake as one line, like every other bad input, with where to read more."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):  # `trust-agent` alone: the help, asked for
        click.echo(exc.format_message())
        return 0
    context = getattr(exc, "ctx", None)
    hint = f" (see {context.command_path} --help)" if context is not None else ""
    click.echo(f"trust-agent: error: {exc.format_message()}{hint}", err=True)
    # plan --detailed-exitcode keeps 2 for "changes pending": an error there is 1. Only plan's: another
    # command given it has a usage error like any other.
    detailed = _command_of(args) == "plan" and "--detailed-exitcode" in args
    return 1 if detailed else exc.exit_code


# The commands that write a report (-o), each with the mode its report is of.
_REPORTING: dict[str, Mode] = {"plan": "plan", "rollout": "rollout", "verify": "verify", "apply": "apply"}


def _report_refused(exc: click.ClickException, args: Sequence[str]) -> None:
    """click refused the command line (an option out of range, unknown or missing its value): each
    report it names says that input was refused, as for any other bad input, where the command and
    its -o files can be read from ``args``; else nothing is written."""
    if (named := _report_named(args)) is not None:
        mode, report = named
        report.stopped_short(Known().refused(mode, UsageError(exc.format_message())))


def report_interrupted_start(args: Sequence[str], signum: int) -> None:
    """An interrupt that came while the CLI was being imported (``agent.entry``): said as one that
    comes a moment later is, and each report the command line names (-o) says so."""
    os.write(2, EarlyInterrupts(_command_of(args)).message(signum).encode())
    if (named := _report_named(args)) is not None:
        mode, report = named
        report.stopped_short(Known().interrupted(mode, signum))


def _report_named(args: Sequence[str]) -> tuple[Mode, Report] | None:
    """The mode and the report of a command line not run (refused, or interrupted while starting);
    None where it names no report or cannot be read (an odd command line: nothing is written)."""
    try:
        named = _reports_named(args)
    except Exception:
        return None
    if named is None:
        return None
    mode, fmt, paths = named
    try:
        return mode, Report.of(fmt, paths, diff=True)
    except UsageError:  # --format with several files, or an unknown suffix: each file by its suffix
        return mode, Report.by_suffix(paths)


def _reports_named(args: Sequence[str]) -> tuple[Mode, str | None, tuple[str, ...]] | None:
    """The mode, --format and -o files a command line gives, read as click reads them but with no
    value checked (the command line was refused): None where the command writes no report."""
    words = list(args)
    at = next((i for i, word in enumerate(words) if not word.startswith("-")), None)
    # Only the group's flags (--help, --version) come before the command's name.
    if at is None or words[at] not in _REPORTING:
        return None
    command = cli.commands[words[at]]
    context = command.make_context(
        words[at], words[at + 1 :], resilient_parsing=True, ignore_unknown_options=True
    )
    params = context.params
    mode = "plan" if params.get("dry_run") else _REPORTING[words[at]]
    # A value that reads as an option (`-o -o`, `-o --forks`) is more likely a slip than a file's name:
    # nothing is written there for a command line that was not run.
    paths = tuple(path for path in params.get("report") or () if not path.startswith("-"))
    return mode, params.get("fmt"), paths


def _exit_now(code: object) -> NoReturn:
    """End the process without the interpreter's teardown, which frees every module one by one (about
    0.1 s after a fleet run, all of it serial). Safe here: every file a command writes is closed when it
    returns, connections are closed, and the worker threads are joined; stdout and stderr are flushed."""
    status = code if isinstance(code, int) else 0 if code is None else 1
    if not isinstance(code, int) and code is not None:
        print(code, file=sys.stderr)
    if not _flush():
        status = status or 120  # a closed pipe: report it as Python would
    os._exit(status)


def _flush() -> bool:
    """Flush stdout and stderr; False where one could not be (a closed pipe)."""
    flushed = True
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            flushed = False
    return flushed


if __name__ == "__main__":
    main()
