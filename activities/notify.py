"""Deliver one notification: read the provider's secret, post the message, sign it if asked.

The URL and HMAC key are read from the secret store here and nowhere else; errors name the
provider, never its address (a Slack or Teams URL is itself a credential). Every attempt of
one message carries the same ``X-Flotilla-Delivery`` key, so a receiver can drop the repeat
that a worker dying between the POST and reporting it would cause.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import aiohttp
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.notify_models import (
    DELIVER_NOTIFICATION,
    DELIVER_NOTIFICATIONS,
    RECEIVER_REFUSED,
    RECEIVER_UNAVAILABLE,
    DeliverBatchRequest,
    DeliverBatchResult,
    DeliverRequest,
    DeliverResult,
)
from activities.secrets import SecretNotFoundError, SecretStore
from flotilla.errors import FlotillaError, one_line
from flotilla.notifications import (
    ADDRESS_KEY,
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TOKEN_KEY,
    NotificationEvent,
    ProviderType,
    render_payload,
    signature,
    temporal_ui_link,
)

# A receiver gets this long per attempt; the activity's retry policy does the waiting.
POST_TIMEOUT = aiohttp.ClientTimeout(total=10)
# Answers that mean "try again later" rather than "never".
_RETRY_STATUSES = {408, 425, 429}


@dataclass(frozen=True)
class _Receiver:
    """Where one provider's messages go (read from its secret for one activity)."""

    kind: ProviderType
    address: str
    token: str
    who: str


class NotifyActivities:
    """Holds the secret store and where the Temporal UI is, for the messages' links."""

    def __init__(self, secrets: SecretStore, *, ui_url: str, temporal_namespace: str) -> None:
        self.secrets = secrets
        self.ui_url = ui_url
        self.temporal_namespace = temporal_namespace

    @activity.defn(name=DELIVER_NOTIFICATION)
    async def deliver_notification(self, request: DeliverRequest) -> DeliverResult:
        receiver = await self._receiver(request)
        async with aiohttp.ClientSession(timeout=POST_TIMEOUT) as session:
            status = await self._post(session, receiver, request.key, request.event)
        if status >= 300:
            raise _refused(receiver.who, status)
        return DeliverResult(status=status)

    @activity.defn(name=DELIVER_NOTIFICATIONS)
    async def deliver_notifications(self, request: DeliverBatchRequest) -> DeliverBatchResult:
        """Post a provider's messages in order over one connection. Progress is heartbeated
        after each answer, so a retry (a receiver that went down, a worker that died) starts
        at the first message not yet answered, with the same keys."""
        receiver = await self._receiver(request)
        done, refused = 0, {}
        details = activity.info().heartbeat_details
        if details:
            done, refused = int(details[0]), dict(details[1])
        async with aiohttp.ClientSession(timeout=POST_TIMEOUT) as session:
            for message in request.messages[done:]:
                status = await self._post(session, receiver, message.key, message.event)
                if status >= 300:
                    refused[message.key] = str(_refused(receiver.who, status))
                done += 1
                activity.heartbeat(done, refused)
        return DeliverBatchResult(refused=refused)

    async def _post(
        self,
        session: aiohttp.ClientSession,
        receiver: _Receiver,
        key: str,
        event: NotificationEvent,
    ) -> int:
        """POST one message: its status when the receiver answered for good (< 300, or a
        refusal), else a retryable error (not reachable, 5xx, 408/425/429)."""
        link = temporal_ui_link(self.ui_url, self.temporal_namespace, event.workflow_id)
        body = json.dumps(render_payload(receiver.kind, event, link)).encode()
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: key}
        if receiver.token:
            headers[SIGNATURE_HEADER] = signature(body, receiver.token)
        who = receiver.who
        try:
            async with session.post(receiver.address, data=body, headers=headers) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            # The exception's text may quote the URL; only its class is said.
            raise ApplicationError(
                f"{who}: receiver not reachable ({type(err).__name__})",
                type=RECEIVER_UNAVAILABLE,
            ) from None
        if status < 300:
            activity.logger.info("%s: %s delivered (%s, key %s)", who, event.kind, status, key)
        elif status >= 500 or status in _RETRY_STATUSES:
            raise ApplicationError(
                f"{who}: receiver answered HTTP {status}", type=RECEIVER_UNAVAILABLE
            )
        return status

    async def _receiver(self, request: DeliverRequest | DeliverBatchRequest) -> _Receiver:
        who = f"provider {request.namespace}/{request.provider}"
        address, token = await asyncio.to_thread(
            self._credentials, request.namespace, request.secret_name, request.type, who
        )
        return _Receiver(request.type, address, token, who)

    def _credentials(
        self, namespace: str, secret_name: str, kind: ProviderType, who: str
    ) -> tuple[str, str]:
        try:
            data = self.secrets.get(namespace, secret_name)
        except SecretNotFoundError:
            raise ApplicationError(
                f"{who}: secret {namespace}/{secret_name} not found",
                type=RECEIVER_REFUSED,
                non_retryable=True,
            ) from None
        except FlotillaError as err:
            raise ApplicationError(
                one_line(f"{who}: {err}"), type=err.type, non_retryable=not err.retryable
            ) from None
        address = data.get(ADDRESS_KEY, "").strip()
        token = data.get(TOKEN_KEY, "") if kind is ProviderType.WEBHOOK else ""
        missing = [k for k, v in ((ADDRESS_KEY, address), (TOKEN_KEY, token)) if not v]
        if kind is not ProviderType.WEBHOOK:
            missing = [k for k in missing if k != TOKEN_KEY]
        if missing:
            raise ApplicationError(
                f"{who}: secret {namespace}/{secret_name}: key {missing[0]!r} is missing",
                type=RECEIVER_REFUSED,
                non_retryable=True,
            )
        return address, token


def _refused(who: str, status: int) -> ApplicationError:
    """A receiver's answer that means "never": the message is dropped, not retried."""
    return ApplicationError(
        f"{who}: receiver answered HTTP {status}", type=RECEIVER_REFUSED, non_retryable=True
    )
