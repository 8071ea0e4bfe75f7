"""Raw-YAML overlays: apply ``yaml.overlays`` (replacements and patches) to a bundle's files."""

from __future__ import annotations

import copy
import json
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

import jsonpatch

from flotilla.errors import RenderError, SpecError, short_repr
from flotilla.yamlload import load_yaml

OVERLAY_PREFIX = "overlays/"
_PATCH_MARK = "_patch."

# API groups compiled into Kubernetes itself: Fleet picks a strategic merge patch for a target
# whose type the client library knows, and a JSON merge patch for anything else (custom kinds).
_BUILTIN_GROUPS = frozenset(
    {
        "",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "apiregistration.k8s.io",
        "apps",
        "autoscaling",
        "batch",
        "certificates.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "events.k8s.io",
        "flowcontrol.apiserver.k8s.io",
        "networking.k8s.io",
        "node.k8s.io",
        "policy",
        "rbac.authorization.k8s.io",
        "resource.k8s.io",
        "scheduling.k8s.io",
        "storage.k8s.io",
    }
)

# Lists that a strategic merge patch merges item by item, keyed by these fields (the
# ``patchMergeKey`` tags of the built-in types); every other list is replaced whole.
_MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "volumes": ("name",),
    "env": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "hostAliases": ("ip",),
    "ports": ("containerPort", "port"),
    "readinessGates": ("conditionType",),
    "conditions": ("type",),
    "topologySpreadConstraints": ("topologyKey",),
    "resourceClaims": ("name",),
    "schedulingGates": ("name",),
}

_DIRECTIVE = "$patch"


def check_overlays(
    resources: Mapping[str, bytes], overlays: Sequence[str], *, field: str, file: str
) -> None:
    """Raise SpecError when an overlay name has no ``overlays/<name>/`` directory in the bundle."""
    present = {
        path[len(OVERLAY_PREFIX) :].split("/", 1)[0]
        for path in resources
        if path.startswith(OVERLAY_PREFIX) and path.count("/") >= 2
    }
    for name in overlays:
        if name not in present:
            raise SpecError(
                f"{short_repr(name)} does not exist (no {OVERLAY_PREFIX}{name}/ directory)",
                file=file,
                field=field,
            )


def apply_overlays(
    resources: Mapping[str, bytes], overlays: Sequence[str], *, bundle_dir: str = ""
) -> dict[str, bytes]:
    """Return the bundle's files with each overlay applied in order and ``overlays/`` removed.

    Within one overlay, replacement files are applied before patches so that an overlay may
    both add a file and patch it; Fleet leaves that order to Go's map iteration.
    """
    fleet_yaml = posixpath.join(bundle_dir, "fleet.yaml")
    check_overlays(resources, overlays, field="yaml.overlays", file=fleet_yaml)
    files = dict(resources)
    for overlay in overlays:
        prefix = f"{OVERLAY_PREFIX}{overlay}/"
        members = sorted(p for p in resources if p.startswith(prefix))
        patches: list[tuple[str, str]] = []
        for path in members:
            relative = path[len(prefix) :]
            target = _patch_target(relative)
            if target is None:
                files[relative] = resources[path]
            else:
                patches.append((path, target))
        for path, target in patches:
            where = posixpath.join(bundle_dir, path)
            if target not in files:
                raise RenderError(f"patch target {target!r} does not exist", file=where)
            files[target] = patch_file(
                files[target],
                resources[path],
                where=where,
                target_file=posixpath.join(bundle_dir, target),
            )
    return {p: data for p, data in files.items() if not p.startswith(OVERLAY_PREFIX)}


def _patch_target(relative: str) -> str | None:
    directory, base = posixpath.split(relative)
    if _PATCH_MARK not in base:
        return None
    return posixpath.join(directory, base.replace(_PATCH_MARK, ".", 1))


def patch_file(target: bytes, patch: bytes, *, where: str, target_file: str) -> bytes:
    """Patch one manifest file with one patch file; the kind of patch is chosen by content.

    A list is a JSON patch (RFC 6902); a map against a built-in kind is a strategic merge
    patch; a map against any other kind is a JSON merge patch (RFC 7386). The result is JSON,
    which is valid YAML.
    """
    document = load_yaml(target.decode("utf-8", errors="replace"), file=target_file)
    change = load_yaml(patch.decode("utf-8", errors="replace"), file=where)
    if isinstance(change, list):
        try:
            result = jsonpatch.apply_patch(document, change)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
            raise RenderError(f"JSON patch failed: {err}", file=where) from err
        except (TypeError, AttributeError, KeyError) as err:
            raise RenderError(
                "JSON patch is malformed: each entry needs op and path", file=where
            ) from err
    elif isinstance(change, dict):
        if not isinstance(document, dict):
            raise RenderError("a map patch needs a single-object target", file=where)
        if _is_builtin(document):
            result = merge_strategic(document, change)
        else:
            result = merge_json(document, change)
    else:
        raise RenderError(
            f"a patch must be a map or a list, got {type(change).__name__}", file=where
        )
    return json.dumps(result, sort_keys=True).encode()


def _is_builtin(document: Mapping[str, Any]) -> bool:
    api_version = document.get("apiVersion")
    if not isinstance(api_version, str):
        return False
    group = api_version.rpartition("/")[0]
    return group in _BUILTIN_GROUPS


def merge_json(target: Any, patch: Any) -> Any:
    """Apply a JSON merge patch (RFC 7386): maps merge, ``null`` deletes, the rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_json(result.get(key), value)
    return result


def merge_strategic(target: Any, patch: Any) -> Any:
    """Apply the essential rules of a Kubernetes strategic merge patch to built-in objects.

    Supported: map merge with ``null`` deleting a key; ``$patch: replace`` and ``$patch: delete``
    on maps and list items; lists in ``_MERGE_KEYS`` merged by their key; other lists replaced.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get(_DIRECTIVE)
    body = {k: v for k, v in patch.items() if k != _DIRECTIVE}
    if directive == "replace":
        return copy.deepcopy(body)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in body.items():
        if value is None or (isinstance(value, dict) and value.get(_DIRECTIVE) == "delete"):
            result.pop(key, None)
        elif isinstance(value, list) and key in _MERGE_KEYS:
            result[key] = _merge_keyed_list(result.get(key), value, _MERGE_KEYS[key])
        else:
            result[key] = merge_strategic(result.get(key), value)
    return result


def _merge_keyed_list(target: Any, patch: list[Any], keys: tuple[str, ...]) -> list[Any]:
    if any(isinstance(item, dict) and item.get(_DIRECTIVE) == "replace" for item in patch):
        return [
            copy.deepcopy(item)
            for item in patch
            if not (isinstance(item, dict) and item.get(_DIRECTIVE) == "replace")
        ]
    result: list[Any] = list(target) if isinstance(target, list) else []
    for item in patch:
        key = _merge_key(item, keys)
        index = _find_item(result, key)
        if isinstance(item, dict) and item.get(_DIRECTIVE) == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(merge_strategic({}, item) if isinstance(item, dict) else item)
        else:
            result[index] = merge_strategic(result[index], item)
    return result


def _merge_key(item: Any, keys: tuple[str, ...]) -> tuple[str, Any] | None:
    if isinstance(item, dict):
        for key in keys:
            if key in item:
                return key, item[key]
    return None


def _find_item(items: list[Any], key: tuple[str, Any] | None) -> int | None:
    if key is None:
        return None
    field, value = key
    for index, item in enumerate(items):
        if isinstance(item, dict) and item.get(field) == value:
            return index
    return None
