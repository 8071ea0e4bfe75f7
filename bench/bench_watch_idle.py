"""Idle cost of the object watchers: B bundles settled on C clusters, watches on versus the
periodic check alone.

Real components: a Temporal dev server, a git daemon, A API servers (etcd + kube-apiserver
each, no nodes or controllers: the bundles are ConfigMaps) and the flotilla worker as a
subprocess (``python worker.py``, real activities). C cluster names are registered, spread
round robin over the A API servers (stand-in clusters: each name has its own object watcher,
credentials and namespace, ``idle-<cluster>`` by a targetCustomization, so names that share an
API server share no release). One GitRepo of B bundles (one ConfigMap each) targets them all.

Once every deployment is Ready, the benchmark measures two idle windows of ``--window``
seconds on the same deployed state: first with ``--no-object-watch`` (the periodic check
alone, every 5 minutes per bundle), then after restarting the worker with the watchers on
(after ``--settle`` seconds for them to list and read what they watch). Per window: the
worker's CPU (user + system, its threads included) as % of one core, its RSS at the end, and
the requests the API servers counted themselves (``apiserver_request_total`` from each
``/metrics``, summed, by verb), per minute, less what the API servers do on their own with
no worker running (measured before the first worker starts). A WATCH is counted when it ends
(the watcher renews each every 20 s). Run:

    .venv/bin/python bench/bench_watch_idle.py --bundles 50 --clusters 50 --apiservers 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench_fleet import cpu_seconds, load, start_worker, stop_worker, tool_env, wait_for_log
from soak_drift import rss_mib

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activities.secrets import FileSecretStore
from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from devenv.temporal import TemporalDevServer
from flotilla.settings import TemporalSettings
from runtime.temporal import connect
from starters.control import Control
from tests.e2e.harness import gitrepo_yaml, per_cluster_namespaces

NAMESPACE = "fleet-idle"
READY_TIMEOUT = 3600.0
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm{i}}}\ndata: {{v: '1'}}\n"
_REQUEST = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_VERB = re.compile(r'verb="([^"]*)"')


def requests_by_verb(apiservers: list[LocalCluster]) -> Counter[str]:
    """``apiserver_request_total`` of every API server, summed by verb."""
    total: Counter[str] = Counter()
    for apiserver in apiservers:
        for line in apiserver.raw_request("GET", "/metrics").decode().splitlines():
            found = _REQUEST.match(line)
            if found:
                verb = _VERB.search(found["labels"])
                total[verb[1] if verb else "?"] += int(float(found["value"]))
    return total


def per_minute(before: Counter[str], after: Counter[str], seconds: float) -> dict[str, float]:
    return {
        verb: round(60 * (after[verb] - before[verb]) / seconds, 1)
        for verb in sorted(after)
        if after[verb] != before[verb]
    }


def repo_files(bundles: int, clusters: list[str]) -> dict[str, str | bytes]:
    fleet = per_cluster_namespaces("idle", clusters)
    files: dict[str, str | bytes] = {}
    for i in range(bundles):
        files[f"b{i}/cm.yaml"] = CM.format(i=i)
        files[f"b{i}/fleet.yaml"] = fleet
    return files


async def window(
    label: str, seconds: float, pid: int, apiservers: list[LocalCluster], baseline: dict[str, float]
) -> None:
    before_cpu, before_requests = cpu_seconds(pid), requests_by_verb(apiservers)
    started = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - started
    used = cpu_seconds(pid) - before_cpu
    rates = per_minute(before_requests, requests_by_verb(apiservers), elapsed)
    total = sum(rates.values())
    above = total - sum(baseline.values())
    print(
        f"{label}: {elapsed:.0f} s idle: worker CPU {used:.1f} s ({100 * used / elapsed:.1f}% "
        f"of one core), RSS {rss_mib(pid):.0f} MiB; API requests {total:.0f}/min "
        f"({above:.0f}/min above the API servers' own), by verb {rates}; load {load()}",
        flush=True,
    )


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-watch-idle-") as tmp:
        root = Path(tmp)
        apiservers = [
            LocalCluster(f"api{n}", root / f"api{n}", workloads=False)
            for n in range(args.apiservers)
        ]
        names = [f"c{n:02d}" for n in range(args.clusters)]
        with (
            TemporalDevServer(root / "temporal", headless=True) as server,
            GitDaemon(root / "git") as git,
        ):
            worker = None
            try:
                for apiserver in apiservers:
                    apiserver.start()
                start = requests_by_verb(apiservers)
                await asyncio.sleep(60)
                baseline = per_minute(start, requests_by_verb(apiservers), 60)
                print(f"API servers alone: {sum(baseline.values()):.0f}/min {baseline}", flush=True)

                client = await connect(TemporalSettings(address=server.address))
                control = Control(client, secrets=FileSecretStore(root / "secrets"))
                worker_dir = root / "worker"
                worker = start_worker(server.address, worker_dir, [NAMESPACE], "--no-object-watch")
                for n, name in enumerate(names):
                    apiserver = apiservers[n % len(apiservers)]
                    await control.add_cluster(NAMESPACE, name, apiserver.kubeconfig.read_text())
                wait_for_log(worker_dir / "worker.log", "serving push-mode cluster", len(names))
                url = git.create_repo("idle", repo_files(args.bundles, names))
                await control.apply_text(
                    gitrepo_yaml(NAMESPACE, "idle", url, targets=[{"clusterSelector": {}}]),
                    file="g.yaml",
                )
                total = args.bundles * len(names)
                applied = time.monotonic()
                deadline = applied + READY_TIMEOUT
                while True:
                    try:
                        status = await control.gitrepo_status(NAMESPACE, "idle")
                        if status.ready_bundle_deployments == f"{total}/{total}":
                            break
                    except Exception:  # not started yet
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"not {total} Ready within {READY_TIMEOUT:.0f} s")
                    await asyncio.sleep(5)
                print(
                    f"{total}/{total} Ready in {time.monotonic() - applied:.0f} s; load {load()}",
                    flush=True,
                )
                await asyncio.sleep(args.settle)
                await window("periodic check alone", args.window, worker.pid, apiservers, baseline)

                stop_worker(worker)
                worker = start_worker(server.address, worker_dir, [NAMESPACE])
                # A loaded machine takes minutes to serve 50 clusters again.
                wait_for_log(
                    worker_dir / "worker.log", "serving push-mode cluster", len(names), 900
                )
                await asyncio.sleep(args.settle)
                await window("object watchers on", args.window, worker.pid, apiservers, baseline)
            finally:
                if worker is not None:
                    stop_worker(worker)
                for apiserver in apiservers:
                    apiserver.stop()
    print(
        f"{args.bundles} bundles x {args.clusters} clusters on {args.apiservers} API servers, "
        f"windows of {args.window:.0f} s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", type=int, default=50)
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--apiservers", type=int, default=5)
    parser.add_argument("--window", type=float, default=300.0, help="seconds per idle window")
    parser.add_argument(
        "--settle", type=float, default=60.0, help="seconds before a window (watchers listing)"
    )
    args = parser.parse_args()
    os.environ["PATH"] = tool_env()["PATH"]
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
