"""DTR/MSR: the saved settings JSON, and the live API over loopback HTTPS with a test CA."""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.certs import parse_bundle
from agent.daemon.watch import SourceWatcher
from agent.errors import InputError, SourceError
from agent.inputs import DTR_TOKEN_ENV, DTR_USER_ENV, PolicyInputs
from agent.sources import load_source
from agent.sources.dtr import Validators, dtr_base_url, fetch_dtr, fetch_dtr_if_changed, parse_dtr_json
from tests.pki import make_ca, make_leaf, write_pair

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sources"
USER, TOKEN = "admin", "dtr-token-0123456789abcdef-do-not-leak"
DTR_SECRETS = ("dtr-fixture-secret-do-not-leak", "AKIADTRFIXTUREEXAMPLE", "dtr-http-secret-do-not-leak")


def one_line_source_error(excinfo: pytest.ExceptionInfo[SourceError]) -> str:
    text = str(excinfo.value)
    assert isinstance(excinfo.value, InputError) and excinfo.value.exit_code == 2
    assert "\n" not in text and TOKEN not in text
    return text


# --- the saved JSON -----------------------------------------------------------------------------


def test_saved_settings_json() -> None:
    text = (FIXTURES / "dtr-settings.json").read_text()
    s = parse_dtr_json(text, "dtr-settings.json")
    assert (s.kind, s.origin, s.driver) == ("dtr", "dtr-settings.json", "s3")
    assert s.s3 is not None
    assert s.s3.regionendpoint == "https://rgw.storage.example.internal:7480"
    assert (s.s3.bucket, s.s3.rootdirectory, s.s3.secure, s.s3.has_credentials) == (
        "dtr-images",
        "/dtr",
        True,
        True,
    )
    assert s.http_tls and s.http_host is None
    assert s.storage_ca_origin == "dtr-settings.json: storage.s3.rootcertificate"
    assert s.storage_ca_pem == (FIXTURES / "dtr-storage-ca.pem").read_bytes()
    bundle = parse_bundle(s.storage_ca_pem, s.storage_ca_origin)
    assert bundle.certificates[0].subject == "CN=Ceph RGW Root CA"
    for secret in DTR_SECRETS:
        assert secret not in repr(s) and secret not in str(s.redacted())


@pytest.mark.parametrize(
    ("storage", "key"),
    [
        ({"rootCA": "PEM"}, "storage.rootCA"),
        ({"ca": "PEM", "s3": {}}, "storage.ca"),
        ({"s3": {"rootca": "PEM"}}, "storage.s3.rootca"),
        ({"s3": {"RootCertificate": "PEM"}}, "storage.s3.RootCertificate"),
    ],
)
def test_root_ca_key_spellings(storage: dict[str, object], key: str) -> None:
    s = parse_dtr_json(json.dumps({"config": "storage: {s3: {}}", "storage": storage}), "s.json")
    assert s.storage_ca_pem == b"PEM" and s.storage_ca_origin == f"s.json: {key}"


def test_no_or_empty_root_ca() -> None:
    for storage in ({}, {"s3": {"rootcertificate": ""}}, None):
        s = parse_dtr_json(json.dumps({"config": "storage: {s3: {}}", "storage": storage}), "s.json")
        assert s.storage_ca_pem is None and s.storage_ca_origin is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"config": "storage: {s3: {}}",\n "storage": {', "s.json:2: not valid JSON: "),
        ("[]", 's.json: expected the JSON of GET /api/v0/admin/settings/registry: an object with a "config"'),
        ('{"config": 3}', "s.json: expected the JSON"),
        ('{"config": "storage: {s3: {}}", "storage": []}', "s.json: storage: must be an object"),
        ('{"config": "storage: {s3: {}}", "storage": {"ca": 7}}', "s.json: storage.ca: must be a PEM string"),
        (
            json.dumps({"config": "version: 0.1\nstorage:\n  s3:\n    secure: maybe\n"}),
            "s.json[config]:4: storage.s3.secure: must be true or false",
        ),
        (json.dumps({"config": "storage:\n  s3: {a: [}\n"}), "s.json[config]:2: not valid YAML"),
    ],
)
def test_bad_json_is_one_line_with_location(text: str, expected: str) -> None:
    with pytest.raises(SourceError) as caught:
        parse_dtr_json(text, "s.json")
    assert one_line_source_error(caught).startswith(expected)


# --- the live API ---------------------------------------------------------------------------------


@dataclass
class FakeDTR:
    url: str
    ca_file: Path
    registry_ca: bytes
    settings: bytes
    seen_auth: list[str] = field(default_factory=list)
    routes: dict[str, tuple[int, bytes, dict[str, str]]] = field(default_factory=dict)
    etags: dict[str, str] = field(default_factory=dict)  # path → ETag it serves and honours
    statuses: list[tuple[str, int]] = field(default_factory=list)
    raw: dict[str, Callable[[BaseHTTPRequestHandler], None]] = field(default_factory=dict)  # path → writer


def _handler(dtr: FakeDTR) -> type[BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            auth = self.headers.get("Authorization", "")
            dtr.seen_auth.append(auth)
            if self.path in dtr.raw:
                dtr.raw[self.path](self)
            elif self.path in dtr.routes:
                self._send(*dtr.routes[self.path])
            elif auth != expected:
                self._send(401, b'{"errors":[{"code":"NOT_AUTHENTICATED"}]}', {})
            elif self.path in dtr.etags and self.headers.get("If-None-Match") == dtr.etags[self.path]:
                self._send(304, b"", {"ETag": dtr.etags[self.path]})
            elif self.path == "/api/v0/admin/settings/registry":
                self._send(200, dtr.settings, {"Content-Type": "application/json", **self._etag()})
            elif self.path == "/ca":
                self._send(200, dtr.registry_ca, {"Content-Type": "application/x-pem-file", **self._etag()})
            else:
                self._send(404, b"not found", {})

        def _etag(self) -> dict[str, str]:
            return {"ETag": dtr.etags[self.path]} if self.path in dtr.etags else {}

        def _send(self, code: int, body: bytes, headers: dict[str, str]) -> None:
            dtr.statuses.append((self.path, code))
            self.send_response(code)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

    return Handler


@pytest.fixture
def dtr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDTR]:
    # The environment must not matter: point every CA variable at nothing, and drop proxies.
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(name, str(tmp_path / "no-such-bundle.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "no-such-dir"))
    for name in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)

    ca = make_ca("DTR Test CA")
    cert_file, key_file = write_pair(tmp_path, "dtr", make_leaf(ca, "dtr.test", ["127.0.0.1"]))
    ca_file = tmp_path / "dtr-ca.pem"
    ca_file.write_bytes(ca[0])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)

    fake = FakeDTR(
        url="",
        ca_file=ca_file,
        registry_ca=ca[0],
        settings=(FIXTURES / "dtr-settings.json").read_bytes(),
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    fake.url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_fetch_reads_settings_and_ca_with_basic_auth(dtr: FakeDTR) -> None:
    s = fetch_dtr(dtr.url + "/", USER, TOKEN, ca_file=str(dtr.ca_file), timeout=5)
    assert s.kind == "dtr" and s.driver == "s3"
    assert s.origin == f"{dtr.url}/api/v0/admin/settings/registry"
    assert s.s3 is not None and s.s3.regionendpoint == "https://rgw.storage.example.internal:7480"
    assert s.registry_ca_pem == dtr.registry_ca and s.registry_ca_origin == f"{dtr.url}/ca"
    assert s.storage_ca_pem == (FIXTURES / "dtr-storage-ca.pem").read_bytes()
    assert s.http_host == dtr.url  # the config has no http.host: DTR's own address
    expected = "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()
    assert dtr.seen_auth == [expected, expected]
    assert TOKEN not in repr(s) and TOKEN not in str(s.redacted())


def test_load_source_fetches_a_https_spec(dtr: FakeDTR) -> None:
    s = load_source(dtr.url, dtr_user=USER, dtr_token=TOKEN, ca_file=str(dtr.ca_file))
    assert s.registry_ca_pem == dtr.registry_ca
    assert s.warnings == ()  # --source-ca is what verified it


def test_env_overrides_for_a_live_dtr_are_said_to_be_ignored(dtr: FakeDTR) -> None:
    s = load_source(
        dtr.url,
        env={"REGISTRY_STORAGE_S3_SECURE": "false"},
        dtr_user=USER,
        dtr_token=TOKEN,
        ca_file=str(dtr.ca_file),
    )
    assert s.s3 is not None and s.s3.secure and s.env_overrides == ()
    assert s.warnings == (
        "--env-overrides is ignored: REGISTRY_* variables apply over a distribution config.yml, and the "
        "source is DTR's settings: DTR runs its registry with an environment of its own",
    )


def test_refused_credentials(dtr: FakeDTR) -> None:
    with pytest.raises(SourceError) as caught:
        fetch_dtr(dtr.url, USER, TOKEN + "-wrong", ca_file=str(dtr.ca_file), timeout=5)
    text = one_line_source_error(caught)
    assert text == f"{dtr.url}/api/v0/admin/settings/registry: credentials refused (HTTP 401)"
    assert "-wrong" not in text


def test_forbidden_is_refused_credentials_too(dtr: FakeDTR) -> None:
    dtr.routes["/api/v0/admin/settings/registry"] = (403, b"{}", {})
    with pytest.raises(SourceError, match=r"credentials refused \(HTTP 403\)"):
        fetch_dtr(dtr.url, USER, TOKEN, ca_file=str(dtr.ca_file), timeout=5)


def test_untrusted_certificate(dtr: FakeDTR, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    other.write_bytes(make_ca("Some Other CA")[0])
    with pytest.raises(SourceError) as caught:
        fetch_dtr(dtr.url, USER, TOKEN, ca_file=str(other), timeout=5)
    assert "TLS certificate not trusted" in one_line_source_error(caught)
    assert dtr.seen_auth == []  # nothing was sent before the server was verified


def test_a_certificate_for_another_name_says_so_not_to_give_the_ca_again(dtr: FakeDTR) -> None:
    elsewhere = dtr.url.replace("127.0.0.1", "localhost")  # the same server; its certificate does not name it
    with pytest.raises(SourceError) as caught:
        fetch_dtr(elsewhere, USER, TOKEN, ca_file=str(dtr.ca_file), timeout=5)
    text = one_line_source_error(caught)
    assert "the certificate is not for localhost: use a name it was issued for" in text, text
    assert "--source-ca" not in text and dtr.seen_auth == []
    with pytest.raises(SourceError, match="give the CA that signed it with --source-ca FILE"):
        fetch_dtr(dtr.url, USER, TOKEN, timeout=5)


def test_without_ca_file_the_system_store_does_not_trust_a_private_ca(dtr: FakeDTR) -> None:
    with pytest.raises(SourceError, match="TLS certificate not trusted"):
        fetch_dtr(dtr.url, USER, TOKEN, timeout=5)


def test_non_json_answer(dtr: FakeDTR) -> None:
    dtr.routes["/api/v0/admin/settings/registry"] = (200, b"<html>login</html>", {})
    with pytest.raises(SourceError) as caught:
        fetch_dtr(dtr.url, USER, TOKEN, ca_file=str(dtr.ca_file), timeout=5)
    assert "not valid JSON" in one_line_source_error(caught)


def test_non_pem_ca_answer(dtr: FakeDTR) -> None:
    dtr.routes["/ca"] = (200, b"<html></html>", {})
    with pytest.raises(SourceError, match=r"/ca: the answer is not a PEM certificate"):
        fetch_dtr(dtr.url, USER, TOKEN, ca_file=str(dtr.ca_file), timeout=5)


def test_server_error(dtr: FakeDTR) -> None:
    dtr.routes["/api/v0/admin/settings/registry"] = (500, b"boom", {})
    with pytest.raises(SourceError, match="HTTP 500"):
        fetch_dtr(dtr.url, USER, TOKEN, ca_file=str(dtr.ca_file), timeout=5)


def _declares(length: int, sends: bytes, *, every: float = 0.0) -> Callable[[BaseHTTPRequestHandler], None]:
    """A 200 that declares ``length`` bytes and sends ``sends``, a byte per ``every`` seconds, then ends."""

    def write(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(length))
        handler.end_headers()
        for byte in sends:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(every)
        handler.close_connection = True

    return write


def test_an_answer_cut_short_is_refused_as_such(dtr: FakeDTR) -> None:
    """A body shorter than its Content-Length was taken, and said "not valid JSON"."""
    dtr.raw["/api/v0/admin/settings/registry"] = _declares(1000, b'{"config": "')
    with pytest.raises(SourceError) as caught:
        fetch_dtr(dtr.url, USER, TOKEN, ca_file=str(dtr.ca_file), timeout=5)
    assert "the answer ended early (12 of 1000 bytes)" in one_line_source_error(caught)


def test_an_answer_trickling_in_is_given_up_on_as_a_whole(dtr: FakeDTR) -> None:
    """A byte a second never trips the per-read timeout: it held the CLI (and a daemon's poll) for 80 s."""
    dtr.raw["/api/v0/admin/settings/registry"] = _declares(100, b" " * 40, every=0.1)
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        fetch_dtr(dtr.url, USER, TOKEN, ca_file=str(dtr.ca_file), timeout=0.5)
    assert "the answer did not arrive in time" in one_line_source_error(caught)
    assert time.monotonic() - started < 3.5


def test_redirects_are_not_followed_with_credentials(dtr: FakeDTR) -> None:
    dtr.routes["/api/v0/admin/settings/registry"] = (302, b"", {"Location": "https://evil.example/steal"})
    with pytest.raises(SourceError) as caught:
        fetch_dtr(dtr.url, USER, TOKEN, ca_file=str(dtr.ca_file), timeout=5)
    assert "redirected (HTTP 302) to https://evil.example" in one_line_source_error(caught)


def test_connection_refused(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(make_ca("Unused")[0])
    with pytest.raises(SourceError) as caught:
        fetch_dtr("https://127.0.0.1:9", USER, TOKEN, ca_file=str(ca), timeout=5)
    assert "cannot connect" in one_line_source_error(caught)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://dtr.example", "http://dtr.example: the DTR address must be an https:// URL"),
        ("https://admin:" + TOKEN + "@dtr.example", "https://dtr.example: put the DTR user and token"),
        ("https://admin:" + TOKEN + "@dtr.example:8443", "https://dtr.example:8443: put the DTR user"),
        ("https://admin:12/" + TOKEN + "@dtr.example", "https://...@dtr.example: put the DTR user and"),
        ("https://admin:12?" + TOKEN + "@dtr.example", "https://...@dtr.example: put the DTR user and"),
        ("https://[::1", "https://[::1: not a valid URL"),
        ("https://dtr.example:99999", "https://dtr.example:99999: not a valid URL"),
    ],
)
def test_unsafe_urls_are_refused_before_connecting(url: str, expected: str) -> None:
    with pytest.raises(SourceError) as caught:
        fetch_dtr(url, USER, TOKEN)
    assert one_line_source_error(caught).startswith(expected)


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("https://dtr.example:8443/api?x=1@2&y=3", "https://dtr.example:8443/api"),
        ("https://dtr.example:8443?X-Amz-Credential=a@b&X-Amz-Date=1", "https://dtr.example:8443"),
        ("https://dtr.example/?to=a@b#top", "https://dtr.example"),
        ("https://dtr.example:8443/api?next=https://...@x&y=1", "https://dtr.example:8443/api"),
    ],
)
def test_an_at_sign_in_the_query_is_no_user_and_token(url: str, base: str) -> None:
    """RFC 3986 ends the address at the first '/', '?' or '#': an '@' in a query value is the query's
    where what follows it cannot be a host[:port]."""
    assert dtr_base_url(url) == base


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://admin:1234?a=" + TOKEN + "@dtr.example:8443", "https://...@dtr.example:8443"),
        ("https://dtr.example:8443/api?x=1@2", "https://...@2"),
    ],
)
def test_an_at_sign_that_may_end_a_user_and_token_is_refused_without_showing_them(
    url: str, shown: str
) -> None:
    """``admin:1234?a=TOKEN@dtr.example:8443`` reads as a query ``a=TOKEN@dtr.example:8443`` too: refused,
    not sent to a host ``admin`` with the token."""
    with pytest.raises(SourceError) as caught:
        dtr_base_url(url)
    message = one_line_source_error(caught)
    assert message.startswith(f"{shown}: put the DTR user and token in the environment")
    assert "1234" not in message


# Values whose every '@' is followed by a character no host name holds.
_QUERY_VALUES = st.lists(
    st.sampled_from(["a", "c", "0", "9", ":", "/", ".", "-", "_", "@_", "@=", "@:"]), max_size=8
).map("".join)


@given(
    port=st.integers(min_value=1, max_value=65535),
    value=_QUERY_VALUES,
    userinfo=st.sampled_from(["admin:" + TOKEN + "@", "admin:12?" + TOKEN + "@"]),
)
def test_a_token_in_the_url_is_refused_and_never_shown_whatever_its_query_holds(
    port: int, value: str, userinfo: str
) -> None:
    with pytest.raises(SourceError) as caught:
        dtr_base_url(f"https://{userinfo}dtr.example:{port}/api?x={value}@_{value}")
    message = str(caught.value)
    assert "put the DTR user and token in the environment" in message and TOKEN not in message
    assert (
        dtr_base_url(f"https://dtr.example:{port}/api?x={value}@_{value}")
        == f"https://dtr.example:{port}/api"
    )


def test_unusable_ca_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as caught:
        fetch_dtr("https://dtr.example", USER, TOKEN, ca_file=str(tmp_path / "missing.pem"))
    assert one_line_source_error(caught).startswith(f"{tmp_path / 'missing.pem'}: cannot use as the DTR's CA")


def test_load_source_needs_credentials_for_a_url() -> None:
    with pytest.raises(SourceError, match="needs an admin user and token"):
        load_source("https://dtr.example", dtr_user=USER)


def test_conditional_requests_say_not_modified_and_see_a_change(dtr: FakeDTR) -> None:
    dtr.etags = {"/api/v0/admin/settings/registry": '"s1"', "/ca": '"c1"'}
    first, seen = fetch_dtr_if_changed(dtr.url, USER, TOKEN, ca_file=str(dtr.ca_file), timeout=5)
    assert first is not None and seen == Validators(('"s1"', None), ('"c1"', None))
    dtr.statuses.clear()
    again, same = fetch_dtr_if_changed(
        dtr.url, USER, TOKEN, ca_file=str(dtr.ca_file), timeout=5, validators=seen
    )
    assert again is None and same == seen
    assert [code for _, code in dtr.statuses] == [304, 304]
    # The settings change: a fresh read, and the unchanged CA is asked for again in full.
    dtr.settings = dtr.settings.replace(b"rgw.storage.example.internal", b"rgw2.storage.example.internal")
    dtr.etags["/api/v0/admin/settings/registry"] = '"s2"'
    dtr.statuses.clear()
    changed, newer = fetch_dtr_if_changed(
        dtr.url, USER, TOKEN, ca_file=str(dtr.ca_file), timeout=5, validators=seen
    )
    assert changed is not None and changed.s3 is not None
    assert changed.s3.regionendpoint == "https://rgw2.storage.example.internal:7480"
    assert changed.registry_ca_pem == dtr.registry_ca
    assert newer.settings == ('"s2"', None)
    assert [code for _, code in dtr.statuses] == [200, 304, 200]


def test_the_daemon_polls_a_live_dtr_with_conditional_requests(dtr: FakeDTR) -> None:
    dtr.etags = {"/api/v0/admin/settings/registry": '"s1"', "/ca": '"c1"'}
    inputs = PolicyInputs(source=dtr.url, source_ca=str(dtr.ca_file), registries=("dtr.test",))
    watcher = SourceWatcher(inputs, {DTR_USER_ENV: USER, DTR_TOKEN_ENV: TOKEN})
    first = watcher.poll()
    assert first.state == "read" and first.policy is not None
    dtr.statuses.clear()
    second = watcher.poll()
    assert second.state == "unchanged" and second.policy == first.policy
    assert [code for _, code in dtr.statuses] == [304, 304]
    dtr.routes["/ca"] = (503, b"down", {})
    assert watcher.poll().state == "error"
    assert (
        SourceWatcher(inputs, {}).poll().error
        == f"a live DTR source needs {DTR_USER_ENV} and {DTR_TOKEN_ENV}"
    )


def test_a_daemon_watching_a_live_dtr_says_its_env_overrides_are_ignored(dtr: FakeDTR) -> None:
    from agent.daemon.watch import SourceWatcher
    from agent.inputs import DTR_TOKEN_ENV, DTR_USER_ENV, PolicyInputs

    inputs = PolicyInputs(source=dtr.url, env_overrides=True, source_ca=str(dtr.ca_file))
    poll = SourceWatcher(inputs, {DTR_USER_ENV: USER, DTR_TOKEN_ENV: TOKEN}).poll()
    assert poll.state == "read" and poll.policy is not None, poll.error
    assert [w for w in poll.policy.warnings if w.startswith("--env-overrides is ignored")]
    assert not [w for w in poll.policy.warnings if w.startswith("--source-ca")]  # it verified the DTR
