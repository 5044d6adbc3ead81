"""A Rollout's webhook notifications: which endpoints it notifies (``spec.notifications``,
by name: the endpoints themselves, their URLs and signing keys, are the platform team's,
in the operator's settings) and how far each endpoint has been delivered
(``status.notifications``).

Delivery is at-least-once and driven from status alone (``handlers.notifications``): the
events are ``status.history`` and the pause in ``status.pause``; per endpoint a cursor
says which were delivered, and the one event being retried is kept whole with its
attempt count and the time of its next attempt, so a restart or a failover of the
operator loses nothing (docs/notifications.md).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from ferryman.api.common import ApiModel, bounded_text, cel, dns_label_rule, rules
from ferryman.api.rollout_limits import MAX_METRIC_NAME, MAX_REASON, MAX_THRESHOLD

MAX_BINDINGS = 8  # spec.notifications
MAX_EVENT_ID = 64  # a notification id: "n1-" and 40 hex digits today
MAX_ERROR = 512  # the last delivery error kept in status


class NotificationEvent(StrEnum):
    """What a notification reports: a history outcome, or a pause someone should see."""

    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"
    REJECTED = "Rejected"
    # status.pause with reason Inconclusive or AnalysisError (analysis cannot judge)
    PAUSED_FOR_ANALYSIS = "PausedForAnalysis"
    # status.pause with reason AwaitingApproval (the approval gate, issue 17 §3)
    AWAITING_APPROVAL = "AwaitingApproval"


class NotificationBinding(ApiModel):
    """One endpoint this Rollout notifies, named as in the operator's settings
    (``notifications.endpoints``)."""

    endpoint: str = Field(
        max_length=63,
        description="The endpoint's name in the operator's settings (notifications."
        "endpoints); an unknown name sets the NotificationsDelivered condition to False.",
        json_schema_extra=rules(dns_label_rule("notifications[].endpoint")),
    )
    events: list[NotificationEvent] | None = Field(
        None,
        max_length=len(NotificationEvent),
        description="The events sent to it (default: all): Promoted, RolledBack, Aborted, "
        "Rejected, PausedForAnalysis, AwaitingApproval.",
    )


NOTIFICATIONS_RULES = rules(
    cel(
        "self.all(x, self.exists_one(y, y.endpoint == x.endpoint))",
        "notifications: each endpoint may be named once",
    )
)


class EventMeasurement(ApiModel):
    """The measurement that caused an event (a rollback by analysis), as kept for a
    delivery being retried: the rendered query is left out (it is in the measurement
    history and, unrendered, in spec.analysis)."""

    metric: Annotated[str, bounded_text(MAX_METRIC_NAME)] = Field(max_length=MAX_METRIC_NAME)
    value: float | None = None
    stable_value: float | None = None
    threshold: Annotated[str, bounded_text(MAX_THRESHOLD)] = Field("", max_length=MAX_THRESHOLD)
    verdict: str = Field(max_length=32)
    at: datetime


class EventRecord(ApiModel):
    """One notification event, whole: what every delivery attempt of it renders."""

    id: str = Field(max_length=MAX_EVENT_ID, description="Stable id (de-duplication).")
    type: NotificationEvent
    version: Annotated[str, bounded_text(128)] = Field(max_length=128)
    at: datetime = Field(description="When it happened (history entry's at, pause's since).")
    reason: Annotated[str, bounded_text(MAX_REASON)] = Field("", max_length=MAX_REASON)
    cause: str | None = Field(None, max_length=32)
    measurement: EventMeasurement | None = None
    source: str = Field(
        "history", max_length=16, description="history or pause: which cursor it advances."
    )


class PendingDelivery(ApiModel):
    """The event an endpoint is retrying, with the retry's state."""

    event: EventRecord
    attempts: int = Field(0, ge=0, description="Failed attempts so far.")
    next_attempt_at: datetime | None = None


class EndpointDelivery(ApiModel):
    """How far one endpoint has been delivered."""

    endpoint: str = Field(max_length=63)
    history_cursor: str | None = Field(
        None,
        max_length=MAX_EVENT_ID,
        description="Id of the newest history entry delivered (or already there when the "
        "endpoint was attached; '' when history was empty then): entries after it in "
        "status.history are due.",
    )
    pause_cursor: str | None = Field(
        None, max_length=MAX_EVENT_ID, description="Id of the last pause event delivered."
    )
    pending: PendingDelivery | None = Field(None, description="The event being retried.")
    delivered: int = Field(0, ge=0, description="Events delivered so far.")
    abandoned: int = Field(
        0, ge=0, description="Events given up after notifications.retry.maxAttempts."
    )
    last_delivered_at: datetime | None = None
    last_error: Annotated[str | None, bounded_text(MAX_ERROR)] = Field(
        None,
        max_length=MAX_ERROR,
        description="Why the last attempt failed; cleared by the next successful delivery.",
    )


NotificationsStatus = Annotated[
    list[EndpointDelivery],
    Field(max_length=MAX_BINDINGS, description="Per endpoint: what was delivered, what retries."),
]
