"""Benchmark: start-up of the ``flotilla`` command, as a person at a terminal meets it.

Runs the installed console script (``.venv/bin/flotilla``) in a fresh process, 10 times per
command, and reports the median wall-clock time (and the median CPU time of the process, which
other load on the machine disturbs less):

* ``flotilla --help`` (goal <= 0.3 s)
* ``flotilla bundle examples/fleet-examples/raw-overlays`` (offline; goal <= 0.3 s)
* ``flotilla get gitrepos`` against a local Temporal dev server started here (goal <= 0.5 s),
  listing 20 GitRepos. They are stand-ins: workflows started with the search attributes a
  GitRepo workflow keeps, on a queue no worker serves, because the table is read from
  visibility over Temporal's HTTP API (``starters/get.py``) and no query reaches them.

and, for scale, what no flotilla code can go below: the interpreter alone, PyYAML and pydantic
with one model built (pydantic's first model loads its schema machinery and scans installed
packages for plugins), and the Temporal client with its pydantic converter.

One untimed run of each comes first, so Python's bytecode caches exist (they are written
even when PYTHONDONTWRITEBYTECODE is set in the calling shell, as an installed package has
them). Run:

    .venv/bin/python bench/bench_cli.py
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from devenv.temporal import TemporalDevServer
from flotilla.ids import (
    DEFAULT_NAMESPACE,
    SA_COMMIT,
    SA_GITREPO,
    SA_KIND,
    SA_MESSAGE,
    SA_READY_DEPLOYMENTS,
    SA_REPO,
    SA_STATE,
    gitrepo_workflow_id,
)

ROOT = Path(__file__).resolve().parents[1]
FLOTILLA = Path(sys.executable).with_name("flotilla")
RUNS = 10
COMMANDS: list[tuple[list[str], float]] = [
    (["--help"], 0.3),
    (["bundle", "examples/fleet-examples/raw-overlays"], 0.3),
    (["get", "gitrepos"], 0.5),
]
FLOORS: list[tuple[str, str]] = [
    ("python: interpreter start", "pass"),
    (
        "python: PyYAML, pydantic and one model",
        "import yaml\nfrom pydantic import BaseModel\nclass A(BaseModel):\n    x: int = 0",
    ),
    (
        "python: Temporal client and pydantic converter",
        "import temporalio.client, temporalio.contrib.pydantic",
    ),
]


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one run of the program."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu


def measure(what: str, argv: list[str], env: dict[str, str]) -> float:
    """Print and return the median wall-clock seconds of RUNS runs, after one untimed run
    (bytecode caches, the server's first query)."""
    timed(argv, env)
    runs = [timed(argv, env) for _ in range(RUNS)]
    wall = statistics.median(w for w, _ in runs)
    print(
        f"{what}: median {wall:.3f} s (min {min(w for w, _ in runs):.3f}, "
        f"max {max(w for w, _ in runs):.3f}), cpu {statistics.median(c for _, c in runs):.3f} s"
    )
    return wall


GITREPOS = 20


async def start_stand_in_gitrepos(address: str) -> None:
    """GITREPOS workflows that visibility lists like GitRepo workflows (see the docstring)."""
    client = await Client.connect(address)
    for i in range(GITREPOS):
        name = f"app-{i:02d}"
        values = {
            SA_KIND: "GitRepo",
            SA_GITREPO: name,
            SA_REPO: f"https://git.example.com/fleet/{name}.git",
            SA_COMMIT: f"{i:040x}",
            SA_READY_DEPLOYMENTS: "50/50",
            SA_STATE: "Ready",
            SA_MESSAGE: "",
        }
        await client.start_workflow(
            "GitRepoWorkflow",
            id=gitrepo_workflow_id(DEFAULT_NAMESPACE, name),
            task_queue="bench-cli-no-worker",
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(SearchAttributeKey.for_keyword(key), value)
                    for key, value in values.items()
                ]
            ),
        )


def main() -> int:
    failed = 0
    with tempfile.TemporaryDirectory(prefix="flotilla-bench-cli-") as tmp:
        server = TemporalDevServer(Path(tmp) / "temporal", headless=True).start()
        try:
            env = {
                key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"
            }
            asyncio.run(start_stand_in_gitrepos(server.address))
            env.update(
                TEMPORAL_ADDRESS=server.address,
                TEMPORAL_HTTP_ADDRESS=server.http_address,
                FLOTILLA_SECRETS_DIR=str(Path(tmp) / "secrets"),
                FLOTILLA_CONTENT_DIR=str(Path(tmp) / "content"),
            )
            print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            for argv, goal in COMMANDS:
                wall = measure(f"flotilla {' '.join(argv)}", [str(FLOTILLA), *argv], env)
                print(f"  goal <= {goal} s: {'ok' if wall <= goal else 'OVER'}")
                failed += wall > goal
            for what, code in FLOORS:
                measure(what, [sys.executable, "-c", code], env)
            print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        finally:
            server.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
