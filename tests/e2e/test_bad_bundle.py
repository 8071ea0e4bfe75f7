"""A bad fleet.yaml in one of three bundles: the other two deploy to the cluster, the bad one
shows its one-line error, and the GitRepo keeps running to take the fix."""

from __future__ import annotations

import contextlib
import uuid

from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from tests.e2e.harness import Flotilla, gitrepo_yaml, helm_history

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{k: v}}\n"


async def test_bad_fleet_yaml_affects_only_its_bundle(
    flotilla: Flotilla, local_cluster: LocalCluster, git_daemon: GitDaemon, repo_name: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}"
    ns = flotilla.namespace
    files: dict[str, str | bytes] = {}
    for name in ("a", "b", "c"):
        files[f"{name}/cm.yaml"] = CM.format(name=name)
        files[f"{name}/fleet.yaml"] = f"namespace: {prefix}-{name}\n"
    files["b/fleet.yaml"] = f"namespace: {prefix}-b\nhelm: {{maxHistory: many}}\n"
    url = git_daemon.create_repo(repo_name, files)
    try:
        await flotilla.control.add_cluster(ns, "one", local_cluster.kubeconfig.read_text())
        await flotilla.worker.refresh_clusters()
        await flotilla.control.apply_text(
            gitrepo_yaml(ns, "bad", url, targets=[{"clusterName": "one"}]), file="gitrepo.yaml"
        )
        status = await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "bad"),
            lambda s: s.ready_bundle_deployments == "2/2" and len(s.bundles) == 3,
        )
        states = {b.name: (b.state, b.error) for b in status.bundles}
        assert states["bad-a"] == states["bad-c"] == ("Ready", "")
        assert states["bad-b"][0] == "ErrApplied" and "maxHistory" in states["bad-b"][1]
        assert status.state == "ErrApplied" and status.message.startswith("bad-b: b/fleet.yaml")
        for name in ("a", "c"):
            assert [
                h["revision"]
                for h in helm_history(local_cluster.kubeconfig, f"bad-{name}", f"{prefix}-{name}")
            ] == [1]

        fixed = git_daemon.commit(
            git_daemon.working_copy(repo_name),
            {"b/fleet.yaml": f"namespace: {prefix}-b\nhelm: {{maxHistory: 3}}\n"},
            message="fix b",
        )
        await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "bad"),
            lambda s: (
                s.commit == fixed and s.state == "Ready" and s.ready_bundle_deployments == "3/3"
            ),
        )
        # The good bundles did not change, so they were not redeployed.
        for name in ("a", "c"):
            assert [
                h["revision"]
                for h in helm_history(local_cluster.kubeconfig, f"bad-{name}", f"{prefix}-{name}")
            ] == [1]
    finally:
        for name in ("a", "b", "c"):
            with contextlib.suppress(Exception):
                local_cluster.request("DELETE", f"/api/v1/namespaces/{prefix}-{name}")
