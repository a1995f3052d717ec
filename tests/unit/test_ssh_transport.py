"""SSHTransport against a real OpenSSH server started on 127.0.0.1 for this module.

sshd runs from a temp directory (its own host keys, authorized_keys, config); a test double for
``sudo`` and ``docker`` is put first on the sessions' PATH with ``SetEnv``.
"""

from __future__ import annotations

import contextlib
import doctest
import getpass
import http.server
import json
import logging
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from paramiko.common import (
    MSG_CHANNEL_OPEN,
    MSG_CHANNEL_OPEN_SUCCESS,
    MSG_SERVICE_ACCEPT,
    MSG_SERVICE_REQUEST,
    MSG_UNIMPLEMENTED,
    MSG_USERAUTH_FAILURE,
    MSG_USERAUTH_REQUEST,
    MSG_USERAUTH_SUCCESS,
)

from agent.errors import AuthenticationError, CommandTimeout, HostKeyError, InputError, UnreachableError
from agent.hosts import proxy_command, script_session, ssh_config_text
from agent.hosts import ssh as ssh_module
from agent.hosts.pipelined_login import pipelines
from agent.hosts.ssh import SSHOptions, SSHTransport, _SSHConfig
from agent.inventory import Host, load_inventory
from agent.inventory.ssh_args import parse_ssh_args
from tests.ci import missing_prerequisite
from tests.sshkeys import certify, encrypted_copy, keygen, public, ssh_agent

SSHD = "/usr/sbin/sshd"
# The host's answers to the service, login and channel requests.
ANSWERS = {
    MSG_SERVICE_ACCEPT,
    MSG_USERAUTH_SUCCESS,
    MSG_USERAUTH_FAILURE,
    MSG_CHANNEL_OPEN_SUCCESS,
    MSG_UNIMPLEMENTED,
}

FAKE_SUDO = r"""#!/bin/sh
# sudo test double: sudo [-n | -S -p PROMPT] -u USER -- COMMAND... (each call logged beside it)
echo call >> "${0%/*}/sudo.log"
mode=n; prompt=""; user=root
while [ $# -gt 0 ]; do
  case "$1" in
    -n) shift ;;
    -S) mode=S; shift ;;
    -p) prompt=$2; shift 2 ;;
    -u) user=$2; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
export FAKE_SUDO_USER="$user"
if [ "$mode" = S ]; then
  for try in 1 2 3; do
    printf '%s' "$prompt" >&2
    IFS= read -r pw || exit 1
    [ "$pw" = "s3cret" ] && exec "$@"
    echo "Sorry, try again." >&2
  done
  echo "sudo: 3 incorrect password attempts" >&2
  exit 1
fi
if [ "$user" = needs-password ]; then
  echo "sudo: a password is required" >&2
  exit 1
fi
exec "$@"
"""

FAKE_DOCKER = """#!{python}
# docker test double: `docker system dial-stdio` answering HTTP/1.1 on stdin/stdout.
import json, sys
inp, out = sys.stdin.buffer, sys.stdout.buffer
for _ in range(100):
    line = inp.readline()
    if not line:
        break
    method, path, _ = line.decode().split(" ", 2)
    headers = {{}}
    for _ in range(100):
        h = inp.readline()
        if h in (b"\\r\\n", b"\\n", b""):
            break
        k, v = h.decode().split(":", 1)
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", 0))
    if n:
        inp.read(n)
    body = json.dumps({{"Version": "26.1.0", "ApiVersion": "1.45", "Path": path, "Method": method}}).encode()
    out.write(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body))
    out.write(body)
    out.flush()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Server:
    port: int
    root: Path
    client_key: Path
    ed25519_pub: str  # "ssh-ed25519 AAAA…"
    rsa_pub: str

    def known_hosts(self, path: Path, *lines: str) -> Path:
        path.write_text("".join(f"[127.0.0.1]:{self.port} {line}\n" for line in lines))
        return path

    def host(self, **kw: object) -> Host:
        fields: dict[str, object] = {
            "name": "h1",
            "address": "127.0.0.1",
            "port": self.port,
            "user": "root",
            "identity_file": str(self.client_key),
        }
        fields.update(kw)
        return Host(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if os.geteuid() != 0:
        missing_prerequisite("needs root to run sshd")
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        missing_prerequisite("openssh-server / openssh-client not installed (.ci/system-deps.sh)")
    root = tmp_path_factory.mktemp("sshd")
    ed_key = keygen(root / "host_ed25519")
    rsa_key = keygen(root / "host_rsa", "rsa")
    client_key = keygen(root / "client_ed25519")
    (root / "authorized_keys").write_text((root / "client_ed25519.pub").read_text())
    bindir = root / "bin"
    bindir.mkdir()
    (bindir / "sudo").write_text(FAKE_SUDO)
    (bindir / "docker").write_text(FAKE_DOCKER.format(python=sys.executable))
    for tool in ("sudo", "docker"):
        (bindir / tool).chmod(0o755)
    port = _free_port()
    with _running_sshd(root, port, f"HostKey {ed_key}\nHostKey {rsa_key}\nSetEnv PATH={bindir}:{PATH}\n"):
        yield Server(
            port=port,
            root=root,
            client_key=client_key,
            ed25519_pub=" ".join((root / "host_ed25519.pub").read_text().split()[:2]),
            rsa_pub=" ".join((root / "host_rsa.pub").read_text().split()[:2]),
        )


PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"


@contextmanager
def _running_sshd(root: Path, port: int, host_lines: str) -> Iterator[None]:
    """sshd on 127.0.0.1:``port`` for the root login with ``root/client_ed25519``, its host keys (and
    anything else) from ``host_lines``; stopped after."""
    config = root / f"sshd_config.{port}"
    config.write_text(
        textwrap.dedent(f"""\
        Port {port}
        ListenAddress 127.0.0.1
        PidFile {root}/sshd.{port}.pid
        AuthorizedKeysFile {root}/authorized_keys
        StrictModes no
        UsePAM no
        PermitRootLogin prohibit-password
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        AllowTcpForwarding yes
        MaxSessions 50
        LogLevel ERROR
        """)
        + host_lines
    )
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    log_path = root / f"sshd.{port}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited: {log_path.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("sshd did not start listening within 15s")
                time.sleep(0.05)
        yield
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


@pytest.fixture
def opts(sshd: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SSHOptions:
    # Nothing from the real user's ~/.ssh may take part (~ is the passwd entry's home, as ssh's).
    _home_is(monkeypatch, tmp_path)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    known = sshd.known_hosts(tmp_path / "known_hosts", sshd.ed25519_pub)
    return SSHOptions(known_hosts=str(known), ssh_config=None, use_agent=False, look_for_keys=False)


def _home_is(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """``~`` for ssh's files is ``home`` (it is the passwd entry's, which a test cannot change)."""
    monkeypatch.setattr(ssh_config_text, "home", lambda: str(home))
    monkeypatch.setenv("HOME", str(home))


def test_runs_commands_over_one_reused_connection(sshd: Server, opts: SSHOptions) -> None:
    with SSHTransport(sshd.host(), opts) as t:
        t.connect()
        first = t.run("echo hello; echo oops >&2; echo $SSH_CONNECTION")
        second = t.run("echo $SSH_CONNECTION")
        assert first.ok and first.stdout.splitlines()[0] == b"hello"
        assert first.stderr == b"oops\n"
        assert first.stdout.splitlines()[1] == second.stdout.strip()  # same client port: same connection
        assert t.run("exit 3").exit_status == 3
        assert t.run("cat; echo done", stdin=b"payload\n").stdout == b"payload\ndone\n"


def test_large_stdout_stderr_and_stdin_do_not_deadlock(sshd: Server, opts: SSHOptions) -> None:
    big = os.urandom(3_000_000)
    with SSHTransport(sshd.host(), opts) as t:
        r = t.run("yes out | head -c 4000000 & yes err | head -c 4000000 >&2; wait", timeout=60)
        assert (len(r.stdout), len(r.stderr)) == (4_000_000, 4_000_000)
        echoed = t.run("cat; cat /dev/null >&2", stdin=big, timeout=60)
        assert echoed.stdout == big


def test_command_timeout_leaves_connection_usable(sshd: Server, opts: SSHOptions) -> None:
    with SSHTransport(sshd.host(), opts) as t:
        start = time.monotonic()
        with pytest.raises(CommandTimeout, match=r"^h1 \(127\.0\.0\.1\): command timed out"):
            t.run("sleep 10", timeout=0.5)
        assert time.monotonic() - start < 5
        assert t.run("echo still here").stdout == b"still here\n"


def test_unknown_host_key(sshd: Server, opts: SSHOptions, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyError) as info:
        SSHTransport(sshd.host(), replace(opts, known_hosts=str(empty))).connect()
    message = str(info.value)
    assert message.startswith(f"h1 (127.0.0.1): host key not in {empty} (ssh-ed25519 SHA256:")
    assert message.endswith("add it or pass --accept-new-host-keys")


def test_changed_host_key(sshd: Server, opts: SSHOptions, tmp_path: Path) -> None:
    other = keygen(tmp_path / "other")
    known = sshd.known_hosts(tmp_path / "kh", " ".join(Path(f"{other}.pub").read_text().split()[:2]))
    with pytest.raises(HostKeyError, match=r"^h1 \(127\.0\.0\.1\): host key CHANGED"):
        SSHTransport(sshd.host(), replace(opts, known_hosts=str(known))).connect()


def test_the_changed_key_hint_removes_every_line_of_the_host_so_the_next_run_takes_its_keys(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    """known_hosts holds a line per key type: "remove its line" left the next type's mismatch for the
    next run. The hint's own command clears them all."""
    others = [keygen(tmp_path / "other", kind="ed25519"), keygen(tmp_path / "other2", kind="rsa")]
    lines = [" ".join(Path(f"{key}.pub").read_text().split()[:2]) for key in others]
    known = sshd.known_hosts(tmp_path / "kh", *lines)
    with pytest.raises(HostKeyError) as info:
        SSHTransport(sshd.host(), replace(opts, known_hosts=str(known))).connect()
    _follow_the_hint(str(info.value))
    with SSHTransport(sshd.host(), replace(opts, known_hosts=str(known), accept_new_host_keys=True)) as t:
        assert t.run("true").ok


def _follow_the_hint(error: str) -> list[str]:
    """Run each ``ssh-keygen -R`` the changed-key error says to; the files they name."""
    hint = re.search(r"remove its lines \((ssh-keygen -R .*)\) and retry$", error)
    assert hint is not None, error
    commands = [shlex.split(command) for command in hint.group(1).split("; ")]
    for command in commands:
        subprocess.run(command, check=True, capture_output=True)
    return [command[-1] for command in commands]


def test_the_changed_key_hint_names_the_file_that_holds_the_stale_key(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    """The stale line in a second UserKnownHostsFile: the hint named the first, whose removal found
    nothing, and the next run failed the same way."""
    other = keygen(tmp_path / "other", kind="ed25519")
    first = tmp_path / "kh_first"
    first.write_text("")
    second = sshd.known_hosts(tmp_path / "kh_second", " ".join(Path(f"{other}.pub").read_text().split()[:2]))
    config = tmp_path / "ssh_config"
    config.write_text(f"Host *\n    UserKnownHostsFile {first} {second}\n")
    given = replace(opts, known_hosts=None, ssh_config=str(config))
    with pytest.raises(HostKeyError) as info:
        SSHTransport(sshd.host(), given).connect()
    assert _follow_the_hint(str(info.value)) == [str(second)]
    with SSHTransport(sshd.host(), replace(given, accept_new_host_keys=True)) as t:
        assert t.run("true").ok


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_known_hosts_key_type_is_preferred(sshd: Server, opts: SSHOptions, tmp_path: Path, kind: str) -> None:
    line = sshd.rsa_pub if kind == "rsa" else sshd.ed25519_pub
    known = sshd.known_hosts(tmp_path / "kh", line)
    with SSHTransport(sshd.host(), replace(opts, known_hosts=str(known))) as t:
        assert t.run("true").ok


def test_accept_new_host_keys_appends_then_verifies(sshd: Server, opts: SSHOptions, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    accepting = replace(opts, known_hosts=str(known), accept_new_host_keys=True)
    with SSHTransport(sshd.host(), accepting) as t:
        assert t.run("true").ok
    lines = known.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"[127.0.0.1]:{sshd.port} ")
    with SSHTransport(sshd.host(), replace(accepting, accept_new_host_keys=False)) as t:
        assert t.run("true").ok
    assert len(known.read_text().splitlines()) == 1


def test_accept_new_host_keys_makes_only_the_ssh_directory_as_ssh_does(
    sshd: Server, opts: SSHOptions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any missing directory on the way to a known_hosts file was made (an inventory's typo made
    /nonexistent/ on the controller); ssh makes ~/.ssh alone."""
    _home_is(monkeypatch, tmp_path / "home")
    (tmp_path / "home").mkdir()
    missing = tmp_path / "nonexistent" / "known_hosts"
    accepting = replace(opts, known_hosts=str(missing), accept_new_host_keys=True)
    with pytest.raises(HostKeyError, match=r"is not a directory \(ssh makes only ~/\.ssh\)"):
        SSHTransport(sshd.host(), accepting).connect()
    assert not missing.parent.exists()
    with SSHTransport(sshd.host(), replace(accepting, known_hosts="~/.ssh/known_hosts")) as t:
        assert t.run("true").ok
    assert (tmp_path / "home" / ".ssh" / "known_hosts").read_text().startswith(f"[127.0.0.1]:{sshd.port} ")


def test_accept_new_never_accepts_a_changed_key(sshd: Server, opts: SSHOptions, tmp_path: Path) -> None:
    other = keygen(tmp_path / "other")
    known = sshd.known_hosts(tmp_path / "kh", " ".join(Path(f"{other}.pub").read_text().split()[:2]))
    with pytest.raises(HostKeyError, match="CHANGED"):
        SSHTransport(sshd.host(), replace(opts, known_hosts=str(known), accept_new_host_keys=True)).connect()


def test_a_host_known_by_another_key_type_is_changed_not_new(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    """The host was known by an ECDSA key and now shows only its Ed25519 one: ssh(1) calls that a changed
    identity, and so does trust-agent, with --accept-new-host-keys too (before, it recorded it)."""
    other = keygen(tmp_path / "other", "ecdsa")
    known = sshd.known_hosts(tmp_path / "kh", " ".join(Path(f"{other}.pub").read_text().split()[:2]))
    before = known.read_text()
    for accept in (False, True):
        with pytest.raises(HostKeyError, match=r"host key CHANGED: it shows ssh-ed25519 .* has only ecdsa"):
            SSHTransport(
                sshd.host(), replace(opts, known_hosts=str(known), accept_new_host_keys=accept)
            ).connect()
    assert known.read_text() == before


def test_wrong_key_is_an_authentication_error(sshd: Server, opts: SSHOptions, tmp_path: Path) -> None:
    stranger = keygen(tmp_path / "stranger")
    with pytest.raises(AuthenticationError, match=r"^h1 \(127\.0\.0\.1\): authentication as root failed"):
        SSHTransport(sshd.host(identity_file=str(stranger)), opts).connect()
    with pytest.raises(AuthenticationError, match="not found"):
        SSHTransport(sshd.host(identity_file=str(tmp_path / "nope")), opts).connect()


def test_closed_port_is_unreachable_and_named(sshd: Server, opts: SSHOptions) -> None:
    port = _free_port()
    with pytest.raises(UnreachableError, match=rf"^h1 \(127\.0\.0\.1\): connect to port {port} failed: "):
        SSHTransport(sshd.host(port=port), opts).connect()


def test_silent_server_times_out(opts: SSHOptions, sshd: Server) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts TCP, never speaks SSH
        port = listener.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(UnreachableError, match=r"^h1 "):
            SSHTransport(sshd.host(port=port), replace(opts, connect_timeout=1.0)).connect()
        assert time.monotonic() - start < 10


class _KexCutShort:
    """paramiko's Transport whose key exchange ends in the EOFError its reader raised: from the
    packetizer's handshake timer (``ran_out``), or from the host closing the connection."""

    ran_out = False

    def __init__(self, sock: object) -> None:
        self.packetizer = self
        self.closed = False

    def handshake_timed_out(self) -> bool:
        return self.ran_out

    def get_security_options(self) -> Any:
        return type("SecurityOptions", (), {"key_types": ("ssh-ed25519",)})()

    def start_client(self, timeout: float | None = None) -> None:
        raise EOFError()

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    ("ran_out", "says"),
    [(True, "SSH handshake timed out after 3s"), (False, "SSH handshake failed: EOFError")],
)
def test_a_handshake_paramiko_gave_up_on_for_its_timeout_is_said_to_have_timed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ran_out: bool, says: str
) -> None:
    """A host that sent its banner and then nothing was at times said to have failed with an EOFError:
    paramiko's packetizer ends a handshake past its handshake_timeout so, and start_client raises it
    where it sees it before its own timeout passes. A host that closed the connection still failed."""
    monkeypatch.setattr(_KexCutShort, "ran_out", ran_out)
    monkeypatch.setattr(ssh_module.paramiko, "Transport", _KexCutShort)
    monkeypatch.setattr(SSHTransport, "_jump_sock", lambda self, target, config, hops: object())
    options = SSHOptions(
        connect_timeout=3.0, known_hosts=str(tmp_path / "known_hosts"), ssh_config=None, use_agent=False
    )
    with pytest.raises(UnreachableError) as caught:
        SSHTransport(Host("h1", "10.0.0.5"), options).connect()
    assert str(caught.value) == f"h1 (10.0.0.5): {says}"


def _ssh_config(path: Path, sshd: Server, extra: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        textwrap.dedent(f"""\
        Host jump-alias
            HostName 127.0.0.1
            Port {sshd.port}
            User root
            IdentityFile {sshd.client_key}
        Host target-alias
            HostName 127.0.0.1
            Port {sshd.port}
            User root
            IdentityFile {sshd.client_key}
        {extra}""")
    )
    return path


def test_ssh_config_hostname_port_user_identityfile(sshd: Server, opts: SSHOptions, tmp_path: Path) -> None:
    config = _ssh_config(tmp_path / "config", sshd)
    host = Host("target-alias", "target-alias")
    with SSHTransport(host, replace(opts, ssh_config=str(config))) as t:
        assert t.run("id -un").stdout == b"root\n"


def test_a_host_defined_in_an_included_file_is_reached(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    # paramiko's parser has no Include: the alias would be taken for a host name of its own.
    _ssh_config(tmp_path / "config.d" / "fleet.conf", sshd)
    config = tmp_path / "config"
    config.write_text(f"Include {tmp_path}/config.d/*.conf\n")
    with SSHTransport(Host("target-alias", "target-alias"), replace(opts, ssh_config=str(config))) as t:
        assert t.run("id -un").stdout == b"root\n"


def test_the_system_wide_ssh_config_is_read_after_the_users(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    user = tmp_path / "config"
    user.write_text("Host target-alias\n    User nobody-here\n")
    system = _ssh_config(tmp_path / "etc" / "ssh_config", sshd)  # HostName, Port, User root, key
    options = replace(opts, ssh_config=str(user), system_ssh_config=str(system))
    with pytest.raises(AuthenticationError, match="authentication as nobody-here failed"):
        SSHTransport(Host("target-alias", "target-alias"), options).connect()  # the user's User wins
    user.write_text("")
    with SSHTransport(Host("target-alias", "target-alias"), options) as t:
        assert t.run("id -un").stdout == b"root\n"


def test_hash_known_hosts_writes_an_accepted_hosts_name_hashed(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    # Debian's /etc/ssh/ssh_config sets it: known_hosts then names no host in clear.
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n    HashKnownHosts yes\n")
    known = tmp_path / "hashed_known_hosts"  # not the one the opts fixture wrote
    accepting = replace(
        opts, known_hosts=str(known), accept_new_host_keys=True, system_ssh_config=str(config)
    )
    with SSHTransport(sshd.host(), accepting) as t:
        assert t.run("true").ok
    (line,) = known.read_text().splitlines()
    assert line.startswith("|1|") and "127.0.0.1" not in line
    with SSHTransport(sshd.host(), replace(accepting, accept_new_host_keys=False)) as t:
        assert t.run("true").ok


def test_proxy_jump_through_the_same_sshd(sshd: Server, opts: SSHOptions, tmp_path: Path) -> None:
    config = _ssh_config(
        tmp_path / "config",
        sshd,
        f"Host via-jump\n    HostName 127.0.0.1\n    Port {sshd.port}\n    ProxyJump jump-alias\n"
        f"Host dead-end\n    HostName 127.0.0.1\n    Port {_free_port()}\n    ProxyJump jump-alias\n",
    )
    options = replace(opts, ssh_config=str(config))
    with SSHTransport(Host("via", "via-jump", user="root", identity_file=str(sshd.client_key)), options) as t:
        t.connect()
        assert len(t._hops) == 1
        assert t.run("echo through").stdout == b"through\n"
    with pytest.raises(
        UnreachableError,
        match=r"^dead \(dead-end\) via jump-alias: connect to 127\.0\.0\.1 port \d+ through the jump host failed",
    ):
        SSHTransport(
            Host("dead", "dead-end", user="root", identity_file=str(sshd.client_key)), options
        ).connect()


def test_proxy_jump_checks_the_jump_host_key(sshd: Server, opts: SSHOptions, tmp_path: Path) -> None:
    config = _ssh_config(
        tmp_path / "config", sshd, "Host via-jump\n    HostName 127.0.0.1\n    ProxyJump jump-alias\n"
    )
    empty = tmp_path / "kh"
    empty.write_text("")
    options = replace(opts, ssh_config=str(config), known_hosts=str(empty))
    with pytest.raises(HostKeyError, match="via jump-alias: host key not in"):
        SSHTransport(Host("via", "via-jump", user="root"), options).connect()


def test_known_hosts_file_tokens_are_expanded_as_ssh_does(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    """UserKnownHostsFile .../by_%h was read literally: "host key not in .../by_%h" (and
    --accept-new-host-keys would have made a file of that name)."""
    sshd.known_hosts(tmp_path / f"by_127.0.0.1_{sshd.port}_root%", sshd.ed25519_pub)
    config = tmp_path / "config"
    config.write_text(f"Host 127.0.0.1\n    UserKnownHostsFile {tmp_path}/by_%h_%p_%r%%\n")
    options = replace(opts, known_hosts=None, ssh_config=str(config))
    with SSHTransport(sshd.host(), options) as t:
        assert t.run("echo in").stdout == b"in\n"


def test_a_jump_host_is_checked_against_its_own_known_hosts_where_ssh_config_names_them(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    """The hop was checked against the target's known_hosts file (and --accept-new-host-keys would have
    written the bastion's key there); ssh reads the jump host's own. ssh://user@host:port is taken too."""
    target_file = sshd.known_hosts(tmp_path / "target_kh", sshd.ed25519_pub)
    jump_file = tmp_path / "jump_kh"
    jump_file.write_text("")
    config = tmp_path / "config"
    config.write_text(
        f"Host bastion\n    HostName 127.0.0.1\n    Port {sshd.port}\n    User root\n"
        f"    IdentityFile {sshd.client_key}\n    UserKnownHostsFile {jump_file}\n"
        f"Host 127.0.0.1\n    UserKnownHostsFile {target_file}\n"
    )
    options = replace(opts, known_hosts=None, ssh_config=str(config))
    host = sshd.host(ssh_options=(("proxyjump", "ssh://root@bastion"),))
    with pytest.raises(HostKeyError, match=f"via bastion: host key not in {jump_file}"):
        SSHTransport(host, options).connect()
    sshd.known_hosts(jump_file, sshd.ed25519_pub)
    with SSHTransport(host, options) as t:
        assert t.run("echo through").stdout == b"through\n"


def test_a_jump_host_logs_in_with_its_own_user_and_keys_as_sshs_own_ssh_for_it_does(tmp_path: Path) -> None:
    """ssh runs a ProxyJump hop as an ssh of its own (`ssh -l USER -p PORT -W %h:%p JUMP`): its user is
    the spec's, else its Host block's User, else the local user; its keys its own IdentityFile, else the
    agent's and the default files. The hop took the target's user, key and IdentitiesOnly."""
    config = tmp_path / "config"
    config.write_text(
        "Host gw\n    HostName 10.0.0.1\n"
        "Host gw-ops\n    HostName 10.0.0.2\n    User ops\n    IdentityFile /keys/gw\n"
    )
    host = Host(
        "web1",
        "10.0.0.5",
        user="deploy",
        identity_file="/keys/target",
        ssh_options=(("identitiesonly", "yes"),),
    )
    transport = SSHTransport(host, SSHOptions(ssh_config=str(config), use_agent=False))
    ssh_config = _SSHConfig(str(config))
    final = transport._resolve(ssh_config)
    assert (final.user, final.key_files, final.identities_only) == ("deploy", ("/keys/target",), True)
    hops = [transport._jump_target(spec, ssh_config, final) for spec in ("gw", "gw-ops", "alice@gw-ops:2222")]
    assert [(h.hostname, h.port, h.user, h.key_files, h.identities_only) for h in hops] == [
        ("10.0.0.1", 22, getpass.getuser(), (), False),
        ("10.0.0.2", 22, "ops", ("/keys/gw",), False),
        ("10.0.0.2", 2222, "alice", ("/keys/gw",), False),
    ]


# A target that sets everything a hop could wrongly take over: its own ssh_config block, and the
# inventory's ssh options (Ansible's -o on the target's command line, which ssh's ssh for a jump never
# gets: it is given -F and -v alone).
_TARGET_AND_HOPS_CONFIG = (
    "Host 10.0.0.5\n    ConnectTimeout 3\n    IdentityAgent /run/target-agent.sock\n"
    "    UserKnownHostsFile /target/known_hosts\n    GlobalKnownHostsFile /target/global_known_hosts\n"
    "Host gw\n    HostName 10.0.0.1\n"
    "Host gw-own\n    HostName 10.0.0.2\n    ConnectTimeout 2\n    IdentityAgent /run/gw-agent.sock\n"
    "    UserKnownHostsFile /gw/known_hosts /gw/known_hosts.d/%h\n    GlobalKnownHostsFile /gw/global\n"
    "Host gw-slow\n    HostName 10.0.0.3\n    ConnectTimeout 30\n"
)


def _hops_of(tmp_path: Path, options: SSHOptions, *specs: str, **host: Any) -> list[Any]:
    """The hops ``specs`` resolve to for a target 10.0.0.5 under _TARGET_AND_HOPS_CONFIG."""
    config = tmp_path / "config"
    config.write_text(_TARGET_AND_HOPS_CONFIG)
    transport = SSHTransport(Host("web1", "10.0.0.5", **host), replace(options, ssh_config=str(config)))
    ssh_config = _SSHConfig(str(config))
    final = transport._resolve(ssh_config)
    return [transport._jump_target(spec, ssh_config, final) for spec in specs]


def test_a_jump_host_takes_its_own_connect_timeout_at_most_the_targets(tmp_path: Path) -> None:
    """ssh's ssh for a jump reads its own ConnectTimeout (none of the target's: ssh -o ConnectTimeout
    is not passed on), while the target's ssh waits for the target's banner through it no longer than
    the target's ConnectTimeout. The hop took the target's even where its own was shorter."""
    hops = _hops_of(tmp_path, SSHOptions(), "gw", "gw-own", "gw-slow")
    assert [h.connect_timeout for h in hops] == [3.0, 2.0, 3.0]
    # The inventory's ConnectTimeout (ansible_ssh_timeout) is the target's, as ssh_config's.
    given = _hops_of(tmp_path, SSHOptions(), "gw", "gw-own", ssh_options=(("connecttimeout", "1.5"),))
    assert [h.connect_timeout for h in given] == [1.5, 1.5]
    # --connect-timeout is the run's, for every connection it makes: hops too.
    run_wide = _hops_of(tmp_path, SSHOptions(connect_timeout=7.0), "gw", "gw-own", "gw-slow")
    assert [h.connect_timeout for h in run_wide] == [7.0, 7.0, 7.0]


def test_a_jump_hosts_bad_connect_timeout_names_the_jump(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Host gw\n    ConnectTimeout soon\n")
    transport = SSHTransport(Host("web1", "10.0.0.5"), SSHOptions(ssh_config=str(config)))
    ssh_config = _SSHConfig(str(config))
    final = transport._resolve(ssh_config)
    with pytest.raises(InputError, match=r"^web1 \(10\.0\.0\.5\) via gw: ssh config ConnectTimeout 'soon'"):
        transport._jump_target("gw", ssh_config, final)


def test_a_jump_host_uses_its_own_identity_agent_else_ssh_auth_sock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ssh's ssh for a jump reads its own IdentityAgent, else $SSH_AUTH_SOCK: the target's (from its
    Host block, or the inventory's -o IdentityAgent) is not passed on. The hop used the target's."""
    monkeypatch.setenv("SSH_AUTH_SOCK", "/run/env-agent.sock")
    hops = _hops_of(tmp_path, SSHOptions(), "gw", "gw-own")
    assert [h.agent for h in hops] == ["/run/env-agent.sock", "/run/gw-agent.sock"]
    given = _hops_of(tmp_path, SSHOptions(), "gw", ssh_options=(("identityagent", "/run/inv.sock"),))
    assert [h.agent for h in given] == ["/run/env-agent.sock"]
    # --no-agent (use_agent=False) is the run's: no agent for any hop either.
    assert [h.agent for h in _hops_of(tmp_path, SSHOptions(use_agent=False), "gw", "gw-own")] == [None, None]


def test_a_jump_host_reads_its_own_known_hosts_files_not_the_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ssh's ssh for a jump reads its own UserKnownHostsFile and GlobalKnownHostsFile, else ssh's
    defaults: neither the target's Host block's nor the inventory's -o UserKnownHostsFile (nor
    trust-agent's inventory known_hosts) are passed on. The hop was checked against the target's
    files, and --accept-new-host-keys recorded the bastion's key in them."""
    _home_is(monkeypatch, tmp_path)
    default = str(tmp_path / ".ssh" / "known_hosts")
    hops = _hops_of(tmp_path, SSHOptions(), "gw", "gw-own")
    assert [(h.known_hosts, h.other_known_hosts) for h in hops] == [
        (default, (f"{default}2", "/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")),
        ("/gw/known_hosts", ("/gw/known_hosts.d/10.0.0.2", "/gw/global")),
    ]
    given = _hops_of(
        tmp_path,
        SSHOptions(),
        "gw",
        known_hosts="/inv/own_known_hosts",
        ssh_options=(("userknownhostsfile", "/inv/known_hosts"),),
    )
    assert [h.known_hosts for h in given] == [default]


def test_without_user_known_hosts_file_known_hosts2_is_read_too_for_targets_and_jump_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ssh's UserKnownHostsFile where none is set is `~/.ssh/known_hosts ~/.ssh/known_hosts2` (`ssh -G`
    shows both): a key kept in known_hosts2 was not found ("host key not in ~/.ssh/known_hosts")."""
    _home_is(monkeypatch, tmp_path)
    config = tmp_path / "config"
    config.write_text("Host gw\n    HostName 10.0.0.1\n")
    transport = SSHTransport(Host("web1", "10.0.0.5"), SSHOptions(ssh_config=str(config)))
    ssh_config = _SSHConfig(str(config))
    final = transport._resolve(ssh_config)
    hop = transport._jump_target("gw", ssh_config, final)
    own = str(tmp_path / ".ssh" / "known_hosts")
    expected = (own, (f"{own}2", "/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"))
    assert (final.known_hosts, final.other_known_hosts) == expected
    assert (hop.known_hosts, hop.other_known_hosts) == expected


def test_tilde_is_the_passwd_entrys_home_not_dollar_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ssh takes ~, %d and its default files from the passwd entry (`HOME=/tmp ssh -G h` still shows
    /root/.ssh/known_hosts as root); they were taken from $HOME."""
    monkeypatch.setenv("HOME", str(tmp_path / "not-home"))
    home = pwd.getpwuid(os.getuid()).pw_dir
    config = tmp_path / "config"
    config.write_text("Host 10.0.0.5\n    IdentityFile ~/.ssh/fleet\n    CertificateFile ~/fleet-cert.pub\n")
    target = SSHTransport(Host("web1", "10.0.0.5"), SSHOptions(ssh_config=str(config)))._resolve(
        _SSHConfig(str(config))
    )
    assert target.known_hosts == os.path.join(home, ".ssh", "known_hosts")
    assert target.key_files == (os.path.join(home, ".ssh", "fleet"),)
    assert target.certificate_files == (os.path.join(home, "fleet-cert.pub"),)


def test_a_jump_host_hashes_the_name_it_records_where_its_own_config_says_so(tmp_path: Path) -> None:
    """ssh's ssh for a jump reads its own HashKnownHosts (Debian's /etc/ssh/ssh_config sets it for every
    host): a jump host's accepted key was recorded with its name in clear."""
    config = tmp_path / "config"
    config.write_text("Host gw-hashed\n    HashKnownHosts yes\nHost 10.0.0.5\n    HashKnownHosts no\n")
    transport = SSHTransport(Host("web1", "10.0.0.5"), SSHOptions(ssh_config=str(config)))
    ssh_config = _SSHConfig(str(config))
    final = transport._resolve(ssh_config)
    hops = [transport._jump_target(spec, ssh_config, final) for spec in ("gw-hashed", "gw")]
    assert (final.hash_known_hosts, [h.hash_known_hosts for h in hops]) == (False, [True, False])


def test_an_inventorys_dash_f_is_opened_as_written_as_ssh_does_without_expanding_tilde(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ansible hands its ssh args to ssh without a shell, and ssh 9.2 does not expand ~ in -F (`ssh -F
    '~/x'` reads ./~/x, or fails "Can't open user config file ~/x"): `-F ~/fleet` read $HOME/fleet."""
    _home_is(monkeypatch, tmp_path / "home")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "fleet").write_text("Host *\n    User from-home\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "~").mkdir()
    (tmp_path / "~" / "fleet").write_text("Host *\n    User as-written\n")
    host = Host("web1", "10.0.0.5", ssh_options=parse_ssh_args("-F ~/fleet", "v", "f"))
    assert SSHTransport(host, SSHOptions())._ssh_config().lookup("10.0.0.5")["user"] == "as-written"
    (tmp_path / "~" / "fleet").unlink()
    with pytest.raises(UnreachableError) as refused:
        SSHTransport(host, SSHOptions())._ssh_config()
    assert str(refused.value) == (
        "web1 (10.0.0.5): cannot read the ssh config file the inventory's ssh args name with -F ~/fleet: "
        f"no such file ({tmp_path}/~/fleet: ssh does not expand ~ in -F; give the full path)"
    )


def test_the_first_jump_hosts_own_proxy_jump_is_followed_and_the_later_hops_are_not(tmp_path: Path) -> None:
    """ssh reaches the first jump host as `ssh -W … FIRST` with FIRST's own ssh_config, so FIRST's own
    ProxyJump applies to it (`ssh -G FIRST` shows it); a later hop is given `-J` instead, which overrides
    its own. The first jump host was reached directly, its own ProxyJump dropped."""
    config = tmp_path / "config"
    config.write_text(
        "Host inner\n    HostName 10.0.0.2\n    ProxyJump outer\n"
        "Host middle\n    HostName 10.0.0.3\n    ProxyJump elsewhere\n"
        "Host outer\n    HostName 10.0.0.1\n    ProxyJump ops@edge:2222\n"
        "Host edge\n    HostName 10.0.0.9\n"
    )
    host = Host("web1", "10.0.0.5", ssh_options=(("proxyjump", "inner,middle"),))
    transport = SSHTransport(host, SSHOptions(ssh_config=str(config)))
    ssh_config = _SSHConfig(str(config))
    route = transport._route(transport._resolve(ssh_config), ssh_config)
    assert [(t.hostname, t.port, t.user) for t in route] == [
        ("10.0.0.9", 2222, "ops"),
        ("10.0.0.1", 22, getpass.getuser()),
        ("10.0.0.2", 22, getpass.getuser()),
        ("10.0.0.3", 22, getpass.getuser()),
        ("10.0.0.5", 22, getpass.getuser()),
    ]


def test_a_jump_host_whose_own_proxy_jump_is_itself_is_refused_as_a_loop(tmp_path: Path) -> None:
    """A fleet-wide `Host *` ProxyJump that does not exempt the bastion sends ssh's ssh for the bastion
    through the bastion again (ssh: "jumphost loop", or no end where HostName renames it)."""
    config = tmp_path / "config"
    config.write_text("Host gw\n    HostName 10.0.0.1\nHost *\n    ProxyJump gw\n")
    transport = SSHTransport(Host("web1", "10.0.0.5"), SSHOptions(ssh_config=str(config)))
    ssh_config = _SSHConfig(str(config))
    with pytest.raises(InputError, match=r"^web1 \(10\.0\.0\.5\) via gw: jump host loop: its own ssh_config"):
        transport._route(transport._resolve(ssh_config), ssh_config)
    config.write_text("Host gw\n    HostName 10.0.0.1\n    ProxyJump none\nHost *\n    ProxyJump gw\n")
    route = transport._route(transport._resolve(_SSHConfig(str(config))), _SSHConfig(str(config)))
    assert [t.hostname for t in route] == ["10.0.0.1", "10.0.0.5"]


def test_known_hosts_given_for_the_run_is_read_for_every_jump_host_too(tmp_path: Path) -> None:
    """--known-hosts is "known_hosts file for every host": a hop's too, before its own global files."""
    hops = _hops_of(tmp_path, SSHOptions(known_hosts="/run/known_hosts"), "gw", "gw-own")
    assert [(h.known_hosts, h.other_known_hosts) for h in hops] == [
        ("/run/known_hosts", ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")),
        ("/run/known_hosts", ("/gw/global",)),
    ]


def test_become_through_sudo(sshd: Server, opts: SSHOptions) -> None:
    host = sshd.host(become=True, become_user="app")  # root logs in; becoming "app" needs sudo
    with SSHTransport(host, opts) as t:
        r = t.run("echo $FAKE_SUDO_USER; cat", stdin=b"in\n")
        assert r.stdout == b"app\nin\n"
    needs = replace(host, become_user="needs-password")
    with SSHTransport(needs, opts) as t, pytest.raises(AuthenticationError, match="sudo needs a password"):
        t.run("true")


def test_become_password_is_not_leaked_to_the_command(sshd: Server, opts: SSHOptions) -> None:
    host = sshd.host(become=True, become_user="app")
    with SSHTransport(host, replace(opts, become_password="s3cret")) as t:
        r = t.run("cat; echo $FAKE_SUDO_USER >&2", stdin=b"only this\n")
        assert r.stdout == b"only this\n"
        assert r.stderr == b"app\n"
    with (
        SSHTransport(host, replace(opts, become_password="wrong")) as t,
        pytest.raises(AuthenticationError, match="sudo refused the become password"),
    ):
        t.run("true")


def test_an_inventorys_become_password_is_used_and_a_vaulted_one_is_named(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    inventory = tmp_path / "hosts.ini"
    line = f"h1 ansible_host=127.0.0.1 ansible_port={sshd.port} ansible_user=root ansible_become=yes"
    inventory.write_text(f"{line} ansible_become_user=needs-password ansible_become_password=s3cret\n")
    (host,) = load_inventory(str(inventory)).hosts
    host = replace(host, identity_file=str(sshd.client_key))
    assert "s3cret" not in repr(host)
    with SSHTransport(host, opts) as t:  # no password on the command line: the inventory's is used
        assert t.run("echo $FAKE_SUDO_USER").stdout == b"needs-password\n"
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text(
        "vault_sudo: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  3131\n"
    )
    inventory.write_text(
        f"{line} ansible_become_user=needs-password ansible_become_pass='{{{{ vault_sudo }}}}'\n"
    )
    (host,) = load_inventory(
        str(inventory)
    ).hosts  # the inventory is still read: the password may not be needed
    host = replace(host, identity_file=str(sshd.client_key))
    with SSHTransport(host, opts) as t, pytest.raises(AuthenticationError) as refused:
        t.run("true")
    assert (
        "sudo needs a password (the inventory's ansible_become_pass cannot be used: encrypted with ansible-vault"
        in str(refused.value)
    )
    assert "--become-password-env" in str(refused.value)


def test_an_inventorys_ssh_password_is_named_where_no_key_logs_in(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    stranger = keygen(tmp_path / "stranger")
    host = sshd.host(identity_file=str(stranger), vars={"ansible_ssh_pass": "hunter2"})
    with pytest.raises(AuthenticationError) as refused:
        SSHTransport(host, opts).connect()
    assert str(refused.value).endswith(
        "the inventory's ansible_ssh_pass is not used: trust-agent logs in with keys only)"
    )
    assert "hunter2" not in str(refused.value)


def test_a_refused_become_password_is_tried_once_though_the_engine_is_asked_first(
    sshd: Server, opts: SSHOptions, engine: _EngineServer
) -> None:
    log = sshd.root / "bin" / "sudo.log"
    host = sshd.host(become=True, become_user="app")
    with SSHTransport(host, replace(opts, become_password="wrong")) as t:
        t.engine_socket = engine.server_address  # type: ignore[assignment]
        before = log.read_text().count("call") if log.exists() else 0
        # The script session (through sudo) says first whether the engine may be reached: refused
        # here, so nothing is known and the engine is left alone.
        assert t.engine_request("/_ping", 5) is None
        for _ in range(2):
            with pytest.raises(AuthenticationError, match="sudo refused the become password"):
                t.run_script("true")
        assert log.read_text().count("call") - before == 1, "one sudo, one password attempt"
    assert engine.requests == []
    with SSHTransport(host, replace(opts, become_password="s3cret")) as t:
        t.engine_socket = engine.server_address  # type: ignore[assignment]
        before = log.read_text().count("call")
        pending = t.engine_request("/_ping", 5)
        reply = pending.wait() if pending else None
        assert reply is not None and reply.ok
        assert t.run_script('echo "$FAKE_SUDO_USER"').stdout == b"app\n"
        assert log.read_text().count("call") - before == 1, "the greeting and the script: one session"


class _Engine(http.server.BaseHTTPRequestHandler):
    """An engine API double on a Unix socket: HTTP/1.1 kept alive, every request logged."""

    protocol_version = "HTTP/1.1"
    server: _EngineServer

    def do_GET(self) -> None:
        self.server.requests.append((id(self.connection), self.path, time.monotonic()))
        body = json.dumps({"ServerVersion": "26.1.5", "Path": self.path, "Version": "26.1.5"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def version_string(self) -> str:  # the Server header
        return "Docker/26.1.5 (linux)"

    def log_message(self, format: str, *args: object) -> None:
        pass


class _EngineServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str) -> None:
        self.requests: list[tuple[int, str, float]] = []
        super().__init__(path, _Engine)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[_EngineServer]:
    server = _EngineServer(str(tmp_path / "docker.sock"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_engine_api_is_read_through_a_channel_to_its_socket(
    sshd: Server, opts: SSHOptions, engine: _EngineServer
) -> None:
    with SSHTransport(sshd.host(), opts) as t:
        t.engine_socket = engine.server_address  # type: ignore[assignment]
        pending = t.engine_request("/_ping", 5)
        assert pending is not None
        ping = pending.wait()
        assert ping is not None and ping.ok and ping.version == "26.1.5"
        info = t.engine_request("/info", 5)
        reply = info.wait() if info else None
        assert reply is not None and json.loads(reply.body)["Path"] == "/info"
        # The SDK's connections go the same way, not through the docker CLI on the host.
        client = t.docker_api(timeout=10)
        assert client.version(api_version=False)["Path"] == "/version"
        client.close()
    paths = [path for _, path, _ in engine.requests]
    assert paths == ["/_ping", "/info", "/version"]
    assert engine.requests[0][0] == engine.requests[1][0], "one kept-alive channel for the engine's requests"


def test_an_engine_whose_socket_would_start_it_is_not_reached(
    sshd: Server, opts: SSHOptions, engine: _EngineServer
) -> None:
    with SSHTransport(sshd.host(), opts) as t:
        t.engine_socket = engine.server_address  # type: ignore[assignment]
        t.engine_hello = "ta_hello=asleep\n"  # as agent.hosts.engine_wake says of a stopped docker.service
        assert t.engine_request("/_ping", 5) is None
        with pytest.raises(UnreachableError, match="dockerd is stopped and its socket would start it"):
            t.docker_api(timeout=5).version(api_version=False)
        assert t.run_script("echo scripts run").stdout == b"scripts run\n"
    assert engine.requests == [], "nothing connected to the engine's socket"
    with SSHTransport(sshd.host(), opts) as t:
        t.engine_socket = engine.server_address  # type: ignore[assignment]
        pending = t.engine_request("/_ping", 5)  # this machine's own greeting: no engine asleep here
        assert pending is not None and (reply := pending.wait()) is not None and reply.ok


def test_the_first_engine_request_goes_out_while_a_script_runs(
    sshd: Server, opts: SSHOptions, engine: _EngineServer
) -> None:
    with SSHTransport(sshd.host(), opts) as t:
        t.engine_socket = engine.server_address  # type: ignore[assignment]
        pending = t.engine_request("/_ping", 5)  # the channel is still opening: the request waits
        assert pending is not None
        assert t.run_script("sleep 0.5; echo done").stdout == b"done\n"
        ended = time.monotonic()
        reply = pending.wait()
        assert reply is not None and reply.ok
        info = t.engine_request("/info", 5)  # the channel is open now: sent at once, on the same channel
        assert info is not None and (second := info.wait()) is not None and second.ok
    assert [path for _, path, _ in engine.requests] == ["/_ping", "/info"]
    assert engine.requests[0][2] < ended - 0.3, "the first request reached the engine while the script ran"
    assert engine.requests[0][0] == engine.requests[1][0]


def test_the_greeting_says_whether_a_file_exists_so_the_first_request_goes_by_it(
    sshd: Server, opts: SSHOptions, engine: _EngineServer, tmp_path: Path
) -> None:
    present = tmp_path / "state 'of' $HOME.json"  # quoted as a word: no expansion, no word split
    present.write_text("{}")
    absent = str(tmp_path / "absent.json")
    with SSHTransport(sshd.host(), opts) as t:
        t.engine_socket = engine.server_address  # type: ignore[assignment]
        first = t.engine_request("/_ping", 5, where_file=(str(present), "/info"))
        assert first is not None and first.path == "/info"
        assert (reply := first.wait()) is not None and json.loads(reply.body)["Path"] == "/info"
        # The session is open: no greeting answers for a later request, which goes as asked.
        later = t.engine_request("/_ping", 5, where_file=(str(present), "/info"))
        assert later is not None and later.path == "/_ping" and later.wait() is not None
    with SSHTransport(sshd.host(), opts) as t:
        t.engine_socket = engine.server_address  # type: ignore[assignment]
        first = t.engine_request("/_ping", 5, where_file=(absent, "/info"))
        assert first is not None and first.path == "/_ping" and first.wait() is not None
    with SSHTransport(sshd.host(), opts) as t:
        t.engine_socket = engine.server_address  # type: ignore[assignment]
        assert t.run_script("echo opened").stdout == b"opened\n"  # the session greeted without the probe
        first = t.engine_request("/_ping", 5, where_file=(str(present), "/info"))
        assert first is not None and first.path == "/_ping" and first.wait() is not None
    assert [path for _, path, _ in engine.requests] == ["/info", "/_ping", "/_ping", "/_ping"]


def test_an_engine_that_does_not_answer_is_not_waited_on_again(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    hung = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hung.bind(str(tmp_path / "hung.sock"))
    hung.listen(4)  # accepts (the kernel does), never reads, never answers
    try:
        with SSHTransport(sshd.host(), opts) as t:
            t.engine_socket = str(tmp_path / "hung.sock")
            # The script session first, so the half-second is the engine's alone: on a busy machine the
            # session's greeting, which says whether the engine may be reached, can take longer.
            assert t.run_script("true").ok
            pending = t.engine_request("/_ping", 0.5)
            assert pending is not None
            started = time.monotonic()
            assert pending.wait() is None
            assert time.monotonic() - started < 5
            assert t.engine_request("/info", 0.5) is None, "the rest of the connection asks on the host"
            assert t.run("echo still here").stdout == b"still here\n"
    finally:
        hung.close()


def test_docker_api_over_dial_stdio(sshd: Server, opts: SSHOptions, tmp_path: Path) -> None:
    with SSHTransport(sshd.host(), opts) as t:
        t.engine_socket = str(tmp_path / "no-engine.sock")  # sshd cannot connect: the channel is refused
        pending = t.engine_request("/_ping", 5)  # asked for, not waited on: the refusal comes with the answer
        assert pending is not None and pending.wait() is None
        assert t.engine_request("/_ping", 5) is None, "not asked again on this connection"
        client = t.docker_api(timeout=10)
        first = client.version(api_version=False)
        second = client.version()
        assert first["Version"] == "26.1.0"
        assert second["Path"] == "/v1.41/version"
        client.close()


def test_concurrent_commands_share_the_connection(sshd: Server, opts: SSHOptions) -> None:
    with SSHTransport(sshd.host(), opts) as t, ThreadPoolExecutor(8) as pool:
        t.connect()
        results = list(pool.map(lambda i: t.run(f"echo {i}; echo $SSH_CONNECTION"), range(16)))
    assert [r.stdout.split(b"\n")[0] for r in results] == [str(i).encode() for i in range(16)]
    assert len({r.stdout.split(b"\n")[1] for r in results}) == 1


def test_concurrent_accept_new_appends_once(sshd: Server, opts: SSHOptions, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    accepting = replace(opts, known_hosts=str(known), accept_new_host_keys=True)

    def connect_once(_: int) -> None:
        with SSHTransport(sshd.host(), accepting) as t:
            t.connect()

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(connect_once, range(6)))
    assert len(known.read_text().splitlines()) == 1


def test_scripts_share_one_session_with_exact_output_and_status(sshd: Server, opts: SSHOptions) -> None:
    with SSHTransport(sshd.host(), opts) as t:
        first = t.run_script('echo "$1|$2"; echo err >&2; echo $$', "a b", "it's")
        second = t.run_script("printf 'no newline'; exit 7")
        third = t.run_script("echo $$; cat")  # stdin is /dev/null, never the next script
        assert first.exit_status == 0 and first.stdout.splitlines()[0] == b"a b|it's"
        assert first.stderr == b"err\n"
        assert second.exit_status == 7 and second.stdout == b"no newline" and second.stderr == b""
        # One loop ran both: each script runs in a subshell of the same loop shell ($$ is the loop's).
        assert first.stdout.splitlines()[1] == third.stdout.strip()
        big = "".join(f"echo line{i} >/dev/null\n" for i in range(20000)) + "echo big done\n"
        assert t.run_script(big).stdout == b"big done\n"
        assert t.run_script("head -c 300000 /dev/zero | tr '\\0' x").stdout == b"x" * 300000


def test_a_script_timeout_drops_the_session_and_the_next_script_gets_a_new_one(
    sshd: Server, opts: SSHOptions
) -> None:
    with SSHTransport(sshd.host(), opts) as t:
        before = t.run_script("echo $$").stdout
        with pytest.raises(CommandTimeout):
            t.run_script("sleep 5", timeout=0.5)
        after = t.run_script("echo $$; echo ok")
        assert after.ok and after.stdout.splitlines()[1] == b"ok"
        assert after.stdout.splitlines()[0] != before.strip()


# Shell text that kills, a moment after it starts, the sshd process serving its own connection (its
# nearest sshd ancestor: never the listening one, which is further up), as a host that reboots or an
# sshd session that is killed would; then waits far longer than the test allows.
KILL_OWN_SSHD = r"""p=$$
while p=$(awk '/^PPid:/ {print $2}' /proc/$p/status) && [ "$p" -gt 1 ]; do
  case $(cat /proc/$p/comm) in sshd*) break ;; esac
done
(sleep 0.3; kill -9 "$p") >/dev/null 2>&1 &
sleep 20
"""


@pytest.mark.parametrize("how", ["run", "run_script"])
def test_a_connection_lost_while_a_command_runs_is_reported_at_once(
    sshd: Server, opts: SSHOptions, how: str
) -> None:
    """paramiko closes its channels without an EOF when the connection dies: that is noticed at once,
    not after the command timeout, and the next command connects again."""
    with SSHTransport(sshd.host(), replace(opts, command_timeout=30.0)) as t:
        assert t.run_script("echo ready").stdout == b"ready\n"  # the script session is open
        start = time.monotonic()
        with pytest.raises(UnreachableError, match=r"^h1 \(127\.0\.0\.1\): connection lost while the"):
            if how == "run":
                t.run(KILL_OWN_SSHD)
            else:
                t.run_script(KILL_OWN_SSHD)
        assert time.monotonic() - start < 5
        assert t.run_script("echo back").stdout == b"back\n"
        assert t.run("echo back").stdout == b"back\n"


def test_a_script_cut_short_runs_not_at_all(sshd: Server, opts: SSHOptions, tmp_path: Path) -> None:
    """The loop reads a script whole before running any of it: a stream that ends early runs nothing."""
    marker = tmp_path / "ran"
    with SSHTransport(sshd.host(), opts) as t:
        assert t.run_script("echo ready").stdout == b"ready\n"
        chan = t._session
        assert chan is not None
        full = script_session.request(f"touch {marker}\necho second-half\n", ())
        chan.sendall(full[: len(full) - 12])  # the length promises more than arrives
        chan.shutdown_write()
        deadline = time.monotonic() + 10
        while not chan.exit_status_ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert chan.exit_status_ready()
    assert not marker.exists()


def test_paramiko_comes_without_invoke_until_a_match_exec_line_needs_it(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    config.write_text(
        textwrap.dedent(f"""\
        Match host exec-alias exec "test -d /"
            HostName 127.0.0.1
            Port {sshd.port}
            User root
            IdentityFile {sshd.client_key}
        """)
    )
    # A fresh interpreter: invoke runs the `exec` command and mirrors stdin, which pytest forbids.
    probe = textwrap.dedent(f"""\
        import sys
        from dataclasses import replace
        from agent.hosts.ssh import SSHOptions, SSHTransport
        from agent.inventory import Host, load_inventory
        print("invoke" in sys.modules)
        opts = SSHOptions(known_hosts={opts.known_hosts!r}, ssh_config={str(config)!r}, use_agent=False,
                          look_for_keys=False)
        with SSHTransport(Host("exec-alias", "exec-alias"), opts) as t:
            print(t.run("id -un").stdout.decode().strip())
        print("invoke" in sys.modules)
        """)
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "root", "True"]


# --- the login and the first session channel in one flight (agent.hosts.pipelined_login) ----------


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str, int]]:
    """Every SSH message sent and received, as (packetizer, "sent"/"got", message type)."""
    from paramiko.packet import Packetizer

    seen: list[tuple[int, str, int]] = []
    send, read = Packetizer.send_message, Packetizer.read_message

    def send_message(self: Packetizer, data: Any) -> None:
        seen.append((id(self), "sent", data.asbytes()[0]))
        send(self, data)

    def read_message(self: Packetizer) -> Any:
        ptype, message = read(self)
        seen.append((id(self), "got", ptype))
        return ptype, message

    monkeypatch.setattr(Packetizer, "send_message", send_message)
    monkeypatch.setattr(Packetizer, "read_message", read_message)
    return seen


def _conversation(wire: list[tuple[int, str, int]], t: SSHTransport) -> list[tuple[str, int]]:
    assert t._transport is not None
    mine = id(t._transport.packetizer)
    return [(way, kind) for packetizer, way, kind in wire if packetizer == mine]


@pytest.fixture
def slow_link(sshd: Server, tmp_path: Path) -> Iterator[int]:
    """A port on 127.0.0.1 whose connections reach sshd 50 ms later each way (tests/bench/delay_link.py)."""
    port = _free_port()
    link = Path(__file__).parents[1] / "bench" / "delay_link.py"
    proc = subprocess.Popen(
        [sys.executable, str(link), str(port), f"127.0.0.1:{sshd.port}", "0.05", "120"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# What a login in one flight sends before the host's first answer, and that answer.
ONE_FLIGHT = [
    ("sent", MSG_SERVICE_REQUEST),
    ("sent", MSG_USERAUTH_REQUEST),
    ("sent", MSG_CHANNEL_OPEN),
    ("got", MSG_SERVICE_ACCEPT),
]


def _login_messages(talk: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The service, login and channel requests sent, and the host's answers to them, in order."""
    asked = {MSG_SERVICE_REQUEST, MSG_USERAUTH_REQUEST, MSG_CHANNEL_OPEN}
    return [(way, kind) for way, kind in talk if kind in (asked if way == "sent" else ANSWERS)]


def _known_through(link: int, sshd: Server, tmp_path: Path) -> str:
    """A known_hosts file with sshd's key under the link's port."""
    known = tmp_path / "kh"
    known.write_text(f"[127.0.0.1]:{link} {sshd.ed25519_pub}\n")
    return str(known)


def test_the_login_and_the_first_session_channel_go_in_one_flight(
    sshd: Server, opts: SSHOptions, tmp_path: Path, wire: list[tuple[int, str, int]], slow_link: int
) -> None:
    known = _known_through(slow_link, sshd, tmp_path)
    with SSHTransport(sshd.host(port=slow_link), replace(opts, known_hosts=known)) as t:
        assert t.run("echo hi").stdout == b"hi\n"
        talk = _conversation(wire, t)
    login = _login_messages(talk)
    # Service, login and channel asked for before the host answered any of them (50 ms away).
    assert login[:4] == ONE_FLIGHT, login
    # ... and that channel ran the first command: no other was asked for.
    assert [kind for way, kind in talk if way == "sent"].count(MSG_CHANNEL_OPEN) == 1
    assert ("got", MSG_CHANNEL_OPEN_SUCCESS) in talk


def test_a_key_refused_first_loses_its_early_channel_quietly_and_the_next_key_gets_one(
    sshd: Server,
    opts: SSHOptions,
    tmp_path: Path,
    wire: list[tuple[int, str, int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    stranger = keygen(tmp_path / "stranger")
    config = _ssh_config(
        tmp_path / "config",
        sshd,
        f"Host two-keys\n    HostName 127.0.0.1\n    Port {sshd.port}\n    User root\n"
        f"    IdentityFile {stranger}\n    IdentityFile {sshd.client_key}\n",
    )
    caplog.set_level(logging.DEBUG, logger="paramiko")
    with SSHTransport(Host("two", "two-keys"), replace(opts, ssh_config=str(config))) as t:
        assert t.run("echo hi").stdout == b"hi\n"
        talk = _conversation(wire, t)
    sent = [kind for way, kind in talk if way == "sent"]
    got = [kind for way, kind in talk if way == "got"]
    assert sent.count(MSG_USERAUTH_REQUEST) == 2 and sent.count(MSG_CHANNEL_OPEN) == 2
    # sshd dropped the channel asked for with the refused key ("unimplemented"), opened the second.
    assert got.count(MSG_USERAUTH_FAILURE) == 1 and got.count(MSG_UNIMPLEMENTED) == 1
    assert got.count(MSG_CHANNEL_OPEN_SUCCESS) == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_an_rsa_key_logs_in_step_by_step(
    sshd: Server, opts: SSHOptions, tmp_path: Path, wire: list[tuple[int, str, int]]
) -> None:
    """RSA's signature algorithm comes from the server's server-sig-algs, which may still be on its way."""
    rsa = keygen(tmp_path / "client_rsa", "rsa")
    authorized = sshd.root / "authorized_keys"
    original = authorized.read_text()
    authorized.write_text(original + Path(f"{rsa}.pub").read_text())
    try:
        with SSHTransport(sshd.host(identity_file=str(rsa)), opts) as t:
            assert t.run("echo hi").stdout == b"hi\n"
            talk = _conversation(wire, t)
    finally:
        authorized.write_text(original)
    assert talk.index(("sent", MSG_USERAUTH_REQUEST)) > talk.index(("got", MSG_SERVICE_ACCEPT))
    assert talk.index(("sent", MSG_CHANNEL_OPEN)) > talk.index(("got", MSG_USERAUTH_SUCCESS))


@pytest.fixture
def agent_with_key(sshd: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A real ssh-agent holding the client key, for this test's SSH_AUTH_SOCK."""
    with ssh_agent(tmp_path / "agent.sock", sshd.client_key) as sock:
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        yield


def test_an_agent_key_logs_in_in_one_flight_too(
    sshd: Server,
    opts: SSHOptions,
    tmp_path: Path,
    wire: list[tuple[int, str, int]],
    slow_link: int,
    agent_with_key: None,
) -> None:
    with_agent = replace(opts, known_hosts=_known_through(slow_link, sshd, tmp_path), use_agent=True)
    with SSHTransport(sshd.host(port=slow_link, identity_file=None), with_agent) as t:
        assert t.run("echo hi").stdout == b"hi\n"
        talk = _conversation(wire, t)
    login = _login_messages(talk)
    assert login[:5] == [*ONE_FLIGHT, ("got", MSG_USERAUTH_SUCCESS)], login


@pytest.mark.parametrize(
    ("banner", "key_type", "expected"),
    [
        ("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3", "ssh-ed25519", True),
        ("SSH-2.0-OpenSSH_8.4", "ecdsa-sha2-nistp256", True),
        ("SSH-2.0-OpenSSH_9.2p1", "rsa-sha2-512", False),
        ("SSH-2.0-OpenSSH_9.2p1", "ssh-rsa-cert-v01@openssh.com", False),
        ("SSH-2.0-OpenSSH_for_Windows_9.5", "ssh-ed25519", False),
        ("SSH-2.0-dropbear_2022.83", "ssh-ed25519", False),
        ("SSH-2.0-Go", "ssh-ed25519", False),
    ],
)
def test_only_openssh_servers_and_keys_signed_without_server_sig_algs_log_in_in_one_flight(
    banner: str, key_type: str, expected: bool
) -> None:
    assert pipelines(banner, key_type) is expected


# --- host certificates (known_hosts `@cert-authority`) ----------------------------------------------


@dataclass(frozen=True)
class CertHost:
    port: int
    ca_line: str  # "@cert-authority [127.0.0.1]:PORT ssh-ed25519 AAAA…"
    plain_key: str  # the host key itself, "ssh-ed25519 AAAA…"


@contextmanager
def _certified_sshd(sshd: Server, tmp_path: Path, *sign: str, ca: str = "ca") -> Iterator[CertHost]:
    """An sshd whose ed25519 host key is certified by ``ssh-keygen -s CA -I lab-host SIGN...``; the CA named
    ``ca`` is the one known_hosts trusts (another name signs with a CA it does not)."""
    trusted = tmp_path / "ca" if (tmp_path / "ca").exists() else keygen(tmp_path / "ca")
    signer = trusted if ca == "ca" else keygen(tmp_path / ca)
    key = keygen(tmp_path / f"host_{len(list(tmp_path.glob('host_*')))}")
    certify(signer, key, *sign, key_id="lab-host")
    port = _free_port()
    with _running_sshd(sshd.root, port, f"HostKey {key}\nHostCertificate {key}-cert.pub\n"):
        yield CertHost(port, f"@cert-authority [127.0.0.1]:{port} {public(trusted)}", public(key))


def _connect_with(sshd: Server, opts: SSHOptions, port: int, tmp_path: Path, *lines: str) -> SSHTransport:
    known = tmp_path / "known_hosts"
    known.write_text("".join(f"{line}\n" for line in lines))
    return SSHTransport(sshd.host(port=port), replace(opts, known_hosts=str(known)))


@pytest.mark.parametrize(
    "principals", ["127.0.0.1", "127.0.0.*,other.example", None], ids=["named", "wildcard", "any"]
)
def test_a_host_certified_by_a_ca_known_hosts_trusts_is_accepted(
    sshd: Server, opts: SSHOptions, tmp_path: Path, principals: str | None
) -> None:
    sign = ["-h", *(["-n", principals] if principals else [])]
    with (
        _certified_sshd(sshd, tmp_path, *sign) as host,
        _connect_with(sshd, opts, host.port, tmp_path, host.ca_line) as t,
    ):
        assert t.run("echo ok").stdout == b"ok\n"
        transport = t._transport
        assert transport is not None and transport.host_key_type == "ssh-ed25519-cert-v01@openssh.com"


@pytest.mark.parametrize(
    ("sign", "ca", "why"),
    [
        (["-h", "-n", "other.example"], "ca", "certificate 'lab-host' is for other.example, not 127.0.0.1"),
        (["-h", "-V", "20200101:20200102"], "ca", "certificate 'lab-host' expired at 2020-01-02 00:00 UTC"),
        (["-h", "-V", "+52w:+53w"], "ca", "certificate 'lab-host' is not valid before "),
        (["-n", "127.0.0.1"], "ca", "certificate 'lab-host' is not a host certificate"),
        (["-h", "-n", "127.0.0.1"], "other-ca", "not by a CA known_hosts trusts for [127.0.0.1]:"),
        (["-h", "-O", "force-command=true"], "ca", "has critical options"),
    ],
    ids=["principal", "expired", "not-yet-valid", "user-certificate", "other-ca", "critical-option"],
)
def test_a_host_certificate_that_does_not_hold_is_refused_with_why(
    sshd: Server, opts: SSHOptions, tmp_path: Path, sign: list[str], ca: str, why: str
) -> None:
    with _certified_sshd(sshd, tmp_path, *sign, ca=ca) as host:
        transport = _connect_with(sshd, opts, host.port, tmp_path, host.ca_line)
        with pytest.raises(HostKeyError, match=r"^h1 \(127\.0\.0\.1\): host certificate refused: ") as info:
            transport.connect()
        assert why in str(info.value)
        # Not taken on first use either: the host was to prove itself by its CA.
        accepting = _connect_with(
            sshd, replace(opts, accept_new_host_keys=True), host.port, tmp_path, host.ca_line
        )
        with pytest.raises(HostKeyError, match="host certificate refused"):
            accepting.connect()


def test_a_refused_certificate_falls_back_to_the_host_key_known_hosts_lists(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    with _certified_sshd(sshd, tmp_path, "-h", "-n", "other.example") as host:
        listed = f"[127.0.0.1]:{host.port} {host.plain_key}"
        with _connect_with(sshd, opts, host.port, tmp_path, host.ca_line, listed) as t:
            assert t.run("true").exit_status == 0


def test_a_ca_for_other_hosts_is_not_asked_for_and_revoked_keys_are_refused(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    with _certified_sshd(sshd, tmp_path, "-h") as host:
        elsewhere = host.ca_line.replace(f"[127.0.0.1]:{host.port}", "*.example.com")
        with pytest.raises(HostKeyError, match=r"host key not in .* \(ssh-ed25519 SHA256:"):
            _connect_with(sshd, opts, host.port, tmp_path, elsewhere).connect()
        ca = host.ca_line.split(maxsplit=2)[2]
        with pytest.raises(HostKeyError, match=r"host certificate refused: the CA SHA256:.* is @revoked"):
            _connect_with(sshd, opts, host.port, tmp_path, host.ca_line, f"@revoked * {ca}").connect()
        listed = f"[127.0.0.1]:{host.port} {host.plain_key}"
        with pytest.raises(HostKeyError, match=r"host key ssh-ed25519 SHA256:.* is @revoked"):
            _connect_with(sshd, opts, host.port, tmp_path, listed, f"@revoked * {host.plain_key}").connect()


def test_marker_lines_and_bad_lines_leave_a_listed_host_alone(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    # paramiko's own loader raises on a @cert-authority line: known_hosts like this one (a site's host CA
    # for other machines, a line cut short) once stopped every connection.
    known = sshd.known_hosts(tmp_path / "kh", sshd.ed25519_pub)
    known.write_text(
        f"@cert-authority *.example.com {sshd.rsa_pub}\n@revoked other.example {sshd.rsa_pub}\n"
        f"broken ssh-ed25519 AAAA\n{known.read_text()}"
    )
    with SSHTransport(sshd.host(), replace(opts, known_hosts=str(known))) as t:
        assert t.run("echo ok").stdout == b"ok\n"


def test_the_global_known_hosts_file_is_read_after_the_users(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    empty = tmp_path / "user_known_hosts"
    empty.write_text("")
    site = sshd.known_hosts(tmp_path / "ssh_known_hosts", sshd.ed25519_pub)
    config = tmp_path / "config"
    config.write_text(f"Host *\n    GlobalKnownHostsFile {tmp_path / 'missing'} {site}\n")
    with SSHTransport(sshd.host(), replace(opts, known_hosts=str(empty), ssh_config=str(config))) as t:
        assert t.run("true").exit_status == 0
    assert empty.read_text() == ""  # nothing added: the site's file knew the host
    # A key the user's file has for the host, and a different one in the site's, is not a change.
    other = keygen(tmp_path / "other")
    sshd.known_hosts(empty, public(other))
    with SSHTransport(sshd.host(), replace(opts, known_hosts=str(empty), ssh_config=str(config))) as t:
        assert t.run("true").exit_status == 0
    config.write_text("Host *\n    GlobalKnownHostsFile none\n")
    with pytest.raises(HostKeyError, match="host key CHANGED"):
        SSHTransport(sshd.host(), replace(opts, known_hosts=str(empty), ssh_config=str(config))).connect()


def test_a_host_key_alias_names_the_host_in_known_hosts_and_for_its_certificate(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    with _certified_sshd(sshd, tmp_path, "-h", "-n", "web1.lab") as host:
        config = tmp_path / "config"
        config.write_text("Host *\n    HostKeyAlias web1.lab\n    GlobalKnownHostsFile none\n")
        by_alias = replace(opts, ssh_config=str(config))
        ca = host.ca_line.split(maxsplit=2)[2]
        # The certificate names web1.lab, not 127.0.0.1: it holds for the alias.
        with _connect_with(sshd, by_alias, host.port, tmp_path, f"@cert-authority web1.lab {ca}") as t:
            assert t.run("true").exit_status == 0
        # The plain key, listed under the alias (no port: ssh(1) adds none to an alias).
        with _connect_with(sshd, by_alias, host.port, tmp_path, f"web1.lab {host.plain_key}") as t:
            assert t.run("true").exit_status == 0
        with pytest.raises(HostKeyError, match="host key not in"):
            _connect_with(
                sshd, by_alias, host.port, tmp_path, f"[127.0.0.1]:{host.port} {host.plain_key}"
            ).connect()


def test_every_user_known_hosts_file_ssh_config_lists_is_read_and_the_first_written(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    config = tmp_path / "config"
    config.write_text(f"Host *\n    UserKnownHostsFile {first} {second}\n    GlobalKnownHostsFile none\n")
    listed = replace(opts, known_hosts=None, ssh_config=str(config))
    sshd.known_hosts(second, sshd.ed25519_pub)
    with SSHTransport(sshd.host(), listed) as t:
        assert t.run("true").exit_status == 0
    second.write_text("")
    with SSHTransport(sshd.host(), replace(listed, accept_new_host_keys=True)) as t:
        assert t.run("true").exit_status == 0
    assert first.read_text().split()[1:] == sshd.ed25519_pub.split() and second.read_text() == ""


RELAY = Path(__file__).parents[1] / "fixtures" / "tcp_relay.py"


def test_a_proxy_command_carries_the_connection(sshd: Server, opts: SSHOptions, tmp_path: Path) -> None:
    relay = RELAY
    # %h and %p as ssh_config gives them (after HostName and Port); %n as the inventory names the host.
    config = _ssh_config(
        tmp_path / "config",
        sshd,
        f"Host via-proxy\n    HostName 127.0.0.1\n    Port {sshd.port}\n    User root\n"
        f"    IdentityFile {sshd.client_key}\n    ProxyCommand {sys.executable} {relay} %h %p {tmp_path}/log.%n\n",
    )
    with SSHTransport(Host("h1", "via-proxy"), replace(opts, ssh_config=str(config))) as t:
        assert t.run("echo ok").stdout == b"ok\n"
    assert (tmp_path / "log.via-proxy").read_text() == f"127.0.0.1:{sshd.port}\n"


def test_proxy_command_docstring_examples_hold() -> None:
    result = doctest.testmod(proxy_command)
    assert result.attempted > 0 and result.failed == 0


def test_a_proxy_command_that_ends_says_how(sshd: Server, opts: SSHOptions, tmp_path: Path) -> None:
    config = _ssh_config(
        tmp_path / "config",
        sshd,
        # As ssh(1), the command is exec'd: a shell of its own runs the two steps.
        "Host via-proxy\n    HostName 127.0.0.1\n"
        "    ProxyCommand sh -c \"echo 'bastion: access denied' >&2; exit 3\"\n",
    )
    with pytest.raises(
        UnreachableError,
        match=r"^h1 \(via-proxy\): ProxyCommand exited with status 3: bastion: access denied$",
    ):
        SSHTransport(Host("h1", "via-proxy"), replace(opts, ssh_config=str(config))).connect()


@contextmanager
def _sshd_trusting(sshd: Server, tmp_path: Path, user_ca: Path) -> Iterator[tuple[int, Path]]:
    """An sshd taking root's login with any key ``user_ca`` certifies (as a site signing user keys with
    Vault's SSH engine or step-ca sets it up); yields its port and a known_hosts naming it."""
    host_key = keygen(tmp_path / "host")
    port = _free_port()
    with _running_sshd(sshd.root, port, f"HostKey {host_key}\nTrustedUserCAKeys {user_ca}.pub\n"):
        known = tmp_path / "known_hosts"
        known.write_text(f"[127.0.0.1]:{port} {public(host_key)}\n")
        yield port, known


def test_a_user_certificate_beside_the_key_logs_in_where_sshd_trusts_its_ca(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    # As a site signing user keys (Vault's SSH engine, step-ca) sets it up: the key itself is in no
    # authorized_keys; sshd trusts the CA. ssh(1) offers KEY-cert.pub with KEY, and so does this.
    user_ca, key = keygen(tmp_path / "user_ca"), keygen(tmp_path / "id_signed")
    with _sshd_trusting(sshd, tmp_path, user_ca) as (port, known):
        host = sshd.host(port=port, identity_file=str(key))
        with pytest.raises(AuthenticationError):
            SSHTransport(host, replace(opts, known_hosts=str(known))).connect()
        certify(user_ca, key, "-n", "root", key_id="ops")
        with SSHTransport(host, replace(opts, known_hosts=str(known))) as t:
            assert t.run("id -un").stdout == b"root\n"


def test_a_certificate_file_ssh_config_names_is_offered_with_the_key_it_certifies(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    user_ca, key, other = (
        keygen(tmp_path / "user_ca"),
        keygen(tmp_path / "id_ops"),
        keygen(tmp_path / "other"),
    )
    signed = tmp_path / "vault-signed.pub"  # where a CA's client wrote it, not beside the key
    for certified in (key, other):
        certify(user_ca, certified, "-n", "root", key_id="ops")
    Path(f"{key}-cert.pub").rename(signed)
    with _sshd_trusting(sshd, tmp_path, user_ca) as (port, known):
        config = tmp_path / "config"
        connect = replace(opts, known_hosts=str(known), ssh_config=str(config))
        host = Host("h1", "127.0.0.1", port=port, user="root", identity_file=str(key))
        # Another key's certificate is not offered with this key: refused as without any.
        config.write_text(f"Host *\n    CertificateFile {other}-cert.pub\n")
        with pytest.raises(AuthenticationError):
            SSHTransport(host, connect).connect()
        config.write_text(f"Host *\n    CertificateFile {signed}\n")
        with SSHTransport(host, connect) as t:
            assert t.run("id -un").stdout == b"root\n"


def test_a_proxy_command_from_the_inventory_wins_over_ssh_config(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    # As Ansible's ansible_ssh_common_args='-o ProxyCommand=...' gives it; ssh_config's would fail.
    config = _ssh_config(tmp_path / "config", sshd, "Host 127.0.0.1\n    ProxyCommand false\n")
    command = f"{sys.executable} {RELAY} %h %p {tmp_path}/log"
    host = sshd.host(ssh_options=(("proxycommand", command),))
    with SSHTransport(host, replace(opts, ssh_config=str(config))) as t:
        assert t.run("true").exit_status == 0
    assert (tmp_path / "log").read_text() == f"127.0.0.1:{sshd.port}\n"


def test_of_proxy_jump_and_proxy_command_the_first_ssh_config_gives_is_used(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    # A bastion exempted from a fleet-wide ProxyJump by `ProxyCommand none`, the older idiom; and a host
    # whose own ProxyCommand comes before that ProxyJump. ssh uses the first of the two it meets.
    relay = f"{sys.executable} {RELAY} %h %p {tmp_path}/log"
    config = _ssh_config(
        tmp_path / "config",
        sshd,
        f"Host bastion\n    HostName 127.0.0.1\n    Port {sshd.port}\n    ProxyCommand none\n"
        f"Host relayed\n    HostName 127.0.0.1\n    Port {sshd.port}\n    ProxyCommand {relay}\n"
        f"Host dead-end\n    HostName 127.0.0.1\n    Port {_free_port()}\n    ProxyJump none\n"
        f"Host *\n    ProxyJump dead-end\n",
    )
    options = replace(opts, ssh_config=str(config))
    for name in ("bastion", "relayed"):
        with SSHTransport(sshd.host(name=name, address=name), options) as t:
            t.connect()
            assert t._hops == [] and t.run("true").ok, name
    assert (tmp_path / "log").read_text() == f"127.0.0.1:{sshd.port}\n"  # the relay, not the jump
    with pytest.raises(UnreachableError, match="via dead-end"):  # the others: the fleet-wide jump
        SSHTransport(sshd.host(name="other", address="127.0.0.1"), options).connect()


def test_the_inventorys_ssh_options_go_over_ssh_configs_as_ssh_takes_its_command_line() -> None:
    from agent.hosts.ssh import _take_inventory_options

    cfg: dict[str, Any] = {"hostname": "10.0.0.5", "proxyjump": "gw-from-config", "identityfile": ["/c"]}
    options = (
        ("identityfile", "/a"),
        ("proxycommand", "nc %h %p"),
        ("identityfile", "/b"),
        ("proxyjump", "late"),
    )
    _take_inventory_options(cfg, Host("web1", "web1", ssh_options=options))
    # The inventory's ProxyCommand came first: ssh_config's ProxyJump and its own later -J are not used.
    assert cfg == {
        "hostname": "10.0.0.5",
        "identityfile": ["/a", "/b", "/c"],
        "proxycommand": "nc 10.0.0.5 22",
        "trustagentproxyfirst": "command",
    }


def test_port_and_user_from_ssh_args_apply_where_the_inventory_sets_neither_and_the_first_value_wins() -> (
    None
):
    """-p/-o Port and -l/-o User in ansible_ssh_common_args were dropped (trust-agent went to port 22
    as the local user), and a later -o beat an earlier one, unlike ssh."""
    from agent.hosts.ssh import _endpoint, _take_inventory_options

    options = parse_ssh_args(
        "-o UserKnownHostsFile=/first -p 2299 -l carol -o UserKnownHostsFile=/second", "v", "f"
    )
    cfg: dict[str, Any] = {"hostname": "10.0.0.5", "port": "2200", "user": "from-config"}
    _take_inventory_options(cfg, Host("web1", "web1", ssh_options=options))
    assert cfg["userknownhostsfile"] == "/first"
    assert _endpoint(cfg, Host("web1", "web1", ssh_options=options)) == ("10.0.0.5", 2299, "carol")
    # ansible_port / ansible_user, where given, win (Ansible passes them before the args).
    assert _endpoint(cfg, Host("web1", "web1", port=2022, user="alice")) == ("10.0.0.5", 2022, "alice")


def test_bundled_ssh_flags_are_read_as_getopt_does() -> None:
    assert parse_ssh_args("-qJ jump@gw -Cp2200", "v", "f") == (("proxyjump", "jump@gw"), ("port", "2200"))


# --- which keys a login offers (agent.hosts.identities) ---------------------------------------------

STRANGERS = 7  # more than sshd's MaxAuthTries (6): offered first, they alone end the connection


@pytest.fixture
def crowded_agent(sshd: Server, tmp_path: Path) -> Iterator[Path]:
    """An ssh-agent holding 7 keys sshd does not know, then the client key (not yet in SSH_AUTH_SOCK):
    an engineer's agent with a key per customer, where order alone can lock a host out."""
    strangers = [keygen(tmp_path / f"stranger{n}") for n in range(STRANGERS)]
    with ssh_agent(tmp_path / "crowded.sock", *strangers, sshd.client_key) as sock:
        yield sock


def test_an_encrypted_identity_file_logs_in_through_its_agent_copy_before_the_agents_other_keys(
    sshd: Server, opts: SSHOptions, tmp_path: Path, crowded_agent: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its public half is read from the key file's unencrypted header: no .pub needed.
    encrypted = encrypted_copy(sshd.client_key, tmp_path / "id_work")
    host = sshd.host(identity_file=str(encrypted))
    monkeypatch.setenv("SSH_AUTH_SOCK", str(crowded_agent))
    with SSHTransport(host, replace(opts, use_agent=True)) as t:
        assert t.run("id -un").stdout == b"root\n"
    # Without the agent: one line saying why (it was a TypeError from deep in the key loader).
    with pytest.raises(
        AuthenticationError, match=r"id_work is encrypted and not in the agent \(ssh-add it\)"
    ):
        SSHTransport(host, opts).connect()


def test_a_public_key_named_as_identity_file_picks_its_key_in_the_agent(
    sshd: Server, opts: SSHOptions, tmp_path: Path, crowded_agent: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As with keys kept in a password manager's or a token's agent: only the public half is on disk.
    only_public = tmp_path / "work.pub"
    shutil.copyfile(f"{sshd.client_key}.pub", only_public)
    monkeypatch.setenv("SSH_AUTH_SOCK", str(crowded_agent))
    with SSHTransport(sshd.host(identity_file=str(only_public)), replace(opts, use_agent=True)) as t:
        assert t.run("true").ok
    with pytest.raises(AuthenticationError, match=r"work\.pub is a public key not in the agent"):
        SSHTransport(sshd.host(identity_file=str(only_public)), opts).connect()


def test_identities_only_offers_none_of_the_agents_other_keys(
    sshd: Server, opts: SSHOptions, tmp_path: Path, agent_with_key: None
) -> None:
    stranger = keygen(tmp_path / "stranger")
    config = tmp_path / "config"
    host = sshd.host(identity_file=str(stranger))
    with_agent = replace(opts, use_agent=True, ssh_config=str(config))
    config.write_text("Host *\n    IdentitiesOnly no\n")
    with SSHTransport(host, with_agent) as t:  # the stranger refused, then the agent's key
        assert t.run("true").ok
    config.write_text("Host *\n    IdentitiesOnly yes\n")
    with pytest.raises(AuthenticationError) as refused:
        SSHTransport(host, with_agent).connect()
    assert str(refused.value).endswith(f"failed ({stranger})")


def test_identities_only_without_identity_files_offers_the_agent_copies_of_the_default_keys(
    sshd: Server, opts: SSHOptions, tmp_path: Path, crowded_agent: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ssh_dir = tmp_path / ".ssh"  # HOME is tmp_path (the opts fixture)
    ssh_dir.mkdir()
    shutil.copyfile(f"{sshd.client_key}.pub", ssh_dir / "id_ed25519.pub")  # the key itself is in the agent
    config = tmp_path / "config"
    config.write_text("Host *\n    IdentitiesOnly yes\n")
    monkeypatch.setenv("SSH_AUTH_SOCK", str(crowded_agent))
    defaults = replace(opts, use_agent=True, look_for_keys=True, ssh_config=str(config))
    with SSHTransport(sshd.host(identity_file=None), defaults) as t:
        assert t.run("true").ok
    # Without IdentitiesOnly the agent's keys go in its order, as ssh offers them: sshd gives up first.
    config.write_text("")
    with pytest.raises(AuthenticationError, match=r"the host closed the connection after 6 keys \(agent key"):
        SSHTransport(sshd.host(identity_file=None), defaults).connect()


def test_a_close_that_overtakes_the_next_key_is_told_as_the_host_closing_after_too_many(
    sshd: Server, opts: SSHOptions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sshd's close after MaxAuthTries can arrive while the next key is on its way: that attempt ended
    in EOFError, reported as "authentication failed: EOFError" without the keys tried or why a named
    file gave none (seen in CI)."""
    import agent.hosts.pipelined_login as pipelined_login

    real_login = pipelined_login.login
    attempts = 0

    def close_on_the_third(transport: Any, *args: Any, **kw: Any) -> Any:
        nonlocal attempts
        attempts += 1
        if attempts == 3:  # as if sshd's close came first: the connection gone, the read ends
            transport.close()
            raise EOFError
        return real_login(transport, *args, **kw)

    monkeypatch.setattr(pipelined_login, "login", close_on_the_third)
    encrypted = encrypted_copy(sshd.client_key, tmp_path / "id_fleet")
    strangers = [keygen(tmp_path / f"stranger{n}") for n in range(STRANGERS)]
    with ssh_agent(tmp_path / "strangers.sock", *strangers) as sock:  # the fleet's key is not in it
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        with pytest.raises(AuthenticationError) as refused:
            SSHTransport(sshd.host(identity_file=str(encrypted)), replace(opts, use_agent=True)).connect()
    message = str(refused.value)
    assert "the host closed the connection after 3 keys" in message
    assert "id_fleet is encrypted and not in the agent (ssh-add it)" in message


def test_identity_agent_names_the_agent_and_none_turns_it_off(
    sshd: Server, opts: SSHOptions, tmp_path: Path, agent_with_key: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    with_agent = replace(opts, use_agent=True, ssh_config=str(config))
    host = sshd.host(identity_file=None)
    config.write_text("Host *\n    IdentityAgent none\n")
    with pytest.raises(AuthenticationError, match=r"\(no keys to offer\)$"):
        SSHTransport(host, with_agent).connect()
    # Another agent, named through a variable as password managers' set-ups do; SSH_AUTH_SOCK is gone.
    with ssh_agent(tmp_path / "other.sock", sshd.client_key) as other:
        monkeypatch.delenv("SSH_AUTH_SOCK")
        monkeypatch.setenv("WORK_AGENT", str(other))
        for value in (str(other), "$WORK_AGENT", "${WORK_AGENT}", f"%d/{other.name}"):
            config.write_text(f"Host *\n    IdentityAgent {value}\n")
            with SSHTransport(host, with_agent) as t:
                assert t.run("true").ok, value
    config.write_text(f"Host *\n    IdentityAgent {tmp_path / 'gone.sock'}\n")
    with pytest.raises(AuthenticationError, match=r"agent .*gone\.sock: No such file or directory"):
        SSHTransport(host, with_agent).connect()


def test_an_agent_key_used_for_an_identity_file_carries_the_certificate_beside_it(
    sshd: Server, opts: SSHOptions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_ca, key = keygen(tmp_path / "user_ca"), keygen(tmp_path / "id_signed")
    certify(user_ca, key, "-n", "root", key_id="ops")
    encrypted = encrypted_copy(key, tmp_path / "id_vault")
    Path(f"{key}-cert.pub").rename(f"{encrypted}-cert.pub")
    with (
        _sshd_trusting(sshd, tmp_path, user_ca) as (port, known),
        ssh_agent(tmp_path / "agent.sock", key) as sock,
    ):
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        host = sshd.host(port=port, identity_file=str(encrypted))
        with SSHTransport(host, replace(opts, known_hosts=str(known), use_agent=True)) as t:
            assert t.run("id -un").stdout == b"root\n"


def test_ssh_configs_connect_timeout_stands_where_the_command_line_gives_none(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    config.write_text("Host *\n    ConnectTimeout 1\n")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)  # accepts TCP, never speaks SSH
        host = sshd.host(port=listener.getsockname()[1])
        start = time.monotonic()
        with pytest.raises(UnreachableError):
            SSHTransport(host, replace(opts, ssh_config=str(config))).connect()
        assert time.monotonic() - start < 4  # not the default 10 s
        start = time.monotonic()
        with pytest.raises(UnreachableError):
            SSHTransport(host, replace(opts, ssh_config=str(config), connect_timeout=3.0)).connect()
        assert 2.5 < time.monotonic() - start < 7  # the command line's
        start = time.monotonic()
        from_inventory = replace(host, ssh_options=(("connecttimeout", "2"),))  # ansible_ssh_timeout=2
        with pytest.raises(UnreachableError):
            SSHTransport(from_inventory, replace(opts, ssh_config=str(config))).connect()
        assert 1.5 < time.monotonic() - start < 5  # the inventory's, over ssh_config's
    config.write_text("Host *\n    ConnectTimeout soon\n")
    with pytest.raises(InputError, match="ConnectTimeout 'soon' is not seconds"):
        SSHTransport(host, replace(opts, ssh_config=str(config))).connect()


def _running(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_proxy_command_that_never_answers_fails_within_the_connect_timeout_and_is_ended(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    """As a bastion's ``ssh -W`` to a host whose packets are dropped: it waits on its own TCP connect
    (minutes) and says nothing. The shell around it was ended, the command kept running with its
    stderr open, and reading that stderr held the host until the command gave up by itself."""
    pid_file = tmp_path / "proxy.pid"
    proxy = f"sh -c 'echo $$ > {pid_file}; exec sleep 60'"
    host = replace(sshd.host(), ssh_options=(("proxycommand", proxy),))
    start = time.monotonic()
    with pytest.raises(
        UnreachableError,
        match=r": could not connect: no SSH answer through the ProxyCommand within 1s \(the host may be down",
    ):
        SSHTransport(host, replace(opts, connect_timeout=1.0)).connect()
    assert time.monotonic() - start < 4  # the connect timeout, not the proxy's own
    pid = int(pid_file.read_text())
    for _ in range(50):  # bounded: ended at once, reaped by paramiko's close
        if not _running(pid):
            break
        time.sleep(0.1)
    assert not _running(pid), "the ProxyCommand was left running"


@pytest.mark.parametrize(
    ("address", "user", "said"),
    [
        ("127.0.0.1$(touch {marker})", None, "hostname contains invalid characters"),
        ("127.0.0.1;touch {marker}", None, "hostname contains invalid characters"),
        ("127.0.0.1", "root`touch {marker}`", "remote user name contains invalid characters"),
    ],
)
def test_a_name_that_would_reach_a_proxy_commands_shell_is_refused_as_ssh_refuses_it(
    sshd: Server, opts: SSHOptions, tmp_path: Path, address: str, user: str | None, said: str
) -> None:
    marker = tmp_path / "ran"
    config = _ssh_config(tmp_path / "config", sshd, "Host *\n    ProxyCommand nc %h %p # %r\n")
    host = Host("h1", address.format(marker=marker), user=user.format(marker=marker) if user else None)
    with pytest.raises(UnreachableError, match=said):
        SSHTransport(host, replace(opts, ssh_config=str(config))).connect()
    assert not marker.exists()


def test_a_proxy_command_that_ended_leaving_a_child_on_its_stderr_is_told_at_once(
    sshd: Server, opts: SSHOptions, tmp_path: Path
) -> None:
    """The command said why and exited, but a child it left in the background (`cmd >/dev/null &`) held
    its stderr open: reading that to the end held the host until the child ended (here 30 s)."""
    pid_file = tmp_path / "child.pid"
    proxy = f"sh -c 'sleep 30 >/dev/null & echo $! > {pid_file}; echo bastion refused >&2; exit 3'"
    host = replace(sshd.host(), ssh_options=(("proxycommand", proxy),))
    start = time.monotonic()
    try:
        with pytest.raises(UnreachableError, match=r"ProxyCommand exited with status 3: bastion refused"):
            SSHTransport(host, replace(opts, connect_timeout=5.0)).connect()
        assert time.monotonic() - start < 5
    finally:
        if pid_file.exists() and pid_file.read_text().strip():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
