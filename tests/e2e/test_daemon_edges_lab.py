"""The per-host daemon's edges on real hosts: who may read its state, and paths the service's sandbox
hides (ProtectHome=yes, PrivateTmp=yes in trust-agent.service)."""

from __future__ import annotations

import pytest
import yaml

from tests.e2e.test_daemon_lab import dlab, install, status, wheels  # noqa: F401 - fixtures
from tests.lab import Lab

pytestmark = pytest.mark.lab

STATE_DIR = "/var/lib/trust-agent"


def test_the_state_directory_is_roots_to_list_and_the_status_readable_by_name(dlab: Lab) -> None:  # noqa: F811
    """systemd's StateDirectory= made it 0755: anyone could list the kept policy, locks and backups."""
    host = dlab.host("h1")
    dlab.ssh(host, f"mkdir -p {STATE_DIR} && chmod 0755 {STATE_DIR}")  # as a rollout leaves it
    report = install(dlab, limit="h1")
    assert report["h1"]["status"] == "installed", report
    assert dlab.ssh(host, f"stat -c %a {STATE_DIR}").stdout.strip() == "711"
    assert status(dlab, host)["healthy"]
    # Monitoring that does not run as root reads status.json by its name, and nothing else there.
    seen = dlab.ssh(host, f"runuser -u nobody -- cat {STATE_DIR}/status.json", check=False)
    assert seen.returncode == 0 and '"healthy": true' in seen.stdout
    listed = dlab.ssh(host, f"runuser -u nobody -- ls {STATE_DIR}", check=False)
    assert listed.returncode != 0 and "Permission denied" in listed.stderr
    kept = dlab.ssh(host, f"runuser -u nobody -- cat {STATE_DIR}/daemon-last-good.json", check=False)
    assert kept.returncode != 0
    # The service reads only what install copied under /etc/trust-agent: no path of the controller's
    # (a link into its /root or /home included) reaches the host's daemon.yml.
    options = yaml.safe_load(dlab.ssh(host, "cat /etc/trust-agent/daemon.yml").stdout)
    for key in ("source", "storage_ca", "registry_ca"):
        for path in options.get(key) if isinstance(options.get(key), list) else [options.get(key)]:
            assert path is None or path.startswith("/etc/trust-agent/source/"), (key, path)


def test_a_metrics_file_behind_a_link_into_root_is_refused_before_anything_is_installed(dlab: Lab) -> None:  # noqa: F811
    """ProtectHome=yes hid it from the service: the daemon reported healthy and no metric ever came."""
    host = dlab.host("h1")
    collector = "/var/lib/node_exporter/textfile_collector"
    dlab.ssh(host, f"mkdir -p /root/prom /var/lib/node_exporter && ln -sfn /root/prom {collector}")
    try:
        proc = dlab.run_agent(
            "daemon", "install", "-i", str(dlab.inventory_yml), "--limit", "h1",
            "--source", str(dlab.registry_yml), "--storage-ca", str(dlab.storage_ca),
            "--metrics-file", f"{collector}/trust_agent.prom",
        )  # fmt: skip
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert (
            f"h1: failed: --metrics-file {collector}/trust_agent.prom resolves to /root/prom/trust_agent.prom "
            "on this host: the service cannot write home directories (ProtectHome=yes); choose a path "
            "outside /root, /home, /run/user and /tmp"
        ) in proc.stdout
        assert dlab.ssh(host, "test -e /etc/trust-agent || echo absent").stdout.strip() == "absent"
    finally:
        dlab.ssh(host, f"rm -rf {collector} /var/lib/node_exporter /root/prom", check=False)
