# Apache-2.0 (see the trust-agent source)
"""Action plugin for ``trustagent.docker.registry_trust_verify``: read dockerd's live registry config.

After the role's handlers reloaded or restarted dockerd, the engine's ``/info`` is read on the host
(curl on its API socket, else the docker CLI) and polled, for a bounded time, until every registry is
as secure or insecure as daemon.json says: the same check ``trust-agent rollout`` makes
(``agent.engine.verify``). Then, where asked, a canary image is pulled on the host.

Read-only, unless it is given ``registry_trust``'s ``undo`` and the check fails: then it puts the
previous files back (only where the host still holds what ``registry_trust`` wrote), has dockerd pick
them up again, and fails the host, as ``trust-agent rollout`` rolls a host back. The role's handler
reports a failed reload or restart in ``engine_action_error``: the check fails at once, and rolls back.
"""

from __future__ import annotations

import shlex
from typing import Any, NamedTuple

from ansible.errors import AnsibleActionFail
from ansible_collections.trustagent.docker.plugins.action.registry_trust import TrustAgentAction
from ansible_collections.trustagent.docker.plugins.plugin_utils.wording import error_line

try:
    from ansible_collections.trustagent.docker.plugins.plugin_utils.planning import tls_checked

    from agent.engine.apply_script import EXIT_ACTION, build_apply_script, new_backup_stamp
    from agent.engine.undo import parse_read, read_script, undo_plan
    from agent.engine.unit_log import START_LOG, start_failure_note
    from agent.engine.verify import (
        CanaryError,
        CanaryPull,
        fetched_a_blob,
        ranges_covering,
        read_live_info,
        refusal_since,
        tls_unchecked,
        tls_unchecked_pull,
        unproved_pull,
        wait_for_live_config,
    )
    from agent.errors import TrustAgentError
    from agent.hosts.base import Transport
except ImportError:  # reported by TrustAgentAction._begin, with what to install
    pass

ARGUMENT_SPEC: dict[str, Any] = {
    "registries": {"type": "list", "elements": "str", "required": True},
    "insecure_registries": {"type": "list", "elements": "str", "default": []},
    "timeout": {"type": "float", "default": 20.0},
    "undo": {"type": "dict"},
    "canary_image": {"type": "str"},
    "engine_action_error": {"type": "str"},
    "applied_at": {"type": "float"},
    "unit_log_cursor": {"type": "str"},
    "engine_down": {"type": "str"},
    "fail_unverified_tls": {"type": "bool", "default": False},
    # Whether the policy verifies the registries' TLS (a CA policy); not given: judged from the files,
    # where a registry daemon.json lists as insecure may be the policy's own choice.
    "policy_verifies_tls": {"type": "bool"},
}


class ActionModule(TrustAgentAction):
    NAME = "trustagent.docker.registry_trust_verify"
    SPEC = ARGUMENT_SPEC

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result, args = self._begin(tmp, task_vars)
        if self._task.check_mode:
            result.update(skipped=True, msg="check mode: dockerd was not asked to change, nothing to check")
            return result
        transport = self._host(task_vars)
        registries = tuple(str(r) for r in args["registries"])
        wanted = frozenset(str(r) for r in args["insecure_registries"])
        if args["engine_action_error"]:
            # The handler's reload or restart failed: nothing to wait for, dockerd may well be down.
            why = f"dockerd did not take the change: {' '.join(str(args['engine_action_error']).split())}"
            why += unit_said(transport, args["unit_log_cursor"])
            return _failed(result, transport, args["undo"], why)
        if args["engine_down"]:
            return _not_checked(result, str(args["engine_down"]), args["canary_image"], wanted)
        try:
            # A reload dockerd refuses: its journal says why, after registry_trust's stamp (no 20 s wait).
            since = args["applied_at"]
            live = wait_for_live_config(
                lambda: read_live_info(transport),
                registries,
                wanted,
                timeout=float(args["timeout"]),
                refused=None if since is None else refusal_since(transport, float(since)),
            )
        except TrustAgentError as exc:
            return _failed(result, transport, args["undo"], f"dockerd did not take the change: {exc}")
        verified = ["live config"]
        strict = bool(args["fail_unverified_tls"])
        covered, notes = tls_not_verified(
            transport, live, tls_checked(registries, wanted), loopback_too=strict
        )
        skipped = list(covered.values())
        if skipped and strict:  # the files are right: a person's to fix, nothing to roll back
            raise AnsibleActionFail(f"does not comply with the policy: {'; '.join(skipped)}")
        if notes or skipped:
            result["warnings"] = [*notes, *skipped]
        if args["canary_image"]:
            try:
                canary = canary_pull_on_host(transport, str(args["canary_image"]))
            except CanaryError as exc:
                # Removed for the pull that failed: pulled back once the previous files are in place.
                back = str(args["canary_image"]) if exc.removed else None
                return _failed(result, transport, args["undo"], str(exc), canary_back=back)
            except TrustAgentError as exc:
                return _failed(result, transport, args["undo"], str(exc))
            canary = tls_judged(canary, str(args["canary_image"]), live, covered, args["policy_verifies_tls"])
            verified.append(canary.said)
            if canary.unproved is not None:  # said where CI reads warnings, as the CLI says it
                result["warnings"] = [*result.get("warnings", []), canary.unproved]
        result.update(
            changed=False,
            insecure_registries=sorted(wanted),
            verified=verified,
            msg=f"verified: {', '.join(verified)}",
        )
        return result


def _not_checked(
    result: dict[str, Any], down: str, canary_image: str | None, wanted: frozenset[str]
) -> dict[str, Any]:
    """A stopped dockerd has no live config to read: warned of as a rollout warns (``down`` is
    ``registry_trust``'s ``engine_down``, trust-agent's own words), and not failed."""
    canary = f"; no canary pull of {canary_image}" if canary_image else ""
    result.update(
        changed=False,
        insecure_registries=sorted(wanted),
        verified=[],
        warnings=[f"{down}; the files take effect when it starts{canary}"],
        msg=f"not checked: {down}",
    )
    return result


def tls_not_verified(
    transport: Transport, info: dict[str, Any], registries: list[str], *, loopback_too: bool
) -> tuple[dict[str, str], list[str]]:
    """Which of ``registries`` dockerd does not verify though it runs the files' config, each with why,
    as ``trust-agent rollout`` checks it (``agent.engine.verify.ranges_covering``; ``loopback_too``, as
    ``trust-agent verify``: any name, for loopback). Then a note where the host could not be asked."""
    covered, notes = ranges_covering(transport, info, registries, loopback_too=loopback_too)
    return covered, list(notes)


def tls_judged(
    canary: CanaryPull,
    image: str,
    live: dict[str, Any],
    covered: dict[str, str],
    policy_verifies_tls: bool | None,
) -> CanaryPull:
    """``canary`` as trust-agent's own canary judges it: a pull dockerd made without verifying TLS
    (an insecure range covering the registry, ``covered``; or, where the policy verifies TLS, the live
    config listing it as insecure) proves no CA file (``agent.engine.verify.tls_unchecked``)."""
    why = tls_unchecked(image, live if policy_verifies_tls else None, covered)
    return canary if why is None else tls_unchecked_pull(image, why)


def _failed(
    result: dict[str, Any],
    transport: Transport,
    undo: dict[str, Any] | None,
    why: str,
    *,
    canary_back: str | None = None,
) -> dict[str, Any]:
    """Fail the host with ``why``; first roll it back where ``registry_trust``'s ``undo`` was given.
    ``canary_back``: the canary image the failed pull removed, pulled again once the host is back."""
    if not undo:
        raise AnsibleActionFail(why)
    back = roll_back(transport, undo)
    note = back.note
    if back.engine_took and canary_back:
        note += pull_canary_back(transport, canary_back)
    result.update(failed=True, changed=back.restored, rolled_back=back.restored, msg=f"{why}; {note}")
    return result


# As trust-agent's own canary (agent.engine.verify.canary_pull): a pull of an image the engine holds
# fetches no blob, so the image is removed first where only its own tag holds it (the engine refuses
# where a container uses it); the pull puts it back.
_CANARY = (
    "img={image}; "
    'if tags=$(docker image inspect --format \'{{{{join .RepoTags " "}}}}\' "$img" 2>/dev/null) '
    '&& [ "$tags" = "$img" ]; then '
    "id=$(docker image inspect --format '{{{{.Id}}}}' \"$img\"); "
    # Pulled by digest in another repository: a reference of its own, which a removal only untags.
    "other=$(docker image inspect --format '{{{{join .RepoDigests \" \"}}}}' \"$img\" | tr ' ' '\\n' "
    '| grep -v "^${{img%:*}}@" | head -n 1); '
    'if [ -n "$other" ]; then echo "@@ta canary held-as $other"; '
    'elif out=$(docker image rm "$img" 2>&1); then '
    # Untagged, not deleted: an image built on it holds it, and the pull would only tag it again.
    'if docker image inspect "$id" >/dev/null 2>&1; then echo "@@ta canary held"; '
    'else echo "@@ta canary removed"; fi; '
    # In use by a container: the engine's conflict, as the CLI says it.
    'else echo "@@ta canary not-removable $(printf %s "$out" | head -n 1)"; fi; '
    "fi; "
    # Which images the engine held before: a pulled image among them fetched no blob (its config
    # is the one held under another name), whatever the pull says.
    "before=$(docker image ls -aq --no-trunc 2>/dev/null); "
    'docker pull "$img" || exit $?; '
    "id=$(docker image inspect --format '{{{{.Id}}}}' \"$img\" 2>/dev/null); "
    'case "$before" in *"$id"*) ;; *) echo "@@ta canary new" ;; esac'
)


def unit_said(transport: Transport, cursor: str | None) -> str:
    """``; docker.service said: …``, the reason a failed start logged in the unit's journal after
    ``cursor`` (taken before the restart), as the CLI adds it; nothing where there is none to read."""
    if not cursor:
        return ""
    try:
        logged = transport.run_script(f"ucur={shlex.quote(cursor)}; {START_LOG}", "")
    except TrustAgentError:
        return ""
    note = start_failure_note(logged.stdout)
    return f"; {note}" if note else ""


def canary_pull_on_host(transport: Transport, image: str) -> CanaryPull:
    """``docker pull IMAGE`` on the host: the CA files proved end to end (registry, then its storage),
    where it fetched a blob through the storage redirect (as the CLI judges it:
    ``agent.engine.verify.fetched_a_blob``); else said unproved."""
    pulled = transport.run(_CANARY.format(image=shlex.quote(_reference(image))))
    if not pulled.ok:
        # Docker's own error: on stdout where the ssh connection ran the pull in a tty (no stdin).
        why = error_line(pulled.stdout, pulled.stderr) or f"exit {pulled.exit_status}"
        removed = b"@@ta canary removed" in pulled.stdout
        raise CanaryError(f"canary pull of {image} failed: {why}", removed=removed)
    said = pulled.stdout.decode("utf-8", "replace").splitlines()
    statuses = [line.rpartition(": ")[2].strip() for line in said]  # "<layer>: Pull complete"
    held = _held_by(said)
    if held is None and fetched_a_blob(statuses, new_image="@@ta canary new" in said):
        return CanaryPull(f"canary pull {image}")
    return unproved_pull(image, held or "under this or another name")


def _held_by(said: list[str]) -> str | None:
    """What kept the canary on the host, as ``_CANARY`` said it (None: nothing, or it was removed)."""
    for line in said:
        if not line.startswith("@@ta canary "):
            continue
        marker, _, rest = line.removeprefix("@@ta canary ").partition(" ")
        if marker == "held":
            return "held by an image built on it"
        if marker == "held-as":
            return f"also held as {rest}"
        if marker == "not-removable":
            return f"not removable: {rest}"
    return None


def pull_canary_back(transport: Transport, image: str) -> str:
    """As trust-agent's own roll-back (``reconcile._canary_back``): the canary was removed for a pull
    that failed; with the previous files back, a plain pull puts it back, so the host holds what it held
    (and the pull that now works says the previous trust still does)."""
    pulled = transport.run(f"docker pull {shlex.quote(_reference(image))}")
    if pulled.ok:
        return "; the canary image pulled back"
    why = error_line(pulled.stdout, pulled.stderr) or f"exit {pulled.exit_status}"
    return f"; the canary image could not be pulled back (canary pull of {image} failed: {why})"


def _reference(image: str) -> str:
    """``image`` with its tag: ``:latest`` where it names none (a digest or a tag is kept)."""
    return image if ":" in image.rsplit("/", 1)[-1] else f"{image}:latest"


_DONE = {"reload": "; dockerd reloaded", "restart": "; dockerd restarted", "none": ""}


class RolledBack(NamedTuple):
    """What a roll-back did: ``restored``, the previous files are in place; ``engine_took``, and dockerd
    took them (reloaded or restarted on them, or needed neither); ``note``, what happened, in words."""

    restored: bool
    engine_took: bool
    note: str


def roll_back(transport: Transport, record: dict[str, Any]) -> RolledBack:
    """Put back the files ``record`` (``registry_trust``'s ``undo``) names."""
    try:
        read = transport.run_script(read_script(record), "").check("reading back what the change wrote")
        plan = undo_plan(record, parse_read(read.stdout.decode("utf-8", "replace")))
        script = build_apply_script(
            plan,
            engine_action=record["engine_action"],
            init=record["init"],
            daemon_json_path=record["daemon_json_path"],
            backup_stamp=new_backup_stamp() + "-rollback",
        )
        done = transport.run_script(script, "")
    except TrustAgentError as exc:
        return RolledBack(False, False, f"not rolled back: {exc}")
    if done.ok:
        done_note = _DONE.get(record["engine_action"], "")
        return RolledBack(True, True, f"rolled back: the previous files are in place{done_note}")
    if done.exit_status == EXIT_ACTION:
        note = start_failure_note(done.stdout)
        said = "rolled back: the previous files are in place, but dockerd did not take them either" + (
            f" ({note})" if note else ""
        )
        return RolledBack(True, False, said)
    lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
    return RolledBack(False, False, f"roll-back failed: {lines[-1] if lines else f'exit {done.exit_status}'}")
