"""Cause → state shown: how long until `get` tells the truth, median of N runs per cause.

Everything is real: a Temporal dev server, a git daemon, a local cluster (one kwok node) and
the flotilla worker in this process with the real activities (probes every 30 s, the
default). A repository that becomes unreachable and an API server that stops are real
servers behind a TCP forwarder (``devenv.forward``) that is closed, then opened again on the
same port. Causes:

- repo unreachable: the git daemon's port closes under a GitRepo polling every 5 s →
  GitError shown (and back: Ready again after it reopens);
- API server stopped: the cluster's API server port closes under a Ready deployment →
  Offline shown on the GitRepo (and back: Ready again);
- bundle change: a bundle on two clusters, one Ready at once and one whose deploy stays in
  flight → the bundle's own query shows 1/2 Ready, then the GitRepo's line does (the lag).

Times are from the cause to the first status query (sampled every 0.2 s) that shows it. Run:

    .venv/bin/python bench/bench_status.py --runs 5 [--causes repo,api,bundle]

(causes not timed show 0.0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devenv import tools
from devenv.cluster import LocalCluster
from devenv.forward import TcpForwarder
from devenv.gitserver import GitDaemon
from devenv.temporal import TemporalDevServer
from flotilla.settings import TemporalSettings
from runtime.temporal import connect
from tests.e2e.harness import Flotilla, gitrepo_yaml, start_flotilla
from tests.e2e.test_status_truth import DEPLOYMENT, NOWHERE

T = TypeVar("T")
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n"


async def until(
    probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], limit: float, what: str = ""
) -> float:
    """Seconds until ``check(probe())`` holds, sampled every 0.2 s (printed when ``what``)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        with contextlib.suppress(Exception):
            if check(await probe()):
                elapsed = time.monotonic() - started
                if what:
                    print(f"{what}: {elapsed:.1f} s", file=sys.stderr, flush=True)
                return elapsed
        await asyncio.sleep(0.2)
    raise TimeoutError(f"not shown within {limit}s")


async def repo_unreachable(
    fl: Flotilla, git: GitDaemon, runs: int
) -> tuple[list[float], list[float]]:
    forwarder = TcpForwarder(git.port)
    await forwarder.start()
    ns = fl.namespace
    git.create_repo("status-repo", {"app/cm.yaml": CM})
    url = f"git://127.0.0.1:{forwarder.port}/status-repo.git"
    spec = gitrepo_yaml(ns, "unreachable", url).replace(
        "pollingInterval: 1s", "pollingInterval: 5s"
    )
    await fl.control.apply_text(spec, file="gitrepo.yaml")
    status = lambda: fl.control.gitrepo_status(ns, "unreachable")  # noqa: E731
    await until(status, lambda s: s.state == "Ready" and bool(s.commit), 60)
    shown, cleared = [], []
    for _ in range(runs):
        await forwarder.stop()
        shown.append(await until(status, lambda s: s.state == "GitError", 60, "GitError"))
        await forwarder.start()
        cleared.append(await until(status, lambda s: s.state == "Ready", 60, "git back"))
    await forwarder.stop()
    return shown, cleared


async def api_server_stopped(
    fl: Flotilla, cluster: LocalCluster, git: GitDaemon, runs: int
) -> tuple[list[float], list[float]]:
    kubeconfig = json.loads(cluster.kubeconfig.read_text())
    server = kubeconfig["clusters"][0]["cluster"]["server"]
    forwarder = TcpForwarder(int(server.rsplit(":", 1)[1]))
    await forwarder.start()
    kubeconfig["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{forwarder.port}"
    ns = fl.namespace
    await fl.control.add_cluster(ns, "edge", json.dumps(kubeconfig), labels={"probe": "edge"})
    await fl.worker.refresh_clusters()
    url = git.create_repo(
        "status-offline",
        {"app/cm.yaml": CM, "app/fleet.yaml": f"defaultNamespace: bench-{uuid.uuid4().hex[:6]}\n"},
    )
    targets = [{"clusterSelector": {"matchLabels": {"probe": "edge"}}}]
    await fl.control.apply_text(gitrepo_yaml(ns, "offline", url, targets=targets), file="g.yaml")
    status = lambda: fl.control.gitrepo_status(ns, "offline")  # noqa: E731
    await until(status, lambda s: s.state == "Ready" and s.ready_bundle_deployments == "1/1", 120)
    shown, cleared = [], []
    for _ in range(runs):
        await forwarder.stop()
        shown.append(await until(status, lambda s: s.state == "Offline", 120, "Offline"))
        await forwarder.start()
        cleared.append(await until(status, lambda s: s.state == "Ready", 120, "API back"))
    await forwarder.stop()
    return shown, cleared


async def bundle_change(
    fl: Flotilla, cluster: LocalCluster, git: GitDaemon, runs: int
) -> list[float]:
    ns = fl.namespace
    kubeconfig = cluster.kubeconfig.read_text()
    for name in ("fast", "slow"):
        await fl.control.add_cluster(ns, name, kubeconfig, labels={"lag": "yes"})
    await fl.worker.refresh_clusters()
    lags = []
    for run in range(runs):
        prefix = f"b{uuid.uuid4().hex[:6]}"
        fleet_yaml = (
            f"defaultNamespace: {prefix}-default\ntargetCustomizations:\n"
            f"  - {{clusterName: fast, namespace: {prefix}-fast}}\n"
            f"  - {{clusterName: slow, namespace: {prefix}-slow, yaml: {{overlays: [slow]}}}}\n"
        )
        name = f"lag{run}"
        url = git.create_repo(
            f"status-lag-{run}",
            {
                "app/fleet.yaml": fleet_yaml,
                "app/deployment.yaml": DEPLOYMENT,
                "app/overlays/slow/deployment_patch.yaml": NOWHERE,
            },
        )
        targets = [{"clusterSelector": {"matchLabels": {"lag": "yes"}}}]
        await fl.control.apply_text(gitrepo_yaml(ns, name, url, targets=targets), file="g.yaml")
        bundle = lambda name=name: fl.control.bundle_status(ns, f"{name}-app")  # noqa: E731
        await until(bundle, lambda b: b.ready >= 1, 120)
        lags.append(
            await until(
                lambda name=name: fl.control.gitrepo_status(ns, name),
                lambda s: s.ready_bundle_deployments.startswith("1/"),
                120,
                "bundle change lag",
            )
        )
        # Not waited for: retiring waits for the slow cluster's deploy still in flight.
        await fl.control.delete_gitrepo(ns, name, wait=False)
    return lags


def line(what: str, bound: str, times: list[float]) -> str:
    runs = ", ".join(f"{t:.1f}" for t in times)
    return f"| {what} | {bound} | {statistics.median(times):.1f} s | {runs} |"


async def main_async(runs: int, causes: set[str]) -> None:
    for directory in tools.bin_dirs():
        os.environ["PATH"] = f"{directory}{os.pathsep}{os.environ['PATH']}"
    with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp:
        root = Path(tmp)
        with (
            TemporalDevServer(root / "temporal", headless=True) as server,
            GitDaemon(root / "git") as git,
            LocalCluster("bench-status", root / "cluster", nodes=1) as cluster,
        ):
            client = await connect(TemporalSettings(address=server.address))
            fl = await start_flotilla(client, f"bench-{uuid.uuid4().hex[:8]}", root / "fl")
            try:
                unreachable = offline = ([0.0], [0.0])
                lags = [0.0]
                if "repo" in causes:
                    unreachable = await repo_unreachable(fl, git, runs)
                if "api" in causes:
                    offline = await api_server_stopped(fl, cluster, git, runs)
                if "bundle" in causes:
                    lags = await bundle_change(fl, cluster, git, runs)
                report(fl.config.seen_seconds, unreachable, offline, lags)
            finally:
                # Deploys still in flight on "slow" may hold the worker's shutdown: bounded.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(fl.cleanup(), 60)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(fl.worker.stop(), 30)


def report(
    probe: float,
    unreachable: tuple[list[float], list[float]],
    offline: tuple[list[float], list[float]],
    lags: list[float],
) -> None:
    print("| cause → state shown | bound | median | runs (s) |")
    print("|---|---|---|---|")
    print(line("repo unreachable → GitError (poll every 5 s)", "next poll", unreachable[0]))
    print(line("repo reachable again → Ready", "next poll", unreachable[1]))
    print(line(f"API server stopped → Offline (probe every {probe:.0f} s)", "≤ 60 s", offline[0]))
    print(line("API server back → Ready", "≤ 60 s", offline[1]))
    print(line("bundle change → GitRepo line", "≤ 5 s", lags), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--causes", default="repo,api,bundle", help="which causes to time (comma-separated)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    asyncio.run(main_async(args.runs, set(args.causes.split(","))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
