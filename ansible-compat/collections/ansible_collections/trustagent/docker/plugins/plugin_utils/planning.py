# Apache-2.0 (see the trust-agent source)
"""How ``registry_trust`` plans and refuses a host: trust-agent's own rules (``agent.engine.host_plan``,
which ``trust-agent rollout`` uses too), in the module's terms.

No Ansible import, so the unit tests call it without ansible-core.
"""

from __future__ import annotations

from functools import partial

from agent.engine.host_plan import (
    insecure_flag_warnings,
    masked_note,
    not_root_error,
    plan_for_host,
    unit_blockers,
)
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


def unit_warnings(policy: TrustPolicy, facts: DockerFacts, plan: HostPlan) -> list[str]:
    """What docker.service as it is means for the policy, as a rollout warns of it: a masked unit (for a
    plan it does not block), and a registry its command line makes insecure though the policy verifies
    TLS (which trust-agent never changes)."""
    masked = masked_note(facts) if not refusals(facts, plan) else None
    return [*([masked] if masked else []), *insecure_flag_warnings(policy, facts)]


def not_root(login_uid: int | None) -> str | None:
    """Why the host's login cannot make the change (None: it can, or its uid is unknown)."""
    return not_root_error(login_uid, BECOME_ROOT)
