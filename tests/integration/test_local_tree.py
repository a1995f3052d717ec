"""plan and apply against a --root tree shaped like a real /etc/docker: byte-for-byte results,
idempotence, and switching the source between CA and skip-TLS touching only the agent's own entries.

These run the real CLI in-process against a directory tree (the image-baking mode): no engine involved.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import cli
from tests.pki import make_ca

DAEMON_JSON = b"""{
    "storage-driver": "vfs",
    "log-driver": "json-file",
    "log-opts": {"max-size": "10m"},
    "insecure-registries": ["legacy.internal:5000"],
    "debug": false
}
"""

CA_CONFIG = """version: 0.1
storage:
  s3:
    accesskey: AKIA-DISTINCTIVE-ACCESS
    secretkey: very-secret-distinctive-value
    region: us-east-1
    regionendpoint: https://198.51.100.11:9000
    bucket: registry
    secure: true
http:
  addr: :443
  host: https://registry.test
  tls:
    certificate: /etc/registry/cert.pem
    key: /etc/registry/key.pem
"""
SKIP_CONFIG = CA_CONFIG.replace("secure: true", "secure: true\n    skipverify: true")


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "root"
    docker = root / "etc/docker"
    (docker / "certs.d/registry.test").mkdir(parents=True)
    (docker / "certs.d/registry.test/ca.crt").write_bytes(b"a person's registry CA\n")
    (docker / "certs.d/registry.test/client.cert").write_bytes(b"client cert\n")
    (docker / "certs.d/registry.test/client.key").write_bytes(b"client key\n")
    (docker / "certs.d/other.example.com").mkdir()
    (docker / "certs.d/other.example.com/ca.crt").write_bytes(b"other\n")
    (docker / "daemon.json").write_bytes(DAEMON_JSON)
    (docker / "daemon.json").chmod(0o600)
    storage_ca = tmp_path / "storage-ca.pem"
    storage_ca.write_bytes(make_ca("Lab Storage CA")[0])
    ca_source = tmp_path / "config.yml"
    ca_source.write_text(CA_CONFIG)
    skip_source = tmp_path / "config-skip.yml"
    skip_source.write_text(SKIP_CONFIG)
    return {"root": root, "ca": ca_source, "skip": skip_source, "storage_ca": storage_ca}


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not str(p).endswith("trust-agent/lock") and "/backup/" not in str(p)
    }


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def apply(world: dict[str, Path], source: str, *extra: str) -> tuple[int, str]:
    return local("apply", world, source, *extra)


def local(command: str, world: dict[str, Path], source: str, *extra: str) -> tuple[int, str]:
    """COMMAND against the tree with SOURCE and the storage CA."""
    return run(
        command,
        "--source",
        str(world[source]),
        "--storage-ca",
        str(world["storage_ca"]),
        "--local",
        "--root",
        str(world["root"]),
        *extra,
    )


def test_plan_changes_nothing_and_apply_is_byte_exact_then_idempotent(world: dict[str, Path]) -> None:
    before = snapshot(world["root"])
    code, out = local("plan", world, "ca", "--format", "json", "--detailed-exitcode")
    assert code == 2, out
    report = json.loads(out)
    (host,) = report["hosts"]
    assert host["status"] == "pending"
    assert [c["path"] for c in host["changes"]] == [
        "/etc/docker/certs.d/registry.test/trust-agent-storage-ca.crt",
        "/etc/docker/certs.d/registry.test:443/trust-agent-storage-ca.crt",
    ]
    assert host["engine_action"] == "none"
    assert snapshot(world["root"]) == before, "plan must not write"

    code, out = apply(world, "ca")
    assert code == 0, out
    after = snapshot(world["root"])
    ca_pem = world["storage_ca"].read_bytes()
    for name in ("registry.test", "registry.test:443"):
        assert after[f"etc/docker/certs.d/{name}/trust-agent-storage-ca.crt"] == ca_pem
    # Everything that was there is still there, byte for byte; daemon.json untouched (no skip-TLS).
    for path, content in before.items():
        assert after[path] == content
    assert os.stat(world["root"] / "etc/docker/daemon.json").st_mode & 0o777 == 0o600

    code, out = local("plan", world, "ca", "--detailed-exitcode")
    assert code == 0, out
    code, out = apply(world, "ca")
    assert code == 0 and "unchanged" in out
    assert snapshot(world["root"]) == after


def test_switching_to_skip_tls_and_back_touches_only_the_agents_entries(world: dict[str, Path]) -> None:
    assert apply(world, "ca")[0] == 0
    code, out = apply(world, "skip")
    assert code == 0, out
    daemon = json.loads((world["root"] / "etc/docker/daemon.json").read_bytes())
    assert list(daemon) == ["storage-driver", "log-driver", "log-opts", "insecure-registries", "debug"]
    assert daemon["insecure-registries"] == ["legacy.internal:5000", "registry.test", "registry.test:443"]
    assert daemon["log-opts"] == {"max-size": "10m"}
    certs = world["root"] / "etc/docker/certs.d/registry.test"
    assert not (certs / "trust-agent-storage-ca.crt").exists()
    assert (certs / "ca.crt").read_bytes() == b"a person's registry CA\n"
    assert (world["root"] / "var/lib/trust-agent/backup").is_dir()

    code, out = apply(world, "ca")
    assert code == 0, out
    daemon = json.loads((world["root"] / "etc/docker/daemon.json").read_bytes())
    # The person's entry stays; the agent's go; the key itself is kept (a reload needs it, fact 11).
    assert daemon["insecure-registries"] == ["legacy.internal:5000"]
    assert list(daemon) == ["storage-driver", "log-driver", "log-opts", "insecure-registries", "debug"]
    assert (certs / "trust-agent-storage-ca.crt").read_bytes() == world["storage_ca"].read_bytes()
    assert (certs / "client.key").read_bytes() == b"client key\n"
    assert not (world["root"] / "etc/docker/certs.d/registry.test:443/ca.crt").exists()


def test_secrets_never_reach_any_output_or_file(world: dict[str, Path], tmp_path: Path) -> None:
    for fmt in ("text", "json", "markdown", "html", "junit"):
        report = tmp_path / f"report.{fmt}"
        code, out = run(
            "plan",
            "--source",
            str(world["skip"]),
            "--local",
            "--root",
            str(world["root"]),
            "--format",
            fmt,
            "-o",
            str(report),
        )
        assert code == 0, out
        for text in (out, report.read_text()):
            assert "DISTINCTIVE" not in text and "very-secret" not in text
    code, out = run("show-source", str(world["ca"]))
    assert code == 0 and "DISTINCTIVE" not in out and "very-secret" not in out
    assert apply(world, "skip")[0] == 0
    for content in snapshot(world["root"]).values():
        assert b"DISTINCTIVE" not in content and b"very-secret" not in content


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "{missing}"], "nope.yml: cannot read"),
        (["--source", "{bad_yaml}"], "bad.yml:4: not valid YAML"),
        (["--source", "{ca}", "--storage-ca", "{key}"], "private key"),
        (["--source", "{ca}", "--registry", "../../etc"], "../../etc"),
        (["--source", "{ca}", "--storage-ca", "{empty}"], "empty"),
        (["--source", "{ca}", "--limit", "h1"], "--limit picks an inventory's hosts: it has nothing to pick"),
        (
            ["--source", "{ca}", "-i", "{missing}"],
            "apply acts on this machine (--local [--root DIR]); for an",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    world: dict[str, Path], tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "bad.yml").write_text("version: 0.1\nstorage:\n  s3: [unclosed\n")
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----\n")
    (tmp_path / "empty.pem").write_text("")
    values = {
        "missing": str(tmp_path / "nope.yml"),
        "bad_yaml": str(tmp_path / "bad.yml"),
        "ca": str(world["ca"]),
        "key": str(tmp_path / "key.pem"),
        "empty": str(tmp_path / "empty.pem"),
    }
    before = snapshot(world["root"])
    argv = ["apply", *[a.format(**values) for a in args], "--local", "--root", str(world["root"])]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("trust-agent: error: ")
    assert message in lines[0]
    assert snapshot(world["root"]) == before


def test_an_unreadable_daemon_json_is_reported_and_left_untouched(world: dict[str, Path]) -> None:
    daemon = world["root"] / "etc/docker/daemon.json"
    daemon.write_bytes(b'{"debug": true,,}\n')
    code, out = apply(world, "skip")
    assert code == 1
    assert "not valid JSON" in out
    assert daemon.read_bytes() == b'{"debug": true,,}\n'
    assert not (world["root"] / "etc/docker/certs.d/registry.test/trust-agent-storage-ca.crt").exists()


# The CLI in a fresh interpreter, saying at its end whether rich (~25 ms of imports) was loaded.
IMPORT_PROBE = """\
import os, sys
exit_now = os._exit
def end(code):
    print("rich loaded:", "rich" in sys.modules, file=sys.stderr)
    exit_now(code)
os._exit = end
from agent.cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize(("fmt", "loads_rich"), [("json", False), ("markdown", False), ("text", True)])
def test_only_the_text_report_and_the_terminal_bar_load_rich(
    world: dict[str, Path], fmt: str, loads_rich: bool
) -> None:
    args = ["apply", "--local", "--root", str(world["root"]), "--source", str(world["ca"])]
    args += ["--storage-ca", str(world["storage_ca"]), "--format", fmt]
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == f"rich loaded: {loads_rich}"
    assert "registry.test" in done.stdout  # the report itself, on stdout


def trust_agent(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a shell runs it (its own process, through main()), for exit codes and stderr."""
    argv = [sys.executable, "-c", "from agent.cli import main; main()", *args]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


def test_a_report_file_that_cannot_be_written_is_refused_before_anything_is_touched(
    world: dict[str, Path], tmp_path: Path
) -> None:
    before = snapshot(world["root"])
    report = tmp_path / "no-such-dir" / "r.json"
    done = trust_agent(
        "apply", "--source", str(world["ca"]), "--storage-ca", str(world["storage_ca"]),
        "--local", "--root", str(world["root"]), "-o", str(report),
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"trust-agent: error: Invalid value for '-o' / '--report': {report}: the directory "
        f"{report.parent} does not exist (see trust-agent apply --help)"
    ]
    assert snapshot(world["root"]) == before


def test_a_report_that_fails_to_write_after_the_run_still_shows_the_summary(world: dict[str, Path]) -> None:
    # /proc/version passes every check a path can (it exists and root may open it) and refuses writes.
    done = trust_agent(
        "apply", "--source", str(world["ca"]), "--storage-ca", str(world["storage_ca"]),
        "--local", "--root", str(world["root"]), "-o", "/proc/version",
    )  # fmt: skip
    assert done.returncode == 1
    assert "1 host: 1 changed" in done.stdout
    assert done.stderr.splitlines()[-1].startswith(
        "trust-agent: error: cannot write the report /proc/version: "
    )
    assert "Traceback" not in done.stderr
    assert (world["root"] / "etc/docker/certs.d/registry.test/trust-agent-storage-ca.crt").exists()


def test_a_command_line_mistake_is_one_line_with_where_to_read_more(world: dict[str, Path]) -> None:
    done = trust_agent("plan", "--local", "--root", str(world["root"]))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "trust-agent: error: Missing option '--source'. (see trust-agent plan --help)"
    ]
    assert trust_agent("no-such-command").stderr.splitlines() == [
        "trust-agent: error: No such command 'no-such-command'. (see trust-agent --help)"
    ]


def test_plan_detailed_exitcode_keeps_2_for_pending_changes_and_exits_1_on_bad_input(
    world: dict[str, Path], tmp_path: Path
) -> None:
    tree = ["--local", "--root", str(world["root"]), "--detailed-exitcode"]
    pending = trust_agent(
        "plan", "--source", str(world["ca"]), "--storage-ca", str(world["storage_ca"]), *tree
    )
    assert pending.returncode == 2, pending.stderr
    (tmp_path / "empty.yml").write_text("")
    bad_source = trust_agent("plan", "--source", str(tmp_path / "empty.yml"), *tree)
    assert bad_source.returncode == 1 and bad_source.stderr.startswith("trust-agent: error: ")
    bad_option = trust_agent("plan", *tree)
    assert bad_option.returncode == 1 and "Missing option '--source'" in bad_option.stderr
    assert trust_agent("plan", "--source", str(tmp_path / "empty.yml"), *tree[:-1]).returncode == 2
    # Only plan has it: another command given it has a usage error (2), not "a host failed" (1).
    elsewhere = trust_agent("apply", "--source", str(world["ca"]), *tree)
    assert elsewhere.returncode == 2 and "No such option '--detailed-exitcode'" in elsewhere.stderr


def test_apply_takes_no_inventory_and_its_help_does_not_offer_one(world: dict[str, Path]) -> None:
    code, out = run("apply", "--help")
    assert code == 0 and "--local" in out
    assert "--inventory" not in out and "--limit" not in out
    code, out = run("apply", "--source", str(world["ca"]), "-i", "h1,")
    assert code == 2 and "for an inventory's hosts use rollout" in out


def test_show_source_takes_the_source_as_every_command_does_too(world: dict[str, Path]) -> None:
    code, out = run("show-source", "--source", str(world["ca"]))
    assert code == 0 and json.loads(out)["kind"] == "distribution"
    assert run("show-source", str(world["ca"]))[1] == out
    code, out = run("show-source", str(world["ca"]), "--source", str(world["ca"]))
    assert code == 2 and "give the source once" in out


@pytest.mark.parametrize("name", ["report.yaml", "report.csv"])
def test_a_report_name_no_format_is_written_as_is_refused_before_anything_is_touched(
    world: dict[str, Path], tmp_path: Path, name: str
) -> None:
    before = snapshot(world["root"])
    code, out = apply(world, "ca", "-o", str(tmp_path / name))
    assert code == 2 and f"no report format is written as {Path(name).suffix}" in out
    assert snapshot(world["root"]) == before and not (tmp_path / name).exists()
    code, _ = apply(world, "ca", "-o", str(tmp_path / "report.log"))
    assert code == 0 and "policy" in (tmp_path / "report.log").read_text()


_INTERRUPTED_IMPORT = """
import builtins, sys
real_import = builtins.__import__
def interrupted(name, *args, **kwargs):
    if name == "agent.cli":
        raise KeyboardInterrupt  # Ctrl-C while the command line is still being imported
    return real_import(name, *args, **kwargs)
builtins.__import__ = interrupted
from agent.entry import main
main()
"""


def test_an_interrupt_during_start_up_exits_130_without_a_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_IMPORT], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 130 and "Traceback" not in done.stderr, done.stderr


# SIGTERM the moment the CLI's module starts importing (a CI job cancelled as the command starts).
_TERMINATED_IMPORT = """
import os, signal, sys
class Terminating:
    def find_spec(self, name, path, target=None):
        if name == "agent.cli":
            os.kill(os.getpid(), signal.SIGTERM)
        return None
sys.meta_path.insert(0, Terminating())
from agent.entry import main
main()
"""


def test_a_sigterm_during_start_up_says_nothing_was_changed_and_ends_as_sigterm() -> None:
    """It ended with 143 and not a word."""
    done = subprocess.run(
        [sys.executable, "-c", _TERMINATED_IMPORT, "plan"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert (
        done.stderr == "trust-agent: interrupted (SIGTERM) while starting: nothing was changed on any host\n"
    )


def test_an_interrupt_while_a_command_runs_exits_130(world: dict[str, Path]) -> None:
    # The source is read from a pipe nobody writes to: the command waits there until interrupted.
    argv = [sys.executable, "-c", "from agent.entry import main; main()"]
    argv += ["plan", "--source", "/dev/stdin", "--local", "--root", str(world["root"])]
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        time.sleep(2)  # past start-up: in the command, blocked on the read
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "trust-agent plan: interrupted (SIGINT) before any host was started: nothing was changed" in err
    assert "Traceback" not in err


def test_trust_agent_alone_prints_its_help_not_an_error() -> None:
    done = trust_agent()
    assert done.returncode == 0 and done.stdout.startswith("Usage: trust-agent [OPTIONS] COMMAND")
    assert "error" not in done.stderr


def test_a_report_path_that_is_a_dangling_link_or_under_a_file_is_refused_first(
    world: dict[str, Path], tmp_path: Path
) -> None:
    before = snapshot(world["root"])
    link = tmp_path / "report.json"
    link.symlink_to(tmp_path / "gone" / "r.json")
    (tmp_path / "a-file").write_text("")
    tree = ["--source", str(world["ca"]), "--storage-ca", str(world["storage_ca"]), "--local", "--root"]
    for report, why in (
        (str(link), f"the directory {tmp_path / 'gone'} does not exist"),
        (str(tmp_path / "a-file" / "r.json"), f"{tmp_path / 'a-file'} is not a directory"),
    ):
        done = trust_agent("apply", *tree, str(world["root"]), "-o", report)
        assert done.returncode == 2 and why in done.stderr, done.stderr
    zero = trust_agent("plan", *tree, str(world["root"]), "--command-timeout", "0")
    assert zero.returncode == 2 and "'--command-timeout': 0.0 is not in the range x>0" in zero.stderr
    assert snapshot(world["root"]) == before


def test_an_interrupt_while_an_inventory_script_runs_stops_the_script_too(tmp_path: Path) -> None:
    pid_file = tmp_path / "script.pid"
    script = tmp_path / "slow-inventory"
    script.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 100\n")
    script.chmod(0o755)
    argv = [sys.executable, "-c", "from agent.entry import main; main()", "inventory", "-i", str(script)]
    with subprocess.Popen(
        [*argv, "--list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        deadline = time.monotonic() + 20
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert time.monotonic() < deadline, "the inventory script did not start"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 130
    script_pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(script_pid, 0)


def test_a_report_file_is_utf_8_whatever_the_locale(world: dict[str, Path], tmp_path: Path) -> None:
    """Written in the locale's encoding, the HTML (which says utf-8) failed under LC_ALL=C after the
    hosts were changed, with a traceback."""
    out = tmp_path / "plan.html"
    args = ["plan", "--source", str(world["ca"]), "--storage-ca", str(world["storage_ca"])]
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    argv = [sys.executable, "-c", "from agent.cli import main; main()", *args]
    argv += ["--local", "--root", str(world["root"]), "-o", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert "—" in out.read_bytes().decode("utf-8")


def test_a_fresh_tree_without_etc_docker_gets_daemon_json(world: dict[str, Path], tmp_path: Path) -> None:
    """Skip-TLS alone writes only daemon.json: plan said pending, and apply failed, as /etc/docker (which
    only the certs.d directories used to make) was missing."""
    tree = tmp_path / "fresh"
    tree.mkdir()
    code, output = run("apply", "--source", str(world["skip"]), "--local", "--root", str(tree))
    assert code == 0, output
    doc = json.loads((tree / "etc/docker/daemon.json").read_text())
    assert doc["insecure-registries"] == ["registry.test", "registry.test:443"]
    code, output = run("apply", "--source", str(world["skip"]), "--local", "--root", str(tree))
    assert code == 0 and "1 unchanged" in output, output


def test_root_slash_is_refused_for_local_alone(world: dict[str, Path]) -> None:
    """As a tree, the live system got its files and dockerd was never reloaded."""
    code, output = run("apply", "--source", str(world["skip"]), "--local", "--root", "/")
    assert code == 2 and "--root /: that is this machine itself: use --local alone" in output


def test_apply_local_as_another_user_says_to_run_it_as_root(world: dict[str, Path]) -> None:
    """It said to pass --become, which apply does not have."""
    with tempfile.TemporaryDirectory() as shared:  # readable by that user (pytest's are 0700)
        os.chmod(shared, 0o755)
        source = Path(shared) / "config.yml"
        source.write_bytes(world["skip"].read_bytes())
        source.chmod(0o644)
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c"]
        argv += ["from agent.cli import main; main()", "apply", "--source", str(source), "--local"]
        env = {**os.environ, "HOME": "/tmp"}
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60, env=env, cwd="/")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "not root: /etc/docker and the engine's socket are root's (run it as root: sudo" in done.stdout


def test_verify_warns_of_a_resolve_entry_no_check_uses(world: dict[str, Path]) -> None:
    # Every name the checks use resolves to loopback, where nothing listens: the checks fail at once.
    source = world["ca"].with_name("config-named.yml")
    source.write_text(CA_CONFIG.replace("https://198.51.100.11:9000", "https://s3.test:9000"))
    args = ["verify", "--source", str(source), "--storage-ca", str(world["storage_ca"])]
    args += ["--local", "--root", str(world["root"]), "--resolve", "registry.test:127.0.0.1"]
    args += ["--resolve", "s3.test:127.0.0.1", "--resolve", "regsitry.test:127.0.0.1"]
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 1, done.output
    assert "warning: --resolve regsitry.test:127.0.0.1: no TLS check connects to regsitry.test" in done.output
    assert "--resolve registry.test" not in done.output and "--resolve s3.test" not in done.output


def test_ask_become_pass_without_a_terminal_reads_stdin_without_pythons_echo_warning(
    world: dict[str, Path], tmp_path: Path
) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("h1 ansible_host=127.0.0.1 ansible_port=1\n")  # refused at once: nothing listens
    argv = [
        sys.executable,
        "-c",
        "from agent.entry import main; main()",
        "plan",
        "--source",
        str(world["ca"]),
    ]
    argv += ["--storage-ca", str(world["storage_ca"]), "-i", str(inventory), "--become", "--ask-become-pass"]
    done = subprocess.run(
        argv, input="pw\n", capture_output=True, text=True, timeout=60, check=False, start_new_session=True
    )
    assert "sudo password:" in done.stderr and "GetPassWarning" not in done.stderr, done.stderr
    assert done.returncode == 1 and "h1" in done.stdout, done.stdout + done.stderr


def test_a_canary_image_from_outside_the_policys_registries_is_refused_before_anything_is_touched(
    world: dict[str, Path],
) -> None:
    """lab/busybox:1 is docker.io's: the engine removed it and pulled it from Docker Hub, proving nothing
    of the trust for registry.test, and the run passed."""
    before = snapshot(world["root"])
    done = trust_agent(
        "rollout", "--source", str(world["ca"]), "--storage-ca", str(world["storage_ca"]),
        "--local", "--root", str(world["root"]), "--canary-image", "lab/busybox:1",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "trust-agent: error: --canary-image lab/busybox:1: its first component has no '.' or ':' and is "
        "not localhost, so docker pulls it from docker.io, not from this policy's registries "
        "(registry.test, registry.test:443): its pull would prove nothing about them; name an image "
        "under one, e.g. registry.test/lab/busybox:1"
    ]
    assert snapshot(world["root"]) == before


def test_a_mistyped_registry_is_warned_of_where_the_plan_removes_the_sources_ca_files(
    world: dict[str, Path],
) -> None:
    assert apply(world, "ca")[0] == 0
    code, out = local("plan", world, "ca", "--registry", "registry.tset")
    assert code == 0
    assert "certs.d/registry.test/trust-agent-storage-ca.crt: remove" in out
    warning = next(line for line in out.splitlines() if "--registry registry.tset" in line)
    assert "names none of the addresses the source gives the registry" in warning
    assert "http.host https://registry.test" in warning and "give --registry registry.test" in warning


_LOCAL_SCRIPT_UNDER_CTRL_C = """
import signal
from agent.hosts.local import LocalTransport
signal.signal(signal.SIGINT, lambda *_: None)  # the CLI's first Ctrl-C: the host in flight finishes
print("ready", flush=True)
result = LocalTransport().run("sleep 1; echo finished")
print(result.exit_status, result.stdout.decode().strip(), flush=True)
"""


def test_a_terminal_ctrl_c_does_not_reach_the_local_script_of_the_host_in_flight() -> None:
    # A terminal sends SIGINT to its whole foreground group: the local script must not die of it,
    # or `apply --local` leaves the host part way while saying the host in flight finished.
    argv = [sys.executable, "-c", _LOCAL_SCRIPT_UNDER_CTRL_C]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        time.sleep(0.3)  # the script is in its sleep
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert out == "0 finished\n"
