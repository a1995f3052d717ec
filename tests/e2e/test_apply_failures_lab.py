"""An apply that fails on the host: the failure is said with its real cause, and nothing is left written."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.probes import docker_tree, outcome_of
from tests.lab import Host, Lab

pytestmark = pytest.mark.lab

PAGE = 4096
SMALL_DOCKER_DIR = "mount -t tmpfs -o size=64k,mode=755 tmpfs /etc/docker"
KEPT = "/run/ta-docker"  # /etc/docker's files, copied onto the small filesystem


@pytest.fixture
def small_docker_dir(lab: Lab) -> Iterator[Host]:
    """h3 with /etc/docker on a 64 KiB tmpfs holding its files; the disk's own /etc/docker back after."""
    host = lab.hosts[2]
    lab.ssh(
        host,
        f"mkdir -p {KEPT} && cp -a /etc/docker/. {KEPT}/ && {SMALL_DOCKER_DIR} && cp -a {KEPT}/. /etc/docker/",
    )
    try:
        yield host
    finally:
        lab.ssh(host, f"umount /etc/docker && rm -rf {KEPT}")


def fill_to(lab: Lab, host: Host, free_pages: int) -> None:
    """/etc/docker's filesystem filled until ``free_pages`` pages are free (bounded by its 16 pages)."""
    lab.ssh(
        host,
        "rm -f /etc/docker/fill; "
        f"free=$(stat -f -c %f /etc/docker); dd if=/dev/zero of=/etc/docker/fill bs={PAGE} count=$((free - {free_pages})) 2>/dev/null; "
        f'[ "$(stat -f -c %f /etc/docker)" -eq {free_pages} ]',
    )


@pytest.mark.parametrize("free_pages", [0, 3])
def test_a_full_filesystem_is_named_as_such_and_nothing_is_written(
    lab: Lab, small_docker_dir: Host, free_pages: int
) -> None:
    """dash's printf says "I/O error" of a full disk: the rollout failed with "(is it full, or
    read-only?)", leaving a person to guess which."""
    host = small_docker_dir
    fill_to(lab, host, free_pages)
    before = docker_tree(lab, host)
    code, outcome, err = outcome_of(lab, "rollout", host)
    assert (code, outcome["status"]) == (1, "failed"), (err, outcome)
    said = outcome["error"]
    assert f"cannot write into /etc/docker/certs.d/{lab.registry}" in said, said
    assert (
        ": no space left on device (0 KiB free on its filesystem); free space there, then run again" in said
    ), said
    assert "is it full, or read-only?" not in said, said
    assert docker_tree(lab, host) == before  # refused part way: nothing left behind
