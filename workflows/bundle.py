"""BundleWorkflow: one bundle, rolled out to every cluster it targets, partition by partition.

``bundle/<namespace>/<bundle>`` runs as long as the bundle exists in its GitRepo. A bundle
deployment (the bundle on one cluster) is not a workflow: it is a record in this workflow's
state plus a few activities on the cluster's task queue (deploy, then wait for Ready), so
history grows by a handful of events per cluster and version. This workflow only sequences:
what it knows about each cluster is a ``flotilla.bundledeployment.DeploymentRecord``, changed
only by that record's transitions; who moves in a pass is decided by
``flotilla.rollout.plan_rollout``; states by ``flotilla.status``. dependsOn waits are durable:
the GitRepo workflow forwards the states of the bundles this one waits for as signals, so
nothing polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, TimeoutType
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

with workflow.unsafe.imports_passed_through():
    from activities.contentgc_models import CONTENT_REFS_QUERY, ContentRefs, ContentRefsRequest
    from activities.deploy_models import (
        CHECK_DEPLOYMENT,
        CHECK_DEPLOYMENTS,
        DEPLOY_BUNDLE,
        REMOVE_DEPLOYMENT,
        WAIT_READY,
        CheckBatchRequest,
        CheckBatchResult,
        DeploymentStatus,
        DeployRequest,
        DeployResult,
        RemoveRequest,
        RemoveResult,
        StatusRequest,
        WaitReadyRequest,
    )
    from activities.gitops_models import (
        DOWNSTREAM_DIGEST,
        PLAN_BUNDLE,
        DownstreamDigestRequest,
        DownstreamDigestResult,
        PlanCluster,
        PlanRequest,
        PlanResult,
    )
    from activities.objectwatch_models import OBJECTS_CHANGED_SIGNAL, ObjectsChanged
    from flotilla.bundledeployment import RETRY_DELAY, Due
    from flotilla.bundlewake import WakeMemo
    from flotilla.clusterstates import cluster_index, pack_report
    from flotilla.depends import Dependency, check_dependencies, states_on_cluster
    from flotilla.errors import INVALID_SPEC, WINDOW_CLOSED, FlotillaError, cause_message, one_line
    from flotilla.gates import (
        Approval,
        ClusterHealth,
        GateDecision,
        check_approval,
        count_failures,
        decide,
        has_failure_budget,
        observe,
        partition_gates,
        partition_order,
        rolls_back,
    )
    from flotilla.gates import statuses as gate_statuses
    from flotilla.ids import cluster_task_queue, deploy_task_queue, gitrepo_workflow_id
    from flotilla.models import window_of
    from flotilla.reportpace import held_report_due
    from flotilla.rollout import (
        RolloutPlan,
        RolloutState,
        RolloutTarget,
        ShardView,
        is_up_to_date,
        make_partitions,
        plan_rollout,
    )
    from flotilla.shards import PartitionCounts, drained, shard_counts
    from flotilla.status import (
        BundleReport,
        BundleState,
        StateWithMessage,
        bundle_shown,
        ready_condition,
        reported_summary,
        state_since,
        summarize,
        transition,
        while_planning,
    )
    from flotilla.targeting import ClusterInfo, match_target
    from flotilla.windows import Window, WindowState, window_at
    from workflows.bundle_models import (
        APPROVE_ROLLOUT_UPDATE,
        BUNDLE_STATUS_QUERY,
        PAUSE_SIGNAL,
        ApproveRolloutRequest,
        ApproveRolloutResult,
        BundleRefresh,
        BundleSpec,
        BundleStatus,
        BundleStatusRequest,
        BundleWorkflowState,
        ClusterStatus,
        DependencyStates,
        DeploymentRecord,
        PauseRequest,
        RetireRequest,
        ShardReport,
    )
    from workflows.bundle_shards import (
        SHARD_REPORT_SIGNAL,
        SHARD_STATES_PATCH,
        ShardedBundle,
        with_packed_states,
    )
    from workflows.common import (
        AGENT_QUEUE_BACKSTOP,
        CHECK_BATCH,
        CHECK_BATCH_TIMEOUT,
        CHECK_TIMEOUT,
        CLUSTER_SCHEDULE_TO_START,
        DEPLOY_HEARTBEAT,
        DEPLOY_RETRY,
        DEPLOY_TIMEOUT,
        DOWNSTREAM_POLL_INTERVAL,
        PLAN_RETRY,
        PLAN_TIMEOUT,
        PUSH_HEARTBEAT,
        REMOVE_TIMEOUT,
        REPORT_INTERVAL,
        WAIT_READY_HEARTBEAT,
        WAIT_READY_TIMEOUT,
        continue_as_new_due,
        history_growth,
    )
    from workflows.registry_models import ClusterSnapshot, ClusterView
    from workflows.snapshots import load_clusters
    from workflows.visibility import (
        publish_bundle,
    )

# The GitRepo workflow's signal that receives BundleReport.
BUNDLE_REPORT_SIGNAL = "bundle_report"
REFRESH_SIGNAL = "refresh"
# Long enough for most releases to turn Ready inside the deploy; short enough that a stuck
# one soon shows NotReady with what is not ready (during the grace it shows WaitApplied).
READY_GRACE_SECONDS = 30.0
# Push-mode clusters' activities go to the shared push queues, with no schedule-to-start
# timeout (a busy shared queue says nothing about one cluster); only agents keep their own.
SHARED_QUEUES_PATCH = "push-shared-queues"
# A bundle reports every change of what its GitRepo shows within REPORT_GAP, not once per
# REPORT_INTERVAL at the next activity completion (more reports, so it changes commands).
REPORT_CHANGES_PATCH = "bundle-reports-changes-at-once"
# An agent-mode cluster whose agent is offline gets no new deploys, watches or checks until
# it returns: its deploys wait (shown Offline), with no timeouts or retries meanwhile.
AGENT_OFFLINE_WAITS_PATCH = "agent-offline-cluster-waits"
# Agent queues lose their 2-minute schedule-to-start timeout: Offline comes from missed
# heartbeats (and from registration until the first beat), which hold the cluster's new work,
# so a wait on a live agent's queue (a backlog beyond its --threads) is only a wait, never
# "cluster offline" and a retry. A call queued when an agent died waits for the next agent, up
# to AGENT_QUEUE_BACKSTOP (30 min; then ErrApplied, and held while the cluster is Offline).
AGENT_QUEUES_WAIT_PATCH = "f13-agent-queues-wait"
# How long a change of what the GitRepo shows may wait for the reports before it to settle:
# with the signal's delivery, under the 5 s a GitRepo's line may lag its bundles.
REPORT_GAP = timedelta(seconds=3)
# A held report waits on one timer of its own, kept across wakes and due REPORT_GAP after the
# change was first seen (flotilla.reportpace), so it usually goes out with the next activity
# completion instead of on a timer due REPORT_GAP after the last report, which the wait's
# timeout set again at every wake. Asked only when a report is held.
REPORTS_COALESCED_PATCH = "watch-held-reports-coalesced"
# A shard's report is not held when a reached partition's part in it has just run out of
# clusters waiting for budget (flotilla.shards.drained): the bundle hands the budget on and
# reaches the next partition without waiting REPORT_GAP. Asked only when that happens to a
# held report.
SHARD_DRAINED_REPORT_PATCH = "shard-report-when-drained"
# A report made while a newer commit is still being planned (it came in during the plan) says
# WaitApplied for it, no longer the older plan's Ready (a different report: more signals).
PLANNING_PATCH = "bundle-report-waits-for-the-plan"
# A plan (or a stored cluster list) that cannot be had after its retries no longer fails the
# bundle workflow: what runs stays as planned before, and the plan is tried again after
# the deploy retry delay (a bundle workflow that failed sat at WaitApplied until the next commit).
PLAN_FAILURE_WAITS_PATCH = "bundle-plan-failure-waits"
# A deployment the rollout moves is released in the same pass, so the pass's report says
# WaitApplied, not OutOfSync "held back by the rollout" (a different report).
RELEASED_AT_ONCE_PATCH = "bundle-released-before-its-report"
# One pass starts at most ACTIVITIES_PER_PASS deploys, drift checks and removals; the rest
# start in the passes their completions wake. Each scheduled activity has its input
# serialized in the sandbox, inside the workflow task: the deadlock failures of 500-cluster
# passes on a busy worker (past the SDK's 2 s bound, then replayed whole) stopped there
# (issue 12; the per-activity cost was not measured on its own). Asked only when a pass
# would start more, so smaller bundles carry no marker. The bound was 100
# (ACTIVITIES_PER_PASS_BEFORE, patch ``bundle-activities-per-pass``); at 100 the passes that
# scheduled 50-100 deploys were the slowest 1 % of workflow tasks at 50 bundles x 500
# clusters (1.1-1.6 s, p99 1.1 s on the busy machine; the cost per scheduled activity was
# not measured alone), so since patch ``bundle-40-activities-per-pass`` it is 40.
ACTIVITIES_PER_PASS = 40
SMALLER_PASSES_PATCH = "bundle-40-activities-per-pass"
ACTIVITIES_PER_PASS_BEFORE = 100
BOUNDED_STARTS_PATCH = "bundle-activities-per-pass"
# The periodic drift sweep checks push-mode clusters CHECK_BATCH to an activity
# (``check_deployments``) instead of one each (issue 12: an idle fleet of 25,000 deployments
# spent half a core on the single checks' workflow tasks and dispatch). Asked only when a
# sweep has two or more push-mode clusters to check, so single-cluster runs carry no marker.
BATCHED_CHECKS_PATCH = "bundle-batched-drift-checks"
# Deployment windows (Fleet's Schedule): a cluster a Schedule targets is deployed to only
# while a window is open, with a timer for the next one. Asked only when the workspace has
# Schedules, so runs without any carry no marker.
WINDOWS_PATCH = "windows-deployment-windows"

# Reports carry counts per state, a few non-ready deployments and the per-cluster states
# packed against the cluster list (flotilla.clusterstates), not one entry per cluster: at 50
# bundles × 500 clusters the GitRepo's state stays small (issue 12). A different signal input.
PACKED_REPORTS_PATCH = "status12-packed-bundle-reports"

# Gates between partitions (approval, soak; flotilla.gates): asked only by bundles whose
# partitions declare a gate, so runs without any carry no marker.
GATES_PATCH = "gates-partition-gates"
# A deploy that returns not Ready while a newer version is staged for its cluster (a new
# commit or a rollback came in meanwhile) is not watched: the next pass deploys the newer
# version at once, instead of after a readiness watch of the superseded one. Asked only then.
SUPERSEDED_NOT_WATCHED_PATCH = "rollback-superseded-deploy-not-watched"
# The same when the newer version comes after the watch began: a running readiness watch is
# cancelled once the rollout is to deploy a newer version to its cluster, or the cluster is no
# longer targeted (the newer version, a rollback included, waited for the watch: up to 10
# minutes when the watched version never turned Ready). Asked only then.
WATCH_ENDS_WHEN_SUPERSEDED_PATCH = "rollback-watch-ends-when-superseded"
# A failure budget's deadline runs from when the version's deploy starts on the cluster, not
# from a pass that offered it while an older deploy was still in flight there (a rollback
# offered during a slow bad deploy was charged for it). Asked only in that situation.
RELEASED_WHEN_DEPLOYED_PATCH = "rollback-failure-deadline-from-deploy"
# Staging the version a cluster runs after a different one failed to apply there deploys it
# again, so Helm's history ends on a deployed revision instead of the failed one (without it
# the failed one's retry could go back to what runs and call it settled). Asked only then.
REDEPLOY_AFTER_FAILED_PATCH = "rollback-redeploy-after-failed-version"

# downstreamResources: a bundle that lists some reads their digest every
# DOWNSTREAM_POLL_INTERVAL and plans again when it changed (a new deployment id: a re-deploy of
# this bundle only). Asked only by bundles whose plan has such a digest.
DOWNSTREAM_PATCH = "downstream-resources-digest"
# A run that rolled something out continues as new once it has been idle (nothing in flight)
# for IDLE_CONTINUE_DELAY, if its history has grown past half of CONTINUE_AS_NEW_BYTES,
# rather than in the middle of its next rollout: continuing as new waits for every deploy in
# flight and starts none meanwhile, so a shard that did so mid-partition held its half of the
# partition's budget idle for a round and its new run's first task (~0.4 s at 10,000
# clusters, once per shard per update: issue 12, bench/RESULTS.md "continuing as new between
# rollouts"). The delay lets the signals an idle moment brings (a shard's lowered grant,
# which comes right after its drained report) arrive first: a signal that reaches a run as
# it closes makes Temporal refuse the close, and the worker replays the whole history.
# Asked only when such a run is idle past half the bound, so other runs carry no marker.
IDLE_CONTINUE_PATCH = "bundle-continues-as-new-when-idle"
IDLE_CONTINUE_DELAY = timedelta(seconds=2)
# A shard whose report is already held (its timer armed, nothing drained) does not make the
# report again at each activity completion only to hold it: the states, their packing and
# the fingerprint of 500 clusters were a third of a shard pass's own code, and a gated
# update runs on one shard task after another (issue 12, bench/RESULTS.md "continuing as
# new between rollouts"). A report that changed back to the one sent is found when the
# timer fires, not at once. Asked only when a report is skipped so.
HELD_REPORT_UNMADE_PATCH = "shard-held-report-not-made-again"
# A sharded bundle due to continue as new waits up to GRANT_REPLY_WAIT for its shards to
# confirm the grants it has just sent: it closed in the pass after sending some, the shards'
# replies reached the closing run, Temporal refused the close and the worker replayed the
# bundle's whole history (about one run in two of the 10,000-cluster benchmark, a 0.5-1.5 s
# task holding the next grant; issue 12). Asked only when a close waits so.
SHARD_REPLIES_BEFORE_CLOSE_PATCH = "bundle-closes-after-shard-replies"
GRANT_REPLY_WAIT = timedelta(seconds=1)


def _shape(report: BundleReport) -> str:
    """What a GitRepo shows of a report (all but the messages), as a digest."""
    non_ready = [e.model_copy(update={"message": ""}) for e in report.non_ready]
    return hashlib.sha256(
        report.model_copy(update={"message": "", "non_ready": non_ready}).model_dump_json().encode()
    ).hexdigest()


def _keep_loaded(new: ClusterSnapshot, old: ClusterSnapshot | None) -> ClusterSnapshot:
    """A header of the snapshot whose clusters were loaded already (a new spec comes with the
    same header) keeps them: loaded once per digest, not once per refresh."""
    if new.by_digest and old is not None and old.clusters_digest == new.clusters_digest:
        return new.model_copy(update={"clusters": old.clusters})
    return new


@workflow.defn
class BundleWorkflow(ShardedBundle):
    """``bundle/<namespace>/<bundle>``: plans, rolls out, watches and finally removes a bundle."""

    @workflow.init
    def __init__(self, state: BundleWorkflowState) -> None:
        self.state = state
        # The history's size when this run started (its input), for continue_as_new_due.
        self._start_bytes = workflow.info().get_current_history_size()
        self._wake = True
        self._in_flight: set[str] = set()
        # Running readiness watches by cluster, and those cancelled because the rollout moved
        # on (_end_watch).
        self._watches: dict[str, workflow.ActivityHandle[Any]] = {}
        self._watches_ended: set[str] = set()
        # Activities this reconcile pass started (ACTIVITIES_PER_PASS).
        self._started_in_pass = 0
        self._summary = "waiting for the first commit"
        self._partitions_done: list[str] = []
        self._conflicts: dict[str, str] = {}
        # Clusters whose drift check is due but has not started yet (room permitting).
        self._monitor_queue: list[str] = []
        # Clusters whose object watcher reported a change: checked as soon as they are idle.
        self._changed: set[str] = set()
        # Queued clusters checked on their own, not in a batch: reported changes (at once,
        # with the single check's retries) and those a batch gave no status for.
        self._singly: set[str] = set()
        # This run batches the sweep's checks (BATCHED_CHECKS_PATCH asked and true).
        self._batches_checks = False
        self._run_started = workflow.now()
        self._views: dict[str, ClusterView] = {}
        # The snapshot object _views was built from (a refresh replaces it; reachability
        # changes arrive with the same version, so the version alone is not enough).
        self._views_of: ClusterSnapshot | None = None
        # The sorted names of that snapshot, which reports pack their states against.
        self._index = cluster_index(())
        # Each cluster's rollout target and state, rebuilt only where something changed.
        self._memo = WakeMemo()
        # The last report sent, without its message, and when a held-back message is due.
        self._shape = ""
        self._report_due: datetime | None = None
        # When a plan (or a stored cluster list) that could not be had is tried again.
        self._plan_again_at: datetime | None = None
        # With REPORTS_COALESCED_PATCH: when the shape first differed from the last report's,
        # and the one timer (a task) that wakes the workflow for the held report.
        self._changed_at: datetime | None = None
        self._report_timer: asyncio.Task[None] | None = None
        self._report_timer_due: datetime | None = None
        # The Schedules that target each cluster (by snapshot version), and their state at the
        # time of the pass that computed it.
        self._cluster_windows: dict[str, tuple[Window, ...]] = {}
        self._windows_version = -1
        self._windows_at: dict[tuple[Window, ...], WindowState] = {}
        self._windows_now: datetime | None = None
        # Set by a pass (queries may not ask for a patch) once the workspace has Schedules.
        self._windows_enabled = False
        # The last pass's gate decision, the gate record it was made on (what status shows,
        # so a gate decided since then never reads Rejected beside a rollout still waiting)
        # and the clusters its closed partition holds back.
        self._gate = GateDecision()
        self._gate_record = state.gates
        self._gated: dict[str, str] = {}
        # A shard's partitions after its last pass, for its bundle (flotilla.shards).
        self._shard_counts: list[PartitionCounts] = []
        # This run released a deploy, and when it continues as new if it stays idle until
        # then (_idle_continue_due).
        self._rolled = False
        self._continue_at: datetime | None = None
        # When a close held back for shards' replies is looked at again at the latest.
        self._close_due: datetime | None = None
        self._init_shards()

    @workflow.run
    async def run(self, state: BundleWorkflowState) -> None:
        while not self.state.retiring:
            # A timeout means a retry or a readiness re-check is due.
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._wake or self.state.retiring, timeout=self._next_timer()
                )
            self._wake = False
            if self.state.retiring:
                break
            await self._report_conflicts()
            await self._reconcile()
            if (
                self._idle_continue_due()
                or continue_as_new_due(
                    self.state.max_history_events,
                    start_bytes=self._start_bytes,
                    max_history_bytes=self.state.max_history_bytes,
                )
            ) and not self._awaiting_shard_replies():
                await workflow.wait_condition(
                    lambda: not self._in_flight and workflow.all_handlers_finished()
                )
                workflow.continue_as_new(self.state)
        await workflow.wait_condition(lambda: not self._in_flight)
        if self.state.shards is not None:
            await self._retire_shards()
        else:
            await self._retire()

    # --- signals, updates, queries ------------------------------------------------------------

    @workflow.signal(name=REFRESH_SIGNAL)
    def refresh(self, refresh: BundleRefresh) -> None:
        if refresh.spec is not None:
            sender = refresh.spec.owner_workflow_id or gitrepo_workflow_id(
                self.state.namespace, refresh.spec.gitrepo
            )
            if sender != self.state.gitrepo_workflow_id:
                # Another GitRepo has a bundle of the same name: it is told, never obeyed.
                self._conflicts[sender] = refresh.spec.commit
                self._wake = True
                return
            self.state.spec = refresh.spec
        if refresh.clusters is not None and (
            self.state.clusters is None or refresh.clusters.version >= self.state.clusters.version
        ):
            self.state.clusters = _keep_loaded(refresh.clusters, self.state.clusters)
        self.state.dependency_states.update(refresh.dependency_states)
        self.state.dependency_commits.update(refresh.dependency_commits)
        if refresh.dependency_packed or self.state.dependency_packed:
            self._cluster_views()  # the index of the latest snapshot
            for update in refresh.dependency_packed:
                self._take_dependency(update, self._index)
            self._unpack_dependencies(self._index)
        shard = self.state.shard
        if refresh.grant is not None and shard is not None and refresh.grant.seq > shard.grant.seq:
            shard.grant = refresh.grant
        self._wake = True

    @workflow.signal(name=SHARD_REPORT_SIGNAL)
    def shard_report(self, report: ShardReport) -> None:
        """One of this bundle's shards says how its part stands (counts only)."""
        self._shard_reported(report)
        self._wake = True

    @workflow.signal
    def dependency_states(self, update: DependencyStates) -> None:
        self._cluster_views()  # the index of the latest snapshot, for packed states
        self._take_dependency(update, self._index)
        self._wake = True

    @workflow.signal(name=OBJECTS_CHANGED_SIGNAL)
    def objects_changed(self, change: ObjectsChanged) -> None:
        """The cluster's object watcher saw this bundle's objects change: check it now
        (every cluster when ``cluster`` is empty: ``flotilla sync gitrepo``)."""
        if self._shard_objects_changed(change):
            self._wake = True
            return
        if not change.cluster:
            self._changed.update(self.state.deployments)
        elif change.cluster in self.state.deployments:
            self._changed.add(change.cluster)
        self._wake = True

    @workflow.signal(name=PAUSE_SIGNAL)
    def pause(self, request: PauseRequest) -> None:
        self.state.paused = request.paused
        self._wake = True

    @workflow.update(name=APPROVE_ROLLOUT_UPDATE)
    def approve_rollout(self, request: ApproveRolloutRequest) -> ApproveRolloutResult:
        """A person approves (or rejects) a partition of the version rolling out now."""
        spec = self.state.spec
        assert spec is not None  # the validator refused a bundle with no version yet
        self.state.gates = self.state.gates.for_version(spec.bundle_digest).decided(
            Approval(
                partition=request.partition,
                approved=request.approve,
                user=request.user,
                reason=one_line(request.reason),
                at=workflow.now(),
            )
        )
        self._wake = True
        verb = "approved" if request.approve else "rejected"
        return ApproveRolloutResult(
            message=f"bundle {self.state.namespace}/{self.state.bundle}: partition "
            f"{request.partition} {verb} by {request.user} for commit {spec.commit[:12]}"
        )

    @approve_rollout.validator
    def _validate_approve_rollout(self, request: ApproveRolloutRequest) -> None:
        spec = self.state.spec
        if self.state.shard is not None:
            raise ApplicationError(
                f"this is shard {self.state.shard.index} of bundle {self.state.bundle}: "
                "approve the bundle, which holds the gates of all its shards",
                type=INVALID_SPEC,
                non_retryable=True,
            )
        if spec is None:
            raise ApplicationError(
                f"bundle {self.state.bundle} has no version to approve yet",
                type=INVALID_SPEC,
                non_retryable=True,
            )
        try:
            check_approval(
                partition_gates(self.state.strategy),
                request.partition,
                user=request.user,
                reason=request.reason,
            )
        except FlotillaError as err:
            raise ApplicationError(str(err), type=INVALID_SPEC, non_retryable=True) from None
        decided = self.state.gates.for_version(spec.bundle_digest).approvals.get(request.partition)
        if decided is not None:
            what = "approved" if decided.approved else "expired" if decided.expired else "rejected"
            raise ApplicationError(
                f"partition {request.partition} of commit {spec.commit[:12]} was already "
                f"{what}" + (f" by {decided.user}" if decided.user else ""),
                type=INVALID_SPEC,
                non_retryable=True,
            )

    @workflow.signal
    def retire(self, request: RetireRequest) -> None:
        workflow.logger.info("bundle %s: retiring: %s", self.state.bundle, request.reason)
        self.state.retiring = True

    @workflow.query(name=BUNDLE_STATUS_QUERY)
    def status(self, request: BundleStatusRequest) -> BundleStatus:
        if self.state.shards is not None:
            return self._shard_status()
        planning = self._planning()
        states = self._states(planning)
        summary = summarize(states, planning=planning)
        spec = self.state.spec
        clusters = []
        for name, item in sorted(states.items()):
            record = self.state.deployments.get(name)
            target = self.state.targets.get(name)
            clusters.append(
                ClusterStatus(
                    cluster=name,
                    state=item.state,
                    message=item.message,
                    deployment_id=target.deployment_id if target else "",
                    applied=record.applied if record else "",
                    release=(
                        f"{record.release.namespace}/{record.release.name}"
                        f"#{record.release.revision}"
                        if record and record.release
                        else ""
                    ),
                    non_ready=record.non_ready if record else [],
                    last_action=record.last_action if record else "",
                    since=since.since
                    if (since := self.state.since.get(name)) and since.state is item.state
                    else None,
                )
            )
        halted = self._halted()
        state, message = bundle_shown(
            summary.state,
            summary.message,
            halted=halted,
            source_error=spec.source_error if spec else "",
            pin=spec.pin if spec else "",
        )
        return BundleStatus(
            namespace=self.state.namespace,
            bundle=self.state.bundle,
            gitrepo=spec.gitrepo if spec else "",
            commit=spec.commit if spec else "",
            paused=self._bundle_paused(),
            ready=summary.ready,
            desired=summary.desired,
            state=state,
            message=message,
            summary=self._summary,
            clusters=clusters,
            errors=dict(self.state.plan_errors),
            conditions=self.state.conditions,
            gates=gate_statuses(
                partition_gates(self.state.strategy), self._gate_record, self._gate, workflow.now()
            ),
            halted=halted,
            labels=dict(spec.labels) if spec else {},
            pin=spec.pin if spec else "",
            source_error=spec.source_error if spec else "",
        )

    @workflow.query(name=CONTENT_REFS_QUERY)
    def content_refs(self, request: ContentRefsRequest) -> ContentRefs:
        """The content this bundle needs: its bundle and the options planned, staged and
        released per cluster (drift checks and removals read the released ones)."""
        digests = {self.state.spec.bundle_digest} if self.state.spec else set()
        digests.update(target.options_digest for target in self.state.targets.values())
        for record in self.state.deployments.values():
            digests.update((record.options_digest, record.released_options_digest))
        if self.state.clusters is not None:
            digests.add(self.state.clusters.clusters_digest)  # a shard's part, by digest
        digests.discard("")
        return ContentRefs(digests=sorted(digests))

    # --- the reconcile step -------------------------------------------------------------------

    def _next_timer(self) -> timedelta | None:
        due = [
            r.retry_at
            for r in self.state.deployments.values()
            if r.retry_at is not None and r.cluster not in self._in_flight
        ]
        if self.state.next_monitor_at is not None and not self._in_flight:
            due.append(self.state.next_monitor_at)
        if self._report_due is not None:
            due.append(self._report_due)
        if self._plan_again_at is not None:
            due.append(self._plan_again_at)
        if self._continue_at is not None:
            due.append(self._continue_at)
        if self._close_due is not None:
            due.append(self._close_due)
        due.extend(self._window_openings())
        if self._gate.due is not None:
            due.append(self._gate.due)
        if self.state.downstream_digest and self.state.next_downstream_at is not None:
            due.append(self.state.next_downstream_at)
        if not due:
            return None
        return max(min(due) - workflow.now(), timedelta(seconds=1))

    def _bundle_paused(self) -> bool:
        spec = self.state.spec
        return self.state.paused or self.state.fleet_paused or bool(spec and spec.gitrepo_paused)

    async def _reconcile(self) -> None:
        spec, clusters = self.state.spec, self.state.clusters
        if spec is None or clusters is None:
            return
        self._plan_again_at = None  # set again below if this pass cannot plan
        self._started_in_pass = 0
        if self._sharding(clusters):
            await self._coordinate(spec, clusters)
            return
        if clusters.by_digest:
            loaded = await load_clusters(clusters, self.state.bundle)
            if loaded is None:
                # Nothing is planned from a list it could not read; read again later.
                if workflow.patched(PLAN_FAILURE_WAITS_PATCH):
                    self._plan_again_at = workflow.now() + self._retry_delay()
                return
            if self.state.clusters is clusters:  # no newer one came meanwhile
                self.state.clusters = loaded
                self._read_loaded_dependencies()
            clusters = loaded
        key = f"{spec.bundle_digest}:{clusters.version}:{spec.switches.model_dump_json()}"
        if key == self.state.plan_key and await self._downstream_changed(spec):
            self.state.plan_key = ""
        if key != self.state.plan_key and await self._planned(spec, clusters):
            self.state.plan_key = key
        if clusters.schedules and not self._windows_enabled:
            self._windows_enabled = workflow.patched(WINDOWS_PATCH)
        self._remove_untargeted()
        self._retry_due()
        self._roll_out(clusters)
        self._monitor()
        await self._report()

    def _idle_continue_due(self) -> bool:
        """Whether this run continues as new now, between rollouts (IDLE_CONTINUE_PATCH):
        it rolled something out, its history grew past half the byte bound, and it has been
        idle since a pass IDLE_CONTINUE_DELAY ago (each idle pass before that moves the
        moment on, so it closes only after a quiet spell)."""
        if self._in_flight or self._monitor_queue:
            self._continue_at = None
            return False
        if not self._rolled:
            return False
        now = workflow.now()
        if self._continue_at is not None and now >= self._continue_at:
            return True
        if history_growth(self._start_bytes, self.state.max_history_bytes) < 0.5:
            return False
        if self._continue_at is None and not workflow.patched(IDLE_CONTINUE_PATCH):
            self._rolled = False  # a run from before the patch: never again in this run
            return False
        self._continue_at = now + IDLE_CONTINUE_DELAY
        return False

    def _awaiting_shard_replies(self) -> bool:
        """Whether a sharded bundle due to continue as new waits a pass instead: it sent a
        grant within GRANT_REPLY_WAIT that a shard has not confirmed yet, so that shard's
        report is on its way, and a signal that reaches a closing run makes Temporal refuse
        the close and the worker replay the whole history (SHARD_REPLIES_BEFORE_CLOSE_PATCH).
        A shard busy deploying may hold its confirmation for REPORT_GAP; the run does not
        wait for that. Never past twice the byte bound."""
        self._close_due = None
        book = self.state.shards
        granted = self._granted_at
        if book is None or granted is None or workflow.now() - granted >= GRANT_REPLY_WAIT:
            return False
        if all(
            (report := book.reports.get(index)) is not None and report.seq == grant.seq
            for index, grant in book.grants.items()
        ):
            return False
        if history_growth(self._start_bytes, self.state.max_history_bytes) >= 2:
            return False
        if not workflow.patched(SHARD_REPLIES_BEFORE_CLOSE_PATCH):
            return False
        # A pass comes with the replies, or when the wait is over if none does.
        self._close_due = granted + GRANT_REPLY_WAIT
        return True

    def _monitor(self) -> None:
        """Check settled deployments for drift every ``monitor_seconds`` while nothing else
        runs: one check_deployment per cluster, as many at once as there is room for.
        Clusters whose objects changed (``objects_changed``) are checked at once."""
        for name in sorted(self._changed - self._in_flight):
            self._changed.discard(name)
            self._singly.add(name)
            if name not in self._monitor_queue:
                self._monitor_queue.insert(0, name)
        if self._monitor_queue:
            self._drain_monitor()
            return
        if self._in_flight:
            return
        now = workflow.now()
        due = self.state.next_monitor_at
        if due is None:
            self.state.next_monitor_at = now + timedelta(seconds=self.state.monitor_seconds)
            return
        if due > now:
            return
        self.state.next_monitor_at = None
        self._monitor_queue = sorted(self.state.deployments)
        self._drain_monitor()

    def _drain_monitor(self) -> None:
        """Start the queued checks, one activity each, or with ``_batching`` CHECK_BATCH
        push-mode clusters of the sweep to an activity."""
        if self._batching():
            self._drain_batched()
            return
        while self._monitor_queue and self._pass_room() > 0:
            name = self._monitor_queue.pop(0)
            self._singly.discard(name)
            if self._checkable(name):
                self._spawn(name, self._check(name))

    def _checkable(self, name: str) -> bool:
        record = self.state.deployments.get(name)
        return (
            record is not None
            and record.monitored
            and name not in self._in_flight
            and name in self.state.targets
            and not self._held(name)
        )

    def _batchable(self, name: str) -> bool:
        return name not in self._singly and not self._agent(name)

    def _batching(self) -> bool:
        """Whether this run batches sweep checks (patch ``bundle-batched-drift-checks``):
        asked once a sweep has two push-mode clusters to check, and kept from then on."""
        if not self._batches_checks:
            queued = (n for n in self._monitor_queue if self._batchable(n) and self._checkable(n))
            if next(queued, None) is not None and next(queued, None) is not None:
                self._batches_checks = workflow.patched(BATCHED_CHECKS_PATCH)
        return self._batches_checks

    def _drain_batched(self) -> None:
        """A reported change or a leftover alone, an agent's cluster alone (its own queue), the
        sweep's push-mode clusters CHECK_BATCH to a ``check_deployments``."""
        batch: list[str] = []
        while self._monitor_queue and (room := self._pass_room()) > len(batch):
            name = self._monitor_queue.pop(0)
            if not self._checkable(name):
                self._singly.discard(name)
                continue
            if not self._batchable(name):
                self._singly.discard(name)
                self._spawn(name, self._check(name))
                continue
            batch.append(name)
            if len(batch) >= min(CHECK_BATCH, room):
                self._start_checks(batch)
                batch = []
        if batch:
            self._start_checks(batch)

    def _start_checks(self, names: list[str]) -> None:
        """One check alone, more in one ``check_deployments``."""
        if len(names) == 1:
            self._spawn(names[0], self._check(names[0]))
        else:
            self._spawn_all(names, self._check_batch(names))

    async def _downstream_changed(self, spec: BundleSpec) -> bool:
        """Whether the bundle's downstreamResources changed since its plan (read when due)."""
        if not self.state.downstream_digest:
            return False
        now = workflow.now()
        due = self.state.next_downstream_at
        if due is None or due > now or not workflow.patched(DOWNSTREAM_PATCH):
            return False
        self.state.next_downstream_at = now + DOWNSTREAM_POLL_INTERVAL
        try:
            result: DownstreamDigestResult = await workflow.execute_activity(
                DOWNSTREAM_DIGEST,
                DownstreamDigestRequest(
                    namespace=self.state.namespace,
                    bundle=self.state.bundle,
                    bundle_digest=spec.bundle_digest,
                ),
                result_type=DownstreamDigestResult,
                start_to_close_timeout=PLAN_TIMEOUT,
                retry_policy=PLAN_RETRY,
            )
        except ActivityError as err:
            # An unreachable store is read again at the next interval; what runs stays.
            workflow.logger.warning(
                "bundle %s: downstreamResources not read: %s",
                self.state.bundle,
                one_line(str(err.cause or err)),
            )
            return False
        return result.digest != self.state.downstream_digest

    async def _planned(self, spec: BundleSpec, clusters: ClusterSnapshot) -> bool:
        """Plan ``spec``; False when the plan failed after its retries (the pass goes on with
        the previous plan, which keeps what runs, and the plan is tried again later)."""
        try:
            await self._plan(spec, clusters)
        except ActivityError as err:
            if not workflow.patched(PLAN_FAILURE_WAITS_PATCH):
                raise
            self._plan_again_at = workflow.now() + self._retry_delay()
            workflow.logger.warning(
                "bundle %s: commit %s not planned, tried again in %ss: %s",
                self.state.bundle,
                spec.commit[:12],
                int(self._retry_delay().total_seconds()),
                one_line(str(err.cause or err)),
            )
            return False
        return True

    async def _plan(self, spec: BundleSpec, clusters: ClusterSnapshot) -> None:
        request = PlanRequest(
            namespace=self.state.namespace,
            bundle=self.state.bundle,
            bundle_digest=spec.bundle_digest,
            switches=spec.switches,
            clusters=[PlanCluster(name=c.name, labels=c.labels) for c in clusters.clusters],
            groups=[g.to_fleet() for g in clusters.groups],
        )
        # Not a local activity: under load, 50 bundles planning at once held their workflow
        # tasks open past the 10 s timeout (bench_fleet: 36 timed-out tasks in one run).
        result: PlanResult = await workflow.execute_activity(
            PLAN_BUNDLE,
            request,
            result_type=PlanResult,
            start_to_close_timeout=PLAN_TIMEOUT,
            retry_policy=PLAN_RETRY,
        )
        self.state.targets = {t.cluster: t for t in result.targets}
        self.state.plan_errors = result.errors
        self.state.strategy = result.strategy
        self.state.fleet_paused = result.paused
        if result.downstream_digest and workflow.patched(DOWNSTREAM_PATCH):
            self.state.downstream_digest = result.downstream_digest
            self.state.next_downstream_at = workflow.now() + DOWNSTREAM_POLL_INTERVAL
        else:
            self.state.downstream_digest = ""
            self.state.next_downstream_at = None
        for target in result.targets:
            record = self.state.deployments.get(target.cluster)
            staged = (record or DeploymentRecord(cluster=target.cluster)).stage(
                target.deployment_id,
                target.options_digest,
                keep_resources=target.keep_resources,
                delete_namespace=target.delete_namespace,
            )
            if (
                record is not None
                and record.error
                and record.staged != target.deployment_id
                and target.deployment_id == record.applied
                and workflow.patched(REDEPLOY_AFTER_FAILED_PATCH)
            ):
                # Back to the version that runs after another one failed to apply (a rollback,
                # a revert): Helm's newest revision is the failed one, so it is deployed again
                # as a new revision rather than taken as settled, whether or not the failed
                # one's retry already went back to what runs (no retry left to do that now).
                staged = staged.model_copy(update={"released": "", "retry_at": None})
            self._put(staged)

    def _remove_untargeted(self) -> None:
        for name, record in list(self.state.deployments.items()):
            if name in self.state.targets:
                continue
            if name in self._in_flight:
                self._end_watch(name)
                continue
            if record.release is None:
                del self.state.deployments[name]
                continue
            if self._window_closed(name):
                continue  # as in Fleet: outside its window a cluster's releases stay
            if self._pass_room() > 0:
                self._spawn(name, self._remove(name, forget=True))

    def _retry_due(self) -> None:
        now = workflow.now()
        for name, record in list(self.state.deployments.items()):
            if name in self._in_flight or name not in self.state.targets:
                continue
            if self._held(name):
                continue
            after, due = record.due(now)
            if due is None:
                continue
            self._put(after)
            if due is Due.WATCH:
                self._spawn(name, self._watch(name))

    def _paused(self, name: str) -> bool:
        """The bundle, its GitRepo, its fleet.yaml or the cluster is paused."""
        view = self._view(name)
        return self._bundle_paused() or bool(view and view.paused)

    def _waiting_for(self, cluster: str) -> list[str]:
        spec = self.state.spec
        if spec is None or not spec.depends_on:
            return []
        deps = [
            Dependency(bundle=d.bundle, accepted_states=tuple(d.accepted_states))
            for d in spec.depends_on
        ]
        on_cluster = states_on_cluster(
            self.state.dependency_states,
            self.state.dependency_commits,
            cluster=cluster,
            commit=spec.commit,
        )
        return check_dependencies(deps, on_cluster).waiting_for

    def _held(self, cluster: str) -> bool:
        """An agent-mode cluster whose agent is offline: its work waits for the agent (its
        queue has nobody to take it). Push mode is never held: its errors say why."""
        view = self._view(cluster)
        return bool(
            view and view.agent and view.offline and workflow.patched(AGENT_OFFLINE_WAITS_PATCH)
        )

    def _roll_out(self, clusters: ClusterSnapshot) -> None:
        # Only clusters whose record or inputs changed since the last wake are rebuilt.
        rollout_targets = self._memo.rollout_targets(
            self.state.deployments,
            sorted(self.state.targets),
            self._cluster_views(),
            # Outside its deployment window a cluster stays staged, as a paused one does.
            paused=lambda name: self._paused(name) or self._window_closed(name),
            blocked=lambda name: bool(self._waiting_for(name)),
        )
        shard = self.state.shard
        if shard is None:
            plan = self._plan_with_gates(rollout_targets)
        else:
            # One shard of a bigger bundle: the bundle's partitions, this shard's share of
            # maxUnavailable and the partitions its gates keep closed, which it decides over
            # all shards (workflows/bundle_shards.py).
            grant = shard.grant
            view = ShardView(
                offset=grant.offset,
                total=grant.total or len(rollout_targets),
                reached=grant.reached,
                budgets=grant.budgets,
            )
            plan = plan_rollout(
                RolloutState(
                    strategy=self.state.strategy,
                    targets=rollout_targets,
                    shard=view,
                    closed=grant.closed,
                )
            )
            self._gated = {name: plan.gate for name in plan.gated}
            self._shard_counts = shard_counts(rollout_targets, plan, self.state.strategy, view)
        self._summary = plan.summary
        # Only multi-partition rollouts name their finished partitions in reports; the name
        # changes with the last cluster's state, so it never adds a report of its own.
        self._partitions_done = [
            p.name
            for p in plan.partitions
            if plan.total_partitions > 1 and p.count and p.updated == p.count and not p.unavailable
        ]
        workflow.set_current_details(plan.summary)
        for name in plan.deploy:
            self._end_watch(name)  # its deploy follows in the pass the watch's end wakes
            if self._pass_room() <= 0:
                break  # the rest move when running ones finish: the next pass offers them
            if name not in self._in_flight and not self._held(name):
                if workflow.patched(RELEASED_AT_ONCE_PATCH):
                    # Released now, not when the deploy's task first runs: the report at the
                    # end of this pass must not call it held back by the rollout.
                    self._put(self.state.deployments[name].release_staged())
                self._rolled = True
                self._spawn(name, self._deploy(name))

    # --- deployment windows (flotilla/windows.py) ---------------------------------------------

    def _window(self, cluster: str) -> WindowState | None:
        """The deployment window state of a cluster that Schedules target, at this pass's
        time; None for a cluster no Schedule targets (always deployable)."""
        clusters = self.state.clusters
        if clusters is None or not clusters.schedules or not self._windows_enabled:
            return None
        if self._windows_version != clusters.version:
            groups = list(clusters.groups)
            windows = [(s, window_of(s)) for s in clusters.schedules]
            self._cluster_windows = {}
            for view in clusters.clusters:
                info = ClusterInfo(
                    name=view.name, namespace=self.state.namespace, labels=view.labels
                )
                matched = tuple(
                    window
                    for schedule, window in windows
                    if any(
                        match_target(t, info, groups) for t in schedule.spec.targets.clusters or []
                    )
                )
                if matched:
                    self._cluster_windows[view.name] = matched
            self._windows_version = clusters.version
            self._windows_at = {}
        matched_windows = self._cluster_windows.get(cluster)
        if not matched_windows:
            return None
        now = workflow.now()
        if self._windows_now != now:
            self._windows_at, self._windows_now = {}, now
        if matched_windows not in self._windows_at:
            self._windows_at[matched_windows] = window_at(matched_windows, now)
        return self._windows_at[matched_windows]

    def _window_closed(self, cluster: str) -> bool:
        window = self._window(cluster)
        return window is not None and not window.open

    def _window_openings(self) -> list[datetime]:
        """When the windows open that staged versions wait for: durable timers, no polling."""
        openings = []
        for name in self.state.targets:
            record = self.state.deployments.get(name)
            if record is None or record.staged == record.released:
                continue
            window = self._window(name)
            if window is not None and not window.open and window.opens_at is not None:
                openings.append(window.opens_at)
        return openings

    def _plan_with_gates(self, targets: list[RolloutTarget]) -> RolloutPlan:
        """``plan_rollout`` with the partitions the gates keep closed; the gate record is
        brought up to date with the plan (a partition Ready starts its soak, the partition the
        rollout stands at starts its approval deadline), and planned again when that opens
        or closes a gate."""
        state = RolloutState(strategy=self.state.strategy, targets=targets)
        gates = partition_gates(self.state.strategy)
        spec = self.state.spec
        if not gates or spec is None or not workflow.patched(GATES_PATCH):
            self._gate, self._gated = GateDecision(), {}
            self._gate_record = self.state.gates
            return plan_rollout(state)
        order = partition_order(self.state.strategy)
        record = self.state.gates.for_version(spec.bundle_digest)
        now = workflow.now()
        failure_due = None
        health = self._health(targets) if has_failure_budget(gates) else {}
        for _ in range(3):
            decision = decide(gates, order, record, now, health)
            plan = plan_rollout(state.model_copy(update={"closed": decision.closed}))
            released = plan.deploy
            busy = [n for n in released if n in self._in_flight]
            if health and busy and workflow.patched(RELEASED_WHEN_DEPLOYED_PATCH):
                released = [n for n in released if n not in self._in_flight]
            after = observe(
                gates,
                record,
                partitions=plan.partitions,
                gated_partition=plan.gated_partition,
                now=now,
                released=released,
            )
            if health:
                after, failure_due = count_failures(gates, after, health, now)
            if after == record:
                break
            record = after
        self.state.gates = self._gate_record = record
        dues = [d for d in (decision.due, failure_due) if d is not None]
        self._gate = decision.model_copy(update={"due": min(dues, default=None)})
        self._gated = {name: plan.gate for name in plan.gated}
        return plan

    def _halted(self) -> str:
        """Why a gate halted the rollout of the version the spec names ("" once a newer
        version came: its gates have not been decided yet)."""
        spec = self.state.spec
        current = spec is not None and self.state.gates.version == spec.bundle_digest
        return self._gate.halted if current else ""

    def _health(self, targets: list[RolloutTarget]) -> dict[str, list[ClusterHealth]]:
        """Each partition's clusters: at the staged version and Ready, or why not (for the
        failure budgets)."""
        by_name = {t.cluster: t for t in targets}
        health: dict[str, list[ClusterHealth]] = {}
        for partition in make_partitions(targets, self.state.strategy):
            members = health.setdefault(partition.name, [])
            for name in partition.clusters:
                target, record = by_name[name], self.state.deployments[name]
                ok = is_up_to_date(target) and target.ready
                reason = "" if ok else record.error or ", ".join(record.non_ready[:2])
                members.append(ClusterHealth(cluster=name, ok=ok, reason=reason))
        return health

    def _room(self) -> int:
        return self.state.max_pending_activities - len(self._in_flight)

    def _pass_room(self) -> int:
        """Room for this pass to start another activity: the pending-activity cap, and at most
        ``ACTIVITIES_PER_PASS`` started in one pass (the next pass is woken by completions)."""
        room = self._room()
        if room <= 0 or self._started_in_pass < ACTIVITIES_PER_PASS:
            return room
        if workflow.patched(SMALLER_PASSES_PATCH):
            return 0
        if self._started_in_pass >= ACTIVITIES_PER_PASS_BEFORE and workflow.patched(
            BOUNDED_STARTS_PATCH
        ):
            return 0
        return room

    def _put(self, record: DeploymentRecord) -> None:
        self.state.deployments[record.cluster] = record

    def _spawn(self, cluster: str, work: Coroutine[Any, Any, None]) -> None:
        self._spawn_all([cluster], work)

    def _spawn_all(self, clusters: list[str], work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` (one activity) with ``clusters`` in flight until it ends."""
        self._in_flight.update(clusters)
        self._started_in_pass += 1

        async def run() -> None:
            try:
                await work
            finally:
                self._in_flight.difference_update(clusters)
                self._wake = True

        asyncio.get_running_loop().create_task(run())

    # --- per-cluster work ---------------------------------------------------------------------

    def _retry_delay(self) -> timedelta:
        seconds = self.state.retry_seconds
        return RETRY_DELAY if seconds is None else timedelta(seconds=seconds)

    def _schedule_to_start(self) -> timedelta:
        seconds = self.state.cluster_schedule_to_start_seconds
        return CLUSTER_SCHEDULE_TO_START if seconds is None else timedelta(seconds=seconds)

    def _schedule_to_start_for(self, agent: bool) -> timedelta | None:
        """Push queues: none. Agent queues: the long backstop (runs from before the heartbeat
        hold: the short timeout, or its test switch)."""
        if not agent:
            return None
        if workflow.patched(AGENT_QUEUES_WAIT_PATCH):
            return AGENT_QUEUE_BACKSTOP
        return self._schedule_to_start()

    def _on_cluster(
        self,
        cluster: str,
        activity: str,
        request: BaseModel,
        *,
        result_type: type[BaseModel],
        timeout: timedelta,
        heartbeat: timedelta | None = None,
    ) -> workflow.ActivityHandle[Any]:
        """Start a deploy-engine activity for one cluster (await the handle for its result),
        with the options every per-cluster call shares (one retry policy; an agent cluster's
        offline detection is the registry's heartbeat hold, ``_held``, not a queue timeout).

        A push-mode cluster's activities run on a shared push queue: an unreachable cluster
        fails there as a retryable one-line error (``cluster X unreachable: ...``), and a long
        wait on the busy queue is not mistaken for the cluster being offline."""
        agent = self._agent(cluster)
        if workflow.patched(SHARED_QUEUES_PATCH):
            queue = deploy_task_queue(
                workflow.info().task_queue, self.state.namespace, cluster, agent=agent
            )
        else:
            queue, agent = cluster_task_queue(self.state.namespace, cluster), True
        if not agent:
            # The push queues' wrapper heartbeats while a call runs: a task lost on its way to
            # the worker is retried after PUSH_HEARTBEAT, not after a minute (issue 12).
            heartbeat = PUSH_HEARTBEAT
        return workflow.start_activity(
            activity,
            request,
            result_type=result_type,
            task_queue=queue,
            schedule_to_start_timeout=self._schedule_to_start_for(agent),
            start_to_close_timeout=timeout,
            heartbeat_timeout=heartbeat,
            retry_policy=DEPLOY_RETRY,
        )

    def _view(self, cluster: str) -> ClusterView | None:
        """The cluster as the latest snapshot shows it (by name, built once per snapshot: a
        scan per cluster made each pass quadratic in the fleet's size)."""
        return self._cluster_views().get(cluster)

    def _cluster_views(self) -> dict[str, ClusterView]:
        """The latest snapshot's clusters by name."""
        clusters = self.state.clusters
        if clusters is None:
            return {}
        if self._views_of is not clusters:
            self._views = {c.name: c for c in clusters.clusters}
            self._index = cluster_index(self._views)
            self._views_of = clusters
        return self._views

    def _agent(self, cluster: str) -> bool:
        view = self._view(cluster)
        return bool(view and view.agent)

    def _failed(self, cluster: str, err: ActivityError) -> None:
        cause = err.cause
        if isinstance(cause, TemporalTimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START:
            # Only an agent's own queue had a schedule-to-start timeout (runs from before
            # AGENT_QUEUES_WAIT_PATCH): nobody polled it.
            queue = cluster_task_queue(self.state.namespace, cluster)
            waited = self._schedule_to_start_for(agent=True)
            assert waited is not None
            error = (
                f"cluster offline: no worker took work from task queue {queue} "
                f"within {int(waited.total_seconds())}s"
            )
        else:
            # The message alone ("cluster X unreachable: ..."), not prefixed by its type.
            error = cause_message(err)
        # A deploy that found its window closed applied nothing: due again at once, and then
        # held by the closed window until the next one (no ErrApplied for a retry delay).
        delay = timedelta(0) if _failure_type(err) == WINDOW_CLOSED else self._retry_delay()
        record = self.state.deployments[cluster].failed(error, workflow.now(), delay)
        self._put(record)
        workflow.logger.warning(
            "bundle %s on cluster %s: %s", self.state.bundle, cluster, record.error
        )

    async def _deploy(self, cluster: str) -> None:
        spec = self.state.spec
        assert spec is not None
        record = self.state.deployments[cluster].release_staged()
        self._put(record)
        try:
            result: DeployResult = await self._on_cluster(
                cluster,
                DEPLOY_BUNDLE,
                DeployRequest(
                    gitrepo=spec.gitrepo,
                    bundle_name=self.state.bundle,
                    cluster_namespace=self.state.namespace,
                    cluster_name=cluster,
                    deployment_id=record.released,
                    bundle_digest=spec.bundle_digest,
                    options_digest=record.released_options_digest,
                    previous_release=record.release,
                    render_secrets=spec.render_secrets,
                    wait_ready_seconds=min(READY_GRACE_SECONDS, self.state.ready_watch_seconds),
                    check_drift=bool(record.drift),
                    not_after=window.closes_at if (window := self._window(cluster)) else None,
                ),
                result_type=DeployResult,
                timeout=DEPLOY_TIMEOUT,
                heartbeat=DEPLOY_HEARTBEAT,
            )
        except ActivityError as err:
            self._failed(cluster, err)
            return
        record = self.state.deployments[cluster].apply_succeeded(result)
        self._put(record)
        if not record.ready:
            superseded = record.staged != record.released
            if superseded and workflow.patched(SUPERSEDED_NOT_WATCHED_PATCH):
                return
            await self._watch(cluster)

    def _status_request(self, record: DeploymentRecord) -> StatusRequest:
        """Which deployment a readiness or drift look is about: what was applied, and where."""
        spec = self.state.spec
        assert spec is not None and record.release is not None
        return StatusRequest(
            gitrepo=spec.gitrepo,
            bundle_name=self.state.bundle,
            cluster_namespace=self.state.namespace,
            cluster_name=record.cluster,
            deployment_id=record.applied,
            options_digest=record.released_options_digest,
            release=record.release,
        )

    async def _watch(self, cluster: str) -> None:
        handle = self._on_cluster(
            cluster,
            WAIT_READY,
            WaitReadyRequest(
                **dict(self._status_request(self.state.deployments[cluster])),
                timeout_seconds=self.state.ready_watch_seconds,
            ),
            result_type=DeploymentStatus,
            timeout=WAIT_READY_TIMEOUT,
            heartbeat=WAIT_READY_HEARTBEAT,
        )
        self._watches[cluster] = handle
        try:
            status: DeploymentStatus = await handle
        except (ActivityError, asyncio.CancelledError) as err:
            if cluster in self._watches_ended:
                return  # superseded (_end_watch): what it watched no longer matters
            if isinstance(err, asyncio.CancelledError):
                raise
            self._failed(cluster, err)
            return
        finally:
            del self._watches[cluster]
            self._watches_ended.discard(cluster)
        self._put(
            self.state.deployments[cluster].observed(status, workflow.now(), self._retry_delay())
        )

    def _end_watch(self, cluster: str) -> None:
        """Cancel the readiness watch running on ``cluster``, if any: the rollout has moved on
        from the version it watches (a newer one is to be deployed there now, or the cluster
        is no longer targeted). Without this the newer version, a rollback included, waited
        for the watch to end, up to ``ready_watch_seconds`` (10 minutes by default) when the
        watched version never turns Ready. A watch only reads the cluster, so it is let go
        without waiting for the worker to confirm (the default TRY_CANCEL)."""
        handle = self._watches.get(cluster)
        if handle is None or cluster in self._watches_ended or handle.done():
            return
        if not workflow.patched(WATCH_ENDS_WHEN_SUPERSEDED_PATCH):
            return
        self._watches_ended.add(cluster)
        handle.cancel()
        workflow.logger.info(
            "bundle %s on cluster %s: readiness watch ended: the rollout moved on",
            self.state.bundle,
            cluster,
        )

    def _check_request(self, cluster: str) -> StatusRequest:
        """A drift check of the cluster's deployment; it corrects unless backing off or out of
        its window."""
        record = self.state.deployments[cluster]
        return self._status_request(record).model_copy(
            update={
                "correct": record.may_correct(workflow.now()) and not self._window_closed(cluster)
            }
        )

    async def _check(self, cluster: str) -> None:
        try:
            status: DeploymentStatus = await self._on_cluster(
                cluster,
                CHECK_DEPLOYMENT,
                self._check_request(cluster),
                result_type=DeploymentStatus,
                timeout=CHECK_TIMEOUT,
            )
        except ActivityError as err:
            self._failed(cluster, err)
            return
        self._put(self.state.deployments[cluster].checked(status, workflow.now()))

    async def _check_batch(self, clusters: list[str]) -> None:
        """Push-mode clusters' sweep checks in one activity on a shared push queue. A cluster
        it gave no status for (its check failed, or the whole batch did) is checked again on
        its own at once, so failures look exactly as a single check's."""
        request = CheckBatchRequest(checks=[self._check_request(name) for name in clusters])
        queue = deploy_task_queue(
            workflow.info().task_queue, self.state.namespace, clusters[0], agent=False
        )
        try:
            result: CheckBatchResult = await workflow.execute_activity(
                CHECK_DEPLOYMENTS,
                request,
                result_type=CheckBatchResult,
                task_queue=queue,
                start_to_close_timeout=CHECK_BATCH_TIMEOUT,
                heartbeat_timeout=PUSH_HEARTBEAT,
                retry_policy=DEPLOY_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning(
                "bundle %s: drift checks of %d clusters failed together, each is checked alone: %s",
                self.state.bundle,
                len(clusters),
                one_line(str(err.cause or err)),
            )
            self._changed.update(clusters)
            return
        now = workflow.now()
        checked: set[str] = set()
        for item in result.checks:
            record = self.state.deployments.get(item.cluster)
            if item.status is None or record is None or item.cluster not in clusters:
                continue
            self._put(record.checked(item.status, now))
            checked.add(item.cluster)
        again = [name for name in clusters if name not in checked]
        if again:
            self._changed.update(again)

    async def _remove(self, cluster: str, *, forget: bool) -> None:
        spec = self.state.spec
        record = self.state.deployments[cluster]
        assert record.release is not None
        try:
            await self._on_cluster(
                cluster,
                REMOVE_DEPLOYMENT,
                RemoveRequest(
                    gitrepo=spec.gitrepo if spec else "",
                    bundle_name=self.state.bundle,
                    cluster_namespace=self.state.namespace,
                    cluster_name=cluster,
                    release=record.release,
                    keep_resources=record.keep_resources,
                    delete_namespace=record.delete_namespace,
                ),
                result_type=RemoveResult,
                timeout=REMOVE_TIMEOUT,
                heartbeat=DEPLOY_HEARTBEAT,
            )
        except ActivityError as err:
            # A cluster that is gone or offline cannot be cleaned; say so and move on.
            workflow.logger.warning(
                "bundle %s: removal from cluster %s failed: %s",
                self.state.bundle,
                cluster,
                one_line(str(err.cause or err)),
            )
        if forget:
            self.state.deployments.pop(cluster, None)

    async def _retire(self) -> None:
        """Remove every release, as many at once as the pending-activity cap allows."""
        waiting = [r.cluster for r in self.state.deployments.values() if r.release is not None]
        while waiting or self._in_flight:
            while waiting and self._room() > 0:
                name = waiting.pop(0)
                self._spawn(name, self._remove(name, forget=True))
            await workflow.wait_condition(
                lambda: not self._in_flight or bool(waiting and self._room() > 0)
            )
        self.state.targets = {}
        await self._report(retired=True)

    # --- status -------------------------------------------------------------------------------

    def _planning(self) -> str:
        """The commit whose bundle content is not planned yet (its records are an older
        commit's: not Ready at this one), or empty."""
        spec = self.state.spec
        if spec is None or self.state.plan_key.startswith(f"{spec.bundle_digest}:"):
            return ""
        return spec.commit

    def _states(self, planning: str = "") -> dict[str, StateWithMessage]:
        states = self._memo.states(
            self.state.deployments,
            self.state.targets,
            self._cluster_views(),
            paused=self._paused,
            waiting_for=self._waiting_for,
            held_by=lambda name: self._gated.get(name, ""),
        )
        for name, item in states.items():
            window = self._window(name)
            if (
                window is not None
                and not window.open
                and item.state is BundleState.OUT_OF_SYNC
                and not self._paused(name)
            ):
                record = self.state.deployments[name]
                states[name] = StateWithMessage(
                    state=item.state,
                    message=f"{window.waiting_line()}; version {record.staged} staged",
                )
        for name, error in self.state.plan_errors.items():
            states[name] = StateWithMessage(state=BundleState.ERR_APPLIED, message=error)
        return while_planning(states, planning) if planning else states

    async def _report_to_bundle(self, *, retired: bool) -> None:
        """A shard's report to its bundle: counts, sent when they changed, at most every
        REPORT_GAP while work is in flight (a grant's number in it says it was heard)."""
        shard, spec = self.state.shard, self.state.spec
        assert shard is not None
        now = workflow.now()
        last = self.state.last_report_at or self._run_started
        if (
            self._changed_at is not None
            and self._in_flight
            and not retired
            and now - last < REPORT_GAP
            and not drained(shard.sent_counts, self._shard_counts, shard.grant.reached)
            and workflow.patched(HELD_REPORT_UNMADE_PATCH)
        ):
            return  # held, on its timer: made when it may go
        planning = self._planning()
        states = self._states(planning)
        summary = summarize(states, planning=planning)
        report = ShardReport(
            index=shard.index,
            seq=shard.grant.seq,
            commit=spec.commit if spec else "",
            planned=spec is not None and not planning and bool(self.state.plan_key),
            targets=len(self.state.targets),
            partitions=self._shard_counts,
            strategy=self.state.strategy,
            ready=summary.ready,
            desired=summary.desired,
            state=summary.state,
            message=summary.message,
            paused=self._bundle_paused(),
            retired=retired,
        )
        # Packed against the snapshot's names only when the GitRepo has them too: a snapshot
        # that came by digest reaches it without clusters, so the states go unpacked (at most
        # a shard's worth: bundles that big are sharded).
        by_digest = self.state.clusters is not None and bool(self.state.clusters.clusters_digest)
        if not by_digest and workflow.patched(PACKED_REPORTS_PATCH):
            counts, non_ready = reported_summary(summary)
            report = report.model_copy(update={"counts": counts, "non_ready": non_ready})
        if workflow.patched(SHARD_STATES_PATCH):
            self._cluster_views()  # the index of the latest snapshot: this shard's part
            report = with_packed_states(report, states, self._index)
        fingerprint = hashlib.sha256(report.model_dump_json().encode()).hexdigest()
        if fingerprint == self.state.last_report:
            self._settle_held_report()
            return
        # Sent at once, held or not, when a reached partition's part here has nothing left
        # waiting: the bundle can share out its budget and may reach the next partition.
        held = self._in_flight and not retired and now - last < REPORT_GAP
        if (
            held
            and drained(shard.sent_counts, report.partitions, shard.grant.reached)
            and workflow.patched(SHARD_DRAINED_REPORT_PATCH)
        ):
            held = False
        if held:
            # Held: as the bundle's own reports (REPORTS_COALESCED_PATCH), on one timer due
            # REPORT_GAP after the change, which the shard's next completion usually beats.
            if workflow.patched(REPORTS_COALESCED_PATCH):
                self._changed_at = self._changed_at or now
                self._arm_report_timer(self._changed_at + REPORT_GAP)
            else:
                self._report_due = last + REPORT_GAP
            return
        self._settle_held_report()
        self.state.last_report, self.state.last_report_at = fingerprint, now
        shard.sent_counts = report.partitions
        with contextlib.suppress(FailureError):  # a bundle that is gone hears nothing
            await workflow.get_external_workflow_handle(shard.parent_workflow_id).signal(
                SHARD_REPORT_SIGNAL, report
            )

    async def _report_conflicts(self) -> None:
        conflicts, self._conflicts = self._conflicts, {}
        owner = self.state.gitrepo_workflow_id.rsplit("/", 1)[-1]
        for sender, commit in sorted(conflicts.items()):
            report = BundleReport(
                bundle=self.state.bundle,
                commit=commit,
                ready=0,
                desired=0,
                state=BundleState.ERR_APPLIED,
                message=f"bundle name {self.state.bundle!r} is already used by gitrepo {owner!r}",
            )
            with contextlib.suppress(FailureError):
                await workflow.get_external_workflow_handle(sender).signal(
                    BUNDLE_REPORT_SIGNAL, report
                )

    def _arm_report_timer(self, due: datetime) -> None:
        """One pending report timer, kept while its due time stays (a wait's timeout would be
        cancelled and started again at every activity completion, two events each)."""
        timer = self._report_timer
        if timer is not None and not timer.done():
            if self._report_timer_due == due:
                return
            timer.cancel()

        async def alarm() -> None:
            await workflow.sleep(max(due - workflow.now(), timedelta(seconds=1)))
            self._wake = True

        self._report_timer_due = due
        self._report_timer = asyncio.get_running_loop().create_task(alarm())

    def _settle_held_report(self) -> None:
        """Nothing is held any more: no due time, and a pending report timer is cancelled."""
        self._report_due = self._changed_at = self._report_timer_due = None
        timer, self._report_timer = self._report_timer, None
        if timer is not None and not timer.done():
            timer.cancel()

    async def _report(self, *, retired: bool = False) -> None:
        # Each report costs the history a signal and a workflow task: while a rollout is in
        # flight, reports go out at most every REPORT_INTERVAL (the next activity completion
        # brings the workflow back, so no timer is needed); a settled bundle reports at once.
        # Checked before the states are computed: at 500 clusters that is most of a pass.
        if self.state.shard is not None:
            await self._report_to_bundle(retired=retired)
            return
        now = workflow.now()
        last = self.state.last_report_at
        if last is None:
            # A bundle that settles within REPORT_INTERVAL of starting reports once; until
            # then the GitRepo shows it Pending.
            last = self._run_started
        throttled = self._in_flight and not retired and now - last < REPORT_INTERVAL
        # Before the patch a report held back waited for the next activity completion (up to
        # a readiness watch: ~50 s), and nothing needed computing for it.
        if throttled and not workflow.patched(REPORT_CHANGES_PATCH):
            return
        # Stale only when a new commit came in while the plan ran; the patch is asked only
        # then, so runs that never met one carry no marker.
        planning = self._planning()
        if planning and not workflow.patched(PLANNING_PATCH):
            planning = ""
        states = self._states(planning)
        summary = summarize(states, planning=planning)
        spec = self.state.spec
        halted = self._halted()
        source_error = spec.source_error if spec else ""
        shown, shown_message = bundle_shown(
            summary.state, summary.message, halted=halted, source_error=source_error
        )
        self.state.conditions = transition(
            self.state.conditions, [ready_condition(shown, shown_message)], workflow.now()
        )
        self.state.since = state_since(self.state.since, states, now)
        report = BundleReport(
            bundle=self.state.bundle,
            commit=spec.commit if spec else "",
            ready=summary.ready,
            desired=summary.desired,
            state=summary.state,
            message=summary.message,
            states={name: item.state for name, item in states.items()},
            retired=retired,
            partitions_done=self._partitions_done,
            halted=halted,
            auto_rollback=bool(halted)
            and rolls_back(partition_gates(self.state.strategy), self.state.gates),
        )
        # Packed against the snapshot's names only when the GitRepo has them too: a snapshot
        # that came by digest reaches it without clusters, so the states go unpacked (at most
        # a shard's worth: bundles that big are sharded).
        by_digest = self.state.clusters is not None and bool(self.state.clusters.clusters_digest)
        if not by_digest and workflow.patched(PACKED_REPORTS_PATCH):
            counts, non_ready = reported_summary(summary)
            self._cluster_views()  # the index of the latest snapshot
            report = pack_report(
                report.model_copy(update={"counts": counts, "non_ready": non_ready}), self._index
            )
        # A digest, so the state handed to continue-as-new stays small for big fleets. A read
        # error of a newer commit is in it (when there is one): it changes what the bundle
        # publishes, though not what the GitRepo hears (it has the error itself).
        fingerprint = hashlib.sha256((report.model_dump_json() + source_error).encode()).hexdigest()
        if fingerprint == self.state.last_report:
            self._settle_held_report()  # a held-back message that changed back: nothing is due
            return
        # A changed report while a rollout is in flight (see the throttle above, reached only
        # with the patch): what the GitRepo shows (commit, states, counts) goes out within
        # REPORT_GAP, so its line never lags the bundle's by more; a changed message alone
        # waits out REPORT_INTERVAL. Both on a timer, never until the next activity completes.
        # (At once was 15 events per deployment in a strictly sequential rollout, as every
        # report's signal brings a workflow task of its own; the gap shares them.) With
        # REPORTS_COALESCED_PATCH the gap runs from the change, so the held report usually
        # goes out with the next activity completion and its one timer is cancelled unfired.
        if throttled:
            shape_changed = _shape(report) != self._shape
            if not shape_changed:
                self._changed_at = None
            elif self._changed_at is None:
                self._changed_at = now
            due = held_report_due(
                now=now,
                last=last,
                changed_at=self._changed_at,
                shape_changed=shape_changed,
                gap=REPORT_GAP,
                interval=REPORT_INTERVAL,
            )
            if due is not None:
                if workflow.patched(REPORTS_COALESCED_PATCH):
                    self._arm_report_timer(due)
                else:
                    self._report_due = last + (REPORT_GAP if shape_changed else REPORT_INTERVAL)
                return
        self._shape = _shape(report)
        self._settle_held_report()
        self.state.last_report = fingerprint
        self.state.last_report_at = now
        publish_bundle(
            gitrepo=spec.gitrepo if spec else "",
            bundle=self.state.bundle,
            commit=spec.commit if spec else "",
            state=shown,
            message=shown_message or (spec.pin if spec else ""),
            ready=report.ready,
            desired=report.desired,
        )
        try:
            await workflow.get_external_workflow_handle(self.state.gitrepo_workflow_id).signal(
                BUNDLE_REPORT_SIGNAL, report
            )
        except FailureError:
            workflow.logger.info(
                "bundle %s: gitrepo workflow %s is gone",
                self.state.bundle,
                self.state.gitrepo_workflow_id,
            )


def _failure_type(err: ActivityError) -> str:
    """The ApplicationError type an activity failed with ("" for timeouts and the like)."""
    return str(getattr(err.cause, "type", "") or "")
