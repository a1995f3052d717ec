"""The apply script: one POSIX sh program that writes a plan atomically and acts on dockerd.

One round trip per host. In order, under a host-side lock:
1. check every file still holds what was gathered (another writer → abort, nothing touched);
2. stage every new file as a temp file in its own directory (fsynced, owner and mode kept);
3. validate the staged daemon.json (``dockerd --validate`` where the engine has it);
4. back up daemon.json, then rename every staged file into place, delete, remove emptied dirs;
5. reload or restart dockerd when the plan says so.
Any failure before step 4 removes the temp files and leaves the host as it was; a rename failing in
step 4 puts back the files renamed before it and the ones set aside to delete.

A run stopped part way (the controller killed, its connection dropped) leaves its temp files
(``.trust-agent.<pid>.t<n>``, the kept copies of replaced files among them), put-aside files (``.trust-agent.<pid>.a<n>``) and the daemon.json backup's
copy in progress (``.trust-agent.<pid>.b0``, in the backup directory) behind. Under the lock no
other run is at work, so every such file is a dead run's: the next apply removes them, but puts a
put-aside of the agent's record back where the record is missing (see :data:`RECORD_PUT_BACK`).
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
import re
import shlex
from collections.abc import Iterable, Sequence

from agent.engine.gather import (
    INFO_COMMAND_TAIL,
    INFO_FUNCTION,
    LINK_CHAIN_FUNCTION,
    tree_link_says,
    unsafe_hop_says,
)
from agent.engine.options import new_backup_stamp
from agent.engine.unit_log import START_CURSOR, START_LOG
from agent.runtimes.docker_facts import STATE_FILE
from agent.runtimes.plan import EngineAction, FileChange, HostPlan
from agent.trust import OWNED_PREFIX

BACKUP_DIR = "/var/lib/trust-agent/backup"
# daemon.json backups kept: every change (a daemon repairing a file another tool keeps rewriting, say)
# adds one, and the oldest go past this many.
BACKUPS_KEPT = 50

# Exit codes of the script, read by the engine.
EXIT_BUSY = 75
EXIT_CHANGED = 76
EXIT_INVALID = 77
EXIT_ACTION = 78
STOPPED_MARK = "engine-stopped"  # docker.service was stopped before its reload: the files stay
AFTER_RESTART_MARK = "after-restart"  # docker.service's state after a restart that failed


def active_after_failed_restart(stdout: bytes) -> bool:
    """Whether docker.service was still active after the script's restart failed (systemd refused the
    job: nothing was stopped)."""
    return f"@@ta {AFTER_RESTART_MARK} active\n".encode() in stdout


# How a run that finds the host's lock held begins its error (the per-host daemon tells it by this).
BUSY_SAYS = "another trust-agent run holds "

# Seconds a roll-back waits for the host's lock (an apply takes it at once or not at all). The holder is
# another run's one script: its writes and a reload take seconds, a restart as long as dockerd takes to
# stop its containers (10 s each by default) and start again. The roll-back's own script runs under the
# same command timeout (120 s by default) and still has its reload or restart to do after the wait.
ROLLBACK_LOCK_WAIT = 30

_PRELUDE = r"""
set -u
# Directories it creates are 0755 whatever the login's umask (pam_umask may give 000); files set theirs.
umask 022
R=$1
staged=""
made=""
ta_nl='
'
cleanup() {
  for t in $staged; do rm -f "$t"; done
  # Directories this run created, deepest first: a refused apply leaves no empty directory behind.
  printf '%s' "$made" | while IFS= read -r d; do rmdir "$d" 2>/dev/null; done
}
fail() { cleanup; echo "$2" >&2; exit "$1"; }
# ta_undo KEPT DEST PATH: put back a file a rename replaced (its kept copy renamed back; where KEPT is
# empty, the rename made it: removed), or add PATH to those that could not be put back.
ta_left=""
ta_undo() {
  if [ -n "$1" ]; then mv -f "$1" "$2"; else rm -f "$2"; fi 2>/dev/null || ta_left="$ta_left, $3"
}
# Timestamps from /proc/uptime with the shell's own `read`: no process per stamp.
stamp() {
  if read -r u _ </proc/uptime 2>/dev/null; then echo "@@ta t $1 $u"; else echo "@@ta t $1 $(date +%s.%N)"; fi
}
# In a --root tree, not through a link (an absolute one leads onto the build machine): checked before
# the directories are made and the lock opened.
if [ -n "$R" ]; then
  for ta_p in "$R/var" "$R/var/lib" "$R/var/lib/trust-agent"; do
    [ ! -L "$ta_p" ] || { ta_bad=$ta_p; ta_to=$(readlink -- "$ta_p"); fail 1 @TREE_LINK@; }
  done
fi
# 0711, as the per-host daemon keeps it (agent.daemon.files.STATE_DIR_MODE): others may read a file
# there by its name (status.json), not list the directory. An existing one keeps its mode.
[ -d "$R/var/lib/trust-agent" ] || mkdir -p -m 0711 "$R/var/lib/trust-agent" || fail 1 "cannot create $R/var/lib/trust-agent"
# The lock: never through a link (opening it would truncate the link's target), and 0600, so a user
# who could open it could not hold it and keep every run out.
[ ! -L "$R/var/lib/trust-agent/lock" ] || fail 1 "$R/var/lib/trust-agent/lock is a symbolic link: not opening it"
{ umask 077; exec 9>>"$R/var/lib/trust-agent/lock"; } || fail 1 "cannot open the lock file"
umask 022
# Who else could hold it: in a tree, another run on the tree; else as build_apply_script's `local` says.
if [ -n "$R" ]; then ta_who=" (another run on this tree: apply --local --root)"; else ta_who=@WHO@; fi
flock @WAIT@ 9 || fail 75 "@BUSY@$R/var/lib/trust-agent/lock@WAITED@$ta_who"
stamp start
mkd() {
  d=$1; new=""
  while [ ! -d "$d" ]; do new="$new$d
"; d=${d%/*}; [ -n "$d" ] || d=/; done
  made="$new$made"
  [ -z "$new" ] || mkdir -p -m 0755 "$1"
}
same() {
  if [ "$2" = absent ]; then [ ! -e "$1" ]; else printf '%s  %s\n' "$2" "$1" | sha256sum -c --status 2>/dev/null; fi
}
# unwritten DIR SIZE: why a write of SIZE bytes into DIR failed, as far as its filesystem tells, said
# after "cannot write into DIR". dash's printf says only "I/O error" of a full disk: the free blocks
# (root's reserve counted, as the apply runs as root) and inodes name that cause (a filesystem with no
# inode count, btrfs, reports 0 of 0). Asked only after a failure.
unwritten() {
  ta_fs=$(stat -f -c '%f %S %c %d' "$1" 2>/dev/null) && set -- "$1" "$2" $ta_fs
  if [ $# -eq 6 ] && [ "$5" -gt 0 ] && [ "$6" -eq 0 ]; then
    echo ": no space left on device (no free inodes on its filesystem); remove files there, then run again"
  elif [ $# -eq 6 ] && [ $(($3 * $4)) -lt "$2" ]; then
    echo ": no space left on device ($(($3 * $4 / 1024)) KiB free on its filesystem); free space there, then run again"
  else
    echo " (is it full, or read-only?)"
  fi
}
# stage DEST UMASK CHMOD VAR ENCODING CONTENT [fresh]: CONTENT into a temp file beside DEST, whose name
# goes into VAR. An existing DEST lends the temp file its owner and mode (cp -p, then overwritten),
# unless "fresh" (the agent's CA files: root's 0644 whatever they were, as another user able to write
# one could replace a CA dockerd trusts); a new one is created by root under UMASK (chmod only for modes
# a umask cannot give). Text travels as it is, other bytes as base64. Names are fixed
# (.trust-agent.<pid>.<var>): the directories are root's, the host lock is held, and a leftover from a
# killed run is removed first.
stage() {
  dest=$1; tmp="${dest%/*}/.trust-agent.$$.$4"
  if [ -e "$tmp" ] || [ -L "$tmp" ]; then rm -f "$tmp" || fail 1 "cannot remove the leftover $tmp"; fi
  staged="$staged $tmp"
  if [ -e "$dest" ] && [ "${7:-}" != fresh ]; then
    cp -p "$dest" "$tmp" || fail 1 "cannot copy owner/mode of $dest"
  fi
  umask "$2"
  if [ "$5" = text ]; then
    printf '%s' "$6" >|"$tmp" || fail 1 "cannot write into ${dest%/*}$(unwritten "${dest%/*}" "${#6}")"
  else
    printf '%s' "$6" | base64 -d >|"$tmp" || fail 1 "cannot write into ${dest%/*}$(unwritten "${dest%/*}" "$((${#6} / 4 * 3))")"
  fi
  if [ -n "$3" ] && { [ ! -e "$dest" ] || [ "${7:-}" = fresh ]; }; then chmod "$3" "$tmp" || fail 1 "cannot chmod $tmp"; fi
  eval "$4=\$tmp"
}
""".replace("@BUSY@", BUSY_SAYS)


# Who else holds a live host's lock, said after its path: over SSH, another run, or this one reaching one
# machine by two inventory names; on this machine (--local), another run acting on it.
_HELD_OVER_SSH = " (or this one: two inventory names for one machine?)"
_HELD_LOCALLY = " (on this machine: another apply --local, a rollout reaching it, or its per-host daemon)"


def _prelude(lock_wait: int, *, local: bool = False) -> str:
    """The script's start; it takes the host's lock at once (``lock_wait`` 0) or waits up to
    ``lock_wait`` seconds for it."""
    prelude = _PRELUDE.replace("@WHO@", shlex.quote(_HELD_LOCALLY if local else _HELD_OVER_SSH))
    prelude = prelude.replace("@TREE_LINK@", _TREE_LINK_SAYS)
    if lock_wait <= 0:
        return prelude.replace("@WAIT@", "-n").replace("@WAITED@", "")
    return prelude.replace("@WAIT@", f"-w {lock_wait}").replace("@WAITED@", f" (waited {lock_wait} s for it)")


# The running dockerd's own command line, where its unit has changed since it started (a flag removed from
# /etc/default/docker, not yet restarted away): the planner saw the unit's, and dockerd refuses a
# directive given both as a flag and in daemon.json on its next reload or start (fact 13). Its pidfile
# names it (read with no process); only a host about to get a new daemon.json pays the two processes.
RUNNING_FLAG_CHECK = f"""\
ta_pid=""
# The pidfile has no final newline: read sets the variable and still reports end of file.
[ -n "$R" ] || [ ! -r /var/run/docker.pid ] || read -r ta_pid < /var/run/docker.pid || true
if [ -n "$ta_pid" ] && [ -r "/proc/$ta_pid/cmdline" ]; then
  ta_flag=$(tr '\\0' '\\n' < "/proc/$ta_pid/cmdline" | grep -m1 -e '^--insecure-registry' || true)
  [ -z "$ta_flag" ] || fail {EXIT_CHANGED} "the running dockerd was started with ${{ta_flag%%=*}}; the same directive \
(insecure-registries) in daemon.json would stop it on its next reload or start (fact 13): restart dockerd without it first"
fi"""


# The names stage(), the put-aside and the backup's copy give (.trust-agent.<pid>.t<n>,
# .trust-agent.<pid>.a<n>, .trust-agent.<pid>.b0): the glob finds them, the case skips a name with more
# after them (a person's .trust-agent.1.t1.txt).
LEFTOVER_GLOB = ".trust-agent.[0-9]*.[abt][0-9]*"
_NOT_A_LEFTOVER = 'case "${ta_old##*/.trust-agent.}" in *[!0-9abt.]*) continue ;; esac;'

# A run stopped between setting files aside and its last rename leaves them set aside. The agent's record
# is only ever deleted by a roll-back of the apply that created it, and its put-aside is put back where
# the record is missing: without it, the insecure-registries entries the agent added would be nobody's
# and never removed, while a claim on an entry no longer there is harmless (the next run settles it).
# Every other put-aside is removed (a CA file of the agent's: the plan writes what the policy asks; a
# daemon.json the agent created: put back, it could hold entries the record no longer claims). The
# gather shows the host as this leaves it (the newest such file, by the same rule), so the plan holds.
RECORD_PUT_BACK = f"""\
ta_rec="$R"{shlex.quote(STATE_FILE)}; ta_aside=""
for ta_old in "${{ta_rec%/*}}"/.trust-agent.[0-9]*.a[0-9]*; do
  {_NOT_A_LEFTOVER}
  [ -f "$ta_old" ] && [ ! -L "$ta_old" ] || continue
  [ -z "$ta_aside" ] || [ "$ta_old" -nt "$ta_aside" ] && ta_aside=$ta_old
done
if [ -n "$ta_aside" ] && [ ! -e "$ta_rec" ] && [ ! -L "$ta_rec" ]; then
  mv -f "$ta_aside" "$ta_rec" || fail 1 "cannot put back $ta_rec from $ta_aside, where a run stopped part way set it aside"
  echo "@@ta put-back $ta_aside"
fi"""


def _sha(data: bytes | None) -> str:
    return "absent" if data is None else hashlib.sha256(data).hexdigest()


def build_apply_script(
    plan: HostPlan,
    *,
    engine_action: EngineAction,
    init: str | None,
    validate_with: tuple[str, ...] | None = None,
    daemon_json_path: str = "/etc/docker/daemon.json",
    daemon_json_link: str | None = None,
    expect_current: bool = True,
    rolling_back: bool = False,
    backup_stamp: str | None = None,
    read_info: bool = False,
    lock_wait: int | None = None,
    leftover_dirs: Sequence[str] = (),
    directory_links: Sequence[str] = (),
    local: bool = False,
    last: str | None = None,
) -> str:
    """The sh program applying ``plan``; run it as ``sh -s -- ROOT`` with the program on stdin.

    ``daemon_json_link`` is the symlink dockerd reads daemon.json through, where there is one
    (``daemon_json_path`` is then its resolved target): on a live host every hop of its chain is checked
    again, and must still lead to ``daemon_json_path``, before daemon.json is written.
    ``validate_with`` is the dockerd command line to validate daemon.json with
    (``dockerd --validate --config-file`` is appended), or None where the engine has no ``--validate``.
    ``expect_current=False`` skips the gathered-state check. ``rolling_back``: ``plan`` is the
    :func:`inverse` of an apply this run made, and every file is checked to hold what that apply wrote
    (another run may have changed the host since: the lock lasts one script); one that does not stops
    the script (:data:`EXIT_CHANGED`), nothing touched.
    ``read_info`` ends the script by printing the engine's live ``/info`` (``@@ta info-json``), so
    verification needs no further round trip when the engine already runs the new config.
    ``backup_stamp`` names the daemon.json backup (a new :func:`new_backup_stamp` when None); an existing
    backup is never overwritten: the apply stops first, the host untouched.
    ``lock_wait``: seconds to wait for the host's lock held by another run before giving up
    (:data:`EXIT_BUSY`); None: :data:`ROLLBACK_LOCK_WAIT` for a roll-back, which would otherwise leave the
    host half changed because another run was at work for a moment, and none for an apply.
    ``leftover_dirs``: directories where the gather found files a run stopped part way left (beside the
    ones the plan writes in, cleaned anyway): removed under the lock, before anything is staged.
    ``directory_links``: certs.d directories the gather found to be symbolic links (dockerd reads
    through them): on a live host, the chain of each one the plan writes in is checked again first.
    ``local``: the script runs on this machine (``apply --local``), not over SSH: a held lock is said
    to be another run's on this machine (in a --root tree, the script says so itself).
    ``last``: a command run once all else is done (after the /info read), whose output follows the
    script's own: a lookup the verify needs, in the same round trip.
    """
    if lock_wait is None:
        lock_wait = ROLLBACK_LOCK_WAIT if rolling_back else 0
    out: list[str] = [_prelude(lock_wait, local=local), RECORD_PUT_BACK]
    if read_info:
        out.append(INFO_FUNCTION)
    q = shlex.quote
    if rolling_back:
        # No running-flag check: what is put back is what dockerd ran before the apply.
        out.extend(_expect_current_lines(plan.changes, moved_since=_MOVED_SINCE_APPLY))
    elif expect_current:
        out.extend(_expect_current_lines(plan.changes))
        if any(c.path == daemon_json_path and c.action != "delete" for c in plan.changes):
            out.append(RUNNING_FLAG_CHECK)
    walks_daemon_json = daemon_json_link is not None and any(c.path == daemon_json_path for c in plan.changes)
    if walks_daemon_json and daemon_json_link is not None:
        out.extend(_link_chain_lines(daemon_json_link, daemon_json_path))
    written_in = {posixpath.dirname(c.path) for c in plan.changes}
    linked = sorted(d for d in directory_links if d in written_in)
    if linked:
        out.extend(_directory_link_lines(linked, with_function=not walks_daemon_json))
    writes = [c for c in plan.changes if c.action != "delete"]
    backs_up = any(backed_up(c, daemon_json_path) for c in plan.changes)
    # Checked before any directory is made: mkd through a link would make them outside a --root tree.
    touched = {posixpath.dirname(c.path) for c in plan.changes} | set(plan.mkdirs) | set(plan.rmdirs)
    out.extend(
        _safe_directories_lines(
            sorted({posixpath.dirname(c.path) for c in writes}),
            links_only=sorted(touched | set(leftover_dirs) | ({BACKUP_DIR} if backs_up else set())),
            # A dead run's copy of the backup, or one of the same pid, never lies where this one copies.
            cleaned=[*leftover_dirs, *([BACKUP_DIR] if backs_up else [])],
        )
    )
    for directory in _deepest(plan.mkdirs):
        out.append(f'mkd "$R"{q(directory)} || fail 1 {q("cannot create " + directory)}')
    for number, change in enumerate(writes):
        out.append(_stage_line(change, f"t{number}"))
    daemon_index = next((i for i, c in enumerate(writes) if c.path == daemon_json_path), None)
    if daemon_index is not None and validate_with:
        command = " ".join(q(a) for a in validate_with)
        out.append(
            f'vout=$({command} --validate --config-file "$t{daemon_index}" 2>&1) || '
            f'fail {EXIT_INVALID} "dockerd --validate refused the new daemon.json: $vout"'
        )
        out.append('echo "@@ta validated"')
    backup = (
        daemon_json_backup(new_backup_stamp() if backup_stamp is None else backup_stamp) if backs_up else None
    )
    if backup is not None:
        out.extend(_backup_copy_lines(daemon_json_path, backup))
    if writes or backup is not None:
        # One fsync pass over every staged file and the backup's copy (one process), before any rename.
        out.append("sync $staged 2>/dev/null || true")
    deletes = [c for c in plan.changes if c.action == "delete"]
    for directory in sorted(
        {posixpath.dirname(c.path) for c in deletes} - {posixpath.dirname(c.path) for c in writes}
    ):
        out.append(_leftover_cleanup_line(directory))
    out.extend(_keep_lines(writes))
    if backup is not None:
        out.extend(_backup_rename_lines(daemon_json_path, backup))
    # All or nothing: what is deleted is first moved aside, beside itself, before any file is replaced
    # (a deletion that cannot happen, certs.d read-only say, stops the batch with nothing changed), and
    # moved back where a rename fails; removed once every rename is done.
    if deletes:
        out.extend(_put_aside_lines(deletes, first=len(writes), backup=backup))
    # In the plan's order: the planner puts the agent's own record where the host stopping part way
    # leaves no entry written but unclaimed, which no later run would remove. A rename that fails puts
    # back the files renamed before it (:func:`_keep_lines`) and the ones set aside.
    for number, change in enumerate(writes):
        out.append(_rename_line(number, writes[:number], change, bool(deletes), backup))
    out.append('staged=""; made=""')
    # The kept copies are gone with the last rename; only those made cost a process (an empty $k<n>: none).
    kept = [f'${{k{n}:+"$k{n}"}}' for n in _kept(writes)]
    if deletes:
        aside = " ".join([*kept, *(f'"$a{len(writes) + n}"' for n in range(len(deletes)))])
        out.append(f"rm -f {aside} 2>/dev/null || true")
    elif kept:
        anything = "".join(f"$k{n}" for n in _kept(writes))
        out.append(f'[ -z "{anything}" ] || rm -f {" ".join(kept)} 2>/dev/null || true')
    if backup is not None:
        out.extend(_prune_lines())
    for directory in plan.rmdirs:
        out.append(f'rmdir "$R"{q(directory)} 2>/dev/null || true')
    parents = sorted({*_parents(c.path for c in plan.changes), *([BACKUP_DIR] if backup else [])})
    if parents:
        out.append("sync " + " ".join(f'"$R"{q(d)}' for d in parents) + " 2>/dev/null || true")
    out.append("stamp written")
    out.extend(_engine_action_lines(engine_action, init))
    out.append("stamp done")
    if read_info:
        out.append(INFO_COMMAND_TAIL)
    if last:
        out.append(last)
    out.append("exit 0")
    return "\n".join(out) + "\n"


# Where the backup is copied first, beside it: only a complete copy is renamed to the backup's name.
BACKUP_COPY = f"{BACKUP_DIR}/.trust-agent.$$.b0"


def _backup_failed(daemon_json_path: str, backup: str) -> str:
    """``fail`` naming why the backup could not be taken (the error's last part, in ``ta_e``)."""
    q = shlex.quote
    return (
        f'fail 1 {q("cannot back up " + daemon_json_path + " to " + backup + " (")}"${{ta_e##*: }}"'
        f"{q('): nothing was changed')}"
    )


def _backup_copy_lines(daemon_json_path: str, backup: str) -> list[str]:
    """Copy daemon.json to the backup's temp name (:data:`BACKUP_COPY`, a staged file: removed where the
    script fails), never where ``backup`` exists. A copy cut short (a full disk, the run killed) never
    bears the backup's name, which a roll-back or a person would restore daemon.json from."""
    q = shlex.quote
    return [
        f'[ ! -e "$R"{q(backup)} ] || fail 1 {q(backup + " exists: not overwriting a backup")}',
        f'[ -d "$R"{q(BACKUP_DIR)} ] || mkdir -p -m 0700 "$R"{q(BACKUP_DIR)} || fail 1 {q("cannot create " + BACKUP_DIR)}',
        f'ta_b="$R"{BACKUP_COPY}; staged="$staged $ta_b"',
        f'ta_e=$(cp -p "$R"{q(daemon_json_path)} "$ta_b" 2>&1) || {_backup_failed(daemon_json_path, backup)}',
    ]


def _backup_rename_lines(daemon_json_path: str, backup: str) -> list[str]:
    """Give the complete (and synced) copy the backup's name: one rename, so it is there whole or not at all."""
    q = shlex.quote
    return [
        f'ta_e=$(mv -f "$ta_b" "$R"{q(backup)} 2>&1) || {_backup_failed(daemon_json_path, backup)}',
        f'echo "@@ta backup {backup}"',
    ]


def _put_aside_lines(deletes: Sequence[FileChange], *, first: int, backup: str | None) -> list[str]:
    """Move each file to delete to ``.trust-agent.<pid>.a<n>`` beside it (``a``, not a staged file's
    ``t``: a dead run's put-aside record is told from its staged one, :data:`RECORD_PUT_BACK`), and
    define ``ta_put_back``, which moves them back. A move that fails puts back the ones before it and
    removes the backup just taken: nothing changed."""
    q = shlex.quote
    names = [f"a{first + n}" for n in range(len(deletes))]
    lines = [
        f'{name}="$R"{q(posixpath.dirname(c.path))}/.trust-agent.$$.{name}'
        for name, c in zip(names, deletes, strict=True)
    ]
    back = "; ".join(
        f'{{ [ ! -e "${name}" ] && [ ! -L "${name}" ]; }} || mv -f "${name}" "$R"{q(c.path)} '
        f'|| ta_left="$ta_left, "{q(c.path)}'
        for name, c in zip(names, deletes, strict=True)
    )
    lines.append(f"ta_put_back() {{ {back}; }}")
    drop_backup = f'rm -f "$R"{q(backup)}; ' if backup is not None else ""
    for name, change in zip(names, deletes, strict=True):
        path = f'"$R"{q(change.path)}'
        refused = (
            f'{{ ta_put_back; {drop_backup}fail 1 {q("cannot delete " + change.path + " (")}"${{ta_e##*: }}"'
            f"{q('): nothing was changed')}; }}"
        )
        # Absent already (a roll-back restoring a host someone changed): nothing to move.
        lines.append(
            f'if [ -e {path} ] || [ -L {path} ]; then ta_e=$(mv -f {path} "${name}" 2>&1) || {refused}; fi'
        )
    return lines


def _kept(writes: Sequence[FileChange]) -> list[int]:
    """The writes whose file is kept aside before the renames: each path's first, but the last write's
    (nothing after it can fail)."""
    firsts = {c.path: n for n, c in reversed(list(enumerate(writes[:-1])))}
    return sorted(firsts.values())


def _keep_lines(writes: Sequence[FileChange]) -> list[str]:
    """Before any rename, keep each file a rename replaces (:func:`_kept`) under a temp name beside it
    (``$k<n>``, a staged file's ``.t`` name: a dead run's is removed): a hard link, which copies nothing
    and leaves the file in place; a copy where a link cannot be made (a file bind-mounted on its own).
    Where the file is absent, ``$k<n>`` is empty, and putting back removes what the rename made."""
    q = shlex.quote
    lines = []
    for n in _kept(writes):
        path = writes[n].path
        dest = f'"$R"{q(path)}'
        refused = q(
            f"cannot keep a copy of {path} to put back should a later rename fail: nothing was changed"
        )
        keep = f'"$R"{q(posixpath.dirname(path))}/.trust-agent.$$.t{len(writes) + n}'
        lines.append(
            f'k{n}=""; if [ -e {dest} ]; then k{n}={keep}; staged="$staged $k{n}"; '
            f'ln -f {dest} "$k{n}" 2>/dev/null || cp -p {dest} "$k{n}" || fail 1 {refused}; fi'
        )
    return lines


def _rename_line(
    number: int, before: Sequence[FileChange], change: FileChange, puts_back: bool, backup: str | None
) -> str:
    """Rename staged file ``t<number>`` into place. Where that fails, the files renamed ``before`` it are
    put back (their kept copy renamed back, or the new file removed), then the deleted files, and the
    backup just taken goes; the error names any file that could not be put back (the backup stays)."""
    q = shlex.quote
    kept = {c.path: n for n, c in reversed(list(enumerate(before)))}
    undo = "".join(f'ta_undo "$k{n}" "$R"{q(path)} {q(path)}; ' for path, n in reversed(kept.items()))
    back = "ta_put_back; " if puts_back else ""
    drop_backup = f'[ -n "$ta_left" ] || rm -f "$R"{q(backup)}; ' if backup is not None else ""
    nothing = ": nothing was changed" + (" (the files renamed before it were put back)" if before else "")
    said = (
        f"ta_said={q(nothing)}; "
        '[ -z "$ta_left" ] || ta_said="; could not put back (left as this run made them):${ta_left#,}"; '
    )
    return (
        f'ta_e=$(mv -f "$t{number}" "$R"{q(change.path)} 2>&1) || {{ ta_e=${{ta_e##*: }}; ta_left=""; '
        f"{undo}{back}{drop_backup}{said}"
        f'fail 1 {q("cannot rename into " + change.path)}"${{ta_e:+ ($ta_e)}}$ta_said"; }}'
    )


# A backup's name (:func:`daemon_json_backup`) after ``daemon.json.``: a stamp of
# :func:`agent.engine.options.new_backup_stamp`; a roll-back's adds ``-rollback``.
_STAMP_GLOB = "[0-9]" * 8 + "T" + "[0-9]" * 6 + "Z-" + "[0-9a-f]" * 6


def _prune_lines() -> list[str]:
    """Remove the oldest of the agent's own backups beyond :data:`BACKUPS_KEPT`, once every rename is
    done. Only names the agent gives are counted and removed: a person's ``daemon.json.1-before-upgrade``
    beside them stays. The names sort by time (a UTC stamp first): the glob lists the oldest first."""
    ours = f'case "${{f##*/daemon.json.}}" in {_STAMP_GLOB} | {_STAMP_GLOB}-rollback) ;; *) continue ;; esac'
    return [
        "ta_prune() {",
        f"  ta_n=0; for f; do {ours}; ta_n=$((ta_n + 1)); done",
        f'  for f; do [ "$ta_n" -gt {BACKUPS_KEPT} ] || break; {ours}; rm -f -- "$f"; ta_n=$((ta_n - 1)); done',
        "}",
        f'ta_prune "$R"{shlex.quote(BACKUP_DIR)}/daemon.json.{_STAMP_GLOB}*',
    ]


def _leftover_cleanup_line(directory: str) -> str:
    """Remove the files a killed run left in ``directory``: only the names stage() and the put-aside
    give (:data:`LEFTOVER_GLOB`), so a person's .trust-agent.notes stays."""
    return (
        f'for ta_old in "$R"{shlex.quote(directory)}/{LEFTOVER_GLOB}; do '
        f"{_NOT_A_LEFTOVER} "
        '{ [ -e "$ta_old" ] || [ -L "$ta_old" ]; } && rm -f "$ta_old"; done'
    )


def _deepest(directories: Iterable[str]) -> list[str]:
    """The directories no other one is under: ``mkd`` makes (and records) the parents with them, one
    process for a whole missing chain."""
    listed = list(directories)
    return [d for d in listed if not any(o.startswith(d.rstrip("/") + "/") for o in listed)]


def backed_up(change: FileChange, daemon_json_path: str) -> bool:
    """Whether the apply copies the file ``change`` replaces or removes to :func:`daemon_json_backup`."""
    return change.path == daemon_json_path and change.before is not None


def daemon_json_backup(backup_stamp: str) -> str:
    """Where an apply run with ``backup_stamp`` copies the daemon.json it replaces."""
    return f"{BACKUP_DIR}/daemon.json.{backup_stamp}"


# What a file that moved is said to have done (after its path), before an apply and before a roll-back.
_MOVED_SINCE_GATHER = " changed since facts were gathered; run again"
_MOVED_SINCE_APPLY = (
    " no longer holds what this run's apply wrote: another run (or a person) changed the host since"
)


def _expect_current_lines(changes: Sequence[FileChange], moved_since: str = _MOVED_SINCE_GATHER) -> list[str]:
    """Check every file still holds what was gathered (each change's ``before``): absent ones by a test,
    the rest by one ``sha256sum -c`` over all of them (each file checked on its own only to name the one
    that moved, followed by ``moved_since``)."""
    q = shlex.quote

    def moved(change: FileChange) -> str:
        return f"fail {EXIT_CHANGED} {q(change.path + moved_since)}"

    # A path written twice (the agent's record, where it is written in two steps) is checked against
    # its first change: what the host held when the facts were gathered (in an inverse, the last
    # content the apply wrote).
    firsts: dict[str, FileChange] = {}
    for change in changes:
        firsts.setdefault(change.path, change)
    changes = list(firsts.values())
    # Never written, read or removed through a link: it could point anywhere (a planted link to
    # /etc/shadow would be read into the plan, or overwritten as root).
    lines = [
        f'[ ! -L "$R"{q(c.path)} ] || fail {EXIT_CHANGED} {q(c.path + " is a symbolic link: trust-agent does not follow it")}'
        for c in changes
    ]
    lines += [f'same "$R"{q(c.path)} absent || {moved(c)}' for c in changes if c.before is None]
    hashed = [c for c in changes if c.before is not None]
    if hashed:
        each = "; ".join(f'same "$R"{q(c.path)} {_sha(c.before)} || {moved(c)}' for c in hashed)
        if all(_plain(c.path) for c in hashed):
            listing = "; ".join(f"printf '%s  %s\\n' {_sha(c.before)} \"$R\"{q(c.path)}" for c in hashed)
            lines.append(f"{{ {listing}; }} | sha256sum -c --status 2>/dev/null || {{ {each}; }}")
        else:
            lines.append(each)
    return lines


def _link_chain_lines(link: str, target: str) -> list[str]:
    """On a live host, refuse to write ``target`` where the chain of links from ``link`` now goes through
    a directory another user can write in, or no longer leads there (changed since the gather, which
    checked it the same way). A --root tree resolves no link: the planner wrote none there."""
    q = shlex.quote
    unsafe = _shell_words(unsafe_hop_says("\0dir", link, "\0hop", "\0to"))
    moved = q(f"{link} no longer leads to {target}:{_MOVED_SINCE_GATHER}")
    return [
        LINK_CHAIN_FUNCTION,
        f'if [ -z "$R" ]; then ta_link_chain {q(link)} || fail {EXIT_CHANGED} {unsafe}',
        f'  [ "$(readlink -f -- {q(link)})" = {q(target)} ] || fail {EXIT_CHANGED} {moved}',
        "fi",
    ]


def _directory_link_lines(links: Sequence[str], *, with_function: bool) -> list[str]:
    """On a live host, refuse to write through a certs.d directory that is a link whose chain now goes
    through a directory another user can write in (the gather checked it the same way)."""
    q = shlex.quote
    said = (
        '"$ta_bad is writable by a user other than root, and the CA files dockerd trusts are written '
        "through it (the link $ta_hop -> $ta_to): make $ta_bad root's alone (chown root, chmod go-w); "
        'nothing written"'
    )
    checks = "; ".join(f"ta_link_chain {q(link)} || fail {EXIT_CHANGED} {said}" for link in links)
    return [*([LINK_CHAIN_FUNCTION] if with_function else []), f'if [ -z "$R" ]; then {checks}; fi']


def _shell_words(text: str) -> str:
    """``text`` as one shell word: each marker (a NUL, which no path holds, then ``dir``, ``hop`` or
    ``to``) the value of the shell variable :data:`LINK_CHAIN_FUNCTION` sets for it, the rest quoted."""
    names = {"dir": "ta_bad", "hop": "ta_hop", "to": "ta_to"}
    words = []
    for number, part in enumerate(text.split("\0")):
        literal = part
        if number:
            marker = next(m for m in names if part.startswith(m))
            words.append(f'"${names[marker]}"')
            literal = part[len(marker) :]
        if literal:
            words.append(shlex.quote(literal))
    return "".join(words)


# Why a link in a --root tree stops the apply, as one shell word: the link in $ta_bad, where it leads in
# $ta_to (the gather's words for it, where the plan stops first).
_TREE_LINK_SAYS = _shell_words(tree_link_says("\0dir", "\0to"))


def _plain(path: str) -> bool:
    """A path ``sha256sum -c`` reads back as written (it escapes names with newlines or backslashes)."""
    return "\n" not in path and "\\" not in path


def _safe_directories_lines(
    directories: Sequence[str], links_only: Sequence[str] = (), cleaned: Sequence[str] = ()
) -> list[str]:
    """Refuse to write into a directory (or one above it) another user can write in: the temp files'
    names are predictable, and one planted there as a link would be written through as root. In a
    --root tree, refuse links instead (an absolute one leads out of the tree, onto the build machine),
    in ``directories`` and in ``links_only`` (where files are deleted, directories made or removed, the
    backup copied). Then remove temp files a killed run left in ``directories`` and ``cleaned`` (the
    lock is held: none is a live run's)."""
    q = shlex.quote

    def listed(dirs: Iterable[str]) -> str:
        return " ".join(f'"$R"{q(p)}' for p in sorted({p for d in dirs for p in _with_parents(d)}))

    lines = []
    if directories:
        # Under -L only a link to nothing is still of type l; its own mode (0777) says nothing, and
        # what is missing is its target.
        lines.append(
            f'if [ -z "$R" ]; then ta_bad=$(find -L {listed(directories)} -maxdepth 0 -type l -print '
            f'2>/dev/null); ta_bad=${{ta_bad%%"$ta_nl"*}}; [ -z "$ta_bad" ] || fail {EXIT_CHANGED} '
            '"$ta_bad is a link to $(readlink -m -- "$ta_bad"), which does not exist: create the target '
            'directory or remove the link"; fi'
        )
        lines.append(
            f'if [ -z "$R" ]; then ta_bad=$(find -L {listed(directories)} -maxdepth 0 ! -user 0 -print '
            "-o -perm /022 -print 2>/dev/null)"
            f'; [ -z "$ta_bad" ] || fail {EXIT_CHANGED} "${{ta_bad%%"$ta_nl"*}} is writable by a user other '
            "than root: trust-agent does not write there (make it root's alone: chown root, chmod go-w)\"; fi"
        )
    every = [*directories, *links_only]
    if every:
        lines.append(
            f'if [ -n "$R" ]; then ta_bad=$(find {listed(every)} -maxdepth 0 -type l -print 2>/dev/null)'
            f'; [ -z "$ta_bad" ] || {{ ta_bad=${{ta_bad%%"$ta_nl"*}}; ta_to=$(readlink -- "$ta_bad"); '
            f"fail {EXIT_CHANGED} {_TREE_LINK_SAYS}; }}; fi"
        )
    lines.extend(_leftover_cleanup_line(directory) for directory in sorted({*directories, *cleaned}))
    return lines


def _with_parents(directory: str) -> list[str]:
    """``/etc/docker/certs.d/r`` → it and every directory above it, but ``/`` (root's anyway)."""
    out = []
    while directory not in ("", "/"):
        out.append(directory)
        directory = posixpath.dirname(directory)
    return out


def _stage_line(change: FileChange, var: str) -> str:
    q = shlex.quote
    mode = change.mode & 0o7777
    special = mode & ~0o666  # bits a umask cannot give: set by chmod after the write
    umask = 0o077 if special else 0o777 & ~mode
    chmod = f"{mode:o}" if special else "''"
    data = change.after or b""
    text = _as_text(data)
    encoding, content = ("text", text) if text is not None else ("base64", base64.b64encode(data).decode())
    fresh = " fresh" if _owned_ca_file(change.path) else ""
    return f'stage "$R"{q(change.path)} {umask:03o} {chmod} {var} {encoding} {q(content)}{fresh}'


def _owned_ca_file(path: str) -> bool:
    """One of the agent's CA files (``certs.d/<registry>/trust-agent-*.crt``): written anew, never
    with the owner and mode of the file it replaces (daemon.json and the agent's record keep theirs)."""
    name = posixpath.basename(path)
    return name.startswith(OWNED_PREFIX) and name.endswith(".crt") and "/certs.d/" in path


def _as_text(data: bytes) -> str | None:
    """DATA as a str a shell word can carry (UTF-8 without NUL), or None."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\0" in text else text


def _parents(paths: Iterable[str]) -> list[str]:
    return sorted({posixpath.dirname(p) for p in paths})


_STAMP = re.compile(rb"^@@ta t (\w+) ([0-9.]+)$", re.M)


def script_stamps(stdout: bytes) -> dict[bytes, float]:
    """The apply script's own timestamps by name (``start``, ``written``, ``done``): the host's uptime in
    seconds (the clock of the journal's monotonic timestamps), or the epoch where /proc/uptime is absent."""
    return {m.group(1): float(m.group(2)) for m in _STAMP.finditer(stdout)}


def reload_stamp(stdout: bytes, action: str, init: str | None) -> float | None:
    """Where the files were written for ``systemctl reload``: the apply's ``written`` stamp, after which
    a reload dockerd refuses shows in its journal (``agent.engine.verify.refusal_since``); else None."""
    return script_stamps(stdout).get(b"written") if action == "reload" and init == "systemd" else None


def _engine_action_lines(action: EngineAction, init: str | None) -> list[str]:
    if action == "none" or init is None:
        return []
    if action == "reload":
        if init == "systemd":
            # Not ordered behind other units' jobs: where the caller's own unit is After=docker.service
            # (the per-host daemon) and being stopped, systemd would hold the reload until that stop
            # ended, and the stop waits for this reload: both hang until TimeoutStopSec.
            command = "systemctl reload --job-mode=ignore-dependencies docker.service"
        else:
            command = 'kill -HUP "$(pgrep -x -o dockerd)"'
    elif init == "systemd":
        # systemd's start limit (Debian: 3 starts a minute) counts every start, a person's and earlier
        # runs' too: met, "Start request repeated too quickly" leaves dockerd stopped and the change
        # failed. This restart is one deliberate start, not a crash loop; a roll-back's, after a failed
        # start and systemd's own retries of it, needs the counter cleared all the more.
        command = "{ systemctl reset-failed docker.service 2>/dev/null; systemctl restart docker.service; }"
    else:
        command = "service docker restart"
    failed = f'fail {EXIT_ACTION} "{action} of dockerd failed: $aout"'
    if action == "restart" and init == "systemd":
        # systemctl names no reason for a failed start: the unit's journal since just before it does
        # (agent.engine.unit_log picks the start's own lines).
        # Whether dockerd still runs after the failure: a restart systemd refused (a masked unit,
        # RefuseManualStop=) stopped nothing, and the roll-back must not call the host down.
        return [
            START_CURSOR,
            f'aout=$({command} 2>&1) || {{ {START_LOG}; echo "@@ta {AFTER_RESTART_MARK} '
            f'$(systemctl is-active docker.service 2>/dev/null)"; {failed}; }}',
            f'echo "@@ta {action}ed"',
        ]
    if action == "reload" and init == "systemd":
        # A reload refused because docker.service was stopped (by a person, since the gather) is no
        # failure of the change: the files stay, and dockerd reads them when it starts. Asked only
        # once the reload failed: the common path spawns nothing more.
        return [
            f'if aout=$({command} 2>&1); then echo "@@ta {action}ed"',
            f'elif [ "$(systemctl is-active docker.service)" = inactive ]; then echo "@@ta {STOPPED_MARK}"',
            f"else {failed}; fi",
        ]
    return [f"aout=$({command} 2>&1) || {failed}", f'echo "@@ta {action}ed"']


def inverse(plan: HostPlan) -> HostPlan:
    """The plan that undoes ``plan`` (used to roll a host back to its exact previous files), its changes
    in reverse order: the agent's record, written first where it claims more, is put back last.

    A file ``plan`` created and then rewrote (the record, made by a first apply and rewritten by a
    second) is one deletion of what it became: the script sets deletions aside before any rename, so
    undoing each step would bring the first version back."""
    firsts: dict[str, FileChange] = {}
    for change in plan.changes:
        firsts.setdefault(change.path, change)
    made = {path for path, change in firsts.items() if change.action == "create"}
    last_after = {change.path: change.after for change in plan.changes}
    changes: list[FileChange] = []
    for change in reversed(plan.changes):
        if change.path in made:
            became = last_after[change.path]
            if change is firsts[change.path] and became is not None:
                changes.append(FileChange(change.path, "delete", became, None, change.mode, change.internal))
            continue
        if change.action == "create":
            changes.append(
                FileChange(change.path, "delete", change.after, None, change.mode, change.internal)
            )
        elif change.action == "delete":
            changes.append(
                FileChange(change.path, "create", None, change.before, change.mode, change.internal)
            )
        else:
            changes.append(
                FileChange(change.path, "update", change.after, change.before, change.mode, change.internal)
            )
    return HostPlan(
        changes=tuple(changes),
        mkdirs=tuple(plan.rmdirs),
        rmdirs=tuple(reversed(plan.mkdirs)),
        engine_action=plan.engine_action,
    )
