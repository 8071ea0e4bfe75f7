"""The secret store: credentials and kubeconfigs by name, read only inside activities.

Workflows carry secret *names*; an activity resolves a name to its data here, uses it and
drops it. Nothing in this module logs or formats a secret value: errors name the secret and
the key, never the content.

The default store is a directory (``$FLOTILLA_SECRETS_DIR``, else
``~/.local/share/flotilla/secrets``) holding one JSON file per secret, mode 0600, written
atomically. A real installation can point the directory at a mounted Kubernetes Secret or
a tmpfs filled by its secret manager.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from flotilla.errors import FlotillaError

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?(/[a-z0-9]([-a-z0-9_.]*[a-z0-9])?)?$")


class SecretNotFoundError(FlotillaError):
    """A secret or one of its keys does not exist (the message names it, not its content)."""


def default_root() -> Path:
    env = os.environ.get("FLOTILLA_SECRETS_DIR")
    return Path(env) if env else Path.home() / ".local" / "share" / "flotilla" / "secrets"


class SecretStore:
    """Secrets as ``{key: value}`` maps under names like ``kubeconfig/prod-1``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_root()

    def _path(self, name: str) -> Path:
        if not _NAME.match(name):
            raise FlotillaError(f"secret name {name!r} is not valid (lowercase, digits, '-_./')")
        return self.root / (name.replace("/", "__") + ".json")

    def put(self, name: str, data: dict[str, str]) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(data, out)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, name: str) -> dict[str, str]:
        try:
            raw = self._path(name).read_text()
        except FileNotFoundError:
            raise SecretNotFoundError(f"secret {name!r} not found in the secret store") from None
        data: dict[str, str] = json.loads(raw)
        return data

    def get_key(self, name: str, key: str) -> str:
        data = self.get(name)
        if key not in data:
            raise SecretNotFoundError(f"secret {name!r} has no key {key!r}")
        return data[key]

    def delete(self, name: str) -> bool:
        path = self._path(name)
        if not path.exists():
            return False
        path.unlink()
        return True

    def exists(self, name: str) -> bool:
        return self._path(name).exists()


def kubeconfig_secret_name(cluster_namespace: str, cluster: str) -> str:
    """Where a registered cluster's kubeconfig lives in the store."""
    return f"kubeconfig/{cluster_namespace}.{cluster}"
