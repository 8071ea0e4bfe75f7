"""The object watcher against the real cluster: hand edits, deletions and a lost release
record reach the bundle; status changes and flotilla's own deploys do not; a watch whose
connection breaks is opened again and reports what changed while it was away."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

from activities.kube import Kube, parse_kubeconfig
from activities.objectwatch import ClusterWatch
from devenv.forward import TcpForwarder
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


class LoopThread:
    """An event loop in a thread, for the asyncio forwarder beside the watch's threads."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def run(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_a_broken_watch_is_opened_again_and_reports_what_changed_meanwhile(
    engine: Engine,
) -> None:
    bundle = app(engine, "1")
    engine.deploy(bundle, "v1", wait_ready_seconds=60)
    ns = engine.namespace
    # The watch reaches the shared API server through a forwarder that can cut it off.
    kubeconfig = parse_kubeconfig(engine.cluster.kubeconfig.read_text())
    server = kubeconfig["clusters"][0]["cluster"]["server"]
    forwarder = TcpForwarder(int(server.rsplit(":", 1)[1]))
    loop = LoopThread()
    loop.run(forwarder.start())
    kubeconfig["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{forwarder.port}"
    kube = Kube.from_kubeconfig(kubeconfig)
    messages: list[str] = []
    watch = ClusterWatch(kube, messages.append)
    try:
        watch.start()
        wait_watching(watch, engine)
        loop.run(forwarder.stop())
        with engine.kube() as direct:
            direct.merge_patch("v1", "ConfigMap", ns, "cfg", {"data": {"a": "while away"}})
            direct.delete("v1", "Service", ns, "svc")
        engine.wait_for("a broken watch", lambda: any("broke" in m for m in messages))
        assert changes_within(watch, 1.0, ns) == {}
        loop.run(forwarder.start())
        seen = changes_within(watch, 20.0, ns)
        assert f"ConfigMap/{ns}/cfg changed" in seen[bundle.name]
        assert f"Service/{ns}/svc deleted" in seen[bundle.name]
    finally:
        watch.stop()
        kube.close()
        loop.run(forwarder.stop())
        loop.close()
