"""The watch timeout override the expired-watch e2e test uses
(FERRYMAN_WATCH_TIMEOUT_SECONDS): applied to kopf's settings, refused when not a
positive number."""

from __future__ import annotations

import kopf
import pytest

from ferryman.handlers import lifecycle


def test_default_watch_timeout_is_five_minutes() -> None:
    assert lifecycle.watch_timeout({}) == 300


def test_override_reaches_kopf_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(lifecycle.WATCH_TIMEOUT_ENV, "2")
    s = kopf.OperatorSettings()
    lifecycle.apply_settings(s)
    assert s.watching.server_timeout == 2
    assert s.watching.client_timeout == 32


@pytest.mark.parametrize("raw", ["0", "-5", "soon"])
def test_bad_override_is_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        lifecycle.watch_timeout({lifecycle.WATCH_TIMEOUT_ENV: raw})
