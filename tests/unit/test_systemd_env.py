"""A unit's environment as systemd builds it, and ExecStart expanded with it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.engine.gather import parse_gather_output
from agent.runtimes.docker import plan_docker
from agent.runtimes.systemd_env import Setting, expand_command, parse_environment_file
from agent.trust import TrustPolicy


@pytest.mark.parametrize(
    ("text", "settings"),
    [
        ('DOCKER_OPTS="--dns 8.8.8.8 --debug"\n', {"DOCKER_OPTS": "--dns 8.8.8.8 --debug"}),
        ("# DOCKER_OPTS=--debug\n; A=1\n\n", {}),
        ("export A=1\nB = 2 \n", {"A": "1", "B": "2"}),
        ("A='x \"y\" $z'\n", {"A": 'x "y" $z'}),
        ('A="a \\"b\\" \\\\ c"\n', {"A": 'a "b" \\ c'}),
        ("A=first \\\n  second\n", {"A": "first   second"}),
        ("1A=x\nA-B=y\nnot an assignment\n", {}),
        ("A=1\nA=2\n", {"A": "2"}),
    ],
)  # fmt: skip
def test_environment_files_are_read_as_systemd_reads_them(text: str, settings: dict[str, str]) -> None:
    assert parse_environment_file(text) == settings


words = st.text(alphabet="abc-=/.:", min_size=1, max_size=8)


@given(st.lists(words, max_size=5), st.sampled_from([" ", "  ", "\t"]))
def test_a_variable_word_splits_and_a_braced_one_stays_one_word(parts: list[str], gap: str) -> None:
    value = gap.join(parts)
    settings = {"V": Setting(value, "/etc/default/docker")}
    split, used = expand_command(["dockerd", "$V", "--x=${V}"], settings)
    assert split == ["dockerd", *parts, f"--x={value}"]
    assert used == ["$V from /etc/default/docker"]
    unset, used = expand_command(["dockerd", "$W", "--x=${W}"], settings)
    assert unset == ["dockerd", "--x="] and used == []


def test_a_flag_set_in_debians_etc_default_docker_blocks_the_daemon_json_change() -> None:
    text = "\n".join(
        [
            "@@ta begin 1",
            "@@ta init systemd",
            "@@ta unit-text n1",
            "# /lib/systemd/system/docker.service",
            "[Service]",
            "EnvironmentFile=-/etc/default/docker",
            "ExecStart=/usr/sbin/dockerd -H fd:// $DOCKER_OPTS",
            "@@ta unit-end n1",
            "@@ta env-file /etc/default/docker",
            "@@ta env-text n1",
            'DOCKER_OPTS="--insecure-registry=10.9.9.9"',
            "@@ta env-end n1",
            "@@ta active active",
            "@@ta end",
        ]
    )
    facts = parse_gather_output(text)
    skip_tls = TrustPolicy(("registry.test",), "s3.test:9000", "https", insecure=True)
    assert plan_docker(skip_tls, facts).blockers == (
        "/lib/systemd/system/docker.service ($DOCKER_OPTS from /etc/default/docker) sets "
        "--insecure-registry; the same directive (insecure-registries) in daemon.json would stop "
        "dockerd (fact 13)",
    )
