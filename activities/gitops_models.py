"""Names, requests and results of the GitOps activities: pydantic only, so workflows import them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from flotilla.ids import DEFAULT_NAMESPACE
from flotilla.models import GitRepoSpec, RolloutStrategy
from flotilla.snapshots import SnapshotDelta
from flotilla.targeting import GitRepoSwitches

# Activity names, as the worker registers them on the control queue (activities/gitops.py)
# and the GitRepo and bundle workflows call them.
LS_REMOTE = "ls_remote"
FETCH_BUNDLES = "fetch_bundles"
PLAN_BUNDLE = "plan_bundle"
SYNC_BUNDLES = "sync_bundles"
# The same, with fields every start's signal gets once per request (SyncBundlesRequest.shared):
# a name of its own, so that no worker from before the field takes the request and drops them.
SYNC_BUNDLES_SHARED = "sync_bundles_shared"
DOWNSTREAM_DIGEST = "downstream_digest"
# The registry's snapshot by digest (flotilla.snapshots, activities/snapshots.py).
STORE_SNAPSHOT = "store_snapshot"
LOAD_SNAPSHOT = "load_snapshot"
SPLIT_SNAPSHOT = "split_snapshot"


class GitSource(BaseModel):
    """Where to read from: the GitRepo's source fields and its credentials' secret name."""

    repo: str
    branch: str = "master"
    revision: str | None = None
    client_secret_name: str | None = None
    # The GitRepo's namespace: where ``client_secret_name`` lives (Fleet's rule).
    namespace: str = DEFAULT_NAMESPACE
    # Public CA certificates (base64 PEM) to trust for an https repo, and Fleet's opt-out.
    ca_bundle: str | None = None
    insecure_skip_tls_verify: bool = False
    # verifyCommits: the secret of trusted signing keys, in ``namespace``.
    verify_secret_name: str | None = None

    @classmethod
    def from_spec(cls, spec: GitRepoSpec, namespace: str) -> GitSource:
        return cls(
            namespace=namespace,
            repo=spec.repo,
            branch=spec.branch,
            revision=spec.revision,
            client_secret_name=spec.client_secret_name,
            ca_bundle=spec.ca_bundle,
            insecure_skip_tls_verify=spec.insecure_skip_tls_verify,
            verify_secret_name=spec.verify_commits.secret_name if spec.verify_commits else None,
        )


class LsRemoteRequest(BaseModel):
    source: GitSource


class LsRemoteResult(BaseModel):
    commit: str
    # Said in the GitRepo's status while it holds: SSH host keys not verified (opt-out).
    warning: str = ""


class FetchRequest(BaseModel):
    """Read the bundles of ``commit`` for the GitRepo ``namespace/gitrepo``."""

    namespace: str
    gitrepo: str
    source: GitSource
    commit: str
    paths: list[str] = Field(default_factory=lambda: ["."])
    # ``commit`` exactly, full or abbreviated, and only if the branch (or tag) has it: a
    # version pin. Never the branch head instead. Left out of the JSON when false.
    exact: bool = Field(default=False, exclude_if=lambda value: not value)


class DependencyRef(BaseModel):
    """A resolved dependsOn entry: the bundle waited for and the states that count as done."""

    bundle: str
    accepted_states: list[str] = Field(default_factory=lambda: ["Ready"])


class BundleRef(BaseModel):
    """A bundle as the GitRepo workflow sees it: a name, a content digest and its wiring."""

    name: str
    path: str
    digest: str
    labels: dict[str, str] = Field(default_factory=dict)
    depends_on: list[DependencyRef] = Field(default_factory=list)
    # One line when the bundle cannot deploy (bad fleet.yaml, dependsOn cycle or typo).
    error: str = ""
    # fleet.yaml has ``imageScans``: the GitRepo keeps image-policy schedules for it.
    image_scans: bool = False
    # Set when the GitRepo keeps this ref from an older commit because the current one cannot
    # be read (``error``): the commit the ref was read at, which the bundle still runs.
    commit: str = ""


class FetchResult(BaseModel):
    commit: str
    bundles: list[BundleRef] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class PlanCluster(BaseModel):
    """A cluster as the planner needs it (from the registry snapshot)."""

    name: str
    labels: dict[str, str] = Field(default_factory=dict)


class PlanRequest(BaseModel):
    namespace: str
    bundle: str
    bundle_digest: str
    switches: GitRepoSwitches
    clusters: list[PlanCluster]
    groups: list[dict[str, Any]] = Field(default_factory=list)


class PlannedTarget(BaseModel):
    """What one cluster gets: options stored by digest, and the deployment id naming both."""

    cluster: str
    options_digest: str
    deployment_id: str
    # What a later removal from this cluster must honour.
    keep_resources: bool = False
    delete_namespace: bool = False


class PlanResult(BaseModel):
    targets: list[PlannedTarget] = Field(default_factory=list)
    strategy: RolloutStrategy = Field(default_factory=RolloutStrategy)
    # One line per cluster whose options could not be computed (bad template, for example).
    errors: dict[str, str] = Field(default_factory=dict)
    paused: bool = False
    # The digest of the bundle's downstreamResources as planned ("" when it lists none): the
    # bundle workflow asks for it again (DOWNSTREAM_DIGEST) to see them change.
    downstream_digest: str = Field(default="", exclude_if=lambda value: not value)


class DownstreamDigestRequest(BaseModel):
    """The digest of a bundle's downstreamResources, read now from its workspace."""

    namespace: str
    bundle: str
    bundle_digest: str


class DownstreamDigestResult(BaseModel):
    digest: str = ""


class BundleStart(BaseModel):
    """Signal-with-start of one bundle workflow: its id, input and the signal to deliver."""

    workflow_id: str
    signal: str
    signal_arg: dict[str, Any]
    start_input: dict[str, Any]
    static_summary: str = ""


class SyncBundlesRequest(BaseModel):
    workflow: str
    task_queue: str
    starts: list[BundleStart]
    # Fields added to every start's signal argument (SYNC_BUNDLES_SHARED only): the cluster
    # snapshot, carried once per batch instead of once per bundle.
    shared: dict[str, Any] = Field(default_factory=dict)


class SyncBundlesResult(BaseModel):
    signalled: int


class StoreSnapshotRequest(BaseModel):
    """Store the snapshot ``delta`` describes (a change of one stored before)."""

    delta: SnapshotDelta


class StoredSnapshot(BaseModel):
    """A snapshot (or a shard's part of one) in the content store."""

    digest: str
    stored_bytes: int
    cluster_count: int
    # The key of its sorted cluster names (flotilla.clusterstates.cluster_index): what
    # states packed against this list name, so a workflow without the names can join and
    # cut them by position. Empty from workers before it was added.
    clusters_key: str = ""


class LoadSnapshotRequest(BaseModel):
    digest: str


class SplitSnapshotRequest(BaseModel):
    """Cut the stored snapshot ``digest`` into shards' parts and store each: by
    ``boundaries``, or, when there are none yet, by names every ``size``."""

    digest: str
    boundaries: list[str] = Field(default_factory=list)
    size: int


class SplitSnapshotResult(BaseModel):
    boundaries: list[str]
    parts: list[StoredSnapshot]
    # The key of the whole snapshot's sorted names (empty from workers before it was added):
    # with each part's key and count, what a sharded bundle joins its shards' packed states
    # against, as part k is the k-th consecutive range of those names.
    clusters_key: str = ""
