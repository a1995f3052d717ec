# Apache-2.0 (see the trust-agent source)
"""Filter ``trustagent.docker.unknown_variables``: the role's first task names the ``trustagent_*``
variables it would ignore (a misspelt one leaves its default in force), each with the closest known name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible_collections.trustagent.docker.plugins.plugin_utils.wording import unknown_variables

DOCUMENTATION = r"""
name: unknown_variables
short_description: The variable names a role does not read, each with the closest one it does
version_added: "0.1.0"
description:
  - Of the names given, those not in I(known), sorted; where a known name (or a trust-agent CLI flag's
    spelling of one) is close, C(NAME (did you mean KNOWN?)).
positional: known
options:
  _input:
    description: The names set for the host, as C(query('ansible.builtin.varnames', '^trustagent_')) gives them.
    type: list
    elements: str
    required: true
  known:
    description: The names the role reads or sets itself.
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
- name: Refuse misspelt role variables
  ansible.builtin.assert:
    that: unknown | length == 0
    fail_msg: "not variables of this role: {{ unknown | join(', ') }}"
  vars:
    unknown: "{{ query('ansible.builtin.varnames', '^trustagent_') | trustagent.docker.unknown_variables(['trustagent_source']) }}"
"""

RETURN = r"""
_value:
  description: The unknown names, each with its suggestion where there is one.
  type: list
  elements: str
"""


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"unknown_variables": unknown_variables}
