"""The fleet result as JUnit XML: one test case per host, so CI dashboards show the fleet.

failed, rolled_back and unreachable hosts fail; skipped hosts are skipped; everything else passes,
except in ``verify``, where a pending host is drift (verify exits 1 on it) and fails. A host with
changes (pending in a dry run, or changed) or warnings carries them in ``<system-out>``, which
dashboards show next to the test. In ``verify`` and ``rollout``, each TLS check from the controller is
a test case of its own: one that failed fails, as it too makes the command exit 1; one that passed
passes. rollout fails only on a certificate the hosts do not trust: a check it could not make from here
is skipped, saying why.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from agent.handshake import FAILED_CHECK_SUFFIX
from agent.outcome import FleetResult, HostOutcome
from agent.reports import view

# How verify and rollout carry a TLS check that failed from the controller: a fleet warning
# "tls <target>: <problem>" with FAILED_CHECK_SUFFIX (agent/cli.py).
_TLS_PREFIX = "tls "
_TLS_SKIPPED = "tls: skipped: "
# The commands that make TLS checks from the controller; verify fails on every check not passed,
# rollout only on those marked failed (a certificate the hosts do not trust).
_CHECKING = ("verify", "rollout")


def _detail(o: HostOutcome) -> str:
    action = view.engine_action(o)
    lines = [f"status: {o.status}", *([f"engine action: {action}"] if action is not None else [])]
    if o.error:
        lines.append(f"error: {o.error}")
    lines += [f"blocked: {b}" for b in view.blockers(o)]
    lines += [f"why: {r}" for r in view.reasons(o)]
    lines += [f"warning: {w}" for w in view.warnings(o)]
    return "\n".join(lines) + "\n"


def _diffs(o: HostOutcome) -> str:
    return "".join(c.diff() for c in view.visible_changes(o))


def _drift(mode: str, o: HostOutcome) -> bool:
    """A host verify found would change: verify exits 1 on it, so no dashboard may show it green."""
    return mode == "verify" and o.status == "pending"


def _fails(mode: str, o: HostOutcome) -> bool:
    return o.failed or _drift(mode, o)


def _drift_message(o: HostOutcome) -> str:
    """``pending: <error>; <reason>; ...``: the status and why, as the report has them."""
    why = [*([o.error] if o.error else []), *view.reasons(o)]
    return f"{o.status}: {'; '.join(why)}" if why else o.status


def _testcase(suite: ET.Element, mode: str, o: HostOutcome) -> None:
    safe = view.xml_safe
    case = ET.SubElement(
        suite,
        "testcase",
        {"classname": f"trust-agent.{mode}", "name": safe(o.host), "time": f"{view.host_seconds(o):.3f}"},
    )
    if _fails(mode, o):
        message = _drift_message(o) if _drift(mode, o) else o.error or o.status
        failure = ET.SubElement(case, "failure", {"message": safe(message), "type": o.status})
        failure.text = safe(_detail(o) + _diffs(o))
    elif o.status == "skipped":
        ET.SubElement(case, "skipped", {"message": safe(o.error or "not started")})
    elif view.visible_changes(o) or view.warnings(o):  # a passing host's warnings are news too
        out = ET.SubElement(case, "system-out")
        out.text = safe(_detail(o) + _diffs(o))


def _failed_tls_check(mode: str, note: str) -> tuple[str, str] | None:
    """``(target, problem)`` when ``note`` is a TLS check the run failed on, else ``None``."""
    if mode not in _CHECKING or not (note.startswith(_TLS_PREFIX) and note.endswith(FAILED_CHECK_SUFFIX)):
        return None
    return _check_parts(note[: -len(FAILED_CHECK_SUFFIX)])


def _check_parts(line: str) -> tuple[str, str] | None:
    """``tls <target>: <said>`` as ``(target, said)``; ``said`` is ``ok`` where the check passed."""
    target, sep, said = line[len(_TLS_PREFIX) :].partition(": ")
    return (target, said) if line.startswith(_TLS_PREFIX) and sep and target else None


def _tls_cases(result: FleetResult) -> dict[str, str]:
    """Every TLS check made from this machine: target → ``ok``, ``skipped: <why>`` or the problem. A
    result that holds only the failed checks (among its warnings) gives those."""
    cases: dict[str, str] = {}
    marked = set(result.warnings)
    for line in result.tls_checks:
        if line.startswith(_TLS_SKIPPED):  # a skip-TLS policy: there is no handshake to make
            cases["tls"] = line.removeprefix("tls: ")
        elif parts := _check_parts(line):
            cases[parts[0]] = _as_judged(result.mode, line, parts[1], line + FAILED_CHECK_SUFFIX in marked)
    for note in result.warnings:
        if (failed := _failed_tls_check(result.mode, note)) and failed[0] not in cases:
            cases[failed[0]] = failed[1]
    return cases


def _as_judged(mode: str, line: str, said: str, marked_failed: bool) -> str:
    """A check rollout did not fail on (it could not connect from here) as a skipped case."""
    if view.check_verdict(mode, line, marked_failed=marked_failed) == "unverified":
        return f"skipped: not checked from this machine: {said}"
    return said


def _tls_testcase(suite: ET.Element, mode: str, target: str, said: str) -> None:
    safe = view.xml_safe
    case = ET.SubElement(suite, "testcase", {"classname": f"trust-agent.{mode}.tls", "name": safe(target)})
    if said.startswith("skipped: "):
        ET.SubElement(case, "skipped", {"message": safe(said.removeprefix("skipped: "))})
    elif said != "ok":
        failure = ET.SubElement(case, "failure", {"message": safe(said), "type": "tls"})
        failure.text = safe(f"tls {target}: {said}\n")


def _policy_properties(result: FleetResult) -> tuple[tuple[str, str], ...]:
    """The policy's fingerprint and registries; none for a policy never read (its note says so)."""
    if not view.policy_read(result):
        return ()
    policy = result.policy
    return (("policy.fingerprint", policy.fingerprint()), ("policy.registries", ",".join(policy.registries)))


def render(result: FleetResult) -> str:
    counts = result.counts()
    tls = _tls_cases(result)
    tls_failed = sum(1 for said in tls.values() if said != "ok" and not said.startswith("skipped: "))
    tls_skipped = sum(1 for said in tls.values() if said.startswith("skipped: "))
    failures = sum(1 for o in result.outcomes if _fails(result.mode, o)) + tls_failed
    errors = 1 if result.input_error else 0
    suite = ET.Element(
        "testsuite",
        {
            "name": f"trust-agent {result.mode}",
            "tests": str(len(result.outcomes) + len(tls) + errors),
            "failures": str(failures),
            "errors": str(errors),
            "skipped": str(counts.get("skipped", 0) + tls_skipped),
            "time": f"{result.seconds:.3f}",
            "timestamp": view.xml_safe(result.started_at),
        },
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("mode", result.mode),
        *_policy_properties(result),
        *((("stopped", result.stopped),) if result.stopped else ()),
    ):
        ET.SubElement(props, "property", {"name": name, "value": view.xml_safe(value)})
    if result.input_error:  # the run ended before any host: its input is the case that failed
        case = ET.SubElement(suite, "testcase", {"classname": f"trust-agent.{result.mode}", "name": "input"})
        ET.SubElement(case, "error", {"message": view.xml_safe(result.input_error), "type": "input"})
    for o in result.outcomes:
        _testcase(suite, result.mode, o)
    for target, said in tls.items():
        _tls_testcase(suite, result.mode, target, said)
    # A failed TLS check is its test case now; the suite's output keeps the other notes.
    fleet_notes = [w for w in result.warnings if not _failed_tls_check(result.mode, w)]
    notes = [*result.policy.reasons, *result.policy.warnings, *fleet_notes]
    if notes:
        ET.SubElement(suite, "system-out").text = view.xml_safe("\n".join(notes) + "\n")
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
