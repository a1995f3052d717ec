#!/usr/bin/python
# Apache-2.0 (see the trust-agent source)
"""Documentation and argument spec of trustagent.docker.registry_trust; the work is done by the action
plugin of the same name, on the controller. Nothing of this file runs on a managed host."""

from __future__ import annotations

DOCUMENTATION = r"""
module: registry_trust
short_description: Make a Docker engine trust a private registry whose blobs live on S3-compatible storage
version_added: "0.1.0"
description:
  - Brings one host to the trust the registry needs, with trust-agent's own planner - the storage (and
    registry) CA as C(trust-agent-*.crt) in C(/etc/docker/certs.d/<registry>/) for every spelling of the
    registry, or the registry in C(insecure-registries) of C(daemon.json) when the storage skips TLS
    verification. Only files trust-agent owns are written or removed; daemon.json keeps every other key
    and its order.
  - Runs as an action plugin on the controller; trust-agent must be installed in the controller's Python.
    The managed host needs a POSIX shell, C(base64), C(sha256sum), C(flock) and C(mktemp) (coreutils and
    util-linux); the module transfers no Python to it.
  - Files are written atomically by the same script as C(trust-agent rollout); dockerd is not touched.
    C(engine_action) in the result says whether dockerd needs a reload or a restart; the role
    C(trustagent.docker.registry_trust) notifies the matching handler.
  - Refuses a host before writing anything, in check mode too, where the CLI does - a plan blocker, a
    masked C(docker.service) when the change needs a reload or restart, a running dockerd on a
    C(--config-file) its unit no longer gives.
  - A login that is not root (no become, or a C(become_user) other than root) fails the host before
    anything is written; in check mode it is only a warning that what the host showed may be partial,
    as C(trust-agent plan) warns.
options:
  source:
    description:
      - The registry's storage settings, as C(trust-agent --source) takes them - a distribution
        C(config.yml), a C(harbor.yml), a saved DTR settings JSON, or a live DTR/MSR URL (credentials from
        C(TRUST_AGENT_DTR_USER)/C(TRUST_AGENT_DTR_TOKEN) in the controller's environment).
      - On the controller. A relative path (here and in I(storage_ca), I(registry_ca), I(source_ca)) is
        looked for in the directory ansible-playbook runs in, then as Ansible looks for a task's files
        (the role's C(files/), the play's C(files/) and directory); found in both as different files, it
        is refused.
    type: str
    required: true
  registries:
    description: Every address clients use for the registry, exactly as in image names. Default, the source's C(http.host).
    type: list
    elements: str
    default: []
  storage_ca:
    description: PEM CA bundles of the storage backend, on the controller.
    type: list
    elements: path
    default: []
  registry_ca:
    description: PEM CA bundles of the registry itself, on the controller.
    type: list
    elements: path
    default: []
  no_storage_ca:
    description:
      - The storage's certificate is publicly trusted - install no storage CA, and remove trust-agent's
        where a host has one (as --no-storage-ca). Without it, and without I(storage_ca), a host
        holding trust-agent's storage CA for a private-looking endpoint fails instead of losing it.
    type: bool
    default: false
  no_registry_ca:
    description:
      - The registry's certificate is publicly trusted - remove trust-agent's registry CA where a host
        has one (as --no-registry-ca). Without it, and without I(registry_ca), a host holding
        trust-agent's registry CA fails instead of losing it.
    type: bool
    default: false
  allow_expired:
    description: Install expired CA certificates (with a warning).
    type: bool
    default: false
  env_overrides:
    description: Apply C(REGISTRY_*) variables of the controller's environment over the config file.
    type: bool
    default: false
  source_ca:
    description: CA bundle to verify a live DTR API with.
    type: path
  restart_policy:
    description: As C(trust-agent rollout --restart-policy).
    type: str
    default: auto
    choices: [auto, reload, restart, never]
  allow_restart:
    description:
      - Let C(auto) ask for a restart where a reload cannot apply the change. Without it, as with
        C(trust-agent rollout), C(auto) restarts only a dockerd whose live C(/info) shows live-restore
        (its containers keep running).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The unified diffs C(trust-agent plan) prints.
author: trust-agent maintainers
"""

EXAMPLES = r"""
# In a play of your own (the role trustagent.docker.registry_trust does all this, and rolls back): the
# play's handlers must do what engine_action says, and the result must be registered under the name
# they read.
- name: Trust the registry's storage CA
  trustagent.docker.registry_trust:
    source: files/registry/config.yml
    registries: [registry.example.com, "registry.example.com:443"]
    storage_ca: [files/s3-ca.pem]
  register: trustagent_docker
  notify: docker engine action

# In the play's handlers:
- name: Reload docker
  ansible.builtin.service:
    name: docker
    state: reloaded
  listen: docker engine action
  when: trustagent_docker.engine_action == 'reload'

- name: Restart docker
  ansible.builtin.service:
    name: docker
    state: restarted
  listen: docker engine action
  when: trustagent_docker.engine_action == 'restart'
"""

RETURN = r"""
changed:
  description:
    - Whether any file was (or, in check mode, would be) written or removed, or dockerd needs a reload or
      restart to load the daemon.json the host already holds (a run stopped before its reload, restart
      policy C(never) earlier, a hand edit not reloaded).
  type: bool
  returned: always
engine_action:
  description: What dockerd needs for the change - none (certs.d is read on every pull), reload or restart.
  type: str
  returned: always
  sample: none
live_pending:
  description:
    - True where restart policy C(never) leaves dockerd on other registry settings than daemon.json's;
      its live config is not checked, and the role skips C(registry_trust_verify).
  type: bool
  returned: always
files:
  description:
    - The files changed (in check mode, to be changed), with their action (create, update, delete).
      Empty where the host was refused or the write failed.
  type: list
  elements: dict
  returned: always
registries:
  description:
    - The registries of the policy, every spelling (I(registries), else the source's C(http.host)); pass
      them to C(registry_trust_verify) as I(registries).
  type: list
  elements: str
  returned: when the host was planned
  sample: [registry.example.com, "registry.example.com:443"]
policy_verifies_tls:
  description:
    - Whether the policy verifies the registries' TLS (a storage CA, not skip-TLS); pass it to
      C(registry_trust_verify) as I(policy_verifies_tls).
  type: bool
  returned: when the host was planned
insecure_registries:
  description:
    - What dockerd must treat as insecure once it took the change (daemon.json's C(insecure-registries)
      after it, and dockerd's flags); pass them to C(registry_trust_verify) as I(insecure_registries).
      The file is read as the host's dockerd reads it (Docker 20.10 ignores text after the JSON document
      and keeps bytes that are not UTF-8). On a refused host nothing is written, so it is the list
      daemon.json gives as it is.
  type: list
  elements: str
  returned: when the host was planned
msg:
  description:
    - "What happened, in a line - C(converged: nothing to change), C(changed N file(s); dockerd: ACTION),
      in check mode C(would change ...), or why the host failed (C(apply failed (nothing was written): ...),
      with the host's own reason, as C(trust-agent rollout) gives it)."
  type: str
  returned: always
engine_down:
  description:
    - Why dockerd's live config cannot be read (C(dockerd is not running (docker.service inactive)...)),
      where dockerd is stopped on a host with an init system. Pass it to C(registry_trust_verify) as
      I(engine_down), which warns of it, as C(trust-agent rollout) does, instead of checking.
  type: str
  returned: when dockerd is stopped
reasons:
  description:
    - Why each change and the engine action, citing the behaviour they rest on. On a refused host, what
      the plan would have done, none of which is done (see C(blockers)), as in C(trust-agent plan)'s report.
  type: list
  elements: str
  returned: always
blockers:
  description:
    - Why the host was refused, nothing written (as C(trust-agent plan)'s report lists them); C(msg) joins
      them. C(engine_action) is then C(none) and C(files) empty.
  type: list
  elements: str
  returned: when the host was refused
engine_version:
  description: dockerd's version on the host.
  type: str
  returned: when dockerd is installed
engine_running:
  description:
    - Whether dockerd runs. When it is stopped the files are written all the same and take effect when it
      starts; the role then has no live config to check, and its C(registry_trust_verify) only warns of
      it (see C(engine_down)).
  type: bool
  returned: always
undo:
  description:
    - What C(registry_trust_verify) needs to put the previous files back, should dockerd not take the
      change (pass it as its I(undo)). Plain data; daemon.json's previous content is not in it, only the
      path of the backup made on the host.
  type: dict
  returned: when files were written
applied_at:
  description:
    - The host's uptime (seconds) when daemon.json was written, where the change needs a reload; pass it
      to C(registry_trust_verify) as I(applied_at), so a reload dockerd refuses fails at once, with
      dockerd's reason.
  type: float
  returned: when files were written and dockerd must reload them (under systemd)
unit_log_cursor:
  description:
    - The host's journal cursor taken after the write, where dockerd must restart; pass it to
      C(registry_trust_verify) as I(unit_log_cursor), so a restart that fails is reported with what
      docker.service logged about it.
  type: str
  returned: when dockerd must restart (under systemd, outside check mode)
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def main() -> None:
    module = AnsibleModule(argument_spec={}, bypass_checks=True)
    module.fail_json(msg="trustagent.docker.registry_trust runs as an action plugin on the controller")


if __name__ == "__main__":
    main()
