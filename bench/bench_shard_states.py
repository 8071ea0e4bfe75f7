"""Sizes and CPU of a sharded bundle's per-cluster states, without a server.

What the shards, the bundle and the GitRepo pass around so that ``dependsOn`` and
``readyClusters`` see a sharded bundle's clusters (docs/orchestration.md, "Shards"): each
shard's packed part (``ShardReport.codes``), the bundle's report joined from them
(``flotilla.shards.join_shard_states``), a dependency's states as the GitRepo forwards them
(``DependencyStates``, packed against unpacked), and the pieces a sharded dependent cuts
them into for its shards (``flotilla.clusterstates.split_packed``). Two fleets: settled
(Ready but for one cluster in a thousand) and the worst order (nine states at random).

    .venv/bin/python bench/bench_shard_states.py --clusters 10000 --shard-size 500
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flotilla.clusterstates import cluster_index, encode_states, split_packed
from flotilla.shards import PackedPart, join_shard_states
from flotilla.status import SEVERITY, count_states
from workflows.bundle_models import DependencyStates


def _timed(run: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``run`` in ms."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=10_000)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(0)
    names = [f"cluster-{i:05d}" for i in range(args.clusters)]
    key = cluster_index(names).key
    every = [str(s) for s in SEVERITY]
    fleets: dict[str, Callable[[int], str]] = {
        "settled": lambda i: "ErrApplied" if i % 1000 == 7 else "Ready",
        "worst order": lambda _: rng.choice(every),
    }
    print(f"load {os.getloadavg()[0]:.1f}, {args.clusters} clusters, shard size {args.shard_size}")
    print(
        "| fleet | largest shard part | bundle report codes | dependency_states packed "
        "| unpacked | join (ms) | cut (ms) |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, pick in fleets.items():
        states = [pick(i) for i in range(args.clusters)]
        sizes = [
            len(states[i : i + args.shard_size]) for i in range(0, args.clusters, args.shard_size)
        ]
        parts, start = [], 0
        for size in sizes:
            piece = states[start : start + size]
            start += size
            counts = count_states(piece)
            parts.append(
                PackedPart(codes=encode_states(piece, sorted(counts)), counts=counts, length=size)
            )
        joined = join_shard_states(parts, key)
        packed = DependencyStates(
            bundle="db",
            states={},
            commit="c" * 40,
            clusters_key=joined.clusters_key,
            codes=joined.codes,
            counts=joined.counts,
        )
        every_state = dict(zip(names, states, strict=True))
        unpacked = DependencyStates(bundle="db", states=every_state, commit="c" * 40)
        join_ms = _timed(functools.partial(join_shard_states, parts, key), args.repeat)
        cut = functools.partial(split_packed, joined.codes, sorted(joined.counts), sizes)
        cut_ms = _timed(cut, args.repeat)
        print(
            f"| {label} | {max(len(p.codes) for p in parts)} B | {len(joined.codes)} B "
            f"| {len(packed.model_dump_json())} B | {len(unpacked.model_dump_json())} B "
            f"| {join_ms:.0f} | {cut_ms:.0f} |"
        )


if __name__ == "__main__":
    main()
