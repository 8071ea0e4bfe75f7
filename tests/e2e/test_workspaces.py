"""Workspaces: a GitRepo reaches only the clusters of its own namespace, however its targets
are written, and `cluster move` re-homes a cluster with the bundles following; against real
Temporal, a git daemon and a real cluster (three registry entries sharing it)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from temporalio.common import SearchAttributePair, TypedSearchAttributes

from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from flotilla.ids import registry_workflow_id
from starters.tables import workspace_table
from tests.e2e.harness import Flotilla, gitrepo_yaml, per_cluster_namespaces, releases
from workflows.registry_models import REGISTRY_WORKFLOW
from workflows.visibility import KIND

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {k: v}\n"


async def _releases(cluster: LocalCluster, namespace: str) -> list[str]:
    return releases(cluster.kubeconfig, namespace)


async def test_a_gitrepo_reaches_only_its_workspace_and_moved_clusters_follow(
    flotilla: Flotilla, local_cluster: LocalCluster, git_daemon: GitDaemon, repo_name: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}"
    team_a, team_b = f"{flotilla.namespace}-team-a", f"{flotilla.namespace}-team-b"
    flotilla.config.namespaces += [team_a, team_b]
    fleet = per_cluster_namespaces(prefix, ["a1", "a2", "b1"])
    url = git_daemon.create_repo(repo_name, {"app/fleet.yaml": fleet, "app/cm.yaml": CM})
    kubeconfig = local_cluster.kubeconfig.read_text()
    everywhere = [{"clusterSelector": {}}]
    try:
        for workspace, cluster in ((team_a, "a1"), (team_a, "a2"), (team_b, "b1")):
            await flotilla.control.add_cluster(workspace, cluster, kubeconfig)
        await flotilla.worker.refresh_clusters()
        for workspace, name in ((team_a, "apps-a"), (team_b, "apps-b")):
            await flotilla.control.apply_text(
                gitrepo_yaml(workspace, name, url, targets=everywhere), file=f"{name}.yaml"
            )

        async def targeted(workspace: str, bundle: str, clusters: list[str]) -> None:
            status = await flotilla.eventually(
                lambda: flotilla.control.bundle_status(workspace, bundle),
                lambda s: sorted(c.cluster for c in s.clusters) == clusters and s.state == "Ready",
                timeout=240,
            )
            assert status.desired == len(clusters)

        await asyncio.gather(
            targeted(team_a, "apps-a-app", ["a1", "a2"]), targeted(team_b, "apps-b-app", ["b1"])
        )
        assert await _releases(local_cluster, f"{prefix}-b1") == ["apps-b-app"]
        assert await _releases(local_cluster, f"{prefix}-a2") == ["apps-a-app"]
        # A workspace whose registry nobody serves (its worker is gone) is listed with why, and
        # does not hang the others (seen: a stale test namespace timed the whole list out).
        silent = f"{flotilla.namespace}-silent"
        await flotilla.control.client.start_workflow(
            REGISTRY_WORKFLOW,
            id=registry_workflow_id(silent),
            task_queue=f"nobody-{uuid.uuid4().hex[:8]}",
            search_attributes=TypedSearchAttributes([SearchAttributePair(KIND, "Registry")]),
        )
        await flotilla.eventually(
            flotilla.control.workspaces,
            lambda found: silent in {w.name for w in found},
            timeout=30,
        )
        workspaces = {w.name: w for w in await flotilla.control.workspaces()}
        assert "is a worker serving namespace" in workspaces[silent].problem, workspaces[silent]
        assert "?" in workspace_table([workspaces[silent]])
        assert (workspaces[team_a].clusters, workspaces[team_a].gitrepos) == (2, 1)
        assert (workspaces[team_b].clusters, workspaces[team_b].gitrepos) == (1, 1)

        message = await flotilla.control.move_cluster(team_a, "a2", team_b)
        assert message == f"cluster a2 moved from workspace {team_a} to {team_b}"
        await flotilla.worker.refresh_clusters()
        await asyncio.gather(
            targeted(team_a, "apps-a-app", ["a1"]), targeted(team_b, "apps-b-app", ["a2", "b1"])
        )
        await flotilla.eventually(
            lambda: _releases(local_cluster, f"{prefix}-a2"), lambda r: r == ["apps-b-app"]
        )
        workspaces = {w.name: w for w in await flotilla.control.workspaces()}
        assert (workspaces[team_a].clusters, workspaces[team_b].clusters) == (1, 2)
    finally:
        with contextlib.suppress(Exception):
            await flotilla.control.client.get_workflow_handle(
                registry_workflow_id(f"{flotilla.namespace}-silent")
            ).terminate("test over")
        for cluster in ("a1", "a2", "b1", "default"):
            with contextlib.suppress(Exception):
                local_cluster.request("DELETE", f"/api/v1/namespaces/{prefix}-{cluster}")
