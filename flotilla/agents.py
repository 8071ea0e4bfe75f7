"""Agent mode's rules: registration tokens (Fleet's ClusterRegistrationToken) and heartbeats.

A token is ``flt1.<namespace>.<secret>``: the namespace is readable (an agent given only the
token knows which registry to ask), the secret is not. Only ``token_hash`` of the whole
string is ever stored or sent to a workflow, so the registry's history cannot hand out a
token. Whether a registration is accepted is ``registration_refusal``, a pure function of the
token's record, the clock and the cluster asked for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from flotilla.status import since_text

TOKEN_PREFIX = "flt1"  # noqa: S105 - a format marker, not a secret
# An agent that has not been heard from for this many heartbeat intervals is Offline.
MISSED_HEARTBEATS = 2


class TokenError(ValueError):
    """A token string that cannot be a flotilla registration token (one line, no token)."""


def token_hash(token: str) -> str:
    """What the registry keeps of a token: its SHA-256, hex."""
    return hashlib.sha256(token.strip().encode()).hexdigest()


def token_namespace(token: str) -> str:
    """The registry namespace a token belongs to; never echoes the token's secret part."""
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2]:
        raise TokenError(
            f"registration token is not of the form {TOKEN_PREFIX}.<namespace>.<secret> "
            "(print one with `flotilla cluster token create`)"
        )
    return parts[1]


def make_token(namespace: str, secret: str) -> str:
    return f"{TOKEN_PREFIX}.{namespace}.{secret}"


@dataclass(frozen=True)
class TokenFacts:
    """What a registration is judged on: the token's record (None when unknown)."""

    name: str
    expires_at: datetime | None
    deleted: bool
    max_uses: int
    used_by: tuple[str, ...]
    cluster: str


def registration_refusal(
    token: TokenFacts | None,
    now: datetime,
    cluster: str,
    *,
    existing_agent: bool | None,
    existing_token: str = "",
) -> str:
    """Why an agent may not register ``cluster`` with this token ("" when it may).

    ``existing_agent`` is None for a new cluster, else whether the registered cluster is in
    agent mode; ``existing_token`` names the token it was registered with, if any. A cluster
    already registered with this token re-registers (an agent restart) without using the
    token again."""
    if token is None:
        return "registration token is not known to this namespace (never created, or purged)"
    if token.deleted:
        return f"registration token {token.name} was deleted"
    if token.expires_at is not None and now >= token.expires_at:
        return f"registration token {token.name} expired at {since_text(token.expires_at)}"
    if token.cluster and token.cluster != cluster:
        return f"registration token {token.name} is for cluster {token.cluster!r}, not {cluster!r}"
    if existing_agent is False:
        return (
            f"cluster {cluster!r} is registered in push mode (the central worker deploys to "
            "it with its kubeconfig): remove it first to hand it to an agent"
        )
    again = cluster in token.used_by
    if existing_agent and not again and not token.cluster and existing_token != token.name:
        return (
            f"cluster {cluster!r} exists and registration token {token.name} does not name "
            f"it (create one with --cluster {cluster})"
        )
    if not again and token.max_uses and len(token.used_by) >= token.max_uses:
        return (
            f"registration token {token.name} was used {len(token.used_by)} time(s), "
            f"its limit is {token.max_uses}"
        )
    return ""


def heartbeat_deadline(last_seen: datetime | None, interval_seconds: float) -> datetime | None:
    """When an agent heard from at ``last_seen`` turns Offline (None: it never reported)."""
    if last_seen is None or interval_seconds <= 0:
        return None
    return last_seen + timedelta(seconds=interval_seconds * MISSED_HEARTBEATS)


# The line of an agent cluster whose agent has never beaten: Offline from its registration, so
# its deploys wait (held) rather than time out on a queue nobody serves.
NEVER_CONNECTED = "agent never connected (last seen: never)"


def offline_reason(interval_seconds: float) -> str:
    """The one line an agent cluster shows once its heartbeats stop."""
    return (
        f"agent stopped heartbeating (expected every {interval_seconds:g}s, "
        f"{MISSED_HEARTBEATS} missed)"
    )
