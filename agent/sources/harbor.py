"""Harbor's ``harbor.yml``: ``hostname``, ``https.port`` and ``storage_service`` (trust-facts 22).

``storage_service`` holds one driver (``s3: {...}`` with distribution's keys), ``redirect.disable``,
and ``ca_bundle``: a path to the storage backend's CA, read here (relative to harbor.yml's directory)
so that the CA travels with the settings. The path is one on the Harbor host: a harbor.yml copied
elsewhere often names a file that is not there, which is recorded (``storage_ca_unread``) rather than
refused, so that a ``--storage-ca`` given with the same CA can stand in for it (``agent.inputs``).

Read as Harbor's ``prepare`` reads it (make/photon/prepare/utils/configs.py, registry.py): the driver
is the first non-empty one of ``HARBOR_DRIVERS``; each driver value is written into the registry's
config.yml as Python prints it, which distribution reads again with yaml.v2 (so ``secure: "no"`` is
false there); ``redirect.disable`` is tested for Python truth by the template.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from agent.errors import SourceError
from agent.sources import fields
from agent.sources.distribution import S3_DRIVERS, S3_SECRETS, Overlay, parse_s3
from agent.sources.document import Document, GoYamlV2Loader, Path, load_yaml
from agent.sources.model import RegistrySettings

# The drivers Harbor's prepare looks for, in its order: the first non-empty one is used.
HARBOR_DRIVERS = ("filesystem", "azure", "gcs", "s3", "swift", "oss")
MAX_CA_BYTES = 1024 * 1024


def parse_harbor(text: str, origin: str, *, base_dir: str | None = None) -> RegistrySettings:
    """Read a ``harbor.yml``; a relative ``ca_bundle`` is looked up in ``base_dir`` (default: origin's directory)."""
    doc = load_yaml(text, origin)
    if doc.data is None:
        raise doc.error((), "empty document: expected a harbor.yml")
    root = fields.mapping(doc, (), doc.data)
    service = fields.mapping(doc, ("storage_service",), root.get("storage_service"))
    driver, unused = _driver(service)
    path = ("storage_service", driver)
    params = fields.mapping(doc, path, service.get(driver))
    s3 = None
    if driver in S3_DRIVERS:
        s3 = parse_s3(doc, path, _as_the_registry_reads(doc, path, params), Overlay({}, []))
    disabled, redirect_warning = _redirect_disabled(doc, service)

    host, tls = _address(doc, root)
    ca_pem, ca_origin, ca_unread = _ca_bundle(
        doc, service, base_dir if base_dir is not None else os.path.dirname(origin)
    )
    return RegistrySettings(
        kind="harbor",
        origin=origin,
        driver=driver,
        s3=s3,
        redirect_disabled=disabled,
        http_host=host,
        http_tls=tls,
        storage_ca_pem=ca_pem,
        storage_ca_origin=ca_origin,
        storage_ca_unread=ca_unread,
        warnings=tuple(w for w in (unused, redirect_warning) if w),
    )


def _driver(service: Mapping[str, object]) -> tuple[str, str | None]:
    """The driver Harbor configures the registry with (filesystem when none is set), and a warning
    naming any other driver set beside it, which Harbor ignores."""
    given = [name for name in HARBOR_DRIVERS if service.get(name)]
    if not given:
        return "filesystem", None
    if len(given) == 1:
        return given[0], None
    return given[0], (
        f"storage_service sets {', '.join(given)}: Harbor uses {given[0]}, the first of "
        f"{', '.join(HARBOR_DRIVERS)}, and ignores the others"
    )


def _as_the_registry_reads(doc: Document, path: Path, params: Mapping[str, object]) -> dict[str, object]:
    """The driver's parameters as the registry reads them: prepare writes each as ``key: value``
    (``True`` as ``true``, ``None`` as nothing, the rest as Python prints it) into config.yml, which
    yaml.v2 reads again. Secrets are left alone: only their presence is used."""
    return {
        key: value if key in S3_SECRETS else _rendered_value(doc, (*path, key), value)
        for key, value in params.items()
    }


def _rendered_value(doc: Document, path: Path, value: object) -> object:
    if value is None or isinstance(value, Mapping | list):
        return value
    if value == True:  # noqa: E712 - prepare compares with ==, so 1 and 1.0 are written as true too
        return True
    try:
        return load_yaml(str(value), doc.origin, loader_class=GoYamlV2Loader).data
    except SourceError:
        raise doc.error(
            path,
            "Harbor writes this value into the registry's config.yml as it is, and there it is not valid YAML",
        ) from None


def _redirect_disabled(doc: Document, service: Mapping[str, object]) -> tuple[bool, str | None]:
    """Whether Harbor turns redirects off, and a warning where a string decides it.

    prepare reads ``redirect.disable`` (older releases: ``disabled``) and the registry
    template tests it as Python does: any non-empty string, ``"false"`` too, turns redirects off.
    """
    redirect = fields.mapping(doc, ("storage_service", "redirect"), service.get("redirect"))
    key = "disable" if "disable" in redirect else "disabled"
    value = redirect.get(key)
    if not isinstance(value, str) or not value:
        return bool(value), None
    return True, (
        f"{doc.where(('storage_service', 'redirect', key))}: storage_service.redirect.{key} is the string "
        f"{value[:20]!r}: Harbor treats any non-empty text as true, so redirects are off"
    )


def _address(doc: Document, root: Mapping[str, object]) -> tuple[str | None, bool]:
    """The URL clients use: ``external_url`` when Harbor sits behind a proxy, else hostname and port."""
    hostname = fields.url(doc, ("hostname",), root.get("hostname"), registry=True)
    https = fields.mapping(doc, ("https",), root.get("https"))
    external = fields.url(doc, ("external_url",), root.get("external_url"), registry=True)
    if external:
        return external.rstrip("/"), external.startswith("https://")
    if hostname is None:
        return None, bool(https)
    if https:
        port = fields.string(doc, ("https", "port"), https.get("port"))
        return (f"https://{hostname}" if port in (None, "443") else f"https://{hostname}:{port}"), True
    http = fields.mapping(doc, ("http",), root.get("http"))
    port = fields.string(doc, ("http", "port"), http.get("port"))
    return (f"http://{hostname}" if port in (None, "80") else f"http://{hostname}:{port}"), False


def _ca_bundle(
    doc: Document, service: Mapping[str, object], base_dir: str
) -> tuple[bytes | None, str | None, str | None]:
    """``(contents, origin, None)``; ``(None, None, why)`` where the file cannot be read here."""
    path = ("storage_service", "ca_bundle")
    name = fields.string(doc, path, service.get("ca_bundle"))
    if name is None:
        return None, None, None
    full = os.path.join(base_dir, name) if base_dir else name
    try:
        with open(full, "rb") as handle:
            data = handle.read(MAX_CA_BYTES + 1)
    except OSError as exc:
        # Most often a path on the Harbor host; whether that is an error depends on --storage-ca.
        return None, None, str(doc.error(path, f"cannot read {full}: {exc.strerror or exc}"))
    if len(data) > MAX_CA_BYTES:
        raise doc.error(path, f"{full} is larger than {MAX_CA_BYTES} bytes: not a CA bundle")
    # Named with its key and line too: a problem with the bundle is then found where it is set.
    return data, f"{doc.where(path)}: storage_service.ca_bundle {full}", None
