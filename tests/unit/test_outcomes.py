"""How each rollout ends, as data: every path of the state machine records a structured
outcome (and, for rollbacks, a cause), and metrics count by them, never by reason text,
so routine work (a GitOps retarget, a shadow that stops) is never counted as a rollback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ferryman import metrics
from ferryman.api.rollout import HistoryCause, HistoryEntry, HistoryOutcome, RolloutPhase, Verdict
from ferryman.plan.decision import Observed, VersionRecord
from unit import test_machine_analysis as analysis
from unit import test_machine_strategies as strategies
from unit.machine_sim import Sim, canary_spec

Out, Cause = HistoryOutcome, HistoryCause
STEPS = [{"setWeight": 50}, {"pause": {}}]


def healthy(sim: Sim) -> Sim:
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    return sim


def to(sim: Sim, version: str) -> Sim:
    strategies.to_version(sim, version)
    sim.reconcile()
    sim.tick()
    return sim


def first_version() -> Sim:
    return healthy(Sim(canary_spec(STEPS)))


def promoted() -> Sim:
    sim = to(first_version(), "1.1.0")
    sim.reconcile("promote")
    sim.run_until(lambda s: s.status.stable_version == "1.1.0")
    return sim


def analysis_failure() -> Sim:
    sim = Sim(analysis.spec())
    analysis.canary(sim)
    for _ in range(2):
        analysis.measure(sim, Verdict.FAILED, 0.2)
    sim.tick()
    return sim


def baking(sim: Sim) -> Sim:
    analysis.canary(sim)
    analysis.measure(sim, Verdict.SUCCESSFUL)
    sim.tick()
    sim.tick()
    analysis.measure(sim, Verdict.SUCCESSFUL)
    sim.run_until(lambda s: s.status.phase == RolloutPhase.BAKING)
    return sim


def bake_breach() -> Sim:
    sim = baking(Sim(analysis.spec(bake={"duration": "1m"})))
    for _ in range(2):
        analysis.measure(sim, Verdict.FAILED, 0.3)
    sim.tick()
    return sim


def bake_abort() -> Sim:
    sim = baking(Sim(analysis.spec(bake={"duration": "1m"})))
    sim.reconcile("abort")
    return sim


def progress_deadline() -> Sim:
    sim = first_version()
    sim.broken.add("1.1.0")
    to(sim, "1.1.0")
    sim.run_until(lambda s: s.status.phase == RolloutPhase.ROLLED_BACK, seconds=10)
    return sim


def first_rollout_deadline() -> Sim:
    sim = Sim(canary_spec(STEPS))
    sim.broken.add("1.0.0")
    sim.run_until(lambda s: s.status.phase == RolloutPhase.ROLLED_BACK, seconds=10)
    return sim


def user_abort() -> Sim:
    sim = to(first_version(), "1.1.0")
    sim.reconcile("abort")
    return sim


def undo() -> Sim:
    sim = promoted()
    sim.reconcile("undo")
    return sim


def gates_reject() -> Sim:
    sim = healthy(Sim(canary_spec(STEPS, gates={"offlineMetrics": [{"name": "auc", "min": 0.9}]})))
    original = sim.observed

    def observed(action: Any = None) -> Observed:
        # 1.1.0 has no auc: a missing metric fails the gate.
        o = original(action)
        records = tuple(
            VersionRecord(v.name, v.version, metrics={"auc": 0.95} if v.version == "1.0.0" else {})
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
    return to(sim, "1.1.0")


def retarget_mid_rollout() -> Sim:
    return to(to(first_version(), "1.1.0"), "1.2.0")


def retarget_back_to_stable() -> Sim:
    return to(to(first_version(), "1.1.0"), "1.0.0")


def shadow_stop() -> Sim:
    sim = to(healthy(Sim(strategies.shadow("stop"))), "1.1.0")
    sim.run_until(lambda s: s.status.candidate_version is None)
    return sim


PATHS: list[tuple[Callable[[], Sim], str, HistoryOutcome, HistoryCause | None]] = [
    (first_version, "1.0.0", Out.PROMOTED, None),
    (promoted, "1.1.0", Out.PROMOTED, None),
    (analysis_failure, "1.1.0", Out.ROLLED_BACK, Cause.ANALYSIS),
    (bake_breach, "1.1.0", Out.ROLLED_BACK, Cause.BAKE_ANALYSIS),
    (bake_abort, "1.1.0", Out.ABORTED, Cause.USER),
    (progress_deadline, "1.1.0", Out.ROLLED_BACK, Cause.PROGRESS_DEADLINE),
    (first_rollout_deadline, "1.0.0", Out.ROLLED_BACK, Cause.PROGRESS_DEADLINE),
    (user_abort, "1.1.0", Out.ABORTED, Cause.USER),
    (undo, "1.1.0", Out.ROLLED_BACK, Cause.UNDO),
    (gates_reject, "1.1.0", Out.REJECTED, None),
    (retarget_mid_rollout, "1.1.0", Out.SUPERSEDED, None),
    (retarget_back_to_stable, "1.1.0", Out.SUPERSEDED, None),
    (shadow_stop, "1.1.0", Out.STOPPED, None),
]


@pytest.mark.parametrize(
    ("path", "version", "outcome", "cause"), PATHS, ids=[p[0].__name__ for p in PATHS]
)
def test_every_path_records_a_structured_outcome_and_cause(
    path: Callable[[], Sim], version: str, outcome: HistoryOutcome, cause: HistoryCause | None
) -> None:
    last = (path().status.history or [])[-1]
    assert (last.version, last.outcome, last.cause) == (version, outcome, cause)


def sample(name: str, labels: dict[str, str]) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("path", "version", "outcome", "cause"), PATHS, ids=[p[0].__name__ for p in PATHS]
)
def test_metrics_count_by_outcome_and_cause_only(
    path: Callable[[], Sim], version: str, outcome: HistoryOutcome, cause: HistoryCause | None
) -> None:
    ns, name = "outcomes", path.__name__
    metrics.forget(ns, name)
    last = (path().status.history or [])[-1]
    # Reason text must not matter: a misleading one changes nothing.
    metrics.ended(ns, name, last.model_copy(update={"reason": "aborted: analysis bake undo"}))
    ids = {"namespace": ns, "rollout": name}
    ended = sample("ferryman_rollouts_ended_total", {**ids, "outcome": outcome.value})
    assert ended == 1.0
    rollbacks = {
        reason: sample("ferryman_rollbacks_total", {**ids, "reason": reason})
        for reason in [*metrics.ROLLBACK_REASON.values(), "other"]
    }
    if outcome in (Out.ROLLED_BACK, Out.ABORTED):
        assert cause is not None
        assert rollbacks == {
            r: 1.0 if r == metrics.ROLLBACK_REASON[cause] else 0.0 for r in rollbacks
        }
    else:
        assert sum(rollbacks.values()) == 0.0
    assert sample("ferryman_promotions_total", ids) == (1.0 if outcome == Out.PROMOTED else 0.0)
    metrics.forget(ns, name)


def test_every_cause_has_a_rollback_reason_label() -> None:
    assert set(metrics.ROLLBACK_REASON) == set(HistoryCause)
    assert len(set(metrics.ROLLBACK_REASON.values())) == len(HistoryCause)


def test_history_entries_accept_only_the_enum() -> None:
    with pytest.raises(ValueError):
        HistoryEntry.model_validate(
            {"version": "1.0.0", "outcome": "Failed", "at": "2026-11-22T10:00:00Z"}
        )
