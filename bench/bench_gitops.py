"""Orchestration overhead: one GitRepo, B bundles, C clusters, fake deploys.

Starts its own Temporal dev server (in memory), git daemon and an in-process flotilla worker
whose per-cluster deploy activities are stand-ins that answer at once (same activity names),
so the numbers are Temporal + workflow + planning cost, not Helm's. Measures the time from
`flotilla apply` to every bundle deployment Ready, then from a new commit to all Ready again,
and the bundle workflows' history events per bundle deployment.

    .venv/bin/python bench/bench_gitops.py --bundles 5 --clusters 40
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activities.deploy_models import (
    DeploymentStatus,
    DeployRequest,
    DeployResult,
    ReleaseRef,
    RemoveRequest,
    RemoveResult,
    StatusRequest,
    WaitReadyRequest,
)
from devenv.gitserver import GitDaemon
from devenv.temporal import TemporalDevServer
from flotilla.ids import bundle_workflow_id
from tests.e2e.harness import activity_calls, gitrepo_yaml, start_flotilla

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\ndata: {{v: '{v}'}}\n"


class InstantDeploy:
    """The deploy activities' names and models, answering at once."""

    @activity.defn
    def deploy_bundle(self, request: DeployRequest) -> DeployResult:
        return DeployResult.model_validate(
            {
                "release": ReleaseRef(name=request.bundle_name, namespace="default", revision=1),
                "deployment_id": request.deployment_id,
                "changed": True,
                "action": "install",
                "reason": "benchmark",
            }
        )

    @activity.defn
    def check_deployment(self, request: StatusRequest) -> DeploymentStatus:
        return DeploymentStatus(
            release=request.release, applied_deployment_id=request.deployment_id, ready=True
        )

    @activity.defn
    def wait_ready(self, request: WaitReadyRequest) -> DeploymentStatus:
        return DeploymentStatus(
            release=request.release, applied_deployment_id=request.deployment_id, ready=True
        )

    @activity.defn
    def remove_deployment(self, request: RemoveRequest) -> RemoveResult:
        return RemoveResult(release_removed=True, resources_kept=False)

    def probe(self, cluster_namespace: str, cluster: str) -> str:
        return ""


async def run(bundles: int, clusters: int) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with (
            TemporalDevServer(tmp / "temporal", headless=True) as server,
            GitDaemon(tmp / "git") as git,
        ):
            client = await Client.connect(server.address, data_converter=pydantic_data_converter)
            files: dict[str, str | bytes] = {}
            for b in range(bundles):
                files[f"b{b}/fleet.yaml"] = "{}\n"
                files[f"b{b}/cm.yaml"] = CM.format(i=b, v=1)
            url = git.create_repo("bench", files)
            fl = await start_flotilla(client, "bench", tmp / "fl")
            # Replace the real deploy activities by instant ones before any cluster is served.
            fl.worker.deploy = fl.worker.push.engine = InstantDeploy()  # type: ignore[assignment]
            ns = fl.namespace
            for c in range(clusters):
                await fl.control.add_cluster(ns, f"c{c:04d}", "apiVersion: v1\nkind: Config\n")
            await fl.worker.refresh_clusters()
            total = bundles * clusters
            started = time.monotonic()
            await fl.control.apply_text(
                gitrepo_yaml(ns, "bench", url, targets=[{"clusterSelector": {}}]), file="g.yaml"
            )
            await fl.eventually(
                lambda: fl.control.gitrepo_status(ns, "bench"),
                lambda s: s.ready_bundle_deployments == f"{total}/{total}" and s.state == "Ready",
                timeout=1800,
                interval=0.5,
            )
            first = time.monotonic() - started
            commit = git.commit(
                git.working_copy("bench"),
                {f"b{b}/cm.yaml": CM.format(i=b, v=2) for b in range(bundles)},
                message="v2",
            )
            started = time.monotonic()
            await fl.eventually(
                lambda: fl.control.gitrepo_status(ns, "bench"),
                lambda s: (
                    s.commit == commit
                    and s.ready_bundle_deployments == f"{total}/{total}"
                    and s.state == "Ready"
                ),
                timeout=1800,
                interval=0.5,
            )
            second = time.monotonic() - started
            events = 0
            latencies: dict[str, list[float]] = {}
            for b in range(bundles):
                calls, counts = await activity_calls(client, bundle_workflow_id(ns, f"bench-b{b}"))
                events += sum(counts.values())
                for call in calls:
                    if call.attempt > 1:
                        print(f"retried: {call.name} attempt {call.attempt} on {call.task_queue}")
                    if call.completed is not None:
                        latencies.setdefault(call.name, []).append(
                            (call.completed - call.scheduled).total_seconds()
                        )
            for name, values in sorted(latencies.items()):
                values.sort()
                print(
                    f"{name}: scheduled to completed median {values[len(values) // 2]:.2f}s, "
                    f"max {values[-1]:.2f}s over {len(values)} calls"
                )
            print(f"bundles={bundles} clusters={clusters} deployments={total}")
            print(f"first commit to all Ready: {first:.1f}s ({total / first:.0f} deployments/s)")
            print(f"second commit to all Ready: {second:.1f}s ({total / second:.0f} deployments/s)")
            print(
                f"bundle history events per deployment (two versions): {events / (2 * total):.1f}"
            )
            await fl.cleanup()
            await fl.worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundles", type=int, default=5)
    parser.add_argument("--clusters", type=int, default=40)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run(args.bundles, args.clusters))


if __name__ == "__main__":
    main()
