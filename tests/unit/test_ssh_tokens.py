"""ssh_config's tokens and the local user, as OpenSSH 9.2 reads them.

ssh takes the local user (``%u``, the remote user where none is set, ``Match localuser``) from the
passwd entry of the real uid, whatever ``$USER`` and ``$LOGNAME`` say (``USER=x ssh -G h`` still shows
``user root`` as root). It expands ``IdentityFile`` and ``CertificateFile`` alike: ``~`` first, then
``%% %C %d %h %i %k %L %l %n %p %r %u`` and ``${VARIABLE}`` in one pass, and stops on a token or a
variable it cannot expand (``ssh -v`` prints the path it opens: these tests hold the paths it printed).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import InputError
from agent.hosts import ssh_config_text
from agent.hosts.ssh import (
    SSHOptions,
    SSHTransport,
    _endpoint,
    _PasswdHomeConfig,
    _SSHConfig,
    _Target,
)
from agent.inventory import Host

ME = pwd.getpwuid(os.getuid())
SOMEONE_ELSE = "someone-else"


@pytest.fixture
def someone_else_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment names another user, as after ``su`` without ``-`` or in a container's env."""
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(name, SOMEONE_ELSE)


# --- the local user ----------------------------------------------------------------------------


@pytest.mark.usefixtures("someone_else_in_the_environment")
def test_the_local_user_is_the_passwd_entrys_not_the_environments() -> None:
    assert ssh_config_text.local_user() == ME.pw_name


@pytest.mark.usefixtures("someone_else_in_the_environment")
def test_a_host_without_a_user_is_logged_into_as_the_passwd_entrys_user() -> None:
    """ssh's default remote user; $USER was taken, and the login went to a user the host may not have."""
    assert _endpoint({}, Host("web1", "10.0.0.5"))[2] == ME.pw_name
    target = SSHTransport(Host("web1", "10.0.0.5"), SSHOptions(ssh_config=None))._resolve(_SSHConfig(None))
    assert target.user == ME.pw_name


@pytest.mark.usefixtures("someone_else_in_the_environment")
def test_percent_u_and_a_percent_r_without_user_are_the_passwd_entrys_user() -> None:
    options = SSHOptions(ssh_config=None, known_hosts="/known/%u/%r")
    target = SSHTransport(Host("web1", "10.0.0.5"), options)._resolve(_SSHConfig(None))
    assert target.known_hosts == f"/known/{ME.pw_name}/{ME.pw_name}"
    config = _PasswdHomeConfig.from_text("Host web1\n    ControlPath /run/%u/%r@%h\n")
    assert config.lookup("web1")["controlpath"] == f"/run/{ME.pw_name}/{ME.pw_name}@web1"


@pytest.mark.usefixtures("someone_else_in_the_environment")
@pytest.mark.parametrize("criterion", ["localuser", "user"])
def test_match_localuser_and_match_user_without_a_user_judge_the_passwd_entrys_user(criterion: str) -> None:
    text = (
        f"Match {criterion} {SOMEONE_ELSE}\n    IdentityFile /keys/environments\n"
        f"Match {criterion} {ME.pw_name}\n    IdentityFile /keys/passwd\n"
    )
    found: object = _PasswdHomeConfig.from_text(text).lookup("web1")["identityfile"]
    assert found == ["/keys/passwd"]


def test_match_user_judges_the_user_given_where_one_is() -> None:
    text = f"Host *\n    User deploy\nMatch user {ME.pw_name}\n    IdentityFile /keys/local\n"
    assert "identityfile" not in _PasswdHomeConfig.from_text(text).lookup("web1")


# --- IdentityFile and CertificateFile -----------------------------------------------------------

# Every token ssh takes in both options, and a variable; the HostName, Port, User and HostKeyAlias
# each token names differ from one another and from the name given.
_ALL_TOKENS = "%%-%C-%d-%h-%i-%k-%L-%l-%n-%p-%r-%u-${TRUST_AGENT_SITE}"
_HOST_BLOCK = (
    "Host web1\n    HostName web1.lab.example\n    Port 2222\n    User deploy\n    HostKeyAlias web-alias\n"
)


def _expected_all_tokens() -> str:
    """``_ALL_TOKENS`` as ssh 9.2 expands it for web1 (from its source and ``ssh -v``'s paths)."""
    local_host = socket.gethostname()
    connection_hash = hashlib.sha1(f"{local_host}web1.lab.example2222deploy".encode()).hexdigest()
    return "-".join(
        [
            "%",
            connection_hash,
            ME.pw_dir,
            "web1.lab.example",
            str(os.getuid()),
            "web-alias",
            local_host.split(".")[0],
            local_host,
            "web1",
            "2222",
            "deploy",
            ME.pw_name,
            "lab",
        ]
    )


def _target_for(tmp_path: Path, lines: str, host: Host | None = None) -> _Target:
    config = tmp_path / "config"
    config.write_text(_HOST_BLOCK + lines)
    return SSHTransport(host or Host("web1", "web1"), SSHOptions(ssh_config=str(config)))._resolve(
        _SSHConfig(str(config))
    )


@pytest.mark.usefixtures("someone_else_in_the_environment")
def test_certificate_file_takes_every_token_identity_file_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CertificateFile had ``~`` alone: ``%r@%h-cert.pub`` was opened as written, no such file, and the
    certificate the host requires was never offered."""
    monkeypatch.setenv("TRUST_AGENT_SITE", "lab")
    target = _target_for(
        tmp_path, f"    IdentityFile ~/k/{_ALL_TOKENS}\n    CertificateFile ~/c/{_ALL_TOKENS}-cert.pub\n"
    )
    expected = _expected_all_tokens()
    assert target.key_files == (os.path.join(ME.pw_dir, "k", expected),)
    assert target.certificate_files == (os.path.join(ME.pw_dir, "c", f"{expected}-cert.pub"),)


def test_every_certificate_file_line_is_taken_in_order_as_ssh_takes_them(tmp_path: Path) -> None:
    """paramiko keeps the first value of every option but IdentityFile: a second CertificateFile (the
    one a host accepts, where the first has expired or names other principals) was never offered."""
    config = tmp_path / "config"
    config.write_text(
        "Host web1\n    HostName web1.lab.example\n    User deploy\n    CertificateFile ~/c/%r-old-cert.pub\n"
        "    certificatefile=~/c/%r-new-cert.pub\n    CertificateFile ~/c/%r-old-cert.pub\n"
        "Host *\n    CertificateFile ~/c/fleet-cert.pub\n"
    )
    target = SSHTransport(Host("web1", "web1"), SSHOptions(ssh_config=str(config)))._resolve(
        _SSHConfig(str(config))
    )
    home = os.path.join(ME.pw_dir, "c")
    assert target.certificate_files == (
        os.path.join(home, "deploy-old-cert.pub"),
        os.path.join(home, "deploy-new-cert.pub"),
        os.path.join(home, "fleet-cert.pub"),
    )


def test_the_inventorys_identity_file_takes_the_tokens_too(tmp_path: Path) -> None:
    """Ansible passes it to ssh as ``-o IdentityFile=…``, which ssh expands as ssh_config's."""
    target = _target_for(tmp_path, "", Host("web1", "web1", identity_file="/keys/%r@%n"))
    assert target.key_files == ("/keys/deploy@web1",)


@pytest.mark.parametrize("option", ["IdentityFile", "CertificateFile"])
@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("~/k/%z", "%z is not a token ssh expands there"),
        ("~/k/${TRUST_AGENT_NOT_SET}", "${TRUST_AGENT_NOT_SET} is not set in the environment"),
        ("~/k/100%", "ends in a lone % (write %% for a %)"),
    ],
)
def test_a_path_ssh_cannot_expand_is_refused_naming_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str, value: str, says: str
) -> None:
    """ssh stops there ("unknown key %z", "env var ${X} has no value"); a path opened as written would
    fail later, as a key or certificate not found."""
    monkeypatch.delenv("TRUST_AGENT_NOT_SET", raising=False)
    with pytest.raises(InputError) as caught:
        _target_for(tmp_path, f"    {option} {value}\n")
    assert f"ssh config {option} {value!r}: {says}" in str(caught.value)


def test_tilde_is_expanded_before_the_tokens_and_only_at_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ssh -v`` opens ``/root/x/a~b`` for ``~/x/a~b`` and ``$HOME/x`` as written."""
    monkeypatch.setenv("TILDE", "~/t")
    target = _target_for(tmp_path, "    CertificateFile ~/x/a~b\n    IdentityFile ${TILDE}\n")
    assert target.certificate_files == (os.path.join(ME.pw_dir, "x", "a~b"),)
    assert target.key_files == (os.path.abspath("~/t"),)


_PLAIN = st.text(st.characters(exclude_characters="%$", codec="utf-8"), max_size=30)


@given(before=_PLAIN, value=st.text(max_size=30), after=_PLAIN)
def test_a_tokens_value_is_taken_as_it_is_and_the_rest_of_the_path_untouched(
    before: str, value: str, after: str
) -> None:
    """One pass, as ssh's: a host name or variable holding ``%`` or ``${`` is not expanded again."""
    tokens = {"h": value}
    environ = {"V": value}
    assert ssh_config_text.expand_tokens(f"{before}%h{after}", tokens, what="IdentityFile x") == (
        f"{before}{value}{after}"
    )
    expanded = ssh_config_text.expand_tokens(f"{before}${{V}}{after}", {}, what="X", environ=environ)
    assert expanded == f"{before}{value}{after}"
