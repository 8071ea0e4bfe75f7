"""Deployment windows (Fleet's Schedule): Quartz cron, time zones, open/closed, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from flotilla.errors import SpecError
from flotilla.models import Schedule, parse_fleet_object, window_of
from flotilla.windows import CronError, Window, check_window, parse_cron, window_at
from starters.tables import schedule_table

UTC_ZONE = ZoneInfo("UTC")
# A Friday.
FRIDAY = datetime(2026, 12, 4, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # Fleet's own e2e schedule: second 0 of every minute.
        ("0 */1 * * * *", FRIDAY, FRIDAY + timedelta(minutes=1)),
        ("30 * * * * ?", FRIDAY, FRIDAY + timedelta(seconds=30)),
        ("0 0 22 * * ?", FRIDAY, datetime(2026, 12, 4, 22, 0, tzinfo=UTC)),
        (
            "0 0 22 * * ?",
            datetime(2026, 12, 4, 22, 0, tzinfo=UTC),
            datetime(2026, 12, 5, 22, 0, tzinfo=UTC),
        ),
        # Quartz counts days of the week from Sunday = 1.
        ("0 0 0 ? * 1", FRIDAY, datetime(2026, 12, 6, 0, 0, tzinfo=UTC)),
        ("0 0 9 ? * MON-FRI", FRIDAY, datetime(2026, 12, 7, 9, 0, tzinfo=UTC)),
        ("0 15,45 8-9 ? * *", FRIDAY, datetime(2026, 12, 5, 8, 15, tzinfo=UTC)),
        ("0 0 0 1 JAN ?", FRIDAY, datetime(2027, 1, 1, tzinfo=UTC)),
        ("0 0 0 29 2 ? 2028", FRIDAY, datetime(2028, 2, 29, tzinfo=UTC)),
        ("@daily", FRIDAY, datetime(2026, 12, 5, tzinfo=UTC)),
        ("@hourly", FRIDAY, FRIDAY + timedelta(hours=1)),
    ],
)
def test_next_start_in_utc(expression: str, after: datetime, expected: datetime) -> None:
    assert parse_cron(expression).next_after(after, UTC_ZONE) == expected


def test_the_expression_is_read_in_the_schedules_time_zone() -> None:
    # 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
    berlin = ZoneInfo("Europe/Berlin")
    cron = parse_cron("0 0 9 ? * MON-FRI")
    assert cron.next_after(FRIDAY, berlin) == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 3, 12, 0, tzinfo=UTC)  # a Friday
    assert cron.next_after(summer, berlin) == datetime(2026, 7, 6, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("*/5 * * * *", "has 5 fields; a Schedule uses Quartz's syntax, which starts with seconds"),
        ("0 0 0 * *", "has 5 fields"),
        ("0 0", "has 2 fields; expected 6 or 7"),
        ("0 61 * * * ?", "minute '61' is outside 0-59"),
        ("0 0 0 L * ?", "(L, W and # are not supported)"),
        ("0 0 0 ? * 2#1", "(L, W and # are not supported)"),
        ("0 0 0 1 * MON", "restricts both day-of-month and day-of-week"),
        ("0 0 0 ? * FUNDAY", "day-of-week 'FUNDAY' is not a number"),
        ("0 0 0 31 2 ?", "does not fire in the next five years"),
    ],
)
def test_bad_cron_expressions_say_what_is_wrong(expression: str, says: str) -> None:
    with pytest.raises(CronError, match=None) as err:
        parse_cron(expression).next_after(FRIDAY, UTC_ZONE)
    assert says in str(err.value)


def _window(cron: str, seconds: float, name: str = "w", location: str = "") -> Window:
    return Window(name=name, cron=cron, duration_seconds=seconds, location=location)


def test_open_inside_a_window_and_closed_outside_with_the_next_start() -> None:
    nightly = _window("0 0 22 * * ?", 2 * 3600, "nightly")
    inside = window_at([nightly], datetime(2026, 12, 4, 23, 30, tzinfo=UTC))
    assert inside.open and inside.closes_at == datetime(2026, 12, 5, 0, 0, tzinfo=UTC)
    # The window is [start, start + duration): its end is already outside.
    at_end = window_at([nightly], datetime(2026, 12, 5, 0, 0, tzinfo=UTC))
    assert not at_end.open
    assert at_end.opens_at == datetime(2026, 12, 5, 22, 0, tzinfo=UTC)
    assert at_end.waiting_line() == (
        "outside its deployment window: next window opens 2026-12-05 22:00:00 UTC "
        "(schedule nightly)"
    )
    at_start = window_at([nightly], datetime(2026, 12, 4, 22, 0, tzinfo=UTC))
    assert at_start.open


def test_any_open_window_of_several_opens_the_cluster() -> None:
    morning = _window("0 0 6 * * ?", 3600, "morning")
    evening = _window("0 0 18 * * ?", 3600, "evening")
    noon = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    closed = window_at([morning, evening], noon)
    assert (closed.open, closed.opens_at, closed.schedule) == (
        False,
        datetime(2026, 12, 4, 18, 0, tzinfo=UTC),
        "evening",
    )
    assert window_at([morning, evening], noon.replace(hour=6, minute=30)).open


def test_a_schedule_that_cannot_work_is_refused_naming_its_field() -> None:
    with pytest.raises(SpecError) as err:
        check_window(_window("0 0 * * * ?", 3600), file="s.yaml", now=FRIDAY)
    assert str(err.value) == (
        "s.yaml: spec.duration: '1h' is not shorter than the 1h between two starts of '0 0 * * * ?'"
    )
    with pytest.raises(SpecError, match=r"^s.yaml: spec.location: 'Mars/Olympus' is not"):
        check_window(_window("0 0 * * * ?", 60, location="Mars/Olympus"), file="s.yaml", now=FRIDAY)
    with pytest.raises(SpecError, match=r"^s.yaml: spec.schedule: '\* \* \* \* \*' has 5"):
        check_window(_window("* * * * *", 60), file="s.yaml", now=FRIDAY)
    with pytest.raises(SpecError, match=r"^s.yaml: spec.duration: must be longer than 0"):
        check_window(_window("0 0 * * * ?", 0), file="s.yaml", now=FRIDAY)


SCHEDULE = {
    "apiVersion": "fleet.cattle.io/v1alpha1",
    "kind": "Schedule",
    "metadata": {"name": "nightly", "namespace": "fleet-local"},
    "spec": {
        "schedule": "0 0 22 * * ?",
        "duration": "2h",
        "location": "Europe/Berlin",
        "targets": {
            "clusters": [{"name": "prod", "clusterSelector": {"matchLabels": {"env": "prod"}}}]
        },
    },
}


def test_a_fleet_schedule_is_read_as_apply_reads_it() -> None:
    parsed, warnings = parse_fleet_object(SCHEDULE, file="s.yaml")
    assert isinstance(parsed, Schedule) and warnings == []
    assert window_of(parsed) == Window(
        name="nightly", cron="0 0 22 * * ?", duration_seconds=7200, location="Europe/Berlin"
    )
    assert parsed.to_fleet()["spec"]["targets"]["clusters"][0]["clusterSelector"] == {
        "matchLabels": {"env": "prod"}
    }


@pytest.mark.parametrize(
    ("change", "line"),
    [
        ({"duration": "1d"}, "s.yaml: spec.duration: "),
        ({"duration": "25h"}, "s.yaml: spec.duration: '25h' is not shorter than the 24h between"),
        ({"schedule": "0 22 * * *"}, "s.yaml: spec.schedule: '0 22 * * *' has 5 fields"),
    ],
)
def test_bad_schedules_are_one_line_naming_file_and_field(
    change: dict[str, str], line: str
) -> None:
    data = {**SCHEDULE, "spec": {**SCHEDULE["spec"], **change}}  # type: ignore[dict-item]
    with pytest.raises(SpecError) as err:
        parse_fleet_object(data, file="s.yaml")
    assert str(err.value).startswith(line), str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_schedule_fields_are_warnings() -> None:
    data = {**SCHEDULE, "spec": {**SCHEDULE["spec"], "durration": "1h"}}  # type: ignore[dict-item]
    _, warnings = parse_fleet_object(data, file="s.yaml")
    assert warnings and "spec.durration: unknown field" in warnings[0]


def test_schedule_table_shows_fleets_columns() -> None:
    parsed, _ = parse_fleet_object(SCHEDULE, file="s.yaml")
    assert isinstance(parsed, Schedule)
    text = schedule_table([parsed], now=FRIDAY)
    header, row = text.splitlines()
    assert header.split() == [
        "NAME",
        "SCHEDULE",
        "DURATION",
        "LOCATION",
        "ACTIVE",
        "NEXT-START",
        "TARGETS",
    ]
    # 22:00 in Berlin is 21:00 UTC in December.
    assert "nightly" in row and "false" in row and "2026-12-04T21:00:00Z" in row
