"""``flotilla content gc`` and ``flotilla content schedule-gc``: the content store's upkeep.

``gc`` runs one garbage collection on the workers (the ``content-gc`` workflow, so only one
runs at a time and the worker's own content store is swept, whichever machine the CLI is
on) and prints what it removed, or with ``--dry-run`` what it would remove. ``schedule-gc``
makes a Temporal Schedule run it periodically (``--off`` removes the schedule).
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowFailureError,
)
from temporalio.exceptions import FailureError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.contentgc_models import (
    CONTENT_GC_WORKFLOW,
    DEFAULT_GRACE,
    CollectGarbageRequest,
    CollectGarbageResult,
)
from flotilla.durations import format_duration, parse_duration
from flotilla.errors import FlotillaError
from flotilla.ids import CONTENT_GC_WORKFLOW_ID, CONTROL_TASK_QUEUE
from runtime.stores import load_settings
from runtime.temporal import connect

DEFAULT_EVERY = timedelta(hours=24)


def _duration(value: str, flag: str) -> timedelta:
    return timedelta(seconds=parse_duration(value, field=flag))


def _cause(err: WorkflowFailureError) -> str:
    """The innermost failure's message: the activity's own one line."""
    failure: BaseException = err.cause
    while isinstance(failure, FailureError) and failure.cause is not None:
        failure = failure.cause
    return failure.message if isinstance(failure, FailureError) else str(failure)


def summary(result: CollectGarbageResult, grace: timedelta) -> str:
    """What a collection did, then the digests it names (one per line)."""
    verb = "to delete" if result.dry_run else "deleted"
    lines = [
        f"content gc{' (dry run)' if result.dry_run else ''}: {result.stored} stored, "
        f"{result.referenced} referenced by {result.workflows} workflows, {result.recent} "
        f"written in the last {format_duration(grace.total_seconds())}, {result.deleted} {verb}"
        + (f", {result.spared} written again meanwhile" if result.spared else "")
    ]
    lines += [f"  {digest}" for digest in result.digests]
    if result.deleted > len(result.digests):
        lines.append(f"  ... and {result.deleted - len(result.digests)} more")
    return "\n".join(lines)


async def collect(
    client: Client, request: CollectGarbageRequest, task_queue: str = CONTROL_TASK_QUEUE
) -> CollectGarbageResult:
    """Run one collection on the workers and wait for its result."""
    try:
        result: CollectGarbageResult = await client.execute_workflow(
            CONTENT_GC_WORKFLOW,
            request,
            id=CONTENT_GC_WORKFLOW_ID,
            task_queue=task_queue,
            result_type=CollectGarbageResult,
        )
    except WorkflowAlreadyStartedError:
        raise FlotillaError(
            f"a content garbage collection is already running (workflow {CONTENT_GC_WORKFLOW_ID})"
        ) from None
    except WorkflowFailureError as err:
        raise FlotillaError(f"content gc failed: {_cause(err)}") from None
    return result


async def schedule(
    client: Client,
    request: CollectGarbageRequest,
    every: timedelta | None,
    task_queue: str = CONTROL_TASK_QUEUE,
) -> str:
    """Create or update the schedule (``every`` None: delete it); say what was done."""
    handle = client.get_schedule_handle(CONTENT_GC_WORKFLOW_ID)
    if every is None:
        try:
            await handle.delete()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return f"schedule {CONTENT_GC_WORKFLOW_ID}: there was none"
        return f"schedule {CONTENT_GC_WORKFLOW_ID}: deleted"
    wanted = Schedule(
        action=ScheduleActionStartWorkflow(
            CONTENT_GC_WORKFLOW, request, id=CONTENT_GC_WORKFLOW_ID, task_queue=task_queue
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(CONTENT_GC_WORKFLOW_ID, wanted)
        done = "created"
    except ScheduleAlreadyRunningError:

        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=wanted)

        await handle.update(update)
        done = "updated"
    return (
        f"schedule {CONTENT_GC_WORKFLOW_ID}: {done}: every "
        f"{format_duration(every.total_seconds())}, grace {format_duration(request.grace_seconds)}"
    )


def _request(args: argparse.Namespace) -> CollectGarbageRequest:
    grace = _duration(args.grace, "--grace")
    return CollectGarbageRequest(grace_seconds=grace.total_seconds(), dry_run=args.dry_run)


def cmd_gc(args: argparse.Namespace) -> int:
    request = _request(args)

    async def go() -> str:
        client = await connect(load_settings().temporal)
        result = await collect(client, request, args.task_queue)
        return summary(result, timedelta(seconds=request.grace_seconds))

    print(asyncio.run(go()))
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    request = _request(args)
    every = None if args.off else _duration(args.every, "--every")

    async def go() -> str:
        return await schedule(
            await connect(load_settings().temporal), request, every, args.task_queue
        )

    print(asyncio.run(go()))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    content = sub.add_parser("content", help="the content store: garbage collection")
    actions = content.add_subparsers(dest="action", metavar="ACTION", required=True)
    default_grace = f"{int(DEFAULT_GRACE.total_seconds() // 3600)}h"
    gc = actions.add_parser("gc", help="remove content no GitRepo or bundle uses any more")
    schedule_gc = actions.add_parser("schedule-gc", help="run gc periodically (a schedule)")
    for parser in (gc, schedule_gc):
        parser.add_argument(
            "--grace",
            default=default_grace,
            help=f"keep content written this recently, used or not (default {default_grace})",
        )
        parser.add_argument("--dry-run", action="store_true", help="only count, delete nothing")
        parser.add_argument("--task-queue", default=CONTROL_TASK_QUEUE, help=argparse.SUPPRESS)
    gc.set_defaults(handler=cmd_gc)
    schedule_gc.add_argument("--every", default="24h", help="how often (default 24h)")
    schedule_gc.add_argument("--off", action="store_true", help="delete the schedule")
    schedule_gc.set_defaults(handler=cmd_schedule)
