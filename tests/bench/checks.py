"""Check a tool's end state on every host: files, the engine's live config, reloads and restarts.

- the CA file byte-exact; daemon.json's parsed content equal to the expected one, keys in the same
  order (byte-exactness is recorded too, but trust-agent's own bookkeeping is not compared);
- ``docker info`` lists the registry as insecure (``IndexConfigs[registry].Secure`` false);
- cold: dockerd reloaded on every host (its journal counts one more SIGHUP) and not restarted (same
  MainPID); no-op: no reload and no restart.
"""

from __future__ import annotations

import base64
import binascii
import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.bench.job import DAEMON_JSON, Job, ca_path
from tests.bench.sshloop import run_all
from tests.lab import Lab
from tests.lab.lab import Host

MARK = "@@bench"


def state_probe(registry: str) -> str:
    """Shell text printing one host's state as ``@@bench KEY VALUE`` lines."""
    ca = shlex.quote(ca_path(registry))
    return f"""
b64() {{ if [ -f "$1" ]; then base64 -w0 < "$1"; else printf -- -; fi; }}
echo "{MARK} ca $(b64 {ca})"
echo "{MARK} daemon-json $(b64 {DAEMON_JSON})"
echo "{MARK} index $(docker info --format '{{{{json .RegistryConfig.IndexConfigs}}}}' 2>/dev/null | tr -d '\\n')"
echo "{MARK} reloads $(journalctl -u docker.service -o cat --no-pager 2>/dev/null | grep -c 'Got signal to reload configuration')"
echo "{MARK} pid $(systemctl show -p MainPID --value docker.service)"
"""


@dataclass(frozen=True)
class HostState:
    ca: bytes | None = None
    daemon_json: bytes | None = None
    index: dict[str, Any] = field(default_factory=dict)
    reloads: int = -1
    pid: str = ""


def _blob(value: str) -> bytes | None:
    if value in ("", "-"):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_state(stdout: str) -> HostState:
    values: dict[str, str] = {}
    for line in stdout.splitlines():
        if line.startswith(MARK + " "):
            key, _, value = line[len(MARK) + 1 :].partition(" ")
            values[key] = value.strip()
    try:
        index = json.loads(values.get("index") or "{}")
    except ValueError:
        index = {}
    try:
        reloads = int(values.get("reloads", "-1"))
    except ValueError:
        reloads = -1
    return HostState(
        ca=_blob(values.get("ca", "")),
        daemon_json=_blob(values.get("daemon-json", "")),
        index=index if isinstance(index, dict) else {},
        reloads=reloads,
        pid=values.get("pid", ""),
    )


def read_states(lab: Lab, registry: str, hosts: Sequence[Host] | None = None) -> dict[str, HostState]:
    results = run_all(lab, state_probe(registry), hosts)
    return {name: parse_state(r.stdout) if r.returncode == 0 else HostState() for name, r in results.items()}


@dataclass
class Verdict:
    """What a check found on the fleet after one tool's run."""

    problems: list[str] = field(default_factory=list)
    byte_exact: bool = True

    @property
    def ok(self) -> bool:
        return not self.problems


def _items(doc: Any) -> Any:
    """A JSON value with every object as its list of items, so key order counts in a comparison."""
    if isinstance(doc, dict):
        return [(k, _items(v)) for k, v in doc.items()]
    if isinstance(doc, list):
        return [_items(v) for v in doc]
    return doc


def check(
    job: Job,
    before: Mapping[str, HostState],
    after: Mapping[str, HostState],
    *,
    expect_reload: bool,
) -> Verdict:
    verdict = Verdict()
    want = _items(job.expected_doc)
    for name, state in after.items():
        problems: list[str] = []
        if state.ca != job.ca_bytes:
            problems.append("CA file missing or not byte-exact")
        if state.daemon_json is None:
            problems.append("daemon.json missing")
        else:
            try:
                got = _items(json.loads(state.daemon_json))
            except ValueError:
                got = None
            if got != want:
                problems.append(f"daemon.json content differs: {state.daemon_json[:200]!r}")
            if state.daemon_json != job.expected_daemon_json:
                verdict.byte_exact = False
        entry = state.index.get(job.registry)
        if not isinstance(entry, dict) or entry.get("Secure") is not False:
            problems.append(f"docker info does not list {job.registry} as insecure")
        prior = before.get(name)
        if prior is not None:
            reloads = state.reloads - prior.reloads
            if expect_reload and reloads < 1:
                problems.append("dockerd was not reloaded")
            if not expect_reload and reloads != 0:
                problems.append(f"dockerd was reloaded {reloads} time(s) on a converged host")
            if state.pid != prior.pid:
                problems.append(f"dockerd was restarted (MainPID {prior.pid} -> {state.pid})")
        verdict.problems += [f"{name}: {p}" for p in problems]
    return verdict
