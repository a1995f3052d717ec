"""What a plan may be made from: links that lead out of a --root tree, a private key in one of the
agent's CA files, a certs.d directory the login cannot list, and dockerd's live config in a dry run."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.engine.apply_script import EXIT_ACTION
from agent.engine.gather import (
    GATHER_SCRIPT,
    INFO_COMMAND_TAIL,
    gather,
    gather_host,
    parse_gather_output,
    without_private_keys,
)
from agent.engine.host_plan import masked_note, plan_for_host
from agent.engine.options import RunOptions
from agent.engine.reconcile import reconcile
from agent.errors import CommandError, CommandTimeout
from agent.hosts.base import CommandResult, Transport
from agent.hosts.local import LocalTransport
from agent.reports import view
from agent.runtimes.docker import plan_docker
from agent.runtimes.docker_facts import CERTS_DIR, DockerFacts
from agent.runtimes.plan import HostPlan
from agent.trust import TrustPolicy
from tests.unit.test_docker_plan import REG_PEM, ca_policy
from tests.unit.test_gather_parse import a_gather

REGISTRY_CA = f"{CERTS_DIR}/registry.test/trust-agent-registry-ca.crt"
KEY = (
    b"-----BEGIN EC PRIVATE KEY-----\n"
    b"MHcCAQEEIBkeysecretkeysecretkeysecretkeysecretkeyoAoGCCqGSM49\n"
    b"AwEHoUQDQgAEsecretsecretsecretsecretsecretsecretsecretsecret==\n"
    b"-----END EC PRIVATE KEY-----\n"
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def planned(facts: DockerFacts, policy: TrustPolicy) -> HostPlan:
    return plan_for_host(
        policy, facts, None, restart_policy="auto", allow_restart=False, read_info=lambda: None
    ).plan


# --- a link in a --root tree that leads out of it -----------------------------------------------------------


def gathered_output(tree: Path) -> str:
    """The gather script's own output over ``tree`` (what travels from it, before any parsing)."""
    result = LocalTransport().run_script(GATHER_SCRIPT, str(tree), "/etc/docker/daemon.json", "", "n0nce")
    assert result.ok, result.stderr
    return result.stdout.decode()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the tree, standing for the build machine's own files."""
    elsewhere = tmp_path / "build-machine"
    (elsewhere / "etc/docker/certs.d/registry.test").mkdir(parents=True)
    (elsewhere / "etc/docker/daemon.json").write_bytes(b'{"insecure-registries": ["registry.test"]}\n')
    (elsewhere / "etc/docker/certs.d/registry.test/trust-agent-registry-ca.crt").write_bytes(REG_PEM)
    (elsewhere / "var/lib/trust-agent").mkdir(parents=True)
    (elsewhere / "var/lib/trust-agent/docker-state.json").write_bytes(b'{"files": ["machine"]}\n')
    return elsewhere


@pytest.mark.parametrize(
    ("link", "target", "relative"),
    [
        ("etc/docker/daemon.json", "etc/docker/daemon.json", False),
        ("etc/docker/daemon.json", "etc/docker/daemon.json", True),
        ("etc/docker/certs.d/registry.test", "etc/docker/certs.d/registry.test", False),
        ("etc/docker/certs.d", "etc/docker/certs.d", True),
        ("var", "var", False),
    ],
)
def test_a_link_that_leads_out_of_a_tree_is_never_read_and_refuses_the_tree(
    tmp_path: Path, outside: Path, link: str, target: str, relative: bool
) -> None:
    """Read through, such links made the build machine's daemon.json, CA files or record the image's:
    apply --local --root said the tree converged (exit 0) while the image held none of it."""
    tree = tmp_path / "tree"
    (tree / "etc/docker").mkdir(parents=True)
    at = tree / link
    at.parent.mkdir(parents=True, exist_ok=True)
    leads_to = outside / target
    at.symlink_to(
        Path("../" * (len(Path(link).parts) + 1)) / "build-machine" / target if relative else leads_to
    )
    output = gathered_output(tree)
    for secret in (b'{"insecure-registries"', REG_PEM, b'{"files": ["machine"]}'):
        assert b64(secret)[:16] not in output, output
    with pytest.raises(CommandError) as refused:
        gather(LocalTransport(), root=str(tree))
    said = str(refused.value)
    assert said.startswith(f"{at} is a symbolic link to {at.readlink()}, which leads out of the --root tree")
    assert said.endswith("then run again (nothing written)")


def test_links_that_stay_in_the_tree_are_read_as_before(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "srv/registry.test").mkdir(parents=True)
    (tree / "srv/daemon.json").write_bytes(b'{"debug": true}\n')
    (tree / "srv/registry.test/trust-agent-registry-ca.crt").write_bytes(REG_PEM)
    (tree / "etc/docker/certs.d").mkdir(parents=True)
    (tree / "etc/docker/daemon.json").symlink_to("../../srv/daemon.json")
    (tree / "etc/docker/certs.d/registry.test").symlink_to(tree / "srv/registry.test")
    facts = gather(LocalTransport(), root=str(tree))
    assert facts.daemon_json == b'{"debug": true}\n'
    assert facts.certs["registry.test/trust-agent-registry-ca.crt"] == REG_PEM


def test_an_outside_root_record_names_each_link_once() -> None:
    text = "\n".join(
        [
            "@@ta begin 1",
            "@@ta outside-root /t/etc",
            b64(b"/etc\n"),
            "@@ta outside-root /t/etc",
            b64(b"/etc\n"),
            "@@ta end",
        ]
    )
    with pytest.raises(CommandError) as refused:
        parse_gather_output(text, root="/t")
    assert (
        str(refused.value).count("/t/etc is a symbolic link to /etc, which leads out of the --root tree /t")
        == 1
    )


# --- a private key in one of the agent's CA files -----------------------------------------------------------

pem_body = st.lists(
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", min_size=1, max_size=64
    ),
    min_size=1,
    max_size=8,
)


@given(
    # Hypothesis draws constants from the test's own text: text before the key must not be its words.
    before=st.binary(max_size=200).filter(lambda b: b"-----" not in b and b"PRIVATE KEY" not in b),
    body=pem_body,
    kind=st.sampled_from(["", "RSA ", "EC ", "ENCRYPTED ", "OPENSSH ", "PGP "]),
    ended=st.booleans(),
)
def test_no_private_key_line_is_left_and_the_rest_is_kept(
    before: bytes, body: list[str], kind: str, ended: bool
) -> None:
    armour = " BLOCK" if kind == "PGP " else ""  # PGP: "-----BEGIN PGP PRIVATE KEY BLOCK-----"
    block = [
        f"-----BEGIN {kind}PRIVATE KEY{armour}-----",
        *body,
        *([f"-----END {kind}PRIVATE KEY{armour}-----"] if ended else []),
    ]
    key = "\n".join(block).encode()
    redacted = without_private_keys(before + key + b"\n")
    assert b"PRIVATE KEY" not in redacted
    assert not any(line.encode() in redacted for line in body if len(line) > 40)
    assert redacted == before + f"[private key redacted: {len(block)} lines]\n".encode()


def test_a_file_without_a_key_is_left_byte_for_byte() -> None:
    assert without_private_keys(REG_PEM) == REG_PEM


def gathered_with_a_key() -> str:
    return a_gather(
        "@@ta certs-dir",
        "@@ta dir registry.test",
        "@@ta file registry.test/trust-agent-registry-ca.crt",
        b64(REG_PEM + KEY),
        f"@@ta daemon-json\n{b64(b'{}')}",
    )


def test_a_key_in_a_ca_file_is_never_in_the_plan_its_diff_says_its_length_and_a_warning_says_it() -> None:
    policy = ca_policy("registry.test", registry_ca=True)
    facts = parse_gather_output(gathered_with_a_key())
    assert (
        facts.certs["registry.test/trust-agent-registry-ca.crt"]
        == REG_PEM + b"[private key redacted: 4 lines]\n"
    )
    plan = planned(facts, policy)
    change = next(c for c in plan.changes if c.path == REGISTRY_CA)
    assert "PRIVATE KEY" not in change.diff() and b"PRIVATE KEY" not in (change.before or b"")
    assert "-[private key redacted: 4 lines]" in change.diff()
    assert (
        f"{REGISTRY_CA} holds a private key: it is replaced by this run; consider the key exposed"
        in plan.warnings
    )


class GatheredHost(Transport):
    """A host answering the gather with ``gathered``; every other script recorded and refused."""

    name = "h1"

    def __init__(self, gathered: str, info: dict[str, object] | None = None) -> None:
        self.gathered = gathered
        self.info = info
        self.scripts: list[str] = []

    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        script = stdin.decode()
        if script == GATHER_SCRIPT:
            return CommandResult(0, self.gathered.encode(), b"")
        self.scripts.append(script)
        if self.info is not None and script.endswith(INFO_COMMAND_TAIL):
            return CommandResult(0, f"@@ta info-json\n{json.dumps(self.info)}\n".encode(), b"")
        return CommandResult(1, b"", b"not this host's")

    def docker_api(self, timeout: float = 30.0) -> None:
        raise AssertionError("no canary was asked for")


def test_the_apply_checks_a_redacted_file_by_the_hash_of_what_the_host_holds() -> None:
    """The apply compares each file with the hash of the plan's ``before``: the redacted one would make
    every apply find the file "changed since facts were gathered"."""
    gathered = gather_host(GatheredHost(gathered_with_a_key()))
    plan = planned(gathered.facts, ca_policy("registry.test", registry_ca=True))
    on_host = gathered.as_on_host(plan)
    change = next(c for c in on_host.changes if c.path == REGISTRY_CA)
    assert hashlib.sha256(change.before or b"").hexdigest() == hashlib.sha256(REG_PEM + KEY).hexdigest()
    assert [c.path for c in on_host.changes] == [c.path for c in plan.changes]
    assert gathered.as_on_host(plan) is not plan and GatheredHost.__name__ not in repr(gathered)
    assert b64(KEY)[:16] not in repr(gathered)


def test_apply_on_a_tree_replaces_the_file_holding_a_key_and_shows_none_of_it(tmp_path: Path) -> None:
    certs = tmp_path / "etc/docker/certs.d/registry.test"
    certs.mkdir(parents=True)
    (certs / "trust-agent-registry-ca.crt").write_bytes(REG_PEM + KEY)
    (tmp_path / "etc/docker/daemon.json").write_bytes(b"{}\n")
    policy = ca_policy("registry.test", registry_ca=True)
    outcome = reconcile(LocalTransport(), policy, RunOptions(root=str(tmp_path)))
    assert (outcome.status, outcome.error) == ("changed", None), outcome
    assert (certs / "trust-agent-registry-ca.crt").read_bytes() == REG_PEM
    assert outcome.plan is not None
    shown = "".join(change.diff() for change in outcome.plan.changes)
    assert "PRIVATE KEY" not in shown and "[private key redacted: 4 lines]" in shown
    assert not [c for c in outcome.plan.changes if c.before is not None and b"PRIVATE KEY" in c.before]
    assert any("holds a private key" in w and "consider the key exposed" in w for w in outcome.warnings)


# --- a certs.d directory the login cannot list --------------------------------------------------------------


def test_nothing_is_planned_under_a_directory_the_login_cannot_list_and_the_host_is_refused() -> None:
    """The record readable, certs.d/registry.test not listable: its CA files seemed absent, and the plan
    showed them as files to create beside a warning that the directory could not be read."""
    policy = ca_policy("registry.test", registry_ca=True)
    unlisted = f"{CERTS_DIR}/registry.test"
    state = next(c.after for c in plan_docker(policy, DockerFacts(daemon_json=b"{}\n")).changes if c.internal)
    facts = DockerFacts(
        daemon_json=b"{}\n",
        state=state,
        cert_dirs=frozenset({"registry.test"}),
        unreadable_files={unlisted: "permission denied"},
    )
    plan = planned(facts, policy)
    assert not [c for c in plan.changes if c.path.startswith(unlisted + "/")], plan.changes
    assert not [d for d in plan.mkdirs if d == unlisted or d.startswith(unlisted + "/")]
    assert plan.blockers == (
        f"{unlisted} cannot be listed (permission denied): which of trust-agent's CA files it holds, and what "
        "they say, is not known, and the plan writes in it: run as root, then run again (nothing written)",
    )


def test_a_directory_the_login_cannot_list_where_the_plan_writes_nothing_is_said_only() -> None:
    policy = ca_policy("registry.test")
    written = plan_docker(policy, DockerFacts(daemon_json=b"{}\n"))
    facts = DockerFacts(
        daemon_json=b"{}\n",
        state=next(c.after for c in written.changes if c.internal),
        certs={
            c.path.removeprefix(CERTS_DIR + "/"): c.after or b""
            for c in written.changes
            if c.path.startswith(CERTS_DIR)
        },
        cert_dirs=frozenset({"registry.test", "other.test"}),
        unreadable_files={f"{CERTS_DIR}/other.test": "permission denied"},
    )
    plan = planned(facts, policy)
    assert (plan.changes, plan.blockers) == ((), ())
    assert plan.warnings == (
        f"{CERTS_DIR}/other.test cannot be listed (permission denied): which of trust-agent's CA files it "
        "holds, and what they say, is not known",
    )


def test_a_path_beside_an_unlisted_directory_that_shares_its_prefix_is_still_planned() -> None:
    policy = ca_policy("registry.test", "registry.test:443")
    facts = DockerFacts(
        daemon_json=b"{}\n", unreadable_files={f"{CERTS_DIR}/registry.test": "permission denied"}
    )
    plan = planned(facts, policy)
    assert [c.path for c in plan.changes if not c.internal] == [
        f"{CERTS_DIR}/registry.test:443/trust-agent-storage-ca.crt"
    ]


# --- a dry run reads dockerd's live config where the plan leaves it alone ------------------------------------

LIVE_INSECURE = {
    "ServerVersion": "26.1.5",
    "LiveRestoreEnabled": False,
    "RegistryConfig": {"IndexConfigs": {"registry.test": {"Name": "registry.test", "Secure": False}}},
}


def never_written_to() -> str:
    """A host the agent never wrote to: no record, daemon.json without insecure-registries."""
    return a_gather("@@ta certs-dir", f"@@ta daemon-json\n{b64(b'{}')}")


def test_plan_says_the_list_dockerd_kept_is_cleared_as_the_rollout_then_does() -> None:
    """plan said pending, no reload, the CA files alone; the rollout, reading dockerd's live config after
    its first apply, also wrote ``"insecure-registries": []`` and reloaded."""
    host = GatheredHost(never_written_to(), LIVE_INSECURE)
    outcome = reconcile(host, ca_policy("registry.test"), RunOptions(dry_run=True, verify=False))
    assert (outcome.status, outcome.engine_action) == ("pending", "reload"), outcome
    assert outcome.plan is not None
    daemon_json = next(c for c in outcome.plan.changes if c.path == "/etc/docker/daemon.json")
    assert json.loads(daemon_json.after or b"") == {"insecure-registries": []}


def test_a_rollout_asks_nothing_more_before_its_apply() -> None:
    host = GatheredHost(never_written_to(), LIVE_INSECURE)
    reconcile(host, ca_policy("registry.test"), RunOptions(verify_timeout=0.5))
    assert host.scripts and not host.scripts[0].endswith(INFO_COMMAND_TAIL), host.scripts[:1]


# --- who else may hold the lock, as the apply script says -----------------------------------------------------


class GatheredHere(LocalTransport):
    """This machine (``apply --local``) answering as :class:`GatheredHost` does."""

    def __init__(self, gathered: str) -> None:
        super().__init__()
        self.host = GatheredHost(gathered)

    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        return self.host.run(command, stdin=stdin, timeout=timeout)


@pytest.mark.parametrize(
    ("transport", "who"),
    [
        (lambda g: GatheredHost(g), "two inventory names for one machine"),
        (lambda g: GatheredHere(g), "on this machine: another apply --local"),
    ],
)
def test_the_apply_script_says_who_else_may_hold_the_lock_where_it_runs(transport: Any, who: str) -> None:
    """On this machine there is no inventory: the lock's holder is another run here."""
    host = transport(gathered_with_a_key())
    reconcile(host, ca_policy("registry.test", registry_ca=True), RunOptions())
    scripts = host.host.scripts if isinstance(host, GatheredHere) else host.scripts
    assert scripts and who in scripts[0]


# --- an apply that did not say how it ended ------------------------------------------------------------------


class TimesOut(GatheredHost):
    """A host answering the gather; its scripts after that answer ``answers`` in turn, then time out."""

    def __init__(self, gathered: str, *answers: CommandResult) -> None:
        super().__init__(gathered)
        self.answers = list(answers)

    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        if stdin.decode() == GATHER_SCRIPT:
            return super().run(command, stdin=stdin, timeout=timeout)
        self.scripts.append(stdin.decode())
        if self.answers:
            return self.answers.pop(0)
        raise CommandTimeout(f"{self.name}: command timed out after {timeout:g}s")


def test_an_apply_that_timed_out_says_its_file_changes_are_not_known() -> None:
    """The script may have written some files, or all, before the timeout: the reports counted 0."""
    host = TimesOut(never_written_to())
    outcome = reconcile(host, ca_policy("registry.test"), RunOptions(command_timeout=5))
    assert outcome.status == "failed" and "may have been changed part way" in (outcome.error or ""), outcome
    assert outcome.changes_unknown and view.files_changed(outcome) is None
    assert len(host.scripts) == 1  # no roll-back: the script may still run, under the host's lock


def test_a_roll_back_that_timed_out_says_the_file_changes_are_not_known() -> None:
    refused = CommandResult(EXIT_ACTION, b"", b"reload of dockerd failed: Job type reload is not applicable")
    host = TimesOut(never_written_to(), refused)
    outcome = reconcile(host, ca_policy("registry.test"), RunOptions(command_timeout=5))
    assert outcome.status == "failed" and "roll-back failed too" in (outcome.error or ""), outcome
    assert outcome.changes_unknown and view.files_changed(outcome) is None
    assert len(host.scripts) == 2


def test_an_apply_that_failed_saying_so_counts_no_file_changed() -> None:
    host = TimesOut(never_written_to(), CommandResult(1, b"", b"mkdir: cannot create: Read-only file system"))
    outcome = reconcile(host, ca_policy("registry.test"), RunOptions(command_timeout=5))
    assert (outcome.status, outcome.changes_unknown, view.files_changed(outcome)) == ("failed", False, 0)


# --- a rollout learns in its apply's round trip whether the registry's name points at loopback ---------------

LIVE_SECURE = {
    "ServerVersion": "26.1.5",
    "LiveRestoreEnabled": False,
    "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8", "::1/128"]},
}


class AppliesAndResolves(GatheredHost):
    """A host answering the apply as its script does where it ends by reading /info and resolving names:
    ``registry.test`` at ``addresses``."""

    def __init__(self, gathered: str, *addresses: str) -> None:
        super().__init__(gathered)
        self.addresses = addresses

    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        if stdin.decode() == GATHER_SCRIPT:
            return super().run(command, stdin=stdin, timeout=timeout)
        self.scripts.append(stdin.decode())
        getent = "".join(f"{a}      STREAM registry.test\n" for a in self.addresses)
        resolved = f"@@ta host registry.test\n{getent}" if "getent ahosts" in stdin.decode() else ""
        return CommandResult(0, f"@@ta info-json\n{json.dumps(LIVE_SECURE)}\n{resolved}".encode(), b"")


@pytest.mark.parametrize(
    ("addresses", "warned"),
    [
        (
            ("198.51.100.10", "127.0.0.1"),
            "registry.test resolves to 127.0.0.1 on this host, which dockerd always treats as insecure "
            "(127.0.0.0/8): TLS is not verified",
        ),
        (("198.51.100.10",), None),
    ],
)
def test_a_rollout_warns_of_a_registry_name_on_loopback_from_its_apply_alone(
    addresses: tuple[str, ...], warned: str | None
) -> None:
    """verify failed such a host; a rollout that changed it looked names up only for ranges beyond
    dockerd's defaults, and said nothing."""
    host = AppliesAndResolves(never_written_to(), *addresses)
    outcome = reconcile(host, ca_policy("registry.test"), RunOptions(verify_timeout=0.5))
    assert (outcome.status, outcome.verified) == ("changed", ("live config",)), outcome
    loopback = [w for w in outcome.warnings if "on this host" in w]
    assert loopback == ([warned] if warned else []), outcome.warnings
    assert len(host.scripts) == 1 and "timeout 5 getent ahosts" in host.scripts[0]
    assert host.scripts[0].endswith("ta_ahosts registry.test\nexit 0\n")


def test_an_engine_that_did_not_answer_the_gather_is_not_asked_again_for_its_live_config() -> None:
    """plan asked a frozen dockerd's /info once more after the gather had waited it out: another 10-20 s
    for nothing."""
    from agent.engine.gather import parse_gather_output

    asked: list[str] = []

    def read_info() -> dict[str, Any] | None:
        asked.append("info")
        return None

    policy = ca_policy("registry.test")
    for silent, expected in ((False, ["info"]), (True, [])):
        records = ["@@ta info-json", "", *(["@@ta engine-silent"] if silent else [])]
        facts = parse_gather_output(a_gather(*records))
        asked.clear()
        plan_for_host(
            policy, facts, None, restart_policy="auto", allow_restart=False, read_info=read_info,
            live_config_where_untouched=True,
        )  # fmt: skip
        assert asked == expected, (silent, asked)


# --- a masked docker.service ------------------------------------------------------------------------------


@given(running=st.booleans(), pending=st.booleans())
def test_a_masked_unit_is_warned_of_only_where_something_waits_on_dockerd(
    running: bool, pending: bool
) -> None:
    """A running dockerd reads new CA files at once (fact 7): the warning that they wait for its start was
    given on every masked host, even after a canary pull through them."""
    facts = DockerFacts(init="systemd", unit_masked=True, engine_running=running)
    written = planned(DockerFacts(), ca_policy("registry.test"))
    assert written.changes and written.engine_action == "none"  # CA files alone: no job for systemd
    plan = replace(written, live_pending=pending)
    note = masked_note(facts, plan)
    if running and not pending:
        assert note is None
    else:
        assert note == (
            "docker.service is masked: systemctl cannot reload or restart it; the files take effect when "
            "dockerd starts"
        )
    assert masked_note(DockerFacts(init="systemd", engine_running=running), plan) is None
