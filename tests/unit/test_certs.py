"""CA bundles: what is accepted, what is refused, what is only warned about."""

from __future__ import annotations

import base64
import functools
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.certs import CABundle, describe, load_bundle, parse_bundle
from agent.errors import CertificateError, InputError
from tests.pki import (
    key_pem,
    make_ca,
    make_expired_ca,
    make_leaf,
    make_self_signed_leaf,
    new_key,
    sha256_of,
)


@functools.cache
def pool() -> tuple[bytes, ...]:
    """A few distinct CA certificates, generated once for the property tests."""
    return tuple(make_ca(f"Pool CA {n}")[0] for n in range(5))


def refused(data: bytes, origin: str = "ca.crt", **kwargs: object) -> CertificateError:
    with pytest.raises(CertificateError) as caught:
        parse_bundle(data, origin, **kwargs)  # type: ignore[arg-type]
    error = caught.value
    assert isinstance(error, InputError) and error.exit_code == 2
    assert "\n" not in str(error)
    assert str(error).startswith(f"{origin}: ")
    return error


# --- accepted -------------------------------------------------------------------------------------


def test_a_root_ca_is_described_exactly() -> None:
    pem, _ = make_ca("Storage Root CA")
    bundle = parse_bundle(pem, "storage-ca.crt")
    (info,) = bundle.certificates
    assert bundle.origin == "storage-ca.crt"
    assert info.subject == "CN=Storage Root CA"
    assert info.issuer == "CN=Storage Root CA"
    assert info.sha256 == sha256_of(pem)
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", info.sha256)
    assert info.is_ca and info.self_signed
    assert info.not_after.tzinfo is not None
    assert bundle.warnings == ()
    assert bundle.pem == pem


def test_text_around_blocks_is_allowed_and_dropped_from_the_normalised_pem() -> None:
    pem, _ = make_ca("Annotated CA")
    data = (
        b"subject=CN = Annotated CA\nissuer=CN = Annotated CA\r\n"
        + pem.replace(b"\n", b"\r\n")
        + b"trailer\n"
    )
    bundle = parse_bundle(data, "annotated.pem")
    assert bundle.pem == pem
    assert len(bundle.certificates) == 1


def test_duplicates_are_dropped_and_order_is_kept() -> None:
    a, b, c = pool()[:3]
    bundle = parse_bundle(b + a + b + c + a, "chain.pem")
    assert [i.sha256 for i in bundle.certificates] == [sha256_of(b), sha256_of(a), sha256_of(c)]
    assert bundle.pem == b + a + c
    assert bundle.pem.endswith(b"\n")


def test_an_intermediate_ca_is_a_ca_but_not_self_signed() -> None:
    root = make_ca("Root")
    intermediate, _ = make_ca("Issuing CA", issuer=root)
    (info,) = parse_bundle(intermediate, "int.pem").certificates
    assert info.is_ca and not info.self_signed
    assert info.issuer == "CN=Root"


def test_a_non_certificate_block_is_left_out_with_a_warning() -> None:
    pem, key = make_ca("CA with a public key")
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    bundle = parse_bundle(pem + public, "mixed.pem")
    assert bundle.pem == pem
    assert any("'PUBLIC KEY'" in w for w in bundle.warnings)


# --- refused --------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"  \n\t\n"])
def test_empty_input_is_refused(data: bytes) -> None:
    assert "empty" in refused(data).message


def test_input_without_a_certificate_is_refused() -> None:
    assert "no PEM certificate" in refused(b"hello, this is not a certificate\n").message


def test_der_input_gets_a_hint() -> None:
    pem, _ = make_ca("DER CA")
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    assert "DER" in refused(der).message


def test_pkcs12_input_is_not_called_der() -> None:
    from cryptography.hazmat.primitives.serialization import pkcs12

    pem, key = make_ca("P12 CA")
    bundle = pkcs12.serialize_key_and_certificates(
        b"ca", key, x509.load_pem_x509_certificate(pem), None, serialization.NoEncryption()
    )
    message = refused(bundle).message
    assert ".p12/.pfx" in message and "openssl x509 -inform der" not in message


def test_a_pgp_private_key_block_is_refused_not_left_out() -> None:
    cert, _ = make_ca("CA shipped with a PGP key")
    pgp = b"-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBGV\n-----END PGP PRIVATE KEY BLOCK-----\n"
    assert "(PGP PRIVATE KEY BLOCK block)" in refused(cert + pgp).message


def test_a_corrupt_certificate_block_is_refused() -> None:
    good, _ = make_ca("Good CA")
    junk = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    error = refused(good + junk)
    assert "PEM block 2" in error.message


def test_an_unterminated_block_is_refused() -> None:
    good, _ = make_ca("Good CA")
    assert "no matching END" in refused(good + b"-----BEGIN CERTIFICATE-----\nMIIB\n").message


@pytest.mark.parametrize(
    ("kind", "fmt", "label"),
    [
        ("ec", "pkcs8", "PRIVATE KEY"),
        ("ec", "traditional", "EC PRIVATE KEY"),
        ("rsa", "traditional", "RSA PRIVATE KEY"),
        ("ec", "encrypted", "ENCRYPTED PRIVATE KEY"),
    ],
)
def test_a_private_key_is_refused_without_echoing_it(kind: str, fmt: str, label: str) -> None:
    key = new_key(kind)  # type: ignore[arg-type]
    private = key_pem(key, fmt)  # type: ignore[arg-type]
    assert f"-----BEGIN {label}-----".encode() in private
    cert, _ = make_ca("CA shipped with its key")
    error = refused(cert + private, "bundle.pem")
    assert f"({label} block)" in str(error)
    body = b"".join(private.splitlines()[1:-1]).decode()
    for chunk in (body[i : i + 16] for i in range(0, len(body) - 16, 16)):
        assert chunk not in str(error)


def test_a_key_alone_is_refused_as_a_key_not_as_no_certificate() -> None:
    assert "private key" in refused(key_pem(new_key())).message


def test_an_expired_certificate_is_refused() -> None:
    pem, _ = make_expired_ca("Old CA", days_ago=3)
    error = refused(pem)
    assert "expired" in error.message and "CN=Old CA" in error.message
    # Engines skip a useless root in a bundle; it is the agent that refuses to install it, and says so.
    assert error.message.endswith(
        ": it can anchor no chain any more; remove it from the bundle (or pass --allow-expired to install "
        "it anyway)"
    )


def test_an_expired_certificate_is_a_warning_when_allowed() -> None:
    pem, _ = make_expired_ca("Old CA", days_ago=3)
    bundle = parse_bundle(pem, "old.pem", allow_expired=True)
    assert len(bundle.certificates) == 1
    assert any("expired" in w for w in bundle.warnings)


def test_now_decides_expiry() -> None:
    pem, _ = make_ca("Short CA", days=10)
    later = datetime.now(UTC) + timedelta(days=11)
    refused(pem, now=later)
    assert parse_bundle(pem, "ca.crt", now=later - timedelta(days=5)).warnings  # expires in < 30 days


# --- warnings -------------------------------------------------------------------------------------


def test_a_certificate_expiring_within_30_days_is_warned_about() -> None:
    pem, _ = make_ca("Soon CA", days=20)
    (warning,) = parse_bundle(pem, "ca.crt").warnings
    assert "expires in 19 days" in warning or "expires in 20 days" in warning


def test_a_certificate_not_yet_valid_is_warned_about() -> None:
    pem, _ = make_ca("Future CA", not_before=datetime.now(UTC) + timedelta(days=2))
    (warning,) = parse_bundle(pem, "ca.crt").warnings
    assert "not valid before" in warning


def test_a_leaf_is_warned_about() -> None:
    leaf, _ = make_leaf(make_ca("Issuer"), "s3.example.internal")
    (warning,) = parse_bundle(leaf, "leaf.pem").warnings
    assert "not a CA certificate" in warning and "CN=s3.example.internal" in warning


def test_a_certificate_without_basic_constraints_is_not_a_ca() -> None:
    leaf, _ = make_leaf(make_ca("Issuer"), "old.example.internal", basic_constraints=False)
    bundle = parse_bundle(leaf, "leaf.pem")
    assert not bundle.certificates[0].is_ca
    assert any("not a CA" in w for w in bundle.warnings)


def test_a_self_signed_leaf_is_warned_about_as_such() -> None:
    pem, _ = make_self_signed_leaf("minio.example.internal")
    bundle = parse_bundle(pem, "selfsigned.pem")
    (info,) = bundle.certificates
    assert info.self_signed and not info.is_ca
    (warning,) = bundle.warnings
    assert "self-signed leaf" in warning


# --- files and descriptions -----------------------------------------------------------------------


def test_load_bundle_reads_a_file(tmp_path: Path) -> None:
    pem, _ = make_ca("File CA")
    path = tmp_path / "ca.crt"
    path.write_bytes(pem)
    bundle = load_bundle(str(path))
    assert bundle.origin == str(path) and bundle.pem == pem


@pytest.mark.parametrize("name", ["missing.crt", "."])
def test_load_bundle_names_an_unreadable_path(tmp_path: Path, name: str) -> None:
    path = str(tmp_path / name)
    with pytest.raises(CertificateError) as caught:
        load_bundle(path)
    assert str(caught.value).startswith(f"{path}: cannot read")
    assert "\n" not in str(caught.value)


def test_load_bundle_passes_allow_expired(tmp_path: Path) -> None:
    path = tmp_path / "old.crt"
    path.write_bytes(make_expired_ca("Old")[0])
    with pytest.raises(CertificateError):
        load_bundle(str(path))
    assert load_bundle(str(path), allow_expired=True).warnings


def test_describe_is_one_line_with_subject_fingerprint_and_days() -> None:
    pem, _ = make_ca("Described CA", days=100)
    info = parse_bundle(pem, "ca.crt").certificates[0]
    now = datetime.now(UTC)
    line = describe(info, now)
    assert "\n" not in line
    assert "CN=Described CA" in line and info.sha256 in line
    assert f"expires in {info.days_left(now)} days" in line
    assert "expired 10 days ago" in describe(info, info.not_after + timedelta(days=10, hours=1))


# --- properties -----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=12))
def test_parse_bundle_round_trips_any_sequence_of_certificates(picks: list[int]) -> None:
    certs = [pool()[i] for i in picks]
    bundle = parse_bundle(b"\n".join(certs), "pool.pem")
    unique = list(dict.fromkeys(certs))
    assert [i.sha256 for i in bundle.certificates] == [sha256_of(c) for c in unique]
    assert bundle.pem == b"".join(unique)
    again = parse_bundle(bundle.pem, "pool.pem")
    assert again == CABundle("pool.pem", bundle.pem, bundle.certificates, bundle.warnings)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_but_a_certificate_error(data: bytes) -> None:
    try:
        parse_bundle(data, "fuzz.pem")
    except CertificateError as error:
        assert "\n" not in str(error)


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=1, max_size=200))
def test_garbage_inside_a_certificate_block_is_refused(payload: bytes) -> None:
    block = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(payload) + b"-----END CERTIFICATE-----\n"
    with pytest.raises(CertificateError):
        parse_bundle(block, "garbage.pem")
