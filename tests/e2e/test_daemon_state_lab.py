"""What the per-host daemon's status says across systemd's stops and failed starts: the unit's
ExecStopPost= (``daemon run --mark-stopped``) reads how the service ended from what systemd tells it
(SERVICE_RESULT), and only a start that failed is recorded as one."""

from __future__ import annotations

import pytest

from tests.e2e.test_daemon_lab import dlab, install, status, wait_for, wheels  # noqa: F401 - fixtures
from tests.lab import Lab

pytestmark = pytest.mark.lab

CONFIG = "/etc/trust-agent/daemon.yml"
GOOD_CONFIG = "/etc/trust-agent/daemon.yml.good"  # under /etc/trust-agent: the fixture removes it


def test_a_plain_stop_says_stopped_and_only_a_start_that_fails_says_why(dlab: Lab) -> None:  # noqa: F811
    """A stop with the configuration broken while the daemon ran said "the daemon cannot start"; a
    configuration that loads but does not hold together (a root that is not a directory) was never
    recorded at all."""
    host = dlab.host("h1")
    assert install(dlab, limit="h1")["h1"]["status"] == "installed"
    assert status(dlab, host)["healthy"] is True

    # A plain stop: the daemon's own "stopped", nothing wrong.
    dlab.ssh(host, "systemctl stop trust-agent")
    stopped = status(dlab, host)
    assert (stopped["state"], stopped["last_cycle_state"], stopped["last_error"]) == ("stopped", "ok", None)

    # The configuration broken while the daemon runs, then a plain stop: the daemon did start, and
    # stopped as asked.
    dlab.ssh(host, "systemctl start trust-agent")
    assert status(dlab, host)["healthy"] is True
    dlab.ssh(host, f'cp {CONFIG} {GOOD_CONFIG}; echo "interval: [" >> {CONFIG}; systemctl stop trust-agent')
    after = status(dlab, host)
    assert (after["state"], after["last_error"]) == ("stopped", None), after

    # The next start fails on it: that is recorded.
    refused = "the daemon cannot start: Invalid value for '--config': /etc/trust-agent/daemon.yml:"
    assert dlab.ssh(host, "systemctl start trust-agent", check=False).returncode != 0

    def says(prefix: str) -> bool:
        said = status(dlab, host)
        return said["state"] == "stopped" and str(said["last_error"]).startswith(prefix)

    wait_for("status.json says the start failed on the file", lambda: says(refused), timeout=15)

    # A file that loads but does not hold together: a start-up error all the same.
    dlab.ssh(
        host,
        f"cp {GOOD_CONFIG} {CONFIG}; printf 'root: /nonexistent\\nstate_dir: /var/lib/trust-agent\\n' >> {CONFIG}",
    )
    # reset-failed: the failed starts must not reach the unit's start limit (StartLimitBurst=).
    restart = "systemctl reset-failed trust-agent; systemctl restart trust-agent"
    assert dlab.ssh(host, restart, check=False).returncode != 0
    bad_root = "the daemon cannot start: --root /nonexistent: not a directory"
    wait_for("status.json says the start failed on --root", lambda: says(bad_root), timeout=15)
    assert status(dlab, host)["healthy"] is False

    # Mended: the daemon starts and says ok again.
    dlab.ssh(
        host, f"cp {GOOD_CONFIG} {CONFIG}; systemctl reset-failed trust-agent; systemctl restart trust-agent"
    )
    assert status(dlab, host)["healthy"] is True
