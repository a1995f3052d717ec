"""The S3 server (moto) the registry stores its blobs on, with TLS from the lab's storage CA."""

from __future__ import annotations

import http.client
import ssl
import sys
from pathlib import Path

from tests.lab import network
from tests.lab.layout import BUCKET, S3_ADDRESS, S3_PORT, Layout
from tests.lab.procs import Proc, clean_env, spawn

MOTO = Path(sys.executable).with_name("moto_server")


def endpoint(secure: bool) -> str:
    return f"{'https' if secure else 'http'}://{S3_ADDRESS}:{S3_PORT}"


def start(layout: Layout, ns: str, cert: Path | None, key: Path | None) -> Proc:
    argv = [*network.nsenter(ns), str(MOTO), "-H", S3_ADDRESS, "-p", str(S3_PORT)]
    if cert and key:
        argv += ["-c", str(cert), "-k", str(key)]
    return spawn(argv, layout.log_dir / "s3.log", env=clean_env())


def create_bucket(layout: Layout, ca: Path | None, timeout: float) -> None:
    """Make the registry's bucket (moto starts empty); a PUT on the bucket is S3's CreateBucket."""
    network.wait_tcp(layout.lab_ns, S3_ADDRESS, S3_PORT, timeout)

    def put() -> int:
        conn: http.client.HTTPConnection
        if ca is not None:
            ctx = ssl.create_default_context(cafile=str(ca))
            conn = http.client.HTTPSConnection(S3_ADDRESS, S3_PORT, context=ctx, timeout=timeout)
        else:
            conn = http.client.HTTPConnection(S3_ADDRESS, S3_PORT, timeout=timeout)
        try:
            conn.request("PUT", f"/{BUCKET}")
            return conn.getresponse().status
        finally:
            conn.close()

    status = network.in_netns(layout.lab_ns, put)
    if status not in (200, 409):
        raise RuntimeError(f"creating bucket {BUCKET}: HTTP {status}")
