"""The messages and state of ``workflows/bundle.py``, in a module of their own.

The workflow sandbox re-runs a workflow's module for every new workflow run, and building
pydantic models is most of that cost; this module is imported once, passed through.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from activities.deploy import ReleaseRef
from activities.gitops import DependencyRef, GitRepoSwitches, PlannedTarget
from flotilla.credentials import RenderSecretRefs
from flotilla.models import RolloutStrategy
from workflows.common import MONITOR_INTERVAL
from workflows.registry_models import ClusterSnapshot

# How long one wait_ready call watches before the workflow records NotReady and re-arms it.
READY_WATCH_SECONDS = 600.0


# Which history-shaping behaviour a run follows, carried in its input instead of patch
# markers (each marker costs two events in every run: the marker and a TemporalChangeVersion
# upsert). 1: what histories without the field did, with drift monitoring behind its patch.
# 2: drift monitoring always; deploy_bundle watches readiness for READY_GRACE_SECONDS itself
# (wait_ready follows only for a release still not Ready); reports in mid-rollout come at
# most every REPORT_INTERVAL (10 s, was 5 s), the first one too, and set Kind/Bundle.
# New runs get BUNDLE_PROTOCOL from the GitRepo, and continue-as-new moves older runs to it.
BUNDLE_PROTOCOL = 2


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


class DeploymentRecord(BaseModel):
    """The bundle on one cluster: what is staged, released to it, applied and how it is."""

    cluster: str
    staged: str = ""
    options_digest: str = ""
    released: str = ""
    released_options_digest: str = ""
    applied: str = ""
    release: ReleaseRef | None = None
    ready: bool = False
    non_ready: list[str] = Field(default_factory=list)
    error: str = ""
    retry_at: datetime | None = None
    keep_resources: bool = False
    delete_namespace: bool = False
    # What the last deploy did to the Helm release, and why (history recovery included).
    last_action: str = ""
    # Live objects that differ from the release (Modified), from the last drift check.
    drift: list[str] = Field(default_factory=list)


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
    dependency_states: dict[str, dict[str, str]] = Field(default_factory=dict)
    paused: bool = False
    retiring: bool = False
    last_report: str = ""
    last_report_at: datetime | None = None
    # Test switches: continue-as-new after this many events; watch readiness this long.
    max_history_events: int | None = None
    ready_watch_seconds: float = READY_WATCH_SECONDS
    cluster_schedule_to_start_seconds: float | None = None
    monitor_seconds: float = MONITOR_INTERVAL.total_seconds()
    next_monitor_at: datetime | None = None
    # See BUNDLE_PROTOCOL; 1 when absent, because the histories that lack it did that.
    protocol: int = 1


class BundleRefresh(BaseModel):
    """A new commit's spec and/or a new cluster snapshot (either may be left out)."""

    spec: BundleSpec | None = None
    clusters: ClusterSnapshot | None = None
    dependency_states: dict[str, dict[str, str]] = Field(default_factory=dict)


class DependencyStates(BaseModel):
    """The per-cluster states of one bundle this bundle depends on."""

    bundle: str
    states: dict[str, str]


class PauseRequest(BaseModel):
    """Pause (or, with paused=False, resume) the rollout of new versions."""

    paused: bool = True


class RetireRequest(BaseModel):
    reason: str = "bundle removed from its GitRepo"


class BundleReport(BaseModel):
    """What the GitRepo workflow aggregates: the summary and the per-cluster states."""

    bundle: str
    commit: str
    ready: int
    desired: int
    state: str
    message: str
    states: dict[str, str] = Field(default_factory=dict)
    retired: bool = False


class BundleStatusRequest(BaseModel):
    """Query input; a model so fields can be added later without breaking callers."""


class ClusterStatus(BaseModel):
    cluster: str
    state: str
    message: str
    deployment_id: str
    applied: str
    release: str
    non_ready: list[str] = Field(default_factory=list)
    last_action: str = ""


class BundleStatus(BaseModel):
    namespace: str
    bundle: str
    gitrepo: str
    commit: str
    paused: bool
    ready: int
    desired: int
    state: str
    message: str
    summary: str
    clusters: list[ClusterStatus]
    errors: dict[str, str] = Field(default_factory=dict)
