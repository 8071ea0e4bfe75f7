"""Which watch events reach a bundle, and the back-off of drift corrections in a row."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from flotilla.objectwatch import changed_by_flotilla, correction_backoff, fingerprint

BASE: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "web",
        "namespace": "shop",
        "uid": "u1",
        "resourceVersion": "10",
        "generation": 2,
        "labels": {"app": "web"},
        "annotations": {"deployment.kubernetes.io/revision": "3"},
        "managedFields": [{"manager": "helm"}],
    },
    "spec": {"replicas": 2},
    "status": {"readyReplicas": 2},
}


def changed(**parts: Any) -> dict[str, Any]:
    obj = {**BASE, **{k: v for k, v in parts.items() if k != "metadata"}}
    obj["metadata"] = {**BASE["metadata"], **parts.get("metadata", {})}
    return obj


@pytest.mark.parametrize(
    ("after", "same"),
    [
        (changed(status={"readyReplicas": 1}), True),
        (changed(metadata={"resourceVersion": "11", "managedFields": []}), True),
        (changed(metadata={"generation": 3}), True),
        (changed(metadata={"annotations": {"deployment.kubernetes.io/revision": "4"}}), True),
        (changed(spec={"replicas": 3}), False),
        (changed(metadata={"labels": {"app": "other"}}), False),
        (changed(metadata={"annotations": {"note": "hand"}}), False),
        (changed(data={"a": "1"}), False),
    ],
    ids=[
        "status",
        "bookkeeping",
        "generation",
        "rollout-revision",
        "spec",
        "label",
        "annotation",
        "content",
    ],
)
def test_fingerprint_ignores_status_and_bookkeeping(after: dict[str, Any], same: bool) -> None:
    assert (fingerprint(after) == fingerprint(BASE)) is same


def fields(*entries: tuple[str, str]) -> dict[str, Any]:
    return {"metadata": {"managedFields": [{"manager": m, "time": t} for m, t in entries]}}


@pytest.mark.parametrize(
    ("obj", "own"),
    [
        (fields(("helm", "2026-01-01T00:00:01Z")), True),
        (
            fields(("kubectl-edit", "2026-01-01T00:00:00Z"), ("flotilla", "2026-01-01T00:00:05Z")),
            True,
        ),
        (
            fields(("helm", "2026-01-01T00:00:00Z"), ("kubectl-scale", "2026-01-01T00:00:05Z")),
            False,
        ),
        # written in the same second: the hand edit may be the newer one
        (fields(("helm", "2026-01-01T00:00:05Z"), ("kubectl-edit", "2026-01-01T00:00:05Z")), False),
        ({"metadata": {}}, False),
    ],
    ids=["helm", "correction-last", "hand-edit-last", "same-second", "no-fields"],
)
def test_changed_by_flotilla_reads_the_newest_writer(obj: dict[str, Any], own: bool) -> None:
    assert changed_by_flotilla(obj) is own


@pytest.mark.parametrize(
    ("in_a_row", "seconds"),
    [(0, 0), (1, 10), (2, 20), (3, 40), (5, 160), (6, 300), (50, 300)],
)
def test_correction_backoff_doubles_up_to_five_minutes(in_a_row: int, seconds: int) -> None:
    assert correction_backoff(in_a_row) == timedelta(seconds=seconds)
