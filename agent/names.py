"""Registry addresses as they become certs.d directory names (trust-facts 5).

``reg.example.com`` and ``reg.example.com:443`` are different directories to dockerd, so names are
kept exactly as users spell them. Anything that could escape certs.d (``/``, ``..``, NUL, whitespace)
is refused before it reaches a path.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from agent.errors import InvalidNameError

_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def validate_registry(name: str, where: str | None = None) -> str:
    """Return ``name`` (``host``, ``host:port``, ``[v6]:port``) if it is a safe certs.d directory name.

    >>> validate_registry("reg.example.com:5000")
    'reg.example.com:5000'
    >>> validate_registry("../../etc")
    Traceback (most recent call last):
    ...
    agent.errors.InvalidNameError: registry '../../etc': not a host[:port] ...
    """
    host, port = _split_host_port(name, where)
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536 and not port.startswith("0")):
        raise InvalidNameError(f"registry {name!r}: port must be 1-65535", where)
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise InvalidNameError(f"registry {name!r}: not a valid IPv6 address", where) from None
        return name
    if len(host) > 253 or not all(_LABEL.match(label) for label in host.split(".")):
        raise InvalidNameError(
            f"registry {name!r}: not a host[:port] (letters, digits, '-', '.', optional :port)", where
        )
    return name


def _split_host_port(name: str, where: str | None) -> tuple[str, str | None]:
    if not name or any(c in name for c in "/\\\0 \t\r\n") or ".." in name:
        raise InvalidNameError(f"registry {name!r}: not a host[:port] (no '/', '..', spaces or NUL)", where)
    if name.startswith("["):
        end = name.find("]")
        if end < 0:
            raise InvalidNameError(f"registry {name!r}: unclosed '['", where)
        rest = name[end + 1 :]
        if rest and not rest.startswith(":"):
            raise InvalidNameError(f"registry {name!r}: junk after ']'", where)
        return name[: end + 1], (rest[1:] if rest else None)
    if name.count(":") > 1:
        raise InvalidNameError(f"registry {name!r}: write IPv6 addresses as [addr]:port", where)
    host, _, port = name.partition(":")
    return host, (port if _ else None)


def host_of(name: str) -> str:
    """The host part of a validated ``host[:port]`` (brackets kept for IPv6)."""
    if name.startswith("["):
        return name[: name.index("]") + 1]
    return name.partition(":")[0]


def registry_from_url(url: str, where: str | None = None) -> str:
    """``https://reg.example.com:5000/`` → ``reg.example.com:5000``; a bare ``host[:port]`` passes through.

    The default port is not added: users write ``reg.example.com``, and that is the directory dockerd reads.
    """
    if "://" not in url:
        return validate_registry(url.strip().rstrip("/"), where)
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidNameError(f"{url!r}: not an http(s) URL", where)
    netloc = parts.netloc.rpartition("@")[2]
    return validate_registry(netloc, where)


def endpoint_from_url(url: str, where: str | None = None) -> tuple[str, str]:
    """``https://s3.example.com:9000/path`` → ``("https", "s3.example.com:9000")``."""
    candidate = url.strip()
    if "://" not in candidate:
        candidate = "https://" + candidate
    parts = urlsplit(candidate)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidNameError(f"{url!r}: not an http(s) endpoint", where)
    return parts.scheme, validate_registry(parts.netloc.rpartition("@")[2], where)
