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
    Fails with the difference when it never does. Read-only unless given I(undo); skipped in check mode.
  - Then, as C(trust-agent rollout) does, warns where dockerd still does not verify the TLS of a
    registry daemon.json does not list as insecure - an insecure-registries range (a CIDR) that covers
    the registry's address, as the host resolves it (C(getent ahosts)). With I(fail_unverified_tls),
    the host fails for it, as C(trust-agent verify) fails it.
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
  policy_verifies_tls:
    description:
      - C(policy_verifies_tls) from C(registry_trust)'s result. Where the policy verifies TLS but the
        running dockerd does not for the canary's registry (a person's C(insecure-registries) entry naming
        it), the canary pull proves no CA file, and says so (a warning), as C(trust-agent rollout) says it.
        Without it, only an insecure range covering the registry's address is caught.
    type: bool
  timeout:
    description: Seconds to wait for a reload to take effect.
    type: float
    default: 20
  canary_image:
    description:
      - An image to pull on the host once the live config matches (C(docker pull)), proving the CA
        files end to end (the registry, then its storage). A failed pull fails the check, and with
        I(undo) rolls the host back, as C(trust-agent rollout --canary-image) does; an image the check
        removed for its pull is then pulled again, through the previous files.
    type: str
  engine_action_error:
    description:
      - What the role's reload or restart handler failed with, when it did (its C(msg)). The check then
        fails without waiting for dockerd and, with I(undo), rolls the host back (its restart first clears
        systemd's start limit, so dockerd starts again on the previous files). The failure carries
        docker.service's reason from its journal where I(unit_log_cursor) is given.
    type: str
  unit_log_cursor:
    description:
      - C(unit_log_cursor) from C(registry_trust)'s result. Where I(engine_action_error) says the restart
        failed, what docker.service's processes logged after it (a dockerd error, a site's
        C(ExecStartPre=) check) is added to the failure - C(docker.service said ...) - as C(trust-agent
        rollout) adds it; systemctl's own message names no reason.
    type: str
  applied_at:
    description:
      - C(applied_at) from C(registry_trust)'s result (the host's uptime when it wrote daemon.json, where
        the change needs a reload). While the live config still does not match, dockerd's journal is read
        once a second; an error it logged on the reload ends the wait at once, with its reason, instead
        of after I(timeout).
    type: float
  engine_down:
    description:
      - C(engine_down) from C(registry_trust)'s result (dockerd is stopped). Nothing is checked then; a
        warning says that the files take effect when dockerd starts, as C(trust-agent rollout) warns.
    type: str
  fail_unverified_tls:
    description:
      - Fail the host, as C(trust-agent verify) does, where dockerd does not verify the TLS of a
        registry that daemon.json does not list as insecure - an insecure range covering its address,
        or its name resolving to loopback on the host (which dockerd always treats as insecure). Nothing
        is rolled back for it - the files are right, the range is the host's to fix. Without it, a
        warning, as C(trust-agent rollout) gives.
    type: bool
    default: false
  undo:
    description:
      - C(undo) from C(registry_trust)'s result. When given and dockerd did not take the change, the
        previous files are put back (each only where the host still holds what C(registry_trust) wrote;
        otherwise nothing is restored), dockerd is reloaded or restarted as for the change, and the host
        fails with what happened. daemon.json's previous content is read from the backup
        C(registry_trust) made on the host.
    type: dict
author: trust-agent
"""

EXAMPLES = r"""
- name: Check dockerd took the change, and put the previous files back if it did not
  trustagent.docker.registry_trust_verify:
    registries: "{{ trustagent_docker.registries }}"
    insecure_registries: "{{ trustagent_docker.insecure_registries }}"
    undo: "{{ trustagent_docker.undo | default(omit) }}"
"""

RETURN = r"""
insecure_registries:
  description: The registries dockerd treats as insecure, as checked.
  returned: success
  type: list
  elements: str
verified:
  description: What was proved (C(live config), C(canary pull IMAGE)); empty where dockerd is stopped.
  returned: success
  type: list
  elements: str
msg:
  description:
    - "What was proved (C(verified: live config)), what was not checked and why (C(not checked: ...),
      dockerd stopped), or why the host failed."
  returned: always
  type: str
rolled_back:
  description: Whether the previous files were put back, after dockerd did not take the change.
  returned: when dockerd did not take the change and I(undo) was given
  type: bool
"""
