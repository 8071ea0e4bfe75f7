"""Semantic versions and ranges: precedence and Masterminds/semver v3 constraints."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from flotilla.errors import SpecError
from flotilla.semver import parse_constraint, parse_version


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("1.2.3", (1, 2, 3, "", "", 3)),
        ("v1.2.3", (1, 2, 3, "", "", 3)),
        ("1.2", (1, 2, 0, "", "", 2)),
        ("7", (7, 0, 0, "", "", 1)),
        ("1.2.3-rc.1+build.5", (1, 2, 3, "rc.1", "build.5", 3)),
        ("2.0.0-alpha-1", (2, 0, 0, "alpha-1", "", 3)),
    ],
)
def test_parse_version(text: str, fields: tuple[Any, ...]) -> None:
    version = parse_version(text)
    assert version is not None
    got = (version.major, version.minor, version.patch, version.prerelease, version.build)
    assert (*got, version.parts) == fields


@pytest.mark.parametrize("text", ["latest", "main-3f2a", "1.2.3.4", "v", "", "1.2.3-", "x1.2"])
def test_parse_version_rejects_non_versions(text: str) -> None:
    assert parse_version(text) is None


SEMVER_ORDER = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.1",
    "1.1.0",
    "2.0.0",
]


@pytest.mark.parametrize(("lower", "higher"), list(itertools.pairwise(SEMVER_ORDER)))
def test_precedence_follows_semver(lower: str, higher: str) -> None:
    low, high = parse_version(lower), parse_version(higher)
    assert low is not None and high is not None
    assert low.key() < high.key()


def test_build_metadata_does_not_count_for_precedence() -> None:
    a, b = parse_version("1.2.3+one"), parse_version("v1.2.3+two")
    assert a is not None and b is not None
    assert a.key() == b.key()


@pytest.mark.parametrize(
    ("constraint", "version", "expected"),
    [
        (">=1.0.0 <2.0.0", "1.0.0", True),
        (">=1.0.0 <2.0.0", "1.5.3", True),
        (">=1.0.0 <2.0.0", "2.0.0", False),
        (">=1.0.0 <2.0.0", "0.9.9", False),
        (">=1.0.0 <2.0.0", "1.5.0-rc1", False),
        ("^1.2", "1.2.0", True),
        ("^1.2", "1.9.9", True),
        ("^1.2", "2.0.0", False),
        ("^1.2", "1.1.9", False),
        ("^1.2.3", "1.2.2", False),
        ("^0.2.3", "0.2.9", True),
        ("^0.2.3", "0.3.0", False),
        ("^0.2.3", "1.2.5", False),
        ("^0.0.3", "0.0.3", True),
        ("^0.0.3", "0.0.4", False),
        ("^0.0", "0.0.5", True),
        ("^0.0", "0.1.0", False),
        ("^0", "0.9.0", True),
        ("^0", "1.0.0", False),
        ("^1.x", "1.7.0", True),
        ("~1.2.3", "1.2.9", True),
        ("~1.2.3", "1.3.0", False),
        ("~1.2.3", "1.2.2", False),
        ("~1.2", "1.2.7", True),
        ("~1.2", "1.3.0", False),
        ("~1", "1.9.0", True),
        ("~1", "2.0.0", False),
        ("~>1.2", "1.2.5", True),
        ("~0.0.0", "3.0.0", True),
        ("1.x", "1.99.1", True),
        ("1.x", "2.0.0", False),
        ("1.X", "0.9.0", False),
        ("1.2.x", "1.2.7", True),
        ("1.2.*", "1.3.0", False),
        ("1.2", "1.2.9", True),
        ("*", "5.0.0", True),
        ("*", "1.0.0-rc1", False),
        ("x", "0.0.1", True),
        ("=1.2.3", "1.2.3", True),
        ("1.2.3", "1.2.3+build", True),
        ("1.2.3", "1.2.4", False),
        ("v1.2.3", "1.2.3", True),
        ("!=1.2.3", "1.2.4", True),
        ("!=1.2.3", "1.2.3", False),
        ("!=1.2.x", "1.2.5", False),
        (">1.2.3", "1.2.4", True),
        (">1.2.3", "1.2.3", False),
        (">1.2", "1.2.9", False),
        (">1.2", "1.3.0", True),
        (">1", "1.9.0", False),
        (">1", "2.0.0", True),
        ("<1.2", "1.1.9", True),
        ("<1.2", "1.2.0", False),
        ("<=1.2", "1.2.9", True),
        ("<=1.2", "1.3.0", False),
        ("<=1.2.3", "1.2.4", False),
        ("=<1.2.3", "1.2.3", True),
        ("=>1.2.3", "1.2.3", True),
        ("1.2 - 1.4.5", "1.2.0", True),
        ("1.2 - 1.4.5", "1.4.5", True),
        ("1.2 - 1.4.5", "1.4.6", False),
        ("1.2 - 1.4.5", "1.1.9", False),
        ("1.2.3 - 2.3", "2.3.9", True),
        (">=1.2, <1.3", "1.2.5", True),
        (">=1.2, <1.3", "1.3.0", False),
        (">= 1.2 < 1.3", "1.2.5", True),
        ("^1.0 || ^3.0", "3.1.0", True),
        ("^1.0 || ^3.0", "2.0.0", False),
        (">=1.0.0-rc1", "1.0.0-rc2", True),
        (">=1.0.0-rc1", "1.0.0", True),
        (">=1.0.0-rc1", "1.0.0-beta", False),
        # Every comparator must name a pre-release for a pre-release to pass it.
        (">=1.0.0-0 <2.0.0", "1.5.0-alpha", False),
        (">=1.0.0-0 <2.0.0-0", "1.5.0-alpha", True),
    ],
)
def test_constraints_follow_masterminds_semver(
    constraint: str, version: str, expected: bool
) -> None:
    parsed = parse_version(version)
    assert parsed is not None
    assert parse_constraint(constraint)(parsed) is expected


@pytest.mark.parametrize(
    ("constraint", "fragment"),
    [
        ("", "empty semver range"),
        ("1.0 ||", "empty semver range"),
        (">=abc", "'>=abc' is not a version comparison"),
        ("1.2.3.4", "'1.2.3.4' is not a version comparison"),
        ("=>", "'=>' is not a version comparison"),
        (">> 1", "'>>' is not a version comparison"),
    ],
)
def test_bad_constraints_are_one_line_errors(constraint: str, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_constraint(constraint, field="imageScans[0].policy.semver.range", file="fleet.yaml")
    message = str(caught.value)
    assert message.startswith("fleet.yaml: imageScans[0].policy.semver.range: ")
    assert fragment in message
