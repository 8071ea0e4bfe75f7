"""Partition gates on a sharded bundle (issue 12): the bundle decides them over all its
shards, so one approval releases a partition in every shard, a soak waits for the
partition in every shard, and a rejection halts the version everywhere.

Real ``BundleWorkflow``s on the session's dev server with the stand-in activities of
``test_bundle_standins.py`` (200 clusters do not fit real Helm releases in a test); the same
gates on real clusters are in tests/e2e/test_gates.py, on a bundle that is not sharded.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.worker import Worker

from flotilla.errors import FlotillaError
from flotilla.ids import bundle_shard_workflow_id, gitrepo_workflow_id
from flotilla.models import RolloutStrategy
from flotilla.status import RepoState
from starters.control import Control
from starters.tables import describe_bundle
from tests.e2e.harness import history_text
from tests.workflows.test_bundle_shards import histories
from tests.workflows.test_bundle_standins import (
    Bundle,
    ReportSink,
    StandIns,
    eventually,
    start,
)
from workflows.bundle_models import ApproveRolloutRequest, BundleStatus
from workflows.bundle_shards import SHARD_GATES_PATCH

__all__ = ["start"]  # the fixture, used by name

CLUSTERS = [f"c{i:03d}" for i in range(200)]
CANARY = "c120"  # in shard 2 of 4
MAIN = [c for c in CLUSTERS if c != CANARY]


def _strategy(**main: object) -> RolloutStrategy:
    return RolloutStrategy.model_validate(
        {
            "partitions": [
                {"name": "canary", "clusterName": CANARY, "soakTime": "2s"},
                {"name": "main", "clusterSelector": {}, "requireApproval": True, **main},
            ]
        }
    )


def _deployed(standins: StandIns, version: int) -> dict[str, float]:
    """cluster -> when the stand-in deploy of ``version`` started (monotonic)."""
    digest = f"{version}" * 20
    return {w.cluster: w.started for w in standins.windows if digest in w.deployment_id}


def _gate(status: BundleStatus, partition: str) -> str:
    return next((f"{g.state}: {g.message}" for g in status.gates if g.partition == partition), "")


async def test_one_approval_releases_the_partition_in_every_shard_and_a_rejection_halts(
    start: Callable[..., Awaitable[Bundle]], temporal_client: Client, task_queue: str
) -> None:
    """200 clusters in four shards; canary (one cluster, soak 2 s), then main (the other
    199, in all four shards) behind an approval. Main waits in every shard for the soak and
    the approval; one `approve_rollout` on the bundle releases it in all four; the next
    version is asked again, and a rejection halts it: nothing of main moves, the bundle and
    its report are Halted. Approving a shard itself is refused in one line."""
    standins = StandIns(clusters=CLUSTERS, strategy=_strategy(), ready_at_deploy=True)
    bundle = await start(standins, shard_size=50, cluster_schedule_to_start_seconds=1)
    control = Control(bundle.client, secrets=None)  # type: ignore[arg-type]  # not used here

    def asked(commit: str) -> Callable[[BundleStatus], bool]:
        return lambda s: s.commit == commit and _gate(s, "main").startswith("Waiting: waiting")

    status = await eventually(bundle.status, asked("commit-1"), timeout=180)
    assert time.monotonic() - _deployed(standins, 1)[CANARY] >= 2.0  # the soak came first
    assert _deployed(standins, 1).keys() == {CANARY}
    assert "waiting for approval of partition main" in status.summary
    await asyncio.sleep(2.0)
    assert _deployed(standins, 1).keys() == {CANARY}  # no shard moved main on its own

    shard = bundle.client.get_workflow_handle(bundle_shard_workflow_id(bundle.handle.id, 0))
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await shard.execute_update(
            "approve_rollout", ApproveRolloutRequest(partition="main", user="ann")
        )
    assert "approve the bundle, which holds the gates of all its shards" in str(refused.value.cause)

    before = time.monotonic()
    await control.approve_rollout(bundle.namespace, "app", partition="main", user="ann")

    def settled(commit: str) -> Callable[[BundleStatus], bool]:
        return lambda s: s.commit == commit and s.ready == s.desired == 200

    status = await eventually(bundle.status, settled("commit-1"), timeout=240)
    started = _deployed(standins, 1)
    assert started.keys() == set(CLUSTERS)
    assert min(started[c] for c in MAIN) >= before
    assert "Approved" in describe_bundle(status)

    # The next version asks again; a rejection halts it in every shard, and the GitRepo (a
    # stand-in that keeps the reports, started now) hears it.
    sink_queue = f"{task_queue}-sink"
    await bundle.stack.enter_async_context(
        Worker(temporal_client, task_queue=sink_queue, workflows=[ReportSink])
    )
    sink = await temporal_client.start_workflow(
        ReportSink.run, id=gitrepo_workflow_id(bundle.namespace, "repo"), task_queue=sink_queue
    )
    bundle.stack.push_async_callback(sink.terminate)
    await bundle.release(2)
    await eventually(bundle.status, asked("commit-2"), timeout=180)
    await control.approve_rollout(
        bundle.namespace, "app", partition="main", approve=False, user="bob", reason="5xx up"
    )
    halted = "rollout halted: partition main rejected by bob: 5xx up"
    status = await eventually(
        bundle.status, lambda s: s.state is RepoState.HALTED and s.halted == halted, timeout=60
    )
    assert _gate(status, "main") == f"Rejected: {halted}"
    report = await eventually(
        lambda: sink.query(ReportSink.last), lambda r: r is not None and r.halted == halted
    )
    assert report is not None and report.commit == "commit-2" and not report.auto_rollback
    await asyncio.sleep(2.0)
    assert _deployed(standins, 2).keys() == {CANARY}
    with pytest.raises(FlotillaError, match="was already rejected by bob"):
        await control.approve_rollout(bundle.namespace, "app", partition="main", user="ann")
    # What runs stays: main still runs version 1 everywhere.
    status = await bundle.status()
    assert status.state is RepoState.HALTED and status.desired == 200

    runs = await histories(bundle.client, bundle.handle.id)
    assert SHARD_GATES_PATCH in history_text(runs[0])
    record = os.environ.get("FLOTILLA_RECORD_HISTORIES")
    if record:
        Path(record).mkdir(parents=True, exist_ok=True)
        (Path(record) / "bundle-shards-gates.json").write_text(runs[0].to_json())


async def test_a_failure_budget_on_a_sharded_bundle_holds_the_version_and_says_why(
    start: Callable[..., Awaitable[Bundle]],
) -> None:
    """failureBudget needs every cluster's health in one place, which a sharded bundle does
    not have: the version is held before its first partition (nothing new deploys) with a
    one-line reason, instead of rolling out without the protection asked for."""
    strategy = RolloutStrategy.model_validate(
        {
            "partitions": [
                {"name": "canary", "clusterName": CANARY, "failureBudget": 0},
                {"name": "main", "clusterSelector": {}},
            ]
        }
    )
    standins = StandIns(clusters=CLUSTERS, strategy=strategy, ready_at_deploy=True)
    bundle = await start(standins, shard_size=50)
    status = await eventually(bundle.status, lambda s: s.state is RepoState.HALTED, timeout=180)
    assert status.halted == (
        "rollout held: partition canary: failureBudget is not supported on a bundle rolled out "
        "in shards (more than 50 clusters); remove it, or use requireApproval"
    )
    await asyncio.sleep(2.0)
    assert standins.windows == []
