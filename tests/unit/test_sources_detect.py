"""Auto-detection of the source kind, and load_source's dispatch and file errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import InputError, SourceError
from agent.inputs import PolicyInputs, resolve_policy
from agent.sources import detect_kind, load_source

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sources"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("registry-minio.yml", "distribution"),
        ("registry-cloudfront.yml", "distribution"),
        ("registry-filesystem.yml", "distribution"),
        ("dtr-settings.json", "dtr"),
        ("harbor.yml", "harbor"),
    ],
)
def test_fixtures_are_detected_and_loaded(name: str, kind: str) -> None:
    path = FIXTURES / name
    assert detect_kind(path.read_text()) == kind
    settings_ = load_source(str(path))
    assert settings_.kind == kind and settings_.origin == str(path)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('{"config": "version: 0.1", "storage": {}}', "dtr"),
        ('  \n{"config": ""}', "dtr"),
        ("hostname: reg.example\n", "harbor"),
        ("storage_service: {}\n", "harbor"),
        ("version: 0.1\nstorage: {s3: {}}\n", "distribution"),
        ('{"version": "0.1", "storage": {"filesystem": {}}}', "distribution"),  # JSON is YAML
    ],
)
def test_detect_kind(text: str, kind: str) -> None:
    assert detect_kind(text) == kind


@pytest.mark.parametrize(
    "text",
    [
        "",
        "just a string\n",
        "- a\n- list\n",
        "storage: {s3: {}}\n",
        "version: 0.1\n",
        '{"storage": {}}',
        '{"config": {}}',
    ],
)
def test_unknown_documents_are_refused_with_what_was_expected(text: str) -> None:
    with pytest.raises(SourceError) as caught:
        detect_kind(text, origin="thing.yml")
    message = str(caught.value)
    what = "empty" if not text else "cannot tell what kind of document this is"
    assert message.startswith(f"thing.yml: {what}: expected a distribution")
    assert "harbor.yml" in message and "DTR" in message and "\n" not in message


@pytest.mark.parametrize("text", ["[all]\nh1 ansible_host=10.0.0.5\n", "# hosts\n\n[web:vars]\nx=1\n"])
def test_an_ini_inventory_given_as_the_source_is_named_so(text: str) -> None:
    """It said "not valid YAML: expected '...', but found '...'" (the quoting redacted as a secret's)."""
    with pytest.raises(SourceError) as caught:
        detect_kind(text, origin="hosts.ini")
    assert str(caught.value).startswith("hosts.ini: an INI file (an inventory? that is -i's): expected a")


def test_a_syntax_error_is_reported_with_its_line() -> None:
    with pytest.raises(SourceError, match=r"^config.yml:3: not valid YAML"):
        detect_kind("version: 0.1\nstorage:\n  s3: {bucket: [}\n", origin="config.yml")


def test_env_applies_to_a_distribution_config_only(tmp_path: Path) -> None:
    env = {"REGISTRY_STORAGE_S3_SECURE": "false", "REGISTRY_HTTP_HOST": "https://env.example"}
    minio = load_source(str(FIXTURES / "registry-minio.yml"), env=env)
    assert minio.s3 is not None and not minio.s3.secure and minio.http_host == "https://env.example"
    # Harbor's and DTR's registries do not run with this machine's environment.
    shutil.copy(FIXTURES / "harbor.yml", tmp_path / "harbor.yml")
    shutil.copy(FIXTURES / "harbor-storage-ca.pem", tmp_path / "harbor-storage-ca.pem")
    harbor = load_source(str(tmp_path / "harbor.yml"), env=env)
    assert harbor.s3 is not None and harbor.s3.secure and harbor.env_overrides == ()
    dtr = load_source(str(FIXTURES / "dtr-settings.json"), env=env)
    assert dtr.s3 is not None and dtr.s3.secure and dtr.env_overrides == ()


@pytest.mark.parametrize(
    ("name", "runs_it"),
    [("harbor.yml", "a harbor.yml: Harbor"), ("dtr-settings.json", "DTR's settings: DTR")],
)
def test_env_overrides_a_source_does_not_take_are_said_to_be_ignored(
    tmp_path: Path, name: str, runs_it: str
) -> None:
    """--env-overrides with a harbor.yml or DTR's settings changed nothing, and nothing said so."""
    shutil.copy(FIXTURES / "harbor-storage-ca.pem", tmp_path / "harbor-storage-ca.pem")
    shutil.copy(FIXTURES / name, tmp_path / name)
    env = {"REGISTRY_STORAGE_S3_REGIONENDPOINT": "https://elsewhere.test:9000"}
    ignored = (
        "--env-overrides is ignored: REGISTRY_* variables apply over a distribution config.yml, and the "
        f"source is {runs_it} runs its registry with an environment of its own"
    )
    settings, policy = resolve_policy(
        PolicyInputs(source=str(tmp_path / name), env_overrides=True, registries=("reg.test",)), env
    )
    assert ignored in policy.warnings and ignored in settings.redacted()["warnings"]
    assert "elsewhere.test" not in (policy.storage_endpoint or "")
    assert load_source(str(tmp_path / name), env=env).warnings == (ignored,)
    assert load_source(str(tmp_path / name)).warnings == ()  # not asked for: nothing to say
    assert load_source(str(FIXTURES / "registry-minio.yml"), env=env).warnings == ()  # applied


@pytest.mark.parametrize("name", ["registry-minio.yml", "dtr-settings.json"])
def test_a_source_ca_for_a_file_source_is_said_to_be_ignored(tmp_path: Path, name: str) -> None:
    """--source-ca verifies a live DTR's API; with a file it changed nothing, and nothing said so."""
    ca = str(tmp_path / "dtr-api-ca.pem")
    ignored = f"--source-ca {ca} is ignored: it verifies a live DTR (--source https://...), and the source is a file"
    _, policy = resolve_policy(
        PolicyInputs(source=str(FIXTURES / name), source_ca=ca, registries=("reg.test",)), {}
    )
    assert ignored in policy.warnings
    assert load_source(str(FIXTURES / name), ca_file=ca).warnings == (ignored,)


def test_file_errors(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.yml")
    with pytest.raises(SourceError, match=r": cannot read: No such file or directory$"):
        load_source(missing)
    binary = tmp_path / "binary.yml"
    binary.write_bytes(b"version: 0.1\n\xff\xfe\n")
    with pytest.raises(SourceError, match=r"binary.yml: not UTF-8 text"):
        load_source(str(binary))
    with pytest.raises(SourceError, match="cannot read"):
        load_source(str(tmp_path))


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_bytes(b"\xef\xbb\xbf" + (FIXTURES / "registry-minio.yml").read_bytes())
    assert load_source(str(path)).driver == "s3"


def test_plain_http_dtr_is_refused() -> None:
    with pytest.raises(SourceError, match="must be an https:// URL"):
        load_source("http://dtr.example", dtr_user="u", dtr_token="t")


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(max_size=120),
        st.dictionaries(
            st.sampled_from(["config", "storage", "version", "hostname", "x"]),
            st.none() | st.text(max_size=5) | st.integers(),
        ).map(json.dumps),
    )
)
def test_detect_never_raises_anything_but_a_source_error(text: str) -> None:
    try:
        assert detect_kind(text) in ("distribution", "dtr", "harbor")
    except SourceError as error:
        assert isinstance(error, InputError) and "\n" not in str(error)
