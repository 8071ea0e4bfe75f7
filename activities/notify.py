"""Deliver one notification: read the provider's secret, post the message, sign it if asked.

The URL and HMAC key are read from the secret store here and nowhere else; errors name the
provider, never its address (a Slack or Teams URL is itself a credential). Every attempt of
one message carries the same ``X-Flotilla-Delivery`` key, so a receiver can drop the repeat
that a worker dying between the POST and reporting it would cause.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.notify_models import (
    DELIVER_NOTIFICATION,
    RECEIVER_REFUSED,
    RECEIVER_UNAVAILABLE,
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
    ProviderType,
    render_payload,
    signature,
    temporal_ui_link,
)

# A receiver gets this long per attempt; the activity's retry policy does the waiting.
POST_TIMEOUT = aiohttp.ClientTimeout(total=10)
# Answers that mean "try again later" rather than "never".
_RETRY_STATUSES = {408, 425, 429}


class NotifyActivities:
    """Holds the secret store and where the Temporal UI is, for the messages' links."""

    def __init__(self, secrets: SecretStore, *, ui_url: str, temporal_namespace: str) -> None:
        self.secrets = secrets
        self.ui_url = ui_url
        self.temporal_namespace = temporal_namespace

    @activity.defn(name=DELIVER_NOTIFICATION)
    async def deliver_notification(self, request: DeliverRequest) -> DeliverResult:
        who = f"provider {request.namespace}/{request.provider}"
        address, token = await asyncio.to_thread(self._credentials, request, who)
        link = temporal_ui_link(self.ui_url, self.temporal_namespace, request.event.workflow_id)
        body = json.dumps(render_payload(request.type, request.event, link)).encode()
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: request.key}
        if token:
            headers[SIGNATURE_HEADER] = signature(body, token)
        try:
            async with (
                aiohttp.ClientSession(timeout=POST_TIMEOUT) as session,
                session.post(address, data=body, headers=headers) as response,
            ):
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            # The exception's text may quote the URL; only its class is said.
            raise ApplicationError(
                f"{who}: receiver not reachable ({type(err).__name__})",
                type=RECEIVER_UNAVAILABLE,
            ) from None
        if status < 300:
            activity.logger.info(
                "%s: %s delivered (%s, key %s)", who, request.event.kind, status, request.key
            )
            return DeliverResult(status=status)
        retryable = status >= 500 or status in _RETRY_STATUSES
        raise ApplicationError(
            f"{who}: receiver answered HTTP {status}",
            type=RECEIVER_UNAVAILABLE if retryable else RECEIVER_REFUSED,
            non_retryable=not retryable,
        )

    def _credentials(self, request: DeliverRequest, who: str) -> tuple[str, str]:
        try:
            data = self.secrets.get(request.namespace, request.secret_name)
        except SecretNotFoundError:
            raise ApplicationError(
                f"{who}: secret {request.namespace}/{request.secret_name} not found",
                type=RECEIVER_REFUSED,
                non_retryable=True,
            ) from None
        except FlotillaError as err:
            raise ApplicationError(
                one_line(f"{who}: {err}"), type=err.type, non_retryable=not err.retryable
            ) from None
        address = data.get(ADDRESS_KEY, "").strip()
        token = data.get(TOKEN_KEY, "") if request.type is ProviderType.WEBHOOK else ""
        missing = [k for k, v in ((ADDRESS_KEY, address), (TOKEN_KEY, token)) if not v]
        if request.type is not ProviderType.WEBHOOK:
            missing = [k for k in missing if k != TOKEN_KEY]
        if missing:
            raise ApplicationError(
                f"{who}: secret {request.namespace}/{request.secret_name}: key "
                f"{missing[0]!r} is missing",
                type=RECEIVER_REFUSED,
                non_retryable=True,
            )
        return address, token
