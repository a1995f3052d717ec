"""ssh_config read as ssh(1) reads it (its Include lines; the command line's User and Port before the
files): checked against ``ssh -G`` itself."""

from __future__ import annotations

import doctest
import getpass
import shutil
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest

from agent.errors import InputError, UnreachableError
from agent.hosts import ssh_config_text
from agent.hosts.ssh import SSHOptions, SSHTransport, _SSHConfig
from agent.inventory import load_inventory
from tests.ci import missing_prerequisite

COMPARED = ("hostname", "user", "port", "identityfile", "connecttimeout", "proxyjump")


def _ssh_g(config: Path, alias: str, *args: str) -> dict[str, str]:
    """What ssh itself makes of ``alias`` under ``config`` with command-line ``args`` (the first value of
    each option compared)."""
    if shutil.which("ssh") is None:
        missing_prerequisite("openssh-client's ssh not installed (.ci/system-deps.sh)")
    out = subprocess.run(
        ["ssh", "-G", "-F", str(config), *args, alias], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    found: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        found.setdefault(key, value)
    if found.get("identityfile", "").startswith("~/.ssh/id_"):
        del found["identityfile"]  # ssh's default files, listed where none is configured
    return {k: found[k] for k in COMPARED if k in found}


def _ours(config: Path, alias: str) -> dict[str, str]:
    cfg = _SSHConfig(str(config)).lookup(alias)
    ours = {k: (v[0] if isinstance(v, list) else str(v)) for k, v in cfg.items() if k in COMPARED}
    ours.setdefault("hostname", alias)
    return ours


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(ssh_config_text)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("alias", ["db1", "web-1", "web-2", "build.lab", "other", "web-3.lab"])
def test_includes_give_what_ssh_itself_gives(tmp_path: Path, alias: str) -> None:
    d = tmp_path / "ssh"
    _write(
        d / "conf.d" / "20-lab.conf",
        """\
        ConnectTimeout 7
        Host *.lab
            IdentityFile /keys/lab
            ProxyJump gw.lab
        """,
    )
    _write(d / "conf.d" / "10-db.conf", "Host db1\n    HostName 10.0.0.5\n    User dbadmin\n")
    _write(d / "conf.d" / "ignored.txt", "Host *\n    User never\n")
    _write(
        d / "web.d" / "extra",
        """\
        HostName web.internal
        Host web-2
            Port 2200
        Match originalhost web-3*
            User web3
        """,
    )
    config = _write(
        d / "config",
        f"""\
        Include {d}/conf.d/*.conf {d}/missing/*.conf
        Host web-*
            User ops
            Include {d}/web.d/extra
            IdentityFile /keys/web
        Host *
            Port 2222
            User fallback
        """,
    )
    assert _ours(config, alias) == _ssh_g(config, alias)


def test_relative_paths_are_under_the_ssh_directory_and_depth_is_bounded(tmp_path: Path) -> None:
    _write(tmp_path / "hosts" / "b", "Host b\n    HostName 10.0.0.2\n")
    _write(tmp_path / "hosts" / "a", "Host a\n    HostName 10.0.0.1\n")
    config = _write(tmp_path / "config", "Include hosts/*\n")
    text = ssh_config_text.expanded(str(config), str(tmp_path))
    assert text.index("Host a") < text.index("Host b")  # sorted, as glob(3) gives them to ssh
    loop = _write(tmp_path / "loop", f"Include {tmp_path / 'loop'}\n")
    with pytest.raises(InputError, match="nested more than 16 levels"):
        ssh_config_text.expanded(str(loop), str(tmp_path))


def _where_it_connects(config: Path, inventory_line: str, tmp_path: Path) -> dict[str, str]:
    """Where trust-agent goes for the one host of an Ansible INI line, ``config`` as its ssh_config:
    the options :func:`_ssh_g` compares."""
    ini = _write(tmp_path / "hosts.ini", inventory_line + "\n")
    host = load_inventory(str(ini)).hosts[0]
    transport = SSHTransport(host, SSHOptions(ssh_config=str(config), use_agent=False))
    target = transport._resolve(_SSHConfig(str(config)))
    return {
        "hostname": target.hostname,
        "user": target.user,
        "port": str(target.port),
        "identityfile": target.key_files[0] if target.key_files else "",
    }


MATCH_USER = """\
    Host *
        User deploy
    Match user ops
        IdentityFile /keys/ops
        Port 2201
    Match user deploy
        IdentityFile /keys/deploy
        Port 2202
"""


@pytest.mark.parametrize(
    ("line", "ssh_args"),
    [
        ("web1 ansible_user=ops", ["-o", "User=ops"]),  # ansible_user: Ansible's -o User=ops
        ("web1 ansible_ssh_common_args='-l ops'", ["-l", "ops"]),
        ("web1", []),  # no user given: ssh_config's User is the one Match sees
    ],
)
def test_match_user_sees_the_user_the_inventory_gives_as_ssh_sees_its_command_lines(
    tmp_path: Path, line: str, ssh_args: list[str]
) -> None:
    config = _write(tmp_path / "config", MATCH_USER)
    ours = _where_it_connects(config, line, tmp_path)
    theirs = _ssh_g(config, "web1", *ssh_args)
    assert ours == {k: theirs[k] for k in ours}
    if ssh_args:  # a block for another user would have sent it elsewhere, with another key
        assert (ours["user"], ours["port"], ours["identityfile"]) == ("ops", "2201", "/keys/ops")


@pytest.mark.parametrize(
    ("line", "ssh_args", "port"),
    [
        ("web1 ansible_port=22", ["-o", "Port=22"], "22"),
        ("web1:22", ["-o", "Port=22"], "22"),  # the host pattern's port is ansible_port
        ("web1 ansible_port=22 ansible_ssh_common_args='-p 2200'", ["-o", "Port=22", "-p", "2200"], "22"),
        ("web1 ansible_ssh_common_args='-p 22'", ["-p", "22"], "22"),
        ("web1", [], "2222"),  # no port given: ssh_config's
    ],
)
def test_a_port_the_inventory_gives_wins_over_ssh_config_even_22(
    tmp_path: Path, line: str, ssh_args: list[str], port: str
) -> None:
    config = _write(tmp_path / "config", "Host web1\n    Port 2222\n")
    ours = _where_it_connects(config, line, tmp_path)
    assert ours["port"] == _ssh_g(config, "web1", *ssh_args)["port"] == port


def test_ansible_ssh_args_come_first_on_the_command_line_as_ansible_passes_them(tmp_path: Path) -> None:
    """ansible_ssh_args was not read: its -p, -l and -i were not used, where ssh takes them over the
    inventory's ansible_port, ansible_user and key file (Ansible passes them first, the common and
    extra args after them)."""
    config = _write(tmp_path / "config", "Host web1\n    HostName 10.0.0.5\n    Port 2222\n    User cfg\n")
    args_key, inventory_key = (
        _write(tmp_path / "args_key", ""),
        _write(tmp_path / "inv_key", ""),
    )  # ssh drops a missing -i
    cases = {
        f"web1 ansible_port=2022 ansible_user=alice ansible_ssh_private_key_file={inventory_key} "
        f"ansible_ssh_args='-C -p 2299 -l carol -i {args_key}' ansible_ssh_common_args='-p 2300 -l dave'": [
            *("-C", "-p", "2299", "-l", "carol", "-i", str(args_key)),
            *("-o", "Port=2022", "-o", f"IdentityFile={inventory_key}", "-o", "User=alice"),
            *("-p", "2300", "-l", "dave"),
        ],
        f"web1 ansible_ssh_args='-o ControlMaster=auto' ansible_ssh_private_key_file={inventory_key}": [
            *("-o", "ControlMaster=auto", "-o", f"IdentityFile={inventory_key}"),
        ],
    }
    for line, ssh_args in cases.items():
        ours = _where_it_connects(config, line, tmp_path)
        assert ours == {k: v for k, v in _ssh_g(config, "web1", *ssh_args).items() if k in ours}, line
    assert ours["user"] == "cfg" and ours["port"] == "2222"  # nothing given: ssh_config's


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_config_file_the_ssh_args_name_with_f_is_read_instead_of_the_runs(tmp_path: Path) -> None:
    """-F FILE in the ssh args was dropped without a word, and the host read the run's ssh_config (its
    Port here): ssh reads FILE alone, the last -F given (-F none: no file)."""
    ports = [_closed_port() for _ in range(3)]
    default, other, fleet = (
        _write(tmp_path / name, f"Host web1\n    HostName 127.0.0.1\n    Port {port}\n    User {name}\n")
        for name, port in zip(("config", "other", "fleet"), ports, strict=True)
    )
    ini = _write(
        tmp_path / "hosts.ini", f"web1 ansible_ssh_args='-F {other}' ansible_ssh_common_args='-F {fleet}'\n"
    )
    theirs = _ssh_g(default, "web1", "-F", str(other), "-F", str(fleet))
    assert (theirs["port"], theirs["user"]) == (str(ports[2]), "fleet")
    transport = SSHTransport(load_inventory(str(ini)).hosts[0], SSHOptions(ssh_config=str(default)))
    with pytest.raises(UnreachableError, match=f"^web1: connect to port {theirs['port']} failed"):
        transport.connect()
    ini.write_text("web1 ansible_ssh_extra_args='-F none'\n")
    transport = SSHTransport(load_inventory(str(ini)).hosts[0], SSHOptions(ssh_config=str(default)))
    target = transport._resolve(transport._ssh_config())
    assert (target.hostname, target.port, target.user) == ("web1", 22, getpass.getuser())  # ssh's defaults


def test_a_config_file_named_with_f_that_is_not_there_fails_the_host_as_ssh_does(tmp_path: Path) -> None:
    default = _write(tmp_path / "config", f"Host web1\n    HostName 127.0.0.1\n    Port {_closed_port()}\n")
    missing = tmp_path / "missing"
    ini = _write(tmp_path / "hosts.ini", f"web1 ansible_ssh_common_args='-F {missing}'\n")
    transport = SSHTransport(load_inventory(str(ini)).hosts[0], SSHOptions(ssh_config=str(default)))
    with pytest.raises(UnreachableError) as info:
        transport.connect()
    assert str(info.value) == (
        f"web1: cannot read the ssh config file the inventory's ssh args name with -F {missing}: no such file"
    )
