"""The registry's cluster snapshot, and the pieces that let a big one travel by digest.

Every registry change reaches subscribers (GitRepo and HelmOp workflows, then bundles and
their shards) as a ``ClusterSnapshot``. At 10,000 clusters its JSON is about 780 kB: over
Temporal's 512 kB payload warning for one signal, and 50 bundles of a GitRepo could not share
one 2 MB batch. Above ``INLINE_SNAPSHOT_LIMIT`` the registry stores it in the content store
instead and sends a *header*: the same model with ``clusters`` empty and ``clusters_digest``
naming the stored whole. Only what needs the clusters loads them: a bundle loads its part,
a sharded bundle has its shards' parts cut and stored (``split_snapshot``).

To keep the registry's own history small as well, what it hands the store on a change is a
``SnapshotDelta`` against the snapshot it stored before (``snapshot_delta``,
``apply_delta``): the clusters that changed or left, and the small rest whole.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from flotilla.models import ClusterGroup, GitRepoRestriction, Policy, Schedule
from flotilla.shards import shard_boundaries, shard_of

# Snapshots whose JSON is larger travel by digest (the registry's default; a test switch of
# its state lowers it). 256 kB is half the SDK's payload warning: at about 80 bytes a cluster
# (name and a few labels) that is some 3,000 clusters, where every bundle is sharded already
# (flotilla.settings.DEFAULT_BUNDLE_SHARD_SIZE) and loads at most its shard's part.
INLINE_SNAPSHOT_LIMIT = 256_000


class ClusterView(BaseModel):
    """A cluster as subscribers see it: no credentials, only what targeting and routing read,
    and whether it answers (not part of targeting: it changes no registry version)."""

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    paused: bool = False
    # Agent mode: deploys go to the cluster's own queue (flotilla.ids.deploy_task_queue). Left
    # out of the JSON when false, so push-mode snapshots compare as older histories computed.
    agent: bool = Field(default=False, exclude_if=lambda value: not value)
    offline: str = ""


class ClusterSnapshot(BaseModel):
    """What subscribers get on every change: numbered so stale deliveries are ignored."""

    namespace: str
    version: int = 0
    clusters: list[ClusterView] = Field(default_factory=list)
    groups: list[ClusterGroup] = Field(default_factory=list)
    # The workspace's restrictions, which GitRepo workflows enforce. Left out of the JSON when
    # empty, so snapshots of workspaces without any compare as older histories computed.
    policies: list[Policy] = Field(default_factory=list, exclude_if=lambda value: not value)
    restrictions: list[GitRepoRestriction] = Field(
        default_factory=list, exclude_if=lambda value: not value
    )
    # The namespace has a notification config: GitRepos signal their events only then (left
    # out of the JSON when false, as above).
    notifications: bool = Field(default=False, exclude_if=lambda value: not value)
    # The workspace's deployment windows (Fleet's Schedules), which bundle workflows honour.
    # Left out of the JSON when empty, as the restrictions are.
    schedules: list[Schedule] = Field(default_factory=list, exclude_if=lambda value: not value)
    # Set when the clusters travel by digest: the content-store digest of the whole snapshot
    # (of this one's part, for a shard), how many clusters it holds and its size in bytes.
    # ``clusters`` is empty until a receiver loads them (it keeps the digest: it then knows
    # the list came from the store). Left out of the JSON when unset, as above.
    clusters_digest: str = Field(default="", exclude_if=lambda value: not value)
    cluster_count: int = Field(default=0, exclude_if=lambda value: not value)
    stored_bytes: int = Field(default=0, exclude_if=lambda value: not value)
    # With the digest: the key of the stored clusters' sorted names (flotilla.clusterstates),
    # which states packed against that list name, so a GitRepo that never loads the list
    # reads them by position. Left out of the JSON when unset (older registries), as above.
    clusters_key: str = Field(default="", exclude_if=lambda value: not value)

    @property
    def by_digest(self) -> bool:
        """The clusters are in the content store, not (yet) here (a shard's part with no
        clusters has nothing to load)."""
        return bool(self.clusters_digest) and not self.clusters and self.cluster_count > 0

    @property
    def size(self) -> int:
        """How many clusters the snapshot holds, wherever they are."""
        return self.cluster_count if self.by_digest else len(self.clusters)


# The fewest bytes one cluster takes in a snapshot's JSON (an empty name, no labels).
_MIN_CLUSTER_BYTES = 50


def too_big_inline(snapshot: ClusterSnapshot, limit: int) -> bool:
    """Whether ``snapshot``'s JSON is larger than ``limit`` bytes. A fleet whose clusters alone
    must pass the limit is not serialized to find out: at 10,000 clusters that took the
    registry's workflow task over the SDK's two-second deadlock limit on a loaded machine."""
    if len(snapshot.clusters) * _MIN_CLUSTER_BYTES > limit:
        return True
    return len(snapshot.model_dump_json()) > limit


class SnapshotDelta(BaseModel):
    """A new snapshot as the change from one stored before (``base``, "" for none): every
    field but the clusters whole (``header``), the clusters that are new or changed, the names
    of those that left."""

    base: str = ""
    header: ClusterSnapshot
    changed: list[ClusterView] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)


def encode_snapshot(snapshot: ClusterSnapshot) -> bytes:
    """The stored form: the snapshot's JSON without the by-digest fields (so equal snapshots
    have equal digests, whatever version or route they came by)."""
    plain = snapshot.model_copy(
        update={"clusters_digest": "", "cluster_count": 0, "stored_bytes": 0, "clusters_key": ""}
    )
    return plain.model_dump_json().encode()


def snapshot_header(
    snapshot: ClusterSnapshot, digest: str, stored_bytes: int, clusters_key: str = ""
) -> ClusterSnapshot:
    """What travels instead of ``snapshot`` once it is stored under ``digest``."""
    return snapshot.model_copy(
        update={
            "clusters": [],
            "clusters_digest": digest,
            "cluster_count": len(snapshot.clusters),
            "stored_bytes": stored_bytes,
            "clusters_key": clusters_key,
        }
    )


def snapshot_delta(
    before: ClusterSnapshot | None, base: str, after: ClusterSnapshot
) -> SnapshotDelta:
    """``after`` as a change from ``before`` stored under ``base`` (everything when there is
    no ``before``)."""
    header = after.model_copy(update={"clusters": []})
    if before is None or not base:
        return SnapshotDelta(header=header, changed=list(after.clusters))
    old = {c.name: c for c in before.clusters}
    new = {c.name: c for c in after.clusters}
    return SnapshotDelta(
        base=base,
        header=header,
        changed=[c for c in after.clusters if old.get(c.name) != c],
        removed=sorted(set(old) - set(new)),
    )


def apply_delta(base: ClusterSnapshot | None, delta: SnapshotDelta) -> ClusterSnapshot:
    """The snapshot ``delta`` describes, given the one it is a change of (sorted by name)."""
    clusters = {c.name: c for c in (base.clusters if base is not None else [])}
    for name in delta.removed:
        clusters.pop(name, None)
    for view in delta.changed:
        clusters[view.name] = view
    return delta.header.model_copy(
        update={"clusters": [clusters[n] for n in sorted(clusters)], "clusters_digest": ""}
    )


def snapshot_parts(
    snapshot: ClusterSnapshot, boundaries: list[str], size: int
) -> tuple[list[str], list[ClusterSnapshot]]:
    """The shards' parts of ``snapshot``: each the snapshot with the clusters of one name
    range (the ranges cut from its names every ``size`` when ``boundaries`` is empty), and
    the boundaries used. A part's version is 0, so an unchanged part stores under the same
    digest whatever the registry's version."""
    if not boundaries:
        boundaries = shard_boundaries((c.name for c in snapshot.clusters), size)
    parts: list[list[ClusterView]] = [[] for _ in boundaries]
    for view in snapshot.clusters:
        parts[shard_of(view.name, boundaries)].append(view)
    return boundaries, [
        snapshot.model_copy(update={"clusters": views, "version": 0, "clusters_digest": ""})
        for views in parts
    ]
