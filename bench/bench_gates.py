"""History events per bundle deployment with gates configured (issue 14's bound: <= 15).

One GitRepo, B bundles, C clusters, partitions ``canary`` (the first cluster, ``soakTime``)
then ``main`` (the rest, ``requireApproval``), on its own dev server, git daemon and
in-process worker whose deploy activities are stand-ins that answer at once (bench_gitops.py's
``InstantDeploy``), so the events are the workflows' own. Two versions (first install and an
upgrade); for each, every bundle is approved once its main partition waits for it. Counts every
event of every bundle workflow run (start, plans, reports, the approval update, the soak
timer, patch markers) over 2 x B x C deployments. ``--no-gates`` runs the same without the
gates, for comparison. ``--window`` also applies a Fleet ``Schedule`` for every cluster whose
window is open all day but the minute before midnight UTC, so every deployment goes through the
window check: issue 14's "with gates and windows configured".

    .venv/bin/python bench/bench_gates.py --bundles 3 --clusters 10 --runs 3 [--window]
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

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_gitops import CM, add_clusters, bench_files, gitrepo_status, start_worker
from temporal_kinds import temporal_server

from devenv.gitserver import GitDaemon
from flotilla.ids import bundle_workflow_id
from tests.e2e.harness import Flotilla, activity_calls, gitrepo_yaml

GATES = (
    "rolloutStrategy:\n  partitions:\n"
    "    - name: canary\n      clusterName: c0000\n      soakTime: 1s\n"
    "    - name: main\n      clusterSelector: {}\n      requireApproval: true\n"
)

# A window open all day but the last minute before midnight UTC (windows may not overlap).
WINDOW = (
    "apiVersion: fleet.cattle.io/v1alpha1\nkind: Schedule\n"
    "metadata: {{name: always, namespace: {namespace}}}\n"
    "spec:\n  schedule: '0 0 0 * * ?'\n  duration: 23h59m\n"
    "  targets:\n    clusters:\n      - {{name: all, clusterSelector: {{}}}}\n"
)


async def approve_all(fl: Flotilla, bundles: int, commit: str) -> None:
    """Approve main for every bundle as soon as it waits for it at ``commit``."""
    pending = {f"bench-b{b}" for b in range(bundles)}
    deadline = time.monotonic() + 600
    while pending:
        for name in sorted(pending):
            status = await fl.control.bundle_status(fl.namespace, name)
            if status.commit == commit and any(
                g.partition == "main" and g.state == "Waiting" for g in status.gates
            ):
                await fl.control.approve_rollout(
                    fl.namespace, name, partition="main", user="bench", reason="benchmark"
                )
                pending.discard(name)
        if time.monotonic() > deadline:
            raise TimeoutError(f"never asked for approval: {sorted(pending)}")
        await asyncio.sleep(0.2)


async def all_ready(fl: Flotilla, total: int, commit: str = "") -> None:
    await fl.eventually(
        lambda: gitrepo_status(fl, fl.namespace),
        lambda s: (
            s is not None
            and (not commit or s.commit == commit)
            and s.ready_bundle_deployments == f"{total}/{total}"
            and s.state == "Ready"
        ),
        timeout=900,
        interval=0.5,
    )


async def run(bundles: int, clusters: int, gates: bool, window: bool) -> float:
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with temporal_server("dev", tmp / "temporal") as server, GitDaemon(tmp / "git") as git:
            client = await Client.connect(server.address, data_converter=pydantic_data_converter)
            url = git.create_repo("bench", bench_files(bundles, GATES if gates else "{}\n"))
            fl = await start_worker(client, tmp / "fl")
            try:
                ns = fl.namespace
                await add_clusters(fl, clusters)
                if window:
                    await fl.control.apply_text(WINDOW.format(namespace=ns), file="s.yaml")
                total = bundles * clusters
                await fl.control.apply_text(
                    gitrepo_yaml(ns, "bench", url, targets=[{"clusterSelector": {}}]), file="g.yaml"
                )
                status = await fl.eventually(
                    lambda: gitrepo_status(fl, ns), lambda s: s is not None and bool(s.commit)
                )
                assert status is not None
                if gates:
                    await approve_all(fl, bundles, status.commit)
                await all_ready(fl, total)
                commit = git.commit(
                    git.working_copy("bench"),
                    {f"b{b}/cm.yaml": CM.format(i=b, v=2) for b in range(bundles)},
                    message="v2",
                )
                if gates:
                    await approve_all(fl, bundles, commit)
                await all_ready(fl, total, commit)
                events = 0
                updates = 0
                for b in range(bundles):
                    _, counts = await activity_calls(client, bundle_workflow_id(ns, f"bench-b{b}"))
                    events += sum(counts.values())
                    updates += counts["WORKFLOW_EXECUTION_UPDATE_ACCEPTED"]
                per = events / (2 * total)
                after = os.getloadavg()
                print(
                    f"gates={'on' if gates else 'off'} window={'on' if window else 'off'} "
                    f"bundles={bundles} clusters={clusters}: "
                    f"{per:.1f} bundle history events per deployment ({events} events, "
                    f"{2 * total} deployments, {updates} approvals); load before "
                    f"{load[0]:.2f} {load[1]:.2f}, after {after[0]:.2f} {after[1]:.2f}",
                    flush=True,
                )
                return per
            finally:
                await fl.cleanup()
                await fl.worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundles", type=int, default=3)
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-gates", action="store_true", help="the same without the gates")
    parser.add_argument(
        "--window", action="store_true", help="also a deployment window (Schedule), open all day"
    )
    args = parser.parse_args()
    results = [
        asyncio.run(run(args.bundles, args.clusters, not args.no_gates, args.window))
        for _ in range(args.runs)
    ]
    print(
        f"median of {args.runs}: {statistics.median(results):.1f} events per deployment "
        f"({' '.join(f'{r:.1f}' for r in results)})"
    )


if __name__ == "__main__":
    main()
