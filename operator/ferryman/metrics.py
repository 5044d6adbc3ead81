"""The operator's own Prometheus metrics (prometheus-client), served on the configured
address and port (settings ``metricsAddress``/``metricsPort``; port 0 turns it off).

Labels are namespace, rollout and (for analysis) metric: bounded by the objects users
create, never one series per historical version. A deleted Rollout's series are removed.
See docs/metrics.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ferryman.api.rollout import (
    HistoryCause,
    HistoryEntry,
    HistoryOutcome,
    PauseStatus,
    Rollout,
    RolloutPhase,
    RolloutStatus,
)

REGISTRY = CollectorRegistry()

PHASE = Gauge(
    "ferryman_rollout_phase",
    "1 for the Rollout's current phase, 0 for the others",
    ["namespace", "rollout", "phase"],
    registry=REGISTRY,
)
PAUSED_SINCE = Gauge(
    "ferryman_rollout_paused_since_timestamp_seconds",
    "While a Rollout is Paused: when the pause began (Unix seconds), by pause reason "
    "(Step, Manual, Inconclusive, AnalysisError); no series while it is not paused",
    ["namespace", "rollout", "reason"],
    registry=REGISTRY,
)
WEIGHT = Gauge(
    "ferryman_rollout_weight",
    "Traffic percent by role as read back from the route",
    ["namespace", "rollout", "role"],
    registry=REGISTRY,
)
ROLLBACKS = Counter(
    "ferryman_rollbacks",
    "Rollbacks (history outcome RolledBack or Aborted) by cause: analysis, "
    "progress-deadline, abort, bake, undo",
    ["namespace", "rollout", "reason"],
    registry=REGISTRY,
)
ENDED = Counter(
    "ferryman_rollouts_ended",
    "Candidates whose rollout ended, by history outcome: Promoted, RolledBack, Aborted, "
    "Rejected, Superseded, Stopped",
    ["namespace", "rollout", "outcome"],
    registry=REGISTRY,
)
PROMOTIONS = Counter(
    "ferryman_promotions", "Promotions to stable", ["namespace", "rollout"], registry=REGISTRY
)
MEASUREMENTS = Counter(
    "ferryman_analysis_measurements",
    "Analysis measurements by verdict",
    ["namespace", "rollout", "metric", "verdict"],
    registry=REGISTRY,
)
VALUE = Gauge(
    "ferryman_analysis_value",
    "Latest measured value of each analysis metric",
    ["namespace", "rollout", "metric"],
    registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "ferryman_notifications",
    "Webhook notification attempts by endpoint and result: delivered, failed, abandoned",
    ["namespace", "rollout", "endpoint", "result"],
    registry=REGISTRY,
)
RECONCILE = Histogram(
    "ferryman_reconcile_duration_seconds",
    "Duration of one Rollout reconcile",
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ROLLBACK_DURATION = Histogram(
    "ferryman_rollback_duration_seconds",
    "From the measurement that decided a rollback to the route write that made it",
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)


def serve(address: str, port: int) -> None:
    if port:
        start_http_server(port, addr=address, registry=REGISTRY)


# The ``reason`` label of ferryman_rollbacks_total for each structured cause (the label
# values predate the cause enum; alerts match on them).
ROLLBACK_REASON: dict[HistoryCause, str] = {
    HistoryCause.ANALYSIS: "analysis",
    HistoryCause.BAKE_ANALYSIS: "bake",
    HistoryCause.PROGRESS_DEADLINE: "progress-deadline",
    HistoryCause.ARTIFACT_FAILED: "artifact",
    HistoryCause.USER: "abort",
    HistoryCause.UNDO: "undo",
    HistoryCause.EXPERIMENT: "experiment",
}
ROLLBACK_OUTCOMES = frozenset({HistoryOutcome.ROLLED_BACK, HistoryOutcome.ABORTED})


def ended(namespace: str, rollout: str, entry: HistoryEntry) -> None:
    """Count one new history entry: by outcome always; as a promotion or a rollback
    (by its structured cause, never by its reason text) when it is one. Superseded,
    Stopped and Rejected candidates never had their traffic taken back by a failure:
    they are not rollbacks."""
    ENDED.labels(namespace, rollout, entry.outcome.value).inc()
    if entry.outcome == HistoryOutcome.PROMOTED:
        PROMOTIONS.labels(namespace, rollout).inc()
    elif entry.outcome in ROLLBACK_OUTCOMES:
        reason = ROLLBACK_REASON[entry.cause] if entry.cause is not None else "other"
        ROLLBACKS.labels(namespace, rollout, reason).inc()


def record_reconcile(
    rollout: Rollout,
    status: RolloutStatus,
    written: dict[str, Any],
    route_written_at: datetime | None,
    *,
    measured: bool,
) -> None:
    """The metrics of one reconcile: phase, pause and weights as ``status`` says; each
    history entry newer than those in ``written`` (the status as read) counted by its
    structured outcome and cause (``ended``), with an analysis rollback's duration from
    the measurement that decided it to ``route_written_at``; this round's measurements
    when ``measured``."""
    ns, name = rollout.metadata.namespace, rollout.metadata.name
    observe_phase(ns, name, status.phase)
    observe_pause(ns, name, status.pause)
    if status.weights is not None:
        WEIGHT.labels(ns, name, "stable").set(status.weights.stable)
        WEIGHT.labels(ns, name, "candidate").set(status.weights.candidate)
        WEIGHT.labels(ns, name, "mirror").set(status.weights.mirror_percent)
    seen = [datetime.fromisoformat(h["at"]) for h in written.get("history") or []]
    last = max(seen) if seen else None
    fresh = [h for h in status.history or [] if last is None or h.at > last]
    for entry in fresh:
        ended(ns, name, entry)
        if entry.cause in (HistoryCause.ANALYSIS, HistoryCause.BAKE_ANALYSIS):
            decided = [
                m
                for m in (status.analysis.measurements if status.analysis else None) or []
                if m.verdict == "Failed"
            ]
            if route_written_at is not None and decided:
                ROLLBACK_DURATION.observe(
                    max((route_written_at - decided[-1].at).total_seconds(), 0.0)
                )
    if measured and status.analysis and rollout.spec.analysis:
        latest = (status.analysis.measurements or [])[-len(rollout.spec.analysis.metrics) :]
        for m in latest:
            MEASUREMENTS.labels(ns, name, m.metric, m.verdict.value).inc()
            if m.value is not None:
                VALUE.labels(ns, name, m.metric).set(m.value)


def observe_phase(namespace: str, rollout: str, phase: RolloutPhase | None) -> None:
    for p in RolloutPhase:
        PHASE.labels(namespace, rollout, p.value).set(1 if p == phase else 0)


def observe_pause(namespace: str, rollout: str, pause: PauseStatus | None) -> None:
    """Keep exactly one ``PAUSED_SINCE`` series for a paused Rollout (its reason, its
    ``since``), none for one that is not paused. A pause without ``since`` keeps the
    value it had, so an alert on its age survives the operator's reconciles."""
    current = [
        labels for labels in list(PAUSED_SINCE._metrics) if labels[:2] == (namespace, rollout)
    ]
    keep = (namespace, rollout, pause.reason.value) if pause is not None else None
    for labels in current:
        if labels != keep:
            PAUSED_SINCE.remove(*labels)
    if pause is not None and pause.since is not None:
        PAUSED_SINCE.labels(namespace, rollout, pause.reason.value).set(pause.since.timestamp())


def forget(namespace: str, rollout: str) -> None:
    """Drop a deleted Rollout's series."""
    per_rollout = (PHASE, PAUSED_SINCE, WEIGHT, ROLLBACKS, ENDED, PROMOTIONS, MEASUREMENTS, VALUE)
    for metric in (*per_rollout, NOTIFICATIONS):
        for labels in list(metric._metrics):
            if labels[:2] == (namespace, rollout):
                metric.remove(*labels)
