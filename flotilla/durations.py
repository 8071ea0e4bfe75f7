"""Parse Go-style durations (``15s``, ``1m30s``, ``500ms``) as written in GitRepo and fleet.yaml."""

from __future__ import annotations

import math
import re

from flotilla.errors import SpecError, short_repr

# Seconds per unit, as Go's time.ParseDuration knows them (both micro signs are accepted there).
_UNIT_SECONDS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_TERM = re.compile(r"(\d+\.?\d*|\.\d+)([a-zµμ]+)")


def parse_duration(value: object, *, field: str, file: str = "") -> float:
    """Return the duration ``value`` in seconds, or raise a one-line SpecError naming the field.

    A YAML number is taken as seconds (Go would reject it; accepting it hurts no Fleet file),
    but a string needs a unit, as in Go, so ``"15"`` is an error that suggests ``"15s"``.
    Negative durations are rejected: every duration flotilla reads is an interval or a timeout.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SpecError(
            f"must be a duration such as '15s' or '1m30s' ({short_repr(value)})",
            file=file,
            field=field,
        )
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise SpecError(
                f"must be a non-negative number of seconds ({short_repr(value)})",
                file=file,
                field=field,
            )
        return float(value)
    return _parse_duration_text(value, field=field, file=file)


def _parse_duration_text(text: str, *, field: str, file: str) -> float:
    body = text[1:] if text[:1] == "+" else text
    if body.startswith("-"):
        raise SpecError(f"must not be negative ({short_repr(text)})", file=file, field=field)
    if body == "0":
        return 0.0
    if re.fullmatch(r"\d+(\.\d*)?", body):
        raise SpecError(
            f"a duration needs a unit, did you mean {body + 's'!r}? ({short_repr(text)})",
            file=file,
            field=field,
        )
    total = 0.0
    position = 0
    for match in _TERM.finditer(body):
        unit = match.group(2)
        if match.start() != position or unit not in _UNIT_SECONDS:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[unit]
        position = match.end()
    if not body or position != len(body):
        raise SpecError(
            f"is not a duration; use a number and a unit (h, m, s, ms, us, ns) such as '1m30s' "
            f"({short_repr(text)})",
            file=file,
            field=field,
        )
    return total


def format_duration(seconds: float) -> str:
    """Return ``seconds`` in Go's notation (``1h30m0s``) so messages echo the user's own style."""
    if seconds == 0:
        return "0s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    fraction = seconds - whole
    text = f"{secs + fraction:g}s" if fraction else f"{secs}s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text
