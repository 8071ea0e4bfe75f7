"""A flotilla installation inside the test process: worker, control API, stores, helpers."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from devenv.cluster import LocalCluster
from flotilla.errors import FlotillaError
from flotilla.settings import Settings, settings_from_env
from runtime.stores import secret_store
from starters.control import Control
from worker import DEFAULT_SEEN_SECONDS, STARTED_LINE, FlotillaWorker, WorkerConfig

T = TypeVar("T")


@dataclass
class Flotilla:
    namespace: str
    client: Client
    control: Control
    worker: FlotillaWorker
    config: WorkerConfig
    settings: Settings

    async def eventually(
        self,
        probe: Callable[[], Awaitable[T]],
        check: Callable[[T], bool],
        *,
        timeout: float = 120.0,
        interval: float = 0.5,
    ) -> T:
        """Probe until check holds (a FlotillaError, such as "not found yet", counts as not yet);
        fail with the last value seen."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = await probe()
                if check(value):
                    return value
                last: object = value
            except FlotillaError as err:
                last = err
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s; last value: {last!r}")
            await asyncio.sleep(interval)

    async def listed_as(self, workflow_id: str, state: str, timeout: float = 5.0) -> None:
        """The Temporal UI's view agrees: the workflow is listed under FlotillaState = ``state``
        within ``timeout`` (visibility lags the workflow by up to a second or so)."""
        query = f"WorkflowId = '{workflow_id}' AND FlotillaState = '{state}'"

        async def listed() -> bool:
            return [w.id async for w in self.client.list_workflows(query)] == [workflow_id]

        await self.eventually(listed, bool, timeout=timeout, interval=0.2)

    async def serve_gitrepo(
        self,
        url: str,
        clusters: Mapping[str, str],
        *,
        name: str = "repo",
        ready: str = "",
        timeout: float = 120.0,
    ) -> None:
        """Register ``clusters`` (name -> kubeconfig) and a GitRepo ``name`` of ``url`` that
        targets them all; with ``ready`` ("1/1", say), wait until it is Ready with that many
        bundle deployments ready (within ``timeout`` seconds)."""
        for cluster, kubeconfig in clusters.items():
            await self.control.add_cluster(self.namespace, cluster, kubeconfig)
        await self.worker.refresh_clusters()
        await self.control.apply_text(
            gitrepo_yaml(self.namespace, name, url, targets=[{"clusterSelector": {}}]),
            file="gitrepo.yaml",
        )
        if ready:
            await self.eventually(
                lambda: self.control.gitrepo_status(self.namespace, name),
                lambda s: s.state == "Ready" and s.ready_bundle_deployments == ready,
                timeout=timeout,
            )

    async def cleanup(self) -> None:
        record = os.environ.get("FLOTILLA_RECORD_HISTORIES")
        if record:
            await self.save_histories(Path(record))
        async for schedule in await self.client.list_schedules():
            if schedule.id.startswith(f"helmop-poll/{self.namespace}/"):
                await self.client.get_schedule_handle(schedule.id).delete()
        prefixes = ("gitrepo", "helmop", "bundle", "registry", "objectwatch", "notifications")
        for prefix in prefixes:
            query = (
                f"WorkflowId STARTS_WITH '{prefix}/{self.namespace}' "
                "AND ExecutionStatus = 'Running'"
            )
            async for wf in self.client.list_workflows(query):
                try:
                    await self.client.get_workflow_handle(wf.id).terminate("test finished")
                except RPCError as err:
                    # Visibility lags (SQL visibility most): a workflow listed as running
                    # may have finished since, which is what cleanup wants anyway.
                    if err.status != RPCStatusCode.NOT_FOUND:
                        raise

    async def save_histories(self, directory: Path) -> None:
        """Write every workflow's history of this namespace as JSON (for replay tests)."""
        directory.mkdir(parents=True, exist_ok=True)
        query = f"WorkflowId STARTS_WITH '{{}}/{self.namespace}'"
        prefixes = ("gitrepo", "helmop", "helmop-poll", "bundle", "registry", "notifications")
        for prefix in (*prefixes, "diff"):
            async for wf in self.client.list_workflows(query.format(prefix)):
                history = await self.client.get_workflow_handle(
                    wf.id, run_id=wf.run_id
                ).fetch_history()
                name = wf.id.replace(f"/{self.namespace}", "").replace("/", "-")
                (directory / f"{name}-{wf.run_id[-8:]}.json").write_text(history.to_json())


async def start_flotilla(
    client: Client,
    task_queue: str,
    tmp: Path,
    *,
    namespace: str | None = None,
    seen_seconds: float = DEFAULT_SEEN_SECONDS,
    **env: str,
) -> Flotilla:
    """A worker on ``task_queue`` serving ``namespace`` and a Control beside it, both with
    ``settings_for_test(client, tmp, **env)`` (``env`` chooses backends, say); the worker
    probes its clusters every ``seen_seconds``."""
    namespace = namespace or f"fl-{uuid.uuid4().hex[:8]}"
    config = WorkerConfig(
        task_queue=task_queue,
        namespaces=[namespace],
        control_threads=4,
        cluster_threads=6,
        cluster_concurrency=2,
        refresh_seconds=0.5,
        linger_seconds=30.0,
        seen_seconds=seen_seconds,
        workdir=tmp / "work",
    )
    settings = settings_for_test(client, tmp, **env)
    worker = FlotillaWorker(client, config, settings)
    await worker.start()
    control = Control(client, task_queue=task_queue, secrets=secret_store(settings))
    return Flotilla(namespace, client, control, worker, config, settings)


def settings_for_test(client: Client, tmp: Path, **env: str) -> Settings:
    """Settings of a flotilla process under test: this Temporal, stores below ``tmp``, the
    pinned tools from PATH (the session puts them there)."""
    return settings_from_env(
        {
            "TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "TEMPORAL_NAMESPACE": client.namespace,
            "FLOTILLA_SECRETS_DIR": str(tmp / "secrets"),
            "FLOTILLA_CONTENT_DIR": str(tmp / "content"),
            "FLOTILLA_TOOLS_DIR": str(tmp / "no-tools-dir"),
            **env,
        },
        home=tmp / "home",
    )


def table_row(table: str, name: str) -> str:
    """The line of a ``flotilla get`` table whose NAME is ``name``."""
    return next(line for line in table.splitlines() if line.split()[0] == name)


def per_cluster_namespaces(prefix: str, clusters: list[str]) -> str:
    """A fleet.yaml that deploys into ``<prefix>-<cluster>`` on each cluster: registry entries
    that share one real cluster then do not share a namespace."""
    lines = [f"defaultNamespace: {prefix}-default", "targetCustomizations:"]
    for cluster in clusters:
        lines += [f"  - clusterName: {cluster}", f"    namespace: {prefix}-{cluster}"]
    return "\n".join(lines) + "\n"


def record_history(history: Any, name: str) -> None:
    """With FLOTILLA_RECORD_HISTORIES=DIR, write ``history`` there as ``name`` (tests/replay)."""
    folder = os.environ.get("FLOTILLA_RECORD_HISTORIES")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / name).write_text(history.to_json())


def history_text(history: Any) -> str:
    """A workflow history as searchable text, payloads decoded: the JSON form holds them in
    base64, so a secret inside one would not be found by a plain search."""
    parts: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            data = node.get("data")
            if isinstance(data, str) and "metadata" in node:
                parts.append(base64.b64decode(data).decode(errors="replace"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    tree = history.to_json_dict()
    walk(tree)
    return json.dumps(tree) + "\n" + "\n".join(parts)


def helm_history(kubeconfig: Path, release: str, namespace: str) -> list[dict[str, object]]:
    out = subprocess.run(
        [
            "helm",
            "history",
            release,
            "-n",
            namespace,
            "-o",
            "json",
            "--kubeconfig",
            str(kubeconfig),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    history: list[dict[str, object]] = json.loads(out.stdout)
    return history


def releases(kubeconfig: Path, namespace: str) -> list[str]:
    out = subprocess.run(
        ["helm", "list", "-q", "-n", namespace, "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def gitrepo_yaml(namespace: str, name: str, url: str, **spec: object) -> str:
    lines = [
        "apiVersion: fleet.cattle.io/v1alpha1",
        "kind: GitRepo",
        f"metadata: {{name: {name}, namespace: {namespace}}}",
        "spec:",
        f"  repo: {url}",
        "  branch: main",
        "  pollingInterval: 1s",
    ]
    lines += [f"  {key}: {json.dumps(value)}" for key, value in spec.items()]
    return "\n".join(lines) + "\n"


@dataclass
class ActivityCall:
    """One activity of a workflow's history: what was asked, and what came back."""

    name: str
    task_queue: str
    input: dict[str, Any]
    scheduled: datetime
    result: dict[str, Any] | None = None
    completed: datetime | None = None
    attempt: int = 0
    started: datetime | None = None
    # The worker that ran the attempt that finished (Temporal's "pid@host" by default).
    identity: str = ""
    # Why the attempt before it failed (a timeout names its kind), empty on a first attempt.
    last_failure: str = ""

    @property
    def found_ready(self) -> bool:
        """A readiness watch that ended Ready: wait_ready, or a deploy_bundle that watched."""
        if not self.result:
            return False
        if self.name == "deploy_bundle":
            return bool((self.result.get("status") or {}).get("ready"))
        return self.name == "wait_ready" and bool(self.result["ready"])


async def activity_calls(
    client: Client, workflow_id: str, run_id: str | None = None
) -> tuple[list[ActivityCall], Counter[str]]:
    """Every activity of a workflow's runs from ``run_id`` (default: the latest run) along
    its continue-as-new chain, in schedule order, and events by type."""
    calls: dict[tuple[str, int], ActivityCall] = {}
    events: Counter[str] = Counter()
    while True:
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        history = await handle.fetch_history()
        for event in history.events:
            events[EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")] += 1
            if event.HasField("activity_task_scheduled_event_attributes"):
                attrs = event.activity_task_scheduled_event_attributes
                calls[(history.run_id, event.event_id)] = ActivityCall(
                    name=attrs.activity_type.name,
                    task_queue=attrs.task_queue.name,
                    input=json.loads(attrs.input.payloads[0].data),
                    scheduled=event.event_time.ToDatetime(),
                )
            elif event.HasField("activity_task_started_event_attributes"):
                started = event.activity_task_started_event_attributes
                call = calls[(history.run_id, started.scheduled_event_id)]
                call.attempt = started.attempt
                call.started = event.event_time.ToDatetime()
                call.identity = started.identity
                if started.HasField("last_failure"):
                    failure = started.last_failure
                    kind = failure.timeout_failure_info.timeout_type
                    call.last_failure = failure.message + (
                        f" ({TimeoutType.Name(kind)})"
                        if failure.HasField("timeout_failure_info")
                        else ""
                    )
            elif event.HasField("activity_task_completed_event_attributes"):
                attrs2 = event.activity_task_completed_event_attributes
                call = calls[(history.run_id, attrs2.scheduled_event_id)]
                call.result = json.loads(attrs2.result.payloads[0].data)
                call.completed = event.event_time.ToDatetime()
        last = history.events[-1]
        if not last.HasField("workflow_execution_continued_as_new_event_attributes"):
            break
        run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return sorted(calls.values(), key=lambda c: c.scheduled), events


class WorkerProcess:
    """The worker as its own process (``argv``), logging to ``log``: started and waited for,
    stopped by SIGTERM (killed after 30 s) or killed by pid, as an operator or a crash would."""

    def __init__(
        self,
        log: Path,
        argv: list[str],
        env: Mapping[str, str],
        cwd: Path,
        started_line: str = STARTED_LINE,
        start_seconds: float = 180.0,
    ) -> None:
        self.started_line = started_line
        self.start_seconds = start_seconds
        self.log = log
        self.argv = argv
        self.env = dict(env)
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def identity(self) -> str:
        """The worker identity Temporal records for its tasks (the SDK's pid@host)."""
        assert self.proc is not None
        return f"{self.proc.pid}@{socket.gethostname()}"

    def start(self) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            # A session of its own, so kill_group() reaches its children (helm) and not us.
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_seconds
        while self.started_line not in self.log.read_text()[offset:]:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"worker did not start: {self.log}"
            time.sleep(0.2)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def kill_group(self) -> None:
        """SIGKILL the worker and every process it started (a helm mid-upgrade), together,
        as the kernel's OOM killer or a node's loss would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


# What a team's ServiceAccount gets by default: everything with ConfigMaps and Secrets (Helm's
# release records) in its own namespace.
TEAM_RULES: list[dict[str, object]] = [
    {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["*"]}
]


def grant_namespaced_role(
    cluster: LocalCluster,
    namespace: str,
    account: str,
    rules: list[dict[str, object]] | None = None,
) -> None:
    """A ServiceAccount with a Role in its own namespace (``rules``, else TEAM_RULES) and
    nothing else; granted again, the Role's rules are replaced."""
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": account},
        "rules": rules if rules is not None else TEAM_RULES,
    }
    try:
        existing = cluster.request("GET", f"{rbac}/roles/{account}")
    except urllib.error.HTTPError:
        existing = {}
    if existing:
        role["metadata"] = existing["metadata"]
        cluster.request("PUT", f"{rbac}/roles/{account}", role)
        return
    cluster.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
    )
    cluster.request("POST", f"{rbac}/roles", role)
    cluster.request(
        "POST",
        f"{rbac}/rolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": account},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    )
