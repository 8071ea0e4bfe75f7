"""flotilla.shards: shard ranges and one rollout across shards, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flotilla.clusterstates import cluster_index, decode_states, encode_states, expand_report
from flotilla.gates import Approval, GateRecord
from flotilla.models import RolloutStrategy
from flotilla.rollout import (
    RolloutState,
    RolloutTarget,
    ShardView,
    make_partitions,
    plan_rollout,
)
from flotilla.shards import (
    PackedPart,
    PartitionCounts,
    drained,
    even_shares,
    gate_shards,
    grant_as_seen,
    greedy_shares,
    join_shard_states,
    plan_shards,
    shard_boundaries,
    shard_counts,
    shard_of,
    shard_offsets,
)
from flotilla.status import BundleReport, BundleState, count_states

NAMES = [f"c{i:03d}" for i in range(10)]


def test_ranges_cut_the_sorted_names_and_a_new_name_touches_one_shard() -> None:
    boundaries = shard_boundaries(reversed(NAMES), 4)
    assert boundaries == ["", "c004", "c008"]
    before = {n: shard_of(n, boundaries) for n in NAMES}
    assert [before[n] for n in NAMES] == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    # Names added later join the range they fall in; nobody else moves.
    assert shard_of("a", boundaries) == 0
    assert shard_of("c0055", boundaries) == 1
    assert shard_of("zz", boundaries) == 2
    assert {n: shard_of(n, boundaries) for n in NAMES} == before


def test_offsets_count_the_targets_of_earlier_shards() -> None:
    assert shard_offsets({2: 5, 0: 3, 1: 0}) == {0: 0, 1: 3, 2: 3}


def targets(names: list[str], *, released: str | None = "v1") -> list[RolloutTarget]:
    return [
        RolloutTarget(cluster=n, staged="v2", released=released, applied=released, ready=True)
        for n in names
    ]


def test_a_shard_cuts_automatic_partitions_as_the_whole_bundle_does() -> None:
    strategy = RolloutStrategy.model_validate({"autoPartitionSize": 3, "autoPartitionThreshold": 1})
    whole = make_partitions(targets(NAMES), strategy)
    view = ShardView(offset=4, total=10)
    part = make_partitions(targets(NAMES[4:8]), strategy, view)
    expected = [
        (p.name, [c for c in p.clusters if c in NAMES[4:8]])
        for p in whole
        if set(p.clusters) & set(NAMES[4:8])
    ]
    assert [(p.name, p.clusters) for p in part] == expected
    assert [p.name for p in part] == ["clusters 4-6", "clusters 7-9"]


def test_a_shard_moves_only_in_reached_partitions_and_within_its_budgets() -> None:
    strategy = RolloutStrategy.model_validate({"autoPartitionSize": 3, "autoPartitionThreshold": 1})
    mine = targets(NAMES[4:8])
    view = ShardView(
        offset=4,
        total=10,
        reached=["clusters 1-3", "clusters 4-6"],
        budgets={"": 1, "clusters 4-6": 1},
    )
    plan = plan_rollout(RolloutState(strategy=strategy, targets=mine, shard=view))
    assert plan.deploy == ["c004"]
    assert plan.held == ["c005"]
    assert plan.waiting == ["c006", "c007"]
    counts = shard_counts(mine, plan, strategy, view)
    assert counts == [
        PartitionCounts(name="clusters 4-6", count=2, unavailable=2, not_ready=1, pending=1),
        PartitionCounts(name="clusters 7-9", count=2, unavailable=2, pending=2),
    ]


def counts(name: str, count: int, *, unavailable: int = 0, not_ready: int = 0, pending: int = 0):
    return PartitionCounts(
        name=name,
        count=count,
        updated=count - unavailable,
        unavailable=unavailable,
        not_ready=not_ready,
        pending=pending,
    )


def test_budgets_share_max_unavailable_and_never_exceed_it() -> None:
    strategy = RolloutStrategy.model_validate({"maxUnavailable": 5})
    by_shard = {
        0: [counts("all", 10, unavailable=10, not_ready=1, pending=9)],
        1: [counts("all", 10, unavailable=10, not_ready=0, pending=10)],
        2: [counts("all", 10)],
    }
    plan = plan_shards(strategy, by_shard, {})
    assert plan.reached == ["all"]
    assert plan.budgets[0] == {"": 5, "all": 5}
    assert plan.budgets[1] == {"": 0, "all": 0}
    assert plan.budgets[2] == {"": 0, "all": 0}
    # Shard 0 still may act on a budget of 5 it has not confirmed: nothing is left.
    plan = plan_shards(strategy, by_shard | {0: [counts("all", 10, unavailable=10)]}, {0: {"": 5}})
    assert plan.budgets[0][""] == 0  # nothing waits there: given back once it confirms
    assert plan.budgets[1][""] == 0


@pytest.mark.parametrize(
    ("free", "want", "held", "shares"),
    [
        (100, {0: 500, 1: 500}, {}, {0: 50, 1: 50}),
        # One cannot use its share: the others get it.
        (100, {0: 10, 1: 500, 2: 500}, {}, {0: 10, 1: 45, 2: 45}),
        # A remainder goes to the first in order; nothing for a shard that waits for none.
        (5, {0: 9, 1: 0, 2: 9, 3: 9}, {}, {0: 2, 2: 2, 3: 1}),
        # What a shard holds already counts: the one holding less is given more.
        (1, {0: 9, 1: 9}, {0: 3, 1: 2}, {0: 0, 1: 1}),
        (4, {0: 9, 1: 9}, {0: 5, 1: 1}, {0: 0, 1: 4}),
        (6, {0: 9, 1: 9}, {0: 5, 1: 1}, {0: 1, 1: 5}),
        # Spent beyond the limit (a shard acting on an older grant): nothing to share.
        (-3, {0: 9, 1: 9}, {}, {0: 0, 1: 0}),
        (1000, {0: 3, 1: 4}, {}, {0: 3, 1: 4}),
    ],
)
def test_even_shares_split_the_free_budget_between_the_shards_that_wait(
    free: int, want: dict[int, int], held: dict[int, int], shares: dict[int, int]
) -> None:
    assert even_shares(free, want, held) == shares
    assert sum(shares.values()) <= max(free, 0)


def test_a_partition_over_two_shards_moves_in_both_at_once_with_even_shares() -> None:
    strategy = RolloutStrategy.model_validate({"maxUnavailable": 10})
    by_shard = {
        0: [counts("all", 50, unavailable=50, pending=50)],
        1: [counts("all", 50, unavailable=50, pending=50)],
    }
    # In shard order the first takes the whole budget and the second waits for a hand-over.
    greedy = plan_shards(strategy, by_shard, {})
    assert (greedy.budgets[0]["all"], greedy.budgets[1]["all"]) == (10, 0)
    assert greedy_shares(10, {0: 50, 1: 50}) == {0: 10, 1: 0}
    even = plan_shards(strategy, by_shard, {}, even=True)
    assert (even.budgets[0]["all"], even.budgets[1]["all"]) == (5, 5)
    assert (even.budgets[0][""], even.budgets[1][""]) == (5, 5)
    # Shard 0 may still act on 8 it has not confirmed: the other 2 go to shard 1.
    even = plan_shards(strategy, by_shard, {0: {"all": 8, "": 8}}, even=True)
    assert (even.budgets[0]["all"], even.budgets[1]["all"]) == (8, 2)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        # The last waiting cluster of a reached partition was released: tell the bundle.
        ([counts("p1", 5, unavailable=3, pending=1)], [counts("p1", 5, unavailable=3)], True),
        # Still waiting, or nothing waited when the bundle last heard: no hurry.
        (
            [counts("p1", 5, unavailable=4, pending=2)],
            [counts("p1", 5, unavailable=3, pending=1)],
            False,
        ),
        ([counts("p1", 5, unavailable=3)], [counts("p1", 5, unavailable=2)], False),
        # A partition not reached yet does not count; nor does a run that sent nothing yet.
        ([counts("p2", 5, pending=5)], [counts("p2", 5)], False),
        (None, [counts("p1", 5)], False),
    ],
)
def test_a_shard_reports_at_once_when_a_reached_partition_runs_out_of_waiting_clusters(
    before: list[PartitionCounts] | None, after: list[PartitionCounts], expected: bool
) -> None:
    assert drained(before, after, ["p1"]) is expected


@pytest.mark.parametrize(
    ("ahead_unavailable", "reached"),
    [(2, ["p1", "p2", "p3"]), (3, ["p1"])],
)
def test_later_partitions_wait_while_one_ahead_is_over_its_limit(
    ahead_unavailable: int, reached: list[str]
) -> None:
    strategy = RolloutStrategy.model_validate(
        {
            "maxUnavailable": 2,
            "partitions": [
                {"name": "p1", "clusterSelector": {"matchLabels": {"p": "1"}}},
                {"name": "p2", "clusterSelector": {"matchLabels": {"p": "2"}}},
                {"name": "p3", "clusterSelector": {"matchLabels": {"p": "3"}}},
            ],
        }
    )
    # p1 is spread over two shards: its limit (2 of 5) holds for the sum.
    by_shard = {
        0: [counts("p1", 3, unavailable=ahead_unavailable - 1), counts("p2", 2)],
        1: [counts("p1", 2, unavailable=1), counts("p3", 4)],
    }
    assert plan_shards(strategy, by_shard, {}).reached == reached


def test_the_bundle_wide_budget_counts_unavailable_clusters_of_every_partition() -> None:
    strategy = RolloutStrategy.model_validate(
        {
            "maxUnavailable": 3,
            "partitions": [
                {"name": "p1", "maxUnavailable": 10, "clusterSelector": {}},
                {"name": "p2", "maxUnavailable": 10, "clusterSelector": {}},
            ],
        }
    )
    by_shard = {
        # p1 is within its own limit, so p2 is reached; two of p2 are NotReady already.
        0: [counts("p1", 10, unavailable=4, pending=4)],
        1: [counts("p2", 10, unavailable=10, not_ready=2, pending=8)],
    }
    plan = plan_shards(strategy, by_shard, {})
    assert plan.reached == ["p1", "p2"]
    # 3 bundle-wide, 2 spent in p2: one left, and shard 0 asks first.
    assert plan.budgets[0][""] == 1
    assert plan.budgets[1][""] == 2


def test_the_next_partitions_shards_get_bundle_wide_budget_in_the_grant_that_reaches_it() -> None:
    """With ``usable``, a shard is granted of the bundle-wide budget only what its partition
    budgets let it use, so the shards of a drained partition do not hold the rest, and the
    next partition's shards can move with the grant that reaches it."""
    strategy = RolloutStrategy.model_validate(
        {
            "maxUnavailable": 20,
            "partitions": [
                {"name": "p1", "maxUnavailable": 2, "clusterSelector": {"matchLabels": {"p": "1"}}},
                {"name": "p2", "maxUnavailable": 2, "clusterSelector": {"matchLabels": {"p": "2"}}},
            ],
        }
    )
    waiting = {
        0: [counts("p1", 10, unavailable=10, pending=10)],
        1: [counts("p1", 10, unavailable=10, pending=10)],
        2: [counts("p2", 10, unavailable=10, pending=10)],
        3: [counts("p2", 10, unavailable=10, pending=10)],
    }
    before = plan_shards(strategy, waiting, {}, even=True)
    usable = plan_shards(strategy, waiting, {}, even=True, usable=True)
    assert before.reached == usable.reached == ["p1"]
    # p1's limit is 2, one for each of its shards: that much of the 20 is all they can use.
    assert [before.budgets[i][""] for i in (0, 1)] == [10, 10]
    assert [usable.budgets[i] for i in (0, 1)] == [{"": 1, "p1": 1}, {"": 1, "p1": 1}]
    assert list(usable.budgets[0]) == ["", "p1"]  # the grant's order as before

    # p1 released everywhere, two in flight: p2 is reached while shards 0 and 1 may still
    # act on the grants they confirmed.
    drained_p1 = waiting | {
        0: [counts("p1", 10, unavailable=1, not_ready=1)],
        1: [counts("p1", 10, unavailable=1, not_ready=1)],
    }
    held = {i: dict(before.budgets[i]) for i in (0, 1)}
    after_before = plan_shards(strategy, drained_p1, held, even=True)
    assert after_before.reached == ["p1", "p2"]
    assert [after_before.budgets[i][""] for i in (2, 3)] == [0, 0]  # a second round needed
    held = {i: dict(usable.budgets[i]) for i in (0, 1)}
    after = plan_shards(strategy, drained_p1, held, even=True, usable=True)
    assert [(after.budgets[i][""], after.budgets[i]["p2"]) for i in (2, 3)] == [(1, 1), (1, 1)]
    assert sum(b[""] for b in after.budgets.values()) <= 20


def test_a_grant_changes_for_a_shard_only_where_its_clusters_are() -> None:
    before = grant_as_seen(["p3"], ["p1", "p2"], {"": 0, "p1": 0, "p2": 0}, {})
    # The rollout reached p3: the shard with clusters there acts on it, with its budgets.
    assert grant_as_seen(["p3"], ["p1", "p2", "p3"], {"": 5, "p3": 5}, {}) != before
    # It reached p2's end elsewhere and gave p2's budget back: nothing for a p3 shard.
    assert grant_as_seen(["p3"], ["p1", "p2"], {"": 0, "p1": 0, "p2": 4}, {}) == before
    assert grant_as_seen(["p4"], ["p1", "p2", "p3"], {"": 0, "p3": 5}, {"p3": "soak"}) == (
        [],
        {"": 0},
        {},
    )
    # Its bundle-wide share and a gate on its own partition always count.
    assert grant_as_seen(["p3"], ["p1", "p2"], {"": 1}, {}) != before
    assert grant_as_seen(["p3"], ["p1", "p2"], {"": 0, "p2": 0}, {"p3": "approval"}) != before


def test_a_budget_of_zero_is_no_budget_to_a_shard_when_asked() -> None:
    # A new commit withdraws every grant (no budgets); the plan after it gives the shards of
    # partitions not reached explicit zeros, which they read as the missing ones.
    withdrawn = grant_as_seen(["p2"], [], {}, {}, zero_is_none=True)
    planned = grant_as_seen(["p2"], ["p1"], {"": 0, "p2": 0}, {}, zero_is_none=True)
    assert planned == withdrawn == ([], {}, {})
    assert grant_as_seen(["p2"], ["p1"], {"": 0, "p2": 0}, {}) != grant_as_seen(["p2"], [], {}, {})
    # Any budget above zero, or the partition reached, is still a change.
    assert grant_as_seen(["p2"], ["p1"], {"": 1}, {}, zero_is_none=True) != withdrawn
    assert grant_as_seen(["p2"], ["p1", "p2"], {"p2": 0}, {}, zero_is_none=True) != withdrawn


# --- per-cluster states across shards -------------------------------------------------------


def _part(
    states: list[str | None], extra: dict[str, BundleState] | None = None, **kw: Any
) -> PackedPart:
    counts = count_states([s for s in states if s])
    return PackedPart(
        codes=encode_states(states, sorted(counts)),
        counts=counts,
        length=len(states),
        extra=extra or {},
        **kw,
    )


def test_shard_states_join_into_the_bundle_list_in_shard_order() -> None:
    names = [f"c{i}" for i in range(7)]
    index = cluster_index(names)
    joined = join_shard_states(
        [
            _part(["Ready", "Ready", None]),
            _part(["ErrApplied", "Ready"], extra={"gone": BundleState.READY}),
            _part(["WaitingForDependency", "Ready"]),
        ],
        index.key,
    )
    report = BundleReport(
        bundle="b",
        commit="x",
        ready=0,
        desired=0,
        state=BundleState.READY,
        message="",
        states=joined.states,
        counts=joined.counts,
        clusters_key=joined.clusters_key,
        codes=joined.codes,
    )
    assert expand_report(report, index).states == {
        "c0": BundleState.READY,
        "c1": BundleState.READY,
        "c3": BundleState.ERR_APPLIED,
        "c4": BundleState.READY,
        "c5": BundleState.WAITING_FOR_DEPENDENCY,
        "c6": BundleState.READY,
        "gone": BundleState.READY,
    }
    assert joined.counts == {"ErrApplied": 1, "Ready": 5, "WaitingForDependency": 1}


def test_a_shard_still_on_the_older_commit_is_ready_nowhere() -> None:
    """A dependent must not take the older version's Ready for the new one's: a shard that
    has not taken the bundle's commit shows its deployments waiting for it (worse states,
    ErrApplied and Offline, stay), as a bundle's do while it plans."""
    joined = join_shard_states(
        [
            _part(["Ready", "ErrApplied", "Offline", "NotReady", None], stale=True),
            _part(["Ready"]),
        ],
        "key",
    )
    assert decode_states(joined.codes, sorted(joined.counts), 6) == [
        "WaitApplied",
        "ErrApplied",
        "Offline",
        "WaitApplied",
        None,
        "Ready",
    ]


# --- partition gates across shards ----------------------------------------------------------

GATED = RolloutStrategy.model_validate(
    {
        "partitions": [
            {"name": "canary", "clusterName": "c1", "soakTime": "10s"},
            {"name": "main", "clusterSelector": {}, "requireApproval": True},
        ]
    }
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _gated(
    canary_pending: int, record: GateRecord, now: datetime = T0
) -> tuple[list[str], str, GateRecord]:
    by_shard = {
        0: [counts("canary", 2, unavailable=canary_pending, pending=canary_pending)],
        1: [counts("canary", 1), counts("main", 50, unavailable=50, pending=50)],
        2: [counts("main", 50, unavailable=50, pending=50)],
    }
    out = gate_shards(GATED, by_shard, {}, record, now, size=50)
    return out.plan.reached, out.plan.gated, out.record


def test_a_soak_waits_for_the_partition_in_every_shard_then_the_approval_holds_main() -> None:
    record = GateRecord(version="v1")
    # One canary cluster of shard 0 is still on its way: no soak yet, main closed.
    reached, gated, record = _gated(1, record)
    assert (reached, gated) == (["canary"], "main")
    assert "canary" not in record.ready_at
    # Canary done in both shards: the soak starts; main stays closed for it and the approval.
    reached, gated, record = _gated(0, record)
    assert (reached, gated, record.ready_at["canary"]) == (["canary"], "main", T0)
    later = T0 + timedelta(seconds=11)
    reached, gated, record = _gated(0, record, later)
    assert (reached, gated) == (["canary"], "main")
    assert record.requested_at["main"] == T0  # the rollout has stood at main since
    # One approval opens main for every shard.
    approved = record.decided(Approval(partition="main", approved=True, user="ann", at=later))
    reached, gated, _ = _gated(0, approved, later)
    assert (reached, gated) == (["canary", "main"], "")


def test_a_rejection_halts_and_the_budgets_go_only_to_reached_partitions() -> None:
    record = GateRecord(version="v1", ready_at={"canary": T0}).decided(
        Approval(partition="main", approved=False, user="bob", reason="5xx", at=T0)
    )
    by_shard = {
        0: [counts("canary", 2)],
        1: [counts("main", 50, unavailable=50, pending=50)],
    }
    out = gate_shards(GATED, by_shard, {}, record, T0 + timedelta(minutes=1), size=50)
    assert out.decision.halted == "rollout halted: partition main rejected by bob: 5xx"
    assert out.plan.reached == ["canary"] and out.plan.gated == "main"
    assert "main" not in out.plan.budgets[1]


def test_a_failure_budget_holds_a_sharded_bundle_before_its_first_partition() -> None:
    strategy = RolloutStrategy.model_validate(
        {"partitions": [{"name": "canary", "clusterName": "c1", "failureBudget": 0}]}
    )
    by_shard = {0: [counts("canary", 1, unavailable=1, pending=1), counts("unmatched", 60)]}
    out = gate_shards(strategy, by_shard, {}, GateRecord(version="v1"), T0, size=50)
    assert out.plan.reached == [] and out.plan.gated == "canary"
    assert out.decision.halted.startswith(
        "rollout held: partition canary: failureBudget is not supported on a bundle rolled out "
        "in shards (more than 50 clusters)"
    )
    # A version already everywhere is not called held.
    done = {0: [counts("canary", 1), counts("unmatched", 60)]}
    assert gate_shards(strategy, done, {}, GateRecord(), T0, size=50).decision.halted == ""
