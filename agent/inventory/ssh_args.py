"""Ansible's ``ansible_ssh_args``, ``ansible_ssh_common_args`` and ``ansible_ssh_extra_args``: the ssh
options an inventory passes on ssh's command line, read as ssh_config options.

Ansible fleets behind a bastion say so there (``-o ProxyCommand="ssh -W %h:%p -q bastion"``, or
``-J bastion``), as Ansible's documentation shows. The options trust-agent acts on are taken, over
ssh_config's, as ssh takes ``-o`` over its config: ``ProxyCommand``, ``ProxyJump`` (``-J``),
``IdentityFile`` (``-i``), ``IdentitiesOnly``, ``IdentityAgent``, ``CertificateFile``,
``UserKnownHostsFile``, ``GlobalKnownHostsFile``, ``HostKeyAlias``, ``ConnectTimeout``, ``Port``
(``-p``) and ``User`` (``-l``), where the inventory sets no ``ansible_port``/``ansible_user`` (Ansible
passes those before the common and extra args, and ssh keeps an option's first value; its
``ansible_ssh_args`` come before them all). ``-F FILE`` is taken as ``configfile``: the one ssh_config
file ssh reads for the host instead of ``~/.ssh/config`` and ``/etc/ssh/ssh_config`` (the last ``-F``
given, as ssh; ``-F none``: none; taken as written, as ssh takes it: no ``~`` expansion, no shell comes
between Ansible and ssh). The rest (``StrictHostKeyChecking``,
ciphers, ``-q``…) are ignored: host keys are always checked, and the connection's own settings stand.
Flags bundle as getopt reads them (``-qJ gw`` is ``-q -J gw``).
"""

from __future__ import annotations

import shlex

from agent.errors import InventoryError

TAKEN = frozenset(
    {
        "proxycommand",
        "proxyjump",
        "identityfile",
        "userknownhostsfile",
        "globalknownhostsfile",
        "hostkeyalias",
        "certificatefile",
        "identitiesonly",
        "identityagent",
        "connecttimeout",
        "port",
        "user",
    }
)
CONFIG_FILE = "configfile"  # ssh's -F, which no ssh_config keyword sets
_FLAG_OPTIONS = {"J": "proxyjump", "i": "identityfile", "p": "port", "l": "user", "F": CONFIG_FILE}
# ssh(1)'s flags that take an argument: the argument is skipped with the flag where not read here.
_WITH_ARGUMENT = frozenset("BbcDEeFIiJLlmOopQRSWw")


def parse_ssh_args(text: str, what: str, where: str) -> tuple[tuple[str, str], ...]:
    """The ssh_config options (lower-case names, in order) that ssh command-line words ``text`` set.

    >>> parse_ssh_args('-o ProxyCommand="ssh -W %h:%p -q gw" -o StrictHostKeyChecking=no -C', "v", "f")
    (('proxycommand', 'ssh -W %h:%p -q gw'),)
    >>> parse_ssh_args("-qJ ops@gw:2222 -oUserKnownHostsFile=/k -i ~/.ssh/fleet -p 2200", "v", "f")
    (('proxyjump', 'ops@gw:2222'), ('userknownhostsfile', '/k'), ('identityfile', '~/.ssh/fleet'), ('port', '2200'))
    >>> parse_ssh_args("-F /etc/fleet/ssh_config -l ops", "v", "f")
    (('configfile', '/etc/fleet/ssh_config'), ('user', 'ops'))
    """
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise InventoryError(f"{what}: {exc}: {text!r}", where=where) from None
    found: list[tuple[str, str]] = []
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if not word.startswith("-") or len(word) < 2:
            continue
        # getopt's way: flags without an argument may come first in one word (-qJ gw, -Cp2200).
        at = next((i for i, c in enumerate(word[1:], 1) if c in _WITH_ARGUMENT), None)
        if at is None:
            continue  # -q, -C, -A, -T…: nothing to take
        flag, attached = word[at], word[at + 1 :]
        if attached:
            value = attached
        elif index < len(words):
            value, index = words[index], index + 1
        else:
            raise InventoryError(f"{what}: -{flag} needs a value: {text!r}", where=where)
        if flag == "o":
            option = _option(value)
            if option is None:
                raise InventoryError(f"{what}: -o {value!r} is not Key=Value", where=where)
            if option[0] in TAKEN:
                found.append(option)
        elif flag in _FLAG_OPTIONS:
            found.append((_FLAG_OPTIONS[flag], value))
    return tuple(found)


def _option(text: str) -> tuple[str, str] | None:
    """``Key=Value`` or ``Key Value`` (as ssh reads ``-o``), the key lower-cased."""
    key, sep, value = text.partition("=")
    if not sep:
        key, _, value = text.strip().partition(" ")
    key, value = key.strip(), value.strip()
    return (key.lower(), value) if key and value else None
