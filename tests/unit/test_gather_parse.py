"""Parsing the gather script's output, and running it against a directory tree."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.engine.gather import (
    GATHER_SCRIPT,
    LINK_CHAIN_FUNCTION,
    _records,
    config_file_flag,
    engine_flags,
    gather,
    gather_host,
    leftovers_of,
    live_info,
    parse_gather_output,
    unit_lines,
)
from agent.engine.host_plan import insecure_flag_warnings, plan_for_host, unit_blockers
from agent.engine.options import RunOptions
from agent.engine.reconcile import reconcile
from agent.engine.verify import (
    expected_insecure,
    live_config_unjudged,
    lookup_failures,
    resolve_command,
    resolved_addresses,
)
from agent.errors import CommandError
from agent.hosts.base import CommandResult, Transport
from agent.hosts.local import LocalTransport
from agent.runtimes.docker import plan_docker, reads_invalid_utf8
from agent.runtimes.docker_facts import CERTS_DIR, DockerFacts
from agent.runtimes.plan import HostPlan
from agent.trust import TrustPolicy
from tests.unit.test_docker_plan import ca_policy

UNIT = b"""# /lib/systemd/system/docker.service
[Service]
ExecStart=/usr/sbin/dockerd -H fd:// $DOCKER_OPTS
ExecReload=/bin/kill -s HUP $MAINPID

# /etc/systemd/system/docker.service.d/override.conf
[Service]
ExecStart=
ExecStart=/usr/sbin/dockerd -H fd:// --insecure-registry=old.test --config-file /etc/docker/other.json
"""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_effective_exec_start_and_its_file_are_found_through_drop_in_resets() -> None:
    flags = engine_flags(UNIT, None, None)
    assert flags.source == "/etc/systemd/system/docker.service.d/override.conf"
    assert "--insecure-registry=old.test" in flags.flags
    assert config_file_flag(flags.flags) == "/etc/docker/other.json"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--config-file", "/etc/a.json", "--config-file=/etc/b.json"), "/etc/b.json"),
        (("--config-file=/etc/a.json", "--debug", "--config-file", "/etc/b.json"), "/etc/b.json"),
        (("--config-file=/etc/a.json",), "/etc/a.json"),
        (("--debug", "--config-file"), None),
        (("--config-files=/etc/a.json",), None),
    ],
)
def test_the_config_file_is_the_last_one_given_as_dockerd_takes_it(
    flags: tuple[str, ...], expected: str | None
) -> None:
    assert config_file_flag(flags) == expected


DEBIAN_UNIT = b"""# /lib/systemd/system/docker.service
[Service]
EnvironmentFile=-/etc/default/docker
ExecStart=/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock $DOCKER_OPTS
"""


def test_a_variable_in_exec_start_is_never_passed_on_as_a_literal_flag() -> None:
    # Without the running daemon's command line, an unknown $VAR is dropped as if unset...
    flags = engine_flags(DEBIAN_UNIT, None, None)
    assert flags == type(flags)(
        ("-H", "fd://", "--containerd=/run/containerd/containerd.sock"), "/lib/systemd/system/docker.service"
    )
    # ...the running daemon's command line adds what it runs with that the unit no longer gives...
    cmdline = b"/usr/sbin/dockerd\0-H\0fd://\0--insecure-registry=legacy:5000\0"
    flags = engine_flags(DEBIAN_UNIT, cmdline, "99")
    assert flags.flags == (
        "-H",
        "fd://",
        "--containerd=/run/containerd/containerd.sock",
        "--insecure-registry=legacy:5000",
    )
    assert flags.source == "/lib/systemd/system/docker.service and /proc/99/cmdline"
    # ...and the environment file gives what the next start will run with.
    env = {
        "/etc/default/docker": '# DOCKER_OPTS="--dns 8.8.8.8"\nDOCKER_OPTS="--insecure-registry=10.9.9.9 --debug"\n'
    }
    flags = engine_flags(DEBIAN_UNIT, None, None, env)
    assert flags.flags[-2:] == ("--insecure-registry=10.9.9.9", "--debug")
    assert flags.source == "/lib/systemd/system/docker.service ($DOCKER_OPTS from /etc/default/docker)"


def test_the_environment_follows_systemds_order_and_resets() -> None:
    unit = b"""# /lib/systemd/system/docker.service
[Service]
Environment="OPTS=--debug" CFG=/etc/docker/a.json
EnvironmentFile=-/etc/default/docker
ExecStart=/usr/sbin/dockerd $OPTS --config-file=${CFG} $UNSET ${UNSET}x

# /etc/systemd/system/docker.service.d/env.conf
[Service]
EnvironmentFile=
EnvironmentFile=-/etc/docker/env
"""
    env = {
        "/etc/default/docker": "OPTS=--ignored\n",
        "/etc/docker/env": "export OPTS='--tls  --iptables=false'\n",
    }
    flags = engine_flags(unit, None, None, env)
    # /etc/default/docker was reset by the drop-in; the file after it overrides Environment=.
    assert flags.flags == ("--tls", "--iptables=false", "--config-file=/etc/docker/a.json", "x")
    assert flags.source == (
        "/lib/systemd/system/docker.service ($OPTS from /etc/docker/env, "
        "$CFG from /lib/systemd/system/docker.service)"
    )


def test_proc_cmdline_is_the_fallback_without_systemd() -> None:
    flags = engine_flags(None, b"/usr/bin/dockerd\0--debug\0", "42")
    assert flags == type(flags)(("--debug",), "/proc/42/cmdline")


def test_parse_output_of_a_systemd_host() -> None:
    text = "\n".join(
        [
            "@@ta begin 1",
            "@@ta dir registry.test",
            "@@ta file registry.test/trust-agent-storage-ca.crt",
            b64(b"CA\n"),
            "@@ta name registry.test/client.key",
            "@@ta dir empty.test",
            "@@ta daemon-json",
            b64(b'{"debug": true}'),
            "@@ta dockerd-version Docker version 20.10.24+dfsg1, build 297e128",
            "@@ta validate no",
            "@@ta init systemd",
            "@@ta unit-text 5eed",
            *UNIT.decode().splitlines(),
            "@@ta unit-end 5eed",
            "@@ta active active",
            "@@ta end",
        ]
    )
    facts = parse_gather_output(text)
    assert facts.certs == {
        "registry.test/trust-agent-storage-ca.crt": b"CA\n",
        "registry.test/client.key": b"",
    }
    assert facts.cert_dirs == frozenset({"registry.test", "empty.test"})
    assert facts.daemon_json == b'{"debug": true}'
    assert facts.engine_version == "20.10.24"
    assert facts.has_validate is False
    assert facts.init == "systemd" and facts.engine_running
    assert facts.flags_source.endswith("override.conf")  # type: ignore[union-attr]


def test_certs_d_is_present_when_the_gather_says_so_or_lists_anything_under_it() -> None:
    def present(*records: str) -> bool:
        return parse_gather_output("\n".join(["@@ta begin 1", *records, "@@ta end"])).certs_dir_present

    assert not present()
    assert present("@@ta certs-dir")
    assert present("@@ta dir registry.test")


def test_a_symlinked_daemon_json_is_known_by_its_resolved_target_and_odd_answers_by_none() -> None:
    def link(answer: str | None) -> str | None:
        records = [] if answer is None else ["@@ta daemon-json-link", b64(answer.encode()) if answer else ""]
        facts = parse_gather_output("\n".join(["@@ta begin 1", *records, "@@ta end"]))
        assert facts.daemon_json_path == "/etc/docker/daemon.json"
        return facts.daemon_json_link

    assert link(None) is None
    assert link("/srv/docker/daemon.json\n") == "/srv/docker/daemon.json"
    for unusable in ("", "srv/daemon.json\n", "/srv/../etc/daemon.json\n", "/srv/a\nb\n", "/srv/a\x1b\n"):
        assert link(unusable) == "", unusable


@pytest.mark.parametrize("daemon_json", ["/etc/docker/daemon.json", "/etc/docker/other.json"])
def test_a_daemon_json_reached_through_a_directory_another_user_can_write_fails_naming_the_hop(
    daemon_json: str,
) -> None:
    """The gather found a hop of daemon.json's chain of links in a directory another user can write in
    (and read nothing through it): the host fails, naming the directory and the hop."""
    hop = b"/home/eve/docker\n/etc/docker/daemon.json\n/home/eve/docker/daemon.json"
    text = "\n".join(["@@ta begin 1", "@@ta daemon-json-unsafe-hop", b64(hop), "@@ta end"])
    with pytest.raises(CommandError) as raised:
        parse_gather_output(text, daemon_json)
    said = str(raised.value)
    assert said.startswith(
        f"/home/eve/docker is writable by a user other than root, and {daemon_json} is reached through it "
        "(the link /etc/docker/daemon.json -> /home/eve/docker/daemon.json): "
    ), said
    assert said.endswith("; nothing written")


def test_the_link_walk_names_the_directory_of_a_link_others_can_write_in(tmp_path: Path) -> None:
    """Whoever can write in the directory a link is in can replace the link: that directory is named,
    with the hop, and nothing after it is walked."""
    docker = tmp_path / "etc/docker"
    docker.mkdir(parents=True)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf/daemon.json").write_bytes(b"{}")
    link = docker / "daemon.json"
    link.symlink_to("../../conf/daemon.json")
    docker.chmod(0o777)
    walk = LINK_CHAIN_FUNCTION + 'ta_link_chain "$1"; echo "$?|$ta_n|${ta_bad:-}|$ta_hop|$ta_to"'
    result = LocalTransport().run(f"sh -s -- {link}", stdin=walk.encode())
    assert result.stdout.decode() == f"1|1|{docker}|{link}|../../conf/daemon.json\n", result.stderr


def test_the_unit_text_is_read_up_to_its_own_end_line_only() -> None:
    # Lines of a unit that look like records are the unit's: only the end line with the nonce ends it.
    unit = "# /etc/systemd/system/docker.service\n[Service]\n@@ta end\n@@ta state\n@@ta unit-end other\n"
    unit += "ExecStart=/usr/sbin/dockerd --debug\n"
    lines = [
        "@@ta begin 1",
        "@@ta init systemd",
        "@@ta unit-text 9a1f",
        *unit.splitlines(),
        "@@ta unit-end 9a1f",
    ]
    facts = parse_gather_output("\n".join([*lines, "@@ta active active", "@@ta end"]))
    assert facts.dockerd_flags == ("--debug",)
    assert facts.flags_source == "/etc/systemd/system/docker.service"
    assert facts.state is None and facts.engine_running
    with pytest.raises(CommandError, match="no end"):
        parse_gather_output("\n".join([*lines[:-1], "@@ta active active", "@@ta end"]))


@pytest.mark.parametrize(("version", "validate"), [("20.10.24", False), ("26.1.5", True)])
def test_the_engine_info_line_gives_version_validate_and_live_config(version: str, validate: bool) -> None:
    info = {"ServerVersion": version, "RegistryConfig": {"IndexConfigs": {"r.test": {"Secure": False}}}}
    text = "\n".join(
        [
            "@@ta begin 1",
            "@@ta info-json",
            json.dumps(info),
            "@@ta init systemd",
            "@@ta active active",
            "@@ta end",
        ]
    )
    facts = parse_gather_output(text)
    assert facts.engine_version == version and facts.has_validate is validate
    assert live_info(text) == info


@pytest.mark.parametrize(
    ("line", "version", "validate"), [("20.10.24+dfsg1", "20.10.24", False), ("26.1.5", "26.1.5", True)]
)
def test_the_version_alone_comes_from_ping(line: str, version: str, validate: bool) -> None:
    text = "\n".join(
        ["@@ta begin 1", f"@@ta engine-version {line}", "@@ta init systemd", "@@ta active active", "@@ta end"]
    )
    facts = parse_gather_output(text)
    assert facts.engine_version == version and facts.has_validate is validate and facts.engine_running
    assert live_info(text) is None


CLI_WITHOUT_ENGINE = '{"ServerErrors":["Cannot connect to the Docker daemon"],"ClientInfo":{"Debug":false}}'


@pytest.mark.parametrize(
    "answer", ["", "{not json", '["a list"]', '{"ServerVersion": "20.10.2', CLI_WITHOUT_ENGINE]
)
def test_no_or_a_broken_engine_answer_is_no_info(answer: str) -> None:
    text = "\n".join(["@@ta begin 1", "@@ta info-json", answer, "@@ta dockerd-version x", "@@ta end"])
    assert live_info(text) is None
    assert parse_gather_output(text).engine_version is None


@pytest.mark.parametrize("text", ["", "garbage", "@@ta begin 1\n@@ta daemon-json\n!!!notbase64\n@@ta end"])
def test_unexpected_output_is_a_command_error(text: str) -> None:
    with pytest.raises(CommandError):
        parse_gather_output(text)


def test_gather_reads_only_its_own_cert_files_from_a_tree(tmp_path: Path) -> None:
    certs = tmp_path / "etc/docker/certs.d/registry.test"
    certs.mkdir(parents=True)
    (certs / "client.key").write_bytes(b"SECRET KEY")
    (certs / "trust-agent-storage-ca.crt").write_bytes(b"CA\n")
    (certs / "with space.crt").write_bytes(b"x")
    (tmp_path / "etc/docker/daemon.json").write_bytes(b"{}")
    facts = gather(LocalTransport(), root=str(tmp_path))
    assert facts.certs == {
        "registry.test/client.key": b"",
        "registry.test/trust-agent-storage-ca.crt": b"CA\n",
        "registry.test/with space.crt": b"",
    }
    assert facts.daemon_json == b"{}"
    assert facts.init is None and facts.engine_version is None


def test_a_symlinked_daemon_json_in_a_tree_is_read_but_not_resolved(tmp_path: Path) -> None:
    # In a --root tree an absolute link means a path inside the tree: readlink -f would leave it.
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv/daemon.json").write_bytes(b'{"debug": true}')
    (tmp_path / "etc/docker").mkdir(parents=True)
    (tmp_path / "etc/docker/daemon.json").symlink_to("../../srv/daemon.json")
    facts = gather(LocalTransport(), root=str(tmp_path))
    assert facts.daemon_json == b'{"debug": true}'
    assert facts.daemon_json_link == ""
    (tmp_path / "etc/docker/daemon.json").unlink()
    (tmp_path / "etc/docker/daemon.json").write_bytes(b"{}")
    assert gather(LocalTransport(), root=str(tmp_path)).daemon_json_link is None


@pytest.mark.parametrize(
    ("records", "running", "elsewhere"),
    [
        (["@@ta active active"], True, False),
        (["@@ta active reloading"], True, False),
        (["@@ta active inactive"], False, False),  # docker.service stopped, no dockerd
        (["@@ta active inactive", "@@ta pid 4242", "@@ta cmdline", b64(b"dockerd\0-H\0unix://\0")], False, True),
        (["@@ta engine-version 20.10.24", "@@ta active inactive"], False, True),  # it answered
        (["@@ta active failed", "@@ta info-json", '{"ServerVersion": "26.1.5"}'], False, True),
        (["@@ta active activating", "@@ta pid 4242", "@@ta cmdline", b64(b"dockerd\0")], False, False),
    ],
)  # fmt: skip
def test_a_dockerd_running_outside_docker_service_is_told_from_a_stopped_one(
    records: list[str], running: bool, elsewhere: bool
) -> None:
    facts = parse_gather_output("\n".join(["@@ta begin 1", "@@ta init systemd", *records, "@@ta end"]))
    assert (facts.engine_running, facts.engine_elsewhere) == (running, elsewhere)


@pytest.mark.parametrize(("records", "snap"), [(["@@ta snap-docker"], True), ([], False)])
def test_docker_from_the_snap_is_reported(records: list[str], snap: bool) -> None:
    facts = parse_gather_output("\n".join(["@@ta begin 1", "@@ta init systemd", *records, "@@ta end"]))
    assert facts.snap_docker is snap


def test_the_login_is_known_from_the_gather_and_read_with_no_process(tmp_path: Path) -> None:
    facts = parse_gather_output("@@ta begin 1\n@@ta uid 1001\n@@ta init systemd\n@@ta end\n")
    assert facts.login_uid == 1001
    assert parse_gather_output("@@ta begin 1\n@@ta end\n").login_uid is None
    # The script's own line, run here (as whoever runs the tests): /proc/self/status's real uid.
    start = GATHER_SCRIPT.index("  while read -r k v _;")
    line = GATHER_SCRIPT[start : GATHER_SCRIPT.index("\n", start)]
    out = LocalTransport("here").run(line).stdout.decode()
    assert out == f"@@ta uid {os.getuid()}\n"


def test_a_link_under_the_agents_own_name_other_than_a_ca_file_is_listed_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret-hash:20000:0:99999:7:::\n")
    certs = tmp_path / "etc/docker/certs.d/registry.test"
    certs.mkdir(parents=True)
    (certs / "trust-agent-notes").symlink_to(secret)
    state = tmp_path / "var/lib/trust-agent"
    state.mkdir(parents=True)
    (state / "docker-state.json").symlink_to(secret)
    facts = gather(LocalTransport(), root=str(tmp_path))
    assert facts.certs == {"registry.test/trust-agent-notes": b""}  # by name, as others' files
    assert facts.state is None


@pytest.mark.parametrize("target", ["shadow", "elsewhere.crt", "missing"])
def test_a_ca_file_that_is_a_link_stops_the_gather_saying_to_remove_it_and_reads_nothing(
    tmp_path: Path, target: str
) -> None:
    """Before, it was listed with no content: plan and verify showed the CA as a new file to write
    ("pending"), and only the apply refused the link, with no word of what to do."""
    (tmp_path / "shadow").write_text("root:$6$secret-hash:20000:0:99999:7:::\n")
    (tmp_path / "elsewhere.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIBother\n")
    certs = tmp_path / "etc/docker/certs.d/registry.test"
    certs.mkdir(parents=True)
    link = certs / "trust-agent-storage-ca.crt"
    link.symlink_to(tmp_path / target)
    with pytest.raises(CommandError) as caught:
        gather(LocalTransport(), root=str(tmp_path))
    said = str(caught.value)
    assert said.startswith(f"{link} is a symbolic link, which trust-agent does not follow"), said
    assert said.endswith("remove it, then run again (nothing written)"), said
    assert "secret-hash" not in said and "MIIBother" not in said


def test_ca_files_and_their_directories_are_reported_with_owner_and_mode(tmp_path: Path) -> None:
    """Only the agent's own CA files and the directories holding them are asked about (one stat)."""
    certs = tmp_path / "etc/docker/certs.d"
    (certs / "registry.test").mkdir(parents=True)
    (certs / "registry.test:443").mkdir()
    (certs / "other.test").mkdir()
    (certs / "registry.test/trust-agent-storage-ca.crt").write_bytes(b"ca")
    (certs / "registry.test/trust-agent-storage-ca.crt").chmod(0o666)
    (certs / "registry.test:443/trust-agent-registry-ca.crt").write_bytes(b"ca")
    (certs / "registry.test:443/trust-agent-registry-ca.crt").chmod(0o644)
    (certs / "registry.test:443").chmod(0o777)
    (certs / "other.test/ca.crt").write_bytes(b"theirs")
    facts = gather(LocalTransport(), root=str(tmp_path))
    uid = os.getuid()
    assert dict(facts.cert_owners) == {
        "registry.test": (uid, 0o755),
        "registry.test/trust-agent-storage-ca.crt": (uid, 0o666),
        "registry.test:443": (uid, 0o777),
        "registry.test:443/trust-agent-registry-ca.crt": (uid, 0o644),
    }


def test_a_host_without_the_agents_ca_files_runs_no_stat(tmp_path: Path) -> None:
    """The gather's cost where there is nothing to ask about stays what it was: no stat process."""
    (tmp_path / "etc/docker/certs.d/other.test").mkdir(parents=True)
    (tmp_path / "etc/docker/certs.d/other.test/ca.crt").write_bytes(b"theirs")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    called = tmp_path / "stat-called"
    (bin_dir / "stat").write_text(f'#!/bin/sh\ntouch {called}\nexec /usr/bin/stat "$@"\n')
    (bin_dir / "stat").chmod(0o755)
    script = f"PATH={bin_dir}:$PATH; export PATH\n{GATHER_SCRIPT}"
    out = LocalTransport().run_script(
        script, str(tmp_path), "/etc/docker/daemon.json", "", "n0nce", timeout=30
    )
    assert out.ok and b"@@ta end" in out.stdout
    assert not called.exists()
    (tmp_path / "etc/docker/certs.d/other.test/trust-agent-storage-ca.crt").write_bytes(b"ca")
    out = LocalTransport().run_script(
        script, str(tmp_path), "/etc/docker/daemon.json", "", "n0nce", timeout=30
    )
    assert called.exists() and b"@@ta owner " in out.stdout


@pytest.mark.parametrize(
    ("line", "owners"),
    [
        (
            "@@ta owner 0 644 /etc/docker/certs.d/r/trust-agent-storage-ca.crt",
            {"r/trust-agent-storage-ca.crt": (0, 0o644)},
        ),
        ("@@ta owner 65534 2777 /etc/docker/certs.d/r:443", {"r:443": (65534, 0o2777)}),
        ("@@ta owner x 644 /etc/docker/certs.d/r", {}),
        ("@@ta owner 0 9z /etc/docker/certs.d/r", {}),
        ("@@ta owner 0 644 /elsewhere/r", {}),
    ],
)
def test_owner_records_are_read_relative_to_certs_d_and_odd_ones_dropped(
    line: str, owners: dict[str, tuple[int, int]]
) -> None:
    facts = parse_gather_output(f"@@ta begin 1\n@@ta certs-dir\n{line}\n@@ta end\n")
    assert dict(facts.cert_owners) == owners


@pytest.mark.parametrize(
    "path",
    [
        "etc/docker/daemon.json",
        "etc/docker/certs.d/registry.test/trust-agent-storage-ca.crt",
        "var/lib/trust-agent/docker-state.json",
    ],
)
def test_a_directory_where_the_agent_keeps_a_file_stops_the_gather_naming_it(
    tmp_path: Path, path: str
) -> None:
    (tmp_path / "etc/docker/certs.d/registry.test").mkdir(parents=True)
    (tmp_path / path).mkdir(parents=True)
    with pytest.raises(CommandError) as caught:
        gather(LocalTransport(), root=str(tmp_path))
    assert str(caught.value).startswith(f"{tmp_path}/{path} is a directory, not a file: ")
    assert str(caught.value).endswith("remove it or move it away, then run again (nothing written)")


def test_directories_the_agent_does_not_write_are_left_to_others(tmp_path: Path) -> None:
    certs = tmp_path / "etc/docker/certs.d/registry.test"
    (certs / "notes.crt").mkdir(parents=True)
    (certs / "trust-agent-notes").mkdir()  # not a CA file's name: the agent writes nothing there
    (certs / "trust-agent-storage-ca.crt").write_bytes(b"CA\n")
    (tmp_path / "srv/config").mkdir(parents=True)
    (tmp_path / "etc/docker/daemon.json").symlink_to(tmp_path / "srv/config")  # a link: the planner's case
    facts = gather(LocalTransport(), root=str(tmp_path))
    assert facts.certs == {"registry.test/trust-agent-storage-ca.crt": b"CA\n"}


def test_each_non_file_is_named_with_what_it_breaks() -> None:
    text = "\n".join(
        [
            "@@ta begin 1",
            "@@ta not-file directory /etc/docker/certs.d/r/trust-agent-storage-ca.crt",
            "@@ta not-file special /etc/docker/daemon.json",
            "@@ta end",
        ]
    )
    with pytest.raises(CommandError) as caught:
        parse_gather_output(text)
    ca, config = str(caught.value).split("; remove it or move it away, then run again (nothing written); ")
    assert ca.startswith("/etc/docker/certs.d/r/trust-agent-storage-ca.crt is a directory, not a file: ")
    assert "fails on this one" in ca
    assert config.startswith("/etc/docker/daemon.json is not a regular file: ")
    assert "refuses every reload and will not start" in config


ACTIVE_UNIT = """# /usr/lib/systemd/system/docker.service
[Service]
EnvironmentFile=-/etc/default/docker
ExecStart=/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock $DOCKER_OPTS
ExecReload=/bin/kill -s HUP $MAINPID
"""


def a_gather(*records: str, unit: str = ACTIVE_UNIT, cmdline: bytes | None = None) -> str:
    """The gather's output for an active docker.service (its engine answering where no record says
    otherwise), with ``records`` and the running dockerd's ``cmdline``."""
    lines = ["@@ta begin 1", "@@ta uid 0", "@@ta dockerd-version Docker version 26.1.5, build a72d7cd"]
    lines += ["@@ta init systemd", "@@ta unit-text n", *unit.splitlines(), "@@ta unit-end n"]
    lines += ["@@ta active active", *records]
    if cmdline is not None:
        lines += ["@@ta pid 42", "@@ta cmdline", b64(cmdline)]
    return "\n".join([*lines, "@@ta end"]) + "\n"


RUNNING_WITH_OTHER_FILE = b"\0".join(
    [
        b"/usr/sbin/dockerd",
        b"-H",
        b"fd://",
        b"--containerd=/run/containerd/containerd.sock",
        b"--config-file",
        b"/etc/docker/other.json",
        b"",
    ]
)


def test_the_running_dockerds_own_config_file_is_seen_beside_its_units() -> None:
    """A --config-file drop-in removed, daemon-reload, no restart: only the unit was read, and the plan
    reloaded a dockerd that reads another file, waited 20 s and rolled back."""
    facts = parse_gather_output(a_gather(cmdline=RUNNING_WITH_OTHER_FILE))
    assert config_file_flag(facts.running_flags) == "/etc/docker/other.json"
    assert facts.unit_flags is not None and config_file_flag(facts.unit_flags) is None
    assert config_file_flag(facts.next_start_flags) is None  # the file to write is the unit's
    blockers = unit_blockers(facts, HostPlan(engine_action="reload"))
    assert blockers == [
        "the running dockerd was started with --config-file=/etc/docker/other.json, but docker.service now "
        "starts it with /etc/docker/daemon.json: a reload would load /etc/docker/other.json, its next start "
        "/etc/docker/daemon.json; restart dockerd (systemctl restart docker.service) so that both read one "
        "file, then run again (nothing written)"
    ]
    same = b"\0".join(
        [b"/usr/sbin/dockerd", b"-H", b"fd://", b"--containerd=/run/containerd/containerd.sock", b""]
    )
    assert unit_blockers(parse_gather_output(a_gather(cmdline=same)), HostPlan(engine_action="reload")) == []


def test_the_running_dockerds_command_line_is_read_while_docker_service_runs() -> None:
    """The gather's branch for a running docker.service (its invocation link there) read no PID."""
    start = GATHER_SCRIPT.index('      echo "@@ta active active"')
    branch = GATHER_SCRIPT[start : GATHER_SCRIPT.index("    else", start)]
    assert "read -r p < /var/run/docker.pid" in branch
    assert 'ta_cmdline "$p"' in branch


def test_a_masked_unit_is_reported_and_refuses_a_reload_before_anything_is_written() -> None:
    masked = parse_gather_output(
        a_gather(unit="# Unit docker.service is masked.", cmdline=RUNNING_WITH_OTHER_FILE)
    )
    assert masked.unit_masked and masked.engine_running
    (blocker,) = unit_blockers(masked, HostPlan(engine_action="reload"))
    assert blocker.startswith(
        "docker.service is masked: systemctl cannot reload or restart it (the plan needs"
    )
    assert unit_blockers(masked, HostPlan(engine_action="none")) == []  # certs.d alone: no job asked
    assert not parse_gather_output(a_gather()).unit_masked


@pytest.mark.parametrize(
    ("records", "why"),
    [
        (["@@ta socket-absent", "@@ta info-json", ""], "the socket file is gone"),
        (["@@ta info-json", '{"ServerErrors":["Cannot connect"],"ClientInfo":{}}'], "the docker CLI got no"),
    ],
)
def test_an_active_unit_whose_socket_does_not_answer_stops_the_gather(records: list[str], why: str) -> None:
    """The plan said "pending reload" with no engine version; the rollout reloaded, waited 20 s for a
    live config it could not read, and rolled back, at every run."""
    with pytest.raises(CommandError) as caught:
        parse_gather_output(a_gather(*records))
    said = str(caught.value)
    assert said.startswith(f"docker.service is active but /var/run/docker.sock does not answer ({why}")
    assert said.endswith("then run again (nothing written)")


@pytest.mark.parametrize(
    "text",
    [
        # A login that is not root: the socket is root's.
        a_gather("@@ta socket-absent").replace("@@ta uid 0", "@@ta uid 1000"),
        # dockerd serves its API only over tcp: the planner names that.
        a_gather("@@ta socket-absent", unit=ACTIVE_UNIT.replace("-H fd://", "-H tcp://127.0.0.1:2375")),
        # The engine answered.
        a_gather("@@ta info-json", json.dumps({"ServerVersion": "26.1.5"})),
        # docker.service stopped: nothing to ask.
        a_gather("@@ta socket-absent").replace("@@ta active active", "@@ta active inactive"),
    ],
)
def test_a_socket_that_cannot_answer_for_a_known_reason_is_no_failure(text: str) -> None:
    parse_gather_output(text)


# daemon.json as a person edited it: a comment and a trailing comma (dockerd refuses both).
COMMENTED = b'{\n  // the proxy\n  "debug": true,\n}\n'


@pytest.mark.parametrize("daemon_json", [COMMENTED, b'{"debug": true,}\n', b'{"debug": tru}'])
def test_a_daemon_json_that_cannot_be_parsed_leaves_the_live_config_unjudged(daemon_json: bytes) -> None:
    said = live_config_unjudged(daemon_json, "/etc/docker/daemon.json")
    assert said is not None and said.startswith(
        "live config not compared with daemon.json (/etc/docker/daemon.json: not valid JSON"
    )


@pytest.mark.parametrize("daemon_json", [None, b"", b'{"insecure-registries": ["registry.test"]}'])
def test_a_daemon_json_absent_empty_or_valid_is_compared_with_the_live_config(
    daemon_json: bytes | None,
) -> None:
    assert live_config_unjudged(daemon_json, "/etc/docker/daemon.json") is None


class GatheredHost(Transport):
    """A host that answers the gather with ``gathered`` and refuses every other script (recorded)."""

    name = "h1"

    def __init__(self, gathered: str) -> None:
        self.gathered = gathered
        self.others: list[str] = []

    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        if stdin.decode() == GATHER_SCRIPT:
            return CommandResult(0, self.gathered.encode(), b"")
        self.others.append(stdin.decode())
        return CommandResult(1, b"", b"not this host's")

    def docker_api(self, timeout: float = 30.0) -> None:
        raise AssertionError("no canary was asked for")


def test_a_converged_host_whose_daemon_json_cannot_be_parsed_is_not_judged_by_its_live_config() -> None:
    """dockerd still runs an older valid daemon.json listing the registry as insecure; the file as it is
    (a comment) is left alone by the planner in CA mode. Read as {}, it made the verify wait for a live
    config that could never come and fail the host: now it compares nothing, and says so."""
    policy = ca_policy("registry.test")
    applied = plan_docker(policy, DockerFacts(daemon_json=COMMENTED, init="systemd", engine_running=True))
    written = {c.path: c.after or b"" for c in applied.changes}
    prefix = CERTS_DIR + "/"
    files = [
        f"@@ta file {p.removeprefix(prefix)}\n{b64(data)}"
        for p, data in written.items()
        if p.startswith(prefix)
    ]
    info = {
        "ServerVersion": "26.1.5",
        "RegistryConfig": {"IndexConfigs": {"registry.test": {"Secure": False}}},
    }
    gathered = a_gather(
        "@@ta certs-dir",
        "@@ta dir registry.test",
        *files,
        f"@@ta daemon-json\n{b64(COMMENTED)}",
        f"@@ta state\n{b64(written['/var/lib/trust-agent/docker-state.json'])}",
        f"@@ta info-json\n{json.dumps(info)}",
    )
    host = GatheredHost(gathered)
    outcome = reconcile(host, policy, RunOptions(verify_timeout=0.5))
    assert (outcome.status, outcome.error, outcome.verified) == ("unchanged", None, ())
    assert outcome.warnings[-1].startswith(
        "live config not compared with daemon.json (/etc/docker/daemon.json: not valid JSON (line 2"
    ), outcome.warnings
    assert host.others == []  # no /info read again, no wait for a config that cannot come


def test_the_daemons_status_is_gathered_only_where_its_install_is(tmp_path: Path) -> None:
    from agent.engine.gather import GATHER_SCRIPT as script

    status = tmp_path / "var/lib/trust-agent/status.json"
    status.parent.mkdir(parents=True)
    status.write_text('{"state": "ok"}\n')
    (tmp_path / "etc/docker").mkdir(parents=True)

    def records() -> list[str]:
        done = subprocess.run(
            ["sh", "-s", "--", str(tmp_path), "/etc/docker/daemon.json", "api", "n0nce"],
            input=script, capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
        return [line for line in done.stdout.splitlines() if line.startswith("@@ta ")]

    assert "@@ta daemon-status" not in records()  # a status.json without the install: not the daemon's
    (tmp_path / "etc/trust-agent").mkdir(parents=True)
    (tmp_path / "etc/trust-agent/install.json").write_text("{}\n")
    assert "@@ta daemon-status" in records()


def test_verify_fails_a_host_whose_person_listed_a_ca_policys_registry_as_insecure() -> None:
    """The entry is a person's, loaded, and nothing the agent would change: verify said "unchanged" (exit
    0) while dockerd does not verify the registry's TLS. The rollout still leaves it, and warns."""
    policy = ca_policy("registry.test")
    person = b'{"insecure-registries": ["registry.test"]}\n'
    applied = plan_docker(policy, DockerFacts(daemon_json=person, init="systemd", engine_running=True))
    written = {c.path: c.after or b"" for c in applied.changes}
    prefix = CERTS_DIR + "/"
    files = [
        f"@@ta file {p.removeprefix(prefix)}\n{b64(d)}" for p, d in written.items() if p.startswith(prefix)
    ]
    info = {
        "ServerVersion": "26.1.5",
        "RegistryConfig": {"IndexConfigs": {"registry.test": {"Secure": False}}},
    }
    gathered = a_gather(
        "@@ta certs-dir",
        "@@ta dir registry.test",
        *files,
        f"@@ta daemon-json\n{b64(person)}",
        f"@@ta state\n{b64(written['/var/lib/trust-agent/docker-state.json'])}",
        f"@@ta info-json\n{json.dumps(info)}",
    )
    verified = reconcile(GatheredHost(gathered), policy, RunOptions(dry_run=True, verify=True))
    assert verified.status == "failed"
    assert verified.error == (
        "does not comply with the policy: registry.test: daemon.json lists it in insecure-registries, "
        "though the policy verifies its TLS: dockerd does not verify it"
    )
    rolled = reconcile(GatheredHost(gathered), policy, RunOptions(verify_timeout=0.5))
    assert (rolled.status, rolled.error, rolled.verified) == ("unchanged", None, ("live config",))
    assert any(
        "registry.test stays in insecure-registries (not added by trust-agent)" in w for w in rolled.warnings
    )


# --- what a run stopped part way leaves ----------------------------------------------------------------

LEFT = (
    "etc/docker/.trust-agent.4242.t1",
    "etc/docker/certs.d/registry.test/.trust-agent.4242.a2",
    "var/lib/trust-agent/.trust-agent.4242.a3",
)


def a_converged_tree_with_leftovers(root: Path) -> bytes:
    """``root`` as a CA rollout for registry.test leaves it, then a run killed part way: its files
    beside daemon.json and the CA file, and the record set aside (``LEFT``). Returns the record."""
    (root / "etc/docker").mkdir(parents=True)
    (root / "etc/docker/daemon.json").write_bytes(b"{}\n")
    outcome = reconcile(LocalTransport(), ca_policy("registry.test"), RunOptions(root=str(root)))
    assert outcome.status == "changed", outcome
    record_path = root / "var/lib/trust-agent/docker-state.json"
    record = record_path.read_bytes()
    for name in LEFT:
        (root / name).write_bytes(b"left\n")
    record_path.rename(root / LEFT[2])
    (root / "etc/docker/certs.d/registry.test/.trust-agent.notes").write_bytes(b"a person's\n")
    return record


def test_the_gather_names_a_stopped_runs_files_and_shows_its_record_put_back(tmp_path: Path) -> None:
    record = a_converged_tree_with_leftovers(tmp_path)
    gathered = gather_host(LocalTransport(), root=str(tmp_path))
    assert gathered.leftovers.files == tuple(sorted("/" + name for name in LEFT))
    assert gathered.leftovers.record_put_back == "/" + LEFT[2]
    assert gathered.facts.state == record
    # Not a person's file in certs.d: the agent's own leftovers, where a person's stays listed.
    assert sorted(gathered.facts.certs) == [
        "registry.test/.trust-agent.notes",
        "registry.test/trust-agent-storage-ca.crt",
    ]


def test_plan_says_a_stopped_runs_files_and_a_rollout_removes_them(tmp_path: Path) -> None:
    record = a_converged_tree_with_leftovers(tmp_path)
    policy = ca_policy("registry.test")
    planned = reconcile(LocalTransport(), policy, RunOptions(root=str(tmp_path), dry_run=True))
    assert planned.status == "unchanged", planned
    said = [w for w in planned.warnings if "stopped part way" in w]
    assert said == [
        "files left by a trust-agent run stopped part way (killed, or its connection dropped): "
        f"/{LEFT[0]}, /{LEFT[1]}; the next apply removes them under the host's lock; "
        f"/{LEFT[2]} is trust-agent's record /var/lib/trust-agent/docker-state.json, set aside by a run "
        "stopped part way, and the record is missing: the next apply puts it back (shown here in place)"
    ]
    assert all((tmp_path / name).exists() for name in LEFT)  # plan changes nothing

    rolled = reconcile(LocalTransport(), policy, RunOptions(root=str(tmp_path)))
    assert (rolled.status, rolled.error) == ("unchanged", None)
    assert any("this apply removed them under the host's lock" in w for w in rolled.warnings), rolled
    assert not list(tmp_path.rglob(".trust-agent.[0-9]*"))
    assert (tmp_path / "var/lib/trust-agent/docker-state.json").read_bytes() == record
    assert (tmp_path / "etc/docker/certs.d/registry.test/.trust-agent.notes").exists()
    again = reconcile(LocalTransport(), policy, RunOptions(root=str(tmp_path), dry_run=True))
    assert (again.status, [w for w in again.warnings if "stopped part way" in w]) == ("unchanged", [])


@pytest.mark.parametrize(
    ("record", "root", "kept"),
    [
        ("@@ta leftover /r/etc/docker/.trust-agent.12.t0", "/r", "/etc/docker/.trust-agent.12.t0"),
        ("@@ta leftover /etc/docker/.trust-agent.12.a3", "", "/etc/docker/.trust-agent.12.a3"),
        (  # the daemon.json backup's copy, cut short
            "@@ta leftover /var/lib/trust-agent/backup/.trust-agent.12.b0",
            "",
            "/var/lib/trust-agent/backup/.trust-agent.12.b0",
        ),
        ("@@ta leftover /etc/docker/.trust-agent.12.c0", "", None),
        ("@@ta leftover /etc/docker/.trust-agent.12.t0.txt", "", None),  # not a name a run gives
        ("@@ta leftover /etc/docker/.trust-agent.x.t0", "", None),
        ("@@ta leftover /elsewhere/etc/.trust-agent.1.t0", "/r", None),  # outside the tree
    ],
)
def test_leftover_records_are_host_paths_of_the_names_a_run_gives(
    record: str, root: str, kept: str | None
) -> None:
    records = _records(f"@@ta begin 1\n{record}\n@@ta end\n")
    assert leftovers_of(records, root).files == ((kept,) if kept else ())


# --- a daemon.json the login cannot read ------------------------------------------------------------


def a_tree_gather(*records: str) -> str:
    return "\n".join(["@@ta begin 1", *records, "@@ta end"]) + "\n"


@pytest.mark.parametrize(
    ("payload", "content", "why"),
    [
        ("!denied", None, "permission denied"),
        (b64(b'{"de') + "!", None, "read error"),
        ("", b"", None),
    ],
)
def test_a_daemon_json_that_cannot_be_read_is_told_from_an_empty_one(
    payload: str, content: bytes | None, why: str | None
) -> None:
    """The gather's read turned a refused one into empty content: the plan showed daemon.json as a
    new file holding insecure-registries alone."""
    facts = parse_gather_output(a_tree_gather("@@ta daemon-json", payload))
    assert (facts.daemon_json, facts.daemon_json_unreadable) == (content, why)


def test_the_gather_says_permission_denied_for_a_daemon_json_the_login_may_not_read() -> None:
    """Run as a login that is not root (uid 65534), on a tree whose daemon.json is root's 0600 (in a
    directory of /tmp that login can reach: pytest's own are root's alone)."""
    with tempfile.TemporaryDirectory(dir="/tmp") as tree:
        os.chmod(tree, 0o755)
        (Path(tree) / "etc/docker").mkdir(parents=True)
        (Path(tree) / "etc/docker/daemon.json").write_bytes(b'{"debug": true}')
        os.chmod(Path(tree) / "etc/docker/daemon.json", 0o600)
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-s", "--"]
        run = subprocess.run(
            [*argv, tree, "/etc/docker/daemon.json", "", "n"],
            input=GATHER_SCRIPT.encode(),
            capture_output=True,
            check=True,
        )
        facts = parse_gather_output(run.stdout.decode(), root=tree)
    assert (facts.daemon_json, facts.daemon_json_unreadable) == (None, "permission denied")


def unreadable_facts(**kw: object) -> DockerFacts:
    base: dict[str, object] = {"init": "systemd", "engine_version": "20.10.24", "engine_running": True}
    base.update(kw)
    return DockerFacts(daemon_json_unreadable="permission denied", **base)  # type: ignore[arg-type]


def test_a_daemon_json_that_cannot_be_read_is_never_planned_as_new_and_refuses_a_policy_that_needs_it() -> (
    None
):
    policy = TrustPolicy(
        registries=("registry.test",), storage_endpoint="s:9000", storage_scheme="https", insecure=True
    )
    plan = plan_for_host(
        policy, unreadable_facts(), None, restart_policy="auto", allow_restart=False, read_info=lambda: None
    ).plan
    assert all(change.path != "/etc/docker/daemon.json" for change in plan.changes), plan.changes
    assert any(
        b.startswith("/etc/docker/daemon.json cannot be read (permission denied): ") for b in plan.blockers
    ), plan.blockers


def test_a_daemon_json_that_cannot_be_read_is_said_where_the_policy_needs_no_change_there() -> None:
    plan = plan_for_host(
        ca_policy("registry.test"),
        unreadable_facts(),
        None,
        restart_policy="auto",
        allow_restart=False,
        read_info=lambda: None,
    ).plan
    assert not plan.blockers
    assert any("/etc/docker/daemon.json cannot be read (permission denied)" in w for w in plan.warnings)


# --- a certs.d directory that is a symbolic link ------------------------------------------------------


def linked_dir_gather(*records: str) -> str:
    return a_gather("@@ta certs-dir", "@@ta dir registry.test", *records)


def test_a_linked_certs_d_directory_is_judged_by_its_target_not_the_links_own_mode() -> None:
    """Every run was refused with "certs.d/registry.test/ is mode 0777": the link's own mode."""
    facts = parse_gather_output(
        linked_dir_gather(
            "@@ta dir-link registry.test",
            b64(b"/srv/regdir\n"),
            "@@ta link-owner 0 /etc/docker/certs.d/registry.test",
            "@@ta owner 0 755 /etc/docker/certs.d/registry.test",
        )
    )
    assert facts.cert_dir_links == {"registry.test": "/srv/regdir"}
    assert facts.cert_owners == {"registry.test": (0, 0o755)}
    assert facts.cert_dir_link_problems == {}
    plan = plan_for_host(
        ca_policy("registry.test"),
        facts,
        None,
        restart_policy="auto",
        allow_restart=False,
        read_info=lambda: None,
    ).plan
    assert not plan.blockers


@pytest.mark.parametrize(
    ("records", "said"),
    [
        (
            [
                "@@ta dir-unsafe-hop registry.test",
                b64(b"/srv\n/etc/docker/certs.d/registry.test\n/srv/regdir"),
                "@@ta link-owner 0 /etc/docker/certs.d/registry.test",
                "@@ta owner 0 755 /etc/docker/certs.d/registry.test",
            ],
            "/srv is writable by a user other than root, and /etc/docker/certs.d/registry.test is reached "
            "through it (the link /etc/docker/certs.d/registry.test -> /srv/regdir)",
        ),
        (
            [
                "@@ta dir-link registry.test",
                b64(b"/srv/regdir\n"),
                "@@ta link-owner 1000 /etc/docker/certs.d/registry.test",
                "@@ta owner 0 755 /etc/docker/certs.d/registry.test",
            ],
            "/etc/docker/certs.d/registry.test is a symbolic link owned by uid 1000, not root",
        ),
        (
            [
                "@@ta dir-link registry.test",
                b64(b"/srv/regdir\n"),
                "@@ta link-owner 0 /etc/docker/certs.d/registry.test",
                "@@ta owner 0 777 /etc/docker/certs.d/registry.test",
            ],
            "/etc/docker/certs.d/registry.test is a symbolic link to /srv/regdir, which is mode 0777 (group- and other-writable)",
        ),
    ],
)
def test_a_linked_certs_d_directory_that_cannot_be_trusted_refuses_the_host_naming_the_link(
    records: list[str], said: str
) -> None:
    facts = parse_gather_output(linked_dir_gather(*records))
    plan = plan_for_host(
        ca_policy("registry.test"),
        facts,
        None,
        restart_policy="auto",
        allow_restart=False,
        read_info=lambda: None,
    ).plan
    assert len(plan.blockers) == 1 and plan.blockers[0].startswith(said), plan.blockers
    assert plan.blockers[0].endswith("then run again (nothing written)")
    # Not a registry of the policy: not this run's to refuse.
    other = plan_for_host(
        ca_policy("other.test"),
        facts,
        None,
        restart_policy="auto",
        allow_restart=False,
        read_info=lambda: None,
    ).plan
    assert not other.blockers


def test_the_gather_walks_a_linked_certs_d_directory_and_reads_its_targets_owner(tmp_path: Path) -> None:
    """The gather's own shell, on this machine's root-owned /tmp tree (a live host's branch: R empty is
    not possible here, so the function is run by itself)."""
    target = tmp_path / "regdir"
    target.mkdir(mode=0o755)
    certs = tmp_path / "certs.d"
    certs.mkdir()
    (certs / "registry.test").symlink_to(target)
    start = GATHER_SCRIPT.index("ta_dir_link() {")
    function = GATHER_SCRIPT[start : GATHER_SCRIPT.index("\n}\n", start) + 3]
    run = subprocess.run(
        [
            "sh",
            "-c",
            LINK_CHAIN_FUNCTION + function + 'ta_dir_link "$1" registry.test',
            "sh",
            str(certs / "registry.test"),
        ],
        capture_output=True,
        check=True,
    )
    lines = run.stdout.decode().splitlines()
    # tmp_path's parents include /tmp (1777): the chain is refused, naming it.
    assert lines[0] == "@@ta dir-unsafe-hop registry.test", lines
    assert base64.b64decode(lines[1]).decode().split("\n")[0] == "/tmp"
    assert lines[2] == f"@@ta link-owner {os.getuid()} {certs / 'registry.test'}"
    assert lines[3] == f"@@ta owner {os.getuid()} 755 {certs / 'registry.test'}"


def plan_of(policy: TrustPolicy, facts: DockerFacts) -> HostPlan:
    return plan_for_host(
        policy, facts, None, restart_policy="auto", allow_restart=False, read_info=lambda: None
    ).plan


DANGLING_SAID = (
    "/etc/docker/certs.d/registry.test:443 is a link to /srv/certs/registry.test, which does not exist: "
    "create the target directory or remove the link, then run again (nothing written)"
)


def test_a_certs_d_link_to_nothing_blocks_the_host_naming_the_link_and_its_missing_target() -> None:
    """plan and verify said "pending" with no blocker, and the apply failed "is writable by a user other
    than root ... chmod go-w": the dangling link's own mode 0777."""
    facts = parse_gather_output(
        a_gather(
            "@@ta certs-dir",
            "@@ta dir registry.test",
            "@@ta dir-dangling registry.test:443",
            b64(b"/srv/certs/registry.test\n"),
        )
    )
    assert facts.cert_dir_link_problems == {"registry.test:443": DANGLING_SAID.partition(", then")[0]}
    assert "registry.test:443" not in facts.cert_dirs
    plan = plan_of(ca_policy("registry.test", "registry.test:443"), facts)
    assert plan.blockers == (DANGLING_SAID,)
    # Not a registry of the policy: nothing is written through it, nothing to refuse.
    assert not plan_of(ca_policy("registry.test"), facts).blockers


def test_the_gather_reports_a_certs_d_link_to_nothing_and_lists_no_directory_for_it(tmp_path: Path) -> None:
    """The gather's own shell in a --root tree (there the link is given as written, not resolved)."""
    certs = tmp_path / "etc/docker/certs.d"
    (certs / "registry.test").mkdir(parents=True)
    (certs / "registry.test:443").symlink_to("registry.test.gone")
    (certs / "registry.test:5000").symlink_to("registry.test")  # a link that leads somewhere: a directory
    facts = gather(LocalTransport(), root=str(tmp_path))
    assert facts.cert_dirs == {"registry.test", "registry.test:5000"}
    assert facts.cert_dir_link_problems == {
        "registry.test:443": "/etc/docker/certs.d/registry.test:443 is a link to registry.test.gone, which "
        "does not exist: create the target directory or remove the link",
        # The apply writes through no link in a tree: a plan that writes there is blocked.
        "registry.test:5000": f"{certs}/registry.test:5000 is a symbolic link: in a --root tree, "
        "trust-agent does not follow it (it leads to registry.test); replace the link with the directory "
        "it leads to, or write its target's files yourself",
    }


# --- docker.service without ExecReload ----------------------------------------------------------------

CLEARED_RELOAD = (
    ACTIVE_UNIT + "\n# /etc/systemd/system/docker.service.d/no-reload.conf\n[Service]\nExecReload=\n"
)


def test_a_unit_whose_drop_in_clears_exec_reload_refuses_a_reload_before_anything_is_written() -> None:
    """systemctl reload said "Job type reload is not applicable" after the files were written, and
    the host was rolled back, on every run."""
    facts = parse_gather_output(a_gather(unit=CLEARED_RELOAD))
    assert facts.unit_reload_missing == "/etc/systemd/system/docker.service.d/no-reload.conf clears it"
    blockers = unit_blockers(facts, HostPlan(engine_action="reload"))
    assert blockers == [
        "docker.service has no ExecReload (/etc/systemd/system/docker.service.d/no-reload.conf clears it): "
        "a reload is not possible (systemctl reload refuses it); give the unit its ExecReload back (then "
        "systemctl daemon-reload), or let trust-agent restart dockerd instead (--restart-policy restart), "
        "then run again (nothing written)"
    ]
    assert unit_blockers(facts, HostPlan(engine_action="restart")) == []
    assert unit_blockers(facts, HostPlan(engine_action="none")) == []


@pytest.mark.parametrize(
    ("unit", "missing"),
    [
        (ACTIVE_UNIT, None),
        (
            CLEARED_RELOAD
            + "# /etc/systemd/system/docker.service.d/z.conf\n[Service]\nExecReload=/bin/true\n",
            None,
        ),
        (ACTIVE_UNIT.replace("ExecReload=/bin/kill -s HUP $MAINPID\n", ""), "its unit gives none"),
        ("# Unit docker.service is masked.\n", None),
    ],
)
def test_exec_reload_is_read_from_the_unit_as_systemd_merges_its_drop_ins(
    unit: str, missing: str | None
) -> None:
    assert parse_gather_output(a_gather(unit=unit)).unit_reload_missing == missing


# --- a registry insecure by dockerd's command line -----------------------------------------------------


def test_a_registry_made_insecure_by_a_flag_is_warned_of_naming_the_flag_and_where_it_is() -> None:
    unit = ACTIVE_UNIT + (
        "\n# /etc/systemd/system/docker.service.d/x.conf\n[Service]\nExecStart=\n"
        "ExecStart=/usr/sbin/dockerd -H fd:// --insecure-registry registry.test\n"
    )
    facts = parse_gather_output(a_gather(unit=unit))
    assert insecure_flag_warnings(ca_policy("registry.test", "other.test"), facts) == (
        "registry.test: dockerd's command line has --insecure-registry registry.test "
        "(/etc/systemd/system/docker.service.d/x.conf), though the policy verifies its TLS: dockerd does "
        "not verify registry.test; remove the flag there",
    )
    skip = TrustPolicy(
        registries=("registry.test",), storage_endpoint="s:9000", storage_scheme="https", insecure=True
    )
    assert insecure_flag_warnings(skip, facts) == ()


# --- verify on an engine that reads a daemon.json that is not UTF-8 (Docker 20.10) ----------------------

LATIN1 = b'{"labels": ["owner=Jos\xe9"], "insecure-registries": ["registry.test"]}\n'


def test_a_daemon_json_that_is_not_utf8_is_judged_as_the_engine_reads_it() -> None:
    assert expected_insecure(LATIN1) == frozenset()  # read strictly, as 23.0 and later would
    assert expected_insecure(LATIN1, keep_invalid_utf8=True) == frozenset({"registry.test"})
    assert live_config_unjudged(LATIN1, "/etc/docker/daemon.json") is not None
    assert live_config_unjudged(LATIN1, "/etc/docker/daemon.json", keep_invalid_utf8=True) is None
    assert reads_invalid_utf8(DockerFacts(engine_version="20.10.24"))
    assert not reads_invalid_utf8(DockerFacts(engine_version="26.1.5"))


def converged_gather(
    policy: TrustPolicy, daemon_json: bytes, info: dict[str, object], version: str = "26.1.5"
) -> str:
    """The gather's output for a host ``policy`` left converged from ``daemon_json``, dockerd ``version``
    answering with ``info``."""
    facts = DockerFacts(daemon_json=daemon_json, init="systemd", engine_running=True, engine_version=version)
    written = {c.path: c.after or b"" for c in plan_docker(policy, facts).changes}
    prefix = CERTS_DIR + "/"
    files = [
        f"@@ta file {p.removeprefix(prefix)}\n{b64(d)}" for p, d in written.items() if p.startswith(prefix)
    ]
    dirs = sorted(
        {f"@@ta dir {p.removeprefix(prefix).split('/')[0]}" for p in written if p.startswith(prefix)}
    )
    gathered = a_gather(
        *(["@@ta certs-dir", *dirs] if dirs else []),
        *files,
        f"@@ta daemon-json\n{b64(written.get('/etc/docker/daemon.json', daemon_json))}",
        f"@@ta state\n{b64(written['/var/lib/trust-agent/docker-state.json'])}",
        f"@@ta info-json\n{json.dumps(info)}",
    )
    return gathered.replace("Docker version 26.1.5", f"Docker version {version}")


def test_a_rollout_on_20_10_verifies_the_live_config_of_a_daemon_json_that_is_not_utf8() -> None:
    """dockerd 20.10 runs the Latin-1 daemon.json; its verify read it strictly, warned "live config not
    compared" and proved nothing."""
    skip = TrustPolicy(
        registries=("registry.test",), storage_endpoint="s:9000", storage_scheme="https", insecure=True
    )
    info = {
        "ServerVersion": "20.10.24",
        "RegistryConfig": {"IndexConfigs": {"registry.test": {"Secure": False}}},
    }
    labelled = b'{"labels": ["owner=Jos\xe9"]}\n'
    host = GatheredHost(converged_gather(skip, labelled, info, version="20.10.24"))
    outcome = reconcile(host, skip, RunOptions(verify_timeout=0.5))
    assert (outcome.status, outcome.error, outcome.verified) == ("unchanged", None, ("live config",))
    assert not [w for w in outcome.warnings if "not compared" in w], outcome.warnings
    assert host.others == []


# --- verify and a registry name the host resolves to loopback -------------------------------------------


class ResolvingHost(GatheredHost):
    """:class:`GatheredHost` whose ``getent`` resolves every name to ``address``; None: the host's
    resolver never answers, and each lookup is ended as :data:`verify.AHOSTS_FUNCTION` ends it."""

    def __init__(self, gathered: str, address: str | None) -> None:
        super().__init__(gathered)
        self.address = address

    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        text = stdin.decode()
        if "getent ahosts" not in text:
            return super().run(command, stdin=stdin, timeout=timeout)
        self.others.append(text)
        names = re.findall(r"^echo '@@ta host ([^']+)'", text, re.MULTILINE)
        answer = (
            "@@ta unresolved {n} 124\n" if self.address is None else f"{self.address}      STREAM {{n}}\n"
        )
        out = "".join(f"@@ta host {n}\n" + answer.format(n=n) for n in names)
        return CommandResult(0, out.encode(), b"")


LOOPBACK_ONLY = {
    "ServerVersion": "26.1.5",
    "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8", "::1/128"]},
}


def test_verify_fails_a_host_that_resolves_the_registry_to_loopback() -> None:
    """/etc/hosts on the host points registry.test at 127.0.0.1: dockerd skips its TLS checks (its default
    insecure range), and verify, looking names up only for ranges beyond the defaults, said unchanged."""
    policy = ca_policy("registry.test")
    host = ResolvingHost(converged_gather(policy, b"{}\n", LOOPBACK_ONLY), "127.0.0.1")
    outcome = reconcile(host, policy, RunOptions(dry_run=True, verify=True, verify_timeout=0.5))
    assert (outcome.status, outcome.error) == (
        "failed",
        "does not comply with the policy: registry.test resolves to 127.0.0.1 on this host, which dockerd "
        "always treats as insecure (127.0.0.0/8): TLS is not verified",
    )
    assert len(host.others) == 1  # the one getent

    elsewhere = ResolvingHost(converged_gather(policy, b"{}\n", LOOPBACK_ONLY), "198.51.100.10")
    outcome = reconcile(elsewhere, policy, RunOptions(dry_run=True, verify=True, verify_timeout=0.5))
    assert (outcome.status, outcome.error, outcome.verified) == ("unchanged", None, ("live config",))


def test_verify_says_in_plain_words_that_the_host_could_not_resolve_the_registry() -> None:
    """A host whose resolver drops every packet: its getent found no address, and verify said nothing."""
    policy = ca_policy("registry.test")
    host = ResolvingHost(converged_gather(policy, b"{}\n", LOOPBACK_ONLY), None)
    outcome = reconcile(host, policy, RunOptions(dry_run=True, verify=True, verify_timeout=0.5))
    assert (outcome.status, outcome.error) == ("unchanged", None), outcome
    assert outcome.warnings == (
        "registry.test could not be resolved on the host: the host's resolver gave no answer within 5s "
        "(check /etc/resolv.conf); dockerd cannot reach it there, and whether it verifies its TLS is not "
        "known",
    )
    assert len(host.others) == 1 and "timeout 5 getent ahosts" in host.others[0]


@pytest.mark.parametrize(
    ("status", "said"),
    [
        ("124", "the host's resolver gave no answer within 5s (check /etc/resolv.conf)"),
        ("143", "the host's resolver gave no answer within 5s (check /etc/resolv.conf)"),
        ("2", "the host's resolver knows no address for it"),
        ("1", "getent ahosts failed (exit 1)"),
    ],
)
def test_a_lookup_that_found_no_address_is_said_and_never_taken_for_an_address(
    status: str, said: str
) -> None:
    text = f"@@ta host nowhere.test\n@@ta unresolved nowhere.test {status}\n@@ta host registry.test\n"
    text += "198.51.100.10   STREAM registry.test\n"
    assert resolved_addresses(text) == {"nowhere.test": [], "registry.test": ["198.51.100.10"]}
    assert lookup_failures(text) == {"nowhere.test": said}


def test_every_lookup_is_bounded_where_the_host_has_timeout_and_where_it_has_not() -> None:
    script = resolve_command(["registry.test", "it's"])
    assert "timeout 5 getent ahosts" in script and "( sleep 5; kill" in script
    assert script.endswith(
        "echo '@@ta host registry.test'; ta_ahosts registry.test\n"
        "echo '@@ta host it'\"'\"'s'; ta_ahosts 'it'\"'\"'s'"
    )


def test_a_rollout_of_a_converged_host_looks_up_no_name_where_the_engine_has_only_its_defaults() -> None:
    policy = ca_policy("registry.test")
    host = ResolvingHost(converged_gather(policy, b"{}\n", LOOPBACK_ONLY), "127.0.0.1")
    outcome = reconcile(host, policy, RunOptions(verify_timeout=0.5))
    assert (outcome.status, outcome.verified, host.others) == ("unchanged", ("live config",), [])


# --- a login that is not root: the agent's record, its CA files, dockerd's command line ----------------

STATE_PATH = "/var/lib/trust-agent/docker-state.json"


def gathered_as_nobody(tree: Path) -> DockerFacts:
    """The gather run over ``tree`` as uid 65534, as a login that is not root."""
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-s", "--"]
    run = subprocess.run(
        [*argv, str(tree), "/etc/docker/daemon.json", "", "n"],
        input=GATHER_SCRIPT.encode(),
        capture_output=True,
        check=True,
    )
    return parse_gather_output(run.stdout.decode(), root=str(tree))


def a_tree_converged_as_root(tree: Path, policy: TrustPolicy, mode: int) -> dict[str, bytes]:
    """``tree`` holding what ``policy`` writes on an empty host, every file at ``mode``."""
    written = {c.path: c.after or b"" for c in plan_docker(policy, DockerFacts(daemon_json=b"{}\n")).changes}
    os.chmod(tree, 0o755)
    for path, data in written.items():
        target = tree / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        os.chmod(target, mode)
    for directory in {p for p in tree.rglob("*") if p.is_dir()}:
        os.chmod(directory, 0o755)
    return written


def test_the_record_and_ca_files_a_login_cannot_read_are_told_apart_from_empty_ones() -> None:
    policy = ca_policy("registry.test")
    with tempfile.TemporaryDirectory(dir="/tmp") as name:
        tree = Path(name)
        written = a_tree_converged_as_root(tree, policy, 0o600)
        facts = gathered_as_nobody(tree)
        ca_file = next(p for p in written if p.startswith(CERTS_DIR))
        assert facts.state is None
        assert facts.unreadable_files == {STATE_PATH: "permission denied", ca_file: "permission denied"}
        for path in written:
            os.chmod(tree / path.lstrip("/"), 0o644)
        readable = gathered_as_nobody(tree)
    assert (readable.state, readable.unreadable_files) == (written[STATE_PATH], {})
    assert readable.certs[ca_file.removeprefix(CERTS_DIR + "/")] == written[ca_file]


def test_directories_a_login_cannot_list_are_told_apart_from_empty_ones() -> None:
    """certs.d/<registry> and the record's directory kept 0750 (the apply keeps an existing directory's
    mode): to a login that is not root the CA files and the record seemed absent, and plan showed the
    CA files as new."""
    policy = ca_policy("registry.test")
    with tempfile.TemporaryDirectory(dir="/tmp") as name:
        tree = Path(name)
        written = a_tree_converged_as_root(tree, policy, 0o644)
        (tree / "etc/docker/daemon.json").write_bytes(b"{}\n")
        registry_dir = tree / CERTS_DIR.lstrip("/") / "registry.test"
        for directory in (registry_dir, tree / "var/lib/trust-agent"):
            os.chmod(directory, 0o750)
        facts = gathered_as_nobody(tree)
        assert facts.state is None
        assert not [n for n in facts.certs if n.startswith("registry.test/")]
        assert facts.unreadable_files == {
            f"{CERTS_DIR}/registry.test": "permission denied",
            STATE_PATH: "permission denied",
        }
        assert (facts.daemon_json, facts.daemon_json_unreadable) == (b"{}\n", None)
        # /etc/docker itself: daemon.json and certs.d unknown alike.
        os.chmod(tree / "etc/docker", 0o750)
        hidden = gathered_as_nobody(tree)
        assert (hidden.daemon_json, hidden.daemon_json_unreadable) == (None, "permission denied")
        assert f"{CERTS_DIR}" in hidden.unreadable_files
        # Root lists and searches them all: nothing said.
        as_root = gather(LocalTransport(), root=str(tree))
    assert (as_root.unreadable_files, as_root.daemon_json_unreadable) == ({}, None)
    assert as_root.state == written[STATE_PATH]


def test_unlisted_records_are_host_paths() -> None:
    text = a_tree_gather("@@ta certs-dir", "@@ta unlisted /r/etc/docker/certs.d/registry.test")
    facts = parse_gather_output(text, root="/r")
    assert facts.unreadable_files == {f"{CERTS_DIR}/registry.test": "permission denied"}


def test_a_plan_for_a_login_that_cannot_search_the_records_directory_says_the_record_is_not_known() -> None:
    policy = ca_policy("registry.test")
    with tempfile.TemporaryDirectory(dir="/tmp") as name:
        tree = Path(name)
        a_tree_converged_as_root(tree, policy, 0o644)
        os.chmod(tree / "var/lib/trust-agent", 0o700)
        plan = planned(gathered_as_nobody(tree), policy)
    assert (plan.changes, plan.blockers) == ((), ())
    assert (
        f"trust-agent's record {STATE_PATH} cannot be read (permission denied): what trust-agent added "
        "before is not known"
    ) in plan.warnings


def planned(facts: DockerFacts, policy: TrustPolicy) -> HostPlan:
    return plan_for_host(
        policy, facts, None, restart_policy="auto", allow_restart=False, read_info=lambda: None
    ).plan


def test_a_plan_says_what_it_could_not_read_instead_of_planning_from_emptiness() -> None:
    """The record read as empty was "not valid JSON" and rewritten, a CA file read as empty shown as
    rewritten from nothing."""
    policy = ca_policy("registry.test")
    converged = plan_docker(policy, DockerFacts(daemon_json=b"{}\n"))
    written = {c.path: c.after or b"" for c in converged.changes}
    ca_file = next(p for p in written if p.startswith(CERTS_DIR))
    base = DockerFacts(
        daemon_json=b"{}\n",
        certs={ca_file.removeprefix(CERTS_DIR + "/"): written[ca_file]},
        cert_dirs=frozenset({"registry.test"}),
        init="systemd",
        engine_running=True,
        engine_version="26.1.5",
    )
    # Only the record unknown, nothing else to change: said, and nothing planned.
    plan = planned(replace(base, unreadable_files={STATE_PATH: "permission denied"}), policy)
    assert (plan.changes, plan.mkdirs, plan.blockers) == ((), (), ())
    assert (
        f"trust-agent's record {STATE_PATH} cannot be read (permission denied): what trust-agent added "
        "before is not known"
    ) in plan.warnings
    assert not [w for w in plan.warnings if "not valid JSON" in w]
    # The CA file unknown (empty in the facts): never shown as a rewrite, and the host refused.
    unknown = replace(
        base,
        state=written[STATE_PATH],
        certs={ca_file.removeprefix(CERTS_DIR + "/"): b""},
        unreadable_files={ca_file: "permission denied"},
    )
    plan = planned(unknown, policy)
    assert [c.path for c in plan.changes] == []
    assert plan.blockers == (
        f"{ca_file} cannot be read (permission denied): trust-agent neither shows nor writes a file it "
        "cannot read, and the plan changes it: run as root, then run again (nothing written)",
    )


def test_a_command_line_the_login_cannot_read_is_said_and_not_taken_for_no_flags() -> None:
    text = a_gather("@@ta pid 42", "@@ta cmdline", "!denied")
    facts = parse_gather_output(text)
    assert (facts.running_flags, facts.unreadable_files) == ((), {"/proc/42/cmdline": "permission denied"})
    plan = planned(facts, ca_policy("registry.test"))
    assert (
        "the running dockerd's command line (/proc/42/cmdline) cannot be read (permission denied): flags it "
        "was started with that its unit no longer gives are not known"
    ) in plan.warnings


def test_a_command_line_hidden_from_a_login_that_is_not_root_is_said_and_root_asks_nothing_more() -> None:
    """``ta_cmdline`` for a PID whose /proc entry cannot be read (hidepid): ``!denied`` for a login that is
    not root; for root (it reads every /proc entry, so the process is gone) nothing, as before."""
    start = GATHER_SCRIPT.index("ta_read() {")
    functions = GATHER_SCRIPT[start : GATHER_SCRIPT.index("# A certs.d directory that is a link")]
    for uid, said in (("65534", "@@ta pid 0x\n@@ta cmdline\n!denied\n"), ("0", "")):
        run = subprocess.run(
            ["sh", "-c", f"{functions}\nta_uid={uid}; ta_cmdline 0x"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert run.stdout == said


# --- lines continued with a backslash, as systemd joins them (systemd.syntax(7)) ----------------------

CONTINUED = (
    ACTIVE_UNIT
    + "\n# /etc/systemd/system/docker.service.d/zz-cont.conf\n[Service]\nExecStart=\n"
    + "ExecStart=/usr/sbin/dockerd -H fd:// \\\n"
    + "    --containerd=/run/containerd/containerd.sock \\\n"
    + "# a comment inside the continuation is skipped\n"
    + "    --insecure-registry=mirror.corp.example\n"
)


def test_flags_on_continuation_lines_of_exec_start_are_dockerds_and_the_backslash_is_none() -> None:
    """Read line by line, the flag on the continuation line was lost (no blocker for a conflicting
    --insecure-registry) and the backslash became an argument (``"dockerd" accepts no argument(s)``)."""
    flags = engine_flags(CONTINUED.encode(), None, None)
    assert flags.flags == (
        "-H",
        "fd://",
        "--containerd=/run/containerd/containerd.sock",
        "--insecure-registry=mirror.corp.example",
    )
    assert flags.source == "/etc/systemd/system/docker.service.d/zz-cont.conf"
    facts = parse_gather_output(a_gather(unit=CONTINUED))
    plan = plan_docker(TrustPolicy(("registry.test",), "198.51.100.11:9000", "https", insecure=True), facts)
    assert any(
        b.startswith("/etc/systemd/system/docker.service.d/zz-cont.conf sets --insecure-registry")
        for b in plan.blockers
    ), plan.blockers


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("ExecStart=/d -a \\\n  -b\n", ["ExecStart=/d -a    -b"]),
        ("ExecStart=/d -a \\\n; note\n# note \\\n  -b\n", ["ExecStart=/d -a    -b"]),
        ("ExecStart=/d -a \\\\\n-b=1\n", ["ExecStart=/d -a \\\\", "-b=1"]),  # an escaped backslash ends it
        ("ExecStart=/d -a \\ \n-b=1\n", ["ExecStart=/d -a \\", "-b=1"]),  # not the line's last character
        ("ExecStart=/d \\\n\nExecReload=/r\n", ["ExecStart=/d", "ExecReload=/r"]),  # an empty line ends it
        ("ExecStart=/d \\", ["ExecStart=/d"]),  # the text's end ends it
        ("# a comment \\\nExecStart=/d\n", []),  # a comment goes on too, as systemd's parser has it
    ],
)
def test_unit_lines_are_joined_as_systemd_joins_them(text: str, lines: list[str]) -> None:
    assert unit_lines(f"# /u.service\n{text}".encode()) == [("/u.service", line) for line in lines]


_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-=:/._", min_size=1, max_size=12)


@given(words=st.lists(_WORD, min_size=1, max_size=8), breaks=st.lists(st.booleans(), min_size=8, max_size=8))
def test_an_exec_start_wrapped_anywhere_between_words_gives_the_same_flags(
    words: list[str], breaks: list[bool]
) -> None:
    one_line = f"# /d.service\n[Service]\nExecStart=/usr/sbin/dockerd {' '.join(words)}\n"
    wrapped = "# /d.service\n[Service]\nExecStart=/usr/sbin/dockerd"
    for word, wrap in zip(words, breaks, strict=False):
        wrapped += f" \\\n    {word}" if wrap else f" {word}"
    assert engine_flags(wrapped.encode(), None, None) == engine_flags(one_line.encode(), None, None)
    assert engine_flags(wrapped.encode(), None, None).flags == tuple(words)


# --- certs.d entries dockerd cannot read, and a registry's path that is not a directory ---------------


def test_ca_entries_dockerd_cannot_read_are_in_the_facts(tmp_path: Path) -> None:
    """dockerd reads every .crt/.cert/.key entry on each pull and fails on one it cannot read; the gather
    skipped them, so verify said all was well."""
    certs = tmp_path / "etc/docker/certs.d/registry.test"
    (certs / "extra.crt").mkdir(parents=True)
    (certs / "corp.crt").symlink_to("gone.crt")  # a link to nothing
    (certs / "client.key").symlink_to("nowhere")
    os.mkfifo(certs / "pipe.cert")
    (certs / "notes").mkdir()  # no name dockerd reads
    (certs / "ca.crt").write_bytes(b"CA\n")
    facts = gather(LocalTransport(), root=str(tmp_path))
    assert facts.cert_entries_broken == {
        "registry.test/extra.crt": "directory",
        "registry.test/corp.crt": "dangling",
        "registry.test/client.key": "dangling",
        "registry.test/pipe.cert": "special",
    }
    assert facts.certs == {"registry.test/ca.crt": b""}


def test_a_file_where_a_registrys_directory_goes_is_in_the_facts(tmp_path: Path) -> None:
    certs = tmp_path / "etc/docker/certs.d"
    (certs / "registry.test:443").mkdir(parents=True)
    (certs / "registry.test").write_bytes(b"notes\n")
    (certs / "mirror.test").symlink_to("registry.test")  # a link to that file
    facts = gather(LocalTransport(), root=str(tmp_path))
    assert facts.cert_dir_not_dirs == {"registry.test": "file", "mirror.test": "link"}
    assert facts.cert_dirs == frozenset({"registry.test:443"})


# --- an engine that takes the connection and never answers --------------------------------------------


def test_an_engine_that_did_not_answer_in_time_is_said_so_and_its_version_kept() -> None:
    """The gather's ``engine-silent`` (curl timed out on the socket): before, such a host was planned
    as if all were read."""
    facts = parse_gather_output(a_gather("@@ta info-json", "", "@@ta engine-silent"))
    assert facts.engine_silent and facts.engine_running and facts.engine_version == "26.1.5"
    assert not parse_gather_output(a_gather("@@ta info-json", "")).engine_silent
