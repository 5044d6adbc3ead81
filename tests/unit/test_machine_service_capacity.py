"""Plain-Service canaries (weight = replica ratio): Ready capacity behind the live
Service never drops below ``replicas`` because of a decision (DESIGN.md §2), whatever the
transition: candidate turns unready, abort, rollback, new target, weight decrease."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.analysis.evaluate import record_round
from ferryman.api.rollout import Measurement, RolloutPhase, Verdict, Weights
from ferryman.plan.capacity import ratio_weights
from ferryman.plan.decision import DeploymentState
from ferryman.plan.route import Route
from unit.machine_sim import Sim, canary_spec, no_capacity_lost, retarget
from unit.test_machine_properties import STEP

SERVICE: dict[str, Any] = {"service": {}}


def service_sim(steps: list[Any], replicas: int = 4, **extra: Any) -> Sim:
    sim = Sim(canary_spec(steps, replicas=replicas, trafficRouting=SERVICE, **extra))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    return sim


def at_half(**extra: Any) -> Sim:
    """Stable 1.0.0 and candidate 1.1.0 at 50% of 4 replicas, paused."""
    sim = service_sim([{"setWeight": 50}, {"pause": {}}], **extra)
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.status.phase == RolloutPhase.PAUSED and s.replicas["1.0.0"] == 2)
    sim.tick()
    assert sim.available == {"1.0.0": 2, "1.1.0": 2}
    assert sim.status.weights is not None and sim.status.weights.candidate == 50
    return sim


def test_unready_candidate_gives_its_share_back_to_the_stable() -> None:
    # Field case 05: the stable stayed at 2 and status said 50/50 with 0 candidate pods.
    sim = at_half()
    sim.unready["1.1.0"] = 2
    sim.tick()
    assert sim.replicas["1.0.0"] == 4  # scaled back up at once
    assert sim.route == Route(stable="1.0.0", candidate="1.1.0", candidate_weight=0)
    assert sim.status.weights is not None and sim.status.weights.candidate == 0
    assert sim.status.canary_weight == 50  # the nominal step weight is kept
    assert sim.status.phase == RolloutPhase.PAUSED
    assert any(e.reason == "CandidateUnready" and e.type == "Warning" for e in sim.events)
    sim.tick()
    assert sim.available["1.0.0"] == 4
    # One pod back: it carries 25%, the stable gives up one replica.
    sim.unready["1.1.0"] = 1
    sim.tick()
    assert sim.route.candidate_weight == 25 and sim.replicas["1.0.0"] == 3
    sim.unready.clear()
    sim.tick()
    assert sim.replicas == {"1.0.0": 2, "1.1.0": 2} and sim.route.candidate_weight == 50
    sim.tick()
    assert sim.status.weights == Weights(stable=50, candidate=50, mirror_percent=0)
    no_capacity_lost(sim)


def test_abort_keeps_the_candidate_behind_the_service_until_the_stable_is_ready() -> None:
    sim = at_half()
    sim.reconcile("abort")
    assert sim.status.phase == RolloutPhase.ABORTED and sim.status.candidate_version is None
    # The stable is scaled up, but its new pods are not Ready: the Service keeps both.
    assert sim.replicas == {"1.0.0": 4, "1.1.0": 2}
    assert sim.route is not None and sim.route.candidate == "1.1.0"
    assert 0 < sim.route.candidate_weight < 100
    assert "keeps its current pods" in (sim.status.message or "")
    sim.tick()  # the stable is Ready at 4: now the Service drops the candidate
    assert sim.route == Route(stable="1.0.0")
    assert sim.replicas == {"1.0.0": 4}
    assert "keeps its current pods" not in (sim.status.message or "")
    assert sim.status.weights == Weights(stable=100, candidate=0, mirror_percent=0)
    no_capacity_lost(sim)


def test_abort_switches_at_once_when_the_stable_is_already_ready() -> None:
    sim = at_half()
    sim.unready["1.1.0"] = 2
    sim.tick()
    sim.tick()  # the stable is back at 4 Ready
    writes = len(sim.writes)
    sim.reconcile("abort")
    assert sim.route == Route(stable="1.0.0")
    assert sim.writes[writes:] == [("route", Route(stable="1.0.0")), ("delete", "1.1.0")]
    no_capacity_lost(sim)


def test_rollback_from_a_full_weight_step_waits_for_the_stable() -> None:
    sim = service_sim([{"setWeight": 100}, {"pause": {}}])
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.replicas.get("1.0.0") == 0 and s.available.get("1.1.0") == 4)
    sim.reconcile("abort")
    assert sim.replicas == {"1.0.0": 4, "1.1.0": 4}
    assert sim.route is not None and sim.route.candidate == "1.1.0"
    sim.tick()
    assert sim.route == Route(stable="1.0.0") and sim.replicas == {"1.0.0": 4}
    no_capacity_lost(sim)


def test_analysis_rollback_at_half_waits_for_the_stable_then_switches() -> None:
    analysis = {
        "interval": "10s",
        "failureLimit": 0,
        "metrics": [{"name": "error-rate", "query": "err", "max": 0.01}],
    }
    sim = at_half(analysis=analysis)
    a = sim.spec.analysis
    assert a is not None
    bad = Measurement(
        metric="error-rate",
        query="err",
        value=0.5,
        threshold="max 0.01",
        verdict=Verdict.FAILED,
        message="0.5",
        at=sim.now,
    )
    sim.status.analysis = record_round(
        sim.status.analysis, a, [bad], at=sim.now, interval=timedelta(seconds=10)
    )
    sim.reconcile()
    assert sim.status.phase == RolloutPhase.ROLLED_BACK
    assert sim.status.rolled_back_versions == ["1.1.0"]
    assert sim.replicas == {"1.0.0": 4, "1.1.0": 2}  # 2 stable pods are not Ready yet
    assert sim.route is not None and sim.route.candidate == "1.1.0"
    sim.tick()
    assert sim.route == Route(stable="1.0.0") and sim.replicas == {"1.0.0": 4}
    assert [h.outcome for h in sim.status.history or []][-1] == "RolledBack"
    no_capacity_lost(sim)


def test_progress_deadline_with_a_never_ready_candidate_switches_at_once() -> None:
    sim = service_sim([{"setWeight": 50}, {"pause": {}}])
    retarget(sim, "1.1.0")
    sim.broken.add("1.1.0")
    sim.run_until(lambda s: s.status.phase == RolloutPhase.ROLLED_BACK)
    assert sim.route == Route(stable="1.0.0") and sim.replicas == {"1.0.0": 4}
    no_capacity_lost(sim)


def test_new_target_mid_canary_keeps_capacity_and_starts_the_new_candidate_after() -> None:
    sim = at_half()
    retarget(sim, "1.2.0")
    sim.reconcile()
    assert sim.status.candidate_version == "1.2.0"
    # The old candidate stays behind the Service; the new one gets no pods yet (the
    # Service selecting both versions would give them traffic without weight).
    assert sim.replicas == {"1.0.0": 4, "1.1.0": 2, "1.2.0": 0}
    assert sim.route is not None and sim.route.candidate == "1.1.0"
    sim.tick()
    assert "1.1.0" not in sim.replicas and sim.replicas["1.2.0"] == 2
    sim.run_until(lambda s: s.status.phase == RolloutPhase.PAUSED and s.replicas["1.0.0"] == 2)
    assert sim.route == Route(stable="1.0.0", candidate="1.2.0", candidate_weight=50)
    no_capacity_lost(sim)


def test_a_lower_step_weight_shrinks_the_candidate_only_after_the_stable_grew() -> None:
    steps = [{"setWeight": 50}, {"pause": {"duration": "1s"}}, {"setWeight": 25}, {"pause": {}}]
    sim = service_sim(steps)
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.status.canary_weight == 25)
    sim.reconcile()  # woken again before the stable's new pod is Ready
    assert sim.replicas == {"1.0.0": 3, "1.1.0": 2}  # the candidate waits for the stable
    sim.run_until(lambda s: s.replicas.get("1.1.0") == 1 and s.available.get("1.0.0") == 3)
    no_capacity_lost(sim)


def test_a_warm_previous_stable_is_not_behind_the_live_service_during_a_canary() -> None:
    sim = service_sim([{"setWeight": 50}])
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.status.stable_version == "1.1.0")
    assert sim.replicas.get("1.0.0") == 4  # warm for a fast undo
    retarget(sim, "1.2.0")
    sim.reconcile()
    assert "1.0.0" not in sim.replicas  # gone before the Service selects every version
    no_capacity_lost(sim)


def test_ratio_weights_are_the_ready_pods_behind_the_service() -> None:
    deps = {
        "a": DeploymentState(4, 3),
        "b": DeploymentState(2, 1),
    }
    both = Route(stable="a", candidate="b", candidate_weight=50)
    assert ratio_weights(both, deps) == Weights(stable=75, candidate=25, mirror_percent=0)
    only = Route(stable="a", candidate="b", candidate_weight=0)
    assert ratio_weights(only, deps).candidate == 0
    full = Route(stable="a", candidate="b", candidate_weight=100)
    assert ratio_weights(full, deps).candidate == 100
    none_ready = {"a": DeploymentState(4, 0), "b": DeploymentState(2, 0)}
    assert ratio_weights(both, none_ready).candidate == 50  # nominal


OPS = st.one_of(
    st.tuples(st.just("tick"), st.integers(1, 40)),
    st.tuples(st.just("unready"), st.integers(0, 5)),
    st.tuples(st.just("action"), st.sampled_from(["promote", "promote-full", "abort", "undo"])),
    st.tuples(st.just("new-version"), st.sampled_from([False, False, True])),
    st.tuples(st.just("crash"), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(STEP, min_size=1, max_size=5),
    replicas=st.integers(1, 6),
    ops=st.lists(OPS, max_size=30),
)
def test_no_decision_removes_ready_capacity_behind_the_live_service(
    steps: list[dict[str, object]], replicas: int, ops: list[tuple[str, object]]
) -> None:
    sim = service_sim(steps, replicas=replicas)
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
        elif op == "crash":
            # Writes done, status lost: the hold is derived from the cluster, not memory.
            saved = copy.deepcopy(sim.status)
            sim.tick(1)
            sim.status = saved
            sim.reconcile()
        if sim.route is not None:
            assert sim.route.stable_weight + sim.route.candidate_weight == 100
        if sim.status.weights is not None:
            assert sim.status.weights.stable + sim.status.weights.candidate == 100
    no_capacity_lost(sim)
    sim.unready.clear()
    sim.broken.clear()
    sim.tick(1)
    sim.reconcile("abort")
    for _ in range(5):
        sim.tick(200)
    no_capacity_lost(sim)
    # Settled: the stable alone, at full size and Ready, behind the Service.
    assert sim.route is not None and sim.status.candidate_version is None
    assert sim.available.get(sim.route.stable) == replicas


@settings(max_examples=60, deadline=None)
@given(replicas=st.integers(1, 7), weight=st.integers(1, 99))
def test_a_settled_step_on_plain_services_keeps_the_stable_available(
    replicas: int, weight: int
) -> None:
    """The stable sized by ferryman's own plan for any split is Available: its need is
    what the candidate does not carry (an odd split rounds the candidate's share up),
    so Argo CD never shows a healthy plain-Service canary as Degraded."""
    sim = service_sim([{"setWeight": weight}, {"pause": {}}], replicas=replicas)
    sim.run_until(lambda s: s.status.stable_version is not None)
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.status.phase == RolloutPhase.PAUSED)
    sim.tick(5)
    available = next(c for c in sim.status.conditions or [] if c.type == "Available")
    assert available.status == "True", available.message
