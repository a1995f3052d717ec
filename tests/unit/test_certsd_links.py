"""Links between certs.d directories, as the planner sees them: two spellings of one registry where
certs.d is itself a link, and a directory the agent would remove that a person's link leads to."""

from __future__ import annotations

import json
from dataclasses import replace

from agent.engine.gather import parse_gather_output
from agent.engine.host_plan import plan_for_host
from agent.runtimes.docker_facts import CERTS_DIR, DockerFacts
from agent.runtimes.plan import HostPlan
from agent.trust import TrustPolicy
from tests.unit.test_docker_plan import PEM, PEM2, STORAGE_CRT, ca_policy
from tests.unit.test_gather_parse import a_gather, b64

LINK = "registry.test:443"


def planned(policy: TrustPolicy, facts: DockerFacts) -> HostPlan:
    return plan_for_host(
        policy, facts, None, restart_policy="auto", allow_restart=False, read_info=lambda: None
    ).plan


def linked_spellings_gather(link_target: str, *certs_dir: str) -> str:
    """certs.d (``certs_dir``: where it leads, where it is a link) holding registry.test with the
    storage CA, and registry.test:443 a link resolving to ``link_target``."""
    return a_gather(
        "@@ta certs-dir",
        *certs_dir,
        "@@ta dir registry.test",
        f"@@ta file registry.test/{STORAGE_CRT}",
        b64(PEM),
        f"@@ta dir {LINK}",
        f"@@ta dir-link {LINK}",
        b64(link_target.encode() + b"\n"),
        f"@@ta link-owner 0 {CERTS_DIR}/{LINK}",
        f"@@ta owner 0 755 {CERTS_DIR}/{LINK}",
        f"@@ta file {LINK}/{STORAGE_CRT}",
        b64(PEM),
    )


def test_two_spellings_linked_inside_a_certs_d_that_is_itself_a_link_are_one_directory() -> None:
    """/etc/docker/certs.d -> /srv/certs.d: the link's target resolved under /srv/certs.d, so the plan
    wrote, counted and diffed each CA file twice, once under each spelling."""
    facts = parse_gather_output(
        linked_spellings_gather("/srv/certs.d/registry.test", "@@ta certs-dir-at", b64(b"/srv/certs.d\n"))
    )
    assert facts.cert_dir_links == {LINK: f"{CERTS_DIR}/registry.test"}
    assert not planned(ca_policy("registry.test", LINK), facts).changes

    moved = planned(ca_policy("registry.test", LINK, pem=PEM2), facts)
    assert [c.path for c in moved.changes if c.path.startswith(CERTS_DIR)] == [
        f"{CERTS_DIR}/registry.test/{STORAGE_CRT}"
    ]


def test_a_link_out_of_the_linked_certs_d_keeps_its_own_target() -> None:
    facts = parse_gather_output(
        linked_spellings_gather("/srv/elsewhere/registry.test", "@@ta certs-dir-at", b64(b"/srv/certs.d\n"))
    )
    assert facts.cert_dir_links == {LINK: "/srv/elsewhere/registry.test"}


def agents_directory_with_a_persons_link() -> DockerFacts:
    """certs.d/registry.test made by the agent (its record says so), holding its storage CA, and
    certs.d/registry.test:443 a person's link to it."""
    record = {"version": 1, "insecure_registries": [], "cert_dirs": [f"{CERTS_DIR}/registry.test"]}
    return DockerFacts(
        certs={f"registry.test/{STORAGE_CRT}": PEM, f"{LINK}/{STORAGE_CRT}": PEM},
        cert_dirs=frozenset({"registry.test", LINK}),
        cert_owners={f"registry.test/{STORAGE_CRT}": (0, 0o644), "registry.test": (0, 0o755)},
        cert_dir_links={LINK: f"{CERTS_DIR}/registry.test"},
        state=json.dumps(record).encode(),
        daemon_json=b"{}\n",
        init="systemd",
        engine_running=True,
        engine_version="26.1.5",
    )


def test_a_takeover_keeps_the_emptied_directory_a_persons_link_leads_to_and_says_so() -> None:
    """A run for other.test emptied certs.d/registry.test and removed it: the person's
    registry.test:443 led to nothing, and the next plan for registry.test was refused for it."""
    plan = planned(ca_policy("other.test"), agents_directory_with_a_persons_link())
    assert plan.rmdirs == ()
    assert [c.path for c in plan.changes if c.action == "delete"] == [
        f"{CERTS_DIR}/registry.test/{STORAGE_CRT}"
    ]
    assert not [r for r in plan.reasons if r.startswith("certs.d/registry.test/: remove the directory")]
    assert (
        "certs.d/registry.test/: kept, though empty: removing it would leave certs.d/registry.test:443 (a "
        "link to it) leading to nothing; it is yours now (trust-agent no longer counts it as its own)"
    ) in plan.reasons
    record = next(c for c in plan.changes if c.path.endswith("docker-state.json"))
    assert json.loads(record.after or b"{}")["cert_dirs"] == [f"{CERTS_DIR}/other.test"]


def test_a_takeover_still_removes_the_emptied_directory_no_link_leads_to() -> None:
    facts = agents_directory_with_a_persons_link()
    alone = replace(
        facts,
        certs={f"registry.test/{STORAGE_CRT}": PEM},
        cert_dirs=frozenset({"registry.test"}),
        cert_dir_links={},
    )
    plan = planned(ca_policy("other.test"), alone)
    assert plan.rmdirs == (f"{CERTS_DIR}/registry.test",)
    assert "certs.d/registry.test/: remove the directory trust-agent created, now empty" in plan.reasons
