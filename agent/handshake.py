"""TLS handshakes from the controller with the trust the hosts get: the registry and each storage host
on https engines may be redirected to.

Like dockerd (trust-facts 4): system roots plus every CA the policy installs for the registry, used for
the registry *and* for the storage endpoint it redirects to.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import threading
from dataclasses import dataclass

from agent.errors import InvalidNameError, UsageError
from agent.names import host_of, validate_registry
from agent.trust import TrustPolicy

# Said by every refusal: which form is taken. The port is the one each checked address has.
_RESOLVE_FORM = "expected HOST:ADDR, ADDR an IPv4 or IPv6 address, no port (each check uses its own)"


def parse_resolve(values: tuple[str, ...]) -> dict[str, str]:
    """``("registry.test:198.51.100.10",)`` → ``{"registry.test": "198.51.100.10"}``.

    IPv6 may be bracketed (``registry.test:[2001:db8::10]``); the table holds it bare, as sockets take it.
    """
    table: dict[str, str] = {}
    for value in values:
        name, address = _resolve_entry(value)
        table[name] = address
    return table


def _resolve_entry(value: str) -> tuple[str, str]:
    name, sep, address = value.partition(":")
    if not sep or not name or not address:
        raise UsageError(f"--resolve {value!r}: {_RESOLVE_FORM}")
    try:
        validate_registry(name.removesuffix("."))  # a host name: what precedes the first ':' has no port
    except InvalidNameError:
        raise UsageError(f"--resolve {value!r}: {name!r} is not a host name; {_RESOLVE_FORM}") from None
    ip, after_port = _ip_address(address), _address_after_port(address)
    if ip is not None and after_port is None:
        return name, ip
    if ip is not None and after_port is not None:
        # 443:fd00::1 is an IPv6 address, and curl's port 443 with fd00::1: which one is meant is unknown.
        raise UsageError(
            f"--resolve {value!r}: {address!r} is an IPv6 address but also reads as curl's PORT:ADDR; "
            f"write {name}:[{ip}] for that address, or {name}:[{after_port}] for curl's; {_RESOLVE_FORM}"
        )
    if after_port is not None:
        raise UsageError(f"--resolve {value!r}: curl's HOST:PORT:ADDR form; {_RESOLVE_FORM}")
    raise UsageError(f"--resolve {value!r}: {address!r} is not an IP address; {_RESOLVE_FORM}")


def _address_after_port(text: str) -> str | None:
    """The address of ``text`` read as curl's ``PORT:ADDR`` (digits, then an IP address, bare or bracketed
    as curl takes it), or ``None`` where it does not read so."""
    port, sep, rest = text.partition(":")
    return _ip_address(rest) if sep and port.isascii() and port.isdigit() else None


def _ip_address(text: str) -> str | None:
    """``text`` as a socket address (IPv6 without brackets), or ``None`` when it is no IP address."""
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        return None


# How verify carries a TLS check that failed from the controller among the run's warnings (its exit
# code counts them); the JUnit report makes each a failing test case by it.
FAILED_CHECK_SUFFIX = " (a failed check from this machine: exit 1)"


@dataclass(frozen=True)
class HandshakeReport:
    ok: bool
    lines: tuple[str, ...]
    # --resolve entries no check used: a misspelt name, whose check then went to DNS. Not failed checks.
    warnings: tuple[str, ...] = ()


def _dns_name(name: str) -> str:
    """A host name as DNS compares it: capitals and a trailing dot (the root) change nothing."""
    return name.strip("[]").removesuffix(".").lower()


def resolved_address(resolve: dict[str, str], host: str) -> str:
    """Where to connect for ``host``: its ``--resolve`` address (matched as DNS matches names; the last
    entry given wins, as in the table), else ``host`` itself for the system's resolver."""
    wanted = _dns_name(host)
    found = [address for name, address in resolve.items() if _dns_name(name) == wanted]
    return found[-1] if found else host


def unused_resolve(resolve: dict[str, str], targets: list[str]) -> tuple[str, ...]:
    """A warning for each ``--resolve`` name that none of ``targets`` (``host[:port]``) connects to."""
    checked = {_dns_name(host_of(target)) for target in targets}
    return tuple(
        f"--resolve {name}:{address}: no TLS check connects to {name} (checked: "
        f"{', '.join(dict.fromkeys(targets))}); the entry was not used"
        for name, address in resolve.items()
        if _dns_name(name) not in checked
    )


def _context(policy: TrustPolicy) -> ssl.SSLContext:
    """What a host's dockerd trusts for the registry: the system's public roots and the policy's CAs.
    Not the controller's SSL_CERT_FILE/SSL_CERT_DIR: an organisation's CA there made the check pass
    while hosts, without it, failed every pull."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # certificates and host names verified
    cafile, capath = _system_roots()
    if cafile or capath:
        context.load_verify_locations(cafile=cafile, capath=capath)
    # dockerd (Go) takes any certificate in its root pool as a trust anchor, a non-CA one too (a server's
    # own leaf given as its CA): OpenSSL does so only with a partial chain allowed.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    for ca in policy.ca_files:
        context.load_verify_locations(cadata=ca.bundle.pem.decode("ascii"))
    return context


def _system_roots() -> tuple[str | None, str | None]:
    """The system's CA file and directory as OpenSSL was built with them, whatever the environment says."""
    paths = ssl.get_default_verify_paths()
    cafile = paths.openssl_cafile if os.path.isfile(paths.openssl_cafile) else None
    capath = paths.openssl_capath if os.path.isdir(paths.openssl_capath) else None
    return cafile, capath


def handshake(
    address: str, context: ssl.SSLContext, timeout: float = 5.0, resolve: dict[str, str] | None = None
) -> str | None:
    """Handshake with ``host[:port]`` (443 by default); ``None`` when it verifies, else the reason.

    The certificate is checked against the name, whatever address ``resolve`` connects to.
    """
    server_name = host_of(address).strip("[]")
    port = _port(address)
    try:
        connect_to = resolved_address(resolve or {}, server_name)
        with (
            socket.create_connection((connect_to, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=server_name),
        ):
            return None
    except ssl.SSLCertVerificationError as exc:
        return f"certificate not trusted: {exc.verify_message}"
    except socket.gaierror as exc:  # this machine's DNS: the engines' may know the name
        return (
            f"cannot connect: {exc.strerror or exc}: this machine cannot resolve {server_name}; give its "
            f"address with --resolve {server_name}:ADDR"
        )
    except (OSError, ssl.SSLError) as exc:
        return f"cannot connect: {exc}"


def _port(address: str) -> int:
    """The port of ``host[:port]`` (``[v6][:port]``), 443 where none is given, as engines connect."""
    return int(address.rsplit(":", 1)[1]) if address.count(":") == 1 or "]:" in address else 443


def _endpoint(address: str) -> tuple[str, int]:
    """Where a check of ``address`` connects and which name it verifies: ``registry.test`` and
    ``registry.test:443`` are one endpoint, and one handshake. Capitals change neither the connection
    nor the certificate's check; a trailing dot is kept, as the name presented differs."""
    return host_of(address).strip("[]").lower(), _port(address)


def _https_stores(policy: TrustPolicy) -> list[str]:
    """Every store on https engines may be redirected to: the first, then the others (S3 itself for
    engines in AWS's ranges, behind a cloudfront ipfilteredby), each followed with the same trust."""
    stores = [(policy.storage_scheme, policy.storage_endpoint), *policy.storage_alternatives]
    return [host for scheme, host in stores if scheme == "https" and host]


_SKIPPED = "tls: skipped: the policy lists the registry as insecure (skip-TLS)"


def _check_targets(policy: TrustPolicy) -> dict[str, tuple[str, ...]]:
    """Every endpoint a check connects to (the registries', then each https store's), each once, under
    the first name the policy gives it → the other names the policy gives the same endpoint."""
    names: dict[tuple[str, int], list[str]] = {}
    for address in dict.fromkeys([*policy.registries, *_https_stores(policy)]):
        names.setdefault(_endpoint(address), []).append(address)
    return {first: tuple(others) for first, *others in names.values()}


def _named(target: str, others: tuple[str, ...]) -> str:
    """``registry.test (also registry.test:443)``: the check's line names every name it covers."""
    return f"{target} (also {', '.join(others)})" if others else target


# The start of a problem that is the certificate's, not the network's: the hosts, given the same CAs,
# refuse it too (an unknown issuer, or a name it is not valid for).
_NOT_TRUSTED = "certificate not trusted"


# OpenSSL's words (3.x's, and 1.1's where they differ) for a certificate whose issuer is none of the
# CAs the check was made with: a CA the hosts hold and this machine was not given may be it. A name the
# certificate is not valid for, or a date, fails whatever the CAs: such a check is judged as ever.
_ISSUER_UNKNOWN = frozenset(
    {
        "unable to get issuer certificate",
        "unable to get local issuer certificate",
        "unable to verify the first certificate",
        "self-signed certificate",
        "self signed certificate",
        "self-signed certificate in certificate chain",
        "self signed certificate in certificate chain",
    }
)

# How a check's problem begins where the policy gives no storage CA (storage_ca_missing: a host holding
# trust-agent's keeps it) and the certificate's issuer is unknown: this machine cannot judge what the
# hosts hold, so the check says what it was made without, and claims no failed pull.
_WITHOUT_STORAGE_CA = "made without the storage CA (this run gives none; a host holding one keeps it)"


def _issuer_unknown(problem: str) -> bool:
    """Whether ``problem`` (as :func:`handshake` says it) is a certificate of an issuer not given."""
    said, sep, reason = problem.partition(": ")
    return said == _NOT_TRUSTED and bool(sep) and reason in _ISSUER_UNKNOWN


def _as_checked(problem: str | None, storage_ca_missing: bool) -> str | None:
    """``problem`` as this machine can judge it: an unknown issuer, without the storage CA the hosts
    may hold, is said to be a check made without it."""
    if problem is not None and storage_ca_missing and _issuer_unknown(problem):
        return f"{_WITHOUT_STORAGE_CA}: {problem}"
    return problem


def _assembled(
    targets: dict[str, tuple[str, ...]],
    problems: dict[str, str | None],
    resolve: dict[str, str] | None,
    storage_ca_missing: bool,
) -> HandshakeReport:
    """The report of the checks of ``targets``, each ``None`` where it verified, else its problem. A
    check made without the storage CA is not ``ok`` (verify proved nothing there), nor a failed pull."""
    said = {target: _as_checked(problems[target], storage_ca_missing) for target in targets}
    lines = tuple(
        f"tls {_named(target, others)}: {said[target] or 'ok'}" for target, others in targets.items()
    )
    ok = all(problems[target] is None for target in targets)
    return HandshakeReport(ok, lines, unused_resolve(resolve or {}, list(targets)))


def handshake_report(
    policy: TrustPolicy, timeout: float = 5.0, resolve: dict[str, str] | None = None
) -> HandshakeReport:
    if policy.insecure:
        return HandshakeReport(True, (_SKIPPED,))
    context = _context(policy)
    targets = _check_targets(policy)
    problems = {target: handshake(target, context, timeout, resolve) for target in targets}
    return _assembled(targets, problems, resolve, policy.storage_ca_missing)


class BackgroundHandshakes:
    """The checks of :func:`handshake_report`, each in a daemon thread of its own from the moment it is
    made, so they cost a run nothing while its hosts work. :meth:`report` waits for them at most
    ``timeout`` more: the controller may not reach the registry at all, and the run is not held for it."""

    def __init__(self, policy: TrustPolicy, timeout: float, resolve: dict[str, str]) -> None:
        self._policy, self._timeout, self._resolve = policy, timeout, resolve
        self._targets = {} if policy.insecure else _check_targets(policy)
        self._problems: dict[str, str | None] = {}
        self._all = threading.Thread(target=self._check_all, name="tls-checks", daemon=True)
        if self._targets:
            self._all.start()

    def _check_all(self) -> None:
        # One context for every check, built here: loading the system's roots takes about 50 ms of CPU,
        # not the fleet's to wait for, nor to pay once per target.
        context = _context(self._policy)
        checks = [
            threading.Thread(
                target=self._check, args=(target, context), name=f"tls-check {target}", daemon=True
            )
            for target in self._targets
        ]
        for check in checks:
            check.start()
        for check in checks:
            check.join()  # each handshake is bounded by its own timeout

    def _check(self, target: str, context: ssl.SSLContext) -> None:
        self._problems[target] = handshake(target, context, self._timeout, self._resolve)

    def report(self, *, wait: bool = True) -> HandshakeReport:
        """The checks as they stand once each has ended, or ``timeout`` has passed since this call; at once
        without ``wait`` (an interrupted run)."""
        if self._policy.insecure:
            return HandshakeReport(True, (_SKIPPED,))
        if wait and self._all.is_alive():
            self._all.join(self._timeout)
        unanswered = (
            f"cannot connect: no answer within {self._timeout:g} s"
            if wait
            else "cannot connect: not finished when the run was interrupted"
        )
        problems = {target: self._problems.get(target, unanswered) for target in self._targets}
        return _assembled(self._targets, problems, self._resolve, self._policy.storage_ca_missing)


@dataclass(frozen=True)
class RolloutChecks:
    """The TLS checks judged as rollout judges them: a certificate the hosts' CAs do not trust fails
    the run (every pull would fail); one not reached from here is only a note, as the controller may
    sit outside the hosts' network, and so is one checked without the storage CA the hosts may hold."""

    lines: tuple[str, ...]  # every check, as printed
    failed: tuple[str, ...]  # the lines of the checks failed on trust
    # warnings: the pulls that will fail, checks not made or not judged, --resolve unused
    notes: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.failed


def judged_for_rollout(report: HandshakeReport) -> RolloutChecks:
    """Fail on a certificate the hosts' CAs do not trust; note a check not reached from here, and one
    made without the storage CA the hosts may hold (:data:`_WITHOUT_STORAGE_CA`)."""
    said = [(line, line.partition(": ")[2]) for line in report.lines]
    failed = tuple(line for line, problem in said if problem.startswith(_NOT_TRUSTED))
    unreached = tuple(
        f"{line}: not checked from this machine (a note, not a failure: the hosts may reach it where "
        "this machine cannot)"
        for line, problem in said
        if problem.startswith("cannot connect")
    )
    unjudged = tuple(
        f"{line}: not judged (a note, not a failure: a host's pulls trust the storage CA it holds, which "
        "this machine was not given; give it with --storage-ca FILE to have it checked)"
        for line, problem in said
        if problem.startswith(_WITHOUT_STORAGE_CA)
    )
    notes = (*_pulls_will_fail(failed), *unreached, *unjudged, *report.warnings)
    return RolloutChecks(report.lines, failed, notes)


def _pulls_will_fail(failed: tuple[str, ...]) -> tuple[str, ...]:
    if not failed:
        return ()
    targets = ", ".join(line.removeprefix("tls ").partition(": ")[0] for line in failed)
    return (
        f"the hosts' pulls will fail: {targets} presented a certificate that the CAs they were given "
        "(and the system's) do not trust, as the failed TLS checks say; give the CA that issued it "
        "(--storage-ca, --registry-ca) and roll out again",
    )
