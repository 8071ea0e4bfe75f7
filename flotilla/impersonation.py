"""Deploying as a bundle's ServiceAccount: Kubernetes impersonation written into a kubeconfig.

The identity travels as the kubeconfig's own impersonation field (``users[].user.as``), which
helm and kubectl honour and flotilla's API client turns into the ``Impersonate-User`` header
(``activities/kube.py``). So a deploy, its status reads and any later user of the same
kubeconfig (an agent serving its own cluster) act with the account's RBAC and nothing more,
through one function of the kubeconfig alone.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from flotilla.errors import FlotillaError

# The kubeconfig field client-go reads as the user to impersonate.
IMPERSONATE_KEY = "as"
# The label on a Helm release record naming the ServiceAccount (of the release's namespace)
# it was deployed as, so removal acts as the same account (Fleet keeps it in the chart's
# annotations for the same reason).
SERVICE_ACCOUNT_LABEL = "flotilla.dev/service-account"
# The sentence Kubernetes' RBAC authorizer puts in a Forbidden status.
# Quotes may come escaped (a backslash before each): Helm 4 logs errors as logfmt values.
_Q = r'\\?"'
_DENIAL = re.compile(
    rf"User {_Q}(?P<user>[^\"\\]+){_Q} cannot (?P<verb>[\w-]+) "
    rf"resource {_Q}(?P<resource>[^\"\\]+){_Q}"
    rf"(?: in API group {_Q}(?P<group>[^\"\\]*){_Q})?"
    rf"(?: in the namespace {_Q}(?P<namespace>[^\"\\]+){_Q}| (?P<cluster>at the cluster scope))?"
)


def service_account_user(namespace: str, name: str) -> str:
    """The user name Kubernetes gives a ServiceAccount."""
    return f"system:serviceaccount:{namespace}:{name}"


def _current_user(kubeconfig: dict[str, Any]) -> dict[str, Any] | None:
    """The ``user`` mapping of the current context's user entry, or None."""
    current = kubeconfig.get("current-context")
    context = next(
        (
            c.get("context") or {}
            for c in kubeconfig.get("contexts") or []
            if c.get("name") == current
        ),
        None,
    )
    if context is None:
        return None
    for entry in kubeconfig.get("users") or []:
        if entry.get("name") == context.get("user"):
            user = entry.setdefault("user", {})
            return user if isinstance(user, dict) else None
    return None


def impersonating(kubeconfig: dict[str, Any], user: str) -> dict[str, Any]:
    """A copy of ``kubeconfig`` whose current user acts as ``user``; the input is unchanged."""
    data = copy.deepcopy(kubeconfig)
    entry = _current_user(data)
    if entry is None:
        raise FlotillaError(
            f"cannot act as {user}: the kubeconfig's current context names no user entry"
        )
    entry[IMPERSONATE_KEY] = user
    return data


def impersonated_user(kubeconfig: dict[str, Any]) -> str:
    """Whom the kubeconfig's current user acts as ("" for itself)."""
    entry = _current_user(copy.deepcopy(kubeconfig))
    value = entry.get(IMPERSONATE_KEY) if entry else None
    return value if isinstance(value, str) else ""


def rbac_denial(message: str) -> str:
    """Kubernetes' RBAC refusal inside a longer message, short: ``forbidden: <user> cannot
    <verb> <resource>[.<group>] in namespace <ns>`` (or ``at cluster scope``); "" if none."""
    found = _DENIAL.search(message)
    if found is None:
        return ""
    resource = found["resource"] + (f".{found['group']}" if found["group"] else "")
    scope = f" in namespace {found['namespace']}" if found["namespace"] else ""
    if found["cluster"]:
        scope = " at cluster scope"
    return f"forbidden: {found['user']} cannot {found['verb']} {resource}{scope}"
