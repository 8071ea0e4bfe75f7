"""A settled bundle checks its deployments for drift: a hand edit shows as Modified, and with
correctDrift the next check puts the object back."""

from __future__ import annotations

import contextlib
import uuid

from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from flotilla.models import GitRepo, load_fleet_objects
from tests.e2e.harness import Flotilla, gitrepo_yaml

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {color: blue}\n"


def edit_by_hand(cluster: LocalCluster, path: str, color: str) -> None:
    obj = cluster.request("GET", path)
    obj["data"]["color"] = color
    cluster.request("PUT", path, obj)


async def test_hand_edit_is_modified_then_corrected(
    flotilla: Flotilla, local_cluster: LocalCluster, git_daemon: GitDaemon, repo_name: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}"
    ns = flotilla.namespace
    target = f"{prefix}-one"
    url = git_daemon.create_repo(
        repo_name, {"app/fleet.yaml": f"namespace: {target}\n", "app/cm.yaml": CM}
    )
    path = f"/api/v1/namespaces/{target}/configmaps/cfg"
    try:
        await flotilla.control.add_cluster(ns, "one", local_cluster.kubeconfig.read_text())
        await flotilla.worker.refresh_clusters()
        (gitrepo,), _ = load_fleet_objects(
            gitrepo_yaml(ns, "drift", url, targets=[{"clusterName": "one"}]), file="g.yaml"
        )
        assert isinstance(gitrepo, GitRepo)
        await flotilla.control.apply_gitrepo(gitrepo, monitor_seconds=2)
        await flotilla.eventually(
            lambda: flotilla.control.bundle_status(ns, "drift-app"),
            lambda s: s.state == "Ready" and s.desired == 1,
        )
        edit_by_hand(local_cluster, path, "red")
        modified = await flotilla.eventually(
            lambda: flotilla.control.bundle_status(ns, "drift-app"),
            lambda s: s.state == "Modified",
        )
        assert modified.message.startswith("one: ") and "cfg" in modified.message
        status = await flotilla.control.gitrepo_status(ns, "drift")
        assert status.state == "Modified"

        git_daemon.commit(
            git_daemon.working_copy(repo_name),
            {"app/fleet.yaml": f"namespace: {target}\ncorrectDrift: {{enabled: true}}\n"},
            message="correct drift",
        )
        fixed = await flotilla.eventually(
            lambda: flotilla.control.bundle_status(ns, "drift-app"),
            lambda s: s.state == "Ready" and s.commit != modified.commit,
        )
        assert local_cluster.request("GET", path)["data"] == {"color": "blue"}
        edit_by_hand(local_cluster, path, "green")
        fixed = await flotilla.eventually(
            lambda: flotilla.control.bundle_status(ns, "drift-app"),
            lambda s: s.clusters[0].last_action.startswith("corrected drift"),
        )
        assert fixed.state == "Ready"
        assert local_cluster.request("GET", path)["data"] == {"color": "blue"}
    finally:
        with contextlib.suppress(Exception):
            local_cluster.request("DELETE", f"/api/v1/namespaces/{target}")
