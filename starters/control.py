"""The client behind the control commands: Fleet objects and clusters to workflows, status back.

``starters/commands.py`` parses and validates the command line and prints; ``Control`` is
what it calls, and what tests and other starters use. Kubeconfigs go into the secret store
and only their secret names reach Temporal.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.objectwatch_models import (
    OBJECTS_CHANGED_SIGNAL,
    ObjectsChanged,
    WatchObjectsRequest,
)
from activities.secrets import (
    KUBECONFIG_KEY,
    SecretStore,
    exists,
    kubeconfig_secret_name,
)
from flotilla.agents import TokenError, make_token, token_hash, token_namespace
from flotilla.errors import FlotillaError, SpecError, cause_message
from flotilla.helmops import fold_values_files
from flotilla.ids import (
    CONTROL_TASK_QUEUE,
    bundle_shard_workflow_id,
    bundle_workflow_id,
    gitrepo_workflow_id,
    helmop_workflow_id,
    notification_workflow_id,
    objectwatch_workflow_id,
    registry_workflow_id,
)
from flotilla.kubenames import name_problem
from flotilla.models import (
    Cluster,
    ClusterGroup,
    FleetObject,
    GitRepo,
    GitRepoRestriction,
    HelmOp,
    Policy,
    Restriction,
    Schedule,
)
from flotilla.notifications import Alert, NotificationObject, Provider, load_objects
from flotilla.restrictions import conflicts
from workflows.bundle_models import (
    APPROVE_ROLLOUT_UPDATE,
    BUNDLE_STATUS_QUERY,
    PAUSE_SIGNAL,
    ApproveRolloutRequest,
    ApproveRolloutResult,
    BundleStatus,
    BundleStatusRequest,
    PauseRequest,
)
from workflows.gitrepo_models import (
    DELETE_UPDATE,
    GITREPO_STATUS_QUERY,
    GITREPO_WORKFLOW,
    ROLLBACK_UPDATE,
    SYNC_NOW_UPDATE,
    UPDATE_SPEC_UPDATE,
    DeleteRequest,
    DeleteResult,
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
from workflows.helmop_models import (
    HELMOP_DELETE_UPDATE,
    HELMOP_STATUS_QUERY,
    HELMOP_SYNC_NOW_UPDATE,
    HELMOP_UPDATE_SPEC_UPDATE,
    HELMOP_WORKFLOW,
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
from workflows.notifications_models import (
    APPLY_NOTIFICATION_UPDATE,
    DELETE_NOTIFICATION_UPDATE,
    NOTIFICATION_STATUS_QUERY,
    NOTIFICATION_WORKFLOW,
    ApplyNotificationRequest,
    ApplyNotificationResult,
    DeleteNotificationRequest,
    NotificationState,
    NotificationStatus,
    NotificationStatusRequest,
)
from workflows.objectwatch_models import OBJECTWATCH_WORKFLOW
from workflows.registry_models import (
    AGENT_HEARTBEAT_SIGNAL,
    APPLY_CLUSTER_UPDATE,
    APPLY_GROUP_UPDATE,
    APPLY_RESTRICTION_UPDATE,
    APPLY_SCHEDULE_UPDATE,
    CREATE_TOKEN_UPDATE,
    DELETE_TOKEN_UPDATE,
    LABEL_CLUSTER_UPDATE,
    MOVE_CLUSTER_UPDATE,
    NOTIFICATIONS_CONFIGURED_UPDATE,
    REGISTER_AGENT_UPDATE,
    REGISTRY_WORKFLOW,
    REMOVE_CLUSTER_UPDATE,
    REMOVE_GROUP_UPDATE,
    REMOVE_RESTRICTION_UPDATE,
    REMOVE_SCHEDULE_UPDATE,
    SNAPSHOT_QUERY,
    TOKENS_QUERY,
    AgentHeartbeat,
    ApplyClusterRequest,
    ApplyGroupRequest,
    ApplyRestrictionRequest,
    ApplyScheduleRequest,
    CreateTokenRequest,
    DeleteTokenRequest,
    LabelClusterRequest,
    MoveClusterRequest,
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
    TokenInfo,
    TokensRequest,
)
from workflows.visibility import GITREPO, KIND

T = TypeVar("T")
R = TypeVar("R", bound=BaseModel)

# `get workspaces` asks every workspace's registry; one that no worker serves must not hang it.
WORKSPACE_QUERY_TIMEOUT = timedelta(seconds=5)


class WorkspaceSummary(BaseModel):
    """One line of `flotilla get workspaces`."""

    name: str
    clusters: int
    cluster_groups: int
    gitrepos: int
    restrictions: int
    # Why the counts are missing: the workspace's registry did not answer (no worker serves
    # that namespace, or it is busy). One silent workspace never hangs the whole list.
    problem: str = ""


class Control:
    """The operations behind the commands, usable from tests and other starters."""

    def __init__(
        self, client: Client, *, task_queue: str = CONTROL_TASK_QUEUE, secrets: SecretStore
    ) -> None:
        self.client = client
        self.task_queue = task_queue
        self.secrets = secrets

    # --- registry ------------------------------------------------------------------------------

    async def _update_with_start(
        self,
        entity: tuple[str, BaseModel, str, str],
        update: str,
        request: BaseModel,
        result_type: type[R],
    ) -> R:
        """Send ``update`` to an entity workflow (``(type, initial state, id, summary)``),
        starting it when it is not running; a refused update is a one-line FlotillaError."""
        workflow, state, workflow_id, summary = entity
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            workflow,
            state,
            id=workflow_id,
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=summary,
        )
        try:
            result: R = await self.client.execute_update_with_start_workflow(
                update, request, start_workflow_operation=start, result_type=result_type
            )
            return result
        except WorkflowUpdateFailedError as err:
            raise FlotillaError(cause_message(err)) from None

    async def _registry_update(
        self, namespace: str, update: str, request: BaseModel
    ) -> RegistryChange:
        entity = (
            REGISTRY_WORKFLOW,
            RegistryState(namespace=namespace),
            registry_workflow_id(namespace),
            f"cluster registry of namespace {namespace}",
        )
        return await self._update_with_start(entity, update, request, RegistryChange)

    async def ensure_registry(self, namespace: str) -> None:
        await self.client.start_workflow(
            REGISTRY_WORKFLOW,
            RegistryState(namespace=namespace),
            id=registry_workflow_id(namespace),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"cluster registry of namespace {namespace}",
        )

    async def add_cluster(
        self,
        namespace: str,
        name: str,
        kubeconfig: str | None,
        *,
        labels: dict[str, str] | None = None,
        paused: bool = False,
    ) -> RegistryChange:
        """Register a cluster by name: with a kubeconfig (stored in the secret store, push
        mode) or, when ``kubeconfig`` is None, in agent mode (its agent serves its queue)."""
        problem = name_problem(name)
        if problem:
            raise SpecError(problem)
        secret = ""
        if kubeconfig is not None:
            secret = kubeconfig_secret_name(name)
            self.secrets.put(namespace, secret, {KUBECONFIG_KEY: kubeconfig})
        change: RegistryChange = await self._registry_update(
            namespace,
            APPLY_CLUSTER_UPDATE,
            ApplyClusterRequest(
                name=name,
                labels=labels or {},
                paused=paused,
                kubeconfig_secret=secret,
                agent=kubeconfig is None,
            ),
        )
        return change

    def _cluster_request(self, cluster: Cluster) -> ApplyClusterRequest:
        """A Fleet Cluster as the registry takes it. Push mode when its kubeconfig Secret
        (``spec.kubeConfigSecret``, else ``<name>-kubeconfig``) exists; without either, agent
        mode, as in Fleet: the cluster waits for an agent whose token names it. A named
        Secret that does not exist is an error, never agent mode."""
        namespace, name = cluster.metadata.namespace, cluster.metadata.name
        named = cluster.spec.kube_config_secret
        secret = named or kubeconfig_secret_name(name)
        push = exists(self.secrets, namespace, secret)
        if named and not push:
            raise SpecError(
                f"cluster {namespace}/{name}: its kubeconfig Secret {namespace}/{secret} does "
                f"not exist: run `flotilla cluster add {name} --kubeconfig FILE -n {namespace}`"
                f" or create the Secret (key {KUBECONFIG_KEY!r}); leave spec.kubeConfigSecret "
                "out for a cluster its agent serves"
            )
        return ApplyClusterRequest(
            name=name,
            labels=cluster.metadata.labels or {},
            paused=cluster.spec.paused,
            kubeconfig_secret=secret if push else "",
            agent=not push,
            template_values={k: str(v) for k, v in (cluster.spec.template_values or {}).items()},
        )

    async def apply_cluster(self, cluster: Cluster) -> RegistryChange:
        change: RegistryChange = await self._registry_update(
            cluster.metadata.namespace, APPLY_CLUSTER_UPDATE, self._cluster_request(cluster)
        )
        return change

    async def label_cluster(
        self, namespace: str, name: str, set_labels: dict[str, str], remove: list[str]
    ) -> RegistryChange:
        change: RegistryChange = await self._registry_update(
            namespace,
            LABEL_CLUSTER_UPDATE,
            LabelClusterRequest(name=name, set_labels=set_labels, remove_labels=remove),
        )
        return change

    async def remove_cluster(self, namespace: str, name: str) -> RegistryChange:
        registered = await self.registry(namespace)
        agent = any(c.name == name and c.agent for c in registered.clusters)
        change: RegistryChange = await self._registry_update(
            namespace, REMOVE_CLUSTER_UPDATE, RemoveClusterRequest(name=name)
        )
        if agent:
            # No worker follows an agent cluster to stop its watcher (push-mode ones are
            # stopped by their worker after the grace period).
            await self.stop_object_watch(namespace, name)
        return change

    async def start_object_watch(self, namespace: str, cluster: str, *, queue: str = "") -> None:
        """Start the cluster's object watcher (``objectwatch/<ns>/<cluster>``), or keep the one
        running: several workers of one cluster, or an agent that restarts, make one. ``queue``
        is where the watch runs: an agent's own queue, or empty for the central worker's."""
        await self.client.start_workflow(
            OBJECTWATCH_WORKFLOW,
            WatchObjectsRequest(
                cluster_namespace=namespace, cluster_name=cluster, task_queue=queue
            ),
            id=objectwatch_workflow_id(namespace, cluster),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"object watcher of cluster {namespace}/{cluster}",
        )

    async def stop_object_watch(self, namespace: str, cluster: str) -> None:
        handle = self.client.get_workflow_handle(objectwatch_workflow_id(namespace, cluster))
        try:
            await handle.cancel()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise

    async def objects_changed(self, workflow_id: str, change: ObjectsChanged) -> None:
        """The object watcher's news for one bundle workflow (check that cluster now)."""
        await self.client.get_workflow_handle(workflow_id).signal(OBJECTS_CHANGED_SIGNAL, change)

    async def apply_group(self, group: ClusterGroup) -> RegistryChange:
        change: RegistryChange = await self._registry_update(
            group.metadata.namespace,
            APPLY_GROUP_UPDATE,
            ApplyGroupRequest(group=group),
        )
        return change

    async def remove_group(self, namespace: str, name: str) -> RegistryChange:
        change: RegistryChange = await self._registry_update(
            namespace, REMOVE_GROUP_UPDATE, RemoveGroupRequest(name=name)
        )
        return change

    async def move_cluster(self, namespace: str, name: str, to: str) -> str:
        """Re-home a cluster to workspace ``to``: its kubeconfig Secret is copied there, then
        the old registry hands the cluster to the new one and forgets it, in one update that
        Temporal finishes once accepted (the old workspace's bundles are uninstalled from it,
        or only released with keepResources; the new one's GitRepos then target it). Run
        again after an interruption, it finishes the move or says it is done."""
        if to == namespace:
            raise SpecError(f"cluster {name} is already in workspace {namespace!r}")
        record = next(
            (c for c in (await self.registry(namespace)).clusters if c.name == name), None
        )
        moved = any(c.name == name for c in (await self.registry(to)).clusters)
        if record is None and moved:
            return f"cluster {name} is in workspace {to} (moved already)"
        if record is None:
            raise FlotillaError(f"cluster {name!r} is not registered in namespace {namespace!r}")
        if moved:
            raise FlotillaError(f"a cluster {name!r} is already registered in namespace {to!r}")
        secret = record.kubeconfig_secret
        if secret:
            credentials = self.secrets.get(namespace, secret)
            # Never overwrite another cluster's credentials there (a re-run after an
            # interruption finds its own copy, which is the same).
            if exists(self.secrets, to, secret) and self.secrets.get(to, secret) != credentials:
                raise FlotillaError(
                    f"cluster {name} not moved: namespace {to!r} has a different Secret "
                    f"{secret!r} already"
                )
            self.secrets.put(to, secret, credentials)
        await self.ensure_registry(to)
        await self._registry_update(
            namespace, MOVE_CLUSTER_UPDATE, MoveClusterRequest(name=name, to=to)
        )
        return f"cluster {name} moved from workspace {namespace} to {to}"

    async def workspaces(self) -> list[WorkspaceSummary]:
        """Every namespace with a cluster registry, with what it holds."""
        query = f"{KIND.name} = 'Registry' AND ExecutionStatus = 'Running'"
        namespaces = sorted(
            {w.id.split("/", 1)[1] async for w in self.client.list_workflows(query)}
        )

        async def summary(namespace: str) -> WorkspaceSummary:
            try:
                snapshot = await self.registry(namespace, timeout=WORKSPACE_QUERY_TIMEOUT)
            except RPCError as err:
                return WorkspaceSummary(
                    name=namespace,
                    clusters=0,
                    cluster_groups=0,
                    gitrepos=0,
                    restrictions=0,
                    problem=f"registry did not answer ({err.status.name.lower()}): is a "
                    f"worker serving namespace {namespace}?",
                )
            return WorkspaceSummary(
                name=namespace,
                clusters=len(snapshot.clusters),
                cluster_groups=len(snapshot.groups),
                gitrepos=len(await self._running("GitRepo", namespace)),
                restrictions=len(snapshot.policies) + len(snapshot.restrictions),
            )

        return list(await asyncio.gather(*(summary(n) for n in namespaces)))

    async def apply_restriction(self, restriction: Restriction) -> RegistryChange:
        """Add or replace a Policy or GitRepoRestriction; the registry refuses a conflict."""
        change: RegistryChange = await self._registry_update(
            restriction.metadata.namespace,
            APPLY_RESTRICTION_UPDATE,
            ApplyRestrictionRequest(restriction=restriction),
        )
        return change

    async def remove_restriction(self, namespace: str, kind: str, name: str) -> RegistryChange:
        change: RegistryChange = await self._registry_update(
            namespace, REMOVE_RESTRICTION_UPDATE, RemoveRestrictionRequest(kind=kind, name=name)
        )
        return change

    async def apply_schedule(self, schedule: Schedule) -> RegistryChange:
        """Add or replace a Schedule (deployment windows) in its workspace's registry."""
        change: RegistryChange = await self._registry_update(
            schedule.metadata.namespace,
            APPLY_SCHEDULE_UPDATE,
            ApplyScheduleRequest(schedule=schedule),
        )
        return change

    async def remove_schedule(self, namespace: str, name: str) -> RegistryChange:
        change: RegistryChange = await self._registry_update(
            namespace, REMOVE_SCHEDULE_UPDATE, RemoveScheduleRequest(name=name)
        )
        return change

    async def _check_restrictions(self, objects: list[FleetObject | NotificationObject]) -> None:
        """Refuse the file before anything is applied when one of its Policies or
        GitRepoRestrictions conflicts with its workspace's (or with one before it in the file),
        so a refused file changes nothing."""
        workspaces: dict[str, tuple[list[GitRepoRestriction], list[Policy]]] = {}
        for obj in objects:
            if not isinstance(obj, Policy | GitRepoRestriction):
                continue
            namespace = obj.metadata.namespace
            if namespace not in workspaces:
                snapshot = await self.registry(namespace)
                workspaces[namespace] = (snapshot.restrictions, snapshot.policies)
            restrictions, policies = workspaces[namespace]
            problem = conflicts(obj, restrictions, policies)
            if problem:
                raise SpecError(problem)
            if isinstance(obj, Policy):
                policies[:] = [p for p in policies if p.metadata.name != obj.metadata.name] + [obj]
            else:
                restrictions[:] = [
                    r for r in restrictions if r.metadata.name != obj.metadata.name
                ] + [obj]

    async def registry(
        self, namespace: str, *, timeout: timedelta | None = None
    ) -> RegistrySnapshot:
        handle = self.client.get_workflow_handle(registry_workflow_id(namespace))
        try:
            snapshot: RegistrySnapshot = await handle.query(
                SNAPSHOT_QUERY, SnapshotRequest(), result_type=RegistrySnapshot, rpc_timeout=timeout
            )
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return RegistrySnapshot(
                    namespace=namespace, version=0, clusters=[], groups=[], subscribers=[]
                )
            raise
        return snapshot

    # --- agents and registration tokens -----------------------------------------------------

    async def create_token(
        self,
        namespace: str,
        name: str,
        *,
        ttl_seconds: float | None,
        labels: dict[str, str] | None = None,
        cluster: str = "",
        max_uses: int = 0,
    ) -> str:
        """Make a registration token; only its hash goes to the registry. Returns the token."""
        token = make_token(namespace, secrets.token_urlsafe(32))
        await self._registry_update(
            namespace,
            CREATE_TOKEN_UPDATE,
            CreateTokenRequest(
                name=name,
                hash=token_hash(token),
                ttl_seconds=ttl_seconds,
                labels=labels or {},
                cluster=cluster,
                max_uses=max_uses,
            ),
        )
        return token

    async def delete_token(self, namespace: str, name: str) -> RegistryChange:
        return await self._registry_update(
            namespace, DELETE_TOKEN_UPDATE, DeleteTokenRequest(name=name)
        )

    async def list_tokens(self, namespace: str) -> list[TokenInfo]:
        handle = self.client.get_workflow_handle(registry_workflow_id(namespace))
        try:
            tokens: list[TokenInfo] = await handle.query(
                TOKENS_QUERY, TokensRequest(), result_type=list[TokenInfo]
            )
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return []
            raise
        return tokens

    async def register_agent(
        self, token: str, name: str, labels: dict[str, str] | None = None
    ) -> tuple[str, RegistryChange]:
        """Register (or claim) cluster ``name`` with a token, sending only its hash. Returns
        the namespace the token belongs to and the registry's answer."""
        try:
            namespace = token_namespace(token)
        except TokenError as err:
            raise SpecError(str(err)) from None
        change = await self._registry_update(
            namespace,
            REGISTER_AGENT_UPDATE,
            RegisterAgentRequest(name=name, token_hash=token_hash(token), labels=labels or {}),
        )
        return namespace, change

    async def agent_heartbeat(self, namespace: str, beat: AgentHeartbeat) -> None:
        handle = self.client.get_workflow_handle(registry_workflow_id(namespace))
        await handle.signal(AGENT_HEARTBEAT_SIGNAL, beat)

    # --- gitrepos -----------------------------------------------------------------------------

    async def apply_gitrepo(self, gitrepo: GitRepo, **switches: Any) -> str:
        """Start the GitRepo's workflow, or hand the running one its new spec."""
        namespace, name = gitrepo.metadata.namespace, gitrepo.metadata.name
        await self.ensure_registry(namespace)
        workflow_id = gitrepo_workflow_id(namespace, name)
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            GITREPO_WORKFLOW,
            GitRepoState(
                namespace=namespace,
                name=name,
                spec=gitrepo.spec,
                labels=gitrepo.metadata.labels or {},
                **switches,
            ),
            id=workflow_id,
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"gitrepo {namespace}/{name}: {gitrepo.spec.repo}",
            static_details=_gitrepo_details(gitrepo),
        )
        try:
            result: UpdateSpecResult = await self.client.execute_update_with_start_workflow(
                UPDATE_SPEC_UPDATE,
                UpdateSpecRequest(spec=gitrepo.spec, labels=gitrepo.metadata.labels or {}),
                start_workflow_operation=start,
                result_type=UpdateSpecResult,
            )
        except WorkflowUpdateFailedError as err:
            raise FlotillaError(cause_message(err)) from None
        message: str = result.message
        return message

    async def apply_text(self, text: str, *, file: str) -> list[str]:
        """Validate every document first, then apply them in order; one line per object."""
        objects, warnings = load_objects(text, file=file)
        await self._check_restrictions(objects)
        lines = [f"warning: {w}" for w in warnings]
        for obj in objects:
            note = ""
            if isinstance(obj, GitRepo):
                await self.apply_gitrepo(obj)
            elif isinstance(obj, HelmOp):
                await self.apply_helmop(obj, file=file)
            elif isinstance(obj, Cluster):
                request = self._cluster_request(obj)
                await self._registry_update(obj.metadata.namespace, APPLY_CLUSTER_UPDATE, request)
                if request.agent:
                    note = (
                        f" in agent mode (no kubeconfig Secret): its agent claims it with a "
                        f"token naming it, `flotilla cluster token create --cluster "
                        f"{obj.metadata.name} -n {obj.metadata.namespace}`"
                    )
            elif isinstance(obj, ClusterGroup):
                await self.apply_group(obj)
            elif isinstance(obj, Policy | GitRepoRestriction):
                await self.apply_restriction(obj)
            elif isinstance(obj, Schedule):
                await self.apply_schedule(obj)
            else:
                await self.apply_notification(obj)
            lines.append(
                f"{obj.kind.lower()} {obj.metadata.namespace}/{obj.metadata.name} applied{note}"
            )
        return lines

    # --- notifications ------------------------------------------------------------------------

    async def apply_notification(self, obj: NotificationObject) -> str:
        """Hand a Provider or an Alert to ``notifications/<ns>``, starting it when new."""
        namespace = obj.metadata.namespace
        entity = (
            NOTIFICATION_WORKFLOW,
            NotificationState(namespace=namespace),
            notification_workflow_id(namespace),
            f"notifications of namespace {namespace}",
        )
        request = ApplyNotificationRequest(
            name=obj.metadata.name,
            provider=obj.spec if isinstance(obj, Provider) else None,
            alert=obj.spec if isinstance(obj, Alert) else None,
        )
        result = await self._update_with_start(
            entity, APPLY_NOTIFICATION_UPDATE, request, ApplyNotificationResult
        )
        # From now on the namespace's GitRepos (and its registry) signal their events.
        await self._registry_update(
            namespace, NOTIFICATIONS_CONFIGURED_UPDATE, NotificationsConfiguredRequest()
        )
        return result.message

    async def notification_status(self, namespace: str) -> NotificationStatus:
        handle = self.client.get_workflow_handle(notification_workflow_id(namespace))
        return await _not_found_is_error(
            handle.query(
                NOTIFICATION_STATUS_QUERY,
                NotificationStatusRequest(),
                result_type=NotificationStatus,
            ),
            _no_notifications(namespace),
        )

    async def delete_notification(
        self, namespace: str, kind: Literal["provider", "alert"], name: str
    ) -> str:
        """Remove a Provider (refused while an Alert uses it) or an Alert."""
        handle = self.client.get_workflow_handle(notification_workflow_id(namespace))
        try:
            result: ApplyNotificationResult = await _not_found_is_error(
                handle.execute_update(
                    DELETE_NOTIFICATION_UPDATE,
                    DeleteNotificationRequest(kind=kind, name=name),
                    result_type=ApplyNotificationResult,
                ),
                _no_notifications(namespace),
            )
        except WorkflowUpdateFailedError as err:
            raise FlotillaError(cause_message(err)) from None
        return f"{result.message} in namespace {namespace}"

    def gitrepo(self, namespace: str, name: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(gitrepo_workflow_id(namespace, name))

    def bundle(self, namespace: str, name: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(bundle_workflow_id(namespace, name))

    async def gitrepo_status(self, namespace: str, name: str) -> GitRepoStatus:
        status: GitRepoStatus = await _not_found_is_error(
            self.gitrepo(namespace, name).query(
                GITREPO_STATUS_QUERY, GitRepoStatusRequest(), result_type=GitRepoStatus
            ),
            f"gitrepo {namespace}/{name} not found",
        )
        return status

    async def bundle_status(
        self, namespace: str, name: str, *, clusters: bool = False
    ) -> BundleStatus:
        """The bundle's status; with ``clusters``, a bundle rolled out in shards lists its
        clusters too, asked of each shard (their parts are consecutive ranges of names)."""
        bundle_id = bundle_workflow_id(namespace, name)
        status = await self._bundle_status(bundle_id, f"bundle {namespace}/{name} not found")
        if not clusters or not status.shards:
            return status
        parts = await asyncio.gather(
            *(
                self._bundle_status(
                    bundle_shard_workflow_id(bundle_id, k),
                    f"bundle {namespace}/{name}: shard {k} not found",
                )
                for k in range(status.shards)
            )
        )
        return status.model_copy(
            update={
                "clusters": [c for part in parts for c in part.clusters],
                "errors": {k: v for part in parts for k, v in part.errors.items()},
            }
        )

    async def _bundle_status(self, workflow_id: str, missing: str) -> BundleStatus:
        """A bundle's (or shard's) status query; ``missing`` when it does not run."""
        status: BundleStatus = await _not_found_is_error(
            self.client.get_workflow_handle(workflow_id).query(
                BUNDLE_STATUS_QUERY, BundleStatusRequest(), result_type=BundleStatus
            ),
            missing,
        )
        return status

    async def _running(self, kind: str, namespace: str, extra: str = "") -> list[str]:
        query = (
            f"{KIND.name} = '{kind}' AND ExecutionStatus = 'Running' "
            f"AND WorkflowId STARTS_WITH '{kind.lower()}/{namespace}/'{extra}"
        )
        ids = [w.id async for w in self.client.list_workflows(query)]
        return sorted(i.split("/", 2)[2] for i in ids)

    async def list_gitrepos(self, namespace: str) -> list[GitRepoStatus]:
        names = await self._running("GitRepo", namespace)
        return list(await asyncio.gather(*(self.gitrepo_status(namespace, n) for n in names)))

    async def list_bundles(
        self, namespace: str, gitrepo: str = "", *, clusters: bool = False
    ) -> list[BundleStatus]:
        """The running bundles' statuses (``clusters``: as ``bundle_status``)."""
        extra = f" AND {GITREPO.name} = '{gitrepo}'" if gitrepo else ""
        names = await self._running("Bundle", namespace, extra)
        return list(
            await asyncio.gather(
                *(self.bundle_status(namespace, n, clusters=clusters) for n in names)
            )
        )

    async def sync_gitrepo(self, namespace: str, name: str) -> str:
        result: SyncNowResult = await self.gitrepo(namespace, name).execute_update(
            SYNC_NOW_UPDATE, SyncNowRequest(), result_type=SyncNowResult
        )
        if result.error:
            raise FlotillaError(f"gitrepo {namespace}/{name}: {result.error}")
        return f"gitrepo {namespace}/{name} synced at commit {result.commit[:12]}"

    async def pause_bundle(self, namespace: str, name: str, *, paused: bool) -> str:
        await _not_found_is_error(
            self.bundle(namespace, name).signal(PAUSE_SIGNAL, PauseRequest(paused=paused)),
            f"bundle {namespace}/{name} not found",
        )
        return f"bundle {namespace}/{name} {'paused' if paused else 'resumed'}"

    async def approve_rollout(
        self,
        namespace: str,
        name: str,
        *,
        partition: str,
        approve: bool = True,
        user: str,
        reason: str = "",
    ) -> str:
        """Approve (or reject) a partition's gate for the version the bundle rolls out now."""
        request = ApproveRolloutRequest(
            partition=partition, approve=approve, user=user, reason=reason
        )
        try:
            result: ApproveRolloutResult = await _not_found_is_error(
                self.bundle(namespace, name).execute_update(
                    APPROVE_ROLLOUT_UPDATE, request, result_type=ApproveRolloutResult
                ),
                f"bundle {namespace}/{name} not found",
            )
        except WorkflowUpdateFailedError as err:
            raise FlotillaError(f"bundle {namespace}/{name}: {cause_message(err)}") from None
        return result.message

    async def rollback(self, namespace: str, kind: str, name: str, request: RollbackRequest) -> str:
        """Pin a gitrepo or a bundle to an earlier version, or lift its pin (``request``); a
        bundle's pin is held by its GitRepo, found from the bundle's status."""
        gitrepo = name
        if kind == "bundle":
            bundle = await self.bundle_status(namespace, name)
            if not bundle.gitrepo:
                raise FlotillaError(f"bundle {namespace}/{name} has no version yet")
            if await self._is_helmop(namespace, bundle.gitrepo):
                raise FlotillaError(
                    f"bundle {namespace}/{name} belongs to helmop {bundle.gitrepo}: set an "
                    "older version in its spec instead"
                )
            gitrepo = bundle.gitrepo
            request = request.model_copy(update={"bundle": name})
        try:
            result: RollbackResult = await _not_found_is_error(
                self.gitrepo(namespace, gitrepo).execute_update(
                    ROLLBACK_UPDATE, request, result_type=RollbackResult
                ),
                f"gitrepo {namespace}/{gitrepo} not found",
            )
        except WorkflowUpdateFailedError as err:
            raise FlotillaError(cause_message(err)) from None
        return result.message

    async def delete_gitrepo(self, namespace: str, name: str, *, wait: bool = True) -> str:
        handle = self.gitrepo(namespace, name)
        result: DeleteResult = await _not_found_is_error(
            handle.execute_update(DELETE_UPDATE, DeleteRequest(), result_type=DeleteResult),
            f"gitrepo {namespace}/{name} not found",
        )
        if wait:
            await handle.result()
        return f"gitrepo {namespace}/{name} deleted ({result.bundles} bundle(s) removed)"

    # --- helmops -----------------------------------------------------------------------------

    async def apply_helmop(self, helmop: HelmOp, *, file: str, **switches: Any) -> str:
        """Start the HelmOp's workflow, or hand the running one its new spec. ``valuesFiles``
        are read here, beside ``file``, and folded into the values the workflow gets."""
        namespace, name = helmop.metadata.namespace, helmop.metadata.name
        spec = fold_values_files(helmop.spec, _values_files(helmop, file), file=file)
        await self.ensure_registry(namespace)
        entity = (
            HELMOP_WORKFLOW,
            HelmOpState(namespace=namespace, name=name, spec=spec, **switches),
            helmop_workflow_id(namespace, name),
            f"helmop {namespace}/{name}",
        )
        result = await self._update_with_start(
            entity, HELMOP_UPDATE_SPEC_UPDATE, HelmOpUpdateRequest(spec=spec), HelmOpUpdateResult
        )
        return result.message

    def helmop(self, namespace: str, name: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(helmop_workflow_id(namespace, name))

    async def helmop_status(self, namespace: str, name: str) -> HelmOpStatus:
        status: HelmOpStatus = await _not_found_is_error(
            self.helmop(namespace, name).query(
                HELMOP_STATUS_QUERY, HelmOpStatusRequest(), result_type=HelmOpStatus
            ),
            f"helmop {namespace}/{name} not found",
        )
        return status

    async def _is_helmop(self, namespace: str, name: str) -> bool:
        try:
            await self.helmop_status(namespace, name)
        except FlotillaError:
            return False
        return True

    async def list_helmops(self, namespace: str) -> list[HelmOpStatus]:
        names = await self._running("HelmOp", namespace)
        return list(await asyncio.gather(*(self.helmop_status(namespace, n) for n in names)))

    async def sync_helmop(self, namespace: str, name: str) -> str:
        result: HelmOpSyncResult = await _not_found_is_error(
            self.helmop(namespace, name).execute_update(
                HELMOP_SYNC_NOW_UPDATE, HelmOpSyncRequest(), result_type=HelmOpSyncResult
            ),
            f"helmop {namespace}/{name} not found",
        )
        if result.error:
            raise FlotillaError(f"helmop {namespace}/{name}: {result.error}")
        return f"helmop {namespace}/{name} synced at chart version {result.version or '(tarball)'}"

    async def delete_helmop(self, namespace: str, name: str, *, wait: bool = True) -> str:
        handle = self.helmop(namespace, name)
        result: HelmOpDeleteResult = await _not_found_is_error(
            handle.execute_update(
                HELMOP_DELETE_UPDATE, HelmOpDeleteRequest(), result_type=HelmOpDeleteResult
            ),
            f"helmop {namespace}/{name} not found",
        )
        if wait:
            await handle.result()
        return result.message


def _values_files(helmop: HelmOp, file: str) -> dict[str, str]:
    """The text of each ``helm.valuesFiles`` entry that exists, read relative to ``file``'s
    directory (the current one for stdin); a missing one is named by the fold."""
    helm = helmop.spec.helm
    base = Path(file).parent if file not in ("", "-") else Path.cwd()
    found: dict[str, str] = {}
    for name in (helm.values_files or []) if helm else []:
        path = base / name
        if path.is_file():
            try:
                found[name] = path.read_text()
            except OSError as err:
                raise SpecError(f"{name}: cannot read: {err.strerror}", file=file) from None
    return found


def _no_notifications(namespace: str) -> str:
    return f"no notification config in namespace {namespace!r}: apply a Provider and an Alert"


def _gitrepo_details(gitrepo: GitRepo) -> str:
    spec = gitrepo.spec
    ref = f"revision {spec.revision}" if spec.revision else f"branch {spec.branch}"
    return (
        f"repo {spec.repo}, {ref}, paths {', '.join(spec.paths)}, "
        f"polling every {spec.polling_interval}"
    )


async def _not_found_is_error(call: Awaitable[T], message: str) -> T:
    try:
        return await call
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise FlotillaError(message) from None
        raise
