"""rollout proves a certs.d change with verify's TLS checks from the controller: certs.d files do not
show in dockerd's live config (trust-facts 15), so "verified: live config" says nothing of them."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.probes import by_host, ca_args, pull
from tests.lab import Lab
from tests.pki import make_ca

pytestmark = pytest.mark.lab

FAILED = " (a failed check from this machine: exit 1)"
PULLS_FAIL = "warning: the hosts' pulls will fail: "


def rollout(lab: Lab, *args: str) -> tuple[int, dict[str, Any], str]:
    """Run ``trust-agent rollout`` in the lab namespace; returns (exit code, JSON report, stderr)."""
    proc = lab.run_agent("rollout", "-i", str(lab.inventory_yml), *args, "--format", "json")
    report = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    return proc.returncode, report, proc.stderr


def rollout_reported(lab: Lab, tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], ET.Element, str]:
    """``rollout`` writing JSON and JUnit reports: (exit code, JSON report, JUnit suite, stderr)."""
    json_file, junit_file = tmp_path / "rollout.json", tmp_path / "rollout.xml"
    proc = lab.run_agent(
        "rollout", "-i", str(lab.inventory_yml), *args, "-o", str(json_file), "-o", str(junit_file)
    )
    report = json.loads(json_file.read_text())
    return proc.returncode, report, ET.parse(junit_file).getroot(), proc.stderr


def tls_cases(suite: ET.Element) -> dict[str, ET.Element]:
    """The JUnit cases of the TLS checks, by target."""
    return {
        c.get("name", ""): c
        for c in suite.iter("testcase")
        if c.get("classname") == "trust-agent.rollout.tls"
    }


def both_names(lab: Lab) -> str:
    """The registry's check as listed: the source gives it bare and with its default port, one endpoint
    and one handshake, under the first name."""
    return f"{lab.registry} (also {lab.registry}:443)"


def resolve(lab: Lab) -> list[str]:
    """Where the registry is: the lab namespace's DNS does not know its name."""
    return ["--resolve", f"{lab.registry}:{lab.state['registry']['address']}"]


def only_the_new_storage_ca(lab: Lab, tmp_path: Path) -> list[str]:
    """A rotation step that gives the next storage CA while the storage still presents the old one's
    certificate."""
    new = tmp_path / "storage-ca-next.pem"
    new.write_bytes(make_ca("Next storage CA")[0])
    return [
        "--source",
        str(lab.registry_yml),
        "--storage-ca",
        str(new),
        "--registry-ca",
        str(lab.registry_ca),
    ]


def test_a_storage_ca_the_storage_does_not_present_fails_the_rollout_as_verify_does(
    lab: Lab, tmp_path: Path
) -> None:
    """The rollout installed a storage CA that matched nothing, said "verified: live config" and exited
    0; every pull on the host then failed with x509."""
    host = lab.hosts[-1]
    code, _, err = rollout(lab, *ca_args(lab), "--limit", host.name)
    assert code == 0, err
    storage = lab.s3_authority
    # As it was run: no --resolve, so the registry's checks cannot connect from here (notes); the
    # storage, at an address, is reached.
    rotated = only_the_new_storage_ca(lab, tmp_path)
    code, report, suite, err = rollout_reported(lab, tmp_path, *rotated, "--limit", host.name)

    untrusted = f"tls {storage}: certificate not trusted: unable to get local issuer certificate"
    assert code == 1, err
    assert by_host(report)[host.name]["status"] == "changed", report  # the files are as asked
    unreached, failed = report["tls_checks"]
    assert unreached.startswith(f"tls {both_names(lab)}: cannot connect: "), unreached
    assert failed == untrusted + FAILED
    assert untrusted + FAILED in report["warnings"]
    assert f"{PULLS_FAIL}{storage} presented a certificate" in err, err
    cases = tls_cases(suite)
    failure = cases[storage].find("failure")
    assert failure is not None and failure.get("message", "").startswith("certificate not trusted"), cases
    assert cases[both_names(lab)].find("skipped") is not None, "not reached from here: not failed"
    # What the check said is what the host finds: its pull fails, and verify fails the same check.
    pulled = lab.ssh(host, f"docker rmi -f {lab.image} >/dev/null 2>&1; docker pull {lab.image}", check=False)
    assert pulled.returncode != 0 and "x509" in pulled.stdout + pulled.stderr, pulled
    verified = lab.run_agent(
        "verify", "-i", str(lab.inventory_yml), *rotated, *resolve(lab), "--limit", host.name,
    )  # fmt: skip
    assert verified.returncode == 1 and f"{untrusted}" in verified.stderr, verified.stderr


def test_the_right_cas_pass_every_check_and_the_reports_list_them(lab: Lab, tmp_path: Path) -> None:
    code, report, suite, err = rollout_reported(lab, tmp_path, *ca_args(lab), *resolve(lab))
    assert code == 0, err
    assert report["tls_checks"] == [f"tls {both_names(lab)}: ok", f"tls {lab.s3_authority}: ok"]
    assert not [w for w in report["warnings"] if w.startswith("tls ")], report["warnings"]
    assert "warning: tls" not in err and PULLS_FAIL not in err, err
    tls = tls_cases(suite)
    assert len(tls) == 2 and all(list(case) == [] for case in tls.values()), [
        ET.tostring(c) for c in tls.values()
    ]
    for host in lab.hosts:
        pull(lab, host)


def test_a_check_that_cannot_connect_from_here_is_a_note_not_a_failure(lab: Lab) -> None:
    """The controller may sit outside the hosts' network: a registry it cannot resolve is said, and
    the hosts, which reach it, are not failed for it."""
    host = lab.hosts[0]
    code, report, err = rollout(lab, *ca_args(lab), "--limit", host.name)
    assert code == 0, err
    assert by_host(report)[host.name]["status"] == "changed"
    assert f"tls {lab.s3_authority}: ok" in report["tls_checks"]
    unreached = [w for w in report["warnings"] if w.startswith(f"tls {lab.registry}")]
    assert len(unreached) == 1, report["warnings"]  # one note for one endpoint, both its names in it
    assert unreached[0].startswith(f"tls {both_names(lab)}: cannot connect") and unreached[0].endswith(
        "not checked from this machine (a note, not a failure: the hosts may reach it where this machine cannot)"
    ), report["warnings"]
    assert f"give its address with --resolve {lab.registry}:ADDR" in unreached[0]
    assert not [w for w in report["warnings"] if w.endswith(FAILED)]
    pull(lab, host)


def test_a_dry_run_makes_no_check(lab: Lab, tmp_path: Path) -> None:
    """A dry run changes nothing, so it has nothing to prove: a wrong CA there is plan's business."""
    host = lab.hosts[0]
    code, report, err = rollout(
        lab, *only_the_new_storage_ca(lab, tmp_path), *resolve(lab), "--limit", host.name, "--dry-run"
    )
    assert code == 0, err
    assert report["tls_checks"] == [] and by_host(report)[host.name]["status"] == "pending"
    assert "tls " not in err, err


def test_no_tls_check_makes_no_check_and_trusts_the_hosts_result(lab: Lab, tmp_path: Path) -> None:
    """A controller that reaches the storage by another route than the engines (another DNS view, another
    certificate) can leave the checks out: the run is judged by the hosts alone."""
    host = lab.hosts[0]
    rotated = only_the_new_storage_ca(lab, tmp_path)
    code, report, err = rollout(lab, *rotated, *resolve(lab), "--limit", host.name, "--no-tls-check")
    assert code == 0, err
    assert by_host(report)[host.name]["status"] in ("changed", "unchanged"), report
    assert report["tls_checks"] == [] and "tls " not in err and PULLS_FAIL not in err, err
    # The same run with the checks fails as before: the option is what left them out.
    code, report, err = rollout(lab, *rotated, *resolve(lab), "--limit", host.name)
    assert code == 1 and f"{PULLS_FAIL}{lab.s3_authority} presented a certificate" in err, err
    code, _, err = rollout(lab, *ca_args(lab), "--limit", host.name, "--no-tls-check")
    assert code == 0, err


def test_verify_without_a_route_to_the_registry_fails_unless_told_to_make_no_check(lab: Lab) -> None:
    """verify proves: a check that cannot connect from here fails it, as its help says. A machine that
    cannot reach the registry leaves the checks out, and the hosts alone are judged."""
    host = lab.hosts[0]
    code, _, err = rollout(lab, *ca_args(lab), "--limit", host.name)
    assert code == 0, err
    args = ("verify", "-i", str(lab.inventory_yml), *ca_args(lab), "--limit", host.name)
    unreached = lab.run_agent(*args)
    assert unreached.returncode == 1 and f"tls {lab.registry}" in unreached.stderr, unreached.stderr
    assert "cannot connect" in unreached.stderr, unreached.stderr
    unchecked = lab.run_agent(*args, "--no-tls-check", "--format", "json")
    assert unchecked.returncode == 0, unchecked.stdout + unchecked.stderr
    assert json.loads(unchecked.stdout)["tls_checks"] == [] and "tls " not in unchecked.stderr
    lab.ssh(host, f"rm /etc/docker/certs.d/{lab.registry}/trust-agent-storage-ca.crt")
    try:
        drifted = lab.run_agent(*args, "--no-tls-check")
        assert drifted.returncode == 1, drifted.stdout + drifted.stderr  # the hosts are still judged
    finally:
        assert rollout(lab, *ca_args(lab), "--limit", host.name)[0] == 0


WITHOUT_STORAGE_CA = "made without the storage CA (this run gives none; a host holding one keeps it): "


def test_a_rollout_without_the_storage_ca_does_not_say_the_kept_one_fails_the_pulls(
    lab: Lab, tmp_path: Path
) -> None:
    """Rolled out again without --storage-ca, the host kept the storage CA that works and failed
    untouched, yet the run also said the hosts' pulls will fail, from a check made with the registry CA
    alone."""
    host = lab.hosts[0]
    code, _, err = rollout(lab, *ca_args(lab), *resolve(lab), "--limit", host.name)
    assert code == 0, err
    forgotten = ["--source", str(lab.registry_yml), "--registry-ca", str(lab.registry_ca)]
    code, report, suite, err = rollout_reported(
        lab, tmp_path, *forgotten, *resolve(lab), "--limit", host.name
    )

    assert code == 1, err  # for the host, which keeps its storage CA: "it is kept"
    assert "it is kept" in by_host(report)[host.name]["error"], report
    unjudged = (
        f"tls {lab.s3_authority}: {WITHOUT_STORAGE_CA}certificate not trusted: unable to get local issuer "
        "certificate"
    )
    assert report["tls_checks"] == [f"tls {both_names(lab)}: ok", unjudged]
    assert PULLS_FAIL not in err and FAILED not in err, err
    assert f"warning: {unjudged}: not judged (a note, not a failure: " in err, err
    assert not [w for w in report["warnings"] if w.endswith(FAILED) or "pulls will fail: " in w]
    storage_case = tls_cases(suite)[lab.s3_authority]
    assert storage_case.find("failure") is None and storage_case.find("skipped") is not None
    pull(lab, host)  # what the check could not see: the kept storage CA still works
    verified = lab.run_agent(
        "verify", "-i", str(lab.inventory_yml), *forgotten, *resolve(lab), "--limit", host.name
    )
    assert unjudged in verified.stderr and PULLS_FAIL not in verified.stderr, verified.stderr
