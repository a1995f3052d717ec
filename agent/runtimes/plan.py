"""The plan for one host: file changes and the engine action. Runtime-agnostic, pure data."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal

from agent.names import without_userinfo

ChangeAction = Literal["create", "update", "delete"]
EngineAction = Literal["none", "reload", "restart"]

_ACTION_RANK: dict[EngineAction, int] = {"none": 0, "reload": 1, "restart": 2}


def stronger(a: EngineAction, b: EngineAction) -> EngineAction:
    """The action that covers both: restart > reload > none."""
    return a if _ACTION_RANK[a] >= _ACTION_RANK[b] else b


@dataclass(frozen=True)
class FileChange:
    """One file to create, rewrite or delete, by absolute path on the host (before any --root)."""

    path: str
    action: ChangeAction
    before: bytes | None
    after: bytes | None
    mode: int = 0o644
    internal: bool = False  # the agent's own bookkeeping (state file): applied, not shown as a diff

    def diff(self) -> str:
        """A unified diff, as ``diff -u`` would print it (``/dev/null`` for create/delete)."""
        before = (self.before or b"").decode("utf-8", "replace").splitlines(keepends=True)
        after = (self.after or b"").decode("utf-8", "replace").splitlines(keepends=True)
        lines = difflib.unified_diff(
            before,
            after,
            fromfile="/dev/null" if self.action == "create" else self.path,
            tofile="/dev/null" if self.action == "delete" else self.path,
        )
        return "".join(
            _redacted(line) if line.endswith("\n") else _redacted(line) + "\n\\ No newline at end of file\n"
            for line in lines
        )


# daemon.json holds other tools' settings, some of them secrets (a log driver's token, a proxy's
# password): a diff shows only that a value is there. Keys named like a secret, and user:pass@ in URLs.
_SECRET_VALUE = re.compile(
    r'("[^"\n]*(?:token|passw|secret|private|credential|apikey|api-key|api_key)[^"\n]*"\s*:\s*)'
    r'"(?:[^"\\\n]|\\.)*"',
    re.IGNORECASE,
)
# A URL's text after its scheme, to the end of the JSON string (or word) that holds it.
_URL_CREDENTIALS = re.compile(r'://[^\s"]+')


def _url_without_credentials(match: re.Match[str]) -> str:
    """``://user:pass@host`` → ``://***@host``. The userinfo runs to the *last* '@' of the authority, as
    Go splits it, and a password with '/' in it is found as names.without_userinfo finds it. A diff is
    only shown: all of a ``user:password`` shape before the last '@' is hidden, wherever a '/', '?' or
    '#' in the password ended the URL's authority (``user:12/34@proxy``)."""
    url = match.group(0)
    before, at, after = url.rpartition("@")
    if at and ":" in before.removeprefix("://"):
        return f"://***@{after}"
    shown = without_userinfo(url)
    if shown == url:  # no userinfo
        return url
    return "://***@" + shown.removeprefix("://").removeprefix("...@")


def _redacted(line: str) -> str:
    return _URL_CREDENTIALS.sub(_url_without_credentials, _SECRET_VALUE.sub(r'\1"***"', line))


@dataclass(frozen=True)
class HostPlan:
    """What must change on one host, and what dockerd must do to pick it up.

    ``blockers`` are reasons the plan must not be applied at all (flag conflicts, an unreadable
    daemon.json); a host with blockers is reported failed and left untouched.
    """

    changes: tuple[FileChange, ...] = ()
    mkdirs: tuple[str, ...] = ()  # directories to create first (mode 0755), parents before children
    rmdirs: tuple[str, ...] = ()  # directories the agent created and now leaves empty, after deletes
    engine_action: EngineAction = "none"
    # dockerd is left running registry settings other than daemon.json's (restart policy 'never'):
    # its live config is not checked against the file
    live_pending: bool = False
    reasons: tuple[str, ...] = ()  # why each change / the action
    warnings: tuple[str, ...] = ()
    blockers: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes or self.mkdirs or self.rmdirs)

    @property
    def visible_changes(self) -> tuple[FileChange, ...]:
        return tuple(c for c in self.changes if not c.internal)
