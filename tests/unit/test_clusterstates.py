"""Packed per-cluster states: exact round trips, and a GitRepo's state bounded at 50 × 500."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from activities.gitops_models import BundleRef
from flotilla.clusterstates import (
    cluster_index,
    decode_states,
    encode_states,
    expand_report,
    join_packed,
    pack_report,
    read_report,
    readable,
    repack,
    split_packed,
    states_by_position,
    tally_packed,
    with_packed,
)
from flotilla.status import (
    SEVERITY,
    BundleReport,
    BundleState,
    StateWithMessage,
    reported_summary,
    summarize,
    summarize_gitrepo,
    tally_report,
)
from starters.tables import describe_gitrepo
from workflows.bundle_models import DependencyStates
from workflows.gitrepo_models import GitRepoState, GitRepoStatus
from workflows.registry_models import ClusterSnapshot, ClusterView

S = BundleState
CLUSTERS = [f"cluster-{i:04d}" for i in range(500)]
BUNDLES = [f"bundle-{b:02d}" for b in range(50)]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
MESSAGE = "deployment shop/web: 0/3 replicas available; pod web-7c9f: ImagePullBackOff (registry)"


def report(states: dict[str, BundleState], **fields: Any) -> BundleReport:
    ready = sum(1 for s in states.values() if s is S.READY)
    base: dict[str, Any] = {
        "bundle": "web",
        "commit": COMMIT,
        "ready": ready,
        "desired": len(states),
        "state": min(states.values(), key=SEVERITY.index, default=S.READY),
        "message": "",
        "states": states,
    }
    return BundleReport(**{**base, **fields})


@pytest.mark.parametrize(
    "states",
    [
        {},
        {"a": S.READY},
        {"a": S.READY, "b": S.NOT_READY, "c": S.READY},
        dict.fromkeys(CLUSTERS, S.READY),
        {c: SEVERITY[i % len(SEVERITY)] for i, c in enumerate(CLUSTERS)},
        {c: S.ERR_APPLIED for c in CLUSTERS[::3]},  # clusters the bundle does not target
        {"gone": S.MODIFIED, "a": S.READY},  # a deployment on a cluster no longer listed
    ],
    ids=["none", "one", "mixed", "all-ready", "every-state", "a-third", "outside"],
)
def test_packed_states_read_back_exactly(states: dict[str, BundleState]) -> None:
    index = cluster_index([*CLUSTERS, "a", "b", "c"])

    packed = pack_report(report(states), index)

    assert packed.codes or not states.keys() & set(index.names)
    assert expand_report(packed, index).states == states
    assert len(packed.codes) <= len(index.names)
    assert packed.counts == {str(s): n for s, n in _counts(states).items()}
    # What is not on the list stays unpacked.
    assert packed.states == {n: s for n, s in states.items() if n not in index.position}


def test_a_report_packed_against_another_list_is_kept_but_not_read() -> None:
    old, new = cluster_index(["a", "b"]), cluster_index(["a", "b", "c"])
    packed = pack_report(report({"a": S.READY, "b": S.NOT_READY}), old)

    assert not readable(packed, new)
    assert expand_report(packed, new) is packed
    assert pack_report(packed, new) is packed
    # Read with its own list and packed for the new one, nothing is lost.
    moved = pack_report(expand_report(packed, old), new)
    assert expand_report(moved, new).states == {"a": S.READY, "b": S.NOT_READY}


def test_a_change_of_the_cluster_list_loses_no_state() -> None:
    """A cluster added and one removed: stored reports are repacked for the new list (the
    removed cluster's deployment stays, unpacked, until the bundle reports it gone), and a
    bundle's report packed against the old list before it was told is read with that."""
    old, new = cluster_index(["a", "b", "gone"]), cluster_index(["a", "b", "new"])
    states = {"a": S.READY, "b": S.NOT_READY, "gone": S.ERR_APPLIED}
    stored = {"web": pack_report(report(states), old), "db": report({"a": S.READY})}

    moved = repack(stored, old, new)

    assert moved["web"].clusters_key == new.key and moved["web"].states == {"gone": S.ERR_APPLIED}
    assert expand_report(moved["web"], new).states == states
    assert moved["db"].codes and expand_report(moved["db"], new).states == {"a": S.READY}
    elsewhere = pack_report(report({"a": S.READY}), cluster_index(["a", "z"]))
    assert repack({"x": elsewhere}, old, new) == {"x": elsewhere}  # unreadable: kept as it is
    late = pack_report(report({"a": S.READY, "b": S.READY}), old)
    assert read_report(late, new, old).states == {"a": S.READY, "b": S.READY}
    assert read_report(late, new, None).codes  # without the old list: not readable


def test_reports_of_older_runs_still_read_and_pack() -> None:
    older = BundleReport.model_validate(
        {
            "bundle": "web",
            "commit": "c1",
            "ready": 1,
            "desired": 2,
            "state": "NotReady",
            "message": "b: not ready",
            "states": {"a": "Ready", "b": "NotReady"},
        }
    )
    index = cluster_index(["a", "b"])
    assert expand_report(older, index) is older
    assert expand_report(pack_report(older, index), index).states == older.states
    # New fields stay out of an unpacked report's JSON, as older runs wrote it.
    assert set(older.model_dump(mode="json")) == {
        "bundle",
        "commit",
        "ready",
        "desired",
        "state",
        "message",
        "states",
        "retired",
        "partitions_done",
    }


def test_the_report_names_a_few_non_ready_with_short_messages_and_counts_all() -> None:
    states = {
        c: StateWithMessage(state=S.NOT_READY if i % 2 else S.READY, message=MESSAGE * 3)
        for i, c in enumerate(CLUSTERS)
    }
    counts, shown = reported_summary(summarize(states))

    assert counts == {"NotReady": 250, "Ready": 250}
    assert [e.name for e in shown] == ["cluster-0001", "cluster-0003", "cluster-0005"]
    assert all(len(e.message) <= 120 for e in shown)


def _counts(states: dict[str, BundleState]) -> dict[BundleState, int]:
    out: dict[BundleState, int] = {}
    for state in states.values():
        out[state] = out.get(state, 0) + 1
    return out


# --- size at 50 bundles × 500 clusters ------------------------------------------------------


def _mid_rollout(bundle: int, *, interleaved: bool) -> dict[str, StateWithMessage]:
    """A bundle half-way through a rollout with failures, long messages and every state
    somewhere: changing from one cluster to the next (``interleaved``, the worst case for the
    packing), or in runs of clusters as partitions of a rollout leave them."""
    if interleaved:
        cycle = itertools.cycle(SEVERITY)
        for _ in range(bundle):
            next(cycle)
        shown = list(itertools.islice(cycle, len(CLUSTERS)))
    else:
        shown = [SEVERITY[(i * len(SEVERITY)) // len(CLUSTERS)] for i in range(len(CLUSTERS))]
    return {
        c: StateWithMessage(state=s, message="" if s is S.READY else MESSAGE)
        for c, s in zip(CLUSTERS, shown, strict=True)
    }


def _gitrepo_state(*, packed: bool, interleaved: bool = True) -> GitRepoState:
    index = cluster_index(CLUSTERS)
    reports = {}
    for b, name in enumerate(BUNDLES):
        states = _mid_rollout(b, interleaved=interleaved)
        summary = summarize(states)
        plain = BundleReport(
            bundle=name,
            commit=COMMIT,
            ready=summary.ready,
            desired=summary.desired,
            state=summary.state,
            message=summary.message,
            states={c: item.state for c, item in states.items()},
        )
        if packed:
            counts, shown = reported_summary(summary)
            plain = pack_report(
                plain.model_copy(update={"counts": counts, "non_ready": shown}), index
            )
        reports[name] = plain
    return GitRepoState.model_validate(
        {
            "namespace": "fleet-default",
            "name": "shop",
            "spec": {"repo": "https://git.example.com/shop.git", "branch": "main"},
            "commit": COMMIT,
            "bundles": {
                n: BundleRef(name=n, path=f"apps/{n}", digest="sha256:" + "0" * 64) for n in BUNDLES
            },
            "reports": reports,
        }
    )


def _size(model: Any, **exclude: Any) -> int:
    return len(model.model_dump_json(**exclude).encode())


def _query(state: GitRepoState) -> GitRepoStatus:
    index = cluster_index(CLUSTERS)
    summary = summarize_gitrepo(
        state.bundles.values(),
        {n: expand_report(r, index) for n, r in state.reports.items()},
        commit=state.commit,
    )
    return GitRepoStatus(
        namespace=state.namespace,
        name=state.name,
        repo=state.spec.repo,
        branch="main",
        commit=state.commit,
        ready_clusters=summary.ready_clusters,
        desired_ready_clusters=summary.desired_ready_clusters,
        ready_bundle_deployments=summary.ready_bundle_deployments,
        state=summary.state,
        message=summary.message,
        error="",
        bundles=summary.bundles,
        deployment_counts=summary.deployment_counts,
    )


def test_a_gitrepos_state_and_status_stay_small_at_50_bundles_on_500_clusters() -> None:
    before, after = _gitrepo_state(packed=False), _gitrepo_state(packed=True)
    snapshot = ClusterSnapshot(
        namespace="fleet-default",
        version=7,
        clusters=[ClusterView(name=c, labels={"env": "prod", "region": "eu"}) for c in CLUSTERS],
    )
    in_runs = _gitrepo_state(packed=True, interleaved=False)
    sizes = {
        "state before": _size(before),
        "reports before": _size(before, include={"reports"}),
        "status query before": _size(_query(before)),
        "state after": _size(after),
        "reports after": _size(after, include={"reports"}),
        "status query after": _size(_query(after)),
        "state after, states in runs": _size(in_runs),
        "registry snapshot (the same before and after)": _size(snapshot),
    }
    print(sizes)  # bench/RESULTS.md quotes these (pytest -s)

    assert sizes["state before"] > 500_000  # what issue 12 is about
    # The worst case: every bundle's clusters in all nine states, changing at every cluster.
    assert sizes["reports after"] < 64 * 1024
    assert sizes["state after"] < 80 * 1024
    assert sizes["status query after"] < 64 * 1024
    # A rollout's states come in runs of clusters: the whole state is under 64 KB.
    assert sizes["state after, states in runs"] < 64 * 1024
    # Packed or not, the GitRepo shows the same numbers.
    index = cluster_index(CLUSTERS)
    for name, packed in after.reports.items():
        assert expand_report(packed, index).states == before.reports[name].states
    shown_before, shown_after = _query(before), _query(after)
    assert (shown_after.ready_clusters, shown_after.desired_ready_clusters) == (
        shown_before.ready_clusters,
        shown_before.desired_ready_clusters,
    )
    assert shown_after.deployment_counts == shown_before.deployment_counts
    assert sum(shown_after.deployment_counts.values()) == 50 * 500


def test_describe_gitrepo_shows_each_bundles_counts_and_first_non_ready() -> None:
    status = _query(_gitrepo_state(packed=True, interleaved=False))
    text = describe_gitrepo(status)

    expected = _counts({c: i.state for c, i in _mid_rollout(0, interleaved=False).items()})
    web = status.bundles[0]
    assert web.counts == {str(s): n for s, n in expected.items()}
    listed = ", ".join(f"{s} {expected[s]}" for s in SEVERITY)  # worst first
    assert f"Not ready:\n  bundle-00: {listed}\n    cluster-0000  ErrApplied  {MESSAGE}" in text
    rest = 500 - expected[S.READY] - 3
    assert f"    (+{rest} more: flotilla describe bundle bundle-00)" in text
    assert status.deployment_counts["Ready"] == 50 * expected[S.READY]


# --- shards: ranges of one packed list, joined and cut by position -----------------------


@pytest.mark.parametrize("seed", range(6))
def test_packed_states_cut_into_ranges_and_joined_again_are_the_same(seed: int) -> None:
    """A list cut into consecutive ranges (as a sharded bundle cuts a dependency's states
    into its shards') and joined again (as it joins its shards' into its report) reads back
    exactly, whichever spelling (runs or one number) each piece took."""
    rng = random.Random(seed)
    choices: list[str | None] = [None, *sorted(str(s) for s in SEVERITY)]
    weights = [3, *[1] * len(SEVERITY)] if seed % 2 else [1, *[0] * (len(SEVERITY) - 1), 20]
    states = rng.choices(choices, weights=weights, k=237)
    legend = sorted({s for s in states if s})
    codes = encode_states(states, legend)
    assert decode_states(codes, legend, len(states)) == states
    lengths = [50, 0, 50, 87, 50]
    pieces = split_packed(codes, legend, lengths)
    start = 0
    for (piece, counts), length in zip(pieces, lengths, strict=True):
        assert decode_states(piece, sorted(counts), length) == states[start : start + length]
        start += length
    joined = join_packed(
        [(p, sorted(c), n) for (p, c), n in zip(pieces, lengths, strict=True)], legend
    )
    assert decode_states(joined, legend, len(states)) == states


def test_a_packed_list_of_ten_thousand_clusters_stays_a_few_kilobytes() -> None:
    """The bound the shards rely on: 10,000 clusters in states that change from one cluster
    to the next take about half a byte each (base64 of a base-10 number: 5.5 KB); a fleet
    mostly in one state a few bytes."""
    rng = random.Random(1)
    legend = sorted(str(s) for s in SEVERITY)
    mixed = rng.choices(legend, k=10_000)
    assert len(encode_states(mixed, legend)) < 6_000
    mostly = ["Ready"] * 9_990 + ["ErrApplied"] * 10
    assert len(encode_states(mostly, ["ErrApplied", "Ready"])) < 20


# --- a GitRepo that knows its cluster list by key only (a snapshot by digest) -------------


def test_reports_packed_against_a_list_known_by_key_count_in_ready_clusters_by_position() -> None:
    """Two bundles on 300 clusters, packed against the same list (as a sharded bundle joins
    its shards' states): a GitRepo without the names counts readyClusters by position, as it
    would by name; a deployment on a cluster outside the list counts by name; a report
    packed against another list counts only its deployments (not its clusters)."""
    names = [f"c{i:03d}" for i in range(300)]
    index = cluster_index(names)
    db = {c: S.READY if i % 10 else S.ERR_APPLIED for i, c in enumerate(names)}
    app = {c: S.READY for c in names[:200]} | {"gone": S.MODIFIED}
    reports = {
        "db": pack_report(report(db, bundle="db"), index),
        "app": pack_report(report(app, bundle="app"), index),
    }
    assert all(r.codes and r.clusters_key == index.key for r in reports.values())
    refs = [BundleRef(name=n, path=n, digest="d") for n in reports]
    by_name = summarize_gitrepo(
        refs, {n: expand_report(r, index) for n, r in reports.items()}, commit=COMMIT
    )
    assert (by_name.ready_clusters, by_name.desired_ready_clusters) == (270, 301)

    def read(r: BundleReport) -> dict[int, BundleState]:
        return states_by_position(r, index.key, len(names))

    by_position = summarize_gitrepo(refs, reports, commit=COMMIT, by_position=read)
    assert by_position == by_name
    assert summarize_gitrepo(refs, reports, commit=COMMIT).desired_ready_clusters == 1

    other = cluster_index(names[:-1])
    stale = {**reports, "app": pack_report(report(app, bundle="app"), other)}
    summary = summarize_gitrepo(refs, stale, commit=COMMIT, by_position=read)
    assert (summary.ready_clusters, summary.desired_ready_clusters) == (270, 301)
    assert summary.ready_bundle_deployments == "470/501"
    assert states_by_position(stale["app"], index.key, len(names)) == {}


def test_packed_states_move_between_carriers_whole() -> None:
    """A report's packed states put on a dependency update (as the GitRepo forwards them)
    read back the same against the list."""
    index = cluster_index(CLUSTERS)
    packed = pack_report(report({c: S.READY for c in CLUSTERS[::2]} | {"x": S.MODIFIED}), index)
    update = with_packed(DependencyStates(bundle="web", states={}, commit=COMMIT), packed)
    assert (update.clusters_key, update.codes, update.counts, update.states) == (
        packed.clusters_key,
        packed.codes,
        packed.counts,
        packed.states,
    )
    assert expand_report(packed, index).states == (
        {c: S.READY for c in CLUSTERS[::2]} | {"x": S.MODIFIED}
    )


# --- tallies: readyClusters without a state per cluster -------------------------------------


def ready_by_cluster(reports: list[BundleReport]) -> tuple[int, int]:
    """readyClusters and desiredReadyClusters the plain way (the rule the tallies keep): a
    cluster is ready when every report with a deployment on it says Ready."""
    ready: dict[str, bool] = {}
    for r in reports:
        for cluster, state in r.states.items():
            ready[cluster] = ready.get(cluster, True) and state is S.READY
    return sum(ready.values()), len(ready)


@pytest.mark.parametrize("seed", range(8))
def test_tallies_count_ready_clusters_as_cluster_by_cluster_does(seed: int) -> None:
    """Random reports over 500 clusters (some on clusters outside the list, some on none):
    the tally read from the packed codes is the tally of the unpacked report, and summing
    tallies gives what a walk over every cluster of every report gives."""
    rng = random.Random(seed)
    index = cluster_index(CLUSTERS[:400])
    states = [S.READY, S.READY, S.READY, S.NOT_READY, S.ERR_APPLIED, S.WAIT_APPLIED]
    reports = []
    for b in range(12):
        chosen = rng.sample(CLUSTERS, rng.choice([0, 1, 37, 250, 500]))
        unpacked = report({c: rng.choice(states) for c in chosen}, bundle=f"b{b}")
        packed = pack_report(unpacked, index)
        assert tally_packed(packed, index) == tally_report(unpacked, position=index.position)
        assert tally_report(unpacked).clusters == len(chosen)
        reports.append(unpacked)
    total = tally_report(reports[0], position=index.position)
    for r in reports[1:]:
        total = total.plus(tally_report(r, position=index.position))
    assert (total.ready_clusters, total.clusters) == ready_by_cluster(reports)
    refs = [BundleRef(name=r.bundle, path=r.bundle, digest="d") for r in reports]
    summary = summarize_gitrepo(refs, {r.bundle: r for r in reports}, commit=COMMIT)
    assert (summary.ready_clusters, summary.desired_ready_clusters) == ready_by_cluster(reports)


def test_a_report_packed_against_another_list_is_tallied_from_its_states() -> None:
    index = cluster_index(CLUSTERS[:10])
    other = cluster_index(CLUSTERS[:9])
    r = report({c: S.READY for c in CLUSTERS[:9]} | {CLUSTERS[0]: S.NOT_READY})
    packed = pack_report(r, other)
    assert packed.codes and packed.clusters_key != index.key
    # Unreadable against this list: its deployments count by their counts only, as before.
    assert tally_packed(packed, index).clusters == 0
    assert tally_packed(pack_report(r, index), index).ready_clusters == 8
