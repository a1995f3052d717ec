"""``daemon install`` / ``daemon uninstall``: put the daemon on engine hosts over SSH, or take it off.

Install, per host, over one SSH connection:

1. probe (one round trip): the login's uid (one that is not root is refused, nothing put on the
   host), python3's version, machine and C library, whether ``python3 -m venv`` works (Debian's
   ``python3-venv``), systemd, and the wheelhouse already installed; then the host is
   planned for the controller's policy as ``trust-agent plan`` plans it (one gather, nothing written),
   and refused, untouched, where that plan fails: the daemon would fail there every cycle;
2. when the host does not already run this exact build: send the wheelhouse as a tar, make a new
   virtualenv ``/opt/trust-agent/venv-<id>`` from it (``pip install --no-index``: hosts need no
   package index), then point the ``/opt/trust-agent/venv`` symlink at it in one rename, so a failed
   install leaves the running daemon as it was;
3. write the configuration (atomic renames, 0600) and the unit, enable the service, and restart it
   when its program or options changed, reload it (re-read the source now) when only the source did;
4. poll ``status.json`` until the daemon (the service's current process) says ``healthy`` on a
   policy with the controller's fingerprint, or the wait runs out. A daemon that says its cycle failed
   is reported in its own words and stopped and disabled (its files stay, for the next install).

The source on the host. Hosts cannot read the controller's files, so a file source is copied, but
not as it is: a registry's config.yml holds S3 keys, http secrets and passwords, none of which an
engine needs. The host gets the storage settings as trust-agent read them (after any ``REGISTRY_*``
overrides), written as a minimal distribution ``config.yml`` with no secret in it, plus the CA
bundles as PEM files. A live DTR/MSR URL is used as it is, with its credentials in a 0600
``EnvironmentFile`` (never on a command line). Re-running ``daemon install`` with a new source
updates those files and reloads the daemon; so can any configuration management that writes
``/etc/trust-agent/source/``.

Uninstall stops and disables the service and removes the unit, the virtualenvs, the configuration
and the daemon's own state (last good policy, status, metrics). The trust it installed stays unless
``--purge``, which reconciles the host to an empty policy first: every ``trust-agent-*.crt`` and
every ``insecure-registries`` entry trust-agent recorded as its own goes, with a reload only when
daemon.json changed; nothing a person wrote is touched.
"""

from __future__ import annotations

import json
import posixpath
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import yaml

from agent.daemon.bundle import (
    CONFIG_DIR,
    HOST_LOCK,
    MANIFEST,
    OPT_DIR,
    SERVICE,
    STATE_DIR,
    DaemonSettings,
    InstallBundle,
    files_tar,
)
from agent.daemon.host_scripts import (
    CONFIG_METRICS_SCRIPT,
    PROBE_UID,
    PRUNE_SCRIPT,
    STATUS_SCRIPT,
    STOP_SCRIPT,
    config_script,
    foreign_metrics_refusal,
    probe_script,
    purge_state_script,
    uninstall_script,
    venv_script,
)
from agent.daemon.unit import DEFAULT_CONFIG, DEFAULT_ENV_FILE, hidden_from_the_service
from agent.daemon.wheelhouse import WheelhouseCache, parse_probe
from agent.engine.apply_script import daemon_json_backup
from agent.engine.host_plan import not_root_error
from agent.engine.options import RunOptions
from agent.engine.reconcile import reconcile
from agent.engine.verify import read_live_info
from agent.errors import HostError, TrustAgentError, UnreachableError
from agent.fleet import Gated, Readiness, Readinesses, unless_left
from agent.host_pool import NOT_STARTED, HostPool
from agent.hosts.base import Connecting, Transport
from agent.runtimes.docker import OWN_EMPTY_LIST_KEPT, insecure_entries_live
from agent.trust import TrustPolicy

BECOME_HOW = "log in as root, or pass --become for sudo"  # a rollout's words for the same refusal

# --- per host ------------------------------------------------------------------------------------

Status = Literal["installed", "unchanged", "uninstalled", "absent", "failed", "unreachable", "skipped"]


@dataclass(frozen=True)
class HostReport:
    host: str
    status: Status
    detail: str = ""
    error: str | None = None
    seconds: float = 0.0
    daemon: dict[str, Any] | None = field(default=None, repr=False)  # the status.json seen last

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "unreachable")

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "status": self.status,
            "detail": self.detail,
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "daemon": self.daemon,
        }


class HostFailure(TrustAgentError):
    """One host cannot be installed; the message says why, in one line."""


def _values(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _check(result: Any, what: str) -> None:
    if not result.ok:
        lines = (result.stderr or result.stdout).decode("utf-8", "replace").strip().splitlines()
        tail = " | ".join(lines[-3:]) or "no output"
        raise HostFailure(f"{what} failed (exit {result.exit_status}): {tail}")


def install_host(
    transport: Transport,
    bundle: InstallBundle,
    wheelhouses: WheelhouseCache,
    *,
    python: str = "python3",
    wait: float = 60.0,
    command_timeout: float = 300.0,
    poll_every: float = 0.5,
    policy: TrustPolicy | None = None,
    plan_options: RunOptions | None = None,
) -> HostReport:
    """Install (or update) the daemon on one host and wait until it is healthy. Never raises.

    ``policy``: the controller's; the host is planned for it first (with ``plan_options``, see
    :func:`daemon_plan_options`) and refused, untouched, where the daemon's first cycle would fail."""
    start = time.monotonic()
    connected = False
    try:
        connected = _connect(transport)
        probe = transport.run(probe_script(python, bundle.metrics_file), timeout=command_timeout)
        _check(probe, "probing the host")
        facts = _values(probe.stdout.decode("utf-8", "replace"))
        _refuse_a_uid_that_is_not_root(facts.get(PROBE_UID, ""), "nothing was put on the host")
        if bundle.metrics_file and facts.get("metrics") in ("foreign", "foreign-empty"):
            empty = facts.get("metrics") == "foreign-empty"
            raise HostFailure(foreign_metrics_refusal(bundle.metrics_file, empty=empty))
        _refuse_a_hidden_metrics_file(bundle.metrics_file, facts.get("metrics_real", "").strip())
        if facts.get("python") == "missing":
            raise HostFailure(f"{python} not found (install python3 and python3-venv)")
        try:
            target, has_venv = parse_probe(probe.stdout.decode("utf-8", "replace"))
        except ValueError as exc:
            raise HostFailure(f"{python}: {exc}") from None
        if not has_venv:
            raise HostFailure(f"{python} -m venv is not available (install python3-venv)")
        if facts.get("systemd") != "yes":
            raise HostFailure("systemd is not running on this host: the daemon runs as a systemd service")
        if policy is not None:
            refuse_where_the_daemon_would_fail(
                transport, policy, plan_options or daemon_plan_options(DaemonSettings(), command_timeout)
            )
        wheelhouse = wheelhouses.for_target(target)
        ident = wheelhouse.ident
        venv_changed = facts.get("installed", "").strip() != ident
        if venv_changed:
            version = wheelhouse.project.version if wheelhouse.project else _version_in(wheelhouse)
            made = transport.run(
                venv_script(ident, python, version), stdin=wheelhouse.tar(), timeout=command_timeout
            )
            _check(made, f"installing trust-agent into {OPT_DIR}/venv-{ident} ({target.describe()})")
        placed = transport.run(
            config_script(bundle, venv_changed), stdin=files_tar(bundle.files), timeout=command_timeout
        )
        _check(placed, "writing the configuration and starting the service")
        result = _values(placed.stdout.decode("utf-8", "replace"))
        action = result.get("action", "none")
        since = float(result.get("since", "0") or 0)
        old_pid = facts.get("main_pid", "0").strip() or "0"
        try:
            daemon = _wait_healthy(
                transport,
                bundle,
                action=action,
                since=since,
                old_pid=old_pid,
                wait=wait,
                poll_every=poll_every,
                command_timeout=command_timeout,
            )
        except CycleFailed as exc:
            raise HostFailure(f"{exc}; {_stop_the_failing_service(transport, command_timeout)}") from None
        if venv_changed:  # the daemon runs from the new one now: the previous build is not in use
            transport.run(PRUNE_SCRIPT, timeout=command_timeout)
    except HostFailure as exc:
        return HostReport(transport.name, "failed", error=str(exc), seconds=time.monotonic() - start)
    except TrustAgentError as exc:
        status: Status = _error_status(exc, connected=connected)
        return HostReport(transport.name, status, error=str(exc), seconds=time.monotonic() - start)
    except Exception as exc:  # a bug must cost one host, not the fleet
        return HostReport(
            transport.name,
            "failed",
            error=f"internal error: {type(exc).__name__}: {exc}",
            seconds=time.monotonic() - start,
        )
    steps = []
    if venv_changed:
        steps.append(f"venv {ident} installed")
    if action != "none":  # an unchanged host's status says it already
        steps.append({"restart": "service (re)started", "reload": "source reloaded"}[action])
    policy = (daemon.get("policy") or {}).get("fingerprint")
    detail = "; ".join([*([", ".join(steps)] if steps else []), f"healthy on policy {policy}"])
    status = "unchanged" if action == "none" and not venv_changed else "installed"
    return HostReport(transport.name, status, detail, seconds=time.monotonic() - start, daemon=daemon)


def daemon_plan_options(daemon: DaemonSettings, command_timeout: float) -> RunOptions:
    """How a host is planned before install: as the daemon's cycles will plan it (its restart policy),
    read-only (a dry run: one gather, nothing written, the engine not verified)."""
    return RunOptions(
        dry_run=True,
        verify=False,
        restart_policy=daemon.restart_policy,
        allow_restart=daemon.allow_restart,
        command_timeout=command_timeout,
    )


def refuse_where_the_daemon_would_fail(
    transport: Transport, policy: TrustPolicy, options: RunOptions
) -> None:
    """Plan the host for ``policy`` as ``trust-agent plan`` does, and refuse it where the plan fails (a
    CA of trust-agent's the policy does not say to keep, a key dockerd also gets as a flag): a daemon
    installed there would fail every cycle, and retry at its back-off for ever."""
    outcome = reconcile(transport, policy, options)
    if outcome.status == "unreachable":
        raise UnreachableError(outcome.error or "lost while planning the host")
    if outcome.failed:
        raise HostFailure(would_fail(outcome.error))


def would_fail(reason: str | None) -> str:
    """A host refused before install, with the plan's reason."""
    return (
        f"not installed: the daemon would fail on this host: {reason or 'its plan failed'} "
        "(nothing was put on the host)"
    )


class CycleFailed(HostFailure):
    """The installed daemon ran its cycle and left the host failing: waiting longer brings only its
    retries, at its back-off's pace."""


def failed_its_cycle(daemon: Mapping[str, Any]) -> bool:
    """Whether a (fresh) status says the daemon ran a cycle that left the host failing; not one still
    starting, nor one whose host another run's lock kept it from."""
    cycles = daemon.get("cycles")
    return (
        daemon.get("state") == "failing"
        and not daemon.get("host_busy")
        and isinstance(cycles, int)
        and cycles >= 1
    )


def daemon_error(daemon: Mapping[str, Any]) -> str:
    """The daemon's own words for why it is not healthy: status.json's ``last_error`` (else its last
    outcome's error, else its state)."""
    outcome = daemon.get("outcome")
    error = daemon.get("last_error") or (outcome.get("error") if isinstance(outcome, dict) else None)
    return str(error) if error else f"state {daemon.get('state')}"


def journal_messages(text: str, limit: int = 3) -> list[str]:
    """The last ``limit`` things the daemon's journal (``journalctl -o cat``: its MESSAGE fields) says
    went wrong, for a person: from its JSON records of warning or error level the event and its error
    (or message); any other line (systemd's own, a traceback) as it is."""
    said: list[str] = []
    for line in (raw.strip() for raw in text.splitlines()):
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            said.append(line)
            continue
        if not isinstance(record, dict):
            said.append(line)
        elif record.get("level") in ("warning", "error"):
            said.append(_record_text(record))
    return said[-limit:]


def _record_text(record: Mapping[str, Any]) -> str:
    event = str(record.get("event", "event"))
    detail = record.get("error") or record.get("message")
    if not detail and isinstance(record.get("warnings"), list):
        detail = "; ".join(str(w) for w in record["warnings"])
    return f"{event}: {detail}" if detail else event


def _stop_the_failing_service(transport: Transport, command_timeout: float) -> str:
    """Stop and disable a daemon that failed its cycle (each retry would write, reload and roll back
    again); its files stay for a look and for the next install, which starts it again. What to say."""
    stopped = transport.run(f"systemctl disable --now -q {SERVICE}", timeout=min(command_timeout, 120.0))
    if not stopped.ok:
        said = (stopped.stderr or stopped.stdout).decode("utf-8", "replace").strip() or "no output"
        return f"stopping the service failed too (exit {stopped.exit_status}): {said}"
    return f"{SERVICE}.service is stopped and disabled: fix the cause, then run daemon install again"


def _connect(transport: Transport) -> bool:
    """Log in (a transport that connects on its own first command is taken as logged in)."""
    if isinstance(transport, Connecting):
        transport.connect()
    return True


def _refuse_a_login_that_is_not_root(transport: Transport, command_timeout: float, untouched: str) -> None:
    """Refuse a login that is not root (no --become) before anything is written: /opt/trust-agent,
    /etc and systemd's units are root's, and the first mkdir would fail with a bare "Permission denied"."""
    result = transport.run("id -u", timeout=min(command_timeout, 30.0))
    _check(result, "reading the login's uid (id -u)")
    _refuse_a_uid_that_is_not_root(result.stdout.decode("utf-8", "replace"), untouched)


def _refuse_a_uid_that_is_not_root(id_output: str, untouched: str) -> None:
    """Refuse the login whose ``id -u`` printed ``id_output`` (:func:`not_root_refusal`)."""
    refused = not_root_refusal(id_output, untouched)
    if refused is not None:
        raise HostFailure(refused)


def not_root_refusal(id_output: str, untouched: str) -> str | None:
    """Why a login whose ``id -u`` printed ``id_output`` cannot install or uninstall, as a rollout says
    it, and that ``untouched``; None for root (or a uid not understood: the next step says more)."""
    text = id_output.strip()
    not_root = not_root_error(int(text) if text.isdigit() else None, BECOME_HOW)
    return None if not_root is None else f"{not_root}; {untouched}"


def _error_status(exc: TrustAgentError, *, connected: bool) -> Status:
    """``unreachable`` where no login was made (or the connection was lost); ``failed`` where the host
    answered and refused, as a rollout says it: sudo that wants a password is a reachable host's."""
    if isinstance(exc, UnreachableError) or (not connected and isinstance(exc, HostError)):
        return "unreachable"
    return "failed"


def _refuse_a_hidden_metrics_file(given: str | None, real: str) -> None:
    """Refuse a --metrics-file that resolves on the host to where the service cannot write for others
    to read: the daemon would report healthy while node_exporter never sees a metric."""
    hidden = hidden_from_the_service(real) if given and real else None
    if hidden:
        raise HostFailure(
            f"--metrics-file {given} resolves to {real} on this host: {hidden}; "
            "choose a path outside /root, /home, /run/user and /tmp"
        )


def _version_in(wheelhouse: Any) -> str:
    for path in wheelhouse.wheels:
        if path.name.startswith("trust_agent-"):
            return str(path.name.split("-")[1])
    raise HostFailure(f"{wheelhouse.directory}: no trust_agent wheel in the wheelhouse")


def _parse_iso(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def status_fresh(
    daemon: Mapping[str, Any], *, main_pid: str, action: str, since: float, old_pid: str
) -> bool:
    """Whether ``status.json`` was written by the service's current process, after what we did."""
    if str(daemon.get("pid")) != main_pid or main_pid in ("", "0"):
        return False
    if action == "restart" and main_pid == old_pid:
        return False
    if action == "reload":
        last_run = _parse_iso(daemon.get("last_run"))
        return last_run is not None and last_run >= since - 0.001
    return True


def _wait_healthy(
    transport: Transport,
    bundle: InstallBundle,
    *,
    action: str,
    since: float,
    old_pid: str,
    wait: float,
    poll_every: float,
    command_timeout: float,
) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    seen: dict[str, Any] = {}
    while True:
        result = transport.run(STATUS_SCRIPT, timeout=min(command_timeout, 30.0))
        facts = _values(result.stdout.decode("utf-8", "replace"))
        try:
            loaded = json.loads(facts.get("status", "") or "null")
        except ValueError:
            loaded = None  # caught between writes is impossible (atomic), but a damaged file is not
        if isinstance(loaded, dict) and status_fresh(
            loaded, main_pid=facts.get("main_pid", "").strip(), action=action, since=since, old_pid=old_pid
        ):
            seen = loaded
            if failed_its_cycle(loaded):
                raise CycleFailed(f"the daemon failed its cycle: {daemon_error(loaded)}")
            if loaded.get("healthy"):
                fingerprint = (loaded.get("policy") or {}).get("fingerprint")
                if fingerprint != bundle.fingerprint and not bundle.live_source:
                    raise HostFailure(
                        f"the daemon is healthy on policy {fingerprint}, not the controller's "
                        f"{bundle.fingerprint}"
                    )
                return loaded
        if time.monotonic() >= deadline:
            raise _not_healthy(transport, wait, facts.get("active", "unknown"), seen)
        time.sleep(poll_every)


def _not_healthy(transport: Transport, wait: float, active: str, seen: Mapping[str, Any]) -> HostFailure:
    """Why the daemon is not healthy after ``wait``: what status.json says where the daemon wrote why,
    else what its journal says."""
    journal: list[str] = []
    if not (seen.get("last_error") or seen.get("host_busy")):
        read = transport.run(f"journalctl -u {SERVICE} -n 30 -o cat --no-pager 2>/dev/null", timeout=30)
        journal = journal_messages(read.stdout.decode("utf-8", "replace"))
    return HostFailure(not_healthy_message(wait, active, seen, journal))


def not_healthy_message(
    wait: float, active: str, seen: Mapping[str, Any], journal: Sequence[str] = ()
) -> str:
    """The report's line for a daemon not healthy after ``wait``: the service's state, the daemon's
    (``seen``: its last fresh status.json, empty if none) and its error; else why it is held up (another
    run holding the host's lock, which the daemon logs at info only); else ``journal``, what its
    journal says went wrong."""
    state = f"service {active}"
    if seen:
        state += f", daemon {seen.get('state')}"
        if seen.get("last_error"):
            state += f": {seen['last_error']}"
    said = f"not healthy after {wait:g}s ({state})"
    busy = bool(seen.get("host_busy"))
    if busy:
        said += (
            f"; another trust-agent run holds {HOST_LOCK} (a rollout or an apply reaching this host, "
            "say): the daemon leaves the host to it"
        )
    elif journal and not seen.get("last_error"):
        said += f"; journal: {' | '.join(journal)}"
    # Not failed (still on its first cycle, riding out a source outage, or kept out by the lock): it is
    # left to go on.
    if active == "active":
        said += (
            "; left running: it converges the host once that run ends"
            if busy
            else "; left running, it goes on trying"
        )
    return said


def uninstall_host(
    transport: Transport, *, purge: bool, options: RunOptions | None = None, command_timeout: float = 300.0
) -> HostReport:
    """Stop, disable and remove the daemon; with ``purge`` also the trust trust-agent installed."""
    start = time.monotonic()
    connected = False
    try:
        connected = _connect(transport)
        _refuse_a_login_that_is_not_root(transport, command_timeout, "nothing was removed from the host")
        stopped = transport.run(STOP_SCRIPT, timeout=command_timeout)
        _check(stopped, f"stopping {SERVICE}")
        text = stopped.stdout.decode("utf-8", "replace")
        first, _, manifest_text = text.partition("\n")
        state_files, config_files = manifest_lists(manifest_text)
        # No record lists the metrics file: daemon.yml, if still there, names it.
        config_metrics = _config_metrics_file(transport, command_timeout) if config_files == [] else None
        purged = ""
        if purge:
            empty = purge_policy(_live_insecure_or_none(transport, command_timeout))
            outcome = reconcile(transport, empty, options or RunOptions(command_timeout=command_timeout))
            if outcome.failed:
                raise HostFailure(f"removing the trust it installed failed: {outcome.error}")
            removed = [c.path for c in outcome.plan.changes if not c.internal] if outcome.plan else []
            purged = (
                f"; trust removed ({len(removed)} files changed, dockerd: {outcome.engine_action})"
                if removed
                else "; no trust to remove"
            )
            warned = dict.fromkeys((*(outcome.plan.warnings if outcome.plan else ()), *outcome.warnings))
            purged += "".join(f"; {w}" for w in warned if OWN_EMPTY_LIST_KEPT in w)
        removed_files = transport.run(
            uninstall_script(state_files, config_files, config_metrics), timeout=command_timeout
        )
        _check(removed_files, "removing the service and its files")
        if purge:
            purged += _purge_state(transport, options or RunOptions(), command_timeout)
        said = removed_files.stdout.decode("utf-8", "replace")
        had = _values(said).get("had") == "yes"
        env_removed = _values(said).get("env_removed") == "yes"
        metrics = config_metrics_detail(config_metrics, _values(said).get("metrics"))
        left = [line[5:] for line in said.splitlines() if line.startswith("left=")]
        was_running = first.strip() == "stopped=yes"
    except HostFailure as exc:
        return HostReport(transport.name, "failed", error=str(exc), seconds=time.monotonic() - start)
    except TrustAgentError as exc:
        status: Status = _error_status(exc, connected=connected)
        return HostReport(transport.name, status, error=str(exc), seconds=time.monotonic() - start)
    except Exception as exc:
        return HostReport(
            transport.name,
            "failed",
            error=f"internal error: {type(exc).__name__}: {exc}",
            seconds=time.monotonic() - start,
        )
    if not had and not was_running:
        return HostReport(
            transport.name, "absent", absent_detail(left) + metrics + purged, seconds=time.monotonic() - start
        )
    kept = "" if purge else "; trust left in place"
    gone = uninstalled_detail(recorded=config_files != [], env_removed=env_removed, left=left)
    return HostReport(
        transport.name, "uninstalled", gone + metrics + kept + purged, seconds=time.monotonic() - start
    )


# Files under /etc/trust-agent a report names before it says how many more there are.
LEFT_NAMED = 8


def uninstalled_detail(*, recorded: bool, env_removed: bool, left: Sequence[str]) -> str:
    """What uninstall removed from a host that had the daemon, and what it left in /etc/trust-agent.

    ``recorded``: install.json said which files there were install's (all of them went); without it
    only the service, the virtualenv and daemon.env (``env_removed``) went. ``left``: the files still
    there, by their path under /etc/trust-agent."""
    if recorded:
        kept = f"; kept in {CONFIG_DIR}, not put there by install: {_names(left)}" if left else ""
        return "service, venv and configuration removed" + kept
    removed = "service and venv removed"
    if env_removed:
        removed += f", and {DEFAULT_ENV_FILE} (the DTR credentials the service read)"
    missing = f"; {MANIFEST} is missing, so nothing else in {CONFIG_DIR} is known to be trust-agent's"
    if not left:
        return removed + missing
    return f"{removed}{missing}: left {_names(left)} (remove them by hand where trust-agent put them there)"


def config_metrics_detail(path: str | None, fate: str | None) -> str:
    """What uninstall did with the metrics file daemon.yml names (``path``) where no record lists it:
    ``fate`` is the uninstall script's ``metrics=`` (none where no file is there)."""
    if path is None or fate not in ("removed", "left"):
        return ""
    named = f"{path} (the metrics file {DEFAULT_CONFIG} names)"
    if fate == "removed":
        return f"; {named} removed: it held trust-agent's metrics"
    return f"; {named} left as it is: it does not hold trust-agent's metrics, so it may be another's"


def _config_metrics_file(transport: Transport, command_timeout: float) -> str | None:
    """The metrics file the host's daemon.yml names, read without the rest of it (a DTR token)."""
    result = transport.run(CONFIG_METRICS_SCRIPT, timeout=min(command_timeout, 30.0))
    return metrics_file_named(result.stdout.decode("utf-8", "replace")) if result.ok else None


def metrics_file_named(text: str) -> str | None:
    """The metrics file that daemon.yml's ``metrics_file`` (or ``metrics-file``) lines, ``text``, name,
    as ``daemon run`` reads it: a relative path is relative to the file's directory. None where the
    lines do not name one (or name it under ``~``: the service cannot write home directories)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if not isinstance(document, dict):
        return None
    value = document.get("metrics_file", document.get("metrics-file"))
    if not isinstance(value, str) or not value.strip() or value.startswith("~"):
        return None
    return posixpath.join(posixpath.dirname(DEFAULT_CONFIG), value)


def absent_detail(left: Sequence[str]) -> str:
    """A host with no daemon: and what is in /etc/trust-agent all the same, untouched (``left``)."""
    if not left:
        return "not installed"
    return (
        f"not installed; {CONFIG_DIR} holds files no install.json says are trust-agent's, left as they "
        f"are: {_names(left)}"
    )


def _names(left: Sequence[str]) -> str:
    """The files (paths under /etc/trust-agent), daemon.env said to hold credentials, the first
    ``LEFT_NAMED`` of them."""
    env_name = posixpath.basename(DEFAULT_ENV_FILE)
    named = [f"{name} (DTR credentials)" if name == env_name else name for name in left[:LEFT_NAMED]]
    more = len(left) - LEFT_NAMED
    return ", ".join(named) + (f" and {more} more" if more > 0 else "")


def purge_policy(live_insecure: tuple[str, ...] | None) -> TrustPolicy:
    """The policy a purge reconciles a host to: nothing of trust-agent's, its own empty
    insecure-registries list included where dockerd's live list (``live_insecure``) allows."""
    return TrustPolicy(
        registries=(),
        storage_endpoint=None,
        storage_scheme=None,
        purge=True,
        purge_live_insecure=live_insecure,
    )


def _live_insecure_or_none(transport: Transport, command_timeout: float) -> tuple[str, ...] | None:
    """What the running dockerd lists as insecure, read before the purge plans; None where it did not
    answer (the plan then keeps trust-agent's empty list, as removing it could keep a stale one)."""
    try:
        return insecure_entries_live(read_live_info(transport, min(command_timeout, 20.0)))
    except TrustAgentError:
        return None


def _purge_state(transport: Transport, options: RunOptions, command_timeout: float) -> str:
    """Remove trust-agent's state after a purge; what the report adds about backups kept."""
    result = transport.run(
        purge_state_script(daemon_json_backup(options.backup_stamp)), timeout=command_timeout
    )
    _check(result, f"removing trust-agent's state in {STATE_DIR}")
    kept = [
        line[5:] for line in result.stdout.decode("utf-8", "replace").splitlines() if line.startswith("kept=")
    ]
    if not kept:
        return ""
    where = posixpath.dirname(kept[0])
    return (
        f"; {len(kept)} earlier daemon.json backup{'s' if len(kept) > 1 else ''} kept in {where} "
        "(they may hold what a person wants back: remove them when no longer needed)"
    )


def manifest_lists(text: str) -> tuple[list[str], list[str] | None]:
    """The state files and the files under /etc/trust-agent that the host's install.json (``text``)
    lists. No manifest, or one that does not parse: none of either, so that nothing not known to be
    trust-agent's is removed. An older manifest that lists no config files: ``None`` for them."""
    try:
        manifest = json.loads(text) if text.strip() else {}
    except ValueError:
        return [], []
    if not isinstance(manifest, dict):
        return [], []
    listed = manifest.get("state_files", [])
    state_files = [str(p) for p in listed if str(p).startswith("/")] if isinstance(listed, list) else []
    if not manifest:
        return state_files, []
    config_files = manifest.get("config_files")
    return state_files, [str(p) for p in config_files] if isinstance(config_files, list) else None


# --- many hosts ----------------------------------------------------------------------------------


# A host an interrupt left while it logged in (``leave_of`` in agent.host_pool.HostPool.map).
LEFT_CONNECTING = (
    "not started: the run was interrupted while this host was still connecting; nothing was put on it"
)


def run_hosts(
    names: Sequence[str],
    open_transport: Callable[[str], Transport],
    work: Callable[[Transport], HostReport],
    *,
    forks: int = 50,
    on_done: Callable[[HostReport], None] | None = None,
    on_interrupt: Callable[[int], None] | None = None,
    on_interrupt_left: Callable[[int, int], None] | None = None,
) -> tuple[list[HostReport], bool]:
    """``work`` on every host, ``forks`` at a time; reports in the order of ``names``, and whether an
    interrupt stopped the run (the hosts in flight finished, the rest are ``skipped``).

    A host still logging in when the interrupt comes is left at once (:data:`LEFT_CONNECTING`): its
    connect timeout does not hold the run. Every command after the login may change the host, so from
    the first one on it is finished as any host in flight. ``on_interrupt_left``, where given, hears
    the hosts to finish and those left, instead of ``on_interrupt``."""
    lock = threading.Lock()
    reports: dict[str, HostReport] = {}
    readinesses = Readinesses()

    def worked(name: str, readiness: Readiness) -> HostReport:
        try:
            transport = open_transport(name)
        except TrustAgentError as exc:
            return HostReport(name, "unreachable", error=str(exc))
        try:
            return work(_gated(transport, readiness))
        finally:
            transport.close()

    def one(name: str) -> HostReport:
        readiness = readinesses.take(name)
        report = unless_left(
            readiness,
            lambda: worked(name, readiness),
            lambda: HostReport(name, "skipped", error=LEFT_CONNECTING),
        )
        with lock:
            reports[name] = report
        if on_done is not None:
            on_done(report)
        return report

    with HostPool(min(forks, len(names)), on_interrupt, on_interrupt_left=on_interrupt_left) as pool:
        pool.map(one, names, leave_of=readinesses.leave_of)
    return [
        reports.get(name) or HostReport(name, "skipped", error=NOT_STARTED) for name in names
    ], pool.interrupted


def _gated(transport: Transport, readiness: Readiness) -> Transport:
    """``transport`` asking ``readiness`` before each step. Without a login to abandon (a local host)
    the host is finished as any in flight, from the start."""
    if not isinstance(transport, Connecting):
        readiness.changes()
        return transport
    return Gated(transport, readiness, transport.connect)


def report_line(report: HostReport) -> str:
    text = f"{report.host}: {report.status}"
    if report.detail:
        text += f": {report.detail}"
    if report.error:
        text += f": {report.error}"
    return f"{text} ({report.seconds:.1f}s)"
