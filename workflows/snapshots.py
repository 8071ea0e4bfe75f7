"""Receiving a registry snapshot that travels by digest (flotilla.snapshots): load it, or
have it cut into shards' parts, through activities; a failure keeps what the caller had."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.gitops_models import (
        LOAD_SNAPSHOT,
        SPLIT_SNAPSHOT,
        LoadSnapshotRequest,
        SplitSnapshotRequest,
        SplitSnapshotResult,
    )
    from flotilla.errors import one_line
    from workflows.common import SNAPSHOT_RETRY, SNAPSHOT_TIMEOUT
    from workflows.registry_models import ClusterSnapshot

# A bundle whose snapshot came by digest loads it, or a sharded one has it cut into parts
# (new activities). Asked only for such a snapshot, so other bundles' runs carry no marker.
SNAPSHOT_BY_DIGEST_PATCH = "digest-bundle-snapshot-by-digest"


async def load_clusters(header: ClusterSnapshot, bundle: str) -> ClusterSnapshot | None:
    """``header`` with its clusters loaded from the content store; None (logged) when they
    cannot be read: the caller keeps what it had and tries again at its next pass."""
    workflow.patched(SNAPSHOT_BY_DIGEST_PATCH)
    try:
        stored: ClusterSnapshot = await workflow.execute_activity(
            LOAD_SNAPSHOT,
            LoadSnapshotRequest(digest=header.clusters_digest),
            result_type=ClusterSnapshot,
            start_to_close_timeout=SNAPSHOT_TIMEOUT,
            retry_policy=SNAPSHOT_RETRY,
        )
    except ActivityError as err:
        workflow.logger.warning(
            "bundle %s: clusters of snapshot %d not loaded: %s",
            bundle,
            header.version,
            one_line(str(err.cause or err)),
        )
        return None
    return header.model_copy(update={"clusters": stored.clusters})


async def split_clusters(
    header: ClusterSnapshot, boundaries: list[str], size: int, bundle: str
) -> SplitSnapshotResult | None:
    """The stored parts of ``header``'s clusters per shard (None, logged, when the store
    cannot be read)."""
    workflow.patched(SNAPSHOT_BY_DIGEST_PATCH)
    try:
        result: SplitSnapshotResult = await workflow.execute_activity(
            SPLIT_SNAPSHOT,
            SplitSnapshotRequest(digest=header.clusters_digest, boundaries=boundaries, size=size),
            result_type=SplitSnapshotResult,
            start_to_close_timeout=SNAPSHOT_TIMEOUT,
            retry_policy=SNAPSHOT_RETRY,
        )
    except ActivityError as err:
        workflow.logger.warning(
            "bundle %s: snapshot %d not cut into shards' parts: %s",
            bundle,
            header.version,
            one_line(str(err.cause or err)),
        )
        return None
    return result
