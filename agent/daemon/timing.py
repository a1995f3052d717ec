"""Durations on the command line, jitter, and the back-off schedule: pure functions."""

from __future__ import annotations

import math
import re

from agent.engine.options import RunOptions
from agent.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str, where: str = "duration") -> float:
    """``"90s"``, ``"5m"``, ``"1h"``, ``"250ms"`` or plain seconds → seconds.

    >>> parse_duration("5m")
    300.0
    """
    match = _DURATION.match(text)
    if not match:
        raise UsageError(f"{text!r} is not a duration (e.g. 30s, 5m, 1h)", where)
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise UsageError("must be more than zero", where)
    return seconds


MIN_INTERVAL = 1.0


def parse_interval(text: str, where: str = "--interval") -> float:
    """A poll interval: a duration of at least a second (every cycle reads the source and the host;
    ``1ms`` would keep both busy for nothing).

    >>> parse_interval("30s")
    30.0
    """
    seconds = parse_duration(text, where)
    if seconds < MIN_INTERVAL:
        raise UsageError(f"{text!r}: at least 1s (every cycle reads the source and the host)", where)
    return seconds


def backoff_delay(failures: int, interval: float, cap: float) -> float:
    """Seconds to wait before polling again after ``failures`` consecutive source faults.

    The first retry comes after one interval, then 2, 4, 8… intervals, never more than ``cap``
    (nor less than one interval): a source outage costs the source less and less, while the host
    is still reconciled against the last good policy every interval.

    >>> [backoff_delay(n, 10, 60) for n in range(0, 6)]
    [10, 10, 20.0, 40.0, 60, 60]
    """
    if failures <= 1:
        return interval
    ceiling = max(cap, interval)
    # Bounded exponent: 2**failures overflows a float after ~1000 failures.
    return min(ceiling, interval * 2.0 ** min(failures - 1, 60))


def jittered(delay: float, jitter: float, draw: float) -> float:
    """Shorten ``delay`` by up to ``jitter`` (a fraction) so a fleet does not poll in lockstep.

    Only ever shorter, so that a drift is still repaired within one interval. ``draw`` is in [0, 1).
    """
    return delay * (1.0 - min(max(jitter, 0.0), 0.9) * draw)


def longest_cycle_seconds(options: RunOptions) -> float:
    """How long one cycle may take at most, by the engine's own timeouts: reading the host, the apply
    script (dockerd's reload or restart in it), waiting for a restarted dockerd, verifying, and a
    roll-back's script when the change does not hold."""
    commands = 3 * options.command_timeout  # gather, apply, roll-back
    return commands + options.restart_timeout + 2 * options.verify_timeout  # live-restore read, verify


def watchdog_seconds(text: str, options: RunOptions, where: str = "--watchdog") -> int:
    """WatchdogSec from ``text``, refused below the longest cycle: the daemon pings systemd's watchdog
    only between cycles, so a shorter one aborts a slow cycle (a hung dockerd) in the middle of an
    apply, and KillMode=mixed then kills the apply shell before it can roll back."""
    seconds = max(1, round(parse_duration(text, where)))
    floor = math.ceil(longest_cycle_seconds(options))
    if seconds < floor:
        raise UsageError(
            f"{text} is shorter than one cycle may take: up to {floor}s ({options.command_timeout:g}s "
            f"each to read the host, apply and roll back, {options.restart_timeout:g}s for dockerd to "
            f"come back from a restart, {options.verify_timeout:g}s twice to verify). The daemon pings "
            f"the watchdog only between cycles, so systemd would kill a slow cycle mid-apply, before "
            f"it can roll back: give at least {floor}s",
            where,
        )
    return seconds
