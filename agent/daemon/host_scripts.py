"""The shell scripts ``daemon install`` and ``uninstall`` run on a host: the probe, the virtualenv,
the configuration and the service, the removal. Each is one round trip, and leaves the host as it was
where a step fails.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Sequence

from agent.daemon.bundle import (
    CONFIG_DIR,
    MANIFEST,
    OPT_DIR,
    SERVICE,
    SOURCE_DIR,
    STATE_DIR,
    STATUS_FILE,
    UNIT_PATH,
    WHEELHOUSE_MARK,
    HostFile,
    InstallBundle,
)
from agent.daemon.lastgood import FILE_NAME as LAST_GOOD_FILE
from agent.daemon.lock import FILE_NAME as DAEMON_LOCK_FILE
from agent.daemon.report import METRICS_FIRST_LINE
from agent.daemon.unit import DEFAULT_CONFIG, DEFAULT_ENV_FILE
from agent.daemon.wheelhouse import PROBE_PYTHON
from agent.runtimes.docker_facts import DAEMON_JSON
from agent.runtimes.docker_facts import STATE_FILE as ENGINE_STATE_FILE

# The probe's line for the login's uid: a login that is not root is refused on it, in the same round trip.
PROBE_UID = "uid"


def probe_script(python: str, metrics_file: str | None = None) -> str:
    # The login's uid before anything else: every later line may stop the probe early.
    uid = f"echo {PROBE_UID}=$(id -u)\n"
    # The metrics file next: a host where it names another's file is refused before anything is put on it.
    # Then where it really is: a link on the way (into /home, say) can hide it from the service.
    guard = (
        f"f={shlex.quote(metrics_file)}; {metrics_may_be_written()} || "
        f"{{ {METRICS_EMPTY} && echo metrics=foreign-empty || echo metrics=foreign; exit 0; }}\n"
        'printf \'metrics_real=%s\\n\' "$(realpath -m -- "$f" 2>/dev/null)"\n'
        if metrics_file
        else ""
    )
    python_and_systemd = (
        f"command -v {shlex.quote(python)} >/dev/null 2>&1 || {{ echo python=missing; exit 0; }}\n"
        f"{shlex.quote(python)} - <<'TRUST_AGENT_PROBE'\n{PROBE_PYTHON.strip()}\nTRUST_AGENT_PROBE\n"
        "if [ -d /run/systemd/system ]; then echo systemd=yes; else echo systemd=no; fi\n"
        f"echo installed=$(cat {OPT_DIR}/venv/{WHEELHOUSE_MARK} 2>/dev/null)\n"
        f"echo main_pid=$(systemctl show -p MainPID --value {SERVICE} 2>/dev/null)\n"
    )
    return uid + guard + python_and_systemd


PRUNE_SCRIPT = f"""\
current=$(readlink {OPT_DIR}/venv 2>/dev/null || true)
for old in {OPT_DIR}/venv-*; do
    if [ -d "$old" ] && [ -n "$current" ] && [ "$(basename "$old")" != "$current" ]; then rm -rf "$old"; fi
done
"""


def venv_script(ident: str, python: str, version: str) -> str:
    """Unpack the wheelhouse (stdin) and make ``venv-<ident>``; swap the ``venv`` symlink to it."""
    q = shlex.quote
    new = f"{OPT_DIR}/venv-{ident}"
    return f"""\
set -eu
umask 022
# A step that fails (pip, a wheelhouse cut off in transit, a full disk) leaves nothing half built: the
# next install or uninstall would otherwise find a virtualenv, or an /opt/trust-agent, no install made.
fresh=no
[ -e {OPT_DIR} ] || [ -L {OPT_DIR} ] || fresh=yes
undo() {{
    if [ "$fresh" = yes ]; then rm -rf {OPT_DIR}; else rm -rf {q(new)} {OPT_DIR}/wheelhouse {OPT_DIR}/venv.tmp; fi
}}
trap 'status=$?; [ "$status" -eq 0 ] || undo; exit "$status"' EXIT
mkdir -p {OPT_DIR}
# Keep the virtualenv the running daemon uses; older ones are not in use any more.
{PRUNE_SCRIPT}rm -rf {OPT_DIR}/wheelhouse {q(new)}
mkdir {OPT_DIR}/wheelhouse
tar -x --no-same-owner -C {OPT_DIR}/wheelhouse
{q(python)} -m venv {q(new)} </dev/null
{q(new)}/bin/pip install --quiet --disable-pip-version-check --no-index \\
    --find-links {OPT_DIR}/wheelhouse {q("trust-agent==" + version)} </dev/null
{q(new)}/bin/trust-agent --version >/dev/null </dev/null
echo {q(ident)} > {q(new)}/{WHEELHOUSE_MARK}
rm -rf {OPT_DIR}/wheelhouse
if [ -d {OPT_DIR}/venv ] && [ ! -L {OPT_DIR}/venv ]; then rm -rf {OPT_DIR}/venv; fi
ln -sfn venv-{q(ident)} {OPT_DIR}/venv.tmp
mv -T {OPT_DIR}/venv.tmp {OPT_DIR}/venv
"""


def config_script(bundle: InstallBundle, venv_changed: bool) -> str:
    """Put the files (tar on stdin) in place by rename, drop stale source files, enable and (re)start."""
    q = shlex.quote
    stage = f"{CONFIG_DIR}/.stage"
    moves = "\n".join(f"place {q(f.path.lstrip('/'))} {q(f.path)}" for f in _config_order(bundle.files))
    options = " ".join(
        f"{q(f.path.lstrip('/'))}:{q(f.path)}"
        for f in bundle.files
        if not f.path.startswith(SOURCE_DIR + "/")
    )
    keep = " ".join(q(f.path) for f in bundle.files if f.path.startswith(SOURCE_DIR + "/"))
    env_kept = any(f.path == DEFAULT_ENV_FILE for f in bundle.files)
    return f"""\
set -eu
{_metrics_guard(bundle.metrics_file)}umask 077
# A first install that fails here takes its files back: a configuration without its service (or a unit
# naming a missing one) is what the next install or status would find otherwise.
first=no
[ -e {CONFIG_DIR} ] || first=yes
[ -e {UNIT_PATH} ] || first_unit=yes
undo() {{
    rm -rf {stage} {MANIFEST}.tmp
    if [ "$first" = yes ]; then
        {REMOVE_MADE_DIRS}
        rm -rf {CONFIG_DIR}
    fi
    if [ "${{first_unit:-no}}" = yes ]; then rm -f {UNIT_PATH}; fi
}}
trap 'status=$?; [ "$status" -eq 0 ] || undo; exit "$status"' EXIT
mkdir -p -m 0700 {CONFIG_DIR} {SOURCE_DIR}
chmod 0700 {CONFIG_DIR} {SOURCE_DIR}
rm -rf {stage}
mkdir -m 0700 {stage}
tar -x --no-same-owner -C {stage}
restart={"yes" if venv_changed else "no"}
reload=no
place() {{
    if ! cmp -s "{stage}/$1" "$2"; then
        mkdir -p "$(dirname "$2")"
        mv -f "{stage}/$1" "$2"
        case "$2" in {SOURCE_DIR}/*) reload=yes ;; *) restart=yes ;; esac
    fi
}}
# Options change: stop the daemon before any file moves, so that it never runs a cycle on the new
# source with its old options (a policy the controller did not work out, kept as its last good one).
for pair in {options}; do
    cmp -s "{stage}/${{pair%%:*}}" "${{pair#*:}}" || restart=yes
done
if [ "$restart" = yes ] && systemctl is-active -q {SERVICE}; then
    systemctl stop {SERVICE}
fi
# A metrics file the last install named and this one does not would report "up" for ever: it goes,
# while it still holds trust-agent's metrics.
if [ -f {MANIFEST} ] && [ -f "{stage}{MANIFEST}" ]; then
    {OPT_DIR}/venv/bin/python -c {q(_STALE_STATE_FILES)} {MANIFEST} "{stage}{MANIFEST}" 2>/dev/null |
    while IFS= read -r f; do {{ {METRICS_HOLDS_OURS} || {METRICS_EMPTY}; }} && rm -f "$f" || true; done
fi
# The source files the last install put there (read before its manifest is replaced): only those may
# go; a file configuration management keeps in {SOURCE_DIR} is not ours to remove.
installed=""
if [ -f {MANIFEST} ]; then
    installed=$({OPT_DIR}/venv/bin/python -c {q(_INSTALLED_SOURCE_FILES)} {MANIFEST} {SOURCE_DIR}/ 2>/dev/null || true)
fi
# Until every file is in place the record lists this install's files and the last one's: one that fails
# part way (a full disk) leaves none that uninstall does not know of, daemon.env's credentials above all.
if ! cmp -s "{stage}{MANIFEST}" {MANIFEST}; then
    {OPT_DIR}/venv/bin/python -c {q(_MERGED_RECORD)} {MANIFEST} "{stage}{MANIFEST}" > {MANIFEST}.tmp
    chmod 0644 {MANIFEST}.tmp
    mv -f {MANIFEST}.tmp {MANIFEST}
fi
{moves}
while IFS= read -r f; do
    [ -n "$f" ] && [ -f "$f" ] || continue
    case " {keep} " in *" $f "*) ;; *) rm -f "$f"; reload=yes ;; esac
done <<EOF
$installed
EOF
{"" if env_kept else f"if [ -e {DEFAULT_ENV_FILE} ]; then rm -f {DEFAULT_ENV_FILE}; restart=yes; fi"}
rm -rf {stage}
{_metrics_dir_lines(bundle.metrics_file)}{_empty_metrics_file_removal(bundle.metrics_file)}systemctl daemon-reload
systemctl enable -q {SERVICE}
systemctl is-active -q {SERVICE} || restart=yes
since=$(date +%s.%N)
if [ "$restart" = yes ]; then
    systemctl reset-failed {SERVICE} 2>/dev/null || true
    systemctl restart --no-block {SERVICE}
    echo action=restart
elif [ "$reload" = yes ]; then
    systemctl reload {SERVICE}
    echo action=reload
else
    echo action=none
fi
echo since=$since
"""


# The directories install made for --metrics-file, deepest first, a line each: uninstall removes these,
# and only while empty (a directory that was there before install is never listed).
MADE_DIRS = f"{CONFIG_DIR}/made-dirs"
# Shell: the directories MADE_DIRS lists, read into $made (children first) before the file goes.
REMOVE_MADE_DIRS_LATER = f"made=$(sort -r {MADE_DIRS} 2>/dev/null || true)"
# Shell: rmdir each directory MADE_DIRS lists, children before their parents (reverse order puts a path
# after every path under it); one that holds something now stays.
REMOVE_MADE_DIRS = (
    f"sort -r {MADE_DIRS} 2>/dev/null | while IFS= read -r d; do "
    '[ -n "$d" ] && rmdir -- "$d" 2>/dev/null || true; done'
)


def _metrics_dir_lines(path: str | None) -> str:
    """Shell that makes the metrics file's directory (readable by node_exporter, which may not run as
    root), adding to ``MADE_DIRS`` each directory it had to make."""
    if path is None:
        return ""
    q = shlex.quote
    parent = q(posixpath.dirname(path))
    # Bounded: dirname reaches /, which exists.
    return f"""d={parent}
while [ ! -e "$d" ] && [ ! -L "$d" ]; do
    grep -qxF -- "$d" {MADE_DIRS} 2>/dev/null || printf '%s\\n' "$d" >> {MADE_DIRS}
    d=$(dirname -- "$d")
done
(umask 022 && mkdir -p -- {parent})
"""


def _metrics_guard(path: str | None) -> str:
    """Shell that stops the install, the host untouched, where --metrics-file names a file of another's."""
    if path is None:
        return ""
    q = shlex.quote
    refuse = (
        f"{{ if {METRICS_EMPTY}; then echo {q(foreign_metrics_refusal(path, empty=True))} >&2; "
        f"else echo {q(foreign_metrics_refusal(path, empty=False))} >&2; fi; exit 3; }}"
    )
    return f"f={q(path)}\n{metrics_may_be_written()} || {refuse}\n"


def foreign_metrics_refusal(path: str, *, empty: bool) -> str:
    """Why install refuses --metrics-file ``path``: a file there that is not trust-agent's (``empty``:
    one that holds nothing, which another program may still read, as pam_env reads /etc/environment)."""
    if empty:
        return (
            f"--metrics-file {path}: the file exists, empty, and no install of trust-agent made it (an empty "
            "file can be another program's): choose another path, or remove the file if no one needs it"
        )
    return f"--metrics-file {path}: the file exists and is not trust-agent's metrics: choose another path"


def _empty_metrics_file_removal(path: str | None) -> str:
    """Shell that removes the metrics file where it is empty: the guard let it through only because the
    install record lists it, and the daemon writes only a file that is missing or holds its metrics."""
    if path is None:
        return ""
    q = shlex.quote
    return f"if [ -f {q(path)} ] && [ ! -s {q(path)} ]; then rm -f -- {q(path)}; fi\n"


def _config_order(files: Sequence[HostFile]) -> list[HostFile]:
    # Source files first, daemon.yml (which names them) after, the unit last.
    def rank(item: HostFile) -> int:
        if item.path.startswith(SOURCE_DIR + "/"):
            return 0
        return 2 if item.path == UNIT_PATH else 1

    return sorted(files, key=rank)


STATUS_SCRIPT = (
    f"echo main_pid=$(systemctl show -p MainPID --value {SERVICE}); "
    f"echo active=$(systemctl is-active {SERVICE}); "
    f"echo status=$(tr -d '\\n' < {STATUS_FILE} 2>/dev/null)"
)


# The state files the installed manifest (argv[1]) lists and the new one (argv[2]) does not, a line each.
_STALE_STATE_FILES = (
    "import json, sys; old, new = (json.load(open(p)).get('state_files', []) for p in sys.argv[1:3]); "
    "print(''.join(f + '\\n' for f in old if f not in new and f.startswith('/')), end='')"
)

# The files under the source directory that the installed manifest (argv[1]) lists, a line each.
_INSTALLED_SOURCE_FILES = (
    "import json, sys; files = json.load(open(sys.argv[1])).get('config_files', []); "
    "print(''.join(f + '\\n' for f in files if isinstance(f, str) and f.startswith(sys.argv[2]) and '/../' not in f), end='')"
)

# The install record (argv[2]: the one being installed, argv[1]: the host's, if it reads) with the
# files and state files of both: what the host holds while an install moves its files in.
_MERGED_RECORD = """\
import json, sys
new = json.load(open(sys.argv[2]))
try:
    old = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    old = {}
for key in ("config_files", "state_files"):
    before = old.get(key) if isinstance(old, dict) else None
    kept = [p for p in before if isinstance(p, str)] if isinstance(before, list) else []
    new[key] = list(dict.fromkeys([*new.get(key, []), *kept]))
json.dump(new, sys.stdout, indent=2)
print()
"""

# Shell: "$f" is a file whose first line is one the daemon writes first (agent.daemon.report).
METRICS_HOLDS_OURS = f'head -n 1 "$f" 2>/dev/null | grep -q "^{METRICS_FIRST_LINE.decode()}"'
# Shell: "$f" is an empty file. The daemon never leaves its own empty (it writes a temporary file and
# renames it into place), so an empty one is another's (/etc/environment, say) unless a record says not.
METRICS_EMPTY = '{ [ -f "$f" ] && [ ! -s "$f" ]; }'


def metrics_may_be_written() -> str:
    """Shell: install may name "$f" as the metrics file: nothing is there, or the daemon's metrics, or
    an empty file the host's install record lists (an earlier install's, emptied since). The record is
    JSON; a path it would escape (a quote, a backslash, non-ASCII) is not found, and so refused."""
    listed = f'grep -qF -- "\\"$f\\"" {MANIFEST} 2>/dev/null'
    return f'{{ [ ! -e "$f" ] || {METRICS_HOLDS_OURS} || {{ {METRICS_EMPTY} && {listed}; }}; }}'


def uninstall_script(
    state_files: Sequence[str], config_files: Sequence[str] | None = (), config_metrics: str | None = None
) -> str:
    """Remove the service and what install wrote. ``config_files``: the files install put under
    /etc/trust-agent (its manifest lists them); only those go, and the directories where they are
    then empty, so a file someone else put there stays. With no manifest (none was ever written, or an
    earlier uninstall removed it) nothing there is known to be trust-agent's: nothing goes but the
    manifest's own staging, and daemon.env where the service was there (see below). ``None``: an older
    manifest that does not list them; then the directory goes whole, as it did. ``config_metrics``: the
    metrics file the leftover daemon.yml names, where there is no manifest to list it.

    Prints ``had=yes|no`` (the daemon was installed), ``env_removed=yes``, ``metrics=removed|left``
    (``config_metrics``, where there is a file there) and a ``left=NAME`` line for each file left under
    /etc/trust-agent (its path there)."""
    q = shlex.quote
    extra = " ".join(q(p) for p in state_files)
    if config_files is None:
        config = f"rm -rf {CONFIG_DIR}"
    else:
        owned = " ".join(q(p) for p in config_files if p.startswith(CONFIG_DIR + "/") and "/../" not in p)
        config = (
            f"rm -f {owned} {MANIFEST}\nrm -rf {CONFIG_DIR}/.stage\n"
            f"rmdir {SOURCE_DIR} {CONFIG_DIR} 2>/dev/null || true"
        )
        if config_files:  # a manifest says what is trust-agent's: so is the list of what it made
            config = f"{REMOVE_MADE_DIRS_LATER}\nrm -f {MADE_DIRS}\n{config}"
    # Installed: its unit, its virtualenv or its manifest is there. A directory someone else's file kept
    # after an uninstall is not an installation.
    return f"""\
set -eu
had=no
made=""
[ -e {UNIT_PATH} ] || [ -e {OPT_DIR} ] || [ -e {MANIFEST} ] && had=yes
rm -f {UNIT_PATH}
rm -rf {OPT_DIR}
# daemon.env holds the DTR credentials of the service just removed, its only reader (EnvironmentFile=),
# and install replaces or removes it whatever its record says: it goes with the service, record or not.
if [ "$had" = yes ] && [ -e {DEFAULT_ENV_FILE} ]; then rm -f {DEFAULT_ENV_FILE}; echo env_removed=yes; fi
{config}
{_config_metrics_removal(config_metrics)}rm -f {STATE_DIR}/{LAST_GOOD_FILE} {STATE_DIR}/{DAEMON_LOCK_FILE} {STATUS_FILE}
# A metrics file elsewhere goes only if it still holds trust-agent's metrics (it may be a person's now),
# or nothing: install's record lists it, and install never takes an empty file it did not make.
for f in {extra}; do
    {{ {METRICS_HOLDS_OURS} || {METRICS_EMPTY}; }} && rm -f "$f" || true
done
# Then the directories install made for it, where nothing else is in them now.
printf '%s\\n' "$made" | while IFS= read -r d; do [ -n "$d" ] && rmdir -- "$d" 2>/dev/null || true; done
systemctl daemon-reload
systemctl reset-failed {SERVICE} 2>/dev/null || true
echo had=$had
find {CONFIG_DIR} -mindepth 1 ! -type d -printf 'left=%P\n' 2>/dev/null | sort || true
"""


def _config_metrics_removal(path: str | None) -> str:
    """Shell that removes the metrics file daemon.yml names (no manifest lists it) where install's probe
    would take it for trust-agent's own, and says which. Run once the manifest is gone, so an empty file
    is another's, as the probe says with no record."""
    if path is None:
        return ""
    return f"""f={shlex.quote(path)}
if [ -e "$f" ] || [ -L "$f" ]; then
    if [ -f "$f" ] && {metrics_may_be_written()}; then rm -f -- "$f"; echo metrics=removed; else echo metrics=left; fi
fi
"""


# The lines of daemon.yml that give the metrics file (the key, and the indented lines a long value runs
# on to): all uninstall reads of it, never the rest, which may hold a DTR token.
CONFIG_METRICS_SCRIPT = (
    "awk '/^metrics[-_]file[ \\t]*:/ { named = 1; print; next } named && /^[ \\t]/ { print; next } "
    f"{{ named = 0 }}' {DEFAULT_CONFIG} 2>/dev/null || true"
)


def purge_state_script(own_backup: str) -> str:
    """After ``--purge``: the rest of trust-agent's state under /var/lib/trust-agent (the host lock, the
    record of what it owned, daemon.json backups that keep nothing), the directory itself where that
    empties it. Prints ``kept=PATH`` for each backup left.

    A daemon.json backup is a person's earlier file. One goes only where the current daemon.json makes
    it redundant: a byte-for-byte copy of it, or ``own_backup``, the copy this purge took before taking
    out trust-agent's entries (the current file is that copy less those entries alone). Any other backup
    may hold a line someone wants back, so it stays, and the report says where."""
    q = shlex.quote
    backups = posixpath.dirname(own_backup)
    return f"""\
set -eu
rm -f -- {q(own_backup)}
for b in {backups}/daemon.json.*; do
    [ -f "$b" ] || continue
    if [ -f {DAEMON_JSON} ] && cmp -s -- "$b" {DAEMON_JSON}; then rm -f -- "$b"; else echo "kept=$b"; fi
done
rmdir {backups} 2>/dev/null || true
rm -f {STATE_DIR}/lock {ENGINE_STATE_FILE}
rmdir {STATE_DIR} 2>/dev/null || true
"""


STOP_SCRIPT = (
    f"if systemctl cat {SERVICE} >/dev/null 2>&1; then systemctl disable --now -q {SERVICE}; echo stopped=yes; "
    f"else echo stopped=no; fi; cat {MANIFEST} 2>/dev/null || true"
)
