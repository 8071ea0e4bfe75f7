"""Registration tokens and heartbeat deadlines: the pure rules of agent mode, as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flotilla.agents import (
    TokenError,
    TokenFacts,
    heartbeat_deadline,
    make_token,
    registration_refusal,
    token_hash,
    token_namespace,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def facts(**changes: object) -> TokenFacts:
    base: dict[str, object] = {
        "name": "t1",
        "expires_at": NOW + timedelta(hours=1),
        "deleted": False,
        "max_uses": 0,
        "used_by": (),
        "cluster": "",
    }
    base.update(changes)
    return TokenFacts(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("token", "cluster", "existing_agent", "existing_token", "refused"),
    [
        (facts(), "a", None, "", ""),
        (None, "a", None, "", "not known"),
        (facts(deleted=True), "a", None, "", "t1 was deleted"),
        (facts(expires_at=NOW), "a", None, "", "t1 expired at 2026-12-03T12:00:00Z"),
        (facts(cluster="b"), "a", None, "", "is for cluster 'b', not 'a'"),
        (facts(max_uses=1, used_by=("x",)), "a", None, "", "used 1 time(s), its limit is 1"),
        # the same cluster again (its agent restarted) does not use the token again
        (facts(max_uses=1, used_by=("a",)), "a", True, "t1", ""),
        # a pre-created agent cluster is claimed only by a token that names it
        (facts(cluster="a"), "a", True, "", ""),
        (facts(), "a", True, "", "does not name it"),
        (facts(cluster="a"), "a", False, "", "registered in push mode"),
    ],
)
def test_registration_refusal(
    token: TokenFacts | None,
    cluster: str,
    existing_agent: bool | None,
    existing_token: str,
    refused: str,
) -> None:
    reason = registration_refusal(
        token, NOW, cluster, existing_agent=existing_agent, existing_token=existing_token
    )
    assert (reason == "") if not refused else refused in reason
    assert "\n" not in reason


def test_token_text_holds_its_namespace_and_only_its_hash_is_kept() -> None:
    token = make_token("fleet-default", "s3cr3t")
    assert token_namespace(token) == "fleet-default"
    assert token_hash(token) == token_hash(token + "\n") != token_hash(make_token("x", "s3cr3t"))
    assert "s3cr3t" not in token_hash(token)
    for bad in ("", "s3cr3t", "flt1..s3cr3t", "flt2.ns.s3cr3t"):
        with pytest.raises(TokenError) as err:
            token_namespace(bad)
        assert "s3cr3t" not in str(err.value)


def test_heartbeat_deadline_is_two_intervals() -> None:
    assert heartbeat_deadline(None, 10) is None
    assert heartbeat_deadline(NOW, 0) is None
    assert heartbeat_deadline(NOW, 10) == NOW + timedelta(seconds=20)
