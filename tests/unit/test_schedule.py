"""Go-style durations and Keel-style poll schedules."""

from __future__ import annotations

import pytest

from flotilla.durations import format_duration, parse_duration
from flotilla.errors import SpecError
from flotilla.schedule import PollSchedule, parse_poll_schedule


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15s", 15.0),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("2h45m", 9900.0),
        ("1h0m0s", 3600.0),
        ("100us", 1e-4),
        ("100µs", 1e-4),
        ("1000ns", 1e-6),
        ("0", 0.0),
        ("+5s", 5.0),
        ("1s500ms", 1.5),
    ],
)
def test_parse_duration_reads_go_notation(text: str, seconds: float) -> None:
    assert parse_duration(text, field="interval") == pytest.approx(seconds)


@pytest.mark.parametrize(("number", "seconds"), [(15, 15.0), (0, 0.0), (2.5, 2.5)])
def test_parse_duration_takes_yaml_numbers_as_seconds(number: float, seconds: float) -> None:
    assert parse_duration(number, field="interval") == seconds


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("15", "did you mean '15s'"),
        ("", "is not a duration"),
        ("5 s", "is not a duration"),
        ("1d", "is not a duration"),
        ("s", "is not a duration"),
        ("1h30", "is not a duration"),
        ("x5s", "is not a duration"),
        ("1h 30m", "is not a duration"),
        ("-5s", "must not be negative"),
        (-1, "non-negative"),
        (True, "must be a duration"),
        (None, "must be a duration"),
        (float("inf"), "non-negative"),
    ],
)
def test_parse_duration_errors_name_file_field_and_value(value: object, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_duration(value, field="spec.pollingInterval", file="gitrepo.yaml")
    message = str(caught.value)
    assert fragment in message
    assert message.startswith("gitrepo.yaml: spec.pollingInterval: ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (15, "15s"), (90, "1m30s"), (14400, "4h0m0s"), (3661, "1h1m1s"), (0.5, "0.5s")],
)
def test_format_duration_writes_go_notation(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.5, 15.0, 90.0, 14400.0, 3661.0])
def test_format_then_parse_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds), field="x") == seconds


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, PollSchedule(interval_seconds=14400.0)),
        ("", PollSchedule(interval_seconds=14400.0)),
        ("@every 4h", PollSchedule(interval_seconds=14400.0)),
        ("@every 1m30s", PollSchedule(interval_seconds=90.0)),
        ("  @every   5m ", PollSchedule(interval_seconds=300.0)),
        ("@hourly", PollSchedule(cron="0 * * * *")),
        ("@daily", PollSchedule(cron="0 0 * * *")),
        ("@midnight", PollSchedule(cron="0 0 * * *")),
        ("@weekly", PollSchedule(cron="0 0 * * 0")),
        ("@monthly", PollSchedule(cron="0 0 1 * *")),
        ("@yearly", PollSchedule(cron="0 0 1 1 *")),
        ("@annually", PollSchedule(cron="0 0 1 1 *")),
        ("*/5 * * * *", PollSchedule(cron="*/5 * * * *")),
        ("0  9-17  *  *  MON-FRI", PollSchedule(cron="0 9-17 * * MON-FRI")),
        ("0,15,30,45 * * * *", PollSchedule(cron="0,15,30,45 * * * *")),
        ("5-55/10 1,13 1-15 jan-jun ?", PollSchedule(cron="5-55/10 1,13 1-15 jan-jun ?")),
        ("30 2 ? * sun", PollSchedule(cron="30 2 ? * sun")),
        ("10/15 * * * *", PollSchedule(cron="10/15 * * * *")),
        ("0 */5 * * * *", PollSchedule(cron="*/5 * * * *")),
        ("59 23 31 12 6", PollSchedule(cron="59 23 31 12 6")),
    ],
)
def test_parse_poll_schedule_normalizes(value: object, expected: PollSchedule) -> None:
    assert parse_poll_schedule(value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("@every", "needs a duration"),
        ("@every 500ms", "at least 1s"),
        ("@every 5", "did you mean '5s'"),
        ("@every soon", "is not a duration"),
        ("@fortnightly", "unknown descriptor"),
        ("* * * *", "5 fields"),
        ("* * * * * * *", "5 fields"),
        ("30 */5 * * * *", "finer than a minute"),
        ("60 * * * *", "minute field '60'"),
        ("* 24 * * *", "hour field"),
        ("* * 0 * *", "day of month field"),
        ("* * * 13 *", "month field"),
        ("* * * * 7", "day of week field"),
        ("*/0 * * * *", "step '0'"),
        ("*/x * * * *", "step 'x'"),
        ("10-5 * * * *", "runs backwards"),
        ("? * * * *", "minute field '?'"),
        ("* * * foo *", "'foo' is not a value from 1 to 12"),
        ("1-x * * * *", "'x' is not a value"),
        (300, "must be a string"),
    ],
)
def test_parse_poll_schedule_errors_are_one_line(value: object, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_poll_schedule(value, field="imageScans[0].pollSchedule", file="fleet.yaml")
    message = str(caught.value)
    assert fragment in message
    assert message.startswith("fleet.yaml: imageScans[0].pollSchedule: ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("schedule", "text"),
    [
        (PollSchedule(interval_seconds=14400.0), "@every 4h0m0s"),
        (PollSchedule(cron="*/5 * * * *"), "*/5 * * * *"),
    ],
)
def test_poll_schedule_text_reads_back(schedule: PollSchedule, text: str) -> None:
    assert schedule.text == text
    assert parse_poll_schedule(text) == schedule
