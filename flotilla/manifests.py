"""Manifests of a bundle: pick raw files, parse, set namespaces, sort, dump stably."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from flotilla.errors import RenderError, short_repr
from flotilla.yamlload import load_yaml_documents

Manifest = dict[str, Any]

RAW_SUFFIXES = (".yaml", ".yml", ".json")
FLEET_YAML_NAMES = ("fleet.yaml", "fleet.yml")

# Kinds that live outside any namespace. Custom kinds declared cluster-scoped by a CRD in the
# same bundle are added at render time (see ``cluster_scoped_kinds``).
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "APIService",
        "CSIDriver",
        "CSINode",
        "CertificateSigningRequest",
        "ClusterRole",
        "ClusterRoleBinding",
        "ComponentStatus",
        "CustomResourceDefinition",
        "DeviceClass",
        "FlowSchema",
        "IngressClass",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PriorityClass",
        "PriorityLevelConfiguration",
        "RuntimeClass",
        "SelfSubjectAccessReview",
        "SelfSubjectRulesReview",
        "StorageClass",
        "StorageVersionMigration",
        "SubjectAccessReview",
        "TokenReview",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
        "VolumeAttributesClass",
    }
)

# Objects that others depend on go first so an ordered apply succeeds; the rest are ordered by
# kind, namespace and name so the same input always gives the same output.
_KIND_PRIORITY = {"Namespace": 0, "CustomResourceDefinition": 1}
_LAST = len(_KIND_PRIORITY)


def select_raw_files(resources: Mapping[str, bytes]) -> dict[str, bytes]:
    """Pick the files a raw-YAML bundle deploys, as Fleet does.

    Kept: ``.yaml``/``.yml``/``.json`` files. Dropped: fleet.yaml files, and everything in a
    directory that holds its own fleet.yaml (a nested bundle) or a Chart.yaml (a chart).
    """
    skipped_dirs = {
        posixpath.dirname(path) + "/"
        for path in resources
        if posixpath.basename(path) in (*FLEET_YAML_NAMES, "Chart.yaml") and "/" in path
    }
    selected = {}
    for path, data in resources.items():
        if posixpath.basename(path) in FLEET_YAML_NAMES or not path.endswith(RAW_SUFFIXES):
            continue
        if any(path.startswith(prefix) for prefix in skipped_dirs):
            continue
        selected[path] = data
    return selected


def parse_manifests(text: str, *, file: str) -> list[Manifest]:
    """Parse multi-document YAML into objects; empty documents dropped, ``List`` flattened."""
    objects: list[Manifest] = []
    for index, document in enumerate(load_yaml_documents(text, file=file)):
        if document is None:
            continue
        where = f"document {index + 1}"
        if not isinstance(document, dict):
            raise RenderError(
                f"{where}: expected a Kubernetes object, got {type(document).__name__}", file=file
            )
        if document.get("kind") == "List" and isinstance(document.get("items"), list):
            items = document["items"]
        else:
            items = [document]
        for item in items:
            objects.append(_checked_object(item, file=file, where=where))
    return objects


def _checked_object(item: Any, *, file: str, where: str) -> Manifest:
    if not isinstance(item, dict):
        raise RenderError(f"{where}: expected a Kubernetes object", file=file)
    for field in ("apiVersion", "kind"):
        if not isinstance(item.get(field), str) or not item[field]:
            raise RenderError(
                f"{where}: {field}: missing or not a string ({short_repr(item.get(field))})",
                file=file,
            )
    metadata = item.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        raise RenderError(f"{where}: metadata.name: missing", file=file)
    return item


def cluster_scoped_kinds(objects: Iterable[Manifest]) -> frozenset[str]:
    """Built-in cluster-scoped kinds plus custom kinds that CRDs among ``objects`` declare so."""
    extra = set()
    for obj in objects:
        if obj.get("kind") != "CustomResourceDefinition":
            continue
        spec = obj.get("spec")
        if isinstance(spec, dict) and spec.get("scope") == "Cluster":
            names = spec.get("names")
            if isinstance(names, dict) and isinstance(names.get("kind"), str):
                extra.add(names["kind"])
    return CLUSTER_SCOPED_KINDS | extra


def apply_namespaces(
    objects: list[Manifest],
    *,
    namespace: str | None,
    default_namespace: str | None,
    file: str = "fleet.yaml",
) -> list[Manifest]:
    """Set namespaces as Fleet does: ``namespace`` forces every namespaced object (a
    cluster-scoped object is then an error); else ``defaultNamespace`` fills objects without one.
    """
    scoped = cluster_scoped_kinds(objects)
    result = []
    for obj in objects:
        metadata = obj["metadata"]
        if obj["kind"] in scoped:
            if namespace:
                raise RenderError(
                    f"{obj['kind']} {metadata['name']!r} is cluster-scoped and cannot be "
                    f"placed in namespace {namespace!r}",
                    file=file,
                    field="namespace",
                )
            result.append(obj)
            continue
        wanted = namespace or (metadata.get("namespace") or default_namespace)
        if wanted and metadata.get("namespace") != wanted:
            result.append({**obj, "metadata": {**metadata, "namespace": wanted}})
        else:
            result.append(obj)
    return result


def _sort_key(obj: Manifest) -> tuple[int, str, str, str, str]:
    metadata = obj["metadata"]
    return (
        _KIND_PRIORITY.get(obj["kind"], _LAST),
        obj["kind"],
        str(metadata.get("namespace") or ""),
        str(metadata["name"]),
        obj["apiVersion"],
    )


def sort_manifests(objects: Iterable[Manifest]) -> list[Manifest]:
    """Order objects: Namespaces, then CRDs, then everything else; each by kind, namespace, name."""
    return sorted(objects, key=_sort_key)


def dump_manifests(objects: Iterable[Manifest]) -> str:
    """Dump objects as multi-document YAML with sorted keys: equal input gives equal bytes."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump_all(
        list(objects),
        Dumper=dumper,
        sort_keys=True,
        default_flow_style=False,
        explicit_start=True,
        allow_unicode=True,
        width=1 << 16,
    )
