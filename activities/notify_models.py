"""The name, request and result of the notification delivery activity (no I/O here)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from flotilla.notifications import NotificationEvent, ProviderType

DELIVER_NOTIFICATION = "deliver_notification"
DELIVER_NOTIFICATIONS = "deliver_notifications"
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


class Message(BaseModel):
    """One message of a batch: the event and its deduplication key."""

    key: str
    event: NotificationEvent


class DeliverBatchRequest(BaseModel):
    """Several messages to one provider, posted one after the other in this order."""

    namespace: str
    provider: str
    type: ProviderType
    secret_name: str
    messages: list[Message]


class DeliverBatchResult(BaseModel):
    """Every message was answered: those the receiver refused for good, by key, with why
    (the others were delivered)."""

    refused: dict[str, str] = Field(default_factory=dict)
