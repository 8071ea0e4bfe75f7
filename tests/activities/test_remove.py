"""Removal: uninstall; keepResources keeps objects, drops the release; deleteNamespace, limits."""

from __future__ import annotations

import pytest

from activities.deploy_models import ReleaseRef
from tests.activities.conftest import Engine, configmap, dump


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
