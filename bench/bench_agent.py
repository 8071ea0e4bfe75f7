"""Agent mode: time from ``kill -9`` of an agent to its cluster shown Offline, from its
restart to Ready (beating again, Offline cleared), and an idle agent's CPU and memory.

Real components: a Temporal dev server, one local API server (etcd + kube-apiserver: the
agent reads ``/version`` with its kubeconfig on every beat), the registry workflow on an
in-process worker, and ``flotilla agent`` as its own process. Offline/Ready is read the way
``flotilla get clusters`` reads it (the registry's ``snapshot`` query), every 0.2 s. Run:

    .venv/bin/python bench/bench_agent.py --runs 5 --heartbeat-seconds 5 --idle-seconds 300

The idle agent serves no bundles here (its cost is the heartbeat and the task-queue poll);
an agent with settled bundles adds one ``check_deployment`` per bundle every 5 minutes.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.worker import Worker

from activities.secrets import FileSecretStore
from devenv import tools
from devenv.cluster import LocalCluster
from devenv.temporal import TemporalDevServer
from flotilla.settings import TemporalSettings
from runtime.temporal import connect
from starters.agent import STARTED_LINE
from starters.control import Control
from workflows.registry import ClusterRegistryWorkflow

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = "edge"


def start_agent(
    root: Path, *, address: str, namespace: str, queue: str, kubeconfig: Path, beat: float
) -> subprocess.Popen[bytes]:
    log = root / "agent.log"
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "HOME": str(root),
        "FLOTILLA_WORKDIR": str(root / "work"),
        "FLOTILLA_SECRETS_DIR": str(root / "secrets"),
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
    ]
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


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def main(args: argparse.Namespace) -> None:
    os.environ["PATH"] = os.pathsep.join([*(str(d) for d in tools.bin_dirs()), os.environ["PATH"]])
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        root = Path(tmp)
        with (
            TemporalDevServer(root / "temporal", headless=True) as server,
            LocalCluster("edge", root / "edge", workloads=False) as cluster,
        ):
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
            async with Worker(client, task_queue=queue, workflows=[ClusterRegistryWorkflow]):
                await control.add_cluster(namespace, CLUSTER, None)
                agent = await asyncio.to_thread(functools.partial(start_agent, root, **agent_args))
                await wait_for(control, namespace, offline=False)
                offline, ready = [], []
                for run in range(args.runs):
                    os.kill(agent.pid, signal.SIGKILL)
                    agent.wait()
                    offline.append(await wait_for(control, namespace, offline=True))
                    started = time.monotonic()
                    agent = await asyncio.to_thread(
                        functools.partial(start_agent, root, **agent_args)
                    )
                    await wait_for(control, namespace, offline=False)
                    ready.append(time.monotonic() - started)
                    print(
                        f"run {run + 1}: kill -9 -> Offline {offline[-1]:.1f}s, "
                        f"restart -> Ready {ready[-1]:.1f}s, load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
                print(
                    f"heartbeat {args.heartbeat_seconds:g}s: kill -9 -> Offline median "
                    f"{statistics.median(offline):.1f}s (min {min(offline):.1f}, max "
                    f"{max(offline):.1f}); restart -> Ready median {statistics.median(ready):.1f}s"
                    f" (min {min(ready):.1f}, max {max(ready):.1f}); {args.runs} runs"
                )
                if args.idle_seconds:
                    cpu0, t0 = cpu_seconds(agent.pid), time.monotonic()
                    peak = 0.0
                    while time.monotonic() - t0 < args.idle_seconds:
                        peak = max(peak, rss_mib(agent.pid))
                        await asyncio.sleep(1)
                    used = cpu_seconds(agent.pid) - cpu0
                    print(
                        f"idle agent over {args.idle_seconds:g}s: CPU {used:.2f}s "
                        f"({100 * used / args.idle_seconds:.2f}% of a core), "
                        f"RSS peak {peak:.0f} MiB; load {os.getloadavg()[0]:.1f}"
                    )
                agent.terminate()
                agent.wait(timeout=60)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--heartbeat-seconds", type=float, default=5.0)
    parser.add_argument("--idle-seconds", type=float, default=0.0)
    asyncio.run(main(parser.parse_args()))
