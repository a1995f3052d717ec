"""The apply script, run by a real POSIX sh against a directory tree (the --root mode)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.engine.apply_script import (
    BACKUPS_KEPT,
    EXIT_BUSY,
    EXIT_CHANGED,
    EXIT_INVALID,
    ROLLBACK_LOCK_WAIT,
    RUNNING_FLAG_CHECK,
    _directory_link_lines,
    _link_chain_lines,
    _safe_directories_lines,
    build_apply_script,
    inverse,
    new_backup_stamp,
)
from agent.engine.gather import gather, gather_host, tree_link_says, unsafe_hop_says
from agent.engine.reconcile import rollback_lock_wait
from agent.hosts.local import LocalTransport
from agent.runtimes.docker import plan_docker
from agent.runtimes.docker_facts import STATE_FILE as STATE
from agent.runtimes.docker_facts import DockerFacts
from agent.runtimes.plan import FileChange, HostPlan
from tests.unit.test_docker_plan import ca_policy, insecure_policy

CERTS = "/etc/docker/certs.d"
DAEMON = "/etc/docker/daemon.json"
BACKUP = "/var/lib/trust-agent/backup"


def run(root: Path, script: str) -> tuple[int, str]:
    result = LocalTransport().run(f"sh -s -- {root}", stdin=script.encode())
    return result.exit_status, result.stderr.decode()


def tree(root: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "trust-agent/lock" not in str(path):
            files[str(path.relative_to(root))] = path.read_bytes()
    return files


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "etc/docker/certs.d/other.test").mkdir(parents=True)
    (tmp_path / "etc/docker/certs.d/other.test/ca.crt").write_bytes(b"foreign\n")
    daemon = tmp_path / "etc/docker/daemon.json"
    daemon.write_bytes(b'{"debug": true}\n')
    daemon.chmod(0o600)
    return tmp_path


def plan_for(root: Path) -> HostPlan:
    return HostPlan(
        changes=(
            FileChange(f"{CERTS}/registry.test/trust-agent-storage-ca.crt", "create", None, b"CA\n"),
            FileChange(
                DAEMON, "update", b'{"debug": true}\n', b'{"debug": true, "insecure-registries": []}\n'
            ),
        ),
        mkdirs=(f"{CERTS}/registry.test",),
        engine_action="reload",
    )


def test_writes_atomically_keeps_mode_and_backs_up_daemon_json(root: Path) -> None:
    script = build_apply_script(plan_for(root), engine_action="reload", init=None, backup_stamp="t1")
    status, err = run(root, script)
    assert status == 0, err
    ca = root / "etc/docker/certs.d/registry.test/trust-agent-storage-ca.crt"
    assert ca.read_bytes() == b"CA\n"
    assert stat.S_IMODE(ca.stat().st_mode) == 0o644
    assert stat.S_IMODE((root / "etc/docker/certs.d/registry.test").stat().st_mode) == 0o755
    daemon = root / "etc/docker/daemon.json"
    assert daemon.read_bytes() == b'{"debug": true, "insecure-registries": []}\n'
    assert stat.S_IMODE(daemon.stat().st_mode) == 0o600  # the owner's mode is kept
    assert (root / "var/lib/trust-agent/backup/daemon.json.t1").read_bytes() == b'{"debug": true}\n'
    assert (root / "etc/docker/certs.d/other.test/ca.crt").read_bytes() == b"foreign\n"
    assert not list(root.rglob(".trust-agent.*"))


def test_an_existing_backup_is_never_overwritten_and_stops_the_apply_first(root: Path) -> None:
    backup = root / "var/lib/trust-agent/backup/daemon.json.t1"
    backup.parent.mkdir(parents=True)
    backup.write_bytes(b'{"the": "first backup"}\n')
    before, before_dirs = tree(root), dirs(root)
    status, err = run(
        root, build_apply_script(plan_for(root), engine_action="none", init=None, backup_stamp="t1")
    )
    assert status == 1
    assert "daemon.json.t1 exists: not overwriting a backup" in err
    assert tree(root) == before and dirs(root) == before_dirs  # nothing staged, renamed or made is left


def test_runs_in_the_same_second_back_up_to_different_files(root: Path) -> None:
    stamps = [new_backup_stamp(1_700_000_000.0) for _ in range(50)]
    assert len(set(stamps)) == 50
    assert all(s.startswith("20231114T221320Z-") for s in stamps)
    # Without a stamp, every apply names a backup of its own: the first run's backup survives the second.
    plan = plan_for(root)
    assert run(root, build_apply_script(plan, engine_action="none", init=None))[0] == 0
    again = build_apply_script(inverse(plan), engine_action="none", init=None, expect_current=False)
    assert run(root, again)[0] == 0
    backups = sorted(p.read_bytes() for p in (root / "var/lib/trust-agent/backup").iterdir())
    assert backups == [b'{"debug": true, "insecure-registries": []}\n', b'{"debug": true}\n']


def test_the_newest_backups_are_kept_and_the_oldest_go(root: Path) -> None:
    """Every change added a backup and none went: a daemon repairing a file another tool keeps rewriting
    filled the disk, one backup an interval."""
    backups = root / "var/lib/trust-agent/backup"
    backups.mkdir(parents=True)
    old = [new_backup_stamp(1_700_000_000.0 + day * 86_400) for day in range(BACKUPS_KEPT + 5)]
    for stamp in old:
        (backups / f"daemon.json.{stamp}").write_bytes(b"{}\n")
    (backups / "a-persons-note").write_bytes(b"kept\n")
    stamp = new_backup_stamp(1_800_000_000.0)
    assert (
        run(root, build_apply_script(plan_for(root), engine_action="none", init=None, backup_stamp=stamp))[0]
        == 0
    )
    kept = sorted(p.name for p in backups.iterdir())
    assert kept == sorted(
        ["a-persons-note", *(f"daemon.json.{s}" for s in old[-(BACKUPS_KEPT - 1) :]), f"daemon.json.{stamp}"]
    )


def test_only_the_agents_own_backups_are_counted_and_pruned(root: Path) -> None:
    """A person's daemon.json.1-before-upgrade sorted first among the backups and was the first deleted."""
    backups = root / "var/lib/trust-agent/backup"
    backups.mkdir(parents=True)
    persons = ["daemon.json.1-before-upgrade", "daemon.json.orig", "daemon.json.20230101T000000Z-abcdef.txt"]
    for name in persons:
        (backups / name).write_bytes(b"a person's\n")
    # A roll-back's backups are the agent's too (its stamp, then -rollback), ordered by time with the rest.
    old = [
        new_backup_stamp(1_700_000_000.0 + day * 86_400) + ("-rollback" if day % 2 else "")
        for day in range(BACKUPS_KEPT + 3)
    ]
    for stamp in old:
        (backups / f"daemon.json.{stamp}").write_bytes(b"{}\n")
    stamp = new_backup_stamp(1_800_000_000.0)
    script = build_apply_script(plan_for(root), engine_action="none", init=None, backup_stamp=stamp)
    assert run(root, script)[0] == 0
    kept = sorted(p.name for p in backups.iterdir())
    assert kept == sorted(
        [*persons, *(f"daemon.json.{s}" for s in old[-(BACKUPS_KEPT - 1) :]), f"daemon.json.{stamp}"]
    )


def test_a_failed_put_back_is_named_and_the_backup_kept(
    root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The file system under the record gone read-only part way: the record's second rename fails, and
    so does putting its first back. The error names the file left as the run made it, daemon.json is put
    back, and its backup stays."""
    daemon, record = root / DAEMON.lstrip("/"), root / STATE.lstrip("/")
    first = plan_docker(insecure_policy("registry.test"), DockerFacts(daemon_json=daemon.read_bytes()))
    assert run(root, build_apply_script(first, engine_action="none", init=None))[0] == 0
    before_daemon = daemon.read_bytes()
    plan = plan_docker(SKIP_OTHER, DockerFacts(daemon_json=before_daemon, state=record.read_bytes()))
    assert [c.path for c in plan.changes] == [STATE, DAEMON, STATE]
    path = failing_mv(tmp_path_factory, "docker-state.json", 2, and_after=True)
    script = build_apply_script(plan, engine_action="none", init=None, backup_stamp="t7").encode()
    result = LocalTransport().run(f"PATH={path} sh -s -- {root}", stdin=script)
    err = result.stderr.decode()
    assert result.exit_status == 1, err
    assert err.strip().endswith(
        f"cannot rename into {STATE}; could not put back (left as this run made them): {STATE}"
    ), err
    assert (root / BACKUP.lstrip("/") / "daemon.json.t7").read_bytes() == before_daemon
    assert daemon.read_bytes() == before_daemon  # put back
    assert record.read_bytes() == plan.changes[0].after  # the record's first rename stays


def test_a_restart_clears_systemds_start_limit_first_and_a_reload_waits_on_no_other_unit(root: Path) -> None:
    def engine_lines(action: str) -> list[str]:
        script = build_apply_script(plan_for(root), engine_action=action, init="systemd")  # type: ignore[arg-type]
        return [line for line in script.splitlines() if "systemctl" in line]

    (line,) = engine_lines("restart")
    assert line.startswith("aout=$({ systemctl reset-failed docker.service 2>/dev/null; ")
    assert line.index("systemctl reset-failed docker.service") < line.index(
        "systemctl restart docker.service"
    )
    assert line.endswith('fail 78 "restart of dockerd failed: $aout"; }')
    reload, stopped = engine_lines("reload")
    assert reload.startswith("if aout=$(systemctl reload --job-mode=ignore-dependencies docker.service 2>&1)")
    # Only a failed reload asks whether docker.service was stopped meanwhile.
    assert stopped.startswith('elif [ "$(systemctl is-active docker.service)" = inactive ]; then ')


def failing_mv(
    tmp_path_factory: pytest.TempPathFactory, target: str, nth: int = 1, *, and_after: bool = False
) -> str:
    """A PATH whose mv fails the ``nth`` time it renames into ``target`` (a file bind-mounted read-only,
    say), and ``and_after`` every time after (a file system gone read-only part way)."""
    bin_dir = tmp_path_factory.mktemp("bin")
    count = bin_dir / "count"
    test = "-ge" if and_after else "-eq"
    (bin_dir / "mv").write_text(
        "#!/bin/sh\n"
        f'case "$*" in *{target}) echo >> {count}; [ "$(wc -l < {count})" {test} {nth} ] && exit 1 ;; esac\n'
        'exec /bin/mv "$@"\n'
    )
    (bin_dir / "mv").chmod(0o755)
    return f"{bin_dir}:/usr/bin:/bin"


SKIP_OTHER = insecure_policy("other.test")  # the registry renamed, its storage still skipping TLS


@pytest.mark.parametrize(
    ("change", "fails_at"),
    [
        ("skip-TLS", ("daemon.json", 1)),
        ("skip-TLS to a CA", ("daemon.json", 1)),
        ("skip-TLS to another registry", ("daemon.json", 1)),
        ("skip-TLS to another registry", ("docker-state.json", 2)),
    ],
)
def test_a_rename_failing_part_way_puts_the_host_back_as_it_was(
    change: str, fails_at: tuple[str, int], root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Whatever rename fails, the files renamed before it are put back: the host is as it was, and
    every insecure-registries entry of the agent's is still claimed by its record."""
    daemon = root / DAEMON.lstrip("/")
    record = root / STATE.lstrip("/")
    facts = DockerFacts(daemon_json=daemon.read_bytes())
    if change != "skip-TLS":  # a host the agent made skip TLS for registry.test
        earlier = {c.path: c.after for c in plan_docker(insecure_policy("registry.test"), facts).changes}
        daemon.write_bytes(earlier[DAEMON] or b"")
        record.parent.mkdir(parents=True)
        record.write_bytes(earlier[STATE] or b"")
        facts = DockerFacts(daemon_json=earlier[DAEMON], state=earlier[STATE])
    policy = {
        "skip-TLS": insecure_policy("registry.test"),
        "skip-TLS to a CA": ca_policy("registry.test"),
        "skip-TLS to another registry": SKIP_OTHER,
    }[change]
    script = build_apply_script(plan_docker(policy, facts), engine_action="none", init=None).encode()
    path = failing_mv(tmp_path_factory, *fails_at)
    before = tree(root)
    result = LocalTransport().run(f"PATH={path} sh -s -- {root}", stdin=script)
    err = result.stderr.decode()
    assert result.exit_status == 1 and "cannot rename into " in err and fails_at[0] in err, err
    assert err.strip().endswith(": nothing was changed (the files renamed before it were put back)"), err
    assert tree(root) == before  # the backup taken for the run is gone too
    listed = json.loads(daemon.read_bytes()).get("insecure-registries", [])
    claimed = json.loads(record.read_bytes())["insecure_registries"] if record.exists() else []
    assert set(listed) <= set(claimed), (listed, claimed)
    assert not list(root.rglob(".trust-agent.*"))


def test_a_record_that_adds_and_drops_claims_is_written_twice_and_undone_exactly(root: Path) -> None:
    facts = DockerFacts(daemon_json=(root / DAEMON.lstrip("/")).read_bytes())
    first = plan_docker(insecure_policy("registry.test"), facts)
    assert first.changes[0].path == STATE  # only adds claims: first
    assert run(root, build_apply_script(first, engine_action="none", init=None))[0] == 0
    facts = DockerFacts(
        daemon_json=(root / DAEMON.lstrip("/")).read_bytes(), state=(root / STATE.lstrip("/")).read_bytes()
    )
    before = tree(root)
    plan = plan_docker(SKIP_OTHER, facts)
    records = [c for c in plan.changes if c.path == STATE]
    assert [plan.changes[0], plan.changes[-1]] == records
    assert json.loads(records[0].after or b"")["insecure_registries"] == ["registry.test", "other.test"]
    assert json.loads(records[1].after or b"")["insecure_registries"] == ["other.test"]
    assert records[1].before == records[0].after
    assert run(root, build_apply_script(plan, engine_action="none", init=None))[0] == 0
    assert json.loads((root / STATE.lstrip("/")).read_bytes())["insecure_registries"] == ["other.test"]
    undo = build_apply_script(inverse(plan), engine_action="none", init=None, expect_current=False)
    assert run(root, undo)[0] == 0
    assert {k: v for k, v in tree(root).items() if "/backup/" not in k} == {
        k: v for k, v in before.items() if "/backup/" not in k
    }


def test_inverse_restores_the_exact_previous_files(root: Path) -> None:
    before = tree(root)
    plan = plan_for(root)
    assert run(root, build_apply_script(plan, engine_action="none", init=None))[0] == 0
    undo = build_apply_script(inverse(plan), engine_action="none", init=None, expect_current=False)
    assert run(root, undo)[0] == 0
    after = {k: v for k, v in tree(root).items() if "/backup/" not in k}
    assert after == before
    assert not (root / "etc/docker/certs.d/registry.test").exists()


def test_a_file_changed_since_gathering_aborts_with_nothing_written(root: Path) -> None:
    (root / "etc/docker/daemon.json").write_bytes(b'{"debug": false}\n')
    before = tree(root)
    status, err = run(root, build_apply_script(plan_for(root), engine_action="none", init=None))
    assert status == EXIT_CHANGED
    assert "changed since facts were gathered" in err
    assert tree(root) == before


def dirs(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()}


def test_a_refused_validation_leaves_no_trace(root: Path) -> None:
    before, before_dirs = tree(root), dirs(root) | {"var", "var/lib", "var/lib/trust-agent"}
    script = build_apply_script(
        plan_for(root),
        engine_action="none",
        init="systemd",
        validate_with=("sh", "-c", "echo bad key >&2; exit 1", "x"),
    )
    status, err = run(root, script)
    assert status == EXIT_INVALID and "bad key" in err
    assert tree(root) == before
    # Not even the registry's certs.d directory, made to stage its CA file beside it.
    assert dirs(root) == before_dirs
    assert not list(root.rglob(".trust-agent.*"))


def test_a_held_lock_means_busy_and_untouched(root: Path) -> None:
    lock_dir = root / "var/lib/trust-agent"
    lock_dir.mkdir(parents=True)
    before = tree(root)
    fd = os.open(lock_dir / "lock", os.O_CREAT | os.O_WRONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        status, err = run(root, build_apply_script(plan_for(root), engine_action="none", init=None))
    finally:
        os.close(fd)
    assert status == EXIT_BUSY and "holds" in err
    # In a tree there is no inventory: the other run is another on the tree.
    assert err.strip() == (
        f"another trust-agent run holds {root}/var/lib/trust-agent/lock "
        "(another run on this tree: apply --local --root)"
    )
    assert tree(root) == before


@pytest.mark.parametrize(
    ("local", "said"),
    [
        # Two inventory names for one machine met this lock within one run: "another run" alone misled.
        (False, "(or this one: two inventory names for one machine?)"),
        (True, "(on this machine: another apply --local, a rollout reaching it, or its per-host daemon)"),
    ],
)
def test_a_held_lock_on_a_live_host_names_who_else_could_hold_it(local: bool, said: str) -> None:
    script = build_apply_script(plan_for(Path("/")), engine_action="none", init=None, local=local)
    (chosen,) = [line for line in script.splitlines() if line.startswith('if [ -n "$R" ]; then ta_who=')]
    assert chosen.endswith(f"else ta_who={shlex.quote(' ' + said)}; fi")
    assert (
        'flock -n 9 || fail 75 "another trust-agent run holds $R/var/lib/trust-agent/lock$ta_who"' in script
    )


@contextmanager
def lock_held(root: Path, seconds: float) -> Iterator[None]:
    """The host's lock held, as another run's apply holds it, and let go after ``seconds`` (bounded)."""
    lock_dir = root / "var/lib/trust-agent"
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / "lock", os.O_CREAT | os.O_WRONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    timer = threading.Timer(seconds, os.close, (fd,))
    timer.start()
    try:
        yield
    finally:
        timer.join()


def applied_then_undo(root: Path) -> tuple[str, dict[str, bytes]]:
    """The roll-back script of an apply made on ``root``, and the tree before that apply."""
    before = tree(root)
    plan = plan_for(root)
    assert run(root, build_apply_script(plan, engine_action="none", init=None, backup_stamp="t1"))[0] == 0
    undo = build_apply_script(
        inverse(plan), engine_action="none", init=None, rolling_back=True, backup_stamp="t1-rollback"
    )
    return undo, before


def test_a_roll_back_waits_for_a_lock_another_run_holds_then_rolls_back(root: Path) -> None:
    """A roll-back that found another run's apply at work on the host gave up at once: the host was left
    half changed by a run that had failed."""
    undo, before = applied_then_undo(root)
    with lock_held(root, 1.0):
        started = time.monotonic()
        status, err = run(root, undo)
    assert status == 0, err
    assert time.monotonic() - started >= 0.9  # it waited for the lock, then did its work
    assert {k: v for k, v in tree(root).items() if "/backup/" not in k} == before


def test_a_roll_back_gives_up_on_a_lock_held_past_its_wait_and_changes_nothing(root: Path) -> None:
    applied_then_undo(root)
    undo = build_apply_script(
        inverse(plan_for(root)), engine_action="none", init=None, rolling_back=True, lock_wait=1
    )
    applied = tree(root)
    with lock_held(root, 3.0):
        status, err = run(root, undo)
    assert status == EXIT_BUSY
    assert err.strip().endswith("lock (waited 1 s for it) (another run on this tree: apply --local --root)")
    assert tree(root) == applied


def test_an_apply_does_not_wait_for_the_lock_and_a_roll_back_waits_within_its_command_time() -> None:
    applying = build_apply_script(HostPlan(), engine_action="none", init=None)
    assert "flock -n 9 ||" in applying
    rolling_back = build_apply_script(HostPlan(), engine_action="none", init=None, rolling_back=True)
    assert f"flock -w {ROLLBACK_LOCK_WAIT} 9 ||" in rolling_back
    assert rollback_lock_wait(120.0) == ROLLBACK_LOCK_WAIT
    # A short command time leaves the roll-back its own reload or restart after the wait.
    assert rollback_lock_wait(40.0) == 10
    assert rollback_lock_wait(2.0) == 1


def test_paths_with_shell_metacharacters_are_quoted(root: Path) -> None:
    odd = f"{CERTS}/registry.test/trust-agent-$(touch pwned)'x.crt"
    plan = HostPlan(changes=(FileChange(odd, "create", None, b"x"),), mkdirs=(f"{CERTS}/registry.test",))
    assert run(root, build_apply_script(plan, engine_action="none", init=None))[0] == 0
    assert (root / odd.lstrip("/")).read_bytes() == b"x"
    assert not (root / "pwned").exists() and not Path("pwned").exists()


@pytest.mark.parametrize(
    "data",
    [
        b"plain text\n",
        b"no final newline",
        "ünïcode 'quotes' \"and\" $(x) `y` \\n\n".encode(),
        b"\x00\xffbin\x00",
    ],
)
@pytest.mark.parametrize("mode", [0o644, 0o600, 0o640, 0o755])
def test_new_files_get_exact_bytes_and_mode(root: Path, data: bytes, mode: int) -> None:
    path = f"{CERTS}/registry.test/trust-agent-x.crt"
    plan = HostPlan(
        changes=(FileChange(path, "create", None, data, mode),), mkdirs=(f"{CERTS}/registry.test",)
    )
    assert run(root, build_apply_script(plan, engine_action="none", init=None))[0] == 0
    written = root / path.lstrip("/")
    assert written.read_bytes() == data
    assert stat.S_IMODE(written.stat().st_mode) == mode


def test_a_leftover_temp_file_from_a_killed_run_is_replaced_not_written_through(root: Path) -> None:
    script = build_apply_script(plan_for(root), engine_action="none", init=None)
    # Temp names are fixed per shell and file (.trust-agent.<pid>.<var>): pin the pid part, then plant
    # what a killed run could have left there, a symlink included.
    pinned = script.replace(".trust-agent.$$.$4", ".trust-agent.pinned.$4")
    assert pinned != script
    victim = root / "victim"
    victim.write_bytes(b"untouched\n")
    (root / "etc/docker/.trust-agent.pinned.t1").symlink_to(victim)
    (root / "etc/docker/certs.d/registry.test").mkdir()
    (root / "etc/docker/certs.d/registry.test/.trust-agent.pinned.t0").write_bytes(b"half-written")
    status, err = run(root, pinned)
    assert status == 0, err
    assert victim.read_bytes() == b"untouched\n"
    assert (root / "etc/docker/daemon.json").read_bytes() == b'{"debug": true, "insecure-registries": []}\n'
    assert (root / "etc/docker/certs.d/registry.test/trust-agent-storage-ca.crt").read_bytes() == b"CA\n"
    assert not list(root.rglob(".trust-agent.*"))


@pytest.mark.parametrize("points_at", ["nowhere", "victim"])
def test_a_link_where_a_file_goes_is_never_followed_nor_replaced(root: Path, points_at: str) -> None:
    """A link at one of the agent's paths was put there by someone: writing through it would write as
    root wherever it points (and replacing it would delete what they put). The host fails, untouched."""
    (root / "victim").write_text("precious\n")
    path = f"{CERTS}/registry.test/trust-agent-x.crt"
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True)
    target.symlink_to(root / points_at)
    plan = HostPlan(changes=(FileChange(path, "create", None, b"CA\n"),))
    status, err = run(root, build_apply_script(plan, engine_action="none", init=None))
    assert (
        status == EXIT_CHANGED and err.strip() == f"{path} is a symbolic link: trust-agent does not follow it"
    )
    assert target.is_symlink() and (root / "victim").read_text() == "precious\n"
    assert not (root / "nowhere").exists()


@pytest.mark.parametrize("name", ["daemon.json", 'it\'s $HOME `id` "x".json'])
def test_a_link_in_a_directory_others_can_write_in_stops_a_live_apply_naming_it(
    tmp_path: Path, name: str
) -> None:
    """On a live host, daemon.json's chain of links is walked again before it is written: a link in a
    directory another user can write in stops the apply, the directory and the hop named as they are."""
    docker = tmp_path / "etc/docker"
    docker.mkdir(parents=True)
    (tmp_path / "conf").mkdir()
    target = tmp_path / "conf/daemon.json"
    target.write_bytes(b"{}\n")
    link = docker / name
    link.symlink_to(target)
    docker.chmod(0o777)
    check = "\n".join(_link_chain_lines(str(link), str(target)))
    script = f'R=\'\'\nfail() {{ echo "$2" >&2; exit "$1"; }}\n{check}\necho walked\n'
    status, err = run(tmp_path, script)
    assert status == EXIT_CHANGED
    assert err.strip() == unsafe_hop_says(str(docker), str(link), str(link), str(target))


def test_the_link_chain_is_walked_only_where_daemon_json_is_written_and_not_in_a_root_tree(
    root: Path,
) -> None:
    target = "/srv/docker/daemon.json"
    (root / "srv/docker").mkdir(parents=True)
    (root / "srv/docker/daemon.json").write_bytes(b'{"debug": true}\n')
    change = FileChange(target, "update", b'{"debug": true}\n', b'{"debug": false}\n')
    cert = FileChange(f"{CERTS}/other.test/trust-agent-x.crt", "create", None, b"CA\n")

    def script(*changes: FileChange, link: str | None = DAEMON) -> str:
        plan = HostPlan(changes=changes)
        return build_apply_script(
            plan, engine_action="none", init=None, daemon_json_path=target, daemon_json_link=link
        )

    assert "ta_link_chain" not in script(cert)
    assert "ta_link_chain" not in script(change, cert, link=None)
    walked = script(change, cert)
    assert f"ta_link_chain {DAEMON} ||" in walked
    # A --root tree resolves no link (the planner writes none there): the tree is written as before.
    status, err = run(root, walked)
    assert status == 0, err
    assert (root / "srv/docker/daemon.json").read_bytes() == b'{"debug": false}\n'


def test_a_link_in_a_root_tree_is_refused_and_a_killed_runs_temp_files_go(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / CERTS.lstrip("/")).mkdir(parents=True, exist_ok=True)
    (root / CERTS.lstrip("/") / "registry.test").symlink_to(outside)
    plan = HostPlan(
        changes=(FileChange(f"{CERTS}/registry.test/trust-agent-x.crt", "create", None, b"CA\n"),)
    )
    status, err = run(root, build_apply_script(plan, engine_action="none", init=None))
    assert (
        status == EXIT_CHANGED
        and "is a symbolic link: in a --root tree, trust-agent does not follow it" in err
    )
    assert not list(outside.iterdir())
    (root / CERTS.lstrip("/") / "registry.test").unlink()
    (root / CERTS.lstrip("/") / "registry.test").mkdir()
    leftover = root / CERTS.lstrip("/") / "registry.test" / ".trust-agent.4242.t0"
    leftover.write_text("from a run killed mid-apply\n")
    notes = root / CERTS.lstrip("/") / "registry.test" / ".trust-agent.notes"
    notes.write_text("a person's\n")
    status, err = run(root, build_apply_script(plan, engine_action="none", init=None))
    assert status == 0, err
    assert not leftover.exists()
    assert notes.read_text() == "a person's\n"  # not a name a run gives its temp files


def test_a_root_tree_deletes_backs_up_and_locks_through_no_link(root: Path, tmp_path: Path) -> None:
    """Links were refused only where files are written: a delete through a linked certs.d/<registry>,
    the backup through a linked backup directory, and the lock through a linked var/ reached the build
    machine."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "trust-agent-storage-ca.crt").write_bytes(b"CA\n")
    certs = root / CERTS.lstrip("/")
    (certs / "registry.test").symlink_to(outside)
    delete = HostPlan(
        changes=(FileChange(f"{CERTS}/registry.test/trust-agent-storage-ca.crt", "delete", b"CA\n", None),)
    )
    status, err = run(root, build_apply_script(delete, engine_action="none", init=None))
    assert status == EXIT_CHANGED and "registry.test is a symbolic link: in a --root tree" in err
    assert (outside / "trust-agent-storage-ca.crt").read_bytes() == b"CA\n"
    (certs / "registry.test").unlink()

    (root / "var/lib/trust-agent").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/trust-agent/backup").symlink_to(outside)
    status, err = run(root, build_apply_script(plan_for(root), engine_action="none", init=None))
    assert status == EXIT_CHANGED and "backup is a symbolic link: in a --root tree" in err
    assert sorted(p.name for p in outside.iterdir()) == ["trust-agent-storage-ca.crt"]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    tree = tmp_path / "tree"
    (tree / "etc/docker").mkdir(parents=True)
    (tree / "var").symlink_to(elsewhere)
    status, err = run(tree, build_apply_script(plan_for(tree), engine_action="none", init=None))
    assert status == 1 and "var is a symbolic link: in a --root tree, trust-agent does not follow it" in err
    assert not list(elsewhere.iterdir())  # no lock, no directory made there


def test_a_missing_chain_of_directories_is_made_by_one_mkdir(tmp_path: Path) -> None:
    plan = HostPlan(
        changes=(FileChange(f"{CERTS}/registry.test/ca.crt", "create", None, b"CA\n"),),
        mkdirs=(CERTS, f"{CERTS}/registry.test"),
    )
    script = build_apply_script(plan, engine_action="none", init=None)
    assert script.count('\nmkd "$R"') == 1  # the deepest: mkd makes its parents too
    status, err = run(tmp_path, script)
    assert status == 0, err
    assert (tmp_path / "etc/docker/certs.d/registry.test/ca.crt").read_bytes() == b"CA\n"
    # Undone, the whole chain goes again.
    status, err = run(tmp_path, build_apply_script(inverse(plan), engine_action="none", init=None))
    assert status == 0, err
    assert not (tmp_path / "etc/docker/certs.d").exists()


def test_the_running_dockerds_flags_are_checked_only_before_a_new_daemon_json(root: Path) -> None:
    assert RUNNING_FLAG_CHECK in build_apply_script(plan_for(root), engine_action="reload", init="systemd")
    certs_only = HostPlan(changes=plan_for(root).changes[:1], mkdirs=plan_for(root).mkdirs)
    assert RUNNING_FLAG_CHECK not in build_apply_script(certs_only, engine_action="none", init="systemd")
    # In a --root tree the host's own dockerd is not the tree's: the check runs but reads nothing.
    status, err = run(root, build_apply_script(plan_for(root), engine_action="none", init=None))
    assert status == 0, err


def refusing(tmp_path_factory: pytest.TempPathFactory, path: str, says: str) -> str:
    """A PATH whose rm and mv fail with ``says`` when asked to remove or move ``path`` (its directory
    mounted read-only), as the real ones would, and work as usual otherwise."""
    bin_dir = tmp_path_factory.mktemp("bin")
    for command in ("rm", "mv"):
        (bin_dir / command).write_text(
            "#!/bin/sh\n"
            f'for a in "$@"; do case "$a" in *{path}) echo "{command}: cannot touch \'$a\': {says}" >&2; '
            "exit 1 ;; esac; done\n"
            f'exec /bin/{command} "$@"\n'
        )
        (bin_dir / command).chmod(0o755)
    return f"{bin_dir}:/usr/bin:/bin"


def a_ca_host(root: Path) -> DockerFacts:
    """``root`` as a CA rollout for registry.test leaves it: its storage CA file, daemon.json, the record."""
    facts = DockerFacts(daemon_json=(root / DAEMON.lstrip("/")).read_bytes())
    status, err = run(
        root,
        build_apply_script(plan_docker(ca_policy("registry.test"), facts), engine_action="none", init=None),
    )
    assert status == 0, err
    ca = f"{CERTS}/registry.test/trust-agent-storage-ca.crt"
    return DockerFacts(
        daemon_json=(root / DAEMON.lstrip("/")).read_bytes(),
        state=(root / STATE.lstrip("/")).read_bytes(),
        certs={"registry.test/trust-agent-storage-ca.crt": (root / ca.lstrip("/")).read_bytes()},
        cert_dirs=frozenset({"registry.test"}),
    )


def test_a_deletion_that_cannot_happen_stops_the_batch_before_any_file_is_replaced(
    root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """From a CA to skip-TLS, with certs.d read-only: the renames came first (daemon.json listed the
    registry as insecure, the backup taken), then the delete failed, and no roll-back followed."""
    facts = a_ca_host(root)
    plan = plan_docker(insecure_policy("registry.test"), facts)
    assert {c.action for c in plan.changes} >= {"delete", "update"}
    before, before_dirs = tree(root), dirs(root)
    path = refusing(tmp_path_factory, "trust-agent-storage-ca.crt", "Read-only file system")
    script = build_apply_script(plan, engine_action="none", init=None, backup_stamp="t9").encode()
    result = LocalTransport().run(f"PATH={path} sh -s -- {root}", stdin=script)
    err = result.stderr.decode()
    assert result.exit_status == 1, err
    assert err.strip().endswith(
        f"cannot delete {CERTS}/registry.test/trust-agent-storage-ca.crt (Read-only file system): "
        "nothing was changed"
    ), err
    assert b"@@ta t written" not in result.stdout
    assert tree(root) == before  # no backup either: nothing was changed
    assert dirs(root) - before_dirs <= {"var/lib/trust-agent/backup"}


def test_a_rename_failing_after_a_deletion_was_set_aside_puts_the_file_back(
    root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    facts = a_ca_host(root)
    before = tree(root)
    plan = plan_docker(insecure_policy("registry.test"), facts)
    path = failing_mv(tmp_path_factory, "daemon.json")
    script = build_apply_script(plan, engine_action="none", init=None).encode()
    result = LocalTransport().run(f"PATH={path} sh -s -- {root}", stdin=script)
    err = result.stderr.decode()
    assert result.exit_status == 1 and "cannot rename into /etc/docker/daemon.json" in err, err
    assert err.strip().endswith("nothing was changed (the files renamed before it were put back)"), err
    # The CA file set aside before the renames, the record renamed before daemon.json: both put back.
    assert tree(root) == before
    assert not list(root.rglob(".trust-agent.*"))


def test_a_backup_that_fails_part_way_is_removed_and_nothing_is_changed(
    root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A full disk under the backup directory left a 0-byte daemon.json.<stamp>, named like a real
    backup and counted among those kept: restoring "the newest backup" emptied daemon.json."""
    bin_dir = tmp_path_factory.mktemp("bin")
    # cp as a full disk leaves it: the file created, nothing in it, an error.
    (bin_dir / "cp").write_text(
        "#!/bin/sh\n"
        "for a; do last=$a; done\n"
        'case "$last" in */backup/*) : > "$last"; '
        "echo \"cp: error writing '$last': No space left on device\" >&2; exit 1 ;; esac\n"
        'exec /bin/cp "$@"\n'
    )
    (bin_dir / "cp").chmod(0o755)
    before = tree(root)
    script = build_apply_script(plan_for(root), engine_action="none", init=None, backup_stamp="t1").encode()
    result = LocalTransport().run(f"PATH={bin_dir}:/usr/bin:/bin sh -s -- {root}", stdin=script)
    err = result.stderr.decode()
    assert result.exit_status == 1
    assert err.strip().endswith(
        "cannot back up /etc/docker/daemon.json to /var/lib/trust-agent/backup/daemon.json.t1 "
        "(No space left on device): nothing was changed"
    ), err
    assert tree(root) == before
    assert not any((root / "var/lib/trust-agent/backup").iterdir())


def test_the_backup_is_copied_under_a_temp_name_and_renamed_whole_once_synced() -> None:
    """One ``cp`` to ``.trust-agent.<pid>.b0`` beside the backup, then one ``mv`` to its name: a copy cut
    short never bears the name a roll-back or a person restores daemon.json from."""
    script = build_apply_script(
        plan_for(Path("/")), engine_action="none", init=None, backup_stamp="t1"
    ).splitlines()
    backup, copy = f"{BACKUP}/daemon.json.t1", f"{BACKUP}/.trust-agent.$$.b0"
    copies = [n for n, line in enumerate(script) if "cp -p" in line and DAEMON in line]
    renames = [n for n, line in enumerate(script) if line.startswith('ta_e=$(mv -f "$ta_b"')]
    assert len(copies) == 1 and len(renames) == 1, script
    assert f'ta_b="$R"{copy};' in script[copies[0] - 1]
    copied = script[copies[0]].partition("||")[0]
    assert f'cp -p "$R"{DAEMON} "$ta_b"' in copied and backup not in copied
    assert f'mv -f "$ta_b" "$R"{backup}' in script[renames[0]]
    synced = script.index("sync $staged 2>/dev/null || true")
    first_rename_into_place = next(
        n for n, line in enumerate(script) if re.match(r'ta_e=\$\(mv -f "\$t\d', line)
    )
    assert copies[0] < synced < renames[0] < first_rename_into_place
    # The one process each: no other cp or mv touches the backup or its copy.
    assert sum(len(re.findall(rf'\b(?:cp|mv) [^|;]*(?:{BACKUP}|"\$ta_b")', line)) for line in script) == 2


def cut_short_on_backup(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH whose ``cp``, copying into the backup directory, writes the first 4 bytes of daemon.json
    there, then kills the apply's shell (SIGKILL, as a controller killed or its connection dropped
    leaves it)."""
    bin_dir = tmp_path_factory.mktemp("bin")
    (bin_dir / "cp").write_text(
        "#!/bin/sh\n"
        "for a; do src=${last:-}; last=$a; done\n"
        'case "$last" in */backup/*) head -c 4 "$src" > "$last"; kill -9 "$PPID"; exit 1 ;; esac\n'
        'exec /bin/cp "$@"\n'
    )
    (bin_dir / "cp").chmod(0o755)
    return f"{bin_dir}:/usr/bin:/bin"


def test_a_backup_cut_short_by_a_kill_is_never_named_a_backup_and_the_next_apply_removes_it(
    root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Killed during the backup's copy, the apply left ``daemon.json.<stamp>`` holding ``{"de``: a later
    roll-back or a person restoring "the newest backup" emptied daemon.json of all but that."""
    original = (root / DAEMON.lstrip("/")).read_bytes()
    before = tree(root)
    script = build_apply_script(plan_for(root), engine_action="none", init=None, backup_stamp="t1")
    assert run_on_path(root, script, cut_short_on_backup(tmp_path_factory)) != 0
    backups = root / BACKUP.lstrip("/")
    assert not list(backups.glob("daemon.json.*"))
    left = leftovers(root)
    copy = [name for name in left if name.startswith(BACKUP.lstrip("/"))]  # beside the staged files
    assert len(copy) == 1 and re.fullmatch(r"var/lib/trust-agent/backup/\.trust-agent\.[0-9]+\.b0", copy[0])
    assert {k: v for k, v in tree(root).items() if ".trust-agent." not in k} == before  # nothing changed

    gathered = gather_host(LocalTransport(), root=str(root))
    assert gathered.leftovers.files == tuple(sorted("/" + name for name in left))
    assert BACKUP in gathered.leftovers.directories
    # A plan that backs nothing up still removes it, from the directory the gather named.
    ca_only = HostPlan(changes=plan_for(root).changes[:1], mkdirs=plan_for(root).mkdirs)
    script = build_apply_script(
        ca_only, engine_action="none", init=None, leftover_dirs=gathered.leftovers.directories
    )
    assert run(root, script) == (0, "")
    assert not leftovers(root)
    daemon_only = HostPlan(changes=plan_for(root).changes[1:])
    status, err = run(
        root, build_apply_script(daemon_only, engine_action="none", init=None, backup_stamp="t2")
    )
    assert status == 0, err
    assert [p.name for p in backups.iterdir()] == ["daemon.json.t2"]
    assert (backups / "daemon.json.t2").read_bytes() == original
    assert stat.S_IMODE((backups / "daemon.json.t2").stat().st_mode) == 0o600  # cp -p: daemon.json's
    assert not leftovers(root)


def test_a_dead_runs_backup_copy_or_one_of_the_same_pid_is_removed_before_the_copy(root: Path) -> None:
    """The backup directory is cleaned wherever the apply copies into it, gathered leftovers or not: a
    stale ``.b0`` (a recycled pid's) is never copied over nor left behind."""
    backups = root / BACKUP.lstrip("/")
    backups.mkdir(parents=True)
    (backups / ".trust-agent.1.b0").write_bytes(b"{")
    (backups / ".trust-agent.notes").write_bytes(b"a person's\n")
    status, err = run(
        root, build_apply_script(plan_for(root), engine_action="none", init=None, backup_stamp="t1")
    )
    assert status == 0, err
    assert sorted(p.name for p in backups.iterdir()) == [".trust-agent.notes", "daemon.json.t1"]


def test_the_state_directory_is_made_0711_and_an_existing_one_keeps_its_mode(tmp_path: Path) -> None:
    """Like the per-host daemon's (agent.daemon.files.STATE_DIR_MODE): a file there may be read by its
    name (status.json), the directory not listed by others."""
    plan = HostPlan(
        changes=(FileChange(f"{CERTS}/r/ca.crt", "create", None, b"CA\n"),), mkdirs=(f"{CERTS}/r",)
    )
    fresh, kept = tmp_path / "fresh", tmp_path / "kept"
    fresh.mkdir()
    (kept / "var/lib/trust-agent").mkdir(parents=True)
    (kept / "var/lib/trust-agent").chmod(0o750)
    for root in (fresh, kept):
        status, err = run(root, build_apply_script(plan, engine_action="none", init=None))
        assert status == 0, err
    assert stat.S_IMODE((fresh / "var/lib/trust-agent").stat().st_mode) == 0o711
    assert stat.S_IMODE((fresh / "var/lib").stat().st_mode) == 0o755
    assert stat.S_IMODE((kept / "var/lib/trust-agent").stat().st_mode) == 0o750


OTHER_CA = f"{CERTS}/other.test/ca.crt"
RECORD = b'{"claims": ["a"]}\n'


def a_plan_with_every_kind_of_change() -> HostPlan:
    """Files made, replaced and deleted, and the agent's record written twice (as a plan that adds and
    drops claims writes it)."""
    return HostPlan(
        changes=(
            FileChange(STATE, "update", RECORD, b'{"claims": ["a", "b"]}\n', 0o644, True),
            FileChange(f"{CERTS}/registry.test/trust-agent-storage-ca.crt", "create", None, b"CA\n"),
            FileChange(
                DAEMON, "update", b'{"debug": true}\n', b'{"debug": true, "insecure-registries": []}\n'
            ),
            FileChange(OTHER_CA, "delete", b"foreign\n", None),
            FileChange(STATE, "update", b'{"claims": ["a", "b"]}\n', b'{"claims": ["b"]}\n', 0o644, True),
        ),
        mkdirs=(f"{CERTS}/registry.test",),
    )


@pytest.fixture
def recorded(root: Path) -> Path:
    """``root`` with the agent's record of an earlier run."""
    (root / STATE.lstrip("/")).parent.mkdir(parents=True)
    (root / STATE.lstrip("/")).write_bytes(RECORD)
    return root


def roll_back_script(plan: HostPlan) -> str:
    return build_apply_script(inverse(plan), engine_action="none", init=None, rolling_back=True)


def test_a_roll_back_puts_back_a_host_nothing_changed_since_the_apply(recorded: Path) -> None:
    root = recorded
    before = tree(root)
    plan = a_plan_with_every_kind_of_change()
    assert run(root, build_apply_script(plan, engine_action="none", init=None))[0] == 0
    assert json.loads((root / STATE.lstrip("/")).read_bytes()) == {"claims": ["b"]}
    status, err = run(root, roll_back_script(plan))
    assert status == 0, err
    assert {k: v for k, v in tree(root).items() if "/backup/" not in k} == before
    # What is put back is what dockerd ran before the apply: no check of its command line refuses it.
    assert RUNNING_FLAG_CHECK not in roll_back_script(plan)


@pytest.mark.parametrize(
    ("path", "content"),
    [
        (f"{CERTS}/registry.test/trust-agent-storage-ca.crt", b"another run's CA\n"),
        (DAEMON, b'{"insecure-registries": ["registry.test"]}\n'),
        (STATE, b'{"claims": ["registry.test"]}\n'),  # its last content, not the first the apply wrote
        (STATE, None),
        (OTHER_CA, b"foreign again\n"),  # deleted by the apply, made again since
    ],
    ids=[
        "ca-file-rewritten",
        "daemon-json-rewritten",
        "record-rewritten",
        "record-removed",
        "deleted-file-back",
    ],
)
def test_a_roll_back_leaves_a_host_another_run_changed_since_the_apply_as_it_is(
    recorded: Path, path: str, content: bytes | None
) -> None:
    """The host's lock lasts one script: another run that wrote between an apply and its roll-back kept
    its change (its CA files, its record of the insecure-registries entries it added)."""
    root = recorded
    plan = a_plan_with_every_kind_of_change()
    assert run(root, build_apply_script(plan, engine_action="none", init=None))[0] == 0
    target = root / path.lstrip("/")
    if content is None:
        target.unlink()
    else:
        target.write_bytes(content)
    changed = tree(root)
    status, err = run(root, roll_back_script(plan))
    assert status == EXIT_CHANGED
    assert err.strip() == (
        f"{path} no longer holds what this run's apply wrote: another run (or a person) changed the host since"
    )
    assert tree(root) == changed
    assert not list(root.rglob(".trust-agent.*"))


def test_two_applies_that_made_the_record_and_then_rewrote_it_are_undone_to_no_record(root: Path) -> None:
    """A host without the agent's record applied twice in one run (planned again with dockerd's live
    config): the record made, then rewritten. Undone, the host has no record again; the deletion set
    aside before the renames must not let the first version come back."""
    from agent.runtimes.docker import facts_after, followed_by

    before = tree(root)
    facts = DockerFacts(daemon_json=(root / DAEMON.lstrip("/")).read_bytes())
    first = plan_docker(insecure_policy("registry.test"), facts)
    assert run(root, build_apply_script(first, engine_action="none", init=None))[0] == 0
    then = plan_docker(SKIP_OTHER, facts_after(first, facts))
    assert run(root, build_apply_script(then, engine_action="none", init=None))[0] == 0
    both = followed_by(first, then)
    assert next(c.action for c in both.changes if c.path == STATE) == "create"
    undo = inverse(both)
    assert [c.action for c in undo.changes if c.path == STATE] == ["delete"]
    assert run(root, roll_back_script(both))[0] == 0
    assert {k: v for k, v in tree(root).items() if "/backup/" not in k} == {
        k: v for k, v in before.items() if "/backup/" not in k
    }


@pytest.mark.parametrize("old_mode", [0o666, 0o664, 0o600, 0o755])
def test_a_ca_file_is_rewritten_root_s_0644_whatever_owner_and_mode_it_had(root: Path, old_mode: int) -> None:
    """A CA file another user could write (0666, or theirs) kept that mode and owner through every
    update, as daemon.json keeps its own: anyone could then replace a CA dockerd trusts."""
    ca = root / "etc/docker/certs.d/registry.test/trust-agent-storage-ca.crt"
    ca.parent.mkdir(parents=True)
    ca.write_bytes(b"old CA\n")
    ca.chmod(old_mode)
    if os.getuid() == 0:
        os.chown(ca, 65534, 65534)  # nobody's, as a person left it
    plan = HostPlan(
        changes=(
            FileChange(str(ca).removeprefix(str(root)), "update", b"old CA\n", b"new CA\n"),
            FileChange(DAEMON, "update", b'{"debug": true}\n', b'{"debug": false}\n'),
        )
    )
    status, err = run(root, build_apply_script(plan, engine_action="none", init=None, backup_stamp="t1"))
    assert status == 0, err
    assert ca.read_bytes() == b"new CA\n"
    assert stat.S_IMODE(ca.stat().st_mode) == 0o644
    assert (ca.stat().st_uid, ca.stat().st_gid) == (os.getuid(), os.getgid())
    daemon = root / "etc/docker/daemon.json"
    assert stat.S_IMODE(daemon.stat().st_mode) == 0o600  # daemon.json keeps its owner's mode


def test_only_the_agents_ca_files_are_staged_fresh() -> None:
    plan = HostPlan(
        changes=(
            FileChange(f"{CERTS}/r/trust-agent-storage-ca.crt", "update", b"a", b"b"),
            FileChange(f"{CERTS}/r/trust-agent-notes", "update", b"a", b"b"),
            FileChange(DAEMON, "update", b"{}", b"{}\n"),
            FileChange(STATE, "update", b"{}", b"{}\n", internal=True),
        )
    )
    script = build_apply_script(plan, engine_action="none", init=None, backup_stamp="t1")
    stages = [line for line in script.splitlines() if line.startswith('stage "$R"')]
    assert [line.endswith(" fresh") for line in stages] == [True, False, False, False]


# --- what a run stopped part way leaves ----------------------------------------------------------------


def killing(tmp_path_factory: pytest.TempPathFactory, command: str, target: str) -> str:
    """A PATH whose ``command`` (mv or rm) kills the apply's shell (SIGKILL, as a controller killed or its
    connection dropped leaves it) the first time its arguments end with ``target``: a hard stop at a
    chosen point of the script."""
    bin_dir = tmp_path_factory.mktemp("bin")
    (bin_dir / command).write_text(
        f'#!/bin/sh\ncase "$*" in *{target}) kill -9 "$PPID"; exit 1 ;; esac\nexec /bin/{command} "$@"\n'
    )
    (bin_dir / command).chmod(0o755)
    return f"{bin_dir}:/usr/bin:/bin"


def run_on_path(root: Path, script: str, path: str) -> int:
    return LocalTransport().run(f"PATH={path} sh -s -- {root}", stdin=script.encode()).exit_status


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".trust-agent.[0-9]*"))


def test_a_roll_back_killed_before_it_restored_daemon_json_keeps_the_agents_claim(
    root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The roll-back of a skip-TLS apply sets the record it deletes aside, then renames daemon.json back:
    killed in between, the record was gone with the entry still in daemon.json, which no later run
    removed (TLS unchecked for good). The next apply now puts the record back first."""
    facts = DockerFacts(daemon_json=(root / DAEMON.lstrip("/")).read_bytes())
    forward = plan_docker(insecure_policy("registry.test"), facts)
    assert run(root, build_apply_script(forward, engine_action="none", init=None))[0] == 0
    record = (root / STATE.lstrip("/")).read_bytes()
    undo = build_apply_script(inverse(forward), engine_action="none", init=None, rolling_back=True)
    assert run_on_path(root, undo, killing(tmp_path_factory, "mv", DAEMON)) != 0
    assert not (root / STATE.lstrip("/")).exists()  # set aside, never removed
    assert "registry.test" in json.loads((root / DAEMON.lstrip("/")).read_bytes())["insecure-registries"]
    assert leftovers(root)

    again = gather(LocalTransport(), root=str(root))
    assert again.state == record  # as the next apply leaves it: put back
    plan = plan_docker(ca_policy("registry.test"), again)
    status, err = run(root, build_apply_script(plan, engine_action="none", init=None))
    assert status == 0, err
    assert json.loads((root / DAEMON.lstrip("/")).read_bytes())["insecure-registries"] == []
    assert json.loads((root / STATE.lstrip("/")).read_bytes())["insecure_registries"] == []
    assert not leftovers(root)


def test_a_roll_back_killed_before_removing_what_it_set_aside_is_finished_by_the_next_apply(
    root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Every file the CA apply created, set aside by its roll-back, then the kill: the CA file's copy is
    removed (the plan writes what the policy asks), the record's put back."""
    forward = plan_docker(ca_policy("registry.test"), DockerFacts(daemon_json=b'{"debug": true}\n'))
    assert run(root, build_apply_script(forward, engine_action="none", init=None))[0] == 0
    record = (root / STATE.lstrip("/")).read_bytes()
    undo = build_apply_script(inverse(forward), engine_action="none", init=None, rolling_back=True)
    assert run_on_path(root, undo, killing(tmp_path_factory, "rm", "[0-9]")) != 0
    assert [Path(p).name.split(".")[-1] for p in leftovers(root)] == ["a0", "a1"]  # put aside: a<n>

    gathered = gather_host(LocalTransport(), root=str(root))
    assert gathered.facts.state == record
    assert "registry.test/trust-agent-storage-ca.crt" not in gathered.facts.certs
    plan = plan_docker(ca_policy("registry.test"), gathered.facts)
    assert [c.path for c in plan.changes] == [f"{CERTS}/registry.test/trust-agent-storage-ca.crt"]
    script = build_apply_script(
        plan, engine_action="none", init=None, leftover_dirs=gathered.leftovers.directories
    )
    status, err = run(root, script)
    assert status == 0, err
    assert (root / STATE.lstrip("/")).read_bytes() == record
    assert not leftovers(root)


def test_a_dead_runs_files_go_from_directories_the_plan_does_not_write_and_a_persons_stay(
    root: Path,
) -> None:
    """Only directories the plan wrote in were cleaned: a host with nothing else to change kept them."""
    dead = [
        "etc/docker/.trust-agent.4242.t1",  # daemon.json staged
        "etc/docker/.trust-agent.4242.a3",  # daemon.json set aside
        "etc/docker/certs.d/other.test/.trust-agent.4242.t0",
        "var/lib/trust-agent/.trust-agent.4242.t2",  # a record staged, never renamed: not put back
    ]
    kept = ["etc/docker/.trust-agent.notes", "etc/docker/certs.d/other.test/.trust-agent.4242.t0.txt"]
    for name in [*dead, *kept]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"left\n")
    directories = sorted({"/" + str(Path(name).parent) for name in dead})
    status, err = run(
        root, build_apply_script(HostPlan(), engine_action="none", init=None, leftover_dirs=directories)
    )
    assert status == 0, err
    assert leftovers(root) == sorted(kept[1:])
    assert all((root / name).read_bytes() == b"left\n" for name in kept)
    assert not (root / STATE.lstrip("/")).exists()


def test_a_put_aside_record_is_not_put_back_over_a_record(root: Path) -> None:
    """A record there is newer than any set aside (a later run wrote it): the put-aside one goes."""
    state_dir = root / "var/lib/trust-agent"
    state_dir.mkdir(parents=True)
    (state_dir / "docker-state.json").write_bytes(b"current\n")
    (state_dir / ".trust-agent.4242.a1").write_bytes(b"older\n")
    status, err = run(
        root,
        build_apply_script(
            HostPlan(), engine_action="none", init=None, leftover_dirs=["/var/lib/trust-agent"]
        ),
    )
    assert status == 0, err
    assert (state_dir / "docker-state.json").read_bytes() == b"current\n"
    assert not leftovers(root)


def test_a_linked_certs_d_directory_is_walked_again_before_a_live_apply_writes_through_it(
    tmp_path: Path,
) -> None:
    """The gather found certs.d/<registry> a link with a safe chain; by the apply, the directory it is
    in has become writable by others: nothing is written, the directory and the link named."""
    certs = tmp_path / "etc/docker/certs.d"
    certs.mkdir(parents=True)
    (tmp_path / "srv/regdir").mkdir(parents=True)
    link = certs / "registry.test"
    link.symlink_to(tmp_path / "srv/regdir")
    certs.chmod(0o777)
    check = "\n".join(_directory_link_lines([str(link)], with_function=True))
    status, err = run(tmp_path, f'R=\'\'\nfail() {{ echo "$2" >&2; exit "$1"; }}\n{check}\necho walked\n')
    assert status == EXIT_CHANGED
    assert err.strip() == (
        f"{certs} is writable by a user other than root, and the CA files dockerd trusts are written "
        f"through it (the link {link} -> {tmp_path / 'srv/regdir'}): make {certs} root's alone (chown "
        "root, chmod go-w); nothing written"
    )


def test_a_linked_certs_d_directory_is_walked_only_where_the_plan_writes_in_it(root: Path) -> None:
    linked = f"{CERTS}/registry.test"
    cert = FileChange(f"{linked}/trust-agent-x.crt", "create", None, b"CA\n")
    other = FileChange(f"{CERTS}/other.test/trust-agent-x.crt", "create", None, b"CA\n")

    def script(*changes: FileChange) -> str:
        return build_apply_script(
            HostPlan(changes=changes), engine_action="none", init=None, directory_links=[linked]
        )

    assert "ta_link_chain" not in script(other)
    walked = script(cert, other)
    assert walked.count("ta_link_chain() {") == 1 and f"ta_link_chain {linked} ||" in walked
    # A --root tree resolves no link: the check is for a live host only.
    (root / "etc/docker/certs.d/registry.test").mkdir()
    status, err = run(root, walked)
    assert status == 0, err
    assert (root / "etc/docker/certs.d/registry.test/trust-agent-x.crt").read_bytes() == b"CA\n"


def test_a_certs_d_link_to_nothing_stops_a_live_apply_naming_its_missing_target(tmp_path: Path) -> None:
    """A link made dangling after the gather: the apply said "writable by a user other than root ...
    chmod go-w", from the link's own mode 0777, which no chmod changes."""
    certs = tmp_path / "etc/docker/certs.d"
    certs.mkdir(parents=True)
    link = certs / "registry.test:443"
    link.symlink_to(tmp_path / "srv/certs/registry.test")
    check = "\n".join(_safe_directories_lines([str(link)]))
    script = f"R=''\nta_nl='\n'\nfail() {{ echo \"$2\" >&2; exit \"$1\"; }}\n{check}\necho checked\n"
    status, err = run(tmp_path, script)
    assert status == EXIT_CHANGED
    assert err.strip() == (
        f"{link} is a link to {tmp_path}/srv/certs/registry.test, which does not exist: create the target "
        "directory or remove the link"
    )


def test_a_failed_write_asks_its_filesystem_why_and_a_write_that_succeeds_asks_nothing() -> None:
    """dash's printf says "I/O error" of a full disk: the failure named no cause. Its filesystem is
    asked only on the failure's side of each write (a process more on every write otherwise)."""
    script = build_apply_script(plan_for(Path("/")), engine_action="reload", init="systemd")
    writes = [line.strip() for line in script.splitlines() if line.strip().startswith("printf '%s' \"$6\"")]
    assert len(writes) == 2, writes
    for line in writes:
        written, _, failed = line.partition(" || ")
        assert "unwritten" not in written and 'fail 1 "cannot write into ${dest%/*}$(unwritten ' in failed
    assert ": no space left on device (" in script


def test_a_link_inside_a_root_tree_stops_the_apply_saying_what_to_do_instead(tmp_path: Path) -> None:
    """It said only that the link was not followed."""
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "data/docker").mkdir(parents=True)
    (tree / "etc/docker").symlink_to("../data/docker")
    (tree / "data/docker/daemon.json").write_bytes(b'{"debug": true}\n')
    status, err = run(tree, build_apply_script(plan_for(tree), engine_action="none", init=None))
    assert status == EXIT_CHANGED
    assert err.strip() == tree_link_says(f"{tree}/etc/docker", "../data/docker")
    assert "replace the link with the directory it leads to" in err and "(nothing written)" in err
    assert [p.name for p in (tree / "data/docker").iterdir()] == ["daemon.json"]
    assert (tree / "data/docker/daemon.json").read_bytes() == b'{"debug": true}\n'

    fresh = tmp_path / "fresh"
    (fresh / "var").mkdir(parents=True)
    (fresh / "data").mkdir()
    (fresh / "var/lib").symlink_to("../data")
    status, err = run(fresh, build_apply_script(plan_for(fresh), engine_action="none", init=None))
    assert status == 1 and err.strip() == tree_link_says(f"{fresh}/var/lib", "../data")
    assert not list((fresh / "data").iterdir())  # checked before the lock is made
