"""How long a restored Temporal server takes to serve, with and without the dead hosts' rows.

Starts the production-shaped server (devenv's ``TemporalServer``: PostgreSQL, 4 history
shards), runs one workflow, dumps both databases and stops it, then restores the dump twice
into fresh servers: once as devenv restores (``cluster_membership`` empty), once with the
dump's membership rows put back, heartbeated just now, as a dump taken seconds before the
loss and restored with its rows would be. Measured: from the restored server's start (its
process launched, ``flotilla setup`` done) to a workflow's completion through a worker.

    .venv/bin/python bench/bench_restore.py --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devenv.temporal import MEMBERSHIP_TABLE, PERSISTENCE_DB, SCHEMAS, TemporalServer

ROWS = (
    "SELECT string_agg(format('(%L,%L,%L,%s,%s,%L,%L,%L)', membership_partition, host_id, "
    "rpc_address, rpc_port, role, session_start, last_heartbeat, record_expiry), ',') "
    f"FROM {MEMBERSHIP_TABLE}"
)


@workflow.defn(sandboxed=False)
class Hello:
    @workflow.run
    async def run(self) -> str:
        return "hello"


async def first_workflow(address: str) -> float:
    """Seconds until one workflow has run to completion through a fresh worker."""
    started = time.monotonic()
    client = await Client.connect(address)
    queue = f"restore-{uuid.uuid4().hex[:8]}"
    runner = UnsandboxedWorkflowRunner()
    async with Worker(client, task_queue=queue, workflows=[Hello], workflow_runner=runner):
        await client.execute_workflow(
            Hello.run,
            id=f"hello-{uuid.uuid4().hex}",
            task_queue=queue,
            execution_timeout=timedelta(minutes=5),
        )
    return time.monotonic() - started


class WithDeadHosts(TemporalServer):
    """A restore that puts the dump's membership rows back, heartbeated just now."""

    def __init__(self, directory: Path, backup: Path, rows: str) -> None:
        super().__init__(directory, restore_from=backup)
        self.rows = rows

    def _prepare_databases(self) -> None:
        super()._prepare_databases()
        insert = f"INSERT INTO {MEMBERSHIP_TABLE} VALUES {self.rows}"
        self.postgres.psql(insert, database=PERSISTENCE_DB)
        self.postgres.psql(
            f"UPDATE {MEMBERSHIP_TABLE} SET last_heartbeat = now() at time zone 'utc'",
            database=PERSISTENCE_DB,
        )


def one_run(root: Path) -> tuple[float, float]:
    original = TemporalServer(root / "original").start()
    try:
        asyncio.run(first_workflow(original.address))
        backup = root / "backup"
        backup.mkdir()
        for database in SCHEMAS:
            original.postgres.dump(database, backup / f"{database}.dump")
        rows = original.postgres.psql(ROWS, database=PERSISTENCE_DB).stdout.strip()
    finally:
        original.stop()
    seconds = []
    for server in (
        TemporalServer(root / "emptied", restore_from=backup),
        WithDeadHosts(root / "kept", backup, rows),
    ):
        with server:
            seconds.append(asyncio.run(first_workflow(server.address)))
    return seconds[0], seconds[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    emptied: list[float] = []
    kept: list[float] = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-restore-") as tmp:
            fast, slow = one_run(Path(tmp))
        emptied.append(fast)
        kept.append(slow)
        load = Path("/proc/loadavg").read_text().strip()
        print(
            f"run {run + 1}: membership emptied {fast:.1f}s, dead hosts kept {slow:.1f}s "
            f"(load {load})",
            flush=True,
        )
    print(f"median of {args.runs}: emptied {statistics.median(emptied):.1f}s {emptied}")
    print(f"median of {args.runs}: dead hosts kept {statistics.median(kept):.1f}s {kept}")


if __name__ == "__main__":
    main()
