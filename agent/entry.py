"""The ``trust-agent`` command's entry point: an interrupt while the CLI is still being imported ends
the process as an interrupted run does (exit 130), not with a traceback from the middle of an import."""

from __future__ import annotations

import os
import sys
from typing import NoReturn


def main() -> NoReturn:
    try:
        from agent.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        os._exit(130)
    cli_main()
