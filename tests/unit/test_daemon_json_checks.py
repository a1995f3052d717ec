"""The agent's own daemon.json checks (fact 12) and flag/file conflicts (fact 13)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.runtimes.daemon_json_checks import (
    DOCKER_20_10_KEYS,
    check_daemon_json,
    conflicting_flags,
    flag_names,
    flag_value,
)


def test_a_typical_file_passes() -> None:
    doc = {
        "data-root": "/srv/docker",
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m"},
        "insecure-registries": ["reg.example.com", "reg.example.com:5000", "10.0.0.0/8", "[fd00::1]:5000"],
        "registry-mirrors": ["https://mirror.example.com", "http://10.1.2.3:5000/"],
        "allow-nondistributable-artifacts": [],
        "live-restore": True,
        "debug": False,
        "iptables": True,
        "max-concurrent-downloads": 6,
        "features": {"buildkit": True},
    }
    assert check_daemon_json(doc) == []


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({"insecure-registries": "reg.test"}, "insecure-registries: must be a list of strings"),
        ({"registry-mirrors": [1]}, "registry-mirrors: must be a list of strings"),
        ({"allow-nondistributable-artifacts": {}}, "allow-nondistributable-artifacts: must be a list"),
        ({"insecure-registries": ["ftp://reg.test"]}, "'ftp://reg.test': only http:// or https:// may come"),
        ({"insecure-registries": ["http://reg.test/v2"]}, "'http://reg.test/v2' is not a host[:port]"),
        ({"insecure-registries": ["10.0.0.0/33"]}, "'10.0.0.0/33' is not a host[:port] or a CIDR"),
        ({"insecure-registries": ["../../etc"]}, "'../../etc' is not a host[:port]"),
        ({"insecure-registries": ["reg.test:0"]}, "'reg.test:0' is not a host[:port]"),
        ({"registry-mirrors": ["mirror.test"]}, "'mirror.test' is not an http(s) URL"),
        ({"registry-mirrors": ["https://mirror.test/v2/"]}, "without path, query or fragment"),
        ({"registry-mirrors": ["ftp://mirror.test"]}, "is not an http(s) URL"),
        ({"live-restore": "true"}, "live-restore: must be true or false"),
        ({"debug": 1}, "debug: must be true or false"),
        ({"iptables": None}, "iptables: must be true or false"),
        ({"max-concurrent-downloads": "3"}, "max-concurrent-downloads: must be an integer"),
        ({"max-concurrent-downloads": 3.0}, "max-concurrent-downloads: must be an integer"),
        ({"max-concurrent-downloads": True}, "max-concurrent-downloads: must be an integer"),
        ({"max-concurrent-uploads": -1}, "max-concurrent-uploads: must not be negative"),
        ({"insecure-registry": ["reg.test"]}, "unknown key 'insecure-registry'"),
        ({"registry-mirror": []}, "unknown key 'registry-mirror'"),
    ],
)
def test_problems_dockerd_would_refuse(doc: dict[str, object], problem: str) -> None:
    problems = check_daemon_json(doc)
    assert len(problems) == 1
    assert problem in problems[0]


@pytest.mark.parametrize(
    "entry", ["http://other.example:5000", "https://third.example", "HTTP://reg.test", "https://10.0.0.0/8"]
)
def test_an_entry_with_http_or_https_is_loaded_as_dockerd_loads_it(entry: str) -> None:
    # dockerd (20.10, 26.1) strips the scheme with a warning and loads the rest; `--validate` says OK.
    assert check_daemon_json({"insecure-registries": [entry]}) == []


def test_unknown_keys_are_skipped_when_the_engine_validates_itself() -> None:
    doc = {"proxies": {"http-proxy": "http://p:3128"}, "debug": "yes"}
    assert check_daemon_json(doc, known_keys=None) == ["debug: must be true or false"]
    assert "unknown key 'proxies'" in check_daemon_json(doc)[1]


def test_known_keys_cover_the_documented_linux_options() -> None:
    documented = {
        "allow-nondistributable-artifacts", "api-cors-header", "authorization-plugins", "bip", "bridge",
        "cgroup-parent", "cluster-advertise", "cluster-store", "cluster-store-opts", "containerd",
        "containerd-namespace", "containerd-plugins-namespace", "data-root", "debug",
        "default-address-pools", "default-cgroupns-mode", "default-gateway", "default-gateway-v6",
        "default-runtime", "default-shm-size", "default-ulimits", "dns", "dns-opts", "dns-search",
        "exec-opts", "exec-root", "experimental", "features", "fixed-cidr", "fixed-cidr-v6", "group",
        "hosts", "icc", "init", "init-path", "insecure-registries", "ip", "ip-forward", "ip-masq",
        "iptables", "ip6tables", "ipv6", "labels", "live-restore", "log-driver", "log-level", "log-opts",
        "max-concurrent-downloads", "max-concurrent-uploads", "max-download-attempts", "mtu",
        "no-new-privileges", "node-generic-resources", "oom-score-adjust", "pidfile", "raw-logs",
        "registry-mirrors", "runtimes", "seccomp-profile", "selinux-enabled", "shutdown-timeout",
        "storage-driver", "storage-opts", "swarm-default-advertise-addr", "tls", "tlscacert", "tlscert",
        "tlskey", "tlsverify", "userland-proxy", "userland-proxy-path", "userns-remap",
    }  # fmt: skip
    assert documented <= DOCKER_20_10_KEYS


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@given(
    st.dictionaries(
        st.sampled_from(sorted(DOCKER_20_10_KEYS)) | st.text(max_size=10), json_values, max_size=8
    )
)
def test_checks_never_raise_and_answer_one_line_each(doc: dict[str, object]) -> None:
    for problem in check_daemon_json(doc):
        assert problem and "\n" not in problem


# --- flags (fact 13) --------------------------------------------------------------------------------


def test_flag_names_long_short_and_values() -> None:
    flags = ("-H", "fd://", "--containerd=/run/containerd/containerd.sock", "-D", "--label", "a=b")
    assert set(flag_names(flags)) == {"host", "containerd", "debug", "label"}


@pytest.mark.parametrize(
    ("doc", "flags", "expected"),
    [
        ({"insecure-registries": []}, ("--insecure-registry", "reg.test"), [("insecure-registries", "--insecure-registry")]),
        ({"insecure-registries": []}, ("--insecure-registry=reg.test",), [("insecure-registries", "--insecure-registry=reg.test")]),
        ({"hosts": ["unix:///run/docker.sock"]}, ("-H", "fd://"), [("hosts", "-H")]),
        ({"labels": ["a=b"], "debug": True}, ("--label=x=y", "-D"), [("labels", "--label=x=y"), ("debug", "-D")]),
        ({"registry-mirrors": []}, ("--registry-mirror=https://m.test",), [("registry-mirrors", "--registry-mirror=https://m.test")]),
        ({"runtimes": {}}, ("--add-runtime", "x=/bin/x"), []),  # dockerd merges runtimes
        ({"insecure-registries": []}, ("-H", "fd://", "--containerd=/run/c.sock"), []),
    ],
)  # fmt: skip
def test_conflicting_flags(
    doc: dict[str, object], flags: tuple[str, ...], expected: list[tuple[str, str]]
) -> None:
    assert conflicting_flags(doc, flags) == expected


def test_flag_value_both_spellings() -> None:
    assert flag_value(("--config-file", "/srv/d.json"), "config-file") == "/srv/d.json"
    assert flag_value(("--config-file=/srv/d.json",), "config-file") == "/srv/d.json"
    assert flag_value(("--config-file",), "config-file") is None
    assert flag_value(("-H", "fd://"), "config-file") is None


@pytest.mark.parametrize(
    ("doc", "problem", "secret"),
    [
        (
            {"registry-mirrors": ["https://muser:MIRRPW_6@mirror.corp:5000/v2/"]},
            "registry-mirrors: 'https://muser:xxxxx@mirror.corp:5000/v2/' is not an http(s) URL",
            "MIRRPW_6",
        ),
        (
            {"registry-mirrors": ["https://mirror.corp/?token=MIRRTOK#FRAG"]},
            "registry-mirrors: 'https://mirror.corp/?token=xxxxx#xxxxx' is not an http(s) URL",
            "MIRRTOK",
        ),
        (
            {"insecure-registries": ["http://iuser:INSPW@reg.corp:5000"]},
            "insecure-registries: 'http://iuser:xxxxx@reg.corp:5000' is not a host[:port] or a CIDR",
            "INSPW",
        ),
        (
            {"insecure-registries": ["ftp://iuser:INS/PW@reg.corp"]},
            "insecure-registries: 'ftp://iuser:xxxxx@reg.corp': only http:// or https:// may come before",
            "INS",
        ),
    ],
)
def test_a_value_quoted_in_a_problem_has_its_password_masked(
    doc: dict[str, object], problem: str, secret: str
) -> None:
    (found,) = check_daemon_json(doc)
    assert found.startswith(problem), found
    assert secret not in found, found


# A mirror URL with a path is refused in either list: not a mirror, not a host[:port].
_MIRROR_KEYS = ("registry-mirrors", "insecure-registries")
# What a password may hold: anything but whitespace and the quote and backslash repr would escape.
_PASSWORDS = st.text(
    st.characters(codec="ascii", categories=["L", "N", "P", "S"], exclude_characters="'\"\\"),
    min_size=1,
    max_size=16,
)


@given(
    user=st.text("abcdefghij", min_size=1, max_size=6), password=_PASSWORDS, key=st.sampled_from(_MIRROR_KEYS)
)
def test_no_part_of_a_password_in_a_refused_entry_is_ever_shown(user: str, password: str, key: str) -> None:
    entry = f"https://{user}:{password}@mirror.corp:5000/v2/"
    (found,) = check_daemon_json({key: [entry]})
    assert f"'https://{user}:xxxxx@mirror.corp:5000/v2/'" in found, found
