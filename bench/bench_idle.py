"""Idle cost: 20 GitRepos polling every 15 s with no new commits, worker CPU over a window.

Real Temporal dev server, git daemon, one local cluster (1 kwok node) and the flotilla worker
as a subprocess (``python worker.py``, real activities). Each GitRepo has its own repository
with one bundle of one ConfigMap targeting the cluster. Once all 20 are Ready, the worker's
user+system CPU (``/proc/<pid>/stat``) is measured over the window and reported as % of one
core. Git traffic goes through a counting TCP proxy in front of the git daemon, which sees
each connection and the protocol-v2 commands in it (``ls-refs`` for ls-remote, ``fetch`` for
a clone or fetch); the GitRepo histories give the ls_remote/fetch_bundles activities in the
window. Run:

    .venv/bin/python bench/bench_idle.py --gitrepos 20 --interval 15 --window 150
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from bench_fleet import cpu_seconds, start_worker, stop_worker, wait_for_log

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from activities.secrets import FileSecretStore
from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from devenv.temporal import TemporalDevServer
from flotilla.ids import gitrepo_workflow_id
from flotilla.settings import TemporalSettings
from runtime.temporal import connect
from starters.control import Control
from tests.e2e.harness import activity_calls, gitrepo_yaml

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: idle{i}}}\ndata: {{v: '1'}}\n"


class CountingProxy:
    """Forwards TCP to the git daemon, counting connections and git v2 commands."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.counts)

    def _accept(self) -> None:
        while True:
            conn, _ = self.listener.accept()
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.counts["connections"] += 1
            threading.Thread(target=self._pipe, args=(conn, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, conn, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, client: bool) -> None:
        try:
            while data := source.recv(65536):
                if client:
                    for command in (b"command=ls-refs", b"command=fetch"):
                        hits = data.count(command)
                        if hits:
                            with self.lock:
                                self.counts[command.decode()] += hits
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


async def run(gitrepos: int, interval: int, window: float) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        root = Path(tmp)
        with (
            TemporalDevServer(root / "temporal", headless=True) as server,
            GitDaemon(root / "git") as git,
            LocalCluster("idle", root / "cluster", nodes=1) as cluster,
        ):
            proxy = CountingProxy(git.port)
            namespace = "fl-idle"
            client = await connect(TemporalSettings(address=server.address))
            control = Control(client, secrets=FileSecretStore(root / "secrets"))
            worker = start_worker(server.address, root / "worker", [namespace])
            try:
                await control.add_cluster(namespace, "idle", cluster.kubeconfig.read_text())
                wait_for_log(root / "worker" / "worker.log", "serving push-mode cluster", 1)
                for index in range(gitrepos):
                    git.create_repo(f"idle{index}", {"b/cm.yaml": CM.format(i=index)})
                    url = f"git://127.0.0.1:{proxy.port}/idle{index}.git"
                    text = gitrepo_yaml(
                        namespace, f"idle{index}", url, targets=[{"clusterSelector": {}}]
                    ).replace("pollingInterval: 1s", f"pollingInterval: {interval}s")
                    await control.apply_text(text, file=f"g{index}.yaml")
                deadline = time.monotonic() + 600
                while True:
                    statuses = [
                        await control.gitrepo_status(namespace, f"idle{index}")
                        for index in range(gitrepos)
                    ]
                    if all(
                        s.state == "Ready" and s.ready_bundle_deployments == "1/1" for s in statuses
                    ):
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"not all Ready: {statuses}")
                    await asyncio.sleep(1)
                print(f"all {gitrepos} Ready; settling 20 s; {uptime()}", flush=True)
                await asyncio.sleep(20)
                log_before = (root / "worker" / "worker.log").read_text()
                git_before = proxy.snapshot()
                window_start = datetime.now(UTC)
                cpu_before = cpu_seconds(worker.pid)
                started = time.monotonic()
                load_start = uptime()
                await asyncio.sleep(window)
                cpu = cpu_seconds(worker.pid) - cpu_before
                elapsed = time.monotonic() - started
                window_end = datetime.now(UTC)
                git_after = proxy.snapshot()
                load_end = uptime()
                log_window = (root / "worker" / "worker.log").read_text()[len(log_before) :]
                activities: Counter[str] = Counter()
                for index in range(gitrepos):
                    calls, _ = await activity_calls(
                        client, gitrepo_workflow_id(namespace, f"idle{index}")
                    )
                    for call in calls:
                        scheduled = call.scheduled.replace(tzinfo=UTC)
                        if window_start <= scheduled < window_end:
                            activities[call.name] += 1
            finally:
                stop_worker(worker)
            git_window = git_after - git_before
            polls = activities["ls_remote"]
            print(f"window {elapsed:.0f}s, {gitrepos} GitRepos polling every {interval}s")
            print(f"load at start: {load_start}")
            print(f"load at end:   {load_end}")
            print(f"worker CPU {cpu:.2f}s = {100 * cpu / elapsed:.2f}% of one core")
            print(f"activities in window (GitRepo histories): {dict(activities)}")
            print(f"git traffic in window (proxy): {dict(git_window)}")
            if polls:
                print(
                    f"per poll: {git_window['connections'] / polls:.2f} connections, "
                    f"{git_window['command=ls-refs'] / polls:.2f} ls-refs, "
                    f"{git_window['command=fetch'] / polls:.2f} fetch; "
                    f"worker CPU {1000 * cpu / polls:.0f} ms"
                )
            print(f"worker log lines in window: {len(log_window.splitlines())}")
            for line in log_window.splitlines()[:10]:
                print("  " + line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gitrepos", type=int, default=20)
    parser.add_argument("--interval", type=int, default=15)
    parser.add_argument("--window", type=float, default=150.0)
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the worker subprocess and clusters are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    asyncio.run(run(args.gitrepos, args.interval, args.window))
    return 0


if __name__ == "__main__":
    sys.exit(main())
