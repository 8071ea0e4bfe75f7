"""The registry's cluster snapshot in the content store: stored by the registry, loaded by
bundles, cut into shards' parts for sharded bundles (flotilla.snapshots says why).

The snapshots last read or written are kept parsed in this process (a few, the newest), so
the 50 bundles of a namespace that load or split the same snapshot on one worker read and
parse it once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from temporalio import activity

from activities.content import ContentStore
from activities.failures import to_application_error
from activities.gitops_models import (
    LOAD_SNAPSHOT,
    SPLIT_SNAPSHOT,
    STORE_SNAPSHOT,
    LoadSnapshotRequest,
    SplitSnapshotRequest,
    SplitSnapshotResult,
    StoredSnapshot,
    StoreSnapshotRequest,
)
from flotilla.clusterstates import cluster_index
from flotilla.errors import FlotillaError
from flotilla.snapshots import ClusterSnapshot, apply_delta, encode_snapshot, snapshot_parts

# Parsed snapshots kept, by the size of their JSON: a 10,000-cluster snapshot is some 780 kB
# (about ten times that as Python objects), its shards' parts as much again.
CACHED_SNAPSHOT_BYTES = 4_000_000
# Split results kept (digests only: small).
CACHED_SPLITS = 64


def _names_key(snapshot: ClusterSnapshot) -> str:
    return cluster_index(c.name for c in snapshot.clusters).key


class SnapshotActivities:
    """Store, load and split snapshots, with a small per-process cache by digest."""

    def __init__(self, content: ContentStore) -> None:
        self.content = content
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[str, tuple[ClusterSnapshot, int]] = OrderedDict()
        self._cached_bytes = 0
        self._splits: OrderedDict[tuple[str, tuple[str, ...], int], SplitSnapshotResult] = (
            OrderedDict()
        )
        # How many loads the cache answered and how many read the store (for tests, benches).
        self.hits = 0
        self.reads = 0

    def _remember(self, digest: str, snapshot: ClusterSnapshot, size: int) -> None:
        with self._lock:
            if digest in self._snapshots:
                self._snapshots.move_to_end(digest)
                return
            self._snapshots[digest] = (snapshot, size)
            self._cached_bytes += size
            while self._cached_bytes > CACHED_SNAPSHOT_BYTES and len(self._snapshots) > 1:
                _, (_, dropped) = self._snapshots.popitem(last=False)
                self._cached_bytes -= dropped

    def _get(self, digest: str) -> ClusterSnapshot:
        with self._lock:
            cached = self._snapshots.get(digest)
            if cached is not None:
                self._snapshots.move_to_end(digest)
                self.hits += 1
                return cached[0]
            self.reads += 1
        data = self.content.get(digest)
        snapshot = ClusterSnapshot.model_validate_json(data)
        self._remember(digest, snapshot, len(data))
        return snapshot

    def _put(self, snapshot: ClusterSnapshot) -> StoredSnapshot:
        data = encode_snapshot(snapshot)
        digest = self.content.put(data)
        self._remember(digest, snapshot, len(data))
        return StoredSnapshot(
            digest=digest,
            stored_bytes=len(data),
            cluster_count=len(snapshot.clusters),
            clusters_key=_names_key(snapshot),
        )

    @activity.defn(name=STORE_SNAPSHOT)
    def store_snapshot(self, request: StoreSnapshotRequest) -> StoredSnapshot:
        """Store the snapshot a registry change describes; its digest names it."""
        delta = request.delta
        try:
            base = self._get(delta.base) if delta.base else None
            return self._put(apply_delta(base, delta))
        except FlotillaError as err:
            raise to_application_error(err) from None

    @activity.defn(name=LOAD_SNAPSHOT)
    def load_snapshot(self, request: LoadSnapshotRequest) -> ClusterSnapshot:
        """The stored snapshot (or shard's part) ``digest``."""
        try:
            return self._get(request.digest)
        except FlotillaError as err:
            raise to_application_error(err) from None

    @activity.defn(name=SPLIT_SNAPSHOT)
    def split_snapshot(self, request: SplitSnapshotRequest) -> SplitSnapshotResult:
        """Store each shard's part of a stored snapshot; their digests, in shard order."""
        key = (request.digest, tuple(request.boundaries), request.size)
        with self._lock:
            done = self._splits.get(key)
        if done is not None:
            return done
        try:
            whole = self._get(request.digest)
            boundaries, parts = snapshot_parts(whole, request.boundaries, request.size)
            stored = [self._put(part) for part in parts]
        except FlotillaError as err:
            raise to_application_error(err) from None
        result = SplitSnapshotResult(
            boundaries=boundaries, parts=stored, clusters_key=_names_key(whole)
        )
        with self._lock:
            self._splits[key] = result
            while len(self._splits) > CACHED_SPLITS:
                self._splits.popitem(last=False)
        return result
