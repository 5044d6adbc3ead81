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

Plain Services (``ratio_mode``): the weight is the replica ratio, the stable is sized for
what the candidate's Ready replicas really carry, and ``_keep_capacity`` checks every
decision against the live Service as read back (``Observed.route``) so that no write
leaves fewer Ready pods behind it than ``min(now, replicas)``.

Spec edits mid-rollout never skip a gate: the status records fingerprints of the plan
(strategy kind and stages) and of the analysis the candidate follows; a different plan
restarts from its first stage holding the weight reached, a different analysis needs new
evidence before the next increase (``_follow_spec_edits``; docs/rollouts.md).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ferryman.analysis import evaluate
from ferryman.api.common import ConditionStatus, clip
from ferryman.api.rollout import (
    MAX_ACTION_MESSAGE,
    QUOTED_QUERY,
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
from ferryman.plan import actions, conditions, gates, semver
from ferryman.plan.actions import ActionName as ActionName
from ferryman.plan.decision import Action as Action
from ferryman.plan.decision import Decision, Event
from ferryman.plan.decision import DeploymentState as DeploymentState
from ferryman.plan.decision import Observed as Observed
from ferryman.plan.decision import VersionRecord as VersionRecord
from ferryman.plan.durations import parse_duration
from ferryman.plan.route import Route as Route
from ferryman.plan.route import weights_of as weights_of
from ferryman.plan.stages import Pause, Preview, SetWeight, Shadow, Stage, Stop, stages

# Temporary: handlers/rollouts.py (split in parallel by the executor work, issue 11 §2)
# still spells ``machine.Action``, ``DeploymentState``, ``Observed``, ``VersionRecord``,
# ``Route`` and ``weights_of``; they live in plan.decision and plan.route, and these
# ``X as X`` re-exports go when that split lands (routers and the CLI never use them).


def _digest(value: object) -> str:
    """12 hex characters of the sha256 of ``value`` as canonical JSON."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def plan_fingerprint(spec: RolloutSpec) -> str:
    """The plan a candidate follows, as 12 hex characters: the strategy kind and its
    stages (durations in seconds), nothing else (not replicas, template or analysis).
    Deterministic: equal plans give equal fingerprints across processes."""
    strategy = spec.strategy
    kind = "canary" if strategy.canary else "blueGreen" if strategy.blue_green else "shadow"

    def seconds(d: timedelta | None) -> float | None:
        return None if d is None else d.total_seconds()

    out: list[dict[str, Any]] = []
    for stage in stages(spec):
        if isinstance(stage, SetWeight):
            out.append({"setWeight": stage.weight})
        elif isinstance(stage, Pause):
            out.append({"pause": seconds(stage.duration)})
        elif isinstance(stage, Shadow):
            out.append({"shadow": stage.percent, "seconds": seconds(stage.duration)})
        elif isinstance(stage, Preview):
            out.append({"preview": stage.mirror, "autoSeconds": seconds(stage.auto_after)})
        else:
            out.append({"stop": True})
    return _digest([kind, out])


def analysis_fingerprint(spec: RolloutSpec) -> str:
    """What evidence is measured under, as 12 hex characters: the metrics (names,
    queries, thresholds), ``minSamples`` and the provider or address; not the interval
    or the limits, which apply at the next decision as they are."""
    a = spec.analysis
    if a is None:
        return _digest(None)
    return _digest(
        {
            "provider": None if a.address else (a.provider or "default"),
            "address": a.address,
            "minSamples": a.min_samples.model_dump(mode="json") if a.min_samples else None,
            "metrics": [m.model_dump(mode="json", exclude_none=True) for m in a.metrics],
        }
    )


def ratio_mode(spec: RolloutSpec) -> bool:
    """Plain Services: the weight is the replica ratio (stable + candidate = replicas)."""
    return spec.traffic_routing.service is not None


def selected(route: Route, versions: Iterable[str]) -> set[str]:
    """The versions whose pods the plain-Service router's live Service selects for
    ``route``: the stable only (candidate weight 0), the candidate only (100), else the
    pods of every served version (``versions``: those with a Deployment)."""
    if route.candidate is None or route.candidate_weight <= 0:
        return {route.stable}
    if route.candidate_weight >= 100:
        return {route.candidate}
    return {route.stable, route.candidate, *versions}


def ratio_weights(route: Route, deployments: Mapping[str, DeploymentState]) -> Weights:
    """Plain Services: the real split, i.e. the share of Ready pods behind the live
    Service (``route`` as read back from it) that belong to the stable version; the
    candidate weight is the rest (percent, summing to 100). With no Ready pod behind
    the Service, the route's nominal weights."""
    behind = selected(route, deployments)
    ready = {v: deployments[v].available if v in deployments else 0 for v in behind}
    total = sum(ready.values())
    if total <= 0:
        return weights_of(route)
    stable = round(100 * ready.get(route.stable, 0) / total)
    return Weights(stable=stable, candidate=100 - stable, mirror_percent=0)


def _ratio_sizing(
    spec: RolloutSpec, stable: str, candidate: str, committed: int, want: int, available: int
) -> tuple[Route, dict[str, int]]:
    """Plain-Service canary at step weight ``committed``: the candidate's Ready replicas
    (``available``, at most what the weight needs) carry weight, the stable is sized for
    the rest, so Ready stable + carrying candidate replicas = ``replicas``; the route's
    weight follows what the candidate really carries (0 once it has no Ready pod)."""
    replicas = spec.replicas
    carried = min(available, needed(replicas, committed))
    weight = committed if carried >= needed(replicas, committed) else supported(replicas, carried)
    weight = min(weight, committed)
    route = Route(stable=stable, candidate=candidate, candidate_weight=weight)
    sizes = {stable: replicas - carried, candidate: max(want, needed(replicas, committed))}
    return route, sizes


HOLD_NOTE = "the live Service keeps its current pods"


def _keep_capacity(spec: RolloutSpec, observed: Observed, d: Decision) -> None:
    """Plain Services: no decision removes Ready capacity behind the live Service
    below ``replicas`` (DESIGN.md §2). The Ready pods behind it now (``observed.route``
    is the live Service as read back) are the reference; if the decided route and sizes
    would leave fewer than ``min(that, replicas)`` Ready pods behind it, every version
    it selects now stays selected and keeps its replicas (nothing it selects shrinks),
    and a version it does not select yet is not scaled up (its pods would take traffic
    with no weight), until the decided selection is Ready at that size; the Deployments
    the decision scales up come up meanwhile. Modifies ``d`` in place."""
    live, route, sizes = observed.route, d.route, d.deployments
    if d.status.message and HOLD_NOTE in d.status.message:
        d.status.message = d.status.message.split(f"; {HOLD_NOTE}")[0].split(HOLD_NOTE)[0]
    if live is None or route is None or sizes is None:
        return
    deps = observed.deployments
    ready = {v: dep.available for v, dep in deps.items()}
    before = selected(live, deps) & set(deps)
    floor = min(sum(ready[v] for v in before), spec.replicas)

    def capacity(r: Route, target: Mapping[str, int]) -> int:
        return sum(min(ready.get(v, 0), target.get(v, 0)) for v in selected(r, target))

    if capacity(route, sizes) >= floor:
        return
    held = dict(sizes)
    for v in before:
        held[v] = max(held.get(v, 0), deps[v].replicas)
    keep = route
    if not before <= selected(route, held):
        others = sorted(before - {route.stable})
        other = route.candidate if route.candidate in before else others[0] if others else None
        if other is not None:
            weight = route.candidate_weight if other == route.candidate else 0
            if weight <= 0 or weight >= 100:
                share = ready.get(other, 0) * 100 // max(sum(ready[v] for v in before), 1)
                weight = max(1, min(99, share))
            keep = Route(stable=route.stable, candidate=other, candidate_weight=weight)
    for v in list(held):
        if v not in before and v != route.stable and v in selected(keep, held):
            held[v] = min(held[v], deps[v].replicas if v in deps else 0)
    d.route, d.deployments = keep, held
    stable_ready = ready.get(route.stable, 0)
    note = (
        f"{HOLD_NOTE} until {route.stable} has {spec.replicas} Ready replicas "
        f"({stable_ready} Ready)"
    )
    d.status.message = f"{d.status.message}; {note}" if d.status.message else note
    d.wake_in(1.0)


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
    """Append ``entry``, keeping the newest ``historyLimit`` entries (the entry's reason
    is shortened by the model itself when too long)."""
    history = [*(status.history or []), entry]
    status.history = history[-spec.history_limit :]


def _remember_rolled_back(status: RolloutStatus, version: str) -> None:
    """Add ``version`` to ``rolledBackVersions`` (once, newest last; the model keeps the
    newest ``MAX_HISTORY``), so ``track: latest`` and a restart never retry it."""
    kept = [v for v in status.rolled_back_versions or [] if v != version]
    status.rolled_back_versions = [*kept, version]


def decide(spec: RolloutSpec, status: RolloutStatus, observed: Observed) -> Decision:
    """What to do now (see the module docstring), with the verdict on a pending user
    action in ``status.lastAction`` and the ``Available`` condition (is the stable
    version Ready for the traffic it carries) set on every decision."""
    d = _decide_action(spec, status, observed)
    _availability(spec, d, observed)
    _standard_conditions(d, observed)
    return d


AVAILABLE = conditions.AVAILABLE


def _standard_conditions(d: Decision, observed: Observed) -> None:
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
        message=s.message or "",
        generation=observed.generation,
        now=observed.now,
    )


def _availability(spec: RolloutSpec, d: Decision, observed: Observed) -> None:
    """``Available=False`` (reason ``StableNotReady``) with a Warning Event when the
    stable version has fewer Ready replicas than its share of traffic needs; True again
    (a Normal Event) when it recovers. No new phase: a rollout in progress keeps its."""
    s = d.status
    if s.stable_version is None or s.phase == RolloutPhase.INVALID:
        return
    weight = (
        d.route.stable_weight
        if d.route is not None
        else (s.weights.stable if s.weights is not None else 100)
    )
    # Plain Services size the stable for what the candidate does not carry (_ratio_sizing):
    # an odd split rounds the candidate's share up, so the stable's need is the rest.
    want = (
        spec.replicas - needed(spec.replicas, 100 - weight)
        if ratio_mode(spec)
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
        id=action.id[:128],
        action=action.name[:32],
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
        return _invalid(s, f"Rollout {observed.conflict} already serves model {spec.model}")
    if observed.invalid:
        return _invalid(s, observed.invalid)
    if observed.blocked:
        return _blocked(s, observed.blocked, action)

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
        # Applied unless analysis rolled the candidate back in the same reconcile, or the
        # path refused it (a promote that arrived with a plan change).
        applied = applied or (
            action is not None
            and d.status.phase != RolloutPhase.ROLLED_BACK
            and d.action_refusal is None
        )
    d.events[:0] = events
    if ratio_mode(spec) and d.route is not None:
        _keep_capacity(spec, observed, d)
        d.status.weights = ratio_weights(d.route, observed.deployments)
    d.action_applied = applied
    return d


def _blocked(s: RolloutStatus, message: str, action: Action | None) -> Decision:
    """The route cannot be written: hold everything where it is (no weight change, no
    promotion, no scale-down; the phase stays) until it can. The handler reports the
    ``OwnershipConflict`` condition and the weights it observes."""
    if s.phase is None:
        s.phase = RolloutPhase.PROGRESSING
    s.message = f"blocked: {message}"
    d = Decision(status=s, deployments=None, route=None)
    if action is not None:
        d.action_refusal = f"rejected while blocked: {message}"
    # Routes are not watched: look again while blocked, so the Rollout carries on soon
    # after the foreign object goes.
    d.wake_in(BLOCKED_RECHECK_SECONDS)
    return d


BLOCKED_RECHECK_SECONDS = 10.0


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
    ended = (RolloutPhase.ROLLED_BACK, RolloutPhase.ABORTED, RolloutPhase.REJECTED)
    # A rollback stays visible while the spec still asks for the version it refused; a
    # spec that names the stable version again (a reverted release in Git) is satisfied.
    if s.phase not in ended or spec.target.version == s.stable_version:
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
        _remember_rolled_back(s, target)
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
    s.plan_hash, s.analysis_hash = plan_fingerprint(spec), analysis_fingerprint(spec)
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
    events: list[Event] = []
    replanned = _follow_spec_edits(spec, s, plan, now, events)
    i = min(s.current_step or 0, len(plan))
    committed = s.canary_weight or 0
    dep = observed.deployments.get(candidate)
    available = dep.available if dep else 0

    def ready_for(count: int) -> bool:
        return dep is not None and dep.replicas >= count and available >= count

    refusal: str | None = None
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
        if replanned and action.name in (ActionName.PROMOTE, ActionName.PROMOTE_FULL):
            # It was meant for a gate of the previous plan: never let it pass a new one.
            refusal = (
                "the plan changed in the same update and starts again from its first "
                "step; promote again to pass its gates"
            )
        elif action.name in (ActionName.PROMOTE, ActionName.PROMOTE_FULL):
            i = len(plan) if action.name == ActionName.PROMOTE_FULL else min(i + 1, len(plan))
            s.pause, s.stage_since, s.step_started_at = None, None, now
            events.append(Event("Normal", "Promote", f"{action.name} by user"))

    d = Decision(status=s, deployments=None, route=None, events=events)
    d.action_refusal = refusal
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
                f"query: {clip(failed.query, QUOTED_QUERY)}"
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
            committed = _no_live_weight(spec, s, now, committed, candidate, events, "a shadow")
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
            committed = _no_live_weight(spec, s, now, committed, candidate, events, "a preview")
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
            if not ready_for(replicas):
                s.message = (
                    f"promoting: waiting for {replicas} Ready replicas of {candidate} "
                    f"({available} Ready)"
                )
        want = replicas
        if ratio and committed > 0 and not evidence:
            # Plain Services select every candidate pod: scaling it to full size is the
            # promotion itself, so it waits for the evidence like a weight increase.
            want = needed(replicas, committed)
        preview = bool(spec.strategy.blue_green)

    if waiting_for_pods and _deadline_passed(spec, s, now, d):
        reason = (
            f"progress deadline: candidate {candidate} not Ready "
            f"({available}/{want}) within {spec.progress_deadline_seconds}s"
            if not ready_for(want)
            else f"progress deadline: no analysis evidence for {candidate} within "
            f"{spec.progress_deadline_seconds}s"
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
        # carries with Ready replicas now, and grows back when they turn unready.
        route, d.deployments = _ratio_sizing(spec, stable, candidate, committed, want, available)
        if route.candidate_weight < committed and _newly_withdrawn(s, route.candidate_weight):
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
        # Never more weight or mirror than the candidate's Ready replicas carry now.
        weight = min(committed, supported(replicas, available))
        if weight < committed and _newly_withdrawn(s, weight):
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


def _follow_spec_edits(
    spec: RolloutSpec, s: RolloutStatus, plan: list[Stage], now: datetime, events: list[Event]
) -> bool:
    """Apply the rule for spec edits mid-rollout (docs/rollouts.md); True when the plan
    restarts.

    A plan (strategy kind and stages) that differs from the one recorded when the
    candidate started restarts from its first stage: timed pauses, shadow and preview
    clocks start afresh, manual gates wait for promote, and the weight already committed
    is held until a stage of the new plan lowers it (at once) or raises it (with
    readiness and evidence, as always). An analysis that differs from the one recorded
    makes the evidence for the next increase or promotion be measured again. A status
    written before these fingerprints existed (an operator upgrade) adopts the current
    spec without a restart, unless its position does not fit the current plan."""
    changed = False
    fingerprint = plan_fingerprint(spec)
    step = s.current_step or 0
    if s.plan_hash is None:
        if not _position_fits(plan, s):
            changed = True
            text = (
                f"step {step} does not fit the {len(plan)} steps of the current plan: the "
                "steps restart from the first"
            )
    elif s.plan_hash != fingerprint:
        changed = True
        text = (
            f"the strategy changed: the new plan ({len(plan)} steps) starts from its first "
            f"step; {s.canary_weight or 0}% held until its steps move it, manual gates wait "
            "for promote"
        )
    s.plan_hash = fingerprint
    if changed:
        s.current_step, s.stage_since, s.step_started_at = 0, None, now
        if s.pause is not None and s.pause.reason == PauseReason.STEP:
            s.pause = None
        events.append(Event("Normal", "PlanChanged", f"{s.candidate_version}: {text}"))
    analysis = analysis_fingerprint(spec)
    if s.analysis_hash is not None and s.analysis_hash != analysis:
        _mark_weight_change(spec, s, now)
        events.append(
            Event(
                "Normal",
                "AnalysisChanged",
                f"{s.candidate_version}: the analysis changed; the next weight increase or "
                "promotion needs a Successful measurement of every metric under it",
            )
        )
    s.analysis_hash = analysis
    return changed


def _position_fits(plan: list[Stage], s: RolloutStatus) -> bool:
    """Whether the recorded position can belong to ``plan``: a step index within it,
    paused only at a pause or preview, timing only a shadow or preview. Used when no plan
    fingerprint was recorded; an index past the end is never "all steps completed"."""
    i = s.current_step or 0
    if i > len(plan):
        return False
    stage = plan[i] if i < len(plan) else None
    if (
        s.pause is not None
        and s.pause.reason == PauseReason.STEP
        and not isinstance(stage, (Pause, Preview))
    ):
        return False
    return s.stage_since is None or isinstance(stage, (Shadow, Preview))


def _no_live_weight(
    spec: RolloutSpec,
    s: RolloutStatus,
    now: datetime,
    committed: int,
    candidate: str,
    events: list[Event],
    what: str,
) -> int:
    """Shadow and preview stages carry no live traffic: a candidate that a spec edit put
    on one with live weight loses it at once (a decrease is always allowed)."""
    if committed:
        _mark_weight_change(spec, s, now)
        events.append(
            Event("Normal", "Weight", f"candidate {candidate} at 0%: {what} has no live traffic")
        )
    return 0


def _newly_withdrawn(s: RolloutStatus, weight: int) -> bool:
    """Whether withdrawing the candidate's weight to ``weight`` is news: the route it has
    now (``s.weights``, as read back) carries more. The Warning Event is posted once per
    withdrawal, not on every reconcile while the pods stay unready."""
    return s.weights is None or s.weights.candidate > weight


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
    assert s.stable_version is not None
    bad, prev = s.stable_version, s.previous_stable_version
    failed = evaluate.failed_metric(s.analysis, spec.analysis) if spec.analysis else None
    aborted = action is not None and action.name == ActionName.ABORT
    if (failed is not None or aborted) and prev:
        if failed is not None:
            count = ((s.analysis.failures or {}) if s.analysis else {}).get(failed.metric, 0)
            reason = (
                f"bake analysis: metric {failed.metric} failed {count} times: "
                f"{failed.message}; threshold {failed.threshold}; "
                f"query: {clip(failed.query, QUOTED_QUERY)}"
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
        _remember_rolled_back(s, bad)
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
    # A bake removed from the spec while baking ends now (a spec edit, not a breach).
    bake = spec.bake.duration if spec.bake is not None else None
    until = (s.stage_since or now) + (parse_duration(bake) if bake else timedelta(0))
    route = Route(stable=bad)
    s.weights = weights_of(route)
    if now >= until:
        s.phase, s.stage_since = RolloutPhase.HEALTHY, None
        s.message = (
            f"{bad} baked for {bake}: stable, serves 100%"
            if bake
            else f"{bad}: bake removed from the spec; stable, serves 100%"
        )
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
    _remember_rolled_back(s, current)
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
        if remember:
            _remember_rolled_back(s, victim)
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
