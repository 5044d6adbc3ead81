"""The Rollout state machine: what should run and where traffic should go, now.

``decide(spec, status, observed)`` is pure and deterministic (the clock is an input): from
the Rollout's spec, its persisted status and what the handler observed (the model's
ModelVersions, each served Deployment's replicas, the route as read back, a pending user
action) it returns one ``Decision``: the replicas of each served version, the route, the
status to write, the events to post and when to look again. All progress lives in the
status it returns; a restart from any persisted status converges.

The handler executes a decision in a fixed order that keeps the invariants true at every
instant: create and scale up Deployments first, then write the route, then scale down and
delete, then write status. Because weight is only given to a candidate whose Ready
replicas already carry it, and rollbacks remove weight (route) before capacity
(scale-down), no request is ever routed to a backend that cannot serve it.

Canary sizing (routers with weights): the stable Deployment stays at ``replicas``; the
candidate is scaled to ``ceil(replicas * w / 100)`` Ready replicas before weight ``w`` is
written, and weight is withdrawn from it when its pods turn unready.

Plain Services (``Observed.capabilities.weights_by_replicas``): the weight is the replica
ratio, the stable is sized for what the candidate's Ready replicas really carry, and
``keep_capacity`` checks every decision against the live Service as read back
(``Observed.route``) so that no write leaves fewer Ready pods behind it than
``min(now, replicas)``.

Spec edits mid-rollout never skip a gate: the status records fingerprints of the plan
(strategy kind and stages) and of the analysis the candidate follows; a different plan
restarts from its first stage holding the weight reached, a different analysis needs new
evidence before the next increase (``follow_spec_edits``; docs/rollouts.md).

This module holds the entry point and the choice of path (``_decide``: invalid, blocked,
first rollout, start, progress, bake, undo, steady); the rules each path follows live in
modules of their own: ``plan.progress`` (the stages), ``plan.endings`` (promote,
rollback, stop, undo, bake, steady), ``plan.capacity`` (replica arithmetic and the
plain-Service capacity check), ``plan.evidence`` (analysis), ``plan.spec_edits``
(fingerprints) and ``plan.availability`` (conditions). The vocabulary is in
``plan.route``, ``plan.decision`` and ``plan.stages``.
"""

from __future__ import annotations

from ferryman.api.common import clip
from ferryman.api.rollout import (
    MAX_ACTION_ID,
    MAX_ACTION_MESSAGE,
    MAX_ACTION_NAME,
    ActionResult,
    HistoryCause,
    HistoryEntry,
    HistoryOutcome,
    LastAction,
    RolloutPhase,
    RolloutSpec,
    RolloutStatus,
)
from ferryman.plan import actions, experiment, gates, semver
from ferryman.plan.actions import ActionName
from ferryman.plan.availability import set_available, set_standard_conditions
from ferryman.plan.capacity import keep_capacity, ratio_weights
from ferryman.plan.decision import Action, Decision, Event, Observed, VersionRecord
from ferryman.plan.endings import (
    add_history,
    blocked,
    during_bake,
    invalid,
    remember_rolled_back,
    rollback,
    steady,
    undo,
)
from ferryman.plan.evidence import mark_weight_change
from ferryman.plan.pod_failures import artifact_verdict, set_failure_condition
from ferryman.plan.progress import deadline_passed, progress
from ferryman.plan.route import Route, weights_of
from ferryman.plan.spec_edits import analysis_fingerprint, plan_fingerprint


def resolve_target(
    spec: RolloutSpec,
    versions: tuple[VersionRecord, ...],
    rolled_back: list[str],
    stable: str | None,
) -> tuple[str | None, str | None]:
    """(version to serve, problem). ``track: latest`` skips rolled-back versions and
    pre-releases (unless ``target.includePrereleases``), and falls back to the stable
    version when every newer one was rolled back."""
    usable = {v.version for v in versions if not v.duplicate}
    if spec.target.version is not None:
        if spec.target.version not in usable:
            return None, (
                f"no ModelVersion of model {spec.model} with version {spec.target.version} "
                "(or only a Duplicate of it)"
            )
        return spec.target.version, None
    prereleases = bool(spec.target.include_prereleases)
    pick = semver.highest(
        [v for v in usable if v not in rolled_back and (prereleases or not semver.is_prerelease(v))]
    )
    if pick is None:
        if stable is not None:
            return stable, None
        skipped = not prereleases and any(semver.is_prerelease(v) for v in usable)
        return None, f"no ModelVersion of model {spec.model} to serve" + (
            " (track: latest skips pre-releases unless target.includePrereleases is true)"
            if skipped
            else ""
        )
    if (
        stable is not None
        and semver.is_semver(stable)
        and semver.Version(pick) < semver.Version(stable)
    ):
        return stable, None
    return pick, None


def decide(spec: RolloutSpec, status: RolloutStatus, observed: Observed) -> Decision:
    """What to do now (see the module docstring), with the verdict on a pending user
    action in ``status.lastAction``, the ``Available`` condition (is the stable
    version Ready for the traffic it carries) set on every decision and the
    ``PodFailure`` condition once a served version's pod reports a failure."""
    d = _decide_action(spec, status, observed)
    set_available(spec, d, observed)
    set_failure_condition(
        d,
        observed.pod_failures,
        (status.candidate_version, d.status.candidate_version, d.status.stable_version),
        generation=observed.generation,
        now=observed.now,
    )
    set_standard_conditions(d, observed)
    return d


def _decide_action(spec: RolloutSpec, status: RolloutStatus, observed: Observed) -> Decision:
    action = observed.action
    if action is None:
        return _decide(spec, status, observed, None)
    # A user action: the same rule the CLI asks first (plan.actions), then a verdict for
    # its nonce in status.lastAction, Applied or Rejected with the reason.
    prev = observed.deployments.get(status.previous_stable_version or "")
    refused = actions.refusal(
        action.name,
        status,
        previous_warm=prev is not None
        and actions.previous_warm(
            replicas=spec.replicas, scaled_to=prev.replicas, available=prev.available
        ),
    )
    d = _decide(spec, status, observed, None if refused else action)
    s = d.status
    s.handled_action_id = action.id
    if refused is None and not d.action_applied:
        # Allowed by the rule, but the Rollout moved on with the same reconcile.
        refused = d.action_refusal or actions.overtaken(action.name, s.phase, s.message)
    if refused is not None:
        d.events.append(Event("Warning", "ActionRejected", f"{action.name}: {refused}"))
    s.last_action = LastAction(
        id=action.id[:MAX_ACTION_ID],
        action=action.name[:MAX_ACTION_NAME],
        result=ActionResult.APPLIED if refused is None else ActionResult.REJECTED,
        message=clip(refused if refused is not None else s.message or "", MAX_ACTION_MESSAGE),
        at=observed.now,
    )
    return d


def _decide(
    spec: RolloutSpec, status: RolloutStatus, observed: Observed, action: Action | None
) -> Decision:
    """``decide`` for an action that applies by the rule (or none); the returned
    decision's ``action_applied`` says whether the path taken applied it."""
    s = status.model_copy(deep=True)
    s.observed_generation = observed.generation
    events: list[Event] = []
    applied = False

    if observed.conflict:
        return invalid(s, f"Rollout {observed.conflict} already serves model {spec.model}")
    if observed.invalid:
        return invalid(s, observed.invalid)
    refused = experiment.refusal(spec, observed.capabilities)
    if refused:
        return invalid(s, refused)
    if observed.blocked:
        return blocked(s, observed.blocked, action)

    rolled_back = list(s.rolled_back_versions or [])
    retried = None
    if action is not None and action.name == ActionName.RETRY and (s.history or rolled_back):
        # The pinned target if it was rolled back (the history entry may be missing: a
        # refused status write keeps only the essential fields), else the last ended one.
        pinned = spec.target.version
        retried = (
            pinned
            if pinned is not None and pinned in rolled_back
            else s.history[-1].version
            if s.history
            else rolled_back[-1]
        )
        rolled_back = [v for v in rolled_back if v != retried]

    target, problem = resolve_target(spec, observed.versions, rolled_back, s.stable_version)
    if problem or target is None:
        return invalid(s, problem or "no target")
    if retried is not None:
        s.rolled_back_versions = rolled_back
        s.phase = RolloutPhase.PROGRESSING
        events.append(Event("Normal", "Retry", f"retrying version {retried}"))
        action, applied = None, True

    verdict = artifact_verdict(s.candidate_version, observed.pod_failures)
    if verdict is not None and s.candidate_version == target:
        # Its initializer failed for a reason no retry changes: roll back now, not at
        # the progress deadline (plan.pod_failures).
        d = rollback(
            spec,
            s,
            observed,
            phase=RolloutPhase.ROLLED_BACK,
            reason=verdict,
            cause=HistoryCause.ARTIFACT_FAILED,
        )
        if action is not None:
            d.action_refusal = f"the candidate was rolled back: {verdict}"
    elif s.stable_version is None:
        d = _first_rollout(spec, s, observed, target)
    elif s.candidate_version is not None and s.candidate_version != target:
        # A new target mid-rollout (or a return to stable): traffic to stable first; the
        # same decision may start the new candidate, which gets no traffic yet.
        superseded = s.candidate_version
        d = rollback(
            spec,
            s,
            observed,
            phase=RolloutPhase.PROGRESSING,
            reason=f"superseded by target {target}",
            outcome=HistoryOutcome.SUPERSEDED,
            cause=None,
            remember=False,
        )
        d.events.append(
            Event("Normal", "Superseded", f"candidate {superseded} superseded by {target}")
        )
        if target != s.stable_version:
            d = _start(spec, d.status, observed, target, d.events)
        else:
            d.status.phase = RolloutPhase.HEALTHY
            d.status.message = f"stable {s.stable_version} serves 100%"
        if action is not None:
            d.action_refusal = actions.superseded(action.name, superseded, target)
    elif s.phase == RolloutPhase.BAKING and target == s.stable_version:
        d = during_bake(spec, s, observed, action)
        applied = action is not None and d.status.phase == RolloutPhase.ABORTED
    elif action is not None and action.name == ActionName.UNDO:
        d = undo(spec, s, observed)
        applied = d.status.phase == RolloutPhase.ROLLED_BACK
    elif target == s.stable_version or target in rolled_back:
        d = steady(spec, s, observed)
    elif s.candidate_version is None:
        d = _start(spec, s, observed, target, events=[])
    else:
        d = progress(spec, s, observed, action)
        # Applied unless analysis rolled the candidate back in the same reconcile, or the
        # path refused it (a promote that arrived with a plan change).
        applied = applied or (
            action is not None
            and d.status.phase != RolloutPhase.ROLLED_BACK
            and d.action_refusal is None
        )
    d.events[:0] = events
    if observed.capabilities.weights_by_replicas and d.route is not None:
        keep_capacity(spec, observed, d)
        d.status.weights = ratio_weights(d.route, observed.deployments)
    d.action_applied = applied
    return d


def _first_rollout(
    spec: RolloutSpec, s: RolloutStatus, observed: Observed, target: str
) -> Decision:
    """The first version ever served becomes stable directly once Ready."""
    now = observed.now
    if target in (s.rolled_back_versions or []):
        s.candidate_version = None
        return Decision(status=s, deployments={}, route=None)
    if s.candidate_version != target:
        s.candidate_version, s.step_started_at = target, now
    dep = observed.deployments.get(target)
    available = dep.available if dep else 0
    if dep is not None and dep.replicas == spec.replicas and available >= spec.replicas:
        s.stable_version, s.candidate_version, s.step_started_at = target, None, None
        s.phase = RolloutPhase.HEALTHY
        s.message = f"first version {target} is stable and serves 100%"
        route = Route(stable=target)
        s.weights = weights_of(route)
        add_history(
            s,
            spec,
            HistoryEntry(
                version=target,
                outcome=HistoryOutcome.PROMOTED,
                at=now,
                reason="first version of the Rollout",
            ),
        )
        return Decision(
            status=s,
            deployments={target: spec.replicas},
            route=route,
            events=[Event("Normal", "Promoted", s.message)],
        )
    s.phase = RolloutPhase.PROGRESSING
    s.message = f"first rollout: waiting for {target} to be Ready ({available}/{spec.replicas})"
    d = Decision(status=s, deployments={target: spec.replicas}, route=None)
    if deadline_passed(spec, s, now, d):
        reason = (
            f"progress deadline: {target} not Ready ({available}/{spec.replicas}) "
            f"within {spec.progress_deadline_seconds}s"
        )
        return rollback(
            spec,
            s,
            observed,
            phase=RolloutPhase.ROLLED_BACK,
            reason=reason,
            cause=HistoryCause.PROGRESS_DEADLINE,
        )
    return d


def _start(
    spec: RolloutSpec, s: RolloutStatus, observed: Observed, target: str, events: list[Event]
) -> Decision:
    records = {v.version: v for v in observed.versions if not v.duplicate}
    stable_metrics = records[s.stable_version].metrics if s.stable_version in records else None
    rejected = gates.check(
        spec.gates,
        records[target].metrics if target in records else {},
        stable_metrics,
        candidate_version=target,
        stable_version=s.stable_version,
    )
    if rejected:
        remember_rolled_back(s, target)
        add_history(
            s,
            spec,
            HistoryEntry(
                version=target, outcome=HistoryOutcome.REJECTED, at=observed.now, reason=rejected
            ),
        )
        s.phase = RolloutPhase.REJECTED
        s.message = f"{target} rejected before any traffic: {rejected}"
        d = steady(spec, s, observed)
        d.events = [*events, Event("Warning", "Rejected", s.message)]
        return d
    s.candidate_version = target
    s.current_step, s.canary_weight, s.pause = 0, 0, None
    s.step_started_at = observed.now
    s.analysis = None  # counters reset on a new target (and on retry)
    s.experiment = None  # so does an A/B test's verdict (plan.experiment)
    mark_weight_change(spec, s, observed.now)
    s.phase = RolloutPhase.PROGRESSING
    s.stage_since = None
    s.plan_hash, s.analysis_hash = plan_fingerprint(spec), analysis_fingerprint(spec)
    kind = (
        "canary" if spec.strategy.canary else "blue-green" if spec.strategy.blue_green else "shadow"
    )
    events.append(
        Event("Normal", "Progressing", f"{kind} of {target} started (stable {s.stable_version})")
    )
    d = progress(spec, s, observed, action=None)
    d.events[:0] = events
    return d
