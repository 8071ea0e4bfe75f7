"""The flotilla worker: the control queue and, in push mode, one queue per registered cluster.

The control queue runs every workflow and the git/planning activities. Each cluster registered
in a watched namespace gets its own task queue (``cluster.<namespace>.<name>``) with the deploy
activities; the worker learns the clusters by querying the registry workflow every few
seconds and starts or stops those per-cluster workers to match. A cluster that leaves the
registry keeps its worker for a grace period so its uninstalls can still run.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Interceptor, Worker

from activities.contentgc import ContentActivities
from activities.deploy import DeployActivities
from activities.gitops import GitOpsActivities
from activities.registry import RegistryActivities
from activities.schedules import ScheduleActivities
from activities.secrets import kubeconfig_secret_name
from activities.writeback import WriteBackActivities
from flotilla.errors import FlotillaError, UnreachableError
from flotilla.ids import (
    CONTROL_TASK_QUEUE,
    DEFAULT_NAMESPACE,
    cluster_of_task_queue,
    cluster_task_queue,
    registry_workflow_id,
)
from flotilla.settings import Settings, SettingsError
from runtime.metrics import MetricsServer, start_metrics
from runtime.stores import content_store, load_settings, secret_store
from runtime.temporal import connect, ensure_search_attributes
from runtime.tools import locate_tools
from starters.webhook import split_listen
from starters.webhookserver import WebhookConfig, WebhookReceiver, start_receiver
from workflows.bundle import BundleWorkflow
from workflows.contentgc import ContentGarbageWorkflow
from workflows.gitrepo import GitRepoWorkflow
from workflows.imagepolicy import ImagePolicyWorkflow
from workflows.registry import ClusterRegistryWorkflow
from workflows.registry_models import ClustersSeen, SnapshotRequest

log = logging.getLogger("flotilla.worker")

WORKFLOWS = (
    ClusterRegistryWorkflow,
    GitRepoWorkflow,
    BundleWorkflow,
    ImagePolicyWorkflow,
    ContentGarbageWorkflow,
)
DEFAULT_THREADS = 16
DEFAULT_REFRESH_SECONDS = 5.0
DEFAULT_LINGER_SECONDS = 300.0
# How often the clusters this worker serves are probed for their last-seen time.
DEFAULT_SEEN_SECONDS = 60.0
# Every long poll holds an HTTP/2 stream of the one client connection; with five pollers per
# cluster queue (the SDK default) a hundred clusters exhaust the streams and tasks wait a
# whole poll timeout. One poller per cluster queue keeps dispatch prompt.
DEFAULT_CLUSTER_POLLERS = 1
# For the same reason cluster queues are spread over several connections, this many each.
CLUSTERS_PER_CONNECTION = 50
# A cluster worker takes at most this many tasks at once. Tasks taken beyond what the shared
# thread pool runs wait there without heartbeating and time out; too few, and a cluster
# with many slow readiness waits holds back its other bundles.
DEFAULT_CLUSTER_CONCURRENCY = 4
DEFAULT_CLUSTER_THREADS = 64
STARTED_LINE = "worker started"
# How often the fleet's state gauges are read from visibility.
DEFAULT_METRICS_REFRESH_SECONDS = 15.0


@dataclass
class WorkerConfig:
    """How this worker process runs (flags); where things live is in ``Settings``."""

    task_queue: str = CONTROL_TASK_QUEUE
    namespaces: list[str] = field(default_factory=lambda: [DEFAULT_NAMESPACE])
    control_threads: int = DEFAULT_THREADS
    cluster_threads: int = DEFAULT_CLUSTER_THREADS
    cluster_concurrency: int = DEFAULT_CLUSTER_CONCURRENCY
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS
    linger_seconds: float = DEFAULT_LINGER_SECONDS
    seen_seconds: float = DEFAULT_SEEN_SECONDS
    cluster_pollers: int = DEFAULT_CLUSTER_POLLERS
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
        self.gitops = GitOpsActivities(client, secrets, content, config.workdir / "git")
        # ``deploy`` may be a stand-in with the same activity names (benchmarks).
        self.deploy = deploy or DeployActivities(
            secrets, content, config.workdir / "deploy", tools=locate_tools(settings.tools)
        )
        self.registry = RegistryActivities(secrets)
        self.writeback = WriteBackActivities(self.gitops, config.workdir / "writeback")
        self.schedules = ScheduleActivities(client, content, self.gitops)
        self.content = ContentActivities(client, content)
        self._control_pool = ThreadPoolExecutor(config.control_threads, "flotilla-control")
        self._cluster_pool = ThreadPoolExecutor(config.cluster_threads, "flotilla-cluster")
        self._control: Worker | None = None
        self._control_task: asyncio.Task[None] | None = None
        self._clusters: dict[str, tuple[Worker, asyncio.Task[None]]] = {}
        # Connections for cluster workers and the queues each one serves.
        self._connections: list[tuple[Client, set[str]]] = []
        self._gone_since: dict[str, float] = {}
        self._refresher: asyncio.Task[None] | None = None
        self._seen_reporter: asyncio.Task[None] | None = None
        self._webhook: web.AppRunner | None = None
        # The port the webhook receiver listens on (the one bound when asked for port 0).
        self.webhook_port = 0
        self.metrics: MetricsServer | None = None
        self._metrics_reader: asyncio.Task[None] | None = None
        self._interceptors: list[Interceptor] = []

    @property
    def cluster_queues(self) -> list[str]:
        return sorted(self._clusters)

    async def start(self) -> None:
        if self.config.metrics_listen:
            self.metrics = start_metrics(
                self.client,
                split_listen(self.config.metrics_listen),
                sdk_address=self.config.sdk_metrics_address,
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
        self._control = Worker(
            self.client,
            task_queue=self.config.task_queue,
            workflows=list(WORKFLOWS),
            activities=[
                self.gitops.ls_remote,
                self.gitops.fetch_bundles,
                self.gitops.plan_bundle,
                self.gitops.sync_bundles,
                self.registry.poll_registry,
                self.writeback.write_back,
                self.schedules.sync_image_schedules,
                self.schedules.record_policy_state,
                self.schedules.request_gitrepo_sync,
                self.content.collect_garbage,
            ],
            activity_executor=self._control_pool,
            max_concurrent_activities=self.config.control_threads,
            interceptors=self._interceptors,
        )
        self._control_task = asyncio.create_task(self._control.run())
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
            "%s: control queue %s, %d cluster queue(s)",
            STARTED_LINE,
            self.config.task_queue,
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
        seen: dict[str, dict[str, datetime]] = {}
        for queue, problem in zip(queues, problems, strict=True):
            namespace, cluster = cluster_of_task_queue(queue)
            if problem:
                log.info("cluster %s/%s not reached: %s", namespace, cluster, problem)
            else:
                seen.setdefault(namespace, {})[cluster] = now
        for namespace, clusters in seen.items():
            handle = self.client.get_workflow_handle(registry_workflow_id(namespace))
            await handle.signal(ClusterRegistryWorkflow.clusters_seen, ClustersSeen(seen=clusters))
        return dict(zip(queues, problems, strict=True))

    async def refresh_clusters(self) -> None:
        """Start a worker for every registered cluster, stop those gone for the grace period
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

    async def _connection_for(self, queue: str) -> Client:
        for client, queues in self._connections:
            if len(queues) < CLUSTERS_PER_CONNECTION:
                queues.add(queue)
                return client
        client = await connect(self.settings.temporal)
        self._connections.append((client, {queue}))
        return client

    async def _start_cluster(self, queue: str) -> None:
        worker = Worker(
            await self._connection_for(queue),
            task_queue=queue,
            activities=[
                self.deploy.deploy_bundle,
                self.deploy.check_deployment,
                self.deploy.wait_ready,
                self.deploy.remove_deployment,
            ],
            activity_executor=self._cluster_pool,
            max_concurrent_activities=min(
                self.config.cluster_concurrency, self.config.cluster_threads
            ),
            max_concurrent_activity_task_polls=self.config.cluster_pollers,
            interceptors=self._interceptors,
        )
        self._clusters[queue] = (worker, asyncio.create_task(worker.run()))
        log.info("serving cluster queue %s", queue)

    async def _stop_cluster(self, queue: str) -> None:
        worker, task = self._clusters.pop(queue)
        self._gone_since.pop(queue, None)
        for _, queues in self._connections:
            queues.discard(queue)
        await worker.shutdown()
        await task
        log.info("stopped serving cluster queue %s", queue)

    async def stop(self) -> None:
        if self._webhook is not None:
            await self._webhook.cleanup()
        for task in (self._refresher, self._seen_reporter, self._metrics_reader):
            if task is not None:
                task.cancel()
        for queue in list(self._clusters):
            await self._stop_cluster(queue)
        if self._control is not None and self._control_task is not None:
            await self._control.shutdown()
            await self._control_task
        self._control_pool.shutdown(wait=False)
        self._cluster_pool.shutdown(wait=False)
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


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
        "--cluster-threads",
        type=int,
        default=_env_int("FLOTILLA_CLUSTER_THREADS", DEFAULT_CLUSTER_THREADS),
        help="threads shared by all per-cluster activities ($FLOTILLA_CLUSTER_THREADS)",
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
        help="activity pollers per cluster queue ($FLOTILLA_CLUSTER_POLLERS)",
    )
    parser.add_argument("--refresh-seconds", type=float, default=DEFAULT_REFRESH_SECONDS)
    parser.add_argument("--linger-seconds", type=float, default=DEFAULT_LINGER_SECONDS)
    parser.add_argument(
        "--seen-seconds",
        type=float,
        default=DEFAULT_SEEN_SECONDS,
        help="how often each served cluster is probed for its last-seen time",
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
        cluster_threads=args.cluster_threads,
        cluster_pollers=args.cluster_pollers,
        cluster_concurrency=args.cluster_concurrency,
        refresh_seconds=args.refresh_seconds,
        linger_seconds=args.linger_seconds,
        seen_seconds=args.seen_seconds,
        workdir=args.workdir or settings.workdir,
        webhook_listen=args.webhook_listen,
        metrics_listen=args.metrics_listen,
    )


async def serve(config: WorkerConfig, settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then finish running tasks and stop."""
    if config.metrics_listen:
        # The SDK's runtime serves its metrics on a loopback port our endpoint re-exposes;
        # it must be the default runtime before the first client connects.
        config.sdk_metrics_address = f"127.0.0.1:{_free_loopback_port()}"
        Runtime.set_default(
            Runtime(
                telemetry=TelemetryConfig(
                    metrics=PrometheusConfig(
                        bind_address=config.sdk_metrics_address, durations_as_seconds=True
                    )
                )
            )
        )
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
    log.info("shutting down")
    await worker.stop()


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
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
