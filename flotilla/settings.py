"""One settings object for every flotilla process, built once from flags and the environment.

The worker, the CLI and the agent each call :func:`settings_from_env` at start-up and pass the
result (or the part of it a component needs) to whatever they build: the Temporal connection,
the secret store, the content store, the tool lookup. Nothing deeper reads ``os.environ``.

This module is pure: it gets the environment as a mapping and the home directory as a path,
and checks the combination once, so a wrong setting fails at start-up with the variable's
name, its value and how to fix it, not later inside an activity.

| variable | meaning | default |
|---|---|---|
| TEMPORAL_ADDRESS | host:port of the Temporal frontend | 127.0.0.1:7233 |
| TEMPORAL_NAMESPACE | Temporal namespace | default |
| TEMPORAL_TLS | ``true``: TLS with the system's roots | false |
| TEMPORAL_TLS_CA_FILE | PEM roots to trust instead (implies TLS) | |
| TEMPORAL_TLS_CERT_FILE, TEMPORAL_TLS_KEY_FILE | mTLS client certificate and key | |
| TEMPORAL_TLS_SERVER_NAME | server name to verify, when it differs from the host | |
| TEMPORAL_API_KEY_FILE | file holding an API key (Temporal Cloud; implies TLS) | |
| TEMPORAL_HTTP_ADDRESS | HTTP API, for the `get` tables | :7243 if TEMPORAL_ADDRESS unset |
| FLOTILLA_SECRET_BACKEND | ``file`` or ``kubernetes`` | file |
| FLOTILLA_SECRETS_DIR | the ``file`` secret store's directory | ~/.local/share/flotilla/secrets |
| FLOTILLA_MANAGEMENT_KUBECONFIG | management cluster's kubeconfig (``kubernetes``) | in-cluster |
| FLOTILLA_SYSTEM_NAMESPACE | namespace of flotilla's own secrets | flotilla-system |
| FLOTILLA_CONTENT_BACKEND | ``file`` or ``oci`` | file |
| FLOTILLA_CONTENT_DIR | the ``file`` content store's directory | ~/.local/share/flotilla/content |
| FLOTILLA_CONTENT_REGISTRY | ``host[:port]/repository`` of the ``oci`` content store | |
| FLOTILLA_CONTENT_REGISTRY_SECRET | secret (system namespace) with the registry's credentials | |
| FLOTILLA_CONTENT_REGISTRY_INSECURE | ``true``: plain HTTP to the registry | false |
| FLOTILLA_CONTENT_REGISTRY_CA_FILE | PEM roots for the registry's TLS | |
| FLOTILLA_HELM, FLOTILLA_KUSTOMIZE, FLOTILLA_SOPS | a tool's path | pinned build, then PATH |
| FLOTILLA_TOOLS_DIR | where ``make tools`` keeps the pinned builds | ~/.cache/flotilla/tools |
| FLOTILLA_WORKDIR | scratch: clones, renders, content cache | ~/.cache/flotilla/work |
| FLOTILLA_INSECURE_SKIP_HOST_KEY_CHECKS | ``true``: accept any SSH host key (insecure) | false |
| FLOTILLA_TEMPORAL_UI_URL | the Temporal UI notifications link to | http://127.0.0.1:8233 |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from flotilla.errors import SpecError, short_repr

DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"
DEFAULT_TEMPORAL_NAMESPACE = "default"
# Temporal's own default pairing: the frontend's HTTP API listens 10 ports above gRPC.
DEFAULT_TEMPORAL_HTTP_ADDRESS = "127.0.0.1:7243"
DEFAULT_SYSTEM_NAMESPACE = "flotilla-system"
# A bundle on more clusters than this is rolled out by shard workflows of at most about this
# many clusters each (docs/orchestration.md, "Shards"): each history and payload stays
# bounded. Bundle workflows take it from their state (a test switch), this when unset.
DEFAULT_BUNDLE_SHARD_SIZE = 500

# Every variable settings_from_env reads: the contract install files (the Helm chart,
# docker-compose.yml) are checked against.
ENVIRONMENT = frozenset(
    {
        "TEMPORAL_ADDRESS",
        "TEMPORAL_NAMESPACE",
        "TEMPORAL_TLS",
        "TEMPORAL_TLS_CA_FILE",
        "TEMPORAL_TLS_CERT_FILE",
        "TEMPORAL_TLS_KEY_FILE",
        "TEMPORAL_TLS_SERVER_NAME",
        "TEMPORAL_API_KEY_FILE",
        "TEMPORAL_HTTP_ADDRESS",
        "FLOTILLA_SECRET_BACKEND",
        "FLOTILLA_SECRETS_DIR",
        "FLOTILLA_MANAGEMENT_KUBECONFIG",
        "FLOTILLA_SYSTEM_NAMESPACE",
        "FLOTILLA_CONTENT_BACKEND",
        "FLOTILLA_CONTENT_DIR",
        "FLOTILLA_CONTENT_REGISTRY",
        "FLOTILLA_CONTENT_REGISTRY_SECRET",
        "FLOTILLA_CONTENT_REGISTRY_INSECURE",
        "FLOTILLA_CONTENT_REGISTRY_CA_FILE",
        "FLOTILLA_HELM",
        "FLOTILLA_KUSTOMIZE",
        "FLOTILLA_SOPS",
        "FLOTILLA_TOOLS_DIR",
        "FLOTILLA_WORKDIR",
        "FLOTILLA_INSECURE_SKIP_HOST_KEY_CHECKS",
        "FLOTILLA_TEMPORAL_UI_URL",
    }
)

_E = TypeVar("_E", bound=StrEnum)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


class SettingsError(SpecError):
    """A setting is missing, malformed or contradicts another; the message names the variable."""


class SecretBackend(StrEnum):
    """Where secrets live: files on this machine, or Secrets in a management cluster."""

    FILE = "file"
    KUBERNETES = "kubernetes"


class ContentBackend(StrEnum):
    """Where bundle content lives: files on this machine, or an OCI registry."""

    FILE = "file"
    OCI = "oci"


@dataclass(frozen=True, kw_only=True)
class TemporalSettings:
    """How to reach Temporal. The API key is a file's path, never the key itself."""

    address: str = DEFAULT_TEMPORAL_ADDRESS
    namespace: str = DEFAULT_TEMPORAL_NAMESPACE
    tls: bool = False
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_server_name: str | None = None
    api_key_file: Path | None = None
    # Temporal's HTTP API (grpc-gateway): the CLI reads its tables from visibility there
    # without loading the Temporal SDK. None: tables come through gRPC.
    http_address: str | None = None

    @property
    def uses_tls(self) -> bool:
        """TLS is on when asked for, or implied by a CA, a client certificate or an API key."""
        return bool(
            self.tls
            or self.tls_ca_file
            or self.tls_cert_file
            or self.api_key_file
            or self.tls_server_name
        )


@dataclass(frozen=True, kw_only=True)
class ToolSettings:
    """Explicit tool paths (None: the pinned build in ``tools_dir``, then PATH)."""

    helm: Path | None = None
    kustomize: Path | None = None
    sops: Path | None = None
    tools_dir: Path


@dataclass(frozen=True, kw_only=True)
class ContentRegistrySettings:
    """The OCI registry that holds bundle content when the ``oci`` backend is chosen."""

    # host[:port]/repository, e.g. registry.example.com/flotilla/content
    reference: str
    secret: str | None = None
    insecure: bool = False
    ca_file: Path | None = None

    @property
    def host(self) -> str:
        return self.reference.split("/", 1)[0]

    @property
    def repository(self) -> str:
        return self.reference.split("/", 1)[1]


# The Temporal dev server's UI (`make dev`); set FLOTILLA_TEMPORAL_UI_URL for a real one.
DEFAULT_TEMPORAL_UI_URL = "http://127.0.0.1:8233"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything a flotilla process is configured with; see the module docstring."""

    temporal: TemporalSettings = field(default_factory=TemporalSettings)
    secret_backend: SecretBackend = SecretBackend.FILE
    secrets_dir: Path
    management_kubeconfig: Path | None = None
    system_namespace: str = DEFAULT_SYSTEM_NAMESPACE
    content_backend: ContentBackend = ContentBackend.FILE
    content_dir: Path
    content_registry: ContentRegistrySettings | None = None
    tools: ToolSettings
    workdir: Path
    # Fleet's --insecure-skip-host-key-checks: git over SSH accepts any host key.
    insecure_skip_host_key_checks: bool = False
    # Where people open the Temporal UI: notifications link to the workflow there.
    temporal_ui_url: str = DEFAULT_TEMPORAL_UI_URL


def settings_from_env(env: Mapping[str, str], home: Path) -> Settings:
    """Build and check the settings from ``env`` (normally ``os.environ``) and the user's home.

    Raises SettingsError naming the variable, its value and the fix.
    """

    def get(name: str) -> str:
        return env.get(name, "").strip()

    def path(name: str) -> Path | None:
        value = get(name)
        if not value:
            return None
        # "~" is the given home, not this process's: the function stays pure.
        return home / value[2:] if value == "~" or value.startswith("~/") else Path(value)

    def flag(name: str) -> bool:
        value = get(name).lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise SettingsError(f"{name}={short_repr(env[name])} is not a boolean: use true or false")

    def choice(name: str, kind: type[_E], default: _E) -> _E:
        value = get(name).lower()
        if not value:
            return default
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(member.value for member in kind)
            raise SettingsError(
                f"{name}={short_repr(env[name])} is not one of: {allowed}"
            ) from None

    temporal = TemporalSettings(
        address=get("TEMPORAL_ADDRESS") or DEFAULT_TEMPORAL_ADDRESS,
        namespace=get("TEMPORAL_NAMESPACE") or DEFAULT_TEMPORAL_NAMESPACE,
        tls=flag("TEMPORAL_TLS"),
        tls_ca_file=path("TEMPORAL_TLS_CA_FILE"),
        tls_cert_file=path("TEMPORAL_TLS_CERT_FILE"),
        tls_key_file=path("TEMPORAL_TLS_KEY_FILE"),
        tls_server_name=get("TEMPORAL_TLS_SERVER_NAME") or None,
        api_key_file=path("TEMPORAL_API_KEY_FILE"),
        http_address=get("TEMPORAL_HTTP_ADDRESS")
        or (None if get("TEMPORAL_ADDRESS") else DEFAULT_TEMPORAL_HTTP_ADDRESS),
    )
    if bool(temporal.tls_cert_file) != bool(temporal.tls_key_file):
        raise SettingsError(
            "TEMPORAL_TLS_CERT_FILE and TEMPORAL_TLS_KEY_FILE go together: set both for mTLS, "
            "or neither"
        )
    for variable, address, example in (
        ("TEMPORAL_ADDRESS", temporal.address, "127.0.0.1:7233"),
        ("TEMPORAL_HTTP_ADDRESS", temporal.http_address or "", "127.0.0.1:7243"),
    ):
        if address and ":" not in address.rsplit("]", 1)[-1]:
            raise SettingsError(
                f"{variable}={short_repr(address)} has no port: use host:port, e.g. {example}"
            )

    content_backend = choice("FLOTILLA_CONTENT_BACKEND", ContentBackend, ContentBackend.FILE)
    registry: ContentRegistrySettings | None = None
    reference = get("FLOTILLA_CONTENT_REGISTRY").removeprefix("oci://").rstrip("/")
    if content_backend is ContentBackend.OCI:
        if not reference:
            raise SettingsError(
                "FLOTILLA_CONTENT_BACKEND=oci needs FLOTILLA_CONTENT_REGISTRY "
                "(host[:port]/repository, e.g. registry.example.com/flotilla/content)"
            )
        if "/" not in reference or "://" in reference:
            raise SettingsError(
                f"FLOTILLA_CONTENT_REGISTRY={short_repr(env['FLOTILLA_CONTENT_REGISTRY'])} is "
                "not host[:port]/repository (e.g. registry.example.com/flotilla/content)"
            )
        registry = ContentRegistrySettings(
            reference=reference,
            secret=get("FLOTILLA_CONTENT_REGISTRY_SECRET") or None,
            insecure=flag("FLOTILLA_CONTENT_REGISTRY_INSECURE"),
            ca_file=path("FLOTILLA_CONTENT_REGISTRY_CA_FILE"),
        )

    share = home / ".local" / "share" / "flotilla"
    cache = home / ".cache" / "flotilla"
    return Settings(
        temporal=temporal,
        secret_backend=choice("FLOTILLA_SECRET_BACKEND", SecretBackend, SecretBackend.FILE),
        secrets_dir=path("FLOTILLA_SECRETS_DIR") or share / "secrets",
        management_kubeconfig=path("FLOTILLA_MANAGEMENT_KUBECONFIG"),
        system_namespace=get("FLOTILLA_SYSTEM_NAMESPACE") or DEFAULT_SYSTEM_NAMESPACE,
        content_backend=content_backend,
        content_dir=path("FLOTILLA_CONTENT_DIR") or share / "content",
        content_registry=registry,
        tools=ToolSettings(
            helm=path("FLOTILLA_HELM"),
            kustomize=path("FLOTILLA_KUSTOMIZE"),
            sops=path("FLOTILLA_SOPS"),
            tools_dir=path("FLOTILLA_TOOLS_DIR") or cache / "tools",
        ),
        workdir=path("FLOTILLA_WORKDIR") or cache / "work",
        insecure_skip_host_key_checks=flag("FLOTILLA_INSECURE_SKIP_HOST_KEY_CHECKS"),
        temporal_ui_url=get("FLOTILLA_TEMPORAL_UI_URL") or DEFAULT_TEMPORAL_UI_URL,
    )
