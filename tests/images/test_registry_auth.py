"""Authentication against the real registry: Debian's docker-registry configured for token auth
(a tiny token server here signs RS256 JWTs with an openssl key) and for htpasswd basic auth."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.registry import RegistryActivities
from activities.registry_models import PollRequest, PollResult
from activities.secrets import FileSecretStore
from devenv.registry import BASIC_PASSWORD, BASIC_USER, LocalRegistry, htpasswd_auth
from flotilla.errors import REGISTRY_AUTH_FAILED
from flotilla.ids import DEFAULT_NAMESPACE
from tests.images.conftest import FaultServer, Reply

SERVICE = "flotilla-test"
ISSUER = "flotilla-test-issuer"
USER, PASSWORD = BASIC_USER, BASIC_PASSWORD


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """Signs registry tokens as docker/distribution expects: RS256 with the cert in ``x5c``."""

    def __init__(self, directory: Path) -> None:
        self.key = directory / "key.pem"
        self.cert = directory / "cert.pem"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=flotilla-token",
                "-keyout",
                str(self.key),
                "-out",
                str(self.cert),
            ],
            check=True,
            capture_output=True,
        )
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout
        self.x5c = base64.b64encode(der).decode()

    def token(self, scope: str) -> str:
        _, name, actions = scope.split(":")
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {
            "iss": ISSUER,
            "sub": USER,
            "aud": SERVICE,
            "iat": now,
            "nbf": now - 10,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            "access": [{"type": "repository", "name": name, "actions": actions.split(",")}],
        }
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signing}.{_b64(signature)}"


def _serve_registry(directory: Path, storage: Path, auth: str) -> tuple[LocalRegistry, str]:
    registry = LocalRegistry(directory, storage=storage, auth=auth).start()
    return registry, registry.host


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Registry storage holding app:1.0.0 and app:1.1.0, pushed without auth, then closed."""
    directory = tmp_path_factory.mktemp("seed")
    with LocalRegistry(directory) as plain:
        plain.push_image("team/app", "1.0.0", "one")
        plain.push_image("team/app", "1.1.0", "two")
    yield directory / "storage"


def test_bearer_token_auth_against_the_real_registry(seeded: Path, tmp_path: Path) -> None:
    issuer = TokenIssuer(tmp_path)
    asked: list[str] = []

    def token_server(method: str, path: str, headers: dict[str, str]) -> Reply:
        asked.append(path)
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if headers.get("authorization") != expected:
            return 401, {}, b""
        scope = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)["scope"][0]
        return 200, {}, json.dumps({"token": issuer.token(scope), "expires_in": 300}).encode()

    with FaultServer(token_server) as tokens:
        auth = (
            f"auth:\n  token:\n    realm: http://{tokens.host}/token\n    service: {SERVICE}\n"
            f"    issuer: {ISSUER}\n    rootcertbundle: {issuer.cert}\n"
        )
        process, host = _serve_registry(tmp_path, seeded, auth)
        try:
            secrets = FileSecretStore(tmp_path / "secrets")
            secrets.put(DEFAULT_NAMESPACE, "regcreds", {"username": USER, "password": PASSWORD})
            activities = RegistryActivities(secrets)
            request = PollRequest(
                registry=host, repository="team/app", secret_name="regcreds", digest_of="1.1.0"
            )
            first = ActivityEnvironment().run(activities.poll_registry, request)
            assert isinstance(first, PollResult)
            assert sorted(first.tags) == ["1.0.0", "1.1.0"] and first.digest
            assert first.requests == 3  # tags: 401 then OK; manifest HEAD with the token
            again = ActivityEnvironment().run(activities.poll_registry, request)
            assert again.requests == 2 and len(asked) == 1  # the token was reused
            secrets.put(DEFAULT_NAMESPACE, "regcreds", {"username": USER, "password": "wrong"})
            with pytest.raises(ApplicationError) as caught:
                ActivityEnvironment().run(RegistryActivities(secrets).poll_registry, request)
            assert caught.value.type == REGISTRY_AUTH_FAILED and "wrong" not in caught.value.message
        finally:
            process.stop()


def test_basic_auth_against_the_real_registry(seeded: Path, tmp_path: Path) -> None:
    process, host = _serve_registry(tmp_path, seeded, htpasswd_auth(tmp_path))
    try:
        secrets = FileSecretStore(tmp_path / "secrets")
        request = PollRequest(registry=host, repository="team/app", secret_name="regcreds")
        secrets.put(DEFAULT_NAMESPACE, "regcreds", {"username": USER, "password": PASSWORD})
        activities = RegistryActivities(secrets)
        result = ActivityEnvironment().run(activities.poll_registry, request)
        assert isinstance(result, PollResult) and sorted(result.tags) == ["1.0.0", "1.1.0"]
        assert result.requests == 2
        assert ActivityEnvironment().run(activities.poll_registry, request).requests == 1
        with pytest.raises(ApplicationError) as caught:
            ActivityEnvironment().run(
                RegistryActivities(secrets).poll_registry,
                request.model_copy(update={"secret_name": None}),
            )
        assert caught.value.type == REGISTRY_AUTH_FAILED
        assert "registry asks for credentials (set secretRef)" in caught.value.message
    finally:
        process.stop()


def test_docker_config_secret_as_fleet_uses_it_against_the_real_registry(
    seeded: Path, tmp_path: Path
) -> None:
    process, host = _serve_registry(tmp_path, seeded, htpasswd_auth(tmp_path))
    try:
        secrets = FileSecretStore(tmp_path / "secrets")
        login = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        config = {"auths": {f"https://{host}/v2/": {"auth": login}}}
        secrets.put(DEFAULT_NAMESPACE, "pull", {".dockerconfigjson": json.dumps(config)})
        request = PollRequest(registry=host, repository="team/app", secret_name="pull")
        result = ActivityEnvironment().run(RegistryActivities(secrets).poll_registry, request)
        assert isinstance(result, PollResult) and sorted(result.tags) == ["1.0.0", "1.1.0"]

        other = {"auths": {"elsewhere.example": {"auth": login}}}
        secrets.put(DEFAULT_NAMESPACE, "pull", {".dockerconfigjson": json.dumps(other)})
        with pytest.raises(ApplicationError) as caught:
            ActivityEnvironment().run(RegistryActivities(secrets).poll_registry, request)
        assert caught.value.non_retryable and login not in caught.value.message
        assert caught.value.message == (
            f"secret 'pull': .dockerconfigjson has no credentials for registry {host!r} "
            "(it has: elsewhere.example)"
        )
    finally:
        process.stop()
