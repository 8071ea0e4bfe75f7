"""Deploying as a ServiceAccount (impersonation) vs with the cluster's own credentials.

The deploy activity (render, helm upgrade, readiness) with 50 raw-YAML bundles of 10 objects
each (bench_deploy's bundles), 8 at a time as a worker's cluster queue runs them, into fresh
namespaces made beforehand; one side's fleet.yaml adds ``serviceAccount: deployer``, a
ServiceAccount bound to the built-in ``admin`` ClusterRole in its namespace. Both sides run in
every run, in alternating order; each figure is the median of the runs. Run:

    .venv/bin/python bench/bench_impersonation.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from functools import partial
from pathlib import Path

import yaml
from bench_deploy import BUNDLES, CLUSTER, Flotilla, objects, timed

from activities.deploy_models import DeployRequest
from activities.render import customize_options
from devenv import tools
from devenv.cluster import LocalCluster
from flotilla.bundles import FileListing, read_bundles
from flotilla.deployment import DeploymentOptions

PARALLEL = 8


def prepare_namespace(cluster: LocalCluster, namespace: str) -> None:
    """The namespace, and a ServiceAccount ``deployer`` that administers it (not timed)."""
    cluster.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
    )
    cluster.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "deployer"}},
    )
    cluster.request(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "deployer"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": namespace}],
        },
    )


def requests(flotilla: Flotilla, run: str, *, impersonate: bool) -> list[DeployRequest]:
    found = []
    for index in range(BUNDLES):
        fleet = {"defaultNamespace": f"{run}-{index}"}
        if impersonate:
            fleet["serviceAccount"] = "deployer"
        files = {
            f"b{index}/app.yaml": yaml.safe_dump_all(objects(index)).encode(),
            f"b{index}/fleet.yaml": yaml.safe_dump(fleet).encode(),
        }
        result = read_bundles(FileListing(files=files), gitrepo_name="bench", paths=[f"b{index}"])
        (bundle,) = result.bundles
        options = customize_options(bundle, CLUSTER)
        assert options is not None
        payload = DeploymentOptions(options=options, cluster=CLUSTER)
        found.append(
            DeployRequest(
                gitrepo="bench",
                bundle_name=bundle.name,
                cluster_namespace=CLUSTER.namespace,
                cluster_name=CLUSTER.name,
                deployment_id="v1",
                bundle_digest=flotilla.content.put_bundle(bundle),
                options_digest=flotilla.content.put(payload.model_dump_json().encode()),
                wait_ready_seconds=60,
            )
        )
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    os.environ["PATH"] = os.pathsep.join([*(str(d) for d in tools.bin_dirs()), os.environ["PATH"]])
    with open("/proc/loadavg") as handle:
        print(f"load at start: {handle.read().strip()}")
    results: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="bench-impersonation-") as tmp:
        root = Path(tmp)
        with LocalCluster("bench", root / "cluster", nodes=2) as cluster:
            flotilla = Flotilla(cluster, root)
            for run in range(args.runs):
                order = [True, False] if run % 2 else [False, True]
                for impersonate in order:
                    tag = f"{'sa' if impersonate else 'own'}r{run}"
                    for index in range(BUNDLES):
                        prepare_namespace(cluster, f"{tag}-{index}")
                    jobs = [
                        partial(flotilla.deploy, r)
                        for r in requests(flotilla, tag, impersonate=impersonate)
                    ]
                    seconds = timed(PARALLEL, jobs)
                    results[impersonate].append(seconds)
                    side = "as ServiceAccount" if impersonate else "own credentials"
                    print(f"run {run + 1} {side:18s}: {seconds:6.2f}s", flush=True)
    with open("/proc/loadavg") as handle:
        print(f"load at end: {handle.read().strip()}")
    own, acting = statistics.median(results[False]), statistics.median(results[True])
    print(
        f"{BUNDLES} raw bundles x 10 objects, parallel={PARALLEL}, median of {args.runs}: "
        f"own credentials {own:.2f}s, as ServiceAccount {acting:.2f}s, ratio {acting / own:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
