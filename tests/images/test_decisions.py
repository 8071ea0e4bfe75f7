"""``follows_digest`` mirrors ``choose_tag``: a poll asks for a digest exactly when the
decision needs one, so an unchanged registry costs one request."""

from __future__ import annotations

import pytest

from flotilla.imagepolicy import choose_tag, parse_policy
from workflows.imagepolicy import follows_digest

POLICIES = [
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
TAGS = ["1.2.3", "v1.2", "latest", "main-3f2a", "1.2.3-rc1"]


@pytest.mark.parametrize("policy", POLICIES, ids=str)
@pytest.mark.parametrize("current", TAGS)
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
