"""ClusterRegistryWorkflow: the clusters and cluster groups of one namespace, as an entity workflow.

Changes arrive as updates whose validators reject bad input before it reaches history. Every
change bumps ``version`` and signals each subscriber (GitRepo workflows) the new snapshot of
names, labels and groups, so targeting follows labels, new clusters and removals at once.
Kubeconfigs never pass through here: a cluster record names its secret only.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from flotilla.errors import INVALID_SPEC, one_line
    from flotilla.kubenames import labels_problem, name_problem
    from flotilla.models import GitRepoRestriction, Policy
    from flotilla.restrictions import conflicts
    from workflows.common import continue_as_new_due
    from workflows.registry_models import (
        APPLY_CLUSTER_UPDATE,
        APPLY_GROUP_UPDATE,
        APPLY_RESTRICTION_UPDATE,
        LABEL_CLUSTER_UPDATE,
        REGISTRY_WORKFLOW,
        REMOVE_CLUSTER_UPDATE,
        REMOVE_GROUP_UPDATE,
        REMOVE_RESTRICTION_UPDATE,
        SNAPSHOT_QUERY,
        ApplyClusterRequest,
        ApplyGroupRequest,
        ApplyRestrictionRequest,
        ClusterRecord,
        ClusterSnapshot,
        ClustersSeen,
        ClusterView,
        LabelClusterRequest,
        RegistryChange,
        RegistrySnapshot,
        RegistryState,
        RemoveClusterRequest,
        RemoveGroupRequest,
        RemoveRestrictionRequest,
        SnapshotRequest,
        SubscribeRequest,
    )
    from workflows.visibility import KIND

# The signal every subscriber implements to receive ClusterSnapshot.
CLUSTERS_CHANGED_SIGNAL = "clusters_changed"


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type=INVALID_SPEC, non_retryable=True)


def check_name(name: str, what: str = "cluster") -> None:
    problem = name_problem(name, what)
    if problem:
        raise _invalid(problem)


def check_labels(labels: dict[str, str]) -> None:
    problem = labels_problem(labels)
    if problem:
        raise _invalid(problem)


@workflow.defn(name=REGISTRY_WORKFLOW)
class ClusterRegistryWorkflow:
    """``registry/<namespace>``: clusters and groups; signals subscribers on every change."""

    # Handlers may run before ``run`` starts (an update delivered with the start, or replay),
    # so the state comes from the input here, never assigned later in ``run``.
    @workflow.init
    def __init__(self, state: RegistryState) -> None:
        self.state = state
        self._dirty = False

    @workflow.run
    async def run(self, state: RegistryState) -> None:
        workflow.upsert_search_attributes([KIND.value_set("Registry")])
        while True:
            await workflow.wait_condition(
                lambda: self._dirty or continue_as_new_due(self.state.max_history_events)
            )
            if self._dirty:
                self._dirty = False
                await self._notify(self.state.subscribers)
            if continue_as_new_due(self.state.max_history_events):
                await workflow.wait_condition(workflow.all_handlers_finished)
                if self._dirty:
                    continue
                workflow.continue_as_new(self.state)

    def snapshot_for_subscribers(self) -> ClusterSnapshot:
        return ClusterSnapshot(
            namespace=self.state.namespace,
            version=self.state.version,
            clusters=[
                ClusterView(
                    name=c.name, labels=c.labels, paused=c.paused, agent=c.agent, offline=c.offline
                )
                for c in sorted(self.state.clusters.values(), key=lambda c: c.name)
            ],
            groups=[self.state.groups[n] for n in sorted(self.state.groups)],
            policies=[self.state.policies[n] for n in sorted(self.state.policies)],
            restrictions=[self.state.restrictions[n] for n in sorted(self.state.restrictions)],
        )

    async def _notify(self, subscribers: list[str]) -> None:
        snapshot = self.snapshot_for_subscribers()
        for workflow_id in list(subscribers):
            handle = workflow.get_external_workflow_handle(workflow_id)
            try:
                await handle.signal(CLUSTERS_CHANGED_SIGNAL, snapshot)
            except FailureError:
                # The subscriber is gone (its GitRepo was deleted): stop telling it.
                workflow.logger.info(
                    "registry %s: subscriber %s is gone", snapshot.namespace, workflow_id
                )
                if workflow_id in self.state.subscribers:
                    self.state.subscribers.remove(workflow_id)

    def _changed(self, message: str) -> RegistryChange:
        self.state.version += 1
        self._dirty = True
        workflow.logger.info("registry %s: %s", self.state.namespace, message)
        return RegistryChange(version=self.state.version, message=message)

    # --- clusters -----------------------------------------------------------------------------

    @workflow.update(name=APPLY_CLUSTER_UPDATE)
    def apply_cluster(self, request: ApplyClusterRequest) -> RegistryChange:
        previous = self.state.clusters.get(request.name)
        existed = previous is not None
        self.state.clusters[request.name] = ClusterRecord(
            name=request.name,
            labels=dict(request.labels),
            paused=request.paused,
            kubeconfig_secret=request.kubeconfig_secret,
            agent=request.agent,
            template_values=dict(request.template_values),
            # Seen is when a worker last reached the cluster, not when it was applied.
            last_seen=previous.last_seen if previous else None,
            unreachable_since=previous.unreachable_since if previous else None,
            unreachable=previous.unreachable if previous else "",
        )
        verb = "updated" if existed else "added"
        return self._changed(f"cluster {request.name} {verb}")

    @apply_cluster.validator
    def _validate_apply_cluster(self, request: ApplyClusterRequest) -> None:
        check_name(request.name)
        check_labels(request.labels)
        if not request.kubeconfig_secret and not request.agent:
            raise _invalid(
                f"cluster {request.name}: a kubeconfig secret name is required "
                "(or agent mode, where the cluster's agent holds its own credentials)"
            )

    @workflow.signal
    def clusters_seen(self, request: ClustersSeen) -> None:
        """Probe results from a worker. Last-seen times are not a change: no version, no
        notification. A cluster that stops or starts answering is not a change of targeting
        either (no version, so nothing is re-planned), but subscribers are told at once, so
        its deployments show Offline and rollouts count it unavailable, and it clears by
        itself at the first probe that answers."""
        for name, seen in request.seen.items():
            record = self.state.clusters.get(name)
            if record is None:
                continue
            if record.last_seen is None or seen > record.last_seen:
                record.last_seen = seen
            if record.unreachable:
                workflow.logger.info(
                    "registry %s: cluster %s answers again", self.state.namespace, name
                )
                record.unreachable, record.unreachable_since = "", None
                self._dirty = True
        for name, problem in request.unreachable.items():
            record = self.state.clusters.get(name)
            if record is None or record.unreachable or name in request.seen:
                continue
            workflow.logger.warning(
                "registry %s: cluster %s unreachable: %s", self.state.namespace, name, problem
            )
            record.unreachable = one_line(problem) or "no answer"
            record.unreachable_since = request.probed_at or workflow.now()
            self._dirty = True

    @workflow.update(name=LABEL_CLUSTER_UPDATE)
    def label_cluster(self, request: LabelClusterRequest) -> RegistryChange:
        record = self.state.clusters[request.name]
        labels = {k: v for k, v in record.labels.items() if k not in request.remove_labels}
        labels.update(request.set_labels)
        self.state.clusters[request.name] = record.model_copy(update={"labels": labels})
        return self._changed(f"cluster {request.name} labels set to {labels}")

    @label_cluster.validator
    def _validate_label_cluster(self, request: LabelClusterRequest) -> None:
        self._require_cluster(request.name)
        check_labels(request.set_labels)

    @workflow.update(name=REMOVE_CLUSTER_UPDATE)
    def remove_cluster(self, request: RemoveClusterRequest) -> RegistryChange:
        del self.state.clusters[request.name]
        return self._changed(f"cluster {request.name} removed")

    @remove_cluster.validator
    def _validate_remove_cluster(self, request: RemoveClusterRequest) -> None:
        self._require_cluster(request.name)

    def _require_cluster(self, name: str) -> None:
        if name not in self.state.clusters:
            known = ", ".join(sorted(self.state.clusters)) or "none"
            raise _invalid(
                f"cluster {name!r} is not registered in namespace "
                f"{self.state.namespace!r} (registered: {known})"
            )

    # --- groups -------------------------------------------------------------------------------

    @workflow.update(name=APPLY_GROUP_UPDATE)
    def apply_group(self, request: ApplyGroupRequest) -> RegistryChange:
        name = request.group.metadata.name
        existed = name in self.state.groups
        self.state.groups[name] = request.group
        return self._changed(f"cluster group {name} {'updated' if existed else 'added'}")

    @apply_group.validator
    def _validate_apply_group(self, request: ApplyGroupRequest) -> None:
        check_name(request.group.metadata.name, "cluster group")
        if request.group.metadata.namespace != self.state.namespace:
            raise _invalid(
                f"cluster group {request.group.metadata.name}: namespace "
                f"{request.group.metadata.namespace!r} is not this registry's "
                f"{self.state.namespace!r}"
            )

    @workflow.update(name=REMOVE_GROUP_UPDATE)
    def remove_group(self, request: RemoveGroupRequest) -> RegistryChange:
        del self.state.groups[request.name]
        return self._changed(f"cluster group {request.name} removed")

    @remove_group.validator
    def _validate_remove_group(self, request: RemoveGroupRequest) -> None:
        if request.name not in self.state.groups:
            raise _invalid(
                f"cluster group {request.name!r} does not exist in namespace "
                f"{self.state.namespace!r}"
            )

    # --- restrictions -------------------------------------------------------------------------

    def _kind_store(self, kind: str) -> dict[str, Policy] | dict[str, GitRepoRestriction]:
        return self.state.policies if kind == "Policy" else self.state.restrictions

    @workflow.update(name=APPLY_RESTRICTION_UPDATE)
    def apply_restriction(self, request: ApplyRestrictionRequest) -> RegistryChange:
        obj = request.restriction
        existed = obj.metadata.name in self._kind_store(obj.kind)
        if isinstance(obj, Policy):
            self.state.policies[obj.metadata.name] = obj
        else:
            self.state.restrictions[obj.metadata.name] = obj
        verb = "updated" if existed else "added"
        return self._changed(f"{obj.kind.lower()} {obj.metadata.name} {verb}")

    @apply_restriction.validator
    def _validate_apply_restriction(self, request: ApplyRestrictionRequest) -> None:
        obj = request.restriction
        check_name(obj.metadata.name, obj.kind)
        if obj.metadata.namespace != self.state.namespace:
            raise _invalid(
                f"{obj.kind} {obj.metadata.name}: namespace {obj.metadata.namespace!r} is not "
                f"this registry's {self.state.namespace!r}"
            )
        problem = conflicts(
            obj, list(self.state.restrictions.values()), list(self.state.policies.values())
        )
        if problem:
            raise _invalid(problem)

    @workflow.update(name=REMOVE_RESTRICTION_UPDATE)
    def remove_restriction(self, request: RemoveRestrictionRequest) -> RegistryChange:
        del self._kind_store(request.kind)[request.name]
        return self._changed(f"{request.kind.lower()} {request.name} removed")

    @remove_restriction.validator
    def _validate_remove_restriction(self, request: RemoveRestrictionRequest) -> None:
        if request.name not in self._kind_store(request.kind):
            raise _invalid(
                f"{request.kind} {request.name!r} does not exist in namespace "
                f"{self.state.namespace!r}"
            )

    # --- subscribers --------------------------------------------------------------------------

    @workflow.signal
    async def subscribe(self, request: SubscribeRequest) -> None:
        if request.workflow_id not in self.state.subscribers:
            self.state.subscribers.append(request.workflow_id)
        # A new subscriber gets the current snapshot at once, whatever changed before.
        await self._notify([request.workflow_id])

    @workflow.signal
    def unsubscribe(self, request: SubscribeRequest) -> None:
        if request.workflow_id in self.state.subscribers:
            self.state.subscribers.remove(request.workflow_id)

    @workflow.query(name=SNAPSHOT_QUERY)
    def snapshot(self, request: SnapshotRequest) -> RegistrySnapshot:
        return RegistrySnapshot(
            namespace=self.state.namespace,
            version=self.state.version,
            clusters=sorted(self.state.clusters.values(), key=lambda c: c.name),
            groups=[self.state.groups[n] for n in sorted(self.state.groups)],
            subscribers=list(self.state.subscribers),
            policies=[self.state.policies[n] for n in sorted(self.state.policies)],
            restrictions=[self.state.restrictions[n] for n in sorted(self.state.restrictions)],
        )
