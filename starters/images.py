"""``flotilla get images`` and ``flotilla approve image NAME [--reject]``: image policies.

An image policy is named ``<gitrepo>/<bundle>/<scan>`` inside its namespace; its schedule id
is ``imagepolicy/<namespace>/<name>``. What the table shows comes from the schedule (its
configuration and the state the last run recorded) and, while a run waits for approvals,
from that run's ``status`` query.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
from collections.abc import Awaitable, Callable
from datetime import datetime

from pydantic import BaseModel, Field
from temporalio.client import (
    Client,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from activities.schedules_models import ImagePolicyInput
from flotilla.errors import FlotillaError, cause_message
from flotilla.ids import CONTROL_TASK_QUEUE, DEFAULT_NAMESPACE
from flotilla.imagepolicy import FleetPolicy, Policy
from runtime.stores import load_settings
from runtime.temporal import connect
from starters.tables import render, table
from workflows.imagepolicy_models import (
    APPROVE_UPDATE,
    IMAGE_POLICY_STATUS_QUERY,
    REJECT_UPDATE,
    ApprovalRequest,
    ApprovalResult,
    ImagePolicyStatus,
    ImagePolicyStatusRequest,
)

PREFIX = "imagepolicy/"


class ImagePolicyLine(BaseModel):
    """One image policy as ``get images`` shows it."""

    name: str
    namespace: str
    image: str
    current: str
    latest_seen: str
    policy: str
    next_poll: datetime | None = None
    paused: bool = False
    pending: str = ""
    approvals: list[str] = Field(default_factory=list)
    required_approvals: int = 0
    deadline: datetime | None = None
    message: str = ""
    error: str = ""


def policy_text(policy: Policy) -> str:
    if isinstance(policy, FleetPolicy):
        if policy.semver is not None:
            return f"semver {policy.semver.range}"
        return f"alphabetical {policy.alphabetical.order if policy.alphabetical else 'asc'}"
    return f"{policy.kind}:{policy.pattern}" if policy.pattern else policy.kind


def policy_id(namespace: str, name: str) -> str:
    """``gitrepo/bundle/scan`` (or a whole ``imagepolicy/...`` id) -> the schedule id."""
    if name.startswith(PREFIX):
        return name
    if name.count("/") != 2:
        raise FlotillaError(
            f"image policy name must be GITREPO/BUNDLE/SCAN, as `flotilla get images` shows "
            f"it ({name!r})"
        )
    return f"{PREFIX}{namespace}/{name}"


class Images:
    """The operations behind the commands, usable from tests."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def _running(self, schedule_id: str) -> str | None:
        description = await self.client.get_schedule_handle(schedule_id).describe()
        for action in description.info.running_actions:
            if isinstance(action, ScheduleActionExecutionStartWorkflow):
                return action.workflow_id
        return None

    async def line(self, schedule_id: str) -> ImagePolicyLine:
        description = await self.client.get_schedule_handle(schedule_id).describe()
        action = description.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        [value] = await self.client.data_converter.decode(list(action.args), [ImagePolicyInput])
        config, state = value.config, value.state
        paused = description.schedule.state.paused
        next_times = description.info.next_action_times
        line = ImagePolicyLine(
            name=schedule_id.removeprefix(f"{PREFIX}{config.namespace}/"),
            namespace=config.namespace,
            image=config.scan.image,
            current=config.current.text,
            latest_seen=state.latest_seen,
            policy=policy_text(config.scan.policy),
            next_poll=None if paused or not next_times else next_times[0],
            paused=paused,
            required_approvals=config.scan.approvals,
            message=state.last_result,
            error=state.last_error,
        )
        running = [
            a
            for a in description.info.running_actions
            if isinstance(a, ScheduleActionExecutionStartWorkflow)
        ]
        if running:
            handle = self.client.get_workflow_handle(
                running[0].workflow_id, run_id=running[0].first_execution_run_id
            )
            try:
                status: ImagePolicyStatus = await handle.query(
                    IMAGE_POLICY_STATUS_QUERY,
                    ImagePolicyStatusRequest(),
                    result_type=ImagePolicyStatus,
                )
            except RPCError:
                return line  # finished between describe and query
            line.latest_seen = status.latest_seen or line.latest_seen
            line.pending = status.pending
            line.approvals = status.approvals
            line.deadline = status.deadline
        return line

    async def list(self, namespace: str) -> list[ImagePolicyLine]:
        prefix = f"{PREFIX}{namespace}/"
        ids = sorted(
            [s.id async for s in await self.client.list_schedules() if s.id.startswith(prefix)]
        )
        lines = []
        for schedule_id in ids:
            try:
                lines.append(await self.line(schedule_id))
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
        return lines

    async def vote(
        self, namespace: str, name: str, *, reject: bool, by: str, reason: str = ""
    ) -> ApprovalResult:
        schedule_id = policy_id(namespace, name)
        try:
            workflow_id = await self._running(schedule_id)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise FlotillaError(
                    f"no image policy {name!r} in namespace {namespace!r}"
                ) from None
            raise
        if workflow_id is None:
            raise FlotillaError(f"image policy {name!r}: no update is waiting for approval")
        handle = self.client.get_workflow_handle(workflow_id)
        update = REJECT_UPDATE if reject else APPROVE_UPDATE
        try:
            result: ApprovalResult = await handle.execute_update(
                update, ApprovalRequest(by=by, reason=reason), result_type=ApprovalResult
            )
            return result
        except WorkflowUpdateFailedError as err:
            raise FlotillaError(cause_message(err)) from None


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}Z" if value else "-"


def images_table(lines: list[ImagePolicyLine]) -> str:
    def pending(line: ImagePolicyLine) -> str:
        if not line.pending:
            return "-"
        return (
            f"{line.pending} {len(line.approvals)}/{line.required_approvals} "
            f"until {_when(line.deadline)}"
        )

    return table(
        ["NAME", "IMAGE", "CURRENT", "LATEST-SEEN", "POLICY", "NEXT-POLL", "PENDING-APPROVALS"],
        [
            [
                line.name,
                line.image,
                line.current,
                line.latest_seen or "-",
                line.policy,
                "paused" if line.paused else _when(line.next_poll),
                pending(line),
            ]
            for line in lines
        ],
    )


def _run(action: Callable[[Images], Awaitable[str]]) -> int:
    async def go() -> str:
        return await action(Images(await connect(load_settings().temporal)))

    print(asyncio.run(go()))
    return 0


def cmd_get_images(args: argparse.Namespace) -> int:
    async def action(images: Images) -> str:
        lines = await images.list(args.namespace)
        return render(lines, args.output, lambda: images_table(lines))

    return _run(action)


def cmd_approve(args: argparse.Namespace) -> int:
    if args.kind == "rollout":
        from starters.commands import cmd_approve_rollout  # noqa: PLC0415

        return cmd_approve_rollout(args)

    async def action(images: Images) -> str:
        result = await images.vote(
            args.namespace, args.name, reject=args.reject, by=args.by, reason=args.reason
        )
        return result.message

    return _run(action)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    approve = sub.add_parser(
        "approve",
        help="approve or reject an image update or a rollout partition",
        description="`approve image GITREPO/BUNDLE/SCAN`: an image update waiting for approval. "
        "`approve rollout BUNDLE --partition NAME`: let a partition whose fleet.yaml entry has "
        "requireApproval start the version rolling out now (--reject halts the rollout).",
    )
    approve.add_argument("kind", choices=("image", "rollout"))
    approve.add_argument(
        "name",
        help="image: GITREPO/BUNDLE/SCAN, as `flotilla get images` shows it; rollout: BUNDLE",
    )
    approve.add_argument("--partition", default="", help="rollout: the partition to approve")
    approve.add_argument("--reject", action="store_true", help="reject instead")
    approve.add_argument(
        "--by",
        "--user",
        dest="by",
        default=getpass.getuser(),
        help="who decides (default: $USER)",
    )
    approve.add_argument("--reason", default="", help="why (recorded and shown in status)")
    approve.add_argument("-n", "--namespace", default=DEFAULT_NAMESPACE)
    approve.add_argument("--task-queue", default=CONTROL_TASK_QUEUE, help=argparse.SUPPRESS)
    approve.set_defaults(handler=cmd_approve)
