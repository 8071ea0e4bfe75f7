"""Removal: uninstall; keepResources keeps objects, drops the release; deleteNamespace, limits."""

from __future__ import annotations

import pytest

from activities.deploy_models import ReleaseRef
from activities.helm import drop_release_records
from tests.activities.conftest import Engine, configmap, deployment, dump


def test_uninstall_removes_release_and_objects(engine: Engine) -> None:
    bundle = engine.bundle({"cfg.yaml": dump(configmap("cfg", {"a": "1"}))})
    result = engine.deploy(bundle, "v1")

    removed = engine.remove(result.release)

    assert removed.release_removed and not removed.resources_kept
    assert engine.releases() == []
    assert engine.get("ConfigMap", "cfg") is None
    # Removing again is not an error: the deployment is already gone.
    assert engine.remove(result.release).release_removed


def test_keep_resources_drops_only_the_release_record(engine: Engine) -> None:
    bundle = engine.bundle({"cfg.yaml": dump(configmap("cfg", {"a": "1"}))})
    engine.deploy(bundle, "v1")
    result = engine.deploy(bundle, "v2")

    removed = engine.remove(result.release, keep_resources=True, delete_namespace=True)

    assert removed.resources_kept and not removed.namespace_deleted
    assert "keepResources" in removed.message
    assert engine.releases() == []
    assert engine.helm("history", "t-app", "-n", engine.namespace, check=False).returncode != 0
    live = engine.get("ConfigMap", "cfg")
    assert live is not None and live["data"] == {"a": "1"}


def test_delete_namespace_deletes_the_release_namespace(engine: Engine) -> None:
    target = f"{engine.namespace}-gone"
    bundle = engine.bundle(
        {"cfg.yaml": dump(configmap("cfg", {"a": "1"}))}, fleet={"defaultNamespace": target}
    )
    result = engine.deploy(bundle, "v1")

    removed = engine.remove(result.release, delete_namespace=True)

    assert removed.namespace_deleted and removed.message == ""
    live = engine.get("Namespace", target)
    assert live is None or live["status"]["phase"] == "Terminating"


@pytest.mark.parametrize("namespace", ["default", "kube-system"])
def test_system_namespaces_are_never_deleted(engine: Engine, namespace: str) -> None:
    removed = engine.remove(
        ReleaseRef(name="t-app-absent", namespace=namespace), delete_namespace=True
    )

    assert removed.release_removed and not removed.namespace_deleted
    assert "never deleted" in removed.message
    live = engine.get("Namespace", namespace)
    assert live is not None and live["status"]["phase"] == "Active"


def test_every_object_carries_what_finds_it_without_helm(engine: Engine) -> None:
    bundle = engine.bundle({"cfg.yaml": dump(configmap("cfg", {"a": "1"}))})
    engine.deploy(bundle, "v1")

    live = engine.get("ConfigMap", "cfg")

    assert live is not None
    assert live["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert live["metadata"]["annotations"]["meta.helm.sh/release-name"] == "t-app"
    assert live["metadata"]["annotations"]["meta.helm.sh/release-namespace"] == engine.namespace


def test_removal_without_helms_record_deletes_the_objects_by_their_annotations(
    engine: Engine,
) -> None:
    other = f"{engine.namespace}-other"
    elsewhere = configmap("elsewhere", {"b": "2"})
    elsewhere["metadata"]["namespace"] = other
    with engine.kube() as kube:
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}})
    try:
        bundle = engine.bundle(
            {"app.yaml": dump(deployment("web"), configmap("cfg", {"a": "1"}), elsewhere)}
        )
        result = engine.deploy(bundle, "v1")
        # Another release's objects carry the same label: they stay.
        neighbour = engine.bundle(
            {"n.yaml": dump(configmap("nbr", {"c": "3"}))}, fleet={"helm": {"releaseName": "nb"}}
        )
        engine.deploy(neighbour, "n1")
        with engine.kube() as kube:
            drop_release_records(kube, "t-app", engine.namespace)

        removed = engine.remove(result.release)

        assert "deleted 3 object(s) found by the release's annotations" in removed.message
        assert engine.get("ConfigMap", "cfg") is None
        assert engine.get("ConfigMap", "elsewhere", other) is None
        web = engine.get("Deployment", "web")
        assert web is None or "deletionTimestamp" in web["metadata"]
        assert engine.get("ConfigMap", "nbr") is not None
    finally:
        with engine.kube() as kube:
            kube.delete("v1", "Namespace", "", other)
