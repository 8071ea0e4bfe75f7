"""ClusterRegistryWorkflow on a real dev server: updates, validators, subscribers, CAN."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from pydantic import BaseModel
from temporalio import workflow
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.worker import Worker

from flotilla.models import ClusterGroup
from workflows.registry import CLUSTERS_CHANGED_SIGNAL, ClusterRegistryWorkflow
from workflows.registry_models import (
    ApplyClusterRequest,
    ApplyGroupRequest,
    ClusterSnapshot,
    LabelClusterRequest,
    RegistryState,
    RemoveClusterRequest,
    SnapshotRequest,
    SubscribeRequest,
)


class Seen(BaseModel):
    versions: list[int]
    last: ClusterSnapshot | None


@workflow.defn
class RecordingSubscriber:
    """Stands in for a GitRepo workflow: subscribes and keeps every snapshot it is sent."""

    def __init__(self) -> None:
        self.seen: list[ClusterSnapshot] = []

    @workflow.run
    async def run(self, registry_id: str) -> None:
        handle = workflow.get_external_workflow_handle(registry_id)
        await handle.signal(
            ClusterRegistryWorkflow.subscribe,
            SubscribeRequest(workflow_id=workflow.info().workflow_id),
        )
        await workflow.wait_condition(lambda: False)

    @workflow.signal(name=CLUSTERS_CHANGED_SIGNAL)
    def clusters_changed(self, snapshot: ClusterSnapshot) -> None:
        self.seen.append(snapshot)

    @workflow.query
    def seen_versions(self) -> Seen:
        # The newest by version, as the GitRepo keeps it: Temporal does not promise that
        # signals sent by separate commands arrive in the order they were sent (a CI run saw a
        # new subscriber's welcome snapshot, version 0, arrive after version 1).
        newest = max(self.seen, key=lambda s: s.version) if self.seen else None
        return Seen(versions=[s.version for s in self.seen], last=newest)


async def test_registry_updates_validate_and_notify(
    temporal_client: Client, task_queue: str
) -> None:
    ns = f"ns-{uuid.uuid4().hex[:6]}"
    registry_id = f"registry/{ns}"
    async with Worker(
        temporal_client,
        task_queue=task_queue,
        workflows=[ClusterRegistryWorkflow, RecordingSubscriber],
    ):
        registry = await temporal_client.start_workflow(
            ClusterRegistryWorkflow.run,
            RegistryState(namespace=ns, max_history_events=40),
            id=registry_id,
            task_queue=task_queue,
        )
        sub = await temporal_client.start_workflow(
            RecordingSubscriber.run, registry_id, id=f"sub-{ns}", task_queue=task_queue
        )
        change = await registry.execute_update(
            ClusterRegistryWorkflow.apply_cluster,
            ApplyClusterRequest(
                name="east", labels={"env": "prod"}, kubeconfig_secret="kubeconfig/x.east"
            ),
        )
        assert change.version == 1
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await registry.execute_update(
                ClusterRegistryWorkflow.apply_cluster,
                ApplyClusterRequest(name="Bad_Name", kubeconfig_secret="k"),
            )
        assert "not a valid DNS-1123 label" in str(err.value.cause)
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await registry.execute_update(
                ClusterRegistryWorkflow.label_cluster, LabelClusterRequest(name="west")
            )
        assert "'west' is not registered" in str(err.value.cause)
        await registry.execute_update(
            ClusterRegistryWorkflow.label_cluster,
            LabelClusterRequest(name="east", set_labels={"tier": "a"}, remove_labels=["env"]),
        )
        await registry.execute_update(
            ClusterRegistryWorkflow.apply_group,
            ApplyGroupRequest(
                group=ClusterGroup.model_validate(
                    {"metadata": {"name": "all", "namespace": ns}, "spec": {"selector": {}}}
                )
            ),
        )
        # Enough churn to pass the shrunken history limit: state must survive continue-as-new.
        for i in range(8):
            await registry.execute_update(
                ClusterRegistryWorkflow.apply_cluster,
                ApplyClusterRequest(name=f"c{i}", kubeconfig_secret=f"kubeconfig/{ns}.c{i}"),
            )
            await registry.execute_update(
                ClusterRegistryWorkflow.remove_cluster, RemoveClusterRequest(name=f"c{i}")
            )
        snap = await registry.query(ClusterRegistryWorkflow.snapshot, SnapshotRequest())
        assert [c.name for c in snap.clusters] == ["east"]
        assert snap.clusters[0].labels == {"tier": "a"}
        assert snap.version == 19
        assert snap.subscribers == [f"sub-{ns}"]

        # Continue-as-new runs on the workflow's own loop after the last update has returned
        # (it first signals subscribers), so give it a moment rather than racing it.
        async def current_run_id() -> str | None:
            for _ in range(100):
                latest = await temporal_client.get_workflow_handle(registry_id).describe()
                if latest.run_id != registry.first_execution_run_id:
                    break
                await asyncio.sleep(0.1)
            return latest.run_id

        assert await current_run_id() != registry.first_execution_run_id, (
            "no continue-as-new happened"
        )

        async def subscriber_caught_up() -> Seen:
            for _ in range(50):
                seen = await sub.query(RecordingSubscriber.seen_versions)
                if 19 in seen.versions:
                    return seen
                await asyncio.sleep(0.2)
            return seen

        seen = await subscriber_caught_up()
        assert max(seen.versions) == 19, seen.versions
        assert seen.last is not None and seen.last.version == 19
        assert [(c.name, c.labels) for c in seen.last.clusters] == [("east", {"tier": "a"})]
        assert [g.metadata.name for g in seen.last.groups] == ["all"]
        await sub.terminate()
        await registry.terminate()
