"""``trust-agent daemon``: run the per-host daemon, print its systemd unit, install it on hosts over SSH.

Registered on the main CLI as ``cli.add_command(daemon_group, "daemon")``. The policy, SSH and engine
options are the main CLI's (``agent.cli_options``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from agent.cli_options import (
    engine_options,
    exit_codes,
    handle_errors,
    inventory_options,
    policy_inputs,
    policy_options,
    ssh_options,
    stack,
)
from agent.daemon.config import load_config
from agent.daemon.files import STATE_DIR_MODE, prepare_state_dir, write_atomic
from agent.daemon.lock import hold_daemon_lock, unless_a_daemon_holds
from agent.daemon.logs import LEVELS, EventLog, stderr_at_error_priority, writes_to_journal
from agent.daemon.loop import Daemon, DaemonConfig, serve
from agent.daemon.notify import Notifier
from agent.daemon.report import (
    METRICS_FIRST_LINE,
    metrics_marked_down,
    read_status_file,
    stopped_document,
)
from agent.daemon.status import CANNOT_START, CRASHED, ENDED_UNANNOUNCED, DaemonStatus, a_process_error
from agent.daemon.timing import parse_duration, parse_interval, watchdog_seconds
from agent.daemon.unit import (
    DEFAULT_CONFIG,
    DEFAULT_ENV_FILE,
    DEFAULT_PREFIX,
    EXAMPLE_CONFIG,
    MARK_STOPPED,
    UnitOptions,
    hidden_from_the_service,
    render_unit,
)
from agent.daemon.watch import internal_error
from agent.engine.options import RunOptions
from agent.errors import TrustAgentError, UsageError
from agent.inputs import DTR_TOKEN_ENV, DTR_USER_ENV, PolicyInputs
from agent.names import registry_from_option

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_STATE_DIR = "/var/lib/trust-agent"
_SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
# `daemon run --once` on a host whose lock another run held: try again later (sysexits' EX_TEMPFAIL).
ONCE_BUSY_EXIT = 75


_INTERRUPTED = "130  interrupted (Ctrl-C; a SIGTERM before any host started ends it as SIGTERM: 143)"
RUN_EXIT_CODES = exit_codes(
    "0    stopped by SIGTERM or SIGINT, after the step in progress; --once: the host converged on a "
    "freshly read policy",
    "1    the daemon crashed (systemd restarts it); --once: the host is not converged, or the source "
    "could not be read",
    "2    bad configuration (an option, a --config file, a --root that is not a directory), or another "
    "daemon holds the state directory (its PID is named): nothing was touched",
    f"{ONCE_BUSY_EXIT}   --once: another trust-agent run held the host's lock and the host was left to it; "
    "try again later",
)
INSTALL_EXIT_CODES = exit_codes(
    "0    every host's daemon reported healthy on the controller's policy",
    "1    some host failed or was unreachable (one refused before anything was put on it, say, one "
    "whose daemon failed its first cycle and was stopped, or one not healthy within --wait)",
    "2    bad input (source, CA file, inventory or option): nothing was touched on any host",
    _INTERRUPTED,
)
UNINSTALL_EXIT_CODES = exit_codes(
    "0    the daemon is gone from every host (or was never there)",
    "1    some host failed or was unreachable",
    "2    bad input (inventory or option): nothing was touched on any host",
    _INTERRUPTED,
)
UNIT_EXIT_CODES = exit_codes("0    the unit (or the example config) was printed", "2    a bad option")


# How the daemon polls and logs: the same options for `daemon run` and the daemons `install` sets up.
polling_options = stack(
    [
        click.option(
            "--interval",
            default="60s",
            show_default=True,
            metavar="DURATION",
            help="How often to poll the source and repair drift (30s, 5m, 1h).",
        ),
        click.option(
            "--max-backoff",
            default="10m",
            show_default=True,
            metavar="DURATION",
            help="Longest wait between polls of a failing source.",
        ),
        click.option(
            "--jitter",
            type=click.FloatRange(0, 0.9),
            default=0.1,
            show_default=True,
            help="Shorten each poll interval by up to this fraction, so hosts do not poll together.",
        ),
    ]
)
log_level_option = click.option(
    "--log-level",
    type=click.Choice(list(LEVELS)),
    default="info",
    show_default=True,
    help="debug also logs every quiet cycle.",
)


def _apply_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    try:
        loaded = load_config(value)
    except TrustAgentError as exc:
        raise click.BadParameter(str(exc)) from None
    ctx.default_map = {**(ctx.default_map or {}), **loaded.defaults}
    ctx.meta["trust_agent.credentials"] = loaded.credentials


def _options(func: F) -> F:
    options = [
        click.option(
            "--config",
            type=click.Path(dir_okay=False),
            metavar="FILE",
            is_eager=True,
            expose_value=False,
            callback=_apply_config,
            help="Read options from a YAML file (keys are the long option names; dtr_user/dtr_token "
            "allowed in a 0600 file). Command-line options win.",
        ),
        policy_options(
            "The registry's storage settings: config.yml, harbor.yml, saved DTR JSON, or a live "
            f"DTR/MSR https:// URL (credentials from {DTR_USER_ENV}/{DTR_TOKEN_ENV} or the config file)."
        ),
        polling_options,
        click.option(
            "--once",
            is_flag=True,
            help="Run one cycle and exit (0 when the host is converged "
            f"on a freshly read policy, {ONCE_BUSY_EXIT} when another trust-agent run held the host's "
            "lock and the host was left to it, 1 otherwise: a source that could not be read is 1).",
        ),
        click.option(
            "--state-dir",
            metavar="DIR",
            help=f"Where the last good policy is kept (default: {DEFAULT_STATE_DIR}, under --root).",
        ),
        click.option("--status-file", metavar="FILE", help="JSON status (default: STATE_DIR/status.json)."),
        click.option(
            "--metrics-file",
            metavar="FILE",
            help="Prometheus textfile for node_exporter (e.g. …/textfile_collector/trust_agent.prom).",
        ),
        click.option(
            "--root",
            metavar="DIR",
            help="Keep a directory tree converged instead of / (no engine is touched).",
        ),
        engine_options,
        log_level_option,
        click.option(
            MARK_STOPPED,
            "mark_stopped",
            is_flag=True,
            hidden=True,
            help="(The unit's ExecStopPost=) mark the status and metrics stopped when no daemon runs.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group("daemon")
def daemon_group() -> None:
    """Run trust-agent on each engine host, keeping it converged locally (no SSH).

    \b
      trust-agent daemon run --source /etc/docker/registry/config.yml \
          --storage-ca s3-ca.pem --registry-ca reg-ca.pem
      trust-agent daemon run --config /etc/trust-agent/daemon.yml        # under systemd
      trust-agent daemon unit > /etc/systemd/system/trust-agent.service
      trust-agent daemon install -i hosts.ini --source config.yml \
          --storage-ca s3-ca.pem --registry-ca reg-ca.pem                  # over SSH
      trust-agent daemon uninstall -i hosts.ini [--purge]
    """


class _RunCommand(click.Command):
    """``daemon run``, ready for what goes wrong while its options are still being read (a --config
    that does not load, a --source it does not give): the error filed at error priority in the
    journal, and, for the unit's ExecStopPost= (--mark-stopped), said in the status file."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        stderr_at_error_priority(os.environ)
        marking_stopped = MARK_STOPPED in args  # before parsing, which consumes ``args``
        try:
            return super().parse_args(ctx, args)
        except click.ClickException as exc:
            if marking_stopped:  # no configuration to name a state directory: the unit's
                say_unstartable(Path(DEFAULT_STATE_DIR), None, exc.format_message(), os.environ)
            raise


@daemon_group.command("run", cls=_RunCommand, epilog=RUN_EXIT_CODES)
@_options
@handle_errors
def run_command(**kwargs: Any) -> None:
    """Poll the source, keep the last good policy, and reconcile this host every interval.

    A source fault (unreachable, HTTP error, a document that does not parse) never removes trust: the
    last good policy, kept in STATE_DIR, stays in force and the source is retried with back-off.
    JSON-lines logs on stdout. SIGHUP re-reads the source at once; SIGTERM finishes the current step
    and exits 0. Under systemd (Type=notify) it reports READY=1 after the first cycle and pings the
    watchdog.
    """
    credentials: dict[str, str] = click.get_current_context().meta.get("trust_agent.credentials", {})
    if kwargs["mark_stopped"]:
        mark_stopped(_config_or_say_why_not(kwargs), os.environ)
        return
    config = build_config(kwargs)
    environ = {**os.environ, **credentials}
    notifier = Notifier.from_environ(os.environ)
    # Children (sh, systemctl, dockerd --validate) need neither systemd's variables nor the token.
    for name in (*_SYSTEMD_VARIABLES, DTR_USER_ENV, DTR_TOKEN_ENV):
        os.environ.pop(name, None)
    log = EventLog(sys.stdout, level=kwargs["log_level"], journal=writes_to_journal(sys.stdout, os.environ))
    try:
        _prepare_state_dir(config, log)
    except UsageError as exc:  # the stop hook cannot tell this from a daemon that stopped: said here
        say_unstartable(config.state_dir, config.status_file, str(exc), os.environ)
        raise
    # Before anything is read or written: a second daemon must not touch the first one's state.
    with hold_daemon_lock(config.state_dir):
        status = run_daemon(config, environ=environ, notifier=notifier, log=log, once=kwargs["once"])
    if kwargs["once"]:
        sys.exit(once_exit_code(status))
    sys.exit(0 if status is not None else 1)


def once_exit_code(status: DaemonStatus | None) -> int:
    """``--once``: 0 converged on a freshly read policy; 75 (EX_TEMPFAIL) when only another run holding
    the host's lock kept it from a cycle, for a timer to try again later; 1 otherwise. A source that
    could not be read is 1 even on a busy host: trying again later does not mend it."""
    if status is None or status.source.state == "error":
        return 1
    if status.host_busy:
        return ONCE_BUSY_EXIT
    return 0 if status.healthy else 1


def mark_stopped(
    config: DaemonConfig, environ: Mapping[str, str], *, clock: Callable[[], float] = time.time
) -> bool:
    """Say "stopped" in the status file and the metrics for a daemon that ended without saying it (a
    SIGKILL, the OOM killer, the watchdog). A status that says stopped already is left as it is, unless
    it is how an earlier process ended and this one was killed before it wrote any (see
    :func:`an_earlier_process_end`). Left alone while a daemon holds the state directory or the PID the
    file names still runs: a live daemon's files are its own. Whether anything was written."""
    if config.status_file is None:
        return False
    with unless_a_daemon_holds(config.state_dir) as free:
        previous = read_status_file(config.status_file)
        if not free or previous is None or _running(previous.get("pid")):
            return False
        if previous.get("state") != "stopped":
            document = stopped_document(previous, error=ended_unannounced(environ), at=clock())
        elif an_earlier_process_end(previous, environ):
            document = earlier_end_moved_aside(previous, environ, at=clock())
        else:
            return False
        write_atomic(config.status_file, json.dumps(document, indent=2).encode() + b"\n", mode=0o644)
        if config.metrics_file is not None:
            _mark_metrics_down(config.metrics_file)
    return True


def killed_by_a_signal(environ: Mapping[str, str]) -> bool:
    """Whether systemd tells ExecStopPost= (systemd.exec(5)) that the daemon died of a signal it did
    not handle: it wrote nothing on its way out. The daemon writes its own end, then exits."""
    return environ.get("EXIT_CODE") in ("killed", "dumped")


def an_earlier_process_end(previous: Mapping[str, Any], environ: Mapping[str, str]) -> bool:
    """Whether a status that says stopped (``previous``) gives how an earlier daemon process ended
    ("cannot start", a crash, an end the hook recorded), not how the one that just died did: that one
    was killed before it wrote a status (a SIGTERM before its handlers were in place, say), which the
    daemon does before any other write."""
    error = previous.get("last_error")
    return killed_by_a_signal(environ) and a_process_error(error if isinstance(error, str) else None)


def earlier_end_moved_aside(
    previous: Mapping[str, Any], environ: Mapping[str, str], *, at: float
) -> dict[str, Any]:
    """The status of a daemon killed before it wrote one, over ``previous`` (an earlier process's end):
    that end moves to ``previous_error``, as a starting daemon moves it. The error is how this process
    ended; none where systemd stopped it as asked (a SIGTERM), as the daemon says of such a stop."""
    moved = {
        **previous,
        "previous_error": previous.get("last_error"),
        "previous_error_at": previous.get("last_error_at"),
    }
    if stopped_as_asked(environ):
        return {**moved, "state": "stopped", "healthy": False, "last_error": None, "last_error_at": None}
    return stopped_document(moved, error=ended_unannounced(environ), at=at)


def _config_or_say_why_not(kwargs: dict[str, Any]) -> DaemonConfig:
    """The stop hook's configuration; where it cannot be built (a --root that is not a directory, say),
    the daemon could not start either: that is said in the status file it names, then raised."""
    try:
        return build_config(kwargs)
    except TrustAgentError as exc:
        status_file = Path(kwargs["status_file"]) if kwargs.get("status_file") else None
        say_unstartable(_named_state_dir(kwargs), status_file, str(exc), os.environ)
        raise


def _named_state_dir(kwargs: Mapping[str, Any]) -> Path:
    """The state directory the options name, for a configuration that cannot be built. Under a --root
    that is not a directory none can exist: the unit's is where the daemon kept its status before."""
    root = kwargs.get("root") or ""
    if kwargs.get("state_dir"):
        return Path(kwargs["state_dir"])
    if root and not Path(root).is_dir():
        return Path(DEFAULT_STATE_DIR)
    return Path(root + DEFAULT_STATE_DIR)


def say_unstartable(state_dir: Path, status_file: Path | None, why: str, environ: Mapping[str, str]) -> bool:
    """For the stop hook: say in the status file that the daemon cannot start, and ``why``; unless
    systemd says the daemon ran and stopped as asked (a ``systemctl stop``, a configuration broken
    while it ran): its own "stopped" is then what happened, and the next start's hook says the rest.
    Whether anything was written."""
    if stopped_as_asked(environ):
        return False
    status_file = status_file or state_dir / "status.json"
    try:
        if mark_unstartable(state_dir, f"{CANNOT_START}: {why}", status_file=status_file):
            return True
        not_said = _why_not_recorded(status_file)
    except OSError as exc:  # the refusal is what to say, not a traceback
        not_said = f"it cannot be written: {exc.strerror or exc}"
    click.echo(f"trust-agent: {status_file} does not say the daemon cannot start: {not_said}", err=True)
    return False


def _why_not_recorded(status_file: Path) -> str:
    if not status_file.is_file():
        return "there is no status file there (no daemon has written one)"
    return "a daemon holds its state directory, or runs as the PID it names, or it is no status file"


def stopped_as_asked(environ: Mapping[str, str]) -> bool:
    """Whether systemd tells ExecStopPost= (systemd.exec(5)) that the service ended cleanly: a stop
    asked for, the daemon exiting 0 on SIGTERM; a start that failed ends in ``exit-code``."""
    return environ.get("SERVICE_RESULT") == "success"


def mark_unstartable(
    state_dir: Path,
    error: str,
    *,
    status_file: Path | None = None,
    clock: Callable[[], float] = time.time,
) -> bool:
    """Say "stopped" and ``error`` in the status file of a daemon whose configuration does not load or
    does not hold together, so that it never started: the status otherwise went on saying how an
    earlier process ended. ``status_file``: the one the configuration names, else STATE_DIR's (the
    default state directory, the unit's, where the configuration cannot be read). Left alone as
    :func:`mark_stopped` leaves it, but written over a status that says stopped already. Whether
    anything was written."""
    status_file = status_file or state_dir / "status.json"
    with unless_a_daemon_holds(state_dir) as free:
        previous = read_status_file(status_file)
        if not free or previous is None or _running(previous.get("pid")):
            return False
        document = stopped_document(previous, error=error, at=clock())
        write_atomic(status_file, json.dumps(document, indent=2).encode() + b"\n", mode=0o644)
    return True


def ended_unannounced(environ: Mapping[str, str]) -> str:
    """Why the status says stopped, from what systemd tells ExecStopPost= (systemd.exec(5))."""
    result = environ.get("SERVICE_RESULT", "")
    how = " ".join(v for v in (environ.get("EXIT_CODE", ""), environ.get("EXIT_STATUS", "")) if v)
    said = ", ".join(v for v in (result and f"result {result}", how) if v)
    return ENDED_UNANNOUNCED + (f" (systemd: {said})" if said else "")


def _running(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


def _mark_metrics_down(path: Path) -> None:
    try:
        text = path.read_bytes()
    except OSError:
        return
    if text.startswith(METRICS_FIRST_LINE):  # never a file that is not the daemon's
        write_atomic(path, metrics_marked_down(text.decode()).encode(), mode=0o644)


def _prepare_state_dir(config: DaemonConfig, log: EventLog) -> None:
    """The state directory at ``STATE_DIR_MODE``: trust-agent's own one tightened where systemd or a
    rollout made it 0755; one named elsewhere only made if missing."""
    own = os.path.normpath(config.state_dir) == os.path.normpath(config.options.root + DEFAULT_STATE_DIR)
    try:
        tightened = prepare_state_dir(config.state_dir, tighten=own)
    except OSError as exc:
        raise UsageError(
            f"cannot make the state directory private: {exc.strerror or exc}", str(config.state_dir)
        ) from None
    if tightened:
        log.event(
            "info",
            "state_dir_mode",
            path=str(config.state_dir),
            mode=f"{STATE_DIR_MODE:04o}",
            why="only root lists the kept policy and locks; status.json stays readable by name",
        )


def build_config(kwargs: dict[str, Any]) -> DaemonConfig:
    root = kwargs.get("root")
    if root:
        if not Path(root).is_dir():
            raise UsageError(f"--root {root}: not a directory")
        root = str(Path(root).resolve())
    state_dir = Path(kwargs.get("state_dir") or (root or "") + DEFAULT_STATE_DIR)
    inputs = PolicyInputs(
        source=kwargs["source"],
        # A name the CLI refuses is a configuration error at start, not a source fault to retry.
        registries=tuple(registry_from_option(r, "--registry") for r in kwargs.get("registries") or ()),
        storage_ca=tuple(kwargs.get("storage_ca") or ()),
        registry_ca=tuple(kwargs.get("registry_ca") or ()),
        allow_expired=bool(kwargs.get("allow_expired")),
        env_overrides=bool(kwargs.get("env_overrides")),
        source_ca=kwargs.get("source_ca"),
        no_storage_ca=bool(kwargs.get("no_storage_ca")),
        no_registry_ca=bool(kwargs.get("no_registry_ca")),
    )
    options = RunOptions(
        root=root or "",
        restart_policy=kwargs.get("restart_policy") or "auto",
        allow_restart=bool(kwargs.get("allow_restart")),
        canary_image=kwargs.get("canary_image"),
        canary_unchanged=False,
        verify=not kwargs.get("no_verify"),
    )
    interval = parse_interval(str(kwargs.get("interval") or "60s"))
    return DaemonConfig(
        inputs=inputs,
        state_dir=state_dir,
        options=options,
        status_file=Path(kwargs.get("status_file") or state_dir / "status.json"),
        metrics_file=Path(kwargs["metrics_file"]) if kwargs.get("metrics_file") else None,
        interval=interval,
        max_backoff=parse_duration(str(kwargs.get("max_backoff") or "10m"), "--max-backoff"),
        jitter=float(kwargs.get("jitter", 0.1)),
    )


def run_daemon(
    config: DaemonConfig, *, environ: dict[str, str], notifier: Notifier, log: EventLog, once: bool
) -> DaemonStatus | None:
    """Run the loop in a worker thread; this (main) thread only takes signals.

    Signal handlers run in the main thread; keeping it out of ``Event.wait`` means a handler can never
    block on a lock the interrupted code holds. Returns the last status, ``None`` if the loop crashed.
    """
    stop, reread, wake = threading.Event(), threading.Event(), threading.Event()

    def on_stop(signum: int, _frame: object) -> None:
        log.event("info", "signal", signal=signal.Signals(signum).name, action="stopping after this step")
        stop.set()
        wake.set()

    def on_reread(signum: int, _frame: object) -> None:
        log.event("info", "signal", signal=signal.Signals(signum).name, action="re-reading the source")
        reread.set()
        wake.set()

    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, on_stop),
        signal.SIGINT: signal.signal(signal.SIGINT, on_stop),
        signal.SIGHUP: signal.signal(signal.SIGHUP, on_reread),
    }
    result: list[DaemonStatus] = []

    def work() -> None:
        daemon: Daemon | None = None
        try:
            daemon = Daemon(config, environ=environ, log=log)
            log.event(
                "info",
                "start",
                source=daemon.status.source.spec,
                host=daemon.status.host,
                interval_seconds=config.interval,
                state_dir=str(config.state_dir),
                policy=daemon.status.policy.policy.fingerprint() if daemon.status.policy else None,
            )
            result.append(serve(daemon, stop=stop, reread=reread, wake=wake, notifier=notifier, once=once))
        except Exception as exc:  # report, then exit non-zero so systemd restarts the service
            log.event("error", "crashed", error=f"{type(exc).__name__}: {exc}")
            notifier.stopping(f"crashed: {type(exc).__name__}")
            if daemon is not None:  # the status file is world-readable: where, not the message
                daemon.stopped(error=f"{CRASHED}: {internal_error(exc)}")

    worker = threading.Thread(target=work, name="trust-agent-daemon", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(1.0)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if result:
        log.event("info", "stop", state=result[0].state, cycles=result[0].cycles)
    return result[0] if result else None


@daemon_group.command("unit", epilog=UNIT_EXIT_CODES)
@click.option(
    "--prefix",
    default=DEFAULT_PREFIX,
    show_default=True,
    metavar="DIR",
    help="The virtualenv holding trust-agent (ExecStart is DIR/bin/trust-agent).",
)
@click.option(
    "--config",
    "config",
    default=DEFAULT_CONFIG,
    show_default=True,
    metavar="FILE",
    help="The daemon's config file on the host.",
)
@click.option(
    "--env-file",
    default=DEFAULT_ENV_FILE,
    show_default=True,
    metavar="FILE",
    help="EnvironmentFile for TRUST_AGENT_DTR_USER/TOKEN (optional on the host). '' for none.",
)
@click.option("--watchdog", default="10m", show_default=True, metavar="DURATION", help="WatchdogSec.")
@click.option("--example-config", is_flag=True, help="Print an example config file instead of the unit.")
@handle_errors
def unit_command(prefix: str, config: str, env_file: str, watchdog: str, example_config: bool) -> None:
    """Print the systemd unit (Type=notify, watchdog, restart on failure) for image builders."""
    if example_config:
        click.echo(EXAMPLE_CONFIG, nl=False)
        return
    seconds = watchdog_seconds(watchdog, RunOptions())  # the daemon's cycle: the engine's own timeouts
    # systemd takes absolute paths only (it refuses the unit otherwise).
    for option, path in (("--prefix", prefix), ("--config", config), ("--env-file", env_file)):
        if path and not path.startswith("/"):
            raise UsageError(f"{option} {path}: give an absolute path on the host (systemd needs one)")
        if path and (not path.isprintable() or "\\" in path):
            # A newline would start a line of its own in the unit; systemd reads a backslash as an escape.
            raise UsageError(f"{option} {path!r}: a control character or backslash has no place in it")
    click.echo(
        render_unit(
            UnitOptions(prefix=prefix, config=config, env_file=env_file or None, watchdog_seconds=seconds)
        ),
        nl=False,
    )


# --- install / uninstall over SSH ----------------------------------------------------------------


def _ssh_options(func: F) -> F:
    """The main CLI's inventory and SSH options, and a per-host report format."""
    return stack(
        [
            inventory_options(required=True),
            ssh_options(
                command_timeout=300.0,
                command_timeout_help="Seconds for one command on a host (making the virtualenv is the longest).",
            ),
            click.option(
                "--format",
                "fmt",
                type=click.Choice(["text", "json"]),
                default="text",
                show_default=True,
                help="One line per host, or a JSON report on stdout.",
            ),
        ]
    )(func)


def _install_options(func: F) -> F:
    options = [
        policy_options(
            "The registry's storage settings, read here: config.yml, harbor.yml, saved DTR JSON "
            "(hosts get a copy without secrets), or a live DTR/MSR https:// URL that every host reads "
            f"itself (credentials from {DTR_USER_ENV}/{DTR_TOKEN_ENV} here, kept on hosts in a 0600 file)."
        ),
        polling_options,
        click.option(
            "--metrics-file",
            metavar="FILE",
            help="Prometheus textfile on each host (e.g. …/textfile_collector/trust_agent.prom).",
        ),
        engine_options,
        log_level_option,
        click.option("--watchdog", default="10m", show_default=True, metavar="DURATION", help="WatchdogSec."),
        click.option(
            "--wheelhouse",
            type=click.Path(file_okay=False, exists=True),
            metavar="DIR",
            help="Wheels of trust-agent's dependencies for the hosts, prepared elsewhere (default: fetched "
            "once per host Python with pip download and cached in ~/.cache/trust-agent).",
        ),
        click.option(
            "--python", default="python3", show_default=True, help="The hosts' Python (needs venv)."
        ),
        click.option(
            "--wait",
            default="60s",
            show_default=True,
            metavar="DURATION",
            help="How long each host may take to report healthy after the service starts.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _say_interrupted(in_flight: int, left: int) -> None:
    from agent.progress import interrupted_line

    click.echo(interrupted_line(in_flight, left), err=True)


def _emit_reports(
    reports: list[Any], fmt: str, command: str, warnings: tuple[str, ...] | None = None
) -> None:
    """``warnings``: the policy's (install), in the JSON document; the text report had them on stderr."""
    from agent.daemon.install import report_line

    if fmt == "json":
        document: dict[str, Any] = {"command": command}
        if warnings is not None:
            document["warnings"] = list(warnings)
        document["hosts"] = [r.as_dict() for r in reports]
        click.echo(json.dumps(document, indent=2))
    else:
        for report in reports:
            click.echo(report_line(report))
    failed = sum(1 for r in reports if r.failed)
    click.echo(f"{len(reports) - failed} of {len(reports)} hosts ok", err=True)


@daemon_group.command("install", epilog=INSTALL_EXIT_CODES)
@_install_options
@_ssh_options
@handle_errors
def install_command(**kwargs: Any) -> None:
    """Install the daemon on every host of an inventory over SSH, start it, and wait until it is healthy.

    Per host: python3 with venv is required (Debian: python3-venv); trust-agent and its dependencies
    come from a wheelhouse made here, so hosts need no package index. The virtualenv goes to
    /opt/trust-agent/venv, the configuration to /etc/trust-agent (0600: daemon.yml, the source copy
    without secrets, the CA files, daemon.env for a live DTR's credentials), the unit to
    /etc/systemd/system/trust-agent.service. Re-running it updates what changed: a new source is
    reloaded, new options or a new build restart the daemon. Exit 1 when any host is not healthy.

    Give the same CA options as the rollout: each host is planned first, as `trust-agent plan` does, and
    a host where the daemon would fail (one holding trust-agent's registry CA, say, with neither
    --registry-ca nor --no-registry-ca given) is refused with the plan's reason, nothing put on it; the
    other hosts go on. A daemon that fails its first cycle all the same is stopped and disabled.
    """
    from agent.daemon.bundle import DaemonSettings, build_bundle
    from agent.daemon.install import daemon_plan_options, install_host, run_hosts
    from agent.daemon.wheelhouse import WheelhouseCache
    from agent.inputs import resolve_policy
    from agent.ssh_targets import open_ssh_targets
    from agent.trust import canary_under_policy

    parse_interval(kwargs["interval"])
    parse_duration(kwargs["max_backoff"], "--max-backoff")
    wait = parse_duration(kwargs["wait"], "--wait")
    watchdog = watchdog_seconds(kwargs["watchdog"], RunOptions())  # the hosts' daemons run with these
    inputs = policy_inputs(dict(kwargs))
    settings, policy = resolve_policy(inputs)  # bad input: exit 2 before any host is touched
    if kwargs["canary_image"]:  # one outside the policy's registries proves nothing there (exit 2)
        canary_under_policy(kwargs["canary_image"], policy.registries)
    live = "://" in inputs.source
    if live and not (os.environ.get(DTR_USER_ENV) and os.environ.get(DTR_TOKEN_ENV)):
        raise UsageError(f"a live DTR source needs {DTR_USER_ENV} and {DTR_TOKEN_ENV} for the hosts")
    daemon = DaemonSettings(
        interval=kwargs["interval"],
        max_backoff=kwargs["max_backoff"],
        jitter=kwargs["jitter"],
        metrics_file=kwargs["metrics_file"],
        restart_policy=kwargs["restart_policy"],
        allow_restart=kwargs["allow_restart"],
        canary_image=kwargs["canary_image"],
        verify=not kwargs["no_verify"],
        log_level=kwargs["log_level"],
        watchdog_seconds=watchdog,
    )
    if daemon.metrics_file and not daemon.metrics_file.startswith("/"):
        raise UsageError(f"--metrics-file {daemon.metrics_file}: give an absolute path on the hosts")
    hidden = hidden_from_the_service(daemon.metrics_file or "")
    if hidden:
        raise UsageError(f"--metrics-file {daemon.metrics_file}: {hidden}")
    try:
        bundle = build_bundle(inputs, settings, policy, daemon, environ=os.environ)
    except OSError as exc:
        raise UsageError(f"cannot read: {exc.strerror or exc}", getattr(exc, "filename", None)) from None
    wheelhouses = WheelhouseCache(kwargs["wheelhouse"])
    plan_options = daemon_plan_options(daemon, kwargs["command_timeout"])
    names, opener = open_ssh_targets(kwargs)
    click.echo(
        f"installing on {len(names)} host(s): policy {policy.fingerprint()}, source {bundle.source_spec}",
        err=True,
    )
    for warning in policy.warnings:  # once for the fleet, as a rollout says them: every host's daemon
        click.echo(f"warning: {warning}", err=True)  # works out the same policy
    reports, interrupted = run_hosts(
        names,
        opener,
        lambda t: install_host(
            t,
            bundle,
            wheelhouses,
            python=kwargs["python"],
            wait=wait,
            command_timeout=kwargs["command_timeout"],
            policy=policy,
            plan_options=plan_options,
        ),
        forks=kwargs["forks"],
        on_interrupt_left=_say_interrupted,
    )
    _emit_reports(reports, kwargs["fmt"], "install", policy.warnings)
    sys.exit(130 if interrupted else 1 if any(r.failed for r in reports) else 0)


@daemon_group.command("uninstall", epilog=UNINSTALL_EXIT_CODES)
@click.option(
    "--purge",
    is_flag=True,
    help="Also remove the trust trust-agent installed (its trust-agent-*.crt files and the "
    "insecure-registries entries it added; dockerd reloaded only if daemon.json changes).",
)
@_ssh_options
@handle_errors
def uninstall_command(purge: bool, **kwargs: Any) -> None:
    """Stop and remove the daemon from every host: the service, the virtualenv, the configuration and
    the daemon's state. The trust it installed stays in place unless --purge."""
    from agent.daemon.install import run_hosts, uninstall_host
    from agent.ssh_targets import open_ssh_targets

    names, opener = open_ssh_targets(kwargs)
    options = RunOptions(command_timeout=kwargs["command_timeout"])
    reports, interrupted = run_hosts(
        names,
        opener,
        lambda t: uninstall_host(t, purge=purge, options=options, command_timeout=kwargs["command_timeout"]),
        forks=kwargs["forks"],
        on_interrupt_left=_say_interrupted,
    )
    _emit_reports(reports, kwargs["fmt"], "uninstall")
    sys.exit(130 if interrupted else 1 if any(r.failed for r in reports) else 0)
