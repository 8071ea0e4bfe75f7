"""Image polling at rest: N image policies on Temporal Schedules against an unchanged registry.

Starts its own Temporal dev server, registry (behind a counting proxy) and git daemon, creates
one repository whose fleet.yaml has N scans (each its own image repository with one tag and a
``minor`` policy), syncs the schedules as the GitRepo workflow would, and lets them poll. The
worker (image workflow and activities only) is a separate process so its CPU is read from
/proc. Measured over a window after one warm-up round: registry requests per poll, history
events and Temporal actions per poll, and the worker's CPU, scaled to one-minute schedules.

    .venv/bin/python bench/bench_images.py                    # 200 policies, @every 60s, 120 s
    .venv/bin/python bench/bench_images.py --interval 20 --window 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench_fleet import cpu_seconds
from temporalio.client import Client, ScheduleActionExecutionStartWorkflow
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.content import FileContentStore
from activities.gitops import GitOpsActivities
from activities.gitops_models import FetchRequest, GitSource, LsRemoteRequest
from activities.registry import RegistryActivities
from activities.schedules import ScheduleActivities, image_policy_prefix
from activities.schedules_models import SyncSchedulesRequest
from activities.secrets import FileSecretStore
from activities.writeback import WriteBackActivities
from devenv.gitserver import GitDaemon
from devenv.registry import LocalRegistry
from devenv.temporal import TemporalDevServer
from flotilla.ids import DEFAULT_NAMESPACE
from flotilla.models import GitRepoSpec
from workflows.imagepolicy import ImagePolicyWorkflow

# The counting proxy lives with the tests; the repository root is not on the script's path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.images.conftest import CountingProxy


async def serve_worker(address: str, task_queue: str, work: Path) -> None:
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    secrets, content = FileSecretStore(work / "secrets"), FileContentStore(work / "content")
    gitops = GitOpsActivities(client, secrets, content, work / "git")
    registry = RegistryActivities(secrets)
    writeback = WriteBackActivities(gitops, work / "writeback")
    schedules = ScheduleActivities(client, content, gitops)
    with ThreadPoolExecutor(16) as pool:
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=[ImagePolicyWorkflow],
            activities=[
                registry.poll_registry,
                writeback.write_back,
                schedules.record_policy_state,
                schedules.request_gitrepo_sync,
            ],
            activity_executor=pool,
        )
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with worker:
            print("worker ready", flush=True)
            await stop.wait()


async def runs_started(client: Client) -> int:
    """Image-policy runs the schedules have started so far (one per poll)."""
    counted = await client.count_workflows("WorkflowType = 'ImagePolicyWorkflow'")
    return counted.count


async def sample_history(client: Client, schedule_id: str) -> dict[str, int]:
    """Event types of the latest finished run of one schedule."""
    description = await client.get_schedule_handle(schedule_id).describe()
    running = {a.workflow_id for a in description.info.running_actions}  # type: ignore[attr-defined]
    for result in reversed(description.info.recent_actions):
        action = result.action
        if not isinstance(action, ScheduleActionExecutionStartWorkflow):
            continue
        if action.workflow_id in running:
            continue
        handle = client.get_workflow_handle(
            action.workflow_id, run_id=action.first_execution_run_id
        )
        history = await handle.fetch_history()
        counts: dict[str, int] = {}
        for event in history.events:
            name = type(event).__name__
            kind = event.WhichOneof("attributes") or name
            counts[kind] = counts.get(kind, 0) + 1
        return counts
    return {}


async def bench(args: argparse.Namespace) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-images-"))
    with (
        TemporalDevServer(tmp / "temporal", headless=True) as server,
        LocalRegistry(tmp / "registry") as registry,
        CountingProxy(registry.host) as proxy,
        GitDaemon(tmp / "git") as daemon,
    ):
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        task_queue = f"bench-{uuid.uuid4().hex[:8]}"
        work = tmp / "work"
        print(f"pushing {args.policies} images ...", file=sys.stderr)
        scans, values = [], []
        for i in range(args.policies):
            repo = f"bench/app{i}"
            registry.push_image(repo, "1.0.0", f"app{i}")
            scans.append(
                {
                    "image": f"{proxy.host}/{repo}",
                    "tagName": f"app{i}",
                    "policy": "minor",
                    "pollSchedule": f"@every {args.interval}s",
                }
            )
            values.append(f'app{i}: "1.0.0" # {{"$imagescan": "app{i}:tag"}}')
        fleet = "imageScans:\n" + "".join(f"  - {json.dumps(s)}\n" for s in scans)
        url = daemon.create_repo("fleet", {"fleet.yaml": fleet, "values.yaml": "\n".join(values)})

        worker = subprocess.Popen(
            [sys.executable, __file__, "--serve-worker", server.address, task_queue, str(work)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert worker.stdout is not None
            worker.stdout.readline()
            secrets, content = FileSecretStore(work / "secrets"), FileContentStore(work / "content")
            gitops = GitOpsActivities(client, secrets, content, tmp / "git-sync")
            schedules = ScheduleActivities(client, content, gitops)
            spec = GitRepoSpec.model_validate({"repo": url, "branch": "main"})
            env = ActivityEnvironment()
            source = GitSource.from_spec(spec, DEFAULT_NAMESPACE)
            head = env.run(gitops.ls_remote, LsRemoteRequest(source=source))
            fetched = env.run(
                gitops.fetch_bundles,
                FetchRequest(namespace="bench", gitrepo="fleet", source=source, commit=head.commit),
            )
            started = time.monotonic()
            synced = await env.run(
                schedules.sync_image_schedules,
                SyncSchedulesRequest(
                    namespace="bench",
                    gitrepo="fleet",
                    gitrepo_workflow_id="gitrepo/bench/fleet",
                    spec=spec,
                    commit=head.commit,
                    bundles=fetched.bundles,
                    task_queue=task_queue,
                ),
            )
            sync_seconds = time.monotonic() - started
            ids = synced.created
            print(f"{len(ids)} schedules in {sync_seconds:.1f}s; warming up ...", file=sys.stderr)
            await asyncio.sleep(args.interval * 1.5)
            actions0, requests0 = await runs_started(client), proxy.count()
            cpu0, t0 = cpu_seconds(worker.pid), time.monotonic()
            await asyncio.sleep(args.window)
            cpu1, t1 = cpu_seconds(worker.pid), time.monotonic()
            actions1, requests1 = await runs_started(client), proxy.count()
            history = await sample_history(client, ids[0])
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:  # the numbers are taken; do not lose them
                print("worker ignored SIGTERM for 30 s; killed", file=sys.stderr)
                worker.kill()
                worker.wait()
            async for entry in await client.list_schedules():
                if entry.id.startswith(image_policy_prefix("bench", "fleet")):
                    await client.get_schedule_handle(entry.id).delete()
    polls = actions1 - actions0
    elapsed = t1 - t0
    cpu = cpu1 - cpu0
    per_poll_cpu = cpu / polls if polls else 0.0
    one_minute_rate = args.policies / 60.0
    activities = history.get("activity_task_scheduled_event_attributes", 0)
    return {
        "policies": args.policies,
        "interval_s": args.interval,
        "window_s": round(elapsed, 1),
        "schedule_sync_s": round(sync_seconds, 1),
        "polls": polls,
        "registry_requests": requests1 - requests0,
        "requests_per_poll": round((requests1 - requests0) / polls, 3) if polls else None,
        "history_events_per_poll": sum(history.values()),
        "activities_per_poll": activities,
        # Billable-style actions: the schedule's start of the run, plus each activity.
        "temporal_actions_per_poll": 1 + activities,
        "worker_cpu_s": round(cpu, 2),
        "worker_cpu_pct_measured": round(100 * cpu / elapsed, 1),
        "worker_cpu_ms_per_poll": round(1000 * per_poll_cpu, 2),
        "worker_cpu_pct_at_1min": round(100 * per_poll_cpu * one_minute_rate, 1),
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-worker":
        address, task_queue, work = sys.argv[2:5]
        asyncio.run(serve_worker(address, task_queue, Path(work)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=200)
    parser.add_argument("--interval", type=int, default=60, help="seconds between polls")
    parser.add_argument("--window", type=int, default=120, help="seconds measured")
    results = asyncio.run(bench(parser.parse_args()))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
