"""From registry settings to a trust policy: what every engine must trust, and why.

The rules live here, each with the fact it rests on (``shared/design/trust-facts.md``):

- The engine is redirected to the storage host on every pull *and* push (fact 1). Which host: the
  ``redirect``/``cloudfront`` middleware ``baseurl``, else ``redirectendpoint``, else ``regionendpoint``,
  else AWS (publicly trusted) (fact 2). ``storage.redirect.disable`` means no redirect at all, a
  middleware's included. The cloudfront middleware sends clients inside AWS's address ranges to S3
  itself where ``ipfilteredby`` is ``aws``/``awsregion``, so both hosts count; on a driver other than S3
  it redirects as the driver does (distribution's cloudfront ``RedirectURL``).
- Path or virtual-hosted style (``<bucket>.<endpoint>``) for an endpoint the source names: distribution
  2.x always uses path style there (it reads no ``forcepathstyle``); 3.x reads ``forcepathstyle``,
  default false (s3-aws ``FromParameters``). Harbor and DTR run 2.x; a config.yml does not say which,
  so the policy takes 2.x for an unset key (and says so), 3.x for a set one (and warns where the two
  differ).
- dockerd follows the redirect with the *registry's* TLS config, so the storage CA goes into
  ``certs.d/<registry>/``, never ``certs.d/<storage-host>/`` (fact 4), for every spelling (fact 5).
- ``secure: false``: an endpoint written without a scheme is reached over plain HTTP, nothing to
  trust (fact 3); an endpoint's own ``https://`` wins over it (the AWS SDK adds a scheme only where
  there is none, as distribution 2.8's registry shows on the lab).
- Drivers other than S3 (azure, gcs, oss, swift) can redirect to their own store, whose address is
  not read here: a storage CA given for them is installed the same way; filesystem and inmemory
  serve every blob through the registry.
- The registry set to skip TLS verification of its storage: engines must skip too, by listing the
  registry in ``insecure-registries``, which covers the redirect it follows (fact 9; DTR docs).
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from agent.certs import CABundle
from agent.errors import InputError, UsageError
from agent.names import (
    DOCKER_HUB_DOMAIN,
    endpoint_from_url,
    host_of,
    image_registry,
    registry_from_option,
    registry_from_url,
    validate_registry,
)
from agent.sources.model import RegistrySettings

CARole = Literal["storage", "registry"]

# File names the agent owns inside certs.d/<registry>/ (the prefix marks ownership).
OWNED_PREFIX = "trust-agent-"
CA_FILE_NAMES: dict[CARole, str] = {
    "storage": f"{OWNED_PREFIX}storage-ca.crt",
    "registry": f"{OWNED_PREFIX}registry-ca.crt",
}


@dataclass(frozen=True)
class CAFile:
    """One CA bundle to install as ``certs.d/<registry>/<name>`` in every registry directory."""

    role: CARole
    name: str
    bundle: CABundle


@dataclass(frozen=True)
class TrustPolicy:
    """What every engine must hold. Pure data; the runtimes turn it into files."""

    registries: tuple[str, ...]  # certs.d directory names, every spelling users use
    storage_endpoint: str | None  # host[:port] engines are redirected to; None: no redirect, or unknown
    storage_scheme: str | None  # "https" | "http" | None (no redirect); https without an endpoint: a
    # driver's own store, whose address the source does not give
    ca_files: tuple[CAFile, ...] = ()
    insecure: bool = False  # list every registry in insecure-registries
    # Engines are sent to a store on https whose CA may be private, and no storage CA was given (nor
    # --no-storage-ca): a host holding trust-agent's storage CA is not to lose it on a forgotten flag.
    storage_ca_missing: bool = False
    # No registry CA given (nor --no-registry-ca): a host holding trust-agent's registry CA keeps it.
    registry_ca_missing: bool = False
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    # Other stores engines may be sent to instead, as (scheme, host[:port]): S3 itself for clients in
    # AWS's ranges when a cloudfront middleware filters by IP (ipfilteredby).
    storage_alternatives: tuple[tuple[str, str], ...] = ()
    # `daemon uninstall --purge`: the agent gives the host back, down to its own "insecure-registries": []
    # where removing the key leaves dockerd's live list as it is (fact 11).
    purge: bool = False
    # For a purge: the entries the running dockerd listed as insecure when the purge began (None: not read).
    purge_live_insecure: tuple[str, ...] | None = None

    def fingerprint(self) -> str:
        """Stable digest of what the policy asks for (not of its explanations)."""
        doc = {
            "registries": list(self.registries),
            "insecure": self.insecure,
            "ca": [[c.role, c.name, hashlib.sha256(c.bundle.pem).hexdigest()] for c in self.ca_files],
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]

    def storage_summary(self) -> str:
        """Where engines are sent for blobs, for reports: ``https://host:port``, or why no address."""
        if self.storage_endpoint:
            first = f"{self.storage_scheme}://{self.storage_endpoint}"
            others = [f"{scheme}://{host}" for scheme, host in self.storage_alternatives]
            return " or ".join([first, *others])
        if self.storage_scheme:
            return "the storage driver's own store (its address is not in the source)"
        return "no redirect"

    def as_dict(self) -> dict[str, object]:
        return {
            "registries": list(self.registries),
            "storage_endpoint": self.storage_endpoint,
            "storage_scheme": self.storage_scheme,
            "storage_alternatives": [f"{scheme}://{host}" for scheme, host in self.storage_alternatives],
            "insecure": self.insecure,
            "storage_ca_missing": self.storage_ca_missing,
            "registry_ca_missing": self.registry_ca_missing,
            "ca_files": [
                {
                    "role": c.role,
                    "name": c.name,
                    "origin": c.bundle.origin,
                    "certificates": [
                        {
                            "subject": i.subject,
                            "sha256": i.sha256,
                            "not_after": i.not_after.isoformat(),
                        }
                        for i in c.bundle.certificates
                    ],
                }
                for c in self.ca_files
            ],
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "fingerprint": self.fingerprint(),
        }


_AWS_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn")


def _is_aws_endpoint(endpoint: str) -> bool:
    """Whether ``host[:port]`` is an AWS endpoint (publicly trusted), compared as DNS compares names:
    capitals and a trailing dot (the root) change nothing.

    >>> _is_aws_endpoint("S3.US-EAST-1.AMAZONAWS.COM.:443")
    True
    """
    return host_of(endpoint).removesuffix(".").lower().endswith(_AWS_SUFFIXES)


# distribution's drivers that serve every blob themselves: no redirect, whatever the settings.
_SERVING_DRIVERS = frozenset({"filesystem", "inmemory"})
# Public clouds' stores, publicly trusted unless the source points them elsewhere (Azure Stack...).
_PUBLIC_CLOUD_DRIVERS = frozenset({"azure", "gcs"})


def _plain_http(settings: RegistrySettings) -> bool:
    """Whether clients reach the registry over plain HTTP: its address says ``http://`` and it serves
    no TLS itself (distribution's http.tls, Harbor's https section)."""
    return bool(settings.http_host and settings.http_host.startswith("http://") and not settings.http_tls)


_BUCKET_AS_LABELS = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _virtual_host_ok(bucket: str, host: str, scheme: str | None) -> bool:
    """Whether the S3 client puts ``bucket`` in front of ``host`` (virtual-hosted style), as the AWS SDK
    decides: not before an IP address, not for a bucket that is no DNS name, and not for a dotted one
    on https (the endpoint's certificate would not cover it): path style there, host unchanged."""
    name = host_of(host).strip("[]")
    try:
        ipaddress.ip_address(name)
        return False
    except ValueError:
        pass
    if not _BUCKET_AS_LABELS.match(bucket) or ".." in bucket:
        return False
    return not (scheme == "https" and "." in bucket)


@dataclass(frozen=True)
class RedirectTarget:
    """One place engines are sent for blobs: ``scheme`` and ``host`` ``None`` where nowhere, ``host``
    ``None`` with https for a driver's own store; ``why`` for the reasons, ``warning`` where the source
    leaves the host in doubt."""

    scheme: str | None
    host: str | None
    why: str
    warning: str | None = None


def redirect_target(settings: RegistrySettings) -> tuple[str | None, str | None, str]:
    """Where engines are sent for blobs: ``(scheme, host[:port], why)``; ``(None, None, why)`` if nowhere,
    ``("https", None, why)`` for a driver's own store whose address the settings do not give.

    Order (fact 2): middleware baseurl > redirectendpoint > regionendpoint > AWS public endpoint. The
    first of :func:`redirect_targets`.
    """
    first = redirect_targets(settings)[0]
    return first.scheme, first.host, first.why


def redirect_targets(settings: RegistrySettings) -> tuple[RedirectTarget, ...]:
    """Every place engines may be sent for blobs, the one most clients get first."""
    # Before any middleware: distribution redirects at all only where redirect is not disabled
    # (blobServer.ServeBlob), and a middleware only rewrites the URL of a redirect it makes.
    if settings.redirect_disabled:
        return (
            RedirectTarget(
                None, None, "storage.redirect.disable is true: blobs are served through the registry"
            ),
        )
    if settings.redirect_baseurl and not _cloudfront_passes_through(settings):
        scheme, host = endpoint_from_url(settings.redirect_baseurl, settings.origin)
        middleware = RedirectTarget(
            scheme, host, f"the {settings.redirect_middleware} middleware's baseurl sends clients to {host}"
        )
        if settings.redirect_middleware == "cloudfront" and settings.redirect_ipfilteredby:
            return (middleware, _driver_target(settings, _ip_filtered_why(settings, host)))
        return (middleware,)
    target = _driver_target(settings)
    if settings.redirect_baseurl:
        # The cloudfront middleware signs URLs of S3 only: on another driver it redirects as the driver.
        note = (
            f"; its cloudfront middleware redirects as the {settings.driver} driver does "
            "(it signs S3 URLs only)"
        )
        return (dataclasses.replace(target, why=target.why + note),)
    return (target,)


def _cloudfront_passes_through(settings: RegistrySettings) -> bool:
    return settings.redirect_middleware == "cloudfront" and settings.s3 is None


def _ip_filtered_why(settings: RegistrySettings, cloudfront_host: str) -> str:
    clients = (
        f"clients in AWS's {', '.join(settings.redirect_awsregions)} address ranges"
        if settings.redirect_ipfilteredby == "awsregion"
        else "clients in AWS's address ranges"
    )
    return (
        f"the cloudfront middleware's ipfilteredby: {settings.redirect_ipfilteredby} sends {clients} to S3 "
        f"itself, and the others to {cloudfront_host}: engines may be sent to either"
    )


def _driver_target(settings: RegistrySettings, why_prefix: str | None = None) -> RedirectTarget:
    """Where the storage driver itself sends clients, a middleware aside."""
    target = _storage_driver_target(settings)
    return dataclasses.replace(target, why=f"{why_prefix}; {target.why}") if why_prefix else target


def _storage_driver_target(settings: RegistrySettings) -> RedirectTarget:
    if settings.driver in _SERVING_DRIVERS:
        return RedirectTarget(
            None, None, f"storage driver {settings.driver!r} serves blobs through the registry"
        )
    s3 = settings.s3
    if s3 is None:
        return RedirectTarget(
            "https",
            None,
            f"storage driver {settings.driver!r} can redirect clients to its own store, whose address "
            "trust-agent does not read (it reads S3's)",
        )
    section = f"{'storage_service' if settings.kind == 'harbor' else 'storage'}.{settings.driver}"
    for key, value in (("redirectendpoint", s3.redirectendpoint), ("regionendpoint", s3.regionendpoint)):
        if value:
            scheme, host = endpoint_from_url(value, settings.origin)
            if not s3.secure and "://" not in value:
                scheme = "http"
            host, doubt = _bucket_addressing(settings, section, host, scheme)
            variable = f"REGISTRY_STORAGE_{settings.driver.upper()}_{key.upper()}"
            named = f"{variable} (environment)" if variable in settings.env_overrides else f"{section}.{key}"
            why = f"{named} sends clients to {scheme}://{host}"
            if doubt is not None and s3.forcepathstyle is None:
                # Said, not warned: every config.yml of a 2.x registry leaves the key unset.
                return RedirectTarget(scheme, host, f"{why} ({doubt})")
            return RedirectTarget(scheme, host, why, doubt)
    region = s3.region or "us-east-1"
    return RedirectTarget(
        "https" if s3.secure else "http", f"s3.{region}.amazonaws.com", "no endpoint set: AWS S3"
    )


# Sources whose registry is distribution 2.x: Harbor builds its registry from distribution's 2.8 line
# (goharbor/distribution), and DTR/MSR 2.x predate distribution 3.0 (2025).
_DISTRIBUTION_2_KINDS = frozenset({"harbor", "dtr"})


def _bucket_addressing(
    settings: RegistrySettings, section: str, host: str, scheme: str | None
) -> tuple[str, str | None]:
    """The host engines reach for an endpoint the source names, and a warning where it depends on a
    distribution version the source does not give.

    distribution 2.x forces path style for such an endpoint (the host as written) and reads no
    ``forcepathstyle``; 3.x passes ``forcepathstyle`` to its S3 client, default false: virtual-hosted
    style, the bucket in front of the host where the client can put it there (fact 2).
    """
    s3 = settings.s3
    assert s3 is not None
    virtual = f"{s3.bucket}.{host}" if s3.bucket and _virtual_host_ok(s3.bucket, host, scheme) else host
    if settings.kind in _DISTRIBUTION_2_KINDS or virtual == host or s3.forcepathstyle:
        return host, None
    if s3.forcepathstyle is None:
        return host, (
            f"{section}.forcepathstyle is not set: distribution 2.x's path style is taken; 3.x reads it as "
            f"false and sends engines to {virtual}, which forcepathstyle: true would make {host} for both"
        )
    return virtual, (
        f"{section}.forcepathstyle is false: distribution 3.x sends engines to {virtual} (virtual-hosted "
        f"style), which the policy takes; distribution 2.x reads no forcepathstyle and sends them to "
        f"{host}. The storage certificate must cover the name the running version uses"
    )


def _may_be_private(target: RedirectTarget) -> bool:
    """A store on https whose certificate may come from a private CA: any but AWS's."""
    return target.scheme == "https" and not (target.host is not None and _is_aws_endpoint(target.host))


def registry_names(settings: RegistrySettings, given: tuple[str, ...]) -> tuple[str, ...]:
    """Every spelling of the registry address (``--registry``; else ``http.host``), validated, in order."""
    if given:
        names = [registry_from_option(name, "--registry") for name in given]
    elif settings.http_host:
        names = [registry_from_url(settings.http_host, f"{settings.origin}: http.host")]
        parts = urlsplit(
            settings.http_host if "://" in settings.http_host else "https://" + settings.http_host
        )
        # Users write both "reg" and "reg:443" for the default port; each is its own directory (fact 5).
        if parts.port in (443, None) and parts.scheme == "https":
            bare = host_of(names[0])
            names = [bare, f"{bare}:443"]
    else:
        raise UsageError(
            f"{settings.origin}: the source has no http.host; say which address clients use with "
            "--registry HOST[:PORT]"
        )
    return tuple(dict.fromkeys(validate_registry(n, "--registry") for n in names))


def canary_under_policy(reference: str, registries: tuple[str, ...]) -> str:
    """``reference`` if it is pulled from one of ``registries`` exactly as spelled (the certs.d
    directory dockerd reads for it), else a ``UsageError``: a pull from anywhere else proves nothing
    about the policy, and the engine would remove that image first for nothing.

    >>> canary_under_policy("registry.test:443/lab/busybox:1", ("registry.test", "registry.test:443"))
    'registry.test:443/lab/busybox:1'
    """
    registry = image_registry(reference)
    if registry in registries:
        return reference
    why = (
        "its first component has no '.' or ':' and is not localhost, so docker pulls it from docker.io"
        if registry == DOCKER_HUB_DOMAIN and not reference.startswith(f"{DOCKER_HUB_DOMAIN}/")
        else f"docker pulls it from {registry}"
    )
    raise UsageError(
        f"--canary-image {reference}: {why}, not from this policy's registries "
        f"({', '.join(registries)}): its pull would prove nothing about them; name an image under one, "
        f"e.g. {registries[0]}/{_repository_of(reference)}"
        if registries
        else f"--canary-image {reference}: this policy has no registry to prove"
    )


def _repository_of(reference: str) -> str:
    """``reference`` without the registry docker reads in it (``lab/busybox:1`` stays as it is)."""
    first, _, rest = reference.partition("/")
    return rest if rest and image_registry(reference) == first else reference


def _same_address(name: str, default_port: int) -> tuple[str, int]:
    """A registry spelling as the address it reaches: DNS compares host names without capitals or the
    root's dot, and an absent port is the scheme's (``reg`` and ``reg:443`` reach one registry)."""
    host = host_of(name)
    port = name[len(host) + 1 :]
    return host.removesuffix(".").lower(), int(port) if port else default_port


def _not_the_sources_registry(settings: RegistrySettings, given: tuple[str, ...]) -> tuple[str, ...]:
    """A warning where ``--registry`` names none of the addresses the source's http.host spells: a
    mistyped name (registry.tset) would have every host's trust moved to a registry nobody pulls from,
    trust-agent's CA files for the real one removed, and pulls broken on a run that exits 0.

    Warned, not refused: clients may reach a registry by a name its http.host does not give (a load
    balancer's, a DNS alias, a move to a new name), and a refusal would need a confirming flag on every
    command and in the daemon's config for a setup that is right as given. The plan names each
    removal as a takeover by the other name, and plan, policy and rollout print this warning first.
    """
    if not given or not settings.http_host:
        return ()
    try:
        spelled = registry_names(settings, ())
    except InputError:
        return ()  # an http.host that is no registry address names nothing to compare with
    scheme = urlsplit(settings.http_host).scheme if "://" in settings.http_host else "https"
    default_port = 80 if scheme == "http" else 443
    wanted = {_same_address(name, default_port) for name in spelled}
    if any(_same_address(name, default_port) in wanted for name in given):
        return ()
    return (
        f"--registry {', '.join(given)} names none of the addresses the source gives the registry "
        f"({settings.origin}: http.host {settings.http_host}, that is {', '.join(spelled)}): engines get "
        f"trust for {', '.join(given)} alone, and trust-agent's CA files under "
        f"{', '.join(f'certs.d/{n}/' for n in spelled)} are removed as another registry's. If clients "
        f"pull as {spelled[0]}, a mistyped --registry breaks every pull: give --registry {spelled[0]}",
    )


def build_policy(
    settings: RegistrySettings,
    registries: tuple[str, ...] = (),
    storage_cas: tuple[CABundle, ...] = (),
    registry_cas: tuple[CABundle, ...] = (),
    *,
    no_storage_ca: bool = False,
    no_registry_ca: bool = False,
) -> TrustPolicy:
    """Derive what every engine must trust from the registry's settings plus command-line input.

    ``storage_cas``/``registry_cas`` are bundles given on the command line; they are added to any CA the
    source itself carries (DTR's storage root CA, Harbor's ca_bundle, DTR's ``/ca``), already parsed
    by the caller.
    """
    if no_storage_ca and storage_cas:
        raise UsageError(
            "--no-storage-ca says the storage needs no CA, but one is given (--storage-ca, or in the "
            "source): choose one"
        )
    if no_registry_ca and registry_cas:
        raise UsageError(
            "--no-registry-ca says the registry needs no CA, but one is given (--registry-ca, or in the "
            "source): choose one"
        )
    names = registry_names(settings, registries)
    reasons: list[str] = []
    missing = False
    warnings: list[str] = [*_not_the_sources_registry(settings, registries), *settings.warnings]
    warnings += [
        f"{name}: dockerd looks up certs.d/ and insecure-registries as image names spell the registry, "
        f"capitals included; if clients write {name.lower()}, give that spelling with --registry too"
        for name in names
        if name != name.lower() and name.lower() not in names
    ]
    targets = redirect_targets(settings)
    reasons.extend(target.why for target in targets)
    warnings.extend(target.warning for target in targets if target.warning)
    # The store that decides what to trust: the first one on https that may have a private CA.
    deciding = next((t for t in targets if _may_be_private(t)), targets[0])
    scheme, endpoint = deciding.scheme, deciding.host
    private = [t.host for t in targets if _may_be_private(t) and t.host is not None]
    endpoints = " and ".join(private) if private else endpoint

    insecure = False
    storage_bundles: tuple[CABundle, ...] = ()
    if _plain_http(settings):
        # Before anything about storage: dockerd speaks plain HTTP to a registry (localhost aside) only
        # where it is listed as insecure, and that listing covers the redirect it follows too.
        insecure = True
        reasons.append(
            f"the registry is served over plain HTTP ({settings.http_host}): dockerd pulls from it only "
            "where it is listed in insecure-registries, which also covers the redirect it follows (fact 9)"
        )
        if storage_cas:
            warnings.append("storage CA given but the registry is plain HTTP: insecure-registries is used")
    elif endpoint is None and scheme is None:
        reasons.append("no redirect: only the registry's own certificate matters")
        if storage_cas:
            warnings.append("storage CA given but engines are never sent to storage: not installed")
    elif settings.s3 is not None and settings.s3.skipverify and scheme == "https":
        insecure = True
        reasons.append(
            "storage.s3.skipverify is set: engines must skip verification too, so the registry is listed "
            "in insecure-registries, which also covers the redirect it follows (fact 9)"
        )
        if storage_cas:
            warnings.append("storage CA given but skip-TLS is set: insecure-registries is used instead")
    elif scheme == "http":
        reasons.append(f"the redirect to {endpoint} is plain HTTP: nothing to trust (fact 3)")
        if storage_cas:
            warnings.append("storage CA given but the redirect is plain HTTP: not installed")
    elif endpoint is not None and _is_aws_endpoint(endpoint):
        reasons.append(f"{endpoint} is AWS S3, publicly trusted: nothing to install")
    elif endpoint is None and settings.driver in _PUBLIC_CLOUD_DRIVERS and not storage_cas:
        reasons.append(
            f"the {settings.driver} store is publicly trusted unless it is your own: nothing to install"
        )
    else:
        # A store on https that may have a private CA: an endpoint the source names, or a driver's own.
        storage_bundles = storage_cas
        if storage_bundles and endpoint is not None:
            reasons.append(
                f"engines follow the redirect to {endpoints} with the registry's TLS config, so the storage "
                f"CA goes into certs.d/<registry>/ for {', '.join(names)}, not certs.d/{endpoint}/ (fact 4)"
            )
        elif storage_bundles:
            reasons.append(
                "engines follow a redirect with the registry's TLS config, so the storage CA goes into "
                f"certs.d/<registry>/ for {', '.join(names)} (fact 4)"
            )
        elif no_storage_ca:
            store = f"{endpoints}'s" if endpoint is not None else "the store's"
            reasons.append(f"--no-storage-ca: {store} certificate is publicly trusted: no storage CA")
        else:
            missing = True
            warnings.append(
                f"engines are redirected to {' and '.join(f'https://{h}' for h in private)}; if "
                f"{'its certificate is' if len(private) == 1 else 'a certificate there is'} from a private "
                "CA, give it with --storage-ca FILE (or in the source), or pulls will fail with x509 errors"
                if endpoint is not None
                else f"engines may be redirected to the {settings.driver} store; if its certificate is "
                "from a private CA, give it with --storage-ca FILE, or pulls will fail with x509 errors"
            )
    if not insecure and not registry_cas and not no_registry_ca:
        warnings.extend(_registry_ca_warning(names))
    ca_files: list[CAFile] = []
    if storage_bundles:
        ca_files.append(CAFile("storage", CA_FILE_NAMES["storage"], _merge(storage_bundles)))
    if registry_cas:
        ca_files.append(CAFile("registry", CA_FILE_NAMES["registry"], _merge(registry_cas)))
        reasons.append("the registry's own CA goes into certs.d/<registry>/ for every spelling")
    for bundle in (*storage_bundles, *registry_cas):
        warnings.extend(f"{bundle.origin}: {w}" for w in bundle.warnings)

    return TrustPolicy(
        registries=names,
        storage_endpoint=targets[0].host,
        storage_scheme=targets[0].scheme,
        storage_alternatives=tuple((t.scheme, t.host) for t in targets[1:] if t.scheme and t.host),
        ca_files=tuple(ca_files),
        insecure=insecure,
        storage_ca_missing=missing,
        registry_ca_missing=not registry_cas and not no_registry_ca,
        reasons=tuple(reasons),
        warnings=tuple(dict.fromkeys(warnings)),
    )


def _registry_ca_warning(names: tuple[str, ...]) -> tuple[str, ...]:
    """Engines verify the registry's certificate against the system store and certs.d/<registry>/:
    without a registry CA, a privately signed one fails every pull. Which names may be private is
    judged as for the storage: every one but AWS's (an ECR registry is publicly trusted)."""
    if all(_is_aws_endpoint(name) for name in names):
        return ()
    return (
        f"engines reach the registry at https://{names[0]} and trust its certificate only if a public CA "
        "signed it; if a private CA did, give that CA with --registry-ca FILE, or pulls will fail with "
        "x509 errors (--no-registry-ca if its certificate is publicly trusted)",
    )


def _merge(bundles: tuple[CABundle, ...]) -> CABundle:
    if len(bundles) == 1:
        return bundles[0]
    seen: dict[str, None] = {}
    pem = b""
    certificates = []
    for bundle in bundles:
        blocks = bundle.pem.split(b"-----END CERTIFICATE-----")
        for info, block in zip(bundle.certificates, blocks, strict=False):
            if info.sha256 in seen:
                continue
            seen[info.sha256] = None
            certificates.append(info)
            pem += block.strip() + b"\n-----END CERTIFICATE-----\n"
    return CABundle(
        origin=", ".join(b.origin for b in bundles),
        pem=pem,
        certificates=tuple(certificates),
        warnings=(),
    )
