"""The job floor: the least that does the bench's job, with nothing a real tool needs around it.

``python tests/bench/floor_job.py LAB_DIR WORKERS CA_FILE DAEMON_JSON_FILE REGISTRY`` (inside the lab's
network namespace); prints the in-process seconds. A thread pool of paramiko transports (known_hosts
parsed once, strict host-key checking, the lab's key) runs one command per host that writes the CA file
and the expected daemon.json, both computed beforehand from the lab's known base, and reloads dockerd:

    mkdir -p DIR && printf %s CA > FILE && printf %s JSON > daemon.json && systemctl reload docker

No facts are read, nothing is checked first (another writer's change would be overwritten), nothing is
written atomically, nothing is verified, and every host is reloaded whether it changed or not: a cold
run only. It is what any tool doing this job pays on these hosts at the least (connection, session,
two processes, the reload), so a target below it cannot be met here by any tool.
"""

import os
import shlex
import socket
import sys
import time

import paramiko
from floor_pool import lab_addresses, run_pool

CA_NAME = "trust-agent-registry-ca.crt"


def job_command(registry: str, ca: bytes, daemon_json: bytes) -> str:
    directory = f"/etc/docker/certs.d/{registry}"
    q = shlex.quote
    return (
        f"mkdir -p {q(directory)} && printf %s {q(ca.decode())} > {q(directory + '/' + CA_NAME)} && "
        f"printf %s {q(daemon_json.decode())} > /etc/docker/daemon.json && systemctl reload docker"
    )


def main() -> int:
    lab, workers, ca_file, daemon_json_file, registry = sys.argv[1:6]
    start = time.monotonic()
    addresses = lab_addresses(lab)
    with open(ca_file, "rb") as f:
        ca = f.read()
    with open(daemon_json_file, "rb") as f:
        command = job_command(registry, ca, f.read())
    key = paramiko.Ed25519Key.from_private_key_file(os.path.join(lab, "ssh", "id_ed25519"))
    known = paramiko.HostKeys(os.path.join(lab, "ssh", "known_hosts"))

    def one(address: str) -> int:
        transport = paramiko.Transport(socket.create_connection((address, 22), timeout=30))
        try:
            entry = known.lookup(address) or {}
            transport.get_security_options().key_types = [t for t in entry if t.startswith("ssh-ed25519")]
            transport.start_client(timeout=30)
            server_key = transport.get_remote_server_key()
            if entry.get(server_key.get_name()) != server_key:
                raise paramiko.BadHostKeyException(address, server_key, server_key)
            transport.auth_publickey("root", key)
            channel = transport.open_session()
            channel.exec_command(command)
            while channel.recv(65536):
                pass
            return channel.recv_exit_status()
        finally:
            transport.close()

    return run_pool(addresses, int(workers), one, start)


if __name__ == "__main__":
    sys.exit(main())
