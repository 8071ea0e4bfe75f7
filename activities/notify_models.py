"""The name, request and result of the notification delivery activity (no I/O here)."""

from __future__ import annotations

from pydantic import BaseModel

from flotilla.notifications import NotificationEvent, ProviderType

DELIVER_NOTIFICATION = "deliver_notification"
# Error types the delivery raises: a receiver that refused the message for good (a 4xx other
# than 408/429, a missing secret) is not retried; anything else is, until it answers.
RECEIVER_REFUSED = "ReceiverRefused"
RECEIVER_UNAVAILABLE = "ReceiverUnavailable"


class DeliverRequest(BaseModel):
    """One message to one provider. The provider's URL and key are named, never carried."""

    namespace: str
    provider: str
    type: ProviderType
    secret_name: str
    event: NotificationEvent
    # The deduplication key, sent as X-Flotilla-Delivery on every attempt.
    key: str


class DeliverResult(BaseModel):
    status: int
