"""What a registry's storage configuration says, as far as engines are concerned (trust-facts 20–23).

Secrets (access/secret keys, passwords, tokens) are never kept: only whether they were present.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SourceKind = Literal["distribution", "dtr", "harbor"]


@dataclass(frozen=True)
class S3Storage:
    """``storage.s3`` of a distribution config (or its DTR/Harbor equivalent)."""

    bucket: str | None = None
    region: str | None = None
    regionendpoint: str | None = None
    redirectendpoint: str | None = None  # newer distribution: where clients are redirected
    rootdirectory: str | None = None
    secure: bool = True  # false: the redirect is plain HTTP, nothing to trust (fact 3)
    skipverify: bool = False  # the registry skips verifying S3: engines must skip too (DTR doc)
    v4auth: bool = True
    forcepathstyle: bool | None = None  # None: not set in the document
    has_credentials: bool = False  # accesskey/secretkey were present (values never kept)


@dataclass(frozen=True)
class RegistrySettings:
    """The registry's storage settings, from any source kind."""

    kind: SourceKind
    origin: str  # file path or URL, for messages
    driver: str  # "s3", "filesystem", "azure", "gcs", "inmemory", ...
    s3: S3Storage | None = None
    redirect_disabled: bool = False  # storage.redirect.disable (fact 2)
    redirect_middleware: str | None = None  # "redirect" | "cloudfront"
    redirect_baseurl: str | None = None  # that middleware's options.baseurl
    # cloudfront's options.ipfilteredby, "aws" or "awsregion" (None: "none"): clients in AWS's address
    # ranges (of redirect_awsregions, for "awsregion") are sent to S3 itself, not to the baseurl.
    redirect_ipfilteredby: str | None = None
    redirect_awsregions: tuple[str, ...] = ()
    http_host: str | None = None  # http.host: the URL clients use for the registry
    http_tls: bool = False  # http.tls present: the registry itself serves TLS
    storage_ca_pem: bytes | None = None  # DTR "Root CA certificate" / Harbor ca_bundle contents
    storage_ca_origin: str | None = None
    # Harbor's ca_bundle could not be read here (a path on the Harbor host): where and why, one line.
    storage_ca_unread: str | None = None
    registry_ca_pem: bytes | None = None  # DTR GET /ca
    registry_ca_origin: str | None = None
    env_overrides: tuple[str, ...] = field(default=())  # names of REGISTRY_* variables applied
    warnings: tuple[str, ...] = field(default=())  # inputs given that this source leaves unused

    def redacted(self) -> dict[str, Any]:
        """A JSON-ready view for show-source and reports: no secrets, CA contents summarised."""
        data = asdict(self)
        for key in ("storage_ca_pem", "registry_ca_pem"):
            value = data.pop(key)
            data[key.removesuffix("_pem")] = f"<{len(value)} bytes PEM>" if value else None
        data["redirect_awsregions"] = list(self.redirect_awsregions)
        data["env_overrides"] = list(self.env_overrides)
        data["warnings"] = list(self.warnings)
        return data
