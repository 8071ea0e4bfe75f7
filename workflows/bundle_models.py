"""The messages and state of ``workflows/bundle.py``, in a module of their own.

The workflow sandbox re-runs a workflow's module for every new workflow run, and building
pydantic models is most of that cost; this module is imported once, passed through.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from activities.deploy_models import ReleaseRef
from activities.gitops_models import DependencyRef, PlannedTarget
from flotilla.bundledeployment import DeploymentRecord as _DeploymentRecord
from flotilla.credentials import RenderSecretRefs
from flotilla.gates import GateRecord, GateStatus
from flotilla.models import RolloutStrategy
from flotilla.shards import PartitionCounts
from flotilla.status import BundleState, Condition, NonReadyEntry, RepoState, StateSince
from flotilla.targeting import GitRepoSwitches
from workflows.common import MAX_PENDING_ACTIVITIES, MONITOR_INTERVAL
from workflows.registry_models import ClusterSnapshot

# How long one wait_ready call watches before the workflow records NotReady and re-arms it.
READY_WATCH_SECONDS = 600.0

# What clients call the bundle workflow's messages; workflows/bundle.py registers them under
# these names.
BUNDLE_STATUS_QUERY = "status"
PAUSE_SIGNAL = "pause"
APPROVE_ROLLOUT_UPDATE = "approve_rollout"


class BundleSpec(BaseModel):
    """What the GitRepo workflow hands a bundle for one commit: digests and wiring only."""

    gitrepo: str
    commit: str
    bundle_digest: str
    labels: dict[str, str] = Field(default_factory=dict)
    depends_on: list[DependencyRef] = Field(default_factory=list)
    switches: GitRepoSwitches = Field(default_factory=GitRepoSwitches)
    gitrepo_paused: bool = False
    # The GitRepo's Helm credential settings, for the deploys. Left out of the JSON when
    # absent: the GitRepo workflow compares specs by their JSON, and that of a GitRepo
    # without them must stay what older histories computed.
    render_secrets: RenderSecretRefs | None = Field(
        default=None, exclude_if=lambda value: value is None
    )
    # The workflow that owns the bundle when it is not ``gitrepo/<ns>/<gitrepo>`` (a HelmOp's
    # ``helmop/<ns>/<name>``); left out of the JSON when absent, as above.
    owner_workflow_id: str | None = Field(default=None, exclude_if=lambda value: value is None)
    # The version pin that holds this bundle at ``commit`` (flotilla.pins.pin_line), shown by
    # the bundle's status; left out of the JSON when there is none, as above.
    pin: str = Field(default="", exclude_if=lambda value: not value)
    # Why the GitRepo's newest commit could not be read for this bundle (a broken fleet.yaml,
    # a bad dependsOn), with that commit: the bundle runs ``commit``, its last good read, and
    # its status says ErrApplied with this. Status only: nothing is planned or deployed from
    # it, and a sharded bundle never sends it to its shards. Left out of the JSON when empty.
    source_error: str = Field(default="", exclude_if=lambda value: not value)


# The bundle on one cluster, with its Helm release (the record and its transitions are core).
DeploymentRecord = _DeploymentRecord[ReleaseRef]


class BundleWorkflowState(BaseModel):
    """All of a bundle workflow, handed whole to continue-as-new."""

    namespace: str
    bundle: str
    gitrepo_workflow_id: str
    spec: BundleSpec | None = None
    clusters: ClusterSnapshot | None = None
    plan_key: str = ""
    strategy: RolloutStrategy = Field(default_factory=RolloutStrategy)
    fleet_paused: bool = False
    targets: dict[str, PlannedTarget] = Field(default_factory=dict)
    plan_errors: dict[str, str] = Field(default_factory=dict)
    deployments: dict[str, DeploymentRecord] = Field(default_factory=dict)
    dependency_states: dict[str, dict[str, BundleState]] = Field(default_factory=dict)
    # The commit each dependency's states are of ("" when the sender did not say: before
    # dependsOn held on upgrades). A state of another commit is an older version's.
    dependency_commits: dict[str, str] = Field(default_factory=dict)
    paused: bool = False
    retiring: bool = False
    # The gates of the version being rolled out (approvals, soaks; flotilla.gates).
    gates: GateRecord = Field(default_factory=GateRecord)
    last_report: str = ""
    last_report_at: datetime | None = None
    # The bundle's Ready condition with its transition time (one entry: small at any size).
    conditions: list[Condition] = Field(default_factory=list)
    # Each deployment's state and when it took it, as of the last report's states.
    since: dict[str, StateSince] = Field(default_factory=dict)
    # Test switches: continue-as-new after this many events; watch readiness this long.
    max_history_events: int | None = None
    ready_watch_seconds: float = READY_WATCH_SECONDS
    cluster_schedule_to_start_seconds: float | None = None
    monitor_seconds: float = MONITOR_INTERVAL.total_seconds()
    next_monitor_at: datetime | None = None
    # Test switches: retry failed or NotReady deployments after this many seconds instead of
    # flotilla.bundledeployment.RETRY_DELAY; keep at most this many activities pending.
    retry_seconds: float | None = None
    max_pending_activities: int = MAX_PENDING_ACTIVITIES
    # downstreamResources: the digest of their content the last plan used ("" when the bundle
    # lists none), and when to read it again.
    downstream_digest: str = ""
    next_downstream_at: datetime | None = None
    # States of a bundle this one depends on, packed against a cluster list this run could
    # not read yet (flotilla.clusterstates; its snapshot lags the GitRepo's) or, in a sharded
    # bundle, not yet handed to its shards. Left out of the JSON when empty.
    dependency_packed: dict[str, DependencyStates] = Field(
        default_factory=dict, exclude_if=lambda value: not value
    )
    # Sharding (docs/orchestration.md, "Shards"); each left out of the JSON when unset, so
    # the state of bundles that never sharded is what it always was. ``shard_size``: a test
    # switch (None: flotilla.settings.DEFAULT_BUNDLE_SHARD_SIZE); ``shard``: set in a shard
    # workflow; ``shards``: set in a bundle that drives shards.
    shard_size: int | None = Field(default=None, exclude_if=lambda value: value is None)
    # Test switch: continue as new past this many history bytes (None:
    # workflows.common.CONTINUE_AS_NEW_BYTES); left out of the JSON when unset.
    max_history_bytes: int | None = Field(default=None, exclude_if=lambda value: value is None)
    shard: ShardRole | None = Field(default=None, exclude_if=lambda value: value is None)
    shards: ShardBook | None = Field(default=None, exclude_if=lambda value: value is None)


class ShardGrant(BaseModel):
    """What a bundle tells one shard about the rollout (numbered: the shard says which one
    it acts on): where its targets sit in the bundle's name order, the partitions reached
    and its share of each maxUnavailable (``flotilla.rollout.ShardView``)."""

    seq: int = 0
    offset: int = 0
    total: int = 0
    reached: list[str] = Field(default_factory=list)
    budgets: dict[str, int] = Field(default_factory=dict)
    # Partitions a gate of the bundle keeps from starting, and why (flotilla.gates); left
    # out of the JSON when none.
    closed: dict[str, str] = Field(default_factory=dict, exclude_if=lambda value: not value)


class ShardRole(BaseModel):
    """A shard workflow's place: its bundle's workflow, its index and the latest grant."""

    parent_workflow_id: str
    index: int
    grant: ShardGrant = Field(default_factory=ShardGrant)
    # The partition counts of the last report sent to the bundle (None: none yet), kept
    # across continue-as-new: a run that started without them could not tell that a
    # reached partition had just drained, so its report waited out REPORT_GAP.
    sent_counts: list[PartitionCounts] | None = Field(
        default=None, exclude_if=lambda value: value is None
    )


class ShardReport(BaseModel):
    """What a shard tells its bundle: counts only, never a list of clusters."""

    index: int
    seq: int
    commit: str
    planned: bool
    targets: int
    partitions: list[PartitionCounts] = Field(default_factory=list)
    strategy: RolloutStrategy = Field(default_factory=RolloutStrategy)
    ready: int = 0
    desired: int = 0
    state: BundleState = BundleState.PENDING
    message: str = ""
    paused: bool = False
    retired: bool = False
    # Deployments per state and the first few not Ready (flotilla.status.reported_summary),
    # summed by the bundle into its report to the GitRepo; left out of the JSON when empty.
    counts: dict[str, int] = Field(default_factory=dict, exclude_if=lambda value: not value)
    non_ready: list[NonReadyEntry] = Field(default_factory=list, exclude_if=lambda value: not value)
    # Its per-cluster states packed against its part of the snapshot (``clusters_key`` of
    # that part; the sorted names of ``counts`` are the legend), and those on clusters outside
    # it: a few hundred bytes for a shard of 500. Left out of the JSON when empty.
    clusters_key: str = Field(default="", exclude_if=lambda value: not value)
    codes: str = Field(default="", exclude_if=lambda value: not value)
    states: dict[str, BundleState] = Field(default_factory=dict, exclude_if=lambda value: not value)


class ShardBook(BaseModel):
    """A sharded bundle's record of its shards: their name ranges, what each was sent and
    last said. Small at any fleet size: a few entries per shard."""

    size: int
    boundaries: list[str] = Field(default_factory=list)
    started: int = 0
    # Per shard: a digest of the cluster snapshot it was sent, the last grant sent, the
    # highest budgets sent since the one it confirmed, and its last report.
    sent_clusters: dict[int, str] = Field(default_factory=dict)
    sent_spec: str = ""
    grants: dict[int, ShardGrant] = Field(default_factory=dict)
    ceilings: dict[int, dict[str, int]] = Field(default_factory=dict)
    reports: dict[int, ShardReport] = Field(default_factory=dict)
    # The bundle's own pause, as last passed on to the shards.
    paused: bool = False
    summary: str = ""
    # The key of the snapshot's sorted names last handed out, and per shard the key and
    # size of its part: a shard's packed states join into the bundle's (and a dependency's
    # are cut into the shards') by position, with no cluster's name kept here.
    clusters_key: str = ""
    part_keys: dict[int, str] = Field(default_factory=dict)
    part_sizes: dict[int, int] = Field(default_factory=dict)


class BundleRefresh(BaseModel):
    """A new commit's spec and/or a new cluster snapshot (either may be left out)."""

    spec: BundleSpec | None = None
    clusters: ClusterSnapshot | None = None
    dependency_states: dict[str, dict[str, BundleState]] = Field(default_factory=dict)
    dependency_commits: dict[str, str] = Field(default_factory=dict)
    # From a sharded bundle to one of its shards (left out of the JSON otherwise).
    grant: ShardGrant | None = Field(default=None, exclude_if=lambda value: value is None)
    # From a sharded bundle to one of its shards: the states of the bundles it depends on,
    # on the shard's clusters, packed against its part (left out of the JSON when none).
    dependency_packed: list[DependencyStates] = Field(
        default_factory=list, exclude_if=lambda value: not value
    )


class DependencyStates(BaseModel):
    """The per-cluster states of one bundle this bundle depends on."""

    bundle: str
    states: dict[str, BundleState]
    # The commit the dependency reported these states at.
    commit: str = ""
    # The states packed against a cluster list (flotilla.clusterstates, as in a report:
    # ``states`` then holds only those on clusters outside it), so a dependency on 10,000
    # clusters travels in a few KB. Left out of the JSON when not packed.
    clusters_key: str = Field(default="", exclude_if=lambda value: not value)
    codes: str = Field(default="", exclude_if=lambda value: not value)
    counts: dict[str, int] = Field(default_factory=dict, exclude_if=lambda value: not value)


class PauseRequest(BaseModel):
    """Pause (or, with paused=False, resume) the rollout of new versions."""

    paused: bool = True


class ApproveRolloutRequest(BaseModel):
    """A person's decision on a partition's approval gate, for the version rolling out now."""

    partition: str
    approve: bool = True
    user: str
    reason: str = ""


class ApproveRolloutResult(BaseModel):
    message: str


class RetireRequest(BaseModel):
    reason: str = "bundle removed from its GitRepo"


class BundleStatusRequest(BaseModel):
    """Query input; a model so fields can be added later without breaking callers."""


class ClusterStatus(BaseModel):
    cluster: str
    state: BundleState
    message: str
    deployment_id: str
    applied: str
    release: str
    non_ready: list[str] = Field(default_factory=list)
    last_action: str = ""
    # When the deployment took ``state`` (None: not recorded yet, a change not reported yet).
    since: datetime | None = None


class BundleStatus(BaseModel):
    namespace: str
    bundle: str
    gitrepo: str
    commit: str
    paused: bool
    ready: int
    desired: int
    # Halted (a RepoState) when a gate halted the rollout of this version.
    state: BundleState | RepoState
    message: str
    summary: str
    clusters: list[ClusterStatus]
    errors: dict[str, str] = Field(default_factory=dict)
    conditions: list[Condition] = Field(default_factory=list)
    # Partitions with gates (approval, soak) and how each stands for the current version.
    gates: list[GateStatus] = Field(default_factory=list)
    # Why a gate halted the rollout of this version (a rejection, a passed deadline), or "".
    halted: str = ""
    # The bundle's labels (what a HelmOp's dependsOn selector selects on).
    labels: dict[str, str] = Field(default_factory=dict)
    # The version pin holding the bundle at ``commit`` (flotilla rollback), or "".
    pin: str = ""
    # Why the GitRepo's newest commit could not be read for this bundle, or "" (then the
    # state is ErrApplied with it; the clusters still run ``commit``).
    source_error: str = ""
    # A bundle rolled out in shards: how many shard workflows hold its clusters (``clusters``
    # is then empty; each shard's status lists its part). 0: the bundle lists them itself.
    shards: int = 0


BundleWorkflowState.model_rebuild()
