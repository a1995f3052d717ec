"""Undo records: an applied plan put back later from its record, on a directory tree (the --root mode)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.engine.apply_script import build_apply_script, daemon_json_backup, inverse
from agent.engine.undo import UndoRefused, parse_read, read_script, undo_plan, undo_record
from agent.hosts.local import LocalTransport
from agent.runtimes.plan import FileChange, HostPlan

CERTS = "/etc/docker/certs.d"
DAEMON = "/etc/docker/daemon.json"
STATE = "/var/lib/trust-agent/docker-state.json"
OLD_DAEMON = b'{"proxies": {"http-proxy": "http://user:s3cret@proxy.test:3128"}}\n'
NEW_DAEMON = (
    b'{"proxies": {"http-proxy": "http://user:s3cret@proxy.test:3128"}, "insecure-registries": ["r.test"]}\n'
)


def sh(root: Path, script: str) -> tuple[int, str, str]:
    result = LocalTransport().run(f"sh -s -- {root}", stdin=script.encode())
    return result.exit_status, result.stdout.decode(), result.stderr.decode()


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "trust-agent/lock" not in str(p) and "trust-agent/backup" not in str(p)
    }


def dirs(root: Path) -> set[str]:
    """Directories outside the agent's own (/var/lib/trust-agent, made for the lock)."""
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_dir() and not str(p.relative_to(root)).startswith("var")
    }


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "etc/docker").mkdir(parents=True)
    (tmp_path / "etc/docker/daemon.json").write_bytes(OLD_DAEMON)
    return tmp_path


def the_plan() -> HostPlan:
    return HostPlan(
        changes=(
            FileChange(f"{CERTS}/r.test/trust-agent-registry-ca.crt", "create", None, b"CA\n"),
            FileChange(DAEMON, "update", OLD_DAEMON, NEW_DAEMON),
            FileChange(STATE, "create", None, b'{"files": []}\n', internal=True),
        ),
        mkdirs=(CERTS, f"{CERTS}/r.test"),
        engine_action="reload",
    )


def apply(root: Path, plan: HostPlan, stamp: str = "t1") -> dict[str, object]:
    status, _, err = sh(root, build_apply_script(plan, engine_action="none", init=None, backup_stamp=stamp))
    assert status == 0, err
    return undo_record(
        plan,
        engine_action=plan.engine_action,
        init="systemd",
        daemon_json_path=DAEMON,
        daemon_json_backup=daemon_json_backup(stamp),
    )


def undo(root: Path, record: dict[str, object]) -> tuple[int, str]:
    status, out, err = sh(root, read_script(record))
    assert status == 0, err
    plan = undo_plan(record, parse_read(out))
    status, _, err = sh(
        root, build_apply_script(plan, engine_action="none", init=None, backup_stamp="t1-undo")
    )
    return status, err


def test_a_record_puts_every_file_and_directory_back_and_carries_no_daemon_json(root: Path) -> None:
    before, before_dirs = files(root), dirs(root)
    record = apply(root, the_plan())
    assert files(root) != before
    text = json.dumps(record)
    assert "s3cret" not in text and "proxies" not in text  # daemon.json's content stays on the host
    assert json.loads(text) == record  # plain JSON, as Ansible registers it
    status, err = undo(root, record)
    assert status == 0, err
    assert files(root) == before and dirs(root) == before_dirs


def test_a_file_changed_since_the_apply_is_left_alone_and_nothing_is_restored(root: Path) -> None:
    record = apply(root, the_plan())
    (root / "etc/docker/daemon.json").write_bytes(b'{"edited": "by hand"}\n')
    after = files(root)
    with pytest.raises(UndoRefused, match=r"daemon\.json changed since it was written"):
        undo(root, record)
    assert files(root) == after


def test_a_missing_backup_refuses_the_undo(root: Path) -> None:
    record = apply(root, the_plan())
    (root / daemon_json_backup("t1").lstrip("/")).unlink()
    with pytest.raises(UndoRefused, match=r"backup .* is gone"):
        undo(root, record)


def test_a_backup_cut_short_is_never_restored_over_daemon_json(root: Path) -> None:
    """A backup left empty by a full disk passed for daemon.json's previous content: restoring it
    emptied daemon.json, and dockerd refused every reload and start after."""
    record = apply(root, the_plan())
    (root / daemon_json_backup("t1").lstrip("/")).write_bytes(b"")
    after = files(root)
    with pytest.raises(
        UndoRefused, match=r"backup .*daemon\.json\.t1 \(0 bytes\) does not hold the .*daemon\.json"
    ):
        undo(root, record)
    assert files(root) == after


def test_records_of_another_version_or_with_unknown_actions_are_refused() -> None:
    record = undo_record(
        the_plan(), engine_action="reload", init=None, daemon_json_path=DAEMON, daemon_json_backup="/b"
    )
    current = {c.path: c.after for c in the_plan().changes} | {"/b": OLD_DAEMON}
    assert undo_plan(record, current).changes  # the record as made is usable
    with pytest.raises(UndoRefused, match="version"):
        undo_plan({**record, "version": 99}, current)
    for garbage in (
        {},
        {"version": 1, "engine_action": "reload"},
        {**record, "changes": [{"action": "create"}]},
    ):
        with pytest.raises(UndoRefused):
            read_script(garbage)
    with pytest.raises(UndoRefused, match="engine action"):
        undo_plan({**record, "engine_action": "reboot"}, current)
    broken = {**record, "changes": [{**record["changes"][0], "action": "chmod"}]}
    with pytest.raises(UndoRefused, match="unknown action"):
        undo_plan(broken, current)


contents = st.binary(max_size=64)
actions = st.sampled_from(["create", "update", "delete"])


@st.composite
def plans(draw: st.DrawFn) -> HostPlan:
    changes = []
    for index, action in enumerate(draw(st.lists(actions, min_size=1, max_size=4))):
        path = DAEMON if index == 0 else f"{CERTS}/r{index}.test/trust-agent-ca.crt"
        before = None if action == "create" else draw(contents)
        after = None if action == "delete" else draw(contents)
        changes.append(FileChange(path, action, before, after, draw(st.sampled_from([0o644, 0o600]))))
    return HostPlan(changes=tuple(changes), engine_action=draw(st.sampled_from(["none", "reload"])))


@settings(max_examples=200)
@given(plans())
def test_the_undo_of_a_record_is_the_inverse_of_the_plan(plan: HostPlan) -> None:
    record = undo_record(
        plan, engine_action=plan.engine_action, init=None, daemon_json_path=DAEMON, daemon_json_backup="/bk"
    )
    current: dict[str, bytes | None] = {c.path: c.after for c in plan.changes}
    daemon = plan.changes[0]
    current["/bk"] = daemon.before  # the apply's backup holds daemon.json as it was
    # daemon.json's previous content is named by its backup, never carried
    assert ("before" in record["changes"][0]) == (daemon.before is None)
    assert undo_plan(record, current) == inverse(plan)


def test_a_record_written_twice_is_put_back_through_both_steps(root: Path) -> None:
    """The agent's record, written first claiming old and new entries, last as it ends: the undo writes
    the union back first and the previous record last, and checks only the last write on the host."""
    old_state = b'{"insecure_registries": ["a.test"]}\n'
    both = b'{"insecure_registries": ["a.test", "b.test"]}\n'
    new_state = b'{"insecure_registries": ["b.test"]}\n'
    (root / STATE.lstrip("/")).parent.mkdir(parents=True)
    (root / STATE.lstrip("/")).write_bytes(old_state)
    plan = HostPlan(
        changes=(
            FileChange(STATE, "update", old_state, both, internal=True),
            FileChange(DAEMON, "update", OLD_DAEMON, NEW_DAEMON),
            FileChange(STATE, "update", both, new_state, internal=True),
        ),
        engine_action="reload",
    )
    before = files(root)
    record = apply(root, plan)
    assert (root / STATE.lstrip("/")).read_bytes() == new_state
    status, out, err = sh(root, read_script(record))
    assert status == 0, err
    steps = [c for c in undo_plan(record, parse_read(out)).changes if c.path == STATE]
    assert [(c.before, c.after) for c in steps] == [(new_state, both), (both, old_state)]
    status, err = undo(root, record)
    assert status == 0, err
    assert files(root) == before
    # A record changed since it was written is left alone: its last write is what is checked.
    apply(root, plan, stamp="t2")
    (root / STATE.lstrip("/")).write_bytes(b'{"insecure_registries": ["c.test"]}\n')
    status, out, _ = sh(root, read_script(record))
    with pytest.raises(UndoRefused, match=r"docker-state\.json changed since it was written"):
        undo_plan(record, parse_read(out))
