"""Push webhooks: provider detection, signatures, payloads and repository URL forms."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from flotilla.webhooks import (
    AZURE,
    BITBUCKET,
    BITBUCKET_SERVER,
    GITHUB,
    GITLAB,
    GOGS,
    BadPayload,
    Push,
    Unauthorized,
    detect_provider,
    is_ping,
    parse_push,
    repo_key,
    same_repo,
    verify,
)
from tests.webhooks.payloads import PROVIDERS

URL = "https://git.example.com/org/repo"
SHA = "a" * 40
SECRET = {
    GITHUB: "gh-s3cret",
    GITLAB: "gl-s3cret",
    BITBUCKET: "bb-s3cret",
    BITBUCKET_SERVER: "bbs-s3cret",
    GOGS: "gogs-s3cret",
    "azure-username": "azure",
    "azure-password": "az-s3cret",
}
KEYS = {
    "github": SECRET[GITHUB],
    "gitea": SECRET[GOGS],
    "gitlab": SECRET[GITLAB],
    "bitbucket": SECRET[BITBUCKET],
    "bitbucket-server": SECRET[BITBUCKET_SERVER],
    "azure": "azure:az-s3cret",
}
DETECTED = {
    "github": GITHUB,
    "gitea": GOGS,
    "gitlab": GITLAB,
    "bitbucket": BITBUCKET,
    "bitbucket-server": BITBUCKET_SERVER,
    "azure": AZURE,
}


@pytest.mark.parametrize("name", sorted(PROVIDERS))
@pytest.mark.parametrize("ref", ["refs/heads/main", "refs/tags/v1.2.0"])
def test_each_provider_push_is_verified_and_read(name: str, ref: str) -> None:
    headers, body = PROVIDERS[name](URL, ref, SHA, KEYS[name])
    provider = detect_provider(headers)
    assert provider == DETECTED[name]
    verify(provider, headers, body, SECRET)
    push = parse_push(provider, headers, body)
    assert same_repo(push, "git@git.example.com:org/repo.git")
    assert push.refs == (ref,)
    assert SHA in push.revisions
    assert push.moves(ref.rsplit("/", 1)[-1])
    assert not push.moves("other")


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_a_wrong_secret_or_a_changed_body_is_unauthorized(name: str) -> None:
    headers, body = PROVIDERS[name](URL, "refs/heads/main", SHA, "wrong:guess")
    with pytest.raises(Unauthorized):
        verify(detect_provider(headers), headers, body, SECRET)
    headers, body = PROVIDERS[name](URL, "refs/heads/main", SHA, KEYS[name])
    if name != "gitlab" and name != "azure":  # a token, not a signature of the body
        with pytest.raises(Unauthorized, match="does not match"):
            verify(detect_provider(headers), headers, body.replace(b"main", b"prod"), SECRET)


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_a_provider_without_its_key_in_the_secret_is_refused(name: str) -> None:
    headers, body = PROVIDERS[name](URL, "refs/heads/main", SHA, KEYS[name])
    with pytest.raises(Unauthorized, match="webhook secret"):
        verify(detect_provider(headers), headers, body, {})


def test_unsigned_github_push_is_unauthorized_and_the_message_names_no_secret() -> None:
    headers, body = PROVIDERS["github"](URL, "refs/heads/main", SHA, SECRET[GITHUB])
    del headers["X-Hub-Signature-256"]
    with pytest.raises(Unauthorized) as err:
        verify(GITHUB, headers, body, SECRET)
    assert "s3cret" not in str(err.value)


def test_bitbucket_cloud_without_a_hook_secret_is_checked_by_its_uuid() -> None:
    headers, body = PROVIDERS["bitbucket"](URL, "refs/heads/main", SHA, "x")
    del headers["X-Hub-Signature"]
    headers["X-Hook-UUID"] = SECRET[BITBUCKET]
    verify(BITBUCKET, headers, body, SECRET)
    headers["X-Hook-UUID"] = "another-uuid"
    with pytest.raises(Unauthorized):
        verify(BITBUCKET, headers, body, SECRET)


def test_github_form_delivery_is_read() -> None:
    _, body = PROVIDERS["github"](URL, "refs/heads/main", SHA, "x")
    form = b"payload=" + quote(body.decode()).encode()
    headers = {"X-GitHub-Event": "push", "Content-Type": "application/x-www-form-urlencoded"}
    assert parse_push(GITHUB, headers, form).refs == ("refs/heads/main",)


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        ({"X-GitHub-Event": "push"}, b"{not json", "not JSON"),
        ({"X-GitHub-Event": "push"}, b"[1, 2]", "not a JSON object"),
        ({"X-GitHub-Event": "push"}, json.dumps({"ref": "x"}).encode(), "not a github push"),
        ({"X-Gitlab-Event": "Push Hook"}, b"\xff\xfe", "not JSON"),
        ({"X-Vss-ActivityId": "1"}, json.dumps({"eventType": "build"}).encode(), "not a azure"),
    ],
)
def test_malformed_bodies_are_one_line_bad_payloads(
    headers: dict[str, str], body: bytes, reason: str
) -> None:
    with pytest.raises(BadPayload, match=reason) as err:
        parse_push(detect_provider(headers), headers, body)
    assert "\n" not in str(err.value)


def test_unknown_sender_and_pings() -> None:
    with pytest.raises(BadPayload, match="known git provider"):
        detect_provider({"Content-Type": "application/json"})
    assert is_ping(GITHUB, {"X-GitHub-Event": "ping"})
    assert is_ping(BITBUCKET_SERVER, {"X-Event-Key": "diagnostics:ping"})
    assert not is_ping(GITHUB, {"X-GitHub-Event": "push"})


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/Org/Repo",
        "https://github.com/org/repo.git",
        "http://github.com/org/repo/",
        "https://user@github.com:443/org/repo.git",
        "ssh://git@github.com/org/repo.git",
        "ssh://git@github.com:22/org/repo",
        "git@github.com:org/repo.git",
        "github.com:org/repo",
        "git://github.com/org/repo.git",
    ],
)
def test_every_form_of_a_repository_url_has_one_key(url: str) -> None:
    assert repo_key(url) == "github.com/org/repo"


@pytest.mark.parametrize(
    "url",
    [
        "https://dev.azure.com/org/project/_git/repo",
        "https://org@dev.azure.com/org/project/_git/repo",
        "https://org.visualstudio.com/project/_git/repo",
        "git@ssh.dev.azure.com:v3/org/project/repo",
        "org@vs-ssh.visualstudio.com:v3/org/project/repo",
    ],
)
def test_azure_devops_url_spellings_have_one_key(url: str) -> None:
    assert repo_key(url) == "dev.azure.com/org/project/repo"


def test_other_repositories_do_not_match() -> None:
    push = Push(GITHUB, ("https://github.com/org/repo",), ("refs/heads/main",), (SHA,))
    assert not same_repo(push, "https://github.com/org/repo-two")
    assert not same_repo(push, "https://gitlab.com/org/repo")
    assert not same_repo(push, "https://github.com/other/repo")


def test_a_pinned_commit_moves_only_when_pushed() -> None:
    push = Push(GITHUB, (URL,), ("refs/heads/main",), (SHA,))
    assert push.moves(SHA)
    assert not push.moves("b" * 40)
    assert not push.moves("")
