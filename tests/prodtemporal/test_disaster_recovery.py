"""The disaster-recovery drill of issue 19 on the production-shaped Temporal server.

Fleet's worst operational trap (Rancher 2.5): after a backup restore it was inoperable, and
the git and Helm credentials were not in the backup at all. Here the Temporal database is
backed up with pg_dump and the file secret store copied; a newer commit rolls out after the
backup; then Temporal and its database are destroyed and restored into a fresh server.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import time
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from activities.secrets import FileSecretStore, kubeconfig_secret_name
from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from devenv.temporal import TemporalServer
from flotilla.ids import bundle_workflow_id
from starters.control import Control
from tests.conftest import start_production_temporal
from tests.e2e.harness import (
    Flotilla,
    activity_calls,
    gitrepo_yaml,
    helm_history,
    per_cluster_namespaces,
)
from tests.e2e.test_rollout import register
from tests.e2e.test_worker_restart import worker_process_for
from workflows.gitrepo_models import GitRepoStatus

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{version: '{version}'}}\n"
CHART = "apiVersion: v2\nname: info\nversion: 0.1.0\n"
CHART_CM = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: chart-cfg}\n"
    "data: {version: {{ .Values.version | quote }}}\n"
)
CLUSTERS = ["k1", "k2"]
# The restored workers must have every status back at the new commit within this long of
# starting: a poll interval (1 s here), the time to replay and re-check each deployment, and
# the restored server's own settling: it has answered "Not enough hosts to serve the request"
# for up to about 50 s after a restore on this shared machine (5 to 56 s measured in all).
REBUILD_SECONDS = 120.0


def repo_files(prefix: str, version: int) -> dict[str, str]:
    fleet = per_cluster_namespaces(prefix, CLUSTERS)
    return {
        "raw/fleet.yaml": fleet,
        "raw/cm.yaml": CM.format(name="raw-cfg", version=version),
        "chart/fleet.yaml": fleet,
        "chart/Chart.yaml": CHART,
        "chart/values.yaml": f"version: '{version}'\n",
        "chart/templates/cm.yaml": CHART_CM,
        "held/fleet.yaml": fleet,
        "held/cm.yaml": CM.format(name="held-cfg", version=version),
    }


def versions(cluster: LocalCluster, prefix: str) -> dict[tuple[str, str], str]:
    """The version each bundle's ConfigMap holds on each cluster ('' where it is missing)."""
    found = {}
    for name, target in itertools.product(("raw", "chart", "held"), CLUSTERS):
        with contextlib.suppress(Exception):
            cm = cluster.request(
                "GET", f"/api/v1/namespaces/{prefix}-{target}/configmaps/{name}-cfg"
            )
            found[(name, target)] = cm["data"]["version"]
        found.setdefault((name, target), "")
    return found


def all_helm_revisions(cluster: LocalCluster, prefix: str) -> dict[tuple[str, str], list[int]]:
    return {
        (bundle, target): [
            int(h["revision"])  # type: ignore[call-overload]
            for h in helm_history(cluster.kubeconfig, f"dr-{bundle}", f"{prefix}-{target}")
        ]
        for bundle, target in itertools.product(("raw", "chart", "held"), CLUSTERS)
    }


async def rolled_out(control: Control, ns: str, commit: str) -> bool:
    for bundle in ("dr-raw", "dr-chart"):
        status = await control.bundle_status(ns, bundle)
        if not (status.commit == commit and status.state == "Ready" and status.desired == 2):
            return False
    return True


async def connect(server: TemporalServer) -> Client:
    return await Client.connect(server.address, data_converter=pydantic_data_converter)


@pytest.mark.parametrize("restore_secrets", [True, False], ids=["with-secrets", "without-secrets"])
async def test_restore_from_backup_keeps_clusters_at_the_newer_commit(
    restore_secrets: bool,
    tmp_path: Path,
    tools_on_path: list[Path],
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
) -> None:
    ns = f"fl-{uuid.uuid4().hex[:8]}"
    prefix = f"t{uuid.uuid4().hex[:6]}"
    task_queue = f"dr-{uuid.uuid4().hex[:8]}"
    secrets_dir = tmp_path / "secrets"
    server = start_production_temporal(tmp_path / "temporal-before")
    restored: TemporalServer | None = None
    worker = None
    try:
        client = await connect(server)
        control = Control(client, task_queue=task_queue, secrets=FileSecretStore(secrets_dir))
        helper = Flotilla(ns, client, control, None, None, None)  # type: ignore[arg-type]
        url = git_daemon.create_repo(repo_name, repo_files(prefix, 1))
        worker = worker_process_for(tmp_path, server, task_queue, ns)
        worker.start()
        for cluster in CLUSTERS:
            await control.add_cluster(ns, cluster, local_cluster.kubeconfig.read_text())
        await control.apply_text(
            gitrepo_yaml(ns, "dr", url, targets=[{"clusterSelector": {}}]), file="g.yaml"
        )
        await helper.eventually(
            lambda: control.gitrepo_status(ns, "dr"),
            lambda s: s.state == "Ready" and s.ready_bundle_deployments == "6/6",
            timeout=240,
        )
        await control.pause_bundle(ns, "dr-held", paused=True)
        await helper.eventually(lambda: control.bundle_status(ns, "dr-held"), lambda s: s.paused)

        # The backup: both Temporal databases and the secret store, as they are now.
        backup = server.backup(tmp_path / "backup")
        shutil.copytree(secrets_dir, tmp_path / "secrets-backup")

        # A newer commit rolls out after the backup: the clusters are now ahead of it.
        commit = git_daemon.commit(
            git_daemon.working_copy(repo_name), repo_files(prefix, 2), message="version 2"
        )
        expected = {k: "1" if k[0] == "held" else "2" for k in versions(local_cluster, prefix)}
        # Wait for the clusters too: a bundle's status has been seen Ready at the new commit
        # while its ConfigMaps still held the old version (reported to the lead).
        await helper.eventually(
            lambda: rolled_out(control, ns, commit),
            lambda done: done and versions(local_cluster, prefix) == expected,
            timeout=240,
        )
        revisions = all_helm_revisions(local_cluster, prefix)
        assert revisions == {k: [1] if k[0] == "held" else [1, 2] for k in revisions}

        # The disaster: Temporal, its database and the worker are gone.
        worker.kill()
        server.stop()
        shutil.rmtree(secrets_dir)
        if restore_secrets:
            shutil.copytree(tmp_path / "secrets-backup", secrets_dir)

        restored = start_production_temporal(tmp_path / "temporal-after", restore_from=backup)
        client = await connect(restored)
        control = Control(client, task_queue=task_queue, secrets=FileSecretStore(secrets_dir))
        helper = Flotilla(ns, client, control, None, None, None)  # type: ignore[arg-type]
        worker = worker_process_for(tmp_path, restored, task_queue, ns)
        started = time.monotonic()
        worker.start()

        timeouts: list[str] = []

        async def gitrepo_status() -> GitRepoStatus | None:
            # A query can time out while the restored worker replays the workflows that last
            # ran on the dead worker (their sticky queue): counted, then asked again.
            try:
                return await control.gitrepo_status(ns, "dr")
            except RPCError as err:
                timeouts.append(err.message)
                return None

        if not restore_secrets:
            missing = kubeconfig_secret_name(CLUSTERS[0])
            status = await helper.eventually(
                gitrepo_status,
                lambda s: s is not None and missing in s.message + s.error + str(s.bundles),
                timeout=REBUILD_SECONDS,
            )
            assert status is not None
            assert versions(local_cluster, prefix) == expected, status
            print(f"missing secret reported: {status.message!r} {status.error!r}; {timeouts=}")
            return

        seen_back: list[dict[tuple[str, str], str]] = []

        async def at_new_commit() -> tuple[bool, str]:
            now = versions(local_cluster, prefix)
            if now != expected:
                seen_back.append(now)
            try:
                raw = await control.bundle_status(ns, "dr-raw")
                chart = await control.bundle_status(ns, "dr-chart")
                held = await control.bundle_status(ns, "dr-held")
            except RPCError as err:
                timeouts.append(err.message)
                return False, err.message
            done = all(
                b.commit == commit and b.state == "Ready" and b.desired == 2 for b in (raw, chart)
            )
            return done and held.commit == commit and held.paused, f"{raw}\n{chart}\n{held}"

        await helper.eventually(at_new_commit, lambda r: r[0], timeout=REBUILD_SECONDS)
        elapsed = time.monotonic() - started
        assert not seen_back, f"a cluster went back to the backup's version: {seen_back[0]}"
        assert versions(local_cluster, prefix) == expected
        assert all_helm_revisions(local_cluster, prefix) == revisions, "new Helm revisions"
        held = await control.bundle_status(ns, "dr-held")
        assert held.paused and held.state == "OutOfSync", held
        print(f"statuses rebuilt {elapsed:.1f}s after the restored worker started; {timeouts=}")
    finally:
        if worker is not None:
            worker.kill()
        for srv in (server, restored):
            if srv is not None:
                srv.stop()
        for target in (*CLUSTERS, "default"):
            with contextlib.suppress(Exception):
                local_cluster.request("DELETE", f"/api/v1/namespaces/{prefix}-{target}")


async def test_server_restart_mid_partitioned_rollout_continues(
    flotilla: Flotilla,
    production_temporal: TemporalServer,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}"
    clusters = [f"c{i}" for i in range(1, 5)]
    part = {c: f"p{(i // 2) + 1}" for i, c in enumerate(clusters)}
    await register(flotilla, local_cluster, {c: {"part": part[c]} for c in clusters})
    fleet = per_cluster_namespaces(prefix, clusters) + (
        "rolloutStrategy:\n  maxUnavailable: 1\n  partitions:\n"
        + "".join(
            f"    - name: {p}\n      clusterSelector: {{matchLabels: {{part: {p}}}}}\n"
            for p in ("p1", "p2")
        )
    )
    url = git_daemon.create_repo(
        repo_name, {"app/fleet.yaml": fleet, "app/cm.yaml": CM.format(name="cfg", version=1)}
    )
    ns = flotilla.namespace
    try:
        await flotilla.control.apply_text(
            gitrepo_yaml(ns, "rs", url, targets=[{"clusterSelector": {}}]), file="gitrepo.yaml"
        )
        await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "rs"),
            lambda s: s.state == "Ready" and s.ready_bundle_deployments == "4/4",
            timeout=240,
        )
        commit = git_daemon.commit(
            git_daemon.working_copy(repo_name),
            {"app/cm.yaml": CM.format(name="cfg", version=2)},
            message="version 2",
        )

        async def upgrades() -> int:
            calls, _ = await activity_calls(flotilla.client, bundle_workflow_id(ns, "rs-app"))
            return sum(c.name == "deploy_bundle" for c in calls) - len(clusters)

        # Restart the server (same database) once the first partition's upgrade is under way.
        await flotilla.eventually(upgrades, lambda n: n >= 1, interval=0.1)
        production_temporal.stop_server()
        production_temporal.start_server()
        await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "rs"),
            lambda s: (
                s.commit == commit and s.state == "Ready" and s.ready_bundle_deployments == "4/4"
            ),
            timeout=300,
        )
        calls, _ = await activity_calls(flotilla.client, bundle_workflow_id(ns, "rs-app"))
        upgrade = [c for c in calls if c.name == "deploy_bundle"][len(clusters) :]
        order = [part[c.input["cluster_name"]] for c in upgrade]
        assert order == sorted(order), order  # p1 before p2, none repeated out of order
        for cluster in clusters:
            cm = local_cluster.request(
                "GET", f"/api/v1/namespaces/{prefix}-{cluster}/configmaps/cfg"
            )
            assert cm["data"] == {"version": "2"}
            history = helm_history(local_cluster.kubeconfig, "rs-app", f"{prefix}-{cluster}")
            assert [h["revision"] for h in history] == [1, 2], (cluster, history)
    finally:
        for target in (*clusters, "default"):
            with contextlib.suppress(Exception):
                local_cluster.request("DELETE", f"/api/v1/namespaces/{prefix}-{target}")
