"""Harbor's harbor.yml: address, storage_service, and the ca_bundle it points at."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.certs import parse_bundle
from agent.errors import CertificateError, InputError, SourceError
from agent.inputs import PolicyInputs, policy_for, resolve_policy
from agent.sources.harbor import parse_harbor
from agent.trust import redirect_target
from tests.pki import make_ca

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sources"
HARBOR_SECRETS = (
    "harbor-secret-key-fixture-do-not-leak",
    "harbor-access-key-fixture",
    "Harbor12345-do-not-leak",
    "root123-do-not-leak",
)


def error_of(text: str, origin: str = "harbor.yml", base_dir: str | None = None) -> str:
    with pytest.raises(SourceError) as caught:
        parse_harbor(text, origin, base_dir=base_dir)
    assert isinstance(caught.value, InputError) and caught.value.exit_code == 2
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_fixture_reads_ca_bundle_relative_to_the_file() -> None:
    path = FIXTURES / "harbor.yml"
    s = parse_harbor(path.read_text(), str(path))
    assert (s.kind, s.driver) == ("harbor", "s3")
    assert s.http_host == "https://harbor.example.internal:8443" and s.http_tls
    assert s.s3 is not None
    assert (s.s3.regionendpoint, s.s3.bucket, s.s3.rootdirectory) == (
        "https://minio.storage.example.internal:9000",
        "harbor",
        "/harbor",
    )
    assert s.s3.has_credentials and not s.redirect_disabled
    assert s.storage_ca_pem == (FIXTURES / "harbor-storage-ca.pem").read_bytes()
    assert s.storage_ca_origin is not None
    assert s.storage_ca_origin.endswith(f": storage_service.ca_bundle {FIXTURES / 'harbor-storage-ca.pem'}")
    assert (
        parse_bundle(s.storage_ca_pem, s.storage_ca_origin).certificates[0].subject
        == "CN=Harbor Storage Root CA"
    )
    assert redirect_target(s)[1] == "minio.storage.example.internal:9000"
    for secret in HARBOR_SECRETS:
        assert secret not in repr(s) and secret not in str(s.redacted())


def test_absolute_ca_bundle_and_explicit_base_dir(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(make_ca("Abs CA")[0])
    text = f"hostname: h\nstorage_service:\n  ca_bundle: {ca}\n  s3: {{bucket: b}}\n"
    assert parse_harbor(text, "elsewhere/harbor.yml").storage_ca_pem == ca.read_bytes()
    relative = "hostname: h\nstorage_service:\n  ca_bundle: ca.pem\n  s3: {bucket: b}\n"
    origin = parse_harbor(relative, "harbor.yml", base_dir=str(tmp_path)).storage_ca_origin
    assert origin == f"harbor.yml:3: storage_service.ca_bundle {ca}"


def test_a_ca_bundle_holding_a_key_is_named_by_its_key_and_line(tmp_path: Path) -> None:
    key = tmp_path / "ca.key"
    key.write_bytes(
        make_ca("Keyed CA")[0] + b"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
    )
    s = parse_harbor(
        "hostname: h\nstorage_service:\n  ca_bundle: ca.key\n  s3: {}\n", "harbor.yml", base_dir=str(tmp_path)
    )
    with pytest.raises(CertificateError) as caught:
        parse_bundle(s.storage_ca_pem or b"", s.storage_ca_origin or "")
    assert str(caught.value).startswith(f"harbor.yml:3: storage_service.ca_bundle {key}: holds a private key")


UNREAD_BUNDLE = (
    "hostname: harbor.corp.test\nhttps: {port: 443}\nstorage_service:\n  ca_bundle: /nonexistent/s3-ca.pem\n"
    "  s3: {regionendpoint: 'https://minio.corp.test:9000', bucket: harbor}\n"
)
UNREAD = (
    "harbor.yml:4: storage_service.ca_bundle: cannot read /nonexistent/s3-ca.pem: No such file or directory"
)


def test_a_ca_bundle_that_cannot_be_read_here_is_recorded_with_key_line_and_path() -> None:
    """ca_bundle is a path on the Harbor host: reading the settings (show-source) does not fail on it."""
    s = parse_harbor(UNREAD_BUNDLE, "harbor.yml")
    assert (s.storage_ca_pem, s.storage_ca_origin, s.storage_ca_unread) == (None, None, UNREAD)
    assert s.redacted()["storage_ca_unread"] == UNREAD


def test_without_storage_ca_an_unreadable_ca_bundle_says_to_copy_it_and_give_storage_ca() -> None:
    """Every command that needs a policy failed with exit 2 and no word of --storage-ca."""
    s = parse_harbor(UNREAD_BUNDLE, "harbor.yml")
    for declined, instead in (
        (False, ""),
        (True, " (not --no-storage-ca: the source gives the storage a CA of its own)"),
    ):
        with pytest.raises(SourceError) as caught:
            policy_for(s, PolicyInputs(source="harbor.yml", no_storage_ca=declined))
        assert caught.value.exit_code == 2
        assert str(caught.value) == (
            f"{UNREAD}; it names a file on the Harbor host: copy that file to this machine and give it with "
            f"--storage-ca FILE{instead}"
        )


def test_storage_ca_stands_in_for_a_ca_bundle_that_cannot_be_read_here(tmp_path: Path) -> None:
    """harbor.yml copied from the Harbor host, its CA given with --storage-ca: failed with exit 2."""
    source = tmp_path / "harbor.yml"
    source.write_text(UNREAD_BUNDLE)
    ca = tmp_path / "s3-ca.pem"
    ca.write_bytes(make_ca("Copied Storage CA")[0])
    _, policy = resolve_policy(PolicyInputs(source=str(source), storage_ca=(str(ca),)))
    (storage,) = policy.ca_files
    assert storage.role == "storage" and storage.bundle.pem == ca.read_bytes()
    unread = UNREAD.replace("harbor.yml", str(source), 1)
    assert f"{unread}; --storage-ca {ca} stands in for it" in policy.warnings


def test_a_readable_ca_bundle_and_storage_ca_are_both_installed_as_dtr_s_are(tmp_path: Path) -> None:
    """A CA the source carries is added to, not replaced by, --storage-ca: the same for DTR's."""
    (tmp_path / "bundle.pem").write_bytes(make_ca("Bundle CA")[0])
    (tmp_path / "given.pem").write_bytes(make_ca("Given CA")[0])
    text = UNREAD_BUNDLE.replace("/nonexistent/s3-ca.pem", "bundle.pem")
    s = parse_harbor(text, "harbor.yml", base_dir=str(tmp_path))
    policy = policy_for(s, PolicyInputs(source="harbor.yml", storage_ca=(str(tmp_path / "given.pem"),)))
    (storage,) = policy.ca_files
    assert [c.subject for c in storage.bundle.certificates] == ["CN=Bundle CA", "CN=Given CA"]
    assert not [w for w in policy.warnings if "ca_bundle" in w]


def test_empty_ca_bundle_means_none() -> None:
    s = parse_harbor("hostname: h\nstorage_service:\n  ca_bundle:\n  s3: {}\n", "harbor.yml")
    assert s.storage_ca_pem is None and s.storage_ca_origin is None


@pytest.mark.parametrize(
    ("text", "host", "tls"),
    [
        ("hostname: reg.example\nhttps:\n  port: 443\n", "https://reg.example", True),
        ("hostname: reg.example\nhttps: {port: 9443, certificate: /c}\n", "https://reg.example:9443", True),
        ("hostname: reg.example\nhttp: {port: 8080}\n", "http://reg.example:8080", False),
        ("hostname: reg.example\nhttp: {port: 80}\n", "http://reg.example", False),
        (
            "hostname: reg.internal\nhttps: {port: 443}\nexternal_url: https://harbor.example.com:4443/\n",
            "https://harbor.example.com:4443",
            True,
        ),
    ],
)
def test_address(text: str, host: str, tls: bool) -> None:
    s = parse_harbor(text, "harbor.yml")
    assert (s.http_host, s.http_tls) == (host, tls)


def test_default_driver_is_filesystem_and_redirect_disable() -> None:
    s = parse_harbor("hostname: h\nstorage_service:\n  redirect:\n    disable: true\n", "harbor.yml")
    assert s.driver == "filesystem" and s.s3 is None and s.redirect_disabled
    older = parse_harbor(
        "hostname: h\nstorage_service:\n  s3: {bucket: b}\n  redirect: {disabled: true}\n", "h.yml"
    )
    assert older.redirect_disabled and older.driver == "s3"
    assert parse_harbor("hostname: h\n", "harbor.yml").driver == "filesystem"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "hostname: h\nstorage_service:\n  s3:\n    secure: sometimes\n",
            "harbor.yml:4: storage_service.s3.secure: must be true or false, got 'sometimes'",
        ),
        (
            "hostname: h\nstorage_service: [s3]\n",
            "harbor.yml:2: storage_service: must be a mapping, got a list",
        ),
        ("hostname: [a, b]\n", "harbor.yml:1: hostname: must be a string, got a list"),
        ("hostname: h\nhttps: on\n", "harbor.yml:2: https: must be a mapping, got True"),
        (
            "hostname: h\nstorage_service:\n  ca_bundle: {x: 1}\n",
            "harbor.yml:3: storage_service.ca_bundle: must be a string, got a mapping",
        ),
        ("hostname: h\n  bad: indent\n", "harbor.yml:2: not valid YAML"),
        ("", "harbor.yml: empty document: expected a harbor.yml"),
    ],
)
def test_bad_values_are_one_line_with_key_and_line(text: str, expected: str) -> None:
    assert error_of(text).startswith(expected)


# --- as Harbor's prepare reads harbor.yml and writes the registry's config.yml ----------------------


def test_the_driver_is_the_first_non_empty_one_in_harbors_order() -> None:
    # prepare: `if storage_config.get('filesystem') ... elif ... get('s3')`: an empty one is no driver.
    assert parse_harbor("hostname: h\nstorage_service:\n  s3: {}\n", "harbor.yml").driver == "filesystem"
    both = parse_harbor(
        "hostname: h\nstorage_service:\n  s3: {bucket: b}\n  filesystem: {rootdirectory: /data}\n",
        "harbor.yml",
    )
    assert both.driver == "filesystem" and both.s3 is None
    assert redirect_target(both)[1] is None
    assert both.warnings == (
        "storage_service sets filesystem, s3: Harbor uses filesystem, the first of filesystem, azure, gcs, "
        "s3, swift, oss, and ignores the others",
    )
    assert parse_harbor("hostname: h\nstorage_service:\n  s3: {bucket: b}\n", "harbor.yml").warnings == ()


@pytest.mark.parametrize(
    ("value", "secure"),
    [
        # prepare writes `secure: <value>` unquoted into config.yml, which yaml.v2 reads again.
        ("'no'", False),
        ('"off"', False),
        ("n", False),
        ("False", False),
        ("'f'", False),
        ("y", True),
        ("'yes'", True),
        ("1", True),  # prepare tests `value == True`: 1 is written as true
        ("true", True),
    ],
)
def test_s3_flags_as_the_registry_reads_them(value: str, secure: bool) -> None:
    s = parse_harbor(
        f"hostname: h\nstorage_service:\n  s3:\n    bucket: b\n    secure: {value}\n", "harbor.yml"
    )
    assert s.s3 is not None and s.s3.secure is secure


def test_a_flag_the_registry_refuses_is_refused() -> None:
    # 0 is written as 0, an integer to yaml.v2, which the S3 driver refuses.
    assert error_of("hostname: h\nstorage_service:\n  s3:\n    bucket: b\n    secure: 0\n") == (
        "harbor.yml:5: storage_service.s3.secure: must be true or false, got 0"
    )


def test_a_quoted_endpoint_reaches_the_registry_unquoted() -> None:
    text = "hostname: h\nstorage_service:\n  s3:\n    bucket: b\n    regionendpoint: 'https://s3.example.com:9000'\n"
    s = parse_harbor(text, "harbor.yml")
    assert s.s3 is not None and s.s3.regionendpoint == "https://s3.example.com:9000"


@pytest.mark.parametrize(
    ("redirect", "disabled"),
    [("{disable: false}", False), ("{disable: 0}", False), ("{disable: 1}", True), ("{}", False)],
)
def test_redirect_disable_is_tested_for_python_truth(redirect: str, disabled: bool) -> None:
    s = parse_harbor(f"hostname: h\nstorage_service:\n  s3: {{bucket: b}}\n  redirect: {redirect}\n", "h.yml")
    assert s.redirect_disabled is disabled and s.warnings == ()


def test_redirect_disable_as_the_string_false_turns_redirects_off_and_says_so() -> None:
    # The registry template's `{% if storage_redirect_disabled %}` is true for any non-empty string.
    s = parse_harbor(
        "hostname: h\nstorage_service:\n  s3: {bucket: b}\n  redirect:\n    disable: 'false'\n", "h.yml"
    )
    assert s.redirect_disabled
    assert redirect_target(s)[1] is None
    assert s.warnings == (
        "h.yml:5: storage_service.redirect.disable is the string 'false': Harbor treats any non-empty text "
        "as true, so redirects are off",
    )
