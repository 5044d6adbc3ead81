"""Webhook notifications: one kopf daemon per Rollout that names endpoints
(``spec.notifications``), delivering what ``plan.notifications`` says is due and writing
each endpoint's cursor and retry state to ``status.notifications``.

Why a daemon of its own, not part of the reconcile: a webhook may be slow or down, and a
reconcile must never wait for it (a rollback's route write least of all). The daemon
shares nothing with the reconcile but the Rollout: it sleeps on its own wake-up event
(set by every change of the Rollout) or until a retry is due, and a Rollout without
notifications has no daemon at all (kopf's ``when`` filter; it runs on while
``status.notifications`` remains, to clear it when the last endpoint is removed). An
asyncio task spawned from the reconcile would need its own bookkeeping of what runs,
which kopf's daemons already keep (started with the object, stopped at deletion and
shutdown).

Delivery is at-least-once from status alone (``plan.notifications``): an event is sent,
then its cursor written; the operator dying in between sends it again, with the same id.
A newly named endpoint is attached first (its cursor written) and sent to from the next
round on, so nothing is ever sent to an endpoint whose cursor status does not keep.
The one event an endpoint retries is kept whole in status, with its attempts and next
attempt time (exponential backoff, ``settings.notifications.retry``), so a restart or a
failover resumes the schedule where it was. Only the leader sends: kopf, and with it
this daemon, runs only in the process that holds the Lease (``ferryman.main``), which
exits at once when it loses it.

The status write is conditioned on the Rollout's ``resourceVersion`` (the reconcile writes
conditions too): on a conflict, the daemon waits for kopf's newer copy and writes its
endpoint states again on top of it; those states are only ever written here, so its own
are the newest. Problems are reported, never raised into a crash loop: an unknown endpoint
name or a failing delivery sets the ``NotificationsDelivered`` condition False with the
last error and posts a Warning Event; an event still failing after ``maxAttempts`` is
abandoned (Warning Event ``NotificationAbandoned``, counted in status).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import kopf

from ferryman import metrics
from ferryman.api.common import GROUP, VERSION, ConditionStatus, clip, event_message
from ferryman.api.rollout import PLURAL, NotificationBinding, Rollout
from ferryman.api.rollout_notifications import EndpointDelivery, EventRecord
from ferryman.errors import describe
from ferryman.handlers import namespaces
from ferryman.handlers.context import OperatorContext, context
from ferryman.kube.client import Conflict, Kube, ReadRefused
from ferryman.kube.client import user_agent as kube_user_agent
from ferryman.plan import notifications as plan
from ferryman.plan import notify_payload
from ferryman.plan.conditions import set_condition
from ferryman.settings import NotificationEndpoint, Settings

log = logging.getLogger(__name__)

MAX_PER_ROUND = 10  # events sent to one endpoint per round (the rest: the next round)
IDLE_RECHECK_S = 300.0  # a daemon with nothing due looks again after this long anyway
WRITE_TRIES = 3  # status writes per round (each after a conflict)
ERROR_BODY_CHARS = 200  # of a refusing endpoint's answer, quoted in the error


def wanted(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    """kopf's filter: a daemon only for Rollouts that name endpoints, or whose status
    still has delivery state or the condition to clear."""
    return (
        bool(spec.get("notifications"))
        or bool(status.get("notifications"))
        or any(c.get("type") == plan.CONDITION for c in status.get("conditions") or [])
    )


@kopf.on.event(GROUP, VERSION, PLURAL, when=wanted)
async def notify_wake(
    *, namespace: str | None, name: str | None, memo: kopf.Memo, **_: Any
) -> None:
    if namespace and name:
        context(memo).notify_wakeups.setdefault((namespace, name), asyncio.Event()).set()


@kopf.daemon(GROUP, VERSION, PLURAL, when=wanted, cancellation_timeout=2.0)
async def notification_daemon(
    *,
    name: str,
    namespace: str | None,
    body: kopf.Body,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    **_: Any,
) -> None:
    assert namespace is not None
    ctx = context(memo)
    wake = ctx.notify_wakeups.setdefault((namespace, name), asyncio.Event())
    failures = 0
    while not stopped:
        wake.clear()
        try:
            delay = await deliver_round(ctx, body, stopped)
            failures = 0
        except Exception:
            failures += 1
            delay = float(min(5 * 2 ** (failures - 1), 60))
            log.exception("notifications of %s/%s failed; again in %gs", namespace, name, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=delay)
    ctx.notify_wakeups.pop((namespace, name), None)


async def deliver_round(ctx: OperatorContext, body: kopf.Body, stopped: Any) -> float:
    """Send what is due to every endpoint (concurrently, each in order), write the
    states; seconds until the next round is due (a retry, or the idle re-check)."""
    rollout = Rollout.model_validate(dict(body))
    if rollout.metadata.deletion_timestamp is not None:
        return IDLE_RECHECK_S
    settings = ctx.settings or Settings()
    configured = settings.notifications.endpoints
    bindings = rollout.spec.notifications or []
    old = {s.endpoint: s for s in rollout.status.notifications or []}
    unknown = [b.endpoint for b in bindings if b.endpoint not in configured]
    known = [b for b in bindings if b.endpoint in configured]
    results = await asyncio.gather(
        *(
            _serve_endpoint(ctx, body, rollout, b, configured[b.endpoint], old.get(b.endpoint))
            for b in known
        )
    )
    # States of unknown endpoints are kept (a fixed name resumes where it was).
    by_name = {s.endpoint: s for s, _w in results}
    states = [
        by_name.get(b.endpoint) or old[b.endpoint]
        for b in bindings
        if b.endpoint in by_name or b.endpoint in old
    ]
    waits = [w for _s, w in results if w is not None]
    healthy, reason, message = plan.condition(unknown, states, list(configured))
    before = next((c for c in rollout.status.conditions or [] if c.type == plan.CONDITION), None)
    if unknown and (before is None or before.reason != plan.REASON_UNKNOWN):
        namespaces.post(
            body,
            type="Warning",
            reason="NotificationEndpointUnknown",
            message=event_message(message),
        )
    dumped = [s.model_dump(by_alias=True, mode="json") for s in states] or None
    was = [s.model_dump(by_alias=True, mode="json") for s in rollout.status.notifications or []]
    changed = (dumped or None) != (was or None)
    condition_changed = (before is None) == bool(bindings) or (
        before is not None and (before.reason != reason or before.message != message)
    )
    if changed or condition_changed:
        await _write(
            ctx.kube, body, dumped, (healthy, reason, message) if bindings else None, stopped
        )
    return min([*waits, IDLE_RECHECK_S])


async def _serve_endpoint(
    ctx: OperatorContext,
    body: kopf.Body,
    rollout: Rollout,
    binding: NotificationBinding,
    endpoint: NotificationEndpoint,
    state: EndpointDelivery | None,
) -> tuple[EndpointDelivery, float | None]:
    """Deliver what is due to one endpoint, oldest first, stopping at the first failure
    (bounded: ``MAX_PER_ROUND``); its new state and seconds until its retry is due."""
    settings = ctx.settings or Settings()
    if state is None:
        # Attach first, send from the next round on: nothing is sent to an endpoint
        # whose cursor status does not hold (were status.notifications ever not stored,
        # e.g. pruned by an older CRD, every round would send everything again).
        return plan.attach(binding.endpoint, rollout), None
    current = state
    for _ in range(MAX_PER_ROUND):
        now = datetime.now(UTC)
        nxt = plan.next_event(binding, current, rollout, now)
        current = nxt.state
        if nxt.event is None:
            return current, nxt.wait
        attempt = (current.pending.attempts if current.pending else 0) + 1
        error = await send(ctx, endpoint, nxt.event, rollout, attempt)
        now = datetime.now(UTC)
        if error is None:
            log.info(
                "%s/%s: %s %s delivered to %s (%s, attempt %d)",
                rollout.metadata.namespace,
                rollout.metadata.name,
                nxt.event.type,
                nxt.event.version,
                binding.endpoint,
                nxt.event.id,
                attempt,
            )
            current = plan.delivered(current, nxt.event, now)
            _count(rollout, binding.endpoint, "delivered")
            continue
        current, abandoned = plan.failed(
            current, nxt.event, error, now, settings.notifications.retry
        )
        _count(rollout, binding.endpoint, "failed")
        if abandoned:
            _count(rollout, binding.endpoint, "abandoned")
        log.warning(
            "%s/%s: %s", rollout.metadata.namespace, rollout.metadata.name, current.last_error
        )
        namespaces.post(
            body,
            type="Warning",
            reason="NotificationAbandoned" if abandoned else "NotificationFailed",
            message=event_message(f"{binding.endpoint}: {current.last_error}"),
        )
        if abandoned:
            continue
        pending = current.pending
        assert pending is not None and pending.next_attempt_at is not None
        return current, max((pending.next_attempt_at - now).total_seconds(), 0.0)
    return current, 0.0  # more is due: the next round at once


def _count(rollout: Rollout, endpoint: str, result: str) -> None:
    meta = rollout.metadata
    metrics.NOTIFICATIONS.labels(meta.namespace, meta.name, endpoint, result).inc()


async def _secret(kube: Kube, settings: Settings, name: str) -> dict[str, str]:
    if not settings.namespace:
        raise LookupError(f"cannot read Secret {name}: the operator's namespace is not set")
    try:
        found = await kube.get("v1", "Secret", settings.namespace, name)
    except ReadRefused as e:
        # A refused read (403: the chart grants `get` only on the Secret names its values
        # list) is this endpoint's delivery failure, reported in the condition and an
        # Event like any other, not an error of the whole round.
        raise LookupError(
            f"cannot read Secret {settings.namespace}/{name}: HTTP {e.status}: {e.reason} "
            "(the chart grants get on the Secrets its notifications values name)"
        ) from e
    if found is None:
        raise LookupError(f"Secret {settings.namespace}/{name} not found")
    return {k: base64.b64decode(v).decode() for k, v in (found.get("data") or {}).items()}


async def send(
    ctx: OperatorContext,
    endpoint: NotificationEndpoint,
    event: EventRecord,
    rollout: Rollout,
    attempt: int,
) -> str | None:
    """POST ``event`` to ``endpoint`` in its format, signed when it has an ``hmacKey``
    (an endpoint with ``signed`` and no ``hmacKey`` in its Secret sends nothing: that is a
    failure); None when the endpoint answered 2xx, else why not (never raises for a network or
    endpoint failure)."""
    settings = ctx.settings or Settings()
    try:
        key, url = None, endpoint.url
        if endpoint.secret_name:
            data = await _secret(ctx.kube, settings, endpoint.secret_name)
            key, url = data.get("hmacKey") or None, data.get("url") or url
        if endpoint.signed and not key:
            # Configured for signing: a missing key fails the delivery (Warning Event,
            # NotificationsDelivered False, the retry backoff) instead of sending the
            # receiver an unsigned request it would have to reject, or worse, accept.
            return (
                f"not sent: the endpoint signs every request but Secret "
                f"{settings.namespace}/{endpoint.secret_name} has no key hmacKey"
            )
        if not url:
            return f"no url: neither the settings nor Secret {endpoint.secret_name} give one"
        doc = notify_payload.generic(event, rollout, sent_at=datetime.now(UTC), attempt=attempt)
        payload = notify_payload.body(endpoint.format, doc)
        headers = notify_payload.headers(event, payload, key, int(time.time()))
        # Which replica sent it (the leader's identity, as in its API requests).
        headers["User-Agent"] = kube_user_agent()
        timeout = aiohttp.ClientTimeout(total=endpoint.timeout_seconds)
        async with ctx.http.post(
            url, data=payload, headers=headers, timeout=timeout, allow_redirects=False
        ) as resp:
            if 200 <= resp.status < 300:
                return None
            text = (await resp.content.read(ERROR_BODY_CHARS)).decode(errors="replace")
            return clip(f"HTTP {resp.status}: {text.strip()}", 400)
    except (aiohttp.ClientError, TimeoutError, OSError, LookupError, ValueError) as e:
        return clip(describe(e), 400)


async def _write(
    kube: Kube,
    body: kopf.Body,
    states: list[dict[str, Any]] | None,
    cond: tuple[bool, str, str] | None,
    stopped: Any,
) -> None:
    """Write the endpoint states and the condition (removed when ``cond`` is None) over
    the Rollout as kopf last saw it, conditioned on its resourceVersion; after a
    conflict, again over kopf's newer copy (module docstring). Bounded: ``WRITE_TRIES``."""
    for _ in range(WRITE_TRIES):
        fresh = Rollout.model_validate(dict(body))
        conds = [c for c in fresh.status.conditions or [] if c.type != plan.CONDITION]
        if cond is not None:
            healthy, reason, message = cond
            conds = set_condition(
                fresh.status.conditions,
                type=plan.CONDITION,
                status=ConditionStatus.TRUE if healthy else ConditionStatus.FALSE,
                reason=reason,
                message=message,
                generation=fresh.metadata.generation or 0,
                now=datetime.now(UTC),
            )
        patch = {
            "notifications": states,
            "conditions": [c.model_dump(by_alias=True, mode="json") for c in conds],
        }
        seen = fresh.metadata.resource_version
        try:
            await kube.patch_status(
                PLURAL, fresh.metadata.namespace, fresh.metadata.name, patch, resource_version=seen
            )
        except Conflict:
            # Wait (bounded) for kopf's copy of the newer Rollout, then write over it.
            for _ in range(250):
                if stopped or body.metadata.get("resourceVersion") != seen:
                    break
                await asyncio.sleep(0.02)
            continue
        # Wait (bounded) until kopf hands over the Rollout with this write in it, so the
        # next round never decides on a copy older than its own state.
        for _ in range(250):
            if stopped or body.metadata.get("resourceVersion") != seen:
                break
            await asyncio.sleep(0.02)
        return
    log.warning(
        "%s/%s: notification state not written after %d conflicts; the next round "
        "writes it (events may be sent again, with the same id)",
        body.metadata.get("namespace"),
        body.metadata.get("name"),
        WRITE_TRIES,
    )
