"""The conditions every decision carries: ``Available`` (is the stable version Ready for
the share of traffic it carries, with a Warning Event when it is not) and the standard
Ready / Progressing / Paused / Reconciling / Stalled set from the decided status
(``plan.conditions``; docs/rollouts.md, "What status tells"). Its own module because
these are computed after the decision is made, whatever path made it.
"""

from __future__ import annotations

from ferryman.api.common import ConditionStatus
from ferryman.api.rollout import HistoryCause, HistoryOutcome, RolloutSpec
from ferryman.plan import conditions
from ferryman.plan.capacity import needed
from ferryman.plan.decision import Decision, Event, Observed

AVAILABLE = conditions.AVAILABLE


def set_standard_conditions(d: Decision, observed: Observed) -> None:
    """Ready, Progressing, Paused, Reconciling and Stalled from the decided status
    (``plan.conditions.rollout_conditions``; docs/rollouts.md, "What status tells")."""
    s = d.status
    last = s.history[-1] if s.history else None
    s.conditions = conditions.rollout_conditions(
        s.conditions,
        phase=s.phase.value if s.phase else None,
        pause_reason=s.pause.reason.value if s.pause else None,
        candidate=s.candidate_version,
        stopped=last is not None and last.outcome == HistoryOutcome.STOPPED,
        experiment=last is not None and last.cause == HistoryCause.EXPERIMENT,
        message=s.message or "",
        generation=observed.generation,
        now=observed.now,
    )


def set_available(spec: RolloutSpec, d: Decision, observed: Observed) -> None:
    """``Available=False`` (reason ``StableNotReady``) with a Warning Event when the
    stable version has fewer Ready replicas than its share of traffic needs; True again
    (a Normal Event) when it recovers. No new phase: a rollout in progress keeps its."""
    s = d.status
    if s.stable_version is None:
        return
    weight = (
        d.route.stable_weight
        if d.route is not None
        else (s.weights.stable if s.weights is not None else 100)
    )
    # Plain Services size the stable for what the candidate does not carry (ratio_sizing):
    # an odd split rounds the candidate's share up, so the stable's need is the rest.
    want = (
        spec.replicas - needed(spec.replicas, 100 - weight)
        if observed.capabilities.weights_by_replicas
        else needed(spec.replicas, weight)
    )
    dep = observed.deployments.get(s.stable_version)
    ready = dep.available if dep is not None else 0
    ok = ready >= want
    old = conditions.find(s.conditions, AVAILABLE)
    text = (
        f"stable {s.stable_version} has {ready} Ready replicas; {want} needed for {weight}% "
        "of traffic"
    )
    s.conditions = conditions.set_condition(
        s.conditions,
        type=AVAILABLE,
        status=ConditionStatus.TRUE if ok else ConditionStatus.FALSE,
        reason=conditions.REASON_STABLE_READY if ok else conditions.REASON_STABLE_NOT_READY,
        message=text,
        generation=observed.generation,
        now=observed.now,
    )
    if not ok and (old is None or old.status != ConditionStatus.FALSE):
        d.events.append(Event("Warning", conditions.REASON_STABLE_NOT_READY, text))
    elif ok and old is not None and old.status == ConditionStatus.FALSE:
        d.events.append(Event("Normal", conditions.REASON_STABLE_READY, text))
    if not ok:
        # Look again soon: readiness changes wake the daemon, but make sure.
        d.wake_in(5.0)
