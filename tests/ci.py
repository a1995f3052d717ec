"""The one rule for missing test prerequisites: in CI (``CI=true``) a failure, elsewhere a skip."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing_prerequisite(reason: str) -> NoReturn:
    """Stop the test: CI must run every test, so there a missing prerequisite fails the run."""
    if in_ci():
        pytest.fail(f"CI: {reason}", pytrace=False)
    else:
        pytest.skip(reason)
