"""The Docker planner: certs.d files, the daemon.json merge, the state record and dockerd's action."""

from __future__ import annotations

import json
import posixpath
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agent.certs import CABundle
from agent.engine.apply_script import inverse
from agent.engine.host_plan import only_the_record
from agent.runtimes.docker import facts_after, followed_by, plan_docker, required_action
from agent.runtimes.docker_facts import CERTS_DIR, DAEMON_JSON, STATE_FILE, DockerFacts
from agent.runtimes.docker_state import DockerState, parse_state, render_state
from agent.runtimes.plan import FileChange, HostPlan
from agent.trust import OWNED_PREFIX, CAFile, TrustPolicy
from tests.pki import make_ca, sha256_of

PEM = b"-----BEGIN CERTIFICATE-----\nMIIBstorage\n-----END CERTIFICATE-----\n"
PEM2 = b"-----BEGIN CERTIFICATE-----\nMIIBrotated\n-----END CERTIFICATE-----\n"
REG_PEM = b"-----BEGIN CERTIFICATE-----\nMIIBregistry\n-----END CERTIFICATE-----\n"
STORAGE_CRT = "trust-agent-storage-ca.crt"
DROP_IN = "docker.service drop-in /etc/systemd/system/docker.service.d/x.conf"


def ca_policy(*registries: str, pem: bytes = PEM, registry_ca: bool = False) -> TrustPolicy:
    files = [CAFile("storage", STORAGE_CRT, CABundle(origin="t", pem=pem, certificates=()))]
    if registry_ca:
        files.append(CAFile("registry", "trust-agent-registry-ca.crt", CABundle("r", REG_PEM, ())))
    return TrustPolicy(
        registries=registries,
        storage_endpoint="198.51.100.11:9000",
        storage_scheme="https",
        ca_files=tuple(files),
        insecure=False,
    )


def insecure_policy(*registries: str) -> TrustPolicy:
    return TrustPolicy(
        registries=registries, storage_endpoint="198.51.100.11:9000", storage_scheme="https", insecure=True
    )


def no_trust_policy(*registries: str) -> TrustPolicy:
    return TrustPolicy(registries=registries, storage_endpoint=None, storage_scheme=None)


def host(**kw: Any) -> DockerFacts:
    base: dict[str, Any] = {"init": "systemd", "engine_version": "24.0.7", "engine_running": True}
    base.update(kw)
    return DockerFacts(**base)


def apply_plan(plan: HostPlan, facts: DockerFacts) -> DockerFacts:
    """Apply a plan to the facts in memory, as the engine would on the host."""
    assert not plan.blockers, plan.blockers
    root = facts.certs_dir + "/"
    certs = dict(facts.certs)
    dirs = set(facts.cert_dirs)
    daemon_json, state = facts.daemon_json, facts.state
    for directory in plan.mkdirs:
        if directory.startswith(root):
            dirs.add(directory[len(root) :])
    for change in plan.changes:
        if change.path.startswith(root):
            rel = change.path[len(root) :]
            assert rel.partition("/")[0] in dirs, f"{change.path}: directory missing"
            if change.action == "delete":
                del certs[rel]
            else:
                assert change.after is not None
                certs[rel] = change.after
        elif change.path == facts.daemon_json_path:
            assert change.action != "delete"
            daemon_json = change.after
        elif change.path == facts.state_path:
            assert change.internal
            state = change.after
        else:
            raise AssertionError(f"unexpected path {change.path}")
    for directory in plan.rmdirs:
        name = directory[len(root) :]
        assert not any(rel.startswith(name + "/") for rel in certs), f"{directory} is not empty"
        dirs.discard(name)
    return replace(facts, certs=certs, cert_dirs=frozenset(dirs), daemon_json=daemon_json, state=state)


def converge(policy: TrustPolicy, facts: DockerFacts, **kw: Any) -> DockerFacts:
    after = apply_plan(plan_docker(policy, facts, **kw), facts)
    again = plan_docker(policy, after, **kw)
    assert again.changes == () and again.mkdirs == () and again.rmdirs == (), again
    assert again.engine_action == "none"
    assert not again.changed
    return after


def by_path(plan: HostPlan) -> dict[str, Any]:
    return {c.path: c for c in plan.changes}


def state_of(facts: DockerFacts) -> dict[str, Any]:
    assert facts.state is not None
    doc: dict[str, Any] = json.loads(facts.state)
    return doc


# --- fresh and converged hosts ----------------------------------------------------------------------


def test_a_missing_certs_d_is_in_the_plan_so_undoing_it_removes_it_again() -> None:
    policy = ca_policy("registry.test")
    missing = plan_docker(policy, host(certs_dir_present=False))
    assert missing.mkdirs[:2] == (CERTS_DIR, f"{CERTS_DIR}/registry.test")
    assert plan_docker(policy, host()).mkdirs[0] == f"{CERTS_DIR}/registry.test"  # there already
    # Nothing to create under certs.d: certs.d is not made either.
    assert (
        CERTS_DIR not in plan_docker(insecure_policy("registry.test"), host(certs_dir_present=False)).mkdirs
    )


def test_fresh_host_gets_the_storage_ca_in_every_registry_directory() -> None:
    plan = plan_docker(ca_policy("registry.test", "registry.test:443"), host())
    changes = by_path(plan)
    for registry in ("registry.test", "registry.test:443"):
        change = changes[f"{CERTS_DIR}/{registry}/{STORAGE_CRT}"]
        assert (change.action, change.before, change.after, change.mode) == ("create", None, PEM, 0o644)
    assert plan.mkdirs == (
        f"{CERTS_DIR}/registry.test",
        f"{CERTS_DIR}/registry.test:443",
        "/var/lib/trust-agent",
    )
    assert DAEMON_JSON not in changes
    assert plan.engine_action == "none"  # certs.d is read on every pull (fact 7)
    assert plan.blockers == ()
    assert (
        f"certs.d/registry.test/{STORAGE_CRT}: storage CA for the redirect to 198.51.100.11:9000 (fact 4)"
        in plan.reasons
    )
    state = changes[STATE_FILE]
    assert state.internal and state.mode == 0o644 and state.action == "create"
    assert json.loads(state.after) == {
        "version": 1,
        "insecure_registries": [],
        "cert_dirs": [f"{CERTS_DIR}/registry.test", f"{CERTS_DIR}/registry.test:443"],
    }
    assert [c.path for c in plan.visible_changes] == [
        f"{CERTS_DIR}/registry.test/{STORAGE_CRT}",
        f"{CERTS_DIR}/registry.test:443/{STORAGE_CRT}",
    ]
    assert not any(c.path.endswith((".cert", ".key")) for c in plan.changes)  # fact 6


def test_fresh_host_insecure_creates_daemon_json_and_reloads() -> None:
    plan = plan_docker(insecure_policy("registry.test"), host())
    change = by_path(plan)[DAEMON_JSON]
    assert (change.action, change.before, change.mode) == ("create", None, 0o644)
    assert change.after == b'{\n  "insecure-registries": [\n    "registry.test"\n  ]\n}\n'
    assert plan.engine_action == "reload"
    assert "daemon.json: add registry.test to insecure-registries (skip-TLS, fact 9)" in plan.reasons
    assert "reload: insecure-registries is reloadable (fact 10)" in plan.reasons
    assert not any(c.path.startswith(CERTS_DIR) for c in plan.changes)
    assert json.loads(by_path(plan)[STATE_FILE].after)["insecure_registries"] == ["registry.test"]


@pytest.mark.parametrize(
    "policy",
    [ca_policy("registry.test", "registry.test:443", registry_ca=True), insecure_policy("registry.test")],
)
def test_converged_host_has_nothing_to_do(policy: TrustPolicy) -> None:
    after = converge(policy, host(daemon_json=b'{\n    "debug": true\n}\n'))
    plan = plan_docker(policy, after)
    assert plan == HostPlan()


def test_nothing_to_trust_on_a_clean_host_writes_nothing() -> None:
    assert plan_docker(no_trust_policy("registry.test"), host()) == HostPlan()


def test_a_changed_bundle_is_updated_in_place() -> None:
    after = converge(ca_policy("registry.test"), host())
    plan = plan_docker(ca_policy("registry.test", pem=PEM2), after)
    change = by_path(plan)[f"{CERTS_DIR}/registry.test/{STORAGE_CRT}"]
    assert (change.action, change.before, change.after) == ("update", PEM, PEM2)
    assert plan.mkdirs == () and plan.engine_action == "none"
    assert STATE_FILE not in by_path(plan)  # the record did not change


# --- daemon.json: foreign content ------------------------------------------------------------------

FOREIGN = (
    b"{\n"
    b'    "log-driver": "json-file",\n'
    b'    "log-opts": {"max-size": "10m", "max-file": "3"},\n'
    b'    "insecure-registries": ["mirror.local:5000"],\n'
    b'    "data-root": "/srv/docker"\n'
    b"}\n"
)


def test_daemon_json_untouched_byte_for_byte_when_nothing_changes() -> None:
    facts = host(daemon_json=FOREIGN)
    for policy in (
        ca_policy("registry.test"),
        no_trust_policy("registry.test"),
        insecure_policy("mirror.local:5000"),
    ):
        plan = plan_docker(policy, facts)
        assert DAEMON_JSON not in by_path(plan)


def test_merge_changes_only_the_list_every_other_byte_stays() -> None:
    plan = plan_docker(insecure_policy("registry.test"), host(daemon_json=FOREIGN))
    after = by_path(plan)[DAEMON_JSON].after
    assert after == FOREIGN.replace(b'["mirror.local:5000"]', b'["mirror.local:5000", "registry.test"]')
    assert by_path(plan)[DAEMON_JSON].action == "update"


def test_switching_ca_insecure_ca_changes_only_the_agents_own_entries() -> None:
    facts = host(
        daemon_json=FOREIGN,
        certs={"registry.test:443/ca.crt": b"person's"},
        cert_dirs=frozenset({"registry.test:443"}),
    )
    regs = ("registry.test", "registry.test:443")

    # 1. CA: the agent creates registry.test/ (recorded) and adds a file to the person's registry.test:443/.
    facts = converge(ca_policy(*regs), facts)
    assert state_of(facts)["cert_dirs"] == [f"{CERTS_DIR}/registry.test"]

    # 2. Skip-TLS: its CA files go, the directory it created goes, the registries become insecure.
    plan = plan_docker(insecure_policy(*regs), facts)
    assert {c.path: c.action for c in plan.changes if c.path.startswith(CERTS_DIR)} == {
        f"{CERTS_DIR}/registry.test/{STORAGE_CRT}": "delete",
        f"{CERTS_DIR}/registry.test:443/{STORAGE_CRT}": "delete",
    }
    assert plan.rmdirs == (f"{CERTS_DIR}/registry.test",)  # registry.test:443/ is the person's
    assert plan.engine_action == "reload"
    facts = converge(insecure_policy(*regs), facts)
    doc = json.loads(facts.daemon_json or b"")
    assert doc["insecure-registries"] == ["mirror.local:5000", *regs]
    assert facts.certs == {"registry.test:443/ca.crt": b"person's"}
    assert state_of(facts) == {"version": 1, "insecure_registries": list(regs), "cert_dirs": []}

    # 3. CA again: only the agent's entries leave insecure-registries; the person's stays.
    plan = plan_docker(ca_policy(*regs), facts)
    assert plan.engine_action == "reload"
    assert any("remove registry.test from insecure-registries" in r for r in plan.reasons)
    facts = converge(ca_policy(*regs), facts)
    doc = json.loads(facts.daemon_json or b"")
    assert list(doc) == ["log-driver", "log-opts", "insecure-registries", "data-root"]
    assert doc["insecure-registries"] == ["mirror.local:5000"]

    # 4. Nothing to trust any more: the last agent entry leaves [] behind, never a missing key (fact 11).
    facts = converge(insecure_policy("registry.test"), host(daemon_json=b'{"debug": true}'))
    plan = plan_docker(no_trust_policy("registry.test"), facts)
    assert json.loads(by_path(plan)[DAEMON_JSON].after) == {"debug": True, "insecure-registries": []}
    assert any("kept as [] " in r and "fact 11" in r for r in plan.reasons)


def test_entry_listed_before_the_agent_came_is_never_removed() -> None:
    facts = host(daemon_json=b'{"insecure-registries": ["registry.test"]}')
    plan = plan_docker(insecure_policy("registry.test"), facts)
    assert plan == HostPlan()  # already there: not claimed, nothing written
    plan = plan_docker(ca_policy("registry.test"), facts)
    assert DAEMON_JSON not in by_path(plan)
    assert any(
        "registry.test stays in insecure-registries (not added by trust-agent)" in w for w in plan.warnings
    )


def test_unreadable_state_removes_nothing_and_is_rewritten() -> None:
    facts = host(daemon_json=b'{"insecure-registries": ["registry.test"]}', state=b"{oops")
    plan = plan_docker(no_trust_policy("registry.test"), facts)
    assert DAEMON_JSON not in by_path(plan)
    assert any("unreadable trust-agent state" in w for w in plan.warnings)
    state = by_path(plan)[STATE_FILE]
    assert state.action == "update" and json.loads(state.after)["insecure_registries"] == []
    assert plan.mkdirs == ()  # the record exists, so its directory does
    converge(no_trust_policy("registry.test"), facts)


# --- certs.d: foreign files -------------------------------------------------------------------------


def test_foreign_files_in_certs_d_are_never_touched() -> None:
    foreign = {
        "registry.test/ca.crt": b"a",
        "registry.test/client.cert": b"b",
        "registry.test/client.key": b"c",
        "registry.test/trust-agent-notes.txt": b"d",
        "other.test/ca.crt": b"e",
        "other.test/trust-agent.crt.bak": b"f",
    }
    facts = host(certs=foreign, cert_dirs=frozenset({"registry.test", "other.test", "empty.test"}))
    for policy in (ca_policy("registry.test"), insecure_policy("registry.test"), no_trust_policy()):
        after = converge(policy, facts)
        for rel, content in foreign.items():
            assert after.certs[rel] == content
        plan = plan_docker(policy, facts)
        assert not {c.path for c in plan.changes} & {f"{CERTS_DIR}/{rel}" for rel in foreign}
        assert plan.rmdirs == ()  # the agent created none of these directories


def test_agent_files_the_policy_no_longer_asks_for_are_deleted_in_any_directory() -> None:
    facts = host(
        certs={
            "old.test/trust-agent-storage-ca.crt": PEM,
            "registry.test/trust-agent-registry-ca.crt": REG_PEM,
            "old.test/ca.crt": b"person's",
        },
        cert_dirs=frozenset({"old.test", "registry.test"}),
        state=json.dumps(
            {"version": 1, "insecure_registries": [], "cert_dirs": [f"{CERTS_DIR}/old.test"]}
        ).encode(),
    )
    plan = plan_docker(ca_policy("registry.test"), facts)
    actions = {c.path: c.action for c in plan.changes if not c.internal}
    assert actions == {
        f"{CERTS_DIR}/registry.test/{STORAGE_CRT}": "create",
        f"{CERTS_DIR}/old.test/{STORAGE_CRT}": "delete",
        f"{CERTS_DIR}/registry.test/trust-agent-registry-ca.crt": "delete",
    }
    assert plan.rmdirs == ()  # old.test/ still holds the person's ca.crt
    after = converge(ca_policy("registry.test"), facts)
    assert state_of(after)["cert_dirs"] == [f"{CERTS_DIR}/old.test"]  # kept: it may empty later


def test_a_removal_for_another_registry_says_which_registry_the_run_is_for() -> None:
    """A mistyped --registry took over with "no longer asked for": the plan did not say that the run was
    for another registry than the one whose CA files it removed."""
    facts = host(
        certs={
            "registry.test/trust-agent-storage-ca.crt": PEM,
            "registry.tset/trust-agent-registry-ca.crt": REG_PEM,
        },
        cert_dirs=frozenset({"registry.test", "registry.tset"}),
    )
    plan = plan_docker(ca_policy("registry.tset"), facts)
    assert (
        "certs.d/registry.test/trust-agent-storage-ca.crt: remove (this run is for registry.tset, not registry.test)"
        in (plan.reasons)
    )
    # A CA the policy no longer asks for in the run's own directory: no takeover to speak of.
    assert (
        "certs.d/registry.tset/trust-agent-registry-ca.crt: remove (trust-agent's, no longer asked for)"
        in (plan.reasons)
    )


def test_a_persons_trust_agent_named_file_for_another_registry_is_never_deleted() -> None:
    """A person's ``certs.d/mirror.corp:5000/trust-agent-corp-root.crt`` was deleted with no backup,
    and pulls through that mirror failed: only the names the agent writes are ever deleted."""
    persons = {
        "mirror.corp:5000/trust-agent-corp-root.crt": b"corp",
        "registry.test/trust-agent-old.crt": b"o",
    }
    leftover = {"registry.test/trust-agent-registry-ca.crt": REG_PEM, "old.test/" + STORAGE_CRT: PEM}
    for state in (None, json.dumps({"version": 1, "insecure_registries": [], "cert_dirs": []}).encode()):
        facts = host(
            certs={**persons, **leftover},
            cert_dirs=frozenset({"mirror.corp:5000", "registry.test", "old.test"}),
            state=state,
        )
        for policy in (ca_policy("registry.test"), insecure_policy("registry.test"), no_trust_policy()):
            deleted = {c.path for c in plan_docker(policy, facts).changes if c.action == "delete"}
            assert not deleted & {f"{CERTS_DIR}/{rel}" for rel in persons}
            # The agent's own files, from a run with or without a record, still go.
            assert {f"{CERTS_DIR}/{rel}" for rel in leftover} <= deleted
            after = converge(policy, facts)
            assert {rel: after.certs[rel] for rel in persons} == persons


# --- blockers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "blocker"),
    [
        (b'{\n  "debug": true,\n  "labels": [\n}\n', f"{DAEMON_JSON}: not valid JSON (line 4, column 1): "),
        (b'["registry.test"]', f"{DAEMON_JSON}: not a JSON object (found an array)"),
        (b'{"insecure-registries": "registry.test"}', f"{DAEMON_JSON}: insecure-registries must be a list of strings"),
    ],
)  # fmt: skip
def test_unreadable_daemon_json_blocks_the_host_where_it_must_change(raw: bytes, blocker: str) -> None:
    plan = plan_docker(insecure_policy("registry.test"), host(daemon_json=raw))
    assert len(plan.blockers) == 1 and plan.blockers[0].startswith(blocker)
    assert DAEMON_JSON not in by_path(plan)
    # The agent's own entry is recorded in it: a CA policy must remove it. certs.d changes are still
    # listed, for the report; the blocker keeps the host untouched.
    recorded = json.dumps({"version": 1, "insecure_registries": ["registry.test"], "cert_dirs": []})
    plan = plan_docker(ca_policy("registry.test"), host(daemon_json=raw, state=recorded.encode()))
    assert f"{CERTS_DIR}/registry.test/{STORAGE_CRT}" in by_path(plan)
    assert plan.blockers[0].startswith(blocker)


@pytest.mark.parametrize(
    "raw",
    [
        b'{\n  // the site\'s mirror\n  "debug": true\n}\n',
        b'{\n  "debug": true,\n}\n',
        b'{"insecure-registries": "registry.test"}',
    ],
)
def test_unreadable_daemon_json_left_alone_where_only_certs_d_changes(raw: bytes) -> None:
    """A CA policy needs no daemon.json change: the CA files are installed (no reload, fact 7) and the
    file reported, instead of the host never getting its CAs."""
    live = {"registry.test": True}  # what dockerd runs says nothing of a file it could not reload
    for policy in (ca_policy("registry.test"), insecure_policy()):
        plan = plan_docker(policy, host(daemon_json=raw), live_insecure=live)
        assert plan.blockers == ()
        assert DAEMON_JSON not in by_path(plan)
        assert plan.engine_action == "none"
        assert any(w.startswith(f"{DAEMON_JSON}: ") and "leaves it alone" in w for w in plan.warnings)
    plan = plan_docker(ca_policy("registry.test"), host(daemon_json=raw))
    assert by_path(plan)[f"{CERTS_DIR}/registry.test/{STORAGE_CRT}"].action == "create"
    after = converge(ca_policy("registry.test"), host(daemon_json=raw))
    assert after.daemon_json == raw and state_of(after)["insecure_registries"] == []


def test_a_symlinked_daemon_json_is_written_at_its_target_and_the_link_kept() -> None:
    target = "/srv/docker/daemon.json"
    facts = host(daemon_json=b'{"debug": true}\n', daemon_json_link=target)
    plan = plan_docker(insecure_policy("registry.test"), facts)
    assert plan.blockers == ()
    change = by_path(plan)[target]
    assert (change.action, change.before) == ("update", b'{"debug": true}\n')
    assert json.loads(change.after) == {"debug": True, "insecure-registries": ["registry.test"]}
    assert DAEMON_JSON not in by_path(plan)  # the link itself is never replaced
    assert f"{DAEMON_JSON} is a symlink to {target}: the target is written, the link kept" in plan.reasons
    assert facts.daemon_json_file == target and host().daemon_json_file == DAEMON_JSON


@pytest.mark.parametrize(
    ("link", "blocker"),
    [
        ("/srv/docker/daemon.json", f"{DAEMON_JSON} is a symlink to /srv/docker/daemon.json, which is not a file"),
        ("", f"{DAEMON_JSON} is a symlink, not followed in a directory tree (--root)"),
    ],
)  # fmt: skip
def test_a_symlinked_daemon_json_without_a_known_file_behind_it_blocks_only_a_change(
    link: str, blocker: str
) -> None:
    facts = host(daemon_json=None if link else b"{}", daemon_json_link=link)
    plan = plan_docker(insecure_policy("registry.test"), facts)
    assert len(plan.blockers) == 1 and plan.blockers[0].startswith(blocker), plan.blockers
    assert not any("daemon.json" in c.path for c in plan.changes)
    # A policy that needs no daemon.json change is not held up by the link.
    assert plan_docker(ca_policy("registry.test"), facts).blockers == ()


def test_a_stopped_engine_gets_the_files_and_no_action_one_run_elsewhere_is_refused() -> None:
    stopped = host(engine_running=False)
    plan = plan_docker(insecure_policy("registry.test"), stopped)
    assert plan.blockers == () and plan.engine_action == "none"
    assert DAEMON_JSON in by_path(plan)
    assert "dockerd is not running: the change takes effect when it starts" in plan.reasons

    elsewhere = host(engine_running=False, engine_elsewhere=True)
    plan = plan_docker(insecure_policy("registry.test"), elsewhere)
    assert len(plan.blockers) == 1 and plan.blockers[0].startswith("dockerd runs, but not as docker.service")
    # CA files need no reload: a dockerd run any way reads them on the next pull.
    plan = plan_docker(ca_policy("registry.test"), elsewhere)
    assert plan.blockers == () and plan.engine_action == "none" and plan.changed


@pytest.mark.parametrize("policy", [insecure_policy("registry.test"), ca_policy("registry.test")])
def test_docker_from_the_snap_blocks_everything_unless_docker_service_runs(policy: TrustPolicy) -> None:
    # The snap's dockerd reads its own daemon.json and certs.d: files in /etc/docker would do nothing.
    plan = plan_docker(policy, host(engine_running=False, engine_elsewhere=True, snap_docker=True))
    assert len(plan.blockers) >= 1
    assert any(
        b.startswith("Docker from the snap is installed and docker.service is not running")
        for b in plan.blockers
    )
    assert all("/var/snap/docker/current/" in b for b in plan.blockers if "snap" in b)
    # docker.service runs as well: the change is for its dockerd, and the snap is named in a warning.
    plan = plan_docker(policy, host(snap_docker=True))
    assert plan.blockers == () and plan.changed
    assert any(w.startswith("Docker from the snap is installed too") for w in plan.warnings)


def test_flag_conflict_blocks_the_daemon_json_change() -> None:
    facts = host(dockerd_flags=("-H", "fd://", "--insecure-registry=10.0.0.0/8"), flags_source=DROP_IN)
    plan = plan_docker(insecure_policy("registry.test"), facts)
    assert plan.blockers == (
        f"{DROP_IN} sets --insecure-registry; the same directive (insecure-registries) in daemon.json "
        "would stop dockerd (fact 13)",
    )
    # certs.d needs no daemon.json: no conflict.
    assert plan_docker(ca_policy("registry.test"), facts).blockers == ()


def test_other_keys_set_as_flags_block_a_daemon_json_change() -> None:
    facts = host(daemon_json=b'{"hosts": ["unix:///run/docker.sock"]}', dockerd_flags=("-H", "fd://"))
    plan = plan_docker(insecure_policy("registry.test"), facts)
    assert len(plan.blockers) == 1
    assert plan.blockers[0].startswith("dockerd's command line sets -H; the same directive (hosts)")


def test_config_file_elsewhere_blocks() -> None:
    elsewhere = host(dockerd_flags=("--config-file", "/srv/docker/daemon.json"))
    plan = plan_docker(insecure_policy("registry.test"), elsewhere)
    assert any("--config-file=/srv/docker/daemon.json: dockerd does not read" in b for b in plan.blockers)
    same = host(dockerd_flags=(f"--config-file={DAEMON_JSON}",))
    assert plan_docker(insecure_policy("registry.test"), same).blockers == ()


UNIT = "/lib/systemd/system/docker.service"
ALT = "/etc/docker-alt/daemon.json"


def test_a_config_file_only_the_running_dockerd_has_is_not_said_to_be_the_units() -> None:
    """The flag removed from the unit, dockerd not restarted: the plan said the unit "and /proc/N/cmdline
    sets" it, against the unit's own refusal (its next start reads daemon.json)."""
    policy = insecure_policy("registry.test")  # a daemon.json change: the file dockerd reads matters
    unit = ("-H", "fd://")
    moved = host(
        unit_flags=unit,
        running_flags=(*unit, f"--config-file={ALT}"),
        dockerd_flags=(*unit, f"--config-file={ALT}"),
        flags_source=f"{UNIT} and /proc/4036/cmdline",
    )
    assert not any("--config-file" in b for b in plan_docker(policy, moved).blockers)
    # Where the unit gives it, the unit alone is named as setting it.
    given_by_unit = replace(
        moved,
        unit_flags=(*unit, f"--config-file={ALT}"),
        dockerd_flags=(*unit, f"--config-file={ALT}", "--debug"),
        running_flags=(*unit, "--debug"),
    )
    said = [b for b in plan_docker(policy, given_by_unit).blockers if "--config-file" in b]
    assert said == [f"{UNIT} sets --config-file={ALT}: dockerd does not read {DAEMON_JSON}"]


def test_problems_already_in_daemon_json_block_a_change() -> None:
    raw = b'{"live-restore": "yes", "frobnicate": 1}'
    plan = plan_docker(insecure_policy("registry.test"), host(daemon_json=raw, has_validate=False))
    assert set(plan.blockers) == {
        f"{DAEMON_JSON}: live-restore: must be true or false",
        f"{DAEMON_JSON}: unknown key 'frobnicate': dockerd refuses directives it does not know",
    }
    # An engine with `dockerd --validate` knows its own newer keys; the types are still checked.
    plan = plan_docker(insecure_policy("registry.test"), host(daemon_json=raw, has_validate=True))
    assert plan.blockers == (f"{DAEMON_JSON}: live-restore: must be true or false",)
    # Not the agent's business when it does not write the file.
    assert plan_docker(ca_policy("registry.test"), host(daemon_json=raw)).blockers == ()


@pytest.mark.parametrize("name", ["../../etc", "reg.test/../../etc", "..", "reg test", "a/b"])
def test_registry_names_that_could_escape_certs_d_block(name: str) -> None:
    plan = plan_docker(ca_policy(name, "registry.test"), host())
    assert len(plan.blockers) == 1 and repr(name) in plan.blockers[0]
    assert not any(".." in c.path or " " in c.path for c in plan.changes)
    assert not any(".." in d for d in plan.mkdirs)
    plan = plan_docker(insecure_policy(name), host())
    assert plan.blockers and DAEMON_JSON not in by_path(plan)


@pytest.mark.parametrize(
    "name", ["ca.crt", "trust-agent-client.cert", "trust-agent-x.key", "trust-agent-../x.crt"]
)
def test_ca_file_names_the_agent_does_not_own_block(name: str) -> None:
    policy = replace(
        ca_policy("registry.test"),
        ca_files=(CAFile("storage", name, CABundle(origin="t", pem=PEM, certificates=())),),
    )
    plan = plan_docker(policy, host())
    assert len(plan.blockers) == 1 and OWNED_PREFIX in plan.blockers[0]
    assert not any(c.path.endswith(name) for c in plan.changes)


# --- dockerd action (facts 7, 10, 17) ---------------------------------------------------------------

MIRRORS = b'{"registry-mirrors": ["https://mirror.example.com"]}'


@pytest.mark.parametrize(
    ("version", "daemon_json", "action"),
    [
        # 20.10 reloads the list with mirrors set too (reproduced on the lab); 23.0.0-23.0.6 and 24.0.0
        # lose it (moby#45552).
        ("20.10.24+dfsg1", MIRRORS, "reload"),
        ("19.03.15", MIRRORS, "reload"),
        ("20.10.24", b"{}", "reload"),
        ("23.0.0", MIRRORS, "restart"),
        ("23.0.6", b"{}", "reload"),
        ("20.10.24", None, "reload"),
        ("23.0.6", MIRRORS, "restart"),
        ("23.0.7", MIRRORS, "reload"),
        ("24.0.0", MIRRORS, "restart"),
        ("24.0.1", MIRRORS, "reload"),
        ("26.1.5", MIRRORS, "reload"),
        (None, MIRRORS, "restart"),
        ("1.12.6", b"{}", "restart"),
        ("1.13.1", b"{}", "reload"),
    ],
)
def test_version_rules_for_reload_or_restart(
    version: str | None, daemon_json: bytes | None, action: str
) -> None:
    facts = host(engine_version=version, daemon_json=daemon_json)
    plan = plan_docker(insecure_policy("registry.test"), facts, allow_restart=True)
    assert plan.engine_action == action
    assert plan.blockers == ()
    if action == "restart":
        assert any(r.startswith("restart: ") and "allowed by --allow-restart" in r for r in plan.reasons)


def test_restart_without_permission_is_a_blocker() -> None:
    facts = host(engine_version="23.0.6", daemon_json=MIRRORS)
    plan = plan_docker(insecure_policy("registry.test"), facts)
    assert plan.engine_action == "restart"
    assert len(plan.blockers) == 1
    blocker = plan.blockers[0]
    assert blocker.startswith("needs a dockerd restart (Docker 23.0.6 with registry-mirrors set")
    assert blocker.endswith("pass --allow-restart or enable live-restore")


def test_live_restore_allows_the_restart_only_where_the_running_dockerd_has_it() -> None:
    live = b'{"registry-mirrors": ["https://mirror.example.com"], "live-restore": true}'
    # In the file alone (not known to be loaded: a value written since dockerd started protects nothing).
    plan = plan_docker(insecure_policy("registry.test"), host(engine_version="24.0.0", daemon_json=live))
    assert plan.engine_action == "restart" and plan.blockers
    plan = plan_docker(
        insecure_policy("registry.test"),
        host(engine_version="24.0.0", daemon_json=MIRRORS),
        live_restore=True,
    )
    assert (plan.engine_action, plan.blockers) == ("restart", ())
    assert any("live-restore keeps containers running" in r for r in plan.reasons)
    # What the running daemon has wins: live-restore in the file alone does not protect this restart.
    plan = plan_docker(
        insecure_policy("registry.test"),
        host(engine_version="24.0.0", daemon_json=live),
        live_restore=False,
    )
    assert plan.blockers


def test_restart_policies() -> None:
    facts = host(engine_version="23.0.6", daemon_json=MIRRORS)
    policy = insecure_policy("registry.test")
    never = plan_docker(policy, facts, restart_policy="never")
    assert (never.engine_action, never.blockers) == ("none", ())
    assert never.live_pending
    assert "the daemon.json change takes effect at its next restart" in never.warnings[0]
    forced = plan_docker(policy, facts, restart_policy="reload")
    assert (forced.engine_action, forced.blockers) == ("reload", ())
    assert any("could drop the insecure list" in w for w in forced.warnings)
    assert plan_docker(policy, facts, restart_policy="restart").engine_action == "restart"
    # Forcing applies only to daemon.json changes: certs.d alone never needs dockerd.
    for restart_policy in ("reload", "restart"):
        assert (
            plan_docker(ca_policy("registry.test"), facts, restart_policy=restart_policy).engine_action
            == "none"
        )


BEHIND = "dockerd runs an older daemon.json: registry.test: dockerd has it secure, daemon.json says insecure"


def test_a_daemon_json_dockerd_has_not_loaded_gets_the_action_that_loads_it() -> None:
    policy = insecure_policy("registry.test")
    facts = converge(policy, host())  # the files as the policy wants them, dockerd not told
    stale = {"registry.test": False}
    plan = plan_docker(policy, facts, live_insecure=stale)
    assert (plan.changed, plan.engine_action, plan.blockers, plan.live_pending) == (
        False,
        "reload",
        (),
        False,
    )
    assert plan.reasons == (BEHIND, "reload: insecure-registries is reloadable (fact 10)")
    # Loaded: nothing to do.
    assert plan_docker(policy, facts, live_insecure={"registry.test": True}).engine_action == "none"
    # Not known (no /info): nothing is assumed.
    assert plan_docker(policy, facts, live_insecure=None).engine_action == "none"
    # Restart policy 'never' leaves it, and says so.
    never = plan_docker(policy, facts, live_insecure=stale, restart_policy="never")
    assert (never.engine_action, never.live_pending) == ("none", True)
    assert never.warnings == (
        f"restart policy 'never': {BEHIND}; the file is loaded at its next reload or restart",
    )
    # An engine that cannot reload the list needs the restart it would need for a change.
    mirrors = converge(policy, host(engine_version="23.0.6", daemon_json=MIRRORS), allow_restart=True)
    blocked = plan_docker(policy, mirrors, live_insecure=stale)
    assert (blocked.engine_action, blocked.reasons[0]) == ("restart", BEHIND)
    assert blocked.blockers[0].startswith("needs a dockerd restart")
    allowed = plan_docker(policy, mirrors, live_insecure=stale, allow_restart=True)
    assert (allowed.engine_action, allowed.blockers) == ("restart", ())


def test_an_entry_dockerd_still_lists_after_its_removal_is_loaded_too() -> None:
    # Back from skip-TLS to a CA: the file lists no entry (``[]``), dockerd still has it insecure.
    facts = converge(ca_policy("registry.test"), converge(insecure_policy("registry.test"), host()))
    plan = plan_docker(ca_policy("registry.test"), facts, live_insecure={"registry.test": True})
    assert (plan.changed, plan.engine_action) == (False, "reload")
    assert plan.reasons[0] == (
        "dockerd runs an older daemon.json: registry.test: dockerd has it insecure, daemon.json says secure"
    )


@pytest.mark.parametrize("written", ["http://registry.test", "https://registry.test"])
def test_a_persons_entry_with_a_scheme_is_read_as_dockerd_reads_it(written: str) -> None:
    """dockerd strips the scheme and runs registry.test insecure: that is no older daemon.json to
    reload (every run reloaded, waited and failed), and the person's entry is named as staying."""
    person = json.dumps({"insecure-registries": [written]}).encode()
    live = {"registry.test": True}
    plan = plan_docker(ca_policy("registry.test"), host(daemon_json=person), live_insecure=live)
    assert (plan.blockers, plan.engine_action) == ((), "none")
    assert not any("older daemon.json" in r for r in plan.reasons)
    stays = "daemon.json: registry.test stays in insecure-registries (not added by trust-agent)"
    assert plan.warnings[0].startswith(stays)
    # Skip-TLS: the person's entry already makes it insecure; nothing is added, nothing claimed.
    skip = plan_docker(insecure_policy("registry.test"), host(daemon_json=person), live_insecure=live)
    assert (skip.changes, skip.blockers, skip.engine_action) == ((), (), "none")


def test_a_list_dockerd_kept_after_the_key_went_is_cleared_by_writing_an_empty_one() -> None:
    """The key removed from daemon.json and dockerd reloaded: dockerd keeps the list (fact 11), so a
    reload alone never clears it (before, every run reloaded, found the registry still insecure and
    rolled back). ``[]`` is written, then reloaded."""
    policy = ca_policy("registry.test")
    base = b'{\n  "debug": true\n}\n'
    facts = converge(policy, host(daemon_json=base))
    plan = plan_docker(policy, facts, live_insecure={"registry.test": True})
    assert not plan.blockers
    assert plan.engine_action == "reload"
    (change,) = [c for c in plan.changes if c.path == DAEMON_JSON]
    assert change.after is not None and json.loads(change.after) == {"debug": True, "insecure-registries": []}
    assert (
        "daemon.json: insecure-registries written as [] (dockerd still lists registry.test as insecure, "
        "and a reload keeps the list where the key is missing, fact 11)"
    ) in plan.reasons
    # Once written and loaded, nothing more.
    done = plan_docker(policy, apply_plan(plan, facts), live_insecure={"registry.test": False})
    assert (done.changes, done.engine_action) == ((), "none")
    # Secure in dockerd too, or not known: the file is left as it is.
    for live in ({"registry.test": False}, None):
        assert not plan_docker(policy, facts, live_insecure=live).changes, live
    # A --insecure-registry flag sets dockerd's list: the key beside it would stop dockerd (fact 13).
    flagged = replace(facts, dockerd_flags=("--insecure-registry", "other.test"), flags_source=DROP_IN)
    plan = plan_docker(policy, flagged, live_insecure={"registry.test": True})
    assert not [c for c in plan.changes if c.path == DAEMON_JSON]


def test_a_host_planned_without_its_live_config_is_planned_again_with_it_and_undone_as_one() -> None:
    """No state file: the gather asks dockerd only its version, so the plan cannot see a list dockerd
    kept after its key went from daemon.json (fact 11). The live config read after the apply shows
    it: the host as the first apply left it is planned again, ``[]`` written and reloaded; the report
    shows both, and a roll-back puts back what was there before either."""
    policy = ca_policy("registry.test")
    before = host(daemon_json=b'{\n  "debug": true\n}\n', certs_dir_present=False)
    first = plan_docker(policy, before)
    assert (DAEMON_JSON in by_path(first), first.engine_action) == (False, "none")
    written = facts_after(first, before)
    assert written.certs_dir_present and written.cert_dirs == {"registry.test"}
    again = plan_docker(policy, written, live_insecure={"registry.test": True})
    assert (list(by_path(again)), again.engine_action) == ([DAEMON_JSON], "reload")
    both = followed_by(first, again)
    assert [c.path for c in both.changes] == [*by_path(first), DAEMON_JSON]
    assert (both.mkdirs, both.engine_action) == (first.mkdirs, "reload")
    assert any("insecure-registries written as []" in r for r in both.reasons)
    assert set(first.reasons) < set(both.reasons)
    done = facts_after(both, before)
    assert done == facts_after(again, written)
    assert plan_docker(policy, done, live_insecure={"registry.test": False}).changed is False
    undone = facts_after(inverse(both), done)
    assert (held(undone), undone.certs_dir_present) == (held(before), False)


def test_an_insecure_registry_flag_counts_as_loaded() -> None:
    # dockerd's own --insecure-registry makes the registry insecure: not a file waiting to be loaded.
    facts = host(dockerd_flags=("--insecure-registry", "registry.test"), flags_source=DROP_IN)
    facts = converge(ca_policy("registry.test"), facts)
    plan = plan_docker(ca_policy("registry.test"), facts, live_insecure={"registry.test": True})
    assert (plan.engine_action, plan.reasons) == ("none", ())


def test_the_live_config_of_an_engine_that_does_not_run_is_not_weighed() -> None:
    converged = converge(insecure_policy("registry.test"), host())
    for unlike in ({"engine_running": False}, {"init": None}, {"engine_elsewhere": True}):
        facts = replace(converged, **unlike)
        plan = plan_docker(insecure_policy("registry.test"), facts, live_insecure={"registry.test": False})
        assert (plan.engine_action, plan.reasons, plan.blockers) == ("none", (), ()), unlike


def test_directory_tree_without_engine_needs_no_action() -> None:
    plan = plan_docker(
        insecure_policy("registry.test"), host(init=None, engine_version=None, daemon_json=MIRRORS)
    )
    assert (plan.engine_action, plan.blockers) == ("none", ())
    assert "no running engine (directory tree): takes effect when dockerd starts" in plan.reasons


def test_required_action_reasons_cite_fact_10() -> None:
    assert required_action("24.0.7", {}) == ("reload", "insecure-registries is reloadable (fact 10)")
    action, why = required_action("23.0.6", {"registry-mirrors": []})
    assert action == "restart" and "fact 10" in why
    assert why.startswith("Docker 23.0.6 with registry-mirrors set: a reload could drop the insecure list")


@given(
    version=st.tuples(st.integers(1, 30), st.integers(0, 12), st.integers(0, 30)),
    mirrors=st.booleans(),
)
def test_only_the_engines_of_moby_45552_with_mirrors_need_a_restart(
    version: tuple[int, int, int], mirrors: bool
) -> None:
    doc: dict[str, Any] = {"registry-mirrors": ["https://m.test"]} if mirrors else {}
    action, _ = required_action(".".join(map(str, version)), doc)
    affected = (23, 0, 0) <= version <= (23, 0, 6) or version == (24, 0, 0)
    assert action == ("restart" if version < (1, 13, 0) or (mirrors and affected) else "reload")


# --- properties -----------------------------------------------------------------------------------

registry_names = st.sampled_from(
    [
        "registry.test",
        "registry.test:443",
        "reg.example.com:5000",
        "10.0.0.5:5000",
        "[fd00::5]:5000",
        "b.test",
    ]
)
foreign_values: dict[str, st.SearchStrategy[Any]] = {
    "debug": st.booleans(),
    "log-driver": st.sampled_from(["json-file", "local", "journald"]),
    "labels": st.lists(st.from_regex(r"[a-z]{1,4}=[a-z]{0,4}", fullmatch=True), max_size=3),
    "log-opts": st.dictionaries(st.sampled_from(["max-size", "max-file"]), st.sampled_from(["3", "10m"])),
    "data-root": st.sampled_from(["/srv/docker", "/var/lib/docker"]),
    "max-concurrent-downloads": st.integers(0, 10),
    "storage-driver": st.just("overlay2"),
    "registry-mirrors": st.lists(st.sampled_from(["https://m1.test", "http://10.1.1.1:5000"]), max_size=2),
}


@st.composite
def daemon_docs(draw: st.DrawFn) -> tuple[bytes | None, list[str], list[tuple[str, Any]]]:
    keys = draw(st.lists(st.sampled_from(sorted(foreign_values)), unique=True, max_size=5))
    items: list[tuple[str, Any]] = [(k, draw(foreign_values[k])) for k in keys]
    entries = draw(st.lists(registry_names | st.just("192.168.0.0/16"), unique=True, max_size=3))
    with_key = bool(entries) or draw(st.booleans())
    doc_items = list(items)
    if with_key:
        doc_items.insert(draw(st.integers(0, len(items))), ("insecure-registries", entries))
    if not doc_items and draw(st.booleans()):
        return None, [], []
    indent = draw(st.sampled_from(["  ", "    ", "\t"]))
    return (json.dumps(dict(doc_items), indent=indent) + "\n").encode(), entries, items


foreign_files = st.dictionaries(
    st.tuples(
        registry_names, st.sampled_from(["ca.crt", "client.cert", "client.key", "x.crt", "trust-agent.txt"])
    ).map("/".join),
    st.binary(min_size=1, max_size=8),
    max_size=5,
)


@st.composite
def policies(draw: st.DrawFn) -> TrustPolicy:
    registries = tuple(draw(st.lists(registry_names, unique=True, max_size=3)))
    kind = draw(st.sampled_from(["ca", "ca+registry", "insecure", "none"]))
    if kind == "insecure":
        return insecure_policy(*registries)
    if kind == "none":
        return no_trust_policy(*registries)
    return ca_policy(*registries, pem=draw(st.sampled_from([PEM, PEM2])), registry_ca=kind == "ca+registry")


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=daemon_docs(),
    files=foreign_files,
    extra_dirs=st.frozensets(registry_names, max_size=2),
    steps=st.lists(policies(), min_size=1, max_size=4),
)
def test_any_sequence_of_policies_converges_and_keeps_what_is_not_the_agents(
    doc: tuple[bytes | None, list[str], list[tuple[str, Any]]],
    files: dict[str, bytes],
    extra_dirs: frozenset[str],
    steps: list[TrustPolicy],
) -> None:
    raw, foreign_entries, foreign_items = doc
    facts = host(
        daemon_json=raw,
        certs=files,
        cert_dirs=frozenset({rel.partition("/")[0] for rel in files}) | extra_dirs,
        engine_version="24.0.7",
    )
    foreign_dirs = set(facts.cert_dirs)
    for policy in steps:
        plan = plan_docker(policy, facts)
        assert plan.blockers == ()
        # Never a foreign file, never a foreign directory, never a .cert/.key.
        touched = {c.path for c in plan.changes}
        assert not touched & {f"{CERTS_DIR}/{rel}" for rel in files}
        assert not set(plan.rmdirs) & {f"{CERTS_DIR}/{d}" for d in foreign_dirs}
        assert not any(p.endswith((".cert", ".key")) for p in touched)
        assert plan.engine_action in ("none", "reload")
        if plan.engine_action == "reload":
            assert DAEMON_JSON in touched

        facts = converge(policy, facts)

        for rel, content in files.items():
            assert facts.certs[rel] == content
        assert foreign_dirs <= set(facts.cert_dirs)
        want_files = {f"{r}/{c.name}" for r in policy.registries for c in policy.ca_files}
        assert {
            rel for rel in facts.certs if rel.startswith(OWNED_PREFIX) or "/trust-agent-" in rel
        } == want_files
        if facts.daemon_json is not None:
            merged = json.loads(facts.daemon_json)
            assert [(k, v) for k, v in merged.items() if k != "insecure-registries"] == foreign_items
            entries = merged.get("insecure-registries", [])
            assert [e for e in entries if e in foreign_entries] == foreign_entries
            wanted = set(policy.registries) if policy.insecure else set()
            assert set(entries) == set(foreign_entries) | wanted
        else:
            assert not policy.insecure or not policy.registries


def held(facts: DockerFacts) -> tuple[Any, ...]:
    """What the host's files are, as the facts say."""
    return dict(facts.certs), facts.cert_dirs, facts.daemon_json, facts.state


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=daemon_docs(),
    files=foreign_files,
    steps=st.lists(st.tuples(policies(), st.booleans()), min_size=2, max_size=4),
)
def test_facts_after_a_plan_are_the_hosts_files_once_applied_and_an_undo_brings_back_the_first(
    doc: tuple[bytes | None, list[str], list[tuple[str, Any]]],
    files: dict[str, bytes],
    steps: list[tuple[TrustPolicy, bool]],
) -> None:
    facts = host(daemon_json=doc[0], certs=files, cert_dirs=frozenset(rel.partition("/")[0] for rel in files))
    start, done = facts, HostPlan()
    for policy, insecure_live in steps:
        live = dict.fromkeys(policy.registries, insecure_live)
        plan = plan_docker(policy, facts, live_insecure=live)
        if plan.blockers:
            continue  # the host is left as it is (a person's entry the reload would load, say)
        after = facts_after(plan, facts)
        assert held(after) == held(apply_plan(plan, facts))
        done, facts = followed_by(done, plan), after
    assert held(facts_after(done, start)) == held(facts)
    assert held(facts_after(inverse(done), facts)) == held(start)


@pytest.mark.parametrize(
    ("flags", "doc", "blocked"),
    [
        ((), {}, False),  # dockerd's default socket
        (("-H", "fd://"), {}, False),  # docker.socket, which listens there
        (("-Hfd://", "--containerd", "/run/c.sock"), {}, False),
        (("--host=unix:///var/run/docker.sock", "--host=tcp://0.0.0.0:2376"), {}, False),
        (("-H=unix:///run/docker.sock",), {}, False),
        ((), {"hosts": ["unix://"]}, False),  # empty path: the default
        (("-H", "unix:///run/docker-alt.sock"), {}, True),
        (("--host", "tcp://127.0.0.1:2375"), {}, True),
        ((), {"hosts": ["unix:///srv/docker.sock", "tcp://0.0.0.0:2376"]}, True),
    ],
)
def test_an_engine_serving_its_api_only_elsewhere_blocks_the_host(
    flags: tuple[str, ...], doc: dict[str, Any], blocked: bool
) -> None:
    facts = host(dockerd_flags=flags, daemon_json=json.dumps(doc).encode())
    blockers = [b for b in plan_docker(ca_policy("registry.test"), facts).blockers if "serves its API" in b]
    assert bool(blockers) is blocked, blockers
    if blocked:
        assert (
            blockers[0].startswith("dockerd serves its API at ")
            and "not at /var/run/docker.sock" in blockers[0]
        )
    # A directory tree (--root) has no engine to read: nothing to block.
    tree = replace(facts, init=None)
    assert not [b for b in plan_docker(ca_policy("registry.test"), tree).blockers if "serves its API" in b]


def test_a_flag_set_since_dockerd_started_is_named_even_when_nothing_changes() -> None:
    """An emptied list left as [] and an --insecure-registry flag added later: dockerd will not start
    again ("specified both as a flag and in the configuration file"), which no run would otherwise say."""
    facts = host(
        daemon_json=b'{\n  "insecure-registries": []\n}\n',
        dockerd_flags=("--insecure-registry=legacy.example.com:5000",),
        flags_source="/etc/default/docker",
    )
    plan = plan_docker(
        ca_policy("registry.test"), apply_plan(plan_docker(ca_policy("registry.test"), facts), facts)
    )
    assert DAEMON_JSON not in by_path(plan) and plan.blockers == ()
    assert (
        'daemon.json as it is: /etc/default/docker sets --insecure-registry, and daemon.json holds "insecure-'
        'registries": [] that trust-agent has no record of writing (empty, but a directive): dockerd refuses '
        'a reload with it now, and will not start at its next restart ("the following directives are '
        'specified both as a flag and in the configuration file", fact 13); remove "insecure-registries": [] '
        "from /etc/docker/daemon.json (the flags give the list)"
    ) in plan.warnings
    quiet = plan_docker(ca_policy("registry.test"), host(daemon_json=b'{"insecure-registries": []}'))
    assert not [w for w in quiet.warnings if "will not start" in w or "refuses a reload" in w]


PERSONS_EMPTY_LIST = b'{\n  "debug": false,\n  "insecure-registries": []\n}\n'
FLAG = "--insecure-registry=10.9.9.9"


@pytest.mark.parametrize(
    ("unit", "running", "effect"),
    [
        ((FLAG,), (FLAG,), "dockerd refuses a reload with it now, and will not start at its next restart"),
        ((FLAG,), ("-H", "fd://"), "dockerd will not start at its next restart"),
        (
            ("-H", "fd://"),
            (FLAG,),
            "dockerd refuses a reload (keeping its old config) until it restarts without that flag",
        ),
    ],
    ids=["flag-in-both", "flag-added-to-the-unit", "flag-gone-from-the-unit"],
)
def test_a_persons_empty_list_beside_a_flag_is_said_to_stop_dockerd_and_kept(
    unit: tuple[str, ...], running: tuple[str, ...], effect: str
) -> None:
    """A person's (or an older trust-agent's) "insecure-registries": [] beside --insecure-registry: dockerd
    refuses it as it refuses any list there (reproduced on 20.10 and 26.1: "insecure-registries: (from
    flag: [10.9.9.9], from file: [])"). The warning said "would stop dockerd", and not how to fix it."""
    flags = tuple(dict.fromkeys((*unit, *running)))
    facts = host(
        daemon_json=PERSONS_EMPTY_LIST,
        dockerd_flags=flags,
        unit_flags=unit,
        running_flags=running,
        flags_source=X2,
    )
    for policy in (ca_policy("registry.test"), no_trust_policy("registry.test")):
        plan = plan_docker(policy, facts)
        assert DAEMON_JSON not in by_path(plan) and plan.blockers == ()  # a person's key: left
        (said,) = [w for w in plan.warnings if w.startswith("daemon.json as it is: ")]
        owner = "that trust-agent has no record of writing (empty, but a directive)"
        assert f'holds "insecure-registries": [] {owner}: {effect} (' in said, said
        assert said.endswith(
            '; remove "insecure-registries": [] from /etc/docker/daemon.json (the flags give the list)'
        )


def test_a_persons_key_beside_its_flag_is_said_to_stop_dockerd_with_both_ways_out() -> None:
    facts = host(daemon_json=b'{"debug": true}', dockerd_flags=("-D",), unit_flags=("-D",), flags_source=X2)
    plan = plan_docker(ca_policy("registry.test"), facts)
    assert plan.blockers == () and DAEMON_JSON not in by_path(plan)
    assert (
        f"daemon.json as it is: {X2} sets -D, and daemon.json sets debug: dockerd refuses a reload with it "
        'now, and will not start at its next restart ("the following directives are specified both as a flag '
        f'and in the configuration file", fact 13); remove debug from /etc/docker/daemon.json, or -D from {X2}'
    ) in plan.warnings


def test_a_daemon_json_link_to_nothing_is_left_alone_with_no_reload() -> None:
    dangling = host(daemon_json=None, daemon_json_link="/etc/nowhere/daemon.json")
    live_insecure = {"registry.test": True}  # dockerd still runs the skip-TLS list it had
    ca = plan_docker(ca_policy("registry.test"), dangling, live_insecure=live_insecure)
    assert ca.engine_action == "none" and ca.blockers == () and DAEMON_JSON not in by_path(ca)
    assert ca.live_pending  # nothing to verify the live config against
    note = "/etc/docker/daemon.json is a symlink to /etc/nowhere/daemon.json, which is not a file: left alone"
    assert note in ca.warnings
    skip = plan_docker(insecure_policy("registry.test"), dangling, live_insecure=live_insecure)
    assert skip.blockers == (note,)


def test_a_forgotten_storage_ca_does_not_take_the_hosts_away() -> None:
    installed = apply_plan(plan_docker(ca_policy("registry.test"), host()), host())
    forgotten = replace(
        no_trust_policy("registry.test"), storage_endpoint="s3.test:9000", storage_ca_missing=True
    )
    plan = plan_docker(forgotten, installed)
    assert len(plan.blockers) == 1
    assert plan.blockers[0].startswith(
        f"this host holds trust-agent's storage CA ({CERTS_DIR}/registry.test/{STORAGE_CRT}) for the redirect "
        "to s3.test:9000, and no storage CA is given: it is kept"
    )
    # Kept: the blocked plan neither lists its removal nor gives a reason for one.
    assert not [c for c in plan.changes if c.action == "delete"]
    assert not [r for r in plan.reasons if "remove" in r]
    assert plan.blockers[0].endswith(
        "or --no-storage-ca if the storage's certificate is publicly trusted now"
    )
    # Said on purpose (--no-storage-ca): removed, as before.
    told = plan_docker(replace(forgotten, storage_ca_missing=False), installed)
    assert (
        told.blockers == () and by_path(told)[f"{CERTS_DIR}/registry.test/{STORAGE_CRT}"].action == "delete"
    )


def test_a_forgotten_registry_ca_does_not_take_the_hosts_away() -> None:
    """A later run without --registry-ca deleted the registry's CA and every pull failed with x509."""
    installed = apply_plan(plan_docker(ca_policy("registry.test", registry_ca=True), host()), host())
    forgotten = replace(ca_policy("registry.test"), registry_ca_missing=True)
    plan = plan_docker(forgotten, installed)
    registry_ca = f"{CERTS_DIR}/registry.test/trust-agent-registry-ca.crt"
    assert plan.blockers == (
        f"this host holds trust-agent's registry CA ({registry_ca}), and no registry CA is given: it is kept, "
        "as removing it would fail every pull if the registry's certificate is from a private CA. Give the CA "
        "with --registry-ca FILE, or --no-registry-ca if the registry's certificate is publicly trusted now",
    )
    # The blocked plan's reasons agree with its outcome: the file is kept, so no removal is listed.
    assert registry_ca not in by_path(plan)
    assert not [r for r in plan.reasons if "trust-agent-registry-ca.crt: remove" in r], plan.reasons
    # Said on purpose (--no-registry-ca): removed.
    told = plan_docker(ca_policy("registry.test"), installed)
    assert told.blockers == () and by_path(told)[registry_ca].action == "delete"
    # A host that never had one: nothing to keep.
    assert plan_docker(forgotten, host()).blockers == ()


def test_a_byte_order_mark_is_refused_where_the_engine_cannot_read_one() -> None:
    raw = b'\xef\xbb\xbf{\n  "debug": true\n}\n'
    old = host(daemon_json=raw, engine_version="20.10.24", has_validate=False)
    bom = (
        "/etc/docker/daemon.json starts with a UTF-8 byte order mark, which dockerd 20.10.24 cannot read "
        "(it would not start or reload): remove those three bytes"
    )
    assert plan_docker(insecure_policy("registry.test"), old).blockers == (bom,)
    assert bom in plan_docker(ca_policy("registry.test"), old).warnings  # nothing to write: said anyway
    new = host(daemon_json=raw, engine_version="26.1.5", has_validate=True)  # reads it (and validates)
    skip = plan_docker(insecure_policy("registry.test"), new)
    assert skip.blockers == () and not any("byte order mark" in w for w in skip.warnings)
    assert by_path(skip)[DAEMON_JSON].after.startswith(b"\xef\xbb\xbf")  # type: ignore[union-attr]


def test_secrets_of_other_tools_in_daemon_json_never_show_in_a_diff() -> None:
    raw = (
        b'{\n  "log-driver": "splunk",\n'
        b'  "log-opts": {"splunk-url": "https://splunk.example:8088", "splunk-token": "SPLUNK-TOKEN-123"},\n'
        b'  "proxies": {"http-proxy": "http://user:PROXYPASS@proxy:3128"}\n}\n'
    )
    diff = by_path(plan_docker(insecure_policy("registry.test"), host(daemon_json=raw)))[DAEMON_JSON].diff()
    assert '"splunk-token": "***"' in diff and "SPLUNK-TOKEN-123" not in diff
    assert "http://***@proxy:3128" in diff and "PROXYPASS" not in diff
    assert '+  "insecure-registries": [' in diff


def test_a_url_password_holding_at_or_slash_is_redacted_whole() -> None:
    # The userinfo runs to the last '@' of the authority (Go's split); a '/' in it ends no URL here.
    raw = (
        b'{\n  "proxies": {"http-proxy": "http://proxyuser:PROXYP@SS@proxy.example:3128", '
        b'"https-proxy": "http://u:PW/X@proxy:3128", "no-proxy": "a@b.test"},\n'
        b'  "registry-mirrors": ["https://mirror.example/users/@me", "http://mirror.example:5000"]\n}\n'
    )
    diff = by_path(plan_docker(insecure_policy("registry.test"), host(daemon_json=raw)))[DAEMON_JSON].diff()
    proxies = (
        '"http-proxy": "http://***@proxy.example:3128", "https-proxy": "http://***@proxy:3128", '
        '"no-proxy": "a@b.test"'
    )
    assert proxies in diff  # the JSON after each URL is left as it is
    assert not any(part in diff for part in ("PROXYP", "SS@", "PW", "X@", "proxyuser", "u:"))
    assert '["https://mirror.example/users/@me", "http://mirror.example:5000"]' in diff  # no userinfo


def test_half_a_client_pair_in_a_registry_directory_is_warned_of() -> None:
    """A client.cert without client.key makes dockerd fail every pull from that registry (fact 6):
    verify said unchanged, exit 0, while no pull worked."""
    certs = {"registry.test/client.cert": b"", "registry.test/ca.crt": b"", "other.test/lone.key": b""}
    plan = plan_docker(ca_policy("registry.test"), host(certs=certs))
    assert (
        "certs.d/registry.test/client.cert has no client.key beside it: dockerd fails every pull from "
        "registry.test (fact 6); add the other half or remove it"
    ) in plan.warnings
    assert not [w for w in plan.warnings if "other.test" in w]  # not a registry of the policy's
    paired = {**certs, "registry.test/client.key": b""}
    assert not [
        w for w in plan_docker(ca_policy("registry.test"), host(certs=paired)).warnings if "fact 6" in w
    ]


def _daemon_status(fingerprint: str | None, state: str = "ok") -> bytes:
    policy = None if fingerprint is None else {"fingerprint": fingerprint, "registries": ["registry.test"]}
    return json.dumps({"version": 1, "state": state, "policy": policy}).encode()


def test_a_host_whose_daemon_keeps_another_policy_is_warned_of_and_its_own_is_not() -> None:
    policy = ca_policy("registry.test")
    facts = DockerFacts(daemon_json=b"{}\n", daemon_status=_daemon_status("0123456789abcdef"))
    warned = [w for w in plan_docker(policy, facts).warnings if w.startswith("trust-agent's daemon runs")]
    assert len(warned) == 1 and "(0123456789abcdef)" in warned[0] and "daemon install" in warned[0]
    for status in (
        _daemon_status(policy.fingerprint()),  # the daemon's own run, or a rollout of the same policy
        _daemon_status("0123456789abcdef", state="stopped"),  # nothing will put it back
        _daemon_status(None),  # no policy kept yet
        b"not json",
        None,
    ):
        plan = plan_docker(policy, replace(facts, daemon_status=status))
        assert not [w for w in plan.warnings if w.startswith("trust-agent's daemon runs")], status


from agent.runtimes.docker import RestartPolicy, does_not_comply  # noqa: E402

# --- who can write the agent's CA files, and a person's insecure entry in CA mode -------------------------

STORAGE_REL = f"registry.test/{STORAGE_CRT}"
SAFE = (0, 0o644)


def converged_with_owners(owners: dict[str, tuple[int, int]]) -> DockerFacts:
    """A host holding the policy's CA file, with the owner and mode the gather read for each path."""
    facts = converge(ca_policy("registry.test"), host())
    return replace(facts, cert_owners={"registry.test": (0, 0o755), STORAGE_REL: SAFE, **owners})


@given(uid=st.sampled_from([0, 1, 65534]), mode=st.integers(min_value=0, max_value=0o7777))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_a_ca_file_another_user_can_write_is_rewritten_and_only_such_a_one(uid: int, mode: int) -> None:
    """Before, a CA file left 0666 or another user's was never drift: verify said "unchanged"."""
    facts = converged_with_owners({STORAGE_REL: (uid, mode)})
    plan = plan_docker(ca_policy("registry.test"), facts)
    unsafe = uid != 0 or bool(mode & 0o022)
    assert plan.blockers == ()
    if not unsafe:
        assert (plan.changes, plan.engine_action) == ((), "none")
        return
    (change,) = plan.changes
    path = f"{CERTS_DIR}/{STORAGE_REL}"
    assert (change.path, change.action, change.before, change.after, change.mode) == (
        path,
        "update",
        PEM,
        PEM,
        0o644,
    )
    assert plan.engine_action == "none"  # certs.d is read on every pull (fact 7)
    (reason,) = [r for r in plan.reasons if r.startswith(f"certs.d/{STORAGE_REL}: ")]
    assert "another local user could replace this CA" in reason and reason.endswith(
        "rewritten root:root 0644"
    )
    assert (f"owned by uid {uid}, not root" in reason) == (uid != 0)
    assert (f"mode {mode:04o}" in reason) == bool(mode & 0o022)
    # Rewritten, it is root's 0644: nothing more to do.
    assert not plan_docker(ca_policy("registry.test"), facts_after(plan, facts)).changed


def test_a_ca_file_whose_bundle_changed_and_that_others_can_write_says_both() -> None:
    facts = converged_with_owners({STORAGE_REL: (0, 0o666)})
    plan = plan_docker(ca_policy("registry.test", pem=PEM2), facts)
    (change,) = plan.changes
    assert (change.before, change.after) == (PEM, PEM2)
    said = [r for r in plan.reasons if r.startswith(f"certs.d/{STORAGE_REL}: ")]
    assert len(said) == 2 and "(bundle changed: " in said[0]
    assert "mode 0666 (group- and other-writable)" in said[1]


def test_a_directory_of_the_ca_files_others_can_write_is_warned_of_or_blocks_a_write_into_it() -> None:
    """The apply refuses to write in such a directory; with nothing to write there, its mode was not
    drift: verify said "unchanged" while any user could replace the CA files in it."""
    policy = ca_policy("registry.test")
    says = (
        "certs.d/registry.test/ is mode 0777 (group- and other-writable): another local user could "
        "replace the CA files dockerd trusts for registry.test; make it root's alone (chown root:root, "
        "chmod 0755)"
    )
    facts = converged_with_owners({"registry.test": (0, 0o777)})
    plan = plan_docker(policy, facts)
    assert (plan.changes, plan.blockers) == ((), ())
    assert says in plan.warnings
    assert does_not_comply(policy, facts) == (says,)
    # A file to write there: the host is refused before anything is written, saying what to do.
    written = plan_docker(policy, replace(facts, cert_owners={**facts.cert_owners, STORAGE_REL: (0, 0o666)}))
    assert written.blockers == (f"{says}, then run again (nothing written)",)
    owned = converged_with_owners({"registry.test": (1000, 0o755)})
    assert does_not_comply(policy, owned) == (
        says.replace("mode 0777 (group- and other-writable)", "owned by uid 1000, not root"),
    )
    assert does_not_comply(policy, converged_with_owners({})) == ()


CERTS_DIR_UNSAFE = (
    "/etc/docker/certs.d is writable by a user other than root: trust-agent does not write there (make it "
    "root's alone: chown root, chmod go-w)"
)


def test_certs_d_itself_the_apply_refuses_blocks_a_write_there_and_fails_verify_where_its_cas_are() -> None:
    """The gather had refused such a host whatever its plan, a skip-TLS one that writes nothing there
    included; plan and verify had said "pending" before that."""
    policy = ca_policy("registry.test")
    fresh = plan_docker(policy, replace(host(), certs_dir_problem=CERTS_DIR_UNSAFE))
    assert fresh.blockers == (f"{CERTS_DIR_UNSAFE}, then run again (nothing written)",)
    converged = replace(converged_with_owners({}), certs_dir_problem=CERTS_DIR_UNSAFE)
    plan = plan_docker(policy, converged)
    assert (plan.changes, plan.blockers) == ((), ())
    assert CERTS_DIR_UNSAFE in plan.warnings
    assert does_not_comply(policy, converged) == (CERTS_DIR_UNSAFE,)
    # dockerd reads no certs.d directory for an insecure registry: nothing to say there.
    skip = insecure_policy("registry.test")
    skipped = replace(converge(skip, host()), certs_dir_problem=CERTS_DIR_UNSAFE)
    assert plan_docker(skip, skipped).blockers == ()
    assert CERTS_DIR_UNSAFE not in plan_docker(skip, skipped).warnings
    assert does_not_comply(skip, skipped) == ()


def test_a_flag_only_the_units_next_start_gives_is_no_reason_to_reload() -> None:
    """An --insecure-registry in docker.service's EnvironmentFile, the unit reloaded but dockerd not
    restarted: the plan read it as in force, said "dockerd runs an older daemon.json" and reloaded,
    and the rollout then waited 20 s for a list a reload never gives and rolled the CA files back."""
    unit = ("-H", "fd://", "--insecure-registry=registry.test")
    running = ("-H", "fd://")
    facts = host(dockerd_flags=unit, unit_flags=unit, running_flags=running, daemon_json=b'{"debug": true}')
    plan = plan_docker(ca_policy("registry.test"), facts, live_insecure={"registry.test": False})
    assert plan.engine_action == "none" and BEHIND not in plan.reasons, plan.reasons
    assert facts.flags_after("reload") == running and facts.flags_after("restart") == unit
    # In force in the running dockerd, the same flag is what the live list shows: nothing behind.
    running_too = replace(facts, running_flags=unit)
    assert plan_docker(
        ca_policy("registry.test"), running_too, live_insecure={"registry.test": True}
    ).engine_action == ("none")


PERSONS_ENTRY = (
    "daemon.json lists registry.test:443 in insecure-registries (not trust-agent's entry) though the "
    "policy verifies its TLS: remove it by hand, then run again"
)


def test_a_persons_unloaded_insecure_entry_for_a_ca_policys_registry_is_never_loaded_by_a_reload() -> None:
    """Before, the planner saw "dockerd runs an older daemon.json" and reloaded: dockerd then stopped
    verifying the registry's TLS, and the rollout reported success."""
    policy = ca_policy("registry.test", "registry.test:443")
    facts = converge(policy, host())
    person = json.dumps({"insecure-registries": ["registry.test:443"]}).encode()
    facts = replace(facts, daemon_json=person)
    live = {"registry.test": False, "registry.test:443": False}
    forcing: tuple[RestartPolicy, ...] = ("auto", "reload", "restart")
    for restart_policy in forcing:
        plan = plan_docker(policy, facts, live_insecure=live, restart_policy=restart_policy)
        assert [b for b in plan.blockers if b.startswith(PERSONS_ENTRY)] == [
            PERSONS_ENTRY
            + " (a reload would load it and stop dockerd verifying that registry; nothing written)"
        ], (restart_policy, plan.blockers)
    # Loaded already: no reload, the entry stays, named as staying.
    loaded = plan_docker(policy, facts, live_insecure={**live, "registry.test:443": True})
    assert (loaded.blockers, loaded.engine_action) == ((), "none")
    assert any("registry.test:443 stays in insecure-registries" in w for w in loaded.warnings)
    # The agent's own entry, left from skip-TLS, is still removed and reloaded away.
    skip = converge(insecure_policy("registry.test"), host())
    back = plan_docker(ca_policy("registry.test"), skip, live_insecure={"registry.test": True})
    assert (back.blockers, back.engine_action) == ((), "reload")


@pytest.mark.parametrize(
    ("facts_change", "live", "where"),
    [
        (
            {"daemon_json": b'{"insecure-registries": ["http://registry.test"]}'},
            False,
            "daemon.json lists it",
        ),
        ({"dockerd_flags": ("--insecure-registry=registry.test",)}, True, "dockerd's command line has"),
        ({}, True, "the running dockerd has it insecure"),
    ],
)
def test_a_ca_policys_registry_insecure_anywhere_does_not_comply(
    facts_change: dict[str, Any], live: bool, where: str
) -> None:
    policy = ca_policy("registry.test")
    facts = replace(converge(policy, host()), **facts_change)
    (said,) = does_not_comply(policy, facts, {"registry.test": live})
    assert said.startswith(f"registry.test: {where}") and "though the policy verifies its TLS" in said
    # Skip-TLS asks for it insecure; a secure registry complies.
    assert does_not_comply(insecure_policy("registry.test"), facts, {"registry.test": live}) == ()
    assert does_not_comply(policy, converge(policy, host()), {"registry.test": False}) == ()


def test_insecure_registries_given_twice_is_said_and_merged_as_dockerd_reads_it() -> None:
    """dockerd reads the last of a repeated key (Go's encoding/json into a map, then its config struct):
    the plan said nothing, and the rewrite dropped the first."""
    raw = b'{\n  "insecure-registries": ["old.test"],\n  "insecure-registries": ["kept.test"]\n}\n'
    plan = plan_docker(insecure_policy("registry.test"), host(daemon_json=raw))
    (said,) = [w for w in plan.warnings if "insecure-registries 2 times" in w]
    assert said.startswith(f"{DAEMON_JSON} gives insecure-registries 2 times: dockerd reads only the last")
    assert '(["kept.test"]) and ignores the others (["old.test"])' in said
    (change,) = [c for c in plan.changes if c.path == DAEMON_JSON]
    assert change.after == raw.replace(b'["kept.test"]', b'["kept.test", "registry.test"]')
    # Converged on the last: nothing to write, and still said.
    settled = plan_docker(insecure_policy("kept.test"), host(daemon_json=raw))
    assert not [c for c in settled.changes if c.path == DAEMON_JSON]
    assert any("insecure-registries 2 times" in w for w in settled.warnings)


def test_half_a_client_pair_fails_verify_where_dockerd_reads_the_directory() -> None:
    """verify exited 0 while trust-agent's own warning said every pull failed (fact 6). dockerd reads
    certs.d only for a registry it verifies (moby newTLSConfig): skip-TLS does not fail the host."""
    certs = {"registry.test/client.cert": b"", "other.test/lone.key": b""}
    facts = replace(converge(ca_policy("registry.test"), host()), certs=certs)
    assert does_not_comply(ca_policy("registry.test"), facts, {"registry.test": False}) == (
        "certs.d/registry.test/client.cert has no client.key beside it: dockerd fails every pull from "
        "registry.test (fact 6); add the other half or remove it",
    )
    assert does_not_comply(insecure_policy("registry.test"), facts, {"registry.test": True}) == ()
    paired = replace(facts, certs={**certs, "registry.test/client.key": b""})
    assert does_not_comply(ca_policy("registry.test"), paired, {"registry.test": False}) == ()


# --- flags that already give the insecure list ------------------------------------------------------

BOTH = ("registry.test", "registry.test:443")
X2 = "docker.service drop-in /etc/systemd/system/docker.service.d/x2.conf"


def flagged(*names: str) -> tuple[str, ...]:
    flags = ["-H", "fd://", "--containerd=/run/containerd/containerd.sock"]
    for name in names:
        flags += ["--insecure-registry", name]
    return tuple(flags)


def test_registries_the_flags_make_insecure_are_held_and_not_written() -> None:
    """dockerd runs with both names insecure by flags and pulls work; trust-agent failed the host on
    every run, as adding the names to daemon.json beside the flags would stop dockerd (fact 13)."""
    facts = host(daemon_json=b'{\n  "debug": true\n}\n', dockerd_flags=flagged(*BOTH), flags_source=X2)
    live = dict.fromkeys(BOTH, True)
    plan = plan_docker(insecure_policy(*BOTH), facts, live_insecure=live)
    assert (plan.blockers, plan.engine_action) == ((), "none")
    assert DAEMON_JSON not in by_path(plan)
    converge(insecure_policy(*BOTH), facts, live_insecure=live)


@given(covered=st.sets(st.sampled_from(BOTH)), spelled=st.sampled_from(["{}", "http://{}", "{}"]))
def test_only_a_name_the_flags_leave_out_blocks_and_it_is_named_as_before(
    covered: set[str], spelled: str
) -> None:
    facts = host(dockerd_flags=flagged(*(spelled.format(n) for n in sorted(covered))), flags_source=X2)
    plan = plan_docker(insecure_policy(*BOTH), facts)
    assert DAEMON_JSON not in by_path(plan) or set(BOTH) - covered
    if covered == set(BOTH):
        assert plan.blockers == () and not plan.changed
    elif covered:
        assert plan.blockers == (
            f"{X2} sets --insecure-registry; the same directive (insecure-registries) in daemon.json "
            "would stop dockerd (fact 13)",
        )
        (change,) = [c for c in plan.changes if c.path == DAEMON_JSON]
        assert json.loads(change.after)["insecure-registries"] == sorted(set(BOTH) - covered)


# --- the agent's own empty list and a flag added later -----------------------------------------------


def skipped_then_verified(flags: tuple[str, ...] = ()) -> DockerFacts:
    """A host taken to skip-TLS and back to a CA: daemon.json keeps the agent's ``[]`` (fact 11)."""
    facts = converge(insecure_policy(*BOTH), host(daemon_json=b'{\n  "debug": true\n}\n'))
    facts = converge(ca_policy(*BOTH), facts)
    assert json.loads(facts.daemon_json or b"")["insecure-registries"] == []
    return replace(facts, dockerd_flags=flags, flags_source="/etc/default/docker" if flags else None)


def test_the_record_notes_the_agents_own_empty_list_after_its_entries() -> None:
    """The note's place and spelling in the record: a record another version wrote must read the same."""
    facts = skipped_then_verified()
    dirs = ",\n".join(f'    "{CERTS_DIR}/{r}"' for r in BOTH)
    assert (
        facts.state
        == (
            '{\n  "version": 1,\n  "insecure_registries": [],\n  "cert_dirs": [\n'
            f'{dirs}\n  ],\n  "empty_insecure_list": true\n}}\n'
        ).encode()
    )
    # Only a valid record's note counts: one in a record of another version is not trust-agent's.
    assert facts.state is not None
    unknown = replace(
        facts, state=facts.state.replace(b'"version": 1', b'"version": 2'), dockerd_flags=(FLAG,)
    )
    assert DAEMON_JSON not in by_path(plan_docker(ca_policy(*BOTH), unknown))
    assert DAEMON_JSON in by_path(plan_docker(ca_policy(*BOTH), replace(unknown, state=facts.state)))


@given(
    entries=st.lists(st.sampled_from(BOTH), unique=True),
    mine=st.booleans(),
)
def test_the_record_reads_back_as_it_was_written(entries: list[str], mine: bool) -> None:
    state = DockerState(insecure_registries=tuple(entries), cert_dirs=(f"{CERTS_DIR}/registry.test",))
    loaded = parse_state(render_state(state, empty_list_mine=mine), STATE_FILE)
    assert (loaded.state, loaded.valid, loaded.empty_list_mine) == (state, True, mine)


def test_the_agents_own_empty_list_goes_where_a_flag_now_gives_the_directive() -> None:
    """dockerd will not start with a flag and the key ("from file: []"); the rollout said unchanged and
    kept the [] it wrote. It takes it out, and reloads (the live list is the flags')."""
    facts = skipped_then_verified(("--insecure-registry=legacy.example.com:5000",))
    plan = plan_docker(ca_policy(*BOTH), facts, live_insecure=dict.fromkeys(BOTH, False))
    assert plan.blockers == () and plan.engine_action == "reload"
    change = by_path(plan)[DAEMON_JSON]
    assert change.after == b'{\n  "debug": true\n}\n'
    assert (
        "daemon.json: remove the empty insecure-registries trust-agent wrote (fact 11): /etc/default/docker "
        "sets --insecure-registry now, and dockerd refuses the directive in both places (fact 13); the "
        "flags give the list"
    ) in plan.reasons
    assert not [w for w in plan.warnings if "would stop dockerd" in w]
    after = converge(ca_policy(*BOTH), facts, live_insecure=dict.fromkeys(BOTH, False))
    assert after.daemon_json == b'{\n  "debug": true\n}\n'
    # Without the flag, the [] stays (fact 11); a person's [] stays even with one, as before (warned).
    assert not plan_docker(ca_policy(*BOTH), skipped_then_verified()).changed
    persons = replace(facts, state=None, daemon_json=b'{"insecure-registries": []}')
    plan = plan_docker(ca_policy(*BOTH), persons)
    assert DAEMON_JSON not in by_path(plan)
    assert any(w.startswith("daemon.json as it is: ") for w in plan.warnings)


# --- a daemon.json that is not UTF-8 -----------------------------------------------------------------

LATIN1 = b'{\n  "labels": ["owner=Jos\xe9 Mu\xf1oz"],\n  "debug": true\n}\n'


def test_a_daemon_json_docker_20_10_reads_though_it_is_not_utf8_is_changed_keeping_its_bytes() -> None:
    """Docker 20.10 runs a daemon.json with Latin-1 bytes in a label; trust-agent refused it on every
    engine ("dockerd will not start or reload with it"). Docker 23.0 and later do refuse it."""
    old = host(daemon_json=LATIN1, engine_version="20.10.24+dfsg1", has_validate=False)
    plan = plan_docker(insecure_policy("registry.test"), old)
    assert plan.blockers == ()
    assert by_path(plan)[DAEMON_JSON].after == LATIN1.replace(
        b'"debug": true\n', b'"debug": true,\n  "insecure-registries": [\n    "registry.test"\n  ]\n'
    )
    assert (
        "/etc/docker/daemon.json is not UTF-8 (byte 25): dockerd 20.10.24+dfsg1 reads it (each such byte as "
        'U+FFFD), but Docker 23.0 and later refuse it ("invalid UTF-8") and would not start: save it as '
        "UTF-8 before an upgrade; trust-agent keeps those bytes as they are"
    ) in plan.warnings
    back = converge(ca_policy("registry.test"), converge(insecure_policy("registry.test"), old))
    assert back.daemon_json == LATIN1.replace(
        b'"debug": true\n', b'"debug": true,\n  "insecure-registries": []\n'
    )

    new = host(daemon_json=LATIN1, engine_version="26.1.5", has_validate=True)
    refused = (
        '/etc/docker/daemon.json: not UTF-8 (byte 25), which dockerd 26.1.5 refuses ("invalid UTF-8": '
        "Docker 23.0 and later do; 20.10 reads it): save it as UTF-8"
    )
    assert plan_docker(insecure_policy("registry.test"), new).blockers == (refused,)
    assert any(w.startswith(refused) for w in plan_docker(ca_policy("registry.test"), new).warnings)


@given(
    label=st.binary(min_size=1, max_size=12).map(
        lambda b: bytes(c for c in b if c >= 0x20 and c not in b'"\\')
    )
)
def test_any_bytes_in_a_string_stay_byte_for_byte_on_docker_20_10(label: bytes) -> None:
    raw = b'{"labels": ["' + label + b'"], "debug": true}\n'
    old = host(daemon_json=raw, engine_version="20.10.24", has_validate=False)
    plan = plan_docker(insecure_policy("registry.test"), old)
    assert plan.blockers == ()
    assert by_path(plan)[DAEMON_JSON].after == raw.replace(
        b"true}", b'true, "insecure-registries": ["registry.test"]}'
    )


def test_the_reasons_name_the_config_file_dockerd_is_given() -> None:
    other = "/etc/docker/other.json"
    facts = host(daemon_json_path=other, daemon_json=b"{}\n", dockerd_flags=("--config-file", other))
    plan = plan_docker(insecure_policy("registry.test"), facts)
    assert plan.blockers == ()
    assert f"{other}: add registry.test to insecure-registries (skip-TLS, fact 9)" in plan.reasons
    assert not [r for r in plan.reasons if r.startswith("daemon.json")]
    assert (
        "daemon.json: add registry.test to insecure-registries (skip-TLS, fact 9)"
        in plan_docker(insecure_policy("registry.test"), host()).reasons
    )


def test_half_a_client_pair_is_worded_for_a_registry_dockerd_reads_no_certs_d_for() -> None:
    """On a skip-TLS host the warning said "dockerd fails every pull", while dockerd reads no certs.d
    directory for an insecure registry (moby registry newTLSConfig) and its pulls work."""
    certs = {"registry.test/client.cert": b""}
    plan = plan_docker(insecure_policy("registry.test"), host(certs=certs))
    assert (
        "certs.d/registry.test/client.cert has no client.key beside it: dockerd ignores certs.d/registry.test/ "
        "while registry.test is insecure, so pulls work now, but once its TLS is verified again dockerd "
        "fails every pull from registry.test (fact 6); add the other half or remove it"
    ) in plan.warnings
    assert not [w for w in plan.warnings if "beside it: dockerd fails every pull" in w], plan.warnings


# --- order and hand edits of the agent's own entries -------------------------------------------------


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(order=st.permutations(["mirror.local:5000", *BOTH]))
def test_a_reordered_insecure_list_is_no_change_and_keeps_the_record(order: list[str]) -> None:
    """A person reversing the agent's entries in daemon.json made verify say "pending" with no reason,
    and the next rollout rewrote only the record in the new order."""
    facts = converge(
        insecure_policy(*BOTH), host(daemon_json=b'{"insecure-registries": ["mirror.local:5000"]}')
    )
    reordered = replace(facts, daemon_json=json.dumps({"insecure-registries": order}).encode())
    plan = plan_docker(insecure_policy(*BOTH), reordered)
    assert (plan.changes, plan.mkdirs, plan.rmdirs, plan.reasons) == ((), (), (), ())
    assert not plan.changed


def test_a_record_written_in_another_order_is_kept_as_it_is() -> None:
    facts = converge(insecure_policy(*BOTH), host())
    record = render_state(DockerState(insecure_registries=BOTH[::-1]))
    plan = plan_docker(insecure_policy(*BOTH), replace(facts, state=record))
    assert not plan.changed, plan.changes


def test_the_agents_empty_list_removed_by_hand_is_forgotten_with_a_reason() -> None:
    """The record's note that daemon.json's [] is the agent's: dropped once the [] is gone, and said,
    so that a person's [] written later is never taken for the agent's (and removed for a flag)."""
    facts = skipped_then_verified()
    removed = replace(facts, daemon_json=b'{\n  "debug": true\n}\n')
    plan = plan_docker(ca_policy(*BOTH), removed)
    assert [c.path for c in plan.changes] == [STATE_FILE]
    assert plan.reasons == (
        "daemon.json: the empty insecure-registries trust-agent wrote is gone (changed by hand): its "
        "record forgets it, so an empty list written there later is taken as a person's",
    )
    after = converge(ca_policy(*BOTH), removed)
    assert "empty_insecure_list" not in state_of(after)
    # A person's [] now: theirs, kept where a flag comes (a conflict said, not the list removed).
    persons = replace(after, daemon_json=facts.daemon_json, dockerd_flags=(FLAG,), flags_source="x")
    assert DAEMON_JSON not in by_path(plan_docker(ca_policy(*BOTH), persons))


def test_the_agents_empty_list_still_there_says_nothing() -> None:
    facts = skipped_then_verified()
    plan = plan_docker(ca_policy(*BOTH), facts)
    assert (plan.changes, plan.reasons) == ((), ())


def reads(facts: DockerFacts) -> tuple[Any, ...]:
    """What dockerd reads of the host's trust: daemon.json and certs.d, not the agent's record."""
    return facts.daemon_json, dict(facts.certs), facts.cert_dirs


@pytest.mark.parametrize("live", [None, dict.fromkeys(BOTH, False)])
def test_the_agents_empty_list_removed_by_hand_changes_only_the_record(
    live: dict[str, bool] | None,
) -> None:
    """dockerd loaded the agent's [] and a person then removed the key: a reload keeps the live list,
    empty, where the key is missing (fact 11), so dockerd reads what the policy wants. verify said
    "pending" (exit 1) and rollout "changed" with 0 files for the record's own note."""
    facts = skipped_then_verified()
    removed = replace(facts, daemon_json=b'{\n  "debug": true\n}\n')
    plan = plan_docker(ca_policy(*BOTH), removed, live_insecure=live)
    assert only_the_record(plan), plan
    assert reads(facts_after(plan, removed)) == reads(removed)


def test_a_stale_live_list_after_the_empty_list_went_is_more_than_the_record() -> None:
    """The [] removed before dockerd loaded it: dockerd still lists the registries as insecure, and a
    reload keeps that list where the key is missing (fact 11): the host needs [] and a reload."""
    removed = replace(skipped_then_verified(), daemon_json=b'{\n  "debug": true\n}\n')
    plan = plan_docker(ca_policy(*BOTH), removed, live_insecure=dict.fromkeys(BOTH, True))
    assert not only_the_record(plan)
    assert (plan.engine_action, [c.path for c in plan.visible_changes]) == ("reload", [DAEMON_JSON])


def test_a_flag_beside_the_agents_empty_list_is_more_than_the_record() -> None:
    """A --insecure-registry flag set since: the agent's [] goes from daemon.json (fact 13), a change
    dockerd reads at its next start, not bookkeeping."""
    plan = plan_docker(ca_policy(*BOTH), skipped_then_verified(flags=(FLAG,)))
    assert DAEMON_JSON in by_path(plan) and not only_the_record(plan)


@pytest.mark.parametrize(
    "plan",
    [
        HostPlan(),
        HostPlan(changes=(FileChange(DAEMON_JSON, "update", b"{}", b"{ }"),)),
        HostPlan(changes=(FileChange(STATE_FILE, "update", b"{}", b"{ }", internal=True),), rmdirs=("/x",)),
        HostPlan(changes=(FileChange(STATE_FILE, "create", None, b"{}", internal=True),), mkdirs=("/x",)),
        HostPlan(
            changes=(FileChange(STATE_FILE, "update", b"{}", b"{ }", internal=True),), engine_action="reload"
        ),
    ],
)
def test_a_plan_that_writes_or_does_more_than_the_record_is_not_record_only(plan: HostPlan) -> None:
    assert not only_the_record(plan)


def test_the_record_and_its_own_directory_are_record_only() -> None:
    record = FileChange(STATE_FILE, "create", None, b"{}", internal=True)
    assert only_the_record(HostPlan(changes=(record,), mkdirs=(posixpath.dirname(STATE_FILE),)))


def hand_edited(facts: DockerFacts, edit: str) -> DockerFacts:
    """``facts`` after a person's edit: daemon.json's insecure-registries key or the agent's record gone."""
    if edit == "drop-key" and facts.daemon_json is not None:
        kept = {k: v for k, v in json.loads(facts.daemon_json).items() if k != "insecure-registries"}
        return replace(facts, daemon_json=(json.dumps(kept, indent=2) + "\n").encode())
    if edit == "drop-record":
        return replace(facts, state=None)
    return facts


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=daemon_docs(),
    files=foreign_files,
    registries=st.lists(registry_names, unique=True, min_size=1, max_size=3),
    then=policies(),
    edit=st.sampled_from(["none", "drop-key", "drop-record"]),
    insecure_live=st.sampled_from([None, False, True]),
)
def test_a_record_only_plan_leaves_every_file_dockerd_reads_as_it_is(
    doc: tuple[bytes | None, list[str], list[tuple[str, Any]]],
    files: dict[str, bytes],
    registries: list[str],
    then: TrustPolicy,
    edit: str,
    insecure_live: bool | None,
) -> None:
    """Skip-TLS, then any policy, then a person's edit: a plan said to write only the agent's record
    writes nothing dockerd reads and asks no reload, so reporting its host unchanged is true."""
    facts = host(daemon_json=doc[0], certs=files, cert_dirs=frozenset(rel.partition("/")[0] for rel in files))
    for policy in (insecure_policy(*registries), then):
        plan = plan_docker(policy, facts)
        facts = facts if plan.blockers else facts_after(plan, facts)
    facts = hand_edited(facts, edit)
    live = None if insecure_live is None else dict.fromkeys(registries, insecure_live)
    plan = plan_docker(then, facts, live_insecure=live)
    if only_the_record(plan):
        assert plan.engine_action == "none" and not plan.visible_changes
        assert reads(facts_after(plan, facts)) == reads(facts)


# --- a changed CA file names the certificates -------------------------------------------------------


def test_a_changed_ca_file_names_the_certificates_added_and_removed() -> None:
    """A person's overwrite and a rotation both said only "(bundle changed)" over base64 diffs."""
    storage, other = make_ca("Lab Storage CA")[0], make_ca("Someone Else CA")[0]
    keep = make_ca("Kept CA")[0]
    rel = f"registry.test/{STORAGE_CRT}"
    facts = host(certs={rel: other + keep}, cert_dirs=frozenset({"registry.test"}))
    plan = plan_docker(ca_policy("registry.test", pem=storage + keep), facts)
    assert plan.reasons[:1] == (
        f"certs.d/{rel}: storage CA for the redirect to 198.51.100.11:9000 (fact 4) (bundle changed: "
        f"adds CN=Lab Storage CA (sha256 {sha256_of(storage)[:23]}); "
        f"removes CN=Someone Else CA (sha256 {sha256_of(other)[:23]}))",
    )


def test_a_ca_file_differing_only_around_its_certificates_says_so() -> None:
    storage = make_ca("Lab Storage CA")[0]
    rel = f"registry.test/{STORAGE_CRT}"
    facts = host(certs={rel: b"# a comment\n" + storage}, cert_dirs=frozenset({"registry.test"}))
    reason = plan_docker(ca_policy("registry.test", pem=storage), facts).reasons[0]
    assert reason.endswith(
        "(bundle changed: no certificate added or removed (only the text around them differs))"
    )


# --- the same CAs in another order -----------------------------------------------------------------

# Four real CAs, made once: a bundle is some of them, in some order.
POOL = tuple(make_ca(f"Order CA {n}")[0] for n in range(4))
# What may lie around and inside a certificate's PEM lines without changing it: whitespace alone.
PEM_SPACE = st.sampled_from([b"", b"\n", b"\r\n", b"\n\n", b"  \n", b"\t"])


def _rewrapped(pem: bytes, wrap: int) -> bytes:
    """``pem`` with its base64 lines wrapped at ``wrap`` characters: the same certificate."""
    head, *body, tail = pem.strip().split(b"\n")
    joined = b"".join(body)
    lines = [joined[i : i + wrap] for i in range(0, len(joined), wrap)]
    return b"\n".join([head, *lines, tail]) + b"\n"


@settings(max_examples=40, deadline=None)
@given(
    chosen=st.lists(st.sampled_from(range(len(POOL))), min_size=2, max_size=len(POOL), unique=True),
    order=st.randoms(use_true_random=False),
    around=st.lists(PEM_SPACE, min_size=len(POOL) + 1, max_size=len(POOL) + 1),
    wrap=st.sampled_from([64, 76, 40]),
)
def test_the_same_cas_in_any_order_are_no_change(
    chosen: list[int], order: Any, around: list[bytes], wrap: int
) -> None:
    """``--storage-ca a --storage-ca b`` and ``--storage-ca b --storage-ca a``: verify said the file was
    pending ("only the text around them differs") and each order's rollout rewrote the other's."""
    given_order = [POOL[i] for i in chosen]
    on_host = list(given_order)
    order.shuffle(on_host)
    held = around[0] + b"".join(
        _rewrapped(pem, wrap) + gap for pem, gap in zip(on_host, around[1:], strict=False)
    )
    rel = f"registry.test/{STORAGE_CRT}"
    facts = converge(ca_policy("registry.test", pem=held), host())
    plan = plan_docker(ca_policy("registry.test", pem=b"".join(given_order)), facts)
    assert not plan.changed, plan.reasons
    assert not [r for r in plan.reasons if r.startswith(f"certs.d/{rel}")]


@settings(max_examples=40, deadline=None)
@given(
    held=st.lists(st.sampled_from(range(len(POOL))), min_size=1, max_size=len(POOL), unique=True),
    wanted=st.lists(st.sampled_from(range(len(POOL))), min_size=1, max_size=len(POOL), unique=True),
)
def test_another_set_of_cas_is_a_change_naming_the_certificates(held: list[int], wanted: list[int]) -> None:
    """Whatever the order, a CA gained or lost rewrites the file, and the reason names exactly those."""
    assume(set(held) != set(wanted))
    rel = f"registry.test/{STORAGE_CRT}"
    after = b"".join(POOL[i] for i in wanted)
    facts = host(certs={rel: b"".join(POOL[i] for i in held)}, cert_dirs=frozenset({"registry.test"}))
    plan = plan_docker(ca_policy("registry.test", pem=after), facts)
    change = by_path(plan)[f"{CERTS_DIR}/{rel}"]
    assert (change.action, change.after) == ("update", after)
    (reason,) = [r for r in plan.reasons if r.startswith(f"certs.d/{rel}")]
    said = reason.partition("(bundle changed: ")[2]
    for i in range(len(POOL)):
        named = f"CN=Order CA {i} (sha256 {sha256_of(POOL[i])[:23]})"
        assert (named in said.partition("removes ")[0] and "adds " in said) == (i in wanted and i not in held)
        assert (named in said.partition("removes ")[2]) == (i in held and i not in wanted)


def test_a_ca_file_with_a_certificate_twice_is_still_rewritten() -> None:
    """Only the same certificates, each once, count as no change: a repeated block is not the agent's."""
    a, b = POOL[0], POOL[1]
    rel = f"registry.test/{STORAGE_CRT}"
    facts = host(certs={rel: b + a + b}, cert_dirs=frozenset({"registry.test"}))
    plan = plan_docker(ca_policy("registry.test", pem=a + b), facts)
    assert by_path(plan)[f"{CERTS_DIR}/{rel}"].after == a + b


# --- a purge and the agent's own empty list ----------------------------------------------------------

PERSONS_FILE = b'{"storage-driver":"vfs","iptables":false,"bridge":"none","debug":false}'


def purge(live: tuple[str, ...] | None) -> TrustPolicy:
    """The policy ``daemon uninstall --purge`` reconciles to, with what dockerd listed as insecure."""
    return TrustPolicy(
        registries=(), storage_endpoint=None, storage_scheme=None, purge=True, purge_live_insecure=live
    )


def switched_to_a_ca() -> DockerFacts:
    """A person's daemon.json, taken to skip-TLS and back to a CA: it ends in the agent's ``[]``."""
    facts = converge(insecure_policy(*BOTH), host(daemon_json=PERSONS_FILE))
    facts = converge(ca_policy(*BOTH), facts)
    assert facts.daemon_json == PERSONS_FILE[:-1] + b',"insecure-registries":[]}'
    assert state_of(facts)["empty_insecure_list"] is True
    return facts


def test_a_purge_gives_back_the_persons_daemon_json_where_dockerd_lists_nothing_insecure() -> None:
    """After a purge the record is gone, and the agent's [] was left as if a person had written it."""
    facts = switched_to_a_ca()
    plan = plan_docker(purge(()), facts, live_insecure={})
    assert plan.blockers == () and plan.engine_action == "reload"
    assert by_path(plan)[DAEMON_JSON].after == PERSONS_FILE  # byte for byte, as the person had it
    assert (
        "daemon.json: remove the empty insecure-registries trust-agent wrote (purge): dockerd lists nothing "
        "as insecure, and keeps that list where the key is missing (fact 11)"
    ) in plan.reasons
    after = apply_plan(plan, facts)
    assert "empty_insecure_list" not in state_of(after)
    assert not plan_docker(purge(()), after, live_insecure={}).changed


@pytest.mark.parametrize(
    ("live", "why"),
    [
        (
            ("registry.test", "10.0.0.0/8"),
            "dockerd still lists registry.test, 10.0.0.0/8 as insecure, and a reload keeps that list where "
            "the key is missing (fact 11)",
        ),
        (
            None,
            "dockerd's live insecure list was not read, and removing the key would keep whatever it holds",
        ),
    ],
)
def test_a_purge_keeps_the_agents_empty_list_where_dockerd_may_still_list_something(
    live: tuple[str, ...] | None, why: str
) -> None:
    facts = switched_to_a_ca()
    plan = plan_docker(purge(live), facts, live_insecure={})
    assert DAEMON_JSON not in by_path(plan)
    assert (
        f"daemon.json: the empty insecure-registries trust-agent wrote is kept ({why}); it is yours from now "
        'on: remove "insecure-registries": [] once `systemctl reload docker` has loaded it'
    ) in plan.warnings


def test_a_purge_removes_the_agents_empty_list_where_no_dockerd_runs() -> None:
    """A stopped dockerd reads no list at its next start where the key is missing."""
    facts = replace(switched_to_a_ca(), engine_running=False)
    plan = plan_docker(purge(None), facts)
    assert by_path(plan)[DAEMON_JSON].after == PERSONS_FILE


def test_a_purge_keeps_the_empty_list_its_own_removals_need_and_says_so() -> None:
    """Entries the agent removes in the purge itself: the reload clears them only with the key there."""
    facts = converge(insecure_policy(*BOTH), host(daemon_json=PERSONS_FILE))
    plan = plan_docker(purge(BOTH), facts, live_insecure={})
    assert json.loads(by_path(plan)[DAEMON_JSON].after)["insecure-registries"] == []
    assert any("needs it to clear the entries it removes (fact 11)" in w for w in plan.warnings)


def test_a_rollout_keeps_the_agents_empty_list_as_before() -> None:
    """Only a purge gives the [] back: a rollout keeps it for the next switch (fact 11)."""
    facts = switched_to_a_ca()
    assert not plan_docker(ca_policy(*BOTH), facts, live_insecure=dict.fromkeys(BOTH, False)).changed
    plan = plan_docker(no_trust_policy(*BOTH), facts, live_insecure=dict.fromkeys(BOTH, False))
    assert DAEMON_JSON not in by_path(plan) and by_path(plan)  # its CA files go, the [] stays


# --- a certs.d directory that is a link to another one ----------------------------------------------

REG_CRT = "trust-agent-registry-ca.crt"
LINKED = "registry.test:443"  # `ln -s registry.test certs.d/registry.test:443`: one directory, two names


def linked_spelling(*, recorded: bool = True, pem: bytes = PEM) -> DockerFacts:
    """A host converged on registry.test and registry.test:443, whose :443 directory a person then
    replaced by a link to registry.test: the gather lists the same files under both names."""
    files = {STORAGE_CRT: pem, REG_CRT: REG_PEM}
    dirs = [f"{CERTS_DIR}/registry.test", f"{CERTS_DIR}/{LINKED}"] if recorded else []
    return host(
        certs={f"{d}/{name}": body for d in ("registry.test", LINKED) for name, body in files.items()},
        cert_dirs=frozenset({"registry.test", LINKED}),
        cert_owners={"registry.test": (0, 0o755), LINKED: (0, 0o755)},
        cert_dir_links={LINKED: f"{CERTS_DIR}/registry.test"},
        state=json.dumps({"version": 1, "insecure_registries": [], "cert_dirs": dirs}).encode(),
    )


@pytest.mark.parametrize(
    "policy",
    [
        ca_policy("registry.test:5000", registry_ca=True),
        insecure_policy("registry.test:5000"),
        no_trust_policy(),
    ],
)
def test_a_takeover_removes_a_linked_directorys_files_once_and_keeps_what_the_persons_link_needs(
    policy: TrustPolicy,
) -> None:
    """The plan listed each CA file for deletion twice, once under each name, and said "certs.d/
    registry.test:443/: remove the directory trust-agent created" of a person's link."""
    facts = linked_spelling()
    plan = plan_docker(policy, facts)
    deleted = [c.path for c in plan.changes if c.action == "delete"]
    assert sorted(deleted) == [
        f"{CERTS_DIR}/registry.test/{REG_CRT}",
        f"{CERTS_DIR}/registry.test/{STORAGE_CRT}",
    ]
    # Emptied, the directory stays: removed, it would leave the person's link leading to nothing.
    assert plan.rmdirs == ()
    assert (
        f"certs.d/registry.test/: kept, though empty: removing it would leave certs.d/{LINKED} (a link "
        "to it) leading to nothing; it is yours now (trust-agent no longer counts it as its own)"
    ) in plan.reasons
    assert f"certs.d/{LINKED} (a link to registry.test) is left: it is yours" in plan.reasons
    assert not [r for r in plan.reasons if r.startswith(f"certs.d/{LINKED}/")], plan.reasons
    after = facts_after(plan, facts)
    recorded = state_of(after)["cert_dirs"]  # the record forgets the link and the directory
    assert f"{CERTS_DIR}/{LINKED}" not in recorded and f"{CERTS_DIR}/registry.test" not in recorded
    assert not [
        rel for rel in after.certs if rel.startswith(f"{LINKED}/")
    ]  # its files went with the target's
    again = plan_docker(policy, after)
    assert (again.changes, again.mkdirs, again.rmdirs) == ((), (), ()), again


def test_a_linked_directory_the_plan_does_not_remove_is_still_said_to_be_left_as_the_persons() -> None:
    """A link to a directory outside certs.d where the agent's directory was: never the agent's to remove."""
    facts = replace(
        linked_spelling(),
        certs={f"{LINKED}/ca.crt": b"person's"},
        cert_dirs=frozenset({LINKED}),
        cert_dir_links={LINKED: "/srv/regdir"},
    )
    plan = plan_docker(ca_policy("registry.test:5000", registry_ca=True), facts)
    assert plan.rmdirs == ()
    assert f"certs.d/{LINKED} (a link to /srv/regdir) is left: it is yours" in plan.reasons
    assert state_of(facts_after(plan, facts))["cert_dirs"] == [f"{CERTS_DIR}/registry.test:5000"]


@pytest.mark.parametrize("registries", [("registry.test", LINKED), (LINKED,)])
def test_a_ca_wanted_through_a_link_is_written_once_in_the_directory_it_leads_to(
    registries: tuple[str, ...],
) -> None:
    """A rotation updated one file under two names (the second update's "before" no longer true), and a
    run for registry.test:443 alone deleted registry.test's files, which are the ones it asks for."""
    facts = linked_spelling(recorded=False)
    plan = plan_docker(ca_policy(*registries, pem=PEM2, registry_ca=True), facts)
    files = {c.path: c.action for c in plan.changes if not c.internal}
    assert files == {f"{CERTS_DIR}/registry.test/{STORAGE_CRT}": "update"}
    assert plan.rmdirs == plan.mkdirs == ()
    steady = plan_docker(ca_policy(*registries, registry_ca=True), facts)
    assert (steady.changes, steady.reasons) == ((), ())


@st.composite
def linked_hosts(draw: st.DrawFn) -> tuple[DockerFacts, TrustPolicy]:
    """Converged hosts where some names are links to other names' directories, and a policy for any names."""
    names = ["registry.test", "registry.test:443", "registry.test:5000", "old.test"]
    real = draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    links = draw(
        st.dictionaries(st.sampled_from([n for n in names if n not in real] or ["-"]), st.sampled_from(real))
    )
    links.pop("-", None)
    certs = {f"{d}/{STORAGE_CRT}": PEM for d in real}
    certs.update({f"{link}/{STORAGE_CRT}": PEM for link, target in links.items()})
    recorded = draw(st.lists(st.sampled_from([*real, *links]), unique=True))
    facts = host(
        certs=certs,
        cert_dirs=frozenset([*real, *links]),
        cert_dir_links={link: f"{CERTS_DIR}/{target}" for link, target in links.items()},
        state=json.dumps(
            {"version": 1, "insecure_registries": [], "cert_dirs": [f"{CERTS_DIR}/{d}" for d in recorded]}
        ).encode(),
    )
    asked = draw(st.lists(st.sampled_from(names), unique=True))
    pem = draw(st.sampled_from([PEM, PEM2]))
    return facts, draw(st.sampled_from([ca_policy(*asked, pem=pem), insecure_policy(*asked)]))


@given(linked_hosts())
def test_no_plan_changes_one_file_twice_or_removes_a_link(case: tuple[DockerFacts, TrustPolicy]) -> None:
    facts, policy = case
    plan = plan_docker(policy, facts)
    links = facts.cert_dir_links

    def resolved(path: str) -> str:
        directory, _, name = path.removeprefix(CERTS_DIR + "/").partition("/")
        return f"{links.get(directory, f'{CERTS_DIR}/{directory}')}/{name}"

    touched = [resolved(c.path) for c in plan.changes if not c.internal]
    assert len(touched) == len(set(touched)), plan.changes
    assert not {f"{CERTS_DIR}/{link}" for link in links} & set(plan.rmdirs)
    assert not [r for r in plan.reasons if "remove the directory" in r and r.split("/")[1] in links]


# --- certs.d entries dockerd cannot read, paths that are not directories, an engine that never answers ---

BROKEN = {
    "registry.test/extra.crt": "directory",
    "registry.test/corp.crt": "dangling",
    "other.test/x.key": "special",
}


def test_ca_entries_dockerd_cannot_read_fail_verify_and_are_warned_of() -> None:
    """A directory named extra.crt and a link to nothing in certs.d/registry.test/ fail every pull from it
    (``read ...: is a directory``), yet verify said "unchanged" and exited 0."""
    policy = ca_policy("registry.test")
    facts = replace(converge(policy, host()), cert_entries_broken=BROKEN)
    said = (
        "certs.d/registry.test/corp.crt is a symbolic link to nothing, which dockerd cannot read: dockerd "
        "fails every pull from registry.test; remove it or put the file there",
        "certs.d/registry.test/extra.crt is a directory, which dockerd cannot read: dockerd fails every pull "
        "from registry.test; remove it or put the file there",
    )
    assert does_not_comply(policy, facts, {"registry.test": False}) == said  # other.test: not the policy's
    plan = plan_docker(policy, facts)
    assert set(said) <= set(plan.warnings) and not plan.changed and not plan.blockers


def test_ca_entries_dockerd_cannot_read_are_worded_for_an_insecure_registry_and_do_not_fail_it() -> None:
    """dockerd reads no certs.d directory for an insecure registry (moby registry newTLSConfig)."""
    facts = host(cert_entries_broken={"registry.test/extra.crt": "directory"})
    plan = plan_docker(insecure_policy("registry.test"), facts)
    assert (
        "certs.d/registry.test/extra.crt is a directory, which dockerd cannot read: dockerd ignores "
        "certs.d/registry.test/ while registry.test is insecure, so pulls work now, but once its TLS is "
        "verified again dockerd fails every pull from registry.test; remove it or put the file there"
    ) in plan.warnings
    assert does_not_comply(insecure_policy("registry.test"), facts, {"registry.test": True}) == ()


@pytest.mark.parametrize(
    ("what", "said"),
    [("file", "a file"), ("link", "a symbolic link to a file"), ("special", "not a regular file")],
)
def test_a_non_directory_where_a_registrys_ca_files_go_blocks_the_plan_naming_it(
    what: str, said: str
) -> None:
    """The plan listed the CA files as pending with no blocker, and every rollout failed on ``mkdir: ...
    File exists`` (rolled back)."""
    facts = host(cert_dir_not_dirs={"registry.test": what, "README": "file"})
    plan = plan_docker(ca_policy("registry.test"), facts)
    assert plan.blockers == (
        f"{CERTS_DIR}/registry.test is {said}, not a directory: dockerd reads registry.test's CA files from a "
        "directory of that name, and trust-agent cannot create it; move it away, then run again (nothing "
        "written)",
    )


def test_a_non_directory_blocks_only_where_the_plan_puts_ca_files() -> None:
    facts = host(cert_dir_not_dirs={"registry.test": "file"})
    assert not plan_docker(ca_policy("other.test"), facts).blockers
    assert not plan_docker(insecure_policy("registry.test"), facts).blockers  # no CA file to write


def test_an_engine_that_never_answered_is_warned_of_and_the_host_is_otherwise_planned() -> None:
    """A frozen dockerd (SIGSTOP): the plan waited, then said "unchanged" with no word of it."""
    policy = ca_policy("registry.test")
    facts = replace(converge(policy, host()), engine_silent=True)
    plan = plan_docker(policy, facts)
    assert not plan.changed and not plan.blockers
    assert plan.warnings == (
        "dockerd did not answer on /var/run/docker.sock (docker.service is active): it may be hung or "
        "stopped (SIGSTOP); its live config was not read, so what it runs now is not judged here; check "
        "`systemctl status docker` and run again once it answers",
    )
    assert not plan_docker(policy, replace(facts, engine_silent=False)).warnings
