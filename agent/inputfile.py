"""Reading an input file named on the command line: bounded in size, errors as one line."""

from __future__ import annotations

from collections.abc import Callable

from agent.errors import InputError


def read_bounded(path: str, limit: int, what: str, error: Callable[[str], InputError]) -> bytes:
    """The bytes of ``path``, at most ``limit`` of them (a larger file is not ``what``).

    ``error`` makes the exception of the caller's family from a message, e.g.
    ``lambda message: SourceError(message, path)``.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(f"larger than {limit} bytes: not {what}")
    return data
