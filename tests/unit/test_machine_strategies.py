"""Blue-green, shadow, plain-Service (replica ratio) routing and undo in the state
machine."""

from __future__ import annotations

from typing import Any

from ferryman.api.rollout import RolloutPhase, RolloutSpec
from ferryman.plan.route import Route
from unit.machine_sim import Sim, canary_spec

ISTIO = {"istio": {"hosts": ["fraud.acme.example"]}}
SERVICE: dict[str, Any] = {"service": {}}


def spec_with(
    strategy: dict[str, Any], routing: dict[str, Any] | None = None, **extra: Any
) -> RolloutSpec:
    base = canary_spec([{"setWeight": 10}], **extra).model_dump(by_alias=True, exclude_none=True)
    base["strategy"] = strategy
    if routing is not None:
        base["trafficRouting"] = routing
    return RolloutSpec.model_validate(base)


def to_version(sim: Sim, version: str) -> None:
    sim.versions.append(version)
    sim.spec = sim.spec.model_copy(
        update={"target": sim.spec.target.model_copy(update={"version": version})}
    )


def settled(sim: Sim) -> Sim:
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    return sim


def test_blue_green_previews_then_flips_in_one_write() -> None:
    sim = settled(Sim(spec_with({"blueGreen": {"previewMirrorPercent": 20}}, ISTIO)))
    to_version(sim, "1.1.0")
    d = sim.reconcile()
    assert sim.replicas["1.1.0"] == 4  # full size
    assert d.preview == "1.1.0"
    assert sim.route == Route(stable="1.0.0", candidate="1.1.0")  # no mirror yet
    d = sim.tick()
    assert sim.status.phase == RolloutPhase.PAUSED and d.preview == "1.1.0"
    assert sim.route == Route(stable="1.0.0", candidate="1.1.0", mirror_percent=20)
    sim.tick(500)
    assert sim.route.candidate_weight == 0  # manual promotion: waits
    sim.writes.clear()
    sim.reconcile("promote")
    assert sim.route == Route(stable="1.1.0")
    assert [w for w in sim.writes if w[0] == "route"] == [("route", Route(stable="1.1.0"))]
    assert sim.status.stable_version == "1.1.0"


def test_blue_green_auto_promotion_and_abort() -> None:
    sim = settled(Sim(spec_with({"blueGreen": {"autoPromotionSeconds": 30}}, SERVICE)))
    to_version(sim, "1.1.0")
    sim.reconcile()
    sim.tick()
    assert sim.status.phase == RolloutPhase.PAUSED
    sim.tick(31)
    assert sim.status.stable_version == "1.1.0"
    to_version(sim, "1.2.0")
    sim.reconcile()
    sim.tick()
    sim.reconcile("abort")
    assert sim.status.phase == RolloutPhase.ABORTED and sim.status.stable_version == "1.1.0"
    assert "1.2.0" not in sim.replicas


def shadow(then: str, **extra: Any) -> RolloutSpec:
    return spec_with(
        {"shadow": {"mirrorPercent": 50, "duration": "10s", "then": then, **extra}}, ISTIO
    )


def test_shadow_then_promote_mirrors_then_promotes() -> None:
    sim = settled(Sim(shadow("promote")))
    to_version(sim, "1.1.0")
    sim.reconcile()
    assert sim.replicas["1.1.0"] == 2  # enough for 50% of the traffic, mirrored
    sim.tick()
    assert sim.route == Route(stable="1.0.0", candidate="1.1.0", mirror_percent=50)
    sim.tick(5)
    assert sim.route.mirror_percent == 50 and sim.route.candidate_weight == 0
    sim.run_until(lambda s: s.status.stable_version == "1.1.0")
    assert sim.route == Route(stable="1.1.0")


def test_shadow_then_canary_continues_with_steps() -> None:
    sim = settled(Sim(shadow("canary", steps=[{"setWeight": 25}, {"pause": {}}])))
    to_version(sim, "1.1.0")
    sim.reconcile()
    sim.tick()
    sim.tick(11)  # shadow done: mirror off, canary 25%
    sim.tick()
    assert sim.route == Route(stable="1.0.0", candidate="1.1.0", candidate_weight=25)
    assert sim.status.phase == RolloutPhase.PAUSED
    sim.reconcile("promote")
    sim.tick()
    assert sim.status.stable_version == "1.1.0"


def test_shadow_then_stop_leaves_stable_untouched() -> None:
    sim = settled(Sim(shadow("stop")))
    to_version(sim, "1.1.0")
    sim.reconcile()
    sim.tick()
    sim.run_until(lambda s: s.status.candidate_version is None)
    assert sim.status.phase == RolloutPhase.HEALTHY and sim.status.stable_version == "1.0.0"
    assert sim.route == Route(stable="1.0.0")
    assert "1.1.0" not in sim.replicas
    assert sim.status.history[-1].outcome == "Stopped"  # type: ignore[index]
    sim.tick(100)
    assert "1.1.0" not in sim.replicas  # not started again


def test_shadow_stops_mirroring_while_the_candidate_is_unready() -> None:
    sim = settled(Sim(shadow("promote")))
    to_version(sim, "1.1.0")
    sim.reconcile()
    sim.tick()
    assert sim.route is not None and sim.route.mirror_percent == 50
    sim.unready["1.1.0"] = 1
    sim.tick()
    assert sim.route.mirror_percent == 0 and sim.route.candidate_weight == 0


def test_service_router_canary_keeps_stable_plus_candidate_at_replicas() -> None:
    sim = settled(
        Sim(spec_with({"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}, SERVICE))
    )
    to_version(sim, "1.1.0")
    sim.reconcile()
    # The candidate comes up first; stable keeps all 4 until it is Ready.
    assert sim.replicas == {"1.0.0": 4, "1.1.0": 2}
    sim.tick()
    assert sim.replicas == {"1.0.0": 2, "1.1.0": 2}
    kinds = [w[0] for w in sim.writes]
    assert kinds.index("route") < len(kinds)
    sim.reconcile("promote")
    assert sim.replicas["1.1.0"] == 4
    sim.tick()
    assert sim.status.stable_version == "1.1.0"


def test_undo_returns_to_the_warm_previous_stable() -> None:
    sim = settled(Sim(canary_spec([{"setWeight": 50}])))
    to_version(sim, "1.1.0")
    sim.run_until(lambda s: s.status.stable_version == "1.1.0")
    sim.reconcile("undo")
    assert sim.status.stable_version == "1.0.0" and sim.status.phase == RolloutPhase.ROLLED_BACK
    assert sim.route == Route(stable="1.0.0")
    assert sim.status.rolled_back_versions == ["1.1.0"]
    sim.tick(500)
    assert sim.route == Route(stable="1.0.0")  # not re-rolled while GitOps says 1.1.0


def test_undo_without_a_warm_previous_version_is_rejected() -> None:
    sim = settled(Sim(canary_spec([{"setWeight": 50}])))
    sim.reconcile("undo")
    assert sim.status.phase == RolloutPhase.HEALTHY
    assert any(e.reason == "ActionRejected" for e in sim.events)
