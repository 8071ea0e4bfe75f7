"""``objectwatch/<namespace>/<cluster>``: keeps one object watcher running on a cluster.

The watcher itself is an activity (``activities/objectwatch.py``) on the central worker's watch
queue, or for an agent-mode cluster on the cluster's own queue, so exactly one runs per cluster
however many workers serve the queue, and a worker that dies hands it to another through its
heartbeat timeout. The worker that serves a push-mode cluster, or the cluster's agent, starts
this workflow (an existing one is kept); it is cancelled when the cluster leaves the registry.
Each watch runs ``run_seconds`` (an hour), then the workflow continues as new, so its history
stays a handful of events.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.objectwatch_models import (
        WATCH_OBJECTS,
        WatchObjectsRequest,
        WatchObjectsResult,
    )
    from flotilla.ids import watch_task_queue
    from workflows.common import WATCH_OBJECTS_HEARTBEAT, WATCH_OBJECTS_RETRY
    from workflows.objectwatch_models import OBJECTWATCH_WORKFLOW

# A watch returns after ``run_seconds``; it may take this much longer to stop its threads.
_MARGIN = timedelta(minutes=2)
# After a watch that failed for good (a non-retryable error), wait this long before the next.
_AFTER_FAILURE = timedelta(seconds=30)


@workflow.defn(name=OBJECTWATCH_WORKFLOW)
class ObjectWatchWorkflow:
    """Runs the cluster's object watcher, again and again, until cancelled."""

    @workflow.run
    async def run(self, request: WatchObjectsRequest) -> None:
        try:
            await workflow.execute_activity(
                WATCH_OBJECTS,
                request,
                result_type=WatchObjectsResult,
                # Push mode: the central worker's watch queue; agent mode: the agent's queue.
                task_queue=request.task_queue or watch_task_queue(workflow.info().task_queue),
                start_to_close_timeout=timedelta(seconds=request.run_seconds)
                + timedelta(minutes=2),
                heartbeat_timeout=WATCH_OBJECTS_HEARTBEAT,
                retry_policy=WATCH_OBJECTS_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning(
                "object watch of cluster %s/%s failed: %s",
                request.cluster_namespace,
                request.cluster_name,
                err.cause or err,
            )
            await workflow.sleep(_AFTER_FAILURE)
        workflow.continue_as_new(request)
