"""The bytes of a webhook notification and their signature: pure, so the exact wire
format is unit-tested and documented from one place (docs/notifications.md).

Formats (``settings.notifications.endpoints[].format``):

- ``generic``: ferryman's own JSON document (``generic``; schema ``SCHEMA`` below and in
  the docs), with the event id a receiver de-duplicates by.
- ``slack``: a Slack incoming-webhook message, ``text`` (the notification's fallback
  line) and Block Kit ``blocks`` (https://api.slack.com/messaging/webhooks).
- ``teams``: a Microsoft Teams message carrying one Adaptive Card attachment, as an
  incoming webhook or a Workflows "post to a channel when a webhook request is received"
  flow accepts it (``{"type": "message", "attachments": [{"contentType":
  "application/vnd.microsoft.card.adaptive", "content": {AdaptiveCard}}]}``;
  https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using).

Signature (every format, when the endpoint has an ``hmacKey``), Stripe's scheme
(https://docs.stripe.com/webhooks#verify-manually): header
``X-Ferryman-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is the lowercase hex
HMAC-SHA256, keyed with the ``hmacKey`` bytes (UTF-8), of the ASCII timestamp, a ``.``
and the raw request body. The timestamp lets a receiver refuse replays (compare it with
its clock, e.g. 5 minutes' tolerance); the body's ``id`` (also ``X-Ferryman-Delivery``)
lets it drop duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from ferryman.api.rollout import Rollout
from ferryman.api.rollout_notifications import EventRecord, NotificationEvent

SCHEMA = "ferryman.dev/notification/v1"
SIGNATURE_HEADER = "X-Ferryman-Signature"
EVENT_HEADER = "X-Ferryman-Event"
DELIVERY_HEADER = "X-Ferryman-Delivery"
FORMATS = ("generic", "slack", "teams")

_VERBS = {
    NotificationEvent.PROMOTED: "promoted",
    NotificationEvent.ROLLED_BACK: "rolled back",
    NotificationEvent.ABORTED: "aborted",
    NotificationEvent.REJECTED: "rejected",
    NotificationEvent.PAUSED_FOR_ANALYSIS: "paused: analysis cannot judge",
    NotificationEvent.AWAITING_APPROVAL: "awaiting approval",
}
_SLACK_ICON = {
    NotificationEvent.PROMOTED: ":white_check_mark:",
    NotificationEvent.ROLLED_BACK: ":rewind:",
    NotificationEvent.ABORTED: ":octagonal_sign:",
    NotificationEvent.REJECTED: ":no_entry:",
    NotificationEvent.PAUSED_FOR_ANALYSIS: ":pause_button:",
    NotificationEvent.AWAITING_APPROVAL: ":raised_hand:",
}
_TEAMS_COLOR = {
    NotificationEvent.PROMOTED: "Good",
    NotificationEvent.ROLLED_BACK: "Attention",
    NotificationEvent.ABORTED: "Attention",
    NotificationEvent.REJECTED: "Attention",
    NotificationEvent.PAUSED_FOR_ANALYSIS: "Warning",
    NotificationEvent.AWAITING_APPROVAL: "Warning",
}


def _time(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def generic(
    event: EventRecord, rollout: Rollout, *, sent_at: datetime, attempt: int
) -> dict[str, Any]:
    """ferryman's JSON document for ``event`` (docs/notifications.md has the schema).
    ``phase`` and ``stableVersion`` are the Rollout's as this attempt was rendered;
    everything else is the event's own and equal in every attempt."""
    m = event.measurement
    return {
        "schema": SCHEMA,
        "id": event.id,
        "type": str(event.type),
        "occurredAt": _time(event.at),
        "sentAt": _time(sent_at),
        "attempt": attempt,
        "rollout": {
            "namespace": rollout.metadata.namespace,
            "name": rollout.metadata.name,
            "uid": rollout.metadata.uid,
            "model": rollout.spec.model,
        },
        "version": event.version,
        "phase": str(rollout.status.phase) if rollout.status.phase else None,
        "stableVersion": rollout.status.stable_version,
        "reason": event.reason,
        "cause": event.cause,
        "measurement": None
        if m is None
        else {
            "metric": m.metric,
            "value": m.value,
            "stableValue": m.stable_value,
            "threshold": m.threshold,
            "verdict": m.verdict,
            "at": _time(m.at),
        },
    }


def summary(doc: dict[str, Any]) -> str:
    """One line for a chat: ``fraud/risk 1.3.0 rolled back: <reason>``."""
    ro = doc["rollout"]
    verb = _VERBS[NotificationEvent(doc["type"])]
    line = f"{ro['namespace']}/{ro['name']} {doc['version']} {verb}"
    return f"{line}: {doc['reason']}" if doc["reason"] else line


def _facts(doc: dict[str, Any]) -> list[tuple[str, str]]:
    facts = [("Model", doc["rollout"]["model"]), ("Version", doc["version"])]
    if doc["phase"]:
        facts.append(("Phase", doc["phase"]))
    if doc["cause"]:
        facts.append(("Cause", doc["cause"]))
    m = doc["measurement"]
    if m is not None:
        facts.append(("Measurement", f"{m['metric']} = {m['value']} ({m['threshold']})"))
    facts.append(("At", doc["occurredAt"]))
    return facts


def slack_escape(text: str) -> str:
    """``&``, ``<`` and ``>`` as the HTML entities Slack asks for: it parses them in
    message text as links and mentions (``<!channel>``) otherwise (Slack API reference,
    "Formatting text for app surfaces", Escaping text). Only these three: Slack decodes
    no other entity."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack(doc: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message: ``text`` (shown in notifications and where
    blocks cannot be) and ``blocks``: a section with the summary, the facts, and a context
    line with the id. Every text from the event is escaped (``slack_escape``): reasons
    quote PromQL with its ``<`` and ``>``."""
    text = slack_escape(summary(doc))
    kind = NotificationEvent(doc["type"])
    facts = [
        {"type": "mrkdwn", "text": f"*{slack_escape(k)}*\n{slack_escape(v)}"}
        for k, v in _facts(doc)
    ]
    return {
        "text": text,
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"{_SLACK_ICON[kind]} {text}"[:3000]},
            },
            {"type": "section", "fields": facts[:10]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"id `{doc['id']}`"}]},
        ],
    }


def teams(doc: dict[str, Any]) -> dict[str, Any]:
    """A Teams message with one Adaptive Card (version 1.4): a heading coloured by the
    event, the reason, a FactSet, and the id."""
    kind = NotificationEvent(doc["type"])
    ro = doc["rollout"]
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "size": "Medium",
                "weight": "Bolder",
                "color": _TEAMS_COLOR[kind],
                "text": f"{ro['namespace']}/{ro['name']} {doc['version']} {_VERBS[kind]}",
                "wrap": True,
            },
            {"type": "TextBlock", "text": doc["reason"] or " ", "wrap": True},
            {
                "type": "FactSet",
                "facts": [{"title": k, "value": v} for k, v in _facts(doc)],
            },
            {"type": "TextBlock", "text": f"id {doc['id']}", "isSubtle": True, "size": "Small"},
        ],
    }
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def body(fmt: str, doc: dict[str, Any]) -> bytes:
    """The request body in ``fmt`` (one of ``FORMATS``), compact UTF-8 JSON. Raises
    ValueError for another format."""
    if fmt == "generic":
        out = doc
    elif fmt == "slack":
        out = slack(doc)
    elif fmt == "teams":
        out = teams(doc)
    else:
        raise ValueError(f"unknown notification format {fmt!r}; known: {', '.join(FORMATS)}")
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode()


def signature(key: str, timestamp: int, payload: bytes) -> str:
    """The ``X-Ferryman-Signature`` value: ``t=<timestamp>,v1=<hex HMAC-SHA256(key,
    "<timestamp>." + payload)>`` (module docstring)."""
    mac = hmac.new(key.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(key: str, header: str, payload: bytes, *, now: int, tolerance: int = 300) -> bool:
    """Whether ``header`` (an ``X-Ferryman-Signature`` value) signs ``payload`` with
    ``key`` at a timestamp within ``tolerance`` seconds of ``now``: what a receiver does
    (constant-time comparison; any ``v1`` that matches is enough, so keys can rotate)."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k.strip() == "t"]
    if len(stamps) != 1 or not stamps[0].strip().isdigit():
        return False
    t = int(stamps[0])
    if abs(now - t) > tolerance:
        return False
    expected = signature(key, t, payload).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, v.strip()) for k, v in parts if k.strip() == "v1")


def headers(event: EventRecord, payload: bytes, key: str | None, timestamp: int) -> dict[str, str]:
    """The request headers: JSON content type, the event type and id, and the signature
    when there is a key."""
    out = {
        "Content-Type": "application/json",
        EVENT_HEADER: str(event.type),
        DELIVERY_HEADER: event.id,
    }
    if key:
        out[SIGNATURE_HEADER] = signature(key, timestamp, payload)
    return out
