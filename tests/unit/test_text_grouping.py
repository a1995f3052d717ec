"""The text report shows hosts with the same story once: a fleet of identical hosts, one diff."""

from __future__ import annotations

from agent.outcome import FleetResult, HostOutcome
from agent.reports.text import render
from agent.runtimes.plan import FileChange, HostPlan
from agent.trust import TrustPolicy

POLICY = TrustPolicy(registries=("registry.test",), storage_endpoint=None, storage_scheme=None)
CA = FileChange("/etc/docker/certs.d/registry.test/trust-agent-storage-ca.crt", "create", None, b"PEM-LINE\n")


def outcome(host: str, version: str = "20.10.24", error: str | None = None) -> HostOutcome:
    status = "failed" if error else "pending"
    return HostOutcome(host, status, HostPlan(changes=(CA,)), "none", version, error=error)


def test_identical_hosts_share_one_header_and_one_diff() -> None:
    hosts = (outcome("h1"), outcome("h2"), outcome("h3", "26.1.5"), outcome("h4", error="h4: refused"))
    result = FleetResult("plan", POLICY, hosts, "2026-01-01T00:00:00+00:00", 0.5)
    out = render(result)
    headers = [line for line in out.splitlines() if line.startswith("h")]
    assert headers == [
        "h1, h2 (2 hosts)  pending  none  docker 20.10.24",
        "h3  pending  none  docker 26.1.5",
        "h4  failed  none  docker 20.10.24",
    ]
    assert out.count("+PEM-LINE") == 3  # once per distinct story, not once per host
    assert "4 hosts: 3 pending, 1 failed" in out


def test_a_large_group_names_the_first_hosts_and_counts_the_rest() -> None:
    hosts = tuple(outcome(f"web{i:02d}") for i in range(12))
    out = render(FleetResult("plan", POLICY, hosts, "2026-01-01T00:00:00+00:00", 0.5))
    assert out.splitlines()[0].startswith(
        "web00, web01, web02, web03, web04, web05, web06, web07 and 4 more (12 hosts)"
    )
    assert out.count("+PEM-LINE") == 1
