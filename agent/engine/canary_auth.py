"""The canary pull's registry credentials, from this machine's Docker client config, as ``docker pull``
(and ``docker -H ssh://HOST pull``) finds them: read before any host is touched, again for each later
batch of a ``--serial`` run (a helper's short-lived token may expire over a long rollout), and given to
every host's pull of that batch (the SDK would otherwise read the config, and run its credential helper,
again for each pull; a helper that is not installed would fail every host after its change)."""

from __future__ import annotations

import copy
import json
import os
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import UsageError

if TYPE_CHECKING:
    from agent.engine.options import RunOptions


class CanaryCredentialsError(UsageError):
    """The canary registry's credentials could not be read from this machine's Docker config: refused
    before any host is changed (a pull without them would fail on every host, and roll it back)."""


def canary_credentials(image: str) -> dict[str, Any]:
    """The credentials this machine's Docker config holds for ``image``'s registry, as ``docker pull``
    finds them (``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``; a credential helper
    is run), for the engine's ``X-Registry-Auth``; ``{}`` where it holds none (an anonymous pull).
    Raise :class:`CanaryCredentialsError` where they cannot be read."""
    path = docker_config_file()
    if path is None:
        return {}
    return credentials_in(read_docker_config(path), path, auth_registry(image))


def docker_config_file() -> str | None:
    """The Docker client config the docker CLI reads: ``$DOCKER_CONFIG/config.json`` where the variable
    is set (only there), else ``~/.docker/config.json``, else the legacy ``~/.dockercfg``; None where
    there is none."""
    given = os.environ.get("DOCKER_CONFIG")
    if given:
        path = os.path.join(given, "config.json")
        return path if os.path.exists(path) else None
    home = os.path.expanduser("~")
    found = (p for p in (f"{home}/.docker/config.json", f"{home}/.dockercfg") if os.path.exists(p))
    return next(found, None)


def auth_registry(image: str) -> str:
    """The registry name the SDK looks credentials up under for ``image`` (``docker.io`` for Hub's).

    >>> auth_registry("registry.test:443/test/busybox:1"), auth_registry("busybox")
    ('registry.test:443', 'docker.io')
    """
    import docker.auth

    return str(docker.auth.resolve_repository_name(image)[0])


def read_docker_config(path: str) -> dict[str, Any]:
    """The Docker client config at ``path``, as a document; the legacy ``.dockercfg`` format read as
    the SDK reads it."""
    if os.path.basename(path) == ".dockercfg":
        import docker.auth

        try:
            return {"auths": dict(docker.auth.load_config(config_path=path).auths)}
        except Exception as exc:  # the SDK raises what the file leads it to
            raise CanaryCredentialsError(_unreadable(path, exc)) from None
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CanaryCredentialsError(_unreadable(path, exc)) from None
    if not isinstance(doc, dict):
        raise CanaryCredentialsError(
            f"the canary pull's registry credentials could not be read: {path} holds no JSON object; "
            f"{_CONFIG_FIX}"
        )
    return doc


_CONFIG_FIX = (
    "fix the file (docker login writes it), or point DOCKER_CONFIG= at a directory with a config.json "
    "that works (an empty directory: anonymous pulls)"
)


def credentials_in(doc: Mapping[str, Any], path: str, registry: str) -> dict[str, Any]:
    """The credentials the Docker config ``doc`` (read from ``path``) holds for ``registry``, a
    credential helper it names run once; ``{}`` where it holds none."""
    import docker.auth

    # The SDK parses the config, and a helper's answer, as it finds them: a value of the wrong type, or
    # a helper's answer that is no credential, raises what it leads to (TypeError, KeyError, a JSON
    # error...). Any of them is a config or a helper this run cannot use: said, not a traceback.
    try:
        config = docker.auth.load_config(config_dict=copy.deepcopy(dict(doc)))
        helper = config.get_credential_store(registry)
    except Exception as exc:  # see above
        raise CanaryCredentialsError(_unreadable(path, exc)) from None
    try:
        with warnings.catch_warnings():  # the SDK warns of a missing helper; the error says it
            warnings.simplefilter("ignore")
            found = config.resolve_authconfig(registry)
            return dict(found) if found else {}
    except Exception as exc:  # see above
        if helper is None:
            raise CanaryCredentialsError(_unreadable(path, exc)) from None
        key = "credHelpers" if registry in config.cred_helpers else "credsStore"
        raise CanaryCredentialsError(_helper_failed(path, registry, key, helper, exc)) from None


def _unreadable(path: str, exc: BaseException) -> str:
    return f"the canary pull's registry credentials could not be read: {path}: {_said(exc)}; {_CONFIG_FIX}"


def _said(exc: BaseException) -> str:
    """An exception in a line: its message, or its kind where it has none (a KeyError's is the key)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if isinstance(exc, KeyError | TypeError | AttributeError) else text


def _helper_failed(path: str, registry: str, key: str, helper: str | None, exc: Exception) -> str:
    """Why the credential helper ``helper`` that ``path``'s ``key`` names for ``registry`` gave no
    answer, and what to do about it."""
    cause = exc.__cause__ or exc
    return (
        f"the canary pull's credentials for {registry} could not be read: {path} names the credential "
        f'helper docker-credential-{helper} ("{key}"), which failed: {_said(cause)}; install the helper, or '
        f"log in with `docker login {registry}` under a DOCKER_CONFIG= directory whose config.json "
        "names no helper (an empty directory: anonymous pulls)"
    )


class RunCredentials:
    """The canary registry's credentials, read from this machine's Docker config once for a run (the
    run's backup stamp names it: one per rollout, one per daemon cycle) and again for each batch after
    :meth:`expire`, whichever of its hosts, in parallel, asks first: a credential helper runs once per
    batch, and its failure is every host's of that batch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, str] | None = None
        self._found: dict[str, Any] | str = {}

    def of(self, run: str, image: str) -> dict[str, Any]:
        """The credentials for ``image``'s pulls in the run named ``run`` (its backup stamp); raise
        :class:`CanaryCredentialsError` where they cannot be read."""
        key = (run, image)
        with self._lock:  # the other hosts wait for the one read, then share it
            if self._key != key:
                try:
                    self._found = canary_credentials(image)
                except CanaryCredentialsError as exc:
                    self._found = str(exc)
                self._key = key
            found = self._found
        if isinstance(found, str):
            raise CanaryCredentialsError(found)
        return found

    def expire(self, run: str) -> None:
        """Have the next ask for the run named ``run`` read the credentials again: a helper's token
        (ECR's lasts 12 h, gcloud's about 1 h) may have expired while the batches before it ran."""
        with self._lock:
            if self._key is not None and self._key[0] == run:
                self._key = None


RUN_CREDENTIALS = RunCredentials()


def read_canary_credentials(options: RunOptions) -> None:
    """Read the canary registry's credentials for the run of ``options`` now, where it pulls one (a
    command line can, before it reaches any host); raise :class:`CanaryCredentialsError` where they
    cannot be read. Each host's pulls then take them as read."""
    if options.verify and options.canary_image:
        RUN_CREDENTIALS.of(options.backup_stamp, options.canary_image)


def expire_canary_credentials(options: RunOptions) -> None:
    """Before a later batch of the run of ``options``: its hosts' pulls read the credentials afresh."""
    RUN_CREDENTIALS.expire(options.backup_stamp)
