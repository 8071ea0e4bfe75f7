"""The registry activity against the real registry (behind a counting proxy), and against a
loopback fake for the answers the real one will not give on demand (401, 429, 500, pages, 304)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.registry import (
    MANIFEST_MEDIA_TYPES,
    RegistryActivities,
    parse_challenge,
    registry_scheme,
    retry_after_seconds,
)
from activities.registry_models import PollRequest, PollResult
from activities.secrets import FileSecretStore
from devenv.process import free_port
from devenv.registry import LocalRegistry
from flotilla.errors import (
    REGISTRY_AUTH_FAILED,
    REGISTRY_NOT_FOUND,
    REGISTRY_RATE_LIMITED,
    REGISTRY_UNAVAILABLE,
)
from flotilla.ids import DEFAULT_NAMESPACE
from tests.images.conftest import CountingProxy, FaultServer, Reply


def _poll(activities: RegistryActivities, request: PollRequest) -> PollResult:
    result = ActivityEnvironment().run(activities.poll_registry, request)
    assert isinstance(result, PollResult)
    return result


def _error(activities: RegistryActivities, request: PollRequest) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        _poll(activities, request)
    return caught.value


def test_unchanged_registry_costs_one_request_per_poll(
    registry: LocalRegistry, proxy: CountingProxy, tmp_path: Path
) -> None:
    repo = f"app-{uuid.uuid4().hex[:8]}"
    for tag in ("1.0.0", "1.1.0", "latest"):
        registry.push_image(repo, tag, tag)
    activities = RegistryActivities(FileSecretStore(tmp_path))
    request = PollRequest(registry=proxy.host, repository=repo)
    first = _poll(activities, request)
    assert sorted(first.tags) == ["1.0.0", "1.1.0", "latest"]
    for _ in range(5):
        before = proxy.count()
        again = _poll(activities, request)
        assert proxy.count() - before == 1 and again.requests == 1
        assert again.listing_digest == first.listing_digest
    # A digest-following poll is one HEAD on the manifest, the digest the registry reports.
    before = proxy.count()
    digest = _poll(
        activities,
        PollRequest(registry=proxy.host, repository=repo, list_tags=False, digest_of="latest"),
    )
    assert digest.digest == registry.head_digest(repo, "latest")
    assert proxy.requests[before:] == [("HEAD", f"/v2/{repo}/manifests/latest")]
    # A new tag shows up in the next poll.
    registry.push_image(repo, "1.2.0", "new")
    assert "1.2.0" in _poll(activities, request).tags


def test_missing_repository_and_tag_are_not_found(registry: LocalRegistry, tmp_path: Path) -> None:
    activities = RegistryActivities(FileSecretStore(tmp_path))
    missing = _error(activities, PollRequest(registry=registry.host, repository="no/such-repo"))
    assert missing.type == REGISTRY_NOT_FOUND and missing.non_retryable
    assert missing.message == f"{registry.host}/no/such-repo: tags list: 404 Not Found"
    repo = f"app-{uuid.uuid4().hex[:8]}"
    registry.push_image(repo, "1.0.0")
    tag = _error(
        activities,
        PollRequest(registry=registry.host, repository=repo, list_tags=False, digest_of="9.9.9"),
    )
    assert tag.type == REGISTRY_NOT_FOUND and "manifest '9.9.9': 404" in tag.message


def test_registry_down_is_retryable(tmp_path: Path) -> None:
    host = f"127.0.0.1:{free_port()}"
    err = _error(
        RegistryActivities(FileSecretStore(tmp_path)), PollRequest(registry=host, repository="app")
    )
    assert err.type == REGISTRY_UNAVAILABLE and not err.non_retryable
    assert err.message.startswith(f"{host}/app: tags list: registry unreachable:")
    assert "\n" not in err.message


def _tags(*tags: str) -> bytes:
    return json.dumps({"name": "app", "tags": list(tags)}).encode()


def test_rate_limit_sets_the_next_retry_delay(tmp_path: Path) -> None:
    def responder(method: str, path: str, headers: dict[str, str]) -> Reply:
        return 429, {"Retry-After": "7"}, b"slow down"

    with FaultServer(responder) as fake:
        err = _error(
            RegistryActivities(FileSecretStore(tmp_path)),
            PollRequest(registry=fake.host, repository="app"),
        )
    assert err.type == REGISTRY_RATE_LIMITED and not err.non_retryable
    assert err.next_retry_delay is not None and err.next_retry_delay.total_seconds() == 7
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", time.time()) == 1.0
    assert retry_after_seconds("junk", time.time()) == 30.0


def test_server_error_is_retryable_with_one_line(tmp_path: Path) -> None:
    def responder(method: str, path: str, headers: dict[str, str]) -> Reply:
        return 503, {}, b"<html>\n<body>upstream\nbroken</body></html>"

    with FaultServer(responder) as fake:
        err = _error(
            RegistryActivities(FileSecretStore(tmp_path)),
            PollRequest(registry=fake.host, repository="app"),
        )
    assert err.type == REGISTRY_UNAVAILABLE and not err.non_retryable
    assert err.message == (
        f"{fake.host}/app: tags list: 503 Service Unavailable: "
        "<html> <body>upstream broken</body></html>"
    )


def test_bearer_token_is_fetched_with_the_secret_and_cached(tmp_path: Path) -> None:
    secrets = FileSecretStore(tmp_path)
    secrets.put(DEFAULT_NAMESPACE, "regcreds", {"username": "robot", "password": "hunter2"})
    fake_host: list[str] = []

    def responder(method: str, path: str, headers: dict[str, str]) -> Reply:
        if path.startswith("/token"):
            if headers.get("authorization") != "Basic cm9ib3Q6aHVudGVyMg==":
                return 401, {}, b""
            return 200, {}, json.dumps({"token": "tok-1", "expires_in": 300}).encode()
        if headers.get("authorization") != "Bearer tok-1":
            challenge = (
                f'Bearer realm="http://{fake_host[0]}/token",service="fake",'
                'scope="repository:app:pull"'
            )
            return 401, {"WWW-Authenticate": challenge}, b""
        return 200, {}, _tags("1.0.0")

    activities = RegistryActivities(secrets)
    with FaultServer(responder) as fake:
        fake_host.append(fake.host)
        request = PollRequest(registry=fake.host, repository="app", secret_name="regcreds")
        assert _poll(activities, request).tags == ["1.0.0"]
        assert [p for _, p, _ in fake.requests] == [
            "/v2/app/tags/list",
            "/token?service=fake&scope=repository%3Aapp%3Apull",
            "/v2/app/tags/list",
        ]
        fake.requests.clear()
        again = _poll(activities, request)
        assert again.requests == 1 and [p for _, p, _ in fake.requests] == ["/v2/app/tags/list"]
        # Wrong credentials: one line naming the secret, never its content, not retryable.
        secrets.put(DEFAULT_NAMESPACE, "regcreds", {"username": "robot", "password": "wrong"})
        activities2 = RegistryActivities(secrets)
        err = _error(activities2, request)
    assert err.type == REGISTRY_AUTH_FAILED and err.non_retryable
    assert "secret 'regcreds'" in err.message and "wrong" not in err.message


def test_401_after_authenticating_is_an_auth_error(tmp_path: Path) -> None:
    def responder(method: str, path: str, headers: dict[str, str]) -> Reply:
        return 401, {"WWW-Authenticate": 'Basic realm="fake"'}, b""

    secrets = FileSecretStore(tmp_path)
    with FaultServer(responder) as fake:
        anonymous = _error(
            RegistryActivities(secrets), PollRequest(registry=fake.host, repository="app")
        )
        secrets.put(DEFAULT_NAMESPACE, "creds", {"username": "u", "password": "p"})
        refused = _error(
            RegistryActivities(secrets),
            PollRequest(registry=fake.host, repository="app", secret_name="creds"),
        )
    assert anonymous.type == REGISTRY_AUTH_FAILED and "asks for credentials (set secretRef)" in str(
        anonymous
    )
    assert refused.type == REGISTRY_AUTH_FAILED and refused.message == (
        f"{fake.host}/app: tags list: 401 Unauthorized after authenticating with secret 'creds'"
    )


def test_pages_are_followed_and_etag_makes_polls_light(tmp_path: Path) -> None:
    pages = {
        "/v2/app/tags/list?n=2": (_tags("a", "b"), '</v2/app/tags/list?n=2&last=b>; rel="next"'),
        "/v2/app/tags/list?n=2&last=b": (_tags("c"), ""),
    }

    def responder(method: str, path: str, headers: dict[str, str]) -> Reply:
        if path == "/v2/app/tags/list?n=2" and headers.get("if-none-match") == '"v1"':
            return 304, {"ETag": '"v1"'}, b""
        body, link = pages[path]
        out = {"ETag": '"v1"'} if path.endswith("n=2") else {}
        if link:
            out["Link"] = link
        return 200, out, body

    activities = RegistryActivities(FileSecretStore(tmp_path), page_size=2)
    with FaultServer(responder) as fake:
        request = PollRequest(registry=fake.host, repository="app")
        first = _poll(activities, request)
        second = _poll(activities, request)
    assert first.tags == ["a", "b", "c"] and first.requests == 2
    assert second.tags == ["a", "b", "c"] and second.requests == 1 and second.not_modified
    assert second.listing_digest == first.listing_digest


def test_manifest_head_accepts_every_manifest_type(tmp_path: Path) -> None:
    def responder(method: str, path: str, headers: dict[str, str]) -> Reply:
        accepted = [a.strip() for a in headers.get("accept", "").split(",")]
        if sorted(accepted) != sorted(MANIFEST_MEDIA_TYPES):
            return 406, {}, b""
        return 200, {"Docker-Content-Digest": "sha256:" + "a" * 64}, b""

    with FaultServer(responder) as fake:
        result = _poll(
            RegistryActivities(FileSecretStore(tmp_path)),
            PollRequest(registry=fake.host, repository="app", list_tags=False, digest_of="latest"),
        )
    assert result.digest == "sha256:" + "a" * 64 and result.tags == []


@pytest.mark.parametrize(
    ("host", "scheme"),
    [
        ("127.0.0.1:5000", "http"),
        ("localhost:5000", "http"),
        ("[::1]:5000", "http"),
        ("ghcr.io", "https"),
        ("registry-1.docker.io", "https"),
        ("10.0.0.1:5000", "https"),
    ],
)
def test_plain_http_only_on_loopback(host: str, scheme: str) -> None:
    assert registry_scheme(host) == scheme


def test_challenge_parsing() -> None:
    assert parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull"'
    ) == (
        "bearer",
        {
            "realm": "https://auth.docker.io/token",
            "service": "registry.docker.io",
            "scope": "repository:library/nginx:pull",
        },
    )
