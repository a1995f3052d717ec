"""ansible-compat/scripts/controller-env.sh installs trust-agent again exactly when what it installed is
out of date: the real script, run on a copy of the checkout's layout, against a venv whose pip only
records how it was called (no index, no network, a fraction of a second per run)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "ansible-compat" / "scripts" / "controller-env.sh"

FAKE_PIP = """#!/bin/sh
echo "$*" >> "$(dirname "$0")/../pip-calls"
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout: pyproject.toml, the agent package (code and a template), and the script."""
    project = tmp_path / "checkout"
    (project / "ansible-compat" / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, project / "ansible-compat" / "scripts" / "controller-env.sh")
    (project / "pyproject.toml").write_text('[project]\nname = "trust-agent"\nversion = "0.1.0"\n')
    (project / "agent" / "reports" / "templates").mkdir(parents=True)
    (project / "agent" / "__init__.py").write_text("")
    (project / "agent" / "planner.py").write_text("RULE = 1\n")
    (project / "agent" / "reports" / "templates" / "report.html").write_text("<p>v1</p>\n")
    return project


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    """A venv that exists already: python, ansible-playbook, and a pip that logs its arguments."""
    root = tmp_path / "venv"
    (root / "bin").mkdir(parents=True)
    for name, text in (("python", "#!/bin/sh\n"), ("ansible-playbook", "#!/bin/sh\n"), ("pip", FAKE_PIP)):
        (root / "bin" / name).write_text(text)
        (root / "bin" / name).chmod(0o755)
    return root


def installs(checkout: Path, venv: Path, *flags: str) -> list[str]:
    """Run the script; the pip installs it made, each as its arguments."""
    calls = venv / "pip-calls"
    calls.unlink(missing_ok=True)
    subprocess.run(
        ["sh", str(checkout / "ansible-compat" / "scripts" / "controller-env.sh"), str(venv), *flags],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return calls.read_text().splitlines() if calls.exists() else []


def agent_installs(calls: list[str], checkout: Path) -> list[str]:
    return [c for c in calls if c.endswith(f" {checkout}")]


def test_a_copy_is_installed_again_when_any_file_of_the_package_changed(checkout: Path, venv: Path) -> None:
    assert len(agent_installs(installs(checkout, venv), checkout)) == 1
    assert installs(checkout, venv) == []  # nothing changed: nothing installed

    (checkout / "agent" / "planner.py").write_text("RULE = 2\n")
    assert len(agent_installs(installs(checkout, venv), checkout)) == 1
    assert installs(checkout, venv) == []

    (checkout / "agent" / "reports" / "templates" / "report.html").write_text("<p>v2</p>\n")
    assert len(agent_installs(installs(checkout, venv), checkout)) == 1

    # Bytecode the interpreter leaves beside the code is not a change.
    (checkout / "agent" / "__pycache__").mkdir()
    (checkout / "agent" / "__pycache__" / "planner.cpython-311.pyc").write_bytes(b"\0")
    assert installs(checkout, venv) == []


def test_a_linked_install_is_renewed_for_its_metadata_only(checkout: Path, venv: Path) -> None:
    assert len(agent_installs(installs(checkout, venv, "--editable"), checkout)) == 1
    # The code is read in place: a change to it needs no install.
    (checkout / "agent" / "planner.py").write_text("RULE = 2\n")
    assert installs(checkout, venv, "--editable") == []
    # Dependencies and entry points come from pyproject.toml: a change there does.
    (checkout / "pyproject.toml").write_text('[project]\nname = "trust-agent"\nversion = "0.2.0"\n')
    calls = installs(checkout, venv, "--editable")
    assert agent_installs(calls, checkout) == [f"install --quiet --disable-pip-version-check -e {checkout}"]
