"""Verified, not assumed: read the engine's live registry config, and pull a canary where asked.

certs.d files do not show in ``/info`` (trust fact 15); the live check covers ``insecure-registries``,
and the canary pull proves the CA files end to end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from agent.engine.gather import INFO_COMMAND_TAIL, INFO_FUNCTION, info_doc, live_info
from agent.engine.unit_log import UNIT_JOURNAL_COMMAND, reload_refusal
from agent.errors import TrustAgentError, VerifyError
from agent.hosts.base import Transport
from agent.runtimes.daemon_json import DaemonJsonError, parse_daemon_json
from agent.runtimes.live_registry import insecure_in_force, live_insecure
from agent.runtimes.live_registry import mismatches as live_mismatches


def expected_insecure(daemon_json: bytes | None, flags: Sequence[str] = ()) -> frozenset[str]:
    """The entries dockerd lists as insecure when it runs ``daemon_json`` with command line ``flags``
    (the file's part empty when absent or unreadable)."""
    try:
        doc = json.loads(daemon_json) if daemon_json else {}
    except ValueError:
        doc = {}
    return insecure_in_force(doc if isinstance(doc, dict) else {}, flags)


def live_config_unjudged(daemon_json: bytes | None, path: str) -> str | None:
    """Why the engine's live registry config cannot be judged against ``daemon_json`` at ``path``: the
    file cannot be parsed (comments, a trailing comma), so dockerd runs what it loaded from an earlier
    file, which may list registries as insecure that this one does not show; None where it can be."""
    if daemon_json is None:
        return None
    try:
        parse_daemon_json(daemon_json, path)
    except DaemonJsonError as exc:
        return (
            f"live config not compared with daemon.json ({exc}): dockerd runs what it loaded from an "
            "earlier file, which this one does not show; check it with docker info once the file is fixed"
        )
    return None


def read_live_info(transport: Transport, timeout: float = 20.0) -> dict[str, Any]:
    """The engine's ``/info``: over the transport's own route to the API socket where it has one, else
    read on the host (curl on the API socket, else the docker CLI)."""
    reply = transport.engine_get("/info", timeout)
    info = info_doc(reply.body) if reply is not None else None
    if info is not None:
        return info
    result = transport.run_script(INFO_FUNCTION + INFO_COMMAND_TAIL, timeout=timeout)
    info = live_info(result.stdout.decode("utf-8", "replace"))
    if info is None:
        tail = result.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
        raise VerifyError(f"the engine did not answer /info{': ' + tail[0] if tail else ''}")
    return info


def refusal_since(transport: Transport, since: float) -> Callable[[], str | None]:
    """For :func:`wait_for_live_config`: dockerd's reason for refusing the reload done after ``since``
    (the apply script's ``written`` stamp), read from docker.service's journal on the host."""

    def refused() -> str | None:
        try:
            result = transport.run_script(UNIT_JOURNAL_COMMAND, timeout=30)
        except TrustAgentError:
            return None  # the wait for the live config goes on, and says what it finds
        return reload_refusal(result.stdout.decode("utf-8", "replace"), since)

    return refused


def mismatches(info: dict[str, Any], registries: Iterable[str], wanted: frozenset[str]) -> list[str]:
    """Registries whose live insecure/secure state differs from ``wanted`` (what the files ask for)."""
    return live_mismatches(live_insecure(info, registries), wanted)


def wait_for_live_config(
    read_info: Callable[[], dict[str, Any]],
    registries: tuple[str, ...],
    wanted: frozenset[str],
    *,
    timeout: float = 15.0,
    interval: float = 0.2,
    refused: Callable[[], str | None] | None = None,
    refused_every: float = 1.0,
) -> dict[str, Any]:
    """Poll ``/info`` until the live config matches (SIGHUP applies asynchronously), bounded by ``timeout``.

    ``refused``, asked while the config still does not match ``refused_every`` seconds on (and as often
    after), gives dockerd's own reason where it refused the reload: the wait ends there, as nothing will
    change. A SIGHUP still on its way is not worth asking about: a converging host never asks."""
    deadline = time.monotonic() + timeout
    problems: list[str] = ["no answer from the engine"]
    last_error: Exception | None = None
    asked = time.monotonic()
    while True:
        reason: str | None = None
        try:
            info = read_info()
            problems = mismatches(info, registries, wanted)
            if not problems:
                return info
            if refused is not None and time.monotonic() - asked >= refused_every:
                asked = time.monotonic()
                reason = refused()
        except Exception as exc:  # the engine may be restarting: keep polling until the deadline
            last_error = exc
            problems = [f"engine API: {exc}"]
        if reason:
            raise VerifyError(f"dockerd refused the reload: {reason}")
        if time.monotonic() >= deadline:
            detail = "; ".join(problems)
            raise VerifyError(f"live config does not match after {timeout:.0f}s: {detail}") from last_error
        time.sleep(interval)


class CanaryError(VerifyError):
    """The canary pull failed; ``removed``: the canary was removed for it, so it is gone from the host."""

    def __init__(self, message: str, *, removed: bool) -> None:
        super().__init__(message)
        self.removed = removed


def canary_pull(api: Any, image: str) -> str:
    """Pull ``image`` through the engine so that its blobs are fetched, through the storage redirect;
    raise :class:`CanaryError` with the engine's message on failure. Returns what the pull proved.

    A pull of an image the engine holds fetches no blob (the manifest alone is read, from the registry
    itself): it would pass with a wrong storage CA. So the canary is removed first where nothing else
    holds it (no other tag, no container, no image built on it); the pull puts it back, so the host
    ends as it was. Where something holds it, the pull fetches nothing and says it proved nothing.
    """
    held = _remove_if_only_the_canary(api, image)
    try:
        _pull(api, image)
    except VerifyError as exc:
        raise CanaryError(str(exc), removed=held == "removed") from exc
    if held in ("absent", "removed"):
        return f"canary pull {image}"
    return (
        f"canary pull {image} (on the host already, {held}: no blob fetched, the storage redirect unproved)"
    )


def _pull(api: Any, image: str) -> None:
    # The whole reference: the SDK splits repo:tag and repo@sha256:... itself (a digest is no tag).
    try:
        for raw in api.pull(image, stream=True, decode=True):
            if isinstance(raw, dict) and raw.get("error"):
                raise VerifyError(f"canary pull of {image} failed: {raw['error']}")
    except VerifyError:
        raise
    except Exception as exc:
        raise VerifyError(f"canary pull of {image} failed: {_engine_said(exc)}") from exc


def _engine_said(exc: Exception) -> str:
    """An engine API error in the engine's words (``404: manifest unknown``), not the SDK's, whose text
    names its internal ``http+docker://`` URL."""
    status, explanation = getattr(exc, "status_code", None), getattr(exc, "explanation", None)
    if status is None or not explanation:
        return str(exc)
    return f"{status}: {explanation}"


def _remove_if_only_the_canary(api: Any, reference: str) -> str:
    """Remove the canary image where only its own reference holds it: ``"absent"`` (not there),
    ``"removed"``, or what holds it (then it is on the host as before, or at most untagged for the
    pull to tag again)."""
    try:
        found = api.inspect_image(reference)
    except Exception:  # not there (or not readable): the pull fetches it
        return "absent"
    image_id = found.get("Id")
    tags = [t for t in found.get("RepoTags") or [] if t not in (reference, f"{reference}:latest")]
    if tags:
        return f"also tagged {tags[0]}"
    try:
        answer = api.remove_image(reference, noprune=False)
    except Exception as exc:  # in use by a container (409), or the engine refused otherwise
        return f"not removable: {getattr(exc, 'explanation', None) or exc}"
    if not any(isinstance(item, dict) and item.get("Deleted") == image_id for item in answer or []):
        return "held by an image built on it"  # untagged only: the image stays, the pull tags it again
    return "removed"
