"""Deployment states: Fleet's rules and precedence, WaitingForDependency, and summaries."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flotilla.errors import MAX_MESSAGE
from flotilla.status import (
    MAX_BUNDLE_LINES,
    SEVERITY,
    BundleLine,
    BundleReport,
    BundleState,
    Condition,
    DeploymentObservation,
    RepoState,
    StateSince,
    StateWithMessage,
    bundle_shown,
    cluster_state,
    compute_state,
    deployment_page,
    explain,
    gitrepo_conditions,
    ready_condition,
    state_since,
    summarize,
    summarize_gitrepo,
    transition,
    while_planning,
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
        (
            observe(offline="API server unreachable since 2026-12-03T19:00:00Z: refused"),
            S.OFFLINE,
            "API server unreachable since 2026-12-03T19:00:00Z: refused",
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
        # an unreachable cluster explains everything else seen there
        (observe(offline="down", applied="", apply_error="connection refused"), S.OFFLINE),
        (observe(offline="down", staged=""), S.OFFLINE),
        (observe(offline="down", waiting_for=["db"], applied=""), S.OFFLINE),
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
        S.OFFLINE,
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


@pytest.mark.parametrize("state", list(SEVERITY))
def test_while_a_new_commit_is_planned_nothing_is_ready_but_worse_states_stay(
    state: BundleState,
) -> None:
    before = {
        "a": StateWithMessage(state=state, message="as it was"),
        "b": StateWithMessage(state=S.READY),
    }
    during = while_planning(before, "c0ffee" * 7)
    waiting = StateWithMessage(state=S.WAIT_APPLIED, message="planning commit c0ffeec0ffee")
    kept = state in (S.ERR_APPLIED, S.OFFLINE)
    assert during == {"a": before["a"] if kept else waiting, "b": waiting}
    summary = summarize(before, planning="c0ffee" * 7)
    assert (summary.ready, summary.display) == (0, "0/2")
    assert summary.state is (state if kept else S.WAIT_APPLIED)


def test_a_bundle_planning_its_first_commit_is_wait_applied_not_an_empty_ready() -> None:
    summary = summarize({}, planning="abc")
    assert (summary.state, summary.message, summary.display) == (
        S.WAIT_APPLIED,
        "planning commit abc",
        "0/0",
    )
    assert summarize({}).state is S.READY  # planned, and no cluster targeted: nothing to wait


def test_summary_round_trips_through_json() -> None:
    summary = summarize({"c1": StateWithMessage(state=S.WAITING_FOR_DEPENDENCY, message="w")})
    assert type(summary).model_validate_json(summary.model_dump_json()) == summary


# --- GitRepo status ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A bundle of the GitRepo's commit."""

    name: str
    path: str = "."
    error: str = ""


COMMIT = "c2"


def report(bundle: str, state: BundleState = S.READY, **fields: Any) -> BundleReport:
    """A report of ``bundle`` on two clusters, for COMMIT, in ``state`` everywhere."""
    base: dict[str, Any] = {
        "bundle": bundle,
        "commit": COMMIT,
        "ready": 2 if state is S.READY else 0,
        "desired": 2,
        "state": state,
        "message": "" if state is S.READY else f"a: {bundle} is {state}",
        "states": {"a": state, "b": state},
    }
    return BundleReport(**{**base, **fields})


@pytest.mark.parametrize(
    ("bundles", "reports", "expected"),
    [
        # every bundle Ready on both clusters
        (
            [Source("web"), Source("db")],
            [report("web"), report("db")],
            (2, 2, "4/4", S.READY, ""),
        ),
        # a cluster is ready only when every bundle is Ready there
        (
            [Source("web"), Source("db")],
            [report("web"), report("db", states={"a": S.READY, "b": S.NOT_READY}, ready=1)],
            (1, 2, "3/4", S.READY, ""),
        ),
        # the worst bundle state wins and explains itself
        (
            [Source("web"), Source("db")],
            [report("web", S.NOT_READY), report("db", S.ERR_APPLIED)],
            (0, 2, "0/4", S.ERR_APPLIED, "db: a: db is ErrApplied"),
        ),
        # a bundle that has not reported is Pending, and says so
        (
            [Source("web"), Source("db")],
            [report("web")],
            (2, 2, "2/2", S.PENDING, "db: no status report from it yet"),
        ),
        # a report about an older commit is WaitApplied, and says which commit it waits for
        (
            [Source("web")],
            [report("web", S.NOT_READY, commit="c1")],
            (0, 2, "0/2", S.WAIT_APPLIED, "web: applying commit c2"),
        ),
        # ... also when the old report was Ready with no message (never "web: ")
        (
            [Source("web")],
            [report("web", commit="c1")],
            (2, 2, "2/2", S.WAIT_APPLIED, "web: applying commit c2"),
        ),
        # a report with a state but no message gets the state's meaning
        (
            [Source("web")],
            [report("web", S.WAIT_APPLIED, message="")],
            (0, 2, "0/2", S.WAIT_APPLIED, "web: waiting for the new version to be applied"),
        ),
        # an offline cluster under a bundle makes the GitRepo say so
        (
            [Source("web"), Source("db")],
            [report("web", S.NOT_READY), report("db", S.OFFLINE, message="b: unreachable")],
            (0, 2, "0/4", S.OFFLINE, "db: b: unreachable"),
        ),
        # a bundle with an error is ErrApplied whatever it reported; its error is the message
        (
            [Source("web", path="apps/web", error="apps/web/fleet.yaml: bad")],
            [report("web")],
            (2, 2, "2/2", S.ERR_APPLIED, "web: apps/web/fleet.yaml: bad"),
        ),
        # reports of bundles no longer in the commit do not count
        (
            [Source("web")],
            [report("web"), report("gone", S.ERR_APPLIED)],
            (2, 2, "2/2", S.READY, ""),
        ),
    ],
    ids=[
        "ready",
        "cluster-ready",
        "worst",
        "pending",
        "stale",
        "stale-ready",
        "no-message",
        "offline",
        "error",
        "gone",
    ],
)
def test_summarize_gitrepo(
    bundles: list[Source],
    reports: list[BundleReport],
    expected: tuple[int, int, str, BundleState, str],
) -> None:
    summary = summarize_gitrepo(bundles, {r.bundle: r for r in reports}, commit=COMMIT)
    assert (
        summary.ready_clusters,
        summary.desired_ready_clusters,
        summary.ready_bundle_deployments,
        summary.state,
        summary.message,
    ) == expected


def test_older_runs_show_a_stale_report_as_it_was() -> None:
    summary = summarize_gitrepo(
        [Source("web")],
        {"web": report("web", commit="c1")},
        commit=COMMIT,
        stale_is_wait_applied=False,
    )
    assert summary.state is S.READY


SINCE = datetime(2026, 12, 3, 19, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("commit", "message"),
    [
        ("", "branch 'x' not found (since 2026-12-03T19:00:00Z; no commit read yet)"),
        (
            "0123456789abcdef",
            "branch 'x' not found (since 2026-12-03T19:00:00Z; still serving 0123456789ab)",
        ),
    ],
    ids=["first", "later"],
)
def test_a_git_error_outranks_every_bundle_and_says_since_when_and_what_still_runs(
    commit: str, message: str
) -> None:
    summary = summarize_gitrepo(
        [Source("web")],
        {"web": report("web", S.ERR_APPLIED, commit=commit)},
        commit=commit,
        error="branch 'x' not found",
        error_since=SINCE,
    )
    assert (summary.state, summary.message) == (RepoState.GIT_ERROR, message)


@pytest.mark.parametrize("commit", ["", "0123456789abcdef"], ids=["first", "later"])
def test_a_restriction_outranks_git_errors_and_every_bundle(commit: str) -> None:
    why = "refused by the workspace's restrictions: spec.repo: 'x' is not allowed by Policy p"
    summary = summarize_gitrepo(
        [Source("web")],
        {"web": report("web", S.ERR_APPLIED, commit=commit)},
        commit=commit,
        error="branch 'x' not found",
        error_since=SINCE,
        restricted=why,
    )
    assert (summary.state, summary.message) == (RepoState.RESTRICTED, why)


def test_a_gitrepo_with_no_commit_yet_is_updating_not_ready() -> None:
    summary = summarize_gitrepo([], {}, commit="")
    assert (summary.state, summary.message) == (RepoState.GIT_UPDATING, "reading the first commit")


@pytest.mark.parametrize(
    ("state", "message", "shown"),
    [(state, "", explain(state, "")) for state in SEVERITY]
    + [(S.NOT_READY, "web\nnot ready", "web not ready")],
)
def test_no_state_but_ready_is_shown_without_a_reason(
    state: BundleState, message: str, shown: str
) -> None:
    assert explain(state, message) == shown
    assert bool(shown) is (state is not S.READY)


def test_summarize_never_ends_in_an_empty_message() -> None:
    summary = summarize({"c1": StateWithMessage(state=S.WAIT_APPLIED)})
    assert summary.message == "c1: waiting for the new version to be applied"


@pytest.mark.parametrize(
    ("offline", "deployments", "expected"),
    [
        ("", {}, StateWithMessage(state=S.READY)),
        ("", {"web": S.READY, "db": S.READY}, StateWithMessage(state=S.READY)),
        (
            "",
            {"web": S.NOT_READY, "db": S.ERR_APPLIED, "api": S.ERR_APPLIED},
            StateWithMessage(state=S.ERR_APPLIED, message="ErrApplied on api, db"),
        ),
        (
            "unreachable since 2026-12-03T19:00:00Z: connection refused",
            {"web": S.READY},
            StateWithMessage(
                state=S.OFFLINE,
                message="unreachable since 2026-12-03T19:00:00Z: connection refused",
            ),
        ),
    ],
    ids=["none", "ready", "worst", "offline"],
)
def test_cluster_state_is_the_same_rule(
    offline: str, deployments: dict[str, BundleState], expected: StateWithMessage
) -> None:
    assert cluster_state(offline, deployments) == expected


def cond(type_: str, status: bool, reason: str, message: str = "") -> Condition:
    return Condition(type=type_, status=status, reason=reason, message=message)


def test_transition_times_change_with_status_or_reason_not_with_the_message() -> None:
    t0, t1, t2 = SINCE, SINCE + timedelta(seconds=10), SINCE + timedelta(seconds=20)
    first = transition([], [cond("Ready", False, "NotReady", "web: 0/1")], t0)
    assert first[0].last_transition == t0
    same = transition(first, [cond("Ready", False, "NotReady", "web: 1/2")], t1)
    assert (same[0].last_transition, same[0].message) == (t0, "web: 1/2")
    reason = transition(same, [cond("Ready", False, "ErrApplied", "boom")], t1)
    assert reason[0].last_transition == t1
    ready = transition(reason, [cond("Ready", True, "Ready"), cond("GitPolling", True, "x")], t2)
    assert [c.last_transition for c in ready] == [t2, t2]


def test_a_deployment_keeps_its_since_while_its_state_stays_whatever_the_message() -> None:
    t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    first = state_since({}, {"a": StateWithMessage(state=S.NOT_READY, message="x")}, t0)
    assert first == {"a": StateSince(state=S.NOT_READY, since=t0)}
    later = {
        "a": StateWithMessage(state=S.NOT_READY, message="y"),
        "b": StateWithMessage(state=S.READY),
    }
    assert state_since(first, later, t1) == {
        "a": StateSince(state=S.NOT_READY, since=t0),
        "b": StateSince(state=S.READY, since=t1),
    }
    ready = state_since(first, {"a": StateWithMessage(state=S.READY)}, t1)
    assert ready == {"a": StateSince(state=S.READY, since=t1)}  # and b, gone, is dropped


def test_gitrepo_conditions_say_git_and_ready_apart() -> None:
    summary = summarize_gitrepo(
        [Source("web")],
        {"web": report("web")},
        commit=COMMIT,
        error="unreachable",
        error_since=SINCE,
    )
    polling, ready = gitrepo_conditions(summary, "unreachable")
    assert (polling.type, polling.status, polling.reason, polling.message) == (
        "GitPolling",
        False,
        RepoState.GIT_ERROR,
        "unreachable",
    )
    assert (ready.status, ready.reason) == (False, RepoState.GIT_ERROR)
    assert ready.message == summary.message
    healthy = summarize_gitrepo([Source("web")], {"web": report("web")}, commit=COMMIT)
    assert [(c.type, c.status, c.reason) for c in gitrepo_conditions(healthy, "")] == [
        ("GitPolling", True, "Polled"),
        ("Ready", True, S.READY),
    ]


def test_ready_condition_is_true_only_in_state_ready() -> None:
    assert ready_condition(S.READY, "") == cond("Ready", True, S.READY)
    assert ready_condition(S.PENDING, "") == cond("Ready", False, S.PENDING, "no deployment yet")


def test_gitrepo_lines_are_sorted_by_name_and_capped() -> None:
    bundles = [Source(f"b{i:03}", path=f"p{i}") for i in range(60, 0, -1)]
    summary = summarize_gitrepo(bundles, {"b001": report("b001", S.NOT_READY)}, commit=COMMIT)
    assert len(summary.bundles) == MAX_BUNDLE_LINES
    assert [line.name for line in summary.bundles[:2]] == ["b001", "b002"]
    assert summary.bundles[0] == BundleLine(
        name="b001",
        path="p1",
        state=S.NOT_READY,
        ready=0,
        desired=2,
        message="a: b001 is NotReady",
    )
    assert summary.bundles[1].state is S.PENDING
    assert summary.ready_bundle_deployments == "0/2"


def test_states_travel_as_fleets_strings() -> None:
    sent = report("web", S.WAITING_FOR_DEPENDENCY)
    wire = json.loads(sent.model_dump_json())
    assert (wire["state"], wire["states"]) == (
        "WaitingForDependency",
        {"a": "WaitingForDependency", "b": "WaitingForDependency"},
    )
    assert BundleReport.model_validate(wire) == sent
    assert BundleReport.model_validate(wire).states["a"] is S.WAITING_FOR_DEPENDENCY


def test_older_runs_show_a_git_error_as_before() -> None:
    summary = summarize_gitrepo(
        [Source("web")],
        {"web": report("web")},
        commit=COMMIT,
        error="unreachable",
        error_since=SINCE,
        git_states=False,
    )
    assert (summary.state, summary.message) == (S.READY, "unreachable")


def test_a_long_git_error_is_cut_but_since_and_the_commit_served_stay() -> None:
    summary = summarize_gitrepo(
        [], {}, commit="0123456789abcdef", error="x " * 400, error_since=SINCE
    )
    assert len(summary.message) <= MAX_MESSAGE
    assert summary.message.endswith("(since 2026-12-03T19:00:00Z; still serving 0123456789ab)")


HALT = "rollout halted: partition canary: 1 of 1 cluster(s) not Ready 5m after release"


def test_a_halted_bundle_makes_the_gitrepo_halted_below_git_errors() -> None:
    reports = {
        "web": report("web", S.OUT_OF_SYNC, halted=HALT),
        "db": report("db", S.ERR_APPLIED),
    }
    summary = summarize_gitrepo([Source("web"), Source("db")], reports, commit=COMMIT)
    # Halted outranks every deployment state: the rollout stopped and needs a person.
    assert (summary.state, summary.message) == (RepoState.HALTED, f"web: {HALT}")
    assert {b.name: b.state for b in summary.bundles} == {
        "db": S.ERR_APPLIED,
        "web": RepoState.HALTED,
    }
    # A halt reported for an older commit is not this commit's.
    stale = {"web": report("web", S.OUT_OF_SYNC, halted=HALT, commit="c1")}
    assert summarize_gitrepo([Source("web")], stale, commit=COMMIT).state is S.WAIT_APPLIED
    broken = summarize_gitrepo([Source("web")], reports, commit=COMMIT, error="gone")
    assert broken.state is RepoState.GIT_ERROR


def test_a_pinned_bundle_is_current_at_its_pinned_commit() -> None:
    reports = {"web": report("web", commit="c1")}
    assert summarize_gitrepo([Source("web")], reports, commit=COMMIT).state is S.WAIT_APPLIED
    pinned = summarize_gitrepo([Source("web")], reports, commit=COMMIT, pinned={"web": "c1"})
    assert (pinned.state, pinned.ready_bundle_deployments) == (S.READY, "2/2")


def _reports_of(sizes: dict[str, int]) -> dict[str, BundleReport]:
    return {
        name: report(name, states={f"c{i:03d}": S.READY for i in range(n)})
        for name, n in sizes.items()
    }


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 100])
def test_deployment_pages_list_every_deployment_once_in_order(size: int) -> None:
    reports = _reports_of({"b2": 3, "b0": 4, "empty": 0, "b1": 1})
    expected = [
        (name, f"c{i:03d}", COMMIT, S.READY)
        for name, n in sorted({"b2": 3, "b0": 4, "b1": 1}.items())
        for i in range(n)
    ]
    seen: list[tuple[str, str, str, BundleState]] = []
    while True:
        page, total = deployment_page(reports, len(seen), size)
        assert total == 8
        assert len(page) <= size
        seen.extend(page)
        if not page:
            break
    assert seen == expected


def test_a_deployment_page_at_fleet_scale_stays_small() -> None:
    # 50 bundles x 500 clusters: one page is bounded whatever the offset, and past the end
    # a page is empty with the same total.
    reports = _reports_of({f"bench-b{b}": 500 for b in range(50)})
    page, total = deployment_page(reports, 12_345, 5000)
    assert total == 25_000 and len(page) == 5000
    assert page[0][:2] == ("bench-b30", "c345")
    lines = [
        {"bundle": b, "cluster": c, "commit": commit, "state": str(s)} for b, c, commit, s in page
    ]
    assert len(json.dumps(lines)) < 600_000
    assert deployment_page(reports, 25_000, 5000) == ([], 25_000)
    assert deployment_page(reports, -3, 2)[0][0][:2] == ("bench-b0", "c000")


@pytest.mark.parametrize(
    ("halted", "source_error", "pin", "shown"),
    [
        ("", "", "", (BundleState.READY, "")),
        ("", "", "pinned to abc", (BundleState.READY, "pinned to abc")),
        ("rejected", "", "pinned", (RepoState.HALTED, "rejected")),
        (
            "rejected",
            "commit c not deployed: bad",
            "",
            (BundleState.ERR_APPLIED, "commit c not deployed: bad"),
        ),
        (
            "",
            "commit c not deployed: bad",
            "pinned",
            (BundleState.ERR_APPLIED, "commit c not deployed: bad"),
        ),
    ],
)
def test_a_bundle_shows_a_read_error_first_as_its_gitrepo_does(
    halted: str, source_error: str, pin: str, shown: tuple[str, str]
) -> None:
    assert (
        bundle_shown(BundleState.READY, "", halted=halted, source_error=source_error, pin=pin)
        == shown
    )


def test_a_bundle_keeps_its_own_message_below_a_read_error() -> None:
    assert bundle_shown(BundleState.NOT_READY, "c1: waiting", pin="pinned") == (
        BundleState.NOT_READY,
        "c1: waiting",
    )
