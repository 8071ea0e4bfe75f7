"""Secrets in a management cluster: the ``kubernetes`` secret store, with Fleet's own Secrets.

``KubernetesSecretStore`` implements :class:`activities.secrets.SecretStore` against the
Secrets of one management cluster, so what a Fleet user created for Fleet works unchanged:
values are the Secret's ``data`` decoded from base64 to text, the Secret's type is kept, and
what flotilla writes carries the label ``app.kubernetes.io/managed-by: flotilla`` (the only
Secrets flotilla ever cleans up on its own).

Credentials: the kubeconfig file ``FLOTILLA_MANAGEMENT_KUBECONFIG`` names, else the pod's
service account (in-cluster). A wrong setting fails when the store is built, with a
SettingsError naming the variable.

Errors, each one line with neither a value nor a response body (the classification is
``activities.kube.map_api_error``'s):

- 404: SecretNotFoundError naming the secret and the API server.
- 401: SecretStoreError: the API server did not accept these credentials.
- 403: SecretStoreError naming the verb, ``secrets``, the namespace, the user or service
  account, and the RBAC grant that is missing.
- 5xx, 429, connection refused, TLS failures, timeouts: SecretStoreError naming the API
  server, ``retryable``.
- 400/422, a missing namespace, a change of type: SecretStoreError, not retryable.

One API client per store, shared by every thread: activities run on a thread pool. Reads go
to the API server every time (no cache): measured on loopback, a GET of a 3 kB Secret on the
kept-alive connection takes 2.8 ms (median; 0.9 ms of it this process's CPU), next to the
seconds a deploy or a clone takes, and a cache would serve a rotated credential late.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kubernetes import client, config
from kubernetes.config.incluster_config import InClusterConfigLoader

from activities.kube import (
    POOL_SIZE,
    ConflictError,
    ForbiddenError,
    Kube,
    KubeError,
    NotFoundError,
    UnauthorizedError,
    UnreachableError,
)
from activities.secrets import (
    OPAQUE,
    SecretInfo,
    SecretNotFoundError,
    SecretStoreError,
    check_secret_name,
)
from flotilla.errors import FlotillaError
from flotilla.settings import SettingsError

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "flotilla"
# Where Kubernetes mounts a pod's service account token and the cluster's CA.
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Secrets per list request: a namespace full of Helm release Secrets is read in pages.
_LIST_PAGE = 250
# downstreamResources read ConfigMaps of the workspace beside its Secrets.
_CONFIG_MAPS = "configmaps"
_USER = re.compile(r'User "([^"]+)"')
_SERVICE_ACCOUNT = "system:serviceaccount:"


def _configuration() -> client.Configuration:
    configuration = client.Configuration()
    # Shared by the activity threads: keep as many connections as KubeClients' clients do.
    configuration.connection_pool_maxsize = POOL_SIZE
    # Set before the client exists (its connection pool reads it once). Retries belong to
    # Temporal, which backs off and records them; a failed call fails at once, retryable.
    configuration.retries = False
    return configuration


def kubeconfig_client(path: Path) -> client.ApiClient:
    """A client for the management cluster from a kubeconfig file (relative paths in it are
    relative to the file, as kubectl reads them)."""
    variable = f"FLOTILLA_MANAGEMENT_KUBECONFIG={str(path)!r}"
    try:
        path.open("rb").close()
    except OSError as err:
        raise SettingsError(f"{variable} cannot be read: {err.strerror}") from None
    configuration = _configuration()
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(path), client_configuration=configuration, persist_config=False
        )
    except config.ConfigException as err:
        raise SettingsError(f"{variable} cannot be used: {' '.join(str(err).split())}") from None
    except Exception as err:  # YAML errors quote the file's lines: name the kind only
        raise SettingsError(f"{variable} cannot be used: {type(err).__name__}") from None
    return client.ApiClient(configuration)


def in_cluster_client(environ: Mapping[str, str], directory: Path) -> client.ApiClient:
    """A client with the pod's service account: the API server from ``KUBERNETES_SERVICE_*``,
    the token and CA from ``directory``; the token is read again as Kubernetes rotates it."""
    configuration = _configuration()
    try:
        InClusterConfigLoader(
            token_filename=str(directory / "token"),
            cert_filename=str(directory / "ca.crt"),
            environ=environ,
        ).load_and_set(configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException as err:
        raise SettingsError(
            "FLOTILLA_SECRET_BACKEND=kubernetes without FLOTILLA_MANAGEMENT_KUBECONFIG needs "
            f"an in-cluster service account ({' '.join(str(err).split())}): outside a pod, "
            "set FLOTILLA_MANAGEMENT_KUBECONFIG to the management cluster's kubeconfig"
        ) from None
    return client.ApiClient(configuration)


def _path(namespace: str, name: str = "", *, resource: str = "secrets") -> str:
    base = f"/api/v1/namespaces/{quote(namespace, safe='')}/{resource}"
    return f"{base}/{quote(name, safe='')}" if name else base


def _target(namespace: str, name: str, *, resource: str = "secrets") -> str:
    what = resource.removesuffix("s")
    return f"{what} {namespace}/{name}" if name else f"the {resource} of namespace {namespace!r}"


def _who(message: str) -> str:
    """The user or service account a 403 Status message names, or ""."""
    found = _USER.search(message)
    if not found:
        return ""
    user = found.group(1)
    if user.startswith(_SERVICE_ACCOUNT):
        namespace, _, account = user.removeprefix(_SERVICE_ACCOUNT).partition(":")
        return f"service account {namespace}/{account}"
    return f"user {user!r}"


def _decode(namespace: str, name: str, data: Mapping[str, Any]) -> dict[str, str]:
    decoded = {}
    for key, value in data.items():
        try:
            decoded[str(key)] = base64.b64decode(str(value), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise SecretStoreError(
                f"secret {namespace}/{name}: key {key!r} is not UTF-8 text "
                "(flotilla reads text keys only)"
            ) from None
    return decoded


def _encode(data: Mapping[str, str]) -> dict[str, str]:
    return {
        key: base64.b64encode(value.encode("utf-8")).decode("ascii") for key, value in data.items()
    }


def _is_managed(secret: Mapping[str, Any]) -> bool:
    labels = (secret.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY_LABEL) == MANAGED_BY)


class KubernetesSecretStore:
    """Secrets of a management cluster, as ``{key: text}`` maps; see the module docstring.

    ``environ`` and ``service_account_dir`` are where in-cluster credentials come from (a
    pod's, unless a test hands others).
    """

    def __init__(
        self,
        kubeconfig: Path | None,
        *,
        environ: Mapping[str, str] = os.environ,
        service_account_dir: Path = SERVICE_ACCOUNT_DIR,
    ) -> None:
        if kubeconfig is None:
            api = in_cluster_client(environ, service_account_dir)
            self._credentials = "the in-cluster service account"
        else:
            api = kubeconfig_client(kubeconfig)
            self._credentials = f"the credentials of kubeconfig {str(kubeconfig)!r}"
        self._kube = Kube(api)
        self.server = self._kube.server

    def __repr__(self) -> str:
        return f"KubernetesSecretStore(server={self.server!r})"

    def close(self) -> None:
        self._kube.close()

    # -- the SecretStore protocol --------------------------------------------------------

    def get(self, namespace: str, name: str) -> dict[str, str]:
        check_secret_name(namespace, name)
        secret = self._call("GET", "get", namespace, name)
        return _decode(namespace, name, secret.get("data") or {})

    def put(self, namespace: str, name: str, data: dict[str, str], *, type: str = OPAQUE) -> None:
        """Create the Secret, or replace its data (its other labels and annotations stay)."""
        check_secret_name(namespace, name)
        secret: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY},
            },
            "type": type,
            "data": _encode(data),
        }
        try:
            self._call("POST", "create", namespace, "", body=secret, name_in_error=name)
            return
        except _Conflict:
            pass
        live = self._call("GET", "get", namespace, name)
        live_type = live.get("type") or OPAQUE
        if live_type != type:
            raise SecretStoreError(
                f"secret {namespace}/{name} exists with type {live_type!r}, not {type!r}: "
                "a Secret's type cannot change; delete it first"
            )
        metadata = {k: v for k, v in live["metadata"].items() if k != "resourceVersion"}
        metadata["labels"] = {**(metadata.get("labels") or {}), MANAGED_BY_LABEL: MANAGED_BY}
        # Without resourceVersion the update is unconditional: the last writer wins, as a
        # put promises, instead of failing when another writer was a moment earlier.
        self._call("PUT", "update", namespace, name, body={**secret, "metadata": metadata})

    def delete(self, namespace: str, name: str, *, if_managed: bool = False) -> bool:
        check_secret_name(namespace, name)
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if if_managed:
            try:
                live = self._call("GET", "get", namespace, name)
            except SecretNotFoundError:
                return False
            if not _is_managed(live):
                return False
            # Delete exactly what was read: if it was written again since, it stays.
            metadata = live["metadata"]
            options["preconditions"] = {
                "uid": metadata["uid"],
                "resourceVersion": metadata["resourceVersion"],
            }
        try:
            self._call("DELETE", "delete", namespace, name, body=options)
        except (SecretNotFoundError, _Conflict):
            return False
        return True

    def list(self, namespace: str) -> list[SecretInfo]:
        """Names, types and keys only: values arrive with the list (the API sends whole
        Secrets) and are dropped here."""
        check_secret_name(namespace, "x")
        found = [
            SecretInfo(
                namespace=namespace,
                name=str(item["metadata"]["name"]),
                type=str(item.get("type") or OPAQUE),
                keys=sorted(item.get("data") or {}),
            )
            for page in self._pages(namespace)
            for item in page.get("items") or []
        ]
        return sorted(found, key=lambda info: info.name)

    def get_config_map(self, namespace: str, name: str) -> dict[str, str]:
        check_secret_name(namespace, name)
        found = self._call("GET", "get", namespace, name, resource=_CONFIG_MAPS)
        return {str(k): str(v) for k, v in (found.get("data") or {}).items()}

    def put_config_map(self, namespace: str, name: str, data: dict[str, str]) -> None:
        """Create the ConfigMap, or replace its data (its other labels and annotations stay)."""
        check_secret_name(namespace, name)
        config_map: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY},
            },
            "data": dict(data),
        }
        try:
            self._call(
                "POST",
                "create",
                namespace,
                "",
                body=config_map,
                name_in_error=name,
                resource=_CONFIG_MAPS,
            )
            return
        except _Conflict:
            pass
        live = self._call("GET", "get", namespace, name, resource=_CONFIG_MAPS)
        metadata = {k: v for k, v in live["metadata"].items() if k != "resourceVersion"}
        metadata["labels"] = {**(metadata.get("labels") or {}), MANAGED_BY_LABEL: MANAGED_BY}
        body = {**config_map, "metadata": metadata}
        self._call("PUT", "update", namespace, name, body=body, resource=_CONFIG_MAPS)

    def _pages(self, namespace: str) -> Iterator[dict[str, Any]]:
        token = ""
        while True:
            query = [("limit", str(_LIST_PAGE))] + ([("continue", token)] if token else [])
            page = self._call("GET", "list", namespace, "", query=query)
            yield page
            token = str((page.get("metadata") or {}).get("continue") or "")
            if not token:
                return

    # -- calls and their errors ----------------------------------------------------------

    def _call(
        self,
        method: str,
        verb: str,
        namespace: str,
        name: str,
        *,
        body: Any = None,
        query: Sequence[tuple[str, str]] = (),
        name_in_error: str = "",
        resource: str = "secrets",
    ) -> dict[str, Any]:
        """One request; a 409 becomes ``_Conflict``, any other failure a secret error."""
        secret = name or name_in_error
        try:
            return self._kube.request(
                method,
                _path(namespace, name, resource=resource),
                what=_target(namespace, secret, resource=resource),
                body=body,
                query=[*query],
            )
        except ConflictError as err:
            raise _Conflict(
                f"cannot {verb} {_target(namespace, secret, resource=resource)} in the "
                f"management cluster at {self.server}: {err}; retryable",
                retryable=True,
            ) from None
        except KubeError as err:
            raise self._error(err, verb, namespace, secret, resource=resource) from None

    def _error(
        self, err: KubeError, verb: str, namespace: str, name: str, *, resource: str = "secrets"
    ) -> FlotillaError:
        target = _target(namespace, name, resource=resource)
        where = f"the management cluster at {self.server}"
        if isinstance(err, NotFoundError):
            if verb == "create":
                return SecretStoreError(
                    f"cannot create {target}: namespace {namespace!r} does not exist in "
                    f"{where}; create it first"
                )
            return SecretNotFoundError(f"{target} not found in {where}")
        if isinstance(err, UnauthorizedError):
            return SecretStoreError(
                f"{where} does not accept {self._credentials} (401 Unauthorized) to {verb} "
                f"{target}: renew the token or fix the kubeconfig"
            )
        if isinstance(err, ForbiddenError):
            who = _who(str(err)) or self._credentials
            return SecretStoreError(
                f"{who} is forbidden to {verb} {resource} in namespace {namespace!r} of "
                f"{where}: it needs a Role granting {verb!r} on {resource!r} in {namespace!r} "
                "and a RoleBinding to it (see docs/secrets.md)"
            )
        if isinstance(err, UnreachableError):
            return SecretStoreError(
                f"cannot {verb} {target}: management {err}; retryable",
                retryable=True,
                retry_after=err.retry_after,
            )
        if err.retryable:
            return SecretStoreError(
                f"cannot {verb} {target} in {where}: {err}; retryable",
                retryable=True,
                retry_after=err.retry_after,
            )
        return SecretStoreError(f"{where} refused to {verb} {target}: {err}")


class _Conflict(SecretStoreError):
    """A 409: the Secret exists (create) or changed since it was read (delete)."""
