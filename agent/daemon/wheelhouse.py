"""The wheelhouse ``daemon install`` ships to hosts: trust-agent and every dependency, as wheels.

Engine hosts often reach no package index, so nothing is downloaded there: the controller assembles
the wheels and the host installs them with ``pip install --no-index --find-links``.

- trust-agent's own wheel is built here from the running code (the importable ``agent`` package and
  the installed distribution's metadata), the same whether trust-agent was installed from a wheel or
  from a checkout, deterministically (fixed timestamps): its digest names what is installed.
- The dependencies are fetched once per target (the host's Python version, machine and C library)
  with ``pip download --only-binary=:all:`` for that target, and cached under
  ``~/.cache/trust-agent/wheelhouse-<hash>``. ``--wheelhouse DIR`` uses a directory prepared by
  other means (an air-gapped controller) instead.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from agent.errors import TrustAgentError, UsageError

DIST_NAME = "trust-agent"
_WHEEL_NAME = "trust_agent"
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)
_GLIBC_FLOOR = 17  # manylinux2014: older tags have no wheels for current dependencies
_MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}


class WheelhouseError(TrustAgentError):
    """The wheels for a host could not be assembled on the controller."""


@dataclass(frozen=True)
class Target:
    """What a host's Python accepts: ``3.11``, ``x86_64``, ``glibc`` ``2.36``."""

    python: tuple[int, int]
    machine: str
    libc: str  # "glibc", or "" (unknown: only pure-Python and linux_* wheels)
    libc_version: tuple[int, int] | None = None
    implementation: str = "cpython"

    def describe(self) -> str:
        libc = f"{self.libc} {'.'.join(map(str, self.libc_version))}" if self.libc_version else self.libc
        return f"Python {self.python[0]}.{self.python[1]} on {self.machine} ({libc or 'unknown libc'})"

    def platforms(self) -> list[str]:
        """The platform tags of binary wheels the host can install, newest first."""
        machine = _MACHINES.get(self.machine, self.machine)
        if self.libc == "glibc" and self.libc_version and self.libc_version[0] == 2:
            minor = self.libc_version[1]
            tags = [f"manylinux_2_{m}_{machine}" for m in range(minor, _GLIBC_FLOOR - 1, -1)]
            return [*tags, f"manylinux2014_{machine}"]
        return [f"linux_{machine}"]

    def key(self) -> str:
        return f"cp{self.python[0]}{self.python[1]}-{'.'.join(self.platforms())}"


# One command, run with the host's python3: what it is, for which wheels, and whether venv works.
PROBE_PYTHON = r"""
import platform, sys
print("python=%d.%d" % sys.version_info[:2])
print("implementation=" + sys.implementation.name)
print("machine=" + platform.machine())
libc, version = platform.libc_ver()
print("libc=" + libc + " " + version)
try:
    import ensurepip, venv
    print("venv=yes")
except ImportError:
    print("venv=no")
"""


def parse_probe(text: str) -> tuple[Target, bool]:
    """The probe's output → (target, whether ``python3 -m venv`` can make a venv with pip)."""
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    try:
        major, minor = (int(p) for p in values["python"].split("."))
    except (KeyError, ValueError):
        raise ValueError("python3 did not say its version") from None
    libc_name, _, libc_text = values.get("libc", "").partition(" ")
    libc = "glibc" if libc_name == "glibc" else ""
    version = _version_pair(libc_text) if libc else None
    target = Target(
        python=(major, minor),
        machine=values.get("machine", "").strip() or "unknown",
        libc=libc,
        libc_version=version,
        implementation=values.get("implementation", "cpython").strip(),
    )
    return target, values.get("venv", "").strip() == "yes"


def _version_pair(text: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", text.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


# --- trust-agent's own wheel ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectWheel:
    filename: str
    data: bytes
    version: str
    requirements: tuple[str, ...]  # Requires-Dist without extras

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def project_wheel() -> ProjectWheel:
    """trust-agent as a ``py3-none-any`` wheel, from the code that is running."""
    import agent

    try:
        dist = metadata.distribution(DIST_NAME)
    except metadata.PackageNotFoundError:
        raise WheelhouseError(
            f"{DIST_NAME} is not installed in this Python ({sys.executable}): install it (pip install .) "
            "or give --wheelhouse DIR"
        ) from None
    version = dist.version
    # Only what pip needs, so that the wheel is the same whichever metadata files were found.
    meta_lines = ["Metadata-Version: 2.1", f"Name: {DIST_NAME}", f"Version: {version}"]
    requires_python = (dist.metadata.get_all("Requires-Python") or [None])[0]
    if requires_python:
        meta_lines.append(f"Requires-Python: {requires_python}")
    entry_points = dist.read_text("entry_points.txt") or "[console_scripts]\ntrust-agent = agent.entry:main\n"
    requirements = tuple(
        r for r in (dist.requires or []) if "extra ==" not in r.replace("extra==", "extra ==")
    )
    meta_lines += [f"Requires-Dist: {r}" for r in requirements]
    meta_text = "\n".join(meta_lines) + "\n"
    package = Path(agent.__file__).resolve().parent
    files: list[tuple[str, bytes]] = []
    for path in sorted(package.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
            continue
        files.append((f"agent/{path.relative_to(package).as_posix()}", path.read_bytes()))
    info = f"{_WHEEL_NAME}-{version}.dist-info"
    wheel_text = "Wheel-Version: 1.0\nGenerator: trust-agent\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files += [
        (f"{info}/METADATA", meta_text.encode()),
        (f"{info}/WHEEL", wheel_text.encode()),
        (f"{info}/entry_points.txt", entry_points.encode()),
        (f"{info}/top_level.txt", b"agent\n"),
    ]
    record = [f"{name},sha256={_b64digest(data)},{len(data)}" for name, data in files]
    record.append(f"{info}/RECORD,,")
    files.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            entry = zipfile.ZipInfo(name, _FIXED_TIME)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, data)
    return ProjectWheel(f"{_WHEEL_NAME}-{version}-py3-none-any.whl", buffer.getvalue(), version, requirements)


def _b64digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


# --- the wheelhouse ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wheelhouse:
    """Every wheel a host needs: the dependencies' directory plus trust-agent's own wheel."""

    directory: Path  # dependencies (and, with --wheelhouse, maybe trust-agent too)
    project: ProjectWheel | None  # None: take trust-agent from ``directory``

    @property
    def wheels(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if p.suffix == ".whl")

    @property
    def ident(self) -> str:
        """Names what gets installed: a digest of every wheel's name and content."""
        digest = hashlib.sha256()
        for path in self.wheels:
            if self.project is not None and path.name.startswith(f"{_WHEEL_NAME}-"):
                continue
            digest.update(path.name.encode() + b"\0" + _file_digest(path).encode() + b"\n")
        if self.project is not None:
            digest.update(self.project.filename.encode() + b"\0" + self.project.digest.encode() + b"\n")
        return digest.hexdigest()[:16]

    def tar(self) -> bytes:
        """A tar of the wheels (flat), to be unpacked on the host."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for path in self.wheels:
                if self.project is not None and path.name.startswith(f"{_WHEEL_NAME}-"):
                    continue
                archive.add(path, arcname=path.name, recursive=False, filter=_plain)
            if self.project is not None:
                entry = tarfile.TarInfo(self.project.filename)
                entry.size = len(self.project.data)
                entry.mode = 0o644
                archive.addfile(entry, io.BytesIO(self.project.data))
        return buffer.getvalue()


def _plain(entry: tarfile.TarInfo) -> tarfile.TarInfo:
    entry.uid = entry.gid = 0
    entry.uname = entry.gname = "root"
    entry.mode = 0o644
    return entry


_FILE_DIGESTS: dict[tuple[str, float, int], str] = {}


def _file_digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_mtime, stat.st_size)
    if key not in _FILE_DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _FILE_DIGESTS[key] = digest.hexdigest()
    return _FILE_DIGESTS[key]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "trust-agent"


def dependency_key(requirements: tuple[str, ...], target: Target) -> str:
    text = "\n".join([target.key(), *sorted(requirements)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dependencies_dir(
    requirements: tuple[str, ...], target: Target, *, cache: Path | None = None, pip: list[str] | None = None
) -> Path:
    """The cached dependency wheels for ``target``; fetched with ``pip download`` when not cached yet."""
    if target.implementation != "cpython":
        raise WheelhouseError(f"{target.describe()}: only CPython hosts are supported")
    root = cache or cache_root()
    final = root / f"wheelhouse-{dependency_key(requirements, target)}"
    if (final / ".complete").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".wheelhouse-", dir=root))
    try:
        major, minor = target.python
        argv = [
            *(pip or [sys.executable, "-m", "pip"]),
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--dest",
            str(work),
            "--only-binary=:all:",
            "--python-version",
            f"{major}.{minor}",
            "--implementation",
            "cp",
            "--abi",
            f"cp{major}{minor}",
        ]
        for platform_tag in target.platforms():
            argv += ["--platform", platform_tag]
        argv += list(requirements)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WheelhouseError(f"cannot run pip download for {target.describe()}: {exc}") from None
        if proc.returncode != 0:
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:]) or "no output"
            raise WheelhouseError(
                f"cannot fetch the dependencies for {target.describe()} (pip download: {tail}); "
                "give --wheelhouse DIR with wheels for that host"
            )
        (work / ".complete").write_text(target.key() + "\n" + "\n".join(requirements) + "\n")
        try:
            work.rename(final)
        except OSError:  # another process finished first: theirs is as good
            if not (final / ".complete").is_file():
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return final


class WheelhouseCache:
    """One wheelhouse per target for a whole run; hosts of the same kind share it (thread-safe)."""

    def __init__(self, given: str | None = None, *, cache: Path | None = None) -> None:
        self._given = Path(given) if given else None
        if self._given is not None and not self._given.is_dir():
            raise UsageError(f"--wheelhouse {given}: not a directory")
        if self._given is not None and not any(p.suffix == ".whl" for p in self._given.iterdir()):
            raise UsageError(f"--wheelhouse {given}: holds no wheels")
        self._cache = cache
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._built: dict[str, Wheelhouse] = {}
        self._project: ProjectWheel | None = None

    def project(self) -> ProjectWheel:
        with self._lock:
            if self._project is None:
                self._project = project_wheel()
            return self._project

    def for_target(self, target: Target) -> Wheelhouse:
        if self._given is not None:
            has_project = any(p.name.startswith(f"{_WHEEL_NAME}-") for p in self._given.iterdir())
            return Wheelhouse(self._given, None if has_project else self.project())
        project = self.project()
        key = dependency_key(project.requirements, target)
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._built:
                directory = dependencies_dir(project.requirements, target, cache=self._cache)
                self._built[key] = Wheelhouse(directory, project)
            return self._built[key]


def prepare(target: Target, *, cache: Path | None = None) -> Wheelhouse:
    """Fetch (or find in the cache) the wheelhouse for ``target``; for tests and image builders."""
    return WheelhouseCache(cache=cache).for_target(target)
