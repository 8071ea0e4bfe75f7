"""The one way a FlotillaError leaves an activity: a Temporal ``ApplicationError``.

The error decides the ``type`` and whether it is retryable (``flotilla/errors.py`` has the tree
and the catalogue); an activity only redacts the message and may give the generic types a name
of its own (``rename``). Temporal is imported when an error is mapped, so the CLI, which reads
the modules that import this one, does not pay for the SDK.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING

from flotilla.errors import FlotillaError

if TYPE_CHECKING:
    from temporalio.exceptions import ApplicationError


def to_application_error(
    err: FlotillaError,
    *,
    redact: Callable[[str], str] | None = None,
    rename: Mapping[str, str] | None = None,
) -> ApplicationError:
    """``err`` as an ApplicationError of its ``type`` (renamed by ``rename`` when listed there),
    non-retryable unless it is ``retryable``, asking for ``retry_after`` seconds of patience.

    ``redact`` scrubs the message before it leaves the activity (helm's and the API server's
    messages may quote values that came from secrets). Every FlotillaError is expected and
    handled by the workflow that called (which logs it in one line), so it is BENIGN: the SDK
    then logs the failed attempt at DEBUG instead of a WARNING with a traceback."""
    from temporalio.exceptions import ApplicationError, ApplicationErrorCategory  # noqa: PLC0415

    message = redact(str(err)) if redact is not None else str(err)
    kind = (rename or {}).get(err.type, err.type)
    delay = err.retry_after
    return ApplicationError(
        message,
        type=kind,
        non_retryable=not err.retryable,
        next_retry_delay=timedelta(seconds=delay) if delay else None,
        category=ApplicationErrorCategory.BENIGN,
    )
