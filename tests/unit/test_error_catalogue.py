"""One error vocabulary: every FlotillaError's Temporal ``type`` is in the catalogue of
flotilla/errors.py, with the retryability the catalogue gives it, and the retry policies'
non-retryable list names only types that are raised as permanent."""

from __future__ import annotations

import pytest

import activities.contentgc
import activities.deploy
import activities.gitops
import activities.kube
import activities.kubesecrets
import activities.registry
import activities.writeback
from activities.helm import HelmError
from activities.kube import map_api_error
from flotilla import errors
from flotilla.errors import (
    NON_RETRYABLE_ERRORS,
    NON_RETRYABLE_REGISTRY_ERRORS,
    RETRYABLE,
    FlotillaError,
)

# Imported for their FlotillaError subclasses, which the walk below finds.
_MODULES = (
    activities.contentgc,
    activities.deploy,
    activities.gitops,
    activities.kube,
    activities.kubesecrets,
    activities.registry,
    activities.writeback,
)


def _classes(base: type[FlotillaError]) -> list[type[FlotillaError]]:
    found = [base]
    for sub in base.__subclasses__():
        found.extend(_classes(sub))
    return found


CLASSES = _classes(FlotillaError)


def test_the_walk_finds_the_activities_errors() -> None:
    names = {c.__name__ for c in CLASSES}
    assert {"KubeError", "HelmError", "SecretStoreError", "ContentError", "GitError"} <= names
    assert {"RegistryError", "RegistryAuthError", "SettingsError"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_every_class_type_is_in_the_catalogue_with_its_retryability(
    cls: type[FlotillaError],
) -> None:
    assert cls.type in RETRYABLE, f"{cls.__name__}.type {cls.type!r} is not in the catalogue"
    expected = RETRYABLE[cls.type]
    if expected is not None:
        assert cls.retryable is expected


@pytest.mark.parametrize(
    ("message", "retryable", "expected"),
    [
        ("Kubernetes cluster unreachable: connection refused", None, ("ClusterUnreachable", True)),
        ("timed out waiting for the condition", None, ("WaitTimeout", False)),
        # Helm 4's status watcher, its deadline cut off the end of a long message
        (
            "resource Deployment/app/web not ready. status: InProgress, message: Available: 0/2",
            None,
            ("WaitTimeout", False),
        ),
        ('secrets "x" is forbidden: no', None, ("Forbidden", False)),
        ('Deployment "web" is invalid: spec', None, ("InvalidManifest", False)),
        ("template: chart/templates/a.yaml:1: nil pointer", None, ("ChartRenderFailed", False)),
        ("something else", None, ("HelmFailed", False)),
        ("upgrade: helm did not finish within 60s", True, ("HelmFailed", True)),
    ],
)
def test_helm_errors_classify_like_kube_errors(
    message: str, retryable: bool | None, expected: tuple[str, bool]
) -> None:
    err = HelmError(message, retryable=retryable)
    assert (err.type, err.retryable) == expected
    assert err.type in RETRYABLE


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (422, ("InvalidManifest", False)),
        (403, ("Forbidden", False)),
        (404, ("NotFound", False)),
        (409, ("Conflict", True)),
        (429, ("Throttled", True)),
        (503, ("ClusterUnreachable", True)),
    ],
)
def test_kube_errors_take_type_and_retryability_from_the_status(
    status: int, expected: tuple[str, bool]
) -> None:
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    err = map_api_error(ApiException(status=status), verb="get", what="x", server="s")
    assert (err.type, err.retryable) == expected


def test_an_instance_overrides_its_class() -> None:
    err = errors.SpecError("bad", type=errors.INVALID_SPEC, retryable=True, retry_after=3.0)
    assert (err.type, err.retryable, err.retry_after) == ("InvalidSpec", True, 3.0)
    assert (errors.SpecError.type, errors.SpecError.retryable) == ("SpecError", False)


@pytest.mark.parametrize("listed", [NON_RETRYABLE_ERRORS, NON_RETRYABLE_REGISTRY_ERRORS])
def test_retry_policies_name_only_types_raised_as_permanent(listed: list[str]) -> None:
    permanent_classes = {c.type for c in CLASSES if not c.retryable}
    for name in listed:
        assert RETRYABLE[name] is False, f"{name} is raised retryable somewhere"
        # Raised by a class, or by an activity naming a permanent SpecError (InvalidSpec).
        assert name in permanent_classes or name == errors.INVALID_SPEC


def test_no_type_is_raised_both_ways_unless_the_catalogue_says_so() -> None:
    by_type: dict[str, set[bool]] = {}
    for cls in CLASSES:
        by_type.setdefault(cls.type, set()).add(cls.retryable)
    for name, ways in by_type.items():
        if len(ways) > 1:
            assert RETRYABLE[name] is None, f"{name} is raised both ways: mark it None"
