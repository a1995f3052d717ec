"""``daemon install``'s pure parts: what goes on a host, the wheel it ships, and when a host is ready."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import example as hypothesis_example
from hypothesis import given
from hypothesis import strategies as st

from agent.certs import parse_bundle
from agent.daemon.bundle import (
    HOST_SOURCE,
    SOURCE_DIR,
    UNIT_PATH,
    DaemonSettings,
    HostFile,
    InstallBundle,
    build_bundle,
    files_tar,
    host_source_document,
)
from agent.daemon.cli import ONCE_BUSY_EXIT, build_config, daemon_group
from agent.daemon.config import load_config
from agent.daemon.host_scripts import (
    _MERGED_RECORD,
    CONFIG_METRICS_SCRIPT,
    STATUS_SCRIPT,
    STOP_SCRIPT,
    config_script,
    probe_script,
)
from agent.daemon.install import (
    LEFT_CONNECTING,
    LEFT_NAMED,
    HostFailure,
    HostReport,
    _not_healthy,
    _refuse_a_hidden_metrics_file,
    absent_detail,
    config_metrics_detail,
    daemon_error,
    daemon_plan_options,
    failed_its_cycle,
    install_host,
    journal_messages,
    metrics_file_named,
    not_healthy_message,
    not_root_refusal,
    run_hosts,
    status_fresh,
    uninstall_host,
    uninstalled_detail,
    would_fail,
)
from agent.daemon.lock import hold_daemon_lock
from agent.daemon.unit import DEFAULT_CONFIG, DEFAULT_ENV_FILE, hidden_from_the_service
from agent.daemon.wheelhouse import Target, Wheelhouse, WheelhouseCache, parse_probe, project_wheel
from agent.host_pool import NOT_STARTED
from agent.hosts.base import CommandResult, Transport
from agent.hosts.local import LocalTransport
from agent.inputs import DTR_TOKEN_ENV, DTR_USER_ENV, PolicyInputs, resolve_policy
from agent.sources import detect_kind, load_source
from agent.sources.distribution import parse_distribution
from agent.sources.model import RegistrySettings, S3Storage
from agent.trust import TrustPolicy, build_policy
from tests.pki import make_ca
from tests.unit.held_source import WAIT

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sources"
SOURCES = sorted(p.name for p in FIXTURES.iterdir() if p.suffix in (".yml", ".json"))
SECRETS = (
    "dtr-fixture-secret-do-not-leak",
    "AKIADTRFIXTUREEXAMPLE",
    "dtr-http-secret-do-not-leak",
    "harbor-secret-key-fixture-do-not-leak",
    "harbor-access-key-fixture",
    "Harbor12345-do-not-leak",
    "root123-do-not-leak",
)


def _secret_values(path: Path) -> list[str]:
    """Every S3 key value and http secret in a distribution fixture (what must not reach a host)."""
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or "version" not in data:
        return []
    found = [str(data.get("http", {}).get("secret", ""))]
    for driver in (data.get("storage") or {}).values():
        if isinstance(driver, dict):
            found += [str(driver.get(k, "")) for k in ("accesskey", "secretkey")]
    return [f for f in found if f]


def _materialise(bundle: InstallBundle, root: Path) -> PolicyInputs:
    """Write the bundle under ``root`` and read daemon.yml back as the daemon would (paths re-rooted)."""
    for item in bundle.files:
        path = root / item.path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(item.data)
        path.chmod(item.mode)
    config = load_config(str(root / DEFAULT_CONFIG.lstrip("/")))
    d = config.defaults

    def rooted(p: str) -> str:
        return str(root / p.lstrip("/")) if p.startswith("/etc/trust-agent/") else p

    return PolicyInputs(
        source=rooted(d["source"]),
        registries=tuple(d.get("registries", ())),
        storage_ca=tuple(rooted(p) for p in d.get("storage_ca", ())),
        registry_ca=tuple(rooted(p) for p in d.get("registry_ca", ())),
        allow_expired=d.get("allow_expired", False),
    )


@pytest.mark.parametrize("name", SOURCES)
def test_host_copy_yields_the_same_policy_without_any_secret(name: str, tmp_path: Path) -> None:
    ca = tmp_path / "storage-ca.pem"
    ca.write_bytes(make_ca("Extra Storage CA")[0])
    inputs = PolicyInputs(source=str(FIXTURES / name), registries=("reg.example",), storage_ca=(str(ca),))
    settings, policy = resolve_policy(inputs)
    bundle = build_bundle(inputs, settings, policy, DaemonSettings(interval="2s"), environ={})
    assert bundle.fingerprint == policy.fingerprint()

    on_host = _materialise(bundle, tmp_path / "host")
    host_settings, host_policy = resolve_policy(on_host)
    assert host_policy.fingerprint() == policy.fingerprint()
    assert (host_policy.registries, host_policy.insecure, host_policy.storage_endpoint) == (
        policy.registries,
        policy.insecure,
        policy.storage_endpoint,
    )
    assert host_settings.kind == "distribution"
    assert host_settings.redirect_disabled == settings.redirect_disabled
    assert host_settings.s3 is not None or settings.s3 is None
    everything = b"".join(f.data for f in bundle.files).decode()
    for secret in (*SECRETS, *_secret_values(FIXTURES / name)):
        assert secret not in everything, f"{secret!r} copied to the host"
    assert "accesskey" not in everything and "secretkey" not in everything


def test_host_source_keeps_what_engines_depend_on() -> None:
    settings = load_source(str(FIXTURES / "registry-redirect-middleware.yml"))
    copied = load_source_text(host_source_document(settings))
    assert copied.redirect_middleware == settings.redirect_middleware
    assert copied.redirect_baseurl == settings.redirect_baseurl
    assert copied.s3 is not None and settings.s3 is not None
    assert copied.s3 == settings.s3.__class__(**{**settings.s3.__dict__, "has_credentials": False})


def load_source_text(data: bytes) -> RegistrySettings:
    return parse_distribution(data.decode(), "copy.yml")


# --- the host's copy against generated settings ----------------------------------------------------

_STORAGE_CA = parse_bundle(make_ca("Generated Storage CA")[0], "storage-ca.pem")
# yaml.v2 reads y/n/yes/on as booleans: text like that must come back as text.
_WORDS = st.sampled_from(["my-bucket", "b.dotted.name", "y", "n", "yes", "on", "0123", "Up_Case"])
_ENDPOINTS = st.sampled_from(
    [
        "https://s3.storage.test:9000",
        "http://10.0.0.5:9000",
        "minio.test:9000",
        "https://s3.eu-west-1.amazonaws.com",
        "https://[2001:db8::5]:9000",
    ]
)


@st.composite
def _s3(draw: st.DrawFn) -> S3Storage:
    return S3Storage(
        bucket=draw(st.none() | _WORDS),
        region=draw(st.none() | st.sampled_from(["us-east-1", "eu-west-1", "y", "n"])),
        regionendpoint=draw(st.none() | _ENDPOINTS),
        redirectendpoint=draw(st.none() | _ENDPOINTS),
        rootdirectory=draw(st.none() | _WORDS),
        secure=draw(st.booleans()),
        skipverify=draw(st.booleans()),
        v4auth=draw(st.booleans()),
        forcepathstyle=draw(st.none() | st.booleans()),
    )


@st.composite
def _registry_settings(draw: st.DrawFn) -> RegistrySettings:
    kind = draw(st.sampled_from(["distribution", "harbor", "dtr"]))
    driver = draw(st.sampled_from(["s3", "s3aws", "filesystem", "inmemory", "azure", "gcs", "swift"]))
    middleware = draw(st.sampled_from([None, "redirect", "cloudfront"]))
    baseurl = None
    if middleware is not None:
        baseurl = draw(st.sampled_from(["https://cdn.storage.test", "https://cdn.storage.test:8443"]))
        if middleware == "cloudfront":
            baseurl = draw(st.sampled_from([baseurl, "cdn.storage.test"]))  # cloudfront adds https://
    ipfilteredby = draw(st.sampled_from([None, "aws", "awsregion"])) if middleware == "cloudfront" else None
    regions = ("us-east-1", "eu-west-1") if ipfilteredby == "awsregion" else ()
    return RegistrySettings(
        kind=kind,  # type: ignore[arg-type]
        origin=f"generated {kind}",
        driver=driver,
        s3=draw(_s3()) if driver in ("s3", "s3aws") else None,
        redirect_disabled=draw(st.booleans()),
        redirect_middleware=middleware,
        redirect_baseurl=baseurl,
        redirect_ipfilteredby=ipfilteredby,
        redirect_awsregions=regions,
        http_host=draw(
            st.sampled_from(
                [None, "https://reg.test", "https://reg.test:5443", "http://reg.test:5000", "reg.test"]
            )
        ),
        http_tls=draw(st.booleans()),
    )


def _what_engines_get(policy: TrustPolicy) -> tuple[object, ...]:
    return (
        policy.registries,
        policy.storage_scheme,
        policy.storage_endpoint,
        policy.storage_alternatives,
        policy.insecure,
        [(c.role, c.name, c.bundle.pem) for c in policy.ca_files],
        policy.storage_ca_missing,
    )


@given(settings=_registry_settings(), with_storage_ca=st.booleans())
@hypothesis_example(  # S3 itself for clients in AWS: a second store the host's daemon must know of
    settings=RegistrySettings(
        kind="distribution",
        origin="config.yml",
        driver="s3",
        s3=S3Storage(bucket="b", regionendpoint="https://s3.storage.test:9000", forcepathstyle=True),
        redirect_middleware="cloudfront",
        redirect_baseurl="https://cdn.storage.test",
        redirect_ipfilteredby="aws",
        http_host="https://reg.test",
    ),
    with_storage_ca=True,
)
@hypothesis_example(  # Harbor runs distribution 2.x: path style, whatever forcepathstyle says
    settings=RegistrySettings(
        kind="harbor",
        origin="harbor.yml",
        driver="s3",
        s3=S3Storage(bucket="bucket", regionendpoint="https://s3.storage.test:9000", forcepathstyle=False),
        http_host="https://reg.test",
    ),
    with_storage_ca=True,
)
def test_the_hosts_copy_gives_its_daemon_the_controllers_policy(
    settings: RegistrySettings, with_storage_ca: bool
) -> None:
    """The daemon reads the copy as a config.yml: cloudfront's ipfilteredby (S3 itself as a second
    store), Harbor's and DTR's path style, http.tls and text yaml.v2 reads as booleans all survive."""
    registries = () if settings.http_host else ("reg.test",)
    storage_cas = (_STORAGE_CA,) if with_storage_ca else ()
    wanted = build_policy(settings, registries, storage_cas)

    text = host_source_document(settings).decode()
    assert detect_kind(text) == "distribution"
    on_host = build_policy(parse_distribution(text, "registry.yml"), registries, storage_cas)
    assert _what_engines_get(on_host) == _what_engines_get(wanted)


def test_no_registry_ca_and_no_storage_ca_reach_the_hosts_daemon(tmp_path: Path) -> None:
    """Without them in daemon.yml, the daemon would keep (and fail on) the CA the person removed."""
    inputs = PolicyInputs(
        source=str(FIXTURES / "registry-minio.yml"), no_storage_ca=True, no_registry_ca=True
    )
    settings, policy = resolve_policy(inputs)
    bundle = build_bundle(inputs, settings, policy, DaemonSettings(interval="5s"), environ={})
    _materialise(bundle, tmp_path / "host")
    defaults = load_config(str(tmp_path / "host" / DEFAULT_CONFIG.lstrip("/"))).defaults
    assert defaults["no_storage_ca"] is True and defaults["no_registry_ca"] is True
    (tmp_path / "tree").mkdir()
    daemon_inputs = build_config({**defaults, "root": str(tmp_path / "tree")}).inputs
    assert daemon_inputs.no_storage_ca and daemon_inputs.no_registry_ca


def test_bundle_files_modes_and_daemon_options(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(make_ca("Storage CA")[0])
    inputs = PolicyInputs(
        source=str(FIXTURES / "registry-minio.yml"), storage_ca=(str(ca),), registry_ca=(str(ca),)
    )
    settings, policy = resolve_policy(inputs)
    daemon = DaemonSettings(
        interval="5s", metrics_file="/var/lib/node_exporter/ta.prom", canary_image="r/x:1", verify=False
    )
    bundle = build_bundle(inputs, settings, policy, daemon, environ={DTR_TOKEN_ENV: "not-for-files"})
    modes = {f.path: f.mode for f in bundle.files}
    assert modes[HOST_SOURCE] == 0o600 and modes[DEFAULT_CONFIG] == 0o600 and modes[UNIT_PATH] == 0o644
    assert modes[f"{SOURCE_DIR}/storage-ca-1.pem"] == 0o600 and f"{SOURCE_DIR}/registry-ca-1.pem" in modes
    assert DEFAULT_ENV_FILE not in modes, "a file source needs no credentials"
    assert not bundle.live_source

    config = _materialise(bundle, tmp_path / "host")
    assert config.storage_ca and config.registry_ca
    defaults = load_config(str(tmp_path / "host" / DEFAULT_CONFIG.lstrip("/"))).defaults
    assert defaults["interval"] == "5s"
    assert defaults["metrics_file"] == "/var/lib/node_exporter/ta.prom"
    assert defaults["canary_image"] == "r/x:1" and defaults["no_verify"] is True
    assert defaults["status_file"] == "/var/lib/trust-agent/status.json"
    unit = next(f.data.decode() for f in bundle.files if f.path == UNIT_PATH)
    assert (
        "ExecStart=/opt/trust-agent/venv/bin/trust-agent daemon run --config /etc/trust-agent/daemon.yml"
        in unit
    )
    manifest = json.loads(next(f.data for f in bundle.files if f.path.endswith("install.json")))
    assert "/var/lib/node_exporter/ta.prom" in manifest["state_files"]


def test_live_source_keeps_the_url_and_puts_credentials_in_an_env_file(tmp_path: Path) -> None:
    ca = tmp_path / "dtr-ca.pem"
    ca.write_bytes(make_ca("DTR CA")[0])
    inputs = PolicyInputs(source="https://admin@dtr.example.com/", source_ca=str(ca))
    settings = load_source(str(FIXTURES / "dtr-settings.json"))  # what the controller read live
    _, policy = resolve_policy(
        PolicyInputs(source=str(FIXTURES / "dtr-settings.json"), registries=("d.example",))
    )
    environ = {DTR_USER_ENV: "admin", DTR_TOKEN_ENV: 'tok"en\\1'}
    bundle = build_bundle(inputs, settings, policy, DaemonSettings(), environ=environ)
    files = {f.path: f for f in bundle.files}
    assert bundle.live_source
    assert HOST_SOURCE not in files, "a URL is read by the host itself"
    env = files[DEFAULT_ENV_FILE]
    assert env.mode == 0o600
    assert env.data.decode() == 'TRUST_AGENT_DTR_USER="admin"\nTRUST_AGENT_DTR_TOKEN="tok\\"en\\\\1"\n'
    config = yaml.safe_load(files[DEFAULT_CONFIG].data)
    assert config["source"] == "https://admin@dtr.example.com/"
    assert config["source_ca"] == f"{SOURCE_DIR}/source-ca.pem"
    assert "tok" not in files[DEFAULT_CONFIG].data.decode()
    assert bundle.source_spec == "https://dtr.example.com/"


def test_files_tar_keeps_modes_and_paths() -> None:
    data = files_tar([HostFile("/etc/trust-agent/daemon.yml", b"x: 1\n", 0o600)])
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        (member,) = archive.getmembers()
        assert (member.name, member.mode, member.size) == ("etc/trust-agent/daemon.yml", 0o600, 5)


# --- the probe and the wheels ----------------------------------------------------------------------


def test_probe_output_gives_the_wheel_target() -> None:
    text = "python=3.11\nimplementation=cpython\nmachine=x86_64\nlibc=glibc 2.36\nvenv=no\nsystemd=yes\n"
    target, has_venv = parse_probe(text)
    assert target == Target((3, 11), "x86_64", "glibc", (2, 36))
    assert not has_venv
    platforms = target.platforms()
    assert platforms[0] == "manylinux_2_36_x86_64" and platforms[-1] == "manylinux2014_x86_64"
    assert "manylinux_2_17_x86_64" in platforms and "manylinux_2_37_x86_64" not in platforms
    arm, _ = parse_probe("python=3.12\nmachine=aarch64\nlibc=glibc 2.31\nvenv=yes\n")
    assert arm.platforms()[0] == "manylinux_2_31_aarch64" and arm.key() != target.key()
    unknown, _ = parse_probe("python=3.11\nmachine=x86_64\nlibc= \nvenv=yes\n")
    assert unknown.platforms() == ["linux_x86_64"]
    with pytest.raises(ValueError):
        parse_probe("python=missing\n")


def test_probe_runs_on_this_python() -> None:
    from agent.daemon.wheelhouse import PROBE_PYTHON

    out = subprocess.run(
        [sys.executable, "-c", PROBE_PYTHON], capture_output=True, text=True, check=True
    ).stdout
    target, has_venv = parse_probe(out)
    assert target.python == sys.version_info[:2] and has_venv in (True, False)


def test_project_wheel_is_deterministic_and_installable_metadata(tmp_path: Path) -> None:
    first, second = project_wheel(), project_wheel()
    assert first.data == second.data, "same code, same wheel, same digest"
    assert first.filename == f"trust_agent-{first.version}-py3-none-any.whl"
    assert not any("extra" in r for r in first.requirements)
    with zipfile.ZipFile(io.BytesIO(first.data)) as archive:
        names = archive.namelist()
        assert "agent/cli.py" in names and "agent/py.typed" in names
        assert "agent/reports/templates/report.html.j2" in names
        assert not any("__pycache__" in n for n in names)
        info = f"trust_agent-{first.version}.dist-info"
        assert "trust-agent = agent.entry:main" in archive.read(f"{info}/entry_points.txt").decode()
        record = archive.read(f"{info}/RECORD").decode()
        assert "agent/cli.py,sha256=" in record
    # The wheelhouse names what it installs; a different project wheel is a different install.
    (tmp_path / "dep-1.0-py3-none-any.whl").write_bytes(b"dep")
    house = Wheelhouse(tmp_path, first)
    assert house.ident == Wheelhouse(tmp_path, second).ident
    with tarfile.open(fileobj=io.BytesIO(house.tar())) as archive:
        assert sorted(archive.getnames()) == sorted(["dep-1.0-py3-none-any.whl", first.filename])


# --- readiness -------------------------------------------------------------------------------------


def test_status_is_fresh_only_from_the_current_process_after_the_action() -> None:
    doc = {"pid": 42, "last_run": "2024-05-01T12:00:10.000Z"}
    since = 1714564805.0  # 12:00:05
    assert status_fresh(doc, main_pid="42", action="none", since=since, old_pid="42")
    assert not status_fresh(doc, main_pid="43", action="none", since=since, old_pid="42"), "an old process"
    assert not status_fresh(doc, main_pid="0", action="none", since=since, old_pid="0"), "not running"
    assert not status_fresh(doc, main_pid="42", action="restart", since=since, old_pid="42"), (
        "not restarted yet"
    )
    assert status_fresh(doc, main_pid="42", action="restart", since=since, old_pid="7")
    assert status_fresh(doc, main_pid="42", action="reload", since=since, old_pid="42")
    assert not status_fresh(doc, main_pid="42", action="reload", since=since + 10, old_pid="42"), (
        "before reload"
    )


# --- the command line ------------------------------------------------------------------------------


def test_bad_input_exits_2_before_any_host(tmp_path: Path) -> None:
    bad = tmp_path / "config.yml"
    bad.write_text("version: 0.1\nstorage:\n  s3: {secure: maybe}\n")
    result = CliRunner().invoke(
        daemon_group,
        ["install", "-i", "127.0.0.1,", "--source", str(bad), "--registry", "r.example"],
    )
    assert result.exit_code == 2
    assert "storage.s3.secure" in result.output
    result = CliRunner().invoke(
        daemon_group,
        [
            "install",
            "-i",
            "127.0.0.1,",
            "--source",
            str(FIXTURES / "registry-minio.yml"),
            "--interval",
            "soon",
        ],
    )
    assert result.exit_code == 2 and "--interval" in result.output
    for path, why in (
        ("/tmp/m.prom", "private /tmp (PrivateTmp=yes)"),
        ("/root/m.prom", "cannot write home directories (ProtectHome=yes)"),
    ):
        argv = ["install", "-i", "127.0.0.1,", "--source", str(FIXTURES / "registry-minio.yml")]
        result = CliRunner().invoke(daemon_group, [*argv, "--metrics-file", path])
        assert result.exit_code == 2 and f"--metrics-file {path}: the service" in result.output
        assert why in result.output


def test_unit_is_printable_for_image_builders() -> None:
    result = CliRunner().invoke(daemon_group, ["unit"])
    assert result.exit_code == 0 and "Type=notify" in result.output
    relative = CliRunner().invoke(daemon_group, ["unit", "--prefix", "relative dir"])
    assert relative.exit_code == 2
    assert "--prefix relative dir: give an absolute path on the host" in relative.output


def test_an_interrupted_install_finishes_the_host_in_flight_and_reports_the_rest_skipped() -> None:
    heard: list[int] = []

    def work(transport: Transport) -> HostReport:
        if transport.name == "b":
            os.kill(os.getpid(), signal.SIGTERM)  # as a CI job's cancel sends it, while "b" installs
            time.sleep(0.3)
        return HostReport(transport.name, "installed")

    reports, interrupted = run_hosts(
        ["a", "b", "c"], LocalTransport, work, forks=1, on_interrupt=heard.append
    )
    assert interrupted and heard == [1]
    assert [(r.host, r.status, r.error) for r in reports] == [
        ("a", "installed", None),
        ("b", "installed", None),
        ("c", "skipped", "not started: the run was interrupted"),
    ]
    assert not reports[2].failed
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_a_change_of_options_stops_the_daemon_before_any_file_moves(tmp_path: Path) -> None:
    """Else a cycle could read the new source with the old options: a policy the controller did not
    work out, which the daemon would keep as its last good one."""
    inputs = PolicyInputs(source=str(FIXTURES / "registry-minio.yml"))
    settings, policy = resolve_policy(inputs)
    bundle = build_bundle(inputs, settings, policy, DaemonSettings(metrics_file="/srv/m.prom"), environ={})
    script = config_script(bundle, venv_changed=False)
    stop = script.index("systemctl stop trust-agent")
    assert stop < script.index("\nplace ")
    assert script.index('cmp -s "/etc/trust-agent/.stage/${pair%%:*}" "${pair#*:}" || restart=yes') < stop
    # The metrics file is checked before anything else, and the install stops where it is another's.
    assert script.index("f=/srv/m.prom") < script.index("umask 077")
    assert "--metrics-file /srv/m.prom: the file exists and is not trust-agent" in script


@pytest.mark.parametrize(
    ("path", "hidden"),
    [
        ("/var/lib/node_exporter/ta.prom", False),
        ("/var/../home/ops/ta.prom", True),  # the kernel resolves it to /home
        ("//root/ta.prom", True),
        ("/run/user/0/../1000/ta.prom", True),
        ("/var/lib/../tmp/ta.prom", True),  # /var/tmp: private too
        ("/homework/ta.prom", False),
    ],
)
def test_paths_the_sandboxed_service_cannot_share_are_known_however_written(path: str, hidden: bool) -> None:
    assert (hidden_from_the_service(path) is not None) is hidden


def test_the_probe_says_where_the_metrics_file_really_is(tmp_path: Path) -> None:
    """A link on the way into /home hid the file from the service (ProtectHome=yes): installed healthy,
    and node_exporter never saw a metric."""
    (tmp_path / "collector").symlink_to("/home/ops/prom")  # the target need not exist
    given = str(tmp_path / "collector" / "ta.prom")
    out = LocalTransport("here").run(probe_script("python3", given)).stdout.decode()
    assert "metrics_real=/home/ops/prom/ta.prom\n" in out
    with pytest.raises(HostFailure) as refused:
        _refuse_a_hidden_metrics_file(given, "/home/ops/prom/ta.prom")
    assert str(refused.value) == (
        f"--metrics-file {given} resolves to /home/ops/prom/ta.prom on this host: the service cannot "
        "write home directories (ProtectHome=yes); choose a path outside /root, /home, /run/user and /tmp"
    )
    _refuse_a_hidden_metrics_file(given, "/var/lib/node_exporter/ta.prom")  # nothing to say


def test_the_probe_refuses_a_foreign_metrics_file_before_anything_is_installed(tmp_path: Path) -> None:
    theirs = tmp_path / "daemon.json"
    theirs.write_text('{"debug": true}\n')
    ours = tmp_path / "m.prom"
    ours.write_text("# HELP trust_agent_up 1 when the daemon runs\n")
    run = LocalTransport("here").run
    assert (
        run(probe_script("python3", str(theirs))).stdout.decode() == f"uid={os.getuid()}\nmetrics=foreign\n"
    )
    for fine in (ours, tmp_path / "absent.prom"):
        assert "metrics=foreign" not in run(probe_script("python3", str(fine))).stdout.decode()


def test_a_new_install_removes_only_the_source_files_the_last_one_put_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rm -rf` took every file in /etc/trust-agent/source/ it was not installing now, a file that
    configuration management keeps there too."""
    import agent.daemon.bundle as bundle_module
    import agent.daemon.host_scripts as scripts_module

    etc = tmp_path / "etc/trust-agent"
    paths = {
        "CONFIG_DIR": str(etc),
        "SOURCE_DIR": str(etc / "source"),
        "MANIFEST": str(etc / "install.json"),
        "DEFAULT_CONFIG": str(etc / "daemon.yml"),
        "DEFAULT_ENV_FILE": str(etc / "daemon.env"),
        "UNIT_PATH": str(tmp_path / "trust-agent.service"),
        "OPT_DIR": str(tmp_path / "opt"),
    }
    for name, value in paths.items():  # each module's own copy: the bundle's and the scripts'
        for module in (bundle_module, scripts_module):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, value)
    (tmp_path / "opt/venv/bin").mkdir(parents=True)
    (tmp_path / "opt/venv/bin/python").symlink_to(sys.executable)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "systemctl").write_text('#!/bin/sh\n[ "$1" != is-active ]\n')  # "not active", else fine
    (fake_bin / "systemctl").chmod(0o755)
    cas = []
    for number in (1, 2):
        cas.append(tmp_path / f"ca{number}.pem")
        cas[-1].write_bytes(make_ca(f"Storage CA {number}")[0])

    def install_with(*storage_ca: Path) -> None:
        inputs = PolicyInputs(
            source=str(FIXTURES / "registry-minio.yml"), storage_ca=tuple(map(str, storage_ca))
        )
        settings, policy = resolve_policy(inputs)
        bundle = build_bundle(inputs, settings, policy, DaemonSettings(), environ={})
        placed = subprocess.run(
            ["sh", "-c", config_script(bundle, venv_changed=False)],
            input=files_tar(bundle.files),
            env={**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"},
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert placed.returncode == 0, placed.stderr.decode()

    install_with(*cas)
    source = etc / "source"
    assert (source / "storage-ca-2.pem").exists()
    (source / "kept-by-cm.pem").write_text("configuration management's\n")
    install_with(cas[0])
    assert not (source / "storage-ca-2.pem").exists()  # the last install's, no longer wanted
    assert (source / "storage-ca-1.pem").read_bytes() == cas[0].read_bytes()
    assert (source / "kept-by-cm.pem").read_text() == "configuration management's\n"


# --- a host the daemon would fail on, and a daemon that failed -------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"


def _commands(text: str, start: str) -> list[str]:
    """Each command line of ``text`` that starts with ``start``, its continuation lines joined."""
    joined = text.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip().startswith(start)]


@pytest.mark.parametrize("command", ["trust-agent daemon install", "trust-agent daemon run --source"])
def test_the_daemon_examples_give_the_registry_ca_the_rollout_gives(command: str) -> None:
    """README's rollout gave --registry-ca and its daemon example did not: on hosts the rollout had given
    the registry CA, every daemon failed (it would have removed it)."""
    readme = README.read_text()
    daemon_section = readme[readme.index("## Daemon mode") : readme.index("## Ansible and AWX")]
    help_text = CliRunner().invoke(daemon_group, ["--help"]).output
    examples = _commands(daemon_section, command) + _commands(help_text, command)
    assert examples, command
    for example in examples:
        assert "--registry-ca" in example or "--no-registry-ca" in example, example


def test_the_plan_before_install_is_read_only_and_uses_the_daemons_restart_policy() -> None:
    daemon = DaemonSettings(restart_policy="never", allow_restart=True)
    options = daemon_plan_options(daemon, command_timeout=42.0)
    assert options.dry_run and not options.verify
    assert (options.restart_policy, options.allow_restart, options.command_timeout) == ("never", True, 42.0)


def test_a_refused_host_is_told_why_and_that_nothing_was_put_on_it() -> None:
    assert would_fail("this host holds trust-agent's registry CA (/x), and no registry CA is given") == (
        "not installed: the daemon would fail on this host: this host holds trust-agent's registry CA "
        "(/x), and no registry CA is given (nothing was put on the host)"
    )


@pytest.mark.parametrize(
    ("status", "failed"),
    [
        ({"state": "failing", "cycles": 1, "host_busy": False}, True),
        ({"state": "failing", "cycles": 3}, True),
        ({"state": "starting", "cycles": 0}, False),  # its first cycle still runs
        ({"state": "failing", "cycles": 0}, False),  # no cycle yet: the kept policy unusable, say
        ({"state": "failing", "cycles": 1, "host_busy": True}, False),  # another run held the lock
        ({"state": "degraded", "cycles": 1}, False),  # a source outage it rides out
        ({"state": "ok", "cycles": 1}, False),
    ],
)
def test_install_stops_waiting_once_the_daemon_has_failed_a_cycle(
    status: dict[str, object], failed: bool
) -> None:
    assert failed_its_cycle(status) is failed


def test_the_daemons_error_is_its_own_message() -> None:
    assert daemon_error({"state": "failing", "last_error": "host: canary pull failed"}) == (
        "host: canary pull failed"
    )
    outcome_only = {"state": "failing", "last_error": None, "outcome": {"error": "rolled back: x"}}
    assert daemon_error(outcome_only) == "rolled back: x"
    assert daemon_error({"state": "failing"}) == "state failing"


def test_the_journal_is_read_for_its_messages_not_shown_as_raw_records() -> None:
    """Each host's error held the journal's last three raw JSON records."""
    journal = "\n".join(
        [
            json.dumps({"ts": "t", "level": "info", "event": "start", "source": "/etc/x"}),
            json.dumps({"ts": "t", "level": "error", "event": "cycle", "error": "host: dockerd refused"}),
            json.dumps({"ts": "t", "level": "warning", "event": "policy_warnings", "warnings": ["a", "b"]}),
            json.dumps({"ts": "t", "level": "error", "event": "crashed", "error": "OSError: disk full"}),
            "trust-agent.service: Main process exited, code=exited, status=1/FAILURE",
        ]
    )
    assert journal_messages(journal) == [
        "policy_warnings: a; b",
        "crashed: OSError: disk full",
        "trust-agent.service: Main process exited, code=exited, status=1/FAILURE",
    ]
    assert journal_messages(journal, limit=5)[0] == "cycle: host: dockerd refused"
    assert journal_messages("") == []


@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "ts": st.text(),
                "level": st.sampled_from(["debug", "info", "warning", "error"]),
                "event": st.text(),
            },
            optional={"error": st.text(), "message": st.text()},
        ),
        max_size=8,
    )
)
def test_no_raw_record_reaches_the_error_whatever_the_journal_holds(records: list[dict[str, str]]) -> None:
    raw = [json.dumps(record) for record in records]
    for said in journal_messages("\n".join(raw), limit=10):
        assert said not in raw  # an event may itself read "{": only a whole record is raw


class _JournalOnly(Transport):
    """A host whose journal holds only systemd's own lines, as after a restart."""

    name = "h2"

    def __init__(self) -> None:
        self.commands: list[str] = []

    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        self.commands.append(command)
        return CommandResult(0, b"Stopped trust-agent.service\nStarted trust-agent.service\n", b"")

    def docker_api(self, timeout: float = 30.0) -> None:
        raise AssertionError("no engine here")


def test_a_daemon_kept_out_by_another_runs_lock_says_so_not_what_systemd_logged() -> None:
    """status.json said host_busy, but the report quoted systemd's "Stopped/Started" lines: the
    daemon's host_busy events are at info, which the journal's excerpt leaves out."""
    busy = {"state": "pending", "host_busy": True, "last_error": None, "cycles": 3}
    host = _JournalOnly()
    assert str(_not_healthy(host, 10, "active", busy)) == (
        "not healthy after 10s (service active, daemon pending); another trust-agent run holds "
        "/var/lib/trust-agent/lock (a rollout or an apply reaching this host, say): the daemon leaves the "
        "host to it; left running: it converges the host once that run ends"
    )
    assert host.commands == []  # status.json said why: the journal is not read
    failing = {**busy, "state": "failing", "last_error": "source: connection refused"}
    assert not_healthy_message(10, "active", failing).startswith(
        "not healthy after 10s (service active, daemon failing: source: connection refused); another "
        "trust-agent run holds /var/lib/trust-agent/lock"
    )


def test_a_daemon_not_healthy_for_other_reasons_is_told_in_its_own_words_or_its_journals() -> None:
    starting = {"state": "starting", "host_busy": False, "last_error": None}
    assert not_healthy_message(10, "active", starting, ["crashed: OSError: disk full"]) == (
        "not healthy after 10s (service active, daemon starting); journal: crashed: OSError: disk full; "
        "left running, it goes on trying"
    )
    failing = {"state": "failing", "last_error": "source: HTTP 503"}
    assert not_healthy_message(5, "active", failing, ["ignored"]) == (
        "not healthy after 5s (service active, daemon failing: source: HTTP 503); left running, it goes on trying"
    )
    assert not_healthy_message(5, "failed", {}, ["x"]) == "not healthy after 5s (service failed); journal: x"


class LoggingIn(LocalTransport):
    """A host reached over a login (as over SSH) that runs nothing here: its commands are recorded.
    The interrupt comes ``at`` its "login" (which is then held until ``release``, as an unanswered
    connect waits for its timeout) or its first "command"."""

    def __init__(self, name: str, at: str) -> None:
        super().__init__(name)
        self.at = at
        self.release = threading.Event()
        self.closed = threading.Event()
        self.ran: list[str] = []

    def connect(self) -> None:
        if self.at == "login":
            os.kill(os.getpid(), signal.SIGTERM)  # as a CI job's cancel sends it
            self.release.wait(WAIT)

    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        if self.at == "command" and not self.ran:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.3)  # the interrupt is acted on while the command runs
        self.ran.append(command)
        return CommandResult(0, b"", b"")

    def close(self) -> None:
        self.closed.set()


def test_an_interrupt_leaves_a_host_still_logging_in_at_once_and_nothing_is_run_on_it() -> None:
    """An uninstall (or install) interrupted waited out the connect timeout of a host still logging
    in, and then went on to run its commands on it."""
    hosts: dict[str, LoggingIn] = {}
    heard: list[tuple[int, int]] = []

    def opener(name: str) -> Transport:
        hosts[name] = LoggingIn(name, "login")
        return hosts[name]

    started = time.monotonic()
    try:
        reports, interrupted = run_hosts(
            ["a", "b"],
            opener,
            lambda t: uninstall_host(t, purge=False, command_timeout=5.0),
            forks=1,
            on_interrupt_left=lambda in_flight, left: heard.append((in_flight, left)),
        )
        took = time.monotonic() - started
        assert not hosts["a"].release.is_set()
    finally:
        for host in hosts.values():
            host.release.set()  # the login ends now, after the run
    assert took < WAIT / 2, f"the run waited {took:.1f}s for a host still logging in"
    assert interrupted and heard == [(0, 1)]
    assert [(r.host, r.status, r.error) for r in reports] == [
        ("a", "skipped", LEFT_CONNECTING),
        ("b", "skipped", NOT_STARTED),
    ]
    assert LEFT_CONNECTING == (
        "not started: the run was interrupted while this host was still connecting; nothing was put on it"
    )
    assert not reports[0].failed and list(hosts) == ["a"]
    assert hosts["a"].closed.wait(WAIT), "the left host's connection was never closed"
    assert hosts["a"].ran == []  # its login came up after the run: refused every command
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_a_host_whose_first_command_after_the_login_has_run_is_finished_on_an_interrupt() -> None:
    """Only the login may be abandoned: any command after it may change the host."""
    host = LoggingIn("a", "command")
    heard: list[tuple[int, int]] = []
    reports, interrupted = run_hosts(
        ["a", "b"],
        lambda name: host if name == "a" else LoggingIn(name, "login"),
        lambda t: uninstall_host(t, purge=False, command_timeout=5.0),
        forks=1,
        on_interrupt_left=lambda in_flight, left: heard.append((in_flight, left)),
    )
    assert interrupted and heard == [(1, 0)]
    assert [(r.host, r.status, r.error) for r in reports] == [
        ("a", "absent", None),  # uninstalled to the end: nothing was installed there
        ("b", "skipped", NOT_STARTED),
    ]
    # The login's uid read, the service stopped, daemon.yml's metrics file read (the host has no
    # install.json to list it), then its files removed.
    assert len(host.ran) == 4


class _LoggedInAs(Transport):
    """A host whose login is ``uid`` and whose commands all succeed, saying nothing but the uid (to
    ``id -u`` and to the probe): what ran is kept."""

    name = "h1"

    def __init__(self, uid: int) -> None:
        self.uid = uid
        self.commands: list[str] = []

    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        self.commands.append(command)
        if command == "id -u":
            return CommandResult(0, f"{self.uid}\n".encode(), b"")
        if command == PROBE:
            return CommandResult(0, f"uid={self.uid}\n".encode(), b"")
        return CommandResult(0, b"", b"")

    def docker_api(self, timeout: float = 30.0) -> None:
        raise AssertionError("no engine here")


NOT_ROOT = (
    "runs as uid 1000, not root: /etc/docker and the engine's socket are root's "
    "(log in as root, or pass --become for sudo)"
)


def test_install_and_uninstall_refuse_a_login_that_is_not_root_before_anything_else_runs() -> None:
    """A non-root login without --become failed at install's first write, with mkdir's bare
    "cannot create directory '/opt/trust-agent': Permission denied"."""
    inputs = PolicyInputs(source=str(FIXTURES / "registry-minio.yml"))
    settings, policy = resolve_policy(inputs)
    bundle = build_bundle(inputs, settings, policy, DaemonSettings(), environ={})
    host = _LoggedInAs(1000)
    installed = install_host(host, bundle, WheelhouseCache(), policy=policy)
    assert (installed.status, installed.error) == ("failed", f"{NOT_ROOT}; nothing was put on the host")
    uninstalled = uninstall_host(host, purge=True)
    assert (uninstalled.status, uninstalled.error) == (
        "failed",
        f"{NOT_ROOT}; nothing was removed from the host",
    )
    assert host.commands == [PROBE, "id -u"]  # neither went further: install's uid came with its probe
    root = _LoggedInAs(0)
    uninstall_host(root, purge=False)
    assert root.commands[0] == "id -u" and len(root.commands) > 1  # root goes on


PROBE = probe_script("python3")


class _InstalledBuild:
    """A wheelhouse whose build the host already runs: no virtualenv is sent."""

    ident = "build-1"

    def for_target(self, _target: Target) -> _InstalledBuild:
        return self


class _RootHostOfThisBuild(Transport):
    """A root login on a host that runs ``_InstalledBuild`` and whose daemon comes up healthy on
    ``fingerprint`` once restarted: each command is answered as the host would, and kept."""

    name = "h1"

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.commands: list[str] = []

    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        self.commands.append(command)
        if command == PROBE:
            said = "uid=0\npython=3.11\nmachine=x86_64\nlibc=glibc 2.36\nvenv=yes\nsystemd=yes\n"
            return CommandResult(0, f"{said}installed={_InstalledBuild.ident}\nmain_pid=100\n".encode(), b"")
        if command == STATUS_SCRIPT:
            daemon = {
                "pid": 4242,
                "state": "ok",
                "healthy": True,
                "policy": {"fingerprint": self.fingerprint},
            }
            return CommandResult(
                0, f"main_pid=4242\nactive=active\nstatus={json.dumps(daemon)}\n".encode(), b""
            )
        if command.startswith("set -eu"):  # the configuration's script
            return CommandResult(0, b"action=restart\nsince=0\n", b"")
        raise AssertionError(f"not a command install sends: {command[:80]!r}")

    def docker_api(self, timeout: float = 30.0) -> None:
        raise AssertionError("no engine here")


def test_install_of_a_built_host_costs_three_round_trips_the_uid_read_with_the_probe() -> None:
    """The login's uid took a round trip of its own (``id -u``) before the probe."""
    inputs = PolicyInputs(source=str(FIXTURES / "registry-minio.yml"))
    settings, policy = resolve_policy(inputs)
    bundle = build_bundle(inputs, settings, policy, DaemonSettings(), environ={})
    host = _RootHostOfThisBuild(bundle.fingerprint)
    report = install_host(host, bundle, _InstalledBuild(), poll_every=0.01)  # type: ignore[arg-type]
    assert (report.status, report.error) == ("installed", None), report
    assert len(host.commands) == 3, host.commands
    assert host.commands[0] == PROBE and host.commands[2] == STATUS_SCRIPT
    assert "id -u" not in host.commands


@pytest.mark.parametrize(
    ("said", "refused"),
    [("0\n", False), ("1000\n", True), (" 65534 \n", True), ("", False), ("sudo: oops\n", False)],
)
def test_only_a_uid_that_is_not_roots_is_refused(said: str, refused: bool) -> None:
    """Anything ``id -u`` printed that is not a uid is left to the next step, which says more."""
    assert (not_root_refusal(said, "untouched") is not None) is refused


def _exit_codes_in_help(command: str) -> set[int]:
    shown = CliRunner().invoke(daemon_group, [command, "--help"])
    assert shown.exit_code == 0 and "Exit codes:" in shown.output, shown.output
    listed = shown.output.split("Exit codes:", 1)[1].splitlines()
    return {int(line.split()[0]) for line in listed if line.strip()[:1].isdigit()}


@pytest.mark.parametrize(
    ("command", "codes"),
    [
        ("run", {0, 1, 2, ONCE_BUSY_EXIT}),
        ("install", {0, 1, 2, 130}),
        ("uninstall", {0, 1, 2, 130}),
        ("unit", {0, 2}),
    ],
)
def test_each_daemon_commands_help_lists_its_exit_codes(command: str, codes: set[int]) -> None:
    """README: each command's --help lists its own exit codes; the daemon's listed none."""
    assert _exit_codes_in_help(command) == codes


def test_the_exit_codes_the_daemon_commands_list_are_the_ones_they_exit_with(tmp_path: Path) -> None:
    source = str(FIXTURES / "registry-minio.yml")
    state = tmp_path / "state"
    state.mkdir(mode=0o711)
    with hold_daemon_lock(state):  # a second daemon on the same state directory
        second = CliRunner().invoke(
            daemon_group,
            ["run", "--once", "--source", source, "--state-dir", str(state), "--root", str(tmp_path)],
        )
    assert second.exit_code == 2 and "held by another trust-agent daemon" in second.output, second.output
    bad_source = ["--source", str(tmp_path / "missing.yml")]
    installed = CliRunner().invoke(daemon_group, ["install", "-i", "127.0.0.1,", *bad_source])
    assert installed.exit_code == 2, installed.output  # bad input: no host contacted
    removed = CliRunner().invoke(daemon_group, ["uninstall", "-i", str(tmp_path / "missing.ini")])
    assert removed.exit_code == 2, removed.output
    unit = CliRunner().invoke(daemon_group, ["unit", "--prefix", "relative"])
    assert unit.exit_code == 2, unit.output


# --- what uninstall says it removed and left; what install takes as the metrics file ------------------


def test_uninstall_without_its_record_names_the_credentials_it_removed_and_the_files_it_left() -> None:
    """With install.json gone it said "service, venv and configuration removed" while daemon.yml and
    source/ stayed."""
    assert uninstalled_detail(
        recorded=False, env_removed=True, left=["daemon.yml", "source/registry.yml"]
    ) == (
        "service and venv removed, and /etc/trust-agent/daemon.env (the DTR credentials the service "
        "read); /etc/trust-agent/install.json is missing, so nothing else in /etc/trust-agent is known "
        "to be trust-agent's: left daemon.yml, source/registry.yml (remove them by hand where "
        "trust-agent put them there)"
    )
    assert uninstalled_detail(recorded=True, env_removed=False, left=[]) == (
        "service, venv and configuration removed"
    )
    assert absent_detail(["daemon.env"]) == (
        "not installed; /etc/trust-agent holds files no install.json says are trust-agent's, left as "
        "they are: daemon.env (DTR credentials)"
    )


_NAMES = st.lists(st.from_regex(r"(source/)?[a-z.-]{1,12}", fullmatch=True), unique=True, max_size=12)


@given(recorded=st.booleans(), env_removed=st.booleans(), left=_NAMES)
def test_uninstall_says_configuration_removed_only_on_its_record_and_names_what_it_left(
    recorded: bool, env_removed: bool, left: list[str]
) -> None:
    said = uninstalled_detail(recorded=recorded, env_removed=env_removed, left=left)
    assert ("configuration removed" in said) is recorded
    for name in left[:LEFT_NAMED]:
        assert f" {name}" in said
    if len(left) > LEFT_NAMED:
        assert f" and {len(left) - LEFT_NAMED} more" in said
    if "daemon.env" in left[:LEFT_NAMED]:
        assert "daemon.env (DTR credentials)" in said


def _probe_metrics(metrics_file: Path) -> str:
    out = LocalTransport("here").run(probe_script("python3", str(metrics_file))).stdout.decode()
    return next((line for line in out.splitlines() if line.startswith("metrics=")), "metrics=fine")


def test_an_empty_file_is_taken_as_the_metrics_file_only_where_the_install_record_lists_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/etc/environment (empty on Debian, read by pam_env) was taken as the daemon's: replaced by
    metrics at install, deleted at uninstall."""
    import agent.daemon.host_scripts as scripts_module

    record = tmp_path / "install.json"
    monkeypatch.setattr(scripts_module, "MANIFEST", str(record))
    environment = tmp_path / "environment"
    environment.write_bytes(b"")
    assert _probe_metrics(environment) == "metrics=foreign-empty"
    record.write_text(json.dumps({"state_files": [str(tmp_path / "other.prom")]}, indent=2))
    assert _probe_metrics(environment) == "metrics=foreign-empty"  # another path listed: not this one
    emptied = tmp_path / "trust_agent.prom"  # the daemon's, emptied since the last install
    emptied.write_bytes(b"")
    record.write_text(json.dumps({"state_files": [str(emptied)]}, indent=2))
    assert _probe_metrics(emptied) == "metrics=fine"
    assert _probe_metrics(tmp_path / "absent.prom") == "metrics=fine"
    assert "--metrics-file /etc/environment: the file exists, empty, and no install of trust-agent " in (
        config_script(_bundle_with_metrics("/etc/environment"), venv_changed=False)
    )


def _bundle_with_metrics(metrics_file: str) -> InstallBundle:
    inputs = PolicyInputs(source=str(FIXTURES / "registry-minio.yml"))
    settings, policy = resolve_policy(inputs)
    return build_bundle(inputs, settings, policy, DaemonSettings(metrics_file=metrics_file), environ={})


def test_the_install_refusing_an_empty_metrics_file_says_so() -> None:
    host = _EmptyMetricsHost()
    bundle = _bundle_with_metrics("/etc/environment")
    report = install_host(host, bundle, WheelhouseCache())
    assert (report.status, report.error) == (
        "failed",
        "--metrics-file /etc/environment: the file exists, empty, and no install of trust-agent made it "
        "(an empty file can be another program's): choose another path, or remove the file if no one "
        "needs it",
    )
    assert len(host.commands) == 1  # the probe alone: nothing put on the host


class _EmptyMetricsHost(Transport):
    """A root login whose probe finds --metrics-file an empty file no install record lists."""

    name = "h1"

    def __init__(self) -> None:
        self.commands: list[str] = []

    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        self.commands.append(command)
        return CommandResult(0, b"uid=0\nmetrics=foreign-empty\n", b"")

    def docker_api(self, timeout: float = 30.0) -> None:
        raise AssertionError("no engine here")


def test_the_record_a_reinstall_keeps_while_it_moves_files_in_lists_both_installs_files(
    tmp_path: Path,
) -> None:
    """A re-install from a file source to a DTR that failed after placing daemon.env, before its own
    install.json, left the old record: uninstall then left the credentials."""
    old = {"version": 1, "config_files": ["/etc/trust-agent/daemon.yml", "/etc/trust-agent/source/registry.yml"],
           "state_files": ["/var/lib/trust-agent/status.json", "/srv/m.prom"]}  # fmt: skip
    new = {"version": 1, "config_files": ["/etc/trust-agent/daemon.env", "/etc/trust-agent/daemon.yml"],
           "state_files": ["/var/lib/trust-agent/status.json"]}  # fmt: skip
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))

    def merged(old_path: Path) -> dict[str, object]:
        run = [sys.executable, "-c", _MERGED_RECORD, str(old_path), str(tmp_path / "new.json")]
        return dict(json.loads(subprocess.run(run, capture_output=True, check=True, timeout=60).stdout))

    assert merged(tmp_path / "old.json") == {
        "version": 1,
        "config_files": [
            "/etc/trust-agent/daemon.env",
            "/etc/trust-agent/daemon.yml",
            "/etc/trust-agent/source/registry.yml",
        ],
        "state_files": ["/var/lib/trust-agent/status.json", "/srv/m.prom"],
    }
    (tmp_path / "broken.json").write_text("{not json")
    assert merged(tmp_path / "broken.json") == new  # a record that does not read: the new one alone
    assert merged(tmp_path / "missing.json") == new
    script = config_script(_bundle_with_metrics("/srv/m.prom"), venv_changed=False)
    assert script.index("> /etc/trust-agent/install.json.tmp") < script.index("\nplace ")


# --- uninstall with no record: the metrics file daemon.yml names --------------------------------------

OURS = "/var/lib/trust-agent/metrics.prom"


class _UnrecordedHost(Transport):
    """A root login on a host whose install.json is gone and whose daemon.yml's metrics lines are
    ``config_lines``; its uninstall script says ``uninstalled``. What ran is kept."""

    name = "h1"

    def __init__(self, config_lines: str, uninstalled: str) -> None:
        self.config_lines = config_lines
        self.uninstalled = uninstalled
        self.commands: list[str] = []

    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        self.commands.append(command)
        answers = {"id -u": "0\n", STOP_SCRIPT: "stopped=yes\n", CONFIG_METRICS_SCRIPT: self.config_lines}
        if command in answers:
            return CommandResult(0, answers[command].encode(), b"")
        if command.startswith("set -eu\nhad=no"):  # the uninstall script
            return CommandResult(0, self.uninstalled.encode(), b"")
        raise AssertionError(f"not a command uninstall sends: {command[:80]!r}")

    def docker_api(self, timeout: float = 30.0) -> None:
        raise AssertionError("no engine here")


def test_uninstall_without_its_record_removes_the_metrics_file_daemon_yml_names_where_it_is_ours() -> None:
    """With install.json gone, the --metrics-file install wrote stayed (trust_agent_up 0 for ever) and
    the report did not name it, though the leftover daemon.yml did."""
    host = _UnrecordedHost(f"metrics_file: {OURS}\n", "had=yes\nmetrics=removed\nleft=daemon.yml\n")
    report = uninstall_host(host, purge=False)
    removal = host.commands[-1]
    assert f"f={OURS}\n" in removal and 'rm -f -- "$f"; echo metrics=removed' in removal
    # Decided as install's probe decides a file is trust-agent's, after the record is gone.
    assert removal.index("/etc/trust-agent/install.json\n") < removal.index(f"f={OURS}\n")
    assert report.status == "uninstalled"
    assert report.detail.endswith(
        f"left daemon.yml (remove them by hand where trust-agent put them there); {OURS} (the metrics "
        "file /etc/trust-agent/daemon.yml names) removed: it held trust-agent's metrics; trust left in place"
    )


def test_uninstall_without_its_record_names_a_metrics_file_that_is_not_ours_as_left() -> None:
    host = _UnrecordedHost("metrics_file: /etc/environment\n", "had=yes\nmetrics=left\n")
    report = uninstall_host(host, purge=False)
    assert "f=/etc/environment\n" in host.commands[-1]
    assert (
        "; /etc/environment (the metrics file /etc/trust-agent/daemon.yml names) left as it is: it does "
        "not hold trust-agent's metrics, so it may be another's"
    ) in report.detail


def test_uninstall_with_its_record_does_not_read_daemon_yml() -> None:
    class _Recorded(_UnrecordedHost):
        def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
            if command == STOP_SCRIPT:
                record = {"version": 1, "state_files": [OURS], "config_files": [DEFAULT_CONFIG]}
                return CommandResult(0, f"stopped=yes\n{json.dumps(record)}\n".encode(), b"")
            return super().run(command, stdin=stdin, timeout=timeout)

    host = _Recorded(f"metrics_file: {OURS}\n", "had=yes\n")
    assert (
        uninstall_host(host, purge=False).detail
        == "service, venv and configuration removed; trust left in place"
    )
    assert CONFIG_METRICS_SCRIPT not in host.commands  # the record lists the metrics file already


def test_the_metrics_file_is_read_from_daemon_yml_as_daemon_run_reads_it() -> None:
    assert metrics_file_named(f"metrics_file: {OURS}\n") == OURS
    assert metrics_file_named(f"metrics-file: '{OURS}'\n") == OURS
    assert metrics_file_named("metrics_file: m.prom\n") == "/etc/trust-agent/m.prom"  # relative to it
    folded = yaml.safe_dump({"metrics_file": "/var/lib/a b " * 10 + "/m.prom"}, width=40)
    assert metrics_file_named(folded) == "/var/lib/a b " * 10 + "/m.prom"  # a long value runs on
    for nothing in ("", "metrics_file:\n", "metrics_file: [a]\n", "metrics_file: ~/m.prom\n", "{{"):
        assert metrics_file_named(nothing) is None, nothing


@given(path=st.from_regex(r"/[^\x00]{1,80}", fullmatch=True))
def test_any_metrics_file_install_writes_into_daemon_yml_reads_back(path: str) -> None:
    written = yaml.safe_dump({"metrics_file": path}, sort_keys=False)
    assert metrics_file_named(written) == path


def test_what_uninstall_says_of_the_metrics_file_daemon_yml_names() -> None:
    assert config_metrics_detail(None, "removed") == ""
    assert config_metrics_detail(OURS, None) == ""  # no file there
    assert "removed: it held trust-agent's metrics" in config_metrics_detail(OURS, "removed")
    assert "left as it is" in config_metrics_detail(OURS, "left")
