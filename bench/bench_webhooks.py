"""Webhook latency and receiver throughput.

Starts its own Temporal dev server, git daemon and an in-process worker with the webhook
receiver (``--webhook-listen``), one cluster whose deploy activities answer at once (so the
numbers are the receiver's, Temporal's and the workflows', not Helm's), and a GitRepo with
``disablePolling: true``, so only the webhook can start a sync. Each of N pushes is a new
commit and a signed GitHub push event; measured: push sent → the bundle's ``deploy_bundle``
for that commit scheduled (from the bundle workflow's history). Then a flood of signed
pushes for an unknown repository, all at once: answers per second and the answers' codes.

    .venv/bin/python bench/bench_webhooks.py --pushes 50 --flood 1000
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_gitops import InstantDeploy
from devenv.gitserver import GitDaemon
from devenv.temporal import TemporalDevServer
from flotilla.ids import bundle_workflow_id
from flotilla.webhooks import WEBHOOK_SECRET_NAME
from runtime.stores import secret_store
from starters.control import Control
from tests.e2e.harness import Flotilla, activity_calls, gitrepo_yaml, settings_for_test
from tests.webhooks.payloads import github
from worker import FlotillaWorker, WorkerConfig

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\ndata: {{v: '{v}'}}\n"
KEY = "bench-hook-secret"


async def run(pushes: int, flood: int) -> None:
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
                webhook_listen="127.0.0.1:0",
            )
            settings = settings_for_test(client, tmp / "fl")
            deploy = InstantDeploy()
            deploy.kubeconfig_secrets = {}  # type: ignore[attr-defined]
            worker = FlotillaWorker(client, config, settings, deploy=deploy)  # type: ignore[arg-type]
            await worker.start()
            control = Control(client, task_queue="bench", secrets=secret_store(settings))
            fl = Flotilla("fl-bench", client, control, worker, config, settings)
            worker.secrets.put(fl.settings.system_namespace, WEBHOOK_SECRET_NAME, {"github": KEY})
            ns = fl.namespace
            await fl.control.add_cluster(ns, "c0", "apiVersion: v1\nkind: Config\n")
            await worker.refresh_clusters()
            await fl.control.apply_text(
                gitrepo_yaml(
                    ns, "bench", url, disablePolling=True, targets=[{"clusterSelector": {}}]
                ),
                file="g.yaml",
            )
            await fl.eventually(
                lambda: fl.control.gitrepo_status(ns, "bench"),
                lambda s: s.state == "Ready" and s.ready_bundle_deployments == "1/1",
            )
            hook = f"http://127.0.0.1:{worker.webhook_port}/webhook"
            web = url.replace("git://", "http://").removesuffix(".git")
            sent: list[datetime] = []
            answered: list[float] = []
            async with aiohttp.ClientSession() as session:
                for index in range(1, pushes + 1):
                    sha = git.commit(
                        git.working_copy("bench"), {"b/cm.yaml": CM.format(v=index)}, message="p"
                    )
                    headers, body = github(web, "refs/heads/main", sha, KEY)
                    sent.append(datetime.now(UTC).replace(tzinfo=None))
                    posted = time.monotonic()
                    async with session.post(hook, data=body, headers=headers) as answer:
                        assert answer.status == 200, await answer.text()
                    answered.append(time.monotonic() - posted)
                    await fl.eventually(
                        lambda: fl.control.gitrepo_status(ns, "bench"),
                        lambda s, sha=sha: s.commit == sha and s.state == "Ready",  # type: ignore[misc]
                        interval=0.05,
                    )
                calls, _ = await activity_calls(client, bundle_workflow_id(ns, "bench-b"))
                deploys = [c.scheduled for c in calls if c.name == "deploy_bundle"][1:]
                latencies = sorted(
                    (d - s).total_seconds() for s, d in zip(sent, deploys, strict=True)
                )
                p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
                print(
                    f"webhook sent -> deploy_bundle scheduled over {len(latencies)} pushes: "
                    f"median {statistics.median(latencies):.3f}s, p99 {p99:.3f}s, "
                    f"max {latencies[-1]:.3f}s; the receiver answered in median "
                    f"{statistics.median(answered):.3f}s, max {max(answered):.3f}s"
                )
                fetches = sorted(
                    (c.completed - c.scheduled).total_seconds()
                    for c in (await activity_calls(client, f"gitrepo/{ns}/bench"))[0]
                    if c.name == "fetch_bundles" and c.completed is not None
                )
                print(
                    f"of which fetch_bundles (clone, read, store) median "
                    f"{statistics.median(fetches):.3f}s, max {fetches[-1]:.3f}s"
                )

                headers, body = github(
                    "https://example.com/no/repo", "refs/heads/main", "a" * 40, KEY
                )

                async def one() -> int:
                    async with session.post(hook, data=body, headers=headers) as answer:
                        await answer.read()
                        return answer.status

                started = time.monotonic()
                codes = await asyncio.gather(*(one() for _ in range(flood)))
                elapsed = time.monotonic() - started
                print(
                    f"flood of {flood} signed pushes (unknown repo), all at once: "
                    f"{elapsed:.2f}s, {flood / elapsed:.0f} answers/s, codes {dict(Counter(codes))}"
                )
            await fl.cleanup()
            await worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pushes", type=int, default=50)
    parser.add_argument("--flood", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run(args.pushes, args.flood))


if __name__ == "__main__":
    main()
