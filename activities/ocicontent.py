"""The ``oci`` content store: each blob an OCI artifact in one registry repository.

Every process (workers, agents, the CLI) reaches the same registry, so content written on one
machine is read on another with nothing shared on disk. A blob with sha256 ``<hex>`` is

- a registry blob ``sha256:<hex>`` (the bytes themselves, read back with one GET), and
- an OCI image manifest tagged ``sha256-<hex>`` (``artifactType``
  ``application/vnd.flotilla.content.v1``, the empty config, the blob as its one layer, and
  the time it was written as ``org.opencontainers.image.created``). The tag makes ``has``
  one HEAD from any host, keeps the blob from the registry's own garbage-collect, and lets
  flotilla's garbage collection list what is stored and how old it is.

Requests: ``has`` 1 (HEAD of the tag); ``get`` 1 (GET of the blob; 0 from the local cache);
``put`` of new content 4 (GET of the tag, POST and PUT of the blob, PUT of the manifest),
1 for content already there (plus a manifest PUT and DELETE once it is older than
``touch_after``, which refreshes its written time). A 401 costs one more request, and a
token request when the registry uses bearer tokens; the credential is then reused.

Why not oras-py (PyPI ``oras``, evaluated at 0.2.43, the newest): it speaks basic auth,
bearer tokens, plain HTTP and a custom CA, but (1) every request runs under a built-in
retry decorator that sleeps 3, 5, 11, 29 and 83 s on any exception, so a stopped registry
blocks an activity thread for 131 s before an error surfaces (measured), on top of
Temporal's own retries; (2) a cached bearer token that expired is sent again on the 401
instead of being renewed, so a long-running worker stops authenticating after the token's
lifetime; (3) the auth backend is chosen up front: the default token backend answers a
registry's ``Basic`` challenge by asking the realm for a token (fails against htpasswd
registries), so one configuration cannot serve both kinds; (4) ``push``, ``pull`` and
``get_manifest`` read ``~/.docker/config.json`` and may run ``docker-credential-*``
helpers, credentials that do not come from flotilla's secret store; (5) blobs are pushed
from file paths only, and the auth state (token, headers) is shared without a lock. So this
module is a small client on ``http.client``: a pool of keep-alive connections shared by
threads, basic and bearer auth from the secret store, and one-line errors.

The optional local cache (``cache_dir``, scratch under the worker's workdir) keeps blobs
that were put or got, checked against their digest on every read; it is never state, so a
fresh worker with an empty disk works the same, only with one more request per first read.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import queue
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from activities.content import (
    ContentEntry,
    ContentError,
    ContentStore,
    ContentUnavailableError,
    check_digest,
)
from activities.registry import HttpReply, parse_challenge
from activities.secrets import SecretStore
from flotilla.errors import FlotillaError, one_line
from flotilla.hints import Target, ending_with_fix
from flotilla.registryauth import registry_credentials
from flotilla.settings import ContentRegistrySettings

ARTIFACT_TYPE = "application/vnd.flotilla.content.v1"
BLOB_MEDIA_TYPE = "application/octet-stream"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# The OCI image spec's empty descriptor: the config of artifacts that need none.
EMPTY_CONFIG = b"{}"
EMPTY_CONFIG_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
CREATED = "org.opencontainers.image.created"
TAG_PREFIX = "sha256-"
HTTP_TIMEOUT_SECONDS = 30.0
POOL_SIZE = 8
TOUCH_AFTER = timedelta(hours=1)
DEFAULT_TOKEN_SECONDS = 60.0
TOKEN_MARGIN_SECONDS = 5.0
TAGS_PAGE = 1000
CACHE_MAX_BYTES = 256 * 1024 * 1024
_MAX_DETAIL = 120
_REDIRECTS = (301, 302, 303, 307, 308)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _reason(err: BaseException) -> str:
    return one_line(str(err) or type(err).__name__, _MAX_DETAIL)


# ---------------------------------------------------------------------------------------------
# A small OCI distribution client for one registry
# ---------------------------------------------------------------------------------------------


class _Reply(HttpReply):
    """A registry's answer, with distribution's error body read."""

    def error_codes(self) -> list[str]:
        """The ``errors[].code`` of a distribution error body."""
        try:
            errors = json.loads(self.body).get("errors") or []
            return [str(e.get("code", "")) for e in errors if isinstance(e, dict)]
        except (ValueError, AttributeError):
            return []

    def detail(self) -> str:
        status = f"{self.status} {http.client.responses.get(self.status, '')}".strip()
        try:
            errors = json.loads(self.body).get("errors") or []
            message = "; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict))
        except (ValueError, AttributeError):
            message = self.body.decode("utf-8", "replace")
        return f"{status}: {one_line(message, _MAX_DETAIL)}" if message.strip() else status


@dataclass
class _Credential:
    header: str
    expires: float = float("inf")


class _Client:
    """Requests to one registry: keep-alive connections shared by threads (each request
    borrows one), and an Authorization header per kind of access, renewed on a 401."""

    def __init__(
        self,
        host: str,
        *,
        insecure: bool,
        ca_file: Path | None,
        credentials: _Credentials,
    ) -> None:
        self.host = host
        self.scheme = "http" if insecure else "https"
        self.context = (
            None
            if insecure
            else ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        )
        self.credentials = credentials
        self._idle: queue.LifoQueue[http.client.HTTPConnection] = queue.LifoQueue(POOL_SIZE)
        self._lock = threading.Lock()
        # "pull", "push" or "delete": a bearer token is scoped to one kind of access.
        self._auth: dict[str, _Credential] = {}
        self.requests = 0

    def _connect(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(
                netloc, timeout=HTTP_TIMEOUT_SECONDS, context=self.context
            )
        return http.client.HTTPConnection(netloc, timeout=HTTP_TIMEOUT_SECONDS)

    def _send(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> _Reply:
        """One HTTP exchange; a kept-alive connection the server closed is retried once."""
        parts = urllib.parse.urlsplit(url)
        own = (parts.scheme, parts.netloc) == (self.scheme, self.host)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        for attempt in (1, 2):
            reused = False
            conn: http.client.HTTPConnection | None = None
            if own:
                with contextlib.suppress(queue.Empty):
                    conn, reused = self._idle.get_nowait(), True
            conn = conn or self._connect(parts.scheme, parts.netloc)
            with self._lock:
                self.requests += 1
            try:
                conn.request(
                    method, target, body=body, headers={"User-Agent": "flotilla", **headers}
                )
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as err:
                conn.close()
                stale = isinstance(err, ConnectionError | http.client.BadStatusLine)
                if reused and stale and attempt == 1:
                    continue
                raise ContentUnavailableError(
                    ending_with_fix(
                        f"content registry {parts.netloc} is unreachable: {_reason(err)}",
                        Target.CONTENT_STORE,
                    )
                ) from None
            reply = _Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
            if own and not resp.will_close:
                try:
                    self._idle.put_nowait(conn)
                except queue.Full:
                    conn.close()
            else:
                conn.close()
            return reply
        raise AssertionError("unreachable")

    def call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> _Reply:
        """A request with authorization; a 401 leads to one authentication and one retry.
        Answers other than 401, 403, 429 and 5xx are the caller's to judge."""
        kind = "delete" if method == "DELETE" else "pull" if method in ("GET", "HEAD") else "push"
        url = path if "://" in path else f"{self.scheme}://{self.host}{path}"
        headers = dict(headers or {})
        credential = self._cached(kind)
        for fresh in (False, True):
            auth = {"Authorization": credential.header} if credential else {}
            reply = self._send(method, url, {**headers, **auth}, body)
            if reply.status in _REDIRECTS and reply.header("location"):
                # Blob storage behind the registry (S3, GCS): the URL is signed, so no header.
                location = urllib.parse.urljoin(url, reply.header("location"))
                reply = self._send(method, location, headers, None)
            if reply.status != 401:
                break
            if fresh:
                raise ContentUnavailableError(
                    f"content registry {self.host}: {what}: 401 Unauthorized "
                    f"{self.credentials.describe()}"
                )
            credential = self._authenticate(reply.header("www-authenticate"), kind, what)
        if reply.status == 403:
            raise ContentUnavailableError(
                f"content registry {self.host}: {what}: 403 Forbidden {self.credentials.describe()}"
            )
        if reply.status == 429 or reply.status >= 500:
            raise ContentUnavailableError(f"content registry {self.host}: {what}: {reply.detail()}")
        return reply

    def _cached(self, kind: str) -> _Credential | None:
        with self._lock:
            credential = self._auth.get(kind)
        if credential and credential.expires - TOKEN_MARGIN_SECONDS > time.time():
            return credential
        return None

    def _authenticate(self, challenge: str, kind: str, what: str) -> _Credential:
        scheme, params = parse_challenge(challenge)
        login = self.credentials.basic(self.host)
        if scheme == "basic":
            if login is None:
                raise ContentUnavailableError(
                    f"content registry {self.host}: {what}: the registry asks for credentials "
                    "(set FLOTILLA_CONTENT_REGISTRY_SECRET)"
                )
            credential = _Credential(f"Basic {login}")
            with self._lock:
                # Basic credentials serve every kind of access.
                self._auth.update(pull=credential, push=credential, delete=credential)
            return credential
        if scheme != "bearer" or "realm" not in params:
            raise ContentUnavailableError(
                f"content registry {self.host}: {what}: unsupported challenge "
                f"{one_line(challenge, _MAX_DETAIL)[:60]!r}"
            )
        query = urllib.parse.urlencode(
            [(k, params[k]) for k in ("service", "scope") if params.get(k)]
        )
        realm = params["realm"]
        url = f"{realm}{'&' if '?' in realm else '?'}{query}" if query else realm
        reply = self._send("GET", url, {"Authorization": f"Basic {login}"} if login else {}, None)
        if reply.status in (401, 403):
            raise ContentUnavailableError(
                f"content registry {self.host}: {what}: the token server refused "
                f"{self.credentials.describe() or 'anonymous access'} ({reply.status})"
            )
        try:
            if reply.status != 200:
                raise ValueError(reply.detail())
            data = json.loads(reply.body)
            token = data.get("token") or data["access_token"]
            lifetime = float(data.get("expires_in") or DEFAULT_TOKEN_SECONDS)
        except (ValueError, KeyError, AttributeError, TypeError) as err:
            raise ContentUnavailableError(
                f"content registry {self.host}: {what}: no token from {realm}: {_reason(err)}"
            ) from None
        credential = _Credential(f"Bearer {token}", time.time() + lifetime)
        with self._lock:
            self._auth[kind] = credential
        return credential

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class _Credentials:
    """The registry's credentials, read from the secret store each time they are needed
    (only when the registry asks: a rotated secret is picked up at the next 401)."""

    def __init__(self, secrets: SecretStore, namespace: str, name: str | None) -> None:
        self.secrets = secrets
        self.namespace = namespace
        self.name = name

    def describe(self) -> str:
        if not self.name:
            return "without credentials (set FLOTILLA_CONTENT_REGISTRY_SECRET)"
        return f"with the credentials of secret {self.namespace}/{self.name}"

    def basic(self, host: str) -> str | None:
        """``base64(user:password)`` for ``host``, or None without a secret."""
        if not self.name:
            return None
        try:
            data = self.secrets.get(self.namespace, self.name)
            user, password = registry_credentials(self.name, data, host)
        except FlotillaError as err:
            # Missing or malformed secret: the store is unusable until someone fixes it.
            raise ContentUnavailableError(f"content registry {host}: {err}") from None
        return base64.b64encode(f"{user}:{password}".encode()).decode()


# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Manifest:
    digest: str
    written: datetime


class OciContentStore(ContentStore):
    """Content blobs as OCI artifacts in ``registry.reference``; see the module docstring."""

    def __init__(
        self,
        registry: ContentRegistrySettings,
        secrets: SecretStore,
        system_namespace: str,
        *,
        cache_dir: Path | None = None,
        cache_max_bytes: int = CACHE_MAX_BYTES,
        touch_after: timedelta = TOUCH_AFTER,
    ) -> None:
        self.reference = registry.reference
        self.repository = registry.repository
        self.client = _Client(
            registry.host,
            insecure=registry.insecure,
            ca_file=registry.ca_file,
            credentials=_Credentials(secrets, system_namespace, registry.secret),
        )
        self.cache = _Cache(cache_dir, cache_max_bytes) if cache_dir else None
        self.touch_after = touch_after
        self._config_lock = threading.Lock()

    @property
    def requests(self) -> int:
        """Requests sent so far (token requests included), for benchmarks and tests."""
        return self.client.requests

    def _where(self, digest: str) -> str:
        return f"content {digest} in {self.reference}"

    def put(self, data: bytes) -> str:
        digest = _sha256(data)
        if self.cache:
            self.cache.put(digest, data)
        found = self._manifest(digest)
        now = datetime.now(UTC)
        if found and now - found.written < self.touch_after:
            return digest
        if found is None:
            self._push_blob(digest, data)
        pushed = self._push_manifest(digest, len(data), now)
        # Written twice in one second (a refresh interval under a second), the manifest is
        # the same one: it must not be deleted as the old.
        if found and found.digest != pushed:
            # Refreshed: the old manifest is untagged now; drop it. The content is stored
            # either way, so a failed clean-up is left to the registry's own garbage-collect
            # (--delete-untagged), as is a registry that refuses deletes.
            with contextlib.suppress(ContentUnavailableError):
                self.client.call(
                    "DELETE", f"/v2/{self.repository}/manifests/{found.digest}", "old manifest"
                )
        return digest

    def has(self, digest: str) -> bool:
        check_digest(digest)
        reply = self.client.call(
            "HEAD",
            f"/v2/{self.repository}/manifests/{TAG_PREFIX}{digest}",
            f"has {digest[:12]}",
            headers={"Accept": OCI_MANIFEST},
        )
        if reply.status in (200, 404):
            return reply.status == 200
        raise ContentError(f"{self._where(digest)}: {reply.detail()}")

    def get(self, digest: str) -> bytes:
        check_digest(digest)
        if self.cache:
            cached = self.cache.get(digest)
            if cached is not None:
                return cached
        reply = self.client.call(
            "GET", f"/v2/{self.repository}/blobs/sha256:{digest}", f"get {digest[:12]}"
        )
        if reply.status == 404:
            raise ContentError(f"{self._where(digest)} is not in the store")
        if reply.status != 200:
            raise ContentError(f"{self._where(digest)}: {reply.detail()}")
        if _sha256(reply.body) != digest:
            raise ContentError(f"{self._where(digest)} is corrupt: its bytes do not match")
        if self.cache:
            self.cache.put(digest, reply.body)
        return reply.body

    def entries(self) -> Iterator[ContentEntry]:
        path: str | None = f"/v2/{self.repository}/tags/list?n={TAGS_PAGE}"
        while path:
            reply = self.client.call("GET", path, "tags list")
            if reply.status == 404:
                return  # nothing pushed yet: the repository does not exist
            if reply.status != 200:
                raise ContentError(f"{self.reference}: tags list: {reply.detail()}")
            try:
                tags = [str(t) for t in json.loads(reply.body).get("tags") or []]
            except (ValueError, AttributeError):
                raise ContentError(f"{self.reference}: tags list is not JSON") from None
            for tag in tags:
                digest = tag.removeprefix(TAG_PREFIX)
                if not tag.startswith(TAG_PREFIX) or len(digest) != 64:
                    continue
                found = self._manifest(digest)
                if found is not None:
                    yield ContentEntry(digest=digest, written=found.written, version=found.digest)
            path = _next_page(reply.header("link"))

    def delete(self, entry: ContentEntry) -> bool:
        # By manifest digest: a put that refreshed the entry since it was listed pushed a
        # new manifest, which this leaves alone.
        reply = self.client.call(
            "DELETE",
            f"/v2/{self.repository}/manifests/{entry.version}",
            f"delete {entry.digest[:12]}",
        )
        if reply.status in (200, 202):
            return True
        if reply.status == 404:
            return False
        if reply.status == 405:
            raise ContentError(
                f"{self.reference}: the registry does not allow deletes (distribution: set "
                "REGISTRY_STORAGE_DELETE_ENABLED=true)"
            )
        raise ContentError(f"{self._where(entry.digest)}: delete: {reply.detail()}")

    def close(self) -> None:
        self.client.close()

    # -- the artifact --------------------------------------------------------------------------

    def _manifest(self, digest: str) -> _Manifest | None:
        """The manifest tagged for ``digest`` (its digest and written time), or None."""
        reply = self.client.call(
            "GET",
            f"/v2/{self.repository}/manifests/{TAG_PREFIX}{digest}",
            f"manifest of {digest[:12]}",
            headers={"Accept": OCI_MANIFEST},
        )
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise ContentError(f"{self._where(digest)}: manifest: {reply.detail()}")
        try:
            created = json.loads(reply.body)["annotations"][CREATED]
            written = datetime.fromisoformat(created)
        except (ValueError, KeyError, TypeError):
            # Not written by flotilla: treat it as old, so a put rewrites it our way.
            written = datetime.fromtimestamp(0, UTC)
        return _Manifest(
            reply.header("docker-content-digest") or f"sha256:{_sha256(reply.body)}", written
        )

    def _push_blob(self, digest: str, data: bytes) -> None:
        what = f"upload of {digest[:12]}"
        start = self.client.call("POST", f"/v2/{self.repository}/blobs/uploads/", what)
        location = start.header("location")
        if start.status != 202 or not location:
            raise ContentError(f"{self.reference}: {what}: {start.detail()}")
        separator = "&" if "?" in location else "?"
        done = self.client.call(
            "PUT",
            urllib.parse.urljoin(f"{self.client.scheme}://{self.client.host}/", location)
            + f"{separator}digest=sha256:{digest}",
            what,
            headers={"Content-Type": "application/octet-stream"},
            body=data,
        )
        if done.status not in (201, 204):
            raise ContentError(f"{self.reference}: {what}: {done.detail()}")

    def _push_config(self) -> None:
        """Push the empty config unless it is there; one thread at a time, since the registry
        fails manifests that refer to a blob another upload is still committing."""
        digest = _sha256(EMPTY_CONFIG)
        with self._config_lock:
            reply = self.client.call(
                "HEAD", f"/v2/{self.repository}/blobs/sha256:{digest}", "empty config"
            )
            if reply.status != 200:
                self._push_blob(digest, EMPTY_CONFIG)

    def _push_manifest(self, digest: str, size: int, written: datetime) -> str:
        """Push (and tag) the manifest of ``digest``; return the manifest's own digest."""
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": {
                "mediaType": EMPTY_CONFIG_MEDIA_TYPE,
                "digest": f"sha256:{_sha256(EMPTY_CONFIG)}",
                "size": len(EMPTY_CONFIG),
                "data": base64.b64encode(EMPTY_CONFIG).decode(),
            },
            "layers": [{"mediaType": BLOB_MEDIA_TYPE, "digest": f"sha256:{digest}", "size": size}],
            "annotations": {CREATED: written.isoformat(timespec="seconds")},
        }
        body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        what = f"manifest of {digest[:12]}"
        path = f"/v2/{self.repository}/manifests/{TAG_PREFIX}{digest}"
        headers = {"Content-Type": OCI_MANIFEST}
        reply = self.client.call("PUT", path, what, headers=headers, body=body)
        for _ in range(3):
            if reply.status != 400 or "MANIFEST_BLOB_UNKNOWN" not in reply.error_codes():
                break
            # The empty config is pushed once per repository, when the registry says so.
            self._push_config()
            reply = self.client.call("PUT", path, what, headers=headers, body=body)
        if reply.status != 201:
            raise ContentError(f"{self._where(digest)}: {what}: {reply.detail()}")
        return f"sha256:{_sha256(body)}"


def _next_page(link: str) -> str | None:
    """The target of a ``Link: <...>; rel="next"`` header, if any."""
    target, _, params = link.partition(";")
    if "next" not in params:
        return None
    return target.strip().removeprefix("<").removesuffix(">") or None


class _Cache:
    """Scratch copies of blobs by digest, checked on read and bounded in size (oldest go)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._bytes: int | None = None

    def get(self, digest: str) -> bytes | None:
        path = self.root / digest
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if _sha256(data) != digest:
            path.unlink(missing_ok=True)  # damaged scratch: the registry has the real thing
            return None
        return data

    def put(self, digest: str, data: bytes) -> None:
        path = self.root / digest
        if path.exists() or len(data) > self.max_bytes // 4:
            return
        tmp: str | None = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except OSError:
            if tmp:
                Path(tmp).unlink(missing_ok=True)
            return  # a cache that cannot be written is only slower
        with self._lock:
            self._bytes = self._bytes + len(data) if self._bytes is not None else self._sizes()[0]
            if self._bytes > self.max_bytes:
                self._bytes = self._shrink()

    def _sizes(self) -> tuple[int, list[tuple[float, int, Path]]]:
        """Total bytes and (written, size, path) of every cached blob."""
        files = []
        for path in self.root.iterdir():
            try:
                stat = path.stat()
            except OSError:
                continue  # removed meanwhile
            files.append((stat.st_mtime, stat.st_size, path))
        return sum(size for _, size, _ in files), files

    def _shrink(self) -> int:
        """Remove the least recently written blobs until the cache is at three quarters."""
        total, files = self._sizes()
        for _, size, path in sorted(files):
            if total <= self.max_bytes * 3 // 4:
                break
            path.unlink(missing_ok=True)
            total -= size
        return total
