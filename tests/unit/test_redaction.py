"""Secrets never shown: a daemon.json diff line, and a source's settings as show-source prints them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from agent.errors import SourceError
from agent.runtimes.plan import FileChange, _redacted
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
