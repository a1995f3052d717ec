"""Facts about one host's Docker trust configuration, gathered in one round trip.

The gather script is plain POSIX sh (no Python needed on the host). It prints records framed as
``@@ta <kind> [<name>]`` lines, file contents base64-encoded on the following line; the docker unit,
which is only parsed, as text up to an ``@@ta unit-end <nonce>`` line. Only the agent's
own certs.d files (``trust-agent-*``) are read; other files are listed by name, so client keys never
leave the host.
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
import re
import secrets
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agent.errors import CommandError
from agent.hosts.base import Transport
from agent.hosts.engine_http import ANSWER_TIMEOUT, ENGINE_SOCKET, PendingReply
from agent.hosts.engine_wake import ASLEEP_FUNCTION
from agent.runtimes.daemon_json import DaemonJsonError, invalid_utf8_at, parse_daemon_json, trailing_data
from agent.runtimes.daemon_json_checks import config_file_flag
from agent.runtimes.docker import api_elsewhere, reads_invalid_utf8, unsafe_owner
from agent.runtimes.docker_facts import CERTS_DIR, DAEMON_JSON, STATE_FILE, DockerFacts
from agent.runtimes.plan import HostPlan
from agent.runtimes.systemd_env import environment, expand_command, unit_environment
from agent.trust import OWNED_PREFIX

MARK = "@@ta"


def _engine_shell(text: str) -> str:
    """Shell text with the engine's socket and answer time limit those of the controller's own route."""
    return text.replace("@SOCKET@", ENGINE_SOCKET).replace("@TIMEOUT@", f"{ANSWER_TIMEOUT:g}")


# The engine's ``/info`` as JSON on stdout: straight from the API socket with curl where there is one
# (a few ms), else through the docker CLI; nothing where dockerd is stopped and asking would start it
# (``ta_engine_asleep``). Shared by the gather and apply scripts and the verify poll.
INFO_FUNCTION = ASLEEP_FUNCTION + _engine_shell(r"""
ta_info() {
  ta_engine_asleep && return 1
  if command -v curl >/dev/null 2>&1 && [ -S @SOCKET@ ]; then
    curl -sf --max-time @TIMEOUT@ --unix-socket @SOCKET@ http://docker/info && return 0
    # Timed out: the socket took the connection, the engine never answered (frozen, hung). The CLI
    # would wait as long on the same socket: not asked.
    [ $? != 28 ] || { ta_silent=1; return 1; }
  fi
  command -v docker >/dev/null 2>&1 || return 1
  # The CLI waits for ever on a socket no one serves (docker.socket left listening by a dockerd that
  # serves elsewhere): bounded where coreutils' timeout is there.
  if command -v timeout >/dev/null 2>&1; then
    ta_cli=$(timeout @TIMEOUT@ docker info --format '{{json .}}'); ta_rc=$?
    [ "$ta_rc" != 124 ] || ta_silent=1
  else
    ta_cli=$(docker info --format '{{json .}}'); ta_rc=$?
  fi
  [ -z "$ta_cli" ] || printf '%s\n' "$ta_cli"
  [ "$ta_rc" = 0 ] || return 1
  # With no engine to answer, the 20.10 and 26.1 CLIs still exit 0, printing a document of their own
  # ({"ServerErrors":["Cannot connect..."],...}, 26.1 with "ServerVersion":""): no answer.
  case $ta_cli in
    *'"ServerErrors":["'* | *'"ServerVersion":""'*) return 1 ;;
    *'"ServerVersion":"'*) return 0 ;;
    *) return 1 ;;
  esac
}
""")

# Print the engine's /info after an ``@@ta info-json`` line: the API (and the CLI's ``{{json .}}``)
# writes it as one line of JSON, which holds no raw newline, so it needs no further framing (the next
# line is empty when the engine does not answer).
INFO_COMMAND_TAIL = 'echo "@@ta info-json"; ta_info 2>/dev/null; echo'

# The engine's version alone, from the ``Server: Docker/<version>`` header of ``/_ping`` (dockerd's
# cheapest endpoint: /info costs it about 7 ms of CPU, /_ping well under 1); prints nothing and fails
# where there is no curl or no answer.
PING_FUNCTION = _engine_shell(r"""
ta_version() {
  ta_engine_asleep && return 1
  command -v curl >/dev/null 2>&1 && [ -S @SOCKET@ ] || return 1
  h=$(curl -sf -i --max-time @TIMEOUT@ --unix-socket @SOCKET@ http://docker/_ping) || {
    [ $? != 28 ] || ta_silent=1; return 1
  }
  v=${h#*Server: Docker/}
  [ "$v" != "$h" ] || return 1
  v=${v%%[!0-9A-Za-z.+~-]*}
  [ -n "$v" ] && echo "@@ta engine-version $v"
}
""")

# The longest chain of links followed, as the kernel's own limit (ELOOP past 40).
MAX_LINK_HOPS = 40

# ``ta_link_chain LINK`` walks LINK's chain of symbolic links hop by hop. Each link's directory and each
# hop's target directory (as written and where it leads, with every directory above them) must be root's
# and not group/world-writable, the rule the apply script applies to the directory it writes in:
# otherwise another user could point a hop at any file and have root read or write it. At the first hop
# that breaks the rule it returns 1, with ta_bad (the directory), ta_hop (the link) and ta_to (where it
# points) set. Shared by the gather (before daemon.json is read) and the apply script (before it is
# written). GNU find's -quit: only the first directory is named.
LINK_CHAIN_FUNCTION = r"""
ta_link_chain() {
  ta_hop=$1; ta_n=0
  while [ -L "$ta_hop" ] && [ "$ta_n" -lt @HOPS@ ]; do
    ta_n=$((ta_n + 1))
    ta_to=$(readlink -- "$ta_hop") || return 0
    ta_in=$(readlink -m -- "${ta_hop%/*}/")
    case "$ta_to" in /*) ta_abs=$ta_to ;; *) ta_abs="${ta_in%/}/$ta_to" ;; esac
    set --
    for ta_d in "${ta_hop%/*}" "$ta_in" "${ta_abs%/*}" "$(readlink -m -- "${ta_abs%/*}/")"; do
      ta_k=0
      while [ -n "$ta_d" ] && [ "$ta_d" != / ] && [ "$ta_k" -lt 4096 ]; do
        set -- "$@" "$ta_d"; ta_d=${ta_d%/*}; ta_k=$((ta_k + 1))
      done
    done
    if [ $# -gt 0 ]; then
      ta_bad=$(find -L "$@" -maxdepth 0 \( ! -user 0 -o -perm /022 \) -print -quit 2>/dev/null)
      [ -z "$ta_bad" ] || return 1
    fi
    ta_hop=$ta_abs
  done
  return 0
}
""".replace("@HOPS@", str(MAX_LINK_HOPS))


def unsafe_hop_says(directory: str, daemon_json: str, link: str, target: str) -> str:
    """Why a daemon.json reached through a link in ``directory`` (``link`` → ``target``, a hop of
    ``daemon_json``'s chain) is neither read nor written, and what to do about it."""
    return (
        f"{directory} is writable by a user other than root, and {daemon_json} is reached through it "
        f"(the link {link} -> {target}): that user could point it at any file, so trust-agent neither "
        f"reads nor writes daemon.json that way (make {directory} root's alone: chown root, chmod go-w; "
        "or link to a file in a directory only root can write); nothing written"
    )


def tree_link_problem(link: str, target: str) -> str:
    """Why a --root tree's ``link`` (to ``target``, as written), on the way to where the apply writes, stops
    it, and what to do instead; a blocker adds "then run again (nothing written)"."""
    return (
        f"{link} is a symbolic link: in a --root tree, trust-agent does not follow it (it leads to "
        f"{target}); replace the link with the directory it leads to, or write its target's files yourself"
    )


def tree_link_says(link: str, target: str) -> str:
    """:func:`tree_link_problem`, as said where it stops the run."""
    return f"{tree_link_problem(link, target)}, then run again (nothing written)"


# The dockerd binary's version, and whether it has ``--validate``: asked where the engine does not tell
# (each dockerd start costs ~50 ms of CPU).
DOCKERD_VERSION_FUNCTION = r"""
ta_dockerd_version() {
  echo "@@ta dockerd-version $(dockerd --version 2>&1 | head -n1)"
  if dockerd --validate --help >/dev/null 2>&1; then echo "@@ta validate yes"; else echo "@@ta validate no"; fi
}
"""

# Where systemd looks for a system unit and its drop-ins, highest precedence first (``systemd-analyze
# unit-paths`` on Debian 12, whose systemd reads /lib before /usr/lib), less the /run directories,
# which hold nothing until the image runs.
TREE_UNIT_DIRS = (
    "/etc/systemd/system.control",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/usr/local/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
)

GATHER_SCRIPT = (
    INFO_FUNCTION
    + PING_FUNCTION
    + DOCKERD_VERSION_FUNCTION
    + LINK_CHAIN_FUNCTION
    + _engine_shell(r"""
R="$1"; D="$R$2"; C="$R/etc/docker/certs.d"; S="$R/var/lib/trust-agent/docker-state.json"
b64() { base64 -w0 < "$1" 2>/dev/null; echo; }
# A file's content as b64 gives it; where the read fails, "!" after whatever came ("!denied": the
# login may not read it), so a file that cannot be read is never taken for an empty one. Used for
# daemon.json, the agent's record and CA files, and dockerd's command line.
ta_read() { base64 -w0 2>/dev/null < "$1" || { if [ -r "$1" ]; then printf '!'; else printf '!denied'; fi; }; echo; }
# dockerd's command line (its PID in $1). A login that is not root may be kept from it (/proc mounted
# with hidepid): said so ("!denied"), not taken for a dockerd started without flags.
ta_cmdline() {
  if [ -r "/proc/$1/cmdline" ]; then
    echo "@@ta pid $1"; echo "@@ta cmdline"; ta_read "/proc/$1/cmdline"
  elif [ "${ta_uid:-0}" != 0 ]; then
    echo "@@ta pid $1"; echo "@@ta cmdline"; echo '!denied'
  fi
}
# A directory the login may not list (root's 0700 or 0750, to a login that is not root): what it holds is
# not known, and is never taken for nothing. Root lists every directory: only the test's cost.
ta_unlisted() { [ -r "$1" ] && [ -x "$1" ] || echo "@@ta unlisted $1"; }
# A directory the login may not search: the file in it (daemon.json, the agent's record) cannot be
# read, nor even be seen to exist; said as a read refused ($2: the record's kind).
ta_unsearchable() { [ -d "$1" ] && [ ! -x "$1" ] && { echo "@@ta $2"; echo '!denied'; }; }
# A certs.d directory that is a link, on a live host: dockerd reads through it, so what counts is the
# chain of links (as for daemon.json), the link's own owner, and its target's owner and mode (stat -L).
ta_dir_link() {
  if ta_link_chain "$1"; then
    echo "@@ta dir-link $2"; readlink -f -- "$1" | base64 -w0; echo
  else
    echo "@@ta dir-unsafe-hop $2"; printf '%s\n%s\n%s' "$ta_bad" "$ta_hop" "$ta_to" | base64 -w0; echo
  fi
  stat -c '@@ta link-owner %u %n' -- "$1" 2>/dev/null
  stat -L -c '@@ta owner %u %a %n' -- "$1" 2>/dev/null
}
# A path the agent writes that holds something other than a file (a directory, a fifo): named, so the
# run stops before writing, instead of failing on it at every apply. A link is the apply's to refuse.
ta_not_file() {
  [ -e "$1" ] && [ ! -f "$1" ] && [ ! -L "$1" ] || return 0
  if [ -d "$1" ]; then echo "@@ta not-file directory $1"; else echo "@@ta not-file special $1"; fi
}
# A file a trust-agent run stopped part way left in a directory the agent writes (its staged
# .trust-agent.<pid>.t<n>, its put-aside .trust-agent.<pid>.a<n>, the daemon.json backup's copy
# .trust-agent.<pid>.b0): named, for the next apply to remove.
ta_leftover() {
  case "${1##*/.trust-agent.}" in *[!0-9abt.]* | "") return 1 ;; esac
  echo "@@ta leftover $1"
}
# An entry of a certs.d directory that dockerd reads on every pull from that registry (a .crt, .cert or
# .key name) but cannot read as a file: a directory, a link to nothing, a fifo. $1: the path, $2: its
# <registry>/<name>.
ta_broken_entry() {
  case "$1" in *.crt | *.cert | *.key) ;; *) return 0 ;; esac
  if [ -L "$1" ] && [ ! -e "$1" ]; then echo "@@ta cert-entry-broken dangling $2"
  elif [ -d "$1" ]; then echo "@@ta cert-entry-broken directory $2"
  elif [ -e "$1" ] && [ ! -f "$1" ]; then echo "@@ta cert-entry-broken special $2"
  fi
}
ta_leftovers_in() {
  for f in "$1"/.trust-agent.[0-9]*; do { [ -e "$f" ] || [ -L "$f" ]; } && ta_leftover "$f"; done
}
# In a --root tree, each link on the way from the tree's top to $1, given to the function $2 (with $3)
# until it answers 0; returns 1 where none did.
ta_links_on() {
  ta_rest=${1#"$R"}; ta_at=$R; ta_k=0
  while [ -n "$ta_rest" ] && [ "$ta_k" -lt 4096 ]; do
    ta_k=$((ta_k + 1)); ta_rest=${ta_rest#/}; ta_c=${ta_rest%%/*}; ta_rest=${ta_rest#"$ta_c"}
    [ -n "$ta_c" ] || continue
    ta_at="$ta_at/$ta_c"
    [ -L "$ta_at" ] || continue
    "$2" "$ta_at" "$3" && return 0
  done
  return 1
}
# The link $1 named as the record $2, with what it holds.
ta_link_said() { echo "@@ta $2 $1"; readlink -- "$1" | base64 -w0; echo; }
# The link $1 where it leads out of the tree (an absolute target, or ../ past its top).
ta_link_out() {
  case "$(readlink -m -- "$1")/" in "$ta_top"/*) return 1 ;; esac
  ta_link_said "$1" outside-root
}
# In a --root tree, the first link on the way from the tree's top to $1 that leads out of the tree:
# named with where it points ("@@ta outside-root"), so nothing of the build machine is read for the
# image. Returns 1 where there is none.
ta_outside_root() { ta_links_on "$1" ta_link_out; }
# Whether $1 ends in a backslash that is not itself escaped: systemd then goes on on the next line.
ta_continues() {
  ta_s=$1; ta_o=""
  while :; do
    case "$ta_s" in *\\) ta_s=${ta_s%?}; if [ -n "$ta_o" ]; then ta_o=""; else ta_o=1; fi ;; *) break ;; esac
  done
  [ -n "$ta_o" ]
}
# $1 without the blanks (spaces, tabs) around it, as systemd strips a key and its value.
ta_trim() { ta_t=${1#"${1%%[!	 ]*}"}; ta_t=${ta_t%"${ta_t##*[!	 ]}"}; }
# The text of the file $1 ($2: the nonce), where it is one to read; $3: the glob that named it, if any.
# In a --root tree, $1 is the image's path, read under $R, never through a link leading out of it.
ta_env_text() {
  ta_x="$R$1"
  [ -z "$R" ] || ! ta_outside_root "$ta_x" || return 0
  [ -f "$ta_x" ] && [ -r "$ta_x" ] || return 0
  [ -z "$3" ] || echo "@@ta env-glob $3"
  echo "@@ta env-file $1"; echo "@@ta env-text $2"
  while IFS= read -r ta_e || [ -n "$ta_e" ]; do printf '%s\n' "$ta_e"; done < "$ta_x"
  echo "@@ta env-end $2"
}
# The text of the files an EnvironmentFile= setting names ($1: a whole line of the unit; $2: the
# nonce); a leading "-" says only that they may be missing. One value is one path, blanks and all, as
# systemd reads it, and only an absolute one. A glob names each file it matches (systemd.exec(5)),
# each said as the glob's ("@@ta env-glob") for the controller to read them in systemd's order.
ta_env_file() {
  ta_trim "${1%%=*}"; [ "$ta_t" = EnvironmentFile ] && [ "$1" != "${1#*=}" ] || return 0
  ta_trim "${1#*=}"; ta_f=${ta_t#-}
  case "$ta_f" in /*) ;; *) return 0 ;; esac
  case "$ta_f" in
    *[*?[]*)
      # Expanded, never split: a blank is part of the path.
      IFS=''
      if [ -z "$R" ]; then
        for ta_g in $ta_f; do ta_env_text "$ta_g" "$2" "$ta_f"; done
      else
        # Matched in the tree, from its top: the tree's own path is never taken as a pattern.
        ( cd -- "$R" || exit 0; for ta_g in .$ta_f; do ta_env_text "${ta_g#.}" "$2" "$ta_f"; done )
      fi
      unset IFS
      ;;
    *) ta_env_text "$ta_f" "$2" ;;
  esac
}
# Each EnvironmentFile= of the unit's text (stdin), its lines joined as systemd joins them
# (unit_lines): a line ending in a backslash goes on on the next, the backslash read as a space, and a
# comment line inside such a continuation is skipped.
ta_env_files() {
  ta_p=""; ta_j=""
  while IFS= read -r ta_l || [ -n "$ta_l" ]; do
    if [ -n "$ta_p" ]; then
      ta_trim "$ta_l"; case "$ta_t" in [#\;]*) continue ;; esac
      ta_l=$ta_j$ta_l
    fi
    if ta_continues "$ta_l"; then ta_p=1; ta_j="${ta_l%?} "; continue; fi
    ta_p=""; ta_env_file "$ta_l" "$1"
  done
  [ -z "$ta_p" ] || ta_env_file "$ta_j" "$1"
}
# In a --root tree, docker.service's files as systemd in the image will find them (systemctl, which
# reads the build machine's units, is not asked): each directory's docker.service up to the first one
# there (a link to /dev/null: masked, said so), and every docker.service.d/*.conf, with their
# EnvironmentFile= files; the controller orders them as systemd does (tree_unit_text). Read under $R,
# never through a link leading out of the tree. $1: the nonce.
ta_tree_unit() {
  ta_frag=""
  for ta_d in @TREE_UNIT_DIRS@; do
    if [ -z "$ta_frag" ]; then
      ta_u="$R$ta_d/docker.service"
      if [ -L "$ta_u" ] && [ "$(readlink -- "$ta_u")" = /dev/null ]; then
        echo "@@ta tree-unit-masked $ta_d/docker.service"; return 0
      fi
      ta_tree_unit_file "$ta_d/docker.service" "$1" && ta_frag=1
    fi
    ta_outside_root "$R$ta_d/docker.service.d" && continue
    for ta_u in "$R$ta_d"/docker.service.d/*.conf; do
      if [ -L "$ta_u" ] && [ "$(readlink -- "$ta_u")" = /dev/null ]; then
        echo "@@ta tree-unit-masked ${ta_u#"$R"}"
      else
        ta_tree_unit_file "${ta_u#"$R"}" "$1"
      fi
    done
  done
}
# One of them ($1: the image's path), where it is a file inside the tree; returns 1 where it is not.
ta_tree_unit_file() {
  ta_u="$R$1"
  ! ta_outside_root "$ta_u" && [ -f "$ta_u" ] && [ -r "$ta_u" ] || return 1
  echo "@@ta tree-unit $1"; echo "@@ta tree-unit-text $2"
  while IFS= read -r ta_e || [ -n "$ta_e" ]; do printf '%s\n' "$ta_e"; done < "$ta_u"
  echo "@@ta tree-unit-end $2"
  ta_env_files "$2" < "$ta_u"
}
# In a --root tree, the first link on the way from the tree's top to $1, one that stays inside it (one
# leading out was named before): the apply follows no link in a tree. Named with what it holds, as
# the record $2. Returns 1 where there is none.
ta_tree_link() { ta_links_on "$1" ta_link_said "$2"; }
echo "@@ta begin 1"
if [ -n "$R" ]; then
  # The tree's own top, links resolved; "" where it is / itself (nothing leads out of it).
  ta_top=$(readlink -f -- "$R"); [ "$ta_top" != / ] || ta_top=""
  ta_out=""
  for ta_p in "$D" "$S" "$R/var/lib/trust-agent/status.json" "$C"; do ta_outside_root "$ta_p" && ta_out=1; done
  for ta_p in "$C"/*; do [ -n "$ta_out" ] || [ ! -L "$ta_p" ] || ! ta_outside_root "$ta_p" || ta_out=1; done
  # The host is refused for it (the apply follows no link in a tree): nothing more is read.
  [ -z "$ta_out" ] || { echo "@@ta end"; exit 0; }
  # A link inside the tree on the way to daemon.json's directory or the agent's own (written by every
  # apply that changes anything): refused as well. One on the way to certs.d alone stops only a plan
  # that writes there.
  for ta_p in "${D%/*}" "${S%/*}/backup"; do ta_tree_link "$ta_p" tree-link && ta_out=1; done
  [ -z "$ta_out" ] || { echo "@@ta end"; exit 0; }
  ta_tree_link "$C" certs-dir-tree-link || true
fi
# The agent's own CA files and their directories, one a line: their owner and mode, from one stat.
o=""
ta_nl='
'
# On a live host, certs.d itself a link to nothing, or it (or a directory above it) writable by another
# user: the apply writes no CA file through either (its safe-directory checks). Their owners and modes
# come first in the one stat (links followed, as the apply's find follows them).
if [ -z "$R" ]; then
  if [ -L "$C" ] && [ ! -e "$C" ]; then
    echo "@@ta certs-dir-dangling"; readlink -m -- "$C" | base64 -w0; echo
  else
    o="${C%/*/*}$ta_nl${C%/*}$ta_nl$C$ta_nl"
  fi
fi
if [ -d "$C" ]; then
  echo "@@ta certs-dir"
  # certs.d itself a link (to /srv/certs.d): its directories' links resolve under where it leads.
  if [ -z "$R" ] && [ -L "$C" ]; then echo "@@ta certs-dir-at"; readlink -f -- "$C" | base64 -w0; echo; fi
  ta_unlisted "$C"
  for d in "$C"/*/; do
    [ -d "$d" ] || continue
    n=${d%/}; n=${n##*/}
    echo "@@ta dir $n"
    h=""
    # Its owner and mode are the link's target's, read here: the link itself is always 0777.
    if [ -z "$R" ] && [ -L "${d%/}" ]; then ta_dir_link "${d%/}" "$n"; h=1; fi
    # In a tree, a link that stays inside it: the apply writes no CA file through it.
    if [ -n "$R" ] && [ -L "${d%/}" ]; then echo "@@ta tree-dir-link $n"; readlink -- "${d%/}" | base64 -w0; echo; fi
    ta_unlisted "${d%/}"
    for f in "$d".[!.]* "$d"*; do
      b=${f##*/}
      case "$b" in .trust-agent.[0-9]*) ! ta_leftover "$f" || continue ;; esac
      # A link is never read, even under the agent's own name: it could point at any file (/etc/shadow).
      # Where the agent writes its CA files, one stops the run, as a directory there does.
      if [ -L "$f" ]; then
        case "$b" in
          trust-agent-*.crt) echo "@@ta not-file link $f" ;;
          *) if [ -f "$f" ]; then echo "@@ta name $n/$b"; else ta_broken_entry "$f" "$n/$b"; fi ;;
        esac
        continue
      fi
      if [ ! -f "$f" ]; then
        case "$b" in trust-agent-*.crt) ta_not_file "$f" ;; *) ta_broken_entry "$f" "$n/$b" ;; esac
        continue
      fi
      case "$b" in
        trust-agent-*) echo "@@ta file $n/$b"; ta_read "$f"; [ -n "$h" ] || o="$o${d%/}$ta_nl"; h=1; o="$o$f$ta_nl" ;;
        *) echo "@@ta name $n/$b" ;;
      esac
    done
  done
  # One pass over what stands where registries' directories go. A link to nothing: dockerd finds no CA
  # through it, and nothing can be written through it. A file (a link to one included): no CA can be
  # written there.
  for d in "$C"/*; do
    if [ -L "$d" ] && [ ! -e "$d" ]; then
      echo "@@ta dir-dangling ${d##*/}"
      { if [ -z "$R" ]; then readlink -m -- "$d"; else readlink -- "$d"; fi; } | base64 -w0; echo
    elif [ -e "$d" ] && [ ! -d "$d" ]; then
      if [ -L "$d" ]; then echo "@@ta dir-not-dir link ${d##*/}"
      elif [ -f "$d" ]; then echo "@@ta dir-not-dir file ${d##*/}"
      else echo "@@ta dir-not-dir special ${d##*/}"; fi
    fi
  done
elif [ -d "${C%/*}" ] && [ ! -x "${C%/*}" ]; then
  # /etc/docker itself may not be searched: whether certs.d is there is not known.
  echo "@@ta certs-dir"; echo "@@ta unlisted $C"
fi
if [ -n "$o" ]; then
  # Split on newlines alone, no globbing: the names are as the loop found them.
  set -f; IFS=$ta_nl
  stat -L -c '@@ta owner %u %a %n' -- $o 2>/dev/null
  unset IFS; set +f
fi
# A symlink on a live host: every hop of its chain is checked before its content is read (nothing is
# shown of a file another user could have pointed it at). Links only: a plain file costs no process.
if [ -z "$R" ] && [ -L "$D" ] && ! ta_link_chain "$D"; then
  echo "@@ta daemon-json-unsafe-hop"; printf '%s\n%s\n%s' "$ta_bad" "$ta_hop" "$ta_to" | base64 -w0; echo
else
  [ -f "$D" ] && { echo "@@ta daemon-json"; ta_read "$D"; }
  ta_unsearchable "${D%/*}" daemon-json
  ta_not_file "$D"
  if [ -L "$D" ]; then
    # A symlink: its target is what to write (the link is kept). Not resolved in a --root tree: there it
    # stays inside the tree (one leading out stopped the gather above), and the apply refuses it.
    # -m where -f gives nothing: a link into a directory that does not exist still names its target.
    echo "@@ta daemon-json-link"; t=""
    [ -n "$R" ] || { t=$(readlink -f "$D" || readlink -m "$D"); printf '%s\n' "$t" | base64 -w0; }
    echo
    # The target is what the apply writes: its directory holds the temp files.
    [ -z "$t" ] || [ "${t%/*}" = "${D%/*}" ] || ta_leftovers_in "${t%/*}"
  fi
fi
ta_leftovers_in "${D%/*}"
# root's 0700: a login that is not root lists nothing there, and the glob names nothing.
ta_leftovers_in "$R/var/lib/trust-agent/backup"
[ -f "$S" ] && [ ! -L "$S" ] && { echo "@@ta state"; ta_read "$S"; }
# Kept 0700 or 0750 by a person (the apply keeps an existing directory's mode): not taken for no record.
ta_unsearchable "${S%/*}" state
# The agent's record set aside by a run stopped part way, where the record is missing: the next apply
# puts the newest back (agent.engine.apply_script.RECORD_PUT_BACK), and the facts show it there already.
a=""
for f in "${S%/*}"/.trust-agent.[0-9]*; do
  { [ -e "$f" ] || [ -L "$f" ]; } && ta_leftover "$f" || continue
  case "${f##*/}" in
    .trust-agent.*.a[0-9]*) [ -f "$f" ] && [ ! -L "$f" ] && { [ -z "$a" ] || [ "$f" -nt "$a" ]; } && a=$f ;;
  esac
done
if [ -n "$a" ] && [ ! -e "$S" ] && [ ! -L "$S" ]; then echo "@@ta put-back $a"; echo "@@ta state"; ta_read "$a"; fi
# trust-agent's daemon keeps its own policy here: what it keeps, for a run of another to say so.
T="$R/var/lib/trust-agent/status.json"
[ -f "$R/etc/trust-agent/install.json" ] && [ -f "$T" ] && [ ! -L "$T" ] && { echo "@@ta daemon-status"; b64 "$T"; }
ta_not_file "$S"
if [ -z "$R" ]; then
  i=""; p=""; k=""; ta_silent=""
  # Who the script runs as, with no process: a login that is not root changes nothing in /etc/docker.
  while read -r k v _; do [ "$k" = Uid: ] && { echo "@@ta uid $v"; ta_uid=$v; break; }; done < /proc/self/status
  k=""
  # Docker from the snap store reads its daemon.json and certs.d under /var/snap/docker/current/.
  [ -d /snap/docker/current ] && echo "@@ta snap-docker"
  d=""
  if command -v dockerd >/dev/null 2>&1; then
    d=1
    # A host without the agent's state file is about to be written to, and the apply script reads the
    # live /info after the reload: the version is all that is needed now. A host converged before most
    # likely needs nothing, and proving that takes the live /info (version and registry config), read
    # here in the same round trip. Only when the engine does not answer is the dockerd binary itself
    # asked (each dockerd start costs ~50 ms of CPU).
    # The controller's own request timed out on the socket ("silent"): not asked again here.
    [ "$3" != silent ] || ta_silent=1
    if [ "$3" = api ]; then
      # The controller reads the engine's API itself, over its connection: no curl here. Should the
      # engine not answer it that way, the controller gathers again without this argument.
      i=1; echo "@@ta api"
    elif [ "$3" = elsewhere ]; then
      # dockerd serves its API only elsewhere (the controller found so): nothing is asked of the socket.
      ta_dockerd_version
    elif [ -z "$ta_silent" ] && [ ! -f "$S" ] && ta_version; then
      i=1
    else
      # An engine that let /_ping time out would let /info time out as well: not asked again.
      echo "@@ta info-json"
      if [ -z "$ta_silent" ] && ta_info 2>/dev/null; then
        i=1; echo
      else
        echo
        [ -z "$ta_silent" ] || echo "@@ta engine-silent"
        ta_dockerd_version
      fi
    fi
  fi
  if [ -d /run/systemd/system ]; then
    echo "@@ta init systemd"
    u=$(systemctl cat docker.service 2>/dev/null)
    # The unit is text, only parsed: it travels as it is (no base64 process), framed by an end line
    # holding the controller's random nonce ($4), which no unit file holds.
    echo "@@ta unit-text $4"; [ -n "$u" ] && printf '%s\n' "$u"; echo "@@ta unit-end $4"
    # The unit's EnvironmentFile= files, whose variables ExecStart may use ($DOCKER_OPTS on Debian):
    # their text, read by the shell itself (no process), framed as the unit is.
    [ -z "$u" ] || ta_env_files "$4" <<TA_UNIT
$u
TA_UNIT
    case "$u" in *ExecStart=*) k=unit ;; esac
    if [ -n "$i" ] && [ -n "$k" ] && [ -L /run/systemd/units/invocation:docker.service ]; then
      # The engine answered and docker.service runs (systemd keeps an invocation link for each running
      # unit; -L, as it points at the invocation ID, not at a file), so the unit's ExecStart gives its
      # flags: no PID needed. Without the link (docker.service stopped, dockerd run some other way, or a
      # systemd without such links) systemctl says.
      echo "@@ta active active"
      # Its own command line all the same: the unit may have changed since it started (a drop-in removed,
      # daemon-reload, no restart), and dockerd reloads with the flags it started with. The pidfile
      # names it with no process; one base64 reads the line.
      [ ! -r /var/run/docker.pid ] || read -r p < /var/run/docker.pid || true
      [ -z "$p" ] || ta_cmdline "$p"
    else
      k=""
      a=""
      while IFS='=' read -r k v; do
        case "$k" in ActiveState) a=$v ;; MainPID) p=$v ;; esac
      done <<TA_SHOW
$(systemctl show -p ActiveState -p MainPID docker.service 2>/dev/null)
TA_SHOW
      echo "@@ta active $a"
    fi
  else
    echo "@@ta init other"
  fi
  # The engine's socket is gone (unlinked while dockerd runs): no answer will come, whatever is asked.
  [ -z "$d" ] || [ -S @SOCKET@ ] || echo "@@ta socket-absent"
  if [ -z "$k" ] && { [ -z "$p" ] || [ "$p" = 0 ]; }; then p=$(pgrep -x -o dockerd 2>/dev/null || true); fi
  if [ -z "$k" ] && [ -n "$p" ] && [ "$p" != 0 ]; then ta_cmdline "$p"; fi
else
  ta_tree_unit "$4"
fi
echo "@@ta end"
""").replace("@TREE_UNIT_DIRS@", " ".join(TREE_UNIT_DIRS))
)

_VERSION = re.compile(r"version (\d+\.\d+\.\d+)")
_SERVER_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)")
VALIDATE_SINCE = 23  # `dockerd --validate` came with Docker 23.0


@dataclass(frozen=True)
class EngineFlags:
    """dockerd's command-line flags and where they came from."""

    flags: tuple[str, ...]
    source: str | None
    # Where they came from, each as it is (not part of the flags' value): the unit's own, its next
    # start's (None: no ExecStart read), and the running dockerd's command line (empty: not read).
    unit: tuple[str, ...] | None = field(default=None, compare=False)
    running: tuple[str, ...] = field(default=(), compare=False)


# What a run stopped part way leaves: ``.trust-agent.<pid>.t<n>`` staged, ``.trust-agent.<pid>.a<n>`` set
# aside, ``.trust-agent.<pid>.b0`` the daemon.json backup's copy.
_LEFTOVER_NAME = re.compile(r"\.trust-agent\.[0-9]+\.[abt][0-9]+")


@dataclass(frozen=True)
class Leftovers:
    """Files a trust-agent run stopped part way (killed, its connection dropped) left in the
    directories the agent writes, as host paths: the next apply removes them under the host's lock.
    ``record_put_back``, one of them, is the agent's record set aside while the record is missing:
    that apply puts it back, and the facts show it in place already."""

    files: tuple[str, ...] = ()
    record_put_back: str | None = None

    @property
    def directories(self) -> tuple[str, ...]:
        return tuple(sorted({posixpath.dirname(path) for path in self.files}))

    def said(self, *, removed: bool) -> str | None:
        """The warning naming them (None: there are none); ``removed``: an apply has just done so."""
        if not self.files:
            return None
        others = [path for path in self.files if path != self.record_put_back]
        parts = []
        if others:
            done = "removed them" if removed else "removes them"
            parts.append(
                f"files left by a trust-agent run stopped part way (killed, or its connection dropped): "
                f"{', '.join(others)}; {'this' if removed else 'the next'} apply {done} under the host's lock"
            )
        if self.record_put_back is not None:
            done = "put it back" if removed else "puts it back (shown here in place)"
            parts.append(
                f"{self.record_put_back} is trust-agent's record {STATE_FILE}, set aside by a run stopped "
                f"part way, and the record is missing: {'this' if removed else 'the next'} apply {done}"
            )
        return "; ".join(parts)


NO_LEFTOVERS = Leftovers()


def leftovers_of(records: list[_Record], root: str = "") -> Leftovers:
    """The gather's ``leftover`` and ``put-back`` records, as host paths (``root`` taken off)."""

    def host_path(path: str) -> str | None:
        inside = path.removeprefix(root) if root else path
        named = (not root or path.startswith(root + "/")) and _LEFTOVER_NAME.fullmatch(
            posixpath.basename(path)
        )
        return inside if named else None

    files = [host_path(r.name) for r in records if r.kind == "leftover"]
    put_back = next((host_path(r.name) for r in records if r.kind == "put-back"), None)
    return Leftovers(tuple(sorted({f for f in files if f})), put_back)


# A PEM private key block of any kind (RSA, EC, ENCRYPTED, OPENSSH...), to its end line or, where it has
# none, to the end of the file.
# PEM keys (PKCS#8, RSA, EC, OpenSSH, encrypted) and an armoured PGP secret key ("... KEY BLOCK-----").
_PRIVATE_KEY = re.compile(
    rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?"
    rb"(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|(?=\n?\Z))",
    re.DOTALL,
)
# What stands for such a block in the facts, and so in every plan, diff and report made from them.
REDACTED_KEY = re.compile(rb"^\[private key redacted: \d+ lines?\]$", re.MULTILINE)


def without_private_keys(data: bytes) -> bytes:
    """``data`` with each PEM private key block in it replaced by one line saying how long it was.

    >>> without_private_keys(b"CA\n-----BEGIN EC PRIVATE KEY-----\nMHc=\n-----END EC PRIVATE KEY-----\n")
    b'CA\n[private key redacted: 3 lines]\n'
    """

    def placeholder(block: re.Match[bytes]) -> bytes:
        lines = len(block.group(0).rstrip(b"\n").split(b"\n"))
        return f"[private key redacted: {lines} line{'s' if lines > 1 else ''}]".encode()

    return _PRIVATE_KEY.sub(placeholder, data)


def _withheld(records: list[_Record]) -> dict[str, bytes]:
    """The agent's CA files that hold a private key, as the host holds them (by host path): the facts
    show them with the key redacted."""
    held: dict[str, bytes] = {}
    for record in records:
        if record.kind == "file" and not _READ_FAILED.fullmatch(record.payload or ""):
            data = _b64(record.payload or "", record.kind)
            if _PRIVATE_KEY.search(data):
                held[f"{CERTS_DIR}/{record.name}"] = data
    return held


@dataclass(frozen=True)
class Gathered:
    """One gather: the host's facts, the engine's ``/info`` where read (see :func:`gather_live`), the
    files a run stopped part way left there, and the agent's CA files whose private key the facts do
    not show, as the host holds them (``withheld``, by host path: never part of any output)."""

    facts: DockerFacts
    info: dict[str, Any] | None
    leftovers: Leftovers = NO_LEFTOVERS
    withheld: Mapping[str, bytes] = field(default_factory=dict, repr=False)

    def as_on_host(self, plan: HostPlan) -> HostPlan:
        """``plan`` (made from the redacted facts) with each change's ``before`` as the host holds it: the
        apply checks by its hash that a file is unchanged since gathered, and a roll-back puts it back."""
        if not self.withheld:
            return plan
        changes = tuple(
            replace(change, before=self.withheld[change.path])
            if change.path in self.withheld and change.before is not None
            else change
            for change in plan.changes
        )
        return replace(plan, changes=changes)


def gather(transport: Transport, *, root: str = "", timeout: float = 60.0) -> DockerFacts:
    """Read the host's facts (one round trip; a second only when dockerd uses ``--config-file``)."""
    return gather_live(transport, root=root, timeout=timeout)[0]


def gather_live(
    transport: Transport, *, root: str = "", timeout: float = 60.0
) -> tuple[DockerFacts, dict[str, Any] | None]:
    """The host's facts and, in the same round trip, the running engine's ``/info``.

    The /info is None where the engine did not answer, and where it was not asked: a host without the
    agent's state file gets written to, so the gather takes only the engine's version (``/_ping``) and
    the apply script reads /info after the reload.
    """
    gathered = gather_host(transport, root=root, timeout=timeout)
    return gathered.facts, gathered.info


def gather_host(transport: Transport, *, root: str = "", timeout: float = 60.0) -> Gathered:
    """:func:`gather_live`, with the files a run stopped part way left on the host (same round trip)."""
    gathered = _gather_once(transport, root, DAEMON_JSON, timeout)
    # Only the unit's own --config-file names the file to write: one the running dockerd has and its
    # unit no longer gives is a file its next start would not read (reconcile refuses that host).
    config_file = config_file_flag(gathered.facts.next_start_flags)
    if config_file and config_file != DAEMON_JSON:
        gathered = _gather_once(transport, root, config_file, timeout)
    return gathered


def _gather_once(transport: Transport, root: str, daemon_json: str, timeout: float) -> Gathered:
    # A host with the agent's state file, most likely converged, is asked for /info at once where the
    # transport can tell so without a round trip (over SSH, the script session's greeting says).
    first = (
        None
        if root
        else transport.engine_request(
            "/_ping", min(timeout, ANSWER_TIMEOUT), where_file=(STATE_FILE, "/info")
        )
    )
    engine = ""
    if first is not None:
        gathered = _gather_by_api(transport, first, daemon_json, timeout)
        if gathered is not None:
            return gathered
        # The engine took the controller's request and let it time out: the script's curl would wait
        # as long again on the same socket.
        engine = "silent" if first.timed_out else ""
    result = transport.run_script(
        GATHER_SCRIPT, root, daemon_json, engine, secrets.token_hex(8), timeout=timeout
    )
    result.check("gathering facts")
    records = _records(result.stdout.decode("utf-8", "replace"))
    return Gathered(*_parse(records, daemon_json, root), leftovers_of(records, root), _withheld(records))


def _gather_by_api(
    transport: Transport, first: PendingReply, daemon_json: str, timeout: float
) -> Gathered | None:
    """The gather where the transport reaches the engine's API itself: the script reads the files while
    the first request (already sent: ``/_ping``, or ``/info`` where the host had the state file) travels;
    a host with the agent's state file, most likely converged, needs ``/info`` (version and live registry
    config), asked next where ``/_ping`` went first. None when the engine did not answer so: the caller
    gathers again the classic way, which also covers an engine that is down."""
    result = transport.run_script(
        GATHER_SCRIPT, "", daemon_json, "api", secrets.token_hex(8), timeout=timeout
    )
    result.check("gathering facts")
    records = _records(result.stdout.decode("utf-8", "replace"))
    leftovers, withheld = leftovers_of(records), _withheld(records)
    hostside = Gathered(*_parse(records, daemon_json), leftovers, withheld)  # without the engine's answers
    if _serves_elsewhere(hostside.facts):
        # Not waiting on a socket dockerd does not serve. Where how dockerd reads daemon.json depends on
        # its version (data after the document, bytes that are not UTF-8), its binary is asked which.
        if not _read_depends_on_version(hostside.facts.daemon_json):
            return hostside
        return _gather_serving_elsewhere(transport, daemon_json, timeout)
    answer = first.wait()
    if answer is None or not answer.ok or answer.version is None:
        return None
    kinds = {record.kind for record in records}
    if "api" not in kinds:  # no dockerd on the host: nothing of the engine is used
        return hostside
    if "state" not in kinds:
        return Gathered(*_parse(records, daemon_json, ping_version=answer.version), leftovers, withheld)
    reply = answer if first.path == "/info" else transport.engine_get("/info", timeout)
    if reply is None:
        return None
    facts, info = _parse(records, daemon_json, info_json=reply.body)
    return Gathered(facts, info, leftovers, withheld) if info is not None else None


def _gather_serving_elsewhere(transport: Transport, daemon_json: str, timeout: float) -> Gathered:
    """The gather of a host whose dockerd serves its API only elsewhere: its version from its binary,
    with no wait on the default socket."""
    result = transport.run_script(
        GATHER_SCRIPT, "", daemon_json, "elsewhere", secrets.token_hex(8), timeout=timeout
    )
    result.check("gathering facts")
    records = _records(result.stdout.decode("utf-8", "replace"))
    return Gathered(*_parse(records, daemon_json), leftovers_of(records), _withheld(records))


def _serves_elsewhere(facts: DockerFacts) -> bool:
    """dockerd's flags or daemon.json put its API only where the agent does not read it."""
    return api_elsewhere(facts, _daemon_json_as_dockerd_reads_it(facts)) is not None


def _read_depends_on_version(raw: bytes | None) -> bool:
    """Whether Docker 20.10 and 23.0 or later read daemon.json ``raw`` differently: 20.10 ignores data
    after its JSON document and takes bytes that are not UTF-8; later ones refuse the file."""
    return raw is not None and (trailing_data(raw) is not None or invalid_utf8_at(raw) is not None)


def _daemon_json_as_dockerd_reads_it(facts: DockerFacts) -> dict[str, Any]:
    """The host's daemon.json as its dockerd reads it; ``{}`` where it cannot (dockerd runs on what it
    loaded before). Docker 20.10 reads the first JSON value and ignores what follows, and takes bytes
    that are not UTF-8; 23.0 and later refuse such a file, so cannot have started with it. An engine of
    unknown version (the gather that leaves its API to the controller does not ask) is read as 20.10
    reads it: only a dockerd that reads the file so can be running with it."""
    if not facts.daemon_json:
        return {}
    known = facts.engine_version is not None or facts.has_validate is not None
    lenient = reads_invalid_utf8(facts) or not known
    try:
        return parse_daemon_json(
            facts.daemon_json, facts.daemon_json_path, keep_invalid_utf8=lenient, ignore_trailing=lenient
        )
    except DaemonJsonError:
        return {}


def live_info(text: str) -> dict[str, Any] | None:
    """The engine's ``/info`` from a script's ``@@ta info-json`` record (the JSON on the next line)."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line == f"{MARK} info-json":
            return info_doc(lines[index + 1].encode() if index + 1 < len(lines) else None)
    return None


def parse_gather_output(
    text: str,
    daemon_json_path: str = DAEMON_JSON,
    root: str = "",
    *,
    ping_version: str | None = None,
    info_json: bytes | None = None,
) -> DockerFacts:
    """Turn the gather script's output into :class:`DockerFacts` (pure; tested without a host).

    ``ping_version`` (``/_ping``'s) and ``info_json`` (``/info``'s body) are the engine's answers where the
    controller read its API itself; they stand for the script's own records of them."""
    return _parse(_records(text), daemon_json_path, root, ping_version=ping_version, info_json=info_json)[0]


@dataclass(frozen=True)
class _Record:
    """One ``@@ta <kind> [<name>]`` record of the gather's output, with what follows it where it has any."""

    kind: str
    name: str
    payload: str | None = None


# docker.service states in which dockerd runs (a reload in progress included), and those in which it
# does not (a dockerd that answers then is not docker.service's; a state in transition is neither).
_RUNNING = frozenset({"active", "reloading"})
_STOPPED = frozenset({"inactive", "failed", ""})

# Records followed by text up to an end line holding the gather's nonce: the unit, environment files.
_TEXTS = {"unit-text": "unit-end", "env-text": "env-end", "tree-unit-text": "tree-unit-end"}

# Records followed by one line: base64 for files, JSON for /info.
_LINE_PAYLOADS = frozenset(
    {
        "file",
        "daemon-json",
        "daemon-json-link",
        "daemon-json-unsafe-hop",
        "dir-link",
        "certs-dir-at",
        "dir-unsafe-hop",
        "dir-dangling",
        "certs-dir-dangling",
        "outside-root",
        "tree-link",
        "certs-dir-tree-link",
        "tree-dir-link",
        "state",
        "daemon-status",
        "cmdline",
        "info-json",
    }
)


def _records(text: str) -> list[_Record]:
    """The records of the gather's output, up to its ``@@ta end``."""
    lines = text.splitlines()
    if not lines or lines[0] != f"{MARK} begin 1":
        raise CommandError("gathering facts: unexpected output from the host (is it a POSIX shell?)")
    records: list[_Record] = []
    index = 1
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.startswith(MARK + " "):
            continue
        kind, _, name = line[len(MARK) + 1 :].partition(" ")
        if kind == "end":
            return records
        if kind in _TEXTS:
            try:
                stop = lines.index(f"{MARK} {_TEXTS[kind]} {name}", index)
            except ValueError:
                raise CommandError(
                    f"gathering facts: the {kind.partition('-')[0]} text has no end in the host's output"
                ) from None
            records.append(_Record(kind, name, "\n".join(lines[index:stop])))
            index = stop + 1
        elif kind in _LINE_PAYLOADS:
            records.append(_Record(kind, name, lines[index] if index < len(lines) else ""))
            index += 1
        else:
            records.append(_Record(kind, name))
    raise CommandError("gathering facts: unexpected output from the host (is it a POSIX shell?)")


def _parse(
    records: list[_Record],
    daemon_json_path: str,
    root: str = "",
    *,
    ping_version: str | None = None,
    info_json: bytes | None = None,
) -> tuple[DockerFacts, dict[str, Any] | None]:
    """:func:`parse_gather_output` over the records, with the engine's ``/info`` as decoded for the facts."""
    certs: dict[str, bytes] = {}
    dirs: set[str] = set()
    values: dict[str, str] = {}
    blobs: dict[str, bytes] = {}
    env_files: dict[str, str] = {}
    env_path = ""
    env_globs: dict[str, list[str]] = {}
    env_glob: str | None = None
    owners: dict[str, tuple[int, int]] = {}
    unreadable: dict[str, str] = {}
    broken: dict[str, str] = {}
    not_dirs: dict[str, str] = {}
    links = _linked_dirs(records, _certs_dir_target(records))
    tree_units: list[tuple[str, str | None]] = []
    tree_unit = ""
    _refuse_outside_root(records, root)
    _refuse_tree_links(records)
    _refuse_non_files(records)
    _refuse_unsafe_hop(records, daemon_json_path)
    for record in records:
        kind, name, payload = record.kind, record.name, record.payload or ""
        if kind in ("dir-link", "certs-dir-at", "dir-unsafe-hop", "dir-dangling", "link-owner"):
            continue  # read by _linked_dirs
        if kind in ("tree-link", "certs-dir-tree-link", "tree-dir-link"):
            continue  # read by _refuse_tree_links, _certs_dir_problem, _tree_dir_links
        if kind == "daemon-json" and _READ_FAILED.fullmatch(payload):
            values["daemon-json-unreadable"] = _why_unreadable(payload)
        elif kind in _READ_RECORDS and _READ_FAILED.fullmatch(payload):
            unreadable[_read_path(kind, name, values.get("pid"))] = _why_unreadable(payload)
            if kind == "file":
                certs[name] = b""  # there, its content unknown: never shown as a file to create
        elif kind == "unlisted":
            unreadable[_inside(name, root)] = "permission denied"
        elif kind == "dir":
            dirs.add(name)
        elif kind == "cert-entry-broken":
            what, _, rel = name.partition(" ")
            broken[rel] = what
        elif kind == "dir-not-dir":
            what, _, registry = name.partition(" ")
            not_dirs[registry] = what
        elif kind == "name":
            certs[name] = b""  # not ours: listed, never read
        elif kind == "info-json":
            blobs["info"] = payload.encode()
        elif kind == "unit-text":
            blobs["unit"] = payload.encode()
        elif kind == "tree-unit":
            tree_unit = name  # the next tree-unit-text is its text
        elif kind == "tree-unit-text":
            tree_units.append((tree_unit, payload))
        elif kind == "tree-unit-masked":
            tree_units.append((name, None))
        elif kind == "env-glob":
            env_glob = name  # the next env-file is one it matches
        elif kind == "env-file":
            env_path = name
            if env_glob is not None:
                env_globs.setdefault(env_glob, []).append(name)
                env_glob = None
        elif kind == "env-text":
            env_files[env_path] = payload
        elif kind == "file":
            # A key someone put in one of the agent's CA files stays on the host (the apply still
            # checks the file by its hash: Gathered.withheld).
            certs[name] = without_private_keys(_b64(payload, kind))
        elif kind == "owner":
            owners.update(_owner(name, root))
        elif kind in _LINE_PAYLOADS:
            blobs[kind] = _b64(payload, kind)
        else:
            values[kind] = name
    if root and tree_units:
        blobs["unit"] = tree_unit_text(tree_units) or b""
    if ping_version is not None:
        values["engine-version"] = ping_version
    if info_json is not None:
        blobs["info"] = info_json
    version_match = _VERSION.search(values.get("dockerd-version", ""))
    info = info_doc(blobs.get("info"))
    server_version = str(info.get("ServerVersion") or "") if info else values.get("engine-version", "")
    server_match = _SERVER_VERSION.match(server_version)
    engine_version = version_match.group(1) if version_match else None
    has_validate = {"yes": True, "no": False}.get(values.get("validate", ""))
    if server_match and engine_version is None:
        engine_version = ".".join(server_match.groups())
        if has_validate is None:
            has_validate = int(server_match.group(1)) >= VALIDATE_SINCE
    flags = engine_flags(blobs.get("unit"), blobs.get("cmdline"), values.get("pid"), env_files, env_globs)
    init = values.get("init") if not root else None
    engine_answered = ping_version is not None or info_json is not None
    # A dockerd process is there: it has a PID, or it answered (in the gather, or to the controller).
    dockerd_seen = "pid" in values or info is not None or "engine-version" in values or engine_answered
    link_problems = {**_tree_dir_links(records, root), **links.problems(owners)}
    # A linked directory's target that is not root's alone is said once, as the link's problem.
    owners = {rel: owner for rel, owner in owners.items() if rel not in link_problems}
    facts = DockerFacts(
        certs_dir=CERTS_DIR,
        daemon_json_path=daemon_json_path,
        state_path=STATE_FILE,
        certs=certs,
        cert_dirs=frozenset(dirs),
        cert_owners=owners,
        certs_dir_present="certs-dir" in values or bool(dirs or certs),
        certs_dir_problem=_certs_dir_problem(records, root),
        daemon_json=blobs.get("daemon-json"),
        daemon_json_link=_link_target(blobs.get("daemon-json-link")),
        state=blobs.get("state"),
        daemon_status=blobs.get("daemon-status"),
        engine_version=engine_version,
        dockerd_flags=flags.flags,
        flags_source=flags.source,
        has_validate=has_validate,
        init=init,
        engine_running=values.get("active") in _RUNNING or (init != "systemd" and dockerd_seen),
        engine_unit_state=values.get("active", "") if init == "systemd" else "",
        login_uid=int(values["uid"]) if values.get("uid", "").isdigit() else None,
        engine_api=engine_answered,
        engine_elsewhere=init == "systemd" and values.get("active") in _STOPPED and dockerd_seen,
        snap_docker="snap-docker" in values,
        unit_masked=blobs.get("unit", b"").startswith(MASKED_UNIT),
        unit_flags=flags.unit,
        running_flags=flags.running,
        daemon_json_unreadable=values.get("daemon-json-unreadable"),
        unreadable_files=unreadable,
        cert_dir_links=links.targets,
        cert_dir_link_problems=link_problems,
        unit_reload_missing=reload_missing(blobs.get("unit")),
        cert_entries_broken=broken,
        cert_dir_not_dirs=not_dirs,
        engine_silent="engine-silent" in values and info is None and not engine_answered,
    )
    if values.get("active") in _RUNNING and info is None and "engine-version" not in values:
        _refuse_silent_engine(facts, "socket-absent" in values, bool(blobs.get("info")))
    return facts, info


# What ``systemctl cat`` prints for a masked unit, in place of its files.
MASKED_UNIT = b"# Unit docker.service is masked."

# ``ta_read``'s answer where a file could not be read: what base64 gave before the failure, then "!"
# (never in base64's alphabet), then "denied" where the login may not read it.
_READ_FAILED = re.compile(r"[A-Za-z0-9+/=]*!(denied)?")


# The records read with ``ta_read`` besides daemon.json's (which has its own fact): the agent's CA files,
# its record, dockerd's command line.
_READ_RECORDS = frozenset({"file", "state", "cmdline"})


def _read_path(kind: str, name: str, pid: str | None) -> str:
    """The host path a ``ta_read`` record stands for (``name``: a CA file's ``<registry>/<file>``)."""
    if kind == "file":
        return f"{CERTS_DIR}/{name}"
    if kind == "state":
        return STATE_FILE
    return f"/proc/{pid or '?'}/cmdline"


def _inside(path: str, root: str) -> str:
    """A path the gather printed (under ``root`` in a tree) as a host path."""
    return path.removeprefix(root) if root and path.startswith(root + "/") else path


def _why_unreadable(payload: str) -> str:
    """``ta_read``'s answer for a file it could not read, as a report says it."""
    return "permission denied" if payload.endswith("!denied") else "read error"


@dataclass(frozen=True)
class _LinkedDirs:
    """What the gather found of certs.d directories that are symbolic links (a live host only)."""

    targets: dict[str, str]  # registry → the resolved directory its link leads to
    unsafe_hops: dict[str, str]  # registry → why a hop of its chain cannot be trusted
    link_owners: dict[str, int]  # registry → the uid owning the link itself
    # registry → what its link leads to, which does not exist (a live host: resolved; a tree: as written)
    dangling: dict[str, str] = field(default_factory=dict)

    def problems(self, owners: Mapping[str, tuple[int, int]]) -> dict[str, str]:
        """Why each linked directory cannot be trusted (``owners``: the targets' owner and mode), or
        cannot be written through at all (a link to nothing)."""
        found = {
            registry: f"{CERTS_DIR}/{registry} is a link to {target}, which does not exist: create the "
            "target directory or remove the link"
            for registry, target in self.dangling.items()
        }
        found.update((registry, why) for registry, why in self.unsafe_hops.items() if registry not in found)
        for registry, uid in self.link_owners.items():
            if uid != 0 and registry not in found:
                found[registry] = (
                    f"{CERTS_DIR}/{registry} is a symbolic link owned by uid {uid}, not root: trust-agent "
                    "does not write through it (make it root's: chown -h root)"
                )
        for registry, target in self.targets.items():
            unsafe = unsafe_owner(owners.get(registry))
            if unsafe is not None and registry not in found:
                found[registry] = (
                    f"{CERTS_DIR}/{registry} is a symbolic link to {target}, which is {unsafe}: another "
                    f"local user could replace the CA files dockerd trusts for {registry} there (make "
                    f"{target} root's alone: chown root:root, chmod 0755)"
                )
        return found


def _certs_dir_target(records: list[_Record]) -> str | None:
    """Where certs.d leads where it is itself a link (the gather's ``certs-dir-at``), else None."""
    found = next((r for r in records if r.kind == "certs-dir-at"), None)
    if found is None:
        return None
    return _link_target(_b64(found.payload or "", found.kind)) or None


def _as_spelled_in_certs_dir(target: str, certs_dir_target: str | None) -> str:
    """A certs.d directory link's resolved target as certs.d spells it: where certs.d is itself a link,
    its directories resolve under where it leads, and two spellings of one registry are told by their
    targets' names under certs.d.

    >>> _as_spelled_in_certs_dir("/srv/certs.d/registry.test", "/srv/certs.d")
    '/etc/docker/certs.d/registry.test'
    >>> _as_spelled_in_certs_dir("/srv/other/registry.test", "/srv/certs.d")
    '/srv/other/registry.test'
    """
    if certs_dir_target and target.startswith(certs_dir_target.rstrip("/") + "/"):
        return CERTS_DIR + target[len(certs_dir_target.rstrip("/")) :]
    return target


def _linked_dirs(records: list[_Record], certs_dir_target: str | None = None) -> _LinkedDirs:
    """The gather's ``dir-link``, ``dir-unsafe-hop``, ``dir-dangling`` and ``link-owner`` records
    (``certs_dir_target``: where certs.d leads, where it is itself a link)."""
    linked = _LinkedDirs({}, {}, {})
    prefix = f"{CERTS_DIR}/"
    for record in records:
        if record.kind == "dir-dangling":
            missing = _b64(record.payload or "", record.kind).decode("utf-8", "replace").rstrip("\n")
            linked.dangling[record.name] = missing or "?"
        elif record.kind == "dir-link":
            target = _link_target(_b64(record.payload or "", record.kind))
            linked.targets[record.name] = (
                _as_spelled_in_certs_dir(target, certs_dir_target) if target else "?"
            )
        elif record.kind == "dir-unsafe-hop":
            parts = _b64(record.payload or "", record.kind).decode("utf-8", "replace").split("\n")
            directory, link, target = [*parts, "?", "?", "?"][:3]
            linked.unsafe_hops[record.name] = (
                f"{directory} is writable by a user other than root, and {prefix}{record.name} is reached "
                f"through it (the link {link} -> {target}): that user could point it at any directory, "
                f"whose files dockerd would trust as CAs for {record.name} (make {directory} root's "
                "alone: chown root, chmod go-w)"
            )
        elif record.kind == "link-owner":
            uid, _, path = record.name.partition(" ")
            if uid.isdigit() and path.startswith(prefix):
                linked.link_owners[path.removeprefix(prefix)] = int(uid)
    return linked


def tree_unit_text(files: Sequence[tuple[str, str | None]]) -> bytes | None:
    r"""docker.service in a --root tree as ``systemctl cat`` would print it once the image runs, from its
    files as the gather found them (``files``: each image path with its text, None where it is a link to
    /dev/null); None where there is none.

    As systemd loads a unit: the first ``docker.service`` in :data:`TREE_UNIT_DIRS`' order (masked there:
    nothing else counts), then every ``docker.service.d/*.conf`` in the order of their names, one of the
    same name in a directory of higher precedence replacing the other (masking it, where it leads to
    /dev/null). Each file behind a ``# /path`` header, as :func:`unit_lines` reads it.

    >>> tree_unit_text([("/lib/systemd/system/docker.service", "[Service]\nExecStart=/d"),
    ...                 ("/etc/systemd/system/docker.service.d/b.conf", "[Service]\nExecStart=/d -b")])
    b'# /lib/systemd/system/docker.service\n[Service]\nExecStart=/d\n\n# /etc/systemd/system/docker.service.d/b.conf\n[Service]\nExecStart=/d -b\n'
    """
    fragment: tuple[int, str, str | None] | None = None
    drop_ins: dict[str, tuple[int, str, str | None]] = {}
    for path, text in files:
        directory, _, name = path.rpartition("/")
        if name == "docker.service" and directory in TREE_UNIT_DIRS:
            found = (TREE_UNIT_DIRS.index(directory), path, text)
            fragment = found if fragment is None or found[0] < fragment[0] else fragment
        elif directory.endswith("/docker.service.d") and name.endswith(".conf"):
            unit_dir = directory.removesuffix("/docker.service.d")
            if unit_dir in TREE_UNIT_DIRS:
                found = (TREE_UNIT_DIRS.index(unit_dir), path, text)
                if name not in drop_ins or found[0] < drop_ins[name][0]:
                    drop_ins[name] = found
    if fragment and fragment[2] is None:
        return MASKED_UNIT + b"\n"
    chosen = ([fragment] if fragment else []) + [drop_ins[name] for name in sorted(drop_ins)]
    texts = [f"# {path}\n{text}\n" for _, path, text in chosen if text is not None]
    return "\n".join(texts).encode() if texts else None


def unit_lines(unit: bytes) -> list[tuple[str | None, str]]:
    r"""``systemctl cat``'s text as systemd reads it: each logical line, stripped (an assignment's key
    and value each), with the file it is in (from the ``# /path`` headers; None before the first),
    comments and empty lines left out.

    systemd.syntax(7): a line ending in a backslash goes on on the next line, the backslash read as a
    space; comment lines inside such a continuation are skipped. A backslash that is itself escaped
    (``\\``) ends the line, as does the end of the text.

    >>> unit_lines(b"# /d.service\nExecStart=/d -a \\\n# note\n  -b\n")
    [('/d.service', 'ExecStart=/d -a    -b')]
    """
    found: list[tuple[str | None, str]] = []
    current: str | None = None
    pending: str | None = None
    for raw in unit.decode("utf-8", "replace").split("\n"):
        line = raw.removesuffix("\r")
        if pending is None and line.startswith("# /"):
            current = line[2:].strip()
            continue
        if pending is not None and line.lstrip().startswith(_COMMENT):
            continue
        joined = line if pending is None else pending + line
        if _continues(joined):
            pending = joined[:-1] + " "
            continue
        pending = None
        _add_logical_line(found, current, joined)
    if pending is not None:
        _add_logical_line(found, current, pending)
    return found


# What starts a comment line in a unit file (systemd.syntax(7)).
_COMMENT = ("#", ";")


def _add_logical_line(found: list[tuple[str | None, str]], current: str | None, line: str) -> None:
    """``line`` (a whole logical line) added to ``found`` unless it is empty or a comment."""
    stripped = line.strip()
    if stripped and not stripped.startswith(_COMMENT):
        found.append((current, _as_assignment(stripped)))


def _as_assignment(line: str) -> str:
    """A ``Key = value`` line as ``Key=value``: systemd strips the blanks around a key and its value
    (``EnvironmentFile = /etc/default/docker`` names that file).

    >>> _as_assignment("EnvironmentFile = -/etc/default/docker"), _as_assignment("[Service]")
    ('EnvironmentFile=-/etc/default/docker', '[Service]')
    """
    key, equals, value = line.partition("=")
    if not equals or line.startswith("["):
        return line
    return f"{key.strip()}={value.strip()}"


def _continues(line: str) -> bool:
    """Whether ``line`` ends in a backslash that is not itself escaped, as systemd's parser counts."""
    trailing = len(line) - len(line.rstrip("\\"))
    return trailing % 2 == 1


def reload_missing(unit: bytes | None) -> str | None:
    r"""Where docker.service has no ExecReload (``systemctl cat``'s text), what says so; None where it has
    one, or no unit was read. An empty ``ExecReload=`` in a drop-in clears the list, as systemd does.

    >>> reload_missing(b"# /lib/d.service\nExecStart=/d\nExecReload=/bin/kill -HUP $MAINPID\n# /etc/x.conf\nExecReload=\n")
    '/etc/x.conf clears it'
    """
    if not unit or unit.startswith(MASKED_UNIT):
        return None
    has_start = has_reload = False
    cleared_by: str | None = None
    for current, line in unit_lines(unit):
        if line.startswith("ExecStart="):
            has_start = True
        elif line.startswith("ExecReload="):
            has_reload = bool(line.removeprefix("ExecReload=").strip())
            cleared_by = None if has_reload else current
    if not has_start or has_reload:
        return None
    return f"{cleared_by} clears it" if cleared_by else "its unit gives none"


def _refuse_silent_engine(facts: DockerFacts, socket_absent: bool, other_answer: bool) -> None:
    """Stop at a docker.service that runs while its API socket does not answer root (the socket file
    unlinked, say; ``other_answer``: the docker CLI's error document came instead of /info): the live
    config cannot be read, so no reload could be verified, and every run would reload, wait and roll
    back. Not where dockerd serves its API elsewhere (the planner says so), nor for a login that is not
    root (the socket is root's), nor where the engine's version was read."""
    if facts.login_uid not in (None, 0) or facts.engine_api or not (socket_absent or other_answer):
        return
    if _serves_elsewhere(facts):
        return
    why = "the socket file is gone" if socket_absent else "the docker CLI got no engine's answer there"
    raise CommandError(
        f"docker.service is active but {ENGINE_SOCKET} does not answer ({why}): trust-agent cannot read "
        "the engine's live config, so no change could be verified; restart dockerd and its socket "
        "(systemctl stop docker.service docker.socket; systemctl start docker.socket docker.service), "
        "then run again (nothing written)"
    )


def _refuse_non_files(records: list[_Record]) -> None:
    """Stop at a path the agent writes (daemon.json, its state file, a ``trust-agent-*.crt`` CA file) that
    holds a directory or another non-file: nothing the agent writes there could take its place, and
    every apply would find it "changed since facts were gathered". A CA file that is a symbolic link
    is one too: never read or written through, every plan would show it as a new file."""
    found = [record.name.partition(" ") for record in records if record.kind == "not-file"]
    if found:
        raise CommandError("; ".join(_not_a_file(path, what) for what, _, path in found))


def _refuse_outside_root(records: list[_Record], root: str) -> None:
    """Stop at a --root tree where a link on the way to daemon.json, certs.d, one of its directories or the
    agent's record leads out of the tree: what it leads to is the build machine's, not the image's, so
    the gather read nothing through it, and the apply would refuse to write through it."""
    found: dict[str, str] = {}
    for record in records:
        if record.kind == "outside-root":
            target = _b64(record.payload or "", record.kind).decode("utf-8", "replace").removesuffix("\n")
            found.setdefault(record.name, target)
    if found:
        raise CommandError(
            "; ".join(
                f"{link} is a symbolic link to {target}, which leads out of the --root tree {root}: "
                "trust-agent neither reads nor writes the build machine's files for the image; replace "
                "the link with what the image should hold, then run again (nothing written)"
                for link, target in found.items()
            )
        )


def _refuse_tree_links(records: list[_Record]) -> None:
    """Stop at a --root tree where a link inside it lies on the way to daemon.json's directory or the
    agent's own (every apply that changes anything writes there, and follows no link in a tree)."""
    found = {record.name: _record_text(record) for record in records if record.kind == "tree-link"}
    if found:
        raise CommandError("; ".join(tree_link_says(link, target) for link, target in found.items()))


def _tree_dir_links(records: list[_Record], root: str) -> dict[str, str]:
    """A --root tree's certs.d directories that are links inside it, by registry, each with why the
    apply writes no CA file there (a plan that would is blocked)."""
    return {
        record.name: tree_link_problem(f"{root}{CERTS_DIR}/{record.name}", _record_text(record))
        for record in records
        if record.kind == "tree-dir-link"
    }


def _record_text(record: _Record) -> str:
    """A record's base64 payload as text, its final newline taken off."""
    return _b64(record.payload or "", record.kind).decode("utf-8", "replace").removesuffix("\n")


def _owner(record: str, root: str) -> dict[str, tuple[int, int]]:
    """``"<uid> <octal mode> <path>"`` (stat's line for one of the agent's CA files or its directory)
    → ``{"<registry>/<file>" or "<registry>": (uid, mode)}``; nothing for a line not understood."""
    read = _stat_line(record)
    prefix = f"{root}{CERTS_DIR}/"
    if read is None or read[0][0] < 0 or not read[1].startswith(prefix):
        return {}
    return {read[1].removeprefix(prefix): read[0]}


def _refuse_unsafe_hop(records: list[_Record], daemon_json_path: str) -> None:
    """Stop at a daemon.json whose chain of links goes through a directory another user can write in
    (the gather read nothing through it)."""
    for record in records:
        if record.kind == "daemon-json-unsafe-hop":
            parts = _b64(record.payload or "", record.kind).decode("utf-8", "replace").split("\n")
            directory, link, target = [*parts, "?", "?", "?"][:3]
            raise CommandError(unsafe_hop_says(directory, daemon_json_path, link, target))


# certs.d and the directories above it, as the apply checks them before it writes a CA file there.
_CERTS_DIR_AND_ABOVE = (
    posixpath.dirname(posixpath.dirname(CERTS_DIR)),
    posixpath.dirname(CERTS_DIR),
    CERTS_DIR,
)


def _certs_dir_problem(records: list[_Record], root: str) -> str | None:
    """Why the apply would write no CA file into a live host's certs.d, in its words: a link to nothing,
    or certs.d (or a directory above it) that a user other than root can write in (the first, as the
    apply's find names it). The plan blocks a host it would write there; verify fails one whose CA
    files are there."""
    for record in records:
        if record.kind == "certs-dir-tree-link":
            return tree_link_problem(record.name, _record_text(record))
        if record.kind == "certs-dir-dangling":
            path = _b64(record.payload or "", record.kind).decode("utf-8", "replace").rstrip("\n") or "?"
            return (
                f"{CERTS_DIR} is a link to {path}, which does not exist: create the target directory or "
                "remove the link"
            )
    for record in records if not root else ():
        unsafe = _unsafe_directory(record.name) if record.kind == "owner" else None
        if unsafe in _CERTS_DIR_AND_ABOVE:
            return (
                f"{unsafe} is writable by a user other than root: trust-agent does not write there (make it "
                "root's alone: chown root, chmod go-w)"
            )
    return None


def _unsafe_directory(record: str) -> str | None:
    """The path of stat's ``"<uid> <octal mode> <path>"`` where another user than root owns it or may
    write in it (:func:`unsafe_owner`, as the apply's ``find ! -user 0 -o -perm /022`` finds it)."""
    read = _stat_line(record)
    return read[1] if read is not None and unsafe_owner(read[0]) is not None else None


def _stat_line(record: str) -> tuple[tuple[int, int], str] | None:
    """stat's ``"<uid> <octal mode> <path>"`` as ``((uid, mode), path)``; None for a line not understood."""
    uid, _, rest = record.partition(" ")
    mode, _, path = rest.partition(" ")
    try:
        return (int(uid), int(mode, 8)), path
    except ValueError:
        return None


# What the gather found at a path the agent writes (``@@ta not-file <kind> <path>``), as said.
_NOT_A_FILE = {
    "directory": "a directory, not a file",
    # Never followed: a link there could point at any file, which root would then read or replace.
    "link": "a symbolic link, which trust-agent does not follow (it could point at any file)",
}


def _not_a_file(path: str, kind: str) -> str:
    """Why ``path`` stops the run, and what to do about it."""
    what = _NOT_A_FILE.get(kind, "not a regular file")
    if kind == "link":
        harm = "dockerd would trust whatever file it leads to as a CA for that registry"
        return f"{path} is {what}: {harm}; remove it, then run again (nothing written)"
    if posixpath.basename(path).startswith(OWNED_PREFIX):
        harm = "dockerd reads each .crt file there on every pull from that registry, and fails on this one"
    elif path.endswith(STATE_FILE):
        harm = "trust-agent keeps its record of what it added there"
    else:
        harm = "dockerd cannot read its configuration from it (it refuses every reload and will not start)"
    return f"{path} is {what}: {harm}; remove it or move it away, then run again (nothing written)"


def _link_target(raw: bytes | None) -> str | None:
    """``readlink -f``'s answer: an absolute path, or "" where it gave none (or none to trust)."""
    if raw is None:
        return None
    target = raw.decode("utf-8", "replace").removesuffix("\n")
    sane = target.startswith("/") and posixpath.normpath(target) == target and target.isprintable()
    return target if sane else ""


def info_doc(raw: bytes | None) -> dict[str, Any] | None:
    """The engine's ``/info`` JSON → dict (None when absent, not understood, or not the engine's: the
    docker CLI prints ``{"ServerErrors": [...], "ClientInfo": ...}`` when no engine answers)."""
    if not raw:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("ServerErrors") or "ServerVersion" not in doc:
        return None
    return doc


def _b64(payload: str, kind: str) -> bytes:
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise CommandError(f"gathering facts: corrupt {kind} record from the host") from None


def _env_globs_expanded(
    settings_lines: Sequence[tuple[str | None, str]], env_globs: Mapping[str, Sequence[str]]
) -> list[tuple[str | None, str]]:
    """``settings_lines`` with each ``EnvironmentFile=`` glob of ``env_globs`` replaced by one line for
    each file it matched, in sorted order: systemd reads them so (glob(3)), a later file's variable
    winning. A glob that matched nothing stays: no file has its name, so it gives nothing.

    >>> _env_globs_expanded([("/u", "EnvironmentFile=-/e/d*")], {"/e/d*": ["/e/d2", "/e/d1"]})
    [('/u', 'EnvironmentFile=/e/d1'), ('/u', 'EnvironmentFile=/e/d2')]
    """
    expanded: list[tuple[str | None, str]] = []
    for origin, line in settings_lines:
        key, _, value = line.partition("=")
        matched = env_globs.get(value.removeprefix("-")) if key == "EnvironmentFile" else None
        if matched is None:
            expanded.append((origin, line))
        else:
            expanded += [(origin, f"EnvironmentFile={path}") for path in sorted(matched)]
    return expanded


def engine_flags(
    unit: bytes | None,
    cmdline: bytes | None,
    pid: str | None,
    env_files: Mapping[str, str] | None = None,
    env_globs: Mapping[str, Sequence[str]] | None = None,
) -> EngineFlags:
    """dockerd's flags: from the unit's effective ExecStart (naming the file that set it), else /proc.

    ``systemctl cat`` prints each file behind a ``# /path`` header; an empty ``ExecStart=`` resets the
    list, as systemd does for drop-ins. Variables in ExecStart (Debian's unit: ``$DOCKER_OPTS`` from
    ``EnvironmentFile=-/etc/default/docker``) are expanded as systemd will on the next start, from the
    unit's ``Environment=`` and the files' text in ``env_files`` (path → text, as the gather read them);
    an ``EnvironmentFile=`` glob names the files ``env_globs`` gives for it (glob → the paths it matched).
    The running daemon's command line (where gathered) adds any flag it has that the unit no longer
    gives: a change must agree with both, the running daemon and the next start.
    """
    running = [a.decode("utf-8", "replace") for a in cmdline.split(b"\0") if a] if cmdline else []
    if unit:
        exec_lines: list[tuple[str | None, str]] = []
        settings_lines: list[tuple[str | None, str]] = []
        lines = unit_lines(unit)
        cwd = working_directory(lines)
        running = running[:1] + _config_file_resolved(running[1:], cwd)
        for current_file, line in lines:
            if line.startswith("ExecStart="):
                value = line.removeprefix("ExecStart=").strip()
                if not value:
                    exec_lines = []
                else:
                    exec_lines.append((current_file, value.lstrip("-@:+!")))
            elif line.startswith(("Environment=", "EnvironmentFile=")):
                settings_lines.append((current_file, line))
        if exec_lines:
            source, command = exec_lines[-1]
            try:
                argv = shlex.split(command)
            except ValueError:
                argv = command.split()
            if any("$" in arg for arg in argv[1:]):
                settings_lines = _env_globs_expanded(settings_lines, env_globs or {})
                settings = environment(unit_environment(settings_lines), env_files or {})
                argv, used = expand_command(argv, settings)
                if used:
                    source = f"{source} ({', '.join(used)})"
            argv = argv[:1] + _config_file_resolved(argv[1:], cwd)
            flags = argv[1:]
            extra = [flag for flag in running[1:] if flag not in flags]
            if extra:
                flags += extra
                source = f"{source} and /proc/{pid}/cmdline"
            return EngineFlags(tuple(flags), source, tuple(argv[1:]), tuple(running[1:]))
    if running:
        _refuse_relative_config_file(running[1:], f"/proc/{pid}/cmdline")
        return EngineFlags(tuple(running[1:]), f"/proc/{pid}/cmdline", None, tuple(running[1:]))
    return EngineFlags((), None)


def working_directory(lines: Sequence[tuple[str | None, str]]) -> str:
    """dockerd's working directory as docker.service's lines (:func:`unit_lines`) set it: the last
    ``WorkingDirectory=`` (an empty one resets it), its ``-`` (may be missing) dropped, ``~`` root's home
    (dockerd runs as root); ``/`` where none is given, systemd's default for a system service.

    >>> working_directory([(None, "WorkingDirectory=-/srv"), (None, "WorkingDirectory=~")])
    '/root'
    >>> working_directory([(None, "WorkingDirectory=/srv"), (None, "WorkingDirectory=")])
    '/'
    """
    found = "/"
    for _, line in lines:
        key, equals, value = line.partition("=")
        if equals and key == "WorkingDirectory":
            value = value.removeprefix("-")
            found = "/root" + value[1:] if value.startswith("~") else value or "/"
    return found


def _config_file_resolved(flags: Sequence[str], cwd: str) -> list[str]:
    """``flags`` with each relative ``--config-file`` made absolute against ``cwd``: dockerd opens it as
    given, so from its working directory, not from wherever the agent's login starts.

    >>> _config_file_resolved(["--config-file", "etc/d.json", "--config-file=/etc/e.json"], "/")
    ['--config-file', '/etc/d.json', '--config-file=/etc/e.json']
    """
    resolved: list[str] = []
    for index, flag in enumerate(flags):
        if index and flags[index - 1] == "--config-file":
            resolved.append(_absolute(flag, cwd))
        elif flag.startswith("--config-file="):
            resolved.append("--config-file=" + _absolute(flag.partition("=")[2], cwd))
        else:
            resolved.append(flag)
    return resolved


def _absolute(path: str, cwd: str) -> str:
    """``path`` as opened from ``cwd`` (an empty path left alone: dockerd refuses it itself)."""
    return posixpath.normpath(posixpath.join(cwd, path)) if path and not path.startswith("/") else path


def _refuse_relative_config_file(flags: Sequence[str], source: str) -> None:
    """Stop where dockerd's ``--config-file`` is relative and no unit says its working directory (it runs
    outside docker.service): which file it reads cannot be told."""
    config_file = config_file_flag(flags)
    if config_file and not config_file.startswith("/"):
        raise CommandError(
            f"{source} sets --config-file={config_file}, a relative path dockerd reads from its working "
            "directory, which trust-agent cannot tell where dockerd is not started by docker.service: "
            "give --config-file an absolute path, then run again (nothing written)"
        )


__all__ = [
    "GATHER_SCRIPT",
    "INFO_COMMAND_TAIL",
    "INFO_FUNCTION",
    "LINK_CHAIN_FUNCTION",
    "MAX_LINK_HOPS",
    "NO_LEFTOVERS",
    "OWNED_PREFIX",
    "REDACTED_KEY",
    "TREE_UNIT_DIRS",
    "EngineFlags",
    "Gathered",
    "Leftovers",
    "gather",
    "gather_host",
    "gather_live",
    "info_doc",
    "leftovers_of",
    "live_info",
    "parse_gather_output",
    "tree_link_problem",
    "tree_link_says",
    "tree_unit_text",
    "unsafe_hop_says",
    "without_private_keys",
]
