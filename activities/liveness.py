"""Heartbeats that say the worker process lives, whatever the activity is busy with."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from temporalio import activity

# Set while a helper thread beats for the activity running in this context: a nested
# ``heartbeating`` (the deploy engine inside the push queues' wrapper) adds no second one.
_BEATING: contextvars.ContextVar[bool] = contextvars.ContextVar("heartbeating", default=False)

# How often a long deploy-engine activity heartbeats. Temporal sends at most one heartbeat
# per 80 % of the heartbeat timeout, so this only has to stay well inside that timeout
# (workflows/common.py DEPLOY_HEARTBEAT, WAIT_READY_HEARTBEAT).
BEAT_SECONDS = 1.0


def beaten_for() -> None:
    """In this context someone else heartbeats for the activity (the push queues' pulse on
    the event loop): ``heartbeating`` starts no thread."""
    _BEATING.set(True)


@contextmanager
def heartbeating(every: float = BEAT_SECONDS) -> Iterator[None]:
    """Heartbeat from a helper thread while the block runs.

    The heartbeat timeout is how fast a killed worker's activity is retried elsewhere, so it
    is short (seconds); then every stretch without a heartbeat of its own (reading content,
    rendering, a slow API server under load) would be mistaken for a dead worker and run the
    same deploy twice at once. The helper thread dies with the process, so it beats exactly
    while the worker lives. The activity's own heartbeats (helm's progress) still go out.

    Inside another ``heartbeating`` of the same activity it does nothing: one helper thread
    per activity is enough, and every beat costs the worker's event loop a wake-up.
    """
    if _BEATING.get():
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            if activity.in_activity():  # called directly (tests, tools): nobody to tell
                activity.heartbeat()

    # The activity's context (which holds its heartbeat function) in the helper thread.
    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(beat,), name="heartbeat", daemon=True
    )
    token = _BEATING.set(True)
    thread.start()
    try:
        yield
    finally:
        _BEATING.reset(token)
        stop.set()
        thread.join()  # no heartbeat after the block has ended
