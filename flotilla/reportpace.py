"""When a bundle in the middle of a rollout sends a changed report to its GitRepo (pure).

A report costs the bundle's history about six events (an upsert, the signal and its result,
and the workflow task that result brings), and a timer that wakes the workflow for it five
more. Activity completions wake the workflow anyway, so a held report rides on the first one
that comes after the gap; its timer is only the backstop for a rollout whose next completion
is late, and it is set from when the change was first seen, not from the last report, so a
completion is more likely to come first (faster deploys then share reports instead of each
adding a timer of its own).
"""

from __future__ import annotations

from datetime import datetime, timedelta


def held_report_due(
    *,
    now: datetime,
    last: datetime,
    changed_at: datetime | None,
    shape_changed: bool,
    gap: timedelta,
    interval: timedelta,
) -> datetime | None:
    """None when a changed report goes out now; else the latest time it may wait until.

    ``last`` is when the previous report went out, ``changed_at`` when what the GitRepo
    shows (states, counts, commit: the report's shape) first differed from it (None: not
    before this wake), ``shape_changed`` whether it differs now (else only the message
    does). A changed shape goes out once ``gap`` has passed since the last report, and waits
    at most ``gap`` from when it was first seen; a changed message alone goes out once
    ``interval`` has passed since the last report.
    """
    if shape_changed:
        if now - last >= gap:
            return None
        return (changed_at or now) + gap
    if now - last >= interval:
        return None
    return last + interval
