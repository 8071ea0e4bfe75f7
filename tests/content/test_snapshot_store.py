"""The snapshot activities on a real file content store: store by delta, load, split, cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.content import FileContentStore
from activities.gitops_models import LoadSnapshotRequest, SplitSnapshotRequest, StoreSnapshotRequest
from activities.snapshots import SnapshotActivities
from flotilla.clusterstates import cluster_index
from flotilla.errors import CONTENT_MISSING
from flotilla.snapshots import ClusterSnapshot, ClusterView, snapshot_delta


def fleet(version: int, count: int, *, relabel: str = "") -> ClusterSnapshot:
    return ClusterSnapshot(
        namespace="ns",
        version=version,
        clusters=[
            ClusterView(
                name=f"c{i:04d}", labels={"env": "canary" if f"c{i:04d}" == relabel else "prod"}
            )
            for i in range(count)
        ],
    )


def test_a_change_is_stored_from_its_delta_and_loads_back(tmp_path: Path) -> None:
    store = FileContentStore(tmp_path / "content")
    activities = SnapshotActivities(store)
    first = fleet(1, 300)
    stored = activities.store_snapshot(StoreSnapshotRequest(delta=snapshot_delta(None, "", first)))
    assert stored.cluster_count == 300 and store.has(stored.digest)

    second = fleet(2, 300, relabel="c0100")
    delta = snapshot_delta(first, stored.digest, second)
    assert len(delta.model_dump_json()) < 1_000  # one cluster, not 300
    again = activities.store_snapshot(StoreSnapshotRequest(delta=delta))
    assert again.digest != stored.digest

    # Another process (no cache) reads the same snapshot from the store.
    fresh = SnapshotActivities(store)
    loaded = fresh.load_snapshot(LoadSnapshotRequest(digest=again.digest))
    assert loaded.clusters == second.clusters
    assert (fresh.reads, fresh.hits) == (1, 0)
    for _ in range(50):  # 50 bundles on one worker: read once
        fresh.load_snapshot(LoadSnapshotRequest(digest=again.digest))
    assert (fresh.reads, fresh.hits) == (1, 50)


def test_split_stores_each_part_and_only_the_changed_part_gets_a_new_digest(
    tmp_path: Path,
) -> None:
    store = FileContentStore(tmp_path / "content")
    activities = SnapshotActivities(store)
    first = activities.store_snapshot(
        StoreSnapshotRequest(delta=snapshot_delta(None, "", fleet(1, 120)))
    )
    split = activities.split_snapshot(SplitSnapshotRequest(digest=first.digest, size=50))
    assert [p.cluster_count for p in split.parts] == [50, 50, 20]
    second = activities.store_snapshot(
        StoreSnapshotRequest(delta=snapshot_delta(None, "", fleet(2, 120, relabel="c0060")))
    )
    resplit = activities.split_snapshot(
        SplitSnapshotRequest(digest=second.digest, boundaries=split.boundaries, size=50)
    )
    assert [a.digest == b.digest for a, b in zip(split.parts, resplit.parts, strict=True)] == [
        True,
        False,
        True,
    ]
    part = SnapshotActivities(store).load_snapshot(
        LoadSnapshotRequest(digest=resplit.parts[1].digest)
    )
    assert [c.name for c in part.clusters] == [f"c{i:04d}" for i in range(50, 100)]


def test_split_and_store_name_the_keys_packed_states_are_joined_against(tmp_path: Path) -> None:
    """What a sharded bundle on a stored snapshot needs to join its shards' packed states
    without a name: the whole list's key (as the store's header names it, for the GitRepo)
    and each part's key and size, part k being the k-th consecutive range of sorted names."""
    activities = SnapshotActivities(FileContentStore(tmp_path / "content"))
    snapshot = fleet(1, 120)
    names = [c.name for c in reversed(snapshot.clusters)]  # the key is of the sorted names
    stored = activities.store_snapshot(
        StoreSnapshotRequest(delta=snapshot_delta(None, "", snapshot))
    )
    assert stored.clusters_key == cluster_index(names).key
    split = activities.split_snapshot(SplitSnapshotRequest(digest=stored.digest, size=50))
    assert split.clusters_key == stored.clusters_key
    ordered = sorted(names)
    assert [p.clusters_key for p in split.parts] == [
        cluster_index(ordered[i : i + 50]).key for i in (0, 50, 100)
    ]
    assert [p.cluster_count for p in split.parts] == [50, 50, 20]


def test_a_missing_snapshot_is_a_one_line_permanent_error(tmp_path: Path) -> None:
    activities = SnapshotActivities(FileContentStore(tmp_path / "content"))
    with pytest.raises(ApplicationError) as caught:
        activities.load_snapshot(LoadSnapshotRequest(digest="0" * 64))
    assert caught.value.type == CONTENT_MISSING
    assert caught.value.non_retryable
    assert "\n" not in str(caught.value) and "0" * 64 in str(caught.value)
