"""What a deploy would change on one cluster: created, changed and deleted objects, as diffs.

Pure: the activity (``activities/diff.py``) reads the live objects and asks the API server for
each planned object after a server-side dry-run apply (so defaults and admission apply), then
calls :func:`compare_release`. A Secret is only ever said to be created, changed or deleted:
its content never enters a diff.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import yaml
from pydantic import BaseModel, Field

from flotilla.drift import SERVER_METADATA, ObjectKey

# One object's diff is cut after this many lines (the report travels through history).
MAX_DIFF_LINES = 200
_CONTROLLER_ANNOTATIONS = ("deployment.kubernetes.io/revision",)
_SECRET_KINDS = frozenset({"Secret"})


class Change(StrEnum):
    CREATED = "created"
    CHANGED = "changed"
    DELETED = "deleted"


class ObjectChange(BaseModel):
    """One object the deploy would create, change or delete."""

    change: Change
    # ``Kind namespace/name`` (``Kind name`` for cluster-scoped objects).
    object: str
    # A unified diff, live first; always empty for a Secret.
    diff: str = ""


class DeploymentDiff(BaseModel):
    """What deploying a bundle would do on one cluster; ``error`` when it could not be told."""

    bundle: str
    cluster: str
    changes: list[ObjectChange] = Field(default_factory=list)
    unchanged: int = 0
    error: str = ""


def describe(key: ObjectKey) -> str:
    where = f"{key.namespace}/{key.name}" if key.namespace else key.name
    return f"{key.kind} {where}"


def comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without what the server and controllers write (status, server metadata)."""
    out = {k: v for k, v in obj.items() if k != "status"}
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in SERVER_METADATA}
    annotations = {
        k: v
        for k, v in (metadata.get("annotations") or {}).items()
        if k not in _CONTROLLER_ANNOTATIONS
    }
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    out["metadata"] = metadata
    return out


def _lines(obj: Mapping[str, Any] | None) -> list[str]:
    if obj is None:
        return []
    return yaml.safe_dump(comparable(obj), sort_keys=True).splitlines(keepends=True)


def unified(key: ObjectKey, live: Mapping[str, Any] | None, planned: Mapping[str, Any]) -> str:
    """A unified diff of the object, live first, cut after ``MAX_DIFF_LINES`` lines."""
    name = describe(key).replace(" ", "/")
    lines = list(
        difflib.unified_diff(
            _lines(live),
            _lines(planned),
            fromfile=f"live/{name}" if live is not None else "/dev/null",
            tofile=f"planned/{name}",
        )
    )
    if len(lines) > MAX_DIFF_LINES:
        cut = len(lines) - MAX_DIFF_LINES
        lines = [*lines[:MAX_DIFF_LINES], f"... {cut} more lines\n"]
    return "".join(lines)


def compare_release(
    planned: Mapping[ObjectKey, Mapping[str, Any]],
    live: Mapping[ObjectKey, Mapping[str, Any] | None],
    previous: list[ObjectKey],
) -> tuple[list[ObjectChange], int]:
    """Changes a deploy would make, and how many planned objects it leaves as they are.

    ``planned`` is each object as the API server would store it (a dry-run apply's answer),
    ``live`` the objects as they are (None: absent), ``previous`` what the deployed revision
    holds: those the new version lacks would be deleted, if they are still there.
    """
    changes: list[ObjectChange] = []
    unchanged = 0
    for key in sorted(planned, key=str):
        want = planned[key]
        have = live.get(key)
        secret = key.kind in _SECRET_KINDS
        if have is None:
            text = "" if secret else unified(key, None, want)
            changes.append(ObjectChange(change=Change.CREATED, object=describe(key), diff=text))
        elif comparable(have) != comparable(want):
            text = "" if secret else unified(key, have, want)
            changes.append(ObjectChange(change=Change.CHANGED, object=describe(key), diff=text))
        else:
            unchanged += 1
    for key in sorted(set(previous) - set(planned), key=str):
        if live.get(key) is not None:
            changes.append(ObjectChange(change=Change.DELETED, object=describe(key)))
    return changes, unchanged
