"""``flotilla diff`` of a 50-bundle repo against 3 clusters: how long one diff takes.

Real components, as bench_fleet.py sets them up: a Temporal dev server, a git daemon, 3 local
clusters (1 kwok node each) and the worker as a subprocess. The repo's 50 raw-YAML bundles (10
objects each) are deployed to all 3 clusters first (150 releases Ready). Then a commit on
another branch changes one ConfigMap in every bundle, and ``flotilla diff gitrepo bench
--commit next`` (the CLI's ``run_diff``) is timed ``--runs`` times: read the commit, plan 50
bundles, 150 server-side dry-run diffs on the worker. Each diff must report 150 deployments
with exactly one changed ConfigMap each. Run:

    .venv/bin/python bench/bench_diff.py --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml
from bench_deploy import objects
from bench_fleet import start_worker, stop_worker, tool_env, wait_for_log

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.service import RPCError

from activities.secrets import FileSecretStore
from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from devenv.temporal import TemporalDevServer
from flotilla.livediff import Change
from flotilla.settings import TemporalSettings
from runtime.temporal import connect
from starters.control import Control
from starters.diff import run_diff
from tests.e2e.harness import gitrepo_yaml

BUNDLES = 50
CLUSTERS = 3


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def repo_files(tag: str, value: str) -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = {}
    for index in range(BUNDLES):
        objs = objects(index)
        objs[2]["data"] = {"key": value}
        files[f"b{index}/app.yaml"] = yaml.safe_dump_all(objs)
        files[f"b{index}/fleet.yaml"] = yaml.safe_dump({"defaultNamespace": f"{tag}-b{index}"})
    return files


async def bench(runs: int) -> None:
    os.environ["PATH"] = tool_env()["PATH"]
    tag = "d"
    namespace = "fl-diff"
    total = BUNDLES * CLUSTERS
    with tempfile.TemporaryDirectory(prefix="bench-diff-") as tmp:
        root = Path(tmp)
        clusters = [LocalCluster(f"c{n}", root / f"cluster{n}", nodes=1) for n in range(CLUSTERS)]
        with GitDaemon(root / "git") as git, TemporalDevServer(root / "temporal") as server:
            worker = None
            try:
                for cluster in clusters:
                    cluster.start()
                url = git.create_repo("bench", repo_files(tag, "before"))
                client = await connect(TemporalSettings(address=server.address))
                control = Control(client, secrets=FileSecretStore(root / "secrets"))
                worker = start_worker(
                    server.address,
                    root / tag,
                    [namespace],
                    "--refresh-seconds",
                    "1",
                    "--cluster-concurrency",
                    "4",
                )
                for cluster in clusters:
                    await control.add_cluster(
                        namespace, cluster.name, cluster.kubeconfig.read_text()
                    )
                wait_for_log(root / tag / "worker.log", "serving push-mode cluster", CLUSTERS)
                await control.apply_text(
                    gitrepo_yaml(namespace, "bench", url, targets=[{"clusterSelector": {}}]),
                    file="g.yaml",
                )
                deadline = time.monotonic() + 1800
                status = None
                while True:
                    try:
                        status = await control.gitrepo_status(namespace, "bench")
                    except RPCError:  # a query that timed out on a loaded machine: ask again
                        pass
                    else:
                        ready = status.ready_bundle_deployments == f"{total}/{total}"
                        if status.state == "Ready" and ready:
                            break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"not Ready after 1800 s: {status!r}")
                    await asyncio.sleep(1)
                print(f"deployed {total} releases (load {load()})", flush=True)
                git.commit(
                    git.working_copy("bench"),
                    repo_files(tag, "after"),
                    message="next",
                    branch="next",
                )
                seconds: list[float] = []
                for run in range(runs):
                    before = load()
                    started = time.monotonic()
                    report = await run_diff(control, "gitrepo", namespace, "bench", commit="next")
                    took = time.monotonic() - started
                    changed = [
                        c
                        for d in report.deployments
                        for c in d.changes
                        if c.change is Change.CHANGED
                    ]
                    errors = report.errors + [d.error for d in report.deployments if d.error]
                    if len(report.deployments) != total or len(changed) != total or errors:
                        raise RuntimeError(
                            f"diff {run + 1}: {len(report.deployments)} deployments, "
                            f"{len(changed)} changed objects, errors {errors[:3]}"
                        )
                    seconds.append(took)
                    print(
                        f"run {run + 1}: {took:.1f} s (load before {before}, after {load()})",
                        flush=True,
                    )
                each = [round(s, 1) for s in seconds]
                print(
                    f"flotilla diff, {BUNDLES} bundles x {CLUSTERS} clusters: median "
                    f"{statistics.median(seconds):.1f} s over {runs} runs {each}",
                    flush=True,
                )
            finally:
                if worker is not None:
                    stop_worker(worker)
                for cluster in clusters:
                    cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(bench(args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
