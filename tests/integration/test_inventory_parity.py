"""trust-agent reads Ansible inventories as real ``ansible-inventory`` does.

Every inventory under ``tests/fixtures/ansible_parity/`` is read by both, with and without each
``--limit`` pattern in its ``limits`` file, and compared: hosts, group membership (hosts and children,
in order), every host variable, and the connection settings Ansible's own ssh connection and sudo
plugins resolve (address, port, user, key, become, become user), with their templates evaluated as
before a task connects. Inventories under ``_rejected/`` must
be refused by both.

ansible-core comes from PyPI into a cached venv made by ``ansible-compat/scripts/controller-env.sh``
(``TRUST_AGENT_ANSIBLE_VENV``, default ``/var/cache/trust-agent-test/ansible-venv``). Without it the
comparisons are skipped, except under CI (``CI=true``), where a missing ansible is a failure. The
tests at the end need no ansible: they pin what the comparison established.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agent.errors import InventoryError
from agent.inventory import load_inventory, select
from agent.inventory_cli import host_variables, inventory_command, inventory_listing

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fixtures" / "ansible_parity"
CONTROLLER_ENV = ROOT / "ansible-compat" / "scripts" / "controller-env.sh"
ANSIBLE_VENV = Path(os.environ.get("TRUST_AGENT_ANSIBLE_VENV", "/var/cache/trust-agent-test/ansible-venv"))

CASES = sorted(p for p in CORPUS.iterdir() if p.is_dir() and not p.name.startswith("_"))
REJECTED = sorted(p for p in (CORPUS / "_rejected").iterdir() if p.is_dir())


def inventory_file(case: Path) -> Path:
    """The case's inventory: its one file (an INI, YAML or JSON file, or an executable script), or its
    ``inventory.d`` directory."""
    if (case / "inventory.d").is_dir():
        return case / "inventory.d"
    files = [p for p in case.iterdir() if p.is_file() and p.name != "limits"]
    assert len(files) == 1, f"{case}: expected one inventory file beside group_vars/host_vars, got {files}"
    return files[0]


def limits(case: Path) -> list[str]:
    path = case / "limits"
    return [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


CASE_LIMITS = [
    pytest.param(case, limit, id=f"{case.name}[{limit}]" if limit else case.name)
    for case in CASES
    for limit in [None, *limits(case)]
]


def test_corpus_is_broad() -> None:
    assert len(CASES) >= 15
    assert sum(len(limits(c)) for c in CASES) >= 30
    kinds = {inventory_file(c).suffix or "ini" for c in CASES}
    assert {"ini", ".yml", ".yaml", ".json"} <= kinds
    assert any((c / "group_vars").is_dir() and (c / "host_vars").is_dir() for c in CASES)


# --- the real ansible-inventory ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def ansible_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment where no user or system ansible.cfg applies."""
    home = tmp_path_factory.mktemp("ansible-home")
    (home / "ansible.cfg").write_text("[defaults]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        HOME=str(home),
        ANSIBLE_CONFIG=str(home / "ansible.cfg"),
        ANSIBLE_INVENTORY_UNPARSED_FAILED="true",
        ANSIBLE_DEPRECATION_WARNINGS="false",
        ANSIBLE_NOCOLOR="1",
    )
    return env


def run_ansible_inventory(
    bin_dir: Path, env: dict[str, str], path: Path, limit: str | None = None, host: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``ansible-inventory -i PATH --list [--limit LIMIT]``, or ``--host HOST``."""
    argv = [str(bin_dir / "ansible-inventory"), "-i", str(path), *(["--host", host] if host else ["--list"])]
    if limit:
        argv += ["--limit", limit]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=env["HOME"], timeout=120)


def ansible_listing(bin_dir: Path, env: dict[str, str], path: Path, limit: str | None) -> dict[str, Any]:
    result = run_ansible_inventory(bin_dir, env, path, limit)
    assert result.returncode == 0, f"ansible-inventory refused {path} (--limit {limit}): {result.stderr}"
    listing: dict[str, Any] = json.loads(result.stdout)
    return listing


# Ansible's own resolution of the connection settings: the ssh connection plugin and the sudo become
# plugin read the host's variables, with their aliases and precedence.
_CONNECTION_SCRIPT = r"""
import json, sys
from ansible import errors
from ansible.inventory.manager import InventoryManager
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext
from ansible.plugins.loader import become_loader, connection_loader
from ansible.template import Templar
from ansible.vars.hostvars import HostVars
from ansible.vars.manager import VariableManager

CONNECTION_VARS = {
    "ansible_host", "ansible_ssh_host", "ansible_port", "ansible_ssh_port", "ansible_user",
    "ansible_ssh_user", "ansible_private_key_file", "ansible_ssh_private_key_file", "ansible_become",
    "ansible_become_user",
}
OMITTED = getattr(errors, "AnsibleValueOmittedError", ())  # ansible-core 2.19+
loader = DataLoader()
inventory = InventoryManager(loader=loader, sources=[sys.argv[1]])
variables = VariableManager(loader=loader, inventory=inventory)
HostVars(inventory=inventory, variable_manager=variables, loader=loader)  # as a play starts: hostvars[...]
out = {}
for host in inventory.get_hosts():
    hv = dict(variables.get_vars(host=host, include_hostvars=True, stage="all"))
    hv["inventory_hostname"] = host.name
    # As the task executor does before connecting: the connection variables are templated.
    templar = Templar(loader=loader, variables=hv)
    templated = {}
    for k, v in hv.items():
        try:
            templated[k] = templar.template(v) if k in CONNECTION_VARS else v
        except OMITTED:
            pass  # a connection variable that resolves to omit is unset, as ansible -vvv shows
    hv = templated
    ssh = connection_loader.get("ssh", PlayContext(), None)
    ssh.set_options(var_options=hv)
    sudo = become_loader.get("sudo")
    sudo.set_options(var_options=hv)
    out[host.name] = {
        "address": ssh.get_option("host"),
        "port": ssh.get_option("port"),
        "user": ssh.get_option("remote_user"),
        "identity_file": ssh.get_option("private_key_file"),
        "become": boolean(hv.get("ansible_become", False), strict=False),
        "become_user": sudo.get_option("become_user"),
    }
print(json.dumps(out, default=str))
"""


def ansible_connections(bin_dir: Path, env: dict[str, str], path: Path) -> dict[str, dict[str, Any]]:
    result = subprocess.run(
        [str(bin_dir / "python"), "-c", _CONNECTION_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=env["HOME"],
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out: dict[str, dict[str, Any]] = json.loads(result.stdout)
    return out


def groups_of(listing: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    return {
        name: {"hosts": body.get("hosts", []), "children": body.get("children", [])}
        for name, body in listing.items()
        if name != "_meta"
    }


@pytest.mark.parametrize(("case", "limit"), CASE_LIMITS)
def test_same_listing_as_ansible_inventory(
    ansible_bin: Path, ansible_env: dict[str, str], case: Path, limit: str | None
) -> None:
    path = inventory_file(case)
    theirs = ansible_listing(ansible_bin, ansible_env, path, limit)
    ours = json.loads(json.dumps(inventory_listing(str(path), limit)))
    # Hosts, groups, and which hosts and child groups each group lists, in order.
    assert groups_of(ours) == groups_of(theirs)
    # Every variable of every selected host, after group_vars/host_vars and precedence.
    assert ours["_meta"]["hostvars"] == theirs["_meta"]["hostvars"]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_same_connection_settings_as_ansible(
    ansible_bin: Path, ansible_env: dict[str, str], case: Path
) -> None:
    path = inventory_file(case)
    theirs = ansible_connections(ansible_bin, ansible_env, path)
    inv = load_inventory(str(path))
    assert set(inv.names) == set(theirs)
    for host in inv:
        want = theirs[host.name]
        key = want["identity_file"]
        assert host.address == want["address"], host.name
        assert host.port == (want["port"] or 22), host.name  # unset: ssh's default port
        assert host.user == want["user"], host.name
        assert host.identity_file == (os.path.expanduser(key) if key else None), host.name
        assert host.become is want["become"], host.name
        assert (host.become_user or "root") == want["become_user"], host.name


@pytest.mark.parametrize("case", REJECTED, ids=[c.name for c in REJECTED])
def test_both_refuse_what_ansible_refuses(ansible_bin: Path, ansible_env: dict[str, str], case: Path) -> None:
    path = inventory_file(case)
    assert run_ansible_inventory(ansible_bin, ansible_env, path).returncode != 0
    with pytest.raises(InventoryError):
        load_inventory(str(path))


def test_cli_prints_what_ansible_inventory_prints(ansible_bin: Path, ansible_env: dict[str, str]) -> None:
    path = inventory_file(CORPUS / "yaml_nested")
    result = CliRunner().invoke(inventory_command, ["--list", "-i", str(path), "--limit", "europe:!par2"])
    assert result.exit_code == 0, result.output
    ours = json.loads(result.output)
    theirs = ansible_listing(ansible_bin, ansible_env, path, "europe:!par2")
    theirs["_meta"].pop("profile", None)  # ansible-core 2.19+ names its output profile
    assert ours == theirs


def test_a_limit_file_is_read_as_ansible_reads_it(
    ansible_bin: Path, ansible_env: dict[str, str], tmp_path: Path
) -> None:
    """``--limit @FILE``: Ansible's retry files, one host name or pattern a line, with other terms."""
    path = inventory_file(CORPUS / "yaml_nested")
    retry = tmp_path / "site.retry"
    retry.write_text("par1\n\n  par3  \n")
    limit = f"@{retry},ber1"
    result = CliRunner().invoke(inventory_command, ["--list", "-i", str(path), "--limit", limit])
    assert result.exit_code == 0, result.output
    ours = json.loads(result.output)
    theirs = ansible_listing(ansible_bin, ansible_env, path, limit)
    theirs["_meta"].pop("profile", None)
    assert ours == theirs and sorted(ours["_meta"]["hostvars"]) == ["ber1", "par1", "par3"]
    missing = CliRunner().invoke(inventory_command, ["--list", "-i", str(path), "--limit", "@/nonexistent"])
    assert missing.exit_code == 2 and "limit file /nonexistent: cannot read" in missing.output


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_hosts_variables_are_what_ansible_inventory_host_prints(
    ansible_bin: Path, ansible_env: dict[str, str], case: Path
) -> None:
    path = inventory_file(case)
    name = load_inventory(str(path)).names[-1]
    result = run_ansible_inventory(ansible_bin, ansible_env, path, host=name)
    assert result.returncode == 0, result.stderr
    assert host_variables(str(path), name) == json.loads(result.stdout)


_WRITTEN_CASES = {
    "magic_and_filters.ini": (
        "solo ansible_user=\"{{ group_names | join(',') }}\"\n"
        "[web]\n"
        "web1.corp.example ansible_host=\"{{ (inventory_hostname_short == 'web1') | ternary('10.0.0.1', 'x') }}\" "
        "ansible_user=\"{{ 'ops,dev' | split(',') | first }}\" ansible_port=\"{{ 'p2201' | regex_search('[0-9]+') }}\" "
        "ansible_become_user=\"{{ 'YWRtaW4=' | b64decode }}\" "
        'ansible_ssh_private_key_file="{{ inventory_dir }}/keys/{{ inventory_hostname_short }}"\n'
        "web2 ansible_host=\"{{ hostvars['web1.corp.example']['ansible_host'] | regex_replace('1$', '9') }}\" "
        "ansible_user=\"{{ groups['web'] | join('-') }}\" ansible_port=\"{{ nope | default(omit) }}\" "
        "ansible_ssh_private_key_file=\"{{ inventory_file }}.{{ 'a b' | quote }}\"\n"
    ),
    "two_ports.ini": "[a]\nh1:2201\nh2 ansible_port=2202\n[b]\nh1:2203\nh2:2204\n[c]\nh2 ansible_port=2205\n",
    "literals.ini": "[g]\nh1 s={1,2} t=(1,2) c=1j\n[g:vars]\nb=b'xy'\ne=...\n",
    "timestamps.yml": "g:\n  hosts:\n    h1:\n      day: 2024-01-02\n      ts: 2024-01-02 10:11:12\n",
    "all_hosts.yml": "all:\n  hosts:\n    a1:\n    a2:\n      ansible_port: 22\n  children:\n    g:\n      hosts:\n        a2:\n",
    # `web` is a host and a group: the host's variables set once the group exists are the group's.
    "same_name.ini": "[web]\nweb ansible_host=10.0.0.9\nw1\nw2\n[db]\nd1\nweb\n",
    # A :port counts only after an address; otherwise the colon is part of the name.
    "ports_after_names.ini": "[g]\ndeploy@h1:2222\nh2.example.com.:2201\nh3:2202\n[2001:db8::5]:2203\n",
    "ports_after_names.yml": "g:\n  hosts:\n    deploy@h1:2222:\n    h3:2202:\n",
    # Not YAML: Ansible's ini plugin reads it after its yaml plugin gives up.
    "ini_named.yml": "[web]\nw1 ansible_port=2201\n[db]\nd1\n",
}


@pytest.mark.parametrize("name", sorted(_WRITTEN_CASES))
def test_written_inventories_read_as_ansible_reads_them(
    ansible_bin: Path, ansible_env: dict[str, str], tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    path.write_text(_WRITTEN_CASES[name])
    theirs = ansible_listing(ansible_bin, ansible_env, path, None)
    theirs["_meta"].pop("profile", None)
    assert json.loads(json.dumps(inventory_listing(str(path)), default=str)) == theirs
    connections = ansible_connections(ansible_bin, ansible_env, path)
    for host in load_inventory(str(path)):
        want = connections[host.name]
        assert host.refused is None, host.refused
        got = (host.address, host.port, host.user, host.identity_file, host.become_user or "root")
        assert got == (
            want["address"],
            want["port"] or 22,
            want["user"],
            want["identity_file"],
            want["become_user"],
        )


@pytest.mark.parametrize(
    "limit", ["web", "all:!web", "db:!web", "all:&web", "web[1]", "all:!localhost", "web,!127.0.0.1"]
)
def test_a_limit_selects_as_ansibles_where_a_host_and_a_group_share_a_name(
    ansible_bin: Path, ansible_env: dict[str, str], tmp_path: Path, limit: str
) -> None:
    path = tmp_path / "same_name.ini"
    path.write_text(_WRITTEN_CASES["same_name.ini"])
    theirs = ansible_listing(ansible_bin, ansible_env, path, limit)
    theirs["_meta"].pop("profile", None)
    assert json.loads(json.dumps(inventory_listing(str(path), limit), default=str)) == theirs


@pytest.mark.parametrize("text", ["[g]\nweb2\nweb1:\n", "[g]\nweb2\n---\n"])
def test_ini_host_entries_ansible_refuses_are_refused_by_both(
    ansible_bin: Path, ansible_env: dict[str, str], tmp_path: Path, text: str
) -> None:
    path = tmp_path / "hosts"
    path.write_text(text)
    assert run_ansible_inventory(ansible_bin, ansible_env, path).returncode != 0
    with pytest.raises(InventoryError, match=r":3: host '(web1:|---)'"):
        load_inventory(str(path))


@pytest.mark.parametrize("where", ["hosts", "hosts.yml", "group_vars/web.yml"])
def test_a_file_encrypted_whole_with_ansible_vault_is_refused_by_both(
    ansible_bin: Path, ansible_env: dict[str, str], tmp_path: Path, where: str
) -> None:
    vault = "$ANSIBLE_VAULT;1.1;AES256\n6231336539666234\n6134333665353966\n"
    inventory = tmp_path / ("hosts" if where.startswith("group_vars") else where)
    (tmp_path / "group_vars").mkdir()
    inventory.write_text("[web]\nw1\n")
    (tmp_path / where).write_text(vault)
    assert run_ansible_inventory(ansible_bin, ansible_env, inventory).returncode != 0
    with pytest.raises(
        InventoryError, match="encrypted with ansible-vault, which trust-agent does not decrypt"
    ):
        load_inventory(str(inventory))


@pytest.mark.parametrize("spec", ["web[1:2],x,", "ops@h1:2222,[2001:db8::1]:2200,h1:2201,h1:2202,"])
def test_a_comma_host_list_reads_as_ansibles(
    ansible_bin: Path, ansible_env: dict[str, str], spec: str
) -> None:
    theirs = ansible_listing(ansible_bin, ansible_env, Path(spec), None)
    theirs["_meta"].pop("profile", None)
    assert inventory_listing(spec) == theirs


def test_integer_yaml_host_names_are_refused_by_both(
    ansible_bin: Path, ansible_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "numbers.yml"
    path.write_text("g:\n  hosts:\n    1:\n    '2':\n")
    assert run_ansible_inventory(ansible_bin, ansible_env, path).returncode != 0
    with pytest.raises(InventoryError, match=r"host name 1 is a int, not text: quote it"):
        load_inventory(str(path))
    path.write_text("g:\n  hosts:\n    '1':\n")
    assert run_ansible_inventory(ansible_bin, ansible_env, path).returncode == 0
    assert load_inventory(str(path)).names == ("1",)


# --- what the comparison established, pinned without ansible ----------------------------------------


def test_every_inventory_group_var_is_below_every_group_vars_file() -> None:
    # Ansible's VARIABLE_PRECEDENCE: group_vars/all.yml beats a group's vars in the inventory file.
    inv = load_inventory(str(inventory_file(CORPUS / "yaml_vars_precedence")))
    assert inv.host("m3").vars["p"] == "group_vars_all"
    assert inv.host("m1").vars["p"] == "group_vars_parent"
    assert inv.host("m2").vars["p"] == "host_vars_m2"
    assert inv.host("m2").vars["more"] is True


def test_group_priority_orders_groups_and_is_not_a_host_variable() -> None:
    inv = load_inventory(str(inventory_file(CORPUS / "ini_group_priority")))
    assert dict(inv.host("h1").vars) == {"p": "z"}  # z_last has priority 5: merged after a_first
    assert dict(inv.host("h2").vars) == {"p": "zz"}  # same priority: by name
    yinv = load_inventory(str(inventory_file(CORPUS / "yaml_group_priority")))
    assert dict(yinv.host("x1").vars) == {"who": "high"}


def test_only_hash_comments_follow_a_section_header(tmp_path: Path) -> None:
    ok = tmp_path / "ok"
    ok.write_text("; whole-line comment\n[web] # fine\nw1\n[p:children] # fine\nweb\n")
    assert load_inventory(str(ok)).group_hosts("p") == ("w1",)
    bad = inventory_file(CORPUS / "_rejected" / "semicolon_after_section")
    with pytest.raises(InventoryError, match=r":4: "):
        load_inventory(str(bad))


@pytest.mark.parametrize(
    ("pattern", "hosts"),
    [
        ("web[0:2]", ("web01", "web02", "web03")),
        ("web[-1]", ("web12",)),
        ("odd[1:]", ("node4", "node7", "node10")),
        ("db[2]", ("db-c.example.net",)),
        ("web[3:0]", ("web04",)),  # as Ansible: an end of 0 means a single host
        ("wide[1]:upper[0:1]", ("x10", "rackA-n1", "rackA-n2")),
    ],
)
def test_subscripts_pick_by_position(pattern: str, hosts: tuple[str, ...]) -> None:
    inv = load_inventory(str(inventory_file(CORPUS / "ini_ranges")))
    assert set(select(inv, pattern)) == set(hosts)


def test_subscript_out_of_range_is_an_error() -> None:
    inv = load_inventory(str(inventory_file(CORPUS / "ini_ranges")))
    with pytest.raises(InventoryError, match="subscripted"):
        select(inv, "db[6]")


def test_subscript_follows_group_order_through_children() -> None:
    inv = load_inventory(str(inventory_file(CORPUS / "yaml_nested")))
    assert select(inv, "europe[0:1]") == ("par1", "par2")
    assert select(inv, "europe[-1]") == ("ber1",)


def test_cli_refuses_without_list_and_on_bad_inventory(tmp_path: Path) -> None:
    path = str(inventory_file(CORPUS / "ini_basic"))
    assert CliRunner().invoke(inventory_command, ["-i", path]).exit_code == 2
    bad = CliRunner().invoke(inventory_command, ["--list", "-i", str(tmp_path / "missing.ini")])
    assert bad.exit_code == 2
    assert "missing.ini" in bad.output
    nothing = CliRunner().invoke(inventory_command, ["--list", "-i", path, "--limit", "nosuch"])
    assert nothing.exit_code == 2
