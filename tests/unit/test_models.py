"""Fleet YAML models: existing Fleet files load unchanged, round-trip, and bad input is one line."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from flotilla.errors import SpecError
from flotilla.models import (
    Cluster,
    ClusterGroup,
    FleetBundle,
    FleetYaml,
    GitRepo,
    LabelSelector,
    load_cluster,
    load_cluster_group,
    load_fleet_objects,
    load_fleet_yaml,
    load_gitrepo,
    parse_spec,
)

FLEET_YAML_HELM_MULTI_CLUSTER = """\
defaultNamespace: shop
namespace: shop
namespaceLabels:
  team: payments
namespaceAnnotations:
  owner: payments@example.com
labels:
  tier: frontend
helm:
  chart: ./charts/storefront
  releaseName: storefront
  timeoutSeconds: 600
  maxHistory: 5
  atomic: true
  waitForJobs: true
  values:
    replicas: 1
    image:
      repository: registry.example.com/storefront
      tag: v1.4.2
    region: global.fleet.clusterLabels.region
    ingress:
      host: ${ .ClusterName }.shop.example.com
  valuesFiles:
    - values-common.yaml
  valuesFrom:
    - secretKeyRef:
        name: storefront-secrets
        namespace: shop
        key: values.yaml
    - configMapKeyRef:
        name: storefront-config
        key: values.yaml
rolloutStrategy:
  maxUnavailable: 10%
  maxUnavailablePartitions: 1
  autoPartitionSize: 25%
  partitions:
    - name: canary
      maxUnavailable: 1
      clusterSelector:
        matchLabels:
          canary: "true"
    - name: rest
      clusterGroup: production
dependsOn:
  - name: shop-database
  - selector:
      matchLabels:
        app: cert-manager
    acceptedStates: [Ready, Modified]
targetCustomizationMode: AllMatches
targetCustomizations:
  - name: dev
    clusterSelector:
      matchLabels:
        env: dev
    helm:
      values:
        replicas: 1
        debug: true
  - name: prod
    clusterSelector:
      matchExpressions:
        - key: env
          operator: In
          values: [prod, production]
        - key: decommissioned
          operator: DoesNotExist
    helm:
      values:
        replicas: 3
    yaml:
      overlays: [prod]
  - name: lab
    clusterGroupSelector: {}
    clusterName: lab-1
    doNotDeploy: true
diff:
  comparePatches:
    - apiVersion: apps/v1
      kind: Deployment
      name: storefront
      namespace: shop
      operations:
        - op: remove
          path: /spec/replicas
      jsonPointers:
        - /spec/template/spec/containers/0/resources
ignore:
  conditions:
    - type: Progressing
      status: "False"
correctDrift:
  enabled: true
  force: false
keepResources: true
deleteCRDResources: false
paused: false
"""

FLEET_YAML_KUSTOMIZE = """\
kustomize:
  dir: overlays/staging
targetCustomizations:
  - name: prod
    clusterGroup: production
    kustomize:
      dir: overlays/prod
overrideTargets:
  - clusterSelector:
      matchLabels:
        env: staging
imageScans:
  - tagName: app-tag
    image: registry.example.com/app
    policy:
      semver:
        range: ">=1.0.0"
    interval: 5m
"""

FLEET_YAML_RAW_OVERLAYS = """\
defaultNamespace: monitoring
yaml:
  overlays:
    - base-tweaks
targets:
  - name: edge
    clusterSelector:
      matchLabels:
        location: edge
    yaml:
      overlays: [edge]
"""

GITREPO = """\
apiVersion: fleet.cattle.io/v1alpha1
kind: GitRepo
metadata:
  name: storefront
  namespace: fleet-default
  labels:
    team: payments
spec:
  repo: https://git.example.com/payments/storefront.git
  branch: release-1.4
  paths:
    - deploy/storefront
    - deploy/addons/*
  pollingInterval: 1m30s
  clientSecretName: git-creds
  helmSecretName: helm-creds
  helmRepoURLRegex: ^https://charts\\.example\\.com/.*
  insecureSkipTLSVerify: false
  targetNamespace: shop
  serviceAccount: deployer
  keepResources: true
  correctDrift:
    enabled: true
    keepFailHistory: true
  forceSyncGeneration: 2
  imageScanInterval: 5m
  imageScanCommit:
    authorName: flotilla
    authorEmail: flotilla@example.com
    messageTemplate: "bump {{ .Image }}"
  targets:
    - name: prod
      clusterSelector:
        matchLabels:
          env: prod
    - name: staging
      clusterGroup: staging
"""

CLUSTER = """\
apiVersion: fleet.cattle.io/v1alpha1
kind: Cluster
metadata:
  name: eu-prod-1
  namespace: fleet-default
  labels:
    env: prod
    region: eu-west
  annotations:
    owner: ops
spec:
  kubeConfigSecret: eu-prod-1-kubeconfig
  agentNamespace: cattle-fleet-system
  clientID: 7d1c
  templateValues:
    ingressClass: nginx
    replicas: 3
"""

CLUSTER_GROUP = """\
apiVersion: fleet.cattle.io/v1alpha1
kind: ClusterGroup
metadata:
  name: production
  namespace: fleet-default
  labels:
    stage: prod
spec:
  selector:
    matchLabels:
      env: prod
"""

BUNDLE = """\
apiVersion: fleet.cattle.io/v1alpha1
kind: Bundle
metadata:
  name: storefront-deploy-storefront
  namespace: fleet-default
  labels:
    fleet.cattle.io/repo-name: storefront
spec:
  defaultNamespace: shop
  helm:
    releaseName: storefront
  resources:
    - name: deployment.yaml
      content: "apiVersion: apps/v1\\nkind: Deployment\\n"
    - name: chart.tgz
      content: H4sIAAAAAAAA
      encoding: base64+gz
  targets:
    - name: prod
      clusterGroup: production
      helm:
        values:
          replicas: 3
  targetRestrictions:
    - name: prod
      clusterGroup: production
  dependsOn:
    - name: database
  paused: true
"""


def _data(text: str) -> Any:
    return yaml.safe_load(text)


# ---------------------------------------------------------------------------------------------
# Round trips of realistic files
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", [FLEET_YAML_HELM_MULTI_CLUSTER, FLEET_YAML_KUSTOMIZE, FLEET_YAML_RAW_OVERLAYS, ""]
)
def test_fleet_yaml_round_trips_without_warnings(text: str) -> None:
    fleet_yaml, warnings = load_fleet_yaml(text)
    assert warnings == []
    assert fleet_yaml.to_fleet() == (_data(text) or {})


@pytest.mark.parametrize(
    ("model", "text"),
    [
        (GitRepo, GITREPO),
        (Cluster, CLUSTER),
        (ClusterGroup, CLUSTER_GROUP),
        (FleetBundle, BUNDLE),
    ],
)
def test_objects_round_trip_without_warnings(model: type[Any], text: str) -> None:
    parsed, warnings = parse_spec(model, _data(text), file="obj.yaml")
    assert warnings == []
    assert parsed.to_fleet() == _data(text)


def test_round_trip_dump_is_yaml_fleet_can_read() -> None:
    fleet_yaml, _ = load_fleet_yaml(FLEET_YAML_HELM_MULTI_CLUSTER)
    again, warnings = load_fleet_yaml(yaml.safe_dump(fleet_yaml.to_fleet()))
    assert warnings == []
    assert again == fleet_yaml


def test_objects_built_in_python_dump_api_version_and_kind_first() -> None:
    bundle = FleetBundle.model_validate({"metadata": {"name": "b"}})
    assert list(bundle.to_fleet())[:2] == ["apiVersion", "kind"]
    assert bundle.to_fleet()["kind"] == "Bundle"
    assert bundle.to_fleet()["apiVersion"] == "fleet.cattle.io/v1alpha1"


def test_fleet_yaml_fields_are_reachable_by_python_name() -> None:
    fleet_yaml, _ = load_fleet_yaml(FLEET_YAML_HELM_MULTI_CLUSTER)
    assert fleet_yaml.helm is not None
    assert fleet_yaml.helm.release_name == "storefront"
    assert fleet_yaml.helm.values_from is not None
    assert fleet_yaml.helm.values_from[0].secret_key_ref is not None
    assert fleet_yaml.helm.values_from[0].secret_key_ref.name == "storefront-secrets"
    assert fleet_yaml.rollout_strategy is not None
    assert fleet_yaml.rollout_strategy.max_unavailable == "10%"
    assert fleet_yaml.rollout_strategy.partitions is not None
    assert fleet_yaml.rollout_strategy.partitions[0].max_unavailable == 1
    assert fleet_yaml.depends_on is not None
    assert fleet_yaml.depends_on[1].accepted_states == ["Ready", "Modified"]
    assert fleet_yaml.target_customization_mode == "AllMatches"
    assert fleet_yaml.target_customizations is not None
    assert fleet_yaml.target_customizations[2].do_not_deploy is True
    assert fleet_yaml.delete_crd_resources is False
    assert fleet_yaml.namespace == "shop"


def test_models_accept_python_names_too() -> None:
    fleet_yaml = FleetYaml.model_validate({"default_namespace": "x", "helm": {"release_name": "r"}})
    assert fleet_yaml.to_fleet() == {"defaultNamespace": "x", "helm": {"releaseName": "r"}}


# ---------------------------------------------------------------------------------------------
# Defaults
# ---------------------------------------------------------------------------------------------


def _gitrepo(spec: str = "repo: https://git.example.com/r.git", meta: str = "name: r") -> str:
    head = "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\n"
    return f"{head}metadata: {{{meta}}}\nspec: {{{spec}}}\n"


def test_gitrepo_defaults() -> None:
    gitrepo, _ = load_gitrepo(_gitrepo(), file="g.yaml")
    assert gitrepo.metadata.namespace == "fleet-local"
    assert gitrepo.spec.branch == "master"
    assert gitrepo.spec.paths == ["."]
    assert gitrepo.spec.polling_interval == "15s"
    assert gitrepo.spec.polling_interval_seconds == 15.0
    assert gitrepo.spec.targets is None
    assert gitrepo.spec.paused is False
    # Defaults are not written back: the dump stays the user's file.
    assert "branch" not in gitrepo.to_fleet()["spec"]


@pytest.mark.parametrize("paths", ["[]", "null"])
def test_gitrepo_empty_paths_mean_the_root(paths: str) -> None:
    gitrepo, _ = load_gitrepo(_gitrepo(f"repo: x, paths: {paths}"), file="g.yaml")
    assert gitrepo.spec.paths == ["."]


@pytest.mark.parametrize(
    ("interval", "seconds"),
    [("15s", 15.0), ("1m", 60.0), ("1h30m", 5400.0), ("500ms", 0.5), ("2m3.5s", 123.5), (30, 30.0)],
)
def test_polling_interval_is_parsed_to_seconds(interval: object, seconds: float) -> None:
    gitrepo, _ = load_gitrepo(_gitrepo(f"repo: x, pollingInterval: {interval}"), file="g.yaml")
    assert gitrepo.spec.polling_interval_seconds == seconds


def test_cluster_and_group_specs_default_to_empty() -> None:
    cluster, _ = load_cluster("kind: Cluster\nmetadata: {name: c}\n", file="c.yaml")
    assert cluster.spec.paused is False
    assert cluster.metadata.namespace == "fleet-local"
    group, _ = load_cluster_group("kind: ClusterGroup\nmetadata: {name: g}\n", file="g.yaml")
    assert group.spec.selector is None


def test_empty_selector_and_null_selector_stay_distinct() -> None:
    fleet_yaml, _ = load_fleet_yaml(
        "targetCustomizations:\n"
        "  - {name: all, clusterSelector: {}}\n"
        "  - {name: none, clusterSelector: null}\n"
    )
    assert fleet_yaml.target_customizations is not None
    first, second = fleet_yaml.target_customizations
    assert first.cluster_selector == LabelSelector()
    assert second.cluster_selector is None
    assert fleet_yaml.to_fleet()["targetCustomizations"][0]["clusterSelector"] == {}


# ---------------------------------------------------------------------------------------------
# Invalid values: one line naming file, field path and value
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "helm: {releaseName: Foo_}",
            "fleet.yaml: helm.releaseName: 'Foo_' is not a valid DNS-1123 name",
        ),
        (
            "helm: {releaseName: " + "a" * 54 + "}",
            "fleet.yaml: helm.releaseName: '" + "a" * 54 + "' is longer than 53 characters",
        ),
        (
            "helm: {timeoutSeconds: soon}",
            "fleet.yaml: helm.timeoutSeconds: Input should be a valid integer",
        ),
        ("helm: {atomic: maybe}", "fleet.yaml: helm.atomic: Input should be a valid boolean"),
        ("helm: {values: [1, 2]}", "fleet.yaml: helm.values: Input should be a valid dictionary"),
        (
            "helm: {valuesFiles: a.yaml}",
            "fleet.yaml: helm.valuesFiles: Input should be a valid list",
        ),
        (
            "helm: {valuesFrom: [{}]}",
            "fleet.yaml: helm.valuesFrom[0]: needs exactly one of configMapKeyRef or secretKeyRef",
        ),
        (
            "helm: {valuesFrom: [{configMapKeyRef: {name: a}, secretKeyRef: {name: b}}]}",
            "fleet.yaml: helm.valuesFrom[0]: needs exactly one of",
        ),
        (
            "helm: {valuesFrom: [{secretKeyRef: {key: k}}]}",
            "fleet.yaml: helm.valuesFrom[0].secretKeyRef.name: required field is missing",
        ),
        (
            "targetCustomizationMode: firstMatch",
            "fleet.yaml: targetCustomizationMode: Input should be 'FirstMatch' or 'AllMatches'",
        ),
        ("labels: {team: [a]}", "fleet.yaml: labels.team: Input should be a valid string"),
        ("dependsOn: [{}]", "fleet.yaml: dependsOn[0]: needs a 'name' or a 'selector'"),
        (
            "dependsOn: [{name: db, acceptedStates: [Healthy]}]",
            "fleet.yaml: dependsOn[0].acceptedStates[0]: Input should be 'Ready'",
        ),
        ("paused: yes please", "fleet.yaml: paused: Input should be a valid boolean"),
        (
            "targetCustomizations: [{name: x, clusterSelector: {matchLabels: [env]}}]",
            "fleet.yaml: targetCustomizations[0].clusterSelector.matchLabels: Input should be",
        ),
        ("yaml: {overlays: prod}", "fleet.yaml: yaml.overlays: Input should be a valid list"),
        ("ignore: {conditions: [{type: [x]}]}", "fleet.yaml: ignore.conditions[0].type: Input"),
    ],
)
def test_invalid_fleet_yaml_is_one_line(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_fleet_yaml(text)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "value", ["0", "10", "-1", "10.5%", "%", "ten", -1, True, 1.5, [1], "10 %"]
)
def test_max_unavailable_refuses_non_int_or_percent(value: object) -> None:
    data = {"rolloutStrategy": {"maxUnavailable": value}}
    with pytest.raises(SpecError) as caught:
        parse_spec(FleetYaml, data, file="fleet.yaml")
    assert str(caught.value).startswith("fleet.yaml: rolloutStrategy.maxUnavailable: ")
    assert "is not a non-negative integer or a percentage such as '25%'" in str(caught.value)


@pytest.mark.parametrize("value", [0, 1, 25, "0%", "10%", "100%", "150%"])
def test_max_unavailable_accepts_int_or_percent(value: object) -> None:
    fields = ("maxUnavailable", "maxUnavailablePartitions", "autoPartitionSize")
    for name in fields:
        parsed, _ = parse_spec(FleetYaml, {"rolloutStrategy": {name: value}}, file="f")
        assert parsed.to_fleet()["rolloutStrategy"][name] == value


def test_partition_max_unavailable_is_validated_too() -> None:
    with pytest.raises(SpecError, match=r"rolloutStrategy\.partitions\[1\]\.maxUnavailable: '5'"):
        load_fleet_yaml(
            "rolloutStrategy: {partitions: [{name: a}, {name: b, maxUnavailable: '5'}]}"
        )


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (
            "{key: env, operator: in, values: [a]}",
            "'in' is not one of In, NotIn, Exists, DoesNotExist; did you mean 'In'?",
        ),
        ("{key: env, operator: Equals, values: [a]}", "'Equals' is not one of In, NotIn"),
        ("{key: env, operator: In}", "operator In needs a non-empty 'values' list"),
        (
            "{key: env, operator: NotIn, values: []}",
            "operator NotIn needs a non-empty 'values' list",
        ),
        (
            "{key: env, operator: Exists, values: [a]}",
            "operator Exists takes no 'values' (got ['a'])",
        ),
        ("{key: env, operator: DoesNotExist, values: [a]}", "operator DoesNotExist takes no"),
        ("{operator: Exists}", "key: required field is missing"),
    ],
)
def test_selector_expressions_are_validated(expression: str, message: str) -> None:
    selector = f"{{matchExpressions: [{expression}]}}"
    text = f"targetCustomizations: [{{name: x, clusterSelector: {selector}}}]"
    with pytest.raises(SpecError) as caught:
        load_fleet_yaml(text)
    assert str(caught.value).startswith(
        "fleet.yaml: targetCustomizations[0].clusterSelector.matchExpressions[0]"
    )
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "expression",
    [
        "{key: env, operator: In, values: [a, b]}",
        "{key: env, operator: NotIn, values: [a]}",
        "{key: env, operator: Exists}",
        "{key: env, operator: DoesNotExist, values: []}",
    ],
)
def test_valid_selector_expressions_load(expression: str) -> None:
    load_fleet_yaml(f"targets: [{{clusterSelector: {{matchExpressions: [{expression}]}}}}]")


@pytest.mark.parametrize(
    ("spec", "meta", "message"),
    [
        ("repo: ''", "name: r", "g.yaml: spec.repo: String should have at least 1 character"),
        ("branch: main", "name: r", "g.yaml: spec.repo: required field is missing"),
        (
            "repo: x, pollingInterval: '15'",
            "name: r",
            "g.yaml: spec.pollingInterval: a duration needs a unit",
        ),
        (
            "repo: x, pollingInterval: soon",
            "name: r",
            "g.yaml: spec.pollingInterval: is not a duration",
        ),
        (
            "repo: x, helmRepoURLRegex: '(['",
            "name: r",
            "g.yaml: spec.helmRepoURLRegex: '([' is not a valid regular expression",
        ),
        (
            "repo: x, caBundle: 'not base64!'",
            "name: r",
            "g.yaml: spec.caBundle: value is not base64",
        ),
        (
            "repo: x, targets: [{clusterSelector: {matchLabels: {a: [b]}}}]",
            "name: r",
            "g.yaml: spec.targets[0].clusterSelector.matchLabels.a: Input should be a valid string",
        ),
        (
            "repo: x",
            "name: My_Repo",
            "g.yaml: metadata.name: 'My_Repo' is not a valid Kubernetes object name",
        ),
        (
            "repo: x",
            "name: r, namespace: Fleet.Local",
            "g.yaml: metadata.namespace: 'Fleet.Local' is not a valid namespace name",
        ),
        ("repo: x", "namespace: fleet-local", "g.yaml: metadata.name: required field is missing"),
    ],
)
def test_invalid_gitrepo_is_one_line(spec: str, meta: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_gitrepo(_gitrepo(spec, meta), file="g.yaml")
    assert str(caught.value).startswith(message)


def test_ca_bundle_error_never_echoes_the_bundle() -> None:
    with pytest.raises(SpecError) as caught:
        load_gitrepo(_gitrepo("repo: x, caBundle: 'SECRETISH!!'"), file="g.yaml")
    assert "SECRETISH" not in str(caught.value)


@pytest.mark.parametrize(
    ("loader", "text", "message"),
    [
        (
            load_gitrepo,
            "kind: Cluster\nmetadata: {name: c}\n",
            "f.yaml: kind: expected a GitRepo, got 'Cluster'",
        ),
        (load_cluster, "metadata: {name: c}\n", "f.yaml: kind: expected a Cluster, got None"),
        (load_cluster_group, "- a\n", "f.yaml: top level must be a mapping, got a list"),
        (
            load_gitrepo,
            "apiVersion: fleet.cattle.io/v1\nkind: GitRepo\nmetadata: {name: r}\nspec: {repo: x}\n",
            "f.yaml: apiVersion: Input should be 'fleet.cattle.io/v1alpha1'",
        ),
    ],
)
def test_single_object_loaders_check_kind_and_shape(loader: Any, text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        loader(text, file="f.yaml")
    assert str(caught.value).startswith(message)


# ---------------------------------------------------------------------------------------------
# Unknown fields: warnings, not failures
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "warning"),
    [
        (
            "helm: {valuse: {a: 1}}",
            "fleet.yaml: helm.valuse: unknown field, ignored; did you mean 'values'?",
        ),
        (
            "targetCustomizations: [{name: a, clusterSelecter: {}}]",
            "fleet.yaml: targetCustomizations[0].clusterSelecter: unknown field, ignored; did you"
            " mean 'clusterSelector'?",
        ),
        (
            "defaultnamespace: x",
            "fleet.yaml: defaultnamespace: unknown field, ignored; did you mean"
            " 'defaultNamespace'?",
        ),
        (
            "helm: {releasename: r}",
            "fleet.yaml: helm.releasename: unknown field, ignored; did you mean 'releaseName'?",
        ),
        (
            "rolloutStrategy: {partitions: [{name: a, clusterGroups: x}]}",
            "fleet.yaml: rolloutStrategy.partitions[0].clusterGroups: unknown field, ignored; did"
            " you mean 'clusterGroup'?",
        ),
        (
            "dependsOn: [{name: a, acceptedState: [Ready]}]",
            "fleet.yaml: dependsOn[0].acceptedState: unknown field, ignored; did you mean"
            " 'acceptedStates'?",
        ),
        ("frobnicate: true", "fleet.yaml: frobnicate: unknown field, ignored"),
        (
            "targets: [{clusterSelector: {matchExpressions: [{key: a, operator: Exists, valus:"
            " []}]}}]",
            "fleet.yaml: targets[0].clusterSelector.matchExpressions[0].valus: unknown field,"
            " ignored; did you mean 'values'?",
        ),
    ],
)
def test_unknown_fields_warn_with_did_you_mean(text: str, warning: str) -> None:
    _, warnings = load_fleet_yaml(text)
    assert warnings == [warning]


def test_unknown_field_without_near_miss_has_no_hint() -> None:
    _, warnings = load_fleet_yaml("frobnicate: true")
    assert "did you mean" not in warnings[0]


def test_helm_values_content_is_never_checked_for_unknown_fields() -> None:
    _, warnings = load_fleet_yaml("helm: {values: {releaseNam: x, anything: {goes: here}}}")
    assert warnings == []


def test_unknown_fields_do_not_reach_the_dump() -> None:
    fleet_yaml, _ = load_fleet_yaml("frobnicate: true\ndefaultNamespace: x\n")
    assert fleet_yaml.to_fleet() == {"defaultNamespace": "x"}


def test_kubernetes_bookkeeping_fields_are_tolerated() -> None:
    text = (
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: Cluster\n"
        "metadata: {name: c, uid: 1, resourceVersion: '2', generation: 3, "
        "creationTimestamp: x, finalizers: [f], managedFields: []}\n"
        "status: {summary: {}}\n"
    )
    _, warnings = load_cluster(text, file="c.yaml")
    assert warnings == []


def test_unknown_object_fields_warn_with_their_path() -> None:
    _, warnings = load_gitrepo(
        _gitrepo("repo: x, brnach: main, pollingIntervall: 1m"), file="g.yaml"
    )
    assert warnings == [
        "g.yaml: spec.brnach: unknown field, ignored; did you mean 'branch'?",
        "g.yaml: spec.pollingIntervall: unknown field, ignored; did you mean 'pollingInterval'?",
    ]


@pytest.mark.parametrize(
    ("customization", "path"),
    [
        ("deleteCRDResources: true", "deleteCRDResources"),
        ("deleteNamespace: true", "deleteNamespace"),
        ("ignore: {conditions: []}", "ignore"),
        ("helm: {maxHistory: 3}", "helm.maxHistory"),
        ("helm: {skipSchemaValidation: true}", "helm.skipSchemaValidation"),
        ("helm: {disableDependencyUpdate: true}", "helm.disableDependencyUpdate"),
    ],
)
def test_customization_fields_fleet_ignores_are_warned(customization: str, path: str) -> None:
    _, warnings = load_fleet_yaml(
        f"targetCustomizations: [{{name: a, clusterName: c, {customization}}}]"
    )
    assert warnings == [
        f"fleet.yaml: targetCustomizations[0].{path}: has no effect in a customization, "
        "ignored (set it at the top level of fleet.yaml)"
    ]


def test_ignored_customization_fields_in_targets_name_targets() -> None:
    _, warnings = load_fleet_yaml("targets: [{clusterName: c, helm: {maxHistory: 1}}]")
    assert warnings[0].startswith("fleet.yaml: targets[0].helm.maxHistory: has no effect")


def test_customizable_fields_do_not_warn() -> None:
    _, warnings = load_fleet_yaml(
        "targetCustomizations: [{name: a, clusterName: c, keepResources: true, "
        "helm: {atomic: true, values: {a: 1}, timeoutSeconds: -1}}]"
    )
    assert warnings == []


# ---------------------------------------------------------------------------------------------
# Multi-document files
# ---------------------------------------------------------------------------------------------


def test_load_fleet_objects_dispatches_on_kind() -> None:
    text = "\n---\n".join([GITREPO, CLUSTER, CLUSTER_GROUP]) + "\n---\n"
    objects, warnings = load_fleet_objects(text, file="fleet.objs.yaml")
    assert [type(o) for o in objects] == [GitRepo, Cluster, ClusterGroup]
    # The GitRepo sets Helm credentials and the regex that lets them be sent: nothing to say.
    assert warnings == []


@pytest.mark.parametrize("field", ["helmSecretName", "helmSecretNameForPaths"])
def test_helm_credentials_without_a_url_regex_are_said_to_go_nowhere(field: str) -> None:
    _, warnings = load_fleet_objects(_gitrepo(f"repo: x, {field}: creds"), file="g.yaml")
    assert warnings == [
        f"g.yaml: spec.{field}: spec.helmRepoURLRegex is empty, so these Helm credentials are "
        "sent to no repository; set it to the repository URLs they are for"
    ]


def test_load_fleet_objects_names_the_document_in_errors_and_warnings() -> None:
    text = CLUSTER + "---\n" + _gitrepo("repo: x, brnach: b") + "---\n" + _gitrepo("repo: ''")
    with pytest.raises(SpecError, match=r"^f\.yaml \(document 3\): spec\.repo: String should"):
        load_fleet_objects(text, file="f.yaml")
    _, warnings = load_fleet_objects(
        CLUSTER + "---\n" + _gitrepo("repo: x, brnach: b"), file="f.yaml"
    )
    assert warnings == [
        "f.yaml (document 2): spec.brnach: unknown field, ignored; did you mean 'branch'?"
    ]


def test_single_document_errors_do_not_mention_documents() -> None:
    with pytest.raises(SpecError, match=r"^f\.yaml: spec\.repo: "):
        load_fleet_objects(_gitrepo("repo: ''"), file="f.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "apiVersion: fleet.cattle.io/v1alpha1\nkind: ClusterGrop\nmetadata: {name: g}\n",
            "f.yaml: kind: 'ClusterGrop' is not a kind flotilla applies (use one of GitRepo,"
            " HelmOp, Cluster, ClusterGroup, Policy, GitRepoRestriction, Schedule); did you mean"
            " 'ClusterGroup'?",
        ),
        (
            "apiVersion: fleet.cattle.io/v1alpha1\nkind: Deployment\nmetadata: {name: g}\n",
            "f.yaml: kind: 'Deployment' is not a kind flotilla applies (use one of GitRepo,"
            " HelmOp, Cluster, ClusterGroup, Policy, GitRepoRestriction, Schedule)",
        ),
        (
            "apiVersion: fleet.cattle.io/v1alpha1\nmetadata: {name: g}\n",
            "f.yaml: kind: None is not a kind flotilla applies",
        ),
        (
            "apiVersion: apps/v1\nkind: GitRepo\n",
            "f.yaml: apiVersion: 'apps/v1' is not supported; use 'fleet.cattle.io/v1alpha1'",
        ),
        ("- a\n", "f.yaml: top level must be a mapping, got a list"),
    ],
)
def test_load_fleet_objects_refuses_unknown_kinds(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_fleet_objects(text, file="f.yaml")
    assert str(caught.value) == message or str(caught.value).startswith(message)


def test_load_fleet_objects_of_an_empty_file_is_empty() -> None:
    assert load_fleet_objects("---\n", file="f.yaml") == ([], [])


@pytest.mark.parametrize("name", ["", "storefront", "a.b-c", "a" * 53])
def test_release_name_accepts_empty_and_dns_names(name: str) -> None:
    fleet_yaml, _ = load_fleet_yaml(f"helm: {{releaseName: '{name}'}}")
    assert fleet_yaml.helm is not None
    assert fleet_yaml.helm.release_name == name
