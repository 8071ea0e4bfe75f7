"""Crash recovery: time from SIGKILL of the worker mid-rollout (and its immediate restart) to
the next deploy activity started, and how long the restarted worker takes to serve.

Real components: a Temporal dev server, one local API server (etcd + kube-apiserver; the
bundle is ConfigMaps, so no workload controllers), a git daemon, and ``worker.py`` as its own
process. Each run pushes a new commit to a GitRepo over 3 clusters (maxUnavailable 1), kills
the worker with SIGKILL as soon as the first upgrade is handed out, starts it again at once,
waits until the rollout is Ready, and reads from the bundle's history when the first
``deploy_bundle`` attempt after the kill started. Run:

    .venv/bin/python bench/bench_crash.py --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activities.secrets import FileSecretStore
from devenv import tools
from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from devenv.temporal import TemporalDevServer
from flotilla.ids import bundle_workflow_id
from flotilla.settings import TemporalSettings
from runtime.temporal import connect
from starters.control import Control
from tests.e2e.harness import Flotilla, activity_calls, gitrepo_yaml
from tests.e2e.test_worker_restart import worker_process_for

CLUSTERS = ["k1", "k2", "k3"]
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg}}\ndata: {{version: '{version}'}}\n"


async def main(args: argparse.Namespace) -> None:
    os.environ["PATH"] = os.pathsep.join([*(str(d) for d in tools.bin_dirs()), os.environ["PATH"]])
    with tempfile.TemporaryDirectory(prefix="bench-crash-") as tmp:
        root = Path(tmp)
        with (
            TemporalDevServer(root / "temporal", headless=True) as server,
            LocalCluster("crash", root / "cluster", workloads=False) as cluster,
            GitDaemon(root / "git") as git,
        ):
            client = await connect(TemporalSettings(address=server.address))
            ns, queue = f"bench-{uuid.uuid4().hex[:6]}", f"bench-{uuid.uuid4().hex[:6]}"
            control = Control(client, task_queue=queue, secrets=FileSecretStore(root / "secrets"))
            helper = Flotilla(ns, client, control, None, None, None)  # type: ignore[arg-type]
            fleet = "\n".join(
                [
                    "defaultNamespace: crash",
                    "rolloutStrategy: {maxUnavailable: 1}",
                    "targetCustomizations:",
                ]
                + [f"  - {{clusterName: {c}, namespace: crash-{c}}}" for c in CLUSTERS]
            )
            url = git.create_repo(
                "crash", {"app/fleet.yaml": fleet + "\n", "app/cm.yaml": CM.format(version=0)}
            )
            worker = worker_process_for(root, server, queue, ns)
            worker.start()
            try:
                for name in CLUSTERS:
                    await control.add_cluster(ns, name, cluster.kubeconfig.read_text())
                await control.apply_text(
                    gitrepo_yaml(ns, "crash", url, targets=[{"clusterSelector": {}}]), file="g.yaml"
                )
                deployed = len(CLUSTERS)
                await wait_ready(helper, control, ns, "")
                resumed, served = [], []
                for run in range(args.runs):
                    commit = git.commit(
                        git.working_copy("crash"),
                        {"app/cm.yaml": CM.format(version=run + 1)},
                        message=f"v{run + 1}",
                    )

                    async def upgrades(before: int = deployed) -> int:
                        calls, _ = await activity_calls(client, bundle_workflow_id(ns, "crash-app"))
                        return sum(c.name == "deploy_bundle" for c in calls) - before

                    await helper.eventually(upgrades, lambda n: n >= 1, interval=0.05, timeout=300)
                    load = os.getloadavg()[0]
                    worker.kill()
                    killed = datetime.now(UTC)
                    started = time.monotonic()
                    await asyncio.to_thread(worker.start)
                    served.append(time.monotonic() - started)
                    await wait_ready(helper, control, ns, commit)
                    calls, _ = await activity_calls(client, bundle_workflow_id(ns, "crash-app"))
                    deployed = sum(c.name == "deploy_bundle" for c in calls)
                    after = sorted(
                        c.started.replace(tzinfo=UTC)
                        for c in calls
                        if c.name == "deploy_bundle"
                        and c.started
                        and c.started.replace(tzinfo=UTC) > killed
                    )
                    resumed.append((after[0] - killed).total_seconds())
                    print(
                        f"run {run + 1}: SIGKILL + restart -> next deploy started "
                        f"{resumed[-1]:.1f}s (worker serving after {served[-1]:.1f}s); "
                        f"load {load:.1f} -> {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
                print(
                    "SIGKILL + restart -> next deploy activity started: median "
                    f"{statistics.median(resumed):.1f}s (min {min(resumed):.1f}, "
                    f"max {max(resumed):.1f}); restart -> worker serving median "
                    f"{statistics.median(served):.1f}s; {args.runs} runs"
                )
            finally:
                worker.stop()


async def wait_ready(helper: Flotilla, control: Control, ns: str, commit: str) -> None:
    await helper.eventually(
        lambda: control.gitrepo_status(ns, "crash"),
        lambda s: (
            (not commit or s.commit == commit)
            and s.state == "Ready"
            and s.ready_bundle_deployments == f"{len(CLUSTERS)}/{len(CLUSTERS)}"
        ),
        timeout=600,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
