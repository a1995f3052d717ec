"""Ansible connection variables → :class:`Host` fields (``ansible_host``, ``ansible_port``, …)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from agent.errors import InventoryError
from agent.inventory import templating
from agent.inventory.model import Host
from agent.inventory.ssh_args import parse_ssh_args
from agent.inventory.yamlfile import VaultText, is_vault_ciphertext

# In Ansible's order; like Ansible's connection options, the last one defined wins, so a legacy
# ``ansible_ssh_*`` alias beats the modern name when a host has both.
ADDRESS_VARS = ("ansible_host", "ansible_ssh_host")
PORT_VARS = ("ansible_port", "ansible_ssh_port")
USER_VARS = ("ansible_user", "ansible_ssh_user")
KEY_VARS = ("ansible_private_key_file", "ansible_ssh_private_key_file")
BECOME_VARS = ("ansible_become",)
BECOME_USER_VARS = ("ansible_become_user",)
# Ansible's ssh_args: first on ssh's command line, before the -o Port/User/IdentityFile it makes of
# ansible_port, ansible_user and the key file (so, ssh keeping an option's first value, over them).
FIRST_SSH_ARGS_VARS = ("ansible_ssh_args",)
SSH_ARGS_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args")  # after those, in this order
TIMEOUT_VARS = ("ansible_ssh_timeout",)  # the ssh connection's `timeout`: ssh's ConnectTimeout
CONNECTION_VARS = ("ansible_connection",)
BECOME_METHOD_VARS = ("ansible_become_method",)
BECOME_PASSWORD_VARS = ("ansible_become_password", "ansible_become_pass")
SSH_PASSWORD_VARS = ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password")
# Ansible's connection plugins that are OpenSSH (ssh, smart: its default) or paramiko.
SSH_CONNECTIONS = frozenset(
    {"ssh", "smart", "paramiko", "paramiko_ssh", "ansible.builtin.ssh", "ansible.builtin.paramiko_ssh"}
)
SUDO = frozenset({"sudo", "ansible.builtin.sudo"})

_TRUE = frozenset({"y", "yes", "on", "1", "true", "t"})
_FALSE = frozenset({"n", "no", "off", "0", "false", "f", ""})


def parse_bool(value: Any, what: str, where: str) -> bool:
    """Ansible's ``boolean()``: yes/no, on/off, true/false, 1/0, y/n, t/f, any case."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InventoryError(f"{what} must be a boolean, got {value!r}", where=where)


def parse_port(value: Any, what: str, where: str) -> int:
    try:
        port = int(str(value).strip())
    except ValueError:
        raise InventoryError(f"{what} must be a port number, got {value!r}", where=where) from None
    if not 0 < port < 65536:
        raise InventoryError(f"{what} must be between 1 and 65535, got {port}", where=where)
    return port


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def host_from_ansible_vars(name: str, values: Mapping[str, Any], groups: tuple[str, ...], where: str) -> Host:
    """Build a :class:`Host` from a host's merged Ansible variables, their templates evaluated.

    A connection variable that cannot be used (a ``!vault`` value, an undefined name, a port that is
    not one) refuses that host only, saying why: like Ansible, the inventory still lists it and the
    other hosts run; it fails when targeted.
    """
    try:
        return _connectable_host(name, values, groups, where)
    except InventoryError as exc:
        return Host(
            name=name,
            address=name,
            refused=f"{exc.message.removeprefix(f'{name}: ')} (inventory {where})",
            vars=MappingProxyType(dict(values)),
            groups=groups,
        )


def _connectable_host(name: str, values: Mapping[str, Any], groups: tuple[str, ...], where: str) -> Host:
    context = templating.host_variables(name, values, groups)

    def pick(names: tuple[str, ...]) -> Any:
        # The last alias defined wins, as in Ansible; one whose template gives omit is as if unset.
        for var in reversed(names):
            if values.get(var) is not None and (value := _evaluated(name, var, context, where)) is not None:
                return value
        return None

    key = _text(pick(KEY_VARS))
    # Ansible resolves a relative key path against the working directory, so only ~ is expanded.
    identity_file = os.path.expanduser(key) if key else None
    raw_become = pick(BECOME_VARS)
    become = False if raw_become is None else parse_bool(raw_become, f"{name}: ansible_become", where)
    first = _ssh_args_options(name, FIRST_SSH_ARGS_VARS, pick, where)
    later = _ssh_args_options(name, SSH_ARGS_VARS, pick, where)
    port, port_given = _port_given(name, first, pick(PORT_VARS), later, where)
    timeout = pick(TIMEOUT_VARS)
    password, password_note = _become_password(values, context)
    return Host(
        name=name,
        address=_text(pick(ADDRESS_VARS)) or name,
        port=port,
        port_given=port_given,
        user=_first_value("user", first, _text(pick(USER_VARS)), later),
        identity_file=identity_file,
        become=become,
        become_user=_text(pick(BECOME_USER_VARS)),
        ssh_options=(
            *(option for _, option in first),
            # ssh tries identity files in command-line order: ansible_ssh_args' -i before the key file.
            *((("identityfile", identity_file),) if identity_file and _names(first, "identityfile") else ()),
            *((("connecttimeout", str(timeout)),) if timeout is not None else ()),
            *(option for _, option in later),
        ),
        refused=_refused(pick(CONNECTION_VARS), pick(BECOME_METHOD_VARS) if become else None),
        become_password=password,
        become_password_note=password_note,
        vars=MappingProxyType(dict(values)),
        groups=groups,
    )


Option = tuple[str, str]


def _ssh_args_options(
    host: str, names: tuple[str, ...], pick: Callable[[tuple[str, ...]], Any], where: str
) -> list[tuple[str, Option]]:
    """The ssh options the ssh-args variables ``names`` give, in order, each with its variable's name."""
    found: list[tuple[str, Option]] = []
    for var in names:
        text = pick((var,))
        if text:
            found += [(var, option) for option in parse_ssh_args(str(text), f"{host}: {var}", where)]
    return found


def _names(options: list[tuple[str, Option]], name: str) -> list[tuple[str, str]]:
    """The variables that set ssh option ``name`` in ``options``, with the values they set, in order."""
    return [(var, value) for var, (option, value) in options if option == name]


def _first_value(
    name: str, first: list[tuple[str, Option]], inventory: str | None, later: list[tuple[str, Option]]
) -> str | None:
    """ssh option ``name`` as ssh takes it from Ansible's command line: ansible_ssh_args', else the
    inventory's own variable's (``inventory``), else the common or extra args' (the first value wins)."""
    given = [value for _, value in _names(first, name)] + [inventory or ""]
    given += [value for _, value in _names(later, name)]
    return next((value for value in given if value), None)


def _port_given(
    host: str, first: list[tuple[str, Option]], port: Any, later: list[tuple[str, Option]], where: str
) -> tuple[int, bool]:
    """The port ssh connects to as the inventory gives it on the command line (ansible_ssh_args' -p,
    else ansible_port, else the common or extra args' -p), and whether it gives one (else 22)."""
    found = [
        *_names(first, "port"),
        *((("ansible_port", port),) if port is not None else ()),
        *_names(later, "port"),
    ]
    if not found:
        return 22, False
    var, value = found[0]
    what = f"{host}: ansible_port" if var == "ansible_port" else f"{host}: {var}: Port (-p)"
    return parse_port(value, what, where), True


def chosen(values: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    """The variable Ansible uses of ``names``, aliases of one setting: the last one defined."""
    return next((n for n in reversed(names) if values.get(n) is not None), None)


def _become_password(values: Mapping[str, Any], context: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The inventory's sudo password, evaluated; or why it cannot be used (a vault-encrypted one is not
    an inventory error: the hosts may not need it)."""
    var = chosen(values, BECOME_PASSWORD_VARS)
    if var is None:
        return None, None
    try:
        password = _text(templating.evaluate(context[var], context))
    except templating.TemplateProblem as exc:
        return None, f"the inventory's {var} cannot be used: {exc}"
    if password is not None and is_vault_ciphertext(password):
        # Ciphertext without the !vault tag is plain text to Ansible too: sudo would be sent it.
        return None, (
            f"the inventory's {var} cannot be used: it is ansible-vault ciphertext without the !vault "
            "tag, which trust-agent does not decrypt"
        )
    return password, None


def _refused(connection: Any, become_method: Any) -> str | None:
    """Why the host cannot be reached as the inventory says, where it cannot."""
    if connection is not None and str(connection) not in SSH_CONNECTIONS:
        return (
            f"ansible_connection={connection} is not SSH: trust-agent reaches hosts over SSH only "
            "(on the host itself, run `trust-agent apply --local` or the per-host daemon)"
        )
    if become_method is not None and str(become_method) not in SUDO:
        return f"ansible_become_method={become_method}: trust-agent becomes root with sudo only"
    return None


def _evaluated(host: str, var: str, context: Mapping[str, Any], where: str) -> Any:
    try:
        return templating.evaluate(context[var], context)
    except templating.TemplateProblem as exc:
        shown = "its !vault value" if isinstance(context[var], VaultText) else repr(context[var])
        raise InventoryError(f"{host}: {var}: cannot evaluate {shown}: {exc}", where=where) from None
