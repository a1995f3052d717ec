"""Command-line inputs refused or named before any host is touched: the canary image, the ssh files,
a file given as the wrong input, and what each command's help says of its exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from agent.cli import cli
from agent.cli_options import ssh_options
from agent.errors import SourceError, UsageError
from agent.hosts import ssh_config_text
from agent.inputs import PolicyInputs, policy_for, read_settings
from agent.sources import parse_distribution
from agent.trust import canary_under_policy
from tests.pki import make_ca

REGISTRIES = ("registry.test", "registry.test:443")


# --- the canary image --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reference", ["registry.test/lab/busybox:1", "registry.test:443/lab/busybox@sha256:" + "0" * 64]
)
def test_a_canary_under_one_of_the_policys_registries_is_taken(reference: str) -> None:
    assert canary_under_policy(reference, REGISTRIES) == reference


def test_a_docker_hub_canary_is_refused_naming_the_policys_registries() -> None:
    """lab/busybox:1 is docker.io's: its pull says nothing of the trust for registry.test, and the
    engine would remove it first for nothing."""
    with pytest.raises(UsageError) as caught:
        canary_under_policy("lab/busybox:1", REGISTRIES)
    assert caught.value.exit_code == 2
    assert str(caught.value) == (
        "--canary-image lab/busybox:1: its first component has no '.' or ':' and is not localhost, so "
        "docker pulls it from docker.io, not from this policy's registries (registry.test, "
        "registry.test:443): its pull would prove nothing about them; name an image under one, e.g. "
        "registry.test/lab/busybox:1"
    )


@pytest.mark.parametrize(
    ("reference", "pulled_from"),
    [
        ("docker.io/library/busybox", "docker.io"),
        ("registry.test:5000/lab/busybox:1", "registry.test:5000"),  # another port: another registry
        ("localhost/busybox", "localhost"),
        ("REGISTRY.test/lab/busybox:1", "REGISTRY.test"),  # dockerd reads certs.d/REGISTRY.test/ for it
    ],
)
def test_a_canary_from_another_registry_is_refused(reference: str, pulled_from: str) -> None:
    with pytest.raises(UsageError, match=f"docker pulls it from {pulled_from}, not from this policy's"):
        canary_under_policy(reference, REGISTRIES)


@given(
    registry=st.from_regex(r"[a-z][a-z0-9-]{0,10}\.[a-z]{2,5}(:[1-9][0-9]{0,3})?", fullmatch=True),
    path=st.from_regex(r"[a-z0-9]+(/[a-z0-9]+)?(:[a-z0-9]{1,8})?", fullmatch=True),
)
def test_a_canary_is_taken_exactly_where_its_registry_is_the_policys(registry: str, path: str) -> None:
    reference = f"{registry}/{path}"
    if registry in REGISTRIES:
        assert canary_under_policy(reference, REGISTRIES) == reference
    else:
        with pytest.raises(UsageError, match=r"\(registry.test, registry.test:443\)"):
            canary_under_policy(reference, REGISTRIES)


# --- the ssh files -----------------------------------------------------------------------------


@click.command()
@ssh_options()
def _with_ssh_options(**kwargs: Any) -> None:
    click.echo(f"known_hosts={kwargs['known_hosts']} ssh_config={kwargs['ssh_config']}")


def _ssh(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(_with_ssh_options, list(args))
    return result.exit_code, result.output


def test_an_ssh_config_that_is_not_there_is_refused_naming_it(tmp_path: Path) -> None:
    """ssh -F on a missing file exits 255; it was read as an empty config, in silence."""
    code, out = _ssh("--ssh-config", str(tmp_path / "cfg"))
    assert code == 2 and f"{tmp_path / 'cfg'}: no such file" in out
    (tmp_path / "cfg").write_text("Host *\n  User ops\n")
    assert _ssh("--ssh-config", str(tmp_path / "cfg")) == (
        0,
        f"known_hosts=None ssh_config={tmp_path / 'cfg'}\n",
    )


def test_a_tilde_in_the_ssh_config_is_the_passwd_entrys_home_as_the_transport_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check took ~ from $HOME, the transport (as ssh) from the passwd entry: a file under $HOME was
    taken and another one read, or a file under the passwd entry's home refused."""
    passwd_home, env_home = tmp_path / "passwd-home", tmp_path / "env-home"
    passwd_home.mkdir()
    env_home.mkdir()
    monkeypatch.setattr(ssh_config_text, "home", lambda: str(passwd_home))
    monkeypatch.setenv("HOME", str(env_home))
    (env_home / "only-in-env").write_text("Host *\n")
    (passwd_home / "only-in-passwd").write_text("Host *\n")
    code, out = _ssh("--ssh-config", "~/only-in-env")
    assert code == 2 and "~/only-in-env: no such file" in out
    assert _ssh("--ssh-config", "~/only-in-passwd") == (0, "known_hosts=None ssh_config=~/only-in-passwd\n")


def test_the_ssh_config_help_says_an_inventorys_own_f_wins() -> None:
    code, out = _ssh("--help")
    assert code == 0
    said = " ".join(out.split())
    assert (
        "OpenSSH client config, read alone (as ssh -F), for hosts whose inventory ssh args give no -F of "
        "their own [default: ~/.ssh/config, then /etc/ssh/ssh_config]."
    ) in said


@pytest.mark.parametrize("command", ["plan", "rollout"])
def test_the_no_ca_flags_help_says_a_host_holding_the_agents_ca_fails_untouched(command: str) -> None:
    """The help said such a host "is left as it is"; the run fails it (blocked) until a flag is given."""
    code, out = _cli(command, "--help")
    assert code == 0
    said = " ".join(out.split()).replace("trust- agent", "trust-agent")  # wrapped at the hyphen
    assert "left as it is" not in said
    assert (
        "Without it (and without --storage-ca), a host holding trust-agent's storage CA for an https store "
        "that is not AWS fails, its files untouched, until one of the two is given."
    ) in said
    assert (
        "Without it (and without --registry-ca), such a host fails, its files untouched, until one of the "
        "two is given."
    ) in said


@pytest.mark.parametrize("accept", [[], ["--accept-new-host-keys"]])
def test_a_known_hosts_file_in_a_directory_that_is_not_there_is_refused_and_none_is_made(
    tmp_path: Path, accept: list[str]
) -> None:
    """With --accept-new-host-keys the directory was created (0700) on this machine for a mistyped path."""
    missing = tmp_path / "nonexistent" / "kh"
    code, out = _ssh("--known-hosts", str(missing), *accept)
    assert code == 2 and f"the directory {missing.parent} does not exist" in out
    assert not missing.parent.exists()


def test_a_missing_known_hosts_file_is_taken_only_where_new_keys_may_be_recorded(tmp_path: Path) -> None:
    """Without --accept-new-host-keys nothing could be verified against it: every host failed later."""
    missing = tmp_path / "kh"
    code, out = _ssh("--known-hosts", str(missing))
    assert code == 2 and "no such file, so no host key could be verified" in out
    # The flag after the file on the command line too: the check reads it whatever the order.
    assert _ssh("--known-hosts", str(missing), "--accept-new-host-keys")[0] == 0
    assert _ssh("--accept-new-host-keys", "--known-hosts", str(missing))[0] == 0
    assert not missing.exists()  # created by the connection that records a key, not by the check
    missing.write_text("")
    assert _ssh("--known-hosts", str(missing))[0] == 0


# --- messages ----------------------------------------------------------------------------------


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_show_source_without_a_source_asks_for_one() -> None:
    assert _cli("show-source") == (
        2,
        "trust-agent: error: give a source: trust-agent show-source SOURCE (or --source SOURCE)\n",
    )


def test_policy_given_an_inventory_says_it_contacts_no_host_and_what_does(tmp_path: Path) -> None:
    source = tmp_path / "config.yml"
    source.write_text("version: 0.1\nstorage: {filesystem: {}}\nhttp: {host: https://registry.test}\n")
    for option in (["-i", "hosts.ini"], ["--limit", "web*"]):
        code, out = _cli("policy", "--source", str(source), *option)
        assert code == 2
        assert "policy contacts no host" in out and "plan -i INV shows what would change on each host" in out
    code, out = _cli("policy", "--help")
    assert code == 0 and "--inventory" not in out


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            make_ca("Lab Storage CA")[0].decode(),
            "a certificate (PEM; CA files go with --storage-ca/--registry-ca)",
        ),
        ("all:\n  hosts:\n    web1:\n    web2:\n  vars: {ansible_user: ops}\n", "an inventory (the hosts"),
        ("webservers:\n  hosts: {web1: }\ndb:\n  children: {pg: }\n", "an inventory (the hosts"),
        ("defaults: {user: root}\nhosts:\n  h1: {address: 198.51.100.21}\n", "an inventory (the hosts"),
    ],
)
def test_a_file_given_as_source_that_is_another_input_is_named_for_what_it_is(
    tmp_path: Path, text: str, named: str
) -> None:
    given_file = tmp_path / "given"
    given_file.write_text(text)
    with pytest.raises(SourceError) as caught:
        read_settings(PolicyInputs(source=str(given_file)))
    said = str(caught.value)
    assert said.startswith(f"{given_file}: {named}")
    assert "not the registry's settings; expected a distribution config.yml" in said
    assert "cannot tell" not in said


def test_a_document_of_no_known_kind_is_still_said_to_be_one(tmp_path: Path) -> None:
    given_file = tmp_path / "other.yml"
    given_file.write_text("name: something else\nitems: [1, 2]\n")
    with pytest.raises(SourceError, match="cannot tell what kind of document this is"):
        read_settings(PolicyInputs(source=str(given_file)))


CONFIG = """version: 0.1
storage:
  s3: {region: us-east-1, bucket: registry, regionendpoint: "https://198.51.100.11:9000"}
http: {host: "https://registry.test"}
"""


def _ca_warnings(storage: tuple[str, ...], registry: tuple[str, ...]) -> list[str]:
    settings = parse_distribution(CONFIG, "config.yml")
    inputs = PolicyInputs(source="config.yml", storage_ca=storage, registry_ca=registry)
    return [w for w in policy_for(settings, inputs).warnings if "as both --storage-ca and" in w]


def test_one_file_given_as_both_cas_is_warned_of(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(make_ca("One CA")[0])
    (tmp_path / "other.pem").write_bytes(make_ca("Registry CA")[0])
    same = _ca_warnings((str(tmp_path / "ca.pem"),), (f"{tmp_path}/./ca.pem",))
    assert same == [
        f"{tmp_path / 'ca.pem'} is given as both --storage-ca and --registry-ca: right only where one CA "
        "signed both the storage's and the registry's certificates; if not, one of the two is the wrong "
        "file and pulls will fail with x509 errors"
    ]
    assert _ca_warnings((str(tmp_path / "ca.pem"),), (str(tmp_path / "other.pem"),)) == []


SOURCE = str(Path(__file__).parents[1] / "fixtures/sources/registry-skipverify.yml")


@pytest.mark.parametrize("character", ["\n", "\t", "\r", "\x1b", "\x7f"])
@pytest.mark.parametrize("by_link", [False, True])
def test_a_root_with_a_control_character_is_refused_before_anything_is_written(
    tmp_path: Path, character: str, by_link: bool
) -> None:
    """A --root holding a newline failed every apply with "changed since facts were gathered": the
    script's sha256sum -c escapes such a name and never finds the file."""
    tree = tmp_path / f"a{character}b"
    (tree / "etc/docker").mkdir(parents=True)
    root = tree
    if by_link:
        root = tmp_path / "plain"
        root.symlink_to(tree)
    code, out = _cli("apply", "--local", "--root", str(root), "--source", SOURCE)
    assert code == 2, out
    assert f"--root {str(root)!r}" in out and f"a control character ({character!r}) is not taken" in out
    assert (f"(it leads to {str(tree)!r})" in out) == by_link
    assert not (tree / "etc/docker/daemon.json").exists()
    assert not (tree / "var").exists()


# --- exit codes in the help --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "codes"),
    [
        ([], ["0 ", "1 ", "2 ", "130 "]),
        (["show-source"], ["0 ", "2 ", "130 "]),
        (["policy"], ["0 ", "2 ", "130 "]),
        (["plan"], ["0 ", "1 ", "2 ", "130 ", "With --detailed-exitcode: 0 nothing would change"]),
        (["apply"], ["0 ", "1 ", "2 ", "130 "]),
        (["rollout"], ["0 ", "1 ", "2 ", "130 "]),
        (["verify"], ["0 ", "1 ", "2 ", "130 "]),
        (["inventory"], ["0 ", "2 ", "130 "]),
    ],
)
def test_each_commands_help_states_its_exit_codes(command: list[str], codes: list[str]) -> None:
    code, out = _cli(*command, "--help")
    assert code == 0
    listed = out.partition("Exit codes:\n")[2]
    stated = [line.strip() for line in listed.splitlines()]
    for wanted in codes:
        assert any(line.startswith(wanted) for line in stated), (wanted, listed)
    numbers = {line.split()[0] for line in stated if line[:1].isdigit()}
    assert numbers == {c.strip() for c in codes if c.strip().isdigit()}


# --- rollout's --resolve, as verify's ------------------------------------------------------------


def test_rollout_takes_resolve_and_refuses_a_bad_entry_as_verify_does(tmp_path: Path) -> None:
    """rollout makes verify's TLS checks after its change: where this machine's DNS does not know the
    registry, it needs verify's --resolve, checked before anything is read or touched."""
    entry = "registry.test:443:198.51.100.10"
    said: dict[str, str] = {}
    for command in ("verify", "rollout"):
        code, out = _cli(command, "--resolve", entry, "--source", str(tmp_path / "absent.yml"), "--local")
        said[command] = out
        assert code == 2, out
        assert f"Invalid value for '--resolve': {entry!r}: curl's HOST:PORT:ADDR form" in out, out
    assert said["rollout"].replace("rollout", "verify") == said["verify"]
    code, out = _cli("rollout", "--help")
    assert code == 0 and "--resolve HOST:ADDR" in out
    assert "a TLS check from here found a" in out  # its exit code 1 says so
