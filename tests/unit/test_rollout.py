"""Fleet's rollout: limits, partitions, and passes of plan_rollout over simulated clusters."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from flotilla.errors import SpecError
from flotilla.models import RolloutStrategy
from flotilla.rollout import (
    UNMATCHED_PARTITION,
    RolloutPlan,
    RolloutState,
    RolloutTarget,
    is_unavailable,
    is_up_to_date,
    limit,
    make_partitions,
    plan_rollout,
)


def strategy(**fields: Any) -> RolloutStrategy:
    return RolloutStrategy.model_validate(fields)


def clusters(count: int, **fields: Any) -> list[RolloutTarget]:
    """``count`` clusters running v1, Ready, about to get v2."""
    base: dict[str, Any] = {"staged": "v2", "released": "v1", "applied": "v1", "ready": True}
    return [
        RolloutTarget.model_validate({"cluster": f"c{i:03d}", **base, **fields})
        for i in range(1, count + 1)
    ]


def plan(targets: list[RolloutTarget], **strategy_fields: Any) -> RolloutPlan:
    state = RolloutState(strategy=strategy(**strategy_fields), targets=targets)
    return plan_rollout(state)


# --- limit ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "value", "expected"),
    [
        (10, None, 10),
        (0, None, 1),
        (-3, "50%", 1),
        (0, 5, 1),
        (10, 3, 3),
        (10, 0, 0),
        (10, 15, 10),
        (10, -2, 0),
        (10, "50%", 5),
        (10, "0%", 1),
        (10, "-5%", 1),
        (10, "1%", 1),
        (10, "25%", 2),
        (200, "25%", 50),
        (7, "33%", 2),
        (16, "12.5%", 2),
        (8, "12.5%", 1),
        (10, "150%", 10),
        (10, "1e999%", 10),
        (10, "5", 5),
        (10, "+5", 5),
        (3, "5", 3),
    ],
)
def test_limit_follows_fleet(count: int, value: int | str | None, expected: int) -> None:
    assert limit(count, value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("abc", "ending with '%'"),
        ("0", "ending with '%'"),
        ("-1", "ending with '%'"),
        ("5x", "ending with '%'"),
        ("%", "not a valid percentage"),
        ("abc%", "not a valid percentage"),
        ("inf%", "not a valid percentage"),
        ("nan%", "not a valid percentage"),
        (" 5%", "not a valid percentage"),
        (True, "integer or a percentage"),
        (1.5, "integer or a percentage"),
    ],
)
def test_limit_errors_name_field_and_value(value: Any, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        limit(10, value, field="rolloutStrategy.maxUnavailable")
    message = str(caught.value)
    assert message.startswith("rolloutStrategy.maxUnavailable: ")
    assert fragment in message
    assert repr(value) in message


def test_limit_checks_the_value_even_without_clusters() -> None:
    with pytest.raises(SpecError):
        limit(0, "lots")


# --- make_partitions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "fields", "sizes"),
    [
        (1, {}, [1]),
        (199, {}, [199]),
        (200, {}, [50, 50, 50, 50]),
        (201, {}, [50, 50, 50, 50, 1]),
        (200, {"autoPartitionSize": "10%"}, [20] * 10),
        (200, {"autoPartitionSize": 30}, [30] * 6 + [20]),
        (200, {"autoPartitionSize": 0}, [200]),
        (500, {"autoPartitionSize": 0}, [500]),
        (10, {"autoPartitionThreshold": 10}, [2] * 5),
        (9, {"autoPartitionThreshold": 10}, [9]),
    ],
)
def test_auto_partitions(count: int, fields: dict[str, Any], sizes: list[int]) -> None:
    partitions = make_partitions(clusters(count), strategy(**fields))
    assert [len(p.clusters) for p in partitions] == sizes


def test_auto_partitions_are_sorted_by_cluster_name_and_named_by_position() -> None:
    targets = list(reversed(clusters(200)))
    partitions = make_partitions(targets, strategy())
    assert partitions[0].clusters[0] == "c001"
    assert partitions[-1].clusters[-1] == "c200"
    assert [p.name for p in partitions] == [
        "clusters 1-50",
        "clusters 51-100",
        "clusters 101-150",
        "clusters 151-200",
    ]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, [50, 50, 50, 50]),
        ({"maxUnavailable": "10%"}, [5, 5, 5, 5]),
        ({"maxUnavailable": 3}, [3, 3, 3, 3]),
        ({"maxUnavailable": 0}, [0, 0, 0, 0]),
    ],
)
def test_auto_partition_limit_is_the_rollouts_of_each_partition(
    fields: dict[str, Any], expected: list[int]
) -> None:
    partitions = make_partitions(clusters(200), strategy(**fields))
    assert [p.max_unavailable for p in partitions] == expected


def labelled(name: str, env: str, groups: dict[str, dict[str, str]] | None = None) -> RolloutTarget:
    return RolloutTarget(
        cluster=name,
        labels={"env": env},
        groups=groups or {},
        staged="v2",
        released="v1",
        applied="v1",
        ready=True,
    )


FLEET = [
    labelled("prod-a", "prod", {"eu": {"region": "eu"}}),
    labelled("prod-b", "prod", {"us": {"region": "us"}}),
    labelled("dev-a", "dev", {"eu": {"region": "eu"}}),
    labelled("stage-a", "stage"),
    labelled("canary", "prod"),
]


@pytest.mark.parametrize(
    ("partitions", "expected"),
    [
        (
            [{"name": "canary", "clusterName": "canary"}, {"clusterSelector": {}}],
            {"canary": ["canary"], "partition-2": ["dev-a", "prod-a", "prod-b", "stage-a"]},
        ),
        (
            [
                {"name": "dev", "clusterSelector": {"matchLabels": {"env": "dev"}}},
                {"name": "prod", "clusterSelector": {"matchLabels": {"env": "prod"}}},
            ],
            {"dev": ["dev-a"], "prod": ["canary", "prod-a", "prod-b"], "unmatched": ["stage-a"]},
        ),
        (
            [{"name": "eu", "clusterGroup": "eu"}, {"name": "us", "clusterGroup": "us"}],
            {"eu": ["dev-a", "prod-a"], "us": ["prod-b"], "unmatched": ["canary", "stage-a"]},
        ),
        (
            [{"name": "us", "clusterGroupSelector": {"matchLabels": {"region": "us"}}}],
            {"us": ["prod-b"], "unmatched": ["canary", "dev-a", "prod-a", "stage-a"]},
        ),
        (
            # Every criterion that is set must hold: prod AND in group eu.
            [
                {
                    "name": "x",
                    "clusterGroup": "eu",
                    "clusterSelector": {"matchLabels": {"env": "prod"}},
                }
            ],
            {"x": ["prod-a"], "unmatched": ["canary", "dev-a", "prod-b", "stage-a"]},
        ),
        (
            [
                {
                    "name": "not-prod",
                    "clusterSelector": {
                        "matchExpressions": [
                            {"key": "env", "operator": "NotIn", "values": ["prod"]}
                        ]
                    },
                }
            ],
            {"not-prod": ["dev-a", "stage-a"], "unmatched": ["canary", "prod-a", "prod-b"]},
        ),
        (
            # A cluster in no group is tried with empty group labels, which {} matches.
            [{"name": "g", "clusterGroupSelector": {}}],
            {"g": ["canary", "dev-a", "prod-a", "prod-b", "stage-a"]},
        ),
        (
            # A partition that sets no criterion takes nobody, as in Fleet.
            [{"name": "empty"}, {"name": "rest", "clusterSelector": {}}],
            {"empty": [], "rest": ["canary", "dev-a", "prod-a", "prod-b", "stage-a"]},
        ),
        (
            # First match wins: prod-a is in both, it goes to the first.
            [{"name": "a", "clusterName": "prod-a"}, {"name": "b", "clusterGroup": "eu"}],
            {"a": ["prod-a"], "b": ["dev-a"], "unmatched": ["canary", "prod-b", "stage-a"]},
        ),
    ],
)
def test_manual_partitions(
    partitions: list[dict[str, Any]], expected: dict[str, list[str]]
) -> None:
    made = make_partitions(FLEET, strategy(partitions=partitions))
    assert {p.name: p.clusters for p in made} == expected


def test_leftover_clusters_get_a_last_partition_with_a_note() -> None:
    made = make_partitions(FLEET, strategy(partitions=[{"clusterName": "canary"}]))
    assert [p.name for p in made] == ["partition-1", UNMATCHED_PARTITION]
    assert made[0].note == ""
    assert "4 cluster(s) match no partition" in made[1].note
    assert "Fleet would never deploy them" in made[1].note


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"partitions": [{"clusterSelector": {}}]}, 5),
        ({"maxUnavailable": 2, "partitions": [{"clusterSelector": {}}]}, 2),
        ({"maxUnavailable": 2, "partitions": [{"clusterSelector": {}, "maxUnavailable": 1}]}, 1),
        ({"partitions": [{"clusterSelector": {}, "maxUnavailable": "40%"}]}, 2),
        ({"partitions": [{"clusterSelector": {}, "maxUnavailable": "0%"}]}, 1),
    ],
)
def test_partition_limit_falls_back_to_rollout_then_all(
    fields: dict[str, Any], expected: int
) -> None:
    made = make_partitions(FLEET, strategy(**fields))
    assert made[0].max_unavailable == expected


# --- plan_rollout: single passes ---------------------------------------------------------------


def test_nothing_to_do_when_everything_runs_the_staged_version() -> None:
    result = plan(clusters(3, released="v2", applied="v2"))
    assert result.deploy == []
    assert result.done
    assert result.summary == "rollout complete: 3/3 clusters updated"


@pytest.mark.parametrize(
    ("fields", "moved"),
    [
        ({}, 6),
        ({"maxUnavailable": 1}, 1),
        ({"maxUnavailable": 2}, 2),
        ({"maxUnavailable": "50%"}, 3),
        ({"maxUnavailable": "34%"}, 2),
        ({"maxUnavailable": "0%"}, 1),
        ({"maxUnavailable": 0}, 0),
    ],
)
def test_max_unavailable_caps_one_pass(fields: dict[str, Any], moved: int) -> None:
    result = plan(clusters(6), **fields)
    assert result.deploy == [f"c{i:03d}" for i in range(1, moved + 1)]
    assert len(result.held) == 6 - moved


def test_an_unavailable_deployment_moves_even_when_the_budget_is_spent() -> None:
    targets = clusters(3)
    targets[1] = targets[1].model_copy(update={"ready": False})
    result = plan(targets, maxUnavailable=1)
    # c002 is already unavailable: it moves and spends nothing; c001 takes the only slot.
    assert result.deploy == ["c002"]
    assert result.held == ["c001", "c003"]


def test_paused_clusters_are_staged_not_deployed() -> None:
    targets = clusters(3)
    targets[0] = targets[0].model_copy(update={"paused": True})
    result = plan(targets)
    assert result.deploy == ["c002", "c003"]
    assert result.paused == ["c001"]
    assert not result.done


def test_clusters_waiting_for_dependencies_do_not_spend_the_budget() -> None:
    targets = clusters(3)
    targets[0] = targets[0].model_copy(update={"blocked": True})
    result = plan(targets, maxUnavailable=1)
    assert result.blocked == ["c001"]
    assert result.deploy == ["c002"]
    assert "1 waiting for dependencies" in result.summary


@pytest.mark.parametrize(
    ("fields", "deployed"),
    [
        ({}, ["c001"]),
        ({"maxUnavailablePartitions": 0}, ["c001"]),
        ({"maxUnavailablePartitions": 1}, ["c001", "c003"]),
        ({"maxUnavailablePartitions": 2}, ["c001", "c003", "c005"]),
        ({"maxUnavailablePartitions": "50%"}, ["c001", "c003"]),
        ({"maxUnavailablePartitions": "0%"}, ["c001", "c003"]),
    ],
)
def test_max_unavailable_partitions_lets_later_partitions_start(
    fields: dict[str, Any], deployed: list[str]
) -> None:
    partitions = [
        {"name": f"p{n}", "clusterSelector": {"matchLabels": {"wave": str(n)}}, "maxUnavailable": 1}
        for n in (1, 2, 3)
    ]
    targets = [
        t.model_copy(update={"labels": {"wave": str((i // 2) + 1)}})
        for i, t in enumerate(clusters(6))
    ]
    result = plan(targets, partitions=partitions, **fields)
    assert result.deploy == deployed


@pytest.mark.parametrize(("count", "moved"), [(199, 19), (200, 5)])
def test_auto_partitioning_starts_at_200_targets(count: int, moved: int) -> None:
    result = plan(clusters(count), maxUnavailable="10%")
    assert len(result.deploy) == moved
    assert result.total_partitions == (1 if count < 200 else 4)


@pytest.mark.parametrize(("max_new", "waves"), [(50, [50, 50, 20]), (100, [100, 20])])
def test_new_deployments_are_created_at_most_max_new_per_pass(
    max_new: int, waves: list[int]
) -> None:
    targets = clusters(120, released=None, applied=None, ready=False)
    seen = []
    for _ in waves:
        result = plan_rollout(RolloutState(strategy=strategy(), targets=targets, max_new=max_new))
        seen.append(len(result.deploy))
        targets = deploy(targets, result)
    assert seen == waves


def test_duplicate_clusters_are_refused() -> None:
    with pytest.raises(ValidationError, match="targeted twice"):
        RolloutState(targets=clusters(1) + clusters(1))


def test_no_targets_plans_nothing() -> None:
    result = plan([])
    assert result.deploy == []
    assert result.summary == "no clusters targeted"


@pytest.mark.parametrize(
    ("fields", "summary"),
    [
        (
            {"maxUnavailable": 1},
            "partition 1/1: 0/6 clusters updated, waiting for 1 to become "
            "Ready, 5 held by maxUnavailable",
        ),
        ({}, "partition 1/1: 0/6 clusters updated, waiting for 6 to become Ready"),
    ],
)
def test_summary_says_what_the_rollout_waits_for(fields: dict[str, Any], summary: str) -> None:
    assert plan(clusters(6), **fields).summary == summary


# --- plan_rollout: passes over simulated clusters ---------------------------------------------


def deploy(targets: list[RolloutTarget], result: RolloutPlan) -> list[RolloutTarget]:
    """The workflow tells each cluster in ``result.deploy`` to run its staged version."""
    chosen = set(result.deploy)
    return [
        t.model_copy(update={"released": t.staged}) if t.cluster in chosen else t for t in targets
    ]


def settle(targets: list[RolloutTarget]) -> list[RolloutTarget]:
    """Every cluster applies what it was told and becomes Ready."""
    return [t.model_copy(update={"applied": t.released, "ready": True}) for t in targets]


def roll_out(
    targets: list[RolloutTarget], rollout: RolloutStrategy, *, passes: int = 50
) -> list[list[str]]:
    """Plan, deploy, check Fleet's invariants, settle, until done; return each pass's moves."""
    partition_of = {
        c: i for i, p in enumerate(make_partitions(targets, rollout)) for c in p.clusters
    }
    history: list[list[str]] = []
    for _ in range(passes):
        result = plan_rollout(RolloutState(strategy=rollout, targets=targets))
        if result.done:
            return history
        before = {t.cluster: t for t in targets}
        # Moves that take an available deployment down spend budget, bundle-wide and per partition.
        spent = [
            c
            for c in result.deploy
            if before[c].released is not None and not is_unavailable(before[c])
        ]
        down = sum(is_unavailable(t) for t in targets)
        assert not spent or down + len(spent) <= result.max_unavailable
        for index, status in enumerate(result.partitions):
            in_partition = [c for c in spent if partition_of[c] == index]
            assert len(in_partition) <= status.max_unavailable
        # Partitions are entered in order.
        assert [partition_of[c] for c in result.deploy] == sorted(
            partition_of[c] for c in result.deploy
        )
        history.append(result.deploy)
        targets = settle(deploy(targets, result))
    raise AssertionError(f"not done after {passes} passes: {history}")


def waves(count: int) -> list[RolloutTarget]:
    return [
        t.model_copy(update={"labels": {"wave": str((i * 3) // count + 1)}})
        for i, t in enumerate(clusters(count))
    ]


WAVE_PARTITIONS = [
    {"name": f"wave-{n}", "clusterSelector": {"matchLabels": {"wave": str(n)}}} for n in (1, 2, 3)
]


def test_six_clusters_three_partitions_one_at_a_time() -> None:
    history = roll_out(waves(6), strategy(maxUnavailable=1, partitions=WAVE_PARTITIONS))
    assert history == [["c001"], ["c002"], ["c003"], ["c004"], ["c005"], ["c006"]]


def test_partitions_finish_in_order_during_an_upgrade() -> None:
    rollout = strategy(
        maxUnavailable="50%",
        partitions=[{**p, "maxUnavailable": 1} for p in WAVE_PARTITIONS],
    )
    # A partition counts as available with one cluster still to go (its limit is 1), so the
    # next partition starts while the previous one finishes, as in Fleet.
    assert roll_out(waves(6), rollout) == [
        ["c001"],
        ["c002", "c003"],
        ["c004", "c005"],
        ["c006"],
    ]


def test_first_install_goes_partition_by_partition() -> None:
    targets = [
        t.model_copy(update={"released": None, "applied": None, "ready": False}) for t in waves(6)
    ]
    history = roll_out(targets, strategy(maxUnavailable=1, partitions=WAVE_PARTITIONS))
    # New deployments are not gated by maxUnavailable (they are unavailable already), but a
    # partition still has to become available before the next one starts.
    assert history == [["c001", "c002"], ["c003", "c004"], ["c005", "c006"]]


def test_leftover_clusters_are_deployed_last() -> None:
    stray = RolloutTarget(cluster="a-stray", staged="v2", released="v1", applied="v1", ready=True)
    targets = [*waves(6), stray]
    rollout = strategy(maxUnavailable=1, partitions=WAVE_PARTITIONS[:2])
    history = roll_out(targets, rollout)
    order = [c for step in history for c in step]
    assert order[-3:] == ["a-stray", "c005", "c006"]


@pytest.mark.parametrize("max_partitions", [0, 1])
def test_partition_gate_with_max_unavailable_partitions(max_partitions: int) -> None:
    rollout = strategy(
        maxUnavailablePartitions=max_partitions,
        partitions=[{**p, "maxUnavailable": 1} for p in WAVE_PARTITIONS],
    )
    history = roll_out(waves(6), rollout)
    assert len(history[0]) == max_partitions + 1
    assert sorted(c for step in history for c in step) == [f"c{i:03d}" for i in range(1, 7)]


def test_a_cluster_that_never_becomes_ready_holds_the_next_partition() -> None:
    targets = waves(6)
    rollout = strategy(partitions=[{**p, "maxUnavailable": "0%"} for p in WAVE_PARTITIONS])
    first = plan_rollout(RolloutState(strategy=rollout, targets=targets))
    assert first.deploy == ["c001"]
    targets = deploy(targets, first)
    # c001 applied v2 but stays NotReady.
    targets = [
        t.model_copy(update={"applied": t.released, "ready": t.cluster != "c001"}) for t in targets
    ]
    second = plan_rollout(RolloutState(strategy=rollout, targets=targets))
    assert second.deploy == []
    assert second.current_partition == 1
    assert [s.reached for s in second.partitions] == [True, False, False]
    assert second.waiting == ["c003", "c004", "c005", "c006"]
    assert second.summary == (
        "partition 1/3: 1/2 clusters updated, waiting for 1 to become Ready, "
        "1 held by maxUnavailable"
    )


@pytest.mark.parametrize(
    ("target", "unavailable", "up_to_date"),
    [
        ({"released": None, "applied": None, "ready": False}, False, False),
        ({"released": "v1", "applied": "v1", "ready": True}, False, False),
        ({"released": "v2", "applied": "v1", "ready": True}, True, False),
        ({"released": "v2", "applied": "v2", "ready": False}, True, True),
        ({"released": "v2", "applied": "v2", "ready": True}, False, True),
    ],
)
def test_unavailable_and_up_to_date(
    target: dict[str, Any], unavailable: bool, up_to_date: bool
) -> None:
    model = RolloutTarget.model_validate({"cluster": "c", "staged": "v2", **target})
    assert is_unavailable(model) is unavailable
    assert is_up_to_date(model) is up_to_date


@pytest.mark.parametrize(
    ("flag", "reason"), [("paused", "1 paused"), ("blocked", "1 waiting for dependencies")]
)
def test_a_held_back_cluster_catches_up_once_released(flag: str, reason: str) -> None:
    targets = clusters(3)
    targets[1] = targets[1].model_copy(update={flag: True})
    rollout = strategy(maxUnavailable=1)
    history = []
    for _ in range(3):
        result = plan_rollout(RolloutState(strategy=rollout, targets=targets))
        history.append(result.deploy)
        targets = settle(deploy(targets, result))
    assert history == [["c001"], ["c003"], []]
    stuck = plan_rollout(RolloutState(strategy=rollout, targets=targets))
    assert not stuck.done
    assert stuck.summary == f"partition 1/1: 2/3 clusters updated, {reason}"
    targets[1] = targets[1].model_copy(update={flag: False})
    released = plan_rollout(RolloutState(strategy=rollout, targets=targets))
    assert released.deploy == ["c002"]
    final = plan_rollout(RolloutState(strategy=rollout, targets=settle(deploy(targets, released))))
    assert final.done
