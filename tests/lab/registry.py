"""The registry: Debian's distribution 2.8 with TLS from the registry CA, blobs on the lab's S3."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import yaml

from tests.lab import network, storage
from tests.lab.layout import BUCKET, REGISTRY_ADDRESS, Layout, registry_authority
from tests.lab.procs import Proc, clean_env, spawn


def config(storage_mode: str, port: int, cert: Path, key: Path, access: tuple[str, str]) -> dict[str, Any]:
    secure = storage_mode != "plain"
    s3: dict[str, Any] = {
        "accesskey": access[0],
        "secretkey": access[1],
        "region": "us-east-1",
        "regionendpoint": storage.endpoint(secure),
        "bucket": BUCKET,
        "rootdirectory": "/lab",
        "secure": secure,
        "v4auth": True,
    }
    if storage_mode == "skipverify":
        s3["skipverify"] = True
    return {
        "version": 0.1,
        "log": {"level": "info", "fields": {"service": "registry"}},
        "http": {
            "addr": f"{REGISTRY_ADDRESS}:{port}",
            "host": f"https://{registry_authority(port)}",
            "secret": secrets.token_hex(16),
            "tls": {"certificate": str(cert), "key": str(key)},
        },
        "storage": {
            "s3": s3,
            "redirect": {"disable": storage_mode == "noredirect"},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
    }


def write(layout: Layout, cfg: dict[str, Any]) -> str:
    text = yaml.safe_dump(cfg, sort_keys=False)
    (layout.dir / "registry.yml").write_text(text)
    # The shape DTR's GET /api/v0/admin/settings/registry answers with.
    dtr = {"config": text, "storage": cfg["storage"]}
    (layout.dir / "dtr-settings.json").write_text(json.dumps(dtr, indent=2) + "\n")
    return text


def start(layout: Layout, ns: str, trust_storage_ca: Path | None) -> Proc:
    # The registry's own S3 client trusts only what the lab gives it, whatever the caller's environment.
    env = clean_env(SSL_CERT_FILE=str(trust_storage_ca)) if trust_storage_ca else clean_env()
    argv = [*network.nsenter(ns), "docker-registry", "serve", str(layout.dir / "registry.yml")]
    return spawn(argv, layout.log_dir / "registry.log", env=env)
