"""CPU time of one BundleWorkflow wake, without a server: the pure computation a bundle
workflow runs on every wake while a rollout is in flight (roll-out plan, per-cluster states,
the report and its fingerprint), at 50, 500 and 10,000 clusters.

A wake is what ``BundleWorkflow._reconcile`` computes after an activity completes, minus the
commands it issues: ``flotilla.bundlewake.WakeMemo`` (the same object the workflow keeps)
is fed the state of a bundle in the middle of a rollout, one deployment changes (a deploy
completed), and the pass is timed. ``--legacy`` times the code before issue 12's incremental
pass (every cluster's target and state rebuilt on every wake), kept here as the reference.

    .venv/bin/python bench/bench_wake.py --clusters 50,500,10000 --wakes 50
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activities.deploy_models import ReleaseRef
from flotilla.bundlewake import WakeMemo
from flotilla.models import RolloutStrategy
from flotilla.rollout import RolloutState, plan_rollout
from flotilla.status import BundleReport, StateSince, StateWithMessage, state_since, summarize
from workflows.bundle_models import DeploymentRecord
from workflows.registry_models import ClusterView

V1, V2 = "s-" + "a" * 20 + "-" + "b" * 20, "s-" + "c" * 20 + "-" + "d" * 20
NOW = datetime(2026, 12, 4, tzinfo=UTC)
STRATEGY = RolloutStrategy(max_unavailable="10%")
Since = dict[str, StateSince]


def mid_rollout(clusters: int) -> tuple[dict[str, DeploymentRecord], dict[str, ClusterView]]:
    """A bundle moving from V1 to V2 under maxUnavailable 10%: a third done, a tenth being
    deployed, the rest held at V1."""
    records: dict[str, DeploymentRecord] = {}
    views: dict[str, ClusterView] = {}
    release = ReleaseRef(name="b", namespace="default", revision=1)
    for i in range(clusters):
        name = f"c{i:05d}"
        views[name] = ClusterView(name=name, labels={"env": "prod", "zone": f"z{i % 3}"})
        if i < clusters // 3:
            released, applied, ready = V2, V2, True
        elif i < clusters // 3 + clusters // 10:
            released, applied, ready = V2, V1, False
        else:
            released, applied, ready = V1, V1, True
        records[name] = DeploymentRecord(
            cluster=name,
            staged=V2,
            released=released,
            applied=applied,
            release=release,
            ready=ready,
        )
    return records, views


def legacy_wake(
    records: dict[str, DeploymentRecord], views: dict[str, ClusterView], since: Since
) -> str:
    """The wake as BundleWorkflow computed it before (main at d6deecf): every cluster's
    target and state rebuilt, then the whole report serialized twice."""
    labels = {name: v.labels for name, v in views.items()}
    offline = {name: v.offline for name, v in views.items() if v.offline}
    targets = [
        records[name].rollout_target(
            labels=labels.get(name, {}), paused=False, blocked=False, offline=name in offline
        )
        for name in sorted(records)
    ]
    plan_rollout(RolloutState(strategy=STRATEGY, targets=targets))
    states: dict[str, StateWithMessage] = {
        name: records[name].state(paused=False, waiting_for=[], offline=offline.get(name, ""))
        for name in records
    }
    return _report(states, since)


def _report(states: dict[str, StateWithMessage], since: Since) -> str:
    """BundleWorkflow._report's computation: summary, since, the report and its digests."""
    summary = summarize(states)
    since.update(state_since(since, states, NOW))
    report = BundleReport(
        bundle="b",
        commit="c",
        ready=summary.ready,
        desired=summary.desired,
        state=summary.state,
        message=summary.message,
        states={name: item.state for name, item in states.items()},
    )
    hashlib.sha256(report.model_copy(update={"message": ""}).model_dump_json().encode())
    return hashlib.sha256(report.model_dump_json().encode()).hexdigest()


def new_wake(
    memo: WakeMemo,
    records: dict[str, DeploymentRecord],
    views: dict[str, ClusterView],
    since: Since,
) -> str:
    """The wake as BundleWorkflow computes it now: ``WakeMemo`` rebuilds only the clusters
    whose record or inputs changed; the rest is as before."""
    targets = memo.rollout_targets(
        records, sorted(records), views, paused=lambda _: False, blocked=lambda _: False
    )
    plan_rollout(RolloutState(strategy=STRATEGY, targets=targets))
    states = memo.states(records, records, views, paused=lambda _: False, waiting_for=lambda _: ())
    return _report(states, since)


def measure(clusters: int, wakes: int, legacy: bool) -> list[float]:
    records, views = mid_rollout(clusters)
    memo = WakeMemo()
    since: Since = {}
    # The deployments in flight; one completes before each wake.
    names = [n for n, r in sorted(records.items()) if r.applied != r.released]
    seconds: list[float] = []
    # One warm-up wake (the first pass after a plan builds everything), not counted.
    for number in range(wakes + 1):
        # One deploy completed since the last wake: its record is replaced, as _put does.
        name = names[(number * 7919) % len(names)]
        records[name] = records[name].model_copy(update={"applied": V2, "ready": True})
        began = time.process_time()
        if legacy:
            legacy_wake(records, views, since)
        else:
            new_wake(memo, records, views, since)
        if number:
            seconds.append(time.process_time() - began)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clusters", default="50,500,10000", help="comma-separated sizes")
    parser.add_argument("--wakes", type=int, default=50, help="wakes timed per size")
    parser.add_argument("--legacy", action="store_true", help="time the pre-issue-12 wake")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for clusters in (int(c) for c in args.clusters.split(",")):
        seconds = sorted(measure(clusters, args.wakes, args.legacy))
        p99 = seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))]
        print(
            f"{'legacy' if args.legacy else 'incremental'} wake, {clusters} clusters: "
            f"median {statistics.median(seconds) * 1000:.2f} ms CPU, p99 {p99 * 1000:.2f} ms, "
            f"max {seconds[-1] * 1000:.2f} ms over {len(seconds)} wakes"
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
