"""pyinfra inventory of a lab fleet: the hosts of BENCH_LAB_DIR/lab.json, strict host-key checking.

With BENCH_TARGET=ADDRESS:PORT (and BENCH_KNOWN_HOSTS), that one host instead (the one-host runs).
"""

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

_TARGET = os.environ.get("BENCH_TARGET")
if _TARGET:
    _ADDRESS, _, _PORT = _TARGET.rpartition(":")
    _DATA.update(ssh_port=int(_PORT), ssh_known_hosts_file=os.environ["BENCH_KNOWN_HOSTS"])
    hosts = [(_ADDRESS, dict(_DATA))]
else:
    hosts = [(h["address"], dict(_DATA)) for h in _STATE["hosts"]]
