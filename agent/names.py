"""Registry addresses as they become certs.d directory names (trust-facts 5).

``reg.example.com`` and ``reg.example.com:443`` are different directories to dockerd, so names are
kept exactly as users spell them. Anything that could escape certs.d (``/``, ``..``, NUL, whitespace)
is refused before it reaches a path.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from urllib.parse import urlsplit

from agent.errors import InvalidNameError

_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")

# Docker Hub's names in moby's registry package (IndexName, IndexHostname, DefaultRegistryHost). For
# docker.io and index.docker.io images dockerd reads no certs.d directory: it goes to its registry-mirrors,
# then to registry-1.docker.io with the system's CAs alone (lookupV2Endpoints), and it keeps docker.io
# secure whatever insecure-registries lists (loadInsecureRegistries).
_DOCKER_HUB = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def validate_registry(name: str, where: str | None = None) -> str:
    """Return ``name`` (``host``, ``host:port``, ``[v6]:port``) if it is a safe certs.d directory name.

    >>> validate_registry("reg.example.com:5000")
    'reg.example.com:5000'
    >>> validate_registry("../../etc")
    Traceback (most recent call last):
    ...
    agent.errors.InvalidNameError: registry '../../etc': not a host[:port] ...
    """
    _check_host_port(name, "registry", where, strict=True)
    return name


def registry_from_option(text: str, where: str | None = None) -> str:
    """A registry given on the command line (``--registry``), exactly as image names spell it: ``host``,
    ``host:port`` or ``[v6]:port``. A scheme, a path or a ``user@`` is refused, and the error names
    the registry to give: ``https://reg.example.com:5000/v2/`` says "the scheme https:// and a path
    are no part of a registry name: give reg.example.com:5000, ...".
    """
    shown = without_userinfo(text)  # never shown with its credentials
    scheme, sep, rest = shown.partition("://")
    if not sep:
        scheme, rest = "", shown
    authority = _AUTHORITY_END.split(rest, maxsplit=1)[0]
    userinfo = shown != text
    if userinfo and not rest.startswith("...@"):
        shown = f"{scheme}{sep}...@{rest}"
    extras = [
        *(["a user@"] if userinfo else []),
        *([f"the scheme {scheme}{sep}"] if sep else []),
        *(["a path"] if authority != rest else []),
    ]
    if not extras:
        return not_docker_hub(validate_registry(text, where), where)
    name = authority.rpartition("@")[2]
    if not _host_port_ok(name, strict=True):
        # Nothing sensible to suggest: say what is wrong with the address itself.
        if sep:
            registry_from_url(shown, where)
        validate_registry(shown, where)
    verb = "is" if len(extras) == 1 else "are"
    raise InvalidNameError(
        f"registry {shown!r}: {', '.join(extras[:-1])}{' and ' if len(extras) > 1 else ''}{extras[-1]} "
        f"{verb} no part of a registry name: give {name}, as image names spell it (certs.d/{name}/)",
        where,
    )


def not_docker_hub(name: str, where: str | None = None) -> str:
    """Return ``name`` unless it is Docker Hub's, which no trust on the engines can change.

    >>> not_docker_hub("index.docker.io")
    Traceback (most recent call last):
    ...
    agent.errors.InvalidNameError: registry 'index.docker.io' is Docker Hub: ...
    """
    if host_of(name).removesuffix(".").lower() in _DOCKER_HUB:
        raise InvalidNameError(
            f"registry {name!r} is Docker Hub: dockerd reads no certs.d directory for it (it pulls "
            "docker.io images from its registry-mirrors or from registry-1.docker.io, trusted by the "
            "system's CAs alone) and keeps it secure whatever insecure-registries says. Give the address "
            "your private registry's images are named by (a mirror of Docker Hub goes in daemon.json's "
            "registry-mirrors, with its own certs.d directory)",
            where,
        )
    return name


def _check_host_port(name: str, what: str, where: str | None, *, strict: bool) -> None:
    """Refuse what is not ``host[:port]``; ``strict`` (a directory name) also refuses a trailing dot and
    non-ASCII names, which a storage endpoint, never a file name, may have."""
    host, port = _split_host_port(name, what, where)
    # ASCII digits only: str.isdigit() also takes other scripts' digits, which no port is written in.
    if port is not None and port.isascii() and port.isdigit() and len(port) > 1 and port.startswith("0"):
        raise InvalidNameError(
            f"{what} {name!r}: write the port without leading zeros, as image references do", where
        )
    if port is not None and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise InvalidNameError(f"{what} {name!r}: port must be 1-65535", where)
    if host.startswith("["):
        if "%" in host:
            raise InvalidNameError(f"{what} {name!r}: an IPv6 zone (%...) is not part of an address", where)
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise InvalidNameError(f"{what} {name!r}: not a valid IPv6 address", where) from None
        return
    if not strict:
        host = host.removesuffix(".")
        if not host.isascii():
            with contextlib.suppress(UnicodeError):  # the label check below refuses it
                host = host.encode("idna").decode("ascii")
    if len(host) > 253 or not all(_LABEL.match(label) for label in host.split(".")):
        raise InvalidNameError(
            f"{what} {name!r}: not a host[:port] (letters, digits, '-', '.', optional :port)", where
        )


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _split_host_port(name: str, what: str, where: str | None) -> tuple[str, str | None]:
    if not name or any(c in name for c in "/\\\0 \t\r\n") or ".." in name:
        raise InvalidNameError(f"{what} {name!r}: not a host[:port] (no '/', '..', spaces or NUL)", where)
    if name.startswith("["):
        end = name.find("]")
        if end < 0:
            raise InvalidNameError(f"{what} {name!r}: unclosed '['", where)
        rest = name[end + 1 :]
        if rest and not rest.startswith(":"):
            raise InvalidNameError(f"{what} {name!r}: junk after ']'", where)
        return name[: end + 1], (rest[1:] if rest else None)
    if name.count(":") > 1:
        if _is_ipv6(name):
            raise InvalidNameError(f"{what} {name!r}: write IPv6 addresses as [addr]:port", where)
        raise InvalidNameError(f"{what} {name!r}: more than one ':' (a name takes one :port at most)", where)
    host, _, port = name.partition(":")
    return host, (port if _ else None)


def host_of(name: str) -> str:
    """The host part of a validated ``host[:port]`` (brackets kept for IPv6)."""
    if name.startswith("["):
        return name[: name.index("]") + 1]
    return name.partition(":")[0]


def without_userinfo(url: str) -> str:
    """``https://user:pw@host/x`` → ``https://host/x``: credentials in a URL are never kept or shown.

    >>> without_userinfo("https://admin:s3cret@reg.example.com:5000/v2/")
    'https://reg.example.com:5000/v2/'
    >>> without_userinfo("reg.example.com")
    'reg.example.com'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority = _AUTHORITY_END.split(rest, maxsplit=1)[0]
    tail = rest[len(authority) :]
    if "@" in tail and _may_be_userinfo(authority, tail):
        # user:password@ whose password holds '/', '?' or '#': the URL's authority ends inside it, and
        # all of it up to the last '@' may be the password.
        return f"{scheme}{sep}...@{tail.rpartition('@')[2]}"
    return f"{scheme}{sep}{authority.rpartition('@')[2]}{tail}"


def cut_at_userinfo(shown: str) -> bool:
    """Whether ``shown``, :func:`without_userinfo`'s answer for a URL, is cut at a ``user:password@``
    holding '/', '?' or '#' (``https://...@host``); an ``...@`` further on is the URL's own text.

    >>> cut_at_userinfo("https://...@reg.example.com"), cut_at_userinfo("https://s3:9/?r=https://...@x")
    (True, False)
    """
    return shown.partition("://")[2].startswith("...@")


# Where a URL's authority ends (RFC 3986, and Go's url.Parse, which the registry uses).
_AUTHORITY_END = re.compile(r"[/?#]")


def _may_be_userinfo(authority: str, tail: str) -> bool:
    """Whether a URL's authority, with an '@' in the ``tail`` after it, may be only the start of a
    ``user:password@``: where it is no ``host[:port]`` once its own ``user@`` is dropped (``u:@#@proxy``),
    and where it is a ``host:port`` with no ``user@``, as ``user:12`` of ``user:12/34@proxy`` reads,
    unless each '@' after it is in a query's ``name=value`` and none may end a ``user:password@``
    (``host:9000/b?X-Amz-Credential=a@b&x-id=1``)."""
    _, at, host = authority.rpartition("@")
    if not _host_port_ok(host):
        return True
    if at or ":" not in host or host.startswith("["):
        return False
    return not _ats_in_query_values(tail) or _an_at_sign_may_end_userinfo(tail)


def _ats_in_query_values(tail: str) -> bool:
    """Whether each '@' of ``tail`` (what follows a URL's authority) is in the value of one of its
    query's ``name=value`` pairs: RFC 3986 ends the authority at the first '/', '?' or '#', so such an
    '@' is the query's. A password holding '/' or '?' reads otherwise (``user:12?34@proxy``: no
    ``name=`` before its '@'), and stays hidden.

    >>> _ats_in_query_values("/b?X-Amz-Credential=a@b&x-id=1"), _ats_in_query_values("?34@proxy:3128")
    (True, False)
    """
    rest, _, fragment = tail.partition("#")
    before, _, query = rest.partition("?")
    if "@" in before or "@" in fragment:
        return False
    pairs = [pair.partition("=") for pair in query.split("&") if "@" in pair]
    return all(name and equals and "@" not in name for name, equals, _ in pairs)


def _an_at_sign_may_end_userinfo(tail: str) -> bool:
    """Whether an '@' of ``tail`` may end a ``user:password@`` whose password holds '/', '?' or '#':
    what follows it reads as the ``host[:port]`` of the URL, then its end, path, query or fragment.
    ``user:1234?a=b@proxy:3128`` is such a URL as much as a query ``a=b@proxy:3128``: a password shown
    costs more than an address refused.

    >>> _an_at_sign_may_end_userinfo("?a=b@proxy:3128"), _an_at_sign_may_end_userinfo("?a=b@c&x-id=1")
    (True, False)
    """
    return any(_may_be_host_and_port(tail[i + 1 :]) for i, c in enumerate(tail) if c == "@")


def _may_be_host_and_port(text: str) -> bool:
    """Whether ``text`` starts with a ``host[:port]`` (a hostname, an IPv4 or a ``[IPv6]``, then ``:``
    and digits or nothing) that runs to its end or to a '/', '?' or '#'. The port is not range-checked:
    the password of ``user:1?x@proxy:99999`` is hidden all the same."""
    authority = _AUTHORITY_END.split(text, maxsplit=1)[0]
    host = re.sub(r":[0-9]*$", "", authority)
    if host.startswith("[") and host.endswith("]"):
        return True
    return ":" not in host and _host_port_ok(host)


def _host_port_ok(text: str, *, strict: bool = False) -> bool:
    try:
        _check_host_port(text, "", None, strict=strict)
    except InvalidNameError:
        return False
    return True


def _url_parts(url: str, what: str, where: str | None) -> tuple[str, str]:
    """``(scheme, host[:port])`` of an http(s) URL or a bare ``host[:port]`` (scheme ``""``)."""
    shown = without_userinfo(url.strip())
    # urlsplit drops tabs and newlines silently: a value holding them is not the address it looks like.
    control = next((i for i, c in enumerate(shown) if ord(c) < 32 or ord(c) == 127), None)
    if control is not None:
        raise InvalidNameError(
            f"{what} {shown[:control] + '...'!r}: holds a control character (a newline?)", where
        )
    if "://" not in shown:
        return "", shown.rstrip("/")
    if cut_at_userinfo(shown):
        raise InvalidNameError(
            f"{what} {shown!r}: a user:password@ with '/', '?' or '#' in it (percent-encode them, or "
            "better, keep credentials out of the URL): not a valid URL",
            where,
        )
    try:
        parts = urlsplit(shown)  # the host and port are checked by the caller
    except ValueError:  # an unclosed '[': urlsplit's only complaint
        raise InvalidNameError(f"{what} {shown!r}: not a valid URL", where) from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidNameError(f"{what} {shown!r}: not an http(s) URL", where)
    return parts.scheme, parts.netloc


def registry_from_url(url: str, where: str | None = None) -> str:
    """``https://reg.example.com:5000/`` → ``reg.example.com:5000``; a bare ``host[:port]`` passes through.

    The default port is not added: users write ``reg.example.com``, and that is the directory dockerd reads.
    """
    _, netloc = _url_parts(url, "registry", where)
    return not_docker_hub(validate_registry(netloc, where), where)


def endpoint_from_url(url: str, where: str | None = None) -> tuple[str, str]:
    """``https://s3.example.com:9000/path`` → ``("https", "s3.example.com:9000")``; no scheme: https."""
    scheme, netloc = _url_parts(url, "storage endpoint", where)
    _check_host_port(netloc, "storage endpoint", where, strict=False)
    return scheme or "https", netloc


# Docker's registry for a reference whose first component names none (reference.ParseNormalizedNamed).
DOCKER_HUB_DOMAIN = "docker.io"


def image_registry(reference: str) -> str:
    """The registry an image reference pulls from, by docker's reference rules: the first ``/``
    component where it has a ``.`` or ``:`` or is ``localhost``, else Docker Hub's ``docker.io``.

    >>> image_registry("registry.test:5000/lab/busybox:1")
    'registry.test:5000'
    >>> image_registry("lab/busybox:1")
    'docker.io'
    >>> image_registry("busybox@sha256:" + "0" * 64)
    'docker.io'
    """
    first, slash, _ = reference.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return DOCKER_HUB_DOMAIN


def query_values_masked(address: str, mask: str) -> str:
    """``host/path?k=v&t#f`` → ``host/path?k=MASK&MASK#MASK``: a query's values and its fragment, which
    may carry credentials (a presigned ``X-Amz-Security-Token``), masked; a value's name stays, to say
    what is there, and a part without one may be a token itself.

    >>> query_values_masked("s3.example.com/b?X-Amz-Security-Token=T0K&x-id=1#k", "***")
    's3.example.com/b?X-Amz-Security-Token=***&x-id=***#***'
    """
    address, hash_sign, fragment = address.partition("#")
    address, question, query = address.partition("?")
    masked = "&".join(
        f"{name}={mask}" if eq else (mask if name else "")
        for name, eq, _value in (part.partition("=") for part in query.split("&"))
    )
    return f"{address}{question}{masked}{hash_sign}{mask if fragment else ''}"
