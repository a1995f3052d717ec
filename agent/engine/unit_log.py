"""What docker.service's own processes said when a start failed, from the journal the apply script sends.

systemctl's message for a failed start ("Job for docker.service failed because the control process
exited with error code. See ...") names no reason; dockerd (or a site's ``ExecStartPre=`` check) logged
it. The apply script sends the unit's journal entries since just before the restart as JSON lines,
framed by ``@@ta unit-log`` and ``@@ta unit-log-end``; the entries that count are those after systemd's
"Starting ..." (the start job's own message, by its catalog ID) from processes other than systemd.
"""

from __future__ import annotations

import json
import re
from typing import Any

START_JOB_BEGUN = "7d4958e842da4a758f6c1cdc7b36dcc5"  # systemd's "Starting <unit>..." message
_BEGIN, _END = "@@ta unit-log", "@@ta unit-log-end"
# dockerd logs logfmt: time="..." level=error msg="..." ; the msg is what a person reads.
_MSG = re.compile(r'(?:^|\s)msg="((?:[^"\\]|\\.)*)"')


def start_failure_lines(stdout: bytes, limit: int = 3) -> list[str]:
    """The last ``limit`` messages docker.service's processes logged during the failed start."""
    entries = [_entry(line) for line in _framed(stdout.decode("utf-8", "replace"))]
    valid = [e for e in entries if e is not None]
    starts = [i for i, e in enumerate(valid) if e.get("MESSAGE_ID") == START_JOB_BEGUN]
    after = valid[starts[-1] + 1 :] if starts else []
    said = [_readable(e.get("MESSAGE")) for e in after if str(e.get("_PID", "")) != "1"]
    return [line for line in said if line][-limit:]


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
