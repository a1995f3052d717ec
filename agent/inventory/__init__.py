"""Inventories: trust-agent's own YAML, and Ansible INI/YAML inventories as they are.

>>> inv = load_inventory("hosts.ini")                # doctest: +SKIP
>>> [h.name for h in inv.limit("web:&bookworm:!web03")]  # doctest: +SKIP
['web01', 'web02']
"""

from agent.inventory.ansible_list import to_ansible_list
from agent.inventory.load import host_list, load_inventory
from agent.inventory.model import Group, Host, Inventory
from agent.inventory.patterns import evaluate, select, select_hosts
from agent.inventory.ranges import expand_hostname_range

__all__ = [
    "Group",
    "Host",
    "Inventory",
    "evaluate",
    "expand_hostname_range",
    "host_list",
    "load_inventory",
    "select",
    "select_hosts",
    "to_ansible_list",
]
