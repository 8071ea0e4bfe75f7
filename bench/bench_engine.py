"""Temporal's own ceiling on this machine: the same shape as bench_gitops, nothing of ours.

W workflows each schedule A no-op activities, at most P from one workflow task (as a bundle
pass does: ``ACTIVITIES_PER_PASS``), on a worker with flotilla's settings (4 workflow tasks at
once, the sandbox, a 10 s sticky timeout, a thread pool of 64 for the activities, on shared
push-like queues). Reports the wall time, the activities and workflow tasks completed per
second (from the server's metrics) and the worker's and server's CPU: the engine's measured
limit that bench_gitops's throughput is compared with (issue 12).

    .venv/bin/python bench/bench_engine.py --workflows 50 --activities 500 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_gitops import cpu_seconds
from engine_workflow import EngineWorkflow, noop
from temporal_kinds import ServerThroughput, temporal_server

QUEUES = 4


async def run(workflows: int, activities: int, per_task: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, temporal_server("dev", Path(tmp)) as server:
        client = await Client.connect(server.address)
        pool = concurrent.futures.ThreadPoolExecutor(64)
        control = Worker(
            client,
            task_queue="engine",
            workflows=[EngineWorkflow],
            max_concurrent_workflow_tasks=4,
            sticky_queue_schedule_to_start_timeout=timedelta(seconds=10),
        )
        pushes = [
            Worker(
                client,
                task_queue=f"engine.push.{q}",
                activities=[noop],
                activity_executor=pool,
                max_concurrent_activities=16,
            )
            for q in range(QUEUES)
        ]
        async with control, pushes[0], pushes[1], pushes[2], pushes[3]:
            throughput = ServerThroughput(server.metrics_url)
            throughput.start()
            pid = server.process.pid if server.process else None
            before = (cpu_seconds(os.getpid()), cpu_seconds(pid) if pid else 0.0)
            started = time.monotonic()
            handles = [
                await client.start_workflow(
                    EngineWorkflow.run,
                    args=[activities, per_task, f"engine.push.{w % QUEUES}"],
                    id=f"engine-{w}",
                    task_queue="engine",
                )
                for w in range(workflows)
            ]
            await asyncio.gather(*(h.result() for h in handles))
            wall = time.monotonic() - started
            rates = throughput.stop()
            worker = cpu_seconds(os.getpid()) - before[0]
            served = (cpu_seconds(pid) - before[1]) if pid else 0.0
        pool.shutdown()
    total = workflows * activities
    print(
        f"{workflows} workflows x {activities} no-op activities ({per_task} per task): "
        f"{wall:.1f}s, {total / wall:.0f} activities/s; {throughput.line()}; CPU worker "
        f"{worker:.1f}s, dev server {served:.1f}s ({1000 * worker / total:.2f} / "
        f"{1000 * served / total:.2f} ms per activity); load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    return {
        "seconds": wall,
        "activities/s": total / wall,
        "server workflow tasks/s": rates["workflow tasks"],
        "server activities/s": rates["activities"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workflows", type=int, default=50)
    parser.add_argument("--activities", type=int, default=500)
    parser.add_argument("--per-task", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = [
        asyncio.run(run(args.workflows, args.activities, args.per_task)) for _ in range(args.runs)
    ]
    print(f"medians of {args.runs}, load before the last {os.getloadavg()[0]:.2f}:")
    for name in results[0]:
        values = [r[name] for r in results]
        print(f"  {name}: {statistics.median(values):.1f} ({' '.join(f'{v:.1f}' for v in values)})")


if __name__ == "__main__":
    main()
