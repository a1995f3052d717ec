"""From CLI options to SSH transports: the inventory, --limit, and one connection per host."""

from __future__ import annotations

import getpass
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from agent.errors import InventoryError, UsageError
from agent.hosts.base import Transport
from agent.hosts.ssh import SYSTEM_SSH_CONFIG, SSHOptions, SSHTransport
from agent.inventory import Inventory, host_list, load_inventory, select_hosts


def read_inventory(spec: str) -> Inventory:
    """A file path, or a comma-separated host list like Ansible's ``-i 'h1,h2,'``."""
    if not os.path.exists(spec) and "," in spec:
        return host_list(spec)
    return load_inventory(spec)


def ssh_options(kwargs: dict[str, Any]) -> SSHOptions:
    password: str | None = None
    if kwargs.get("become_password_env"):
        name = kwargs["become_password_env"]
        if name not in os.environ:
            raise UsageError(f"--become-password-env {name}: the variable is not set")
        password = os.environ[name]
    elif kwargs.get("ask_become_pass"):
        password = _ask_become_pass()
    return SSHOptions(
        connect_timeout=kwargs.get("connect_timeout"),
        command_timeout=kwargs.get("command_timeout", 120.0),
        known_hosts=kwargs.get("known_hosts"),
        accept_new_host_keys=bool(kwargs.get("accept_new_host_keys")),
        # As ssh: the user's file and the system-wide one, or only the file named (ssh -F).
        ssh_config=kwargs.get("ssh_config") or "~/.ssh/config",
        system_ssh_config=None if kwargs.get("ssh_config") else SYSTEM_SSH_CONFIG,
        become_password=password,
    )


def _ask_become_pass() -> str:
    """The sudo password from the terminal; without one (a pipe, CI), the first line of stdin, as
    ansible -K reads it, without Python's warning that the input may be echoed (there is no echo)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", getpass.GetPassWarning)
        return getpass.getpass("sudo password: ")


def open_ssh_targets(kwargs: dict[str, Any]) -> tuple[Sequence[str], Callable[[str], Transport]]:
    """The selected host names, and a function that opens (not yet connects) a transport for one."""
    inventory = read_inventory(kwargs["inventory"])
    hosts = select_hosts(inventory, kwargs["limit"]) if kwargs.get("limit") else inventory.hosts
    if not hosts:
        raise InventoryError("no hosts to act on", where=kwargs["inventory"])
    options = ssh_options(kwargs)
    by_name = {h.name: h for h in hosts}
    if kwargs.get("become"):
        by_name = {n: replace(h, become=True) for n, h in by_name.items()}

    def open_one(name: str) -> Transport:
        return SSHTransport(by_name[name], options)

    return [h.name for h in hosts], open_one
