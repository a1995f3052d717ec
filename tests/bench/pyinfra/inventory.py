"""pyinfra inventory of a lab fleet: the hosts of BENCH_LAB_DIR/lab.json, strict host-key checking."""

import json
import os

_LAB = os.environ["BENCH_LAB_DIR"]
with open(os.path.join(_LAB, "lab.json")) as _f:
    _STATE = json.load(_f)

_DATA = {
    "ssh_user": "root",
    "ssh_key": os.path.join(_LAB, "ssh", "id_ed25519"),
    "ssh_known_hosts_file": os.path.join(_LAB, "ssh", "known_hosts"),
    "ssh_strict_host_key_checking": "yes",
    "ssh_allow_agent": False,
    "ssh_look_for_keys": False,
}

hosts = [(h["address"], dict(_DATA)) for h in _STATE["hosts"]]
