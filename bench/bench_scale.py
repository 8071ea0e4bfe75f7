"""One bundle on thousands of clusters, rolled out by shards (issue 12).

Starts its own Temporal server (``--temporal dev`` by default) and an in-process worker that
runs the real ``BundleWorkflow`` (which drives shard workflows above the shard size) with
stand-ins under the real activity names: ``plan_bundle`` computes one options digest per
cluster as the planner would (no content store), and the deploy activities on the shared
push queues answer Ready at once (unless ``--latencies``, below). So the figures are
Temporal + workflow cost: the GitRepo and registry in front of the bundle (one
10,000-cluster snapshot reaching the bundle) are not part of it; the bundle's first input
carries that snapshot, and its size is printed.

Measures, per commit, the time from the spec reaching the bundle to every deployment Ready
(first commit, then a second one); history events per bundle deployment over the bundle and
all shard runs; the largest event (payload) between workflows of the shard layer and the
largest overall; the largest history run; workflow task durations (p50, p99); Temporal's
throughput over both commits; "cluster offline" warnings; peak RSS of this process (the
worker) and of the server; the load average; per commit, when each tenth of the clusters
turned Ready and the worker's and server's CPU. With ``--control``, after both commits a
second bundle's first commit on the same server is timed too: the server's own slow-down
with what it holds, to compare the second commit with.

With ``--latencies FILE`` (issue 12's honest simulated clusters) the stand-in deploys take
times drawn from flotilla's measured deploy activity (``profile_deploy.py --latencies``;
``bench/deploy_latencies.json``: an install, its apply and its wait for Ready, or an
upgrade), through the worker's push-queue wrapper on its threads, slots and pollers
(``--cluster-threads``, ``--cluster-tasks``, default the worker's); with
``--real-clusters N`` that many of the clusters are real local clusters (etcd,
kube-apiserver, kwok) planned by the real planner and deployed by the real engine and helm,
counted by the rollout as any other, and their object is checked after the second commit.

    .venv/bin/python bench/bench_scale.py --clusters 10000
    .venv/bin/python bench/bench_scale.py --clusters 2000 --shard-size 250 --runs 3
    .venv/bin/python bench/bench_scale.py --clusters 10000 --runs 3 --control
    .venv/bin/python bench/bench_scale.py --clusters 10000 --runs 3 \
        --latencies bench/deploy_latencies.json --real-clusters 3

With ``--retarget`` it measures a label change instead, through the real registry, GitRepo
and bundle workflows: the registry starts with ``--clusters`` push-mode clusters, each
labelled ``group: b<i mod N>``; one GitRepo (stand-in ``ls_remote`` and ``fetch_bundles``,
the real ``sync_bundles``) has ``--bundles`` N bundles, and the stand-in planner targets
bundle ``b<k>`` at the clusters of group ``b<k>``. Once every bundle is settled, ``--changes``
times one cluster's group is changed (``label_cluster``): it leaves one bundle's targets
and enters another's, and the time from the update to that cluster deployed by the new
bundle and removed by the old one is taken (p50, max). It prints the largest event of
every history in the run (registry, GitRepo, bundles, shards) and which it was; with
``--inline-limit`` above the snapshot's size the snapshot travels inline (the path before
issue 12's digest), to compare.

    .venv/bin/python bench/bench_scale.py --retarget --clusters 10000 --bundles 5 --changes 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import logging
import os
import statistics
import sys
import tempfile
import time
import urllib.error
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_gitops import (
    DeployTimes,
    InstantDeploy,
    OfflineCount,
    SlicedDeploy,
    cpu_seconds,
    peak_rss_mib,
    standin_result,
)
from temporal_kinds import ServerThroughput, add_temporal_argument, temporal_kinds, temporal_server

from activities.content import FileContentStore
from activities.deploy import DeployActivities
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
from activities.gitops import GitOpsActivities
from activities.gitops_models import (
    BundleRef,
    FetchRequest,
    FetchResult,
    LsRemoteRequest,
    LsRemoteResult,
    PlannedTarget,
    PlanRequest,
    PlanResult,
)
from activities.pushqueue import PushDeployActivities
from activities.secrets import KUBECONFIG_KEY, FileSecretStore, kubeconfig_secret_name
from activities.snapshots import SnapshotActivities
from devenv import tools
from devenv.cluster import LocalCluster
from flotilla.bundles import FileListing, read_bundles
from flotilla.deployment import deployment_id
from flotilla.ids import (
    bundle_shard_workflow_id,
    bundle_workflow_id,
    gitrepo_workflow_id,
    push_task_queues,
    registry_workflow_id,
)
from flotilla.models import GitRepoSpec, RolloutStrategy
from flotilla.settings import DEFAULT_BUNDLE_SHARD_SIZE, ToolSettings
from flotilla.snapshots import encode_snapshot, snapshot_header
from runtime.tools import locate_tools
from worker import (
    DEFAULT_CLUSTER_CONCURRENCY,
    DEFAULT_CLUSTER_POLLERS,
    DEFAULT_CLUSTER_TASKS,
    DEFAULT_CLUSTER_THREADS,
    DEFAULT_WORKFLOW_TASKS,
    GC_THRESHOLDS,
    push_queue_pollers,
    push_queue_slots,
)
from workflows.bundle import REFRESH_SIGNAL, BundleWorkflow
from workflows.bundle_models import (
    BundleRefresh,
    BundleSpec,
    BundleStatus,
    BundleStatusRequest,
    BundleWorkflowState,
)
from workflows.gitrepo import GitRepoWorkflow
from workflows.gitrepo_models import GitRepoState
from workflows.registry import ClusterRegistryWorkflow
from workflows.registry_models import (
    LABEL_CLUSTER_UPDATE,
    ClusterRecord,
    ClusterSnapshot,
    ClusterView,
    LabelClusterRequest,
    RegistryChange,
    RegistryState,
)

QUEUE = "bench-scale"


# The real-cluster slice's bundle: one ConfigMap, its data the bundle's version.
SLICE_CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: scale}}\ndata: {{v: '{v}'}}\n"


class RealSlice:
    """Issue 12's real-cluster slice: a few of the fleet's clusters are real local clusters
    (etcd, kube-apiserver, kwok), planned by the real planner and deployed by the real engine
    from the same requests the stand-ins get; the rollout counts them as any other cluster,
    so it is Ready only once they are."""

    def __init__(self, stack: contextlib.ExitStack, root: Path, names: list[str]) -> None:
        self.clusters = {
            name: stack.enter_context(LocalCluster(f"slice{i}", root / f"slice{i}", nodes=1))
            for i, name in enumerate(names)
        }
        self.secrets = FileSecretStore(root / "secrets")
        self.content = FileContentStore(root / "content")
        self.engine = DeployActivities(
            self.secrets,
            self.content,
            root / "deploy",
            tools=locate_tools(ToolSettings(tools_dir=tools.tools_dir())),
        )
        self.root = root
        self.planner: GitOpsActivities | None = None

    def connect(self, client: Client, namespace: str) -> None:
        """The real planner on this server; each real cluster's kubeconfig where the engine
        looks for it in ``namespace``, as ``flotilla cluster add`` puts it."""
        self.planner = GitOpsActivities(client, self.secrets, self.content, self.root / "work")
        for name, cluster in self.clusters.items():
            self.secrets.put(
                namespace,
                kubeconfig_secret_name(name),
                {KUBECONFIG_KEY: cluster.kubeconfig.read_text()},
            )

    def bundle_digest(self, version: int) -> str:
        """Version ``version`` of the bundle, read from files the real way and stored."""
        files = {
            "app/fleet.yaml": b"defaultNamespace: default\n",
            "app/cm.yaml": SLICE_CM.format(v=version).encode(),
        }
        (bundle,) = read_bundles(
            FileListing(files=files), gitrepo_name="bench", paths=["app"]
        ).bundles
        return self.content.put_bundle(bundle)

    def plan(self, request: PlanRequest) -> list[PlannedTarget]:
        """The real planner's targets for the real clusters of ``request`` (all targeted)."""
        own = [c for c in request.clusters if c.name in self.clusters]
        if not own:
            return []
        assert self.planner is not None, "connect() first"
        switches = request.switches.model_copy(update={"targets": [{"clusterSelector": {}}]})
        result = self.planner.plan_bundle(
            request.model_copy(update={"clusters": own, "switches": switches})
        )
        if result.errors or len(result.targets) != len(own):
            raise RuntimeError(f"real-cluster slice: planned {result.targets}: {result.errors}")
        return result.targets

    def versions(self) -> str:
        """The bundle's ConfigMap version on each real cluster ("-": not there)."""
        found = []
        for name, cluster in sorted(self.clusters.items()):
            try:
                cm = cluster.request("GET", "/api/v1/namespaces/default/configmaps/scale")
                found.append(f"{name} v{(cm.get('data') or {}).get('v', '-')}")
            except urllib.error.HTTPError as err:
                found.append(f"{name} {err.code}")
        return ", ".join(found)


def ready(release: ReleaseRef, deployment_id: str) -> DeploymentStatus:
    """What a stand-in's status check answers: applied and Ready."""
    return DeploymentStatus(release=release, applied_deployment_id=deployment_id, ready=True)


class StandIns:
    """plan_bundle and the deploy activities, answering at once."""

    def __init__(self, strategy: RolloutStrategy) -> None:
        self.strategy = strategy
        self.slice: RealSlice | None = None

    @activity.defn(name="plan_bundle")
    async def plan_bundle(self, request: PlanRequest) -> PlanResult:
        real = await asyncio.to_thread(self.slice.plan, request) if self.slice else []
        targets = list(real)
        for cluster in request.clusters:
            if self.slice is not None and cluster.name in self.slice.clusters:
                continue
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
        return standin_result(request)

    @activity.defn(name="wait_ready")
    async def wait_ready(self, request: WaitReadyRequest) -> DeploymentStatus:
        return ready(request.release, request.deployment_id)

    @activity.defn(name="check_deployment")
    async def check_deployment(self, request: StatusRequest) -> DeploymentStatus:
        return ready(request.release, request.deployment_id)

    @activity.defn(name="remove_deployment")
    async def remove_deployment(self, request: RemoveRequest) -> RemoveResult:
        return RemoveResult(release_removed=True, resources_kept=False)


def deploys_line(
    standin: InstantDeploy | None, times: DeployTimes | None, threads: int, tasks: int
) -> str:
    """How this run's stand-in deploys behaved, for its report."""
    if standin is None:
        return "stand-ins answering at once (Temporal and the workflows only)"
    drawn = standin.drawn
    timed = (
        f"taking measured times ({times.describe()}); {len(drawn)} drawn, median "
        f"{statistics.median(drawn):.2f} s"
        if times and drawn
        else "instant"
    )
    return (
        f"stand-ins {timed}; through the worker's push-queue wrapper: applies on {threads} "
        f"threads, at most {tasks} deploys in flight (its cluster threads and tasks)"
    )


def progress_line(samples: list[tuple[float, int]], clusters: int) -> str:
    """When the status first showed each tenth of the clusters Ready, from status samples."""
    marks = []
    for tenth in range(1, 11):
        at = next((t for t, ready in samples if ready * 10 >= clusters * tenth), None)
        marks.append("-" if at is None else f"{at:.0f}")
    return "Ready by tenths at " + " ".join(marks) + " s"


def spec(version: int, digest: str | None = None) -> BundleSpec:
    """The bundle at ``version`` (its digest made up, unless the real-cluster slice stored it)."""
    digest = digest or hashlib.sha256(f"v{version}".encode()).hexdigest()
    return BundleSpec(gitrepo="bench", commit=f"{version:040d}", bundle_digest=digest)


async def histories(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    """Every run of a workflow (continue-as-new chains), oldest first."""
    runs = [e async for e in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    runs.sort(key=lambda e: e.start_time)
    return [
        await client.get_workflow_handle(workflow_id, run_id=e.run_id).fetch_history() for e in runs
    ]


async def run(
    clusters: int,
    shard_size: int,
    kind: str,
    control_install: bool = False,
    *,
    times: DeployTimes | None = None,
    cluster_threads: int = DEFAULT_CLUSTER_THREADS,
    cluster_tasks: int = DEFAULT_CLUSTER_TASKS,
    real_clusters: int = 0,
) -> dict[str, float]:
    """One run: the first commit, then the second, of one bundle on ``clusters`` clusters.
    Without ``times`` or ``real_clusters`` the deploys answer at once and only Temporal and
    the workflows are measured; with ``times`` they take measured deploy times, and
    ``real_clusters`` of the clusters are real local clusters deployed by the real engine,
    both through the worker's push-queue wrapper: applies on ``cluster_threads`` threads,
    ``cluster_tasks`` deploys in flight (their waits for Ready on watcher threads)."""
    offline = OfflineCount()
    logging.getLogger().addHandler(offline)
    load_before = os.getloadavg()
    strategy = RolloutStrategy.model_validate({"maxUnavailable": "10%", "autoPartitionSize": "10%"})
    threaded = times is not None or real_clusters > 0
    with (
        tempfile.TemporaryDirectory() as tmp_name,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(tmp_name)
        real = (
            RealSlice(
                stack,
                tmp / "slice",
                [f"c{(i * clusters) // real_clusters:05d}" for i in range(real_clusters)],
            )
            if real_clusters
            else None
        )
        standins = StandIns(strategy)
        standins.slice = real
        # Timed or real deploys go through the worker's own push-queue wrapper (per-cluster
        # slots, heartbeats) over bench_gitops' stand-ins and, for the slice, the real engine.
        timed = InstantDeploy(times) if threaded else None
        sliced = SlicedDeploy(real.engine, timed, set(real.clusters)) if real and timed else None
        push = (
            PushDeployActivities(
                sliced or timed,
                DEFAULT_CLUSTER_CONCURRENCY,
                cluster_threads,
                watchers=cluster_tasks,
            )
            if timed
            else None
        )
        if push:
            stack.callback(push.close)
        # Timed or real deploys run on the push queues as the worker runs them (its threads,
        # slots and pollers); instant ones keep the SDK's defaults, as earlier rows had them.
        push_options: dict[str, Any] = (
            {
                "max_concurrent_activities": push_queue_slots(cluster_tasks),
                "activity_task_poller_behavior": push_queue_pollers(DEFAULT_CLUSTER_POLLERS),
            }
            if threaded
            else {}
        )
        server = stack.enter_context(temporal_server(kind, tmp / "temporal"))
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        deploys: list[Callable[..., Any]] = (
            [
                push.deploy_bundle,
                push.check_deployment,
                push.check_deployments,
                push.wait_ready,
                push.remove_deployment,
            ]
            if push
            else [
                standins.deploy_bundle,
                standins.wait_ready,
                standins.check_deployment,
                standins.remove_deployment,
            ]
        )
        gc.set_threshold(*GC_THRESHOLDS)  # as FlotillaWorker.start does
        workers = [
            Worker(
                client,
                task_queue=QUEUE,
                workflows=[BundleWorkflow],
                activities=[standins.plan_bundle],
                # As the flotilla worker runs them (worker.py, --workflow-tasks).
                max_concurrent_workflow_tasks=DEFAULT_WORKFLOW_TASKS,
            ),
            *(
                Worker(client, task_queue=q, activities=deploys, **push_options)
                for q in push_task_queues(QUEUE)
            ),
        ]
        async with asyncio.TaskGroup() as group:
            for worker in workers:
                group.create_task(worker.run())
            try:
                ns = f"scale-{uuid.uuid4().hex[:6]}"
                if real is not None:
                    real.connect(client, ns)
                specs = {v: spec(v, real.bundle_digest(v) if real else None) for v in (1, 2)}
                snapshot = ClusterSnapshot(
                    namespace=ns,
                    version=1,
                    clusters=[
                        ClusterView(name=f"c{i:05d}", labels={"env": "prod", "n": str(i % 7)})
                        for i in range(clusters)
                    ],
                )
                refresh = BundleRefresh(spec=specs[1], clusters=snapshot)
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

                server_pid = server.process.pid if server.process else None
                progress: dict[str, list[tuple[float, int]]] = {}

                def cpus() -> tuple[float, float]:
                    """CPU seconds so far of this process (the worker) and of the server."""
                    return cpu_seconds(os.getpid()), cpu_seconds(server_pid) if server_pid else 0.0

                async def settled(
                    commit: str, bundle: WorkflowHandle[Any, Any] | None = None
                ) -> None:
                    since = time.monotonic()
                    seen = progress.setdefault(commit if bundle is None else "control", [])
                    while True:
                        try:
                            status: BundleStatus = await (bundle or handle).query(
                                BundleWorkflow.status, BundleStatusRequest()
                            )
                            if status.commit == commit:
                                seen.append((time.monotonic() - since, status.ready))
                            if (
                                status.commit == commit
                                and status.ready == status.desired == clusters
                                and status.state == "Ready"
                            ):
                                return
                        except Exception as err:  # a busy server: ask again
                            print(f"status query failed, retried: {err}")
                        await asyncio.sleep(0.5)

                cpu = [cpus()]
                await asyncio.wait_for(settled(specs[1].commit), timeout=1800)
                first = time.monotonic() - started
                cpu.append(cpus())
                started = time.monotonic()
                await handle.signal(BundleWorkflow.refresh, BundleRefresh(spec=specs[2]))
                await asyncio.wait_for(settled(specs[2].commit), timeout=1800)
                second = time.monotonic() - started
                cpu.append(cpus())
                throughput.stop()
                ended = time.time()
                load_after = os.getloadavg()
                shards = (
                    max((clusters + shard_size - 1) // shard_size, 1)
                    if clusters > shard_size
                    else 0
                )
                control = 0.0
                if control_install:
                    # The first commit again, as a second bundle's install on the same server,
                    # which now holds both commits: what the server's own growth costs.
                    control_cpu = cpus()[1]
                    started = time.monotonic()
                    other = await client.start_workflow(
                        BundleWorkflow.run,
                        state.model_copy(update={"bundle": "control"}),
                        id=bundle_workflow_id(ns, "control"),
                        task_queue=QUEUE,
                        start_signal=REFRESH_SIGNAL,
                        start_signal_args=[refresh],
                    )
                    await asyncio.wait_for(settled(specs[1].commit, other), timeout=1800)
                    control = time.monotonic() - started
                    control_cpu = cpus()[1] - control_cpu
                    print(
                        "control: a second bundle's first commit on the same server "
                        f"{control:.1f}s; {progress_line(progress['control'], clusters)}; "
                        f"{kind} server CPU {control_cpu:.1f}s"
                    )
                    await other.terminate("benchmark finished")
                    for i in range(shards):
                        await client.get_workflow_handle(
                            bundle_shard_workflow_id(other.id, i)
                        ).terminate("benchmark finished")

                ids = [handle.id] + [bundle_shard_workflow_id(handle.id, i) for i in range(shards)]
                events = 0
                largest_layer = largest_any = largest_run = 0
                wft: list[float] = []
                wft_done = activities_done = 0
                run_count = 0
                # Workflow tasks the server failed or timed out, by cause: each is redone,
                # most after a replay of the whole history (docs/installation.md, "Buffered
                # events").
                failed_tasks: Counter[str] = Counter()
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
                            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                                cause = event.workflow_task_failed_event_attributes.cause
                                failed_tasks[
                                    WorkflowTaskFailedCause.Name(cause).removeprefix(
                                        "WORKFLOW_TASK_FAILED_CAUSE_"
                                    )
                                ] += 1
                            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
                                failed_tasks["TIMED_OUT"] += 1
                        largest_run = max(largest_run, run_bytes)
                wft.sort()
                elapsed = ended - began
                per = events / (2 * clusters)
                print(
                    f"temporal={kind} clusters={clusters} shard size={shard_size} shards={shards}"
                )
                print(f"deploys: {deploys_line(timed, times, cluster_threads, cluster_tasks)}")
                if real is not None and sliced is not None:
                    walls = sorted(sliced.real_walls)
                    print(
                        f"real-cluster slice: {len(walls)} real deploys of "
                        f"{len(real.clusters)} clusters (2 expected each); the bundle's "
                        f"ConfigMap after the second commit: {real.versions()}; "
                        f"deploy wall (apply to Ready) p50 {statistics.median(walls):.2f} s, "
                        f"max {walls[-1]:.2f} s"
                    )
                print(
                    f"first commit to all Ready: {first:.1f}s "
                    f"({clusters / first:.0f} deployments/s)"
                )
                print(
                    f"second commit to all Ready: {second:.1f}s "
                    f"({clusters / second:.0f} deployments/s)"
                )
                for label, commit, (a, b) in (
                    ("first", specs[1].commit, (cpu[0], cpu[1])),
                    ("second", specs[2].commit, (cpu[1], cpu[2])),
                ):
                    print(
                        f"{label} commit: {progress_line(progress.get(commit, []), clusters)}; "
                        f"CPU worker {b[0] - a[0]:.1f}s, {kind} server {b[1] - a[1]:.1f}s"
                    )
                print(
                    "history events per bundle deployment (two versions, bundle + shards): "
                    f"{per:.2f} over {run_count} runs of {len(ids)} workflows"
                )
                print(
                    f"workflow tasks: p50 {wft[len(wft) // 2]:.3f}s, p99 "
                    f"{wft[int(len(wft) * 0.99)]:.3f}s, max {wft[-1]:.3f}s over {len(wft)}; "
                    "failed or timed out: "
                    + (", ".join(f"{n} {c}" for c, n in failed_tasks.most_common()) or "none")
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
                    **({"control install s": control} if control_install else {}),
                }
            finally:
                for worker in workers:
                    group.create_task(worker.shutdown())


class Retarget(StandIns):
    """The stand-ins plus what the GitRepo needs, noting when each (bundle, cluster) was
    deployed and removed."""

    def __init__(
        self, strategy: RolloutStrategy, bundles: int, times: DeployTimes | None = None
    ) -> None:
        super().__init__(strategy)
        self.bundles = bundles
        # With measured deploy times, each deploy first waits one (an install or not).
        self.times = times
        self.deployed: dict[tuple[str, str], float] = {}
        self.removed: dict[tuple[str, str], float] = {}
        self.deploys = 0

    @activity.defn(name="plan_bundle")
    async def plan_bundle(self, request: PlanRequest) -> PlanResult:
        own = request.model_copy(
            update={
                "clusters": [c for c in request.clusters if c.labels.get("group") == request.bundle]
            }
        )
        return await StandIns.plan_bundle(self, own)

    @activity.defn(name="deploy_bundle")
    async def deploy_bundle(self, request: DeployRequest) -> DeployResult:
        if self.times is not None:
            await asyncio.sleep(self.times.draw(request.previous_release is None))
        result = await StandIns.deploy_bundle(self, request)
        self.deploys += 1
        self.deployed[request.bundle_name, request.cluster_name] = time.monotonic()
        return result

    @activity.defn(name="remove_deployment")
    async def remove_deployment(self, request: RemoveRequest) -> RemoveResult:
        self.removed[request.bundle_name, request.cluster_name] = time.monotonic()
        return RemoveResult(release_removed=True, resources_kept=False)

    @activity.defn(name="ls_remote")
    async def ls_remote(self, request: LsRemoteRequest) -> LsRemoteResult:
        return LsRemoteResult(commit="1" * 40)

    @activity.defn(name="fetch_bundles")
    async def fetch_bundles(self, request: FetchRequest) -> FetchResult:
        refs = [
            BundleRef(
                name=f"b{k}", path=f"b{k}", digest=hashlib.sha256(f"b{k}".encode()).hexdigest()
            )
            for k in range(self.bundles)
        ]
        return FetchResult(commit=request.commit, bundles=refs)


def inline_sizes(names: list[str], bundles: int) -> str:
    """What the snapshot of the bench's registry costs inline and as a header: one
    ``clusters_changed`` signal and one ``sync_bundles`` batch of every bundle's refresh."""
    snapshot = ClusterSnapshot(
        namespace="ns",
        version=1,
        clusters=[
            ClusterView(name=n, labels={"group": f"b{i % bundles}", "env": "prod"})
            for i, n in enumerate(names)
        ],
    )
    data = encode_snapshot(snapshot)
    header = snapshot_header(snapshot, hashlib.sha256(data).hexdigest(), len(data))

    def batch(clusters: ClusterSnapshot) -> int:
        refresh = BundleRefresh(spec=spec(1), clusters=clusters).model_dump_json()
        return bundles * len(refresh)

    return (
        f"snapshot of {len(names)} clusters: inline {len(data) / 1e3:.1f} kB a signal, "
        f"{batch(snapshot) / 1e3:.1f} kB a sync_bundles batch of {bundles}; header "
        f"{len(header.model_dump_json()) / 1e3:.2f} kB a signal, {batch(header) / 1e3:.1f} kB "
        "a batch"
    )


def largest_events(
    histories_: dict[str, list[WorkflowHistory]], *, skip: str = ""
) -> tuple[int, str]:
    """The largest event of all runs, and where it is (workflow id, event type); the first
    event of ``skip``'s first run (the bench's own input) left out when named."""
    best, where = 0, ""
    for workflow_id, runs in histories_.items():
        for number, history in enumerate(runs):
            for index, event in enumerate(history.events):
                if workflow_id == skip and number == 0 and index == 0:
                    continue
                if event.ByteSize() > best:
                    best = event.ByteSize()
                    where = f"{workflow_id} {EventType.Name(event.event_type)}"
    return best, where


async def run_retarget(
    clusters: int,
    bundles: int,
    changes: int,
    *,
    shard_size: int,
    inline_limit: int | None,
    kind: str,
    times: DeployTimes | None = None,
    cluster_threads: int = DEFAULT_CLUSTER_THREADS,
) -> dict[str, float]:
    """Label changes through the real registry, GitRepo and bundles; with ``times`` each
    deploy takes a measured deploy time, at most ``cluster_threads`` at once (the worker's
    slots; the stand-ins wait on the event loop)."""
    load_before = os.getloadavg()
    strategy = RolloutStrategy.model_validate({"maxUnavailable": "10%", "autoPartitionSize": "10%"})
    standins = Retarget(strategy, bundles, times)
    slots: dict[str, Any] = (
        {"max_concurrent_activities": push_queue_slots(cluster_threads)} if times else {}
    )
    with (
        tempfile.TemporaryDirectory() as tmp_name,
        temporal_server(kind, Path(tmp_name) / "temporal") as server,
    ):
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        content = FileContentStore(Path(tmp_name) / "content")
        snapshots = SnapshotActivities(content)
        gitops = GitOpsActivities(
            client, FileSecretStore(Path(tmp_name) / "secrets"), content, Path(tmp_name) / "work"
        )
        deploys: list[Callable[..., Any]] = [
            standins.deploy_bundle,
            standins.wait_ready,
            standins.check_deployment,
            standins.remove_deployment,
        ]
        pool = ThreadPoolExecutor(max_workers=4)
        gc.set_threshold(*GC_THRESHOLDS)  # as FlotillaWorker.start does
        workers = [
            Worker(
                client,
                task_queue=QUEUE,
                workflows=[BundleWorkflow, GitRepoWorkflow, ClusterRegistryWorkflow],
                max_concurrent_workflow_tasks=DEFAULT_WORKFLOW_TASKS,
                activities=[
                    standins.plan_bundle,
                    standins.ls_remote,
                    standins.fetch_bundles,
                    gitops.sync_bundles,
                    gitops.sync_bundles_shared,
                    snapshots.store_snapshot,
                    snapshots.load_snapshot,
                    snapshots.split_snapshot,
                ],
                activity_executor=pool,
            ),
            *(
                Worker(client, task_queue=q, activities=deploys, **slots)
                for q in push_task_queues(QUEUE)
            ),
        ]
        async with asyncio.TaskGroup() as group:
            for worker in workers:
                group.create_task(worker.run())
            try:
                ns = f"scale-{uuid.uuid4().hex[:6]}"
                names = [f"c{i:05d}" for i in range(clusters)]
                print(inline_sizes(names, bundles), flush=True)
                registry = RegistryState(
                    namespace=ns,
                    inline_snapshot_limit=inline_limit,
                    clusters={
                        name: ClusterRecord(
                            name=name,
                            labels={"group": f"b{i % bundles}", "env": "prod"},
                            kubeconfig_secret=f"kc-{name}",
                        )
                        for i, name in enumerate(names)
                    },
                )
                await client.start_workflow(
                    ClusterRegistryWorkflow.run,
                    registry,
                    id=registry_workflow_id(ns),
                    task_queue=QUEUE,
                )
                spec_ = GitRepoSpec.model_validate(
                    {
                        "repo": "https://git.invalid/bench",
                        "branch": "main",
                        "pollingInterval": "3600s",
                    }
                )
                started = time.monotonic()
                gitrepo = await client.start_workflow(
                    GitRepoWorkflow.run,
                    GitRepoState(namespace=ns, name="bench", spec=spec_, monitor_seconds=3600),
                    id=gitrepo_workflow_id(ns, "bench"),
                    task_queue=QUEUE,
                )
                shown = time.monotonic()
                while standins.deploys < clusters:
                    await asyncio.sleep(0.5)
                    if time.monotonic() - shown > 30:
                        shown = time.monotonic()
                        print(
                            f"  {standins.deploys} deployed after {shown - started:.0f}s",
                            flush=True,
                        )
                settled = time.monotonic() - started
                print(
                    f"{bundles} bundles x {clusters} clusters settled in {settled:.1f}s", flush=True
                )
                await asyncio.sleep(10)  # reports and grants go quiet

                latencies, deploys_in, removals = [], [], []
                for number in range(changes):
                    if bundles == 1:
                        # One bundle: a cluster leaves its targets, then comes back.
                        cluster = names[(number // 2 * 997 + 13) % clusters]
                        old, new = ("b0", "none") if number % 2 == 0 else ("none", "b0")
                    else:
                        cluster = names[(number * 997 + 13) % clusters]
                        index = int(cluster[1:])
                        old = f"b{index % bundles}"
                        new = f"b{(index + 1 + number) % bundles}"
                        if old == new:
                            new = f"b{(index + 1) % bundles}"
                    began = time.monotonic()
                    await client.get_workflow_handle(registry_workflow_id(ns)).execute_update(
                        LABEL_CLUSTER_UPDATE,
                        LabelClusterRequest(name=cluster, set_labels={"group": new}),
                        result_type=RegistryChange,
                    )
                    deadline = began + 300
                    while time.monotonic() < deadline:
                        dep = standins.deployed.get((new, cluster), 0.0) if new != "none" else 0.0
                        rem = standins.removed.get((old, cluster), 0.0) if old != "none" else 0.0
                        if (new == "none" or dep > began) and (old == "none" or rem > began):
                            break
                        await asyncio.sleep(0.05)
                    else:
                        raise TimeoutError(f"{cluster} not moved from {old} to {new} in 300 s")
                    dep, rem = max(dep, began), max(rem, began)
                    if new != "none":
                        deploys_in.append(dep - began)
                    if old != "none":
                        removals.append(rem - began)
                    latencies.append(max(dep, rem) - began)
                    print(
                        f"change {number + 1}: {cluster} {old} -> {new}: deployed by {new} in "
                        f"{dep - began:.2f}s, removed by {old} in {rem - began:.2f}s",
                        flush=True,
                    )
                    await asyncio.sleep(2)
                load_after = os.getloadavg()

                ids = [registry_workflow_id(ns), gitrepo.id]
                for k in range(bundles):
                    bundle_id = bundle_workflow_id(ns, f"b{k}")
                    ids.append(bundle_id)
                    shards = (
                        (clusters + shard_size - 1) // shard_size if clusters > shard_size else 0
                    )
                    ids += [bundle_shard_workflow_id(bundle_id, i) for i in range(shards)]
                runs = {i: await histories(client, i) for i in ids}
                largest, where = largest_events(runs, skip=registry_workflow_id(ns))
                stores = sum(
                    1
                    for history in runs[registry_workflow_id(ns)]
                    for event in history.events
                    if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                    and event.activity_task_scheduled_event_attributes.activity_type.name
                    == "store_snapshot"
                )
                path = f"digest ({stores} stores)" if stores else "inline"
                print(f"temporal={kind} clusters={clusters} bundles={bundles} snapshot path={path}")
                print(
                    "deploys: stand-ins "
                    + (
                        f"taking measured times ({times.describe()})"
                        if times
                        else "answering at once"
                    )
                )
                print(
                    f"label change to moved (deployed by the new bundle and removed by the old): "
                    f"p50 {statistics.median(latencies):.2f}s, max {max(latencies):.2f}s over "
                    f"{len(latencies)}; deploy p50 {statistics.median(deploys_in or [0]):.2f}s, "
                    f"removal p50 {statistics.median(removals or [0]):.2f}s"
                )
                print(
                    f"largest event in the run: {largest / 1e3:.1f} kB ({where}; the registry's "
                    f"start input, {clusters} clusters put there by the bench, left out)"
                )
                rest = {i: r for i, r in runs.items() if i != registry_workflow_id(ns)}
                largest_rest, where_rest = largest_events(rest)
                print(
                    f"largest event outside the registry: {largest_rest / 1e3:.1f} kB "
                    f"({where_rest})"
                )
                print(f"snapshot cache: {snapshots.reads} store reads, {snapshots.hits} cache hits")
                print(
                    "load average (1, 5, 15 min) before: {:.2f} {:.2f} {:.2f}, after: "
                    "{:.2f} {:.2f} {:.2f}".format(*load_before, *load_after)
                )
                for workflow_id in ids:
                    with contextlib.suppress(Exception):
                        await client.get_workflow_handle(workflow_id).terminate(
                            "benchmark finished"
                        )
                return {
                    "settle s": settled,
                    "retarget p50 s": statistics.median(latencies),
                    "retarget max s": max(latencies),
                    "largest event kB": largest / 1e3,
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
    parser.add_argument("--retarget", action="store_true", help="time label changes instead")
    parser.add_argument(
        "--control",
        action="store_true",
        help="after both commits, time a second bundle's first commit on the same server "
        "(the server's own slow-down with what it holds, to compare the second commit with)",
    )
    parser.add_argument("--bundles", type=int, default=5, help="--retarget: bundles")
    parser.add_argument("--changes", type=int, default=5, help="--retarget: label changes")
    parser.add_argument(
        "--inline-limit",
        type=int,
        default=None,
        help="--retarget: the registry's inline snapshot limit in bytes (default: its own)",
    )
    parser.add_argument(
        "--latencies",
        type=Path,
        default=None,
        help="stand-in deploys take times drawn from this distribution (from "
        "profile_deploy.py --latencies; bench/deploy_latencies.json is the committed one), "
        "at most --cluster-threads at once; default: they answer at once",
    )
    parser.add_argument(
        "--cluster-threads",
        type=int,
        default=DEFAULT_CLUSTER_THREADS,
        help="with --latencies: applies at once, as the worker's --cluster-threads "
        f"(default {DEFAULT_CLUSTER_THREADS}, the worker's)",
    )
    parser.add_argument(
        "--cluster-tasks",
        type=int,
        default=DEFAULT_CLUSTER_TASKS,
        help="with --latencies: deploys in flight, waits for Ready included, as the worker's "
        f"--cluster-tasks (default {DEFAULT_CLUSTER_TASKS}, the worker's)",
    )
    parser.add_argument(
        "--real-clusters",
        type=int,
        default=0,
        help="that many of the clusters, spread over the names, are real local clusters "
        "(kube-apiserver, etcd, kwok) planned and deployed by the real planner and engine",
    )
    add_temporal_argument(parser)
    args = parser.parse_args()
    kinds = temporal_kinds(parser, args.temporal)
    if not 0 <= args.real_clusters <= args.clusters:
        parser.error(f"--real-clusters: {args.real_clusters}: must be 0 to --clusters")
    for flag, count in (
        ("--cluster-threads", args.cluster_threads),
        ("--cluster-tasks", args.cluster_tasks),
    ):
        if count < 1:
            parser.error(f"{flag}: {count}: must be at least 1")
    if args.retarget and args.real_clusters:
        parser.error("--real-clusters: not with --retarget (its clusters are stand-ins only)")
    times = DeployTimes(args.latencies) if args.latencies is not None else None
    logging.basicConfig(level=logging.WARNING)
    if args.retarget:
        retargets = {kind: [] for kind in kinds}  # type: dict[str, list[dict[str, float]]]
        for number in range(args.runs):
            for kind in kinds:
                print(f"\n== retarget run {number + 1} on {kind}", flush=True)
                retargets[kind].append(
                    asyncio.run(
                        run_retarget(
                            args.clusters,
                            args.bundles,
                            args.changes,
                            shard_size=args.shard_size,
                            inline_limit=args.inline_limit,
                            kind=kind,
                            times=times,
                            cluster_threads=args.cluster_threads,
                        )
                    )
                )
        print(
            f"\nmedians of {args.runs} run(s), {args.bundles} bundles x {args.clusters} clusters:"
        )
        for kind, found in retargets.items():
            figures = ", ".join(
                f"{name} {statistics.median(r[name] for r in found):.2f}" for name in found[0]
            )
            print(f"  {kind}: {figures}")
        return
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for number in range(args.runs):
        for kind in kinds:
            print(f"\n== run {number + 1} on {kind}", flush=True)
            results[kind].append(
                asyncio.run(
                    run(
                        args.clusters,
                        args.shard_size,
                        kind,
                        args.control,
                        times=times,
                        cluster_threads=args.cluster_threads,
                        cluster_tasks=args.cluster_tasks,
                        real_clusters=args.real_clusters,
                    )
                )
            )
    print(f"\nmedians of {args.runs} run(s), 1 bundle x {args.clusters} clusters:")
    for kind, runs in results.items():
        figures = ", ".join(
            f"{name} {statistics.median(r[name] for r in runs):.2f}" for name in runs[0]
        )
        print(f"  {kind}: {figures}")
        # The machine's speed drifts between runs more than the update differs from the
        # install, so the goal "second commit <= the first" is read run by run.
        paired = [r["second commit s"] - r["first commit s"] for r in runs]
        print(
            f"  {kind}: second - first commit per run "
            f"{', '.join(f'{d:+.1f}' for d in paired)} s, median {statistics.median(paired):+.1f} s"
        )


if __name__ == "__main__":
    main()
