"""Rollouts over a lagging index of ferryman's objects (``unit.machine_sim``'s
``index_lag``: entries arrive reconciles late and out of order) keep DESIGN.md §2's
order invariants, also when the route is edited by hand behind the index's back; and a
rollout still ends where it would without the index."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.api.rollout import RolloutPhase
from unit.fake_kube import json_copy
from unit.machine_sim import NAME, NS, Sim, canary_spec, check_writes, retarget
from unit.test_machine_properties import STEP

OPS = st.one_of(
    st.tuples(st.just("tick"), st.integers(1, 40)),
    st.tuples(st.just("unready"), st.integers(0, 5)),
    st.tuples(st.just("action"), st.sampled_from(["promote", "promote-full", "abort", "undo"])),
    st.tuples(st.just("new-version"), st.sampled_from([False, False, True])),
    # The route put back as it was some reconciles ago (kubectl, a GitOps sync), which
    # the lagging index may or may not show yet.
    st.tuples(st.just("edit-route"), st.integers(1, 6)),
)
ROUTERS: list[dict[str, Any]] = [{"service": {}}, {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}}]


def edit_route(sim: Sim, back: int) -> None:
    router = sim.base()[1]
    key = (router.api_version, router.kind, NS, NAME)
    old = sim._history[-1 - min(back, len(sim._history) - 1)].get(key) if sim._history else None
    now = sim.kube.objects.get(key)
    if old is not None and now is not None and old["spec"] != now["spec"]:
        now["spec"] = json_copy(old["spec"])
        now["metadata"]["generation"] = now["metadata"].get("generation", 0) + 1
        sim._refresh()


@settings(max_examples=80, deadline=None)
@given(
    steps=st.lists(STEP, min_size=1, max_size=4),
    replicas=st.integers(1, 5),
    routing=st.sampled_from(ROUTERS),
    lag=st.integers(1, 3),
    seed=st.integers(0, 1000),
    ops=st.lists(OPS, max_size=25),
)
def test_a_lagging_index_never_moves_capacity_before_the_route(
    steps: list[dict[str, object]],
    replicas: int,
    routing: dict[str, Any],
    lag: int,
    seed: int,
    ops: list[tuple[str, object]],
) -> None:
    spec = canary_spec(steps, replicas=replicas, trafficRouting=routing)
    sim = Sim(spec, index_lag=lag, lag_seed=seed)
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    version = 1
    for op, arg in ops:
        if op == "tick":
            sim.tick(float(arg))  # type: ignore[arg-type]
        elif op == "unready" and sim.status.candidate_version:
            sim.unready[sim.status.candidate_version] = int(arg)  # type: ignore[call-overload]
            sim.tick(1)
        elif op == "action":
            sim.reconcile(str(arg))
        elif op == "new-version":
            version += 1
            v = f"1.{version}.0"
            if arg:
                sim.broken.add(v)
            retarget(sim, v)
            sim.reconcile()
        elif op == "edit-route":
            edit_route(sim, int(arg))  # type: ignore[call-overload]
            sim.reconcile()
        if sim.route is not None:
            assert sim.route.stable_weight + sim.route.candidate_weight == 100
    check_writes(sim)
    sim.unready.clear()
    sim.broken.clear()
    sim.tick(1)
    sim.reconcile("abort")
    for _ in range(6):
        sim.tick(200)
    check_writes(sim)
    # Settled: the stable alone, at full size and Ready, the route all on it.
    assert sim.route is not None and sim.status.candidate_version is None
    assert sim.route.stable_weight == 100
    assert sim.available.get(sim.route.stable) == replicas


def test_a_rollout_over_a_lagging_index_ends_healthy_on_the_new_version() -> None:
    for routing in ROUTERS:
        sim = Sim(canary_spec([{"setWeight": 50}], trafficRouting=routing), index_lag=2)
        sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
        retarget(sim, "1.1.0")
        sim.run_until(lambda s: s.status.stable_version == "1.1.0" and len(s.replicas) == 1)
        assert sim.route is not None and sim.route.stable == "1.1.0"
        check_writes(sim)


def test_a_route_put_back_behind_the_index_is_rewritten_before_the_old_stable_goes() -> None:
    """A full promotion's route is written and the old stable kept warm for
    scaleDownDelaySeconds; the route is then put back to the canary's weights by hand, an
    edit the index does not show yet (its entry is our own write, so it is trusted): the
    reconcile that removes the old stable reads the route first and writes it again."""
    for routing in ROUTERS:
        spec = canary_spec([{"setWeight": 50}, {"pause": {}}], trafficRouting=routing)
        sim = Sim(spec, index_lag=3)
        sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
        retarget(sim, "1.1.0")
        sim.run_until(lambda s: s.status.phase == RolloutPhase.PAUSED)
        sim.tick(5)
        canary = json_copy(sim.kube.objects[_route_key(sim)]["spec"])
        sim.reconcile("promote-full")
        sim.run_until(lambda s: s.status.stable_version == "1.1.0")
        sim.tick(5)
        assert sim.replicas.get("1.0.0"), sim.writes[-4:]  # kept warm
        route = sim.kube.objects[_route_key(sim)]
        route["spec"] = canary
        meta = route["metadata"]
        meta["resourceVersion"] = "edited"
        if "generation" in meta:
            meta["generation"] += 1
        sim._refresh()
        moments = len(sim.moments)
        sim.index_lag, sim._history = 1, sim._history[-1:]  # the entry: our own last write
        sim.tick(60)  # the first reconcile after the edit: the delay is over
        assert not sim.replicas.get("1.0.0"), sim.writes[-4:]
        check_writes(sim, moments)
        assert sim.route is not None and sim.route.stable_weight == 100


def _route_key(sim: Sim) -> tuple[str, str, str, str]:
    router = sim.base()[1]
    return (router.api_version, router.kind, NS, NAME)
