# Apache-2.0 (see the trust-agent source)
"""What the collection's action plugins say, in Ansible's terms. Pure Python (no Ansible import), so the
unit tests run it without ansible-core.

trust-agent's messages name its CLI flags (``pass --allow-restart``, ``--registry: …``); a playbook sets
module options or, through the role, its ``trustagent_*`` variables instead.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

# CLI flag → the registry_trust option that does the same; a boolean flag becomes "=true", which is what
# "pass --allow-restart" asks for. The role's variable is "trustagent_" + the option.
FLAG_OPTIONS: dict[str, str] = {
    "--source": "source",
    "--registry": "registries",
    "--storage-ca": "storage_ca",
    "--registry-ca": "registry_ca",
    "--allow-expired": "allow_expired=true",
    "--no-storage-ca": "no_storage_ca=true",
    "--no-registry-ca": "no_registry_ca=true",
    "--env-overrides": "env_overrides=true",
    "--source-ca": "source_ca",
    "--restart-policy": "restart_policy",
    "--allow-restart": "allow_restart=true",
}
ROLE_PREFIX = "trustagent_"
# How close a misspelt name must be to a known one to be suggested (difflib's ratio, 0 to 1).
_CLOSE_ENOUGH = 0.6

# Whole flags only (not --registry inside --registry-ca, nor dockerd's --insecure-registry), with the
# CLI's metavar, if any: an option takes a list or a path, not "FILE".
_FLAG = re.compile(
    r"(?<![\w-])(" + "|".join(map(re.escape, FLAG_OPTIONS)) + r")(?![\w-])(?: (?:FILE|HOST\[:PORT\]))?"
)
# What ssh itself prints when a -tt session ends: noise, not the command's output.
_SSH_NOISE = re.compile(r"^(Shared connection|Connection) to \S+ closed\.?$")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def ansible_wording(text: str, *, role: bool) -> str:
    """``text`` with every trust-agent CLI flag replaced by the option (``role``: variable) that sets it.

    >>> ansible_wording("needs a dockerd restart (x); pass --allow-restart or enable live-restore", role=True)
    'needs a dockerd restart (x); pass trustagent_allow_restart=true or enable live-restore'
    >>> ansible_wording("give it with --storage-ca FILE (or in the source)", role=False)
    'give it with storage_ca (or in the source)'
    """
    prefix = ROLE_PREFIX if role else ""
    return _FLAG.sub(lambda m: prefix + FLAG_OPTIONS[m.group(1)], text)


def ansible_warnings(*groups: Iterable[str], role: bool) -> list[str]:
    """Every warning of ``groups`` (the policy's, then the plan's), in Ansible's wording, each once."""
    return list(dict.fromkeys(ansible_wording(w, role=role) for group in groups for w in group))


def error_line(stdout: bytes, stderr: bytes) -> str | None:
    """The last line a failed command printed about its failure: stderr's, else stdout's.

    Without stdin, Ansible's ssh connection runs the command with ``-tt``: the command's stderr then
    arrives on stdout, and stderr holds only ssh's "Shared connection to … closed.".
    """
    for stream in (stderr, stdout):
        text = _ANSI.sub("", stream.decode("utf-8", "replace"))
        lines = [line.strip() for line in text.replace("\r", "\n").splitlines()]
        lines = [line for line in lines if line and not _SSH_NOISE.match(line)]
        if lines:
            return lines[-1]
    return None


def unknown_variables(names: Iterable[str], known: Iterable[str]) -> list[str]:
    """Each of ``names`` the role does not read (not in ``known``), with the closest known name where one
    is close: ``trustagent_registy (did you mean trustagent_registries?)``.

    Ansible ignores a variable nobody reads, so a misspelt one silently leaves its default in force. The
    CLI's flag spellings count as close too (``trustagent_registry`` is ``--registry``'s variable,
    ``trustagent_registries``).
    """
    known = set(known)
    spellings = _spellings(known)
    found = []
    for name in sorted(set(names) - known):
        closest = _closest(name, spellings)
        found.append(f"{name} (did you mean {closest}?)" if closest else name)
    return found


def _spellings(known: set[str]) -> dict[str, str]:
    """Every spelling a user may mean → the known variable it names: the names themselves, and the CLI's
    flags as variables (``--registry`` → ``registry``, for ``trustagent_registries``)."""
    spellings = {name.removeprefix(ROLE_PREFIX): name for name in known}
    for flag, option in FLAG_OPTIONS.items():
        variable = ROLE_PREFIX + option.split("=")[0]
        if variable in known:
            spellings.setdefault(flag.lstrip("-").replace("-", "_"), variable)
    return spellings


def _closest(name: str, spellings: dict[str, str]) -> str | None:
    # Compared without the shared prefix, which would make every name look close to every other.
    match = difflib.get_close_matches(
        name.removeprefix(ROLE_PREFIX), list(spellings), n=1, cutoff=_CLOSE_ENOUGH
    )
    return spellings[match[0]] if match else None
