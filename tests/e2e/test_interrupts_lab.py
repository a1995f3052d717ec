"""Ctrl-C during a rollout on real hosts: a host still connecting is left at once, one in its apply is
finished, and a host left that way runs nothing on its host when its connection comes up after all."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.daemon.install import LEFT_CONNECTING
from agent.fleet import INTERRUPTED, LEFT
from agent.progress import interrupted_line
from tests.e2e.probes import by_host, ca_args, docker_tree, skip_args
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab

# What Ctrl-C says with one host in its apply and one still connecting: the host left is said too.
FINISHING_ONE_LEAVING_ONE = (
    "interrupted: finishing the 1 host in flight (leaving at once the 1 host still connecting or reading "
    "its facts: nothing was changed on it), starting no other; interrupt again to stop at once (hosts then "
    "left part way)"
)
DROP_IN = "/etc/systemd/system/docker.service.d/slow-reload.conf"
RELOAD_SECONDS = 5
# Far longer than the run takes once interrupted: a run that waits out a connect is plain to see.
CONNECT_TIMEOUT = 60
# A lab address no host has: its neighbour entry points at a MAC nobody owns, so a SYN sent there goes
# unanswered and a connect waits for its whole timeout (without the entry it fails at once, "No route
# to host").
SILENT_ADDRESS = "198.51.100.250"
NOBODY_MAC = "02:00:5e:00:00:fa"


@pytest.fixture
def slow_reload(lab: Lab) -> Iterator[Host]:
    """lab.hosts[1]'s docker.service takes RELOAD_SECONDS to reload: certainly in its apply that long."""
    host = lab.hosts[1]
    lab.ssh(
        host,
        f"mkdir -p {Path(DROP_IN).parent} && printf '%s\\n' '[Service]' 'ExecReload=' "
        f"'ExecReload=/bin/sh -c \"sleep {RELOAD_SECONDS}; kill -s HUP $MAINPID\"' > {DROP_IN} "
        "&& systemctl daemon-reload",
    )
    yield host
    lab.ssh(host, f"rm -f {DROP_IN} && systemctl daemon-reload")


@pytest.fixture
def silent_address(lab: Lab) -> Iterator[str]:
    neighbour = [SILENT_ADDRESS, "dev", "br0"]
    lab.run_in_ns(
        ["ip", "neigh", "replace", *neighbour, "lladdr", NOBODY_MAC, "nud", "permanent"], check=True
    )
    yield SILENT_ADDRESS
    lab.run_in_ns(["ip", "neigh", "del", *neighbour], check=False)


def inventory_with(lab: Lab, tmp_path: Path, hosts: dict[str, str]) -> Path:
    """The lab's inventory with ``hosts`` (name: address) alone."""
    inventory = yaml.safe_load(lab.inventory_yml.read_text())
    inventory["hosts"] = {name: {"address": address} for name, address in hosts.items()}
    inventory.pop("groups", None)
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def start_rollout(lab: Lab, tmp_path: Path, inventory: Path, *args: str) -> subprocess.Popen[str]:
    argv = ["rollout", "-i", str(inventory), *skip_args(lab, tmp_path), "--format", "json"]
    argv += ["--connect-timeout", str(CONNECT_TIMEOUT), *args]
    # Ctrl-C's default action, as a terminal gives it (a shell's background job would ignore SIGINT).
    return lab.popen_agent(*argv, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def said_until(agent: subprocess.Popen[str], start: str) -> str:
    """The rollout's stderr up to its line that starts with ``start`` (a host's, as it finishes)."""
    assert agent.stderr is not None
    lines = []
    for line in agent.stderr:  # ends with the process, whatever it says
        lines.append(line)
        if line.startswith(start):
            break
    return "".join(lines)


def wait_for_the_reload(lab: Lab, host: Host) -> None:
    deadline = time.monotonic() + 60
    while lab.ssh(host, "pgrep -f '^/bin/sh -c sleep [0-9]*; kill'", check=False).returncode != 0:
        assert time.monotonic() < deadline, f"{host.name}'s reload never started"
        time.sleep(0.05)


def interrupted(agent: subprocess.Popen[str], before: Any = None) -> tuple[float, dict[str, Any], str]:
    """SIGINT to the rollout, ``before()`` then, and its end: (seconds from the signal to the exit,
    the JSON report, stderr)."""
    sent = time.monotonic()
    try:
        agent.send_signal(signal.SIGINT)
        if before is not None:
            before()
        out, err = agent.communicate(timeout=CONNECT_TIMEOUT + 30)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.communicate()
    took = time.monotonic() - sent
    assert agent.returncode == 130, err
    return took, json.loads(out), err


def test_ctrl_c_leaves_a_host_still_connecting_at_once_and_finishes_the_one_in_its_apply(
    lab: Lab, tmp_path: Path, slow_reload: Host, silent_address: str
) -> None:
    """Ctrl-C waited out the connect timeout of a host whose SYN went unanswered, long after the host
    in its apply had finished."""
    first = lab.hosts[0]
    inventory = inventory_with(
        lab,
        tmp_path,
        {first.name: first.address, slow_reload.name: slow_reload.address, "ghost": silent_address},
    )
    agent = start_rollout(lab, tmp_path, inventory)
    said = said_until(agent, f"{first.name}: ")  # done: the reload alone is in flight with the connect
    wait_for_the_reload(lab, slow_reload)
    took, report, err = interrupted(agent)
    err = said + err

    # The reload alone is waited for (RELOAD_SECONDS at most, and its verify), not the connect.
    assert took < RELOAD_SECONDS + 10 < CONNECT_TIMEOUT, f"exited {took:.1f}s after Ctrl-C"
    assert FINISHING_ONE_LEAVING_ONE in err.splitlines(), err
    assert report["stopped"] == INTERRUPTED
    outcomes = by_host(report)
    assert (outcomes[first.name]["status"], outcomes[slow_reload.name]["status"]) == ("changed", "changed")
    assert (outcomes["ghost"]["status"], outcomes["ghost"]["error"]) == ("skipped", LEFT)


GATED_RELAY = """\
# A ProxyCommand that waits (bounded) until the test lets it through, then relays to the host.
i=0
while [ ! -e "$1" ] && [ "$i" -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done
exec "$2" "$3" "$4" "$5" "$6"
"""


def test_a_host_left_while_connecting_runs_nothing_when_its_login_comes_up_after_all(
    lab: Lab, tmp_path: Path, slow_reload: Host
) -> None:
    """The host's thread was not told: once its connection came up it would have gathered its facts and
    applied the change, after the run had said the host was not started."""
    late = lab.hosts[2]
    untouched = docker_tree(lab, late)
    go, relayed = tmp_path / "go", tmp_path / "relayed"
    (tmp_path / "gated_relay.sh").write_text(GATED_RELAY)
    relay = Path(__file__).parents[1] / "fixtures" / "tcp_relay.py"
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host {late.address}\n    ProxyCommand sh {tmp_path}/gated_relay.sh {go} {sys.executable} {relay} "
        f"%h %p {relayed}\n"
    )
    inventory = inventory_with(
        lab, tmp_path, {slow_reload.name: slow_reload.address, late.name: late.address}
    )
    agent = start_rollout(lab, tmp_path, inventory, "--ssh-config", str(config))
    wait_for_the_reload(lab, slow_reload)
    signalled = time.time()
    # Let the late host's connection through while the run still waits for the reload.
    took, report, err = interrupted(agent, before=go.touch)
    exited = time.time()
    assert FINISHING_ONE_LEAVING_ONE in err.splitlines(), err

    outcomes = by_host(report)
    assert outcomes[slow_reload.name]["status"] == "changed"
    assert (outcomes[late.name]["status"], outcomes[late.name]["error"]) == ("skipped", LEFT)
    assert relayed.read_text() == f"{late.address}:22\n", "the late host's connection never came up"
    # The logins from the signal to the exit: this test's own, to read the journal, comes after.
    since, until = math.floor(signalled), math.ceil(exited)
    time.sleep(max(0.0, until + 0.2 - time.time()))
    logins = lab.ssh(
        late,
        f"journalctl -u ssh --no-pager -o cat --since @{since} --until @{until} "
        "| grep -c '^Accepted publickey' || true",
    ).stdout
    assert int(logins) >= 1, "the late host was never logged into after the interrupt"
    assert docker_tree(lab, late) == untouched
    assert took < RELOAD_SECONDS + 10, f"exited {took:.1f}s after Ctrl-C"


def test_ctrl_c_leaves_a_host_still_connecting_at_once_in_a_daemon_install(
    lab: Lab, tmp_path: Path, silent_address: str
) -> None:
    """``daemon install`` waited out the connect timeout of a host whose SYN went unanswered, where a
    rollout left it at once."""
    first = lab.hosts[0]
    everyone = {host.name: host.address for host in lab.hosts}
    inventory = inventory_with(lab, tmp_path, {**everyone, "ghost": silent_address})
    # A python the host does not have: the real host is done within a second, nothing put on it.
    argv = ["daemon", "install", "-i", str(inventory), "--limit", f"{first.name}:ghost", *ca_args(lab)]
    argv += ["--python", "/nonexistent/python3", "--connect-timeout", str(CONNECT_TIMEOUT)]
    agent = lab.popen_agent(
        *argv, "--format", "json", preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
    )
    time.sleep(2)  # the ghost's connect has begun, and waits
    took, report, err = interrupted(agent)

    assert took < 10 < CONNECT_TIMEOUT, f"exited {took:.1f}s after Ctrl-C"
    said = {interrupted_line(in_flight, 1) for in_flight in (0, 1)}  # the real host done, or nearly
    assert said & set(err.splitlines()), err
    outcomes = by_host(report)
    assert (outcomes["ghost"]["status"], outcomes["ghost"]["error"]) == ("skipped", LEFT_CONNECTING)
    assert outcomes[first.name]["status"] == "failed"
    assert outcomes[first.name]["error"] == (
        "/nonexistent/python3 not found (install python3 and python3-venv)"
    )
