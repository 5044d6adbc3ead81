"""A candidate's progress through its stages: ``progress`` runs the strategy's stages
from ``current_step`` as far as readiness, time and analysis evidence allow, then sizes
the Deployments and the route for where that leaves the rollout (weight is never more
than the candidate's Ready replicas carry). A user's promote, abort, pause or resume
mid-rollout is applied here (pause and resume by ``plan.manual``; a manual pause holds
the walk where it stands, ``hold_stage``); a failed analysis or a passed progress
deadline rolls back (``plan.endings``). Its own module because it is the largest single
rule of the state machine.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ferryman.analysis import evaluate
from ferryman.api.approval import ApprovalPoint
from ferryman.api.common import clip
from ferryman.api.rollout import (
    MAX_MESSAGE,
    QUOTED_QUERY,
    HistoryCause,
    HistoryOutcome,
    PauseReason,
    PauseStatus,
    RolloutPhase,
    RolloutSpec,
    RolloutStatus,
)
from ferryman.plan import approvals, experiment_stage
from ferryman.plan.actions import ActionName
from ferryman.plan.capacity import needed, ratio_sizing, supported
from ferryman.plan.decision import Action, Decision, Event, Observed
from ferryman.plan.endings import promote, rollback, stop_shadow, warm_previous
from ferryman.plan.evidence import (
    analysis_hold,
    had_traffic,
    has_evidence,
    mark_weight_change,
    wake_for_measurement,
)
from ferryman.plan.manual import hold_stage, manual_action
from ferryman.plan.route import Route, weights_of
from ferryman.plan.scale import next_capacity, reference_replicas
from ferryman.plan.spec_edits import follow_spec_edits
from ferryman.plan.stages import Experiment, Pause, Preview, SetWeight, Shadow, Stop, stages
from ferryman.plan.walk import Walk, no_live_weight


def progress(
    spec: RolloutSpec, s: RolloutStatus, observed: Observed, action: Action | None
) -> Decision:
    """Run the strategy's stages from ``current_step`` as far as readiness and time
    allow, then size the Deployments and the route for where that leaves us."""
    assert s.stable_version and s.candidate_version
    now, replicas = observed.now, spec.replicas
    stable, candidate = s.stable_version, s.candidate_version
    plan = stages(spec)
    ratio = observed.capabilities.weights_by_replicas
    events: list[Event] = []
    replanned = follow_spec_edits(spec, s, plan, now, events)
    i = min(s.current_step or 0, len(plan))
    committed = s.canary_weight or 0
    dep = observed.deployments.get(candidate)
    available = dep.available if dep else 0

    def ready_for(count: int) -> bool:
        return dep is not None and dep.replicas >= count and available >= count

    # An approval gate before any traffic holds while nothing has moved yet; promote
    # cannot pass it (plan.approvals).
    tally = approvals.count(
        spec, s, observed.approvals, now, events, approvals.born(observed, s.candidate_version)
    )
    untouched = (s.current_step or 0) == 0 and committed == 0 and s.stage_since is None
    awaiting = untouched and approvals.waits(spec, tally, ApprovalPoint.BEFORE_TRAFFIC)
    refusal: str | None = None
    if action is not None:
        if action.name == ActionName.ABORT:
            return rollback(
                spec,
                s,
                observed,
                phase=RolloutPhase.ABORTED,
                reason="aborted by user",
                outcome=HistoryOutcome.ABORTED,
                cause=HistoryCause.USER,
            )
        if awaiting and tally and action.name in (ActionName.PROMOTE, ActionName.PROMOTE_FULL):
            refusal = approvals.refusal(tally)
        elif replanned and action.name in (ActionName.PROMOTE, ActionName.PROMOTE_FULL):
            # It was meant for a gate of the previous plan: never let it pass a new one.
            refusal = (
                "the plan changed in the same update and starts again from its first "
                "step; promote again to pass its gates"
            )
        elif action.name in (ActionName.PROMOTE, ActionName.PROMOTE_FULL):
            i = len(plan) if action.name == ActionName.PROMOTE_FULL else min(i + 1, len(plan))
            s.pause, s.stage_since, s.step_started_at = None, None, now
            events.append(Event("Normal", "Promote", f"{action.name} by user"))
        else:
            manual_action(action, s, now, events)

    d = Decision(status=s, deployments=None, route=None, events=events)
    d.action_refusal = refusal
    want = needed(replicas, committed)  # candidate replicas to ask for
    s.phase = RolloutPhase.PROGRESSING
    analysis = spec.analysis
    hold = False
    if analysis is not None and s.analysis is not None:
        failed = evaluate.failed_metric(s.analysis, analysis)
        if failed is not None:
            count = (s.analysis.failures or {}).get(failed.metric, 0)
            reason = (
                f"analysis: metric {failed.metric} failed {count} times (limit "
                f"{analysis.failure_limit}): {failed.message}; threshold {failed.threshold}; "
                f"query: {clip(failed.query, QUOTED_QUERY)}"
            )
            return rollback(
                spec,
                s,
                observed,
                phase=RolloutPhase.ROLLED_BACK,
                reason=reason,
                cause=HistoryCause.ANALYSIS,
                measurement=failed,
            )
    manual = s.pause is not None and s.pause.reason == PauseReason.MANUAL
    if manual:
        # A user's pause holds the rollout where it is (analysis keeps running, and a
        # failure above still rolls back) until resume, promote or abort.
        assert s.pause is not None
        s.phase, s.message, hold = RolloutPhase.PAUSED, s.pause.message, True
        held = analysis_hold(s, analysis, now) if analysis and s.analysis else None
        if held is not None:
            # The user's pause shows; analysis trouble stays visible beside it (while
            # measurements fail to run, nothing can roll the candidate back).
            s.message = clip(f"{s.pause.message}; analysis: {held.message}", MAX_MESSAGE)
    elif analysis is not None and s.analysis is not None:
        held = analysis_hold(s, analysis, now)
        if held is not None:
            # Keep traffic where it is; analysis keeps running and lifts the hold.
            s.pause, s.phase, s.message = held, RolloutPhase.PAUSED, held.message
            hold = True
    if awaiting and tally and not hold:
        approvals.hold(spec, s, tally, now)
        hold = True
    if replicas == 0:
        # The progress deadline stops (no pod can turn Ready at 0; unset once, so no
        # status write per reconcile) and counts in full from the scale-up, as after a
        # manual pause's resume; also under a user's pause or an analysis hold.
        s.step_started_at = None
    elif s.step_started_at is None:
        s.step_started_at = now  # back from zero
    if replicas == 0 and not hold:
        # Scaled to zero (an autoscaler's idle state): no pod carries or measures
        # anything, so no step advances and nothing is promoted until replicas return.
        # A pause step keeps its clock (and the phase says Paused).
        s.message, hold = f"spec.replicas is 0: {ZERO_NOTE}", True
        if s.pause is not None:
            s.phase = RolloutPhase.PAUSED
    walk = Walk(spec, s, d, plan, now, candidate, dep, i, committed, want)
    if manual:
        hold_stage(walk, ratio)
    elif hold and isinstance(plan[walk.i] if walk.i < len(plan) else None, Experiment):
        experiment_stage.hold(walk)  # an analysis hold keeps the test's users (review8 R2)
    while not hold and walk.i < len(plan):
        stage = plan[walk.i]
        if isinstance(stage, SetWeight):
            advanced = set_weight(walk, stage)
        elif isinstance(stage, Pause):
            advanced = pause(walk, stage)
        elif isinstance(stage, Shadow):
            advanced = shadow(walk, stage)
        elif isinstance(stage, Preview):
            advanced = preview(walk, stage)
        elif isinstance(stage, Experiment):
            ran = experiment_stage.run(walk, stage)
            if isinstance(ran, experiment_stage.Ending):
                return experiment_stage.end(spec, s, observed, events, ran)
            advanced = ran
        else:
            assert isinstance(stage, Stop)
            return stop_shadow(spec, s, observed, events)
        if not advanced:
            break
    i, committed, want = walk.i, walk.committed, walk.want
    mirror, preview_on, waiting_for_pods = walk.mirror, walk.preview, walk.waiting_for_pods
    s.current_step, s.canary_weight = i, committed
    if s.phase != RolloutPhase.PAUSED:
        s.pause = None

    if i >= len(plan) and (not hold or manual):
        # Promotion: the candidate takes 100% in one write once Ready at full size, and
        # never without evidence from analysis (nor while a user holds it, or it awaits
        # approvals: then only the traffic it has is kept).
        waiting = not manual and approvals.short_at_promotion(spec, tally)
        if waiting and tally:
            approvals.hold(spec, s, tally, now, ApprovalPoint.BEFORE_FULL)
        gated = manual or waiting
        evidence = has_evidence(spec, s, had_traffic(plan, len(plan) - 1, committed))
        if ready_for(replicas) and evidence and not gated:
            return promote(spec, s, observed, events)
        if ready_for(replicas) and not gated:
            s.message = "promoting: waiting for analysis evidence"
            wake_for_measurement(s, now, d)
        # Until it is promoted, a candidate that was mirrored (blue-green preview, shadow)
        # keeps its mirrored share: that is what the evidence is measured on.
        last = plan[-1] if plan else None
        keep = (
            last.mirror
            if isinstance(last, Preview)
            else last.percent
            if isinstance(last, Shadow)
            else 0
        )
        if isinstance(last, Experiment):  # its users stay on the candidate until promoted
            users = experiment_stage.users_of(spec)
            if ready_for(experiment_stage.replicas_for(spec, users)):
                walk.users = users
        if waiting:  # a preview or shadow keeps running (and measured) while it waits
            want = max(want, approvals.kept_replicas(spec, last))
        if keep and ready_for(max(needed(replicas, keep), 1)):
            mirror = keep
        else:
            waiting_for_pods = not gated
            if not ready_for(replicas) and not gated:
                s.message = (
                    f"promoting: waiting for {replicas} Ready replicas of {candidate} "
                    f"({available} Ready)"
                )
        if not gated:  # a manual pause keeps the candidate as hold_stage sized it (an
            # approval wait as the walk sized it)
            want = replicas
        if ratio and committed > 0 and not evidence:
            # Plain Services select every candidate pod: scaling it to full size is the
            # promotion itself, so it waits for the evidence like a weight increase.
            want = needed(replicas, committed)
        preview_on = bool(spec.strategy.blue_green)

    if waiting_for_pods and deadline_passed(spec, s, now, d):
        reason = (
            f"progress deadline: candidate {candidate} not Ready "
            f"({available}/{want}) within {spec.progress_deadline_seconds}s"
            if not ready_for(want)
            else f"progress deadline: no analysis evidence for {candidate} within "
            f"{spec.progress_deadline_seconds}s"
        )
        return rollback(
            spec,
            s,
            observed,
            phase=RolloutPhase.ROLLED_BACK,
            reason=reason,
            cause=HistoryCause.PROGRESS_DEADLINE,
        )

    if ratio:
        # The weight is the replica ratio: the stable shrinks only by what the candidate
        # carries with Ready replicas now, and grows back when they turn unready.
        route, d.deployments = ratio_sizing(spec, stable, candidate, committed, want, available)
        if route.candidate_weight < committed and newly_withdrawn(s, route.candidate_weight):
            events.append(
                Event(
                    "Warning",
                    "CandidateUnready",
                    f"candidate {candidate} has {available} Ready replicas: weight "
                    f"{committed}% withdrawn to {route.candidate_weight}%; stable {stable} "
                    f"scaled back to {d.deployments[stable]} replicas",
                )
            )
        prev = s.previous_stable_version
        if spec.strategy.canary is not None and prev not in (None, stable, candidate):
            # The live Service selects every version's pods while the candidate has
            # weight: a warm previous stable would take live traffic, so it goes now
            # (while the Service still selects the stable only).
            s.scale_down_at = None
    else:
        # Never more weight or mirror than the candidate's Ready replicas carry now (at
        # the count they last carried it at, while an autoscaler grows spec.replicas;
        # back from zero, at the stable's Ready replicas).
        serving = observed.deployments.get(stable)
        reference = reference_replicas(
            replicas, s.capacity_replicas, from_zero=serving.available if serving else 0
        )
        weight = min(committed, supported(reference, available))
        if weight < committed and newly_withdrawn(s, weight):
            events.append(
                Event(
                    "Warning",
                    "CandidateUnready",
                    f"candidate {candidate} has {available} Ready replicas: weight "
                    f"{committed}% withdrawn to {weight}%",
                )
            )
        route = Route(
            stable=stable,
            candidate=candidate,
            candidate_weight=weight,
            mirror_percent=mirror,
            users=walk.users,
        )
        d.deployments = {stable: replicas, candidate: max(want, needed(replicas, committed))}
    d.route = route
    d.preview = candidate if preview_on else None
    s.weights = weights_of(route)
    need = replicas if spec.strategy.blue_green else needed(replicas, committed)
    if walk.users is not None:  # an A/B test's users: the count they need (review8 R5)
        need = experiment_stage.replicas_for(spec, walk.users)
    s.capacity_replicas = next_capacity(replicas, s.capacity_replicas, available, need)
    warm_previous(spec, s, now, d)
    return d


ZERO_NOTE = "the rollout holds where it is until the Rollout is scaled up"


def deadline_passed(spec: RolloutSpec, s: RolloutStatus, now: datetime, d: Decision) -> bool:
    if s.step_started_at is None:
        return False
    deadline = s.step_started_at + timedelta(seconds=spec.progress_deadline_seconds)
    if now >= deadline:
        return True
    d.wake_in((deadline - now).total_seconds())
    return False


def newly_withdrawn(s: RolloutStatus, weight: int) -> bool:
    """Whether withdrawing the candidate's weight to ``weight`` is news: the route it has
    now (``s.weights``, as read back) carries more. The Warning Event is posted once per
    withdrawal, not on every reconcile while the pods stay unready."""
    return s.weights is None or s.weights.candidate > weight


def set_weight(w: Walk, stage: SetWeight) -> bool:
    """A canary step: weight ``stage.weight`` once the candidate's Ready replicas carry
    it, and (for an increase) once analysis has evidence since the last weight change."""
    spec, s, now, replicas, candidate = w.spec, w.s, w.now, w.spec.replicas, w.candidate
    weight = stage.weight
    w.want = max(needed(replicas, weight), needed(replicas, w.committed))
    if weight > w.committed and not has_evidence(spec, s, had_traffic(w.plan, w.i, w.committed)):
        s.message = f"step {w.i}: waiting for analysis evidence before weight {weight}%"
        wake_for_measurement(s, now, w.d)
        return False
    if w.ready_for(needed(replicas, weight)):
        w.committed, w.i = weight, w.i + 1
        s.step_started_at, s.stage_since = now, None
        mark_weight_change(spec, s, now)
        w.d.events.append(Event("Normal", "Weight", f"candidate {candidate} at {weight}%"))
        return True
    w.waiting_for_pods = True
    s.message = (
        f"step {w.i}: waiting for {needed(replicas, weight)} Ready replicas of "
        f"{candidate} for weight {weight}% ({w.available} Ready)"
    )
    return False


def pause(w: Walk, stage: Pause) -> bool:
    """A pause step: for its duration, or until ``kubectl ferryman promote``."""
    s, now = w.s, w.now
    if s.pause is None or s.pause.reason != PauseReason.STEP:
        s.pause = PauseStatus(reason=PauseReason.STEP, since=now, message="")
    if stage.duration is not None:
        until = (s.pause.since or now) + stage.duration
        if now >= until:
            s.pause, s.step_started_at, w.i = None, now, w.i + 1
            return True
        s.pause.message = f"step {w.i}: pause {stage.text}"
        w.d.wake_in((until - now).total_seconds())
    else:
        s.pause.message = f"step {w.i}: paused until `kubectl ferryman promote`"
    s.phase, s.message = RolloutPhase.PAUSED, s.pause.message
    return False


def shadow(w: Walk, stage: Shadow) -> bool:
    """Mirror ``stage.percent`` of live traffic to the candidate for ``stage.duration``,
    once enough of its replicas are Ready (no live weight meanwhile)."""
    spec, s, now, replicas, candidate = w.spec, w.s, w.now, w.spec.replicas, w.candidate
    w.committed = no_live_weight(spec, s, now, w.committed, candidate, w.d.events, "a shadow")
    w.want = max(needed(replicas, stage.percent), 1 if stage.percent else 0)
    if not w.ready_for(w.want):
        w.waiting_for_pods = True
        s.message = (
            f"shadow: waiting for {w.want} Ready replicas of {candidate} ({w.available} Ready)"
        )
        if s.stage_since is not None:
            # Pods turned unready mid-shadow: stop mirroring, keep the clock.
            w.waiting_for_pods = False
        return False
    if s.stage_since is None:
        s.stage_since = now
        mark_weight_change(spec, s, now)
        w.d.events.append(
            Event("Normal", "Shadow", f"mirroring {stage.percent}% of traffic to {candidate}")
        )
    until = s.stage_since + stage.duration
    if now >= until:
        s.stage_since, s.step_started_at, w.i = None, now, w.i + 1
        w.want = needed(replicas, w.committed)
        return True
    w.mirror = stage.percent
    s.message = f"shadow: mirroring {stage.percent}% to {candidate} for {stage.text}"
    w.d.wake_in((until - now).total_seconds())
    return False


def preview(w: Walk, stage: Preview) -> bool:
    """Blue-green: the candidate at full size behind the preview Service (mirrored
    ``stage.mirror`` percent), until auto-promotion or ``kubectl ferryman promote``."""
    spec, s, now, replicas, candidate = w.spec, w.s, w.now, w.spec.replicas, w.candidate
    w.committed = no_live_weight(spec, s, now, w.committed, candidate, w.d.events, "a preview")
    w.want = replicas
    w.preview = True
    # A preview that was Ready stays up while an autoscaler grows spec.replicas (its new
    # replicas come up meanwhile): that is no wait for the progress deadline.
    # Back from zero (capacityReplicas 0) it is Ready again only at its new size.
    held = (
        reference_replicas(replicas, s.capacity_replicas, from_zero=replicas)
        if s.stage_since
        else replicas
    )
    if not w.ready_for(held):
        w.waiting_for_pods = True
        s.message = (
            f"preview: waiting for {replicas} Ready replicas of {candidate} ({w.available} Ready)"
        )
        return False
    if s.stage_since is None:
        s.stage_since = now
        mark_weight_change(spec, s, now)
        w.d.events.append(Event("Normal", "PreviewReady", f"preview of {candidate} is Ready"))
    w.mirror = stage.mirror
    if stage.auto_after is not None:
        until = s.stage_since + stage.auto_after
        if now >= until:
            s.stage_since, s.step_started_at, w.i = None, now, w.i + 1
            w.preview = False
            return True
        w.d.wake_in((until - now).total_seconds())
        text = f"preview Ready; auto-promotion at {until.isoformat()}"
    else:
        text = "preview Ready; waiting for `kubectl ferryman promote`"
    s.pause = PauseStatus(reason=PauseReason.STEP, since=s.stage_since, message=text)
    s.phase, s.message = RolloutPhase.PAUSED, text
    return False
