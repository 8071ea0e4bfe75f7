"""OciContentStore against Debian's docker-registry: round trips, errors, auth, TLS, outages."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest

from activities.content import ContentError, ContentUnavailableError
from activities.ocicontent import OciContentStore
from activities.secrets import FileSecretStore
from devenv.registry import (
    BASIC_PASSWORD,
    BASIC_USER,
    LocalRegistry,
    self_signed_certificate,
)
from flotilla.settings import settings_from_env
from runtime.stores import content_store, secret_store
from tests.content.conftest import SYSTEM, MakeStore
from tests.images.conftest import FaultServer, Reply
from tests.images.test_registry_auth import ISSUER, SERVICE, TokenIssuer


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob_file(registry: LocalRegistry, digest: str) -> Path:
    """Where distribution's filesystem driver keeps a blob's bytes."""
    return registry.storage / "docker/registry/v2/blobs/sha256" / digest[:2] / digest / "data"


def test_round_trip_idempotent_put_and_requests_per_call(make_store: MakeStore) -> None:
    store = make_store()
    store.put(b"warm-up")  # the first put of a repository also pushes the empty config
    before = store.requests
    digest = store.put(b"hello")
    assert digest == sha(b"hello")
    assert store.requests - before == 4  # manifest 404, upload POST + PUT, manifest PUT

    before = store.requests
    assert store.put(b"hello") == digest
    assert store.requests - before == 1  # one GET of the tag: already there, nothing written

    before = store.requests
    assert store.has(digest) and not store.has(sha(b"never stored"))
    assert store.requests - before == 2

    fresh = make_store(cache=None)  # no cache: the bytes come from the registry
    before = fresh.requests
    assert fresh.get(digest) == b"hello"
    assert fresh.requests - before == 1
    assert sorted(e.digest for e in store.entries()) == sorted([digest, sha(b"warm-up")])


def test_a_refresh_within_the_same_second_keeps_the_content(make_store: MakeStore) -> None:
    """With a refresh on every put, two puts in one second push the same manifest (its time
    is to the second): the refresh must not delete it as the old one."""
    store = make_store(touch_after=timedelta(0))
    digest = store.put(b"refreshed")
    for _ in range(3):
        assert store.put(b"refreshed") == digest
        assert store.has(digest)
    assert [e.digest for e in store.entries()] == [digest]
    assert store.get(digest) == b"refreshed"


def test_missing_malformed_and_corrupt_digests(
    make_store: MakeStore, registry: LocalRegistry
) -> None:
    store = make_store(cache=None)
    missing = sha(b"missing")
    with pytest.raises(ContentError) as caught:
        store.get(missing)
    assert not isinstance(caught.value, ContentUnavailableError)
    assert str(caught.value) == f"content {missing} in {store.reference} is not in the store"
    with pytest.raises(ContentError, match="not a sha256 hex digest"):
        store.get("../../etc/passwd")
    with pytest.raises(ContentError, match="not a sha256 hex digest"):
        store.has("sha256:" + missing)

    digest = store.put(b"precious bytes")
    blob_file(registry, digest).write_bytes(b"tampered bytes")
    with pytest.raises(ContentError, match=r"is corrupt: its bytes do not match$"):
        store.get(digest)


def test_a_damaged_cache_is_scratch_the_registry_answers(
    make_store: MakeStore, tmp_path: Path
) -> None:
    store = make_store(cache="cache")
    digest = store.put(b"cached")
    (tmp_path / "cache" / digest).write_bytes(b"damaged")
    before = store.requests
    assert store.get(digest) == b"cached"
    assert store.requests - before == 1
    assert (tmp_path / "cache" / digest).read_bytes() == b"cached"
    before = store.requests
    assert store.get(digest) == b"cached"  # now from the cache
    assert store.requests == before


def test_two_stores_share_content_through_the_registry_only(
    make_store: MakeStore, tmp_path: Path
) -> None:
    one, two = make_store(cache="one"), make_store(cache="two")
    digest = one.put(b"written on one machine")
    assert not (tmp_path / "two").exists()
    assert two.has(digest) and two.get(digest) == b"written on one machine"
    assert (tmp_path / "two" / digest).read_bytes() == b"written on one machine"
    other = two.put(b"written on another")
    assert one.get(other) == b"written on another"


def test_threads_share_one_store(make_store: MakeStore) -> None:
    store = make_store(cache=None)
    blobs = [f"blob {i}".encode() * (i + 1) for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        digests = list(pool.map(store.put, blobs))
        assert list(pool.map(store.get, digests)) == blobs
        assert all(pool.map(store.has, digests))
    assert store.client._idle.qsize() <= 8


@pytest.mark.parametrize("form", ["username/password", "dockerconfigjson"])
def test_credentials_from_the_secret_store(
    basic_registry: LocalRegistry, make_store: MakeStore, secrets: FileSecretStore, form: str
) -> None:
    if form == "username/password":
        data = {"username": BASIC_USER, "password": BASIC_PASSWORD}
    else:
        login = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
        auths = {"auths": {f"https://{basic_registry.host}/v2/": {"auth": login}}}
        data = {".dockerconfigjson": json.dumps(auths)}
    secrets.put(SYSTEM, "content-registry", data)
    store = make_store(host=basic_registry.host, secret="content-registry")
    digest = store.put(b"behind a password")
    assert make_store(host=basic_registry.host, secret="content-registry", cache=None).get(
        digest
    ) == (b"behind a password")


def test_wrong_or_no_credentials_are_one_line_without_the_password(
    basic_registry: LocalRegistry, make_store: MakeStore, secrets: FileSecretStore
) -> None:
    secrets.put(SYSTEM, "content-registry", {"username": BASIC_USER, "password": "wr0ng-pass"})
    store = make_store(host=basic_registry.host, secret="content-registry")
    with pytest.raises(ContentUnavailableError) as caught:
        store.put(b"x")
    message = str(caught.value)
    assert message == (
        f"content registry {basic_registry.host}: manifest of {sha(b'x')[:12]}: 401 Unauthorized "
        f"with the credentials of secret {SYSTEM}/content-registry"
    )
    assert "wr0ng-pass" not in message and BASIC_PASSWORD not in message

    with pytest.raises(ContentUnavailableError) as caught:
        make_store(host=basic_registry.host).has(sha(b"x"))
    assert str(caught.value) == (
        f"content registry {basic_registry.host}: has {sha(b'x')[:12]}: the registry asks for "
        "credentials (set FLOTILLA_CONTENT_REGISTRY_SECRET)"
    )

    # A rotated secret is read again at the next 401: the same store recovers.
    secrets.put(SYSTEM, "content-registry", {"username": BASIC_USER, "password": BASIC_PASSWORD})
    assert store.get(store.put(b"x")) == b"x"


def test_registry_down_is_unavailable_and_the_same_store_recovers(
    make_store: MakeStore, tmp_path: Path
) -> None:
    own = LocalRegistry(tmp_path / "registry").start()
    try:
        store = make_store(host=own.host, cache=None)
        digest = store.put(b"before the outage")
        own.stop()
        calls: list[Callable[[], object]] = [
            lambda: store.get(digest),
            lambda: store.put(b"during"),
            lambda: list(store.entries()),
        ]
        for call in calls:
            with pytest.raises(ContentUnavailableError) as caught:
                call()
            message = str(caught.value)
            assert message.startswith(f"content registry {own.host} is unreachable: ")
            assert "\n" not in message and "Connection refused" in message
        own.start()  # same port, same storage; the pooled connections are stale now
        assert store.get(digest) == b"before the outage"
        assert store.get(store.put(b"after")) == b"after"
    finally:
        own.stop()


def test_tls_with_the_configured_ca(make_store: MakeStore, tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path / "tls")
    with LocalRegistry(tmp_path / "registry", tls=(cert, key)) as tls:
        store = make_store(host=tls.host, insecure=False, ca_file=cert)
        digest = store.put(b"over TLS")
        assert make_store(host=tls.host, insecure=False, ca_file=cert, cache=None).get(digest) == (
            b"over TLS"
        )
        with pytest.raises(ContentUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
            make_store(host=tls.host, insecure=False).has(digest)  # the system roots only
        with pytest.raises(ContentError, match="HTTP request to an HTTPS server"):
            make_store(host=tls.host, insecure=True, cache=None).get(digest)  # plain HTTP


def test_settings_choose_the_oci_store_with_its_cache_under_the_workdir(
    registry: LocalRegistry, repository: str, tmp_path: Path
) -> None:
    settings = settings_from_env(
        {
            "FLOTILLA_CONTENT_BACKEND": "oci",
            "FLOTILLA_CONTENT_REGISTRY": f"oci://{registry.host}/{repository}",
            "FLOTILLA_CONTENT_REGISTRY_INSECURE": "true",
            "FLOTILLA_WORKDIR": str(tmp_path / "work"),
        },
        home=tmp_path / "home",
    )
    store = content_store(settings, secret_store(settings))
    assert isinstance(store, OciContentStore)
    digest = store.put(b"configured")
    assert (tmp_path / "work" / "content-cache" / digest).read_bytes() == b"configured"
    assert not (tmp_path / "home").exists()  # nothing in ~/.local/share: no state on disk


def test_a_big_blob(make_store: MakeStore) -> None:
    data = bytes(range(256)) * (64 * 1024)  # 16 MiB
    store = make_store(cache=None)
    assert make_store(cache=None).get(store.put(data)) == data


@pytest.mark.parametrize("lifetime", [300, 1])
def test_bearer_tokens_per_kind_of_access_renewed_when_expired(
    make_store: MakeStore, secrets: FileSecretStore, tmp_path: Path, lifetime: int
) -> None:
    issuer = TokenIssuer(tmp_path)
    scopes: list[str] = []

    def token_server(method: str, path: str, headers: dict[str, str]) -> Reply:
        expected = "Basic " + base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
        if headers.get("authorization") != expected:
            return 401, {}, b""
        scope = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)["scope"][0]
        scopes.append(",".join(sorted(scope.rsplit(":", 1)[1].split(","))))
        token = {"token": issuer.token(scope), "expires_in": lifetime}
        return 200, {}, json.dumps(token).encode()

    secrets.put(SYSTEM, "content-registry", {"username": BASIC_USER, "password": BASIC_PASSWORD})
    with FaultServer(token_server) as tokens:
        auth = (
            f"auth:\n  token:\n    realm: http://{tokens.host}/token\n    service: {SERVICE}\n"
            f"    issuer: {ISSUER}\n    rootcertbundle: {issuer.cert}\n"
        )
        with LocalRegistry(tmp_path / "registry", auth=auth) as registry:
            store = make_store(host=registry.host, secret="content-registry", cache=None)
            digests = [store.put(f"blob {i}".encode()) for i in range(3)]
            assert [store.get(d) for d in digests] == [b"blob 0", b"blob 1", b"blob 2"]
            (entry, *_) = store.entries()
            assert store.delete(entry) and not store.has(entry.digest)
    if lifetime == 300:
        # One token per kind of access, then reused: pull, push, delete.
        assert scopes == ["pull", "pull,push", "delete"]
    else:
        # A token that outlives no request is fetched again after each 401.
        assert len(scopes) > 10 and set(scopes) == {"pull", "pull,push", "delete"}
