"""The daemon's files on real hosts: what uninstall removes and says it left where install's record is
gone or out of date, and which file install may take as the metrics file."""

from __future__ import annotations

import base64
import json
import shlex
from typing import Any

import pytest

from agent.daemon.bundle import DaemonSettings, build_bundle, files_tar
from agent.daemon.host_scripts import config_script
from agent.inputs import DTR_TOKEN_ENV, DTR_USER_ENV, PolicyInputs, resolve_policy
from tests.e2e.probes import ca_args
from tests.e2e.test_daemon_lab import METRICS, dlab, install, wait_for, wheels  # noqa: F401 - fixtures
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab

CONFIG_DIR = "/etc/trust-agent"
ENV_FILE = f"{CONFIG_DIR}/daemon.env"
RECORD = f"{CONFIG_DIR}/install.json"
ENVIRONMENT = "/etc/environment"  # pam_env's, empty on Debian
CREDENTIALS = 'TRUST_AGENT_DTR_USER="admin"\nTRUST_AGENT_DTR_TOKEN="dtr-token-do-not-leave"\n'


def uninstall_h1(lab: Lab) -> dict[str, Any]:
    proc = lab.run_agent(
        "daemon", "uninstall", "-i", str(lab.inventory_yml), "--limit", "h1", "--format", "json"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)["hosts"][0]
    return report


def files_under(lab: Lab, host: Host, directory: str) -> list[str]:
    return lab.ssh(host, f"cd {directory} 2>/dev/null && find . ! -type d | sort").stdout.split()


def test_uninstall_with_the_record_gone_removes_the_credentials_and_names_what_it_left(
    dlab: Lab,  # noqa: F811
) -> None:
    """install.json removed by a person: uninstall said "service, venv and configuration removed" while
    daemon.env (the DTR credentials), daemon.yml and source/ stayed."""
    host = dlab.host("h1")
    assert install(dlab, limit="h1")["h1"]["status"] == "installed"
    assert dlab.ssh(host, f"head -n 1 {METRICS}").stdout.startswith("# HELP trust_agent_up ")
    # As an install from a live DTR leaves it: the credentials in daemon.env, 0600.
    dlab.ssh(host, f"umask 077 && printf %s {shlex.quote(CREDENTIALS)} > {ENV_FILE} && rm {RECORD}")
    report = uninstall_h1(dlab)
    left = [
        "./daemon.yml",
        "./made-dirs",
        *[f"./source/{name}" for name in ("registry-ca-1.pem", "registry.yml", "storage-ca-1.pem")],
    ]
    assert files_under(dlab, host, CONFIG_DIR) == left
    assert (report["status"], report["detail"]) == (
        "uninstalled",
        "service and venv removed, and /etc/trust-agent/daemon.env (the DTR credentials the service "
        "read); /etc/trust-agent/install.json is missing, so nothing else in /etc/trust-agent is known "
        "to be trust-agent's: left daemon.yml, made-dirs, source/registry-ca-1.pem, source/registry.yml, "
        "source/storage-ca-1.pem (remove them by hand where trust-agent put them there); "
        f"{METRICS} (the metrics file /etc/trust-agent/daemon.yml names) removed: it held trust-agent's "
        "metrics; trust left in place",
    )
    # The metrics file daemon.yml names held trust-agent's metrics (trust_agent_up 0 once stopped).
    assert dlab.ssh(host, f"test -e {METRICS} || echo gone").stdout.strip() == "gone"
    # Run again, nothing of the daemon's is there: the rest is untouched, and named.
    again = uninstall_h1(dlab)
    assert (
        again["status"] == "absent" and "left as they are: daemon.yml, made-dirs, source/" in again["detail"]
    )
    assert files_under(dlab, host, CONFIG_DIR) == left


def test_uninstall_with_the_record_gone_leaves_a_file_daemon_yml_names_that_is_not_trust_agents(
    dlab: Lab,  # noqa: F811
) -> None:
    """The metrics file daemon.yml names goes only where it holds trust-agent's metrics: not pam_env's
    empty /etc/environment, nor a file a person wrote over the daemon's metrics."""
    host = dlab.host("h1")
    identity = f"stat -c '%i %s %a %U %Y' {ENVIRONMENT}"
    before = dlab.ssh(host, identity).stdout
    assert before.split()[1] == "0", before  # empty, as Debian ships it
    assert install(dlab, limit="h1")["h1"]["status"] == "installed"
    named = f"sed -i 's|^metrics_file: .*|metrics_file: {ENVIRONMENT}|' {CONFIG_DIR}/daemon.yml"
    dlab.ssh(host, f"{named} && rm {RECORD}")
    try:
        report = uninstall_h1(dlab)
        assert dlab.ssh(host, identity).stdout == before
    finally:  # Debian's again, should the uninstall have taken it
        dlab.ssh(host, f"[ -e {ENVIRONMENT} ] || {{ : > {ENVIRONMENT} && chmod 0644 {ENVIRONMENT}; }}")
    assert (
        f"; {ENVIRONMENT} (the metrics file /etc/trust-agent/daemon.yml names) left as it is: it does not "
        "hold trust-agent's metrics, so it may be another's; trust left in place"
    ) in report["detail"], report

    # A person's notes where the daemon wrote its metrics: named, left as they are.
    dlab.ssh(host, f"rm -f {METRICS}")
    assert install(dlab, limit="h1")["h1"]["status"] == "installed"
    notes = "# my notes\\ntrust_agent_up 1\\n"
    dlab.ssh(host, f"systemctl stop trust-agent && printf '{notes}' > {METRICS} && rm {RECORD}")
    report = uninstall_h1(dlab)
    assert dlab.ssh(host, f"cat {METRICS}").stdout == "# my notes\ntrust_agent_up 1\n"
    assert (
        f"; {METRICS} (the metrics file /etc/trust-agent/daemon.yml names) left as it is" in report["detail"]
    )


# Fails the move of the staged install.json into place, as a full disk would, and nothing else.
FAILING_MV = """#!/bin/sh
case "$*" in *.stage/etc/trust-agent/install.json*) echo "mv: No space left on device" >&2; exit 1 ;; esac
exec /usr/bin/mv "$@"
"""


def test_a_reinstall_that_fails_part_way_keeps_the_credentials_it_placed_on_record(
    dlab: Lab,  # noqa: F811
) -> None:
    """A re-install from a file source to a live DTR that failed after daemon.env was in place, before
    its install.json, left the old record, which does not list daemon.env: uninstall left it."""
    host = dlab.host("h1")
    assert install(dlab, limit="h1")["h1"]["status"] == "installed"
    # What `daemon install --source https://dtr...` puts on the host (the controller cannot reach a DTR
    # in the lab: its script is sent as install sends it, over SSH).
    settings, policy = resolve_policy(PolicyInputs(source=str(dlab.registry_yml)))
    environ = {DTR_USER_ENV: "admin", DTR_TOKEN_ENV: "dtr-token-do-not-leave"}
    bundle = build_bundle(
        PolicyInputs(source="https://dtr.test"),
        settings,
        policy,
        DaemonSettings(metrics_file=METRICS),
        environ=environ,
    )
    dlab.ssh(host, f"printf %s {shlex.quote(FAILING_MV)} > /usr/local/bin/mv && chmod 0755 /usr/local/bin/mv")
    try:
        script = config_script(bundle, venv_changed=False)
        placed = dlab.ssh(
            host,
            f"base64 -d | sh -c {shlex.quote(script)}",
            check=False,
            input=base64.b64encode(files_tar(bundle.files)).decode(),
        )
    finally:
        dlab.ssh(host, "rm -f /usr/local/bin/mv", check=False)
    assert placed.returncode != 0 and "No space left on device" in placed.stderr, placed
    assert dlab.ssh(host, f"cat {ENV_FILE}").stdout == CREDENTIALS  # in place before the failure
    record = json.loads(dlab.ssh(host, f"cat {RECORD}").stdout)
    assert ENV_FILE in record["config_files"]
    assert f"{CONFIG_DIR}/source/registry.yml" in record["config_files"]  # the last install's, still there
    report = uninstall_h1(dlab)
    assert (report["status"], report["detail"]) == (
        "uninstalled",
        "service, venv and configuration removed; trust left in place",
    )
    assert dlab.ssh(host, f"test -e {CONFIG_DIR} || echo gone").stdout.strip() == "gone"


def test_an_empty_file_of_another_programs_is_refused_as_the_metrics_file_and_left_as_it_is(
    dlab: Lab,  # noqa: F811
) -> None:
    """/etc/environment, empty on Debian and read by pam_env, was taken as the daemon's metrics file:
    install replaced it with metrics (0644) and uninstall deleted it."""
    host = dlab.host("h1")
    identity = f"stat -c '%i %s %a %U %Y' {ENVIRONMENT}"
    before = dlab.ssh(host, identity).stdout
    assert before.split()[1:4] == ["0", "644", "root"], before  # as Debian ships it
    try:
        proc = dlab.run_agent(
            "daemon", "install", "-i", str(dlab.inventory_yml), "--limit", "h1", *ca_args(dlab),
            "--metrics-file", ENVIRONMENT,
        )  # fmt: skip
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert (
            "h1: failed: --metrics-file /etc/environment: the file exists, empty, and no install of "
            "trust-agent made it (an empty file can be another program's): choose another path, or remove "
            "the file if no one needs it"
        ) in proc.stdout
        assert dlab.ssh(host, identity).stdout == before
        assert dlab.ssh(host, f"test -e {CONFIG_DIR} || echo absent").stdout.strip() == "absent"
        assert uninstall_h1(dlab)["status"] == "absent"
        assert dlab.ssh(host, identity).stdout == before
    finally:  # Debian's again, should a daemon have taken it: stopped first, or it writes it again
        restore = f"[ ! -s {ENVIRONMENT} ] || {{ rm -f {ENVIRONMENT} && : > {ENVIRONMENT}; }}"
        dlab.ssh(
            host, f"systemctl stop trust-agent 2>/dev/null; {restore}; chmod 0644 {ENVIRONMENT}", check=False
        )


def test_a_reinstall_takes_the_daemons_own_metrics_file_even_emptied_and_fills_it_again(
    dlab: Lab,  # noqa: F811
) -> None:
    """The metrics file is the daemon's by its first line or, emptied, by install's record: a re-install
    over it goes on, and the daemon writes it again."""
    host = dlab.host("h1")
    assert install(dlab, limit="h1")["h1"]["status"] == "installed"
    assert install(dlab, limit="h1")["h1"]["status"] == "unchanged"  # over its own metrics
    dlab.ssh(host, f": > {METRICS}")
    assert install(dlab, limit="h1")["h1"]["status"] in ("installed", "unchanged")
    wait_for(
        "the daemon writes its metrics again",
        lambda: dlab.ssh(host, f"head -c 19 {METRICS}", check=False).stdout == "# HELP trust_agent_",
        timeout=20,
    )
    assert uninstall_h1(dlab)["status"] == "uninstalled"
    assert dlab.ssh(host, f"test -e {METRICS} || echo gone").stdout.strip() == "gone"
