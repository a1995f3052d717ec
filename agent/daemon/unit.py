"""The systemd unit for the daemon, for image builders and ``daemon install``.

Choices, each for a reason:
- ``Type=notify``: systemd considers the service started once the first cycle has run (READY=1),
  so ``systemctl start`` returns with the host already converged (or the error in ``systemctl status``).
- ``WatchdogSec``: a hung daemon is restarted. The loop pings at half the period while idle and
  after every cycle; a cycle is bounded by the engine's timeouts (commands, reload, verify), so the
  default leaves room for the slowest one (a dockerd restart with verification and a roll-back).
- ``ExecStopPost=``: runs however the daemon ended. A daemon that was SIGKILLed (the OOM killer, the
  watchdog's SIGABRT past its stop timeout) never wrote "stopped": the hook does, unless a live daemon
  holds the state directory (``daemon run --mark-stopped``, hidden from help). ``-``: its own failure
  is no reason to call the service failed.
- ``KillMode=mixed``: SIGTERM goes to the daemon alone, so an apply in progress (a child ``sh``)
  finishes before the daemon exits, instead of being killed half way.
- ``SyslogLevelPrefix=yes`` (systemd's default, written out because the logs depend on it): each
  log line's ``<N>`` prefix sets its priority in the journal, so errors and warnings show as such.
- ``StateDirectoryMode=0711`` (systemd's default is 0755): others may read status.json by its name,
  not list the kept policy, the locks or the engine's backups (``agent.daemon.files``).
- Credentials come from the 0600 config file or ``EnvironmentFile=``, never from ``ExecStart``,
  which any local user can read.
"""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass

DEFAULT_PREFIX = "/opt/trust-agent/venv"
DEFAULT_CONFIG = "/etc/trust-agent/daemon.yml"
DEFAULT_ENV_FILE = "/etc/trust-agent/daemon.env"
# `daemon run` option (hidden from help) the unit's ExecStopPost= gives: say "stopped" for a daemon
# that could not say it itself.
MARK_STOPPED = "--mark-stopped"


@dataclass(frozen=True)
class UnitOptions:
    prefix: str = DEFAULT_PREFIX  # the virtualenv holding trust-agent
    config: str = DEFAULT_CONFIG
    env_file: str | None = DEFAULT_ENV_FILE
    watchdog_seconds: int = 600
    start_timeout_seconds: int = 900  # the first cycle runs before READY=1
    stop_timeout_seconds: int = 600  # the current step finishes before exit


def hidden_from_the_service(path: str) -> str | None:
    """Why the service, sandboxed as the unit below says, could not use ``path`` where others see it (a
    path as the host resolves it, symbolic links followed), if so."""
    normal = "/" + posixpath.normpath(path).lstrip("/")  # "/var/../home/x" is /home/x
    if normal.startswith(("/tmp/", "/var/tmp/")):
        return "the service has a private /tmp (PrivateTmp=yes): no one else would see the file"
    if normal.startswith(("/root/", "/home/", "/run/user/")):
        return "the service cannot write home directories (ProtectHome=yes)"
    return None


def _literal(value: str) -> str:
    """``value`` written so that systemd reads it back unchanged: ``%`` starts a specifier (``%h``,
    ``%n``) in every unit setting, quoted or not, so a path's own ``%`` is written ``%%``."""
    return value.replace("%", "%%")


def render_unit(options: UnitOptions = UnitOptions()) -> str:
    # systemd splits ExecStart= at spaces and honours quotes: each word quoted, its specifiers escaped,
    # and its '$' too (ExecStart= expands $VAR and ${VAR}).
    exec_start = " ".join(
        shlex.quote(_literal(word).replace("$", "$$"))
        for word in (
            f"{options.prefix.rstrip('/')}/bin/trust-agent",
            "daemon",
            "run",
            "--config",
            options.config,
        )
    )
    mark_stopped = f"{exec_start} {MARK_STOPPED}"
    # One path, never split: nothing to quote, only the specifiers to escape.
    env_line = f"EnvironmentFile=-{_literal(options.env_file)}\n" if options.env_file else ""
    return f"""\
# Installed by trust-agent: keeps this Docker engine trusting the private registry and its storage.
[Unit]
Description=trust-agent: keep this Docker engine trusting the private registry
Wants=network-online.target
After=network-online.target docker.service
StartLimitIntervalSec=600
StartLimitBurst=5

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
ExecStopPost=-{mark_stopped}
{env_line}Restart=on-failure
RestartSec=10s
WatchdogSec={options.watchdog_seconds}s
TimeoutStartSec={options.start_timeout_seconds}s
TimeoutStopSec={options.stop_timeout_seconds}s
KillMode=mixed
SyslogLevelPrefix=yes
StateDirectory=trust-agent
StateDirectoryMode=0711
UMask=0022
NoNewPrivileges=yes
PrivateTmp=yes
ProtectHome=yes

[Install]
WantedBy=multi-user.target
"""


EXAMPLE_CONFIG = """\
# /etc/trust-agent/daemon.yml: options of `trust-agent daemon run` (chmod 600 when it holds a token).
source: /etc/docker/registry/config.yml     # or https://dtr.example.com (a live DTR/MSR)
# registry: [registry.example.com, registry.example.com:443]
# storage_ca: /etc/trust-agent/storage-ca.pem
# registry_ca: /etc/trust-agent/registry-ca.pem
# source_ca: /etc/trust-agent/dtr-ca.pem    # verifies a live DTR
# dtr_user: trust-agent                     # or TRUST_AGENT_DTR_USER in /etc/trust-agent/daemon.env
# dtr_token: ...                            # or TRUST_AGENT_DTR_TOKEN there
interval: 60s
max_backoff: 10m
state_dir: /var/lib/trust-agent
status_file: /var/lib/trust-agent/status.json
# metrics_file: /var/lib/node_exporter/textfile_collector/trust_agent.prom
restart_policy: auto
allow_restart: false
"""
