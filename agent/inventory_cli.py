"""``trust-agent inventory --list``: an inventory as trust-agent reads it, in ``ansible-inventory``'s shape.

Users point it at the inventory they already give Ansible and compare the two outputs before a
rollout: the same hosts, groups and connection variables mean the same hosts are touched.

>>> # trust-agent inventory --list -i hosts.ini --limit 'web:!web03'   # doctest: +SKIP
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from agent.errors import TrustAgentError, UsageError
from agent.inventory import Inventory, load_inventory, to_ansible_list
from agent.inventory.ansible_list import hostvars


def inventory_listing(path: str, limit: str | None = None) -> dict[str, Any]:
    """What ``ansible-inventory -i PATH --list [--limit LIMIT]`` would print, as trust-agent reads PATH."""
    inv: Inventory = load_inventory(path)
    if limit:
        inv = inv.limit(limit)
    return to_ansible_list(inv)


def host_variables(path: str, name: str) -> dict[str, Any]:
    """What ``ansible-inventory -i PATH --host NAME`` would print: the host's variables (``!unsafe``
    text as plain text there, unlike ``--list``)."""
    inv = load_inventory(path)
    return hostvars(inv.host(name), inv.format == "ansible", unsafe_marked=False)


def connection_settings(path: str, limit: str | None = None) -> dict[str, dict[str, Any]]:
    """Where trust-agent connects for each host, and how: the inventory's connection variables once
    evaluated (templates, ssh arguments, aliases), before ssh_config applies."""
    from agent.hosts.ssh import inventory_known_hosts  # paramiko's import, for this view alone

    inv: Inventory = load_inventory(path)
    if limit:
        inv = inv.limit(limit)
    return {
        host.name: {
            "address": host.address,
            "port": host.port,
            "user": host.user,
            "identity_file": host.identity_file,
            "known_hosts": inventory_known_hosts(host),
            "become": host.become,
            "become_user": host.become_user,
            "become_password": "(from the inventory)" if host.become_password else host.become_password_note,
            "ssh_options": [f"{name}={value}" for name, value in host.ssh_options],
            "refused": host.refused,
        }
        for host in inv
    }


@click.command(
    "inventory",
    epilog="\b\nExit codes:\n"
    "  0    shown\n"
    "  2    the inventory could not be read, a --limit matched nothing, or the options conflict\n"
    "  130  interrupted by Ctrl-C (a SIGTERM ends it as SIGTERM: 143)",
)
@click.option(
    "--list",
    "list_",
    is_flag=True,
    help="Print every host and group as JSON, in the shape of `ansible-inventory --list`.",
)
@click.option("--host", metavar="NAME", help="Print one host's variables, as `ansible-inventory --host`.")
@click.option(
    "--connections",
    is_flag=True,
    help="Print where trust-agent connects for each host and how (address, port, user, key, known_hosts "
    "file, become, ssh options) as the inventory says, its connection variables evaluated (ssh_config applies after); a "
    "host it will not reach says why.",
)
@click.option(
    "-i",
    "--inventory",
    required=True,
    metavar="INV",
    help="trust-agent YAML, an Ansible inventory (INI, YAML, an executable inventory script, or a directory "
    "of them; with group_vars/ and host_vars/ beside it), or a comma-separated host list.",
)
@click.option("-l", "--limit", metavar="PATTERN", help="Ansible-style host pattern (web*:&prod:!web3).")
def inventory_command(
    list_: bool, host: str | None, connections: bool, inventory: str, limit: str | None
) -> None:
    """Show the hosts, groups and variables trust-agent reads from an inventory.

    --list and --host print what `ansible-inventory` prints for them (`_meta.hostvars`, and per group
    its `hosts` and `children`), so the two can be compared before a rollout touches anything.
    --connections shows what trust-agent makes of them.
    """
    try:
        chosen = sum((list_, host is not None, connections))
        if chosen != 1:
            raise UsageError(
                f"say what to show: {'only ' if chosen else ''}one of --list, --host NAME, --connections"
            )
        shown: Any
        if list_:
            shown = inventory_listing(inventory, limit)
        elif host is not None:
            shown = host_variables(inventory, host)
        else:
            shown = connection_settings(inventory, limit)
    except TrustAgentError as exc:
        click.echo(f"trust-agent: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    click.echo(json.dumps(shown, indent=4, sort_keys=True, default=str))
