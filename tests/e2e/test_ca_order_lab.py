"""The same storage CAs given in another order, on real hosts: no drift, and nothing rewritten."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.probes import outcome_of, pull
from tests.lab import Lab
from tests.pki import make_ca

pytestmark = pytest.mark.lab


def test_the_same_storage_cas_in_another_order_are_neither_drift_nor_rewritten(
    lab: Lab, tmp_path: Path
) -> None:
    """Before, verify called the file pending ("only the text around them differs", exit 1), and a
    daemon and a person's rollout given the two CAs in turn rewrote it back and forth."""
    host = lab.hosts[-1]
    second = tmp_path / "storage-ca-2026.pem"
    second.write_bytes(make_ca("lab storage CA 2026", days=3650)[0])
    source = ["--source", str(lab.registry_yml), "--registry-ca", str(lab.registry_ca)]
    first_order = [*source, "--storage-ca", str(lab.storage_ca), "--storage-ca", str(second)]
    other_order = [*source, "--storage-ca", str(second), "--storage-ca", str(lab.storage_ca)]
    storage = f"/etc/docker/certs.d/{lab.registry}/trust-agent-storage-ca.crt"

    code, outcome, err = outcome_of(lab, "rollout", host, *first_order)
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    written = lab.ssh(host, f"cat {storage}; stat -c %Y.%i {storage}").stdout

    code, outcome, err = outcome_of(lab, "verify", host, *other_order)
    assert (code, outcome["status"]) == (0, "unchanged"), (err, outcome)
    assert not [r for r in outcome["reasons"] if "bundle changed" in r], outcome["reasons"]
    code, outcome, err = outcome_of(lab, "rollout", host, *other_order)
    assert (code, outcome["status"], outcome["engine_action"]) == (0, "unchanged", "none"), (err, outcome)
    assert lab.ssh(host, f"cat {storage}; stat -c %Y.%i {storage}").stdout == written  # not even renamed

    # Another set is still a change, and the reason names the certificate that goes.
    code, outcome, err = outcome_of(lab, "verify", host, *source, "--storage-ca", str(lab.storage_ca))
    assert (code, outcome["status"]) == (1, "pending"), (err, outcome)
    assert any("removes CN=lab storage CA 2026" in r for r in outcome["reasons"]), outcome["reasons"]
    pull(lab, host)  # the file as the first rollout wrote it still lets dockerd follow the redirect
