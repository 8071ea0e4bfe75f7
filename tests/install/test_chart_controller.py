"""The chart's controller switch, rendered by the real helm: `flotilla controller` in its own
one-replica Deployment, with the roles it needs and the worker's Temporal settings."""

from __future__ import annotations

from typing import Any

from tests.install.test_chart import REQUIRED, VALUE_SETS, Helm, helm, merged, of_kind

__all__ = ["helm"]  # the module's helm fixture


def _controller(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    found = [
        m for m in of_kind(manifests, "Deployment") if m["metadata"]["name"].endswith("-controller")
    ]
    assert len(found) == 1
    return found[0]


def test_off_by_default(helm: Helm) -> None:
    manifests = helm.render(REQUIRED)
    assert len(of_kind(manifests, "Deployment")) == 1
    assert not of_kind(manifests, "ClusterRole")


def test_on_runs_one_controller_that_never_overlaps_another(helm: Helm) -> None:
    manifests = helm.render(merged(REQUIRED, {"controller": {"enabled": True}}))
    deployment = _controller(manifests)
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "starters.cli", "controller"]
    assert container["args"] == [
        "--namespace",
        "fleet-local",
        "--namespace",
        "fleet-default",
        "--install-crds",
        "--status-interval",
        "2",
    ]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["FLOTILLA_SECRET_BACKEND"] == "kubernetes"
    # The worker's Deployment does not select the controller's pods, nor the reverse.
    worker = next(m for m in of_kind(manifests, "Deployment") if m is not deployment)
    worker_labels = worker["spec"]["selector"]["matchLabels"]
    controller_labels = spec["template"]["metadata"]["labels"]
    assert not all(controller_labels.get(k) == v for k, v in worker_labels.items())
    (role,) = of_kind(manifests, "ClusterRole")
    crd_rule = next(r for r in role["rules"] if r["apiGroups"] == ["apiextensions.k8s.io"])
    assert crd_rule["verbs"] == ["get", "create", "update"]
    assert of_kind(manifests, "ClusterRoleBinding")


def test_expecting_crds_grants_no_crd_writes(helm: Helm) -> None:
    values = merged(REQUIRED, {"controller": {"enabled": True, "installCRDs": False}})
    manifests = helm.render(values)
    assert (
        "--no-install-crds"
        in _controller(manifests)["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    (role,) = of_kind(manifests, "ClusterRole")
    crd_rule = next(r for r in role["rules"] if r["apiGroups"] == ["apiextensions.k8s.io"])
    assert crd_rule["verbs"] == ["get"]


def test_controller_keeps_the_workers_temporal_tls(helm: Helm) -> None:
    values = merged(VALUE_SETS["self-hosted-mtls"], {"controller": {"enabled": True}})
    pod = _controller(helm.render(values))["spec"]["template"]["spec"]
    mounts = {m["name"] for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"] for v in pod["volumes"]}
    assert "temporal-tls" in mounts and "temporal-tls" in volumes


def test_unknown_controller_value_is_refused(helm: Helm) -> None:
    proc = helm.template(merged(REQUIRED, {"controller": {"enabeld": True}}))
    assert proc.returncode != 0
    assert "enabeld" in proc.stderr
