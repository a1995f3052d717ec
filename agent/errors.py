"""One exception hierarchy, mapped to exit codes in one place (the CLI).

- ``InputError`` and its family: bad source, CA, inventory or option. Exit code 2; nothing is touched.
- ``HostError`` and its family: a host could not be reached or a command on it failed.
- ``ApplyError`` and its family: a change did not validate, was not taken by dockerd, or did not verify.

Third-party exceptions (paramiko, docker, yaml) are mapped into these at the boundary so that callers
never catch library exceptions.
"""

from __future__ import annotations


class TrustAgentError(Exception):
    """Base class of every error trust-agent raises on purpose."""

    exit_code = 1


# --- input: exit 2, nothing touched -------------------------------------------------------------


class InputError(TrustAgentError):
    """Bad input. ``where`` names the file, key and line when known; ``str()`` is one line."""

    exit_code = 2

    def __init__(self, message: str, where: str | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class SourceError(InputError):
    """The registry's storage configuration could not be read or understood."""


class CertificateError(InputError):
    """A CA file is empty, malformed, holds a private key, or is expired."""


class InvalidNameError(InputError):
    """A registry address cannot safely become a certs.d directory name."""


class InventoryError(InputError):
    """An inventory could not be read, or a --limit pattern matched nothing."""


class UsageError(InputError):
    """Options that do not make sense together."""


# --- hosts ---------------------------------------------------------------------------------------


class HostError(TrustAgentError):
    """Something went wrong talking to one host."""


class UnreachableError(HostError):
    """The host could not be reached (DNS, TCP, SSH handshake, timeout)."""


class HostKeyError(HostError):
    """The host's key is unknown or differs from known_hosts."""


class AuthenticationError(HostError):
    """SSH authentication (or sudo) was refused."""


class CommandError(HostError):
    """A command on the host failed."""

    def __init__(
        self, message: str, exit_status: int | None = None, stderr: str = "", stdout: bytes = b""
    ) -> None:
        self.exit_status = exit_status
        self.stderr = stderr
        self.stdout = stdout
        super().__init__(message)


class CommandTimeout(CommandError):
    """A command on the host did not finish in time."""


class HostBusyError(HostError):
    """Another trust-agent run holds the host's lock."""


# --- apply ---------------------------------------------------------------------------------------


class ApplyError(TrustAgentError):
    """A change could not be applied safely."""


class ValidationError(ApplyError):
    """The new daemon.json did not pass validation. Nothing written.

    ``by_engine``: the refusal came from ``dockerd --validate`` on the host (so that check ran).
    """

    def __init__(self, message: str, *, by_engine: bool = False) -> None:
        self.by_engine = by_engine
        super().__init__(message)


class ReloadError(ApplyError):
    """dockerd did not take the change (reload/restart failed, or the engine did not come back)."""


class VerifyError(ApplyError):
    """The engine's live configuration does not match the plan, or the canary pull failed."""


# --- output -------------------------------------------------------------------------------------


class ReportError(TrustAgentError):
    """A report could not be written (the run itself is over; its summary was printed)."""
