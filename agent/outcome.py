"""Results you can hold: one outcome per host, one fleet result that reports and exit codes read.

Like Fabric's ``GroupResult``: ``FleetResult.failed`` and ``.succeeded`` split the hosts, and every
report format renders the same object.

>>> result.failed            # doctest: +SKIP
(HostOutcome(host='h2', status='unreachable', ...),)
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Literal

from agent.runtimes.plan import EngineAction, HostPlan
from agent.trust import TrustPolicy

# unchanged: converged, nothing done. pending: a dry run found changes. changed: converged by this run.
# failed: refused or failed with nothing changed (or restored). rolled_back: changed, failed, restored.
# unreachable: could not connect. skipped: not started (failure budget exceeded).
Status = Literal["unchanged", "pending", "changed", "failed", "rolled_back", "unreachable", "skipped"]
FAILED_STATUSES: frozenset[str] = frozenset({"failed", "rolled_back", "unreachable"})

PhaseName = Literal["connect", "gather", "plan", "apply", "reload", "verify", "rollback"]


@dataclass(frozen=True)
class Phase:
    """One step of one host's run, in seconds since the fleet run started."""

    name: PhaseName
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class HostOutcome:
    host: str
    status: Status
    plan: HostPlan | None = None
    engine_action: EngineAction = "none"  # taken, or (dry run) that would be taken
    engine_version: str | None = None
    checks: tuple[str, ...] = ()  # validations that ran, e.g. "dockerd --validate", "agent checks"
    verified: tuple[str, ...] = ()  # what verification proved, e.g. "live config", "canary pull"
    error: str | None = None
    warnings: tuple[str, ...] = ()
    phases: tuple[Phase, ...] = ()
    # An apply's or roll-back's script never said how it ended (timed out, cut off): which files it left
    # changed is not known.
    changes_unknown: bool = False

    def __post_init__(self) -> None:
        # Errors and warnings quote what hosts said (journal lines, command output): every report and
        # the terminal print them, and an escape sequence there would rewrite the engineer's terminal.
        if self.error is not None:
            object.__setattr__(self, "error", printable(without_sdk_urls(self.error)))
        object.__setattr__(self, "warnings", tuple(printable(without_sdk_urls(w)) for w in self.warnings))

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES


# The docker SDK names the engine by a URL of its own (http+docker://localhost/v1.41/images/create?...),
# which is no address a person can use: its errors say "404 Client Error for <url>: Not Found (...)",
# requests' say "...: Not Found for url: <url>". A URL ends at a space or at the ": " after it.
_SDK_URL = r"http\+docker://\S*?(?=:\s|\s|$)"
_FOR_SDK_URL = re.compile(rf" for(?: url:)? {_SDK_URL}")
_ANY_SDK_URL = re.compile(_SDK_URL)


def without_sdk_urls(text: str) -> str:
    """``text`` without the docker SDK's internal URLs of the engine's API.

    >>> without_sdk_urls('404 Client Error for http+docker://ssh/v1.41/images/create?tag=1: Not Found')
    '404 Client Error: Not Found'
    """
    if "http+docker://" not in text:
        return text
    return _ANY_SDK_URL.sub("the engine's API", _FOR_SDK_URL.sub("", text))


def printable(text: str) -> str:
    """``text`` with control and format characters (escape sequences, bidirectional overrides) written
    as escapes (``\\x1b``); line breaks become spaces and tabs stay.

    >>> printable("said: \\x1b[2J\\x1b]0;title\\x07red\\nnext")
    'said: \\\\x1b[2J\\\\x1b]0;title\\\\x07red next'
    """
    if text.isprintable():
        return text
    return "".join(_printable_char(c) for c in text)


# Controls (C0, DEL, C1: escape sequences), format characters (bidirectional overrides), and line and
# paragraph separators; letters of any script, unassigned or private ones included, stay as they are.
_ESCAPED = frozenset({"Cc", "Cf", "Zl", "Zp"})


def _printable_char(char: str) -> str:
    if char in "\n\r":
        return " "
    if char == "\t" or unicodedata.category(char) not in _ESCAPED:
        return char
    return ascii(char)[1:-1]


@dataclass(frozen=True)
class FleetResult:
    mode: Literal["plan", "apply", "rollout", "verify"]
    policy: TrustPolicy
    outcomes: tuple[HostOutcome, ...]
    started_at: str  # ISO 8601, UTC
    seconds: float
    stopped: str | None = None  # why the run stopped early (failure budget, an interrupt), if it did
    warnings: tuple[str, ...] = field(default=())
    interrupted: bool = False  # by SIGINT or SIGTERM: the hosts in flight finished, no other started
    # verify's and rollout's TLS handshakes from this machine, as printed: "tls <target>: ok" or the problem
    tls_checks: tuple[str, ...] = field(default=())
    input_error: str | None = None  # bad input ended the run before any host started

    @property
    def failed(self) -> tuple[HostOutcome, ...]:
        return tuple(o for o in self.outcomes if o.failed)

    @property
    def succeeded(self) -> tuple[HostOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.failed and o.status != "skipped")

    @property
    def pending(self) -> bool:
        """Some host has changes a dry run would make."""
        return any(o.status == "pending" for o in self.outcomes)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return counts
