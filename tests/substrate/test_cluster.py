"""Local clusters are real: workloads become Available, SSA works, clusters are isolated."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.dynamic import DynamicClient

from devenv import tools
from devenv.cluster import LocalCluster
from devenv.process import log_excerpt, pid_alive


def api_client(cluster: LocalCluster) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


def deployment(name: str, replicas: int = 3) -> dict[str, object]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.local/x:1"}]},
            },
        },
    }


def wait_available(apps: client.AppsV1Api, namespace: str, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dep = apps.read_namespaced_deployment_status(name, namespace)
        conditions = {c.type: c.status for c in dep.status.conditions or []}
        if conditions.get("Available") == "True" and dep.status.ready_replicas == 3:
            return
        time.sleep(0.3)
    raise AssertionError(f"deployment {namespace}/{name} never became Available: {dep.status}")


def test_deployment_becomes_available(local_cluster: LocalCluster, namespace: str) -> None:
    api = api_client(local_cluster)
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("web"))
    wait_available(apps, namespace, "web")
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=web")
    assert len(pods.items) == 3
    assert all(p.status.phase == "Running" for p in pods.items)


def test_server_side_apply_of_crd_and_custom_resource(
    local_cluster: LocalCluster, namespace: str
) -> None:
    dyn = DynamicClient(api_client(local_cluster))
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.demo.flotilla.dev"},
        "spec": {
            "group": "demo.flotilla.dev",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer"}},
                                },
                            },
                        }
                    },
                }
            ],
        },
    }
    crds = dyn.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    crds.server_side_apply(body=crd, field_manager="flotilla-test")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = crds.get(name="widgets.demo.flotilla.dev")
        established = [c for c in got.status.conditions or [] if c.type == "Established"]
        if established and established[0].status == "True":
            break
        time.sleep(0.2)
    else:
        raise AssertionError("CRD never became Established")
    dyn = DynamicClient(api_client(local_cluster))  # fresh discovery sees the new kind
    widgets = dyn.resources.get(api_version="demo.flotilla.dev/v1", kind="Widget")
    body = {
        "apiVersion": "demo.flotilla.dev/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "namespace": namespace},
        "spec": {"size": 3},
    }
    widgets.server_side_apply(body=body, namespace=namespace, field_manager="flotilla-test")
    body["spec"] = {"size": 5}
    widgets.server_side_apply(body=body, namespace=namespace, field_manager="flotilla-test")
    assert widgets.get(name="w1", namespace=namespace).spec.size == 5


def test_rbac_and_service_account_tokens(local_cluster: LocalCluster, namespace: str) -> None:
    """RBAC is on and the controller-manager mints service-account tokens."""
    api = api_client(local_cluster)
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        names = [sa.metadata.name for sa in core.list_namespaced_service_account(namespace).items]
        if "default" in names:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the default service account was never created")
    token = core.create_namespaced_service_account_token(
        "default",
        namespace,
        {"spec": {"audiences": ["https://kubernetes.default.svc.cluster.local"]}},
    ).status.token
    cfg = client.Configuration()
    cfg.host = local_cluster.server
    cfg.ssl_ca_cert = str(local_cluster.dir / "pki" / "ca.crt")
    cfg.api_key = {"authorization": f"Bearer {token}"}
    limited = client.CoreV1Api(client.ApiClient(cfg))
    with pytest.raises(client.ApiException) as denied:
        limited.list_namespaced_secret(namespace)
    assert denied.value.status == 403


def test_two_clusters_run_at_once_and_are_isolated(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    with LocalCluster("second", tmp_path / "second", nodes=1) as other:
        assert other.server != local_cluster.server
        core_a = client.CoreV1Api(api_client(local_cluster))
        core_b = client.CoreV1Api(api_client(other))
        core_b.create_namespace({"metadata": {"name": "only-in-second"}})
        names_a = {n.metadata.name for n in core_a.list_namespace().items}
        names_b = {n.metadata.name for n in core_b.list_namespace().items}
        assert "only-in-second" in names_b
        assert "only-in-second" not in names_a
        assert len(core_b.list_node().items) == 1
        pids = [p.pid for p in other.processes.values()]
    assert pids and not any(pid_alive(p) for p in pids if p)
    assert not (tmp_path / "second").exists()


def test_a_kwok_that_crashes_while_starting_is_started_again(
    tmp_path: Path,
    tools_on_path: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Fault injection: the first kwok is a script that dies as kwok 0.8 rarely does (a Go
    # crash: its reason, then a page of stack frames); the next one is the real kwok.
    real_start = LocalCluster._start_kwok
    starts: list[str] = []

    def start_kwok(cluster: LocalCluster) -> None:
        starts.append("kwok")
        if len(starts) == 1:
            crash = "echo 'fatal error: injected crash'; for i in $(seq 40); do echo frame; done"
            cluster._spawn("kwok", ["/bin/sh", "-c", f"{crash}; exit 2"])
        else:
            real_start(cluster)

    monkeypatch.setattr(LocalCluster, "_start_kwok", start_kwok)
    caplog.set_level(logging.WARNING, logger="devenv.cluster")
    with LocalCluster("crashy", tmp_path / "crashy", nodes=1) as cluster:
        assert len(starts) == 2
        nodes = cluster.request("GET", "/api/v1/nodes")["items"]
        assert [n["metadata"]["name"] for n in nodes] == ["crashy-node-0"]
        assert cluster.processes["kwok"].alive()
    assert "fatal error: injected crash" in caplog.text
    assert "starting kwok again" in caplog.text


def test_a_go_crash_keeps_its_reason_in_the_log_excerpt() -> None:
    frames = [f"frame {i}" for i in range(100)]
    crashed = "\n".join(["starting", "fatal error: concurrent map writes", *frames])
    excerpt = log_excerpt(crashed, 15).splitlines()
    assert excerpt[0] == "fatal error: concurrent map writes"
    assert excerpt[-15:] == frames[-15:]
    assert "[…]" in excerpt
    plain = "\n".join(frames)
    assert log_excerpt(plain, 15).splitlines() == frames[-15:]
    # A crash already within the tail is shown once.
    short = "\n".join(["panic: boom", "frame a", "frame b"])
    assert log_excerpt(short, 15) == short


def test_port_clash_picks_a_free_port(tmp_path: Path, tools_on_path: list[Path]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        # The API server's port is what is under test: etcd and kube-apiserver suffice.
        clash = LocalCluster("clash", tmp_path / "clash", api_port=taken, workloads=False)
        with clash as cluster:
            assert cluster.state is not None and cluster.state.api_port != taken
            assert cluster.request("GET", "/api/v1/namespaces")["items"]


def test_missing_tool_is_a_setup_error_naming_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLOTILLA_TOOLS_DIR", str(tmp_path / "empty"))
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    with pytest.raises(tools.ToolMissingError, match=r"kube-apiserver .*make tools"):
        tools.locate("kube-apiserver")
    with pytest.raises(tools.ToolMissingError, match="make tools"):
        LocalCluster("never", tmp_path / "never").start()
    assert not (tmp_path / "never").exists()


def test_kubebuilder_assets_are_used_as_they_are(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_dir = tmp_path / "assets"
    fake_dir.mkdir()
    (fake_dir / "etcd").write_text("#!/bin/sh\n")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(fake_dir))
    assert tools.locate("etcd") == fake_dir / "etcd"
