"""ClusterRegistryWorkflow: the clusters and cluster groups of one namespace, as an entity workflow.

Changes arrive as updates whose validators reject bad input before it reaches history. Every
change bumps ``version`` and signals each subscriber (GitRepo workflows) the new snapshot of
names, labels and groups, so targeting follows labels, new clusters and removals at once.
Kubeconfigs never pass through here: a cluster record names its secret only.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.gitops_models import STORE_SNAPSHOT, StoredSnapshot, StoreSnapshotRequest
    from flotilla.agents import (
        TokenFacts,
        heartbeat_deadline,
        offline_reason,
        registration_refusal,
    )
    from flotilla.errors import INVALID_SPEC, SpecError, one_line
    from flotilla.ids import registry_workflow_id
    from flotilla.kubenames import labels_problem, name_problem
    from flotilla.models import GitRepoRestriction, Policy, window_of
    from flotilla.notifications import cluster_offline_event
    from flotilla.restrictions import conflicts
    from flotilla.snapshots import (
        INLINE_SNAPSHOT_LIMIT,
        snapshot_delta,
        snapshot_header,
        too_big_inline,
    )
    from flotilla.windows import check_window
    from workflows.common import (
        SNAPSHOT_RETRY,
        SNAPSHOT_TIMEOUT,
        continue_as_new_due,
        send_notification_events,
    )
    from workflows.registry_models import (
        ADOPT_CLUSTER_SIGNAL,
        AGENT_HEARTBEAT_SIGNAL,
        APPLY_CLUSTER_UPDATE,
        APPLY_GROUP_UPDATE,
        APPLY_RESTRICTION_UPDATE,
        APPLY_SCHEDULE_UPDATE,
        CREATE_TOKEN_UPDATE,
        DELETE_TOKEN_UPDATE,
        LABEL_CLUSTER_UPDATE,
        MOVE_CLUSTER_UPDATE,
        MOVE_REFUSED_SIGNAL,
        NOTIFICATIONS_CONFIGURED_UPDATE,
        REGISTER_AGENT_UPDATE,
        REGISTRY_WORKFLOW,
        REMOVE_CLUSTER_UPDATE,
        REMOVE_GROUP_UPDATE,
        REMOVE_RESTRICTION_UPDATE,
        REMOVE_SCHEDULE_UPDATE,
        SNAPSHOT_QUERY,
        TOKENS_QUERY,
        AdoptClusterRequest,
        AgentHeartbeat,
        ApplyClusterRequest,
        ApplyGroupRequest,
        ApplyRestrictionRequest,
        ApplyScheduleRequest,
        ClusterRecord,
        ClusterSnapshot,
        ClustersSeen,
        ClusterView,
        CreateTokenRequest,
        DeleteTokenRequest,
        LabelClusterRequest,
        MoveClusterRequest,
        MoveRefused,
        NotificationsConfiguredRequest,
        RegisterAgentRequest,
        RegistryChange,
        RegistrySnapshot,
        RegistryState,
        RemoveClusterRequest,
        RemoveGroupRequest,
        RemoveRestrictionRequest,
        RemoveScheduleRequest,
        SnapshotRequest,
        SubscribeRequest,
        TokenInfo,
        TokenRecord,
        TokensRequest,
    )
    from workflows.visibility import KIND

# The signal every subscriber implements to receive ClusterSnapshot.
CLUSTERS_CHANGED_SIGNAL = "clusters_changed"
# Agent clusters whose heartbeats stop turn Offline on a timer (a new command: the registry
# histories recorded before agents never had a heartbeat, so never reach it).
AGENT_DEADLINES_PATCH = "registry-agent-heartbeat-deadlines"
# A cluster that goes offline is told to ``notifications/<ns>`` once, from here, rather than
# by every GitRepo for every bundle on it (a new signal; only namespaces with a notification
# config, which older histories never had, reach it).
CLUSTER_OFFLINE_PATCH = "closers-registry-sends-cluster-offline"
# A handed-over cluster whose name is registered here already is refused and sent back (a
# new signal, only on a name clash, which the CLI's check made a race no history has).
ADOPTION_REFUSES_PATCH = "registry-adoption-keeps-existing-cluster"
# A refusal can arrive before the move that caused it has finished here: the other registry
# answers the handover signal at once, and a workflow task delivers signals before it resumes
# the update that sent it, so the moving cluster was still registered and the refusal was
# taken for a new cluster of that name ("that one stays") and then the move forgot the
# cluster: lost (seen in the full suite). Such a refusal is now kept and applied when the move
# finishes. Asked only when a refusal arrives during a move.
REFUSAL_DURING_MOVE_PATCH = "registry-refusal-during-move"
# An agent cluster is Offline until its agent's first beat (``ClusterRecord.offline``), so that
# beat is a change subscribers are told of at once: it releases the cluster's held work.
FIRST_BEAT_PATCH = "f13-agent-first-beat-releases"
# A snapshot bigger than the inline limit goes to the content store (a new activity) and
# subscribers get its header (flotilla.snapshots). Asked only for such a snapshot, so the
# runs of smaller registries carry no marker.
SNAPSHOT_BY_DIGEST_PATCH = "digest-registry-snapshot-by-digest"
# The header names the key of the stored clusters' sorted names (``store_snapshot`` returns
# it), so GitRepos read the per-cluster states of sharded bundles by position. Asked only
# when a store returns a key, so histories of older workers replay as they ran.
SNAPSHOT_KEY_PATCH = "registry-snapshot-names-key"


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
        # The heartbeat deadline the loop's timer waits for, and whether a beat needs an
        # earlier one (a first beat, or a shorter interval).
        self._armed: datetime | None = None
        self._rearm = False
        # Clusters whose move to another workspace is under way (its handover not yet sent).
        self._moving: set[str] = set()
        # Refusals that came back while their move was still in flight (by cluster name).
        self._refused_during_move: dict[str, MoveRefused] = {}
        # The snapshot this run last stored by digest and its header: the next one is stored
        # as a change of it (not state: after continue-as-new the first one is stored whole).
        self._stored: tuple[ClusterSnapshot, ClusterSnapshot] | None = None

    @workflow.run
    async def run(self, state: RegistryState) -> None:
        workflow.upsert_search_attributes([KIND.value_set("Registry")])
        while True:
            await self._wait_for_change()
            self._mark_silent_agents()
            if self._dirty:
                self._dirty = False
                await self._notify(self.state.subscribers)
            await self._send_cluster_events()
            if continue_as_new_due(self.state.max_history_events):
                await workflow.wait_condition(workflow.all_handlers_finished)
                if self._dirty:
                    continue
                workflow.continue_as_new(self.state)

    async def _wait_for_change(self) -> None:
        """Until something changed, continue-as-new is due, or an agent's heartbeat is due."""

        def woken() -> bool:
            return self._dirty or self._rearm or continue_as_new_due(self.state.max_history_events)

        self._rearm = False
        deadline = self._next_agent_deadline()
        if deadline is None or not workflow.patched(AGENT_DEADLINES_PATCH):
            await workflow.wait_condition(woken)
            return
        self._armed = deadline
        wait = max(deadline - workflow.now(), timedelta(milliseconds=1))
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(woken, timeout=wait)
        self._armed = None

    def _next_agent_deadline(self) -> datetime | None:
        deadlines = [
            d
            for c in self.state.clusters.values()
            if c.agent and not c.unreachable
            for d in [heartbeat_deadline(c.last_seen, c.heartbeat_seconds)]
            if d is not None
        ]
        return min(deadlines, default=None)

    def _mark_silent_agents(self) -> None:
        """Agent clusters not heard from within their deadline turn Offline (subscribers are
        told: their deployments wait and count as unavailable)."""
        now = workflow.now()
        for record in self.state.clusters.values():
            if not record.agent or record.unreachable:
                continue
            deadline = heartbeat_deadline(record.last_seen, record.heartbeat_seconds)
            if deadline is not None and now >= deadline:
                record.unreachable = offline_reason(record.heartbeat_seconds)
                record.unreachable_since = record.last_seen
                self._went_offline(record)
                workflow.logger.warning(
                    "registry %s: cluster %s offline: %s",
                    self.state.namespace,
                    record.name,
                    record.unreachable,
                )
                self._dirty = True

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
            notifications=self.state.notifications,
            schedules=[self.state.schedules[n] for n in sorted(self.state.schedules)],
        )

    async def _outgoing(self, snapshot: ClusterSnapshot) -> ClusterSnapshot:
        """The snapshot as subscribers get it: whole while small, else stored by digest and
        its header sent (whole again if the store cannot take it)."""
        limit = self.state.inline_snapshot_limit
        limit = INLINE_SNAPSHOT_LIMIT if limit is None else limit
        if not too_big_inline(snapshot, limit) or not workflow.patched(SNAPSHOT_BY_DIGEST_PATCH):
            return snapshot
        while True:
            before, header = self._stored or (None, None)
            if before == snapshot and header is not None:
                return header  # a new subscriber: the snapshot stored last is current
            base = header.clusters_digest if header is not None else ""
            try:
                stored = await workflow.execute_activity(
                    STORE_SNAPSHOT,
                    StoreSnapshotRequest(delta=snapshot_delta(before, base, snapshot)),
                    result_type=StoredSnapshot,
                    start_to_close_timeout=SNAPSHOT_TIMEOUT,
                    retry_policy=SNAPSHOT_RETRY,
                )
            except ActivityError as err:
                workflow.logger.warning(
                    "registry %s: snapshot %d not stored%s: %s",
                    self.state.namespace,
                    snapshot.version,
                    " as a change; storing it whole" if base else "; sent whole",
                    one_line(str(err.cause or err)),
                )
                self._stored = None
                if base:
                    continue
                return snapshot
            keyed = bool(stored.clusters_key) and workflow.patched(SNAPSHOT_KEY_PATCH)
            header = snapshot_header(
                snapshot, stored.digest, stored.stored_bytes, stored.clusters_key if keyed else ""
            )
            self._stored = (snapshot, header)
            return header

    async def _notify(self, subscribers: list[str]) -> None:
        if not subscribers:
            return  # nobody to tell: nothing to store either
        snapshot = await self._outgoing(self.snapshot_for_subscribers())
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

    def _went_offline(self, record: ClusterRecord) -> None:
        """Keep a ClusterOffline event for the loop to send, when anyone may want it."""
        if not self.state.notifications:
            return
        info = workflow.info()
        self.state.notify_events.append(
            cluster_offline_event(
                namespace=self.state.namespace,
                cluster=record.name,
                labels=record.labels,
                reason=record.unreachable,
                since=record.unreachable_since or workflow.now(),
                workflow_id=registry_workflow_id(self.state.namespace),
                run_id=info.run_id,
            )
        )

    async def _send_cluster_events(self) -> None:
        if not self.state.notify_events:
            return
        events, self.state.notify_events = self.state.notify_events, []
        if not workflow.patched(CLUSTER_OFFLINE_PATCH):
            return
        await send_notification_events(self.state.namespace, events)

    @workflow.update(name=NOTIFICATIONS_CONFIGURED_UPDATE)
    def notifications_configured(self, request: NotificationsConfiguredRequest) -> RegistryChange:
        """GitRepos signal their events to ``notifications/<ns>`` only once it exists: told
        with the next snapshot, which changes no version (nothing is re-planned)."""
        if not self.state.notifications:
            self.state.notifications = True
            self._dirty = True
        return RegistryChange(
            version=self.state.version,
            message=f"namespace {self.state.namespace} has notifications",
        )

    def _changed(self, message: str) -> RegistryChange:
        self.state.version += 1
        self._dirty = True
        workflow.logger.info("registry %s: %s", self.state.namespace, message)
        return RegistryChange(version=self.state.version, message=message)

    # --- clusters -----------------------------------------------------------------------------

    @workflow.update(name=APPLY_CLUSTER_UPDATE)
    def apply_cluster(self, request: ApplyClusterRequest) -> RegistryChange:
        return self._apply_cluster(request)

    def _apply_cluster(
        self, request: ApplyClusterRequest, moved_from: str = "", refused_by: str = ""
    ) -> RegistryChange:
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
            reachable_since=previous.reachable_since if previous else None,
        )
        if previous is not None and previous.agent and request.agent:
            # An agent cluster re-applied keeps what its agent reported.
            self.state.clusters[request.name] = self.state.clusters[request.name].model_copy(
                update={
                    "agent_version": previous.agent_version,
                    "kubernetes_version": previous.kubernetes_version,
                    "heartbeat_seconds": previous.heartbeat_seconds,
                    "registered_with": previous.registered_with,
                }
            )
        verb = "updated" if existed else "added"
        if moved_from:
            verb = f"moved here from workspace {moved_from}"
        if refused_by:
            verb = (
                f"not moved: workspace {refused_by} has a cluster {request.name} already; "
                "it stays here"
            )
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
            if record.reachable_since is None or record.unreachable:
                record.reachable_since = seen
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
            self._went_offline(record)
            self._dirty = True

    @workflow.signal(name=AGENT_HEARTBEAT_SIGNAL)
    def agent_heartbeat(self, beat: AgentHeartbeat) -> None:
        """An agent serves its queue: last-seen is now (the registry's clock). A beat saying
        the API server does not answer, or that the agent stops, makes the cluster Offline;
        the next good beat clears it. Like probes, neither changes targeting (no version)."""
        record = self.state.clusters.get(beat.name)
        if record is None or not record.agent:
            return
        now = workflow.now()
        first = record.last_seen is None
        record.last_seen = now
        record.agent_version = beat.agent_version or record.agent_version
        record.kubernetes_version = beat.kubernetes_version or record.kubernetes_version
        record.heartbeat_seconds = beat.interval_seconds
        deadline = heartbeat_deadline(now, beat.interval_seconds)
        if deadline is not None and (self._armed is None or deadline < self._armed):
            self._rearm = True
        problem = "agent stopped" if beat.stopping else one_line(beat.problem)
        if not problem and record.reachable_since is None:
            record.reachable_since = now
        if problem and not record.unreachable:
            workflow.logger.warning(
                "registry %s: cluster %s offline: %s", self.state.namespace, beat.name, problem
            )
            record.unreachable, record.unreachable_since = problem, now
            self._went_offline(record)
            self._dirty = True
        elif not problem and record.unreachable:
            workflow.logger.info(
                "registry %s: agent of cluster %s is back", self.state.namespace, beat.name
            )
            record.unreachable, record.unreachable_since = "", None
            record.reachable_since = now
            self._dirty = True
        elif not problem and first and workflow.patched(FIRST_BEAT_PATCH):
            workflow.logger.info(
                "registry %s: agent of cluster %s connected", self.state.namespace, beat.name
            )
            self._dirty = True

    # --- agent registration -------------------------------------------------------------------

    @workflow.update(name=REGISTER_AGENT_UPDATE)
    def register_agent(self, request: RegisterAgentRequest) -> RegistryChange:
        token = self._token_by_hash(request.token_hash)
        assert token is not None  # the validator refused unknown tokens
        if request.name not in token.used_by:
            token.used_by.append(request.name)
        previous = self.state.clusters.get(request.name)
        labels = dict(previous.labels if previous else {})
        labels.update(request.labels)
        labels.update(token.labels)
        if previous is not None:
            self.state.clusters[request.name] = previous.model_copy(
                update={"labels": labels, "registered_with": token.name}
            )
            verb = "re-registered" if previous.registered_with == token.name else "claimed"
            message = f"cluster {request.name} {verb} by its agent"
            if previous.labels == labels:
                # Nothing targeting reads changed (a restarted agent): no new version.
                return RegistryChange(version=self.state.version, message=message)
            return self._changed(message)
        self.state.clusters[request.name] = ClusterRecord(
            name=request.name, labels=labels, agent=True, registered_with=token.name
        )
        return self._changed(f"cluster {request.name} registered by its agent")

    @register_agent.validator
    def _validate_register_agent(self, request: RegisterAgentRequest) -> None:
        check_name(request.name)
        check_labels(request.labels)
        token = self._token_by_hash(request.token_hash)
        existing = self.state.clusters.get(request.name)
        refusal = registration_refusal(
            None
            if token is None
            else TokenFacts(
                name=token.name,
                expires_at=token.expires_at,
                deleted=token.deleted,
                max_uses=token.max_uses,
                used_by=tuple(token.used_by),
                cluster=token.cluster,
            ),
            workflow.now(),
            request.name,
            existing_agent=None if existing is None else existing.agent,
            existing_token=existing.registered_with if existing else "",
        )
        if refusal:
            raise _invalid(refusal)

    def _token_by_hash(self, digest: str) -> TokenRecord | None:
        return next((t for t in self.state.tokens.values() if t.hash == digest), None)

    @workflow.update(name=CREATE_TOKEN_UPDATE)
    def create_token(self, request: CreateTokenRequest) -> RegistryChange:
        now = workflow.now()
        # Deleted and expired tokens are forgotten here, so the list stays short.
        self.state.tokens = {
            n: t
            for n, t in self.state.tokens.items()
            if not (t.deleted or (t.expires_at is not None and t.expires_at <= now))
        }
        ttl = request.ttl_seconds
        self.state.tokens[request.name] = TokenRecord(
            name=request.name,
            hash=request.hash,
            created_at=now,
            expires_at=None if ttl is None else now + timedelta(seconds=ttl),
            labels=dict(request.labels),
            cluster=request.cluster,
            max_uses=request.max_uses,
        )
        return RegistryChange(
            version=self.state.version, message=f"registration token {request.name} created"
        )

    @create_token.validator
    def _validate_create_token(self, request: CreateTokenRequest) -> None:
        check_name(request.name, "registration token")
        check_labels(request.labels)
        if request.cluster:
            check_name(request.cluster)
        existing = self.state.tokens.get(request.name)
        if existing is not None and not existing.deleted:
            raise _invalid(f"registration token {request.name!r} already exists")
        if request.ttl_seconds is not None and request.ttl_seconds <= 0:
            raise _invalid(f"ttl: {request.ttl_seconds!r} is not a positive duration")
        if request.max_uses < 0:
            raise _invalid(f"max uses: {request.max_uses!r} is negative")

    @workflow.update(name=DELETE_TOKEN_UPDATE)
    def delete_token(self, request: DeleteTokenRequest) -> RegistryChange:
        # Kept as deleted (until the next create) so an agent using it hears why.
        self.state.tokens[request.name].deleted = True
        return RegistryChange(
            version=self.state.version, message=f"registration token {request.name} deleted"
        )

    @delete_token.validator
    def _validate_delete_token(self, request: DeleteTokenRequest) -> None:
        token = self.state.tokens.get(request.name)
        if token is None or token.deleted:
            known = ", ".join(sorted(n for n, t in self.state.tokens.items() if not t.deleted))
            raise _invalid(
                f"registration token {request.name!r} does not exist in namespace "
                f"{self.state.namespace!r} (tokens: {known or 'none'})"
            )

    @workflow.query(name=TOKENS_QUERY)
    def tokens(self, request: TokensRequest) -> list[TokenInfo]:
        return [
            TokenInfo(
                name=t.name,
                created_at=t.created_at,
                expires_at=t.expires_at,
                labels=t.labels,
                cluster=t.cluster,
                max_uses=t.max_uses,
                used_by=t.used_by,
            )
            for t in sorted(self.state.tokens.values(), key=lambda t: t.name)
            if not t.deleted
        ]

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
        self._require_not_moving(request.name)

    @workflow.update(name=MOVE_CLUSTER_UPDATE)
    async def move_cluster(self, request: MoveClusterRequest) -> RegistryChange:
        """Hand the cluster to the registry of ``to``, then forget it. Once accepted the move
        is Temporal's to finish, across a CLI or worker that dies: the handover is a signal
        this workflow sends durably, and the other registry adds the cluster when it runs."""
        record = self.state.clusters[request.name]
        handover = AdoptClusterRequest(
            cluster=ApplyClusterRequest(
                **record.model_dump(include=set(ApplyClusterRequest.model_fields))
            ),
            moved_from=self.state.namespace,
        )
        self._moving.add(request.name)
        try:
            await workflow.get_external_workflow_handle(registry_workflow_id(request.to)).signal(
                ADOPT_CLUSTER_SIGNAL, handover
            )
        except FailureError:
            raise _invalid(
                f"cluster {request.name} not moved: the registry of namespace {request.to!r} "
                "is not running (register a cluster there, or run `flotilla cluster move` again)"
            ) from None
        finally:
            self._moving.discard(request.name)
        self.state.clusters.pop(request.name, None)
        change = self._changed(f"cluster {request.name} moved to workspace {request.to}")
        back = self._refused_during_move.pop(request.name, None)
        if back is not None:
            self._apply_cluster(back.cluster, refused_by=back.to)
        return change

    @move_cluster.validator
    def _validate_move_cluster(self, request: MoveClusterRequest) -> None:
        self._require_cluster(request.name)
        self._require_not_moving(request.name)
        check_name(request.to, "namespace")
        if request.to == self.state.namespace:
            raise _invalid(f"cluster {request.name} is already in workspace {request.to!r}")

    @workflow.signal(name=ADOPT_CLUSTER_SIGNAL)
    async def adopt_cluster(self, request: AdoptClusterRequest) -> None:
        """A cluster another workspace's registry hands over (``move_cluster`` there). A
        cluster of that name registered here after the CLI checked stays: a move never
        replaces a cluster; the handed-over one goes back to the registry it came from."""
        name = request.cluster.name
        if name not in self.state.clusters or not workflow.patched(ADOPTION_REFUSES_PATCH):
            self._apply_cluster(request.cluster, moved_from=request.moved_from)
            return
        workflow.logger.warning(
            "registry %s: cluster %s from workspace %s refused: a cluster %s is registered "
            "here already; it goes back",
            self.state.namespace,
            name,
            request.moved_from,
            name,
        )
        back = MoveRefused(cluster=request.cluster, to=self.state.namespace)
        try:
            await workflow.get_external_workflow_handle(
                registry_workflow_id(request.moved_from)
            ).signal(MOVE_REFUSED_SIGNAL, back)
        except FailureError:
            workflow.logger.warning(
                "registry %s: cluster %s could not go back: the registry of %s is not running",
                self.state.namespace,
                name,
                request.moved_from,
            )

    @workflow.signal(name=MOVE_REFUSED_SIGNAL)
    def move_refused(self, request: MoveRefused) -> None:
        """The cluster this registry moved away, sent back because ``to`` has one of its name
        already; one registered here meanwhile under that name stays."""
        name = request.cluster.name
        if name in self._moving and workflow.patched(REFUSAL_DURING_MOVE_PATCH):
            self._refused_during_move[name] = request  # applied when the move finishes
            return
        if name in self.state.clusters:
            workflow.logger.warning(
                "registry %s: cluster %s came back from workspace %s, but one of that name is "
                "registered here again; that one stays",
                self.state.namespace,
                name,
                request.to,
            )
            return
        self._apply_cluster(request.cluster, refused_by=request.to)

    def _require_not_moving(self, name: str) -> None:
        if name in self._moving:
            raise _invalid(f"cluster {name!r} is being moved to another workspace")

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

    # --- deployment windows (Fleet's Schedules) ------------------------------------------------

    @workflow.update(name=APPLY_SCHEDULE_UPDATE)
    def apply_schedule(self, request: ApplyScheduleRequest) -> RegistryChange:
        name = request.schedule.metadata.name
        verb = "updated" if name in self.state.schedules else "added"
        self.state.schedules[name] = request.schedule
        return self._changed(f"schedule {name} {verb}")

    @apply_schedule.validator
    def _validate_apply_schedule(self, request: ApplyScheduleRequest) -> None:
        schedule = request.schedule
        check_name(schedule.metadata.name, "Schedule")
        if schedule.metadata.namespace != self.state.namespace:
            raise _invalid(
                f"Schedule {schedule.metadata.name}: namespace "
                f"{schedule.metadata.namespace!r} is not this registry's {self.state.namespace!r}"
            )
        where = f"Schedule {schedule.metadata.name}"
        try:
            check_window(window_of(schedule, file=where), file=where, now=workflow.now())
        except SpecError as err:
            raise _invalid(str(err)) from None

    @workflow.update(name=REMOVE_SCHEDULE_UPDATE)
    def remove_schedule(self, request: RemoveScheduleRequest) -> RegistryChange:
        del self.state.schedules[request.name]
        return self._changed(f"schedule {request.name} removed")

    @remove_schedule.validator
    def _validate_remove_schedule(self, request: RemoveScheduleRequest) -> None:
        if request.name not in self.state.schedules:
            raise _invalid(
                f"Schedule {request.name!r} does not exist in namespace {self.state.namespace!r}"
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
            notifications=self.state.notifications,
            schedules=[self.state.schedules[n] for n in sorted(self.state.schedules)],
        )
