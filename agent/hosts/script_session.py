"""One shell per host that runs script after script: the SSH transport's ``run_script``.

Every exec on an SSH connection makes the host set up a new session (sshd forks, PAM, a login shell);
a rollout runs two or three scripts per host, so it keeps one small loop running instead. Framing:

- the controller sends ``<length>\\n<script bytes><args line>\\n``;
- the loop stores the script in a temp file, runs ``sh FILE ARGS`` with stdin from /dev/null, and
  ends stdout and stderr with ``\\n@@ta-done <token> <exit status>``, the token random per session so
  no script output can imitate it.

``head -c N`` reads no further than N bytes, and ``read`` takes a pipe one byte at a time, so each
script takes exactly its own bytes from the stream.
"""

from __future__ import annotations

import re
import secrets
import shlex

LOOP = r"""
t=$1
while IFS= read -r n; do
  f=$(mktemp "${TMPDIR:-/tmp}/trust-agent.XXXXXX") || exit 70
  head -c "$n" > "$f"
  IFS= read -r a
  eval "set -- $a"
  sh "$f" "$@" </dev/null
  rc=$?
  rm -f "$f"
  printf '\n@@ta-done %s %s\n' "$t" "$rc"
  printf '\n@@ta-done %s\n' "$t" >&2
done
"""


def new_token() -> str:
    return secrets.token_hex(8)


def loop_command(token: str) -> str:
    return f"sh -c {shlex.quote(LOOP)} loop {token}"


def request(script: str, args: tuple[str, ...]) -> bytes:
    body = script.encode()
    return f"{len(body)}\n".encode() + body + (" ".join(shlex.quote(a) for a in args) + "\n").encode()


def done_pattern(token: str) -> re.Pattern[bytes]:
    """Matches the end of one script's stdout; group 1 is its exit status."""
    return re.compile(rb"\n@@ta-done " + token.encode() + rb" (\d+)\n")


def stderr_done(token: str) -> bytes:
    return b"\n@@ta-done " + token.encode() + b"\n"
