"""Whether reaching the engine's API socket would start a stopped dockerd.

Docker's packages (Debian's docker.io, docker-ce) ship ``docker.socket`` beside ``docker.service``:
``systemctl stop docker`` stops dockerd but leaves the socket listening (systemd warns "it can still be
activated by docker.socket"), and the first connection to ``/var/run/docker.sock`` makes systemd start
dockerd again. The agent never starts a stopped engine: not in a dry run, and not in the per-host
daemon, which would undo an operator's ``systemctl stop docker`` within a minute. Where docker.service
does not run and a socket unit that triggers it listens, nothing connects to the socket (no ``/_ping``,
no ``/info``, no curl); the host's files are written and take effect when dockerd next starts.
"""

from __future__ import annotations

import os
import subprocess

# systemd keeps this link while docker.service runs (from the start job on); it points at the
# invocation ID, not at a file, hence -L / islink.
INVOCATION_LINK = "/run/systemd/units/invocation:docker.service"

SYSTEMD_DIR = "/run/systemd/system"  # present where systemd is the init system


def asleep_function(systemd_dir: str = SYSTEMD_DIR, invocation_link: str = INVOCATION_LINK) -> str:
    """The shell function ``ta_engine_asleep``: true where docker.service is not running and one of its
    trigger sockets listens. The common case (docker.service runs, or no systemd) is shell tests alone,
    no process; the rest asks systemctl, once per script (the answer is kept in ``ta_asleep``).
    ``is-active`` with several units is true when any of them is active."""
    return rf"""
ta_engine_asleep() {{
  if [ -z "${{ta_asleep:-}}" ]; then
    ta_asleep=no
    if [ -d {systemd_dir} ] && [ ! -L {invocation_link} ]; then
      ta_by=$(systemctl show -p TriggeredBy docker.service 2>/dev/null); ta_by=${{ta_by#TriggeredBy=}}
      if [ -n "$ta_by" ] && ! systemctl is-active --quiet docker.service \
          && systemctl is-active --quiet $ta_by; then ta_asleep=yes; fi
    fi
  fi
  [ "$ta_asleep" = yes ]
}}
"""


ASLEEP_FUNCTION = asleep_function()

# The answer is not kept for the session's scripts (they run in its shell): each asks again.
HELLO = ASLEEP_FUNCTION + (
    "if ta_engine_asleep; then ta_hello=asleep; else ta_hello=awake; fi; unset ta_asleep ta_by\n"
)


def engine_asleep_here() -> bool:
    """:func:`ta_engine_asleep` on this machine (the local transport): no process where docker.service
    runs or there is no systemd."""
    if not os.path.isdir(SYSTEMD_DIR) or os.path.islink(INVOCATION_LINK):
        return False
    try:
        done = subprocess.run(
            ["sh", "-c", ASLEEP_FUNCTION + "ta_engine_asleep"], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return True  # systemd did not say: leave the engine alone
    return done.returncode == 0
