"""Distribution (registry:2) ``config.yml``: the keys engines care about (trust-facts 2, 3, 20).

``REGISTRY_*`` environment variables override the file, as distribution itself does (env wins):
``REGISTRY_STORAGE`` names the driver, ``REGISTRY_STORAGE_S3_<KEY>`` sets one S3 parameter,
``REGISTRY_STORAGE_REDIRECT_DISABLE`` and ``REGISTRY_HTTP_HOST`` their keys. The names applied are
recorded in ``env_overrides``. Access and secret keys are never kept, only whether they were set
(fact 23).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agent.sources import fields
from agent.sources.document import Document, Path, load_yaml
from agent.sources.model import RegistrySettings, S3Storage, SourceKind

# Keys under `storage` that configure the registry rather than name a driver.
NOT_DRIVERS = frozenset({"cache", "maintenance", "delete", "redirect", "tag"})
REDIRECT_MIDDLEWARES = frozenset({"cloudfront", "redirect"})
S3_SECRETS = ("accesskey", "secretkey")
# distribution registers its S3 driver under both names (registry/storage/driver/s3-aws).
S3_DRIVERS = frozenset({"s3", "s3aws"})


@dataclass(frozen=True)
class Overlay:
    """Environment variables that override document values, with the names actually used."""

    env: Mapping[str, str]
    applied: list[str]  # appended to while parsing; the parse that owns it returns a tuple

    def pick(self, doc: Document, path: Path, value: object, variable: str) -> tuple[Document, Path, object]:
        """The value to use for ``path``, and where to blame it: the environment if it sets ``variable``."""
        if variable in self.env:
            self.applied.append(variable)
            return Document("environment", None), (variable,), self.env[variable]
        return doc, path, value


def parse_distribution(
    text: str,
    origin: str,
    env: Mapping[str, str] | None = None,
    *,
    kind: SourceKind = "distribution",
) -> RegistrySettings:
    """Read a distribution ``config.yml`` (``kind="dtr"`` when it is the YAML DTR keeps).

    >>> s = parse_distribution("version: 0.1\\nstorage: {s3: {bucket: b, regionendpoint: https://s3:9000}}",
    ...                        "config.yml", env={"REGISTRY_STORAGE_S3_SECURE": "false"})
    >>> (s.driver, s.s3.regionendpoint, s.s3.secure, s.env_overrides)
    ('s3', 'https://s3:9000', False, ('REGISTRY_STORAGE_S3_SECURE',))
    """
    doc = load_yaml(text, origin)
    if doc.data is None:
        raise doc.error((), "empty document: expected a distribution configuration")
    root = fields.mapping(doc, (), doc.data)
    overlay = Overlay(env or {}, [])

    driver, s3 = _storage(doc, root, overlay)
    storage = _storage_mapping(doc, root)
    redirect = fields.mapping(doc, ("storage", "redirect"), storage.get("redirect"))
    rdoc, rpath, rvalue = overlay.pick(
        doc, ("storage", "redirect", "disable"), redirect.get("disable"), "REGISTRY_STORAGE_REDIRECT_DISABLE"
    )
    middleware, baseurl = _redirect_middleware(doc, root)
    http_host, http_tls = _http(doc, root, overlay)
    return RegistrySettings(
        kind=kind,
        origin=origin,
        driver=driver,
        s3=s3,
        redirect_disabled=fields.boolean(rdoc, rpath, rvalue, False),
        redirect_middleware=middleware,
        redirect_baseurl=baseurl,
        http_host=http_host,
        http_tls=http_tls,
        env_overrides=tuple(dict.fromkeys(overlay.applied)),
    )


def parse_s3(doc: Document, path: Path, params: Mapping[str, object], overlay: Overlay) -> S3Storage:
    """The S3 driver's parameters at ``path`` (also used for Harbor's ``storage_service.s3``)."""

    # REGISTRY_STORAGE_<DRIVER>_<KEY>, as distribution names them (s3aws: REGISTRY_STORAGE_S3AWS_...).
    env_prefix = f"REGISTRY_STORAGE_{path[-1].upper()}_"

    def value(key: str) -> tuple[Document, Path, object]:
        return overlay.pick(doc, (*path, key), params.get(key), env_prefix + key.upper())

    def text(key: str) -> str | None:
        return fields.string(*value(key))

    def flag(key: str, default: bool) -> bool:
        return fields.boolean(*value(key), default)

    def endpoint(key: str) -> str | None:
        return fields.url(*value(key))

    forcepathstyle_doc, forcepathstyle_path, forcepathstyle = value("forcepathstyle")
    # Only presence is read for secrets: their values never reach a message or a field.
    has_credentials = any(bool(value(key)[2]) for key in S3_SECRETS)
    return S3Storage(
        bucket=text("bucket"),
        region=text("region"),
        regionendpoint=endpoint("regionendpoint"),
        redirectendpoint=endpoint("redirectendpoint"),
        rootdirectory=text("rootdirectory"),
        secure=flag("secure", True),
        skipverify=flag("skipverify", False),
        v4auth=flag("v4auth", True),
        forcepathstyle=(
            None
            if forcepathstyle in (None, "")
            else fields.boolean(forcepathstyle_doc, forcepathstyle_path, forcepathstyle, True)
        ),
        has_credentials=has_credentials,
    )


def driver_of(
    doc: Document, path: Path, section: Mapping[str, object], not_drivers: frozenset[str]
) -> str | None:
    """The one key of ``section`` that names a storage driver; more than one is an error."""
    drivers = [key for key in section if key not in not_drivers]
    if len(drivers) > 1:
        raise doc.error(path, f"more than one storage driver: {', '.join(sorted(drivers))}")
    return drivers[0] if drivers else None


def _storage_mapping(doc: Document, root: Mapping[str, object]) -> Mapping[str, object]:
    value = root.get("storage")
    # `storage: s3` (a bare driver name) is valid distribution configuration.
    if isinstance(value, str):
        return {value: None}
    return fields.mapping(doc, ("storage",), value)


def _storage(doc: Document, root: Mapping[str, object], overlay: Overlay) -> tuple[str, S3Storage | None]:
    storage = _storage_mapping(doc, root)
    file_driver = driver_of(doc, ("storage",), storage, NOT_DRIVERS)
    driver = file_driver
    params: Mapping[str, object] = {}
    if "REGISTRY_STORAGE" in overlay.env:
        driver = overlay.env["REGISTRY_STORAGE"].strip() or None
        overlay.applied.append("REGISTRY_STORAGE")
    if driver is None:
        raise doc.error(("storage",), "no storage driver configured (expected e.g. s3 or filesystem)")
    if driver == file_driver:
        params = fields.mapping(doc, ("storage", driver), storage.get(driver))
    # else: the environment replaced the driver, so the file's parameters for another driver do not apply.
    if driver not in S3_DRIVERS:
        return driver, None
    return driver, parse_s3(doc, ("storage", driver), params, overlay)


def _redirect_middleware(doc: Document, root: Mapping[str, object]) -> tuple[str | None, str | None]:
    middleware = fields.mapping(doc, ("middleware",), root.get("middleware"))
    found: tuple[str | None, str | None] = (None, None)
    entries = fields.sequence(doc, ("middleware", "storage"), middleware.get("storage"))
    for position, entry in enumerate(entries):
        path: Path = ("middleware", "storage", str(position))
        item = fields.mapping(doc, path, entry)
        name = fields.string(doc, (*path, "name"), item.get("name"))
        if name not in REDIRECT_MIDDLEWARES or fields.boolean(
            doc, (*path, "disabled"), item.get("disabled"), False
        ):
            continue
        options = fields.mapping(doc, (*path, "options"), item.get("options"))
        baseurl = fields.url(doc, (*path, "options", "baseurl"), options.get("baseurl"))
        if baseurl is None:
            raise doc.error((*path, "options", "baseurl"), f"the {name} middleware needs a baseurl")
        # Each middleware wraps the driver configured before it, so the last one decides the URL.
        found = (name, baseurl)
    return found


def _http(doc: Document, root: Mapping[str, object], overlay: Overlay) -> tuple[str | None, bool]:
    http = fields.mapping(doc, ("http",), root.get("http"))
    host = fields.url(
        *overlay.pick(doc, ("http", "host"), http.get("host"), "REGISTRY_HTTP_HOST"), registry=True
    )
    tls = bool(fields.mapping(doc, ("http", "tls"), http.get("tls")))
    if overlay.env.get("REGISTRY_HTTP_TLS_CERTIFICATE"):
        overlay.applied.append("REGISTRY_HTTP_TLS_CERTIFICATE")
        tls = True
    return host, tls
