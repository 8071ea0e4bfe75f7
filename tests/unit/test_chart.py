"""Generated charts: layout, stable bytes, and manifests that survive real `helm template`."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv.tools import locate
from flotilla.chart import chart_version, escape_template, wrap_manifests

CONFIGMAP: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "Tricky_Conf", "namespace": "app"},
    "data": {
        "go-template": "Hello {{ .Values.name }} and {{- trim -}} and {{/* comment */}}",
        "braces": "{{{ x }}} }} {{ {",
        "already-escaped": '{{ "{{" }}',
        "helm-lookalike": '{{ include "x" . | nindent 4 }}',
        "multi-line": "line {{ one }}\nline two }}\n\n{{end}}\n",
        "unicode": "grüße {{ ✓ }}",
    },
}
DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "web",
        "namespace": "app",
        "annotations": {"note": "{{ not a template }}"},
    },
    "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {"name": "web", "image": "nginx:1.27", "args": ["--fmt={{.Status}}"]}
                ]
            },
        },
    },
}
NAMESPACE: dict[str, Any] = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("plain", "plain"),
        ("{{ x }}", '{{ "{{" }} x }}'),
        ("a }} b", "a }} b"),
        ("{{{", '{{ "{{" }}{'),
        ("{{{{", '{{ "{{" }}{{ "{{" }}'),
        ("{{- x -}}", '{{ "{{" }}- x -}}'),
    ],
)
def test_escape_template(text: str, escaped: str) -> None:
    assert escape_template(text) == escaped


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.2.3", "1.2.3"),
        ("0.0.0+abc", "0.0.0+abc"),
        ("1.0.0-rc.1+build.5", "1.0.0-rc.1+build.5"),
        ("s-4f3a9c:deadbeef", "0.0.0+596c1fca4a7b"),
        ("01.2.3", None),
        ("", None),
    ],
)
def test_chart_version(version: str, expected: str | None) -> None:
    result = chart_version(version)
    if expected is not None:
        assert result == expected
    else:
        assert result.startswith("0.0.0+")
        assert len(result) == len("0.0.0+") + 12


def test_chart_version_differs_per_deployment() -> None:
    assert chart_version("deployment-a") != chart_version("deployment-b")


def test_chart_layout() -> None:
    files = wrap_manifests("web", [NAMESPACE, DEPLOYMENT, CONFIGMAP], version="1.2.3")
    assert list(files) == [
        "Chart.yaml",
        "templates/000-namespace-app.yaml",
        "templates/001-deployment-web.yaml",
        "templates/002-configmap-tricky-conf.yaml",
    ]
    chart = yaml.safe_load(files["Chart.yaml"])
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "web"
    assert chart["version"] == "1.2.3"


def test_many_manifests_keep_file_names_in_order() -> None:
    manifests = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}}
        for i in range(1200)
    ]
    names = [name for name in wrap_manifests("big", manifests, version="v") if name != "Chart.yaml"]
    assert names[0] == "templates/0000-configmap-c0.yaml"
    assert names == sorted(names)


def test_output_is_byte_identical_for_the_same_input() -> None:
    first = wrap_manifests("web", [DEPLOYMENT, CONFIGMAP], version="dep-1")
    second = wrap_manifests("web", [dict(reversed(DEPLOYMENT.items())), CONFIGMAP], version="dep-1")
    assert first == second


def test_templates_hold_no_unescaped_action() -> None:
    files = wrap_manifests("web", [CONFIGMAP], version="v")
    text = files["templates/000-configmap-tricky-conf.yaml"].decode()
    assert text.count("{{") == text.count('{{ "{{" }}') * 2


def test_manifests_round_trip_through_real_helm_template(tmp_path: Path) -> None:
    manifests = [NAMESPACE, DEPLOYMENT, CONFIGMAP]
    for name, content in wrap_manifests("web", manifests, version="dep-1").items():
        path = tmp_path / "chart" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    result = subprocess.run(
        [str(locate("helm")), "template", "web", str(tmp_path / "chart"), "--namespace", "app"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    key = lambda obj: (obj["kind"], obj["metadata"]["name"])  # noqa: E731
    assert sorted(rendered, key=key) == sorted(manifests, key=key)
