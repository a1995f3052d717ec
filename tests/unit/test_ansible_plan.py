"""The collection's ``registry_trust`` plans a host as ``trust-agent rollout`` does: with the running
dockerd's live-restore from ``/info``, read when only it could allow a restart; and it refuses a login
that is not root. Pure logic (the plugin's planning helpers), no ansible-core needed."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agent.runtimes.docker import plan_docker
from agent.runtimes.docker_facts import DockerFacts
from agent.runtimes.live_registry import live_insecure
from agent.trust import TrustPolicy

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
    return planning.plan_host(insecure_policy(), restart_host(), info, read_info=reads, **options)


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
