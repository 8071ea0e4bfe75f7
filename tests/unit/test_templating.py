"""Per-cluster values: merge order, clusterLabels references and the ${ } template subset."""

from __future__ import annotations

from typing import Any

import pytest

from flotilla.errors import SpecError
from flotilla.targeting import ClusterInfo
from flotilla.templating import (
    format_go_float,
    process_values,
    render_string,
    render_values,
    substitute_cluster_labels,
    template_context,
    visible_labels,
)
from flotilla.values import merge_values

CLUSTER = ClusterInfo(
    name="eu-prod-1",
    namespace="fleet-default",
    labels={
        "env": "prod",
        "region": "eu-west",
        "replicas": "3",
        "debug": "true",
        "version": "1.10",
        "empty": "",
        "example.com/team": "payments",
        "management.cattle.io/cluster-display-name": "EU Prod 1",
        "fleet.cattle.io/cluster": "eu-prod-1",
        "provisioning.cattle.io/managed": "yes",
        "kubectl.kubernetes.io/last-applied": "{}",
    },
    annotations={"owner": "ops", "field.cattle.io/creator": "admin"},
    template_values={
        "ingress": {"class": "nginx", "hosts": ["a.example.com", "b.example.com"]},
        "replicas": 5,
        "ratio": 0.25,
        "big": 1000000.0,
        "enabled": False,
        "name": "svc",
        "nothing": None,
    },
)
CONTEXT = template_context(CLUSTER)


# ---------------------------------------------------------------------------------------------
# Merging
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ((), {}),
        (({"a": 1},), {"a": 1}),
        (({"a": 1}, None, {"b": 2}), {"a": 1, "b": 2}),
        (({"a": 1}, {"a": 2}, {"a": 3}), {"a": 3}),
        (({"a": {"x": 1}}, {"a": {"y": 2}}, {"a": {"x": 3}}), {"a": {"x": 3, "y": 2}}),
        (({"a": [1, 2]}, {"a": [3]}), {"a": [3]}),
        (({"a": {"x": 1}}, {"a": None}), {"a": None}),
        (
            ({"a": {"x": {"deep": 1}}}, {"a": {"x": {"deeper": 2}}}),
            {"a": {"x": {"deep": 1, "deeper": 2}}},
        ),
        (({"a": [{"x": 1}]}, {"a": [{"y": 2}]}), {"a": [{"y": 2}]}),
    ],
)
def test_merge_values_later_layers_win(
    layers: tuple[dict[str, Any] | None, ...], expected: dict[str, Any]
) -> None:
    assert merge_values(*layers) == expected


def test_merge_values_values_then_values_files_in_order() -> None:
    inline = {"image": {"repository": "r", "tag": "v1"}, "replicas": 1}
    common = {"image": {"tag": "v2"}, "resources": {"cpu": "1"}}
    prod = {"replicas": 3, "resources": {"cpu": "2"}}
    assert merge_values(inline, common, prod) == {
        "image": {"repository": "r", "tag": "v2"},
        "replicas": 3,
        "resources": {"cpu": "2"},
    }


def test_merge_values_shares_nothing_with_its_inputs() -> None:
    base = {"a": {"b": [1]}}
    over = {"c": {"d": [2]}}
    merged = merge_values(base, over)
    merged["a"]["b"].append(9)
    merged["c"]["d"].append(9)
    assert base == {"a": {"b": [1]}}
    assert over == {"c": {"d": [2]}}


# ---------------------------------------------------------------------------------------------
# What templates see
# ---------------------------------------------------------------------------------------------


def test_template_context_fields() -> None:
    assert CONTEXT["ClusterName"] == "eu-prod-1"
    assert CONTEXT["ClusterNamespace"] == "fleet-default"
    assert CONTEXT["ClusterValues"]["replicas"] == 5
    assert CONTEXT["ClusterAnnotations"] == {"owner": "ops"}


@pytest.mark.parametrize(
    ("label", "visible"),
    [
        ("env", True),
        ("example.com/team", True),
        ("management.cattle.io/cluster-display-name", True),
        ("fleet.cattle.io/cluster", True),
        ("provisioning.cattle.io/managed", False),
        ("kubectl.kubernetes.io/last-applied", False),
    ],
)
def test_visible_labels_hide_rancher_and_kubectl_keys(label: str, visible: bool) -> None:
    assert (label in visible_labels(CLUSTER.labels)) is visible


# ---------------------------------------------------------------------------------------------
# global.fleet.clusterLabels references
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"env": "global.fleet.clusterLabels.env"}, {"env": "prod"}),
        ({"team": "global.fleet.clusterLabels.example.com/team"}, {"team": "payments"}),
        ({"zone": "global.fleet.clusterLabels.zone"}, {"zone": ""}),
        ({"a": {"b": {"c": "global.fleet.clusterLabels.region"}}}, {"a": {"b": {"c": "eu-west"}}}),
        ({"l": [{"r": "global.fleet.clusterLabels.region"}]}, {"l": [{"r": "eu-west"}]}),
        # A bare string in a list is left alone, as Fleet does.
        (
            {"l": ["global.fleet.clusterLabels.region"]},
            {"l": ["global.fleet.clusterLabels.region"]},
        ),
        (
            {"x": "prefix global.fleet.clusterLabels.env"},
            {"x": "prefix global.fleet.clusterLabels.env"},
        ),
        ({"n": 3, "b": True, "z": None}, {"n": 3, "b": True, "z": None}),
        ({"hidden": "global.fleet.clusterLabels.provisioning.cattle.io/managed"}, {"hidden": ""}),
    ],
)
def test_substitute_cluster_labels(values: dict[str, Any], expected: dict[str, Any]) -> None:
    assert substitute_cluster_labels(values, visible_labels(CLUSTER.labels)) == expected


def test_substitute_cluster_labels_does_not_change_its_input() -> None:
    values = {"a": {"b": "global.fleet.clusterLabels.env"}}
    substitute_cluster_labels(values, {"env": "prod"})
    assert values == {"a": {"b": "global.fleet.clusterLabels.env"}}


# ---------------------------------------------------------------------------------------------
# Templates: happy paths
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${ .ClusterName }", "eu-prod-1"),
        ("${.ClusterName}", "eu-prod-1"),
        ("${ .ClusterNamespace }", "fleet-default"),
        ("${ .ClusterLabels.env }", "prod"),
        ("${ .ClusterAnnotations.owner }", "ops"),
        ("${ .ClusterValues.name }", "svc"),
        ("${ .ClusterValues.ingress.class }", "nginx"),
        ("host-${ .ClusterName }.example.com", "host-eu-prod-1.example.com"),
        ("${ .ClusterLabels.env }-${ .ClusterLabels.region }", "prod-eu-west"),
        ('${ index .ClusterLabels "example.com/team" }', "payments"),
        ('${ index .ClusterLabels "management.cattle.io/cluster-display-name" }', "EU Prod 1"),
        ('${ index .ClusterValues "ingress" "class" }', "nginx"),
        ("${ index .ClusterValues.ingress.hosts 1 }", "b.example.com"),
        ('${ get .ClusterLabels "env" }', "prod"),
        ('${ get .ClusterLabels "zone" | default "eu-1a" }', "eu-1a"),
        ('${ default "eu-1a" (get .ClusterLabels "zone") }', "eu-1a"),
        ('${ default "dev" .ClusterLabels.env }', "prod"),
        ('${ .ClusterLabels.env | default "dev" }', "prod"),
        ('${ .ClusterLabels.empty | default "dev" }', "dev"),
        ('${ index .ClusterLabels "zone" | default "none" }', "none"),
        ('${ .ClusterValues.enabled | default "on-by-default" }', "on-by-default"),
        ('${ .ClusterValues.nothing | default "x" }', "x"),
        ('${ default "x" }', "x"),
        ('${ "literal" }', "literal"),
        ('${ "with \\"quotes\\" and }" }', 'with "quotes" and }'),
        ("${ `raw ${ string` }", "raw ${ string"),
        ('${ "caf\\u00e9 \\x41\\101" }', "café AA"),
        ('${ (get .ClusterLabels "env") }', "prod"),
        ("no template here", "no template here"),
        ("${ .ClusterValues.name }$", "svc$"),
        ("{ not: a template }", "{ not: a template }"),
    ],
)
def test_render_string_happy_paths(template: str, expected: Any) -> None:
    assert render_string(template, CONTEXT, file="fleet.yaml", field="helm.values.x") == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # A whole-value template keeps the type of what it gives...
        (
            "${ .ClusterValues.ingress }",
            {"class": "nginx", "hosts": ["a.example.com", "b.example.com"]},
        ),
        ("${ .ClusterValues.ingress.hosts }", ["a.example.com", "b.example.com"]),
        ("${ .ClusterValues.replicas }", 5),
        ("${ .ClusterValues.ratio }", 0.25),
        ("${ .ClusterValues.enabled }", False),
        ("${ 42 }", 42),
        ("${ true }", True),
        # ...and text is read back as YAML, as Fleet does, so a label "3" becomes 3.
        ("${ .ClusterLabels.replicas }", 3),
        ("${ .ClusterLabels.debug }", True),
        ("${ .ClusterLabels.version }", 1.1),
        ('${ get .ClusterLabels "zone" }', None),
        ("${ .ClusterLabels.replicas }0", 30),
        ('${ "yes" }', True),
        ('${ "a: b" }', "a: b"),
        ('${ "[1, 2]" }', "[1, 2]"),
        ('${ "{a: 1}" }', "{a: 1}"),
        ('${ "10:30" }', "10:30"),
        ('${ "1 # not a comment" }', "1 # not a comment"),
        ('${ " 3" }', " 3"),
        ('${ "line\\n2" }', "line\n2"),
        ("${ \"'quoted'\" }", "'quoted'"),
        ('${ "null" }', None),
        ('${ "0x1F" }', 31),
        ("[${ .ClusterLabels.replicas }]", "[3]"),
        ('${ "" | default "007" }', 7),
        # Embedded numbers print as Go prints them.
        ("r=${ .ClusterValues.ratio }", "r=0.25"),
        ("n=${ .ClusterValues.replicas }", "n=5"),
        ("big=${ .ClusterValues.big }", "big=1e+06"),
        ("on=${ .ClusterValues.enabled }", "on=false"),
    ],
)
def test_render_string_result_types(template: str, expected: Any) -> None:
    assert render_string(template, CONTEXT, file="fleet.yaml", field="helm.values.x") == expected


def test_render_values_walks_keys_values_and_lists() -> None:
    values = {
        "${ .ClusterName }": {"replicas": "${ .ClusterValues.replicas }"},
        "hosts": ["${ .ClusterName }.example.com", 3, None, {"h": "${ .ClusterLabels.env }"}],
        "plain": "text",
        "number": 1,
    }
    assert render_values(values, CONTEXT, file="fleet.yaml", field="helm.values") == {
        "eu-prod-1": {"replicas": 5},
        "hosts": ["eu-prod-1.example.com", 3, None, {"h": "prod"}],
        "plain": "text",
        "number": 1,
    }


def test_process_values_substitutes_labels_then_templates() -> None:
    values = {
        "env": "global.fleet.clusterLabels.env",
        "host": "${ .ClusterName }.example.com",
        "list": ["global.fleet.clusterLabels.env"],
    }
    assert process_values(values, CLUSTER, file="fleet.yaml") == {
        "env": "prod",
        "host": "eu-prod-1.example.com",
        "list": ["global.fleet.clusterLabels.env"],
    }


def test_disable_pre_process_keeps_templates_but_not_label_references() -> None:
    values = {"env": "global.fleet.clusterLabels.env", "host": "${ .ClusterName }"}
    assert process_values(values, CLUSTER, disable_pre_process=True, file="fleet.yaml") == {
        "env": "prod",
        "host": "${ .ClusterName }",
    }


def test_process_values_does_not_change_its_input() -> None:
    values = {"a": {"b": "${ .ClusterName }"}}
    process_values(values, CLUSTER, file="fleet.yaml")
    assert values == {"a": {"b": "${ .ClusterName }"}}


# ---------------------------------------------------------------------------------------------
# Templates: every error is a SpecError naming the value and the expression
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        (
            "${ .ClusterLabels.zone }",
            ".ClusterLabels has no key 'zone'; use get .ClusterLabels \"zone\"",
        ),
        ("${ .ClusterValues.ingress.tls }", ".ClusterValues.ingress has no key 'tls'"),
        ("${ .Cluster }", "the context has no key 'Cluster'"),
        ("${ .ClusterName.first }", ".ClusterName is str 'eu-prod-1', it has no field 'first'"),
        ("${ .ClusterValues.nothing.x }", ".ClusterValues.nothing is nil, it has no field 'x'"),
        ('${ index .ClusterLabels "zone" }', "gives no value (a missing key?)"),
        ("${ .ClusterValues.nothing }", "gives no value"),
        ("x-${ .ClusterValues.ingress }", "gives a map, which can only be a whole value"),
        ("x-${ .ClusterValues.ingress.hosts }", "gives a list, which can only be a whole value"),
        ("${ upper .ClusterName }", "function 'upper' is not supported (use index, get, default)"),
        ("${ .ClusterName | quote }", "function 'quote' is not supported"),
        ("${ if .ClusterName }x${ end }", "template action 'if' is not supported"),
        ("${ range .ClusterLabels }", "template action 'range' is not supported"),
        ("${ $x := 1 }", "unexpected '$' in the expression"),
        ("${ .ClusterName", "'${' is not closed by '}'"),
        ('${ "unclosed }', "unexpected '\"' in the expression"),
        ("${ }", "an expression is missing"),
        ("${ .ClusterName | }", "an expression is missing"),
        ("${ | default 1 }", "an expression is missing"),
        ("${ .ClusterName | .ClusterName }", "only a function can follow '|'"),
        ('${ .ClusterName "x" }', "a value cannot take arguments"),
        (
            '${ (index .ClusterValues "ingress").class }',
            "field access after '( )' is not supported",
        ),
        ('${ (get .ClusterLabels "env" }', "'(' is not closed by ')'"),
        ("${ .ClusterName ) }", "unexpected ')'"),
        ("${- .ClusterName }", "trim markers ('${-', '-}') are not supported"),
        ("${ .ClusterName -}", "trim markers"),
        ("${ index .ClusterValues.ingress.hosts 5 }", "index 5 is out of range for a list of 2"),
        ('${ index .ClusterValues.ingress.hosts "a" }', "index 'a' of a list must be an integer"),
        ("${ index .ClusterLabels 1 }", "index key 1 of a map must be a string"),
        ('${ index .ClusterName "a" }', "cannot index str 'eu-prod-1' with 'a'"),
        ("${ index }", "index needs a map or list and keys"),
        ('${ get .ClusterName "a" }', "get needs a map, got str 'eu-prod-1'"),
        ("${ get .ClusterLabels 1 }", "get key must be a string, got 1"),
        ("${ get .ClusterLabels }", "get takes a map and a key, got 1 arguments"),
        ('${ default "a" "b" "c" }', "default takes a fallback and a value, got 3 arguments"),
        ("${ default }", "default takes a fallback and a value, got 0 arguments"),
        (
            '${ get "a" }',
            "get takes a map and a key, got 1 arguments",
        ),
        ("${ .ClusterName default }", "a value cannot take arguments"),
        (
            "${ index .ClusterLabels default }",
            "function 'default' must come first in an expression",
        ),
        ('${ "\\x4" }', "bad string literal"),
        ('${ "a\\zb" }', "bad string literal"),
        ('${ "\\q" }', 'bad string literal "\\q"'),
    ],
)
def test_render_string_errors(template: str, problem: str) -> None:
    with pytest.raises(SpecError) as caught:
        render_string(template, CONTEXT, file="fleet.yaml", field="helm.values.image.tag")
    message = str(caught.value)
    assert message.startswith(f"fleet.yaml: helm.values.image.tag: template {template!r}: ")
    assert problem in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"a": {"b": "${ bad }"}}, "helm.values.a.b"),
        ({"list": [1, {"x": "${ bad }"}]}, "helm.values.list[1].x"),
        ({"list": ["ok", "${ bad }"]}, "helm.values.list[1]"),
        ({"${ bad }": 1}, "helm.values"),
    ],
)
def test_render_values_errors_name_the_value_path(values: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        render_values(values, CONTEXT, file="fleet.yaml", field="helm.values")
    assert str(caught.value).startswith(f"fleet.yaml: {field}: template ")


def test_keys_that_render_to_the_same_name_are_an_error() -> None:
    values = {"eu-prod-1": 1, "${ .ClusterName }": 2}
    with pytest.raises(SpecError, match="renders to 'eu-prod-1', which is already a key"):
        render_values(values, CONTEXT, file="fleet.yaml", field="helm.values")


def test_a_key_cannot_render_a_map() -> None:
    with pytest.raises(SpecError, match="gives a map"):
        render_values({"${ .ClusterValues.ingress }": 1}, CONTEXT, file="f", field="helm.values")


# ---------------------------------------------------------------------------------------------
# Go number printing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (-0.0, "-0"),
        (1.0, "1"),
        (3.0, "3"),
        (-2.5, "-2.5"),
        (0.25, "0.25"),
        (1.0 / 3, "0.3333333333333333"),
        (123456.0, "123456"),
        (999999.0, "999999"),
        (1000000.0, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (1.5e16, "1.5e+16"),
        (1e21, "1e+21"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (0.000123, "0.000123"),
        (1.25e-7, "1.25e-07"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (float("nan"), "NaN"),
    ],
)
def test_format_go_float(value: float, text: str) -> None:
    assert format_go_float(value) == text


def test_whole_value_results_are_copies_of_the_cluster_values() -> None:
    rendered = render_string("${ .ClusterValues.ingress }", CONTEXT, file="f", field="x")
    rendered["class"] = "changed"
    assert CLUSTER.template_values["ingress"]["class"] == "nginx"
