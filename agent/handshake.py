"""TLS handshakes from the controller with the trust the hosts get: the registry and the storage host.

Like dockerd (trust-facts 4): system roots plus every CA the policy installs for the registry, used for
the registry *and* for the storage endpoint it redirects to.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from agent.errors import UsageError
from agent.names import host_of
from agent.trust import TrustPolicy


def parse_resolve(values: tuple[str, ...]) -> dict[str, str]:
    """``("registry.test:198.51.100.10",)`` → ``{"registry.test": "198.51.100.10"}``."""
    table: dict[str, str] = {}
    for value in values:
        name, sep, address = value.partition(":")
        if not sep or not name or not address:
            raise UsageError(f"--resolve {value!r}: expected HOST:ADDRESS")
        table[name] = address
    return table


@dataclass(frozen=True)
class HandshakeReport:
    ok: bool
    lines: tuple[str, ...]


def _context(policy: TrustPolicy) -> ssl.SSLContext:
    context = ssl.create_default_context()
    for ca in policy.ca_files:
        context.load_verify_locations(cadata=ca.bundle.pem.decode("ascii"))
    return context


def handshake(
    address: str, context: ssl.SSLContext, timeout: float = 5.0, resolve: dict[str, str] | None = None
) -> str | None:
    """Handshake with ``host[:port]`` (443 by default); ``None`` when it verifies, else the reason.

    The certificate is checked against the name, whatever address ``resolve`` connects to.
    """
    host = host_of(address)
    port = int(address.rsplit(":", 1)[1]) if address.count(":") == 1 or "]:" in address else 443
    server_name = host.strip("[]")
    try:
        connect_to = (resolve or {}).get(server_name, server_name)
        with (
            socket.create_connection((connect_to, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=server_name),
        ):
            return None
    except ssl.SSLCertVerificationError as exc:
        return f"certificate not trusted: {exc.verify_message}"
    except (OSError, ssl.SSLError) as exc:
        return f"cannot connect: {exc}"


def handshake_report(
    policy: TrustPolicy, timeout: float = 5.0, resolve: dict[str, str] | None = None
) -> HandshakeReport:
    if policy.insecure:
        return HandshakeReport(True, ("tls: skipped: the policy lists the registry as insecure (skip-TLS)",))
    context = _context(policy)
    targets = list(policy.registries)
    if policy.storage_endpoint and policy.storage_scheme == "https":
        targets.append(policy.storage_endpoint)
    lines = []
    ok = True
    for target in dict.fromkeys(targets):
        problem = handshake(target, context, timeout, resolve)
        ok = ok and problem is None
        lines.append(f"tls {target}: {'ok' if problem is None else problem}")
    return HandshakeReport(ok, tuple(lines))
