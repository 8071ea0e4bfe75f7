"""Which clusters a bundle deploys to, and the options each gets after targetCustomizations
and the GitRepo's switches."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from flotilla.ids import DEFAULT_NAMESPACE
from flotilla.models import (
    BundleDeploymentOptions,
    BundleTarget,
    Cluster,
    ClusterGroup,
    ClusterMatchCriteria,
    ComparePatch,
    CorrectDrift,
    DiffOptions,
    FleetYaml,
    GitRepoSpec,
    GitTarget,
    HelmOptions,
    KustomizeOptions,
    LabelSelector,
    LabelSelectorRequirement,
    ValuesFrom,
    YamlOptions,
)
from flotilla.values import merge_values

# Fleet's target when a GitRepo names none.
DEFAULT_TARGETS: tuple[GitTarget, ...] = (GitTarget(name="default", cluster_group="default"),)


class ClusterInfo(BaseModel):
    """What targeting and values templating need to know about one cluster."""

    model_config = ConfigDict(frozen=True)

    name: str
    namespace: str = DEFAULT_NAMESPACE
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # Cluster.spec.templateValues, seen by templates as .ClusterValues.
    template_values: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_cluster(cls, cluster: Cluster) -> ClusterInfo:
        """Flatten a Cluster object."""
        return cls(
            name=cluster.metadata.name,
            namespace=cluster.metadata.namespace,
            labels=cluster.metadata.labels or {},
            annotations=cluster.metadata.annotations or {},
            template_values=cluster.spec.template_values or {},
        )


class TargetMatch(BaseModel):
    """The outcome of targeting one cluster: the GitRepo target, customizations and options."""

    target: GitTarget
    customizations: list[str]
    options: BundleDeploymentOptions


def match_selector(selector: LabelSelector | None, labels: Mapping[str, str]) -> bool:
    """Match labels as a Kubernetes label selector: ``{}`` matches all, None matches nothing.

    Callers that treat an absent selector as "no criterion" skip it before calling.
    """
    if selector is None:
        return False
    wanted = selector.match_labels or {}
    if any(labels.get(key) != value for key, value in wanted.items()):
        return False
    return all(_match_requirement(r, labels) for r in selector.match_expressions or [])


def _match_requirement(requirement: LabelSelectorRequirement, labels: Mapping[str, str]) -> bool:
    present = requirement.key in labels
    if requirement.operator == "Exists":
        return present
    if requirement.operator == "DoesNotExist":
        return not present
    inside = present and labels[requirement.key] in (requirement.values or [])
    # NotIn also matches clusters that lack the label, as in Kubernetes.
    return inside if requirement.operator == "In" else not inside


def cluster_groups_for(cluster: ClusterInfo, groups: Sequence[ClusterGroup]) -> list[str]:
    """Name the groups of the cluster's namespace whose selector matches it, in input order."""
    return [g.metadata.name for g in _member_groups(cluster, groups)]


def _member_groups(cluster: ClusterInfo, groups: Sequence[ClusterGroup]) -> list[ClusterGroup]:
    # A group with no selector holds no cluster; ``selector: {}`` holds every cluster.
    return [
        g
        for g in groups
        if g.metadata.namespace == cluster.namespace
        and match_selector(g.spec.selector, cluster.labels)
    ]


def has_criteria(target: ClusterMatchCriteria) -> bool:
    """Tell whether a target sets any criterion; one that sets none matches no cluster."""
    return bool(
        target.cluster_name
        or target.cluster_group
        or target.cluster_selector is not None
        or target.cluster_group_selector is not None
    )


def match_target(
    target: ClusterMatchCriteria, cluster: ClusterInfo, groups: Sequence[ClusterGroup]
) -> bool:
    """Match a cluster against every criterion the target sets (AND).

    Group criteria are checked one member group at a time, so ``clusterGroup`` and
    ``clusterGroupSelector`` must hold for the same group. A cluster in no group is checked
    once with an empty group name and empty group labels, as Fleet does.
    """
    if not has_criteria(target):
        return False
    members = _member_groups(cluster, groups)
    candidates: list[tuple[str, Mapping[str, str]]] = [
        (g.metadata.name, g.metadata.labels or {}) for g in members
    ] or [("", {})]
    return any(
        _match_with_group(target, cluster, group_name, group_labels)
        for group_name, group_labels in candidates
    )


def _match_with_group(
    target: ClusterMatchCriteria,
    cluster: ClusterInfo,
    group_name: str,
    group_labels: Mapping[str, str],
) -> bool:
    if target.cluster_name and target.cluster_name != cluster.name:
        return False
    if target.cluster_group and target.cluster_group != group_name:
        return False
    if target.cluster_group_selector is not None and not match_selector(
        target.cluster_group_selector, group_labels
    ):
        return False
    return target.cluster_selector is None or match_selector(
        target.cluster_selector, cluster.labels
    )


def match_gitrepo_targets(
    targets: Sequence[GitTarget] | None, cluster: ClusterInfo, groups: Sequence[ClusterGroup]
) -> GitTarget | None:
    """Return the first GitRepo target that matches the cluster (the default one when none)."""
    for target in targets or DEFAULT_TARGETS:
        if match_target(target, cluster, groups):
            return target
    return None


def explain_no_match(
    targets: Sequence[GitTarget] | None, cluster: ClusterInfo, groups: Sequence[ClusterGroup]
) -> list[str]:
    """Say, one line per target, why it does not match the cluster (for ``flotilla test``)."""
    members = _member_groups(cluster, groups)
    member_names = [g.metadata.name for g in members]
    reasons: list[str] = []
    for index, target in enumerate(targets or DEFAULT_TARGETS):
        label = f"target {target.name or index}"
        if match_target(target, cluster, groups):
            reasons.append(f"{label}: matches")
        elif not has_criteria(target):
            reasons.append(f"{label}: sets no criterion, so it matches no cluster")
        else:
            reasons.append(f"{label}: {_first_failed_criterion(target, cluster, member_names)}")
    return reasons


def _first_failed_criterion(
    target: GitTarget, cluster: ClusterInfo, member_names: list[str]
) -> str:
    if target.cluster_name and target.cluster_name != cluster.name:
        return f"clusterName {target.cluster_name!r} is not {cluster.name!r}"
    if target.cluster_group and target.cluster_group not in member_names:
        groups = ", ".join(repr(n) for n in member_names) or "no group"
        return f"clusterGroup {target.cluster_group!r}: the cluster is in {groups}"
    if target.cluster_selector is not None and not match_selector(
        target.cluster_selector, cluster.labels
    ):
        return f"clusterSelector does not match labels {dict(sorted(cluster.labels.items()))}"
    return "no group of the cluster satisfies clusterGroup and clusterGroupSelector together"


def list_customizations(fleet_yaml: FleetYaml) -> list[BundleTarget]:
    """Return fleet.yaml's customizations in Fleet's order: ``targets`` then
    ``targetCustomizations``, each unnamed one named ``target<NNN>`` by its position."""
    entries = [*(fleet_yaml.targets or []), *(fleet_yaml.target_customizations or [])]
    return [
        entry if entry.name else entry.model_copy(update={"name": f"target{index:03d}"})
        for index, entry in enumerate(entries)
    ]


def select_customizations(
    fleet_yaml: FleetYaml, cluster: ClusterInfo, groups: Sequence[ClusterGroup]
) -> list[BundleTarget]:
    """Return the customizations that apply: the first match (FirstMatch) or all, in order."""
    matching = [c for c in list_customizations(fleet_yaml) if match_target(c, cluster, groups)]
    if fleet_yaml.target_customization_mode == "AllMatches":
        return matching
    return matching[:1]


def resolve_deployment(
    gitrepo_targets: Sequence[GitTarget] | None,
    fleet_yaml: FleetYaml,
    cluster: ClusterInfo,
    groups: Sequence[ClusterGroup],
) -> TargetMatch | None:
    """Decide whether the bundle deploys to the cluster and with which merged options.

    None when no target matches (``overrideTargets`` replaces the GitRepo's) or when an
    applying customization says ``doNotDeploy``.
    """
    target = match_gitrepo_targets(fleet_yaml.override_targets or gitrepo_targets, cluster, groups)
    if target is None:
        return None
    customizations = select_customizations(fleet_yaml, cluster, groups)
    if any(c.do_not_deploy for c in customizations):
        return None
    options = BundleDeploymentOptions.model_validate(
        fleet_yaml.model_dump(include=set(BundleDeploymentOptions.model_fields), exclude_unset=True)
    )
    for customization in customizations:
        options = merge_customization(options, customization)
    return TargetMatch(
        target=target,
        customizations=[c.name or "" for c in customizations],
        options=options,
    )


def merge_customization(
    base: BundleDeploymentOptions, customization: BundleDeploymentOptions
) -> BundleDeploymentOptions:
    """Merge a customization's options over the base options, field by field as Fleet does.

    Non-empty strings replace; ``helm.values`` deep-merge (lists replaced); ``valuesFrom`` and
    ``comparePatches`` merge by key; ``yaml.overlays`` append; the listed booleans are ORed;
    ``timeoutSeconds`` replaces when positive and resets when negative; ``correctDrift``
    replaces; namespace labels and annotations merge by key. Other fields (for example
    ``helm.maxHistory`` or ``ignore``) are not taken from a customization, as in Fleet.
    """
    update: dict[str, Any] = {}
    for name in ("default_namespace", "namespace", "service_account"):
        value = getattr(customization, name)
        if value:
            update[name] = value
    if customization.helm is not None:
        update["helm"] = _merge_helm(base.helm or HelmOptions(), customization.helm)
    if customization.kustomize is not None:
        kustomize = base.kustomize or KustomizeOptions()
        if customization.kustomize.dir:
            kustomize = kustomize.model_copy(update={"dir": customization.kustomize.dir})
        update["kustomize"] = kustomize
    if customization.diff is not None:
        patches = _merge_by_key(
            (base.diff.compare_patches if base.diff else None) or [],
            customization.diff.compare_patches or [],
            _compare_patch_key,
        )
        update["diff"] = DiffOptions(compare_patches=patches)
    if customization.yaml is not None:
        overlays = [
            *((base.yaml.overlays if base.yaml else None) or []),
            *(customization.yaml.overlays or []),
        ]
        update["yaml"] = YamlOptions(overlays=overlays)
    if customization.force_sync_generation > 0:
        update["force_sync_generation"] = customization.force_sync_generation
    if customization.keep_resources:
        update["keep_resources"] = True
    if customization.correct_drift is not None:
        update["correct_drift"] = customization.correct_drift
    for name in ("namespace_labels", "namespace_annotations"):
        extra = getattr(customization, name)
        if extra:
            update[name] = {**(getattr(base, name) or {}), **extra}
    # Copies, so the result shares no mutable part with either input.
    return base.model_copy(update=copy.deepcopy(update), deep=True)


_ORED_HELM_FLAGS = (
    "force",
    "atomic",
    "take_ownership",
    "disable_pre_process",
    "wait_for_jobs",
    "disable_dns",
)


def _merge_helm(base: HelmOptions, custom: HelmOptions) -> HelmOptions:
    update: dict[str, Any] = {}
    timeout = custom.timeout_seconds or 0
    if timeout > 0:
        update["timeout_seconds"] = timeout
    elif timeout < 0:
        update["timeout_seconds"] = 0
    if custom.values is not None:
        update["values"] = merge_values(base.values, custom.values)
    if custom.values_from:
        update["values_from"] = _merge_by_key(
            base.values_from or [], custom.values_from, _values_from_key
        )
    for name in ("repo", "chart", "version", "release_name"):
        value = getattr(custom, name)
        if value:
            update[name] = value
    for name in _ORED_HELM_FLAGS:
        if getattr(custom, name):
            update[name] = True
    return base.model_copy(update=update, deep=True)


EntryT = TypeVar("EntryT")


def _merge_by_key(
    base: Sequence[EntryT], custom: Sequence[EntryT], key: Callable[[EntryT], str]
) -> list[EntryT]:
    """Replace base entries that share a key with a custom one, append the rest.

    An entry without a key is always appended; of custom entries sharing a key, the first wins.
    """
    result = list(base)
    position = {key(entry): i for i, entry in enumerate(base) if key(entry)}
    seen: set[str] = set()
    for entry in custom:
        entry_key = key(entry)
        if entry_key:
            if entry_key in seen:
                continue
            seen.add(entry_key)
            if entry_key in position:
                result[position[entry_key]] = entry
                continue
        result.append(entry)
    return result


def _values_from_key(entry: ValuesFrom) -> str:
    for kind, ref in (("configmap", entry.config_map_key_ref), ("secret", entry.secret_key_ref)):
        if ref is not None:
            return f"{kind}|{ref.namespace or ''}|{ref.name}|{ref.key or ''}"
    return ""


def _compare_patch_key(patch: ComparePatch) -> str:
    parts = (patch.api_version, patch.kind, patch.namespace, patch.name)
    return "|".join(p or "" for p in parts)


# ---------------------------------------------------------------------------------------------
# GitRepo switches
# ---------------------------------------------------------------------------------------------


class GitRepoSwitches(BaseModel):
    """GitRepo settings every bundle inherits and fleet.yaml cannot turn off.

    Part of each bundle workflow's spec, so its fields are those of running workflows' state.
    """

    targets: list[dict[str, Any]] | None = None
    target_namespace: str | None = None
    service_account: str | None = None
    keep_resources: bool = False
    delete_namespace: bool = False
    force_sync_generation: int = 0
    correct_drift: dict[str, Any] | None = None
    # From the workspace's restrictions (flotilla.restrictions.Resolved), not the GitRepo.
    # Left out of the JSON when unset: the GitRepo compares bundle specs by their JSON, and a
    # workspace without them must compute what older histories did.
    namespace_selector: LabelSelector | None = Field(
        default=None, exclude_if=lambda value: value is None
    )
    allow_namespace_creation: bool = Field(default=False, exclude_if=lambda value: not value)

    @classmethod
    def from_spec(cls, spec: GitRepoSpec) -> GitRepoSwitches:
        return cls(
            targets=[t.to_fleet() for t in spec.targets] if spec.targets is not None else None,
            target_namespace=spec.target_namespace,
            service_account=spec.service_account,
            keep_resources=spec.keep_resources,
            delete_namespace=spec.delete_namespace,
            force_sync_generation=spec.force_sync_generation,
            correct_drift=spec.correct_drift.to_fleet() if spec.correct_drift else None,
        )


def apply_switches(
    options: BundleDeploymentOptions, switches: GitRepoSwitches
) -> BundleDeploymentOptions:
    """Fold the GitRepo's switches into one cluster's options, as Fleet does.

    keepResources and deleteNamespace hold when either side sets them; targetNamespace,
    serviceAccount and correctDrift, when the GitRepo sets them, replace the bundle's own;
    forceSyncGeneration is always the GitRepo's.
    """
    update: dict[str, Any] = {
        "keep_resources": options.keep_resources or switches.keep_resources,
        "delete_namespace": options.delete_namespace or switches.delete_namespace,
        "force_sync_generation": switches.force_sync_generation,
    }
    if switches.target_namespace:
        update["namespace"] = switches.target_namespace
    if switches.service_account:
        update["service_account"] = switches.service_account
    if switches.correct_drift is not None:
        update["correct_drift"] = CorrectDrift.model_validate(switches.correct_drift)
    return options.model_copy(update=update)
