"""Retry policies, timeouts and the continue-as-new check shared by flotilla's workflows."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError

from flotilla.errors import NON_RETRYABLE_ERRORS
from flotilla.ids import notification_workflow_id
from flotilla.notifications import NotificationEvent
from workflows.notifications_models import NOTIFY_SIGNAL, NotifyRequest

# ---------------------------------------------------------------------------------------------
# Retry policies
# ---------------------------------------------------------------------------------------------

# Git servers and the content store: a few quick retries, then the next poll tries again.
GIT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=NON_RETRYABLE_ERRORS,
)
# ls-remote runs every pollingInterval, so the next poll is its retry: one quick second try
# for a blip, then the GitRepo shows the error within seconds instead of after 15 s of backoff.
LS_REMOTE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_attempts=2,
    non_retryable_error_types=NON_RETRYABLE_ERRORS,
)
# A poll's fetch_bundles likewise: the next poll fetches again while the new commit is not
# read, so its error (the git server, the content store down) shows after one quick retry,
# not after GIT_RETRY's 15 s of backoff on top of the attempts. A rollback's fetch, which no
# poll repeats, keeps GIT_RETRY.
POLL_FETCH_RETRY = LS_REMOTE_RETRY

# Talking to the Temporal frontend from an activity (signal-with-start of bundle workflows).
CLIENT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
)

# Deploying to a cluster: a failed apply is retried a few times inside the activity's retry
# policy, then the workflow records ErrApplied and tries again on its own schedule.
DEPLOY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=3,
    non_retryable_error_types=NON_RETRYABLE_ERRORS,
)

# Syncing image-policy schedules (a shallow fetch plus Temporal schedule calls): a few quick
# retries; after that the GitRepo shows a warning and tries again at its next poll.
SCHEDULE_SYNC_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=3,
    non_retryable_error_types=NON_RETRYABLE_ERRORS,
)

# Content garbage collection: a sweep that failed part-way is safe to run again.
CONTENT_GC_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=10),
    maximum_attempts=3,
    non_retryable_error_types=NON_RETRYABLE_ERRORS,
)

# The registry's snapshot in the content store (store, load, split): a few quick retries;
# after that the registry sends the snapshot inline, a bundle keeps what it had.
SNAPSHOT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=3,
    non_retryable_error_types=NON_RETRYABLE_ERRORS,
)

# Pure planning from the content store: deterministic, so one retry for a flaky disk at most.
PLAN_RETRY = RetryPolicy(maximum_attempts=2, non_retryable_error_types=NON_RETRYABLE_ERRORS)

# ---------------------------------------------------------------------------------------------
# Timeouts
# ---------------------------------------------------------------------------------------------

LS_REMOTE_TIMEOUT = timedelta(seconds=60)
FETCH_TIMEOUT = timedelta(minutes=10)
# fetch_bundles beats every second from a helper thread (activities.liveness), so a lost
# attempt (a task handed to a poll whose reply never arrived, a worker killed) is retried
# after 10 s rather than 30 (issue 10's registry-down drill once waited that long).
FETCH_HEARTBEAT = timedelta(seconds=10)
PLAN_TIMEOUT = timedelta(minutes=2)
SNAPSHOT_TIMEOUT = timedelta(minutes=1)
SYNC_BUNDLES_TIMEOUT = timedelta(minutes=2)
SCHEDULE_SYNC_TIMEOUT = timedelta(minutes=5)
DEPLOY_TIMEOUT = timedelta(minutes=10)
# The deploy activities heartbeat every second from a helper thread while they run
# (activities/liveness.py), so a worker killed mid-deploy is noticed within this and the
# deploy is retried on a live worker: a crash stalls a cluster for seconds, not a minute.
DEPLOY_HEARTBEAT = timedelta(seconds=10)
WAIT_READY_TIMEOUT = timedelta(minutes=15)
WAIT_READY_HEARTBEAT = timedelta(seconds=10)
# Every activity on the shared push queues: the worker's wrapper heartbeats every 2 s while
# a call runs (activities.pushqueue.PULSE_SECONDS), so a task the server handed to a poll that
# never reached the worker is tried again after this, not after 60 s (issue 12: one commit in
# two of bench_gitops 10x10 took 64-74 s instead of 8-17 s, for that reason alone), and a
# killed worker's deploy is retried as soon (issue 14's crash recovery).
PUSH_HEARTBEAT = timedelta(seconds=10)
REMOVE_TIMEOUT = timedelta(minutes=5)
CHECK_TIMEOUT = timedelta(minutes=2)
# A settled bundle's periodic drift checks on push-mode clusters go this many to an activity
# (``check_deployments``), one after another: a check's own cost is its cluster's API calls,
# but each activity also costs a workflow task, history events and a dispatch, which for one
# check each was most of an idle fleet's CPU (issue 12). A batch may take this long.
CHECK_BATCH = 20
CHECK_BATCH_TIMEOUT = timedelta(minutes=10)
CONTENT_GC_TIMEOUT = timedelta(hours=1)
CONTENT_GC_HEARTBEAT = timedelta(minutes=2)
# A settled bundle checks its deployments for drift this often.
MONITOR_INTERVAL = timedelta(minutes=5)
# How often a bundle with downstreamResources reads their digest to see them change (Fleet's
# default polling interval: a changed ConfigMap or Secret is deployed about as soon as a commit).
DOWNSTREAM_POLL_INTERVAL = timedelta(seconds=15)
# The object watcher heartbeats every second; missing this long, its worker is gone and the
# watch starts again on another.
WATCH_OBJECTS_HEARTBEAT = timedelta(seconds=30)
# A watcher that cannot reach its cluster (or lost its worker) starts again, backing off to
# this; it never gives up while the cluster is registered.
WATCH_OBJECTS_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
# A cluster whose queue nobody polls for this long is shown as offline instead of stalling.
CLUSTER_SCHEDULE_TO_START = timedelta(minutes=2)
# Agent queues since patch f13-agent-queues-wait: not an offline detector (heartbeats are), only
# a backstop so a call queued for an agent that never comes back cannot keep the bundle's
# continue-as-new and retirement (which wait for calls in flight) waiting for ever.
AGENT_QUEUE_BACKSTOP = timedelta(minutes=30)
# Temporal allows a workflow at most 2,000 pending activities; a bundle keeps well below.
MAX_PENDING_ACTIVITIES = 1000
# A bundle in the middle of a rollout reports to its GitRepo at most this often (a settled
# one at once). Each report costs the bundle's history about six events (upsert, signal and
# its result, a workflow task).
REPORT_INTERVAL = timedelta(seconds=10)


# ---------------------------------------------------------------------------------------------
# Entity workflows
# ---------------------------------------------------------------------------------------------


# A bundle or GitRepo run continues as new once its history grew this many bytes past its
# start, well before Temporal suggests it (4 MB on its default configuration). A history is
# replayed whole whenever its run leaves a worker's cache (a restart, a failed or timed-out
# task, a query on an evicted run), in one workflow task that must finish within the task
# timeout: 1-3 MB histories of 500-cluster bundles took longer than that on a busy 2-core
# worker, so every retry replayed again and they never settled (bench/RESULTS.md, "a
# workflow-task retry storm"). Counted from the run's start, so a run whose input alone is
# large (a registry's state at 10,000 clusters is about 1 MB) does not continue as new at
# once, again and again. Asked only when a history has grown past it, so shorter runs carry
# no marker.
CONTINUE_AS_NEW_BYTES = 1_000_000
CONTINUE_AS_NEW_BYTES_PATCH = "continue-as-new-by-history-bytes"


def history_growth(start_bytes: int, max_history_bytes: int | None) -> float:
    """How far a run's history has grown past ``start_bytes`` (its size when the run
    started), as a share of its byte bound: ``max_history_bytes`` (a test switch), or
    ``CONTINUE_AS_NEW_BYTES`` when None. Call it from workflow code."""
    limit = CONTINUE_AS_NEW_BYTES if max_history_bytes is None else max_history_bytes
    return (workflow.info().get_current_history_size() - start_bytes) / limit


def continue_as_new_due(
    max_history_events: int | None,
    *,
    start_bytes: int | None = None,
    max_history_bytes: int | None = None,
) -> bool:
    """Whether a long-running workflow should continue as new now: Temporal suggests it, it
    reached the test switch ``max_history_events``, or (for a caller that passes the history
    size its run started at, ``start_bytes``) its history grew ``max_history_bytes`` (a test
    switch; ``CONTINUE_AS_NEW_BYTES`` when None) past that. Call it from workflow code."""
    info = workflow.info()
    if max_history_events is not None and info.get_current_history_length() >= max_history_events:
        return True
    if start_bytes is not None:
        grown = history_growth(start_bytes, max_history_bytes)
        if grown >= 1 and workflow.patched(CONTINUE_AS_NEW_BYTES_PATCH):
            return True
    return info.is_continue_as_new_suggested()


# Image-policy runs signal their events only when the namespace has a notification config:
# the GitRepo passes its registry snapshot's flag into the schedules (ImagePolicyConfig.notify).
IMAGE_NOTIFY_CONFIGURED_PATCH = "f15-image-notify-only-when-configured"


async def send_notification_events(namespace: str, events: list[NotificationEvent]) -> None:
    """Signal ``events`` to ``notifications/<namespace>``, never waiting for a delivery; a
    namespace without that workflow drops them (the signal fails)."""
    handle = workflow.get_external_workflow_handle(notification_workflow_id(namespace))
    with contextlib.suppress(FailureError):
        await handle.signal(NOTIFY_SIGNAL, NotifyRequest(events=events))
