"""How a run reconciles its hosts: the options every host of a run shares.

Apart from the engine (``agent.engine.reconcile`` and what it imports), so the command line can read
them before it has loaded the engine.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Literal

RestartPolicy = Literal["auto", "reload", "restart", "never"]


def new_backup_stamp(now: float | None = None) -> str:
    """A backup name no other run shares: UTC to the second (names sort by time), then random hex, so
    two runs in the same second never meet at one backup path."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + secrets.token_hex(3)


@dataclass(frozen=True)
class RunOptions:
    """How to reconcile hosts; shared by every host of a run."""

    dry_run: bool = False
    root: str = ""  # a directory tree instead of the live system (image baking, tests)
    restart_policy: RestartPolicy = "auto"
    allow_restart: bool = False
    verify: bool = True
    canary_image: str | None = None
    # A one-shot run proves every host it reaches; the daemon only those it changed: a canary removed
    # and pulled again every interval churns the engine, and a registry outage would leave it gone.
    canary_unchanged: bool = True
    command_timeout: float = 120.0
    verify_timeout: float = 20.0
    restart_timeout: float = 90.0
    backup_stamp: str = field(default_factory=new_backup_stamp)
