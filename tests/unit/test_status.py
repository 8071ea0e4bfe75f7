"""Deployment states: Fleet's rules and precedence, WaitingForDependency, and summaries."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from flotilla.errors import MAX_MESSAGE
from flotilla.status import (
    SEVERITY,
    BundleState,
    DeploymentObservation,
    StateWithMessage,
    compute_state,
    summarize,
    worst_state,
)

S = BundleState


def observe(**fields: Any) -> DeploymentObservation:
    """A healthy deployment at version v1, with fields overridden."""
    base: dict[str, Any] = {
        "staged": "v1",
        "released": "v1",
        "applied": "v1",
        "ready": True,
    }
    return DeploymentObservation(**{**base, **fields})


@pytest.mark.parametrize(
    ("obs", "state", "message"),
    [
        (observe(), S.READY, ""),
        (observe(staged=""), S.PENDING, "no deployment yet"),
        (
            observe(applied="v0", released="v1"),
            S.WAIT_APPLIED,
            "applying version v1",
        ),
        (
            observe(applied="", apply_error="helm: timed out waiting"),
            S.ERR_APPLIED,
            "helm: timed out waiting",
        ),
        (
            observe(ready=False, non_ready=["Deployment/app/web: ready replicas 0 of 1"]),
            S.NOT_READY,
            "Deployment/app/web: ready replicas 0 of 1",
        ),
        (observe(ready=False), S.NOT_READY, "not ready"),
        (
            observe(staged="v2", paused=True),
            S.OUT_OF_SYNC,
            "paused: version v2 staged, not deployed",
        ),
        (
            observe(staged="v2"),
            S.OUT_OF_SYNC,
            "held back by the rollout: version v2 staged, not deployed",
        ),
        (
            observe(released="", applied="", ready=False, paused=True),
            S.OUT_OF_SYNC,
            "paused: version v1 staged, not deployed",
        ),
        (
            observe(drift=["apps/v1/Deployment/app/web: differs at /spec/replicas"]),
            S.MODIFIED,
            "apps/v1/Deployment/app/web: differs at /spec/replicas",
        ),
        (
            observe(waiting_for=["db", "cache"], applied=""),
            S.WAITING_FOR_DEPENDENCY,
            "waiting for cache, db",
        ),
    ],
)
def test_compute_state_rules(obs: DeploymentObservation, state: BundleState, message: str) -> None:
    assert compute_state(obs) == StateWithMessage(state=state, message=message)


@pytest.mark.parametrize(
    ("obs", "state"),
    [
        # rule 1 beats rule 2: an unapplied version is not judged for readiness
        (observe(applied="v0", ready=False), S.WAIT_APPLIED),
        (observe(applied="v0", apply_error="boom", ready=False), S.ERR_APPLIED),
        # rule 2 beats rule 3 and 4
        (observe(ready=False, staged="v2", drift=["x"]), S.NOT_READY),
        # rule 3 beats rule 4
        (observe(staged="v2", drift=["x"]), S.OUT_OF_SYNC),
        # an error from an older attempt does not matter once the released version is applied
        (observe(apply_error="old failure"), S.READY),
        # a dependency wait is never shown as an error
        (observe(waiting_for=["db"], apply_error="dependency not ready"), S.WAITING_FOR_DEPENDENCY),
    ],
)
def test_compute_state_precedence(obs: DeploymentObservation, state: BundleState) -> None:
    assert compute_state(obs).state is state


def test_messages_are_one_short_line() -> None:
    error = "line one\nline two\t" + "x" * 1000
    message = compute_state(observe(applied="", apply_error=error)).message
    assert "\n" not in message
    assert len(message) == MAX_MESSAGE
    assert message.startswith("line one line two x")
    assert message.endswith("...")


def test_long_lists_are_cut_in_messages() -> None:
    drift = [f"obj{i}: missing" for i in range(5)]
    message = compute_state(observe(drift=drift)).message
    assert message == "obj0: missing, obj1: missing, obj2: missing (+2 more)"


def test_severity_is_fleets_order_with_the_dependency_wait_after_out_of_sync() -> None:
    assert SEVERITY == (
        S.ERR_APPLIED,
        S.WAIT_APPLIED,
        S.MODIFIED,
        S.OUT_OF_SYNC,
        S.WAITING_FOR_DEPENDENCY,
        S.PENDING,
        S.NOT_READY,
        S.READY,
    )
    assert set(SEVERITY) == set(BundleState)


@pytest.mark.parametrize(("worse", "better"), list(itertools.combinations(SEVERITY, 2)))
def test_worst_state_picks_the_earlier_in_severity(worse: BundleState, better: BundleState) -> None:
    assert worst_state([better, worse]) is worse
    assert worst_state([worse, better, better]) is worse


def test_worst_state_of_nothing_is_ready() -> None:
    assert worst_state([]) is S.READY


def test_summarize_counts_and_display() -> None:
    summary = summarize(
        {
            "c1": StateWithMessage(state=S.READY),
            "c2": StateWithMessage(state=S.READY),
            "c3": StateWithMessage(state=S.NOT_READY, message="web not ready"),
            "c4": StateWithMessage(state=S.MODIFIED, message="web drifted"),
        }
    )
    assert summary.display == "2/4"
    assert (summary.ready, summary.desired) == (2, 4)
    assert summary.counts[S.READY] == 2
    assert summary.counts[S.MODIFIED] == 1
    assert summary.counts[S.ERR_APPLIED] == 0
    assert set(summary.counts) == set(BundleState)
    assert summary.state is S.MODIFIED
    assert summary.message == "c4: web drifted"
    assert [(e.name, e.state) for e in summary.non_ready] == [
        ("c4", S.MODIFIED),
        ("c3", S.NOT_READY),
    ]


def test_summarize_keeps_at_most_ten_worst_first_then_by_name() -> None:
    states = {f"c{i:02}": StateWithMessage(state=S.NOT_READY, message="x") for i in range(30)}
    states["z-broken"] = StateWithMessage(state=S.ERR_APPLIED, message="boom")
    summary = summarize(states)
    assert len(summary.non_ready) == 10
    assert summary.non_ready[0].name == "z-broken"
    assert [e.name for e in summary.non_ready[1:]] == [f"c{i:02}" for i in range(9)]
    assert summary == summarize(dict(reversed(list(states.items()))))


def test_summarize_nothing() -> None:
    summary = summarize({})
    assert (summary.display, summary.state, summary.message, summary.non_ready) == (
        "0/0",
        S.READY,
        "",
        [],
    )


def test_summary_round_trips_through_json() -> None:
    summary = summarize({"c1": StateWithMessage(state=S.WAITING_FOR_DEPENDENCY, message="w")})
    assert type(summary).model_validate_json(summary.model_dump_json()) == summary
