"""The state machine driven by analysis rounds: rollback on failures, pause and resume
on inconclusive or erroring rounds, evidence before weight increases, bake, gates."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ferryman.analysis.evaluate import record_round
from ferryman.api.rollout import Measurement, PauseReason, RolloutPhase, RolloutSpec, Verdict
from ferryman.plan.decision import Observed, VersionRecord
from ferryman.plan.route import Route
from unit.machine_sim import Sim, canary_spec

ANALYSIS = {
    "interval": "10s",
    "failureLimit": 1,
    "inconclusiveLimit": 1,
    "consecutiveErrorLimit": 1,
    "metrics": [{"name": "error-rate", "query": 'err{v="{{version}}"}', "max": 0.01}],
}


def spec(**extra: Any) -> RolloutSpec:
    return canary_spec(
        [{"setWeight": 20}, {"setWeight": 60}, {"pause": {"duration": "5s"}}],
        analysis=ANALYSIS,
        **extra,
    )


def measure(sim: Sim, verdict: Verdict, value: float = 0.0) -> None:
    a = sim.spec.analysis
    assert a is not None
    m = Measurement(
        metric="error-rate",
        query='err{v="1.1.0"}',
        value=value,
        threshold="max 0.01",
        verdict=verdict,
        message=f"{value}",
        at=sim.now,
    )
    sim.status.analysis = record_round(
        sim.status.analysis, a, [m], at=sim.now, interval=timedelta(seconds=10)
    )


def canary(sim: Sim) -> None:
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    sim.versions.append("1.1.0")
    sim.spec = sim.spec.model_copy(
        update={"target": sim.spec.target.model_copy(update={"version": "1.1.0"})}
    )
    sim.reconcile()
    sim.tick()
    assert (
        sim.route is not None and sim.route.candidate_weight == 20
    )  # first step: no evidence needed


def test_weight_increase_waits_for_evidence() -> None:
    sim = Sim(spec())
    canary(sim)
    sim.tick()
    sim.tick()
    assert sim.route is not None and sim.route.candidate_weight == 20
    assert "evidence" in (sim.status.message or "")
    measure(sim, Verdict.SUCCESSFUL)
    sim.tick()
    sim.tick()
    assert sim.route.candidate_weight == 60


def test_failures_beyond_the_limit_roll_back_naming_the_metric() -> None:
    sim = Sim(spec())
    canary(sim)
    measure(sim, Verdict.FAILED, 0.2)
    sim.tick()
    assert sim.status.phase == RolloutPhase.PROGRESSING  # 1 failure, limit 1
    measure(sim, Verdict.FAILED, 0.2)
    sim.writes.clear()
    sim.tick()
    assert sim.status.phase == RolloutPhase.ROLLED_BACK
    reason = sim.status.history[-1].reason  # type: ignore[index]
    assert "error-rate failed 2 times (limit 1)" in reason and "max 0.01" in reason
    assert 'err{v="1.1.0"}' in reason
    assert [w[0] for w in sim.writes] == ["route", "delete"]
    assert sim.status.rolled_back_versions == ["1.1.0"]


def test_inconclusive_and_errors_pause_and_resume_by_themselves() -> None:
    for verdict, reason in (
        (Verdict.INCONCLUSIVE, PauseReason.INCONCLUSIVE),
        (Verdict.ERROR, PauseReason.ANALYSIS_ERROR),
    ):
        sim = Sim(spec())
        canary(sim)
        measure(sim, verdict)
        measure(sim, verdict)
        sim.tick()
        assert sim.status.phase == RolloutPhase.PAUSED
        assert sim.status.pause is not None and sim.status.pause.reason == reason
        assert sim.route is not None and sim.route.candidate_weight == 20  # traffic kept
        measure(sim, Verdict.SUCCESSFUL)
        sim.tick()
        sim.tick()
        assert sim.status.phase != RolloutPhase.ROLLED_BACK
        assert sim.route.candidate_weight == 60  # resumed and moved on


def test_promotion_needs_evidence_then_bake_breach_returns_to_previous() -> None:
    sim = Sim(spec(bake={"duration": "1m"}))
    canary(sim)
    measure(sim, Verdict.SUCCESSFUL)
    sim.tick()
    sim.tick()
    measure(sim, Verdict.SUCCESSFUL)
    sim.run_until(lambda s: s.status.phase == RolloutPhase.BAKING)
    assert sim.route == Route(stable="1.1.0")
    assert sim.replicas.get("1.0.0") == 4  # previous stable kept warm during bake
    measure(sim, Verdict.FAILED, 0.3)
    measure(sim, Verdict.FAILED, 0.3)
    sim.tick()
    assert sim.status.phase == RolloutPhase.ROLLED_BACK
    assert sim.status.stable_version == "1.0.0"
    assert sim.route == Route(stable="1.0.0")
    assert "bake analysis" in sim.status.history[-1].reason  # type: ignore[index]


def test_bake_without_breach_ends_healthy() -> None:
    sim = Sim(spec(bake={"duration": "30s"}))
    canary(sim)
    measure(sim, Verdict.SUCCESSFUL)
    sim.tick()
    sim.tick()
    measure(sim, Verdict.SUCCESSFUL)
    sim.run_until(lambda s: s.status.phase == RolloutPhase.BAKING)
    sim.tick(31)
    assert sim.status.phase == RolloutPhase.HEALTHY and sim.status.stable_version == "1.1.0"


def test_gate_failure_rejects_before_any_deployment() -> None:
    gates = {"offlineMetrics": [{"name": "auc", "maxDropVsStable": 0.005}]}
    sim = Sim(canary_spec([{"setWeight": 50}], gates=gates))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    sim.versions.append("1.1.0")
    sim.spec = sim.spec.model_copy(
        update={"target": sim.spec.target.model_copy(update={"version": "1.1.0"})}
    )
    original = sim.observed

    def observed(action: Any = None) -> Observed:
        o = original(action)
        records = tuple(
            VersionRecord(
                v.name, v.version, metrics={"auc": 0.941 if v.version == "1.0.0" else 0.92}
            )
            for v in o.versions
        )
        return Observed(
            versions=records,
            deployments=o.deployments,
            now=o.now,
            capabilities=o.capabilities,
            action=o.action,
            generation=1,
        )

    sim.observed = observed  # type: ignore[method-assign]
    sim.reconcile()
    assert sim.status.phase == RolloutPhase.REJECTED
    assert "1.1.0" not in sim.replicas
    assert "auc" in sim.status.history[-1].reason  # type: ignore[index]


def test_a_mirrored_preview_is_never_promoted_without_evidence() -> None:
    bg = spec().model_dump(by_alias=True, exclude_none=True)
    bg["strategy"] = {"blueGreen": {"previewMirrorPercent": 50, "autoPromotionSeconds": 2}}
    sim = Sim(RolloutSpec.model_validate(bg))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    sim.versions.append("1.1.0")
    sim.spec = sim.spec.model_copy(
        update={"target": sim.spec.target.model_copy(update={"version": "1.1.0"})}
    )
    sim.reconcile()
    sim.tick()  # preview Ready, mirrored
    measure(sim, Verdict.INCONCLUSIVE)
    # Even if the observed weights were lost (no mirror seen), the plan says it mirrored.
    sim.status.weights = None
    for _ in range(5):
        sim.tick(2)
    assert sim.status.stable_version == "1.0.0"  # auto-promotion waits for evidence...
    assert sim.route is not None and sim.route.mirror_percent == 50  # ...still mirrored
    measure(sim, Verdict.FAILED, 0.5)
    measure(sim, Verdict.FAILED, 0.5)
    sim.tick()
    assert sim.status.phase == RolloutPhase.ROLLED_BACK and sim.status.stable_version == "1.0.0"
