"""Which stored content garbage collection removes: unreferenced and older than the grace period.

Content is immutable and addressed by digest, so the only question is whether anyone still
needs it. The mark set is every digest a running GitRepo or bundle workflow holds; the grace
period protects what was written recently and is not recorded by a workflow yet (a fetch or
plan in flight). A put of content that is already stored refreshes its written time once it
is older than the store's ``touch_after``, so the grace period must be at least twice that:
then anything old enough to delete was last written long enough ago that the workflow that
wrote it has recorded its digest (see docs/content-store.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flotilla.durations import format_duration
from flotilla.errors import SpecError


@dataclass
class GarbagePlan:
    """The digests to delete (sorted) and how many stay, by reason."""

    delete: list[str] = field(default_factory=list)
    referenced: int = 0
    recent: int = 0


def check_grace(grace: timedelta, touch_after: timedelta) -> None:
    """SpecError unless ``grace`` covers the store's refresh interval twice over."""
    if grace < timedelta(0):
        raise SpecError(f"grace: must not be negative ({grace})")
    if grace < 2 * touch_after:
        text, touch = format_duration(grace.total_seconds()), touch_after.total_seconds()
        raise SpecError(
            f"grace: {text} is shorter than twice the content store's refresh interval "
            f"({format_duration(touch)}): content in use could be deleted; use at least "
            f"{format_duration(2 * touch)}"
        )


def select_garbage(
    written: Mapping[str, datetime], referenced: Set[str], grace: timedelta, now: datetime
) -> GarbagePlan:
    """Plan a sweep of the entries ``written`` (digest -> last written) given the mark set."""
    plan = GarbagePlan()
    for digest, when in sorted(written.items()):
        if digest in referenced:
            plan.referenced += 1
        elif now - when <= grace:
            plan.recent += 1
        else:
            plan.delete.append(digest)
    return plan
