"""NotificationWorkflow: a namespace's Providers and Alerts, and one delivery queue per provider.

``notifications/<namespace>`` is an entity workflow. ``flotilla apply -f`` hands it Providers
and Alerts (update-with-start); GitRepos and image-policy runs signal it their events. Each
event an Alert wants becomes one message per provider, with a deduplication key, queued for
that provider; one workflow-side task per provider delivers its queue in order, one
``deliver_notification`` activity at a time, retried until the receiver answers. So a
receiver that is down holds only its own messages, nothing ever waits on a receiver in a
GitRepo or bundle workflow, and a delivered message is never sent again after a replay (its
activity completed in history). A dependency wait is told only when it lasts the Alert's
``dependencyWait``: a durable timer here, cancelled by the event that ends the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.notify_models import (
        DELIVER_NOTIFICATION,
        DELIVER_NOTIFICATIONS,
        RECEIVER_REFUSED,
        DeliverBatchRequest,
        DeliverBatchResult,
        DeliverRequest,
        DeliverResult,
        Message,
    )
    from flotilla.errors import INVALID_SPEC, NON_RETRYABLE_ERRORS, FlotillaError, cause_message
    from flotilla.kubenames import name_problem
    from flotilla.notifications import (
        EventKind,
        NotificationEvent,
        ProviderSpec,
        alert_wants,
        delivery_key,
    )
    from workflows.common import continue_as_new_due
    from workflows.notifications_models import (
        APPLY_NOTIFICATION_UPDATE,
        DELETE_NOTIFICATION_UPDATE,
        NOTIFICATION_STATUS_QUERY,
        NOTIFICATION_WORKFLOW,
        NOTIFY_SIGNAL,
        ApplyNotificationRequest,
        ApplyNotificationResult,
        DeleteNotificationRequest,
        NotificationState,
        NotificationStatus,
        NotificationStatusRequest,
        NotifyRequest,
        Outgoing,
        PendingWait,
        ProviderStatus,
    )
    from workflows.visibility import KIND

# Delivering a notification: retried until the receiver answers (a receiver that is down
# holds only its own provider's queue), unless it refused the message for good.
DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=20),
    non_retryable_error_types=[*NON_RETRYABLE_ERRORS, RECEIVER_REFUSED],
)
# One POST (10 s) and a secret read; a worker that dies mid-delivery is retried after this.
DELIVERY_TIMEOUT = timedelta(seconds=20)
# A provider whose receiver stays down keeps at most this many messages; newer ones are
# dropped (and counted) rather than growing the state handed to continue-as-new without end.
MAX_QUEUED = 1000
# A provider's queue goes out up to this many messages per activity, in order over one
# connection, progress heartbeated: a flood drains at the receiver's pace instead of one
# activity (and workflow task) per message.
BATCH = 50
BATCH_HEARTBEAT = timedelta(seconds=15)
# One POST takes at most 10 s; a batch whose worker dies is retried after BATCH_HEARTBEAT.
BATCH_TIMEOUT = timedelta(seconds=10 * BATCH + 60)
# Deliveries of a queue with several messages go in batches (a new activity: older
# histories delivered each message on its own).
BATCHES_PATCH = "closers-notifications-delivered-in-batches"


@workflow.defn(name=NOTIFICATION_WORKFLOW)
class NotificationWorkflow:
    """``notifications/<namespace>``: Alerts matched to events, delivered per provider."""

    @workflow.init
    def __init__(self, state: NotificationState) -> None:
        self.state = state
        self._wake = False
        self._stopping = False
        self._draining: dict[str, asyncio.Task[None]] = {}
        # How many head messages of each queue an activity is delivering now.
        self._in_flight: dict[str, int] = {}
        # The keys in each queue, so a flood of events is matched in linear time.
        self._queued: dict[str, set[str]] = {
            name: {item.key for item in queue} for name, queue in state.outbox.items()
        }

    @workflow.run
    async def run(self, state: NotificationState) -> None:
        workflow.upsert_search_attributes([KIND.value_set("Notifications")])
        while True:
            self._release_waits()
            for name in sorted(self.state.outbox):
                if self.state.outbox[name] and name not in self._draining:
                    self._draining[name] = asyncio.create_task(self._drain(name))
            if continue_as_new_due(self.state.max_history_events):
                # Deliveries in flight finish first (their queues stop after them), so no
                # message is both in history and in the next run's outbox.
                self._stopping = True
                await workflow.wait_condition(
                    lambda: not self._draining and workflow.all_handlers_finished()
                )
                workflow.continue_as_new(self.state)
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(lambda: self._wake, timeout=self._next_due())
            self._wake = False

    # --- handlers -----------------------------------------------------------------------------

    @workflow.update(name=APPLY_NOTIFICATION_UPDATE)
    def apply_notification(self, request: ApplyNotificationRequest) -> ApplyNotificationResult:
        if request.provider is not None:
            verb = "updated" if request.name in self.state.providers else "created"
            self.state.providers[request.name] = request.provider
            return ApplyNotificationResult(message=f"provider {request.name} {verb}")
        assert request.alert is not None  # the validator saw to it
        verb = "updated" if request.name in self.state.alerts else "created"
        self.state.alerts[request.name] = request.alert
        return ApplyNotificationResult(message=f"alert {request.name} {verb}")

    @apply_notification.validator
    def _validate_apply(self, request: ApplyNotificationRequest) -> None:
        kind = "provider" if request.provider is not None else "alert"
        problem = name_problem(request.name)
        if (request.provider is None) == (request.alert is None):
            problem = "give exactly one of a provider and an alert"
        elif request.alert is not None:
            wanted = request.alert.provider_ref.name
            if wanted not in self.state.providers:
                problem = (
                    f"spec.providerRef.name: {wanted!r} is not a Provider of namespace "
                    f"{self.state.namespace!r} (apply the Provider first)"
                )
            try:
                request.alert.dependency_wait_seconds  # noqa: B018 - parses, or raises
            except FlotillaError as err:
                problem = str(err)
        if problem:
            raise ApplicationError(
                f"{kind} {request.name}: {problem}", type=INVALID_SPEC, non_retryable=True
            )

    @workflow.update(name=DELETE_NOTIFICATION_UPDATE)
    def delete_notification(self, request: DeleteNotificationRequest) -> ApplyNotificationResult:
        if request.kind == "alert":
            del self.state.alerts[request.name]
            return ApplyNotificationResult(message=f"alert {request.name} deleted")
        del self.state.providers[request.name]
        # Its queued messages go with it (counted as dropped); one in flight finishes.
        queue = self.state.outbox.get(request.name, [])
        kept = queue[: self._in_flight.get(request.name, 0)]
        dropped = len(queue) - len(kept)
        del queue[len(kept) :]
        self._queued[request.name] = {item.key for item in kept}
        self.state.waits = [w for w in self.state.waits if w.provider != request.name]
        if dropped:
            self.state.dropped[request.name] = self.state.dropped.get(request.name, 0) + dropped
        return ApplyNotificationResult(
            message=f"provider {request.name} deleted ({dropped} queued message(s) dropped)"
        )

    @delete_notification.validator
    def _validate_delete(self, request: DeleteNotificationRequest) -> None:
        known = self.state.alerts if request.kind == "alert" else self.state.providers
        problem = ""
        if request.name not in known:
            problem = (
                f"{request.kind} {request.name!r} does not exist in namespace "
                f"{self.state.namespace!r} (there are: {', '.join(sorted(known)) or 'none'})"
            )
        elif request.kind == "provider":
            users = sorted(
                name
                for name, alert in self.state.alerts.items()
                if alert.provider_ref.name == request.name
            )
            if users:
                problem = (
                    f"provider {request.name} is used by alert(s) {', '.join(users)}: "
                    "delete or re-point them first"
                )
        if problem:
            raise ApplicationError(problem, type=INVALID_SPEC, non_retryable=True)

    @workflow.signal(name=NOTIFY_SIGNAL)
    def notify(self, request: NotifyRequest) -> None:
        for event in request.events:
            if event.kind is EventKind.WAITING_FOR_DEPENDENCY and event.ended:
                self.state.waits = [w for w in self.state.waits if not _same_wait(w.event, event)]
                continue
            providers = sorted(
                {
                    (alert.provider_ref.name, alert.dependency_wait_seconds)
                    for alert in self.state.alerts.values()
                    if alert_wants(alert, event)
                }
            )
            for provider, wait in providers:
                if event.kind is EventKind.WAITING_FOR_DEPENDENCY:
                    self.state.waits.append(
                        PendingWait(
                            provider=provider,
                            due=workflow.now() + timedelta(seconds=wait),
                            event=event,
                        )
                    )
                else:
                    self._enqueue(provider, event)
        self._wake = True

    @workflow.query(name=NOTIFICATION_STATUS_QUERY)
    def status(self, request: NotificationStatusRequest) -> NotificationStatus:
        return NotificationStatus(
            namespace=self.state.namespace,
            providers=[
                ProviderStatus(
                    name=name,
                    type=spec.type.value,
                    secret=spec.secret_ref.name,
                    queued=len(self.state.outbox.get(name, [])),
                    delivered=self.state.delivered.get(name, 0),
                    dropped=self.state.dropped.get(name, 0),
                    last_error=self.state.last_error.get(name, ""),
                )
                for name, spec in sorted(self.state.providers.items())
            ],
            alerts=self.state.alerts,
            waiting=len(self.state.waits),
        )

    # --- delivery -----------------------------------------------------------------------------

    def _enqueue(self, provider: str, event: NotificationEvent) -> None:
        queue = self.state.outbox.setdefault(provider, [])
        keys = self._queued.setdefault(provider, set())
        key = delivery_key(event, provider)
        if key in keys:
            return  # two Alerts sending one event to one provider: one message
        if len(queue) >= MAX_QUEUED:
            self.state.dropped[provider] = self.state.dropped.get(provider, 0) + 1
            return
        queue.append(Outgoing(key=key, event=event))
        keys.add(key)

    def _release_waits(self) -> None:
        now = workflow.now()
        for wait in [w for w in self.state.waits if w.due <= now]:
            self._enqueue(wait.provider, wait.event)
        self.state.waits = [w for w in self.state.waits if w.due > now]

    def _next_due(self) -> timedelta | None:
        if not self.state.waits:
            return None
        due = min(w.due for w in self.state.waits)
        return max(due - workflow.now(), timedelta(seconds=1))

    async def _drain(self, name: str) -> None:
        """Deliver ``name``'s queue in order; the head stays queued until it is delivered."""
        try:
            queue = self.state.outbox[name]
            while queue and not self._stopping:
                spec = self.state.providers.get(name)
                if spec is None:
                    self._drop(name, f"provider {name} is not configured")
                    done = 1
                elif len(queue) > 1 and workflow.patched(BATCHES_PATCH):
                    done = min(len(queue), BATCH)
                    self._in_flight[name] = done
                    await self._deliver_batch(name, spec, queue[:done])
                else:
                    done = 1
                    self._in_flight[name] = done
                    await self._deliver(name, spec, queue[0])
                for item in queue[:done]:
                    self._queued[name].discard(item.key)
                del queue[:done]
            if not queue:
                self.state.outbox.pop(name, None)
        finally:
            del self._draining[name]
            self._in_flight.pop(name, None)
            self._wake = True

    async def _deliver_batch(self, name: str, spec: ProviderSpec, items: list[Outgoing]) -> None:
        request = DeliverBatchRequest(
            namespace=self.state.namespace,
            provider=name,
            type=spec.type,
            secret_name=spec.secret_ref.name,
            messages=[Message(key=item.key, event=item.event) for item in items],
        )
        try:
            result = await workflow.execute_activity(
                DELIVER_NOTIFICATIONS,
                request,
                result_type=DeliverBatchResult,
                start_to_close_timeout=BATCH_TIMEOUT,
                heartbeat_timeout=BATCH_HEARTBEAT,
                retry_policy=DELIVERY_RETRY,
            )
        except ActivityError as err:
            # Refused for good before any was sent (a missing secret or key): all dropped.
            for _ in items:
                self._drop(name, cause_message(err))
            return
        for error in result.refused.values():
            self._drop(name, error)
        delivered = len(items) - len(result.refused)
        self.state.delivered[name] = self.state.delivered.get(name, 0) + delivered
        if delivered:
            self.state.last_error.pop(name, None)

    async def _deliver(self, name: str, spec: ProviderSpec, item: Outgoing) -> None:
        request = DeliverRequest(
            namespace=self.state.namespace,
            provider=name,
            type=spec.type,
            secret_name=spec.secret_ref.name,
            event=item.event,
            key=item.key,
        )
        try:
            await workflow.execute_activity(
                DELIVER_NOTIFICATION,
                request,
                result_type=DeliverResult,
                start_to_close_timeout=DELIVERY_TIMEOUT,
                retry_policy=DELIVERY_RETRY,
            )
        except ActivityError as err:
            self._drop(name, cause_message(err))
            return
        self.state.delivered[name] = self.state.delivered.get(name, 0) + 1
        self.state.last_error.pop(name, None)

    def _drop(self, name: str, error: str) -> None:
        """A message its receiver refused for good (or whose provider is gone): counted,
        logged in one line and shown by the status query."""
        self.state.dropped[name] = self.state.dropped.get(name, 0) + 1
        self.state.last_error[name] = error
        workflow.logger.warning(
            "notifications %s: message to provider %s dropped: %s",
            self.state.namespace,
            name,
            error,
        )


def _same_wait(waiting: NotificationEvent, ended: NotificationEvent) -> bool:
    return (waiting.gitrepo, waiting.bundle, waiting.commit) == (
        ended.gitrepo,
        ended.bundle,
        ended.commit,
    )
