"""Names, requests and results of the HelmOp activities: pydantic only, so workflows import them."""

from __future__ import annotations

from pydantic import BaseModel, Field

from flotilla.models import HelmOpSpec, LabelSelector

# Activity names, as the worker registers them (activities/helmops.py) and the HelmOp
# workflows call them.
RESOLVE_HELMOP = "resolve_helmop"
SYNC_HELMOP_SCHEDULE = "sync_helmop_schedule"
BUNDLE_STATES = "bundle_states"
SELECT_BUNDLES = "select_bundles"
# The workflow a HelmOp's schedule starts for each poll (workflows/helmop.py).
HELMOP_POLL_WORKFLOW = "HelmOpPollWorkflow"


class ResolveRequest(BaseModel):
    """Choose the chart version of the HelmOp ``namespace/name`` and store its bundle."""

    namespace: str
    name: str
    spec: HelmOpSpec


class ResolveResult(BaseModel):
    """The version chosen and the digest of the bundle it became."""

    version: str
    digest: str


class HelmOpPollInput(BaseModel):
    """What a HelmOp's schedule hands each poll: the HelmOp, and whom to tell."""

    namespace: str
    name: str
    spec: HelmOpSpec
    helmop_workflow_id: str


class SyncScheduleRequest(BaseModel):
    """Create, update or (``interval_seconds`` 0) delete the HelmOp's polling schedule."""

    schedule_id: str
    poll: HelmOpPollInput
    interval_seconds: float
    paused: bool = False
    task_queue: str


class SyncScheduleResult(BaseModel):
    outcome: str


class BundleStatesRequest(BaseModel):
    """The per-cluster states of these bundles of ``namespace`` (a HelmOp's dependsOn)."""

    namespace: str
    bundles: list[str]


class BundleStatesResult(BaseModel):
    # By bundle, then cluster: the state's name. A bundle not running is left out.
    states: dict[str, dict[str, str]] = Field(default_factory=dict)


class SelectBundlesRequest(BaseModel):
    """The running bundles of ``namespace`` each selector selects by their labels, except
    ``exclude`` (the asking HelmOp's own bundle)."""

    namespace: str
    selectors: list[LabelSelector]
    exclude: str = ""


class SelectBundlesResult(BaseModel):
    # Per selector, in order: the names of the bundles it selects, sorted.
    selected: list[list[str]] = Field(default_factory=list)
