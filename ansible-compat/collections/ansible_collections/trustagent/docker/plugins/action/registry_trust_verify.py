# Apache-2.0 (see the trust-agent source)
"""Action plugin for ``trustagent.docker.registry_trust_verify``: read dockerd's live registry config.

After the role's handlers reloaded or restarted dockerd, the engine's ``/info`` is read on the host
(curl on its API socket, else the docker CLI) and polled, for a bounded time, until every registry is
as secure or insecure as daemon.json says: the same check ``trust-agent rollout`` makes
(``agent.engine.verify``). Read-only: never ``changed``.
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleActionFail
from ansible_collections.trustagent.docker.plugins.action.registry_trust import TrustAgentAction

try:
    from agent.engine.verify import read_live_info, wait_for_live_config
    from agent.errors import TrustAgentError
except ImportError:  # reported by TrustAgentAction._begin, with what to install
    pass

ARGUMENT_SPEC: dict[str, Any] = {
    "registries": {"type": "list", "elements": "str", "required": True},
    "insecure_registries": {"type": "list", "elements": "str", "default": []},
    "timeout": {"type": "float", "default": 20.0},
}


class ActionModule(TrustAgentAction):
    NAME = "trustagent.docker.registry_trust_verify"
    SPEC = ARGUMENT_SPEC

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result, args = self._begin(tmp, task_vars)
        if self._task.check_mode:
            result.update(skipped=True, msg="check mode: dockerd was not asked to change, nothing to check")
            return result
        transport = self._host(task_vars)
        registries = tuple(str(r) for r in args["registries"])
        wanted = frozenset(str(r) for r in args["insecure_registries"])
        try:
            wait_for_live_config(
                lambda: read_live_info(transport), registries, wanted, timeout=float(args["timeout"])
            )
        except TrustAgentError as exc:
            raise AnsibleActionFail(f"dockerd did not take the change: {exc}") from None
        result.update(
            changed=False,
            insecure_registries=sorted(wanted),
            msg="dockerd's live registry config matches daemon.json",
        )
        return result
