"""Manifests of a bundle: pick raw files, parse, set namespaces, sort, dump stably."""

from __future__ import annotations

import functools
import json
import posixpath
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from flotilla.errors import RenderError, short_repr
from flotilla.yamlload import MAX_YAML_BYTES, load_yaml_documents

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
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
    for index, document in enumerate(_load_documents(text, file=file)):
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


def _load_documents(text: str, *, file: str) -> list[Any]:
    """Parse with libyaml directly when the text cannot hold an alias bomb, else safely.

    Without an anchor (``&``) there can be no alias, so the node-by-node expansion check of
    ``load_yaml_documents`` (most of its cost on large manifests) has nothing to find. Any
    problem is re-parsed by ``load_yaml_documents`` so the error reads the same either way.
    """
    if "&" in text or len(text) > MAX_YAML_BYTES:
        return load_yaml_documents(text, file=file)
    try:
        return list(yaml.load_all(text, Loader=_FAST_LOADER))
    except (yaml.YAMLError, RecursionError):
        return load_yaml_documents(text, file=file)


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
    """Dump objects as multi-document YAML with sorted keys: equal input gives equal bytes.

    Manifests are plain JSON-like data, so a small block-style writer handles them several
    times faster than PyYAML's representer; anything outside that shape (a non-string key, a
    float, a type YAML would tag) goes through PyYAML instead, with the same key order.
    """
    parts = []
    for obj in objects:
        lines: list[str] = ["---"]
        try:
            _write_mapping(obj, "", lines)
        except _NotPlainData:
            parts.append(_dump_with_pyyaml(obj))
            continue
        parts.append("\n".join(lines) + "\n")
    return "".join(parts)


class _NotPlainData(Exception):
    """The value needs PyYAML's representer."""


# Strings written without quotes: conservative, so that reading them back gives the same
# string (the resolver check below rules out true, 1.0, null, ~ and other typed scalars).
_PLAIN_STRING = re.compile(r"^[A-Za-z0-9_./][A-Za-z0-9_./:@=+, -]*$")
_RESOLVER = yaml.resolver.Resolver()
_STR_TAG = "tag:yaml.org,2002:str"


@functools.lru_cache(maxsize=65536)
def _string(value: str) -> str:
    if (
        _PLAIN_STRING.match(value)
        and not value.endswith((" ", ":"))
        and ": " not in value
        and " #" not in value
        and _resolves_to_str(value)
    ):
        return value
    if "'" not in value and value.isprintable():
        return f"'{value}'"
    return json.dumps(value, ensure_ascii=False)


def _resolves_to_str(value: str) -> bool:
    tag: str = _RESOLVER.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    return tag == _STR_TAG


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return _string(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    raise _NotPlainData


def _write_mapping(mapping: Mapping[Any, Any], indent: str, lines: list[str]) -> None:
    if not all(isinstance(k, str) for k in mapping):
        raise _NotPlainData
    for key in sorted(mapping):
        value = mapping[key]
        head = f"{indent}{_string(key)}:"
        if isinstance(value, dict) and value:
            lines.append(head)
            _write_mapping(value, indent + "  ", lines)
        elif isinstance(value, list) and value:
            lines.append(head)
            _write_sequence(value, indent, lines)
        else:
            lines.append(f"{head} {_empty_or_scalar(value)}")


def _write_sequence(items: list[Any], indent: str, lines: list[str]) -> None:
    for item in items:
        if isinstance(item, dict | list) and item:
            start = len(lines)
            if isinstance(item, dict):
                _write_mapping(item, indent + "  ", lines)
            else:
                _write_sequence(item, indent + "  ", lines)
            # The first line of the nested block moves up onto the "- " of the item.
            lines[start] = f"{indent}- {lines[start][len(indent) + 2 :]}"
        else:
            lines.append(f"{indent}- {_empty_or_scalar(item)}")


def _empty_or_scalar(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def _dump_with_pyyaml(obj: Manifest) -> str:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(
        obj,
        Dumper=dumper,
        sort_keys=True,
        default_flow_style=False,
        explicit_start=True,
        allow_unicode=True,
        width=1 << 16,
    )
