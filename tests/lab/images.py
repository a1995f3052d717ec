"""The registry's test image, pushed once from a lab host that trusts the lab for that moment only."""

from __future__ import annotations

import shlex

from tests.lab import ssh
from tests.lab.layout import Layout, registry_authority
from tests.lab.rootfs import LAB_SHARE

REPOSITORY = "test/busybox:1"


def reference(port: int) -> str:
    return f"{registry_authority(port)}/{REPOSITORY}"


def push(layout: Layout, address: str, port: int, registry_ca: str, storage_ca: str) -> None:
    """Import a distinct image on one host, push it, then leave that host exactly as it was."""
    ref = reference(port)
    certs = f"/etc/docker/certs.d/{registry_authority(port)}"
    script = f"""
set -e
trap 'rm -rf {certs}; docker rmi -f {shlex.quote(ref)} >/dev/null 2>&1 || true' EXIT
mkdir -p {certs}
cat > {certs}/ca.crt <<'PEM'
{registry_ca.strip()}
PEM
cat > {certs}/storage-ca.crt <<'PEM'
{storage_ca.strip()}
PEM
docker import -c 'ENV PATH=/bin' /{LAB_SHARE}/pushed.tar {shlex.quote(ref)} >/dev/null
docker push {shlex.quote(ref)} >/dev/null
"""
    proc = ssh.run(layout.lab_ns, layout.key, layout.known_hosts, address, script, check=False, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"pushing {ref} from {address} failed: {proc.stderr.strip()}")
