"""Registry names become certs.d directory names: nothing may escape certs.d."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import InvalidNameError
from agent.names import (
    endpoint_from_url,
    host_of,
    image_registry,
    registry_from_option,
    registry_from_url,
    validate_registry,
    without_userinfo,
)


@pytest.mark.parametrize(
    "name",
    [
        "reg.example.com",
        "reg.example.com:443",
        "registry.test:5000",
        "198.51.100.10",
        "[2001:db8::1]:5000",
        "localhost",
    ],
)
def test_valid_names_pass_unchanged(name: str) -> None:
    assert validate_registry(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "../../etc",
        "..",
        "reg/evil",
        "reg\\evil",
        "reg\0x",
        "",
        " reg",
        "reg:0",
        "reg:70000",
        "reg:08",
        "a:b:c",
        "-reg.example.com",
        "reg..example.com",
        "[::1",
        "[zz::1]:5",
        "reg:port",
        "reg:\u0665\u0660\u0660\u0660",  # Arabic-Indic digits: str.isdigit() takes them
        "[fe80::1%eth0]:5000",
        "reg.example.com.",
        "b\u00fccher.example",
    ],
)
def test_unsafe_names_are_refused_with_one_line(name: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        validate_registry(name, "--registry")
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2
    assert str(info.value).startswith("--registry: ")


@given(st.text(min_size=1, max_size=40))
def test_a_valid_name_never_contains_a_path_separator_or_dotdot(name: str) -> None:
    try:
        result = validate_registry(name)
    except InvalidNameError:
        return
    assert "/" not in result and ".." not in result and "\0" not in result and result == name


def test_urls_become_registry_names_without_adding_the_default_port() -> None:
    assert registry_from_url("https://reg.example.com/") == "reg.example.com"
    assert registry_from_url("https://user@reg.example.com:5000/v2/") == "reg.example.com:5000"
    assert registry_from_url("reg.example.com:443") == "reg.example.com:443"
    with pytest.raises(InvalidNameError):
        registry_from_url("ftp://reg.example.com")


def test_endpoints_keep_scheme_and_port() -> None:
    assert endpoint_from_url("https://198.51.100.11:9000") == ("https", "198.51.100.11:9000")
    assert endpoint_from_url("http://minio.local/bucket") == ("http", "minio.local")
    assert endpoint_from_url("s3.example.com") == ("https", "s3.example.com")
    assert host_of("[2001:db8::1]:5000") == "[2001:db8::1]"
    assert host_of("reg:5000") == "reg"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://[::1", "registry 'https://[::1': not a valid URL"),
        ("https://[zz]:5000", "registry 'https://[zz]:5000': not a valid URL"),
        (
            "https://reg.example.com\nSECRET",
            "registry 'https://reg.example.com...': holds a control character",
        ),
        ("ftp://admin:SECRET@reg.example.com", "registry 'ftp://reg.example.com': not an http(s) URL"),
        ("https://reg.example.com:99999", "registry 'reg.example.com:99999': port must be 1-65535"),
        # A password with '/', '?' or '#': the authority ends inside it (as Go's url.Parse reads it).
        ("https://AK:SEC/RETpw@s3.example.com:9000", "registry 'https://...@s3.example.com:9000': a user:"),
        (
            "https://admin:SECRET#2@reg.example.com",
            "registry 'https://...@reg.example.com': a user:password@",
        ),
        (
            "https://admin:SECRET?2@reg.example.com",
            "registry 'https://...@reg.example.com': a user:password@",
        ),
    ],
)
def test_bad_urls_are_one_line_input_errors_that_never_show_a_password(url: str, message: str) -> None:
    for parse in (registry_from_url, endpoint_from_url):
        with pytest.raises(InvalidNameError) as info:
            parse(url, "config.yml")
        expected = (
            message if parse is registry_from_url else message.replace("registry", "storage endpoint", 1)
        )
        assert str(info.value).startswith(f"config.yml: {expected}")
        assert (
            "SECRET" not in str(info.value) and "SEC" not in str(info.value) and "\n" not in str(info.value)
        )


def test_a_storage_endpoint_may_end_in_a_dot_or_be_an_idn_a_registry_may_not() -> None:
    # A storage endpoint never becomes a file name; a registry name is a certs.d directory.
    assert endpoint_from_url("https://s3.example.com.:9000") == ("https", "s3.example.com.:9000")
    assert endpoint_from_url("https://b\u00fccher.example") == ("https", "b\u00fccher.example")
    for name in ("s3.example.com.", "b\u00fccher.example"):
        with pytest.raises(InvalidNameError):
            registry_from_url(f"https://{name}")


def test_without_userinfo_drops_only_the_credentials() -> None:
    assert without_userinfo("https://u:p@s3.example.com:9000/b?x=@") == "https://s3.example.com:9000/b?x=@"
    assert without_userinfo("u:p@reg.example.com") == "reg.example.com"
    assert without_userinfo("https://reg.example.com/a@b") == "https://reg.example.com/a@b"
    assert without_userinfo("https://u:p@reg.example.com:9/x@y") == "https://reg.example.com:9/x@y"
    assert without_userinfo("https://u:pa/ss@reg.example.com") == "https://...@reg.example.com"


def test_a_port_with_leading_zeros_is_named_as_such() -> None:
    with pytest.raises(InvalidNameError, match="write the port without leading zeros"):
        validate_registry("registry.test:0443")
    with pytest.raises(InvalidNameError, match="port must be 1-65535"):
        validate_registry("registry.test:0")


# --- --registry: a registry's name as image names spell it ---------------------------------------

_LABELS = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_HOSTS = st.one_of(
    st.lists(_LABELS, min_size=1, max_size=3).map(".".join).filter(lambda h: not h.isdigit()),
    st.ip_addresses(v=4).map(str),
)
_PORTS = st.integers(1, 65535).map(lambda p: f":{p}")
registry_spellings = st.one_of(
    st.builds(lambda host, port: host + port, _HOSTS, st.just("") | _PORTS),
    st.builds(lambda ip, port: f"[{ip}]{port}", st.ip_addresses(v=6).map(str), _PORTS),
)


@given(registry_spellings)
def test_a_registry_option_takes_exactly_what_image_names_spell(name: str) -> None:
    assert registry_from_option(name, "--registry") == name


@given(
    name=registry_spellings,
    scheme=st.sampled_from(["", "https://", "http://"]),
    user=st.sampled_from(["", "admin@", "admin:PW@", "admin:12/PW@", "admin:PW#1@"]),
    path=st.sampled_from(["", "/", "/v2/", "/v2?x=1", "#frag"]),
)
def test_a_scheme_path_or_user_is_refused_naming_the_registry_to_give(
    name: str, scheme: str, user: str, path: str
) -> None:
    given_value = f"{scheme}{user}{name}{path}"
    if given_value == name:
        return
    with pytest.raises(InvalidNameError) as info:
        registry_from_option(given_value, "--registry")
    message = str(info.value)
    assert message.startswith("--registry: registry ")
    assert f"give {name}, as image names spell it (certs.d/{name}/)" in message
    assert "PW" not in message and "admin" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("https://reg.test/v2", "registry 'https://reg.test/v2': the scheme https:// and a path are no part"),
        ("http://reg.test:5000", "registry 'http://reg.test:5000': the scheme http:// is no part of"),
        ("user@reg.test", "registry '...@reg.test': a user@ is no part of a registry name: give reg.test,"),
        ("reg.test/library", "registry 'reg.test/library': a path is no part of a registry name"),
        ("/etc/docker/certs.d/reg.test", "registry '/etc/docker/certs.d/reg.test': not a host[:port]"),
        ("https://reg.test:99999/", "registry 'reg.test:99999': port must be 1-65535"),
        ("../../etc", "registry '../../etc': not a host[:port]"),
    ],
)
def test_registry_option_refusals_say_what_to_give(value: str, says: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        registry_from_option(value, "--registry")
    assert str(info.value).startswith(f"--registry: {says}")
    assert info.value.exit_code == 2


def test_a_password_of_digits_up_to_a_slash_is_no_host_and_port() -> None:
    # user:12 of user:12/34@proxy reads as host:port; the '@' after it says it was a password.
    assert without_userinfo("http://user:12/34@proxy:3128") == "http://...@proxy:3128"
    assert without_userinfo("http://user:12?34@proxy:3128/x") == "http://...@proxy:3128/x"
    assert without_userinfo("https://mirror.example/users/@me") == "https://mirror.example/users/@me"
    assert without_userinfo("http://[2001:db8::1]:3128/x@y") == "http://[2001:db8::1]:3128/x@y"
    with pytest.raises(InvalidNameError, match=r"'https://\.\.\.@s3\.example\.com:9000': a user:password@"):
        endpoint_from_url("https://AK:12/34@s3.example.com:9000")


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("2001:db8::1", "write IPv6 addresses as [addr]:port"),
        ("registry.test:443:1", "more than one ':'"),
        ("a:b:c", "more than one ':'"),
    ],
)
def test_a_name_with_colons_is_told_ipv6_only_when_it_is_an_address(name: str, said: str) -> None:
    with pytest.raises(InvalidNameError) as caught:
        validate_registry(name)
    assert said in str(caught.value)


@pytest.mark.parametrize(
    "name",
    [
        "docker.io",
        "index.docker.io",
        "registry-1.docker.io",
        "Docker.IO",
        "docker.io:443",
    ],
)
def test_docker_hub_is_refused_saying_dockerd_reads_no_certs_d_for_it(name: str) -> None:
    """dockerd sends docker.io images to its mirrors or registry-1.docker.io with the system's CAs and
    keeps docker.io secure whatever insecure-registries says (moby registry/config.go, service_v2.go)."""
    with pytest.raises(InvalidNameError) as caught:
        registry_from_option(name, "--registry")
    said = str(caught.value)
    assert said.startswith(f"--registry: registry {name!r} is Docker Hub: dockerd reads no certs.d directory")
    assert "registry-mirrors" in said and caught.value.exit_code == 2
    with pytest.raises(InvalidNameError, match="is Docker Hub"):
        registry_from_url(f"https://{name}/", "config.yml: http.host")


@pytest.mark.parametrize("name", ["mydocker.io", "docker.io.example.com", "hub.example.com:5000"])
def test_names_that_only_look_like_docker_hubs_pass(name: str) -> None:
    assert registry_from_option(name, "--registry") == name


@pytest.mark.parametrize(
    ("reference", "registry"),
    [
        ("registry.test/lab/busybox:1", "registry.test"),
        ("registry.test:443/lab/busybox:1", "registry.test:443"),
        ("localhost/busybox", "localhost"),
        ("localhost:5000/busybox@sha256:" + "a" * 64, "localhost:5000"),
        ("[2001:db8::1]:5000/busybox", "[2001:db8::1]:5000"),
        ("lab/busybox:1", "docker.io"),
        ("busybox", "docker.io"),
        ("busybox:1.36", "docker.io"),
        ("docker.io/library/busybox", "docker.io"),
    ],
)
def test_an_image_reference_names_its_registry_by_dockers_rules(reference: str, registry: str) -> None:
    """docker's reference rules: the first component is a registry where it has a '.' or ':' or is
    localhost; else the image is Docker Hub's (library/ where there is no '/')."""
    assert image_registry(reference) == registry


@given(
    first=st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True).filter(lambda c: c != "localhost"),
    rest=st.from_regex(r"[a-z0-9]+(/[a-z0-9]+)?(:[a-z0-9]{1,8})?", fullmatch=True),
)
def test_a_first_component_without_a_dot_or_colon_is_a_docker_hub_path(first: str, rest: str) -> None:
    assert image_registry(f"{first}/{rest}") == "docker.io"
    assert image_registry(f"{first}.test/{rest}") == f"{first}.test"


# RFC 3986: the authority ends at the first '/', '?' or '#'; an '@' in a query value is the query's
# where what follows it cannot be the host[:port] of a user:password@ (a '&', '=', '_' or ':x' in it).
@pytest.mark.parametrize(
    "url",
    [
        "https://s3.example.com:9000/b?X-Amz-Credential=a@b&X-Amz-Date=1",
        "https://s3.example.com:9000?x=1@2&y=3",
        "https://s3.example.com:9000/?X-Amz-Credential=AK%2F1@x&X-Amz-Signature=0f#k",
        "http://[2001:db8::1]:9000/b?to=a@b",
        "https://s3.example.com:9000/?next=https://...@x&y=1",
        "https://s3.example.com:9000/b?x=a@b:c",
        "https://s3.example.com:9000/b?x=a@_b/c",
        "https://s3.example.com:9000/b?x=a@",
    ],
)
def test_an_at_sign_in_a_query_value_is_no_userinfo(url: str) -> None:
    assert without_userinfo(url) == url
    scheme, _, rest = url.partition("://")
    assert endpoint_from_url(url) == (scheme, rest.split("/")[0].split("?")[0])


def test_a_password_holding_a_question_mark_is_still_hidden_where_no_query_value_holds_the_at_sign() -> None:
    assert without_userinfo("http://user:12?34@proxy:3128/x") == "http://...@proxy:3128/x"
    assert without_userinfo("https://s3.example.com:9000/b?x=1#f@g") == "https://...@g"
    assert without_userinfo("https://s3.example.com:9000/a@b?x=1@2") == "https://...@2"
    assert (
        without_userinfo("https://u:p@s3.example.com:9000/b?x=1@2") == "https://s3.example.com:9000/b?x=1@2"
    )


def test_a_password_holding_a_query_pair_and_an_at_sign_is_hidden() -> None:
    """``user:1234?a=b@proxy:3128`` reads as a query ``a=b@proxy:3128`` too: the password is not shown."""
    assert without_userinfo("http://user:1234?a=b@proxy:3128") == "http://...@proxy:3128"
    with pytest.raises(InvalidNameError, match=r"'http://\.\.\.@proxy:3128': a user:password@") as caught:
        endpoint_from_url("http://user:1234?a=b@proxy:3128")
    assert "1234" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://s3.example.com:9000?x=1@2", "https://...@2"),
        ("https://s3.example.com:9000/b?X-Amz-Credential=a@b", "https://...@b"),
        ("http://user:1?a=b@proxy:3128/p", "http://...@proxy:3128/p"),
        ("http://user:1?a=b@proxy:3128?x=1", "http://...@proxy:3128?x=1"),
        ("http://user:1?a=b@proxy:3128#f", "http://...@proxy:3128#f"),
        ("http://user:1?a=b@proxy.example.:3128", "http://...@proxy.example.:3128"),
        ("http://user:1?a=b@10.0.0.5:99999", "http://...@10.0.0.5:99999"),
        ("http://user:1?a=b@[2001:db8::1]:3128/", "http://...@[2001:db8::1]:3128/"),
        # Not only the last '@' may end a password: the query after the address may hold one too.
        ("http://user:1?a=b@proxy:3128/p?q=x@y&z=1", "http://...@y&z=1"),
    ],
)
def test_an_at_sign_in_a_query_value_that_may_end_a_password_hides_all_up_to_the_last_at_sign(
    url: str, shown: str
) -> None:
    assert without_userinfo(url) == shown


query_names = st.text(alphabet="abcXYZ-_.", min_size=1, max_size=8)
# Values whose every '@' is followed by a character no host name holds.
query_values = st.lists(
    st.sampled_from(["a", "c", "0", "9", ":", "/", ".", "%", "-", "_", "@_", "@%", "@=", "@:"]), max_size=6
).map("".join)


@given(
    host=st.sampled_from(["s3.example.com:9000", "10.0.0.5:443", "minio:9000", "s3.example.com"]),
    path=st.sampled_from(["", "/", "/bucket", "/a/b/"]),
    pairs=st.lists(st.tuples(query_names, query_values), min_size=1, max_size=4),
    userinfo=st.sampled_from(["", "AK:SECRETpw@", "admin@"]),
)
def test_a_query_with_at_signs_in_its_values_keeps_the_address_and_drops_only_credentials(
    host: str, path: str, pairs: list[tuple[str, str]], userinfo: str
) -> None:
    query = "&".join(f"{name}={value}@_{value}" for name, value in pairs)
    kept = f"https://{host}{path}?{query}"
    assert without_userinfo(f"https://{userinfo}{host}{path}?{query}") == kept
    assert endpoint_from_url(f"https://{userinfo}{host}{path}?{query}") == ("https", host)


password_text = st.text(alphabet="0129?=&/:@#.%-_", max_size=8)


@given(
    user=st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True),
    # Digits up to the '?', '/' or '#' read as user:port, the authority of the URL, which hides most.
    before=st.one_of(st.from_regex(r"[1-9][0-9]{0,4}", fullmatch=True), password_text),
    special=st.sampled_from("?/#"),
    after=st.one_of(password_text, password_text.map("=".__add__)),
    host=st.sampled_from(["proxy:3128", "s3.example.com:9000", "10.0.0.5", "[2001:db8::1]:3128", "minio"]),
    rest=st.sampled_from(["", "/", "/b", "?x-id=1", "#k", "/p?q=x@y&z=1"]),
)
def test_a_password_holding_a_slash_question_mark_or_hash_is_never_shown(
    user: str, before: str, special: str, after: str, host: str, rest: str
) -> None:
    # "pw" appears nowhere else in the URL, so the password's text is told from the address's.
    password = f"{before}{special}pw{after}"
    url = f"http://{user}:{password}@{host}{rest}"
    assert password not in without_userinfo(url)
    try:
        endpoint_from_url(url)
    except InvalidNameError as refused:
        assert password not in str(refused)
