"""The messages and state of ``workflows/gitrepo.py``, in a module of their own.

The workflow sandbox re-runs a workflow's module for every new workflow run, and building
pydantic models is most of that cost; this module is imported once, passed through.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from activities.gitops_models import BundleRef
from flotilla.models import GitRepoSpec
from flotilla.notifications import NotificationEvent
from flotilla.pins import Pin, ReadyVersion
from flotilla.status import BundleLine, BundleReport, BundleState, Condition, RepoState
from workflows.registry_models import ClusterSnapshot

# What clients call the GitRepo workflow and its messages; workflows/gitrepo.py registers
# them under these names.
GITREPO_WORKFLOW = "GitRepoWorkflow"
UPDATE_SPEC_UPDATE = "update_spec"
SYNC_NOW_UPDATE = "sync_now"
DELETE_UPDATE = "delete"
# Pin a version (rollback) or lift a pin: flotilla rollback gitrepo|bundle.
ROLLBACK_UPDATE = "rollback"
GITREPO_STATUS_QUERY = "status"
# The spec as applied (secret names, never secrets): `flotilla diff` plans with it.
GITREPO_SPEC_QUERY = "spec"


class GitRepoState(BaseModel):
    """All of a GitRepo workflow, handed whole to continue-as-new."""

    namespace: str
    name: str
    spec: GitRepoSpec
    # The GitRepo's metadata labels (Alerts select GitRepos by them).
    labels: dict[str, str] = Field(default_factory=dict)
    commit: str = ""
    fetched_commit: str = ""
    bundles: dict[str, BundleRef] = Field(default_factory=dict)
    reports: dict[str, BundleReport] = Field(default_factory=dict)
    # When each bundle's reported state last changed (``describe gitrepo``'s SINCE).
    bundle_since: dict[str, datetime] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    error: str = ""
    # When ``error`` first appeared (it stays while polls keep failing), for "since".
    error_since: datetime | None = None
    # What the last fetch read (repository, revision, paths): a new one fetches again even at
    # the same commit, so a paths change is read (and shows its error) at once.
    fetched_source: str = ""
    # Ready and GitPolling with their transition times, as last published.
    conditions: list[Condition] = Field(default_factory=list)
    clusters: ClusterSnapshot | None = None
    subscribed: bool = False
    # What the bundle workflows were last told, so an unchanged poll signals nobody.
    synced_key: str = ""
    # Bundles told to retire and not yet confirmed gone.
    retiring: list[str] = Field(default_factory=list)
    # Bundles whose new states are still to be forwarded to their dependents.
    forward: list[str] = Field(default_factory=list)
    polls: int = 0
    deleting: bool = False
    # Image-policy schedules: a digest of what they were last synced for, whether any may
    # exist (so repos without imageScans never call the activity), the poll of the last
    # failed sync (retried at the next poll, not on every wake) and the sync's warnings.
    image_sync_key: str = ""
    image_schedules: bool = False
    image_sync_failed_poll: int = -1
    image_warnings: list[str] = Field(default_factory=list)
    # Events seen in bundle reports, not yet handed to the namespace's notification
    # workflow, and how many were ever made (each event's key is unique by it).
    notify_events: list[NotificationEvent] = Field(default_factory=list)
    notify_seq: int = 0
    # What the last ls-remote said besides the commit (SSH host keys not verified).
    git_warning: str = ""
    # Why a workspace restriction refuses this GitRepo (one line naming it and the field);
    # while set, nothing is fetched and no bundle is told anything new.
    restricted: str = ""
    # Version pins (flotilla.pins) by bundle name ("" for the whole GitRepo), the pinned
    # bundles' refs at their pinned commit, the versions seen Ready (for --previous and
    # autoRollback) by bundle name ("" for the whole GitRepo), the branch head the last poll
    # saw, bundles whose halted report asks for an automatic rollback not made yet, and why
    # one could not be made.
    pins: dict[str, Pin] = Field(default_factory=dict)
    pinned_refs: dict[str, BundleRef] = Field(default_factory=dict)
    ready_versions: dict[str, list[ReadyVersion]] = Field(default_factory=dict)
    head: str = ""
    auto_rollbacks: list[str] = Field(default_factory=list)
    rollback_warnings: list[str] = Field(default_factory=list)
    # Test switches: continue-as-new after this many events; passed on to bundle workflows.
    max_history_events: int | None = None
    bundle_max_history_events: int | None = None
    ready_watch_seconds: float | None = None
    cluster_schedule_to_start_seconds: float | None = None
    monitor_seconds: float | None = None
    retry_seconds: float | None = None
    # Test switch: the shard size of its bundles (flotilla.settings.DEFAULT_BUNDLE_SHARD_SIZE
    # when unset), so a test shards bundles of a few hundred clusters.
    bundle_shard_size: int | None = None
    # Test switch: the bytes one sync_bundles batch may carry (SYNC_BATCH_BYTES when unset).
    sync_batch_bytes: int | None = None


class UpdateSpecRequest(BaseModel):
    spec: GitRepoSpec
    # The GitRepo's metadata labels; None (older callers) keeps those it has.
    labels: dict[str, str] | None = None


class UpdateSpecResult(BaseModel):
    message: str


class SyncNowRequest(BaseModel):
    """Poll now instead of at the next interval."""


class SyncNowResult(BaseModel):
    commit: str
    error: str = ""


class RollbackRequest(BaseModel):
    """Pin the GitRepo (``bundle`` empty) or one bundle to ``to`` (a full or abbreviated
    commit of the branch) or to the previous Ready version, or lift the pin (``clear``)."""

    bundle: str = ""
    to: str = ""
    previous: bool = False
    clear: bool = False
    # A new commit on the branch lifts the pin (else only ``clear`` does).
    until_next_commit: bool = False
    user: str = ""
    reason: str = ""


class RollbackResult(BaseModel):
    message: str
    commit: str = ""


class DeleteRequest(BaseModel):
    """Retire every bundle (removing their deployments), then end the workflow."""


class DeleteResult(BaseModel):
    bundles: int


# Bundle deployments per status query page: ~90 bytes each as JSON, so ~450 kB a page.
DEPLOYMENTS_PAGE = 5000


class GitRepoStatusRequest(BaseModel):
    """Query input; a model so fields can be added later without breaking callers."""

    # Also list bundle deployments with their states (the worker's metrics ask for them), at
    # most DEPLOYMENTS_PAGE from ``deployments_offset`` in (bundle, cluster) order, so the
    # answer stays under Temporal's 2 MB payload limit at any fleet size: 50 bundles x 500
    # clusters listed at once was ~2.5 MB.
    deployments: bool = False
    deployments_offset: int = 0
    # A smaller page on request (never a larger one).
    deployments_limit: int = DEPLOYMENTS_PAGE


class DeploymentLine(BaseModel):
    """One bundle deployment as the GitRepo last heard of it."""

    bundle: str
    cluster: str
    commit: str
    state: BundleState


class GitRepoStatus(BaseModel):
    """Fleet's GitRepo status, plus each bundle's line."""

    namespace: str
    name: str
    repo: str
    branch: str
    commit: str
    ready_clusters: int
    desired_ready_clusters: int
    ready_bundle_deployments: str
    state: BundleState | RepoState
    message: str
    error: str
    bundles: list[BundleLine]
    warnings: list[str] = Field(default_factory=list)
    error_since: datetime | None = None
    conditions: list[Condition] = Field(default_factory=list)
    # Bundle deployments per state over every bundle (Fleet's GitRepo summary).
    deployment_counts: dict[str, int] = Field(default_factory=dict)
    # Only when asked for (GitRepoStatusRequest.deployments): one page of them, and how many
    # there are in all (a caller pages on while its offset is below the total).
    deployments: list[DeploymentLine] = Field(default_factory=list)
    deployments_total: int = 0
    # Version pins, one line each ("bundle NAME: pinned to ..." for a bundle's), and the
    # branch head the last poll saw (differs from ``commit`` while the GitRepo is pinned).
    pins: list[str] = Field(default_factory=list)
    head: str = ""
    # spec.branch as written (``branch`` above shows a pinned revision instead) and
    # spec.paths: the labels of Fleet's fleet_gitrepo_* metrics.
    spec_branch: str = ""
    paths: list[str] = Field(default_factory=list)
