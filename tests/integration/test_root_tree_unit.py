"""plan and apply against a --root tree whose image holds docker.service: its drop-ins, its
EnvironmentFile and its --config-file are the image's dockerd's, read inside the tree; and links inside
the tree, refused by the plan as the apply refuses them.

These run the real CLI in-process against a directory tree (the image-baking mode): no engine involved.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.test_local_tree import CA_CONFIG, SKIP_CONFIG, run, snapshot
from tests.pki import make_ca

# Debian's docker.io unit, as an image holds it.
DEBIAN_UNIT = """[Unit]
Description=Docker Application Container Engine

[Service]
Type=notify
EnvironmentFile=-/etc/default/docker
ExecStart=/usr/sbin/dockerd -H fd:// $DOCKER_OPTS
ExecReload=/bin/kill -s HUP $MAINPID
"""
FLAG_SAID = (
    "sets --insecure-registry; the same directive (insecure-registries) in daemon.json would stop dockerd"
)


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "config-skip.yml").write_text(SKIP_CONFIG)
    (tmp_path / "config.yml").write_text(CA_CONFIG)
    (tmp_path / "storage-ca.pem").write_bytes(make_ca("Lab Storage CA")[0])
    return {
        "skip": tmp_path / "config-skip.yml",
        "ca": tmp_path / "config.yml",
        "ca_pem": tmp_path / "storage-ca.pem",
    }


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """An image's tree with Debian's docker.service and nothing of the agent's yet."""
    root = tmp_path / "tree"
    unit = root / "lib/systemd/system/docker.service"
    unit.parent.mkdir(parents=True)
    unit.write_text(DEBIAN_UNIT)
    return root


def in_tree(command: str, root: Path, source: Path, *extra: str) -> tuple[int, str]:
    return run(command, "--source", str(source), "--local", "--root", str(root), *extra)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_drop_in_passing_insecure_registry_blocks_the_skip_tls_plan_and_apply(
    tree: Path, sources: dict[str, Path]
) -> None:
    """The drop-in was not read: apply wrote insecure-registries into daemon.json, exit 0, baking an
    image whose dockerd does not start."""
    drop_in = "/etc/systemd/system/docker.service.d/registry.conf"
    write(
        tree / drop_in.lstrip("/"),
        "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd --insecure-registry=x.test\n",
    )
    before = snapshot(tree)
    code, out = in_tree("plan", tree, sources["skip"])
    assert code == 1, out
    assert f"{drop_in} {FLAG_SAID}" in out
    code, out = in_tree("apply", tree, sources["skip"])
    assert code == 1 and f"{drop_in} {FLAG_SAID}" in out, out
    assert snapshot(tree) == before
    assert not (tree / "etc/docker").exists()


def test_a_flag_in_the_trees_etc_default_docker_blocks_the_skip_tls_apply(
    tree: Path, sources: dict[str, Path]
) -> None:
    write(tree / "etc/default/docker", 'DOCKER_OPTS="--insecure-registry=x"\n')
    code, out = in_tree("apply", tree, sources["skip"])
    assert code == 1, out
    assert f"/lib/systemd/system/docker.service ($DOCKER_OPTS from /etc/default/docker) {FLAG_SAID}" in out
    assert not (tree / "etc/docker/daemon.json").exists()


def test_a_drop_in_in_etc_overrides_the_same_named_one_below_it(tree: Path, sources: dict[str, Path]) -> None:
    """systemd loads one drop-in of a name, the one in the directory of highest precedence."""
    flagged = "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd --insecure-registry=x.test\n"
    write(tree / "usr/lib/systemd/system/docker.service.d/opts.conf", flagged)
    write(
        tree / "etc/systemd/system/docker.service.d/opts.conf",
        "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd\n",
    )
    code, out = in_tree("apply", tree, sources["skip"])
    assert code == 0, out
    doc = json.loads((tree / "etc/docker/daemon.json").read_text())
    assert doc["insecure-registries"] == ["registry.test", "registry.test:443"]


def test_a_config_file_in_the_trees_unit_is_the_file_written_inside_the_tree(
    tree: Path, sources: dict[str, Path]
) -> None:
    """The file written was /etc/docker/daemon.json, one the image's dockerd never reads."""
    config_file = "/etc/trust-agent-test-engine/engine.json"
    write(
        tree / "etc/systemd/system/docker.service.d/config.conf",
        f"[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd -H fd:// --config-file {config_file}\n",
    )
    write(tree / config_file.lstrip("/"), '{"debug": true}\n')
    code, out = in_tree("apply", tree, sources["skip"])
    assert code == 0, out
    doc = json.loads((tree / config_file.lstrip("/")).read_text())
    assert doc == {"debug": True, "insecure-registries": ["registry.test", "registry.test:443"]}
    assert not (tree / "etc/docker/daemon.json").exists()
    assert not Path(config_file).exists(), "the build machine's own path was written"


def test_an_environment_file_leading_out_of_the_tree_is_refused_not_read(
    tree: Path, sources: dict[str, Path], tmp_path: Path
) -> None:
    outside = tmp_path / "build-machine-default"
    outside.write_text('DOCKER_OPTS="--debug"\n')
    (tree / "etc/default").mkdir(parents=True)
    (tree / "etc/default/docker").symlink_to(outside)
    code, out = in_tree("plan", tree, sources["skip"])
    assert code == 1, out
    assert (
        f"{tree}/etc/default/docker is a symbolic link to {outside}, which leads out of the --root tree"
        in out
    )
    assert "nothing written" in out


def test_a_tree_without_any_unit_is_written_as_before(tmp_path: Path, sources: dict[str, Path]) -> None:
    root = tmp_path / "bare"
    root.mkdir()
    code, out = in_tree("apply", root, sources["skip"])
    assert code == 0, out
    doc = json.loads((root / "etc/docker/daemon.json").read_text())
    assert doc["insecure-registries"] == ["registry.test", "registry.test:443"]


def test_a_link_inside_the_tree_to_etc_docker_is_refused_by_the_plan_and_the_apply_writes_nothing(
    tmp_path: Path, sources: dict[str, Path]
) -> None:
    """plan said pending with full diffs; apply then failed tersely, having made var/lib/trust-agent/lock
    in the tree."""
    root = tmp_path / "linked"
    (root / "etc").mkdir(parents=True)
    (root / "data/docker").mkdir(parents=True)
    (root / "etc/docker").symlink_to("../data/docker")
    said = (
        f"{root}/etc/docker is a symbolic link: in a --root tree, trust-agent does not follow it (it leads to "
        "../data/docker); replace the link with the directory it leads to, or write its target's files "
        "yourself, then run again (nothing written)"
    )
    ca = ("--storage-ca", str(sources["ca_pem"]))
    code, out = in_tree("plan", root, sources["ca"], *ca)
    assert code == 1 and said in out and "pending" not in out, out
    code, out = in_tree("apply", root, sources["ca"], *ca)
    assert code == 1 and said in out, out
    assert not (root / "var").exists()
    assert not list((root / "data/docker").iterdir())


def test_an_environment_file_glob_is_matched_inside_the_tree(tree: Path, sources: dict[str, Path]) -> None:
    write(
        tree / "etc/systemd/system/docker.service.d/env.conf",
        "[Service]\nEnvironmentFile=-/etc/default/docker.d/*.env\n",
    )
    write(tree / "etc/default/docker.d/10-registry.env", 'DOCKER_OPTS="--insecure-registry=x"\n')
    code, out = in_tree("apply", tree, sources["skip"])
    assert code == 1, out
    assert f"($DOCKER_OPTS from /etc/default/docker.d/10-registry.env) {FLAG_SAID}" in out
    assert not (tree / "etc/docker/daemon.json").exists()
