"""Gates between partitions (flotilla.gates) and how plan_rollout honours closed partitions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from flotilla.errors import SpecError
from flotilla.gates import (
    Approval,
    ClusterHealth,
    GateRecord,
    check_approval,
    count_failures,
    decide,
    observe,
    partition_gates,
    partition_order,
    rolls_back,
    statuses,
)
from flotilla.models import FleetYaml, RolloutStrategy
from flotilla.rollout import RolloutState, RolloutTarget, plan_rollout

T0 = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)


def _strategy(**main: object) -> RolloutStrategy:
    return RolloutStrategy.model_validate(
        {
            "partitions": [
                {"name": "canary", "clusterName": "c1", "soakTime": "10m"},
                {"name": "main", "clusterSelector": {}, **main},
            ]
        }
    )


def _targets(*, up_to_date: set[str] = frozenset()) -> list[RolloutTarget]:  # type: ignore[assignment]
    return [
        RolloutTarget(
            cluster=c,
            staged="v2",
            released="v2" if c in up_to_date else "v1",
            applied="v2" if c in up_to_date else "v1",
            ready=True,
        )
        for c in ("c1", "c2", "c3")
    ]


def test_gates_are_read_from_partitions_and_fleet_ignores_nothing_it_knows() -> None:
    strategy = _strategy(requireApproval=True, approvalDeadline="1h")
    gates = partition_gates(strategy)
    assert gates["canary"].soak == timedelta(minutes=10) and not gates["canary"].require_approval
    assert gates["main"].require_approval and gates["main"].approval_deadline == timedelta(hours=1)
    assert partition_order(strategy) == ["canary", "main", "unmatched"]
    assert partition_gates(RolloutStrategy()) == {}


def test_a_deadline_without_approval_is_a_one_line_error() -> None:
    with pytest.raises(ValueError, match="approvalDeadline needs requireApproval: true"):
        FleetYaml.model_validate(
            {"rolloutStrategy": {"partitions": [{"name": "a", "approvalDeadline": "1h"}]}}
        )


def test_soak_keeps_the_next_partition_closed_until_it_has_passed() -> None:
    strategy = _strategy()
    gates, order = partition_gates(strategy), partition_order(strategy)
    state = RolloutState(strategy=strategy, targets=_targets())
    # canary not Ready at the new version yet: main waits for it (the rollout would anyway).
    first = decide(gates, order, GateRecord(version="d2"), T0)
    assert "must be Ready for 10m" in first.closed["main"]
    plan = plan_rollout(state.model_copy(update={"closed": first.closed}))
    assert plan.deploy == ["c1"]
    # canary Ready: observe starts the soak; main stays closed until T0 + 10m, with a timer.
    done = RolloutState(strategy=strategy, targets=_targets(up_to_date={"c1"}))
    record = GateRecord(version="d2")
    plan = plan_rollout(done.model_copy(update={"closed": first.closed}))
    assert plan.deploy == [] and plan.gated == ["c2", "c3"] and plan.gated_partition == "main"
    record = observe(
        gates, record, partitions=plan.partitions, gated_partition=plan.gated_partition, now=T0
    )
    assert record.ready_at == {"canary": T0}
    soaking = decide(gates, order, record, T0 + timedelta(minutes=5))
    assert soaking.closed["main"] == "soaking partition canary until 2026-12-04 03:10:00 UTC"
    assert soaking.due == T0 + timedelta(minutes=10)
    assert (
        "soaking partition canary"
        in plan_rollout(done.model_copy(update={"closed": soaking.closed})).summary
    )
    soaked = decide(gates, order, record, T0 + timedelta(minutes=10))
    assert soaked.closed == {} and soaked.due is None
    assert plan_rollout(done.model_copy(update={"closed": soaked.closed})).deploy == ["c2", "c3"]


def test_approval_opens_the_partition_and_a_rejection_halts_it() -> None:
    strategy = _strategy(requireApproval=True)
    gates, order = partition_gates(strategy), partition_order(strategy)
    record = GateRecord(version="d2", ready_at={"canary": T0 - timedelta(hours=1)})
    waiting = decide(gates, order, record, T0)
    assert waiting.closed == {"main": "waiting for approval of partition main"}
    assert waiting.halted == "" and waiting.due is None  # no deadline: no timer
    approved = record.decided(Approval(partition="main", approved=True, user="ann", at=T0))
    assert decide(gates, order, approved, T0).closed == {}
    rejected = record.decided(
        Approval(partition="main", approved=False, user="bob", reason="error rate up", at=T0)
    )
    decision = decide(gates, order, rejected, T0)
    assert decision.halted == "rollout halted: partition main rejected by bob: error rate up"
    assert decision.closed["main"] == decision.halted
    # A new version closes every gate again.
    assert approved.for_version("d3") == GateRecord(version="d3")
    assert approved.for_version("d2") is approved


def test_an_approval_deadline_that_passes_is_a_rejection_and_says_so() -> None:
    strategy = _strategy(requireApproval=True, approvalDeadline="30m")
    gates, order = partition_gates(strategy), partition_order(strategy)
    record = GateRecord(
        version="d2", ready_at={"canary": T0 - timedelta(hours=1)}, requested_at={"main": T0}
    )
    before = decide(gates, order, record, T0 + timedelta(minutes=29))
    assert before.closed["main"] == (
        "waiting for approval of partition main (deadline 2026-12-04 03:30:00 UTC)"
    )
    assert before.due == T0 + timedelta(minutes=30)
    late = T0 + timedelta(minutes=30)
    after = decide(gates, order, record, late)
    assert after.halted == (
        "rollout halted: partition main not approved within 30m (deadline 2026-12-04 03:30:00 UTC)"
    )
    expired = observe(gates, record, partitions=[], gated_partition="main", now=late)
    assert expired.approvals["main"].expired and not expired.approvals["main"].approved
    shown = {g.partition + "/" + g.state for g in statuses(gates, expired, after, late)}
    assert shown == {"main/Expired", "canary/Soaked"}


def test_the_deadline_starts_when_the_rollout_reaches_the_partition() -> None:
    strategy = _strategy(requireApproval=True, approvalDeadline="30m")
    gates = partition_gates(strategy)
    record = observe(gates, GateRecord(version="d2"), partitions=[], gated_partition="", now=T0)
    assert record.requested_at == {}
    record = observe(gates, record, partitions=[], gated_partition="main", now=T0)
    again = observe(
        gates, record, partitions=[], gated_partition="main", now=T0 + timedelta(minutes=1)
    )
    assert again.requested_at == {"main": T0}


@pytest.mark.parametrize(
    ("partition", "user", "reason", "message"),
    [
        ("canary", "ann", "", "partition 'canary' has no approval gate (partitions that ask"),
        ("mian", "ann", "", "partition 'mian' has no approval gate"),
        ("main", " ", "", "who approves must be given"),
        ("main", "ann", "x" * 201, "longer than 200"),
    ],
)
def test_approvals_no_gate_asks_for_are_refused_in_one_line(
    partition: str, user: str, reason: str, message: str
) -> None:
    gates = partition_gates(_strategy(requireApproval=True))
    with pytest.raises(SpecError, match=re.escape(message)) as err:
        check_approval(gates, partition, user=user, reason=reason)
    assert "\n" not in str(err.value)


def test_a_partition_already_at_its_version_is_never_held_by_its_gate() -> None:
    strategy = _strategy(requireApproval=True)
    state = RolloutState(
        strategy=strategy,
        targets=_targets(up_to_date={"c1", "c2", "c3"}),
        closed={"main": "waiting for approval of partition main"},
    )
    plan = plan_rollout(state)
    assert plan.done and plan.gated == [] and plan.gate == ""


def _budget_strategy(budget: object, deadline: str = "1m") -> RolloutStrategy:
    return RolloutStrategy.model_validate(
        {
            "partitions": [
                {
                    "name": "canary",
                    "clusterName": "c1",
                    "failureBudget": budget,
                    "failureDeadline": deadline,
                },
                {"name": "main", "clusterSelector": {}},
            ]
        }
    )


def test_a_spent_failure_budget_halts_every_later_partition() -> None:
    strategy = _budget_strategy(0)
    gates, order = partition_gates(strategy), partition_order(strategy)
    record = observe(
        gates, GateRecord(version="d2"), partitions=[], gated_partition="", now=T0, released=["c1"]
    )
    assert record.released_at == {"c1": T0}
    bad = {"canary": [ClusterHealth(cluster="c1", ok=False, reason="ErrApplied: denied")]}
    # Within the deadline a failing cluster is given its time, with a timer for the deadline,
    # and no later partition starts before the canary's verdict.
    early, due = count_failures(gates, record, bad, T0 + timedelta(seconds=30))
    assert early == record and due == T0 + timedelta(minutes=1)
    waiting = decide(gates, order, record, T0 + timedelta(seconds=30), bad)
    assert waiting.closed["main"] == (
        "waiting for partition canary to be Ready (failure budget 0, 1m per cluster)"
    )
    good = {"canary": [ClusterHealth(cluster="c1", ok=True)]}
    assert decide(gates, order, record, T0 + timedelta(seconds=30), good).closed == {}
    halted, due = count_failures(gates, record, bad, T0 + timedelta(minutes=1))
    assert due is None and halted.halted_partition == "canary"
    assert halted.halted == (
        "rollout halted: partition canary: 1 of 1 cluster(s) not Ready 1m after release, "
        "failure budget 0 (c1: ErrApplied: denied)"
    )
    decision = decide(gates, order, halted, T0 + timedelta(minutes=1))
    assert decision.halted == halted.halted
    assert set(decision.closed) == {"main", "unmatched"}
    state = RolloutState(
        strategy=strategy, targets=_targets(up_to_date={"c1"}), closed=decision.closed
    )
    plan = plan_rollout(state)
    assert plan.deploy == [] and plan.gated == ["c2", "c3"] and plan.gate == halted.halted
    # The halt stays for this version even when the cluster recovers; a new version clears it.
    ok = {"canary": [ClusterHealth(cluster="c1", ok=True)]}
    assert count_failures(gates, halted, ok, T0 + timedelta(minutes=2))[0] == halted
    assert halted.for_version("d3").halted == ""


def test_a_failure_budget_counts_only_past_the_budget() -> None:
    strategy = _budget_strategy("50%")
    gates = partition_gates(strategy)
    late = T0 + timedelta(minutes=5)
    record = GateRecord(version="d2", released_at={f"c{i}": T0 for i in range(4)})
    one_bad = {
        "canary": [ClusterHealth(cluster=f"c{i}", ok=i != 0, reason="NotReady") for i in range(4)]
    }
    assert count_failures(gates, record, one_bad, late)[0].halted == ""
    three_bad = {
        "canary": [ClusterHealth(cluster=f"c{i}", ok=i == 3, reason="x") for i in range(4)]
    }
    assert "3 of 4 cluster(s)" in count_failures(gates, record, three_bad, late)[0].halted


def test_a_failure_deadline_needs_a_budget() -> None:
    with pytest.raises(ValueError, match="failureDeadline needs a failureBudget"):
        FleetYaml.model_validate(
            {"rolloutStrategy": {"partitions": [{"name": "a", "failureDeadline": "1m"}]}}
        )


def test_auto_rollback_needs_a_budget_and_answers_only_a_spent_budget() -> None:
    with pytest.raises(ValueError, match="autoRollback needs a failureBudget"):
        FleetYaml.model_validate(
            {"rolloutStrategy": {"partitions": [{"name": "a", "autoRollback": True}]}}
        )
    strategy = RolloutStrategy.model_validate(
        {
            "partitions": [
                {"name": "canary", "clusterName": "c1", "failureBudget": 0, "autoRollback": True},
                {"name": "main", "clusterSelector": {}, "requireApproval": True},
            ]
        }
    )
    gates = partition_gates(strategy)
    assert gates["canary"].auto_rollback and not gates["main"].auto_rollback
    halted = GateRecord(version="d2", halted="rollout halted: ...", halted_partition="canary")
    assert rolls_back(gates, halted)
    assert not rolls_back(gates, GateRecord(version="d2"))
    # A person's rejection halts too, but is never rolled back automatically.
    rejected = GateRecord(version="d2", halted="", halted_partition="")
    assert not rolls_back(gates, rejected)
    without = partition_gates(_budget_strategy(0))
    assert not rolls_back(without, halted)
