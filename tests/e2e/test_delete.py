"""Deleting a GitRepo with keepResources drops the Helm release but leaves the objects, and
targetNamespace forces every bundle into one namespace."""

from __future__ import annotations

import contextlib
import uuid

from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from tests.e2e.harness import Flotilla, gitrepo_yaml, releases

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{k: v}}\n"


async def test_keep_resources_and_target_namespace(
    flotilla: Flotilla, local_cluster: LocalCluster, git_daemon: GitDaemon, repo_name: str
) -> None:
    target = f"t{uuid.uuid4().hex[:6]}-forced"
    ns = flotilla.namespace
    url = git_daemon.create_repo(
        repo_name,
        {
            "a/cm.yaml": CM.format(name="a"),
            "a/fleet.yaml": "defaultNamespace: ignored-a\n",
            "b/cm.yaml": CM.format(name="b"),
            "b/fleet.yaml": "defaultNamespace: ignored-b\n",
        },
    )
    try:
        await flotilla.control.add_cluster(ns, "one", local_cluster.kubeconfig.read_text())
        await flotilla.worker.refresh_clusters()
        await flotilla.control.apply_text(
            gitrepo_yaml(
                ns,
                "keep",
                url,
                targets=[{"clusterName": "one"}],
                targetNamespace=target,
                keepResources=True,
            ),
            file="gitrepo.yaml",
        )
        await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "keep"),
            lambda s: s.state == "Ready" and s.ready_bundle_deployments == "2/2",
        )
        assert sorted(releases(local_cluster.kubeconfig, target)) == ["keep-a", "keep-b"]
        assert "deleted" in await flotilla.control.delete_gitrepo(ns, "keep")
        assert releases(local_cluster.kubeconfig, target) == []
        for name in ("a", "b"):
            cm = local_cluster.request("GET", f"/api/v1/namespaces/{target}/configmaps/{name}")
            assert cm["data"] == {"k": "v"}
    finally:
        with contextlib.suppress(Exception):
            local_cluster.request("DELETE", f"/api/v1/namespaces/{target}")
