"""Inventories read from the fixture corpus: Ansible INI, Ansible YAML, trust-agent YAML."""

from __future__ import annotations

import doctest
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import InventoryError
from agent.inventory import (
    Host,
    inventory_script,
    load_inventory,
    ssh_args,
    templating,
    to_ansible_list,
    yamlfile,
)
from agent.inventory.load import single_host_hint
from agent.inventory_cli import inventory_command

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "inventories"


def test_ini_hosts_keep_file_order_and_appear_once() -> None:
    inv = load_inventory(str(CORPUS / "ini_fleet" / "hosts"))
    assert inv.names == (
        "bastion",
        "web01",
        "web02",
        "web03",
        "web04",
        "db-a.example.net",
        "db-b.example.net",
        "db-c.example.net",
    )


def test_ini_inline_vars_ranges_and_port_suffix() -> None:
    inv = load_inventory(str(CORPUS / "ini_fleet" / "hosts"))
    web04 = inv.host("web04")
    assert (web04.address, web04.port) == ("198.51.100.44", 2200)
    # Host-line values are literal-evaluated like Ansible: numbers and booleans, quoted text stays text.
    assert web04.vars["n"] == 7
    assert web04.vars["flag"] is True
    assert web04.vars["x"] == "quoted value"
    assert inv.host("db-b.example.net").port == 2222
    assert inv.host("bastion").address == "203.0.113.5"


def test_ini_children_vars_and_group_membership() -> None:
    inv = load_inventory(str(CORPUS / "ini_fleet" / "hosts"))
    web01 = inv.host("web01")
    assert web01.groups == ("db", "debian", "web")
    assert web01.become is True  # "yes" from [debian:vars], read as Ansible reads booleans
    assert web01.user == "deploy"  # host line beats [all:vars]
    assert web01.identity_file == os.path.expanduser("~/.ssh/fleet_ed25519")
    assert web01.vars["flavour"] == "bookworm"
    assert inv.host("bastion").groups == ("ungrouped",)
    assert inv.host("bastion").become is False
    assert inv.group_hosts("debian") == inv.names[1:]


def test_ini_group_vars_directory_and_host_vars_file() -> None:
    inv = load_inventory(str(CORPUS / "ini_fleet" / "hosts"))
    web02 = inv.host("web02")
    # group_vars/web/ is read in sorted order, hidden files skipped; group_vars/all.yml applies to all.
    assert web02.vars["role"] == "edge"
    assert web02.vars["level"] == 5
    assert inv.host("db-a.example.net").vars["level"] == 3
    assert inv.host("bastion").vars["level"] == 1
    assert inv.host("bastion").vars["from_group_vars_all"] is True
    assert web02.address == "198.51.100.102"
    assert web02.become_user == "docker-admin"


def test_yaml_all_children_hosts_null_and_ranges_with_step() -> None:
    inv = load_inventory(str(CORPUS / "yaml_fleet" / "inventory.yml"))
    assert inv.names == ("lone", "node1", "node3", "node5", "east-db", "node-x", "node-y", "node-z", "gpu01")
    assert inv.host("node1").groups == ("east", "west")
    assert inv.host("gpu01").groups == ("west", "west_gpu")
    assert inv.group_hosts("west") == ("node1", "node-x", "node-y", "node-z", "gpu01")
    assert inv.host("lone").groups == ("ungrouped",)
    assert inv.groups["empty_group"].hosts == ()


def test_yaml_legacy_aliases_and_vars_files() -> None:
    inv = load_inventory(str(CORPUS / "yaml_fleet" / "inventory.yml"))
    east_db = inv.host("east-db")
    assert (east_db.address, east_db.port, east_db.user) == ("192.0.2.20", 2022, "legacy")
    assert inv.host("node3").vars["dc"] == "east-from-file"  # group_vars/east.json beats inventory vars
    assert inv.host("node3").vars["tier"] == 2
    gpu = inv.host("gpu01")
    assert (gpu.port, gpu.become, gpu.user) == (2201, True, "admin")


def test_native_format_defaults_paths_and_groups() -> None:
    path = CORPUS / "native" / "fleet.yml"
    inv = load_inventory(str(path))
    base = path.parent
    assert inv.host("h1") == Host(
        name="h1",
        address="198.51.100.21",
        port=22,
        port_given=True,  # the file's defaults give it
        user="root",
        identity_file=str(base / "ssh" / "id_ed25519"),
        become=False,
        become_user=None,
        known_hosts=str(base / "ssh" / "known_hosts"),
        groups=("bookworm", "everything"),
    )
    assert inv.host("h1").vars == {"flavour": "bookworm"}
    h2 = inv.host("h2")
    assert (h2.port, h2.user, h2.become) == (2222, "admin", True)
    h3 = inv.host("h3")
    assert (h3.identity_file, h3.become_user, h3.groups) == ("/etc/trust-agent/key", "ops", ("everything",))
    assert inv.group_hosts("everything") == ("h1", "h2", "h3")


def test_precedence_follows_ansible() -> None:
    h1 = load_inventory(str(CORPUS / "precedence" / "hosts.ini")).host("h1")
    v = h1.vars
    assert v["v_all"] == "inventory-all"
    assert v["v_allfile"] == "file-all"  # group_vars/all.yml > [all:vars]
    assert v["v_parent"] == "inventory-parent"  # a group beats all; same depth: alphabetical, last wins
    assert v["v_same_depth"] == "parent"
    assert v["v_child"] == "inventory-child"  # child group beats parent group
    assert v["v_groupfile"] == "file-child-b"  # group_vars files beat inventory group vars
    assert v["v_host"] == "inventory-host"
    assert v["v_hostfile"] == "file-host"  # host_vars file beats inventory host vars


def test_to_ansible_list_shape() -> None:
    out = to_ansible_list(load_inventory(str(CORPUS / "ini_fleet" / "hosts")))
    assert out["all"] == {"children": ["ungrouped", "debian"]}
    assert out["ungrouped"] == {"hosts": ["bastion"]}
    assert out["debian"] == {"children": ["web", "db"]}
    assert out["db"]["hosts"][-1] == "web01"
    assert "children" not in out["web"]
    hv = out["_meta"]["hostvars"]
    assert hv["web04"]["ansible_port"] == 2200
    assert hv["web02"]["role"] == "edge"
    assert set(hv) == {"bastion", "web01", "web02", "web03", "web04"} | {f"db-{c}.example.net" for c in "abc"}


def test_to_ansible_list_leaves_out_empty_groups_and_renders_native_fields() -> None:
    out = to_ansible_list(load_inventory(str(CORPUS / "yaml_fleet" / "inventory.yml")))
    assert "empty_group" not in out
    assert "empty_group" in out["all"]["children"]
    assert out["west"] == {"hosts": ["node1", "node-x", "node-y", "node-z"], "children": ["west_gpu"]}
    native = to_ansible_list(load_inventory(str(CORPUS / "native" / "fleet.yml")))
    assert native["_meta"]["hostvars"]["h2"]["ansible_port"] == 2222
    assert native["_meta"]["hostvars"]["h2"]["ansible_become"] is True
    assert native["everything"] == {"hosts": ["h3"], "children": ["bookworm"]}


def test_comma_separated_host_list() -> None:
    inv = load_inventory("h1,h2:2222,")
    assert inv.names == ("h1", "h2")
    assert inv.host("h2").port == 2222
    assert inv.host("h1").groups == ("ungrouped",)


@given(
    name=st.from_regex(
        r"[a-z]([a-z0-9-]{0,18}[a-z0-9])?(\.[a-z]([a-z0-9-]{0,8}[a-z0-9])?){0,3}(:[1-9][0-9]{0,3})?",
        fullmatch=True,
    )
)
def test_a_missing_inventory_that_reads_as_one_host_says_how_a_single_host_is_given(name: str) -> None:
    """`-i h1` (Ansible users' one host, without its comma) said only "No such file or directory"."""
    assert single_host_hint(name) == f' (a single host is given as "{name},", with a trailing comma)'
    assert single_host_hint(f"inventories/{name}") == ""  # a path: the file is what is missing


@pytest.mark.parametrize("path", ["hosts.yml", "prod.ini", "fleet.json", "ops@h1", "./h1"])
def test_a_missing_inventory_file_gets_no_host_hint(path: str) -> None:
    assert single_host_hint(path) == ""


def test_the_single_host_hint_is_in_the_error_of_a_missing_inventory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InventoryError) as caught:
        load_inventory("h1")
    assert str(caught.value) == (
        'h1: cannot read inventory: No such file or directory (a single host is given as "h1,", with a '
        "trailing comma)"
    )
    (tmp_path / "h1").mkdir()  # a directory of that name is read as one: no hint
    with pytest.raises(InventoryError, match="no inventory files in this directory"):
        load_inventory("h1")


def test_duplicate_host_vars_merge_and_ungrouped_section(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("[ungrouped]\nsolo\nh1 a=1\n[g1]\nh1 b=2\n[g2]\nh1 a=3\n")
    inv = load_inventory(str(path))
    assert inv.names == ("solo", "h1")
    assert dict(inv.host("h1").vars) == {"a": 3, "b": 2}
    assert inv.groups["ungrouped"].hosts == ("solo",)  # listed elsewhere too: no longer ungrouped
    assert inv.host("h1").groups == ("g1", "g2")


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("[web]\nh1\n[web:bogus]\nh2\n", 3, "unknown type"),
        ("[web]\nh1 novalue\n", 2, "expected key=value"),
        ("[web]\nh1\n[ghost:vars]\nx=1\n", 3, "never declared"),
        ("[web:children]\nmissing\n", 2, "undefined group 'missing'"),
        ("[web]\nweb[3:1]x\n", 2, "host range"),
        ("[web ]\nh1\n", 1, "invalid section"),
        ("[a:children]\nb\n[b:children]\na\n", 4, "loop"),
    ],
)
def test_ini_errors_name_file_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = tmp_path / "hosts"
    path.write_text(text)
    with pytest.raises(InventoryError) as info:
        load_inventory(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert fragment in message
    assert message.startswith(f"{path}:{line}:" if line else f"{path}:")


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("all:\n  hosts:\n    h1:\n  childs:\n    g: {}\n", 4, "unexpected key 'childs'"),
        ("all:\n  hosts: [h1, h2]\n", 2, "hosts must be a mapping"),
        ("all:\n  hosts:\n    h1: [1]\n", 3, "variables must be a mapping"),
        ("all:\n  hosts:\n    h1: {a: 1\n", 4, "invalid YAML"),
        (
            "defaults: {user: root}\nhosts:\n  h1: {address: 192.0.2.1, colour: red}\n",
            3,
            "unknown key 'colour'",
        ),
        ("defaults: {}\nhosts:\n  h1: {port: 22}\n", 3, "has no address"),
        ("hosts:\n  h1: {address: 192.0.2.1}\ngroups:\n  g: [h1, h9]\n", 4, "unknown host 'h9'"),
        ("hosts:\n  h1: {address: 192.0.2.1, port: 99999}\n", 2, "between 1 and 65535"),
    ],
)
def test_yaml_errors_name_file_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text(text)
    with pytest.raises(InventoryError) as info:
        load_inventory(str(path))
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert fragment in str(info.value)


def test_missing_file_and_bad_vars_file(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="cannot read inventory"):
        load_inventory(str(tmp_path / "nope"))
    (tmp_path / "hosts").write_text("h1\n")
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "h1.yml").write_text("- not\n- a mapping\n")
    with pytest.raises(InventoryError, match=r"host_vars/h1\.yml: variables file must hold a mapping"):
        load_inventory(str(tmp_path / "hosts"))


def test_ini_vars_section_values_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text(
        "; a comment\n[web]\nh1 # trailing comment\n[web:vars]\nport_s = 8080\nname = two words\n"
        "flag = False\n"
    )
    v = load_inventory(str(path)).host("h1").vars
    # Ansible literal-evaluates [group:vars] values too (its docs say "strings"; its code disagrees).
    assert v == {"port_s": 8080, "name": "two words", "flag": False}


LINES_SAMPLE = "defaults: {user: root}\nhosts:\n  h1:\n    address: 198.51.100.1\n  h2: {address: h2.test}\n"
BAD_SAMPLE = "all:\n  hosts:\n    h1: {a: 1\n"


def test_libyaml_and_pyyaml_parsers_give_the_same_mappings_lines_and_error_places() -> None:
    # Inventories are read with libyaml's parser where PyYAML has it (the pip wheels do): it must keep
    # every key's line and every error's place as PyYAML's own parser does.
    assert yaml.__with_libyaml__
    assert issubclass(yamlfile._Loader, yaml.CSafeLoader)
    results = []
    for base in (yaml.SafeLoader, yaml.CSafeLoader):
        loader = yamlfile.line_loader(base)
        doc = yamlfile.parse_yaml(LINES_SAMPLE, "inv.yml", loader)
        hosts = doc["hosts"]
        lines = (
            doc.line_of("hosts"),
            hosts.line_of("h1"),
            hosts.line_of("h2"),
            hosts["h1"].line_of("address"),
        )
        with pytest.raises(InventoryError) as info:
            yamlfile.parse_yaml(BAD_SAMPLE, "inv.yml", loader)
        results.append((doc, lines, str(info.value).split(": ")[0]))
    assert results[0] == results[1]
    assert results[0][1] == (2, 3, 5, 4) and results[0][2] == "inv.yml:4"


def test_ansible_ssh_args_become_the_hosts_ssh_options(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "[web]\n"
        "web1 ansible_host=10.0.0.5\n"
        "web2 ansible_ssh_extra_args='-J ops@gw2'\n"
        "[web:vars]\n"
        'ansible_ssh_common_args=\'-o ProxyCommand="ssh -W %h:%p -q gw" -o StrictHostKeyChecking=no -i ~/.ssh/fleet'
        " -o IdentitiesOnly=yes'\n"
    )
    hosts = {h.name: h for h in load_inventory(str(inventory)).hosts}
    common = (
        ("proxycommand", "ssh -W %h:%p -q gw"),
        ("identityfile", "~/.ssh/fleet"),
        ("identitiesonly", "yes"),
    )
    assert hosts["web1"].ssh_options == common
    assert hosts["web2"].ssh_options == (*common, ("proxyjump", "ops@gw2"))  # common, then extra
    inventory.write_text("web1 ansible_ssh_timeout=3 ansible_ssh_extra_args='-J gw'\n")
    (host,) = load_inventory(str(inventory)).hosts
    assert host.ssh_options == (("connecttimeout", "3"), ("proxyjump", "gw"))
    inventory.write_text("web1 ansible_ssh_common_args='-o'\n")
    (host,) = load_inventory(str(inventory)).hosts
    assert host.refused == f"ansible_ssh_common_args: -o needs a value: '-o' (inventory {inventory})"


def test_ssh_args_docstring_examples_hold() -> None:
    result = doctest.testmod(ssh_args)
    assert result.attempted > 0 and result.failed == 0


def test_templating_docstring_examples_hold() -> None:
    result = doctest.testmod(templating)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (
            "web1 ansible_host='{{ missing }}.example'",
            r"ansible_host: cannot evaluate .*'missing' is undefined",
        ),
        (
            "web1 ansible_user=\"{{ lookup('file', '/etc/user') }}\"",
            r"ansible_user: .*lookup\('file'\) is not run here: only lookup\('env', NAME\) is",
        ),
        (
            "web1 ansible_host='{{ a }}' a='{{ b }}' b='{{ a }}'",
            r"ansible_host: .*refer to each other: a -> b -> a",
        ),
        ("web1 ansible_port='{{ 22 +'", r"ansible_port: cannot evaluate"),
        ("web1 ansible_user=\"{{ 'x' | frobnicate }}\"", r"ansible_user: .*No filter named 'frobnicate'"),
        ("web1 ansible_port=http", r"ansible_port must be a port number, got 'http'"),
        ("web1 ansible_become=maybe", r"ansible_become must be a boolean, got 'maybe'"),
    ],
)
def test_a_connection_variable_that_cannot_be_evaluated_refuses_that_host_only(
    tmp_path: Path, line: str, why: str
) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"[web]\n{line}\nweb2 ansible_host=10.0.0.2\n")
    bad, good = load_inventory(str(inventory)).hosts
    assert bad.name == "web1" and bad.refused is not None
    assert re.match(why, bad.refused) and bad.refused.endswith(f"(inventory {inventory})")
    assert good.address == "10.0.0.2" and good.refused is None


def test_a_host_that_cannot_be_evaluated_is_listed_as_written_and_the_others_run(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts"
    inventory.write_text(
        '[web]\ngood ansible_host=198.51.100.5\nbad1 ansible_host="{{ nope }}"\n'
        "bad2 ansible_user=\"{{ 'x' | frobnicate }}\"\nbad3 ansible_port=notaport\n"
    )

    def run(*args: str) -> Any:
        result = CliRunner().invoke(inventory_command, ["-i", str(inventory), *args])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    # ansible-inventory 2.19 --list on this file: every host, its variables as written.
    assert run("--list")["_meta"]["hostvars"] == {
        "bad1": {"ansible_host": "{{ nope }}"},
        "bad2": {"ansible_user": "{{ 'x' | frobnicate }}"},
        "bad3": {"ansible_port": "notaport"},
        "good": {"ansible_host": "198.51.100.5"},
    }
    assert run("--host", "bad1") == {"ansible_host": "{{ nope }}"}
    # `ansible all --list-hosts -l good` lists good alone; the others do not stop it.
    assert run("--list", "--limit", "good")["web"] == {"hosts": ["good"]}
    settings = run("--connections")
    assert settings["good"]["refused"] is None and settings["good"]["address"] == "198.51.100.5"
    assert settings["bad1"]["refused"].startswith("ansible_host: cannot evaluate '{{ nope }}'")


def test_templates_outside_the_connection_variables_are_left_as_written(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("web1 note='{{ never_defined }}' ansible_host='{{ inventory_hostname }}.lab'\n")
    (host,) = load_inventory(str(inventory)).hosts
    assert host.address == "web1.lab"
    assert host.vars["note"] == "{{ never_defined }}"  # as ansible-inventory lists it


def test_hosts_ansible_reaches_otherwise_than_ssh_and_sudo_are_marked_with_why(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "a ansible_connection=ssh\n"
        "b ansible_connection=paramiko\n"
        "c ansible_connection=local\n"
        "d ansible_connection=community.aws.aws_ssm\n"
        "e ansible_become_method=su\n"  # not becoming: no matter
        "f ansible_become=yes ansible_become_method=su\n"
        "g ansible_become=yes ansible_become_method=sudo ansible_connection='{{ how }}' how=smart\n"
    )
    refused = {h.name: h.refused for h in load_inventory(str(inventory)).hosts}
    assert [n for n, why in refused.items() if why is None] == ["a", "b", "e", "g"]
    assert str(refused["c"]).startswith("ansible_connection=local is not SSH")
    assert str(refused["d"]).startswith("ansible_connection=community.aws.aws_ssm is not SSH")
    assert refused["f"] == "ansible_become_method=su: trust-agent becomes root with sudo only"


def test_vault_and_unsafe_values_are_read_and_a_vaulted_connection_variable_says_why(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text(
        "ansible_become_password: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  3131\n"
        "literal: !unsafe '{{ kept }}'\n"
    )
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("web1 ansible_user='{{ literal }}'\n")
    (host,) = load_inventory(str(inventory)).hosts
    assert host.user == "{{ kept }}"  # !unsafe: never evaluated
    listed = to_ansible_list(load_inventory(str(inventory)))["_meta"]["hostvars"]["web1"]
    assert listed["ansible_become_password"] == {"__ansible_vault": "$ANSIBLE_VAULT;1.1;AES256\n3131\n"}
    assert listed["literal"] == {"__ansible_unsafe": "{{ kept }}"}
    inventory.write_text("web1 ansible_user='{{ ansible_become_password }}'\n")
    (host,) = load_inventory(str(inventory)).hosts
    assert host.refused is not None and re.match(
        r"ansible_user: .*encrypted with ansible-vault", host.refused
    )


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("echo 'cloud API: 403' >&2; exit 3\n", r"inventory script --list exited 3: cloud API: 403"),
        ("echo not json\n", r"inventory script --list printed no JSON"),
        ("echo '[1]'\n", r"inventory script --list printed no JSON object"),
        ("""echo '{"g": {"hosts": "h1"}}'\n""", r"group 'g': hosts must be a list"),
    ],
)
def test_an_inventory_script_that_fails_says_how(tmp_path: Path, body: str, why: str) -> None:
    script = _script(tmp_path / "fleet.sh", body)
    with pytest.raises(InventoryError, match=why) as info:
        load_inventory(str(script))
    assert info.value.where == str(script)


def test_an_ini_file_with_its_exec_bit_set_is_read_as_ini(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts"
    inventory.write_text("[web]\nweb1\n")
    inventory.chmod(0o755)  # as files copied from some file systems arrive
    assert load_inventory(str(inventory)).names == ("web1",)


def test_an_inventory_plugins_configuration_says_how_to_read_its_hosts(tmp_path: Path) -> None:
    config = tmp_path / "aws_ec2.yml"
    config.write_text("plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n")
    with pytest.raises(
        InventoryError,
        match=r"inventory plugin amazon\.aws\.aws_ec2.*ansible-inventory -i aws_ec2\.yml --list",
    ):
        load_inventory(str(config))
    _script(tmp_path / "fleet.sh", """echo '{"web": ["web1"], "_meta": {"hostvars": {}}}'\n""")
    assert load_inventory(str(tmp_path / "fleet.sh")).names == ("web1",)


def test_an_inventory_directory_without_inventory_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "README.md").write_text("[web]\nweb1\n")
    with pytest.raises(InventoryError, match="no inventory files in this directory"):
        load_inventory(str(tmp_path))


def test_jinja2_is_loaded_only_for_an_inventory_with_templates(tmp_path: Path) -> None:
    # Its import costs every run ~20 ms of start-up, before the first host is contacted.
    plain, templated = tmp_path / "plain.ini", tmp_path / "templated.ini"
    plain.write_text("web1 ansible_host=198.51.100.21 note='{ not jinja }'\n")
    templated.write_text("web1 ansible_host='{{ inventory_hostname }}.lab'\n")
    probe = (
        "import sys\nfrom agent.inventory import load_inventory\n"
        "load_inventory(sys.argv[1])\nprint('jinja2' in sys.modules)\n"
    )
    seen = [
        subprocess.run(
            [sys.executable, "-c", probe, str(path)], capture_output=True, text=True, check=True, timeout=60
        ).stdout.strip()
        for path in (plain, templated)
    ]
    assert seen == ["False", "True"]


def test_an_inventory_script_that_hangs_is_stopped_with_what_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inventory_script, "TIMEOUT", 1.0)
    marker = tmp_path / "still-running"
    # A child of the script's: stopping the script alone would leave it running, orphaned.
    script = _script(tmp_path / "slow.sh", f"sleep 31.7 && touch {marker}; echo '{{}}'\n")
    started = time.monotonic()
    with pytest.raises(InventoryError, match=r"inventory script --list ran over 1s"):
        load_inventory(str(script))
    assert time.monotonic() - started < 10
    time.sleep(0.5)
    assert subprocess.run(["pgrep", "-f", "^sleep 31.7$"], capture_output=True).returncode == 1


def test_the_inventory_command_shows_where_each_host_is_reached_and_how(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "[web]\nweb1 ansible_host='{{ inventory_hostname }}.lab' ansible_ssh_common_args='-J gw'\n"
        "local1 ansible_connection=local\n"
    )
    shown = CliRunner().invoke(inventory_command, ["-i", str(inventory), "--connections"])
    assert shown.exit_code == 0, shown.output
    settings = json.loads(shown.output)
    assert settings["web1"]["address"] == "web1.lab" and settings["web1"]["ssh_options"] == ["proxyjump=gw"]
    assert settings["web1"]["refused"] is None
    assert settings["local1"]["refused"].startswith("ansible_connection=local is not SSH")
    for args in ([], ["--list", "--connections"]):
        refused = CliRunner().invoke(inventory_command, ["-i", str(inventory), *args])
        assert refused.exit_code == 2 and "one of --list, --host NAME, --connections" in refused.output
    missing = CliRunner().invoke(inventory_command, ["-i", str(inventory), "--host", "web9"])
    assert missing.exit_code == 2 and "no host named 'web9'" in missing.output


@pytest.mark.parametrize("name", ["esc\x1b]0;pwned\x07", "two\nlines", "back\rwards"])
def test_a_host_name_with_a_control_character_is_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / "inv.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": {name: {"ansible_host": "h.example"}}}}))
    with pytest.raises(InventoryError, match="holds a control character"):
        load_inventory(str(path))


def test_a_script_without_its_exec_bit_says_so_where_it_fails_as_ini(tmp_path: Path) -> None:
    path = tmp_path / "inv.py"
    path.write_text("#!/usr/bin/env python3\nimport json\nprint(json.dumps({}))\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory(str(path))
    assert str(caught.value).startswith(f"{path}:2: expected key=value after host 'import'")
    assert str(caught.value).endswith(
        "(the file starts with #! but is not executable: chmod +x it to run it as an inventory script)"
    )


def test_only_the_first_vars_file_of_a_name_is_read_as_ansible_reads_them(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts"
    inventory.write_text("[web]\nw1\nw2\n[db]\nd1\n")
    files = {
        "group_vars/all.yaml": "from_yaml: 1\n",
        "group_vars/all.json": '{"from_json": 1}\n',  # all.yaml comes first: not read
        "group_vars/web/main.yml": "from_dir: 1\n",
        "group_vars/web.yml": "from_yml: 1\n",  # the directory web/ comes first: not read
        "group_vars/db": "from_bare: 1\n",
        "group_vars/db.yml": "from_db_yml: 1\n",  # the bare name comes first: not read
        "host_vars/w1.yml": "a: 1\n",
        "host_vars/w1.yaml": "b: 2\n",  # w1.yml comes first: not read
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    # ansible-inventory 2.19 --list on this tree.
    assert to_ansible_list(load_inventory(str(inventory)))["_meta"]["hostvars"] == {
        "w1": {"a": 1, "from_dir": 1, "from_yaml": 1},
        "w2": {"from_dir": 1, "from_yaml": 1},
        "d1": {"from_bare": 1, "from_yaml": 1},
    }


# --- parity with ansible-core (each checked against ansible-inventory / ansible -m debug) ------------


def _ini_inventory(text: str, source: str = "/srv/inventory/hosts") -> Any:
    from agent.inventory.ansible_ini import parse_ini
    from agent.inventory.builder import InventoryData

    data = InventoryData(source)
    parse_ini(text, data)
    return data.build()


def test_connection_templates_read_hostvars_groups_and_ungrouped_group_names() -> None:
    inv = _ini_inventory(
        "solo ansible_user=\"{{ group_names | join(',') }}\"\n"
        "[web]\n"
        'web1.corp.example ansible_host=10.0.0.1 ansible_user="{{ inventory_hostname_short }}"\n'
        "web2 ansible_host=\"{{ hostvars['web1.corp.example']['ansible_host'] }}\" "
        "ansible_user=\"{{ groups['web'] | join('-') }}\" ansible_become_user=\"{{ inventory_file }}\"\n"
    )
    assert inv.host("solo").user == "ungrouped"  # Ansible's group_names leaves out `all` only
    assert inv.host("web1.corp.example").user == "web1"
    web2 = inv.host("web2")
    assert (web2.address, web2.user, web2.refused) == ("10.0.0.1", "web1.corp.example-web2", None)
    assert web2.become_user == "/srv/inventory/hosts"
    # What templates read of the inventory is not a host variable: the listing stays Ansible's.
    assert {"groups", "hostvars", "inventory_file", "inventory_dir"}.isdisjoint(web2.vars)


def test_hostvars_of_another_host_are_evaluated_in_that_hosts_terms() -> None:
    inv = _ini_inventory(
        "[g]\n"
        'a ansible_host="{{ inventory_hostname }}.lan"\n'
        "b ansible_host=\"{{ hostvars['a'].ansible_host | regex_replace('^a', 'b') }}\"\n"
    )
    assert inv.host("b").address == "b.lan"


def test_hosts_whose_hostvars_refer_to_each_other_are_refused_saying_so() -> None:
    inv = _ini_inventory(
        "[g]\n"
        "a ansible_host=\"{{ hostvars['b']['ansible_host'] }}\"\n"
        "b ansible_host=\"{{ hostvars['a']['ansible_host'] }}\"\n"
        "c ansible_host=10.0.0.3\n"
    )
    assert "refer to each other" in (inv.host("a").refused or "")
    assert "hostvars['a']['ansible_host']" in (inv.host("b").refused or "")
    assert inv.host("c").refused is None


@pytest.mark.parametrize(
    ("template", "want"),
    [
        ("{{ (inventory_hostname == 'h1') | ternary('10.0.0.1', '10.0.0.2') }}", "10.0.0.1"),
        ("{{ none_var | ternary('a', 'b', 'n') }}", "n"),
        ("{{ 'ops,dev' | split(',') | last }}", "dev"),
        ("{{ 'p2201' | regex_search('[0-9]+') }}", "2201"),
        ("{{ 'h-12-x' | regex_search('h-(\\\\d+)-(?P<s>.)', '\\\\1', '\\\\g<s>') | join(':') }}", "12:x"),
        ("{{ 'web1' | regex_replace('1$', '9') }}", "web9"),
        ("-o ProxyCommand={{ 'nc %h %p' | quote }}", "-o ProxyCommand='nc %h %p'"),
        ("{{ 'YWRtaW4=' | b64decode }}", "admin"),
        ("{{ 'admin' | b64encode }}", "YWRtaW4="),
        ("{{ '/keys/id_ed25519' | basename }}", "id_ed25519"),
    ],
)
def test_ansible_filters_in_connection_templates(template: str, want: str) -> None:
    assert templating.evaluate(template, {"inventory_hostname": "h1", "none_var": None}) == want


def test_a_connection_variable_defaulting_to_omit_is_as_if_unset() -> None:
    inv = _ini_inventory(
        "[g]\n"
        'h1 ansible_host=10.0.0.1 ansible_port="{{ p | default(omit) }}" '
        'ansible_user="{{ u | default(omit) }}"\n'
        'h2 ansible_port="{{ p | default(omit) }}" p=2202\n'
    )
    h1 = inv.host("h1")
    assert (h1.address, h1.port, h1.port_given, h1.user, h1.refused) == ("10.0.0.1", 22, False, None, None)
    assert inv.host("h2").port == 2202


def test_an_alias_whose_template_gives_omit_leaves_the_setting_to_the_other_alias() -> None:
    """ansible_ssh_user outranks ansible_user; where it is omit, Ansible logs in as ansible_user. The
    later alias was taken before it was evaluated, and the host had no user at all."""
    inv = _ini_inventory('[g]\nh1 ansible_user=bob ansible_ssh_user="{{ u | default(omit) }}"\n')
    assert inv.host("h1").user == "bob"
    inv = _ini_inventory('[g]\nh1 ansible_user=bob ansible_ssh_user="{{ u | default(omit) }}" u=eve\n')
    assert inv.host("h1").user == "eve"


@pytest.mark.parametrize(
    ("template", "named"),
    [
        ("{{ inventory_hostname | to_uuid }}", "to_uuid"),
        ("{{ playbook_dir }}/x", "playbook_dir"),
        ("{{ lookup('file', 'x') }}", "lookup('file')"),
        ("{{ hostvars['nosuch']['ansible_host'] }}", "nosuch"),
    ],
)
def test_a_refused_host_names_what_is_not_supported(template: str, named: str) -> None:
    inv = _ini_inventory(f'[g]\nh1 ansible_host="{template}"\nh2\n')
    # The reason, after the value as written, names it.
    reason = (inv.host("h1").refused or "").split("}}': ", 1)[-1]
    assert named in reason
    assert inv.host("h2").refused is None


@pytest.mark.parametrize(
    ("lines", "port"),
    [
        ("[a]\nh1:2201\n[b]\nh1:2202\n", 2201),  # host:port counts where the host is first seen
        ("[a]\nh1 ansible_port=2202\n[b]\nh1:2201\n", 2202),
        ("[a]\nh1 ansible_port=2201\n[b]\nh1 ansible_port=2202\n", 2202),  # a variable: the last
        ("[a]\nh1:2201\n[b]\nh1 ansible_port=2202\n", 2202),
    ],
)
def test_a_host_listed_twice_with_two_ports_takes_ansibles(lines: str, port: int) -> None:
    assert _ini_inventory(lines).host("h1").port == port


def test_a_comma_host_list_is_read_as_ansibles_host_list_plugin() -> None:
    from agent.inventory import host_list

    inv = host_list("web[1:2],ops@h1:2222,[2001:db8::1]:2200,h1:2201,h1:2202,")
    assert inv.names == ("web[1:2]", "ops@h1:2222", "2001:db8::1", "h1")
    assert [h.port for h in inv] == [22, 22, 2200, 2201]
    assert inv.host("h1").vars["ansible_port"] == 2201


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("{1, 2}", [1, 2]),
        ("(1, 'a')", [1, "a"]),
        ("b'xy'", "xy"),
        ("1j", "1j"),
        ("...", "..."),
        ("[{3}]", [[3]]),
    ],
)
def test_ini_literals_a_variable_cannot_hold_become_what_ansible_makes_of_them(text: str, want: Any) -> None:
    from agent.inventory.ansible_ini import parse_value

    assert parse_value(text) == want


@pytest.mark.parametrize(
    "doc", [{"g": {"hosts": {1: None}}}, {1: {"hosts": {"h": None}}}, {"g": {"children": {2: None}}}]
)
def test_yaml_group_and_host_names_must_be_text_as_ansible_requires(doc: dict[Any, Any]) -> None:
    from agent.inventory.ansible_yaml import parse_ansible_yaml
    from agent.inventory.builder import InventoryData

    with pytest.raises(InventoryError, match=r"is a int, not text: quote it \('\d'\)"):
        parse_ansible_yaml(doc, InventoryData("inv.yml"))


def test_listing_keeps_a_given_port_22_and_writes_dates_as_ansible_does() -> None:
    import datetime

    from agent.inventory.native import parse_native

    inv = parse_native(
        {"hosts": {"h1": {"address": "10.0.0.1", "port": 22}, "h2": {"address": "10.0.0.2"}}}, "inv.yml"
    )
    assert to_ansible_list(inv)["_meta"]["hostvars"] == {
        "h1": {"ansible_host": "10.0.0.1", "ansible_port": 22},
        "h2": {"ansible_host": "10.0.0.2"},
    }
    stamp = datetime.datetime(2024, 1, 2, 10, 11, 12)
    dated = Host("h3", "h3", vars={"ts": stamp, "day": stamp.date(), "s": {7}})
    assert inventory_json(dated) == {"ts": "2024-01-02T10:11:12", "day": "2024-01-02", "s": [7]}


def inventory_json(host: Host) -> Any:
    from agent.inventory.ansible_list import hostvars

    return hostvars(host, True)
