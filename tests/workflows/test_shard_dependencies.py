"""Sharded bundles and what their GitRepo needs of them (issue 12): per-cluster states for
``dependsOn`` and ``readyClusters``, in bounded payloads.

The bundles are real ``BundleWorkflow``s on the session's dev server with the stand-in
activities of ``test_bundle_standins.py``; a small stand-in GitRepo keeps their reports and
forwards a dependency's to its dependent packed, as ``GitRepoWorkflow`` does (that code is
covered with real components by tests/e2e/test_depends_upgrade.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities.content import FileContentStore
from activities.gitops_models import (
    LOAD_SNAPSHOT,
    SPLIT_SNAPSHOT,
    DependencyRef,
    LoadSnapshotRequest,
    SplitSnapshotRequest,
    SplitSnapshotResult,
    StoreSnapshotRequest,
)
from activities.snapshots import SnapshotActivities
from flotilla.clusterstates import cluster_index, expand_report, states_by_position
from flotilla.ids import (
    bundle_shard_workflow_id,
    bundle_workflow_id,
    gitrepo_workflow_id,
    push_task_queues,
)
from flotilla.snapshots import snapshot_delta, snapshot_header
from flotilla.status import BundleReport, BundleState, summarize_gitrepo
from tests.e2e.harness import history_text, record_history
from tests.workflows.test_bundle_shards import histories
from tests.workflows.test_bundle_standins import StandIns, eventually, serve_queue
from workflows.bundle import BUNDLE_REPORT_SIGNAL, REFRESH_SIGNAL, BundleWorkflow
from workflows.bundle_models import (
    BundleRefresh,
    BundleSpec,
    BundleStatus,
    BundleStatusRequest,
    BundleWorkflowState,
    DependencyStates,
)
from workflows.bundle_shards import (
    LOADED_DEPENDENCIES_PATCH,
    SHARD_DIGEST_STATES_PATCH,
    SHARD_STATES_PATCH,
)
from workflows.registry_models import ClusterSnapshot, ClusterView

CLUSTERS = [f"c{i:03d}" for i in range(200)]
# db fails on these (one in shard 1, two in shard 3) until the test lets it succeed.
BROKEN = ["c060", "c170", "c171"]


@workflow.defn(name="DependencyRelay", sandboxed=False)
class DependencyRelay:
    """Stands where the GitRepo workflow is: keeps each bundle's last report and sends a
    dependency's states, packed as reported, to the bundles that depend on it."""

    def __init__(self) -> None:
        self.reports: dict[str, BundleReport] = {}
        self.dependents: dict[str, list[str]] = {}
        self.namespace = ""
        self.pending: list[str] = []
        self.largest = 0

    @workflow.run
    async def run(self, namespace: str, dependents: dict[str, list[str]]) -> None:
        self.namespace, self.dependents = namespace, dependents
        while True:
            await workflow.wait_condition(lambda: bool(self.pending))
            name = self.pending.pop(0)
            report = self.reports[name]
            update = DependencyStates(
                bundle=name,
                states=report.states,
                commit=report.commit,
                clusters_key=report.clusters_key,
                codes=report.codes,
                counts=report.counts,
            )
            self.largest = max(self.largest, len(update.model_dump_json()))
            for dependent in self.dependents.get(name, []):
                handle = workflow.get_external_workflow_handle(
                    bundle_workflow_id(self.namespace, dependent)
                )
                await handle.signal("dependency_states", update)

    @workflow.signal(name=BUNDLE_REPORT_SIGNAL)
    def report(self, report: BundleReport) -> None:
        self.reports[report.bundle] = report
        self.largest = max(self.largest, len(report.model_dump_json()))
        if report.bundle in self.dependents:
            self.pending.append(report.bundle)

    @workflow.query
    def last(self) -> dict[str, BundleReport]:
        return self.reports

    @workflow.query
    def largest_payload(self) -> int:
        return self.largest


def _spec(bundle: str, version: int, depends_on: list[str] | None = None) -> BundleSpec:
    return BundleSpec(
        gitrepo="repo",
        commit=f"commit-{version}",
        bundle_digest=f"{bundle[0]}{version}" * 32,
        depends_on=[DependencyRef(bundle=name) for name in depends_on or []],
    )


@dataclass
class Fleet:
    client: Client
    namespace: str
    relay: WorkflowHandle[DependencyRelay, None]
    bundles: dict[str, WorkflowHandle[BundleWorkflow, None]]
    task_queue: str = ""

    async def status(self, bundle: str) -> BundleStatus:
        return await self.bundles[bundle].query(BundleWorkflow.status, BundleStatusRequest())

    async def reports(self) -> dict[str, BundleReport]:
        return await self.relay.query(DependencyRelay.last)

    async def release(self, bundle: str, version: int, depends_on: list[str] | None = None) -> None:
        await self.bundles[bundle].signal(
            BundleWorkflow.refresh, BundleRefresh(spec=_spec(bundle, version, depends_on))
        )


@pytest.fixture
async def fleet(
    temporal_client: Client, task_queue: str
) -> AsyncIterator[Callable[..., Awaitable[Fleet]]]:
    async with contextlib.AsyncExitStack() as stack:

        async def started(
            standins: StandIns,
            bundles: dict[str, list[str]],
            shard_sizes: dict[str, int],
            snapshot: ClusterSnapshot | None = None,
            activities: Sequence[Callable[..., Any]] = (),
        ) -> Fleet:
            ns = f"sd-{uuid.uuid4().hex[:8]}"
            await stack.enter_async_context(
                Worker(
                    temporal_client,
                    task_queue=task_queue,
                    workflows=[BundleWorkflow, DependencyRelay],
                    activities=[standins.plan_bundle, standins.downstream_digest, *activities],
                )
            )
            for queue in push_task_queues(task_queue):
                await serve_queue(stack, temporal_client, standins, queue)
            dependents: dict[str, list[str]] = {}
            for name, deps in bundles.items():
                for dep in deps:
                    dependents.setdefault(dep, []).append(name)
            relay = await temporal_client.start_workflow(
                DependencyRelay.run,
                args=[ns, dependents],
                id=gitrepo_workflow_id(ns, "repo"),
                task_queue=task_queue,
            )
            stack.push_async_callback(_terminate, relay)
            if snapshot is None:
                snapshot = ClusterSnapshot(
                    namespace=ns,
                    version=1,
                    clusters=[ClusterView(name=c) for c in standins.clusters],
                )
            handles = {}
            for name, deps in bundles.items():
                state = BundleWorkflowState(
                    namespace=ns,
                    bundle=name,
                    gitrepo_workflow_id=gitrepo_workflow_id(ns, "repo"),
                    retry_seconds=0.5,
                    monitor_seconds=3600,
                    shard_size=shard_sizes.get(name),
                )
                handles[name] = await temporal_client.start_workflow(
                    BundleWorkflow.run,
                    state,
                    id=bundle_workflow_id(ns, name),
                    task_queue=task_queue,
                    start_signal=REFRESH_SIGNAL,
                    start_signal_args=[BundleRefresh(spec=_spec(name, 1, deps), clusters=snapshot)],
                )
                stack.push_async_callback(_terminate, handles[name])
                for index in range(8):
                    shard = bundle_shard_workflow_id(handles[name].id, index)
                    stack.push_async_callback(
                        _terminate, temporal_client.get_workflow_handle(shard)
                    )
            return Fleet(temporal_client, ns, relay, handles, task_queue)

        yield started


async def _terminate(handle: WorkflowHandle) -> None:  # type: ignore[type-arg]
    with contextlib.suppress(Exception):
        await handle.terminate("test finished")


def _deploys(standins: StandIns, bundle: str, version: int) -> dict[str, float]:
    """cluster -> when the stand-in deploy of ``bundle``'s ``version`` started."""
    digest = f"{bundle[0]}{version}" * 10
    return {w.cluster: w.started for w in standins.windows if digest in w.deployment_id}


def _ready_at(standins: StandIns, bundle: str, version: int) -> dict[str, float]:
    digest = f"{bundle[0]}{version}" * 10
    return {
        w.cluster: w.ready
        for w in standins.windows
        if digest in w.deployment_id and w.ready is not None
    }


@pytest.mark.parametrize(
    ("db_shards", "app_shards"),
    [(50, 50), (50, None), (None, 50)],
    ids=["both-sharded", "dependency-sharded", "dependent-sharded"],
)
async def test_depends_on_holds_per_cluster_across_shards(
    fleet: Callable[..., Awaitable[Fleet]], db_shards: int | None, app_shards: int | None
) -> None:
    """app dependsOn db, 200 clusters, shard size 50 for the sharded one(s): app deploys to
    a cluster only after db is Ready there, and while db keeps failing on three clusters
    (in two shards) app runs everywhere else and waits there (WaitingForDependency); once
    db succeeds there, app follows. The GitRepo's readyClusters counts the sharded
    bundles' clusters (197 of 200 while db fails, then 200). No payload between the bundles
    and their GitRepo carries an entry per cluster."""
    standins = StandIns(
        clusters=CLUSTERS,
        ready_at_deploy=True,
        ready_after=0.05,
        failures={c: ["helm upgrade failed: db migration refused"] * 10_000 for c in BROKEN},
    )
    sizes = {k: v for k, v in (("db", db_shards), ("app", app_shards)) if v is not None}
    f = await fleet(standins, {"db": [], "app": ["db"]}, sizes)

    def ready(bundle: str, n: int) -> Callable[[BundleStatus], bool]:
        return lambda s: s.commit == "commit-1" and s.ready == n and s.desired == 200

    await eventually(lambda: f.status("db"), ready("db", 197), timeout=240)
    await eventually(lambda: f.status("app"), ready("app", 197), timeout=240)
    app = _deploys(standins, "app", 1)
    db = _ready_at(standins, "db", 1)
    assert sorted(app) == sorted(set(CLUSTERS) - set(BROKEN))
    late = [c for c, started in app.items() if started < db[c]]
    assert late == [], f"app deployed before db was Ready on {late[:5]}"

    # The GitRepo's view: readyClusters from the packed per-cluster states of both bundles.
    index = cluster_index(CLUSTERS)

    def summary(reports: dict[str, BundleReport]) -> tuple[int, int]:
        expanded = {name: expand_report(r, index) for name, r in reports.items()}
        refs = [_Ref(name) for name in sorted(reports)]
        s = summarize_gitrepo(refs, expanded, commit="commit-1")
        return s.ready_clusters, s.desired_ready_clusters

    reports = await eventually(
        f.reports, lambda r: len(r) == 2 and summary(r) == (197, 200), timeout=60
    )
    for report in reports.values():
        assert report.clusters_key == index.key and not report.states
        assert len(report.model_dump_json()) < 2_000
    if app_shards is None:
        waiting = {c.cluster: c.message for c in (await f.status("app")).clusters}
        assert all("db" in waiting[c] for c in BROKEN), waiting
    states = expand_report(reports["app"], index).states
    assert {c: states[c] for c in BROKEN} == dict.fromkeys(
        BROKEN, BundleState.WAITING_FOR_DEPENDENCY
    )

    for cluster in BROKEN:
        standins.failures[cluster].clear()
    await eventually(lambda: f.status("app"), ready("app", 200), timeout=240)
    app, db = _deploys(standins, "app", 1), _ready_at(standins, "db", 1)
    assert all(app[c] >= db[c] for c in BROKEN)
    await eventually(f.reports, lambda r: summary(r) == (200, 200), timeout=60)
    assert await f.relay.query(DependencyRelay.largest_payload) < 2_000

    for name, shards in (("db", db_shards), ("app", app_shards)):
        if shards is None:
            continue
        runs = await histories(f.client, f.bundles[name].id)
        assert SHARD_STATES_PATCH in history_text(runs[0])
        record = os.environ.get("FLOTILLA_RECORD_HISTORIES")
        if record and db_shards and app_shards and name == "app":
            Path(record).mkdir(parents=True, exist_ok=True)
            (Path(record) / "bundle-shards-depends-on.json").write_text(runs[0].to_json())
            shard = await histories(f.client, bundle_shard_workflow_id(f.bundles[name].id, 3))
            (Path(record) / "bundle-shards-depends-on-shard.json").write_text(shard[0].to_json())


@dataclass(frozen=True)
class _Ref:
    name: str
    path: str = ""
    error: str = ""


@pytest.mark.parametrize("app_shards", [50, 1_000], ids=["both-sharded", "dependency-sharded"])
async def test_depends_on_a_sharded_bundle_whose_snapshot_came_by_digest(
    fleet: Callable[..., Awaitable[Fleet]], tmp_path: Path, app_shards: int
) -> None:
    """As above, with the snapshot in the content store (as every snapshot over the inline
    limit, about 3,000 clusters): db, sharded, never sees a cluster's name, yet its report
    carries its states packed against the whole list (joined by position from the keys and
    sizes ``split_snapshot`` returns). app, sharded too or not, deploys to a cluster only once
    db is Ready there; while db fails on three clusters app waits there and runs everywhere
    else. A GitRepo that has only the registry's header (the list's key and size, no name)
    counts readyClusters from the reports by position: 197 of 200, then 200."""
    store = SnapshotActivities(FileContentStore(tmp_path / "content"))
    whole = ClusterSnapshot(
        namespace="ns", version=1, clusters=[ClusterView(name=c) for c in CLUSTERS]
    )
    stored = store.store_snapshot(StoreSnapshotRequest(delta=snapshot_delta(None, "", whole)))
    header = snapshot_header(whole, stored.digest, stored.stored_bytes, stored.clusters_key)

    # The real activities, on this loop's thread pool (the fixture's worker has no executor).
    @activity.defn(name=LOAD_SNAPSHOT)
    async def load_snapshot(request: LoadSnapshotRequest) -> ClusterSnapshot:
        return await asyncio.to_thread(store.load_snapshot, request)

    @activity.defn(name=SPLIT_SNAPSHOT)
    async def split_snapshot(request: SplitSnapshotRequest) -> SplitSnapshotResult:
        return await asyncio.to_thread(store.split_snapshot, request)

    standins = StandIns(
        clusters=CLUSTERS,
        ready_at_deploy=True,
        ready_after=0.05,
        failures={c: ["helm upgrade failed: db migration refused"] * 10_000 for c in BROKEN},
    )
    f = await fleet(
        standins,
        {"db": [], "app": ["db"]},
        {"db": 50, "app": app_shards},
        snapshot=header,
        activities=[load_snapshot, split_snapshot],
    )

    def ready(n: int) -> Callable[[BundleStatus], bool]:
        return lambda s: s.commit == "commit-1" and s.ready == n and s.desired == 200

    await eventually(lambda: f.status("db"), ready(197), timeout=240)
    await eventually(lambda: f.status("app"), ready(197), timeout=240)
    app, db = _deploys(standins, "app", 1), _ready_at(standins, "db", 1)
    assert sorted(app) == sorted(set(CLUSTERS) - set(BROKEN))
    late = [c for c, started in app.items() if started < db[c]]
    assert late == [], f"app deployed before db was Ready on {late[:5]}"

    # The GitRepo's view, from the header alone: the list's key and size.
    assert header.clusters_key == cluster_index(CLUSTERS).key and not header.clusters

    def read(report: BundleReport) -> dict[int, BundleState]:
        return states_by_position(report, header.clusters_key, header.cluster_count)

    def summary(reports: dict[str, BundleReport]) -> tuple[int, int]:
        refs = [_Ref(name) for name in sorted(reports)]
        s = summarize_gitrepo(refs, reports, commit="commit-1", by_position=read)
        return s.ready_clusters, s.desired_ready_clusters

    db_packed = await eventually(f.reports, lambda r: "db" in r and bool(read(r["db"])), timeout=60)
    assert db_packed["db"].clusters_key == header.clusters_key and not db_packed["db"].states
    if app_shards == 50:
        reports = await eventually(
            f.reports, lambda r: len(r) == 2 and summary(r) == (197, 200), timeout=60
        )
        assert all(len(r.model_dump_json()) < 2_000 for r in reports.values())
    else:
        # app is not sharded: it loads the list, reads db's states with it, and reports its
        # own unpacked (the GitRepo has no names to pack them against).
        waiting = {c.cluster: c.message for c in (await f.status("app")).clusters}
        assert all("db" in waiting[c] for c in BROKEN), waiting

    for cluster in BROKEN:
        standins.failures[cluster].clear()
    await eventually(lambda: f.status("app"), ready(200), timeout=240)
    app, db = _deploys(standins, "app", 1), _ready_at(standins, "db", 1)
    assert all(app[c] >= db[c] for c in BROKEN)
    if app_shards == 50:
        await eventually(f.reports, lambda r: summary(r) == (200, 200), timeout=60)
        assert await f.relay.query(DependencyRelay.largest_payload) < 2_000

    else:
        await _bundle_added_after_its_dependency_settled(f, standins, header)

    sharded = ["db", "app"] if app_shards == 50 else ["db"]
    for name in sharded:
        runs = await histories(f.client, f.bundles[name].id)
        assert SHARD_DIGEST_STATES_PATCH in history_text(runs[0])
    if app_shards == 50:
        runs = await histories(f.client, f.bundles["app"].id)
        record_history(runs[0], "bundle-shards-by-digest-depends-on.json")


async def _bundle_added_after_its_dependency_settled(
    f: Fleet, standins: StandIns, header: ClusterSnapshot
) -> None:
    """web, not sharded, joins once db is Ready everywhere and says nothing more: the
    refresh that starts web brings db's packed states (as the GitRepo's does) before web
    has loaded its clusters, so web reads them once it has, and deploys everywhere."""
    update = await f.relay.query(DependencyRelay.last)
    db = update["db"]
    assert db.codes and db.state is BundleState.READY
    refresh = BundleRefresh(
        spec=_spec("web", 1, ["db"]),
        clusters=header,
        dependency_packed=[
            DependencyStates(
                bundle="db",
                states=db.states,
                commit=db.commit,
                clusters_key=db.clusters_key,
                codes=db.codes,
                counts=db.counts,
            )
        ],
    )
    web = await f.client.start_workflow(
        BundleWorkflow.run,
        BundleWorkflowState(
            namespace=f.namespace,
            bundle="web",
            gitrepo_workflow_id=gitrepo_workflow_id(f.namespace, "repo"),
            retry_seconds=0.5,
            monitor_seconds=3600,
            shard_size=1_000,
        ),
        id=bundle_workflow_id(f.namespace, "web"),
        task_queue=f.task_queue,
        start_signal=REFRESH_SIGNAL,
        start_signal_args=[refresh],
    )
    try:
        status = await eventually(
            lambda: web.query(BundleWorkflow.status, BundleStatusRequest()),
            lambda s: s.ready == 200,
            timeout=240,
        )
        assert status.state is BundleState.READY
        ready = _ready_at(standins, "db", 1)
        assert all(started >= ready[c] for c, started in _deploys(standins, "web", 1).items())
        history = await web.fetch_history()
        assert LOADED_DEPENDENCIES_PATCH in history_text(history)
        record_history(history, "bundle-by-digest-dependencies-after-load.json")
    finally:
        await _terminate(web)
