"""The collection's action plugins speak Ansible: module options and role variables, not CLI flags; every
warning once; a failed command's own error, not ssh's noise. Pure logic, no ansible-core needed."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from agent.cli import cli
from agent.errors import InvalidNameError
from agent.inputs import PolicyInputs, resolve_policy
from agent.names import validate_registry

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "tests" / "fixtures" / "sources"
COLLECTION = ROOT / "ansible-compat" / "collections" / "ansible_collections" / "trustagent" / "docker"


def _load_wording() -> ModuleType:
    # By path: the collection's package (ansible_collections.…) is Ansible's to import, not ours.
    path = COLLECTION / "plugins" / "plugin_utils" / "wording.py"
    spec = importlib.util.spec_from_file_location("trustagent_wording", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wording = _load_wording()


def module_options() -> set[str]:
    tree = ast.parse((COLLECTION / "plugins" / "modules" / "registry_trust.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "DOCUMENTATION":
            doc: dict[str, Any] = yaml.safe_load(ast.literal_eval(node.value))
            return set(doc["options"])
    raise AssertionError("no DOCUMENTATION")


def role_variables() -> set[str]:
    spec = yaml.safe_load(
        (COLLECTION / "roles" / "registry_trust" / "meta" / "argument_specs.yml").read_text()
    )
    return set(spec["argument_specs"]["main"]["options"])


def test_every_flag_is_the_clis_and_every_name_a_real_option_and_role_variable() -> None:
    rollout = cli.get_command(click.Context(cli), "rollout")
    assert rollout is not None
    flags = {opt for p in rollout.params if isinstance(p, click.Option) for opt in p.opts}
    options, variables = module_options(), role_variables()
    for flag, option in wording.FLAG_OPTIONS.items():
        name = option.removesuffix("=true")
        assert flag in flags, flag
        assert name in options, option
        assert wording.ROLE_PREFIX + name in variables, option


@pytest.mark.parametrize(
    ("text", "as_module", "in_role"),
    [
        (
            "needs a dockerd restart (live-restore is off); pass --allow-restart or enable live-restore",
            "needs a dockerd restart (live-restore is off); pass allow_restart=true or enable live-restore",
            "needs a dockerd restart (live-restore is off); pass trustagent_allow_restart=true or enable "
            "live-restore",
        ),
        (
            "bad input, nothing touched: --registry: registry '../../etc': not a host[:port]",
            "bad input, nothing touched: registries: registry '../../etc': not a host[:port]",
            "bad input, nothing touched: trustagent_registries: registry '../../etc': not a host[:port]",
        ),
        (
            "engines are redirected to https://s3.test:9000; if its certificate is from a private CA, give it "
            "with --storage-ca FILE (or in the source), or pulls will fail with x509 errors",
            "engines are redirected to https://s3.test:9000; if its certificate is from a private CA, give it "
            "with storage_ca (or in the source), or pulls will fail with x509 errors",
            "engines are redirected to https://s3.test:9000; if its certificate is from a private CA, give it "
            "with trustagent_storage_ca (or in the source), or pulls will fail with x509 errors",
        ),
        (
            "say which address clients use with --registry HOST[:PORT]",
            "say which address clients use with registries",
            "say which address clients use with trustagent_registries",
        ),
        (
            "--registry-ca and --source-ca",
            "registry_ca and source_ca",
            "trustagent_registry_ca and trustagent_source_ca",
        ),
    ],
)
def test_cli_flags_become_the_options_or_role_variables_users_set(
    text: str, as_module: str, in_role: str
) -> None:
    assert wording.ansible_wording(text, role=False) == as_module
    assert wording.ansible_wording(text, role=True) == in_role


@pytest.mark.parametrize(
    "text",
    [
        # dockerd's own flags, and words that only look like ours, stay as they are.
        "dockerd runs with --insecure-registry=reg:5000, which conflicts with insecure-registries",
        "/lib/systemd/system/docker.service sets --config-file=/etc/d.json: dockerd does not read it",
        "--registry-mirror and --registrys are not ours",
        "storage CA given but skip-TLS is set: insecure-registries is used instead",
    ],
)
def test_other_flags_are_left_alone(text: str) -> None:
    assert wording.ansible_wording(text, role=True) == text


def test_a_real_agent_message_is_translated() -> None:
    # The agent's wording, not a copy of it: should it change, this test sees it.
    with pytest.raises(InvalidNameError) as refused:
        validate_registry("../../etc", "--registry")
    said = wording.ansible_wording(str(refused.value), role=False)
    assert said.startswith("registries: ") and "--" not in said


def test_the_policys_warnings_come_first_and_each_only_once() -> None:
    # As the action plugin reads it: a MinIO source, with no storage CA given.
    _, policy = resolve_policy(PolicyInputs(source=str(SOURCES / "registry-minio.yml")))
    assert any("--storage-ca FILE" in w for w in policy.warnings), policy.warnings
    plan = ("restart policy 'never': dockerd keeps its old registry settings", policy.warnings[0])
    merged = wording.ansible_warnings(policy.warnings, plan, role=True)
    assert merged[: len(policy.warnings)] == [wording.ansible_wording(w, role=True) for w in policy.warnings]
    assert merged[-1] == plan[0]
    assert len(merged) == len(set(merged)) == len(set(policy.warnings)) + 1
    assert not any("--storage-ca" in w for w in merged)


def test_no_warnings_is_an_empty_list() -> None:
    assert wording.ansible_warnings((), (), role=False) == []


@pytest.mark.parametrize(
    ("stdout", "stderr", "expected"),
    [
        # ssh -tt (no stdin): the pull's stderr arrives on stdout, in a tty's CRLF; ssh's own note on stderr.
        (
            b"Error response from daemon: manifest for registry.test/test/nope:1 not found: manifest unknown: "
            b"manifest unknown\r\n",
            b"Shared connection to 198.51.100.22 closed.\r\n",
            "Error response from daemon: manifest for registry.test/test/nope:1 not found: manifest unknown: "
            "manifest unknown",
        ),
        # No tty: the error is on stderr, progress on stdout.
        (
            b"1: Pulling from test/app\n",
            b'Error response from daemon: Get "https://registry.test/v2/": x509: certificate signed by '
            b"unknown authority\n",
            'Error response from daemon: Get "https://registry.test/v2/": x509: certificate signed by unknown '
            "authority",
        ),
        # A tty's progress: carriage returns and colour codes.
        (
            b"1: Pulling from test/app\r\n\x1b[1A\x1b[2Ka1b2: Downloading\rfailed to register layer: no space\r\n",
            b"Connection to h1 closed.\r\n",
            "failed to register layer: no space",
        ),
        (b"", b"Shared connection to 198.51.100.22 closed.\r\n", None),
        (b"", b"", None),
    ],
)
def test_a_failed_commands_error_is_its_own_not_sshs(
    stdout: bytes, stderr: bytes, expected: str | None
) -> None:
    assert wording.error_line(stdout, stderr) == expected


# What the role's first task knows: its argument spec, and the names the role and its playbook set.
SET_BY_THE_ROLE = (
    "trustagent_hosts",
    "trustagent_docker",
    "trustagent_docker_reload",
    "trustagent_docker_restart",
)


def known_variables() -> list[str]:
    return [*role_variables(), *SET_BY_THE_ROLE]


def test_the_first_task_knows_what_the_role_and_its_playbook_set_themselves() -> None:
    role = COLLECTION / "roles" / "registry_trust"
    tasks = yaml.safe_load((role / "tasks" / "main.yml").read_text())
    assert tasks[0]["name"] == "Check the role's variable names"
    assert tasks[0]["vars"]["set_by_the_role"] == list(SET_BY_THE_ROLE)
    handlers = yaml.safe_load((role / "handlers" / "main.yml").read_text())
    registered = {t["register"] for t in [*tasks, *handlers] if "register" in t}
    assert registered <= set(SET_BY_THE_ROLE)
    assert "trustagent_hosts" in (ROOT / "ansible-compat" / "playbooks" / "trust.yml").read_text()


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("trustagent_registy", "trustagent_registy (did you mean trustagent_registries?)"),
        # The CLI's flag, as a variable: the list it fills.
        ("trustagent_registry", "trustagent_registry (did you mean trustagent_registries?)"),
        ("trustagent_sorce", "trustagent_sorce (did you mean trustagent_source?)"),
        ("trustagent_storage_cas", "trustagent_storage_cas (did you mean trustagent_storage_ca?)"),
        ("trustagent_rollbak", "trustagent_rollbak (did you mean trustagent_rollback?)"),
        # Nothing close: named alone, not matched to any name that shares only the prefix.
        ("trustagent_zzz", "trustagent_zzz"),
    ],
)
def test_a_misspelt_variable_is_named_with_the_closest_known_one(given: str, said: str) -> None:
    assert wording.unknown_variables([given], known_variables()) == [said]


@given(
    known=st.lists(st.sampled_from(sorted(role_variables())), unique=True),
    unknown=st.lists(st.from_regex(r"trustagent_[a-z_]{1,20}", fullmatch=True), unique=True),
)
def test_every_unknown_name_is_named_once_and_no_known_one(known: list[str], unknown: list[str]) -> None:
    strangers = sorted(set(unknown) - set(known))
    said = wording.unknown_variables([*known, *unknown, *unknown], known)
    assert [line.split(" ", 1)[0] for line in said] == strangers
    for line in said:
        suggested = line.partition(" (did you mean ")[2].removesuffix("?)")
        assert not suggested or suggested in known
