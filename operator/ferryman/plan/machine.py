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
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ferryman.analysis import evaluate
from ferryman.api.rollout import (
    MAX_ACTION_MESSAGE,
    ActionResult,
    AnalysisStatus,
    HistoryCause,
    HistoryEntry,
    HistoryOutcome,
    LastAction,
    PauseReason,
    PauseStatus,
    RolloutPhase,
    RolloutSpec,
    RolloutStatus,
    Weights,
)
from ferryman.plan import actions, gates, semver
from ferryman.plan.actions import ActionName as ActionName
from ferryman.plan.durations import parse_duration


@dataclass(frozen=True)
class Action:
    """A user intent from ``kubectl ferryman`` (annotation with a nonce)."""

    name: str
    id: str


@dataclass(frozen=True)
class VersionRecord:
    """A ModelVersion of the Rollout's model."""

    name: str
    version: str
    duplicate: bool = False
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DeploymentState:
    replicas: int
    available: int


@dataclass(frozen=True)
class Route:
    """Traffic: ``candidate_weight`` percent to the candidate, the rest to stable."""

    stable: str
    candidate: str | None = None
    candidate_weight: int = 0
    mirror_percent: int = 0

    @property
    def stable_weight(self) -> int:
        return 100 - self.candidate_weight


@dataclass(frozen=True)
class Observed:
    versions: tuple[VersionRecord, ...]
    deployments: Mapping[str, DeploymentState]  # by version
    now: datetime
    generation: int = 0
    route: Route | None = None
    action: Action | None = None
    conflict: str | None = None  # another Rollout that already serves this model
    invalid: str | None = None  # a problem the handler found (unknown provider, ...)


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Decision:
    status: RolloutStatus
    # Replicas per served version; versions not listed lose their Deployment. None: leave
    # every Deployment as it is.
    deployments: dict[str, int] | None
    # None: leave the route as it is (nothing is Ready to route to yet, or Invalid).
    route: Route | None
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    # Blue-green: the version the preview Service selects (None: no preview Service).
    preview: str | None = None
    # Whether the pending user action was applied, or why the path taken could not
    # (``decide`` records the verdict in status.lastAction).
    action_applied: bool = False
    action_refusal: str | None = None

    def wake_in(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        self.requeue_after = (
            seconds if self.requeue_after is None else min(self.requeue_after, seconds)
        )


@dataclass(frozen=True)
class SetWeight:
    weight: int


@dataclass(frozen=True)
class Pause:
    duration: timedelta | None
    text: str


@dataclass(frozen=True)
class Shadow:
    """Mirror ``percent`` of live traffic to the candidate for ``duration``."""

    percent: int
    duration: timedelta
    text: str


@dataclass(frozen=True)
class Preview:
    """Blue-green: the candidate at full size behind the preview Service, mirrored."""

    mirror: int
    auto_after: timedelta | None


@dataclass(frozen=True)
class Stop:
    """Shadow with ``then: stop``: remove the candidate and report; stable untouched."""


Stage = SetWeight | Pause | Shadow | Preview | Stop


def stages(spec: RolloutSpec) -> list[Stage]:
    """The strategy as a list of stages; promotion follows the last one."""
    strategy = spec.strategy

    def canary(steps: list[Any]) -> list[Stage]:
        out: list[Stage] = []
        for step in steps:
            if step.set_weight is not None:
                out.append(SetWeight(step.set_weight))
            else:
                d = step.pause.duration
                out.append(Pause(parse_duration(d) if d else None, d or ""))
        return out

    if strategy.canary is not None:
        return canary(list(strategy.canary.steps))
    if strategy.blue_green is not None:
        bg = strategy.blue_green
        auto = bg.auto_promotion_seconds
        return [
            Preview(
                bg.preview_mirror_percent or 0,
                timedelta(seconds=auto) if auto is not None else None,
            )
        ]
    assert strategy.shadow is not None
    sh = strategy.shadow
    first: list[Stage] = [Shadow(sh.mirror_percent, parse_duration(sh.duration), sh.duration)]
    if sh.then == "canary":
        return first + canary(list(sh.steps or []))
    if sh.then == "stop":
        return [*first, Stop()]
    return first


def ratio_mode(spec: RolloutSpec) -> bool:
    """Plain Services: the weight is the replica ratio (stable + candidate = replicas)."""
    return spec.traffic_routing.service is not None


@dataclass(frozen=True)
class AnalysisTarget:
    """What a round of analysis measures: ``version`` (and ``stable`` for relative
    thresholds, when ``relative``)."""

    version: str
    stable: str | None
    relative: bool


def analysis_target(spec: RolloutSpec, status: RolloutStatus) -> AnalysisTarget | None:
    """Analysis runs while a candidate receives live or mirrored traffic (progressing,
    paused at a step or for analysis) and while baking; otherwise it costs nothing."""
    if spec.analysis is None:
        return None
    if status.phase == RolloutPhase.BAKING and status.stable_version:
        # The previous stable gets no traffic while baking: nothing to compare with.
        return AnalysisTarget(status.stable_version, status.previous_stable_version, False)
    w = status.weights
    live = w is not None and (w.candidate > 0 or w.mirror_percent > 0)
    if (
        status.phase in (RolloutPhase.PROGRESSING, RolloutPhase.PAUSED)
        and live
        and status.candidate_version
        and status.stable_version
    ):
        return AnalysisTarget(status.candidate_version, status.stable_version, True)
    return None


def needed(replicas: int, weight: int) -> int:
    """Ready replicas a backend needs to carry ``weight`` percent of traffic."""
    return math.ceil(replicas * weight / 100)


def supported(replicas: int, available: int) -> int:
    """The largest weight ``available`` Ready replicas can carry."""
    if replicas <= 0:
        return 100
    return max(0, min(100, available * 100 // replicas))


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


def _history(status: RolloutStatus, spec: RolloutSpec, entry: HistoryEntry) -> None:
    history = [*(status.history or []), entry]
    status.history = history[-spec.history_limit :]


def weights_of(route: Route | None) -> Weights:
    if route is None:
        return Weights(stable=100, candidate=0, mirror_percent=0)
    return Weights(
        stable=route.stable_weight,
        candidate=route.candidate_weight,
        mirror_percent=route.mirror_percent,
    )


def decide(spec: RolloutSpec, status: RolloutStatus, observed: Observed) -> Decision:
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
        id=action.id[:128],
        action=action.name[:32],
        result=ActionResult.APPLIED if refused is None else ActionResult.REJECTED,
        message=_bounded(refused if refused is not None else s.message or "", MAX_ACTION_MESSAGE),
        at=observed.now,
    )
    return d


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 15] + "… [truncated]"


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
        return _invalid(s, f"Rollout {observed.conflict} already serves model {spec.model}")
    if observed.invalid:
        return _invalid(s, observed.invalid)

    rolled_back = list(s.rolled_back_versions or [])
    retried = None
    if action is not None and action.name == ActionName.RETRY and s.history:
        retried = s.history[-1].version
        rolled_back = [v for v in rolled_back if v != retried]

    target, problem = resolve_target(spec, observed.versions, rolled_back, s.stable_version)
    if problem or target is None:
        return _invalid(s, problem or "no target")
    if retried is not None:
        s.rolled_back_versions = rolled_back
        s.phase = RolloutPhase.PROGRESSING
        events.append(Event("Normal", "Retry", f"retrying version {retried}"))
        action, applied = None, True

    if s.stable_version is None:
        d = _first_rollout(spec, s, observed, target)
    elif s.candidate_version is not None and s.candidate_version != target:
        # A new target mid-rollout (or a return to stable): traffic to stable first; the
        # same decision may start the new candidate, which gets no traffic yet.
        superseded = s.candidate_version
        d = _rollback(
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
        d = _bake(spec, s, observed, action)
        applied = action is not None and d.status.phase == RolloutPhase.ABORTED
    elif action is not None and action.name == ActionName.UNDO:
        d = _undo(spec, s, observed)
        applied = d.status.phase == RolloutPhase.ROLLED_BACK
    elif target == s.stable_version or target in rolled_back:
        d = _steady(spec, s, observed)
    elif s.candidate_version is None:
        d = _start(spec, s, observed, target, events=[])
    else:
        d = _progress(spec, s, observed, action)
        # Applied unless analysis rolled the candidate back in the same reconcile.
        applied = applied or (action is not None and d.status.phase != RolloutPhase.ROLLED_BACK)
    d.events[:0] = events
    d.action_applied = applied
    return d


def _invalid(s: RolloutStatus, message: str) -> Decision:
    s.phase = RolloutPhase.INVALID
    s.message = message
    return Decision(
        status=s, deployments=None, route=None, events=[Event("Warning", "Invalid", message)]
    )


def _warm_previous(spec: RolloutSpec, s: RolloutStatus, now: datetime, d: Decision) -> None:
    """Keep the previous stable version warm (fast rollback) until scale_down_at."""
    prev = s.previous_stable_version
    if prev and s.scale_down_at and now < s.scale_down_at and d.deployments is not None:
        d.deployments.setdefault(prev, spec.replicas)
        d.wake_in((s.scale_down_at - now).total_seconds())
    elif s.scale_down_at and now >= s.scale_down_at:
        s.scale_down_at = None


def _steady(spec: RolloutSpec, s: RolloutStatus, observed: Observed) -> Decision:
    assert s.stable_version is not None
    route = Route(stable=s.stable_version)
    if s.phase not in (RolloutPhase.ROLLED_BACK, RolloutPhase.ABORTED, RolloutPhase.REJECTED):
        s.phase = RolloutPhase.HEALTHY
        s.message = f"stable {s.stable_version} serves 100%"
    s.candidate_version, s.current_step, s.pause, s.canary_weight = None, None, None, None
    s.weights = weights_of(route)
    d = Decision(status=s, deployments={s.stable_version: spec.replicas}, route=route)
    _warm_previous(spec, s, observed.now, d)
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
        _history(
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
    if _deadline_passed(spec, s, now, d):
        reason = (
            f"progress deadline: {target} not Ready ({available}/{spec.replicas}) "
            f"within {spec.progress_deadline_seconds}s"
        )
        return _rollback(
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
        s.rolled_back_versions = [*(s.rolled_back_versions or []), target][-100:]
        _history(
            s,
            spec,
            HistoryEntry(
                version=target, outcome=HistoryOutcome.REJECTED, at=observed.now, reason=rejected
            ),
        )
        s.phase = RolloutPhase.REJECTED
        s.message = f"{target} rejected before any traffic: {rejected}"
        d = _steady(spec, s, observed)
        d.events = [*events, Event("Warning", "Rejected", s.message)]
        return d
    s.candidate_version = target
    s.current_step, s.canary_weight, s.pause = 0, 0, None
    s.step_started_at = observed.now
    s.analysis = None  # counters reset on a new target (and on retry)
    _mark_weight_change(spec, s, observed.now)
    s.phase = RolloutPhase.PROGRESSING
    s.stage_since = None
    kind = (
        "canary" if spec.strategy.canary else "blue-green" if spec.strategy.blue_green else "shadow"
    )
    events.append(
        Event("Normal", "Progressing", f"{kind} of {target} started (stable {s.stable_version})")
    )
    d = _progress(spec, s, observed, action=None)
    d.events[:0] = events
    return d


def _deadline_passed(spec: RolloutSpec, s: RolloutStatus, now: datetime, d: Decision) -> bool:
    if s.step_started_at is None:
        return False
    deadline = s.step_started_at + timedelta(seconds=spec.progress_deadline_seconds)
    if now >= deadline:
        return True
    d.wake_in((deadline - now).total_seconds())
    return False


def _progress(
    spec: RolloutSpec, s: RolloutStatus, observed: Observed, action: Action | None
) -> Decision:
    """Run the strategy's stages from ``current_step`` as far as readiness and time
    allow, then size the Deployments and the route for where that leaves us."""
    assert s.stable_version and s.candidate_version
    now, replicas = observed.now, spec.replicas
    stable, candidate = s.stable_version, s.candidate_version
    plan = stages(spec)
    ratio = ratio_mode(spec)
    i = min(s.current_step or 0, len(plan))  # new steps apply from the current index
    committed = s.canary_weight or 0
    events: list[Event] = []
    dep = observed.deployments.get(candidate)
    available = dep.available if dep else 0

    def ready_for(count: int) -> bool:
        return dep is not None and dep.replicas >= count and available >= count

    if action is not None:
        if action.name == ActionName.ABORT:
            return _rollback(
                spec,
                s,
                observed,
                phase=RolloutPhase.ABORTED,
                reason="aborted by user",
                outcome=HistoryOutcome.ABORTED,
                cause=HistoryCause.USER,
            )
        if action.name in (ActionName.PROMOTE, ActionName.PROMOTE_FULL):
            i = len(plan) if action.name == ActionName.PROMOTE_FULL else min(i + 1, len(plan))
            s.pause, s.stage_since, s.step_started_at = None, None, now
            events.append(Event("Normal", "Promote", f"{action.name} by user"))

    d = Decision(status=s, deployments=None, route=None, events=events)
    waiting_for_pods = False
    want = needed(replicas, committed)  # candidate replicas to ask for
    mirror = 0
    preview = False
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
                f"query: {failed.query}"
            )
            return _rollback(
                spec,
                s,
                observed,
                phase=RolloutPhase.ROLLED_BACK,
                reason=reason,
                cause=HistoryCause.ANALYSIS,
            )
        held = _analysis_hold(s, analysis, now)
        if held is not None:
            # Keep traffic where it is; analysis keeps running and lifts the hold.
            s.pause, s.phase, s.message = held, RolloutPhase.PAUSED, held.message
            hold = True
    while not hold and i < len(plan):
        stage = plan[i]
        if isinstance(stage, SetWeight):
            w = stage.weight
            want = max(needed(replicas, w), needed(replicas, committed))
            if w > committed and not _evidence(spec, s, _had_traffic(plan, i, committed)):
                s.message = f"step {i}: waiting for analysis evidence before weight {w}%"
                _wake_for_measurement(s, now, d)
                break
            if ready_for(needed(replicas, w)):
                committed, i = w, i + 1
                s.step_started_at, s.stage_since = now, None
                _mark_weight_change(spec, s, now)
                events.append(Event("Normal", "Weight", f"candidate {candidate} at {w}%"))
                continue
            waiting_for_pods = True
            s.message = (
                f"step {i}: waiting for {needed(replicas, w)} Ready replicas of "
                f"{candidate} for weight {w}% ({available} Ready)"
            )
            break
        if isinstance(stage, Pause):
            if s.pause is None or s.pause.reason != PauseReason.STEP:
                s.pause = PauseStatus(reason=PauseReason.STEP, since=now, message="")
            if stage.duration is not None:
                until = (s.pause.since or now) + stage.duration
                if now >= until:
                    s.pause, s.step_started_at, i = None, now, i + 1
                    continue
                s.pause.message = f"step {i}: pause {stage.text}"
                d.wake_in((until - now).total_seconds())
            else:
                s.pause.message = f"step {i}: paused until `kubectl ferryman promote`"
            s.phase, s.message = RolloutPhase.PAUSED, s.pause.message
            break
        if isinstance(stage, Shadow):
            want = max(needed(replicas, stage.percent), 1 if stage.percent else 0)
            if not ready_for(want):
                waiting_for_pods = True
                s.message = (
                    f"shadow: waiting for {want} Ready replicas of {candidate} ({available} Ready)"
                )
                if s.stage_since is not None:
                    # Pods turned unready mid-shadow: stop mirroring, keep the clock.
                    waiting_for_pods = False
                break
            if s.stage_since is None:
                s.stage_since = now
                _mark_weight_change(spec, s, now)
                events.append(
                    Event(
                        "Normal", "Shadow", f"mirroring {stage.percent}% of traffic to {candidate}"
                    )
                )
            until = s.stage_since + stage.duration
            if now >= until:
                s.stage_since, s.step_started_at, i = None, now, i + 1
                want = needed(replicas, committed)
                continue
            mirror = stage.percent
            s.message = f"shadow: mirroring {stage.percent}% to {candidate} for {stage.text}"
            d.wake_in((until - now).total_seconds())
            break
        if isinstance(stage, Preview):
            want = replicas
            preview = True
            if not ready_for(replicas):
                waiting_for_pods = True
                s.message = (
                    f"preview: waiting for {replicas} Ready replicas of {candidate} "
                    f"({available} Ready)"
                )
                break
            if s.stage_since is None:
                s.stage_since = now
                _mark_weight_change(spec, s, now)
                events.append(Event("Normal", "PreviewReady", f"preview of {candidate} is Ready"))
            mirror = stage.mirror
            if stage.auto_after is not None:
                until = s.stage_since + stage.auto_after
                if now >= until:
                    s.stage_since, s.step_started_at, i = None, now, i + 1
                    preview = False
                    continue
                d.wake_in((until - now).total_seconds())
                text = f"preview Ready; auto-promotion at {until.isoformat()}"
            else:
                text = "preview Ready; waiting for `kubectl ferryman promote`"
            s.pause = PauseStatus(reason=PauseReason.STEP, since=s.stage_since, message=text)
            s.phase, s.message = RolloutPhase.PAUSED, text
            break
        assert isinstance(stage, Stop)
        return _stop(spec, s, observed, events)
    s.current_step, s.canary_weight = i, committed
    if s.phase != RolloutPhase.PAUSED:
        s.pause = None

    if i >= len(plan) and not hold:
        # Promotion: the candidate takes 100% in one write once Ready at full size, and
        # never without evidence from analysis.
        evidence = _evidence(spec, s, _had_traffic(plan, len(plan) - 1, committed))
        if ready_for(replicas) and evidence:
            return _promote(spec, s, observed, events)
        if ready_for(replicas):
            s.message = "promoting: waiting for analysis evidence"
            _wake_for_measurement(s, now, d)
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
        if keep and ready_for(max(needed(replicas, keep), 1)):
            mirror = keep
        else:
            waiting_for_pods = True
            s.message = (
                f"promoting: waiting for {replicas} Ready replicas of {candidate} "
                f"({available} Ready)"
            )
        want = replicas
        preview = bool(spec.strategy.blue_green)

    if waiting_for_pods and _deadline_passed(spec, s, now, d):
        reason = (
            f"progress deadline: candidate {candidate} not Ready "
            f"({available}/{want}) within {spec.progress_deadline_seconds}s"
        )
        return _rollback(
            spec,
            s,
            observed,
            phase=RolloutPhase.ROLLED_BACK,
            reason=reason,
            cause=HistoryCause.PROGRESS_DEADLINE,
        )

    if ratio:
        # The weight is the replica ratio: the stable shrinks only by what the candidate
        # already carries with Ready replicas (committed above only once Ready).
        route = Route(stable=stable, candidate=candidate, candidate_weight=committed)
        d.deployments = {
            stable: replicas - needed(replicas, committed),
            candidate: max(want, needed(replicas, committed)),
        }
    else:
        # Never more weight or mirror than the candidate's Ready replicas carry now.
        weight = min(committed, supported(replicas, available))
        if weight < committed:
            events.append(
                Event(
                    "Warning",
                    "CandidateUnready",
                    f"candidate {candidate} has {available} Ready replicas: weight "
                    f"{committed}% withdrawn to {weight}%",
                )
            )
        route = Route(
            stable=stable, candidate=candidate, candidate_weight=weight, mirror_percent=mirror
        )
        d.deployments = {stable: replicas, candidate: max(want, needed(replicas, committed))}
    d.route = route
    d.preview = candidate if preview else None
    s.weights = weights_of(route)
    _warm_previous(spec, s, now, d)
    return d


def _mark_weight_change(spec: RolloutSpec, s: RolloutStatus, now: datetime) -> None:
    """Measurements taken from now on are the evidence for the next step."""
    if spec.analysis is not None:
        if s.analysis is None:
            s.analysis = AnalysisStatus()
        s.analysis.since = now


def _analysis_hold(s: RolloutStatus, analysis: Any, now: datetime) -> PauseStatus | None:
    """Pause (not roll back) when measurements are inconclusive or failing to run."""
    a = s.analysis
    assert a is not None
    if a.consecutive_errors > analysis.consecutive_error_limit:
        reason, text = (
            PauseReason.ANALYSIS_ERROR,
            (
                f"analysis: {a.consecutive_errors} consecutive rounds with errors (limit "
                f"{analysis.consecutive_error_limit}); resumes when measurements succeed"
            ),
        )
    elif a.inconclusive > analysis.inconclusive_limit:
        reason, text = (
            PauseReason.INCONCLUSIVE,
            (
                f"analysis: {a.inconclusive} inconclusive rounds (limit "
                f"{analysis.inconclusive_limit}); resumes when measurements succeed"
            ),
        )
    else:
        return None
    since = s.pause.since if s.pause is not None and s.pause.reason == reason else now
    return PauseStatus(reason=reason, since=since, message=text)


def _had_traffic(plan: list[Stage], i: int, committed: int) -> bool:
    """Whether the candidate has had live or mirrored traffic by stage ``i``: from the
    plan itself, never from an observation that could lag or be lost."""
    if committed > 0:
        return True
    for stage in plan[: i + 1]:
        if isinstance(stage, Shadow) and stage.percent > 0:
            return True
        if isinstance(stage, Preview) and stage.mirror > 0:
            return True
    return False


def _evidence(spec: RolloutSpec, s: RolloutStatus, had_traffic: bool) -> bool:
    """Before each weight increase and before promotion, every metric needs a Successful
    measurement since the last weight change. With no traffic on the candidate yet there
    is nothing to measure, so that step needs none (analysis continues afterwards)."""
    if spec.analysis is None or not had_traffic:
        return True
    since = s.analysis.since if s.analysis else None
    return evaluate.has_evidence(s.analysis, spec.analysis, since)


def _wake_for_measurement(s: RolloutStatus, now: datetime, d: Decision) -> None:
    due = s.analysis.next_measurement_at if s.analysis else None
    d.wake_in((due - now).total_seconds() if due else 1.0)


def _bake(
    spec: RolloutSpec, s: RolloutStatus, observed: Observed, action: Action | None
) -> Decision:
    """After promotion: analysis continues for bake.duration; a breach (or an abort)
    returns traffic to the previous stable version, once it is Ready at full size."""
    now, replicas = observed.now, spec.replicas
    assert s.stable_version is not None and spec.bake is not None
    bad, prev = s.stable_version, s.previous_stable_version
    failed = evaluate.failed_metric(s.analysis, spec.analysis) if spec.analysis else None
    aborted = action is not None and action.name == ActionName.ABORT
    if (failed is not None or aborted) and prev:
        if failed is not None:
            count = ((s.analysis.failures or {}) if s.analysis else {}).get(failed.metric, 0)
            reason = (
                f"bake analysis: metric {failed.metric} failed {count} times: "
                f"{failed.message}; threshold {failed.threshold}; query: {failed.query}"
            )
        else:
            reason = "aborted by user during bake"
        dep = observed.deployments.get(prev)
        if dep is None or dep.replicas < replicas or dep.available < replicas:
            s.message = f"{reason}; bringing {prev} back to {replicas} Ready replicas first"
            route = Route(stable=bad)
            d = Decision(status=s, deployments={bad: replicas, prev: replicas}, route=route)
            d.wake_in(1.0)
            return d
        s.stable_version, s.previous_stable_version = prev, None
        s.rolled_back_versions = [*(v for v in s.rolled_back_versions or [] if v != bad), bad]
        by_user = aborted and failed is None
        outcome = HistoryOutcome.ABORTED if by_user else HistoryOutcome.ROLLED_BACK
        cause = HistoryCause.USER if by_user else HistoryCause.BAKE_ANALYSIS
        _history(
            s,
            spec,
            HistoryEntry(version=bad, outcome=outcome, cause=cause, at=now, reason=reason),
        )
        s.phase = RolloutPhase.ABORTED if by_user else RolloutPhase.ROLLED_BACK
        s.message = f"{bad} rolled back after promotion: {reason}"
        s.stage_since, s.scale_down_at = None, None
        route = Route(stable=prev)
        s.weights = weights_of(route)
        return Decision(
            status=s,
            deployments={prev: replicas},
            route=route,
            events=[Event("Warning", outcome, s.message)],
        )
    until = (s.stage_since or now) + parse_duration(spec.bake.duration)
    route = Route(stable=bad)
    s.weights = weights_of(route)
    if now >= until:
        s.phase, s.stage_since = RolloutPhase.HEALTHY, None
        s.message = f"{bad} baked for {spec.bake.duration}: stable, serves 100%"
        d = Decision(
            status=s,
            deployments={bad: replicas},
            route=route,
            events=[Event("Normal", "Baked", s.message)],
        )
        _warm_previous(spec, s, now, d)
        return d
    d = Decision(status=s, deployments={bad: replicas}, route=route)
    d.wake_in((until - now).total_seconds())
    _warm_previous(spec, s, now, d)
    return d


def _stop(spec: RolloutSpec, s: RolloutStatus, observed: Observed, events: list[Event]) -> Decision:
    """Shadow ``then: stop``: report, remove the candidate, leave stable as it is."""
    victim = s.candidate_version
    d = _rollback(
        spec,
        s,
        observed,
        phase=RolloutPhase.HEALTHY,
        reason="shadow completed (then: stop); stable untouched",
        outcome=HistoryOutcome.STOPPED,
        cause=None,
    )
    d.status.message = (
        f"shadow of {victim} completed (then: stop); stable {s.stable_version} untouched"
    )
    d.events = [*events, Event("Normal", "ShadowCompleted", d.status.message)]
    return d


def _undo(spec: RolloutSpec, s: RolloutStatus, observed: Observed) -> Decision:
    """Back to the previous stable version, at once, while it is still warm and Ready."""
    prev, current = s.previous_stable_version, s.stable_version
    dep = observed.deployments.get(prev or "")
    if (
        not prev
        or not current
        or s.candidate_version is not None
        or dep is None
        or dep.available < spec.replicas
    ):
        # plan.actions.refusal said no already; decide() records the verdict.
        return _steady(spec, s, observed)
    now = observed.now
    s.stable_version, s.previous_stable_version = prev, current
    s.rolled_back_versions = [*(v for v in s.rolled_back_versions or [] if v != current), current]
    _history(
        s,
        spec,
        HistoryEntry(
            version=current,
            outcome=HistoryOutcome.ROLLED_BACK,
            cause=HistoryCause.UNDO,
            at=now,
            reason=f"undo by user: back to {prev}",
        ),
    )
    s.phase = RolloutPhase.ROLLED_BACK
    s.message = f"undo: {prev} is stable again; {current} rolled back"
    s.scale_down_at = now + timedelta(seconds=spec.scale_down_delay_seconds)
    d = _steady(spec, s, observed)
    d.events.append(Event("Warning", "RolledBack", s.message))
    return d


def _promote(
    spec: RolloutSpec, s: RolloutStatus, observed: Observed, events: list[Event]
) -> Decision:
    now = observed.now
    assert s.candidate_version and s.stable_version
    old, new = s.stable_version, s.candidate_version
    s.previous_stable_version, s.stable_version, s.candidate_version = old, new, None
    s.current_step, s.canary_weight, s.pause, s.step_started_at = None, None, None, None
    s.stage_since = None
    s.phase = RolloutPhase.HEALTHY
    s.message = f"{new} promoted: stable, serves 100%"
    s.scale_down_at = now + timedelta(seconds=spec.scale_down_delay_seconds)
    if spec.bake is not None:
        # Analysis goes on after promotion; the previous stable stays warm throughout so
        # a breach can return traffic to it at once.
        bake = parse_duration(spec.bake.duration)
        s.phase, s.stage_since = RolloutPhase.BAKING, now
        s.message = f"{new} promoted; baking for {spec.bake.duration}"
        s.scale_down_at = now + bake + timedelta(seconds=spec.scale_down_delay_seconds)
        _mark_weight_change(spec, s, now)
    _history(
        s,
        spec,
        HistoryEntry(
            version=new, outcome=HistoryOutcome.PROMOTED, at=now, reason="all steps completed"
        ),
    )
    route = Route(stable=new)
    s.weights = weights_of(route)
    d = Decision(
        status=s,
        deployments={new: spec.replicas},
        route=route,
        events=[*events, Event("Normal", "Promoted", s.message)],
    )
    _warm_previous(spec, s, now, d)
    return d


def _rollback(
    spec: RolloutSpec,
    s: RolloutStatus,
    observed: Observed,
    *,
    phase: RolloutPhase,
    reason: str,
    cause: HistoryCause | None,
    outcome: HistoryOutcome = HistoryOutcome.ROLLED_BACK,
    remember: bool = True,
) -> Decision:
    """Route everything to stable and remove the candidate (the handler writes the route
    before it scales anything down). ``outcome`` and ``cause`` go to the history entry as
    they are: metrics count by them."""
    now = observed.now
    victim = s.candidate_version
    s.candidate_version, s.current_step, s.canary_weight, s.pause = None, None, None, None
    s.step_started_at, s.stage_since = None, None
    s.phase = phase
    if victim:
        if remember and victim not in (s.rolled_back_versions or []):
            s.rolled_back_versions = [*(s.rolled_back_versions or []), victim][-100:]
        _history(
            s,
            spec,
            HistoryEntry(version=victim, outcome=outcome, cause=cause, at=now, reason=reason),
        )
    s.message = (
        f"{victim} {outcome.lower() if outcome != 'RolledBack' else 'rolled back'}: {reason}"
    )
    if s.stable_version is None:
        return Decision(
            status=s, deployments={}, route=None, events=[Event("Warning", outcome, s.message)]
        )
    route = Route(stable=s.stable_version)
    s.weights = weights_of(route)
    d = Decision(
        status=s,
        deployments={s.stable_version: spec.replicas},
        route=route,
        events=[Event("Warning", outcome, s.message)] if remember else [],
    )
    _warm_previous(spec, s, now, d)
    return d
