# Apache-2.0 (see the trust-agent source)
"""Action plugin for ``trustagent.docker.registry_trust``: trust-agent's engine, over Ansible's connection.

Runs on the controller, where trust-agent is installed in the same Python as ansible-core. Per host:
the policy from the source (``agent.inputs.resolve_policy``, as the CLI), the facts from trust-agent's
gather script (POSIX sh, one round trip), the plan from ``agent.runtimes.docker.plan_docker``, and in
normal mode trust-agent's apply script (atomic writes under the host lock, daemon.json validated and
backed up). The files are therefore the ones ``trust-agent rollout`` writes, byte for byte. dockerd's
reload or restart is left to the role's handlers: the result's ``engine_action`` says which. The
result's ``undo`` lets ``registry_trust_verify`` put the previous files back when dockerd does not take
the change (``agent.engine.undo``).
"""

from __future__ import annotations

import os
from typing import Any

from ansible.errors import AnsibleActionFail, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes
from ansible.plugins.action import ActionBase
from ansible_collections.trustagent.docker.plugins.plugin_utils.wording import (
    ansible_warnings,
    ansible_wording,
)

try:
    from ansible_collections.trustagent.docker.plugins.plugin_utils.planning import (
        blocked_result,
        engine_down,
        insecure_once_applied,
        not_root,
        plan_host,
        refusals,
        unit_warnings,
    )

    from agent.engine.apply_script import (
        build_apply_script,
        daemon_json_backup,
        new_backup_stamp,
        reload_stamp,
    )
    from agent.engine.gather import gather_host
    from agent.engine.reconcile import script_error
    from agent.engine.undo import undo_record
    from agent.engine.unit_log import START_CURSOR
    from agent.engine.verify import read_live_info
    from agent.errors import InputError, TrustAgentError
    from agent.hosts.base import CommandResult, Transport
    from agent.inputs import PolicyInputs, resolve_policy
    from agent.runtimes.plan import HostPlan

    IMPORT_ERROR: str | None = None
except ImportError as exc:  # reported per task, with what to install
    IMPORT_ERROR = str(exc)
    Transport = object  # type: ignore[assignment,misc]

ARGUMENT_SPEC: dict[str, Any] = {
    "source": {"type": "str", "required": True},
    "registries": {"type": "list", "elements": "str", "default": []},
    "storage_ca": {"type": "list", "elements": "path", "default": []},
    "registry_ca": {"type": "list", "elements": "path", "default": []},
    "allow_expired": {"type": "bool", "default": False},
    "no_storage_ca": {"type": "bool", "default": False},
    "no_registry_ca": {"type": "bool", "default": False},
    "env_overrides": {"type": "bool", "default": False},
    "source_ca": {"type": "path"},
    "restart_policy": {
        "type": "str",
        "default": "auto",
        "choices": ["auto", "reload", "restart", "never"],
    },
    "allow_restart": {"type": "bool", "default": False},
}


class AnsibleConnectionTransport(Transport):  # type: ignore[misc,valid-type]
    """trust-agent's ``Transport`` over the task's Ansible connection (ssh, local, …), with become."""

    def __init__(self, action: ActionBase, name: str) -> None:
        self._action = action
        self.name = name

    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        result = self._action._low_level_execute_command(
            command, sudoable=True, in_data=stdin or None, encoding_errors="surrogate_or_strict"
        )
        return CommandResult(
            exit_status=int(result.get("rc", 1)),
            stdout=to_bytes(result.get("stdout", ""), errors="surrogate_or_strict"),
            stderr=to_bytes(result.get("stderr", ""), errors="surrogate_or_strict"),
        )

    def docker_api(self, timeout: float = 30.0) -> Any:
        raise NotImplementedError("the Ansible transport does not tunnel the docker API")


ROLE = "trustagent.docker.registry_trust"


class TrustAgentAction(ActionBase):
    """What every action of this collection does first: check that trust-agent is importable in the
    controller's Python, validate the task's arguments, and reach the host through the task's
    connection."""

    TRANSFERS_FILES = False
    _requires_connection = True
    NAME = "trustagent.docker.registry_trust"
    SPEC: dict[str, Any] = ARGUMENT_SPEC

    def _begin(self, tmp: Any, task_vars: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        if IMPORT_ERROR is not None:
            raise AnsibleActionFail(
                f"{self.NAME} needs trust-agent installed in the controller's Python "
                f"(the one running ansible-core): {IMPORT_ERROR}"
            )
        _, args = self.validate_argument_spec(argument_spec=self.SPEC)
        return result, args

    def _host(self, task_vars: dict[str, Any] | None) -> AnsibleConnectionTransport:
        return AnsibleConnectionTransport(self, str((task_vars or {}).get("inventory_hostname", "")))

    def _clean_leftovers(self, transport: Any, facts: Any, leftovers: Any) -> None:
        """On a host with nothing else to change: remove what a run stopped part way left (and put the
        agent's record back), under the host's lock, as an apply with no file to write does."""
        script = build_apply_script(
            HostPlan(),
            engine_action="none",
            init=facts.init,
            daemon_json_path=facts.daemon_json_file,
            backup_stamp=new_backup_stamp(),
            leftover_dirs=leftovers.directories,
        )
        cleaned = transport.run_script(script, "")
        if not cleaned.ok:
            detail = script_error(cleaned.stderr) or f"exit {cleaned.exit_status}"
            raise AnsibleActionFail(self._say(f"removing what a stopped run left failed: {detail}"))

    def _in_role(self) -> bool:
        """Whether the task is the role's: its users set ``trustagent_*`` variables, not the options."""
        role = getattr(self._task, "_role", None)
        return role is not None and role.get_name() == ROLE

    def _say(self, text: str) -> str:
        """trust-agent's message in the task's terms (option or role variable, not CLI flag)."""
        return ansible_wording(text, role=self._in_role())


class ActionModule(TrustAgentAction):
    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result, args = self._begin(tmp, task_vars)
        source_ca = args["source_ca"]
        try:
            _, policy = resolve_policy(
                PolicyInputs(
                    source=self._local_path("--source", args["source"]),
                    # null in a playbook means "not given", as an option left out does.
                    registries=tuple(str(r) for r in args["registries"] or ()),
                    storage_ca=tuple(self._local_path("--storage-ca", p) for p in args["storage_ca"] or ()),
                    registry_ca=tuple(
                        self._local_path("--registry-ca", p) for p in args["registry_ca"] or ()
                    ),
                    allow_expired=bool(args["allow_expired"]),
                    env_overrides=bool(args["env_overrides"]),
                    source_ca=self._local_path("--source-ca", source_ca) if source_ca else None,
                    no_storage_ca=bool(args["no_storage_ca"]),
                    no_registry_ca=bool(args["no_registry_ca"]),
                )
            )
        except InputError as exc:
            raise AnsibleActionFail(self._say(f"bad input, nothing touched: {exc}")) from None

        transport = self._host(task_vars)
        try:
            gathered = gather_host(transport)
        except TrustAgentError as exc:
            raise AnsibleActionFail(self._say(str(exc))) from None
        facts, info, leftovers = gathered.facts, gathered.info, gathered.leftovers
        login = not_root(
            facts.login_uid,
            become=bool(self._play_context.become),
            become_user=self._play_context.become_user,
        )
        if login is not None and not self._task.check_mode:
            # Checked before the plan, as the CLI does: the writes would fail part way, as the user.
            raise AnsibleActionFail(f"{login}; nothing touched")
        plan: HostPlan = plan_host(
            policy,
            facts,
            info,
            restart_policy=args["restart_policy"] or "auto",
            allow_restart=bool(args["allow_restart"]),
            read_info=lambda: _info_or_none(transport),
        ).plan
        engine_action = plan.engine_action if facts.init is not None else "none"
        # A plan without file changes may still have dockerd load the daemon.json it has not loaded yet.
        acts = plan.changed or engine_action != "none"
        result.update(
            changed=acts,
            engine_action=engine_action if acts else "none",
            # True: restart policy 'never' leaves dockerd on other registry settings than daemon.json's,
            # so its live config is not checked (the role skips registry_trust_verify).
            live_pending=plan.live_pending,
            engine_version=facts.engine_version,
            # False: dockerd is stopped, and takes the change when it starts (nothing to check now).
            engine_running=facts.engine_running,
            files=[{"path": c.path, "action": c.action} for c in plan.visible_changes],
            reasons=[self._say(r) for r in plan.reasons],
            registries=list(policy.registries),
            # False for a skip-TLS policy: a canary pulled without TLS checks then proves what it asked.
            policy_verifies_tls=not policy.insecure,
            # What dockerd must show once it took the change (the role's verify task checks it).
            insecure_registries=insecure_once_applied(plan, facts),
        )
        down = engine_down(facts)
        if down is not None:  # registry_trust_verify warns of it, as a rollout that verifies does
            result["engine_down"] = down
        # The policy's warnings (the source and CA files as read: no CA for a private storage, an expired
        # CA allowed, …) are the CLI's too; Ansible prints each as a [WARNING].
        # What a run stopped part way left: named, and removed under the host's lock by this task's
        # apply (or by an apply of its own where nothing else changes), as a CLI rollout does.
        cleans = bool(leftovers.files) and not self._task.check_mode and not refusals(facts, plan)
        if cleans and not acts:
            self._clean_leftovers(transport, facts, leftovers)
        stopped_run = leftovers.said(removed=cleans)
        notes = [*unit_warnings(policy, facts, plan), *([stopped_run] if stopped_run else [])]
        warnings = ansible_warnings(policy.warnings, plan.warnings, notes, role=self._in_role())
        if login is not None:  # check mode: what a non-root login could read is not the whole host
            warnings.insert(0, f"this host {login}: what it showed may be partial")
        if warnings:
            result["warnings"] = warnings
        if self._task.diff and plan.visible_changes:
            # The unified diffs `trust-agent plan` prints, verbatim.
            result["diff"] = [{"prepared": c.diff()} for c in plan.visible_changes]
        refused = refusals(facts, plan)
        if refused:  # before anything is written, in check mode too: the CLI refuses the host alike
            # Nothing will be written: no file or diff is shown as a change to come.
            result.pop("diff", None)
            result.update(
                blocked_result(facts, [self._say(r) for r in refused]), msg=self._say("; ".join(refused))
            )
            return result
        if not acts:
            result["msg"] = "converged: nothing to change"
            return result
        files = (
            f"{len(plan.visible_changes)} file(s)"
            if plan.changed
            else "no file (dockerd runs an older daemon.json)"
        )
        if self._task.check_mode:
            result["msg"] = f"would change {files}; dockerd: {engine_action}"
            return result

        validate_with = (
            ("dockerd", *facts.dockerd_flags) if facts.has_validate and facts.init is not None else None
        )
        stamp = new_backup_stamp()
        # The apply checks each file against what the host holds: a private key found in a CA file is
        # withheld from the plan shown, not from this comparison. The undo record keeps the plan shown:
        # a roll-back puts back no key (the warning says it is exposed).
        script = build_apply_script(
            gathered.as_on_host(plan),
            engine_action="none",  # the role's handler reloads or restarts, once, after every change
            init=facts.init,
            validate_with=validate_with,
            daemon_json_path=facts.daemon_json_file,
            backup_stamp=stamp,
            leftover_dirs=leftovers.directories,
        )
        applied = transport.run_script(script, "")
        if not applied.ok:
            # stderr only: the script's stdout is its report to us (stdin is given: no -tt session).
            # Every line, as the CLI says it: the OS's reason comes before the script's own.
            detail = script_error(applied.stderr) or f"exit {applied.exit_status}"
            changed = _apply_replaced_files(applied)
            note = "the host may be partly changed" if changed else "nothing was written"
            # No file is known to have changed: none is reported as changed, nor shown as a diff.
            result.pop("diff", None)
            result.update(
                failed=True,
                changed=changed,
                engine_action="none",
                files=[],
                msg=f"apply failed ({note}): {detail}",
            )
            return result
        result["msg"] = f"changed {files}; dockerd: {engine_action}"
        # What registry_trust_verify needs to put the previous files back should dockerd not take these
        # (daemon.json's previous content stays on the host, in the backup the apply just made).
        # Where the handler's reload is refused, dockerd says why in its journal, after this stamp.
        applied_at = reload_stamp(applied.stdout, engine_action, facts.init)
        if applied_at is not None:
            result["applied_at"] = applied_at
        # Where the handler's restart fails, docker.service's journal after this cursor says why.
        cursor = _unit_log_cursor(transport) if engine_action == "restart" and facts.init == "systemd" else ""
        if cursor:
            result["unit_log_cursor"] = cursor
        if plan.changed:  # with no file written, there is nothing to put back
            result["undo"] = undo_record(
                plan,
                engine_action=engine_action,
                init=facts.init,
                daemon_json_path=facts.daemon_json_file,
                daemon_json_backup=daemon_json_backup(stamp),
            )
        return result

    def _local_path(self, flag: str, value: str | None) -> str:
        """A controller path as the CLI would take it (``flag``'s value). A relative one is looked for
        where ansible-playbook runs (as a shell gives it: ``-e trustagent_storage_ca=[s3-ca.pem]``), and
        as Ansible looks for a role's or play's files (``files/``, beside the play); found in both as
        different files, it is refused rather than one of them guessed."""
        text = "" if value is None else str(value)
        if "://" in text:
            return text  # a live DTR/MSR API
        if not text.strip():
            # It would name a directory: "cannot read: Is a directory".
            raise AnsibleActionFail(
                self._say(
                    f"bad input, nothing touched: {flag}: an empty path names no file (to give none, leave it out)"
                )
            )
        given = os.path.expanduser(text)
        if os.path.isabs(given):
            return given  # the CLI's reader says what is wrong with it
        here = os.path.join(os.getcwd(), given)
        beside, searched = self._beside_the_play(given)
        found = [path for path in (here, beside) if path is not None and os.path.exists(path)]
        if not found:
            raise AnsibleActionFail(
                self._say(
                    f"bad input, nothing touched: {flag} {text}: no such file: looked for {here} (where "
                    f"ansible-playbook runs), then as Ansible looks for a play's files: {', '.join(searched)}"
                )
            )
        if len(found) == 2 and not os.path.samefile(*found):
            raise AnsibleActionFail(
                self._say(
                    f"bad input, nothing touched: {flag} {text} names two files, {found[0]} (where "
                    f"ansible-playbook runs) and {found[1]} (beside the play): give an absolute path"
                )
            )
        return found[0]

    def _beside_the_play(self, given: str) -> tuple[str | None, list[str]]:
        """``given`` as Ansible finds a task's file (the role's ``files/``, the role, the play's
        ``files/``, the play's directory), or None and the paths it looked at."""
        try:
            return str(self._find_needle("files", given)), []
        except AnsibleFileNotFound as exc:
            return None, [str(p) for p in exc.paths or ()]


def _apply_replaced_files(applied: CommandResult) -> bool:
    """Whether a failed apply script replaced any file: it renames files into place only after every
    check passed, and says so once all are (``written``), or names those it replaced before a rename
    failed. Refused before that (the lock, a check, dockerd --validate, a permission), nothing changed."""
    return b"@@ta t written" in applied.stdout or b"already replaced:" in applied.stderr


def _unit_log_cursor(transport: Transport) -> str:
    """The journal's cursor now ("" where the host has no journal to read)."""
    try:
        said = transport.run_script(f'{START_CURSOR}; printf "%s\\n" "$ucur"', "")
    except TrustAgentError:
        return ""
    return said.stdout.decode("utf-8", "replace").strip() if said.ok else ""


def _info_or_none(transport: Transport) -> dict[str, Any] | None:
    """dockerd's live ``/info``, or None where it does not answer (then the restart stays refused)."""
    try:
        return read_live_info(transport)
    except TrustAgentError:
        return None
