"""The session loop's executor (tests/executor.py): to_thread calls run as with asyncio's own,
and a call left blocked delays the session's end by the grace only, named in a warning."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tests.executor import DaemonThreadExecutor, LeftoverThreadWarning


def test_calls_run_results_and_errors_come_back() -> None:
    executor = DaemonThreadExecutor(max_workers=3, grace=5)
    loop = asyncio.new_event_loop()
    loop.set_default_executor(executor)
    try:

        def boom() -> None:
            raise ValueError("bad value")

        async def main() -> list[int]:
            with pytest.raises(ValueError, match="bad value"):
                await asyncio.to_thread(boom)
            return list(
                await asyncio.gather(*(asyncio.to_thread(lambda i=i: i * i) for i in range(20)))
            )

        assert loop.run_until_complete(main()) == [i * i for i in range(20)]
        assert len(executor._threads) <= 3
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    assert not any(t.is_alive() for t in executor._threads)


def test_a_blocked_call_delays_the_shutdown_by_the_grace_only() -> None:
    release = threading.Event()

    def blocked_forever() -> None:
        release.wait()  # no timeout: what a leaked blocking read looks like

    executor = DaemonThreadExecutor(max_workers=4, grace=1.0)
    loop = asyncio.new_event_loop()
    loop.set_default_executor(executor)
    try:
        future = loop.run_in_executor(None, blocked_forever)
        loop.run_until_complete(asyncio.sleep(0.2))
        started = time.monotonic()
        with pytest.warns(LeftoverThreadWarning, match="blocked_forever") as warned:
            loop.run_until_complete(loop.shutdown_default_executor())
        assert time.monotonic() - started < 10
        assert "release.wait()" in str(warned[0].message)
        (thread,) = executor._threads
        assert thread.daemon and thread.is_alive()
    finally:
        release.set()
        loop.run_until_complete(asyncio.wait_for(future, 10))
        loop.close()
