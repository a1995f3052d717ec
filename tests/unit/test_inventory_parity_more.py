"""Inventories where Ansible's reading is easy to get wrong: a name both a host and a group, a ``:port``
after something that is not an address, Ansible's implicit localhost in a limit, vault ciphertext."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import InventoryError
from agent.inventory import load_inventory, select, to_ansible_list
from agent.inventory.builder import InventoryData
from agent.inventory.ranges import expand_host_pattern

# `web` is a host and a group at once (Ansible warns, and reads it as below).
SAME_NAME = "[web]\nweb ansible_host=10.0.0.9\nw1\nw2\n[db]\nd1\nweb\n"
VAULT = "$ANSIBLE_VAULT;1.1;AES256\n6231336539666234\n6134333665353966\n"


def _inventory(tmp_path: Path, text: str, name: str = "hosts") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --- a name that is both a host and a group ----------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "hosts"),
    [
        ("web", ("web",)),  # a plain term that is a host's name: that host alone
        ("all:!web", ("d1",)),  # after ! or &, or with a subscript, the group's hosts
        ("db:!web", ("d1",)),
        ("all:&web", ("web", "w1", "w2")),
        ("web[1]", ("w1",)),
    ],
)
def test_a_group_wins_over_a_host_of_its_name_except_as_a_plain_term(
    tmp_path: Path, pattern: str, hosts: tuple[str, ...]
) -> None:
    inv = load_inventory(_inventory(tmp_path, SAME_NAME))
    assert set(select(inv, pattern)) == set(hosts)


def test_a_host_variable_on_a_name_a_group_has_is_the_groups_variable(tmp_path: Path) -> None:
    inv = load_inventory(_inventory(tmp_path, SAME_NAME))
    assert [inv.host(h).address for h in ("web", "w1", "w2", "d1")] == ["10.0.0.9"] * 3 + ["d1"]
    assert to_ansible_list(inv)["_meta"]["hostvars"]["w2"] == {"ansible_host": "10.0.0.9"}


def test_a_host_variable_set_before_the_group_of_its_name_exists_stays_the_hosts() -> None:
    data = InventoryData("hosts")
    data.add_host("web", "ungrouped")
    data.set_host_var("web", "ansible_host", "10.0.0.9")
    data.add_group("web")
    data.add_host("w1", "web")
    inv = data.build()
    assert (inv.host("web").address, inv.host("w1").address) == ("10.0.0.9", "w1")


# --- Ansible's implicit localhost ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "::1"])
def test_excluding_the_implicit_localhost_is_no_error(tmp_path: Path, name: str) -> None:
    inv = load_inventory(_inventory(tmp_path, "[web]\nw1\nw2\n"))
    assert select(inv, f"all,!{name}") == ("w1", "w2")
    with pytest.raises(InventoryError, match="matches no hosts"):
        select(inv, name)


def test_a_name_that_is_neither_host_nor_group_is_still_an_error(tmp_path: Path) -> None:
    inv = load_inventory(_inventory(tmp_path, "[web]\nw1\n"))
    with pytest.raises(InventoryError, match=r"host pattern 'localhost2' matches no host or group"):
        select(inv, "all:!localhost2")


# --- host:port -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expanded"),
    [
        ("deploy@web1:2222", (["deploy@web1:2222"], None)),
        ("web1.example.com.:2201", (["web1.example.com.:2201"], None)),
        ("web_:2202", (["web_:2202"], None)),
        ("web1.example.com:2201", (["web1.example.com"], 2201)),
        ("n[1:2]:2204", (["n1", "n2"], 2204)),
        ("[2001:db8::5]:2203", (["2001:db8::5"], 2203)),
        ("2001:db8::6", (["2001:db8::6"], None)),
    ],
)
def test_a_port_counts_only_after_an_address(entry: str, expanded: tuple[list[str], int | None]) -> None:
    assert expand_host_pattern(entry) == expanded


@given(
    user=st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8),
    host=st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True),
    port=st.integers(1, 65535),
)
def test_a_user_at_host_entry_is_one_host_name_without_a_port(user: str, host: str, port: int) -> None:
    entry = f"{user}@{host}:{port}"
    assert expand_host_pattern(entry) == ([entry], None)
    assert expand_host_pattern(f"{host}:{port}") == ([host], port)


def test_ini_and_yaml_hosts_keep_a_colon_after_a_name_that_is_not_an_address(tmp_path: Path) -> None:
    ini = load_inventory(_inventory(tmp_path, "[g]\ndeploy@h1:2222\nh2:2201\n"))
    yml = load_inventory(_inventory(tmp_path, "g:\n  hosts:\n    deploy@h1:2222:\n    h2:2201:\n", "i.yml"))
    for inv in (ini, yml):
        assert [(h.name, h.port, h.port_given) for h in inv] == [
            ("deploy@h1:2222", 22, False),
            ("h2", 2201, True),
        ]


# --- ansible-vault ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hosts", "hosts.yml"])
def test_an_inventory_encrypted_whole_is_refused_not_read_as_hosts(tmp_path: Path, name: str) -> None:
    with pytest.raises(InventoryError, match=r"this inventory is encrypted with ansible-vault") as exc:
        load_inventory(_inventory(tmp_path, VAULT, name))
    assert exc.value.where is not None and exc.value.where.endswith(name)


def test_a_variables_file_encrypted_whole_is_refused_saying_so(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "web.yml").write_text(VAULT)
    with pytest.raises(InventoryError, match=r"this variables file is encrypted with ansible-vault") as exc:
        load_inventory(_inventory(tmp_path, "[web]\nw1\n"))
    assert exc.value.where == str(tmp_path / "group_vars" / "web.yml")


def test_vault_ciphertext_without_its_tag_is_not_used_as_the_sudo_password(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    indented = "".join(f"  {line}\n" for line in VAULT.splitlines())
    (tmp_path / "group_vars" / "web.yml").write_text(f"ansible_become_password: |\n{indented}")
    host = load_inventory(_inventory(tmp_path, "[web]\nw1\n")).host("w1")
    assert host.become_password is None
    assert host.become_password_note is not None
    assert "ansible-vault ciphertext without the !vault tag" in host.become_password_note


# --- INI host entries Ansible refuses, and INI in a file named like YAML ------------------------------


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("[g]\nweb2\nweb1:\n", 3, "host 'web1:' ends in ':', which is reserved for a port"),
        ("[g]\nweb2\n---\n", 3, "host '---' is a YAML document marker"),
    ],
)
def test_ini_host_entries_ansible_refuses_are_refused(
    tmp_path: Path, text: str, line: int, fragment: str
) -> None:
    path = _inventory(tmp_path, text)
    with pytest.raises(InventoryError, match=fragment) as exc:
        load_inventory(path)
    assert exc.value.where == f"{path}:{line}"


@pytest.mark.parametrize("name", ["hosts.yml", "hosts.yaml", "hosts.json"])
def test_an_ini_inventory_named_like_yaml_is_read_as_ini(tmp_path: Path, name: str) -> None:
    inv = load_inventory(_inventory(tmp_path, "[web]\nw1 ansible_port=2201\n[db]\nd1\n", name))
    assert [(h.name, h.port, h.groups) for h in inv] == [("w1", 2201, ("web",)), ("d1", 22, ("db",))]


def test_a_broken_yaml_inventory_still_says_what_is_wrong_with_the_yaml(tmp_path: Path) -> None:
    path = _inventory(tmp_path, "all:\n  hosts:\n    h1: {a: 1\n", "hosts.yml")
    with pytest.raises(InventoryError, match=r"invalid YAML") as exc:
        load_inventory(path)
    assert exc.value.where == f"{path}:4"
