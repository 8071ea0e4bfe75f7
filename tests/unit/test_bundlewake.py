"""The bundle workflow's per-wake memo: what it returns is always what a fresh computation
gives, and it rebuilds only the clusters whose record or inputs changed."""

from __future__ import annotations

from dataclasses import dataclass, field

from flotilla.bundledeployment import DeploymentRecord
from flotilla.bundlewake import WakeMemo
from flotilla.status import BundleState

Record = DeploymentRecord[str]


@dataclass(frozen=True)
class View:
    labels: dict[str, str] = field(default_factory=dict)
    offline: str = ""


def fleet(count: int) -> tuple[dict[str, Record], dict[str, View]]:
    records = {
        f"c{i}": Record(cluster=f"c{i}", staged="v2", released="v1", applied="v1", release="r")
        for i in range(count)
    }
    return records, {name: View(labels={"n": name}) for name in records}


def fresh_states(
    records: dict[str, Record], views: dict[str, View], paused: set[str]
) -> dict[str, BundleState]:
    return {
        name: r.state(
            paused=name in paused,
            waiting_for=[],
            offline=views[name].offline if name in views else "",
        ).state
        for name, r in records.items()
    }


def fresh_targets(records: dict[str, Record], views: dict[str, View], paused: set[str]) -> list:
    return [
        records[name].rollout_target(
            labels=views[name].labels if name in views else {},
            paused=name in paused,
            blocked=False,
            offline=bool(name in views and views[name].offline),
        )
        for name in sorted(records)
    ]


def wake(memo: WakeMemo, records: dict[str, Record], views: dict[str, View], paused: set[str]):
    targets = memo.rollout_targets(
        records, sorted(records), views, paused=lambda n: n in paused, blocked=lambda _: False
    )
    states = memo.states(
        records, records, views, paused=lambda n: n in paused, waiting_for=lambda _: ()
    )
    return targets, {name: s.state for name, s in states.items()}


def test_every_change_of_record_or_input_shows_as_a_fresh_computation_would() -> None:
    records, views = fleet(6)
    paused: set[str] = set()
    memo = WakeMemo()
    steps = [
        lambda: records.update(c0=records["c0"].release_staged()),  # a deploy starts
        lambda: views.update(c1=View(labels={"n": "c1"}, offline="probe failed")),  # offline
        lambda: paused.add("c2"),  # the cluster is paused
        lambda: views.update(c3=View(labels={"n": "other"})),  # relabelled
        lambda: records.pop("c4"),  # no longer targeted
        lambda: views.pop("c5"),  # left the snapshot before the plan
        lambda: views.update(c1=View(labels={"n": "c1"})),  # answers again
    ]
    assert wake(memo, records, views, paused) == (
        fresh_targets(records, views, paused),
        fresh_states(records, views, paused),
    )
    for step in steps:
        step()
        assert wake(memo, records, views, paused) == (
            fresh_targets(records, views, paused),
            fresh_states(records, views, paused),
        )


def test_unchanged_clusters_are_not_rebuilt() -> None:
    records, views = fleet(50)
    memo = WakeMemo()
    first, _ = wake(memo, records, views, set())
    records["c7"] = records["c7"].release_staged()
    second, states = wake(memo, records, views, set())
    rebuilt = [a.cluster for a, b in zip(first, second, strict=True) if a is not b]
    assert rebuilt == ["c7"]
    assert states["c7"] is BundleState.WAIT_APPLIED


def test_the_memo_forgets_clusters_no_longer_there() -> None:
    records, views = fleet(10)
    memo = WakeMemo()
    wake(memo, records, views, set())
    for name in list(records)[3:]:
        del records[name]
    wake(memo, records, views, set())
    assert len(memo._targets._kept) == 3
    assert len(memo._states._kept) == 3
