"""Read the source when it is due, and tell a fresh policy from an unchanged document or a fault.

File sources are compared by content hash (the source and every CA file given): an unchanged
document is not parsed again. A live DTR is asked with conditional requests (``If-None-Match`` /
``If-Modified-Since`` from its last ``ETag`` / ``Last-Modified``): ``304 Not Modified`` on both the
settings and the CA means unchanged, with nothing transferred or parsed.

The hash is kept in memory only: it is a digest of a document that holds secrets.
"""

from __future__ import annotations

import hashlib
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import urlsplit

from agent.errors import TrustAgentError
from agent.inputs import DTR_TOKEN_ENV, DTR_USER_ENV, PolicyInputs, policy_for, resolve_policy
from agent.sources import unused_inputs
from agent.sources.dtr import Validators, fetch_dtr_if_changed
from agent.trust import TrustPolicy

PollState = Literal["read", "unchanged", "error"]


@dataclass(frozen=True)
class Poll:
    """One look at the source. ``policy`` is set unless ``state`` is ``error``."""

    state: PollState  # read: parsed now; unchanged: same content as the last good read
    policy: TrustPolicy | None = None
    source_kind: str | None = None
    error: str | None = None


class SourceWatcher:
    def __init__(self, inputs: PolicyInputs, environ: Mapping[str, str]) -> None:
        self.inputs = inputs
        self._environ = dict(environ)
        self._digest: str | None = None
        self._validators = Validators()
        self._last: Poll | None = None

    def poll(self) -> Poll:
        if "://" in self.inputs.source:
            return self._poll_dtr()
        digest = self._content_digest()
        if digest is not None and digest == self._digest and self._last is not None:
            return Poll("unchanged", self._last.policy, self._last.source_kind)
        try:
            settings, policy = resolve_policy(self.inputs, self._environ)
        except TrustAgentError as exc:
            return Poll("error", error=str(exc))
        except Exception as exc:  # a bug must not bring down the host's trust: report where, not what
            return Poll("error", error=internal_error(exc))
        self._digest = digest
        self._last = Poll("read", policy, settings.kind)
        return self._last

    def _poll_dtr(self) -> Poll:
        if not (self._environ.get(DTR_USER_ENV) and self._environ.get(DTR_TOKEN_ENV)):
            return Poll("error", error=f"a live DTR source needs {DTR_USER_ENV} and {DTR_TOKEN_ENV}")
        try:
            settings, seen = fetch_dtr_if_changed(
                self.inputs.source,
                self._environ.get(DTR_USER_ENV, ""),
                self._environ.get(DTR_TOKEN_ENV, ""),
                ca_file=self.inputs.source_ca,
                validators=self._validators if self._last is not None else None,
            )
            if settings is None and self._last is not None:
                return Poll("unchanged", self._last.policy, self._last.source_kind)
            assert settings is not None
            unused = unused_inputs(
                "dtr", live=True, env_given=self.inputs.env_overrides, ca_file=self.inputs.source_ca
            )
            policy = policy_for(replace(settings, warnings=(*settings.warnings, *unused)), self.inputs)
        except TrustAgentError as exc:
            return Poll("error", error=str(exc))
        except Exception as exc:  # as for files: a bug is reported, trust is kept
            return Poll("error", error=internal_error(exc))
        self._validators = seen
        self._last = Poll("read", policy, settings.kind)
        return self._last

    def _content_digest(self) -> str | None:
        """sha256 of everything a file source's policy is made from; ``None`` when it cannot be had."""
        if "://" in self.inputs.source:
            return None
        digest = hashlib.sha256()
        try:
            for path in (self.inputs.source, *self.inputs.storage_ca, *self.inputs.registry_ca):
                with open(path, "rb") as handle:
                    digest.update(path.encode() + b"\0" + hashlib.sha256(handle.read()).digest())
        except OSError:
            return None  # let the reader say what is wrong, with its own message
        if self.inputs.env_overrides:
            for key in sorted(k for k in self._environ if k.startswith("REGISTRY_")):
                digest.update(f"{key}\0{self._environ[key]}\0".encode())
        return digest.hexdigest()


def display_source(spec: str) -> str:
    """The source as it may be shown: a URL loses any credentials, query and fragment."""
    if "://" not in spec:
        return spec
    parts = urlsplit(spec)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port that is not a number: show none
        port = ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


def internal_error(exc: BaseException) -> str:
    """Where an unexpected exception happened, not its message (which could quote a document)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/agent/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    return f"internal error: {type(exc).__name__}{where}"
