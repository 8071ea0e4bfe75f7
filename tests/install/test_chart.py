"""The worker's Helm chart with the real helm: lint, render, schema, and a real install.

The install goes onto the session's local cluster (kube-apiserver, controller-manager,
scheduler and kwok): the API server must accept every object, and the Deployment's pods are
scheduled onto kwok's nodes and reported Running without the image ever being pulled.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import urllib.error
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv import tools
from devenv.cluster import LocalCluster
from tests.install.env_contract import ENV_CONTRACT, FILE_VARIABLES

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "flotilla"
RELEASE_NAMESPACE = "flotilla-system"
ADDRESS = "temporal-frontend.temporal:7233"
REGISTRY = "registry.example.com:5000/flotilla/content"
# The least a user must say: where Temporal is and where bundle content goes.
REQUIRED: dict[str, Any] = {
    "temporal": {"address": ADDRESS},
    "contentRegistry": {"address": REGISTRY},
}
SECRET_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]
SECRET_RULES = [{"apiGroups": [""], "resources": ["secrets"], "verbs": SECRET_VERBS}]

Manifest = dict[str, Any]


class Helm:
    """The pinned helm binary with its caches in a scratch directory, never in ~."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.home = home
        self.env = {
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def run(
        self, *args: str, values: dict[str, Any] | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), *args]
        if values is not None:
            path = self.home / f"values-{uuid.uuid4().hex[:8]}.yaml"
            path.write_text(yaml.safe_dump(values))
            argv += ["--values", str(path)]
        return subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=240)

    def template(self, values: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return self.run(
            "template", "flotilla", str(CHART), "--namespace", RELEASE_NAMESPACE, values=values
        )

    def render(self, values: dict[str, Any]) -> list[Manifest]:
        proc = self.template(values)
        assert proc.returncode == 0, proc.stderr
        return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    try:
        binary = tools.locate("helm")
    except tools.ToolMissingError as err:
        pytest.fail(f"setup: {err}", pytrace=False)
    return Helm(binary, tmp_path_factory.mktemp("helm"))


def merged(*layers: dict[str, Any]) -> dict[str, Any]:
    """Values layered like several ``--values`` files (later wins, maps merge)."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merged(out[key], value)
            else:
                out[key] = value
    return out


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def the(manifests: list[Manifest], kind: str) -> Manifest:
    found = of_kind(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def worker_container(manifests: list[Manifest]) -> Manifest:
    containers = the(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["worker"]
    container: Manifest = containers[0]
    return container


def env_of(manifests: list[Manifest]) -> dict[str, str]:
    env = worker_container(manifests)["env"]
    assert all(set(e) == {"name", "value"} for e in env), f"env not plain values: {env}"
    return {e["name"]: e["value"] for e in env}


def mounted_secret_files(manifests: list[Manifest]) -> dict[str, tuple[str, str]]:
    """Path in the container -> (Secret name, key) for every file mounted from a Secret."""
    pod = the(manifests, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    files: dict[str, tuple[str, str]] = {}
    for mount in worker_container(manifests)["volumeMounts"]:
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        assert mount.get("readOnly") is True, f"{mount['name']} is mounted writable"
        for item in secret["items"]:
            files[f"{mount['mountPath']}/{item['path']}"] = (secret["secretName"], item["key"])
    return files


# -- lint ------------------------------------------------------------------------------------


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
def test_lint_is_clean(helm: Helm, strict: bool) -> None:
    proc = helm.run("lint", str(CHART), *(["--strict"] if strict else []))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "1 chart(s) linted, 0 chart(s) failed" in output
    assert "[WARNING]" not in output and "[ERROR]" not in output, output


def test_lint_with_the_required_values_has_nothing_to_say(helm: Helm) -> None:
    proc = helm.run("lint", str(CHART), "--strict", values=REQUIRED)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "required" not in output.lower(), output
    assert "[WARNING]" not in output and "[ERROR]" not in output, output


# -- what the chart renders ------------------------------------------------------------------


def test_defaults_render_a_non_root_worker_with_its_service_account_and_roles(
    helm: Helm,
) -> None:
    manifests = helm.render(REQUIRED)
    assert sorted(m["kind"] for m in manifests) == sorted(
        ["ServiceAccount", "Deployment"] + ["Role", "RoleBinding"] * 3
    )
    assert not of_kind(manifests, "Secret"), "the chart must never hold a secret value"

    deployment = the(manifests, "Deployment")
    assert deployment["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    account = the(manifests, "ServiceAccount")["metadata"]["name"]
    assert pod["serviceAccountName"] == account
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0

    worker = worker_container(manifests)
    assert worker["image"] == "flotilla/worker:0.1.0"
    assert worker["command"] == ["python", "-m", "worker"]
    assert worker["args"] == ["--namespace", "fleet-local", "--namespace", "fleet-default"]
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True
    assert worker["securityContext"]["allowPrivilegeEscalation"] is False
    assert worker["resources"]["requests"] and worker["resources"]["limits"]["memory"]
    # The worker serves no endpoint, so there is nothing honest to probe.
    assert not {"livenessProbe", "readinessProbe", "startupProbe"} & set(worker)

    env = env_of(manifests)
    assert env["TEMPORAL_ADDRESS"] == ADDRESS
    assert env["TEMPORAL_NAMESPACE"] == "default"
    assert "TEMPORAL_TLS" not in env
    assert env["FLOTILLA_SECRET_BACKEND"] == "kubernetes"
    assert env["FLOTILLA_SYSTEM_NAMESPACE"] == RELEASE_NAMESPACE
    assert env["FLOTILLA_CONTENT_BACKEND"] == "oci"
    assert env["FLOTILLA_CONTENT_REGISTRY"] == REGISTRY
    assert "FLOTILLA_MANAGEMENT_KUBECONFIG" not in env, "in the cluster: its service account"

    # Writable scratch only where the worker writes: its workdir and /tmp, both emptyDirs.
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = {
        m["mountPath"]: volumes[m["name"]] for m in worker["volumeMounts"] if not m.get("readOnly")
    }
    assert set(writable) == {"/var/lib/flotilla", "/tmp"}
    assert all("emptyDir" in v for v in writable.values())
    assert env["FLOTILLA_WORKDIR"].startswith("/var/lib/flotilla/")

    for binding in of_kind(manifests, "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": RELEASE_NAMESPACE}
        ]
        assert binding["roleRef"]["kind"] == "Role"
    for role in of_kind(manifests, "Role"):
        assert role["rules"] == SECRET_RULES


VALUE_SETS: dict[str, dict[str, Any]] = {
    "required-only": REQUIRED,
    "self-hosted-mtls": merged(
        REQUIRED,
        {
            "temporal": {
                "tls": {
                    "existingSecret": "temporal-client",
                    "caCert": True,
                    "clientCert": True,
                    "serverName": "temporal.internal",
                }
            }
        },
    ),
    "self-hosted-tls-ca-only": merged(
        REQUIRED, {"temporal": {"tls": {"existingSecret": "temporal-ca", "caCert": True}}}
    ),
    "cloud-mtls": merged(
        REQUIRED,
        {
            "temporal": {
                "address": "prod.a1b2c.tmprl.cloud:7233",
                "namespace": "prod.a1b2c",
                "tls": {"existingSecret": "cloud-client", "clientCert": True},
            }
        },
    ),
    "cloud-api-key": merged(
        REQUIRED,
        {
            "temporal": {
                "address": "us-east-1.aws.api.temporal.io:7233",
                "namespace": "prod.a1b2c",
                "apiKey": {"existingSecret": "temporal-cloud", "key": "token"},
            }
        },
    ),
    "private-registry": merged(
        REQUIRED,
        {
            "contentRegistry": {
                "existingSecret": "content-pull",
                "caSecret": "content-ca",
                "insecure": False,
            }
        },
    ),
}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_no_secret_value_reaches_the_environment(helm: Helm, name: str) -> None:
    manifests = helm.render(VALUE_SETS[name])
    worker = worker_container(manifests)
    assert "envFrom" not in worker
    env = env_of(manifests)  # plain values only: no secretKeyRef, no configMapKeyRef
    unknown = set(env) - ENV_CONTRACT
    assert not unknown, f"variables outside the settings contract: {sorted(unknown)}"
    # Every *_FILE variable names a file mounted read-only from a Secret.
    files = mounted_secret_files(manifests)
    for variable in FILE_VARIABLES & set(env):
        assert env[variable] in files, f"{variable}={env[variable]} is not a mounted file"
    assert not of_kind(manifests, "Secret")


def test_mtls_mounts_the_secrets_files_and_turns_tls_on(helm: Helm) -> None:
    manifests = helm.render(VALUE_SETS["self-hosted-mtls"])
    env = env_of(manifests)
    files = mounted_secret_files(manifests)
    assert env["TEMPORAL_TLS"] == "true"
    assert env["TEMPORAL_TLS_SERVER_NAME"] == "temporal.internal"
    assert files[env["TEMPORAL_TLS_CA_FILE"]] == ("temporal-client", "ca.crt")
    assert files[env["TEMPORAL_TLS_CERT_FILE"]] == ("temporal-client", "tls.crt")
    assert files[env["TEMPORAL_TLS_KEY_FILE"]] == ("temporal-client", "tls.key")
    assert "TEMPORAL_API_KEY_FILE" not in env


@pytest.mark.parametrize("name", ["self-hosted-mtls", "cloud-mtls"])
def test_setup_runs_first_with_the_workers_temporal_settings(helm: Helm, name: str) -> None:
    manifests = helm.render(VALUE_SETS[name])
    pod = the(manifests, "Deployment")["spec"]["template"]["spec"]
    (setup,) = pod["initContainers"]
    worker = worker_container(manifests)
    assert setup["image"] == worker["image"]
    assert setup["command"] == ["python", "-m", "starters.cli", "setup"]
    assert setup["args"] == ["--retention", "72h"]
    assert setup["securityContext"] == worker["securityContext"]
    temporal = {k: v for k, v in env_of(manifests).items() if k.startswith("TEMPORAL_")}
    assert {e["name"]: e["value"] for e in setup["env"]} == temporal
    worker_mounts = [m for m in worker["volumeMounts"] if m["mountPath"].startswith("/etc")]
    assert [m for m in setup["volumeMounts"] if m["name"] != "tmp"] == [
        m for m in worker_mounts if m["name"].startswith("temporal-")
    ]

    off = helm.render(merged(VALUE_SETS[name], {"temporal": {"setup": {"enabled": False}}}))
    assert "initContainers" not in the(off, "Deployment")["spec"]["template"]["spec"]


def test_cloud_client_certificates_trust_the_system_roots(helm: Helm) -> None:
    env = env_of(helm.render(VALUE_SETS["cloud-mtls"]))
    assert env["TEMPORAL_TLS"] == "true"
    assert "TEMPORAL_TLS_CA_FILE" not in env
    assert {"TEMPORAL_TLS_CERT_FILE", "TEMPORAL_TLS_KEY_FILE"} <= set(env)


def test_api_key_is_a_mounted_file_and_implies_tls(helm: Helm) -> None:
    manifests = helm.render(VALUE_SETS["cloud-api-key"])
    env = env_of(manifests)
    assert env["TEMPORAL_TLS"] == "true"
    assert mounted_secret_files(manifests)[env["TEMPORAL_API_KEY_FILE"]] == (
        "temporal-cloud",
        "token",
    )
    assert not any("API_KEY" in k and not k.endswith("_FILE") for k in env)


def test_private_registry_secret_is_named_and_its_ca_mounted(helm: Helm) -> None:
    manifests = helm.render(VALUE_SETS["private-registry"])
    env = env_of(manifests)
    # The worker reads the pull secret through the API, in its own namespace.
    assert env["FLOTILLA_CONTENT_REGISTRY_SECRET"] == "content-pull"
    assert "FLOTILLA_CONTENT_REGISTRY_INSECURE" not in env
    assert mounted_secret_files(manifests)[env["FLOTILLA_CONTENT_REGISTRY_CA_FILE"]] == (
        "content-ca",
        "ca.crt",
    )
    insecure = env_of(helm.render(merged(REQUIRED, {"contentRegistry": {"insecure": True}})))
    assert insecure["FLOTILLA_CONTENT_REGISTRY_INSECURE"] == "true"


def test_a_role_per_served_namespace_and_the_system_namespace(helm: Helm) -> None:
    served = ["fleet-local", "fleet-default", "team-a", RELEASE_NAMESPACE]
    manifests = helm.render(merged(REQUIRED, {"namespaces": served, "replicaCount": 3}))
    expected = sorted(set(served))  # the release namespace appears once
    assert sorted(r["metadata"]["namespace"] for r in of_kind(manifests, "Role")) == expected
    assert sorted(b["metadata"]["namespace"] for b in of_kind(manifests, "RoleBinding")) == expected
    assert the(manifests, "Deployment")["spec"]["replicas"] == 3
    args = worker_container(manifests)["args"]
    assert args[1::2] == served and set(args[::2]) == {"--namespace"}


def test_cluster_wide_rbac_is_one_cluster_role(helm: Helm) -> None:
    manifests = helm.render(merged(REQUIRED, {"rbac": {"clusterWide": True}}))
    assert not of_kind(manifests, "Role") and not of_kind(manifests, "RoleBinding")
    role = the(manifests, "ClusterRole")
    binding = the(manifests, "ClusterRoleBinding")
    assert role["rules"] == SECRET_RULES
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert RELEASE_NAMESPACE in role["metadata"]["name"], "cluster-scoped names must not clash"


def test_extra_env_is_appended(helm: Helm) -> None:
    extra = [{"name": "FLOTILLA_CONTROL_THREADS", "value": "32"}]
    worker = worker_container(helm.render(merged(REQUIRED, {"extraEnv": extra})))
    assert worker["env"][-1] == extra[0]


def test_webhook_and_metrics_are_flags_ports_a_service_and_scrape_annotations(
    helm: Helm,
) -> None:
    manifests = helm.render(
        merged(REQUIRED, {"webhook": {"enabled": True}, "metrics": {"enabled": True}})
    )
    worker = worker_container(manifests)
    args = worker["args"]
    assert args[args.index("--webhook-listen") + 1] == "0.0.0.0:8090"
    assert args[args.index("--metrics-listen") + 1] == "0.0.0.0:9090"
    assert {p["name"]: p["containerPort"] for p in worker["ports"]} == {
        "webhook": 8090,
        "metrics": 9090,
    }
    assert worker["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "webhook"}
    service = the(manifests, "Service")
    assert service["spec"]["ports"] == [{"name": "webhook", "port": 8090, "targetPort": "webhook"}]
    pod = the(manifests, "Deployment")["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9090"
    # Off by default: no Service, no flags.
    defaults = helm.render(REQUIRED)
    assert not of_kind(defaults, "Service")
    assert "--webhook-listen" not in worker_container(defaults)["args"]


# -- values the chart refuses -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(
            merged(REQUIRED, {"image": {"pullPolicy": "Sometimes"}}),
            ["/image/pullPolicy", "IfNotPresent"],
            id="pull-policy",
        ),
        pytest.param(
            merged(REQUIRED, {"temporal": {"address": "http://temporal:7233"}}),
            ["/temporal/address", "http://temporal:7233"],
            id="address-with-scheme",
        ),
        pytest.param(
            merged(REQUIRED, {"namespaces": ["fleet-local", "Fleet_Default"]}),
            ["/namespaces/1", "Fleet_Default"],
            id="namespace-not-a-dns-label",
        ),
        pytest.param(
            merged(REQUIRED, {"temporal": {"adress": "x:1"}}),
            ["/temporal", "adress"],
            id="misspelt-key",
        ),
        pytest.param(
            merged(REQUIRED, {"replicaCount": "two"}),
            ["/replicaCount", "integer"],
            id="replicas-not-a-number",
        ),
        pytest.param(
            {"contentRegistry": {"address": REGISTRY}},
            ["temporal.address is required", "host:port"],
            id="no-temporal-address",
        ),
        pytest.param(
            {"temporal": {"address": ADDRESS}},
            ["contentRegistry.address is required"],
            id="no-content-registry",
        ),
        pytest.param(
            merged(REQUIRED, {"temporal": {"tls": {"caCert": True}}}),
            ["temporal.tls.existingSecret"],
            id="tls-files-without-a-secret",
        ),
        pytest.param(
            merged(REQUIRED, {"temporal": {"tls": {"existingSecret": "temporal-client"}}}),
            ["temporal.tls.caCert", "temporal.tls.clientCert"],
            id="tls-secret-without-files",
        ),
    ],
)
def test_bad_values_fail_with_a_message_that_names_them(
    helm: Helm, values: dict[str, Any], expected: list[str]
) -> None:
    proc = helm.template(values)
    assert proc.returncode != 0, f"accepted: {values}"
    message = proc.stderr.strip()
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in: {message}"
    assert "panic" not in message and "goroutine" not in message
    assert len(message.splitlines()) <= 6, f"not a short message: {message}"


# -- a real install --------------------------------------------------------------------------


def create_namespace(cluster: LocalCluster, name: str) -> None:
    cluster.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
    )


def can(
    cluster: LocalCluster,
    user: str,
    verb: str,
    namespace: str,
    resource: str = "secrets",
    group: str = "",
) -> bool:
    """What the API server's own authorizer says the user may do with Secrets (or another
    resource) there."""
    review = cluster.request(
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": [
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{user.split(':')[2]}",
                    "system:authenticated",
                ],
                "resourceAttributes": {
                    "namespace": namespace,
                    "verb": verb,
                    "resource": resource,
                    "group": group,
                },
            },
        },
    )
    return bool(review["status"].get("allowed"))


def create_secret(cluster: LocalCluster, namespace: str, name: str, keys: list[str]) -> None:
    data = {key: base64.b64encode(f"not a real {key}".encode()).decode() for key in keys}
    cluster.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/secrets",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data},
    )


def get(cluster: LocalCluster, path: str) -> Manifest:
    try:
        return cluster.request("GET", path)
    except urllib.error.HTTPError as err:
        raise AssertionError(f"GET {path}: {err.code} {err.read()[:300]!r}") from None


@pytest.fixture
def install_namespaces(local_cluster: LocalCluster) -> Iterator[tuple[str, list[str]]]:
    """A fresh system namespace and two fresh Fleet namespaces, deleted afterwards."""
    suffix = uuid.uuid4().hex[:8]
    system, served = f"flotilla-{suffix}", [f"fleet-a-{suffix}", f"fleet-b-{suffix}"]
    for name in (system, *served):
        create_namespace(local_cluster, name)
    yield system, served
    for name in (system, *served):
        local_cluster.request("DELETE", f"/api/v1/namespaces/{name}")


def test_helm_install_onto_a_cluster_runs_the_workers(
    helm: Helm,
    local_cluster: LocalCluster,
    install_namespaces: tuple[str, list[str]],
) -> None:
    system, served = install_namespaces
    values = merged(
        VALUE_SETS["self-hosted-mtls"],
        {
            "namespaces": served,
            "temporal": {"apiKey": {"existingSecret": "temporal-cloud", "key": "token"}},
        },
    )
    # What the values refer to exists, as it would in a real install (kwok mounts nothing).
    create_secret(local_cluster, system, "temporal-client", ["ca.crt", "tls.crt", "tls.key"])
    create_secret(local_cluster, system, "temporal-cloud", ["token"])
    kubeconfig = ("--kubeconfig", str(local_cluster.kubeconfig))
    installed = helm.run(
        "install",
        "flotilla",
        str(CHART),
        "--namespace",
        system,
        *kubeconfig,
        "--wait",
        "--timeout",
        "180s",
        values=values,
    )
    try:
        assert installed.returncode == 0, installed.stdout + installed.stderr
        # NOTES.txt tells the workstation how to register a cluster and a git credential.
        assert "flotilla cluster add" in installed.stdout
        assert "flotilla secret create" in installed.stdout
        assert "FLOTILLA_SECRET_BACKEND=kubernetes" in installed.stdout

        name = "flotilla"
        get(local_cluster, f"/api/v1/namespaces/{system}/serviceaccounts/{name}")
        for namespace in (*served, system):
            base = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
            role = get(local_cluster, f"{base}/roles/{name}-secrets")
            assert role["rules"][0]["resources"] == ["secrets"]
            binding = get(local_cluster, f"{base}/rolebindings/{name}-secrets")
            assert binding["subjects"][0]["namespace"] == system

        # The API server's authorizer agrees: Secrets where it serves, nowhere else.
        account = f"system:serviceaccount:{system}:{name}"
        for namespace in (*served, system):
            for verb in SECRET_VERBS:
                assert can(local_cluster, account, verb, namespace), (verb, namespace)
        assert not can(local_cluster, account, "list", "default")
        assert not can(local_cluster, account, "list", "kube-system")

        apps = f"/apis/apps/v1/namespaces/{system}/deployments/{name}"
        deployment = get(local_cluster, apps)
        assert deployment["status"].get("availableReplicas") == 2, deployment["status"]
        pods = wait_for_running_pods(local_cluster, system, count=2)
        nodes = {n["metadata"]["name"] for n in get(local_cluster, "/api/v1/nodes")["items"]}
        for pod in pods:
            assert pod["spec"]["nodeName"] in nodes
            assert pod["spec"]["serviceAccountName"] == name
            [container] = pod["spec"]["containers"]
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert json.dumps(container["env"]).count("secretKeyRef") == 0
    finally:
        helm.run("uninstall", "flotilla", "--namespace", system, *kubeconfig, "--wait")


def wait_for_running_pods(
    cluster: LocalCluster, namespace: str, count: int, name: str = "flotilla"
) -> list[Manifest]:
    deadline = time.monotonic() + 60
    while True:
        items = get(
            cluster,
            f"/api/v1/namespaces/{namespace}/pods?labelSelector=app.kubernetes.io/name%3D{name}",
        )["items"]
        running = [p for p in items if p["status"].get("phase") == "Running"]
        if len(running) == count or time.monotonic() > deadline:
            assert len(running) == count, [p["status"].get("phase") for p in items]
            return running
        time.sleep(0.5)
