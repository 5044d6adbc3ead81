"""Webhook notifications, the pure part (``plan.notifications``, ``plan.notify_payload``):
which event an endpoint is owed, through restarts simulated by re-reading the status as
dumped, the retry schedule, ids, the three formats and the signature."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from ferryman.api.rollout import (
    HistoryEntry,
    Measurement,
    NotificationBinding,
    PauseReason,
    PauseStatus,
    Rollout,
)
from ferryman.api.rollout_notifications import EndpointDelivery, NotificationEvent
from ferryman.plan import notifications as plan
from ferryman.plan import notify_payload as payload
from ferryman.settings import NotificationEndpoint, NotificationRetry, Settings, load

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
ALL = NotificationBinding(endpoint="hook")


def rollout(**status: Any) -> Rollout:
    return Rollout.model_validate(
        {
            "metadata": {"name": "fraud", "namespace": "risk", "uid": "uid-1"},
            "spec": {
                "model": "fraud",
                "target": {"version": "1.1.0"},
                "trafficRouting": {"service": {}},
                "strategy": {"canary": {"steps": [{"setWeight": 10}]}},
                "notifications": [{"endpoint": "hook"}],
            },
            "status": status,
        }
    )


def entry(version: str, outcome: str, minute: int, **kw: Any) -> dict[str, Any]:
    return HistoryEntry.model_validate(
        {"version": version, "outcome": outcome, "at": T0 + timedelta(minutes=minute), **kw}
    ).model_dump(by_alias=True, mode="json")


def reread(state: EndpointDelivery) -> EndpointDelivery:
    """What a restarted operator reads back from status."""
    return EndpointDelivery.model_validate(
        json.loads(json.dumps(state.model_dump(by_alias=True, mode="json")))
    )


def drain(
    ro: Rollout, state: EndpointDelivery, binding: NotificationBinding = ALL
) -> tuple[list[str], EndpointDelivery]:
    """Deliver everything due (every attempt succeeds), re-reading state in between."""
    sent: list[str] = []
    for _ in range(50):
        nxt = plan.next_event(binding, state, ro, T0 + timedelta(hours=1))
        if nxt.event is None:
            return sent, nxt.state
        sent.append(f"{nxt.event.type}:{nxt.event.version}")
        state = reread(plan.delivered(nxt.state, nxt.event, T0))
    raise AssertionError("never drained")


def test_attaching_does_not_replay_history_or_the_current_pause() -> None:
    ro = rollout(
        history=[entry("1.0.0", "Promoted", 0)],
        pause={"reason": "Inconclusive", "since": T0.isoformat()},
        candidateVersion="1.1.0",
    )
    sent, _ = drain(ro, plan.attach("hook", ro))
    assert sent == []


def test_events_after_attach_are_due_in_order_and_superseded_is_passed_over() -> None:
    empty = rollout()
    state = plan.attach("hook", empty)
    assert state.history_cursor == ""
    ro = rollout(
        history=[
            entry("1.0.0", "Promoted", 0),
            entry("1.1.0", "Superseded", 1),
            entry("1.2.0", "RolledBack", 2, cause="Analysis", reason="error-rate failed"),
            entry("1.3.0", "Rejected", 3),
            entry("1.4.0", "Aborted", 4, cause="User"),
        ]
    )
    sent, state = drain(ro, state)
    assert sent == ["Promoted:1.0.0", "RolledBack:1.2.0", "Rejected:1.3.0", "Aborted:1.4.0"]
    assert state.delivered == 4
    assert drain(ro, state)[0] == []  # nothing twice


def test_trimmed_cursor_means_every_entry_present_is_newer() -> None:
    ro = rollout(history=[entry("1.0.0", "Promoted", 0)])
    state = plan.attach("hook", ro)  # cursor: the 1.0.0 entry
    trimmed = rollout(history=[entry("1.1.0", "Promoted", 1), entry("1.2.0", "RolledBack", 2)])
    assert drain(trimmed, state)[0] == ["Promoted:1.1.0", "RolledBack:1.2.0"]


def test_pause_reasons_map_to_events_and_step_pauses_do_not_notify() -> None:
    state = plan.attach("hook", rollout())
    for reason, expected in [
        ("Inconclusive", ["PausedForAnalysis:1.1.0"]),
        ("AnalysisError", ["PausedForAnalysis:1.1.0"]),
        ("AwaitingApproval", ["AwaitingApproval:1.1.0"]),
        ("Step", []),
        ("Manual", []),
    ]:
        # AwaitingApproval is not yet a PauseReason here: the model is built unvalidated,
        # as the status of an operator that has the approval gate would read.
        pause = PauseStatus.model_construct(reason=reason, since=T0, message="")  # type: ignore[arg-type]
        ro = rollout(candidateVersion="1.1.0")
        ro.status.pause = pause
        sent, after = drain(ro, state)
        assert sent == expected, reason
        assert drain(ro, after)[0] == []  # a pause is sent once
    again = rollout(candidateVersion="1.1.0")
    again.status.pause = PauseStatus(
        reason=PauseReason.INCONCLUSIVE, since=T0 + timedelta(minutes=5), message="no data"
    )
    assert drain(again, after)[0] == ["PausedForAnalysis:1.1.0"]  # a new pause: new id


def test_event_filter_per_binding_advances_past_other_events() -> None:
    only = NotificationBinding(endpoint="hook", events=[NotificationEvent.ROLLED_BACK])
    ro = rollout(
        history=[entry("1.0.0", "Promoted", 0), entry("1.1.0", "RolledBack", 1)],
        pause={"reason": "Inconclusive", "since": T0.isoformat()},
    )
    sent, state = drain(ro, plan.attach("hook", rollout()), only)
    assert sent == ["RolledBack:1.1.0"]
    assert plan.next_event(only, state, ro, T0).event is None


def test_ids_are_stable_and_distinct() -> None:
    a = rollout(history=[entry("1.0.0", "Promoted", 0), entry("1.1.0", "Promoted", 1)])
    b = rollout(history=[entry("1.0.0", "Promoted", 0)])
    ids_a = [plan.history_event(a, e).id for e in a.status.history or []]  # type: ignore[union-attr]
    ids_b = [plan.history_event(b, e).id for e in b.status.history or []]  # type: ignore[union-attr]
    assert ids_a[0] == ids_b[0] and ids_a[0] != ids_a[1]
    assert all(i.startswith("n1-") and len(i) == 43 for i in ids_a)
    other = a.model_copy(deep=True)
    other.metadata.uid = "uid-2"  # a recreated Rollout of the same name
    assert plan.history_event(other, other.status.history[0]).id != ids_a[0]  # type: ignore[index,union-attr]


def test_backoff_is_exponential_and_capped() -> None:
    retry = NotificationRetry(initial_delay_seconds=2, max_delay_seconds=60, max_attempts=9)
    assert [plan.backoff(n, retry) for n in range(1, 9)] == [2, 4, 8, 16, 32, 60, 60, 60]
    assert plan.backoff(10_000, retry) == 60


def test_a_failure_is_retried_from_status_across_restarts_then_delivered() -> None:
    retry = NotificationRetry(initial_delay_seconds=1, max_delay_seconds=10, max_attempts=5)
    ro = rollout(history=[entry("1.0.0", "Promoted", 0)])
    state = plan.attach("hook", rollout())
    nxt = plan.next_event(ALL, state, ro, T0)
    assert nxt.event is not None
    state, abandoned = plan.failed(nxt.state, nxt.event, "HTTP 500: boom", T0, retry)
    assert not abandoned and state.last_error and "HTTP 500" in state.last_error
    state = reread(state)  # restart
    waiting = plan.next_event(ALL, state, ro, T0 + timedelta(seconds=0.5))
    assert waiting.event is None and waiting.wait == pytest.approx(0.5)
    again = plan.next_event(ALL, state, ro, T0 + timedelta(seconds=1))
    assert again.event == nxt.event
    state, _ = plan.failed(again.state, again.event, "HTTP 500", T0 + timedelta(seconds=1), retry)
    assert state.pending is not None and state.pending.attempts == 2
    assert state.pending.next_attempt_at == T0 + timedelta(seconds=3)
    state = reread(state)
    third = plan.next_event(ALL, state, ro, T0 + timedelta(seconds=3))
    assert third.event is not None and third.event.id == nxt.event.id
    state = plan.delivered(third.state, third.event, T0 + timedelta(seconds=3))
    assert state.pending is None and state.last_error is None and state.delivered == 1
    assert plan.next_event(ALL, state, ro, T0 + timedelta(hours=1)).event is None


def test_a_pending_pause_is_delivered_after_the_pause_ended() -> None:
    retry = NotificationRetry()
    paused = rollout(
        candidateVersion="1.1.0", pause={"reason": "Inconclusive", "since": T0.isoformat()}
    )
    nxt = plan.next_event(ALL, plan.attach("hook", rollout()), paused, T0)
    assert nxt.event is not None
    state, _ = plan.failed(nxt.state, nxt.event, "timeout", T0, retry)
    resumed = rollout(candidateVersion="1.1.0")  # the pause is over
    later = T0 + timedelta(minutes=1)
    assert plan.next_event(ALL, reread(state), resumed, later).event == nxt.event


def test_after_max_attempts_the_event_is_abandoned_and_the_next_one_is_due() -> None:
    retry = NotificationRetry(initial_delay_seconds=1, max_attempts=2)
    ro = rollout(history=[entry("1.0.0", "Promoted", 0), entry("1.1.0", "RolledBack", 1)])
    state = plan.attach("hook", rollout())
    first = plan.next_event(ALL, state, ro, T0)
    assert first.event is not None
    state, abandoned = plan.failed(first.state, first.event, "HTTP 500", T0, retry)
    assert not abandoned
    state, abandoned = plan.failed(state, first.event, "HTTP 500", T0, retry)
    assert abandoned and state.abandoned == 1 and state.pending is None
    assert state.last_error and state.last_error.startswith("abandoned Promoted of 1.0.0")
    nxt = plan.next_event(ALL, state, ro, T0)
    assert nxt.event is not None and nxt.event.version == "1.1.0"


def test_the_measurement_that_caused_a_rollback() -> None:
    fail = Measurement(
        metric="error-rate", value=0.2, threshold="max 0.01", verdict="Failed", at=T0
    )
    late = Measurement(
        metric="error-rate",
        value=0.3,
        threshold="max 0.01",
        verdict="Failed",
        at=T0 + timedelta(hours=1),
    )
    ok = Measurement(metric="latency", value=0.1, verdict="Successful", at=T0)
    ro = rollout(
        history=[entry("1.1.0", "RolledBack", 1, cause="Analysis")],
        analysis={
            "measurements": [m.model_dump(by_alias=True, mode="json") for m in (fail, ok, late)]
        },
    )
    event = plan.history_event(ro, ro.status.history[0])  # type: ignore[index]
    assert event is not None and event.measurement is not None
    assert (event.measurement.metric, event.measurement.value) == ("error-rate", 0.2)
    user = rollout(history=[entry("1.1.0", "Aborted", 1, cause="User")], analysis={})
    assert plan.history_event(user, user.status.history[0]).measurement is None  # type: ignore[index,union-attr]


def test_condition() -> None:
    ok = EndpointDelivery(endpoint="a", delivered=3)
    bad = EndpointDelivery(endpoint="b", last_error="RolledBack of 1.1.0, attempt 2: HTTP 500")
    assert plan.condition([], [ok], ["a"]) == (
        True,
        "Delivered",
        "every event delivered (3 so far)",
    )
    status, reason, message = plan.condition([], [ok, bad], ["a", "b"])
    assert (status, reason) == (False, "DeliveryFailing") and "b: RolledBack" in message
    status, reason, message = plan.condition(["typo"], [ok], ["a"])
    assert (status, reason) == (False, "UnknownEndpoint")
    assert message == "unknown notification endpoint(s) typo (configured: a)"


# --- payloads and signature --------------------------------------------------------


def _doc() -> tuple[Rollout, dict[str, Any]]:
    fail = Measurement(
        metric="error-rate", value=0.2, threshold="max 0.01", verdict="Failed", at=T0
    )
    ro = rollout(
        phase="RolledBack",
        stableVersion="1.0.0",
        history=[
            entry("1.1.0", "RolledBack", 1, cause="Analysis", reason="error-rate failed 3 times")
        ],
        analysis={"measurements": [fail.model_dump(by_alias=True, mode="json")]},
    )
    event = plan.history_event(ro, ro.status.history[0])  # type: ignore[index]
    assert event is not None
    return ro, payload.generic(event, ro, sent_at=T0 + timedelta(minutes=2), attempt=3)


def test_generic_document() -> None:
    _ro, doc = _doc()
    assert doc == {
        "schema": "ferryman.dev/notification/v1",
        "id": doc["id"],
        "type": "RolledBack",
        "occurredAt": "2026-12-01T08:01:00Z",
        "sentAt": "2026-12-01T08:02:00Z",
        "attempt": 3,
        "rollout": {"namespace": "risk", "name": "fraud", "uid": "uid-1", "model": "fraud"},
        "version": "1.1.0",
        "phase": "RolledBack",
        "stableVersion": "1.0.0",
        "reason": "error-rate failed 3 times",
        "cause": "Analysis",
        "measurement": {
            "metric": "error-rate",
            "value": 0.2,
            "stableValue": None,
            "threshold": "max 0.01",
            "verdict": "Failed",
            "at": "2026-12-01T08:00:00Z",
        },
    }


def test_slack_message_has_text_and_blocks() -> None:
    _ro, doc = _doc()
    msg = json.loads(payload.body("slack", doc))
    assert msg["text"] == "risk/fraud 1.1.0 rolled back: error-rate failed 3 times"
    assert [b["type"] for b in msg["blocks"]] == ["section", "section", "context"]
    assert msg["blocks"][1]["fields"][0] == {"type": "mrkdwn", "text": "*Model*\nfraud"}
    assert doc["id"] in msg["blocks"][2]["elements"][0]["text"]


def test_teams_message_is_one_adaptive_card() -> None:
    _ro, doc = _doc()
    msg = json.loads(payload.body("teams", doc))
    assert msg["type"] == "message"
    (att,) = msg["attachments"]
    assert att["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = att["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    facts = next(b for b in card["body"] if b["type"] == "FactSet")["facts"]
    assert {"title": "Measurement", "value": "error-rate = 0.2 (max 0.01)"} in facts


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown notification format 'email'"):
        payload.body("email", _doc()[1])


def test_signature_is_stripe_style_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id":"n1-x"}'
    header = payload.signature("s3cret", 1764576000, body)
    expected = hmac.new(b"s3cret", b"1764576000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1764576000,v1={expected}"
    assert payload.verify("s3cret", header, body, now=1764576100)
    assert not payload.verify("s3cret", header, body + b" ", now=1764576100)  # tampered
    assert not payload.verify("other", header, body, now=1764576100)  # wrong key
    assert not payload.verify("s3cret", header, body, now=1764576000 + 301)  # replayed late
    rotated = f"{header},v1={'0' * 64}"
    assert payload.verify("s3cret", rotated, body, now=1764576000)


def test_headers_carry_event_id_and_signature_only_with_a_key() -> None:
    ro, doc = _doc()
    event = plan.history_event(ro, ro.status.history[0])  # type: ignore[index]
    assert event is not None
    body = payload.body("generic", doc)
    signed = payload.headers(event, body, "k", 1)
    assert signed["X-Ferryman-Event"] == "RolledBack"
    assert signed["X-Ferryman-Delivery"] == event.id
    assert signed["X-Ferryman-Signature"].startswith("t=1,v1=")
    assert "X-Ferryman-Signature" not in payload.headers(event, body, None, 1)


def test_settings_endpoints(tmp_path: Any) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "notifications:\n"
        "  endpoints:\n"
        "    team-slack: {format: slack, secretName: slack-hook}\n"
        "    audit: {url: 'https://audit.example/hooks', secretName: audit-hmac}\n"
        "  retry: {initialDelaySeconds: 1, maxDelaySeconds: 30, maxAttempts: 8}\n"
    )
    s = load(path, environ={})
    assert s.notifications.endpoints["team-slack"].format == "slack"
    assert s.notifications.retry.max_attempts == 8
    path.write_text("notifications: {endpoints: {x: {format: generic}}}\n")
    with pytest.raises(ValueError, match="needs url or secretName"):
        load(path, environ={})


def test_slack_text_escapes_its_control_characters() -> None:
    """Slack parses &, < and > in message text (links, mentions, <!channel>) and asks
    for them as HTML entities otherwise (api.slack.com/reference/surfaces/formatting,
    "Escaping text"); reasons quote PromQL (`... > 0.05`), and the text between a < and a
    > was taken for a link or a mention (review9 F4)."""
    _ro, doc = _doc()
    doc["reason"] = 'query: sum(x{a="b"}) < 1 and y > 2 & <!channel> <https://evil|click>'
    doc["measurement"]["threshold"] = "max 0.01 (<0.5 & >0)"
    msg = json.loads(payload.body("slack", doc))
    texts = [
        msg["text"],
        msg["blocks"][0]["text"]["text"],
        *(f["text"] for f in msg["blocks"][1]["fields"]),
    ]
    for text in texts:
        assert "<" not in text and ">" not in text, text
    assert msg["text"].endswith(
        'query: sum(x{a="b"}) &lt; 1 and y &gt; 2 &amp; &lt;!channel&gt; &lt;https://evil|click&gt;'
    )
    assert "*Measurement*\nerror-rate = 0.2 (max 0.01 (&lt;0.5 &amp; &gt;0))" in texts


class _SecretStore:
    """The operator's namespace's Secrets as ``kube.get`` answers (values as given)."""

    def __init__(self, secrets: dict[str, dict[str, str]]) -> None:
        self.secrets = secrets

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        assert (api_version, kind, namespace) == ("v1", "Secret", "ferryman")
        found = self.secrets.get(name)
        if found is None:
            return None
        return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in found.items()}}


class _Answer:
    status = 204

    async def __aenter__(self) -> _Answer:
        return self

    async def __aexit__(self, *_: Any) -> None:
        return None


class _Receiver:
    """Records each POST instead of sending it; answers 204."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []

    def post(self, url: str, *, headers: dict[str, str], **_: Any) -> _Answer:
        self.sent.append((url, headers))
        return _Answer()


def _serve(
    monkeypatch: pytest.MonkeyPatch,
    secrets: dict[str, dict[str, str]],
    endpoint: NotificationEndpoint,
    state: EndpointDelivery,
) -> tuple[EndpointDelivery, _Receiver, list[dict[str, Any]]]:
    from ferryman.handlers import namespaces
    from ferryman.handlers import notifications as handler

    posted: list[dict[str, Any]] = []
    monkeypatch.setattr(namespaces, "post", lambda _body, **kw: posted.append(kw))
    receiver = _Receiver()
    ctx = SimpleNamespace(
        settings=Settings(namespace="ferryman"), kube=_SecretStore(secrets), http=receiver
    )
    ro = rollout(history=[entry("1.0.0", "Promoted", 0)])
    new, _wait = asyncio.run(
        handler._serve_endpoint(ctx, {}, ro, ALL, endpoint, state)  # type: ignore[arg-type]
    )
    return new, receiver, posted


def test_a_signed_endpoint_whose_secret_lacks_hmac_key_sends_nothing_and_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An endpoint configured for signing never sends unsigned: a Secret without
    ``hmacKey`` (key deleted or misspelt, Secret not complete yet) is a failed delivery
    of that endpoint, with a Warning Event and the condition naming Secret and key,
    retried by the backoff until the key appears (fix9)."""
    endpoint = NotificationEndpoint(
        url="https://audit.example/hooks", secret_name="audit-hmac", signed=True
    )
    state = plan.attach("hook", rollout())
    secrets = {"audit-hmac": {"hmackey": "typo-0123456789abcdef"}}
    state, receiver, posted = _serve(monkeypatch, secrets, endpoint, state)
    assert receiver.sent == []
    assert state.last_error is not None
    assert "Secret ferryman/audit-hmac has no key hmacKey" in state.last_error
    assert [p["type"] for p in posted] == ["Warning"]
    assert "audit-hmac" in posted[0]["message"] and "hmacKey" in posted[0]["message"]
    healthy, _reason, message = plan.condition([], [state], ["hook"])
    assert not healthy and "Secret ferryman/audit-hmac has no key hmacKey" in message
    assert state.pending is not None and state.pending.attempts == 1
    # The key appears; the retry (made due now) is delivered, signed.
    due = state.pending.model_copy(update={"next_attempt_at": T0})
    state = reread(state.model_copy(update={"pending": due}))
    secrets = {"audit-hmac": {"hmacKey": "k3y-0123456789abcdef"}}
    state, receiver, posted = _serve(monkeypatch, secrets, endpoint, state)
    assert len(receiver.sent) == 1 and "X-Ferryman-Signature" in receiver.sent[0][1]
    assert state.last_error is None and state.delivered == 1 and posted == []


def test_an_endpoint_not_configured_for_signing_sends_unsigned_without_a_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Secret that only holds a credential URL (Slack, Teams) is not a signing
    endpoint: unsigned is what it wants."""
    endpoint = NotificationEndpoint(format="slack", secret_name="slack-hook")
    secrets = {"slack-hook": {"url": "https://hooks.slack.example/T0/B0/X"}}
    state, receiver, posted = _serve(monkeypatch, secrets, endpoint, plan.attach("hook", rollout()))
    assert [url for url, _h in receiver.sent] == ["https://hooks.slack.example/T0/B0/X"]
    assert "X-Ferryman-Signature" not in receiver.sent[0][1]
    assert state.last_error is None and posted == []


def test_a_signed_endpoint_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="signed notification endpoint needs secretName"):
        NotificationEndpoint(url="https://audit.example/hooks", signed=True)


class _ForbiddenSecrets:
    """An API server that refuses every Secret read (403), as RBAC does for a Secret
    name the chart's values do not list."""

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        from ferryman.kube.client import ReadRefused

        raise ReadRefused(f"GET {kind} {namespace}/{name}", 403, "forbidden")


def test_a_secret_the_operator_may_not_read_is_that_endpoints_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 403 on the endpoint's Secret fails that delivery with the condition and a Warning
    Event naming the Secret (retried by the backoff), not the whole round with a traceback
    in the log and no condition (seen in CI: a Role without the Secret's `get`)."""
    from ferryman.handlers import namespaces
    from ferryman.handlers import notifications as handler

    posted: list[dict[str, Any]] = []
    monkeypatch.setattr(namespaces, "post", lambda _body, **kw: posted.append(kw))
    receiver = _Receiver()
    ctx = SimpleNamespace(
        settings=Settings(namespace="ferryman"), kube=_ForbiddenSecrets(), http=receiver
    )
    endpoint = NotificationEndpoint(
        url="https://audit.example/hooks", secret_name="audit-hmac", signed=True
    )
    ro = rollout(history=[entry("1.0.0", "Promoted", 0)])
    state, _wait = asyncio.run(
        handler._serve_endpoint(
            ctx,  # type: ignore[arg-type]
            {},  # type: ignore[arg-type]
            ro,
            ALL,
            endpoint,
            plan.attach("hook", rollout()),
        )
    )
    assert receiver.sent == []
    assert state.last_error is not None
    assert "cannot read Secret ferryman/audit-hmac: HTTP 403" in state.last_error
    assert [p["type"] for p in posted] == ["Warning"]
    assert state.pending is not None and state.pending.attempts == 1
