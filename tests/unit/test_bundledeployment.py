"""The bundle workflow's per-cluster state machine: record in, event, record out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flotilla.bundledeployment import RETRY_DELAY, DeploymentRecord, Due
from flotilla.errors import MAX_MESSAGE
from flotilla.status import BundleState

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
LATER = NOW + RETRY_DELAY
Record = DeploymentRecord[str]


@dataclass(frozen=True)
class Seen:
    """A readiness watch's or drift check's result."""

    ready: bool = True
    non_ready: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    corrected: list[str] = field(default_factory=list)
    record_missing: bool = False


@dataclass(frozen=True)
class Deployed:
    """A successful deploy's result."""

    deployment_id: str = "v2"
    release: str = "shop/web#2"
    action: str = "upgrade"
    reason: str = "upgrading from revision 1"
    recovered: bool = False
    status: Seen | None = None


def record(**fields: Any) -> Record:
    """Settled and Ready at v1 (revision 1), with fields overridden."""
    base: dict[str, Any] = {
        "cluster": "edge-1",
        "staged": "v1",
        "options_digest": "o1",
        "released": "v1",
        "released_options_digest": "o1",
        "applied": "v1",
        "release": "shop/web#1",
        "ready": True,
    }
    return Record(**{**base, **fields})


# A deployment whose deploy failed: v2 released, v1 still applied.
FAILED = record(staged="v2", released="v2", error="boom", retry_at=NOW)
# A deployment applied but not Ready, watched again at NOW.
NOT_READY = record(ready=False, non_ready=["Deployment/shop/web: 0/1"], retry_at=NOW)
TEN = [f"obj{i}" for i in range(12)]


@pytest.mark.parametrize(
    ("before", "event", "after"),
    [
        # a new plan stages a version and how removal must treat it; nothing else moves
        (
            record(),
            lambda r: r.stage("v2", "o2", keep_resources=True, delete_namespace=True),
            record(staged="v2", options_digest="o2", keep_resources=True, delete_namespace=True),
        ),
        (
            Record(cluster="edge-1"),
            lambda r: r.stage("v1", "o1"),
            Record(cluster="edge-1", staged="v1", options_digest="o1"),
        ),
        # the rollout releases the staged version with its options: not Ready until watched
        (
            record(staged="v2", options_digest="o2"),
            lambda r: r.release_staged(),
            record(
                staged="v2",
                options_digest="o2",
                released="v2",
                released_options_digest="o2",
                ready=False,
            ),
        ),
        # a retried deploy releases again and keeps its pending retry time
        (
            FAILED,
            lambda r: r.release_staged(),
            FAILED.model_copy(update={"ready": False}),
        ),
    ],
    ids=["stage", "stage-new", "release", "release-again"],
)
def test_planning_and_release(
    before: Record, event: Callable[[Record], Record], after: Record
) -> None:
    assert event(before) == after


# v2 released, then applied by Deployed() without a readiness watch.
APPLIED = record(
    staged="v2",
    released="v2",
    applied="v2",
    release="shop/web#2",
    ready=False,
    last_action="upgrade: upgrading from revision 1",
)


@pytest.mark.parametrize(
    ("before", "result", "after"),
    [
        # applied, no readiness watched: not Ready yet, a watch follows
        (record(staged="v2", released="v2", ready=False), Deployed(), APPLIED),
        # applied and Ready within the deploy's own watch; an old error is cleared
        (
            record(staged="v2", released="v2", ready=False, error="boom"),
            Deployed(status=Seen(ready=True)),
            APPLIED.model_copy(update={"ready": True}),
        ),
        # applied, not Ready within the grace: what is not ready, at most ten
        (
            record(staged="v2", released="v2", ready=False),
            Deployed(status=Seen(ready=False, non_ready=TEN)),
            APPLIED.model_copy(update={"non_ready": TEN[:10]}),
        ),
        # a history recovery says so; a retry time from an earlier failure stays
        (
            FAILED,
            Deployed(action="rollback-then-upgrade", reason="stuck", recovered=True),
            FAILED.model_copy(
                update={
                    "applied": "v2",
                    "release": "shop/web#2",
                    "error": "",
                    "last_action": "rollback-then-upgrade: stuck (recovered)",
                }
            ),
        ),
        # a deploy that restored drifted objects clears Modified in the same step
        (
            record(staged="v2", released="v2", drift=["Deployment/shop/web: differs"]),
            Deployed(status=Seen(ready=True)),
            APPLIED.model_copy(update={"ready": True}),
        ),
        # ... and one that could not keeps showing what still differs
        (
            record(staged="v2", released="v2", drift=["a", "b"]),
            Deployed(status=Seen(ready=True, drift=["b"])),
            APPLIED.model_copy(update={"ready": True, "drift": ["b"]}),
        ),
    ],
    ids=[
        "applied",
        "applied-ready",
        "applied-not-ready",
        "recovered",
        "restored-drift",
        "drift-left",
    ],
)
def test_apply_succeeded(before: Record, result: Deployed, after: Record) -> None:
    assert before.apply_succeeded(result) == after


@pytest.mark.parametrize(
    ("before", "status", "after"),
    [
        (record(ready=False), Seen(ready=True), record()),
        (record(ready=False, error="boom"), Seen(ready=True), record()),
        # NotReady re-arms the watch after RETRY_DELAY
        (
            record(ready=False),
            Seen(ready=False, non_ready=TEN),
            record(ready=False, non_ready=TEN[:10], retry_at=LATER),
        ),
        # a Ready deployment that stops being Ready
        (
            record(),
            Seen(ready=False, non_ready=["a"]),
            record(ready=False, non_ready=["a"], retry_at=LATER),
        ),
    ],
    ids=["ready", "ready-clears-error", "not-ready", "was-ready"],
)
def test_observed(before: Record, status: Seen, after: Record) -> None:
    assert before.observed(status, NOW) == after


@pytest.mark.parametrize(
    ("before", "status", "after"),
    [
        (record(), Seen(), record()),
        (record(), Seen(drift=TEN), record(drift=TEN[:10])),
        (
            record(last_action="install: no release yet"),
            Seen(corrected=["a", "b", "c", "d"]),
            record(last_action="corrected drift: a, b, c", corrections=1),
        ),
        # a check neither clears an error nor schedules anything
        (
            record(error="boom", drift=["x"]),
            Seen(ready=False, non_ready=["y"]),
            record(error="boom", ready=False, non_ready=["y"]),
        ),
        # Helm's record gone: never released any more, so the rollout deploys it again now
        (
            record(),
            Seen(
                ready=False, drift=["release shop/web: no deployed revision"], record_missing=True
            ),
            record(
                released="",
                applied="",
                ready=False,
                drift=["release shop/web: no deployed revision"],
                last_action="Helm's record of the release is missing: deploying again",
            ),
        ),
    ],
    ids=["clean", "drift", "corrected", "not-ready", "record-missing"],
)
def test_checked(before: Record, status: Seen, after: Record) -> None:
    assert before.checked(status) == after


@pytest.mark.parametrize(
    ("before", "error", "after"),
    [
        (
            record(staged="v2", released="v2"),
            "helm: timed out",
            record(staged="v2", released="v2", error="helm: timed out", retry_at=LATER),
        ),
        (
            record(staged="v2", released="v2"),
            "line one\n  line two",
            record(staged="v2", released="v2", error="line one line two", retry_at=LATER),
        ),
    ],
    ids=["error", "one-line"],
)
def test_failed(before: Record, error: str, after: Record) -> None:
    assert before.failed(error, NOW) == after


def test_failed_messages_are_cut() -> None:
    assert len(record().failed("x" * 1000, NOW).error) == MAX_MESSAGE


@pytest.mark.parametrize(
    ("before", "now", "after", "due"),
    [
        (record(), NOW, record(), None),
        (FAILED, NOW - timedelta(seconds=1), FAILED, None),
        # not applied: back to what runs there, so the rollout releases it again
        (FAILED, NOW, record(staged="v2", error="boom"), Due.RELEASE),
        (FAILED, LATER, record(staged="v2", error="boom"), Due.RELEASE),
        # applied, not Ready: watch again
        (NOT_READY, NOW, NOT_READY.model_copy(update={"retry_at": None}), Due.WATCH),
    ],
    ids=["nothing", "not-yet", "release", "release-late", "watch"],
)
def test_due(before: Record, now: datetime, after: Record, due: Due | None) -> None:
    assert before.due(now) == (after, due)


@pytest.mark.parametrize(
    ("fields", "settled", "monitored"),
    [
        ({}, True, True),
        ({"release": None}, True, False),
        ({"staged": "v2"}, False, False),
        ({"applied": "v0"}, False, False),
        ({"staged": "", "released": "", "applied": ""}, False, False),
    ],
)
def test_settled_and_monitored(fields: dict[str, Any], settled: bool, monitored: bool) -> None:
    assert (record(**fields).settled, record(**fields).monitored) == (settled, monitored)


def test_rollout_target_says_none_for_no_version() -> None:
    target = Record(cluster="edge-1", staged="v1").rollout_target(
        labels={"env": "prod"}, paused=True, blocked=False
    )
    assert (target.cluster, target.labels, target.staged) == ("edge-1", {"env": "prod"}, "v1")
    assert (target.released, target.applied, target.ready) == (None, None, False)
    assert (target.paused, target.blocked) == (True, False)


@pytest.mark.parametrize(
    ("fields", "waiting_for", "state"),
    [
        ({}, [], BundleState.READY),
        # drift counts once settled, not while a new version is staged
        ({"drift": ["x"]}, [], BundleState.MODIFIED),
        ({"drift": ["x"], "staged": "v2"}, [], BundleState.OUT_OF_SYNC),
        # a dependency wait counts only while the staged version is not released
        ({"staged": "v2"}, ["db"], BundleState.WAITING_FOR_DEPENDENCY),
        ({}, ["db"], BundleState.READY),
        ({"staged": "v2", "released": "v2", "error": "boom"}, [], BundleState.ERR_APPLIED),
        ({"staged": "", "released": "", "applied": ""}, [], BundleState.PENDING),
    ],
)
def test_state(fields: dict[str, Any], waiting_for: list[str], state: BundleState) -> None:
    assert record(**fields).state(paused=False, waiting_for=waiting_for).state is state


def test_a_paused_record_says_so() -> None:
    result = record(staged="v2").state(paused=True, waiting_for=[])
    assert result.message == "paused: version v2 staged, not deployed"


def test_the_retry_delay_can_be_shortened() -> None:
    second = timedelta(seconds=1)
    assert record().failed("boom", NOW, second).retry_at == NOW + second
    assert record().observed(Seen(ready=False), NOW, second).retry_at == NOW + second


def test_an_offline_cluster_counts_unavailable_and_shows_offline() -> None:
    healthy = record(staged="v1", released="v1", applied="v1", ready=True)
    assert healthy.rollout_target(labels={}, paused=False, blocked=False).ready
    offline = healthy.rollout_target(labels={}, paused=False, blocked=False, offline=True)
    assert not offline.ready
    state = healthy.state(paused=False, waiting_for=[], offline="cluster unreachable: refused")
    assert (state.state, state.message) == (BundleState.OFFLINE, "cluster unreachable: refused")


def test_corrections_in_a_row_back_off_and_say_so() -> None:
    fixed = Seen(corrected=["ConfigMap/shop/cfg"])
    first = record().checked(fixed, NOW)
    assert first.corrections == 1 and first.last_action == "corrected drift: ConfigMap/shop/cfg"
    assert not first.may_correct(NOW + timedelta(seconds=9))
    assert first.may_correct(NOW + timedelta(seconds=10))

    second = first.checked(fixed, NOW + timedelta(seconds=12))
    assert second.corrections == 2
    assert "2 times in a row" in second.last_action and "after 20s" in second.last_action
    waiting = second.checked(Seen(drift=["ConfigMap/shop/cfg: differs"]), NOW + LATER_BY)
    assert waiting.drift == ["ConfigMap/shop/cfg: differs"]
    assert waiting.last_action == (
        "drift correction backed off after 2 in a row: next one not before 12:00:32 UTC"
    )
    # A clean check ends the row; so does a quiet spell of twice the back-off.
    assert second.checked(Seen(), NOW + LATER_BY).corrections == 0
    assert second.checked(fixed, NOW + timedelta(seconds=60)).corrections == 1


LATER_BY = timedelta(seconds=15)


def test_a_check_that_finds_not_ready_watches_readiness_at_once() -> None:
    checked = record().checked(Seen(ready=False, non_ready=["a"], drift=["b"]), NOW)
    assert checked.retry_at == NOW and checked.drift == ["b"] and not checked.ready
    assert checked.due(NOW)[1] is Due.WATCH
