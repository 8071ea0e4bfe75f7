"""CPU of a GitRepo's readyClusters by position (a snapshot by digest) against by name.

A GitRepo whose snapshot came by digest has no cluster names: it reads sharded bundles'
reports by position in the list its header names by key (``states_by_position``) and
``summarize_gitrepo`` ANDs them per position. This times that against the inline path
(``expand_report`` per report, then per name), on the same packed reports: 95 % Ready, the
rest in random states. The GitRepo reads each report once per report change (cached), and
summarizes on every pass.

    .venv/bin/python bench/bench_ready_by_position.py --bundles 50 --clusters 10000
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flotilla.clusterstates import cluster_index, expand_report, pack_report, states_by_position
from flotilla.status import SEVERITY, BundleReport, BundleState, summarize_gitrepo


@dataclass(frozen=True)
class _Ref:
    name: str
    path: str = ""
    error: str = ""


def _at(
    positions: Mapping[str, dict[int, BundleState]], report: BundleReport
) -> dict[int, BundleState]:
    return positions[report.bundle]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", type=int, default=50)
    parser.add_argument("--clusters", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    names = [f"cluster-{i:05d}" for i in range(args.clusters)]
    index = cluster_index(names)
    rng = random.Random(1)
    packed = {}
    for b in range(args.bundles):
        states = {
            n: BundleState.READY if rng.random() < 0.95 else rng.choice(SEVERITY) for n in names
        }
        report = BundleReport(
            bundle=f"b{b}",
            commit="c",
            ready=0,
            desired=len(states),
            state=BundleState.READY,
            message="",
            states=states,
        )
        packed[report.bundle] = pack_report(report, index)
    refs = [_Ref(name) for name in packed]
    print(f"load {os.getloadavg()[0]:.1f}, {args.bundles} bundles x {args.clusters} clusters")
    for _ in range(args.rounds):
        start = time.perf_counter()
        named = {k: expand_report(r, index) for k, r in packed.items()}
        unpack = time.perf_counter() - start
        start = time.perf_counter()
        by_name = summarize_gitrepo(refs, named, commit="c")
        name_pass = time.perf_counter() - start
        start = time.perf_counter()
        positions = {k: states_by_position(r, index.key, len(names)) for k, r in packed.items()}
        read = time.perf_counter() - start
        start = time.perf_counter()
        by_position = summarize_gitrepo(
            refs, packed, commit="c", by_position=functools.partial(_at, positions)
        )
        position_pass = time.perf_counter() - start
        assert (by_name.ready_clusters, by_name.desired_ready_clusters) == (
            by_position.ready_clusters,
            by_position.desired_ready_clusters,
        )
        print(
            f"by name: unpack {unpack * 1e3:.0f} ms, summarize {name_pass * 1e3:.0f} ms; "
            f"by position: read {read * 1e3:.0f} ms, summarize {position_pass * 1e3:.0f} ms; "
            f"readyClusters {by_position.ready_clusters}/{by_position.desired_ready_clusters}"
        )


if __name__ == "__main__":
    main()
