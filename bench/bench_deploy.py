"""Deploy engine overhead: 50 raw-YAML bundles through the deploy activity vs bare ``helm upgrade``.

Starts its own local cluster. Each bundle has 10 objects (a Deployment, a Service and eight
ConfigMaps). Both sides install the same generated charts into fresh namespaces, sequentially
and 8 at a time; each figure is the median of 3 runs. Run:

    .venv/bin/python bench/bench_deploy.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from temporalio.testing import ActivityEnvironment

from activities.content import FileContentStore
from activities.deploy import DeployActivities
from activities.deploy_models import DeployRequest, ReleaseRef, StatusRequest
from activities.render import customize_options, render_bundle
from activities.secrets import FileSecretStore, kubeconfig_secret_name
from devenv import tools
from devenv.cluster import LocalCluster
from flotilla.bundles import Bundle, FileListing, read_bundles
from flotilla.chart import wrap_manifests
from flotilla.deployment import DeploymentOptions
from flotilla.targeting import ClusterInfo

BUNDLES = 50
CONFIGMAPS = 8
RUNS = 3
CLUSTER = ClusterInfo(name="bench", namespace="fleet-local")


def objects(index: int) -> list[dict[str, Any]]:
    name = f"app{index}"
    found: list[dict[str, Any]] = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": "registry.local/app:1"}]},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
        },
    ]
    found += [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-cfg{n}"},
            "data": {"key": f"value-{index}-{n}"},
        }
        for n in range(CONFIGMAPS)
    ]
    return found


def bundle_for(index: int, namespace: str, **fleet: str) -> Bundle:
    """Bundle ``index`` deploying into ``namespace``, with more fleet.yaml fields if given."""
    files = {
        f"b{index}/app.yaml": yaml.safe_dump_all(objects(index)).encode(),
        f"b{index}/fleet.yaml": yaml.safe_dump({"defaultNamespace": namespace, **fleet}).encode(),
    }
    result = read_bundles(FileListing(files=files), gitrepo_name="bench", paths=[f"b{index}"])
    (bundle,) = result.bundles
    return bundle


class Flotilla:
    """The deploy activity, called as a worker would (in an activity context, on threads)."""

    def __init__(self, cluster: LocalCluster, root: Path) -> None:
        secrets = FileSecretStore(root / "secrets")
        secrets.put(
            CLUSTER.namespace,
            kubeconfig_secret_name(CLUSTER.name),
            {"value": cluster.kubeconfig.read_text()},
        )
        self.content = FileContentStore(root / "content")
        self.activities = DeployActivities(secrets, self.content, root / "work")

    def prepare(
        self, run: str, *, wait_ready_seconds: float = 0.0, **fleet: str
    ) -> list[DeployRequest]:
        requests = []
        for index in range(BUNDLES):
            bundle = bundle_for(index, f"{run}-{index}", **fleet)
            options = customize_options(bundle, CLUSTER)
            assert options is not None
            payload = DeploymentOptions(options=options, cluster=CLUSTER)
            requests.append(
                DeployRequest(
                    gitrepo="bench",
                    bundle_name=bundle.name,
                    cluster_namespace=CLUSTER.namespace,
                    cluster_name=CLUSTER.name,
                    deployment_id="v1",
                    bundle_digest=self.content.put_bundle(bundle),
                    options_digest=self.content.put(payload.model_dump_json().encode()),
                    wait_ready_seconds=wait_ready_seconds,
                )
            )
        return requests

    def deploy(self, request: DeployRequest) -> None:
        ActivityEnvironment().run(self.activities.deploy_bundle, request)

    def check(self, request: DeployRequest, namespace: str) -> None:
        """One status check (readiness and drift of all 10 objects) of a deployed bundle."""
        status = StatusRequest(
            gitrepo=request.gitrepo,
            bundle_name=request.bundle_name,
            cluster_namespace=request.cluster_namespace,
            cluster_name=request.cluster_name,
            deployment_id=request.deployment_id,
            options_digest=request.options_digest,
            release=ReleaseRef(name=request.bundle_name, namespace=namespace),
        )
        ActivityEnvironment().run(self.activities.check_deployment, status)


def helm_charts(run: str, root: Path) -> list[tuple[str, str, Path]]:
    """The same generated charts the activity installs, written once, outside the timing."""
    charts = []
    for index in range(BUNDLES):
        namespace = f"{run}-{index}"
        bundle = bundle_for(index, namespace)
        options = customize_options(bundle, CLUSTER)
        rendered = render_bundle(bundle, CLUSTER, workdir=root / "render", options=options)
        chart = root / "charts" / run / str(index)
        for relative, data in wrap_manifests(bundle.name, rendered.manifests, version="v1").items():
            (chart / relative).parent.mkdir(parents=True, exist_ok=True)
            (chart / relative).write_bytes(data)
        charts.append((bundle.name, namespace, chart))
    return charts


def helm_install(kubeconfig: Path, release: str, namespace: str, chart: Path) -> None:
    subprocess.run(
        [
            "helm",
            "upgrade",
            release,
            str(chart),
            "--install",
            "--namespace",
            namespace,
            "--create-namespace",
            "--kubeconfig",
            str(kubeconfig),
        ],
        check=True,
        capture_output=True,
    )


def timed(parallel: int, jobs: Sequence[Callable[[], None]]) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args()
    os.environ["PATH"] = os.pathsep.join([*(str(d) for d in tools.bin_dirs()), os.environ["PATH"]])
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        root = Path(tmp)
        with LocalCluster("bench", root / "cluster", nodes=2) as cluster:
            flotilla = Flotilla(cluster, root)
            results: dict[tuple[str, int], list[float]] = {}
            deployed: list[tuple[DeployRequest, str]] = []
            for run in range(args.runs):
                for parallel in (1, 8):
                    # Alternate which side goes first so neither always meets a warmer cluster.
                    sides = ["helm", "flotilla"] if run % 2 else ["flotilla", "helm"]
                    for side in sides:
                        tag = f"{side[0]}{parallel}r{run}"
                        if side == "flotilla":
                            requests = flotilla.prepare(tag)
                            jobs = [partial(flotilla.deploy, r) for r in requests]
                            deployed = [(r, f"{tag}-{i}") for i, r in enumerate(requests)]
                        else:
                            charts = helm_charts(tag, root)
                            jobs = [partial(helm_install, cluster.kubeconfig, *c) for c in charts]
                        seconds = timed(parallel, jobs)
                        results.setdefault((side, parallel), []).append(seconds)
                        print(f"run {run + 1} {side:8s} parallel={parallel}: {seconds:6.2f}s")
            # Monitoring cost: every deployment of the last flotilla run, checked once.
            checks = [partial(flotilla.check, r, namespace) for r, namespace in deployed]
            check_seconds = timed(1, checks) / len(checks)
    print()
    print(f"{BUNDLES} raw bundles x {CONFIGMAPS + 2} objects, median of {args.runs} runs")
    for parallel in (1, 8):
        ours = statistics.median(results[("flotilla", parallel)])
        bare = statistics.median(results[("helm", parallel)])
        print(
            f"parallel={parallel}: flotilla {ours:6.2f}s  helm {bare:6.2f}s  "
            f"ratio {ours / bare:4.2f}"
        )
    print(f"check_deployment (10 objects, sequential): {check_seconds * 1000:.0f} ms per call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
