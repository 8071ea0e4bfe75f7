"""The secret store: credentials and kubeconfigs by namespace and name, read only in activities.

Workflows carry secret *names*; an activity resolves a name to its data here, uses it and
drops it. Nothing in this module logs or formats a secret value: errors name the secret and
the key, never the content.

Secrets have Fleet's names and keys, so what a Fleet user created for Fleet works unchanged:
a GitRepo's ``clientSecretName`` (``username``/``password`` or ``ssh-privatekey``,
``known_hosts``), ``helmSecretName`` / ``helmSecretNameForPaths`` (``flotilla.credentials``)
and the ``sops-age`` key of SOPS files live in the GitRepo's namespace; a cluster's kubeconfig
is the Secret named by ``Cluster.spec.kubeConfigSecret`` (key ``value``) in the cluster's
namespace, ``<cluster>-kubeconfig`` when flotilla registers the cluster itself.

Two backends implement :class:`SecretStore`, chosen by ``Settings.secret_backend``:
``FileSecretStore`` (this module: one JSON file per secret, the embedded default) and
``KubernetesSecretStore`` (``activities/kubesecrets.py``: Secrets in a management cluster).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, Field

from flotilla.errors import SECRET_NOT_FOUND, SECRET_STORE_FAILED, FlotillaError, SpecError
from flotilla.kubenames import is_dns1123

# Kubernetes' Secret types that Fleet's secrets use.
OPAQUE = "Opaque"
BASIC_AUTH = "kubernetes.io/basic-auth"
SSH_AUTH = "kubernetes.io/ssh-auth"
DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
# The key of a kubeconfig in a cluster's kubeconfig Secret (Fleet's).
KUBECONFIG_KEY = "value"
# The file store's directory of ConfigMaps inside a namespace's.
_CONFIG_MAPS = "configmaps"


class SecretNotFoundError(FlotillaError):
    """A secret or one of its keys does not exist (the message names it, not its content)."""

    type = SECRET_NOT_FOUND


class SecretStoreError(FlotillaError):
    """The secret store could not be read or written (unreachable, forbidden, corrupt).

    ``retryable`` says whether the same call may succeed later (an unreachable or throttled
    store) or needs a person first (forbidden, corrupt); activities pass it on to Temporal.
    """

    type = SECRET_STORE_FAILED

    def __init__(
        self, message: str, *, retryable: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message, retryable=retryable, retry_after=retry_after)


class SecretInfo(BaseModel):
    """What may be shown of a secret: never a value."""

    namespace: str
    name: str
    type: str = OPAQUE
    keys: list[str] = Field(default_factory=list)


class SecretStore(Protocol):
    """Secrets as ``{key: text}`` maps, addressed by namespace and name."""

    def get(self, namespace: str, name: str) -> dict[str, str]:
        """The secret's data; SecretNotFoundError when it does not exist."""
        ...

    def put(self, namespace: str, name: str, data: dict[str, str], *, type: str = OPAQUE) -> None:
        """Create or replace the secret."""
        ...

    def delete(self, namespace: str, name: str, *, if_managed: bool = False) -> bool:
        """Remove the secret; False when there was none.

        With ``if_managed``, only a secret flotilla wrote is removed (False otherwise), so
        cleaning up never takes away a Secret a person made for Fleet.
        """
        ...

    def list(self, namespace: str) -> list[SecretInfo]:
        """The secrets of a namespace, names and keys only, sorted by name."""
        ...

    def get_config_map(self, namespace: str, name: str) -> dict[str, str]:
        """A ConfigMap's data (downstreamResources); SecretNotFoundError when it does not
        exist. ConfigMaps live beside the Secrets of the same backend, as in Fleet."""
        ...

    def put_config_map(self, namespace: str, name: str, data: dict[str, str]) -> None:
        """Create or replace a ConfigMap."""
        ...


def get_key(store: SecretStore, namespace: str, name: str, key: str) -> str:
    """One key of a secret; SecretNotFoundError names the secret and the missing key."""
    data = store.get(namespace, name)
    if key not in data:
        raise SecretNotFoundError(
            f"secret {namespace}/{name} has no key {key!r} (it has: {', '.join(sorted(data))})"
        )
    return data[key]


def exists(store: SecretStore, namespace: str, name: str) -> bool:
    try:
        store.get(namespace, name)
    except SecretNotFoundError:
        return False
    return True


def check_secret_name(namespace: str, name: str) -> None:
    """Secret names and namespaces follow Kubernetes' rules in every backend."""
    if not is_dns1123(namespace):
        raise SpecError(
            f"secret namespace: {namespace!r} is not a valid namespace name (DNS-1123 label)"
        )
    if not is_dns1123(name, subdomain=True):
        raise SpecError(f"secret name: {name!r} is not a valid Kubernetes object name (DNS-1123)")


def kubeconfig_secret_name(cluster: str) -> str:
    """The Secret flotilla creates for a cluster it registers (Fleet's usual name)."""
    return f"{cluster}-kubeconfig"


class FileSecretStore:
    """The embedded default: ``<root>/<namespace>/<name>.json``, mode 0600, written atomically;
    ConfigMaps as ``<root>/<namespace>/configmaps/<name>.json`` (no object name has a ``/``).

    Only for one machine: a CLI and workers on other machines do not see these files.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, namespace: str, name: str) -> Path:
        check_secret_name(namespace, name)
        return self.root / namespace / f"{name}.json"

    def _config_map_path(self, namespace: str, name: str) -> Path:
        check_secret_name(namespace, name)
        return self.root / namespace / _CONFIG_MAPS / f"{name}.json"

    def put(self, namespace: str, name: str, data: dict[str, str], *, type: str = OPAQUE) -> None:
        self._write(self._path(namespace, name), {"type": type, "data": data})

    def put_config_map(self, namespace: str, name: str, data: dict[str, str]) -> None:
        self._write(self._config_map_path(namespace, name), {"data": data})

    def get_config_map(self, namespace: str, name: str) -> dict[str, str]:
        path = self._config_map_path(namespace, name)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise SecretNotFoundError(
                f"configmap {namespace}/{name} not found in the secret store at {self.root}"
            ) from None
        except (OSError, ValueError) as err:
            raise SecretStoreError(
                f"configmap {namespace}/{name} in {self.root} cannot be read: {type(err).__name__}"
            ) from None
        data = raw.get("data") if isinstance(raw, dict) else None
        if not isinstance(data, dict):
            raise SecretStoreError(f"configmap {namespace}/{name} in {self.root} has no data map")
        return {str(k): str(v) for k, v in data.items()}

    def _write(self, path: Path, content: dict[str, object]) -> None:
        # The namespace's directory is private whichever of its files comes first.
        namespace_dir = self.root / path.relative_to(self.root).parts[0]
        namespace_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.parent.mkdir(exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(content, out)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _read(self, namespace: str, name: str) -> dict[str, object]:
        path = self._path(namespace, name)
        try:
            raw: dict[str, object] = json.loads(path.read_text())
        except FileNotFoundError:
            raise SecretNotFoundError(
                f"secret {namespace}/{name} not found in the secret store at {self.root}"
            ) from None
        except (OSError, ValueError) as err:
            raise SecretStoreError(
                f"secret {namespace}/{name} in {self.root} cannot be read: {type(err).__name__}"
            ) from None
        return raw

    def get(self, namespace: str, name: str) -> dict[str, str]:
        data = self._read(namespace, name).get("data")
        if not isinstance(data, dict):
            raise SecretStoreError(f"secret {namespace}/{name} in {self.root} has no data map")
        return {str(k): str(v) for k, v in data.items()}

    def delete(self, namespace: str, name: str, *, if_managed: bool = False) -> bool:
        # Every file here was written by flotilla, so ``if_managed`` changes nothing.
        path = self._path(namespace, name)
        if not path.exists():
            return False
        path.unlink()
        return True

    def list(self, namespace: str) -> list[SecretInfo]:
        check_secret_name(namespace, "x")
        found = []
        # By name, as the protocol says: sorting paths puts "a-b.json" before "a.json".
        for path in sorted((self.root / namespace).glob("*.json"), key=lambda p: p.stem):
            raw = self._read(namespace, path.stem)
            data = raw.get("data")
            found.append(
                SecretInfo(
                    namespace=namespace,
                    name=path.stem,
                    type=str(raw.get("type") or OPAQUE),
                    keys=sorted(data) if isinstance(data, dict) else [],
                )
            )
        return found
