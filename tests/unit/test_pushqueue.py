"""The shared push queues: routing by cluster mode, the per-cluster limit, waits for Ready
that hold no thread, and an unreachable cluster named in its one-line error (no Temporal
server: the activities run in the SDK's ActivityEnvironment).

The same paths with a real worker and a real unreachable cluster:
tests/workflows/test_gitrepo.py (``test_cluster_groups_target_and_unreachable_...``); every
push-mode deploy of the e2e tests runs the real engine through this wrapper."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import pushqueue
from activities.deploy_models import (
    Applied,
    CheckBatchRequest,
    DeploymentStatus,
    DeployRequest,
    DeployResult,
    RemoveRequest,
    RemoveResult,
    StatusRequest,
)
from activities.liveness import heartbeating
from activities.pushqueue import ClusterSlots, PushDeployActivities, ReadyWait
from flotilla.errors import CLUSTER_UNREACHABLE
from flotilla.ids import (
    PUSH_TASK_QUEUES,
    cluster_task_queue,
    deploy_task_queue,
    push_task_queues,
)


def test_push_mode_clusters_share_a_fixed_set_of_queues_agents_keep_their_own() -> None:
    queues = {deploy_task_queue("q", "ns", f"c{i}", agent=False) for i in range(1000)}
    assert queues == set(push_task_queues("q")) and len(queues) == PUSH_TASK_QUEUES
    assert deploy_task_queue("q", "ns", "c1", agent=True) == cluster_task_queue("ns", "c1")
    # Stable: the same cluster always lands on the same queue (replay depends on it).
    assert len({deploy_task_queue("q", "ns", "c1", agent=False) for _ in range(5)}) == 1


def _request(cluster: str) -> DeployRequest:
    return DeployRequest(
        gitrepo="repo",
        bundle_name="app",
        cluster_namespace="ns",
        cluster_name=cluster,
        deployment_id="s-1",
        bundle_digest="b",
        options_digest="o",
    )


class Unreachable:
    def apply_bundle(self, request: DeployRequest) -> Applied:
        raise ApplicationError(
            "cluster unreachable at https://127.0.0.1:1: connection refused",
            type=CLUSTER_UNREACHABLE,
        )

    def open_wait(
        self, request: StatusRequest, timeout_seconds: float, *, applied_manifest: str | None
    ) -> ReadyWait:
        raise NotImplementedError

    def check_deployment(self, request: StatusRequest) -> DeploymentStatus:
        raise ApplicationError("helm: boom", type="HelmError", non_retryable=True)

    def remove_deployment(self, request: RemoveRequest) -> RemoveResult:
        raise NotImplementedError


def _status_request(cluster: str) -> StatusRequest:
    return StatusRequest.model_validate(
        {**_request(cluster).model_dump(), "release": {"name": "app", "namespace": "ns"}}
    )


def _push(engine: object, per_cluster: int = 1, threads: int = 4) -> PushDeployActivities:
    return PushDeployActivities(engine, per_cluster=per_cluster, threads=threads)  # type: ignore[arg-type]


async def test_an_unreachable_cluster_is_named_and_stays_retryable() -> None:
    push = _push(Unreachable())
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(push.deploy_bundle, _request("c1"))
    err = caught.value
    assert err.message == "cluster ns/c1 unreachable: at https://127.0.0.1:1: connection refused"
    assert err.type == CLUSTER_UNREACHABLE and not err.non_retryable


async def test_other_failures_pass_unchanged() -> None:
    push = _push(Unreachable())
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(push.check_deployment, _status_request("c1"))
    assert caught.value.message == "helm: boom" and caught.value.non_retryable


class SomeUnreachable(Unreachable):
    """Checks answer Ready, except on the clusters named: unreachable, or a plain bug."""

    def __init__(self, unreachable: str, broken: str) -> None:
        self.unreachable, self.broken = unreachable, broken

    def check_deployment(self, request: StatusRequest) -> DeploymentStatus:
        if request.cluster_name == self.unreachable:
            raise ApplicationError(
                "cluster unreachable at https://127.0.0.1:1", type=CLUSTER_UNREACHABLE
            )
        if request.cluster_name == self.broken:
            raise KeyError("manifest")
        return DeploymentStatus(release=request.release, ready=True)


async def test_a_batch_of_checks_names_each_failed_one_and_checks_the_rest() -> None:
    push = _push(SomeUnreachable("c2", "c3"))
    checks = [_status_request(c) for c in ("c1", "c2", "c3", "c4")]
    result = await ActivityEnvironment().run(
        push.check_deployments, CheckBatchRequest(checks=checks)
    )
    assert [c.cluster for c in result.checks] == ["c1", "c2", "c3", "c4"]
    assert [c.status is not None and c.status.ready for c in result.checks] == [
        True,
        False,
        False,
        True,
    ]
    assert result.checks[1].error == "cluster ns/c2 unreachable: at https://127.0.0.1:1"
    assert result.checks[2].error == "KeyError('manifest')"


async def test_one_cluster_runs_at_most_per_cluster_calls_at_once_others_are_not_held() -> None:
    slots = ClusterSlots(per_cluster=2)
    running: dict[str, int] = {"a": 0, "b": 0}
    most: dict[str, int] = {"a": 0, "b": 0}

    async def call(cluster: str) -> None:
        async with slots.hold("ns", cluster):
            running[cluster] += 1
            most[cluster] = max(most[cluster], running[cluster])
            await asyncio.sleep(0.05)
            running[cluster] -= 1

    await asyncio.gather(*(call(c) for c in "aaaaab"))
    assert most == {"a": 2, "b": 1}


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="per_cluster: 0 must be at least 1"):
        ClusterSlots(per_cluster=0)
    with pytest.raises(ValueError, match="threads: 0 must be at least 1"):
        PushDeployActivities(Unreachable(), per_cluster=1, threads=0)  # type: ignore[arg-type]


async def test_a_running_call_heartbeats_steadily_so_a_short_heartbeat_timeout_is_safe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The push queues' short heartbeat timeout (issue 12) relies on this pulse: an engine
    call that is slow without heartbeating itself (rendering, reading content) still beats."""
    monkeypatch.setattr(pushqueue, "PULSE_SECONDS", 0.05)
    beats: list[float] = []

    class Slow(Unreachable):
        def check_deployment(self, request: StatusRequest) -> DeploymentStatus:
            time.sleep(0.5)
            return DeploymentStatus(release=request.release, ready=True)

    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(time.monotonic())
    assert (await env.run(_push(Slow()).check_deployment, _status_request("c1"))).ready
    assert len(beats) >= 5, beats
    count = len(beats)
    await asyncio.sleep(0.2)
    assert len(beats) == count  # the pulse stops with the call


async def test_the_engine_heartbeats_from_its_thread_onto_the_loop_and_starts_no_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An async activity's heartbeat must run on the event loop; the engine calls it from a
    pool thread (helm's progress), and its own ``heartbeating`` must start no second thread
    (the wrapper's pulse beats for it)."""
    monkeypatch.setattr(pushqueue, "PULSE_SECONDS", 60)  # only the engine's own beats here
    beats: list[tuple[tuple[object, ...], str]] = []
    extra_threads: list[int] = []

    class BeatsItself(Unreachable):
        def check_deployment(self, request: StatusRequest) -> DeploymentStatus:
            with heartbeating(every=0.05):
                activity.heartbeat("helm: installing")
                time.sleep(0.2)
                extra_threads.append(
                    sum(t.name == "heartbeat" for t in threading.enumerate())  # liveness's
                )
            return DeploymentStatus(release=request.release, ready=True)

    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append((details, threading.current_thread().name))
    assert (await env.run(_push(BeatsItself()).check_deployment, _status_request("c1"))).ready
    assert extra_threads == [0]
    assert beats == [(("helm: installing",), threading.main_thread().name)]
    # Alone (the agent runs the engine without the wrapper) it beats with a thread of its own.
    assert env.run(BeatsItself().check_deployment, _status_request("c1")).ready
    assert extra_threads == [0, 1]


class WaitForAll(Unreachable):
    """Releases that turn Ready only once ``expected`` waits have begun: with one thread, a
    wait that held it would let no other begin (and time out NotReady)."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.applied = 0
        self.opened = 0
        self.threads: set[str] = set()
        self.closed = 0

    def apply_bundle(self, request: DeployRequest) -> Applied:
        self.threads.add(threading.current_thread().name)
        self.applied += 1
        result = DeployResult(
            release={"name": "app", "namespace": "ns"},  # type: ignore[arg-type]
            deployment_id=request.deployment_id,
            changed=True,
            action="install",
            reason="test",
        )
        return Applied(result=result, manifest="applied")

    def open_wait(
        self, request: StatusRequest, timeout_seconds: float, *, applied_manifest: str | None
    ) -> ReadyWait:
        engine = self
        assert applied_manifest == "applied"
        self.opened += 1
        deadline = time.monotonic() + timeout_seconds

        class Wait:
            def step(self) -> DeploymentStatus | None:
                ready = engine.opened >= engine.expected
                if not ready and time.monotonic() < deadline:
                    return None
                return DeploymentStatus(release=request.release, ready=ready)

            def watch(self, seconds: float) -> bool:
                return False  # cannot watch: polls

            def next_poll(self) -> float:
                return 0.02

            def close(self) -> None:
                engine.closed += 1

        return Wait()


async def test_a_wait_for_ready_holds_no_thread() -> None:
    engine = WaitForAll(expected=6)
    push = _push(engine, per_cluster=1, threads=1)
    env = ActivityEnvironment()
    tasks = []
    for i in range(6):
        request = _request(f"c{i}").model_copy(update={"wait_ready_seconds": 3.0})
        tasks.append(asyncio.create_task(env.run(push.deploy_bundle, request)))
        # The next deploy starts once this one waits: a wait holding the only thread would
        # keep the next apply from running at all.
        deadline = time.monotonic() + 2.0
        while engine.opened <= i and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert engine.opened == i + 1, f"deploy {i + 1} never began its wait"
    results = await asyncio.gather(*tasks)
    assert [r.status is not None and r.status.ready for r in results] == [True] * 6
    assert engine.closed == 6 and len(engine.threads) == 1
    push.close()


async def test_a_cancelled_wait_ends_and_lets_go_of_its_cluster_client() -> None:
    engine = WaitForAll(expected=2)  # never: one deploy only
    push = _push(engine)
    env = ActivityEnvironment()
    request = _request("c1").model_copy(update={"wait_ready_seconds": 30.0})
    task = asyncio.create_task(env.run(push.deploy_bundle, request))
    while engine.applied < 1:
        await asyncio.sleep(0.01)
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.closed == 1
    push.close()


class Watched(WaitForAll):
    """Ready after one watch; records the threads the watches ran on."""

    def __init__(self) -> None:
        super().__init__(expected=1)
        self.watch_threads: list[str] = []

    def open_wait(
        self, request: StatusRequest, timeout_seconds: float, *, applied_manifest: str | None
    ) -> ReadyWait:
        engine = self
        watched: list[bool] = []
        deadline = time.monotonic() + timeout_seconds

        class Wait:
            def step(self) -> DeploymentStatus | None:
                if watched or time.monotonic() >= deadline:
                    return DeploymentStatus(release=request.release, ready=bool(watched))
                return None

            def watch(self, seconds: float) -> bool:
                engine.watch_threads.append(threading.current_thread().name)
                watched.append(True)
                return True

            def next_poll(self) -> float:
                return 0.02

            def close(self) -> None:
                engine.closed += 1

        return Wait()


async def test_a_wait_watches_on_a_watcher_thread_or_polls_without_one() -> None:
    request = _request("c1").model_copy(update={"wait_ready_seconds": 3.0})
    engine = Watched()
    push = PushDeployActivities(engine, per_cluster=1, threads=1, watchers=1)  # type: ignore[arg-type]
    result = await ActivityEnvironment().run(push.deploy_bundle, request)
    assert result.status is not None and result.status.ready
    assert [name.startswith("flotilla-watch") for name in engine.watch_threads] == [True]
    push.close()
    # No watcher: the wait polls (and never watches) until its deadline says NotReady.
    engine = Watched()
    push = PushDeployActivities(engine, per_cluster=1, threads=1, watchers=0)  # type: ignore[arg-type]
    request = request.model_copy(update={"wait_ready_seconds": 0.2})
    result = await ActivityEnvironment().run(push.deploy_bundle, request)
    assert result.status is not None and not result.status.ready
    assert engine.watch_threads == [] and engine.closed == 1
    push.close()


async def test_a_cancelled_batch_of_checks_returns_what_it_checked() -> None:
    checked: list[str] = []

    class Slow(Unreachable):
        def check_deployment(self, request: StatusRequest) -> DeploymentStatus:
            time.sleep(0.1)
            checked.append(request.cluster_name)
            return DeploymentStatus(release=request.release, ready=True)

    push = _push(Slow())
    env = ActivityEnvironment()
    batch = CheckBatchRequest(checks=[_status_request(f"c{i}") for i in range(20)])
    task = asyncio.create_task(env.run(push.check_deployments, batch))
    while len(checked) < 2:
        await asyncio.sleep(0.01)
    env.cancel()
    result = await task
    # What was checked before the cancellation is reported; the check running when it came
    # finishes on its thread (a thread cannot be stopped) unreported, and none starts after.
    await asyncio.sleep(0.3)
    assert [c.cluster for c in result.checks] == checked[: len(result.checks)]
    assert len(result.checks) >= 2 and len(checked) - len(result.checks) <= 1
    push.close()
