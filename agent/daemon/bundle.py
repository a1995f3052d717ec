"""What ``daemon install`` puts on every host, worked out on the controller without touching one: the
daemon's options, the host's copy of the source (no secret in it), the CA files, the unit and the
manifest uninstall reads, and where each goes.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from agent.daemon.lastgood import FILE_NAME as LAST_GOOD_FILE
from agent.daemon.unit import (
    DEFAULT_CONFIG,
    DEFAULT_ENV_FILE,
    DEFAULT_PREFIX,
    UnitOptions,
    render_unit,
)
from agent.engine.options import RestartPolicy
from agent.inputs import DTR_TOKEN_ENV, DTR_USER_ENV, PolicyInputs
from agent.sources.document import GoYamlV2Loader
from agent.sources.model import RegistrySettings
from agent.trust import TrustPolicy

SERVICE = "trust-agent"
UNIT_PATH = "/etc/systemd/system/trust-agent.service"
OPT_DIR = "/opt/trust-agent"
CONFIG_DIR = "/etc/trust-agent"
SOURCE_DIR = f"{CONFIG_DIR}/source"
MANIFEST = f"{CONFIG_DIR}/install.json"
STATE_DIR = "/var/lib/trust-agent"
STATUS_FILE = f"{STATE_DIR}/status.json"
# The host's lock, held by one apply at a time (agent.engine.apply_script): a rollout's, or the daemon's.
HOST_LOCK = f"{STATE_DIR}/lock"
HOST_SOURCE = f"{SOURCE_DIR}/registry.yml"
WHEELHOUSE_MARK = ".trust-agent-wheelhouse"


@dataclass(frozen=True)
class DaemonSettings:
    """The ``daemon run`` options written to the host's daemon.yml."""

    interval: str = "60s"
    max_backoff: str = "10m"
    jitter: float = 0.1
    metrics_file: str | None = None
    restart_policy: RestartPolicy = "auto"
    allow_restart: bool = False
    canary_image: str | None = None
    verify: bool = True
    log_level: str = "info"
    watchdog_seconds: int = 600


@dataclass(frozen=True)
class HostFile:
    path: str  # absolute, on the host
    data: bytes
    mode: int


@dataclass(frozen=True)
class InstallBundle:
    """Every file ``daemon install`` writes on each host (the same for every host)."""

    files: tuple[HostFile, ...]
    source_spec: str  # what the daemon reads, as shown to people
    fingerprint: str  # the policy the controller derived; the hosts must arrive at the same
    live_source: bool  # a URL: the host reads it itself
    metrics_file: str | None = None  # --metrics-file: never written over a file that is not the daemon's

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(f.path for f in self.files)


def host_source_document(settings: RegistrySettings) -> bytes:
    """The storage settings engines depend on, as a distribution config.yml without any secret, read
    by the host's daemon into the policy the controller derived from ``settings``."""
    doc: dict[str, Any] = {"version": "0.1"}
    if settings.http_host:
        doc["http"] = _http_section(settings)
    storage: dict[str, Any] = {settings.driver: _s3_parameters(settings) if settings.s3 else {}}
    storage["redirect"] = {"disable": settings.redirect_disabled}
    doc["storage"] = storage
    if settings.redirect_middleware and settings.redirect_baseurl:
        doc["middleware"] = {"storage": [_redirect_middleware(settings)]}
    origin = " ".join(settings.origin.splitlines())  # a comment line must stay one line
    header = (
        f"# Written by trust-agent daemon install from {origin} ({settings.kind}).\n"
        "# The storage settings Docker engines depend on, without the registry's secrets. The daemon\n"
        "# re-reads this file every interval: a change here changes what this host trusts.\n"
    )
    return (header + yaml.dump(doc, Dumper=_GoYamlDumper, sort_keys=False)).encode()


# Stands in for the registry's certificate files, which the daemon never reads: only their presence.
_TLS_PLACEHOLDER = {"certificate": "(served by the registry; not copied)"}


def _http_section(settings: RegistrySettings) -> dict[str, Any]:
    # http.tls decides whether an http:// address is still served over TLS (plain HTTP: insecure).
    http: dict[str, Any] = {"host": settings.http_host}
    if settings.http_tls:
        http["tls"] = dict(_TLS_PLACEHOLDER)
    return http


def _s3_parameters(settings: RegistrySettings) -> dict[str, Any]:
    s3 = settings.s3
    assert s3 is not None
    params: dict[str, Any] = {
        key: getattr(s3, key)
        for key in ("bucket", "region", "regionendpoint", "redirectendpoint", "rootdirectory")
        if getattr(s3, key) is not None
    }
    params.update(secure=s3.secure, skipverify=s3.skipverify, v4auth=s3.v4auth)
    if settings.kind != "distribution":
        # Harbor and DTR run distribution 2.x, which reads no forcepathstyle and always uses path
        # style; a config.yml is read the 3.x way, where only true says path style.
        params["forcepathstyle"] = True
    elif s3.forcepathstyle is not None:
        params["forcepathstyle"] = s3.forcepathstyle
    return params


def _redirect_middleware(settings: RegistrySettings) -> dict[str, Any]:
    options: dict[str, Any] = {"baseurl": settings.redirect_baseurl}
    # cloudfront sends clients in AWS's ranges to S3 itself: the host's policy must trust both.
    if settings.redirect_ipfilteredby:
        options["ipfilteredby"] = settings.redirect_ipfilteredby
    if settings.redirect_ipfilteredby == "awsregion":
        options["awsregion"] = ",".join(settings.redirect_awsregions)
    return {"name": settings.redirect_middleware, "options": options}


class _GoYamlDumper(yaml.SafeDumper):
    """Writes text yaml.v2 reads back as text: ``y``/``n`` are booleans there (PyYAML leaves them bare)."""


def _represent_text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Every implicit resolver names a type other than text (bool, int, null...): quoted, it stays text.
    resolvers = GoYamlV2Loader.yaml_implicit_resolvers.get(value[:1], [])
    read_as_other = any(regexp.match(value) for _tag, regexp in resolvers)
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="'" if read_as_other else None)


_GoYamlDumper.add_representer(str, _represent_text)


def build_bundle(
    inputs: PolicyInputs,
    settings: RegistrySettings,
    policy: TrustPolicy,
    daemon: DaemonSettings,
    *,
    environ: Mapping[str, str],
    read: Callable[[str], bytes] | None = None,
) -> InstallBundle:
    """The host's source copy, CA files, daemon.yml, daemon.env, unit and manifest."""
    read_file = read or _read_bytes
    files: list[HostFile] = []
    config: dict[str, Any] = {}
    live = "://" in inputs.source
    storage_ca: list[str] = []
    registry_ca: list[str] = []

    def add_source_file(name: str, data: bytes) -> str:
        path = f"{SOURCE_DIR}/{name}"
        files.append(HostFile(path, data, 0o600))
        return path

    if live:
        config["source"] = inputs.source
        if inputs.source_ca:
            config["source_ca"] = add_source_file("source-ca.pem", read_file(inputs.source_ca))
    else:
        config["source"] = add_source_file("registry.yml", host_source_document(settings))
        # CAs the document itself carries (DTR, Harbor) become files, in the order the policy merges.
        if settings.storage_ca_pem:
            storage_ca.append(add_source_file("storage-ca-source.pem", settings.storage_ca_pem))
        if settings.registry_ca_pem:
            registry_ca.append(add_source_file("registry-ca-source.pem", settings.registry_ca_pem))
    for number, path in enumerate(inputs.storage_ca, start=1):
        storage_ca.append(add_source_file(f"storage-ca-{number}.pem", read_file(path)))
    for number, path in enumerate(inputs.registry_ca, start=1):
        registry_ca.append(add_source_file(f"registry-ca-{number}.pem", read_file(path)))
    if inputs.registries:
        config["registry"] = list(inputs.registries)
    if storage_ca:
        config["storage_ca"] = storage_ca
    if registry_ca:
        config["registry_ca"] = registry_ca
    if inputs.no_storage_ca:
        config["no_storage_ca"] = True
    if inputs.no_registry_ca:
        config["no_registry_ca"] = True
    config.update(
        allow_expired=inputs.allow_expired,
        interval=daemon.interval,
        max_backoff=daemon.max_backoff,
        jitter=daemon.jitter,
        state_dir=STATE_DIR,
        status_file=STATUS_FILE,
    )
    if daemon.metrics_file:
        config["metrics_file"] = daemon.metrics_file
    config.update(
        restart_policy=daemon.restart_policy,
        allow_restart=daemon.allow_restart,
        verify=daemon.verify,
        log_level=daemon.log_level,
    )
    if daemon.canary_image:
        config["canary_image"] = daemon.canary_image
    # Nothing here names the controller's files: a new source alone must not restart the daemon.
    header = (
        "# Written by trust-agent daemon install: options of `trust-agent daemon run`.\n"
        "# Changes need `systemctl restart trust-agent`; files under source/ are re-read every interval.\n"
    )
    files.append(HostFile(DEFAULT_CONFIG, (header + yaml.safe_dump(config, sort_keys=False)).encode(), 0o600))
    if live:
        user, token = environ.get(DTR_USER_ENV), environ.get(DTR_TOKEN_ENV)
        lines = [
            f"{name}={_env_quote(value)}"
            for name, value in ((DTR_USER_ENV, user), (DTR_TOKEN_ENV, token))
            if value
        ]
        if lines:
            files.append(HostFile(DEFAULT_ENV_FILE, ("\n".join(lines) + "\n").encode(), 0o600))
    unit = render_unit(UnitOptions(watchdog_seconds=daemon.watchdog_seconds))
    files.append(HostFile(UNIT_PATH, unit.encode(), 0o644))
    manifest = {
        "version": 1,
        "prefix": DEFAULT_PREFIX,
        "config": DEFAULT_CONFIG,
        "unit": UNIT_PATH,
        "state_files": [f"{STATE_DIR}/{LAST_GOOD_FILE}", STATUS_FILE]
        + ([daemon.metrics_file] if daemon.metrics_file else []),
        # What install put under /etc/trust-agent: uninstall removes these and leaves others' files.
        "config_files": sorted(f.path for f in files if f.path.startswith(CONFIG_DIR + "/")),
    }
    files.append(HostFile(MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode(), 0o644))
    return InstallBundle(
        tuple(files), _display(config["source"]), policy.fingerprint(), live, daemon.metrics_file
    )


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _display(spec: str) -> str:
    from agent.daemon.watch import display_source

    return display_source(spec)


def _env_quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def files_tar(files: Sequence[HostFile], prefix: str = "") -> bytes:
    """The files as a tar of paths relative to ``/`` (modes kept, owned by root)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for item in files:
            entry = tarfile.TarInfo(prefix + item.path.lstrip("/"))
            entry.size = len(item.data)
            entry.mode = item.mode
            entry.mtime = int(time.time())
            archive.addfile(entry, io.BytesIO(item.data))
    return buffer.getvalue()
