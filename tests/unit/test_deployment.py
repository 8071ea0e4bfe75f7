"""Pure deploy-engine rules: label-safe ids, history default, protected namespaces, redaction."""

from __future__ import annotations

import pytest

from flotilla.deployment import (
    Redactor,
    deployment_id,
    deployment_label,
    kubeconfig_secrets,
    max_history,
    namespace_removal_refusal,
    secret_strings,
)
from flotilla.models import BundleDeploymentOptions, HelmOptions


def test_deployment_id_names_content_and_options_as_a_label_value() -> None:
    made = deployment_id("0123456789abcdef0123456789", "fedcba9876543210fedcba9876")
    assert made == "s-0123456789abcdef0123-fedcba9876543210fedc"
    assert deployment_label(made) == made


@pytest.mark.parametrize("deployment_id", ["v1", "s-0a1b2c", "a" * 63])
def test_label_safe_ids_are_kept(deployment_id: str) -> None:
    assert deployment_label(deployment_id) == deployment_id


@pytest.mark.parametrize("deployment_id", ["s-abc:def", "a" * 64, "-x", "with space"])
def test_other_ids_become_a_stable_digest(deployment_id: str) -> None:
    label = deployment_label(deployment_id)
    assert label == deployment_label(deployment_id)
    assert len(label) == 41 and label.startswith("h") and label != deployment_id


@pytest.mark.parametrize(("configured", "expected"), [(None, 2), (0, 2), (1, 1), (7, 7)])
def test_max_history_defaults_to_fleets_two(configured: int | None, expected: int) -> None:
    options = BundleDeploymentOptions(helm=HelmOptions(max_history=configured))
    assert max_history(options) == expected


@pytest.mark.parametrize(
    "namespace",
    ["default", "kube-system", "kube-public", "kube-node-lease", "fleet-local", "flotilla-system"],
)
def test_system_and_flotilla_namespaces_are_refused(namespace: str) -> None:
    assert "never deleted" in namespace_removal_refusal(namespace)


@pytest.mark.parametrize("namespace", ["shop", "kubernetes-dashboard", "my-kube-system"])
def test_other_namespaces_may_be_deleted(namespace: str) -> None:
    assert namespace_removal_refusal(namespace) == ""


def test_redactor_hides_every_known_secret_and_leaves_the_rest() -> None:
    redact = Redactor(["tok-123456"])
    redact.add(
        secret_strings(
            {"db": {"password": "hunter22", "port": 5432}, "list": ["abcdef"], "on": True}
        )
    )

    message = redact("auth tok-123456 failed for hunter22 on 5432 with abcdef (on)")

    assert message == "auth [redacted] failed for [redacted] on [redacted] with [redacted] (on)"


def test_redactor_ignores_short_strings_and_hides_each_line_of_a_multiline_secret() -> None:
    redact = Redactor(["ab", "-----BEGIN KEY-----\nMIIBsecretbody\n-----END KEY-----"])

    assert redact("ab MIIBsecretbody") == "ab [redacted]"


def test_kubeconfig_secrets_are_its_credentials() -> None:
    kubeconfig = {
        "users": [
            {"name": "a", "user": {"token": "t0ken"}},
            {"name": "b", "user": {"client-key-data": "a2V5", "username": "bob", "password": "pw"}},
        ]
    }
    assert kubeconfig_secrets(kubeconfig) == ["t0ken", "pw", "a2V5"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("helm failed: token tok-1234...", "helm failed: token [redacted]..."),
        ("helm failed: token tok-123456 was refused", "helm failed: token [redacted] was refused"),
        ("helm failed: tok...", "helm failed: tok..."),  # too short a part to be telling
        ("helm failed: nothing here...", "helm failed: nothing here..."),
    ],
)
def test_a_secret_cut_by_shortening_is_redacted_too(text: str, expected: str) -> None:
    assert Redactor(["tok-123456"])(text) == expected
