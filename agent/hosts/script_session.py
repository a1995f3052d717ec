"""One shell per host that runs script after script: the SSH transport's ``run_script``.

Every exec on an SSH connection makes the host set up a new session (sshd forks, PAM, a login shell);
a rollout runs two or three scripts per host, so it keeps one small loop running instead. Framing:

- the controller sends ``<length>\\n<script bytes><args line>\\n``;
- the loop reads the script into a variable (``head -c N``: one process, which reads no further than
  N bytes), then runs it in a subshell (a fork, no exec) with the args as positional parameters and
  stdin from /dev/null, and ends stdout and stderr with ``\\n@@ta-done <token> <exit status>``, the
  token random per session so no script output can imitate it.

The script travels wrapped in ``{ ... }``: the shell parses a brace group whole before running any of
it, so a script cut short by a broken connection is a syntax error and runs not at all.

Before its first read, the loop greets with one line, ``@@ta-hello <token> <word>``: the word is what
the caller's ``hello`` shell text put in ``ta_hello`` (the SSH transport asks whether the engine's socket
may be reached; see ``agent.hosts.engine_wake``), read by the controller as the session opens. The
caller may also ask whether one file exists (:func:`file_probe`): the greeting then ends with `` file``
where it does, which spares a round trip for a request that depends on it.
"""

from __future__ import annotations

import re
import secrets
import shlex

LOOP = r"""
printf '\n@@ta-hello %s %s%s\n' "$1" "${ta_hello:-none}" "${ta_found:+ file}"
t=$1
while IFS= read -r n; do
  s=$(head -c "$n") || exit 70
  IFS= read -r a
  (eval "set -- $a" && eval "$s") </dev/null
  rc=$?
  printf '\n@@ta-done %s %s\n' "$t" "$rc"
  printf '\n@@ta-done %s\n' "$t" >&2
done
"""


def new_token() -> str:
    return secrets.token_hex(8)


def loop_command(token: str, hello: str = "") -> str:
    """The loop as one command; ``hello`` (shell text setting ``ta_hello``) runs first, in the loop's shell."""
    return f"sh -c {shlex.quote(hello + LOOP)} loop {token}"


def file_probe(path: str) -> str:
    """Shell text for ``hello``: the greeting ends with `` file`` where ``path`` exists (a shell test, no
    process)."""
    return f"[ -e {shlex.quote(path)} ] && ta_found=1\n"


def hello_pattern(token: str) -> re.Pattern[bytes]:
    """Matches the loop's greeting; group 1 is the hello's word, group 2 set where the probed file exists."""
    return re.compile(rb"\n@@ta-hello " + token.encode() + rb" ([a-z]+)( file)?\n")


def request(script: str, args: tuple[str, ...]) -> bytes:
    body = b"{\n" + script.encode() + b"\n}\n"
    return f"{len(body)}\n".encode() + body + (" ".join(shlex.quote(a) for a in args) + "\n").encode()


def done_pattern(token: str) -> re.Pattern[bytes]:
    """Matches the end of one script's stdout; group 1 is its exit status."""
    return re.compile(rb"\n@@ta-done " + token.encode() + rb" (\d+)\n")


def stderr_done(token: str) -> bytes:
    return b"\n@@ta-done " + token.encode() + b"\n"
