"""Harbor's ``harbor.yml``: ``hostname``, ``https.port`` and ``storage_service`` (trust-facts 22).

``storage_service`` holds one driver (``s3: {...}`` with distribution's keys), ``redirect.disable``,
and ``ca_bundle``: a path to the storage backend's CA, read here (relative to harbor.yml's directory)
so that the CA travels with the settings. The path is one on the Harbor host: a harbor.yml copied
elsewhere often names a file that is not there, which is recorded (``storage_ca_unread``) rather than
refused, so that a ``--storage-ca`` given with the same CA can stand in for it (``agent.inputs``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from agent.sources import fields
from agent.sources.distribution import S3_DRIVERS, Overlay, driver_of, parse_s3
from agent.sources.document import Document, load_yaml
from agent.sources.model import RegistrySettings

NOT_DRIVERS = frozenset({"ca_bundle", "redirect"})
MAX_CA_BYTES = 1024 * 1024


def parse_harbor(text: str, origin: str, *, base_dir: str | None = None) -> RegistrySettings:
    """Read a ``harbor.yml``; a relative ``ca_bundle`` is looked up in ``base_dir`` (default: origin's directory)."""
    doc = load_yaml(text, origin)
    if doc.data is None:
        raise doc.error((), "empty document: expected a harbor.yml")
    root = fields.mapping(doc, (), doc.data)
    service = fields.mapping(doc, ("storage_service",), root.get("storage_service"))
    # Harbor's default is the filesystem driver when storage_service names none.
    driver = driver_of(doc, ("storage_service",), service, NOT_DRIVERS) or "filesystem"
    params = fields.mapping(doc, ("storage_service", driver), service.get(driver))
    s3 = parse_s3(doc, ("storage_service", driver), params, Overlay({}, [])) if driver in S3_DRIVERS else None

    redirect = fields.mapping(doc, ("storage_service", "redirect"), service.get("redirect"))
    # Older harbor.yml templates spell it `disabled`.
    key = "disable" if "disable" in redirect else "disabled"
    disabled = fields.boolean(doc, ("storage_service", "redirect", key), redirect.get(key), False)

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
