"""A commit becomes Ready on two clusters; the next commit is one new Helm revision on each."""

from __future__ import annotations

import contextlib
import uuid

from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from starters.tables import cluster_table
from tests.e2e.harness import Flotilla, gitrepo_yaml, helm_history, per_cluster_namespaces

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings}}
data: {{greeting: {greeting}}}
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.local/web:1}]
"""


async def test_commit_becomes_ready_on_two_clusters_then_one_revision_per_commit(
    flotilla: Flotilla, local_cluster: LocalCluster, git_daemon: GitDaemon, repo_name: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}"
    url = git_daemon.create_repo(
        repo_name,
        {
            "app/fleet.yaml": per_cluster_namespaces(prefix, ["one", "two"]),
            "app/configmap.yaml": CONFIGMAP.format(greeting="hello"),
            "app/deployment.yaml": DEPLOYMENT,
        },
    )
    kubeconfig = local_cluster.kubeconfig.read_text()
    ns = flotilla.namespace
    try:
        for name in ("one", "two"):
            await flotilla.control.add_cluster(ns, name, kubeconfig, labels={"env": "test"})
        await flotilla.worker.refresh_clusters()
        assert flotilla.worker.cluster_queues == [f"cluster.{ns}.one", f"cluster.{ns}.two"]
        await flotilla.control.apply_text(
            gitrepo_yaml(ns, "demo", url, targets=[{"clusterSelector": {}}]), file="gitrepo.yaml"
        )
        status = await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "demo"),
            lambda s: s.state == "Ready" and s.ready_bundle_deployments == "2/2",
        )
        assert status.ready_clusters == status.desired_ready_clusters == 2
        first_commit = status.commit
        for name in ("one", "two"):
            history = helm_history(local_cluster.kubeconfig, "demo-app", f"{prefix}-{name}")
            assert [h["revision"] for h in history] == [1]

        commit = git_daemon.commit(
            git_daemon.working_copy(repo_name),
            {"app/configmap.yaml": CONFIGMAP.format(greeting="bonjour")},
            message="change the greeting",
        )
        status = await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "demo"),
            lambda s: (
                s.commit == commit and s.state == "Ready" and s.ready_bundle_deployments == "2/2"
            ),
        )
        assert commit != first_commit
        bundle = await flotilla.control.bundle_status(ns, "demo-app")
        assert bundle.state == "Ready" and bundle.commit == commit
        assert {c.cluster for c in bundle.clusters} == {"one", "two"}
        assert all(c.last_action.startswith("upgrade: ") for c in bundle.clusters), bundle
        clusters = cluster_table(
            await flotilla.control.registry(ns), await flotilla.control.list_bundles(ns)
        ).splitlines()
        assert clusters[0].split() == [
            "NAME",
            "LABELS",
            "PAUSED",
            "MODE",
            "BUNDLES-READY",
            "LAST-SEEN",
            "READY",
            "KUBECONFIG-SECRET",
            "STATUS",
        ]
        assert [line.split()[:5] + line.split()[-1:] for line in clusters[1:]] == [
            [name, "env=test", "false", "push", "1/1", "Ready"] for name in ("one", "two")
        ]
        for name in ("one", "two"):
            cm = local_cluster.request(
                "GET", f"/api/v1/namespaces/{prefix}-{name}/configmaps/settings"
            )
            assert cm["data"] == {"greeting": "bonjour"}
            history = helm_history(local_cluster.kubeconfig, "demo-app", f"{prefix}-{name}")
            assert [h["revision"] for h in history] == [1, 2]
    finally:
        for name in ("one", "two", "default"):
            with contextlib.suppress(Exception):
                local_cluster.request("DELETE", f"/api/v1/namespaces/{prefix}-{name}")
