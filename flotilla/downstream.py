"""downstreamResources: the digest of a bundle's copied ConfigMaps and Secrets, and their copies.

A bundle's ``downstreamResources`` name ConfigMaps and Secrets of its workspace (the
GitRepo's or HelmOp's namespace, in the secret store). Before the bundle deploys to a cluster
they are copied into its namespace there; their content takes part in the deployment's
identity only as a digest (``resources_digest``), computed inside activities, so a changed
Secret re-deploys the bundles that use it while its values never reach workflow history.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from flotilla.kubenames import is_label_value
from flotilla.models import DownstreamResource

# Labels of a copy on a downstream cluster: which workspace's bundle it belongs to, so that
# removing the bundle (or dropping the entry) deletes exactly its copies and nothing else.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "flotilla"
BUNDLE_LABEL = "flotilla.io/downstream-bundle"
WORKSPACE_LABEL = "flotilla.io/downstream-workspace"
# Standing in for an entry whose object is missing, so that creating it later changes the
# digest (and the deploy that failed for it runs again with the new id).
_MISSING = "missing"


class DownstreamCopy(BaseModel):
    """What a deployment copies: the entries, the workspace they are read from, and the
    digest of their content when planned (names and a digest only: no value)."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    resources: list[DownstreamResource]
    digest: str


class ResolvedResource(BaseModel):
    """One entry read from the secret store: its kind, name, Secret type and data (text).

    Only activities hold one; it never enters a workflow, a log or an error."""

    kind: Literal["ConfigMap", "Secret"]
    name: str
    type: str = ""
    data: dict[str, str] | None = None  # None: not in the store

    def __repr__(self) -> str:
        return f"ResolvedResource({self.kind} {self.name!r})"

    __str__ = __repr__


def resources_digest(resolved: Sequence[ResolvedResource]) -> str:
    """sha256 over the entries' kinds, names, types and data (canonical JSON), in list order.

    A missing entry counts as such, so its creation changes the digest too."""
    items = [
        [r.kind, r.name, r.type, _MISSING if r.data is None else dict(sorted(r.data.items()))]
        for r in resolved
    ]
    canonical = json.dumps(items, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def unreadable_digest(resources: Sequence[DownstreamResource]) -> str:
    """The digest of entries the store could not give (never equal to a content digest)."""
    names = ",".join(f"{r.kind}/{r.name}" for r in resources)
    return hashlib.sha256(f"unreadable:{names}".encode()).hexdigest()


def copy_labels(workspace: str, bundle: str) -> dict[str, str]:
    """The labels every copy of ``bundle`` (of ``workspace``) carries on a cluster."""
    return {MANAGED_BY_LABEL: MANAGED_BY, BUNDLE_LABEL: bundle, WORKSPACE_LABEL: workspace}


def copy_selector(workspace: str, bundle: str) -> str:
    """The label selector that finds the copies of ``bundle`` in a namespace."""
    return ",".join(f"{k}={v}" for k, v in copy_labels(workspace, bundle).items())


def check_copy_labels(workspace: str, bundle: str) -> str:
    """Why the copies of ``bundle`` cannot be labelled (names longer than 63), or ""."""
    for what, value in (("bundle", bundle), ("namespace", workspace)):
        if not is_label_value(value):
            return (
                f"downstreamResources: the {what} name {value!r} is not a valid label value "
                "(at most 63 characters), which the copies are labelled with"
            )
    return ""


def copy_object(
    resource: ResolvedResource, namespace: str, *, workspace: str, bundle: str
) -> dict[str, Any]:
    """The object written to a downstream cluster for one resolved entry."""
    if resource.data is None:
        raise ValueError(f"{resource} is missing: nothing to copy")
    metadata = {
        "name": resource.name,
        "namespace": namespace,
        "labels": copy_labels(workspace, bundle),
    }
    if resource.kind == "ConfigMap":
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata,
            "data": resource.data,
        }
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in resource.data.items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": resource.type or "Opaque",
        "data": encoded,
    }


def stale_copies(
    live: Sequence[tuple[str, str]], wanted: Sequence[DownstreamResource]
) -> list[tuple[str, str]]:
    """The ``(kind, name)`` copies found on a cluster that the bundle no longer lists."""
    keep = {(r.kind, r.name) for r in wanted}
    return sorted(item for item in live if item not in keep)
