"""Which webhook notification an endpoint is owed next, and what follows a delivery's
success or failure: pure functions of a Rollout's status and the clock, no I/O.

Why a module of its own: delivery is at-least-once from status alone
(``handlers.notifications`` does the HTTP and the status write), so every rule of it, the
events, their ids, the cursors, the retry schedule, must be a function the unit tests can
drive through restarts by hand.

The events (``NotificationEvent``):

- each ``status.history`` entry with outcome Promoted, RolledBack, Aborted or Rejected
  (Superseded and Stopped are passed over);
- the current ``status.pause`` when its reason is Inconclusive or AnalysisError
  (``PausedForAnalysis``) or AwaitingApproval (``AwaitingApproval``); the reason is read as
  a string, so a pause reason added later maps without a change here.

Ids are stable, so a receiver de-duplicates: ``n1-`` and the first 40 hex digits of the
SHA-256 of the Rollout's uid, the source and the entry's own fields (version, outcome,
time; for a pause its reason, start and version). The same event gets the same id from
any process, before and after a restart, from any leader.

Cursors, per endpoint (``EndpointDelivery``): ``historyCursor`` is the id of the newest
history entry delivered (or passed over). History is appended to and trimmed from the
front only (``plan.endings.add_history``), so the entries after the cursor's are due, and
when the cursor's entry is no longer there every entry present is newer: all are due.
An endpoint attached to a Rollout that already has history starts after its newest entry
and its current pause (attaching does not replay the past). ``pauseCursor`` is the id of
the last pause delivered. The event being retried is kept whole in ``pending`` (a pause
that ended meanwhile is still delivered), with its attempts and next attempt time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from ferryman.api.rollout import HistoryEntry, HistoryOutcome, Rollout, RolloutStatus
from ferryman.api.rollout_notifications import (
    EndpointDelivery,
    EventMeasurement,
    EventRecord,
    NotificationBinding,
    NotificationEvent,
    PendingDelivery,
)
from ferryman.settings import NotificationRetry

ID_PREFIX = "n1-"
SOURCE_HISTORY = "history"
SOURCE_PAUSE = "pause"

OUTCOME_EVENTS: dict[str, NotificationEvent] = {
    HistoryOutcome.PROMOTED: NotificationEvent.PROMOTED,
    HistoryOutcome.ROLLED_BACK: NotificationEvent.ROLLED_BACK,
    HistoryOutcome.ABORTED: NotificationEvent.ABORTED,
    HistoryOutcome.REJECTED: NotificationEvent.REJECTED,
}
# Pause reasons (status.pause.reason, as strings) that notify.
PAUSE_EVENTS: dict[str, NotificationEvent] = {
    "Inconclusive": NotificationEvent.PAUSED_FOR_ANALYSIS,
    "AnalysisError": NotificationEvent.PAUSED_FOR_ANALYSIS,
    "AwaitingApproval": NotificationEvent.AWAITING_APPROVAL,
}
# History causes whose entry names the measurement that caused it.
ANALYSIS_CAUSES = ("Analysis", "BakeAnalysis")


def _stamp(at: datetime) -> str:
    return at.isoformat()


def event_id(uid: str, source: str, *parts: str) -> str:
    """``n1-`` + 40 hex digits of SHA-256 over the uid, the source and ``parts`` (each
    separated by a NUL, so no two distinct inputs collide by concatenation)."""
    digest = hashlib.sha256("\0".join((uid, source, *parts)).encode()).hexdigest()
    return ID_PREFIX + digest[:40]


def history_id(uid: str, entry: HistoryEntry) -> str:
    return event_id(uid, SOURCE_HISTORY, entry.version, str(entry.outcome), _stamp(entry.at))


def measurement_for(status: RolloutStatus, entry: HistoryEntry) -> EventMeasurement | None:
    """The measurement that caused an analysis rollback: the newest Failed measurement
    taken at or before the entry, while status still holds it (it is reset with the
    analysis counters on a new target). None for other entries."""
    if entry.cause not in ANALYSIS_CAUSES or status.analysis is None:
        return None
    failed = [
        m for m in status.analysis.measurements or [] if m.verdict == "Failed" and m.at <= entry.at
    ]
    if not failed:
        return None
    m = failed[-1]
    return EventMeasurement(
        metric=m.metric,
        value=m.value,
        stable_value=m.stable_value,
        threshold=m.threshold,
        verdict=str(m.verdict),
        at=m.at,
    )


def history_event(rollout: Rollout, entry: HistoryEntry) -> EventRecord | None:
    """The event of one history entry; None when its outcome does not notify."""
    kind = OUTCOME_EVENTS.get(entry.outcome)
    if kind is None:
        return None
    return EventRecord(
        id=history_id(rollout.metadata.uid, entry),
        type=kind,
        version=entry.version,
        at=entry.at,
        reason=entry.reason,
        cause=str(entry.cause) if entry.cause else None,
        measurement=measurement_for(rollout.status, entry),
        source=SOURCE_HISTORY,
    )


def pause_event(rollout: Rollout) -> EventRecord | None:
    """The event of the current pause; None when there is none or its reason does not
    notify. A pause with no start time (never written so by ferryman) has none either."""
    pause = rollout.status.pause
    if pause is None or pause.since is None:
        return None
    kind = PAUSE_EVENTS.get(str(pause.reason))
    if kind is None:
        return None
    version = rollout.status.candidate_version or rollout.status.stable_version or ""
    return EventRecord(
        id=event_id(
            rollout.metadata.uid, SOURCE_PAUSE, str(pause.reason), _stamp(pause.since), version
        ),
        type=kind,
        version=version,
        at=pause.since,
        reason=pause.message or f"paused: {pause.reason}",
        cause=str(pause.reason),
        source=SOURCE_PAUSE,
    )


def attach(endpoint: str, rollout: Rollout) -> EndpointDelivery:
    """The state of an endpoint newly named by the Rollout: after everything already
    there (attaching does not replay history or the current pause)."""
    history = rollout.status.history or []
    pause = pause_event(rollout)
    return EndpointDelivery(
        endpoint=endpoint,
        history_cursor=history_id(rollout.metadata.uid, history[-1]) if history else "",
        pause_cursor=pause.id if pause else None,
    )


@dataclass(frozen=True)
class Next:
    """What an endpoint is owed now. ``state``: its state with the entries it is not sent
    passed over (write it even when ``event`` is None, if it changed); ``event``: what to
    send now; ``wait``: seconds until a pending retry is due (None: nothing waits)."""

    state: EndpointDelivery
    event: EventRecord | None
    wait: float | None = None


def _wanted(binding: NotificationBinding, kind: NotificationEvent) -> bool:
    return binding.events is None or kind in binding.events


def next_event(
    binding: NotificationBinding, state: EndpointDelivery, rollout: Rollout, now: datetime
) -> Next:
    """The event to send to ``binding``'s endpoint now (module docstring: cursors). A
    pending retry comes first (and blocks the others, so an endpoint receives events in
    order); then history after the cursor; then the current pause."""
    if state.pending is not None:
        due_at = state.pending.next_attempt_at
        if due_at is not None and due_at > now:
            return Next(state, None, (due_at - now) / timedelta(seconds=1))
        return Next(state, state.pending.event)
    out = state.model_copy(deep=True)
    uid = rollout.metadata.uid
    history = rollout.status.history or []
    ids = [history_id(uid, e) for e in history]
    start = 0
    if out.history_cursor and out.history_cursor in ids:
        start = ids.index(out.history_cursor) + 1
    for entry, entry_id in zip(history[start:], ids[start:], strict=True):
        event = history_event(rollout, entry)
        if event is not None and _wanted(binding, event.type):
            return Next(out, event)
        out.history_cursor = entry_id  # passed over: not an event for this endpoint
    pause = pause_event(rollout)
    if pause is not None and pause.id != out.pause_cursor:
        if _wanted(binding, pause.type):
            return Next(out, pause)
        out.pause_cursor = pause.id
    return Next(out, None)


def _advance(state: EndpointDelivery, event: EventRecord) -> EndpointDelivery:
    out = state.model_copy(deep=True)
    if event.source == SOURCE_PAUSE:
        out.pause_cursor = event.id
    else:
        out.history_cursor = event.id
    out.pending = None
    return out


def delivered(state: EndpointDelivery, event: EventRecord, now: datetime) -> EndpointDelivery:
    """The state after ``event`` was accepted (HTTP 2xx)."""
    out = _advance(state, event)
    out.delivered += 1
    out.last_delivered_at = now
    out.last_error = None
    return out


def backoff(attempts: int, retry: NotificationRetry) -> float:
    """Seconds to wait after the ``attempts``-th failure (attempts >= 1):
    ``min(initialDelaySeconds * 2^(attempts-1), maxDelaySeconds)``."""
    exponent = min(max(attempts - 1, 0), 60)  # 2^60 s exceeds any cap already
    return float(min(retry.initial_delay_seconds * 2**exponent, retry.max_delay_seconds))


def failed(
    state: EndpointDelivery,
    event: EventRecord,
    error: str,
    now: datetime,
    retry: NotificationRetry,
) -> tuple[EndpointDelivery, bool]:
    """The state after an attempt at ``event`` failed with ``error``, and whether the
    event was abandoned (``retry.maxAttempts`` failures: the cursor moves past it)."""
    attempts = (state.pending.attempts if state.pending else 0) + 1
    if attempts >= retry.max_attempts:
        out = _advance(state, event)
        out.abandoned += 1
        out.last_error = f"abandoned {event.type} of {event.version} after {attempts} " + (
            f"attempts: {error}"
        )
        return out, True
    out = state.model_copy(deep=True)
    out.pending = PendingDelivery(
        event=event,
        attempts=attempts,
        next_attempt_at=now + timedelta(seconds=backoff(attempts, retry)),
    )
    out.last_error = f"{event.type} of {event.version}, attempt {attempts}: {error}"
    return out, False


# --- the NotificationsDelivered condition ---------------------------------------------

CONDITION = "NotificationsDelivered"
REASON_DELIVERED = "Delivered"
REASON_UNKNOWN = "UnknownEndpoint"
REASON_FAILING = "DeliveryFailing"


def condition(
    unknown: list[str], states: list[EndpointDelivery], configured: list[str]
) -> tuple[bool, str, str]:
    """(status, reason, message) of the ``NotificationsDelivered`` condition: False with
    ``UnknownEndpoint`` when the Rollout names endpoints the settings lack, else False
    with ``DeliveryFailing`` and the last error of each endpoint whose last attempt
    failed, else True."""
    if unknown:
        return (
            False,
            REASON_UNKNOWN,
            f"unknown notification endpoint(s) {', '.join(sorted(unknown))} "
            f"(configured: {', '.join(sorted(configured)) or 'none'})",
        )
    failing = [f"{s.endpoint}: {s.last_error}" for s in states if s.last_error]
    if failing:
        return False, REASON_FAILING, "; ".join(failing)
    count = sum(s.delivered for s in states)
    return True, REASON_DELIVERED, f"every event delivered ({count} so far)"
