"""``trust-agent inventory --connections``: what trust-agent makes of each host's connection settings."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from agent.inventory_cli import inventory_command


def test_the_known_hosts_file_a_native_inventory_names_is_shown_resolved(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yml"
    inventory.write_text(
        "defaults: {user: root, known_hosts: ssh/known_hosts}\n"
        "hosts:\n  h1: {address: 198.51.100.21}\n  h2: {address: 198.51.100.22, known_hosts: /etc/ssh/fleet_hosts}\n"
    )
    shown = CliRunner().invoke(inventory_command, ["-i", str(inventory), "--connections"])
    assert shown.exit_code == 0, shown.output
    settings = json.loads(shown.output)
    assert settings["h1"]["known_hosts"] == str(tmp_path / "ssh" / "known_hosts")
    assert settings["h2"]["known_hosts"] == "/etc/ssh/fleet_hosts"


def _connections(tmp_path: Path, ini: str) -> dict[str, dict[str, object]]:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(ini)
    shown = CliRunner().invoke(inventory_command, ["-i", str(inventory), "--connections"])
    assert shown.exit_code == 0, shown.output
    settings: dict[str, dict[str, object]] = json.loads(shown.output)
    return settings


def test_the_port_and_user_the_ssh_args_give_are_shown_as_the_connection_uses_them(tmp_path: Path) -> None:
    """-p/-l (-o Port=/-o User=) in the ssh args were left out: port 22 and no user were shown, where the
    connection goes to the args' port as their user. ansible_port/ansible_user come before the common
    and extra args on Ansible's ssh command line, ansible_ssh_args before them all: ssh takes the first."""
    settings = _connections(
        tmp_path,
        "web1 ansible_ssh_common_args='-p 2200 -l carol'\n"
        "web2 ansible_ssh_extra_args='-o Port=2201 -o User=dan'\n"
        "web3 ansible_port=2022 ansible_user=erin ansible_ssh_common_args='-p 2200 -l carol'\n"
        "web4 ansible_port=2022 ansible_user=erin ansible_ssh_args='-p 2299 -o User=frank'\n"
        "web5\n",
    )
    shown = {name: (s["port"], s["user"]) for name, s in settings.items()}
    assert shown == {
        "web1": (2200, "carol"),
        "web2": (2201, "dan"),
        "web3": (2022, "erin"),
        "web4": (2299, "frank"),
        "web5": (22, None),
    }


def test_ansible_ssh_args_are_read_and_shown_first_as_ansible_passes_them(tmp_path: Path) -> None:
    """ansible_ssh_args (Ansible's ssh_args) was not read at all: its bastion and key were not used.
    Ansible puts it first on ssh's command line: its ProxyJump wins over the common args', and its -i
    is tried before the inventory's key file."""
    settings = _connections(
        tmp_path,
        "web1 ansible_ssh_args='-C -o ControlMaster=auto -J gw1 -i /keys/args' ansible_ssh_timeout=5 "
        "ansible_ssh_private_key_file=/keys/inv ansible_ssh_common_args='-J gw2 -i /keys/common'\n",
    )
    assert settings["web1"]["identity_file"] == "/keys/inv"
    assert settings["web1"]["ssh_options"] == [
        "proxyjump=gw1",
        "identityfile=/keys/args",
        "identityfile=/keys/inv",
        "connecttimeout=5",
        "proxyjump=gw2",
        "identityfile=/keys/common",
    ]


def test_a_config_file_the_ssh_args_name_with_f_is_shown(tmp_path: Path) -> None:
    settings = _connections(tmp_path, "web1 ansible_ssh_common_args='-F /etc/fleet/ssh_config'\n")
    assert settings["web1"]["ssh_options"] == ["configfile=/etc/fleet/ssh_config"]


def test_the_known_hosts_file_the_ssh_args_name_is_shown_as_the_connection_uses_it(tmp_path: Path) -> None:
    """-o UserKnownHostsFile= in the ssh args was shown as null, where the connection reads that file
    (ssh keeps an option's first value); the inventory's own known_hosts comes before it."""
    settings = _connections(
        tmp_path,
        "web1 ansible_ssh_common_args='-o UserKnownHostsFile=/etc/ssh/fleet_hosts'\n"
        "web2 ansible_ssh_common_args='-o UserKnownHostsFile=~/kh/first' "
        "ansible_ssh_extra_args='-oUserKnownHostsFile=/etc/ssh/second'\n"
        "web3 ansible_ssh_common_args='-o \"UserKnownHostsFile=/etc/ssh/a /etc/ssh/b\"'\n"
        "web4 ansible_ssh_common_args='-o UserKnownHostsFile=none'\n"
        "web5\n",
    )
    shown = {name: s["known_hosts"] for name, s in settings.items()}
    assert shown == {
        "web1": "/etc/ssh/fleet_hosts",
        "web2": str(Path("~/kh/first").expanduser()),
        "web3": "/etc/ssh/a",
        "web4": None,
        "web5": None,
    }
