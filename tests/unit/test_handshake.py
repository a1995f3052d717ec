"""TLS handshakes from the controller: --resolve parsing, and trust judged the way dockerd judges it."""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import agent.handshake as handshake_module
from agent.certs import parse_bundle
from agent.errors import UsageError
from agent.handshake import (
    BackgroundHandshakes,
    HandshakeReport,
    handshake,
    handshake_report,
    judged_for_rollout,
    parse_resolve,
    resolved_address,
    unused_resolve,
)
from agent.trust import CAFile, TrustPolicy
from tests.pki import Issued, make_ca, make_leaf, make_self_signed_leaf, write_pair

# --- --resolve ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "name", "address"),
    [
        ("registry.test:198.51.100.10", "registry.test", "198.51.100.10"),
        ("registry.test:fd00::10", "registry.test", "fd00::10"),
        ("registry.test:[2001:db8::10]", "registry.test", "2001:db8::10"),  # bare, as sockets take it
        ("registry.test:::1", "registry.test", "::1"),
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
        ("registry.test:443:::1", "curl's HOST:PORT:ADDR form"),
        # curl's form with a bare IPv6 address is an IPv6 address too: 443:fd00::1 was taken as one.
        (
            "registry.test:443:fd00::1",
            "'443:fd00::1' is an IPv6 address but also reads as curl's PORT:ADDR; write "
            "registry.test:[443:fd00::1] for that address, or registry.test:[fd00::1] for curl's",
        ),
        ("registry.test:2001:db8::10", "write registry.test:[2001:db8::10] for that address"),
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

    monkeypatch.setattr(socket, "create_connection", unresolved)  # the module handshake uses
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


# --- rollout's checks: in the background, judged on trust alone ----------------------------------------

_SAID = {
    "ok": "ok",
    "unknown issuer": "certificate not trusted: unable to get local issuer certificate",
    "name mismatch": "certificate not trusted: Hostname mismatch, certificate is not valid for 's3.test'.",
    "unresolved": "cannot connect: Name or service not known: this machine cannot resolve registry.test; "
    "give its address with --resolve registry.test:ADDR",
    "refused": "cannot connect: [Errno 111] Connection refused",
    "silent": "cannot connect: no answer within 5 s",
}


@given(kinds=st.lists(st.sampled_from(sorted(_SAID)), min_size=1, max_size=4))
def test_rollout_fails_on_a_certificate_the_hosts_do_not_trust_and_notes_one_it_cannot_reach(
    kinds: list[str],
) -> None:
    lines = tuple(f"tls t{i}.test:443: {_SAID[kind]}" for i, kind in enumerate(kinds))
    judged = judged_for_rollout(HandshakeReport(ok=kinds == ["ok"] * len(kinds), lines=lines))
    untrusted = tuple(
        line for line, kind in zip(lines, kinds, strict=True) if kind in ("unknown issuer", "name mismatch")
    )
    unreached = [
        line for line, kind in zip(lines, kinds, strict=True) if kind in ("unresolved", "refused", "silent")
    ]
    assert judged.lines == lines
    assert judged.failed == untrusted
    assert judged.ok == (not untrusted)
    pulls = [note for note in judged.notes if note.startswith("the hosts' pulls will fail: ")]
    assert len(pulls) == (1 if untrusted else 0)
    for line in untrusted:  # the warning names each target whose certificate the hosts refuse
        assert line.removeprefix("tls ").partition(": ")[0] in pulls[0]
    assert [note for note in judged.notes if note.startswith("tls ")] == [
        f"{line}: not checked from this machine (a note, not a failure: the hosts may reach it where this "
        "machine cannot)"
        for line in unreached
    ]


def test_a_skip_tls_policy_and_unused_resolve_entries_fail_nothing_in_a_rollout() -> None:
    skipped = HandshakeReport(True, ("tls: skipped: the policy lists the registry as insecure (skip-TLS)",))
    assert judged_for_rollout(skipped).ok and judged_for_rollout(skipped).notes == ()
    unused = HandshakeReport(True, ("tls registry.test: ok",), ("--resolve registry.tset:127.0.0.1: ...",))
    judged = judged_for_rollout(unused)
    assert judged.ok and judged.notes == ("--resolve registry.tset:127.0.0.1: ...",)


def _storage_policy(ca_pem: bytes, target: str) -> TrustPolicy:
    return TrustPolicy(
        registries=(),
        storage_endpoint=target,
        storage_scheme="https",
        ca_files=(CAFile("storage", "trust-agent-storage-ca.crt", parse_bundle(ca_pem, "ca.pem")),),
    )


def test_a_rotated_storage_ca_the_storage_does_not_present_yet_fails_a_rollout(tmp_path: Path) -> None:
    """Only the new storage CA given while the storage still presents the old one's certificate: every
    pull on the hosts then fails, and so must the rollout."""
    old, new = make_ca("Storage CA 2025"), make_ca("Storage CA 2026")
    with _tls_server(tmp_path, make_leaf(old, "storage.test")) as port:
        target = f"storage.test:{port}"
        checks = BackgroundHandshakes(_storage_policy(new[0], target), 5.0, {"storage.test": "127.0.0.1"})
        judged = judged_for_rollout(checks.report())
    assert judged.failed == (
        f"tls {target}: certificate not trusted: unable to get local issuer certificate",
    )
    assert not judged.ok


def test_a_certificate_for_another_name_fails_a_rollout(tmp_path: Path) -> None:
    ca = make_ca("Storage CA")
    with _tls_server(tmp_path, make_leaf(ca, "other.test")) as port:
        target = f"storage.test:{port}"
        checks = BackgroundHandshakes(_storage_policy(ca[0], target), 5.0, {"storage.test": "127.0.0.1"})
        judged = judged_for_rollout(checks.report())
    (failed,) = judged.failed
    assert failed.startswith(f"tls {target}: certificate not trusted: Hostname mismatch"), failed


def test_the_right_ca_passes_a_rollout(tmp_path: Path) -> None:
    ca = make_ca("Storage CA")
    with _tls_server(tmp_path, make_leaf(ca, "storage.test")) as port:
        target = f"storage.test:{port}"
        checks = BackgroundHandshakes(_storage_policy(ca[0], target), 5.0, {"storage.test": "127.0.0.1"})
        judged = judged_for_rollout(checks.report())
    assert judged.ok and judged.lines == (f"tls {target}: ok",) and judged.notes == ()


def test_the_checks_run_while_the_hosts_do_and_are_waited_for_no_longer_than_their_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One check ends at once, the other never (a controller whose packets are dropped): the run's end
    waits the bound for it, not until it ends, and says it had no answer, as a note."""
    started: list[str] = []
    never = threading.Event()

    def checked(address: str, *args: object) -> str | None:
        started.append(address)
        if address.startswith("silent."):
            never.wait(30.0)
        return None

    monkeypatch.setattr(handshake_module, "handshake", checked)
    policy = TrustPolicy(
        registries=("quick.test",), storage_endpoint="silent.test:9000", storage_scheme="https"
    )
    checks = BackgroundHandshakes(policy, 0.5, {})
    deadline = time.monotonic() + 5.0
    while len(started) < 2 and time.monotonic() < deadline:  # the fleet's work, meanwhile
        time.sleep(0.01)
    assert sorted(started) == ["quick.test", "silent.test:9000"], "both began before the run's end"
    ended = time.monotonic()
    report = checks.report()
    waited = time.monotonic() - ended
    never.set()
    assert 0.4 <= waited < 1.5, waited
    assert report.lines == (
        "tls quick.test: ok",
        "tls silent.test:9000: cannot connect: no answer within 0.5 s",
    )
    judged = judged_for_rollout(report)
    assert judged.ok and judged.notes[0].startswith(
        "tls silent.test:9000: cannot connect: no answer within 0.5 s"
    )


def test_the_background_checks_load_the_systems_roots_once_for_every_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each context loads the system's roots, about 50 ms of CPU, while the hosts work: one for all."""
    built: list[TrustPolicy] = []
    real_context = handshake_module._context

    def counted(policy: TrustPolicy) -> ssl.SSLContext:
        built.append(policy)
        return real_context(policy)

    monkeypatch.setattr(handshake_module, "_context", counted)
    monkeypatch.setattr(handshake_module, "handshake", lambda *args: None)
    policy = TrustPolicy(
        registries=("registry.test", "registry.test:443"),
        storage_endpoint="s3.test:9000",
        storage_scheme="https",
    )
    report = BackgroundHandshakes(policy, 5.0, {}).report()
    assert len(report.lines) == 2 and report.ok  # registry.test and registry.test:443: one endpoint
    assert len(built) == 1


def test_an_interrupted_run_waits_for_no_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C ended the run (nothing more will change): its report is not held up for a check."""
    never = threading.Event()

    def silent(*args: object) -> str | None:
        never.wait(30.0)
        return None

    monkeypatch.setattr(handshake_module, "handshake", silent)
    policy = TrustPolicy(registries=("registry.test",), storage_endpoint=None, storage_scheme=None)
    checks = BackgroundHandshakes(policy, 5.0, {})
    began = time.monotonic()
    report = checks.report(wait=False)
    never.set()
    assert time.monotonic() - began < 1.0
    assert report.lines == ("tls registry.test: cannot connect: not finished when the run was interrupted",)


def test_a_ctrl_c_while_rollout_waits_for_its_checks_ends_the_wait_not_the_report() -> None:
    """The Ctrl-C raised out of the wait: "Aborted!", no table, and an earlier run's report kept."""
    from agent.cli import _TlsChecks
    from agent.handshake import HandshakeReport

    class CutShort:
        def report(self, *, wait: bool = True) -> HandshakeReport:
            if wait:
                raise KeyboardInterrupt
            return HandshakeReport(
                True, ("tls registry.test: cannot connect: not finished when the run was interrupted",)
            )

    checks = _TlsChecks({}, 5.0, running=CutShort())  # type: ignore[arg-type]
    judged = checks.finish()
    assert checks.interrupted and judged.ok
    assert judged.notes[0].startswith(
        "tls registry.test: cannot connect: not finished when the run was interrupted"
    )


# --- one check per endpoint, whatever names the policy gives it ------------------------------------------


def _recorded(monkeypatch: pytest.MonkeyPatch, problem: str | None) -> list[str]:
    """Every address of these tests' a handshake is made with, each answered ``problem`` (``None``: it
    verified). Only theirs (``*.corp.test``): a check another test left running may call it too."""
    made: list[str] = []

    def handshake(address: str, *args: object) -> str | None:
        if ".corp.test" in address.lower():
            made.append(address)
        return problem

    monkeypatch.setattr(handshake_module, "handshake", handshake)
    return made


def _both_names(storage: str = "s3.corp.test:9000") -> TrustPolicy:
    """What the lab's source gives: the registry bare and with its default port, and a store."""
    return TrustPolicy(
        registries=("registry.corp.test", "registry.corp.test:443"),
        storage_endpoint=storage,
        storage_scheme="https",
    )


@pytest.mark.parametrize("made_by", ["verify", "rollout"])
def test_a_registry_named_with_and_without_its_default_port_is_checked_once(
    monkeypatch: pytest.MonkeyPatch, made_by: str
) -> None:
    """registry.corp.test and registry.corp.test:443 are one endpoint: it was checked twice, and a controller
    that could not reach it read two notes for one registry."""
    made = _recorded(monkeypatch, None)
    policy = _both_names()
    if made_by == "verify":
        report = handshake_report(policy, resolve={"registry.corp.test": "127.0.0.1"})
    else:
        report = BackgroundHandshakes(policy, 5.0, {"registry.corp.test": "127.0.0.1"}).report()
    assert sorted(made) == ["registry.corp.test", "s3.corp.test:9000"]
    assert report.lines == (
        "tls registry.corp.test (also registry.corp.test:443): ok",
        "tls s3.corp.test:9000: ok",
    )
    assert report.ok and report.warnings == ()


def test_a_registry_not_reached_from_here_is_one_note_naming_both_its_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _recorded(monkeypatch, "cannot connect: [Errno 111] Connection refused")
    judged = judged_for_rollout(BackgroundHandshakes(_both_names(), 5.0, {}).report())
    notes = [note for note in judged.notes if note.startswith("tls ")]
    assert len(notes) == 2, notes  # the registry's, and the store's
    assert notes[0].startswith(
        "tls registry.corp.test (also registry.corp.test:443): cannot connect: [Errno 111] Connection refused: "
        "not checked from this machine"
    )
    assert judged.ok


def test_a_certificate_refused_on_one_endpoint_says_every_name_it_serves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _recorded(monkeypatch, "certificate not trusted: unable to get local issuer certificate")
    policy = _both_names(storage="REGISTRY.corp.test:443")  # the registry stores its own blobs
    report = handshake_report(policy)
    assert report.lines == (
        "tls registry.corp.test (also registry.corp.test:443, REGISTRY.corp.test:443): certificate not trusted: unable to "
        "get local issuer certificate",
    )
    judged = judged_for_rollout(report)
    assert judged.failed == report.lines and not judged.ok
    assert judged.notes[0].startswith(
        "the hosts' pulls will fail: registry.corp.test (also registry.corp.test:443, REGISTRY.corp.test:443) presented"
    )


_HOSTS = st.sampled_from(
    ["registry.corp.test", "Registry.Corp.Test", "registry.corp.test.", "s3.corp.test", "[2001:db8::10]"]
)
_PORTS = st.sampled_from(["", ":443", ":5000", ":9000"])


def _endpoint(name: str) -> tuple[str, str]:
    """``host[:port]`` as (host, port) with the port engines use where none is given."""
    host, port = name.rsplit(":", 1) if name.count(":") == 1 or "]:" in name else (name, "443")
    return host.lower(), port


_CHECK_LINE = re.compile(r"tls (?P<first>\S+?)(?: \(also (?P<others>.+)\))?: ok")


@given(
    registries=st.lists(st.tuples(_HOSTS, _PORTS).map("".join), min_size=1, max_size=5, unique=True),
    store=st.tuples(_HOSTS, _PORTS).map("".join),
)
def test_each_endpoint_is_checked_once_under_its_first_name_and_every_name_is_said(
    registries: list[str], store: str
) -> None:
    made: list[str] = []

    def handshake(address: str, *args: object) -> str | None:
        if address in (*registries, store):  # not a check another test left running
            made.append(address)
        return None

    policy = TrustPolicy(registries=tuple(registries), storage_endpoint=store, storage_scheme="https")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(handshake_module, "handshake", handshake)
        patch.setattr(handshake_module, "_context", lambda policy: None)  # no roots to load: none used
        report = handshake_report(policy)
    by_endpoint: dict[tuple[str, str], list[str]] = {}
    for name in dict.fromkeys([*registries, store]):
        by_endpoint.setdefault(_endpoint(name), []).append(name)
    assert sorted(made) == sorted(names[0] for names in by_endpoint.values())  # one handshake each
    said = []
    for line in report.lines:
        match = _CHECK_LINE.fullmatch(line)
        assert match, line
        others = match["others"].split(", ") if match["others"] else []
        said.append([match["first"], *others])
    assert said == list(by_endpoint.values())  # under the first name given, every other one said


# --- a policy without the storage CA: a host holding trust-agent's keeps it --------------------------------

_WITHOUT_STORAGE_CA = "made without the storage CA (this run gives none; a host holding one keeps it): "
_NOT_JUDGED = (
    ": not judged (a note, not a failure: a host's pulls trust the storage CA it holds, which this machine "
    "was not given; give it with --storage-ca FILE to have it checked)"
)


def _without_the_storage_ca(*, missing: bool = True) -> TrustPolicy:
    """The lab's source rolled out again without --storage-ca (``missing``), or with one given."""
    return replace(_both_names(), storage_ca_missing=missing)


@pytest.mark.parametrize("made_by", ["verify", "rollout"])
@pytest.mark.parametrize(
    "issuer_unknown",
    [
        "unable to get local issuer certificate",
        "self-signed certificate",
        "self signed certificate in certificate chain",
    ],
)
def test_an_unknown_issuer_checked_without_the_storage_ca_is_not_judged_a_failed_pull(
    monkeypatch: pytest.MonkeyPatch, made_by: str, issuer_unknown: str
) -> None:
    """Rolled out again without --storage-ca, every host kept the storage CA that works, yet the run said
    the hosts' pulls will fail and failed a check made with the registry CA alone."""
    _recorded(monkeypatch, f"certificate not trusted: {issuer_unknown}")
    monkeypatch.setattr(handshake_module, "_context", lambda policy: None)  # no roots to load: none used
    policy = _without_the_storage_ca()
    report = (
        handshake_report(policy) if made_by == "verify" else BackgroundHandshakes(policy, 5.0, {}).report()
    )
    assert report.lines == (
        "tls registry.corp.test (also registry.corp.test:443): "
        f"{_WITHOUT_STORAGE_CA}certificate not trusted: {issuer_unknown}",
        f"tls s3.corp.test:9000: {_WITHOUT_STORAGE_CA}certificate not trusted: {issuer_unknown}",
    )
    assert not report.ok  # verify proved nothing there, as where a check cannot connect
    judged = judged_for_rollout(report)
    assert judged.ok and judged.failed == ()
    assert judged.notes == tuple(line + _NOT_JUDGED for line in report.lines)  # no "pulls will fail"


_IDENTITY_PROBLEMS = {  # no CA makes these trusted: judged as ever, storage CA given or not
    "name mismatch": "certificate not trusted: Hostname mismatch, certificate is not valid for 's3.corp.test'.",
    "expired": "certificate not trusted: certificate has expired",
}


@given(
    missing=st.booleans(),
    kind=st.sampled_from(["unknown issuer", "self-signed", *_IDENTITY_PROBLEMS]),
)
def test_only_an_unknown_issuer_without_the_storage_ca_goes_unjudged(missing: bool, kind: str) -> None:
    said = {
        "unknown issuer": "certificate not trusted: unable to get local issuer certificate",
        "self-signed": "certificate not trusted: self-signed certificate",
        **_IDENTITY_PROBLEMS,
    }[kind]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(handshake_module, "handshake", lambda address, *args: said)
        patch.setattr(handshake_module, "_context", lambda policy: None)
        report = handshake_report(_without_the_storage_ca(missing=missing))
    judged = judged_for_rollout(report)
    unjudged = missing and kind in ("unknown issuer", "self-signed")
    assert judged.ok == unjudged
    assert judged.failed == (() if unjudged else report.lines)
    pulls = [note for note in judged.notes if note.startswith("the hosts' pulls will fail: ")]
    assert len(pulls) == (0 if unjudged else 1)
    assert all((_WITHOUT_STORAGE_CA in line) == unjudged for line in report.lines)
