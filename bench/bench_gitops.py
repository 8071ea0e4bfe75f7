"""Orchestration overhead: one GitRepo, B bundles, C clusters, fake deploys.

Starts its own Temporal server (the dev server in memory, or with ``--temporal postgres`` the
production-shaped one on PostgreSQL; ``--temporal dev,postgres`` runs on both, one after the
other, and prints both figures), git daemon and an in-process flotilla worker
(default flags) whose deploy activities are stand-ins that answer at once (same activity names),
so the numbers are Temporal + workflow + planning cost, not Helm's. Measures the time from
`flotilla apply` to every bundle deployment Ready, then from a new commit to all Ready again,
and from the bundle workflows' histories (every run): events per bundle deployment, the
largest history, workflow task durations (started to completed), Temporal's throughput
(workflow tasks and activities completed per second over both commits), the "cluster
offline" warnings logged, peak RSS of this process (worker included) and of the server,
the server's own throughput (workflow tasks and activities completed per second, from its
Prometheus metrics), the CPU of worker and server over both commits, the load average, and
a first-commit timeline (the GitRepo's activities; each bundle's start, plan and deploys, as
seconds after the apply). With ``--idle SECONDS`` it then measures the settled fleet's
worker and server CPU over that window.

    .venv/bin/python bench/bench_gitops.py --bundles 5 --clusters 40
    .venv/bin/python bench/bench_gitops.py --bundles 50 --clusters 50 --temporal dev,postgres
    .venv/bin/python bench/bench_gitops.py --bundles 50 --clusters 500 --idle 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from temporalio import activity
from temporalio.api.enums.v1 import EventType, TaskQueueKind
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporal_kinds import ServerThroughput, add_temporal_argument, temporal_kinds, temporal_server

from activities.deploy import DeployActivities
from activities.deploy_models import (
    Applied,
    DeploymentStatus,
    DeployRequest,
    DeployResult,
    ReleaseRef,
    RemoveRequest,
    RemoveResult,
    StatusRequest,
)
from activities.pushqueue import ReadyWait
from activities.releasewatch import PollSchedule
from devenv import tools
from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from flotilla.ids import bundle_workflow_id, gitrepo_workflow_id
from flotilla.models import GitRepo
from runtime.stores import content_store, secret_store
from runtime.tools import locate_tools
from starters.control import Control
from tests.e2e.harness import (
    ActivityCall,
    Flotilla,
    activity_calls,
    gitrepo_yaml,
    settings_for_test,
)
from worker import FlotillaWorker, WorkerConfig
from workflows.gitrepo_models import GitRepoStatus

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\ndata: {{v: '{v}'}}\n"


class DeployTimes:
    """Deploy times drawn from a measured distribution: ``profile_deploy.py --latencies``
    (flotilla's real deploy activity, install and upgrade, one at a time on a local cluster).

    A draw is one measured deployment: its whole wall, and (when the file has them, since
    2026-12-06) the part spent applying (helm, on a thread) and the part waiting for Ready
    (no thread on the push queues). Without the split the whole wall counts as apply."""

    def __init__(self, path: Path, seed: int = 20261204) -> None:
        data = json.loads(path.read_text())
        self.path = path
        self.install: list[float] = data["install"]
        self.upgrade: list[float] = data["upgrade"]
        self.install_wait: list[float] = data.get("install_wait") or [0.0] * len(self.install)
        self.upgrade_wait: list[float] = data.get("upgrade_wait") or [0.0] * len(self.upgrade)
        if len(self.install_wait) != len(self.install) or len(self.upgrade_wait) != len(
            self.upgrade
        ):
            raise ValueError(f"{path}: install_wait / upgrade_wait: one per install / upgrade")
        self.split = "install_wait" in data
        self.measured = f"{data.get('command', '?')} at {data.get('at', '?')}"
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self, install: bool) -> float:
        """A whole deploy wall."""
        apply, wait = self.draw_parts(install)
        return apply + wait

    def draw_parts(self, install: bool) -> tuple[float, float]:
        """One measured deployment's apply and readiness-wait seconds."""
        walls, waits = (
            (self.install, self.install_wait) if install else (self.upgrade, self.upgrade_wait)
        )
        with self._lock:
            i = self._random.randrange(len(walls))
        return walls[i] - waits[i], waits[i]

    def describe(self) -> str:
        split = ""
        if self.split:
            split = (
                f"; of it waiting for Ready: install median "
                f"{statistics.median(self.install_wait):.2f} s, upgrade "
                f"{statistics.median(self.upgrade_wait):.2f} s"
            )
        return (
            f"install median {statistics.median(self.install):.2f} s (max "
            f"{max(self.install):.2f}), upgrade median {statistics.median(self.upgrade):.2f} s "
            f"(max {max(self.upgrade):.2f}){split}, from {self.path.name} ({self.measured})"
        )


class StandinWait:
    """A stand-in's readiness wait: Ready once its drawn wait has passed; watched (on a
    watcher thread) or, with none free, looked at on the real wait's poll schedule (so a
    poll interval costs the stand-ins what it costs a real one)."""

    def __init__(self, request: StatusRequest, ready_at: float, timeout: float) -> None:
        self.request = request
        self.ready_at = ready_at
        self.schedule = PollSchedule(timeout)

    def step(self) -> DeploymentStatus | None:
        self.schedule.looked()
        if time.monotonic() < self.ready_at and self.schedule.remaining > 0:
            return None
        return DeploymentStatus(
            release=self.request.release,
            applied_deployment_id=self.request.deployment_id,
            ready=time.monotonic() >= self.ready_at,
        )

    def watch(self, seconds: float) -> bool:
        """As a watch of the release's object: back when it turns Ready, or after
        ``seconds``."""
        time.sleep(max(0.0, min(self.ready_at - time.monotonic(), seconds)))
        return True

    def next_poll(self) -> float:
        return self.schedule.next_poll()

    def close(self) -> None:
        pass


# The "manifest" a timed stand-in applied: when its release turns Ready (monotonic seconds).
_READY_AT = "standin-ready-at:"


def standin_result(request: DeployRequest, *, watched: bool = True) -> DeployResult:
    """What a stand-in deploy answers: released and applied, and Ready if ``watched`` (the
    request asked the deploy to watch readiness; otherwise no status, as a real deploy)."""
    release = ReleaseRef(name=request.bundle_name, namespace="default", revision=1)
    ready = DeploymentStatus(
        release=release, applied_deployment_id=request.deployment_id, ready=True
    )
    return DeployResult.model_validate(
        {
            "release": release,
            "deployment_id": request.deployment_id,
            "changed": True,
            "action": "install",
            "reason": "benchmark",
            "status": ready if watched else None,
        }
    )


class InstantDeploy:
    """A deploy engine for the worker's push-queue wrapper (``activities.pushqueue.
    DeployEngine``), answering at once, or after a deploy time drawn from ``times`` (an
    install when the request names no previous release): its apply part on the engine
    thread, its wait for Ready as the real wait does."""

    def __init__(self, times: DeployTimes | None = None) -> None:
        # What the worker records of each cluster's kubeconfig Secret, as DeployActivities.
        self.kubeconfig_secrets: dict[tuple[str, str], str] = {}
        # Which attempts of each deploy reached this process, and when.
        self.attempts: dict[tuple[str, str], list[tuple[int, float]]] = {}
        self.times = times
        # The deploy time drawn for each apply (its apply and wait together), for the
        # real-cluster slice's comparison.
        self.drawn: list[float] = []

    def apply_bundle(self, request: DeployRequest) -> Applied:
        """The push queues' apply: with measured times, the apply part on this thread, and
        a "manifest" saying when the release turns Ready (``open_wait``)."""
        info = activity.info()
        # Activity ids start again in each run of a workflow (continue-as-new).
        key = (f"{info.workflow_id}/{info.workflow_run_id}", info.activity_id)
        self.attempts.setdefault(key, []).append((info.attempt, time.time()))
        if self.times is None:
            return Applied(result=standin_result(request, watched=request.wait_ready_seconds > 0))
        apply, wait = self.times.draw_parts(request.previous_release is None)
        time.sleep(apply)
        self.drawn.append(apply + wait)
        if not wait:
            return Applied(result=standin_result(request, watched=request.wait_ready_seconds > 0))
        return Applied(
            result=standin_result(request, watched=False),
            manifest=f"{_READY_AT}{time.monotonic() + wait}",
        )

    def open_wait(
        self, request: StatusRequest, timeout_seconds: float, *, applied_manifest: str | None
    ) -> ReadyWait:
        ready_at = 0.0
        if applied_manifest and applied_manifest.startswith(_READY_AT):
            ready_at = float(applied_manifest.removeprefix(_READY_AT))
        return StandinWait(request, ready_at, timeout_seconds)

    def check_deployment(self, request: StatusRequest) -> DeploymentStatus:
        return DeploymentStatus(
            release=request.release, applied_deployment_id=request.deployment_id, ready=True
        )

    def remove_deployment(self, request: RemoveRequest) -> RemoveResult:
        return RemoveResult(release_removed=True, resources_kept=False)

    def probe(self, cluster_namespace: str, cluster: str) -> str:
        return ""


class TimedWait:
    """A real readiness wait that records its deploy's wall (apply to Ready) when closed."""

    def __init__(self, wait: ReadyWait, started: float | None, walls: list[float]) -> None:
        self.wait = wait
        self.started = started
        self.walls = walls

    def step(self) -> DeploymentStatus | None:
        return self.wait.step()

    def watch(self, seconds: float) -> bool:
        return self.wait.watch(seconds)

    def next_poll(self) -> float:
        return self.wait.next_poll()

    def close(self) -> None:
        self.wait.close()
        if self.started is not None:
            self.walls.append(time.monotonic() - self.started)


class SlicedDeploy:
    """The real deploy engine for the clusters of the real-cluster slice, the stand-ins for
    every other cluster; what else the worker asks of its deploy engine goes to the real
    one (kubeconfig Secrets, probes of the real clusters)."""

    def __init__(self, real: DeployActivities, standin: InstantDeploy, clusters: set[str]):
        self.real = real
        self.standin = standin
        self.clusters = clusters
        self.kubeconfig_secrets = real.kubeconfig_secrets
        self.attempts = standin.attempts
        # Wall seconds of each deploy on a real cluster, apply to Ready.
        self.real_walls: list[float] = []
        self._started: dict[tuple[str, str], float] = {}

    def apply_bundle(self, request: DeployRequest) -> Applied:
        if request.cluster_name not in self.clusters:
            return self.standin.apply_bundle(request)
        started = time.monotonic()
        applied = self.real.apply_bundle(request)
        if request.wait_ready_seconds > 0:
            self._started[request.cluster_name, request.bundle_name] = started
        else:
            self.real_walls.append(time.monotonic() - started)
        return applied

    def open_wait(
        self, request: StatusRequest, timeout_seconds: float, *, applied_manifest: str | None
    ) -> ReadyWait:
        if request.cluster_name not in self.clusters:
            return self.standin.open_wait(
                request, timeout_seconds, applied_manifest=applied_manifest
            )
        wait = self.real.open_wait(request, timeout_seconds, applied_manifest=applied_manifest)
        started = self._started.pop((request.cluster_name, request.bundle_name), None)
        return TimedWait(wait, started, self.real_walls)

    def check_deployment(self, request: StatusRequest) -> DeploymentStatus:
        if request.cluster_name not in self.clusters:
            return self.standin.check_deployment(request)
        return self.real.check_deployment(request)

    def remove_deployment(self, request: RemoveRequest) -> RemoveResult:
        if request.cluster_name not in self.clusters:
            return self.standin.remove_deployment(request)
        return self.real.remove_deployment(request)

    def probe(self, cluster_namespace: str, cluster: str) -> str:
        if cluster not in self.clusters:
            return self.standin.probe(cluster_namespace, cluster)
        return self.real.probe(cluster_namespace, cluster)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of sorted ``values`` (0 for none)."""
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def slice_names(clusters: int, real: int) -> list[str]:
    """The names of the real clusters, spread evenly over the fleet's names."""
    return [f"c{(i * clusters) // real:04d}" for i in range(real)] if real else []


def check_slice(slice_clusters: dict[str, LocalCluster], bundles: int, version: int) -> str:
    """Each real cluster holds every bundle's ConfigMap at ``version``: how many do."""
    found = []
    for name, cluster in sorted(slice_clusters.items()):
        good = 0
        for b in range(bundles):
            try:
                cm = cluster.request("GET", f"/api/v1/namespaces/default/configmaps/c{b}")
            except urllib.error.HTTPError:
                continue
            good += (cm.get("data") or {}).get("v") == str(version)
        found.append(f"{name} {good}/{bundles}")
    return ", ".join(found)


class OfflineCount(logging.Handler):
    """Counts the "cluster offline" warnings the bundle workflows log."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "cluster offline" in record.getMessage():
            self.count += 1


async def first_run(client: Client, workflow_id: str) -> str:
    """The run a workflow started with: reading from it along the continue-as-new chain
    covers every run (reading from the latest run covers that run only)."""
    runs = [e async for e in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    return min(runs, key=lambda e: e.start_time).run_id


@dataclass
class TaskShape:
    """What one workflow task had to do, for the slowest tasks' breakdown."""

    seconds: float
    # The run's first task (its input decoded, nothing replayed).
    first: bool
    # Scheduled on the workflow's normal queue, not the worker's sticky one: the worker had
    # no cached copy and replayed the history so far (``events_before`` events).
    replayed: bool
    events_before: int
    # Activity results and signals it took in, and activities it scheduled.
    completions: int
    signals: int
    scheduled: int = 0


def _task_shapes(events: Any) -> list[TaskShape]:
    shapes: list[TaskShape] = []
    started: float | None = None
    kind_normal = first = False
    completions = signals = 0
    current: TaskShape | None = None
    for index, event in enumerate(events):
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            queue = event.workflow_task_scheduled_event_attributes.task_queue
            kind_normal = queue.kind != TaskQueueKind.TASK_QUEUE_KIND_STICKY
            first = not shapes and current is None
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            started = event.event_time.ToDatetime().timestamp()
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED and started is not None:
            current = TaskShape(
                seconds=event.event_time.ToDatetime().timestamp() - started,
                first=first,
                replayed=kind_normal and not first,
                events_before=index,
                completions=completions,
                signals=signals,
            )
            shapes.append(current)
            completions = signals = 0
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED and current is not None:
            current.scheduled += 1
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            completions += 1
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            signals += 1
    return shapes


def print_slow_tasks(shapes: list[TaskShape]) -> None:
    """The slowest 1 % of the bundles' workflow tasks against all of them: how many were a
    run's first, a replay (no cached copy), and what they took in and scheduled."""
    if not shapes:
        return
    shapes = sorted(shapes, key=lambda t: t.seconds)
    slow = shapes[int(len(shapes) * 0.99) :]

    def line(group: list[TaskShape]) -> str:
        n = len(group)
        replays = [t.events_before for t in group if t.replayed]
        return (
            f"{n} tasks: first of a run {sum(t.first for t in group)}, replayed "
            f"{len(replays)} (median {statistics.median(replays) if replays else 0:.0f} events), "
            f"completions taken median {statistics.median(t.completions for t in group):.0f} "
            f"max {max(t.completions for t in group)}, signals median "
            f"{statistics.median(t.signals for t in group):.0f}, scheduled median "
            f"{statistics.median(t.scheduled for t in group):.0f} max "
            f"{max(t.scheduled for t in group)}"
        )

    print(f"slowest 1 % of bundle workflow tasks (>= {slow[0].seconds:.3f}s): {line(slow)}")
    print(f"  all: {line(shapes)}")


async def history_numbers(
    client: Client, workflow_id: str, shapes: list[TaskShape] | None = None
) -> dict[str, list[float]]:
    """Over every run: event count, bytes, workflow task durations and completion times (and
    each task's shape into ``shapes``)."""
    numbers: dict[str, list[float]] = {"events": [], "bytes": [], "wft": [], "done": []}
    run_id: str | None = await first_run(client, workflow_id)
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        numbers["events"].append(len(history.events))
        numbers["bytes"].append(sum(e.ByteSize() for e in history.events))
        if keep := KEEP_HISTORIES:
            # For replaying (and profiling) a real run's workflow tasks offline.
            name = f"{workflow_id.replace('/', '_')}-{history.run_id}.json"
            (keep[0] / name).write_text(history.to_json())
        if shapes is not None:
            shapes.extend(_task_shapes(history.events))
        started: float | None = None
        for event in history.events:
            at = event.event_time.ToDatetime().timestamp()
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                started = at
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                if started is not None:
                    numbers["wft"].append(at - started)
                numbers["done"].append(at)
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                numbers["done"].append(-at)  # negative: an activity, not a workflow task
        last = history.events[-1]
        if not last.HasField("workflow_execution_continued_as_new_event_attributes"):
            return numbers
        run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id


async def gitrepo_status(fl: Flotilla, namespace: str) -> GitRepoStatus | None:
    """The GitRepo's status; None when the query failed in transit (a busy worker or dev
    server under load: a timeout, a dropped stream), which the next probe retries."""
    try:
        return await fl.control.gitrepo_status(namespace, "bench")
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise
        print(f"status query failed, retried: {err.message}")
        return None


def peak_rss_mib(pid: int | None) -> float:
    """VmHWM of a process, in MiB (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def bench_files(bundles: int, fleet: str = "{}\n") -> dict[str, str | bytes]:
    """A repository of ``bundles`` bundles, one ConfigMap each, ``fleet`` as their fleet.yaml."""
    files: dict[str, str | bytes] = {}
    for b in range(bundles):
        files[f"b{b}/fleet.yaml"] = fleet
        files[f"b{b}/cm.yaml"] = CM.format(i=b, v=1)
    return files


async def add_clusters(
    fl: Flotilla, clusters: int, real: dict[str, LocalCluster] | None = None
) -> None:
    """Register ``clusters`` clusters: stand-ins (the deploys never reach them), except the
    ones named in ``real``, registered with their kubeconfigs."""
    for c in range(clusters):
        name = f"c{c:04d}"
        slice_cluster = (real or {}).get(name)
        kubeconfig = (
            slice_cluster.kubeconfig.read_text()
            if slice_cluster is not None
            else "apiVersion: v1\nkind: Config\n"
        )
        await fl.control.add_cluster(fl.namespace, name, kubeconfig)
    await fl.worker.refresh_clusters()


# Worker settings an experiment switch changed (--workflow-tasks).
EXPERIMENT: dict[str, Any] = {}
# Where --keep-histories writes the bundle and GitRepo runs' histories (empty: nowhere).
KEEP_HISTORIES: list[Path] = []


async def start_worker(
    client: Client, tmp: Path, times: DeployTimes | None = None, real: set[str] | None = None
) -> Flotilla:
    """The worker with its default flags (threads, concurrency, pollers), as one small
    production worker runs, and the stand-in deploys (instant, or taking ``times``); the
    clusters named in ``real`` get the real deploy engine. Stores below ``tmp``."""
    config = WorkerConfig(
        task_queue="bench",
        namespaces=[f"fl-{uuid.uuid4().hex[:8]}"],
        refresh_seconds=0.5,
        workdir=tmp / "work",
        # Stand-in clusters have no API server to watch; drift watching is measured by
        # bench_drift.py on real clusters.
        watch_objects=False,
        **EXPERIMENT,
    )
    settings = settings_for_test(client, tmp)
    standin = InstantDeploy(times)
    deploy: InstantDeploy | SlicedDeploy = standin
    if real:
        secrets = secret_store(settings)
        engine = DeployActivities(
            secrets,
            content_store(settings, secrets),
            config.workdir / "deploy",
            tools=locate_tools(settings.tools),
        )
        deploy = SlicedDeploy(engine, standin, real)
    worker = FlotillaWorker(client, config, settings, deploy=deploy)  # type: ignore[arg-type]
    await worker.start()
    control = Control(client, task_queue="bench", secrets=secret_store(settings))
    return Flotilla(config.namespaces[0], client, control, worker, config, settings)


def _spread(values: list[float]) -> str:
    """First, median and last of some offsets in seconds (none: a dash)."""
    if not values:
        return "-"
    values = sorted(values)
    return f"{values[0]:.1f} / {values[len(values) // 2]:.1f} / {values[-1]:.1f}s"


async def print_timeline(
    client: Client, namespace: str, bundles: int, began: float, ended: float
) -> None:
    """Where the first commit's time went: each phase as seconds after `flotilla apply`
    (first / median / last over the bundles), from the GitRepo's and bundles' histories."""
    print(
        f"first commit timeline (s after apply; first / median / last), all Ready at "
        f"{ended - began:.1f}s:"
    )
    gitrepo_id = gitrepo_workflow_id(namespace, "bench")
    calls, _ = await activity_calls(client, gitrepo_id, await first_run(client, gitrepo_id))
    for call in calls:
        if call.completed is None or call.completed.timestamp() > ended:
            continue
        print(
            f"  gitrepo {call.name}: scheduled {call.scheduled.timestamp() - began:.1f}, "
            f"started {(call.started or call.scheduled).timestamp() - began:.1f}, "
            f"completed {call.completed.timestamp() - began:.1f}"
        )
    phases: dict[str, list[float]] = {}
    for b in range(bundles):
        workflow_id = bundle_workflow_id(namespace, f"bench-b{b}")
        run_id = await first_run(client, workflow_id)
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        first_task = next(
            e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
        )
        phases.setdefault("bundle workflow started", []).append(
            history.events[0].event_time.ToDatetime().timestamp() - began
        )
        phases.setdefault("bundle first workflow task started", []).append(
            first_task.event_time.ToDatetime().timestamp() - began
        )
        bundle_calls, _ = await activity_calls(client, workflow_id, run_id)
        deploys: list[ActivityCall] = []
        for call in bundle_calls:
            if call.completed is None or call.completed.timestamp() > ended:
                continue
            if call.name == "plan_bundle":
                phases.setdefault("plan_bundle scheduled", []).append(
                    call.scheduled.timestamp() - began
                )
                phases.setdefault("plan_bundle completed", []).append(
                    call.completed.timestamp() - began
                )
            elif call.name == "deploy_bundle":
                deploys.append(call)
        if deploys:
            phases.setdefault("first deploy scheduled", []).append(
                min(c.scheduled.timestamp() for c in deploys) - began
            )
            phases.setdefault("last deploy scheduled", []).append(
                max(c.scheduled.timestamp() for c in deploys) - began
            )
            phases.setdefault("last deploy completed", []).append(
                max(c.completed.timestamp() for c in deploys if c.completed) - began
            )
            phases.setdefault("deploy scheduled to started (median per bundle)", []).append(
                statistics.median(
                    ((c.started or c.scheduled) - c.scheduled).total_seconds() for c in deploys
                )
            )
    for name, values in phases.items():
        print(f"  {name}: {_spread(values)}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of stat); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of each thread of a process, summed by thread name (Python's pool
    threads and the SDK core's Rust threads have their own names)."""
    by_name: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")].rstrip("0123456789_-")
        fields = stat.rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        by_name[name] = by_name.get(name, 0.0) + cpu
    return by_name


async def idle_cpu(server_pid: int | None, window: float, profile: str = "") -> tuple[float, float]:
    """CPU of this process (the worker; nothing else of the benchmark runs meanwhile) and of
    the server over ``window`` seconds of a settled fleet, as % of one core; with ``profile``,
    py-spy samples this process over the window into that file (speedscope JSON)."""
    me = os.getpid()
    spy = None
    if profile:
        spy = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(me),
            "--duration",
            str(int(window)),
            "--rate",
            "50",
            # Only the thread holding the interpreter lock: Python's CPU, not waiting threads.
            "--gil",
            "--format",
            "speedscope",
            "--output",
            profile,
        )
    mine, theirs = cpu_seconds(me), cpu_seconds(server_pid) if server_pid else 0.0
    threads = thread_cpu(me)
    began = time.monotonic()
    await asyncio.sleep(window)
    elapsed = time.monotonic() - began
    used = {n: c - threads.get(n, 0.0) for n, c in thread_cpu(me).items()}
    top = sorted(used.items(), key=lambda item: -item[1])[:8]
    print(
        "idle worker threads (% of one core): "
        + ", ".join(f"{name} {100 * cpu / elapsed:.1f}" for name, cpu in top if cpu > 0)
    )
    if spy is not None:
        await spy.wait()
    server = (cpu_seconds(server_pid) - theirs) if server_pid else 0.0
    return 100 * (cpu_seconds(me) - mine) / elapsed, 100 * server / elapsed


async def run(
    bundles: int,
    clusters: int,
    kind: str,
    idle: float = 0.0,
    *,
    monitor_seconds: float | None = None,
    profile: str = "",
    times: DeployTimes | None = None,
    real_clusters: int = 0,
) -> dict[str, float]:
    """One run on the ``kind`` Temporal server; returns its headline figures (with ``idle``
    seconds, also the CPU of the settled fleet over that window after the second commit).
    ``times``: the stand-in deploys take measured deploy times; ``real_clusters``: that many
    of the clusters are real local clusters deployed by the real engine."""
    offline = OfflineCount()
    logging.getLogger().addHandler(offline)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        slice_clusters = {
            name: stack.enter_context(LocalCluster(f"slice{i}", tmp / f"slice{i}", nodes=1))
            for i, name in enumerate(slice_names(clusters, real_clusters))
        }
        with (
            temporal_server(kind, tmp / "temporal") as server,
            GitDaemon(tmp / "git") as git,
        ):
            client = await Client.connect(server.address, data_converter=pydantic_data_converter)
            url = git.create_repo("bench", bench_files(bundles))
            fl = await start_worker(client, tmp / "fl", times, set(slice_clusters))
            try:
                ns = fl.namespace
                await add_clusters(fl, clusters, slice_clusters)
                total = bundles * clusters
                throughput = ServerThroughput(server.metrics_url)
                throughput.start()
                server_pid = server.process.pid if server.process else None
                cpu_before = (cpu_seconds(os.getpid()), cpu_seconds(server_pid or os.getpid()))
                began = time.time()
                started = time.monotonic()
                text = gitrepo_yaml(ns, "bench", url, targets=[{"clusterSelector": {}}])
                if monitor_seconds is None:
                    await fl.control.apply_text(text, file="g.yaml")
                else:
                    gitrepo = GitRepo.model_validate(yaml.safe_load(text))
                    await fl.control.apply_gitrepo(gitrepo, monitor_seconds=monitor_seconds)
                await fl.eventually(
                    lambda: gitrepo_status(fl, ns),
                    lambda s: (
                        s is not None
                        and s.ready_bundle_deployments == f"{total}/{total}"
                        and s.state == "Ready"
                    ),
                    timeout=1800,
                    interval=0.5,
                )
                first = time.monotonic() - started
                first_ended = time.time()
                commit = git.commit(
                    git.working_copy("bench"),
                    {f"b{b}/cm.yaml": CM.format(i=b, v=2) for b in range(bundles)},
                    message="v2",
                )
                started = time.monotonic()
                await fl.eventually(
                    lambda: gitrepo_status(fl, ns),
                    lambda s: (
                        s is not None
                        and s.commit == commit
                        and s.ready_bundle_deployments == f"{total}/{total}"
                        and s.state == "Ready"
                    ),
                    timeout=1800,
                    interval=0.5,
                )
                second = time.monotonic() - started
                rates = throughput.stop()
                ended = time.time()
                load_after = os.getloadavg()
                worker_cpu = cpu_seconds(os.getpid()) - cpu_before[0]
                server_cpu = (cpu_seconds(server_pid) - cpu_before[1]) if server_pid else 0.0
                idle_figures: dict[str, float] = {}
                if idle:
                    # Let the last reports and search-attribute upserts land first.
                    await asyncio.sleep(30)
                    load_idle = os.getloadavg()[0]
                    worker_idle, server_idle = await idle_cpu(server_pid, idle, profile)
                    print(
                        f"idle (settled, {idle:.0f}s window after 30 s): worker "
                        f"{worker_idle:.1f} % of one core, {kind} server {server_idle:.1f} %; "
                        f"load {load_idle:.2f} -> {os.getloadavg()[0]:.2f}"
                    )
                    idle_figures = {"idle worker %": worker_idle, "idle server %": server_idle}
                events = 0
                sizes: list[float] = []
                wft: list[float] = []
                wft_done = activities_done = 0
                shapes: list[TaskShape] = []
                for b in range(bundles):
                    numbers = await history_numbers(
                        client, bundle_workflow_id(ns, f"bench-b{b}"), shapes
                    )
                    sizes.extend(numbers["bytes"])
                    wft.extend(numbers["wft"])
                    wft_done += sum(1 for t in numbers["done"] if began <= t <= ended)
                    activities_done += sum(1 for t in numbers["done"] if began <= -t <= ended)
                wft.sort()
                # The GitRepo's own tasks (a slow one holds every bundle's report; its runs
                # are kept with --keep-histories too).
                repo = await history_numbers(client, gitrepo_workflow_id(ns, "bench"))
                repo_wft = sorted(repo["wft"])
                if repo_wft:
                    print(
                        f"gitrepo workflow tasks: p50 {repo_wft[len(repo_wft) // 2]:.3f}s, p99 "
                        f"{repo_wft[int(len(repo_wft) * 0.99)]:.3f}s, max {repo_wft[-1]:.3f}s "
                        f"over {len(repo_wft)}, {sum(t > 5 for t in repo_wft)} over 5 s; "
                        f"{len(repo['events'])} runs, largest {max(repo['bytes']) / 1e6:.2f} MB"
                    )
                latencies: dict[str, list[float]] = {}
                slowest: ActivityCall | None = None
                for b in range(bundles):
                    workflow_id = bundle_workflow_id(ns, f"bench-b{b}")
                    calls, counts = await activity_calls(
                        client, workflow_id, await first_run(client, workflow_id)
                    )
                    events += sum(counts.values())
                    for call in calls:
                        if call.attempt > 1:
                            print(
                                f"retried: {call.name} attempt {call.attempt} on {call.task_queue}"
                                f" after: {call.last_failure}"
                            )
                        if call.completed is not None:
                            latencies.setdefault(call.name, []).append(
                                (call.completed - call.scheduled).total_seconds()
                            )
                            if (
                                slowest is None
                                or slowest.completed is None
                                or (
                                    call.completed - call.scheduled
                                    > slowest.completed - slowest.scheduled
                                )
                            ):
                                slowest = call
                attempts = fl.worker.deploy.attempts  # type: ignore[attr-defined]
                print(
                    "deploys whose attempt 1 never reached the stand-in: "
                    f"{sum(1 for v in attempts.values() if min(a for a, _ in v) > 1)}; "
                    f"run more than once: {sum(1 for v in attempts.values() if len(v) > 1)}"
                )
                for name, values in sorted(latencies.items()):
                    values.sort()
                    print(
                        f"{name}: scheduled to completed median {values[len(values) // 2]:.2f}s, "
                        f"max {values[-1]:.2f}s over {len(values)} calls"
                    )
                if slowest is not None and slowest.completed and slowest.started:
                    # Where a slow call waited: before its last attempt started (dispatch, or
                    # an earlier attempt that timed out) or while running.
                    print(
                        f"slowest call: {slowest.name} on {slowest.task_queue}, attempt "
                        f"{slowest.attempt}, scheduled to started "
                        f"{(slowest.started - slowest.scheduled).total_seconds():.2f}s, "
                        f"started to completed "
                        f"{(slowest.completed - slowest.started).total_seconds():.2f}s, "
                        f"scheduled at {slowest.scheduled:%H:%M:%S.%f}"
                    )
                print(f"temporal={kind} bundles={bundles} clusters={clusters} deployments={total}")
                print(
                    f"first commit to all Ready: {first:.1f}s ({total / first:.0f} deployments/s)"
                )
                rate = total / second
                print(f"second commit to all Ready: {second:.1f}s ({rate:.0f} deployments/s)")
                per = events / (2 * total)
                print(f"bundle history events per deployment (two versions): {per:.1f}")
                elapsed = ended - began
                print(
                    "bundle workflow tasks: "
                    f"p50 {wft[len(wft) // 2]:.3f}s, p99 {wft[int(len(wft) * 0.99)]:.3f}s, "
                    f"max {wft[-1]:.3f}s over {len(wft)}; "
                    f"largest history run {max(sizes) / 1e6:.2f} MB"
                )
                print_slow_tasks(shapes)
                print(
                    f"Temporal throughput over both commits ({elapsed:.0f}s), bundle workflows: "
                    f"{wft_done / elapsed:.1f} workflow tasks/s, {activities_done / elapsed:.1f} "
                    "activities/s"
                )
                print(throughput.line())
                print(
                    f"CPU over both commits: bench process (worker, in process) {worker_cpu:.1f}s,"
                    f" {kind} server {server_cpu:.1f}s; per deployment "
                    f"{500 * worker_cpu / total:.1f} / {500 * server_cpu / total:.1f} ms"
                )
                print(f'"cluster offline" warnings: {offline.count}')
                maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                print(
                    f"peak RSS: bench process (worker) {peak_rss_mib(os.getpid()):.0f} MiB "
                    f"(ru_maxrss {maxrss:.0f} MiB), {kind} server "
                    f"{peak_rss_mib(server_pid):.0f} MiB"
                )
                print(
                    "load average (1, 5, 15 min) before: {:.2f} {:.2f} {:.2f}, after: "
                    "{:.2f} {:.2f} {:.2f}".format(*load_before, *load_after)
                )
                await print_timeline(client, ns, bundles, began, first_ended)
                standin = (
                    fl.worker.deploy.standin
                    if isinstance(fl.worker.deploy, SlicedDeploy)
                    else fl.worker.deploy
                )
                print(
                    "deploys are stand-ins under the real activity names (deploy_bundle, "
                    "wait_ready, check_deployment, remove_deployment) that answer "
                    + (f"after measured deploy times: {times.describe()}" if times else "at once")
                    + (
                        f"; {len(slice_clusters)} of the {clusters} clusters are real local "
                        "clusters deployed by the real engine (helm)"
                        if slice_clusters
                        else ""
                    )
                )
                if isinstance(fl.worker.deploy, SlicedDeploy):
                    real_walls = sorted(fl.worker.deploy.real_walls)
                    drawn = sorted(standin.drawn)  # type: ignore[union-attr]
                    print(
                        f"real-cluster slice: {len(real_walls)} real deploys (expected "
                        f"{2 * bundles * len(slice_clusters)}), each cluster's ConfigMaps at "
                        f"the second commit: {check_slice(slice_clusters, bundles, 2)}; "
                        "deploy wall (apply to Ready) real p50 "
                        f"{_quantile(real_walls, 0.5):.2f} s, "
                        f"p90 {_quantile(real_walls, 0.9):.2f} s; stand-ins drew p50 "
                        f"{_quantile(drawn, 0.5):.2f} s, p90 {_quantile(drawn, 0.9):.2f} s"
                    )
                return {
                    "first commit s": first,
                    "second commit s": second,
                    "server workflow tasks/s": rates["workflow tasks"],
                    "server activities/s": rates["activities"],
                    "load after": load_after[0],
                    "worker CPU s": worker_cpu,
                    "server CPU s": server_cpu,
                    "worker RSS MiB": peak_rss_mib(os.getpid()),
                    "server RSS MiB": peak_rss_mib(server_pid),
                    **idle_figures,
                }
            finally:
                await fl.cleanup()
                await fl.worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundles", type=int, default=5)
    parser.add_argument("--clusters", type=int, default=40)
    parser.add_argument("--runs", type=int, default=1, help="runs per server (default 1)")
    parser.add_argument(
        "--idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="after the second commit, measure the settled fleet's worker and server CPU "
        "over this window (default 0: not measured)",
    )
    parser.add_argument(
        "--shard-size",
        type=int,
        default=0,
        metavar="N",
        help="shard bundles above N clusters instead of the built-in size (an experiment)",
    )
    parser.add_argument(
        "--monitor-seconds",
        type=float,
        default=None,
        metavar="S",
        help="the bundles' drift-check interval instead of the built-in one (an experiment: "
        "a short one makes the periodic checks' cost visible in a short idle window)",
    )
    parser.add_argument(
        "--idle-profile",
        default="",
        metavar="FILE",
        help="with --idle, record the worker with py-spy over the idle window into FILE "
        "(speedscope JSON; needs py-spy in the virtualenv and ptrace rights)",
    )
    parser.add_argument(
        "--workflow-tasks",
        type=int,
        default=None,
        metavar="N",
        help="the worker's workflow tasks at once instead of worker.py's default (an experiment)",
    )
    parser.add_argument(
        "--sticky-timeout",
        type=float,
        default=None,
        metavar="S",
        help="the worker's sticky-queue schedule-to-start timeout instead of worker.py's "
        "(an experiment)",
    )
    parser.add_argument(
        "--keep-histories",
        type=Path,
        default=None,
        metavar="DIR",
        help="write every bundle and GitRepo workflow run's history into DIR as JSON (for "
        "replaying and profiling the workflow tasks offline)",
    )
    parser.add_argument(
        "--latencies",
        type=Path,
        default=None,
        metavar="FILE",
        help="the stand-in deploys take deploy times drawn from FILE (written by "
        "profile_deploy.py --latencies; bench/deploy_latencies.json is the committed "
        "measurement) instead of answering at once",
    )
    parser.add_argument(
        "--real-clusters",
        type=int,
        default=0,
        metavar="N",
        help="N of the clusters are real local clusters (kwok nodes) deployed by the real "
        "deploy engine, spread among the stand-ins (about 0.5 GiB each)",
    )
    parser.add_argument(
        "--cluster-threads",
        type=int,
        default=None,
        metavar="N",
        help="the worker's threads for push-mode deploys' applies instead of worker.py's "
        "default (with --latencies the applies hold their threads as real ones do)",
    )
    parser.add_argument(
        "--cluster-concurrency",
        type=int,
        default=None,
        metavar="N",
        help="the worker's calls at once per cluster instead of worker.py's default",
    )
    parser.add_argument(
        "--cluster-tasks",
        type=int,
        default=None,
        metavar="N",
        help="the worker's push-mode deploys in flight (waits for Ready included) instead of "
        "worker.py's default",
    )
    add_temporal_argument(parser)
    args = parser.parse_args()
    times = DeployTimes(args.latencies) if args.latencies is not None else None
    if args.cluster_threads is not None:
        EXPERIMENT["cluster_threads"] = args.cluster_threads
    if args.cluster_tasks is not None:
        EXPERIMENT["cluster_tasks"] = args.cluster_tasks
    if args.cluster_concurrency is not None:
        EXPERIMENT["cluster_concurrency"] = args.cluster_concurrency
    if not 0 <= args.real_clusters <= args.clusters:
        parser.error(f"--real-clusters: {args.real_clusters}: must be 0 to --clusters")
    if args.real_clusters:
        # The real engine finds helm (and kustomize, sops) as the worker does: on PATH.
        found = os.pathsep.join(str(d) for d in tools.bin_dirs())
        os.environ["PATH"] = os.pathsep.join([found, os.environ["PATH"]])
    if args.keep_histories is not None:
        args.keep_histories.mkdir(parents=True, exist_ok=True)
        KEEP_HISTORIES.append(args.keep_histories)
    if args.workflow_tasks is not None:
        EXPERIMENT["workflow_tasks"] = args.workflow_tasks
    if args.sticky_timeout is not None:
        import worker  # noqa: PLC0415

        worker.STICKY_QUEUE_TIMEOUT = timedelta(seconds=args.sticky_timeout)
    if args.shard_size:
        import flotilla.settings  # noqa: PLC0415
        import workflows.bundle_shards  # noqa: PLC0415

        flotilla.settings.DEFAULT_BUNDLE_SHARD_SIZE = args.shard_size
        # The workflow module's own binding of the name (imported from flotilla.settings).
        setattr(workflows.bundle_shards, "DEFAULT_BUNDLE_SHARD_SIZE", args.shard_size)  # noqa: B010
    kinds = temporal_kinds(parser, args.temporal)
    logging.basicConfig(level=logging.WARNING)
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for number in range(args.runs):
        # Alternate which server goes first, so neither always runs on the warmer machine.
        for kind in kinds if number % 2 == 0 else kinds[::-1]:
            # Each run's worker starts on a clean heap, as a fresh worker process would: the
            # worker's young generation is large (worker.py GC_THRESHOLDS), so the last
            # run's stopped worker would otherwise wait for a rare full collection.
            gc.collect()
            print(f"\n== run {number + 1} on {kind}", flush=True)
            results[kind].append(
                asyncio.run(
                    run(
                        args.bundles,
                        args.clusters,
                        kind,
                        args.idle,
                        monitor_seconds=args.monitor_seconds,
                        profile=args.idle_profile,
                        times=times,
                        real_clusters=args.real_clusters,
                    )
                )
            )
    print(f"\nmedians of {args.runs} run(s), {args.bundles} bundles x {args.clusters} clusters:")
    for kind, runs in results.items():
        figures = ", ".join(
            f"{name} {statistics.median(r[name] for r in runs):.1f} "
            f"({' '.join(f'{r[name]:.1f}' for r in runs)})"
            for name in runs[0]
        )
        print(f"  {kind}: {figures}")


if __name__ == "__main__":
    main()
