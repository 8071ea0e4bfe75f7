"""The flotilla worker: the control queue and the shared push queues of push-mode clusters.

The control queue runs every workflow and the git/planning activities. The deploy activities
of every push-mode cluster run on a small fixed set of shared queues
(``flotilla.ids.push_task_queues``), the cluster named in each request and at most
``--cluster-concurrency`` calls at once per cluster (``activities.pushqueue``). Agent-mode
clusters keep a queue of their own, which their agent polls, not this worker. The worker
learns the clusters by querying the registry workflow every few seconds, for their kubeconfig
Secrets and last-seen probes; a cluster that leaves the registry keeps its kubeconfig for a
grace period so its uninstalls can still run.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from aiohttp import web
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Interceptor, PollerBehaviorAutoscaling, Worker

from activities.contentgc import ContentActivities
from activities.deploy import DeployActivities
from activities.diff import DiffActivities
from activities.gitops import GitOpsActivities
from activities.helmops import HelmOpActivities
from activities.notify import NotifyActivities
from activities.objectwatch import ObjectWatchActivities
from activities.pushqueue import PushDeployActivities
from activities.registry import RegistryActivities
from activities.schedules import ScheduleActivities
from activities.secrets import kubeconfig_secret_name
from activities.snapshots import SnapshotActivities
from activities.writeback import WriteBackActivities
from flotilla.errors import FlotillaError, UnreachableError
from flotilla.ids import (
    CONTROL_TASK_QUEUE,
    DEFAULT_NAMESPACE,
    PUSH_TASK_QUEUES,
    cluster_of_task_queue,
    cluster_task_queue,
    push_task_queues,
    registry_workflow_id,
    watch_task_queue,
)
from flotilla.settings import Settings, SettingsError
from runtime.metrics import (
    DeploymentRow,
    GitRepoRead,
    WorkerMetricsServer,
    install_sdk_metrics,
    start_metrics,
)
from runtime.shutdown import exit_after
from runtime.stores import content_store, load_settings, secret_store
from runtime.temporal import connect, ensure_search_attributes
from runtime.tools import locate_tools
from runtime.workflowcode import compile_workflows_once
from starters.control import Control
from starters.webhook import split_listen
from starters.webhookserver import WebhookConfig, WebhookReceiver, start_receiver
from workflows.bundle import BundleWorkflow
from workflows.contentgc import ContentGarbageWorkflow
from workflows.diff import DiffWorkflow
from workflows.gitrepo import GitRepoWorkflow
from workflows.gitrepo_models import (
    DEPLOYMENTS_PAGE,
    GITREPO_STATUS_QUERY,
    GitRepoStatus,
    GitRepoStatusRequest,
)
from workflows.helmop import HelmOpPollWorkflow, HelmOpWorkflow
from workflows.imagepolicy import ImagePolicyWorkflow
from workflows.notifications import NotificationWorkflow
from workflows.objectwatch import ObjectWatchWorkflow
from workflows.registry import ClusterRegistryWorkflow
from workflows.registry_models import ClustersSeen, SnapshotRequest

log = logging.getLogger("flotilla.worker")

WORKFLOWS = (
    ClusterRegistryWorkflow,
    GitRepoWorkflow,
    BundleWorkflow,
    ImagePolicyWorkflow,
    ContentGarbageWorkflow,
    ObjectWatchWorkflow,
    NotificationWorkflow,
    HelmOpWorkflow,
    HelmOpPollWorkflow,
    DiffWorkflow,
)
DEFAULT_THREADS = 16
DEFAULT_REFRESH_SECONDS = 5.0
DEFAULT_LINGER_SECONDS = 300.0
# How often the clusters this worker serves are probed for their last-seen time and
# reachability: a cluster that stops answering shows Offline within one interval (plus the
# probe's own timeout), well inside the bound of two intervals (60 s).
DEFAULT_SEEN_SECONDS = 30.0
# Most activity pollers per shared push queue; the SDK scales them between 1 and this with
# the backlog. Each poll returns one task, so on a loaded dev server (~0.8 s a poll) two
# fixed pollers per queue dispatched only ~2.5 tasks/s (bench_gitops 50x50). Each long poll
# holds an HTTP/2 stream, so the push queues have a connection of their own and at most 32
# polls on it (with 16 per queue beside the control queue's on one connection, a status
# query failed with "h2 protocol error").
DEFAULT_CLUSTER_POLLERS = 8
# Most workflow-task pollers of the control queue, scaled the same way (the SDK's fixed
# default of 5 bounded 50 busy bundle workflows the same way).
CONTROL_WORKFLOW_POLLERS = 20
# Workflow tasks this worker runs at once. Workflow code is Python under one GIL, so tasks
# running together do not run faster, they only each take longer: with the SDK's default
# (100) a burst of busy bundle workflows stretched every task past the SDK's 2 s deadlock
# bound and Temporal's task timeout, and each failed task was retried with a full replay of
# its history (bench_gitops 50 x 500, docs/orchestration.md "Worker"). A few at a
# time keep each task short; the rest wait on the server, in order.
DEFAULT_WORKFLOW_TASKS = 4
# A workflow task for a workflow cached on a worker waits this long on that worker's sticky
# queue before any worker may take it, and the worker that takes it then replays the whole
# history. A killed worker never takes it, so this is how long its cached workflows wait
# after a crash (until the server sees its sticky pollers gone). It was 3 s while a live
# worker's sticky pollers were always free; with DEFAULT_WORKFLOW_TASKS a busy worker's
# tasks wait their turn longer than that, and 3 s sent one task in seven to the normal queue
# to be replayed whole (bench_gitops 50 x 500: 731 replays of ~1,000 events, first commit
# 146 s; with 10 s, 38 replays and 127 s; docs/windows.md). The SDK's default.
STICKY_QUEUE_TIMEOUT = timedelta(seconds=10)
# One cluster runs at most this many deploy activities at once (a semaphore per cluster):
# too few, and a cluster with many bundles installs them a few at a time (50 installs of
# ~1.3 s need ~16 s at 4); too many, and one cluster's applies take the engine threads from
# the others and crowd its own API server. 4 until the waits stopped holding threads; with
# 8, Fleet's QA load (bench_gitops 50 x 50, measured deploy times, 3 real clusters) took
# 24.4 s instead of 29.7 s (medians of 3). Fleet's agent runs up to 50 bundle deployments
# at once on its cluster.
DEFAULT_CLUSTER_CONCURRENCY = 8
# CPython's garbage collector thresholds while a worker runs (young objects, then how many
# collections of each generation before the next is collected). The worker holds every
# cached workflow's state, hundreds of MB at 50 bundles x 500 clusters; with the defaults
# (700, 10, 10) the short-lived objects of each workflow task outlived the young generation,
# were promoted, and brought a full collection every ~5 s that held the GIL for 0.1-1.2 s
# while it walked the whole heap: 30 s of 196 s worker CPU, and every workflow task running
# meanwhile waited (bench_gitops 50 x 500: workflow-task p99 1.0-1.2 s). With a young
# generation of 50,000 objects almost all of them die before a collection: 0 full
# collections in the same run, p99 0.37 s (0.41 s, median of three), worker RSS 804 MiB
# instead of 624 MiB (docs/orchestration.md "The garbage collector").
GC_THRESHOLDS = (50_000, 20, 10)
# Object watchers one worker runs at most (one per push-mode cluster it serves).
MAX_OBJECT_WATCHERS = 20_000
# Threads for the push-mode deploy activities' blocking work (helm runs, API calls, one look
# at readiness at a time); their waits (for Ready, for a cluster's slot) hold none.
DEFAULT_CLUSTER_THREADS = 64
# Push-mode deploy activities this worker runs at once (waits for Ready included), split
# evenly over the push queues. More than the threads: a deploy holds a thread for its apply
# only, so with slots equal to threads (before 2026-12-06) every readiness wait kept a thread
# idle (bench_gitops 50 x 50 on measured deploy times: 56.9 s, thread-bound). Not unbounded:
# a task taken here waits here, where another worker might have run it sooner.
DEFAULT_CLUSTER_TASKS = 256
STARTED_LINE = "worker started"
# How often the fleet's state gauges are read from visibility.
DEFAULT_METRICS_REFRESH_SECONDS = 15.0


def push_queue_slots(cluster_tasks: int) -> int:
    """Deploy activities one push queue runs at once: the worker's cluster tasks shared out
    between the shared push queues (``flotilla.ids.PUSH_TASK_QUEUES``), at least two each."""
    return max(2, -(-cluster_tasks // PUSH_TASK_QUEUES))


def push_queue_pollers(cluster_pollers: int) -> PollerBehaviorAutoscaling:
    """How one push queue is polled: up to ``cluster_pollers`` polls, as its backlog asks."""
    return PollerBehaviorAutoscaling(
        minimum=1, maximum=max(1, cluster_pollers), initial=min(2, max(1, cluster_pollers))
    )


@dataclass
class WorkerConfig:
    """How this worker process runs (flags); where things live is in ``Settings``."""

    task_queue: str = CONTROL_TASK_QUEUE
    namespaces: list[str] = field(default_factory=lambda: [DEFAULT_NAMESPACE])
    control_threads: int = DEFAULT_THREADS
    workflow_tasks: int = DEFAULT_WORKFLOW_TASKS
    cluster_threads: int = DEFAULT_CLUSTER_THREADS
    cluster_tasks: int = DEFAULT_CLUSTER_TASKS
    cluster_concurrency: int = DEFAULT_CLUSTER_CONCURRENCY
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS
    linger_seconds: float = DEFAULT_LINGER_SECONDS
    seen_seconds: float = DEFAULT_SEEN_SECONDS
    cluster_pollers: int = DEFAULT_CLUSTER_POLLERS
    # One object watcher per served push-mode cluster (drift seen in seconds); off, drift is
    # found by the periodic check alone.
    watch_objects: bool = True
    workdir: Path = field(default_factory=lambda: Path.home() / ".cache" / "flotilla" / "work")
    # HOST:PORT of the git webhook receiver; None runs none (`flotilla webhook serve` may).
    webhook_listen: str | None = None
    # HOST:PORT of the Prometheus endpoint; None serves none.
    metrics_listen: str | None = None
    # Where the Temporal SDK's runtime serves its own metrics (loopback), bridged into ours.
    sdk_metrics_address: str | None = None
    metrics_refresh_seconds: float = DEFAULT_METRICS_REFRESH_SECONDS


class FlotillaWorker:
    """One control worker plus per-cluster workers that follow the registries."""

    def __init__(
        self,
        client: Client,
        config: WorkerConfig,
        settings: Settings,
        *,
        deploy: DeployActivities | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.settings = settings
        self.secrets = secrets = secret_store(settings)
        content = content_store(settings, secrets)
        self.gitops = GitOpsActivities(
            client,
            secrets,
            content,
            config.workdir / "git",
            system_namespace=settings.system_namespace,
            skip_host_key_checks=settings.insecure_skip_host_key_checks,
        )
        # ``deploy`` may be a stand-in with the same activity names (benchmarks).
        self.deploy = deploy or DeployActivities(
            secrets, content, config.workdir / "deploy", tools=locate_tools(settings.tools)
        )
        # The push queues' activities: ``deploy`` behind one semaphore per cluster, its
        # blocking work on the cluster threads.
        self.push = PushDeployActivities(
            self.deploy,
            config.cluster_concurrency,
            config.cluster_threads,
            watchers=config.cluster_tasks,
        )
        # `flotilla diff` renders and reads clusters with the deploy engine's credentials.
        self.diff = DiffActivities(self.deploy)
        self.registry = RegistryActivities(secrets)
        self.helmops = HelmOpActivities(secrets, content, self.registry, client)
        self.writeback = WriteBackActivities(self.gitops, config.workdir / "writeback")
        self.schedules = ScheduleActivities(client, content, self.gitops)
        self.content = ContentActivities(client, content)
        self.snapshots = SnapshotActivities(content)
        self.notify = NotifyActivities(
            secrets, ui_url=settings.temporal_ui_url, temporal_namespace=settings.temporal.namespace
        )
        self._queues = push_task_queues(config.task_queue)
        self._per_queue = push_queue_slots(config.cluster_tasks)
        # Object watchers start, stop and signal as the CLI and agents do.
        self.control = Control(client, task_queue=config.task_queue, secrets=secrets)
        self.objectwatch = ObjectWatchActivities(self.deploy, self.control.objects_changed)
        self._control_pool = ThreadPoolExecutor(config.control_threads, "flotilla-control")
        self._control: Worker | None = None
        self._control_task: asyncio.Task[None] | None = None
        self._push: list[tuple[Worker, asyncio.Task[None]]] = []
        self._push_client: Client | None = None
        # Push-mode clusters this worker serves, by their cluster_task_queue name (only an
        # identity: for push mode no Temporal worker polls that queue).
        self._clusters: set[str] = set()
        self._gone_since: dict[str, float] = {}
        self._refresher: asyncio.Task[None] | None = None
        self._seen_reporter: asyncio.Task[None] | None = None
        self._webhook: web.AppRunner | None = None
        # The port the webhook receiver listens on (the one bound when asked for port 0).
        self.webhook_port = 0
        self.metrics: WorkerMetricsServer | None = None
        self._metrics_reader: asyncio.Task[None] | None = None
        self._interceptors: list[Interceptor] = []

    @property
    def cluster_queues(self) -> list[str]:
        """The push-mode clusters served, as ``cluster_task_queue`` names (identities only)."""
        return sorted(self._clusters)

    @property
    def push_queues(self) -> list[str]:
        """The shared queues this worker polls for push-mode clusters' deploy activities."""
        return list(self._queues)

    async def read_deployments(
        self, workflow_id: str, *, page: int = DEPLOYMENTS_PAGE
    ) -> GitRepoRead:
        """A GitRepo's bundle deployments, for ``fleet_bundledeployment_state``, and its
        branch and paths, labels of ``fleet_gitrepo_*``; read ``page`` at a time."""
        handle = self.client.get_workflow_handle(workflow_id)
        rows: list[DeploymentRow] = []
        while True:
            # Page by page: the whole list is over the 2 MB payload limit at 50 x 500. Pages
            # of one read may straddle a report (a deployment seen twice or not at all until
            # the next refresh), which a gauge refreshed every few seconds can live with.
            status = await handle.query(
                GITREPO_STATUS_QUERY,
                GitRepoStatusRequest(
                    deployments=True, deployments_offset=len(rows), deployments_limit=page
                ),
                result_type=GitRepoStatus,
            )
            rows.extend(
                DeploymentRow(
                    namespace=status.namespace,
                    gitrepo=status.name,
                    bundle=d.bundle,
                    cluster=d.cluster,
                    commit=d.commit,
                    state=d.state,
                )
                for d in status.deployments
            )
            if not status.deployments or len(rows) >= status.deployments_total:
                return GitRepoRead(branch=status.spec_branch, paths=status.paths, deployments=rows)

    async def start(self) -> None:
        gc.set_threshold(*GC_THRESHOLDS)
        if self.config.metrics_listen:
            self.metrics = start_metrics(
                self.client,
                split_listen(self.config.metrics_listen),
                sdk_address=self.config.sdk_metrics_address,
                deployments=self.read_deployments,
            )
            self._interceptors = [self.metrics.activities]
            await self.metrics.state.refresh()
            self._metrics_reader = asyncio.create_task(
                _every(
                    self.config.metrics_refresh_seconds,
                    self.metrics.state.refresh,
                    "fleet state read",
                )
            )
        # The sandbox executes a workflow's module for each run it loads, on the event loop:
        # compiled once here, not at each of them when no bytecode is cached.
        compile_workflows_once({w.__module__ for w in WORKFLOWS})
        self._control = Worker(
            self.client,
            task_queue=self.config.task_queue,
            workflows=list(WORKFLOWS),
            activities=[
                self.gitops.ls_remote,
                self.gitops.fetch_bundles,
                self.gitops.plan_bundle,
                self.gitops.downstream_digest,
                self.gitops.sync_bundles,
                self.gitops.sync_bundles_shared,
                self.registry.poll_registry,
                self.writeback.write_back,
                self.schedules.sync_image_schedules,
                self.schedules.record_policy_state,
                self.schedules.request_gitrepo_sync,
                self.content.collect_garbage,
                self.snapshots.store_snapshot,
                self.snapshots.load_snapshot,
                self.snapshots.split_snapshot,
                self.notify.deliver_notification,
                self.notify.deliver_notifications,
                self.helmops.resolve_helmop,
                self.helmops.sync_helmop_schedule,
                self.helmops.bundle_states,
                self.helmops.select_bundles,
                self.diff.diff_deployment,
            ],
            activity_executor=self._control_pool,
            max_concurrent_activities=self.config.control_threads,
            max_concurrent_workflow_tasks=self.config.workflow_tasks,
            workflow_task_poller_behavior=PollerBehaviorAutoscaling(
                maximum=CONTROL_WORKFLOW_POLLERS
            ),
            sticky_queue_schedule_to_start_timeout=STICKY_QUEUE_TIMEOUT,
            interceptors=self._interceptors,
        )
        self._control_task = asyncio.create_task(self._control.run())
        push = self.push
        self._push_client = await connect(self.settings.temporal)
        for queue in self._queues:
            worker = Worker(
                self._push_client,
                task_queue=queue,
                activities=[
                    push.deploy_bundle,
                    push.check_deployment,
                    push.check_deployments,
                    push.wait_ready,
                    push.remove_deployment,
                ],
                max_concurrent_activities=self._per_queue,
                activity_task_poller_behavior=push_queue_pollers(self.config.cluster_pollers),
                interceptors=self._interceptors,
            )
            self._push.append((worker, asyncio.create_task(worker.run())))
        # The object watchers: async, one slot each for as long as it runs, so a queue of
        # their own with a slot for every cluster a worker could serve.
        watcher = Worker(
            self._push_client,
            task_queue=watch_task_queue(self.config.task_queue),
            activities=[self.objectwatch.watch_objects],
            max_concurrent_activities=MAX_OBJECT_WATCHERS,
        )
        self._push.append((watcher, asyncio.create_task(watcher.run())))
        await self.refresh_clusters()
        self._refresher = asyncio.create_task(
            _every(self.config.refresh_seconds, self.refresh_clusters, "cluster refresh")
        )
        self._seen_reporter = asyncio.create_task(
            _every(self.config.seen_seconds, self.report_seen, "cluster probe")
        )
        if self.config.webhook_listen:
            receiver = WebhookReceiver(
                self.client,
                self.secrets,
                WebhookConfig(
                    listen=self.config.webhook_listen,
                    secret_namespace=self.settings.system_namespace,
                ),
                on_push=self.metrics.count_webhook if self.metrics else None,
            )
            self._webhook, self.webhook_port = await start_receiver(receiver)
        log.info(
            "%s: control queue %s, %d push queue(s), %d push-mode cluster(s)",
            STARTED_LINE,
            self.config.task_queue,
            len(self._queues),
            len(self._clusters),
        )

    async def report_seen(self) -> dict[str, str]:
        """Probe each push-mode cluster this worker serves (GET /version with its kubeconfig)
        and send the registries the time each one answered. Returns queue -> "" or why not."""
        loop = asyncio.get_running_loop()
        queues = self.cluster_queues
        problems = await asyncio.gather(
            *(
                loop.run_in_executor(
                    self._control_pool, self.deploy.probe, *cluster_of_task_queue(queue)
                )
                for queue in queues
            )
        )
        now = datetime.now(UTC)
        reports: dict[str, ClustersSeen] = {}
        for queue, problem in zip(queues, problems, strict=True):
            namespace, cluster = cluster_of_task_queue(queue)
            if self.metrics is not None:
                self.metrics.clusters.observe(namespace, cluster, answered=not problem)
            report = reports.setdefault(namespace, ClustersSeen(seen={}, probed_at=now))
            if problem:
                log.info("cluster %s/%s not reached: %s", namespace, cluster, problem)
                report.unreachable[cluster] = problem
            else:
                report.seen[cluster] = now
        for namespace, report in reports.items():
            # The registry marks clusters that stop answering unreachable (and clears them).
            handle = self.client.get_workflow_handle(registry_workflow_id(namespace))
            await handle.signal(ClusterRegistryWorkflow.clusters_seen, report)
        return dict(zip(queues, problems, strict=True))

    async def refresh_clusters(self) -> None:
        """Serve every registered push-mode cluster, forget those gone for the grace period
        and then delete the kubeconfig Secret flotilla made for them."""
        wanted: set[str] = set()
        # Namespaces whose registry answered, and the kubeconfig Secrets its clusters use.
        answered: set[str] = set()
        in_use: set[tuple[str, str]] = set()
        for namespace in self.config.namespaces:
            handle = self.client.get_workflow_handle(registry_workflow_id(namespace))
            try:
                snapshot = await handle.query(ClusterRegistryWorkflow.snapshot, SnapshotRequest())
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    # Not an answer: keep serving what this namespace had, never drop it.
                    log.warning("registry %s did not answer: %s", namespace, err.message)
                    prefix = cluster_task_queue(namespace, "")
                    wanted.update(q for q in self._clusters if q.startswith(prefix))
                continue
            answered.add(namespace)
            for record in snapshot.clusters:
                if record.agent:
                    continue
                wanted.add(cluster_task_queue(namespace, record.name))
                secret = record.kubeconfig_secret or kubeconfig_secret_name(record.name)
                in_use.add((namespace, secret))
                if record.kubeconfig_secret:
                    self.deploy.kubeconfig_secrets[namespace, record.name] = (
                        record.kubeconfig_secret
                    )
        now = time.monotonic()
        for queue in sorted(wanted - set(self._clusters)):
            await self._start_cluster(queue)
        for queue in list(self._clusters):
            if queue in wanted:
                self._gone_since.pop(queue, None)
                continue
            since = self._gone_since.setdefault(queue, now)
            if now - since >= self.config.linger_seconds:
                await self._stop_object_watch(queue)
                await self._stop_cluster(queue)
                namespace, cluster = cluster_of_task_queue(queue)
                # Only a registry that answered says the cluster is gone; one that is
                # missing (terminated by hand) keeps its clusters' kubeconfigs.
                if namespace in answered:
                    await self._forget_kubeconfig(namespace, cluster, in_use)

    async def _forget_kubeconfig(
        self, namespace: str, cluster: str, in_use: set[tuple[str, str]]
    ) -> None:
        """Delete a removed cluster's kubeconfig Secret once its uninstalls had their grace
        period: only one flotilla wrote, and only when no other cluster still uses it."""
        secret = self.deploy.kubeconfig_secret(namespace, cluster)
        self.deploy.kubeconfig_secrets.pop((namespace, cluster), None)
        if (namespace, secret) in in_use:
            return
        loop = asyncio.get_running_loop()
        delete = functools.partial(self.secrets.delete, namespace, secret, if_managed=True)
        try:
            deleted = await loop.run_in_executor(self._control_pool, delete)
        except FlotillaError as err:
            log.warning(
                "kubeconfig secret %s/%s of removed cluster %s stays: %s",
                namespace,
                secret,
                cluster,
                err,
            )
            return
        if deleted:
            log.info(
                "deleted kubeconfig secret %s/%s of removed cluster %s", namespace, secret, cluster
            )

    async def _start_cluster(self, queue: str) -> None:
        self._clusters.add(queue)
        log.info("serving push-mode cluster %s/%s", *cluster_of_task_queue(queue))
        if self.config.watch_objects:
            await self._start_object_watch(queue)

    async def _start_object_watch(self, queue: str) -> None:
        namespace, cluster = cluster_of_task_queue(queue)
        try:
            await self.control.start_object_watch(namespace, cluster)
        except RPCError as err:
            log.warning("object watcher of cluster %s/%s not started: %s", namespace, cluster, err)

    async def _stop_object_watch(self, queue: str) -> None:
        namespace, cluster = cluster_of_task_queue(queue)
        try:
            await self.control.stop_object_watch(namespace, cluster)
        except RPCError as err:
            log.warning("object watcher of cluster %s/%s not stopped: %s", namespace, cluster, err)

    async def _stop_cluster(self, queue: str) -> None:
        self._clusters.discard(queue)
        self._gone_since.pop(queue, None)
        log.info("stopped serving push-mode cluster %s/%s", *cluster_of_task_queue(queue))

    async def stop(self) -> None:
        if self._webhook is not None:
            await self._webhook.cleanup()
        for task in (self._refresher, self._seen_reporter, self._metrics_reader):
            if task is not None:
                task.cancel()
        for queue in list(self._clusters):
            await self._stop_cluster(queue)
        for worker, task in self._push:
            await worker.shutdown()
            await task
        self._push = []
        if self._control is not None and self._control_task is not None:
            await self._control.shutdown()
            await self._control_task
        self._control_pool.shutdown(wait=False)
        self.push.close()
        if self.metrics is not None:
            self.metrics.stop()


async def _every(seconds: float, work: Callable[[], Awaitable[object]], what: str) -> None:
    """Run ``work`` every ``seconds`` until cancelled; a failure is logged, never fatal."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await work()
        except Exception as err:  # housekeeping must never stop the worker
            log.warning("%s failed: %s", what, err)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def parse_args(argv: Sequence[str] | None, settings: Settings) -> WorkerConfig:
    parser = argparse.ArgumentParser(prog="flotilla-worker", description=__doc__)
    parser.add_argument(
        "--task-queue", default=os.environ.get("FLOTILLA_TASK_QUEUE", CONTROL_TASK_QUEUE)
    )
    parser.add_argument(
        "--namespace",
        action="append",
        dest="namespaces",
        help="Fleet namespace whose registered clusters to serve (repeatable; "
        f"default {DEFAULT_NAMESPACE})",
    )
    parser.add_argument(
        "--control-threads",
        type=int,
        default=_env_int("FLOTILLA_CONTROL_THREADS", DEFAULT_THREADS),
        help="threads for git and planning activities ($FLOTILLA_CONTROL_THREADS)",
    )
    parser.add_argument(
        "--workflow-tasks",
        type=int,
        default=_env_int("FLOTILLA_WORKFLOW_TASKS", DEFAULT_WORKFLOW_TASKS),
        help="workflow tasks run at once, at least 2 ($FLOTILLA_WORKFLOW_TASKS; "
        f"default {DEFAULT_WORKFLOW_TASKS})",
    )
    parser.add_argument(
        "--cluster-threads",
        type=int,
        default=_env_int("FLOTILLA_CLUSTER_THREADS", DEFAULT_CLUSTER_THREADS),
        help="threads for push-mode deploys' helm runs and API calls; a wait for Ready "
        f"holds none ($FLOTILLA_CLUSTER_THREADS; default {DEFAULT_CLUSTER_THREADS})",
    )
    parser.add_argument(
        "--cluster-tasks",
        type=int,
        default=_env_int("FLOTILLA_CLUSTER_TASKS", DEFAULT_CLUSTER_TASKS),
        help="push-mode deploy activities run at once, waits for Ready included, split over "
        f"the push queues ($FLOTILLA_CLUSTER_TASKS; default {DEFAULT_CLUSTER_TASKS})",
    )
    parser.add_argument(
        "--cluster-concurrency",
        type=int,
        default=_env_int("FLOTILLA_CLUSTER_CONCURRENCY", DEFAULT_CLUSTER_CONCURRENCY),
        help="tasks one cluster runs at once ($FLOTILLA_CLUSTER_CONCURRENCY)",
    )
    parser.add_argument(
        "--cluster-pollers",
        type=int,
        default=_env_int("FLOTILLA_CLUSTER_POLLERS", DEFAULT_CLUSTER_POLLERS),
        help="most activity pollers per shared push queue, scaled with the backlog "
        "($FLOTILLA_CLUSTER_POLLERS)",
    )
    parser.add_argument(
        "--no-object-watch",
        dest="watch_objects",
        action="store_false",
        help="no object watchers: drift is found by the periodic check alone",
    )
    parser.add_argument("--refresh-seconds", type=float, default=DEFAULT_REFRESH_SECONDS)
    parser.add_argument("--linger-seconds", type=float, default=DEFAULT_LINGER_SECONDS)
    parser.add_argument(
        "--seen-seconds",
        type=float,
        default=DEFAULT_SEEN_SECONDS,
        help="how often each served cluster is probed (last-seen time, Offline when unreachable)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="scratch space for clones and renders, never state ($FLOTILLA_WORKDIR)",
    )
    parser.add_argument(
        "--webhook-listen",
        metavar="HOST:PORT",
        default=os.environ.get("FLOTILLA_WEBHOOK_LISTEN") or None,
        help="serve the git webhook receiver there, POST /webhook ($FLOTILLA_WEBHOOK_LISTEN)",
    )
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        default=os.environ.get("FLOTILLA_METRICS_LISTEN") or None,
        help="serve Prometheus metrics there, GET /metrics ($FLOTILLA_METRICS_LISTEN)",
    )
    args = parser.parse_args(argv)
    if args.workflow_tasks < 2:
        parser.error(f"--workflow-tasks: {args.workflow_tasks}: must be at least 2")
    for flag, count in (
        ("--cluster-threads", args.cluster_threads),
        ("--cluster-tasks", args.cluster_tasks),
        ("--cluster-concurrency", args.cluster_concurrency),
    ):
        if count < 1:
            parser.error(f"{flag}: {count}: must be at least 1")
    for flag, value in (
        ("--webhook-listen", args.webhook_listen),
        ("--metrics-listen", args.metrics_listen),
    ):
        if value:
            try:
                split_listen(value)
            except ValueError as err:
                parser.error(f"{flag}: {err}")
    return WorkerConfig(
        task_queue=args.task_queue,
        namespaces=args.namespaces or [DEFAULT_NAMESPACE],
        control_threads=args.control_threads,
        workflow_tasks=args.workflow_tasks,
        cluster_threads=args.cluster_threads,
        cluster_tasks=args.cluster_tasks,
        cluster_pollers=args.cluster_pollers,
        cluster_concurrency=args.cluster_concurrency,
        refresh_seconds=args.refresh_seconds,
        linger_seconds=args.linger_seconds,
        seen_seconds=args.seen_seconds,
        watch_objects=args.watch_objects,
        workdir=args.workdir or settings.workdir,
        webhook_listen=args.webhook_listen,
        metrics_listen=args.metrics_listen,
    )


# How long SIGTERM's drain may take before the worker exits anyway (a pod's default grace is
# 30 s, after which it would be killed without a word).
SHUTDOWN_SECONDS = 20.0


async def serve(config: WorkerConfig, settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then finish running tasks and stop (at most
    ``SHUTDOWN_SECONDS``; what is still running then is left to Temporal's retries)."""
    if config.metrics_listen:
        config.sdk_metrics_address = install_sdk_metrics()
    client = await connect(settings.temporal)
    added = await ensure_search_attributes(client, settings.temporal.namespace)
    if added:
        log.info("registered search attributes %s", ", ".join(added))
    worker = FlotillaWorker(client, config, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await worker.start()
    await stop.wait()
    await shut_down(worker, SHUTDOWN_SECONDS)


class _Stoppable(Protocol):
    async def stop(self) -> None: ...


async def shut_down(worker: _Stoppable, seconds: float) -> None:
    """Drain ``worker``; the process ends at most ``seconds`` from now whatever holds it.

    Bounded from a thread, not by the event loop, and up to the process's very end, not just
    the drain: after the drain, asyncio.run waits for the default executor's threads and the
    interpreter joins the activity pools' threads, so an activity thread that outlives its
    cancelled activity holds the exit (test workers were SIGKILLed 30 s after SIGTERM with the
    drain done and the bound already cancelled). The timer thread is a daemon: a process that
    ends in time ends it too."""
    log.info("shutting down")
    exit_after(seconds)
    await worker.stop()
    log.info("drained; exiting")


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # urllib3 logs each retry of a refused connection as a WARNING (three per probe of a
    # stopped API server); the probe and the activities say the same once, in their own line.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    try:
        settings = load_settings()
        # The stores are built in serve (a kubernetes secret store checks its credentials
        # then): a wrong setting found there stops start-up the same way.
        asyncio.run(serve(parse_args(argv, settings), settings))
    except SettingsError as err:
        log.error("%s", err)
        return 2
    except UnreachableError as err:
        log.error("%s", err)
        return 4
    except FlotillaError as err:  # a listen address already in use, say
        log.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
