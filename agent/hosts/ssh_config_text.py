"""An ssh_config file with its ``Include`` lines in place, for paramiko's parser, which has no Include.

Sites and tools keep hosts in included files (``Include ~/.ssh/config.d/*``, a VM manager's own file):
without this, their ``HostName``, ``User``, ``IdentityFile`` and ``ProxyJump`` would be silently
dropped. Read as ssh(1) reads them:

- each argument is a path or a glob (``~`` expanded; a relative path is under ``~/.ssh``), its matches
  read in sorted order; none matching is not an error;
- an Include at the top level (before any ``Host`` or ``Match``) applies its file to every host; one
  inside a ``Host`` or ``Match`` block applies only where that block does. paramiko has no nesting, so
  each of the file's blocks is given the enclosing block's condition as well: ``Host a`` around
  ``Host b`` becomes ``Match originalhost a originalhost b`` (``Host`` compares the name given, as
  ``originalhost`` does, and every criterion of a ``Match`` must hold);
- after the included text the enclosing block goes on, so its header is repeated;
- at most 16 levels deep, as ssh.
"""

from __future__ import annotations

import getpass
import glob
import os
import pwd
import re
import shlex
from collections.abc import Mapping

from agent.errors import InputError

MAX_DEPTH = 16  # ssh's own limit (READCONF_MAX_DEPTH)
_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9]*)(?:\s*=\s*|\s+)(.*?)\s*$")


def home() -> str:
    """The local user's home as ssh(1) takes it for ``~``, ``%d`` and its default files: the passwd
    entry's, not ``$HOME`` (``HOME=/tmp ssh -G h`` still reads /root/.ssh/known_hosts as root);
    ``$HOME`` only where the user has no passwd entry (ssh would refuse to run at all)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return os.path.expanduser("~")


def local_user() -> str:
    """The local user's name as ssh(1) takes it for ``%u``, the default remote user and ``Match
    localuser``: the passwd entry of the real uid, not ``$USER``/``$LOGNAME`` (``USER=ops ssh -G h``
    still says ``user root`` as root); those only where the uid has no passwd entry."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return getpass.getuser()


# One ``%x`` token or one ``${VARIABLE}``, read in a single pass as ssh's percent_dollar_expand reads
# them: what a value brings in is not read again.
_TOKEN_OR_VARIABLE = re.compile(r"%(.?)|\$\{([^}]*)\}", re.DOTALL)


def expand_tokens(
    value: str, tokens: Mapping[str, str], *, what: str, environ: Mapping[str, str] = os.environ
) -> str:
    """``value`` with its ``%x`` tokens from ``tokens`` and its ``${VARIABLE}`` from ``environ``, as ssh
    expands ``IdentityFile`` and ``CertificateFile``. ssh stops on a token it does not know for the
    option or a variable that is not set; so does this, its error saying ``what`` (the option as written).

    >>> expand_tokens("%d/.ssh/%r@%h-${SITE}%%", {"d": "/root", "r": "ops", "h": "h1"}, what="IdentityFile x",
    ...               environ={"SITE": "lab"})
    '/root/.ssh/ops@h1-lab%'
    """

    def replace(match: re.Match[str]) -> str:
        token, variable = match.group(1), match.group(2)
        if variable is None:
            if token == "%":
                return "%"
            if not token:
                raise InputError(f"{what}: ends in a lone % (write %% for a %)")
            if token not in tokens:
                raise InputError(f"{what}: %{token} is not a token ssh expands there")
            return tokens[token]
        if variable not in environ:
            raise InputError(f"{what}: ${{{variable}}} is not set in the environment")
        return environ[variable]

    return _TOKEN_OR_VARIABLE.sub(replace, value)


def expand_home(path: str) -> str:
    """``path`` with a leading ``~`` or ``~/`` as ssh's tilde expansion reads it (``~user/`` as that
    user's passwd entry says)."""
    if path == "~":
        return home()
    if path.startswith("~/"):
        return os.path.join(home(), path[2:])
    return os.path.expanduser(path)  # ~user/… reads the passwd entry, as ssh does; others stay


def expanded(path: str, ssh_dir: str) -> str:
    """The text of the ssh_config at ``path`` with every ``Include`` replaced by what it names;
    ``ssh_dir`` is where relative Include paths are (``~/.ssh`` for a user's config)."""
    return "\n".join(_expand(path, ssh_dir, None, 0)) + "\n"


def _expand(path: str, ssh_dir: str, enclosing: str | None, depth: int) -> list[str]:
    if depth > MAX_DEPTH:
        raise InputError(f"ssh config Include nested more than {MAX_DEPTH} levels deep", where=path)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise InputError(f"cannot read ssh config: {exc.strerror}", where=path) from None
    out: list[str] = []
    current = enclosing  # the block's header as written out (None: no condition, every host)
    for number, line in enumerate(lines, 1):
        match = _LINE.match(line)
        keyword = match.group(1).lower() if match else ""
        if keyword in ("host", "match") and match:
            current = line if enclosing is None else _within(enclosing, keyword, match.group(2), path, number)
            out.append(current)
        elif keyword == "include" and match:
            for included in _files(match.group(2), ssh_dir, path, number):
                out.extend(_expand(included, ssh_dir, current, depth + 1))
                out.append(current if current is not None else "Host *")  # the block goes on
        else:
            out.append(line)
    return out


PROXY_ORDER = "trustagentproxyfirst"  # a keyword ssh has not: which proxy option came first


def with_proxy_order(text: str) -> str:
    """``text`` with a line before each ``ProxyJump`` and ``ProxyCommand`` saying which it is, so that the
    first value a lookup finds (paramiko's rule, and ssh's) tells which of the two a host met first.
    ssh uses that one and ignores the other ("whichever is specified first will prevent later
    instances of the other from taking effect"), so ``ProxyCommand none`` exempts a bastion from a
    ``Host *`` ProxyJump; paramiko returns both, without their order.

    >>> print(with_proxy_order("Host gw\\nProxyCommand none\\nHost *\\nProxyJump gw"), end="")
    Host gw
    trustagentproxyfirst command
    ProxyCommand none
    Host *
    trustagentproxyfirst jump
    ProxyJump gw
    """
    out: list[str] = []
    for line in text.splitlines():
        match = _LINE.match(line)
        keyword = match.group(1).lower() if match else ""
        if keyword in ("proxyjump", "proxycommand"):
            out.append(f"{PROXY_ORDER} {keyword[len('proxy') :]}")
        out.append(line)
    return "\n".join(out) + "\n"


def _files(value: str, ssh_dir: str, path: str, number: int) -> list[str]:
    """The files one Include line names, in ssh's order: each argument's matches, sorted."""
    try:
        arguments = shlex.split(value)
    except ValueError as exc:
        raise InputError(f"ssh config Include {value!r}: {exc}", where=f"{path}:{number}") from None
    found: list[str] = []
    for argument in arguments:
        pattern = expand_home(argument)
        if not os.path.isabs(pattern):
            pattern = os.path.join(ssh_dir, pattern)
        found += [p for p in sorted(glob.glob(pattern)) if os.path.isfile(p)]
    return found


def _within(enclosing: str, keyword: str, value: str, path: str, number: int) -> str:
    """A block header that holds where both ``enclosing`` and this block's header do.

    >>> _within("Host web-*", "host", "*.lab !db.lab", "f", 1)
    'Match originalhost web-* originalhost *.lab,!db.lab'
    >>> _within("Match user ops", "match", "all", "f", 1)
    'Match user ops'
    >>> _within("Host *", "match", "exec 'test -f /x'", "f", 1)
    "Match originalhost * exec 'test -f /x'"
    """
    criteria = [*_criteria(enclosing, path, number), *_criteria(f"{keyword} {value}", path, number)]
    return "Match " + " ".join(criteria) if criteria else "Match all"


def _criteria(header: str, path: str, number: int) -> list[str]:
    """A ``Host``/``Match`` header as Match criteria (``Match all`` holds always: no criterion)."""
    match = _LINE.match(header)
    if match is None:
        return []
    try:
        words = shlex.split(match.group(2))
    except ValueError as exc:
        raise InputError(f"ssh config {header!r}: {exc}", where=f"{path}:{number}") from None
    if match.group(1).lower() == "host":
        return ["originalhost", ",".join(words)]
    return [shlex.quote(w) for w in words if w.lower() != "all"]
