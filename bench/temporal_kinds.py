"""The Temporal servers a benchmark can run on, and their own throughput from their metrics.

``dev`` is the dev server (``temporal server start-dev``, SQLite in memory, one process), as
``make test`` uses; ``postgres`` is the server as production runs it (devenv's
``TemporalServer``: PostgreSQL, SQL visibility, 4 history shards, set up by ``flotilla
setup``). Both serve Prometheus metrics with the same (tally) names; the frontend's
``service_requests`` counter by operation says how many workflow tasks and activity tasks
the workers completed, whoever ran them.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devenv.temporal import TemporalDevServer, TemporalServer

KINDS = ("dev", "postgres")
COMPLETIONS = {
    "workflow tasks": "RespondWorkflowTaskCompleted",
    "activities": "RespondActivityTaskCompleted",
}
_SAMPLE = re.compile(r"^service_requests\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$", re.M)


def add_temporal_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--temporal",
        default="dev",
        help="comma-separated Temporal servers to run on, one after the other in this run: "
        "dev (the dev server, SQLite) and/or postgres (the production-shaped server on "
        "PostgreSQL with 4 history shards); default dev",
    )


def temporal_kinds(parser: argparse.ArgumentParser, value: str) -> list[str]:
    kinds = [kind.strip() for kind in value.split(",")]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"--temporal: unknown {unknown}; choose from {', '.join(KINDS)}")
    return kinds


@contextlib.contextmanager
def temporal_server(kind: str, directory: Path) -> Iterator[TemporalDevServer | TemporalServer]:
    server: TemporalDevServer | TemporalServer
    if kind == "dev":
        server = TemporalDevServer(directory, headless=True)
    else:
        server = TemporalServer(directory)
    with server:
        yield server


def completions(metrics_url: str) -> dict[str, float]:
    """Workflow tasks and activities completed so far, from the frontend's counters."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    found = dict.fromkeys(COMPLETIONS, 0.0)
    for sample in _SAMPLE.finditer(text):
        labels = sample["labels"]
        if 'service_name="frontend"' not in labels:
            continue
        for what, operation in COMPLETIONS.items():
            if f'operation="{operation}"' in labels:
                found[what] += float(sample["value"])
    return found


@dataclass
class ServerThroughput:
    """The server's completions per second between :meth:`start` and :meth:`stop`."""

    metrics_url: str
    began: float = 0.0
    before: dict[str, float] | None = None
    rates: dict[str, float] | None = None
    seconds: float = 0.0

    def start(self) -> None:
        self.before = completions(self.metrics_url)
        self.began = time.monotonic()

    def stop(self) -> dict[str, float]:
        assert self.before is not None, "start() first"
        after = completions(self.metrics_url)
        self.seconds = time.monotonic() - self.began
        self.rates = {k: (after[k] - self.before[k]) / self.seconds for k in COMPLETIONS}
        return self.rates

    def line(self) -> str:
        assert self.rates is not None, "stop() first"
        return f"server throughput over {self.seconds:.0f}s (its metrics): " + ", ".join(
            f"{rate:.1f} {what}/s" for what, rate in self.rates.items()
        )
