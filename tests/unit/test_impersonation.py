"""Impersonation written into a kubeconfig, and RBAC refusals made short."""

from __future__ import annotations

from typing import Any

import pytest

from flotilla.errors import FlotillaError
from flotilla.impersonation import (
    impersonated_user,
    impersonating,
    rbac_denial,
    service_account_user,
)


def kubeconfig(current: str = "main") -> dict[str, Any]:
    return {
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "admin", "user": {"token": "t"}}, {"name": "other", "user": {}}],
        "contexts": [
            {"name": "main", "context": {"cluster": "c", "user": "admin"}},
            {"name": "second", "context": {"cluster": "c", "user": "other"}},
        ],
        "current-context": current,
    }


def test_the_current_user_acts_as_the_service_account_and_the_input_is_unchanged() -> None:
    original = kubeconfig()
    user = service_account_user("team-a", "deployer")
    acting = impersonating(original, user)
    assert user == "system:serviceaccount:team-a:deployer"
    assert acting["users"][0]["user"] == {"token": "t", "as": user}
    assert acting["users"][1]["user"] == {}
    assert impersonated_user(acting) == user
    assert impersonated_user(original) == "" and "as" not in original["users"][0]["user"]
    assert impersonated_user(impersonating(kubeconfig("second"), user)) == user


def test_a_kubeconfig_without_a_user_for_its_context_is_one_line() -> None:
    with pytest.raises(FlotillaError, match="current context names no user entry"):
        impersonating(kubeconfig("missing"), "system:serviceaccount:a:b")


@pytest.mark.parametrize(
    ("message", "short"),
    [
        (
            "Unable to continue with install: could not get information about the resource "
            'ClusterRole "x" in namespace "": clusterroles.rbac.authorization.k8s.io "x" is '
            'forbidden: User "system:serviceaccount:a:d" cannot get resource "clusterroles" in '
            'API group "rbac.authorization.k8s.io" at the cluster scope',
            "forbidden: system:serviceaccount:a:d cannot get clusterroles.rbac.authorization.k8s.io"
            " at cluster scope",
        ),
        (
            'configmaps "x" is forbidden: User "system:serviceaccount:a:d" cannot create '
            'resource "configmaps" in API group "" in the namespace "b"',
            "forbidden: system:serviceaccount:a:d cannot create configmaps in namespace b",
        ),
        ("release: not found", ""),
    ],
)
def test_rbac_denials_keep_verb_resource_and_account(message: str, short: str) -> None:
    assert rbac_denial(message) == short


def test_a_denial_in_helm_4s_logfmt_lines_is_found() -> None:
    line = (
        'level=DEBUG msg="uninstall failed" error="configmaps \\"x\\" is forbidden: User '
        '\\"system:serviceaccount:a:b\\" cannot delete resource \\"configmaps\\" in API group '
        '\\"\\" in the namespace \\"a\\""'
    )
    assert rbac_denial(line) == (
        "forbidden: system:serviceaccount:a:b cannot delete configmaps in namespace a"
    )
