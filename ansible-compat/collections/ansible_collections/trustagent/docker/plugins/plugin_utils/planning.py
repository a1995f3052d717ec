# Apache-2.0 (see the trust-agent source)
"""How ``registry_trust`` plans a host: trust-agent's planner, given what ``trust-agent rollout`` gives it.

No Ansible import, so the unit tests call it without ansible-core. It mirrors the parts of
``agent.engine.reconcile`` that are private there (``_live_restore``, ``_restart_waits_on_live_restore``
and the login check at the top of ``reconcile``): the module must plan and refuse exactly as the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.runtimes.docker import RestartPolicy, plan_docker
from agent.runtimes.docker_facts import DockerFacts
from agent.runtimes.live_registry import live_insecure
from agent.runtimes.plan import HostPlan
from agent.trust import TrustPolicy

# How a playbook gets root: Ansible's become, not the CLI's --become flag.
BECOME_ROOT = "log in as root, or set become: true for sudo"


def live_restore(info: dict[str, Any] | None) -> bool | None:
    """Whether the running dockerd has live-restore, as its ``/info`` says (None: not known).

    daemon.json may hold a value dockerd has not loaded: only the live one says whether a restart
    keeps the containers running."""
    value = info.get("LiveRestoreEnabled") if info is not None else None
    return value if isinstance(value, bool) else None


def plan_host(
    policy: TrustPolicy,
    facts: DockerFacts,
    info: dict[str, Any] | None,
    *,
    restart_policy: RestartPolicy,
    allow_restart: bool,
    read_info: Callable[[], dict[str, Any] | None],
) -> HostPlan:
    """``plan_docker`` as ``trust-agent rollout`` calls it: with the live-restore and insecure registries
    of dockerd's ``/info``. A host planned without ``/info`` (the gather asks a host without the
    agent's state file only its version) whose restart is refused for want of ``allow_restart`` gets
    ``read_info()`` read and is planned again: live-restore may allow that restart."""

    def planned(live: dict[str, Any] | None) -> HostPlan:
        return plan_docker(
            policy,
            facts,
            restart_policy=restart_policy,
            allow_restart=allow_restart,
            live_restore=live_restore(live),
            live_insecure=live_insecure(live, policy.registries) if live is not None else None,
        )

    plan = planned(info)
    if info is None and _restart_waits_on_live_restore(plan, facts, restart_policy, allow_restart):
        live = read_info()
        if live is not None:
            plan = planned(live)
    return plan


def _restart_waits_on_live_restore(
    plan: HostPlan, facts: DockerFacts, restart_policy: RestartPolicy, allow_restart: bool
) -> bool:
    """A restart refused for want of ``allow_restart``, which only the running dockerd's live-restore
    could allow."""
    return (
        plan.engine_action == "restart"
        and bool(plan.blockers)
        and restart_policy == "auto"
        and not allow_restart
        and facts.engine_running
        and facts.init is not None
    )


def not_root(login_uid: int | None) -> str | None:
    """Why the host's login cannot make the change (None: it can, or its uid is unknown)."""
    if login_uid in (None, 0):
        return None
    return (
        f"runs as uid {login_uid}, not root: /etc/docker and the engine's socket are root's ({BECOME_ROOT})"
    )
