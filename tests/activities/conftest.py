"""The deploy engine against the shared local cluster and the real helm: an ``Engine`` per test.

Every call goes through ``ActivityEnvironment`` so heartbeats and cancellation are real; each
test deploys into its own namespace, which the ``namespace`` fixture deletes afterwards.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.testing import ActivityEnvironment

from activities.content import ContentStore, FileContentStore
from activities.deploy import DeployActivities
from activities.deploy_models import (
    DeploymentStatus,
    DeployRequest,
    DeployResult,
    ReleaseRef,
    RemoveRequest,
    RemoveResult,
    StatusRequest,
    WaitReadyRequest,
)
from activities.kube import Kube
from activities.render import customize_options, release_name_for, release_namespace
from activities.secrets import FileSecretStore, SecretStore, kubeconfig_secret_name
from devenv.cluster import LocalCluster
from flotilla.bundles import Bundle, FileListing, read_bundles
from flotilla.chart import wrap_manifests
from flotilla.credentials import RenderSecretRefs
from flotilla.deployment import DeploymentOptions
from flotilla.targeting import ClusterInfo

CLUSTER_NAMESPACE = "fleet-local"
CLUSTER = "local"
GITREPO = "t"


def deployment(
    name: str,
    *,
    replicas: int = 2,
    image: str = "registry.local/web:1",
    pod: dict[str, Any] | None = None,
) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {"containers": [{"name": "app", "image": image}], **(pod or {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
        },
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def configmap(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def dump(*objects: dict[str, Any]) -> str:
    return yaml.safe_dump_all(list(objects), sort_keys=False)


# A nodeSelector no kwok node matches: the pods stay Pending and the Deployment NotReady.
UNSCHEDULABLE = {"nodeSelector": {"flotilla.dev/pool": "nowhere"}}


@dataclass
class Engine:
    """One test's view of the deploy engine: stores, activities and helpers to drive them."""

    cluster: LocalCluster
    namespace: str
    root: Path
    secrets: SecretStore
    content: ContentStore
    activities: DeployActivities
    heartbeats: list[Any] = field(default_factory=list)
    cluster_name: str = CLUSTER

    def env(self) -> ActivityEnvironment:
        env = ActivityEnvironment()
        env.on_heartbeat = lambda *details: self.heartbeats.append(details)
        return env

    # -- bundles ---------------------------------------------------------------------------

    def bundle(self, files: dict[str, str], *, fleet: dict[str, Any] | None = None) -> Bundle:
        """A bundle read the real way from files under ``app/``; defaultNamespace is the test's."""
        options = {"defaultNamespace": self.namespace, **(fleet or {})}
        listing = {f"app/{path}": text.encode() for path, text in files.items()}
        listing["app/fleet.yaml"] = yaml.safe_dump(options).encode()
        result = read_bundles(FileListing(files=listing), gitrepo_name=GITREPO, paths=["app"])
        assert not result.invalid, result.invalid
        (found,) = result.bundles
        return found

    def options_digest(
        self, bundle: Bundle, labels: dict[str, str] | None = None, **rules: Any
    ) -> str:
        """The stored options as the planner stores them; ``rules`` are the workspace's
        (``namespace_selector``, ``allow_namespace_creation``)."""
        cluster = ClusterInfo(
            name=self.cluster_name, namespace=CLUSTER_NAMESPACE, labels=labels or {}
        )
        options = customize_options(bundle, cluster)
        assert options is not None
        payload = DeploymentOptions(options=options, cluster=cluster, **rules)
        return self.content.put(payload.model_dump_json().encode())

    def release(self, bundle: Bundle) -> ReleaseRef:
        return ReleaseRef(
            name=release_name_for(bundle, bundle.options),
            namespace=release_namespace(bundle.options),
        )

    # -- activities ------------------------------------------------------------------------

    def deploy(
        self,
        bundle: Bundle,
        deployment_id: str,
        *,
        previous: ReleaseRef | None = None,
        wait_ready_seconds: float = 0.0,
        render_secrets: RenderSecretRefs | None = None,
        **rules: Any,
    ) -> DeployResult:
        request = DeployRequest(
            gitrepo=GITREPO,
            bundle_name=bundle.name,
            cluster_namespace=CLUSTER_NAMESPACE,
            cluster_name=self.cluster_name,
            deployment_id=deployment_id,
            bundle_digest=self.content.put_bundle(bundle),
            options_digest=self.options_digest(bundle, **rules),
            previous_release=previous,
            wait_ready_seconds=wait_ready_seconds,
            render_secrets=render_secrets,
        )
        return self.env().run(self.activities.deploy_bundle, request)

    def status_request(self, bundle: Bundle, deployment_id: str) -> StatusRequest:
        return StatusRequest(
            gitrepo=GITREPO,
            bundle_name=bundle.name,
            cluster_namespace=CLUSTER_NAMESPACE,
            cluster_name=self.cluster_name,
            deployment_id=deployment_id,
            options_digest=self.options_digest(bundle),
            release=self.release(bundle),
        )

    def check(self, bundle: Bundle, deployment_id: str) -> DeploymentStatus:
        return self.env().run(
            self.activities.check_deployment, self.status_request(bundle, deployment_id)
        )

    def wait_request(self, bundle: Bundle, deployment_id: str, timeout: float) -> WaitReadyRequest:
        status = self.status_request(bundle, deployment_id)
        return WaitReadyRequest(**status.model_dump(), timeout_seconds=timeout)

    def wait_ready(
        self, bundle: Bundle, deployment_id: str, timeout: float = 90
    ) -> DeploymentStatus:
        request = self.wait_request(bundle, deployment_id, timeout)
        return self.env().run(self.activities.wait_ready, request)

    def remove(self, release: ReleaseRef, **switches: bool) -> RemoveResult:
        request = RemoveRequest(
            gitrepo=GITREPO,
            bundle_name="app",
            cluster_namespace=CLUSTER_NAMESPACE,
            cluster_name=self.cluster_name,
            release=release,
            **switches,
        )
        return self.env().run(self.activities.remove_deployment, request)

    # -- looking at the cluster directly ---------------------------------------------------

    def kube(self) -> Kube:
        return Kube.from_kubeconfig(self.cluster.kubeconfig.read_text())

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        api_version = {"Deployment": "apps/v1"}.get(kind, "v1")
        ns = "" if kind == "Namespace" else (namespace or self.namespace)
        with self.kube() as kube:
            return kube.get(api_version, kind, ns, name)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["helm", *args, "--kubeconfig", str(self.cluster.kubeconfig)],
            capture_output=True,
            text=True,
            check=check,
        )

    def helm_popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["helm", *args, "--kubeconfig", str(self.cluster.kubeconfig)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def releases(self, namespace: str | None = None) -> list[dict[str, Any]]:
        # Helm 4 lists releases in every status by default (Helm 3 needed --all).
        out = self.helm("list", "-n", namespace or self.namespace, "-o", "json").stdout
        found: list[dict[str, Any]] = json.loads(out)
        return found

    def history(self, release: str) -> list[dict[str, Any]]:
        out = self.helm("history", release, "-n", self.namespace, "-o", "json").stdout
        found: list[dict[str, Any]] = json.loads(out)
        return found

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    def chart_dir(self, name: str, objects: list[dict[str, Any]], version: str) -> Path:
        """A generated chart on disk, for driving helm directly."""
        path = Path(tempfile.mkdtemp(dir=self.root))
        for relative, data in wrap_manifests(name, objects, version=version).items():
            (path / relative).parent.mkdir(parents=True, exist_ok=True)
            (path / relative).write_bytes(data)
        return path


@pytest.fixture
def engine(
    local_cluster: LocalCluster, namespace: str, tmp_path: Path, tools_on_path: list[Path]
) -> Iterator[Engine]:
    secrets = FileSecretStore(tmp_path / "secrets")
    secrets.put(
        CLUSTER_NAMESPACE,
        kubeconfig_secret_name(CLUSTER),
        {"value": local_cluster.kubeconfig.read_text()},
    )
    content = FileContentStore(tmp_path / "content")
    activities = DeployActivities(secrets, content, tmp_path / "work")
    yield Engine(local_cluster, namespace, tmp_path, secrets, content, activities)
    # Nothing the engine writes (kubeconfig copies, values files, charts) outlives a call.
    leftovers = list((tmp_path / "work").iterdir()) if (tmp_path / "work").exists() else []
    assert leftovers == []
