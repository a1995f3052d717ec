"""What the floors share: the lab's addresses, and a thread pool that runs one function per host and
prints ``{"hosts", "failed", "seconds"}`` (in-process seconds since ``start``)."""

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


def lab_addresses(lab: str) -> list[str]:
    with open(os.path.join(lab, "lab.json")) as f:
        return [h["address"] for h in json.load(f)["hosts"]]


def run_pool(addresses: list[str], workers: int, one: Callable[[str], int], start: float) -> int:
    """``one(address)`` for every host, ``workers`` at once; exit status 1 when any returned non-zero."""
    with ThreadPoolExecutor(max_workers=min(workers, len(addresses))) as pool:
        statuses = list(pool.map(one, addresses))
    elapsed = time.monotonic() - start
    print(json.dumps({"hosts": len(addresses), "failed": sum(1 for s in statuses if s), "seconds": elapsed}))
    return 1 if any(statuses) else 0
