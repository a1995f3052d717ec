"""The anchors, each installed in its own venv under .bench/venvs/ (pip from PyPI; reused when present)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ANCHORS = {"ansible": "ansible-core", "pyinfra": "pyinfra>=3,<4"}


def ensure(root: Path, name: str, log: Path) -> Path:
    """The venv of anchor NAME (created and installed on first use); returns its bin directory."""
    venv = root / "venvs" / name
    stamp = venv / ".installed"
    if not stamp.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            subprocess.run(
                [sys.executable, "-m", "venv", "--clear", str(venv)], check=True, stdout=out, stderr=out
            )
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "--quiet", ANCHORS[name]],
                check=True,
                stdout=out,
                stderr=out,
                timeout=900,
            )
        stamp.write_text(ANCHORS[name] + "\n")
    return venv / "bin"


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
