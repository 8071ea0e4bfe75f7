"""What to do about a connection that failed: the fix a one-line error ends with.

An error that only says "connection refused" leaves a person to guess which end is wrong.
Errors that name an address end with the usual fix for the kind of thing at that address;
a failure that is not about reaching it (a 404, a refusal, a bad chart) gets no hint.
"""

from __future__ import annotations

from enum import StrEnum

from flotilla.errors import MAX_MESSAGE, one_line

# Words the Python, Go (helm, git over https) and git clients use when nothing answered.
_NOT_REACHED = (
    "connection refused",
    "could not resolve",
    "no such host",
    "name or service not known",
    "temporary failure in name resolution",
    "nodename nor servname",
    "no route to host",
    "network is unreachable",
    "connection reset",
    "connection timed out",
    "i/o timeout",
    "timed out",
    "failed to establish a new connection",
    "max retries exceeded",
    "could not read from remote repository",
    "failed to connect",
    "connection closed by remote host",
    "remote end closed connection",
)
# Words of a TLS failure: the far end answered, but could not be trusted.
_NOT_TRUSTED = (
    "certificate verify failed",
    "x509:",
    "ssl certificate problem",
    "unknown authority",
    "wrong version number",
)


class Target(StrEnum):
    """The kind of thing at the far end of a failed connection."""

    CLUSTER = "cluster"
    GIT = "git"
    CHART_SOURCE = "chart source"
    IMAGE_REGISTRY = "image registry"
    CONTENT_STORE = "content store"


_FIXES = {
    Target.CLUSTER: "check that its API server is up and the kubeconfig's address is reachable",
    Target.GIT: "check spec.repo and that the git host is reachable from the worker",
    Target.CHART_SOURCE: (
        "check helm.repo in fleet.yaml and that the repository is up and reachable from the worker"
    ),
    Target.IMAGE_REGISTRY: "check that the registry is up and reachable from the worker",
    Target.CONTENT_STORE: (
        "check FLOTILLA_CONTENT_REGISTRY and that the registry is up and reachable from every "
        "worker"
    ),
}

_TRUST_FIX = "its certificate is not trusted: give its CA, or fix the address"


def connection_advice(reason: str, target: Target) -> str:
    """What to do when ``reason`` says the far end was not reached or not trusted, else
    ``""``."""
    lowered = reason.lower()
    if any(word in lowered for word in _NOT_TRUSTED):
        return _TRUST_FIX
    if any(word in lowered for word in _NOT_REACHED):
        return _FIXES[target]
    return ""


def connection_fix(reason: str, target: Target) -> str:
    """``"; <what to do>"`` (see connection_advice), or ``""``, so callers can always append
    it."""
    advice = connection_advice(reason, target)
    return f"; {advice}" if advice else ""


def ending_with_fix(text: str, target: Target, *, reason: str = "", reserve: int = 0) -> str:
    """``text`` on one line, cut so that the fix for ``reason`` (``text`` itself when not
    given) still fits when a caller adds ``reserve`` characters around it: a status line is
    cut at MAX_MESSAGE, and the fix is the part a person must not lose."""
    fix = connection_fix(reason or text, target)
    return (
        _cut_middle(one_line(text, 10_000), MAX_MESSAGE - reserve - len(fix)) + fix if fix else text
    )


def _cut_middle(text: str, limit: int) -> str:
    """Keep the start (what failed) and the end (the innermost cause) of a long message."""
    if len(text) <= limit:
        return text
    head = max(limit // 2 - 2, 0)
    return f"{text[:head]} … {text[len(text) - (limit - head - 3) :]}"
