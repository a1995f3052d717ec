"""Distribution (registry:2) ``config.yml``: the keys engines care about (trust-facts 2, 3, 20).

``REGISTRY_*`` environment variables override the file, as distribution itself does (env wins):
``REGISTRY_STORAGE`` replaces the whole ``storage`` section (a driver name, or YAML for the section),
``REGISTRY_STORAGE_S3_<KEY>`` sets one S3 parameter, ``REGISTRY_STORAGE_REDIRECT_DISABLE`` and
``REGISTRY_HTTP_HOST`` their keys. Each value is YAML, as distribution reads it (configuration/parser.go):
``yes`` is a boolean, ``"https://s3"`` loses its quotes. The names applied are recorded in
``env_overrides``. The file and the values are read with yaml.v2's booleans (``GoYamlV2Loader``).
Access and secret keys are never kept, only whether they were set (fact 23).

What the registry itself refuses to start with is refused here, in its words: a ``redirect.disable``
that is no YAML boolean, a redirect middleware ``baseurl`` without a scheme, a second storage driver
made by ``REGISTRY_STORAGE_<DRIVER>_*`` variables, a cloudfront ``ipfilteredby`` other than
none/aws/awsregion.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from agent.errors import SourceError
from agent.sources import fields
from agent.sources.document import Document, GoYamlV2Loader, Path, load_yaml
from agent.sources.model import RegistrySettings, S3Storage, SourceKind

# Keys under `storage` that configure the registry rather than name a driver.
NOT_DRIVERS = frozenset({"cache", "maintenance", "delete", "redirect", "tag"})
REDIRECT_MIDDLEWARES = frozenset({"cloudfront", "redirect"})
S3_SECRETS = ("accesskey", "secretkey")
# distribution registers its S3 driver under both names (registry/storage/driver/s3-aws).
S3_DRIVERS = frozenset({"s3", "s3aws"})
_REDIRECT_DISABLE = "REGISTRY_STORAGE_REDIRECT_DISABLE"


@dataclass(frozen=True)
class Overlay:
    """Environment variables that override document values, with the names actually used."""

    env: Mapping[str, str]
    applied: list[str]  # appended to while parsing; the parse that owns it returns a tuple

    def pick(
        self, doc: Document, path: Path, value: object, variable: str, *, secret: bool = False
    ) -> tuple[Document, Path, object]:
        """The value to use for ``path``, and where to blame it: the environment if it sets ``variable``.

        A value from the environment is read as YAML, as distribution does; a ``secret`` one is left as
        it is (only its presence is used, and a YAML error could quote it).
        """
        if variable not in self.env:
            return doc, path, value
        self.applied.append(variable)
        text = self.env[variable]
        return ENVIRONMENT, (variable,), text if secret else env_value(variable, text)


ENVIRONMENT = Document("environment", None)


def env_value(variable: str, text: str) -> object:
    """``text`` as distribution reads a ``REGISTRY_*`` value: YAML, with yaml.v2's booleans."""
    try:
        return load_yaml(text, "environment", loader_class=GoYamlV2Loader).data
    except SourceError:
        raise ENVIRONMENT.error(
            (variable,), "not valid YAML, and distribution reads every REGISTRY_* value as YAML"
        ) from None


def go_sprint(value: object) -> object:
    """A scalar as the S3 driver turns it into text (``fmt.Sprint``): yaml.v2 gives ``bucket: yes`` the
    bool true, which the driver names "true"; an integer its digits. Anything else as it is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int) else value


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
    doc = load_yaml(text, origin, loader_class=GoYamlV2Loader)
    if doc.data is None:
        raise doc.error((), "empty document: expected a distribution configuration")
    root = fields.mapping(doc, (), doc.data)
    overlay = Overlay(env or {}, [])

    sdoc, spath, storage = _storage_section(doc, root, overlay)
    storage = _with_drivers_from_env(sdoc, spath, storage, overlay.env)
    driver, s3 = _storage(sdoc, spath, storage, overlay)
    redirect = fields.mapping(sdoc, (*spath, "redirect"), storage.get("redirect"))
    rdoc, rpath, rvalue = overlay.pick(
        sdoc, (*spath, "redirect", "disable"), redirect.get("disable"), _REDIRECT_DISABLE
    )
    # The registry reads disable only where a redirect section exists (or the environment makes one).
    disabled = (
        _redirect_disable(rdoc, rpath, rvalue)
        if "redirect" in storage or _REDIRECT_DISABLE in overlay.env
        else False
    )
    middleware = _redirect_middleware(*_storage_middleware(doc, root, overlay))
    http_host, http_tls = _http(doc, root, overlay)
    return RegistrySettings(
        kind=kind,
        origin=origin,
        driver=driver,
        s3=s3,
        redirect_disabled=disabled,
        redirect_middleware=middleware.name,
        redirect_baseurl=middleware.baseurl,
        redirect_ipfilteredby=middleware.ipfilteredby,
        redirect_awsregions=middleware.awsregions,
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
        where, at, given = value(key)
        return fields.string(where, at, go_sprint(given))

    def flag(key: str, default: bool) -> bool:
        return fields.boolean(*value(key), default)

    def endpoint(key: str) -> str | None:
        return fields.url(*value(key))

    forcepathstyle_doc, forcepathstyle_path, forcepathstyle = value("forcepathstyle")
    # Only presence is read for secrets: their values never reach a message or a field.
    has_credentials = any(
        bool(overlay.pick(doc, (*path, key), params.get(key), env_prefix + key.upper(), secret=True)[2])
        for key in S3_SECRETS
    )
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


def _storage_mapping(doc: Document, path: Path, value: object) -> Mapping[str, object]:
    # `storage: s3` (a bare driver name) is valid distribution configuration.
    if isinstance(value, str):
        return {value: None}
    return fields.mapping(doc, path, value)


def _storage_section(
    doc: Document, root: Mapping[str, object], overlay: Overlay
) -> tuple[Document, Path, Mapping[str, object]]:
    """The ``storage`` section in force, and where to blame its values.

    ``REGISTRY_STORAGE`` replaces the file's whole section (distribution unmarshals it into the
    ``Storage`` field), so the file's driver parameters and ``redirect`` no longer apply.
    """
    in_file = _storage_mapping(doc, ("storage",), root.get("storage"))
    driver_of(doc, ("storage",), in_file, NOT_DRIVERS)  # distribution refuses two drivers before any env
    sdoc, spath, value = overlay.pick(doc, ("storage",), in_file, "REGISTRY_STORAGE")
    return sdoc, spath, in_file if sdoc is doc else _storage_mapping(sdoc, spath, value)


def _storage(
    doc: Document, path: Path, storage: Mapping[str, object], overlay: Overlay
) -> tuple[str, S3Storage | None]:
    driver = driver_of(doc, path, storage, NOT_DRIVERS)
    if driver is None:
        raise doc.error(path, "no storage driver configured (expected e.g. s3 or filesystem)")
    if driver not in S3_DRIVERS:
        return driver, None
    params = fields.mapping(doc, (*path, driver), storage.get(driver))
    return driver, parse_s3(doc, (*path, driver), params, overlay)


# Where the registry's redirect middleware refuses a baseurl (middleware/redirect NewRedirectStorageMiddleware:
# url.Parse, then a scheme and a host required); the cloudfront middleware adds https:// instead.
_GO_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _with_drivers_from_env(
    doc: Document, path: Path, storage: Mapping[str, object], env: Mapping[str, str]
) -> Mapping[str, object]:
    """``storage`` with the drivers ``REGISTRY_STORAGE_<DRIVER>_...`` variables add: distribution's
    environment parser makes a ``storage.<driver>`` entry for a driver the section lacks, and a second
    driver stops the registry (configuration ``Storage.Type``)."""
    added = _drivers_added_by_env(storage, env)
    configured = [key for key in storage if key not in NOT_DRIVERS]
    drivers = sorted({*configured, *added})
    if len(drivers) > 1:
        variable = min(added.values())
        name = variable.split("_")[2]
        beside = f"the {', '.join(configured)} driver ({doc.where(path)})" if configured else "another one"
        raise ENVIRONMENT.error(
            (variable,),
            f"adds a storage driver beside {beside}, and the registry refuses to start: "
            f'"multiple storage drivers specified in configuration or environment: {", ".join(drivers)}"; '
            f"unset the REGISTRY_STORAGE_{name}_* variables, or make {name.lower()} the only driver "
            f"(REGISTRY_STORAGE={name.lower()}, or in the file)",
        )
    return {**storage, **dict.fromkeys(added)} if added else storage


def _drivers_added_by_env(storage: Mapping[str, object], env: Mapping[str, str]) -> dict[str, str]:
    """Each driver a ``REGISTRY_STORAGE_<DRIVER>_...`` variable names that ``storage`` lacks, with the
    first such variable (the parser matches keys without regard to case)."""
    present = {key.upper() for key in storage}
    added: dict[str, str] = {}
    for variable in sorted(env):
        if not variable.startswith("REGISTRY_STORAGE_"):
            continue
        key = variable.removeprefix("REGISTRY_STORAGE_").split("_")[0]
        if key and key.lower() not in NOT_DRIVERS and key not in present:
            added.setdefault(key.lower(), variable)
    return added


def _redirect_disable(doc: Document, path: Path, value: object) -> bool:
    """``storage.redirect.disable`` as the registry reads it (handlers ``NewApp``): a YAML boolean, and
    nothing else, where the section exists: a string, a number or nothing there stops the registry."""
    if isinstance(value, bool):
        return value
    refusal = 'the registry refuses to start ("invalid type for redirect config")'
    if value is None:
        raise doc.error(path, f"is not set, and {refusal}: write disable: false (or true)")
    word = fields.boolean(doc, path, value, False)  # anything but a true/false word: its own message
    raise doc.error(
        path,
        f"is the string {str(value)[:20]!r}, and {refusal}: it takes a YAML boolean only; write "
        f"disable: {'true' if word else 'false'}, unquoted",
    )


@dataclass(frozen=True)
class RedirectMiddleware:
    """The storage middleware that decides where clients are redirected, as the registry reads it."""

    name: str | None = None
    baseurl: str | None = None
    ipfilteredby: str | None = None  # cloudfront: "aws" | "awsregion"; None for "none"
    awsregions: tuple[str, ...] = ()


def _redirect_middleware(doc: Document, entries: list[object]) -> RedirectMiddleware:
    found = RedirectMiddleware()
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
        if name == "redirect" and "://" not in baseurl:
            raise doc.error((*path, "options", "baseurl"), _schemeless_redirect(baseurl))
        # Each middleware wraps the driver configured before it, so the last one decides the URL.
        if name == "cloudfront":
            found = RedirectMiddleware(name, baseurl, *_ip_filter(doc, (*path, "options"), options))
        else:
            found = RedirectMiddleware(name, baseurl)
    return found


def _schemeless_redirect(baseurl: str) -> str:
    """Why the registry refuses a redirect baseurl without ``scheme://``, in its words (Go's url.Parse
    reads ``host:port`` as a scheme, and an IP's ``addr:port`` as no URL at all)."""
    shown = baseurl[:40]
    if _GO_URL_SCHEME.match(baseurl):
        said = "no host specified for redirect baseurl"
    elif ":" in baseurl.split("/")[0]:
        said = f"unable to parse redirect baseurl: {shown}"
    else:
        said = "no scheme specified for redirect baseurl"
    return f'{shown!r} has no scheme, and the registry refuses to start ("{said}"): write https://{shown}'


_IP_FILTERS = ("none", "aws", "awsregion")


def _as_written(value: object) -> str:
    # yaml.v2 reads an unquoted no/off as false: name the boolean, which is what the registry saw.
    if isinstance(value, bool):
        return f"the boolean {'true' if value else 'false'} (quote the word)"
    return repr(str(value)[:20]) if isinstance(value, str) else "a value that is no text"


def _ip_filter(
    doc: Document, path: Path, options: Mapping[str, object]
) -> tuple[str | None, tuple[str, ...]]:
    """cloudfront's ``ipfilteredby`` (and ``awsregion``) as the middleware reads them: which clients it
    sends to S3 itself instead of the baseurl; a value it refuses stops the registry."""
    if "ipfilteredby" not in options:
        return None, ()
    value = options["ipfilteredby"]
    where = (*path, "ipfilteredby")
    mode = value.strip().lower() if isinstance(value, str) else None
    if mode not in ("", *_IP_FILTERS):
        raise doc.error(
            where,
            f'the registry refuses to start with {_as_written(value)} here ("ipfilteredby only allows a '
            f'string the following value: none|aws|awsregion"): write one of {", ".join(_IP_FILTERS)}',
        )
    if mode in ("", "none"):
        return None, ()
    if mode == "aws":
        return "aws", ()
    regions = options.get("awsregion")
    if not isinstance(regions, str):
        said = (
            "awsRegion is not defined"
            if "awsregion" not in options
            else ("awsRegion must be a comma separated string of valid aws regions")
        )
        raise doc.error(
            (*path, "awsregion"),
            f'ipfilteredby: awsregion needs the regions as text, and the registry refuses to start ("{said}"): '
            "write e.g. awsregion: us-east-1,eu-west-1",
        )
    return "awsregion", tuple(r.strip().lower() for r in regions.split(",") if r.strip())


def _storage_middleware(
    doc: Document, root: Mapping[str, object], overlay: Overlay
) -> tuple[Document, list[object]]:
    """``middleware.storage`` as the registry runs it, and where to blame its values: the file's list
    with the ``REGISTRY_MIDDLEWARE*`` overrides applied as distribution applies them (sorted by name;
    ``..._STORAGE_<n>_<FIELD>`` sets entry n's field, and n may be the list's length, which appends one;
    ``..._OPTIONS_<KEY>`` sets one option)."""
    middleware = fields.mapping(doc, ("middleware",), root.get("middleware"))
    entries = list(fields.sequence(doc, ("middleware", "storage"), middleware.get("storage")))
    variables = sorted(
        v for v in overlay.env if v == "REGISTRY_MIDDLEWARE" or v.startswith("REGISTRY_MIDDLEWARE_")
    )
    touched = False
    for variable in variables:
        parts = variable.split("_")[2:]  # what follows REGISTRY_MIDDLEWARE
        if parts[:1] not in ([], ["STORAGE"]):
            continue  # the registry's and repositories' middleware: no redirects there
        value = env_value(variable, overlay.env[variable])
        overlay.applied.append(variable)
        touched = True
        if not parts:
            whole = fields.mapping(ENVIRONMENT, (variable,), value)
            entries = list(fields.sequence(ENVIRONMENT, (variable,), whole.get("storage")))
        elif len(parts) == 1:
            entries = list(fields.sequence(ENVIRONMENT, (variable,), value))
        else:
            entries = _overridden_entry(entries, variable, parts[1:], value)
    return (ENVIRONMENT if touched else doc), entries


def _overridden_entry(entries: list[object], variable: str, path: list[str], value: object) -> list[object]:
    """``entries`` with ``REGISTRY_MIDDLEWARE_STORAGE_<path>`` set to ``value``, as distribution's parser
    sets it (an index beyond the list's end is refused there: the registry does not start)."""
    if not path[0].isdigit() or int(path[0]) > len(entries):
        raise ENVIRONMENT.error(
            (variable,),
            f"index {path[0]} is not in middleware.storage ({len(entries)} entries): the registry refuses it",
        )
    index, field = int(path[0]), path[1:]
    if not field:
        raise ENVIRONMENT.error((variable,), "names a whole middleware entry, which the registry cannot set")
    entries = [*entries, {}] if index == len(entries) else list(entries)
    entry = dict(fields.mapping(ENVIRONMENT, (variable,), entries[index]))
    key = field[0].lower()
    if key == "options" and len(field) == 2:  # one option; a deeper path reaches no option read here
        entry["options"] = {
            **fields.mapping(ENVIRONMENT, (variable,), entry.get("options")),
            field[1].lower(): value,
        }
    elif len(field) == 1:
        entry[key] = value
    entries[index] = entry
    return entries


def _http(doc: Document, root: Mapping[str, object], overlay: Overlay) -> tuple[str | None, bool]:
    http = fields.mapping(doc, ("http",), root.get("http"))
    hdoc, hpath, hvalue = overlay.pick(doc, ("http", "host"), http.get("host"), "REGISTRY_HTTP_HOST")
    if hdoc is ENVIRONMENT and not isinstance(hvalue, str | None):
        # http.host is a Go string: yaml.v2 keeps a plain scalar's text (`yes` stays "yes").
        hvalue = overlay.env["REGISTRY_HTTP_HOST"]
    host = fields.url(hdoc, hpath, hvalue, registry=True)
    tls = bool(fields.mapping(doc, ("http", "tls"), http.get("tls")))
    if overlay.env.get("REGISTRY_HTTP_TLS_CERTIFICATE"):
        overlay.applied.append("REGISTRY_HTTP_TLS_CERTIFICATE")
        tls = True
    return host, tls
