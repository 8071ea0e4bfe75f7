"""Garbage collection of the content store: remove what no running GitRepo or bundle uses.

Mark: every running GitRepo and bundle workflow of the Temporal namespace is asked, by the
``content_refs`` query, which digests it holds (bundles, per-cluster options staged and
released). If any of them cannot answer, nothing is deleted. Sweep: the store's entries are
listed after the marks are taken, and each unreferenced one last written before the grace
period is deleted by its version, so content written again since the listing stays. The
rule itself is ``flotilla.garbage``; the design is in docs/content-store.md.

One content store belongs to one Temporal namespace: workflows of another namespace that
share the store are not asked, and their content would be swept.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.service import RPCError, RPCStatusCode

from activities.content import ContentError, ContentStore
from activities.contentgc_models import (
    COLLECT_GARBAGE,
    CONTENT_REFS_QUERY,
    MAX_LISTED,
    QUERY_CONCURRENCY,
    QUERY_TIMEOUT,
    REFERENCING_WORKFLOWS,
    CollectGarbageRequest,
    CollectGarbageResult,
    ContentRefs,
    ContentRefsRequest,
)
from activities.failures import to_application_error
from flotilla.errors import CONTENT_GC_INCOMPLETE, INVALID_SPEC, FlotillaError, SpecError
from flotilla.garbage import check_grace, select_garbage

# A grace period that is not valid is the caller's input: InvalidSpec, as workflows name it.
_INVALID_SPEC = {SpecError.type: INVALID_SPEC, FlotillaError.type: INVALID_SPEC}


class ContentActivities:
    """Content-store maintenance that needs both the store and the Temporal client."""

    def __init__(
        self, client: Client, content: ContentStore, *, query_timeout: timedelta = QUERY_TIMEOUT
    ) -> None:
        self.client = client
        self.content = content
        self.query_timeout = query_timeout

    @activity.defn(name=COLLECT_GARBAGE)
    async def collect_garbage(self, request: CollectGarbageRequest) -> CollectGarbageResult:
        """Delete unreferenced content older than the grace period (or only count it)."""
        grace = timedelta(seconds=request.grace_seconds)
        try:
            check_grace(grace, self.content.touch_after)
        except FlotillaError as err:
            raise to_application_error(err, rename=_INVALID_SPEC) from None
        referenced, workflows = await self._marks()
        try:
            entries = await asyncio.to_thread(lambda: list(self.content.entries()))
            by_digest = {e.digest: e for e in entries}
            now = datetime.now(UTC)
            plan = select_garbage(
                {d: e.written for d, e in by_digest.items()}, referenced, grace, now
            )
            deleted: list[str] = []
            spared = 0
            for digest in plan.delete:
                if request.dry_run:
                    deleted.append(digest)
                    continue
                activity.heartbeat(digest)
                if await asyncio.to_thread(self.content.delete, by_digest[digest]):
                    deleted.append(digest)
                else:
                    spared += 1
        except ContentError as err:
            raise to_application_error(err) from None
        activity.logger.info(
            "content gc%s: %d stored, %d referenced by %d workflows, %d recent, %d %s, %d spared",
            " (dry run)" if request.dry_run else "",
            len(entries),
            plan.referenced,
            workflows,
            plan.recent,
            len(deleted),
            "to delete" if request.dry_run else "deleted",
            spared,
        )
        return CollectGarbageResult(
            dry_run=request.dry_run,
            workflows=workflows,
            stored=len(entries),
            referenced=plan.referenced,
            recent=plan.recent,
            deleted=len(deleted),
            spared=spared,
            digests=deleted[:MAX_LISTED],
        )

    async def still_running(self, workflow_id: str) -> bool:
        """Whether the workflow's latest run is still running: True unless Temporal says it
        closed or is gone (when in doubt it may hold content, so it counts as running)."""
        try:
            described = await self.client.get_workflow_handle(workflow_id).describe(
                rpc_timeout=self.query_timeout
            )
        except RPCError as err:
            return err.status != RPCStatusCode.NOT_FOUND
        return described.status == WorkflowExecutionStatus.RUNNING

    async def _marks(self) -> tuple[set[str], int]:
        """Every digest held by a running GitRepo or bundle workflow, and how many were asked."""
        types = ", ".join(f"'{t}'" for t in REFERENCING_WORKFLOWS)
        query = f"ExecutionStatus = 'Running' AND WorkflowType IN ({types})"
        ids = [wf.id async for wf in self.client.list_workflows(query)]
        limit = asyncio.Semaphore(QUERY_CONCURRENCY)

        async def refs(workflow_id: str) -> list[str]:
            async with limit:
                activity.heartbeat(workflow_id)
                try:
                    answer = await self.client.get_workflow_handle(workflow_id).query(
                        CONTENT_REFS_QUERY,
                        ContentRefsRequest(),
                        result_type=ContentRefs,
                        rpc_timeout=self.query_timeout,
                    )
                except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError) as err:
                    if not await self.still_running(workflow_id):
                        # Closed since the list was read (the list lags): it holds nothing.
                        return []
                    # Not knowing what one workflow uses makes every deletion unsafe.
                    raise to_application_error(
                        FlotillaError(
                            f"content gc: cannot tell what {workflow_id} uses ({err}); "
                            "deleted nothing",
                            type=CONTENT_GC_INCOMPLETE,
                            retryable=True,
                        )
                    ) from None
                assert isinstance(answer, ContentRefs)
                return answer.digests

        found = await asyncio.gather(*(refs(i) for i in ids))
        return {digest for digests in found for digest in digests}, len(ids)
