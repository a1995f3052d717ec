"""Shared fixtures. The lab fixtures bring up a real fleet (tests/lab) once per session."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Make `tests.lab` importable however pytest was started (venv script or python -m pytest).
_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.lab import (  # noqa: E402
    Lab,
    down,
    prereqs,
    up,
)

LAB_HOSTS = 3
LAB_STORAGE = "ca"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_lab() -> None:
    """In CI a missing prerequisite is a failure; elsewhere the lab tests are skipped."""
    missing = prereqs.missing()
    if not missing:
        return
    reason = "lab prerequisites missing: " + "; ".join(missing)
    if in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


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
