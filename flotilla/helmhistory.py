"""Decide how to move a Helm release to a new version whatever its history looks like."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class ReleaseStatus(StrEnum):
    """The status Helm records on each revision of a release."""

    DEPLOYED = "deployed"
    SUPERSEDED = "superseded"
    FAILED = "failed"
    PENDING_INSTALL = "pending-install"
    PENDING_UPGRADE = "pending-upgrade"
    PENDING_ROLLBACK = "pending-rollback"
    UNINSTALLING = "uninstalling"
    UNINSTALLED = "uninstalled"
    UNKNOWN = "unknown"


class ReleaseRevision(BaseModel):
    """One revision of a release, with the deployment id flotilla labelled it with."""

    model_config = ConfigDict(frozen=True)

    revision: int
    status: ReleaseStatus
    deployment_id: str = ""
    chart_version: str = ""


class HistoryAction(StrEnum):
    """What the deploy activity must do to the release."""

    NONE = "none"
    INSTALL = "install"
    UPGRADE = "upgrade"
    ROLLBACK_THEN_UPGRADE = "rollback-then-upgrade"
    # Helm's record is missing or unusable (no deployed revision): drop what is left of it and
    # install again, taking over the live objects in place (same uids, pods keep running).
    ADOPT = "adopt-live-objects"
    # Never decided any more (it took the workload down); kept so that deploy results in
    # running workflows' histories still parse.
    UNINSTALL_THEN_INSTALL = "uninstall-then-install"
    ALREADY_DEPLOYED = "already-deployed"
    # The newest revision is an upgrade to this very version that a killed helm left pending:
    # its record goes and the upgrade runs again under the same revision number, so a crash
    # mid-deploy leaves no extra revisions (a rollback first would add two).
    CONTINUE_PENDING = "continue-pending-upgrade"


class HistoryDecision(BaseModel):
    """The action, the revision to roll back to (for rollback-then-upgrade), and why."""

    model_config = ConfigDict(frozen=True)

    action: HistoryAction
    reason: str
    rollback_revision: int | None = None
    # For continue-pending-upgrade: the stuck revision whose record is replaced.
    pending_revision: int | None = None


_PENDING = (
    ReleaseStatus.PENDING_INSTALL,
    ReleaseStatus.PENDING_UPGRADE,
    ReleaseStatus.PENDING_ROLLBACK,
)


def _last_deployed(history: list[ReleaseRevision]) -> ReleaseRevision | None:
    # Helm can leave several revisions marked deployed after a crash; the newest one counts.
    deployed = [r for r in history if r.status is ReleaseStatus.DEPLOYED]
    return max(deployed, key=lambda r: r.revision, default=None)


def _pruned_note(history: list[ReleaseRevision], recorded_revision: int | None) -> str:
    if recorded_revision is None or any(r.revision == recorded_revision for r in history):
        return ""
    return f" (recorded revision {recorded_revision} is no longer in the history)"


def decide_release_action(
    history: list[ReleaseRevision],
    recorded_revision: int | None,
    released: str,
) -> HistoryDecision:
    """Return the action that brings the release to the ``released`` version, never a dead end.

    ``recorded_revision`` is the revision flotilla last recorded for the release; when
    maxHistory has pruned it, the decision simply starts from the current latest revision.
    """
    if not released:
        return HistoryDecision(action=HistoryAction.NONE, reason="no version is desired yet")
    if not history:
        if recorded_revision:
            # flotilla installed it before: the record was deleted, the objects may still run.
            return HistoryDecision(
                action=HistoryAction.ADOPT,
                reason=(
                    f"Helm's record of revision {recorded_revision} is gone; recreating the "
                    "release and adopting the live objects"
                ),
            )
        return HistoryDecision(action=HistoryAction.INSTALL, reason="no release yet")
    latest = max(history, key=lambda r: r.revision)
    deployed = _last_deployed(history)
    note = _pruned_note(history, recorded_revision)
    where = f"revision {latest.revision} is {latest.status.value}"

    if latest.status is ReleaseStatus.UNINSTALLED:
        return HistoryDecision(
            action=HistoryAction.INSTALL, reason=f"{where}; installing again{note}"
        )
    if latest.status is ReleaseStatus.DEPLOYED:
        if latest.deployment_id == released:
            return HistoryDecision(
                action=HistoryAction.ALREADY_DEPLOYED,
                reason=f"revision {latest.revision} already runs this version{note}",
            )
        return HistoryDecision(
            action=HistoryAction.UPGRADE, reason=f"upgrading from revision {latest.revision}{note}"
        )
    if deployed is None:
        # Helm refuses to upgrade a release with no deployed revision, and a rollback needs
        # a target: a new record is the way forward. Uninstalling would delete the workload.
        return HistoryDecision(
            action=HistoryAction.ADOPT,
            reason=(
                f"{where} and none is deployed; recreating the release and adopting the live "
                f"objects{note}"
            ),
        )
    if latest.status is ReleaseStatus.PENDING_UPGRADE and latest.deployment_id == released:
        return HistoryDecision(
            action=HistoryAction.CONTINUE_PENDING,
            reason=(
                f"{where} (left by a helm that stopped); upgrading again as revision "
                f"{latest.revision} over deployed revision {deployed.revision}{note}"
            ),
            pending_revision=latest.revision,
        )
    if latest.status in _PENDING:
        # A pending revision blocks every later operation; flotilla is the release's only
        # writer and runs one operation at a time, so a pending revision it sees is stuck.
        return HistoryDecision(
            action=HistoryAction.ROLLBACK_THEN_UPGRADE,
            reason=(
                f"{where} (stuck); rolling back to deployed revision {deployed.revision}, "
                f"then upgrading{note}"
            ),
            rollback_revision=deployed.revision,
        )
    if latest.status is ReleaseStatus.UNINSTALLING:
        return HistoryDecision(
            action=HistoryAction.ADOPT,
            reason=(f"{where} (stuck); recreating the release and adopting the live objects{note}"),
        )
    # failed, superseded or unknown on top of a deployed revision: Helm upgrades from there.
    return HistoryDecision(
        action=HistoryAction.UPGRADE,
        reason=f"{where}; upgrading over deployed revision {deployed.revision}{note}",
    )
