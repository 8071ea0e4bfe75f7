"""Soak: no false Modified over an hour on the demo stack, with the object watchers on.

The stack is ``make dev``'s, started in a temporary directory so it touches no running demo:
a Temporal dev server, a git daemon, two local clusters ``dev`` and ``prod`` (1 kwok node
each, so pods come and go as kwok simulates them), the flotilla worker as a subprocess
(``python worker.py``: real activities, object watchers on, the periodic check at its default
5 minutes), ``examples/fleet-examples`` and ``examples/gitrepo.yaml`` (``pollingInterval:
5s``). Once all 16 bundle deployments are Ready, nobody touches anything for ``--minutes``;
every 2 s the bundles' statuses are read, and each change of a deployment's state away from
Ready is counted and printed (a Modified one is a false Modified: nothing was edited), as is
each new ``corrected drift`` last action. At the end: the counts, the object watchers'
signals (their heartbeats; each one is a drift check that found nothing), worker RSS at the
start and end, and the load. It ends by itself. Run (in the background, it takes an hour):

    nohup .venv/bin/python bench/soak_drift.py --minutes 60 > /tmp/soak-drift.log 2>&1 &
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench_fleet import load, start_worker, stop_worker, tool_env, wait_for_log
from temporalio.service import RPCError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activities.secrets import FileSecretStore
from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from devenv.temporal import TemporalDevServer
from flotilla.ids import objectwatch_workflow_id
from flotilla.models import load_gitrepo
from flotilla.settings import TemporalSettings
from runtime.temporal import connect
from starters import demo
from starters.control import Control

SAMPLE_SECONDS = 2.0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stamp() -> str:
    return time.strftime("%H:%M:%S", time.gmtime())


async def watcher_signals(control: Control, namespace: str, clusters: list[str]) -> str:
    """The signals each cluster's running watcher reports in its last heartbeat."""
    found = []
    for name in clusters:
        handle = control.client.get_workflow_handle(objectwatch_workflow_id(namespace, name))
        description = await handle.describe()
        details = [
            await control.client.data_converter.decode(a.heartbeat_details.payloads)
            for a in description.raw_description.pending_activities
        ]
        found.append(f"{name}: {details}")
    return "; ".join(found)


async def main_async(minutes: float) -> int:
    with tempfile.TemporaryDirectory(prefix="soak-drift-") as tmp:
        root = Path(tmp)
        clusters = {
            name: LocalCluster(name, root / f"cluster-{name}", nodes=1)
            for name in demo.CLUSTER_LABELS
        }
        with (
            TemporalDevServer(root / "temporal", headless=True) as server,
            GitDaemon(root / "git") as git,
        ):
            worker = None
            try:
                for cluster in clusters.values():
                    cluster.start()
                client = await connect(TemporalSettings(address=server.address))
                control = Control(client, secrets=FileSecretStore(root / "secrets"))
                gitrepo, _ = load_gitrepo(
                    (demo.EXAMPLES / "gitrepo.yaml").read_text(), file="examples/gitrepo.yaml"
                )
                namespace, name = gitrepo.metadata.namespace, gitrepo.metadata.name
                worker = start_worker(server.address, root / "worker", [namespace])
                for cluster_name, cluster in clusters.items():
                    await control.add_cluster(
                        namespace,
                        cluster_name,
                        cluster.kubeconfig.read_text(),
                        labels=demo.CLUSTER_LABELS[cluster_name],
                    )
                wait_for_log(root / "worker" / "worker.log", "serving push-mode cluster", 2)
                url = git.create_repo(
                    demo.REPO_NAME, demo.EXAMPLES / demo.REPO_NAME, message="fleet examples"
                )
                spec = gitrepo.spec.model_copy(
                    update={"repo": url, "polling_interval": demo.POLLING_INTERVAL}
                )
                await control.apply_gitrepo(gitrepo.model_copy(update={"spec": spec}))
                deadline = time.monotonic() + demo.READY_TIMEOUT
                while True:
                    try:
                        status = await control.gitrepo_status(namespace, name)
                        if status.commit and status.state == "Ready":
                            break
                    except Exception:  # not started yet
                        pass
                    if time.monotonic() > deadline:
                        print(f"{stamp()} not Ready in {demo.READY_TIMEOUT:.0f} s", flush=True)
                        return 1
                    await asyncio.sleep(1)
                await asyncio.sleep(10)  # the watchers have listed what they watch
                rss_start = rss_mib(worker.pid)
                print(
                    f"{stamp()} settled: {status.ready_bundle_deployments} ready; worker RSS "
                    f"{rss_start:.0f} MiB; load {load()}",
                    flush=True,
                )
                states: dict[tuple[str, str], str] = {}
                actions: dict[tuple[str, str], str] = {}
                left_ready: Counter[str] = Counter()
                corrections = 0
                samples = 0
                end = time.monotonic() + 60 * minutes
                missed = 0
                while time.monotonic() < end:
                    try:
                        bundles = await control.list_bundles(namespace, name)
                    except RPCError as err:  # the server too busy to answer: a gap, not the end
                        missed += 1
                        print(f"{stamp()} sample missed: {err.message}", flush=True)
                        continue
                    for bundle in bundles:
                        for line in bundle.clusters:
                            key = (bundle.bundle, line.cluster)
                            before = states.get(key, "Ready")
                            if line.state not in (before, "Ready"):
                                left_ready[line.state] += 1
                                print(
                                    f"{stamp()} {key[0]} on {key[1]}: {before} -> "
                                    f"{line.state}: {line.message}",
                                    flush=True,
                                )
                            states[key] = line.state
                            action = line.last_action
                            if action.startswith("corrected drift") and action != actions.get(key):
                                corrections += 1
                                print(f"{stamp()} {key[0]} on {key[1]}: {action}", flush=True)
                            actions[key] = action
                    samples += 1
                    await asyncio.sleep(SAMPLE_SECONDS)
                rss_end = rss_mib(worker.pid)
                try:
                    signals = await watcher_signals(control, namespace, list(clusters))
                except Exception as err:  # a report, not the result
                    signals = f"not read: {type(err).__name__}: {err}"
                print()
                print(
                    f"soak of {minutes:.0f} min, {samples} samples of {len(states)} deployments "
                    f"({missed} missed: the server did not answer in time)"
                )
                print(f"false Modified (transitions to Modified): {left_ready['Modified']}")
                print(f"all transitions away from Ready: {dict(left_ready)}")
                print(f"drift corrections: {corrections}")
                print(f"watcher heartbeats (signals sent by the current watch): {signals}")
                print(f"worker RSS: start {rss_start:.0f} MiB, end {rss_end:.0f} MiB")
                print(f"load at the end: {load()}", flush=True)
                return 1 if left_ready["Modified"] else 0
            finally:
                if worker is not None:
                    stop_worker(worker)
                for cluster in clusters.values():
                    cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="how long to watch, settled")
    args = parser.parse_args()
    os.environ["PATH"] = tool_env()["PATH"]
    return asyncio.run(main_async(args.minutes))


if __name__ == "__main__":
    sys.exit(main())
