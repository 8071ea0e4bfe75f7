"""One bundle on thousands of clusters, rolled out by shards (issue 12).

Starts its own Temporal server (``--temporal dev`` by default) and an in-process worker that
runs the real ``BundleWorkflow`` (which drives shard workflows above the shard size) with
stand-ins under the real activity names: ``plan_bundle`` computes one options digest per
cluster as the planner would (no content store), and the deploy activities on the shared
push queues answer Ready at once. So the figures are Temporal + workflow cost: the GitRepo
and registry in front of the bundle (one 10,000-cluster snapshot reaching the bundle) are
not part of it; the bundle's first input carries that snapshot, and its size is printed.

Measures, per commit, the time from the spec reaching the bundle to every deployment Ready
(first commit, then a second one); history events per bundle deployment over the bundle and
all shard runs; the largest event (payload) between workflows of the shard layer and the
largest overall; the largest history run; workflow task durations (p50, p99); Temporal's
throughput over both commits; "cluster offline" warnings; peak RSS of this process (the
worker) and of the server; the load average.

    .venv/bin/python bench/bench_scale.py --clusters 10000
    .venv/bin/python bench/bench_scale.py --clusters 2000 --shard-size 250 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_gitops import OfflineCount, peak_rss_mib
from temporal_kinds import ServerThroughput, add_temporal_argument, temporal_kinds, temporal_server

from activities.deploy_models import (
    DeploymentStatus,
    DeployRequest,
    DeployResult,
    ReleaseRef,
    RemoveRequest,
    RemoveResult,
    StatusRequest,
    WaitReadyRequest,
)
from activities.gitops_models import PlannedTarget, PlanRequest, PlanResult
from flotilla.deployment import deployment_id
from flotilla.ids import (
    bundle_shard_workflow_id,
    bundle_workflow_id,
    gitrepo_workflow_id,
    push_task_queues,
)
from flotilla.models import RolloutStrategy
from flotilla.settings import DEFAULT_BUNDLE_SHARD_SIZE
from workflows.bundle import REFRESH_SIGNAL, BundleWorkflow
from workflows.bundle_models import (
    BundleRefresh,
    BundleSpec,
    BundleStatus,
    BundleStatusRequest,
    BundleWorkflowState,
)
from workflows.registry_models import ClusterSnapshot, ClusterView

QUEUE = "bench-scale"


class StandIns:
    """plan_bundle and the deploy activities, answering at once."""

    def __init__(self, strategy: RolloutStrategy) -> None:
        self.strategy = strategy

    @activity.defn(name="plan_bundle")
    async def plan_bundle(self, request: PlanRequest) -> PlanResult:
        targets = []
        for cluster in request.clusters:
            options = hashlib.sha256(f"{request.bundle_digest}/{cluster.name}".encode())
            digest = options.hexdigest()
            targets.append(
                PlannedTarget(
                    cluster=cluster.name,
                    options_digest=digest,
                    deployment_id=deployment_id(request.bundle_digest, digest),
                )
            )
        return PlanResult(targets=targets, strategy=self.strategy)

    @activity.defn(name="deploy_bundle")
    async def deploy_bundle(self, request: DeployRequest) -> DeployResult:
        release = ReleaseRef(name=request.bundle_name, namespace="default", revision=1)
        ready = DeploymentStatus(
            release=release, applied_deployment_id=request.deployment_id, ready=True
        )
        return DeployResult.model_validate(
            {
                "release": release,
                "deployment_id": request.deployment_id,
                "changed": True,
                "action": "install",
                "reason": "benchmark",
                "status": ready,
            }
        )

    @activity.defn(name="wait_ready")
    async def wait_ready(self, request: WaitReadyRequest) -> DeploymentStatus:
        return DeploymentStatus(
            release=request.release, applied_deployment_id=request.deployment_id, ready=True
        )

    @activity.defn(name="check_deployment")
    async def check_deployment(self, request: StatusRequest) -> DeploymentStatus:
        return DeploymentStatus(
            release=request.release, applied_deployment_id=request.deployment_id, ready=True
        )

    @activity.defn(name="remove_deployment")
    async def remove_deployment(self, request: RemoveRequest) -> RemoveResult:
        return RemoveResult(release_removed=True, resources_kept=False)


def spec(version: int) -> BundleSpec:
    digest = hashlib.sha256(f"v{version}".encode()).hexdigest()
    return BundleSpec(gitrepo="bench", commit=f"{version:040d}", bundle_digest=digest)


async def histories(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    """Every run of a workflow (continue-as-new chains), oldest first."""
    runs = [e async for e in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    runs.sort(key=lambda e: e.start_time)
    return [
        await client.get_workflow_handle(workflow_id, run_id=e.run_id).fetch_history() for e in runs
    ]


async def run(clusters: int, shard_size: int, kind: str) -> dict[str, float]:
    offline = OfflineCount()
    logging.getLogger().addHandler(offline)
    load_before = os.getloadavg()
    strategy = RolloutStrategy.model_validate({"maxUnavailable": "10%", "autoPartitionSize": "10%"})
    standins = StandIns(strategy)
    with (
        tempfile.TemporaryDirectory() as tmp_name,
        temporal_server(kind, Path(tmp_name) / "temporal") as server,
    ):
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        deploys: list[Callable[..., Any]] = [
            standins.deploy_bundle,
            standins.wait_ready,
            standins.check_deployment,
            standins.remove_deployment,
        ]
        workers = [
            Worker(
                client,
                task_queue=QUEUE,
                workflows=[BundleWorkflow],
                activities=[standins.plan_bundle],
            ),
            *(Worker(client, task_queue=q, activities=deploys) for q in push_task_queues(QUEUE)),
        ]
        async with asyncio.TaskGroup() as group:
            for worker in workers:
                group.create_task(worker.run())
            try:
                ns = f"scale-{uuid.uuid4().hex[:6]}"
                snapshot = ClusterSnapshot(
                    namespace=ns,
                    version=1,
                    clusters=[
                        ClusterView(name=f"c{i:05d}", labels={"env": "prod", "n": str(i % 7)})
                        for i in range(clusters)
                    ],
                )
                refresh = BundleRefresh(spec=spec(1), clusters=snapshot)
                input_bytes = len(refresh.model_dump_json())
                state = BundleWorkflowState(
                    namespace=ns,
                    bundle="app",
                    gitrepo_workflow_id=gitrepo_workflow_id(ns, "bench"),
                    shard_size=shard_size,
                    monitor_seconds=3600,
                )
                throughput = ServerThroughput(server.metrics_url)
                throughput.start()
                began = time.time()
                started = time.monotonic()
                handle = await client.start_workflow(
                    BundleWorkflow.run,
                    state,
                    id=bundle_workflow_id(ns, "app"),
                    task_queue=QUEUE,
                    start_signal=REFRESH_SIGNAL,
                    start_signal_args=[refresh],
                )

                async def settled(commit: str) -> None:
                    while True:
                        try:
                            status: BundleStatus = await handle.query(
                                BundleWorkflow.status, BundleStatusRequest()
                            )
                            if (
                                status.commit == commit
                                and status.ready == status.desired == clusters
                                and status.state == "Ready"
                            ):
                                return
                        except Exception as err:  # a busy server: ask again
                            print(f"status query failed, retried: {err}")
                        await asyncio.sleep(0.5)

                await asyncio.wait_for(settled(spec(1).commit), timeout=1800)
                first = time.monotonic() - started
                started = time.monotonic()
                await handle.signal(BundleWorkflow.refresh, BundleRefresh(spec=spec(2)))
                await asyncio.wait_for(settled(spec(2).commit), timeout=1800)
                second = time.monotonic() - started
                throughput.stop()
                ended = time.time()
                load_after = os.getloadavg()

                shards = (
                    max((clusters + shard_size - 1) // shard_size, 1)
                    if clusters > shard_size
                    else 0
                )
                ids = [handle.id] + [bundle_shard_workflow_id(handle.id, i) for i in range(shards)]
                events = 0
                largest_layer = largest_any = largest_run = 0
                wft: list[float] = []
                wft_done = activities_done = 0
                run_count = 0
                for workflow_id in ids:
                    for history in await histories(client, workflow_id):
                        run_count += 1
                        events += len(history.events)
                        run_bytes = 0
                        task_started: float | None = None
                        for index, event in enumerate(history.events):
                            size = event.ByteSize()
                            run_bytes += size
                            largest_any = max(largest_any, size)
                            # The bundle's first input and start signal carry the whole snapshot
                            # (from the GitRepo); everything else is the shard layer's.
                            if not (workflow_id == handle.id and index < 2):
                                largest_layer = max(largest_layer, size)
                            at = event.event_time.ToDatetime().timestamp()
                            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                                task_started = at
                            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                                if task_started is not None:
                                    wft.append(at - task_started)
                                wft_done += began <= at <= ended
                            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                                activities_done += began <= at <= ended
                        largest_run = max(largest_run, run_bytes)
                wft.sort()
                elapsed = ended - began
                per = events / (2 * clusters)
                print(
                    f"temporal={kind} clusters={clusters} shard size={shard_size} shards={shards}"
                )
                print(
                    f"first commit to all Ready: {first:.1f}s "
                    f"({clusters / first:.0f} deployments/s)"
                )
                print(
                    f"second commit to all Ready: {second:.1f}s "
                    f"({clusters / second:.0f} deployments/s)"
                )
                print(
                    "history events per bundle deployment (two versions, bundle + shards): "
                    f"{per:.2f} over {run_count} runs of {len(ids)} workflows"
                )
                print(
                    f"workflow tasks: p50 {wft[len(wft) // 2]:.3f}s, p99 "
                    f"{wft[int(len(wft) * 0.99)]:.3f}s, max {wft[-1]:.3f}s over {len(wft)}"
                )
                print(
                    f"largest event of the shard layer {largest_layer / 1e3:.1f} kB; largest "
                    f"event overall {largest_any / 1e3:.1f} kB (the bundle's input: the "
                    f"snapshot, {input_bytes / 1e3:.1f} kB as JSON); largest history run "
                    f"{largest_run / 1e6:.2f} MB"
                )
                print(
                    f"Temporal throughput over both commits ({elapsed:.0f}s): "
                    f"{wft_done / elapsed:.1f} workflow tasks/s, {activities_done / elapsed:.1f} "
                    "activities/s"
                )
                print(throughput.line())
                print(f'"cluster offline" warnings: {offline.count}')
                server_pid = server.process.pid if server.process else None
                rss = peak_rss_mib(os.getpid())
                print(
                    f"peak RSS: bench process (worker) {rss:.0f} MiB, "
                    f"{kind} server {peak_rss_mib(server_pid):.0f} MiB"
                )
                print(
                    "load average (1, 5, 15 min) before: {:.2f} {:.2f} {:.2f}, after: "
                    "{:.2f} {:.2f} {:.2f}".format(*load_before, *load_after)
                )
                await handle.terminate("benchmark finished")
                for i in range(shards):
                    await client.get_workflow_handle(ids[i + 1]).terminate("benchmark finished")
                return {
                    "first commit s": first,
                    "second commit s": second,
                    "events per deployment": per,
                    "largest shard-layer event kB": largest_layer / 1e3,
                    "wft p99 s": wft[int(len(wft) * 0.99)],
                    "worker RSS MiB": rss,
                    "load after": load_after[0],
                }
            finally:
                for worker in workers:
                    group.create_task(worker.shutdown())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clusters", type=int, default=10_000)
    parser.add_argument("--shard-size", type=int, default=DEFAULT_BUNDLE_SHARD_SIZE)
    parser.add_argument("--runs", type=int, default=1, help="runs per server (default 1)")
    add_temporal_argument(parser)
    args = parser.parse_args()
    kinds = temporal_kinds(parser, args.temporal)
    logging.basicConfig(level=logging.WARNING)
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for number in range(args.runs):
        for kind in kinds:
            print(f"\n== run {number + 1} on {kind}", flush=True)
            results[kind].append(asyncio.run(run(args.clusters, args.shard_size, kind)))
    print(f"\nmedians of {args.runs} run(s), 1 bundle x {args.clusters} clusters:")
    for kind, runs in results.items():
        figures = ", ".join(
            f"{name} {statistics.median(r[name] for r in runs):.2f}" for name in runs[0]
        )
        print(f"  {kind}: {figures}")


if __name__ == "__main__":
    main()
