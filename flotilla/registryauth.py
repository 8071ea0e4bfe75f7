"""Registry credentials from a secret, in the shapes Fleet users already have.

An ``imageScans`` entry's ``secretRef`` names a secret. Fleet expects a Docker config secret
(``kubernetes.io/dockerconfigjson``: key ``.dockerconfigjson`` holding
``{"auths": {"<registry>": {...}}}``, or the legacy ``.dockercfg`` holding the ``auths`` map
itself); flotilla also takes plain ``username`` and ``password`` keys. Errors name the secret,
the key and the registry, never a credential.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from flotilla.errors import FlotillaError

DOCKER_CONFIG_JSON = ".dockerconfigjson"
DOCKER_CFG = ".dockercfg"
# The names Docker Hub goes by in Docker config files.
_DOCKER_HUB = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


def _host(key: str) -> str:
    """``https://index.docker.io/v1/`` -> ``index.docker.io``; ``reg:5000`` stays."""
    host = key.strip()
    for scheme in ("https://", "http://"):
        if host.startswith(scheme):
            host = host[len(scheme) :]
    return host.split("/", 1)[0].lower()


def _same_registry(key: str, registry: str) -> bool:
    host, wanted = _host(key), _host(registry)
    return host == wanted or (host in _DOCKER_HUB and wanted in _DOCKER_HUB)


def _auths(secret: str, data: dict[str, str]) -> tuple[str, dict[str, Any]]:
    key = DOCKER_CONFIG_JSON if DOCKER_CONFIG_JSON in data else DOCKER_CFG
    try:
        parsed = json.loads(data[key])
    except (json.JSONDecodeError, TypeError):
        raise FlotillaError(f"secret {secret!r}: {key} is not valid JSON") from None
    auths = (
        parsed.get("auths") if key == DOCKER_CONFIG_JSON and isinstance(parsed, dict) else parsed
    )
    if not isinstance(auths, dict):
        where = f"{key}: auths" if key == DOCKER_CONFIG_JSON else key
        raise FlotillaError(f"secret {secret!r}: {where} is not a map of registries")
    return key, auths


def registry_credentials(secret: str, data: dict[str, str], registry: str) -> tuple[str, str]:
    """The username and password for ``registry`` in the secret ``secret`` (its ``data``)."""
    if "username" in data or "password" in data:
        return data.get("username", ""), data.get("password", "")
    if DOCKER_CONFIG_JSON not in data and DOCKER_CFG not in data:
        raise FlotillaError(
            f"secret {secret!r} has neither username/password nor {DOCKER_CONFIG_JSON}"
        )
    key, auths = _auths(secret, data)
    entry = next(
        (value for name, value in auths.items() if _same_registry(str(name), registry)), None
    )
    if entry is None:
        known = ", ".join(sorted(_host(str(name)) for name in auths)) or "none"
        raise FlotillaError(
            f"secret {secret!r}: {key} has no credentials for registry {registry!r} "
            f"(it has: {known})"
        )
    if not isinstance(entry, dict):
        raise FlotillaError(f"secret {secret!r}: {key}: entry for {registry!r} is not a map")
    user, password = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(password, str):
        return user, password
    auth = entry.get("auth")
    if isinstance(auth, str):
        try:
            decoded = base64.b64decode(auth, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        user, sep, password = decoded.partition(":")
        if sep:
            return user, password
        raise FlotillaError(
            f"secret {secret!r}: {key}: auth for {registry!r} is not base64 of user:password"
        )
    raise FlotillaError(
        f"secret {secret!r}: {key}: entry for {registry!r} has no username/password or auth"
    )
