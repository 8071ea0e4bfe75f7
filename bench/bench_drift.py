"""Drift in seconds: edit → Modified and edit → corrected, on 3 real local clusters.

Everything is real: a Temporal dev server, a git daemon, 3 local clusters (1 kwok node each)
and the flotilla worker as a subprocess (``python worker.py``, real activities, the object
watcher on; the periodic drift check at its default 5 minutes, so only the watch can be fast).
One GitRepo targets every cluster with two bundles of a Deployment, a ConfigMap and a Service:
``bench-look`` (drift is only shown) and ``bench-fix`` (``correctDrift: {enabled: true}``).
Each run edits the ConfigMap of both bundles by hand on one cluster (round robin) and times,
polling every 0.1 s, until the bundle's status for that cluster shows Modified (``look``) and
until the live ConfigMap is back as committed (``fix``). Runs are spaced so one cluster's
edits are more than 20 s apart, past the correction back-off. Run:

    .venv/bin/python bench/bench_drift.py --runs 10
    .venv/bin/python bench/bench_drift.py --runs 3 --no-object-watch   # the backstop only
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

from bench_fleet import cpu_seconds, load, start_worker, stop_worker, tool_env, wait_for_log

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activities.kube import Kube
from activities.secrets import FileSecretStore
from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from devenv.temporal import TemporalDevServer
from flotilla.settings import TemporalSettings
from runtime.temporal import connect
from starters.control import Control
from tests.e2e.harness import gitrepo_yaml

CLUSTERS = 3
NAMESPACE = "fleet-bench"
# One cluster's edits come every CLUSTERS runs; this spacing keeps them > 20 s apart.
SPACING_SECONDS = 8.0
GIVE_UP_SECONDS = 400.0

APP = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app, image: registry.local/web:1}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {color: blue}
---
apiVersion: v1
kind: Service
metadata: {name: svc}
spec: {selector: {app: web}, ports: [{port: 80}]}
"""


def repo_files() -> dict[str, str | bytes]:
    return {
        "look/app.yaml": APP,
        "look/fleet.yaml": "namespace: drift-look\n",
        "fix/app.yaml": APP,
        "fix/fleet.yaml": "namespace: drift-fix\ncorrectDrift: {enabled: true}\n",
    }


async def until(what: str, probe: Callable[[], object]) -> float:
    """Seconds until ``probe()`` (sync or async) is true, polling every 0.1 s."""
    started = time.monotonic()
    while time.monotonic() - started < GIVE_UP_SECONDS:
        result = probe()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{what}: not within {GIVE_UP_SECONDS} s")


async def cluster_state(control: Control, bundle: str, cluster: str) -> str:
    status = await control.bundle_status(NAMESPACE, bundle)
    return next((c.state for c in status.clusters if c.cluster == cluster), "")


async def main_async(runs: int, watch: bool, idle_seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        root = Path(tmp)
        clusters = [LocalCluster(f"c{n}", root / f"cluster{n}", nodes=1) for n in range(CLUSTERS)]
        with (
            TemporalDevServer(root / "temporal", headless=True) as server,
            GitDaemon(root / "git") as git,
        ):
            worker = None
            try:
                for cluster in clusters:
                    cluster.start()
                kubes = {c.name: Kube.from_kubeconfig(c.kubeconfig.read_text()) for c in clusters}
                client = await connect(TemporalSettings(address=server.address))
                control = Control(client, secrets=FileSecretStore(root / "secrets"))
                extra = ["--refresh-seconds", "1"] + ([] if watch else ["--no-object-watch"])
                worker = start_worker(server.address, root / "worker", [NAMESPACE], *extra)
                for cluster in clusters:
                    await control.add_cluster(
                        NAMESPACE, cluster.name, cluster.kubeconfig.read_text()
                    )
                wait_for_log(root / "worker" / "worker.log", "serving push-mode cluster", CLUSTERS)
                url = git.create_repo("bench", repo_files())
                await control.apply_text(
                    gitrepo_yaml(NAMESPACE, "bench", url, targets=[{"clusterSelector": {}}]),
                    file="g.yaml",
                )

                async def all_ready() -> bool:
                    try:
                        status = await control.gitrepo_status(NAMESPACE, "bench")
                    except Exception:  # not started yet
                        return False
                    total = 2 * CLUSTERS
                    return status.state == "Ready" and (
                        status.ready_bundle_deployments == f"{total}/{total}"
                    )

                await until("all Ready", all_ready)
                await asyncio.sleep(5)  # the watchers have listed what they watch
                print(f"settled; load {load()}", flush=True)
                if idle_seconds > 0:
                    cpu = cpu_seconds(worker.pid)
                    await asyncio.sleep(idle_seconds)
                    used = cpu_seconds(worker.pid) - cpu
                    print(
                        f"idle {idle_seconds:.0f} s: worker CPU {used:.2f} s "
                        f"({100 * used / idle_seconds:.1f}% of one core), load {load()}",
                        flush=True,
                    )
                modified: list[float] = []
                corrected: list[float] = []
                for run in range(runs):
                    name = clusters[run % CLUSTERS].name
                    kube = kubes[name]
                    # Both bundles show Ready on this cluster before the edit: nothing stale.
                    for bundle in ("bench-look", "bench-fix"):
                        await until("Ready", partial(_is, control, bundle, name, "Ready"))
                    before = load()
                    color = f"run{run}"
                    kube.merge_patch(
                        "v1", "ConfigMap", "drift-look", "cfg", {"data": {"color": color}}
                    )
                    modified.append(
                        await until(
                            "Modified",
                            partial(_is, control, "bench-look", name, "Modified"),
                        )
                    )
                    kube.merge_patch(
                        "v1", "ConfigMap", "drift-fix", "cfg", {"data": {"color": color}}
                    )
                    corrected.append(
                        await until(
                            "corrected",
                            partial(_has_color, kube, "drift-fix", "blue"),
                        )
                    )
                    # Back as committed, so the next edit on this cluster is a change again.
                    kube.merge_patch(
                        "v1", "ConfigMap", "drift-look", "cfg", {"data": {"color": "blue"}}
                    )
                    print(
                        f"run {run + 1} cluster {name}: edit -> Modified {modified[-1]:5.1f} s, "
                        f"edit -> corrected {corrected[-1]:5.1f} s (load before {before}, "
                        f"after {load()})",
                        flush=True,
                    )
                    await asyncio.sleep(SPACING_SECONDS)
            finally:
                if worker is not None:
                    stop_worker(worker)
                for cluster in clusters:
                    cluster.stop()
    print()
    print(f"object watch {'on' if watch else 'off'}, {CLUSTERS} clusters, {runs} runs")
    print(f"edit -> Modified:  median {statistics.median(modified):5.1f} s  {modified}")
    print(f"edit -> corrected: median {statistics.median(corrected):5.1f} s  {corrected}")
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


async def _is(control: Control, bundle: str, cluster: str, state: str) -> bool:
    return await cluster_state(control, bundle, cluster) == state


def _has_color(kube: Kube, namespace: str, color: str) -> bool:
    live = kube.get("v1", "ConfigMap", namespace, "cfg") or {}
    return bool((live.get("data") or {}).get("color") == color)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-object-watch", dest="watch", action="store_false")
    parser.add_argument(
        "--idle-seconds", type=float, default=60.0, help="worker CPU measured this long, settled"
    )
    args = parser.parse_args()
    os.environ["PATH"] = tool_env()["PATH"]
    asyncio.run(main_async(args.runs, args.watch, args.idle_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
