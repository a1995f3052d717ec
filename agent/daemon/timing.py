"""Durations on the command line, jitter, and the back-off schedule: pure functions."""

from __future__ import annotations

import re

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
