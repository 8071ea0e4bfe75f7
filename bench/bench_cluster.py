"""Local cluster start time (start to all nodes Ready) and memory, median of N runs.

Usage: .venv/bin/python bench/bench_cluster.py [--runs 5] [--nodes 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from devenv.cluster import LocalCluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=1)
    args = parser.parse_args()
    starts: list[float] = []
    memory: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            cluster = LocalCluster(f"bench-{run}", Path(tmp) / str(run), nodes=args.nodes)
            began = time.monotonic()
            cluster.start()
            starts.append(time.monotonic() - began)
            time.sleep(5)  # let the controllers settle before reading resident memory
            memory.append(cluster.memory_bytes())
            cluster.stop()
            print(
                f"run {run + 1}: ready in {starts[-1]:.2f}s, {memory[-1] / 2**20:.0f} MiB",
                flush=True,
            )
    print(
        f"cluster start (nodes={args.nodes}): median {statistics.median(starts):.2f}s "
        f"(min {min(starts):.2f}s, max {max(starts):.2f}s, {args.runs} runs)"
    )
    print(f"memory per cluster: median {statistics.median(memory) / 2**20:.0f} MiB RSS")


if __name__ == "__main__":
    main()
