"""Overlays and patches of raw-YAML bundles (flotilla.overlays)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from flotilla.errors import RenderError, SpecError
from flotilla.overlays import apply_overlays, merge_json, merge_strategic

DEPLOY = b"""\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  template:
    spec:
      containers:
      - name: app
        image: registry.local/demo/app:1.0.0
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
      - name: sidecar
        image: registry.local/demo/side:1.0.0
      tolerations: [{key: a}]
"""
CUSTOM = b"apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {items: [1, 2]}\n"


def load(data: bytes) -> Any:
    return yaml.safe_load(data)


def test_replacement_then_later_overlay_wins() -> None:
    resources = {
        "cm.yaml": b"a",
        "overlays/one/cm.yaml": b"one",
        "overlays/two/cm.yaml": b"two",
        "overlays/two/extra.yaml": b"x",
    }
    assert apply_overlays(resources, ["one", "two"]) == {"cm.yaml": b"two", "extra.yaml": b"x"}
    assert apply_overlays(resources, ["two", "one"]) == {"cm.yaml": b"one", "extra.yaml": b"x"}
    assert apply_overlays(resources, []) == {"cm.yaml": b"a"}


def test_strategic_merge_patch_merges_containers_by_name() -> None:
    patch = b"""\
spec:
  replicas: 3
  template:
    spec:
      containers:
      - name: app
        image: registry.local/demo/app:2.0.0
        env: [{name: B, value: "20"}, {name: C, value: "3"}]
      - name: sidecar
        $patch: delete
      tolerations: [{key: b}]
"""
    out = apply_overlays({"d.yaml": DEPLOY, "overlays/prod/d_patch.yaml": patch}, ["prod"])
    spec = load(out["d.yaml"])["spec"]
    assert spec["replicas"] == 3
    (app,) = spec["template"]["spec"]["containers"]
    assert app["image"] == "registry.local/demo/app:2.0.0"
    assert app["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "20"},
        {"name": "C", "value": "3"},
    ]
    assert spec["template"]["spec"]["tolerations"] == [{"key": "b"}]  # no merge key: replaced


def test_strategic_replace_directive() -> None:
    target = {"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}}}
    patch = {"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "c"}]}}}}
    assert merge_strategic(target, patch)["spec"]["template"]["spec"]["containers"] == [
        {"name": "c"}
    ]
    replaced = merge_strategic({"m": {"x": 1, "y": 2}}, {"m": {"$patch": "replace", "z": 3}})
    assert replaced == {"m": {"z": 3}}
    assert merge_strategic({"m": {"x": 1}, "k": 1}, {"m": {"$patch": "delete"}, "k": None}) == {}


def test_custom_kind_gets_json_merge_patch() -> None:
    patch = b"spec: {items: [3], extra: true}\n"
    out = apply_overlays({"w.yaml": CUSTOM, "overlays/x/w_patch.yaml": patch}, ["x"])
    assert load(out["w.yaml"])["spec"] == {"items": [3], "extra": True}


def test_json_merge_patch_rules() -> None:
    assert merge_json({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}) == {
        "a": {"c": 2, "d": 3}
    }
    assert merge_json({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}


def test_json_patch_when_patch_is_a_list() -> None:
    patch = (
        b"- {op: replace, path: /spec/replicas, value: 5}\n"
        b"- {op: add, path: /metadata/labels, value: {a: b}}\n"
    )
    out = apply_overlays({"d.yaml": DEPLOY, "overlays/x/d_patch.yaml": patch}, ["x"])
    doc = json.loads(out["d.yaml"])
    assert doc["spec"]["replicas"] == 5 and doc["metadata"]["labels"] == {"a": "b"}


def test_failing_json_patch_names_the_overlay_file() -> None:
    patch = b"- {op: remove, path: /spec/nothing}\n"
    with pytest.raises(RenderError, match=r"^b/overlays/x/d_patch.yaml: JSON patch failed"):
        apply_overlays({"d.yaml": DEPLOY, "overlays/x/d_patch.yaml": patch}, ["x"], bundle_dir="b")


def test_patch_in_subdirectory_and_patch_of_replaced_file() -> None:
    resources = {
        "sub/cm.yaml": b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n",
        "overlays/x/sub/cm_patch.yaml": b"data: {k: w}\n",
        "overlays/x/new.yaml": b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: n}\n",
        "overlays/x/new_patch.yaml": b"data: {n: '1'}\n",
    }
    out = apply_overlays(resources, ["x"])
    assert load(out["sub/cm.yaml"])["data"] == {"k": "w"}
    assert load(out["new.yaml"])["data"] == {"n": "1"}
    assert not any(p.startswith("overlays/") for p in out)


def test_missing_patch_target_is_an_error_naming_the_overlay_file() -> None:
    with pytest.raises(RenderError) as err:
        apply_overlays({"overlays/x/gone_patch.yaml": b"a: 1\n"}, ["x"], bundle_dir="app")
    assert (
        str(err.value) == "app/overlays/x/gone_patch.yaml: patch target 'gone.yaml' does not exist"
    )


def test_unknown_overlay_names_the_field() -> None:
    with pytest.raises(SpecError) as err:
        apply_overlays({"overlays/x/a.yaml": b""}, ["prod"])
    assert str(err.value) == (
        "fleet.yaml: yaml.overlays: 'prod' does not exist (no overlays/prod/ directory)"
    )


def test_scalar_patch_is_rejected() -> None:
    with pytest.raises(RenderError, match="a patch must be a map or a list, got str"):
        apply_overlays({"d.yaml": DEPLOY, "overlays/x/d_patch.yaml": b"just text\n"}, ["x"])


def test_unparsable_patch_target_names_the_target_file() -> None:
    with pytest.raises(SpecError, match=r"^app/d.yaml: line 2, column 1: invalid YAML"):
        apply_overlays(
            {"d.yaml": b"a: [b\n", "overlays/x/d_patch.yaml": b"a: 1\n"}, ["x"], bundle_dir="app"
        )
