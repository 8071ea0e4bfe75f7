"""Version pins (flotilla.pins): the pin line, what lifts a pin, --previous, request checks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flotilla.errors import MAX_MESSAGE, SpecError
from flotilla.pins import (
    GOOD_KEPT,
    Pin,
    ReadyVersion,
    check_rollback,
    content_digest,
    lifted_by_commit,
    note_ready,
    pin_line,
    previous_version,
)

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
A, B, C = "a" * 40, "b" * 40, "c" * 40


def _pin(**fields: object) -> Pin:
    return Pin.model_validate({"commit": A, "user": "alice", "at": T0, "head": C, **fields})


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        ({}, f"pinned to {A[:12]} by alice; lifted by --clear"),
        (
            {"reason": "bad\nrelease", "until_next_commit": True},
            f"pinned to {A[:12]} by alice: bad release; lifted by the next commit or --clear",
        ),
    ],
    ids=["clear-only", "next-commit"],
)
def test_the_pin_line_says_where_who_why_and_what_lifts_it(
    fields: dict[str, object], line: str
) -> None:
    assert pin_line(_pin(**fields)) == line


def test_a_long_reason_is_cut_but_never_what_lifts_the_pin() -> None:
    line = pin_line(_pin(reason="x" * 500, until_next_commit=True))
    assert len(line) <= MAX_MESSAGE and line.endswith("...; lifted by the next commit or --clear")


@pytest.mark.parametrize(
    ("until_next_commit", "head", "lifted"),
    [
        (False, B, False),  # only --clear lifts it: the next poll does not undo the rollback
        (True, C, False),  # the same head as when pinned
        (True, B, True),  # a new commit
        (True, "", False),  # ls-remote said nothing
    ],
)
def test_only_a_pin_that_asks_for_it_is_lifted_by_a_new_commit(
    until_next_commit: bool, head: str, lifted: bool
) -> None:
    assert lifted_by_commit(_pin(until_next_commit=until_next_commit), head) is lifted


def test_previous_is_the_last_ready_content_other_than_the_current() -> None:
    good: list[ReadyVersion] = []
    for commit, digest in ((A, "d1"), (B, "d2"), (C, "d2")):
        good = note_ready(good, ReadyVersion(commit=commit, digest=digest))
    # C changed nothing deployed: one version, at its latest commit.
    assert good == [ReadyVersion(commit=A, digest="d1"), ReadyVersion(commit=C, digest="d2")]
    assert previous_version(good, "d2") == A
    # The current version halted (never Ready): the last Ready one is the one to go back to.
    assert previous_version(good, "d3") == C
    assert previous_version([], "d1") == ""
    assert previous_version(good[:1], "d1") == ""


def test_ready_versions_are_capped_and_seen_again_moves_to_the_end() -> None:
    good: list[ReadyVersion] = []
    for i in range(GOOD_KEPT + 2):
        good = note_ready(good, ReadyVersion(commit=f"{i:040x}", digest=f"d{i}"))
    assert len(good) == GOOD_KEPT and good[-1].digest == f"d{GOOD_KEPT + 1}"
    again = note_ready(good, good[0])
    assert again[-1] == good[0] and len(again) == GOOD_KEPT
    assert note_ready(again, again[-1]) == again


def test_a_gitrepo_version_is_the_digest_of_its_bundles() -> None:
    assert content_digest({"a": "1", "b": "2"}) == content_digest({"b": "2", "a": "1"})
    assert content_digest({"a": "1"}) != content_digest({"a": "2"})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "rollback: give exactly one of --to COMMIT, --previous or --clear"),
        (
            {"to": "abc1", "previous": True},
            "rollback: give exactly one of --to COMMIT, --previous or --clear (got --to and "
            "--previous)",
        ),
        ({"to": "main~1"}, "--to: 'main~1' is not a commit (4 to 40 hexadecimal digits)"),
        ({"clear": True, "until_next_commit": True}, "--clear: --until-next-commit goes with"),
        ({"to": "abc1", "user": " "}, "--user: who rolls back must be given"),
        ({"previous": True, "reason": "x" * 201}, "--reason: is longer than 200 characters"),
    ],
    ids=["none", "two", "not-a-commit", "clear-until", "no-user", "long-reason"],
)
def test_bad_rollback_requests_are_refused_in_one_line(
    fields: dict[str, object], message: str
) -> None:
    request: dict[str, object] = {
        "to": "",
        "previous": False,
        "clear": False,
        "user": "alice",
        "reason": "",
        "until_next_commit": False,
        **fields,
    }
    with pytest.raises(SpecError) as err:
        check_rollback(**request)  # type: ignore[arg-type]
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


@pytest.mark.parametrize("to", ["abc1", "ABC1234", A])
def test_good_rollback_requests_pass(to: str) -> None:
    check_rollback(
        to=to, previous=False, clear=False, user="alice", reason="", until_next_commit=True
    )
