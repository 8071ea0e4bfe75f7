"""The bad-input corpus: every malformed input gives one line naming file, field and value.

Each case builds a small checkout in a temporary directory, runs the real CLI entry point and
checks the exact error text, the exit code, and that no traceback leaks out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from starters.cli import main

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n"
DEPLOY = (
    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 1\n"
    "  template:\n    spec:\n      containers:\n      - {name: web, image: registry.local/a:1}\n"
)
CHART = "apiVersion: v2\nname: c\nversion: 0.1.0\n"
GITREPO = "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\nmetadata: {name: g}\nspec:\n"
CLUSTER = "apiVersion: fleet.cattle.io/v1alpha1\nkind: Cluster\nmetadata: {name: c1}\n"
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
)


def write_big(root: Path) -> None:
    with open(root / "app" / "big.yaml", "wb") as handle:
        handle.truncate(50 * 1024 * 1024)


def link_out(root: Path) -> None:
    os.symlink("../../outside.yaml", root / "app" / "evil.yaml")


@dataclass
class Case:
    """One malformed input: the files of a checkout, the command, and the expected error."""

    files: dict[str, str]
    argv: list[str]
    error: str  # the start of the one-line message after "error: "
    code: int = 1
    prepare: Callable[[Path], None] | None = None
    extra: dict[str, str] = field(default_factory=dict)  # files outside the checkout


def app(
    fleet_yaml: str | None,
    error: str,
    *,
    files: dict[str, str] | None = None,
    cmd: str = "test",
    args: tuple[str, ...] = (),
    prepare: Callable[[Path], None] | None = None,
) -> Case:
    checkout = {"app/cm.yaml": CM} if files is None else dict(files)
    if fleet_yaml is not None:
        checkout["app/fleet.yaml"] = fleet_yaml
    return Case(files=checkout, argv=[cmd, "{root}", *args], error=error, prepare=prepare)


CASES: dict[str, Case] = {
    # --- fleet.yaml syntax and types
    "fleet-yaml-syntax": app("helm: [1\n", "app/fleet.yaml: line 2, column 1: invalid YAML"),
    "fleet-yaml-list": app(
        "- a\n", "app/fleet.yaml: top level must be a mapping, got a list (['a'])"
    ),
    "values-not-map": app(
        "helm: {values: notamap}\n",
        "app/fleet.yaml: helm.values: Input should be a valid dictionary ('notamap')",
    ),
    "helm-not-map": app(
        "helm: [1, 2]\n", "app/fleet.yaml: helm: Input should be a valid dictionary ([1, 2])"
    ),
    "bool-wrong": app(
        "keepResources: maybe\n", "app/fleet.yaml: keepResources: Input should be a valid boolean"
    ),
    "timeout-wrong": app(
        "helm: {timeoutSeconds: soon}\n",
        "app/fleet.yaml: helm.timeoutSeconds: Input should be a valid integer",
    ),
    "overlays-not-list": app(
        "yaml: {overlays: prod}\n",
        "app/fleet.yaml: yaml.overlays: Input should be a valid list ('prod')",
    ),
    "mode-unknown": app(
        "targetCustomizationMode: Sometimes\n",
        (
            "app/fleet.yaml: targetCustomizationMode: Input should be 'FirstMatch' "
            "or 'AllMatches' ('Sometimes')"
        ),
    ),
    "max-unavailable": app(
        "rolloutStrategy: {maxUnavailable: ten}\n",
        (
            "app/fleet.yaml: rolloutStrategy.maxUnavailable: 'ten' is not a "
            "non-negative integer or a percentage"
        ),
    ),
    "selector-operator": app(
        (
            "targetCustomizations:\n- name: x\n  clusterSelector:\n    "
            "matchExpressions:\n    - {key: env, operator: Like, values: [a]}\n"
        ),
        (
            "app/fleet.yaml: "
            "targetCustomizations[0].clusterSelector.matchExpressions[0].operator: "
            "'Like' is not one of In, NotIn, Exists, DoesNotExist"
        ),
    ),
    "release-name-bad": app(
        "helm: {releaseName: Foo_}\n",
        "app/fleet.yaml: helm.releaseName: 'Foo_' is not a valid DNS-1123 name",
    ),
    "release-name-long": app(
        "helm: {releaseName: " + "a" * 60 + "}\n", "app/fleet.yaml: helm.releaseName: 'aaaa"
    ),
    "bundle-name-bad": app(
        "name: My_App\n",
        "app/fleet.yaml: name: 'My_App' is not a valid DNS-1123 name of at most 53 characters",
    ),
    "namespace-bad": app(
        "namespace: Bad_NS\n",
        (
            "app/fleet.yaml: namespace: 'Bad_NS' is not a valid namespace name "
            "(DNS-1123 label, at most 63 characters)"
        ),
    ),
    "default-namespace-bad": app(
        "targetCustomizations:\n- {name: x, clusterName: a, defaultNamespace: '-x'}\n",
        (
            "app/fleet.yaml: targetCustomizations[0].defaultNamespace: '-x' is not "
            "a valid namespace name"
        ),
    ),
    "alias-bomb": app(
        ALIAS_BOMB,
        "app/fleet.yaml: document 1 expands to more than 1000000 YAML nodes through aliases",
    ),
    # --- files the fleet.yaml names
    "missing-chart-dir": app(
        "helm: {chart: charts/web}\n",
        "app/fleet.yaml: helm.chart: 'charts/web' has no Chart.yaml in the bundle",
    ),
    "missing-kustomize-dir": app(
        "kustomize: {dir: overlays/dev}\n",
        "app/fleet.yaml: kustomize.dir: 'overlays/dev' has no kustomization.yaml in the bundle",
    ),
    "missing-values-file": app(
        "helm: {valuesFiles: [values/prod.yaml]}\n",
        "app/fleet.yaml: helm.valuesFiles[0]: 'values/prod.yaml' does not exist in the bundle",
        files={"app/Chart.yaml": CHART},
    ),
    "values-file-not-map": app(
        "helm: {valuesFiles: [v.yaml]}\n",
        "app/v.yaml: top level must be a mapping, got a list",
        files={"app/Chart.yaml": CHART, "app/v.yaml": "- 1\n"},
    ),
    "nonexistent-overlay": app(
        "yaml: {overlays: [prod]}\n",
        "app/fleet.yaml: yaml.overlays: 'prod' does not exist (no overlays/prod/ directory)",
    ),
    "missing-patch-target": app(
        "yaml: {overlays: [prod]}\n",
        "app/overlays/prod/gone_patch.yaml: patch target 'gone.yaml' does not exist",
        files={"app/cm.yaml": CM, "app/overlays/prod/gone_patch.yaml": "data: {a: b}\n"},
    ),
    "json-patch-fails": app(
        "yaml: {overlays: [prod]}\n",
        "app/overlays/prod/d_patch.yaml: JSON patch failed",
        files={
            "app/d.yaml": DEPLOY,
            "app/overlays/prod/d_patch.yaml": "- {op: remove, path: /spec/nope}\n",
        },
    ),
    "scalar-patch": app(
        "yaml: {overlays: [prod]}\n",
        "app/overlays/prod/d_patch.yaml: a patch must be a map or a list, got str",
        files={"app/d.yaml": DEPLOY, "app/overlays/prod/d_patch.yaml": "oops\n"},
    ),
    "duplicate-names": app(
        "name: same\n",
        "b/fleet.yaml: name: 'same' is already used by the bundle in 'app'",
        files={"app/cm.yaml": CM, "b/fleet.yaml": "name: same\n", "b/cm.yaml": CM},
    ),
    # --- checkout content
    "fleetignore-bad-glob": app(
        "{}\n",
        "app/.fleetignore: '[oops' is not a valid glob (unclosed [)",
        files={"app/cm.yaml": CM, "app/.fleetignore": "[oops\n"},
    ),
    "symlink-out": app(
        "{}\n",
        "app/evil.yaml: symlink points outside the checkout ('../../outside.yaml')",
        prepare=link_out,
    ),
    "file-50mb": app(
        "{}\n",
        "app/big.yaml: file is 52428800 bytes, over the limit of 10485760 bytes (10 MiB)",
        prepare=write_big,
    ),
    "manifest-syntax": app(
        "{}\n", "app/cm.yaml: line 2, column 1: invalid YAML", files={"app/cm.yaml": "a: [b\n"}
    ),
    "manifest-not-object": app(
        "{}\n",
        "app/cm.yaml: document 1: expected a Kubernetes object, got list",
        files={"app/cm.yaml": "- a\n"},
    ),
    "manifest-no-kind": app(
        "{}\n",
        "app/cm.yaml: document 2: kind: missing or not a string (None)",
        files={"app/cm.yaml": CM + "---\napiVersion: v1\nmetadata: {name: x}\n"},
    ),
    "cluster-scoped-forced-ns": app(
        "namespace: apps\n",
        (
            "app/fleet.yaml: namespace: ClusterRole 'reader' is cluster-scoped and "
            "cannot be placed in namespace 'apps'"
        ),
        files={
            "app/role.yaml": (
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n"
                "metadata: {name: reader}\n"
            )
        },
    ),
    "values-template-bad": app(
        'helm: {chart: chart, values: {a: "${ .ClusterLabels.env | nosuch }"}}\n',
        "app/fleet.yaml: helm.values.a: template '${ .ClusterLabels.env | nosuch }': "
        "function 'nosuch' is not supported",
        files={"app/chart/Chart.yaml": CHART},
    ),
    "helm-template-bad": app(
        "helm: {chart: chart}\n",
        "app/fleet.yaml: helm template failed: ",
        files={
            "app/chart/Chart.yaml": CHART,
            "app/chart/templates/a.yaml": "x: {{ .Values.a | nosuchfn }}\n",
        },
    ),
    "unreachable-chart-repo": app(
        "helm: {repo: 'http://127.0.0.1:9/charts', chart: web, version: 1.0.0}\n",
        "app/fleet.yaml: helm pull failed: ",
        files={},
    ),
    "kustomize-broken": app(
        "{}\n",
        "app/fleet.yaml: kustomize build failed: ",
        files={"app/kustomization.yaml": "resources: [missing.yaml]\n"},
    ),
    "no-bundle": app(None, "{root}: no bundle found", files={"docs/readme.md": "hi"}),
    "path-not-dir": Case(
        files={}, argv=["test", "{root}/nope"], error="{root}/nope: is not a directory"
    ),
    # --- CLI flags and side files
    "label-flag": app("{}\n", "-l: 'env' is not key=value", args=("-l", "env")),
    "gitrepo-missing": app(
        "{}\n", "{root}/nope.yaml: file does not exist", args=("--gitrepo", "{root}/nope.yaml")
    ),
    "gitrepo-wrong-kind": Case(
        files={"app/cm.yaml": CM},
        argv=["test", "{root}", "--gitrepo", "{root}/g.yaml"],
        error="{root}/g.yaml: kind: expected a GitRepo, got 'Cluster'",
        extra={"g.yaml": CLUSTER},
    ),
    "gitrepo-bad-paths": Case(
        files={"app/cm.yaml": CM},
        argv=["test", "{root}", "--gitrepo", "{root}/g.yaml"],
        error="{root}/g.yaml: spec.paths: Input should be a valid list",
        extra={"g.yaml": GITREPO + "  repo: x\n  paths: app\n"},
    ),
    "clusters-syntax": Case(
        files={"app/cm.yaml": CM},
        argv=["target", "{root}", "--clusters", "{root}/c.yaml"],
        error="{root}/c.yaml: line 2, column 1: invalid YAML",
        extra={"c.yaml": "a: [\n"},
    ),
    "clusters-wrong-kind": Case(
        files={"app/cm.yaml": CM},
        argv=["target", "{root}", "--clusters", "{root}/c.yaml"],
        error="{root}/c.yaml: kind: 'Pod' is not a kind flotilla applies",
        extra={"c.yaml": "apiVersion: fleet.cattle.io/v1alpha1\nkind: Pod\nmetadata: {name: p}\n"},
    ),
    "clusters-empty": Case(
        files={"app/cm.yaml": CM},
        argv=["target", "{root}", "--clusters", "{root}/c.yaml"],
        error="{root}/c.yaml: holds no Cluster object",
        extra={"c.yaml": "# nothing\n"},
    ),
    "clusters-bad-label": Case(
        files={"app/cm.yaml": CM},
        argv=["target", "{root}", "--clusters", "{root}/c.yaml"],
        error="{root}/c.yaml: metadata.labels",
        extra={"c.yaml": CLUSTER.replace("{name: c1}", "{name: c1, labels: {env: [1]}}")},
    ),
    "not-targeted": Case(
        files={"app/cm.yaml": CM},
        argv=["test", "{root}", "--gitrepo", "{root}/g.yaml", "-l", "env=dev"],
        error=(
            "cluster 'local' is not targeted: bundle g-app: target prod: "
            "clusterSelector does not match labels {'env': 'dev'}"
        ),
        extra={
            "g.yaml": GITREPO
            + "  repo: x\n  paths: [app]\n"
            + "  targets: [{name: prod, clusterSelector: {matchLabels: {env: prod}}}]\n"
        },
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES[name]
    root = tmp_path / "repo"
    root.mkdir()
    for path, text in case.files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    for path, text in case.extra.items():
        (root / path).write_text(text)
    if case.prepare is not None:
        case.prepare(root)
    argv = [arg.replace("{root}", str(root)) for arg in case.argv]
    started = time.monotonic()
    code = main(argv)
    elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    expected = "error: " + case.error.replace("{root}", str(root))
    assert code == case.code, err
    assert err.startswith(expected), err
    assert err.count("\n") == 1 and "Traceback" not in err + out
    assert "instance of" not in err  # no model class of ours named in a user's error
    assert elapsed < 10  # the alias bomb and the 50 MB file are refused, not chewed through


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30
