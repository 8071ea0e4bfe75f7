"""dependsOn: resolution, the per-cluster check, and cycle detection."""

from __future__ import annotations

from typing import Any

import pytest

from flotilla.depends import (
    BundleInfo,
    Dependency,
    check_dependencies,
    check_no_cycles,
    find_cycles,
    resolve_dependencies,
    states_on_cluster,
)
from flotilla.errors import SpecError
from flotilla.models import BundleRef
from flotilla.status import BundleState

BUNDLES = [
    BundleInfo(name="repo-crds", labels={"tier": "base"}),
    BundleInfo(name="repo-cert-manager", labels={"tier": "base", "kind": "operator"}),
    BundleInfo(name="repo-monitoring", labels={"tier": "platform"}),
    BundleInfo(name="repo-app", labels={"tier": "app"}),
]


def app_with(*entries: dict[str, Any]) -> BundleInfo:
    return BundleInfo(
        name="repo-app",
        labels={"tier": "app"},
        depends_on=[BundleRef.model_validate(e) for e in entries],
    )


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([{"name": "repo-crds"}], [Dependency(bundle="repo-crds")]),
        (
            [{"selector": {"matchLabels": {"tier": "base"}}}],
            [Dependency(bundle="repo-cert-manager"), Dependency(bundle="repo-crds")],
        ),
        (
            [{"name": "repo-monitoring", "acceptedStates": ["Ready", "Modified"]}],
            [Dependency(bundle="repo-monitoring", accepted_states=("Ready", "Modified"))],
        ),
        (
            # Entry order is kept; the same bundle twice with the same states is listed once.
            [{"name": "repo-monitoring"}, {"name": "repo-crds"}, {"name": "repo-monitoring"}],
            [Dependency(bundle="repo-monitoring"), Dependency(bundle="repo-crds")],
        ),
        (
            # A selector never picks the bundle itself: {} means "every other bundle".
            [{"selector": {}}],
            [
                Dependency(bundle="repo-cert-manager"),
                Dependency(bundle="repo-crds"),
                Dependency(bundle="repo-monitoring"),
            ],
        ),
    ],
)
def test_resolve_dependencies(entries: list[dict[str, Any]], expected: list[Dependency]) -> None:
    assert resolve_dependencies(app_with(*entries), BUNDLES) == expected


def test_a_bundle_without_depends_on_has_no_dependencies() -> None:
    assert resolve_dependencies(BUNDLES[0], BUNDLES) == []


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (
            [{"name": "repo-crd"}],
            "apps/fleet.yaml: dependsOn[0].name: no bundle with this name, "
            "did you mean 'repo-crds'? ('repo-crd')",
        ),
        (
            [{"name": "repo-crds"}, {"name": "elsewhere"}],
            "apps/fleet.yaml: dependsOn[1].name: no bundle with this name ('elsewhere')",
        ),
        (
            [{"selector": {"matchLabels": {"tier": "db"}}}],
            "apps/fleet.yaml: dependsOn[0].selector: selects no bundle "
            "({'matchLabels': {'tier': 'db'}})",
        ),
        (
            [{"selector": {"matchLabels": {"tier": "app"}}}],
            "apps/fleet.yaml: dependsOn[0].selector: selects no bundle "
            "({'matchLabels': {'tier': 'app'}})",
        ),
        (
            [{"name": "repo-app"}],
            "apps/fleet.yaml: dependsOn[0].name: a bundle cannot depend on itself ('repo-app')",
        ),
    ],
)
def test_resolve_dependencies_errors_name_the_entry(
    entries: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(SpecError) as caught:
        resolve_dependencies(app_with(*entries), BUNDLES, file="apps/fleet.yaml")
    assert str(caught.value) == message


DEPS = [
    Dependency(bundle="crds"),
    Dependency(bundle="monitoring", accepted_states=("Ready", "Modified")),
]


@pytest.mark.parametrize(
    ("states", "satisfied", "waiting_for"),
    [
        ({"crds": "Ready", "monitoring": "Ready"}, True, []),
        ({"crds": "Ready", "monitoring": "Modified"}, True, []),
        ({"crds": "Modified", "monitoring": "Ready"}, False, ["crds"]),
        ({"crds": "NotReady", "monitoring": "ErrApplied"}, False, ["crds", "monitoring"]),
        ({"crds": "Ready"}, False, ["monitoring"]),
        ({}, False, ["crds", "monitoring"]),
        ({"crds": "WaitingForDependency", "monitoring": "Ready"}, False, ["crds"]),
    ],
)
def test_check_dependencies_on_one_cluster(
    states: dict[str, str], satisfied: bool, waiting_for: list[str]
) -> None:
    check = check_dependencies(DEPS, states)
    assert check.satisfied is satisfied
    assert check.waiting_for == waiting_for


def test_no_dependencies_are_always_satisfied() -> None:
    assert check_dependencies([], {}).satisfied


def test_a_bundle_named_twice_waits_until_every_entry_accepts_it() -> None:
    deps = [Dependency(bundle="db"), Dependency(bundle="db", accepted_states=("Modified",))]
    assert check_dependencies(deps, {"db": "Ready"}).waiting_for == ["db"]


@pytest.mark.parametrize(
    ("graph", "cycles"),
    [
        ({}, []),
        ({"a": []}, []),
        ({"a": ["b"], "b": ["c"]}, []),
        ({"a": ["b", "c"], "b": ["d"], "c": ["d"]}, []),
        ({"a": ["a"]}, [["a"]]),
        ({"a": ["b"], "b": ["a"]}, [["a", "b"]]),
        ({"c": ["a"], "a": ["b"], "b": ["c"], "d": ["a"]}, [["a", "b", "c"]]),
        (
            {"x": ["y"], "y": ["x"], "a": ["b"], "b": ["a"], "m": ["x", "a"]},
            [["a", "b"], ["x", "y"]],
        ),
        # Two cycles sharing a bundle are one group: every bundle in it is reported.
        ({"a": ["b"], "b": ["a", "c"], "c": ["b"]}, [["a", "b", "c"]]),
        ({"a": ["missing"]}, []),
        ({"a": ["b"], "b": ["b"]}, [["b"]]),
    ],
)
def test_find_cycles(graph: dict[str, list[str]], cycles: list[list[str]]) -> None:
    assert find_cycles(graph) == cycles


def test_find_cycles_handles_long_chains_without_recursion() -> None:
    chain = {f"b{i:05d}": [f"b{i + 1:05d}"] for i in range(5000)}
    assert find_cycles(chain) == []
    chain["b05000"] = ["b00000"]
    assert find_cycles(chain) == [sorted(chain)]


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        ({"a": ["b"], "b": ["a"]}, "dependsOn: bundles wait for each other: a, b"),
        (
            {"a": ["b"], "b": ["a"], "x": ["x"]},
            "dependsOn: bundles wait for each other: a, b and 1 more cycle(s)",
        ),
    ],
)
def test_check_no_cycles_is_one_line(graph: dict[str, list[str]], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        check_no_cycles(graph)
    assert str(caught.value) == message


def test_check_no_cycles_accepts_a_dag() -> None:
    check_no_cycles({"a": ["b"], "b": []})


READY, NOT_READY = BundleState.READY, BundleState.NOT_READY


@pytest.mark.parametrize(
    ("commits", "expected"),
    [
        # Reported at the dependent's commit: the dependency's new version is what it says.
        ({"db": "c2", "cache": "c2"}, {"db": READY, "cache": NOT_READY}),
        # Still at the old commit (its new version not planned yet): not known, waited for.
        ({"db": "c1", "cache": "c2"}, {"cache": NOT_READY}),
        # A sender that did not say which commit (before the rule): taken as it is.
        ({}, {"db": READY, "cache": NOT_READY}),
    ],
)
def test_states_on_cluster_are_those_of_the_dependents_commit(
    commits: dict[str, str], expected: dict[str, BundleState]
) -> None:
    states = {"db": {"one": READY, "two": READY}, "cache": {"one": NOT_READY}}
    assert states_on_cluster(states, commits, cluster="one", commit="c2") == expected


def test_an_upgrade_waits_for_the_dependencys_new_version() -> None:
    deps = [Dependency(bundle="db")]
    old_ready = states_on_cluster({"db": {"one": READY}}, {"db": "c1"}, cluster="one", commit="c2")
    assert check_dependencies(deps, old_ready).waiting_for == ["db"]
    new_ready = states_on_cluster({"db": {"one": READY}}, {"db": "c2"}, cluster="one", commit="c2")
    assert check_dependencies(deps, new_ready).satisfied
