"""The error tree of the core: every error a person reads names the file, the field and the value.

Every ``FlotillaError`` carries, as class attributes, the ``type`` of the Temporal
``ApplicationError`` it becomes at an activity's boundary and whether it is ``retryable``; an
instance overrides them where the cause decides (a 503 and a 422 are both ``KubeError``s).
``activities/failures.py: to_application_error`` is the one place that turns them into
``ApplicationError``s. The tree, with each class's ``type`` and retryability:

FlotillaError                     FlotillaError, permanent
 ├── SpecError                    SpecError, permanent: a user input is malformed or invalid
 │                                (exit code 1; InvalidSpec where a workflow or activity names it)
 ├── RenderError                  RenderError, permanent: a bundle could not become manifests
 ├── UnreachableError             UnreachableError, retryable: a server did not answer (exit 4)
 ├── activities.secrets
 │    ├── SecretNotFoundError     SecretNotFoundError, permanent
 │    └── SecretStoreError        SecretStoreError, by cause (unreachable, throttled: retryable)
 ├── activities.content
 │    └── ContentError            ContentError, permanent: missing, corrupt, malformed digest
 │         └── ContentUnavailableError   ContentUnavailable, retryable
 ├── activities.gitops.GitError   GitError, retryable: a git command failed
 ├── activities.registry.RegistryError    a container registry call failed
 │    ├── RegistryUnavailableError        RegistryUnavailable, retryable
 │    ├── RegistryRateLimitedError        RegistryRateLimited, retryable (Retry-After)
 │    ├── RegistryAuthError               RegistryAuthFailed, permanent
 │    └── RegistryNotFoundError           RegistryNotFound, permanent
 ├── activities.helm.HelmError    by cause: ClusterUnreachable (retryable), WaitTimeout,
 │                                Forbidden, InvalidManifest, ChartRenderFailed, HelmFailed
 └── activities.kube.KubeError    KubeError, by cause
      ├── InvalidObjectError      InvalidManifest, permanent (400/422)
      ├── ForbiddenError          Forbidden, permanent (401/403)
      ├── NotFoundError           NotFound, permanent (404)
      ├── ConflictError           Conflict, retryable (409)
      ├── ThrottledError          Throttled, retryable (429, Retry-After)
      └── UnreachableError        ClusterUnreachable, retryable (5xx, TLS, connection)

An activity may give the generic types a name of its own (the deploy activities report
SpecError and RenderError as InvalidBundle, and FlotillaError, ContentError and
SecretNotFoundError as DeployFailed); a renaming never changes the retryability.

Messages are one line: ``<file>: <field.path>: <problem> (<value>)``. They never include
secret values; callers pass names, not contents.
"""

from __future__ import annotations

from typing import Any

_MAX_VALUE_REPR = 80
# Longest message a status line, a report or a log line carries for one deployment or bundle.
MAX_MESSAGE = 240


def short_repr(value: Any, limit: int = _MAX_VALUE_REPR) -> str:
    """Return ``repr(value)`` cut to ``limit`` characters so one bad value cannot flood a line."""
    text = repr(value)
    if len(text) > limit:
        return text[: limit - 3] + "..."
    return text


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """Return ``text`` on one line (runs of whitespace become one space), cut to ``limit``."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def cause_message(err: BaseException) -> str:
    """The message of the error a Temporal failure wraps (an activity's, an update's), on one
    line; read by attribute, so the core needs no Temporal types."""
    cause = getattr(err, "cause", None)
    message = getattr(cause, "message", None) or str(cause or err)
    return " ".join(str(message).split())


class FlotillaError(Exception):
    """Base of every error flotilla raises on purpose; ``str()`` is the one-line message.

    ``type`` and ``retryable`` say how Temporal sees it (the tree at the top); the keyword
    arguments of the same names override them for one instance, where the cause decides.
    ``retry_after`` (seconds) asks Temporal to wait that long before the next attempt.
    """

    type: str = "FlotillaError"
    retryable: bool = False
    retry_after: float | None = None

    def __init__(
        self,
        message: str,
        *,
        file: str = "",
        field: str = "",
        type: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.file = file
        self.field = field
        self.problem = message
        if type is not None:
            self.type = type
        if retryable is not None:
            self.retryable = retryable
        if retry_after is not None:
            self.retry_after = retry_after
        parts = [p for p in (file, field) if p]
        super().__init__(": ".join([*parts, message]) if parts else message)

    @property
    def message(self) -> str:
        return str(self)


class SpecError(FlotillaError):
    """A user input (YAML file, fleet.yaml field, selector, URL, CLI flag) is invalid."""

    type = "SpecError"


class RenderError(FlotillaError):
    """A bundle could not be rendered into manifests for a cluster."""

    type = "RenderError"


class UnreachableError(FlotillaError):
    """A server (Temporal, a cluster's API, a store) could not be reached; worth retrying."""

    type = "UnreachableError"
    retryable = True


# ---------------------------------------------------------------------------------------------
# The catalogue: every ``type`` of ApplicationError that activities raise and workflows name
# ---------------------------------------------------------------------------------------------

INVALID_SPEC = "InvalidSpec"
INVALID_BUNDLE = "InvalidBundle"
DEPLOY_FAILED = "DeployFailed"
CONTENT_MISSING = "ContentError"
CONTENT_UNAVAILABLE = "ContentUnavailable"
SECRET_NOT_FOUND = "SecretNotFoundError"  # noqa: S105 - an error type, not a secret
SECRET_STORE_FAILED = "SecretStoreError"  # noqa: S105 - an error type, not a secret
GIT_FAILED = "GitError"
# The git server's SSH host key is unknown or changed: a person must check it.
HOST_KEY_REJECTED = "HostKeyRejected"
# A GitRepo with verifyCommits read a commit not signed by a key it trusts.
COMMIT_NOT_VERIFIED = "CommitNotVerified"
# Content garbage collection could not learn what a workflow uses (activities/contentgc.py).
CONTENT_GC_INCOMPLETE = "ContentGcIncomplete"
# Clusters: the Kubernetes API (activities/kube.py) and helm (activities/helm.py).
KUBE_FAILED = "KubeError"
CLUSTER_UNREACHABLE = "ClusterUnreachable"
INVALID_MANIFEST = "InvalidManifest"
FORBIDDEN = "Forbidden"
NOT_FOUND = "NotFound"
CONFLICT = "Conflict"
THROTTLED = "Throttled"
WAIT_TIMEOUT = "WaitTimeout"
CHART_RENDER_FAILED = "ChartRenderFailed"
HELM_FAILED = "HelmFailed"
# A deploy whose deployment window (Fleet's Schedule) closed before it started applies nothing.
WINDOW_CLOSED = "WindowClosed"
# Container registries (activities/registry.py).
REGISTRY_UNAVAILABLE = "RegistryUnavailable"
REGISTRY_RATE_LIMITED = "RegistryRateLimited"
REGISTRY_AUTH_FAILED = "RegistryAuthFailed"
REGISTRY_NOT_FOUND = "RegistryNotFound"

# Whether an ApplicationError of each type is retried: True, False, or None where the cause
# decides (the same type is raised both ways). tests/unit/test_error_catalogue.py holds every
# FlotillaError class to it.
RETRYABLE: dict[str, bool | None] = {
    FlotillaError.type: False,
    SpecError.type: False,
    RenderError.type: False,
    UnreachableError.type: True,
    INVALID_SPEC: False,
    INVALID_BUNDLE: False,
    DEPLOY_FAILED: False,
    CONTENT_MISSING: False,
    CONTENT_UNAVAILABLE: True,
    SECRET_NOT_FOUND: False,
    SECRET_STORE_FAILED: None,
    GIT_FAILED: True,
    HOST_KEY_REJECTED: False,
    COMMIT_NOT_VERIFIED: False,
    CONTENT_GC_INCOMPLETE: True,
    KUBE_FAILED: None,
    CLUSTER_UNREACHABLE: True,
    INVALID_MANIFEST: False,
    FORBIDDEN: False,
    NOT_FOUND: False,
    CONFLICT: True,
    THROTTLED: True,
    # helm names these from its message; one that does not finish in time is retried
    WAIT_TIMEOUT: None,
    CHART_RENDER_FAILED: None,
    HELM_FAILED: None,
    WINDOW_CLOSED: False,
    REGISTRY_UNAVAILABLE: True,
    REGISTRY_RATE_LIMITED: True,
    REGISTRY_AUTH_FAILED: False,
    REGISTRY_NOT_FOUND: False,
}


def _permanent(*types: str) -> list[str]:
    """The ``types`` that are permanent whatever the cause (a retry policy may name no other)."""
    return [t for t in types if RETRYABLE[t] is False]


# The workflows' retry policies never retry these: types raised as non-retryable, and the class
# names Temporal gives FlotillaErrors that leave an activity unmapped.
NON_RETRYABLE_ERRORS = _permanent(INVALID_SPEC, SpecError.type, RenderError.type, SECRET_NOT_FOUND)
NON_RETRYABLE_REGISTRY_ERRORS = _permanent(
    REGISTRY_AUTH_FAILED, REGISTRY_NOT_FOUND, SECRET_NOT_FOUND
)
