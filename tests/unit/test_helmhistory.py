"""Helm history never traps a deployment: every history shape leads to a way forward."""

from __future__ import annotations

import pytest

from flotilla.helmhistory import (
    HistoryAction,
    HistoryDecision,
    ReleaseRevision,
    ReleaseStatus,
    decide_release_action,
)

A = HistoryAction


def rev(revision: int, status: str, deployment_id: str = "old") -> ReleaseRevision:
    return ReleaseRevision(
        revision=revision,
        status=ReleaseStatus(status),
        deployment_id=deployment_id,
        chart_version=f"0.0.0+{deployment_id}",
    )


@pytest.mark.parametrize(
    ("history", "recorded", "action", "rollback", "reason"),
    [
        ([], None, A.INSTALL, None, "no release yet"),
        (
            [],
            3,
            A.ADOPT,
            None,
            "Helm's record of revision 3 is gone; recreating the release and adopting the live "
            "objects",
        ),
        (
            [rev(1, "superseded"), rev(2, "deployed", "new")],
            2,
            A.ALREADY_DEPLOYED,
            None,
            "revision 2 already runs this version",
        ),
        (
            [rev(1, "superseded"), rev(2, "deployed")],
            2,
            A.UPGRADE,
            None,
            "upgrading from revision 2",
        ),
        (
            [rev(1, "pending-install")],
            None,
            A.ADOPT,
            None,
            "revision 1 is pending-install and none is deployed; recreating the release "
            "and adopting the live objects",
        ),
        (
            [rev(3, "deployed"), rev(4, "pending-upgrade", "other")],
            3,
            A.ROLLBACK_THEN_UPGRADE,
            3,
            "revision 4 is pending-upgrade (stuck); rolling back to deployed revision 3, "
            "then upgrading",
        ),
        (
            [rev(3, "superseded"), rev(4, "deployed"), rev(5, "pending-rollback")],
            5,
            A.ROLLBACK_THEN_UPGRADE,
            4,
            "revision 5 is pending-rollback (stuck); rolling back to deployed revision 4, "
            "then upgrading",
        ),
        (
            [rev(1, "failed"), rev(2, "pending-upgrade")],
            2,
            A.ADOPT,
            None,
            "revision 2 is pending-upgrade and none is deployed; recreating the release "
            "and adopting the live objects",
        ),
        (
            [rev(1, "failed"), rev(2, "pending-rollback")],
            None,
            A.ADOPT,
            None,
            "revision 2 is pending-rollback and none is deployed; recreating the release "
            "and adopting the live objects",
        ),
        (
            [rev(1, "deployed"), rev(2, "failed", "new")],
            2,
            A.UPGRADE,
            None,
            "revision 2 is failed; upgrading over deployed revision 1",
        ),
        (
            [rev(1, "failed", "new")],
            1,
            A.ADOPT,
            None,
            "revision 1 is failed and none is deployed; recreating the release "
            "and adopting the live objects",
        ),
        (
            [rev(1, "superseded"), rev(2, "failed"), rev(3, "failed")],
            3,
            A.ADOPT,
            None,
            "revision 3 is failed and none is deployed; recreating the release "
            "and adopting the live objects",
        ),
        (
            [rev(1, "uninstalled")],
            1,
            A.INSTALL,
            None,
            "revision 1 is uninstalled; installing again",
        ),
        (
            [rev(1, "uninstalling")],
            1,
            A.ADOPT,
            None,
            "revision 1 is uninstalling and none is deployed; recreating the release "
            "and adopting the live objects",
        ),
        (
            [rev(1, "deployed"), rev(2, "uninstalling")],
            2,
            A.ADOPT,
            None,
            "revision 2 is uninstalling (stuck); recreating the release and adopting the live "
            "objects",
        ),
        (
            [rev(1, "deployed"), rev(2, "unknown")],
            2,
            A.UPGRADE,
            None,
            "revision 2 is unknown; upgrading over deployed revision 1",
        ),
    ],
)
def test_every_history_shape_has_a_way_forward(
    history: list[ReleaseRevision],
    recorded: int | None,
    action: HistoryAction,
    rollback: int | None,
    reason: str,
) -> None:
    assert decide_release_action(history, recorded, "new") == HistoryDecision(
        action=action, reason=reason, rollback_revision=rollback
    )


@pytest.mark.parametrize(
    ("history", "action"),
    [
        ([rev(9, "superseded"), rev(10, "deployed")], A.UPGRADE),
        ([rev(9, "superseded"), rev(10, "deployed", "new")], A.ALREADY_DEPLOYED),
        ([rev(9, "deployed"), rev(10, "pending-upgrade")], A.ROLLBACK_THEN_UPGRADE),
    ],
)
def test_a_pruned_recorded_revision_never_errors(
    history: list[ReleaseRevision], action: HistoryAction
) -> None:
    decision = decide_release_action(history, 3, "new")
    assert decision.action is action
    assert decision.reason.endswith("(recorded revision 3 is no longer in the history)")


def test_a_recorded_revision_still_present_adds_no_note() -> None:
    decision = decide_release_action([rev(1, "deployed")], 1, "new")
    assert "recorded revision" not in decision.reason


def test_history_order_does_not_matter() -> None:
    history = [rev(5, "pending-upgrade"), rev(3, "superseded"), rev(4, "deployed")]
    decision = decide_release_action(history, 5, "new")
    assert (decision.action, decision.rollback_revision) == (A.ROLLBACK_THEN_UPGRADE, 4)


def test_newest_of_several_deployed_revisions_is_the_rollback_target() -> None:
    history = [rev(2, "deployed"), rev(3, "deployed"), rev(4, "pending-upgrade")]
    assert decide_release_action(history, 4, "new").rollback_revision == 3


def test_deployed_with_the_same_id_but_not_latest_still_upgrades() -> None:
    history = [rev(1, "deployed", "new"), rev(2, "failed", "other")]
    assert decide_release_action(history, 2, "new").action is A.UPGRADE


def test_a_pending_upgrade_to_the_same_version_is_continued_under_its_revision() -> None:
    # A worker killed together with its helm: the upgrade to "new" is left pending.
    history = [rev(3, "superseded"), rev(4, "deployed"), rev(5, "pending-upgrade", "new")]
    decision = decide_release_action(history, 4, "new")
    assert decision == HistoryDecision(
        action=A.CONTINUE_PENDING,
        reason="revision 5 is pending-upgrade (left by a helm that stopped); upgrading again "
        "as revision 5 over deployed revision 4",
        pending_revision=5,
    )


@pytest.mark.parametrize(
    "history",
    [
        # Another version was being upgraded to: roll back first, as before.
        [rev(4, "deployed"), rev(5, "pending-upgrade", "other")],
        # A pending rollback or install is never continued as an upgrade.
        [rev(4, "deployed", "new"), rev(5, "pending-rollback", "new")],
    ],
)
def test_other_pending_revisions_are_not_continued(history: list[ReleaseRevision]) -> None:
    assert decide_release_action(history, 4, "new").action is A.ROLLBACK_THEN_UPGRADE


def test_nothing_desired_means_no_action() -> None:
    assert decide_release_action([rev(1, "deployed")], 1, "") == HistoryDecision(
        action=A.NONE, reason="no version is desired yet"
    )


@pytest.mark.parametrize("status", [s.value for s in ReleaseStatus])
@pytest.mark.parametrize("with_deployed", [True, False])
def test_no_history_leads_to_a_dead_end(status: str, with_deployed: bool) -> None:
    history = [rev(1, "deployed")] if with_deployed else []
    history.append(rev(2, status))
    decision = decide_release_action(history, 1, "new")
    assert decision.action is not A.NONE
    assert decision.reason
    if decision.action is A.ROLLBACK_THEN_UPGRADE:
        assert decision.rollback_revision == 1


def test_statuses_parse_from_helm_history_json() -> None:
    entry = {"revision": 7, "status": "pending-upgrade", "deployment_id": "d", "chart_version": "1"}
    assert ReleaseRevision.model_validate(entry).status is ReleaseStatus.PENDING_UPGRADE
