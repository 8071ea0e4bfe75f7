"""The object watcher against the real cluster: hand edits, deletions and a lost release
record reach the bundle; status changes and flotilla's own deploys do not."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from activities.kube import Kube
from activities.objectwatch import ClusterWatch
from flotilla.bundles import Bundle
from tests.activities.conftest import Engine, configmap, deployment, dump, service


@pytest.fixture
def watch(engine: Engine) -> Iterator[ClusterWatch]:
    kube = engine.kube()
    found = ClusterWatch(kube, lambda message: None)
    yield found
    found.stop()
    kube.close()


def app(engine: Engine, data: str) -> Bundle:
    return engine.bundle(
        {"app.yaml": dump(deployment("web"), configmap("cfg", {"a": data}), service("svc"))}
    )


def changes_within(watch: ClusterWatch, seconds: float, namespace: str) -> dict[str, list[str]]:
    """What the watch reported in ``namespace`` (other tests' namespaces come and go)."""
    deadline = time.monotonic() + seconds
    found: dict[str, list[str]] = {}
    while time.monotonic() < deadline:
        for bundle, objects in watch.take_changes().items():
            mine = [
                what for what in objects if f"/{namespace}/" in what or f" {namespace}/" in what
            ]
            if mine:
                found.setdefault(bundle, []).extend(mine)
        time.sleep(0.2)
    return found


def wait_watching(watch: ClusterWatch, engine: Engine) -> None:
    engine.wait_for("watches of the release's kinds", lambda: len(watch.kinds()) >= 4)
    time.sleep(1.5)  # lists done, watches open


def test_edits_and_deletions_reach_the_bundle_own_deploys_do_not(
    engine: Engine, watch: ClusterWatch
) -> None:
    bundle = app(engine, "1")
    engine.deploy(bundle, "v1", wait_ready_seconds=60)
    watch.start()
    wait_watching(watch, engine)
    assert changes_within(watch, 1.0, engine.namespace) == {}
    name = bundle.name

    # flotilla's own upgrade, and the status changes of the rollout it starts
    engine.deploy(app(engine, "2"), "v2", wait_ready_seconds=60)
    assert changes_within(watch, 2.0, engine.namespace) == {}

    path = f"/api/v1/namespaces/{engine.namespace}/configmaps/cfg"
    cfg = engine.cluster.request("GET", path)
    cfg["data"] = {"a": "by hand"}
    engine.cluster.request("PUT", path, cfg)
    with Kube.from_kubeconfig(engine.cluster.kubeconfig.read_text()) as kube:
        kube.merge_patch(
            "apps/v1", "Deployment", engine.namespace, "web", {"spec": {"replicas": 3}}
        )
        kube.delete("v1", "Service", engine.namespace, "svc")
    seen = changes_within(watch, 2.0, engine.namespace)
    assert set(seen) == {name}
    assert {"ConfigMap/" + engine.namespace + "/cfg changed"} <= set(seen[name])
    assert f"Deployment/{engine.namespace}/web changed" in seen[name]
    assert f"Service/{engine.namespace}/svc deleted" in seen[name]

    with Kube.from_kubeconfig(engine.cluster.kubeconfig.read_text()) as kube:
        for record in kube.list_metadata(
            "v1", "Secret", engine.namespace, label_selector="owner=helm,name=t-app"
        ):
            kube.delete("v1", "Secret", engine.namespace, record["metadata"]["name"])
    seen = changes_within(watch, 2.0, engine.namespace)
    assert any("Helm record" in what and "deployed" in what for what in seen[name])
