"""Which keys a login offers, and in which order (agent.hosts.identities): pure, with ssh-keygen's keys."""

from __future__ import annotations

import base64
import doctest
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import InputError
from agent.hosts import identities, ssh_config_text
from agent.hosts.identities import Identities, agent_socket, public_blob, read_private_key, refused_mode
from agent.hosts.sshlib import paramiko
from tests.sshkeys import certify, keygen


def _blob(path: Path) -> bytes:
    return paramiko.PublicBlob.from_file(f"{path}.pub").key_blob  # type: ignore[attr-defined, no-any-return]


def _encrypt(path: Path, *, pem: bool = False) -> None:
    extra = ["-m", "PEM"] if pem else []
    subprocess.run(
        ["ssh-keygen", "-q", "-p", "-P", "", "-N", "s3cret", *extra, "-f", str(path)], check=True, timeout=30
    )


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(identities)
    assert result.attempted > 0 and result.failed == 0


def test_the_public_half_is_found_without_the_passphrase(tmp_path: Path) -> None:
    key = keygen(tmp_path / "id_ed25519")
    blob = _blob(key)
    _encrypt(key)
    assert read_private_key(str(key)) == (None, "encrypted")
    assert public_blob(str(key)) == blob  # from .pub
    Path(f"{key}.pub").rename(tmp_path / "elsewhere.pub")
    assert public_blob(str(key)) == blob  # from the OpenSSH key's unencrypted header
    assert public_blob(str(tmp_path / "elsewhere.pub")) == blob  # a public key named as the identity
    assert read_private_key(str(tmp_path / "elsewhere.pub"))[1] == "public"
    assert public_blob(str(tmp_path / "missing")) is None
    assert read_private_key(str(tmp_path / "missing")) == (None, "not found")


def test_an_encrypted_pem_key_needs_its_pub(tmp_path: Path) -> None:
    key = keygen(tmp_path / "id_rsa", "rsa")
    blob = _blob(key)
    _encrypt(key, pem=True)
    assert read_private_key(str(key)) == (None, "encrypted")
    assert public_blob(str(key)) == blob
    Path(f"{key}.pub").unlink()
    assert public_blob(str(key)) is None  # PEM keeps no public half outside the encryption


def _keys(tmp_path: Path, *names: str) -> dict[str, Path]:
    return {name: keygen(tmp_path / name) for name in names}


def _order(
    wanted: Identities, agent: list[Path], *, look_for_keys: bool = False
) -> tuple[list[str], list[str]]:
    """What ``_plain`` offers, by the key files' names, given an agent holding ``agent``; and the notes."""
    names = {paramiko.PKey.from_path(str(p)).asbytes(): p.name for p in agent}
    agent_keys: list[Any] = [paramiko.PKey.from_path(str(p)) for p in agent]  # stand-ins for AgentKeys
    for path in wanted.files:
        blob = public_blob(path)
        if blob is not None:
            names.setdefault(blob, Path(path).name)
    notes: list[str] = []
    got = [
        names.get(key.asbytes(), what)
        for key, what in identities._plain(wanted, lambda: agent_keys, notes, look_for_keys=look_for_keys)
    ]
    return got, notes


def test_named_files_first_then_the_agents_other_keys_each_key_once(tmp_path: Path) -> None:
    k = _keys(tmp_path, "a", "b", "c", "named")
    wanted = Identities(files=(str(k["named"]), str(k["b"])))
    assert _order(wanted, [k["a"], k["b"], k["c"]]) == (["named", "b", "a", "c"], [])


def test_identities_only_keeps_to_the_named_files_and_their_agent_copies(tmp_path: Path) -> None:
    k = _keys(tmp_path, "a", "b", "c")
    in_agent = tmp_path / "agent" / "b"  # the agent's copy of b, as ssh-add read it before b was encrypted
    in_agent.parent.mkdir()
    shutil.copyfile(k["b"], in_agent)
    _encrypt(k["b"])
    wanted = Identities(files=(str(k["b"]), str(tmp_path / "gone")), identities_only=True)
    assert _order(wanted, [k["a"], in_agent, k["c"]]) == (["b"], [f"{tmp_path / 'gone'} not found"])
    assert _order(wanted, [k["a"], k["c"]]) == (
        [],
        [f"{k['b']} is encrypted and not in the agent (ssh-add it)", f"{tmp_path / 'gone'} not found"],
    )


def test_without_named_files_the_agent_comes_first_then_the_default_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ~ is the passwd entry's home, as ssh's: the default files are looked for there.
    monkeypatch.setattr(ssh_config_text, "home", lambda: str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    default = keygen(tmp_path / ".ssh" / "id_ed25519")
    other = keygen(tmp_path / ".ssh" / "id_ecdsa", "ecdsa")
    k = _keys(tmp_path, "a")
    got, _ = _order(Identities(files=()), [k["a"], default], look_for_keys=True)
    assert got == ["a", "id_ed25519", str(other)]  # the default in the agent once, in the agent's place
    got, _ = _order(Identities(files=(), identities_only=True), [k["a"], default], look_for_keys=True)
    assert got == ["id_ed25519", str(other)]
    assert _order(Identities(files=()), [k["a"]], look_for_keys=False)[0] == ["a"]


def test_identity_agent_tokens_and_variables_that_cannot_be_resolved_are_input_errors() -> None:
    kw: dict[str, Any] = {"home": "/h", "user": "u", "hostname": "h1", "remote_user": "r", "environ": {}}
    assert agent_socket("$MISSING", **kw) is None  # as ssh: no agent
    assert agent_socket(None, **kw) is None
    with pytest.raises(InputError, match=r"\$\{MISSING\} is not set"):
        agent_socket("${MISSING}/a.sock", **kw)
    with pytest.raises(InputError, match="%k is not known here"):
        agent_socket("/run/%k.sock", **kw)
    assert [identities.identities_only(v) for v in ("yes", "Yes", "no", None, "true")] == [
        True,
        True,
        False,
        False,
        True,
    ]


def test_an_ecdsa_key_paramikos_parser_refuses_is_read_as_ssh_reads_it(tmp_path: Path) -> None:
    # With an empty comment about half of ECDSA keys end exactly on a cipher block, and paramiko's
    # parser then takes the comment length's last 0 byte for padding (paramiko #2445).
    for n in range(40):
        key = keygen(tmp_path / f"id_ecdsa{n}", "ecdsa")
        try:
            paramiko.ECDSAKey.from_private_key_file(str(key))
        except paramiko.SSHException:
            break
    else:
        pytest.fail("40 ECDSA keys with an empty comment, none refused by paramiko's parser")
    loaded, why = read_private_key(str(key))
    assert why == "" and loaded is not None
    assert loaded.asbytes() == _blob(key)
    signature = loaded.sign_ssh_data(b"data", "ecdsa-sha2-nistp256")
    assert paramiko.ECDSAKey(data=_blob(key)).verify_ssh_sig(b"data", paramiko.Message(signature.asbytes()))


def test_a_named_key_read_from_its_file_never_asks_the_agent(tmp_path: Path) -> None:
    key = keygen(tmp_path / "id_fleet")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:  # an agent that never answers
        listener.bind(str(tmp_path / "agent.sock"))
        listener.listen(1)
        listener.setblocking(False)
        wanted = Identities(files=(str(key),), agent=str(tmp_path / "agent.sock"))
        keys = identities.offered(wanted, [], look_for_keys=False)
        assert next(keys)[1] == str(key)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
        keys.close()


@pytest.mark.filterwarnings("ignore:SSH DSA keys are deprecated")  # cryptography's, on loading it
def test_a_key_type_paramiko_has_no_class_for_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    key = tmp_path / "id_dsa"  # still found on old workstations
    subprocess.run(["ssh-keygen", "-q", "-t", "dsa", "-N", "", "-f", str(key)], check=True, timeout=30)
    assert read_private_key(str(key)) == (None, "a key type trust-agent cannot use (DSAPrivateKey)")
    got, notes = _order(Identities(files=(str(key),)), [])
    assert got == [] and notes == [f"{key} unreadable: a key type trust-agent cannot use (DSAPrivateKey)"]


def test_every_certificate_file_that_certifies_a_key_is_offered_with_it_in_order(tmp_path: Path) -> None:
    """ssh offers each CertificateFile as an identity of its own (one may have expired or name other
    principals); only the first that certified the key was offered, so a valid second one never was."""
    ca, key, other = keygen(tmp_path / "ca"), keygen(tmp_path / "id_ops"), keygen(tmp_path / "other")
    certificates: list[Path] = []
    for signed, name in ((other, "other-cert.pub"), (key, "expired-cert.pub"), (key, "current-cert.pub")):
        certify(ca, signed, "-n", "root", key_id=name)
        certificates.append(Path(f"{signed}-cert.pub").rename(tmp_path / name))  # not beside the key
    wanted = Identities(files=(str(key),), certificate_files=tuple(str(c) for c in certificates))
    notes: list[str] = []
    keys = list(identities.offered(wanted, notes, look_for_keys=False))
    assert [what for _, what in keys] == [
        f"{key} with certificate {certificates[1]}",
        f"{key} with certificate {certificates[2]}",
    ]
    presented = [k.public_blob.key_blob if k.public_blob else b"" for k, _ in keys]
    assert presented == [base64.b64decode(c.read_text().split()[1]) for c in certificates[1:]]
    assert notes == []


@given(mode=st.integers(0, 0o7777), owner=st.integers(0, 3), uid=st.integers(0, 3))
def test_a_key_file_is_refused_as_ssh_refuses_it(mode: int, owner: int, uid: int) -> None:
    """OpenSSH's sshkey_perm_ok: only the user's own file is judged, and any group or other bit refuses it."""
    why = refused_mode("/keys/id", 0o100000 | mode, owner=owner, uid=uid)
    assert (why is not None) == (owner == uid and mode & 0o077 != 0)
    if why is not None:
        assert why.startswith(f"bad permissions 0{mode & 0o777:03o}: ")
        assert why.endswith("(chmod 600 /keys/id)")


def test_a_key_file_others_can_read_is_ignored_naming_its_mode_and_the_fix(tmp_path: Path) -> None:
    """ssh -i KEY with KEY at 0644: "UNPROTECTED PRIVATE KEY FILE! ... This private key will be ignored".
    The key was read and offered all the same, also where an earlier read had cached it."""
    key = keygen(tmp_path / "id_fleet")
    assert read_private_key(str(key))[1] == ""  # 0600, as ssh-keygen made it: read, and cached
    key.chmod(0o644)
    why = f"bad permissions 0644: ssh ignores a private key its group or others can access (chmod 600 {key})"
    assert read_private_key(str(key)) == (None, why)
    assert _order(Identities(files=(str(key),)), []) == ([], [f"{key}: {why}"])
    # As ssh: the agent's copy of the key is used, its file never read.
    assert _order(Identities(files=(str(key),)), [key]) == (["id_fleet"], [])
    key.chmod(0o600)
    assert read_private_key(str(key))[1] == ""
