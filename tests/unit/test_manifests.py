"""Parsing, namespace rules, ordering and stable dumping of manifests (flotilla.manifests)."""

from __future__ import annotations

import pytest
import yaml

from flotilla.errors import RenderError, SpecError
from flotilla.manifests import (
    apply_namespaces,
    dump_manifests,
    parse_manifests,
    select_raw_files,
    sort_manifests,
)

TEXT = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: b}
---
---
apiVersion: v1
kind: Namespace
metadata: {name: ns}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: role}
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: other}}
- apiVersion: apiextensions.k8s.io/v1
  kind: CustomResourceDefinition
  metadata: {name: widgets.example.com}
  spec: {scope: Cluster, names: {kind: Widget}}
"""


def test_parse_drops_empty_documents_and_flattens_lists() -> None:
    objects = parse_manifests(TEXT, file="m.yaml")
    assert [o["metadata"]["name"] for o in objects] == [
        "b",
        "ns",
        "role",
        "a",
        "widgets.example.com",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n", "m.yaml: document 1: expected a Kubernetes object, got list"),
        (
            "kind: X\nmetadata: {name: a}\n",
            "m.yaml: document 1: apiVersion: missing or not a string (None)",
        ),
        ("apiVersion: v1\nkind: X\n", "m.yaml: document 1: metadata.name: missing"),
    ],
)
def test_parse_rejects_non_objects(text: str, message: str) -> None:
    with pytest.raises(RenderError) as err:
        parse_manifests(text, file="m.yaml")
    assert str(err.value) == message


def test_parse_bad_yaml_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match=r"^m.yaml: line 2, column 1: invalid YAML"):
        parse_manifests("a: [b\n", file="m.yaml")


def test_default_namespace_fills_only_namespaced_objects_without_one() -> None:
    objects = parse_manifests(TEXT, file="m.yaml")
    result = apply_namespaces(objects, namespace=None, default_namespace="dflt")
    namespaces = {o["metadata"]["name"]: o["metadata"].get("namespace") for o in result}
    assert namespaces == {
        "b": "dflt",
        "ns": None,
        "role": None,
        "a": "other",
        "widgets.example.com": None,
    }


def test_forced_namespace_overrides_every_namespaced_object() -> None:
    objects = parse_manifests(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: x}\n", file="m.yaml"
    )
    (result,) = apply_namespaces(objects, namespace="forced", default_namespace="dflt")
    assert result["metadata"]["namespace"] == "forced"
    assert objects[0]["metadata"]["namespace"] == "x"  # input untouched


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\n",
            "ClusterRole",
        ),
        (TEXT.split("---\n---\n")[1].split("---\n", maxsplit=1)[0], "Namespace"),
    ],
)
def test_cluster_scoped_object_under_forced_namespace_is_an_error(text: str, kind: str) -> None:
    with pytest.raises(
        RenderError, match=rf"^app/fleet.yaml: namespace: {kind} '\w+' is cluster-scoped"
    ):
        apply_namespaces(
            parse_manifests(text, file="m"),
            namespace="x",
            default_namespace=None,
            file="app/fleet.yaml",
        )


def test_custom_kind_declared_cluster_scoped_by_a_crd_in_the_bundle() -> None:
    text = TEXT.split("items:\n")[1]
    crd = parse_manifests("apiVersion: v1\nkind: List\nitems:\n" + text, file="m")
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    result = apply_namespaces([*crd, widget], namespace=None, default_namespace="d")
    assert "namespace" not in result[-1]["metadata"]


def test_sort_order_namespaces_then_crds_then_kind_namespace_name() -> None:
    objects = parse_manifests(TEXT, file="m.yaml")
    ordered = [(o["kind"], o["metadata"]["name"]) for o in sort_manifests(objects)]
    assert ordered == [
        ("Namespace", "ns"),
        ("CustomResourceDefinition", "widgets.example.com"),
        ("ClusterRole", "role"),
        ("ConfigMap", "b"),
        ("ConfigMap", "a"),
    ]


def test_dump_is_byte_stable_whatever_the_input_order() -> None:
    objects = parse_manifests(TEXT, file="m.yaml")
    reordered = [dict(reversed(list(o.items()))) for o in reversed(objects)]
    assert dump_manifests(sort_manifests(objects)) == dump_manifests(sort_manifests(reordered))
    assert dump_manifests(sort_manifests(objects)).startswith(
        "---\napiVersion: v1\nkind: Namespace\n"
    )


def test_select_raw_files_skips_nested_bundles_charts_and_non_yaml() -> None:
    resources = {
        "a.yaml": b"",
        "b.yml": b"",
        "c.json": b"",
        "README.md": b"",
        "fleet.yaml": b"",
        "nested/fleet.yaml": b"",
        "nested/x.yaml": b"",
        "chart/Chart.yaml": b"",
        "chart/values.yaml": b"",
        "sub/d.yaml": b"",
    }
    assert sorted(select_raw_files(resources)) == ["a.yaml", "b.yml", "c.json", "sub/d.yaml"]


TRICKY = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "tricky", "annotations": {"a/b": "x: y", "": "empty key"}},
    "data": {
        "bool": "true",
        "float": "1.0",
        "null": "null",
        "tilde": "~",
        "yes": "yes",
        "date": "2001-01-01",
        "hex": "0x1F",
        "empty": "",
        "space": " x",
        "hash": "a #b",
        "multi": "l1\nl2",
        "quote": "it's",
        "dq": '"',
        "star": "*x",
        "amp": "&a",
        "dash": "-x",
        "colon": "x:",
        "unicode": "ünï",
        "tab": "a\tb",
    },
    "spec": {"nested": [[1, [2]], [], {}, [{}], {"a": []}], "n": None, "big": 10**30, "t": True},
}


def test_dump_round_trips_tricky_values() -> None:
    text = dump_manifests([TRICKY])
    assert list(yaml.safe_load_all(text)) == [TRICKY]


def test_dump_matches_pyyaml_for_ordinary_manifests() -> None:
    objects = parse_manifests(TEXT, file="m.yaml")
    expected = yaml.safe_dump_all(
        objects,
        sort_keys=True,
        default_flow_style=False,
        explicit_start=True,
        allow_unicode=True,
        width=1 << 16,
    )
    assert dump_manifests(objects) == expected


def test_dump_falls_back_for_floats_and_non_string_keys() -> None:
    obj = {"apiVersion": "v1", "kind": "X", "metadata": {"name": "a"}, "v": 1.5, "k": {1: 2}}
    assert list(yaml.safe_load_all(dump_manifests([obj]))) == [obj]


def test_anchors_take_the_safe_path_and_alias_bombs_are_refused() -> None:
    anchored = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: &d {k: v}\nx: *d\n"
    assert parse_manifests(anchored, file="m")[0]["x"] == {"k": "v"}
    bomb = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
    bomb += "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(7):
        bomb += f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n"
    with pytest.raises(SpecError, match="expands to more than"):
        parse_manifests(bomb, file="m")
