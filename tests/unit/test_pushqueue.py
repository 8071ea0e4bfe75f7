"""The shared push queues: routing by cluster mode, the per-cluster limit, and an unreachable
cluster named in its one-line error (no Temporal server: the activities are called directly).

The same paths with a real worker and a real unreachable cluster:
tests/workflows/test_gitrepo.py (``test_cluster_groups_target_and_unreachable_...``)."""

from __future__ import annotations

import threading
import time

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import pushqueue
from activities.deploy_models import (
    CheckBatchRequest,
    DeploymentStatus,
    DeployRequest,
    DeployResult,
    RemoveRequest,
    RemoveResult,
    StatusRequest,
    WaitReadyRequest,
)
from activities.liveness import heartbeating
from activities.pushqueue import ClusterSlots, PushDeployActivities
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
    def deploy_bundle(self, request: DeployRequest) -> DeployResult:
        raise ApplicationError(
            "cluster unreachable at https://127.0.0.1:1: connection refused",
            type=CLUSTER_UNREACHABLE,
        )

    def check_deployment(self, request: StatusRequest) -> DeploymentStatus:
        raise ApplicationError("helm: boom", type="HelmError", non_retryable=True)

    def wait_ready(self, request: WaitReadyRequest) -> DeploymentStatus:
        raise NotImplementedError

    def remove_deployment(self, request: RemoveRequest) -> RemoveResult:
        raise NotImplementedError


def test_an_unreachable_cluster_is_named_and_stays_retryable() -> None:
    push = PushDeployActivities(Unreachable(), per_cluster=1)
    with pytest.raises(ApplicationError) as caught:
        push.deploy_bundle(_request("c1"))
    err = caught.value
    assert err.message == "cluster ns/c1 unreachable: at https://127.0.0.1:1: connection refused"
    assert err.type == CLUSTER_UNREACHABLE and not err.non_retryable


def test_other_failures_pass_unchanged() -> None:
    push = PushDeployActivities(Unreachable(), per_cluster=1)
    request = StatusRequest.model_validate(
        {**_request("c1").model_dump(), "release": {"name": "app", "namespace": "ns"}}
    )
    with pytest.raises(ApplicationError) as caught:
        push.check_deployment(request)
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


def test_a_batch_of_checks_names_each_failed_one_and_checks_the_rest() -> None:
    push = PushDeployActivities(SomeUnreachable("c2", "c3"), per_cluster=1)
    checks = [
        StatusRequest.model_validate(
            {**_request(c).model_dump(), "release": {"name": "app", "namespace": "ns"}}
        )
        for c in ("c1", "c2", "c3", "c4")
    ]
    result = ActivityEnvironment().run(push.check_deployments, CheckBatchRequest(checks=checks))
    assert [c.cluster for c in result.checks] == ["c1", "c2", "c3", "c4"]
    assert [c.status is not None and c.status.ready for c in result.checks] == [
        True,
        False,
        False,
        True,
    ]
    assert result.checks[1].error == "cluster ns/c2 unreachable: at https://127.0.0.1:1"
    assert result.checks[2].error == "KeyError('manifest')"


def test_one_cluster_runs_at_most_per_cluster_calls_at_once_others_are_not_held() -> None:
    slots = ClusterSlots(per_cluster=2)
    running: dict[str, int] = {"a": 0, "b": 0}
    most: dict[str, int] = {"a": 0, "b": 0}
    lock = threading.Lock()

    def call(cluster: str) -> None:
        with slots.hold("ns", cluster):
            with lock:
                running[cluster] += 1
                most[cluster] = max(most[cluster], running[cluster])
            time.sleep(0.05)
            with lock:
                running[cluster] -= 1

    threads = [threading.Thread(target=call, args=(c,)) for c in "aaaaab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == {"a": 2, "b": 1}


def test_a_per_cluster_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="per_cluster: 0 must be at least 1"):
        ClusterSlots(per_cluster=0)


def test_a_running_call_heartbeats_steadily_so_a_short_heartbeat_timeout_is_safe(
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

    request = StatusRequest.model_validate(
        {**_request("c1").model_dump(), "release": {"name": "app", "namespace": "ns"}}
    )
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(time.monotonic())
    push = PushDeployActivities(Slow(), per_cluster=1)
    assert env.run(push.check_deployment, request).ready
    assert len(beats) >= 5, beats
    count = len(beats)
    time.sleep(0.2)
    assert len(beats) == count  # the pulse stops with the call


def test_an_engine_that_heartbeats_itself_adds_no_second_beating_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deploy engine keeps a helper thread beating (``activities.liveness``), and so does
    the push queues' wrapper around it: one thread per call, not two, and it still beats."""
    monkeypatch.setattr(pushqueue, "PULSE_SECONDS", 0.05)
    beats: list[float] = []
    beating: list[int] = []

    class BeatsItself(Unreachable):
        def check_deployment(self, request: StatusRequest) -> DeploymentStatus:
            with heartbeating(every=0.05):
                time.sleep(0.4)
                beating.append(threading.active_count() - before)
            return DeploymentStatus(release=request.release, ready=True)

    request = StatusRequest.model_validate(
        {**_request("c1").model_dump(), "release": {"name": "app", "namespace": "ns"}}
    )
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(time.monotonic())
    push = PushDeployActivities(BeatsItself(), per_cluster=1)
    before = threading.active_count()
    assert env.run(push.check_deployment, request).ready
    assert beating == [1]
    assert len(beats) >= 4, beats
    # Alone (the agent runs the engine without the wrapper) it beats with a thread of its own.
    assert env.run(BeatsItself().check_deployment, request).ready
    assert beating == [1, 1]
