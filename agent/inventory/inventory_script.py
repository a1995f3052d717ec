"""Executable inventories (Ansible's ``script`` plugin): run with ``--list``, their JSON read as Ansible
reads it.

A script prints ``{"GROUP": {"hosts": [...], "children": [...], "vars": {...}}, "_meta": {"hostvars":
{HOST: {...}}}}`` (a group may also be a bare list of hosts). Where ``_meta.hostvars`` is missing,
each host's variables come from ``SCRIPT --host HOST``. Vault and unsafe values travel as
``{"__ansible_vault": ...}`` and ``{"__ansible_unsafe": ...}``, as ``ansible-inventory --list`` writes them.
An inventory plugin's configuration (``plugin: amazon.aws.aws_ec2``) is read through such a script:
``#!/bin/sh`` + ``exec ansible-inventory -i aws_ec2.yml --list``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Mapping
from typing import Any

from agent.errors import InventoryError
from agent.inventory.builder import InventoryData
from agent.inventory.yamlfile import tags_from_json

TIMEOUT = 120.0  # a cloud API behind the script may be slow; a hung one must not hang the run
MAX_HOST_CALLS = 10_000  # `--host` per host, for scripts without _meta: bounded like everything else


def is_script(path: str) -> bool:
    """An executable file starting with ``#!`` (an INI file that merely has its exec bit is read as INI)."""
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        return False
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"#!"
    except OSError:
        return False


def parse_script(path: str, data: InventoryData) -> None:
    """Feed ``data`` from what ``path --list`` prints."""
    listing = _run(path, "--list")
    if not isinstance(listing, Mapping):
        raise InventoryError("inventory script --list printed no JSON object", where=path)
    meta = listing.get("_meta")
    hostvars: Any = meta.get("hostvars") if isinstance(meta, Mapping) else None
    if meta is not None and not isinstance(hostvars, Mapping):
        raise InventoryError("inventory script --list: _meta.hostvars is not an object", where=path)
    hosts: list[str] = []
    for name, body in listing.items():
        if name != "_meta":
            hosts += _group(str(name), body, data, path)
    for host in dict.fromkeys(hosts):
        if hostvars is not None:
            values = hostvars.get(host) or {}
        elif len(hosts) > MAX_HOST_CALLS:
            raise InventoryError(
                f"inventory script gives no _meta.hostvars for {len(hosts)} hosts", where=path
            )
        else:
            values = _run(path, "--host", host) or {}
        if not isinstance(values, Mapping):
            raise InventoryError(f"inventory script: the variables of {host!r} are not an object", where=path)
        for key, value in values.items():
            data.set_host_var(host, str(key), tags_from_json(value))


def _group(name: str, body: Any, data: InventoryData, path: str) -> list[str]:
    """One group of the listing, as Ansible's script plugin takes it; returns its hosts."""
    data.add_group(name, path)
    if isinstance(body, list):
        body = {"hosts": body}
    elif not isinstance(body, Mapping):
        raise InventoryError(f"inventory script: group {name!r} is a {type(body).__name__}", where=path)
    elif not any(k in body for k in ("hosts", "vars", "children")):
        body = {"hosts": [name], "vars": body}  # Ansible's reading of a malformed group: a host of it
    hosts = body.get("hosts") or []
    variables = body.get("vars") or {}
    if not isinstance(hosts, list) or not isinstance(variables, Mapping):
        raise InventoryError(
            f"inventory script: group {name!r}: hosts must be a list, vars an object", where=path
        )
    for host in hosts:
        data.add_host(str(host), name)
    for key, value in variables.items():
        data.set_group_var(name, str(key), tags_from_json(value))
    for child in body.get("children") or []:
        data.add_child(name, data.add_group(str(child), path), path)
    return [str(h) for h in hosts]


def _run(path: str, *args: str) -> Any:
    what = " ".join(args)
    try:
        # In a session of its own: on a timeout the script and anything it started are stopped (killing
        # the script alone would leave its children running).
        proc = subprocess.Popen(
            [os.path.abspath(path), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise InventoryError(f"cannot run inventory script: {exc.strerror}", where=path) from None
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise InventoryError(f"inventory script {what} ran over {TIMEOUT:g}s", where=path) from None
    except BaseException:  # Ctrl-C, SIGTERM: the script's session would outlive us otherwise
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    if proc.returncode != 0:
        said = err.decode(errors="replace").strip().splitlines()
        why = f": {said[-1]}" if said else ""
        raise InventoryError(f"inventory script {what} exited {proc.returncode}{why}", where=path)
    try:
        return json.loads(out) if out.strip() else None
    except ValueError as exc:
        raise InventoryError(f"inventory script {what} printed no JSON: {exc}", where=path) from None
