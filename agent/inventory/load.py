"""``load_inventory``: read an inventory file in any supported format (auto-detected)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from agent.errors import InventoryError
from agent.inventory.addresses import parse_address
from agent.inventory.ansible_ini import parse_ini
from agent.inventory.ansible_yaml import parse_ansible_yaml
from agent.inventory.builder import InventoryData
from agent.inventory.inventory_script import is_script, parse_script
from agent.inventory.model import Inventory
from agent.inventory.native import looks_native, parse_native
from agent.inventory.varsdirs import VarsDirs
from agent.inventory.yamlfile import parse_yaml, refuse_vault_file

YAML_EXTENSIONS = (".yml", ".yaml", ".json")
# What Ansible skips in an inventory directory (IGNORED_ALWAYS, and INVENTORY_IGNORE_EXTS' default).
_IGNORED_EXTENSIONS = (
    ".pyc",
    ".pyo",
    ".swp",
    ".bak",
    "~",
    ".rpm",
    ".md",
    ".txt",
    ".rst",
    ".orig",
    ".cfg",
    ".retry",
)
_IGNORED = re.compile(
    "|".join(
        [
            r"^\.",
            "^host_vars$",
            "^group_vars$",
            "^vars_plugins$",
            *(re.escape(e) + "$" for e in _IGNORED_EXTENSIONS),
        ]
    )
)


def load_inventory(path: str) -> Inventory:
    """Read ``path``: trust-agent YAML, Ansible YAML or INI (with ``group_vars``/``host_vars``), an
    executable inventory script, or a directory of these, as Ansible reads one.

    Like ``ansible -i 'h1,h2,'``, a string with a comma that is not an existing file is a host list.
    Every problem is an :class:`InventoryError` naming the file and, where known, the line.
    """
    return _printable_names(_load(path), path)


def _printable_names(inv: Inventory, path: str) -> Inventory:
    # A host name is printed in every table and log line: one with a control character (an escape
    # sequence, a carriage return) would rewrite the engineer's terminal, not name a host.
    for host in inv.hosts:
        if not host.name.isprintable():
            raise InventoryError(f"host name {host.name!r} holds a control character", where=path)
    return inv


def _load(path: str) -> Inventory:
    if "," in path and not os.path.exists(path):
        return host_list(path)
    data = InventoryData(path)
    if os.path.isdir(path):
        sources = directory_sources(path)
        if not sources:
            raise InventoryError("no inventory files in this directory", where=path)
        for source in sources:
            data.source = source
            if _read_source(source, data) is not None:
                raise InventoryError("a trust-agent inventory cannot be one of a directory's", where=source)
        data.source = path
        dirs = VarsDirs(os.path.abspath(path))
    else:
        native = _read_source(path, data)
        if native is not None:
            return native
        dirs = VarsDirs(os.path.dirname(os.path.abspath(path)))
    inv = data.build(dirs.group, dirs.host)
    if not inv.hosts:
        raise InventoryError("inventory holds no hosts", where=path)
    return inv


def directory_sources(directory: str) -> list[str]:
    """The files of an inventory directory, as Ansible takes them: sorted, subdirectories recursively,
    without hidden files, ``group_vars``/``host_vars`` and Ansible's ignored extensions."""
    found: list[str] = []
    for entry in sorted(os.listdir(directory)):
        if _IGNORED.search(entry):
            continue
        full = os.path.join(directory, entry)
        found += directory_sources(full) if os.path.isdir(full) else [full]
    return found


def _read_source(path: str, data: InventoryData) -> Inventory | None:
    """Feed ``data`` from the file ``path``; a trust-agent inventory is returned whole instead."""
    if is_script(path):
        parse_script(path, data)
        return None
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        hint = single_host_hint(path) if isinstance(exc, FileNotFoundError) else ""
        raise InventoryError(f"cannot read inventory: {reason}{hint}", where=path) from None
    refuse_vault_file(text, "inventory", path)

    is_yaml_file = path.lower().endswith(YAML_EXTENSIONS)
    doc: object = None
    yaml_error: InventoryError | None = None
    try:
        doc = parse_yaml(text, path)
    except InventoryError as exc:
        yaml_error = exc  # not YAML: INI (the common case for a file named "hosts")
    if isinstance(doc, Mapping) and doc and looks_native(doc):
        return parse_native(doc, path)
    if isinstance(doc, Mapping) and "plugin" in doc and not isinstance(doc["plugin"], Mapping):
        raise InventoryError(
            f"this is the configuration of the inventory plugin {doc['plugin']}, whose hosts only Ansible "
            "can list: pass an executable script instead that runs `ansible-inventory -i "
            f"{os.path.basename(path)} --list`",
            where=path,
        )
    if isinstance(doc, Mapping) and doc:
        parse_ansible_yaml(doc, data)
    elif is_yaml_file:
        _yaml_named_ini(text, data, yaml_error)
    else:
        try:
            parse_ini(text, data)
        except InventoryError as exc:
            if not text.startswith("#!"):
                raise
            # A script without its exec bit is read as INI, as Ansible reads it: say what was meant.
            raise InventoryError(
                f"{exc.message} (the file starts with #! but is not executable: chmod +x it to run it as "
                "an inventory script)",
                where=exc.where,
            ) from None
    return None


def _yaml_named_ini(text: str, data: InventoryData, yaml_error: InventoryError | None) -> None:
    """A ``.yml``/``.yaml``/``.json`` file that is no YAML inventory, read as INI where it is INI, as
    Ansible's ini plugin reads it after its yaml plugin; where it is not, the YAML problem is the one
    that says what is wrong with it."""
    try:
        parse_ini(text, data)
    except InventoryError:
        raise yaml_error or InventoryError(
            "YAML inventory must be a mapping of groups", where=data.source
        ) from None


def single_host_hint(path: str) -> str:
    """What to add where inventory ``path`` does not exist and reads as one host (``-i h1``): Ansible
    takes a host list only with a comma, which ``-i h1`` leaves out. Not for a path (a slash) nor a name
    with an inventory file's extension.

    >>> single_host_hint("h1"), single_host_hint("./h1"), single_host_hint("hosts.yml")
    (' (a single host is given as "h1,", with a trailing comma)', '', '')
    """
    if "/" in path or path.lower().endswith((*YAML_EXTENSIONS, ".ini")) or parse_address(path) is None:
        return ""
    return f' (a single host is given as "{path},", with a trailing comma)'


def host_list(spec: str) -> Inventory:
    """``h1,h2:2222,`` → an inventory of ungrouped hosts, read as Ansible's ``host_list`` plugin reads
    it: no ranges (``web[1:2]`` is one host of that name), an entry that is not an address taken whole
    with no port (``ops@h1:2222``), and a host named twice keeps its first port."""
    data = InventoryData("<host list>")
    data.inventory_file = spec
    for item in spec.split(","):
        if item.strip():
            name, port = _host_list_entry(item.strip())
            data.add_host(name, None, port)
    if not data.hosts:
        raise InventoryError(f"host list {spec!r} names no hosts")
    return data.build()


def _host_list_entry(item: str) -> tuple[str, int | None]:
    parsed = parse_address(item)
    if parsed is None or "[" in parsed[0]:
        return item, None
    return parsed
