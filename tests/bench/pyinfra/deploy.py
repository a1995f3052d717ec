"""The bench job with pyinfra 3: the registry CA in certs.d/<registry>/, the registry merged into
daemon.json's insecure-registries (other keys kept, in order), a reload only where it changed.

Run:  BENCH_CA_FILE=/path/ca.pem pyinfra -y --parallel 50 tests/bench/pyinfra/inventory.py \
          tests/bench/pyinfra/deploy.py      (inventory.py reads the lab from BENCH_LAB_DIR)
"""

import io
import json
import os
import re

from pyinfra import host
from pyinfra.facts.files import FileContents
from pyinfra.operations import files, systemd

REGISTRY = os.environ.get("BENCH_REGISTRY", "registry.test")
CA_FILE = os.environ["BENCH_CA_FILE"]
DAEMON_JSON = "/etc/docker/daemon.json"
CERTS = f"/etc/docker/certs.d/{REGISTRY}"


def indent_of(text: str) -> int | str:
    """The file's indent unit, as trust-agent detects it (a tab, or the first indent's width; 2)."""
    match = re.search(r"\n([ \t]+)\S", text)
    if not match:
        return 2
    unit = match.group(1)
    return "\t" if unit.startswith("\t") else len(unit)


files.directory(name="certs.d directory of the registry", path=CERTS, mode="755")
files.put(name="The registry CA", src=CA_FILE, dest=f"{CERTS}/trust-agent-registry-ca.crt", mode="644")

lines = host.get_fact(FileContents, path=DAEMON_JSON)
text = "\n".join(lines) if lines else "{}"
doc = json.loads(text)
entries = list(doc.get("insecure-registries") or [])
if REGISTRY not in entries:
    entries.append(REGISTRY)
doc["insecure-registries"] = entries
new = json.dumps(doc, indent=indent_of(text), ensure_ascii=False) + "\n"

written = files.put(
    name="Write daemon.json (same bytes as trust-agent writes)",
    src=io.StringIO(new),
    dest=DAEMON_JSON,
    mode="644",
)
systemd.service(name="Reload docker", service="docker", reloaded=True, _if=written.did_change)
