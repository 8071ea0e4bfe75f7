"""``content-gc``: one garbage collection of the content store, run by the CLI or a schedule."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.contentgc_models import (
        COLLECT_GARBAGE,
        CONTENT_GC_WORKFLOW,
        CollectGarbageRequest,
        CollectGarbageResult,
    )
    from workflows.common import CONTENT_GC_HEARTBEAT, CONTENT_GC_RETRY, CONTENT_GC_TIMEOUT


@workflow.defn(name=CONTENT_GC_WORKFLOW)
class ContentGarbageWorkflow:
    """Runs ``collect_garbage`` on the control queue; the workflow id keeps one at a time."""

    @workflow.run
    async def run(self, request: CollectGarbageRequest) -> CollectGarbageResult:
        result: CollectGarbageResult = await workflow.execute_activity(
            COLLECT_GARBAGE,
            request,
            result_type=CollectGarbageResult,
            start_to_close_timeout=CONTENT_GC_TIMEOUT,
            heartbeat_timeout=CONTENT_GC_HEARTBEAT,
            retry_policy=CONTENT_GC_RETRY,
        )
        return result
