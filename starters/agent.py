"""``flotilla agent``: serve one agent-mode cluster's task queue from inside (or beside) it.

The agent is the pull side of Fleet's architecture. It polls only ``cluster.<ns>.<name>``,
runs the deploy engine's activities and the cluster's object watcher there with the cluster's
own credentials (a kubeconfig file, or the in-cluster service account), reads bundle content
from the content store by digest and render secrets (Helm, SOPS) from the configured secret
backend; a bundle's ServiceAccount is impersonated with those credentials as in push mode
(``flotilla.impersonation``). It never asks the secret store for a kubeconfig: another
cluster's is refused even if a request names it. A heartbeat signal tells the registry it
lives, its version and the cluster's Kubernetes version; the registry marks it Offline when
the beats stop (``flotilla.agents``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

import yaml
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from activities.deploy import DeployActivities
from activities.kube import KubeClients, parse_kubeconfig
from activities.objectwatch import ObjectWatchActivities
from activities.secrets import (
    KUBECONFIG_KEY,
    OPAQUE,
    SecretInfo,
    SecretStore,
    SecretStoreError,
    kubeconfig_secret_name,
)
from flotilla.errors import FlotillaError, SpecError, UnreachableError, one_line
from flotilla.ids import cluster_task_queue
from flotilla.kubenames import name_problem
from runtime.metrics import AgentMetricsServer, install_sdk_metrics, start_agent_metrics
from runtime.shutdown import bounded_stop
from runtime.stores import LazySecretStore, content_store, load_settings
from runtime.temporal import connect
from runtime.tools import locate_tools
from starters.commands import _labels
from starters.control import Control
from starters.webhook import split_listen
from workflows.registry_models import AgentHeartbeat

log = logging.getLogger("flotilla.agent")
T = TypeVar("T")

STARTED_LINE = "agent started"
DEFAULT_HEARTBEAT_SECONDS = 15.0
DEFAULT_THREADS = 8
# How long running deploys may finish on SIGTERM before they are cancelled and handed back
# (Temporal retries them, on this queue, when an agent serves it again).
DEFAULT_SHUTDOWN_SECONDS = 30.0
# What the agent may take after the drain (the final, "stopping" heartbeat) before the process
# ends anyway: the chart's grace period leaves 10 s after --shutdown-seconds.
AFTER_DRAIN_SECONDS = 5.0
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def agent_version() -> str:
    try:
        return version("flotilla")
    except PackageNotFoundError:
        return "unknown"


def in_cluster_kubeconfig(account: Path = SERVICE_ACCOUNT) -> str:
    """A kubeconfig for the pod's service account (the token file is re-read by clients, so a
    rotated token keeps working); one line when not running in a pod."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host or not (account / "token").exists():
        raise SpecError(
            "not running in a Kubernetes pod (no KUBERNETES_SERVICE_HOST or service account "
            "token): pass --kubeconfig"
        )
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "in-cluster",
                    "cluster": {
                        "server": server,
                        "certificate-authority": str(account / "ca.crt"),
                    },
                }
            ],
            "users": [{"name": "agent", "user": {"tokenFile": str(account / "token")}}],
            "contexts": [{"name": "agent", "context": {"cluster": "in-cluster", "user": "agent"}}],
            "current-context": "agent",
        }
    )


class AgentSecretStore:
    """The configured secret store, except kubeconfigs: this cluster's comes from the agent
    itself, and any other cluster's is refused (the agent holds no other credentials)."""

    def __init__(self, inner: SecretStore, namespace: str, cluster: str, kubeconfig: str) -> None:
        self._inner = inner
        self._own = (namespace, kubeconfig_secret_name(cluster))
        self._kubeconfig = kubeconfig

    def get(self, namespace: str, name: str) -> dict[str, str]:
        if (namespace, name) == self._own:
            return {KUBECONFIG_KEY: self._kubeconfig}
        if name.endswith("-kubeconfig"):
            raise SecretStoreError(
                f"secret {namespace}/{name}: the agent of {self._own[0]}/"
                f"{self._own[1].removesuffix('-kubeconfig')} holds no other cluster's kubeconfig"
            )
        return self._inner.get(namespace, name)

    def put(self, namespace: str, name: str, data: dict[str, str], *, type: str = OPAQUE) -> None:
        self._inner.put(namespace, name, data, type=type)

    def delete(self, namespace: str, name: str, *, if_managed: bool = False) -> bool:
        return self._inner.delete(namespace, name, if_managed=if_managed)

    def list(self, namespace: str) -> list[SecretInfo]:
        return self._inner.list(namespace)

    def get_config_map(self, namespace: str, name: str) -> dict[str, str]:
        return self._inner.get_config_map(namespace, name)

    def put_config_map(self, namespace: str, name: str, data: dict[str, str]) -> None:
        self._inner.put_config_map(namespace, name, data)


@dataclass
class AgentConfig:
    namespace: str
    cluster: str
    kubeconfig: str = field(repr=False)
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    threads: int = DEFAULT_THREADS
    shutdown_seconds: float = DEFAULT_SHUTDOWN_SECONDS
    # The cluster's object watcher (drift seen in seconds) runs here, inside the cluster.
    watch_objects: bool = True


class Agent:
    """One cluster's worker and heartbeat."""

    def __init__(
        self,
        control: Control,
        config: AgentConfig,
        deploy: DeployActivities,
        metrics: AgentMetricsServer | None = None,
    ) -> None:
        self.control = control
        self.metrics = metrics
        self.config = config
        self.deploy = deploy
        self.queue = cluster_task_queue(config.namespace, config.cluster)
        self._clients = KubeClients(size=1)
        self._parsed: dict[str, Any] = parse_kubeconfig(config.kubeconfig)
        self._pool = ThreadPoolExecutor(config.threads, "flotilla-agent")
        self.watch = ObjectWatchActivities(deploy, control.objects_changed)

    def kubernetes_version(self) -> tuple[str, str]:
        """(the API server's gitVersion, "") or ("", why it did not answer, one line)."""
        try:
            kube = self._clients.get(self.config.kubeconfig, self._parsed)
            answer = kube.request("GET", "/version", what="the API server version")
        except FlotillaError as err:
            return "", one_line(str(err))
        return str(answer.get("gitVersion", "")), ""

    async def beat(self, *, stopping: bool = False) -> None:
        loop = asyncio.get_running_loop()
        k8s, problem = await loop.run_in_executor(self._pool, self.kubernetes_version)
        if problem:
            log.warning("cluster %s/%s not reached: %s", *self._name(), problem)
        if self.metrics is not None:
            self.metrics.clusters.observe(*self._name(), answered=not problem)
        await self.control.agent_heartbeat(
            self.config.namespace,
            AgentHeartbeat(
                name=self.config.cluster,
                agent_version=agent_version(),
                kubernetes_version=k8s,
                interval_seconds=self.config.heartbeat_seconds,
                problem=problem,
                stopping=stopping,
            ),
        )
        if self.metrics is not None:
            self.metrics.heartbeat.sent()

    async def _beat_or_log(self, *, stopping: bool = False) -> None:
        try:
            await self.beat(stopping=stopping)
        except RPCError as err:
            # Temporal busy or away: the next beat may pass; the registry waits two intervals.
            log.warning("heartbeat not sent: %s", one_line(err.message))

    def _name(self) -> tuple[str, str]:
        return self.config.namespace, self.config.cluster

    async def check_registered(self) -> None:
        """The cluster must be registered in agent mode: a push-mode one is the central
        worker's, and an unknown one would never be given work."""
        snapshot = await _patiently(lambda: self.control.registry(self.config.namespace))
        record = next((c for c in snapshot.clusters if c.name == self.config.cluster), None)
        ns, name = self._name()
        if record is None:
            raise SpecError(
                f"cluster {ns}/{name} is not registered: run `flotilla cluster add {name} "
                f"--agent -n {ns}` or start the agent with --token"
            )
        if not record.agent:
            raise SpecError(
                f"cluster {ns}/{name} is registered in push mode (the central worker deploys "
                "to it): remove it and register it with --agent to serve it from an agent"
            )

    async def _start_watch(self) -> None:
        """The cluster's object watcher, as the central worker runs one per push-mode cluster,
        but on this queue: the watches use this agent's credentials and stay in the cluster."""
        try:
            await self.control.start_object_watch(*self._name(), queue=self.queue)
        except RPCError as err:
            # Drift is then found by the periodic check; the next start tries again.
            log.warning("object watcher not started: %s", one_line(err.message))

    async def run(self, stop: asyncio.Event) -> None:
        worker = Worker(
            self.control.client,
            task_queue=self.queue,
            activities=[
                self.deploy.deploy_bundle,
                self.deploy.wait_ready,
                self.deploy.check_deployment,
                self.deploy.remove_deployment,
                self.watch.watch_objects,
            ],
            activity_executor=self._pool,
            interceptors=[self.metrics.activities] if self.metrics is not None else [],
            # The watcher is async (no thread of the pool) and holds one slot while it runs.
            max_concurrent_activities=self.config.threads + 1,
            graceful_shutdown_timeout=timedelta(seconds=self.config.shutdown_seconds),
        )
        running = asyncio.create_task(worker.run())
        await self._beat_or_log()
        if self.config.watch_objects:
            await self._start_watch()
        log.info("%s: cluster %s/%s, task queue %s", STARTED_LINE, *self._name(), self.queue)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.heartbeat_seconds)
            if running.done():
                break
            if not stop.is_set():
                await self._beat_or_log()
        log.info("agent stopping: running deploys get %ss to finish", self.config.shutdown_seconds)
        await worker.shutdown()
        await running
        await self._beat_or_log(stopping=True)
        log.info("agent stopped")


# Answers that trying again will not change.
FINAL_RPC_STATUSES = (
    RPCStatusCode.NOT_FOUND,
    RPCStatusCode.INVALID_ARGUMENT,
    RPCStatusCode.PERMISSION_DENIED,
    RPCStatusCode.UNAUTHENTICATED,
)


async def _patiently(call: Callable[[], Awaitable[T]], attempts: int = 8) -> T:
    """A start-up call to Temporal, retried while the server is slow to answer (a query
    needs a workflow task; under load its RPC may time out) before giving up in one line."""
    for attempt in range(attempts):
        try:
            return await call()
        except RPCError as err:
            final = err.status in FINAL_RPC_STATUSES or attempt == attempts - 1
            reason = f"{err.status.name}: {one_line(err.message)}"
            if final:
                raise UnreachableError(f"temporal: {reason}") from None
            log.info("temporal did not answer (%s); trying again", reason)
            await asyncio.sleep(2.0 * (attempt + 1))
    raise AssertionError("not reached")


def cmd_agent(args: argparse.Namespace) -> int:
    if bool(args.cluster) == bool(args.token):
        raise SpecError("give --cluster NAMESPACE/NAME, or --token T with --name N")
    if args.token and not args.name:
        raise SpecError("--token needs --name: the cluster this agent registers")
    kubeconfig = _kubeconfig(args.kubeconfig)
    settings = load_settings()
    # An agent's token, like its kubeconfig, comes from a file or the environment, never a
    # command line others can read; --token is for trials.
    token = args.token
    listen = None
    if args.metrics_listen:
        try:
            listen = split_listen(args.metrics_listen)
        except ValueError as err:
            raise SpecError(f"--metrics-listen: {err}") from None

    async def main() -> None:
        sdk_address = install_sdk_metrics() if listen else None
        client = await connect(settings.temporal)
        inner = LazySecretStore(settings)
        control = Control(client, task_queue=args.task_queue, secrets=inner)
        if token:
            namespace, change = await _patiently(
                lambda: control.register_agent(token, args.name, _labels(args.label))
            )
            cluster = args.name
            log.info("%s", change.message)
        else:
            namespace, _, cluster = args.cluster.partition("/")
            problem = name_problem(cluster)
            if not namespace or problem:
                raise SpecError(f"--cluster: {args.cluster!r} is not NAMESPACE/NAME")
        secrets = AgentSecretStore(inner, namespace, cluster, kubeconfig)
        workdir = settings.workdir / "agent" / namespace / cluster
        deploy = DeployActivities(
            secrets,
            content_store(settings, secrets),
            workdir / "deploy",
            tools=locate_tools(settings.tools),
        )
        config = AgentConfig(
            namespace=namespace,
            cluster=cluster,
            kubeconfig=kubeconfig,
            heartbeat_seconds=args.heartbeat_seconds,
            threads=args.threads,
            shutdown_seconds=args.shutdown_seconds,
            watch_objects=args.watch_objects,
        )
        await Agent(control, config, deploy).check_registered()
        metrics = start_agent_metrics(listen, sdk_address=sdk_address) if listen else None
        agent = Agent(control, config, deploy, metrics)
        stop = asyncio.Event()
        # From the signal on, the process ends within its bound whatever holds it (a deploy
        # thread past its cancel, the interpreter's join), with the stacks in its log.
        stopping = bounded_stop(stop, config.shutdown_seconds + AFTER_DRAIN_SECONDS)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping)
        try:
            await agent.run(stop)
        finally:
            if metrics is not None:
                metrics.stop()

    asyncio.run(main())
    return 0


def _kubeconfig(path: str | None) -> str:
    if not path:
        return in_cluster_kubeconfig()
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise SpecError(f"cannot read kubeconfig: {err.strerror}", file=path) from None
    parse_kubeconfig(text)
    return text


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "agent",
        help="serve one agent-mode cluster's deploys from inside it (pull mode)",
        description="Serve one cluster's task queue with its own credentials: --cluster for a "
        "cluster registered with `cluster add NAME --agent`, or --token and --name to register "
        "(or claim) it with a registration token. SIGTERM stops it gracefully.",
    )
    parser.add_argument("--cluster", metavar="NAMESPACE/NAME", help="a registered agent cluster")
    parser.add_argument(
        "--token",
        default=os.environ.get("FLOTILLA_AGENT_TOKEN"),
        help="registration token (default: $FLOTILLA_AGENT_TOKEN; it holds its namespace)",
    )
    parser.add_argument("--name", help="the cluster to register with --token")
    parser.add_argument(
        "-l", "--label", action="append", default=[], metavar="KEY=VALUE", help="with --token"
    )
    parser.add_argument(
        "--kubeconfig", help="the cluster's kubeconfig (default: the pod's service account)"
    )
    parser.add_argument(
        "--heartbeat-seconds",
        type=float,
        default=DEFAULT_HEARTBEAT_SECONDS,
        help="heartbeat interval in seconds; Offline after two missed",
    )
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="deploys at once")
    parser.add_argument(
        "--shutdown-seconds",
        type=float,
        default=DEFAULT_SHUTDOWN_SECONDS,
        help="on SIGTERM, how long running deploys may finish before they are handed back",
    )
    parser.add_argument(
        "--no-object-watch",
        dest="watch_objects",
        action="store_false",
        help="run no object watcher: drift is then found by the periodic check alone",
    )
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        default=os.environ.get("FLOTILLA_METRICS_LISTEN") or None,
        help="serve Prometheus metrics there, GET /metrics: deploys by result, heartbeat age, "
        "the cluster's reachability, Temporal SDK metrics ($FLOTILLA_METRICS_LISTEN)",
    )
    parser.add_argument("--task-queue", default="flotilla", help=argparse.SUPPRESS)
    parser.set_defaults(handler=cmd_agent)
