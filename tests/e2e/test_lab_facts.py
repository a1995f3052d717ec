"""The trust facts the agent is built on, reproduced with real pulls and pushes on lab hosts."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator

import pytest

from tests.lab import Host, Lab

pytestmark = pytest.mark.lab

X509 = "x509: certificate signed by unknown authority"


@pytest.fixture
def host(lab: Lab) -> Host:
    return lab.hosts[0]


def put_file(lab: Lab, host: Host, path: str, text: str) -> None:
    lab.ssh(host, f"mkdir -p {shlex.quote(path.rsplit('/', 1)[0])} && cat > {shlex.quote(path)}", input=text)


def pull(lab: Lab, host: Host) -> tuple[int, str]:
    proc = lab.ssh(host, f"docker pull {lab.image}", check=False)
    return proc.returncode, proc.stdout + proc.stderr


def push_failure_reason(lab: Lab, host: Host, tag: str) -> str:
    """Start a push and stop it after its first failed layer upload (its retries take ~50 s).

    What dockerd logged for that upload says why it failed.
    """
    ref = f"{lab.registry}/test/{tag}"
    script = f"""
since=$(date +%s)
docker tag {lab.runnable_image} {ref}
timeout 4 docker push {ref} >/dev/null 2>&1; rc=$?
docker rmi {ref} >/dev/null
journalctl -u docker --no-pager -o cat --since @$since | grep 'Upload failed' | head -1
exit $rc
"""
    proc = lab.ssh(host, script, check=False)
    assert proc.returncode != 0, "the push was expected to fail"
    return proc.stdout


def push(lab: Lab, host: Host, tag: str) -> None:
    ref = f"{lab.registry}/test/{tag}"
    lab.ssh(
        host, f"docker tag {lab.runnable_image} {ref} && docker push {ref} >/dev/null && docker rmi {ref}"
    )


def storage_gets_from(lab: Lab, host: Host, offset: int) -> list[str]:
    """Blob reads the S3 server served to HOST itself (a redirected pull), since byte OFFSET of its log."""
    with open(lab.s3_log, errors="replace") as log:
        log.seek(offset)
        return [line for line in log if line.startswith(host.address + " ") and '"GET /registry/' in line]


def s3_log_size(lab: Lab) -> int:
    return (lab.s3_log).stat().st_size


def dockerd_pid(lab: Lab, host: Host) -> str:
    return lab.ssh(host, "systemctl show -p MainPID --value docker").stdout.strip()


def test_registry_ca_alone_fails_at_the_storage_redirect(lab: Lab, host: Host) -> None:
    put_file(lab, host, f"/etc/docker/certs.d/{lab.registry}/ca.crt", lab.registry_ca.read_text())

    rc, out = pull(lab, host)

    assert rc != 0
    # The manifest came from the registry (its CA is trusted); the config blob, on S3, did not.
    assert "error pulling image configuration" in out and X509 in out
    assert X509 in push_failure_reason(lab, host, "fact1:1")


def test_storage_ca_in_the_storage_hosts_directory_does_nothing(lab: Lab, host: Host) -> None:
    put_file(lab, host, f"/etc/docker/certs.d/{lab.registry}/ca.crt", lab.registry_ca.read_text())
    put_file(lab, host, f"/etc/docker/certs.d/{lab.s3_authority}/ca.crt", lab.storage_ca.read_text())

    rc, out = pull(lab, host)

    assert rc != 0 and X509 in out


def test_storage_ca_in_the_registry_directory_works_without_reload(lab: Lab, host: Host) -> None:
    put_file(lab, host, f"/etc/docker/certs.d/{lab.registry}/ca.crt", lab.registry_ca.read_text())
    rc, out = pull(lab, host)
    assert rc != 0 and X509 in out
    pid = dockerd_pid(lab, host)
    since = lab.ssh(host, "date +%s").stdout.strip()
    offset = s3_log_size(lab)

    put_file(lab, host, f"/etc/docker/certs.d/{lab.registry}/storage-ca.crt", lab.storage_ca.read_text())
    rc, out = pull(lab, host)

    assert rc == 0, out
    assert storage_gets_from(lab, host, offset), "the pull did not read blobs from S3 itself"
    push(lab, host, "fact3:1")
    assert dockerd_pid(lab, host) == pid
    journal = lab.ssh(host, f"journalctl -u docker --no-pager -o cat --since @{since}").stdout
    assert "Got signal to reload configuration" not in journal


@pytest.fixture
def sleeper(lab: Lab, host: Host) -> Iterator[str]:
    # --init: the sleep then stops on TERM, so a later host shutdown is not held up 10 s.
    cid = lab.ssh(host, f"docker run -d --init {lab.runnable_image} sleep 3600").stdout.strip()
    yield cid
    lab.ssh(host, f"docker rm -f {cid}", check=False)


def container_identity(lab: Lab, host: Host, cid: str) -> tuple[str, str, bool]:
    out = lab.ssh(
        host, f"docker inspect -f '{{{{.Id}}}} {{{{.State.StartedAt}}}} {{{{.State.Running}}}}' {cid}"
    )
    ident, started, running = out.stdout.split()
    return ident, started, running == "true"


def insecure(lab: Lab, host: Host) -> bool:
    out = lab.ssh(host, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout
    configs = json.loads(out)
    return lab.registry in configs and not configs[lab.registry]["Secure"]


def test_insecure_registry_by_reload_keeps_containers(lab: Lab, host: Host, sleeper: str) -> None:
    before = container_identity(lab, host, sleeper)
    pid = dockerd_pid(lab, host)
    rc, out = pull(lab, host)
    assert rc != 0 and X509 in out
    daemon_json = json.loads(lab.ssh(host, "cat /etc/docker/daemon.json").stdout)
    offset = s3_log_size(lab)

    daemon_json["insecure-registries"] = [lab.registry]
    put_file(lab, host, "/etc/docker/daemon.json", json.dumps(daemon_json, indent=2) + "\n")
    lab.ssh(host, "systemctl reload docker")
    deadline = time.monotonic() + 15
    while not insecure(lab, host):
        assert time.monotonic() < deadline, "the reload did not make the registry insecure"
        time.sleep(0.2)
    rc, out = pull(lab, host)

    assert rc == 0, out
    assert storage_gets_from(lab, host, offset), "the pull did not read blobs from S3 itself"
    push(lab, host, "fact4:1")
    assert dockerd_pid(lab, host) == pid
    after = container_identity(lab, host, sleeper)
    assert after == before and after[2]
