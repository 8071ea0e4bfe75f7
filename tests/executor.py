"""The session event loop's default executor (``asyncio.to_thread``, ``run_in_executor(None)``).

asyncio's own executor is a ThreadPoolExecutor: closing the loop at the end of the session
waits for every thread in it without a limit (Python 3.11), and the interpreter joins them
again at exit. One call that never returns (a test cut by its timeout in the middle of a
blocking read, say) then holds the whole pytest process, or an xdist worker, until
pytest-timeout fires on the last test's teardown: minutes of nothing.

This executor runs the same calls on daemon threads and, on shutdown, waits for busy ones
for a bounded time only; it then names each call still running, with the stack it is
blocked in, in a warning (shown in pytest's summary) so the leak can be fixed where it is,
and lets the process go on.
"""

from __future__ import annotations

import itertools
import queue
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

_Work = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class LeftoverThreadWarning(UserWarning):
    """A call on the session loop's executor was still running when the session ended."""


class DaemonThreadExecutor(ThreadPoolExecutor):
    # A ThreadPoolExecutor only by name (asyncio accepts no other as the default): submit and
    # shutdown are its own, and the base class never starts a thread.

    def __init__(self, max_workers: int, *, grace: float = 10.0) -> None:
        super().__init__(max_workers=1)
        self.max_workers = max_workers
        self.grace = grace
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._running: dict[int, Callable[..., Any]] = {}
        self._idle = 0
        self._lock = threading.Lock()
        self._shutdown = False
        self._names = itertools.count()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._queue.put((future, fn, args, kwargs))
            if self._idle == 0 and len(self._threads) < self.max_workers:
                thread = threading.Thread(
                    target=self._work, name=f"session-executor-{next(self._names)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            else:
                self._idle -= 1 if self._idle else 0
        return future

    def _work(self) -> None:
        ident = threading.get_ident()
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            self._running[ident] = fn
            try:
                result = fn(*args, **kwargs)
            except BaseException as err:  # handed to the awaiting coroutine, as asyncio's does
                future.set_exception(err)
            else:
                future.set_result(result)
            finally:
                del self._running[ident]
                del future, fn, args, kwargs, item
                with self._lock:
                    self._idle += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in threads:
            self._queue.put(None)
        if not wait:
            return
        deadline = time.monotonic() + self.grace
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t for t in threads if t.is_alive()]
        if stuck:
            warnings.warn(LeftoverThreadWarning(self.describe(stuck)), stacklevel=1)

    def describe(self, threads: list[threading.Thread]) -> str:
        frames = sys._current_frames()
        parts = []
        for thread in threads:
            call = self._running.get(thread.ident or 0)
            frame = frames.get(thread.ident or 0)
            stack = "".join(traceback.format_stack(frame)[-6:]) if frame is not None else ""
            parts.append(f"{thread.name} still in {call!r} after {self.grace:.0f}s:\n{stack}")
        return (
            f"{len(threads)} asyncio.to_thread call(s) still running at the end of the session "
            "(left on daemon threads; the session does not wait for them):\n" + "\n".join(parts)
        )
