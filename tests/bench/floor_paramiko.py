"""The paramiko floor: a thread pool of clients that connect to every lab host and run one ``cat``.

``python tests/bench/floor_paramiko.py LAB_DIR [WORKERS]`` (inside the lab's network namespace); prints
the in-process seconds. Strict host-key checking, the lab's key, paramiko's default algorithms.
"""

import os
import sys
import time

import paramiko
from floor_pool import lab_addresses, run_pool


def main() -> int:
    lab = sys.argv[1]
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    start = time.monotonic()
    addresses = lab_addresses(lab)
    key = paramiko.Ed25519Key.from_private_key_file(os.path.join(lab, "ssh", "id_ed25519"))
    known = os.path.join(lab, "ssh", "known_hosts")

    def one(address: str) -> int:
        client = paramiko.SSHClient()
        client.load_host_keys(known)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(address, username="root", pkey=key, allow_agent=False, look_for_keys=False)
            _, stdout, _ = client.exec_command("cat /etc/docker/daemon.json")
            stdout.read()
            return stdout.channel.recv_exit_status()
        finally:
            client.close()

    return run_pool(addresses, workers, one, start)


if __name__ == "__main__":
    sys.exit(main())
