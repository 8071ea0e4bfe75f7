"""The activities on a real Temporal worker: models survive the pydantic converter, sync
activities run on the thread pool and heartbeat within their heartbeat timeout."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.deploy import DeployActivities
from activities.deploy_models import (
    DeploymentStatus,
    DeployRequest,
    DeployResult,
    RemoveRequest,
    RemoveResult,
    WaitReadyRequest,
)
from flotilla.helmhistory import HistoryAction
from tests.activities.conftest import CLUSTER, CLUSTER_NAMESPACE, GITREPO, Engine, deployment, dump
from workflows.common import DEPLOY_HEARTBEAT

TIMEOUT = timedelta(minutes=2)
# The bundle workflow's own heartbeat timeout (10 s), which the activities' helper thread
# must keep however long a step takes.
HEARTBEAT = DEPLOY_HEARTBEAT
ONCE = RetryPolicy(maximum_attempts=1)


class Outcome(BaseModel):
    deployed: DeployResult
    status: DeploymentStatus
    removed: RemoveResult


@workflow.defn(sandboxed=False)
class DeployOnce:
    """Deploy, wait for Ready, then remove: the path a bundle workflow takes for one cluster."""

    @workflow.run
    async def run(self, request: DeployRequest) -> Outcome:
        deployed = await workflow.execute_activity_method(
            DeployActivities.deploy_bundle,
            request,
            start_to_close_timeout=TIMEOUT,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=ONCE,
        )
        status = await workflow.execute_activity_method(
            DeployActivities.wait_ready,
            WaitReadyRequest(
                gitrepo=request.gitrepo,
                bundle_name=request.bundle_name,
                cluster_namespace=request.cluster_namespace,
                cluster_name=request.cluster_name,
                deployment_id=request.deployment_id,
                options_digest=request.options_digest,
                release=deployed.release,
                timeout_seconds=60,
            ),
            start_to_close_timeout=TIMEOUT,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=ONCE,
        )
        removed = await workflow.execute_activity_method(
            DeployActivities.remove_deployment,
            RemoveRequest(
                gitrepo=request.gitrepo,
                bundle_name=request.bundle_name,
                cluster_namespace=request.cluster_namespace,
                cluster_name=request.cluster_name,
                release=deployed.release,
            ),
            start_to_close_timeout=TIMEOUT,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=ONCE,
        )
        return Outcome(deployed=deployed, status=status, removed=removed)


async def test_deploy_wait_remove_through_a_worker(
    engine: Engine, temporal_client: Client, task_queue: str
) -> None:
    bundle = engine.bundle({"web.yaml": dump(deployment("web"))})
    request = DeployRequest(
        gitrepo=GITREPO,
        bundle_name=bundle.name,
        cluster_namespace=CLUSTER_NAMESPACE,
        cluster_name=CLUSTER,
        deployment_id="v1",
        bundle_digest=engine.content.put_bundle(bundle),
        options_digest=engine.options_digest(bundle),
    )
    activities = engine.activities
    with ThreadPoolExecutor(max_workers=4) as pool:
        async with Worker(
            temporal_client,
            task_queue=task_queue,
            workflows=[DeployOnce],
            activities=[
                activities.deploy_bundle,
                activities.wait_ready,
                activities.remove_deployment,
            ],
            activity_executor=pool,
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            outcome = await temporal_client.execute_workflow(
                DeployOnce.run, request, id=f"deploy-{task_queue}", task_queue=task_queue
            )

    assert outcome.deployed.action is HistoryAction.INSTALL
    assert outcome.deployed.release.revision == 1
    assert outcome.status.ready and outcome.status.applied_deployment_id == "v1"
    assert outcome.removed.release_removed
    assert engine.releases() == []
