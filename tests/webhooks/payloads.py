"""Push webhooks as each provider sends them: real payload shapes, headers and signatures.

Shapes follow each provider's documented push event (fields flotilla does not read are
trimmed, but the nesting is the provider's). ``url`` is the repository's web URL; each
builder also gives the provider's clone URLs derived from it, as a real delivery does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from urllib.parse import urlsplit

Delivery = tuple[dict[str, str], bytes]


def _sign(key: str, body: bytes) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def _ssh(url: str) -> str:
    parts = urlsplit(url)
    return f"git@{parts.hostname}:{parts.path.lstrip('/')}.git"


def github(url: str, ref: str, sha: str, secret: str) -> Delivery:
    body = json.dumps(
        {
            "ref": ref,
            "before": "0" * 40,
            "after": sha,
            "created": False,
            "deleted": False,
            "forced": False,
            "repository": {
                "id": 1296269,
                "name": url.rsplit("/", 1)[-1],
                "full_name": urlsplit(url).path.strip("/"),
                "html_url": url,
                "clone_url": url + ".git",
                "ssh_url": _ssh(url),
                "default_branch": "main",
            },
            "pusher": {"name": "octocat", "email": "octocat@example.com"},
            "head_commit": {"id": sha, "message": "change"},
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": "sha256=" + _sign(secret, body),
        "User-Agent": "GitHub-Hookshot/abc123",
    }
    return headers, body


def gitea(url: str, ref: str, sha: str, secret: str) -> Delivery:
    body = json.dumps(
        {
            "ref": ref,
            "before": "0" * 40,
            "after": sha,
            "compare_url": url + "/compare",
            "commits": [{"id": sha, "message": "change\n"}],
            "repository": {
                "id": 1,
                "full_name": urlsplit(url).path.strip("/"),
                "html_url": url,
                "clone_url": url + ".git",
                "ssh_url": _ssh(url),
            },
            "pusher": {"login": "gitea"},
        }
    ).encode()
    signature = _sign(secret, body)
    headers = {
        "Content-Type": "application/json",
        "X-Gitea-Event": "push",
        "X-Gitea-Delivery": str(uuid.uuid4()),
        "X-Gitea-Signature": signature,
        "X-Gogs-Event": "push",
        "X-Gogs-Signature": signature,
        # Gitea sends GitHub's headers too, with a signature GitHub would check.
        "X-GitHub-Event": "push",
        "X-Hub-Signature-256": "sha256=" + signature,
    }
    return headers, body


def gitlab(url: str, ref: str, sha: str, secret: str) -> Delivery:
    kind = "tag_push" if ref.startswith("refs/tags/") else "push"
    project = {
        "id": 15,
        "name": url.rsplit("/", 1)[-1],
        "web_url": url,
        "git_ssh_url": _ssh(url),
        "git_http_url": url + ".git",
        "path_with_namespace": urlsplit(url).path.strip("/"),
        "default_branch": "main",
    }
    body = json.dumps(
        {
            "object_kind": kind,
            "event_name": kind,
            "before": "0" * 40,
            "after": sha,
            "ref": ref,
            "checkout_sha": sha,
            "user_username": "jsmith",
            "project_id": 15,
            "project": project,
            "repository": {
                "name": project["name"],
                "url": project["git_ssh_url"],
                "homepage": url,
                "git_http_url": project["git_http_url"],
                "git_ssh_url": project["git_ssh_url"],
            },
            "commits": [{"id": sha, "message": "change"}],
            "total_commits_count": 1,
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Gitlab-Event": "Tag Push Hook" if kind == "tag_push" else "Push Hook",
        "X-Gitlab-Token": secret,
        "X-Gitlab-Event-UUID": str(uuid.uuid4()),
    }
    return headers, body


def bitbucket(url: str, ref: str, sha: str, secret: str) -> Delivery:
    kind, name = ("tag", ref[10:]) if ref.startswith("refs/tags/") else ("branch", ref[11:])
    body = json.dumps(
        {
            "actor": {"display_name": "A User", "type": "user"},
            "repository": {
                "type": "repository",
                "full_name": urlsplit(url).path.strip("/"),
                "links": {"html": {"href": url}},
                "scm": "git",
            },
            "push": {
                "changes": [
                    {
                        "new": {
                            "type": kind,
                            "name": name,
                            "target": {"type": "commit", "hash": sha},
                        },
                        "old": None,
                        "created": True,
                        "forced": False,
                        "closed": False,
                    }
                ]
            },
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Event-Key": "repo:push",
        "X-Hook-UUID": str(uuid.uuid4()),
        "X-Request-UUID": str(uuid.uuid4()),
        "X-Hub-Signature": "sha256=" + _sign(secret, body),
    }
    return headers, body


def bitbucket_server(url: str, ref: str, sha: str, secret: str) -> Delivery:
    parts = urlsplit(url)
    body = json.dumps(
        {
            "eventKey": "repo:refs_changed",
            "date": "2026-12-03T10:00:00+0000",
            "actor": {"name": "admin"},
            "repository": {
                "slug": url.rsplit("/", 1)[-1],
                "project": {"key": "PRJ"},
                "links": {
                    "clone": [
                        {"href": url + ".git", "name": "http"},
                        {"href": f"ssh://git@{parts.hostname}:7999{parts.path}.git", "name": "ssh"},
                    ],
                    "self": [{"href": url + "/browse"}],
                },
            },
            "changes": [
                {
                    "ref": {
                        "id": ref,
                        "displayId": ref.split("/", 2)[-1],
                        "type": "TAG" if ref.startswith("refs/tags/") else "BRANCH",
                    },
                    "refId": ref,
                    "fromHash": "0" * 40,
                    "toHash": sha,
                    "type": "UPDATE",
                }
            ],
        }
    ).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-Event-Key": "repo:refs_changed",
        "X-Request-Id": str(uuid.uuid4()),
        "X-Hub-Signature": "sha256=" + _sign(secret, body),
    }
    return headers, body


def azure(url: str, ref: str, sha: str, secret: str) -> Delivery:
    """Azure DevOps: basic auth with ``secret`` as ``user:password``."""
    body = json.dumps(
        {
            "subscriptionId": str(uuid.uuid4()),
            "notificationId": 3,
            "id": str(uuid.uuid4()),
            "eventType": "git.push",
            "publisherId": "tfs",
            "resource": {
                "refUpdates": [{"name": ref, "oldObjectId": "0" * 40, "newObjectId": sha}],
                "repository": {
                    "id": str(uuid.uuid4()),
                    "name": url.rsplit("/", 1)[-1],
                    "url": url,
                    "remoteUrl": url,
                },
                "pushId": 14,
            },
        }
    ).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-Vss-ActivityId": str(uuid.uuid4()),
        "X-Vss-SubscriptionId": str(uuid.uuid4()),
        "Authorization": "Basic " + base64.b64encode(secret.encode()).decode(),
    }
    return headers, body


PROVIDERS = {
    "github": github,
    "gitea": gitea,
    "gitlab": gitlab,
    "bitbucket": bitbucket,
    "bitbucket-server": bitbucket_server,
    "azure": azure,
}
