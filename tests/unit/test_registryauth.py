"""Registry credentials from username/password keys and from Docker config secrets."""

from __future__ import annotations

import base64
import json

import pytest

from flotilla.errors import FlotillaError
from flotilla.registryauth import registry_credentials


def dockerconfig(auths: object) -> dict[str, str]:
    return {".dockerconfigjson": json.dumps({"auths": auths})}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_plain_username_and_password_keys() -> None:
    data = {"username": "bot", "password": "s3cret"}
    assert registry_credentials("reg", data, "reg.example:5000") == ("bot", "s3cret")


@pytest.mark.parametrize(
    ("key", "registry"),
    [
        ("reg.example:5000", "reg.example:5000"),
        ("https://reg.example:5000", "reg.example:5000"),
        ("https://reg.example:5000/v2/", "reg.example:5000"),
        ("https://index.docker.io/v1/", "docker.io"),  # what `docker login` writes for Hub
        ("docker.io", "registry-1.docker.io"),
        ("GHCR.IO", "ghcr.io"),
    ],
)
def test_dockerconfigjson_entry_is_found_by_registry_host(key: str, registry: str) -> None:
    data = dockerconfig({"other.example": {"auth": b64("x:y")}, key: {"auth": b64("bot:pa:ss")}})
    assert registry_credentials("pull", data, registry) == ("bot", "pa:ss")


def test_username_and_password_fields_win_over_auth() -> None:
    data = dockerconfig({"reg": {"username": "u", "password": "p", "auth": b64("x:y")}})
    assert registry_credentials("pull", data, "reg") == ("u", "p")


def test_legacy_dockercfg_is_the_auths_map_itself() -> None:
    data = {".dockercfg": json.dumps({"reg": {"auth": b64("u:p")}})}
    assert registry_credentials("old", data, "reg") == ("u", "p")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"token": "x"}, "secret 'pull' has neither username/password nor .dockerconfigjson"),
        ({".dockerconfigjson": "{not json"}, "secret 'pull': .dockerconfigjson is not valid JSON"),
        (
            {".dockerconfigjson": json.dumps({"auths": []})},
            "secret 'pull': .dockerconfigjson: auths is not a map of registries",
        ),
        (
            dockerconfig({"a.example": {}, "https://b.example/v2/": {}}),
            "secret 'pull': .dockerconfigjson has no credentials for registry 'reg' "
            "(it has: a.example, b.example)",
        ),
        (
            dockerconfig({"reg": {"auth": b64("no-colon")}}),
            "secret 'pull': .dockerconfigjson: auth for 'reg' is not base64 of user:password",
        ),
        (
            dockerconfig({"reg": {"auth": "%%%"}}),
            "secret 'pull': .dockerconfigjson: auth for 'reg' is not base64 of user:password",
        ),
        (
            dockerconfig({"reg": {"email": "a@b"}}),
            "secret 'pull': .dockerconfigjson: entry for 'reg' has no username/password or auth",
        ),
    ],
)
def test_bad_secrets_get_one_line_errors_without_credentials(
    data: dict[str, str], message: str
) -> None:
    with pytest.raises(FlotillaError) as err:
        registry_credentials("pull", data, "reg")
    assert str(err.value) == message
    assert "no-colon" not in str(err.value) and b64("no-colon") not in str(err.value)
