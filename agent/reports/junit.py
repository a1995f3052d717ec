"""The fleet result as JUnit XML: one test case per host, so CI dashboards show the fleet.

failed, rolled_back and unreachable hosts fail; skipped hosts are skipped; everything else passes.
A host with changes (pending in a dry run, or changed) carries its diffs in ``<system-out>``, which
dashboards show next to the test.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from agent.outcome import FleetResult, HostOutcome
from agent.reports import view


def _detail(o: HostOutcome) -> str:
    lines = [f"status: {o.status}", f"engine action: {o.engine_action}"]
    if o.error:
        lines.append(f"error: {o.error}")
    lines += [f"blocked: {b}" for b in view.blockers(o)]
    lines += [f"why: {r}" for r in view.reasons(o)]
    lines += [f"warning: {w}" for w in view.warnings(o)]
    return "\n".join(lines) + "\n"


def _diffs(o: HostOutcome) -> str:
    return "".join(c.diff() for c in view.visible_changes(o))


def _testcase(suite: ET.Element, mode: str, o: HostOutcome) -> None:
    safe = view.xml_safe
    case = ET.SubElement(
        suite,
        "testcase",
        {"classname": f"trust-agent.{mode}", "name": safe(o.host), "time": f"{view.host_seconds(o):.3f}"},
    )
    if o.failed:
        failure = ET.SubElement(case, "failure", {"message": safe(o.error or o.status), "type": o.status})
        failure.text = safe(_detail(o) + _diffs(o))
    elif o.status == "skipped":
        ET.SubElement(case, "skipped", {"message": safe(o.error or "not started")})
    elif view.visible_changes(o):
        out = ET.SubElement(case, "system-out")
        out.text = safe(_detail(o) + _diffs(o))


def render(result: FleetResult) -> str:
    counts = result.counts()
    failures = sum(1 for o in result.outcomes if o.failed)
    suite = ET.Element(
        "testsuite",
        {
            "name": f"trust-agent {result.mode}",
            "tests": str(len(result.outcomes)),
            "failures": str(failures),
            "errors": "0",
            "skipped": str(counts.get("skipped", 0)),
            "time": f"{result.seconds:.3f}",
            "timestamp": view.xml_safe(result.started_at),
        },
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("mode", result.mode),
        ("policy.fingerprint", result.policy.fingerprint()),
        ("policy.registries", ",".join(result.policy.registries)),
        *((("stopped", result.stopped),) if result.stopped else ()),
    ):
        ET.SubElement(props, "property", {"name": name, "value": view.xml_safe(value)})
    for o in result.outcomes:
        _testcase(suite, result.mode, o)
    notes = [*result.policy.reasons, *result.policy.warnings, *result.warnings]
    if notes:
        ET.SubElement(suite, "system-out").text = view.xml_safe("\n".join(notes) + "\n")
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
