"""Image scans: Fleet and Keel tag choices, image references, imageScans entries."""

from __future__ import annotations

from typing import Any

import pytest

from flotilla.errors import SpecError
from flotilla.imagepolicy import (
    FleetPolicy,
    ImageRef,
    KeelPolicy,
    Policy,
    choose_tag,
    follows_digest,
    parse_image_ref,
    parse_image_scans,
    parse_policy,
)
from flotilla.schedule import PollSchedule

SHA_A = "sha256:" + "a" * 64
SHA_B = "sha256:" + "b" * 64

# --- policies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "policy"),
    [
        ("all", KeelPolicy(kind="all")),
        ("patch", KeelPolicy(kind="patch")),
        ("force", KeelPolicy(kind="force")),
        ("never", KeelPolicy(kind="never")),
        ("glob:release-*", KeelPolicy(kind="glob", pattern="release-*")),
        (r"regexp:^v\d+:x$", KeelPolicy(kind="regexp", pattern=r"^v\d+:x$")),
        ({"semver": {"range": "^1"}}, FleetPolicy.model_validate({"semver": {"range": "^1"}})),
        ({"alphabetical": {}}, FleetPolicy.model_validate({"alphabetical": {"order": "asc"}})),
    ],
)
def test_parse_policy(raw: object, policy: Policy) -> None:
    assert parse_policy(raw) == policy


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (
            "minr",
            "unknown policy, use one of all, major, minor, patch, force, never, "
            "glob:<pattern>, regexp:<pattern>; did you mean 'minor'? ('minr')",
        ),
        (
            "newest",
            "unknown policy, use one of all, major, minor, patch, force, never, "
            "glob:<pattern>, regexp:<pattern> ('newest')",
        ),
        ("glob:", "'glob:' needs a pattern"),
        ("regexp:([", "bad regexp"),
        (5, "must be a Keel policy string or a Fleet policy object"),
        ({}, "set exactly one of 'semver' and 'alphabetical'"),
        (
            {"semver": {"range": "^1"}, "alphabetical": {"order": "asc"}},
            "set exactly one of 'semver' and 'alphabetical'",
        ),
    ],
)
def test_parse_policy_errors(raw: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=r".") as caught:
        parse_policy(raw)
    assert fragment in str(caught.value)


# --- choose_tag: Fleet ----------------------------------------------------------------------

FLEET_TAGS = ["1.0.0", "1.2.0", "v1.3.0", "2.0.0", "1.4.0-rc1", "latest", "1.3.0+build"]


def fleet(**policy: Any) -> FleetPolicy:
    return FleetPolicy.model_validate(policy)


@pytest.mark.parametrize(
    ("current", "policy", "tags", "tag", "update"),
    [
        # Equal precedence: the tag written like the current one wins.
        ("1.2.0", fleet(semver={"range": ">=1.0.0 <2.0.0"}), FLEET_TAGS, "1.3.0+build", True),
        ("v1.2.0", fleet(semver={"range": ">=1.0.0 <2.0.0"}), FLEET_TAGS, "v1.3.0", True),
        ("2.0.0", fleet(semver={"range": ">=2"}), FLEET_TAGS, "2.0.0", False),
        ("1.2.0", fleet(semver={"range": ">=3"}), FLEET_TAGS, None, False),
        # Fleet picks the newest in range, even below what runs now.
        ("1.9.0", fleet(semver={"range": "<1.3"}), FLEET_TAGS, "1.2.0", True),
        ("1.2.0", fleet(semver={"range": ">=1.4.0-0"}), FLEET_TAGS, "2.0.0", True),
        (
            "a",
            fleet(alphabetical={"order": "asc"}),
            ["2024-01-02", "2024-01-10", "2023-12-31"],
            "2024-01-10",
            True,
        ),
        (
            "a",
            fleet(alphabetical={"order": "desc"}),
            ["2024-01-02", "2024-01-10", "2023-12-31"],
            "2023-12-31",
            True,
        ),
        ("b", fleet(alphabetical={}), ["a", "b", "B"], "b", False),
        ("a", fleet(alphabetical={}), [], None, False),
    ],
)
def test_choose_tag_fleet(
    current: str, policy: FleetPolicy, tags: list[str], tag: str | None, update: bool
) -> None:
    decision = choose_tag(policy, current_tag=current, tags=tags)
    assert (decision.tag, decision.update) == (tag, update)
    assert decision.reason


# --- choose_tag: Keel -----------------------------------------------------------------------

KEEL_TAGS = ["1.2.4", "1.3.0", "2.0.0", "1.2.5-rc1", "1.2", "latest", "v1.2.6", "1", "3"]


@pytest.mark.parametrize(
    ("kind", "current", "tags", "tag", "update"),
    [
        ("all", "1.2.3", KEEL_TAGS, "2.0.0", True),
        ("major", "1.2.3", KEEL_TAGS, "2.0.0", True),
        ("minor", "1.2.3", KEEL_TAGS, "1.3.0", True),
        ("patch", "1.2.3", KEEL_TAGS, "v1.2.6", True),
        # 'all' takes pre-releases; the others only with the same suffix as the current tag.
        ("all", "1.2.3", ["1.2.4", "1.3.0-rc1"], "1.3.0-rc1", True),
        ("major", "1.2.3", ["1.2.4", "1.3.0-rc1"], "1.2.4", True),
        ("patch", "1.2.3-rc1", ["1.2.4-rc1", "1.2.4", "1.2.5-rc2", "1.3.0-rc1"], "1.2.4-rc1", True),
        ("minor", "1.2.3-rc1", ["1.2.4-rc1", "1.2.4", "1.2.5-rc2", "1.3.0-rc1"], "1.3.0-rc1", True),
        ("patch", "v1.2.3", ["1.2.4", "v1.2.4"], "v1.2.4", True),
        ("patch", "1.2.3", ["1.2.4", "v1.2.4"], "1.2.4", True),
        ("patch", "1.2.3", ["1.3.0", "1.2.3", "1.2.3+b"], "1.2.3", False),
        ("minor", "2.0.0", KEEL_TAGS, "2.0.0", False),
        ("major", "1.2.3", ["2", "3"], "1.2.3", False),
        ("minor", "main", KEEL_TAGS, "main", False),
    ],
)
def test_choose_tag_keel_semver(
    kind: str, current: str, tags: list[str], tag: str, update: bool
) -> None:
    decision = choose_tag(parse_policy(kind), current_tag=current, tags=tags)
    assert (decision.tag, decision.update) == (tag, update)


def test_a_tag_that_is_not_a_version_says_force_follows_digests() -> None:
    decision = choose_tag(parse_policy("minor"), current_tag="main", tags=KEEL_TAGS)
    assert "use 'force'" in decision.reason


@pytest.mark.parametrize(
    ("kind", "current", "match_tag", "digests", "tag", "digest", "update"),
    [
        ("force", "1.2.3", True, (SHA_A, SHA_B), "1.2.3", SHA_B, True),
        ("force", "1.2.3", True, (SHA_A, SHA_A), "1.2.3", SHA_A, False),
        ("force", "latest", False, (SHA_A, SHA_B), "latest", SHA_B, True),
        ("force", "main", False, (None, SHA_B), "main", SHA_B, True),
        ("force", "latest", False, (SHA_A, None), "latest", None, False),
        # Keel's semver policies on 'latest' watch its digest.
        ("minor", "latest", False, (SHA_A, SHA_B), "latest", SHA_B, True),
        # force on a version tag without matchTag moves to the newest version, as Keel's poller.
        ("force", "1.2.3", False, (SHA_A, SHA_B), "2.0.0", None, True),
    ],
)
def test_choose_tag_digest_following(
    kind: str,
    current: str,
    match_tag: bool,
    digests: tuple[str | None, str | None],
    tag: str,
    digest: str | None,
    update: bool,
) -> None:
    decision = choose_tag(
        parse_policy(kind),
        current_tag=current,
        tags=KEEL_TAGS,
        current_digest=digests[0],
        registry_digest=digests[1],
        match_tag=match_tag,
    )
    assert (decision.tag, decision.digest, decision.update) == (tag, digest, update)


@pytest.mark.parametrize(
    ("policy", "current", "match_tag", "follows"),
    [
        ("force", "1.2.3", True, True),
        ("force", "1.2.3", False, False),
        ("force", "main", False, True),
        ("minor", "latest", False, True),
        ("minor", "main", True, False),
        ("never", "latest", False, False),
        ("glob:v*", "latest", True, False),
        ({"semver": {"range": ">=1.0"}}, "latest", True, False),
    ],
)
def test_follows_digest(policy: object, current: str, match_tag: bool, follows: bool) -> None:
    assert follows_digest(parse_policy(policy), current, match_tag) is follows


# A poll asks the registry for a digest exactly when the decision needs one, so an unchanged
# registry costs one request.
AGREEMENT_POLICIES = [
    "all",
    "major",
    "minor",
    "patch",
    "force",
    "never",
    "glob:v*",
    "regexp:^v",
    {"semver": {"range": ">=1.0"}},
    {"alphabetical": {"order": "asc"}},
]


@pytest.mark.parametrize("policy", AGREEMENT_POLICIES, ids=str)
@pytest.mark.parametrize("current", ["1.2.3", "v1.2", "latest", "main-3f2a", "1.2.3-rc1"])
@pytest.mark.parametrize("match_tag", [False, True])
def test_follows_digest_agrees_with_choose_tag(
    policy: object, current: str, match_tag: bool
) -> None:
    parsed = parse_policy(policy)
    without_digest = choose_tag(
        parsed, current_tag=current, tags=["1.2.4", "2.0.0"], match_tag=match_tag
    )
    needs_digest = without_digest.reason == f"registry has no digest for {current!r}"
    assert follows_digest(parsed, current, match_tag) == needs_digest


@pytest.mark.parametrize(
    ("policy", "current", "tags", "tag", "update"),
    [
        ("never", "1.0.0", ["9.9.9"], "1.0.0", False),
        # Keel ranks glob and regexp matches by text, highest first: release-2 beats release-10.
        (
            "glob:release-*",
            "release-1",
            ["release-1", "release-10", "release-2", "dev-3"],
            "release-2",
            True,
        ),
        ("glob:*-stable", "a", ["1-stable", "2-stable-x", "3-stable"], "3-stable", True),
        ("glob:release-*", "release-1", ["dev-1"], None, False),
        ("glob:release-?", "r", ["release-?", "release-1"], "release-?", True),
        (r"regexp:^build-\d+$", "build-1", ["build-9", "build-10", "other"], "build-9", True),
        (r"regexp:^build-\d+$", "build-9", ["build-9", "build-10"], "build-9", False),
        # A group named 'compare' ranks instead of the whole tag (Go's (?<name>) spelling too).
        (r"regexp:^[a-z]+-(?<compare>\d+)$", "x", ["b-1", "a-2"], "a-2", True),
        (r"regexp:^[a-z]+-\d+$", "x", ["b-1", "a-2"], "b-1", True),
        ("regexp:rc", "x", ["1.0-rc1", "2.0", "0.9-rc9"], "1.0-rc1", True),
    ],
)
def test_choose_tag_keel_patterns(
    policy: str, current: str, tags: list[str], tag: str | None, update: bool
) -> None:
    decision = choose_tag(parse_policy(policy), current_tag=current, tags=tags)
    assert (decision.tag, decision.update) == (tag, update)


# --- image references -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("nginx", ImageRef(registry="docker.io", repository="library/nginx")),
        ("nginx:1.25", ImageRef(registry="docker.io", repository="library/nginx", tag="1.25")),
        ("bitnami/redis:7", ImageRef(registry="docker.io", repository="bitnami/redis", tag="7")),
        (
            "ghcr.io/org/app:v1.2.3",
            ImageRef(registry="ghcr.io", repository="org/app", tag="v1.2.3"),
        ),
        (
            f"registry:5000/ns/app:tag@{SHA_A}",
            ImageRef(registry="registry:5000", repository="ns/app", tag="tag", digest=SHA_A),
        ),
        ("localhost/app", ImageRef(registry="localhost", repository="app")),
        ("localhost:5000/app", ImageRef(registry="localhost:5000", repository="app")),
        (f"app@{SHA_B}", ImageRef(registry="docker.io", repository="library/app", digest=SHA_B)),
        ("quay.io/a/b/c", ImageRef(registry="quay.io", repository="a/b/c")),
        ("docker.io/library/busybox", ImageRef(registry="docker.io", repository="library/busybox")),
        ("my-app__x/y.z", ImageRef(registry="docker.io", repository="my-app__x/y.z")),
    ],
)
def test_parse_image_ref(text: str, ref: ImageRef) -> None:
    assert parse_image_ref(text) == ref


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Nginx", "repository part 'Nginx'"),
        ("nginx:", "tag '' is not valid"),
        ("nginx:-x", "tag '-x' is not valid"),
        ("nginx@sha256:abc", "is not <algorithm>:<hex>"),
        ("nginx@sha256:" + "A" * 64, "64 lowercase hex"),
        ("my_registry.io:5000/app", "registry 'my_registry.io:5000'"),
        ("", "repository part ''"),
        ("a//b", "repository part ''"),
    ],
)
def test_parse_image_ref_errors(text: str, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_image_ref(text, field="imageScans[0].image", file="fleet.yaml")
    message = str(caught.value)
    assert message.startswith("fleet.yaml: imageScans[0].image: ")
    assert fragment in message


# --- imageScans entries ---------------------------------------------------------------------


def test_parse_a_fleet_image_scan() -> None:
    [scan] = parse_image_scans(
        [
            {
                "image": "ghcr.io/org/app",
                "tagName": "app",
                "policy": {"semver": {"range": "^1"}},
                "interval": "5m",
                "secretRef": {"name": "ghcr"},
            }
        ],
        file="fleet.yaml",
    )
    assert scan.ref == ImageRef(registry="ghcr.io", repository="org/app")
    assert scan.schedule == PollSchedule(interval_seconds=300.0)
    assert scan.secret_ref is not None and scan.secret_ref.name == "ghcr"
    assert isinstance(scan.policy, FleetPolicy)
    assert (scan.approvals, scan.approval_deadline_seconds, scan.match_tag) == (0, 86400.0, False)


def test_parse_a_keel_image_scan() -> None:
    [scan] = parse_image_scans(
        [
            {
                "image": "nginx",
                "tagName": "web",
                "policy": "minor",
                "pollSchedule": "*/5 * * * *",
                "approvals": 2,
                "approvalDeadline": 4,
                "matchTag": True,
                "suspend": True,
            }
        ],
        file="fleet.yaml",
    )
    assert scan.policy == KeelPolicy(kind="minor")
    assert scan.schedule == PollSchedule(cron="*/5 * * * *")
    assert (scan.approvals, scan.approval_deadline_seconds) == (2, 4 * 3600.0)
    assert scan.match_tag and scan.suspend


@pytest.mark.parametrize(
    ("extra", "attribute", "value"),
    [
        ({}, "schedule", PollSchedule(interval_seconds=14400.0)),
        ({"approvalDeadline": "90m"}, "approval_deadline_seconds", 5400.0),
        ({"interval": 30}, "schedule", PollSchedule(interval_seconds=30.0)),
        ({"pollSchedule": "@daily"}, "schedule", PollSchedule(cron="0 0 * * *")),
    ],
)
def test_image_scan_defaults_and_alternatives(
    extra: dict[str, Any], attribute: str, value: object
) -> None:
    entry = {"image": "nginx", "tagName": "web", "policy": "patch", **extra}
    [scan] = parse_image_scans([entry], file="fleet.yaml")
    assert getattr(scan, attribute) == value


def test_no_image_scans() -> None:
    assert parse_image_scans(None, file="fleet.yaml") == []


BASE = {"image": "nginx", "tagName": "web", "policy": "patch"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("nope", "fleet.yaml: imageScans: must be a list ('nope')"),
        (["nope"], "fleet.yaml: imageScans[0]: must be a mapping ('nope')"),
        (
            [{**BASE, "tagname": "x"}],
            "fleet.yaml: imageScans[0].tagname: unknown field, did you mean 'tagName'? ('tagname')",
        ),
        ([{"tagName": "web", "policy": "all"}], "fleet.yaml: imageScans[0].image: is required"),
        ([{**BASE, "policy": ""}], "fleet.yaml: imageScans[0].policy: is required"),
        (
            [{**BASE, "tagName": "app:tag"}],
            "fleet.yaml: imageScans[0].tagName: must be letters, digits and . _ - "
            "(it names the markers) ('app:tag')",
        ),
        ([{**BASE, "image": 5}], "fleet.yaml: imageScans[0].image: must be an image name"),
        ([{**BASE, "image": "Nginx"}], "fleet.yaml: imageScans[0].image: repository part"),
        (
            [{**BASE, "image": "nginx:1.25"}],
            "fleet.yaml: imageScans[0].image: name the repository without a tag or digest",
        ),
        (
            [{**BASE, "policy": "minr"}],
            "fleet.yaml: imageScans[0].policy: unknown policy, use one of all,",
        ),
        (
            [{**BASE, "policy": {"semver": {"range": ">=abc"}}}],
            "fleet.yaml: imageScans[0].policy: semver.range: '>=abc' is not a version comparison "
            "('>=abc')",
        ),
        (
            [{**BASE, "policy": {"alphabetical": {"order": "up"}}}],
            "fleet.yaml: imageScans[0].policy: alphabetical.order: Input should be 'asc' or "
            "'desc' ('up')",
        ),
        (
            [{**BASE, "policy": {"semver": {"range": "^1"}, "extra": 1}}],
            "fleet.yaml: imageScans[0].policy: extra: Extra inputs are not permitted (1)",
        ),
        ([{**BASE, "policy": r"regexp:(?P<"}], "fleet.yaml: imageScans[0].policy: bad regexp"),
        (
            [{**BASE, "interval": "5m", "pollSchedule": "@hourly"}],
            "fleet.yaml: imageScans[0].pollSchedule: set 'interval' (Fleet) or 'pollSchedule'",
        ),
        (
            [{**BASE, "interval": "5"}],
            "fleet.yaml: imageScans[0].interval: a duration needs a unit",
        ),
        (
            [{**BASE, "interval": "0s"}],
            "fleet.yaml: imageScans[0].interval: must be longer than 0s",
        ),
        (
            [{**BASE, "pollSchedule": "* * *"}],
            "fleet.yaml: imageScans[0].pollSchedule: a cron expression has 5 fields",
        ),
        ([{**BASE, "secretRef": "ghcr"}], "fleet.yaml: imageScans[0].secretRef: must be {name:"),
        (
            [{**BASE, "approvals": -1}],
            "fleet.yaml: imageScans[0].approvals: must be a whole number",
        ),
        ([{**BASE, "approvals": True}], "fleet.yaml: imageScans[0].approvals: must be a whole"),
        ([{**BASE, "approvalDeadline": 0}], "fleet.yaml: imageScans[0].approvalDeadline: must be"),
        ([{**BASE, "approvalDeadline": "0s"}], "imageScans[0].approvalDeadline: must be longer"),
        (
            [{**BASE, "matchTag": "yes"}],
            "fleet.yaml: imageScans[0].matchTag: must be true or false",
        ),
        ([{**BASE, "suspend": 1}], "fleet.yaml: imageScans[0].suspend: must be true or false"),
        (
            [BASE, {**BASE, "image": "redis"}],
            "fleet.yaml: imageScans[1].tagName: already used by imageScans[0]",
        ),
    ],
)
def test_parse_image_scans_errors_are_one_line(raw: object, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_image_scans(raw, file="fleet.yaml")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
