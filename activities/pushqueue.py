"""Push-mode deploy activities on the shared push queues: a few at once per cluster, and an
unreachable cluster named in its one-line error.

All push-mode clusters share a small fixed set of queues (``flotilla.ids.push_task_queues``);
the cluster is named in each request. What one cluster's per-queue worker used to bound (tasks
at once per cluster) is a semaphore per cluster here, so one cluster with many bundles cannot
take every thread from the others, nor flood its own API server.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from activities.deploy_models import (
    CHECK_DEPLOYMENT,
    CHECK_DEPLOYMENTS,
    DEPLOY_BUNDLE,
    REMOVE_DEPLOYMENT,
    WAIT_READY,
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
from activities.liveness import heartbeating
from flotilla.errors import CLUSTER_UNREACHABLE, one_line

# A call waiting for its cluster's slot heartbeats this often, well inside the deploy
# activities' heartbeat timeout (10 s; Temporal sends one heartbeat per 8 s of it at most).
_SLOT_WAIT_SECONDS = 2.0
# A running call heartbeats at least this often (from a thread of its own), well inside the
# push queues' heartbeat timeout (``workflows.common.PUSH_HEARTBEAT``, 10 s): what is slow on
# a cluster (a render, a content fetch, an API call) never looks like a lost task.
# Why (issue 12): the server marks an activity task started when it hands it to a poll, and a
# hand-over that never reaches this process (a poll reply lost under load) is noticed only
# when its heartbeat timeout passes. With the deploy activities' own heartbeats (helm's,
# every 5 s, not while rendering or reading content) that timeout had to be 60 s, and each
# lost task held its bundle deployment for over a minute. This one thread per call is also
# the engine's (its own ``heartbeating`` sees it and starts no second thread).
PULSE_SECONDS = 2.0


class DeployEngine(Protocol):
    """The deploy activities (``activities.deploy.DeployActivities``, or a stand-in)."""

    def deploy_bundle(self, request: DeployRequest) -> DeployResult: ...
    def check_deployment(self, request: StatusRequest) -> DeploymentStatus: ...
    def wait_ready(self, request: WaitReadyRequest) -> DeploymentStatus: ...
    def remove_deployment(self, request: RemoveRequest) -> RemoveResult: ...


class ClusterSlots:
    """At most ``per_cluster`` calls at once on one cluster; a waiting call heartbeats."""

    def __init__(self, per_cluster: int) -> None:
        if per_cluster < 1:
            raise ValueError(f"per_cluster: {per_cluster!r} must be at least 1")
        self.per_cluster = per_cluster
        self._lock = threading.Lock()
        self._slots: dict[tuple[str, str], threading.BoundedSemaphore] = {}

    @contextmanager
    def hold(self, namespace: str, cluster: str) -> Iterator[None]:
        with self._lock:
            slot = self._slots.get((namespace, cluster))
            if slot is None:
                slot = self._slots[namespace, cluster] = threading.BoundedSemaphore(
                    self.per_cluster
                )
        while not slot.acquire(timeout=_SLOT_WAIT_SECONDS):
            activity.heartbeat(f"waiting for a slot on cluster {namespace}/{cluster}")
            if activity.is_cancelled():
                raise CancelledError(f"cancelled waiting for cluster {namespace}/{cluster}")
        try:
            yield
        finally:
            slot.release()


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

    def __init__(self, engine: DeployEngine, per_cluster: int) -> None:
        self.engine = engine
        self.slots = ClusterSlots(per_cluster)

    @contextmanager
    def _on(self, namespace: str, cluster: str) -> Iterator[None]:
        # The slot wait beats by itself; the pulse starts with the call's turn, so a waiting
        # call beats once per 2 s, not twice.
        with (
            self.slots.hold(namespace, cluster),
            heartbeating(PULSE_SECONDS),
            _named(namespace, cluster),
        ):
            yield

    @activity.defn(name=DEPLOY_BUNDLE)
    def deploy_bundle(self, request: DeployRequest) -> DeployResult:
        with self._on(request.cluster_namespace, request.cluster_name):
            return self.engine.deploy_bundle(request)

    @activity.defn(name=CHECK_DEPLOYMENT)
    def check_deployment(self, request: StatusRequest) -> DeploymentStatus:
        with self._on(request.cluster_namespace, request.cluster_name):
            return self.engine.check_deployment(request)

    @activity.defn(name=CHECK_DEPLOYMENTS)
    def check_deployments(self, request: CheckBatchRequest) -> CheckBatchResult:
        """The checks one after another, each in its cluster's slot, under one heartbeat.

        A check that fails is named with its one-line error instead of failing the others:
        the workflow checks that cluster again on its own, so its retries and its ErrApplied
        are the single check's. Cancelled, the batch returns what it has checked so far."""
        done: list[BatchedCheck] = []
        with heartbeating(PULSE_SECONDS):
            for check in request.checks:
                if activity.is_cancelled():
                    break
                try:
                    with self._on(check.cluster_namespace, check.cluster_name):
                        status = self.engine.check_deployment(check)
                except CancelledError:
                    break
                except Exception as err:  # any failure: named here, checked again alone
                    message = err.message if isinstance(err, ApplicationError) else repr(err)
                    done.append(BatchedCheck(cluster=check.cluster_name, error=one_line(message)))
                    continue
                done.append(BatchedCheck(cluster=check.cluster_name, status=status))
        return CheckBatchResult(checks=done)

    @activity.defn(name=WAIT_READY)
    def wait_ready(self, request: WaitReadyRequest) -> DeploymentStatus:
        with self._on(request.cluster_namespace, request.cluster_name):
            return self.engine.wait_ready(request)

    @activity.defn(name=REMOVE_DEPLOYMENT)
    def remove_deployment(self, request: RemoveRequest) -> RemoveResult:
        with self._on(request.cluster_namespace, request.cluster_name):
            return self.engine.remove_deployment(request)
