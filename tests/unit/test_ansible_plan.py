"""The collection's ``registry_trust`` plans a host as ``trust-agent rollout`` does: with the running
dockerd's live-restore from ``/info``, read when only it could allow a restart; with its live insecure
list, read where a host without the agent's record is to be left alone (a list dockerd kept, fact 11);
and it refuses what the CLI refuses before writing (a login that is not root, a masked docker.service,
a --config-file its unit no longer gives). Pure logic (the plugin's planning helpers, trust-agent's
``agent.engine.host_plan``), no ansible-core needed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.certs import CABundle
from agent.engine import host_plan
from agent.outcome import HostOutcome
from agent.reports.json_report import host_dict
from agent.runtimes.docker import facts_after, plan_docker
from agent.runtimes.docker_facts import DAEMON_JSON, DockerFacts
from agent.runtimes.live_registry import live_insecure
from agent.runtimes.plan import HostPlan
from agent.trust import CAFile, TrustPolicy

ROOT = Path(__file__).resolve().parents[2]
PLANNING = (
    ROOT
    / "ansible-compat"
    / "collections"
    / "ansible_collections"
    / "trustagent"
    / "docker"
    / "plugins"
    / "plugin_utils"
    / "planning.py"
)
# Docker 23.0 cannot reload registry-mirrors together with insecure-registries: the change needs a
# restart, which only live-restore (or allow_restart) lets the planner do.
MIRRORS = b'{"registry-mirrors": ["https://mirror.example.com"]}'


def _load_planning() -> ModuleType:
    # By path: the collection's package (ansible_collections.…) is Ansible's to import, not ours.
    spec = importlib.util.spec_from_file_location("trustagent_planning", PLANNING)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


planning = _load_planning()


def insecure_policy() -> TrustPolicy:
    return TrustPolicy(
        registries=("registry.test",),
        storage_endpoint="198.51.100.11:9000",
        storage_scheme="https",
        insecure=True,
    )


def restart_host(**kw: Any) -> DockerFacts:
    base: dict[str, Any] = {
        "init": "systemd",
        "engine_version": "23.0.6",
        "engine_running": True,
        "daemon_json": MIRRORS,
        "login_uid": 0,
    }
    return DockerFacts(**{**base, **kw})


class InfoReads:
    """``read_info`` for the plan: answers ``info`` and counts how often it was asked."""

    def __init__(self, info: dict[str, Any] | None) -> None:
        self.info = info
        self.calls = 0

    def __call__(self) -> dict[str, Any] | None:
        self.calls += 1
        return self.info


def plan(info: dict[str, Any] | None, reads: InfoReads, **kw: Any) -> Any:
    options: dict[str, Any] = {"restart_policy": "auto", "allow_restart": False, **kw}
    return planning.plan_host(insecure_policy(), restart_host(), info, read_info=reads, **options).plan


def test_live_restore_in_the_gathered_info_allows_the_restart() -> None:
    reads = InfoReads(None)
    done = plan({"LiveRestoreEnabled": True}, reads)
    assert (done.engine_action, done.blockers) == ("restart", ())
    assert any("live-restore keeps containers running" in r for r in done.reasons)
    assert reads.calls == 0


def test_without_live_restore_the_restart_stays_refused_with_the_clis_reason() -> None:
    done = plan({"LiveRestoreEnabled": False}, InfoReads(None))
    assert done.engine_action == "restart"
    assert done.blockers and done.blockers[0].endswith("pass --allow-restart or enable live-restore")


def test_a_host_gathered_without_info_has_it_read_where_only_live_restore_could_allow_the_restart() -> None:
    reads = InfoReads({"LiveRestoreEnabled": True})
    done = plan(None, reads)
    assert (done.engine_action, done.blockers) == ("restart", ())
    assert reads.calls == 1
    # dockerd does not answer: unknown, so the restart stays refused.
    assert plan(None, InfoReads(None)).blockers


def test_info_is_not_read_where_live_restore_would_change_nothing() -> None:
    for options in ({"allow_restart": True}, {"restart_policy": "reload"}, {"restart_policy": "never"}):
        reads = InfoReads({"LiveRestoreEnabled": True})
        plan(None, reads, **options)
        assert reads.calls == 0, options


@given(live=st.one_of(st.none(), st.booleans(), st.text(max_size=3), st.integers()))
def test_the_plan_is_the_clis_for_whatever_info_says(live: object) -> None:
    info: dict[str, Any] = {} if live is None else {"LiveRestoreEnabled": live}
    expected = plan_docker(
        insecure_policy(),
        restart_host(),
        restart_policy="auto",
        allow_restart=False,
        live_restore=live if isinstance(live, bool) else None,
        live_insecure=live_insecure(info, ("registry.test",)),
    )
    done = plan(info, InfoReads(None))
    assert (done.engine_action, done.blockers, done.changes) == (
        expected.engine_action,
        expected.blockers,
        expected.changes,
    )


def test_a_login_that_is_not_root_is_refused_with_how_to_become_root() -> None:
    said = planning.not_root(1000)
    assert said is not None
    assert said.startswith("runs as uid 1000, not root: /etc/docker and the engine's socket are root's")
    assert "become: true" in said and "--become" not in said
    assert planning.not_root(0) is None and planning.not_root(None) is None


def test_the_login_check_is_the_clis_in_playbook_terms() -> None:
    cli = host_plan.not_root_error(1000, "log in as root, or pass --become for sudo")
    assert cli is not None and planning.not_root(1000) == cli.replace(
        "pass --become for sudo", "set become: true for sudo"
    )


def ca_policy() -> TrustPolicy:
    pem = b"-----BEGIN CERTIFICATE-----\nMIIBstorage\n-----END CERTIFICATE-----\n"
    return TrustPolicy(
        registries=("registry.test",),
        storage_endpoint="198.51.100.11:9000",
        storage_scheme="https",
        ca_files=(CAFile("storage", "trust-agent-storage-ca.crt", CABundle("t", pem, ())),),
    )


def no_record_host(**kw: Any) -> DockerFacts:
    """A host the agent never wrote to (no state file: gathered without ``/info``), its daemon.json
    without insecure-registries."""
    base: dict[str, Any] = {
        "init": "systemd",
        "engine_version": "26.1.5",
        "engine_running": True,
        "daemon_json": b'{\n  "debug": true\n}\n',
        "login_uid": 0,
    }
    return DockerFacts(**{**base, **kw})


def info_with(secure: bool) -> dict[str, Any]:
    return {"RegistryConfig": {"IndexConfigs": {"registry.test": {"Secure": secure}}}}


def ca_plan(facts: DockerFacts, reads: InfoReads, **kw: Any) -> Any:
    options: dict[str, Any] = {"restart_policy": "auto", "allow_restart": False, **kw}
    return planning.plan_host(ca_policy(), facts, None, read_info=reads, **options).plan


def test_a_list_dockerd_kept_after_its_key_went_is_cleared_in_the_modules_one_plan() -> None:
    """Without ``/info`` the plan wrote the CA files only and left dockerd alone; the verify then found
    the registry insecure, waited and rolled back, every run. Read, the live list gets ``[]`` written
    and a reload, as the CLI's second plan does after its apply."""
    facts = no_record_host()
    reads = InfoReads(info_with(secure=False))
    done = ca_plan(facts, reads)
    assert reads.calls == 1
    assert (done.engine_action, done.blockers) == ("reload", ())
    (daemon,) = [c for c in done.changes if c.path == DAEMON_JSON]
    assert daemon.after is not None and json.loads(daemon.after) == {"debug": True, "insecure-registries": []}
    # The CLI's two plans (certs.d first, then the list it found live) write the very same files.
    first = plan_docker(ca_policy(), facts)
    again = plan_docker(ca_policy(), facts_after(first, facts), live_insecure={"registry.test": True})
    assert facts_after(done, facts) == facts_after(again, facts_after(first, facts))


@given(
    live=st.one_of(st.none(), st.just(info_with(secure=False)), st.just(info_with(secure=True))),
    gathered=st.booleans(),
    restart_policy=st.sampled_from(["auto", "reload", "restart", "never"]),
)
def test_the_module_plans_with_the_clis_planner_reading_the_live_config_where_it_leaves_dockerd_alone(
    live: dict[str, Any] | None, gathered: bool, restart_policy: str
) -> None:
    """Nothing of its own: the shared planner's answer (the plan, and the ``/info`` it was made with), with
    the module's one choice, the live config read where the plan leaves a running dockerd alone."""
    info = live if gathered else None
    options: dict[str, Any] = {"restart_policy": restart_policy, "allow_restart": False}
    module_reads, cli_reads = InfoReads(live), InfoReads(live)
    done = planning.plan_host(ca_policy(), no_record_host(), info, read_info=module_reads, **options)
    expected = host_plan.plan_for_host(
        ca_policy(), no_record_host(), info, read_info=cli_reads, live_config_where_untouched=True, **options
    )
    assert done == expected
    assert module_reads.calls == cli_reads.calls


def test_a_live_config_that_matches_leaves_the_plan_as_it_was() -> None:
    facts = no_record_host()
    reads = InfoReads(info_with(secure=True))
    done = ca_plan(facts, reads)
    assert reads.calls == 1
    assert (done.changes, done.engine_action) == (plan_docker(ca_policy(), facts).changes, "none")
    # dockerd does not answer: the plan made without it stands.
    assert ca_plan(facts, InfoReads(None)).changes == done.changes


def test_info_is_not_read_where_the_live_list_is_not_the_plans_business() -> None:
    kept = info_with(secure=False)
    for facts, options in (
        (no_record_host(engine_running=False), {}),  # takes the files when it starts
        (no_record_host(init=None), {}),  # a --root tree: no engine
    ):
        reads = InfoReads(kept)
        done = ca_plan(facts, reads, **options)
        assert reads.calls == 0, (facts, options)
        assert done.engine_action == "none"
    # Restart policy 'never' (as the CLI): the list is cleared in daemon.json, and dockerd left alone.
    reads = InfoReads(kept)
    never = ca_plan(no_record_host(), reads, restart_policy="never")
    assert (reads.calls, never.engine_action, never.live_pending) == (1, "none", True)
    assert DAEMON_JSON in [c.path for c in never.changes]
    # Gathered with /info (the host has the agent's record): planned with it, nothing more read.
    reads = InfoReads(None)
    with_info = planning.plan_host(
        ca_policy(), no_record_host(), kept, read_info=reads, restart_policy="auto", allow_restart=False
    ).plan
    assert (reads.calls, with_info.engine_action) == (0, "reload")


def test_a_masked_unit_refuses_a_plan_that_needs_a_reload_before_anything_is_written() -> None:
    masked = restart_host(engine_version="26.1.5", daemon_json=b"{}\n", unit_masked=True)
    reload = planning.plan_host(
        insecure_policy(), masked, None, read_info=InfoReads(None), restart_policy="auto", allow_restart=False
    ).plan
    assert reload.engine_action == "reload" and not reload.blockers
    (refused,) = planning.refusals(masked, reload)
    assert refused == (
        "docker.service is masked: systemctl cannot reload or restart it (the plan needs a reload): "
        "systemctl unmask docker.service, then run again (nothing written)"
    )
    assert planning.unit_warnings(insecure_policy(), masked, reload) == []
    # The CA files alone ask nothing of systemd: written; a running dockerd reads them at once, so the
    # mask is said only where dockerd is stopped, as the CLI says it.
    certs = ca_plan(no_record_host(unit_masked=True), InfoReads(None))
    assert certs.engine_action == "none"
    assert planning.refusals(no_record_host(unit_masked=True), certs) == []
    assert planning.unit_warnings(ca_policy(), no_record_host(unit_masked=True), certs) == []
    stopped = no_record_host(unit_masked=True, engine_running=False)
    assert planning.unit_warnings(ca_policy(), stopped, ca_plan(stopped, InfoReads(None))) == [
        "docker.service is masked: systemctl cannot reload or restart it; the files take effect when dockerd "
        "starts"
    ]
    assert planning.unit_warnings(ca_policy(), no_record_host(), certs) == []


def test_a_registry_the_units_flag_makes_insecure_is_warned_of_as_a_rollout_warns() -> None:
    """The module said nothing of it, where `trust-agent rollout` warns (and verify fails the host)."""
    facts = no_record_host(
        dockerd_flags=("-H", "fd://", "--insecure-registry", "registry.test"),
        flags_source="/etc/systemd/system/docker.service.d/x.conf",
    )
    certs = ca_plan(facts, InfoReads(None))
    (said,) = planning.unit_warnings(ca_policy(), facts, certs)
    assert said.startswith("registry.test: dockerd's command line has --insecure-registry registry.test (")


def test_the_check_waits_for_the_flags_the_running_dockerd_keeps_after_a_reload() -> None:
    """A flag only the unit's next start gives was waited for after a reload (which keeps the running
    dockerd's command line): the check timed out and rolled back a correct change, as the CLI did."""
    unit = ("-H", "fd://", "--insecure-registry=registry.test")
    facts = no_record_host(dockerd_flags=unit, unit_flags=unit, running_flags=("-H", "fd://"))
    done = ca_plan(facts, InfoReads(None))
    assert done.engine_action == "none"
    assert planning.insecure_once_applied(done, facts) == []
    restarted = HostPlan(engine_action="restart")
    assert planning.insecure_once_applied(restarted, facts) == ["registry.test"]


@given(other=st.sampled_from(["/etc/docker/other.json", "/etc/docker/daemon.json", None]))
def test_a_config_file_the_unit_no_longer_gives_is_refused_as_the_cli_refuses_it(other: str | None) -> None:
    running = ("-H", "fd://", *(("--config-file", other) if other else ()))
    facts = no_record_host(unit_flags=("-H", "fd://"), running_flags=running)
    done = ca_plan(facts, InfoReads(None))
    refused = planning.refusals(facts, done)
    assert refused == host_plan.unit_blockers(facts, done)
    moved = other not in (None, "/etc/docker/daemon.json")
    assert bool(refused) == moved
    if moved:
        assert refused[0].startswith(f"the running dockerd was started with --config-file={other}")


@given(user=st.from_regex(r"[a-z_][a-z0-9_-]{0,15}", fullmatch=True).filter(lambda u: u != "root"))
def test_become_to_another_user_is_named_in_the_advice_not_become_itself(user: str) -> None:
    """With become: true already set and become_user deploy, the advice was "set become: true for sudo"."""
    said = planning.not_root(1000, become=True, become_user=user)
    assert said is not None
    assert said.startswith("runs as uid 1000, not root: /etc/docker and the engine's socket are root's (")
    assert f"become_user {user}: set become_user: root" in said
    assert "set become: true" not in said


@given(become=st.booleans(), user=st.sampled_from([None, "", "root"]))
def test_become_as_root_or_none_keeps_the_advice_to_become_root(become: bool, user: str | None) -> None:
    assert planning.not_root(1000, become=become, become_user=user) == planning.not_root(1000)


def stopped(**kw: Any) -> DockerFacts:
    return no_record_host(engine_running=False, engine_unit_state="inactive", **kw)


def test_a_stopped_dockerd_is_named_in_the_clis_words() -> None:
    """The role gave no [WARNING] where `trust-agent rollout` warns a stopped dockerd was not read."""
    assert planning.engine_down(stopped()) == (
        "dockerd is not running (docker.service inactive): its live config was not read"
    )


@given(
    init=st.sampled_from(["systemd", "sysv", None]),
    running=st.booleans(),
    elsewhere=st.booleans(),
    state=st.sampled_from(["", "inactive", "failed"]),
)
def test_dockerd_is_said_down_exactly_where_the_cli_says_it(
    init: str | None, running: bool, elsewhere: bool, state: str
) -> None:
    facts = no_record_host(
        init=init, engine_running=running, engine_elsewhere=elsewhere, engine_unit_state=state
    )
    down = planning.engine_down(facts)
    assert (down is not None) == (init is not None and not running and not elsewhere)
    if down is not None:
        assert down.startswith("dockerd is not running (") and down.endswith(
            "): its live config was not read"
        )


def test_only_registries_daemon_json_leaves_secure_are_checked_for_a_covering_range() -> None:
    assert planning.tls_checked(["registry.test", "registry.test:443"], frozenset({"registry.test:443"})) == [
        "registry.test"
    ]
    assert planning.tls_checked(["registry.test"], frozenset({"registry.test", "10.0.0.0/8"})) == []


def skip_tls_plan(facts: DockerFacts) -> Any:
    return planning.plan_host(
        insecure_policy(), facts, None, read_info=InfoReads(None), restart_policy="auto", allow_restart=False
    ).plan


# Docker 20.10 reads daemon.json's first JSON value and ignores what follows it, and keeps bytes that
# are not UTF-8: a file other tools annotate or label so is one it runs.
PUPPET_TRAILER = b'{\n  "debug": true\n}\n\n# managed by puppet\n'
NOT_UTF8_LABEL = b'{\n  "labels": ["site=\xff\xfe"]\n}\n'


@pytest.mark.parametrize("daemon_json", [PUPPET_TRAILER, NOT_UTF8_LABEL], ids=["trailing-text", "not-utf8"])
def test_a_skip_tls_change_on_docker_20_10_is_checked_for_what_dockerd_reads_in_the_file(
    daemon_json: bytes,
) -> None:
    """The check waited for no insecure registry (the file read strictly, as Docker 23.0 would), found
    the one dockerd had taken from it, and rolled the change back after 20 s, where the CLI converges."""
    facts = no_record_host(engine_version="20.10.24", daemon_json=daemon_json)
    done = skip_tls_plan(facts)
    assert (done.engine_action, done.blockers) == ("reload", ())
    assert planning.insecure_once_applied(done, facts) == ["registry.test"]


def test_a_registry_the_units_flag_makes_insecure_is_waited_for_as_insecure() -> None:
    """dockerd lists it insecure whatever daemon.json says (the CLI's verify counts the flags): waited
    for as secure, the check would fail and roll back CA files dockerd uses."""
    facts = no_record_host(
        engine_version="20.10.24",
        daemon_json=PUPPET_TRAILER,
        dockerd_flags=("-H", "fd://", "--insecure-registry", "registry.test"),
    )
    certs = ca_plan(facts, InfoReads(None))
    assert (certs.engine_action, certs.blockers) == ("none", ())
    assert planning.insecure_once_applied(certs, facts) == ["registry.test"]


@given(trailer=st.text(st.characters(codec="utf-8"), max_size=30))
def test_text_after_the_json_document_never_hides_the_list_from_the_check(trailer: str) -> None:
    listed = b'{"insecure-registries": ["registry.test"]}\n#' + trailer.encode()
    facts = no_record_host(engine_version="20.10.24", daemon_json=listed)
    assert planning.insecure_once_applied(HostPlan(), facts) == ["registry.test"]


def test_docker_23_and_later_are_checked_for_the_file_read_strictly_as_they_read_it() -> None:
    """Docker 23.0 refuses a file that is not UTF-8: it keeps running what it loaded before, and the
    check does not count on a list such a file gives."""
    latin1 = b'{"labels": ["site=\xff"], "insecure-registries": ["registry.test"]}\n'
    facts = no_record_host(engine_version="26.1.5", daemon_json=latin1)
    assert planning.insecure_once_applied(HostPlan(), facts) == []


def test_a_blocked_host_says_nothing_will_change_and_why_as_the_clis_report_says_it() -> None:
    """The result said engine_action none and no file, beside reasons naming daemon.json's change and a
    reload, and no blocker: it now gives the blockers, as the CLI's report does, and the insecure list
    dockerd keeps (nothing is written), not the one the refused plan would have written."""
    facts = no_record_host(engine_version="20.10.24", daemon_json=b'{\n  "bogus-key": 1\n}\n')
    done = skip_tls_plan(facts)
    refused = planning.refusals(facts, done)
    assert refused and done.engine_action == "reload"
    said = planning.blocked_result(facts, refused)
    # The CLI's report for the same host (reconcile: failed, the blockers on its plan, no engine action).
    cli = host_dict(HostOutcome("h", "failed", plan=done, engine_action="none", error="; ".join(refused)))
    assert said["blockers"] == cli["blockers"] == refused
    assert said["engine_action"] == cli["engine_action"] == "none"
    assert said["files"] == cli["changes"] == []
    assert (said["failed"], said["changed"], cli["changed"]) == (True, False, False)
    assert said["insecure_registries"] == [] != planning.insecure_once_applied(done, facts)
    assert said["live_pending"] is False
