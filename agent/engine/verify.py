"""Verified, not assumed: read the engine's live registry config, and pull a canary where asked.

certs.d files do not show in ``/info`` (trust fact 15); the live check covers ``insecure-registries``,
and the canary pull proves the CA files end to end.
"""

from __future__ import annotations

import ipaddress
import shlex
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from agent.engine.gather import INFO_COMMAND_TAIL, INFO_FUNCTION, info_doc, live_info
from agent.engine.unit_log import UNIT_JOURNAL_COMMAND, reload_refusal
from agent.errors import TrustAgentError, VerifyError
from agent.hosts.base import Transport
from agent.runtimes.daemon_json import DaemonJsonError, parse_daemon_json
from agent.runtimes.live_registry import insecure_in_force, live_insecure
from agent.runtimes.live_registry import mismatches as live_mismatches


def expected_insecure(
    daemon_json: bytes | None, flags: Sequence[str] = (), *, keep_invalid_utf8: bool = False
) -> frozenset[str]:
    """The entries dockerd lists as insecure when it runs ``daemon_json`` with command line ``flags``
    (the file's part empty when absent or unreadable). ``keep_invalid_utf8``: the host's dockerd reads
    daemon.json as Docker before 23.0 does (:func:`agent.runtimes.docker.reads_invalid_utf8`: bytes
    that are not UTF-8 kept, data after the JSON document ignored), so the file is read as it does."""
    try:
        doc = (
            parse_daemon_json(
                daemon_json,
                "daemon.json",
                keep_invalid_utf8=keep_invalid_utf8,
                ignore_trailing=keep_invalid_utf8,
            )
            if daemon_json
            else {}
        )
    except DaemonJsonError:
        doc = {}
    return insecure_in_force(doc, flags)


def live_config_unjudged(
    daemon_json: bytes | None, path: str, *, keep_invalid_utf8: bool = False
) -> str | None:
    """Why the engine's live registry config cannot be judged against ``daemon_json`` at ``path``: the
    file cannot be parsed (comments, a trailing comma; bytes that are not UTF-8 where the host's dockerd
    refuses them, unless ``keep_invalid_utf8``), so dockerd runs what it loaded from an earlier file,
    which may list registries as insecure that this one does not show; None where it can be."""
    if daemon_json is None:
        return None
    try:
        parse_daemon_json(
            daemon_json, path, keep_invalid_utf8=keep_invalid_utf8, ignore_trailing=keep_invalid_utf8
        )
    except DaemonJsonError as exc:
        return (
            f"live config not compared with daemon.json ({exc}): dockerd runs what it loaded from an "
            "earlier file, which this one does not show; check it with docker info once the file is fixed"
        )
    return None


def read_live_info(transport: Transport, timeout: float = 20.0) -> dict[str, Any]:
    """The engine's ``/info``: over the transport's own route to the API socket where it has one, else
    read on the host (curl on the API socket, else the docker CLI)."""
    reply = transport.engine_get("/info", timeout)
    info = info_doc(reply.body) if reply is not None else None
    if info is not None:
        return info
    result = transport.run_script(INFO_FUNCTION + INFO_COMMAND_TAIL, timeout=timeout)
    info = live_info(result.stdout.decode("utf-8", "replace"))
    if info is None:
        tail = result.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
        raise VerifyError(f"the engine did not answer /info{': ' + tail[0] if tail else ''}")
    return info


def refusal_since(transport: Transport, since: float) -> Callable[[], str | None]:
    """For :func:`wait_for_live_config`: dockerd's reason for refusing the reload done after ``since``
    (the apply script's ``written`` stamp), read from docker.service's journal on the host."""

    def refused() -> str | None:
        try:
            result = transport.run_script(UNIT_JOURNAL_COMMAND, timeout=30)
        except TrustAgentError:
            return None  # the wait for the live config goes on, and says what it finds
        return reload_refusal(result.stdout.decode("utf-8", "replace"), since)

    return refused


def mismatches(info: dict[str, Any], registries: Iterable[str], wanted: frozenset[str]) -> list[str]:
    """Registries whose live insecure/secure state differs from ``wanted`` (what the files ask for)."""
    return live_mismatches(live_insecure(info, registries), wanted)


def wait_for_live_config(
    read_info: Callable[[], dict[str, Any]],
    registries: tuple[str, ...],
    wanted: frozenset[str],
    *,
    timeout: float = 15.0,
    interval: float = 0.2,
    refused: Callable[[], str | None] | None = None,
    refused_every: float = 1.0,
) -> dict[str, Any]:
    """Poll ``/info`` until the live config matches (SIGHUP applies asynchronously), bounded by ``timeout``.

    ``refused``, asked while the config still does not match ``refused_every`` seconds on (and as often
    after), gives dockerd's own reason where it refused the reload: the wait ends there, as nothing will
    change. A SIGHUP still on its way is not worth asking about: a converging host never asks."""
    deadline = time.monotonic() + timeout
    problems: list[str] = ["no answer from the engine"]
    last_error: Exception | None = None
    asked = time.monotonic()
    while True:
        reason: str | None = None
        try:
            info = read_info()
            problems = mismatches(info, registries, wanted)
            if not problems:
                return info
            if refused is not None and time.monotonic() - asked >= refused_every:
                asked = time.monotonic()
                reason = refused()
        except Exception as exc:  # the engine may be restarting: keep polling until the deadline
            last_error = exc
            problems = [f"engine API: {exc}"]
        if reason:
            raise VerifyError(f"dockerd refused the reload: {reason}")
        if time.monotonic() >= deadline:
            detail = "; ".join(problems)
            raise VerifyError(f"live config does not match after {timeout:.0f}s: {detail}") from last_error
        time.sleep(interval)


class CanaryError(VerifyError):
    """The canary pull failed; ``removed``: the canary was removed for it, so it is gone from the host.

    ``pull_error`` is the pull's own failure; the message adds, where ``image`` was removed, that it is
    no longer on the host (a caller that pulls it back says so instead)."""

    def __init__(self, message: str, *, removed: bool, image: str | None = None) -> None:
        gone = (
            f"; {image} was removed before the pull (so that its blobs come through the storage) and is "
            f"no longer on this host: docker pull {image} once the pull works"
            if removed and image
            else ""
        )
        super().__init__(message + gone)
        self.removed = removed
        self.pull_error = message


class CanaryPull(NamedTuple):
    """What a canary pull says for the host's ``verified``; ``unproved``, where it fetched no blob
    through the storage redirect, why (a host warning: the CA may be right, the pull did not show it)."""

    said: str
    unproved: str | None = None


def canary_pull(
    api: Any, image: str, registries: Iterable[str], auth: Mapping[str, Any] | None = None
) -> CanaryPull:
    """Pull ``image`` through the engine so that its blobs are fetched, through the storage redirect;
    raise :class:`CanaryError` with the engine's message on failure. Returns what the pull proved.

    A pull of an image the engine holds, under any name, fetches no blob (the manifest alone is read,
    from the registry itself): it would pass with a wrong storage CA. So the canary is removed first
    where nothing else holds it (no other tag, no container, no image built on it); the pull puts it
    back, so the host ends as it was. The pull proves the redirect only where it fetched a blob
    (:func:`fetched_a_blob`); else it says it proved nothing, and why.
    An image of none of ``registries`` (the policy's) is neither removed nor pulled: its pull proves
    nothing of the policy, and a failed one would leave it gone. ``auth``: the registry's credentials,
    read once for the run (:func:`canary_credentials`); ``{}`` pulls anonymously.
    """
    domain = image_registry(image)
    if domain not in set(registries):
        why = (
            f"canary {image} not pulled: it is from {domain}, not one of the policy's registries, so "
            "its pull would prove nothing of this policy"
        )
        return CanaryPull(why, unproved=why)
    held = _remove_if_only_the_canary(api, image)
    before = _image_ids(api)
    try:
        statuses = _pull(api, image, auth)
    except VerifyError as exc:
        raise CanaryError(str(exc), removed=held == "removed", image=image) from exc
    pulled = _inspected(api, image)
    if fetched_a_blob(statuses, new_image=_not_held_before(pulled, before)):
        return CanaryPull(f"canary pull {image}")
    return unproved_pull(image, held if held not in ("absent", "removed") else _held_as(image, pulled))


def unproved_pull(image: str, where: str) -> CanaryPull:
    """A canary pull of ``image`` that fetched no blob, the image on the host already (``where``: what
    held it), said as every canary says it (the CLI's, the daemon's, the Ansible role's)."""
    return CanaryPull(
        f"canary pull {image} (on the host already, {where}: no blob fetched, the storage redirect unproved)",
        unproved=(
            f"the storage redirect is unproved: the canary pull of {image} fetched no blob (the image is "
            f"on the host already, {where}), so a wrong storage CA would pass it too; give a canary "
            "image the host does not hold to prove it"
        ),
    )


# What dockerd (20.10 and 26.1, seen in the lab) says in a pull's progress stream of a layer it fetches
# from the registry, through the storage redirect. It says "Already exists" of a layer it holds, and
# nothing at all of the image config it fetches.
_BLOB_FETCHED = frozenset(
    {"Pulling fs layer", "Waiting", "Downloading", "Verifying Checksum", "Download complete", "Pull complete"}
)


def fetched_a_blob(statuses: Iterable[str], *, new_image: bool) -> bool:
    """Whether a pull whose progress stream said ``statuses`` fetched a blob from the registry: a layer,
    or the image config, which the stream never shows: it was fetched where the image (its ID is the
    config's digest) is ``new_image``, not on the host before the pull. An image the host holds under
    another name is neither: dockerd finds its config and fetches nothing.

    >>> fetched_a_blob(["Pulling from test/busybox", "Already exists", "Digest: sha256:1"], new_image=True)
    True
    >>> fetched_a_blob(["Pulling from test/busybox", "Status: Downloaded newer image for r/x:1"], new_image=False)
    False
    """
    return new_image or any(status in _BLOB_FETCHED for status in statuses)


def _image_ids(api: Any) -> frozenset[str] | None:
    """The IDs of every image the engine holds (intermediate ones too); None where it does not say."""
    try:
        return frozenset(str(i) for i in api.images(all=True, quiet=True) or ())
    except Exception:  # then only the progress stream can show a blob fetched
        return None


def _inspected(api: Any, image: str) -> dict[str, Any]:
    """The engine's ``docker image inspect`` of ``image``; empty where it does not say."""
    try:
        found = api.inspect_image(image)
    except Exception:
        return {}
    return found if isinstance(found, dict) else {}


def _not_held_before(pulled: Mapping[str, Any], before: frozenset[str] | None) -> bool:
    """Whether the image ``pulled`` (as inspected) has an ID the engine did not hold ``before`` the pull
    (False where either is unknown: then nothing shows the config was fetched)."""
    image_id = pulled.get("Id")
    return before is not None and bool(image_id) and str(image_id) not in before


def _held_as(image: str, inspected: Mapping[str, Any]) -> str:
    """How the host held ``image`` (``inspected`` after the pull) under another name, as its tags say."""
    tags = _other_tags(image, inspected.get("RepoTags") or [])
    return f"also tagged {tags[0]}" if tags else "under another name"


def image_registry(reference: str) -> str:
    """The registry an image reference is pulled from, as docker reads it (distribution's
    ``splitDockerDomain``): the first component where it looks like a host, else ``docker.io``.

    >>> image_registry("registry.test:443/test/img:1"), image_registry("lab/busybox:1")
    ('registry.test:443', 'docker.io')
    >>> image_registry("localhost/img"), image_registry("busybox")
    ('localhost', 'docker.io')
    """
    first, slash, _ = reference.partition("/")
    if not slash:
        return "docker.io"
    looks_like_a_host = any(c in first for c in ".:") or first == "localhost" or first.lower() != first
    return first if looks_like_a_host else "docker.io"


def _pull(api: Any, image: str, auth: Mapping[str, Any] | None = None) -> list[str]:
    """Pull ``image`` with the credentials ``auth`` (none: anonymously); the statuses of its progress
    stream, in order."""
    # The whole reference: the SDK splits repo:tag and repo@sha256:... itself (a digest is no tag).
    # auth_config always given: without it the SDK reads this machine's Docker config (and runs its
    # credential helper) again for every pull.
    statuses: list[str] = []
    try:
        for raw in api.pull(image, stream=True, decode=True, auth_config=dict(auth or {})):
            if isinstance(raw, dict) and raw.get("error"):
                raise VerifyError(f"canary pull of {image} failed: {raw['error']}")
            if isinstance(raw, dict) and isinstance(raw.get("status"), str):
                statuses.append(raw["status"])
    except VerifyError:
        raise
    except Exception as exc:
        raise VerifyError(f"canary pull of {image} failed: {_engine_said(exc)}") from exc
    return statuses


def _engine_said(exc: Exception) -> str:
    """An engine API error in the engine's words (``404: manifest unknown``), not the SDK's, whose text
    names its internal ``http+docker://`` URL; a connection that ended mid-pull, in words."""
    status, explanation = getattr(exc, "status_code", None), getattr(exc, "explanation", None)
    if status is not None and explanation:
        return f"{status}: {explanation}"
    if connection_lost(exc):
        return (
            "the connection to the engine was lost during the canary pull (the SSH session or dockerd "
            "closed it before the pull ended)"
        )
    return str(exc)


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (as the SDK raises it) says the connection to the engine ended before its reply
    did: a closed session, not a slow engine (a timeout says so itself)."""
    import http.client

    import requests
    import urllib3

    if isinstance(exc, requests.exceptions.Timeout | urllib3.exceptions.TimeoutError | TimeoutError):
        return False
    lost = (
        requests.exceptions.ConnectionError,
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.ProtocolError,
        http.client.RemoteDisconnected,
        http.client.IncompleteRead,
        ConnectionError,
        EOFError,
    )
    return isinstance(exc, lost)


# --- a canary pull dockerd does not check the TLS of ----------------------------------------------


def tls_unchecked(image: str, info: Mapping[str, Any] | None, covered: Mapping[str, str]) -> str | None:
    """Why dockerd does not verify the TLS of ``image``'s registry, so that the canary's pull proves no
    CA file: its live config lists the registry as insecure (``info``), or an insecure range covers
    its address (``covered``: registry → why, :func:`covered_registries`); None where it verifies it.

    >>> tls_unchecked("r.test/a:1", {"RegistryConfig": {"IndexConfigs": {"r.test": {"Secure": False}}}}, {})
    'the running dockerd has r.test in insecure-registries: it does not verify its TLS'
    """
    registry = image_registry(image)
    if registry in covered:
        return covered[registry]
    if info is not None and live_insecure(info, [registry])[registry]:
        return f"the running dockerd has {registry} in insecure-registries: it does not verify its TLS"
    return None


def tls_unchecked_pull(image: str, why: str) -> CanaryPull:
    """A canary pull of ``image`` that dockerd made without verifying TLS (``why``): it proves no CA
    file, whatever it fetched; said as every canary says it (the CLI's, the daemon's, the Ansible
    role's)."""
    return CanaryPull(
        f"canary pull {image} (TLS not verified: the CA files unproved)",
        unproved=(
            f"the CA files are unproved: the canary pull of {image} went through without TLS "
            f"verification ({why}), so a wrong storage CA would pass it too; remove that "
            "insecure-registries entry to have dockerd verify, and prove, them"
        ),
    )


def _remove_if_only_the_canary(api: Any, reference: str) -> str:
    """Remove the canary image where only its own reference holds it: ``"absent"`` (not there),
    ``"removed"``, or what holds it (then it is on the host as before, or at most untagged for the
    pull to tag again)."""
    try:
        found = api.inspect_image(reference)
    except Exception:  # not there (or not readable): the pull fetches it
        return "absent"
    image_id = found.get("Id")
    tags = _other_tags(reference, found.get("RepoTags") or [])
    if tags:
        return f"also tagged {tags[0]}"
    # Pulled by digest in another repository: a reference of its own, which a removal only untags.
    digests = _other_repositories(reference, found.get("RepoDigests") or [])
    if digests:
        return f"also held as {digests[0]}"
    try:
        answer = api.remove_image(reference, noprune=False)
    except Exception as exc:  # in use by a container (409), or the engine refused otherwise
        return f"not removable: {getattr(exc, 'explanation', None) or exc}"
    if not any(isinstance(item, dict) and item.get("Deleted") == image_id for item in answer or []):
        return "held by an image built on it"  # untagged only: the image stays, the pull tags it again
    return "removed"


def _other_repositories(reference: str, digests: Iterable[str]) -> list[str]:
    """``digests`` (an image's ``RepoDigests``, ``repo@sha256:...``) of repositories other than
    ``reference``'s own.

    >>> _other_repositories("r.test/a/b:1", ["r.test/a/b@sha256:1", "r.test/a/c@sha256:1"])
    ['r.test/a/c@sha256:1']
    """
    own = _repository(reference)
    return [d for d in digests if d.partition("@")[0] != own]


def _repository(reference: str) -> str:
    """An image reference's repository: without its digest or tag (a port is not a tag)."""
    name = reference.partition("@")[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.partition(":")[0]


def _other_tags(reference: str, tags: Iterable[str]) -> list[str]:
    """``tags`` (an image's ``RepoTags``) but ``reference`` itself."""
    return [t for t in tags if t not in (reference, f"{reference}:latest")]


# --- insecure CIDRs ---------------------------------------------------------------------------------

# dockerd's own default insecure ranges (trust fact 14): in every /info, they alone ask for no lookup.
DEFAULT_INSECURE_CIDRS = frozenset({"127.0.0.0/8", "::1/128"})

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def insecure_cidrs(info: Mapping[str, Any]) -> list[IpNetwork]:
    """The engine's ``RegistryConfig.InsecureRegistryCIDRs`` (``"insecure-registries"`` entries that are
    ranges, and its defaults), as networks; what does not parse is left out."""
    config = info.get("RegistryConfig")
    listed = config.get("InsecureRegistryCIDRs") if isinstance(config, Mapping) else None
    found: list[IpNetwork] = []
    for entry in listed if isinstance(listed, list) else []:
        try:
            found.append(ipaddress.ip_network(str(entry), strict=False))
        except ValueError:
            continue
    return found


def _host_of(registry: str) -> str:
    """``registry.test:5000`` → ``registry.test``; ``[::1]:5000`` → ``::1``."""
    if registry.startswith("["):
        return registry[1:].partition("]")[0]
    return registry.rpartition(":")[0] if registry.count(":") == 1 else registry


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _unlisted(info: Mapping[str, Any], registries: Iterable[str]) -> list[str]:
    """The registries ``IndexConfigs`` does not name: for them alone the insecure ranges decide (moby
    registry ``isSecureIndex``: a name listed there decides by its own ``Secure``)."""
    config = info.get("RegistryConfig")
    index = (config.get("IndexConfigs") if isinstance(config, Mapping) else None) or {}
    return [r for r in registries if not (isinstance(index, Mapping) and r in index)]


def names_to_resolve(
    info: Mapping[str, Any], registries: Iterable[str], *, loopback_too: bool = False
) -> list[str]:
    """The host names of ``registries`` whose addresses decide whether dockerd verifies them: only
    where the engine has an insecure range beyond its defaults (those cover no registry reached over
    the network), or with ``loopback_too`` (the ``verify`` command: a name the host's /etc/hosts points
    at 127.0.0.1 falls in the defaults); not for an IP literal, which needs no lookup."""
    if not loopback_too and not {str(n) for n in insecure_cidrs(info)} - DEFAULT_INSECURE_CIDRS:
        return []
    hosts = (_host_of(r) for r in _unlisted(info, registries))
    return list(dict.fromkeys(h for h in hosts if _ip_literal(h) is None))


def covered_registries(
    info: Mapping[str, Any], registries: Iterable[str], addresses: Mapping[str, Sequence[str]]
) -> dict[str, str]:
    """The registries dockerd does not verify because an insecure range covers their address (an IP
    literal's own, else each of ``addresses[host]``: the host's own resolution, as dockerd looks it up),
    each → why.

    >>> info = {"RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["198.51.100.0/24"]}}
    >>> covered_registries(info, ["registry.test"], {"registry.test": ["198.51.100.10"]})
    {'registry.test': "insecure-registries range 198.51.100.0/24 covers registry.test's address 198.51.100.10 as the host resolves it: dockerd does not verify registry.test's TLS"}
    """
    networks = insecure_cidrs(info)
    found: dict[str, str] = {}
    for registry in _unlisted(info, registries):
        host = _host_of(registry)
        literal = _ip_literal(host)
        candidates = [str(literal)] if literal is not None else addresses.get(host, ())
        for address in candidates:
            ip = _ip_literal(address)
            network = next((n for n in networks if ip is not None and ip in n), None)
            if network is not None:
                found[registry] = _covered_says(registry, address, network, resolved=literal is None)
                break
    return found


def _covered_says(registry: str, address: str, network: IpNetwork, *, resolved: bool) -> str:
    """Why dockerd does not verify ``registry``, whose ``address`` (``resolved`` on the host from its
    name) lies in the insecure range ``network``.

    >>> _covered_says("registry.test", "127.0.0.1", ipaddress.ip_network("127.0.0.0/8"), resolved=True)
    'registry.test resolves to 127.0.0.1 on this host, which dockerd always treats as insecure (127.0.0.0/8): TLS is not verified'
    """
    if resolved and str(network) in DEFAULT_INSECURE_CIDRS:  # a name the host points at loopback
        return (
            f"{registry} resolves to {address} on this host, which dockerd always treats as insecure "
            f"({network}): TLS is not verified"
        )
    how = " as the host resolves it" if resolved else ""
    return (
        f"insecure-registries range {network} covers {registry}'s address {address}{how}: "
        f"dockerd does not verify {registry}'s TLS"
    )


def ranges_covering(
    transport: Transport,
    info: Mapping[str, Any],
    registries: Sequence[str],
    *,
    loopback_too: bool,
    timeout: float | None = None,
) -> tuple[dict[str, str], tuple[str, ...]]:
    """Which of ``registries`` the engine does not verify because one of its insecure ranges covers
    their address as the host resolves it (one ``getent`` round trip, only where :func:`names_to_resolve`
    says one is needed; ``loopback_too``: any name, for loopback), each → why; and a note where the host
    could not be asked."""
    hosts = names_to_resolve(info, registries, loopback_too=loopback_too)
    addresses: dict[str, list[str]] = {}
    notes: tuple[str, ...] = ()
    if hosts:
        try:
            result = transport.run_script(resolve_command(hosts), timeout=timeout)
        except TrustAgentError as exc:
            return {}, (f"{', '.join(hosts)} could not be resolved on the host to check them: {exc}",)
        output = result.stdout.decode("utf-8", "replace")
        addresses = resolved_addresses(output)
        notes = unresolved_notes(output)
    return covered_registries(info, registries, addresses), notes


# The longest a host's lookup of one name may take: a resolver that drops packets would otherwise add
# its own timeout and retries (10-30 s) to the run, once for every name.
LOOKUP_SECONDS = 5

# ``ta_ahosts NAME``: ``getent ahosts NAME``, ended after LOOKUP_SECONDS; where it finds no address it
# prints ``@@ta unresolved NAME STATUS`` (124: ended for taking too long). coreutils' ``timeout`` where
# the host has it, else a watchdog that ends getent (143, SIGTERM); the watchdog's output goes nowhere,
# so its ``sleep`` left behind keeps no SSH channel open.
AHOSTS_FUNCTION = r"""ta_ahosts() {
  if command -v timeout >/dev/null 2>&1; then
    timeout @SECONDS@ getent ahosts "$1"; ta_rc=$?
  else
    getent ahosts "$1" & ta_get=$!
    ( sleep @SECONDS@; kill "$ta_get" ) >/dev/null 2>&1 & ta_dog=$!
    wait "$ta_get"; ta_rc=$?
    kill "$ta_dog" 2>/dev/null
  fi
  [ "$ta_rc" -eq 0 ] || echo "@@ta unresolved $1 $ta_rc"
}""".replace("@SECONDS@", str(LOOKUP_SECONDS))


def resolve_command(hosts: Sequence[str]) -> str:
    """One shell program that prints ``@@ta host <name>`` then ``getent ahosts <name>``'s lines, for
    each, every lookup bounded (:data:`AHOSTS_FUNCTION`)."""
    lookups = (f"echo {shlex.quote('@@ta host ' + h)}; ta_ahosts {shlex.quote(h)}" for h in hosts)
    return "\n".join([AHOSTS_FUNCTION, *lookups])


def resolved_addresses(text: str) -> dict[str, list[str]]:
    """:func:`resolve_command`'s output → the addresses of each name (first column of getent's lines)."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@@ta host "):
            current = found.setdefault(line.removeprefix("@@ta host "), [])
        elif line.startswith(_UNRESOLVED):
            continue
        elif current is not None and line.split():
            address = line.split()[0]
            if address not in current:
                current.append(address)
    return found


_UNRESOLVED = "@@ta unresolved "

# getent's and timeout's exit statuses, as a person reads them.
_LOOKUP_FAILED = {
    "2": "the host's resolver knows no address for it",
    "124": f"the host's resolver gave no answer within {LOOKUP_SECONDS}s (check /etc/resolv.conf)",
    "143": f"the host's resolver gave no answer within {LOOKUP_SECONDS}s (check /etc/resolv.conf)",
}


def lookup_failures(text: str) -> dict[str, str]:
    """The names :func:`resolve_command` found no address for, each with why, in plain words.

    >>> lookup_failures("@@ta host registry.test\\n@@ta unresolved registry.test 124\\n")
    {'registry.test': "the host's resolver gave no answer within 5s (check /etc/resolv.conf)"}
    """
    failures: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith(_UNRESOLVED):
            name, _, status = line.removeprefix(_UNRESOLVED).rpartition(" ")
            failures[name] = _LOOKUP_FAILED.get(status, f"getent ahosts failed (exit {status})")
    return failures


def unresolved_notes(text: str) -> tuple[str, ...]:
    """What the host's failed lookups in :func:`resolve_command`'s output mean for the verify: dockerd
    cannot reach a name the host cannot resolve, and whether an insecure range covers it is unknown."""
    return tuple(
        f"{name} could not be resolved on the host: {why}; dockerd cannot reach it there, and whether "
        "it verifies its TLS is not known"
        for name, why in lookup_failures(text).items()
    )
