"""Pydantic models of Fleet's YAML (GitRepo, Cluster, ClusterGroup, fleet.yaml, Bundle), loaders."""

from __future__ import annotations

import base64
import binascii
import difflib
import re
import types
import typing
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from flotilla.durations import parse_duration
from flotilla.errors import SpecError, short_repr
from flotilla.ids import DEFAULT_NAMESPACE
from flotilla.kubenames import is_dns1123
from flotilla.windows import Window, check_window
from flotilla.yamlload import (
    load_yaml_documents,
    load_yaml_mapping,
    require_mapping,
    spec_error_from_validation,
)

ApiVersion = Literal["fleet.cattle.io/v1alpha1"]
API_VERSION: ApiVersion = "fleet.cattle.io/v1alpha1"
DEFAULT_BRANCH = "master"
DEFAULT_POLLING_INTERVAL = "15s"
# Helm stores the release name in a Secret label; Fleet and Helm both cap it at 53.
MAX_RELEASE_NAME_LEN = 53

_PERCENT = re.compile(r"\d+%")


class FleetModel(BaseModel):
    """Base of every Fleet shape: camelCase on the wire, snake_case in Python, unknowns ignored.

    Unknown keys are dropped here and reported as warnings by ``parse_spec`` so that a file
    written for a newer Fleet still loads.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
    )

    def to_fleet(self) -> dict[str, Any]:
        """Dump in Fleet's shape: camelCase keys, only the fields that were set."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


# ---------------------------------------------------------------------------------------------
# Scalar validators
# ---------------------------------------------------------------------------------------------


def _check_duration(value: Any) -> Any:
    try:
        parse_duration(value, field="")
    except SpecError as err:
        raise ValueError(err.problem) from None
    return value


def _check_int_or_percent(value: Any) -> int | str:
    # Kubernetes' IntOrString: a non-negative integer or "N%"; a bare numeric string is an
    # error there too, so it is refused here rather than guessed.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _PERCENT.fullmatch(value):
        return value
    raise ValueError(
        f"{short_repr(value)} is not a non-negative integer or a percentage such as '25%'"
    )


def _check_release_name(value: str) -> str:
    if not value:
        # Empty means "not set" in Fleet: the bundle name is used.
        return value
    if len(value) > MAX_RELEASE_NAME_LEN:
        raise ValueError(f"{short_repr(value)} is longer than {MAX_RELEASE_NAME_LEN} characters")
    if not is_dns1123(value, subdomain=True):
        raise ValueError(f"{short_repr(value)} is not a valid DNS-1123 name")
    return value


def _check_object_name(value: str) -> str:
    if not is_dns1123(value, subdomain=True):
        raise ValueError(f"{short_repr(value)} is not a valid Kubernetes object name (DNS-1123)")
    return value


def _check_namespace(value: str) -> str:
    if not is_dns1123(value):
        raise ValueError(f"{short_repr(value)} is not a valid namespace name (DNS-1123 label)")
    return value


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as err:
        raise ValueError(f"{short_repr(value)} is not a valid regular expression: {err}") from None
    return value


def _check_base64(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError("value is not base64 (encode the PEM bundle with base64)") from None
    return value


IntOrPercent = Annotated[int | str, BeforeValidator(_check_int_or_percent)]
# A Go duration string ("15s", "1m30s"); a bare number is read as seconds.
Duration = Annotated[str | int | float, BeforeValidator(_check_duration)]
ReleaseName = Annotated[str, AfterValidator(_check_release_name)]
ObjectName = Annotated[str, AfterValidator(_check_object_name)]
NamespaceName = Annotated[str, AfterValidator(_check_namespace)]
StringMap = dict[str, str]


# ---------------------------------------------------------------------------------------------
# Selectors and targets
# ---------------------------------------------------------------------------------------------

SelectorOperator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
_SELECTOR_OPERATORS: tuple[str, ...] = typing.get_args(SelectorOperator)


class LabelSelectorRequirement(FleetModel):
    """One ``matchExpressions`` entry of a Kubernetes label selector."""

    key: str
    operator: str
    values: list[str] | None = None

    @field_validator("operator")
    @classmethod
    def _known_operator(cls, value: str) -> str:
        if value not in _SELECTOR_OPERATORS:
            raise ValueError(
                f"{short_repr(value)} is not one of {', '.join(_SELECTOR_OPERATORS)}"
                + _did_you_mean(value, _SELECTOR_OPERATORS)
            )
        return value

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs a non-empty 'values' list")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(
                f"operator {self.operator} takes no 'values' (got {short_repr(self.values)})"
            )
        return self


class LabelSelector(FleetModel):
    """A Kubernetes label selector; ``{}`` selects everything, None (elsewhere) means absent."""

    match_labels: StringMap | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None


class ClusterMatchCriteria(FleetModel):
    """The cluster-choosing fields shared by targets, customizations, partitions, restrictions."""

    cluster_name: str | None = None
    cluster_selector: LabelSelector | None = None
    cluster_group: str | None = None
    cluster_group_selector: LabelSelector | None = None


class GitTarget(ClusterMatchCriteria):
    """A GitRepo target (also fleet.yaml ``overrideTargets``)."""

    name: str | None = None


# ---------------------------------------------------------------------------------------------
# Deployment options (what a customization can override)
# ---------------------------------------------------------------------------------------------


class ObjectKeyRef(FleetModel):
    """A key of a ConfigMap or Secret, by name; the value is read on the target cluster."""

    name: str
    namespace: str | None = None
    key: str | None = None


class ValuesFrom(FleetModel):
    """One ``helm.valuesFrom`` source: a ConfigMap key or a Secret key."""

    config_map_key_ref: ObjectKeyRef | None = None
    secret_key_ref: ObjectKeyRef | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ValuesFrom:
        if (self.config_map_key_ref is None) == (self.secret_key_ref is None):
            raise ValueError("needs exactly one of configMapKeyRef or secretKeyRef")
        return self


class HelmOptions(FleetModel):
    """``helm:`` of fleet.yaml: chart source, release settings and values."""

    chart: str | None = None
    repo: str | None = None
    version: str | None = None
    release_name: ReleaseName | None = None
    # In a customization, a negative value resets the timeout to Helm's default.
    timeout_seconds: int | None = None
    max_history: int | None = Field(default=None, ge=0)
    values: dict[str, Any] | None = None
    values_files: list[str] | None = None
    values_from: list[ValuesFrom] | None = None
    force: bool = False
    take_ownership: bool = False
    atomic: bool = False
    wait_for_jobs: bool = False
    disable_pre_process: bool = False
    disable_dns: bool = Field(default=False, alias="disableDNS")
    skip_schema_validation: bool = False
    disable_dependency_update: bool = False


class KustomizeOptions(FleetModel):
    """``kustomize:`` of fleet.yaml."""

    dir: str | None = None


class YamlOptions(FleetModel):
    """``yaml:`` of fleet.yaml: overlay names applied in order."""

    overlays: list[str] | None = None


class ComparePatchOperation(FleetModel):
    """One JSON-patch-like operation of a compare patch (usually ``remove``)."""

    op: str | None = None
    path: str | None = None
    value: str | None = None


class ComparePatch(FleetModel):
    """Which object a compare patch applies to and what to leave out of the drift check."""

    api_version: str | None = None
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    operations: list[ComparePatchOperation] | None = None
    json_pointers: list[str] | None = None


class DiffOptions(FleetModel):
    """``diff:`` of fleet.yaml."""

    compare_patches: list[ComparePatch] | None = None


class IgnoreOptions(FleetModel):
    """``ignore:`` of fleet.yaml: status conditions to drop before judging readiness."""

    conditions: list[StringMap] | None = None


class CorrectDrift(FleetModel):
    """``correctDrift:``: re-apply on drift, optionally forcing replacement."""

    enabled: bool = False
    force: bool = False
    keep_fail_history: bool = False


class BundleDeploymentOptions(FleetModel):
    """The options that travel from fleet.yaml to each cluster and that customizations change."""

    default_namespace: str | None = None
    # Fleet's TargetNamespace: forces every object into this namespace.
    namespace: str | None = None
    kustomize: KustomizeOptions | None = None
    helm: HelmOptions | None = None
    service_account: str | None = None
    force_sync_generation: int = 0
    yaml: YamlOptions | None = None
    diff: DiffOptions | None = None
    keep_resources: bool = False
    delete_namespace: bool = False
    delete_crd_resources: bool = Field(default=False, alias="deleteCRDResources")
    ignore: IgnoreOptions | None = None
    correct_drift: CorrectDrift | None = None
    namespace_labels: StringMap | None = None
    namespace_annotations: StringMap | None = None


class BundleTarget(BundleDeploymentOptions, ClusterMatchCriteria):
    """A targetCustomizations entry (and a Bundle's ``spec.targets`` entry)."""

    name: str | None = None
    do_not_deploy: bool = False


class BundleTargetRestriction(ClusterMatchCriteria):
    """A Bundle's allow-list entry: the GitRepo targets a customization may not widen."""

    name: str | None = None


# ---------------------------------------------------------------------------------------------
# Rollout and dependencies
# ---------------------------------------------------------------------------------------------


class Partition(ClusterMatchCriteria):
    """A named slice of the targeted clusters that rolls out together.

    ``requireApproval``, ``approvalDeadline``, ``soakTime``, ``failureBudget`` and
    ``failureDeadline`` are flotilla's gates (Fleet ignores keys it does not know): a person
    approves a new version before this partition starts (``flotilla approve rollout``), within
    the deadline or it counts as rejected; after this partition is Ready the next one waits
    ``soakTime``; more failed clusters than the budget halt the rollout, and with
    ``autoRollback`` roll the bundle back to its last Ready version
    (docs/progressive-delivery.md).
    """

    name: str | None = None
    max_unavailable: IntOrPercent | None = None
    require_approval: bool = False
    approval_deadline: Duration | None = None
    soak_time: Duration | None = None
    # How many of the partition's clusters (or "N%") may fail a new version before the rollout
    # halts; a cluster fails when it is not Ready at it ``failureDeadline`` after its release.
    failure_budget: IntOrPercent | None = None
    failure_deadline: Duration | None = None
    # When the failure budget halts the rollout, roll the bundle back to the last version that
    # was Ready (a version pin that the next commit lifts).
    auto_rollback: bool = False

    @model_validator(mode="after")
    def _deadline_needs_approval(self) -> Partition:
        if self.approval_deadline is not None and not self.require_approval:
            raise ValueError("approvalDeadline needs requireApproval: true")
        if self.failure_deadline is not None and self.failure_budget is None:
            raise ValueError("failureDeadline needs a failureBudget")
        if self.auto_rollback and self.failure_budget is None:
            raise ValueError("autoRollback needs a failureBudget")
        return self


class RolloutStrategy(FleetModel):
    """``rolloutStrategy:``: how many clusters and partitions may be unavailable at once."""

    max_unavailable: IntOrPercent | None = None
    max_unavailable_partitions: IntOrPercent | None = None
    auto_partition_size: IntOrPercent | None = None
    auto_partition_threshold: int | None = Field(default=None, ge=0)
    partitions: list[Partition] | None = None


# Fleet's bundle states, as dependsOn.acceptedStates may name them (flotilla.status.BundleState
# adds WaitingForDependency, which is flotilla's own and never a state to wait for).
AcceptedState = Literal[
    "Ready", "NotReady", "WaitApplied", "ErrApplied", "OutOfSync", "Pending", "Modified"
]


class BundleRef(FleetModel):
    """A ``dependsOn`` entry: a bundle by name or by label selector."""

    name: str | None = None
    selector: LabelSelector | None = None
    accepted_states: list[AcceptedState] | None = None

    @model_validator(mode="after")
    def _name_or_selector(self) -> BundleRef:
        if not self.name and self.selector is None:
            raise ValueError("needs a 'name' or a 'selector'")
        return self


TargetCustomizationMode = Literal["FirstMatch", "AllMatches"]


class DownstreamResource(FleetModel):
    """A ``downstreamResources`` entry (Fleet 0.14+): a ConfigMap or Secret of the bundle's
    workspace, copied into the bundle's namespace on every cluster it deploys to."""

    kind: Literal["ConfigMap", "Secret"]
    name: ObjectName


class BundleSpecCommon(BundleDeploymentOptions):
    """The fields a fleet.yaml and a Bundle spec share besides the deployment options."""

    paused: bool = False
    rollout_strategy: RolloutStrategy | None = None
    targets: list[BundleTarget] | None = None
    depends_on: list[BundleRef] | None = None
    target_customization_mode: TargetCustomizationMode | None = None
    downstream_resources: list[DownstreamResource] | None = None

    @field_validator("downstream_resources")
    @classmethod
    def _distinct_resources(
        cls, value: list[DownstreamResource] | None
    ) -> list[DownstreamResource] | None:
        seen: set[tuple[str, str]] = set()
        for entry in value or []:
            if (entry.kind, entry.name) in seen:
                raise ValueError(f"{entry.kind} {entry.name!r} is listed twice")
            seen.add((entry.kind, entry.name))
        return value


# ---------------------------------------------------------------------------------------------
# fleet.yaml
# ---------------------------------------------------------------------------------------------


class FleetYaml(BundleSpecCommon):
    """A bundle's ``fleet.yaml``."""

    name: str | None = None
    labels: StringMap | None = None
    target_customizations: list[BundleTarget] | None = None
    override_targets: list[GitTarget] | None = None
    # Typed by the image-scan work; kept loose so existing files load today.
    image_scans: list[dict[str, Any]] | None = None


# ---------------------------------------------------------------------------------------------
# Kubernetes objects
# ---------------------------------------------------------------------------------------------


class FleetObjectModel(FleetModel):
    """Base of the top-level objects: ``apiVersion`` and ``kind`` are always dumped."""

    api_version: ApiVersion = API_VERSION
    kind: str

    def to_fleet(self) -> dict[str, Any]:
        """Dump in Fleet's shape, ``apiVersion`` and ``kind`` first even when defaulted."""
        return {"apiVersion": self.api_version, "kind": self.kind, **super().to_fleet()}


class ObjectMeta(FleetModel):
    """The part of Kubernetes ``metadata`` flotilla uses."""

    name: ObjectName
    namespace: NamespaceName = DEFAULT_NAMESPACE
    labels: StringMap | None = None
    annotations: StringMap | None = None


class CommitSpec(FleetModel):
    """How image-scan write-backs are committed."""

    author_name: str | None = None
    author_email: str | None = None
    message_template: str | None = None


class VerifyCommits(FleetModel):
    """flotilla's extension (Fleet has none): deploy only commits signed by trusted keys."""

    # A secret in the GitRepo's namespace: allowed_signers (SSH), *.asc (OpenPGP keys).
    secret_name: str = Field(min_length=1)


class GitRepoSpec(FleetModel):
    """What to watch in git, where to deploy it and with which switches."""

    repo: str = Field(min_length=1)
    branch: str = DEFAULT_BRANCH
    revision: str | None = None
    paths: list[str] = Field(default_factory=lambda: ["."])
    targets: list[GitTarget] | None = None
    polling_interval: Duration = DEFAULT_POLLING_INTERVAL
    disable_polling: bool = False
    client_secret_name: str | None = None
    helm_secret_name: str | None = None
    helm_secret_name_for_paths: str | None = None
    helm_repo_url_regex: Annotated[str, AfterValidator(_check_regex)] | None = Field(
        default=None, alias="helmRepoURLRegex"
    )
    ca_bundle: Annotated[str, AfterValidator(_check_base64)] | None = None
    insecure_skip_tls_verify: bool = Field(default=False, alias="insecureSkipTLSVerify")
    paused: bool = False
    keep_resources: bool = False
    delete_namespace: bool = False
    correct_drift: CorrectDrift | None = None
    target_namespace: str | None = None
    service_account: str | None = None
    force_sync_generation: int = 0
    image_scan_interval: Duration | None = None
    image_scan_commit: CommitSpec | None = None
    verify_commits: VerifyCommits | None = None

    @field_validator("paths", mode="before")
    @classmethod
    def _default_paths(cls, value: Any) -> Any:
        # Fleet treats an empty or null list like an absent one: the repository root.
        return value or ["."]

    @property
    def polling_interval_seconds(self) -> float:
        """The polling interval in seconds."""
        return parse_duration(self.polling_interval, field="spec.pollingInterval")


class GitRepo(FleetObjectModel):
    """A GitRepo object."""

    kind: Literal["GitRepo"] = "GitRepo"
    metadata: ObjectMeta
    spec: GitRepoSpec


class ClusterSpec(FleetModel):
    """A registered cluster's settings; agent-placement fields are kept loose."""

    paused: bool = False
    client_id: str | None = Field(default=None, alias="clientID")
    kube_config_secret: str | None = None
    kube_config_secret_namespace: str | None = None
    agent_namespace: str | None = None
    redeploy_agent_generation: int = 0
    private_repo_url: str | None = Field(default=None, alias="privateRepoURL")
    # The source of ``.ClusterValues`` in values templating.
    template_values: dict[str, Any] | None = None
    agent_env_vars: list[dict[str, Any]] | None = None
    agent_tolerations: list[dict[str, Any]] | None = None
    agent_affinity: dict[str, Any] | None = None
    agent_resources: dict[str, Any] | None = None
    host_network: bool | None = None


class Cluster(FleetObjectModel):
    """A Cluster object: its labels are what targets select on."""

    kind: Literal["Cluster"] = "Cluster"
    metadata: ObjectMeta
    spec: ClusterSpec = Field(default_factory=ClusterSpec)


class ClusterGroupSpec(FleetModel):
    """A ClusterGroup's selector over the clusters of its namespace."""

    selector: LabelSelector | None = None


class ClusterGroup(FleetObjectModel):
    """A ClusterGroup object."""

    kind: Literal["ClusterGroup"] = "ClusterGroup"
    metadata: ObjectMeta
    spec: ClusterGroupSpec = Field(default_factory=ClusterGroupSpec)


class BundleResource(FleetModel):
    """One file of a bundle: its path in the bundle and its (possibly encoded) content."""

    name: str
    content: str = ""
    # Empty for plain text, "base64" or "base64+gz" for the rest.
    encoding: str | None = None


class FleetBundleSpec(BundleSpecCommon):
    """A Fleet Bundle's spec: options, content and targeting."""

    resources: list[BundleResource] | None = None
    target_restrictions: list[BundleTargetRestriction] | None = None


class FleetBundle(FleetObjectModel):
    """Fleet's Bundle object, as ``flotilla bundle`` prints it (``flotilla.bundles.Bundle`` is
    a bundle as flotilla reads it from git)."""

    kind: Literal["Bundle"] = "Bundle"
    metadata: ObjectMeta
    spec: FleetBundleSpec = Field(default_factory=FleetBundleSpec)


def _check_patterns(patterns: list[str] | None) -> list[str] | None:
    for pattern in patterns or []:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"{pattern!r} is not a valid regular expression: {err}") from None
    return patterns


class GitRepoPolicy(FleetModel):
    """A Policy's part for GitRepos."""

    default_service_account: str | None = None
    default_client_secret_name: str | None = None
    allowed_client_secret_names: list[str] | None = None
    allowed_repo_patterns: list[str] | None = None

    _patterns = field_validator("allowed_repo_patterns")(_check_patterns)


class Policy(FleetObjectModel):
    """Fleet 0.16's Policy (its fields sit at the top level, beside ``metadata``)."""

    kind: Literal["Policy"] = "Policy"
    metadata: ObjectMeta
    require_service_account: bool = False
    allowed_service_accounts: list[str] | None = None
    allow_namespace_creation: bool = False
    # flotilla's extension (Fleet ignores it): every GitRepo of the workspace must set
    # spec.verifyCommits, so only signed commits are read; and, when listed, the secrets of
    # trusted signing keys a GitRepo may name there (the keys the administrator trusts).
    require_verified_commits: bool = False
    allowed_verify_commits_secret_names: list[str] | None = None
    git_repo: GitRepoPolicy | None = Field(default=None, alias="gitRepo")


class GitRepoRestriction(FleetObjectModel):
    """Fleet's older restriction object (removed in Fleet 0.18; Policy replaces it)."""

    kind: Literal["GitRepoRestriction"] = "GitRepoRestriction"
    metadata: ObjectMeta
    default_service_account: str | None = None
    allowed_service_accounts: list[str] | None = None
    allowed_repo_patterns: list[str] | None = None
    default_client_secret_name: str | None = None
    allowed_client_secret_names: list[str] | None = None
    allowed_target_namespaces: list[str] | None = None
    allowed_target_namespace_selector: LabelSelector | None = None
    # flotilla's extensions, as on Policy.
    require_verified_commits: bool = False
    allowed_verify_commits_secret_names: list[str] | None = None

    _patterns = field_validator("allowed_repo_patterns")(_check_patterns)


class ScheduleTargets(FleetModel):
    """The clusters a Schedule's windows apply to (any entry matching is enough)."""

    clusters: list[GitTarget] | None = None


class ScheduleSpec(FleetModel):
    """Fleet's Schedule spec: a Quartz cron expression, how long each window stays open, the
    time zone the expression is read in, and the clusters it holds."""

    schedule: str
    duration: str | int | float
    location: str | None = None
    targets: ScheduleTargets = Field(default_factory=ScheduleTargets)


class Schedule(FleetObjectModel):
    """Fleet's Schedule: deployment windows. A targeted cluster is deployed to only while one
    of its Schedules' windows is open (``flotilla.windows``)."""

    kind: Literal["Schedule"] = "Schedule"
    metadata: ObjectMeta
    spec: ScheduleSpec


class HelmOpSpec(BundleSpecCommon):
    """Fleet's HelmOp spec: a Bundle's spec with its chart taken from a Helm repository, an OCI
    registry or a tarball URL instead of git, and the chart version followed by polling."""

    labels: StringMap | None = None
    # Unset (or "0"): the version is resolved when the HelmOp is applied or synced, not polled.
    polling_interval: Duration | None = None
    helm_secret_name: str | None = None
    insecure_skip_tls_verify: bool = Field(default=False, alias="insecureSkipTLSVerify")


class HelmOp(FleetObjectModel):
    """A HelmOp object (Fleet 0.13+): a chart deployed to the fleet without a git repository."""

    kind: Literal["HelmOp"] = "HelmOp"
    metadata: ObjectMeta
    spec: HelmOpSpec = Field(default_factory=HelmOpSpec)


FleetObject = GitRepo | HelmOp | Cluster | ClusterGroup | Policy | GitRepoRestriction | Schedule
Restriction = Policy | GitRepoRestriction
_OBJECT_KINDS: dict[str, type[FleetObject]] = {
    "GitRepo": GitRepo,
    "HelmOp": HelmOp,
    "Cluster": Cluster,
    "ClusterGroup": ClusterGroup,
    "Policy": Policy,
    "GitRepoRestriction": GitRepoRestriction,
    "Schedule": Schedule,
}


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

ModelT = TypeVar("ModelT", bound=FleetModel)
ObjectT = TypeVar("ObjectT", bound=FleetObjectModel)


def parse_spec(
    model: type[ModelT], data: Any, *, file: str, prefix: str = ""
) -> tuple[ModelT, list[str]]:
    """Validate parsed YAML against ``model``; return it and one warning per unknown field."""
    try:
        parsed = model.model_validate(data)
    except ValidationError as err:
        raise spec_error_from_validation(err, file=file, prefix=prefix) from None
    warnings = [
        f"{file}: {path}: unknown field, ignored{hint}"
        for path, hint in find_unknown_fields(model, data, prefix)
    ]
    return parsed, warnings


def load_fleet_yaml(text: str, *, file: str = "fleet.yaml") -> tuple[FleetYaml, list[str]]:
    """Load a fleet.yaml (empty is valid) into a model plus unknown-field warnings."""
    fleet_yaml, warnings = parse_spec(FleetYaml, load_yaml_mapping(text, file=file), file=file)
    return fleet_yaml, warnings + _customization_warnings(fleet_yaml, file=file)


# Fleet's merge of a customization over the bundle's options never reads these, so setting
# them in a customization has no effect there or here (see targeting.merge_customization).
_NOT_CUSTOMIZABLE = ("delete_crd_resources", "delete_namespace", "ignore")
_NOT_CUSTOMIZABLE_HELM = ("max_history", "skip_schema_validation", "disable_dependency_update")


def _customization_warnings(fleet_yaml: FleetYaml, *, file: str) -> list[str]:
    entries = [
        *(("targets", i, t) for i, t in enumerate(fleet_yaml.targets or [])),
        *(
            ("targetCustomizations", i, t)
            for i, t in enumerate(fleet_yaml.target_customizations or [])
        ),
    ]
    warnings = []
    for section, index, entry in entries:
        ignored = [
            _alias(BundleTarget, n) for n in _NOT_CUSTOMIZABLE if n in entry.model_fields_set
        ]
        if entry.helm is not None:
            ignored += [
                f"helm.{_alias(HelmOptions, n)}"
                for n in _NOT_CUSTOMIZABLE_HELM
                if n in entry.helm.model_fields_set
            ]
        warnings += [
            f"{file}: {section}[{index}].{path}: has no effect in a customization, ignored "
            "(set it at the top level of fleet.yaml)"
            for path in ignored
        ]
    return warnings


def _alias(model: type[BaseModel], name: str) -> str:
    return model.model_fields[name].alias or name


def load_gitrepo(text: str, *, file: str) -> tuple[GitRepo, list[str]]:
    """Load a file holding exactly one GitRepo."""
    return _load_one(GitRepo, text, file=file)


def load_cluster(text: str, *, file: str) -> tuple[Cluster, list[str]]:
    """Load a file holding exactly one Cluster."""
    return _load_one(Cluster, text, file=file)


def load_cluster_group(text: str, *, file: str) -> tuple[ClusterGroup, list[str]]:
    """Load a file holding exactly one ClusterGroup."""
    return _load_one(ClusterGroup, text, file=file)


def load_fleet_objects(text: str, *, file: str) -> tuple[list[FleetObject], list[str]]:
    """Load a multi-document file of GitRepos, Clusters, ClusterGroups, Policies and
    GitRepoRestrictions, dispatching on kind."""
    objects: list[FleetObject] = []
    warnings: list[str] = []
    for where, data in document_mappings(text, file=file):
        parsed, found = parse_fleet_object(data, file=where)
        objects.append(parsed)
        warnings.extend(found)
    return objects, warnings


def document_mappings(text: str, *, file: str) -> list[tuple[str, dict[str, Any]]]:
    """The non-empty documents of a YAML file, each a mapping named by its place in the file."""
    documents = [d for d in load_yaml_documents(text, file=file) if d is not None]
    named = []
    for index, document in enumerate(documents):
        where = f"{file} (document {index + 1})" if len(documents) > 1 else file
        named.append((where, require_mapping(document, file=where)))
    return named


def parse_fleet_object(data: dict[str, Any], *, file: str) -> tuple[FleetObject, list[str]]:
    """One GitRepo, Cluster, ClusterGroup, Policy or GitRepoRestriction document, with its
    warnings.

    A restriction's unknown field is an error, not a warning: an ignored misspelt allow-list
    would allow what an administrator meant to forbid."""
    model = _object_model(data, file=file)
    parsed, warnings = parse_spec(model, data, file=file)
    if isinstance(parsed, Policy | GitRepoRestriction):
        for path, hint in find_unknown_fields(model, data):
            raise SpecError(f"unknown field{hint}", file=file, field=path)
    if isinstance(parsed, GitRepo):
        warnings.extend(_credentials_unused(parsed, file=file))
    if isinstance(parsed, Schedule):
        check_window(window_of(parsed, file=file), file=file, now=datetime.now(UTC))
    return parsed, warnings


def window_of(schedule: Schedule, *, file: str = "") -> Window:
    """The Schedule as ``flotilla.windows`` evaluates it (its duration read, in seconds)."""
    spec = schedule.spec
    return Window(
        name=schedule.metadata.name,
        cron=spec.schedule,
        duration_seconds=parse_duration(spec.duration, field="spec.duration", file=file),
        location=spec.location or "",
    )


def _credentials_unused(gitrepo: GitRepo, *, file: str) -> list[str]:
    """Helm credentials that no repository will get: said at apply, as Fleet logs it."""
    spec = gitrepo.spec
    field = (
        "spec.helmSecretNameForPaths" if spec.helm_secret_name_for_paths else "spec.helmSecretName"
    )
    if not (spec.helm_secret_name or spec.helm_secret_name_for_paths) or spec.helm_repo_url_regex:
        return []
    return [
        f"{file}: {field}: spec.helmRepoURLRegex is empty, so these Helm credentials are sent "
        "to no repository; set it to the repository URLs they are for"
    ]


def _load_one(model: type[ObjectT], text: str, *, file: str) -> tuple[ObjectT, list[str]]:
    data = load_yaml_mapping(text, file=file)
    kind = model.model_fields["kind"].default
    if data.get("kind") != kind:
        raise SpecError(
            f"expected a {kind}, got {short_repr(data.get('kind'))}", file=file, field="kind"
        )
    return parse_spec(model, data, file=file)


def _object_model(data: dict[str, Any], *, file: str) -> type[FleetObject]:
    api_version = data.get("apiVersion")
    if api_version != API_VERSION:
        raise SpecError(
            f"{short_repr(api_version)} is not supported; use {API_VERSION!r}",
            file=file,
            field="apiVersion",
        )
    return model_for_kind(data, _OBJECT_KINDS, file=file, what="a kind flotilla applies")


KindT = TypeVar("KindT")


def model_for_kind(data: dict[str, Any], kinds: dict[str, KindT], *, file: str, what: str) -> KindT:
    """The model of a document's ``kind`` among ``kinds``, or a one-line SpecError naming the
    kinds there are and the near miss."""
    kind = data.get("kind")
    model = kinds.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise SpecError(
            f"{short_repr(kind)} is not {what} (use one of "
            f"{', '.join(kinds)}){_did_you_mean(str(kind), kinds)}",
            file=file,
            field="kind",
        )
    return model


# ---------------------------------------------------------------------------------------------
# Unknown fields
# ---------------------------------------------------------------------------------------------

# Keys every Kubernetes object has that the models above do not need to know.
_OBJECT_ENVELOPE = frozenset({"apiVersion", "kind", "status"})
_METADATA_TOLERATED = frozenset(
    {
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "finalizers",
        "ownerReferences",
        "managedFields",
        "generateName",
        "selfLink",
    }
)


def find_unknown_fields(model: type[BaseModel], data: Any, path: str = "") -> list[tuple[str, str]]:
    """List ``(field path, did-you-mean hint)`` for every key of ``data`` that ``model`` lacks."""
    if not isinstance(data, dict):
        return []
    known = _wire_names(model)
    tolerated = _OBJECT_ENVELOPE if "metadata" in known else frozenset()
    if model is ObjectMeta:
        tolerated = _METADATA_TOLERATED
    found: list[tuple[str, str]] = []
    for key, value in data.items():
        child = f"{path}.{key}" if path else str(key)
        field_type = known.get(key) if isinstance(key, str) else None
        if field_type is None:
            if key not in tolerated:
                found.append((child, _did_you_mean(str(key), known)))
            continue
        found.extend(_unknown_in_value(field_type, value, child))
    return found


def _unknown_in_value(annotation: Any, value: Any, path: str) -> list[tuple[str, str]]:
    for candidate in _unwrap(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return find_unknown_fields(candidate, value, path)
        if typing.get_origin(candidate) is list and isinstance(value, list):
            (item_type,) = typing.get_args(candidate)
            return [
                hit
                for index, item in enumerate(value)
                for hit in _unknown_in_value(item_type, item, f"{path}[{index}]")
            ]
    return []


def _unwrap(annotation: Any) -> list[Any]:
    """Flatten ``X | None`` and ``Annotated[X, ...]`` into the candidate types."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _unwrap(arg)]
    return [annotation]


def _wire_names(model: type[BaseModel]) -> dict[str, Any]:
    """Map every accepted key (alias and Python name) of ``model`` to its field type."""
    names: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        names[name] = info.annotation
        if info.alias:
            names[info.alias] = info.annotation
    return names


def _did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    by_lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.75)
    return f"; did you mean {by_lower[close[0]]!r}?" if close else ""
