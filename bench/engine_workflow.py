"""The workflow and activity of bench_engine.py: Temporal's own cost, with nothing of ours.

A separate module because the workflow sandbox imports a workflow's module by name."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="engine_noop")
def noop(index: int) -> int:
    """Answers at once: the activity's cost is Temporal's dispatch and the SDK's alone."""
    return index


@workflow.defn(name="EngineBench")
class EngineWorkflow:
    """Schedules ``activities`` no-op activities, at most ``per_task`` from one workflow task
    (as a bundle pass does), and waits for all of them."""

    @workflow.run
    async def run(self, activities: int, per_task: int, queue: str) -> int:
        done = 0
        for start in range(0, activities, per_task):
            batch = range(start, min(start + per_task, activities))
            results = await asyncio.gather(
                *(
                    workflow.execute_activity(
                        "engine_noop",
                        index,
                        task_queue=queue,
                        start_to_close_timeout=timedelta(minutes=5),
                    )
                    for index in batch
                )
            )
            done += len(results)
        return done
