"""DTR / MSR 2.x: the registry settings API, live or saved as JSON (trust-facts 21).

``GET /api/v0/admin/settings/registry`` returns ``{"config": "<distribution YAML>", "storage": {...}}``.
The ``config`` YAML is read by the distribution parser. The ``storage`` object may carry the storage
backend's CA, which the web UI calls "Root CA certificate"; its JSON name is not documented publicly,
so the names in ``STORAGE_CA_KEYS`` are accepted at the top of ``storage`` or under its driver.
``GET /ca`` returns DTR's own CA.

The admin token is sent only as the basic-auth password, to the given https URL: redirects are not
followed (they would carry the Authorization header elsewhere) and no message ever includes it.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, replace
from email.message import Message
from typing import IO, Any, NoReturn
from urllib.parse import urlsplit

from agent.errors import SourceError
from agent.names import cut_at_userinfo, without_userinfo
from agent.sources.distribution import NOT_DRIVERS, parse_distribution
from agent.sources.model import RegistrySettings

SETTINGS_PATH = "/api/v0/admin/settings/registry"
CA_PATH = "/ca"
# Lower-cased key names accepted for the storage backend's root CA (see the module docstring).
STORAGE_CA_KEYS = ("rootcertificate", "rootca", "rootcacertificate", "cacertificate", "ca", "cabundle")
MAX_RESPONSE_BYTES = 4 * 1024 * 1024


def parse_dtr_json(text: str, origin: str) -> RegistrySettings:
    """Read a saved copy of ``GET /api/v0/admin/settings/registry``."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"not valid JSON: {exc.msg}", f"{origin}:{exc.lineno}") from None
    except RecursionError:
        raise SourceError("not valid JSON: nested too deeply", origin) from None
    if not isinstance(document, dict) or not isinstance(document.get("config"), str):
        raise SourceError(
            'expected the JSON of GET /api/v0/admin/settings/registry: an object with a "config" string',
            origin,
        )
    settings = parse_distribution(document["config"], f"{origin}[config]", kind="dtr")
    storage = document.get("storage")
    if storage is None:
        storage = {}
    if not isinstance(storage, dict):
        raise SourceError("storage: must be an object", origin)
    found = _storage_ca(storage)
    if found is None:
        return replace(settings, origin=origin)
    key, value = found
    if not isinstance(value, str):
        raise SourceError(f"{key}: must be a PEM string", origin)
    return replace(
        settings,
        origin=origin,
        storage_ca_pem=value.encode() if value.strip() else None,
        storage_ca_origin=f"{origin}: {key}" if value.strip() else None,
    )


@dataclass(frozen=True)
class Validators:
    """What the DTR said identifies its last answers (``ETag``, ``Last-Modified``), per endpoint."""

    settings: tuple[str | None, str | None] = (None, None)
    ca: tuple[str | None, str | None] = (None, None)


def fetch_dtr(
    url: str, user: str, token: str, *, ca_file: str | None = None, timeout: float = 15
) -> RegistrySettings:
    """Read the settings and CA from a live DTR/MSR at ``https://host[:port]``.

    TLS is verified against the system store, or against ``ca_file`` alone when it is given (the
    ``SSL_CERT_FILE``-style environment variables then play no part).
    """
    settings, _ = fetch_dtr_if_changed(url, user, token, ca_file=ca_file, timeout=timeout)
    assert settings is not None  # without validators nothing can be "not modified"
    return settings


def fetch_dtr_if_changed(
    url: str,
    user: str,
    token: str,
    *,
    ca_file: str | None = None,
    timeout: float = 15,
    validators: Validators | None = None,
) -> tuple[RegistrySettings | None, Validators]:
    """Like :func:`fetch_dtr`, with conditional requests: ``(None, validators)`` when the DTR answers
    ``304 Not Modified`` to both the settings and the CA (the per-host daemon polls this way).

    >>> settings, seen = fetch_dtr_if_changed(url, user, token)                   # doctest: +SKIP
    >>> fetch_dtr_if_changed(url, user, token, validators=seen)[0] is None        # doctest: +SKIP
    True
    """
    base = dtr_base_url(url)
    context = _tls_context(ca_file)
    opener = urllib.request.build_opener(_RefuseRedirects(), urllib.request.HTTPSHandler(context=context))
    auth = "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()
    known = validators or Validators()

    body, settings_seen = _get_if_changed(opener, base + SETTINGS_PATH, auth, timeout, known.settings)
    registry_ca, ca_seen = _get_if_changed(opener, base + CA_PATH, auth, timeout, known.ca)
    seen = Validators(settings_seen, ca_seen)
    if body is None and registry_ca is None:
        return None, seen
    # One side changed: the other's last body is not kept (it may hold secrets), so ask again.
    if body is None:
        body, seen_again = _get_if_changed(opener, base + SETTINGS_PATH, auth, timeout, (None, None))
        seen = replace(seen, settings=seen_again)
    if registry_ca is None:
        registry_ca, seen_again = _get_if_changed(opener, base + CA_PATH, auth, timeout, (None, None))
        seen = replace(seen, ca=seen_again)
    assert body is not None and registry_ca is not None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError("the answer is not UTF-8 JSON", base + SETTINGS_PATH) from None
    settings = parse_dtr_json(text, base + SETTINGS_PATH)
    if b"-----BEGIN CERTIFICATE-----" not in registry_ca:
        raise SourceError("the answer is not a PEM certificate", base + CA_PATH)
    fetched = replace(
        settings,
        # DTR serves the registry on its own address; its config.yml rarely says so.
        http_host=settings.http_host or base,
        registry_ca_pem=registry_ca,
        registry_ca_origin=base + CA_PATH,
    )
    return fetched, seen


def _storage_ca(storage: Mapping[str, object]) -> tuple[str, object] | None:
    places: list[tuple[str, Mapping[str, object]]] = [("storage", storage)]
    places += [
        (f"storage.{name}", section)
        for name, section in storage.items()
        if name not in NOT_DRIVERS and isinstance(section, Mapping)
    ]
    for prefix, section in places:
        for name, value in section.items():
            if str(name).lower() in STORAGE_CA_KEYS and value is not None:
                return f"{prefix}.{name}", value
    return None


def dtr_base_url(url: str) -> str:
    """``https://dtr.example.com/`` → ``https://dtr.example.com``; anything but a plain https URL is refused."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - checked only when asked
    except ValueError:
        raise SourceError("not a valid URL", without_userinfo(url.strip())) from None
    if cut_at_userinfo(without_userinfo(url.strip())):
        # A token holding '/', '?' or '#': urlsplit ends the address inside it (admin:12/34@dtr).
        raise SourceError(
            "put the DTR user and token in the environment, not in the URL", without_userinfo(url.strip())
        )
    # As written, port included, without any user:password@.
    shown = without_userinfo(f"{parts.scheme}://{parts.netloc}")
    if parts.scheme != "https" or not parts.hostname:
        raise SourceError(
            "the DTR address must be an https:// URL (credentials never travel in clear)", shown
        )
    if parts.username is not None or parts.password is not None:
        raise SourceError("put the DTR user and token in the environment, not in the URL", shown)
    return f"https://{parts.netloc}{parts.path.rstrip('/')}"


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise SourceError(
            f"cannot use as the DTR's CA: {getattr(exc, 'strerror', None) or exc}", ca_file
        ) from None


def _get_if_changed(
    opener: urllib.request.OpenerDirector,
    url: str,
    auth: str,
    timeout: float,
    known: tuple[str | None, str | None],
) -> tuple[bytes | None, tuple[str | None, str | None]]:
    """GET ``url``; ``(None, known)`` on 304 Not Modified, else the body and its new validators."""
    headers = {"Authorization": auth, "Accept": "application/json"}
    etag, modified = known
    if etag:
        headers["If-None-Match"] = etag
    if modified:
        headers["If-Modified-Since"] = modified
    request = urllib.request.Request(url, headers=headers)
    try:
        with opener.open(request, timeout=timeout) as response:
            body = _read_whole(response, url, time.monotonic() + timeout * _WHOLE_ANSWER_TIMEOUTS)
            seen = (response.headers.get("ETag"), response.headers.get("Last-Modified"))
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 304 and (etag or modified):
            return None, known
        if exc.code in (401, 403):
            raise SourceError(f"credentials refused (HTTP {exc.code})", url) from None
        raise SourceError(f"HTTP {exc.code} {exc.reason}", url) from None
    except urllib.error.URLError as exc:
        _connection_error(exc.reason, url)
    except (OSError, ValueError) as exc:  # timeouts, resets, malformed responses
        _connection_error(exc, url)
    if len(body) > MAX_RESPONSE_BYTES:
        raise SourceError(f"the answer is larger than {MAX_RESPONSE_BYTES} bytes", url)
    return body, seen


# The whole answer's time, in units of the per-read timeout: a server trickling a byte a second never
# trips that one, and held the CLI (or a daemon's poll) for as long as it liked.
_WHOLE_ANSWER_TIMEOUTS = 4


def _read_whole(response: Any, url: str, deadline: float) -> bytes:
    """The body, up to one byte over MAX_RESPONSE_BYTES, by ``deadline``; one shorter than its
    Content-Length is refused (a cut connection, not a document)."""
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_RESPONSE_BYTES:
        if time.monotonic() > deadline:
            raise SourceError("the answer did not arrive in time (it came too slowly)", url)
        chunk = response.read1(min(_READ_CHUNK, MAX_RESPONSE_BYTES + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    body = b"".join(chunks)
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit() and len(body) < int(length) <= MAX_RESPONSE_BYTES:
        raise SourceError(f"the answer ended early ({len(body)} of {length} bytes)", url)
    return body


_READ_CHUNK = 65536


# OpenSSL's verify codes for a certificate that does not name the host (or IP) connected to.
_NAME_MISMATCH = frozenset({62, 64})  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


def _connection_error(reason: object, url: str) -> NoReturn:
    if isinstance(reason, ssl.SSLCertVerificationError):
        if reason.verify_code in _NAME_MISMATCH:  # the CA may be right: the name is not
            hint = f"the certificate is not for {urlsplit(url).hostname}: use a name it was issued for"
        else:
            hint = "give the CA that signed it with --source-ca FILE"
        raise SourceError(f"TLS certificate not trusted ({reason.verify_message}); {hint}", url) from None
    if isinstance(reason, TimeoutError):
        raise SourceError("timed out", url) from None
    detail = getattr(reason, "strerror", None) or str(reason)
    raise SourceError(f"cannot connect: {' '.join(detail.split())}", url) from None


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """urllib would resend the Authorization header to wherever a redirect points: refuse instead."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        shown = urlsplit(newurl)
        raise SourceError(
            f"redirected (HTTP {code}) to {shown.scheme}://{shown.hostname}: refusing to send credentials there",
            req.full_url,
        )
