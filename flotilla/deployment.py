"""What one bundle deployment needs on its cluster, and the pure rules the deploy engine follows."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict

from flotilla.downstream import DownstreamCopy
from flotilla.ids import DEFAULT_NAMESPACE
from flotilla.kubenames import is_label_value
from flotilla.models import BundleDeploymentOptions, LabelSelector
from flotilla.targeting import ClusterInfo

# Fleet's default for helm.maxHistory when fleet.yaml leaves it unset (or 0).
DEFAULT_MAX_HISTORY = 2
# Fleet reads this key of a valuesFrom ConfigMap or Secret when the entry names none.
DEFAULT_VALUES_KEY = "values.yaml"
# Namespaces a removal never deletes: the system's, and those flotilla keeps its own records in.
PROTECTED_NAMESPACES = frozenset(
    {"default", DEFAULT_NAMESPACE, "fleet-default", "cattle-fleet-system", "flotilla-system"}
)
_PROTECTED_PREFIXES = ("kube-",)
_REDACTED = "[redacted]"
# Shorter strings are too likely to occur by chance to be worth hiding (and hiding "a" or
# "true" would garble every message).
_MIN_SECRET_LEN = 4
# How a shortened message ends (flotilla.errors.one_line).
_CUT = "..."


class DeploymentOptions(BaseModel):
    """The per-cluster payload the planner stores in the content store for one deployment.

    ``options`` are the bundle's options after targetCustomizations, with ``helm.values``
    already merged and templated for ``cluster``; valuesFrom is still a list of references,
    read on the cluster at deploy time.
    """

    model_config = ConfigDict(frozen=True)

    options: BundleDeploymentOptions
    cluster: ClusterInfo
    # The workspace's restrictions for this deployment (None when unset, so the stored
    # payload, and with it the deployment id, stays what it was without them): the selector
    # the target namespace's labels must match, and whether an impersonated install may
    # create the namespace.
    namespace_selector: LabelSelector | None = None
    allow_namespace_creation: bool | None = None
    # downstreamResources: what to copy before deploying, with the digest of its content when
    # planned, so a changed ConfigMap or Secret is a new deployment id (None: none listed).
    downstream: DownstreamCopy | None = None


def deployment_id(bundle_digest: str, options_digest: str) -> str:
    """Fleet's ``<content>:<options>`` id, shortened so it is also a valid label value."""
    return f"s-{bundle_digest[:20]}-{options_digest[:20]}"


def deployment_label(deployment_id: str) -> str:
    """The deployment id as a label value: itself when valid, else a stable 40-hex digest."""
    if is_label_value(deployment_id):
        return deployment_id
    return "h" + hashlib.sha256(deployment_id.encode()).hexdigest()[:40]


def max_history(options: BundleDeploymentOptions) -> int:
    """``helm.maxHistory``, or Fleet's default when unset or zero."""
    configured = options.helm.max_history if options.helm else None
    return configured or DEFAULT_MAX_HISTORY


def namespace_removal_refusal(namespace: str) -> str:
    """Why ``namespace`` must not be deleted, or "" when it may be."""
    if namespace in PROTECTED_NAMESPACES or namespace.startswith(_PROTECTED_PREFIXES):
        return f"namespace {namespace!r} is a system or flotilla namespace and is never deleted"
    return ""


def secret_strings(value: Any) -> list[str]:
    """Every string leaf (and its key) of a values tree, so messages can be scrubbed of them."""
    found: list[str] = []
    if isinstance(value, str):
        found.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            found.extend(secret_strings(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(secret_strings(item))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        found.append(str(value))
    return found


class Redactor:
    """Replaces known secret strings in a message with ``[redacted]``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        for secret in secrets:
            for part in (secret, *secret.splitlines()):
                if len(part.strip()) >= _MIN_SECRET_LEN:
                    self._secrets.add(part.strip())

    def __call__(self, text: str) -> str:
        # Longest first, so that a secret containing another is replaced whole.
        ordered = sorted(self._secrets, key=len, reverse=True)
        for secret in ordered:
            text = text.replace(secret, _REDACTED)
        if text.endswith(_CUT):
            # A message shortened before it got here may end in the first part of a secret.
            head = text[: -len(_CUT)]
            for secret in ordered:
                cut = next(
                    (n for n in range(len(secret) - 1, 0, -1) if head.endswith(secret[:n])), 0
                )
                if cut >= _MIN_SECRET_LEN:
                    head = head[:-cut] + _REDACTED
                    break
            text = head + _CUT
        return text


def kubeconfig_secrets(kubeconfig: dict[str, Any]) -> list[str]:
    """The credential strings of a parsed kubeconfig (tokens, passwords, keys, certificates)."""
    found: list[str] = []
    for user in kubeconfig.get("users") or []:
        details = (user or {}).get("user") or {}
        for key in ("token", "password", "client-key-data", "client-certificate-data"):
            if isinstance(details.get(key), str):
                found.append(details[key])
    return found
