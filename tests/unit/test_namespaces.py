"""A terminating namespace's 403s are expected (``handlers.terminating``,
``handlers.namespaces``): the refusal marks the namespace for a while, kopf's records
quoting it are quiet, and no Event about an object there is posted (nor retried)."""

from __future__ import annotations

import logging
from typing import Any

import kopf
import pytest

from ferryman.handlers import namespaces, terminating

REFUSED = (
    'poddisruptionbudgets.policy "fraud-1-1-0" is forbidden: unable to create new content '
    "in namespace ml-gone because it is being terminated"
)


@pytest.fixture(autouse=True)
def no_marks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(terminating, "_TERMINATING", {})


def test_a_refusal_marks_its_namespace_for_a_while() -> None:
    assert terminating.noted("HTTP 403: forbidden: some other reason", "ml-gone", 403) is None
    assert terminating.noted(REFUSED, "ml-gone", 422, now=0.0) is None  # no 403
    assert terminating.noted(REFUSED, "ml-other", 403, now=0.0) is None  # not its own
    assert not terminating.terminating("ml-gone", now=0.0)
    assert terminating.noted(REFUSED, "ml-gone", 403, now=100.0) == "ml-gone"
    assert terminating.lapses_in("ml-gone", now=100.0) == terminating.MEMORY + 1.0
    assert terminating.terminating("ml-gone", now=100.0 + terminating.MEMORY)
    assert not terminating.terminating("ml-gone", now=100.1 + terminating.MEMORY)
    assert not terminating.terminating("ml-other", now=100.0)
    assert terminating.terminating("ml-gone", now=100.0, created="2026-01-01T00:00:00Z")
    assert not terminating.terminating("ml-gone", now=100.0, created="2999-01-01T00:00:00Z")


def record(message: str, level: int = logging.ERROR, **extra: Any) -> logging.LogRecord:
    found = logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)
    found.__dict__.update(extra)
    return found


def test_kopfs_records_quoting_the_refusal_are_quiet() -> None:
    quiet = namespaces.Quiet()
    other = record("Request attempt #1/9 failed; will retry: 500 Internal Server Error")
    assert quiet.filter(other) and other.levelno == logging.ERROR
    quoted = record(f"Request attempt #1/9 failed; will retry: POST ... -> {REFUSED}")
    kept = quiet.filter(quoted)
    assert quoted.levelno == logging.DEBUG
    assert kept == logging.getLogger("kopf.objects").isEnabledFor(logging.DEBUG)
    assert not terminating.terminating("ml-gone")  # no request, no 403: nothing marked
    refused = record(
        "Request attempt #1/9 failed; will retry: POST https://127.0.0.1/api/v1/namespaces/"
        f"ml-gone/events -> APIForbiddenError('{REFUSED}', {{'code': 403}})"
    )
    quiet.filter(refused)
    assert refused.levelno == logging.DEBUG
    assert terminating.terminating("ml-gone")


def test_no_event_is_posted_about_an_object_in_a_terminating_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    posted: list[str] = []
    monkeypatch.setattr(kopf, "event", lambda body, **k: posted.append(body["metadata"]["name"]))
    terminating.noted(REFUSED, "ml-gone", 403)
    for ns, name in (("ml-gone", "a"), ("ml-live", "b")):
        body = {"metadata": {"namespace": ns, "name": name}}
        namespaces.post(body, type="Normal", reason="R", message="m")
    assert posted == ["b"]
    skip = namespaces.Skip()
    assert not skip.filter(record("x", k8s_ref={"namespace": "ml-gone"}))
    assert skip.filter(record("x", k8s_ref={"namespace": "ml-live"}))
    assert skip.filter(record("x"))


def test_install_attaches_the_filters_once() -> None:
    namespaces.install()
    namespaces.install()
    for name in namespaces.KOPF_LOGGERS:
        found = [f for f in logging.getLogger(name).filters if isinstance(f, namespaces.Quiet)]
        assert len(found) == 1, name
    posters = [
        h for h in logging.getLogger("kopf.objects").handlers if type(h).__name__ == "K8sPoster"
    ]
    assert posters and all(
        sum(isinstance(f, namespaces.Skip) for f in h.filters) == 1 for h in posters
    )
