"""The trust facts the agent is built on, reproduced with real pulls and pushes on lab hosts."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.lab import Host, Lab
from tests.lab.network import nsenter
from tests.lab.procs import clean_env

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


# Asks a registry on 127.0.0.1 (in the registry's namespace) for the image's config blob, without
# following the redirect, and prints the answer's status and Location.
_REDIRECT_PROBE = r"""
import http.client, json, sys, time
port, repo, tag = int(sys.argv[1]), sys.argv[2], sys.argv[3]
deadline = time.monotonic() + 20
while True:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", f"/v2/{repo}/manifests/{tag}",
                     headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        answer = conn.getresponse()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
manifest = json.loads(answer.read())
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
conn.request("GET", f"/v2/{repo}/blobs/{manifest['config']['digest']}")
blob = conn.getresponse()
print(blob.status, blob.getheader("Location") or "")
"""


@pytest.mark.parametrize(
    ("driver", "endpoint", "secure"),
    [("s3", "https://{s3}", False), ("s3aws", "https://{s3}", True)],
    ids=["secure-false-with-https-endpoint", "s3aws-driver-name"],
)
def test_the_registry_redirects_where_the_policy_says(
    lab: Lab, tmp_path: Path, driver: str, endpoint: str, secure: bool
) -> None:
    """distribution's S3 driver answers to `s3aws` too, and `secure: false` does not turn an endpoint's
    own https:// into http:// (the AWS SDK adds a scheme only where there is none): engines are sent to
    https://<storage>, so the storage CA is needed, and the policy says so."""
    config = yaml.safe_load(lab.registry_yml.read_text())
    s3 = config["storage"].pop("s3")
    s3.update(regionendpoint=endpoint.format(s3=lab.s3_authority), secure=secure)
    config["storage"][driver] = s3
    config["http"] = {"addr": "127.0.0.1:5999", "secret": config["http"]["secret"]}
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    repo, _, tag = lab.image.partition("/")[2].rpartition(":")
    registry = subprocess.Popen(
        [*nsenter(lab.state["registry"]["namespace"]), "docker-registry", "serve", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=clean_env(SSL_CERT_FILE=str(lab.storage_ca)),
    )
    try:
        probe = subprocess.run(
            [*nsenter(lab.state["registry"]["namespace"]), sys.executable, "-c", _REDIRECT_PROBE,
             "5999", repo, tag],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
    finally:
        registry.terminate()
        registry.wait(timeout=15)
    status, location = probe.stdout.split()
    policy = json.loads(
        lab.run_agent(
            "policy", "--source", str(path), "--registry", lab.registry, "--storage-ca", str(lab.storage_ca),
            check=True,
        ).stdout
    )  # fmt: skip

    assert status == "307" and location.startswith(f"https://{lab.s3_authority}/"), probe.stdout
    assert (policy["storage_scheme"], policy["storage_endpoint"]) == ("https", lab.s3_authority)
    assert [ca["role"] for ca in policy["ca_files"]] == ["storage"]
