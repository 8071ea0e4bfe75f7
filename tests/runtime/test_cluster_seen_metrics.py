"""The worker's probe results as metrics: last-seen age and reachability per served cluster
(the probes themselves run against real API servers in tests/e2e/test_offline.py)."""

from __future__ import annotations

import time

from runtime.metrics import ClusterSeenCollector


def samples(collector: ClusterSeenCollector) -> dict[tuple[str, str, str], float]:
    return {
        (s.name, s.labels["namespace"], s.labels["name"]): s.value
        for family in collector.collect()
        for s in family.samples
    }


def test_age_counts_from_the_last_answer_and_unreachable_follows_the_last_probe() -> None:
    collector = ClusterSeenCollector()
    collector.observe("ns", "never", answered=False)
    collector.observe("ns", "up", answered=True)
    time.sleep(0.2)
    got = samples(collector)
    assert got[("flotilla_cluster_last_seen_age_seconds", "ns", "never")] == -1.0
    assert got[("flotilla_cluster_unreachable", "ns", "never")] == 1.0
    assert 0.2 <= got[("flotilla_cluster_last_seen_age_seconds", "ns", "up")] < 5
    assert got[("flotilla_cluster_unreachable", "ns", "up")] == 0.0
    # A cluster that stops answering keeps its last time and shows unreachable.
    collector.observe("ns", "up", answered=False)
    got = samples(collector)
    assert got[("flotilla_cluster_last_seen_age_seconds", "ns", "up")] >= 0.2
    assert got[("flotilla_cluster_unreachable", "ns", "up")] == 1.0
