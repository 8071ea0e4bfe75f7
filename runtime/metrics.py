"""The worker's Prometheus endpoint: fleet state from visibility, activity timings, SDK metrics.

Three sources, one registry, served by prometheus_client on ``--metrics-listen``:

- ``FleetStateCollector``: GitRepos and bundles by state, ready and desired counts, from the
  search attributes the workflows keep (one visibility listing every ``refresh`` seconds, the
  same columns ``flotilla get`` prints). Names follow Fleet's where Fleet has the metric
  (``fleet_gitrepo_ready_clusters``, ``fleet_bundle_desired_ready``, ``fleet_bundle_state``).
- ``ActivityMetrics``: a worker interceptor timing every activity attempt by result, so git
  polls and fetches, deploys and image polls and updates are measured where they run and no
  workflow code changes (workflows stay deterministic).
- ``SdkMetricsBridge``: the Temporal SDK's own metrics (task latencies, pollers, slots),
  which its native runtime serves on a loopback port; each scrape reads and re-exposes them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from activities.deploy_models import DEPLOY_BUNDLE
from activities.gitops_models import FETCH_BUNDLES, LS_REMOTE
from activities.registry_models import POLL_REGISTRY
from activities.writeback_models import WRITE_BACK
from flotilla.ids import (
    SA_BUNDLE,
    SA_COMMIT,
    SA_DESIRED,
    SA_GITREPO,
    SA_KIND,
    SA_READY,
    SA_REPO,
    SA_STATE,
)

log = logging.getLogger("flotilla.metrics")

DEFAULT_REFRESH_SECONDS = 15.0
SDK_SCRAPE_TIMEOUT_SECONDS = 2.0
# Fleet's bundle states, each a 0/1 series of fleet_bundle_state as in Fleet.
BUNDLE_STATES = (
    "Ready",
    "NotReady",
    "WaitApplied",
    "ErrApplied",
    "OutOfSync",
    "Pending",
    "Modified",
)

# The activities with a metric of their own: (name, help).
_TIMED = {
    LS_REMOTE: ("flotilla_git_poll_duration_seconds", "git ls-remote of a GitRepo, by result"),
    FETCH_BUNDLES: (
        "flotilla_git_fetch_duration_seconds",
        "clone and read of a GitRepo's commit into bundles, by result",
    ),
    DEPLOY_BUNDLE: (
        "flotilla_deploy_duration_seconds",
        "one bundle deployment's helm install or upgrade on a cluster, by result",
    ),
    POLL_REGISTRY: ("flotilla_image_poll_duration_seconds", "an image policy's registry poll"),
    WRITE_BACK: ("flotilla_image_update_duration_seconds", "an image update written to git"),
}
_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


def result_of(err: BaseException | None) -> str:
    """The ``result`` label: success, cancelled, or the failure's type (GitError, ...)."""
    if err is None:
        return "success"
    if isinstance(err, CancelledError | asyncio.CancelledError):
        return "cancelled"
    if isinstance(err, ApplicationError) and err.type:
        return err.type
    return type(err).__name__


class ActivityMetrics(Interceptor):
    """Times every activity attempt of the workers it is given to."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.all = Histogram(
            "flotilla_activity_duration_seconds",
            "Every activity attempt, by activity and result",
            ["activity", "result"],
            registry=registry,
            buckets=_BUCKETS,
        )
        self.named = {
            name: Histogram(metric, text, ["result"], registry=registry, buckets=_BUCKETS)
            for name, (metric, text) in _TIMED.items()
        }

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _TimedActivity(next, self)


class _TimedActivity(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, metrics: ActivityMetrics) -> None:
        super().__init__(next)
        self._metrics = metrics

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        name = activity.info().activity_type
        started = time.monotonic()
        failure: BaseException | None = None
        try:
            return await super().execute_activity(input)
        except BaseException as err:
            failure = err
            raise
        finally:
            seconds = time.monotonic() - started
            result = result_of(failure)
            self._metrics.all.labels(name, result).observe(seconds)
            if name in self._metrics.named:
                self._metrics.named[name].labels(result).observe(seconds)


@dataclass(frozen=True)
class DeploymentRow:
    """One bundle deployment's state, as its GitRepo last heard of it."""

    namespace: str
    gitrepo: str
    bundle: str
    cluster: str
    commit: str
    state: str


@dataclass(frozen=True)
class GitRepoRead:
    """What a GitRepo's status query adds to the visibility read: its spec's branch and paths
    (labels of Fleet's ``fleet_gitrepo_*``) and its bundle deployments."""

    branch: str
    paths: list[str]
    deployments: list[DeploymentRow]


# Reads a GitRepo by its workflow id (the worker passes one that asks the GitRepo's status
# query: this layer does not import workflows).
DeploymentReader = Callable[[str], Awaitable[GitRepoRead]]
# GitRepos whose deployments are read at once by one refresh.
DEPLOYMENT_READS = 16
# A GitRepo whose worker does not answer within this is left out of one read.
DEPLOYMENT_READ_SECONDS = 5.0


@dataclass
class FleetSnapshot:
    """What one visibility read found: each running GitRepo's and bundle's attributes, and
    (with a reader) every bundle deployment's state."""

    gitrepos: list[dict[str, Any]] = field(default_factory=list)
    bundles: list[dict[str, Any]] = field(default_factory=list)
    deployments: list[DeploymentRow] = field(default_factory=list)
    # GitRepo workflow id -> (branch, paths joined with ";" as Fleet joins them).
    sources: dict[str, tuple[str, str]] = field(default_factory=dict)
    read_at: float = 0.0


def _text(value: Any) -> str:
    if isinstance(value, list):
        value = value[0] if value else ""
    return "" if value is None else str(value)


def _number(value: Any) -> float:
    if isinstance(value, list):
        value = value[0] if value else 0
    return float(value) if isinstance(value, int | float) else 0.0


def _namespace(workflow_id: str) -> str:
    parts = workflow_id.split("/", 2)
    return parts[1] if len(parts) == 3 else ""


class FleetStateCollector(Collector):
    """GitRepos and bundles by state, from the last visibility read (``refresh``); rollout
    durations from successive reads (a bundle's new commit seen not Ready, until Ready)."""

    def __init__(
        self, client: Client, rollouts: Histogram, deployments: DeploymentReader | None = None
    ) -> None:
        self.client = client
        self.read_deployments = deployments
        self.snapshot = FleetSnapshot()
        self.rollouts = rollouts
        # (namespace, bundle) -> (commit, when it was first seen rolling out).
        self._rolling: dict[tuple[str, str], tuple[str, float]] = {}
        self._commits: dict[tuple[str, str], str] = {}

    async def refresh(self) -> None:
        snapshot = FleetSnapshot(read_at=time.time())
        query = f"{SA_KIND} IN ('GitRepo', 'Bundle') AND ExecutionStatus = 'Running'"
        async for execution in self.client.list_workflows(query):
            attributes: dict[str, Any] = dict(execution.search_attributes)
            attributes["namespace"] = _namespace(execution.id)
            attributes["workflow_id"] = execution.id
            if _text(attributes.get(SA_KIND)) == "GitRepo":
                snapshot.gitrepos.append(attributes)
            else:
                snapshot.bundles.append(attributes)
        if self.read_deployments is not None:
            reads = await self._reads(
                self.read_deployments, [g["workflow_id"] for g in snapshot.gitrepos]
            )
            for workflow_id, read in reads.items():
                snapshot.deployments.extend(read.deployments)
                snapshot.sources[workflow_id] = (read.branch, ";".join(read.paths))
            # A GitRepo not answering this time keeps its last labels (no new series).
            for g in snapshot.gitrepos:
                known = self.snapshot.sources.get(g["workflow_id"])
                if known is not None:
                    snapshot.sources.setdefault(g["workflow_id"], known)
        self._time_rollouts(snapshot)
        self.snapshot = snapshot

    @staticmethod
    async def _reads(read: DeploymentReader, workflow_ids: list[str]) -> dict[str, GitRepoRead]:
        """Each GitRepo's status read, a few GitRepos at a time; one that does not answer
        (its worker is busy or gone) is left out of this read, not fatal."""
        gate = asyncio.Semaphore(DEPLOYMENT_READS)

        async def one(workflow_id: str) -> GitRepoRead | None:
            async with gate:
                try:
                    return await asyncio.wait_for(read(workflow_id), DEPLOYMENT_READ_SECONDS)
                except Exception as err:
                    log.debug("status of %s not read: %s", workflow_id, err)
                    return None

        found = await asyncio.gather(*(one(i) for i in workflow_ids))
        return {i: r for i, r in zip(workflow_ids, found, strict=True) if r is not None}

    def _time_rollouts(self, snapshot: FleetSnapshot) -> None:
        """A rollout starts when a bundle's commit changes (first read after the worker
        started: not counted) and ends when the bundle is Ready on all its clusters; both
        are seen at the read's resolution (``--metrics-refresh-seconds``)."""
        for b in snapshot.bundles:
            key = (b["namespace"], _text(b.get(SA_BUNDLE)))
            commit = _text(b.get(SA_COMMIT))
            ready = _text(b.get(SA_STATE)) == "Ready" and _number(b.get(SA_READY)) == _number(
                b.get(SA_DESIRED)
            )
            previous = self._commits.get(key)
            self._commits[key] = commit
            if previous is not None and previous != commit:
                self._rolling[key] = (commit, snapshot.read_at)
            started = self._rolling.get(key)
            if ready and started is not None and started[0] == commit:
                self.rollouts.labels(key[0]).observe(snapshot.read_at - started[1])
                del self._rolling[key]

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        repo_of = {
            (g["namespace"], _text(g.get(SA_GITREPO))): _text(g.get(SA_REPO))
            for g in snapshot.gitrepos
        }
        # Fleet's labels: branch is spec.branch, paths spec.paths joined with ";" (flotilla
        # fills an empty list with ".", so an unset paths reads "." where Fleet's reads "").
        labels = ["name", "namespace", "repo", "branch", "paths"]
        ready = GaugeMetricFamily(
            "fleet_gitrepo_ready_clusters",
            "Clusters where all of a GitRepo's bundles are Ready",
            labels=labels,
        )
        desired = GaugeMetricFamily(
            "fleet_gitrepo_desired_ready_clusters",
            "Clusters a GitRepo's bundles target",
            labels=labels,
        )
        gitrepos = GaugeMetricFamily(
            "flotilla_gitrepos", "Running GitRepos by state", labels=["namespace", "state"]
        )
        by_state: dict[tuple[str, str], int] = {}
        for g in snapshot.gitrepos:
            branch, paths = snapshot.sources.get(g["workflow_id"], ("", ""))
            values = [
                _text(g.get(SA_GITREPO)),
                g["namespace"],
                _text(g.get(SA_REPO)),
                branch,
                paths,
            ]
            ready.add_metric(values, _number(g.get(SA_READY)))
            desired.add_metric(values, _number(g.get(SA_DESIRED)))
            key = (g["namespace"], _text(g.get(SA_STATE)))
            by_state[key] = by_state.get(key, 0) + 1
        for (namespace, state), count in sorted(by_state.items()):
            gitrepos.add_metric([namespace, state], count)

        blabels = ["name", "namespace", "gitrepo", "commit", "repo"]
        bready = GaugeMetricFamily(
            "fleet_bundle_ready", "A bundle's deployments in a Ready state", labels=blabels
        )
        bdesired = GaugeMetricFamily(
            "fleet_bundle_desired_ready",
            "A bundle's deployments desired to be Ready",
            labels=blabels,
        )
        bstate = GaugeMetricFamily(
            "fleet_bundle_state",
            "1 for the bundle's state label, 0 for the others (Fleet's encoding)",
            labels=[*blabels, "state"],
        )
        bundles = GaugeMetricFamily(
            "flotilla_bundles", "Running bundles by state", labels=["namespace", "state"]
        )
        counts: dict[tuple[str, str], int] = {}
        for b in snapshot.bundles:
            gitrepo = _text(b.get(SA_GITREPO))
            values = [
                _text(b.get(SA_BUNDLE)),
                b["namespace"],
                gitrepo,
                _text(b.get(SA_COMMIT)),
                repo_of.get((b["namespace"], gitrepo), ""),
            ]
            bready.add_metric(values, _number(b.get(SA_READY)))
            bdesired.add_metric(values, _number(b.get(SA_DESIRED)))
            state = _text(b.get(SA_STATE))
            for candidate in BUNDLE_STATES:
                bstate.add_metric([*values, candidate], 1.0 if candidate == state else 0.0)
            key = (b["namespace"], state)
            counts[key] = counts.get(key, 0) + 1
        for (namespace, state), count in sorted(counts.items()):
            bundles.add_metric([namespace, state], count)

        deployments = _bundledeployment_state(snapshot)
        age = GaugeMetricFamily(
            "flotilla_fleet_state_age_seconds", "Seconds since the fleet state was read"
        )
        age.add_metric([], time.time() - snapshot.read_at if snapshot.read_at else -1.0)
        yield from (ready, desired, gitrepos, bready, bdesired, bstate, bundles, deployments, age)


def _bundledeployment_state(snapshot: FleetSnapshot) -> GaugeMetricFamily:
    """Fleet's ``fleet_bundledeployment_state``: per bundle deployment, 1 for its state and 0
    for Fleet's other states, with Fleet's label names. A deployment lives in its bundle's
    namespace here (docs/fleet-api.md), so ``namespace``, ``cluster_namespace`` and
    ``bundle_namespace`` are that namespace; ``repo`` is the GitRepo's name as in Fleet's
    repo-name label; flotilla has no generation, so it is always "0"."""
    family = GaugeMetricFamily(
        "fleet_bundledeployment_state",
        "1 for the bundle deployment's state label, 0 for the others (Fleet's encoding)",
        labels=[
            "name",
            "namespace",
            "cluster_name",
            "cluster_namespace",
            "repo",
            "commit",
            "bundle",
            "bundle_namespace",
            "generation",
            "state",
        ],
    )
    for d in snapshot.deployments:
        values = [d.bundle, d.namespace, d.cluster, d.namespace, d.gitrepo]
        values += [d.commit, d.bundle, d.namespace, "0"]
        states = BUNDLE_STATES if d.state in BUNDLE_STATES else (*BUNDLE_STATES, d.state)
        for candidate in states:
            family.add_metric([*values, candidate], 1.0 if candidate == d.state else 0.0)
    return family


class ClusterSeenCollector(Collector):
    """Each served cluster's last answer to the worker's probe (``observe``), as an age."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], tuple[float | None, bool]] = {}

    def observe(self, namespace: str, cluster: str, *, answered: bool) -> None:
        last, _ = self._seen.get((namespace, cluster), (None, False))
        self._seen[(namespace, cluster)] = (time.time() if answered else last, not answered)

    def collect(self) -> Iterator[Metric]:
        labels = ["namespace", "name"]
        age = GaugeMetricFamily(
            "flotilla_cluster_last_seen_age_seconds",
            "Seconds since the cluster last answered the worker's probe (-1: never)",
            labels=labels,
        )
        unreachable = GaugeMetricFamily(
            "flotilla_cluster_unreachable",
            "1 when the cluster's last probe was not answered",
            labels=labels,
        )
        now = time.time()
        for (namespace, name), (last, down) in sorted(self._seen.items()):
            age.add_metric([namespace, name], now - last if last is not None else -1.0)
            unreachable.add_metric([namespace, name], 1.0 if down else 0.0)
        yield from (age, unreachable)


class SdkMetricsBridge(Collector):
    """Re-exposes the Temporal SDK runtime's Prometheus endpoint (a loopback port)."""

    def __init__(self, address: str) -> None:
        self.url = f"http://{address}/metrics"

    def collect(self) -> Iterable[Metric]:
        try:
            with urllib.request.urlopen(self.url, timeout=SDK_SCRAPE_TIMEOUT_SECONDS) as answer:  # noqa: S310 - a loopback http URL we built
                text = answer.read().decode()
        except OSError as err:
            log.debug("Temporal SDK metrics not read: %s", err)
            return []
        return list(text_string_to_metric_families(text))


@dataclass
class MetricsServer:
    """The endpoint and what feeds it; ``stop`` shuts the HTTP server down."""

    registry: CollectorRegistry
    activities: ActivityMetrics
    clusters: ClusterSeenCollector
    port: int
    _server: Any

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class WorkerMetricsServer(MetricsServer):
    """The worker's endpoint: the fleet's state and the webhook receiver's requests too."""

    state: FleetStateCollector = field(kw_only=True)
    webhooks: Counter = field(kw_only=True)

    def count_webhook(self, provider: str, outcome: str) -> None:
        self.webhooks.labels(provider, outcome).inc()


class HeartbeatCollector(Collector):
    """An agent's last heartbeat the registry accepted, as an age (``sent``)."""

    def __init__(self) -> None:
        self._sent: float | None = None

    def sent(self) -> None:
        self._sent = time.time()

    def collect(self) -> Iterator[Metric]:
        age = GaugeMetricFamily(
            "flotilla_agent_heartbeat_age_seconds",
            "Seconds since the agent's last heartbeat reached the registry (-1: never)",
        )
        age.add_metric([], time.time() - self._sent if self._sent is not None else -1.0)
        yield age


@dataclass
class AgentMetricsServer(MetricsServer):
    """An agent's endpoint: its deploys (``activities``), its cluster's probe (``clusters``,
    fed by each heartbeat's API server check) and its heartbeat's age."""

    heartbeat: HeartbeatCollector = field(kw_only=True)


def install_sdk_metrics() -> str:
    """Make the Temporal SDK's runtime serve its metrics on a free loopback port, which an
    endpoint re-exposes; it must be the default runtime before the first client connects."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    metrics = PrometheusConfig(bind_address=address, durations_as_seconds=True)
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(metrics=metrics)))
    return address


def _common(
    sdk_address: str | None,
) -> tuple[CollectorRegistry, ActivityMetrics, ClusterSeenCollector]:
    """What both endpoints serve: activity timings, cluster probes and the SDK's own."""
    registry = CollectorRegistry()
    activities = ActivityMetrics(registry)
    clusters = ClusterSeenCollector()
    registry.register(clusters)
    if sdk_address:
        registry.register(SdkMetricsBridge(sdk_address))
    return registry, activities, clusters


def _serve(registry: CollectorRegistry, listen: tuple[str, int]) -> tuple[int, Any]:
    """Serve ``registry`` on ``listen`` (port 0: any free port); the bound port and server."""
    host, port = listen
    server, _ = start_http_server(port, host, registry=registry)
    bound = int(server.server_address[1])
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return bound, server


def start_metrics(
    client: Client,
    listen: tuple[str, int],
    *,
    sdk_address: str | None,
    deployments: DeploymentReader | None = None,
) -> WorkerMetricsServer:
    """The worker's endpoint on ``listen`` (see ``MetricsServer.port``)."""
    registry, activities, clusters = _common(sdk_address)
    rollouts = Histogram(
        "flotilla_rollout_duration_seconds",
        "A bundle's new commit first seen rolling out until Ready on all its clusters",
        ["namespace"],
        registry=registry,
        buckets=_BUCKETS,
    )
    state = FleetStateCollector(client, rollouts, deployments)
    registry.register(state)
    webhooks = Counter(
        "flotilla_webhook_requests",
        "Git webhook requests by provider and outcome (synced, unknown_repo, unauthorized, ...)",
        ["provider", "outcome"],
        registry=registry,
    )
    port, server = _serve(registry, listen)
    return WorkerMetricsServer(
        registry, activities, clusters, port, server, state=state, webhooks=webhooks
    )


def start_agent_metrics(listen: tuple[str, int], *, sdk_address: str | None) -> AgentMetricsServer:
    """An agent's endpoint on ``listen``: no fleet state (that is the worker's), the rest as
    the worker's for its one cluster."""
    registry, activities, clusters = _common(sdk_address)
    heartbeat = HeartbeatCollector()
    registry.register(heartbeat)
    port, server = _serve(registry, listen)
    return AgentMetricsServer(registry, activities, clusters, port, server, heartbeat=heartbeat)
