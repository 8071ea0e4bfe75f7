"""Drift: which rendered objects are missing live or differ from what the API server holds."""

from __future__ import annotations

import base64
import copy
import re
from collections.abc import Iterable, Iterator
from enum import StrEnum
from fractions import Fraction
from typing import Any

import jsonpatch
import jsonpointer
from pydantic import BaseModel, ConfigDict, Field

from flotilla.manifests import CLUSTER_SCOPED_KINDS

MAX_POINTERS = 5

# Set by the API server, helm or kubectl on every object, never by the bundle's author.
SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
)
_TOOL_ANNOTATION_PREFIXES = ("meta.helm.sh/",)
_TOOL_ANNOTATIONS = (
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
)
_TOOL_LABELS = ("app.kubernetes.io/managed-by",)

# Lists the API server treats as maps: elements are matched by these fields, not by position,
# so a reordered or partly defaulted element still lines up with its desired twin.
_MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "hostAliases": ("ip",),
    "webhooks": ("name",),
    "versions": ("name",),
}
# Container ports are keyed by containerPort, Service ports by port; both also by protocol.
_PORT_KEYS = ("containerPort", "port")

# Path segments under which scalars are resource quantities ("1000m" == "1", "1Gi" == "1024Mi").
_QUANTITY_PARENTS = frozenset({"resources", "limits", "requests", "hard", "sizeLimit", "overhead"})
_QUANTITY = re.compile(
    r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:[eE]([+-]?\d+))?(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?$"
)
_SUFFIX_SCALE = {
    None: Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}


class ObjectKey(BaseModel):
    """The identity of one Kubernetes object; namespace is empty for cluster-scoped kinds."""

    model_config = ConfigDict(frozen=True)

    api_version: str
    kind: str
    namespace: str = ""
    name: str

    def __str__(self) -> str:
        parts = [self.api_version, self.kind, self.namespace, self.name]
        return "/".join(part for part in parts if part)

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]


class PatchOperation(BaseModel):
    """One RFC 6902 operation of a compare patch, or Fleet's ``{"op": "ignore"}``."""

    model_config = ConfigDict(populate_by_name=True)

    op: str
    path: str = ""
    value: Any = None
    from_: str | None = Field(default=None, alias="from")

    def as_json_patch(self) -> dict[str, Any]:
        """Return the operation in the JSON shape jsonpatch applies."""
        return self.model_dump(by_alias=True, exclude_none=True)


class CompiledComparePatch(BaseModel):
    """A ``diff.comparePatches`` entry as the drift check uses it: what to leave out of the
    comparison, empty fields matching anything (``flotilla.models.ComparePatch`` is the YAML)."""

    model_config = ConfigDict(populate_by_name=True)

    api_version: str = Field(default="", alias="apiVersion")
    kind: str = ""
    name: str = ""
    namespace: str = ""
    operations: list[PatchOperation] = Field(default_factory=list)
    json_pointers: list[str] = Field(default_factory=list, alias="jsonPointers")

    @property
    def ignores_object(self) -> bool:
        # Fleet only stops counting such an object as missing; leaving it out of the comparison
        # altogether is what its docs promise ("ignoring entire objects"), so flotilla does that.
        return any(operation.op == "ignore" for operation in self.operations)

    def matches(self, key: ObjectKey) -> bool:
        """Return True when this entry applies to the object; empty fields match anything."""
        if self.api_version and self.api_version.rpartition("/")[0] != key.group:
            return False
        if self.kind and self.kind != key.kind:
            return False
        if self.namespace and self.namespace != key.namespace:
            return False
        return not self.name or self.name == key.name or self._name_pattern_matches(key.name)

    def _name_pattern_matches(self, name: str) -> bool:
        # Fleet reads the name of an "ignore" entry as a regular expression (unanchored).
        if not self.ignores_object:
            return False
        try:
            return re.search(self.name, name) is not None
        except re.error:
            return False


class DriftKind(StrEnum):
    """How a live object departs from its desired state."""

    MISSING = "missing"
    MODIFIED = "modified"


class DriftEntry(BaseModel):
    """One drifted object with the first JSON pointers that differ (never the values)."""

    model_config = ConfigDict(frozen=True)

    key: ObjectKey
    drift: DriftKind
    pointers: list[str] = Field(default_factory=list)
    message: str


def object_key(
    obj: dict[str, Any],
    default_namespace: str,
    cluster_scoped_kinds: frozenset[str] = CLUSTER_SCOPED_KINDS,
) -> ObjectKey:
    """Return the key of a manifest, filling in the namespace the way helm would.

    Pass ``cluster_scoped_kinds`` with the custom kinds that discovery reports cluster-scoped.
    """
    kind = str(obj.get("kind", ""))
    metadata = obj.get("metadata") or {}
    if kind in cluster_scoped_kinds:
        namespace = ""
    else:
        namespace = str(metadata.get("namespace") or default_namespace)
    return ObjectKey(
        api_version=str(obj.get("apiVersion", "")),
        kind=kind,
        namespace=namespace,
        name=str(metadata.get("name", "")),
    )


def left_behind(
    old: Iterable[dict[str, Any]], new: Iterable[dict[str, Any]], namespace: str
) -> list[ObjectKey]:
    """The objects of an old manifest that a new one no longer has, as an upgrade from the old
    one would delete them (sorted, for a stable order)."""
    kept = {object_key(obj, namespace) for obj in new}
    gone = {object_key(obj, namespace) for obj in old} - kept
    return sorted(gone, key=lambda k: (k.api_version, k.kind, k.namespace, k.name))


def find_hpa_targets(objects: Iterable[dict[str, Any]]) -> set[ObjectKey]:
    """Return the keys of the workloads that HorizontalPodAutoscalers among objects scale."""
    targets: set[ObjectKey] = set()
    for obj in objects:
        if obj.get("kind") != "HorizontalPodAutoscaler":
            continue
        ref = (obj.get("spec") or {}).get("scaleTargetRef") or {}
        targets.add(
            ObjectKey(
                api_version=str(ref.get("apiVersion", "")),
                kind=str(ref.get("kind", "")),
                namespace=str((obj.get("metadata") or {}).get("namespace", "")),
                name=str(ref.get("name", "")),
            )
        )
    return targets


def diff_objects(
    desired: list[dict[str, Any]],
    live: dict[ObjectKey, dict[str, Any] | None],
    compare_patches: list[CompiledComparePatch],
    hpa_targets: set[ObjectKey],
    *,
    namespace: str = "default",
) -> list[DriftEntry]:
    """Compare each desired object with its live twin; ``namespace`` is the release namespace."""
    entries: list[DriftEntry] = []
    for obj in desired:
        key = object_key(obj, namespace)
        patches = [patch for patch in compare_patches if patch.matches(key)]
        if any(patch.ignores_object for patch in patches):
            continue
        current = live.get(key)
        if current is None:
            entries.append(DriftEntry(key=key, drift=DriftKind.MISSING, message="missing"))
            continue
        want = normalize_desired(apply_compare_patches(obj, patches), key in hpa_targets)
        have = apply_compare_patches(current, patches)
        pointers = list(dict.fromkeys(find_differences(want, have)))
        if pointers:
            entries.append(
                DriftEntry(
                    key=key,
                    drift=DriftKind.MODIFIED,
                    pointers=pointers[:MAX_POINTERS],
                    message=describe_pointers(pointers),
                )
            )
    return entries


def describe_pointers(pointers: list[str]) -> str:
    """Return ``differs at /a, /b (+N more)`` naming at most MAX_POINTERS pointers."""
    shown = ", ".join(pointers[:MAX_POINTERS])
    rest = len(pointers) - MAX_POINTERS
    return f"differs at {shown}" + (f" (+{rest} more)" if rest > 0 else "")


def apply_compare_patches(
    obj: dict[str, Any], patches: list[CompiledComparePatch]
) -> dict[str, Any]:
    """Return a copy of obj with each patch operation and JSON pointer removal applied."""
    result = copy.deepcopy(obj)
    for patch in patches:
        operations = [op.as_json_patch() for op in patch.operations if op.op != "ignore"]
        operations += [{"op": "remove", "path": pointer} for pointer in patch.json_pointers]
        for operation in operations:
            # Each operation stands alone, as in Fleet: a path absent from this object is
            # simply nothing to remove, and one bad operation must not disable the others.
            try:
                result = jsonpatch.apply_patch(result, [operation])
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException):
                continue
    return result


def normalize_desired(obj: dict[str, Any], scaled_by_hpa: bool) -> dict[str, Any]:
    """Drop from a desired object what the server, tools or controllers own, in a copy."""
    result = copy.deepcopy(obj)
    result.pop("status", None)
    metadata = result.get("metadata")
    if isinstance(metadata, dict):
        for field in SERVER_METADATA:
            metadata.pop(field, None)
        _drop_keys(metadata, "annotations", _TOOL_ANNOTATIONS, _TOOL_ANNOTATION_PREFIXES)
        _drop_keys(metadata, "labels", _TOOL_LABELS, ())
    spec = result.get("spec")
    if scaled_by_hpa and isinstance(spec, dict):
        spec.pop("replicas", None)
    if result.get("kind") == "Secret" and isinstance(result.get("stringData"), dict):
        # The API server folds stringData into data and never returns stringData.
        encoded = {
            str(name): base64.b64encode(str(value).encode()).decode()
            for name, value in result.pop("stringData").items()
        }
        result["data"] = {**(result.get("data") or {}), **encoded}
    if result.get("kind") == "ClusterRole" and result.get("aggregationRule"):
        # The aggregation controller owns the rules of an aggregated ClusterRole.
        result.pop("rules", None)
    return result


def _drop_keys(
    metadata: dict[str, Any], field: str, names: tuple[str, ...], prefixes: tuple[str, ...]
) -> None:
    values = metadata.get(field)
    if not isinstance(values, dict):
        return
    for name in list(values):
        if name in names or name.startswith(prefixes):
            del values[name]


def find_differences(want: Any, have: Any, pointer: str = "") -> Iterator[str]:
    """Yield JSON pointers where have departs from want, looking only at fields want sets."""
    if want is None:
        return
    if isinstance(want, dict):
        if not isinstance(have, dict):
            if not (have is None and not want):
                yield pointer or "/"
            return
        for name in sorted(want):
            yield from find_differences(want[name], have.get(name), f"{pointer}/{_escape(name)}")
    elif isinstance(want, list):
        if not isinstance(have, list):
            if not (have is None and not want):
                yield pointer
            return
        yield from _list_differences(want, have, pointer)
    elif have is None:
        # The API server omits zero values of optional fields (false, 0, "").
        if want not in (False, 0, ""):
            yield pointer
    elif not _scalars_equal(want, have, pointer):
        yield pointer


def _list_differences(want: list[Any], have: list[Any], pointer: str) -> Iterator[str]:
    field = pointer.rpartition("/")[2]
    if all(isinstance(item, dict) for item in [*want, *have]):
        keyed_want = [_merge_key(field, item) for item in want]
        keyed_have = [_merge_key(field, item) for item in have]
        if None not in keyed_want and None not in keyed_have:
            by_key = dict(zip(keyed_have, have, strict=True))
            for index, (key, item) in enumerate(zip(keyed_want, want, strict=True)):
                if key in by_key:
                    yield from find_differences(item, by_key[key], f"{pointer}/{index}")
                else:
                    yield f"{pointer}/{index}"
            wanted = set(keyed_want)
            # An element someone added live (a sidecar, an extra port) is drift too.
            for index, key in enumerate(keyed_have):
                if key not in wanted:
                    yield f"{pointer}/{index}"
            return
    if len(want) != len(have):
        yield pointer
        return
    for index, (item, current) in enumerate(zip(want, have, strict=True)):
        yield from find_differences(item, current, f"{pointer}/{index}")


def _merge_key(field: str, item: dict[str, Any]) -> tuple[Any, ...] | None:
    if field == "ports":
        for name in _PORT_KEYS:
            if name in item:
                return (item[name], item.get("protocol") or "TCP")
        return None
    names = _MERGE_KEYS.get(field)
    if names is None or any(name not in item for name in names):
        return None
    return tuple(item[name] for name in names)


def _scalars_equal(want: Any, have: Any, pointer: str) -> bool:
    if isinstance(want, bool) or isinstance(have, bool):
        return want is have
    if want == have:
        return True
    if _QUANTITY_PARENTS.isdisjoint(pointer.split("/")):
        return False
    want_amount, have_amount = parse_quantity(want), parse_quantity(have)
    return want_amount is not None and want_amount == have_amount


def parse_quantity(value: Any) -> Fraction | None:
    """Return the exact amount of a Kubernetes quantity such as ``250m`` or ``1Gi``, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        # Through str so that 0.1 means one tenth, as "100m" does, not its binary neighbour.
        return Fraction(str(value))
    if not isinstance(value, str):
        return None
    match = _QUANTITY.match(value.strip())
    if match is None:
        return None
    number, exponent, suffix = match.groups()
    amount = Fraction(number) * _SUFFIX_SCALE[suffix]
    return amount * Fraction(10) ** int(exponent) if exponent else amount


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")
