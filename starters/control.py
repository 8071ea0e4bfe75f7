"""``flotilla apply|cluster|get|describe|sync|pause|resume|delete``: the control commands.

Every input is validated here (Fleet YAML through ``flotilla.models``) before a workflow sees
it; workflows validate again in their update validators. Kubeconfigs go into the secret store
and only their secret names reach Temporal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.secrets import (
    KUBECONFIG_KEY,
    SecretStore,
    exists,
    kubeconfig_secret_name,
)
from flotilla.errors import FlotillaError, SpecError
from flotilla.ids import (
    CONTROL_TASK_QUEUE,
    bundle_workflow_id,
    gitrepo_workflow_id,
    registry_workflow_id,
)
from flotilla.kubenames import name_problem
from flotilla.models import DEFAULT_NAMESPACE, Cluster, ClusterGroup, GitRepo, load_fleet_objects
from runtime.stores import LazySecretStore, load_settings
from runtime.temporal import connect
from workflows.bundle_models import (
    BUNDLE_STATUS_QUERY,
    PAUSE_SIGNAL,
    BundleStatus,
    BundleStatusRequest,
    PauseRequest,
)
from workflows.gitrepo_models import (
    DELETE_UPDATE,
    GITREPO_STATUS_QUERY,
    GITREPO_WORKFLOW,
    SYNC_NOW_UPDATE,
    UPDATE_SPEC_UPDATE,
    DeleteRequest,
    DeleteResult,
    GitRepoState,
    GitRepoStatus,
    GitRepoStatusRequest,
    SyncNowRequest,
    SyncNowResult,
    UpdateSpecRequest,
    UpdateSpecResult,
)
from workflows.registry_models import (
    APPLY_CLUSTER_UPDATE,
    APPLY_GROUP_UPDATE,
    LABEL_CLUSTER_UPDATE,
    REGISTRY_WORKFLOW,
    REMOVE_CLUSTER_UPDATE,
    REMOVE_GROUP_UPDATE,
    SNAPSHOT_QUERY,
    ApplyClusterRequest,
    ApplyGroupRequest,
    LabelClusterRequest,
    RegistryChange,
    RegistrySnapshot,
    RegistryState,
    RemoveClusterRequest,
    RemoveGroupRequest,
    SnapshotRequest,
)
from workflows.visibility import GITREPO, KIND

T = TypeVar("T")


def _unwrap(err: WorkflowUpdateFailedError) -> FlotillaError:
    cause = err.cause
    message = getattr(cause, "message", None) or str(cause or err)
    return FlotillaError(" ".join(str(message).split()))


class Control:
    """The operations behind the commands, usable from tests and other starters."""

    def __init__(
        self, client: Client, *, task_queue: str = CONTROL_TASK_QUEUE, secrets: SecretStore
    ) -> None:
        self.client = client
        self.task_queue = task_queue
        self.secrets = secrets

    # --- registry ------------------------------------------------------------------------------

    async def _registry_update(
        self, namespace: str, update: str, request: BaseModel
    ) -> RegistryChange:
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            REGISTRY_WORKFLOW,
            RegistryState(namespace=namespace),
            id=registry_workflow_id(namespace),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"cluster registry of namespace {namespace}",
        )
        try:
            change: RegistryChange = await self.client.execute_update_with_start_workflow(
                update, request, start_workflow_operation=start, result_type=RegistryChange
            )
            return change
        except WorkflowUpdateFailedError as err:
            raise _unwrap(err) from None

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

    async def apply_cluster(self, cluster: Cluster) -> RegistryChange:
        namespace, name = cluster.metadata.namespace, cluster.metadata.name
        secret = cluster.spec.kube_config_secret or kubeconfig_secret_name(name)
        if not exists(self.secrets, namespace, secret):
            raise SpecError(
                f"cluster {namespace}/{name}: its kubeconfig Secret {namespace}/{secret} does "
                f"not exist: run `flotilla cluster add {name} --kubeconfig FILE -n {namespace}`"
                f" or create the Secret (key {KUBECONFIG_KEY!r})"
            )
        change: RegistryChange = await self._registry_update(
            namespace,
            APPLY_CLUSTER_UPDATE,
            ApplyClusterRequest(
                name=name,
                labels=cluster.metadata.labels or {},
                paused=cluster.spec.paused,
                kubeconfig_secret=secret,
                template_values={
                    k: str(v) for k, v in (cluster.spec.template_values or {}).items()
                },
            ),
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
        change: RegistryChange = await self._registry_update(
            namespace, REMOVE_CLUSTER_UPDATE, RemoveClusterRequest(name=name)
        )
        return change

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

    async def registry(self, namespace: str) -> RegistrySnapshot:
        handle = self.client.get_workflow_handle(registry_workflow_id(namespace))
        try:
            snapshot: RegistrySnapshot = await handle.query(
                SNAPSHOT_QUERY, SnapshotRequest(), result_type=RegistrySnapshot
            )
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return RegistrySnapshot(
                    namespace=namespace, version=0, clusters=[], groups=[], subscribers=[]
                )
            raise
        return snapshot

    # --- gitrepos -----------------------------------------------------------------------------

    async def apply_gitrepo(self, gitrepo: GitRepo, **switches: Any) -> str:
        """Start the GitRepo's workflow, or hand the running one its new spec."""
        namespace, name = gitrepo.metadata.namespace, gitrepo.metadata.name
        await self.ensure_registry(namespace)
        workflow_id = gitrepo_workflow_id(namespace, name)
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            GITREPO_WORKFLOW,
            GitRepoState(namespace=namespace, name=name, spec=gitrepo.spec, **switches),
            id=workflow_id,
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"gitrepo {namespace}/{name}: {gitrepo.spec.repo}",
            static_details=_gitrepo_details(gitrepo),
        )
        try:
            result: UpdateSpecResult = await self.client.execute_update_with_start_workflow(
                UPDATE_SPEC_UPDATE,
                UpdateSpecRequest(spec=gitrepo.spec),
                start_workflow_operation=start,
                result_type=UpdateSpecResult,
            )
        except WorkflowUpdateFailedError as err:
            raise _unwrap(err) from None
        message: str = result.message
        return message

    async def apply_text(self, text: str, *, file: str) -> list[str]:
        """Validate every document first, then apply them in order; one line per object."""
        objects, warnings = load_fleet_objects(text, file=file)
        lines = [f"warning: {w}" for w in warnings]
        for obj in objects:
            if isinstance(obj, GitRepo):
                await self.apply_gitrepo(obj)
            elif isinstance(obj, Cluster):
                await self.apply_cluster(obj)
            else:
                await self.apply_group(obj)
            lines.append(f"{obj.kind.lower()} {obj.metadata.namespace}/{obj.metadata.name} applied")
        return lines

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

    async def bundle_status(self, namespace: str, name: str) -> BundleStatus:
        status: BundleStatus = await _not_found_is_error(
            self.bundle(namespace, name).query(
                BUNDLE_STATUS_QUERY, BundleStatusRequest(), result_type=BundleStatus
            ),
            f"bundle {namespace}/{name} not found",
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

    async def list_bundles(self, namespace: str, gitrepo: str = "") -> list[BundleStatus]:
        extra = f" AND {GITREPO.name} = '{gitrepo}'" if gitrepo else ""
        names = await self._running("Bundle", namespace, extra)
        return list(await asyncio.gather(*(self.bundle_status(namespace, n) for n in names)))

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

    async def delete_gitrepo(self, namespace: str, name: str, *, wait: bool = True) -> str:
        handle = self.gitrepo(namespace, name)
        result: DeleteResult = await _not_found_is_error(
            handle.execute_update(DELETE_UPDATE, DeleteRequest(), result_type=DeleteResult),
            f"gitrepo {namespace}/{name} not found",
        )
        if wait:
            await handle.result()
        return f"gitrepo {namespace}/{name} deleted ({result.bundles} bundle(s) removed)"


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


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=False)]
    lines = [
        "   ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]
    return "\n".join(lines)


def render(items: Any, output: str, as_table: Callable[[], str]) -> str:
    if output == "table":
        return as_table()
    data = (
        [i.model_dump(mode="json") for i in items]
        if isinstance(items, list)
        else items.model_dump(mode="json")
    )
    if output == "json":
        return json.dumps(data, indent=2, sort_keys=True)
    return yaml.safe_dump(data, sort_keys=False).rstrip()


def gitrepo_table(items: list[GitRepoStatus]) -> str:
    return table(
        ["NAME", "REPO", "COMMIT", "BUNDLEDEPLOYMENTS-READY", "STATUS"],
        [
            [
                g.name,
                g.repo,
                g.commit[:12],
                g.ready_bundle_deployments,
                _status_text(g.state, g.message),
            ]
            for g in items
        ],
    )


def bundle_table(items: list[BundleStatus]) -> str:
    return table(
        ["NAME", "GITREPO", "COMMIT", "BUNDLEDEPLOYMENTS-READY", "STATUS"],
        [
            [
                b.bundle,
                b.gitrepo,
                b.commit[:12],
                f"{b.ready}/{b.desired}",
                _status_text(b.state, b.message),
            ]
            for b in items
        ],
    )


def _status_text(state: str, message: str) -> str:
    return state if state == "Ready" or not message else f"{state}: {message}"


def describe_gitrepo(status: GitRepoStatus) -> str:
    lines = [
        f"Name:        {status.namespace}/{status.name}",
        f"Repo:        {status.repo} ({status.branch})",
        f"Commit:      {status.commit}",
        f"Clusters:    {status.ready_clusters}/{status.desired_ready_clusters} ready",
        f"Deployments: {status.ready_bundle_deployments} ready",
        f"State:       {_status_text(status.state, status.message)}",
        "Bundles:",
        table(
            ["  NAME", "PATH", "READY", "STATE", "MESSAGE"],
            [
                [f"  {b.name}", b.path, f"{b.ready}/{b.desired}", b.state, b.error or b.message]
                for b in status.bundles
            ],
        ),
    ]
    lines += [f"Warning:     {w}" for w in status.warnings]
    return "\n".join(lines)


def describe_bundle(status: BundleStatus) -> str:
    lines = [
        f"Name:        {status.namespace}/{status.bundle}",
        f"GitRepo:     {status.gitrepo}",
        f"Commit:      {status.commit}",
        f"Paused:      {str(status.paused).lower()}",
        f"Ready:       {status.ready}/{status.desired}",
        f"State:       {_status_text(status.state, status.message)}",
        f"Rollout:     {status.summary}",
        "Clusters:",
        table(
            ["  CLUSTER", "STATE", "RELEASE", "LAST-DEPLOY", "MESSAGE"],
            [
                [f"  {c.cluster}", c.state, c.release, c.last_action, c.message]
                for c in status.clusters
            ],
        ),
    ]
    for cluster in status.clusters:
        for resource in cluster.non_ready:
            lines.append(f"Not ready on {cluster.cluster}: {resource}")
    for name, error in sorted(status.errors.items()):
        lines.append(f"Error on {name}: {error}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


def _labels(pairs: Sequence[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SpecError(f"-l: expected key=value, got {pair!r}")
        labels[key] = value
    return labels


def _kubeconfig_text(path: str, context: str | None) -> str:
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise SpecError(f"cannot read kubeconfig: {err.strerror}", file=path) from None
    if not context:
        return text
    data = yaml.safe_load(text)
    names = [c.get("name") for c in (data or {}).get("contexts") or []]
    if context not in names:
        raise SpecError(f"--context: {context!r} is not in the kubeconfig (has {names})", file=path)
    data["current-context"] = context
    return yaml.safe_dump(data, sort_keys=False)


def _run(args: argparse.Namespace, action: Callable[[Control], Awaitable[str]]) -> int:
    async def go() -> str:
        settings = load_settings()
        client = await connect(settings.temporal)
        control = Control(client, task_queue=args.task_queue, secrets=LazySecretStore(settings))
        return await action(control)

    print(asyncio.run(go()))
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.file == "-" else _read(args.file)
    load_fleet_objects(text, file=args.file)  # validate everything before any workflow sees it

    async def action(control: Control) -> str:
        return "\n".join(await control.apply_text(text, file=args.file))

    return _run(args, action)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as err:
        raise SpecError(f"cannot read: {err.strerror}", file=path) from None


def cmd_cluster_add(args: argparse.Namespace) -> int:
    kubeconfig = _kubeconfig_text(args.kubeconfig, args.context) if args.kubeconfig else None
    labels = _labels(args.label)

    async def action(control: Control) -> str:
        change = await control.add_cluster(args.namespace, args.name, kubeconfig, labels=labels)
        return change.message

    return _run(args, action)


def cmd_cluster_label(args: argparse.Namespace) -> int:
    set_labels = _labels([p for p in args.labels if not p.endswith("-")])
    remove = [p[:-1] for p in args.labels if p.endswith("-")]

    async def action(control: Control) -> str:
        change = await control.label_cluster(args.namespace, args.name, set_labels, remove)
        return change.message

    return _run(args, action)


def cmd_cluster_remove(args: argparse.Namespace) -> int:
    async def action(control: Control) -> str:
        return (await control.remove_cluster(args.namespace, args.name)).message

    return _run(args, action)


def age(since: datetime | None, now: datetime | None = None) -> str:
    """kubectl's way of saying how long ago: ``45s``, ``12m``, ``3h``, ``2d``; ``<never>``."""
    if since is None:
        return "<never>"
    seconds = max(0, int(((now or datetime.now(UTC)) - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def cluster_table(
    snapshot: RegistrySnapshot, bundles: list[BundleStatus], now: datetime | None = None
) -> str:
    ready: dict[str, int] = {}
    desired: dict[str, int] = {}
    for bundle in bundles:
        for cluster in bundle.clusters:
            desired[cluster.cluster] = desired.get(cluster.cluster, 0) + 1
            ready[cluster.cluster] = ready.get(cluster.cluster, 0) + (cluster.state == "Ready")
    return table(
        ["NAME", "LABELS", "PAUSED", "MODE", "BUNDLES-READY", "LAST-SEEN", "KUBECONFIG-SECRET"],
        [
            [
                c.name,
                ",".join(f"{k}={v}" for k, v in sorted(c.labels.items())) or "<none>",
                str(c.paused).lower(),
                "agent" if c.agent else "push",
                f"{ready.get(c.name, 0)}/{desired.get(c.name, 0)}",
                age(c.last_seen, now),
                c.kubeconfig_secret or "-",
            ]
            for c in snapshot.clusters
        ],
    )


async def _clusters(control: Control, namespace: str, output: str) -> str:
    snapshot = await control.registry(namespace)
    if output != "table":
        return render(snapshot, output, str)
    bundles = await control.list_bundles(namespace)
    return cluster_table(snapshot, bundles)


def cmd_cluster_list(args: argparse.Namespace) -> int:
    return _run(args, lambda control: _clusters(control, args.namespace, args.output))


def cmd_get(args: argparse.Namespace) -> int:
    async def action(control: Control) -> str:
        if args.kind in ("gitrepo", "gitrepos"):
            repos = await control.list_gitrepos(args.namespace)
            return render(repos, args.output, lambda: gitrepo_table(repos))
        if args.kind in ("bundle", "bundles"):
            bundles = await control.list_bundles(args.namespace)
            return render(bundles, args.output, lambda: bundle_table(bundles))
        return await _clusters(control, args.namespace, args.output)

    return _run(args, action)


def cmd_describe(args: argparse.Namespace) -> int:
    async def action(control: Control) -> str:
        if args.kind == "gitrepo":
            repo = await control.gitrepo_status(args.namespace, args.name)
            return render(repo, args.output, lambda: describe_gitrepo(repo))
        bundle = await control.bundle_status(args.namespace, args.name)
        return render(bundle, args.output, lambda: describe_bundle(bundle))

    return _run(args, action)


def cmd_sync(args: argparse.Namespace) -> int:
    return _run(args, lambda control: control.sync_gitrepo(args.namespace, args.name))


def cmd_pause(args: argparse.Namespace) -> int:
    paused = args.command == "pause"
    return _run(args, lambda c: c.pause_bundle(args.namespace, args.name, paused=paused))


def cmd_delete(args: argparse.Namespace) -> int:
    async def action(control: Control) -> str:
        if args.kind == "clustergroup":
            return (await control.remove_group(args.namespace, args.name)).message
        if args.kind == "cluster":
            return (await control.remove_cluster(args.namespace, args.name)).message
        return await control.delete_gitrepo(args.namespace, args.name)

    return _run(args, action)


def _common(parser: argparse.ArgumentParser, *, output: bool = False) -> None:
    parser.add_argument(
        "-n", "--namespace", default=DEFAULT_NAMESPACE, help=f"default {DEFAULT_NAMESPACE}"
    )
    parser.add_argument("--task-queue", default=CONTROL_TASK_QUEUE, help=argparse.SUPPRESS)
    if output:
        parser.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    apply = sub.add_parser("apply", help="apply Fleet GitRepo, Cluster and ClusterGroup YAML")
    apply.add_argument("-f", "--file", required=True, help="YAML file, or - for stdin")
    apply.add_argument("--task-queue", default=CONTROL_TASK_QUEUE, help=argparse.SUPPRESS)
    apply.set_defaults(handler=cmd_apply)

    cluster = sub.add_parser("cluster", help="register and label downstream clusters")
    actions = cluster.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add", help="register a cluster; its kubeconfig goes to the secret store"
    )
    add.add_argument("name")
    mode = add.add_mutually_exclusive_group(required=True)
    mode.add_argument("--kubeconfig", help="push mode: the central worker deploys with it")
    mode.add_argument(
        "--agent", action="store_true", help="agent mode: the cluster's own agent serves it"
    )
    add.add_argument("--context")
    add.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE")
    _common(add)
    add.set_defaults(handler=cmd_cluster_add)
    label = actions.add_parser("label", help="set KEY=VALUE or remove KEY- labels")
    label.add_argument("name")
    label.add_argument("labels", nargs="+")
    _common(label)
    label.set_defaults(handler=cmd_cluster_label)
    remove = actions.add_parser(
        "remove",
        help="unregister a cluster: its deployments are removed, then the kubeconfig Secret "
        "flotilla made for it",
    )
    remove.add_argument("name")
    _common(remove)
    remove.set_defaults(handler=cmd_cluster_remove)
    listing = actions.add_parser("list", help="list registered clusters")
    _common(listing, output=True)
    listing.set_defaults(handler=cmd_cluster_list)

    get = sub.add_parser("get", help="list gitrepos, bundles or clusters")
    get.add_argument(
        "kind", choices=("gitrepos", "gitrepo", "bundles", "bundle", "clusters", "cluster")
    )
    _common(get, output=True)
    get.set_defaults(handler=cmd_get)

    describe = sub.add_parser("describe", help="show a gitrepo or bundle in detail")
    describe.add_argument("kind", choices=("gitrepo", "bundle"))
    describe.add_argument("name")
    _common(describe, output=True)
    describe.set_defaults(handler=cmd_describe)

    sync = sub.add_parser("sync", help="poll a gitrepo now")
    sync.add_argument("kind", choices=("gitrepo",))
    sync.add_argument("name")
    _common(sync)
    sync.set_defaults(handler=cmd_sync)

    for verb in ("pause", "resume"):
        parser = sub.add_parser(verb, help=f"{verb} the rollout of a bundle's new versions")
        parser.add_argument("kind", choices=("bundle",))
        parser.add_argument("name")
        _common(parser)
        parser.set_defaults(handler=cmd_pause)

    delete = sub.add_parser(
        "delete",
        help="delete a gitrepo (and its deployments), a cluster or a clustergroup",
    )
    delete.add_argument("kind", choices=("gitrepo", "cluster", "clustergroup"))
    delete.add_argument("name")
    _common(delete)
    delete.set_defaults(handler=cmd_delete)
