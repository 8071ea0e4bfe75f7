"""A bundle on more clusters than the shard size, rolled out by shard workflows (issue 12).

The workflows run for real on the session's Temporal dev server; the deploy activities are
the stand-ins of tests/workflows/test_bundle_standins.py (registered under the real activity
names, answering in milliseconds), because 200 clusters of real Helm releases do not fit a
test run. They are allowed here only because the same rollout paths run against real
components in tests/e2e/test_rollout.py (partitions, maxUnavailable, dependsOn, pause) and
tests/e2e/test_worker_restart.py (SIGKILL mid-rollout), which stay unchanged;
bench/bench_scale.py measures 10,000 clusters.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory

from activities.gitops_models import PlanRequest, PlanResult
from flotilla.ids import bundle_shard_workflow_id
from flotilla.models import RolloutStrategy
from flotilla.shards import grant_as_seen
from flotilla.status import BundleState
from tests.e2e.harness import history_text, record_history
from tests.workflows.test_bundle_standins import (  # noqa: F401 (the fixture)
    Bundle,
    StandIns,
    Window,
    eventually,
    spec,
    start,
)
from workflows import visibility
from workflows.bundle import (
    GRANT_REPLY_WAIT,
    HELD_REPORT_UNMADE_PATCH,
    SHARD_DRAINED_REPORT_PATCH,
    SHARD_REPLIES_BEFORE_CLOSE_PATCH,
    BundleWorkflow,
)
from workflows.bundle_models import (
    BundleRefresh,
    BundleStatus,
    BundleStatusRequest,
    RetireRequest,
)
from workflows.bundle_shards import (
    SHARD_EVEN_BUDGETS_PATCH,
    SHARD_GRANTS_THAT_MATTER_PATCH,
    SHARD_USABLE_BUDGETS_PATCH,
    SHARD_ZERO_BUDGETS_PATCH,
    SHARDS_PATCH,
)
from workflows.registry_models import ClusterSnapshot, ClusterView


@dataclass
class PlanLog(StandIns):
    """The stand-ins, noting which clusters each plan_bundle was asked about."""

    plans: list[list[str]] = field(default_factory=list)

    @activity.defn(name="plan_bundle")
    async def plan_bundle(self, request: PlanRequest) -> PlanResult:
        self.plans.append([c.name for c in request.clusters])
        return await StandIns.plan_bundle(self, request)


async def histories(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    """Every run of a workflow (continue-as-new chains), oldest first."""
    runs = [e async for e in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    runs.sort(key=lambda e: e.start_time)
    return [
        await client.get_workflow_handle(workflow_id, run_id=e.run_id).fetch_history() for e in runs
    ]


def most_unavailable(windows: list[Window]) -> int:
    """The most deploys between their start and their Ready at any one time."""
    most = 0
    for window in windows:
        most = max(
            most,
            sum(
                1
                for other in windows
                if other.started <= window.started < (other.ready or float("inf"))
            ),
        )
    return most


async def settle(bundle: Bundle, commit: str, clusters: int, timeout: float) -> None:
    """Until the bundle's status shows ``commit`` Ready on all ``clusters``."""

    async def status() -> BundleStatus:
        return await bundle.handle.query(BundleWorkflow.status, BundleStatusRequest())

    await eventually(
        status,
        lambda s: (
            s.commit == commit and s.ready == s.desired == clusters and s.state is BundleState.READY
        ),
        timeout=timeout,
    )


async def install_then_update(
    bundle: Bundle, standins: StandIns, clusters: int, ready_after: float
) -> list[Window]:
    """Both commits to Ready, the second's deploys turning Ready ``ready_after`` seconds
    after they start; the second commit's deploy windows."""
    await settle(bundle, "commit-1", clusters, timeout=240)
    standins.ready_after = ready_after
    await bundle.release(2)
    await settle(bundle, "commit-2", clusters, timeout=300)
    return standins.windows[clusters:]


async def test_two_hundred_clusters_in_four_shards_keep_partition_order_and_max_unavailable(
    start: Callable[..., Awaitable[Bundle]],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """200 push-mode clusters, shard size 50 (four shards), partitions of 20 (10%) that
    straddle the shards, maxUnavailable 10 bundle-wide: every cluster Ready at both commits,
    each deployed once per version; during the update never more than 10 unavailable at
    once across the shards, and no partition starts before the one ahead of it is within
    its limit; the histories of the bundle and its shards stay bounded; no "cluster
    offline". With FLOTILLA_RECORD_HISTORIES=DIR the bundle's and shard 0's first runs are
    written there for tests/replay."""
    clusters = [f"c{i:03d}" for i in range(200)]
    strategy = RolloutStrategy.model_validate({"maxUnavailable": 10, "autoPartitionSize": "10%"})
    standins = StandIns(clusters=clusters, strategy=strategy, ready_at_deploy=True)
    bundle = await start(standins, shard_size=50, cluster_schedule_to_start_seconds=1)

    await settle(bundle, "commit-1", 200, timeout=240)
    assert len(standins.windows) == 200

    standins.ready_after = 0.2
    await bundle.release(2)
    await settle(bundle, "commit-2", 200, timeout=300)
    update = standins.windows[200:]
    assert sorted(w.cluster for w in update) == clusters  # once each, no retries
    assert most_unavailable(update) <= 10

    started = {w.cluster: w.started for w in update}
    ready = {w.cluster: w.ready for w in update}
    partitions = [clusters[i : i + 20] for i in range(0, 200, 20)]
    for ahead, behind in itertools.pairwise(partitions):
        first = min(started[c] for c in behind)
        # A partition of 20 with maxUnavailable 10 lets the next start once 10 are Ready.
        ready_ahead = sorted(r for c in ahead if (r := ready[c]) is not None)
        assert ready_ahead[9] <= first, (ahead[0], behind[0])

    ids = [bundle.handle.id] + [bundle_shard_workflow_id(bundle.handle.id, i) for i in range(4)]
    runs = {workflow_id: await histories(bundle.client, workflow_id) for workflow_id in ids}
    events = sum(len(h.events) for chain in runs.values() for h in chain)
    assert events / 400 <= 10, f"{events / 400:.1f} history events per bundle deployment"
    largest = max(e.ByteSize() for chain in runs.values() for h in chain for e in h.events)
    assert largest < 256_000, f"largest event {largest} bytes"
    assert SHARDS_PATCH in history_text(runs[bundle.handle.id][0])
    shard_text = "".join(history_text(h) for i in ids[1:] for h in runs[i])
    assert SHARD_DRAINED_REPORT_PATCH in shard_text
    # Reports held while deploys ran were not made again at each completion (and the
    # partition order and maxUnavailable above held all the same).
    held = [h for i in ids[1:] for h in runs[i] if HELD_REPORT_UNMADE_PATCH in history_text(h)]
    assert held, "no shard left a held report unmade"
    offline = [r.getMessage() for r in caplog.records if "cluster offline" in r.getMessage()]
    assert offline == []

    record = os.environ.get("FLOTILLA_RECORD_HISTORIES")
    if record:
        Path(record).mkdir(parents=True, exist_ok=True)
        (Path(record) / "bundle-shards-bundle.json").write_text(runs[bundle.handle.id][0].to_json())
        (Path(record) / "bundle-shards-shard.json").write_text(runs[ids[1]][0].to_json())
        (Path(record) / "bundle-shard-held-report.json").write_text(held[0].to_json())

    # Retiring the bundle retires its shards, which remove every release.
    await bundle.handle.signal(BundleWorkflow.retire, RetireRequest())
    await bundle.handle.result()
    removed = {c for (name, c) in standins.calls if name == "remove_deployment"}
    assert removed == set(clusters)


async def test_a_partition_over_two_shards_moves_in_both_at_once(
    start: Callable[..., Awaitable[Bundle]],  # noqa: F811
) -> None:
    """100 clusters, shard size 25, partitions of 50 (each over two shards), maxUnavailable
    10%: a partition's budget (5) is shared between its two shards, so during the update
    both move at once instead of one after the other with a hand-over between them; never
    more than 5 of a partition unavailable; the bundle asks the patch that does it, and a
    shard the one that reports a drained partition at once. With FLOTILLA_RECORD_HISTORIES=DIR
    a run of each is written there for tests/replay."""
    clusters = [f"c{i:03d}" for i in range(100)]
    strategy = RolloutStrategy.model_validate(
        {"maxUnavailable": "10%", "autoPartitionSize": "50%", "autoPartitionThreshold": 1}
    )
    standins = StandIns(clusters=clusters, strategy=strategy, ready_at_deploy=True)
    bundle = await start(standins, shard_size=25, cluster_schedule_to_start_seconds=1)

    update = await install_then_update(bundle, standins, 100, ready_after=0.3)
    assert sorted(w.cluster for w in update) == clusters
    started = {w.cluster: w.started for w in update}
    for first, second in ((clusters[0:25], clusters[25:50]), (clusters[50:75], clusters[75:])):
        part = [w for w in update if w.cluster in first + second]
        assert most_unavailable(part) <= 5
        # The second shard's part starts before the first shard's part has all started.
        assert min(started[c] for c in second) < max(started[c] for c in first), first[0]
    runs = await histories(bundle.client, bundle.handle.id)
    even = [h for h in runs if SHARD_EVEN_BUDGETS_PATCH in history_text(h)]
    assert even, "no bundle run shared a budget evenly"
    shard_runs = [
        h
        for i in range(4)
        for h in await histories(bundle.client, bundle_shard_workflow_id(bundle.handle.id, i))
    ]
    drained = [h for h in shard_runs if SHARD_DRAINED_REPORT_PATCH in history_text(h)]
    assert drained, "no shard reported a drained partition at once"
    record = os.environ.get("FLOTILLA_RECORD_HISTORIES")
    if record:
        Path(record).mkdir(parents=True, exist_ok=True)
        (Path(record) / "bundle-shards-even-budgets.json").write_text(even[0].to_json())
        (Path(record) / "bundle-shard-drained-report.json").write_text(drained[0].to_json())


def grants_received(history: WorkflowHistory) -> list[dict[str, Any]]:
    """The grants a shard's run received from its bundle, in order (refresh signals)."""
    out = []
    for event in history.events:
        attrs = event.workflow_execution_signaled_event_attributes
        if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            continue
        if attrs.signal_name != "refresh" or not attrs.input.payloads:
            continue
        grant = json.loads(attrs.input.payloads[0].data).get("grant")
        if grant:
            out.append(grant)
    return out


def unanswered_at_close(history: WorkflowHistory) -> dict[str, int]:
    """For a bundle run that continued as new: the shards (by workflow id) sent a grant in
    the last ``GRANT_REPLY_WAIT`` before the close whose reports had not yet confirmed it
    when the run closed, with the grant's number."""
    sent: dict[str, tuple[int, datetime]] = {}
    heard: dict[str, int] = {}
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
            attrs = event.signal_external_workflow_execution_initiated_event_attributes
            grant = json.loads(attrs.input.payloads[0].data).get("grant") or {}
            if "seq" in grant:
                shard = attrs.workflow_execution.workflow_id
                sent[shard] = (grant["seq"], event.event_time.ToDatetime())
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            signaled = event.workflow_execution_signaled_event_attributes
            if signaled.signal_name == "shard_report":
                report = json.loads(signaled.input.payloads[0].data)
                heard[f"{history.workflow_id}/shard-{report['index']}"] = report["seq"]
    closed = history.events[-1].event_time.ToDatetime()
    return {
        shard: seq
        for shard, (seq, at) in sent.items()
        if heard.get(shard, -1) < seq and closed - at < GRANT_REPLY_WAIT
    }


async def test_the_next_partition_moves_with_the_grant_that_reaches_it(
    start: Callable[..., Awaitable[Bundle]],  # noqa: F811
) -> None:
    """150 clusters, shard size 25 (six shards), three labelled partitions of 50 over two
    shards each with maxUnavailable 4, bundle-wide 50. During the update a partition's
    shards are granted of the bundle-wide budget only what their partition budget lets them
    use, so the grant that reaches the next partition carries its shards' bundle-wide
    share, and no shard is sent a grant that changes nothing it acts on (a partition it has
    no cluster in was reached, or budgets of 0 where it had none). Never more than 4 of a
    partition unavailable, and no partition starts before the one ahead of it is within its
    limit. With FLOTILLA_RECORD_HISTORIES=DIR the bundle's run is written there for
    tests/replay."""
    clusters = [f"c{i:03d}" for i in range(150)]
    parts = {c: str(1 + i // 50) for i, c in enumerate(clusters)}
    strategy = RolloutStrategy.model_validate(
        {
            "maxUnavailable": 50,
            "partitions": [
                {
                    "name": f"p{n}",
                    "maxUnavailable": 4,
                    "clusterSelector": {"matchLabels": {"part": n}},
                }
                for n in ("1", "2", "3")
            ],
        }
    )
    standins = StandIns(clusters=clusters, strategy=strategy, ready_at_deploy=True)
    views = [ClusterView(name=c, labels={"part": parts[c]}) for c in clusters]
    bundle = await start(
        standins,
        shard_size=25,
        cluster_schedule_to_start_seconds=1,
        snapshot=ClusterSnapshot(namespace="", version=1, clusters=views),
    )
    update = await install_then_update(bundle, standins, 150, ready_after=0.2)
    assert sorted(w.cluster for w in update) == clusters
    started = {w.cluster: w.started for w in update}
    ready = {w.cluster: w.ready for w in update}
    members = [clusters[i : i + 50] for i in range(0, 150, 50)]
    for part in members:
        assert most_unavailable([w for w in update if w.cluster in part]) <= 4
    for ahead, behind in itertools.pairwise(members):
        ready_ahead = sorted(r for c in ahead if (r := ready[c]) is not None)
        assert ready_ahead[45] <= min(started[c] for c in behind), behind[0]

    for index, partition in ((2, "p2"), (4, "p3")):
        chain = await histories(bundle.client, bundle_shard_workflow_id(bundle.handle.id, index))
        grants = [g for h in chain for g in grants_received(h)]
        reaching = [g for g in grants if partition in g.get("reached", [])]
        # Each commit reaches the shard's partition once; both times its grant says how
        # many of the bundle-wide budget it may use (before: none, until a second round).
        assert reaching, f"shard {index} never reached {partition}"
        first_of_update = next(g for g in reaching if g["seq"] > reaching[0]["seq"] + 1)
        assert first_of_update["budgets"][""] > 0, first_of_update
        # A budget of 0 reads as none: the grant a new commit withdraws has no budgets, and
        # the plan after it sends nothing new to a shard whose partition it does not reach.
        seen = [
            grant_as_seen(
                [partition],
                g.get("reached", []),
                g["budgets"],
                g.get("closed", {}),
                zero_is_none=True,
            )
            for g in grants
        ]
        redundant = [
            g for g, (a, b) in zip(grants[1:], itertools.pairwise(seen), strict=True) if a == b
        ]
        assert redundant == [], f"shard {index} got grants that change nothing for it: {grants}"

    runs = await histories(bundle.client, bundle.handle.id)
    text = "".join(history_text(h) for h in runs)
    assert SHARD_USABLE_BUDGETS_PATCH in text
    assert SHARD_GRANTS_THAT_MATTER_PATCH in text
    assert SHARD_ZERO_BUDGETS_PATCH in text
    record = os.environ.get("FLOTILLA_RECORD_HISTORIES")
    if record:
        Path(record).mkdir(parents=True, exist_ok=True)
        both = next(
            h
            for h in runs
            if SHARD_USABLE_BUDGETS_PATCH in history_text(h)
            and SHARD_GRANTS_THAT_MATTER_PATCH in history_text(h)
        )
        (Path(record) / "bundle-shards-usable-budgets.json").write_text(both.to_json())
        zeros = next(h for h in runs if SHARD_ZERO_BUDGETS_PATCH in history_text(h))
        (Path(record) / "bundle-shards-zero-budgets.json").write_text(zeros.to_json())


async def test_a_bundle_within_the_shard_size_is_not_sharded(
    start: Callable[..., Awaitable[Bundle]],  # noqa: F811
) -> None:
    """At the shard size exactly, the bundle deploys itself, as before (no patch marker)."""
    standins = StandIns(clusters=[f"c{i}" for i in range(5)], ready_at_deploy=True)
    bundle = await start(standins, shard_size=5)
    await eventually(
        bundle.states, lambda s: len(s) == 5 and all(v is BundleState.READY for v in s.values())
    )
    assert SHARDS_PATCH not in history_text(await bundle.handle.fetch_history())


async def test_a_label_change_on_one_cluster_replans_only_its_shard(
    start: Callable[..., Awaitable[Bundle]],  # noqa: F811
) -> None:
    """The registry at scale: a new snapshot where one cluster's labels changed reaches
    only the shard that owns it (one plan of 50 clusters, not of all 120); nothing is
    redeployed, since its options did not change."""
    clusters = [f"c{i:03d}" for i in range(120)]
    standins = PlanLog(clusters=clusters, ready_at_deploy=True)
    bundle = await start(standins, shard_size=50)

    async def status() -> BundleStatus:
        return await bundle.handle.query(BundleWorkflow.status, BundleStatusRequest())

    await eventually(status, lambda s: s.ready == 120 and s.state is BundleState.READY)
    assert sorted(len(p) for p in standins.plans) == [20, 50, 50]

    views = [ClusterView(name=c, labels={"zone": "b"} if c == "c060" else {}) for c in clusters]
    snapshot = ClusterSnapshot(namespace=bundle.namespace, version=2, clusters=views)
    await bundle.handle.signal(BundleWorkflow.refresh, BundleRefresh(clusters=snapshot))
    await eventually(standins.calls_now, lambda calls: calls["plan_bundle", ""] == 4)
    await asyncio.sleep(3)  # time for any other shard to replan, which must not happen
    assert len(standins.plans) == 4
    assert standins.plans[3] == clusters[50:100]
    await eventually(status, lambda s: s.ready == 120 and s.state is BundleState.READY)
    assert len(standins.windows) == 120


async def test_a_read_error_of_a_newer_commit_is_the_sharded_bundles_status_alone(
    start: Callable[..., Awaitable[Bundle]],  # noqa: F811
) -> None:
    """The GitRepo could not read the bundle at a newer commit (its fleet.yaml broke): the
    bundle says ErrApplied with why, and publishes it; its shards never hear of it, so no
    grant is withdrawn, nothing is planned or deployed again, and the fix clears it."""
    clusters = [f"c{i:03d}" for i in range(120)]
    standins = PlanLog(clusters=clusters, ready_at_deploy=True)
    bundle = await start(standins, shard_size=50)
    await eventually(bundle.status, lambda s: s.ready == 120 and s.state is BundleState.READY)
    plans, deploys = len(standins.plans), len(standins.windows)
    error = "commit 0123456789ab not deployed: fleet.yaml: dependsOn[0].name: no bundle 'nope'"
    broken = spec(1).model_copy(update={"source_error": error})
    await bundle.handle.signal(BundleWorkflow.refresh, BundleRefresh(spec=broken))
    status = await eventually(bundle.status, lambda s: bool(s.source_error))
    assert (status.state, status.message, status.ready) == (BundleState.ERR_APPLIED, error, 120)
    described = await eventually(
        bundle.handle.describe,
        lambda d: d.typed_search_attributes.get(visibility.STATE) == "ErrApplied",
    )
    assert described.typed_search_attributes.get(visibility.MESSAGE) == error
    await asyncio.sleep(2)  # time for any shard to plan or deploy, which must not happen
    assert (len(standins.plans), len(standins.windows)) == (plans, deploys)
    shard = bundle.client.get_workflow_handle(bundle_shard_workflow_id(bundle.handle.id, 0))
    shard_status = await shard.query(BundleWorkflow.status, BundleStatusRequest())
    assert (shard_status.source_error, shard_status.state) == ("", BundleState.READY)
    await bundle.handle.signal(BundleWorkflow.refresh, BundleRefresh(spec=spec(1)))
    status = await eventually(bundle.status, lambda s: not s.source_error)
    assert (status.state, status.message) == (BundleState.READY, "")
    # The coordinator's history for tests/replay (FLOTILLA_RECORD_HISTORIES=DIR).
    record_history(await bundle.handle.fetch_history(), "bundle-shards-read-error.json")


async def test_a_sharded_bundle_and_its_shards_continue_as_new_mid_rollout(
    start: Callable[..., Awaitable[Bundle]],  # noqa: F811
) -> None:
    """With the history switch at 150 events, the bundle and every shard continue as new
    several times during two commits; the grants, ranges and records carried in their
    states keep the rollout going to Ready, each cluster deployed once per version. The
    bundle never closes a run while a grant it has just sent is unconfirmed. With
    FLOTILLA_RECORD_HISTORIES=DIR a bundle run whose close waited for replies is written
    there for tests/replay."""
    clusters = [f"c{i:03d}" for i in range(120)]
    strategy = RolloutStrategy.model_validate({"maxUnavailable": 5})
    standins = StandIns(clusters=clusters, strategy=strategy, ready_at_deploy=True)
    bundle = await start(standins, shard_size=50, max_history_events=150)
    await settle(bundle, "commit-1", 120, timeout=240)
    standins.ready_after = 0.05
    await bundle.release(2)
    await settle(bundle, "commit-2", 120, timeout=240)
    assert sorted(w.cluster for w in standins.windows) == sorted(clusters * 2)
    assert most_unavailable(standins.windows[120:]) <= 5
    ids = [bundle.handle.id] + [bundle_shard_workflow_id(bundle.handle.id, i) for i in range(3)]
    for workflow_id in ids:
        # A close may wait up to GRANT_REPLY_WAIT for replies to the bundle's last grants.
        await eventually(
            functools.partial(histories, bundle.client, workflow_id), lambda h: len(h) > 1
        )
    # The bundle closed no run while a grant it had just sent was unconfirmed: the reply
    # would reach the closing run (Temporal refuses the close, the worker replays).
    runs = await histories(bundle.client, bundle.handle.id)
    for run in runs[:-1]:
        assert unanswered_at_close(run) == {}, unanswered_at_close(run)
    record = os.environ.get("FLOTILLA_RECORD_HISTORIES")
    waited = [h for h in runs if SHARD_REPLIES_BEFORE_CLOSE_PATCH in history_text(h)]
    if record and waited:  # a close that waited for replies (not every run has one)
        Path(record).mkdir(parents=True, exist_ok=True)
        (Path(record) / "bundle-closes-after-shard-replies.json").write_text(waited[0].to_json())
