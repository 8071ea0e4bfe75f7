"""Registry changes re-target bundles: a label change deploys where the selector now matches,
removing a cluster uninstalls the bundle from it."""

from __future__ import annotations

import contextlib
import uuid

from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from tests.e2e.harness import (
    Flotilla,
    gitrepo_yaml,
    helm_history,
    per_cluster_namespaces,
    releases,
)

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {k: v}\n"


async def test_labels_and_removal_retarget_the_bundle(
    flotilla: Flotilla, local_cluster: LocalCluster, git_daemon: GitDaemon, repo_name: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}"
    ns = flotilla.namespace
    fleet = per_cluster_namespaces(prefix, ["east", "west"])
    url = git_daemon.create_repo(repo_name, {"app/fleet.yaml": fleet, "app/cm.yaml": CM})
    kubeconfig = local_cluster.kubeconfig.read_text()
    try:
        await flotilla.control.add_cluster(ns, "east", kubeconfig, labels={"env": "prod"})
        await flotilla.control.add_cluster(ns, "west", kubeconfig, labels={"env": "dev"})
        await flotilla.worker.refresh_clusters()
        await flotilla.control.apply_text(
            gitrepo_yaml(
                ns, "sel", url, targets=[{"clusterSelector": {"matchLabels": {"env": "prod"}}}]
            ),
            file="gitrepo.yaml",
        )
        bundle = await flotilla.eventually(
            lambda: flotilla.control.bundle_status(ns, "sel-app"),
            lambda s: s.state == "Ready" and s.desired == 1,
        )
        assert [c.cluster for c in bundle.clusters] == ["east"]
        assert releases(local_cluster.kubeconfig, f"{prefix}-west") == []

        await flotilla.control.label_cluster(ns, "west", {"env": "prod"}, [])
        await flotilla.eventually(
            lambda: flotilla.control.bundle_status(ns, "sel-app"),
            lambda s: s.state == "Ready" and s.desired == 2,
        )
        assert releases(local_cluster.kubeconfig, f"{prefix}-west") == ["sel-app"]

        await flotilla.control.remove_cluster(ns, "east")
        await flotilla.eventually(
            lambda: flotilla.control.bundle_status(ns, "sel-app"),
            lambda s: [c.cluster for c in s.clusters] == ["west"] and s.state == "Ready",
        )
        await flotilla.eventually(
            lambda: _async(releases(local_cluster.kubeconfig, f"{prefix}-east")), lambda r: r == []
        )
        # The GitRepo's counts follow its bundles' reports, a moment after the bundle's own.
        await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "sel"),
            lambda s: s.ready_bundle_deployments == "1/1",
        )

        # Bumping forceSyncGeneration redeploys every bundle: one new Helm revision.
        selector = [{"clusterSelector": {"matchLabels": {"env": "prod"}}}]
        await flotilla.control.apply_text(
            gitrepo_yaml(ns, "sel", url, targets=selector, forceSyncGeneration=1),
            file="gitrepo.yaml",
        )
        await flotilla.eventually(
            lambda: _async(
                [
                    str(h["revision"])
                    for h in helm_history(local_cluster.kubeconfig, "sel-app", f"{prefix}-west")
                ]
            ),
            lambda revisions: revisions == ["1", "2"],
        )
        await flotilla.eventually(
            lambda: flotilla.control.bundle_status(ns, "sel-app"), lambda s: s.state == "Ready"
        )

        # Deleting the GitRepo uninstalls what it deployed, then its workflows end.
        assert "deleted" in await flotilla.control.delete_gitrepo(ns, "sel")
        assert releases(local_cluster.kubeconfig, f"{prefix}-west") == []
        assert await flotilla.control.list_bundles(ns) == []
    finally:
        for name in ("east", "west", "default"):
            with contextlib.suppress(Exception):
                local_cluster.request("DELETE", f"/api/v1/namespaces/{prefix}-{name}")


async def _async(value: list[str]) -> list[str]:
    return value
