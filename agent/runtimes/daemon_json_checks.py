"""What dockerd would refuse in a daemon.json, checked before the file is written.

An invalid daemon.json makes dockerd exit at start and refuse a reload (fact 12). Engines from 23.0
check a file with ``dockerd --validate``; older ones (Debian 12's docker.io 20.10) cannot, so the agent
checks the keys it knows. The engine runs these checks on every host and ``dockerd --validate`` on
top where it exists.

The same directive as a flag and in the file is fatal at start and refused on reload (fact 13):
``conflicting_flags`` finds those from the daemon's command line.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from agent.errors import InvalidNameError
from agent.names import query_values_masked, validate_registry
from agent.runtimes.daemon_json import index_name

# Every key dockerd 20.10 accepts on Linux: the names of its flags, with list and map options under
# their plural json names (moby cmd/dockerd/config.go, config_unix.go, daemon/config). Unknown keys
# are refused: "the following directives don't match any configuration option".
DOCKER_20_10_KEYS: frozenset[str] = frozenset(
    {
        "allow-nondistributable-artifacts",
        "api-cors-header",
        "authorization-plugins",
        "bip",
        "bridge",
        "builder",
        "cgroup-parent",
        "cluster-advertise",
        "cluster-store",
        "cluster-store-opts",
        "containerd",
        "containerd-namespace",
        "containerd-plugins-namespace",
        "cpu-rt-period",
        "cpu-rt-runtime",
        "cri-containerd",
        "data-root",
        "debug",
        "default-address-pools",
        "default-cgroupns-mode",
        "default-gateway",
        "default-gateway-v6",
        "default-ipc-mode",
        "default-runtime",
        "default-shm-size",
        "default-ulimits",
        "dns",
        "dns-opts",
        "dns-search",
        "exec-opts",
        "exec-root",
        "experimental",
        "features",
        "fixed-cidr",
        "fixed-cidr-v6",
        "graph",
        "group",
        "host-gateway-ip",
        "hosts",
        "icc",
        "init",
        "init-path",
        "insecure-registries",
        "ip",
        "ip-forward",
        "ip-masq",
        "ip6tables",
        "iptables",
        "ipv6",
        "labels",
        "live-restore",
        "log-driver",
        "log-level",
        "log-opts",
        "max-concurrent-downloads",
        "max-concurrent-uploads",
        "max-download-attempts",
        "metrics-addr",
        "mtu",
        "network-control-plane-mtu",
        "network-diagnostic-port",
        "no-new-privileges",
        "node-generic-resources",
        "oom-score-adjust",
        "pidfile",
        "raw-logs",
        "registry-mirrors",
        "rootless",
        "runtimes",
        "seccomp-profile",
        "selinux-enabled",
        "shutdown-timeout",
        "storage-driver",
        "storage-opts",
        "swarm-default-advertise-addr",
        "swarm-raft-election-tick",
        "swarm-raft-heartbeat-tick",
        "tls",
        "tlscacert",
        "tlscert",
        "tlskey",
        "tlsverify",
        "userland-proxy",
        "userland-proxy-path",
        "userns-remap",
    }
)

_STRING_LISTS = ("insecure-registries", "registry-mirrors", "allow-nondistributable-artifacts")
_BOOLEANS = (
    "live-restore",
    "debug",
    "iptables",
    "ip6tables",
    "ipv6",
    "icc",
    "ip-forward",
    "ip-masq",
    "experimental",
    "selinux-enabled",
    "userland-proxy",
    "no-new-privileges",
    "raw-logs",
    "init",
    "tls",
    "tlsverify",
)
_NON_NEGATIVE_INTS = (
    "max-concurrent-downloads",
    "max-concurrent-uploads",
    "max-download-attempts",
    "shutdown-timeout",
    "mtu",
)


def check_daemon_json(
    doc: Mapping[str, object], *, known_keys: frozenset[str] | None = DOCKER_20_10_KEYS
) -> list[str]:
    """Problems dockerd would refuse at start or reload, one line each; ``[]`` when none are found.

    ``known_keys=None`` skips the unknown-key check (for engines whose ``dockerd --validate`` knows
    their own, newer keys).

    >>> check_daemon_json({"insecure-registries": ["reg.example.com", "http://10.0.0.0/8"], "debug": True})
    []
    >>> check_daemon_json({"insecure-registries": "reg.example.com", "debugg": True})
    ['insecure-registries: must be a list of strings', "unknown key 'debugg': dockerd refuses directives it does not know"]
    """
    problems: list[str] = []
    for key in _STRING_LISTS:
        value = doc.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            problems.append(f"{key}: must be a list of strings")
    insecure = doc.get("insecure-registries")
    if isinstance(insecure, list):
        problems.extend(_insecure_entry_problem(e) for e in insecure if isinstance(e, str) and not _loads(e))
    mirrors = doc.get("registry-mirrors")
    if isinstance(mirrors, list):
        problems.extend(
            f"registry-mirrors: {shown_value(entry)!r} is not an http(s) URL without path, query or fragment"
            for entry in mirrors
            if isinstance(entry, str) and not _is_mirror(entry)
        )
    for key in _BOOLEANS:
        if key in doc and not isinstance(doc[key], bool):
            problems.append(f"{key}: must be true or false")
    for key in _NON_NEGATIVE_INTS:
        if key in doc:
            value = doc[key]
            # bool is an int in Python, not in Go's encoding/json.
            if not isinstance(value, int) or isinstance(value, bool):
                problems.append(f"{key}: must be an integer")
            elif value < 0:
                problems.append(f"{key}: must not be negative")
    if known_keys is not None:
        problems.extend(
            f"unknown key {key!r}: dockerd refuses directives it does not know"
            for key in doc
            if key not in known_keys
        )
    return problems


def _loads(entry: str) -> bool:
    # dockerd strips http:// or https:// (warning only), then reads the rest.
    return _is_index_name_or_cidr(index_name(entry))


def _insecure_entry_problem(entry: str) -> str:
    shown = shown_value(entry)
    if "://" in index_name(entry):
        return f"insecure-registries: {shown!r}: only http:// or https:// may come before a registry"
    return f"insecure-registries: {shown!r} is not a host[:port] or a CIDR"


# What stands for a hidden part of a value, as dockerd masks a mirror's password (Go's URL.Redacted).
_MASK = "xxxxx"


def shown_value(entry: str) -> str:
    """A daemon.json value as these messages quote it: a URL's password and its query's values and
    fragment masked, for reports and logs are read by people the 0600 daemon.json is kept from.
    The userinfo runs to the value's last '@', so a password holding '/', '?' or '#' is masked whole.

    >>> shown_value("https://muser:MIRRPW@mirror.corp:5000/v2/?token=T0K#frag")
    'https://muser:xxxxx@mirror.corp:5000/v2/?token=xxxxx#xxxxx'
    >>> shown_value("u:12/34@reg.example:5000")
    'u:xxxxx@reg.example:5000'
    """
    scheme, sep, rest = entry.partition("://")
    if not sep:
        scheme, rest = "", entry
    userinfo, at, address = rest.rpartition("@")
    if at and ":" in userinfo:
        userinfo = f"{userinfo.partition(':')[0]}:{_MASK}"
    return f"{scheme}{sep}{userinfo}{at}{query_values_masked(address, _MASK)}"


def _is_index_name_or_cidr(entry: str) -> bool:
    # dockerd takes an entry with "/" as a CIDR, anything else as a registry host[:port].
    if "/" in entry:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return False
        return True
    try:
        validate_registry(entry)
    except InvalidNameError:
        return False
    return True


def _is_mirror(entry: str) -> bool:
    # moby registry.ValidateMirror: http(s), a host, and nothing after it but "/".
    try:
        parts = urlsplit(entry)
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.netloc)
        and parts.path in ("", "/")
        and not parts.query
        and not parts.fragment
    )


# daemon.json keys whose flag has another name: list/map options are plural in the file.
_FLAG_TO_KEY: dict[str, str] = {
    "add-runtime": "runtimes",
    "authorization-plugin": "authorization-plugins",
    "cluster-store-opt": "cluster-store-opts",
    "default-address-pool": "default-address-pools",
    "default-ulimit": "default-ulimits",
    "dns-opt": "dns-opts",
    "exec-opt": "exec-opts",
    "host": "hosts",
    "insecure-registry": "insecure-registries",
    "label": "labels",
    "log-opt": "log-opts",
    "node-generic-resource": "node-generic-resources",
    "registry-mirror": "registry-mirrors",
    "storage-opt": "storage-opts",
}
_SHORT_FLAGS: dict[str, str] = {
    "D": "debug",
    "G": "group",
    "H": "host",
    "b": "bridge",
    "g": "graph",
    "l": "log-level",
    "p": "pidfile",
    "s": "storage-driver",
}
# dockerd merges these from both places instead of refusing (moby daemon/config skipDuplicates).
_MERGED_KEYS = frozenset({"runtimes"})


def flag_names(flags: Sequence[str]) -> dict[str, str]:
    """Long flag names given on dockerd's command line → the argument as written.

    >>> flag_names(("-H", "fd://", "--insecure-registry=reg:5000", "--containerd", "/run/c.sock"))
    {'host': '-H', 'insecure-registry': '--insecure-registry=reg:5000', 'containerd': '--containerd'}
    """
    found: dict[str, str] = {}
    for arg in flags:
        if arg.startswith("--") and len(arg) > 2:
            found.setdefault(arg[2:].partition("=")[0], arg)
        elif arg.startswith("-") and len(arg) > 1 and arg[1] in _SHORT_FLAGS:
            found.setdefault(_SHORT_FLAGS[arg[1]], arg)
    return found


def flag_values(flags: Sequence[str], name: str) -> list[str]:
    """Every value of ``--name`` on the command line, in order: ``--name V``, ``--name=V`` and, where
    dockerd has a one-letter form for it (``-H`` for ``--host``), ``-H V``, ``-HV`` and ``-H=V``.

    >>> flag_values(("-H", "fd://", "--host=tcp://0.0.0.0:2376", "-Hunix:///run/d.sock"), "host")
    ['fd://', 'tcp://0.0.0.0:2376', 'unix:///run/d.sock']
    """
    short = next((f"-{letter}" for letter, long in _SHORT_FLAGS.items() if long == name), None)
    found: list[str] = []
    for i, arg in enumerate(flags):
        following = [flags[i + 1]] if i + 1 < len(flags) else []
        if arg == f"--{name}" or arg == short:
            found += following
        elif arg.startswith(f"--{name}="):
            found.append(arg.partition("=")[2])
        elif short is not None and arg.startswith(short):
            found.append(arg[len(short) :].removeprefix("="))
    return found


def flag_value(flags: Sequence[str], name: str) -> str | None:
    """The value of ``--name=V`` or ``--name V`` on the command line (the last one wins)."""
    values = flag_values(flags, name)
    return values[-1] if values else None


def config_file_flag(flags: Sequence[str]) -> str | None:
    """The ``--config-file`` dockerd was started with, if any: the last one given, as dockerd's own
    flag parsing takes it.

    >>> config_file_flag(("--config-file", "/etc/a.json", "--config-file=/etc/b.json"))
    '/etc/b.json'
    """
    return flag_value(flags, "config-file")


def api_hosts(flags: Sequence[str], doc: Mapping[str, object]) -> list[str]:
    """Where dockerd serves its API: every ``-H``/``--host`` on its command line and daemon.json's
    ``hosts``; empty where neither sets one.

    >>> api_hosts(("-H", "fd://", "--host=tcp://0.0.0.0:2376"), {"hosts": ["unix:///run/d.sock"]})
    ['fd://', 'tcp://0.0.0.0:2376', 'unix:///run/d.sock']
    """
    hosts = doc.get("hosts")
    return flag_values(flags, "host") + (
        [h for h in hosts if isinstance(h, str)] if isinstance(hosts, list) else []
    )


def conflicting_flags(doc: Mapping[str, object], flags: Sequence[str]) -> list[tuple[str, str]]:
    """``(key, flag as written)`` for every daemon.json key also set as a dockerd flag (fact 13).

    >>> conflicting_flags({"insecure-registries": [], "debug": True}, ("--insecure-registry", "r"))
    [('insecure-registries', '--insecure-registry')]
    """
    given = flag_names(flags)
    by_key = {_FLAG_TO_KEY.get(name, name): arg for name, arg in given.items()}
    return [(key, by_key[key]) for key in doc if key in by_key and key not in _MERGED_KEYS]
