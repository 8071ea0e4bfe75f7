"""PostgreSQL from Debian's packages on a loopback port: a fresh cluster, dump and restore.

initdb and postgres refuse to run as root; as root the server runs as the ``postgres`` user
the Debian package creates, with its data directory in a temporary directory it owns (the
caller's directory may sit under a root-only tree such as pytest's).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from devenv.process import ManagedProcess, StartupError, free_port

START_TIMEOUT = 60.0
SUPERUSER = "postgres"
INSTALL_HINT = "install PostgreSQL: run hack/install-system-deps.sh (Debian package postgresql)"


def pg_bin(name: str) -> str:
    """A PostgreSQL program: the newest Debian-packaged version's, else the one on PATH."""
    versions = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    found = versions[-1] if versions else shutil.which(name)
    if not found:
        raise StartupError(f"{name} not found: {INSTALL_HINT}")
    return found


def _run_as() -> pwd.struct_passwd | None:
    """The account postgres runs as: none to change to unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise StartupError(
            "PostgreSQL refuses to run as root and there is no `postgres` user: " + INSTALL_HINT
        ) from None


class LocalPostgres:
    """One PostgreSQL cluster, trusting loopback connections, listening on 127.0.0.1:port."""

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        self.dir = directory
        self.port = port or free_port()
        self.user = _run_as()
        self.data: Path | None = None
        self.process: ManagedProcess | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def _as_owner(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def start(self) -> LocalPostgres:
        self.dir.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="flotilla-pg-"))
        self._as_owner(root)
        self.data = root / "data"
        proc = subprocess.run(
            [pg_bin("initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8"],
            capture_output=True,
            text=True,
            cwd=root,
            user=self.user.pw_uid if self.user else None,
            group=self.user.pw_gid if self.user else None,
            extra_groups=[] if self.user else None,
        )
        if proc.returncode != 0:
            raise StartupError(f"initdb failed: {(proc.stdout + proc.stderr).strip()[-800:]}")
        argv = [
            pg_bin("postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-k",
            str(root),
            "-c",
            f"listen_addresses={self.host}",
            # Temporal keeps a pool per service and store; the default 100 is enough for one
            # server, and fsync off keeps a shared test machine's disk out of the timings.
            "-c",
            "max_connections=200",
            "-c",
            "fsync=off",
        ]
        self.process = ManagedProcess(
            "postgres",
            argv,
            self.dir / "postgres.log",
            cwd=root,
            uid=self.user.pw_uid if self.user else None,
            gid=self.user.pw_gid if self.user else None,
        ).start()
        self.process.wait_until(
            self._ready, timeout=START_TIMEOUT, what=f"PostgreSQL on {self.host}:{self.port}"
        )
        return self

    def _ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                pass
        except OSError:
            return False
        return self.psql("SELECT 1", check=False).returncode == 0

    def _client_args(self, database: str) -> list[str]:
        return ["-h", self.host, "-p", str(self.port), "-U", SUPERUSER, "-d", database]

    def psql(
        self, sql: str, *, database: str = "postgres", check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [pg_bin("psql"), *self._client_args(database), "-v", "ON_ERROR_STOP=1", "-Atc", sql],
            capture_output=True,
            text=True,
        )
        if check and proc.returncode != 0:
            raise StartupError(f"psql {sql!r} failed: {proc.stderr.strip()}")
        return proc

    def dump(self, database: str, path: Path, *, exclude_data: tuple[str, ...] = ()) -> None:
        """``pg_dump`` in PostgreSQL's custom format: what a backup job would take, without
        the rows of the tables in ``exclude_data`` (their definitions are kept)."""
        excluded = [f"--exclude-table-data={table}" for table in exclude_data]
        subprocess.run(
            [pg_bin("pg_dump"), *self._client_args(database), "-Fc", *excluded, "-f", str(path)],
            check=True,
            capture_output=True,
        )

    def restore(self, database: str, path: Path) -> None:
        """Create ``database`` and ``pg_restore`` a dump into it."""
        self.psql(f'CREATE DATABASE "{database}"')
        subprocess.run(
            [pg_bin("pg_restore"), *self._client_args(database), "--no-owner", str(path)],
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
        if self.data is not None:
            shutil.rmtree(self.data.parent, ignore_errors=True)
            self.data = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
