"""flotilla.livediff: created / changed / deleted from planned, live and deployed objects."""

from __future__ import annotations

from typing import Any

import pytest

from flotilla.drift import ObjectKey
from flotilla.livediff import MAX_DIFF_LINES, Change, comparable, compare_release, unified


def cm(name: str, data: dict[str, str], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "app", **metadata},
        "data": data,
    }


def secret(name: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "app"},
        "data": {"password": value},
    }


def key(kind: str, name: str) -> ObjectKey:
    return ObjectKey(api_version="v1", kind=kind, namespace="app", name=name)


def test_server_fields_and_status_are_never_compared() -> None:
    live = cm(
        "a",
        {"x": "1"},
        uid="u",
        resourceVersion="9",
        managedFields=[{"manager": "helm"}],
        creationTimestamp="t",
        annotations={"deployment.kubernetes.io/revision": "3"},
    )
    live["status"] = {"anything": True}
    assert comparable(live) == comparable(cm("a", {"x": "1"}))


def test_a_changed_object_gets_a_unified_diff_live_first() -> None:
    changes, unchanged = compare_release(
        {key("ConfigMap", "a"): cm("a", {"x": "2"})},
        {key("ConfigMap", "a"): cm("a", {"x": "1"})},
        [],
    )
    assert unchanged == 0
    (change,) = changes
    assert (change.change, change.object) == (Change.CHANGED, "ConfigMap app/a")
    assert (
        "--- live/ConfigMap/app/a" in change.diff and "+++ planned/ConfigMap/app/a" in change.diff
    )
    assert "-  x: '1'" in change.diff and "+  x: '2'" in change.diff


def test_created_deleted_and_unchanged() -> None:
    planned = {
        key("ConfigMap", "same"): cm("same", {}),
        key("ConfigMap", "new"): cm("new", {"n": "1"}),
    }
    live = {
        key("ConfigMap", "same"): cm("same", {}),
        key("ConfigMap", "new"): None,
        key("ConfigMap", "old"): cm("old", {}),
        key("ConfigMap", "gone-already"): None,
    }
    previous = [key("ConfigMap", "same"), key("ConfigMap", "old"), key("ConfigMap", "gone-already")]

    changes, unchanged = compare_release(planned, live, previous)

    assert unchanged == 1
    assert [(c.change, c.object) for c in changes] == [
        (Change.CREATED, "ConfigMap app/new"),
        (Change.DELETED, "ConfigMap app/old"),
    ]
    assert "+  n: '1'" in changes[0].diff and changes[1].diff == ""


@pytest.mark.parametrize("live_value", [None, "b2xk"])
def test_a_secret_is_compared_but_never_shown(live_value: str | None) -> None:
    live = {key("Secret", "s"): secret("s", live_value) if live_value else None}

    changes, _ = compare_release({key("Secret", "s"): secret("s", "bmV3")}, live, [])

    (change,) = changes
    assert change.change is (Change.CHANGED if live_value else Change.CREATED)
    assert change.diff == ""


def test_an_unchanged_secret_is_unchanged() -> None:
    same = {key("Secret", "s"): secret("s", "c2FtZQ==")}
    assert compare_release(same, dict(same), []) == ([], 1)


def test_a_long_diff_is_cut() -> None:
    many = {f"k{i}": str(i) for i in range(MAX_DIFF_LINES * 2)}
    text = unified(key("ConfigMap", "a"), cm("a", {}), cm("a", many))
    assert text.count("\n") == MAX_DIFF_LINES + 1
    assert text.endswith("more lines\n")
