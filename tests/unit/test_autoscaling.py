"""Autoscaling (issue 14 §3): the Rollout's scale subresource in the CRD, the status
fields an HPA reads (``status.replicas``, ``status.selector``), and how the state machine
sizes stable and candidate when an autoscaler moves ``spec.replicas`` mid-rollout: it
follows, keeps the step, the weight and the invariants, and never writes spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example as case
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.api import crds, rollout
from ferryman.api.rollout import MAX_REPLICAS, RolloutPhase, RolloutStatus, Weights
from ferryman.plan import scale
from ferryman.plan.decision import DeploymentState
from unit.machine_sim import Sim, canary_spec, check_writes, retarget
from unit.test_machine_strategies import ISTIO, settled, spec_with, to_version

STEPS = [{"setWeight": 50}, {"pause": {}}]


def resize(sim: Sim, replicas: int) -> None:
    """What an HPA does through the scale subresource: spec.replicas, nothing else."""
    sim.spec = sim.spec.model_copy(update={"replicas": replicas})


def paused_at_half() -> Sim:
    """4 replicas; canary 1.1.0 at 50%, paused until promote."""
    sim = Sim(canary_spec(STEPS))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.status.phase == RolloutPhase.PAUSED)
    assert sim.route is not None and sim.route.candidate_weight == 50
    assert sim.replicas == {"1.0.0": 4, "1.1.0": 2}
    return sim


# --- the CRD -----------------------------------------------------------------------------


def rollout_crd() -> dict[str, Any]:
    return crds.documents()[f"{rollout.PLURAL}.ferryman.dev.yaml"]


def test_the_rollout_crd_has_the_scale_subresource() -> None:
    (version,) = rollout_crd()["spec"]["versions"]
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }
    props = version["schema"]["openAPIV3Schema"]["properties"]
    replicas = props["spec"]["properties"]["replicas"]
    # The API server fills in 1 (a scale GET without the field is an InternalError).
    assert (replicas["minimum"], replicas["maximum"], replicas["default"]) == (0, 1000, 1)
    assert props["status"]["properties"]["selector"]["type"] == "string"
    assert props["status"]["properties"]["replicas"]["type"] == "integer"


def rules_in(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [r["rule"] for r in node.get("x-kubernetes-validations", [])]
        return own + [rule for value in node.values() for rule in rules_in(value)]
    if isinstance(node, list):
        return [rule for value in node for rule in rules_in(value)]
    return []


def test_no_validation_rule_reads_replicas() -> None:
    """A scale write is validated against the whole object: a CEL rule on replicas could
    refuse a count an autoscaler writes (its scale request would fail)."""
    rules = rules_in(rollout_crd())
    assert len(rules) > 10  # the walk finds the Rollout's rules
    assert [r for r in rules if "replicas" in r.lower()] == []


def test_no_other_field_gets_a_server_default() -> None:
    def defaults(node: Any, path: str = "") -> list[str]:
        if isinstance(node, dict):
            own = [path] if "default" in node else []
            return own + [p for k, v in node.items() for p in defaults(v, f"{path}.{k}")]
        if isinstance(node, list):
            return [p for v in node for p in defaults(v, path)]
        return []

    assert defaults(rollout_crd()) == [
        ".spec.versions.schema.openAPIV3Schema.properties.spec.properties.replicas"
    ]


def test_only_the_rollout_crd_scales() -> None:
    mv = crds.documents()["modelversions.ferryman.dev.yaml"]
    assert mv["spec"]["versions"][0]["subresources"] == {"status": {}}


# --- status.replicas and status.selector (pure) ------------------------------------------


def status(**kw: Any) -> RolloutStatus:
    return RolloutStatus.model_validate(kw)


def test_serving_versions_follow_live_weight_only() -> None:
    assert scale.serving_versions(status()) == []
    assert scale.serving_versions(status(stableVersion="1.0.0")) == ["1.0.0"]
    canary = status(stableVersion="1.0.0", candidateVersion="1.1.0")
    canary.weights = Weights(stable=90, candidate=10)
    assert scale.serving_versions(canary) == ["1.0.0", "1.1.0"]
    # A preview or a shadow: mirrored traffic only.
    canary.weights = Weights(stable=100, candidate=0, mirror_percent=20)
    assert scale.serving_versions(canary) == ["1.0.0"]
    canary.weights = Weights(stable=0, candidate=100)
    assert scale.serving_versions(canary) == ["1.1.0"]


def test_selector_is_the_string_form_the_hpa_parses() -> None:
    assert scale.selector("fraud", []) == "ferryman.dev/rollout=fraud"
    assert (
        scale.selector("fraud", ["1.1.0", "1.0.0"])
        == "ferryman.dev/rollout=fraud,ferryman.dev/version in (1.0.0,1.1.0)"
    )
    # The pods' own label values: build metadata's '+' is not a label character.
    assert scale.selector("fraud", ["1.3.0-rc.1+build.5"]).endswith(
        "version in (1.3.0-rc.1_build.5)"
    )


def test_set_scale_status_counts_ready_pods_of_serving_versions() -> None:
    s = status(stableVersion="1.0.0", candidateVersion="1.1.0")
    s.weights = Weights(stable=50, candidate=50)
    deps = {
        "1.0.0": DeploymentState(replicas=4, available=3),
        "1.1.0": DeploymentState(replicas=2, available=2),
        "0.9.0": DeploymentState(replicas=4, available=4),  # warm previous stable
    }
    scale.set_scale_status(s, "fraud", deps)
    assert s.replicas == 5
    assert s.selector == "ferryman.dev/rollout=fraud,ferryman.dev/version in (1.0.0,1.1.0)"
    nothing = status()
    scale.set_scale_status(nothing, "fraud", {"1.0.0": DeploymentState(2, 1)})
    assert (nothing.replicas, nothing.selector) == (1, "ferryman.dev/rollout=fraud")


def test_reference_replicas_holds_a_growing_count_only() -> None:
    assert scale.reference_replicas(8, None, from_zero=0) == 8
    assert scale.reference_replicas(8, 4, from_zero=0) == 4  # growing: held at 4
    assert scale.reference_replicas(2, 4, from_zero=0) == 2  # shrinking: at once
    assert scale.next_capacity(8, 4, available=2, need=4) == 4
    assert scale.next_capacity(8, 4, available=4, need=4) == 8
    assert scale.next_capacity(2, 4, available=0, need=1) == 2


def test_back_from_zero_the_reference_is_what_backs_the_weight_now() -> None:
    """capacityReplicas 0 (the weight was last held at spec.replicas 0, by no pod): the
    reference is ``from_zero`` (the stable's Ready pods, or replicas for a preview), never
    0 once it has Ready pods, and 0 stays 0 until the candidate is Ready again."""
    assert scale.reference_replicas(4, 0, from_zero=0) == 0  # nothing Ready anywhere yet
    assert scale.reference_replicas(4, 0, from_zero=3) == 3
    assert scale.reference_replicas(4, 0, from_zero=9) == 4
    assert scale.reference_replicas(0, 0, from_zero=4) == 0  # at zero
    assert scale.next_capacity(0, 4, available=0, need=0) == 0
    assert scale.next_capacity(8, 0, available=1, need=4) == 0
    assert scale.next_capacity(8, 0, available=4, need=4) == 8


# --- the state machine, driven through the real executor --------------------------------


def test_status_fields_through_a_canary() -> None:
    sim = Sim(canary_spec(STEPS))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    assert sim.status.selector == "ferryman.dev/rollout=fraud,ferryman.dev/version in (1.0.0)"
    assert sim.status.replicas == 4
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.status.phase == RolloutPhase.PAUSED)
    sim.tick()  # the status written after the candidate's pods were counted Ready
    assert sim.status.selector == (
        "ferryman.dev/rollout=fraud,ferryman.dev/version in (1.0.0,1.1.0)"
    )
    assert sim.status.replicas == 6


def test_scale_up_mid_canary_resizes_both_and_keeps_step_and_weight() -> None:
    sim = paused_at_half()
    step, started = sim.status.current_step, sim.status.step_started_at
    since = len(sim.moments)
    resize(sim, 8)
    sim.reconcile()  # the Rollout's watch event: no pod is Ready yet
    assert sim.replicas == {"1.0.0": 8, "1.1.0": 4}
    assert sim.route is not None and sim.route.candidate_weight == 50  # no dip
    assert sim.status.capacity_replicas == 4
    sim.tick()
    assert sim.route.candidate_weight == 50 and sim.status.capacity_replicas == 8
    assert (sim.status.current_step, sim.status.step_started_at) == (step, started)
    assert sim.status.phase == RolloutPhase.PAUSED
    assert not [e for e in sim.events if e.reason in ("CandidateUnready", "Weight")][1:]
    assert sim.status.replicas == 12
    check_writes(sim, since)


def test_scale_down_mid_canary_shrinks_both_after_the_route() -> None:
    sim = paused_at_half()
    since = len(sim.moments)
    resize(sim, 2)
    sim.tick()
    assert sim.replicas == {"1.0.0": 2, "1.1.0": 1}
    assert sim.route is not None and sim.route.candidate_weight == 50
    assert sim.status.capacity_replicas == 2
    check_writes(sim, since)


def test_candidate_pods_unready_during_a_scale_up_still_lose_weight() -> None:
    sim = paused_at_half()
    resize(sim, 8)
    sim.unready["1.1.0"] = 4  # none of the 4 candidate pods turn Ready
    sim.tick()
    assert sim.route is not None and sim.route.candidate_weight == 0
    sim.unready.clear()
    sim.tick()
    assert sim.route.candidate_weight == 50


def test_a_resize_back_and_forth_does_not_flap_the_route() -> None:
    sim = paused_at_half()
    since = sim.status.pause.since if sim.status.pause else None
    routes = []
    for replicas in (8, 4, 10, 3, 6, 0, 5):
        resize(sim, replicas)
        sim.reconcile()
        routes.append(sim.route)
        sim.tick()
        routes.append(sim.route)
    assert {r.candidate_weight for r in routes if r is not None} == {50}
    assert sim.status.current_step == 1 and sim.status.phase == RolloutPhase.PAUSED
    assert sim.status.pause is not None and sim.status.pause.since == since


def test_promotion_after_a_scale_up_needs_the_new_size() -> None:
    sim = paused_at_half()
    resize(sim, 8)
    sim.reconcile("promote")
    assert sim.replicas["1.1.0"] == 8 and sim.status.stable_version == "1.0.0"
    sim.tick()
    assert sim.status.stable_version == "1.1.0" and sim.status.phase == RolloutPhase.HEALTHY


def test_blue_green_preview_follows_a_scale_up_without_a_deadline_rollback() -> None:
    """A Ready preview waiting for promote longer than progressDeadlineSeconds: an HPA
    scale-up resizes both; it is not a wait for the deadline (which has passed)."""
    sim = settled(Sim(spec_with({"blueGreen": {}}, ISTIO)))
    to_version(sim, "1.1.0")
    sim.run_until(lambda s: s.status.phase == RolloutPhase.PAUSED)
    assert sim.replicas == {"1.0.0": 4, "1.1.0": 4}
    assert sim.status.selector == "ferryman.dev/rollout=fraud,ferryman.dev/version in (1.0.0)"
    sim.tick(300)  # > progressDeadlineSeconds (120)
    resize(sim, 6)
    sim.reconcile()
    assert sim.replicas == {"1.0.0": 6, "1.1.0": 6}
    assert sim.status.phase == RolloutPhase.PAUSED, sim.status.message
    sim.tick()
    assert sim.status.capacity_replicas == 6 and sim.status.phase == RolloutPhase.PAUSED
    sim.reconcile("promote")
    sim.tick()
    assert sim.status.stable_version == "1.1.0"


# --- back from zero, and any resize: no traffic to a candidate without Ready pods ---------
# At spec.replicas 0 every readiness count is 0 and status.capacityReplicas is 0 (review14
# R1, R2: held against 0, a weight or a preview needed no Ready pod at all once scaled up).


def test_canary_back_from_zero_gives_no_weight_to_an_unready_candidate() -> None:
    sim = paused_at_half()
    resize(sim, 0)
    sim.tick()
    sim.tick()
    assert sim.status.capacity_replicas == 0
    resize(sim, 4)
    sim.broken.add("1.1.0")  # the candidate's new pods never turn Ready
    for _ in range(3):
        sim.tick()
    assert sim.available == {"1.0.0": 4, "1.1.0": 0}
    # What ferryman does on any other scale-up with an unready candidate
    # (test_candidate_pods_unready_during_a_scale_up_still_lose_weight): weight 0.
    assert sim.route is not None and sim.route.candidate_weight == 0, sim.route


def test_blue_green_back_from_zero_mirrors_nothing_to_an_unready_preview() -> None:
    sim = settled(Sim(spec_with({"blueGreen": {"previewMirrorPercent": 20}}, ISTIO)))
    to_version(sim, "1.1.0")
    sim.run_until(lambda s: s.status.phase == RolloutPhase.PAUSED)
    resize(sim, 0)
    sim.tick()
    sim.tick()
    since = len(sim.moments)
    resize(sim, 4)
    sim.broken.add("1.1.0")
    for _ in range(3):
        sim.tick()
    assert sim.available.get("1.1.0") == 0
    assert "preview Ready" not in (sim.status.message or "")
    check_writes(sim, since)  # no mirror written to a version without a Ready pod


def test_canary_back_from_zero_at_a_new_size_weighs_what_its_ready_pods_carry() -> None:
    """Back at 8 (from 4 through 0): on the first reconcile no version has a Ready pod
    and the weight stays (nothing could take it; no withdrawal, no Warning for pods that
    are just starting). Then 1 of the candidate's 4 pods Ready beside 8 Ready stable pods
    carries 12%, not the 50% it once carried with 2 pods at 4; the weight comes back once
    its pods are Ready at 8."""
    sim = paused_at_half()
    resize(sim, 0)
    sim.tick()
    sim.tick()
    since = len(sim.moments)
    resize(sim, 8)
    sim.reconcile()
    assert sim.replicas == {"1.0.0": 8, "1.1.0": 4}
    assert sim.route is not None and sim.route.candidate_weight == 50
    assert not [e for e in sim.events if e.reason == "CandidateUnready"]
    sim.unready["1.1.0"] = 3
    sim.tick()
    sim.tick()
    assert sim.available == {"1.0.0": 8, "1.1.0": 1}
    assert sim.route is not None and sim.route.candidate_weight == 12, sim.route
    assert sim.status.capacity_replicas == 0  # not carried at a non-zero size yet
    sim.unready.clear()
    sim.tick()
    assert sim.route.candidate_weight == 50 and sim.status.capacity_replicas == 8
    assert sim.status.current_step == 1 and sim.status.phase == RolloutPhase.PAUSED
    no_traffic_without_ready_pods(sim, since)


def test_a_stretch_at_zero_does_not_use_up_the_progress_deadline() -> None:
    """At 0 nothing can turn Ready: the progress deadline counts in full from the scale-up
    (before, a canary that sat at 0 longer than progressDeadlineSeconds was rolled back on
    the first reconcile after it, its new pods not yet Ready)."""
    sim = Sim(canary_spec([{"setWeight": 10}, {"pause": {"duration": "5s"}}, {"setWeight": 50}]))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    resize(sim, 0)
    sim.tick()
    retarget(sim, "1.1.0")
    for _ in range(5):
        sim.tick(60)  # 300 s at 0 > progressDeadlineSeconds (120)
    # The clock is stopped once, not moved on every reconcile (each status write wakes
    # the Rollout again: that would be a write loop while it sits at 0).
    assert sim.status.step_started_at is None
    at_zero = sim.status.model_dump()
    sim.tick(60)
    assert sim.status.model_dump() == at_zero
    resize(sim, 4)
    sim.tick()
    assert sim.status.phase == RolloutPhase.PROGRESSING, sim.status.message
    assert sim.status.step_started_at == sim.now
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY, seconds=2)
    assert sim.status.stable_version == "1.1.0"
    # A candidate that never turns Ready after the scale-up still meets the deadline.
    retarget(sim, "1.2.0")
    sim.broken.add("1.2.0")
    sim.tick()
    resize(sim, 0)
    for _ in range(5):
        sim.tick(60)
    resize(sim, 4)
    sim.tick()
    assert sim.status.phase == RolloutPhase.PROGRESSING, sim.status.message
    sim.tick(121)
    assert sim.status.phase == RolloutPhase.ROLLED_BACK
    assert "progress deadline" in (sim.status.message or "")


def test_blue_green_preview_back_from_zero_is_ready_again_at_its_new_size() -> None:
    """A preview that waited for promote past progressDeadlineSeconds, scaled to 0 and
    back to 6: no rollback; no mirror and no 'preview Ready' until its 6 pods are Ready;
    then the mirror again, auto-promotion's clock unchanged."""
    spec = spec_with({"blueGreen": {"previewMirrorPercent": 20}}, ISTIO)
    sim = settled(Sim(spec))
    to_version(sim, "1.1.0")
    sim.run_until(lambda s: s.status.phase == RolloutPhase.PAUSED)
    since_ready = sim.status.stage_since
    sim.tick(300)
    resize(sim, 0)
    sim.tick()
    sim.tick()
    since = len(sim.moments)
    resize(sim, 6)
    sim.unready["1.1.0"] = 6
    sim.tick()
    sim.tick()
    assert sim.status.phase == RolloutPhase.PROGRESSING, sim.status.message
    assert "waiting for 6 Ready replicas" in (sim.status.message or "")
    assert sim.route is not None and sim.route.mirror_percent == 0
    sim.unready["1.1.0"] = 1  # 5 of 6: not Ready at the new size yet
    sim.tick()
    assert sim.route.mirror_percent == 0 and sim.status.phase == RolloutPhase.PROGRESSING
    sim.unready.clear()
    sim.tick()
    assert sim.status.phase == RolloutPhase.PAUSED, sim.status.message
    assert "preview Ready" in (sim.status.message or "")
    assert sim.route.mirror_percent == 20 and sim.status.stage_since == since_ready
    no_traffic_without_ready_pods(sim, since)
    check_writes(sim, since)


def test_a_manual_pause_at_zero_mirrors_nothing_without_ready_pods() -> None:
    """A shadow or preview paused by the user keeps its mirror while its pods are Ready.
    At spec.replicas 0 "ready for ceil(0 x percent)" held for no pod at all: the preview
    (scaled to 0) and a shadow whose kept pods turned unready went on being mirrored to.
    Now a mirror needs a Ready pod at 0 too, and comes back with them after the
    scale-up."""
    for spec in (
        spec_with({"shadow": {"mirrorPercent": 50, "duration": "60s", "then": "promote"}}, ISTIO),
        spec_with({"blueGreen": {"previewMirrorPercent": 20}}, ISTIO),
    ):
        sim = settled(Sim(spec))
        to_version(sim, "1.1.0")
        sim.run_until(lambda s: s.route is not None and s.route.mirror_percent > 0)
        mirror = sim.route.mirror_percent if sim.route else 0
        sim.reconcile("pause")
        since = len(sim.moments)
        resize(sim, 0)
        sim.unready["1.1.0"] = 4  # a paused shadow keeps its pods at 0: none Ready
        sim.tick()
        sim.tick()
        assert sim.available.get("1.1.0") == 0
        assert sim.route is not None and sim.route.mirror_percent == 0, (spec.strategy, sim.route)
        assert sim.status.step_started_at is None  # the deadline stops under a pause too
        resize(sim, 4)
        sim.unready.clear()
        sim.tick()
        sim.tick()
        assert sim.route.mirror_percent == mirror, (spec.strategy, sim.route)
        no_traffic_without_ready_pods(sim, since)


# --- property: any resizes, any readiness ------------------------------------------------


def no_traffic_without_ready_pods(sim: Sim, since: int = 0) -> None:
    """After every route write and at the end of every reconcile since moment ``since``:
    the candidate gets mirrored traffic only with a Ready pod, and (at spec.replicas > 0)
    live weight only with a Ready pod, unless the stable has none either (back from zero:
    nothing could take the weight; at 0 the route keeps its weights)."""
    for m in sim.moments[since:]:
        route = m.route
        if (m.write is not None and m.write[0] != "route") or route is None:
            continue
        if route.candidate is None or route.candidate == route.stable:
            continue
        ready, stable = m.ready.get(route.candidate, 0), m.ready.get(route.stable, 0)
        assert route.mirror_percent == 0 or ready >= 1, (m, sim.writes[-8:])
        if stable > 0 and m.size > 0:
            assert route.candidate_weight == 0 or ready >= 1, (m, sim.writes[-8:])


RESIZE_STRATEGIES = [
    {"canary": {"steps": [{"setWeight": 25}, {"pause": {"duration": "20s"}}, {"setWeight": 50}]}},
    {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
    {"blueGreen": {"previewMirrorPercent": 20}},
    {"blueGreen": {"previewMirrorPercent": 50, "autoPromotionSeconds": 30}},
    {"shadow": {"mirrorPercent": 50, "duration": "30s", "then": "promote"}},
    {"shadow": {"mirrorPercent": 20, "duration": "30s", "then": "canary", "steps": STEPS}},
]
ROUTING = [ISTIO, {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}}]
RESIZE_OPS = st.one_of(
    st.tuples(st.just("resize"), st.sampled_from([0, 0, 1, 2, 3, 4, 6, 8])),
    st.tuples(st.just("tick"), st.integers(1, 40)),
    st.tuples(st.just("unready"), st.integers(0, 8)),
    st.tuples(st.just("broken"), st.booleans()),
    st.tuples(st.just("action"), st.sampled_from(["promote", "pause", "resume"])),
)


@pytest.mark.parametrize("routing", ROUTING, ids=["istio", "gatewayAPI"])
@pytest.mark.parametrize("strategy", RESIZE_STRATEGIES, ids=lambda s: next(iter(s)))
def test_no_traffic_to_a_candidate_without_ready_pods_after_any_resize(
    strategy: dict[str, Any], routing: dict[str, Any]
) -> None:
    """Canary, blue-green and shadow over routers with weights, a candidate mid-rollout,
    then any sequence of resizes (0 among them), time, unready or broken candidate pods
    and user actions: ``no_traffic_without_ready_pods`` after every write, and a message
    that says 'preview Ready' only with Ready preview pods."""

    @settings(max_examples=25, deadline=None)
    @given(ops=st.lists(RESIZE_OPS, max_size=25))
    @case(ops=[("resize", 0), ("broken", True), ("resize", 4)])  # review14 R1, R2
    @case(ops=[("resize", 0), ("unready", 8), ("resize", 8), ("unready", 0)])
    def run(ops: list[tuple[str, Any]]) -> None:
        sim = settled(Sim(spec_with(strategy, routing)))
        to_version(sim, "1.1.0")
        sim.tick()
        sim.tick()
        since = len(sim.moments)
        for op, arg in ops:
            if op == "resize":
                resize(sim, arg)
            elif op == "unready":
                sim.unready["1.1.0"] = arg
            elif op == "broken":
                (sim.broken.add if arg else sim.broken.discard)("1.1.0")
            elif op == "action":
                sim.reconcile(arg)
                continue
            for _ in range(3):
                sim.tick(arg if op == "tick" else 1)
                if "preview Ready" in (sim.status.message or ""):
                    assert sim.available.get("1.1.0", 0) >= 1, sim.status.message
        no_traffic_without_ready_pods(sim, since)

    run()


# --- examples/autoscaling ----------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / "autoscaling" / name).read_text())
    return doc


def test_the_autoscaler_examples_target_the_example_rollout() -> None:
    """The HPA (the API server validates it too, tests/e2e/test_autoscaling.py) and the
    KEDA ScaledObject name the Rollout of examples/rollouts by its scale subresource's
    group/version/kind, within the schema's bounds on spec.replicas."""
    target = yaml.safe_load((EXAMPLES / "rollouts" / "canary-gatewayapi.yaml").read_text())
    ref = {"apiVersion": target["apiVersion"], "kind": "Rollout", "name": "fraud-detector"}
    assert target["metadata"]["name"] == ref["name"]
    hpa, keda = example("hpa.yaml"), example("keda-scaledobject.yaml")
    assert hpa["spec"]["scaleTargetRef"] == ref and keda["spec"]["scaleTargetRef"] == ref
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= MAX_REPLICAS
    assert 0 <= keda["spec"]["minReplicaCount"] <= keda["spec"]["maxReplicaCount"] <= MAX_REPLICAS


def test_the_argocd_example_ignores_replicas_and_respects_it_on_sync() -> None:
    app = example("argocd-application.yaml")
    assert app["spec"]["ignoreDifferences"] == [
        {"group": "ferryman.dev", "kind": "Rollout", "jsonPointers": ["/spec/replicas"]}
    ]
    assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]
    # Otherwise the Application of examples/gitops, unchanged.
    gitops = yaml.safe_load((EXAMPLES / "gitops" / "apps" / "fraud-detection.yaml").read_text())
    assert app["spec"]["source"] == gitops["spec"]["source"]
    assert app["spec"]["destination"] == gitops["spec"]["destination"]


def test_scaled_to_zero_a_canary_holds_its_step_and_resumes() -> None:
    """At spec.replicas 0 every ready_for(ceil(0 * w)) is trivially true: without the
    hold a canary would walk its steps and promote with no pod at all."""
    sim = Sim(canary_spec([{"setWeight": 10}, {"pause": {"duration": "5s"}}, {"setWeight": 50}]))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    resize(sim, 0)
    sim.tick()
    sim.tick()  # status.replicas counts what the reconcile observed: the next one
    assert sim.replicas == {"1.0.0": 0} and sim.status.replicas == 0
    retarget(sim, "1.1.0")
    for _ in range(10):
        sim.tick(2)
    assert sim.status.stable_version == "1.0.0" and sim.status.current_step == 0
    assert "spec.replicas is 0" in (sim.status.message or "")
    assert sim.replicas == {"1.0.0": 0, "1.1.0": 0}
    assert (
        sim.route is not None and sum((sim.route.stable_weight, sim.route.candidate_weight)) == 100
    )
    resize(sim, 4)
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY, seconds=2)
    assert sim.status.stable_version == "1.1.0"
