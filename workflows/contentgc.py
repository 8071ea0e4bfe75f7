"""``content-gc``: one garbage collection of the content store, run by the CLI or a schedule."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.contentgc import (
        CollectGarbageRequest,
        CollectGarbageResult,
        ContentActivities,
    )
    from workflows.common import CONTENT_GC_HEARTBEAT, CONTENT_GC_RETRY, CONTENT_GC_TIMEOUT


@workflow.defn
class ContentGarbageWorkflow:
    """Runs ``collect_garbage`` on the control queue; the workflow id keeps one at a time."""

    @workflow.run
    async def run(self, request: CollectGarbageRequest) -> CollectGarbageResult:
        return await workflow.execute_activity_method(
            ContentActivities.collect_garbage,
            request,
            start_to_close_timeout=CONTENT_GC_TIMEOUT,
            heartbeat_timeout=CONTENT_GC_HEARTBEAT,
            retry_policy=CONTENT_GC_RETRY,
        )
