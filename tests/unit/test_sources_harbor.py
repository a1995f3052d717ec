"""Harbor's harbor.yml: address, storage_service, and the ca_bundle it points at."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.certs import parse_bundle
from agent.errors import CertificateError, InputError, SourceError
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


def test_missing_ca_bundle_names_key_line_and_path(tmp_path: Path) -> None:
    text = "hostname: h\nstorage_service:\n  s3: {bucket: b}\n  ca_bundle: /nonexistent/storage-ca.pem\n"
    assert error_of(text) == (
        "harbor.yml:4: storage_service.ca_bundle: cannot read /nonexistent/storage-ca.pem: No such file or directory"
    )


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
    older = parse_harbor("hostname: h\nstorage_service:\n  s3: {}\n  redirect: {disabled: 'true'}\n", "h.yml")
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
        (
            "hostname: h\nstorage_service:\n  s3: {}\n  azure: {}\n",
            "harbor.yml:2: storage_service: more than one storage driver: azure, s3",
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
