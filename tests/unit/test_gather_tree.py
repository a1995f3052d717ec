"""A --root tree's docker.service, ordered as systemd loads it, and its links, as the gather reports them
(pure: the gather's output, no tree)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.engine.gather import (
    MASKED_UNIT,
    TREE_UNIT_DIRS,
    parse_gather_output,
    tree_link_says,
    tree_unit_text,
    unit_lines,
)
from agent.errors import CommandError

LIB = "/lib/systemd/system"
ETC = "/etc/systemd/system"
UNIT = "[Service]\nEnvironmentFile=-/etc/default/docker\nExecStart=/usr/sbin/dockerd -H fd:// $DOCKER_OPTS"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def tree_gather(*records: str) -> str:
    """The gather's output for a --root tree, with ``records``."""
    return "\n".join(["@@ta begin 1", *records, "@@ta end"]) + "\n"


def unit_file(path: str, text: str) -> list[str]:
    return [f"@@ta tree-unit {path}", "@@ta tree-unit-text n", *text.splitlines(), "@@ta tree-unit-end n"]


def test_the_first_unit_file_in_systemds_order_wins_and_drop_ins_follow_by_name() -> None:
    text = tree_unit_text(
        [
            (f"{ETC}/docker.service.d/b.conf", "[Service]\nExecStart=\nExecStart=/d -b"),
            ("/usr/lib/systemd/system/docker.service", "[Service]\nExecStart=/usr/lib-unit"),
            (f"{LIB}/docker.service", "[Service]\nExecStart=/lib-unit"),
            (f"{LIB}/docker.service.d/a.conf", "[Service]\nEnvironment=A=1"),
        ]
    )
    assert text is not None
    assert [origin for origin, _ in unit_lines(text) if _ == "[Service]"] == [
        f"{LIB}/docker.service",
        f"{LIB}/docker.service.d/a.conf",
        f"{ETC}/docker.service.d/b.conf",
    ]


def test_a_drop_in_in_etc_replaces_the_same_named_one_below_and_a_dev_null_one_masks_it() -> None:
    files: list[tuple[str, str | None]] = [
        (f"{LIB}/docker.service", UNIT),
        (f"{LIB}/docker.service.d/opts.conf", "[Service]\nExecStart=\nExecStart=/d --insecure-registry=x"),
        (f"{ETC}/docker.service.d/opts.conf", "[Service]\nExecStart=\nExecStart=/d --debug"),
        (f"{LIB}/docker.service.d/gone.conf", "[Service]\nExecStart=\nExecStart=/d --insecure-registry=y"),
        (f"{ETC}/docker.service.d/gone.conf", None),
    ]
    text = tree_unit_text(files)
    assert text is not None and b"insecure-registry" not in text
    assert f"# {ETC}/docker.service.d/opts.conf\n".encode() in text


def test_a_unit_masked_in_the_tree_reads_as_systemctl_says_it_and_no_files_give_no_unit() -> None:
    masked = tree_unit_text([(f"{ETC}/docker.service", None), (f"{LIB}/docker.service", UNIT)])
    assert masked is not None and masked.startswith(MASKED_UNIT)
    assert tree_unit_text([]) is None
    assert tree_unit_text([("/srv/docker.service", UNIT)]) is None  # not where systemd looks


@given(
    st.lists(
        st.tuples(
            st.sampled_from(TREE_UNIT_DIRS),
            st.sampled_from(["10-a.conf", "20-b.conf", "a.conf", "B.conf"]),
            st.booleans(),
        ),
        max_size=12,
        unique_by=lambda drop_in: drop_in[:2],
    )
)
def test_each_drop_in_name_counts_once_from_the_highest_directory_in_name_order(
    drop_ins: list[tuple[str, str, bool]],
) -> None:
    files: list[tuple[str, str | None]] = [(f"{LIB}/docker.service", UNIT)]
    files += [(f"{d}/docker.service.d/{n}", None if masked else f"# from {d}") for d, n, masked in drop_ins]
    text = tree_unit_text(files)
    assert text is not None
    headers = [line[2:] for line in text.decode().splitlines() if line.startswith("# /")]
    winners = {}
    for directory in reversed(TREE_UNIT_DIRS):
        for d, n, masked in drop_ins:
            if d == directory:
                winners[n] = None if masked else f"{d}/docker.service.d/{n}"
    expected = [winners[n] for n in sorted(winners) if winners[n] is not None]
    assert headers == [f"{LIB}/docker.service", *expected]


def test_a_tree_drop_in_flag_and_environment_file_are_dockerds_flags_named_by_their_file() -> None:
    drop_in = f"{ETC}/docker.service.d/registry.conf"
    facts = parse_gather_output(
        tree_gather(
            *unit_file(f"{LIB}/docker.service", UNIT),
            "@@ta env-file /etc/default/docker",
            "@@ta env-text n",
            'DOCKER_OPTS="--insecure-registry=10.1.1.1"',
            "@@ta env-end n",
            *unit_file(drop_in, "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd $DOCKER_OPTS --debug"),
        ),
        root="/t",
    )
    assert facts.dockerd_flags == ("--insecure-registry=10.1.1.1", "--debug")
    assert facts.flags_source == f"{drop_in} ($DOCKER_OPTS from /etc/default/docker)"
    assert facts.init is None  # a tree: nothing to reload


def test_without_a_unit_in_the_tree_dockerd_has_no_flags() -> None:
    facts = parse_gather_output(tree_gather(), root="/t")
    assert facts.dockerd_flags == () and facts.flags_source is None


def test_a_link_inside_the_tree_on_the_way_to_etc_docker_stops_the_gather_saying_what_to_do() -> None:
    with pytest.raises(CommandError) as raised:
        parse_gather_output(tree_gather("@@ta tree-link /t/etc/docker", b64("../data/docker\n")), root="/t")
    assert str(raised.value) == tree_link_says("/t/etc/docker", "../data/docker")
    assert str(raised.value) == (
        "/t/etc/docker is a symbolic link: in a --root tree, trust-agent does not follow it (it leads to "
        "../data/docker); replace the link with the directory it leads to, or write its target's files "
        "yourself, then run again (nothing written)"
    )


def test_a_linked_certs_d_in_a_tree_is_a_problem_only_a_plan_writing_there_meets() -> None:
    facts = parse_gather_output(
        tree_gather("@@ta certs-dir-tree-link /t/etc/docker/certs.d", b64("../certs\n")), root="/t"
    )
    assert facts.certs_dir_problem == tree_link_says("/t/etc/docker/certs.d", "../certs").removesuffix(
        ", then run again (nothing written)"
    )
