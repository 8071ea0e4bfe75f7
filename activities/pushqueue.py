"""Push-mode deploy activities on the shared push queues: a few at once per cluster, a
readiness wait that holds none of the engine's threads, and an unreachable cluster named in
its one-line error.

All push-mode clusters share a small fixed set of queues (``flotilla.ids.push_task_queues``);
the cluster is named in each request. What one cluster's per-queue worker used to bound (tasks
at once per cluster) is a semaphore per cluster here, so one cluster with many bundles cannot
take every thread from the others, nor flood its own API server.

The activities are async. The deploy engine's blocking work (a helm run, an API call, one
look at readiness) runs on a thread of this wrapper's engine pool; between looks a wait
watches on a thread of its watcher pool (a blocked socket) or, with none free, sleeps on the
event loop; a wait for a cluster's slot runs on the event loop. A deploy holds an engine
thread for its apply, not for the seconds or minutes its release takes to turn Ready, so the
engine pool bounds the applies (and helm children) at once and the push queues' slots (many
more) bound the deployments in flight (docs/orchestration.md, "Worker").
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager, suppress
from typing import Any, Protocol, TypeVar

import temporalio.activity
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.exceptions import CancelledError as ActivityCancelled

from activities.deploy_models import (
    CHECK_DEPLOYMENT,
    CHECK_DEPLOYMENTS,
    DEPLOY_BUNDLE,
    REMOVE_DEPLOYMENT,
    WAIT_READY,
    Applied,
    BatchedCheck,
    CheckBatchRequest,
    CheckBatchResult,
    DeploymentStatus,
    DeployRequest,
    DeployResult,
    RemoveRequest,
    RemoveResult,
    StatusRequest,
    WaitReadyRequest,
)
from activities.liveness import beaten_for
from activities.releasewatch import WATCH_SECONDS
from flotilla.errors import CLUSTER_UNREACHABLE, one_line

# A running call heartbeats at least this often (from the event loop), well inside the push
# queues' heartbeat timeout (``workflows.common.PUSH_HEARTBEAT``, 10 s): what is slow on a
# cluster (a render, a content fetch, an API call, a wait for a slot or a thread) never looks
# like a lost task.
# Why (issue 12): the server marks an activity task started when it hands it to a poll, and a
# hand-over that never reaches this process (a poll reply lost under load) is noticed only
# when its heartbeat timeout passes. With the deploy activities' own heartbeats (helm's,
# every 5 s, not while rendering or reading content) that timeout had to be 60 s, and each
# lost task held its bundle deployment for over a minute. This pulse is also the engine's
# (its own ``heartbeating`` sees it and starts no thread).
PULSE_SECONDS = 2.0

T = TypeVar("T")


class ReadyWait(Protocol):
    """A readiness wait, a look at a time (``activities.deploy.EngineWait``)."""

    def step(self) -> DeploymentStatus | None: ...
    def watch(self, seconds: float) -> bool: ...
    def next_poll(self) -> float: ...
    def close(self) -> None: ...


class DeployEngine(Protocol):
    """The deploy engine (``activities.deploy.DeployActivities``, or a stand-in), blocking."""

    def apply_bundle(self, request: DeployRequest) -> Applied: ...
    def open_wait(
        self, request: StatusRequest, timeout_seconds: float, *, applied_manifest: str | None
    ) -> ReadyWait: ...
    def check_deployment(self, request: StatusRequest) -> DeploymentStatus: ...
    def remove_deployment(self, request: RemoveRequest) -> RemoveResult: ...


class ClusterSlots:
    """At most ``per_cluster`` calls at once on one cluster (waiting on the event loop)."""

    def __init__(self, per_cluster: int) -> None:
        if per_cluster < 1:
            raise ValueError(f"per_cluster: {per_cluster!r} must be at least 1")
        self.per_cluster = per_cluster
        self._slots: dict[tuple[str, str], asyncio.Semaphore] = {}

    @asynccontextmanager
    async def hold(self, namespace: str, cluster: str) -> AsyncIterator[None]:
        slot = self._slots.get((namespace, cluster))
        if slot is None:
            slot = self._slots[namespace, cluster] = asyncio.Semaphore(self.per_cluster)
        async with slot:
            yield


@asynccontextmanager
async def pulse(every: float) -> AsyncIterator[None]:
    """Heartbeat every ``every`` seconds from the event loop while the block runs."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            activity.heartbeat()

    task = asyncio.create_task(beat())  # in the activity's context (a copy of it)
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


def _beat_from_threads(loop: asyncio.AbstractEventLoop) -> None:
    """In this (copied) context: ``activity.heartbeat`` safe to call from a pool thread, and
    the engine's ``heartbeating`` idle (the pulse beats for it).

    An async activity's heartbeat function must run on the event loop; the Temporal SDK
    hands threads of sync activities a wrapper that does that, and an async activity's
    context does not have one, so it is made here (the SDK's activity context is a dataclass,
    replaced with another heartbeat function: ``tests/unit/test_pushqueue.py`` and every real
    deploy through a worker catch an SDK change that breaks it)."""
    if not activity.in_activity():
        return  # called directly (tests, tools): nobody to tell
    current = temporalio.activity._Context.current()
    beat = current.heartbeat
    if beat is None:
        return
    owner = contextvars.copy_context()

    def heartbeat(*details: Any) -> None:
        with suppress(RuntimeError):  # the loop has closed: the worker is gone
            loop.call_soon_threadsafe(functools.partial(beat, *details), context=owner)

    temporalio.activity._Context.set(dataclasses.replace(current, heartbeat=heartbeat))
    beaten_for()


@contextmanager
def _named(namespace: str, cluster: str) -> Iterator[None]:
    """A ClusterUnreachable failure says which cluster, in one line; others pass unchanged.

    On a shared queue the cluster is no longer in the queue's name, and a person reading
    ``ErrApplied`` must see which cluster did not answer."""
    try:
        yield
    except ApplicationError as err:
        if err.type != CLUSTER_UNREACHABLE:
            raise
        detail = str(err.message).removeprefix("cluster unreachable").removeprefix(" ")
        raise ApplicationError(
            f"cluster {namespace}/{cluster} unreachable: {detail}",
            type=err.type,
            non_retryable=err.non_retryable,
            next_retry_delay=err.next_retry_delay,
            # Expected and handled, as the error it renames (activities/failures.py).
            category=err.category,
        ) from None


class PushDeployActivities:
    """The deploy activities under their own names, for the shared push queues."""

    def __init__(
        self, engine: DeployEngine, per_cluster: int, threads: int, watchers: int = 0
    ) -> None:
        """``threads`` for the engine's work (helm runs, API calls, looks at readiness);
        ``watchers`` for waits watching an object between looks (a thread blocked on a
        socket, no CPU, no helm child: one per deploy in flight); with none, or all busy, a
        wait polls on ``ReadinessWait``'s schedule instead."""
        if threads < 1:
            raise ValueError(f"threads: {threads!r} must be at least 1")
        self.engine = engine
        self.slots = ClusterSlots(per_cluster)
        self.pool = ThreadPoolExecutor(threads, "flotilla-cluster")
        self.watchers = asyncio.Semaphore(watchers) if watchers else None
        self.watch_pool = ThreadPoolExecutor(watchers, "flotilla-watch") if watchers else None

    def close(self) -> None:
        for pool in (self.pool, self.watch_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    async def in_thread(
        self,
        call: Callable[..., T],
        *args: Any,
        pool: ThreadPoolExecutor | None = None,
        **kwargs: Any,
    ) -> T:
        """``call`` on a thread of ``pool`` (the engine's, by default), in this activity's
        context; cancelled, it still waits for the thread (which sees
        ``activity.is_cancelled`` and ends soon), so the cluster's slot is not given to
        another call while this one still works on it."""
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        context.run(_beat_from_threads, loop)
        future = loop.run_in_executor(
            pool or self.pool, functools.partial(context.run, call, *args, **kwargs)
        )
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            with suppress(BaseException):
                await future
            raise

    @asynccontextmanager
    async def _on(self, namespace: str, cluster: str, *, beat: bool = True) -> AsyncIterator[None]:
        """In the cluster's slot, its failures named; with ``beat``, under a pulse of its
        own (started before the slot wait: a waiting call beats too)."""
        async with AsyncExitStack() as stack:
            if beat:
                await stack.enter_async_context(pulse(PULSE_SECONDS))
            await stack.enter_async_context(self.slots.hold(namespace, cluster))
            with _named(namespace, cluster):
                yield

    async def _wait(
        self, request: StatusRequest, timeout_seconds: float, manifest: str | None
    ) -> DeploymentStatus:
        """Look on an engine thread; between looks watch on a watcher thread, or (none
        free, or the cluster will not watch) sleep on the loop; until a status."""
        wait = await self.in_thread(
            self.engine.open_wait, request, timeout_seconds, applied_manifest=manifest
        )
        try:
            while (status := await self.in_thread(wait.step)) is None:
                if not await self._watch(wait):
                    await asyncio.sleep(wait.next_poll())
            return status
        finally:
            await self.in_thread(wait.close)

    async def _watch(self, wait: ReadyWait) -> bool:
        """Watch until the first waiting object changes or WATCH_SECONDS; False when no
        watcher is free or the wait cannot watch."""
        if self.watchers is None or self.watch_pool is None or self.watchers.locked():
            return False
        async with self.watchers:
            return await self.in_thread(wait.watch, WATCH_SECONDS, pool=self.watch_pool)

    @activity.defn(name=DEPLOY_BUNDLE)
    async def deploy_bundle(self, request: DeployRequest) -> DeployResult:
        """Apply on a thread; then, if asked, wait for Ready without holding one. A failure
        while waiting retries the whole activity, which is safe: the release is then
        already deployed, and the retry's apply is a no-op."""
        async with self._on(request.cluster_namespace, request.cluster_name):
            applied = await self.in_thread(self.engine.apply_bundle, request)
            result = applied.result
            if request.wait_ready_seconds > 0 and result.status is None:
                watched = StatusRequest.model_validate(
                    {**request.model_dump(), "release": result.release}
                )
                result.status = await self._wait(
                    watched, request.wait_ready_seconds, applied.manifest
                )
            return result

    @activity.defn(name=CHECK_DEPLOYMENT)
    async def check_deployment(self, request: StatusRequest) -> DeploymentStatus:
        async with self._on(request.cluster_namespace, request.cluster_name):
            return await self.in_thread(self.engine.check_deployment, request)

    @activity.defn(name=CHECK_DEPLOYMENTS)
    async def check_deployments(self, request: CheckBatchRequest) -> CheckBatchResult:
        """The checks one after another, each in its cluster's slot, under one heartbeat.

        A check that fails is named with its one-line error instead of failing the others:
        the workflow checks that cluster again on its own, so its retries and its ErrApplied
        are the single check's. Cancelled, the batch returns what it has checked so far."""
        done: list[BatchedCheck] = []
        try:
            async with pulse(PULSE_SECONDS):
                await self._check_each(request, done)
        except asyncio.CancelledError:
            if not activity.is_cancelled():
                raise  # not the activity's cancellation (the worker is stopping)
        return CheckBatchResult(checks=done)

    async def _check_each(self, request: CheckBatchRequest, done: list[BatchedCheck]) -> None:
        for check in request.checks:
            try:
                async with self._on(check.cluster_namespace, check.cluster_name, beat=False):
                    status = await self.in_thread(self.engine.check_deployment, check)
            except ActivityCancelled:
                break  # the engine saw the cancellation on its thread
            except Exception as err:  # any failure: named here, checked again alone
                message = err.message if isinstance(err, ApplicationError) else repr(err)
                done.append(BatchedCheck(cluster=check.cluster_name, error=one_line(message)))
                continue
            done.append(BatchedCheck(cluster=check.cluster_name, status=status))

    @activity.defn(name=WAIT_READY)
    async def wait_ready(self, request: WaitReadyRequest) -> DeploymentStatus:
        async with self._on(request.cluster_namespace, request.cluster_name):
            return await self._wait(request, request.timeout_seconds, None)

    @activity.defn(name=REMOVE_DEPLOYMENT)
    async def remove_deployment(self, request: RemoveRequest) -> RemoveResult:
        async with self._on(request.cluster_namespace, request.cluster_name):
            return await self.in_thread(self.engine.remove_deployment, request)
