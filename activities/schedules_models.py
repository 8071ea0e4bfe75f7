"""Names and models of the image-policy schedule activities: pydantic only, for workflows too."""

from __future__ import annotations

from pydantic import BaseModel, Field

from activities.gitops_models import BundleRef, GitSource
from flotilla.imagepolicy import ImageScan
from flotilla.models import CommitSpec, GitRepoSpec
from flotilla.schedule import PollSchedule

# Activity names, as the worker registers them (activities/schedules.py) and the GitRepo and
# image-policy workflows call them.
SYNC_IMAGE_SCHEDULES = "sync_image_schedules"
RECORD_POLICY_STATE = "record_policy_state"
REQUEST_GITREPO_SYNC = "request_gitrepo_sync"


class ImageVersion(BaseModel):
    """A tag and, when known, the digest it pointed to."""

    tag: str
    digest: str | None = None

    @property
    def text(self) -> str:
        return self.tag + (f"@{self.digest}" if self.digest else "")


class ImagePolicyConfig(BaseModel):
    """What a schedule's runs need: the scan, where its markers are and what they say now."""

    policy_id: str
    namespace: str
    gitrepo: str
    bundle: str
    scan: ImageScan
    gitrepo_workflow_id: str
    source: GitSource
    commit_spec: CommitSpec | None = None
    # The commit the current values were read from, and the files holding the markers.
    commit: str
    files: list[str]
    current: ImageVersion
    # When the schedule polls (the scan's own, or the GitRepo's imageScanInterval). Compared
    # here rather than in the schedule, which the server rewrites (cron -> calendar specs).
    schedule: PollSchedule
    # A ``NAME:digest`` marker exists, so the digest of a chosen tag must be written too.
    wants_digest: bool = False
    # The namespace has a notification config (the GitRepo's registry snapshot says): runs
    # signal their events to it. False: no signal, which would fail. True when a schedule
    # written before this field existed is read.
    notify: bool = True


class ImagePolicyState(BaseModel):
    """What one run leaves for the next (kept in the schedule's action arguments)."""

    latest_seen: str = ""
    # Committed by a run; the schedule's ``current`` catches up when the GitRepo reads it.
    applied: ImageVersion | None = None
    # Rejected or expired: not proposed again until a newer image appears.
    declined: ImageVersion | None = None
    declined_reason: str = ""
    last_result: str = ""
    last_error: str = ""


class ImagePolicyInput(BaseModel):
    config: ImagePolicyConfig
    state: ImagePolicyState = Field(default_factory=ImagePolicyState)


class SyncSchedulesRequest(BaseModel):
    """The GitRepo as read at ``commit``; an empty ``bundles`` list removes every schedule."""

    namespace: str
    gitrepo: str
    gitrepo_workflow_id: str
    spec: GitRepoSpec
    commit: str = ""
    bundles: list[BundleRef] = Field(default_factory=list)
    task_queue: str
    # Why the workspace's restrictions refuse the GitRepo: every schedule is paused with it as
    # the note (and resumed by a sync without it), so a Restricted GitRepo scans no registry
    # and commits nothing.
    restricted: str = ""
    # Whether the namespace has a notification config (ImagePolicyConfig.notify).
    notifications: bool = True


class SyncSchedulesResult(BaseModel):
    created: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    deleted: list[str] = Field(default_factory=list)
    unchanged: int = 0
    # One line per scan that cannot be scheduled (bad entry, no markers).
    warnings: list[str] = Field(default_factory=list)


class RecordStateRequest(BaseModel):
    policy_id: str
    state: ImagePolicyState


class RecordStateResult(BaseModel):
    recorded: bool


class GitRepoSyncRequest(BaseModel):
    workflow_id: str


class GitRepoSyncResult(BaseModel):
    requested: bool
    message: str = ""
