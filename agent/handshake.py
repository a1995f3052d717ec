"""TLS handshakes from the controller with the trust the hosts get: the registry and the storage host.

Like dockerd (trust-facts 4): system roots plus every CA the policy installs for the registry, used for
the registry *and* for the storage endpoint it redirects to.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from agent.names import host_of
from agent.trust import TrustPolicy


@dataclass(frozen=True)
class HandshakeReport:
    ok: bool
    lines: tuple[str, ...]


def _context(policy: TrustPolicy) -> ssl.SSLContext:
    context = ssl.create_default_context()
    for ca in policy.ca_files:
        context.load_verify_locations(cadata=ca.bundle.pem.decode("ascii"))
    return context


def handshake(address: str, context: ssl.SSLContext, timeout: float = 5.0) -> str | None:
    """Handshake with ``host[:port]`` (443 by default); ``None`` when it verifies, else the reason."""
    host = host_of(address)
    port = int(address.rsplit(":", 1)[1]) if address.count(":") == 1 or "]:" in address else 443
    server_name = host.strip("[]")
    try:
        with (
            socket.create_connection((server_name, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=server_name),
        ):
            return None
    except ssl.SSLCertVerificationError as exc:
        return f"certificate not trusted: {exc.verify_message}"
    except (OSError, ssl.SSLError) as exc:
        return f"cannot connect: {exc}"


def handshake_report(policy: TrustPolicy, timeout: float = 5.0) -> HandshakeReport:
    if policy.insecure:
        return HandshakeReport(True, ("tls: skipped: the policy lists the registry as insecure (skip-TLS)",))
    context = _context(policy)
    targets = list(policy.registries)
    if policy.storage_endpoint and policy.storage_scheme == "https":
        targets.append(policy.storage_endpoint)
    lines = []
    ok = True
    for target in dict.fromkeys(targets):
        problem = handshake(target, context, timeout)
        ok = ok and problem is None
        lines.append(f"tls {target}: {'ok' if problem is None else problem}")
    return HandshakeReport(ok, tuple(lines))
