"""What docker.service's own processes said when a start failed or a reload was refused, from its journal.

systemctl's message for a failed start ("Job for docker.service failed because the control process
exited with error code. See ...") names no reason; dockerd (or a site's ``ExecStartPre=`` check) logged
it. The apply script sends the unit's journal entries since just before the restart as JSON lines,
framed by ``@@ta unit-log`` and ``@@ta unit-log-end``; the entries that count are those after systemd's
"Starting ..." (the start job's own message, by its catalog ID) from processes other than systemd.

A reload dockerd refuses fails nothing systemd sees (``kill -HUP`` succeeds): dockerd logs the refusal
at level ``error`` right after "Got signal to reload configuration", and keeps its old config. Read from
the unit's last journal entries, such a line after the apply's own timestamp (``/proc/uptime``, the
clock of the journal's ``__MONOTONIC_TIMESTAMP``) ends the wait for the live config at once.
"""

from __future__ import annotations

import json
import re
from typing import Any

START_JOB_BEGUN = "7d4958e842da4a758f6c1cdc7b36dcc5"  # systemd's "Starting <unit>..." message
_BEGIN, _END = "@@ta unit-log", "@@ta unit-log-end"
# dockerd logs logfmt: time="..." level=error msg="..." ; the msg is what a person reads.
_MSG = re.compile(r'(?:^|\s)msg="((?:[^"\\]|\\.)*)"')
_LEVEL = re.compile(r"(?:^|\s)level=(\w+)")
RELOAD_SIGNAL = "Got signal to reload configuration"
RELOADED = "Reloaded configuration"  # dockerd's own line once a reload is taken
# The unit's last journal entries as JSON lines, for reload_refusal.
UNIT_JOURNAL_COMMAND = (
    "journalctl -u docker.service -n 40 -o json --output-fields=MESSAGE,_PID --no-pager 2>/dev/null"
)
# Shell for the apply script: the journal's cursor just before a restart (in $ucur) ...
START_CURSOR = "ucur=$(journalctl -n 0 --show-cursor -o cat 2>/dev/null); ucur=${ucur#-- cursor: }"
# ... and, where it fails, the unit's entries since then as JSON lines (bounded), framed for
# start_failure_lines.
START_LOG = (
    f'[ -z "$ucur" ] || {{ echo "{_BEGIN}"; journalctl -u docker.service --after-cursor="$ucur" '
    "-o json --output-fields=MESSAGE,MESSAGE_ID,_PID --no-pager 2>/dev/null | tail -n 40; "
    f'echo "{_END}"; }}'
)


def start_failure_note(stdout: bytes) -> str:
    """``docker.service said: a | b`` from a failed start's journal lines, or "" where there are none."""
    said = start_failure_lines(stdout)
    return f"docker.service said: {' | '.join(said)}" if said else ""


def start_failure_lines(stdout: bytes, limit: int = 3) -> list[str]:
    """The last ``limit`` messages docker.service's processes logged during the failed start.

    systemd may have started the unit again by the time the journal is read (``Restart=always``, as
    Docker's unit has it): where that newer attempt has said nothing yet, the one before it says why.
    """
    entries = [_entry(line) for line in _framed(stdout.decode("utf-8", "replace"))]
    valid = [e for e in entries if e is not None]
    starts = [i for i, e in enumerate(valid) if e.get("MESSAGE_ID") == START_JOB_BEGUN]
    for begun, ended in reversed(list(zip(starts, [*starts[1:], len(valid)], strict=False))):
        said = [
            _readable(e.get("MESSAGE")) for e in valid[begun + 1 : ended] if str(e.get("_PID", "")) != "1"
        ]
        if any(said):
            return [line for line in said if line][-limit:]
    return []


def reload_refusal(journal: str, since: float) -> str | None:
    """dockerd's reason for refusing the reload it got after ``since`` (seconds of uptime), from
    :data:`UNIT_JOURNAL_COMMAND`'s output; None where it took it, or has not got it yet."""
    entries = [e for e in map(_entry, journal.splitlines()) if e is not None]
    after = [e for e in entries if _monotonic(e) >= since * 1_000_000 and str(e.get("_PID", "")) != "1"]
    signals = [i for i, e in enumerate(after) if RELOAD_SIGNAL in str(e.get("MESSAGE", ""))]
    if not signals:
        return None
    for entry in after[signals[-1] + 1 :]:
        raw = entry.get("MESSAGE")
        if not isinstance(raw, str) or RELOADED in raw:  # dockerd took it: what follows is not about it
            return None
        level = _LEVEL.search(raw)
        if level and level.group(1) in ("error", "fatal"):
            return _readable(raw) or None
    return None


def _monotonic(entry: dict[str, Any]) -> float:
    try:
        return float(entry.get("__MONOTONIC_TIMESTAMP", -1))
    except (TypeError, ValueError):
        return -1.0


def _framed(text: str) -> list[str]:
    lines = text.splitlines()
    if _BEGIN not in lines:
        return []
    body = lines[lines.index(_BEGIN) + 1 :]
    return body[: body.index(_END)] if _END in body else body


def _entry(line: str) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def _readable(message: Any) -> str:
    """journald's MESSAGE (a string, or a list of byte values where it is not UTF-8), dockerd's logfmt
    reduced to its ``msg``, on one line."""
    if isinstance(message, list) and all(isinstance(b, int) and 0 <= b < 256 for b in message):
        message = bytes(message).decode("utf-8", "replace")
    if not isinstance(message, str):
        return ""
    match = _MSG.search(message)
    if match:
        message = match.group(1).replace('\\"', '"').replace("\\\\", "\\")
    return " ".join(message.split())[:300]
