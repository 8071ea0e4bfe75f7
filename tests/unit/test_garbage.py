"""The garbage collection rule: referenced or recent content stays, the rest goes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flotilla.errors import SpecError
from flotilla.garbage import GarbagePlan, check_grace, select_garbage

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


@pytest.mark.parametrize(
    ("age", "referenced", "expected"),
    [
        (timedelta(hours=48), False, GarbagePlan(delete=["d"])),
        (timedelta(hours=48), True, GarbagePlan(referenced=1)),
        (timedelta(hours=1), False, GarbagePlan(recent=1)),
        (timedelta(hours=1), True, GarbagePlan(referenced=1)),
        (DAY, False, GarbagePlan(recent=1)),  # exactly the grace period: still recent
        (DAY + timedelta(seconds=1), False, GarbagePlan(delete=["d"])),
        (-timedelta(minutes=5), False, GarbagePlan(recent=1)),  # a writer's clock ahead
    ],
)
def test_one_entry(age: timedelta, referenced: bool, expected: GarbagePlan) -> None:
    marks = {"d"} if referenced else set()
    assert select_garbage({"d": NOW - age}, marks, DAY, NOW) == expected


def test_many_entries_sorted_and_counted() -> None:
    old = NOW - 2 * DAY
    written = {"c": old, "a": old, "b": NOW, "e": old, "f": NOW}
    plan = select_garbage(written, {"e", "f", "not-stored"}, DAY, NOW)
    assert plan == GarbagePlan(delete=["a", "c"], referenced=2, recent=1)


@pytest.mark.parametrize(
    ("grace", "touch_after", "error"),
    [
        (DAY, timedelta(hours=1), None),
        (timedelta(hours=2), timedelta(hours=1), None),
        (timedelta(0), timedelta(0), None),
        (timedelta(minutes=90), timedelta(hours=1), "use at least 2h0m0s"),
        (-timedelta(seconds=1), timedelta(0), "must not be negative"),
    ],
)
def test_grace_covers_the_refresh_interval(
    grace: timedelta, touch_after: timedelta, error: str | None
) -> None:
    if error is None:
        check_grace(grace, touch_after)
    else:
        with pytest.raises(SpecError, match=error):
            check_grace(grace, touch_after)
