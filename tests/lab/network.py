"""The lab's isolated network: a bridge inside a namespace of its own, veths to each member.

Nothing is created in the machine's own namespace, and the bridge has no uplink or route out.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tests.lab.procs import run

NETNS_DIR = Path("/run/netns")
BRIDGE = "br0"
PREFIX = 24
_CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def ns_path(name: str) -> Path:
    return NETNS_DIR / name


def exists(name: str) -> bool:
    return ns_path(name).exists()


def _ip(*args: str) -> None:
    run(["ip", *args], timeout=20)


def create_bridge_ns(name: str, address: str) -> None:
    _ip("netns", "add", name)
    _ip("-n", name, "link", "set", "lo", "up")
    _ip("-n", name, "link", "add", BRIDGE, "type", "bridge")
    _ip("-n", name, "addr", "add", f"{address}/{PREFIX}", "dev", BRIDGE)
    _ip("-n", name, "link", "set", BRIDGE, "up")


def attach(lab_ns: str, name: str, port: str, address: str) -> None:
    """A namespace NAME whose eth0 (ADDRESS) is plugged into the lab bridge as PORT."""
    _ip("netns", "add", name)
    _ip("-n", lab_ns, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", name)
    _ip("-n", lab_ns, "link", "set", port, "master", BRIDGE, "up")
    _ip("-n", name, "addr", "add", f"{address}/{PREFIX}", "dev", "eth0")
    _ip("-n", name, "link", "set", "eth0", "up")
    _ip("-n", name, "link", "set", "lo", "up")


def delete(name: str) -> None:
    """Deleting a namespace destroys the veths inside it, and with them their bridge ports."""
    if exists(name):
        run(["ip", "netns", "del", name], timeout=20, check=False)


def nsenter(name: str) -> list[str]:
    # Not `ip netns exec`: that remounts /sys, which the lab's host processes must keep.
    return ["nsenter", f"--net={ns_path(name)}", "--"]


def in_netns(name: str, fn: Callable[[], T]) -> T:
    """Run FN in a thread that joined namespace NAME: sockets it opens live there.

    setns(CLONE_NEWNET) moves only the calling thread, so the rest of the process stays put.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(ns_path(name), os.O_RDONLY)
        try:
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {name}")
        finally:
            os.close(fd)
        try:
            result.append(fn())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name=f"netns-{name}")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def wait_tcp(name: str, address: str, port: int, timeout: float) -> None:
    """Wait until ADDRESS:PORT accepts connections, as seen from namespace NAME."""

    def probe() -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((address, port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{address}:{port} not listening after {timeout:.0f}s") from None
                time.sleep(0.1)

    in_netns(name, probe)
