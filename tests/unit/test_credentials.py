"""Fleet's rules for Helm repository credentials: which secret, which path entry, which URL."""

from __future__ import annotations

import base64

import pytest

from flotilla.credentials import (
    ChartAccess,
    RenderSecretRefs,
    access_for_path,
    access_from_helm_secret,
    age_identities,
    chart_access,
)
from flotilla.errors import FlotillaError
from flotilla.models import BundleDeploymentOptions, GitRepoSpec, HelmOptions

SECRET = "fleet-local/helm"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def options(repo: str | None = None, chart: str = "demo") -> BundleDeploymentOptions:
    return BundleDeploymentOptions(helm=HelmOptions(repo=repo, chart=chart))


def refs(regex: str | None = None, *, insecure: bool = False) -> RenderSecretRefs:
    return RenderSecretRefs(
        namespace="fleet-local",
        helm_secret_name="helm",
        helm_repo_url_regex=regex,
        insecure_skip_tls_verify=insecure,
    )


def test_helm_secret_keys_as_fleet_reads_them() -> None:
    access = access_from_helm_secret(
        {
            "username": "bot",
            "password": "pw-123",
            "cacerts": PEM,
            "insecureSkipVerify": "true",
            "basicHTTP": "yes",  # not a Go boolean: false, as Fleet reads it
        },
        secret=SECRET,
    )
    assert (access.username, access.password, access.ca_bundle) == ("bot", "pw-123", PEM)
    assert access.insecure_skip_verify and not access.basic_http
    assert "pw-123" not in repr(access) and PEM not in repr(access)


@pytest.mark.parametrize("present", ["username", "password"])
def test_username_and_password_go_together(present: str) -> None:
    with pytest.raises(FlotillaError) as err:
        access_from_helm_secret({present: "x"}, secret=SECRET)
    missing = {"username": "password", "password": "username"}[present]
    assert str(err.value) == f"secret {SECRET}: has {present!r} but no {missing!r}"


SECRETS_PATH = f"""
apps/*:
  username: glob-user
  password: glob-pw
apps/a*:
  username: later-glob
  password: x
apps/exact:
  username: exact-user
  password: exact-pw
  caBundle: {b64(PEM)}
  insecureSkipVerify: true
  basicHTTP: true
"""


@pytest.mark.parametrize(
    ("path", "user"),
    [
        ("apps/exact", "exact-user"),  # an exact key wins over every glob
        ("apps/alpha", "glob-user"),  # globs in lexical order: "apps/*" before "apps/a*"
        ("apps/x/y", ""),  # "*" does not cross "/"
        ("other", ""),
    ],
)
def test_secrets_path_entry_for_a_bundle_path(path: str, user: str) -> None:
    access = access_for_path(SECRETS_PATH, path, secret=SECRET)
    assert access.username == user and access.secret == SECRET


def test_secrets_path_entry_fields() -> None:
    access = access_for_path(SECRETS_PATH, "apps/exact", secret=SECRET)
    assert access == ChartAccess(
        username="exact-user",
        password="exact-pw",
        ca_bundle=PEM,
        insecure_skip_verify=True,
        basic_http=True,
        secret=SECRET,
    )


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("a?c", "abc", True),
        ("a?c", "a/c", False),
        ("[ab]x", "bx", True),
        ("[^ab]x", "cx", True),
        ("[^ab]x", "ax", False),
        ("[a-c]*", "charts", True),
        ("[]]x", "]x", True),
        ("a\\*", "a*", True),
        ("a\\*", "ab", False),
    ],
)
def test_path_globs_follow_go_filepath_match(pattern: str, path: str, matches: bool) -> None:
    text = f"'{pattern}': {{username: u, password: p}}\n"
    assert (access_for_path(text, path, secret=SECRET).username == "u") is matches


def test_a_bad_path_pattern_is_an_error_naming_the_secret() -> None:
    with pytest.raises(FlotillaError) as err:
        access_for_path("'[ab': {}\n", "x", secret=SECRET)
    assert str(err.value) == (
        f"secret {SECRET}: secrets-path.yaml: '[ab' is not a valid glob (unclosed [)"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[a, b]", "is not a map of bundle paths"),
        ("x: [", "is not valid YAML"),
        ("x: 1", "'x' is not a map"),
        ("x: {caBundle: '***'}", "'x': caBundle is not base64 of a PEM bundle"),
    ],
)
def test_a_bad_secrets_path_file_is_one_line(text: str, problem: str) -> None:
    with pytest.raises(FlotillaError) as err:
        access_for_path(text, "x", secret=SECRET)
    assert str(err.value) == f"secret {SECRET}: secrets-path.yaml: {problem}"


CREDENTIALS = ChartAccess(username="bot", password="pw", ca_bundle=PEM, secret=SECRET)


@pytest.mark.parametrize(
    ("regex", "opts", "sent"),
    [
        (None, options("https://charts.example.com"), False),  # no regex: credentials go nowhere
        ("https://charts\\.example\\.com", options("https://charts.example.com/sub"), True),
        (
            "https://charts\\.example\\.com",
            options("https://evil.example/?https://charts.example.com"),
            False,
        ),
        ("a|https://charts", options("https://charts.example.com"), True),  # alternation anchored
        ("oci://reg\\.example/", options(None, "oci://reg.example/charts/demo"), True),
        ("oci://reg\\.example/", options(None, "oci://other.example/charts/demo"), False),
    ],
)
def test_credentials_go_only_to_urls_matching_the_regex_at_their_start(
    regex: str | None, opts: BundleDeploymentOptions, sent: bool
) -> None:
    access = chart_access(CREDENTIALS, refs(regex), opts)
    assert access.sends_credentials is sent
    assert access.ca_bundle == PEM  # transport settings stay either way
    if not sent:
        assert (access.username, access.password) == ("", "")
        assert access.note().startswith(f" (credentials of secret {SECRET} not sent: ")


def test_the_notes_name_the_secret_and_never_the_password() -> None:
    sent = chart_access(CREDENTIALS, refs(".*"), options("https://x"))
    assert sent.note() == f" (credentials from secret {SECRET})"
    empty = chart_access(CREDENTIALS, refs(None), options("https://x"))
    assert "spec.helmRepoURLRegex is empty" in empty.note()
    assert "pw" not in sent.note() + empty.note()
    assert chart_access(ChartAccess(), refs(None), options("https://x")).note() == ""


def test_the_gitrepo_insecure_switch_covers_chart_pulls() -> None:
    assert chart_access(
        ChartAccess(), refs(insecure=True), options("https://x")
    ).insecure_skip_verify


def test_refs_from_a_gitrepo_and_the_per_path_secret_winning() -> None:
    spec = GitRepoSpec.model_validate(
        {"repo": "x", "helmSecretName": "one", "helmSecretNameForPaths": "paths"}
    )
    made = RenderSecretRefs.for_gitrepo("ns", spec)
    assert (made.namespace, made.helm_secret) == ("ns", "paths")
    plain = RenderSecretRefs.for_gitrepo("ns", GitRepoSpec(repo="x"))
    assert plain.helm_secret is None


def test_age_identities_from_every_agekey_key() -> None:
    data = {"b.agekey": "AGE-SECRET-KEY-2\n", "a.agekey": "# c\nAGE-SECRET-KEY-1", "x": "y"}
    assert age_identities(data, secret="ns/sops-age") == "# c\nAGE-SECRET-KEY-1\nAGE-SECRET-KEY-2\n"
    with pytest.raises(FlotillaError) as err:
        age_identities({"x": "AGE-SECRET-KEY-1"}, secret="ns/sops-age")
    assert str(err.value) == "secret ns/sops-age has no key ending in '.agekey' (it has: x)"
