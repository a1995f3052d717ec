"""paramiko, imported without invoke.

paramiko imports invoke (with asyncio and unittest.mock: about 60 ms, a fifth of the CLI's start-up)
only to run the commands of ``Match exec`` lines in an ssh_config. It is imported here with invoke
kept out, and :func:`enable_match_exec` hands invoke over the first time such a line is met.
"""

from __future__ import annotations

import logging
import sys

_blocked = "invoke" not in sys.modules
if _blocked:
    sys.modules["invoke"] = None  # type: ignore[assignment]  # None here makes `import invoke` fail
try:
    import paramiko
    import paramiko.config
    from paramiko.ssh_exception import NoValidConnectionsError
finally:
    if _blocked and "invoke" in sys.modules and sys.modules["invoke"] is None:
        del sys.modules["invoke"]


# paramiko logs a refused channel (sshd forbidding the engine API's route, no engine socket) at ERROR;
# with no handler configured Python would print it on stderr. The refusal is handled (the API is read
# on the host instead) and reported where it matters, so paramiko's own records go nowhere.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


def enable_match_exec() -> None:
    """Give paramiko's ssh_config parser the invoke it was imported without."""
    import invoke

    paramiko.config.invoke = invoke  # type: ignore[attr-defined]


__all__ = ["NoValidConnectionsError", "enable_match_exec", "paramiko"]
