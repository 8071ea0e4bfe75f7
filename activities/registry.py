"""The registry activity: list an image's tags and resolve digests over the OCI distribution API.

One ``poll_registry`` call costs one request to an unchanged registry: the tag list is asked
for with ``If-None-Match`` when the registry gave an ETag (a 304 reuses the cached list), and
bearer tokens are cached until they expire and then fetched again without first hitting the
registry for a 401. Digest-following policies send one ``HEAD`` on the manifest instead.

Errors, each one line naming the image and never a credential (class: Temporal type):

RegistryError                 RegistryUnavailable: 5xx, connection refused, timeouts: retryable
 ├── RegistryRateLimitedError RegistryRateLimited: 429, retryable after ``Retry-After``
 ├── RegistryAuthError        RegistryAuthFailed: 401/403 after authenticating, or no
 │                            credentials offered: not retryable
 └── RegistryNotFoundError    RegistryNotFound: 404 for the repository or tag: not retryable
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import http.client
import ipaddress
import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from temporalio import activity

from activities.failures import to_application_error
from activities.registry_models import POLL_REGISTRY, PollRequest, PollResult
from activities.secrets import SecretStore
from flotilla.errors import (
    REGISTRY_AUTH_FAILED,
    REGISTRY_NOT_FOUND,
    REGISTRY_RATE_LIMITED,
    REGISTRY_UNAVAILABLE,
    FlotillaError,
    one_line,
)
from flotilla.hints import Target, ending_with_fix
from flotilla.registryauth import registry_credentials

MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
HTTP_TIMEOUT_SECONDS = 30.0
DEFAULT_RETRY_AFTER_SECONDS = 30.0
# The distribution spec's default token lifetime when the token server names none.
DEFAULT_TOKEN_SECONDS = 60.0
# Renew a token this long before it expires, so a request never races its expiry.
TOKEN_MARGIN_SECONDS = 5.0
MAX_PAGES = 100
_MAX_BODY_IN_ERROR = 120


@dataclass
class HttpReply:
    """One HTTP answer, read whole, with its header names in lower case."""

    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclass
class _Credential:
    """How to authorize requests for one repository: a header value and when it expires."""

    scheme: str  # "Bearer" or "Basic"
    value: str
    expires: float = float("inf")
    challenge: dict[str, str] = field(default_factory=dict)


@dataclass
class _Listing:
    etag: str
    digest: str
    tags: list[str]


def registry_host(registry: str) -> str:
    """The host that serves the API: Docker Hub's name is not its API host."""
    return DOCKER_HUB_API if registry == DOCKER_HUB else registry


def registry_scheme(host: str) -> str:
    """Plain HTTP only on loopback, as Docker treats localhost registries; TLS elsewhere."""
    name = urllib.parse.urlsplit(f"//{host}").hostname or host
    if name == "localhost":
        return "http"
    try:
        return "http" if ipaddress.ip_address(name).is_loopback else "https"
    except ValueError:
        return "https"


_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="...",scope="..."`` -> ("bearer", {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m[1].lower(): m[2] if m[2] else m[3] for m in _CHALLENGE_PARAM.finditer(rest)}
    return scheme.lower(), params


class RegistryError(FlotillaError):
    """A registry call failed on the registry's side (5xx, unreachable, a garbled answer):
    retried with backoff. The subclasses are the answers a retry does not change."""

    type = REGISTRY_UNAVAILABLE
    retryable = True


class RegistryRateLimitedError(RegistryError):
    """429: retried after ``retry_after`` seconds (the registry's ``Retry-After``)."""

    type = REGISTRY_RATE_LIMITED


class RegistryAuthError(RegistryError):
    """401/403 after authenticating, or no credentials to offer: needs a person."""

    type = REGISTRY_AUTH_FAILED
    retryable = False


class RegistryNotFoundError(RegistryError):
    """404 for the repository or the tag: needs a person."""

    type = REGISTRY_NOT_FOUND
    retryable = False


def retry_after_seconds(value: str, now: float) -> float:
    """``Retry-After`` as seconds (a number or an HTTP date); a default when absent or bad."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER_SECONDS
    return max(when.timestamp() - now, 1.0)


def _next_link(header: str) -> str | None:
    """The ``rel="next"`` target of a ``Link`` header, if any."""
    for part in header.split(","):
        match = re.match(r"\s*<([^>]*)>\s*;(.*)", part)
        if match and re.search(r'rel="?next"?', match[2]):
            return match[1]
    return None


def _short(body: bytes) -> str:
    return one_line(body.decode("utf-8", "replace"), _MAX_BODY_IN_ERROR)


class RegistryActivities:
    """Registry reads with per-worker caches of tokens and tag lists (guarded by a lock)."""

    def __init__(self, secrets: SecretStore, *, page_size: int | None = None) -> None:
        self.secrets = secrets
        # None: let the registry choose (distribution sends every tag in one response).
        self.page_size = page_size
        self._lock = threading.Lock()
        # By registry, repository and secret: a token got with one team's secret is not another's.
        self._credentials: dict[tuple[str, str, str, str], _Credential] = {}
        self._listings: dict[tuple[str, str, str, str], _Listing] = {}

    @activity.defn(name=POLL_REGISTRY)
    def poll_registry(self, request: PollRequest) -> PollResult:
        """List the tags of ``registry/repository`` and/or resolve one tag's manifest digest."""
        session = _Session(self, request)
        try:
            result = PollResult()
            if request.list_tags:
                result = session.list_tags()
            if request.digest_of:
                result.digest = session.digest(request.digest_of)
            result.requests = session.requests
        except FlotillaError as err:  # the registry's answer, or the secret (missing, malformed)
            raise to_application_error(err) from None
        finally:
            session.close()
        activity.logger.info(
            "registry %s/%s: %d tags, digest %s, %d request(s)%s",
            request.registry,
            request.repository,
            len(result.tags),
            result.digest or "-",
            result.requests,
            " (not modified)" if result.not_modified else "",
        )
        return result


class _Session:
    """One poll: connections kept open for its few requests, counted for the result."""

    def __init__(self, owner: RegistryActivities, request: PollRequest) -> None:
        self.owner = owner
        self.request = request
        self.host = registry_host(request.registry)
        self.scheme = registry_scheme(self.host)
        self.key = (
            request.registry,
            request.repository,
            request.secret_namespace,
            request.secret_name or "",
        )
        self.name = f"{request.registry}/{request.repository}"
        self.requests = 0
        self._connections: dict[tuple[str, str], http.client.HTTPConnection] = {}

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()

    # --- HTTP ---------------------------------------------------------------------------------

    def _http(self, method: str, url: str, headers: dict[str, str]) -> HttpReply:
        parts = urllib.parse.urlsplit(url)
        key = (parts.scheme, parts.netloc)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        for attempt in (1, 2):
            conn = self._connections.get(key)
            if conn is None:
                factory = (
                    http.client.HTTPSConnection
                    if parts.scheme == "https"
                    else http.client.HTTPConnection
                )
                conn = factory(parts.netloc, timeout=HTTP_TIMEOUT_SECONDS)
                self._connections[key] = conn
            try:
                conn.request(method, path, headers={"User-Agent": "flotilla", **headers})
                resp = conn.getresponse()
                body = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the server closed: reconnect once.
                conn.close()
                self._connections.pop(key, None)
                if attempt == 2:
                    raise
                continue
            if resp.getheader("connection", "").lower() == "close":
                conn.close()
                self._connections.pop(key, None)
            return HttpReply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
        raise AssertionError("unreachable")

    def _registry_call(
        self, method: str, path: str, headers: dict[str, str], what: str
    ) -> HttpReply:
        """A request to the registry with authorization; a 401 leads to one authentication."""
        url = path if path.startswith("http") else f"{self.scheme}://{self.host}{path}"
        credential = self._credential()
        for fresh in (False, True):
            auth = (
                {"Authorization": f"{credential.scheme} {credential.value}"} if credential else {}
            )
            try:
                self.requests += 1
                resp = self._http(method, url, {**headers, **auth})
            except OSError as err:
                raise RegistryError(
                    ending_with_fix(
                        f"{self.name}: {what}: registry unreachable: {err}",
                        Target.IMAGE_REGISTRY,
                    )
                ) from None
            if resp.status != 401:
                return resp
            if fresh:
                break
            credential = self._authenticate(resp.header("www-authenticate"), what)
        secret = self.request.secret_name
        raise RegistryAuthError(
            f"{self.name}: {what}: 401 Unauthorized after authenticating"
            + (f" with secret {secret!r}" if secret else " anonymously (set secretRef)"),
        )

    def _check(self, resp: HttpReply, what: str, *, ok: tuple[int, ...] = (200,)) -> None:
        if resp.status in ok:
            return
        status = f"{resp.status} {http.client.responses.get(resp.status, '')}".strip()
        if resp.status == 429:
            delay = retry_after_seconds(resp.header("retry-after"), time.time())
            raise RegistryRateLimitedError(
                f"{self.name}: {what}: {status}, retrying in {delay:.0f}s",
                retry_after=delay,
            )
        if resp.status == 404:
            raise RegistryNotFoundError(f"{self.name}: {what}: {status}")
        if resp.status == 403:
            raise RegistryAuthError(f"{self.name}: {what}: {status}")
        detail = f": {_short(resp.body)}" if resp.body else ""
        raise RegistryError(f"{self.name}: {what}: {status}{detail}")

    # --- authentication -----------------------------------------------------------------------

    def _basic(self) -> str | None:
        if not self.request.secret_name:
            return None
        data = self.owner.secrets.get(self.request.secret_namespace, self.request.secret_name)
        user, password = registry_credentials(self.request.secret_name, data, self.request.registry)
        return base64.b64encode(f"{user}:{password}".encode()).decode()

    def _credential(self) -> _Credential | None:
        """The cached credential; an expired bearer token is renewed from its known challenge."""
        with self.owner._lock:
            cached = self.owner._credentials.get(self.key)
        if cached is None or cached.expires - TOKEN_MARGIN_SECONDS > time.time():
            return cached
        return self._fetch_token(cached.challenge, "token renewal")

    def _authenticate(self, header: str, what: str) -> _Credential:
        scheme, params = parse_challenge(header)
        if scheme == "basic":
            basic = self._basic()
            if basic is None:
                raise RegistryAuthError(
                    f"{self.name}: {what}: registry asks for credentials (set secretRef)",
                )
            credential = _Credential("Basic", basic)
            with self.owner._lock:
                self.owner._credentials[self.key] = credential
            return credential
        if scheme != "bearer" or "realm" not in params:
            raise RegistryAuthError(
                f"{self.name}: {what}: 401 with an unsupported challenge {header[:60]!r}",
            )
        params.setdefault("scope", f"repository:{self.request.repository}:pull")
        return self._fetch_token(params, what)

    def _fetch_token(self, challenge: dict[str, str], what: str) -> _Credential:
        query = urllib.parse.urlencode(
            [(k, challenge[k]) for k in ("service", "scope") if challenge.get(k)]
        )
        realm = challenge["realm"]
        url = f"{realm}{'&' if '?' in realm else '?'}{query}" if query else realm
        basic = self._basic()
        headers = {"Authorization": f"Basic {basic}"} if basic else {}
        try:
            resp = self._http("GET", url, headers)
        except OSError as err:
            raise RegistryError(f"{self.name}: {what}: token server unreachable: {err}") from None
        if resp.status in (401, 403):
            secret = self.request.secret_name
            raise RegistryAuthError(
                f"{self.name}: {what}: token server refused "
                + (f"the credentials of secret {secret!r}" if secret else "anonymous access")
                + f" ({resp.status})",
            )
        self._check(resp, f"{what}: token")
        try:
            data = json.loads(resp.body)
            token = data.get("token") or data["access_token"]
        except (ValueError, KeyError, AttributeError):
            raise RegistryError(f"{self.name}: {what}: token server sent no token") from None
        lifetime = float(data.get("expires_in") or DEFAULT_TOKEN_SECONDS)
        credential = _Credential("Bearer", token, time.time() + lifetime, dict(challenge))
        with self.owner._lock:
            self.owner._credentials[self.key] = credential
        return credential

    # --- API calls ----------------------------------------------------------------------------

    def list_tags(self) -> PollResult:
        """Every tag, following ``Link`` pages; the first page is conditional on its ETag."""
        what = "tags list"
        with self.owner._lock:
            cached = self.owner._listings.get(self.key)
        query = f"?n={self.owner.page_size}" if self.owner.page_size else ""
        path: str | None = f"/v2/{self.request.repository}/tags/list{query}"
        headers = {"Accept": "application/json"}
        if cached and cached.etag:
            headers["If-None-Match"] = cached.etag
        tags: list[str] = []
        digest = hashlib.sha256()
        etag = ""
        pages = 0
        while path and pages < MAX_PAGES:
            resp = self._registry_call("GET", path, headers, what)
            if resp.status == 304 and cached is not None:
                return PollResult(
                    tags=list(cached.tags), listing_digest=cached.digest, not_modified=True
                )
            self._check(resp, what)
            if pages == 0:
                etag = resp.header("etag")
            headers.pop("If-None-Match", None)
            try:
                page = json.loads(resp.body).get("tags") or []
            except (ValueError, AttributeError):
                raise RegistryError(
                    f"{self.name}: {what}: not a tag list: {_short(resp.body)}",
                ) from None
            tags.extend(str(t) for t in page)
            digest.update(resp.body)
            pages += 1
            link = _next_link(resp.header("link"))
            path = urllib.parse.urljoin(f"{self.scheme}://{self.host}/", link) if link else None
        listing = _Listing(etag=etag, digest="sha256:" + digest.hexdigest(), tags=tags)
        with self.owner._lock:
            self.owner._listings[self.key] = listing
        return PollResult(tags=tags, listing_digest=listing.digest)

    def digest(self, tag: str) -> str:
        """The manifest digest behind ``tag`` (image index, manifest list or single manifest)."""
        what = f"manifest {tag!r}"
        path = f"/v2/{self.request.repository}/manifests/{tag}"
        headers = {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}
        resp = self._registry_call("HEAD", path, headers, what)
        self._check(resp, what)
        found = resp.header("docker-content-digest")
        if found:
            return found
        # Some registries answer HEAD without the header: the digest of the body is the same.
        resp = self._registry_call("GET", path, headers, what)
        self._check(resp, what)
        return "sha256:" + hashlib.sha256(resp.body).hexdigest()
