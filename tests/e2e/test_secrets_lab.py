"""Secrets in a host's daemon.json stay on the host. The file may be 0600 there, while a report (and
the daemon's status.json, and the journal) is read by others: what trust-agent quotes from the file
hides a secret-named key's value, a URL's password and its query's values.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.probes import LAB_DAEMON_JSON, outcome_of, skip_args
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab

DAEMON_JSON = "/etc/docker/daemon.json"


@pytest.fixture
def docker_20_10(lab: Lab) -> Iterator[Host]:
    """A Docker 20.10 host (it reads a daemon.json with data after its document); after the test,
    every host gets its base daemon.json back and dockerd restarted."""
    host = lab.hosts_of("bookworm")[0]
    assert lab.ssh(host, "dockerd --version").stdout.startswith("Docker version 20.10."), "a 20.10 host"
    yield host
    lab.reset()


def write_private(lab: Lab, host: Host, raw: bytes) -> None:
    """``raw`` as the host's daemon.json, readable by root alone; dockerd is not told."""
    lab.ssh(
        host, f"umask 077 && printf %s {shlex.quote(raw.decode())} > {DAEMON_JSON} && chmod 600 {DAEMON_JSON}"
    )


def base_doc(lab: Lab, host: Host) -> dict[str, Any]:
    return dict(json.loads(lab.ssh(host, f"cat {LAB_DAEMON_JSON}").stdout))


@pytest.mark.parametrize(
    ("trailing", "secret", "shown"),
    [
        ('{"api_token": "SNIPTOK_7abc"}', "SNIPTOK_7", '"{\\"api_token\\": \\"***\\"}"'),
        ('{"proxy": "http://u:PW_77@proxy"}', "PW_77", '"{\\"proxy\\": \\"http://***@pr..."'),
    ],
)
def test_the_trailing_data_warning_quotes_no_secret(
    lab: Lab, docker_20_10: Host, trailing: str, secret: str, shown: str
) -> None:
    host = docker_20_10
    write_private(lab, host, json.dumps(base_doc(lab, host)).encode() + f"\n{trailing}\n".encode())

    code, outcome, err = outcome_of(lab, "plan", host)
    assert code == 0, (err, outcome)
    (warning,) = [w for w in outcome["warnings"] if "after the end of its JSON document" in w]
    assert f"{DAEMON_JSON} has {shown} after the end of its JSON document (line 2, column 1)" in warning
    assert secret not in json.dumps(outcome) and secret not in err, (err, outcome)


def test_a_refused_mirror_is_named_with_its_password_masked(
    lab: Lab, docker_20_10: Host, tmp_path: Path
) -> None:
    """dockerd 20.10 has no --validate: the agent's own check names the entry, as dockerd masks it."""
    host = docker_20_10
    mirror = "https://muser:MIRRPW_6@mirror.corp:5000/v2/?token=MIRRTOK"
    write_private(lab, host, json.dumps({**base_doc(lab, host), "registry-mirrors": [mirror]}).encode())

    # A skip-TLS policy writes daemon.json, so the file is checked before it is.
    code, outcome, err = outcome_of(lab, "plan", host, *skip_args(lab, tmp_path))
    said = json.dumps(outcome)
    assert code != 0 and outcome["status"] == "failed", (err, outcome)
    assert "registry-mirrors: 'https://muser:xxxxx@mirror.corp:5000/v2/?token=xxxxx'" in said, said
    assert not any(secret in said or secret in err for secret in ("MIRRPW_6", "MIRRTOK")), (err, outcome)
