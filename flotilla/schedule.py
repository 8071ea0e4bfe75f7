"""Parse a Keel-style ``pollSchedule`` into the interval or cron a Temporal Schedule takes."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

from flotilla.durations import format_duration, parse_duration
from flotilla.errors import SpecError, short_repr

DEFAULT_POLL_SCHEDULE = "@every 4h"

# Anything faster would poll a registry more often than any registry's rate limit tolerates.
MIN_INTERVAL_SECONDS = 1.0

_DESCRIPTORS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
        start=1,
    )
}
_WEEKDAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}


class _CronField(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    low: int
    high: int
    names: dict[str, int] = {}
    # Keel's cron library accepts '?' as "any" in the two day fields only.
    allows_question_mark: bool = False


_FIELDS = (
    _CronField(name="minute", low=0, high=59),
    _CronField(name="hour", low=0, high=23),
    _CronField(name="day of month", low=1, high=31, allows_question_mark=True),
    _CronField(name="month", low=1, high=12, names=_MONTHS),
    _CronField(name="day of week", low=0, high=6, names=_WEEKDAYS, allows_question_mark=True),
)


class PollSchedule(BaseModel):
    """Exactly one of ``interval_seconds`` (``@every``) or ``cron`` (five fields) is set."""

    model_config = ConfigDict(frozen=True)

    interval_seconds: float | None = None
    cron: str | None = None

    @property
    def text(self) -> str:
        """The schedule as a person would write it, for status and logs."""
        if self.interval_seconds is not None:
            return f"@every {format_duration(self.interval_seconds)}"
        return self.cron or ""


def parse_poll_schedule(
    value: object, *, field: str = "pollSchedule", file: str = ""
) -> PollSchedule:
    """Parse ``@every <duration>``, a descriptor such as ``@daily``, or a 5-field cron expression.

    An absent or empty value is Keel's default, ``@every 4h``.
    """
    if value is None or value == "":
        value = DEFAULT_POLL_SCHEDULE
    if not isinstance(value, str):
        raise SpecError(
            f"must be a string such as '@every 5m' or '*/5 * * * *' ({short_repr(value)})",
            file=file,
            field=field,
        )
    text = " ".join(value.split())
    if text.startswith("@every"):
        return _parse_every(text, original=value, field=field, file=file)
    if text.startswith("@"):
        cron = _DESCRIPTORS.get(text.lower())
        if cron is None:
            known = ", ".join(["@every <duration>", *_DESCRIPTORS])
            raise SpecError(
                f"unknown descriptor, use one of {known} ({short_repr(value)})",
                file=file,
                field=field,
            )
        return PollSchedule(cron=cron)
    return PollSchedule(cron=_normalize_cron(text, original=value, field=field, file=file))


def _parse_every(text: str, *, original: str, field: str, file: str) -> PollSchedule:
    duration_text = text.removeprefix("@every").strip()
    if not duration_text:
        raise SpecError(
            f"'@every' needs a duration such as '@every 5m' ({short_repr(original)})",
            file=file,
            field=field,
        )
    seconds = parse_duration(duration_text, field=field, file=file)
    if seconds < MIN_INTERVAL_SECONDS:
        raise SpecError(
            f"interval must be at least 1s ({short_repr(original)})", file=file, field=field
        )
    return PollSchedule(interval_seconds=seconds)


def _normalize_cron(text: str, *, original: str, field: str, file: str) -> str:
    parts = text.split(" ")
    if len(parts) == 6:
        # Keel's cron library reads six fields with seconds first; only whole minutes map onto
        # a 5-field Temporal cron, so '0 */5 * * * *' is accepted and anything finer is not.
        if parts[0] != "0":
            raise SpecError(
                f"schedules finer than a minute are not supported; "
                f"use '@every <duration>' ({short_repr(original)})",
                file=file,
                field=field,
            )
        parts = parts[1:]
    if len(parts) != 5:
        raise SpecError(
            f"a cron expression has 5 fields (minute hour day-of-month month "
            f"day-of-week), got {len(parts)} ({short_repr(original)})",
            file=file,
            field=field,
        )
    for spec, part in zip(_FIELDS, parts, strict=True):
        for item in part.split(","):
            problem = _check_cron_item(spec, item)
            if problem:
                raise SpecError(
                    f"{spec.name} field {part!r}: {problem} ({short_repr(original)})",
                    file=file,
                    field=field,
                )
    return " ".join(parts)


def _check_cron_item(spec: _CronField, item: str) -> str:
    """Return what is wrong with one comma-separated item of a cron field, or ''."""
    base, slash, step = item.partition("/")
    if slash and not (step.isdigit() and int(step) > 0):
        return f"step {step!r} must be a positive number"
    if base == "*" or (base == "?" and spec.allows_question_mark):
        return ""
    low_text, dash, high_text = base.partition("-")
    low = _cron_value(spec, low_text)
    if low is None:
        return f"{low_text!r} is not a value from {spec.low} to {spec.high}"
    if not dash:
        return ""
    high = _cron_value(spec, high_text)
    if high is None:
        return f"{high_text!r} is not a value from {spec.low} to {spec.high}"
    if high < low:
        return f"range {base!r} runs backwards"
    return ""


def _cron_value(spec: _CronField, text: str) -> int | None:
    if re.fullmatch(r"\d+", text):
        number = int(text)
    elif text.lower() in spec.names:
        number = spec.names[text.lower()]
    else:
        return None
    return number if spec.low <= number <= spec.high else None
