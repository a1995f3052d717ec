"""The daemon's state directory and atomic writes for its files (state, status, metrics)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

# Root's alone to list; others may still open a file there by name. status.json (0644) is meant for
# monitoring that does not run as root, while the kept policy and the locks are 0600 and the engine's
# daemon.json backups sit in a 0700 directory.
STATE_DIR_MODE = 0o711


def prepare_state_dir(path: Path, *, tighten: bool) -> bool:
    """Make the state directory (``STATE_DIR_MODE``) if it is missing; with ``tighten``, take from an
    existing one what ``STATE_DIR_MODE`` does not grant. Whether the mode was changed.

    ``tighten`` is for trust-agent's own directory: systemd's ``StateDirectory=`` and a rollout's apply
    make it 0755. A directory someone named is theirs: it may be shared, and is left as it is.
    """
    path.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
    if not tighten:
        return False
    mode = path.stat().st_mode & 0o7777
    wanted = mode & (STATE_DIR_MODE | 0o7000)  # the special bits are not about who reads
    if wanted == mode:
        return False
    os.chmod(path, wanted)
    return True


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    Temp file in the same directory, fsync, rename: node_exporter's textfile collector and anyone
    reading the status file can read at any moment.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
