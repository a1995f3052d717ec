"""known_hosts marker lines and host certificates, checked without a host (certificates made by
ssh-keygen, as a site's host CA makes them). The same checks against a real sshd are in
test_ssh_transport.py."""

from __future__ import annotations

import base64
import doctest
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from agent.hosts import host_certs
from agent.hosts.host_certs import CertificateError, check, host_matches, read_known_hosts
from agent.hosts.sshlib import paramiko
from tests.ci import missing_prerequisite
from tests.sshkeys import certify, keygen, public

NAME = "198.51.100.21"  # known_hosts names a host on port 22 by its name alone


@pytest.fixture(autouse=True)
def _ssh_keygen() -> None:
    if shutil.which("ssh-keygen") is None:
        missing_prerequisite("ssh-keygen (openssh-client) not installed (.ci/system-deps.sh)")


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(host_certs)
    assert result.attempted > 0 and result.failed == 0


def certified(tmp_path: Path, ca: Path, *sign: str) -> paramiko.PKey:
    """A host key certified by ``ca`` (``ssh-keygen -s CA -I web1 SIGN...``), as paramiko holds it."""
    key = keygen(tmp_path / f"host{len(list(tmp_path.glob('host*.pub')))}")
    fields = certify(ca, key, *sign, key_id="web1").read_text().split()
    return host_certs.certified_key(fields[0], base64.b64decode(fields[1]))


def trusting(ca: Path, patterns: str = "198.51.100.*", extra: str = "") -> host_certs.Markers:
    return read_known_hosts(f"@cert-authority {patterns} {public(ca)}\n{extra}")[1]


def test_a_good_host_certificate_passes(tmp_path: Path) -> None:
    ca = keygen(tmp_path / "ca")
    key = certified(tmp_path, ca, "-h", "-n", "web1.lab,198.51.100.21")
    assert host_certs.is_certificate(key)
    check(key, NAME, "198.51.100.21", trusting(ca), time.time())  # raises if refused


def test_a_forged_signature_is_refused(tmp_path: Path) -> None:
    ca, other = keygen(tmp_path / "ca"), keygen(tmp_path / "other")
    key = certified(tmp_path, other, "-h")
    assert key.public_blob is not None
    cert = host_certs.parse_certificate(key.public_blob.key_blob)
    # The certificate names the trusted CA as its signer, but another key signed it.
    trusted_blob = base64.b64decode(public(ca).split()[1])
    head = cert.signed[: -(len(cert.signature_key) + 4)]
    forged_signed = head + paramiko.Message().add_string(trusted_blob).asbytes()
    forged = forged_signed + paramiko.Message().add_string(cert.signature).asbytes()
    forged_key = paramiko.Ed25519Key(msg=paramiko.Message(forged))
    with pytest.raises(CertificateError, match="does not carry its CA's signature"):
        check(forged_key, NAME, "198.51.100.21", trusting(ca), time.time())


def test_a_sha1_rsa_ca_signature_is_refused_as_openssh_refuses_it(tmp_path: Path) -> None:
    ca = keygen(tmp_path / "ca", "rsa")
    with pytest.raises(CertificateError, match="signed with SHA-1 RSA"):
        check(certified(tmp_path, ca, "-h", "-t", "ssh-rsa"), NAME, "h", trusting(ca), time.time())
    check(certified(tmp_path, ca, "-h", "-t", "rsa-sha2-512"), NAME, "h", trusting(ca), time.time())


def test_the_ca_line_must_match_the_host_and_may_be_revoked(tmp_path: Path) -> None:
    ca = keygen(tmp_path / "ca")
    key = certified(tmp_path, ca, "-h")
    with pytest.raises(CertificateError, match=r"not by a CA known_hosts trusts for 198\.51\.100\.21"):
        check(key, NAME, "h", trusting(ca, "*.example.com,!198.51.100.21"), time.time())
    with pytest.raises(CertificateError, match="is @revoked in known_hosts"):
        check(key, NAME, "h", trusting(ca, extra=f"@revoked * {public(ca)}\n"), time.time())
    check(key, NAME, "h", trusting(ca, extra=f"@revoked other.example {public(ca)}\n"), time.time())


def test_validity_is_read_at_the_time_given(tmp_path: Path) -> None:
    ca = keygen(tmp_path / "ca")
    key = certified(tmp_path, ca, "-h", "-V", "20300101:20300201")
    start = 1893456000  # 2030-01-01 00:00 UTC
    check(key, NAME, "h", trusting(ca), start)
    with pytest.raises(CertificateError, match="is not valid before 2030-01-01 00:00 UTC"):
        check(key, NAME, "h", trusting(ca), start - 1)
    with pytest.raises(CertificateError, match="expired at 2030-02-01 00:00 UTC"):
        check(key, NAME, "h", trusting(ca), start + 31 * 86400)


@pytest.mark.parametrize(
    ("patterns", "name", "expected"),
    [
        ("web1.lab", "WEB1.lab", True),
        ("web?.lab", "web12.lab", False),
        ("*.lab,!db*.lab", "db1.lab", False),
        ("!db*.lab,*.lab", "db1.lab", False),  # a negation wins wherever it stands
        ("!db*.lab", "web1.lab", False),  # a negation alone matches nothing
        ("[web1.lab]:2222", "[web1.lab]:2222", True),
        ("web1.lab", "[web1.lab]:2222", False),
        ("web[1].lab", "web1.lab", False),  # brackets are literal, not a character class
    ],
)
def test_host_patterns_match_as_openssh_matches_them(patterns: str, name: str, expected: bool) -> None:
    assert host_matches(patterns, name) is expected


def test_hashed_names_in_marker_lines_match(tmp_path: Path) -> None:
    ca = keygen(tmp_path / "ca")
    (tmp_path / "kh").write_text(f"web1.lab {public(ca)}\n")
    subprocess.run(
        ["ssh-keygen", "-q", "-H", "-f", str(tmp_path / "kh")], check=True, timeout=30, capture_output=True
    )
    hashed = (tmp_path / "kh").read_text().split()[0]
    assert hashed.startswith("|1|")
    assert host_matches(hashed, "web1.lab") and not host_matches(hashed, "web2.lab")


def test_bad_lines_are_skipped_and_keys_beside_marker_lines_are_read(tmp_path: Path) -> None:
    ca, host = keygen(tmp_path / "ca"), keygen(tmp_path / "host")
    text = (
        f"@cert-authority *.lab {public(ca)}\n"
        "@cert-authority *.lab ssh-ed25519 not-base64!\n"
        "@revoked\n"
        "web1.lab ssh-ed25519 AAAA\n"
        "# a comment\n"
        f"web2.lab {public(host)}\n"
    )
    keys, markers = read_known_hosts(text)
    assert len(markers.authorities) == 1 and markers.revoked == ()
    entry = keys.lookup("web2.lab")
    assert entry is not None and entry["ssh-ed25519"].get_base64() == public(host).split()[1]
    assert keys.lookup("web1.lab") is None


def test_a_ca_line_paramiko_cannot_use_refuses_the_certificate_with_why(tmp_path: Path) -> None:
    ca = keygen(tmp_path / "ca")
    key = certified(tmp_path, ca, "-h")
    blob = public(ca).split()[1]
    markers = read_known_hosts(f"@cert-authority * ssh-bogus {blob}\n")[1]
    with pytest.raises(CertificateError, match="its CA's signature cannot be checked"):
        check(key, NAME, "h", markers, time.time())
