"""ImagePolicyWorkflow: one poll of one image scan, started by the scan's Temporal Schedule.

poll the registry -> ``choose_tag`` -> (N approvals before ``approvalDeadline``) -> write the
new tag or digest back to git -> ask the GitRepo workflow to sync now. An update that was
rejected or expired, and one already committed, are remembered in the schedule (see
``activities/schedules.py``) so the next run does not propose them again; a newer image does.
Registry and git failures end the run with the error recorded; the schedule keeps polling.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.registry_models import POLL_REGISTRY, PollRequest, PollResult
    from activities.schedules_models import (
        RECORD_POLICY_STATE,
        REQUEST_GITREPO_SYNC,
        GitRepoSyncRequest,
        GitRepoSyncResult,
        ImagePolicyInput,
        ImageVersion,
        RecordStateRequest,
        RecordStateResult,
    )
    from activities.writeback_models import WRITE_BACK, WriteBackRequest, WriteBackResult
    from flotilla.errors import NON_RETRYABLE_REGISTRY_ERRORS, cause_message
    from flotilla.ids import bundle_workflow_id
    from flotilla.imagepolicy import ImageUpdate, KeelPolicy, choose_tag, follows_digest
    from flotilla.notifications import EventKind, NotificationEvent
    from workflows.common import (
        CLIENT_RETRY,
        GIT_RETRY,
        IMAGE_NOTIFY_CONFIGURED_PATCH,
        send_notification_events,
    )
    from workflows.imagepolicy_models import (
        APPROVE_UPDATE,
        IMAGE_POLICY_STATUS_QUERY,
        REJECT_UPDATE,
        ApprovalRequest,
        ApprovalResult,
        ImagePolicyResult,
        ImagePolicyStatus,
        ImagePolicyStatusRequest,
    )
    from workflows.visibility import GITREPO, KIND

# Registries: a few retries inside one poll (429s wait for Retry-After); the next poll is the
# real retry, so a long outage costs one failed run per interval, not a pile of attempts.
REGISTRY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=4,
    non_retryable_error_types=NON_RETRYABLE_REGISTRY_ERRORS,
)
POLL_TIMEOUT = timedelta(seconds=90)
WRITE_BACK_TIMEOUT = timedelta(minutes=5)
WRITE_BACK_HEARTBEAT = timedelta(seconds=60)
SCHEDULE_CALL_TIMEOUT = timedelta(seconds=30)
# A run that waits for approval or commits an update tells the namespace's notifications.
NOTIFY_PATCH = "image-policy-sends-notification-events"


# Outside the sandbox: a schedule starts a new run of this workflow for every poll (200
# policies polled every minute are 3.3 runs a second), and the sandbox rebuilds its module
# for each run, which was two thirds of the worker's CPU in bench/bench_images.py. The
# code is short, imports no I/O (.importlinter) and reads no clock or randomness except
# through the SDK (workflows/ruff.toml); the replay tests cover it like the others.
@workflow.defn(sandboxed=False)
class ImagePolicyWorkflow:
    """``imagepolicy/<ns>/<gitrepo>/<bundle>/<scan>-<time>``: one scheduled poll of a scan."""

    @workflow.init
    def __init__(self, input: ImagePolicyInput) -> None:
        self.config = input.config
        self.state = input.state.model_copy(deep=True)
        self.phase = "polling"
        self.pending: ImageVersion | None = None
        self.approvals: list[str] = []
        self.rejected_by = ""
        self.deadline: datetime | None = None
        self.decided = False

    @workflow.run
    async def run(self, input: ImagePolicyInput) -> ImagePolicyResult:
        workflow.upsert_search_attributes(
            [KIND.value_set("ImagePolicy"), GITREPO.value_set(self.config.gitrepo)]
        )
        result = await self._poll()
        self.phase = result.outcome
        if result.outcome == "error":
            self.state.last_error = result.message
        else:
            self.state.last_error = ""
            self.state.last_result = result.message
        self._details(result.message)
        if self.state != input.state:
            await workflow.execute_activity(
                RECORD_POLICY_STATE,
                RecordStateRequest(policy_id=self.config.policy_id, state=self.state),
                result_type=RecordStateResult,
                start_to_close_timeout=SCHEDULE_CALL_TIMEOUT,
                retry_policy=CLIENT_RETRY,
            )
        return result

    # --- steps --------------------------------------------------------------------------------

    async def _registry(self, request: PollRequest) -> tuple[list[str], str | None]:
        result: PollResult = await workflow.execute_activity(
            POLL_REGISTRY,
            request,
            result_type=PollResult,
            start_to_close_timeout=POLL_TIMEOUT,
            retry_policy=REGISTRY_RETRY,
        )
        return result.tags, result.digest

    async def _poll(self) -> ImagePolicyResult:
        config, scan = self.config, self.config.scan
        current = config.current
        if isinstance(scan.policy, KeelPolicy) and scan.policy.kind == "never":
            return ImagePolicyResult(outcome="unchanged", message="policy 'never': no updates")
        follow = follows_digest(scan.policy, current.tag, scan.match_tag)
        request = PollRequest(
            registry=scan.ref.registry,
            repository=scan.ref.repository,
            secret_name=scan.secret_ref.name if scan.secret_ref else None,
            secret_namespace=config.namespace,
            list_tags=not follow,
            digest_of=current.tag if follow else None,
        )
        try:
            tags, digest = await self._registry(request)
        except ActivityError as err:
            return ImagePolicyResult(outcome="error", message=f"poll failed: {cause_message(err)}")
        decision = choose_tag(
            scan.policy,
            current_tag=current.tag,
            tags=tags,
            current_digest=current.digest,
            registry_digest=digest,
            match_tag=scan.match_tag,
        )
        if decision.tag:
            self.state.latest_seen = ImageVersion(tag=decision.tag, digest=decision.digest).text
        if not decision.update or not decision.tag:
            return ImagePolicyResult(outcome="unchanged", message=decision.reason)
        proposal = ImageVersion(tag=decision.tag, digest=decision.digest)
        if proposal == self.state.applied:
            return ImagePolicyResult(
                outcome="skipped",
                message=f"{proposal.text} is committed; waiting for the gitrepo to read it",
            )
        if proposal == self.state.declined:
            return ImagePolicyResult(
                outcome="skipped",
                message=f"{proposal.text} was {self.state.declined_reason}; "
                "waiting for a newer image",
            )
        candidate = proposal
        if config.wants_digest and not candidate.digest:
            try:
                _, found = await self._registry(
                    request.model_copy(update={"list_tags": False, "digest_of": candidate.tag})
                )
            except ActivityError as err:
                return ImagePolicyResult(
                    outcome="error", message=f"poll failed: {cause_message(err)}"
                )
            candidate = candidate.model_copy(update={"digest": found})
        if scan.approvals > 0:
            refusal = await self._approval(proposal)
            if refusal:
                self.state.declined = proposal
                self.state.declined_reason = refusal
                return ImagePolicyResult(
                    outcome="declined", message=f"{self._change(candidate)}: {refusal}"
                )
        return await self._write(proposal, candidate)

    def _change(self, new: ImageVersion) -> str:
        old = self.config.current
        return f"{old.text if new.digest else old.tag} → {new.text}"

    async def _approval(self, proposal: ImageVersion) -> str:
        """Wait for the approvals; return why not ('rejected by ...', 'expired') or ''."""
        required = self.config.scan.approvals
        wait = timedelta(seconds=self.config.scan.approval_deadline_seconds)
        self.pending = proposal
        self.deadline = workflow.now() + wait
        self.phase = "waiting for approval"
        self._details()
        await self._notify(
            EventKind.WAITING_FOR_APPROVAL,
            f"{self._change(proposal)}: {required} approval(s) needed until "
            f"{self.deadline:%Y-%m-%d %H:%M:%S}Z (flotilla approve image {self.config.policy_id})",
        )
        try:
            await workflow.wait_condition(
                lambda: len(self.approvals) >= required or bool(self.rejected_by), timeout=wait
            )
        except TimeoutError:
            self.decided = True
            return (
                f"expired with {len(self.approvals)}/{required} approvals at "
                f"{self.deadline:%Y-%m-%d %H:%M:%S}Z"
            )
        self.decided = True
        if self.rejected_by:
            return f"rejected by {self.rejected_by}"
        return ""

    async def _write(self, proposal: ImageVersion, candidate: ImageVersion) -> ImagePolicyResult:
        config = self.config
        self.phase = "writing"
        self._details(f"{self._change(candidate)}: writing to git")
        try:
            written: WriteBackResult = await workflow.execute_activity(
                WRITE_BACK,
                WriteBackRequest(
                    source=config.source,
                    gitrepo=config.gitrepo,
                    bundle=config.bundle,
                    scan=config.scan.tag_name,
                    files=config.files,
                    update=ImageUpdate(
                        image=config.scan.image, tag=candidate.tag, digest=candidate.digest
                    ),
                    previous=config.current.text,
                    commit=config.commit_spec,
                ),
                result_type=WriteBackResult,
                start_to_close_timeout=WRITE_BACK_TIMEOUT,
                heartbeat_timeout=WRITE_BACK_HEARTBEAT,
                retry_policy=GIT_RETRY,
            )
        except ActivityError as err:
            return ImagePolicyResult(
                outcome="error", message=f"{self._change(candidate)}: {cause_message(err)}"
            )
        self.state.applied = proposal
        what = f"committed {written.commit[:12]}" if written.commit else "already in git, no commit"
        if written.commit:
            await self._notify(
                EventKind.IMAGE_UPDATE_COMMITTED,
                f"{self._change(candidate)}: {what}",
                commit=written.commit,
            )
        try:
            await workflow.execute_activity(
                REQUEST_GITREPO_SYNC,
                GitRepoSyncRequest(workflow_id=config.gitrepo_workflow_id),
                result_type=GitRepoSyncResult,
                start_to_close_timeout=SCHEDULE_CALL_TIMEOUT,
                retry_policy=CLIENT_RETRY,
            )
        except ActivityError as err:
            # The commit stands; the GitRepo's own polling will find it.
            what += f" (sync-now not delivered: {cause_message(err)})"
        return ImagePolicyResult(
            outcome="committed", message=f"{self._change(candidate)}: {what}", commit=written.commit
        )

    async def _notify(self, kind: EventKind, detail: str, *, commit: str = "") -> None:
        """One event to ``notifications/<ns>``; without a notification config (the schedule's
        ``notify``, from the GitRepo's registry snapshot) it is dropped without a signal."""
        if not workflow.patched(NOTIFY_PATCH):
            return
        if not self.config.notify and workflow.patched(IMAGE_NOTIFY_CONFIGURED_PATCH):
            return
        info, config = workflow.info(), self.config
        event = NotificationEvent(
            kind=kind,
            namespace=config.namespace,
            gitrepo=config.gitrepo,
            bundle=config.bundle,
            commit=commit or config.commit,
            detail=detail,
            workflow_id=bundle_workflow_id(config.namespace, config.bundle)
            if kind is EventKind.IMAGE_UPDATE_COMMITTED
            else info.workflow_id,
            key=f"{info.workflow_id}/{info.run_id}#{kind.value}",
        )
        await send_notification_events(config.namespace, [event])

    def _details(self, message: str = "") -> None:
        if self.phase == "waiting for approval" and self.pending and self.deadline:
            message = (
                f"{self._change(self.pending)}: waiting for "
                f"{len(self.approvals)}/{self.config.scan.approvals} approvals until "
                f"{self.deadline:%Y-%m-%d %H:%M:%S}Z"
            )
        workflow.set_current_details(message or self.phase)

    # --- approvals ----------------------------------------------------------------------------

    def _check_vote(self, request: ApprovalRequest) -> None:
        if not request.by.strip():
            raise ApplicationError("an approval needs the approver's name", non_retryable=True)
        if self.pending is None or self.decided:
            raise ApplicationError(
                f"{self.config.policy_id}: no update is waiting for approval", non_retryable=True
            )
        if request.by in self.approvals:
            raise ApplicationError(
                f"{self.config.policy_id}: {request.by!r} already approved {self.pending.text}",
                non_retryable=True,
            )

    def _tally(self, verb: str) -> ApprovalResult:
        self._details()
        required = self.config.scan.approvals
        pending = self.pending.text if self.pending else ""
        return ApprovalResult(
            approvals=len(self.approvals),
            required=required,
            message=f"{self.config.policy_id}: {pending} {verb} "
            f"({len(self.approvals)}/{required} approvals)",
        )

    @workflow.update(name=APPROVE_UPDATE)
    def approve(self, request: ApprovalRequest) -> ApprovalResult:
        self.approvals.append(request.by)
        return self._tally("approved")

    @approve.validator
    def _validate_approve(self, request: ApprovalRequest) -> None:
        self._check_vote(request)

    @workflow.update(name=REJECT_UPDATE)
    def reject(self, request: ApprovalRequest) -> ApprovalResult:
        self.rejected_by = request.by + (f" ({request.reason})" if request.reason else "")
        return self._tally("rejected")

    @reject.validator
    def _validate_reject(self, request: ApprovalRequest) -> None:
        self._check_vote(request)

    @workflow.query(name=IMAGE_POLICY_STATUS_QUERY)
    def status(self, request: ImagePolicyStatusRequest) -> ImagePolicyStatus:
        return ImagePolicyStatus(
            policy_id=self.config.policy_id,
            phase=self.phase,
            image=self.config.scan.image,
            current=self.config.current.text,
            latest_seen=self.state.latest_seen,
            pending=self.pending.text if self.pending and not self.decided else "",
            approvals=list(self.approvals),
            required_approvals=self.config.scan.approvals,
            deadline=self.deadline,
            message=self.state.last_result,
            error=self.state.last_error,
        )
