#!/usr/bin/python
# Apache-2.0 (see the trust-agent source)
"""Documentation of trustagent.docker.registry_trust_verify; the work is done by the action plugin of
the same name, on the controller."""

from __future__ import annotations

DOCUMENTATION = r"""
module: registry_trust_verify
short_description: Check that dockerd's live registry config matches what registry_trust wrote
version_added: "0.1.0"
description:
  - Reads the engine's C(/info) on the host (curl on its API socket, else the docker CLI) and polls it,
    for at most I(timeout) seconds, until every registry is secure or insecure as daemon.json says.
    Fails with the difference when it never does. Read-only; skipped in check mode.
  - Runs as an action plugin on the controller, with trust-agent installed in the controller's Python.
options:
  registries:
    description: The registries to check (C(registries) from C(registry_trust)'s result).
    type: list
    elements: str
    required: true
  insecure_registries:
    description: The ones daemon.json lists as insecure (C(insecure_registries) from C(registry_trust)'s result).
    type: list
    elements: str
    default: []
  timeout:
    description: Seconds to wait for a reload to take effect.
    type: float
    default: 20
author: trust-agent
"""

EXAMPLES = r"""
- name: Check dockerd took the change
  trustagent.docker.registry_trust_verify:
    registries: "{{ trustagent_docker.registries }}"
    insecure_registries: "{{ trustagent_docker.insecure_registries }}"
"""

RETURN = r"""
insecure_registries:
  description: The registries dockerd treats as insecure, as checked.
  returned: success
  type: list
  elements: str
"""
