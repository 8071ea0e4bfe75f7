"""One bundle deployment (a bundle on one cluster) as the bundle workflow tracks it: a record
and the pure transitions its events cause.

The workflow sequences activities; every change to what it knows about a cluster is one of
the transitions below, each a function from one record to the next. Versions are deployment
ids (see docs/rollout.md, "Versions"): ``staged`` is planned, ``released`` was handed to the
cluster, ``applied`` is what the cluster last applied. The Helm release reference is opaque
here (``ReleaseT``): the core only needs to know whether there is one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Generic, Protocol, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from flotilla.errors import one_line
from flotilla.objectwatch import correction_backoff
from flotilla.rollout import RolloutTarget
from flotilla.status import MAX_NON_READY, DeploymentObservation, StateWithMessage, compute_state

# How long an ErrApplied, offline or NotReady deployment waits before it is tried again.
RETRY_DELAY = timedelta(seconds=30)
# How many corrected objects a "corrected drift" line names.
_SHOWN_CORRECTED = 3

ReleaseT = TypeVar("ReleaseT")
ReleaseT_co = TypeVar("ReleaseT_co", covariant=True)


class Readiness(Protocol):
    """What a readiness watch saw (``DeploymentStatus`` of the deploy activities fits)."""

    @property
    def ready(self) -> bool: ...

    @property
    def non_ready(self) -> Sequence[str]: ...


class DriftCheck(Readiness, Protocol):
    """What a drift check saw: readiness, objects that differ, and those it re-applied."""

    @property
    def drift(self) -> Sequence[str]: ...

    @property
    def corrected(self) -> Sequence[str]: ...

    @property
    def record_missing(self) -> bool: ...


class Applied(Protocol[ReleaseT_co]):
    """What a successful deploy reports (``DeployResult`` of the deploy activities fits)."""

    @property
    def deployment_id(self) -> str: ...

    @property
    def release(self) -> ReleaseT_co: ...

    @property
    def action(self) -> str: ...

    @property
    def reason(self) -> str: ...

    @property
    def recovered(self) -> bool: ...

    @property
    def status(self) -> DriftCheck | None: ...


class Due(StrEnum):
    """What a deployment whose retry time has come needs next."""

    # Applied but not Ready yet: watch readiness again.
    WATCH = "watch"
    # Released but not applied (an error, or the cluster was offline): the rollout releases
    # it again, within its limits.
    RELEASE = "release"


class DeploymentRecord(BaseModel, Generic[ReleaseT]):
    """The bundle on one cluster: what is staged, released to it and applied, and how it is.

    Field names are those of the records in running workflows' state: renaming one would
    lose it on continue-as-new.
    """

    model_config = ConfigDict(frozen=True)

    cluster: str
    staged: str = ""
    options_digest: str = ""
    released: str = ""
    released_options_digest: str = ""
    applied: str = ""
    release: ReleaseT | None = None
    ready: bool = False
    non_ready: list[str] = Field(default_factory=list)
    error: str = ""
    retry_at: datetime | None = None
    keep_resources: bool = False
    delete_namespace: bool = False
    # What the last deploy did to the Helm release, and why (history recovery included).
    last_action: str = ""
    # Live objects that differ from the release (Modified), from the last drift check.
    drift: list[str] = Field(default_factory=list)
    # Drift corrections in a row without a clean check between them, and when the last one
    # was: another writer changing the objects in a loop is corrected ever less often.
    corrections: int = 0
    corrected_at: datetime | None = None

    # --- transitions --------------------------------------------------------------------------

    def stage(
        self,
        deployment_id: str,
        options_digest: str,
        *,
        keep_resources: bool = False,
        delete_namespace: bool = False,
    ) -> Self:
        """The plan names the version this cluster should run next, and how to remove it."""
        return self.model_copy(
            update={
                "staged": deployment_id,
                "options_digest": options_digest,
                "keep_resources": keep_resources,
                "delete_namespace": delete_namespace,
            }
        )

    def release_staged(self) -> Self:
        """The rollout moves this cluster: the staged version is released to it, and the
        deployment is not Ready until a watch says so."""
        return self.model_copy(
            update={
                "released": self.staged,
                "released_options_digest": self.options_digest,
                "ready": False,
            }
        )

    def apply_succeeded(self, result: Applied[ReleaseT]) -> Self:
        """The deploy applied ``result.deployment_id``; readiness (and drift) as far as it
        watched, so a deploy that restored drifted objects clears Modified at once.

        Not Ready afterwards means a readiness watch should follow at once.
        """
        action = f"{result.action}: {result.reason}" + (" (recovered)" if result.recovered else "")
        record = self.model_copy(
            update={
                "release": result.release,
                "applied": result.deployment_id,
                "error": "",
                "last_action": one_line(action),
            }
        )
        return record if result.status is None else record._saw(result.status)

    def observed(self, status: DriftCheck, now: datetime, delay: timedelta = RETRY_DELAY) -> Self:
        """A readiness watch ended: Ready, or NotReady and watched again after ``delay``."""
        record = self._saw(status)
        if status.ready:
            return record
        return record.model_copy(update={"retry_at": now + delay})

    def checked(self, status: DriftCheck, now: datetime | None = None) -> Self:
        """A drift check of a settled deployment: readiness, drift, and what it corrected.

        Helm's record of the release gone (or without a deployed revision) is drift too: the
        version counts as never released, so the rollout deploys it again at once, which
        adopts the live objects (``flotilla.helmhistory``).
        """
        if status.record_missing:
            return self.model_copy(
                update={
                    "released": "",
                    "applied": "",
                    "ready": False,
                    "drift": list(status.drift[:MAX_NON_READY]),
                    "last_action": "Helm's record of the release is missing: deploying again",
                }
            )
        update: dict[str, object] = {
            "ready": status.ready,
            "non_ready": list(status.non_ready[:MAX_NON_READY]),
            "drift": list(status.drift[:MAX_NON_READY]),
        }
        if not status.ready and now is not None:
            # Watch readiness at once: its end (a full check) shows the drift too, where a
            # change of status alone would bring no new check (a scale-up's new pods).
            update["retry_at"] = now
        if status.corrected:
            corrected = ", ".join(status.corrected[:_SHOWN_CORRECTED])
            in_a_row = self._corrections_before(now) + 1
            action = f"corrected drift: {corrected}"
            if in_a_row > 1:
                wait = correction_backoff(in_a_row)
                action += (
                    f" ({in_a_row} times in a row: something else keeps changing it; "
                    f"next correction after {int(wait.total_seconds())}s)"
                )
            update.update(last_action=one_line(action), corrections=in_a_row, corrected_at=now)
        elif not status.drift:
            update["corrections"] = 0
        elif self.corrected_at is not None and now is not None and not self.may_correct(now):
            due = self.corrected_at + correction_backoff(self.corrections)
            update["last_action"] = one_line(
                f"drift correction backed off after {self.corrections} in a row: next one "
                f"not before {due:%H:%M:%S} UTC"
            )
        return self.model_copy(update=update)

    def _corrections_before(self, now: datetime | None) -> int:
        """Corrections in a row so far; a quiet spell of twice the back-off ends the row."""
        if self.corrected_at is None or now is None:
            return self.corrections
        quiet = now - self.corrected_at
        return self.corrections if quiet <= 2 * correction_backoff(self.corrections) else 0

    def may_correct(self, now: datetime) -> bool:
        """Whether a drift check at ``now`` may correct drift, or must wait out the back-off
        (``flotilla.objectwatch.correction_backoff``) of the corrections in a row so far."""
        if self.corrected_at is None:
            return True
        return now >= self.corrected_at + correction_backoff(self.corrections)

    def failed(self, error: str, now: datetime, delay: timedelta = RETRY_DELAY) -> Self:
        """A deploy, watch or check failed (or found the cluster offline): ErrApplied with
        ``error`` while the released version is not applied, tried again after ``delay``."""
        return self.model_copy(update={"error": one_line(error), "retry_at": now + delay})

    def due(self, now: datetime) -> tuple[Self, Due | None]:
        """The record once its retry time is checked at ``now``, and what is due, if anything."""
        if self.retry_at is None or self.retry_at > now:
            return self, None
        if self.applied == self.released:
            return self.model_copy(update={"retry_at": None}), Due.WATCH
        # Back to what runs there, so the rollout releases the staged version again.
        return self.model_copy(update={"retry_at": None, "released": self.applied}), Due.RELEASE

    def _saw(self, status: DriftCheck) -> Self:
        return self.model_copy(
            update={
                "ready": status.ready,
                "error": "",
                "non_ready": list(status.non_ready[:MAX_NON_READY]),
                "drift": list(status.drift[:MAX_NON_READY]),
            }
        )

    # --- what the record says -----------------------------------------------------------------

    @property
    def settled(self) -> bool:
        """The staged version is released and applied: nothing is left to roll out here."""
        return bool(self.staged) and self.staged == self.released == self.applied

    @property
    def monitored(self) -> bool:
        """Settled with a Helm release on the cluster, so a drift check has something to look at."""
        return self.settled and self.release is not None

    def rollout_target(
        self, *, labels: dict[str, str], paused: bool, blocked: bool, offline: bool = False
    ) -> RolloutTarget:
        """The cluster as ``plan_rollout`` sees it; an offline cluster counts as unavailable
        (not Ready), as in Fleet."""
        return RolloutTarget(
            cluster=self.cluster,
            labels=labels,
            staged=self.staged,
            released=self.released or None,
            applied=self.applied or None,
            ready=self.ready and not offline,
            paused=paused,
            blocked=blocked,
        )

    def state(
        self, *, paused: bool, waiting_for: Sequence[str], offline: str = "", held_by: str = ""
    ) -> StateWithMessage:
        """The deployment's state and message, by Fleet's rules (``flotilla.status``).

        A dependency wait matters only while the staged version is not released yet; drift
        only once the deployment is settled.
        """
        return compute_state(
            DeploymentObservation(
                staged=self.staged,
                released=self.released,
                applied=self.applied,
                apply_error=self.error,
                ready=self.ready,
                non_ready=self.non_ready,
                drift=self.drift if self.settled else [],
                paused=paused,
                waiting_for=list(waiting_for) if self.released != self.staged else [],
                offline=offline,
                held_by=held_by,
            )
        )
