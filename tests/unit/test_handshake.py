"""TLS handshakes from the controller: --resolve parsing, and trust judged the way dockerd judges it."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import agent.handshake as handshake_module
from agent.certs import parse_bundle
from agent.errors import UsageError
from agent.handshake import handshake, handshake_report, parse_resolve, resolved_address, unused_resolve
from agent.trust import CAFile, TrustPolicy
from tests.pki import Issued, make_ca, make_leaf, make_self_signed_leaf, write_pair

# --- --resolve ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "name", "address"),
    [
        ("registry.test:198.51.100.10", "registry.test", "198.51.100.10"),
        ("registry.test:2001:db8::10", "registry.test", "2001:db8::10"),
        ("registry.test:[2001:db8::10]", "registry.test", "2001:db8::10"),  # bare, as sockets take it
        ("s3.example.com.:127.0.0.1", "s3.example.com.", "127.0.0.1"),
    ],
)
def test_resolve_takes_host_and_ip_address(value: str, name: str, address: str) -> None:
    assert parse_resolve((value,)) == {name: address}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("registry.test:443:198.51.100.10", "curl's HOST:PORT:ADDR form"),
        ("registry.test:443:[2001:db8::10]", "curl's HOST:PORT:ADDR form"),
        ("registry.test:registry.example", "'registry.example' is not an IP address"),
        ("registry.test:198.51.100.300", "is not an IP address"),
        ("registry.test:198.51.100.10,198.51.100.11", "is not an IP address"),
        ("reg/../x:198.51.100.10", "'reg/../x' is not a host name"),
        ("[2001:db8::1]:198.51.100.10", "is not a host name"),
        ("registry.test", "expected HOST:ADDR"),
        ("registry.test:", "expected HOST:ADDR"),
        (":198.51.100.10", "expected HOST:ADDR"),
    ],
)
def test_resolve_refuses_what_is_not_host_and_ip_address(value: str, says: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_resolve((value,))
    message = str(caught.value)
    assert message.startswith(f"--resolve {value!r}: ")
    assert says in message
    assert "expected HOST:ADDR, ADDR an IPv4 or IPv6 address" in message  # which form is taken
    assert "\n" not in message


# --- handshakes --------------------------------------------------------------------------------


@contextmanager
def _tls_server(tmp_path: Path, issued: Issued) -> Iterator[int]:
    """A TLS server on 127.0.0.1 presenting ``issued`` for one handshake; yields its port."""
    cert, key = write_pair(tmp_path, "server", issued)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5.0)

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                conn.settimeout(5.0)
                with context.wrap_socket(conn, server_side=True):
                    pass
            except OSError:  # the client refused the certificate, or never came: the client says
                pass

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        yield listener.getsockname()[1]
        server.join(timeout=5.0)


def _anchored_on(leaf_pem: bytes, target: str) -> TrustPolicy:
    """A policy whose storage CA file is ``leaf_pem``, checked for ``target`` (as a registry)."""
    bundle = parse_bundle(leaf_pem, "leaf.pem")
    return TrustPolicy(
        registries=(target,),
        storage_endpoint=None,
        storage_scheme=None,
        ca_files=(CAFile("storage", "trust-agent-storage-ca.crt", bundle),),
    )


def _servers_leaf(kind: str) -> Issued:
    if kind == "self-signed":
        return make_self_signed_leaf("storage.test")
    return make_leaf(make_ca("Unseen CA"), "storage.test")  # its CA is not given: only the leaf is


@pytest.mark.parametrize("kind", ["issued-by-a-ca-not-given", "self-signed"])
def test_a_servers_own_leaf_given_as_its_ca_is_a_trust_anchor(tmp_path: Path, kind: str) -> None:
    # dockerd (Go) trusts a non-CA certificate in its root pool as an anchor: the check does too.
    issued = _servers_leaf(kind)
    assert not parse_bundle(issued[0], "leaf.pem").certificates[0].is_ca
    with _tls_server(tmp_path, issued) as port:
        target = f"storage.test:{port}"
        report = handshake_report(
            _anchored_on(issued[0], target), timeout=5.0, resolve={"storage.test": "127.0.0.1"}
        )
    assert report.lines == (f"tls {target}: ok",)
    assert report.ok


def test_a_certificate_from_another_ca_is_still_refused(tmp_path: Path) -> None:
    issued = make_leaf(make_ca("Storage CA"), "storage.test")
    stranger = make_self_signed_leaf("storage.test")
    with _tls_server(tmp_path, issued) as port:
        target = f"storage.test:{port}"
        report = handshake_report(
            _anchored_on(stranger[0], target), timeout=5.0, resolve={"storage.test": "127.0.0.1"}
        )
    assert not report.ok
    assert report.lines[0].startswith(f"tls {target}: certificate not trusted")


def test_the_controllers_ssl_cert_file_is_not_what_hosts_trust(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CA in the controller's SSL_CERT_FILE (an organisation's, on an admin's workstation) made the
    check pass while hosts, which do not have it, failed every pull."""
    ca = make_ca("Organisation CA")
    issued = make_leaf(ca, "storage.test")
    bundle = tmp_path / "org-bundle.pem"
    bundle.write_bytes(ca[0])
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    with _tls_server(tmp_path, issued) as port:
        target = f"storage.test:{port}"
        nothing_given = TrustPolicy(registries=(target,), storage_endpoint=None, storage_scheme=None)
        report = handshake_report(nothing_given, timeout=5.0, resolve={"storage.test": "127.0.0.1"})
    assert not report.ok
    assert report.lines[0].startswith(f"tls {target}: certificate not trusted")


# --- --resolve entries matched as DNS matches names ---------------------------------------------


@given(
    host=st.sampled_from(["registry.test", "s3.storage.test", "minio"]),
    capitals=st.lists(st.booleans(), min_size=20, max_size=20),
    entry_dot=st.booleans(),
    host_dot=st.booleans(),
)
def test_a_resolve_entry_matches_its_name_whatever_the_capitals_or_trailing_dot(
    host: str, capitals: list[bool], entry_dot: bool, host_dot: bool
) -> None:
    spelt = "".join(c.upper() if up else c for c, up in zip(host, capitals, strict=False))
    table = parse_resolve((f"{spelt}{'.' if entry_dot else ''}:198.51.100.10",))
    checked = f"{host}{'.' if host_dot else ''}"
    assert resolved_address(table, checked) == "198.51.100.10"
    assert unused_resolve(table, [f"{checked}:443"]) == ()
    assert resolved_address(table, "other.test") == "other.test"  # not given: the system resolver


def test_the_last_entry_for_a_name_wins_as_in_the_table() -> None:
    table = parse_resolve(("registry.test:198.51.100.10", "REGISTRY.test:198.51.100.11"))
    assert resolved_address(table, "registry.test") == "198.51.100.11"


def test_a_resolve_entry_spelt_with_capitals_is_where_the_check_connects(tmp_path: Path) -> None:
    """--resolve Storage.Test:127.0.0.1 for a check of storage.test went to DNS instead (an exact,
    case-sensitive match), and the check failed for a name DNS does not know."""
    issued = make_leaf(make_ca("Storage CA"), "storage.test")
    with _tls_server(tmp_path, issued) as port:
        target = f"storage.test:{port}"
        report = handshake_report(
            _anchored_on(issued[0], target), timeout=5.0, resolve=parse_resolve(("Storage.Test.:127.0.0.1",))
        )
    assert report.lines == (f"tls {target}: ok",)
    assert report.ok and report.warnings == ()


def test_a_resolve_entry_no_check_uses_is_warned_of_not_failed(tmp_path: Path) -> None:
    issued = make_leaf(make_ca("Storage CA"), "storage.test")
    with _tls_server(tmp_path, issued) as port:
        target = f"storage.test:{port}"
        resolve = parse_resolve(("storage.test:127.0.0.1", "registry.tset:127.0.0.1"))
        report = handshake_report(_anchored_on(issued[0], target), timeout=5.0, resolve=resolve)
    assert report.ok and report.lines == (f"tls {target}: ok",)
    assert report.warnings == (
        f"--resolve registry.tset:127.0.0.1: no TLS check connects to registry.tset (checked: {target}); "
        "the entry was not used",
    )


def test_a_name_this_machine_cannot_resolve_says_to_give_its_address(monkeypatch: pytest.MonkeyPatch) -> None:
    def unresolved(*args: object, **kwargs: object) -> socket.socket:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(handshake_module.socket, "create_connection", unresolved)
    said = handshake("registry.test", ssl.create_default_context())
    assert said is not None and said.endswith(
        "this machine cannot resolve registry.test; give its address with --resolve registry.test:ADDR"
    )


# --- every store engines may be sent to -----------------------------------------------------------


def test_each_other_store_on_https_is_checked_with_the_hosts_trust(tmp_path: Path) -> None:
    """Behind a cloudfront ipfilteredby, engines in AWS's ranges are sent to S3 itself: a store whose
    certificate the policy's CAs do not cover fails their pulls, and so fails the check."""
    ca = make_ca("Storage CA")
    bundle = parse_bundle(ca[0], "storage-ca.pem")
    resolve = {name: "127.0.0.1" for name in ("registry.test", "cdn.test", "s3.test")}
    with (
        _tls_server(tmp_path, make_leaf(ca, "registry.test")) as registry_port,
        _tls_server(tmp_path, make_leaf(ca, "cdn.test")) as cdn_port,
        _tls_server(tmp_path, make_leaf(make_ca("Another CA"), "s3.test")) as s3_port,
    ):
        policy = TrustPolicy(
            registries=(f"registry.test:{registry_port}",),
            storage_endpoint=f"cdn.test:{cdn_port}",
            storage_scheme="https",
            storage_alternatives=(("https", f"s3.test:{s3_port}"), ("http", "plain.test:9000")),
            ca_files=(CAFile("storage", "trust-agent-storage-ca.crt", bundle),),
        )
        report = handshake_report(policy, timeout=5.0, resolve=resolve)
    assert not report.ok
    assert report.lines[:2] == (f"tls registry.test:{registry_port}: ok", f"tls cdn.test:{cdn_port}: ok")
    assert report.lines[2].startswith(f"tls s3.test:{s3_port}: certificate not trusted")
    assert len(report.lines) == 3, "a store on plain HTTP has no certificate to check"
    assert report.warnings == ()
