"""Fleet's Policy and GitRepoRestriction rules, state in → GitRepo → resolved or refused."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from flotilla.errors import SpecError
from flotilla.models import GitRepoRestriction, LabelSelector, Policy
from flotilla.restrictions import (
    Resolved,
    authorize_gitrepo,
    conflicts,
    merge_selectors,
    namespace_refusal,
)

REPO = "https://git.example.com/team-a/apps.git"


def restriction(name: str = "r", **fields: Any) -> GitRepoRestriction:
    return GitRepoRestriction.model_validate({"metadata": {"name": name}, **fields})


def policy(name: str = "p", **fields: Any) -> Policy:
    return Policy.model_validate({"metadata": {"name": name}, **fields})


def authorize(
    restrictions: list[GitRepoRestriction] | None = None,
    policies: list[Policy] | None = None,
    *,
    repo: str = REPO,
    service_account: str | None = None,
    client_secret_name: str | None = None,
    target_namespace: str | None = None,
    verifies_commits: bool = False,
    verify_commits_secret: str | None = None,
) -> Resolved:
    return authorize_gitrepo(
        repo=repo,
        service_account=service_account,
        client_secret_name=client_secret_name,
        target_namespace=target_namespace,
        restrictions=restrictions or [],
        policies=policies or [],
        verifies_commits=verifies_commits,
        verify_commits_secret=verify_commits_secret,
    )


def test_nothing_to_enforce_without_restrictions() -> None:
    assert authorize(service_account="admin") == Resolved("admin", None)


@pytest.mark.parametrize(
    ("restrictions", "policies", "given", "expected"),
    [
        # Defaults fill in what the GitRepo leaves empty.
        ([restriction(defaultServiceAccount="deployer")], [], {}, Resolved("deployer", None)),
        (
            [],
            [policy(gitRepo={"defaultServiceAccount": "p-sa", "defaultClientSecretName": "ssh"})],
            {},
            Resolved("p-sa", "ssh"),
        ),
        # A GitRepoRestriction's default wins over a Policy's.
        (
            [restriction(defaultServiceAccount="r-sa")],
            [policy(gitRepo={"defaultServiceAccount": "p-sa"})],
            {},
            Resolved("r-sa", None),
        ),
        # Within a kind, the first by name.
        (
            [
                restriction("b", defaultServiceAccount="b"),
                restriction("a", defaultServiceAccount="a"),
            ],
            [],
            {},
            Resolved("a", None),
        ),
        # The GitRepo's own value wins over a default, if allowed.
        (
            [restriction(defaultServiceAccount="d", allowedServiceAccounts=["d", "mine"])],
            [],
            {"service_account": "mine"},
            Resolved("mine", None),
        ),
        # Allow-lists are unioned across objects and kinds.
        (
            [restriction(allowedServiceAccounts=["a"])],
            [policy(allowedServiceAccounts=["b"])],
            {"service_account": "b"},
            Resolved("b", None),
        ),
        # Repo patterns: a GitRepoRestriction's match anywhere, a Policy's the whole URL.
        ([restriction(allowedRepoPatterns=["team-a/"])], [], {}, Resolved(None, None)),
        (
            [],
            [policy(gitRepo={"allowedRepoPatterns": [r"https://git\.example\.com/team-a/.*"]})],
            {},
            Resolved(None, None),
        ),
        # A pattern equal to the URL matches even when, read as a regex, it would not.
        (
            [],
            [policy(gitRepo={"allowedRepoPatterns": ["https://x/a+b.git"]})],
            {"repo": "https://x/a+b.git"},
            Resolved(None, None),
        ),
        # Either kind's list may accept the URL.
        (
            [restriction(allowedRepoPatterns=["nothing-matches"])],
            [policy(gitRepo={"allowedRepoPatterns": [".*team-a.*"]})],
            {},
            Resolved(None, None),
        ),
        (
            [restriction(allowedTargetNamespaces=["apps"])],
            [],
            {"target_namespace": "apps"},
            Resolved(None, None),
        ),
        # requireServiceAccount is met by a default.
        (
            [],
            [policy(requireServiceAccount=True, gitRepo={"defaultServiceAccount": "sa"})],
            {},
            Resolved("sa", None),
        ),
    ],
)
def test_allowed(
    restrictions: list[GitRepoRestriction],
    policies: list[Policy],
    given: dict[str, Any],
    expected: Resolved,
) -> None:
    assert authorize(restrictions, policies, **given) == expected


@pytest.mark.parametrize(
    ("restrictions", "policies", "given", "message"),
    [
        (
            [restriction(allowedServiceAccounts=["deployer"])],
            [],
            {"service_account": "admin"},
            "spec.serviceAccount: 'admin' is not allowed by GitRepoRestriction r "
            "(allowed: 'deployer')",
        ),
        # A default outside the allow-list is refused, not slipped through.
        (
            [],
            [policy(allowedServiceAccounts=["a"], gitRepo={"defaultServiceAccount": "b"})],
            {},
            "spec.serviceAccount: 'b' is not allowed",
        ),
        (
            [],
            [policy(gitRepo={"allowedRepoPatterns": ["team-a"]})],
            {},
            f"spec.repo: {REPO!r} is not allowed by Policy p",
        ),
        (
            [restriction(allowedClientSecretNames=["ssh-a"])],
            [],
            {"client_secret_name": "ssh-b"},
            "spec.clientSecretName: 'ssh-b' is not allowed",
        ),
        (
            [restriction(allowedTargetNamespaces=["apps"])],
            [],
            {},
            "spec.targetNamespace: is required: GitRepoRestriction r sets allowedTargetNamespaces",
        ),
        (
            [restriction(allowedTargetNamespaceSelector={"matchLabels": {"team": "a"}})],
            [],
            {},
            "spec.targetNamespace: is required",
        ),
        (
            [restriction(allowedTargetNamespaces=["apps"])],
            [],
            {"target_namespace": "kube-system"},
            "spec.targetNamespace: 'kube-system' is not allowed",
        ),
        (
            [],
            [policy(requireServiceAccount=True)],
            {},
            "spec.serviceAccount: is required by Policy p (requireServiceAccount)",
        ),
    ],
)
def test_refused(
    restrictions: list[GitRepoRestriction],
    policies: list[Policy],
    given: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(SpecError) as err:
        authorize(restrictions, policies, **given)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_required_verified_commits_from_either_kind() -> None:
    for restrictions, policies, by in (
        ([restriction(requireVerifiedCommits=True)], [], "GitRepoRestriction r"),
        ([], [policy(requireVerifiedCommits=True)], "Policy p"),
    ):
        with pytest.raises(SpecError) as err:
            authorize(restrictions, policies)
        assert str(err.value).startswith(
            f"spec.verifyCommits: is required by {by} (requireVerifiedCommits)"
        )
        assert authorize(restrictions, policies, verifies_commits=True).service_account is None
    # Not set (or false) anywhere: a GitRepo need not verify.
    assert authorize([restriction(requireVerifiedCommits=False)], [policy()]) is not None


def test_a_bad_pattern_is_refused_when_the_object_is_read() -> None:
    with pytest.raises(ValidationError, match="is not a valid regular expression"):
        policy(gitRepo={"allowedRepoPatterns": ["(unclosed"]})
    with pytest.raises(ValidationError, match="is not a valid regular expression"):
        restriction(allowedRepoPatterns=["*"])


def test_conflicting_defaults_are_refused_and_a_replacement_is_not_a_conflict() -> None:
    first = policy("a", gitRepo={"defaultServiceAccount": "one"})
    second = policy("b", gitRepo={"defaultServiceAccount": "two"})
    assert conflicts(second, [], [first]) == (
        "Policy b: defaultServiceAccount 'two' conflicts with 'one' of Policy a; a workspace "
        "has one default"
    )
    assert conflicts(policy("a", gitRepo={"defaultServiceAccount": "two"}), [], [first]) is None
    assert conflicts(policy("c", gitRepo={"defaultServiceAccount": "one"}), [], [first]) is None
    # Across kinds there is an order (the restriction wins), so no conflict.
    assert conflicts(restriction("r", defaultServiceAccount="two"), [], [first]) is None


def test_namespace_rules_come_with_the_resolved_fields() -> None:
    team = {"matchLabels": {"team": "a"}}
    resolved = authorize(
        [restriction(allowedTargetNamespaceSelector=team)],
        [policy(allowNamespaceCreation=True)],
        target_namespace="apps",
    )
    assert resolved.namespace_selector == LabelSelector.model_validate(team)
    assert resolved.allow_namespace_creation is True
    # A Policy that does not allow it leaves it off; no selector leaves none.
    plain = authorize([restriction(allowedServiceAccounts=["x"])], [policy()])
    assert plain.namespace_selector is None and plain.allow_namespace_creation is False


def test_a_selector_requires_a_target_namespace() -> None:
    with pytest.raises(SpecError) as err:
        authorize([restriction(allowedTargetNamespaceSelector={})])
    assert str(err.value).startswith("spec.targetNamespace: is required: GitRepoRestriction r")


def selector(**fields: Any) -> LabelSelector:
    return LabelSelector.model_validate(fields)


def test_selectors_merge_as_fleets_labels_by_key_expressions_unioned() -> None:
    exists = {"key": "tier", "operator": "Exists"}
    merged = authorize(
        [
            restriction("a", allowedTargetNamespaceSelector={"matchLabels": {"t": "1", "x": "y"}}),
            restriction("b", allowedTargetNamespaceSelector={"matchExpressions": [exists]}),
            restriction(
                "c",
                allowedTargetNamespaceSelector={
                    "matchLabels": {"t": "2"},
                    "matchExpressions": [exists],
                },
            ),
        ],
        target_namespace="apps",
    ).namespace_selector
    assert merged == selector(matchLabels={"t": "2", "x": "y"}, matchExpressions=[exists])
    assert merge_selectors(None, None) is None


@pytest.mark.parametrize(
    ("labels", "wanted", "refusal"),
    [
        ({"team": "a", "x": "1"}, selector(matchLabels={"team": "a"}), ""),
        ({}, selector(), ""),
        (
            {"team": "b"},
            selector(matchLabels={"team": "a"}),
            "target namespace apps does not match allowedTargetNamespaceSelector team=a "
            "(its labels: team=b)",
        ),
        (
            {},
            selector(matchExpressions=[{"key": "tier", "operator": "In", "values": ["x", "y"]}]),
            "target namespace apps does not match allowedTargetNamespaceSelector tier in (x,y) "
            "(its labels: none)",
        ),
        (
            None,
            selector(matchLabels={"team": "a"}),
            "target namespace apps does not exist; allowedTargetNamespaceSelector needs its labels",
        ),
    ],
)
def test_namespace_refusal(
    labels: dict[str, str] | None, wanted: LabelSelector, refusal: str
) -> None:
    assert namespace_refusal("apps", labels, wanted) == refusal


def test_allowed_verify_commits_secrets_limit_the_keys_a_gitrepo_trusts() -> None:
    for restrictions, policies, by in (
        (
            [restriction(requireVerifiedCommits=True, allowedVerifyCommitsSecretNames=["ops"])],
            [],
            "GitRepoRestriction r",
        ),
        ([], [policy(allowedVerifyCommitsSecretNames=["ops"])], "Policy p"),
    ):
        with pytest.raises(SpecError) as err:
            authorize(restrictions, policies, verify_commits_secret="team-keys")
        assert str(err.value) == (
            f"spec.verifyCommits.secretName: 'team-keys' is not allowed by {by} (allowed: 'ops')"
        )
        assert authorize(restrictions, policies, verify_commits_secret="ops") is not None
    # Listing the keys does not by itself require verification.
    assert authorize([], [policy(allowedVerifyCommitsSecretNames=["ops"])]) is not None
