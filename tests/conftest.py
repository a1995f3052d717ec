"""Shared fixtures. The lab fixtures bring up a real fleet (tests/lab) once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Make `tests.lab` importable however pytest was started (venv script or python -m pytest).
_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.ci import missing_prerequisite  # noqa: E402
from tests.lab import (  # noqa: E402
    Lab,
    down,
    prereqs,
    up,
)

LAB_HOSTS = 3
LAB_STORAGE = "ca"
# A mixed fleet: Debian 12's docker.io 20.10 (no `dockerd --validate`) beside Debian 13's 26.1.
MIXED_LAB_HOSTS = 4
MIXED_LAB_FLAVOURS = ("bookworm", "trixie")


def require_lab(flavours: tuple[str, ...] = ("bookworm",)) -> None:
    """In CI a missing prerequisite is a failure; elsewhere the lab tests are skipped."""
    missing = prereqs.missing(flavours)
    if not missing:
        return
    missing_prerequisite("lab prerequisites missing: " + "; ".join(missing))


@pytest.fixture(scope="session")
def lab_prerequisites() -> None:
    """For lab tests that make their own lab: skip (or, in CI, fail) when the machine cannot."""
    require_lab()


@pytest.fixture(scope="session")
def lab_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The session's fleet (3 hosts, storage with its own CA), as it is: no per-test reset.

    TRUST_AGENT_LAB_DIR reuses (or creates) a lab in that directory and leaves it up afterwards.
    """
    require_lab()
    given = os.environ.get("TRUST_AGENT_LAB_DIR")
    lab_dir = Path(given) if given else tmp_path_factory.mktemp("lab")
    try:
        lab = up(lab_dir, LAB_HOSTS, LAB_STORAGE)
    except BaseException:
        if not given:
            down(lab_dir)
        raise
    print(f"\nlab: {lab.dir} up, timings {lab.timings}")
    yield lab
    if given:
        lab.reset()  # left up for people and tools: leave it as `up` made it
    else:
        down(lab_dir)


@pytest.fixture
def lab(lab_session: Lab) -> Lab:
    """The session's fleet with every host's trust state back to the base image's."""
    lab_session.reset()
    return lab_session


@pytest.fixture(scope="session")
def mixed_lab_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A second fleet of 4 hosts, bookworm and trixie in turn (h1, h3: 20.10; h2, h4: 26.1).

    Made only when a test asks for it. TRUST_AGENT_MIXED_LAB_DIR reuses (or creates) a lab in that
    directory and leaves it up afterwards.
    """
    require_lab(MIXED_LAB_FLAVOURS)
    given = os.environ.get("TRUST_AGENT_MIXED_LAB_DIR")
    lab_dir = Path(given) if given else tmp_path_factory.mktemp("mixed-lab")
    try:
        lab = up(lab_dir, MIXED_LAB_HOSTS, LAB_STORAGE, flavours=MIXED_LAB_FLAVOURS)
    except BaseException:
        if not given:
            down(lab_dir)
        raise
    print(f"\nmixed lab: {lab.dir} up, timings {lab.timings}")
    yield lab
    if given:
        lab.reset()
    else:
        down(lab_dir)


@pytest.fixture
def mixed_lab(mixed_lab_session: Lab) -> Lab:
    """The mixed fleet with every host's trust state back to its base image's."""
    mixed_lab_session.reset()
    return mixed_lab_session


ANSIBLE_VENV = Path(os.environ.get("TRUST_AGENT_ANSIBLE_VENV", "/var/cache/trust-agent-test/ansible-venv"))
CONTROLLER_ENV = _ROOT / "ansible-compat" / "scripts" / "controller-env.sh"


@pytest.fixture(scope="session")
def ansible_bin() -> Path:
    """bin/ of a controller venv with ansible-core and trust-agent, made once by the controller-env
    script and cached (``TRUST_AGENT_ANSIBLE_VENV``). Missing: a skip here, a failure in CI."""
    try:
        subprocess.run(
            ["sh", str(CONTROLLER_ENV), str(ANSIBLE_VENV), "--editable"],
            check=True,
            capture_output=True,
            text=True,
            timeout=900,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        missing_prerequisite(f"no ansible controller environment ({ANSIBLE_VENV}): {detail.strip()[-500:]}")
    return ANSIBLE_VENV / "bin"
