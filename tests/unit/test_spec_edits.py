"""Spec edits while a rollout runs never skip a gate (DESIGN.md §2; the rule is in
docs/rollouts.md, "Spec edits mid-rollout"): a change of the steps or of the strategy kind
restarts the new plan from its first stage, holding (never raising) the weight already
committed; an analysis change makes the evidence for the next increase be measured again.

Property tests drive a random rollout to a random reachable state, edit the spec at
random (strategy, steps, analysis, replicas; same model, target and router), then check
the next decision and any later sequence of ticks, readiness changes and measurements
without user actions against bounds computed from the new spec alone."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.analysis.evaluate import record_round
from ferryman.api.rollout import (
    Measurement,
    PauseReason,
    RolloutPhase,
    RolloutSpec,
    RolloutStatus,
    Verdict,
)
from ferryman.plan.capacity import needed, selected
from ferryman.plan.evidence import analysis_target
from ferryman.plan.route import Route
from ferryman.plan.spec_edits import analysis_fingerprint, plan_fingerprint
from ferryman.plan.stages import Pause, Preview, SetWeight, Shadow, Stage, stages
from ferryman.routing import router_for
from unit.machine_sim import Sim, canary_spec
from unit.test_machine_properties import ROUTERS, STEP

ERRORS = {"name": "error-rate", "query": 'err{v="{{version}}"}', "max": 0.01}
ANALYSES: list[dict[str, Any] | None] = [
    None,
    {"interval": "10s", "failureLimit": 50, "metrics": [ERRORS]},
    # The same metric judged by another threshold: evidence must be measured again.
    {"interval": "10s", "failureLimit": 50, "metrics": [{**ERRORS, "max": 0.05}]},
    {
        "interval": "10s",
        "failureLimit": 50,
        "metrics": [ERRORS, {"name": "p99", "query": 'p99{v="{{version}}"}', "max": 0.5}],
    },
]


@st.composite
def strategies(draw: st.DrawFn, router: str) -> dict[str, Any]:
    """Any valid strategy for ``router``."""
    kinds = ["canary", "blueGreen"] if router == "service" else ["canary", "blueGreen", "shadow"]
    kind = draw(st.sampled_from(kinds))
    steps = draw(st.lists(STEP, min_size=1, max_size=6))
    if kind == "canary":
        return {"canary": {"steps": steps}}
    if kind == "blueGreen":
        bg: dict[str, Any] = {
            "previewMirrorPercent": 0 if router == "service" else draw(st.integers(0, 100))
        }
        if draw(st.booleans()):
            bg["autoPromotionSeconds"] = draw(st.integers(0, 60))
        return {"blueGreen": bg}
    then = draw(st.sampled_from(["promote", "canary", "stop"]))
    sh: dict[str, Any] = {
        "mirrorPercent": draw(st.integers(0, 100)),
        "duration": f"{draw(st.integers(1, 60))}s",
        "then": then,
    }
    if then == "canary":
        sh["steps"] = steps
    return {"shadow": sh}


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[RolloutSpec, RolloutSpec]:
    """(spec the rollout starts with, the same Rollout edited)."""
    router = draw(st.sampled_from(sorted(ROUTERS)))
    replicas = draw(st.integers(1, 6))

    def spec(strategy: dict[str, Any], analysis: dict[str, Any] | None, n: int) -> RolloutSpec:
        data = canary_spec([{"pause": {}}], replicas=n).model_dump(by_alias=True, exclude_none=True)
        data.update(strategy=strategy, trafficRouting=ROUTERS[router])
        if analysis is not None:
            data["analysis"] = analysis
        return RolloutSpec.model_validate(data)

    old = spec(draw(strategies(router)), draw(st.sampled_from(ANALYSES)), replicas)
    new_replicas = draw(st.sampled_from([replicas, replicas, draw(st.integers(1, 6))]))
    new = spec(draw(strategies(router)), draw(st.sampled_from(ANALYSES)), new_replicas)
    return old, new


BEFORE = st.one_of(
    st.tuples(st.just("tick"), st.integers(1, 40)),
    st.tuples(st.just("tick"), st.integers(1, 3)),
    st.tuples(st.just("unready"), st.integers(1, 5)),
    st.tuples(st.just("ready"), st.just(0)),
    st.tuples(st.just("measure"), st.just(0)),
    st.tuples(st.just("measure"), st.just(0)),
    st.tuples(st.just("action"), st.sampled_from(["promote", "promote-full"])),
)
# After the edit: no user actions.
AFTER = st.one_of(
    st.tuples(st.just("tick"), st.integers(1, 40)),
    st.tuples(st.just("tick"), st.integers(1, 3)),
    st.tuples(st.just("unready"), st.integers(1, 5)),
    st.tuples(st.just("ready"), st.just(0)),
    st.tuples(st.just("measure"), st.just(0)),
)


def measure(sim: Sim) -> None:
    """A Successful round of every metric, when analysis would run now."""
    analysis = sim.spec.analysis
    if analysis is None or analysis_target(sim.spec, sim.status) is None:
        return
    ms = [
        Measurement(metric=m.name, value=0.0, verdict=Verdict.SUCCESSFUL, at=sim.now)
        for m in analysis.metrics
    ]
    sim.status.analysis = record_round(
        sim.status.analysis, analysis, ms, at=sim.now, interval=timedelta(seconds=10)
    )


def apply(sim: Sim, op: str, arg: object) -> None:
    if op == "tick":
        sim.tick(float(arg))  # type: ignore[arg-type]
    elif op == "unready" and sim.status.candidate_version:
        sim.unready[sim.status.candidate_version] = int(arg)  # type: ignore[call-overload]
        sim.tick(1)
    elif op == "ready":
        sim.unready.clear()
        sim.tick(1)
    elif op == "measure":
        measure(sim)
        sim.reconcile()
    elif op == "action":
        sim.reconcile(str(arg))


def retarget(spec: RolloutSpec, version: str) -> RolloutSpec:
    return spec.model_copy(update={"target": spec.target.model_copy(update={"version": version})})


def mid_rollout(spec: RolloutSpec, ops: list[tuple[str, object]]) -> Sim:
    """Stable 1.0.0, then candidate 1.1.0 driven by ``ops``."""
    sim = Sim(spec)
    sim.run_until(lambda s: s.status.stable_version is not None)
    sim.versions.append("1.1.0")
    sim.spec = retarget(spec, "1.1.0")
    sim.reconcile()
    for op, arg in ops:
        apply(sim, op, arg)
    return sim


def in_flight(status: RolloutStatus) -> bool:
    return status.candidate_version is not None and status.phase in (
        RolloutPhase.PROGRESSING,
        RolloutPhase.PAUSED,
    )


def manual(stage: Stage) -> bool:
    """A stage only `kubectl ferryman promote` passes."""
    return (isinstance(stage, Pause) and stage.duration is None) or (
        isinstance(stage, Preview) and stage.auto_after is None
    )


def leading_weight(plan: list[Stage]) -> int:
    """The highest weight the plan's leading setWeight steps reach (no time passes)."""
    w = 0
    for stage in plan:
        if not isinstance(stage, SetWeight):
            break
        w = max(w, stage.weight)
    return w


def carries_traffic(plan: list[Stage]) -> bool:
    """Whether any stage of ``plan`` sends the candidate live or mirrored traffic."""
    return any(
        (isinstance(stage, SetWeight) and stage.weight > 0)
        or (isinstance(stage, Shadow) and stage.percent > 0)
        or (isinstance(stage, Preview) and stage.mirror > 0)
        for stage in plan
    )


def weight_before_gate(plan: list[Stage]) -> int | None:
    """The highest setWeight before the plan's first manual gate; None without one."""
    w = 0
    for stage in plan:
        if manual(stage):
            return w
        if isinstance(stage, SetWeight):
            w = max(w, stage.weight)
    return None


def promoted(sim: Sim, candidate: str) -> bool:
    return sim.status.stable_version == candidate or any(
        h.version == candidate and h.outcome == "Promoted" for h in sim.status.history or []
    )


def edit(sim: Sim, new: RolloutSpec) -> None:
    """GitOps edits the Rollout; the operator reconciles a moment later."""
    sim.spec = retarget(new, "1.1.0")
    sim.now += timedelta(milliseconds=1)
    sim.reconcile()


def candidate_pods(sim: Sim, candidate: str) -> int:
    """Ready candidate pods behind the live Service (plain Services); none once it is the
    stable version (a promotion is checked on its own)."""
    if sim.route is None or sim.route.candidate != candidate:
        return 0
    if candidate not in selected(sim.route, sim.replicas):
        return 0
    return sim.available.get(candidate, 0)


def within(sim: Sim, spec: RolloutSpec, candidate: str, bound: int, pods_before: int) -> bool:
    """The candidate's traffic does not exceed weight ``bound``. With plain Services the
    weight is a share of pods, so the check is in Ready candidate pods behind the live
    Service: no more than before the edit, or than ``bound`` needs (a 1% step already
    takes one whole pod)."""
    if router_for(spec).capabilities.weights_by_replicas:
        allowed = max(pods_before, needed(spec.replicas, bound))
        return candidate_pods(sim, candidate) <= allowed
    weight = sim.route.candidate_weight if sim.route and sim.route.candidate == candidate else 0
    return weight <= bound


@settings(max_examples=500, deadline=None)
@given(scenario=scenarios(), ops=st.lists(BEFORE, max_size=12))
def test_the_next_decision_after_an_edit_never_raises_beyond_the_new_spec(
    scenario: tuple[RolloutSpec, RolloutSpec], ops: list[tuple[str, object]]
) -> None:
    old, new = scenario
    sim = mid_rollout(old, ops)
    before = copy.deepcopy(sim.status)
    if not in_flight(before):
        return
    candidate = before.candidate_version
    assert candidate is not None
    committed = before.canary_weight or 0
    new_plan = stages(new)
    plan_changed = stages(old) != new_plan
    analysis_changed = old.analysis != new.analysis
    pods_before = candidate_pods(sim, candidate)
    edit(sim, new)
    weight = sim.route.candidate_weight if sim.route and sim.route.candidate == candidate else 0
    if plan_changed:
        # The new plan starts from its first stage: at this instant only its leading
        # setWeight steps can move the weight up, and never past a pause or preview.
        allowed = max(committed, leading_weight(new_plan))
        if router_for(new).capabilities.weights_by_replicas and all(
            isinstance(s, SetWeight) or (isinstance(s, Preview) and s.auto_after == timedelta(0))
            for s in new_plan
        ):
            # Nothing holds the new plan before its promotion, and on plain Services
            # scaling the candidate to full size behind the live Service is the promotion
            # itself (docs/rollouts.md, "Plain-Service capacity"): its pods may take their
            # share as they turn Ready.
            allowed = 100
        assert within(sim, new, candidate, allowed, pods_before), (weight, committed, new_plan)
        if promoted(sim, candidate):
            assert all(
                isinstance(s, SetWeight)
                or (isinstance(s, Preview) and s.auto_after == timedelta(0))
                for s in new_plan
            ), new_plan
    if analysis_changed and new.analysis is not None and committed > 0:
        # Evidence for an increase (or promotion) is measured under the new analysis,
        # unless a new plan gives the candidate no traffic at all before its promotion:
        # then there is nothing to measure, as for a new candidate under that plan
        # (docs/rollouts.md, "Spec edits mid-rollout").
        assert within(sim, new, candidate, committed, pods_before)
        if not (plan_changed and not carries_traffic(new_plan)):
            assert not promoted(sim, candidate)


@settings(max_examples=500, deadline=None)
@given(
    scenario=scenarios(),
    ops=st.lists(BEFORE, max_size=12),
    after=st.lists(AFTER, min_size=1, max_size=25),
)
def test_without_user_actions_an_edit_never_passes_the_new_plans_first_manual_gate(
    scenario: tuple[RolloutSpec, RolloutSpec],
    ops: list[tuple[str, object]],
    after: list[tuple[str, object]],
) -> None:
    old, new = scenario
    sim = mid_rollout(old, ops)
    before = copy.deepcopy(sim.status)
    new_plan = stages(new)
    if not in_flight(before) or stages(old) == new_plan:
        return
    gate = weight_before_gate(new_plan)
    if gate is None:
        return
    candidate = before.candidate_version
    assert candidate is not None
    bound = max(before.canary_weight or 0, gate)
    pods_before = candidate_pods(sim, candidate)
    edit(sim, new)
    for op, arg in [("tick", 0), *after]:
        apply(sim, op, arg)
        if sim.route is not None and sim.route.candidate == candidate:
            assert within(sim, new, candidate, bound, pods_before), (sim.route, bound, new_plan)
        assert not promoted(sim, candidate), (new_plan, sim.status.history)


LIVE_STEP = st.one_of(
    st.builds(lambda w: {"setWeight": w}, st.integers(1, 100)),
    st.builds(lambda w: {"setWeight": w}, st.integers(1, 100)),
    st.builds(lambda s: {"pause": {"duration": f"{s}s"}}, st.integers(1, 30)),
    st.just({"pause": {}}),
)


@st.composite
def analysis_edits(draw: st.DrawFn) -> tuple[RolloutSpec, RolloutSpec]:
    """A canary whose steps keep live traffic on the candidate, and the same Rollout with
    another analysis (and maybe other steps)."""
    replicas = draw(st.integers(1, 6))
    old_analysis, new_analysis = draw(st.permutations([a for a in ANALYSES if a]))[:2]
    old_steps = draw(st.lists(LIVE_STEP, min_size=1, max_size=6))
    new_steps = draw(
        st.sampled_from([old_steps, draw(st.lists(LIVE_STEP, min_size=1, max_size=6))])
    )
    return (
        canary_spec(old_steps, replicas=replicas, analysis=old_analysis),
        canary_spec(new_steps, replicas=replicas, analysis=new_analysis),
    )


@settings(max_examples=300, deadline=None)
@given(
    scenario=analysis_edits(),
    ops=st.lists(BEFORE, max_size=12),
    measured=st.booleans(),
    after=st.lists(
        st.one_of(
            st.tuples(st.just("tick"), st.integers(1, 40)),
            st.tuples(st.just("unready"), st.integers(1, 5)),
            st.tuples(st.just("ready"), st.just(0)),
        ),
        min_size=1,
        max_size=15,
    ),
)
def test_after_an_analysis_edit_no_increase_without_evidence_under_it(
    scenario: tuple[RolloutSpec, RolloutSpec],
    ops: list[tuple[str, object]],
    measured: bool,
    after: list[tuple[str, object]],
) -> None:
    old, new = scenario
    sim = mid_rollout(old, [*ops, ("measure", 0)] if measured else ops)
    committed = sim.status.canary_weight or 0
    candidate = sim.status.candidate_version
    if not in_flight(sim.status) or committed == 0:
        return
    assert candidate is not None
    pods_before = candidate_pods(sim, candidate)
    edit(sim, new)
    for op, arg in [("tick", 0), *after]:
        apply(sim, op, arg)
        if sim.route is not None and sim.route.candidate == candidate:
            assert within(sim, new, candidate, committed, pods_before)
        assert not promoted(sim, candidate)


# Examples: the field case and its variations, read as rollouts.

FIELD_CASE = [
    {"setWeight": 10},
    {"pause": {"duration": "2s"}},
    {"setWeight": 50},
    {"pause": {}},
]


def with_strategy(spec: RolloutSpec, strategy: dict[str, Any], **extra: Any) -> RolloutSpec:
    data = spec.model_dump(by_alias=True, exclude_none=True)
    data.update(strategy=strategy, **extra)
    return RolloutSpec.model_validate(data)


def paused_at_the_manual_gate(spec: RolloutSpec) -> Sim:
    sim = mid_rollout(spec, [])
    sim.run_until(lambda s: s.status.phase == RolloutPhase.PAUSED and s.status.current_step == 3)
    assert sim.route is not None and sim.route.candidate_weight == 50
    return sim


def test_field_case_21_shortened_steps_wait_for_promote() -> None:
    sim = paused_at_the_manual_gate(canary_spec(FIELD_CASE, replicas=2))
    shorter = with_strategy(sim.spec, {"canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}})
    edit(sim, shorter)
    for _ in range(10):
        sim.tick(1)
    assert sim.status.stable_version == "1.0.0" and not promoted(sim, "1.1.0")
    assert sim.status.phase == RolloutPhase.PAUSED
    assert sim.status.pause is not None and sim.status.pause.reason == PauseReason.STEP
    assert "promote" in (sim.status.message or "")
    assert sim.status.current_step == 1
    assert sim.route is not None and sim.route.candidate_weight == 10  # the new first step
    assert any(e.reason == "PlanChanged" for e in sim.events)
    sim.reconcile("promote")
    sim.run_until(lambda s: s.status.stable_version == "1.1.0")


def test_a_longer_pause_restarts_its_clock() -> None:
    steps = [{"setWeight": 20}, {"pause": {"duration": "10s"}}, {"setWeight": 60}]
    sim = mid_rollout(canary_spec(steps), [("tick", 1), ("tick", 9)])
    assert sim.status.current_step == 1 and sim.route and sim.route.candidate_weight == 20
    steps[1] = {"pause": {"duration": "30s"}}
    edit(sim, with_strategy(sim.spec, {"canary": {"steps": steps}}))
    sim.tick(25)
    # 9 s of the old pause had passed: the new 30 s start afresh at the edit.
    assert sim.status.current_step == 1 and sim.status.phase == RolloutPhase.PAUSED
    sim.tick(6)
    sim.tick(1)
    assert sim.route.candidate_weight == 60


def test_a_higher_first_step_waits_for_evidence() -> None:
    spec = canary_spec(FIELD_CASE, analysis=ANALYSES[1])
    sim = mid_rollout(spec, [("tick", 1)])
    assert sim.route is not None and sim.route.candidate_weight == 10
    edit(sim, with_strategy(sim.spec, {"canary": {"steps": [{"setWeight": 75}, {"pause": {}}]}}))
    sim.tick(1)
    sim.tick(1)
    assert sim.route.candidate_weight == 10
    assert "evidence" in (sim.status.message or "")
    assert sim.replicas["1.1.0"] == 3  # made Ready for 75% while evidence is awaited
    measure(sim)
    sim.reconcile()
    assert sim.route.candidate_weight == 75 and sim.status.phase == RolloutPhase.PAUSED


def test_canary_to_blue_green_withdraws_live_traffic_and_waits_for_promote() -> None:
    sim = paused_at_the_manual_gate(canary_spec(FIELD_CASE, replicas=2))
    edit(sim, with_strategy(sim.spec, {"blueGreen": {}}))
    for _ in range(5):
        sim.tick(5)
    assert not promoted(sim, "1.1.0")
    assert sim.route is not None and sim.route.candidate_weight == 0  # a preview, no live
    assert "waiting for `kubectl ferryman promote`" in (sim.status.message or "")
    sim.reconcile("promote")
    sim.run_until(lambda s: s.status.stable_version == "1.1.0")


def test_canary_to_shadow_mirrors_only_then_follows_its_then() -> None:
    sim = paused_at_the_manual_gate(canary_spec(FIELD_CASE, replicas=2))
    shadow = {"mirrorPercent": 100, "duration": "20s", "then": "canary", "steps": FIELD_CASE}
    edit(sim, with_strategy(sim.spec, {"shadow": shadow}))
    sim.tick(1)
    assert sim.route == Route(
        stable="1.0.0", candidate="1.1.0", candidate_weight=0, mirror_percent=100
    )
    sim.run_until(lambda s: s.status.current_step == 4 and s.status.phase == RolloutPhase.PAUSED)
    assert sim.route.candidate_weight == 50 and not promoted(sim, "1.1.0")


def test_an_analysis_change_needs_evidence_under_the_new_analysis() -> None:
    steps = [{"setWeight": 20}, {"setWeight": 60}, {"pause": {}}]
    sim = mid_rollout(canary_spec(steps, analysis=ANALYSES[1]), [("tick", 1)])
    assert sim.route is not None and sim.route.candidate_weight == 20
    measure(sim)  # Successful under the old threshold
    edit(sim, with_strategy(sim.spec, {"canary": {"steps": steps}}, analysis=ANALYSES[2]))
    sim.tick(1)
    sim.tick(1)
    assert sim.route.candidate_weight == 20 and sim.status.current_step == 1
    assert any(e.reason == "AnalysisChanged" for e in sim.events)
    measure(sim)
    sim.tick(1)
    sim.tick(1)
    assert sim.route.candidate_weight == 60


def test_replicas_change_keeps_the_plan_position() -> None:
    sim = paused_at_the_manual_gate(canary_spec(FIELD_CASE, replicas=2))
    edit(sim, sim.spec.model_copy(update={"replicas": 4}))
    sim.tick(1)
    assert sim.status.current_step == 3 and sim.route is not None
    assert sim.route.candidate_weight == 50 and sim.replicas == {"1.0.0": 4, "1.1.0": 2}
    assert not any(e.reason == "PlanChanged" for e in sim.events)


def test_a_promote_sent_with_a_plan_change_is_refused() -> None:
    sim = paused_at_the_manual_gate(canary_spec(FIELD_CASE, replicas=2))
    sim.spec = with_strategy(sim.spec, {"canary": {"steps": [{"pause": {}}, {"setWeight": 100}]}})
    sim.reconcile("promote-full")
    sim.tick(1)
    assert not promoted(sim, "1.1.0") and sim.status.current_step == 0
    assert [e.reason for e in sim.events].count("ActionRejected") == 1
    # The verdict the CLI reads says so too (it used to say Applied).
    verdict = sim.status.last_action
    assert verdict is not None and verdict.result == "Rejected"
    assert "plan changed" in verdict.message


def test_an_edit_while_baking_changes_nothing() -> None:
    spec = canary_spec([{"setWeight": 50}], bake={"duration": "1m"})
    sim = mid_rollout(spec, [])
    sim.run_until(lambda s: s.status.phase == RolloutPhase.BAKING)
    edit(sim, with_strategy(sim.spec, {"canary": {"steps": [{"pause": {}}]}}))
    sim.tick(1)
    assert sim.status.phase == RolloutPhase.BAKING and sim.status.stable_version == "1.1.0"
    sim.tick(60)
    assert sim.status.phase == RolloutPhase.HEALTHY


def test_a_status_without_plan_hash_keeps_its_place_only_where_it_fits() -> None:
    sim = paused_at_the_manual_gate(canary_spec(FIELD_CASE, replicas=2))
    # An operator upgrade: the status has no fingerprint yet. Same steps: no restart.
    sim.status.plan_hash = None
    sim.tick(1)
    assert sim.status.current_step == 3 and sim.status.plan_hash is not None
    assert not any(e.reason == "PlanChanged" for e in sim.events)
    # Steps shortened before the upgraded operator saw them: an index past the end
    # restarts the steps rather than promoting.
    sim.status.plan_hash = None
    sim.spec = with_strategy(sim.spec, {"canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}})
    sim.tick(1)
    sim.tick(1)
    assert not promoted(sim, "1.1.0") and sim.status.current_step == 1
    # Paused at the last index, now the end of a one-stage plan: paused at a stage that
    # is not a pause or preview does not fit, so the plan restarts too.
    sim.status.plan_hash = None
    sim.spec = with_strategy(sim.spec, {"blueGreen": {}})
    for _ in range(5):
        sim.tick(1)
    assert not promoted(sim, "1.1.0") and sim.status.current_step == 0
    assert sim.status.phase == RolloutPhase.PAUSED


def test_removing_bake_while_baking_ends_it() -> None:
    spec = canary_spec([{"setWeight": 50}], bake={"duration": "1m"})
    sim = mid_rollout(spec, [])
    sim.run_until(lambda s: s.status.phase == RolloutPhase.BAKING)
    edit(sim, sim.spec.model_copy(update={"bake": None}))
    assert sim.status.phase == RolloutPhase.HEALTHY and sim.status.stable_version == "1.1.0"
    assert "bake removed" in (sim.status.message or "")


def test_fingerprints_are_short_deterministic_and_ignore_what_does_not_matter() -> None:
    base = canary_spec([{"setWeight": 10}, {"pause": {"duration": "60s"}}], analysis=ANALYSES[1])
    same = canary_spec(
        [{"setWeight": 10}, {"pause": {"duration": "1m"}}],
        replicas=6,
        analysis={**ANALYSES[1], "interval": "1m", "failureLimit": 3},  # type: ignore[dict-item]
    )
    # Pinned: a new fingerprint scheme would restart every rollout in flight on upgrade.
    assert plan_fingerprint(base) == plan_fingerprint(same) == "fefe1438a006"
    assert analysis_fingerprint(base) == analysis_fingerprint(same)
    assert analysis_fingerprint(base) == "682e5d8cb027"
    longer = canary_spec([{"setWeight": 10}, {"pause": {"duration": "2m"}}])
    assert plan_fingerprint(longer) != plan_fingerprint(base)
    blue_green = with_strategy(base, {"blueGreen": {}})
    assert plan_fingerprint(blue_green) != plan_fingerprint(base)
    stricter = canary_spec([{"setWeight": 10}], analysis=ANALYSES[2])
    assert analysis_fingerprint(stricter) != analysis_fingerprint(base)


def test_a_preview_edited_into_a_small_canary_on_plain_services_scales_down_before_selecting() -> (
    None
):
    """A blue-green preview (candidate Ready, behind the preview Service only) edited into
    a canary that holds at 10% over plain Services. The live Service selects every Ready
    pod of the candidate, so no more than the one pod 10% needs may be behind it (not 3
    of 6 pods: 50%)."""
    base: dict[str, Any] = {
        "model": "fraud",
        "target": {"version": "1.0.0"},
        "replicas": 3,
        "trafficRouting": {"service": {}},
    }
    old = RolloutSpec.model_validate({**base, "strategy": {"blueGreen": {}}})
    new = RolloutSpec.model_validate(
        {**base, "strategy": {"canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}}}
    )
    sim = mid_rollout(old, [("unready", 1)])
    assert in_flight(sim.status) and candidate_pods(sim, "1.1.0") == 0
    edit(sim, new)
    assert candidate_pods(sim, "1.1.0") <= needed(3, 10), sim.status.message
    for _ in range(20):
        sim.reconcile()
        assert candidate_pods(sim, "1.1.0") <= needed(3, 10), sim.status.message


def test_an_edit_to_a_plan_without_traffic_needs_no_evidence_but_one_with_traffic_does() -> None:
    """Found by the property test: a candidate at 1% under a plan without analysis; the
    edit adds analysis and changes the steps. To ``[setWeight 0]`` the weight drops to 0
    and the candidate is promoted like a new candidate under that plan (nothing to
    measure); to ``[setWeight 5]`` it holds 1% until a measurement under the new
    analysis passes."""
    old = canary_spec([{"setWeight": 1}, {"pause": {"duration": "1s"}}], replicas=1)
    for steps, promotes in (([{"setWeight": 0}], True), ([{"setWeight": 5}], False)):
        sim = mid_rollout(old, [("tick", 1)])
        assert sim.route is not None and sim.route.candidate_weight == 1
        edit(sim, with_strategy(old, {"canary": {"steps": steps}}, analysis=ANALYSES[1]))
        assert promoted(sim, "1.1.0") is promotes, steps
        if not promotes:
            assert sim.route.candidate_weight == 1
            assert "evidence" in (sim.status.message or "")
