"""serviceAccount deploys as that ServiceAccount of the bundle's namespace, through Kubernetes
impersonation, against a real API server with RBAC: within its Role a bundle deploys; a
ClusterRole or an object in another namespace ends Forbidden with one line naming the verb,
the resource and the account; a missing ServiceAccount says so; the other bundles carry on."""

from __future__ import annotations

import contextlib
import urllib.error
import uuid

import pytest

from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from tests.e2e.harness import Flotilla, gitrepo_yaml, grant_namespaced_role, releases

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{k: v}}\n"
CLUSTER_ROLE = (
    "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n"
    "metadata: {{name: {name}}}\nrules: []\n"
)


async def test_bundles_deploy_as_their_service_account(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    namespace: str,
) -> None:
    ns = flotilla.namespace
    other = f"{namespace}-other"
    role = f"t{uuid.uuid4().hex[:6]}-admin"
    grant_namespaced_role(local_cluster, namespace, "deployer")
    local_cluster.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}},
    )
    as_deployer = f"defaultNamespace: {namespace}\nserviceAccount: deployer\n"
    url = git_daemon.create_repo(
        repo_name,
        {
            "ok/fleet.yaml": as_deployer,
            "ok/cm.yaml": CM.format(name="ok"),
            "cr/fleet.yaml": as_deployer,
            "cr/cm.yaml": CM.format(name="cr"),
            "cr/role.yaml": CLUSTER_ROLE.format(name=role),
            "elsewhere/fleet.yaml": as_deployer,
            "elsewhere/cm.yaml": CM.format(name="x").replace(
                "metadata: {name: x}", f"metadata: {{name: x, namespace: {other}}}"
            ),
            "ghost/fleet.yaml": f"defaultNamespace: {namespace}\nserviceAccount: ghost\n",
            "ghost/cm.yaml": CM.format(name="ghost"),
            "admin/fleet.yaml": f"defaultNamespace: {namespace}\n",
            "admin/cm.yaml": CM.format(name="admin"),
        },
    )
    try:
        await flotilla.control.add_cluster(ns, "one", local_cluster.kubeconfig.read_text())
        await flotilla.worker.refresh_clusters()
        await flotilla.control.apply_text(
            gitrepo_yaml(ns, "sa", url, targets=[{"clusterName": "one"}]), file="gitrepo.yaml"
        )
        status = await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "sa"),
            lambda s: (
                len(s.bundles) == 5 and all(b.state in ("Ready", "ErrApplied") for b in s.bundles)
            ),
            timeout=300,
        )
        states = {b.name.removeprefix("sa-"): b for b in status.bundles}
        assert states["ok"].state == "Ready" and states["admin"].state == "Ready"
        user = f"system:serviceaccount:{namespace}:deployer"
        for name, resource in (
            ("cr", "clusterroles.rbac.authorization.k8s.io at cluster scope"),
            ("elsewhere", f"configmaps in namespace {other}"),
        ):
            bundle = await flotilla.control.bundle_status(ns, f"sa-{name}")
            (cluster,) = bundle.clusters
            assert cluster.state == "ErrApplied", (name, cluster)
            message = cluster.message
            assert "\n" not in message
            assert f"forbidden: {user} cannot get {resource}" in message, message
        ghost = (await flotilla.control.bundle_status(ns, "sa-ghost")).clusters[0]
        assert ghost.state == "ErrApplied"
        assert f"ServiceAccount {namespace}/ghost does not exist on cluster {ns}/one" in (
            ghost.message
        )
        # Within its Role the bundle deployed; nothing outside it was created.
        got = local_cluster.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/ok")
        assert got["metadata"]["name"] == "ok"
        assert "sa-ok" in releases(local_cluster.kubeconfig, namespace)
        with pytest.raises(urllib.error.HTTPError) as err:
            local_cluster.request("GET", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{role}")
        assert err.value.code == 404
    finally:
        with contextlib.suppress(Exception):
            local_cluster.request("DELETE", f"/api/v1/namespaces/{other}")


async def test_a_workspace_selector_is_matched_against_the_target_namespace(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    namespace: str,
) -> None:
    """A GitRepoRestriction's allowedTargetNamespaceSelector travels from the registry through
    the GitRepo and the planner to the deploy, which reads the target Namespace's labels."""
    ns = flotilla.namespace
    other = f"{namespace}-other"
    labelled = local_cluster.request("GET", f"/api/v1/namespaces/{namespace}")
    labelled["metadata"].setdefault("labels", {})["team"] = "a"
    local_cluster.request("PUT", f"/api/v1/namespaces/{namespace}", labelled)
    local_cluster.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}},
    )
    url = git_daemon.create_repo(repo_name, {"cm.yaml": CM.format(name="cfg")})
    try:
        await flotilla.control.add_cluster(ns, "one", local_cluster.kubeconfig.read_text())
        await flotilla.worker.refresh_clusters()
        await flotilla.control.apply_text(
            "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepoRestriction\n"
            f"metadata: {{name: teams, namespace: {ns}}}\n"
            "allowedTargetNamespaceSelector: {matchLabels: {team: a}}\n",
            file="restriction.yaml",
        )
        for name, target in (("inside", namespace), ("outside", other)):
            await flotilla.control.apply_text(
                gitrepo_yaml(
                    ns, name, url, targets=[{"clusterName": "one"}], targetNamespace=target
                ),
                file=f"{name}.yaml",
            )

        async def settled(name: str, state: str) -> str:
            status = await flotilla.eventually(
                lambda: flotilla.control.bundle_status(ns, name),
                lambda s: len(s.clusters) == 1 and s.clusters[0].state == state,
                timeout=240,
            )
            return str(status.clusters[0].message)

        await settled("inside", "Ready")
        message = await settled("outside", "ErrApplied")
        assert (
            f"target namespace {other} does not match allowedTargetNamespaceSelector team=a"
        ) in message, message
        assert "\n" not in message
        assert local_cluster.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/cfg")
        with pytest.raises(urllib.error.HTTPError):
            local_cluster.request("GET", f"/api/v1/namespaces/{other}/configmaps/cfg")
    finally:
        with contextlib.suppress(Exception):
            local_cluster.request("DELETE", f"/api/v1/namespaces/{other}")
