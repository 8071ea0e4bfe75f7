"""The kube layer: apply/get/delete on the real cluster, and errors mapped to flotilla's classes.

Statuses the real API server will not produce on demand (429, 503) come from a loopback fake,
beside the real-cluster tests of the same calls.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from activities.kube import (
    InvalidObjectError,
    Kube,
    KubeClients,
    NotFoundError,
    ThrottledError,
    UnreachableError,
)
from devenv.cluster import LocalCluster


@pytest.fixture
def kube(local_cluster: LocalCluster) -> Iterator[Kube]:
    with Kube.from_kubeconfig(local_cluster.kubeconfig.read_text()) as client:
        yield client


def test_apply_get_delete_round_trip(kube: Kube, namespace: str) -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}

    created = kube.apply(obj, namespace=namespace)
    updated = kube.apply({**obj, "data": {"a": "2"}}, namespace=namespace)

    assert created["metadata"]["namespace"] == namespace
    assert updated["data"] == {"a": "2"}
    live = kube.get("v1", "ConfigMap", namespace, "c")
    assert live is not None and live["data"] == {"a": "2"}
    assert any(m["manager"] == "flotilla" for m in live["metadata"]["managedFields"])
    assert kube.delete("v1", "ConfigMap", namespace, "c") is True
    assert kube.delete("v1", "ConfigMap", namespace, "c") is False
    assert kube.get("v1", "ConfigMap", namespace, "c") is None


def test_list_metadata_never_carries_content(kube: Kube, namespace: str) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "labels": {"pick": "me"}},
        "stringData": {"token": "do-not-list-me"},
    }
    kube.apply(secret, namespace=namespace)

    (item,) = kube.list_metadata("v1", "Secret", namespace, label_selector="pick=me")

    assert item["metadata"]["name"] == "s"
    assert "data" not in item and "do-not-list-me" not in json.dumps(item)


def test_invalid_object_keeps_the_servers_message_on_one_line(kube: Kube, namespace: str) -> None:
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": -1, "selector": {"matchLabels": {"a": "b"}}, "template": {}},
    }

    with pytest.raises(InvalidObjectError) as err:
        kube.apply(bad, namespace=namespace)

    assert str(err.value).startswith(f"invalid deployments.apps 'web' in namespace '{namespace}': ")
    assert "spec.replicas: Invalid value: -1" in str(err.value)
    assert "\n" not in str(err.value) and not err.value.retryable


def test_unknown_kind_is_not_found(kube: Kube) -> None:
    with pytest.raises(NotFoundError, match="kind Gadget is not served"):
        kube.get("example.com/v1", "Gadget", "default", "g")


def test_closed_port_is_retryable_unreachable() -> None:
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    with (
        Kube.from_kubeconfig(json.dumps(kubeconfig)) as client,
        pytest.raises(UnreachableError) as err,
    ):
        client.get("v1", "ConfigMap", "default", "c")

    assert err.value.retryable
    # The address, what to do, then the cause (which a status line may cut short).
    assert str(err.value).startswith(
        "cluster unreachable at http://127.0.0.1:9 (check that its API server is up"
    ), err.value


class _Faulty(BaseHTTPRequestHandler):
    """Discovery works; every object call answers with the status the test asks for."""

    status = 503
    headers_out: ClassVar[dict[str, str]] = {}

    def _reply(self) -> None:
        body: dict[str, Any]
        if self.path == "/api/v1":
            body = {"resources": [{"name": "configmaps", "kind": "ConfigMap", "namespaced": True}]}
            code, headers = 200, {}
        else:
            body = {"kind": "Status", "message": "slow down", "details": {"secret": "BODY-ONLY"}}
            code, headers = self.status, self.headers_out
        data = json.dumps(body).encode()
        self.send_response(code)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PATCH = _reply

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def faulty() -> Iterator[tuple[type[_Faulty], Kube]]:
    handler = type("Handler", (_Faulty,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}
        ],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    try:
        with Kube.from_kubeconfig(json.dumps(kubeconfig)) as client:
            yield handler, client
    finally:
        server.shutdown()
        server.server_close()


def test_throttling_is_retryable_after_the_servers_delay(
    faulty: tuple[type[_Faulty], Kube],
) -> None:
    handler, client = faulty
    handler.status, handler.headers_out = 429, {"Retry-After": "7"}
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}

    with pytest.raises(ThrottledError) as err:
        client.apply(obj, namespace="ns")

    assert err.value.retryable and err.value.retry_after == 7.0
    assert str(err.value) == "throttled on patch configmaps 'c' in namespace 'ns': slow down"


def test_server_errors_are_retryable_and_never_echo_the_body(
    faulty: tuple[type[_Faulty], Kube],
) -> None:
    handler, client = faulty
    handler.status, handler.headers_out = 503, {}

    with pytest.raises(UnreachableError) as err:
        client.get("v1", "ConfigMap", "ns", "c")

    assert err.value.retryable and "HTTP 503: slow down" in str(err.value)
    assert "BODY-ONLY" not in str(err.value)


def test_clients_are_shared_per_kubeconfig_and_bounded(local_cluster: LocalCluster) -> None:
    text = local_cluster.kubeconfig.read_text()
    clients = KubeClients(size=2)

    first = clients.get(text)
    assert clients.get(text) is first  # one client, one connection pool, per kubeconfig
    assert first.get("v1", "Namespace", "", "default") is not None
    rotated = clients.get(text + "\n# rotated\n")
    assert rotated is not first  # a changed kubeconfig (new token, new CA) gets a new client
    clients.get(text + "\n# third\n")
    assert len(clients) == 2
    assert clients.get(text) is not first  # the least recently used one was dropped
