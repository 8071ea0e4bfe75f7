"""Deploying as a ServiceAccount (impersonation) vs with the cluster's own credentials.

The deploy activity (render, history read, helm upgrade) with 50 raw-YAML bundles of 10 objects
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

from bench_deploy import BUNDLES, Flotilla, timed

from devenv import tools
from devenv.cluster import LocalCluster

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
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
                    fleet = {"serviceAccount": "deployer"} if impersonate else {}
                    prepared = flotilla.prepare(tag, **fleet)
                    jobs = [partial(flotilla.deploy, r) for r in prepared]
                    seconds = timed(PARALLEL, jobs)
                    results[impersonate].append(seconds)
                    side = "as ServiceAccount" if impersonate else "own credentials"
                    with open("/proc/loadavg") as handle:
                        load = handle.read().split()[0]
                    print(f"run {run + 1} {side:18s}: {seconds:6.2f}s load {load}", flush=True)
                print(
                    f"run {run + 1} ratio: {results[True][-1] / results[False][-1]:.3f}",
                    flush=True,
                )
    with open("/proc/loadavg") as handle:
        print(f"load at end: {handle.read().strip()}")
    own, acting = statistics.median(results[False]), statistics.median(results[True])
    # Each run's two sides ran back to back, so their ratio cancels most of the load's drift.
    paired = statistics.median(a / o for a, o in zip(results[True], results[False], strict=True))
    print(
        f"{BUNDLES} raw bundles x 10 objects, parallel={PARALLEL}, median of {args.runs}: "
        f"own credentials {own:.2f}s, as ServiceAccount {acting:.2f}s, ratio {acting / own:.3f}, "
        f"median of per-run ratios {paired:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
