"""Kubernetes API access for activities: clients from kubeconfig text, apply/get/delete, errors.

Error tree (every message is one line and never holds a secret or a whole response body):

KubeError                 a call to a cluster's API failed
 ├── InvalidObjectError   400/422: the API server refused the object (not retryable)
 ├── ForbiddenError       401/403: the credentials may not do this (not retryable)
 │    └── UnauthorizedError   401: the API server did not accept the credentials at all
 ├── NotFoundError        404: the object or its kind does not exist
 ├── ConflictError        409: a concurrent change or an existing object
 ├── ThrottledError       429: the server asked to come back later (retryable, Retry-After)
 └── UnreachableError     5xx, TLS or connection failure (retryable)
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from flotilla.errors import (
    CLUSTER_UNREACHABLE,
    CONFLICT,
    FORBIDDEN,
    INVALID_MANIFEST,
    KUBE_FAILED,
    NOT_FOUND,
    THROTTLED,
    FlotillaError,
    one_line,
)
from flotilla.hints import Target, connection_advice
from flotilla.impersonation import impersonated_user

FIELD_MANAGER = "flotilla"
REQUEST_TIMEOUT_SECONDS = 30.0
_MAX_MESSAGE = 300
_APPLY_PATCH = "application/apply-patch+yaml"
_MERGE_PATCH = "application/merge-patch+json"
# Asks the API server for metadata only: Helm's release Secrets are listed without their data.
_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
_METADATA_WATCH = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"

# The C loader when PyYAML has it: kubeconfigs are parsed on every activity call.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Discovery results per (server, groupVersion), shared by every client of that server: kinds
# do not move between calls, and an unknown kind (a new CRD) refreshes its entry.
_DISCOVERY: dict[tuple[str, str], dict[str, ResourceInfo]] = {}
_DISCOVERY_LOCK = threading.Lock()

# Connections kept per cluster client: KubeClients shares one client among the activity
# threads of a cluster.
POOL_SIZE = 32
# The verb Kubernetes authorization names for each HTTP method on a single object.
_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


class KubeError(FlotillaError):
    """A call to a cluster's API failed; ``retryable`` tells Temporal whether to try again.

    The ``type`` names are those of helm's failures with the same cause (``flotilla.errors``).
    """

    type = KUBE_FAILED


class InvalidObjectError(KubeError):
    """The API server refused an object as invalid (400, 422)."""

    type = INVALID_MANIFEST


class ForbiddenError(KubeError):
    """The credentials are not allowed to do this (401, 403)."""

    type = FORBIDDEN


class UnauthorizedError(ForbiddenError):
    """The API server did not recognise the credentials (401): a bad or expired token."""


class NotFoundError(KubeError):
    """The object, its namespace or its kind does not exist (404)."""

    type = NOT_FOUND


class ConflictError(KubeError):
    """The object changed meanwhile or already exists (409)."""

    type = CONFLICT
    retryable = True


class ThrottledError(KubeError):
    """The API server is rate limiting (429)."""

    type = THROTTLED
    retryable = True


class UnreachableError(KubeError):
    """The cluster could not be reached or failed on its side (5xx, TLS, connection)."""

    type = CLUSTER_UNREACHABLE
    retryable = True


def _server_message(body: Any) -> str:
    """The ``message`` of a Kubernetes Status body, else nothing (bodies are never echoed)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if not isinstance(body, str) or not body:
        return ""
    try:
        status = json.loads(body)
    except ValueError:
        return ""
    message = status.get("message") if isinstance(status, dict) else None
    return one_line(message, _MAX_MESSAGE) if isinstance(message, str) else ""


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def map_api_error(err: Exception, *, verb: str, what: str, server: str) -> KubeError:
    """Turn a client or connection error into a KubeError naming verb and resource.

    ``what`` names the target (``deployments.apps "web" in namespace "shop"``); the server's
    Status message is kept, shortened to one line, and response bodies never are.
    """
    if not isinstance(err, ApiException) or not err.status:
        # Status 0 is how the client reports TLS failures; the rest are urllib3 errors.
        reason = err.reason if isinstance(err, ApiException) else err
        # The advice comes before the cause: what a secret store and an Offline status say
        # around this line may cut its end.
        text = one_line(str(reason), 160)
        advice = connection_advice(text, Target.CLUSTER)
        where = f"{server} ({advice})" if advice else server
        return UnreachableError(f"cluster unreachable at {where}: {text}")
    status = int(err.status)
    detail = _server_message(err.body)
    suffix = f": {detail}" if detail else ""
    if status in (400, 422):
        return InvalidObjectError(f"invalid {what}{suffix}")
    if status == 401:
        return UnauthorizedError(f"unauthorized to {verb} {what}{suffix}")
    if status == 403:
        return ForbiddenError(f"forbidden to {verb} {what}{suffix}")
    if status == 404:
        return NotFoundError(f"{what} not found")
    if status == 409:
        return ConflictError(f"conflict on {verb} {what}{suffix}")
    if status == 429:
        return ThrottledError(
            f"throttled on {verb} {what}{suffix}", retry_after=_retry_after(err.headers)
        )
    if status >= 500:
        return UnreachableError(
            f"cluster unreachable at {server}: {verb} {what}: HTTP {status}{suffix}",
            retry_after=_retry_after(err.headers),
        )
    return InvalidObjectError(f"{verb} {what}: HTTP {status}{suffix}")


def parse_kubeconfig(kubeconfig: str) -> dict[str, Any]:
    """Parse kubeconfig text (YAML or JSON); errors never echo it."""
    try:
        data = yaml.load(kubeconfig, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        raise FlotillaError("kubeconfig is not valid YAML") from None
    if not isinstance(data, dict):
        raise FlotillaError("kubeconfig is not a YAML mapping")
    return data


def api_client_from_kubeconfig(data: dict[str, Any]) -> client.ApiClient:
    """Build a client from a parsed kubeconfig, held in memory.

    The client library writes certificate data it needs as files to mkstemp files (mode
    0600); nothing is written for tokens. Config errors never echo the kubeconfig.
    """
    configuration = client.Configuration()
    # Clients are shared by the activity threads of one cluster (KubeClients); a pool smaller
    # than that would drop connections (and warn) instead of keeping them.
    configuration.connection_pool_maxsize = POOL_SIZE
    try:
        api: client.ApiClient = config.new_client_from_config_dict(  # type: ignore[no-untyped-call]
            data, persist_config=False, client_configuration=configuration
        )
    except (config.ConfigException, KeyError, TypeError, ValueError) as err:
        raise FlotillaError(f"kubeconfig cannot be used: {type(err).__name__}") from None
    # Retries belong to Temporal, which backs off and records them; fail fast here.
    api.configuration.retries = False
    # The client library ignores a kubeconfig's impersonation; helm and kubectl honour it, so
    # this client must too (flotilla.impersonation writes it for a bundle's ServiceAccount).
    user = impersonated_user(data)
    if user:
        api.set_default_header("Impersonate-User", user)  # type: ignore[no-untyped-call]
    return api


@dataclass(frozen=True)
class ResourceInfo:
    """Where a kind lives in the API: its plural name and whether it is namespaced."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def group_resource(self) -> str:
        group = self.api_version.rpartition("/")[0]
        return f"{self.plural}.{group}" if group else self.plural


class Kube:
    """A thin dynamic client: objects as dicts, kinds resolved by discovery, errors mapped."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.server = str(api.configuration.host)

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | dict[str, Any]) -> Kube:
        """A client for kubeconfig text or an already parsed kubeconfig."""
        data = parse_kubeconfig(kubeconfig) if isinstance(kubeconfig, str) else kubeconfig
        return cls(api_client_from_kubeconfig(data))

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw calls -----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> dict[str, Any]:
        """Call the API and return the decoded JSON; any failure becomes a KubeError."""
        headers = {"Accept": accept, "Content-Type": content_type}
        serialized = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            auth_settings=["BearerToken"],
        )
        _, url, header_params, _, _ = serialized
        verb = _VERBS.get(method, method.lower())
        try:
            response = self.api.call_api(
                method,
                url,
                header_params=header_params,
                body=body,
                _request_timeout=REQUEST_TIMEOUT_SECONDS,
            )
            data = response.read()  # type: ignore[no-untyped-call]
            if not 200 <= response.status < 300:
                raise ApiException(http_resp=response)
        except (ApiException, urllib3.exceptions.HTTPError) as err:
            raise map_api_error(err, verb=verb, what=what, server=self.server) from None
        result: dict[str, Any] = json.loads(data) if data else {}
        return result

    # -- discovery -----------------------------------------------------------------------

    def resource_info(self, api_version: str, kind: str) -> ResourceInfo:
        """Resolve a kind through discovery, refreshing once when it is unknown (a new CRD)."""
        for refresh in (False, True):
            kinds = self._discover(api_version, refresh=refresh)
            if kind in kinds:
                return kinds[kind]
        raise NotFoundError(f"kind {kind} is not served by the cluster under {api_version}")

    def _discover(self, api_version: str, *, refresh: bool) -> dict[str, ResourceInfo]:
        with _DISCOVERY_LOCK:
            cached = _DISCOVERY.get((self.server, api_version))
        if cached is not None and not refresh:
            return cached
        path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        try:
            listing = self.request("GET", path, what=f"API group version {api_version}")
        except NotFoundError:
            listing = {}
        kinds = {
            str(item["kind"]): ResourceInfo(
                api_version=api_version,
                kind=str(item["kind"]),
                plural=str(item["name"]),
                namespaced=bool(item.get("namespaced")),
            )
            for item in listing.get("resources", [])
            if "/" not in str(item.get("name", ""))
        }
        with _DISCOVERY_LOCK:
            _DISCOVERY[(self.server, api_version)] = kinds
        return kinds

    # -- objects -------------------------------------------------------------------------

    def _path(self, info: ResourceInfo, namespace: str, name: str = "") -> str:
        group_version = info.api_version
        base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
        if info.namespaced:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{info.plural}"
        return f"{base}/{quote(name, safe='')}" if name else base

    @staticmethod
    def describe(info: ResourceInfo, namespace: str, name: str) -> str:
        where = f" in namespace {namespace!r}" if info.namespaced and namespace else ""
        return f"{info.group_resource} {name!r}{where}"

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """Return the live object, or None when it does not exist."""
        info = self.resource_info(api_version, kind)
        try:
            return self.request(
                "GET", self._path(info, namespace, name), what=self.describe(info, namespace, name)
            )
        except NotFoundError:
            return None

    def apply(
        self,
        obj: dict[str, Any],
        *,
        namespace: str = "",
        force: bool = True,
        manager: str = FIELD_MANAGER,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Server-side apply ``obj`` as ``manager``, taking over conflicting fields when
        ``force``; with ``dry_run`` the server answers what it would store (defaults and
        admission applied) and stores nothing.

        ``namespace`` is used for namespaced objects that name none.
        """
        info = self.resource_info(str(obj["apiVersion"]), str(obj["kind"]))
        metadata = obj.get("metadata") or {}
        name = str(metadata["name"])
        ns = str(metadata.get("namespace") or namespace) if info.namespaced else ""
        if info.namespaced and metadata.get("namespace") != ns:
            obj = {**obj, "metadata": {**metadata, "namespace": ns}}
        query = [("fieldManager", manager), ("force", "true" if force else "false")]
        if dry_run:
            query.append(("dryRun", "All"))
        return self.request(
            "PATCH",
            self._path(info, ns, name),
            what=self.describe(info, ns, name),
            body=obj,
            query=query,
            content_type=_APPLY_PATCH,
        )

    def replace(self, obj: dict[str, Any], *, namespace: str = "") -> dict[str, Any]:
        """Replace the live object by ``obj`` (PUT), creating it when it does not exist."""
        info = self.resource_info(str(obj["apiVersion"]), str(obj["kind"]))
        metadata = dict(obj.get("metadata") or {})
        name = str(metadata["name"])
        ns = str(metadata.get("namespace") or namespace) if info.namespaced else ""
        if info.namespaced:
            metadata["namespace"] = ns
        what = self.describe(info, ns, name)
        # Named as flotilla's, so the object watcher knows the write for its own.
        query = [("fieldManager", FIELD_MANAGER)]
        live = self.get(info.api_version, info.kind, ns, name)
        if live is None:
            body = {**obj, "metadata": metadata}
            return self.request("POST", self._path(info, ns), what=what, body=body, query=query)
        metadata["resourceVersion"] = live["metadata"]["resourceVersion"]
        body = {**obj, "metadata": metadata}
        return self.request("PUT", self._path(info, ns, name), what=what, body=body, query=query)

    def merge_patch(
        self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        """Apply a JSON merge patch to one object."""
        info = self.resource_info(api_version, kind)
        return self.request(
            "PATCH",
            self._path(info, namespace, name),
            what=self.describe(info, namespace, name),
            body=patch,
            content_type=_MERGE_PATCH,
        )

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete one object (background propagation); False when it was already gone."""
        info = self.resource_info(api_version, kind)
        try:
            self.request(
                "DELETE",
                self._path(info, namespace, name),
                what=self.describe(info, namespace, name),
                body={"propagationPolicy": "Background"},
            )
        except NotFoundError:
            return False
        return True

    def list_metadata(
        self, api_version: str, kind: str, namespace: str, *, label_selector: str = ""
    ) -> list[dict[str, Any]]:
        """List the metadata of the objects of a kind in a namespace, never their content."""
        info = self.resource_info(api_version, kind)
        query = [("labelSelector", label_selector)] if label_selector else []
        listing = self.request(
            "GET",
            self._path(info, namespace),
            what=f"{info.group_resource} in namespace {namespace!r}",
            query=query,
            accept=_METADATA_LIST,
        )
        items: list[dict[str, Any]] = listing.get("items") or []
        return items


def served_kinds(kube: Kube) -> list[ResourceInfo]:
    """Every listable kind the cluster serves, at its group's preferred version."""
    versions = [
        f"{v}" for v in kube.request("GET", "/api", what="the core API").get("versions", [])
    ]
    groups = kube.request("GET", "/apis", what="the API groups").get("groups", [])
    versions += [
        str(g["preferredVersion"]["groupVersion"]) for g in groups if g.get("preferredVersion")
    ]
    kinds = []
    for api_version in versions:
        path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        try:
            listing = kube.request("GET", path, what=f"API group version {api_version}")
        except NotFoundError:
            continue
        kinds += [
            ResourceInfo(
                api_version=api_version,
                kind=str(item["kind"]),
                plural=str(item["name"]),
                namespaced=bool(item.get("namespaced")),
            )
            for item in listing.get("resources", [])
            if "/" not in str(item.get("name", "")) and "list" in (item.get("verbs") or [])
        ]
    return kinds


def list_all_metadata(
    kube: Kube, info: ResourceInfo, *, label_selector: str
) -> list[dict[str, Any]]:
    """The metadata of every object of a kind, in every namespace, that the selector matches.

    Each item gets its ``apiVersion`` and ``kind`` back (a metadata list leaves them out).
    """
    listing = kube.request(
        "GET",
        _collection(info),
        what=f"{info.group_resource} in all namespaces",
        query=[("labelSelector", label_selector)],
        accept=_METADATA_LIST,
    )
    return [
        {**item, "apiVersion": info.api_version, "kind": info.kind}
        for item in listing.get("items") or []
    ]


class GoneError(KubeError):
    """A watch's resource version is too old (410 Gone): list again, then watch from there."""


def _collection(info: ResourceInfo, namespace: str = "") -> str:
    group_version = info.api_version
    base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
    if namespace and info.namespaced:
        return f"{base}/namespaces/{namespace}/{info.plural}"
    return f"{base}/{info.plural}"


def _where(info: ResourceInfo, namespace: str) -> str:
    if not info.namespaced:
        return info.group_resource
    return f"{info.group_resource} in " + (
        f"namespace {namespace}" if namespace else "all namespaces"
    )


def list_everywhere(
    kube: Kube,
    info: ResourceInfo,
    *,
    label_selector: str,
    metadata_only: bool = False,
    namespace: str = "",
) -> tuple[list[dict[str, Any]], str]:
    """Every object of a kind in every namespace (or only ``namespace``) that the selector
    matches, and the list's resource version (to watch from)."""
    listing = kube.request(
        "GET",
        _collection(info, namespace),
        what=_where(info, namespace),
        query=[("labelSelector", label_selector)] if label_selector else [],
        accept=_METADATA_LIST if metadata_only else "application/json",
    )
    items = [
        {**item, "apiVersion": info.api_version, "kind": info.kind}
        for item in listing.get("items") or []
    ]
    return items, str((listing.get("metadata") or {}).get("resourceVersion", ""))


def watch_everywhere(
    kube: Kube,
    info: ResourceInfo,
    *,
    resource_version: str,
    label_selector: str,
    timeout_seconds: int,
    metadata_only: bool = False,
    namespace: str = "",
    field_selector: str = "",
) -> Generator[tuple[str, dict[str, Any]]]:
    """(type, object) watch events of a kind in every namespace (or only ``namespace``) from
    ``resource_version``, until the server ends the watch after ``timeout_seconds``;
    GoneError when it is too old. A caller that stops early closes the connection."""
    query = [
        ("watch", "true"),
        ("allowWatchBookmarks", "true"),
        ("resourceVersion", resource_version),
        ("timeoutSeconds", str(timeout_seconds)),
    ]
    if label_selector:
        query.append(("labelSelector", label_selector))
    if field_selector:
        query.append(("fieldSelector", field_selector))
    what = f"a watch of {_where(info, namespace)}"
    _, url, headers, _, _ = kube.api.param_serialize(
        method="GET",
        resource_path=_collection(info, namespace),
        query_params=query,
        header_params={"Accept": _METADATA_WATCH if metadata_only else "application/json"},
        auth_settings=["BearerToken"],
    )
    response = None
    try:
        response = kube.api.call_api(
            "GET", url, header_params=headers, _request_timeout=(10.0, timeout_seconds + 30.0)
        )
        if not 200 <= response.status < 300:
            response.read()  # type: ignore[no-untyped-call]
            raise ApiException(http_resp=response)
        buffer = b""
        for chunk in response.response.stream(65536):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = str(event.get("type", "")), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise GoneError(f"{what}: resource version too old")
                    raise KubeError(f"{what}: {one_line(str(obj.get('message', '')))}")
                yield kind, {**obj, "apiVersion": info.api_version, "kind": info.kind}
    except (ApiException, urllib3.exceptions.HTTPError) as err:
        mapped = map_api_error(err, verb="watch", what=what, server=kube.server)
        if "410" in str(getattr(err, "status", "")):
            raise GoneError(str(mapped)) from None
        raise mapped from None
    except GeneratorExit:
        # Left before the server ended the watch: the rest of the stream is unread, so the
        # connection cannot serve another request.
        if response is not None:
            response.response.close()
            response.response.release_conn()
        raise


class KubeClients:
    """One API client per kubeconfig, kept for the life of the process.

    Each activity used to build its own client, which cost a TLS handshake (and a second
    connection for every concurrent request) per activity. Clients are keyed by a digest of
    the kubeconfig text, so a rotated kubeconfig gets a new client; the least recently used
    ones beyond ``size`` are dropped (and closed by the garbage collector once no activity
    holds them). Thread-safe.
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._clients: OrderedDict[str, Kube] = OrderedDict()

    def get(self, kubeconfig: str, parsed: dict[str, Any] | None = None) -> Kube:
        """The client for this kubeconfig text (``parsed`` saves parsing it again)."""
        key = hashlib.sha256(kubeconfig.encode()).hexdigest()
        with self._lock:
            kube = self._clients.get(key)
            if kube is not None:
                self._clients.move_to_end(key)
                return kube
        kube = Kube.from_kubeconfig(parsed if parsed is not None else kubeconfig)
        with self._lock:
            kept = self._clients.setdefault(key, kube)
            self._clients.move_to_end(key)
            while len(self._clients) > self._size:
                self._clients.popitem(last=False)
        return kept

    def __len__(self) -> int:
        with self._lock:
            return len(self._clients)
