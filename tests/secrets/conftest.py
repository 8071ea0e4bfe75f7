"""The ``kubernetes`` secret store against a real management cluster (etcd + kube-apiserver).

Each test gets its own namespace in the session's management cluster. Service accounts are
real ones: the API server signs their tokens (TokenRequest) and its RBAC authorizer decides,
with the ClusterRoles exactly as docs/secrets.md documents them.
"""

from __future__ import annotations

import re
import urllib.error
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from activities.kubesecrets import KubernetesSecretStore
from devenv.cluster import LocalCluster

DOCS = Path(__file__).resolve().parents[2] / "docs" / "secrets.md"
_YAML_BLOCK = re.compile(r"```yaml\n(.*?)```", re.DOTALL)


def create_namespace(cluster: LocalCluster, name: str) -> None:
    cluster.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
    )


def create_secret(cluster: LocalCluster, namespace: str, name: str, values: dict[str, str]) -> None:
    """A Secret as `kubectl create secret generic` makes it for Fleet: no flotilla label."""
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}}
    cluster.request(
        "POST", f"/api/v1/namespaces/{namespace}/secrets", {**secret, "stringData": values}
    )


@pytest.fixture
def mgmt_namespace(management_cluster: LocalCluster) -> str:
    """A fresh namespace in the management cluster. Left in place afterwards: an API server
    without a controller-manager never finishes deleting a namespace, and the cluster goes
    away with the session."""
    name = f"s-{uuid.uuid4().hex[:10]}"
    create_namespace(management_cluster, name)
    return name


@pytest.fixture
def store(management_cluster: LocalCluster) -> Iterator[KubernetesSecretStore]:
    """A store with the admin's kubeconfig (FLOTILLA_MANAGEMENT_KUBECONFIG)."""
    secrets = KubernetesSecretStore(management_cluster.kubeconfig)
    yield secrets
    secrets.close()


def service_account_token(cluster: LocalCluster, namespace: str, name: str) -> str:
    """Create a ServiceAccount and get a token the API server signs for it."""
    cluster.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
    )
    review = cluster.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    token: str = review["status"]["token"]
    return token


def documented_objects() -> list[dict[str, Any]]:
    """Every object in docs/secrets.md's YAML blocks."""
    objects = []
    for block in _YAML_BLOCK.findall(DOCS.read_text()):
        objects.extend(o for o in yaml.safe_load_all(block) if o)
    return objects


@pytest.fixture(scope="session")
def documented_roles(management_cluster: LocalCluster) -> list[str]:
    """The ClusterRoles of docs/secrets.md, created in the management cluster as written."""
    names = []
    for obj in documented_objects():
        if obj["kind"] != "ClusterRole":
            continue
        try:
            management_cluster.request(
                "POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", obj
            )
        except urllib.error.HTTPError as err:
            if err.code != 409:  # made by an earlier test of this session
                raise
        names.append(obj["metadata"]["name"])
    return names


def bind(
    cluster: LocalCluster, namespace: str, role: str, account_namespace: str, account: str
) -> None:
    """Bind a ClusterRole to a service account in one namespace (a RoleBinding)."""
    cluster.request(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{role}-{account}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": account, "namespace": account_namespace}
            ],
        },
    )
