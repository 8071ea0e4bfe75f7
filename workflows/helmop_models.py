"""The messages and state of ``workflows/helmop.py``, in a module of their own.

The workflow sandbox re-runs a workflow's module for every new workflow run, and building
pydantic models is most of that cost; this module is imported once, passed through.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from flotilla.models import HelmOpSpec
from flotilla.status import BundleLine, BundleReport, BundleState, Condition, RepoState
from workflows.registry_models import ClusterSnapshot

# What clients call the HelmOp workflow and its messages; workflows/helmop.py registers them
# under these names.
HELMOP_WORKFLOW = "HelmOpWorkflow"
HELMOP_UPDATE_SPEC_UPDATE = "update_spec"
HELMOP_SYNC_NOW_UPDATE = "sync_now"
HELMOP_DELETE_UPDATE = "delete"
HELMOP_STATUS_QUERY = "status"
HELMOP_SPEC_QUERY = "spec"
CHART_POLLED_SIGNAL = "chart_polled"


class HelmOpState(BaseModel):
    """All of a HelmOp workflow, handed whole to continue-as-new."""

    namespace: str
    name: str
    spec: HelmOpSpec
    # The version chosen last, the digest of its bundle, and when that version was first
    # seen (a poll that finds it again leaves it alone).
    version: str = ""
    digest: str = ""
    version_seen_at: datetime | None = None
    # The spec that version was chosen for: the bundle follows it, so a spec whose chart
    # cannot be resolved changes nothing deployed (not even targets or values).
    resolved_spec: HelmOpSpec | None = None
    # When the chart source last answered (or failed to).
    polled_at: datetime | None = None
    error: str = ""
    error_since: datetime | None = None
    report: BundleReport | None = None
    conditions: list[Condition] = Field(default_factory=list)
    clusters: ClusterSnapshot | None = None
    subscribed: bool = False
    # What the bundle workflow and the schedule were last told, so nothing is sent twice.
    synced_key: str = ""
    schedule_key: str = ""
    # The states of the bundles dependsOn names, as last forwarded to the bundle.
    dependency_states: dict[str, dict[str, BundleState]] = Field(default_factory=dict)
    # dependsOn selectors: the bundles each selected when last asked (by selector, in order),
    # for which spec (its key), and why the bundle cannot be told yet (a selector that
    # selects nothing).
    selected: list[list[str]] = Field(default_factory=list)
    selected_for: str = ""
    selection_error: str = ""
    # Resolutions asked for and done (a sync_now waits for the next one).
    resolves: int = 0
    deleting: bool = False
    # Test switches: continue-as-new after this many events; passed on to the bundle.
    max_history_events: int | None = None
    retry_seconds: float | None = None
    monitor_seconds: float | None = None


class ChartPolled(BaseModel):
    """What one scheduled poll found: a version and its bundle's digest, or the error."""

    version: str = ""
    digest: str = ""
    error: str = ""
    # sha256 of the spec the poll asked about (``workflows.helmop.spec_key``).
    spec_key: str = ""


class HelmOpUpdateRequest(BaseModel):
    spec: HelmOpSpec


class HelmOpUpdateResult(BaseModel):
    message: str


class HelmOpSyncRequest(BaseModel):
    """Ask the chart source now instead of at the next poll."""


class HelmOpSyncResult(BaseModel):
    version: str
    error: str = ""


class HelmOpDeleteRequest(BaseModel):
    """Retire the bundle (removing its deployments) and the schedule, then end."""


class HelmOpDeleteResult(BaseModel):
    message: str


class HelmOpStatusRequest(BaseModel):
    """Query input; a model so fields can be added later without breaking callers."""


class HelmOpStatus(BaseModel):
    """Fleet's HelmOp status (``version``), flotilla's lines about it."""

    namespace: str
    name: str
    repo: str
    chart: str
    wanted: str
    version: str
    version_seen_at: datetime | None = None
    polled_at: datetime | None = None
    polling_interval: str = ""
    ready_clusters: int
    desired_ready_clusters: int
    ready_bundle_deployments: str
    state: BundleState | RepoState
    message: str
    error: str = ""
    error_since: datetime | None = None
    bundles: list[BundleLine] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
