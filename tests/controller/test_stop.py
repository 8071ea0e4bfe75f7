"""The controller stops when asked even if the stop lands in a Temporal update call, which
Temporal's client reports as WorkflowUpdateRPCTimeoutOrCancelledError instead of letting the
cancellation through (seen as a 900 s hang of test_fleet_api_round_trip on a loaded machine:
``run`` waited forever for a reconcile worker that logged the error and carried on)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError

from activities.kube import Kube
from controller.loop import Controller, ControllerConfig, Key
from starters.control import Control


async def test_a_cancelled_update_in_a_reconcile_still_stops_the_worker() -> None:
    controller = Controller(
        cast(Kube, None), cast(Control, None), ControllerConfig(namespaces=["ns"], identity="a")
    )
    in_update = asyncio.Event()

    async def reconcile(key: Key) -> None:
        in_update.set()
        try:
            await asyncio.sleep(3600)  # an update call waiting on a busy server
        except asyncio.CancelledError as err:  # what temporalio's client does with a cancel
            raise WorkflowUpdateRPCTimeoutOrCancelledError() from err

    controller.reconcile = reconcile  # type: ignore[method-assign]
    controller.objects[("Cluster", "ns", "three")] = cast(dict[str, Any], {})
    controller._enqueue(("Cluster", "ns", "three"))
    worker = asyncio.create_task(controller._worker())
    try:
        await asyncio.wait_for(in_update.wait(), 10)
        worker.cancel()
        done, _ = await asyncio.wait({worker}, timeout=10)
        assert done == {worker}, "the reconcile worker swallowed the stop"
        assert worker.cancelled()
    finally:
        worker.cancel()  # a second cancel lands in queue.get(), where nothing converts it
        await asyncio.wait({worker}, timeout=10)


async def test_a_cancelled_status_pass_still_stops_the_status_loop() -> None:
    controller = Controller(
        cast(Kube, None),
        cast(Control, None),
        ControllerConfig(namespaces=["ns"], identity="a", status_seconds=0.01),
    )
    in_pass = asyncio.Event()

    async def status_pass() -> None:
        if in_pass.is_set():
            return
        in_pass.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError as err:
            raise WorkflowUpdateRPCTimeoutOrCancelledError() from err

    controller.status_pass = status_pass  # type: ignore[method-assign]
    loop_task = asyncio.create_task(controller._status_loop())
    try:
        await asyncio.wait_for(in_pass.wait(), 10)
        loop_task.cancel()
        done, _ = await asyncio.wait({loop_task}, timeout=10)
        assert done == {loop_task}, "the status loop swallowed the stop"
        assert loop_task.cancelled()
    finally:
        loop_task.cancel()  # a second cancel lands in the loop's sleep
        await asyncio.wait({loop_task}, timeout=10)
