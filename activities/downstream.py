"""downstreamResources in activities: read from the secret store, copied to a cluster, removed.

The values read here stay in the calling activity: the planner keeps only their digest
(``flotilla.downstream.resources_digest``), the deploy writes them to the cluster and adds
every Secret value to its redactor, and errors name the kind, namespace and name only.
"""

from __future__ import annotations

from collections.abc import Sequence

from activities.kube import ForbiddenError, Kube
from activities.secrets import SecretNotFoundError, SecretStore
from flotilla.deployment import Redactor
from flotilla.downstream import (
    DownstreamCopy,
    ResolvedResource,
    copy_object,
    copy_selector,
    stale_copies,
)
from flotilla.errors import SECRET_NOT_FOUND, FlotillaError
from flotilla.models import DownstreamResource

_FIELD = "downstreamResources"


def read_resources(
    store: SecretStore, namespace: str, resources: Sequence[DownstreamResource]
) -> list[ResolvedResource]:
    """Each entry's data from the store (``data=None`` when it does not exist); other store
    failures (unreachable, forbidden) are raised as the store's own errors."""
    resolved = []
    # A Secret keeps its type (a registry's dockerconfigjson must stay one); the store
    # tells types only in its listing, read once and only when a Secret is named.
    types: dict[str, str] | None = None
    for entry in resources:
        try:
            if entry.kind == "Secret":
                data = store.get(namespace, entry.name)
                if types is None:
                    types = {info.name: info.type for info in store.list(namespace)}
                kind_type = types.get(entry.name, "")
            else:
                data = store.get_config_map(namespace, entry.name)
                kind_type = ""
        except SecretNotFoundError:
            resolved.append(ResolvedResource(kind=entry.kind, name=entry.name))
            continue
        resolved.append(
            ResolvedResource(kind=entry.kind, name=entry.name, type=kind_type, data=data)
        )
    return resolved


def require_present(resolved: Sequence[ResolvedResource], namespace: str) -> None:
    """A one-line error naming the first entry that is not in the store."""
    for resource in resolved:
        if resource.data is None:
            raise FlotillaError(
                f"{resource.kind} {namespace}/{resource.name} does not exist in the secret "
                "store; create it in the bundle's workspace",
                field=_FIELD,
                type=SECRET_NOT_FOUND,
            )


def copy_to_cluster(
    kube: Kube,
    store: SecretStore,
    copy: DownstreamCopy,
    target_namespace: str,
    *,
    bundle: str,
    redact: Redactor,
) -> int:
    """Write the bundle's resources into ``target_namespace`` (which must exist) and delete
    the copies it no longer lists; returns how many were written."""
    resolved = read_resources(store, copy.namespace, copy.resources)
    for resource in resolved:
        if resource.kind == "Secret" and resource.data:
            redact.add(resource.data.values())
    require_present(resolved, copy.namespace)
    for resource in resolved:
        kube.apply(copy_object(resource, target_namespace, workspace=copy.namespace, bundle=bundle))
    remove_from_cluster(
        kube, target_namespace, workspace=copy.namespace, bundle=bundle, keep=copy.resources
    )
    return len(resolved)


def remove_from_cluster(
    kube: Kube,
    namespace: str,
    *,
    workspace: str,
    bundle: str,
    keep: Sequence[DownstreamResource] = (),
) -> int:
    """Delete the bundle's copies in ``namespace`` except ``keep``; an account that may not
    list ConfigMaps or Secrets there has none to delete. Returns how many were deleted."""
    selector = copy_selector(workspace, bundle)
    live: list[tuple[str, str]] = []
    for kind in ("ConfigMap", "Secret"):
        try:
            items = kube.list_metadata("v1", kind, namespace, label_selector=selector)
        except ForbiddenError:
            continue
        live.extend((kind, str(item["metadata"]["name"])) for item in items)
    deleted = 0
    for kind, name in stale_copies(live, keep):
        deleted += kube.delete("v1", kind, namespace, name)
    return deleted
