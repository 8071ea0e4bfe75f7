"""Targeting: selectors, groups, the AND of target criteria, customizations and their merge."""

from __future__ import annotations

from typing import Any

import pytest

from flotilla.models import (
    BundleDeploymentOptions,
    BundleTarget,
    ClusterGroup,
    CorrectDrift,
    FleetYaml,
    GitRepoSpec,
    GitTarget,
    LabelSelector,
    load_cluster,
    load_fleet_yaml,
)
from flotilla.targeting import (
    ClusterInfo,
    GitRepoSwitches,
    apply_switches,
    cluster_groups_for,
    explain_no_match,
    has_criteria,
    list_customizations,
    match_gitrepo_targets,
    match_selector,
    match_target,
    merge_customization,
    resolve_deployment,
    select_customizations,
)


def _selector(**data: Any) -> LabelSelector:
    return LabelSelector.model_validate(data)


def _group(name: str, selector: dict[str, Any] | None, **extra: Any) -> ClusterGroup:
    meta = {"name": name, "namespace": extra.get("namespace", "fleet-default")}
    if "labels" in extra:
        meta["labels"] = extra["labels"]
    return ClusterGroup.model_validate({"metadata": meta, "spec": {"selector": selector}})


def _cluster(name: str = "c1", **labels: str) -> ClusterInfo:
    return ClusterInfo(name=name, namespace="fleet-default", labels=labels)


def _target(**data: Any) -> GitTarget:
    return GitTarget.model_validate(data)


def _options(**data: Any) -> BundleDeploymentOptions:
    return BundleDeploymentOptions.model_validate(data)


def _custom(**data: Any) -> BundleTarget:
    return BundleTarget.model_validate(data)


# ---------------------------------------------------------------------------------------------
# Selectors
# ---------------------------------------------------------------------------------------------

PROD_EU = {"env": "prod", "region": "eu"}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        (None, PROD_EU, False),
        (None, {}, False),
        ({}, PROD_EU, True),
        ({}, {}, True),
        ({"matchLabels": {}}, {}, True),
        ({"matchLabels": {"env": "prod"}}, PROD_EU, True),
        ({"matchLabels": {"env": "prod", "region": "eu"}}, PROD_EU, True),
        ({"matchLabels": {"env": "prod", "region": "us"}}, PROD_EU, False),
        ({"matchLabels": {"env": "dev"}}, PROD_EU, False),
        ({"matchLabels": {"tier": "web"}}, PROD_EU, False),
        ({"matchLabels": {"env": ""}}, {}, False),
        ({"matchLabels": {"env": ""}}, {"env": ""}, True),
        (
            {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "staging"]}]},
            PROD_EU,
            True,
        ),
        (
            {"matchExpressions": [{"key": "env", "operator": "In", "values": ["dev"]}]},
            PROD_EU,
            False,
        ),
        (
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]},
            PROD_EU,
            False,
        ),
        (
            {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]},
            PROD_EU,
            False,
        ),
        (
            {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]},
            PROD_EU,
            True,
        ),
        # NotIn matches a cluster that lacks the label altogether, as in Kubernetes.
        (
            {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]},
            PROD_EU,
            True,
        ),
        ({"matchExpressions": [{"key": "env", "operator": "Exists"}]}, PROD_EU, True),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, PROD_EU, False),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, PROD_EU, True),
        ({"matchExpressions": [{"key": "env", "operator": "DoesNotExist"}]}, PROD_EU, False),
        ({"matchExpressions": [{"key": "env", "operator": "Exists"}]}, {"env": ""}, True),
        (
            {
                "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod"]},
                    {"key": "region", "operator": "NotIn", "values": ["eu"]},
                ]
            },
            PROD_EU,
            False,
        ),
        (
            {
                "matchLabels": {"env": "prod"},
                "matchExpressions": [{"key": "region", "operator": "In", "values": ["eu"]}],
            },
            PROD_EU,
            True,
        ),
        (
            {
                "matchLabels": {"env": "dev"},
                "matchExpressions": [{"key": "region", "operator": "In", "values": ["eu"]}],
            },
            PROD_EU,
            False,
        ),
    ],
)
def test_match_selector(
    selector: dict[str, Any] | None, labels: dict[str, str], expected: bool
) -> None:
    parsed = None if selector is None else _selector(**selector)
    assert match_selector(parsed, labels) is expected


# ---------------------------------------------------------------------------------------------
# Groups
# ---------------------------------------------------------------------------------------------


def test_cluster_groups_for_uses_selectors_in_the_same_namespace() -> None:
    groups = [
        _group("prod", {"matchLabels": {"env": "prod"}}),
        _group("dev", {"matchLabels": {"env": "dev"}}),
        _group("everything", {}),
        _group("nothing", None),
        _group("other-ns", {}, namespace="fleet-local"),
        _group("eu", {"matchExpressions": [{"key": "region", "operator": "In", "values": ["eu"]}]}),
    ]
    assert cluster_groups_for(_cluster(**PROD_EU), groups) == ["prod", "everything", "eu"]


def test_cluster_groups_for_with_no_groups() -> None:
    assert cluster_groups_for(_cluster(**PROD_EU), []) == []


# ---------------------------------------------------------------------------------------------
# Targets: the AND of the criteria that are set
# ---------------------------------------------------------------------------------------------

GROUPS = [
    _group("production", {"matchLabels": {"env": "prod"}}, labels={"stage": "prod"}),
    _group("europe", {"matchLabels": {"region": "eu"}}, labels={"geo": "eu"}),
    _group("default", {}),
]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ({}, False),
        ({"name": "only-a-name"}, False),
        ({"clusterName": ""}, False),
        ({"clusterGroup": ""}, False),
        ({"clusterName": "c1"}, True),
        ({"clusterName": "c2"}, False),
        ({"clusterGroup": "production"}, True),
        ({"clusterGroup": "staging"}, False),
        ({"clusterSelector": {}}, True),
        ({"clusterSelector": {"matchLabels": {"env": "prod"}}}, True),
        ({"clusterSelector": {"matchLabels": {"env": "dev"}}}, False),
        ({"clusterGroupSelector": {}}, True),
        ({"clusterGroupSelector": {"matchLabels": {"stage": "prod"}}}, True),
        ({"clusterGroupSelector": {"matchLabels": {"stage": "dev"}}}, False),
        ({"clusterName": "c1", "clusterGroup": "production"}, True),
        ({"clusterName": "c2", "clusterGroup": "production"}, False),
        ({"clusterName": "c1", "clusterSelector": {"matchLabels": {"env": "dev"}}}, False),
        ({"clusterGroup": "europe", "clusterSelector": {"matchLabels": {"env": "prod"}}}, True),
        ({"clusterGroup": "staging", "clusterSelector": {}}, False),
        # Both group criteria must hold for the same group.
        (
            {
                "clusterGroup": "production",
                "clusterGroupSelector": {"matchLabels": {"stage": "prod"}},
            },
            True,
        ),
        (
            {"clusterGroup": "europe", "clusterGroupSelector": {"matchLabels": {"stage": "prod"}}},
            False,
        ),
        ({"clusterGroup": "europe", "clusterGroupSelector": {"matchLabels": {"geo": "eu"}}}, True),
        (
            {
                "clusterName": "c1",
                "clusterGroup": "production",
                "clusterGroupSelector": {"matchLabels": {"stage": "prod"}},
                "clusterSelector": {"matchLabels": {"region": "eu"}},
            },
            True,
        ),
        (
            {
                "clusterName": "c1",
                "clusterGroup": "production",
                "clusterGroupSelector": {"matchLabels": {"stage": "prod"}},
                "clusterSelector": {"matchLabels": {"region": "us"}},
            },
            False,
        ),
    ],
)
def test_match_target_is_the_and_of_set_criteria(target: dict[str, Any], expected: bool) -> None:
    assert match_target(_target(**target), _cluster(**PROD_EU), GROUPS) is expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ({"clusterGroup": "production"}, False),
        # Fleet checks a cluster in no group against empty group labels, which {} matches.
        ({"clusterGroupSelector": {}}, True),
        ({"clusterGroupSelector": {"matchLabels": {"stage": "prod"}}}, False),
        (
            {
                "clusterGroupSelector": {
                    "matchExpressions": [{"key": "stage", "operator": "DoesNotExist"}]
                }
            },
            True,
        ),
        ({"clusterSelector": {"matchLabels": {"env": "prod"}}}, True),
    ],
)
def test_match_target_for_a_cluster_in_no_group(target: dict[str, Any], expected: bool) -> None:
    assert match_target(_target(**target), _cluster(env="prod"), []) is expected


def test_groups_of_another_namespace_do_not_count() -> None:
    groups = [_group("production", {}, namespace="fleet-local")]
    assert not match_target(_target(clusterGroup="production"), _cluster(), groups)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ({}, False),
        ({"name": "x"}, False),
        ({"clusterName": ""}, False),
        ({"clusterSelector": {}}, True),
        ({"clusterGroupSelector": {}}, True),
        ({"clusterName": "c"}, True),
        ({"clusterGroup": "g"}, True),
    ],
)
def test_has_criteria(target: dict[str, Any], expected: bool) -> None:
    assert has_criteria(_target(**target)) is expected


def test_first_matching_gitrepo_target_wins() -> None:
    targets = [
        _target(name="dev", clusterSelector={"matchLabels": {"env": "dev"}}),
        _target(name="prod", clusterSelector={"matchLabels": {"env": "prod"}}),
        _target(name="eu", clusterGroup="europe"),
    ]
    match = match_gitrepo_targets(targets, _cluster(**PROD_EU), GROUPS)
    assert match is not None
    assert match.name == "prod"


@pytest.mark.parametrize("targets", [None, []])
def test_no_gitrepo_targets_means_the_default_group(targets: list[GitTarget] | None) -> None:
    match = match_gitrepo_targets(targets, _cluster(), GROUPS)
    assert match is not None
    assert (match.name, match.cluster_group) == ("default", "default")
    assert match_gitrepo_targets(targets, _cluster(), []) is None


def test_no_matching_gitrepo_target_is_none() -> None:
    targets = [_target(name="dev", clusterSelector={"matchLabels": {"env": "dev"}})]
    assert match_gitrepo_targets(targets, _cluster(**PROD_EU), GROUPS) is None


def test_explain_no_match_gives_one_reason_per_target() -> None:
    targets = [
        _target(name="by-name", clusterName="other"),
        _target(name="by-group", clusterGroup="staging"),
        _target(name="by-labels", clusterSelector={"matchLabels": {"env": "dev"}}),
        _target(name="empty"),
        _target(clusterGroup="europe", clusterGroupSelector={"matchLabels": {"stage": "prod"}}),
        _target(name="ok", clusterSelector={}),
    ]
    assert explain_no_match(targets, _cluster(**PROD_EU), GROUPS) == [
        "target by-name: clusterName 'other' is not 'c1'",
        "target by-group: clusterGroup 'staging': the cluster is in 'production', 'europe', "
        "'default'",
        "target by-labels: clusterSelector does not match labels {'env': 'prod', 'region': 'eu'}",
        "target empty: sets no criterion, so it matches no cluster",
        "target 4: no group of the cluster satisfies clusterGroup and clusterGroupSelector "
        "together",
        "target ok: matches",
    ]


def test_explain_no_match_for_the_default_target_and_no_group() -> None:
    assert explain_no_match(None, _cluster(), []) == [
        "target default: clusterGroup 'default': the cluster is in no group"
    ]


# ---------------------------------------------------------------------------------------------
# Customizations
# ---------------------------------------------------------------------------------------------

FLEET_YAML = """\
helm:
  values: {replicas: 1, image: {tag: v1}}
targets:
  - clusterSelector: {matchLabels: {region: eu}}
    helm: {values: {zone: europe}}
targetCustomizations:
  - name: prod
    clusterSelector: {matchLabels: {env: prod}}
    helm: {values: {replicas: 3}}
  - clusterGroup: europe
    helm: {values: {image: {tag: v1-eu}}}
  - name: skip-lab
    clusterName: lab
    doNotDeploy: true
"""


def _fleet_yaml(text: str = FLEET_YAML, mode: str | None = None) -> FleetYaml:
    fleet_yaml, _ = load_fleet_yaml(text + (f"targetCustomizationMode: {mode}\n" if mode else ""))
    return fleet_yaml


def test_list_customizations_puts_targets_first_and_names_them_by_position() -> None:
    names = [c.name for c in list_customizations(_fleet_yaml())]
    assert names == ["target000", "prod", "target002", "skip-lab"]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (None, ["target000"]),
        ("FirstMatch", ["target000"]),
        ("AllMatches", ["target000", "prod", "target002"]),
    ],
)
def test_select_customizations_first_or_all(mode: str | None, expected: list[str]) -> None:
    chosen = select_customizations(_fleet_yaml(mode=mode), _cluster(**PROD_EU), GROUPS)
    assert [c.name for c in chosen] == expected


def test_select_customizations_none_match() -> None:
    assert select_customizations(_fleet_yaml(mode="AllMatches"), _cluster(env="dev"), []) == []


def test_resolve_deployment_first_match() -> None:
    match = resolve_deployment(None, _fleet_yaml(), _cluster(**PROD_EU), GROUPS)
    assert match is not None
    assert match.target.name == "default"
    assert match.customizations == ["target000"]
    assert match.options.helm is not None
    assert match.options.helm.values == {"replicas": 1, "image": {"tag": "v1"}, "zone": "europe"}


def test_resolve_deployment_all_matches_merges_in_order() -> None:
    match = resolve_deployment(None, _fleet_yaml(mode="AllMatches"), _cluster(**PROD_EU), GROUPS)
    assert match is not None
    assert match.customizations == ["target000", "prod", "target002"]
    assert match.options.helm is not None
    assert match.options.helm.values == {
        "replicas": 3,
        "image": {"tag": "v1-eu"},
        "zone": "europe",
    }


def test_resolve_deployment_without_customization_keeps_base_options() -> None:
    match = resolve_deployment(None, _fleet_yaml(), _cluster("dev1", env="dev"), GROUPS)
    assert match is not None
    assert match.customizations == []
    assert match.options.to_fleet() == {"helm": {"values": {"replicas": 1, "image": {"tag": "v1"}}}}


@pytest.mark.parametrize("mode", ["FirstMatch", "AllMatches"])
def test_do_not_deploy_skips_the_cluster(mode: str) -> None:
    assert resolve_deployment(None, _fleet_yaml(mode=mode), _cluster("lab"), GROUPS) is None


def test_do_not_deploy_on_a_later_match_is_ignored_in_first_match_mode() -> None:
    text = (
        "targetCustomizations:\n"
        "  - {name: first, clusterSelector: {}}\n"
        "  - {name: skip, clusterSelector: {}, doNotDeploy: true}\n"
    )
    first = resolve_deployment(None, _fleet_yaml(text), _cluster(), GROUPS)
    assert first is not None
    assert first.customizations == ["first"]
    assert resolve_deployment(None, _fleet_yaml(text, "AllMatches"), _cluster(), GROUPS) is None


def test_resolve_deployment_without_matching_target_is_none() -> None:
    targets = [_target(clusterName="elsewhere")]
    assert resolve_deployment(targets, _fleet_yaml(), _cluster(**PROD_EU), GROUPS) is None


def test_override_targets_replace_the_gitrepo_targets() -> None:
    text = "overrideTargets:\n  - {name: only-c9, clusterName: c9}\n"
    gitrepo_targets = [_target(name="all", clusterSelector={})]
    assert resolve_deployment(gitrepo_targets, _fleet_yaml(text), _cluster("c1"), GROUPS) is None
    match = resolve_deployment(gitrepo_targets, _fleet_yaml(text), _cluster("c9"), GROUPS)
    assert match is not None
    assert match.target.name == "only-c9"


def test_customizations_do_not_widen_the_gitrepo_targets() -> None:
    text = "targetCustomizations:\n  - {name: dev, clusterSelector: {matchLabels: {env: dev}}}\n"
    targets = [_target(name="prod", clusterSelector={"matchLabels": {"env": "prod"}})]
    assert resolve_deployment(targets, _fleet_yaml(text), _cluster(env="dev"), GROUPS) is None


def test_resolve_deployment_options_leave_out_bundle_only_fields() -> None:
    text = "name: b\nlabels: {a: b}\npaused: true\ndefaultNamespace: ns\ndependsOn: [{name: x}]\n"
    match = resolve_deployment(None, _fleet_yaml(text), _cluster(), GROUPS)
    assert match is not None
    assert match.options.to_fleet() == {"defaultNamespace": "ns"}


def test_cluster_info_from_cluster() -> None:
    cluster, _ = load_cluster(
        "kind: Cluster\nmetadata: {name: c, namespace: fleet-default, labels: {a: b}, "
        "annotations: {n: m}}\nspec: {templateValues: {x: 1}}\n",
        file="c.yaml",
    )
    info = ClusterInfo.from_cluster(cluster)
    assert info == ClusterInfo(
        name="c",
        namespace="fleet-default",
        labels={"a": "b"},
        annotations={"n": "m"},
        template_values={"x": 1},
    )


# ---------------------------------------------------------------------------------------------
# merge_customization, rule by rule
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["defaultNamespace", "namespace", "serviceAccount"])
@pytest.mark.parametrize(
    ("base", "custom", "expected"),
    [("a", "b", "b"), ("a", "", "a"), ("a", None, "a"), (None, "b", "b"), (None, None, None)],
)
def test_strings_replace_only_when_non_empty(
    name: str, base: str | None, custom: str | None, expected: str | None
) -> None:
    merged = merge_customization(_options(**{name: base}), _custom(**{name: custom}))
    assert merged.model_dump(by_alias=True)[name] == expected


@pytest.mark.parametrize("name", ["repo", "chart", "version", "releaseName"])
def test_helm_strings_replace_only_when_non_empty(name: str) -> None:
    base = _options(helm={name: "base"})
    assert (
        merge_customization(base, _custom(helm={name: "custom"})).to_fleet()["helm"][name]
        == "custom"
    )
    assert merge_customization(base, _custom(helm={name: ""})).to_fleet()["helm"][name] == "base"
    assert merge_customization(base, _custom(helm={})).to_fleet()["helm"][name] == "base"


@pytest.mark.parametrize(
    ("base", "custom", "expected"),
    [
        ({"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
        ({"a": 1}, {"a": 2}, {"a": 2}),
        ({"a": {"x": 1, "y": 2}}, {"a": {"y": 3}}, {"a": {"x": 1, "y": 3}}),
        ({"a": [1, 2, 3]}, {"a": [4]}, {"a": [4]}),
        ({"a": {"x": 1}}, {"a": "flat"}, {"a": "flat"}),
        ({"a": "flat"}, {"a": {"x": 1}}, {"a": {"x": 1}}),
        ({"a": 1}, {"a": None}, {"a": None}),
        (None, {"a": 1}, {"a": 1}),
        ({"a": 1}, {}, {"a": 1}),
    ],
)
def test_helm_values_deep_merge_and_lists_are_replaced(
    base: dict[str, Any] | None, custom: dict[str, Any], expected: dict[str, Any]
) -> None:
    merged = merge_customization(_options(helm={"values": base}), _custom(helm={"values": custom}))
    assert merged.helm is not None
    assert merged.helm.values == expected


def test_customization_without_values_keeps_base_values() -> None:
    merged = merge_customization(
        _options(helm={"values": {"a": 1}}), _custom(helm={"atomic": True})
    )
    assert merged.helm is not None
    assert merged.helm.values == {"a": 1}


def test_customization_without_helm_keeps_base_helm() -> None:
    base = _options(helm={"values": {"a": 1}, "releaseName": "r"})
    assert merge_customization(base, _custom(clusterName="c")).to_fleet() == base.to_fleet()


def _secret(name: str, key: str = "values.yaml", namespace: str | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": name, "key": key}
    if namespace:
        ref["namespace"] = namespace
    return {"secretKeyRef": ref}


def _config_map(name: str, key: str = "values.yaml") -> dict[str, Any]:
    return {"configMapKeyRef": {"name": name, "key": key}}


@pytest.mark.parametrize(
    ("base", "custom", "expected"),
    [
        ([_secret("a")], [_secret("b")], [_secret("a"), _secret("b")]),
        ([_secret("a")], [], [_secret("a")]),
        ([], [_secret("a")], [_secret("a")]),
        # The same reference replaces in place, keeping the base order.
        (
            [_secret("a"), _config_map("c")],
            [_config_map("c"), _secret("d")],
            [_secret("a"), _config_map("c"), _secret("d")],
        ),
        # A ConfigMap and a Secret of the same name are different sources.
        ([_secret("a")], [_config_map("a")], [_secret("a"), _config_map("a")]),
        # The key and namespace are part of the identity.
        ([_secret("a", "k1")], [_secret("a", "k2")], [_secret("a", "k1"), _secret("a", "k2")]),
        (
            [_secret("a")],
            [_secret("a", namespace="x")],
            [_secret("a"), _secret("a", namespace="x")],
        ),
        # Of two custom entries with one key, the first is taken.
        ([], [_secret("a"), _secret("a")], [_secret("a")]),
    ],
)
def test_values_from_merge_by_key(
    base: list[dict[str, Any]], custom: list[dict[str, Any]], expected: list[dict[str, Any]]
) -> None:
    merged = merge_customization(
        _options(helm={"valuesFrom": base}), _custom(helm={"valuesFrom": custom})
    )
    assert merged.to_fleet()["helm"]["valuesFrom"] == expected


def _patch(kind: str, name: str, pointer: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "name": name, "jsonPointers": [pointer]}


@pytest.mark.parametrize(
    ("base", "custom", "expected"),
    [
        (
            [_patch("Service", "a", "/x")],
            [_patch("Service", "a", "/y")],
            [_patch("Service", "a", "/y")],
        ),
        (
            [_patch("Service", "a", "/x")],
            [_patch("ConfigMap", "a", "/y")],
            [_patch("Service", "a", "/x"), _patch("ConfigMap", "a", "/y")],
        ),
        ([], [_patch("Service", "a", "/y")], [_patch("Service", "a", "/y")]),
        ([_patch("Service", "a", "/x")], [], [_patch("Service", "a", "/x")]),
    ],
)
def test_compare_patches_merge_by_key(
    base: list[dict[str, Any]], custom: list[dict[str, Any]], expected: list[dict[str, Any]]
) -> None:
    merged = merge_customization(
        _options(diff={"comparePatches": base}), _custom(diff={"comparePatches": custom})
    )
    assert merged.to_fleet()["diff"]["comparePatches"] == expected


@pytest.mark.parametrize(
    ("base", "custom", "expected"),
    [
        (["a"], ["b"], ["a", "b"]),
        (["a"], ["a"], ["a", "a"]),
        (None, ["b"], ["b"]),
        (["a"], [], ["a"]),
    ],
)
def test_yaml_overlays_append(
    base: list[str] | None, custom: list[str], expected: list[str]
) -> None:
    base_options = _options(yaml={"overlays": base}) if base is not None else _options()
    merged = merge_customization(base_options, _custom(yaml={"overlays": custom}))
    assert merged.yaml is not None
    assert merged.yaml.overlays == expected


HELM_FLAGS = ["force", "atomic", "takeOwnership", "waitForJobs", "disablePreProcess", "disableDNS"]


@pytest.mark.parametrize("flag", HELM_FLAGS)
@pytest.mark.parametrize(
    ("base", "custom", "expected"),
    [(False, False, False), (True, False, True), (False, True, True), (True, True, True)],
)
def test_helm_booleans_are_ored(flag: str, base: bool, custom: bool, expected: bool) -> None:
    merged = merge_customization(_options(helm={flag: base}), _custom(helm={flag: custom}))
    assert merged.model_dump(by_alias=True)["helm"][flag] is expected


@pytest.mark.parametrize(
    ("base", "custom", "expected"),
    [(False, False, False), (True, False, True), (False, True, True)],
)
def test_keep_resources_is_ored(base: bool, custom: bool, expected: bool) -> None:
    merged = merge_customization(_options(keepResources=base), _custom(keepResources=custom))
    assert merged.keep_resources is expected


@pytest.mark.parametrize(
    ("base", "custom", "expected"),
    [(300, 600, 600), (300, None, 300), (300, 0, 300), (300, -1, 0), (None, 60, 60), (None, -5, 0)],
)
def test_timeout_seconds_replaces_or_resets(
    base: int | None, custom: int | None, expected: int | None
) -> None:
    merged = merge_customization(
        _options(helm={"timeoutSeconds": base}), _custom(helm={"timeoutSeconds": custom})
    )
    assert merged.helm is not None
    assert merged.helm.timeout_seconds == expected


@pytest.mark.parametrize(
    ("base", "custom", "expected"),
    [
        ({"enabled": True, "force": True}, {"enabled": False}, {"enabled": False}),
        ({"enabled": True}, None, {"enabled": True}),
        (
            None,
            {"enabled": True, "keepFailHistory": True},
            {"enabled": True, "keepFailHistory": True},
        ),
    ],
)
def test_correct_drift_replaces_whole(
    base: dict[str, Any] | None, custom: dict[str, Any] | None, expected: dict[str, Any]
) -> None:
    merged = merge_customization(_options(correctDrift=base), _custom(correctDrift=custom))
    assert merged.to_fleet()["correctDrift"] == expected


@pytest.mark.parametrize(("base", "custom", "expected"), [(1, 2, 2), (3, 0, 3), (0, 4, 4)])
def test_force_sync_generation_replaces_when_positive(
    base: int, custom: int, expected: int
) -> None:
    merged = merge_customization(
        _options(forceSyncGeneration=base), _custom(forceSyncGeneration=custom)
    )
    assert merged.force_sync_generation == expected


@pytest.mark.parametrize("name", ["namespaceLabels", "namespaceAnnotations"])
@pytest.mark.parametrize(
    ("base", "custom", "expected"),
    [
        ({"a": "1"}, {"b": "2"}, {"a": "1", "b": "2"}),
        ({"a": "1"}, {"a": "2"}, {"a": "2"}),
        (None, {"a": "2"}, {"a": "2"}),
        ({"a": "1"}, {}, {"a": "1"}),
        ({"a": "1"}, None, {"a": "1"}),
    ],
)
def test_namespace_labels_and_annotations_merge_by_key(
    name: str, base: dict[str, str] | None, custom: dict[str, str] | None, expected: dict[str, str]
) -> None:
    merged = merge_customization(_options(**{name: base}), _custom(**{name: custom}))
    assert merged.model_dump(by_alias=True)[name] == expected


@pytest.mark.parametrize(
    ("base", "custom", "expected"),
    [
        ({"dir": "a"}, {"dir": "b"}, {"dir": "b"}),
        ({"dir": "a"}, {}, {"dir": "a"}),
        (None, {"dir": "b"}, {"dir": "b"}),
    ],
)
def test_kustomize_dir_replaces_when_set(
    base: dict[str, str] | None, custom: dict[str, str], expected: dict[str, str]
) -> None:
    merged = merge_customization(_options(kustomize=base), _custom(kustomize=custom))
    assert merged.to_fleet()["kustomize"] == expected


@pytest.mark.parametrize(
    ("base", "custom"),
    [
        ({"helm": {"maxHistory": 2}}, {"helm": {"maxHistory": 9}}),
        ({"helm": {"skipSchemaValidation": False}}, {"helm": {"skipSchemaValidation": True}}),
        ({"ignore": {"conditions": [{"type": "A"}]}}, {"ignore": {"conditions": [{"type": "B"}]}}),
        ({"deleteCRDResources": False}, {"deleteCRDResources": True}),
        ({"deleteNamespace": False}, {"deleteNamespace": True}),
    ],
)
def test_fields_fleet_does_not_merge_stay_from_the_base(
    base: dict[str, Any], custom: dict[str, Any]
) -> None:
    merged = merge_customization(_options(**base), _custom(clusterName="c", **custom))
    assert merged.to_fleet() == _options(**base).to_fleet()


def test_merge_does_not_change_its_inputs() -> None:
    base = _options(
        helm={"values": {"a": {"b": 1}}, "valuesFrom": [_secret("s")]},
        yaml={"overlays": ["x"]},
        namespaceLabels={"l": "1"},
    )
    custom = _custom(
        helm={"values": {"a": {"c": 2}}, "valuesFrom": [_secret("t")]},
        yaml={"overlays": ["y"]},
        namespaceLabels={"m": "2"},
        correctDrift={"enabled": True},
    )
    base_before, custom_before = base.model_dump(), custom.model_dump()
    merged = merge_customization(base, custom)
    assert base.model_dump() == base_before
    assert custom.model_dump() == custom_before
    assert merged.correct_drift is not custom.correct_drift
    assert merged.helm is not None
    assert merged.helm.values == {"a": {"b": 1, "c": 2}}


def test_merged_options_dump_in_fleet_shape() -> None:
    merged = merge_customization(
        _options(defaultNamespace="a"), _custom(helm={"values": {"x": 1}}, keepResources=True)
    )
    assert merged.to_fleet() == {
        "defaultNamespace": "a",
        "helm": {"values": {"x": 1}},
        "keepResources": True,
    }


# --- GitRepo switches -------------------------------------------------------------------------

BUNDLE_OPTIONS = BundleDeploymentOptions(
    namespace="from-bundle",
    service_account="bundle-sa",
    force_sync_generation=7,
    correct_drift=CorrectDrift(enabled=False),
)


@pytest.mark.parametrize(
    ("options", "switches", "expected"),
    [
        # nothing set on the GitRepo: the bundle's own, but forceSyncGeneration is the GitRepo's
        (BUNDLE_OPTIONS, {}, BUNDLE_OPTIONS.model_copy(update={"force_sync_generation": 0})),
        # the GitRepo's targetNamespace, serviceAccount and correctDrift replace the bundle's
        (
            BUNDLE_OPTIONS,
            {
                "target_namespace": "forced",
                "service_account": "repo-sa",
                "correct_drift": {"enabled": True, "force": True},
                "force_sync_generation": 3,
            },
            BUNDLE_OPTIONS.model_copy(
                update={
                    "namespace": "forced",
                    "service_account": "repo-sa",
                    "correct_drift": CorrectDrift(enabled=True, force=True),
                    "force_sync_generation": 3,
                }
            ),
        ),
        # keepResources and deleteNamespace hold when either side sets them
        (
            BundleDeploymentOptions(keep_resources=True),
            {"delete_namespace": True},
            BundleDeploymentOptions(keep_resources=True, delete_namespace=True),
        ),
        (
            BundleDeploymentOptions(delete_namespace=True),
            {"keep_resources": True},
            BundleDeploymentOptions(keep_resources=True, delete_namespace=True),
        ),
        # empty strings on the GitRepo mean "not set"
        (
            BUNDLE_OPTIONS,
            {"target_namespace": "", "service_account": ""},
            BUNDLE_OPTIONS.model_copy(update={"force_sync_generation": 0}),
        ),
    ],
    ids=["unset", "replaced", "keep-or", "delete-or", "empty"],
)
def test_apply_switches(
    options: BundleDeploymentOptions, switches: dict[str, Any], expected: BundleDeploymentOptions
) -> None:
    assert apply_switches(options, GitRepoSwitches(**switches)) == expected


def test_switches_come_from_the_gitrepo_spec() -> None:
    spec = GitRepoSpec.model_validate(
        {
            "repo": "https://example.com/r.git",
            "targets": [{"clusterGroup": "prod"}],
            "targetNamespace": "shop",
            "serviceAccount": "sa",
            "keepResources": True,
            "forceSyncGeneration": 2,
            "correctDrift": {"enabled": True},
        }
    )
    assert GitRepoSwitches.from_spec(spec) == GitRepoSwitches(
        targets=[{"clusterGroup": "prod"}],
        target_namespace="shop",
        service_account="sa",
        keep_resources=True,
        force_sync_generation=2,
        correct_drift={"enabled": True},
    )
