"""How names and certs.d directories are seen on real hosts: a lookup of the registry's name on a host
whose resolver never answers, a person's link to a directory the agent would remove, and two spellings
of one registry linked inside a certs.d that is itself a link."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agent.engine.verify import lookup_failures, resolve_command
from tests.e2e.probes import outcome_of, pull
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab

CERTS_D = "/etc/docker/certs.d"
STATE = "/var/lib/trust-agent/docker-state.json"
CA_NAMES = ["trust-agent-registry-ca.crt", "trust-agent-storage-ca.crt"]
TAKEOVER = ("--registry", "other.test")

# --- a host whose resolver never answers ------------------------------------------------------------

# Lab addresses nothing answers at (the lab's hosts, registry and storage are .1-.30): each query
# waits for its timeout, so getent alone takes about 20 s where nothing bounds it.
SILENT_RESOLVERS = "nameserver 198.51.100.98\nnameserver 198.51.100.99\noptions timeout:30 attempts:3\n"
NOT_IN_HOSTS = "nowhere.test"
RESOLV_KEPT = "/root/resolv.conf.trust-agent-test"
# The lookup's own bound (5 s) and a round trip's worth of time beside it, far below the resolver's.
BOUNDED = 12.0


@pytest.fixture
def silent_resolver(lab: Lab) -> Iterator[Host]:
    """The first host's /etc/resolv.conf points at lab addresses that never answer; put back after."""
    host = lab.hosts[0]
    lab.ssh(host, f"cp -p /etc/resolv.conf {RESOLV_KEPT} && cat > /etc/resolv.conf", input=SILENT_RESOLVERS)
    try:
        yield host
    finally:
        lab.ssh(host, f"cp -p {RESOLV_KEPT} /etc/resolv.conf && rm -f {RESOLV_KEPT}")


def timed(lab: Lab, command: str, host: Host) -> tuple[float, int, dict[str, Any], str]:
    started = time.monotonic()
    code, outcome, err = outcome_of(lab, command, host, "--registry", NOT_IN_HOSTS)
    return time.monotonic() - started, code, outcome, err


def test_a_host_whose_resolver_never_answers_is_rolled_out_and_verified_in_bounded_time_saying_so(
    lab: Lab, silent_resolver: Host
) -> None:
    """getent had no bound: the resolver's own timeouts were added to the rollout's apply and to verify,
    and a name never resolved was taken for one with no address, silently."""
    host = silent_resolver
    said = (
        f"{NOT_IN_HOSTS} could not be resolved on the host: the host's resolver gave no answer within 5s "
        "(check /etc/resolv.conf); dockerd cannot reach it there, and whether it verifies its TLS is not "
        "known"
    )
    took, code, outcome, err = timed(lab, "rollout", host)
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    assert took < BOUNDED, f"rollout took {took:.1f}s"
    assert said in outcome["warnings"], (err, outcome)  # learnt in the apply's own round trip

    took, code, outcome, err = timed(lab, "verify", host)
    assert took < BOUNDED, f"verify took {took:.1f}s"
    assert said in outcome["warnings"], (err, outcome)


def test_a_lookup_is_bounded_on_a_host_without_coreutils_timeout(lab: Lab, silent_resolver: Host) -> None:
    """The lookup as the verify sends it, run where ``timeout`` is not on the PATH: the watchdog ends it."""
    host = silent_resolver
    bare = "/root/no-timeout-bin"
    lab.ssh(host, f"mkdir -p {bare} && ln -sf /usr/bin/getent /usr/bin/sleep {bare}/")
    try:
        started = time.monotonic()
        result = lab.ssh(host, f"PATH={bare} /bin/sh -s", input=resolve_command([NOT_IN_HOSTS]))
        took = time.monotonic() - started
    finally:
        lab.ssh(host, f"rm -rf {bare}")
    assert took < BOUNDED, f"the lookup took {took:.1f}s"
    assert lookup_failures(result.stdout) == {
        NOT_IN_HOSTS: "the host's resolver gave no answer within 5s (check /etc/resolv.conf)"
    }, result.stdout


# --- a person's link to a directory the agent made --------------------------------------------------


def test_a_takeover_keeps_the_directory_a_persons_link_leads_to_and_the_next_plan_is_not_blocked(
    lab: Lab,
) -> None:
    """The agent removed its emptied certs.d/registry.test, leaving the person's registry.test:443 link
    leading to nothing; the next plan for the source's registry was refused for that link."""
    host = lab.hosts[1]
    code, outcome, err = outcome_of(lab, "rollout", host, "--registry", "registry.test")
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    lab.ssh(host, f"ln -s registry.test {CERTS_D}/registry.test:443")

    code, outcome, err = outcome_of(lab, "rollout", host, *TAKEOVER)
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    assert (
        "certs.d/registry.test/: kept, though empty: removing it would leave certs.d/registry.test:443 (a "
        "link to it) leading to nothing; it is yours now (trust-agent no longer counts it as its own)"
    ) in outcome["reasons"], outcome["reasons"]
    assert lab.ssh(host, f"test -d {CERTS_D}/registry.test:443 && ls -A {CERTS_D}/registry.test").stdout == ""
    assert json.loads(lab.ssh(host, f"cat {STATE}").stdout)["cert_dirs"] == [f"{CERTS_D}/other.test"]

    code, outcome, err = outcome_of(lab, "plan", host)
    assert (code, outcome["blockers"]) == (0, []), (err, outcome)
    code, outcome, err = outcome_of(lab, "rollout", host)
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    assert lab.ssh(host, f"ls {CERTS_D}/registry.test:443/").stdout.split() == CA_NAMES
    pull(lab, host)


# --- certs.d itself a link --------------------------------------------------------------------------

ELSEWHERE = "/srv/certs.d"


@pytest.fixture
def linked_certs_d(lab: Lab) -> Iterator[Host]:
    """On the last host, certs.d is a link to /srv/certs.d, in which registry.test:443 is a link to
    registry.test; certs.d a plain directory again after."""
    host = lab.hosts[-1]
    lab.ssh(
        host,
        f"rm -rf {CERTS_D} && mkdir -p {ELSEWHERE}/registry.test && ln -s {ELSEWHERE} {CERTS_D} && "
        f"ln -s registry.test {ELSEWHERE}/registry.test:443",
    )
    try:
        yield host
    finally:
        lab.ssh(host, f"rm -f {CERTS_D} && rm -rf {ELSEWHERE} && mkdir -m 755 {CERTS_D}")


def test_two_spellings_linked_inside_a_certs_d_that_is_a_link_are_one_directory(
    lab: Lab, linked_certs_d: Host
) -> None:
    """Linked spellings were recognised only in a certs.d that is a real directory: here each CA file
    was planned, written, counted and, on a takeover, removed twice, once under each spelling."""
    host = linked_certs_d
    code, outcome, err = outcome_of(lab, "plan", host)
    assert code == 0, (err, outcome)
    paths = sorted(c["path"] for c in outcome["changes"] if c["path"].startswith(CERTS_D))
    assert paths == [f"{CERTS_D}/registry.test/{name}" for name in CA_NAMES], paths

    code, outcome, err = outcome_of(lab, "rollout", host)
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    assert lab.ssh(host, f"ls {ELSEWHERE}/registry.test").stdout.split() == CA_NAMES
    pull(lab, host)

    code, outcome, err = outcome_of(lab, "plan", host, *TAKEOVER)
    assert code == 0, (err, outcome)
    deleted = sorted(c["path"] for c in outcome["changes"] if c["action"] == "delete")
    assert deleted == [f"{CERTS_D}/registry.test/{name}" for name in CA_NAMES], deleted
    assert lab.ssh(host, f"readlink {CERTS_D} {ELSEWHERE}/registry.test:443").stdout.split() == [
        ELSEWHERE,
        "registry.test",
    ]
