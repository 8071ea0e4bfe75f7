"""Agent mode benchmarks: agent vs push deploys, an idle agent's cost, offline and back.

Offline and back: the time from ``kill -9`` of an agent to its cluster shown Offline, and from
its restart to Ready.

Real components throughout: a Temporal dev server, one local cluster (etcd, kube-apiserver,
controller-manager, a kwok node), a git daemon, the worker as its own process
(``python worker.py``) and ``flotilla agent`` as its own process.

``--compare-runs N``: 50 raw-YAML bundles of 10 objects (bench_deploy's: a Deployment, a
Service, eight ConfigMaps) to the one cluster, timed from ``flotilla apply`` of the GitRepo
(the commit is already pushed) to 50/50 bundle deployments Ready, once in push mode (the
worker deploys with the cluster's kubeconfig) and once in agent mode (the agent deploys; the
worker runs only the workflows). Both modes deploy at most 4 at a time (the worker's
``--cluster-concurrency``, the agent's ``--threads``). Each run is both modes, in alternating
order, each with a fresh worker, flotilla namespace and Kubernetes namespaces, so load affects
both alike; the ratio is agent / push of the medians.

``--idle-seconds S``: the agent of the first agent-mode side, its 50 bundles settled (its object
watcher and the 5-minute drift checks running), measured for S seconds: CPU (% of one core)
and peak RSS. Without ``--compare-runs``, an agent with no bundles.

``--runs N``: kill -9 / restart cycles, read the way ``flotilla get clusters`` reads them (the
registry's ``snapshot`` query), every 0.2 s. Run:

    .venv/bin/python bench/bench_agent.py --runs 0 --compare-runs 5 --idle-seconds 300
    .venv/bin/python bench/bench_agent.py --runs 5 --heartbeat-seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml
from bench_deploy import objects
from bench_fleet import BUNDLES, cpu_seconds, start_worker, stop_worker, wait_for_log

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.worker import Worker

from activities.secrets import FileSecretStore
from devenv import tools
from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from devenv.temporal import TemporalDevServer
from flotilla.settings import TemporalSettings
from runtime.temporal import connect
from starters.agent import STARTED_LINE
from starters.control import Control
from tests.e2e.harness import gitrepo_yaml
from workflows.registry import ClusterRegistryWorkflow

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = "edge"
# Deploys at once in both modes: the worker's --cluster-concurrency, the agent's --threads.
CONCURRENCY = 4
READY_TIMEOUT = 1800.0


def load() -> str:
    return Path("/proc/loadavg").read_text().strip()


def start_agent(
    root: Path,
    *extra: str,
    address: str,
    namespace: str,
    queue: str,
    kubeconfig: Path,
    beat: float,
) -> subprocess.Popen[bytes]:
    """``flotilla agent`` for ``namespace/edge``, with its own secrets (none) and the content
    directory ``root/content`` (the worker's, when started with the same root)."""
    log = root / "agent.log"
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "HOME": str(root),
        "FLOTILLA_WORKDIR": str(root / "agent-work"),
        "FLOTILLA_SECRETS_DIR": str(root / "agent-secrets"),
        "FLOTILLA_CONTENT_DIR": str(root / "content"),
        "PYTHONPATH": str(ROOT),
    }
    argv = [
        sys.executable,
        "-m",
        "starters.cli",
        "agent",
        "--cluster",
        f"{namespace}/{CLUSTER}",
        "--kubeconfig",
        str(kubeconfig),
        "--heartbeat-seconds",
        str(beat),
        "--task-queue",
        queue,
        *extra,
    ]
    root.mkdir(parents=True, exist_ok=True)
    offset = log.stat().st_size if log.exists() else 0
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    deadline = time.monotonic() + 180
    while STARTED_LINE not in log.read_text()[offset:]:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"agent did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    return proc


async def wait_for(control: Control, namespace: str, offline: bool) -> float:
    start = time.monotonic()
    while True:
        snapshot = await control.registry(namespace)
        record = next(c for c in snapshot.clusters if c.name == CLUSTER)
        if bool(record.unreachable) == offline and record.last_seen is not None:
            return time.monotonic() - start
        await asyncio.sleep(0.2)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def measure_idle(pid: int, seconds: float, what: str) -> None:
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    peak = 0.0
    while time.monotonic() - t0 < seconds:
        peak = max(peak, rss_mib(pid))
        await asyncio.sleep(1)
    used = cpu_seconds(pid) - cpu0
    print(
        f"idle agent with {what} over {seconds:g}s: CPU {used:.2f}s "
        f"({100 * used / seconds:.2f}% of a core), RSS peak {peak:.0f} MiB; load {load()}",
        flush=True,
    )


async def kill_and_restart(
    server: TemporalDevServer, cluster: LocalCluster, root: Path, args: argparse.Namespace
) -> None:
    """kill -9 → Offline and restart → Ready, ``args.runs`` times, on an in-process registry."""
    client = await connect(TemporalSettings(address=server.address))
    namespace, queue = f"bench-{uuid.uuid4().hex[:6]}", f"bench-{uuid.uuid4().hex[:6]}"
    control = Control(client, task_queue=queue, secrets=FileSecretStore(root / "s"))
    agent_args = {
        "address": server.address,
        "namespace": namespace,
        "queue": queue,
        "kubeconfig": cluster.kubeconfig,
        "beat": args.heartbeat_seconds,
    }
    start = functools.partial(start_agent, root / "kill", "--no-object-watch", **agent_args)
    async with Worker(client, task_queue=queue, workflows=[ClusterRegistryWorkflow]):
        await control.add_cluster(namespace, CLUSTER, None)
        agent = await asyncio.to_thread(start)
        await wait_for(control, namespace, offline=False)
        offline, ready = [], []
        for run in range(args.runs):
            os.kill(agent.pid, signal.SIGKILL)
            agent.wait()
            offline.append(await wait_for(control, namespace, offline=True))
            started = time.monotonic()
            agent = await asyncio.to_thread(start)
            await wait_for(control, namespace, offline=False)
            ready.append(time.monotonic() - started)
            print(
                f"run {run + 1}: kill -9 -> Offline {offline[-1]:.1f}s, "
                f"restart -> Ready {ready[-1]:.1f}s, load {load()}",
                flush=True,
            )
        print(
            f"heartbeat {args.heartbeat_seconds:g}s: kill -9 -> Offline median "
            f"{statistics.median(offline):.1f}s (min {min(offline):.1f}, max "
            f"{max(offline):.1f}); restart -> Ready median {statistics.median(ready):.1f}s"
            f" (min {min(ready):.1f}, max {max(ready):.1f}); {args.runs} runs",
            flush=True,
        )
        if args.idle_seconds and not args.compare_runs:
            await measure_idle(agent.pid, args.idle_seconds, "no bundles")
        stop_worker(agent)  # SIGTERM, as for the worker


async def deploy_run(
    tag: str,
    *,
    agent_mode: bool,
    server: TemporalDevServer,
    git: GitDaemon,
    cluster: LocalCluster,
    root: Path,
    idle_seconds: float = 0.0,
) -> float:
    """One side of a run: seconds from apply to 50/50 Ready (then ``idle_seconds`` of the
    agent's idle cost, when asked)."""
    namespace = f"fl-{tag}"
    files: dict[str, str | bytes] = {}
    for index in range(BUNDLES):
        files[f"b{index}/app.yaml"] = yaml.safe_dump_all(objects(index))
        files[f"b{index}/fleet.yaml"] = yaml.safe_dump({"defaultNamespace": f"{tag}-b{index}"})
    url = git.create_repo(f"bench-{tag}", files)
    client = await connect(TemporalSettings(address=server.address))
    control = Control(client, secrets=FileSecretStore(root / "secrets"))
    worker = start_worker(
        server.address,
        root / tag,
        [namespace],
        "--refresh-seconds",
        "1",
        "--cluster-concurrency",
        str(CONCURRENCY),
    )
    agent: subprocess.Popen[bytes] | None = None
    try:
        if agent_mode:
            await control.add_cluster(namespace, CLUSTER, None)
            agent = await asyncio.to_thread(
                functools.partial(
                    start_agent,
                    root / tag,
                    "--threads",
                    str(CONCURRENCY),
                    address=server.address,
                    namespace=namespace,
                    queue=control.task_queue,
                    kubeconfig=cluster.kubeconfig,
                    beat=15.0,
                )
            )
        else:
            await control.add_cluster(namespace, CLUSTER, cluster.kubeconfig.read_text())
            wait_for_log(root / tag / "worker.log", "serving push-mode cluster", 1)
        started = time.monotonic()
        status: object = None
        await control.apply_text(
            gitrepo_yaml(namespace, "bench", url, targets=[{"clusterSelector": {}}]),
            file="g.yaml",
        )
        while True:
            try:
                status = await control.gitrepo_status(namespace, "bench")
                if status.state == "Ready" and status.ready_bundle_deployments == (
                    f"{BUNDLES}/{BUNDLES}"
                ):
                    break
            except Exception:  # not started yet
                pass
            if time.monotonic() - started > READY_TIMEOUT:
                raise RuntimeError(f"not Ready after {READY_TIMEOUT:g}s: {status!r}")
            await asyncio.sleep(0.5)
        seconds = time.monotonic() - started
        # A deploy that waited on the agent's queue past its schedule-to-start timeout.
        timeouts = (root / tag / "worker.log").read_text(errors="replace").count("cluster offline")
        if timeouts:
            print(f"    {timeouts} 'cluster offline' warnings in the worker's log", flush=True)
        if agent is not None and idle_seconds:
            await measure_idle(agent.pid, idle_seconds, f"{BUNDLES} settled bundles")
        for prefix in ("gitrepo", "bundle", "registry", "objectwatch"):
            query = f"WorkflowId STARTS_WITH '{prefix}/{namespace}' AND ExecutionStatus = 'Running'"
            async for wf in client.list_workflows(query):
                await client.get_workflow_handle(wf.id).terminate("benchmark finished")
        return seconds
    finally:
        if agent is not None:
            stop_worker(agent)  # SIGTERM, as for the worker
        stop_worker(worker)


async def compare(
    server: TemporalDevServer, cluster: LocalCluster, root: Path, args: argparse.Namespace
) -> None:
    """Agent vs push, ``args.compare_runs`` runs, the modes' order alternating."""
    results: dict[bool, list[float]] = {False: [], True: []}
    with GitDaemon(root / "git") as git:
        for run in range(args.compare_runs):
            order = [True, False] if run % 2 else [False, True]
            for agent_mode in order:
                # The idle agent: the first agent side's, its bundles settled (measured before
                # the next side starts, so nothing else of the benchmark runs meanwhile).
                first = run == 0 and agent_mode
                tag = f"{'ag' if agent_mode else 'pu'}{run}{uuid.uuid4().hex[:4]}"
                seconds = await deploy_run(
                    tag,
                    agent_mode=agent_mode,
                    server=server,
                    git=git,
                    cluster=cluster,
                    root=root,
                    idle_seconds=args.idle_seconds if first else 0.0,
                )
                results[agent_mode].append(seconds)
                mode = "agent" if agent_mode else "push"
                print(f"run {run + 1} {mode:5s}: {seconds:6.1f}s, load {load()}", flush=True)
    push, agent = statistics.median(results[False]), statistics.median(results[True])
    print(
        f"{BUNDLES} raw bundles x 10 objects to one cluster, {CONCURRENCY} at a time, median of "
        f"{args.compare_runs}: push {push:.1f}s {sorted(round(x, 1) for x in results[False])}, "
        f"agent {agent:.1f}s {sorted(round(x, 1) for x in results[True])}, "
        f"ratio agent/push {agent / push:.3f}",
        flush=True,
    )


async def main(args: argparse.Namespace) -> None:
    os.environ["PATH"] = os.pathsep.join([*(str(d) for d in tools.bin_dirs()), os.environ["PATH"]])
    print(f"load at start: {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        root = Path(tmp)
        with (
            TemporalDevServer(root / "temporal", headless=True) as server,
            LocalCluster("edge", root / "edge", nodes=1) as cluster,
        ):
            if args.runs or (args.idle_seconds and not args.compare_runs):
                await kill_and_restart(server, cluster, root, args)
            if args.compare_runs:
                await compare(server, cluster, root, args)
    print(f"load at end: {load()}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="kill -9 / restart cycles")
    parser.add_argument("--heartbeat-seconds", type=float, default=5.0)
    parser.add_argument("--idle-seconds", type=float, default=0.0)
    parser.add_argument(
        "--compare-runs", type=int, default=0, help="runs of agent vs push, 50 bundles each"
    )
    asyncio.run(main(parser.parse_args()))
