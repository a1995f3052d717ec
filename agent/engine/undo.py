"""Undo records: what a later step needs to put a host's files back as they were before an apply.

``trust-agent rollout`` rolls a host back in the same run, from the plan it holds. The Ansible role
verifies in a later task, so the apply's result carries a record of it instead, as plain JSON. The
record never carries daemon.json's previous content off the host (it may hold proxy credentials):
the apply's own backup keeps it there, and the record names that backup. The other files are the
agent's own (CA certificates, its state file) and travel as base64.

Undoing reads every file the apply wrote, as it is now, and puts the previous one back only where the
host still holds what the apply wrote: a file someone changed since is left alone and the undo
refused, nothing written.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import shlex
from collections.abc import Mapping
from typing import Any

from agent.engine.apply_script import backed_up, inverse
from agent.errors import ApplyError
from agent.runtimes.plan import FileChange, HostPlan

RECORD_VERSION = 1
MARK = "@@ta-undo"
_CHANGE_ACTIONS = ("create", "update", "delete")
_ENGINE_ACTIONS = ("none", "reload", "restart")


class UndoRefused(ApplyError):
    """The host no longer holds what the apply wrote, or the record cannot be used: nothing restored."""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def undo_record(
    plan: HostPlan,
    *,
    engine_action: str,
    init: str | None,
    daemon_json_path: str,
    daemon_json_backup: str | None,
) -> dict[str, Any]:
    """The record of an applied ``plan`` (JSON types only). ``daemon_json_backup`` is where the apply
    copied the previous daemon.json on the host (None when daemon.json was not there before)."""
    changes: list[dict[str, Any]] = []
    for change in plan.changes:
        entry: dict[str, Any] = {
            "path": change.path,
            "action": change.action,
            "mode": change.mode,
            "internal": change.internal,
            "after_sha256": None if change.after is None else _sha(change.after),
        }
        if backed_up(change, daemon_json_path):
            if daemon_json_backup is None:
                raise ValueError("daemon.json was replaced: its backup's path is needed")
            entry["before_from"] = daemon_json_backup
            # What the backup must hold to be restored: not a copy cut short (a full disk), nor one
            # changed since.
            entry["before_sha256"] = _sha(change.before or b"")
        else:
            entry["before"] = None if change.before is None else base64.b64encode(change.before).decode()
        changes.append(entry)
    return {
        "version": RECORD_VERSION,
        "engine_action": engine_action,
        "init": init,
        "daemon_json_path": daemon_json_path,
        "mkdirs": list(plan.mkdirs),
        "rmdirs": list(plan.rmdirs),
        "changes": changes,
    }


def read_script(record: Mapping[str, Any]) -> str:
    """A POSIX sh program printing every file the record names as it is now (``MARK path`` then its
    base64, or ``-`` for no such file): the applied files and the backups to restore from. Its one
    argument is the root the paths are under (empty: the host's own)."""
    _check(record)
    lines = [
        "R=${1:-}",
        'p() { if [ -f "$R$1" ]; then base64 -w0 < "$R$1" || exit 1; else printf -- -; fi; echo; }',
    ]
    for path in _paths(record):
        lines.append(f"echo {shlex.quote(MARK + ' ' + path)}; p {shlex.quote(path)}")
    return "\n".join(lines) + "\n"


def parse_read(text: str) -> dict[str, bytes | None]:
    """:func:`read_script`'s output → path: content (None for no such file)."""
    found: dict[str, bytes | None] = {}
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith(MARK + " ") and index + 1 < len(lines):
            payload = lines[index + 1]
            try:
                found[line[len(MARK) + 1 :]] = (
                    None if payload == "-" else base64.b64decode(payload, validate=True)
                )
            except (binascii.Error, ValueError):
                raise UndoRefused(f"unreadable content for {line[len(MARK) + 1 :]} from the host") from None
    return found


def undo_plan(record: Mapping[str, Any], current: Mapping[str, bytes | None]) -> HostPlan:
    """The plan that puts the previous files back, given what the host holds now (``current``, as
    :func:`parse_read` returns it). Raises :class:`UndoRefused` where a file is not what the apply
    wrote any more, or a backup is missing."""
    _check(record)
    entries = list(record["changes"])
    applied: list[FileChange] = []
    for index, entry in enumerate(entries):
        path = str(entry["path"])
        if path not in current:
            raise UndoRefused(f"{path} was not read back from the host")
        later = next((e for e in entries[index + 1 :] if e["path"] == path), None)
        if later is not None:
            # A path the apply wrote twice (the agent's record): this write was followed by the later
            # one, whose previous content is this one's result; only the last is checked on the host.
            applied.append(_applied(entry, _before(entry, current), _before(later, current)))
            continue
        now = current[path]
        if entry["after_sha256"] is None:
            if now is not None:
                raise UndoRefused(f"{path} was deleted by the apply and has come back since: left alone")
        elif now is None or _sha(now) != entry["after_sha256"]:
            raise UndoRefused(f"{path} changed since it was written: left alone")
        applied.append(_applied(entry, _before(entry, current), now))
    forward = HostPlan(
        changes=tuple(applied),
        mkdirs=tuple(record["mkdirs"]),
        rmdirs=tuple(record["rmdirs"]),
        engine_action=record["engine_action"],
    )
    return inverse(forward)


def _applied(entry: Mapping[str, Any], before: bytes | None, after: bytes | None) -> FileChange:
    internal = bool(entry.get("internal", False))
    return FileChange(str(entry["path"]), entry["action"], before, after, entry["mode"], internal)


def _check(record: Mapping[str, Any]) -> None:
    """Refuse anything but a record :func:`undo_record` made (it arrives through a playbook variable)."""
    if not isinstance(record, Mapping) or record.get("version") != RECORD_VERSION:
        raise UndoRefused("not an undo record of this version: registry_trust's `undo` result is needed")
    if record.get("engine_action") not in _ENGINE_ACTIONS:
        raise UndoRefused(f"unknown engine action {record.get('engine_action')!r} in the undo record")
    for key in ("mkdirs", "rmdirs", "changes"):
        if not isinstance(record.get(key), list):
            raise UndoRefused(f"the undo record has no {key} list")
    for entry in record["changes"]:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("path"), str):
            raise UndoRefused("an undo record entry without a path")
        if entry.get("action") not in _CHANGE_ACTIONS:
            raise UndoRefused(
                f"unknown action {entry.get('action')!r} for {entry['path']} in the undo record"
            )
        if not isinstance(entry.get("mode"), int) or "after_sha256" not in entry:
            raise UndoRefused(f"the undo record entry for {entry['path']} has no mode or after_sha256")


def _before(entry: Mapping[str, Any], current: Mapping[str, bytes | None]) -> bytes | None:
    backup = entry.get("before_from")
    if backup is None:
        encoded = entry.get("before")
        try:
            return None if encoded is None else base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise UndoRefused(f"the undo record's content for {entry['path']} is not base64") from None
    content = current.get(str(backup))
    if content is None:
        raise UndoRefused(f"the backup {backup} of {entry['path']} is gone: nothing to restore from")
    wanted = entry.get("before_sha256")  # records from before it was kept have none
    if wanted is not None and _sha(content) != wanted:
        raise UndoRefused(
            f"the backup {backup} ({len(content)} bytes) does not hold the {entry['path']} the apply "
            "replaced (a copy cut short, or changed since): nothing restored"
        )
    return content


def _paths(record: Mapping[str, Any]) -> list[str]:
    paths: list[str] = []
    for entry in record["changes"]:
        paths.append(str(entry["path"]))
        if entry.get("before_from"):
            paths.append(str(entry["before_from"]))
    return paths
