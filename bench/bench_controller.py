"""Fleet's API: kubectl apply → first deploy, status writes, and the controller's API load.

Starts its own Temporal dev server, git daemon, a management cluster (etcd + kube-apiserver,
no workloads), an in-process worker with the ``kubernetes`` secret backend and deploy
activities that answer at once (so the numbers are the controller's, Temporal's and the
workflows', not Helm's), and an in-process ``flotilla controller``. Two Cluster objects; every
GitRepo targets both.

1. ``--latency`` runs: a GitRepo object created (as ``kubectl apply`` does) → its bundle's
   first ``deploy_bundle`` scheduled (from the bundle workflow's history).
2. GitRepos up to ``--gitrepos``, all settled (Ready on their objects); then one commit that
   every GitRepo reads: status writes per bundle deployment until all are Ready again.
3. ``--idle`` seconds with everything settled: the controller's API requests per minute.

    .venv/bin/python bench/bench_controller.py --latency 10 --gitrepos 50 --idle 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activities.kube import Kube
from activities.kubesecrets import kubeconfig_client
from bench.bench_gitops import InstantDeploy
from controller.loop import Controller, ControllerConfig
from devenv import tools
from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from devenv.temporal import TemporalDevServer
from flotilla.ids import bundle_workflow_id
from runtime.stores import secret_store
from starters.control import Control
from tests.e2e.fleetapi_harness import Kubectl
from tests.e2e.harness import activity_calls, settings_for_test
from tests.secrets.conftest import create_namespace, create_secret
from worker import FlotillaWorker, WorkerConfig

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\ndata: {{v: '{v}'}}\n"
NS = "fl-bench"
CLUSTERS = ("c0", "c1")


def gitrepo(name: str, url: str) -> str:
    return (
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\n"
        f"metadata: {{name: {name}, namespace: {NS}}}\n"
        f"spec: {{repo: '{url}', branch: main, paths: [b], pollingInterval: 2s,"
        " targets: [{clusterSelector: {}}]}\n"
    )


async def first_deploy(client: Client, bundle: str) -> datetime:
    while True:
        with contextlib.suppress(RPCError):  # the bundle workflow is not started yet
            calls, _ = await activity_calls(client, bundle_workflow_id(NS, bundle))
            deploys = [c.scheduled for c in calls if c.name == "deploy_bundle"]
            if deploys:
                return deploys[0]
        await asyncio.sleep(0.1)


async def settled(kubectl: Kubectl, names: list[str], commit: str = "") -> None:
    while True:
        rows = {r["Name"]: r for r in await asyncio.to_thread(kubectl.table, "GitRepo", NS)}
        if all(
            rows.get(n, {}).get("BundleDeployments-Ready") == f"{len(CLUSTERS)}/{len(CLUSTERS)}"
            and (not commit or rows[n]["Commit"] == commit)
            for n in names
        ):
            return
        await asyncio.sleep(0.5)


async def run(latency_runs: int, gitrepos: int, idle: float) -> None:
    os.environ["PATH"] = os.pathsep.join([*(str(d) for d in tools.bin_dirs()), os.environ["PATH"]])
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with (
            TemporalDevServer(tmp / "temporal", headless=True) as server,
            GitDaemon(tmp / "git") as git,
            LocalCluster("bench-mgmt", tmp / "mgmt", workloads=False) as mgmt,
        ):
            client = await Client.connect(server.address, data_converter=pydantic_data_converter)
            url = git.create_repo("bench", {"b/fleet.yaml": "{}\n", "b/cm.yaml": CM.format(v=0)})
            create_namespace(mgmt, NS)
            for cluster in CLUSTERS:
                create_secret(mgmt, NS, f"{cluster}-kubeconfig", {"value": "apiVersion: v1\n"})
            settings = settings_for_test(
                client,
                tmp / "fl",
                FLOTILLA_SECRET_BACKEND="kubernetes",
                FLOTILLA_MANAGEMENT_KUBECONFIG=str(mgmt.kubeconfig),
            )
            config = WorkerConfig(
                task_queue="bench",
                namespaces=[NS],
                control_threads=4,
                cluster_threads=6,
                cluster_concurrency=2,
                refresh_seconds=0.5,
                workdir=tmp / "fl" / "work",
                # Stand-in clusters have no API server to watch.
                watch_objects=False,
            )
            deploy = InstantDeploy()
            worker = FlotillaWorker(client, config, settings, deploy=deploy)  # type: ignore[arg-type]
            await worker.start()
            control = Control(client, task_queue="bench", secrets=secret_store(settings))
            controller = Controller(
                Kube(kubeconfig_client(mgmt.kubeconfig)),
                control,
                ControllerConfig(namespaces=[NS], identity="bench", status_seconds=2.0),
            )
            stop = asyncio.Event()
            task = asyncio.create_task(controller.run(stop))
            await controller.started.wait()
            kubectl = Kubectl.for_kubeconfig(mgmt.kubeconfig)
            for cluster in CLUSTERS:
                kubectl.apply(
                    "apiVersion: fleet.cattle.io/v1alpha1\nkind: Cluster\n"
                    f"metadata: {{name: {cluster}, namespace: {NS}}}\n"
                    f"spec: {{kubeConfigSecret: {cluster}-kubeconfig}}\n"
                )
            await worker.refresh_clusters()
            await asyncio.sleep(2)

            latencies: list[float] = []
            translated: list[float] = []  # apply -> GitRepo workflow started: the controller's
            names: list[str] = []
            for _ in range(latency_runs):
                name = f"g{uuid.uuid4().hex[:6]}"
                names.append(name)
                applied = datetime.now(UTC).replace(tzinfo=None)
                await asyncio.to_thread(kubectl.apply, gitrepo(name, url))
                scheduled = await first_deploy(client, f"{name}-b")
                latencies.append((scheduled - applied).total_seconds())
                history = await client.get_workflow_handle(f"gitrepo/{NS}/{name}").fetch_history()
                started = history.events[0].event_time.ToDatetime()
                translated.append((started - applied).total_seconds())
            if latencies:
                print(
                    f"kubectl apply -> first deploy_bundle scheduled over {len(latencies)} "
                    f"GitRepos: median {statistics.median(latencies):.3f}s, "
                    f"max {max(latencies):.3f}s, all {[round(x, 2) for x in latencies]}; "
                    f"of which apply -> GitRepo workflow started (the controller's part) "
                    f"median {statistics.median(translated):.3f}s, max {max(translated):.3f}s"
                )

            while len(names) < gitrepos:
                name = f"g{uuid.uuid4().hex[:6]}"
                names.append(name)
                await asyncio.to_thread(kubectl.apply, gitrepo(name, url))
            began = time.monotonic()
            await settled(kubectl, names)
            print(f"{len(names)} GitRepos settled in {time.monotonic() - began:.1f}s")
            await asyncio.sleep(5)

            writes_before = dict(controller.status_writes)
            verbs_before = dict(controller.requests)
            commit = git.commit(
                git.working_copy("bench"), {"b/cm.yaml": CM.format(v=1)}, message="v1"
            )
            began = time.monotonic()
            await settled(kubectl, names, commit)
            await asyncio.sleep(5)  # the last writes of the pass
            writes = {k: v - writes_before.get(k, 0) for k, v in controller.status_writes.items()}
            verbs = {k: v - verbs_before.get(k, 0) for k, v in controller.requests.items()}
            deployments = len(names) * len(CLUSTERS)
            print(
                f"one commit to {len(names)} GitRepos ({deployments} bundle deployments) "
                f"Ready in {time.monotonic() - began:.1f}s; status writes {writes}: "
                f"{sum(writes.values()) / deployments:.2f} per bundle deployment "
                f"(BundleDeployment {writes.get('BundleDeployment', 0) / deployments:.2f}); "
                f"API requests {verbs}: {sum(verbs.values()) / deployments:.2f} per bundle "
                "deployment (status writes and spec patches included)"
            )

            requests_before = sum(controller.requests.values())
            writes_before = dict(controller.status_writes)
            await asyncio.sleep(idle)
            requests = sum(controller.requests.values()) - requests_before
            idle_writes = {
                k: v - writes_before.get(k, 0)
                for k, v in controller.status_writes.items()
                if v != writes_before.get(k, 0)
            }
            print(
                f"settled, {idle:.0f}s: {requests * 60 / idle:.1f} API requests/min "
                f"({idle_writes} status writes) with {len(names)} GitRepos"
            )
            print(f"load {Path('/proc/loadavg').read_text().strip()}")
            stop.set()
            await task
            await worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=int, default=10, help="GitRepos timed one by one")
    parser.add_argument("--gitrepos", type=int, default=50, help="GitRepos settled in all")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds measured settled")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run(args.latency, args.gitrepos, args.idle))


if __name__ == "__main__":
    main()
