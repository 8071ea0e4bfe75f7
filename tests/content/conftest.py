"""Content stores on the real registry: a repository per test, secrets in a FileSecretStore."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from activities.ocicontent import OciContentStore
from activities.secrets import FileSecretStore
from devenv.registry import LocalRegistry, htpasswd_auth
from flotilla.settings import DEFAULT_SYSTEM_NAMESPACE, ContentRegistrySettings

SYSTEM = DEFAULT_SYSTEM_NAMESPACE
MakeStore = Callable[..., OciContentStore]


@pytest.fixture
def secrets(tmp_path: Path) -> FileSecretStore:
    return FileSecretStore(tmp_path / "secrets")


@pytest.fixture
def repository() -> str:
    """A fresh repository, so each test starts with an empty store."""
    return f"flotilla/content-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A registry that takes BASIC_USER/BASIC_PASSWORD only (htpasswd)."""
    directory = tmp_path_factory.mktemp("basic-registry")
    with LocalRegistry(directory, auth=htpasswd_auth(directory)) as registry:
        yield registry


@pytest.fixture
def make_store(
    registry: LocalRegistry, secrets: FileSecretStore, repository: str, tmp_path: Path
) -> Iterator[MakeStore]:
    """``make_store(host=..., cache=name or None, secret=..., **store options)``."""
    stores: list[OciContentStore] = []

    def make(
        *,
        host: str | None = None,
        cache: str | None = "cache",
        secret: str | None = None,
        insecure: bool = True,
        ca_file: Path | None = None,
        **options: object,
    ) -> OciContentStore:
        settings = ContentRegistrySettings(
            reference=f"{host or registry.host}/{repository}",
            secret=secret,
            insecure=insecure,
            ca_file=ca_file,
        )
        store = OciContentStore(
            settings,
            secrets,
            SYSTEM,
            cache_dir=tmp_path / cache if cache else None,
            **options,  # type: ignore[arg-type]
        )
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()
