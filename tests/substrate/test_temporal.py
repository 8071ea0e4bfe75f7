"""The Temporal dev server runs real workflows: signals, queries and retried activities."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

from devenv.temporal import SERVER_DYNAMIC_CONFIG, TemporalDevServer
from workflows import visibility


class Greeting(BaseModel):
    name: str
    attempts: int = 0


_FAILURES_BEFORE_SUCCESS = 2


@activity.defn
async def flaky_greet(greeting: Greeting) -> Greeting:
    if activity.info().attempt <= _FAILURES_BEFORE_SUCCESS:
        raise RuntimeError("transient failure")
    return Greeting(name=f"hello {greeting.name}", attempts=activity.info().attempt)


@workflow.defn(sandboxed=False)
class SmokeWorkflow:
    def __init__(self) -> None:
        self.names: list[str] = []
        self.results: list[Greeting] = []

    @workflow.run
    async def run(self) -> list[Greeting]:
        await workflow.wait_condition(lambda: len(self.names) > 0)
        result = await workflow.execute_activity(
            flaky_greet,
            Greeting(name=self.names[0]),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=50), backoff_coefficient=1.0
            ),
        )
        self.results.append(result)
        return self.results

    @workflow.signal
    def add_name(self, name: str) -> None:
        self.names.append(name)

    @workflow.query
    def pending(self) -> list[str]:
        return self.names


async def test_signal_query_and_retried_activity(temporal_client: Client, task_queue: str) -> None:
    async with Worker(
        temporal_client, task_queue=task_queue, workflows=[SmokeWorkflow], activities=[flaky_greet]
    ):
        handle = await temporal_client.start_workflow(
            SmokeWorkflow.run,
            id=f"smoke-{task_queue}",
            task_queue=task_queue,
        )
        assert await handle.query(SmokeWorkflow.pending) == []
        await handle.signal(SmokeWorkflow.add_name, "fleet")
        result = await asyncio.wait_for(handle.result(), timeout=30)
    assert [r.name for r in result] == ["hello fleet"]
    assert result[0].attempts == _FAILURES_BEFORE_SUCCESS + 1


async def test_flotilla_search_attributes_are_registered(temporal_client: Client) -> None:
    listed = await temporal_client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    assert set(visibility.registrations()) <= set(listed.custom_attributes)


async def test_dev_servers_started_together_serve_as_soon_as_started(tmp_path: Path) -> None:
    """Started is serving: a client connecting right after start() gets no "Frontend is not
    healthy yet", even with two servers starting at once (two test sessions on one machine)."""
    servers = [TemporalDevServer(tmp_path / f"t{i}", headless=True) for i in range(2)]
    try:
        await asyncio.gather(*(asyncio.to_thread(server.start) for server in servers))
        for server in servers:
            client = await Client.connect(server.address)
            listed = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace="default")
            )
            assert set(visibility.registrations()) <= set(listed.custom_attributes)
    finally:
        for server in servers:
            server.stop()


async def test_workflow_deadlock_detection_stays_on_scaled_by_load(
    temporal_client: Client, task_queue: str
) -> None:
    """tests/conftest.py scales the SDK's 2 s deadlock bound by the load; it must not be off."""
    from tests.conftest import _deadlock_seconds  # noqa: PLC0415

    worker = Worker(temporal_client, task_queue=task_queue, workflows=[SmokeWorkflow])
    bound = worker._workflow_worker._deadlock_timeout_seconds  # type: ignore[union-attr]
    assert bound is not None
    assert 2.0 <= bound <= 20.0
    assert abs(bound - _deadlock_seconds()) < 10


@activity.defn
async def tick(n: int) -> int:
    return n


@workflow.defn(sandboxed=False)
class WavesWorkflow:
    """Waves of 20 activities until told to stop: a steady stream of history tasks."""

    def __init__(self) -> None:
        self.stopped = False

    @workflow.run
    async def run(self) -> int:
        waves = 0
        while not self.stopped:
            await asyncio.gather(
                *(
                    workflow.execute_activity(tick, i, start_to_close_timeout=timedelta(seconds=30))
                    for i in range(20)
                )
            )
            waves += 1
        return waves

    @workflow.signal
    def stop(self) -> None:
        self.stopped = True


def _resolution_losses(metrics_url: str) -> float:
    """``queue_predicate_resolution_loss`` for reason max_pending_keys, over all queues."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("queue_predicate_resolution_loss{")
        and 'reason="max_pending_keys"' in line
    )


async def test_the_dev_server_runs_with_flotillas_history_queue_settings(
    temporal_server: TemporalDevServer, temporal_client: Client, task_queue: str
) -> None:
    """devenv.temporal.SERVER_DYNAMIC_CONFIG is in force: with tasks pending, a history
    queue's checkpoint keeps its slice's broad predicate (max_pending_keys 0) and counts the
    resolution loss, which the server's default (10 keys) never does on a server with fewer
    namespaces. Without the setting this waits out its 60 s and fails (checked by hand)."""
    assert SERVER_DYNAMIC_CONFIG["history.queueShrinkPredicateMaxPendingKeys"] == 0
    before = _resolution_losses(temporal_server.metrics_url)
    async with Worker(
        temporal_client, task_queue=task_queue, workflows=[WavesWorkflow], activities=[tick]
    ):
        handle = await temporal_client.start_workflow(
            WavesWorkflow.run, id=f"waves-{task_queue}", task_queue=task_queue
        )
        deadline = time.monotonic() + 60
        while _resolution_losses(temporal_server.metrics_url) <= before:
            assert time.monotonic() < deadline, "no slice kept its broad predicate in 60 s"
            await asyncio.sleep(0.5)
        await handle.signal(WavesWorkflow.stop)
        assert await asyncio.wait_for(handle.result(), timeout=30) > 0


# Activities that end while one workflow task of BurstWorkflow runs: each is two events
# (started, completed) buffered by the server, 160 in all against Temporal's default
# history.maximumBufferedEventsBatch of 100.
_BURST = 80


@activity.defn
async def settle(n: int) -> int:
    """The first answers at once (its end opens the long task), the others a little later."""
    await asyncio.sleep(0.3 if n else 0)
    return n


@workflow.defn(sandboxed=False)
class BurstWorkflow:
    """Starts _BURST activities, then runs one long workflow task while they all end: what a
    shard's pass on a busy worker does while its deploys answer."""

    builds = 0  # how often the worker built this workflow anew: once, unless it was evicted

    def __init__(self) -> None:
        BurstWorkflow.builds += 1

    @workflow.run
    async def run(self) -> int:
        running = [
            workflow.start_activity(settle, i, start_to_close_timeout=timedelta(seconds=30))
            for i in range(_BURST)
        ]
        await running[0]
        if not workflow.unsafe.is_replaying():
            time.sleep(1.5)  # the task stays open (under the SDK's 2 s deadlock bound)
        return sum(await asyncio.gather(*running))


async def _failed_tasks(client: Client, task_queue: str) -> list[str]:
    """Run BurstWorkflow once; the causes of its failed workflow tasks."""
    BurstWorkflow.builds = 0
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[BurstWorkflow],
        activities=[settle],
        max_concurrent_activities=_BURST,
    ):
        handle = await client.start_workflow(
            BurstWorkflow.run, id=f"burst-{task_queue}", task_queue=task_queue
        )
        assert await asyncio.wait_for(handle.result(), timeout=60) == sum(range(_BURST))
        history = await handle.fetch_history()
    return [
        WorkflowTaskFailedCause.Name(e.workflow_task_failed_event_attributes.cause)
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]


async def test_activities_ending_during_a_long_workflow_task_do_not_fail_it(
    temporal_client: Client, task_queue: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """devenv.temporal.SERVER_DYNAMIC_CONFIG lets a workflow task run while 80 activities end
    (160 buffered events). A server on Temporal's default, started here beside it, fails that
    task (FORCE_CLOSE_COMMAND) and the worker rebuilds the workflow from its history: the
    test's own check that it can fail."""
    assert await _failed_tasks(temporal_client, task_queue) == []
    assert BurstWorkflow.builds == 1

    monkeypatch.delitem(SERVER_DYNAMIC_CONFIG, "history.maximumBufferedEventsBatch")
    with TemporalDevServer(tmp_path / "defaults", headless=True) as stock:
        client = await Client.connect(stock.address)
        causes = await _failed_tasks(client, task_queue)
    assert "WORKFLOW_TASK_FAILED_CAUSE_FORCE_CLOSE_COMMAND" in causes
    assert BurstWorkflow.builds > 1
