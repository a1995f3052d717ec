"""Secrets never shown: a daemon.json diff line, a warning quoting daemon.json, and a source's settings
as show-source prints them and the daemon's host copy keeps them."""

from __future__ import annotations

import difflib
import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from agent.daemon.bundle import host_source_document
from agent.errors import SourceError
from agent.runtimes.daemon_json import trailing_data, trailing_data_refused
from agent.runtimes.docker import _trailing_data_ignored
from agent.runtimes.docker_facts import DockerFacts
from agent.runtimes.plan import FileChange, _redacted, redacted_lines
from agent.sources import load_source

# What a password may hold inside a JSON string of daemon.json: no quote, backslash or whitespace.
_PASSWORD = st.text(
    st.characters(codec="ascii", categories=["L", "N", "P", "S"], exclude_characters='"\\'),
    min_size=1,
    max_size=16,
)
_PROXY_HOSTS = st.sampled_from(["proxy", "proxy.corp.example", "198.51.100.7", "[2001:db8::7]"])


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (
            '  "http-proxy": "http://user:12/34@proxy:3128",\n',
            '  "http-proxy": "http://***@proxy:3128",\n',
        ),
        ('"https-proxy": "http://user:12?34@proxy:3128"', '"https-proxy": "http://***@proxy:3128"'),
        ('"https-proxy": "http://user:12#34@proxy"', '"https-proxy": "http://***@proxy"'),
        ('"x": "http://user:12/34@proxy:3128/path"', '"x": "http://***@proxy:3128/path"'),
        # An '@' in the path of a URL without a user: nothing to hide.
        ('"registry-mirrors": ["https://mirror.example/users/@me"]', None),
    ],
)
def test_a_url_password_is_redacted_whole(line: str, shown: str | None) -> None:
    assert _redacted(line) == (line if shown is None else shown)


@given(
    user=st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8),
    password=_PASSWORD,
    host=_PROXY_HOSTS,
    port=st.integers(1, 65535),
)
@example(user="user", password="12/34", host="proxy", port=3128)  # user:12 reads as host:port
@example(user="a", password="@#", host="proxy", port=1)  # the authority ends inside the password
def test_no_part_of_a_url_password_is_ever_shown(user: str, password: str, host: str, port: int) -> None:
    line = f'  "http-proxy": "http://{user}:{password}@{host}:{port}",\n'
    assert _redacted(line) == f'  "http-proxy": "http://***@{host}:{port}",\n'


def test_a_daemon_json_diff_shows_no_proxy_password() -> None:
    after = b'{\n  "proxies": {"http-proxy": "http://user:12/34@proxy:3128"}\n}\n'
    diff = FileChange("/etc/docker/daemon.json", "create", None, after).diff()
    assert '"http-proxy": "http://***@proxy:3128"' in diff
    assert "12/34" not in diff and "user:" not in diff


@pytest.mark.parametrize("key", ["regionendpoint", "redirectendpoint"])
def test_a_source_url_whose_password_is_digits_up_to_a_slash_is_never_shown(tmp_path: Path, key: str) -> None:
    """``AK:12/34@s3...`` read as host AK, port 12: kept whole, and printed by show-source."""
    source = tmp_path / "config.yml"
    source.write_text(
        "version: 0.1\nhttp: {host: https://registry.test}\n"
        f"storage: {{s3: {{bucket: b, {key}: 'https://AK:12/34@s3.example.com:9000'}}}}\n"
    )
    with pytest.raises(SourceError) as info:
        load_source(str(source))
    assert "'https://...@s3.example.com:9000': a user:password@" in str(info.value)
    assert "12/34" not in str(info.value) and "AK" not in str(info.value)


def test_show_source_output_holds_no_url_credentials(tmp_path: Path) -> None:
    source = tmp_path / "config.yml"
    source.write_text(
        "version: 0.1\nhttp: {host: 'https://admin:HTTPPW@registry.test'}\n"
        "storage: {s3: {bucket: b, regionendpoint: 'https://AK:S3PW@s3.example.com:9000'}}\n"
    )
    shown = json.dumps(load_source(str(source)).redacted())
    assert "https://s3.example.com:9000" in shown and "https://registry.test" in shown
    assert not any(part in shown for part in ("HTTPPW", "S3PW", "admin", "AK:"))


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (
            '  "http-proxy": "http:\\/\\/puser:PROXYPW@proxy.corp:3128",\n',
            '  "http-proxy": "http:\\/\\/***@proxy.corp:3128",\n',
        ),
        ('"x": "https:\\/\\/u:p\\/w@proxy\\/path"', '"x": "https:\\/\\/***@proxy\\/path"'),
        # A JSON-escaped quote in the password does not end the URL early.
        ('"x": "http://user:a\\"b@proxy:3128"', '"x": "http://***@proxy:3128"'),
    ],
)
def test_a_url_with_json_escaped_characters_is_redacted(line: str, shown: str) -> None:
    assert _redacted(line) == shown


@given(
    user=st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8), password=_PASSWORD, host=_PROXY_HOSTS
)
def test_no_part_of_a_password_is_shown_where_slashes_are_escaped(
    user: str, password: str, host: str
) -> None:
    doc = {"proxies": {"http-proxy": f"http://{user}:{password}@{host}:3128"}}
    escaped = json.dumps(doc, indent=2).replace("/", "\\/")  # as PHP's json_encode writes it
    diff = FileChange("/etc/docker/daemon.json", "create", None, escaped.encode()).diff()
    assert f'"http-proxy": "http:\\/\\/***@{host}:3128"' in diff, diff
    assert f"\\/{user}:" not in diff


# A log driver's token on the line after its key, among enough lines that a change to the insecure
# list far below shows the token's line only as context, or not at all.
_TOKEN_ON_NEXT_LINE = (
    '{\n  "log-opts": {\n    "splunk-token":\n      "SPLUNKTOK",\n    "splunk-url": "https://splunk"\n  },\n'
    '  "insecure-registries": []\n}\n'
)

_TOKEN_FIRST_IN_A_HUNK = (
    '{\n  "log-opts": {\n    "splunk-token":\n      "SPLUNKTOK"\n  },\n  "debug": true,\n'
    '  "insecure-registries": []\n}\n'
)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (None, _TOKEN_ON_NEXT_LINE),
        (_TOKEN_ON_NEXT_LINE, None),
        (_TOKEN_ON_NEXT_LINE, _TOKEN_ON_NEXT_LINE.replace("[]", '["reg.test"]')),
        (_TOKEN_ON_NEXT_LINE, _TOKEN_ON_NEXT_LINE.replace("SPLUNKTOK", "NEWTOK")),
        # The token's line as the first context line of a hunk, its key outside it.
        (_TOKEN_FIRST_IN_A_HUNK, _TOKEN_FIRST_IN_A_HUNK.replace("[]", '["reg.test"]')),
    ],
)
def test_a_secret_on_the_line_after_its_key_is_never_shown(before: str | None, after: str | None) -> None:
    action = "create" if before is None else "delete" if after is None else "update"
    change = FileChange(
        "/etc/docker/daemon.json",
        action,
        None if before is None else before.encode(),
        None if after is None else after.encode(),
    )
    diff = change.diff()
    assert diff, "the change shows as a diff"
    assert "SPLUNKTOK" not in diff and "NEWTOK" not in diff, diff
    assert '"splunk-url": "https://splunk"' in diff or "splunk-token" not in diff, diff


def test_a_changed_secret_still_shows_as_a_changed_line() -> None:
    after = _TOKEN_ON_NEXT_LINE.replace("SPLUNKTOK", "NEWTOK")
    diff = FileChange(
        "/etc/docker/daemon.json", "update", _TOKEN_ON_NEXT_LINE.encode(), after.encode()
    ).diff()
    assert '-      "***",\n+      "***",\n' in diff, diff


# daemon.json text without secrets: JSON-ish lines, some repeated, some without a final newline.
_PLAIN_LINES = st.lists(
    st.sampled_from(["{\n", "}\n", '  "debug": true,\n', '  "a": [1],\n', "\n", "x"]), max_size=12
)


@given(before=_PLAIN_LINES, after=_PLAIN_LINES)
def test_a_diff_without_secrets_is_difflibs_unified_diff(before: list[str], after: list[str]) -> None:
    old, new = "".join(before), "".join(after)
    change = FileChange("/etc/docker/daemon.json", "update", old.encode(), new.encode())
    expected = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile="/etc/docker/daemon.json",
        tofile="/etc/docker/daemon.json",
    )
    assert change.diff() == "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in expected
    )


@pytest.mark.parametrize(
    ("trailing", "secret", "shown"),
    [
        (b'{"api_token": "SNIPTOK_7abc"}', "SNIPTOK", '"{\\"api_token\\": \\"***\\"}"'),
        (b'{"proxy": "http://u:PW@proxy:3128"}', "PW", '"{\\"proxy\\": \\"http://***@pr..."'),
        (b'{"api_token":\n  "SNIPTOK_7abc"}', "SNIPTOK", '"{\\"api_token\\":\\n  \\"***\\"}"'),
        (b'"splunk-token": "SNIPTOK_7abc', "SNIPTOK", '"\\"splunk-token\\": \\"***"'),
    ],
)
def test_the_trailing_data_warning_quotes_no_secret(trailing: bytes, secret: str, shown: str) -> None:
    raw = b'{"debug": true}\n' + trailing + b"\n"
    facts = DockerFacts(daemon_json=raw, engine_version="20.10.24", has_validate=False)
    (warning,) = _trailing_data_ignored("/etc/docker/daemon.json", raw, facts)
    assert secret not in warning, warning
    assert (
        f"/etc/docker/daemon.json has {shown} after the end of its JSON document (line 2, column 1)"
        in warning
    )


@pytest.mark.parametrize("key", ["regionendpoint", "redirectendpoint"])
def test_show_source_and_the_host_copy_hold_no_query_secret(tmp_path: Path, key: str) -> None:
    source = tmp_path / "config.yml"
    source.write_text(
        "version: 0.1\nhttp: {host: https://registry.test}\n"
        f"storage: {{s3: {{bucket: b, {key}: 'https://s3.example.com:9000/?X-Amz-Security-Token=STSTOK&x-id=1#FRAG'}}}}\n"
        "middleware:\n  storage:\n    - name: redirect\n"
        "      options: {baseurl: 'https://cdn.example.com/b?Signature=SIG&Key-Pair-Id=KPID'}\n"
    )
    settings = load_source(str(source))
    shown = json.dumps(settings.redacted())
    host_copy = host_source_document(settings).decode()
    for text in (shown, host_copy):
        assert not any(part in text for part in ("STSTOK", "FRAG", "SIG&", "KPID")), text
        assert "https://s3.example.com:9000/?X-Amz-Security-Token=***&x-id=***#***" in text, text
        assert "https://cdn.example.com/b?Signature=***&Key-Pair-Id=***" in text, text
    # The host's daemon reads its copy into the same settings.
    copy = tmp_path / "copy.yml"
    copy.write_text(host_copy)
    assert replace(load_source(str(copy)), origin=settings.origin) == settings


def test_a_bad_endpoint_is_named_without_its_query_secret(tmp_path: Path) -> None:
    source = tmp_path / "config.yml"
    source.write_text(
        "version: 0.1\nstorage: {s3: {bucket: b, regionendpoint: 'ftp://s3.example.com/?token=STSTOK'}}\n"
    )
    with pytest.raises(SourceError) as info:
        load_source(str(source))
    assert "'ftp://s3.example.com/?token=***': not an http(s) URL" in str(info.value)
    assert "STSTOK" not in str(info.value)


def test_docker_23s_refusal_of_trailing_data_quotes_no_secret() -> None:
    """The refusal a 26.1 host gets for data after daemon.json's document names it, secrets hidden."""
    raw = b'{"debug": true}\n{"api_token": "SNIPTOK_7", "proxy": "http://u:PW_7@proxy"}\n'
    trailing = trailing_data(raw)
    assert trailing is not None
    said = trailing_data_refused(trailing)
    assert "SNIPTOK_7" not in said and "***" in said, said


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ('  "auths": {"r": {"auth": "dXNlcjpBVVRIMTU="}},\n', "dXNlcjpBVVRIMTU="),  # docker's own logins
        ('  "pass": "PASS17",\n', "PASS17"),
        ('  "x-key": "KEY18",\n', "KEY18"),
        ('  "tokens": ["ARR16", "ARR17"],\n', "ARR16"),  # a list of them
        ('  "token": 12345678901,\n', "12345678901"),  # a number
    ],
    ids=["auth", "pass", "key", "list", "number"],
)
def test_every_secret_named_value_is_hidden_whatever_its_name_or_shape(line: str, secret: str) -> None:
    """The names the source reader hides (secret, pass, token, key, credential, auth) and a value that is
    no string: shown in clear in diffs and in the trailing-data warning."""
    change = FileChange("/etc/docker/daemon.json", "update", b"{\n" + line.encode() + b"}\n", b"{\n}\n")
    assert secret not in change.diff() and "***" in change.diff(), change.diff()
    raw = b'{"debug": true}\n{' + line.strip().rstrip(",").encode() + b"}\n"
    facts = DockerFacts(daemon_json=raw, engine_version="20.10.24", has_validate=False)
    (warning,) = _trailing_data_ignored("/etc/docker/daemon.json", raw, facts)
    assert secret[:8] not in warning, warning


# Secret values for the properties below: letters that no name, key or diff header holds, at both
# ends, so that any part of one in the output is found; between them anything JSON can hold.
_MARKS = "QVZ"
_SECRET_ENDS = st.text(_MARKS, min_size=2, max_size=6)
_SECRET_NAMES = st.builds(
    "".join,
    st.tuples(
        st.sampled_from(["", "api-", "splunk-", "x_", "auth-"]),
        st.sampled_from(["token", "pass", "secret", "private", "credential", "auth", "key"]),
        st.sampled_from(["", "s", "-file", "word", "_id"]),
    ),
)


def _secrets(middle: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda a, m, b: a + m + b, _SECRET_ENDS, middle, _SECRET_ENDS)


_JSON_SECRETS = _secrets(st.text(st.characters(exclude_categories=["Cs"]), max_size=8))


def _holds_no_mark(shown: str) -> bool:
    return not any(mark in shown for mark in _MARKS)


def _multiline_list(name: str, values: list[str], indent: str, value_on_next_line: bool) -> str:
    """A daemon.json whose secret-named key holds a list written over several lines."""
    items = f",\n{indent * 2}".join(json.dumps(v, ensure_ascii=False) for v in values)
    opening = f"\n{indent}[" if value_on_next_line else "["
    return (
        f'{{\n{indent}"debug": true,\n{indent}"{name}": {opening}\n{indent * 2}{items}\n{indent}],\n'
        f'{indent}"log-level": "info"\n}}\n'
    )


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            '{\n  "auth-tokens": [\n    "ABCTOK",\n    "DEFTOK"\n  ],\n  "debug": true\n}\n',
            '+  "auth-tokens": ***\n+***\n+***\n+***,\n+  "debug": true\n',
        ),
        (
            '{\n  "auth-tokens": [\n    12345678,\n    "DEFTOK"\n  ],\n  "debug": true\n}\n',
            '+  "auth-tokens": ***\n+***\n+***\n+***,\n+  "debug": true\n',
        ),
        (  # nested, a ']' inside a string
            '{\n  "tokens": [["ABCTOK"],\n    ["DEF]TOK"]],\n  "debug": true\n}\n',
            '+  "tokens": ***\n+***,\n+  "debug": true\n',
        ),
        (
            '{\n  "tokens":\n  [\n    "ABCTOK", "DEFTOK"\n  ],\n  "debug": true\n}\n',
            '+  "tokens":\n+  ***\n+***\n+***,\n+  "debug": true\n',
        ),
    ],
    ids=["strings", "number", "nested", "value-on-next-line"],
)
def test_a_secret_list_written_over_several_lines_is_hidden_whole(text: str, shown: str) -> None:
    diff = FileChange("/etc/docker/daemon.json", "create", None, text.encode()).diff()
    assert not any(secret in diff for secret in ("ABCTOK", "DEFTOK", "DEF]", "12345678")), diff
    assert shown in diff, diff


@given(
    name=_SECRET_NAMES,
    values=st.lists(_JSON_SECRETS, min_size=1, max_size=4),
    indent=st.sampled_from(["  ", "    ", "\t"]),
    value_on_next_line=st.booleans(),
)
@example(name="auth-tokens", values=["QQabcQQ", "QQdefQQ"], indent="  ", value_on_next_line=False)
@example(name="tokens", values=['QQ"],[{QQ', "QQ\\QQ"], indent="  ", value_on_next_line=False)
def test_no_part_of_a_list_of_secrets_is_shown_however_it_is_written(
    name: str, values: list[str], indent: str, value_on_next_line: bool
) -> None:
    text = _multiline_list(name, values, indent, value_on_next_line)
    shown = redacted_lines(text)
    assert _holds_no_mark("".join(shown)), shown
    # The lines around the list, which hold no secret, as they are.
    written = text.splitlines(keepends=True)
    for at in (0, 1, len(written) - 2, len(written) - 1):
        assert shown[at] == written[at]
    diff = FileChange("/etc/docker/daemon.json", "update", text.encode(), b"{}\n").diff()
    assert _holds_no_mark(diff), diff


# What follows daemon.json's JSON document, which Docker 20.10 ignores, in the shapes it is found in.
_TRAILING_SHAPES = {
    "single-quoted": "'{name}': '{secret}'",
    "single-quoted-list": "'{name}': [\n  '{secret}',\n  '{secret}'\n]",
    "bare-colon": "{name}: {secret}",
    "bare-equals": "{name}={secret}",
    "yaml-block": "{name}: |\n  {secret}\n  {secret}",
    "value-on-next-line": "{name}:\n  {secret}",
    "json-object": '{{"{name}": {json_secret}}}',
    "json-object-list": '{{"{name}": [\n  {json_secret},\n  {json_secret}\n]}}',
    "json-key-unquoted-value": "{{\"{name}\": '{secret}'}}",
}
# What a non-JSON value may hold: no quote it could be closed by, no line end, no backslash.
_TEXT_SECRETS = _secrets(
    st.text(
        st.characters(exclude_categories=["Cs", "Cc", "Zl", "Zp"], exclude_characters="'\"\\"), max_size=8
    )
)


def _trailing_shape(shape: str, name: str, secret: str) -> str:
    return _TRAILING_SHAPES[shape].format(
        name=name, secret=secret, json_secret=json.dumps(secret, ensure_ascii=False)
    )


@pytest.mark.parametrize(
    ("trailing", "shown"),
    [
        ("'token': 'TRAILTOK'", "\"'token': ***\""),
        ('{"password": "TRAILPW"}', '"{\\"password\\": \\"***\\"}"'),
        ("token=TRAILTOK", '"token=***"'),
        ("export API_TOKEN=TRAILTOK", '"export API_TOKEN=***"'),
        ("'debug': 'x'\n'token':\n  'TRAILTOK'", "\"'debug': 'x'\\n'token':\\n  ***\""),
    ],
)
def test_the_trailing_data_excerpt_hides_a_secret_that_is_not_json(trailing: str, shown: str) -> None:
    raw = b'{"debug": true}\n' + trailing.encode() + b"\n"
    found = trailing_data(raw)
    assert found is not None
    assert found.excerpt(limit=200) == shown


@given(
    shape=st.sampled_from(sorted(_TRAILING_SHAPES)),
    name=_SECRET_NAMES,
    secret=_TEXT_SECRETS,
    separator=st.sampled_from(["\n", " ", "\n\n  "]),
)
@example(shape="single-quoted", name="token", secret="QQxQQ", separator="\n")
@example(shape="json-object", name="password", secret="QQyQQ", separator=" ")
def test_no_part_of_a_secret_after_the_document_is_ever_shown(
    shape: str, name: str, secret: str, separator: str
) -> None:
    document = '{\n  "debug": true,\n  "insecure-registries": []\n}'
    raw = f"{document}{separator}{_trailing_shape(shape, name, secret)}\n".encode()
    found = trailing_data(raw)
    assert found is not None
    for limit in (24, 10_000):
        assert _holds_no_mark(found.excerpt(limit)), found.excerpt(limit)
    facts = DockerFacts(daemon_json=raw, engine_version="20.10.24", has_validate=False)
    (warning,) = _trailing_data_ignored("/etc/docker/daemon.json", raw, facts)
    assert _holds_no_mark(warning) and _holds_no_mark(trailing_data_refused(found)), warning
    # A plan keeps the data where it is: the diff shows it as context, the document's lines as written.
    after = raw.replace(b"[]", b'["reg.test"]')
    diff = FileChange("/etc/docker/daemon.json", "update", raw, after).diff()
    assert _holds_no_mark(diff), diff
    assert '   "debug": true,\n-  "insecure-registries": []\n+  "insecure-registries": ["reg.test"]\n' in diff
