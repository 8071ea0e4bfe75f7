"""The messages and state of ``workflows/notifications.py``, in a module of their own.

Imported once per process, passed through the sandbox (building pydantic models is most of a
workflow module's cost).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from flotilla.notifications import AlertSpec, NotificationEvent, ProviderSpec

# What clients and other workflows call the notification workflow and its messages.
NOTIFICATION_WORKFLOW = "NotificationWorkflow"
APPLY_NOTIFICATION_UPDATE = "apply_notification"
DELETE_NOTIFICATION_UPDATE = "delete_notification"
NOTIFY_SIGNAL = "notify"
NOTIFICATION_STATUS_QUERY = "status"


class ApplyNotificationRequest(BaseModel):
    """A Provider or an Alert (exactly one of the two specs), by name."""

    name: str
    provider: ProviderSpec | None = None
    alert: AlertSpec | None = None


class ApplyNotificationResult(BaseModel):
    message: str


class DeleteNotificationRequest(BaseModel):
    """Remove a Provider (with the messages still queued for it) or an Alert."""

    kind: Literal["provider", "alert"]
    name: str


class NotifyRequest(BaseModel):
    """Events from a GitRepo or an image policy run, in the order they happened."""

    events: list[NotificationEvent]


class Outgoing(BaseModel):
    """One message waiting for its provider: the event and its deduplication key."""

    key: str
    event: NotificationEvent


class PendingWait(BaseModel):
    """A dependency wait an Alert is told about only if it lasts until ``due``."""

    provider: str
    due: datetime
    event: NotificationEvent


class NotificationState(BaseModel):
    """All of a notification workflow, handed whole to continue-as-new."""

    namespace: str
    providers: dict[str, ProviderSpec] = Field(default_factory=dict)
    alerts: dict[str, AlertSpec] = Field(default_factory=dict)
    # Per provider, in order: a receiver that is down holds only its own queue.
    outbox: dict[str, list[Outgoing]] = Field(default_factory=dict)
    waits: list[PendingWait] = Field(default_factory=list)
    delivered: dict[str, int] = Field(default_factory=dict)
    dropped: dict[str, int] = Field(default_factory=dict)
    last_error: dict[str, str] = Field(default_factory=dict)
    # Test switch: continue as new after this many history events.
    max_history_events: int | None = None


class NotificationStatusRequest(BaseModel):
    """Query input; a model so fields can be added later."""


class ProviderStatus(BaseModel):
    name: str
    type: str
    secret: str
    queued: int
    delivered: int
    dropped: int
    last_error: str = ""


class NotificationStatus(BaseModel):
    namespace: str
    providers: list[ProviderStatus]
    alerts: dict[str, AlertSpec]
    waiting: int
