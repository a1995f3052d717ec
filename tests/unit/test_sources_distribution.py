"""Distribution config.yml: every key of trust-facts 20, env overrides, one-line errors, no secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agent.errors import InputError, SourceError
from agent.sources.distribution import env_value, parse_distribution
from agent.sources.model import RegistrySettings, S3Storage
from agent.trust import redirect_target

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sources"


def fixture(name: str, env: dict[str, str] | None = None) -> RegistrySettings:
    return parse_distribution((FIXTURES / name).read_text(), name, env)


def error_of(text: str, env: dict[str, str] | None = None, origin: str = "config.yml") -> SourceError:
    with pytest.raises(SourceError) as caught:
        parse_distribution(text, origin, env)
    error = caught.value
    assert isinstance(error, InputError) and error.exit_code == 2
    assert "\n" not in str(error)
    return error


# --- the fixtures: realistic documents ----------------------------------------------------------


def test_minio_config() -> None:
    s = fixture("registry-minio.yml")
    assert s.kind == "distribution" and s.origin == "registry-minio.yml" and s.driver == "s3"
    assert s.s3 == S3Storage(
        bucket="registry",
        region="us-east-1",
        regionendpoint="https://minio.storage.example.internal:9000",
        rootdirectory="/v2-blobs",
        secure=True,
        skipverify=False,
        v4auth=True,
        forcepathstyle=True,
        has_credentials=True,
    )
    assert s.http_host == "https://registry.example.internal:5000"
    assert s.http_tls
    assert not s.redirect_disabled and s.redirect_middleware is None
    assert s.env_overrides == ()
    assert redirect_target(s)[:2] == ("https", "minio.storage.example.internal:9000")


def test_cloudfront_middleware() -> None:
    s = fixture("registry-cloudfront.yml")
    assert (s.redirect_middleware, s.redirect_baseurl) == (
        "cloudfront",
        "https://d111111abcdef8.cloudfront.net/",
    )
    assert s.s3 is not None and s.s3.regionendpoint is None and not s.s3.has_credentials
    assert not s.http_tls


def test_redirect_middleware_after_a_disabled_one() -> None:
    s = fixture("registry-redirect-middleware.yml")
    assert (s.redirect_middleware, s.redirect_baseurl) == ("redirect", "https://blobs.example.internal:8443")
    assert s.s3 is not None and s.s3.secure  # the string "true"
    assert redirect_target(s)[1] == "blobs.example.internal:8443"


def test_redirect_disabled() -> None:
    s = fixture("registry-redirect-disabled.yml")
    assert s.redirect_disabled
    assert redirect_target(s)[1] is None


def test_forcepathstyle_false() -> None:
    s = fixture("registry-virtual-host.yml")
    assert s.s3 is not None and s.s3.forcepathstyle is False and s.s3.bucket == "images"
    assert redirect_target(s)[1] == "images.s3.storage.example.internal"


def test_secure_false() -> None:
    s = fixture("registry-insecure-http.yml")
    assert s.s3 is not None and not s.s3.secure
    assert redirect_target(s)[0] == "http"


def test_skipverify_true_and_string_booleans() -> None:
    s = fixture("registry-skipverify.yml")
    assert s.s3 is not None and s.s3.skipverify and not s.s3.v4auth
    assert s.s3.forcepathstyle is None


def test_filesystem_driver() -> None:
    s = fixture("registry-filesystem.yml")
    assert s.driver == "filesystem" and s.s3 is None
    assert s.http_host is None


def test_redirectendpoint_and_a_bare_driver_name() -> None:
    s = parse_distribution(
        "version: 0.1\nstorage:\n  s3:\n    redirectendpoint: https://cdn.example:443\n    bucket: b\n",
        "c.yml",
    )
    assert s.s3 is not None and s.s3.redirectendpoint == "https://cdn.example:443"
    bare = parse_distribution("version: 0.1\nstorage: inmemory\n", "c.yml")
    assert bare.driver == "inmemory" and bare.s3 is None


def test_kind_can_be_dtr() -> None:
    assert parse_distribution("storage: {s3: {}}", "x", kind="dtr").kind == "dtr"


# --- environment overrides ---------------------------------------------------------------------


def test_environment_overrides_the_file() -> None:
    env = {
        "REGISTRY_STORAGE_S3_REGIONENDPOINT": "https://other.example:9443",
        "REGISTRY_STORAGE_S3_SECURE": "false",
        "REGISTRY_STORAGE_S3_SKIPVERIFY": "true",
        "REGISTRY_STORAGE_S3_FORCEPATHSTYLE": "false",
        "REGISTRY_STORAGE_S3_BUCKET": "env-bucket",
        "REGISTRY_STORAGE_S3_REGION": "eu-central-1",
        "REGISTRY_STORAGE_S3_REDIRECTENDPOINT": "https://cdn.example",
        "REGISTRY_STORAGE_REDIRECT_DISABLE": "true",
        "REGISTRY_HTTP_HOST": "https://env-registry.example",
        "HOME": "/root",  # unrelated variables are ignored
    }
    s = fixture("registry-minio.yml", env)
    assert s.s3 == S3Storage(
        bucket="env-bucket",
        region="eu-central-1",
        regionendpoint="https://other.example:9443",
        redirectendpoint="https://cdn.example",
        rootdirectory="/v2-blobs",
        secure=False,
        skipverify=True,
        v4auth=True,
        forcepathstyle=False,
        has_credentials=True,
    )
    assert s.redirect_disabled
    assert s.http_host == "https://env-registry.example"
    assert set(s.env_overrides) == set(env) - {"HOME"}


def test_env_is_ignored_when_not_given() -> None:
    assert fixture("registry-minio.yml") == fixture("registry-minio.yml", {})


def test_registry_storage_replaces_the_driver() -> None:
    s = fixture("registry-filesystem.yml", {"REGISTRY_STORAGE": "s3", "REGISTRY_STORAGE_S3_BUCKET": "b"})
    assert s.driver == "s3" and s.s3 is not None and s.s3.bucket == "b"
    assert s.s3.rootdirectory is None  # filesystem's rootdirectory does not leak into s3
    assert s.env_overrides == ("REGISTRY_STORAGE", "REGISTRY_STORAGE_S3_BUCKET")
    fs = fixture("registry-minio.yml", {"REGISTRY_STORAGE": "filesystem"})
    assert fs.driver == "filesystem" and fs.s3 is None


def test_credentials_from_the_environment_count() -> None:
    s = fixture("registry-filesystem.yml", {"REGISTRY_STORAGE": "s3", "REGISTRY_STORAGE_S3_ACCESSKEY": "AK"})
    assert s.s3 is not None and s.s3.has_credentials


def test_a_bad_environment_value_names_the_variable() -> None:
    error = error_of((FIXTURES / "registry-minio.yml").read_text(), {"REGISTRY_STORAGE_S3_SECURE": "maybe"})
    assert str(error) == "environment: REGISTRY_STORAGE_S3_SECURE: must be true or false, got 'maybe'"


# --- errors: one line, key and line --------------------------------------------------------------


def test_syntax_error_names_the_line() -> None:
    text = "version: 0.1\nstorage:\n  s3:\n    bucket: [unclosed\n    region: x\nhttp: {}\n"
    error = error_of(text)
    assert str(error).startswith("config.yml:")
    assert "not valid YAML" in str(error)
    line = int(str(error).split(":")[1])
    assert 4 <= line <= 6


def test_tabs_are_a_syntax_error_with_a_line() -> None:
    assert str(error_of("version: 0.1\nstorage:\n\ts3: {}\n")).startswith("config.yml:3: not valid YAML")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    secure: maybe\n",
            "config.yml:5: storage.s3.secure: must be true or false, got 'maybe'",
        ),
        ("version: 0.1\nstorage: [s3]\n", "config.yml:2: storage: must be a mapping, got a list"),
        ("version: 0.1\nstorage:\n  s3: [1]\n", "config.yml:3: storage.s3: must be a mapping, got a list"),
        (
            "version: 0.1\nstorage:\n  s3: {}\n  filesystem: {}\n",
            "config.yml:2: storage: more than one storage driver: filesystem, s3",
        ),
        (
            "version: 0.1\nlog: {}\n",
            "config.yml: storage: no storage driver configured (expected e.g. s3 or filesystem)",
        ),
        (
            "version: 0.1\nstorage: {s3: {}}\nhttp:\n  host:\n    - a\n",
            "config.yml:4: http.host: must be a string, got a list",
        ),
        (
            "version: 0.1\nstorage: {s3: {}}\nmiddleware:\n  storage:\n    - name: cloudfront\n      options: {}\n",
            "config.yml:6: middleware.storage.0.options.baseurl: the cloudfront middleware needs a baseurl",
        ),
        (
            "version: 0.1\nstorage: {s3: {}}\nmiddleware:\n  storage: {name: redirect}\n",
            "config.yml:4: middleware.storage: must be a list, got a mapping",
        ),
        (
            "version: 0.1\nstorage:\n  s3: {}\n  redirect:\n    disable: 3\n",
            "config.yml:5: storage.redirect.disable: must be true or false, got 3",
        ),
        (
            "version: 0.1\nstorage:\n  s3:\n    secure: 2020-01-01\n",
            "config.yml:4: storage.s3.secure: must be true or false, got the date 2020-01-01",
        ),
        (
            "version: 0.1\nstorage:\n  s3:\n    bucket: !!binary aGVsbG8=\n",
            "config.yml:4: storage.s3.bucket: must be a string, got 5 bytes of !!binary",
        ),
        ("- just\n- a list\n", "config.yml: must be a mapping, got a list"),
        ("", "config.yml: empty document: expected a distribution configuration"),
    ],
)
def test_bad_values_name_key_and_line(text: str, expected: str) -> None:
    assert str(error_of(text)) == expected


def test_long_bad_values_are_shortened() -> None:
    error = error_of("version: 0.1\nstorage:\n  s3:\n    secure: " + "x" * 500 + "\n")
    assert len(str(error)) < 120


def test_several_documents_are_refused() -> None:
    assert "not valid YAML" in str(error_of("version: 0.1\n---\nversion: 0.1\n"))


def test_unsafe_tags_are_refused() -> None:
    assert "not valid YAML" in str(error_of("version: !!python/object:os.system {}\n"))


@pytest.mark.parametrize("tag", ["!!int", "!!float", "!!bool", "!!timestamp"])
def test_a_value_that_does_not_fit_its_tag_is_named_by_line_and_tag_never_quoted(tag: str) -> None:
    """PyYAML's own error quotes the value (a secret, here): it crashed the CLI with a traceback."""
    text = f"version: 0.1\nstorage:\n  s3:\n    secretkey: {tag} S3CR3T_pw-x\n    bucket: b\n"
    error = error_of(text)
    assert str(error) == f"config.yml:4: not valid YAML: the value here is tagged {tag} but is not one"


# --- secrets ------------------------------------------------------------------------------------

SECRET_FIXTURES = {
    "registry-minio.yml": ["minio-secret-key-fixture-do-not-leak", "minio-access-key-fixture"],
    "registry-virtual-host.yml": ["virtual-host-secret-do-not-leak", "AKIAVIRTUALHOSTFIXTURE"],
}


@pytest.mark.parametrize(("name", "secrets"), SECRET_FIXTURES.items())
def test_fixture_secrets_are_not_kept(name: str, secrets: list[str]) -> None:
    s = fixture(name)
    for secret in [*secrets, "registry-http-secret-do-not-leak"]:
        assert secret not in repr(s) and secret not in str(s.redacted())


_SECRET = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=12, max_size=40
)


def _views(s: RegistrySettings) -> str:
    return repr(s) + str(s.redacted())


@settings(max_examples=60, deadline=None)
@given(access=_SECRET, secret=_SECRET)
def test_secrets_never_appear_in_settings(access: str, secret: str) -> None:
    def from_file(a: str, b: str) -> RegistrySettings:
        doc = {"version": 0.1, "storage": {"s3": {"accesskey": a, "secretkey": b, "bucket": "b"}}}
        return parse_distribution(yaml.safe_dump(doc), "config.yml")

    def from_env(a: str, b: str) -> RegistrySettings:
        env = {"REGISTRY_STORAGE_S3_ACCESSKEY": a, "REGISTRY_STORAGE_S3_SECRETKEY": b}
        return parse_distribution("version: 0.1\nstorage: {s3: {}}\n", "config.yml", env)

    for parse in (from_file, from_env):
        # A secret that happens to spell a field name would be "found" without being leaked.
        baseline = _views(parse("A", "B"))
        assume(access not in baseline and secret not in baseline)
        s = parse(access, secret)
        assert s.s3 is not None and s.s3.has_credentials
        assert _views(s) == baseline  # nothing of the values is kept, not even their length


@settings(max_examples=60, deadline=None)
@given(secret=_SECRET)
def test_secrets_never_appear_in_errors(secret: str) -> None:
    def error(value: str) -> str:
        doc = {"version": 0.1, "storage": {"s3": {"secretkey": value, "accesskey": value, "secure": "maybe"}}}
        return str(error_of(yaml.safe_dump(doc)))

    baseline = error("B")
    assume(secret not in baseline)
    assert secret not in error(secret)


# --- properties ---------------------------------------------------------------------------------

_KEYS = st.sampled_from(
    [
        "version", "storage", "s3", "filesystem", "redirect", "disable", "cache", "delete", "middleware",
        "name", "options", "baseurl", "cloudfront", "http", "host", "tls", "secure", "skipverify",
        "forcepathstyle", "regionendpoint", "bucket", "accesskey", "v4auth", "disabled",
    ]
)  # fmt: skip
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12),
    st.sampled_from(["true", "false", "maybe", "redirect", "cloudfront", "https://x.example:1"]),
)  # fmt: skip
_TREES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(_KEYS, children, max_size=5)),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_KEYS, _TREES, max_size=6))
def test_arbitrary_yaml_gives_settings_or_a_source_error(doc: dict[str, Any]) -> None:
    try:
        result = parse_distribution(yaml.safe_dump(doc), "fuzz.yml")
    except SourceError as error:
        assert "\n" not in str(error)
        assert str(error).startswith("fuzz.yml")
    else:
        assert isinstance(result, RegistrySettings)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_gives_settings_or_a_source_error(text: str) -> None:
    try:
        parse_distribution(text, "fuzz.yml")
    except SourceError as error:
        assert "\n" not in str(error)


_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
# A host name's label: no leading or trailing '-'.
_LABEL = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?\Z")


# Words yaml.v2 reads as text (not `y`, `no`, `0x1f`...: those are below).
_TEXT_WORD = _WORD.filter(lambda word: isinstance(env_value("V", word), str))


@settings(max_examples=100, deadline=None)
@given(
    file_bucket=_TEXT_WORD,
    env_bucket=_TEXT_WORD,
    file_endpoint=_LABEL,
    env_endpoint=_LABEL,
    file_flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    env_flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
)
def test_environment_always_wins(
    file_bucket: str,
    env_bucket: str,
    file_endpoint: str,
    env_endpoint: str,
    file_flags: tuple[bool, bool, bool],
    env_flags: tuple[bool, bool, bool],
) -> None:
    keys = ("secure", "skipverify", "forcepathstyle")
    s3: dict[str, object] = {"bucket": file_bucket, "regionendpoint": f"https://{file_endpoint}"}
    s3.update(zip(keys, file_flags, strict=True))
    doc = {"version": 0.1, "storage": {"s3": s3, "redirect": {"disable": file_flags[0]}}}
    env = {
        "REGISTRY_STORAGE_S3_BUCKET": env_bucket,
        "REGISTRY_STORAGE_S3_REGIONENDPOINT": f"https://{env_endpoint}",
        "REGISTRY_STORAGE_REDIRECT_DISABLE": str(env_flags[0]).lower(),
    }
    env.update(
        {f"REGISTRY_STORAGE_S3_{k.upper()}": str(v).lower() for k, v in zip(keys, env_flags, strict=True)}
    )
    s = parse_distribution(yaml.safe_dump(doc), "config.yml", env)
    assert s.s3 is not None
    assert (s.s3.bucket, s.s3.regionendpoint) == (env_bucket, f"https://{env_endpoint}")
    assert (s.s3.secure, s.s3.skipverify, s.s3.forcepathstyle) == env_flags
    assert s.redirect_disabled == env_flags[0]
    assert set(s.env_overrides) == set(env)


# --- URLs: checked where they are written, credentials in them dropped ----------------------------

_CREDENTIALED = """version: 0.1
http:
  host: https://admin:PASSWORD1@reg.example.com
storage:
  s3:
    regionendpoint: https://key:PASSWORD2@s3.example.com:9000
    redirectendpoint: https://key:PASSWORD3@cdn.example.com
middleware:
  storage:
    - name: cloudfront
      options: {baseurl: "https://u:PASSWORD4@d111.cloudfront.net/"}
"""


def test_credentials_in_urls_are_dropped_when_read() -> None:
    parsed = parse_distribution(_CREDENTIALED, "config.yml")
    assert "PASSWORD" not in repr(parsed.redacted()) and "PASSWORD" not in repr(parsed)
    assert parsed.http_host == "https://reg.example.com"
    assert parsed.s3 is not None and parsed.s3.regionendpoint == "https://s3.example.com:9000"
    assert parsed.redirect_baseurl == "https://d111.cloudfront.net/"


@pytest.mark.parametrize(
    ("endpoint", "kept"),
    [
        (
            "https://s3.example.com:9000/?X-Amz-Credential=a@b&X-Amz-Date=1",
            "https://s3.example.com:9000/?X-Amz-Credential=***&X-Amz-Date=***",
        ),
        ("https://s3.example.com:9000?x=1@2&y=3", "https://s3.example.com:9000?x=***&y=***"),
        (
            "https://AK:PASSWORD@s3.example.com:9000/b?x=1@2&y=3#k",
            "https://s3.example.com:9000/b?x=***&y=***#***",
        ),
    ],
)
def test_an_at_sign_in_an_endpoints_query_value_is_no_userinfo(endpoint: str, kept: str) -> None:
    """RFC 3986 ends the authority at the first '/', '?' or '#': where what follows the '@' cannot be a
    host[:port], the address is read, its query's values hidden, as for any query."""
    text = f"version: 0.1\nhttp: {{host: https://reg.example.com}}\nstorage:\n  s3:\n    regionendpoint: '{endpoint}'\n"
    parsed = parse_distribution(text, "config.yml")
    assert parsed.s3 is not None and parsed.s3.regionendpoint == kept


def test_a_password_holding_a_query_pair_and_an_at_sign_is_refused_unshown() -> None:
    """``AK:1234?a=b@s3.example.com:9000`` reads as a query ``a=b@s3.example.com:9000`` too: neither the
    password nor a storage endpoint ``AK:1234`` is taken from it."""
    text = "version: 0.1\nstorage:\n  s3:\n    regionendpoint: 'http://AK:1234?a=b@s3.example.com:9000'\n"
    said = str(error_of(text))
    assert said.startswith(
        "config.yml:4: storage.s3.regionendpoint: storage endpoint 'http://...@s3.example.com:9000': "
        "a user:password@ with '/', '?' or '#' in it"
    )
    assert "1234" not in said


# Values whose every '@' is followed by a character no host name holds.
_AT_QUERY_VALUES = st.lists(
    st.sampled_from(["a", "c", "0", "9", ":", "/", ".", "-", "_", "@_", "@=", "@:"]), min_size=1, max_size=8
).map("".join)


@given(
    port=st.integers(min_value=1, max_value=65535),
    values=st.lists(_AT_QUERY_VALUES, min_size=1, max_size=3),
)
def test_query_values_holding_at_signs_never_stop_the_read_nor_show(port: int, values: list[str]) -> None:
    query = "&".join(f"k{i}={value}@_x" for i, value in enumerate(values))
    text = f"version: 0.1\nstorage:\n  s3:\n    regionendpoint: 'https://s3.example.com:{port}/b?{query}'\n"
    parsed = parse_distribution(text, "config.yml")
    hidden = "&".join(f"k{i}=***" for i in range(len(values)))
    assert parsed.s3 is not None and parsed.s3.regionendpoint == f"https://s3.example.com:{port}/b?{hidden}"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "    regionendpoint: https://s3.example.com:99999",
            "config.yml:5: storage.s3.regionendpoint: storage endpoint 's3.example.com:99999': port must be",
        ),
        (
            "    regionendpoint: ftp://k:PASSWORD@s3.example.com",
            "config.yml:5: storage.s3.regionendpoint: storage endpoint 'ftp://s3.example.com': not an http(s)",
        ),
        (
            "    redirectendpoint: 'https://[::1'",
            "config.yml:5: storage.s3.redirectendpoint: storage endpoint 'https://[::1': not a valid URL",
        ),
    ],
)
def test_a_bad_endpoint_is_named_by_its_key_and_line(line: str, expected: str) -> None:
    text = f"version: 0.1\nhttp: {{host: https://reg.example.com}}\nstorage:\n  s3:\n{line}\n"
    message = str(error_of(text))
    assert message.startswith(expected) and "PASSWORD" not in message


def test_a_bad_http_host_is_named_by_its_key_and_line() -> None:
    message = str(error_of("version: 0.1\nstorage: {s3: {}}\nhttp:\n  host: 'https://[::1'\n"))
    assert message == "config.yml:4: http.host: registry 'https://[::1': not a valid URL"


def test_a_bad_endpoint_from_the_environment_names_the_variable() -> None:
    text = "version: 0.1\nstorage: {s3: {regionendpoint: https://s3.example.com}}\n"
    message = str(error_of(text, {"REGISTRY_STORAGE_S3_REGIONENDPOINT": "https://x:0"}))
    assert message == (
        "environment: REGISTRY_STORAGE_S3_REGIONENDPOINT: storage endpoint 'x:0': port must be 1-65535"
    )


def test_a_key_given_twice_is_the_last_one_and_errors_name_its_line() -> None:
    # distribution (Go's yaml.v2, not strict) and PyYAML both take the last: so does the error's line.
    text = "version: 0.1\nstorage:\n  s3:\n    secure: true\n    bucket: b\n    secure: maybe\n"
    assert str(error_of(text)).startswith("config.yml:6: storage.s3.secure: must be true or false")


def test_a_key_set_over_a_merged_mapping_is_named_at_its_own_line() -> None:
    text = (
        "defaults: &d {secure: true, bucket: b}\nversion: 0.1\nstorage:\n  s3:\n    <<: *d\n"
        "    secure: maybe\n"
    )
    assert str(error_of(text)).startswith("config.yml:6: storage.s3.secure: must be true or false")


@pytest.mark.parametrize("secret", ["*s3cr3tpass", "!s3cr3tpass"])
def test_a_syntax_error_on_a_secrets_line_does_not_quote_it(secret: str) -> None:
    text = f"version: 0.1\nstorage:\n  s3:\n    accesskey: AKIA\n    secretkey: {secret}\n"
    message = str(error_of(text))
    assert message.startswith("config.yml:5: not valid YAML: ") and "s3cr3tpass" not in message


def test_a_syntax_error_elsewhere_still_names_the_token() -> None:
    text = "version: 0.1\nstorage:\n  s3:\n    regionendpoint: !vault abc\n"
    assert "'!vault'" in str(error_of(text))


# --- booleans and values as distribution reads them: yaml.v2, then strconv.ParseBool ------------------

# yaml.v2's plain booleans (resolve.go): PyYAML's YAML 1.1 set plus y/Y/n/N.
GO_YAML_TRUE = ["y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"]
GO_YAML_FALSE = ["n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"]
# Strings yaml.v2 leaves as strings, which the S3 driver's strconv.ParseBool accepts.
PARSEBOOL_TRUE = ["t", "T", "'1'", '"true"', "'TRUE'"]
PARSEBOOL_FALSE = ["f", "F", "'0'", '"false"']


def _flags(text: str = "", env: dict[str, str] | None = None) -> tuple[bool, bool]:
    s = parse_distribution(f"version: 0.1\nstorage:\n  s3:\n    bucket: b\n{text}", "config.yml", env)
    assert s.s3 is not None
    return s.s3.secure, s.s3.skipverify


@pytest.mark.parametrize("word", GO_YAML_TRUE + PARSEBOOL_TRUE)
def test_true_in_the_environment_and_the_file(word: str) -> None:
    assert _flags(env={"REGISTRY_STORAGE_S3_SKIPVERIFY": word}) == (True, True)
    assert _flags(f"    skipverify: {word}\n") == (True, True)


@pytest.mark.parametrize("word", GO_YAML_FALSE + PARSEBOOL_FALSE)
def test_false_in_the_environment_and_the_file(word: str) -> None:
    assert _flags(env={"REGISTRY_STORAGE_S3_SECURE": word}) == (False, False)
    assert _flags(f"    secure: {word}\n") == (False, False)


@pytest.mark.parametrize(
    "word",
    # yaml.v2 reads 1 and 0 as integers, a quoted "yes" or "y" as a string ParseBool refuses, and
    # is case-sensitive: the S3 driver refuses every one of them.
    ["1", "0", "'yes'", '"y"', "yEs", "tRUE", "nO", "maybe", "2.0", "[true]"],
)
def test_other_words_are_refused_in_the_environment_and_the_file(word: str) -> None:
    env_error = error_of("version: 0.1\nstorage: {s3: {}}\n", {"REGISTRY_STORAGE_S3_SECURE": word})
    assert str(env_error).startswith("environment: REGISTRY_STORAGE_S3_SECURE: must be true or false, got ")
    file_error = error_of(f"version: 0.1\nstorage:\n  s3:\n    secure: {word}\n")
    assert str(file_error).startswith("config.yml:4: storage.s3.secure: must be true or false, got ")


def test_redirect_disable_and_middleware_disabled_take_y_and_n() -> None:
    text = (
        "version: 0.1\nstorage:\n  s3: {bucket: b}\n  redirect: {disable: n}\nmiddleware:\n  storage:\n"
        "    - {name: cloudfront, disabled: Y, options: {baseurl: 'https://cdn.example'}}\n"
    )
    s = parse_distribution(text, "config.yml")
    assert not s.redirect_disabled and s.redirect_middleware is None
    assert parse_distribution(
        text, "config.yml", {"REGISTRY_STORAGE_REDIRECT_DISABLE": "y"}
    ).redirect_disabled


def test_environment_values_are_yaml_so_quotes_are_not_part_of_them() -> None:
    env = {
        "REGISTRY_STORAGE_S3_REGIONENDPOINT": '"https://s3.example.com:9000/"',
        "REGISTRY_HTTP_HOST": "'https://registry.example.com'",
    }
    s = parse_distribution("version: 0.1\nstorage: {s3: {bucket: b}}\n", "config.yml", env)
    assert s.s3 is not None and s.s3.regionendpoint == "https://s3.example.com:9000/"
    assert s.http_host == "https://registry.example.com"
    assert redirect_target(s)[:2] == ("https", "s3.example.com:9000")


def test_an_environment_value_that_is_no_yaml_is_named() -> None:
    error = error_of(
        "version: 0.1\nstorage: {s3: {}}\n", {"REGISTRY_STORAGE_S3_REGIONENDPOINT": "[fd00::1]:9000"}
    )
    assert str(error) == (
        "environment: REGISTRY_STORAGE_S3_REGIONENDPOINT: not valid YAML, and distribution reads every "
        "REGISTRY_* value as YAML"
    )


def test_registry_storage_replaces_the_whole_section_redirect_included() -> None:
    # distribution unmarshals REGISTRY_STORAGE into the Storage field: the file's section is gone.
    s = fixture(
        "registry-redirect-disabled.yml", {"REGISTRY_STORAGE": "s3", "REGISTRY_STORAGE_S3_BUCKET": "b"}
    )
    assert not s.redirect_disabled
    assert s.s3 is not None and s.s3.regionendpoint is None and s.s3.region is None
    assert redirect_target(s)[1] == "s3.us-east-1.amazonaws.com"
    again = fixture(
        "registry-redirect-disabled.yml",
        {"REGISTRY_STORAGE": "s3", "REGISTRY_STORAGE_REDIRECT_DISABLE": "true"},
    )
    assert again.redirect_disabled


def test_registry_storage_may_be_a_whole_section_in_yaml() -> None:
    env = {
        "REGISTRY_STORAGE": "{s3: {bucket: b, regionendpoint: 'https://s3.env.example:9443', secure: yes}}"
    }
    s = fixture("registry-filesystem.yml", env)
    assert s.driver == "s3" and s.s3 is not None
    assert (s.s3.regionendpoint, s.s3.secure) == ("https://s3.env.example:9443", True)
    bad = error_of("version: 0.1\nstorage: {s3: {}}\n", {"REGISTRY_STORAGE": "{s3: {secure: maybe}}"})
    assert str(bad) == "environment: REGISTRY_STORAGE.s3.secure: must be true or false, got 'maybe'"


@pytest.mark.parametrize(
    ("given", "bucket"), [("yes", "true"), ("n", "false"), ("0", "0"), ("0x1f", "31"), ("'0x1f'", "0x1f")]
)
def test_a_bucket_yaml_reads_as_no_text_is_named_as_the_s3_driver_prints_it(given: str, bucket: str) -> None:
    """yaml.v2 gives `yes` the bool true, which the driver turns into text with fmt.Sprint: "true". Such
    a bucket was refused ("must be a string, got True")."""
    for text, env in (
        (f"storage:\n  s3:\n    bucket: {given}\n", None),
        ("storage: s3\n", {"REGISTRY_STORAGE_S3_BUCKET": given}),
    ):
        s = parse_distribution(text, "config.yml", env)
        assert s.s3 is not None and s.s3.bucket == bucket


_S3 = (
    "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    region: r\n    regionendpoint: https://s3.test:9000\n"
)


@pytest.mark.parametrize(
    ("config", "env", "expected"),
    [
        # An entry made by the environment alone (index 0 of an empty list is appended).
        (
            _S3,
            {
                "REGISTRY_MIDDLEWARE_STORAGE_0_NAME": "redirect",
                "REGISTRY_MIDDLEWARE_STORAGE_0_OPTIONS_BASEURL": "https://blobs.test:8443",
            },
            ("redirect", "https://blobs.test:8443"),
        ),
        # The file's entry, its baseurl replaced.
        (
            _S3
            + "middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: https://old.test\n",
            {"REGISTRY_MIDDLEWARE_STORAGE_0_OPTIONS_BASEURL": "https://new.test"},
            ("redirect", "https://new.test"),
        ),
        # The file's entry disabled by the environment: engines go to S3 itself.
        (
            _S3
            + "middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: https://old.test\n",
            {"REGISTRY_MIDDLEWARE_STORAGE_0_DISABLED": "true"},
            (None, None),
        ),
        # The whole list as YAML.
        (
            _S3,
            {"REGISTRY_MIDDLEWARE_STORAGE": "[{name: cloudfront, options: {baseurl: 'https://cdn.test/'}}]"},
            ("cloudfront", "https://cdn.test/"),
        ),
    ],
)
def test_middleware_overrides_in_the_environment_move_the_redirect(
    config: str, env: dict[str, str], expected: tuple[str | None, str | None]
) -> None:
    """REGISTRY_MIDDLEWARE_STORAGE_* set where the registry sends engines for blobs, and were not read:
    the storage endpoint's CA was planned for a redirect that went elsewhere."""
    s = parse_distribution(config, "config.yml", env)
    assert (s.redirect_middleware, s.redirect_baseurl) == expected
    assert set(env) <= set(s.env_overrides)


def test_a_middleware_index_the_registry_refuses_is_refused() -> None:
    with pytest.raises(
        SourceError, match=r"REGISTRY_MIDDLEWARE_STORAGE_1_NAME: index 1 is not in middleware\.storage"
    ):
        parse_distribution(_S3, "config.yml", {"REGISTRY_MIDDLEWARE_STORAGE_1_NAME": "redirect"})


# --- configurations the registry refuses to run are refused, in its words ------------------------

_REDIRECT = "version: 0.1\nstorage:\n  s3: {bucket: b}\n  redirect:\n"


@pytest.mark.parametrize(("given", "fix"), [('"true"', "true"), ("'false'", "false"), ("t", "true")])
def test_redirect_disable_as_a_string_is_refused_as_the_registry_refuses_it(given: str, fix: str) -> None:
    """handlers.NewApp type-switches storage.redirect.disable: a bool, else panic("invalid type for
    redirect config"). A quoted "true" was read as true: a policy for a registry that does not start."""
    error = error_of(f"{_REDIRECT}    disable: {given}\n")
    assert str(error).startswith("config.yml:5: storage.redirect.disable: is the string ")
    assert '"invalid type for redirect config"' in str(error)
    assert str(error).endswith(f"write disable: {fix}, unquoted")
    from_env = error_of(
        "version: 0.1\nstorage: {s3: {bucket: b}}\n", {"REGISTRY_STORAGE_REDIRECT_DISABLE": given}
    )
    assert str(from_env).startswith("environment: REGISTRY_STORAGE_REDIRECT_DISABLE: is the string ")


@pytest.mark.parametrize("section", ["  redirect: {}\n", "  redirect:\n", "  redirect: {other: 1}\n"])
def test_a_redirect_section_without_disable_is_refused(section: str) -> None:
    error = error_of(f"version: 0.1\nstorage:\n  s3: {{bucket: b}}\n{section}")
    assert "storage.redirect.disable: is not set" in str(error)
    assert '"invalid type for redirect config"' in str(error)


@pytest.mark.parametrize("word", GO_YAML_TRUE + GO_YAML_FALSE)
def test_redirect_disable_takes_every_yaml_boolean(word: str) -> None:
    s = parse_distribution(f"{_REDIRECT}    disable: {word}\n", "config.yml")
    assert s.redirect_disabled == (word in GO_YAML_TRUE)


@pytest.mark.parametrize(
    ("baseurl", "said"),
    [
        ("blobs.example.internal", "no scheme specified for redirect baseurl"),
        ("blobs.example.internal:8443", "no host specified for redirect baseurl"),
        ("198.51.100.7:8443", "unable to parse redirect baseurl: 198.51.100.7:8443"),
    ],
)
def test_a_redirect_baseurl_without_a_scheme_is_refused_in_the_registrys_words(
    baseurl: str, said: str
) -> None:
    """The redirect middleware parses baseurl with Go's url.Parse and requires a scheme and a host
    (middleware/redirect: "no scheme specified for redirect baseurl"); it was taken as https."""
    text = f"{_S3}middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: {baseurl}\n"
    error = error_of(text)
    assert str(error) == (
        f"config.yml:11: middleware.storage.0.options.baseurl: {baseurl!r} has no scheme, and the registry "
        f'refuses to start ("{said}"): write https://{baseurl}'
    )


def test_a_cloudfront_baseurl_without_a_scheme_is_https_as_the_middleware_makes_it() -> None:
    """Not refused: the cloudfront middleware itself prefixes https:// (middleware/cloudfront)."""
    text = f"{_S3}middleware:\n  storage:\n    - name: cloudfront\n      options:\n        baseurl: d111.cloudfront.net\n"
    s = parse_distribution(text, "config.yml")
    assert redirect_target(s)[:2] == ("https", "d111.cloudfront.net")


_FILESYSTEM = "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n"


def test_s3_variables_beside_a_filesystem_driver_are_refused_as_the_registry_refuses_them() -> None:
    """distribution's environment parser makes storage.s3 beside the file's filesystem, and
    Storage.Type panics: "multiple storage drivers specified in configuration or environment". The
    variables were ignored: a filesystem registry (no redirect) for one that does not start."""
    error = error_of(
        _FILESYSTEM,
        {"REGISTRY_STORAGE_S3_REGIONENDPOINT": "https://s3.test", "REGISTRY_STORAGE_S3_BUCKET": "b"},
    )
    assert str(error) == (
        "environment: REGISTRY_STORAGE_S3_BUCKET: adds a storage driver beside the filesystem driver "
        '(config.yml:2), and the registry refuses to start: "multiple storage drivers specified in '
        'configuration or environment: filesystem, s3"; unset the REGISTRY_STORAGE_S3_* variables, or make '
        "s3 the only driver (REGISTRY_STORAGE=s3, or in the file)"
    )


def test_s3_variables_make_the_driver_of_a_section_that_has_none() -> None:
    s = parse_distribution(
        "version: 0.1\nstorage:\n  delete: {enabled: true}\n",
        "config.yml",
        {"REGISTRY_STORAGE_S3_BUCKET": "b", "REGISTRY_STORAGE_S3_REGIONENDPOINT": "https://s3.test:9000"},
    )
    assert s.driver == "s3" and s.s3 is not None and s.s3.regionendpoint == "https://s3.test:9000"


_DRIVERS = st.sampled_from(["s3", "s3aws", "filesystem", "azure", "gcs", "swift", "inmemory", "oss"])
_NOT_DRIVER_VARIABLES = st.sampled_from(
    ["REGISTRY_STORAGE_DELETE_ENABLED", "REGISTRY_STORAGE_REDIRECT_DISABLE", "REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR",
     "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_ENABLED", "REGISTRY_STORAGE_TAG_CONCURRENCYLIMIT"]
)  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(in_file=_DRIVERS, in_env=_DRIVERS, other=_NOT_DRIVER_VARIABLES)
def test_a_driver_from_the_environment_is_refused_exactly_where_it_is_a_second_one(
    in_file: str, in_env: str, other: str
) -> None:
    env = {f"REGISTRY_STORAGE_{in_env.upper()}_ROOTDIRECTORY": "/x", other: "false"}
    text = f"version: 0.1\nstorage:\n  {in_file}: {{}}\n"
    if in_file == in_env:
        assert parse_distribution(text, "config.yml", env).driver == in_file
    else:
        message = str(error_of(text, env))
        assert message.startswith(f"environment: REGISTRY_STORAGE_{in_env.upper()}_ROOTDIRECTORY: adds ")
        assert "multiple storage drivers specified in configuration or environment" in message
        assert f': {", ".join(sorted({in_file, in_env}))}"; unset' in message


_CLOUDFRONT = (
    f"{_S3}middleware:\n  storage:\n    - name: cloudfront\n      options:\n"
    "        baseurl: https://d111.cloudfront.net/\n"
)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("", (None, ())),
        ("        ipfilteredby: none\n", (None, ())),
        ("        ipfilteredby: ''\n", (None, ())),
        ("        ipfilteredby: ' AWS '\n", ("aws", ())),
        (
            "        ipfilteredby: awsregion\n        awsregion: 'us-east-1, EU-west-1'\n",
            ("awsregion", ("us-east-1", "eu-west-1")),
        ),
    ],
)
def test_cloudfront_ipfilteredby_is_read_as_the_middleware_reads_it(
    options: str, expected: tuple[str | None, tuple[str, ...]]
) -> None:
    s = parse_distribution(_CLOUDFRONT + options, "config.yml")
    assert (s.redirect_ipfilteredby, s.redirect_awsregions) == expected


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            "        ipfilteredby: sometimes\n",
            "config.yml:12: middleware.storage.0.options.ipfilteredby: the registry refuses to start with "
            "'sometimes' here (\"ipfilteredby only allows a string the following value: none|aws|awsregion\"): "
            "write one of none, aws, awsregion",
        ),
        (
            "        ipfilteredby: no\n",  # yaml.v2's false: not a string
            "config.yml:12: middleware.storage.0.options.ipfilteredby: the registry refuses to start with "
            'the boolean false (quote the word) here ("ipfilteredby only allows a string the following value: none|aws|awsregion"): '
            "write one of none, aws, awsregion",
        ),
        (
            "        ipfilteredby: awsregion\n",
            "config.yml:10: middleware.storage.0.options.awsregion: ipfilteredby: awsregion needs the regions "
            'as text, and the registry refuses to start ("awsRegion is not defined"): write e.g. '
            "awsregion: us-east-1,eu-west-1",
        ),
    ],
)
def test_an_ipfilteredby_the_middleware_refuses_is_refused(options: str, expected: str) -> None:
    assert str(error_of(_CLOUDFRONT + options)) == expected


def test_ipfilteredby_from_the_environment_counts() -> None:
    s = parse_distribution(
        _CLOUDFRONT, "config.yml", {"REGISTRY_MIDDLEWARE_STORAGE_0_OPTIONS_IPFILTEREDBY": "aws"}
    )
    assert s.redirect_ipfilteredby == "aws"
