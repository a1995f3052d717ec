"""rollout's TLS checks from this machine, as a person reads them at the end of the run: each check that
could not connect or failed is said once in what the command prints (stderr and stdout together, as a
CI log holds them), and is still in every report file. Run on a --root tree, the checks made against
127.0.0.1: a port nothing listens on, and a TLS server presenting a certificate the CAs given do not
trust."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.pki import make_ca, make_leaf, write_pair
from tests.unit.held_source import TRUST_AGENT, WAIT

FAILED = " (a failed check from this machine: exit 1)"
NOT_CHECKED = "not checked from this machine (a note, not a failure"
PULLS_FAIL = "the hosts' pulls will fail: "
NOT_TRUSTED = "certificate not trusted"
_HANDSHAKES = 4  # the most a run makes to one endpoint; the server takes no more


@contextmanager
def _untrusted_storage(tmp_path: Path) -> Iterator[int]:
    """A TLS server on 127.0.0.1 presenting a certificate of a CA no one is given; yields its port."""
    cert, key = write_pair(tmp_path, "storage", make_leaf(make_ca("Unseen CA"), "127.0.0.1"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(WAIT)

        def serve() -> None:
            for _ in range(_HANDSHAKES):
                try:
                    conn, _ = listener.accept()
                    conn.settimeout(5.0)
                    with context.wrap_socket(conn, server_side=True):
                        pass
                except OSError:  # the client refused the certificate (or the test is over)
                    continue

        threading.Thread(target=serve, daemon=True).start()
        yield listener.getsockname()[1]


@contextmanager
def _closed_port() -> Iterator[int]:
    """A port of 127.0.0.1 held (bound, not listening) so that a connection to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


@pytest.fixture
def checked_rollout(tmp_path: Path) -> Iterator[list[str]]:
    """The argv of a rollout on a tree whose registry check cannot connect and whose storage check
    finds a certificate the hosts will not trust."""
    root = tmp_path / "root"
    (root / "etc/docker").mkdir(parents=True)
    storage_ca = tmp_path / "storage-ca.pem"
    storage_ca.write_bytes(make_ca("Storage CA")[0])
    with _untrusted_storage(tmp_path) as storage, _closed_port() as registry:
        source = tmp_path / "config.yml"
        source.write_text(
            "version: 0.1\nstorage:\n  s3:\n    region: us-east-1\n    bucket: registry\n"
            f"    regionendpoint: https://127.0.0.1:{storage}\n"
        )
        yield [
            TRUST_AGENT,
            "rollout",
            "--local",
            "--root",
            str(root),
            "--source",
            str(source),
            "--registry",
            f"127.0.0.1:{registry}",
            "--storage-ca",
            str(storage_ca),
            "--no-registry-ca",
        ]


def _run(argv: list[str]) -> tuple[int, str]:
    """Exit code and everything printed, as one text with lines unfolded (a note is counted once
    whatever the width folded it to)."""
    run = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT, check=False)
    return run.returncode, " ".join((run.stdout + "\n" + run.stderr).split())


def _said_once(printed: str, *phrases: str) -> None:
    for phrase in phrases:
        assert printed.count(phrase) == 1, f"{phrase!r} said {printed.count(phrase)} times: {printed}"


def test_each_check_that_failed_or_could_not_connect_is_said_once(checked_rollout: list[str]) -> None:
    """Each note was said on stderr, then again under the closing table (the unreached check thrice:
    its line, its warning, the table's warning)."""
    code, printed = _run(checked_rollout)
    assert code == 1, printed  # the certificate the hosts will not trust fails the run
    registry = checked_rollout[checked_rollout.index("--registry") + 1]
    _said_once(printed, f"tls {registry}: cannot connect", NOT_CHECKED, NOT_TRUSTED, PULLS_FAIL)
    _said_once(printed, FAILED)  # the untrusted check, with why it fails the run
    assert "1 host: 1 changed" in printed  # the table is still there, with the run's summary


def test_verify_says_once_why_a_check_from_here_fails_it(checked_rollout: list[str]) -> None:
    """verify said the bare check line, and the closing table left out its note (said already): nothing
    said why the run exited 1, every host unchanged."""
    argv = [*checked_rollout]
    argv[argv.index("rollout")] = "verify"
    assert subprocess.run(checked_rollout, capture_output=True, timeout=WAIT, check=False).returncode == 1
    run = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT, check=False)
    assert run.returncode == 1 and "1 host: 1 unchanged" in run.stdout, run.stdout + run.stderr
    _said_once(" ".join(run.stderr.split()), f"{NOT_TRUSTED}: unable to get local issuer certificate{FAILED}")


@pytest.mark.parametrize("command", ["verify", "rollout"])
def test_a_text_report_on_stdout_says_no_check_stderr_said(checked_rollout: list[str], command: str) -> None:
    """verify's text report, and rollout's with --diff, listed on stdout every check (and rollout every
    note) that stderr had said as it was judged: a terminal showed each twice."""
    argv = [*checked_rollout]
    argv[argv.index("rollout")] = command
    code, printed = _run([*argv, "--diff"] if command == "rollout" else argv)
    assert code == 1, printed
    registry = checked_rollout[checked_rollout.index("--registry") + 1]
    _said_once(printed, f"tls {registry}: cannot connect", f"{NOT_TRUSTED}: unable to get local issuer")
    # Each check marked failed once: verify fails both, rollout the untrusted one alone.
    assert printed.count(FAILED) == (1 if command == "rollout" else 2), printed
    assert "+++ /etc/docker/certs.d/" in printed  # the diffs are still there


def test_a_text_report_file_keeps_every_check(checked_rollout: list[str], tmp_path: Path) -> None:
    """A file has no stderr beside it: verify's text report written with -o lists each check."""
    argv = [*checked_rollout, "-o", str(tmp_path / "verify.txt")]
    argv[argv.index("rollout")] = "verify"
    code, printed = _run(argv)
    assert code == 1, printed
    written = (tmp_path / "verify.txt").read_text(encoding="utf-8")
    registry = checked_rollout[checked_rollout.index("--registry") + 1]
    assert f"checked from here: tls {registry}: cannot connect: " in written, written
    assert f"{NOT_TRUSTED}: unable to get local issuer certificate{FAILED}\n" in written, written
    assert written.count("checked from here: tls ") == 2, written
    _said_once(printed, f"tls {registry}: cannot connect")


def test_the_report_files_still_hold_every_check_and_note(checked_rollout: list[str], tmp_path: Path) -> None:
    report = tmp_path / "rollout.json"
    code, printed = _run([*checked_rollout, "-o", str(report)])
    assert code == 1, printed
    _said_once(printed, NOT_CHECKED, NOT_TRUSTED, PULLS_FAIL)
    doc = json.loads(report.read_text())
    unreached, untrusted = doc["tls_checks"]
    assert "cannot connect" in unreached and NOT_TRUSTED in untrusted, doc["tls_checks"]
    assert untrusted.endswith(FAILED) and untrusted in doc["warnings"]  # marked failed, as verify marks it
    assert [w for w in doc["warnings"] if w.startswith(PULLS_FAIL)], doc["warnings"]
    assert [w for w in doc["warnings"] if w.startswith(unreached) and NOT_CHECKED in w], doc["warnings"]
