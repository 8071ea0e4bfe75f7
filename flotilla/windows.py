"""Deployment windows (Fleet's Schedule): Quartz cron, Go durations and whether a window is open.

A Schedule opens a window at every time its cron expression fires, in its ``location``, for
``duration``. A cluster that one or more Schedules target may be deployed to only while one of
their windows is open; outside, new versions are staged and wait. Pure: the bundle workflow
asks ``window_at`` with its own clock and sets a durable timer for ``WindowState.opens_at``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flotilla.errors import SpecError, short_repr

# Quartz's fields, in order, with their ranges (the seventh, the year, is optional).
_FIELDS = (
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 1, 7),
    ("year", 1970, 2199),
)
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    )
}
# Quartz counts days of the week from Sunday = 1.
_DAYS = {d: i + 1 for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
_NAMED = {
    "@yearly": "0 0 0 1 1 ?",
    "@annually": "0 0 0 1 1 ?",
    "@monthly": "0 0 0 1 * ?",
    "@weekly": "0 0 0 ? * 1",
    "@daily": "0 0 0 * * ?",
    "@midnight": "0 0 0 * * ?",
    "@hourly": "0 0 * * * ?",
}
# How far ahead a next start is looked for; an expression that never fires is an error.
_HORIZON_DAYS = 366 * 5


class CronError(ValueError):
    """A cron expression flotilla cannot read; the message says which part and why."""


@dataclass(frozen=True)
class Cron:
    """A parsed Quartz cron expression: the allowed values of each field."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int] | None  # None: any day of the month ('?' or '*')
    months: frozenset[int]
    weekdays: frozenset[int] | None  # Quartz numbering (Sunday = 1); None: any
    years: frozenset[int] | None

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months or (self.years is not None and day.year not in self.years):
            return False
        if self.days is not None and day.day not in self.days:
            return False
        # Python: Monday = 0 ... Sunday = 6; Quartz: Sunday = 1 ... Saturday = 7.
        return self.weekdays is None or (day.weekday() + 1) % 7 + 1 in self.weekdays

    def next_after(self, after: datetime, zone: ZoneInfo) -> datetime:
        """The first time strictly after ``after`` (aware) when the expression fires, in UTC."""
        local = after.astimezone(zone).replace(microsecond=0, tzinfo=None) + timedelta(seconds=1)
        day = local.date()
        for _ in range(_HORIZON_DAYS):
            if self._day_matches(day):
                first = day == local.date()
                for hour in sorted(self.hours):
                    if first and hour < local.hour:
                        continue
                    for minute in sorted(self.minutes):
                        if first and hour == local.hour and minute < local.minute:
                            continue
                        for second in sorted(self.seconds):
                            wall = datetime(day.year, day.month, day.day, hour, minute, second)
                            if wall < local:
                                continue
                            at = wall.replace(tzinfo=zone).astimezone(UTC)
                            if at > after:
                                return at
            day += timedelta(days=1)
        raise CronError(f"{self.expression!r} does not fire in the next five years")


def parse_cron(expression: str) -> Cron:
    """Read Quartz's cron syntax as Fleet's Schedule uses it: ``sec min hour dom month dow
    [year]`` with ``*``, ``?``, lists, ranges, steps and names; or ``@daily`` and the like."""
    text = _NAMED.get(expression.strip().lower(), expression.strip())
    parts = text.split()
    if len(parts) == 5:
        raise CronError(
            f"{expression!r} has 5 fields; a Schedule uses Quartz's syntax, which starts with "
            f"seconds: '0 {text}'"
        )
    if len(parts) not in (6, 7):
        raise CronError(
            f"{expression!r} has {len(parts)} fields; expected 6 or 7 "
            "(second minute hour day-of-month month day-of-week [year])"
        )
    values = [
        _field(part, name, low, high, expression)
        for part, (name, low, high) in zip(parts, _FIELDS, strict=False)
    ]
    days, weekdays = values[3], values[5]
    if days is not None and weekdays is not None:
        raise CronError(
            f"{expression!r} restricts both day-of-month and day-of-week; Quartz needs '?' "
            "in one of them"
        )
    return Cron(
        expression=expression,
        seconds=values[0] or frozenset(range(60)),
        minutes=values[1] or frozenset(range(60)),
        hours=values[2] or frozenset(range(24)),
        days=days,
        months=values[4] or frozenset(range(1, 13)),
        weekdays=weekdays,
        years=values[6] if len(values) == 7 else None,
    )


def _field(part: str, name: str, low: int, high: int, expression: str) -> frozenset[int] | None:
    """The values one field allows, or None for any ('*' or '?')."""
    if part in ("*", "?"):
        return None
    names = _MONTHS if name == "month" else _DAYS if name == "day-of-week" else {}
    allowed: set[int] = set()
    for item in part.split(","):
        base, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base in ("*", "?"):
                start, end = low, high
            elif "-" in base:
                first, _, last = base.partition("-")
                start, end = _value(first, names), _value(last, names)
            else:
                start = _value(base, names)
                end = high if step_text else start
        except ValueError:
            raise CronError(
                f"{expression!r}: {name} {item!r} is not a number, range or step"
                + (" (L, W and # are not supported)" if re.search(r"[LW#]", item) else "")
            ) from None
        if not (low <= start <= high and low <= end <= high) or step < 1 or start > end:
            raise CronError(f"{expression!r}: {name} {item!r} is outside {low}-{high}")
        allowed.update(range(start, end + 1, step))
    return frozenset(allowed)


def _value(text: str, names: dict[str, int]) -> int:
    upper = text.upper()
    return names[upper] if upper in names else int(text)


def load_location(location: str | None) -> ZoneInfo:
    """The Schedule's time zone; empty is UTC (Fleet: the controller's local time, which is
    UTC in its container)."""
    try:
        return ZoneInfo(location or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{location!r} is not a time zone name such as Europe/Berlin") from None


@dataclass(frozen=True)
class Window:
    """One Schedule as the bundle workflow evaluates it."""

    name: str
    cron: str
    duration_seconds: float
    location: str = ""


def check_window(window: Window, *, file: str, now: datetime) -> None:
    """Refuse a Schedule that cannot work, naming the field: a bad cron, duration or
    location, or a window as long as the gap between two starts (Fleet's rule)."""
    try:
        zone = load_location(window.location)
    except ValueError as err:
        raise SpecError(str(err), file=file, field="spec.location") from None
    try:
        cron = parse_cron(window.cron)
        first = cron.next_after(now, zone)
        second = cron.next_after(first, zone)
    except CronError as err:
        raise SpecError(str(err), file=file, field="spec.schedule") from None
    if window.duration_seconds <= 0:
        raise SpecError(
            "must be longer than 0: a window of no length never opens",
            file=file,
            field="spec.duration",
        )
    gap = (second - first).total_seconds()
    if window.duration_seconds >= gap:
        raise SpecError(
            f"{short_repr(_seconds_text(window.duration_seconds))} is not shorter than the "
            f"{_seconds_text(gap)} between two starts of {window.cron!r}",
            file=file,
            field="spec.duration",
        )


@dataclass(frozen=True)
class WindowState:
    """Whether a cluster may be deployed to now, until when, and when it next may."""

    open: bool
    # While open: when the window that is open closes (the latest, when several are).
    closes_at: datetime | None = None
    # While closed: when the next window opens, and whose it is.
    opens_at: datetime | None = None
    schedule: str = ""

    def waiting_line(self) -> str:
        """What a deployment waiting for its window shows."""
        when = self.opens_at.strftime("%Y-%m-%d %H:%M:%S UTC") if self.opens_at else "never"
        return f"outside its deployment window: next window opens {when} (schedule {self.schedule})"


def window_at(windows: Sequence[Window], now: datetime) -> WindowState:
    """The state of a cluster targeted by ``windows`` at ``now``: open when any is open.

    A window is ``[start, start + duration)`` for every start of the cron expression; since a
    duration is shorter than the gap between two starts, the window holding ``now`` (if any)
    began at the first start after ``now - duration``.
    """
    open_until: list[datetime] = []
    upcoming: list[tuple[datetime, str]] = []
    for window in windows:
        zone = load_location(window.location)
        cron = parse_cron(window.cron)
        length = timedelta(seconds=window.duration_seconds)
        start = cron.next_after(now - length - timedelta(seconds=1), zone)
        if start <= now < start + length:
            open_until.append(start + length)
        else:
            upcoming.append((start if start > now else cron.next_after(now, zone), window.name))
    if open_until:
        return WindowState(open=True, closes_at=max(open_until))
    opens_at, name = min(upcoming)
    return WindowState(open=False, opens_at=opens_at, schedule=name)


def _seconds_text(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{secs}s" if secs or not text else "")
