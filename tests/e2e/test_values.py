"""Per-cluster Helm values from the planner reach each cluster: ${ .ClusterName },
global.fleet.clusterLabels.* and a targetCustomization's values."""

from __future__ import annotations

import contextlib
import uuid

from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from tests.e2e.harness import Flotilla, gitrepo_yaml

CHART = "apiVersion: v2\nname: greet\nversion: 0.1.0\n"
TEMPLATE = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: greeting}
data:
  cluster: {{ .Values.cluster | quote }}
  region: {{ .Values.region | quote }}
  size: {{ .Values.size | quote }}
"""


async def test_values_are_templated_per_cluster(
    flotilla: Flotilla, local_cluster: LocalCluster, git_daemon: GitDaemon, repo_name: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}"
    ns = flotilla.namespace
    fleet = f"""\
helm:
  values:
    cluster: ${{ .ClusterName }}
    region: global.fleet.clusterLabels.region
    size: small
targetCustomizations:
  - clusterName: east
    namespace: {prefix}-east
    helm: {{values: {{size: large}}}}
  - clusterName: west
    namespace: {prefix}-west
"""
    url = git_daemon.create_repo(
        repo_name,
        {
            "chart/Chart.yaml": CHART,
            "chart/templates/cm.yaml": TEMPLATE,
            "chart/fleet.yaml": fleet,
        },
    )
    kubeconfig = local_cluster.kubeconfig.read_text()
    try:
        await flotilla.control.add_cluster(ns, "east", kubeconfig, labels={"region": "us-east"})
        await flotilla.control.add_cluster(ns, "west", kubeconfig, labels={"region": "eu-west"})
        await flotilla.worker.refresh_clusters()
        await flotilla.control.apply_text(
            gitrepo_yaml(ns, "vals", url, targets=[{"clusterSelector": {}}]), file="g.yaml"
        )
        await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "vals"),
            lambda s: s.state == "Ready" and s.ready_bundle_deployments == "2/2",
        )
        east = local_cluster.request("GET", f"/api/v1/namespaces/{prefix}-east/configmaps/greeting")
        west = local_cluster.request("GET", f"/api/v1/namespaces/{prefix}-west/configmaps/greeting")
        assert east["data"] == {"cluster": "east", "region": "us-east", "size": "large"}
        assert west["data"] == {"cluster": "west", "region": "eu-west", "size": "small"}
    finally:
        for name in ("east", "west"):
            with contextlib.suppress(Exception):
                local_cluster.request("DELETE", f"/api/v1/namespaces/{prefix}-{name}")
