"""``git daemon`` on loopback, serving bare repositories that tests and the demo push to, and
the same repositories over HTTP behind basic auth (private-repository tests)."""

from __future__ import annotations

import base64
import contextlib
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from devenv.process import ManagedProcess, StartupError, free_port

START_TIMEOUT = 20.0


def git(*args: str, cwd: Path) -> str:
    """Run git with a fixed identity; a failure raises with git's own message."""
    proc = subprocess.run(
        [
            "git",
            "-c",
            "user.name=flotilla-dev",
            "-c",
            "user.email=dev@flotilla.invalid",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.version=2",
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


class GitDaemon:
    """Serves ``<root>/<name>.git`` as ``git://127.0.0.1:<port>/<name>.git``, push enabled."""

    def __init__(self, root: Path, *, port: int | None = None, tied_to_parent: bool = True) -> None:
        self.root = root
        self.port = port or free_port()
        self.tied_to_parent = tied_to_parent
        self.process: ManagedProcess | None = None

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}.git"

    def start(self) -> GitDaemon:
        if shutil.which("git") is None:
            raise StartupError("git is missing: run `make install` (Debian package git)")
        repos = self.root / "repos"
        repos.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(
            "git-daemon",
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--enable=receive-pack",
                f"--base-path={repos}",
                "--listen=127.0.0.1",
                f"--port={self.port}",
                "--informative-errors",
                str(repos),
            ],
            self.root / "git-daemon.log",
            tied_to_parent=self.tied_to_parent,
        ).start()

        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False

        self.process.wait_until(listening, timeout=START_TIMEOUT, what="git daemon listening")
        return self

    def create_repo(
        self,
        name: str,
        files: dict[str, str | bytes] | Path | None = None,
        *,
        branch: str = "main",
        message: str = "initial commit",
    ) -> str:
        """Create a bare repo ``name``, push one commit with ``files`` (or a directory's
        contents) to ``branch`` and return its clone URL."""
        bare = self.root / "repos" / f"{name}.git"
        git("init", "--bare", "--initial-branch", branch, str(bare), cwd=self.root)
        git("config", "receive.denyCurrentBranch", "ignore", cwd=bare)
        if files is not None:
            work = self.root / "work" / name
            shutil.rmtree(work, ignore_errors=True)
            git("clone", self.url(name), str(work), cwd=self.root)
            git("checkout", "-B", branch, cwd=work)
            self.commit(work, files, message=message, branch=branch)
        return self.url(name)

    def commit(
        self,
        work: Path,
        files: dict[str, str | bytes] | Path,
        *,
        message: str,
        branch: str = "main",
    ) -> str:
        """Write ``files`` into the working copy ``work``, commit, push; return the commit id."""
        if isinstance(files, Path):
            shutil.copytree(files, work, dirs_exist_ok=True)
        else:
            for rel, content in files.items():
                path = work / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, bytes):
                    path.write_bytes(content)
                else:
                    path.write_text(content)
        git("add", "-A", cwd=work)
        git("commit", "--allow-empty", "-m", message, cwd=work)
        git("push", "origin", f"HEAD:{branch}", cwd=work)
        return git("rev-parse", "HEAD", cwd=work).strip()

    def working_copy(self, name: str) -> Path:
        return self.root / "work" / name

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def __enter__(self) -> GitDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def basic_auth_git_server(root: Path, user: str, password: str) -> ThreadingHTTPServer:
    """``git http-backend`` behind HTTP basic auth, serving the bare repos under ``root``."""
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            env = {
                "GIT_PROJECT_ROOT": str(root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "REQUEST_METHOD": self.command,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                "REMOTE_USER": user,
                "PATH": "/usr/bin:/bin",
            }
            out = subprocess.run(
                ["git", "http-backend"], input=body, env=env, capture_output=True, check=True
            ).stdout
            head, _, payload = out.partition(b"\r\n\r\n")
            headers = [line.split(": ", 1) for line in head.decode().split("\r\n") if line]
            status = next((int(v.split()[0]) for k, v in headers if k == "Status"), 200)
            self.send_response(status)
            for key, value in headers:
                if key != "Status":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@contextlib.contextmanager
def serve_git_over_http(root: Path, user: str, password: str) -> Iterator[str]:
    """:func:`basic_auth_git_server` on a thread; yields ``http://127.0.0.1:<port>``."""
    server = basic_auth_git_server(root, user, password)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
