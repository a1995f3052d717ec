"""The canary pull proves the storage redirect only where it fetched a blob through it, on both engines.

A pull of an image the engine holds under another name (``registry.test/test/busybox:1`` held, the
canary ``registry.test:443/test/busybox:1``) reads the manifest from the registry and fetches no blob:
it passed with a wrong storage CA, reported as proof, with no warning. A pull that fetches the image
config alone (its layers held by another image) goes through the redirect, though dockerd shows no
progress line for it.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.e2e.probes import converged, outcome_of
from tests.lab import Host, Lab
from tests.pki import make_ca

pytestmark = pytest.mark.lab

FLAVOURS = ("bookworm", "trixie")
ENGINE = {"bookworm": "20.10.", "trixie": "26.1."}


@pytest.fixture
def fleet(mixed_lab: Lab) -> Lab:
    """The mixed fleet (h1, h3: Docker 20.10; h2, h4: 26.1), storage with its own CA, reset."""
    return mixed_lab


@pytest.fixture(params=FLAVOURS)
def host(fleet: Lab, request: pytest.FixtureRequest) -> Host:
    """The fleet's first host of one engine (the fleet reset: trust state and the registry's images)."""
    return fleet.hosts_of(request.param)[0]


def wrong_storage_ca(lab: Lab, tmp_path: Path) -> list[str]:
    """The lab's registry config with a storage CA that is not the storage's; no TLS check from here,
    so the canary alone stands between a wrong CA and the fleet."""
    wrong = tmp_path / "old-storage-ca.pem"
    wrong.write_bytes(make_ca("old")[0])
    return [
        "--source", str(lab.registry_yml), "--storage-ca", str(wrong), "--registry-ca", str(lab.registry_ca),
        "--no-tls-check",
    ]  # fmt: skip


def storage_reads_from(lab: Lab, host: Host, offset: int) -> list[str]:
    """The blob reads the S3 server served to ``host`` (redirected pulls) since byte ``offset`` of its log."""
    with open(lab.s3_log, errors="replace") as log:
        log.seek(offset)
        return [line for line in log if line.startswith(host.address + " ") and '"GET /registry/' in line]


def s3_log_size(lab: Lab) -> int:
    return lab.s3_log.stat().st_size


def docker_pull(lab: Lab, host: Host, image: str) -> None:
    """A real ``docker pull`` on ``host``, which must succeed."""
    pulled = lab.ssh(host, f"docker pull {shlex.quote(image)} 2>&1", check=False)
    assert pulled.returncode == 0, pulled.stdout


def test_a_canary_held_under_another_name_is_unproved_and_a_host_warning(
    fleet: Lab, host: Host, tmp_path: Path
) -> None:
    """The tester's repro: the image held as registry.test/test/busybox:1, the canary its :443 name, and
    a wrong storage CA; the run said ``verified: canary pull``, no warning, exit 0."""
    held = fleet.image
    canary = held.replace(fleet.registry, f"{fleet.registry}:443", 1)
    converged(fleet, host)
    docker_pull(fleet, host, held)
    offset = s3_log_size(fleet)

    code, outcome, err = outcome_of(
        fleet, "rollout", host, *wrong_storage_ca(fleet, tmp_path), "--canary-image", canary
    )

    # The CA may be right: a warning, not a failure; but no proof is claimed.
    assert (code, outcome["status"]) == (0, "changed"), (err, outcome)
    assert outcome["engine_version"].startswith(ENGINE[host.flavour]), outcome
    (said,) = [v for v in outcome["verified"] if v.startswith("canary pull")]
    assert said == (
        f"canary pull {canary} (on the host already, also tagged {held}: no blob fetched, the storage "
        "redirect unproved)"
    ), outcome
    assert outcome["warnings"] == [
        f"the storage redirect is unproved: the canary pull of {canary} fetched no blob (the image is on the "
        f"host already, also tagged {held}), so a wrong storage CA would pass it too; give a canary image "
        "the host does not hold to prove it"
    ], outcome
    assert storage_reads_from(fleet, host, offset) == [], "the canary pull read nothing from the storage"
    # The CA it left is wrong indeed: a pull that fetches blobs fails.
    fleet.ssh(host, f"docker rmi {shlex.quote(held)} {shlex.quote(canary)}")
    refused = fleet.ssh(host, f"docker pull {shlex.quote(held)} 2>&1", check=False)
    assert refused.returncode != 0 and "x509" in refused.stdout, refused.stdout


def config_only_canary(lab: Lab, host: Host) -> str:
    """An image of the registry whose layers the host holds (another image's) but not its config: the
    lab's image with a label, built and pushed from ``host``, then removed there."""
    image = f"{lab.registry}/test/labelled-{host.name}:1"
    build = (
        f"set -e; d=$(mktemp -d); printf 'FROM {lab.image}\\nLABEL canary={host.name}\\n' > $d/Dockerfile; "
        f"DOCKER_BUILDKIT=0 docker build -q -t {image} $d >/dev/null 2>&1; rm -r $d; "
        f"docker push {image} >/dev/null; docker rmi {image} >/dev/null"
    )
    docker_pull(lab, host, lab.image)
    lab.ssh(host, build)
    return image


def test_a_canary_whose_config_alone_is_fetched_proves_the_redirect_and_fails_a_wrong_ca(
    fleet: Lab, host: Host, tmp_path: Path
) -> None:
    """dockerd says "Already exists" of each layer and nothing of the config it fetches: that fetch
    goes through the redirect all the same (x509 with a wrong storage CA), so it proves it."""
    converged(fleet, host)
    canary = config_only_canary(fleet, host)
    offset = s3_log_size(fleet)

    code, outcome, err = outcome_of(fleet, "rollout", host, "--canary-image", canary)

    assert (code, outcome["status"]) == (0, "unchanged"), (err, outcome)
    assert outcome["engine_version"].startswith(ENGINE[host.flavour]), outcome
    assert f"canary pull {canary}" in outcome["verified"] and outcome["warnings"] == [], outcome
    assert storage_reads_from(fleet, host, offset), "the config came from the storage"

    fleet.ssh(host, f"docker rmi {shlex.quote(canary)}")
    code, outcome, err = outcome_of(
        fleet, "rollout", host, *wrong_storage_ca(fleet, tmp_path), "--canary-image", canary
    )
    assert (code, outcome["status"]) == (1, "rolled_back"), (err, outcome)
    assert f"canary pull of {canary} failed: error pulling image configuration" in outcome["error"], outcome
    assert "x509" in outcome["error"], outcome
