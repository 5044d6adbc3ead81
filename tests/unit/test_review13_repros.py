"""review13's repros of faults found in issue 13's new code (leader election, terminating
namespaces, deletionPolicy KeepStable). Each test states the behaviour that must hold and
fails today (``xfail(strict=True)``): the fixer removes the marker with the fix."""

from __future__ import annotations

import asyncio
import copy
import time
import types
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import kubernetes.aio.leaderelection.leaderelection as library
import pytest

from ferryman.handlers import applied, orphans, terminating
from ferryman.kube import lease as lease_mod
from ferryman.kube.client import ApplyRejected
from ferryman.kube.lease import Timings
from ferryman.routing import router_for
from unit.machine_sim import NAME, NS, Sim, canary_spec, retarget
from unit.test_lease import NAME as LEASE
from unit.test_lease import FakeLeases, elector

TIMINGS = Timings(lease_duration=15, renew_deadline=10, retry_period=2)


class Clocks:
    """A wall clock (``time.time``, what the leader-election library measures expiry
    with) and a monotonic clock (what ferryman's watchdog uses), both moved on by every
    sleep; ``step`` moves the wall clock alone (an NTP step, a VM resumed)."""

    def __init__(self) -> None:
        self.wall = 1_800_000_000.0
        self.mono = 1000.0
        self._real_sleep = asyncio.sleep

    async def sleep(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds
        await self._real_sleep(0)

    def step(self, seconds: float) -> None:
        self.wall += seconds


@pytest.fixture
def clocks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clocks]:
    c = Clocks()
    fake_asyncio = types.SimpleNamespace(**{**vars(asyncio), "sleep": c.sleep})
    monkeypatch.setattr(library, "time", types.SimpleNamespace(time=lambda: c.wall))
    monkeypatch.setattr(library, "asyncio", fake_asyncio)
    monkeypatch.setattr(lease_mod, "time", types.SimpleNamespace(monotonic=lambda: c.mono))
    monkeypatch.setattr(lease_mod, "asyncio", fake_asyncio)
    yield c


def still_leading(e: Any, clocks: Clocks) -> bool:
    """Whether ``e`` still writes: its last renewal is within the renew deadline on its
    monotonic clock (its watchdog has not fired; the process has not exited)."""
    renewed = e.lock.renewed_at
    return renewed is not None and clocks.mono - renewed <= TIMINGS.renew_deadline


def test_r1_a_deleted_lease_does_not_make_a_standby_leader_while_the_leader_runs(
    clocks: Clocks,
) -> None:
    api = FakeLeases()
    a, b = elector(api, "a", TIMINGS), elector(api, "b", TIMINGS)

    async def scenario() -> tuple[bool, bool]:
        await a.acquire()
        assert not await b.election.try_acquire_or_renew()  # b saw a's record
        await clocks.sleep(TIMINGS.retry_period)
        assert await a.election.try_acquire_or_renew()  # a renewed
        del api.objects[LEASE]  # kubectl delete lease ferryman-leader
        await clocks.sleep(TIMINGS.retry_period)
        took = await b.election.try_acquire_or_renew()
        return took, still_leading(a, clocks)

    b_took, a_leading = asyncio.run(scenario())
    assert not (b_took and a_leading), "b became leader while a still writes"


def test_r2_a_wall_clock_step_on_the_standby_does_not_expire_a_renewed_lease(
    clocks: Clocks,
) -> None:
    api = FakeLeases()
    a, b = elector(api, "a", TIMINGS), elector(api, "b", TIMINGS)

    async def scenario() -> tuple[bool, bool]:
        await a.acquire()
        for _ in range(3):
            await clocks.sleep(TIMINGS.retry_period)
            assert await a.election.try_acquire_or_renew()
            assert not await b.election.try_acquire_or_renew()  # b sees each renewal
        clocks.step(TIMINGS.lease_duration + 5)  # NTP steps b's wall clock
        took = await b.election.try_acquire_or_renew()  # a renewed 0 s ago (monotonic)
        return took, still_leading(a, clocks)

    b_took, a_leading = asyncio.run(scenario())
    assert a_leading
    assert not b_took, "b took the Lease a renewed an instant ago"


@pytest.fixture
def no_marks() -> Iterator[None]:
    saved = dict(terminating._TERMINATING)
    terminating._TERMINATING.clear()
    yield
    terminating._TERMINATING.clear()
    terminating._TERMINATING.update(saved)


def test_r3_a_422_quoting_the_terminating_message_does_not_mark_another_namespace(
    no_marks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = Sim(canary_spec([{"setWeight": 10}, {"pause": {}}]))
    sim.run_until(lambda s: s.status.phase is not None and s.route is not None)
    rollout = sim.rollout()
    service = next(
        copy.deepcopy(o)
        for (_v, kind, _ns, name), o in sim.kube.objects.items()
        if kind == "Service" and name == NAME
    )
    service["metadata"].setdefault("annotations", {})["note"] = "changed"
    # An invalid value echoed by the API server (user text from a manifest), in namespace
    # ml, naming namespace prod: not NamespaceLifecycle's 403 about ml.
    quoted = (
        'Service "fraud" is invalid: metadata.annotations: Invalid value: "unable to create '
        'new content in namespace prod because it is being terminated"'
    )

    async def refuse(obj: dict[str, Any]) -> dict[str, Any]:
        raise ApplyRejected(obj["kind"], obj["metadata"]["name"], 422, quoted)

    monkeypatch.setattr(sim.kube, "apply", refuse)
    problems: list[Any] = []
    asyncio.run(applied.apply_owned(sim.kube, rollout, service, problems))
    assert problems  # the refusal is reported
    assert not terminating.terminating("prod"), "prod marked terminating by ml's 422"
    assert not terminating.terminating(NS), "a 422 is no namespace termination"


def test_r4_an_object_created_after_the_mark_in_the_same_second_is_not_terminating(
    no_marks: None,
) -> None:
    marked_at = datetime(2026, 12, 1, 1, 0, 0, 400_000, tzinfo=UTC)
    terminating._TERMINATING["ml"] = (time.monotonic(), marked_at)
    # The new namespace's Rollout created at 01:00:00.900 (after the mark): the API
    # server writes its creationTimestamp truncated to the second.
    created = "2026-12-01T01:00:00Z"
    assert not terminating.terminating("ml", created=created)


def test_r5_keep_stable_does_not_orphan_a_route_it_could_not_move_to_stable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = Sim(canary_spec([{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}]))
    sim.run_until(lambda s: s.status.stable_version is not None and s.route is not None)
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.route is not None and s.route.candidate_weight == 10)
    rollout = sim.rollout()
    router = router_for(rollout.spec)
    real_apply = sim.kube.apply

    async def refuse_route(obj: dict[str, Any]) -> dict[str, Any]:
        if obj["kind"] == router.kind and obj["metadata"]["name"] == NAME:
            raise ApplyRejected(obj["kind"], NAME, 422, "admission webhook denied the request")
        return await real_apply(obj)

    monkeypatch.setattr(sim.kube, "apply", refuse_route)
    try:
        kept = asyncio.run(orphans.keep_stable(sim.kube, rollout, router, "fraud-1.0.0"))
    except Exception:
        return  # refused: the finalizer retries, then reports KeepStableFailed
    assert sim.route is not None and sim.route.candidate_weight == 10  # still split
    assert f"{router.kind} {NAME}" not in kept, "a split route was kept without its candidate"
