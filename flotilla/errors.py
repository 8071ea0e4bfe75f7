"""The error tree of the core: every error a person reads names the file, the field and the value.

FlotillaError
 ├── SpecError          a user input is malformed or invalid (exit code 1, InvalidSpec in Temporal)
 ├── RenderError        a bundle could not be turned into manifests (chart, kustomize, patch)
 └── UnreachableError   a server did not answer (Temporal, a cluster, a store): exit code 4

Messages are one line: ``<file>: <field.path>: <problem> (<value>)``. They never include
secret values; callers pass names, not contents.

Activities hand errors to workflows as Temporal ``ApplicationError``s; the ``type`` names that
workflows act on (retry policies, update validators) are the catalogue at the end.
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
    """Base of every error flotilla raises on purpose; ``str()`` is the one-line message."""

    def __init__(self, message: str, *, file: str = "", field: str = "") -> None:
        self.file = file
        self.field = field
        self.problem = message
        parts = [p for p in (file, field) if p]
        super().__init__(": ".join([*parts, message]) if parts else message)

    @property
    def message(self) -> str:
        return str(self)


class SpecError(FlotillaError):
    """A user input (YAML file, fleet.yaml field, selector, URL, CLI flag) is invalid."""


class RenderError(FlotillaError):
    """A bundle could not be rendered into manifests for a cluster."""


class UnreachableError(FlotillaError):
    """A server (Temporal, a cluster's API, a store) could not be reached; worth retrying."""


# ---------------------------------------------------------------------------------------------
# Failure types: the ``type`` of ApplicationErrors that both activities and workflows name
# ---------------------------------------------------------------------------------------------

# Errors a retry cannot fix; activities raise them as non-retryable ApplicationErrors.
INVALID_SPEC = "InvalidSpec"
NON_RETRYABLE_ERRORS = [INVALID_SPEC, "SpecError", "RenderError", "SecretNotFoundError"]

# Container registries (activities/registry.py).
REGISTRY_UNAVAILABLE = "RegistryUnavailable"
REGISTRY_RATE_LIMITED = "RegistryRateLimited"
REGISTRY_AUTH_FAILED = "RegistryAuthFailed"
REGISTRY_NOT_FOUND = "RegistryNotFound"
NON_RETRYABLE_REGISTRY_ERRORS = [REGISTRY_AUTH_FAILED, REGISTRY_NOT_FOUND, "SecretNotFoundError"]
