"""Names, requests and results of the deploy activities: pydantic only, so workflows import them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from flotilla.credentials import RenderSecretRefs
from flotilla.helmhistory import HistoryAction

# Activity names, as the worker registers them on each cluster's queue (activities/deploy.py)
# and the bundle workflow calls them.
DEPLOY_BUNDLE = "deploy_bundle"
CHECK_DEPLOYMENT = "check_deployment"
WAIT_READY = "wait_ready"
REMOVE_DEPLOYMENT = "remove_deployment"
# Several push-mode clusters' drift checks in one activity (the periodic sweep; only the
# shared push queues serve it: activities/pushqueue.py).
CHECK_DEPLOYMENTS = "check_deployments"


class ReleaseRef(BaseModel):
    """A Helm release on a cluster; ``revision`` is 0 when unknown or removed."""

    name: str
    namespace: str
    revision: int = 0


class DeploymentStatus(BaseModel):
    """The state inputs of ``flotilla.status.compute_state`` for one deployment."""

    release: ReleaseRef
    applied_deployment_id: str = ""
    ready: bool = False
    non_ready: list[str] = Field(default_factory=list)
    drift: list[str] = Field(default_factory=list)
    corrected: list[str] = Field(default_factory=list)
    # Helm's record of the release is gone or has no deployed revision: deploy again.
    record_missing: bool = False


class DeployRequest(BaseModel):
    """Deploy one bundle version to one cluster; content travels by digest only."""

    gitrepo: str
    bundle_name: str
    cluster_namespace: str
    cluster_name: str
    deployment_id: str
    bundle_digest: str
    options_digest: str
    previous_release: ReleaseRef | None = None
    # The GitRepo's secret names for private chart repositories and SOPS files (None in
    # requests from before they were sent: the cluster's namespace, no Helm credentials).
    render_secrets: RenderSecretRefs | None = None
    # After applying, watch readiness this long in the same activity (0: return at once).
    # Most releases turn Ready within seconds, and one activity instead of deploy + wait_ready
    # halves the workflow tasks and history events of a deployment.
    wait_ready_seconds: float = 0.0
    # Once Ready, check drift too (the bundle showed Modified): the status the deploy returns
    # is then the whole truth, and a deploy that restored the objects clears Modified.
    check_drift: bool = False
    # The end of the deployment window the deploy was released in (Fleet's Schedule): an
    # attempt that starts later applies nothing (WindowClosed). Left out of the JSON when
    # there is none, so requests without windows stay what older histories hold.
    not_after: datetime | None = Field(default=None, exclude_if=lambda value: value is None)


class DeployResult(BaseModel):
    """What the deploy did: the release now running, and how history was handled."""

    release: ReleaseRef
    deployment_id: str
    changed: bool
    action: HistoryAction
    reason: str
    recovered: bool = False
    # Readiness at the end of ``wait_ready_seconds``; None when it was not asked for.
    status: DeploymentStatus | None = None


class Applied(BaseModel):
    """A deploy's apply without its readiness wait (in-process only, never a payload): the
    result, and the manifest Helm applied, for the wait to watch (None: nothing applied, or
    the wait must compare with the release record, as a drift check asks)."""

    result: DeployResult
    manifest: str | None = None


class StatusRequest(BaseModel):
    """Look at one deployment on its cluster."""

    gitrepo: str
    bundle_name: str
    cluster_namespace: str
    cluster_name: str
    deployment_id: str
    options_digest: str
    release: ReleaseRef
    # False while drift correction backs off (a writer in a loop): the check only looks.
    correct: bool = True


class CheckBatchRequest(BaseModel):
    """One bundle's periodic drift checks on several push-mode clusters, one after another."""

    checks: list[StatusRequest]


class BatchedCheck(BaseModel):
    """One check of a batch: its status, or why it gave none (then the workflow checks that
    cluster again on its own, with the single check's retries and error reporting)."""

    cluster: str
    status: DeploymentStatus | None = None
    error: str = ""


class CheckBatchResult(BaseModel):
    """The batch's checks in request order; one cut short (cancelled) returns fewer."""

    checks: list[BatchedCheck] = Field(default_factory=list)


class WaitReadyRequest(StatusRequest):
    """Watch a deployment until it is Ready or ``timeout_seconds`` pass."""

    timeout_seconds: float = 600.0


class RemoveRequest(BaseModel):
    """Remove one deployment: its release and, when asked, its namespace."""

    gitrepo: str
    bundle_name: str
    cluster_namespace: str
    cluster_name: str
    release: ReleaseRef
    keep_resources: bool = False
    delete_namespace: bool = False


class RemoveResult(BaseModel):
    """What was removed; ``message`` says why a namespace was kept."""

    release_removed: bool
    resources_kept: bool
    namespace_deleted: bool = False
    message: str = ""
