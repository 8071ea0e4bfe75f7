"""Notification overhead per rollout in history events, and delivery throughput under a flood.

Dev server, git daemon, in-process worker with instant deploy stand-ins, one GitRepo with a
bundle on ``--clusters`` clusters. ``--rollouts`` commits are rolled out without a
notification config, then as many with a Provider (generic webhook, HMAC) and an Alert for
every event kind of the GitRepo; each workflow's history growth per rollout is compared.
Then ``--flood`` events are signalled at once (in signals of 100) to the notification
workflow and timed until the local receiver has every message (a provider queue holds at
most 1,000; the rest are dropped and counted).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path

from aiohttp import web
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from bench.bench_gitops import InstantDeploy
from devenv.gitserver import GitDaemon
from devenv.temporal import TemporalDevServer
from flotilla.ids import bundle_workflow_id, gitrepo_workflow_id, notification_workflow_id
from flotilla.notifications import DELIVERY_HEADER, EventKind, NotificationEvent
from runtime.stores import secret_store
from starters.control import Control
from tests.e2e.harness import Flotilla, gitrepo_yaml, settings_for_test
from worker import FlotillaWorker, WorkerConfig
from workflows.notifications_models import NOTIFY_SIGNAL, NotifyRequest

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\ndata: {{v: '{v}'}}\n"
CONFIG = """\
apiVersion: notifications.flotilla.dev/v1alpha1
kind: Provider
metadata: {{name: hook, namespace: {ns}}}
spec: {{type: webhook, secretRef: {{name: hook}}}}
---
apiVersion: notifications.flotilla.dev/v1alpha1
kind: Alert
metadata: {{name: all, namespace: {ns}}}
spec:
  providerRef: {{name: hook}}
  eventKinds: [{kinds}]
  eventSources: [{{kind: GitRepo, name: bench}}]
"""


async def history_length(client: Client, workflow_id: str) -> int:
    description = await client.get_workflow_handle(workflow_id).describe()
    return int(description.raw_description.workflow_execution_info.history_length)


async def run(clusters: int, rollouts: int, flood: int) -> None:
    got: list[float] = []
    # The commit of each flood message received, in arrival order, and its delivery key.
    order: list[str] = []
    keys: list[str] = []

    async def receive(request: web.Request) -> web.Response:
        body = await request.json()
        got.append(time.monotonic())
        order.append(str(body.get("commit", "")))
        keys.append(request.headers.get(DELIVERY_HEADER, ""))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with (
            TemporalDevServer(tmp / "temporal", headless=True) as server,
            GitDaemon(tmp / "git") as git,
        ):
            client = await Client.connect(server.address, data_converter=pydantic_data_converter)
            url = git.create_repo("bench", {"b/fleet.yaml": "{}\n", "b/cm.yaml": CM.format(v=0)})
            config = WorkerConfig(
                task_queue="bench",
                namespaces=["fl-bench"],
                control_threads=4,
                cluster_threads=6,
                cluster_concurrency=2,
                refresh_seconds=0.5,
                workdir=tmp / "fl" / "work",
                # Stand-in clusters have no API server to watch.
                watch_objects=False,
            )
            settings = settings_for_test(client, tmp / "fl")
            deploy = InstantDeploy()
            deploy.kubeconfig_secrets = {}  # type: ignore[attr-defined]
            worker = FlotillaWorker(client, config, settings, deploy=deploy)  # type: ignore[arg-type]
            await worker.start()
            control = Control(client, task_queue="bench", secrets=secret_store(settings))
            fl = Flotilla("fl-bench", client, control, worker, config, settings)
            ns = fl.namespace
            for index in range(clusters):
                await control.add_cluster(ns, f"c{index}", "apiVersion: v1\nkind: Config\n")
            await worker.refresh_clusters()
            await control.apply_text(
                gitrepo_yaml(
                    ns, "bench", url, disablePolling=True, targets=[{"clusterSelector": {}}]
                ),
                file="g.yaml",
            )
            ready = f"{clusters}/{clusters}"
            await fl.eventually(
                lambda: control.gitrepo_status(ns, "bench"),
                lambda s: s.state == "Ready" and s.ready_bundle_deployments == ready,
            )
            ids = {
                "gitrepo": gitrepo_workflow_id(ns, "bench"),
                "bundle": bundle_workflow_id(ns, "bench-b"),
                "notifications": notification_workflow_id(ns),
            }
            version = 0

            async def one_rollout() -> dict[str, int]:
                nonlocal version
                before = {k: await _length(client, v) for k, v in ids.items()}
                version += 1
                sha = git.commit(
                    git.working_copy("bench"), {"b/cm.yaml": CM.format(v=version)}, message="v"
                )
                await control.sync_gitrepo(ns, "bench")
                await fl.eventually(
                    lambda: control.gitrepo_status(ns, "bench"),
                    lambda s: s.commit == sha and s.state == "Ready",
                    interval=0.1,
                )
                await asyncio.sleep(3)  # the last reports and deliveries land
                return {k: await _length(client, v) - before[k] for k, v in ids.items()}

            without = [await one_rollout() for _ in range(rollouts)]
            secret_store(settings).put(
                ns, "hook", {"address": f"http://127.0.0.1:{port}/hook", "token": "k"}
            )
            await control.apply_text(
                CONFIG.format(ns=ns, kinds=", ".join(k.value for k in EventKind)), file="n.yaml"
            )
            delivered_before = len(got)
            with_config = [await one_rollout() for _ in range(rollouts)]
            messages = (len(got) - delivered_before) / rollouts
            for name in ids:
                print(
                    f"{name:14s} events per rollout: without notifications "
                    f"{statistics.median(r[name] for r in without):.1f}, with "
                    f"{statistics.median(r[name] for r in with_config):.1f} "
                    f"({clusters} clusters; {messages:.1f} messages per rollout)"
                )

            got.clear()
            order.clear()
            keys.clear()
            events = [
                NotificationEvent(
                    kind=EventKind.ERR_APPLIED,
                    namespace=ns,
                    gitrepo="bench",
                    bundle="bench-b",
                    commit=f"{i:040x}",
                    key=f"flood#{i}",
                )
                for i in range(flood)
            ]
            handle = client.get_workflow_handle(ids["notifications"])
            started = time.monotonic()
            for index in range(0, flood, 100):
                await handle.signal(
                    NOTIFY_SIGNAL, NotifyRequest(events=events[index : index + 100])
                )
            signalled = time.monotonic() - started
            expected = min(flood, 1000)
            deadline = time.monotonic() + 300
            while len(got) < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            elapsed = got[-1] - started if got else float("nan")
            status = await control.notification_status(ns)
            dropped = sum(p.dropped for p in status.providers)
            position = {e.commit: i for i, e in enumerate(events)}
            seen = [position[c] for c in order if c in position]
            in_order = seen == sorted(seen)
            print(
                f"flood of {flood} events: signalled in {signalled:.2f} s, {len(got)} delivered "
                f"in {elapsed:.1f} s ({len(got) / elapsed:.1f} messages/s), {dropped} dropped "
                f"over the queue bound; in order: {in_order}; repeated keys: "
                f"{len(keys) - len(set(keys))}"
            )
            await handle.terminate()
            await fl.cleanup()
            await worker.stop()
    await runner.cleanup()


async def _length(client: Client, workflow_id: str) -> int:
    try:
        return await history_length(client, workflow_id)
    except Exception:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--rollouts", type=int, default=5)
    parser.add_argument("--flood", type=int, default=1200)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run(args.clusters, args.rollouts, args.flood))


if __name__ == "__main__":
    main()
