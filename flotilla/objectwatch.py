"""Which live-object changes a watch reports to a bundle, and how often drift is corrected.

A watch event only triggers a drift check (``flotilla.drift`` decides what is drift); these
rules keep the checks for changes someone else made to what a person would call the object:
not its status, not server bookkeeping, not flotilla's own deploys and corrections.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

# Field managers of flotilla's own writes: helm upgrades and server-side-apply corrections.
OWN_MANAGERS = frozenset({"helm", "flotilla"})
# Written by the API server or controllers on every change; never what a person edits.
_VOLATILE_METADATA = (
    "resourceVersion",
    "managedFields",
    "generation",
    "creationTimestamp",
    "selfLink",
)
_VOLATILE_ANNOTATIONS = ("deployment.kubernetes.io/revision",)

# A deployment corrected again and again (another writer changes it in a loop) is corrected
# at once the first time, then after 10 s, 20 s, 40 s ... at most every 5 minutes.
FIRST_BACKOFF = timedelta(seconds=10)
MAX_BACKOFF = timedelta(minutes=5)


def fingerprint(obj: Mapping[str, Any]) -> str:
    """A digest of what a person could change: the object without its status and the
    metadata the server keeps. Equal fingerprints mean a status-only change."""
    metadata = dict(obj.get("metadata") or {})
    for key in _VOLATILE_METADATA:
        metadata.pop(key, None)
    annotations = {
        k: v
        for k, v in (metadata.get("annotations") or {}).items()
        if k not in _VOLATILE_ANNOTATIONS
    }
    metadata["annotations"] = annotations
    rest = {k: v for k, v in obj.items() if k not in ("status", "metadata")}
    text = json.dumps({"metadata": metadata, **rest}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def changed_by_flotilla(obj: Mapping[str, Any]) -> bool:
    """The newest write recorded in ``managedFields`` is flotilla's own (a deploy or a
    correction): no reason to check. Writes in the same second count together, so a hand
    edit right after a deploy still counts."""
    entries = [e for e in (obj.get("metadata") or {}).get("managedFields") or [] if e.get("time")]
    if not entries:
        return False
    newest = max(str(e["time"]) for e in entries)
    return all(e.get("manager") in OWN_MANAGERS for e in entries if str(e["time"]) == newest)


def correction_backoff(in_a_row: int) -> timedelta:
    """How long after the last correction the next one may come, once ``in_a_row``
    corrections followed each other without a clean check in between."""
    if in_a_row <= 0:
        return timedelta(0)
    factor: int = 2 ** min(in_a_row - 1, 16)
    return min(FIRST_BACKOFF * factor, MAX_BACKOFF)
