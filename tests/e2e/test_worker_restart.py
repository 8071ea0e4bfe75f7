"""SIGKILL the worker process in the middle of a rollout, start it again: every cluster ends
Ready at the new version with exactly one Helm revision per commit."""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from activities.secrets import FileSecretStore
from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from devenv.temporal import TemporalDevServer
from flotilla.errors import FlotillaError
from flotilla.ids import bundle_workflow_id
from starters.control import Control
from tests.e2e.harness import Flotilla, WorkerProcess, activity_calls, gitrepo_yaml, helm_history
from workflows.gitrepo_models import GitRepoStatus

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web, version: "{version}"}}}}
    spec:
      containers: [{{name: web, image: "registry.local/web:{version}"}}]
"""


def worker_process_for(
    tmp: Path, server: TemporalDevServer, task_queue: str, namespace: str
) -> WorkerProcess:
    """``python worker.py`` with its own file stores below ``tmp``."""
    argv = [
        sys.executable,
        str(ROOT / "worker.py"),
        "--task-queue",
        task_queue,
        "--namespace",
        namespace,
        "--workdir",
        str(tmp / "work"),
        "--refresh-seconds",
        "0.5",
        "--control-threads",
        "4",
        "--cluster-threads",
        "6",
    ]
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": server.address,
        "FLOTILLA_SECRETS_DIR": str(tmp / "secrets"),
        "FLOTILLA_CONTENT_DIR": str(tmp / "content"),
    }
    return WorkerProcess(tmp / "worker.log", argv, env, ROOT)


@contextlib.contextmanager
def worker_process(
    tmp: Path, server: TemporalDevServer, task_queue: str, namespace: str
) -> Iterator[WorkerProcess]:
    worker = worker_process_for(tmp, server, task_queue, namespace)
    try:
        yield worker
    finally:
        worker.stop()


async def test_sigkill_mid_rollout_then_restart_ends_ready_without_extra_revisions(
    temporal_server: TemporalDevServer,
    temporal_client: Client,
    task_queue: str,
    tmp_path: Path,
    tools_on_path: list[Path],
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
) -> None:
    await _kill_mid_rollout(
        temporal_server, temporal_client, task_queue, tmp_path, local_cluster, git_daemon, repo_name
    )


async def test_worker_and_its_helm_killed_together_mid_upgrade_continue_the_same_revision(
    temporal_server: TemporalDevServer,
    temporal_client: Client,
    task_queue: str,
    tmp_path: Path,
    tools_on_path: list[Path],
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
) -> None:
    """The whole process group dies while helm waits on an upgrade (its revision pending):
    the restarted worker continues that upgrade under the same revision number."""
    await _kill_mid_rollout(
        temporal_server,
        temporal_client,
        task_queue,
        tmp_path,
        local_cluster,
        git_daemon,
        repo_name,
        group=True,
    )


@pytest.fixture
def persistent_server(tmp_path: Path) -> Iterator[TemporalDevServer]:
    """A dev server of this test's own with its database in a file, so it can restart."""
    with TemporalDevServer(tmp_path / "temporal", headless=True, persistent=True) as server:
        yield server


async def test_temporal_server_restarted_mid_rollout_continues_without_extra_revisions(
    persistent_server: TemporalDevServer,
    task_queue: str,
    tmp_path: Path,
    tools_on_path: list[Path],
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
) -> None:
    client = await Client.connect(persistent_server.address, data_converter=pydantic_data_converter)
    await _kill_mid_rollout(
        persistent_server,
        client,
        task_queue,
        tmp_path,
        local_cluster,
        git_daemon,
        repo_name,
        restart_server=True,
    )


async def _kill_mid_rollout(
    temporal_server: TemporalDevServer,
    temporal_client: Client,
    task_queue: str,
    tmp_path: Path,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    *,
    group: bool = False,
    restart_server: bool = False,
) -> None:
    ns = f"fl-{uuid.uuid4().hex[:8]}"
    prefix = f"t{uuid.uuid4().hex[:6]}"
    clusters = ["k1", "k2", "k3", "k4"]
    control = Control(
        temporal_client, task_queue=task_queue, secrets=FileSecretStore(tmp_path / "secrets")
    )
    # Only used for its helpers; this test's worker is the separate process.
    helper = Flotilla(ns, temporal_client, control, None, None, None)  # type: ignore[arg-type]
    fleet = "\n".join(
        [
            f"defaultNamespace: {prefix}-default",
            "rolloutStrategy: {maxUnavailable: 1}",
            # helm waits for the Deployment (its revision stays pending meanwhile).
            *(["helm: {timeoutSeconds: 120}"] if group else []),
            "targetCustomizations:",
        ]
        + [f"  - {{clusterName: {c}, namespace: {prefix}-{c}}}" for c in clusters]
    )
    url = git_daemon.create_repo(
        repo_name, {"app/fleet.yaml": fleet + "\n", "app/web.yaml": DEPLOYMENT.format(version=1)}
    )
    with worker_process(tmp_path, temporal_server, task_queue, ns) as worker:
        try:
            worker.start()
            for cluster in clusters:
                await control.add_cluster(ns, cluster, local_cluster.kubeconfig.read_text())
            await control.apply_text(
                gitrepo_yaml(ns, "kill", url, targets=[{"clusterSelector": {}}]), file="g.yaml"
            )
            await helper.eventually(
                lambda: control.gitrepo_status(ns, "kill"),
                lambda s: s.state == "Ready" and s.ready_bundle_deployments == "4/4",
                timeout=180,
            )
            commit = git_daemon.commit(
                git_daemon.working_copy(repo_name),
                {"app/web.yaml": DEPLOYMENT.format(version=2)},
                message="version 2",
            )

            async def upgrades() -> int:
                calls, _ = await activity_calls(temporal_client, bundle_workflow_id(ns, "kill-app"))
                return sum(c.name == "deploy_bundle" for c in calls) - len(clusters)

            async def pending() -> list[str]:
                return [c for c in clusters if _pending_revisions(local_cluster, f"{prefix}-{c}")]

            if restart_server:
                # The server goes away mid-rollout and comes back on the same port and
                # database; the worker and every workflow carry on.
                await helper.eventually(upgrades, lambda n: n >= 1, interval=0.1)
                temporal_server.stop()
                temporal_server.start()
            elif group:
                # Kill the moment a helm upgrade has left its revision pending.
                stuck = await helper.eventually(pending, bool, timeout=120, interval=0.05)
                worker.kill_group()
            else:
                # Kill as soon as the first cluster's upgrade has been handed out.
                await helper.eventually(upgrades, lambda n: n >= 1, interval=0.1)
                worker.kill()
            if not restart_server:
                worker.start()

            async def current() -> GitRepoStatus:
                # A server that has just come back may answer "unavailable" for a moment.
                try:
                    return await control.gitrepo_status(ns, "kill")
                except RPCError as err:
                    raise FlotillaError(err.message) from None

            status = await helper.eventually(
                current,
                lambda s: (
                    s.commit == commit
                    and s.state == "Ready"
                    and s.ready_bundle_deployments == "4/4"
                ),
                timeout=300,
            )
            assert status.ready_clusters == 4
            for cluster in clusters:
                history = helm_history(local_cluster.kubeconfig, "kill-app", f"{prefix}-{cluster}")
                assert [h["revision"] for h in history] == [1, 2], (cluster, history)
                assert history[-1]["status"] == "deployed"
            if group:
                calls, _ = await activity_calls(temporal_client, bundle_workflow_id(ns, "kill-app"))
                actions = {
                    c.input["cluster_name"]: c.result["action"]
                    for c in calls
                    if c.name == "deploy_bundle" and c.result and c.input["cluster_name"] in stuck
                }
                assert set(actions.values()) == {"continue-pending-upgrade"}, actions
            # SIGTERM drains and exits cleanly.
            worker.stop()
            assert worker.proc is not None and worker.proc.returncode == 0
            assert "shutting down" in worker.log.read_text()
        finally:
            await helper.cleanup()
            for cluster in (*clusters, "default"):
                with contextlib.suppress(Exception):
                    local_cluster.request("DELETE", f"/api/v1/namespaces/{prefix}-{cluster}")


def _pending_revisions(cluster: LocalCluster, namespace: str) -> list[str]:
    """Helm's release records of ``namespace`` that are pending (an operation in progress)."""
    try:
        found = cluster.request(
            "GET", f"/api/v1/namespaces/{namespace}/secrets?labelSelector=owner%3Dhelm"
        )
    except Exception:  # the namespace may not exist yet
        return []
    return [
        item["metadata"]["name"]
        for item in found.get("items", [])
        if item["metadata"].get("labels", {}).get("status", "").startswith("pending")
    ]
