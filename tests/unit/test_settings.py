"""settings_from_env: defaults, each variable, and one-line errors naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from flotilla.settings import (
    ENVIRONMENT,
    ContentBackend,
    SecretBackend,
    SettingsError,
    settings_from_env,
)

HOME = Path("/home/u")


def test_defaults_are_the_embedded_single_machine_setup() -> None:
    settings = settings_from_env({}, HOME)
    assert settings.temporal.address == "127.0.0.1:7233"
    assert settings.temporal.namespace == "default"
    assert not settings.temporal.uses_tls
    assert settings.secret_backend is SecretBackend.FILE
    assert settings.secrets_dir == HOME / ".local/share/flotilla/secrets"
    assert settings.content_backend is ContentBackend.FILE
    assert settings.content_dir == HOME / ".local/share/flotilla/content"
    assert settings.content_registry is None
    assert settings.tools.tools_dir == HOME / ".cache/flotilla/tools"
    assert settings.tools.helm is None
    assert settings.workdir == HOME / ".cache/flotilla/work"
    assert settings.system_namespace == "flotilla-system"


def test_every_variable_is_read() -> None:
    settings = settings_from_env(
        {
            "TEMPORAL_ADDRESS": "temporal.example:7233",
            "TEMPORAL_NAMESPACE": "prod",
            "TEMPORAL_TLS_CA_FILE": "/etc/ca.pem",
            "TEMPORAL_TLS_CERT_FILE": "/etc/tls.crt",
            "TEMPORAL_TLS_KEY_FILE": "/etc/tls.key",
            "TEMPORAL_TLS_SERVER_NAME": "temporal",
            "TEMPORAL_API_KEY_FILE": "/etc/key",
            "FLOTILLA_SECRET_BACKEND": "Kubernetes",
            "FLOTILLA_MANAGEMENT_KUBECONFIG": "~/mgmt.yaml",
            "FLOTILLA_SYSTEM_NAMESPACE": "ops",
            "FLOTILLA_CONTENT_BACKEND": "oci",
            "FLOTILLA_CONTENT_REGISTRY": "oci://reg.example:5000/flotilla/content/",
            "FLOTILLA_CONTENT_REGISTRY_SECRET": "reg",
            "FLOTILLA_CONTENT_REGISTRY_INSECURE": "true",
            "FLOTILLA_HELM": "/opt/helm",
            "FLOTILLA_WORKDIR": "/scratch",
        },
        HOME,
    )
    temporal = settings.temporal
    assert (temporal.address, temporal.namespace) == ("temporal.example:7233", "prod")
    assert temporal.uses_tls and temporal.tls_server_name == "temporal"
    assert temporal.api_key_file == Path("/etc/key")
    assert settings.secret_backend is SecretBackend.KUBERNETES
    assert settings.management_kubeconfig == HOME / "mgmt.yaml"
    assert settings.system_namespace == "ops"
    registry = settings.content_registry
    assert registry is not None
    assert (registry.host, registry.repository) == ("reg.example:5000", "flotilla/content")
    assert registry.secret == "reg" and registry.insecure
    assert settings.tools.helm == Path("/opt/helm")
    assert settings.workdir == Path("/scratch")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FLOTILLA_SECRET_BACKEND": "vault"}, "FLOTILLA_SECRET_BACKEND='vault' is not one of"),
        ({"FLOTILLA_CONTENT_BACKEND": "s3"}, "FLOTILLA_CONTENT_BACKEND='s3' is not one of"),
        ({"FLOTILLA_CONTENT_BACKEND": "oci"}, "needs FLOTILLA_CONTENT_REGISTRY"),
        (
            {"FLOTILLA_CONTENT_BACKEND": "oci", "FLOTILLA_CONTENT_REGISTRY": "reg.example"},
            "is not host[:port]/repository",
        ),
        ({"TEMPORAL_TLS": "maybe"}, "TEMPORAL_TLS='maybe' is not a boolean"),
        ({"TEMPORAL_TLS_CERT_FILE": "/c"}, "TEMPORAL_TLS_CERT_FILE and TEMPORAL_TLS_KEY_FILE go"),
        ({"TEMPORAL_ADDRESS": "temporal.example"}, "has no port"),
    ],
)
def test_bad_settings_are_one_line_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as err:
        settings_from_env(env, HOME)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_api_key_implies_tls() -> None:
    assert settings_from_env({"TEMPORAL_API_KEY_FILE": "/k"}, HOME).temporal.uses_tls


class _Recording(dict[str, str]):
    """An environment that remembers which variables were asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)


def test_environment_lists_exactly_what_is_read() -> None:
    env = _Recording(
        {"FLOTILLA_CONTENT_BACKEND": "oci", "FLOTILLA_CONTENT_REGISTRY": "r.example/c"}
    )
    settings_from_env(env, HOME)
    assert env.asked == ENVIRONMENT
