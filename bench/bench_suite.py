"""pytest time of parts of the test suite, median of N runs, with the load before and after each.

Usage: .venv/bin/python bench/bench_suite.py [--runs 3] PATH [PATH ...]

Each PATH (a directory or test file of tests/) runs in its own pytest process, as CI would
run it alone: its session fixtures (Temporal, clusters, git daemon) start inside the measured
time. The time is pytest's own ("N passed in X s"); a run with a failure is reported and left
out of the median, so a number never hides a red run.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The last line of `pytest -q`: "3 passed, 1 failed in 192.24s (0:03:12)".
_SUMMARY = re.compile(r"^=*\s*(?P<counts>\d+ \w+.*) in (?P<seconds>[0-9.]+)s")


def load() -> str:
    """The 1-minute load average (the machine is shared: every number carries it)."""
    return Path("/proc/loadavg").read_text().split()[0]


def run_once(path: str) -> tuple[float, str]:
    """One pytest run of ``path``: its time in seconds and its summary counts."""
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", path]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    lines = [m for m in map(_SUMMARY.search, done.stdout.splitlines()) if m]
    if not lines:
        raise SystemExit(f"{path}: no pytest summary (exit {done.returncode})")
    return float(lines[-1]["seconds"]), lines[-1]["counts"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    for path in args.paths:
        times: list[float] = []
        for run in range(args.runs):
            before = load()
            seconds, counts = run_once(path)
            green = "failed" not in counts and "error" not in counts
            print(
                f"{path} run {run + 1}: {seconds:.1f}s ({counts}), load {before} -> {load()}",
                flush=True,
            )
            if green:
                times.append(seconds)
        if times:
            print(
                f"{path}: median {statistics.median(times):.1f}s "
                f"(min {min(times):.1f}s, max {max(times):.1f}s, {len(times)} green of "
                f"{args.runs} runs)",
                flush=True,
            )
        else:
            print(f"{path}: no green run of {args.runs}", flush=True)


if __name__ == "__main__":
    main()
