"""Every tool in its own venv under .bench/venvs/: the anchors from PyPI (reused when present), and
trust-agent from this working tree (reinstalled when the tree changes). All are pip installs, so all
run from bytecode compiled at install time, as a user's install does."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import IO

ANCHORS = {"ansible": "ansible-core", "pyinfra": "pyinfra>=3,<4"}


def ensure(root: Path, name: str, log: Path) -> Path:
    """The venv of anchor NAME (created and installed on first use); returns its bin directory."""
    venv = root / "venvs" / name
    stamp = venv / ".installed"
    if not stamp.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            _new_venv(venv, out)
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "--quiet", ANCHORS[name]],
                check=True,
                stdout=out,
                stderr=out,
                timeout=900,
            )
        stamp.write_text(ANCHORS[name] + "\n")
    return venv / "bin"


def ensure_trust_agent(root: Path, repo: Path, log: Path) -> Path:
    """trust-agent from REPO, pip-installed (not editable) in .bench/venvs/trust-agent; its bin directory."""
    venv = root / "venvs" / "trust-agent"
    stamp = venv / ".installed"
    digest = tree_digest(repo)
    if stamp.exists() and stamp.read_text().strip() == digest:
        return venv / "bin"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        if not (venv / "bin" / "pip").exists():
            _new_venv(venv, out)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", "--force-reinstall", "--no-deps", str(repo)]
            if stamp.exists()
            else [str(venv / "bin" / "pip"), "install", "--quiet", str(repo)],
            check=True,
            stdout=out,
            stderr=out,
            timeout=900,
        )
    stamp.write_text(digest + "\n")
    return venv / "bin"


def _new_venv(venv: Path, out: IO[bytes]) -> None:
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, stdout=out, stderr=out)


def tree_digest(repo: Path) -> str:
    """What the installed trust-agent is built from: the package's sources and pyproject.toml."""
    h = hashlib.sha256()
    for path in sorted([repo / "pyproject.toml", *(repo / "agent").rglob("*")]):
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def version(bin_dir: Path, name: str) -> str:
    module = {"ansible": "ansible", "pyinfra": "pyinfra"}[name]
    dist = {"ansible": "ansible-core", "pyinfra": "pyinfra"}[name]
    result = subprocess.run(
        [str(bin_dir / "python"), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True,
        text=True,
        check=False,
    )
    del module
    return result.stdout.strip() or "unknown"
