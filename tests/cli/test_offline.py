"""End-to-end runs of `flotilla bundle`, `flotilla test` and `flotilla target` on the examples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from activities.secrets import FileSecretStore
from flotilla.credentials import SOPS_AGE_SECRET
from starters.cli import main
from tests.charts import AgeKey, ChartServer, sops_encrypt
from tests.conftest import CHART_PASSWORD, CHART_USER, locate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
REPO = str(EXAMPLES / "fleet-examples")
GITREPO = str(EXAMPLES / "gitrepo.yaml")
CLUSTERS = str(EXAMPLES / "clusters.yaml")


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_bundle_prints_fleet_bundle_objects(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["bundle", "-n", "team", f"{REPO}/multi-chart"], capsys)
    assert (code, err) == (0, "")
    docs = list(yaml.safe_load_all(out))
    assert [(d["kind"], d["metadata"]["name"], d["metadata"]["namespace"]) for d in docs] == [
        ("Bundle", "multi-chart-backend", "team"),
        ("Bundle", "multi-chart-frontend", "team"),
    ]
    backend = docs[0]
    assert backend["apiVersion"] == "fleet.cattle.io/v1alpha1"
    assert backend["spec"]["helm"] == {
        "chart": "chart",
        "releaseName": "backend",
        "values": {"replicas": 1},
    }
    assert [r["name"] for r in backend["spec"]["resources"]] == [
        "chart/Chart.yaml",
        "chart/templates/deployment.yaml",
    ]
    assert backend["spec"]["targets"][0]["name"] == "test-and-prod"


def test_bundle_name_flag_and_values_files_folded_in(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["bundle", "--name", "demo", f"{REPO}/helm-local"], capsys)
    (doc,) = yaml.safe_load_all(out)
    assert code == 0 and doc["metadata"]["name"] == "demo"
    assert doc["spec"]["helm"]["values"]["image"] == {
        "repository": "registry.local/demo/web",
        "tag": "1.0.0",
    }
    assert not any(r["name"].startswith("values/") for r in doc["spec"]["resources"])


@pytest.mark.parametrize(
    ("env", "replicas", "log_level"),
    [("dev", 1, "debug"), ("test", 2, "info"), ("prod", 3, "warn")],
)
def test_test_renders_per_env(
    capsys: pytest.CaptureFixture[str], env: str, replicas: int, log_level: str
) -> None:
    code, out, err = run(["test", REPO, "--gitrepo", GITREPO, "-l", f"env={env}"], capsys)
    assert code == 0, err
    docs = [d for d in yaml.safe_load_all(out) if d]
    guestbook = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "guestbook"
    ]
    assert guestbook[0]["spec"]["replicas"] == replicas
    config = [d for d in docs if d["metadata"]["name"] == "guestbook-config"]
    assert config[0]["data"]["LOG_LEVEL"] == log_level
    assert out.count("# bundle ") == 8


def test_test_without_gitrepo_targets_every_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["test", f"{REPO}/raw-overlays", "-N", "x", "-l", "env=prod"], capsys)
    assert code == 0
    assert out.startswith("# bundle raw-overlays (.), target all, customizations prod\n---\n")


def test_test_explains_why_nothing_matched(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["test", REPO, "--gitrepo", GITREPO, "-l", "env=qa", "-N", "c1"], capsys)
    assert (code, out) == (1, "")
    assert err == (
        "error: cluster 'c1' is not targeted: 8 bundles: target environments: clusterSelector "
        "does not match labels {'env': 'qa'}\n"
    )


def test_test_group_flag(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    gitrepo = tmp_path / "g.yaml"
    gitrepo.write_text(
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\nmetadata: {name: g}\n"
        "spec:\n  repo: x\n  paths: [nested]\n  targets: [{clusterGroup: blue}]\n"
    )
    assert run(["test", REPO, "--gitrepo", str(gitrepo)], capsys)[0] == 1
    code, out, _ = run(["test", REPO, "--gitrepo", str(gitrepo), "-g", "blue"], capsys)
    assert code == 0 and "parent-settings" in out and "worker-settings" in out


@pytest.mark.parametrize("fmt", ["table", "json", "yaml"])
def test_target_lists_every_cluster(capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    code, out, _ = run(
        ["target", REPO, "--gitrepo", GITREPO, "--clusters", CLUSTERS, "-o", fmt], capsys
    )
    assert code == 0
    if fmt == "table":
        lines = out.splitlines()
        assert lines[0].split() == ["BUNDLE", "CLUSTER", "TARGETED", "TARGET", "CUSTOMIZATIONS"]
        assert lines[1].split() == [
            "fleet-examples-raw-overlays",
            "fleet-local/dev-1",
            "yes",
            "environments",
            "dev",
        ]
        assert len(lines) == 1 + 8 * 3
        return
    rows = json.loads(out) if fmt == "json" else yaml.safe_load(out)
    frontend = {r["cluster"]: r["customizations"] for r in rows if r["bundle"].endswith("frontend")}
    assert frontend == {
        "fleet-local/dev-1": [],
        "fleet-local/test-1": [],
        "fleet-local/prod-1": ["prod"],
    }


def test_target_shows_untargeted_clusters(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    clusters = tmp_path / "c.yaml"
    clusters.write_text(
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: Cluster\n"
        "metadata: {name: lab, labels: {env: lab}}\n"
    )
    code, out, _ = run(
        ["target", REPO, "--gitrepo", GITREPO, "--clusters", str(clusters), "-o", "json"], capsys
    )
    assert code == 0 and {r["targeted"] for r in json.loads(out)} == {False}


def test_warnings_go_to_stderr(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_text("helmm: {}\n")
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    code, out, err = run(["bundle", "--name", "w", str(tmp_path)], capsys)
    assert code == 0 and "kind: Bundle" in out
    assert err == "warning: fleet.yaml: helmm: unknown field, ignored; did you mean 'helm'?\n"


def test_console_script_end_to_end() -> None:
    script = Path(sys.executable).parent / "flotilla"
    done = subprocess.run(
        [str(script), "test", REPO, "--gitrepo", GITREPO, "-l", "env=prod"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "registry.local/demo/web:1.0.1" in done.stdout
    bad = subprocess.run(
        [str(script), "test", REPO, "-l", "nonsense"], capture_output=True, text=True, check=False
    )
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr == "error: -l: 'nonsense' is not key=value\n"


def test_gitrepo_target_namespace_forces_every_bundle(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    gitrepo = tmp_path / "g.yaml"
    gitrepo.write_text(
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\nmetadata: {name: g}\n"
        "spec:\n  repo: x\n  paths: [nested, raw-overlays]\n  targetNamespace: forced\n"
    )
    code, out, _ = run(["test", REPO, "--gitrepo", str(gitrepo), "-g", "default"], capsys)
    assert code == 0
    namespaces = {d["metadata"]["namespace"] for d in yaml.safe_load_all(out) if d}
    assert namespaces == {"forced"}


def test_values_from_is_reported_as_not_used_offline(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "fleet.yaml").write_text(
        "helm:\n  valuesFrom:\n  - configMapKeyRef: {name: cm, key: values.yaml}\n"
    )
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    code, out, err = run(["test", str(tmp_path), "--name", "vf"], capsys)
    assert code == 0 and "name: a" in out
    assert err == "warning: bundle vf: helm.valuesFrom is read on the cluster; not used here\n"


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("fleet-examples/helm-local", "demo-fleet-examples-helm-local"),
        ("./fleet-examples/helm-local/", "demo-fleet-examples-helm-local"),
        (".", None),  # the whole examples directory: names come from each bundle's path
    ],
)
def test_bundle_name_joins_the_path_as_given_like_fleet_apply(
    path: str, name: str | None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(EXAMPLES)
    code, out, _ = run(["bundle", "--name", "demo", path], capsys)
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(out)]
    assert code == 0
    if name is not None:
        assert names == [name]
    else:
        assert "demo-fleet-examples-helm-local" in names


def test_test_uses_the_gitrepo_helm_secret_and_sops_key_from_the_secret_store(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    private_chart_server: ChartServer,
    age_key: AgeKey,
) -> None:
    monkeypatch.setenv("FLOTILLA_SECRETS_DIR", str(tmp_path / "secrets"))
    store = FileSecretStore(tmp_path / "secrets")
    store.put("team", "creds", {"username": CHART_USER, "password": CHART_PASSWORD})
    store.put("team", SOPS_AGE_SECRET, {"age.agekey": age_key.identity})
    values = sops_encrypt(locate("sops"), "greeting: sealed-hello\n", age_key.recipient)
    repo = tmp_path / "repo"
    (repo / "app").mkdir(parents=True)
    (repo / "app" / "fleet.yaml").write_text(
        f"helm:\n  repo: {private_chart_server.url}\n  chart: private\n"
        "  valuesFiles: [secrets.yaml]\n"
    )
    (repo / "app" / "secrets.yaml").write_text(values)
    gitrepo = tmp_path / "g.yaml"
    gitrepo.write_text(
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\n"
        "metadata: {name: priv, namespace: team}\n"
        "spec: {repo: x, targets: [{clusterSelector: {}}], helmSecretName: creds, "
        f"helmRepoURLRegex: '{private_chart_server.url}'}}\n"
    )

    code, out, err = run(["test", str(repo), "--gitrepo", str(gitrepo)], capsys)

    assert (code, err) == (0, "")
    (cm,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "ConfigMap"]
    assert cm["data"]["greeting"] == "sealed-hello"
