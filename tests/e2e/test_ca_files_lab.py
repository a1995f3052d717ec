"""trust-agent's CA files on real hosts: who can write them and their directories, a link in their
place, and a person's insecure-registries entry for a registry whose TLS the policy verifies."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.probes import (
    LAB_DAEMON_JSON,
    converged,
    daemon_json,
    docker_tree,
    engine_state,
    outcome_of,
    pull,
)
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab


def owner_and_mode(lab: Lab, host: Host, path: str) -> str:
    return lab.ssh(host, f"stat -c '%u:%g %a' {path}").stdout.strip()


def live_secure(lab: Lab, host: Host, registry: str) -> bool:
    """Whether the running dockerd verifies ``registry``'s TLS (does not list it as insecure)."""
    out = lab.ssh(host, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout
    return json.loads(out).get(registry, {}).get("Secure", True) is True


def test_ca_files_and_directories_other_users_can_write_are_drift_and_the_files_are_made_roots(
    lab: Lab,
) -> None:
    """Before, a CA file left 0666 or nobody's, and its directory 0777, were "unchanged" (exit 0), and
    a rollout that rewrote a changed CA kept 0666: any local user could replace a CA dockerd trusts."""
    host = lab.hosts[0]
    converged(lab, host)
    storage = f"/etc/docker/certs.d/{lab.registry}/trust-agent-storage-ca.crt"
    spelled = f"/etc/docker/certs.d/{lab.registry}:443"
    registry_ca = f"{spelled}/trust-agent-registry-ca.crt"
    lab.ssh(host, f"chmod 666 {storage} && chown nobody {registry_ca}")

    code, outcome, err = outcome_of(lab, "verify", host)
    assert (code, outcome["status"]) == (1, "pending"), (err, outcome)
    reasons = "\n".join(outcome["reasons"])
    assert "mode 0666 (group- and other-writable)" in reasons, reasons
    assert "owned by uid 65534, not root" in reasons, reasons
    code, outcome, err = outcome_of(lab, "rollout", host)
    assert (code, outcome["status"], outcome["engine_action"]) == (0, "changed", "none"), (err, outcome)
    assert owner_and_mode(lab, host, storage) == "0:0 644"
    assert owner_and_mode(lab, host, registry_ca) == "0:0 644"
    assert outcome_of(lab, "verify", host)[0] == 0

    # A bundle that changed, in a file left 0666: rewritten, root's 0644 (it kept 0666 before).
    lab.ssh(host, f"echo '# changed' >> {storage} && chmod 666 {storage}")
    code, outcome, err = outcome_of(lab, "rollout", host)
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    assert owner_and_mode(lab, host, storage) == "0:0 644"
    assert "# changed" not in lab.ssh(host, f"cat {storage}").stdout

    # The directory others can write in: drift for verify, a warning for a rollout with nothing to write.
    lab.ssh(host, f"chmod 777 {spelled}")
    says = f"certs.d/{lab.registry}:443/ is mode 0777 (group- and other-writable)"
    code, outcome, err = outcome_of(lab, "verify", host)
    assert (code, outcome["status"]) == (1, "failed"), (err, outcome)
    assert outcome["error"].startswith("does not comply with the policy: ") and says in outcome["error"]
    code, outcome, err = outcome_of(lab, "rollout", host)
    assert (code, outcome["status"]) == (0, "unchanged"), (err, outcome)
    assert any(w.startswith(says) for w in outcome["warnings"]), outcome["warnings"]
    # A file to rewrite there: refused before anything is written, saying what to do.
    lab.ssh(host, f"chmod 666 {registry_ca}")
    tree = docker_tree(lab, host)
    code, outcome, err = outcome_of(lab, "rollout", host)
    assert (code, outcome["status"]) == (1, "failed"), (err, outcome)
    assert says in outcome["error"] and "chmod 0755), then run again (nothing written)" in outcome["error"]
    assert docker_tree(lab, host) == tree
    assert owner_and_mode(lab, host, registry_ca) == "0:0 666"
    lab.ssh(host, f"chmod 755 {spelled}")
    code, outcome, err = outcome_of(lab, "rollout", host)
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    assert owner_and_mode(lab, host, registry_ca) == "0:0 644"
    assert outcome_of(lab, "verify", host)[0] == 0
    pull(lab, host)  # the CAs as rewritten still work, through the registry and its storage


def test_a_persons_insecure_entry_for_the_policys_registry_is_never_loaded_and_fails_verify(lab: Lab) -> None:
    """Before, a person's `registry.test:443` appended to daemon.json (no reload) was "an older
    daemon.json" to reload: the rollout turned TLS verification off for it and said "verified"."""
    host = lab.hosts[1]
    converged(lab, host)
    spelled = f"{lab.registry}:443"
    doc = daemon_json(lab, host)
    doc["insecure-registries"] = [*doc.get("insecure-registries", []), spelled]
    lab.ssh(host, "cat > /etc/docker/daemon.json", input=json.dumps(doc, indent=2) + "\n")
    says = (
        f"daemon.json lists {spelled} in insecure-registries (not trust-agent's entry) though the policy "
        "verifies its TLS: remove it by hand, then run again"
    )
    try:
        engine, tree = engine_state(lab, host), docker_tree(lab, host)
        code, outcome, err = outcome_of(lab, "verify", host)
        assert (code, outcome["status"]) == (1, "failed"), (err, outcome)
        assert says in outcome["error"], outcome["error"]
        code, outcome, err = outcome_of(lab, "rollout", host)
        assert (code, outcome["status"], outcome["engine_action"]) == (1, "failed", "none"), (err, outcome)
        assert says in outcome["error"], outcome["error"]
        assert engine_state(lab, host) == engine, "no reload, no restart"
        assert docker_tree(lab, host) == tree
        assert live_secure(lab, host, spelled)

        # The person loads it: nothing for the agent to do, but the host does not comply.
        lab.ssh(host, "systemctl reload docker")
        deadline = time.monotonic() + 10
        while live_secure(lab, host, spelled) and time.monotonic() < deadline:
            time.sleep(0.2)  # the reload applies asynchronously
        code, outcome, err = outcome_of(lab, "verify", host)
        assert (code, outcome["status"]) == (1, "failed"), (err, outcome)
        assert outcome["error"] == (
            f"does not comply with the policy: {spelled}: daemon.json lists it in insecure-registries, "
            "though the policy verifies its TLS: dockerd does not verify it"
        )
        code, outcome, err = outcome_of(lab, "rollout", host)
        assert (code, outcome["status"]) == (0, "unchanged"), (err, outcome)
        stays = f"daemon.json: {spelled} stays in insecure-registries (not added by trust-agent)"
        assert any(w.startswith(stays) for w in outcome["warnings"]), outcome["warnings"]
        assert spelled in daemon_json(lab, host)["insecure-registries"]
    finally:
        # A reload does not clear the list: a restart returns dockerd to the base config.
        lab.ssh(host, f"cp {LAB_DAEMON_JSON} /etc/docker/daemon.json && systemctl restart docker")


@pytest.mark.parametrize("target", ["/etc/shadow", "/etc/ssl/certs/ca-certificates.crt"])
def test_a_ca_file_replaced_by_a_link_fails_plan_verify_and_rollout_alike_saying_what_to_do(
    lab: Lab, target: str
) -> None:
    """Before, plan and verify showed the CA as a new file ("pending", plan's exit 2), and the rollout
    failed with "is a symbolic link: trust-agent does not follow it", saying nothing of what to do."""
    host = lab.hosts[2]
    converged(lab, host)
    path = f"/etc/docker/certs.d/{lab.registry}/trust-agent-storage-ca.crt"
    lab.ssh(host, f"ln -sf {target} {path}")
    tree = docker_tree(lab, host)
    says = f"{path} is a symbolic link, which trust-agent does not follow (it could point at any file)"
    for command, args in (("plan", ("--detailed-exitcode",)), ("verify", ()), ("rollout", ())):
        code, outcome, err = outcome_of(lab, command, host, *args)
        assert (code, outcome["status"]) == (1, "failed"), (command, err, outcome)
        assert outcome["error"].startswith(says), (command, outcome["error"])
        assert outcome["error"].endswith("remove it, then run again (nothing written)"), outcome["error"]
        assert "root:" not in json.dumps(outcome)
    assert docker_tree(lab, host) == tree
    assert lab.ssh(host, f"readlink {path}").stdout.strip() == target
    lab.ssh(host, f"rm {path}")
    code, outcome, err = outcome_of(lab, "rollout", host)
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    assert owner_and_mode(lab, host, path) == "0:0 644"
