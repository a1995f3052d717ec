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
from ansible.plugins.action import ActionBase

try:
    from ansible_collections.trustagent.docker.plugins.action.registry_trust import (
        AnsibleConnectionTransport,
    )

    from agent.engine.verify import read_live_info, wait_for_live_config
    from agent.errors import TrustAgentError

    IMPORT_ERROR: str | None = None
except ImportError as exc:
    IMPORT_ERROR = str(exc)

ARGUMENT_SPEC: dict[str, Any] = {
    "registries": {"type": "list", "elements": "str", "required": True},
    "insecure_registries": {"type": "list", "elements": "str", "default": []},
    "timeout": {"type": "float", "default": 20.0},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        del tmp
        if IMPORT_ERROR is not None:
            raise AnsibleActionFail(
                "trustagent.docker.registry_trust_verify needs trust-agent installed in the controller's "
                f"Python: {IMPORT_ERROR}"
            )
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        if self._task.check_mode:
            result.update(skipped=True, msg="check mode: dockerd was not asked to change, nothing to check")
            return result
        transport = AnsibleConnectionTransport(self, str((task_vars or {}).get("inventory_hostname", "")))
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
