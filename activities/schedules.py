"""Image-policy schedules: one Temporal Schedule per ``imageScans`` entry of a GitRepo's bundles.

``sync_image_schedules`` is called by the GitRepo workflow after it reads a commit (and when
the GitRepo is paused, resumed or deleted). It reads each bundle's scans from the content
store and the markers' current values from the commit, then creates, updates and deletes the
schedules whose ids start with ``imagepolicy/<namespace>/<gitrepo>/``.

State that must outlive one poll (the newest image seen, what was committed, an update that
was rejected or expired, the last error) is kept in the schedule itself, as the ``state`` half
of the workflow input the schedule passes to every run. A run records a changed state with
``record_policy_state``; both writers send the schedule's conflict token, so a sync and a
recording never overwrite each other.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import git
from pydantic import BaseModel
from temporalio import activity
from temporalio.api.schedule.v1 import Schedule as ScheduleProto
from temporalio.api.workflowservice.v1 import UpdateScheduleRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    WorkflowUpdateStage,
)
from temporalio.service import RPCError, RPCStatusCode

from activities.content import ContentStore
from activities.failures import to_application_error
from activities.gitops import GitOpsActivities
from activities.gitops_models import BundleRef, GitSource
from activities.gitrun import run_git
from activities.schedules_models import (
    RECORD_POLICY_STATE,
    REQUEST_GITREPO_SYNC,
    SYNC_IMAGE_SCHEDULES,
    GitRepoSyncRequest,
    GitRepoSyncResult,
    ImagePolicyConfig,
    ImagePolicyInput,
    ImageVersion,
    RecordStateRequest,
    RecordStateResult,
    SyncSchedulesRequest,
    SyncSchedulesResult,
)
from flotilla.errors import CONFLICT, FlotillaError
from flotilla.imagepolicy import ImageScan, parse_image_scans
from flotilla.markers import read_markers
from flotilla.models import GitRepoSpec
from flotilla.schedule import PollSchedule, parse_poll_schedule

POLICY_WORKFLOW = "ImagePolicyWorkflow"
# A worker outage should not end in a burst of make-up polls: one late poll is enough.
CATCHUP_WINDOW = timedelta(minutes=1)
MAX_CONFLICT_RETRIES = 5
JITTER_FRACTION = 0.1
MAX_JITTER = timedelta(minutes=5)
CRON_JITTER = timedelta(seconds=30)
_MAX_FILE_BYTES = 1 << 20
FLEET_YAML = "fleet.yaml"


def image_policy_prefix(namespace: str, gitrepo: str) -> str:
    return f"imagepolicy/{namespace}/{gitrepo}/"


def image_policy_id(namespace: str, gitrepo: str, bundle: str, scan: str) -> str:
    """The schedule id, also the id (plus Temporal's timestamp) of every run it starts."""
    return f"{image_policy_prefix(namespace, gitrepo)}{bundle}/{scan}"


def _bundle_files(checkout: Path, bundle_path: str) -> dict[str, str]:
    """Text files of one bundle directory (repo-relative path -> text), nested bundles left out."""
    root = checkout if bundle_path in ("", ".") else checkout / bundle_path
    found: dict[str, str] = {}
    for current, dirs, files in os.walk(root):
        here = Path(current)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and not (here / d / FLEET_YAML).is_file()
        )
        for name in sorted(files):
            path = here / name
            if path.is_symlink() or path.stat().st_size > _MAX_FILE_BYTES:
                continue
            try:
                found[path.relative_to(checkout).as_posix()] = path.read_text("utf-8")
            except UnicodeDecodeError:
                continue
    return found


def _poll_schedule(scan_raw: dict[str, object], scan: ImageScan, spec: GitRepoSpec) -> PollSchedule:
    """The scan's own schedule; without one, the GitRepo's ``imageScanInterval`` if set."""
    if "interval" in scan_raw or "pollSchedule" in scan_raw or not spec.image_scan_interval:
        return scan.schedule
    return parse_poll_schedule(f"@every {spec.image_scan_interval}", field="imageScanInterval")


def schedule_spec(schedule: PollSchedule) -> ScheduleSpec:
    """Interval or cron, with jitter: schedules fire on epoch-aligned instants, and a fleet of
    scans polling one registry in the same second looks like an attack to its rate limiter."""
    if schedule.interval_seconds is not None:
        jitter = min(schedule.interval_seconds * JITTER_FRACTION, MAX_JITTER.total_seconds())
        return ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=schedule.interval_seconds))],
            jitter=timedelta(seconds=jitter),
        )
    return ScheduleSpec(cron_expressions=[schedule.cron or ""], jitter=CRON_JITTER)


def _pause_note(request: SyncSchedulesRequest, scan: ImageScan) -> str:
    spec = request.spec
    if request.restricted:
        return request.restricted
    if spec.paused:
        return "gitrepo paused"
    if scan.suspend:
        return "imageScans suspend: true"
    return ""


# ---------------------------------------------------------------------------------------------
# Activities
# ---------------------------------------------------------------------------------------------


class _Desired(BaseModel):
    config: ImagePolicyConfig
    note: str


def _configs(
    request: SyncSchedulesRequest,
    ref: BundleRef,
    pairs: list[tuple[dict[str, object], ImageScan]],
    files: dict[str, str],
) -> tuple[dict[str, _Desired], list[str]]:
    """The desired schedule of each scan of one bundle, and a warning per scan left out."""
    desired: dict[str, _Desired] = {}
    warnings: list[str] = []
    bundle_dir = "" if ref.path in ("", ".") else ref.path.rstrip("/") + "/"
    mine = {p: t for p, t in files.items() if p.startswith(bundle_dir)}
    for raw, scan in pairs:
        current: ImageVersion | None = None
        wants_digest = False
        holders: list[str] = []
        for path, text in sorted(mine.items()):
            marked = read_markers(text, scan.tag_name)
            if marked.tag is None and not marked.wants_digest:
                continue
            holders.append(path)
            if current is None and marked.tag is not None:
                current = ImageVersion(tag=marked.tag, digest=marked.digest)
            wants_digest = wants_digest or marked.wants_digest
        if current is None:
            warnings.append(
                f"{ref.path}/{FLEET_YAML}: imageScans {scan.tag_name!r}: no "
                f'# {{"$imagescan": "{scan.tag_name}"}} marker in the bundle, not scheduled'
            )
            continue
        policy_id = image_policy_id(request.namespace, request.gitrepo, ref.name, scan.tag_name)
        try:
            schedule = _poll_schedule(raw, scan, request.spec)
        except FlotillaError as err:
            warnings.append(str(err))
            continue
        config = ImagePolicyConfig(
            policy_id=policy_id,
            namespace=request.namespace,
            gitrepo=request.gitrepo,
            bundle=ref.name,
            scan=scan,
            gitrepo_workflow_id=request.gitrepo_workflow_id,
            source=GitSource.from_spec(request.spec, request.namespace),
            commit_spec=request.spec.image_scan_commit,
            commit=request.commit,
            files=holders,
            current=current,
            schedule=schedule,
            wants_digest=wants_digest,
            notify=request.notifications,
        )
        desired[policy_id] = _Desired(config=config, note=_pause_note(request, scan))
    return desired, warnings


class ScheduleActivities:
    """Activities that manage image-policy schedules and poke GitRepo workflows."""

    def __init__(self, client: Client, content: ContentStore, gitops: GitOpsActivities) -> None:
        self.client = client
        self.content = content
        self.gitops = gitops

    @activity.defn(name=SYNC_IMAGE_SCHEDULES)
    async def sync_image_schedules(self, request: SyncSchedulesRequest) -> SyncSchedulesResult:
        """Make the schedules under the GitRepo's prefix match the scans of its bundles."""
        result = SyncSchedulesResult()
        prefix = image_policy_prefix(request.namespace, request.gitrepo)
        existing = await self._existing(prefix)
        desired: dict[str, _Desired] = {}
        keep: set[str] = set()
        scanned: list[tuple[BundleRef, list[tuple[dict[str, object], ImageScan]]]] = []
        for ref in request.bundles:
            bundle_prefix = f"{prefix}{ref.name}/"
            if not ref.digest:
                # An unreadable bundle keeps its schedules until a good commit replaces them.
                keep.update(i for i in existing if i.startswith(bundle_prefix))
                continue
            bundle = self.content.get_bundle(ref.digest)
            raw = bundle.options.image_scans or []
            if not raw:
                continue
            try:
                scans = parse_image_scans(raw, file=f"{ref.path}/{FLEET_YAML}")
            except FlotillaError as err:
                result.warnings.append(str(err))
                keep.update(i for i in existing if i.startswith(bundle_prefix))
                continue
            scanned.append((ref, list(zip(raw, scans, strict=True))))
        if scanned:
            files = await asyncio.to_thread(
                self._read_commit, request, [ref.path for ref, _ in scanned]
            )
            for ref, pairs in scanned:
                found, warnings = _configs(request, ref, pairs, files)
                desired.update(found)
                result.warnings.extend(warnings)
        for policy_id, wanted in sorted(desired.items()):
            activity.heartbeat(policy_id)
            outcome = await self._apply(policy_id, wanted, request.task_queue)
            if outcome == "created":
                result.created.append(policy_id)
            elif outcome == "updated":
                result.updated.append(policy_id)
            else:
                result.unchanged += 1
        for policy_id in sorted(set(existing) - set(desired) - keep):
            try:
                await self.client.get_schedule_handle(policy_id).delete()
                result.deleted.append(policy_id)
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
        activity.logger.info(
            "gitrepo %s/%s: image schedules at %s: %d created, %d updated, %d deleted, %d same",
            request.namespace,
            request.gitrepo,
            request.commit[:12] or "-",
            len(result.created),
            len(result.updated),
            len(result.deleted),
            result.unchanged,
        )
        return result

    def _read_commit(self, request: SyncSchedulesRequest, paths: list[str]) -> dict[str, str]:
        """Shallow-fetch the commit and return the text files of the bundles with scans."""
        source = GitSource.from_spec(request.spec, request.namespace)
        self.gitops.workdir.mkdir(parents=True, exist_ok=True)
        checkout = Path(tempfile.mkdtemp(prefix="scans-", dir=self.gitops.workdir))
        try:
            with self.gitops.git_env(source) as env:
                repo = git.Repo.init(checkout)
                try:
                    run_git(
                        [
                            "git",
                            "fetch",
                            "--depth",
                            "1",
                            source.repo,
                            request.commit or source.branch,
                        ],
                        env=env,
                        cwd=repo.working_dir,
                        timeout=300,
                    )
                    repo.git.execute(["git", "checkout", "-q", "FETCH_HEAD"])
                except git.GitCommandError as err:
                    raise self.gitops.git_error(source, "fetch for image scans", err) from None
            files: dict[str, str] = {}
            for path in paths:
                files.update(_bundle_files(checkout, path))
            return files
        finally:
            shutil.rmtree(checkout, ignore_errors=True)

    async def _existing(self, prefix: str) -> list[str]:
        ids = []
        async for entry in await self.client.list_schedules():
            if entry.id.startswith(prefix):
                ids.append(entry.id)
        return ids

    async def _apply(self, policy_id: str, wanted: _Desired, task_queue: str) -> str:
        """Create the schedule, or update it when its config, timing or pause changed."""
        handle = self.client.get_schedule_handle(policy_id)
        spec = schedule_spec(wanted.config.schedule)
        paused = bool(wanted.note)
        try:
            await self.client.create_schedule(
                policy_id,
                Schedule(
                    action=ScheduleActionStartWorkflow(
                        POLICY_WORKFLOW,
                        ImagePolicyInput(config=wanted.config),
                        id=policy_id,
                        task_queue=task_queue,
                        static_summary=f"image policy {policy_id.split('/', 1)[1]}",
                    ),
                    spec=spec,
                    policy=SchedulePolicy(
                        overlap=ScheduleOverlapPolicy.SKIP, catchup_window=CATCHUP_WINDOW
                    ),
                    state=ScheduleState(paused=paused, note=wanted.note or None),
                ),
            )
            return "created"
        except ScheduleAlreadyRunningError:
            pass
        spec_proto = spec._to_proto()
        changed = False

        def mutate(current: ImagePolicyInput, proto: ScheduleProto) -> ImagePolicyInput | None:
            nonlocal changed
            # A new commit alone is no reason to rewrite every schedule.
            same = (
                current.config.model_copy(update={"commit": ""})
                == wanted.config.model_copy(update={"commit": ""})
                and proto.state.paused == paused
                and proto.action.start_workflow.task_queue.name == task_queue
            )
            if same:
                return None
            changed = True
            proto.spec.CopyFrom(spec_proto)
            proto.state.paused = paused
            proto.state.notes = wanted.note
            proto.action.start_workflow.task_queue.name = task_queue
            return ImagePolicyInput(config=wanted.config, state=current.state)

        await self._update_input(handle.id, mutate)
        return "updated" if changed else "unchanged"

    async def _update_input(
        self,
        policy_id: str,
        mutate: Callable[[ImagePolicyInput, ScheduleProto], ImagePolicyInput | None],
    ) -> bool:
        """Read-modify-write of a schedule with its conflict token, retried on a conflict.

        The SDK's ``ScheduleHandle.update`` does not send the token, so the request is built
        here from the raw description."""
        handle = self.client.get_schedule_handle(policy_id)
        converter = self.client.data_converter
        for _ in range(MAX_CONFLICT_RETRIES):
            description = await handle.describe()
            raw = description.raw_description
            proto = ScheduleProto()
            proto.CopyFrom(raw.schedule)
            payloads = list(proto.action.start_workflow.input.payloads)
            [current] = await converter.decode(payloads, [ImagePolicyInput])
            updated = mutate(current, proto)
            if updated is None:
                return False
            encoded = await converter.encode([updated])
            del proto.action.start_workflow.input.payloads[:]
            proto.action.start_workflow.input.payloads.extend(encoded)
            try:
                await self.client.workflow_service.update_schedule(
                    UpdateScheduleRequest(
                        namespace=self.client.namespace,
                        schedule_id=policy_id,
                        schedule=proto,
                        conflict_token=raw.conflict_token,
                        identity=self.client.identity,
                    ),
                    retry=True,
                )
                return True
            except RPCError as err:
                if err.status not in (RPCStatusCode.FAILED_PRECONDITION, RPCStatusCode.ABORTED):
                    raise
                activity.logger.info("schedule %s changed meanwhile, retrying: %s", policy_id, err)
        raise to_application_error(
            FlotillaError(
                f"schedule {policy_id}: kept changing, update not applied",
                type=CONFLICT,
                retryable=True,
            )
        )

    @activity.defn(name=RECORD_POLICY_STATE)
    async def record_policy_state(self, request: RecordStateRequest) -> RecordStateResult:
        """Store a run's state in its schedule for the next run; the config is left alone."""

        def mutate(current: ImagePolicyInput, proto: ScheduleProto) -> ImagePolicyInput | None:
            if current.state == request.state:
                return None
            return ImagePolicyInput(config=current.config, state=request.state)

        try:
            recorded = await self._update_input(request.policy_id, mutate)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            # Started by hand, or the scan was removed meanwhile: nothing to keep it in.
            recorded = False
        return RecordStateResult(recorded=recorded)

    @activity.defn(name=REQUEST_GITREPO_SYNC)
    async def request_gitrepo_sync(self, request: GitRepoSyncRequest) -> GitRepoSyncResult:
        """Ask the GitRepo workflow to poll now (its ``sync_now`` update, accepted not awaited)."""
        handle = self.client.get_workflow_handle(request.workflow_id)
        try:
            await handle.start_update("sync_now", {}, wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return GitRepoSyncResult(
                requested=False, message=f"gitrepo workflow {request.workflow_id} is not running"
            )
        return GitRepoSyncResult(requested=True)
