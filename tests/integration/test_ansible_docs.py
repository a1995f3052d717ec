"""The collection's documentation is what ``ansible-doc`` can read: both modules' DOCUMENTATION, EXAMPLES
and RETURN are YAML, and the real ``ansible-doc`` (from the controller venv of ``tests/conftest.py``;
missing: a skip, a failure in CI) shows both modules and the role."""

from __future__ import annotations

import ast
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / "ansible-compat" / "collections"
MODULES = COLLECTIONS / "ansible_collections" / "trustagent" / "docker" / "plugins" / "modules"
ROLE = COLLECTIONS / "ansible_collections" / "trustagent" / "docker" / "roles" / "registry_trust"
DOC_BLOCKS = ("DOCUMENTATION", "EXAMPLES", "RETURN")


def doc_blocks(module: Path) -> dict[str, str]:
    """The module's doc strings, read without importing it (it imports Ansible)."""
    tree = ast.parse(module.read_text())
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id in DOC_BLOCKS
    }


MODULE_FILES = sorted(MODULES.glob("*.py"))


def test_both_modules_are_documented() -> None:
    assert [m.stem for m in MODULE_FILES] == ["registry_trust", "registry_trust_verify"]


@pytest.mark.parametrize("module", MODULE_FILES, ids=lambda p: p.stem)
def test_module_docs_are_yaml(module: Path) -> None:
    blocks = doc_blocks(module)
    assert sorted(blocks) == sorted(DOC_BLOCKS)
    doc: dict[str, Any] = yaml.safe_load(blocks["DOCUMENTATION"])
    assert doc["module"] == module.stem
    assert all(o.get("description") for o in doc["options"].values())
    returns: dict[str, Any] = yaml.safe_load(blocks["RETURN"])
    assert all(r.get("description") for r in returns.values())
    examples = yaml.safe_load(blocks["EXAMPLES"])
    assert isinstance(examples, list) and examples


def test_every_role_option_is_described_and_defaults_match() -> None:
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    options: dict[str, Any] = spec["argument_specs"]["main"]["options"]
    defaults: dict[str, Any] = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert set(options) == set(defaults)
    for name, option in options.items():
        assert option.get("description"), name
        if not option.get("required"):
            assert option["default"] == defaults[name], name


@pytest.mark.parametrize(
    "what",
    [
        ["trustagent.docker.registry_trust"],
        ["trustagent.docker.registry_trust_verify"],
        ["-t", "role", "trustagent.docker.registry_trust"],
    ],
    ids=["registry_trust", "registry_trust_verify", "role"],
)
def test_ansible_doc_shows_it(ansible_bin: Path, tmp_path: Path, what: list[str]) -> None:
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        HOME=str(tmp_path),
        ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_NOCOLOR="1",
    )
    shown = subprocess.run(
        [str(ansible_bin / "ansible-doc"), *what],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert what[-1] in shown.stdout
    assert "[ERROR]" not in shown.stderr, shown.stderr


def returns_of(module: str) -> dict[str, Any]:
    returns: dict[str, Any] = yaml.safe_load(doc_blocks(MODULES / f"{module}.py")["RETURN"])
    return returns


def test_every_result_key_the_role_and_readme_read_is_in_ansible_docs_return() -> None:
    """The role's check and the README's play pass ``trustagent_docker.registries`` and more on, which
    ansible-doc's RETURN did not name."""
    readers = [ROLE / "tasks" / "main.yml", ROOT / "ansible-compat" / "README.md"]
    read = {key for path in readers for key in re.findall(r"trustagent_docker\.(\w+)", path.read_text())}
    assert {"registries", "insecure_registries", "engine_down"} <= read
    assert read - set(returns_of("registry_trust")) == set()
    assert "msg" in returns_of("registry_trust") and "msg" in returns_of("registry_trust_verify")


def test_the_description_says_check_mode_only_warns_of_a_login_that_is_not_root() -> None:
    doc: dict[str, Any] = yaml.safe_load(doc_blocks(MODULES / "registry_trust.py")["DOCUMENTATION"])
    refusals = [line for line in doc["description"] if line.startswith("Refuses a host")]
    assert refusals and "not root" not in refusals[0], refusals
    (login,) = [line for line in doc["description"] if "not root" in line]
    assert "in check mode it is only a warning" in login, login


def test_the_example_playbooks_host_pattern_variable_is_documented() -> None:
    assert "trustagent_hosts" in (ROOT / "ansible-compat" / "playbooks" / "trust.yml").read_text()
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    assert any("trustagent_hosts" in line for line in spec["argument_specs"]["main"]["description"])
    assert "`trustagent_hosts`" in (ROOT / "ansible-compat" / "README.md").read_text()
