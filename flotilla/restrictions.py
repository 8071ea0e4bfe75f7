"""What a workspace's GitRepos may do: Fleet's ``Policy`` (0.16) and ``GitRepoRestriction``.

Both live in a workspace (namespace) and limit the GitRepos there: which service accounts,
client secrets and repository URLs they may use, which target namespace they must name, and
the defaults filled in when a GitRepo names none. The rules follow Fleet's GitRepo
reconciler:

* Objects of one kind are merged in name order: the first non-empty default wins, allow-lists
  are unioned, ``requireServiceAccount`` is true when any Policy says so.
* Between the kinds, a GitRepoRestriction's default wins over a Policy's; allow-lists are
  unioned.
* Defaults are applied first, then checked, so a default outside the allow-list is refused.
* Repository patterns: a GitRepoRestriction's match anywhere in the URL (unanchored), a
  Policy's must match the whole URL; a pattern equal to the URL always matches; the URL is
  allowed when either kind's list (when present) accepts it.
* ``allowedTargetNamespaces`` (or the namespace selector) requires ``targetNamespace``; a
  listed namespace is checked here, the selector on each cluster at deploy time, against the
  labels of that cluster's Namespace (:func:`namespace_refusal`). Selectors of several
  GitRepoRestrictions merge: ``matchLabels`` key by key (the later name wins a key),
  ``matchExpressions`` unioned.
* ``requireServiceAccount`` is checked after defaulting; ``allowNamespaceCreation`` holds when
  any Policy sets it.
* ``requireVerifiedCommits`` (flotilla's extension on either kind; Fleet ignores the field)
  holds when any object sets it, and refuses a GitRepo without ``spec.verifyCommits``: the
  restriction requires signatures, the GitRepo names the keys it trusts.

Where Fleet takes the first of two different defaults silently, flotilla refuses the object
that would make them conflict (:func:`conflicts`), so what applies never depends on names.
Patterns are Python regular expressions (Go's RE2 is close, not identical).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from flotilla.errors import SpecError
from flotilla.models import GitRepoRestriction, LabelSelector, Policy
from flotilla.targeting import match_selector


@dataclass(frozen=True)
class Resolved:
    """A GitRepo's fields once the workspace's restrictions have filled in their defaults."""

    service_account: str | None
    client_secret_name: str | None
    # The GitRepoRestrictions' merged selector every target namespace must match (None: any).
    namespace_selector: LabelSelector | None = None
    # A Policy lets an impersonated Helm install create the release namespace.
    allow_namespace_creation: bool = False


@dataclass
class _Merged:
    default_service_account: str = ""
    default_client_secret_name: str = ""
    allowed_service_accounts: list[str] = field(default_factory=list)
    allowed_client_secret_names: list[str] = field(default_factory=list)
    restriction_patterns: list[str] = field(default_factory=list)
    policy_patterns: list[str] = field(default_factory=list)
    allowed_target_namespaces: list[str] = field(default_factory=list)
    namespace_selector: LabelSelector | None = None
    require_service_account: bool = False
    allow_namespace_creation: bool = False
    require_verified_commits: bool = False
    allowed_verify_secrets: list[str] = field(default_factory=list)
    # Which objects ("GitRepoRestriction team-a") set each rule, for the refusal's line.
    sources: dict[str, list[str]] = field(default_factory=dict)

    def note(self, rule: str, obj: Policy | GitRepoRestriction, present: object) -> None:
        if present:
            self.sources.setdefault(rule, []).append(f"{obj.kind} {obj.metadata.name}")

    def by(self, *rules: str) -> str:
        names = [n for rule in rules for n in self.sources.get(rule, [])]
        return ", ".join(dict.fromkeys(names)) or "the workspace's restrictions"


def _merge(restrictions: list[GitRepoRestriction], policies: list[Policy]) -> _Merged:
    merged = _Merged()
    restriction_sa = restriction_secret = policy_sa = policy_secret = ""
    for r in sorted(restrictions, key=lambda o: o.metadata.name):
        restriction_sa = restriction_sa or (r.default_service_account or "")
        restriction_secret = restriction_secret or (r.default_client_secret_name or "")
        merged.allowed_service_accounts += r.allowed_service_accounts or []
        merged.allowed_client_secret_names += r.allowed_client_secret_names or []
        merged.restriction_patterns += r.allowed_repo_patterns or []
        merged.allowed_target_namespaces += r.allowed_target_namespaces or []
        merged.namespace_selector = merge_selectors(
            merged.namespace_selector, r.allowed_target_namespace_selector
        )
        merged.note("serviceAccount", r, r.allowed_service_accounts)
        merged.note("clientSecretName", r, r.allowed_client_secret_names)
        merged.note("repo", r, r.allowed_repo_patterns)
        merged.note("targetNamespace", r, r.allowed_target_namespaces)
        merged.note("targetNamespaceSelector", r, r.allowed_target_namespace_selector)
        merged.require_verified_commits |= r.require_verified_commits
        merged.note("requireVerifiedCommits", r, r.require_verified_commits)
        merged.allowed_verify_secrets += r.allowed_verify_commits_secret_names or []
        merged.note(VERIFY_KEYS_FIELD, r, r.allowed_verify_commits_secret_names)
    for p in sorted(policies, key=lambda o: o.metadata.name):
        merged.require_service_account |= p.require_service_account
        merged.allow_namespace_creation |= p.allow_namespace_creation
        merged.allowed_service_accounts += p.allowed_service_accounts or []
        merged.note("serviceAccount", p, p.allowed_service_accounts)
        merged.note("requireServiceAccount", p, p.require_service_account)
        merged.require_verified_commits |= p.require_verified_commits
        merged.note("requireVerifiedCommits", p, p.require_verified_commits)
        merged.allowed_verify_secrets += p.allowed_verify_commits_secret_names or []
        merged.note(VERIFY_KEYS_FIELD, p, p.allowed_verify_commits_secret_names)
        if p.git_repo is not None:
            policy_sa = policy_sa or (p.git_repo.default_service_account or "")
            policy_secret = policy_secret or (p.git_repo.default_client_secret_name or "")
            merged.allowed_client_secret_names += p.git_repo.allowed_client_secret_names or []
            merged.policy_patterns += p.git_repo.allowed_repo_patterns or []
            merged.note("clientSecretName", p, p.git_repo.allowed_client_secret_names)
            merged.note("repo", p, p.git_repo.allowed_repo_patterns)
    merged.default_service_account = restriction_sa or policy_sa
    merged.default_client_secret_name = restriction_secret or policy_secret
    return merged


# The field of a GitRepo that allowedVerifyCommitsSecretNames limits.
VERIFY_KEYS_FIELD = "verifyCommits.secretName"


def _refused(m: _Merged, rule: str, value: str, allowed: list[str]) -> SpecError:
    return SpecError(
        f"{value!r} is not allowed by {m.by(rule)} (allowed: {', '.join(map(repr, allowed))})",
        field=f"spec.{rule}",
    )


def _repo_allowed(repo: str, restriction: list[str], policy: list[str]) -> bool:
    if not restriction and not policy:
        return True
    if any(p == repo or re.search(p, repo) for p in restriction):
        return True
    return any(p == repo or re.fullmatch(f"(?:{p})", repo) for p in policy)


def authorize_gitrepo(
    *,
    repo: str,
    service_account: str | None,
    client_secret_name: str | None,
    target_namespace: str | None,
    restrictions: list[GitRepoRestriction],
    policies: list[Policy],
    verifies_commits: bool = False,
    verify_commits_secret: str | None = None,
) -> Resolved:
    """The GitRepo's service account and client secret after defaults, or a SpecError naming
    the field, the value, the restriction objects that refuse it and what is allowed."""
    if not restrictions and not policies:
        return Resolved(service_account, client_secret_name)
    m = _merge(restrictions, policies)
    for rule, setting in (
        ("targetNamespace", "allowedTargetNamespaces"),
        ("targetNamespaceSelector", "allowedTargetNamespaceSelector"),
    ):
        if not target_namespace and rule in m.sources:
            raise SpecError(
                f"is required: {m.by(rule)} sets {setting}", field="spec.targetNamespace"
            )
    account = service_account or m.default_service_account or None
    secret = client_secret_name or m.default_client_secret_name or None
    allowed_namespaces = m.allowed_target_namespaces
    if target_namespace and allowed_namespaces and target_namespace not in allowed_namespaces:
        raise _refused(m, "targetNamespace", target_namespace, allowed_namespaces)
    if account and m.allowed_service_accounts and account not in m.allowed_service_accounts:
        raise _refused(m, "serviceAccount", account, m.allowed_service_accounts)
    if not _repo_allowed(repo, m.restriction_patterns, m.policy_patterns):
        raise _refused(m, "repo", repo, m.restriction_patterns + m.policy_patterns)
    if secret and m.allowed_client_secret_names and secret not in m.allowed_client_secret_names:
        raise _refused(m, "clientSecretName", secret, m.allowed_client_secret_names)
    if m.require_service_account and not account:
        raise SpecError(
            f"is required by {m.by('requireServiceAccount')} (requireServiceAccount) and no "
            "default is set",
            field="spec.serviceAccount",
        )
    verifies_commits = verifies_commits or bool(verify_commits_secret)
    allowed_keys = m.allowed_verify_secrets
    if verify_commits_secret and allowed_keys and verify_commits_secret not in allowed_keys:
        raise _refused(m, VERIFY_KEYS_FIELD, verify_commits_secret, allowed_keys)
    if m.require_verified_commits and not verifies_commits:
        raise SpecError(
            f"is required by {m.by('requireVerifiedCommits')} (requireVerifiedCommits): name "
            "the secret of trusted signing keys",
            field="spec.verifyCommits",
        )
    return Resolved(account, secret, m.namespace_selector, m.allow_namespace_creation)


def merge_selectors(
    merged: LabelSelector | None, selector: LabelSelector | None
) -> LabelSelector | None:
    """Two restrictions' target-namespace selectors as one, as Fleet merges them: labels
    key by key (``selector`` wins a key both set), expressions unioned without repeats."""
    if selector is None:
        return merged
    if merged is None:
        return selector
    expressions = list(merged.match_expressions or [])
    expressions += [e for e in selector.match_expressions or [] if e not in expressions]
    return LabelSelector(
        match_labels={**(merged.match_labels or {}), **(selector.match_labels or {})} or None,
        match_expressions=expressions or None,
    )


def namespace_refusal(
    namespace: str, labels: Mapping[str, str] | None, selector: LabelSelector
) -> str:
    """Why a bundle may not deploy to ``namespace`` on a cluster whose Namespace object has
    ``labels`` (None: it does not exist), or "" when the selector matches them."""
    if labels is None:
        return (
            f"target namespace {namespace} does not exist; allowedTargetNamespaceSelector "
            "needs its labels"
        )
    if match_selector(selector, labels):
        return ""
    shown = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none"
    return (
        f"target namespace {namespace} does not match allowedTargetNamespaceSelector "
        f"{describe_selector(selector)} (its labels: {shown})"
    )


def describe_selector(selector: LabelSelector) -> str:
    """A selector as Kubernetes writes one (``team=a,tier in (x,y)``; ``{}`` for all)."""
    parts = [f"{k}={v}" for k, v in sorted((selector.match_labels or {}).items())]
    for e in selector.match_expressions or []:
        if e.operator == "Exists":
            parts.append(e.key)
        elif e.operator == "DoesNotExist":
            parts.append(f"!{e.key}")
        else:
            parts.append(f"{e.key} {e.operator.lower()} ({','.join(e.values or [])})")
    return ",".join(parts) or "{}"


def conflicts(
    new: Policy | GitRepoRestriction,
    restrictions: list[GitRepoRestriction],
    policies: list[Policy],
) -> str | None:
    """Why ``new`` cannot join the workspace's restrictions (a default that differs from one
    another object of its kind sets), or None. Replacing an object by name is no conflict."""
    if isinstance(new, Policy):
        others: list[Policy | GitRepoRestriction] = [
            p for p in policies if p.metadata.name != new.metadata.name
        ]
    else:
        others = [r for r in restrictions if r.metadata.name != new.metadata.name]
    for name in ("default_service_account", "default_client_secret_name"):
        mine = _default(new, name)
        for other in others:
            theirs = _default(other, name)
            if mine and theirs and mine != theirs:
                return (
                    f"{new.kind} {new.metadata.name}: {_camel(name)} {mine!r} conflicts with "
                    f"{theirs!r} of {other.kind} {other.metadata.name}; a workspace has one "
                    "default"
                )
    return None


def _default(obj: Policy | GitRepoRestriction, name: str) -> str:
    if isinstance(obj, Policy):
        return str(getattr(obj.git_repo, name, None) or "") if obj.git_repo else ""
    return str(getattr(obj, name) or "")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
