"""The gather's reading of unit text and daemon.json as systemd and dockerd read them (pure, no host)."""

from __future__ import annotations

import base64
import json
import posixpath
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.engine.gather import _serves_elsewhere, engine_flags, parse_gather_output, unit_lines
from agent.errors import CommandError
from agent.runtimes.daemon_json_checks import config_file_flag
from agent.runtimes.systemd_env import unit_environment

ENV_FILE = "/etc/default/docker-extra"
FLAG_IN_IT = 'DOCKER_OPTS="--insecure-registry=10.7.7.7"\n'


def unit_with(setting: str) -> bytes:
    """Debian's docker.service with a drop-in holding ``setting``."""
    return (
        "# /lib/systemd/system/docker.service\n[Service]\nEnvironmentFile=-/etc/default/docker\n"
        "ExecStart=/usr/sbin/dockerd -H fd:// $DOCKER_OPTS\n"
        f"# /etc/systemd/system/docker.service.d/env.conf\n[Service]\n{setting}"
    ).encode()


@pytest.mark.parametrize(
    "setting",
    [
        f"EnvironmentFile=\\\n  -{ENV_FILE}\n",
        f"EnvironmentFile=-{ENV_FILE}\\\n\n",
        f"  EnvironmentFile = -{ENV_FILE}  \n",
        f"EnvironmentFile\t=\t{ENV_FILE}\n",
    ],
    ids=["value-on-the-next-line", "continued-onto-an-empty-line", "blanks-around-the-equals-sign", "tabs"],
)
def test_an_environment_file_systemd_reads_gives_its_flags(setting: str) -> None:
    """Each of these names the file for systemd (seen on the lab's systemd 252): its $DOCKER_OPTS is
    dockerd's next start."""
    flags = engine_flags(unit_with(setting), None, None, {ENV_FILE: FLAG_IN_IT})
    assert "--insecure-registry=10.7.7.7" in flags.flags
    assert flags.source == f"/lib/systemd/system/docker.service ($DOCKER_OPTS from {ENV_FILE})"


def test_several_files_on_one_line_are_one_path_as_systemd_reads_them() -> None:
    """systemd's EnvironmentFiles= shows "/a -/b (ignore_errors=yes)": one path, blanks and all."""
    lines = unit_lines(unit_with(f"EnvironmentFile=-{ENV_FILE} -/etc/default/other\n"))
    assert unit_environment(lines).files == ("/etc/default/docker", f"{ENV_FILE} -/etc/default/other")
    flags = engine_flags(unit_with(f"EnvironmentFile=-{ENV_FILE} -/etc/default/other\n"), None, None, {})
    assert flags.flags == ("-H", "fd://")


blanks = st.text(alphabet=" \t", max_size=3)


@given(before=blanks, around=blanks, after=blanks, dash=st.sampled_from(["", "-"]))
def test_blanks_around_an_environment_file_settings_key_and_value_are_not_part_of_them(
    before: str, around: str, after: str, dash: str
) -> None:
    line = f"{before}EnvironmentFile{around}={around}{dash}{ENV_FILE}{after}"
    assert unit_environment(unit_lines(f"# /u.conf\n{line}\n".encode())).files == (ENV_FILE,)


def test_unit_environment_strips_a_key_given_with_blanks() -> None:
    assert unit_environment([("/u.conf", "EnvironmentFile = /x")]).files == ("/x",)


ELSEWHERE = {"storage-driver": "vfs", "hosts": ["unix:///run/docker-alt.sock"]}
# Debian's unit without -H: daemon.json's "hosts" says where dockerd serves.
NO_H_UNIT = "# /lib/systemd/system/docker.service\n[Service]\nExecStart=/usr/sbin/dockerd\n"


def gather_text(daemon_json: bytes, version_line: str | None, *records: str) -> str:
    """A gather of an active docker.service (no -H flag) with ``daemon_json``; ``version_line``: the
    dockerd binary's ``--version`` (None: not asked, as where the controller reads the API itself)."""
    lines = ["@@ta begin 1", "@@ta uid 0"]
    lines += [] if version_line is None else [f"@@ta dockerd-version {version_line}"]
    lines += ["@@ta daemon-json", base64.b64encode(daemon_json).decode()]
    lines += ["@@ta init systemd", "@@ta unit-text n", *NO_H_UNIT.splitlines(), "@@ta unit-end n"]
    return "\n".join([*lines, "@@ta active active", *records, "@@ta end"]) + "\n"


WITH_TRAILING_DATA = json.dumps(ELSEWHERE).encode() + b"\n}\n"
DOCKER_20 = "Docker version 20.10.24+dfsg1, build 297e128"
DOCKER_26 = "Docker version 26.1.5+dfsg1, build a72d7cd"


@pytest.mark.parametrize(("version", "elsewhere"), [(DOCKER_20, True), (None, True), (DOCKER_26, False)])
def test_hosts_in_a_daemon_json_with_trailing_data_are_read_as_the_engine_reads_them(
    version: str | None, elsewhere: bool
) -> None:
    """20.10 reads the first document and serves where it says; 23.0 and later refuse the file (so
    cannot run on it); a version not asked is read as 20.10 reads it."""
    facts = parse_gather_output(gather_text(WITH_TRAILING_DATA, version, "@@ta info-json", ""))
    assert _serves_elsewhere(facts) is elsewhere


def test_a_socket_gone_where_daemon_json_with_trailing_data_serves_elsewhere_is_no_failure() -> None:
    """The gather stopped the host: "docker.service is active but /var/run/docker.sock does not answer
    (the socket file is gone)", where 20.10 serves at the socket its daemon.json names."""
    facts = parse_gather_output(
        gather_text(WITH_TRAILING_DATA, DOCKER_20, "@@ta info-json", "", "@@ta socket-absent")
    )
    assert _serves_elsewhere(facts)


def test_a_socket_gone_on_a_newer_engine_is_still_a_failure() -> None:
    """26.1 cannot run on that file: the silent socket is said as before."""
    with pytest.raises(CommandError, match="does not answer \\(the socket file is gone\\)"):
        parse_gather_output(
            gather_text(WITH_TRAILING_DATA, DOCKER_26, "@@ta info-json", "", "@@ta socket-absent")
        )


GLOB = "/etc/default/docker-*"


def gathered_through_a_glob(files: list[tuple[str, str]]) -> str:
    """A gather whose unit names ``GLOB``, the shell having read ``files`` ((path, text), in the order
    its glob gave them), each said as the glob's."""
    lines = ["@@ta begin 1", "@@ta init systemd", "@@ta unit-text n"]
    lines += [*unit_with(f"EnvironmentFile=-{GLOB}\n").decode().splitlines(), "@@ta unit-end n"]
    for path, text in files:
        lines += [f"@@ta env-glob {GLOB}", f"@@ta env-file {path}", "@@ta env-text n", text, "@@ta env-end n"]
    return "\n".join([*lines, "@@ta active active", "@@ta end"]) + "\n"


def test_a_glob_environment_files_last_match_in_sorted_order_gives_the_flags() -> None:
    """systemd reads every file a glob matches, in sorted order (seen on the lab's systemd 252): the
    last one's $DOCKER_OPTS is dockerd's, whatever order the host's shell listed them in."""
    files = [
        ("/etc/default/docker-other", 'DOCKER_OPTS="--insecure-registry=10.8.8.8"'),
        ("/etc/default/docker-extra", 'DOCKER_OPTS="--insecure-registry=10.7.7.7"'),
    ]
    facts = parse_gather_output(gathered_through_a_glob(files))
    assert "--insecure-registry=10.8.8.8" in facts.dockerd_flags
    assert "--insecure-registry=10.7.7.7" not in facts.dockerd_flags
    assert (
        facts.flags_source
        == "/lib/systemd/system/docker.service ($DOCKER_OPTS from /etc/default/docker-other)"
    )


suffixes = st.lists(st.text(alphabet="abc.-_", min_size=1, max_size=6), min_size=1, max_size=5, unique=True)


@given(suffixes, st.randoms(use_true_random=False))
def test_of_the_files_a_glob_matched_the_greatest_name_sets_the_flags(names: list[str], rnd: Random) -> None:
    files = [(f"/etc/default/docker-{name}", f'DOCKER_OPTS="--label=from-{name}"') for name in names]
    rnd.shuffle(files)
    facts = parse_gather_output(gathered_through_a_glob(files))
    assert facts.dockerd_flags == ("-H", "fd://", f"--label=from-{max(names)}")
    assert facts.flags_source is not None and facts.flags_source.endswith(f"docker-{max(names)})")


def test_a_file_not_named_by_the_glob_gives_nothing() -> None:
    """The file the unit names literally is read as before; one no setting names is not dockerd's."""
    text = gathered_through_a_glob([]).replace(
        "@@ta active active",
        '@@ta env-file /etc/default/unnamed\n@@ta env-text n\nDOCKER_OPTS="--debug"\n@@ta env-end n\n@@ta active active',
    )
    assert parse_gather_output(text).dockerd_flags == ("-H", "fd://")


RELATIVE = "etc/docker-alt/daemon.json"


def unit_starting(config_file_flag: list[str], working_directory: str | None = None) -> bytes:
    """docker.service whose drop-in starts dockerd with ``config_file_flag`` (and a WorkingDirectory=)."""
    where = f"WorkingDirectory={working_directory}\n" if working_directory is not None else ""
    return unit_with(
        f"{where}ExecStart=\nExecStart=/usr/sbin/dockerd -H fd:// {' '.join(config_file_flag)}\n"
    )


@pytest.mark.parametrize(
    ("flag", "working_directory", "opened"),
    [
        (["--config-file", RELATIVE], None, f"/{RELATIVE}"),
        ([f"--config-file={RELATIVE}"], None, f"/{RELATIVE}"),
        (["--config-file", RELATIVE], "-/srv", f"/srv/{RELATIVE}"),
        (["--config-file", f"../{RELATIVE}"], "/srv/x", f"/srv/{RELATIVE}"),
        (["--config-file", RELATIVE], "~", f"/root/{RELATIVE}"),
        (["--config-file", "/etc/d.json"], "/srv", "/etc/d.json"),
    ],
    ids=["default-cwd", "equals-form", "working-directory", "dot-dot", "home", "absolute-kept"],
)
def test_a_relative_config_file_is_the_file_dockerd_opens_from_its_working_directory(
    flag: list[str], working_directory: str | None, opened: str
) -> None:
    """dockerd opens --config-file from its working directory (the unit's WorkingDirectory=, / by
    default): the gather read it from the SSH login's home, and the plan wrote a new file there."""
    cmdline = "\0".join(["/usr/sbin/dockerd", "-H", "fd://", *flag]).encode()
    flags = engine_flags(unit_starting(flag, working_directory), cmdline, "7")
    for seen in (flags.flags, flags.unit, flags.running):
        assert seen is not None and config_file_flag(seen) == opened, seen
    assert flags.source == "/etc/systemd/system/docker.service.d/env.conf", flags.source


def test_an_empty_working_directory_resets_it_to_the_root() -> None:
    unit = unit_starting(["--config-file", RELATIVE], "/srv") + b"WorkingDirectory=\n"
    assert config_file_flag(engine_flags(unit, None, None).flags) == f"/{RELATIVE}"


def test_a_relative_config_file_of_a_dockerd_outside_docker_service_stops_the_gather() -> None:
    """No unit says where such a dockerd runs from: which file it reads is not known."""
    with pytest.raises(CommandError, match=f"sets --config-file={RELATIVE}, a relative path"):
        engine_flags(None, f"/usr/bin/dockerd\0--config-file\0{RELATIVE}\0".encode(), "42")


@given(st.lists(st.sampled_from(["a", "b", "..", "."]), min_size=1, max_size=6))
def test_a_resolved_config_file_is_always_absolute_and_normal(parts: list[str]) -> None:
    relative = "/".join(parts)
    flags = engine_flags(unit_starting(["--config-file", relative], "/srv/w"), None, None).flags
    opened = config_file_flag(flags)
    assert opened is not None and opened.startswith("/") and posixpath.normpath(opened) == opened
    assert opened == posixpath.normpath(posixpath.join("/srv/w", relative))


def gather_with(record: str, payload: str) -> str:
    return "\n".join(["@@ta begin 1", "@@ta certs-dir", f"@@ta {record}", b64(payload), "@@ta end"]) + "\n"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def gather_with_owners(*lines: str) -> str:
    """A live host's gather whose one stat said ``lines`` ("<uid> <mode> <path>"), certs.d's own first."""
    return (
        "\n".join(["@@ta begin 1", "@@ta certs-dir", *(f"@@ta owner {line}" for line in lines), "@@ta end"])
        + "\n"
    )


SAFE_ABOVE = ("0 755 /etc", "0 755 /etc/docker", "0 755 /etc/docker/certs.d")
WRITABLE = (
    "is writable by a user other than root: trust-agent does not write there (make it root's alone: "
    "chown root, chmod go-w)"
)


@pytest.mark.parametrize(
    ("owners", "said"),
    [
        (
            ("0 755 /etc", "0 755 /etc/docker", "0 1777 /etc/docker/certs.d"),
            f"/etc/docker/certs.d {WRITABLE}",
        ),
        (("0 755 /etc", "0 775 /etc/docker", "1000 755 /etc/docker/certs.d"), f"/etc/docker {WRITABLE}"),
        (
            ("0 755 /etc", "0 755 /etc/docker", "1000 755 /etc/docker/certs.d"),
            f"/etc/docker/certs.d {WRITABLE}",
        ),
    ],
    ids=["world-writable", "parent-writable-first", "not-roots"],
)
def test_a_certs_d_the_apply_would_not_write_in_is_a_fact_in_the_applys_words(
    owners: tuple[str, ...], said: str
) -> None:
    """plan and verify said "pending" where the rollout then refused the host for certs.d itself (the
    planner blocks a write there, verify fails CA files there: test_docker_plan). The first unsafe one is
    named, as the apply's find names it."""
    assert parse_gather_output(gather_with_owners(*owners)).certs_dir_problem == said


def test_a_certs_d_link_to_nothing_is_a_fact_and_safe_directories_are_none() -> None:
    dangling = parse_gather_output(gather_with("certs-dir-dangling", "/srv/missing"))
    assert dangling.certs_dir_problem == (
        "/etc/docker/certs.d is a link to /srv/missing, which does not exist: create the target directory "
        "or remove the link"
    )
    assert parse_gather_output(gather_with_owners(*SAFE_ABOVE)).certs_dir_problem is None
    # A registry's directory or CA file of another user's is the planner's to judge, not certs.d's problem.
    theirs = parse_gather_output(
        gather_with_owners(*SAFE_ABOVE, "1000 777 /etc/docker/certs.d/registry.test")
    )
    assert theirs.certs_dir_problem is None and theirs.cert_owners == {"registry.test": (1000, 0o777)}
    # In a --root tree the directories are the image's: their owners are as the build left them.
    tree = gather_with_owners("1000 777 /tmp/t/etc/docker/certs.d")
    assert parse_gather_output(tree, root="/tmp/t").certs_dir_problem is None
