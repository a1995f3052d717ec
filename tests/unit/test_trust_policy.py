"""The trust rules (trust-facts 1-4, 9): where engines are redirected and what they must trust."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from agent.certs import CABundle, CertificateInfo
from agent.errors import InvalidNameError, UsageError
from agent.sources import parse_distribution, parse_harbor
from agent.sources.model import RegistrySettings, S3Storage, SourceKind
from agent.trust import CA_FILE_NAMES, TrustPolicy, build_policy, redirect_target, registry_names

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def bundle(name: str = "storage") -> CABundle:
    info = CertificateInfo(f"CN={name}", f"CN={name}", f"AA:{len(name):02X}", NOW, NOW, True, True)
    pem = f"-----BEGIN CERTIFICATE-----\n{name}\n-----END CERTIFICATE-----\n".encode()
    return CABundle(origin=f"{name}.pem", pem=pem, certificates=(info,))


def settings(**s3: object) -> RegistrySettings:
    extra = {
        k: s3.pop(k)
        for k in list(s3)
        if k in ("redirect_disabled", "redirect_baseurl", "redirect_middleware", "driver")
    }
    driver = str(extra.pop("driver", "s3"))
    return RegistrySettings(
        kind="distribution",
        origin="config.yml",
        driver=driver,
        s3=S3Storage(**s3) if driver in ("s3", "s3aws") else None,  # type: ignore[arg-type]
        http_host="https://registry.test",
        **extra,  # type: ignore[arg-type]
    )


def test_storage_ca_goes_into_every_registry_directory_not_the_storage_hosts() -> None:
    policy = build_policy(settings(regionendpoint="https://198.51.100.11:9000"), (), (bundle(),))
    assert policy.registries == ("registry.test", "registry.test:443")
    assert policy.storage_endpoint == "198.51.100.11:9000"
    assert [c.name for c in policy.ca_files] == [CA_FILE_NAMES["storage"]]
    assert not policy.insecure
    assert any("fact 4" in r for r in policy.reasons)


def test_skipverify_lists_the_registry_as_insecure_and_installs_no_ca() -> None:
    policy = build_policy(
        settings(regionendpoint="https://s3.internal:9000", skipverify=True), (), (bundle(),)
    )
    assert policy.insecure
    assert policy.ca_files == ()
    assert any("skip-TLS" in w for w in policy.warnings)


def test_plain_http_storage_needs_nothing() -> None:
    policy = build_policy(settings(regionendpoint="http://s3.internal:9000", secure=False), (), (bundle(),))
    assert policy.storage_scheme == "http"
    assert policy.ca_files == () and not policy.insecure


def test_secure_false_makes_an_endpoint_without_a_scheme_plain_http() -> None:
    policy = build_policy(settings(regionendpoint="s3.internal:9000", secure=False), (), (bundle(),))
    assert (policy.storage_scheme, policy.storage_endpoint) == ("http", "s3.internal:9000")
    assert policy.ca_files == ()
    assert "storage CA given but the redirect is plain HTTP: not installed" in policy.warnings


def test_an_endpoints_own_https_wins_over_secure_false() -> None:
    # The AWS SDK adds a scheme only where there is none (the lab's registry shows it: test_lab_facts).
    policy = build_policy(settings(regionendpoint="https://s3.internal", secure=False), (), (bundle(),))
    assert (policy.storage_scheme, policy.storage_endpoint) == ("https", "s3.internal")
    assert [c.role for c in policy.ca_files] == ["storage"]


def test_the_s3aws_driver_name_is_s3() -> None:
    parsed = parse_distribution(
        "version: 0.1\nhttp: {host: https://reg.test}\nstorage:\n  s3aws:\n    regionendpoint: https://s3.test:9000\n",
        "config.yml",
        {"REGISTRY_STORAGE_S3AWS_SECURE": "false"},
    )
    policy = build_policy(parsed, (), (bundle(),))
    assert (policy.storage_scheme, policy.storage_endpoint) == ("https", "s3.test:9000")
    assert parsed.env_overrides == ("REGISTRY_STORAGE_S3AWS_SECURE",)
    assert policy.reasons[0] == "storage.s3aws.regionendpoint sends clients to https://s3.test:9000"


@pytest.mark.parametrize("driver", ["swift", "oss", "someplugin"])
def test_a_driver_that_redirects_to_its_own_store_gets_the_storage_ca_given(driver: str) -> None:
    given = build_policy(settings(driver=driver), (), (bundle(),), no_registry_ca=True)
    assert [c.role for c in given.ca_files] == ["storage"] and given.warnings == ()
    assert (given.storage_scheme, given.storage_endpoint) == ("https", None)
    assert given.storage_summary() == "the storage driver's own store (its address is not in the source)"
    none_given = build_policy(settings(driver=driver), (), ())
    assert none_given.ca_files == ()
    assert any("--storage-ca" in w and driver in w for w in none_given.warnings)


@pytest.mark.parametrize("driver", ["azure", "gcs"])
def test_public_cloud_stores_need_nothing_unless_a_ca_is_given(driver: str) -> None:
    assert build_policy(settings(driver=driver), (), (), no_registry_ca=True).warnings == ()
    assert [c.role for c in build_policy(settings(driver=driver), (), (bundle(),)).ca_files] == ["storage"]


@pytest.mark.parametrize("driver", ["filesystem", "inmemory"])
def test_drivers_that_serve_blobs_themselves_never_redirect(driver: str) -> None:
    policy = build_policy(settings(driver=driver), (), (bundle(),))
    assert (policy.storage_scheme, policy.storage_endpoint, policy.ca_files) == (None, None, ())
    assert policy.storage_summary() == "no redirect"
    assert "storage CA given but engines are never sent to storage: not installed" in policy.warnings


def test_an_endpoint_from_the_environment_is_named_as_such() -> None:
    parsed = parse_distribution(
        "version: 0.1\nhttp: {host: https://reg.test}\nstorage: {s3: {regionendpoint: https://a.test}}\n",
        "config.yml",
        {"REGISTRY_STORAGE_S3_REGIONENDPOINT": "https://b.test:9000"},
    )
    assert redirect_target(parsed)[2] == (
        "REGISTRY_STORAGE_S3_REGIONENDPOINT (environment) sends clients to https://b.test:9000"
    )


def test_no_endpoint_means_aws_which_is_publicly_trusted() -> None:
    policy = build_policy(settings(region="eu-west-1"), (), (bundle(),))
    assert policy.storage_endpoint == "s3.eu-west-1.amazonaws.com"
    assert policy.ca_files == ()


def test_redirect_disabled_means_only_the_registry_matters() -> None:
    policy = build_policy(
        settings(regionendpoint="https://s3.internal", redirect_disabled=True),
        (),
        (bundle(),),
        (bundle("registry"),),
    )
    assert policy.storage_endpoint is None
    assert [c.role for c in policy.ca_files] == ["registry"]


def test_middleware_baseurl_wins_over_every_endpoint() -> None:
    s = settings(
        regionendpoint="https://s3.internal",
        redirectendpoint="https://s3-public.internal",
        redirect_baseurl="https://cdn.internal:8443/",
        redirect_middleware="cloudfront",
    )
    assert redirect_target(s)[1] == "cdn.internal:8443"


def test_redirectendpoint_wins_over_regionendpoint_and_virtual_host_style_prefixes_bucket() -> None:
    s = settings(regionendpoint="https://s3.internal", redirectendpoint="https://s3-public.internal")
    assert redirect_target(s)[1] == "s3-public.internal"
    s = settings(regionendpoint="https://s3.internal:9000", bucket="images", forcepathstyle=False)
    assert redirect_target(s)[1] == "images.s3.internal:9000"


def test_redirect_disable_wins_over_a_middleware() -> None:
    """distribution redirects at all only where redirect is not disabled; a middleware rewrites the
    redirects it makes (the policy asked for a storage CA of a host engines never reach, or made the
    registry insecure for it)."""
    s = settings(
        regionendpoint="https://s3.internal",
        redirect_baseurl="https://blobs.internal:8443",
        redirect_middleware="redirect",
        redirect_disabled=True,
    )
    assert redirect_target(s)[:2] == (None, None)
    assert not build_policy(s).storage_ca_missing


@pytest.mark.parametrize(
    ("endpoint", "bucket", "host"),
    [
        ("https://[fd00::11]:9000", "registry", "[fd00::11]:9000"),  # never before an IP address
        ("https://198.51.100.11:9000", "registry", "198.51.100.11:9000"),
        ("https://s3.internal:9000", "my.bucket", "s3.internal:9000"),  # dotted, on https: path style
        ("http://s3.internal:9000", "my.bucket", "my.bucket.s3.internal:9000"),
        ("https://s3.internal:9000", "Not_DNS", "s3.internal:9000"),
    ],
)
def test_virtual_host_style_only_where_the_s3_client_uses_it(endpoint: str, bucket: str, host: str) -> None:
    s = settings(regionendpoint=endpoint, bucket=bucket, forcepathstyle=False)
    assert redirect_target(s)[1] == host


def test_filesystem_driver_has_no_redirect() -> None:
    policy = build_policy(settings(driver="filesystem"), (), (bundle(),))
    assert policy.storage_endpoint is None and policy.ca_files == ()


def test_registry_addresses_from_the_command_line_win_and_are_validated() -> None:
    s = settings(regionendpoint="https://s3.internal")
    assert registry_names(s, ("reg.example.com:5000", "reg.example.com:5000")) == ("reg.example.com:5000",)
    with pytest.raises(InvalidNameError):
        registry_names(s, ("../../etc",))


def test_no_registry_address_anywhere_is_a_usage_error() -> None:
    s = RegistrySettings(kind="distribution", origin="c.yml", driver="s3", s3=S3Storage())
    with pytest.raises(UsageError) as info:
        build_policy(s)
    assert info.value.exit_code == 2 and "--registry" in str(info.value)


def test_http_host_with_a_port_gives_exactly_that_spelling() -> None:
    s = RegistrySettings(
        kind="distribution", origin="c.yml", driver="s3", s3=S3Storage(), http_host="https://r.test:5000"
    )
    assert registry_names(s, ()) == ("r.test:5000",)


def test_several_storage_cas_merge_into_one_bundle_without_duplicates() -> None:
    policy = build_policy(
        settings(regionendpoint="https://s3.internal"), (), (bundle("a"), bundle("bb"), bundle("a"))
    )
    (ca,) = policy.ca_files
    assert ca.bundle.pem.count(b"BEGIN CERTIFICATE") == 2
    assert [i.subject for i in ca.bundle.certificates] == ["CN=a", "CN=bb"]


@given(
    st.booleans(), st.booleans(), st.booleans(), st.sampled_from(["https://s3.x:9000", "http://s3.x", None])
)
def test_policy_is_never_both_insecure_and_installing_a_storage_ca(
    secure: bool, skip: bool, disabled: bool, endpoint: str | None
) -> None:
    s = settings(regionendpoint=endpoint, secure=secure, skipverify=skip, redirect_disabled=disabled)
    policy = build_policy(s, (), (bundle(),))
    assert not (policy.insecure and any(c.role == "storage" for c in policy.ca_files))
    if disabled:
        assert policy.storage_endpoint is None and not policy.insecure
    assert policy.fingerprint() == build_policy(s, (), (bundle(),)).fingerprint()


def test_a_private_looking_store_without_a_storage_ca_is_marked_so_a_host_keeps_its_own() -> None:
    private = settings(regionendpoint="https://s3.internal:9000")
    assert build_policy(private).storage_ca_missing
    assert not build_policy(private, (), (bundle(),)).storage_ca_missing
    told = build_policy(private, no_storage_ca=True, no_registry_ca=True)
    assert not told.storage_ca_missing and told.warnings == ()
    assert (
        "--no-storage-ca: s3.internal:9000's certificate is publicly trusted: no storage CA" in told.reasons
    )
    for needs_none in (
        settings(region="eu-west-1"),  # AWS
        settings(regionendpoint="http://s3.internal:9000"),
        settings(regionendpoint="https://s3.internal:9000", skipverify=True),
        settings(driver="filesystem"),
        settings(driver="gcs"),
    ):
        assert not build_policy(needs_none).storage_ca_missing
    assert build_policy(settings(driver="swift")).storage_ca_missing
    with pytest.raises(UsageError, match="--no-storage-ca says the storage needs no CA, but one is given"):
        build_policy(private, (), (bundle(),), no_storage_ca=True)


def test_no_registry_ca_given_is_marked_so_a_host_keeps_its_own() -> None:
    private = settings(regionendpoint="https://s3.internal:9000")
    assert build_policy(private).registry_ca_missing
    assert not build_policy(private, (), (), (bundle(),)).registry_ca_missing
    assert not build_policy(private, no_registry_ca=True).registry_ca_missing
    with pytest.raises(UsageError, match="--no-registry-ca says the registry needs no CA, but one is given"):
        build_policy(private, (), (), (bundle(),), no_registry_ca=True)


def test_a_registry_spelt_with_capitals_is_warned_of_the_lowercase_spelling_clients_write() -> None:
    """dockerd matches certs.d/ case-sensitively (a pull of REGISTRY.test/x did not read
    certs.d/registry.test/, on the lab): http.host Registry.Test alone misses the usual spelling."""
    policy = build_policy(settings(regionendpoint="https://s3.internal:9000"), ("Registry.Test",))
    assert policy.registries == ("Registry.Test",)
    assert (
        "Registry.Test: dockerd looks up certs.d/ and insecure-registries as image names spell the "
        "registry, capitals included; if clients write registry.test, give that spelling with --registry "
        "too"
    ) in policy.warnings
    both = build_policy(
        settings(regionendpoint="https://s3.internal:9000"), ("Registry.Test", "registry.test")
    )
    assert not [w for w in both.warnings if "capitals" in w]


def test_a_registry_served_over_plain_http_is_listed_insecure() -> None:
    """http.host http://... (no TLS of its own): the policy installed CAs and no insecure entry, the
    rollout said changed, and every pull failed with "server gave HTTP response to HTTPS client"."""
    plain = dataclasses.replace(
        settings(regionendpoint="https://s3.internal:9000"), http_host="http://reg.lan:5000"
    )
    policy = build_policy(plain, (), (bundle(),))
    assert policy.insecure and policy.registries == ("reg.lan:5000",)
    assert policy.ca_files == () and not policy.storage_ca_missing
    assert any(
        r.startswith("the registry is served over plain HTTP (http://reg.lan:5000)") for r in policy.reasons
    )
    assert "storage CA given but the registry is plain HTTP: insecure-registries is used" in policy.warnings
    # An http:// address on a registry that serves TLS itself is not plain HTTP.
    served = dataclasses.replace(plain, http_tls=True)
    assert not build_policy(served, (), (bundle(),)).insecure


_AWS_HOSTS = (
    "s3.us-east-1.amazonaws.com",
    "s3.amazonaws.com",
    "my-bucket.s3.eu-west-1.amazonaws.com",
    "s3.cn-north-1.amazonaws.com.cn",
)


@given(
    host=st.sampled_from(_AWS_HOSTS),
    capitals=st.lists(st.booleans(), min_size=40, max_size=40),
    trailing_dot=st.booleans(),
    port=st.sampled_from(["", ":443"]),
)
def test_an_aws_endpoint_is_publicly_trusted_whatever_its_capitals_or_trailing_dot(
    host: str, capitals: list[bool], trailing_dot: bool, port: str
) -> None:
    """DNS names compare without regard to case, and ``name.`` is ``name``: an AWS endpoint written
    S3.US-EAST-1.AMAZONAWS.COM or s3.amazonaws.com. is AWS, not a private-looking store."""
    spelt = "".join(c.upper() if up else c for c, up in zip(host, capitals, strict=False))
    endpoint = f"https://{spelt}{'.' if trailing_dot else ''}{port}"
    policy = build_policy(settings(regionendpoint=endpoint), no_registry_ca=True)
    assert f"{policy.storage_endpoint} is AWS S3, publicly trusted: nothing to install" in policy.reasons
    assert not policy.storage_ca_missing and policy.warnings == ()
    assert build_policy(settings(regionendpoint=endpoint), (), (bundle(),)).ca_files == ()


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://S3.AMAZONAWS.COM.EVIL.TEST",
        "https://s3.notamazonaws.com.",
        "https://AMAZONAWS.COM.cn.example:9000",
        "https://s3.amazonaws.co",
    ],
)
def test_a_name_that_only_looks_like_aws_is_a_private_looking_store(endpoint: str) -> None:
    policy = build_policy(settings(regionendpoint=endpoint))
    assert policy.storage_ca_missing
    assert not any("is AWS S3" in r for r in policy.reasons)


@pytest.mark.parametrize(
    ("given_value", "says"),
    [
        ("https://registry.test/v2", "the scheme https:// and a path are no part of a registry name"),
        ("user@registry.test", "a user@ is no part of a registry name"),
        ("registry.test/library", "a path is no part of a registry name"),
    ],
)
def test_a_registry_given_as_a_url_path_or_with_a_user_is_refused_not_rewritten(
    given_value: str, says: str
) -> None:
    """--registry https://registry.test/v2 quietly became certs.d/registry.test/: what the user gave is
    no name an image reference spells, and the error says which is."""
    with pytest.raises(InvalidNameError) as info:
        build_policy(settings(regionendpoint="https://s3.internal:9000"), (given_value,))
    assert says in str(info.value)
    assert "give registry.test, as image names spell it (certs.d/registry.test/)" in str(info.value)


def _registry_warnings(policy: TrustPolicy) -> list[str]:
    return [w for w in policy.warnings if "--registry-ca FILE" in w]


@pytest.mark.parametrize(
    ("address", "registry"),
    [
        ("https://registry.test", "registry.test"),
        ("https://10.20.30.40:5000", "10.20.30.40:5000"),
        ("https://[fd00::10]:5000", "[fd00::10]:5000"),
        ("https://harbor.corp.internal", "harbor.corp.internal"),
    ],
)
def test_a_registry_that_may_have_a_private_ca_and_no_registry_ca_is_warned_of(
    address: str, registry: str
) -> None:
    """Without --registry-ca, a rollout said changed/verified with no warning while every pull of a
    registry signed by a private CA failed x509: policy showed only registry_ca_missing: true."""
    s = dataclasses.replace(settings(regionendpoint="https://s3.internal:9000"), http_host=address)
    assert _registry_warnings(build_policy(s, (), (bundle(),))) == [
        f"engines reach the registry at https://{registry} and trust its certificate only if a public CA "
        "signed it; if a private CA did, give that CA with --registry-ca FILE, or pulls will fail with "
        "x509 errors (--no-registry-ca if its certificate is publicly trusted)"
    ]


def test_a_registry_named_on_the_command_line_is_judged_by_that_name() -> None:
    s = settings(regionendpoint="https://s3.internal:9000")
    assert _registry_warnings(build_policy(s, ("reg.internal:5000",), (bundle(),)))
    ecr = ("123456789012.dkr.ecr.eu-west-1.amazonaws.com",)
    assert not _registry_warnings(build_policy(s, ecr, (bundle(),)))


def test_no_registry_ca_warning_where_it_is_given_declined_public_or_insecure() -> None:
    s = settings(regionendpoint="https://s3.internal:9000")
    assert not _registry_warnings(build_policy(s, (), (bundle(),), (bundle("registry"),)))
    assert not _registry_warnings(build_policy(s, (), (bundle(),), no_registry_ca=True))
    ecr = dataclasses.replace(s, http_host="https://123456789012.dkr.ecr.eu-west-1.amazonaws.com")
    assert not _registry_warnings(build_policy(ecr, (), (bundle(),)))
    plain = dataclasses.replace(s, http_host="http://reg.lan:5000")
    assert not _registry_warnings(build_policy(plain))
    skipping = settings(regionendpoint="https://s3.internal:9000", skipverify=True)
    assert build_policy(skipping).insecure and not _registry_warnings(build_policy(skipping))


@given(
    registry_ca=st.booleans(),
    declined=st.booleans(),
    plain_http=st.booleans(),
    skipverify=st.booleans(),
    disabled=st.booleans(),
    aws=st.booleans(),
)
def test_the_registry_ca_warning_comes_exactly_when_a_private_ca_could_fail_every_pull(
    registry_ca: bool, declined: bool, plain_http: bool, skipverify: bool, disabled: bool, aws: bool
) -> None:
    """Whatever the storage: warned where engines verify the registry's certificate (not insecure),
    nothing says which CA signed it, and the name is not one that is publicly trusted."""
    assume(not (registry_ca and declined))  # a usage error, tested above
    host = "123456789012.dkr.ecr.us-east-1.amazonaws.com" if aws else "registry.test"
    s = dataclasses.replace(
        settings(
            regionendpoint="https://s3.internal:9000", skipverify=skipverify, redirect_disabled=disabled
        ),
        http_host=f"{'http' if plain_http else 'https'}://{host}",
    )
    policy = build_policy(s, (), (), (bundle("registry"),) if registry_ca else (), no_registry_ca=declined)
    expected = not policy.insecure and not registry_ca and not declined and not aws
    assert bool(_registry_warnings(policy)) == expected


def _takeover_warnings(policy: TrustPolicy) -> list[str]:
    return [w for w in policy.warnings if "names none of the addresses the source gives" in w]


def test_a_registry_the_source_does_not_name_is_warned_of_naming_both() -> None:
    """--registry registry.tset with http.host registry.test: every host's CA files for registry.test
    would be removed as no longer asked for, and pulls broken on a run that exits 0."""
    policy = build_policy(
        settings(regionendpoint="https://s3.internal:9000"), ("registry.tset",), (bundle(),)
    )
    assert policy.registries == ("registry.tset",)
    (warning,) = _takeover_warnings(policy)
    assert warning.startswith("--registry registry.tset names none of the addresses the source gives")
    assert "http.host https://registry.test" in warning
    assert "certs.d/registry.test/" in warning and "give --registry registry.test" in warning
    assert policy.warnings[0] == warning  # first: what else the policy says is about the wrong registry


@given(
    spelling=st.sampled_from(["registry.test", "registry.test:443", "REGISTRY.test", "Registry.Test:443"]),
    others=st.lists(st.sampled_from(["alias.test", "registry.test:5000", "lb.example.com:443"]), max_size=2),
)
def test_any_spelling_of_the_sources_registry_among_the_given_ones_is_not_warned_of(
    spelling: str, others: list[str]
) -> None:
    """DNS ignores capitals, and https's port is 443: each spelling reaches the source's
    registry. Other names beside it are aliases, as a load balancer's."""
    given_names = tuple(dict.fromkeys([*others, spelling]))
    policy = build_policy(settings(regionendpoint="https://s3.internal:9000"), given_names, (bundle(),))
    assert _takeover_warnings(policy) == []


@pytest.mark.parametrize(
    ("http_host", "given"),
    [
        ("https://registry.test", ("registry.test:5000",)),  # another port: another registry
        ("http://registry.test", ("registry.test:443",)),  # plain HTTP's default port is 80
        ("https://registry.test:5000", ("registry.test",)),
    ],
)
def test_another_port_than_the_sources_is_warned_of(http_host: str, given: tuple[str, ...]) -> None:
    s = dataclasses.replace(settings(regionendpoint="https://s3.internal:9000"), http_host=http_host)
    assert len(_takeover_warnings(build_policy(s, given, (bundle(),)))) == 1


def test_without_registry_or_without_http_host_there_is_nothing_to_compare() -> None:
    s = settings(regionendpoint="https://s3.internal:9000")
    assert _takeover_warnings(build_policy(s, (), (bundle(),))) == []
    no_host = dataclasses.replace(s, http_host=None)
    assert _takeover_warnings(build_policy(no_host, ("registry.tset",), (bundle(),))) == []


# --- the cloudfront middleware's ipfilteredby: engines in AWS go to S3 itself ------------------------


def _cloudfront(
    ipfilteredby: str | None, baseurl: str = "https://d111.cloudfront.net/", **s3: object
) -> RegistrySettings:
    return dataclasses.replace(
        settings(redirect_baseurl=baseurl, redirect_middleware="cloudfront", **s3),
        redirect_ipfilteredby=ipfilteredby,
        redirect_awsregions=("eu-west-1",) if ipfilteredby == "awsregion" else (),
    )


def test_ipfilteredby_sends_engines_in_aws_to_s3_itself_so_the_policy_names_both() -> None:
    """cloudfront's RedirectURL returns the S3 driver's own URL for clients in AWS's ranges
    (eligibleForS3): the policy named CloudFront alone, and the TLS check and the storage CA missed S3."""
    s = _cloudfront("aws", regionendpoint="https://s3.internal:9000")
    policy = build_policy(s)
    assert (policy.storage_scheme, policy.storage_endpoint) == ("https", "d111.cloudfront.net")
    assert policy.storage_alternatives == (("https", "s3.internal:9000"),)
    assert policy.storage_summary() == "https://d111.cloudfront.net or https://s3.internal:9000"
    assert policy.as_dict()["storage_alternatives"] == ["https://s3.internal:9000"]
    assert any(
        "ipfilteredby: aws sends clients in AWS's address ranges to S3 itself" in r for r in policy.reasons
    )
    assert any(
        w.startswith("engines are redirected to https://d111.cloudfront.net and https://s3.internal:9000;")
        for w in policy.warnings
    )
    regions = build_policy(_cloudfront("awsregion", region="eu-west-1"))
    assert regions.storage_alternatives == (("https", "s3.eu-west-1.amazonaws.com"),)
    assert any("clients in AWS's eu-west-1 address ranges" in r for r in regions.reasons)


def test_without_ipfilteredby_cloudfront_is_the_only_store() -> None:
    policy = build_policy(_cloudfront(None, regionendpoint="https://s3.internal:9000"))
    assert policy.storage_alternatives == ()
    assert policy.storage_summary() == "https://d111.cloudfront.net"


def test_a_private_s3_behind_a_plain_http_cloudfront_still_gets_the_storage_ca() -> None:
    """The S3 engines in AWS are sent to decides what to trust where the CloudFront side needs nothing."""
    s = _cloudfront("aws", baseurl="http://cdn.internal/", regionendpoint="https://s3.internal:9000")
    policy = build_policy(s, (), (bundle(),))
    assert [c.role for c in policy.ca_files] == ["storage"]
    assert any("engines follow the redirect to s3.internal:9000" in r for r in policy.reasons)
    assert (
        build_policy(
            _cloudfront(None, baseurl="http://cdn.internal/", regionendpoint="https://s3.internal:9000"),
            (),
            (bundle(),),
        ).ca_files
        == ()
    )


def test_cloudfront_on_a_driver_other_than_s3_redirects_as_the_driver() -> None:
    """The middleware signs URLs of S3 only; on another driver it returns the driver's own URL."""
    s = settings(
        driver="filesystem", redirect_baseurl="https://d111.cloudfront.net/", redirect_middleware="cloudfront"
    )
    assert redirect_target(s)[:2] == (None, None)
    redirect = dataclasses.replace(s, redirect_middleware="redirect")
    assert redirect_target(redirect)[:2] == ("https", "d111.cloudfront.net")


@given(
    mode=st.sampled_from([None, "aws", "awsregion"]),
    endpoint=st.sampled_from([None, "https://s3.internal:9000", "http://s3.internal:9000"]),
    baseurl=st.sampled_from(["https://d111.cloudfront.net/", "http://cdn.internal/"]),
)
def test_the_policy_names_the_s3_store_exactly_where_ipfilteredby_sends_engines_there(
    mode: str | None, endpoint: str | None, baseurl: str
) -> None:
    s = _cloudfront(mode, baseurl=baseurl, regionendpoint=endpoint, region="eu-west-1")
    policy = build_policy(s, (), (bundle(),))
    s3 = build_policy(dataclasses.replace(s, redirect_baseurl=None, redirect_middleware=None))
    assert policy.storage_alternatives == (((s3.storage_scheme, s3.storage_endpoint),) if mode else ())
    # A storage CA is installed exactly where some store engines reach is on https and not AWS's.
    private = [
        h
        for sc, h in ((policy.storage_scheme, policy.storage_endpoint), *policy.storage_alternatives)
        if sc == "https" and h and "amazonaws" not in h
    ]
    assert bool(policy.ca_files) == bool(private)


# --- path or virtual-hosted style, by the distribution version that reads forcepathstyle --------------

_VIRTUAL_OK = {"regionendpoint": "https://s3.internal:9000", "bucket": "images"}


def test_an_unset_forcepathstyle_is_path_style_and_the_reasons_name_the_3x_host() -> None:
    """distribution 3.x reads an unset forcepathstyle as false (s3-aws FromParameters, default false):
    engines go to images.s3.internal there, which nothing said. Said in the reasons, not warned of:
    every 2.x config.yml leaves the key unset."""
    policy = build_policy(settings(**_VIRTUAL_OK), (), (bundle(),))
    assert policy.storage_endpoint == "s3.internal:9000"
    assert not any("forcepathstyle" in w for w in policy.warnings)
    (reason,) = [r for r in policy.reasons if "forcepathstyle" in r]
    assert (
        "(storage.s3.forcepathstyle is not set: distribution 2.x's path style is taken; 3.x reads it as "
        "false and sends engines to images.s3.internal:9000, which forcepathstyle: true would make "
        "s3.internal:9000 for both)"
    ) in reason


def test_forcepathstyle_false_is_taken_as_3x_reads_it_and_warned_of_2x() -> None:
    policy = build_policy(settings(forcepathstyle=False, **_VIRTUAL_OK), (), (bundle(),))
    assert policy.storage_endpoint == "images.s3.internal:9000"
    assert any(
        "distribution 2.x reads no forcepathstyle and sends them to s3.internal:9000" in w
        for w in policy.warnings
    )


def test_forcepathstyle_true_or_an_ip_endpoint_reads_the_same_everywhere_and_is_not_warned_of() -> None:
    for s in (
        settings(forcepathstyle=True, **_VIRTUAL_OK),
        settings(regionendpoint="https://198.51.100.11:9000", bucket="images"),
    ):
        assert not any("forcepathstyle" in w for w in build_policy(s, (), (bundle(),)).warnings)


@pytest.mark.parametrize("kind", ["harbor", "dtr"])
def test_harbor_and_dtr_run_distribution_2_which_always_uses_path_style(kind: SourceKind) -> None:
    """Harbor builds its registry from distribution 2.8 and DTR predates 3.0: 2.x forces path style for
    an endpoint and reads no forcepathstyle; forcepathstyle: false put the bucket in front of the host."""
    for flag in (False, None):
        s = dataclasses.replace(settings(forcepathstyle=flag, **_VIRTUAL_OK), kind=kind)
        policy = build_policy(s, (), (bundle(),))
        assert policy.storage_endpoint == "s3.internal:9000"
        assert not any("forcepathstyle" in w for w in policy.warnings)


def test_a_harbor_yml_with_forcepathstyle_false_keeps_the_endpoint_host() -> None:
    s = parse_harbor(
        "hostname: reg.test\nstorage_service:\n  s3:\n    bucket: images\n    regionendpoint: https://s3.internal:9000\n"
        "    forcepathstyle: false\n",
        "harbor.yml",
    )
    assert redirect_target(s)[1] == "s3.internal:9000"


_KINDS: list[SourceKind] = ["distribution", "harbor", "dtr"]


@given(
    bucket=st.sampled_from(["images", "my.bucket", "Not_DNS", "ab"]),
    endpoint=st.sampled_from(["https://s3.internal:9000", "http://s3.internal", "https://198.51.100.11"]),
    flag=st.sampled_from([None, True, False]),
    kind=st.sampled_from(_KINDS),
)
def test_the_version_is_told_exactly_where_2x_and_3x_send_engines_to_different_hosts(
    bucket: str, endpoint: str, flag: bool | None, kind: SourceKind
) -> None:
    s = dataclasses.replace(settings(regionendpoint=endpoint, bucket=bucket, forcepathstyle=flag), kind=kind)
    policy = build_policy(s, (), (bundle(),))
    path_style = endpoint.split("://")[1]
    # What distribution 3.x reads forcepathstyle: false as: the bucket in front where the client can.
    as_3x_false = settings(regionendpoint=endpoint, bucket=bucket, forcepathstyle=False)
    virtual = redirect_target(as_3x_false)[1]
    differ = kind == "distribution" and flag is not True and virtual != path_style
    assert any("forcepathstyle" in w for w in policy.warnings) == (differ and flag is False)
    assert any("forcepathstyle is not set" in r for r in policy.reasons) == (differ and flag is None)
    expected = virtual if kind == "distribution" and flag is False else path_style
    assert policy.storage_endpoint == expected


def test_a_config_yml_with_ipfilteredby_gets_the_storage_ca_for_the_s3_behind_a_plain_http_cdn() -> None:
    """From the document: the storage CA given was dropped as "plain HTTP: not installed", and engines
    in AWS, sent to https://s3.internal:9000, failed with x509 errors."""
    text = (
        "version: 0.1\nhttp: {host: 'https://registry.test'}\nstorage:\n  s3:\n    bucket: b\n    region: r\n"
        "    regionendpoint: https://s3.internal:9000\nmiddleware:\n  storage:\n    - name: cloudfront\n"
        "      options: {baseurl: 'http://cdn.internal/', ipfilteredby: aws}\n"
    )
    policy = build_policy(parse_distribution(text, "config.yml"), (), (bundle(),))
    assert [c.role for c in policy.ca_files] == ["storage"]
    assert not any("not installed" in w for w in policy.warnings)
