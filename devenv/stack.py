"""The demo stack behind ``make dev``: Temporal with UI, local clusters, a git daemon and a worker.

Everything runs detached, so the command returns and the stack keeps running; the process ids
live in ``<state>/stack.json`` and ``flotilla dev down`` stops them all.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from devenv import cluster as clusters
from devenv import tools
from devenv.cluster import LocalCluster, state_root
from devenv.gitserver import GitDaemon
from devenv.process import ManagedProcess, pid_alive, port_is_free, stop_pid
from devenv.temporal import TemporalDevServer

Progress = Callable[[str], None]


@dataclass
class StackState:
    temporal_address: str = ""
    temporal_http_address: str = ""
    ui_url: str = ""
    git_port: int = 0
    pids: dict[str, int] = field(default_factory=dict)
    clusters: list[str] = field(default_factory=list)


def stack_file() -> Path:
    return state_root() / "stack.json"


def load() -> StackState | None:
    try:
        return StackState(**json.loads(stack_file().read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _save(state: StackState) -> None:
    stack_file().parent.mkdir(parents=True, exist_ok=True)
    stack_file().write_text(json.dumps(asdict(state), indent=2))


def running() -> StackState | None:
    state = load()
    if state and state.pids and all(pid_alive(p) for p in state.pids.values()):
        return state
    return None


def start_temporal(state: StackState, progress: Progress) -> None:
    progress("starting the Temporal dev server with UI ...")
    server = TemporalDevServer(
        state_root() / "temporal",
        port=7233 if port_is_free(7233) else None,
        ui_port=8233 if port_is_free(8233) else None,
        http_port=7243 if port_is_free(7243) else None,
        persistent=True,
        tied_to_parent=False,
    ).start()
    assert server.process is not None and server.process.pid is not None
    state.pids["temporal"] = server.process.pid
    state.temporal_address, state.ui_url = server.address, server.ui_url
    state.temporal_http_address = server.http_address
    _save(state)


def start_cluster(
    state: StackState, name: str, progress: Progress, *, nodes: int = 2
) -> LocalCluster:
    progress(f"starting local cluster {name!r} ({nodes} kwok nodes) ...")
    started = time.monotonic()
    cluster = clusters.up(name, nodes=nodes)
    state.clusters.append(name)
    _save(state)
    progress(f"cluster {name!r} ready in {time.monotonic() - started:.1f}s: {cluster.kubeconfig}")
    return cluster


def start_git(state: StackState, progress: Progress) -> GitDaemon:
    progress("starting git daemon ...")
    daemon = GitDaemon(state_root() / "git", tied_to_parent=False).start()
    assert daemon.process is not None and daemon.process.pid is not None
    state.pids["git-daemon"] = daemon.process.pid
    state.git_port = daemon.port
    _save(state)
    return daemon


def start_worker(state: StackState, progress: Progress) -> None:
    progress("starting the flotilla worker ...")
    worker = ManagedProcess(
        "worker",
        [sys.executable, "-m", "worker"],
        state_root() / "worker.log",
        env={
            **os.environ,
            "TEMPORAL_ADDRESS": state.temporal_address,
            # The worker renders and deploys with the pinned helm and kustomize.
            "PATH": os.pathsep.join([*map(str, tools.bin_dirs()), os.environ.get("PATH", "")]),
        },
        cwd=Path(__file__).resolve().parent.parent,
        tied_to_parent=False,
    ).start()
    worker.wait_until(
        lambda: "worker started" in worker.log_tail(50),
        timeout=60,
        what="worker polling its task queues",
    )
    assert worker.pid is not None
    state.pids["worker"] = worker.pid
    _save(state)


def down(progress: Progress) -> None:
    """Stop the worker, the servers and every dev cluster, and remove their state."""
    state = load() or StackState()
    for name, pid in reversed(list(state.pids.items())):
        progress(f"stopping {name} (pid {pid})")
        stop_pid(pid)
    for cluster_state in clusters.list_clusters():
        progress(f"stopping cluster {cluster_state.name!r}")
        clusters.down(cluster_state.name)
    # The next `dev up` starts from nothing: no old workflows, repos or logs.
    shutil.rmtree(state_root(), ignore_errors=True)
