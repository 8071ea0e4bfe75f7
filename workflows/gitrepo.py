"""GitRepoWorkflow: watch one GitRepo, read each new commit, and keep its bundle workflows in step.

``gitrepo/<namespace>/<name>`` polls with ``git ls-remote`` every ``pollingInterval`` (±10%
jitter) and clones only when the commit changed. A commit's bundles come back as names and
digests; each valid bundle's workflow is signalled (started when new) through one batched
signal-with-start activity, bundles that left the repo are retired, and a bundle with a bad
fleet.yaml keeps what it had and shows its one-line error until a good commit clears it.
Bundles report their summaries here; this workflow aggregates them into the GitRepo status
and forwards the states of depended-on bundles to their dependents (durable dependsOn).
It also owns the image-policy schedules of its bundles' ``imageScans``: they follow each new
commit, pause with the GitRepo and are deleted with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.contentgc_models import CONTENT_REFS_QUERY, ContentRefs, ContentRefsRequest
    from activities.gitops_models import (
        FETCH_BUNDLES,
        LS_REMOTE,
        SYNC_BUNDLES,
        SYNC_BUNDLES_SHARED,
        BundleRef,
        BundleStart,
        FetchRequest,
        FetchResult,
        GitSource,
        LsRemoteRequest,
        LsRemoteResult,
        SyncBundlesRequest,
        SyncBundlesResult,
    )
    from activities.objectwatch_models import OBJECTS_CHANGED_SIGNAL, ObjectsChanged
    from activities.schedules_models import (
        SYNC_IMAGE_SCHEDULES,
        SyncSchedulesRequest,
        SyncSchedulesResult,
    )
    from flotilla.batches import split_by_size
    from flotilla.clusterstates import (
        ClusterIndex,
        cluster_index,
        pack_report,
        read_report,
        repack,
        states_by_position,
        tally_packed,
        with_packed,
    )
    from flotilla.credentials import RenderSecretRefs
    from flotilla.durations import parse_duration
    from flotilla.errors import INVALID_SPEC, FlotillaError, SpecError, cause_message, one_line
    from flotilla.ids import bundle_workflow_id, registry_workflow_id
    from flotilla.models import GitRepoSpec
    from flotilla.notifications import EventKind, NotificationEvent, report_events
    from flotilla.pins import (
        AUTO_ROLLBACK_USER,
        Pin,
        ReadyVersion,
        check_rollback,
        content_digest,
        lifted_by_commit,
        note_ready,
        pin_line,
        previous_version,
    )
    from flotilla.restrictions import authorize_gitrepo
    from flotilla.status import (
        BundleReport,
        BundleState,
        ClusterTally,
        deployment_page,
        gitrepo_conditions,
        summarize_gitrepo,
        tally_report,
        transition,
    )
    from flotilla.targeting import GitRepoSwitches
    from workflows.bundle import BUNDLE_REPORT_SIGNAL, REFRESH_SIGNAL, BundleWorkflow
    from workflows.bundle_models import (
        BundleRefresh,
        BundleSpec,
        BundleWorkflowState,
        DependencyStates,
        RetireRequest,
    )
    from workflows.common import (
        CLIENT_RETRY,
        FETCH_HEARTBEAT,
        FETCH_TIMEOUT,
        GIT_RETRY,
        IMAGE_NOTIFY_CONFIGURED_PATCH,
        LS_REMOTE_RETRY,
        LS_REMOTE_TIMEOUT,
        POLL_FETCH_RETRY,
        SCHEDULE_SYNC_RETRY,
        SCHEDULE_SYNC_TIMEOUT,
        SYNC_BUNDLES_TIMEOUT,
        continue_as_new_due,
        send_notification_events,
    )
    from workflows.gitrepo_models import (
        DELETE_UPDATE,
        DEPLOYMENTS_PAGE,
        GITREPO_SPEC_QUERY,
        GITREPO_STATUS_QUERY,
        GITREPO_WORKFLOW,
        ROLLBACK_UPDATE,
        SYNC_NOW_UPDATE,
        UPDATE_SPEC_UPDATE,
        DeleteRequest,
        DeleteResult,
        DeploymentLine,
        GitRepoState,
        GitRepoStatus,
        GitRepoStatusRequest,
        RollbackRequest,
        RollbackResult,
        SyncNowRequest,
        SyncNowResult,
        UpdateSpecRequest,
        UpdateSpecResult,
    )
    from workflows.registry import CLUSTERS_CHANGED_SIGNAL, ClusterRegistryWorkflow
    from workflows.registry_models import ClusterSnapshot, SubscribeRequest
    from workflows.visibility import (
        GITREPO,
        KIND,
        REPO,
        publish_summary,
    )

JITTER = 0.1
# Shows a bundle whose last report predates the current commit as WaitApplied (changes when
# search attributes are upserted, so older histories replay without it).
STALE_REPORT_PATCH = "stale-bundle-report-is-wait-applied"
# The GitRepo syncs its bundles' image-policy schedules (new activities in history).
IMAGE_SCHEDULES_PATCH = "gitrepo-owns-image-schedules"
# Bundles of a GitRepo with Helm credentials get their secret names (a new BundleSpec field,
# so a new key for the sync comparison and signals older histories did not send).
RENDER_SECRETS_PATCH = "bundle-spec-carries-render-secrets"
# The status line (message, bundle deployments ready) is upserted whenever it changes, so the
# CLI's tables and the UI's columns read what the `status` query answers.
STATUS_ATTRIBUTES_PATCH = "gitrepo-status-search-attributes"
# A git error outranks every bundle (GitError, since when, the commit still served) and a
# GitRepo with no commit yet is GitUpdating (changes when search attributes are upserted).
GIT_STATES_PATCH = "gitrepo-status-shows-git-errors"
# Bundles are signalled in batches so one activity never runs for long.
SYNC_BATCH = 200
# ... and no batch's input passes this many bytes of JSON: each bundle's refresh carries the
# cluster snapshot inline up to INLINE_SNAPSHOT_LIMIT (256 kB), so 200 of them could pass
# Temporal's 2 MB payload limit, which fails the GitRepo's workflow task for ever (50 bundles
# on 500 clusters already made 1.5 MB; issue 12). Half a MB stays under the SDK's warning.
# Cutting by size is asked (patch) only where it cuts differently from the count alone.
SYNC_BATCH_BYTES = 512 * 1024
SYNC_BY_SIZE_PATCH = "gitrepo-sync-batches-by-size"
# The cluster snapshot goes once per batch (sync_bundles_shared), not in every bundle's
# refresh: 50 bundles on 500 clusters put ~2 MB in the GitRepo's history at each commit and
# label change (issue 12), and it continued as new right after. Asked at each sync.
SNAPSHOT_ONCE_PER_BATCH_PATCH = "gitrepo-snapshot-once-per-batch"
# A run that is due to continue as new does so even when the ticker has asked for a poll (the
# next run polls first). Before, it polled first, and a GitRepo whose tasks came further
# apart than its pollingInterval (a busy worker: 6 s apart at pollingInterval 1s in the
# 50 x 500 benchmark) found a poll asked at every task and grew for minutes past its
# size. Asked only when that happens.
CONTINUE_BEFORE_TICKER_POLL_PATCH = "gitrepo-continues-before-a-ticker-poll"
# sync_now signals every bundle to check its deployments (commands older histories lack).
RECHECK_ON_SYNC_PATCH = "recheck-on-sync"
# The workspace's Policies and GitRepoRestrictions are enforced: the first poll waits for the
# registry's snapshot that carries them, and a refused GitRepo fetches and deploys nothing.
RESTRICTIONS_PATCH = "gitrepo-enforces-restrictions"
# The restrictions' target-namespace selector and allowNamespaceCreation reach the bundles
# (only GitRepos in workspaces that set them pay the patch).
NAMESPACE_RULES_PATCH = "tenancy-namespace-rules-reach-bundles"
# A Restricted GitRepo's image scan schedules are paused, and resumed when it is released.
RESTRICTED_SCHEDULES_PATCH = "tenancy-restricted-pauses-image-schedules"
# Events seen in bundle reports are signalled to the namespace's notification workflow.
NOTIFY_PATCH = "gitrepo-sends-notification-events"
# ... but only once the namespace has a notification config (the registry's snapshot says),
# instead of a signal that fails on every pass with events.
NOTIFY_CONFIGURED_PATCH = "closers-notify-only-when-configured"
# ClusterOffline is told once per cluster by the registry, no longer per bundle from here.
CLUSTER_OFFLINE_PATCH = "closers-cluster-offline-from-registry"
# Version pins (flotilla rollback): the pinned commit is fetched and its bundles deployed
# instead of the branch head's. Asked only by the rollback update, so runs never pinned carry
# no marker.
PINS_PATCH = "rollback-version-pins"
# A halted partition's autoRollback: the bundle pinned to its last Ready version. Asked only
# when a bundle's report asks for it.
AUTO_ROLLBACK_PATCH = "rollback-automatic"
# dependency_states go to dependents packed as the report is stored (flotilla.clusterstates)
# instead of one entry per cluster; asked only when forwarding a packed report.
PACKED_DEPENDENCIES_PATCH = "shards-packed-dependency-states"
# A report this GitRepo cannot read by name (packed against a list it has no names of: a
# sharded bundle's, whose snapshot came by digest) still goes to dependents packed as
# stored, which read it against their own list or cut it into their shards'. Before, it went
# nowhere and the dependent waited. Asked only when forwarding such a report.
UNREAD_DEPENDENCIES_PATCH = "gitrepo-forwards-unread-packed-states"
# Git is polled by a ticker every pollingInterval, whatever else wakes the run. Before, the
# loop waited for a wake or the interval, so each bundle report cancelled the poll timer and
# started another (two events and a command each), and a run woken more often than the
# interval (a rollout's reports) did not poll git until its bundles went quiet. Asked once,
# at the start of a run.
POLL_TICKER_PATCH = "gitrepo-polls-on-a-ticker"
# A bundle whose fleet.yaml broke keeps the commit it was read at: its spec no longer moves to
# the broken commit (a refresh fewer), its status and Ready versions name what it runs.
KEPT_COMMIT_PATCH = "gitrepo-broken-bundle-keeps-its-commit"
# ... and is told why, in its spec (``BundleSpec.source_error``): its own status, `get
# bundles` and the Temporal UI say ErrApplied with the error, not Ready at the older commit
# (a refresh more per broken commit). Asked only when a deployable bundle has a read error.
SOURCE_ERROR_PATCH = "gitrepo-tells-a-broken-bundle-its-error"


def _kept_commit(ref: BundleRef | None) -> str:
    """The older commit a bundle runs because its current read has an error ("" if none)."""
    return ref.commit if ref is not None and ref.error and ref.digest else ""


def _source_key(spec: GitRepoSpec) -> str:
    return GitSource.from_spec(spec, "").model_dump_json() + ",".join(spec.paths)


@workflow.defn(name=GITREPO_WORKFLOW)
class GitRepoWorkflow:
    """``gitrepo/<namespace>/<name>``: polls git and keeps the bundles of the commit deployed."""

    @workflow.init
    def __init__(self, state: GitRepoState) -> None:
        self.state = state
        # The history's size when this run started (its input), for continue_as_new_due.
        self._start_bytes = workflow.info().get_current_history_size()
        self._wake = False
        self._poll_now = True
        self._published: tuple[str, ...] | None = None
        self._status_attributes = False
        self._stale_reports_wait = False
        self._owns_image_schedules = False
        self._git_states = False
        self._restrictions = False
        self._ticker = False
        # What the workspace's restrictions add to every bundle's switches (set with the
        # authorized spec; empty when they add nothing).
        self._namespace_rules: dict[str, Any] = {}
        # Bumped whenever a pin is set or lifted: a fetch that started before is not taken.
        self._pin_epoch = 0
        # The cluster list of the current snapshot and of the one before it (reports packed
        # against that one are repacked when they arrive after the change), and each stored
        # report unpacked, while it is the one stored (none of this is state: all rebuilt).
        self._index: tuple[ClusterSnapshot | None, ClusterIndex | None] = (None, None)
        self._previous_index: ClusterIndex | None = None
        self._expanded: dict[str, tuple[BundleReport, BundleReport]] = {}
        # Per bundle, its stored report's states by position in the list a snapshot by
        # digest names by key only (read once per report and key; not state either).
        self._positions: dict[str, tuple[BundleReport, str, dict[int, BundleState]]] = {}
        # Per bundle, the cluster tally of its report as the status reads it, with that report
        # and the snapshot it was tallied against (kept while both are the same objects, so
        # a pass costs per report that changed, not per bundle and cluster: not state either).
        self._tallies: dict[str, tuple[BundleReport, ClusterSnapshot | None, ClusterTally]] = {}
        # The last sync key with the snapshot and specs it was made of (see _sync_key).
        self._last_sync_key: tuple[ClusterSnapshot, dict[str, BundleSpec], str] | None = None

    @workflow.run
    async def run(self, state: GitRepoState) -> None:
        self._stale_reports_wait = workflow.patched(STALE_REPORT_PATCH)
        self._owns_image_schedules = workflow.patched(IMAGE_SCHEDULES_PATCH)
        self._status_attributes = workflow.patched(STATUS_ATTRIBUTES_PATCH)
        self._git_states = workflow.patched(GIT_STATES_PATCH)
        self._ticker = workflow.patched(POLL_TICKER_PATCH)
        ticker = asyncio.create_task(self._tick()) if self._ticker else None
        workflow.upsert_search_attributes(
            [
                KIND.value_set("GitRepo"),
                GITREPO.value_set(self.state.name),
                REPO.value_set(self.state.spec.repo),
            ]
        )
        await self._subscribe()
        self._restrictions = workflow.patched(RESTRICTIONS_PATCH)
        if self._restrictions and self.state.subscribed:
            # The registry answers a subscription with its snapshot at once: wait for it, so
            # the workspace's restrictions apply before anything is fetched.
            await workflow.wait_condition(
                lambda: self.state.clusters is not None or self.state.deleting
            )
        while not self.state.deleting:
            if self._poll_now:
                self._poll_now = False
                await self._poll()
            await self._auto_rollback()
            await self._sync_bundles()
            # After the bundles, so a new commit's deploys never wait for the schedules.
            await self._sync_image_schedules()
            await self._forward_dependencies()
            await self._send_events()
            self._publish()
            if continue_as_new_due(self.state.max_history_events, start_bytes=self._start_bytes):
                # A sync_now update finishes only after a poll, so it must not be waited on
                # here: poll first, then continue as new. A poll nobody waits for (the
                # ticker's) goes with the run: the next one polls first.
                await workflow.wait_condition(
                    lambda: workflow.all_handlers_finished() or self._poll_now
                )
                if workflow.all_handlers_finished() and (
                    not self._poll_now or workflow.patched(CONTINUE_BEFORE_TICKER_POLL_PATCH)
                ):
                    workflow.continue_as_new(self.state)
                continue
            if self._ticker or self.state.spec.disable_polling:
                await workflow.wait_condition(lambda: self._wake or self.state.deleting)
            else:
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        lambda: self._wake or self.state.deleting, timeout=self._interval()
                    )
                if not self._wake:
                    self._poll_now = True
            self._wake = False
        if ticker is not None:
            ticker.cancel()
        await self._delete()

    async def _tick(self) -> None:
        """Ask for a git poll every pollingInterval (with jitter) while polling is on. A
        changed interval takes effect at once (the wait starts over with it, without a poll)."""
        while not self.state.deleting:
            if self.state.spec.disable_polling:
                await workflow.wait_condition(
                    lambda: not self.state.spec.disable_polling or self.state.deleting
                )
                continue
            try:
                await workflow.wait_condition(
                    self._polling_changed(self.state.spec.polling_interval),
                    timeout=self._interval(),
                )
            except TimeoutError:
                self._poll_now = True
                self._wake = True

    def _polling_changed(self, interval: str | int | float) -> Callable[[], bool]:
        """Whether the interval is no longer ``interval``, polling was turned off, or the
        GitRepo is being deleted: the ticker's wait ends without a poll."""
        return lambda: (
            self.state.spec.polling_interval != interval
            or self.state.spec.disable_polling
            or self.state.deleting
        )

    def _interval(self) -> timedelta:
        seconds = parse_duration(self.state.spec.polling_interval, field="spec.pollingInterval")
        jitter = 1 + JITTER * (2 * workflow.random().random() - 1)
        return timedelta(seconds=max(seconds, 1.0) * jitter)

    # --- handlers -----------------------------------------------------------------------------

    @workflow.signal(name=CLUSTERS_CHANGED_SIGNAL)
    def clusters_changed(self, snapshot: ClusterSnapshot) -> None:
        if self.state.clusters is None or snapshot.version >= self.state.clusters.version:
            before = self._cluster_index()
            self.state.clusters = snapshot
            after = self._cluster_index()
            if after is not None and (before is None or before.key != after.key):
                if before is not None:
                    # Stored reports are packed against the old list: read them with it.
                    self._previous_index = before
                    self.state.reports = repack(self.state.reports, before, after)
                self._expanded = {}  # some may be readable now
            self._wake = True

    def _cluster_index(self) -> ClusterIndex | None:
        """The current snapshot's sorted cluster names (built once per snapshot)."""
        clusters = self.state.clusters
        if clusters is None:
            return None
        if self._index[0] is not clusters:
            self._index = (clusters, cluster_index(c.name for c in clusters.clusters))
        return self._index[1]

    def _unpacked(self, report: BundleReport) -> BundleReport:
        """A report with its per-cluster states readable, repacked for the current cluster
        list if it was packed against the previous one."""
        return read_report(report, self._cluster_index(), self._previous_index)

    def _report(self, bundle: str) -> BundleReport:
        """The stored report of ``bundle`` with its per-cluster states unpacked."""
        stored = self.state.reports[bundle]
        cached = self._expanded.get(bundle)
        if cached is None or cached[0] is not stored:
            cached = (stored, self._unpacked(stored))
            self._expanded[bundle] = cached
        return cached[1]

    def _reports(self) -> dict[str, BundleReport]:
        return {name: self._report(name) for name in self.state.reports}

    def _by_position(self) -> Callable[[BundleReport], Mapping[int, BundleState]] | None:
        """How the status reads a report still packed, by position in the list of a
        snapshot that came by digest (its header names the list's key and size); None when
        this run has the names or no key (older registries)."""
        clusters = self.state.clusters
        if clusters is None or not clusters.by_digest or not clusters.clusters_key:
            return None
        key, length = clusters.clusters_key, clusters.cluster_count

        def read(report: BundleReport) -> Mapping[int, BundleState]:
            stored = self.state.reports.get(report.bundle)
            if stored is None:
                return {}
            cached = self._positions.get(report.bundle)
            if cached is None or cached[0] is not stored or cached[1] != key:
                cached = (stored, key, states_by_position(stored, key, length))
                self._positions[report.bundle] = cached
            return cached[2]

        return read

    def _tally(self, report: BundleReport) -> ClusterTally:
        """The cluster tally of a stored ``report``, over the current snapshot's positions:
        read from its codes when packed against that list, else from the report unpacked as
        the run reads it (kept per bundle while the report and the snapshot are the objects
        it was made from)."""
        clusters = self.state.clusters
        cached = self._tallies.get(report.bundle)
        if cached is None or cached[0] is not report or cached[1] is not clusters:
            index = self._cluster_index()
            if index is not None and report.codes and report.clusters_key == index.key:
                tally = tally_packed(report, index)
            else:
                tally = tally_report(
                    self._report(report.bundle),
                    position=index.position if index is not None else None,
                    by_position=self._by_position(),
                )
            cached = (report, clusters, tally)
            self._tallies[report.bundle] = cached
        return cached[2]

    @workflow.signal(name=BUNDLE_REPORT_SIGNAL)
    def bundle_report(self, report: BundleReport) -> None:
        # Kept packed (older runs' reports too): 50 bundles × 500 clusters of states in full
        # were most of this workflow's state; unpacked only in memory, where used.
        unpacked = self._unpacked(report)
        index = self._cluster_index()
        if not unpacked.codes:
            # (A report packed against a list this run does not know tells no events.)
            self._note_events(unpacked)
            if index is not None and not (report.codes and report.clusters_key == index.key):
                # (One packed against the current list is kept as it came: packing it again
                # gives the same states.)
                report = pack_report(unpacked, index)
        previous = self.state.reports.get(report.bundle)
        if previous is None or previous.state != report.state:
            self.state.bundle_since[report.bundle] = workflow.now()
        if report.retired:
            self.state.bundle_since.pop(report.bundle, None)
            self.state.reports.pop(report.bundle, None)
            if report.bundle in self.state.retiring:
                self.state.retiring.remove(report.bundle)
        else:
            self.state.reports[report.bundle] = report
            self._note_report(report)
            self._expanded[report.bundle] = (report, unpacked)
        if report.bundle not in self.state.forward:
            self.state.forward.append(report.bundle)
        self._wake = True

    def _note_report(self, report: BundleReport) -> None:
        """Remember the bundle's version when it is Ready everywhere (for --previous and
        autoRollback), and a halt that asks for an automatic rollback."""
        ref = self._effective_refs().get(report.bundle)
        if ref is None or report.commit != self._commit_of(report.bundle):
            return
        name = report.bundle
        if report.state is BundleState.READY and report.ready == report.desired:
            seen = ReadyVersion(commit=report.commit, digest=ref.digest)
            self.state.ready_versions[name] = note_ready(
                self.state.ready_versions.get(name, []), seen
            )
        wanted = report.auto_rollback and report.halted and name not in self.state.pins
        if wanted and name not in self.state.auto_rollbacks:
            self.state.auto_rollbacks.append(name)
            self._wake = True

    def _note_events(self, report: BundleReport) -> None:
        """What this report changed, kept until the loop sends it (a handler cannot await)."""
        if report.bundle not in self.state.bundles:
            return  # a retired bundle's last words, or another GitRepo's conflict report
        info = workflow.info()
        events = report_events(
            self._report(report.bundle) if report.bundle in self.state.reports else None,
            report,
            namespace=self.state.namespace,
            gitrepo=self.state.name,
            labels=self.state.bundles[report.bundle].labels,
            workflow_id=bundle_workflow_id(self.state.namespace, report.bundle),
            gitrepo_labels=self.state.labels,
        )
        if any(e.kind is EventKind.CLUSTER_OFFLINE for e in events) and workflow.patched(
            CLUSTER_OFFLINE_PATCH
        ):
            events = [e for e in events if e.kind is not EventKind.CLUSTER_OFFLINE]
        for event in events:
            self.state.notify_seq += 1
            key = f"{info.workflow_id}/{info.run_id}#{self.state.notify_seq}"
            self.state.notify_events.append(event.model_copy(update={"key": key}))

    async def _send_events(self) -> None:
        """Hand the events to ``notifications/<ns>``: one signal per pass, never waiting for
        a delivery. Without a notification config (the registry's snapshot says) nobody asked
        for them: they are dropped without a signal."""
        if not self.state.notify_events:
            return
        events, self.state.notify_events = self.state.notify_events, []
        if not workflow.patched(NOTIFY_PATCH):
            return
        clusters = self.state.clusters
        unconfigured = clusters is not None and not clusters.notifications
        if unconfigured and workflow.patched(NOTIFY_CONFIGURED_PATCH):
            return
        await send_notification_events(self.state.namespace, events)

    @workflow.update(name=SYNC_NOW_UPDATE)
    async def sync_now(self, request: SyncNowRequest) -> SyncNowResult:
        polls = self.state.polls
        self._poll_now = True
        self._wake = True
        await workflow.wait_condition(lambda: self.state.polls > polls or self.state.deleting)
        if workflow.patched(RECHECK_ON_SYNC_PATCH):
            await self._recheck_bundles()
        return SyncNowResult(
            commit=self.state.commit, error=self.state.restricted or self.state.error
        )

    async def _recheck_bundles(self) -> None:
        """A sync also checks every deployment now (drift, a lost Helm record) instead of at
        its next periodic check; a deployment that needs it is deployed again."""
        change = ObjectsChanged(cluster="")
        for name in sorted(self.state.reports):
            handle = workflow.get_external_workflow_handle(
                bundle_workflow_id(self.state.namespace, name)
            )
            with contextlib.suppress(FailureError):
                await handle.signal(OBJECTS_CHANGED_SIGNAL, change)

    @workflow.update(name=UPDATE_SPEC_UPDATE)
    def update_spec(self, request: UpdateSpecRequest) -> UpdateSpecResult:
        old = self.state.spec
        self.state.spec = request.spec
        if request.labels is not None:
            self.state.labels = request.labels
        if _source_key(old) != _source_key(request.spec):
            self._poll_now = True
        self._wake = True
        return UpdateSpecResult(message=f"gitrepo {self.state.namespace}/{self.state.name} updated")

    @update_spec.validator
    def _validate_update_spec(self, request: UpdateSpecRequest) -> None:
        try:
            parse_duration(request.spec.polling_interval, field="spec.pollingInterval")
        except FlotillaError as err:
            raise ApplicationError(str(err), type=INVALID_SPEC, non_retryable=True) from None
        if self.state.deleting:
            raise ApplicationError(
                f"gitrepo {self.state.namespace}/{self.state.name} is being deleted",
                type=INVALID_SPEC,
                non_retryable=True,
            )

    @workflow.update(name=ROLLBACK_UPDATE)
    async def rollback(self, request: RollbackRequest) -> RollbackResult:
        """Pin a version (``--to``, ``--previous``) or lift a pin (``--clear``). The pinned
        commit is read before the answer, so an unknown commit is refused in one line."""
        workflow.patched(PINS_PATCH)
        what = f"bundle {request.bundle}" if request.bundle else "gitrepo"
        where = f"{what} of {self.state.namespace}/{self.state.name}"
        if request.clear:
            lifted = self._lift(request.bundle, f"lifted by {request.user}")
            self._poll_now = self._poll_now or not request.bundle
            return RollbackResult(
                message=f"{where}: pin to {lifted.commit[:12]} lifted; the branch head rolls "
                "out again",
                commit=self.state.head,
            )
        commit = request.to or self._previous(request.bundle)
        pin = await self._pin(
            request.bundle,
            commit,
            user=request.user,
            reason=request.reason,
            until_next_commit=request.until_next_commit,
        )
        return RollbackResult(message=f"{where}: {pin_line(pin)}", commit=pin.commit)

    @rollback.validator
    def _validate_rollback(self, request: RollbackRequest) -> None:
        try:
            check_rollback(
                to=request.to,
                previous=request.previous,
                clear=request.clear,
                user=request.user,
                reason=request.reason,
                until_next_commit=request.until_next_commit,
            )
        except FlotillaError as err:
            raise ApplicationError(str(err), type=INVALID_SPEC, non_retryable=True) from None
        name = f"{self.state.namespace}/{self.state.name}"
        refusal = ""
        if self.state.deleting:
            refusal = f"gitrepo {name} is being deleted"
        elif self.state.restricted:
            refusal = f"gitrepo {name}: {self.state.restricted}"
        elif request.bundle and request.bundle not in self._effective_refs():
            known = ", ".join(sorted(self._effective_refs())) or "none"
            refusal = f"gitrepo {name} has no bundle {request.bundle!r} (bundles: {known})"
        elif request.clear and request.bundle not in self.state.pins:
            what = f"bundle {request.bundle}" if request.bundle else f"gitrepo {name}"
            refusal = f"{what} is not pinned"
        elif request.previous and not self._previous(request.bundle):
            what = f"bundle {request.bundle}" if request.bundle else f"gitrepo {name}"
            refusal = (
                f"{what} has no earlier version that was Ready to go back to (use --to COMMIT)"
            )
        if refusal:
            raise ApplicationError(refusal, type=INVALID_SPEC, non_retryable=True)

    def _previous(self, bundle: str) -> str:
        """The commit ``--previous`` means for the GitRepo or one bundle ("" when none)."""
        refs = self._effective_refs()
        if bundle:
            current = refs[bundle].digest if bundle in refs else ""
        else:
            current = content_digest({n: r.digest for n, r in refs.items()})
        return previous_version(self.state.ready_versions.get(bundle, []), current)

    async def _pin(
        self, bundle: str, commit: str, *, user: str, reason: str, until_next_commit: bool
    ) -> Pin:
        """Read ``commit`` (it must be on the branch) and hold the GitRepo or one bundle at it."""
        spec = self._authorized_spec() or self.state.spec
        self._pin_epoch += 1
        epoch = self._pin_epoch
        try:
            fetched: FetchResult = await workflow.execute_activity(
                FETCH_BUNDLES,
                FetchRequest(
                    namespace=self.state.namespace,
                    gitrepo=self.state.name,
                    source=GitSource.from_spec(spec, self.state.namespace),
                    commit=commit,
                    paths=spec.paths,
                    exact=True,
                ),
                result_type=FetchResult,
                start_to_close_timeout=FETCH_TIMEOUT,
                heartbeat_timeout=FETCH_HEARTBEAT,
                retry_policy=GIT_RETRY,
            )
        except ActivityError as err:
            raise ApplicationError(
                cause_message(err), type=INVALID_SPEC, non_retryable=True
            ) from None
        if epoch != self._pin_epoch:
            raise ApplicationError(
                "another rollback of this gitrepo came in meanwhile; try again",
                type=INVALID_SPEC,
                non_retryable=True,
            )
        pin = Pin(
            commit=fetched.commit,
            bundle=bundle,
            user=user,
            reason=one_line(reason),
            at=workflow.now(),
            until_next_commit=until_next_commit,
            head=self.state.head or self.state.fetched_commit,
        )
        if bundle:
            ref = next((r for r in fetched.bundles if r.name == bundle), None)
            if ref is None or not ref.digest:
                why = f": {ref.error}" if ref is not None and ref.error else ""
                raise ApplicationError(
                    f"bundle {bundle} cannot deploy at commit {fetched.commit[:12]}"
                    + (why or " (it is not in that commit)"),
                    type=INVALID_SPEC,
                    non_retryable=True,
                )
            self.state.pinned_refs[bundle] = ref
        else:
            self._take(fetched)
            self.state.fetched_source = _source_key(spec)
        self.state.pins[bundle] = pin
        self._pin_epoch += 1
        self._wake = True
        workflow.logger.info(
            "gitrepo %s/%s: %s: %s",
            self.state.namespace,
            self.state.name,
            f"bundle {bundle}" if bundle else "gitrepo",
            pin_line(pin),
        )
        return pin

    def _lift(self, bundle: str, why: str) -> Pin:
        pin = self.state.pins.pop(bundle)
        self.state.pinned_refs.pop(bundle, None)
        self._pin_epoch += 1
        self._wake = True
        workflow.logger.info(
            "gitrepo %s/%s: %s: pin to %s %s",
            self.state.namespace,
            self.state.name,
            f"bundle {bundle}" if bundle else "gitrepo",
            pin.commit[:12],
            why,
        )
        return pin

    async def _auto_rollback(self) -> None:
        """Pin each bundle whose failure budget halted its rollout with autoRollback to its
        last Ready version (lifted by the next commit), and tell the Alerts."""
        while self.state.auto_rollbacks:
            name = self.state.auto_rollbacks.pop(0)
            report = self.state.reports.get(name)
            if name in self.state.pins or report is None or not report.halted:
                continue
            if not workflow.patched(AUTO_ROLLBACK_PATCH):
                continue
            commit = self._previous(name)
            if not commit:
                warning = one_line(
                    f"bundle {name}: autoRollback: no earlier version was Ready, so the halted "
                    f"commit {report.commit[:12]} stays"
                )
                self.state.rollback_warnings = [
                    *(
                        w
                        for w in self.state.rollback_warnings
                        if not w.startswith(f"bundle {name}:")
                    ),
                    warning,
                ]
                continue
            try:
                pin = await self._pin(
                    name,
                    commit,
                    user=AUTO_ROLLBACK_USER,
                    reason=report.halted,
                    until_next_commit=True,
                )
            except ApplicationError as err:
                self.state.rollback_warnings.append(
                    one_line(f"bundle {name}: autoRollback to {commit[:12]} failed: {err}")
                )
                continue
            self.state.notify_seq += 1
            info = workflow.info()
            self.state.notify_events.append(
                NotificationEvent(
                    kind=EventKind.ROLLED_BACK,
                    namespace=self.state.namespace,
                    gitrepo=self.state.name,
                    bundle=name,
                    commit=pin.commit,
                    clusters=sorted(report.states),
                    labels=self.state.bundles[name].labels if name in self.state.bundles else {},
                    gitrepo_labels=self.state.labels,
                    detail=one_line(f"from {report.commit[:12]}: {report.halted}"),
                    workflow_id=bundle_workflow_id(self.state.namespace, name),
                    key=f"{info.workflow_id}/{info.run_id}#{self.state.notify_seq}",
                )
            )

    def _effective_refs(self) -> dict[str, BundleRef]:
        """The bundles to deploy: the current commit's, with each pinned bundle's ref at its
        pinned commit."""
        refs = {r.name: r for r in self._deployable()}
        for name, ref in self.state.pinned_refs.items():
            if name in refs:
                refs[name] = ref
        return refs

    def _commit_of(self, bundle: str) -> str:
        """The commit a bundle is meant to run: its pin's, else the one its kept ref was read
        at (its fleet.yaml broke since), else the GitRepo's."""
        pin = self.state.pins.get(bundle)
        if pin is not None and bundle in self.state.pinned_refs:
            return pin.commit
        return _kept_commit(self.state.bundles.get(bundle)) or self.state.commit

    def _kept_commits(self) -> dict[str, str]:
        """Bundles that run an older commit's read because the current one has an error."""
        return {
            name: commit
            for name, ref in self.state.bundles.items()
            if (commit := _kept_commit(ref))
        }

    @workflow.update(name=DELETE_UPDATE)
    def delete(self, request: DeleteRequest) -> DeleteResult:
        self.state.deleting = True
        return DeleteResult(bundles=len(self.state.bundles))

    @workflow.query(name=GITREPO_STATUS_QUERY)
    def status(self, request: GitRepoStatusRequest) -> GitRepoStatus:
        status = self._status()
        if request.deployments:
            page, status.deployments_total = deployment_page(
                self._reports(),
                request.deployments_offset,
                max(min(request.deployments_limit, DEPLOYMENTS_PAGE), 1),
            )
            status.deployments = [
                DeploymentLine(bundle=bundle, cluster=cluster, commit=commit, state=state)
                for bundle, cluster, commit, state in page
            ]
        return status

    @workflow.query(name=GITREPO_SPEC_QUERY)
    def spec(self, request: GitRepoStatusRequest) -> GitRepoSpec:
        return self.state.spec

    @workflow.query(name=CONTENT_REFS_QUERY)
    def content_refs(self, request: ContentRefsRequest) -> ContentRefs:
        """The bundles of the last commit read, including those not handed on yet, and the
        pinned bundles' content."""
        refs = [*self.state.bundles.values(), *self.state.pinned_refs.values()]
        digests = {r.digest for r in refs}
        if self.state.clusters is not None:
            digests.add(self.state.clusters.clusters_digest)  # its snapshot, when by digest
        return ContentRefs(digests=sorted(digests - {""}))

    # --- polling and reading ------------------------------------------------------------------

    async def _subscribe(self) -> None:
        if self.state.subscribed:
            return
        registry = workflow.get_external_workflow_handle_for(
            ClusterRegistryWorkflow.run, registry_workflow_id(self.state.namespace)
        )
        try:
            await registry.signal(
                ClusterRegistryWorkflow.subscribe,
                SubscribeRequest(workflow_id=workflow.info().workflow_id),
            )
            self.state.subscribed = True
        except FailureError:
            self._set_error(
                f"no cluster registry for namespace {self.state.namespace!r}: "
                "register a cluster with `flotilla cluster add`"
            )

    def _set_error(self, error: str) -> None:
        """Record the one-line error the status shows, keeping when it first appeared."""
        if error and not self.state.error:
            self.state.error_since = workflow.now()
        elif not error:
            self.state.error_since = None
        self.state.error = error

    def _authorized_spec(self) -> GitRepoSpec | None:
        """The spec with the workspace's defaults filled in, or None (and ``restricted`` set)
        when its restrictions refuse it. Checked at every poll and sync, so a restriction
        added later stops new deploys; what is deployed stays."""
        spec, clusters = self.state.spec, self.state.clusters
        if not self._restrictions or clusters is None:
            return spec
        try:
            resolved = authorize_gitrepo(
                repo=spec.repo,
                service_account=spec.service_account,
                client_secret_name=spec.client_secret_name,
                target_namespace=spec.target_namespace,
                restrictions=clusters.restrictions,
                policies=clusters.policies,
                verifies_commits=spec.verify_commits is not None,
                verify_commits_secret=spec.verify_commits.secret_name
                if spec.verify_commits
                else None,
            )
        except SpecError as err:
            restricted = f"refused by the workspace's restrictions: {err}"
            if restricted != self.state.restricted:
                workflow.logger.warning(
                    "gitrepo %s/%s: %s", self.state.namespace, self.state.name, restricted
                )
            self.state.restricted = restricted
            return None
        self.state.restricted = ""
        self._namespace_rules = {
            k: v
            for k, v in (
                ("namespace_selector", resolved.namespace_selector),
                ("allow_namespace_creation", resolved.allow_namespace_creation),
            )
            if v
        }
        return spec.model_copy(
            update={
                "service_account": resolved.service_account,
                "client_secret_name": resolved.client_secret_name,
            }
        )

    async def _poll(self) -> None:
        authorized = self._authorized_spec()
        if authorized is None:
            self.state.polls += 1
            return
        spec = authorized
        source = GitSource.from_spec(spec, self.state.namespace)
        try:
            head: LsRemoteResult = await workflow.execute_activity(
                LS_REMOTE,
                LsRemoteRequest(source=source),
                result_type=LsRemoteResult,
                start_to_close_timeout=LS_REMOTE_TIMEOUT,
                retry_policy=LS_REMOTE_RETRY,
            )
            self.state.git_warning = head.warning
            read_source = _source_key(spec)
            for name, held in list(self.state.pins.items()):
                if lifted_by_commit(held, head.commit):
                    self._lift(name, f"lifted by the new commit {head.commit[:12]}")
            self.state.head = head.commit
            pin = self.state.pins.get("")
            target = pin.commit if pin is not None else head.commit
            if (
                target != self.state.fetched_commit
                or not self.state.bundles
                or (self.state.fetched_source and self.state.fetched_source != read_source)
            ):
                epoch = self._pin_epoch
                fetched: FetchResult = await workflow.execute_activity(
                    FETCH_BUNDLES,
                    FetchRequest(
                        namespace=self.state.namespace,
                        gitrepo=self.state.name,
                        source=source,
                        commit=target,
                        paths=spec.paths,
                        exact=pin is not None,
                    ),
                    result_type=FetchResult,
                    start_to_close_timeout=FETCH_TIMEOUT,
                    heartbeat_timeout=FETCH_HEARTBEAT,
                    retry_policy=POLL_FETCH_RETRY,
                )
                if epoch == self._pin_epoch:
                    self._take(fetched)
                    self.state.fetched_source = read_source
                else:
                    # A pin was set or lifted while this fetch ran: what it read is stale.
                    self._poll_now = True
            self._set_error("")
        except ActivityError as err:
            # Recorded in the status; the next poll (or a new spec) tries again, and what the
            # last good commit deployed keeps running meanwhile.
            self._set_error(cause_message(err))
            workflow.logger.warning(
                "gitrepo %s/%s: %s", self.state.namespace, self.state.name, self.state.error
            )
        if not self.state.subscribed:
            await self._subscribe()
        self.state.polls += 1

    def _take(self, fetched: FetchResult) -> None:
        previous = self.state.bundles
        bundles: dict[str, BundleRef] = {}
        for ref in fetched.bundles:
            if not ref.error:
                bundles[ref.name] = ref
            elif ref.name in previous and previous[ref.name].digest:
                # A bad fleet.yaml keeps the last good version running, at the commit it was
                # read at (the bundle's status and its Ready versions say that commit, not
                # this one); only its error shows.
                kept = previous[ref.name]
                update: dict[str, str] = {"error": ref.error}
                if workflow.patched(KEPT_COMMIT_PATCH):
                    update["commit"] = kept.commit or self.state.commit
                bundles[ref.name] = kept.model_copy(update=update)
            else:
                # Never deployed and not deployable (bad dependsOn): nothing to run.
                bundles[ref.name] = ref.model_copy(update={"digest": ""})
        self.state.bundles = bundles
        self.state.commit = fetched.commit
        self.state.fetched_commit = fetched.commit
        self.state.warnings = fetched.warnings
        workflow.logger.info(
            "gitrepo %s/%s: commit %s, %d bundles",
            self.state.namespace,
            self.state.name,
            fetched.commit[:12],
            len(bundles),
        )

    # --- image-policy schedules ---------------------------------------------------------------

    async def _sync_image_schedules(self) -> None:
        """Make the schedules match this commit's scans, pause and task queue (when changed)."""
        if not self._owns_image_schedules:
            return
        refs = sorted(self.state.bundles.values(), key=lambda r: r.name)
        if not (self.state.image_schedules or any(r.image_scans for r in refs)):
            return
        restricted = self._schedules_restricted()
        notifications = self._image_notifications()
        key = hashlib.sha256(
            "|".join(
                [
                    self.state.commit,
                    self.state.spec.model_dump_json(),
                    workflow.info().task_queue,
                    *(r.model_dump_json() for r in refs),
                    *([f"restricted:{restricted}"] if restricted else []),
                    *([] if notifications else ["notifications:off"]),
                ]
            ).encode()
        ).hexdigest()
        if key == self.state.image_sync_key:
            return
        if self.state.image_sync_failed_poll == self.state.polls:
            return
        if await self._call_sync_image_schedules(refs, restricted, notifications=notifications):
            self.state.image_sync_key = key

    def _image_notifications(self) -> bool:
        """Whether image-policy runs signal their events: False once the registry's snapshot
        says the namespace has no notification config (each signal would fail)."""
        clusters = self.state.clusters
        unconfigured = clusters is not None and not clusters.notifications
        return not (unconfigured and workflow.patched(IMAGE_NOTIFY_CONFIGURED_PATCH))

    def _schedules_restricted(self) -> str:
        """Why the schedules stay paused: the GitRepo is Restricted (else "")."""
        if self.state.restricted and workflow.patched(RESTRICTED_SCHEDULES_PATCH):
            return self.state.restricted
        return ""

    async def _call_sync_image_schedules(
        self, refs: list[BundleRef], restricted: str = "", *, notifications: bool = True
    ) -> bool:
        """One ``sync_image_schedules`` call; a failure is a warning in the status, never fatal."""
        had_schedules = self.state.image_schedules
        # Until a sync says otherwise, schedules may exist under this GitRepo's prefix.
        self.state.image_schedules = True
        try:
            result: SyncSchedulesResult = await workflow.execute_activity(
                SYNC_IMAGE_SCHEDULES,
                SyncSchedulesRequest(
                    namespace=self.state.namespace,
                    gitrepo=self.state.name,
                    gitrepo_workflow_id=workflow.info().workflow_id,
                    spec=self.state.spec,
                    commit=self.state.commit,
                    bundles=refs,
                    task_queue=workflow.info().task_queue,
                    restricted=restricted,
                    notifications=notifications,
                ),
                result_type=SyncSchedulesResult,
                start_to_close_timeout=SCHEDULE_SYNC_TIMEOUT,
                retry_policy=SCHEDULE_SYNC_RETRY,
            )
        except ActivityError as err:
            self.state.image_sync_failed_poll = self.state.polls
            self.state.image_warnings = [
                one_line(f"image schedules not synced: {err.cause or err}")
            ]
            workflow.logger.warning(
                "gitrepo %s/%s: commit %s: %s",
                self.state.namespace,
                self.state.name,
                self.state.commit[:12],
                self.state.image_warnings[0],
            )
            return False
        self.state.image_warnings = result.warnings
        # Unreadable bundles keep the schedules they had, so those may still exist.
        self.state.image_schedules = bool(
            result.created
            or result.updated
            or result.unchanged
            or any(r.image_scans for r in refs)
            or (had_schedules and any(not r.digest for r in refs))
        )
        self.state.image_sync_failed_poll = -1
        return True

    # --- bundle workflows ---------------------------------------------------------------------

    def _bundle_specs(
        self, wanted: dict[str, BundleRef], spec: GitRepoSpec
    ) -> dict[str, BundleSpec]:
        """Every wanted bundle's spec. Built at each wake (a bundle's report is one), so what
        all bundles share is computed once, and only when there are bundles (as before, a
        GitRepo without any asks no patch)."""
        if not wanted:
            return {}
        switches = self._switches(spec)
        render_secrets = self._render_secrets()
        specs = {}
        for name, ref in wanted.items():
            pin = self.state.pins.get(ref.name) or self.state.pins.get("")
            source_error = ""
            if ref.error and workflow.patched(SOURCE_ERROR_PATCH):
                source_error = f"commit {self.state.commit[:12]} not deployed: {ref.error}"
            specs[name] = BundleSpec(
                gitrepo=self.state.name,
                commit=self._commit_of(ref.name),
                pin=pin_line(pin) if pin is not None else "",
                bundle_digest=ref.digest,
                labels=ref.labels,
                depends_on=ref.depends_on,
                switches=switches,
                gitrepo_paused=spec.paused,
                render_secrets=render_secrets,
                source_error=source_error,
            )
        return specs

    def _switches(self, spec: GitRepoSpec) -> GitRepoSwitches:
        switches = GitRepoSwitches.from_spec(spec)
        if self._namespace_rules and workflow.patched(NAMESPACE_RULES_PATCH):
            switches = switches.model_copy(update=self._namespace_rules)
        return switches

    def _render_secrets(self) -> RenderSecretRefs | None:
        """The secret names bundles deploy with; only GitRepos that set any pay the patch."""
        spec = self.state.spec
        wanted = spec.helm_secret_name or spec.helm_secret_name_for_paths
        if not (wanted or spec.insecure_skip_tls_verify):
            return None
        if not workflow.patched(RENDER_SECRETS_PATCH):
            return None
        return RenderSecretRefs.for_gitrepo(self.state.namespace, spec)

    def _deployable(self) -> list[BundleRef]:
        return [r for r in self.state.bundles.values() if r.digest]

    def _dependency_update(self, bundle: str) -> DependencyStates:
        """A dependency's per-cluster states for its dependents: packed as its report is
        stored (read by each dependent against its own snapshot: a few KB for a dependency
        on 10,000 clusters, not an entry per cluster), or unpacked as before the patch."""
        report = self._report(bundle)
        update = DependencyStates(
            bundle=bundle, states=report.states, commit=self._reported_commit(bundle)
        )
        stored = self.state.reports[bundle]
        if not stored.codes:
            return update
        # Still packed once read: against a list this run has no names of. Its dependents
        # may have them (or, sharded, its parts' keys): it is theirs to read.
        patch = UNREAD_DEPENDENCIES_PATCH if report.codes else PACKED_DEPENDENCIES_PATCH
        if not workflow.patched(patch):
            return update
        return with_packed(update, stored)

    def _refresh(
        self, ref: BundleRef, spec: BundleSpec, clusters: ClusterSnapshot
    ) -> BundleRefresh:
        """A bundle's refresh: its spec, the snapshot and the states of what it depends on
        (packed ones apart: see ``_dependency_update``)."""
        packed = [
            update
            for d in ref.depends_on
            if d.bundle in self.state.reports
            and (update := self._dependency_update(d.bundle)).clusters_key
        ]
        skip = {update.bundle for update in packed}
        return BundleRefresh(
            spec=spec,
            clusters=clusters,
            dependency_states={
                b: states for b, states in self._dependency_states(ref).items() if b not in skip
            },
            dependency_commits={
                d.bundle: self._reported_commit(d.bundle)
                for d in ref.depends_on
                if d.bundle in self.state.reports and d.bundle not in skip
            },
            dependency_packed=packed,
        )

    def _dependency_states(self, ref: BundleRef) -> dict[str, dict[str, BundleState]]:
        return {
            d.bundle: self._report(d.bundle).states
            for d in ref.depends_on
            if d.bundle in self.state.reports
        }

    async def _sync_bundles(self) -> None:
        clusters = self.state.clusters
        authorized = self._authorized_spec()
        if clusters is None or authorized is None:
            return
        wanted = self._effective_refs()
        specs = self._bundle_specs(wanted, authorized)
        key = self._sync_key(clusters, specs)
        retired = sorted(
            set(self.state.reports) - set(self.state.bundles) - set(self.state.retiring)
        )
        if key == self.state.synced_key and not retired:
            return
        once = workflow.patched(SNAPSHOT_ONCE_PER_BATCH_PATCH)
        shared = {"clusters": clusters.model_dump(mode="json")} if once else {}
        starts = [
            BundleStart(
                workflow_id=bundle_workflow_id(self.state.namespace, name),
                signal=REFRESH_SIGNAL,
                signal_arg=self._refresh(ref, specs[name], clusters).model_dump(
                    mode="json", exclude=set(shared)
                ),
                start_input=BundleWorkflowState(
                    namespace=self.state.namespace,
                    bundle=name,
                    gitrepo_workflow_id=workflow.info().workflow_id,
                    max_history_events=self.state.bundle_max_history_events,
                    **self._bundle_switches(),
                ).model_dump(mode="json"),
                static_summary=f"bundle {name} of gitrepo {self.state.namespace}/{self.state.name}",
            )
            for name, ref in sorted(wanted.items())
        ]
        batches = [
            range(index, min(index + SYNC_BATCH, len(starts)))
            for index in range(0, len(starts), SYNC_BATCH)
        ]
        budget = self.state.sync_batch_bytes or SYNC_BATCH_BYTES
        by_size = split_by_size(
            [len(start.model_dump_json()) for start in starts],
            max_count=SYNC_BATCH,
            max_bytes=max(budget - len(json.dumps(shared)), 1) if shared else budget,
        )
        if by_size != batches and workflow.patched(SYNC_BY_SIZE_PATCH):
            batches = by_size
        try:
            for batch in batches:
                await workflow.execute_activity(
                    SYNC_BUNDLES_SHARED if once else SYNC_BUNDLES,
                    SyncBundlesRequest(
                        workflow=BundleWorkflow.__name__,
                        task_queue=workflow.info().task_queue,
                        starts=[starts[index] for index in batch],
                        shared=shared,
                    ),
                    result_type=SyncBundlesResult,
                    start_to_close_timeout=SYNC_BUNDLES_TIMEOUT,
                    retry_policy=CLIENT_RETRY,
                )
        except ActivityError as err:
            self._set_error(f"could not update bundle workflows: {cause_message(err)}")
            return
        self.state.synced_key = key
        for name in retired:
            await self._retire(name)

    def _sync_key(self, clusters: ClusterSnapshot, specs: dict[str, BundleSpec]) -> str:
        """What the bundles were last synced with: the snapshot and every bundle's spec,
        hashed (kept while the snapshot is the same object and the specs are equal, since
        every wake asks and most wakes are reports that change neither)."""
        cached = self._last_sync_key
        if cached is not None and cached[0] is clusters and cached[1] == specs:
            return cached[2]
        # Reachability changes no registry version, so it is part of the key by itself (and
        # only when some cluster is offline, so keys of healthy fleets are as they were). A
        # snapshot by digest has no clusters here: its digest covers their reachability.
        offline = [f"{c.name}={c.offline}" for c in clusters.clusters if c.offline]
        key = hashlib.sha256(
            (
                f"{clusters.version}|"
                + "|".join(f"{n}:{s.model_dump_json()}" for n, s in sorted(specs.items()))
                + (f"|offline:{','.join(offline)}" if offline else "")
                + (f"|clusters:{clusters.clusters_digest}" if clusters.clusters_digest else "")
            ).encode()
        ).hexdigest()
        self._last_sync_key = (clusters, specs, key)
        return key

    def _bundle_switches(self) -> dict[str, float]:
        """The test switches set on this GitRepo that its bundles inherit."""
        switches = {
            "ready_watch_seconds": self.state.ready_watch_seconds,
            "cluster_schedule_to_start_seconds": self.state.cluster_schedule_to_start_seconds,
            "monitor_seconds": self.state.monitor_seconds,
            "retry_seconds": self.state.retry_seconds,
            "shard_size": self.state.bundle_shard_size,
        }
        return {k: v for k, v in switches.items() if v is not None}

    async def _retire(self, name: str) -> None:
        self.state.retiring.append(name)
        handle = workflow.get_external_workflow_handle_for(
            BundleWorkflow.run, bundle_workflow_id(self.state.namespace, name)
        )
        try:
            await handle.signal(BundleWorkflow.retire, RetireRequest())
        except FailureError:
            # Already gone: nothing left to wait for.
            self.state.reports.pop(name, None)
            self.state.retiring.remove(name)

    async def _forward_dependencies(self) -> None:
        """Send each changed bundle's per-cluster states to the bundles that depend on it."""
        changed, self.state.forward = set(self.state.forward), []
        for ref in self._deployable():
            for dep in ref.depends_on:
                if dep.bundle not in changed or dep.bundle not in self.state.reports:
                    continue
                update = self._dependency_update(dep.bundle)
                if self._report(dep.bundle).codes and not update.codes:
                    continue  # packed against a list this run does not know (older runs)
                handle = workflow.get_external_workflow_handle_for(
                    BundleWorkflow.run, bundle_workflow_id(self.state.namespace, ref.name)
                )
                with contextlib.suppress(FailureError):
                    await handle.signal(BundleWorkflow.dependency_states, update)

    def _reported_commit(self, bundle: str) -> str:
        """The commit a dependency's states count for: a pinned bundle's report at its pinned
        commit is what the current commit runs, so its dependents do not wait for ever."""
        commit = self.state.reports[bundle].commit
        return self.state.commit if commit == self._commit_of(bundle) else commit

    async def _delete(self) -> None:
        self.state.bundles = {}
        if self._owns_image_schedules and self.state.image_schedules:
            # No schedule may commit to a repository nobody deploys from any more.
            await self._call_sync_image_schedules([])
        for name in sorted(set(self.state.reports) - set(self.state.retiring)):
            await self._retire(name)
        await workflow.wait_condition(lambda: not self.state.reports)
        registry = workflow.get_external_workflow_handle_for(
            ClusterRegistryWorkflow.run, registry_workflow_id(self.state.namespace)
        )
        with contextlib.suppress(FailureError):
            await registry.signal(
                ClusterRegistryWorkflow.unsubscribe,
                SubscribeRequest(workflow_id=workflow.info().workflow_id),
            )
        self._publish()

    # --- status -------------------------------------------------------------------------------

    def _status(self) -> GitRepoStatus:
        pins = [
            (f"bundle {name}: " if name else "") + pin_line(pin)
            for name, pin in sorted(self.state.pins.items())
        ]
        summary = summarize_gitrepo(
            self.state.bundles.values(),
            # Stored, still packed: the status needs no state per cluster but the tallies.
            self.state.reports,
            commit=self.state.commit,
            error=self.state.error,
            error_since=self.state.error_since,
            stale_is_wait_applied=self._stale_reports_wait,
            git_states=self._git_states,
            restricted=self.state.restricted,
            pinned={
                **self._kept_commits(),
                **{
                    name: pin.commit
                    for name, pin in self.state.pins.items()
                    if name in self.state.pinned_refs
                },
            },
            tally=self._tally,
        )
        return GitRepoStatus(
            namespace=self.state.namespace,
            name=self.state.name,
            repo=self.state.spec.repo,
            branch=self.state.spec.revision or self.state.spec.branch,
            spec_branch=self.state.spec.branch,
            paths=self.state.spec.paths,
            commit=self.state.commit,
            ready_clusters=summary.ready_clusters,
            desired_ready_clusters=summary.desired_ready_clusters,
            ready_bundle_deployments=summary.ready_bundle_deployments,
            state=summary.state,
            message=summary.message or "; ".join(pins),
            error=self.state.error,
            bundles=[
                b.model_copy(update={"since": self.state.bundle_since.get(b.name)})
                for b in summary.bundles
            ],
            warnings=[
                *([self.state.git_warning] if self.state.git_warning else []),
                *self.state.warnings,
                *self.state.image_warnings,
                *self.state.rollback_warnings,
            ],
            error_since=self.state.error_since,
            deployment_counts=summary.deployment_counts,
            conditions=transition(
                self.state.conditions, gitrepo_conditions(summary, self.state.error), workflow.now()
            ),
            pins=pins,
            head=self.state.head or self.state.fetched_commit,
        )

    def _publish(self) -> None:
        status = self._status()
        self.state.conditions = status.conditions
        if status.state is BundleState.READY and status.commit:
            refs = self._effective_refs()
            seen = ReadyVersion(
                commit=status.commit,
                digest=content_digest({n: r.digest for n, r in refs.items()}),
            )
            self.state.ready_versions[""] = note_ready(self.state.ready_versions.get("", []), seen)
        current: tuple[str, ...] = (
            status.commit,
            status.state,
            str(status.ready_clusters),
            str(status.desired_ready_clusters),
        )
        if self._status_attributes:
            current += (status.repo, status.ready_bundle_deployments, status.message)
        if self._published == current:
            return
        self._published = current
        publish_summary(
            commit=status.commit,
            shown=f"commit {status.commit[:12] or 'none'}",
            state=status.state,
            ready=status.ready_clusters,
            desired=status.desired_ready_clusters,
            ready_deployments=status.ready_bundle_deployments,
            message=status.message,
            repo=status.repo,
        )
