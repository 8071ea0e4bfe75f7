"""BundleWorkflow's retry, offline, maxUnavailable and retirement paths, fast.

The workflow runs for real on the session's Temporal dev server, but its activities are
stand-ins registered under the real activity names (``plan_bundle`` on the control queue;
``deploy_bundle``, ``wait_ready``, ``check_deployment`` and ``remove_deployment`` on the shared
push queues, or on an agent-mode cluster's own queue): they answer in milliseconds and fail,
stay NotReady or hold on when a test says so. They exist for speed and for fault injection
only; the same paths with real git, Helm and clusters are covered by these real-component
tests, which stay:

* retries of a failed deploy: tests/workflows/test_gitrepo.py
  (``test_cluster_groups_target_and_unreachable_clusters_are_errapplied``) and the NotReady
  watch in tests/e2e/test_deploy.py;
* an offline agent-mode cluster: tests/e2e/test_offline.py;
* an unreachable push-mode cluster (retryable, one line, never "offline"):
  tests/workflows/test_gitrepo.py (``test_cluster_groups_target_and_unreachable_...``);
* maxUnavailable: tests/e2e/test_rollout.py
  (``test_partitions_roll_out_in_order_with_at_most_one_unavailable``);
* removal on retirement: tests/e2e/test_delete.py and tests/e2e/test_retarget.py;
* not Ready at a commit before it is planned: tests/prodtemporal/test_disaster_recovery.py;
* no report of a cluster "held back" while it is deployed: tests/e2e/test_status_truth.py
  (``test_get_and_the_ui_agree_with_describe_...``, which found it).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.deploy_models import (
    BatchedCheck,
    CheckBatchRequest,
    CheckBatchResult,
    DeploymentStatus,
    DeployRequest,
    DeployResult,
    ReleaseRef,
    RemoveRequest,
    RemoveResult,
    StatusRequest,
    WaitReadyRequest,
)
from activities.gitops_models import (
    DownstreamDigestRequest,
    DownstreamDigestResult,
    PlannedTarget,
    PlanRequest,
    PlanResult,
)
from activities.objectwatch_models import ObjectsChanged
from flotilla.clusterstates import cluster_index, expand_report
from flotilla.deployment import deployment_id
from flotilla.errors import CLUSTER_UNREACHABLE
from flotilla.helmhistory import HistoryAction
from flotilla.ids import (
    bundle_workflow_id,
    cluster_task_queue,
    deploy_task_queue,
    gitrepo_workflow_id,
    push_task_queues,
)
from flotilla.models import RolloutStrategy
from flotilla.status import BundleReport, BundleState
from starters.tables import describe_bundle
from tests.e2e.harness import history_text, record_history
from workflows import common
from workflows.bundle import (
    ACTIVITIES_PER_PASS,
    BATCHED_CHECKS_PATCH,
    BUNDLE_REPORT_SIGNAL,
    IDLE_CONTINUE_DELAY,
    IDLE_CONTINUE_PATCH,
    PACKED_REPORTS_PATCH,
    PLAN_FAILURE_WAITS_PATCH,
    PLANNING_PATCH,
    REFRESH_SIGNAL,
    SMALLER_PASSES_PATCH,
    WATCH_ENDS_WHEN_SUPERSEDED_PATCH,
    BundleWorkflow,
)
from workflows.bundle_models import (
    BundleRefresh,
    BundleSpec,
    BundleStatus,
    BundleStatusRequest,
    BundleWorkflowState,
    RetireRequest,
)
from workflows.common import DOWNSTREAM_POLL_INTERVAL, REPORT_INTERVAL
from workflows.registry_models import ClusterSnapshot, ClusterView

T = TypeVar("T")
NOT_READY = "Deployment/app/web: 0/1 replicas ready"


@dataclass
class Window:
    """One deploy of one cluster: when it started and when the cluster was Ready again."""

    cluster: str
    deployment_id: str
    started: float
    ready: float | None = None


@dataclass
class StandIns:
    """Every activity BundleWorkflow calls, answering as the test arranges."""

    clusters: list[str]
    strategy: RolloutStrategy = field(default_factory=RolloutStrategy)
    # Per cluster: errors the next deploys raise, one each, in order.
    failures: dict[str, list[str]] = field(default_factory=dict)
    # Per cluster: how many wait_ready calls still answer NotReady.
    not_ready: Counter[str] = field(default_factory=Counter)
    # Deployment ids that never turn Ready: their wait_ready heartbeats until cancelled, and
    # how many were cancelled.
    never_ready: set[str] = field(default_factory=set)
    watches_cancelled: int = 0
    # Per cluster: a deploy or wait_ready after the first holds until the test sets this.
    hold: dict[str, asyncio.Event] = field(default_factory=dict)
    ready_after: float = 0.0
    # Deploys answer Ready from their own short watch (no wait_ready), as quick releases do.
    ready_at_deploy: bool = False
    remove_takes: float = 0.0
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    windows: list[Window] = field(default_factory=list)
    running: Counter[str] = field(default_factory=Counter)
    most_running: Counter[str] = field(default_factory=Counter)
    # Per cluster: what the next drift checks find, and whose Helm record is gone.
    drift: dict[str, list[str]] = field(default_factory=dict)
    record_lost: set[str] = field(default_factory=set)
    # Clusters whose checks correct drift (correctDrift), and how many corrections were made.
    correct_drift: set[str] = field(default_factory=set)
    corrections: int = 0
    # Per cluster: how many next drift checks fail (unreachable); the clusters of each
    # check_deployments batch, in order.
    check_failures: Counter[str] = field(default_factory=Counter)
    batches: list[list[str]] = field(default_factory=list)
    # Plans after the first hold until the test sets this (a new commit being planned).
    hold_plan: asyncio.Event | None = None
    # Plans after the first that fail (non-retryable, so at once), as many as this says.
    plan_failures: int = 0
    # downstreamResources: the digest of their content now ("" when the bundle lists none),
    # and whether reading it fails (the secret store away).
    downstream: str = ""
    downstream_fails: bool = False

    @contextlib.asynccontextmanager
    async def _running(self, name: str, cluster: str) -> AsyncIterator[int]:
        """Count the call, and what runs at once: of this activity, and of all ("*")."""
        self.calls[name, cluster] += 1
        for key in (name, "*"):
            self.running[key] += 1
            self.most_running[key] = max(self.most_running[key], self.running[key])
        try:
            yield self.calls[name, cluster]
        finally:
            for key in (name, "*"):
                self.running[key] -= 1

    async def calls_now(self) -> Counter[tuple[str, str]]:
        return self.calls

    async def _held(self, cluster: str, attempt: int) -> None:
        if attempt > 1 and cluster in self.hold:
            await self.hold[cluster].wait()

    @activity.defn(name="plan_bundle")
    async def plan_bundle(self, request: PlanRequest) -> PlanResult:
        async with self._running("plan_bundle", "") as attempt:
            if attempt > 1 and self.hold_plan is not None:
                await self.hold_plan.wait()
            if attempt > 1 and self.plan_failures > 0:
                self.plan_failures -= 1
                raise ApplicationError("content store unreachable", non_retryable=True)
        targets = []
        for cluster in request.clusters:
            # The digest first: a deployment id keeps the options digest's first 20 characters.
            options = f"{self.downstream}{request.bundle_digest}-{cluster.name}"
            targets.append(
                PlannedTarget(
                    cluster=cluster.name,
                    options_digest=options,
                    deployment_id=deployment_id(request.bundle_digest, options),
                )
            )
        return PlanResult(
            targets=targets, strategy=self.strategy, downstream_digest=self.downstream
        )

    @activity.defn(name="downstream_digest")
    async def downstream_digest(self, request: DownstreamDigestRequest) -> DownstreamDigestResult:
        async with self._running("downstream_digest", ""):
            if self.downstream_fails:
                raise ApplicationError("secret store unreachable", non_retryable=True)
            return DownstreamDigestResult(digest=self.downstream)

    @activity.defn(name="deploy_bundle")
    async def deploy_bundle(self, request: DeployRequest) -> DeployResult:
        cluster = request.cluster_name
        async with self._running("deploy_bundle", cluster) as attempt:
            await self._held(cluster, attempt)
            if self.failures.get(cluster):
                message = self.failures[cluster].pop(0)
                if " unreachable: " in message:  # retried by the activity's policy
                    raise ApplicationError(message, type=CLUSTER_UNREACHABLE)
                raise ApplicationError(message, non_retryable=True)
            window = Window(cluster, request.deployment_id, time.monotonic())
            self.windows.append(window)
            if self.ready_at_deploy:
                # Ready within the deploy's own short watch, ``ready_after`` into it.
                await asyncio.sleep(self.ready_after)
                window.ready = time.monotonic()
            release = ReleaseRef(name=request.bundle_name, namespace=cluster, revision=attempt)
            ready = DeploymentStatus(
                release=release, applied_deployment_id=request.deployment_id, ready=True
            )
            return DeployResult(
                release=release,
                deployment_id=request.deployment_id,
                changed=True,
                action=HistoryAction.UPGRADE if request.previous_release else HistoryAction.INSTALL,
                reason="stand-in",
                status=ready if self.ready_at_deploy else None,
            )

    @activity.defn(name="wait_ready")
    async def wait_ready(self, request: WaitReadyRequest) -> DeploymentStatus:
        cluster = request.cluster_name
        async with self._running("wait_ready", cluster) as attempt:
            await self._held(cluster, attempt)
            if request.deployment_id in self.never_ready:
                try:
                    while True:
                        activity.heartbeat()
                        await asyncio.sleep(0.2)
                except asyncio.CancelledError:
                    self.watches_cancelled += 1
                    raise
            if self.not_ready[cluster] > 0:
                self.not_ready[cluster] -= 1
                return DeploymentStatus(release=request.release, non_ready=[NOT_READY])
            await asyncio.sleep(self.ready_after)
            for window in self.windows:
                if (window.cluster, window.deployment_id) == (cluster, request.deployment_id):
                    window.ready = window.ready or time.monotonic()
            return DeploymentStatus(
                release=request.release, applied_deployment_id=request.deployment_id, ready=True
            )

    @activity.defn(name="check_deployment")
    async def check_deployment(self, request: StatusRequest) -> DeploymentStatus:
        cluster = request.cluster_name
        async with self._running("check_deployment", cluster):
            if self.check_failures[cluster] > 0:
                self.check_failures[cluster] -= 1
                raise ApplicationError(
                    f"cluster {cluster} unreachable: stand-in", type=CLUSTER_UNREACHABLE
                )
            if cluster in self.record_lost:
                self.record_lost.discard(cluster)
                return DeploymentStatus(
                    release=request.release, drift=["release: gone"], record_missing=True
                )
            drift = self.drift.get(cluster, [])
            if drift and request.correct and cluster in self.correct_drift:
                self.corrections += 1
                return DeploymentStatus(
                    release=request.release,
                    applied_deployment_id=request.deployment_id,
                    ready=True,
                    corrected=drift,
                )
            return DeploymentStatus(
                release=request.release,
                applied_deployment_id=request.deployment_id,
                ready=True,
                drift=drift,
            )

    @activity.defn(name="check_deployments")
    async def check_deployments(self, request: CheckBatchRequest) -> CheckBatchResult:
        """The push queues' batch of checks (activities/pushqueue.py, which
        tests/unit/test_pushqueue.py covers): each check, a failed one named with its error."""
        self.batches.append([c.cluster_name for c in request.checks])
        done = []
        for check in request.checks:
            try:
                status = await self.check_deployment(check)
            except ApplicationError as err:
                done.append(BatchedCheck(cluster=check.cluster_name, error=str(err)))
            else:
                done.append(BatchedCheck(cluster=check.cluster_name, status=status))
        return CheckBatchResult(checks=done)

    @activity.defn(name="remove_deployment")
    async def remove_deployment(self, request: RemoveRequest) -> RemoveResult:
        async with self._running("remove_deployment", request.cluster_name):
            await asyncio.sleep(self.remove_takes)
            return RemoveResult(release_removed=True, resources_kept=False)


@dataclass
class Bundle:
    """A bundle workflow on its own queues, started for one test."""

    client: Client
    namespace: str
    handle: WorkflowHandle[BundleWorkflow, None]
    standins: StandIns
    stack: contextlib.AsyncExitStack

    async def status(self) -> BundleStatus:
        return await self.handle.query(BundleWorkflow.status, BundleStatusRequest())

    async def states(self) -> dict[str, BundleState]:
        return {c.cluster: c.state for c in (await self.status()).clusters}

    async def serve(self, cluster: str) -> None:
        """Start a worker for an agent-mode cluster's queue (its agent coming up)."""
        await serve_queue(
            self.stack, self.client, self.standins, cluster_task_queue(self.namespace, cluster)
        )

    async def release(self, version: int) -> None:
        await self.handle.signal(BundleWorkflow.refresh, BundleRefresh(spec=spec(version)))


async def roll_out_two_versions(bundle: Bundle, standins: StandIns, timeout: float) -> None:
    """Version 1 Ready on every cluster, then version 2 released and Ready on every cluster,
    each cluster deployed exactly once per version."""
    count = len(standins.clusters)
    await eventually(bundle.states, lambda s: len(s) == count and all_ready(s), timeout=timeout)
    await bundle.release(2)
    await eventually(
        bundle.status,
        lambda s: (
            s.commit == "commit-2"
            and len(standins.windows) >= 2 * count
            and all_ready({c.cluster: c.state for c in s.clusters})
        ),
        timeout=timeout,
    )
    assert len(standins.windows) == 2 * count  # once per version, no retries


def scheduled_per_task(history: Any) -> list[int]:
    """Activities each workflow task of ``history`` scheduled (the events after its
    completion), in order."""
    batches: list[int] = []
    for event in history.events:
        if event.HasField("workflow_task_completed_event_attributes"):
            batches.append(0)
        elif event.HasField("activity_task_scheduled_event_attributes") and batches:
            batches[-1] += 1
    return batches


async def serve_queue(
    stack: contextlib.AsyncExitStack, client: Client, s: StandIns, queue: str
) -> None:
    worker = Worker(
        client,
        task_queue=queue,
        activities=[
            s.deploy_bundle,
            s.wait_ready,
            s.check_deployment,
            s.check_deployments,
            s.remove_deployment,
        ],
    )
    await stack.enter_async_context(worker)


def spec(version: int) -> BundleSpec:
    return BundleSpec(gitrepo="repo", commit=f"commit-{version}", bundle_digest=f"{version}" * 64)


async def eventually(
    probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], timeout: float = 60.0
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s; last value: {value!r}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def start(
    temporal_client: Client, task_queue: str
) -> AsyncIterator[Callable[..., Awaitable[Bundle]]]:
    """Start the bundle workflow with stand-ins: push-mode clusters on the shared push queues,
    served from the start; the agent-mode ones (``agents``) served when named in ``serve``."""
    async with contextlib.AsyncExitStack() as stack:

        async def started(
            standins: StandIns,
            *,
            agents: list[str] | None = None,
            serve: list[str] | None = None,
            serve_push: bool = True,
            snapshot: ClusterSnapshot | None = None,
            activities: Sequence[Callable[..., Any]] = (),
            **switches: float,
        ) -> Bundle:
            ns = f"sb-{uuid.uuid4().hex[:8]}"
            await stack.enter_async_context(
                Worker(
                    temporal_client,
                    task_queue=task_queue,
                    workflows=[BundleWorkflow],
                    activities=[standins.plan_bundle, standins.downstream_digest, *activities],
                )
            )
            state = BundleWorkflowState(
                namespace=ns,
                bundle="app",
                gitrepo_workflow_id=gitrepo_workflow_id(ns, "repo"),
                **{"retry_seconds": 0.5, "monitor_seconds": 3600, **switches},
            )
            if serve_push:
                for queue in push_task_queues(task_queue):
                    await serve_queue(stack, temporal_client, standins, queue)
            agent = set(agents or [])
            snapshot = snapshot or ClusterSnapshot(
                namespace=ns,
                version=1,
                clusters=[ClusterView(name=c, agent=c in agent) for c in standins.clusters],
            )
            handle = await temporal_client.start_workflow(
                BundleWorkflow.run,
                state,
                id=bundle_workflow_id(ns, "app"),
                task_queue=task_queue,
                start_signal=REFRESH_SIGNAL,
                start_signal_args=[BundleRefresh(spec=spec(1), clusters=snapshot)],
            )
            bundle = Bundle(temporal_client, ns, handle, standins, stack)
            for cluster in sorted(agent) if serve is None else serve:
                await bundle.serve(cluster)
            stack.push_async_callback(_terminate, handle)
            return bundle

        yield started


async def _terminate(handle: WorkflowHandle[BundleWorkflow, None]) -> None:
    with contextlib.suppress(Exception):
        await handle.terminate("test finished")


def all_ready(states: dict[str, BundleState]) -> bool:
    return bool(states) and all(s is BundleState.READY for s in states.values())


async def test_a_failed_deploy_is_errapplied_then_retried_and_notready_is_watched_again(
    start: Callable[..., Awaitable[Bundle]],
) -> None:
    standins = StandIns(
        clusters=["a", "b"],
        failures={"a": ["helm upgrade failed:\n  boom"]},
        not_ready=Counter({"b": 1}),
        hold={"a": asyncio.Event(), "b": asyncio.Event()},
    )
    bundle = await start(standins)

    # b is NotReady from its deploy's own short watch first, then from wait_ready's answer.
    status = await eventually(
        bundle.status,
        lambda s: (
            [c.state for c in s.clusters] == [BundleState.ERR_APPLIED, BundleState.NOT_READY]
            and s.clusters[1].non_ready == [NOT_READY]
        ),
    )
    a, b = status.clusters
    assert a.message == "helm upgrade failed: boom"
    assert b.message == NOT_READY and b.non_ready == [NOT_READY]
    assert status.state is BundleState.ERR_APPLIED and status.message.startswith("a: helm")

    # The retries are waiting on the stand-ins: the deploy again, and a second readiness watch.
    await eventually(
        standins.calls_now,
        lambda calls: calls["deploy_bundle", "a"] == 2 and calls["wait_ready", "b"] == 2,
    )
    for event in standins.hold.values():
        event.set()
    await eventually(bundle.states, all_ready)
    assert standins.calls["deploy_bundle", "b"] == 1  # b was applied once, only watched again
    assert (await bundle.status()).clusters[0].last_action == "install: stand-in"


async def test_a_new_commit_is_not_ready_before_its_plan_is_made(
    start: Callable[..., Awaitable[Bundle]],
) -> None:
    """The disaster-recovery drill once saw a bundle Ready at a new commit while its clusters
    still ran the old one: the commit is the spec's at once, the records the old plan's."""
    standins = StandIns(clusters=["a", "b"], hold_plan=asyncio.Event())
    bundle = await start(standins)
    await eventually(bundle.states, all_ready)

    first = await eventually(bundle.status, lambda s: all(c.since for c in s.clusters))
    await bundle.release(2)
    await eventually(standins.calls_now, lambda calls: calls["plan_bundle", ""] == 2)
    status = await bundle.status()
    assert status.commit == "commit-2"
    assert (status.state, status.ready) == (BundleState.WAIT_APPLIED, 0), status
    assert status.message == "a: planning commit commit-2"
    assert {c.state for c in status.clusters} == {BundleState.WAIT_APPLIED}

    assert standins.hold_plan is not None
    standins.hold_plan.set()
    status = await eventually(
        bundle.status, lambda s: all_ready({c.cluster: c.state for c in s.clusters})
    )
    assert {c.applied for c in status.clusters} == {
        deployment_id("2" * 64, f"{'2' * 64}-{c}") for c in ("a", "b")
    }
    # describe: each cluster's state since it last changed (Ready again, after WaitApplied).
    status = await eventually(bundle.status, lambda s: all(c.since for c in s.clusters))
    for before, after in zip(first.clusters, status.clusters, strict=True):
        assert before.since and after.since and after.since > before.since, (before, after)
    text = describe_bundle(status, now=max(c.since for c in status.clusters if c.since))
    assert "  CLUSTER   STATE   SINCE" in text and "  a         Ready   0s" in text, text


async def test_a_commit_arriving_while_a_plan_runs_is_reported_waitapplied_until_planned(
    start: Callable[..., Awaitable[Bundle]],
) -> None:
    """The new path of ``bundle-report-waits-for-the-plan``: commit 3 arrives while commit 2's
    plan runs, so the report made when that plan returns is WaitApplied "planning commit 3"
    (the patch's marker is in history), and commit 3 then rolls out. With
    FLOTILLA_RECORD_HISTORIES=DIR the history is written there for tests/replay."""
    standins = StandIns(clusters=["a", "b"], hold_plan=asyncio.Event())
    bundle = await start(standins)
    await eventually(bundle.states, all_ready)
    await bundle.release(2)
    await eventually(standins.calls_now, lambda calls: calls["plan_bundle", ""] == 2)
    await bundle.release(3)
    status = await bundle.status()
    assert status.commit == "commit-3" and status.message == "a: planning commit commit-3"

    assert standins.hold_plan is not None
    standins.hold_plan.set()
    status = await eventually(
        bundle.status,
        lambda s: s.commit == "commit-3" and all_ready({c.cluster: c.state for c in s.clusters}),
    )
    assert {c.applied for c in status.clusters} == {
        deployment_id("3" * 64, f"{'3' * 64}-{c}") for c in ("a", "b")
    }
    history = await bundle.handle.fetch_history()
    assert PLANNING_PATCH in history_text(history)
    record_history(history, "bundle-commit-during-plan.json")


async def test_a_newer_version_ends_the_readiness_watch_of_one_that_never_turns_ready(
    start: Callable[..., Awaitable[Bundle]],
) -> None:
    """Version 1 applies but never turns Ready, so its readiness watch runs (for
    ``ready_watch_seconds``, 10 minutes by default). Version 2 (a fix, a rollback) comes
    while that watch runs: the watch is cancelled and version 2 deploys at once, instead of
    after the watch (a CI run's autoRollback waited there; patch
    ``rollback-watch-ends-when-superseded``). With FLOTILLA_RECORD_HISTORIES=DIR the history
    is written for tests/replay."""
    first = deployment_id("1" * 64, f"{'1' * 64}-a")
    standins = StandIns(clusters=["a"], never_ready={first})
    bundle = await start(standins)
    await eventually(standins.calls_now, lambda calls: calls["wait_ready", "a"] == 1)
    status = await bundle.status()
    assert [c.state for c in status.clusters] == [BundleState.NOT_READY], status

    await bundle.release(2)
    status = await eventually(
        bundle.status,
        lambda s: s.commit == "commit-2" and all_ready({c.cluster: c.state for c in s.clusters}),
        timeout=30,
    )
    assert [w.deployment_id for w in standins.windows] == [
        first,
        deployment_id("2" * 64, f"{'2' * 64}-a"),
    ]
    # The worker was told too (the watch's heartbeat), so the watch stops reading the cluster.
    await eventually(lambda: asyncio.sleep(0, standins.watches_cancelled), lambda n: n == 1)
    history = await bundle.handle.fetch_history()
    assert WATCH_ENDS_WHEN_SUPERSEDED_PATCH in history_text(history)
    record_history(history, "bundle-watch-ends-when-superseded.json")


async def test_a_rollout_that_moves_every_cluster_never_reports_one_held_back(
    start: Callable[..., Awaitable[Bundle]],
) -> None:
    """The pass that decides to deploy a cluster releases it before it reports. A retry
    after a quiet spell longer than REPORT_INTERVAL reports at once, and it said OutOfSync
    "held back by the rollout" while the deploy was starting again."""
    standins = StandIns(clusters=["a", "b"], failures={"a": ["helm upgrade failed: boom"]})
    bundle = await start(standins, retry_seconds=REPORT_INTERVAL.total_seconds() + 0.5)
    await eventually(bundle.states, all_ready, timeout=90)
    reported = []
    async for event in bundle.handle.fetch_history_events():
        if event.HasField("upsert_workflow_search_attributes_event_attributes"):
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            if "FlotillaState" in fields.indexed_fields:
                reported.append(fields.indexed_fields["FlotillaState"].data.decode().strip('"'))
    assert "ErrApplied" in reported and "OutOfSync" not in reported, reported


async def test_a_live_agent_queue_nobody_polls_yet_waits_and_is_not_a_cluster_offline(
    start: Callable[..., Awaitable[Bundle]],
) -> None:
    """An agent cluster the registry shows live (it beats) whose queue is not polled yet (a
    backlog, a restart) waits: no schedule-to-start timeout on agent queues any more, so no
    "cluster offline" and no retry; Offline comes from the registry's heartbeats."""
    standins = StandIns(clusters=["waiting", "online"])
    bundle = await start(
        standins,
        agents=["waiting", "online"],
        serve=["online"],
        cluster_schedule_to_start_seconds=1,
    )
    await eventually(bundle.states, lambda s: s.get("online") is BundleState.READY)
    await asyncio.sleep(3)  # three times the old schedule-to-start timeout
    status = await bundle.status()
    assert [c.state for c in status.clusters] == [BundleState.READY, BundleState.WAIT_APPLIED]

    await bundle.serve("waiting")
    await eventually(bundle.states, all_ready)
    assert standins.calls["deploy_bundle", "waiting"] == 1  # the one scheduled call, no retry


async def test_a_push_queue_nobody_polls_yet_is_not_a_cluster_offline(
    start: Callable[..., Awaitable[Bundle]], temporal_client: Client, task_queue: str
) -> None:
    """Push-mode clusters share queues: a wait there (worker busy or restarting) is no sign
    of one cluster being offline, so it has no schedule-to-start timeout; the deploys wait."""
    standins = StandIns(clusters=["a", "b", "c"])
    bundle = await start(standins, serve_push=False, cluster_schedule_to_start_seconds=1)
    await asyncio.sleep(3)  # three times the agent queues' schedule-to-start timeout
    status = await bundle.status()
    assert all(c.state is BundleState.WAIT_APPLIED for c in status.clusters), status
    async with contextlib.AsyncExitStack() as stack:
        for queue in push_task_queues(task_queue):
            await serve_queue(stack, temporal_client, standins, queue)
        await eventually(bundle.states, all_ready)
    assert all(standins.calls["deploy_bundle", c] == 1 for c in standins.clusters)


async def test_a_push_task_lost_on_its_way_to_the_worker_is_retried_within_seconds(
    start: Callable[..., Awaitable[Bundle]], temporal_client: Client, task_queue: str
) -> None:
    """Issue 12's lost minute: under load the server sometimes hands a push queue's task to a
    poll whose reply never reaches the worker's code (bench_gitops: attempt 1 of a stand-in
    deploy that answers at once timed out on its heartbeat, attempt 2 ran; 64-74 s for the
    commit). Here a worker takes the first attempt and drops it, as such a lost reply does;
    the deploy must run again after the push queues' short heartbeat timeout (20 s), not
    after the minute it took before."""
    standins = StandIns(clusters=["c1"], ready_at_deploy=True)
    taken = asyncio.Event()

    @activity.defn(name="deploy_bundle")
    async def lose_the_first(request: DeployRequest) -> DeployResult:
        if activity.info().attempt == 1:
            taken.set()
            await asyncio.Event().wait()  # never beats, never answers: the task is lost
        return await standins.deploy_bundle(request)

    bundle = await start(standins, serve_push=False)
    queue = deploy_task_queue(task_queue, bundle.namespace, "c1", agent=False)
    async with Worker(
        temporal_client,
        task_queue=queue,
        activities=[lose_the_first, standins.wait_ready, standins.check_deployment],
    ):
        await asyncio.wait_for(taken.wait(), timeout=60)
        lost_at = time.monotonic()
        await eventually(bundle.states, all_ready, timeout=120)
        waited = time.monotonic() - lost_at
    assert standins.calls["deploy_bundle", "c1"] == 1
    # 20 s of heartbeat timeout, 2 s of retry back-off, dispatch under load; 62 s at least
    # with the old 60 s timeout.
    assert waited < 50, f"the lost deploy ran again after {waited:.1f}s"


async def test_an_unreachable_push_cluster_is_errapplied_in_one_line_and_retried(
    start: Callable[..., Awaitable[Bundle]],
) -> None:
    standins = StandIns(
        clusters=["down", "up"],
        failures={"down": ["cluster sb/down unreachable: https://10.0.0.1:6443: refused"] * 3},
    )
    bundle = await start(standins)
    status = await eventually(
        bundle.status,
        lambda s: [c.state for c in s.clusters] == [BundleState.ERR_APPLIED, BundleState.READY],
    )
    assert status.clusters[0].message == (
        "cluster sb/down unreachable: https://10.0.0.1:6443: refused"
    )
    await eventually(bundle.states, all_ready)  # the activity's retries, then the workflow's


async def test_an_update_moves_one_cluster_at_a_time_with_max_unavailable_one(
    start: Callable[..., Awaitable[Bundle]],
) -> None:
    clusters = ["c1", "c2", "c3", "c4"]
    standins = StandIns(clusters=clusters, strategy=RolloutStrategy(max_unavailable=1))
    bundle = await start(standins)
    await eventually(bundle.states, all_ready)
    # New deployments are never held by maxUnavailable (as in Fleet): all four at once.
    assert len(standins.windows) == 4

    standins.ready_after = 0.3
    await bundle.release(2)
    await eventually(
        bundle.status,
        lambda s: (
            s.commit == "commit-2"
            and all(c.state is BundleState.READY for c in s.clusters)
            and len(standins.windows) == 8
        ),
    )
    update = sorted(standins.windows[4:], key=lambda w: w.started)
    assert [w.cluster for w in update] == clusters
    for before, after in itertools.pairwise(update):
        assert before.ready is not None and before.ready <= after.started, (before, after)


async def test_deploys_and_removals_on_retirement_stay_within_the_pending_activity_cap(
    start: Callable[..., Awaitable[Bundle]],
) -> None:
    clusters = [f"c{i}" for i in range(1, 6)]
    standins = StandIns(clusters=clusters, ready_after=0.2, remove_takes=0.3)
    bundle = await start(standins, max_pending_activities=2)
    await eventually(bundle.states, all_ready)

    await bundle.handle.signal(BundleWorkflow.retire, RetireRequest())
    await asyncio.wait_for(bundle.handle.result(), timeout=60)

    removed = {c for (name, c) in standins.calls if name == "remove_deployment"}
    assert removed == set(clusters)
    assert standins.most_running["remove_deployment"] == 2
    assert standins.most_running["*"] == 2  # deploys, watches and removals alike


async def test_two_hundred_push_clusters_roll_out_with_bounded_history_and_no_offline(
    start: Callable[..., Awaitable[Bundle]], caplog: pytest.LogCaptureFixture
) -> None:
    """The scale path at CI size (issue 12): 200 push-mode clusters on the shared queues, two
    versions, with the schedule-to-start switch at 1 s (which made a busy per-cluster queue
    "offline" before). Stand-ins for speed; the real-component rollout is
    tests/e2e/test_rollout.py and bench/bench_gitops.py measures the larger sizes."""
    clusters = [f"c{i:03d}" for i in range(200)]
    standins = StandIns(clusters=clusters, ready_at_deploy=True)
    bundle = await start(standins, cluster_schedule_to_start_seconds=1)
    await roll_out_two_versions(bundle, standins, timeout=180)

    events = size = 0
    run_id: str | None = None
    most_per_task = 0
    while True:
        history = await bundle.client.get_workflow_handle(
            bundle.handle.id, run_id=run_id
        ).fetch_history()
        events += len(history.events)
        size = max(size, sum(e.ByteSize() for e in history.events))
        most_per_task = max(most_per_task, *scheduled_per_task(history))
        last = history.events[-1]
        if not last.HasField("workflow_execution_continued_as_new_event_attributes"):
            break
        run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    assert events / 400 <= 10, f"{events / 400:.1f} history events per bundle deployment"
    # 200 clusters start in passes of at most ACTIVITIES_PER_PASS (a task's CPU stays small).
    assert most_per_task == ACTIVITIES_PER_PASS, most_per_task
    assert size < 1_000_000, f"largest history run {size} bytes"
    offline = [r.getMessage() for r in caplog.records if "cluster offline" in r.getMessage()]
    assert offline == []


async def test_objects_changed_checks_that_cluster_at_once_and_a_lost_record_redeploys(
    start: Callable[..., Awaitable[Bundle]],
) -> None:
    # The real watcher and check: tests/e2e/test_drift_watch.py. Here the periodic check is
    # an hour away, so every check below comes from a signal.
    standins = StandIns(clusters=["a", "b"])
    bundle = await start(standins)
    await eventually(bundle.states, all_ready)
    standins.drift["a"] = ["ConfigMap/app/cfg: differs at /data/color"]

    await bundle.handle.signal(BundleWorkflow.objects_changed, ObjectsChanged(cluster="a"))

    states = await eventually(bundle.states, lambda s: s["a"] is BundleState.MODIFIED)
    assert states["b"] is BundleState.READY
    assert standins.calls["check_deployment", "b"] == 0
    # flotilla sync gitrepo: every cluster, and a lost record is deployed again.
    standins.drift.clear()
    standins.record_lost.add("b")
    deploys = standins.calls["deploy_bundle", "b"]
    await bundle.handle.signal(BundleWorkflow.objects_changed, ObjectsChanged(cluster=""))
    await eventually(
        bundle.states,
        lambda s: all_ready(s) and standins.calls["deploy_bundle", "b"] == deploys + 1,
    )
    assert standins.calls["check_deployment", "a"] == 2


async def test_a_workload_changed_in_a_loop_is_corrected_with_back_off(
    start: Callable[..., Awaitable[Bundle]],
) -> None:
    # Someone else edits the objects every 0.3 s for 6 s; each edit is reported. Without the
    # back-off every report would correct; with it, the first does and the next may only
    # come 10 s later, while the drift shows and the status says why.
    standins = StandIns(clusters=["a"], correct_drift={"a"})
    bundle = await start(standins)
    await eventually(bundle.states, all_ready)
    standins.drift["a"] = ["ConfigMap/app/cfg: differs at /data/color"]
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        await bundle.handle.signal(BundleWorkflow.objects_changed, ObjectsChanged(cluster="a"))
        await asyncio.sleep(0.3)

    status = await eventually(bundle.status, lambda s: "backed off" in s.clusters[0].last_action)
    assert standins.corrections == 1
    assert standins.calls["check_deployment", "a"] > 3
    assert status.clusters[0].state is BundleState.MODIFIED
    assert "drift correction backed off after 1 in a row" in status.clusters[0].last_action


async def test_changed_downstream_resources_are_planned_and_deployed_again(
    start: Callable[..., Awaitable[Bundle]],
) -> None:
    """A bundle whose plan has a downstreamResources digest reads it every
    DOWNSTREAM_POLL_INTERVAL: unchanged, nothing happens; unreadable, nothing happens (what
    runs stays); changed, the bundle is planned again and its clusters get the new id."""
    standins = StandIns(clusters=["a"], downstream="d1", ready_at_deploy=True)
    bundle = await start(standins)
    await eventually(bundle.states, all_ready)
    first = (await bundle.status()).clusters[0].applied
    timeout = DOWNSTREAM_POLL_INTERVAL.total_seconds() * 3 + 30
    await eventually(standins.calls_now, lambda c: c["downstream_digest", ""] >= 1, timeout=timeout)
    standins.downstream_fails = True
    polls = standins.calls["downstream_digest", ""]
    await eventually(
        standins.calls_now, lambda c: c["downstream_digest", ""] > polls, timeout=timeout
    )
    assert standins.calls["plan_bundle", ""] == 1
    assert standins.calls["deploy_bundle", "a"] == 1
    standins.downstream_fails = False
    standins.downstream = "d2"
    status = await eventually(
        bundle.status,
        lambda s: s.clusters[0].applied != first and all_ready({"a": s.clusters[0].state}),
        timeout=timeout,
    )
    assert status.clusters[0].applied == deployment_id("1" * 64, f"d2{'1' * 64}-a")
    assert standins.calls["plan_bundle", ""] == 2
    assert standins.calls["deploy_bundle", "a"] == 2


@workflow.defn(name="ReportSink", sandboxed=False)
class ReportSink:
    """Stands where the GitRepo workflow is: keeps the bundle's reports."""

    def __init__(self) -> None:
        self.reports: list[BundleReport] = []

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.signal(name=BUNDLE_REPORT_SIGNAL)
    def report(self, report: BundleReport) -> None:
        self.reports.append(report)

    @workflow.query
    def last(self) -> BundleReport | None:
        return self.reports[-1] if self.reports else None


async def test_reports_carry_counts_a_few_non_ready_and_packed_states_read_back_exactly(
    start: Callable[..., Awaitable[Bundle]], temporal_client: Client, task_queue: str
) -> None:
    """The new path of ``status12-packed-bundle-reports`` (issue 12): what the GitRepo gets is
    counts per state, the first non-ready deployments with their messages and the per-cluster
    states packed against the snapshot's cluster list, which read back to exactly what the
    bundle shows; no ``{cluster: state}`` entry per cluster. With FLOTILLA_RECORD_HISTORIES=DIR
    the bundle's history is written there for tests/replay."""
    clusters = [f"c{i:03d}" for i in range(60)]
    failing = ["c007", "c031"]
    standins = StandIns(
        clusters=clusters,
        ready_at_deploy=True,
        failures={c: ["helm upgrade failed: image pull refused"] * 10_000 for c in failing},
    )
    bundle = await start(standins)
    sink_queue = f"{task_queue}-sink"
    await bundle.stack.enter_async_context(
        Worker(temporal_client, task_queue=sink_queue, workflows=[ReportSink])
    )
    sink = await temporal_client.start_workflow(
        ReportSink.run, id=gitrepo_workflow_id(bundle.namespace, "repo"), task_queue=sink_queue
    )
    bundle.stack.push_async_callback(_terminate, sink)  # type: ignore[arg-type]
    await bundle.release(2)  # reports made after the sink is there

    def settled(report: BundleReport | None) -> bool:
        return bool(report and report.commit == "commit-2" and report.counts.get("Ready") == 58)

    report = await eventually(lambda: sink.query(ReportSink.last), settled, timeout=120)
    assert report is not None

    assert report.counts == {"Ready": 58, "ErrApplied": 2}
    assert (report.ready, report.desired, report.state) == (58, 60, BundleState.ERR_APPLIED)
    assert [(e.name, e.state, e.message) for e in report.non_ready] == [
        (c, BundleState.ERR_APPLIED, "helm upgrade failed: image pull refused") for c in failing
    ]
    assert report.states == {} and report.clusters_key == cluster_index(clusters).key
    assert len(report.codes) < 20, report.codes  # runs: 7 Ready, 1 ErrApplied, ...
    assert expand_report(report, cluster_index(clusters)).states == await bundle.states()
    assert len(report.model_dump_json()) < 700

    history = await bundle.handle.fetch_history()
    assert PACKED_REPORTS_PATCH in history_text(history)
    record_history(history, "bundle-packed-reports.json")


async def test_a_plan_that_fails_keeps_what_runs_and_is_tried_again(
    start: Callable[..., Awaitable[Bundle]],
) -> None:
    """The new path of ``bundle-plan-failure-waits``: commit 2's plan fails (twice, after its
    retries), the bundle workflow lives on with commit 1's deployments as they were (nothing
    removed or redeployed), and plans commit 2 again after the retry delay. Before the patch
    the workflow failed and the bundle sat at WaitApplied until the next commit.
    With FLOTILLA_RECORD_HISTORIES=DIR the history is written there for tests/replay."""
    standins = StandIns(clusters=["a", "b"], plan_failures=2)
    bundle = await start(standins, retry_seconds=1.0)
    await eventually(bundle.states, all_ready)
    await bundle.release(2)
    await eventually(standins.calls_now, lambda calls: calls["plan_bundle", ""] >= 3)
    # While commit 2 cannot be planned, commit 1's deployments stay as they were.
    assert standins.calls["deploy_bundle", "a"] == 1, standins.calls
    assert standins.calls["remove_deployment", "a"] == 0, standins.calls
    status = await eventually(
        bundle.status,
        lambda s: s.commit == "commit-2" and all_ready({c.cluster: c.state for c in s.clusters}),
    )
    assert standins.calls["plan_bundle", ""] == 4, standins.calls
    assert {c.applied for c in status.clusters} == {
        deployment_id("2" * 64, f"{'2' * 64}-{c}") for c in ("a", "b")
    }
    assert sum(n for (name, _), n in standins.calls.items() if name == "remove_deployment") == 0
    description = await bundle.handle.describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    history = await bundle.handle.fetch_history()
    assert PLAN_FAILURE_WAITS_PATCH in history_text(history)
    record_history(history, "bundle-plan-failure-waits.json")


async def test_a_history_past_the_byte_bound_continues_as_new_and_redeploys_nothing(
    start: Callable[..., Awaitable[Bundle]],
) -> None:
    """A bundle continues as new once its history passes ``CONTINUE_AS_NEW_BYTES`` (the test
    switch ``max_history_bytes`` lowers it from 1 MB to 40 kB so a 30-cluster rollout passes
    it), not only when Temporal suggests it at 4 MB: a history is replayed whole whenever it
    leaves the worker's cache, and 1-3 MB replays outlasted the task timeout on a busy
    worker (issue 12). The rollout goes on across the runs: every cluster deployed once per
    version, nothing removed.
    With FLOTILLA_RECORD_HISTORIES=DIR the first run's history is written for tests/replay."""
    clusters = [f"c{i:02d}" for i in range(30)]
    standins = StandIns(clusters=clusters, ready_at_deploy=True)
    bundle = await start(standins, max_history_bytes=40_000)
    await roll_out_two_versions(bundle, standins, timeout=120)
    assert sum(n for (name, _), n in standins.calls.items() if name == "remove_deployment") == 0

    first = await bundle.client.get_workflow_handle(
        bundle.handle.id, run_id=bundle.handle.first_execution_run_id
    ).fetch_history()
    last = first.events[-1]
    assert last.HasField("workflow_execution_continued_as_new_event_attributes"), (
        "the first run did not continue as new"
    )
    assert common.CONTINUE_AS_NEW_BYTES_PATCH in history_text(first)
    record_history(first, "bundle-continue-as-new-by-bytes.json")


async def test_a_pass_starts_at_most_its_bound_of_activities_and_the_rest_follow(
    start: Callable[..., Awaitable[Bundle]],
) -> None:
    """110 clusters, two versions: new deployments start 50 at a time (Fleet's ``maxNew``);
    the update may move them all, but one pass starts at most ``ACTIVITIES_PER_PASS`` (40)
    deploys and the passes their completions wake start the rest. Every cluster is deployed
    once per version. With FLOTILLA_RECORD_HISTORIES=DIR the history is written for
    tests/replay."""
    clusters = [f"c{i:03d}" for i in range(110)]
    standins = StandIns(clusters=clusters, ready_at_deploy=True)
    bundle = await start(standins)
    await roll_out_two_versions(bundle, standins, timeout=120)
    history = await bundle.handle.fetch_history()
    batches = scheduled_per_task(history)
    assert max(batches) == ACTIVITIES_PER_PASS, batches
    assert SMALLER_PASSES_PATCH in history_text(history)
    record_history(history, "bundle-40-activities-per-pass.json")


async def test_the_sweep_checks_push_clusters_in_batches_and_a_failed_check_again_alone(
    start: Callable[..., Awaitable[Bundle]],
) -> None:
    """The periodic drift sweep checks push-mode clusters ``CHECK_BATCH`` (20) to a
    ``check_deployments`` activity, an agent-mode cluster alone on its own queue. A check that
    fails inside its batch is checked again at once on its own, so a passing blip shows no
    ErrApplied; drift found in a batch shows as from a single check. With
    FLOTILLA_RECORD_HISTORIES=DIR the history is written for tests/replay."""
    clusters = [f"c{i:02d}" for i in range(45)]
    standins = StandIns(clusters=[*clusters, "edge"], ready_at_deploy=True)
    bundle = await start(standins, agents=["edge"], monitor_seconds=2)
    await eventually(bundle.states, lambda s: len(s) == 46 and all_ready(s), timeout=60)
    standins.check_failures["c07"] = 1
    standins.drift["c30"] = ["ConfigMap/app/cfg: differs at /data/color"]

    def checked_alone(name: str) -> int:
        return standins.calls["check_deployment", name] - sum(name in b for b in standins.batches)

    states = await eventually(
        bundle.states,
        lambda s: s["c30"] is BundleState.MODIFIED and checked_alone("c07") >= 1,
    )
    # The first sweep's three batches (on different push queues, so in any order); the next
    # sweep starts after all three ended.
    sweep = standins.batches[:3]
    assert sorted(len(b) for b in sweep) == [5, 20, 20], sweep
    assert sorted(n for b in sweep for n in b) == clusters  # each once, the agent's not
    assert checked_alone("c00") == 0
    assert checked_alone("edge") >= 1  # its own queue: alone
    assert states["c07"] is BundleState.READY
    status = await bundle.status()
    c07 = next(c for c in status.clusters if c.cluster == "c07")
    assert "unreachable" not in c07.message, c07
    assert standins.calls["check_deployment", "edge"] >= 1

    history = await bundle.handle.fetch_history()
    text = history_text(history)
    assert BATCHED_CHECKS_PATCH in text
    record_history(history, "bundle-batched-drift-checks.json")


async def test_a_sweep_whose_batch_fails_checks_each_cluster_alone(
    start: Callable[..., Awaitable[Bundle]], temporal_client: Client, task_queue: str
) -> None:
    """Workers that do not serve ``check_deployments`` (an older worker during an upgrade):
    the batch fails after its retries and each of its clusters is checked alone, nothing
    shows ErrApplied, and drift is still found."""
    clusters = [f"c{i}" for i in range(3)]
    standins = StandIns(clusters=clusters, ready_at_deploy=True)
    bundle = await start(standins, serve_push=False, monitor_seconds=1)
    for queue in push_task_queues(task_queue):
        await bundle.stack.enter_async_context(
            Worker(
                temporal_client,
                task_queue=queue,
                activities=[standins.deploy_bundle, standins.check_deployment],
            )
        )
    await eventually(bundle.states, lambda s: len(s) == 3 and all_ready(s), timeout=60)
    standins.drift["c1"] = ["ConfigMap/app/cfg: differs at /data/color"]

    states = await eventually(bundle.states, lambda s: s["c1"] is BundleState.MODIFIED, timeout=60)
    assert states["c0"] is states["c2"] is BundleState.READY
    assert standins.batches == []
    assert all(standins.calls["check_deployment", c] >= 1 for c in clusters)


async def test_a_settled_rollout_past_half_the_byte_bound_continues_as_new_while_idle(
    start: Callable[..., Awaitable[Bundle]],
) -> None:
    """A run whose rollout has settled continues as new once it has been idle for
    ``IDLE_CONTINUE_DELAY``, when its history grew past half the byte bound
    (``max_history_bytes`` 80 kB here; one 30-cluster rollout grows it by about 50 kB): so
    the next rollout starts in a fresh run and does not stop half-way to continue as new (a
    shard that did held its share of a partition idle, issue 12). Nothing is in flight when
    it closes, and the next version still deploys once per cluster, with nothing removed.
    With FLOTILLA_RECORD_HISTORIES=DIR the first run's history is written for tests/replay."""
    clusters = [f"c{i:02d}" for i in range(30)]
    standins = StandIns(clusters=clusters, ready_at_deploy=True)
    bundle = await start(standins, max_history_bytes=80_000)
    await eventually(bundle.states, lambda s: len(s) == 30 and all_ready(s), timeout=60)
    first = bundle.client.get_workflow_handle(
        bundle.handle.id, run_id=bundle.handle.first_execution_run_id
    )

    async def first_run_status() -> WorkflowExecutionStatus | None:
        return (await first.describe()).status

    # Nothing else is sent: the run closes on its own, between rollouts.
    await eventually(
        first_run_status, lambda s: s == WorkflowExecutionStatus.CONTINUED_AS_NEW, timeout=30
    )
    history = await first.fetch_history()
    text = history_text(history)
    assert IDLE_CONTINUE_PATCH in text
    assert common.CONTINUE_AS_NEW_BYTES_PATCH not in text, "closed at the bound, not idle"
    events = history.events
    scheduled = sum(e.HasField("activity_task_scheduled_event_attributes") for e in events)
    ended = [
        e.event_time.ToDatetime()
        for e in events
        if e.HasField("activity_task_completed_event_attributes")
        or e.HasField("activity_task_failed_event_attributes")
    ]
    assert scheduled == len(ended), "an activity was in flight when the run closed"
    quiet = events[-1].event_time.ToDatetime() - max(ended)
    assert quiet >= IDLE_CONTINUE_DELAY, quiet
    await bundle.release(2)
    await eventually(
        bundle.status,
        lambda s: (
            s.commit == "commit-2"
            and len(standins.windows) >= 60
            and all_ready({c.cluster: c.state for c in s.clusters})
        ),
        timeout=60,
    )
    assert len(standins.windows) == 60  # once per version, no retries
    assert sum(n for (name, _), n in standins.calls.items() if name == "remove_deployment") == 0
    record_history(history, "bundle-continue-as-new-when-idle.json")
