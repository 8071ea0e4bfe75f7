"""A registry snapshot over the inline limit travels by digest, end to end (issue 12).

The real worker (registry, GitRepo, bundle workflows and the snapshot activities on a file
content store) and a real git daemon; 200 agent-mode clusters whose agents never start, so
their deployments are planned and held (no deploy runs), which is all targeting needs. The
registry's inline limit is lowered to 4 kB by its state (test switch), so a 200-cluster
snapshot (~14 kB) takes the digest path that 10,000 clusters take by default.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from activities.content import FileContentStore
from activities.gitops_models import (
    LOAD_SNAPSHOT,
    SPLIT_SNAPSHOT,
    SYNC_BUNDLES,
    SYNC_BUNDLES_SHARED,
    LoadSnapshotRequest,
    SplitSnapshotRequest,
    SplitSnapshotResult,
    StoreSnapshotRequest,
)
from activities.snapshots import SnapshotActivities
from devenv.gitserver import GitDaemon
from flotilla.ids import (
    bundle_shard_workflow_id,
    bundle_workflow_id,
    gitrepo_workflow_id,
    registry_workflow_id,
)
from flotilla.models import GitRepo, load_fleet_objects
from flotilla.snapshots import ClusterSnapshot, ClusterView, snapshot_delta, snapshot_header
from flotilla.status import BundleState
from tests.e2e.harness import Flotilla, activity_calls, gitrepo_yaml, history_text, record_history
from tests.workflows.test_bundle_shards import PlanLog, histories
from tests.workflows.test_bundle_standins import (  # noqa: F401 (the fixture)
    Bundle,
    eventually,
    start,
)
from workflows.bundle import BundleWorkflow
from workflows.bundle_models import BundleRefresh, BundleStatus, BundleStatusRequest
from workflows.gitrepo import (
    SNAPSHOT_ONCE_PER_BATCH_PATCH,
    SYNC_BY_SIZE_PATCH,
    UNREAD_DEPENDENCIES_PATCH,
)
from workflows.registry import SNAPSHOT_BY_DIGEST_PATCH as REGISTRY_PATCH
from workflows.registry import SNAPSHOT_KEY_PATCH as REGISTRY_KEY_PATCH
from workflows.registry_models import REGISTRY_WORKFLOW, RegistryState
from workflows.snapshots import SNAPSHOT_BY_DIGEST_PATCH as BUNDLE_PATCH

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {k: v}\n"
CLUSTERS = [f"c{i:03d}" for i in range(200)]


def signals(history: WorkflowHistory, name: str) -> list[int]:
    """The payload sizes (bytes) of each ``name`` signal in ``history``."""
    return [
        e.ByteSize()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        and e.workflow_execution_signaled_event_attributes.signal_name == name
    ]


def activities(history: WorkflowHistory, name: str) -> list[int]:
    """The input sizes (bytes) of each ``name`` activity scheduled in ``history``."""
    return [
        e.ByteSize()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == name
    ]


def results(history: WorkflowHistory, name: str) -> list[int]:
    """The result sizes (bytes) of each ``name`` activity completed in ``history``."""
    scheduled = {
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == name
    }
    return [
        e.ByteSize()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
        and e.activity_task_completed_event_attributes.scheduled_event_id in scheduled
    ]


async def test_a_label_change_retargets_by_digest_and_payloads_stay_small(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str
) -> None:
    """Half of 200 clusters carry env=prod, which the GitRepo targets. The registry stores
    its snapshot and signals a header; the bundle loads the clusters and plans 100. A label
    change moves c001 into the targets and c000 out of them: the bundle follows each. No
    signal carries the cluster list (each under 2 kB where the list is ~14 kB), the
    registry's stores after the first carry only the change, and the GitRepo shows the
    bundle's deployments (its reports are readable without the list). With
    FLOTILLA_RECORD_HISTORIES=DIR the registry's and the bundle's histories go there."""
    ns = flotilla.namespace
    await flotilla.client.start_workflow(
        REGISTRY_WORKFLOW,
        RegistryState(namespace=ns, inline_snapshot_limit=4_000),
        id=registry_workflow_id(ns),
        task_queue=flotilla.config.task_queue,
    )
    for i, name in enumerate(CLUSTERS):
        labels = {"env": "prod" if i % 2 == 0 else "dev", "zone": f"z{i % 7}"}
        await flotilla.control.add_cluster(ns, name, None, labels=labels)
    url = git_daemon.create_repo(repo_name, {"cm.yaml": CM})
    selector = {"clusterSelector": {"matchLabels": {"env": "prod"}}}
    await flotilla.control.apply_text(
        gitrepo_yaml(ns, "repo", url, targets=[selector]), file="gitrepo.yaml"
    )

    def targeted(names: list[str]) -> Callable[[BundleStatus], bool]:
        return lambda b: sorted(c.cluster for c in b.clusters) == sorted(names)

    prod = CLUSTERS[0::2]
    await flotilla.eventually(
        lambda: flotilla.control.bundle_status(ns, "repo"), targeted(prod), timeout=180
    )

    await flotilla.control.label_cluster(ns, "c001", {"env": "prod"}, [])
    await flotilla.eventually(
        lambda: flotilla.control.bundle_status(ns, "repo"),
        targeted(sorted([*prod, "c001"])),
        timeout=60,
    )
    await flotilla.control.label_cluster(ns, "c000", {"env": "dev"}, [])
    after = sorted([*prod[1:], "c001"])
    bundle = await flotilla.eventually(
        lambda: flotilla.control.bundle_status(ns, "repo"), targeted(after), timeout=60
    )
    assert bundle.desired == 100
    status = await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "repo"),
        lambda s: s.desired_ready_clusters == 100,
        timeout=60,
    )
    assert status.bundles[0].name == "repo"

    client = flotilla.client
    registry = await client.get_workflow_handle(registry_workflow_id(ns)).fetch_history()
    gitrepo = await client.get_workflow_handle(gitrepo_workflow_id(ns, "repo")).fetch_history()
    bundle_history = await client.get_workflow_handle(
        bundle_workflow_id(ns, "repo")
    ).fetch_history()
    inline = 200 * 60  # bytes the cluster list takes as JSON, at least
    assert REGISTRY_PATCH in history_text(registry)
    assert BUNDLE_PATCH in history_text(bundle_history)
    stores = activities(registry, "store_snapshot")
    assert stores[0] > inline  # the first store of this run: the whole snapshot, once
    assert len(stores) >= 3 and max(stores[1:]) < 2_000, stores  # then the changes only
    assert max(signals(gitrepo, "clusters_changed")) < 2_000
    assert max(signals(bundle_history, "refresh")) < 2_000
    assert max(activities(gitrepo, SYNC_BUNDLES_SHARED)) < 4_000
    # The whole list is loaded (and in this history) once per snapshot by the bundle only.
    assert len(activities(bundle_history, "load_snapshot")) >= 3
    assert max(e.ByteSize() for e in gitrepo.events) < inline
    assert '"c000"' not in json.dumps(json.loads(gitrepo.to_json())["events"][:5])

    record = os.environ.get("FLOTILLA_RECORD_HISTORIES")
    if record:
        Path(record).mkdir(parents=True, exist_ok=True)
        (Path(record) / "registry-snapshot-by-digest.json").write_text(registry.to_json())
        (Path(record) / "bundle-snapshot-by-digest.json").write_text(bundle_history.to_json())


async def test_a_sharded_bundle_hands_out_stored_parts_and_a_label_change_reaches_one_shard(
    start: Callable[..., Awaitable[Bundle]],  # noqa: F811
    tmp_path: Path,
) -> None:
    """200 clusters by digest, shard size 50: the bundle never holds the list; an activity
    cuts it into four stored parts and each shard loads its own (one plan of 50 each). A
    snapshot where one cluster's labels changed reaches only the shard that owns it (one
    more plan, of its 50), and no event of the bundle or its shards carries more than a
    part. With FLOTILLA_RECORD_HISTORIES=DIR the bundle's first run goes there."""
    store = SnapshotActivities(FileContentStore(tmp_path / "content"))

    def stored(version: int, relabel: str = "") -> ClusterSnapshot:
        snapshot = ClusterSnapshot(
            namespace="ns",
            version=version,
            clusters=[
                ClusterView(name=c, labels={"zone": "b" if c == relabel else "a"}) for c in CLUSTERS
            ],
        )
        done = store.store_snapshot(StoreSnapshotRequest(delta=snapshot_delta(None, "", snapshot)))
        return snapshot_header(snapshot, done.digest, done.stored_bytes)

    # The real activities, on this loop's thread pool (the fixture's worker has no executor).
    @activity.defn(name=LOAD_SNAPSHOT)
    async def load_snapshot(request: LoadSnapshotRequest) -> ClusterSnapshot:
        return await asyncio.to_thread(store.load_snapshot, request)

    @activity.defn(name=SPLIT_SNAPSHOT)
    async def split_snapshot(request: SplitSnapshotRequest) -> SplitSnapshotResult:
        return await asyncio.to_thread(store.split_snapshot, request)

    standins = PlanLog(clusters=CLUSTERS, ready_at_deploy=True)
    bundle = await start(
        standins,
        shard_size=50,
        snapshot=stored(1),
        activities=[load_snapshot, split_snapshot],
    )

    async def status() -> BundleStatus:
        return await bundle.handle.query(BundleWorkflow.status, BundleStatusRequest())

    await eventually(status, lambda s: s.ready == 200 and s.state is BundleState.READY, timeout=240)
    assert sorted(len(p) for p in standins.plans) == [50, 50, 50, 50]

    await bundle.handle.signal(
        BundleWorkflow.refresh, BundleRefresh(clusters=stored(2, relabel="c120"))
    )
    await eventually(standins.calls_now, lambda calls: calls["plan_bundle", ""] == 5)
    await asyncio.sleep(3)  # time for any other shard to replan, which must not happen
    assert len(standins.plans) == 5
    assert standins.plans[4] == CLUSTERS[100:150]
    await eventually(status, lambda s: s.ready == 200 and s.state is BundleState.READY)
    assert len(standins.windows) == 200  # nothing redeployed

    ids = [bundle.handle.id] + [bundle_shard_workflow_id(bundle.handle.id, i) for i in range(4)]
    runs = {i: await histories(bundle.client, i) for i in ids}
    first = runs[bundle.handle.id][0]
    assert BUNDLE_PATCH in history_text(first)
    assert len(activities(first, "split_snapshot")) == 2
    # The list as JSON, which the inline path sent to the bundle and on to its shards.
    whole = len(stored(2).model_copy(update={"clusters": []}).model_dump_json()) + len(
        ClusterSnapshot(
            namespace="ns", clusters=[ClusterView(name=c) for c in CLUSTERS]
        ).model_dump_json()
    )
    largest = max(e.ByteSize() for chain in runs[bundle.handle.id] for e in chain.events)
    assert largest < whole / 2, (largest, whole)  # the bundle never holds the list
    shards = [h for i in ids[1:] for h in runs[i]]
    assert max(max(signals(h, "refresh"), default=0) for h in shards) < 2_000
    loads = [size for h in shards for size in results(h, "load_snapshot")]
    assert len(loads) >= 5 and max(loads) < whole / 2  # a part each, never the whole list
    record = os.environ.get("FLOTILLA_RECORD_HISTORIES")
    if record:
        Path(record).mkdir(parents=True, exist_ok=True)
        (Path(record) / "bundle-shards-by-digest.json").write_text(first.to_json())


async def test_sharded_bundles_by_digest_count_in_the_gitrepo_and_reach_their_dependents(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str
) -> None:
    """The real registry, GitRepo and bundle workflows: 200 agent clusters whose agents
    never start (deploys held), the registry's inline limit at 4 kB and the bundles' shard
    size at 50 (test switches), two bundles, app dependsOn db. The registry's header names
    the list's key (no name); each bundle, sharded, reports its states joined from its
    shards' packed against it; the GitRepo counts them by position (desiredReadyClusters
    200, none Ready) and forwards db's to app packed as stored, which app cuts into its
    shards' parts. With FLOTILLA_RECORD_HISTORIES=DIR the registry's and the GitRepo's
    histories go there."""
    ns = flotilla.namespace
    await flotilla.client.start_workflow(
        REGISTRY_WORKFLOW,
        RegistryState(namespace=ns, inline_snapshot_limit=4_000),
        id=registry_workflow_id(ns),
        task_queue=flotilla.config.task_queue,
    )
    for name in CLUSTERS:
        await flotilla.control.add_cluster(ns, name, None, labels={"env": "prod"})
    url = git_daemon.create_repo(
        repo_name,
        {
            "db/cm.yaml": CM,
            "db/fleet.yaml": "namespace: db\n",
            "app/cm.yaml": CM,
            "app/fleet.yaml": "namespace: app\ndependsOn: [{name: repo-db}]\n",
        },
    )
    selector = {"clusterSelector": {"matchLabels": {"env": "prod"}}}
    (gitrepo,), _ = load_fleet_objects(
        gitrepo_yaml(ns, "repo", url, targets=[selector]), file="gitrepo.yaml"
    )
    assert isinstance(gitrepo, GitRepo)
    await flotilla.control.apply_gitrepo(gitrepo, bundle_shard_size=50)

    status = await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "repo"),
        lambda s: all(b.desired == 200 for b in s.bundles) and s.desired_ready_clusters == 200,
        timeout=240,
    )
    # Counted by position: both bundles on the same 200 clusters, no agent ever started.
    assert len(status.bundles) == 2 and status.ready_clusters == 0

    client = flotilla.client
    app = bundle_workflow_id(ns, "repo-app")

    async def packed_to_shards() -> list[list[dict[str, Any]]]:
        """Per shard of app, the dependency states its refreshes brought packed."""
        out = []
        for i in range(4):
            handle = client.get_workflow_handle(bundle_shard_workflow_id(app, i))
            history = await handle.fetch_history()
            out.append(
                [
                    update
                    for e in history.events
                    if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
                    and e.workflow_execution_signaled_event_attributes.signal_name == "refresh"
                    for update in json.loads(
                        e.workflow_execution_signaled_event_attributes.input.payloads[0].data
                    ).get("dependency_packed", [])
                ]
            )
        return out

    def whole_parts(packed: list[list[dict[str, Any]]]) -> bool:
        """Each shard has db's states on all 50 clusters of its part (all held there)."""
        return all(updates and sum(updates[-1]["counts"].values()) == 50 for updates in packed)

    # db's states reached every shard of app, cut into its part: packed, no name.
    packed = await flotilla.eventually(packed_to_shards, whole_parts, timeout=120)
    for updates in packed:
        assert all(u["bundle"] == "repo-db" and u["codes"] and not u["states"] for u in updates)

    registry = await client.get_workflow_handle(registry_workflow_id(ns)).fetch_history()
    gitrepo_history = await client.get_workflow_handle(
        gitrepo_workflow_id(ns, "repo")
    ).fetch_history()
    assert REGISTRY_KEY_PATCH in history_text(registry)
    assert UNREAD_DEPENDENCIES_PATCH in history_text(gitrepo_history)
    assert max(e.ByteSize() for e in gitrepo_history.events) < 200 * 60  # never the list
    record_history(registry, "registry-snapshot-names-key.json")
    record_history(gitrepo_history, "gitrepo-forwards-unread-packed-states.json")


def prod_gitrepo(ns: str, git_daemon: GitDaemon, repo_name: str, bundles: list[str]) -> GitRepo:
    """GitRepo ``repo`` of a new git repository with one ConfigMap bundle per name (each in
    its own namespace), targeting the clusters labelled env=prod."""
    files = {f"{b}/cm.yaml": CM for b in bundles}
    files.update({f"{b}/fleet.yaml": f"namespace: {b}\n" for b in bundles})
    url = git_daemon.create_repo(repo_name, files)
    selector = {"clusterSelector": {"matchLabels": {"env": "prod"}}}
    (gitrepo,), _ = load_fleet_objects(
        gitrepo_yaml(ns, "repo", url, targets=[selector]), file="gitrepo.yaml"
    )
    assert isinstance(gitrepo, GitRepo)
    return gitrepo


async def test_a_gitrepo_signals_its_bundles_in_batches_that_stay_small(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str
) -> None:
    """A count of bundles per ``sync_bundles`` is no bound on its input: each refresh
    carried the cluster snapshot inline (up to 256 kB; 50 bundles on 500 clusters made
    1.5 MB, and past 2 MB Temporal refuses it), and the specs still differ in size. The
    GitRepo cuts its batches by size too, the snapshot (once per batch now) counted once (the
    test switch ``sync_batch_bytes`` at 4 kB here; 512 kB by default): six bundles on 40
    agent clusters (agents never started, deploys held) go in several small batches, and
    every bundle gets its clusters. (Its replay history, gitrepo-sync-batches-by-size.json,
    was recorded before the snapshot went once per batch and is kept as it is.)"""
    ns = flotilla.namespace
    for name in CLUSTERS[:40]:
        await flotilla.control.add_cluster(ns, name, None, labels={"env": "prod"})
    gitrepo = prod_gitrepo(ns, git_daemon, repo_name, [f"b{i}" for i in range(6)])
    await flotilla.control.apply_gitrepo(gitrepo, sync_batch_bytes=4_000)

    status = await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "repo"),
        lambda s: len(s.bundles) == 6 and all(b.desired == 40 for b in s.bundles),
        timeout=120,
    )
    assert status.desired_ready_clusters == 40
    history = await flotilla.client.get_workflow_handle(
        gitrepo_workflow_id(ns, "repo")
    ).fetch_history()
    sizes = activities(history, SYNC_BUNDLES_SHARED)
    assert len(sizes) >= 3, sizes  # one batch of six would be ~8 kB
    assert max(sizes) < 8_000, sizes
    assert SYNC_BY_SIZE_PATCH in history_text(history)


async def test_a_gitrepo_sends_the_cluster_snapshot_once_per_batch_not_once_per_bundle(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str
) -> None:
    """Every bundle gets the snapshot in its refresh, but the GitRepo's history holds it
    once per ``sync_bundles_shared`` call: 50 bundles on 500 clusters had put ~2 MB in it at
    each commit and each label change (issue 12). Twelve bundles on 40 agent clusters
    (agents never started, deploys held), then label changes that bring 3 more: every
    sync is one call for the twelve, the snapshot in it once and in no bundle's own part,
    and each bundle targets what the snapshot says. With FLOTILLA_RECORD_HISTORIES=DIR the
    GitRepo's history is written for tests/replay."""
    ns = flotilla.namespace
    for name in CLUSTERS[:43]:
        labels = {"env": "prod" if name < "c040" else "dev"}
        await flotilla.control.add_cluster(ns, name, None, labels=labels)
    gitrepo = prod_gitrepo(ns, git_daemon, repo_name, [f"b{i:02d}" for i in range(12)])
    await flotilla.control.apply_gitrepo(gitrepo)
    await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "repo"),
        lambda s: len(s.bundles) == 12 and all(b.desired == 40 for b in s.bundles),
        timeout=120,
    )
    for name in CLUSTERS[40:43]:
        await flotilla.control.label_cluster(ns, name, {"env": "prod"}, [])
    status = await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "repo"),
        lambda s: len(s.bundles) == 12 and all(b.desired == 43 for b in s.bundles),
        timeout=120,
    )
    assert status.desired_ready_clusters == 43

    workflow_id = gitrepo_workflow_id(ns, "repo")
    calls, _ = await activity_calls(flotilla.client, workflow_id)
    syncs = [c.input for c in calls if c.name == SYNC_BUNDLES_SHARED]
    assert [c.name for c in calls if c.name == SYNC_BUNDLES] == []
    assert len(syncs) >= 2, [c.name for c in calls]
    for sync in syncs:
        text = json.dumps(sync)
        assert len(sync["starts"]) == 12
        assert text.count('"c000"') == 1  # the snapshot, once
        assert all("clusters" not in s["signal_arg"] for s in sync["starts"])
    # The last sync carries the snapshot after the label change.
    last = {c["name"]: c["labels"] for c in syncs[-1]["shared"]["clusters"]["clusters"]}
    assert last["c042"] == {"env": "prod"}
    history = await flotilla.client.get_workflow_handle(workflow_id).fetch_history()
    assert SNAPSHOT_ONCE_PER_BATCH_PATCH in history_text(history)
    record_history(history, "gitrepo-snapshot-once-per-batch.json")
