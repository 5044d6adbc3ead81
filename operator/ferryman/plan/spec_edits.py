"""Spec edits mid-rollout never skip a gate (docs/rollouts.md).

The status records fingerprints of the plan (strategy kind and stages) and of the
analysis the candidate follows; ``follow_spec_edits`` compares them with the spec on
every decision: a different plan restarts from its first stage holding the weight
reached, a different analysis needs new evidence before the next increase. Its own
module because the fingerprints are a persisted format (equal plans give equal
fingerprints across processes and releases) and the rule is easy to get subtly wrong.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from ferryman.api.rollout import PauseReason, RolloutSpec, RolloutStatus
from ferryman.plan.decision import Event
from ferryman.plan.evidence import mark_weight_change
from ferryman.plan.stages import Experiment, Pause, Preview, SetWeight, Shadow, Stage, stages


def _digest(value: object) -> str:
    """12 hex characters of the sha256 of ``value`` as canonical JSON."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def plan_fingerprint(spec: RolloutSpec) -> str:
    """The plan a candidate follows, as 12 hex characters: the strategy kind and its
    stages (durations in seconds), nothing else (not replicas, template or analysis).
    Deterministic: equal plans give equal fingerprints across processes."""
    strategy = spec.strategy
    kind = strategy.kind

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
        elif isinstance(stage, Experiment):
            out.append({"abTest": True, "seconds": seconds(stage.duration)})
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


def follow_spec_edits(
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
        if not position_fits(plan, s):
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
        mark_weight_change(spec, s, now)
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


def position_fits(plan: list[Stage], s: RolloutStatus) -> bool:
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
