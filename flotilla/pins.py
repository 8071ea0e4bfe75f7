"""Version pins: a GitRepo, or one of its bundles, held at an earlier commit (rollback).

``flotilla rollback gitrepo|bundle NAME --to COMMIT | --previous`` and a partition's
``autoRollback`` pin a version; the GitRepo workflow keeps the pin in its state, deploys the
pinned commit's bundles instead of the branch head's, and lifts the pin on ``--clear`` (or at
the branch's next commit, when the pin says so). Every rule here is a pure function of the
pin, the commits seen and the request; see docs/progressive-delivery.md.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from flotilla.errors import MAX_MESSAGE, SpecError, one_line, short_repr

# How long a reason may be, in status and history (as for approvals).
MAX_REASON = 200
# How many Ready commits are remembered per GitRepo and per bundle for --previous and for
# automatic rollback (the most recent last).
GOOD_KEPT = 5
# Who pinned a version when a failure budget rolled it back.
AUTO_ROLLBACK_USER = "autoRollback"
# A commit as people give it: an abbreviated or full hexadecimal object name.
_COMMIT = re.compile(r"^[0-9a-f]{4,40}$")


class Pin(BaseModel):
    """A version held: ``commit`` (full) for every bundle of the GitRepo (``bundle`` empty) or
    for one bundle. ``head``: the branch head when pinned; with ``until_next_commit`` a
    different head lifts the pin."""

    model_config = ConfigDict(frozen=True)

    commit: str
    bundle: str = ""
    user: str
    reason: str = ""
    at: datetime
    until_next_commit: bool = False
    head: str = ""


def pin_line(pin: Pin) -> str:
    """The pin as status shows it: ``pinned to abc1234 by alice: reason; lifted by --clear``.
    A long reason is cut, never what lifts the pin."""
    lifted_by = "the next commit or --clear" if pin.until_next_commit else "--clear"
    head = f"pinned to {pin.commit[:12]} by {pin.user}"
    tail = f"; lifted by {lifted_by}"
    why = f": {pin.reason}" if pin.reason else ""
    return one_line(head + why, MAX_MESSAGE - len(tail)) + tail


def lifted_by_commit(pin: Pin, head: str) -> bool:
    """Whether the branch moved since ``pin`` was made and the pin gives way to that."""
    return pin.until_next_commit and bool(head) and bool(pin.head) and head != pin.head


class ReadyVersion(BaseModel):
    """A version seen Ready: the commit, and the content it deployed (a bundle's digest, or a
    digest of all of a GitRepo's bundle digests)."""

    model_config = ConfigDict(frozen=True)

    commit: str
    digest: str


def note_ready(good: Sequence[ReadyVersion], seen: ReadyVersion) -> list[ReadyVersion]:
    """The versions seen Ready after ``seen`` was (again): most recent last, each content
    once (at its latest commit), at most GOOD_KEPT."""
    if not seen.commit or (good and good[-1] == seen):
        return list(good)
    return [*(v for v in good if v.digest != seen.digest), seen][-GOOD_KEPT:]


def previous_version(good: Sequence[ReadyVersion], current_digest: str) -> str:
    """What ``--previous`` and autoRollback go back to: the commit of the most recent version
    seen Ready whose content differs from ``current_digest`` ("" when there is none). A commit
    that changed nothing deployed is no version of its own."""
    return next((v.commit for v in reversed(good) if v.digest != current_digest), "")


def content_digest(digests: Mapping[str, str]) -> str:
    """One digest for a GitRepo's version: its bundles' names and content digests."""
    joined = "\n".join(f"{name}={digest}" for name, digest in sorted(digests.items()))
    return hashlib.sha256(joined.encode()).hexdigest()


def check_rollback(
    *, to: str, previous: bool, clear: bool, user: str, reason: str, until_next_commit: bool
) -> None:
    """Refuse, in one line, a rollback request that asks for no or several things, names no
    commit-like value, or has no user."""
    asked = [
        flag
        for flag, on in (("--to", bool(to)), ("--previous", previous), ("--clear", clear))
        if on
    ]
    if len(asked) != 1:
        raise SpecError(
            "give exactly one of --to COMMIT, --previous or --clear"
            + (f" (got {' and '.join(asked)})" if asked else ""),
            field="rollback",
        )
    if to and not _COMMIT.match(to.lower()):
        raise SpecError(
            f"{short_repr(to)} is not a commit (4 to 40 hexadecimal digits)", field="--to"
        )
    if clear and until_next_commit:
        raise SpecError("--until-next-commit goes with --to or --previous", field="--clear")
    if not user.strip():
        raise SpecError("who rolls back must be given (--user or $USER)", field="--user")
    if len(reason) > MAX_REASON:
        raise SpecError(f"is longer than {MAX_REASON} characters", field="--reason")
