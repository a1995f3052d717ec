# Apache-2.0 (see the trust-agent source)
"""How ``registry_trust`` plans and refuses a host: trust-agent's own rules (``agent.engine.host_plan``,
which ``trust-agent rollout`` uses too), in the module's terms.

No Ansible import, so the unit tests call it without ansible-core.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import partial
from typing import Any

from agent.engine.host_plan import (
    insecure_flag_warnings,
    masked_note,
    not_root_error,
    plan_for_host,
    unit_blockers,
)

# The CLI's own words for a stopped dockerd, so the role warns as a rollout does.
from agent.engine.reconcile import engine_down  # noqa: F401
from agent.engine.verify import expected_insecure
from agent.runtimes.docker import daemon_json_after, reads_invalid_utf8
from agent.runtimes.docker_facts import DockerFacts
from agent.runtimes.plan import HostPlan
from agent.trust import TrustPolicy

# How a playbook gets root: Ansible's become, not the CLI's --become flag.
BECOME_ROOT = "log in as root, or set become: true for sudo"


# The host's plan, as ``trust-agent rollout`` makes it (``PlannedHost``: the plan, and the ``/info`` it
# was made with), in the module's one pass: where the gather brought no ``/info`` (a host without the
# agent's state file) and the plan leaves dockerd alone, ``read_info()`` is read and the host planned with
# it, since dockerd may run an insecure list its daemon.json no longer gives (fact 11), which only writing
# ``[]`` and a reload clear. The CLI reads that after its apply, in the verify it makes anyway.
plan_host = partial(plan_for_host, live_config_where_untouched=True)


def refusals(facts: DockerFacts, plan: HostPlan) -> list[str]:
    """Why the host must not be written to at all, as the CLI refuses it: docker.service as it is (masked
    while the plan needs a reload or restart, a --config-file its unit no longer gives), then the plan's
    own blockers."""
    return [*unit_blockers(facts, plan), *plan.blockers]


def insecure_once_applied(plan: HostPlan, facts: DockerFacts) -> list[str]:
    """The registries dockerd lists as insecure once it runs the daemon.json ``plan`` leaves, with its
    command line's ``--insecure-registry`` flags: what the role's check waits for. Read as the host's
    dockerd reads the file, as the CLI's verify does: before 23.0, bytes that are not UTF-8 are kept and
    text after the JSON document is ignored (read strictly, such a file would say nothing is insecure,
    and the check would roll back a change dockerd took)."""
    after = daemon_json_after(plan, facts)
    keep = reads_invalid_utf8(facts)
    return sorted(expected_insecure(after, facts.flags_after(plan.engine_action), keep_invalid_utf8=keep))


def blocked_result(facts: DockerFacts, refused: Sequence[str]) -> dict[str, Any]:
    """What ``registry_trust`` says of a host it refuses (``refused``: :func:`refusals`), as the CLI's
    report says it: nothing written, no dockerd action, the ``blockers`` beside the plan's reasons (what
    the plan would have done: it is not done), and dockerd's insecure registries as the host's files
    leave them."""
    return {
        "failed": True,
        "changed": False,
        "engine_action": "none",
        "files": [],
        "blockers": list(refused),
        # Nothing written: dockerd is left on the files it has, whatever the restart policy.
        "live_pending": False,
        "insecure_registries": insecure_once_applied(HostPlan(), facts),
    }


def unit_warnings(policy: TrustPolicy, facts: DockerFacts, plan: HostPlan) -> list[str]:
    """What docker.service as it is means for the policy, as a rollout warns of it: a masked unit (for a
    plan it does not block), and a registry its command line makes insecure though the policy verifies
    TLS (which trust-agent never changes)."""
    masked = masked_note(facts, plan) if not refusals(facts, plan) else None
    return [*([masked] if masked else []), *insecure_flag_warnings(policy, facts)]


def not_root(login_uid: int | None, *, become: bool = False, become_user: str | None = None) -> str | None:
    """Why the host's login cannot make the change (None: it can, or its uid is unknown), with how to
    become root given the task's ``become`` and ``become_user``."""
    return not_root_error(login_uid, become_root_advice(become, become_user))


def become_root_advice(become: bool, become_user: str | None) -> str:
    """How to run as root: with become already on, it is ``become_user`` that names another user.

    >>> become_root_advice(True, "deploy")
    'become: true runs the task as become_user deploy: set become_user: root, or leave it unset'
    """
    if become and become_user not in (None, "", "root"):
        return f"become: true runs the task as become_user {become_user}: set become_user: root, or leave it unset"
    return BECOME_ROOT


def tls_checked(registries: Sequence[str], insecure: Collection[str]) -> list[str]:
    """The registries whose TLS dockerd must verify (those daemon.json does not list as insecure): as
    the CLI checks only a policy that verifies TLS, an insecure range covering one of them is news."""
    return [r for r in registries if r not in insecure]
