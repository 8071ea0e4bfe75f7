"""Rendering bundles for one cluster with the real helm and kustomize (activities.render)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from activities.checkout import read_checkout_bundles
from activities.render import compute_values, materialize_chart, render_bundle
from activities.tools import ToolPaths
from flotilla.bundles import Bundle, FileListing, read_bundles
from flotilla.errors import RenderError
from flotilla.models import BundleDeploymentOptions, HelmOptions
from flotilla.targeting import ClusterInfo
from tests.charts import ChartServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "fleet-examples"
DEV = ClusterInfo(name="dev-1", labels={"env": "dev"})
TEST = ClusterInfo(name="test-1", labels={"env": "test"})
PROD = ClusterInfo(name="prod-1", labels={"env": "prod"})


def bundle_of(files: dict[str, str]) -> Bundle:
    listing = FileListing(files={f"b/{k}": v.encode() for k, v in files.items()})
    result = read_bundles(listing, gitrepo_name="t", paths=["b"])
    assert result.invalid == []
    (bundle,) = result.bundles
    return bundle


def find(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for obj in manifests:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(
        f"{kind} {name} not rendered: {[o['metadata']['name'] for o in manifests]}"
    )


LOCAL_CHART = {
    "fleet.yaml": "defaultNamespace: apps\nhelm:\n  chart: chart\n  releaseName: rel\n"
    "  values: {greeting: hi, env: global.fleet.clusterLabels.env}\n",
    "chart/Chart.yaml": "apiVersion: v2\nname: local\nversion: 1.2.3\n",
    "chart/values.yaml": "greeting: hello\nenv: none\n",
    "chart/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
    "  name: {{ .Release.Name }}-cm\ndata:\n  greeting: {{ .Values.greeting | quote }}\n"
    "  env: {{ .Values.env | quote }}\n  ns: {{ .Release.Namespace | quote }}\n",
}


# --- chart sources ---------------------------------------------------------------------------


def test_local_chart(tmp_path: Path) -> None:
    out = render_bundle(bundle_of(LOCAL_CHART), DEV, workdir=tmp_path)
    cm = find(out.manifests, "ConfigMap", "rel-cm")
    assert cm["data"] == {"greeting": "hi", "env": "dev", "ns": "apps"}
    assert cm["metadata"]["namespace"] == "apps"
    assert (out.release_name, out.namespace) == ("rel", "apps")


def test_rendering_is_byte_stable(tmp_path: Path) -> None:
    bundle = bundle_of(LOCAL_CHART)
    first = render_bundle(bundle, DEV, workdir=tmp_path / "a").yaml
    assert render_bundle(bundle, DEV, workdir=tmp_path / "b").yaml == first


def test_local_chart_dependencies_are_built(tmp_path: Path) -> None:
    files = {
        "Chart.yaml": "apiVersion: v2\nname: parent\nversion: 0.1.0\ndependencies:\n"
        "- name: child\n  version: 0.1.0\n  repository: file://./child\n",
        "templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: parent}\n",
        "child/Chart.yaml": "apiVersion: v2\nname: child\nversion: 0.1.0\n",
        "child/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: child}\n",
    }
    out = render_bundle(bundle_of(files), DEV, workdir=tmp_path / "built")
    assert {o["metadata"]["name"] for o in out.manifests} == {"parent", "child"}
    disabled = bundle_of({**files, "fleet.yaml": "helm: {disableDependencyUpdate: true}\n"})
    with pytest.raises(RenderError) as err:
        render_bundle(disabled, DEV, workdir=tmp_path / "disabled")
    assert str(err.value).startswith("b/fleet.yaml: helm template failed: ")
    assert "missing in charts/ directory" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("constraint", "expected"), [("~0.1.0", "0.1.0"), (">=0.1.0", "0.2.0")])
def test_chart_from_a_repository_with_a_version_constraint(
    tmp_path: Path, chart_server: ChartServer, constraint: str, expected: str
) -> None:
    fleet_yaml = f"helm:\n  repo: {chart_server.url}\n  chart: demo\n  version: '{constraint}'\n"
    out = render_bundle(bundle_of({"fleet.yaml": fleet_yaml}), DEV, workdir=tmp_path)
    assert find(out.manifests, "ConfigMap", "t-b-info")["data"]["chartVersion"] == expected


def test_chart_from_a_tgz_url(tmp_path: Path, chart_server: ChartServer) -> None:
    fleet_yaml = f"helm:\n  chart: {chart_server.url}/demo-0.2.0.tgz\n  values: {{greeting: yo}}\n"
    out = render_bundle(bundle_of({"fleet.yaml": fleet_yaml}), DEV, workdir=tmp_path)
    data = find(out.manifests, "ConfigMap", "t-b-info")["data"]
    assert (data["chartVersion"], data["greeting"]) == ("0.2.0", "yo")


def test_chart_from_an_oci_registry(tmp_path: Path, oci_registry: str) -> None:
    fleet_yaml = f"namespace: oci\nhelm:\n  chart: {oci_registry}/demo\n  version: 0.3.0\n"
    out = render_bundle(bundle_of({"fleet.yaml": fleet_yaml}), DEV, workdir=tmp_path)
    data = find(out.manifests, "ConfigMap", "t-b-info")["data"]
    assert (data["chartVersion"], data["namespace"]) == ("0.3.0", "oci")


def test_missing_remote_chart_version_is_a_one_line_error(
    tmp_path: Path, chart_server: ChartServer
) -> None:
    fleet_yaml = f"helm:\n  repo: {chart_server.url}\n  chart: demo\n  version: '9.9.9'\n"
    with pytest.raises(RenderError) as err:
        render_bundle(bundle_of({"fleet.yaml": fleet_yaml}), DEV, workdir=tmp_path)
    assert str(err.value) == (
        'b/fleet.yaml: helm pull failed: chart "demo" version "9.9.9" not found in '
        f"{chart_server.url} repository"
    )


def test_materialize_chart_local_and_remote(tmp_path: Path, chart_server: ChartServer) -> None:
    local = materialize_chart(bundle_of(LOCAL_CHART), tmp_path / "local")
    assert (local / "Chart.yaml").read_text().startswith("apiVersion: v2\nname: local")
    remote = bundle_of({"fleet.yaml": f"helm: {{repo: '{chart_server.url}', chart: demo}}\n"})
    pulled = materialize_chart(remote, tmp_path / "remote")
    assert "version: 0.2.0" in (pulled / "Chart.yaml").read_text()


def test_raw_bundle_templates_dir_is_rendered_by_helm(tmp_path: Path) -> None:
    files = {
        "fleet.yaml": "defaultNamespace: raw\nhelm: {values: {who: fleet}}\n",
        "cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\n"
        "data: {raw: '{{ not a template }}'}\n",
        "templates/t.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: templated}\n"
        "data: {who: {{ .Values.who | quote }}}\n",
    }
    out = render_bundle(bundle_of(files), DEV, workdir=tmp_path)
    assert find(out.manifests, "ConfigMap", "plain")["data"] == {"raw": "{{ not a template }}"}
    assert find(out.manifests, "ConfigMap", "templated")["data"] == {"who": "fleet"}
    assert {o["metadata"]["namespace"] for o in out.manifests} == {"raw"}


def test_kustomize_and_raw_bundles_need_no_helm(tmp_path: Path) -> None:
    no_helm = ToolPaths(helm=str(tmp_path / "no-helm"))
    kustomized = bundle_of(
        {
            "kustomization.yaml": "resources: [cm.yaml]\nnamePrefix: k-\n",
            "cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
        }
    )
    rendered = render_bundle(kustomized, DEV, workdir=tmp_path / "k", tools=no_helm)
    assert rendered.manifests[0]["metadata"] == {"name": "k-a"}
    raw = bundle_of({"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"})
    assert len(render_bundle(raw, DEV, workdir=tmp_path / "r", tools=no_helm).manifests) == 1


# --- errors ----------------------------------------------------------------------------------


def test_helm_template_error_is_one_line(tmp_path: Path) -> None:
    files = {**LOCAL_CHART, "chart/templates/bad.yaml": "a: {{ .Values.greeting | nosuchfn }}\n"}
    with pytest.raises(RenderError) as err:
        render_bundle(bundle_of(files), DEV, workdir=tmp_path)
    assert str(err.value).startswith("b/fleet.yaml: helm template failed: ")
    assert 'function "nosuchfn" not defined' in str(err.value) and "\n" not in str(err.value)


def test_missing_helm_says_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_helm = ToolPaths(helm=str(tmp_path / "no-helm"))
    with pytest.raises(RenderError, match=r"FLOTILLA_HELM=.* is not an executable file"):
        render_bundle(bundle_of(LOCAL_CHART), DEV, workdir=tmp_path, tools=no_helm)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(
        RenderError, match=r"^helm not found on PATH: install it, set FLOTILLA_HELM"
    ):
        render_bundle(bundle_of(LOCAL_CHART), DEV, workdir=tmp_path)


def test_cluster_scoped_object_from_a_chart_under_forced_namespace(tmp_path: Path) -> None:
    files = {
        "fleet.yaml": "namespace: forced\n",
        "Chart.yaml": "apiVersion: v2\nname: c\nversion: 0.1.0\n",
        "templates/role.yaml": "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n"
        "metadata: {name: reader}\nrules: []\n",
    }
    with pytest.raises(RenderError, match=r"^b/fleet.yaml: namespace: ClusterRole 'reader' is"):
        render_bundle(bundle_of(files), DEV, workdir=tmp_path)


def test_compute_values_resolves_labels_and_templates_then_values_from() -> None:
    values = {
        "a": "global.fleet.clusterLabels.env",
        "b": [{"c": "global.fleet.clusterLabels.nope"}],
        "name": "${ .ClusterName }-x",
        "d": 1,
    }
    options = BundleDeploymentOptions(helm=HelmOptions(values=values))
    assert compute_values(options, PROD, values_from={"d": 2}) == {
        "a": "prod",
        "b": [{"c": ""}],
        "name": "prod-1-x",
        "d": 2,
    }
    raw = BundleDeploymentOptions(helm=HelmOptions(values=values, disable_pre_process=True))
    assert compute_values(raw, PROD)["name"] == "${ .ClusterName }-x"


# --- the examples, per environment -----------------------------------------------------------


@pytest.fixture(scope="module")
def examples() -> dict[str, Bundle]:
    result = read_checkout_bundles(
        EXAMPLES,
        gitrepo_name="fleet-examples",
        paths=[
            "raw-overlays",
            "helm-local",
            "kustomize",
            "helm-kustomize",
            "multi-chart",
            "nested",
        ],
    )
    assert result.invalid == []
    return {b.path: b for b in result.bundles}


def render_example(
    examples: dict[str, Bundle], path: str, cluster: ClusterInfo, tmp: Path
) -> list[dict[str, Any]]:
    return render_bundle(examples[path], cluster, workdir=tmp / f"{path}-{cluster.name}").manifests


def test_examples_have_every_style(examples: dict[str, Bundle]) -> None:
    assert {p: str(b.style) for p, b in examples.items()} == {
        "raw-overlays": "raw",
        "helm-local": "helm",
        "kustomize": "kustomize",
        "helm-kustomize": "helm",
        "multi-chart/backend": "helm",
        "multi-chart/frontend": "helm",
        "nested": "raw",
        "nested/worker": "raw",
    }


def test_example_raw_overlays(examples: dict[str, Bundle], tmp_path: Path) -> None:
    seen = {}
    for cluster in (DEV, TEST, PROD):
        manifests = render_example(examples, "raw-overlays", cluster, tmp_path)
        deploy = find(manifests, "Deployment", "guestbook")
        seen[cluster.labels["env"]] = (
            find(manifests, "ConfigMap", "guestbook-config")["data"]["LOG_LEVEL"],
            deploy["spec"]["replicas"],
            deploy["spec"]["template"]["spec"]["containers"][0]["image"].rsplit(":", 1)[1],
        )
        assert {o["metadata"]["namespace"] for o in manifests} == {"raw-demo"}
    assert seen == {
        "dev": ("debug", 1, "1.0.0"),
        "test": ("info", 2, "1.1.0-rc.1"),
        "prod": ("warn", 3, "1.0.1"),
    }


def test_example_helm_local(examples: dict[str, Bundle], tmp_path: Path) -> None:
    seen = {}
    for cluster in (DEV, TEST, PROD):
        manifests = render_example(examples, "helm-local", cluster, tmp_path)
        container = find(manifests, "Deployment", "web")["spec"]["template"]["spec"]["containers"][
            0
        ]
        env = {e["name"]: e["value"] for e in container["env"]}
        seen[cluster.labels["env"]] = (
            find(manifests, "Deployment", "web")["spec"]["replicas"],
            env["COLOR"],
            env["CLUSTER_ENV"],
            container["image"],
        )
    assert seen == {
        "dev": (1, "green", "dev", "registry.local/demo/web:1.0.0"),
        "test": (2, "yellow", "test", "registry.local/demo/web:1.0.0"),
        "prod": (3, "red", "prod", "registry.local/demo/web:1.0.1"),
    }


def test_example_kustomize(examples: dict[str, Bundle], tmp_path: Path) -> None:
    seen = {}
    for cluster in (DEV, TEST, PROD, ClusterInfo(name="other")):
        manifests = render_example(examples, "kustomize", cluster, tmp_path)
        (config,) = [o for o in manifests if o["kind"] == "ConfigMap"]
        seen[cluster.labels.get("env", "none")] = (
            find(manifests, "Deployment", "api")["spec"]["replicas"],
            config["data"]["MODE"],
        )
        assert config["metadata"]["namespace"] == "kustomize-demo"
    assert seen == {
        "dev": (1, "dev"),
        "test": (2, "test"),
        "prod": (3, "prod"),
        "none": (1, "base"),
    }


def test_example_helm_kustomize(examples: dict[str, Bundle], tmp_path: Path) -> None:
    replicas = {}
    for cluster in (DEV, TEST, PROD):
        manifests = render_example(examples, "helm-kustomize", cluster, tmp_path)
        deploy = find(manifests, "Deployment", "fleet-examples-helm-kustomize-worker")
        assert deploy["metadata"]["labels"] == {"post-rendered-by": "kustomize"}
        replicas[cluster.labels["env"]] = deploy["spec"]["replicas"]
    assert replicas == {"dev": 1, "test": 2, "prod": 4}


def test_example_multi_chart(examples: dict[str, Bundle], tmp_path: Path) -> None:
    seen = {}
    for cluster in (DEV, TEST, PROD):
        front = render_example(examples, "multi-chart/frontend", cluster, tmp_path)
        back = render_example(examples, "multi-chart/backend", cluster, tmp_path)
        seen[cluster.labels["env"]] = (
            find(front, "Deployment", "frontend")["spec"]["replicas"],
            find(back, "Deployment", "backend")["spec"]["replicas"],
        )
    assert seen == {"dev": (1, 1), "test": (1, 2), "prod": (3, 2)}


def test_example_nested(examples: dict[str, Bundle], tmp_path: Path) -> None:
    for cluster, namespace in (
        (DEV, "nested-parent"),
        (TEST, "nested-parent"),
        (PROD, "nested-prod"),
    ):
        parent = render_example(examples, "nested", cluster, tmp_path)
        assert [(o["metadata"]["name"], o["metadata"]["namespace"]) for o in parent] == [
            ("parent-settings", namespace)
        ]
        worker = render_example(examples, "nested/worker", cluster, tmp_path)
        assert [(o["metadata"]["name"], o["metadata"]["namespace"]) for o in worker] == [
            ("worker-settings", "nested-worker")
        ]


def test_credentials_in_a_url_never_reach_the_error(tmp_path: Path) -> None:
    # kustomize echoes the remote resource URL with its password; the error must not.
    files = {"kustomization.yaml": "resources:\n- https://user:s3cret@127.0.0.1:9/x.yaml\n"}
    with pytest.raises(RenderError) as err:
        render_bundle(bundle_of(files), DEV, workdir=tmp_path)
    assert str(err.value).startswith("b/fleet.yaml: kustomize build failed: ")
    assert "s3cret" not in str(err.value) and "***@127.0.0.1" in str(err.value)
