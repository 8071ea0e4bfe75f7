"""Build the secret store and the content store the settings choose."""

from __future__ import annotations

from activities.content import ContentStore, FileContentStore
from activities.secrets import OPAQUE, FileSecretStore, SecretInfo, SecretStore
from flotilla.settings import ContentBackend, SecretBackend, Settings
from runtime.env import load_settings

__all__ = ["LazySecretStore", "content_store", "load_settings", "secret_store"]


def secret_store(settings: Settings) -> SecretStore:
    if settings.secret_backend is SecretBackend.KUBERNETES:
        # Imported here: only processes configured for it pay for the kubernetes client.
        from activities.kubesecrets import KubernetesSecretStore  # noqa: PLC0415

        store: SecretStore = KubernetesSecretStore(settings.management_kubeconfig)
        return store
    return FileSecretStore(settings.secrets_dir)


def content_store(settings: Settings, secrets: SecretStore) -> ContentStore:
    if settings.content_backend is ContentBackend.OCI:
        from activities.ocicontent import OciContentStore  # noqa: PLC0415

        assert settings.content_registry is not None  # settings_from_env checked it
        # The cache is scratch under the workdir: a worker with an empty disk works the same.
        return OciContentStore(
            settings.content_registry,
            secrets,
            settings.system_namespace,
            cache_dir=settings.workdir / "content-cache",
        )
    return FileContentStore(settings.content_dir)


class LazySecretStore:
    """The configured secret store, built at its first use: commands that read no secret
    (get, describe) never load the management cluster's client or connect to it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._store: SecretStore | None = None

    def _target(self) -> SecretStore:
        if self._store is None:
            self._store = secret_store(self._settings)
        return self._store

    def get(self, namespace: str, name: str) -> dict[str, str]:
        return self._target().get(namespace, name)

    def put(self, namespace: str, name: str, data: dict[str, str], *, type: str = OPAQUE) -> None:
        self._target().put(namespace, name, data, type=type)

    def delete(self, namespace: str, name: str, *, if_managed: bool = False) -> bool:
        return self._target().delete(namespace, name, if_managed=if_managed)

    def list(self, namespace: str) -> list[SecretInfo]:
        return self._target().list(namespace)

    def get_config_map(self, namespace: str, name: str) -> dict[str, str]:
        return self._target().get_config_map(namespace, name)

    def put_config_map(self, namespace: str, name: str, data: dict[str, str]) -> None:
        self._target().put_config_map(namespace, name, data)
