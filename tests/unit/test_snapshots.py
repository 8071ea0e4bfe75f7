"""The registry's snapshot by digest: deltas, headers and shards' parts (flotilla.snapshots)."""

from __future__ import annotations

import pytest

from flotilla.shards import shard_boundaries, shard_of
from flotilla.snapshots import (
    ClusterSnapshot,
    ClusterView,
    apply_delta,
    encode_snapshot,
    snapshot_delta,
    snapshot_header,
    snapshot_parts,
    too_big_inline,
)


def snap(version: int, **labels: dict[str, str]) -> ClusterSnapshot:
    return ClusterSnapshot(
        namespace="ns",
        version=version,
        clusters=[ClusterView(name=n, labels=v) for n, v in sorted(labels.items())],
    )


BEFORE = snap(1, a={"env": "dev"}, b={"env": "prod"}, c={})


@pytest.mark.parametrize(
    ("after", "changed", "removed"),
    [
        (snap(1, a={"env": "dev"}, b={"env": "prod"}, c={}), [], []),
        (snap(2, a={"env": "prod"}, b={"env": "prod"}, c={}), ["a"], []),
        (snap(2, a={"env": "dev"}, c={}), [], ["b"]),
        (snap(2, a={"env": "dev"}, b={"env": "prod"}, c={}, d={"x": "y"}), ["d"], []),
        (snap(3, b={"env": "prod"}, c={"z": "1"}, e={}), ["c", "e"], ["a"]),
    ],
)
def test_a_delta_holds_only_what_changed_and_rebuilds_the_snapshot(
    after: ClusterSnapshot, changed: list[str], removed: list[str]
) -> None:
    delta = snapshot_delta(BEFORE, "base", after)
    assert [c.name for c in delta.changed] == changed
    assert delta.removed == removed
    assert delta.header.clusters == []
    assert apply_delta(BEFORE, delta) == after


def test_without_a_base_the_delta_is_the_whole_snapshot() -> None:
    delta = snapshot_delta(None, "", BEFORE)
    assert delta.base == ""
    assert [c.name for c in delta.changed] == ["a", "b", "c"]
    assert apply_delta(None, delta) == BEFORE


def test_reachability_and_groups_travel_in_the_delta() -> None:
    offline = BEFORE.model_copy(
        update={
            "clusters": [
                c.model_copy(update={"offline": "no answer"}) if c.name == "b" else c
                for c in BEFORE.clusters
            ],
            "notifications": True,
        }
    )
    delta = snapshot_delta(BEFORE, "base", offline)
    assert [c.name for c in delta.changed] == ["b"]
    assert apply_delta(BEFORE, delta) == offline


def test_a_header_says_where_the_clusters_are_and_how_many() -> None:
    data = encode_snapshot(BEFORE)
    header = snapshot_header(BEFORE, "d" * 64, len(data))
    assert header.clusters == []
    assert header.by_digest and header.size == 3
    assert header.version == 1 and header.stored_bytes == len(data)
    # The stored form leaves the header's fields out: equal snapshots, equal bytes.
    assert encode_snapshot(header.model_copy(update={"clusters": BEFORE.clusters})) == data
    assert b"clusters_digest" not in data
    # An inline snapshot's JSON is what it always was.
    assert "clusters_digest" not in BEFORE.model_dump_json()


def test_a_part_with_no_clusters_has_nothing_to_load() -> None:
    empty = ClusterSnapshot(namespace="ns", clusters_digest="d" * 64)
    assert not empty.by_digest and empty.size == 0


def test_parts_follow_the_shard_ranges_and_ignore_the_version() -> None:
    names = {f"c{i:03d}": {} for i in range(120)}
    first = snap(1, **names)
    boundaries, parts = snapshot_parts(first, [], 50)
    assert boundaries == shard_boundaries(names, 50)
    assert [len(p.clusters) for p in parts] == [50, 50, 20]
    for index, part in enumerate(parts):
        assert part.version == 0
        assert all(shard_of(c.name, boundaries) == index for c in part.clusters)
    # One cluster's labels changed: only its part's bytes change, whatever the version.
    changed = snap(7, **{**names, "c060": {"zone": "b"}})
    _, again = snapshot_parts(changed, boundaries, 50)
    same = [encode_snapshot(a) == encode_snapshot(b) for a, b in zip(parts, again, strict=True)]
    assert same == [True, False, True]


@pytest.mark.parametrize("count", [0, 1, 10, 100, 1000])
@pytest.mark.parametrize("limit", [0, 60, 500, 5_000, 50_000])
def test_too_big_inline_agrees_with_the_json_size(count: int, limit: int) -> None:
    snapshot = ClusterSnapshot(
        namespace="ns", clusters=[ClusterView(name="") for _ in range(count)]
    )
    assert too_big_inline(snapshot, limit) == (len(snapshot.model_dump_json()) > limit)
