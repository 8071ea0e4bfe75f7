"""Child processes for the substrate: start with a log file, wait until ready, stop for sure."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class StartupError(RuntimeError):
    """A component did not come up; the message names it and quotes the end of its log."""


# Parallel test processes (pytest-xdist workers) each get a range of their own, below the
# kernel's ephemeral range (32768 and up): two processes then never pick the same port, and
# no outgoing connection's source port can take one between pick and bind.
PORT_RANGE_ENV = "FLOTILLA_PORT_RANGE"
_handed_out: set[int] = set()


def port_range() -> range | None:
    """The ports ``$FLOTILLA_PORT_RANGE`` (``LOW-HIGH``, inclusive) gives this process."""
    value = os.environ.get(PORT_RANGE_ENV)
    if not value:
        return None
    low, sep, high = value.partition("-")
    if not (sep and low.isdigit() and high.isdigit() and 1024 <= int(low) <= int(high) < 65536):
        raise ValueError(f"{PORT_RANGE_ENV}={value!r} is not LOW-HIGH (e.g. 20000-21999)")
    return range(int(low), int(high) + 1)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now. Callers retry on a clash, since another may take it.

    With ``$FLOTILLA_PORT_RANGE`` set, the port comes from that range and is not handed out
    twice by this process while others in the range are free (the caller may not have bound
    the previous one yet)."""
    ports = port_range()
    if ports is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
            return port
    start = random.randrange(len(ports))  # noqa: S311 - a port, not a secret
    for _ in range(2):  # once skipping the ports handed out, once more from a clean slate
        for offset in range(len(ports)):
            candidate = ports[(start + offset) % len(ports)]
            if candidate not in _handed_out and port_is_free(candidate, host):
                _handed_out.add(candidate)
                return candidate
        _handed_out.difference_update(ports)
    raise StartupError(f"no free port left in {PORT_RANGE_ENV}={os.environ[PORT_RANGE_ENV]}")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: when the test process dies, even by SIGKILL,
    # the kernel sends the child SIGTERM, so no component outlives the session that owns it.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); read its state to tell.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


# How a Go program's crash begins: the reason, before the goroutine stacks that bury it.
_CRASH_HEADERS = ("panic:", "fatal error:", "SIGQUIT:", "SIGABRT:", "SIGSEGV:")


def log_excerpt(text: str, lines: int = 15) -> str:
    """The last ``lines`` lines of a component's log; when the log holds a Go crash whose
    first line is not among them, that line and the next few come first, so that the reason
    is not lost under a page of stack frames."""
    all_lines = text.strip().splitlines()
    tail = all_lines[-lines:]
    start = next((i for i, line in enumerate(all_lines) if line.startswith(_CRASH_HEADERS)), None)
    if start is None or start >= len(all_lines) - lines:
        return "\n".join(tail)
    head = all_lines[start : min(start + 6, len(all_lines) - lines)]
    return "\n".join([*head, "[…]", *tail])


class ManagedProcess:
    """One component process with its own log file and process group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        tied_to_parent: bool = True,
        uid: int | None = None,
        gid: int | None = None,
    ) -> None:
        self.name = name
        # Servers that refuse root (PostgreSQL) run as another account; Popen switches to it
        # before preexec_fn runs, so the parent-death signal still holds after the switch.
        self.uid = uid
        self.gid = gid
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.tied_to_parent = tied_to_parent
        self.popen: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.tied_to_parent else None,  # noqa: PLW1509
                user=self.uid,
                group=self.gid,
                extra_groups=[] if self.uid is not None else None,
            )
        self.pid = self.popen.pid
        log.debug("started %s (pid %s): %s", self.name, self.pid, " ".join(self.argv))
        return self

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return self.pid is not None and pid_alive(self.pid)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return log_excerpt(text, lines)

    def wait_until(self, ready: Callable[[], bool], *, timeout: float, what: str) -> None:
        """Poll ``ready`` until it holds; fail fast, with the log's tail, if the process dies."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            if not self.alive():
                raise StartupError(
                    f"{self.name} exited before {what} (log {self.log_path}):\n{self.log_tail()}"
                )
            if ready():
                return
            if time.monotonic() > deadline:
                raise StartupError(
                    f"{self.name}: {what} not reached in {timeout:.0f}s (log {self.log_path}):\n"
                    f"{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after ``grace`` seconds."""
        if self.pid is None:
            return
        stop_pid(self.pid, grace)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=1)


def stop_pid(pid: int, grace: float = 5.0) -> None:
    """Stop the process group led by ``pid`` (components run in their own sessions)."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not pid_alive(pid):
                return
            time.sleep(0.05)
