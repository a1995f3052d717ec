"""One daemon per state directory: an exclusive ``flock`` on ``<state-dir>/daemon.lock`` for its life.

Two daemons on one state directory would each keep their own policy as *the* last good one, and the
service could later restore a policy that a hand-run daemon on another source adopted. The lock is
taken before anything is read or written; the holder writes its PID into the file so that a second
daemon can say who holds it. The kernel drops the lock when the process ends, however it ends.

This is not the engine's host lock (``<state-dir>/lock``, held by one apply at a time): a daemon
holds its own lock for its whole life and takes the host lock only while applying.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from agent.daemon.files import STATE_DIR_MODE
from agent.errors import InputError

FILE_NAME = "daemon.lock"


class DaemonLockError(InputError):
    """Another daemon holds the state directory (or its lock file cannot be opened); nothing is touched."""


@contextlib.contextmanager
def hold_daemon_lock(state_dir: Path) -> Iterator[Path]:
    """Hold the state directory's daemon lock while the block runs; ``DaemonLockError`` if held."""
    path = state_dir / FILE_NAME
    fd = _open(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            who = f"pid {holder}" if holder else "another process"
            raise DaemonLockError(
                f"held by another trust-agent daemon ({who}): one daemon per state directory", str(path)
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def unless_a_daemon_holds(state_dir: Path) -> Iterator[bool]:
    """Whether no daemon holds the state directory's lock (then held here while the block runs, so that
    none starts meanwhile). Never creates the lock file or its directory, never writes to it."""
    try:
        fd = os.open(state_dir / FILE_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        yield True  # no daemon ever ran here, or uninstall removed it
        return
    except NotADirectoryError:
        yield True  # a state "directory" that is a file (one that could not be made): none holds a lock there
        return
    except OSError:
        yield False  # cannot tell: as if held
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)


def _open(path: Path) -> int:
    # The state directory's mode (files.STATE_DIR_MODE); never through a link; 0600 so that a user who
    # could open the file could not hold it and keep the daemon from starting.
    try:
        path.parent.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise DaemonLockError(f"cannot open the daemon lock: {exc.strerror or exc}", str(path)) from None
    with contextlib.suppress(OSError):  # a file made before under another umask; not ours to fail on
        os.fchmod(fd, 0o600)
    return fd


def _holder(fd: int) -> int | None:
    """The PID the holder wrote, when it is one."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
