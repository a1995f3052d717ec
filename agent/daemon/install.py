"""``daemon install`` / ``daemon uninstall``: put the daemon on engine hosts over SSH, or take it off.

Install, per host, over one SSH connection:

1. probe (one round trip): python3's version, machine and C library, whether ``python3 -m venv``
   works (Debian's ``python3-venv``), systemd, and the wheelhouse already installed; then the host is
   planned for the controller's policy as ``trust-agent plan`` plans it (one gather, nothing written),
   and refused, untouched, where that plan fails: the daemon would fail there every cycle;
2. when the host does not already run this exact build: send the wheelhouse as a tar, make a new
   virtualenv ``/opt/trust-agent/venv-<id>`` from it (``pip install --no-index``: hosts need no
   package index), then point the ``/opt/trust-agent/venv`` symlink at it in one rename, so a failed
   install leaves the running daemon as it was;
3. write the configuration (atomic renames, 0600) and the unit, enable the service, and restart it
   when its program or options changed, reload it (re-read the source now) when only the source did;
4. poll ``status.json`` until the daemon (the service's current process) says ``healthy`` on a
   policy with the controller's fingerprint, or the wait runs out. A daemon that says its cycle failed
   is reported in its own words and stopped and disabled (its files stay, for the next install).

The source on the host. Hosts cannot read the controller's files, so a file source is copied, but
not as it is: a registry's config.yml holds S3 keys, http secrets and passwords, none of which an
engine needs. The host gets the storage settings as trust-agent read them (after any ``REGISTRY_*``
overrides), written as a minimal distribution ``config.yml`` with no secret in it, plus the CA
bundles as PEM files. A live DTR/MSR URL is used as it is, with its credentials in a 0600
``EnvironmentFile`` (never on a command line). Re-running ``daemon install`` with a new source
updates those files and reloads the daemon; so can any configuration management that writes
``/etc/trust-agent/source/``.

Uninstall stops and disables the service and removes the unit, the virtualenvs, the configuration
and the daemon's own state (last good policy, status, metrics). The trust it installed stays unless
``--purge``, which reconciles the host to an empty policy first: every ``trust-agent-*.crt`` and
every ``insecure-registries`` entry trust-agent recorded as its own goes, with a reload only when
daemon.json changed; nothing a person wrote is touched.
"""

from __future__ import annotations

import io
import json
import posixpath
import shlex
import tarfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import yaml

from agent.daemon.lastgood import FILE_NAME as LAST_GOOD_FILE
from agent.daemon.lock import FILE_NAME as DAEMON_LOCK_FILE
from agent.daemon.report import METRICS_FIRST_LINE
from agent.daemon.unit import (
    DEFAULT_CONFIG,
    DEFAULT_ENV_FILE,
    DEFAULT_PREFIX,
    UnitOptions,
    hidden_from_the_service,
    render_unit,
)
from agent.daemon.wheelhouse import PROBE_PYTHON, WheelhouseCache, parse_probe
from agent.engine.apply_script import daemon_json_backup
from agent.engine.options import RestartPolicy, RunOptions
from agent.engine.reconcile import reconcile
from agent.errors import HostError, TrustAgentError, UnreachableError
from agent.fleet import Gated, Readiness, Readinesses, unless_left
from agent.host_pool import NOT_STARTED, HostPool
from agent.hosts.base import Connecting, Transport
from agent.inputs import DTR_TOKEN_ENV, DTR_USER_ENV, PolicyInputs
from agent.runtimes.docker_facts import DAEMON_JSON
from agent.runtimes.docker_facts import STATE_FILE as ENGINE_STATE_FILE
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


# --- what goes on the host (pure) ----------------------------------------------------------------


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


# --- host scripts --------------------------------------------------------------------------------


def probe_script(python: str, metrics_file: str | None = None) -> str:
    # The metrics file first: a host where it names another's file is refused before anything is put on it.
    # Then where it really is: a link on the way (into /home, say) can hide it from the service.
    guard = (
        f"f={shlex.quote(metrics_file)}; {METRICS_OURS} || {{ echo metrics=foreign; exit 0; }}\n"
        'printf \'metrics_real=%s\\n\' "$(realpath -m -- "$f" 2>/dev/null)"\n'
        if metrics_file
        else ""
    )
    return guard + (
        f"command -v {shlex.quote(python)} >/dev/null 2>&1 || {{ echo python=missing; exit 0; }}\n"
        f"{shlex.quote(python)} - <<'TRUST_AGENT_PROBE'\n{PROBE_PYTHON.strip()}\nTRUST_AGENT_PROBE\n"
        "if [ -d /run/systemd/system ]; then echo systemd=yes; else echo systemd=no; fi\n"
        f"echo installed=$(cat {OPT_DIR}/venv/{WHEELHOUSE_MARK} 2>/dev/null)\n"
        f"echo main_pid=$(systemctl show -p MainPID --value {SERVICE} 2>/dev/null)\n"
    )


PRUNE_SCRIPT = f"""\
current=$(readlink {OPT_DIR}/venv 2>/dev/null || true)
for old in {OPT_DIR}/venv-*; do
    if [ -d "$old" ] && [ -n "$current" ] && [ "$(basename "$old")" != "$current" ]; then rm -rf "$old"; fi
done
"""


def venv_script(ident: str, python: str, version: str) -> str:
    """Unpack the wheelhouse (stdin) and make ``venv-<ident>``; swap the ``venv`` symlink to it."""
    q = shlex.quote
    new = f"{OPT_DIR}/venv-{ident}"
    return f"""\
set -eu
umask 022
# A step that fails (pip, a wheelhouse cut off in transit, a full disk) leaves nothing half built: the
# next install or uninstall would otherwise find a virtualenv, or an /opt/trust-agent, no install made.
fresh=no
[ -e {OPT_DIR} ] || [ -L {OPT_DIR} ] || fresh=yes
undo() {{
    if [ "$fresh" = yes ]; then rm -rf {OPT_DIR}; else rm -rf {q(new)} {OPT_DIR}/wheelhouse {OPT_DIR}/venv.tmp; fi
}}
trap 'status=$?; [ "$status" -eq 0 ] || undo; exit "$status"' EXIT
mkdir -p {OPT_DIR}
# Keep the virtualenv the running daemon uses; older ones are not in use any more.
{PRUNE_SCRIPT}rm -rf {OPT_DIR}/wheelhouse {q(new)}
mkdir {OPT_DIR}/wheelhouse
tar -x --no-same-owner -C {OPT_DIR}/wheelhouse
{q(python)} -m venv {q(new)} </dev/null
{q(new)}/bin/pip install --quiet --disable-pip-version-check --no-index \\
    --find-links {OPT_DIR}/wheelhouse {q("trust-agent==" + version)} </dev/null
{q(new)}/bin/trust-agent --version >/dev/null </dev/null
echo {q(ident)} > {q(new)}/{WHEELHOUSE_MARK}
rm -rf {OPT_DIR}/wheelhouse
if [ -d {OPT_DIR}/venv ] && [ ! -L {OPT_DIR}/venv ]; then rm -rf {OPT_DIR}/venv; fi
ln -sfn venv-{q(ident)} {OPT_DIR}/venv.tmp
mv -T {OPT_DIR}/venv.tmp {OPT_DIR}/venv
"""


def config_script(bundle: InstallBundle, venv_changed: bool) -> str:
    """Put the files (tar on stdin) in place by rename, drop stale source files, enable and (re)start."""
    q = shlex.quote
    stage = f"{CONFIG_DIR}/.stage"
    moves = "\n".join(f"place {q(f.path.lstrip('/'))} {q(f.path)}" for f in _config_order(bundle.files))
    options = " ".join(
        f"{q(f.path.lstrip('/'))}:{q(f.path)}"
        for f in bundle.files
        if not f.path.startswith(SOURCE_DIR + "/")
    )
    keep = " ".join(q(f.path) for f in bundle.files if f.path.startswith(SOURCE_DIR + "/"))
    env_kept = any(f.path == DEFAULT_ENV_FILE for f in bundle.files)
    return f"""\
set -eu
{_metrics_guard(bundle.metrics_file)}umask 077
# A first install that fails here takes its files back: a configuration without its service (or a unit
# naming a missing one) is what the next install or status would find otherwise.
first=no
[ -e {CONFIG_DIR} ] || first=yes
[ -e {UNIT_PATH} ] || first_unit=yes
undo() {{
    rm -rf {stage}
    if [ "$first" = yes ]; then
        {REMOVE_MADE_DIRS}
        rm -rf {CONFIG_DIR}
    fi
    if [ "${{first_unit:-no}}" = yes ]; then rm -f {UNIT_PATH}; fi
}}
trap 'status=$?; [ "$status" -eq 0 ] || undo; exit "$status"' EXIT
mkdir -p -m 0700 {CONFIG_DIR} {SOURCE_DIR}
chmod 0700 {CONFIG_DIR} {SOURCE_DIR}
rm -rf {stage}
mkdir -m 0700 {stage}
tar -x --no-same-owner -C {stage}
restart={"yes" if venv_changed else "no"}
reload=no
place() {{
    if ! cmp -s "{stage}/$1" "$2"; then
        mkdir -p "$(dirname "$2")"
        mv -f "{stage}/$1" "$2"
        case "$2" in {SOURCE_DIR}/*) reload=yes ;; *) restart=yes ;; esac
    fi
}}
# Options change: stop the daemon before any file moves, so that it never runs a cycle on the new
# source with its old options (a policy the controller did not work out, kept as its last good one).
for pair in {options}; do
    cmp -s "{stage}/${{pair%%:*}}" "${{pair#*:}}" || restart=yes
done
if [ "$restart" = yes ] && systemctl is-active -q {SERVICE}; then
    systemctl stop {SERVICE}
fi
# A metrics file the last install named and this one does not would report "up" for ever: it goes,
# while it still holds trust-agent's metrics.
if [ -f {MANIFEST} ] && [ -f "{stage}{MANIFEST}" ]; then
    {OPT_DIR}/venv/bin/python -c {q(_STALE_STATE_FILES)} {MANIFEST} "{stage}{MANIFEST}" 2>/dev/null |
    while IFS= read -r f; do {METRICS_OURS} && rm -f "$f" || true; done
fi
# The source files the last install put there (read before its manifest is replaced): only those may
# go; a file configuration management keeps in {SOURCE_DIR} is not ours to remove.
installed=""
if [ -f {MANIFEST} ]; then
    installed=$({OPT_DIR}/venv/bin/python -c {q(_INSTALLED_SOURCE_FILES)} {MANIFEST} {SOURCE_DIR}/ 2>/dev/null || true)
fi
{moves}
while IFS= read -r f; do
    [ -n "$f" ] && [ -f "$f" ] || continue
    case " {keep} " in *" $f "*) ;; *) rm -f "$f"; reload=yes ;; esac
done <<EOF
$installed
EOF
{"" if env_kept else f"if [ -e {DEFAULT_ENV_FILE} ]; then rm -f {DEFAULT_ENV_FILE}; restart=yes; fi"}
rm -rf {stage}
{_metrics_dir_lines(bundle.metrics_file)}systemctl daemon-reload
systemctl enable -q {SERVICE}
systemctl is-active -q {SERVICE} || restart=yes
since=$(date +%s.%N)
if [ "$restart" = yes ]; then
    systemctl reset-failed {SERVICE} 2>/dev/null || true
    systemctl restart --no-block {SERVICE}
    echo action=restart
elif [ "$reload" = yes ]; then
    systemctl reload {SERVICE}
    echo action=reload
else
    echo action=none
fi
echo since=$since
"""


# The directories install made for --metrics-file, deepest first, a line each: uninstall removes these,
# and only while empty (a directory that was there before install is never listed).
MADE_DIRS = f"{CONFIG_DIR}/made-dirs"
# Shell: the directories MADE_DIRS lists, read into $made (children first) before the file goes.
REMOVE_MADE_DIRS_LATER = f"made=$(sort -r {MADE_DIRS} 2>/dev/null || true)"
# Shell: rmdir each directory MADE_DIRS lists, children before their parents (reverse order puts a path
# after every path under it); one that holds something now stays.
REMOVE_MADE_DIRS = (
    f"sort -r {MADE_DIRS} 2>/dev/null | while IFS= read -r d; do "
    '[ -n "$d" ] && rmdir -- "$d" 2>/dev/null || true; done'
)


def _metrics_dir_lines(path: str | None) -> str:
    """Shell that makes the metrics file's directory (readable by node_exporter, which may not run as
    root), adding to ``MADE_DIRS`` each directory it had to make."""
    if path is None:
        return ""
    q = shlex.quote
    parent = q(posixpath.dirname(path))
    # Bounded: dirname reaches /, which exists.
    return f"""d={parent}
while [ ! -e "$d" ] && [ ! -L "$d" ]; do
    grep -qxF -- "$d" {MADE_DIRS} 2>/dev/null || printf '%s\\n' "$d" >> {MADE_DIRS}
    d=$(dirname -- "$d")
done
(umask 022 && mkdir -p -- {parent})
"""


def _metrics_guard(path: str | None) -> str:
    """Shell that stops the install, the host untouched, where --metrics-file names a file of another's."""
    if path is None:
        return ""
    q = shlex.quote
    why = f"--metrics-file {path}: the file exists and is not trust-agent's metrics: choose another path"
    return f"f={q(path)}\n{METRICS_OURS} || {{ echo {q(why)} >&2; exit 3; }}\n"


def _config_order(files: Sequence[HostFile]) -> list[HostFile]:
    # Source files first, daemon.yml (which names them) after, the unit last.
    def rank(item: HostFile) -> int:
        if item.path.startswith(SOURCE_DIR + "/"):
            return 0
        return 2 if item.path == UNIT_PATH else 1

    return sorted(files, key=rank)


STATUS_SCRIPT = (
    f"echo main_pid=$(systemctl show -p MainPID --value {SERVICE}); "
    f"echo active=$(systemctl is-active {SERVICE}); "
    f"echo status=$(tr -d '\\n' < {STATUS_FILE} 2>/dev/null)"
)


# The state files the installed manifest (argv[1]) lists and the new one (argv[2]) does not, a line each.
_STALE_STATE_FILES = (
    "import json, sys; old, new = (json.load(open(p)).get('state_files', []) for p in sys.argv[1:3]); "
    "print(''.join(f + '\\n' for f in old if f not in new and f.startswith('/')), end='')"
)

# The files under the source directory that the installed manifest (argv[1]) lists, a line each.
_INSTALLED_SOURCE_FILES = (
    "import json, sys; files = json.load(open(sys.argv[1])).get('config_files', []); "
    "print(''.join(f + '\\n' for f in files if isinstance(f, str) and f.startswith(sys.argv[2]) and '/../' not in f), end='')"
)

# Shell: "$f" is absent, or a file whose first line is one the daemon writes first (agent.daemon.report).
METRICS_OURS = f'{{ [ ! -s "$f" ] || head -n 1 "$f" | grep -q "^{METRICS_FIRST_LINE.decode()}"; }}'


def uninstall_script(state_files: Sequence[str], config_files: Sequence[str] | None = ()) -> str:
    """Remove the service and what install wrote. ``config_files``: the files install put under
    /etc/trust-agent (its manifest lists them); only those go, and the directories where they are
    then empty, so a file someone else put there stays. With no manifest (none was ever written, or an
    earlier uninstall removed it) nothing there is known to be trust-agent's: nothing goes but the
    manifest's own staging. ``None``: an older manifest that does not list them; then the directory
    goes whole, as it did."""
    q = shlex.quote
    extra = " ".join(q(p) for p in state_files)
    if config_files is None:
        config = f"rm -rf {CONFIG_DIR}"
    else:
        owned = " ".join(q(p) for p in config_files if p.startswith(CONFIG_DIR + "/") and "/../" not in p)
        config = (
            f"rm -f {owned} {MANIFEST}\nrm -rf {CONFIG_DIR}/.stage\n"
            f"rmdir {SOURCE_DIR} {CONFIG_DIR} 2>/dev/null || true"
        )
        if config_files:  # a manifest says what is trust-agent's: so is the list of what it made
            config = f"{REMOVE_MADE_DIRS_LATER}\nrm -f {MADE_DIRS}\n{config}"
    # Installed: its unit, its virtualenv or its manifest is there. A directory someone else's file kept
    # after an uninstall is not an installation.
    return f"""\
set -eu
had=no
made=""
[ -e {UNIT_PATH} ] || [ -e {OPT_DIR} ] || [ -e {MANIFEST} ] && had=yes
rm -f {UNIT_PATH}
rm -rf {OPT_DIR}
{config}
rm -f {STATE_DIR}/{LAST_GOOD_FILE} {STATE_DIR}/{DAEMON_LOCK_FILE} {STATUS_FILE}
# A metrics file elsewhere goes only if it still holds trust-agent's metrics (it may be a person's now).
for f in {extra}; do
    {METRICS_OURS} && rm -f "$f" || true
done
# Then the directories install made for it, where nothing else is in them now.
printf '%s\\n' "$made" | while IFS= read -r d; do [ -n "$d" ] && rmdir -- "$d" 2>/dev/null || true; done
systemctl daemon-reload
systemctl reset-failed {SERVICE} 2>/dev/null || true
echo had=$had
"""


def purge_state_script(own_backup: str) -> str:
    """After ``--purge``: the rest of trust-agent's state under /var/lib/trust-agent (the host lock, the
    record of what it owned, daemon.json backups that keep nothing), the directory itself where that
    empties it. Prints ``kept=PATH`` for each backup left.

    A daemon.json backup is a person's earlier file. One goes only where the current daemon.json makes
    it redundant: a byte-for-byte copy of it, or ``own_backup``, the copy this purge took before taking
    out trust-agent's entries (the current file is that copy less those entries alone). Any other backup
    may hold a line someone wants back, so it stays, and the report says where."""
    q = shlex.quote
    backups = posixpath.dirname(own_backup)
    return f"""\
set -eu
rm -f -- {q(own_backup)}
for b in {backups}/daemon.json.*; do
    [ -f "$b" ] || continue
    if [ -f {DAEMON_JSON} ] && cmp -s -- "$b" {DAEMON_JSON}; then rm -f -- "$b"; else echo "kept=$b"; fi
done
rmdir {backups} 2>/dev/null || true
rm -f {STATE_DIR}/lock {ENGINE_STATE_FILE}
rmdir {STATE_DIR} 2>/dev/null || true
"""


STOP_SCRIPT = (
    f"if systemctl cat {SERVICE} >/dev/null 2>&1; then systemctl disable --now -q {SERVICE}; echo stopped=yes; "
    f"else echo stopped=no; fi; cat {MANIFEST} 2>/dev/null || true"
)


# --- per host ------------------------------------------------------------------------------------

Status = Literal["installed", "unchanged", "uninstalled", "absent", "failed", "unreachable", "skipped"]


@dataclass(frozen=True)
class HostReport:
    host: str
    status: Status
    detail: str = ""
    error: str | None = None
    seconds: float = 0.0
    daemon: dict[str, Any] | None = field(default=None, repr=False)  # the status.json seen last

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "unreachable")

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "status": self.status,
            "detail": self.detail,
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "daemon": self.daemon,
        }


class HostFailure(TrustAgentError):
    """One host cannot be installed; the message says why, in one line."""


def _values(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _check(result: Any, what: str) -> None:
    if not result.ok:
        lines = (result.stderr or result.stdout).decode("utf-8", "replace").strip().splitlines()
        tail = " | ".join(lines[-3:]) or "no output"
        raise HostFailure(f"{what} failed (exit {result.exit_status}): {tail}")


def install_host(
    transport: Transport,
    bundle: InstallBundle,
    wheelhouses: WheelhouseCache,
    *,
    python: str = "python3",
    wait: float = 60.0,
    command_timeout: float = 300.0,
    poll_every: float = 0.5,
    policy: TrustPolicy | None = None,
    plan_options: RunOptions | None = None,
) -> HostReport:
    """Install (or update) the daemon on one host and wait until it is healthy. Never raises.

    ``policy``: the controller's; the host is planned for it first (with ``plan_options``, see
    :func:`daemon_plan_options`) and refused, untouched, where the daemon's first cycle would fail."""
    start = time.monotonic()
    connected = False
    try:
        connected = _connect(transport)
        probe = transport.run(probe_script(python, bundle.metrics_file), timeout=command_timeout)
        _check(probe, "probing the host")
        facts = _values(probe.stdout.decode("utf-8", "replace"))
        if facts.get("metrics") == "foreign":
            raise HostFailure(
                f"--metrics-file {bundle.metrics_file}: the file exists and is not trust-agent's metrics: "
                "choose another path"
            )
        _refuse_a_hidden_metrics_file(bundle.metrics_file, facts.get("metrics_real", "").strip())
        if facts.get("python") == "missing":
            raise HostFailure(f"{python} not found (install python3 and python3-venv)")
        try:
            target, has_venv = parse_probe(probe.stdout.decode("utf-8", "replace"))
        except ValueError as exc:
            raise HostFailure(f"{python}: {exc}") from None
        if not has_venv:
            raise HostFailure(f"{python} -m venv is not available (install python3-venv)")
        if facts.get("systemd") != "yes":
            raise HostFailure("systemd is not running on this host: the daemon runs as a systemd service")
        if policy is not None:
            refuse_where_the_daemon_would_fail(
                transport, policy, plan_options or daemon_plan_options(DaemonSettings(), command_timeout)
            )
        wheelhouse = wheelhouses.for_target(target)
        ident = wheelhouse.ident
        venv_changed = facts.get("installed", "").strip() != ident
        if venv_changed:
            version = wheelhouse.project.version if wheelhouse.project else _version_in(wheelhouse)
            made = transport.run(
                venv_script(ident, python, version), stdin=wheelhouse.tar(), timeout=command_timeout
            )
            _check(made, f"installing trust-agent into {OPT_DIR}/venv-{ident} ({target.describe()})")
        placed = transport.run(
            config_script(bundle, venv_changed), stdin=files_tar(bundle.files), timeout=command_timeout
        )
        _check(placed, "writing the configuration and starting the service")
        result = _values(placed.stdout.decode("utf-8", "replace"))
        action = result.get("action", "none")
        since = float(result.get("since", "0") or 0)
        old_pid = facts.get("main_pid", "0").strip() or "0"
        try:
            daemon = _wait_healthy(
                transport,
                bundle,
                action=action,
                since=since,
                old_pid=old_pid,
                wait=wait,
                poll_every=poll_every,
                command_timeout=command_timeout,
            )
        except CycleFailed as exc:
            raise HostFailure(f"{exc}; {_stop_the_failing_service(transport, command_timeout)}") from None
        if venv_changed:  # the daemon runs from the new one now: the previous build is not in use
            transport.run(PRUNE_SCRIPT, timeout=command_timeout)
    except HostFailure as exc:
        return HostReport(transport.name, "failed", error=str(exc), seconds=time.monotonic() - start)
    except TrustAgentError as exc:
        status: Status = _error_status(exc, connected=connected)
        return HostReport(transport.name, status, error=str(exc), seconds=time.monotonic() - start)
    except Exception as exc:  # a bug must cost one host, not the fleet
        return HostReport(
            transport.name,
            "failed",
            error=f"internal error: {type(exc).__name__}: {exc}",
            seconds=time.monotonic() - start,
        )
    steps = []
    if venv_changed:
        steps.append(f"venv {ident} installed")
    if action != "none":  # an unchanged host's status says it already
        steps.append({"restart": "service (re)started", "reload": "source reloaded"}[action])
    policy = (daemon.get("policy") or {}).get("fingerprint")
    detail = "; ".join([*([", ".join(steps)] if steps else []), f"healthy on policy {policy}"])
    status = "unchanged" if action == "none" and not venv_changed else "installed"
    return HostReport(transport.name, status, detail, seconds=time.monotonic() - start, daemon=daemon)


def daemon_plan_options(daemon: DaemonSettings, command_timeout: float) -> RunOptions:
    """How a host is planned before install: as the daemon's cycles will plan it (its restart policy),
    read-only (a dry run: one gather, nothing written, the engine not verified)."""
    return RunOptions(
        dry_run=True,
        verify=False,
        restart_policy=daemon.restart_policy,
        allow_restart=daemon.allow_restart,
        command_timeout=command_timeout,
    )


def refuse_where_the_daemon_would_fail(
    transport: Transport, policy: TrustPolicy, options: RunOptions
) -> None:
    """Plan the host for ``policy`` as ``trust-agent plan`` does, and refuse it where the plan fails (a
    CA of trust-agent's the policy does not say to keep, a key dockerd also gets as a flag): a daemon
    installed there would fail every cycle, and retry at its back-off for ever."""
    outcome = reconcile(transport, policy, options)
    if outcome.status == "unreachable":
        raise UnreachableError(outcome.error or "lost while planning the host")
    if outcome.failed:
        raise HostFailure(would_fail(outcome.error))


def would_fail(reason: str | None) -> str:
    """A host refused before install, with the plan's reason."""
    return (
        f"not installed: the daemon would fail on this host: {reason or 'its plan failed'} "
        "(nothing was put on the host)"
    )


class CycleFailed(HostFailure):
    """The installed daemon ran its cycle and left the host failing: waiting longer brings only its
    retries, at its back-off's pace."""


def failed_its_cycle(daemon: Mapping[str, Any]) -> bool:
    """Whether a (fresh) status says the daemon ran a cycle that left the host failing; not one still
    starting, nor one whose host another run's lock kept it from."""
    cycles = daemon.get("cycles")
    return (
        daemon.get("state") == "failing"
        and not daemon.get("host_busy")
        and isinstance(cycles, int)
        and cycles >= 1
    )


def daemon_error(daemon: Mapping[str, Any]) -> str:
    """The daemon's own words for why it is not healthy: status.json's ``last_error`` (else its last
    outcome's error, else its state)."""
    outcome = daemon.get("outcome")
    error = daemon.get("last_error") or (outcome.get("error") if isinstance(outcome, dict) else None)
    return str(error) if error else f"state {daemon.get('state')}"


def journal_messages(text: str, limit: int = 3) -> list[str]:
    """The last ``limit`` things the daemon's journal (``journalctl -o cat``: its MESSAGE fields) says
    went wrong, for a person: from its JSON records of warning or error level the event and its error
    (or message); any other line (systemd's own, a traceback) as it is."""
    said: list[str] = []
    for line in (raw.strip() for raw in text.splitlines()):
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            said.append(line)
            continue
        if not isinstance(record, dict):
            said.append(line)
        elif record.get("level") in ("warning", "error"):
            said.append(_record_text(record))
    return said[-limit:]


def _record_text(record: Mapping[str, Any]) -> str:
    event = str(record.get("event", "event"))
    detail = record.get("error") or record.get("message")
    if not detail and isinstance(record.get("warnings"), list):
        detail = "; ".join(str(w) for w in record["warnings"])
    return f"{event}: {detail}" if detail else event


def _stop_the_failing_service(transport: Transport, command_timeout: float) -> str:
    """Stop and disable a daemon that failed its cycle (each retry would write, reload and roll back
    again); its files stay for a look and for the next install, which starts it again. What to say."""
    stopped = transport.run(f"systemctl disable --now -q {SERVICE}", timeout=min(command_timeout, 120.0))
    if not stopped.ok:
        said = (stopped.stderr or stopped.stdout).decode("utf-8", "replace").strip() or "no output"
        return f"stopping the service failed too (exit {stopped.exit_status}): {said}"
    return f"{SERVICE}.service is stopped and disabled: fix the cause, then run daemon install again"


def _connect(transport: Transport) -> bool:
    """Log in (a transport that connects on its own first command is taken as logged in)."""
    if isinstance(transport, Connecting):
        transport.connect()
    return True


def _error_status(exc: TrustAgentError, *, connected: bool) -> Status:
    """``unreachable`` where no login was made (or the connection was lost); ``failed`` where the host
    answered and refused, as a rollout says it: sudo that wants a password is a reachable host's."""
    if isinstance(exc, UnreachableError) or (not connected and isinstance(exc, HostError)):
        return "unreachable"
    return "failed"


def _refuse_a_hidden_metrics_file(given: str | None, real: str) -> None:
    """Refuse a --metrics-file that resolves on the host to where the service cannot write for others
    to read: the daemon would report healthy while node_exporter never sees a metric."""
    hidden = hidden_from_the_service(real) if given and real else None
    if hidden:
        raise HostFailure(
            f"--metrics-file {given} resolves to {real} on this host: {hidden}; "
            "choose a path outside /root, /home, /run/user and /tmp"
        )


def _version_in(wheelhouse: Any) -> str:
    for path in wheelhouse.wheels:
        if path.name.startswith("trust_agent-"):
            return str(path.name.split("-")[1])
    raise HostFailure(f"{wheelhouse.directory}: no trust_agent wheel in the wheelhouse")


def _parse_iso(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def status_fresh(
    daemon: Mapping[str, Any], *, main_pid: str, action: str, since: float, old_pid: str
) -> bool:
    """Whether ``status.json`` was written by the service's current process, after what we did."""
    if str(daemon.get("pid")) != main_pid or main_pid in ("", "0"):
        return False
    if action == "restart" and main_pid == old_pid:
        return False
    if action == "reload":
        last_run = _parse_iso(daemon.get("last_run"))
        return last_run is not None and last_run >= since - 0.001
    return True


def _wait_healthy(
    transport: Transport,
    bundle: InstallBundle,
    *,
    action: str,
    since: float,
    old_pid: str,
    wait: float,
    poll_every: float,
    command_timeout: float,
) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    seen: dict[str, Any] = {}
    while True:
        result = transport.run(STATUS_SCRIPT, timeout=min(command_timeout, 30.0))
        facts = _values(result.stdout.decode("utf-8", "replace"))
        try:
            loaded = json.loads(facts.get("status", "") or "null")
        except ValueError:
            loaded = None  # caught between writes is impossible (atomic), but a damaged file is not
        if isinstance(loaded, dict) and status_fresh(
            loaded, main_pid=facts.get("main_pid", "").strip(), action=action, since=since, old_pid=old_pid
        ):
            seen = loaded
            if failed_its_cycle(loaded):
                raise CycleFailed(f"the daemon failed its cycle: {daemon_error(loaded)}")
            if loaded.get("healthy"):
                fingerprint = (loaded.get("policy") or {}).get("fingerprint")
                if fingerprint != bundle.fingerprint and not bundle.live_source:
                    raise HostFailure(
                        f"the daemon is healthy on policy {fingerprint}, not the controller's "
                        f"{bundle.fingerprint}"
                    )
                return loaded
        if time.monotonic() >= deadline:
            raise _not_healthy(transport, wait, facts.get("active", "unknown"), seen)
        time.sleep(poll_every)


def _not_healthy(transport: Transport, wait: float, active: str, seen: Mapping[str, Any]) -> HostFailure:
    """Why the daemon is not healthy after ``wait``: what status.json says where the daemon wrote why,
    else what its journal says."""
    journal: list[str] = []
    if not (seen.get("last_error") or seen.get("host_busy")):
        read = transport.run(f"journalctl -u {SERVICE} -n 30 -o cat --no-pager 2>/dev/null", timeout=30)
        journal = journal_messages(read.stdout.decode("utf-8", "replace"))
    return HostFailure(not_healthy_message(wait, active, seen, journal))


def not_healthy_message(
    wait: float, active: str, seen: Mapping[str, Any], journal: Sequence[str] = ()
) -> str:
    """The report's line for a daemon not healthy after ``wait``: the service's state, the daemon's
    (``seen``: its last fresh status.json, empty if none) and its error; else why it is held up (another
    run holding the host's lock, which the daemon logs at info only); else ``journal``, what its
    journal says went wrong."""
    state = f"service {active}"
    if seen:
        state += f", daemon {seen.get('state')}"
        if seen.get("last_error"):
            state += f": {seen['last_error']}"
    said = f"not healthy after {wait:g}s ({state})"
    busy = bool(seen.get("host_busy"))
    if busy:
        said += (
            f"; another trust-agent run holds {HOST_LOCK} (a rollout or an apply reaching this host, "
            "say): the daemon leaves the host to it"
        )
    elif journal and not seen.get("last_error"):
        said += f"; journal: {' | '.join(journal)}"
    # Not failed (still on its first cycle, riding out a source outage, or kept out by the lock): it is
    # left to go on.
    if active == "active":
        said += (
            "; left running: it converges the host once that run ends"
            if busy
            else "; left running, it goes on trying"
        )
    return said


def uninstall_host(
    transport: Transport, *, purge: bool, options: RunOptions | None = None, command_timeout: float = 300.0
) -> HostReport:
    """Stop, disable and remove the daemon; with ``purge`` also the trust trust-agent installed."""
    start = time.monotonic()
    connected = False
    try:
        connected = _connect(transport)
        stopped = transport.run(STOP_SCRIPT, timeout=command_timeout)
        _check(stopped, f"stopping {SERVICE}")
        text = stopped.stdout.decode("utf-8", "replace")
        first, _, manifest_text = text.partition("\n")
        state_files, config_files = manifest_lists(manifest_text)
        purged = ""
        if purge:
            empty = TrustPolicy(registries=(), storage_endpoint=None, storage_scheme=None)
            outcome = reconcile(transport, empty, options or RunOptions(command_timeout=command_timeout))
            if outcome.failed:
                raise HostFailure(f"removing the trust it installed failed: {outcome.error}")
            removed = [c.path for c in outcome.plan.changes if not c.internal] if outcome.plan else []
            purged = (
                f"; trust removed ({len(removed)} files changed, dockerd: {outcome.engine_action})"
                if removed
                else "; no trust to remove"
            )
        removed_files = transport.run(uninstall_script(state_files, config_files), timeout=command_timeout)
        _check(removed_files, "removing the service and its files")
        if purge:
            purged += _purge_state(transport, options or RunOptions(), command_timeout)
        had = _values(removed_files.stdout.decode("utf-8", "replace")).get("had") == "yes"
        was_running = first.strip() == "stopped=yes"
    except HostFailure as exc:
        return HostReport(transport.name, "failed", error=str(exc), seconds=time.monotonic() - start)
    except TrustAgentError as exc:
        status: Status = _error_status(exc, connected=connected)
        return HostReport(transport.name, status, error=str(exc), seconds=time.monotonic() - start)
    except Exception as exc:
        return HostReport(
            transport.name,
            "failed",
            error=f"internal error: {type(exc).__name__}: {exc}",
            seconds=time.monotonic() - start,
        )
    if not had and not was_running:
        return HostReport(
            transport.name, "absent", "not installed" + purged, seconds=time.monotonic() - start
        )
    kept = "" if purge else "; trust left in place"
    return HostReport(
        transport.name,
        "uninstalled",
        "service, venv and configuration removed" + kept + purged,
        seconds=time.monotonic() - start,
    )


def _purge_state(transport: Transport, options: RunOptions, command_timeout: float) -> str:
    """Remove trust-agent's state after a purge; what the report adds about backups kept."""
    result = transport.run(
        purge_state_script(daemon_json_backup(options.backup_stamp)), timeout=command_timeout
    )
    _check(result, f"removing trust-agent's state in {STATE_DIR}")
    kept = [
        line[5:] for line in result.stdout.decode("utf-8", "replace").splitlines() if line.startswith("kept=")
    ]
    if not kept:
        return ""
    where = posixpath.dirname(kept[0])
    return (
        f"; {len(kept)} earlier daemon.json backup{'s' if len(kept) > 1 else ''} kept in {where} "
        "(they may hold what a person wants back: remove them when no longer needed)"
    )


def manifest_lists(text: str) -> tuple[list[str], list[str] | None]:
    """The state files and the files under /etc/trust-agent that the host's install.json (``text``)
    lists. No manifest, or one that does not parse: none of either, so that nothing not known to be
    trust-agent's is removed. An older manifest that lists no config files: ``None`` for them."""
    try:
        manifest = json.loads(text) if text.strip() else {}
    except ValueError:
        return [], []
    if not isinstance(manifest, dict):
        return [], []
    listed = manifest.get("state_files", [])
    state_files = [str(p) for p in listed if str(p).startswith("/")] if isinstance(listed, list) else []
    if not manifest:
        return state_files, []
    config_files = manifest.get("config_files")
    return state_files, [str(p) for p in config_files] if isinstance(config_files, list) else None


# --- many hosts ----------------------------------------------------------------------------------


# A host an interrupt left while it logged in (``leave_of`` in agent.host_pool.HostPool.map).
LEFT_CONNECTING = (
    "not started: the run was interrupted while this host was still connecting; nothing was put on it"
)


def run_hosts(
    names: Sequence[str],
    open_transport: Callable[[str], Transport],
    work: Callable[[Transport], HostReport],
    *,
    forks: int = 50,
    on_done: Callable[[HostReport], None] | None = None,
    on_interrupt: Callable[[int], None] | None = None,
    on_interrupt_left: Callable[[int, int], None] | None = None,
) -> tuple[list[HostReport], bool]:
    """``work`` on every host, ``forks`` at a time; reports in the order of ``names``, and whether an
    interrupt stopped the run (the hosts in flight finished, the rest are ``skipped``).

    A host still logging in when the interrupt comes is left at once (:data:`LEFT_CONNECTING`): its
    connect timeout does not hold the run. Every command after the login may change the host, so from
    the first one on it is finished as any host in flight. ``on_interrupt_left``, where given, hears
    the hosts to finish and those left, instead of ``on_interrupt``."""
    lock = threading.Lock()
    reports: dict[str, HostReport] = {}
    readinesses = Readinesses()

    def worked(name: str, readiness: Readiness) -> HostReport:
        try:
            transport = open_transport(name)
        except TrustAgentError as exc:
            return HostReport(name, "unreachable", error=str(exc))
        try:
            return work(_gated(transport, readiness))
        finally:
            transport.close()

    def one(name: str) -> HostReport:
        readiness = readinesses.take(name)
        report = unless_left(
            readiness,
            lambda: worked(name, readiness),
            lambda: HostReport(name, "skipped", error=LEFT_CONNECTING),
        )
        with lock:
            reports[name] = report
        if on_done is not None:
            on_done(report)
        return report

    with HostPool(min(forks, len(names)), on_interrupt, on_interrupt_left=on_interrupt_left) as pool:
        pool.map(one, names, leave_of=readinesses.leave_of)
    return [
        reports.get(name) or HostReport(name, "skipped", error=NOT_STARTED) for name in names
    ], pool.interrupted


def _gated(transport: Transport, readiness: Readiness) -> Transport:
    """``transport`` asking ``readiness`` before each step. Without a login to abandon (a local host)
    the host is finished as any in flight, from the start."""
    if not isinstance(transport, Connecting):
        readiness.changes()
        return transport
    return Gated(transport, readiness, transport.connect)


def report_line(report: HostReport) -> str:
    text = f"{report.host}: {report.status}"
    if report.detail:
        text += f": {report.detail}"
    if report.error:
        text += f": {report.error}"
    return f"{text} ({report.seconds:.1f}s)"
