"""A bound on a process's shutdown that nothing inside the process can hold up.

The worker and the agent drain on SIGTERM. The drain is bounded by the SDK, but the process's
end is not: after it, ``asyncio.run`` waits for the default executor's threads and the
interpreter joins every non-daemon thread, so one activity thread that outlives its cancelled
activity keeps a finished process alive until its pod's grace period ends in SIGKILL, without
a word. ``exit_after`` arms, from the signal on, a daemon thread that ends the process at the
bound and says what held it.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import sys
import threading
from collections.abc import Callable

log = logging.getLogger("flotilla.shutdown")


def give_up_shutting_down(seconds: float) -> None:
    """End the process as a pod's grace period would end it with SIGKILL (Temporal times out
    what was in flight and hands it to the next worker), saying so, with every thread's
    stack: what held the drain or the exit."""
    log.warning(
        "shutdown: not done %.0fs after the signal; exiting (Temporal retries what was in "
        "flight on another worker); the threads' stacks follow",
        seconds,
    )
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    logging.shutdown()
    os._exit(0)


def exit_after(seconds: float) -> None:
    """A daemon thread that ends the process after ``seconds``, whatever the loop or the
    interpreter's exit (its join of non-daemon threads) is waiting for. Never cancelled: a
    process that ends in time ends it too, so arm it only in a process that is ending."""
    timer = threading.Timer(seconds, give_up_shutting_down, args=(seconds,))
    timer.daemon = True
    timer.start()


def bounded_stop(stop: asyncio.Event, seconds: float) -> Callable[[], None]:
    """A signal handler that sets ``stop`` and, at the first signal, arms ``exit_after``:
    whatever the process does once told to stop, it ends within ``seconds``."""

    def on_signal() -> None:
        if not stop.is_set():
            log.info("stopping: the process ends within %.0fs", seconds)
            exit_after(seconds)
        stop.set()

    return on_signal
