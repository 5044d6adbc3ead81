"""The typed operator context (``handlers.context``): ``python -m ferryman`` hands its
options to kopf's memo, the startup handler creates one ``OperatorContext`` from them
(once per process), every handler reaches it through ``context(memo)``, which says
clearly when startup has not run, and cleanup closes its clients."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from typing import Any

import kopf
import pytest

from ferryman import main, metrics, settings
from ferryman.handlers import lifecycle, wakeups
from ferryman.handlers.context import NotStarted, Options, context, options, options_memo
from ferryman.kube.client import Kube


class FakeClient:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


@dataclass
class Started:
    clients: list[FakeClient] = field(default_factory=list)  # Kube.connect's, in order
    served: list[tuple[str, int]] = field(default_factory=list)  # metrics endpoints bound


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Started:
    """Kube.connect returns a fake client; the metrics endpoint is recorded, not bound."""
    seen = Started()

    async def connect(*_: Any, **__: Any) -> Any:
        seen.clients.append(FakeClient())
        return seen.clients[-1]

    monkeypatch.setattr(Kube, "connect", staticmethod(connect))
    monkeypatch.setattr(metrics, "serve", lambda address, port: seen.served.append((address, port)))
    return seen


async def start(memo: kopf.Memo) -> kopf.OperatorSettings:
    operator_settings = kopf.OperatorSettings()
    configure: Any = lifecycle.configure  # the function kopf registered
    await configure(settings=operator_settings, memo=memo)
    return operator_settings


def test_handlers_before_startup_get_a_clear_error() -> None:
    memo = kopf.Memo()
    with pytest.raises(NotStarted, match=r"startup handler .*lifecycle.configure.* has not run"):
        context(memo)
    with pytest.raises(NotStarted):
        wakeups.wake(memo, "ml", "fraud")


def test_main_hands_its_options_to_kopf(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    async def operator(**kwargs: Any) -> None:
        seen.update(kwargs)

    monkeypatch.setattr(kopf, "operator", operator)
    monkeypatch.setattr(kopf, "configure", lambda **_: None)
    monkeypatch.delenv("FERRYMAN_SETTINGS", raising=False)
    assert main.main(["-n", "a", "-n", "b"]) == 0
    opts = options(seen["memo"])
    assert opts.namespaces == ("a", "b")
    assert opts.settings == settings.load(None)
    assert seen["namespaces"] == ["a", "b"]


def test_startup_creates_one_context_that_every_object_shares(started: Started) -> None:
    opts = Options(settings=settings.Settings(metrics_port=9101), namespaces=("ml",))
    memo = kopf.Memo(options_memo(opts))

    async def scenario() -> None:
        kopf_settings = await start(memo)
        ctx = context(memo)
        assert ctx.kube is started.clients[0]
        assert ctx.options == opts and ctx.settings is opts.settings
        assert kopf_settings.scanning.disabled  # explicit namespaces: nothing to discover
        assert started.served == [("127.0.0.1", 9101)]
        # kopf gives each object a shallow copy of the memo: one context, one wake-up dict.
        per_object = copy.copy(memo)
        wakeups.wake(per_object, "ml", "fraud")
        assert context(per_object) is ctx and ctx.wakeups[("ml", "fraud")].is_set()
        # A second startup in the same process reuses it: no second client or bind.
        await start(memo)
        assert context(memo) is ctx and len(started.clients) == 1
        assert started.served == [("127.0.0.1", 9101)]
        await ctx.http.close()

    asyncio.run(scenario())


def test_startup_without_options_watches_everything_without_settings(started: Started) -> None:
    async def scenario() -> None:
        memo = kopf.Memo()
        kopf_settings = await start(memo)
        ctx = context(memo)
        assert ctx.options == Options() and ctx.settings is None
        assert not kopf_settings.scanning.disabled
        assert started.served == []
        await ctx.http.close()

    asyncio.run(scenario())


def test_cleanup_closes_the_clients(started: Started) -> None:
    async def scenario() -> None:
        memo = kopf.Memo()
        await start(memo)
        ctx = context(memo)
        disconnect: Any = lifecycle.disconnect
        await disconnect(memo=memo)
        assert started.clients[0].closed and ctx.http.closed
        await disconnect(memo=kopf.Memo())  # never started: nothing to close

    asyncio.run(scenario())
