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


def inventory_listing(path: str, limit: str | None = None) -> dict[str, Any]:
    """What ``ansible-inventory -i PATH --list [--limit LIMIT]`` would print, as trust-agent reads PATH."""
    inv: Inventory = load_inventory(path)
    if limit:
        inv = inv.limit(limit)
    return to_ansible_list(inv)


@click.command("inventory")
@click.option(
    "--list",
    "list_",
    is_flag=True,
    help="Print every host and group as JSON, in the shape of `ansible-inventory --list`.",
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
def inventory_command(list_: bool, inventory: str, limit: str | None) -> None:
    """Show the hosts, groups and variables trust-agent reads from an inventory.

    The output has the shape of `ansible-inventory -i INV --list` (`_meta.hostvars`, and per group its
    `hosts` and `children`), so the two can be compared before a rollout touches anything.
    """
    try:
        if not list_:
            raise UsageError("say what to show: --list")
        listing = inventory_listing(inventory, limit)
    except TrustAgentError as exc:
        click.echo(f"trust-agent: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    click.echo(json.dumps(listing, indent=4, sort_keys=True, default=str))
