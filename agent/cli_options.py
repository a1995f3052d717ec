"""Command-line options shared by ``trust-agent`` and ``trust-agent daemon``: one definition each.

Each ``*_options`` returns a decorator that adds a family of click options; ``policy_inputs`` turns the
policy family's values back into :class:`PolicyInputs`.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from agent.errors import TrustAgentError, UsageError
from agent.inputs import DTR_TOKEN_ENV, DTR_USER_ENV, PolicyInputs

F = TypeVar("F", bound=Callable[..., Any])

RESTART_POLICIES = ("auto", "reload", "restart", "never")


def stack(options: Sequence[Callable[[Any], Any]]) -> Callable[[F], F]:
    """One decorator applying ``options`` so they show in ``--help`` in the order given."""

    def apply(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return apply


def handle_errors(func: F) -> F:
    """Map trust-agent's errors to one line on stderr and the family's exit code (2 for bad input)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except TrustAgentError as exc:
            click.echo(f"trust-agent: error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


def policy_options(
    source_help: str = "The registry's storage settings: a distribution config.yml, a harbor.yml, a saved "
    "DTR settings JSON, or a live DTR/MSR URL (https://dtr.example.com; credentials from "
    f"{DTR_USER_ENV}/{DTR_TOKEN_ENV}). The kind is detected from the content.",
) -> Callable[[F], F]:
    """What a policy is derived from: the source, the registry's addresses, and CA files."""
    return stack(
        [
            click.option("--source", "source", required=True, metavar="SRC", help=source_help),
            click.option(
                "--registry",
                "registries",
                multiple=True,
                metavar="HOST[:PORT]",
                help="An address clients use for the registry, exactly as in image names (no scheme, "
                "path or user@). Repeat for "
                "every spelling (reg.example.com and reg.example.com:443 are different certs.d "
                "directories). Default: the source's http.host.",
            ),
            click.option(
                "--storage-ca",
                multiple=True,
                type=click.Path(dir_okay=False),
                metavar="FILE",
                help="PEM CA bundle of the storage backend (S3 endpoint). Installed in the registry's "
                "certs.d directory, where dockerd reads it for the redirect.",
            ),
            click.option(
                "--registry-ca",
                multiple=True,
                type=click.Path(dir_okay=False),
                metavar="FILE",
                help="PEM CA bundle of the registry itself, when it is from a private CA.",
            ),
            click.option(
                "--no-storage-ca",
                is_flag=True,
                help="The storage's certificate is publicly trusted: install no storage CA, and remove "
                "trust-agent's where a host has one. Without it (and without --storage-ca), a host "
                "holding trust-agent's storage CA for an https store that is not AWS fails, its files "
                "untouched, until one of the two is given.",
            ),
            click.option(
                "--no-registry-ca",
                is_flag=True,
                help="The registry's certificate is publicly trusted: remove trust-agent's registry CA "
                "where a host has one. Without it (and without --registry-ca), such a host fails, its "
                "files untouched, until one of the two is given.",
            ),
            click.option(
                "--allow-expired", is_flag=True, help="Install expired CA certificates (with a warning)."
            ),
            click.option(
                "--env-overrides",
                is_flag=True,
                help="Apply REGISTRY_* environment variables over a distribution config.yml, as the "
                "registry does (Harbor and DTR run theirs with an environment of their own: a warning).",
            ),
            click.option(
                "--source-ca",
                type=click.Path(dir_okay=False),
                metavar="FILE",
                help="CA bundle to verify a live DTR API with (default: the system store); a file "
                "source has no use for it (a warning).",
            ),
        ]
    )


def policy_inputs(kwargs: dict[str, Any]) -> PolicyInputs:
    """Take the policy family's values out of ``kwargs``."""
    return PolicyInputs(
        source=kwargs.pop("source"),
        registries=tuple(kwargs.pop("registries")),
        storage_ca=tuple(kwargs.pop("storage_ca")),
        registry_ca=tuple(kwargs.pop("registry_ca")),
        allow_expired=kwargs.pop("allow_expired"),
        env_overrides=kwargs.pop("env_overrides"),
        source_ca=kwargs.pop("source_ca"),
        no_storage_ca=kwargs.pop("no_storage_ca"),
        no_registry_ca=kwargs.pop("no_registry_ca"),
    )


def inventory_options(*, required: bool = False, hidden: bool = False) -> Callable[[F], F]:
    """``-i``/``-l``; ``hidden`` for a command that takes them only to say what to use instead."""
    return stack(
        [
            click.option(
                "-i",
                "--inventory",
                required=required,
                hidden=hidden,
                metavar="INV",
                help="Hosts to act on over SSH: trust-agent YAML, or an Ansible inventory as it is (INI, YAML, an "
                "executable inventory script, or a directory of them, with group_vars/ and host_vars/), or "
                "a comma-separated host list as Ansible takes it (h1,h2; one host: h1,).",
            ),
            click.option(
                "-l",
                "--limit",
                hidden=hidden,
                metavar="PATTERN",
                help="Ansible-style host pattern (web*:&prod:!web3); @FILE reads host names or patterns "
                "from FILE, one a line (a retry file).",
            ),
        ]
    )


def ssh_options(
    *, command_timeout: float = 120.0, command_timeout_help: str = "Seconds for one command on a host."
) -> Callable[[F], F]:
    """How hosts are reached: parallelism, host keys, ssh config, timeouts, sudo."""
    return stack(
        [
            click.option(
                "--forks", type=click.IntRange(1, 2000), default=50, show_default=True, help="Hosts at once."
            ),
            click.option(
                "--known-hosts",
                type=click.Path(dir_okay=False),
                callback=_usable_known_hosts,
                help="known_hosts file for every host, over the inventory's (default: the inventory's, "
                "else ssh_config's UserKnownHostsFile, else ~/.ssh/known_hosts); /etc/ssh/ssh_known_hosts "
                "(ssh_config's GlobalKnownHostsFile) is read after it. @cert-authority lines vouch for "
                "hosts with certificates, @revoked lines refuse keys.",
            ),
            click.option(
                "--accept-new-host-keys",
                is_flag=True,
                # Read before --known-hosts wherever it is written: that check depends on it.
                is_eager=True,
                help="Accept and record keys of hosts not yet in known_hosts (a changed key is still refused).",
            ),
            click.option(
                "--ssh-config",
                metavar="FILE",
                callback=_readable_ssh_config,
                help="OpenSSH client config, read alone (as ssh -F), for hosts whose inventory ssh args "
                "give no -F of their own [default: ~/.ssh/config, then /etc/ssh/ssh_config].",
            ),
            click.option(
                "--connect-timeout",
                type=click.FloatRange(min=0, min_open=True),
                help="Seconds to connect and log in to a host [default: ssh_config's ConnectTimeout, else 10].",
            ),
            click.option(
                "--command-timeout",
                type=click.FloatRange(min=0, min_open=True),
                default=command_timeout,
                show_default=True,
                help=command_timeout_help,
            ),
            click.option("--become", is_flag=True, help="Use sudo on hosts where the SSH user is not root."),
            click.option(
                "--become-password-env",
                metavar="VAR",
                help="Read the sudo password from this environment variable (else sudo must not ask); "
                "a host's ansible_become_password in the inventory wins, as in Ansible.",
            ),
            click.option("--ask-become-pass", is_flag=True, help="Prompt once for the sudo password."),
        ]
    )


def _readable_ssh_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A named ssh config that is not there is refused, as ``ssh -F`` refuses it, not read as empty."""
    if value is None:
        return None
    from agent.hosts.ssh_config_text import expand_home  # only where --ssh-config is given

    # The file the transport reads: ~ is the passwd entry's home, as ssh takes it, not $HOME.
    path = expand_home(value)
    if not os.path.exists(path):
        raise click.BadParameter(f"{value}: no such file (ssh -F refuses a missing file too)", ctx, param)
    if not os.path.isfile(path):
        raise click.BadParameter(f"{value}: not a file", ctx, param)
    return value


def _usable_known_hosts(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A known_hosts file that can serve: one that exists, or with --accept-new-host-keys one to create
    in a directory that exists. Nothing could be verified against a missing file, and no directory is
    made for one (a mistyped path would leave new directories behind on this machine)."""
    if value is None:
        return None
    path = os.path.expanduser(value)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise click.BadParameter(
            f"{value}: the directory {directory} does not exist (trust-agent creates no directory for it)",
            ctx,
            param,
        )
    if not os.path.exists(path) and not ctx.params.get("accept_new_host_keys"):
        raise click.BadParameter(
            f"{value}: no such file, so no host key could be verified: give an existing known_hosts "
            "file, or add --accept-new-host-keys to create it with the keys the hosts show",
            ctx,
            param,
        )
    return value


def exit_codes(*lines: str) -> str:
    """A command's exit codes as its help's closing lines, kept as written (not rewrapped)."""
    return "\b\nExit codes:\n" + "\n".join(f"  {line}" for line in lines)


def engine_options(func: F) -> F:
    """How dockerd picks up a change, and how the change is proved."""
    return stack(
        [
            click.option(
                "--restart-policy",
                type=click.Choice(RESTART_POLICIES),
                default="auto",
                show_default=True,
                help="auto: nothing for certs.d-only changes, reload for reloadable keys, restart only "
                "where reload cannot apply the change and --allow-restart (or live-restore) permits it. "
                "reload/restart: that action for every daemon.json change. never: write the files and "
                "leave dockerd alone (its live config is not checked; it loads them at its next reload "
                "or restart). Under the others, a daemon.json dockerd has not loaded gets the action "
                "that loads it.",
            ),
            click.option(
                "--allow-restart", is_flag=True, help="Let auto restart dockerd where a reload is not enough."
            ),
            click.option(
                "--canary-image",
                metavar="REF",
                help="After the change, pull REF on each host to prove it end to end. REF is removed "
                "first where only its own tag holds it (no container uses it), so that its blobs come "
                "through the storage redirect (a pull of an image a host holds fetches none); a "
                "successful pull puts it back.",
            ),
            click.option(
                "--no-verify", is_flag=True, help="Skip reading the engine's live config after the change."
            ),
        ]
    )(func)


def _checked_resolve(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """Refused as click refuses a bad option (so the report asked for says so), read again by the command."""
    if values:
        from agent.handshake import parse_resolve

        try:
            parse_resolve(values)
        except UsageError as exc:
            raise click.BadParameter(str(exc).removeprefix("--resolve "), ctx, param) from None
    return values


def resolve_option(func: F) -> F:
    """Where the TLS checks from this machine connect (verify's, and rollout's after the change)."""
    return click.option(
        "--resolve",
        "resolve",
        multiple=True,
        callback=_checked_resolve,
        metavar="HOST:ADDR",
        help="Connect to HOST at ADDR for the TLS handshakes from this machine (like curl --resolve), "
        "where its DNS does not know the names the engines use.",
    )(func)
