"""Helm values merging as Fleet does it: maps merge key by key, anything else is replaced."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


def merge_values(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Deep-merge values layers in order, later wins; None layers are skipped.

    Used for ``values`` then each ``valuesFiles`` entry, for a customization's values over
    the bundle's, and for ``valuesFrom`` read on the cluster last. The inputs are not changed.
    """
    result: dict[str, Any] = {}
    for layer in layers:
        if layer is not None:
            result = _merge_two(result, layer)
    return result


def _merge_two(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    # Lists are replaced whole, and an explicit null replaces too (Helm later reads a null
    # as "delete this key"), matching wrangler's MergeMaps that Fleet uses.
    result = dict(base)
    for key, value in overlay.items():
        current = result.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            result[key] = _merge_two(current, value)
        else:
            result[key] = copy.deepcopy(value)
    return result
