"""Git push webhooks: which provider sent one, whether it is signed by our secret, what it says.

Pure functions of the request's headers and body, for the receiver in ``starters/webhookserver``.
The secret is Fleet's: the Secret ``gitjob-webhook`` (in flotilla's system namespace) with one
key per provider, ``github``, ``gitlab``, ``bitbucket``, ``bitbucket-server``, ``gogs`` (also
Gitea's), and ``azure-username`` / ``azure-password`` for Azure DevOps' basic auth. Unlike
Fleet, an unsigned push is never accepted: a provider without its key gets 401.

Errors (each a one-line message, never a secret):

- ``WebhookError``: the base, with the HTTP ``status`` to answer;
- ``Unauthorized`` (401): signature, token or password missing or wrong;
- ``BadPayload`` (400): not a push of a known provider, or a body that is not its JSON.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

WEBHOOK_SECRET_NAME = "gitjob-webhook"  # noqa: S105 - Fleet's secret name, not a secret

GITHUB = "github"
GITLAB = "gitlab"
BITBUCKET = "bitbucket"
BITBUCKET_SERVER = "bitbucket-server"
GOGS = "gogs"  # Gogs and Gitea: the same payload and key
AZURE = "azure"
AZURE_USERNAME = "azure-username"
AZURE_PASSWORD = "azure-password"  # noqa: S105 - a key name
PROVIDERS = (GITHUB, GITLAB, BITBUCKET, BITBUCKET_SERVER, GOGS, AZURE)

_BRANCH = "refs/heads/"
_TAG = "refs/tags/"


class WebhookError(Exception):
    """A request the receiver refuses; ``status`` is the HTTP answer."""

    status = 400


class Unauthorized(WebhookError):
    status = 401


class BadPayload(WebhookError):
    status = 400


@dataclass(frozen=True)
class Push:
    """What a push event says: the repository (its URLs as the provider spells them), the
    refs it moved (``refs/heads/main``, ``refs/tags/v1``) and the commits they moved to."""

    provider: str
    repo_urls: tuple[str, ...]
    refs: tuple[str, ...]
    revisions: tuple[str, ...]

    def moves(self, followed: str) -> bool:
        """Whether this push moves what a GitRepo follows: its branch, or its pinned
        ``revision`` when that is a tag (a moved tag) or one of the pushed commits."""
        if not followed:
            return False
        wanted = {followed, _BRANCH + followed, _TAG + followed}
        return bool(wanted & set(self.refs)) or followed in self.revisions


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


def detect_provider(headers: Mapping[str, str]) -> str:
    """The provider whose headers these are; BadPayload when none is recognised."""
    h = _lower(headers)
    # Gitea and Gogs also send GitHub's headers: they are recognised first, as Fleet does.
    if "x-gitea-event" in h or "x-gogs-event" in h:
        return GOGS
    if "x-github-event" in h:
        return GITHUB
    if "x-gitlab-event" in h:
        return GITLAB
    if "x-hook-uuid" in h or h.get("x-event-key", "").startswith("repo:push"):
        return BITBUCKET
    if "x-event-key" in h:
        return BITBUCKET_SERVER
    if "x-vss-activityid" in h or "x-vss-subscriptionid" in h:
        return AZURE
    raise BadPayload(
        "not a webhook of a known git provider "
        "(GitHub, GitLab, Bitbucket, Gitea/Gogs, Azure DevOps)"
    )


def secret_keys(provider: str) -> tuple[str, ...]:
    """The keys of the webhook Secret that ``provider``'s pushes are checked with."""
    return (AZURE_USERNAME, AZURE_PASSWORD) if provider == AZURE else (provider,)


def verify(
    provider: str, headers: Mapping[str, str], body: bytes, secret: Mapping[str, str]
) -> None:
    """Check the signature, token or password; Unauthorized when it is missing or wrong."""
    h = _lower(headers)
    missing = [key for key in secret_keys(provider) if not secret.get(key)]
    if missing:
        raise Unauthorized(
            f"no {provider} webhook secret: key {missing[0]!r} of Secret {WEBHOOK_SECRET_NAME!r}"
            " is not set"
        )
    if provider == AZURE:
        auth = h.get("authorization", "")
        _check_basic_auth(auth, secret[AZURE_USERNAME], secret[AZURE_PASSWORD])
        return
    key = secret[provider]
    if provider == GITLAB:
        _check_equal(h.get("x-gitlab-token", ""), key, "X-Gitlab-Token")
    elif provider == GOGS:
        header = "x-gitea-signature" if "x-gitea-signature" in h else "x-gogs-signature"
        _check_hmac(h.get(header, ""), key, body, header)
    elif provider == GITHUB:
        signature = _without(h.get("x-hub-signature-256", ""), "sha256=")
        _check_hmac(signature, key, body, "X-Hub-Signature-256")
    elif provider == BITBUCKET and "x-hub-signature" not in h:
        # Bitbucket Cloud hooks without a secret are checked by their UUID, as in Fleet.
        _check_equal(h.get("x-hook-uuid", ""), key, "X-Hook-UUID")
    else:  # Bitbucket Server, and Bitbucket Cloud with a secret
        signature = _without(h.get("x-hub-signature", ""), "sha256=")
        _check_hmac(signature, key, body, "X-Hub-Signature")


def _without(value: str, prefix: str) -> str:
    return value[len(prefix) :] if value.startswith(prefix) else ""


def _check_hmac(signature: str, key: str, body: bytes, header: str) -> None:
    if not signature:
        raise Unauthorized(f"no {header} signature")
    expected = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature.strip().lower(), expected):
        raise Unauthorized(f"{header}: signature does not match the webhook secret")


def _check_equal(given: str, key: str, header: str) -> None:
    if not given:
        raise Unauthorized(f"no {header} header")
    if not hmac.compare_digest(given.encode(), key.encode()):
        raise Unauthorized(f"{header} does not match the webhook secret")


def _check_basic_auth(header: str, username: str, password: str) -> None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise Unauthorized("no basic authentication")
    try:
        given = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise Unauthorized("basic authentication is not base64") from None
    if not hmac.compare_digest(given, f"{username}:{password}".encode()):
        raise Unauthorized("basic authentication does not match the webhook secret")


# --- payloads ----------------------------------------------------------------------------------


def is_ping(provider: str, headers: Mapping[str, str]) -> bool:
    """A provider's test delivery, answered without syncing anything."""
    h = _lower(headers)
    if provider == GITHUB:
        return h.get("x-github-event") == "ping"
    if provider == BITBUCKET_SERVER:
        return h.get("x-event-key") == "diagnostics:ping"
    return False


def parse_push(provider: str, headers: Mapping[str, str], body: bytes) -> Push:
    """The push a verified body describes; BadPayload with a one-line reason otherwise."""
    h = _lower(headers)
    data = _json_body(h.get("content-type", ""), body)
    try:
        push = _PARSERS[provider](data)
    except (KeyError, TypeError, AttributeError, IndexError):
        push = None
    if push is None or not push.repo_urls:
        raise BadPayload(f"not a {provider} push event: no repository or ref in the body")
    return push


def _json_body(content_type: str, body: bytes) -> Any:
    if content_type.startswith("application/x-www-form-urlencoded"):
        # GitHub's form delivery: the JSON is the ``payload`` field.
        try:
            fields = parse_qs(body.decode(), strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise BadPayload("the form body cannot be read") from None
        if "payload" not in fields:
            raise BadPayload("the form body has no 'payload' field")
        body = fields["payload"][0].encode()
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as err:
        raise BadPayload(f"the body is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise BadPayload("the body is not a JSON object")
    return data


def _urls(*values: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if isinstance(v, str) and v))


def _github_like(provider: str, data: dict[str, Any]) -> Push:
    repo = data["repository"]
    return Push(
        provider,
        _urls(repo.get("html_url"), repo.get("clone_url"), repo.get("ssh_url")),
        _urls(data.get("ref")),
        _urls(data.get("after")),
    )


def _gitlab(data: dict[str, Any]) -> Push:
    project = data.get("project") or data["repository"]
    return Push(
        GITLAB,
        _urls(project.get("web_url"), project.get("git_http_url"), project.get("git_ssh_url")),
        _urls(data.get("ref")),
        _urls(data.get("checkout_sha"), data.get("after")),
    )


def _bitbucket(data: dict[str, Any]) -> Push:
    refs: list[str] = []
    revisions: list[str] = []
    for change in data["push"]["changes"]:
        new = change.get("new") or {}
        kind = {"branch": _BRANCH, "tag": _TAG}.get(new.get("type", ""), "")
        if kind and new.get("name"):
            refs.append(kind + new["name"])
        revisions.append((new.get("target") or {}).get("hash", ""))
    links = data["repository"].get("links") or {}
    return Push(
        BITBUCKET, _urls((links.get("html") or {}).get("href")), _urls(*refs), _urls(*revisions)
    )


def _bitbucket_server(data: dict[str, Any]) -> Push:
    clone = (data["repository"].get("links") or {}).get("clone") or []
    changes = data["changes"]
    return Push(
        BITBUCKET_SERVER,
        _urls(*(link.get("href") for link in clone)),
        _urls(*(c.get("refId") or (c.get("ref") or {}).get("id") for c in changes)),
        _urls(*(c.get("toHash") for c in changes)),
    )


def _azure(data: dict[str, Any]) -> Push:
    if data.get("eventType") != "git.push":
        return Push(AZURE, (), (), ())
    resource = data["resource"]
    repo = resource["repository"]
    updates = resource.get("refUpdates") or []
    return Push(
        AZURE,
        _urls(repo.get("remoteUrl"), repo.get("sshUrl")),
        _urls(*(u.get("name") for u in updates)),
        _urls(*(u.get("newObjectId") for u in updates)),
    )


_PARSERS = {
    GITHUB: lambda data: _github_like(GITHUB, data),
    GOGS: lambda data: _github_like(GOGS, data),
    GITLAB: _gitlab,
    BITBUCKET: _bitbucket,
    BITBUCKET_SERVER: _bitbucket_server,
    AZURE: _azure,
}


# --- repository URLs ---------------------------------------------------------------------------

_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>(?!/).*)$")


def repo_key(url: str) -> str:
    """``host/path`` of a repository URL in any of its forms, to compare two URLs with.

    https, http, ssh, git and scp-like (``git@host:org/repo.git``) forms of the same repository
    give the same key: no user, port, ``.git`` or trailing slash, lower case. Azure DevOps'
    ``org.visualstudio.com``, ``ssh.dev.azure.com:v3/`` and ``/_git/`` spellings become
    ``dev.azure.com/org/project/repo``.
    """
    url = url.strip()
    if "://" in url:
        parts = urlsplit(url)
        host, path = (parts.hostname or ""), parts.path
    else:
        match = _SCP_LIKE.match(url)
        if not match:
            return url.lower().rstrip("/").removesuffix(".git")
        host, path = match["host"], match["path"]
    host = host.lower()
    path = "/" + path.strip("/").lower().removesuffix(".git")
    if host in {"ssh.dev.azure.com", "vs-ssh.visualstudio.com"}:
        host = "dev.azure.com"
    elif host.endswith(".visualstudio.com"):
        path = "/" + host.split(".", 1)[0] + path
        host = "dev.azure.com"
    if host == "dev.azure.com":
        path = re.sub(r"^/v3/", "/", path).replace("/_git/", "/")
    return host + path


def same_repo(push: Push, repo: str) -> bool:
    """Whether a GitRepo's ``repo`` is the repository the push names (in any URL form)."""
    key = repo_key(repo)
    return any(repo_key(url) == key for url in push.repo_urls)
