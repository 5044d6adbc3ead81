"""How a candidate's rollout ends, and the steady state in between: ``promote``,
``rollback`` (also abort and superseded), ``stop_shadow`` (shadow ``then: stop``),
``undo`` back to the previous stable, the bake after promotion (``during_bake``),
``steady`` with no candidate, ``invalid`` and ``blocked``.

Each ending routes everything to the stable version in the decision and records a
structured history entry (outcome and cause, which metrics count by); the handler writes
the route before it scales anything down. Its own module so every ending, and what it
leaves in status, can be read side by side.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ferryman.analysis import evaluate
from ferryman.api.common import clip
from ferryman.api.older_history import summarize
from ferryman.api.rollout import (
    QUOTED_QUERY,
    HistoryCause,
    HistoryEntry,
    HistoryOutcome,
    Measurement,
    RolloutPhase,
    RolloutSpec,
    RolloutStatus,
)
from ferryman.plan.actions import ActionName
from ferryman.plan.decision import Action, Decision, Event, Observed
from ferryman.plan.durations import parse_duration
from ferryman.plan.evidence import mark_weight_change
from ferryman.plan.route import Route, weights_of


def add_history(status: RolloutStatus, spec: RolloutSpec, entry: HistoryEntry) -> None:
    """Append ``entry``, keeping the newest ``historyLimit`` entries (the entry's reason
    is shortened by the model itself when too long); the entries that fall off are
    counted in ``olderHistory`` (how many, when, by outcome), never silently dropped."""
    history = [*(status.history or []), entry]
    cut = max(len(history) - spec.history_limit, 0)
    if cut:
        dropped = [(h.at, h.at, h.outcome.value) for h in history[:cut]]
        status.older_history = summarize(status.older_history, dropped)
    status.history = history[cut:]


def evidence(m: Measurement | None) -> Measurement | None:
    """The failed measurement ``m`` as a history entry keeps it: its rendered query cut to
    ``QUOTED_QUERY`` characters and its message to ``QUOTED_MESSAGE`` (the full query is
    in spec.analysis), so a history of ``MAX_HISTORY`` entries stays small. None for
    none, and for ``evaluate.failed_metric``'s stand-in when the measurement itself has
    left the bounded list (it has no time)."""
    if m is None or m.at == datetime.min:
        return None
    return m.model_copy(
        update={"query": clip(m.query, QUOTED_QUERY), "message": clip(m.message, QUOTED_MESSAGE)}
    )


QUOTED_MESSAGE = 512


def remember_rolled_back(status: RolloutStatus, version: str) -> None:
    """Add ``version`` to ``rolledBackVersions`` (once, newest last; the model keeps the
    newest ``MAX_HISTORY``), so ``track: latest`` and a restart never retry it."""
    kept = [v for v in status.rolled_back_versions or [] if v != version]
    status.rolled_back_versions = [*kept, version]


def invalid(s: RolloutStatus, message: str) -> Decision:
    s.phase = RolloutPhase.INVALID
    s.message = message
    return Decision(
        status=s, deployments=None, route=None, events=[Event("Warning", "Invalid", message)]
    )


def blocked(s: RolloutStatus, message: str, action: Action | None) -> Decision:
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


def warm_previous(spec: RolloutSpec, s: RolloutStatus, now: datetime, d: Decision) -> None:
    """Keep the previous stable version warm (fast rollback) until scale_down_at."""
    prev = s.previous_stable_version
    if prev and s.scale_down_at and now < s.scale_down_at and d.deployments is not None:
        d.deployments.setdefault(prev, spec.replicas)
        d.wake_in((s.scale_down_at - now).total_seconds())
    elif s.scale_down_at and now >= s.scale_down_at:
        s.scale_down_at = None


def steady(spec: RolloutSpec, s: RolloutStatus, observed: Observed) -> Decision:
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
    warm_previous(spec, s, observed.now, d)
    return d


def promote(
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
        mark_weight_change(spec, s, now)
    add_history(
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
    warm_previous(spec, s, now, d)
    return d


def rollback(
    spec: RolloutSpec,
    s: RolloutStatus,
    observed: Observed,
    *,
    phase: RolloutPhase,
    reason: str,
    cause: HistoryCause | None,
    outcome: HistoryOutcome = HistoryOutcome.ROLLED_BACK,
    remember: bool = True,
    measurement: Measurement | None = None,
) -> Decision:
    """Route everything to stable and remove the candidate (the handler writes the route
    before it scales anything down). ``outcome`` and ``cause`` go to the history entry as
    they are: metrics count by them; so does ``measurement`` (the failed one behind an
    analysis rollback, shortened by ``evidence``)."""
    now = observed.now
    victim = s.candidate_version
    s.candidate_version, s.current_step, s.canary_weight, s.pause = None, None, None, None
    s.step_started_at, s.stage_since = None, None
    s.phase = phase
    if victim:
        if remember:
            remember_rolled_back(s, victim)
        add_history(
            s,
            spec,
            HistoryEntry(
                version=victim,
                outcome=outcome,
                cause=cause,
                at=now,
                reason=reason,
                measurement=evidence(measurement),
            ),
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
    warm_previous(spec, s, now, d)
    return d


def stop_shadow(
    spec: RolloutSpec, s: RolloutStatus, observed: Observed, events: list[Event]
) -> Decision:
    """Shadow ``then: stop``: report, remove the candidate, leave stable as it is."""
    victim = s.candidate_version
    d = rollback(
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


def undo(spec: RolloutSpec, s: RolloutStatus, observed: Observed) -> Decision:
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
        return steady(spec, s, observed)
    now = observed.now
    s.stable_version, s.previous_stable_version = prev, current
    remember_rolled_back(s, current)
    add_history(
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
    d = steady(spec, s, observed)
    d.events.append(Event("Warning", "RolledBack", s.message))
    return d


def during_bake(
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
        remember_rolled_back(s, bad)
        by_user = aborted and failed is None
        outcome = HistoryOutcome.ABORTED if by_user else HistoryOutcome.ROLLED_BACK
        cause = HistoryCause.USER if by_user else HistoryCause.BAKE_ANALYSIS
        add_history(
            s,
            spec,
            HistoryEntry(
                version=bad,
                outcome=outcome,
                cause=cause,
                at=now,
                reason=reason,
                measurement=evidence(failed),
            ),
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
        warm_previous(spec, s, now, d)
        return d
    d = Decision(status=s, deployments={bad: replicas}, route=route)
    d.wake_in((until - now).total_seconds())
    warm_previous(spec, s, now, d)
    return d
