"""The agent's Helm chart with the real helm: lint --strict, render, and a real install onto
the session's local cluster (kwok runs the pod without pulling the image)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from pathlib import Path

import yaml

from devenv.cluster import LocalCluster
from tests.install.test_chart import Helm, can, get, helm, wait_for_running_pods

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "flotilla-agent"
TOKEN = "flt1.fleet-default." + uuid.uuid4().hex
VALUES = {
    "clusterName": "edge-1",
    "temporal": {"address": "temporal.example.com:7233"},
    "token": TOKEN,
    "labels": {"site": "berlin"},
}

__all__ = ["helm"]  # the module's fixture, shared


def write_values(helm: Helm, values: Mapping[str, object]) -> str:
    path = helm.home / f"agent-values-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_agent_chart_lints_strictly_and_renders_what_it_says(helm: Helm) -> None:
    lint = helm.run("lint", "--strict", str(CHART), "--values", write_values(helm, VALUES))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    missing = helm.run("template", "a", str(CHART), "--set", "temporal.address=t:7233")
    assert missing.returncode != 0 and "clusterName is required" in missing.stderr
    rendered = helm.run("template", "a", str(CHART), "--values", write_values(helm, VALUES))
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ClusterRoleBinding", "Deployment", "Secret", "ServiceAccount"]
    (binding,) = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == "cluster-admin"
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    # The token reaches the agent from a Secret, never on its command line.
    assert TOKEN not in json.dumps(container)
    assert container["args"][:2] == ["--name", "edge-1"]
    assert "--label" in container["args"] and "site=berlin" in container["args"]

    limited = helm.run(
        "template",
        "a",
        str(CHART),
        "--values",
        write_values(helm, {**VALUES, "rbac": {"clusterAdmin": False}}),
    )
    assert limited.returncode == 0, limited.stderr
    docs = [d for d in yaml.safe_load_all(limited.stdout) if d]
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    (binding,) = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    # No metrics unless asked for.
    assert "--metrics-listen" not in container["args"] and "ports" not in container


def test_agent_chart_exposes_metrics_when_enabled(helm: Helm) -> None:
    values = write_values(helm, {**VALUES, "metrics": {"enabled": True, "port": 9191}})
    lint = helm.run("lint", "--strict", str(CHART), "--values", values)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    rendered = helm.run("template", "a", str(CHART), "--values", values)
    assert rendered.returncode == 0, rendered.stderr
    (deployment,) = [
        d for d in yaml.safe_load_all(rendered.stdout) if d and d["kind"] == "Deployment"
    ]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    at = container["args"].index("--metrics-listen")
    assert container["args"][at + 1] == "0.0.0.0:9191"
    assert container["ports"] == [{"name": "metrics", "containerPort": 9191}]
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9191",
        "prometheus.io/path": "/metrics",
    }


def test_helm_install_of_the_agent_is_accepted_and_runs(
    helm: Helm, local_cluster: LocalCluster, namespace: str
) -> None:
    kubeconfig = ("--kubeconfig", str(local_cluster.kubeconfig))
    installed = helm.run(
        "install",
        "edge",
        str(CHART),
        "--namespace",
        namespace,
        *kubeconfig,
        "--wait",
        "--timeout",
        "180s",
        "--values",
        # With metrics: the API server accepts the container port as rendered.
        write_values(helm, {**VALUES, "metrics": {"enabled": True}}),
    )
    try:
        assert installed.returncode == 0, installed.stdout + installed.stderr
        assert "flotilla get clusters" in installed.stdout
        name = "edge-flotilla-agent"
        get(local_cluster, f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}")
        secret = get(local_cluster, f"/api/v1/namespaces/{namespace}/secrets/{name}-token")
        assert set(secret["data"]) == {"token"}
        account = f"system:serviceaccount:{namespace}:{name}"
        # cluster-admin, as Fleet's agent: it may create anything anywhere.
        assert can(local_cluster, account, "create", "default", "deployments", "apps")
        assert can(local_cluster, account, "delete", "kube-system", "configmaps")
        deployment = get(local_cluster, f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
        (pod,) = [
            p
            for p in wait_for_running_pods(local_cluster, namespace, 1, "flotilla-agent")
            if p["spec"]["serviceAccountName"] == name
        ]
        assert pod["spec"]["automountServiceAccountToken"] is True
        (container,) = pod["spec"]["containers"]
        assert container["ports"][0]["containerPort"] == 9090, container
    finally:
        helm.run("uninstall", "edge", "--namespace", namespace, *kubeconfig, "--wait")
