"""HelmOpWorkflow: keep one HelmOp's chart version chosen and its bundle deployed.

``helmop/<namespace>/<name>`` chooses the chart version ``helm.version`` allows (an activity
lists what the Helm repository or OCI registry offers and stores the bundle that version
becomes), then hands that bundle to an ordinary bundle workflow (``bundle/<ns>/<name>``), which
targets, customizes and rolls it out partition by partition like any GitRepo's bundle, and
reports back here. When ``pollingInterval`` is set and the version is a constraint, a Temporal
Schedule (``helmop-poll/<ns>/<name>``) starts ``HelmOpPollWorkflow`` every interval; each poll
signals what it found, and a new matching version becomes a new bundle version. A source that
fails (down, refused, nothing matches) is one status line; the version chosen before stays.
"""

from __future__ import annotations

import contextlib
import hashlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.contentgc_models import CONTENT_REFS_QUERY, ContentRefs, ContentRefsRequest
    from activities.gitops_models import (
        SYNC_BUNDLES,
        BundleStart,
        DependencyRef,
        SyncBundlesRequest,
        SyncBundlesResult,
    )
    from activities.helmops_models import (
        BUNDLE_STATES,
        HELMOP_POLL_WORKFLOW,
        RESOLVE_HELMOP,
        SELECT_BUNDLES,
        SYNC_HELMOP_SCHEDULE,
        BundleStatesRequest,
        BundleStatesResult,
        HelmOpPollInput,
        ResolveRequest,
        ResolveResult,
        SelectBundlesRequest,
        SelectBundlesResult,
        SyncScheduleRequest,
        SyncScheduleResult,
    )
    from flotilla.clusterstates import cluster_index, expand_report
    from flotilla.errors import (
        INVALID_SPEC,
        NON_RETRYABLE_REGISTRY_ERRORS,
        FlotillaError,
        SpecError,
        cause_message,
    )
    from flotilla.helmops import (
        chart_source,
        check_helmop,
        helmop_conditions,
        helmop_dependencies,
        helmop_selectors,
        helmop_targets,
        polling_seconds,
        render_secret_refs,
        summarize_helmop,
        unselected,
        wanted_version,
    )
    from flotilla.ids import bundle_workflow_id, helmop_schedule_id, registry_workflow_id
    from flotilla.models import HelmOp, HelmOpSpec, ObjectMeta
    from flotilla.status import BundleReport, BundleState, transition
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
        SCHEDULE_SYNC_RETRY,
        SCHEDULE_SYNC_TIMEOUT,
        SYNC_BUNDLES_TIMEOUT,
        continue_as_new_due,
    )
    from workflows.helmop_models import (
        CHART_POLLED_SIGNAL,
        HELMOP_DELETE_UPDATE,
        HELMOP_SPEC_QUERY,
        HELMOP_STATUS_QUERY,
        HELMOP_SYNC_NOW_UPDATE,
        HELMOP_UPDATE_SPEC_UPDATE,
        HELMOP_WORKFLOW,
        ChartPolled,
        HelmOpDeleteRequest,
        HelmOpDeleteResult,
        HelmOpState,
        HelmOpStatus,
        HelmOpStatusRequest,
        HelmOpSyncRequest,
        HelmOpSyncResult,
        HelmOpUpdateRequest,
        HelmOpUpdateResult,
    )
    from workflows.registry import CLUSTERS_CHANGED_SIGNAL, ClusterRegistryWorkflow
    from workflows.registry_models import ClusterSnapshot, SubscribeRequest
    from workflows.visibility import (
        GITREPO,
        KIND,
        REPO,
        publish_summary,
    )

# A chart source: a few quick tries inside one resolution; the next poll (or sync) is the
# real retry, so a source that is down shows in the status within seconds.
CHART_SOURCE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=3,
    non_retryable_error_types=[*NON_RETRYABLE_REGISTRY_ERRORS, INVALID_SPEC, SpecError.type],
)
RESOLVE_TIMEOUT = timedelta(minutes=2)
# While the bundle waits for a dependency somewhere, the dependencies' states are read this
# often (no owner forwards them across GitRepos and HelmOps).
DEPENDENCY_POLL = timedelta(seconds=10)
QUERY_ACTIVITY_TIMEOUT = timedelta(minutes=1)
# dependsOn by selector: the HelmOp reads which bundles its selectors select (their labels)
# when its spec changes and while its bundle waits; a selector that selects nothing holds the
# bundle back (it would deploy without waiting). Asked only by HelmOps with a selector.
SELECTOR_PATCH = "helmop-depends-on-selector"


def spec_key(spec: HelmOpSpec) -> str:
    """What a poll was asked about: a poll of an older spec must not undo a newer one. Fields
    left at their defaults are left out, so a field added to the model later (a partition's
    gates, say) does not change the key of a spec that does not use it."""
    return hashlib.sha256(spec.model_dump_json(exclude_defaults=True).encode()).hexdigest()


async def resolve(namespace: str, name: str, spec: HelmOpSpec) -> ChartPolled:
    """One resolution: the chosen version and its bundle, or the one-line error."""
    try:
        result: ResolveResult = await workflow.execute_activity(
            RESOLVE_HELMOP,
            ResolveRequest(namespace=namespace, name=name, spec=spec),
            result_type=ResolveResult,
            start_to_close_timeout=RESOLVE_TIMEOUT,
            retry_policy=CHART_SOURCE_RETRY,
        )
    except ActivityError as err:
        return ChartPolled(error=cause_message(err), spec_key=spec_key(spec))
    return ChartPolled(version=result.version, digest=result.digest, spec_key=spec_key(spec))


@workflow.defn(name=HELMOP_WORKFLOW)
class HelmOpWorkflow:
    """``helmop/<namespace>/<name>``: chooses the chart version and keeps its bundle deployed."""

    @workflow.init
    def __init__(self, state: HelmOpState) -> None:
        self.state = state
        self._wake = False
        # A continued run already holds its version; a new one chooses it first.
        self._resolve_now = not state.digest
        self._retired = False
        self._published: tuple[str, ...] | None = None

    @workflow.run
    async def run(self, state: HelmOpState) -> None:
        workflow.upsert_search_attributes(
            [
                KIND.value_set("HelmOp"),
                GITREPO.value_set(self.state.name),
                REPO.value_set(self._source_url()),
            ]
        )
        await self._subscribe()
        while not self.state.deleting:
            if self._resolve_now:
                self._resolve_now = False
                self._take(await resolve(self.state.namespace, self.state.name, self.state.spec))
                self.state.resolves += 1
            await self._select_dependencies()
            await self._sync_bundle()
            await self._forward_dependencies()
            await self._sync_schedule()
            self._publish()
            if continue_as_new_due(self.state.max_history_events):
                await workflow.wait_condition(
                    lambda: workflow.all_handlers_finished() or self._resolve_now
                )
                if not self._resolve_now:
                    workflow.continue_as_new(self.state)
                continue
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._wake or self.state.deleting,
                    timeout=DEPENDENCY_POLL
                    if self._waiting_for_dependency() or self.state.selection_error
                    else None,
                )
            self._wake = False
        await self._delete()

    def _warn(self, message: str) -> None:
        workflow.logger.warning("helmop %s/%s: %s", self.state.namespace, self.state.name, message)

    def _source_url(self) -> str:
        helm = self.state.spec.helm
        return (helm.repo or helm.chart or "") if helm else ""

    # --- handlers -----------------------------------------------------------------------------

    @workflow.signal(name=CLUSTERS_CHANGED_SIGNAL)
    def clusters_changed(self, snapshot: ClusterSnapshot) -> None:
        if self.state.clusters is None or snapshot.version >= self.state.clusters.version:
            self.state.clusters = snapshot
            self._wake = True

    @workflow.signal(name=BUNDLE_REPORT_SIGNAL)
    def bundle_report(self, report: BundleReport) -> None:
        if report.retired:
            self._retired = True
            self.state.report = None
        elif report.bundle == self.state.name:
            # One bundle: its states are kept unpacked, as before reports were packed.
            clusters = self.state.clusters
            names = cluster_index(c.name for c in clusters.clusters) if clusters else None
            self.state.report = expand_report(report, names)
        self._wake = True

    @workflow.signal(name=CHART_POLLED_SIGNAL)
    def chart_polled(self, polled: ChartPolled) -> None:
        self._take(polled)
        self._wake = True

    @workflow.update(name=HELMOP_SYNC_NOW_UPDATE)
    async def sync_now(self, request: HelmOpSyncRequest) -> HelmOpSyncResult:
        resolves = self.state.resolves
        self._resolve_now = True
        self._wake = True
        await workflow.wait_condition(lambda: self.state.resolves > resolves or self.state.deleting)
        return HelmOpSyncResult(version=self.state.version, error=self.state.error)

    @workflow.update(name=HELMOP_UPDATE_SPEC_UPDATE)
    def update_spec(self, request: HelmOpUpdateRequest) -> HelmOpUpdateResult:
        if request.spec != self.state.spec:
            self.state.spec = request.spec
            self._resolve_now = True
        self._wake = True
        return HelmOpUpdateResult(
            message=f"helmop {self.state.namespace}/{self.state.name} updated"
        )

    @update_spec.validator
    def _validate_update_spec(self, request: HelmOpUpdateRequest) -> None:
        helmop = HelmOp(
            metadata=ObjectMeta(name=self.state.name, namespace=self.state.namespace),
            spec=request.spec,
        )
        try:
            check_helmop(helmop, file=f"helmop {self.state.namespace}/{self.state.name}")
        except FlotillaError as err:
            raise ApplicationError(str(err), type=INVALID_SPEC, non_retryable=True) from None
        if self.state.deleting:
            raise ApplicationError(
                f"helmop {self.state.namespace}/{self.state.name} is being deleted",
                type=INVALID_SPEC,
                non_retryable=True,
            )

    @workflow.update(name=HELMOP_DELETE_UPDATE)
    def delete(self, request: HelmOpDeleteRequest) -> HelmOpDeleteResult:
        self.state.deleting = True
        return HelmOpDeleteResult(
            message=f"helmop {self.state.namespace}/{self.state.name} deleted"
        )

    @workflow.query(name=HELMOP_STATUS_QUERY)
    def status(self, request: HelmOpStatusRequest) -> HelmOpStatus:
        return self._status()

    @workflow.query(name=HELMOP_SPEC_QUERY)
    def spec(self, request: HelmOpStatusRequest) -> HelmOpSpec:
        """The spec as last applied (``flotilla diff helmop`` resolves and diffs it)."""
        return self.state.spec

    @workflow.query(name=CONTENT_REFS_QUERY)
    def content_refs(self, request: ContentRefsRequest) -> ContentRefs:
        clusters = self.state.clusters.clusters_digest if self.state.clusters else ""
        return ContentRefs(digests=sorted({self.state.digest, clusters} - {""}))

    # --- the version --------------------------------------------------------------------------

    def _take(self, polled: ChartPolled) -> None:
        """Keep what a resolution found; an error keeps the version chosen before."""
        if polled.spec_key != spec_key(self.state.spec):
            return  # asked about a spec this HelmOp no longer has (a new one is resolved)
        now = workflow.now()
        self.state.polled_at = now
        if polled.error:
            if polled.error != self.state.error:
                self._warn(polled.error)
            if not self.state.error:
                self.state.error_since = now
            self.state.error = polled.error
            return
        self.state.error, self.state.error_since = "", None
        if polled.version != self.state.version or not self.state.digest:
            self.state.version_seen_at = now
            workflow.logger.info(
                "helmop %s/%s: chart version %s chosen",
                self.state.namespace,
                self.state.name,
                polled.version or "(tarball)",
            )
        self.state.version = polled.version
        self.state.digest = polled.digest
        self.state.resolved_spec = self.state.spec

    # --- the bundle ---------------------------------------------------------------------------

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
            self.state.error = (
                f"no cluster registry for namespace {self.state.namespace!r}: "
                "register a cluster with `flotilla cluster add`"
            )

    def _commit(self) -> str:
        """What the bundle calls the version it deploys (a tarball has no version)."""
        return self.state.version or self.state.digest[:12]

    def _bundle_spec(self) -> BundleSpec:
        spec = self.state.resolved_spec or self.state.spec
        return BundleSpec(
            gitrepo=self.state.name,
            commit=self._commit(),
            bundle_digest=self.state.digest,
            labels=spec.labels or {},
            depends_on=[
                DependencyRef(bundle=d.bundle, accepted_states=[str(s) for s in d.accepted_states])
                for d in helmop_dependencies(spec, self.state.selected)
            ],
            switches=GitRepoSwitches(targets=helmop_targets(spec)),
            render_secrets=render_secret_refs(self.state.namespace, spec),
            owner_workflow_id=workflow.info().workflow_id,
        )

    async def _select_dependencies(self) -> None:
        """Which bundles the dependsOn selectors select now: read when the spec changed, while
        one selects nothing, and while the bundle waits (a newly labelled bundle joins)."""
        spec = self.state.resolved_spec or self.state.spec
        selectors = helmop_selectors(spec)
        if not selectors:
            self.state.selected, self.state.selection_error = [], ""
            return
        key = spec_key(spec)
        due = (
            key != self.state.selected_for
            or bool(self.state.selection_error)
            or self._waiting_for_dependency()
        )
        if not due or not workflow.patched(SELECTOR_PATCH):
            return
        try:
            found: SelectBundlesResult = await workflow.execute_activity(
                SELECT_BUNDLES,
                SelectBundlesRequest(
                    namespace=self.state.namespace, selectors=selectors, exclude=self.state.name
                ),
                result_type=SelectBundlesResult,
                start_to_close_timeout=QUERY_ACTIVITY_TIMEOUT,
                retry_policy=CLIENT_RETRY,
            )
        except ActivityError as err:
            self._warn(f"dependsOn selectors not read: {cause_message(err)}")
            return
        self.state.selected = found.selected
        self.state.selected_for = key
        error = unselected(spec, found.selected)
        if error and error != self.state.selection_error:
            self._warn(error)
        self.state.selection_error = error

    async def _sync_bundle(self) -> None:
        clusters = self.state.clusters
        if clusters is None or not self.state.digest or self.state.selection_error:
            return
        spec = self._bundle_spec()
        offline = [f"{c.name}={c.offline}" for c in clusters.clusters if c.offline]
        if clusters.clusters_digest:  # by digest: no clusters here, the digest covers them
            offline.append(clusters.clusters_digest)
        key = hashlib.sha256(
            f"{clusters.version}|{spec.model_dump_json()}|{','.join(offline)}".encode()
        ).hexdigest()
        if key == self.state.synced_key:
            return
        switches = {
            k: v
            for k, v in (
                ("retry_seconds", self.state.retry_seconds),
                ("monitor_seconds", self.state.monitor_seconds),
            )
            if v is not None
        }
        start = BundleStart(
            workflow_id=bundle_workflow_id(self.state.namespace, self.state.name),
            signal=REFRESH_SIGNAL,
            signal_arg=BundleRefresh(spec=spec, clusters=clusters).model_dump(mode="json"),
            start_input=BundleWorkflowState(
                namespace=self.state.namespace,
                bundle=self.state.name,
                gitrepo_workflow_id=workflow.info().workflow_id,
                **switches,
            ).model_dump(mode="json"),
            static_summary=f"bundle of helmop {self.state.namespace}/{self.state.name}",
        )
        try:
            await workflow.execute_activity(
                SYNC_BUNDLES,
                SyncBundlesRequest(
                    workflow=BundleWorkflow.__name__,
                    task_queue=workflow.info().task_queue,
                    starts=[start],
                ),
                result_type=SyncBundlesResult,
                start_to_close_timeout=SYNC_BUNDLES_TIMEOUT,
                retry_policy=CLIENT_RETRY,
            )
        except ActivityError as err:
            self._warn(f"bundle workflow not updated: {cause_message(err)}")
            return
        self.state.synced_key = key

    def _waiting_for_dependency(self) -> bool:
        report = self.state.report
        spec = self.state.resolved_spec or self.state.spec
        return bool(spec.depends_on) and (
            report is None
            or bool(report.counts.get(BundleState.WAITING_FOR_DEPENDENCY))
            or any(s == BundleState.WAITING_FOR_DEPENDENCY for s in report.states.values())
        )

    async def _forward_dependencies(self) -> None:
        """While the bundle waits for a dependency, read the dependencies' states and send
        the bundle those that changed (a GitRepo forwards its own bundles' states the same
        way; these bundles may belong to anyone in the namespace)."""
        if not self.state.digest or not self._waiting_for_dependency():
            return
        spec = self.state.resolved_spec or self.state.spec
        names = [d.bundle for d in helmop_dependencies(spec, self.state.selected)]
        try:
            found: BundleStatesResult = await workflow.execute_activity(
                BUNDLE_STATES,
                BundleStatesRequest(namespace=self.state.namespace, bundles=names),
                result_type=BundleStatesResult,
                start_to_close_timeout=QUERY_ACTIVITY_TIMEOUT,
                retry_policy=CLIENT_RETRY,
            )
        except ActivityError as err:
            self._warn(f"dependency states not read: {cause_message(err)}")
            return
        handle = workflow.get_external_workflow_handle_for(
            BundleWorkflow.run, bundle_workflow_id(self.state.namespace, self.state.name)
        )
        for bundle, raw in sorted(found.states.items()):
            states = {cluster: BundleState(state) for cluster, state in raw.items()}
            if self.state.dependency_states.get(bundle) == states:
                continue
            with contextlib.suppress(FailureError):
                await handle.signal(
                    BundleWorkflow.dependency_states, DependencyStates(bundle=bundle, states=states)
                )
                self.state.dependency_states[bundle] = states

    # --- the schedule -------------------------------------------------------------------------

    async def _sync_schedule(self, *, deleting: bool = False) -> None:
        """The polling schedule follows the spec: created, changed, or deleted (interval 0)."""
        spec = self.state.spec
        interval = 0.0 if deleting else polling_seconds(spec)
        queue = workflow.info().task_queue
        key = f"{interval}|{queue}|{spec_key(spec)}" if interval else ""
        if key == self.state.schedule_key:
            return
        info = workflow.info()
        try:
            await workflow.execute_activity(
                SYNC_HELMOP_SCHEDULE,
                SyncScheduleRequest(
                    schedule_id=helmop_schedule_id(self.state.namespace, self.state.name),
                    poll=HelmOpPollInput(
                        namespace=self.state.namespace,
                        name=self.state.name,
                        spec=spec,
                        helmop_workflow_id=info.workflow_id,
                    ),
                    interval_seconds=interval,
                    task_queue=queue,
                ),
                result_type=SyncScheduleResult,
                start_to_close_timeout=SCHEDULE_SYNC_TIMEOUT,
                retry_policy=SCHEDULE_SYNC_RETRY,
            )
        except ActivityError as err:
            self._warn(f"polling schedule not synced: {cause_message(err)}")
            return
        self.state.schedule_key = key

    # --- deletion -----------------------------------------------------------------------------

    async def _delete(self) -> None:
        await self._sync_schedule(deleting=True)
        handle = workflow.get_external_workflow_handle_for(
            BundleWorkflow.run, bundle_workflow_id(self.state.namespace, self.state.name)
        )
        try:
            await handle.signal(BundleWorkflow.retire, RetireRequest(reason="helmop deleted"))
            await workflow.wait_condition(lambda: self._retired)
        except FailureError:
            pass  # never started, or already gone
        self.state.report = None
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

    def _status(self) -> HelmOpStatus:
        spec = self.state.spec
        summary = summarize_helmop(
            self.state.name,
            self.state.report,
            version=self.state.version,
            commit=self._commit() if self.state.digest else "",
            error=self.state.error,
            error_since=self.state.error_since,
        )
        source = self._source_url()
        with contextlib.suppress(FlotillaError):
            source = chart_source(spec, file="").url
        state, message = summary.state, summary.message
        if self.state.selection_error and not self.state.error:
            state, message = BundleState.WAITING_FOR_DEPENDENCY, self.state.selection_error
        return HelmOpStatus(
            namespace=self.state.namespace,
            name=self.state.name,
            repo=source,
            chart=(spec.helm.chart or "") if spec.helm else "",
            wanted=wanted_version(spec),
            version=self.state.version,
            version_seen_at=self.state.version_seen_at,
            polled_at=self.state.polled_at,
            polling_interval=str(spec.polling_interval or ""),
            ready_clusters=summary.ready_clusters,
            desired_ready_clusters=summary.desired_ready_clusters,
            ready_bundle_deployments=summary.ready_bundle_deployments,
            state=state,
            message=message,
            error=self.state.error,
            error_since=self.state.error_since,
            bundles=summary.bundles,
            conditions=transition(
                self.state.conditions,
                helmop_conditions(summary, self.state.error),
                workflow.now(),
            ),
        )

    def _publish(self) -> None:
        status = self._status()
        self.state.conditions = status.conditions
        current = (
            status.version,
            status.state,
            str(status.ready_clusters),
            str(status.desired_ready_clusters),
            status.ready_bundle_deployments,
            status.message,
        )
        if self._published == current:
            return
        self._published = current
        publish_summary(
            commit=status.version,
            shown=f"version {status.version or 'none'}",
            state=status.state,
            ready=status.ready_clusters,
            desired=status.desired_ready_clusters,
            ready_deployments=status.ready_bundle_deployments,
            message=status.message,
        )


# Outside the sandbox, as ImagePolicyWorkflow: a schedule starts one run per poll, and the
# sandbox would rebuild this module for each. It imports no I/O and reads no clock.
@workflow.defn(name=HELMOP_POLL_WORKFLOW, sandboxed=False)
class HelmOpPollWorkflow:
    """``helmop-poll/<ns>/<name>-<time>``: one scheduled look at the chart's versions."""

    @workflow.run
    async def run(self, poll: HelmOpPollInput) -> ChartPolled:
        workflow.upsert_search_attributes(
            [KIND.value_set("HelmOpPoll"), GITREPO.value_set(poll.name)]
        )
        polled = await resolve(poll.namespace, poll.name, poll.spec)
        handle = workflow.get_external_workflow_handle(poll.helmop_workflow_id)
        with contextlib.suppress(FailureError):
            await handle.signal(CHART_POLLED_SIGNAL, polled)
        return polled
